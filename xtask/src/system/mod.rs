//! System descriptions (`systems/*.toml`): parse, check, compile to the binary manifest.
//! (Being written: see the helper's task.)

use anyhow::Result;
use bulkhead_abi::manifest::Manifest;
use std::path::Path;

/// A checked, compiled system description.
pub struct CompiledSystem {
    /// The manifest the hypervisor reads.
    pub manifest: Manifest,
    /// Image names in bundle order: `images[i]` is bundle entry `i + 1`.
    pub images: Vec<String>,
}

impl CompiledSystem {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        format!("{:?}", self.manifest)
    }
}

/// Reads, checks and compiles a system description.
pub fn compile_file(_path: &Path) -> Result<CompiledSystem> {
    anyhow::bail!("not written yet")
}

//! The system-description compiler: reads a system description (`systems/*.toml`), checks
//! it and compiles it to the binary manifest, the bundle order and the qubes' configuration
//! blobs. `cargo xtask check` and `cargo xtask build` are its command line.
//!
//! The work is done in steps, each in its own module:
//! - [`schema`] parses the TOML and reads each table against its allowed keys and types
//!   ([`keys`]);
//! - [`check`] (with [`fields`], [`channels`], [`devices`], [`ports`], [`network`],
//!   [`rules`], [`admin`], [`policy`] and [`storage`]) applies the rules: names, images,
//!   memory, labels, channels, devices, I/O ports, netvms, addresses, firewall rules, the
//!   admin qube and the qrexec policy, private volumes and their storage qubes, CPU pins and vCPU counts ([`cpus`]), RAM budget; [`shadow`] warns about policy entries that can never match;
//! - [`compile`] builds the [`Manifest`], the bundle's image list and each networked qube's
//!   configuration blob;
//! - [`diagnostics`] collects every problem with its place, key path, message and fix.

#![forbid(unsafe_code)]

mod admin;
mod channels;
mod check;
mod cmdline;
mod compile;
mod cpus;
mod devices;
pub mod diagnostics;
mod disposables;
mod fields;
mod framebuffer;
mod gui;
mod hints;
mod ip;
mod keys;
mod layout;
mod linux;
mod network;
mod policy;
mod ports;
mod qrexec;
mod rules;
mod schema;
mod service_ref;
mod shadow;
mod storage;
mod syntax;

#[cfg(test)]
mod gui_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod linux_tests;
#[cfg(test)]
mod network_proptests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod qrexec_tests;
#[cfg(test)]
mod storage_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use cmdline::MAX_LEN as CMDLINE_MAX_LEN;
pub use diagnostics::{Diagnostic, Diagnostics};
pub use layout::{ChannelEnds, Content, End, Entry, LinuxEntries, QubeEntries};

use bulkhead_abi::manifest::Manifest;
use std::fmt;
use std::path::{Path, PathBuf};

/// Images xtask knows how to build (the folders under `unikernels/`, by name).
pub const KNOWN_IMAGES: &[&str] = &[
    "net", "firewall", "usb", "gui", "testing", "admin", "storage",
];

/// RAM the hypervisor keeps for itself (its code, page tables, bundle), in MiB. The qubes'
/// memory, the channels' memory and this must fit `[system] ram_mib`.
pub const HYPERVISOR_RESERVE_MIB: u32 = 32;

/// A checked, compiled system description.
#[derive(Clone, Debug)]
pub struct CompiledSystem {
    /// The manifest the hypervisor reads.
    pub manifest: Manifest,
    /// Unikernel image names in bundle order: `images[i]` is bundle entry `i + 1` (entry 0
    /// is the manifest).
    pub images: Vec<String>,
    /// The templates Linux qubes boot, in bundle order after the images: template `t`'s
    /// kernel is entry `images.len() + 1 + 2t`, its initramfs the next one.
    pub templates: Vec<String>,
    /// Configuration blobs in bundle order, after the templates: `configs[k]` is bundle
    /// entry `images.len() + 2 * templates.len() + 1 + k`.
    pub configs: Vec<ConfigBlob>,
    /// Linux qubes' command lines, the last bundle entries (see [`CompiledSystem::entries`]).
    pub cmdlines: Vec<CmdlineBlob>,
    /// Each qube's bundle entries (image, configuration blob, Linux initramfs and command
    /// line), by manifest index: what the manifest's indices say, named.
    pub qube_entries: Vec<QubeEntries>,
    /// Each channel's two ends, by manifest index: the qube and the channel's index in that
    /// qube's boot-info channel table (the index its guest opens it by).
    pub channel_ends: Vec<ChannelEnds>,
    /// The client network, when some qube has a netvm.
    pub network: Option<network::Params>,
    /// The qubes' private volumes (`storagevm` and `private_mib`), in qube order: what
    /// xtask places on each storage qube's disk.
    pub volumes: Vec<PrivateVolume>,
    /// The Linux qubes that boot their template's root from a storage qube's disk, in qube
    /// order: which template volumes xtask places on which disk, and whose command line
    /// gets the template's dm-verity parameters.
    pub roots: Vec<TemplateRoot>,
    /// RAM of the machine in MiB (QEMU's `-m`).
    pub ram_mib: u32,
    /// What is allowed but likely a mistake (a `[[policy]]` entry that can never match),
    /// with its place; [`CompiledSystem::summary`] shows them.
    pub warnings: Vec<Diagnostic>,
    /// The description it was compiled from.
    pub path: PathBuf,
}

/// One qube's configuration blob, a bundle entry of kind `Config`.
#[derive(Clone, Debug)]
pub struct ConfigBlob {
    /// Index of the qube in the manifest.
    pub qube: usize,
    /// The bundle entry's name, `<qube>.cfg` (shortened to fit an entry name).
    pub entry: String,
    /// What the blob says.
    pub config: bulkhead_qubeconfig::QubeConfig,
    /// The blob: `config` encoded.
    pub bytes: Vec<u8>,
}

/// A qube's private volume, on the disk of its storage qube.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateVolume {
    /// The qube: also the volume's name in the disk's volume table.
    pub qube: String,
    /// The storage qube whose disk holds it (`storagevm`).
    pub storage: String,
    /// Its size in MiB (`private_mib`).
    pub mib: u32,
}

/// A Linux qube that boots its template's read-only root from a storage qube's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRoot {
    /// The qube.
    pub qube: String,
    /// The storage qube whose disk holds the template's root volume (`storagevm`).
    pub storage: String,
    /// The template (`template`): also the root volume's name in the disk's volume table.
    pub template: String,
}

/// One Linux qube's kernel command line, a bundle entry of kind `Cmdline`.
#[derive(Clone, Debug)]
pub struct CmdlineBlob {
    /// Index of the qube in the manifest.
    pub qube: usize,
    /// The bundle entry's name, `<qube>.cmdline` (shortened to fit an entry name).
    pub entry: String,
    /// The command line (see `cmdline.rs`).
    pub text: String,
    /// The description's `kernel_args`, the end of `text` (for the summary).
    pub kernel_args: String,
}

impl CompiledSystem {
    /// A readable table of the qubes (name, kind, image, memory, label, restart, args), of
    /// the channels (name, sides, size, slots, purpose) and of the network (netvm, role,
    /// address, rules, devices), with the memory budget and the bundle order.
    pub fn summary(&self) -> String {
        compile::summary(self)
    }
}

/// Why a description file did not compile.
#[derive(Debug)]
pub enum Error {
    /// The file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The description has problems, each with its place, key, message and fix.
    Problems(Diagnostics),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(
                f,
                "cannot read system description {}: {source}",
                diagnostics::escaped(&path.display().to_string())
            ),
            Error::Problems(d) => write!(f, "{d}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            Error::Problems(d) => Some(d),
        }
    }
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Error {
        Error::Problems(d)
    }
}

/// Reads, checks and compiles the system description at `path`.
pub fn compile_file(path: &Path) -> Result<CompiledSystem, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(compile_bytes(&path.display().to_string(), &bytes)?)
}

/// Checks and compiles the description `bytes`, read from `file_name`. A file that is not
/// UTF-8 gets one diagnostic at its first bad byte; otherwise as [`compile_str`].
pub fn compile_bytes(file_name: &str, bytes: &[u8]) -> Result<CompiledSystem, Diagnostics> {
    match std::str::from_utf8(bytes) {
        Ok(text) => compile_str(file_name, text),
        Err(e) => Err(Diagnostics::not_utf8(file_name, bytes, e)),
    }
}

/// Checks and compiles the description `text`, read from `file_name` (used in diagnostics,
/// and its stem is the system's name unless `[system] name` is given). Reports every problem.
pub fn compile_str(file_name: &str, text: &str) -> Result<CompiledSystem, Diagnostics> {
    let mut diags = Diagnostics::new(file_name, text);
    let path = Path::new(file_name);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut warnings = Diagnostics::new(file_name, text);
    let checked = schema::read(text, &mut diags)
        .and_then(|raw| check::check(&raw, &stem, text, &mut diags, &mut warnings));
    match checked {
        Some(checked) if diags.is_empty() => {
            let mut compiled = compile::compile(checked, path).map_err(|e| {
                let hint = "this is a bug in xtask; please report it with the description";
                diags.push(text, None, "system", format!("cannot compile: {e}"), hint);
                diags
            })?;
            warnings.sort();
            compiled.warnings = warnings.iter().cloned().collect();
            Ok(compiled)
        }
        _ => {
            diags.sort();
            Err(diags)
        }
    }
}

/// The repository's root (`xtask/sysdesc/../..`), where the tests find `systems/` and `docs/`.
#[cfg(test)]
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

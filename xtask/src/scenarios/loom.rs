//! The loom model checks: the ring's concurrent protocol (`hypervisor/ring/tests/loom.rs`):
//! both ends in their own threads, every interleaving up to loom's bound: FIFO through full
//! rings and the wrap, and no lost wake-up between `prepare_wait` and `notify`; and the
//! cross-CPU wake-up and the parking of a Linux qube's secondary vCPUs
//! (`hypervisor/core/tests/wake_loom.rs`).

use super::{Scenario, host};
use anyhow::{Context, Result, bail};
use std::process::Command;

pub const LOOM_RING: Scenario = Scenario {
    name: "loom-ring",
    about: "loom: both ends of a ring under every interleaving (FIFO, no lost wake-up)",
    run: || loom_test("bulkhead-ring", "loom"),
};

pub const LOOM_WAKE: Scenario = Scenario {
    name: "loom-wake",
    about: "loom: a CPU going to halt and the CPUs posting to its qubes (no lost wake-up IPI); a secondary vCPU parked stays out of the guest",
    run: || loom_test("bulkhead-hvcore", "wake_loom"),
};

/// Runs the loom test `test` of `package`.
fn loom_test(package: &str, test: &str) -> Result<String> {
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target directory: `--cfg loom` rebuilds every crate, and must not evict the
    // normal build's artifacts.
    let out = Command::new(cargo)
        .current_dir(&root)
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root.join("target/loom"))
        .args(["test", "-p", package, "--release", "--test", test])
        .output()
        .context("running the loom tests")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let counts = host::parse(&stdout);
    if !out.status.success() || counts.failed > 0 || counts.passed == 0 {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stdout
            .lines()
            .chain(stderr.lines())
            .rev()
            .take(30)
            .collect();
        bail!(
            "loom found a problem:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(format!("{} model checks passed", counts.passed))
}

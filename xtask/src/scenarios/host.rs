//! The host tests: `cargo test` over every crate that runs on the host.

use anyhow::{Context, Result};
use std::process::Command;

/// Crates whose tests run on the host (the images are freestanding and have none).
pub const HOST_CRATES: &[&str] = &[
    "bulkhead-abi",
    "bulkhead-hvcore",
    "bulkhead-platform",
    "bulkhead-ring",
    "bulkhead-rt",
    "bulkhead-qubeconfig",
    "bulkhead-firewall-engine",
    "xtask",
    "bulkhead-sysdesc",
    "bulkhead-agent",
];

/// Totals over every `test result:` line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// cargo test exited successfully.
    pub ok: bool,
}

/// Runs `cargo test` for [`HOST_CRATES`], echoing its output.
pub fn run() -> Result<Counts> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args(["test", "--no-fail-fast"]);
    for c in HOST_CRATES {
        cmd.args(["-p", c]);
    }
    // The runtime's optional modules have host tests too.
    cmd.args([
        "--features",
        "bulkhead-rt/virtio,bulkhead-rt/net,bulkhead-rt/e1000e,bulkhead-rt/test-hooks",
    ]);
    let out = cmd.output().context("running cargo test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        let t = line.trim_start();
        if t.starts_with("test result:")
            || t.starts_with("Running")
            || t.contains("FAILED")
            || t.starts_with("error")
            || t.starts_with("panicked")
            || t.starts_with("thread")
        {
            println!("   {line}");
        }
    }
    let mut counts = parse(&stdout);
    counts.ok = out.status.success();
    Ok(counts)
}

/// Sums `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
pub fn parse(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result:"))
    {
        for part in line.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            match what {
                "passed" => c.passed += n,
                "failed" => c.failed += n,
                "ignored" => c.ignored += n,
                _ => {}
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines() {
        let out = "running 3 tests\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.1s\n\
                   test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(
            parse(out),
            Counts {
                passed: 8,
                failed: 2,
                ignored: 1,
                ok: false
            }
        );
        assert_eq!(parse("nothing here"), Counts::default());
    }
}

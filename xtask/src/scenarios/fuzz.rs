//! Bounded fuzzing in the test run:
//! - `fuzz-ring`: libFuzzer drives the ring crate while a hostile peer writes arbitrary bytes
//!   anywhere in the shared region between operations (`fuzz/fuzz_targets/ring_hostile_peer.rs`);
//!   any panic, out-of-bounds access or a received message that was never sent fails it.
//! - `fuzz-bulk`: a hostile peer returns made-up bulk descriptors, hands out made-up buffers
//!   and scribbles over a channel's bulk area between operations
//!   (`fuzz/fuzz_targets/bulk_hostile_peer.rs`): no panic, no write outside the area, no page
//!   lent twice, every unscribbled buffer read back intact.
//! - `fuzz-firewall`: arbitrary frames from arbitrary ports into the firewall engine, the
//!   clock advancing and the uplink toggling (`fuzz/fuzz_targets/firewall_frames.rs`),
//!   seeded with `fuzz/seeds/firewall_frames/`.
//! - `fuzz-sysdesc`: arbitrary bytes into the system-description compiler, seeded with
//!   `systems/` and a dictionary of its words (`fuzz/fuzz_targets/system_description.rs`):
//!   no panic, and every diagnostic located, keyed and free of control characters.
//! - `fuzz-filecopy`: arbitrary bytes as a `qubes.Filecopy` stream into the receiver, whose
//!   incoming folder holds planted symbolic links (`fuzz/fuzz_targets/filecopy_receive.rs`,
//!   dictionary `fuzz/filecopy_receive.dict`): no panic, nothing outside the folder changed,
//!   nothing planted changed, only files and directories made, no temporary file left.
//! - `fuzz-qrexec-agent`: a hostile admin qube's messages (raw bytes and well-formed
//!   messages about calls in use) into the agent's qrexec core, between anything the
//!   daemon does (`fuzz/fuzz_targets/qrexec_agent.rs`): no panic, at most `MAX_CALLS`
//!   calls, at most a window buffered per stream plus the bounded outbox.
//! - `fuzz-qrexec-relay`: arbitrary bytes as a script of every qube's qrexec messages, resets,
//!   ticks and ring sizes into the admin qube's relay (`fuzz/fuzz_targets/qrexec_relay.rs`):
//!   no panic, bounded calls, no call's bytes reach a qube that is not its other end.
//! - `fuzz-block`: a hostile client's bytes as block requests, judged against several
//!   volumes and pools (`fuzz/fuzz_targets/block_requests.rs`, seeded with
//!   `fuzz/seeds/block_requests/`): no panic, every accepted request inside its volume and
//!   pool, nothing written to a read-only volume.
//! - `fuzz-disk`: arbitrary bytes as the start of the storage qube's disk, half of them
//!   with a correct checksum (`fuzz/fuzz_targets/disk_layout.rs`, seeded with
//!   `fuzz/seeds/disk_layout/`): no panic, every layout accepted is what its bytes encode,
//!   its volumes inside the disk and apart.
//!
//! `BULKHEAD_FUZZ_SECONDS` sets each one's budget (default 60 for the ring, half for the
//! others).

use super::Scenario;
use anyhow::{Context, Result, bail};
use std::process::Command;

pub const FUZZ_RING: Scenario = Scenario {
    name: "fuzz-ring",
    about: "libFuzzer: a hostile peer scribbles over the ring between operations (bounded time)",
    run: || fuzz("ring_hostile_peer", 60),
};

pub const FUZZ_BULK: Scenario = Scenario {
    name: "fuzz-bulk",
    about: "libFuzzer: a hostile peer forges bulk descriptors and scribbles the bulk area (bounded time)",
    run: || fuzz("bulk_hostile_peer", 30),
};

pub const FUZZ_GUI: Scenario = Scenario {
    name: "fuzz-gui",
    about: "libFuzzer: hostile GUI messages, clicks and keys into the gui qube's desktop (bounded time)",
    run: || fuzz("gui_messages", 30),
};

pub const FUZZ_FIREWALL: Scenario = Scenario {
    name: "fuzz-firewall",
    about: "libFuzzer: arbitrary frames from every port into the firewall engine (bounded time)",
    run: || {
        fuzz_with(
            "firewall_frames",
            30,
            // New inputs go to the first folder; the seeds (one per case of issue #18,
            // written by the engine's tests/fuzz_seeds.rs) are read, never written.
            &["fuzz/corpus/firewall_frames", "fuzz/seeds/firewall_frames"],
            &[],
        )
    },
};

pub const FUZZ_SYSDESC: Scenario = Scenario {
    name: "fuzz-sysdesc",
    about: "libFuzzer: arbitrary bytes as a system description (no panic, every problem located)",
    run: || {
        fuzz_with(
            "system_description",
            30,
            // New inputs go to the first folder; `systems/` (read, never written) seeds it.
            &["fuzz/corpus/system_description", "systems"],
            // A slow input (the cubic netvm-cycle search took 22 s) is a finding too.
            &["-dict=fuzz/system_description.dict", "-timeout=10"],
        )
    },
};

pub const FUZZ_QREXEC_RELAY: Scenario = Scenario {
    name: "fuzz-qrexec-relay",
    about: "libFuzzer: every qube's qrexec messages into the admin qube's relay (no bytes reach a third qube)",
    run: || fuzz("qrexec_relay", 30),
};

pub const FUZZ_FILECOPY: Scenario = Scenario {
    name: "fuzz-filecopy",
    about: "libFuzzer: arbitrary bytes as a file-copy stream (nothing leaves the incoming folder)",
    run: || {
        fuzz_with(
            "filecopy_receive",
            30,
            &[],
            &["-dict=fuzz/filecopy_receive.dict"],
        )
    },
};

pub const FUZZ_QREXEC_AGENT: Scenario = Scenario {
    name: "fuzz-qrexec-agent",
    about: "libFuzzer: a hostile admin qube's messages into the agent's qrexec core (bounded memory)",
    run: || fuzz("qrexec_agent", 30),
};

pub const FUZZ_BLOCK: Scenario = Scenario {
    name: "fuzz-block",
    about: "libFuzzer: a hostile client's block requests against the storage protocol's check (bounded time)",
    run: || {
        fuzz_with(
            "block_requests",
            30,
            // The seeds (written by bulkhead-abi's block tests) are read, never written.
            &["fuzz/corpus/block_requests", "fuzz/seeds/block_requests"],
            &[],
        )
    },
};

pub const FUZZ_DISK: Scenario = Scenario {
    name: "fuzz-disk",
    about: "libFuzzer: arbitrary bytes as the storage qube's disk layout (bounded time)",
    run: || {
        fuzz_with(
            "disk_layout",
            30,
            // The seeds (written by bulkhead-abi's disk tests) are read, never written.
            &["fuzz/corpus/disk_layout", "fuzz/seeds/disk_layout"],
            &[],
        )
    },
};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo +nightly fuzz` needs a nightly toolchain (for the sanitizer flags) and cargo-fuzz.
/// `Ok(false)`: no nightly toolchain, and none can be fetched here.
fn ensure_tools() -> Result<bool> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        return Ok(false);
    }
    let fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output();
    if fuzz.is_ok_and(|o| o.status.success()) {
        return Ok(true);
    }
    println!("   installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let status = Command::new(cargo())
        .args(["install", "cargo-fuzz", "--locked", "--quiet"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("could not install cargo-fuzz; run `cargo install cargo-fuzz --locked`");
    }
    Ok(true)
}

/// Reads libFuzzer's `Done N runs in S second(s)` line.
fn runs(stderr: &str) -> Option<u64> {
    let line = stderr.lines().rev().find(|l| l.starts_with("Done "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fuzz(target: &str, default_seconds: u64) -> Result<String> {
    fuzz_with(target, default_seconds, &[], &[])
}

/// Runs `target` for its budget over the corpus folders `corpus` (none: cargo fuzz's own),
/// with the extra libFuzzer flags `flags`.
fn fuzz_with(
    target: &str,
    default_seconds: u64,
    corpus: &[&str],
    flags: &[&str],
) -> Result<String> {
    if !ensure_tools()? {
        return Ok(
            "skipped: fuzzing needs a nightly toolchain (`rustup toolchain install nightly`)"
                .into(),
        );
    }
    let seconds: u64 = std::env::var("BULKHEAD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seconds);
    let root = crate::workspace_root();
    if let Some(first) = corpus.first() {
        let dir = root.join(first);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = Command::new("cargo")
        .current_dir(&root)
        .args(["+nightly", "fuzz", "run", target, "--fuzz-dir", "fuzz"])
        .args(corpus)
        .arg("--")
        .args(flags)
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        .output()
        .context("running cargo fuzz")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("the fuzzer found a problem:\n{}", tail.join("\n"));
    }
    let n = runs(&stderr).map_or("?".to_string(), |n| n.to_string());
    Ok(format!("{n} runs in {seconds} s, no crash"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_run_count() {
        let err = "#1024 pulse cov: 10\nDone 123456 runs in 61 second(s)\n";
        assert_eq!(runs(err), Some(123456));
        assert_eq!(runs("nothing"), None);
    }
}

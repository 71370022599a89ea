//! Linux AppVMs on the hypervisor: one boots to agent-ready and reaches a host server
//! through sys-firewall and sys-net while its rules block another port (`appvm-network`);
//! a kernel panic stops only the AppVM that panicked (`appvm-crash`); two disposables in a
//! row share nothing (`disposables`). Skipped only when Debian's kernel package cannot be
//! fetched (as `appvm-template`).

use super::hostnet::HostServices;
use super::network::{boot_until_exited, exit_status, expect_system_qubes_kept_running, saw};
use super::{Scenario, boots, expect};
use crate::appvm;
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const APPVM_NETWORK: Scenario = Scenario {
    name: "appvm-network",
    about: "a Linux AppVM boots to agent-ready and talks TCP to the host through sys-firewall and sys-net; a denied port stays unreachable",
    run: network,
};

pub const APPVM_CRASH: Scenario = Scenario {
    name: "appvm-crash",
    about: "a kernel panic (triple fault) in one AppVM stops that AppVM only",
    run: crash,
};

pub const DISPOSABLES: Scenario = Scenario {
    name: "disposables",
    about: "two disposables in a row: the second finds nothing of the first, whose memory reads back zero",
    run: disposables,
};

/// `Some(note)` when the scenario must be skipped.
pub(super) fn skip() -> Option<String> {
    appvm::kernel_available()
        .err()
        .map(|why| format!("skipped: Debian's kernel package is not available here: {why}"))
}

/// The `qube NAME: agent ready after ...` line of `qube`.
fn ready_figures(out: &BootOutcome, qube: &str) -> Option<String> {
    let marker = format!("qube {qube}: agent ready after ");
    out.lines
        .iter()
        .find_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
}

fn network() -> Result<String> {
    if let Some(note) = skip() {
        return Ok(note);
    }
    let host = HostServices::start()?;
    let out = boot_until_exited(
        "systems/tests/appvm-network.toml",
        "appvm-network",
        &["work"],
        600,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let c = &host.counters;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    // (`out.ready` forgets a qube once it exits; the line stays.)
    expect(ready_figures(&out, "work").is_some(), || {
        "the AppVM never reported agent-ready".into()
    })?;
    expect_system_qubes_kept_running(&out)?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!(
            "the AppVM did not power off cleanly: exited {:?}, stopped {:?}",
            out.exited, out.stopped
        )
    })?;
    expect(saw(&out, &["work", "selftest: dns 1 answers"]), || {
        "the AppVM did not resolve the test name through the virtual DNS".into()
    })?;
    expect(
        saw(
            &out,
            &["work", "selftest: echo reply: ack hello-from-appvm"],
        ),
        || "the AppVM's TCP exchange with the host failed".into(),
    )?;
    expect(c.echo_sessions.load(Ordering::Relaxed) >= 1, || {
        "the host's echo server saw no complete session".into()
    })?;
    expect(
        saw(&out, &["work", "selftest: denied port blocked"]),
        || "the AppVM reached (or did not try) the denied port".into(),
    )?;
    expect(c.denied_connections.load(Ordering::Relaxed) == 0, || {
        "a connection to the denied port reached the host".into()
    })?;
    expect(
        saw(
            &out,
            &["firewall", "dropped from client work: drop rule", ":5556"],
        ),
        || "the firewall did not log dropping the AppVM's packet to the denied port".into(),
    )?;
    let figures = ready_figures(&out, "work").unwrap_or_else(|| "?".into());
    Ok(format!(
        "agent ready after {figures}; wall {:.1} s",
        out.wall.as_secs_f64()
    ))
}

fn crash() -> Result<String> {
    if let Some(note) = skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-crash.toml")?;
    let opts = boots::options(&a, "max", 600, "appvm-crash");
    // Run until the doomed AppVM stopped, the other AppVM is ready, and the witness has
    // passed five more KERNEL_GS_BASE probes after the stop.
    let mut stopped = false;
    let mut beats_after = 0;
    let mut work_ready = false;
    let out = qemu::boot(&opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_)) => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) if qube == "witness" => return Control::Stop,
            Some(HvEvent::Stopped { qube, .. }) if qube == "doomed" => stopped = true,
            Some(HvEvent::Ready(q)) if q == "work" => work_ready = true,
            _ => {}
        }
        if stopped
            && e.line.source.as_deref() == Some("witness")
            && e.line.body.contains("KERNEL_GS_BASE is 0")
        {
            beats_after += 1;
        }
        Control::stop_if(stopped && work_ready && beats_after >= 5)
    })?;
    boots::finished(&out)?;
    expect(
        saw(&out, &["doomed", "selftest: panicking the kernel"]),
        || "the doomed AppVM never started its panic".into(),
    )?;
    let reason = out
        .stopped
        .iter()
        .find(|(q, _)| q == "doomed")
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    expect(reason.contains("triple fault"), || {
        format!("the doomed AppVM was not stopped by its triple fault: {reason:?}")
    })?;
    expect(out.stopped.iter().all(|(q, _)| q == "doomed"), || {
        format!("another qube was stopped: {:?}", out.stopped)
    })?;
    expect(out.ready.contains("work"), || {
        "the other AppVM did not reach agent-ready".into()
    })?;
    expect(!out.exited.iter().any(|(q, _)| q == "witness"), || {
        "the witness exited: a Linux kernel's KERNEL_GS_BASE reached it".into()
    })?;
    Ok(format!(
        "doomed stopped ({reason}); work ready, witness probed {beats_after} times after"
    ))
}

fn disposables() -> Result<String> {
    disposables_on("systems/tests/disposables.toml", 1, "disposables")
}

/// Boots `system` (the disposables system, possibly pinned) on `cpus` CPUs and checks that
/// the second disposable found nothing of the first, whose memory read back zero.
pub fn disposables_on(system: &str, cpus: u32, log: &str) -> Result<String> {
    if let Some(note) = skip() {
        return Ok(note);
    }
    let out = super::network::boot_until_exited_on(system, log, &["requester"], 900, (cpus, None))?;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect(exit_status(&out, "requester") == Some(0), || {
        format!("the requester did not exit 0: {:?}", out.exited)
    })?;
    let started = out
        .lines
        .iter()
        .filter(|l| l.contains("qube disp started on request"))
        .count();
    expect(started == 2, || {
        format!("the disposable started {started} times, not 2")
    })?;
    let wiped = out
        .lines
        .iter()
        .filter(|l| l.contains("qube disp: memory wiped") && l.contains("read back: all zero"))
        .count();
    expect(wiped == 2, || {
        format!("{wiped} wipes of the disposable's memory read back all zero, not 2")
    })?;
    expect(
        saw(&out, &["requester", "disposable run 1", "secret seen true"]),
        || "the first disposable did not print its secret".into(),
    )?;
    expect(
        saw(
            &out,
            &[
                "requester",
                "disposable run 2",
                "secret seen false",
                "marker absent true",
            ],
        ),
        || "the second disposable saw the first one's file (or did not look)".into(),
    )?;
    let figures: Vec<String> = out
        .lines
        .iter()
        .filter_map(|l| {
            l.split_once("qube disp: agent ready after ")
                .map(|(_, r)| r.to_string())
        })
        .collect();
    Ok(format!("disposable ready after: {}", figures.join(" | ")))
}

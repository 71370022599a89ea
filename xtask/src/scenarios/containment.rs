//! Containment: every misbehaviour of the test qube stops (or, for a spinning qube,
//! preempts) only that qube, with one log line naming it and the reason, while the system
//! qubes and a heartbeat qube keep running. System: `systems/tests/containment.toml`.

use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::Result;

pub const CONTAINMENT: Scenario = Scenario {
    name: "containment",
    about: "each misbehaving test qube is stopped or preempted alone; the rest keep running",
    run: containment,
};

/// Qubes that must be stopped, and words the reason must contain.
const STOPS: &[(&str, &str)] = &[
    ("t-triple", "triple fault"),
    // The guard page below the stack: the overflow faults instead of running into the heap.
    ("t-stack", "triple fault"),
    ("t-badcall", "unknown hypercall 0xdead"),
    (
        "t-badptr",
        "console_write: buffer 0x401000+0x10 is outside its memory",
    ),
    ("t-huge", "length 4097 is over the limit of 4096"),
    (
        "t-foreign",
        "guest-physical 0xc0000000, which it does not own",
    ),
    ("t-io", "I/O port access (out to port 0x80) is not allowed"),
    ("t-msr", "rdmsr 0xc0000080 is not allowed"),
    ("t-vmrun", "VMRUN is not allowed"),
    ("t-cr4", "changing CR4 is not allowed"),
    ("t-wbinvd", "WBINVD is not allowed"),
    ("t-rdpmc", "RDPMC is not allowed"),
    ("t-invlpga", "INVLPGA is not allowed"),
];

/// Qubes that must stay up throughout.
const HEALTHY: &[&str] = &["net", "firewall", "usb", "gui", "heartbeat", "t-spin"];

/// Heartbeats required after every misbehaviour has been dealt with.
const BEATS_AFTER: usize = 10;

/// Each `(qube, words)`: exactly one stop line for the qube, its reason containing `words`.
pub fn check_stops(out: &BootOutcome, stops: &[(&str, &str)]) -> Result<()> {
    for (qube, words) in stops {
        let lines: Vec<_> = out.stopped.iter().filter(|(q, _)| q == qube).collect();
        expect(lines.len() == 1, || {
            format!("{qube}: expected one stop line, got {lines:?}")
        })?;
        expect(lines[0].1.contains(words), || {
            format!("{qube}: reason {:?} lacks {words:?}", lines[0].1)
        })?;
    }
    Ok(())
}

/// None of `qubes` was stopped or exited.
pub fn check_unhurt(out: &BootOutcome, qubes: &[&str]) -> Result<()> {
    for qube in qubes {
        let hurt =
            out.stopped.iter().any(|(q, _)| q == qube) || out.exited.iter().any(|(q, _)| q == qube);
        expect(!hurt, || {
            format!("{qube} was stopped, but it did nothing wrong")
        })?;
    }
    Ok(())
}

fn containment() -> Result<String> {
    run("systems/tests/containment.toml", 1, "containment")
}

/// Boots `system` (the containment system, possibly with its qubes pinned) on `cpus` CPUs
/// and checks that every misbehaviour was contained.
pub fn run(system: &str, cpus: u32, log: &str) -> Result<String> {
    let a = boots::assemble(system)?;
    let mut opts = boots::options(&a, "max", 120, log);
    opts.smp = cpus;
    let mut settled = false;
    let mut beats_after = 0;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        if !settled {
            settled = e.line.text.contains("qube t-exit not restarted");
        } else if e.line.source.as_deref() == Some("heartbeat") && e.line.body.contains("heartbeat")
        {
            beats_after += 1;
        }
        Control::stop_if(beats_after >= BEATS_AFTER)
    })?;
    boots::finished(&out)?;

    check_stops(&out, STOPS)?;
    check_unhurt(&out, HEALTHY)?;
    for qube in HEALTHY {
        expect(out.ready.contains(*qube), || {
            format!("{qube} never reported ready")
        })?;
    }
    let spinning = out
        .lines
        .iter()
        .position(|l| l.contains("t-spin") && l.contains("spinning"));
    let spinning = spinning.ok_or_else(|| anyhow::anyhow!("t-spin never started spinning"))?;
    let beats = out.lines[spinning..]
        .iter()
        .filter(|l| l.starts_with("heartbeat") && l.contains("heartbeat "))
        .count();
    expect(beats >= BEATS_AFTER, || {
        format!("only {beats} heartbeats while t-spin spun")
    })?;

    let panics = out
        .exited
        .iter()
        .filter(|(q, s)| q == "t-panic" && *s == 101)
        .count();
    expect(panics == 1, || {
        "t-panic did not exit once with the panic status 101".into()
    })?;
    expect(
        out.lines
            .iter()
            .any(|l| l.contains("panic: testing: panic on purpose")),
        || "t-panic's panic message was not printed".into(),
    )?;
    let exits = out
        .exited
        .iter()
        .filter(|(q, s)| q == "t-exit" && *s == 3)
        .count();
    let restarts: Vec<u32> = out
        .restarts
        .iter()
        .filter(|(q, _)| q == "t-exit")
        .map(|(_, n)| *n)
        .collect();
    expect(exits == 4 && restarts == [1, 2, 3], || {
        format!(
            "t-exit: expected 4 exits and restarts 1..3, got {exits} exits, restarts {restarts:?}"
        )
    })?;
    let negative = out.exited.iter().any(|(q, s)| q == "t-neg" && *s == -1);
    expect(negative, || {
        "t-neg's exit with status -1 was not reported as `exited with status -1`".into()
    })?;
    let alloc_ok = out.exited.iter().any(|(q, s)| q == "t-alloc" && *s == 0);
    expect(alloc_ok, || {
        "t-alloc did not survive its allocation storm".into()
    })?;
    Ok(format!(
        "{} misbehaviours contained, {beats} heartbeats during the spin",
        STOPS.len() + 4
    ))
}

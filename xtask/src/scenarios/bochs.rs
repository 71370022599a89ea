//! Bochs scenarios: the GRUB ISO boots the default system under Intel VMX (model
//! `corei7_sandy_bridge_2600k`) and under AMD SVM with NRIP_SAVE (model `ryzen`), and a
//! small set of misbehaving qubes is contained under VMX. Judged by the console only; Bochs
//! runs about 80 million instructions per second, so each boots little.
//!
//! If Bochs cannot be installed, the scenarios say so and are skipped.

use super::{Scenario, boots, containment, expect};
use crate::bochs::{self, BochsOptions, MODEL_SVM, MODEL_VMX};

/// VMX with EPT and VPID but without unrestricted guest (Nehalem).
const MODEL_VMX_NO_UNRESTRICTED: &str = "corei5_lynnfield_750";
/// VMX without EPT (Penryn).
const MODEL_VMX_NO_EPT: &str = "core2_penryn_t9600";
use crate::bundle::Assembled;
use crate::iso;
use crate::qemu::{Control, HvEvent};
use anyhow::{Result, bail};
use std::time::Duration;

pub const VMX: Scenario = Scenario {
    name: "bochs-vmx",
    about: "Bochs, Intel VMX (corei7_sandy_bridge_2600k): the GRUB ISO boots to all qubes ready",
    run: || boot_default(MODEL_VMX, "backend VMX", &["EPT yes"]),
};

pub const SVM_RYZEN: Scenario = Scenario {
    name: "bochs-svm-ryzen",
    about: "Bochs, AMD SVM with NRIP_SAVE (ryzen): the GRUB ISO boots to all qubes ready",
    run: || boot_default(MODEL_SVM, "backend SVM", &["NRIP_SAVE yes"]),
};

pub const VMX_NEHALEM: Scenario = Scenario {
    name: "bochs-vmx-nehalem",
    about: "Bochs, Intel VMX without unrestricted guest (corei5_lynnfield_750): all qubes ready",
    run: || {
        boot_default(
            MODEL_VMX_NO_UNRESTRICTED,
            "backend VMX",
            &["unrestricted guest no"],
        )
    },
};

pub const VMX_NO_EPT: Scenario = Scenario {
    name: "bochs-vmx-no-ept",
    about: "Bochs, Intel VMX without EPT (core2_penryn_t9600): refused with the reason, no qube runs",
    run: refuse_no_ept,
};

pub const VMX_CHANNELS: Scenario = Scenario {
    name: "bochs-channels",
    about: "Bochs, Intel VMX: channel ping-pong (poll and event) intact; a snoop is stopped by EPT",
    run: channels,
};

pub const VMX_SMP: Scenario = Scenario {
    name: "bochs-smp",
    about: "Bochs, Intel VMX, 2 CPUs: both start VMX; ping-pong pairs split over them intact; a snoop on CPU 1 is stopped by EPT",
    run: channels_smp,
};

pub const VMX_CONTAINMENT: Scenario = Scenario {
    name: "bochs-containment",
    about: "Bochs, Intel VMX: each misbehaving qube is stopped or preempted alone",
    run: containment,
};

/// Wall-time limit of one Bochs boot (it needs 5-15 s).
const TIMEOUT: Duration = Duration::from_secs(150);

/// Assembles `system`, makes its ISO and returns Bochs options for `model`; `None` (with
/// the reason) when Bochs is not there and cannot be installed.
pub(super) fn prepare(
    system: &str,
    model: &str,
    log: &str,
) -> Result<Result<(Assembled, BochsOptions), String>> {
    if let Err(e) = bochs::ensure() {
        return Ok(Err(format!("{e:#}")));
    }
    let a = boots::assemble(system)?;
    // The ISO lives in the run's scratch folder, so no other run can rewrite it under Bochs.
    let dir = bochs::scratch_dir(log);
    std::fs::create_dir_all(&dir)?;
    // GRUB stays in text mode: Bochs' term display cannot show the framebuffer's mode.
    let path = iso::make_with(&a, &dir.join(format!("{}.iso", a.name)), iso::Video::Text)?;
    let mut opts = BochsOptions::new(path, model, a.boot_options().ram_mib, dir);
    opts.timeout = TIMEOUT;
    let logs = crate::bundle::out_dir().join("logs");
    let _ = std::fs::create_dir_all(&logs);
    opts.serial_log = Some(logs.join(format!("{log}.log")));
    Ok(Ok((a, opts)))
}

pub(super) fn skipped(why: &str) -> Result<String> {
    println!("   SKIPPED: Bochs is not installed and cannot be: {why}");
    Ok("skipped: Bochs is not available".into())
}

/// Fails with the end of Bochs' own log when the boot went wrong before the console said so.
pub(super) fn check_boot(run: &bochs::Outcome, opts: &BochsOptions) -> Result<()> {
    let out = &run.boot;
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    if out.timed_out {
        let tail = run.bochs_log.join("\n      ");
        bail!(
            "timed out after {} s; last console line {:?}; Bochs says:\n      {tail}",
            opts.timeout.as_secs(),
            out.lines.last()
        );
    }
    Ok(())
}

fn boot_default(model: &str, backend: &str, features: &[&str]) -> Result<String> {
    let (a, opts) = match prepare(
        "systems/tests/services.toml",
        model,
        &format!("bochs-{model}"),
    )? {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    let (mut hv_at, mut ready_at) = (None, None);
    let run = bochs::boot(&opts, |e| {
        if hv_at.is_none() && e.line.is_hv() {
            hv_at = Some(e.at);
        }
        let done = e.line.text.contains("qubes ready:");
        if done {
            ready_at = Some(e.at);
        }
        Control::stop_if(done || matches!(e.hv, Some(HvEvent::Panic(_))))
    })?;
    check_boot(&run, &opts)?;
    let out = run.boot;
    let banner = out.lines.iter().find(|l| l.contains(backend));
    let banner = banner.ok_or_else(|| anyhow::anyhow!("no `{backend}` line: wrong backend?"))?;
    for f in features {
        expect(banner.contains(f), || format!("{banner:?} lacks {f:?}"))?;
    }
    let (exits, ms) = boots::check_all_ready(&out, &a.qube_names(), "boot: multiboot2")?;
    let ready = ready_at.unwrap_or(out.wall);
    let hv = hv_at.unwrap_or_default();
    Ok(format!(
        "all {} qubes ready: {exits} VM exits, {ms} ms Bochs time (<= {} M instructions); \
         wall {:.1} s ({:.1} s BIOS + GRUB, {:.1} s hypervisor)",
        a.qube_names().len(),
        ms * opts.ips / 1000 / 1_000_000,
        ready.as_secs_f64(),
        hv.as_secs_f64(),
        (ready - hv).as_secs_f64(),
    ))
}

fn refuse_no_ept() -> Result<String> {
    let (_, opts) = match prepare(
        "systems/tests/services.toml",
        MODEL_VMX_NO_EPT,
        "bochs-no-ept",
    )? {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    let run = bochs::boot(&opts, |e| {
        Control::stop_if(matches!(e.hv, Some(HvEvent::Halting)))
    })?;
    let out = &run.boot;
    expect(!out.timed_out, || {
        format!("timed out; last console line {:?}", out.lines.last())
    })?;
    const WHY: &str = "no usable virtualisation: the CPU has VT-x but no EPT";
    let said = out.panic.as_deref().unwrap_or_default();
    expect(said.contains(WHY), || {
        format!("expected the refusal {WHY:?}, got panic {said:?}")
    })?;
    expect(out.ready.is_empty(), || "a qube ran without EPT".into())?;
    Ok(format!("refused: {said}"))
}

fn channels() -> Result<String> {
    channels_on("systems/tests/bochs-channels.toml", 1, "bochs-channels")
}

/// Under VMX, two CPUs: each ping-pong pair split over CPUs 0 and 1 (each qube's VMCS is
/// written on the boot CPU, cleared, and launched on its own).
fn channels_smp() -> Result<String> {
    let pins = [
        ("ping-poll", "[0]"),
        ("pong-poll", "[1]"),
        ("ping-event", "[1]"),
        ("pong-event", "[0]"),
        ("snoop", "[1]"),
    ];
    let system = super::smp::pinned(
        "systems/tests/bochs-channels.toml",
        "bochs-channels.toml",
        &pins,
    )?;
    let summary = channels_on(&system.to_string_lossy(), 2, "bochs-smp")?;
    Ok(format!("2 CPUs, each pair split over both: {summary}"))
}

fn channels_on(system: &str, cpus: u32, log: &str) -> Result<String> {
    let (_, mut opts) = match prepare(system, MODEL_VMX, log)? {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    opts.cpus = cpus;
    let mut done = 0;
    let run = bochs::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        match &e.hv {
            Some(HvEvent::Exited { qube, .. }) if qube.starts_with("ping-") => done += 1,
            Some(HvEvent::Stopped { qube, .. }) if qube == "snoop" => done += 1,
            _ => {}
        }
        Control::stop_if(done >= 3)
    })?;
    check_boot(&run, &opts)?;
    let out = run.boot;
    let mut notes = Vec::new();
    for mode in ["poll", "event"] {
        let ping = format!("ping-{mode}");
        let ok = out.exited.iter().any(|(q, s)| *q == ping && *s == 0);
        expect(ok, || format!("{ping} did not exit with status 0"))?;
        let report = out
            .lines_from(&ping)
            .into_iter()
            .find(|l| l.contains("round trips in order and intact"));
        let report = report.ok_or_else(|| anyhow::anyhow!("{ping}: no report line"))?;
        let exits = report
            .split(", ")
            .find(|p| p.contains("exits of this qube"))
            .and_then(|p| p.split_whitespace().next())
            .unwrap_or("?");
        notes.push(format!("{mode}: {exits} exits of ping per round trip"));
    }
    let snoop = out.stopped.iter().find(|(n, _)| n == "snoop");
    let snoop = snoop.map(|(_, r)| r.as_str()).unwrap_or_default();
    expect(snoop.contains("which it does not own"), || {
        format!("snoop was not stopped for reading a foreign window: {snoop:?}")
    })?;
    let hurt: Vec<_> = out.stopped.iter().filter(|(n, _)| n != "snoop").collect();
    expect(hurt.is_empty(), || format!("stopped: {hurt:?}"))?;
    Ok(format!(
        "200 round trips intact in each mode ({})",
        notes.join(", ")
    ))
}

/// Qubes that must be stopped under VMX, and words the reason must contain.
const STOPS: &[(&str, &str)] = &[
    ("t-triple", "triple fault"),
    ("t-badcall", "unknown hypercall 0xdead"),
    (
        "t-foreign",
        "guest-physical 0xc0000000, which it does not own",
    ),
    ("t-io", "I/O port access (out to port 0x80) is not allowed"),
    ("t-msr", "rdmsr 0xc0000080 is not allowed"),
    ("t-vmrun", "triple fault"),
    (
        "t-badptr",
        "console_write: buffer 0x401000+0x10 is outside its memory",
    ),
    ("t-huge", "length 4097 is over the limit of 4096"),
    ("kbd", "I/O port access (in from port 0x61) is not allowed"),
];

/// Heartbeats required after every misbehaving qube has been stopped, while t-spin spins.
const BEATS_AFTER: usize = 5;

fn containment() -> Result<String> {
    let (_, opts) = match prepare(
        "systems/tests/bochs-containment.toml",
        MODEL_VMX,
        "bochs-containment",
    )? {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    let (mut stopped, mut exit_done) = (0, false);
    let mut beats_after = 0;
    let run = bochs::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        if matches!(e.hv, Some(HvEvent::Stopped { .. })) {
            stopped += 1;
        } else if e.line.text.contains("qube t-exit not restarted") {
            exit_done = true;
        } else if stopped >= STOPS.len()
            && exit_done
            && e.line.source.as_deref() == Some("heartbeat")
            && e.line.body.contains("heartbeat ")
        {
            beats_after += 1;
        }
        Control::stop_if(beats_after >= BEATS_AFTER)
    })?;
    check_boot(&run, &opts)?;
    let out = run.boot;
    expect(out.lines.iter().any(|l| l.contains("backend VMX")), || {
        "no `backend VMX` line".into()
    })?;
    containment::check_stops(&out, STOPS)?;
    containment::check_unhurt(&out, &["heartbeat", "t-spin"])?;
    // The qube that owns ports: its VMX I/O bitmaps pass 0x64, not 0x61.
    let (value, many) = super::ioports::check_kbd(&out, 200)?;
    for qube in ["heartbeat", "t-spin"] {
        expect(out.ready.contains(qube), || {
            format!("{qube} never reported ready")
        })?;
    }
    expect(
        out.lines
            .iter()
            .any(|l| l.contains("t-spin") && l.contains("spinning")),
        || "t-spin never started spinning".into(),
    )?;
    let panics = out
        .exited
        .iter()
        .filter(|(q, s)| q == "t-panic" && *s == 101);
    expect(panics.count() == 1, || {
        "t-panic did not exit once with the panic status 101".into()
    })?;
    // Each restart starts the qube's VMCS over: VMCLEAR, every field again, VMLAUNCH.
    let exits = out.exited.iter().filter(|(q, s)| q == "t-exit" && *s == 3);
    let restarts: Vec<u32> = out
        .restarts
        .iter()
        .filter(|(q, _)| q == "t-exit")
        .map(|(_, n)| *n)
        .collect();
    let exits = exits.count();
    expect(exits == 4 && restarts == [1, 2, 3], || {
        format!(
            "t-exit: expected 4 exits and restarts 1..3, got {exits} exits, restarts {restarts:?}"
        )
    })?;
    Ok(format!(
        "{} misbehaviours contained, t-exit restarted 3 times, {beats_after} heartbeats after, \
         0x64 read {value} through the I/O bitmaps, 200 reads in {many}, {:.1} s wall",
        STOPS.len() + 2,
        out.wall.as_secs_f64()
    ))
}

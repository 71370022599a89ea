//! Linux under Intel VMX, in Bochs: two Debian kernels boot side by side to agent-ready and
//! then keep busy, beside a unikernel that checks no Linux kernel's KERNEL_GS_BASE reaches
//! it. What it guards: the per-vCPU state VMX does not switch by itself (the syscall MSRs,
//! KERNEL_GS_BASE, CR2, the XSAVE state), which the VMX backend must (docs/vmx.md, "Linux
//! vCPUs"). Before keeping busy, both run the xstate probe for 3 s together
//! ([`super::xstate`]): the Sandy Bridge model has AVX, which they must see and keep.

use super::bochs::{check_boot, prepare, skipped};
use super::xstate::Probes;
use super::{Scenario, expect};
use crate::bochs::{self, MODEL_VMX};
use crate::qemu::{Control, HvEvent};
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::Duration;

pub const VMX_APPVM: Scenario = Scenario {
    name: "bochs-appvm",
    about: "Bochs, Intel VMX: two unmodified Debian kernels boot to agent-ready and keep busy beside a unikernel",
    run: appvm,
};

/// Wall-time limit (a pass takes about 90 s; a hang fails at the limit).
const TIMEOUT: Duration = Duration::from_secs(600);
/// The AppVMs of `systems/tests/bochs-appvm.toml`.
const APPVMS: [&str; 2] = ["work", "personal"];
/// KERNEL_GS_BASE probes the witness must pass while the AppVMs keep busy.
const PROBES: usize = 6;
/// Progress lines (20 program starts each) every AppVM must print while busy.
const BUSY_LINES: usize = 10;
/// Progress lines of one AppVM after which another that has not printed [`BUSY_LINES`] is
/// taken to be stuck (seen without CR2 switching: one guest looped on a page fault resolved
/// at the other guest's address, while the other printed hundreds of lines).
const STUCK_AFTER: usize = 5 * BUSY_LINES;
/// How long the two xstate probes (3 s each, `appvm.selftest=sleep:2,xstate:3,busy`) must
/// run at the same time; the AppVMs reach agent-ready about 1 s apart.
const XSTATE_TOGETHER: Duration = Duration::from_secs(1);

/// What the console said, counted while Bochs runs.
#[derive(Default)]
struct Seen {
    ready: usize,
    busy: BTreeMap<String, usize>,
    probes_while_busy: usize,
    program_failed: bool,
    xstate: Probes,
}

impl Seen {
    fn all_busy(&self) -> bool {
        self.busy.len() == APPVMS.len()
    }

    fn done(&self) -> bool {
        self.probes_while_busy >= PROBES && self.busy.values().all(|n| *n >= BUSY_LINES)
    }

    /// One AppVM went far while another did not get to [`BUSY_LINES`]: that one is stuck
    /// (both get the same share of the CPU).
    fn one_stuck(&self) -> bool {
        let most = self.busy.values().max().copied().unwrap_or_default();
        let least = self.busy.values().min().copied().unwrap_or_default();
        self.all_busy() && most >= STUCK_AFTER && least < BUSY_LINES
    }
}

fn appvm() -> Result<String> {
    if let Err(why) = crate::appvm::kernel_available() {
        return Ok(format!(
            "skipped: Debian's kernel package is not available here: {why}"
        ));
    }
    let (_, mut opts) = match prepare("systems/tests/bochs-appvm.toml", MODEL_VMX, "bochs-appvm")? {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    opts.timeout = TIMEOUT;
    let mut seen = Seen::default();
    let run = bochs::boot(&opts, |e| {
        let stop = matches!(
            e.hv,
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. } | HvEvent::Exited { .. })
        );
        let source = e.line.source.as_deref().unwrap_or_default();
        seen.xstate
            .see(e.line.source.as_deref(), &e.line.body, e.at);
        if e.line.text.contains(": agent ready after") {
            seen.ready += 1;
        } else if e.line.body.contains("selftest: a program failed") {
            seen.program_failed = true;
        } else if e.line.body.starts_with("selftest: busy ") {
            *seen.busy.entry(source.to_string()).or_default() += 1;
        } else if e.line.body.contains("selftest: spinning in user mode") {
            seen.busy.entry(source.to_string()).or_default();
        } else if seen.all_busy()
            && source == "witness"
            && e.line.body.contains("KERNEL_GS_BASE is 0")
        {
            seen.probes_while_busy += 1;
        }
        Control::stop_if(stop || seen.program_failed || seen.done() || seen.one_stuck())
    })?;
    check_boot(&run, &opts)?;
    let out = run.boot;
    expect(out.lines.iter().any(|l| l.contains("backend VMX")), || {
        "no `backend VMX` line".into()
    })?;
    expect(out.stopped.is_empty(), || {
        format!("stopped: {:?}", out.stopped)
    })?;
    expect(out.exited.is_empty(), || {
        format!("exited: {:?}", out.exited)
    })?;
    expect(!seen.program_failed, || {
        "a program in an AppVM failed (a page fault resolved with another guest's CR2?)".into()
    })?;
    expect(!seen.one_stuck(), || {
        format!(
            "an AppVM stopped making progress while the other went on: {:?} progress lines",
            seen.busy
        )
    })?;
    let mut figures = Vec::new();
    for qube in APPVMS {
        let marker = format!("qube {qube}: agent ready after ");
        let f = out
            .lines
            .iter()
            .find_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()));
        let f = f.ok_or_else(|| anyhow::anyhow!("AppVM {qube} never said `agent: ready`"))?;
        figures.push(format!("{qube}: {f}"));
        let busy = seen.busy.get(qube).copied().unwrap_or_default();
        expect(busy >= BUSY_LINES, || {
            format!("AppVM {qube} stopped starting programs after {busy} progress lines")
        })?;
    }
    expect(seen.probes_while_busy >= PROBES, || {
        "the witness unikernel stopped probing while the AppVMs were busy".into()
    })?;
    // Last, so that a hypervisor without XSAVE switching still has everything else checked.
    let xstate = seen.xstate.check(&APPVMS, XSTATE_TOGETHER)?;
    Ok(format!(
        "both AppVMs ready under VMX, xstate probes {xstate}, then busy: {} programs started, {} KERNEL_GS_BASE probes passed; {}; {:.0} s wall",
        seen.busy.values().sum::<usize>() * 20,
        seen.probes_while_busy,
        figures.join("; "),
        out.wall.as_secs_f64()
    ))
}

//! Linux AppVMs with two vCPUs on two CPUs, and a fault on a secondary vCPU contained to its
//! qube (`appvm-smp`, `systems/tests/appvm-smp.toml`, QEMU `-smp 3`, the qubes on CPUs 1 and 2).
//!
//! From the hypervisor's console, for each of the two AppVMs `work` and `doomed`: vCPU 0 is
//! where the placement line puts the qube (`smp: qubes placed (name:CPU) work:0 doomed:1`),
//! vCPU 1 is placed on the other CPU at boot (`qube work: vCPU 1 of 2 placed on CPU C`) and
//! starts there when Linux sends it a SIPI (`qube work: vCPU 1 started at SIPI vector 0xVV
//! on CPU C`).
//!
//! `work`, from its console, the agent's `cpu-probe` (`appvm.selftest=cpus`,
//! `linux-appvm/agent/src/cpuprobe.rs`): 2 CPUs online, a thread pinned to each saw its own
//! CPU, 2000 round trips between them through pipes (every hop wakes a thread asleep on the
//! other vCPU: an IPI between vCPUs) came back in order, `done (ok)`. Then it powers off
//! (ACPI S5) with status 0, and no line about it says stopped or triple fault.
//!
//! `doomed` (`appvm.selftest=panic-on:1`) panics its kernel from its CPU 1 (`selftest:
//! panicking the kernel on cpu 1`); `panic=-1 reboot=t` make that a triple fault on vCPU 1,
//! which the hypervisor's secondary vCPU reports (`qube doomed: vCPU 1: triple fault
//! (rip=0x...)`) and leaves to the primary, which stops the qube with it (`qube doomed
//! stopped: triple fault (rip=0x...)`, the same fault); `restart = "never"`, so it is not
//! restarted. The boot ends when `work` has exited and `doomed` has stopped.

use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent, Line};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

pub const APPVM_SMP: Scenario = Scenario {
    name: "appvm-smp",
    about: "Linux AppVMs with 2 vCPUs on 2 CPUs: vCPU 1 started by SIPI on the other CPU, a thread pinned to each CPU, 2000 IPI-woken round trips in order; a kernel panic on another AppVM's vCPU 1 (a triple fault there) stops that AppVM only",
    run,
};

/// The AppVM of `systems/tests/appvm-smp.toml` that runs the probe, and the vCPUs of each.
const QUBE: &str = "work";
const VCPUS: u32 = 2;
/// The AppVM that panics its kernel on its CPU [`PANIC_CPU`] (`appvm.selftest=panic-on:1`).
const DOOMED: &str = "doomed";
const PANIC_CPU: u32 = 1;
/// Round trips the probe makes (`cpuprobe::ROUND_TRIPS`).
const ROUND_TRIPS: u32 = 2000;
/// Wall-time limit: Linux boots to agent-ready in 30-60 s under TCG; the other AppVM
/// scenarios allow 600 s.
const TIMEOUT_S: u64 = 900;
/// What the probe's lines start with (`cpuprobe::PREFIX`).
const PROBE: &str = "selftest: cpus: ";

/// `qube NAME: vCPU V of N placed on CPU C` (a hypervisor line's body): (V, N, C).
fn placed(body: &str, qube: &str) -> Option<(u32, u32, u32)> {
    let rest = body.strip_prefix(&format!("qube {qube}: vCPU "))?;
    let (vcpu, rest) = rest.split_once(" of ")?;
    let (of, cpu) = rest.split_once(" placed on CPU ")?;
    Some((
        vcpu.parse().ok()?,
        of.parse().ok()?,
        cpu.trim().parse().ok()?,
    ))
}

/// `qube NAME: vCPU V started at SIPI vector 0xVV on CPU C` (a hypervisor line's body):
/// (V, vector, C).
fn started(body: &str, qube: &str) -> Option<(u32, u8, u32)> {
    let rest = body.strip_prefix(&format!("qube {qube}: vCPU "))?;
    let (vcpu, rest) = rest.split_once(" started at SIPI vector 0x")?;
    let (vector, cpu) = rest.split_once(" on CPU ")?;
    Some((
        vcpu.parse().ok()?,
        u8::from_str_radix(vector, 16).ok()?,
        cpu.trim().parse().ok()?,
    ))
}

/// The CPU the placement line (`smp: qubes placed (name:CPU) a:0 b:1`) gives `qube` (the
/// first number after its name, should more follow).
fn placement(body: &str, qube: &str) -> Option<u32> {
    let list = body.strip_prefix("smp: qubes placed (name:CPU)")?;
    list.split_whitespace().find_map(|w| {
        let cpu = w.strip_prefix(qube)?.strip_prefix(':')?;
        let digits = cpu.find(|c: char| !c.is_ascii_digit()).unwrap_or(cpu.len());
        cpu[..digits].parse().ok()
    })
}

/// `qube NAME: vCPU K: FAULT` (a hypervisor line's body, a secondary vCPU's fault):
/// (K, FAULT).
fn vcpu_fault<'a>(body: &'a str, qube: &str) -> Option<(u32, &'a str)> {
    let rest = body.strip_prefix("qube ")?.strip_prefix(qube)?;
    let (vcpu, fault) = rest.strip_prefix(": vCPU ")?.split_once(": ")?;
    Some((vcpu.parse().ok()?, fault))
}

/// Whether a hypervisor line's body is about `qube` (`qube NAME ...`, `qube NAME: ...`).
fn about(body: &str, qube: &str) -> bool {
    body.strip_prefix("qube ")
        .and_then(|r| r.strip_prefix(qube))
        .is_some_and(|r| r.starts_with([' ', ':']))
}

/// `selftest: panicking the kernel on cpu N` (the AppVM's console line's body): N.
fn panicking(body: &str) -> Option<u32> {
    body.strip_prefix("selftest: panicking the kernel on cpu ")?
        .parse()
        .ok()
}

/// The round-trip line: `N round trips between cpu A and cpu B in X ms, values all in
/// order` (after the prefix): (N, A, B, X, in order).
fn round_trips(rest: &str) -> Option<(u32, u32, u32, f64, bool)> {
    let (n, rest) = rest.split_once(" round trips between cpu ")?;
    let (a, rest) = rest.split_once(" and cpu ")?;
    let (b, rest) = rest.split_once(" in ")?;
    let (ms, rest) = rest.split_once(" ms, ")?;
    Some((
        n.parse().ok()?,
        a.parse().ok()?,
        b.parse().ok()?,
        ms.parse().ok()?,
        rest.trim() == "values all in order",
    ))
}

/// What the hypervisor said of one qube's vCPUs.
#[derive(Debug, Default)]
struct Vcpus {
    /// The qube's CPU in the placement line: its vCPU 0's.
    vcpu0: Option<u32>,
    /// vCPU 1's placement: (of how many, CPU).
    placed: Option<(u32, u32)>,
    /// vCPU 1's start: (SIPI vector, CPU).
    started: Option<(u8, u32)>,
}

impl Vcpus {
    /// Takes one hypervisor line's body, if it is about `qube`'s vCPUs.
    fn see(&mut self, body: &str, qube: &str) {
        if let Some(cpu) = placement(body, qube) {
            self.vcpu0 = Some(cpu);
        } else if let Some((1, of, cpu)) = placed(body, qube) {
            self.placed = Some((of, cpu));
        } else if let Some((1, vector, cpu)) = started(body, qube) {
            self.started = Some((vector, cpu));
        }
    }

    /// Judges them: vCPU 1 placed and started on a CPU other than vCPU 0's. Returns (vCPU
    /// 0's CPU, vCPU 1's, the SIPI vector).
    fn check(&self, qube: &str) -> Result<(u32, u32, u8)> {
        let vcpu0 = self.vcpu0.with_context(|| {
            format!("no `smp: qubes placed (name:CPU) ... {qube}:C` line: did both CPUs start?")
        })?;
        let Some((of, cpu)) = self.placed else {
            bail!(
                "no `qube {qube}: vCPU 1 of {VCPUS} placed on CPU C` line: the hypervisor did \
                 not give the qube a second vCPU"
            );
        };
        expect(of == VCPUS, || {
            format!("{qube}: vCPU 1 of {of} placed, the system asks for {VCPUS}")
        })?;
        expect(cpu != vcpu0, || {
            format!(
                "{qube}: both vCPUs placed on CPU {cpu}: the second should run on the other CPU"
            )
        })?;
        let Some((vector, on)) = self.started else {
            bail!(
                "no `qube {qube}: vCPU 1 started at SIPI vector 0xVV on CPU {cpu}` line: \
                 Linux's INIT-SIPI-SIPI did not start vCPU 1"
            );
        };
        expect(on == cpu, || {
            format!("{qube}: vCPU 1 was placed on CPU {cpu} but started on CPU {on}")
        })?;
        Ok((vcpu0, cpu, vector))
    }
}

/// What the console said that this scenario judges.
#[derive(Debug, Default)]
struct Seen {
    /// Lines taken so far (what orders the lines below).
    count: usize,
    /// `work`'s vCPUs.
    work: Vcpus,
    /// `doomed`'s vCPUs.
    doomed: Vcpus,
    /// CPUs online, from the probe's first line.
    online: Option<u32>,
    /// Each pinned thread's line: iterations when it ran on its CPU, else the line.
    pinned: BTreeMap<u32, Result<u64, String>>,
    /// The round-trip line, read.
    round_trips: Option<(u32, u32, u32, f64, bool)>,
    /// Any other probe line about the round trips (`no round trips: ...`).
    no_round_trips: Option<String>,
    /// The closing line (`done (ok)`, `done (FAILED: ...)`) or the script's `the probe
    /// failed (N)`.
    done: Option<String>,
    /// The hypervisor's `qube work powered off (ACPI S5)`.
    powered_off: bool,
    /// Hypervisor lines not about `doomed` that mention a triple fault or a stopped qube
    /// (`qube NAME stopped: ...`, `qube NAME: vCPU K stops the qube`).
    trouble: Vec<String>,
    /// `doomed`'s console line `selftest: panicking the kernel on cpu N`: N.
    panicking: Option<u32>,
    /// `doomed`'s secondary vCPUs' faults (`qube doomed: vCPU K: FAULT`): (line, K, FAULT).
    faults: Vec<(usize, u32, String)>,
    /// `doomed`'s stops (`qube doomed stopped: REASON`): (line, REASON).
    stops: Vec<(usize, String)>,
    /// `doomed`'s other lines about stopping (`qube doomed: vCPU K stops the qube` or `ends
    /// the qube (status N)`, `qube doomed powered off ...`).
    doomed_other: Vec<String>,
}

impl Seen {
    /// Takes one console line.
    fn see(&mut self, line: &Line) {
        self.count += 1;
        let body = line.body.trim_end();
        if line.is_hv() {
            self.see_hv(line, body);
        } else if line.source.as_deref() == Some(QUBE)
            && let Some(rest) = body.strip_prefix(PROBE)
        {
            self.see_probe(rest);
        } else if line.source.as_deref() == Some(DOOMED)
            && let Some(cpu) = panicking(body)
        {
            self.panicking = Some(cpu);
        }
    }

    fn see_hv(&mut self, line: &Line, body: &str) {
        self.work.see(body, QUBE);
        self.doomed.see(body, DOOMED);
        if body == format!("qube {QUBE} powered off (ACPI S5)") {
            self.powered_off = true;
        }
        let stopped = match HvEvent::recognise(line) {
            Some(HvEvent::Stopped { qube, reason }) if qube == DOOMED => {
                self.stops.push((self.count, reason));
                return;
            }
            Some(HvEvent::Stopped { .. }) => true,
            _ => false,
        };
        if about(body, DOOMED) {
            if let Some((vcpu, fault)) = vcpu_fault(body, DOOMED) {
                self.faults.push((self.count, vcpu, fault.to_string()));
            } else if ["stops the qube", "ends the qube", "powered off"]
                .iter()
                .any(|w| body.contains(w))
            {
                self.doomed_other.push(body.to_string());
            }
        } else if stopped || body.contains("triple fault") || body.contains("stops the qube") {
            self.trouble.push(body.to_string());
        }
    }

    fn see_probe(&mut self, rest: &str) {
        let cpu_line = rest
            .strip_prefix("cpu ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(k, r)| Some((k.parse::<u32>().ok()?, r)));
        if let Some((n, _)) = rest.split_once(" online (") {
            self.online = n.parse().ok();
        } else if let Some((cpu, what)) = cpu_line {
            let ok = format!("ran pinned: getcpu {cpu}, ");
            let iterations = what
                .strip_prefix(&ok)
                .and_then(|r| r.strip_suffix(" iterations")?.parse().ok());
            self.pinned
                .insert(cpu, iterations.ok_or_else(|| format!("cpu {cpu} {what}")));
        } else if let Some(r) = round_trips(rest) {
            self.round_trips = Some(r);
        } else if rest.starts_with("no round trips") {
            self.no_round_trips = Some(rest.to_string());
        } else if rest.starts_with("done (") || rest.starts_with("the probe failed") {
            self.done = Some(rest.to_string());
        }
    }

    /// Judges the hypervisor's lines about `work`: vCPU 1 placed and started on a CPU other
    /// than vCPU 0's. Returns the note.
    fn check_hypervisor(&self) -> Result<String> {
        let (vcpu0, cpu, vector) = self.work.check(QUBE)?;
        Ok(format!(
            "vCPU 0 on CPU {vcpu0}, vCPU 1 on CPU {cpu} (started at SIPI vector {vector:#04x})"
        ))
    }

    /// Judges the probe's lines. Returns the note.
    fn check_probe(&self) -> Result<String> {
        let done = self.done.as_deref().unwrap_or("no closing line");
        let online = self
            .online
            .with_context(|| format!("the AppVM's cpu-probe said nothing ({done})"))?;
        expect(online == VCPUS, || {
            format!("Linux has {online} CPU(s) online, not {VCPUS} ({done})")
        })?;
        let mut counts = Vec::new();
        for cpu in 0..VCPUS {
            match self.pinned.get(&cpu) {
                Some(Ok(n)) => counts.push(format!("cpu {cpu} {n}")),
                Some(Err(line)) => {
                    bail!("the thread pinned to cpu {cpu} did not run there: {line}")
                }
                None => bail!("no line from the thread pinned to cpu {cpu} ({done})"),
            }
        }
        let Some((n, a, b, ms, in_order)) = self.round_trips else {
            let why = self
                .no_round_trips
                .as_deref()
                .unwrap_or("no round-trip line");
            bail!("the round trips between the CPUs did not run: {why} ({done})");
        };
        expect(n == ROUND_TRIPS && (a, b) == (0, 1), || {
            format!(
                "{n} round trips between cpu {a} and cpu {b}, not {ROUND_TRIPS} between 0 and 1"
            )
        })?;
        expect(in_order, || {
            format!("the round trips between cpu {a} and cpu {b} were not in order ({done})")
        })?;
        expect(done == "done (ok)", || {
            format!("the probe ended with `{done}`")
        })?;
        Ok(format!(
            "{online} CPUs online; pinned threads busy 200 ms at once: {} iterations; {n} \
             round trips between cpu {a} and cpu {b} in {ms:.1} ms ({:.0} us each), in order",
            counts.join(", "),
            ms * 1000.0 / f64::from(n.max(1))
        ))
    }

    /// Judges `work`'s end: powered off, exited 0, nothing but `doomed` stopped or
    /// triple-faulted.
    fn check_end(&self, out: &BootOutcome) -> Result<()> {
        expect(self.trouble.is_empty(), || {
            format!("the hypervisor said: {}", self.trouble.join("; "))
        })?;
        let others: Vec<_> = out.stopped.iter().filter(|(q, _)| q != DOOMED).collect();
        expect(others.is_empty(), || format!("stopped: {others:?}"))?;
        expect(self.powered_off, || {
            format!("no `qube {QUBE} powered off (ACPI S5)` line")
        })?;
        let status = out.exited.iter().find(|(q, _)| q == QUBE).map(|(_, s)| *s);
        expect(status == Some(0), || {
            format!("the AppVM did not exit with status 0: {status:?}")
        })
    }

    /// Judges `doomed`: its vCPU 1 placed and started on the other CPU than vCPU 0, the
    /// panic started on its CPU 1, a triple fault reported by vCPU 1, then the qube stopped
    /// by that fault (once), neither exited nor restarted. Returns the note.
    fn check_doomed(&self, out: &BootOutcome) -> Result<String> {
        let (vcpu0, cpu, _) = self.doomed.check(DOOMED)?;
        let Some(on) = self.panicking else {
            bail!(
                "no `selftest: panicking the kernel on cpu {PANIC_CPU}` line from {DOOMED}: it \
                 never started its panic"
            );
        };
        expect(on == PANIC_CPU, || {
            format!("{DOOMED} panicked its kernel on cpu {on}, not {PANIC_CPU}")
        })?;
        let stops: Vec<&str> = self.stops.iter().map(|(_, r)| r.as_str()).collect();
        let Some((at, vcpu, fault)) = self.faults.first() else {
            let how = match stops.first() {
                Some(r) => format!("{DOOMED} stopped ({r}) with no vCPU's fault before"),
                None => format!("{DOOMED} was not stopped"),
            };
            let other = if self.doomed_other.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.doomed_other.join("; "))
            };
            bail!(
                "no `qube {DOOMED}: vCPU {PANIC_CPU}: triple fault (rip=0x...)` line: {how}{other}"
            );
        };
        expect(self.faults.len() == 1, || {
            let all: Vec<_> = self
                .faults
                .iter()
                .map(|(_, k, f)| format!("vCPU {k}: {f}"))
                .collect();
            format!(
                "{DOOMED}'s vCPUs faulted more than once: {}",
                all.join("; ")
            )
        })?;
        expect(
            *vcpu == PANIC_CPU && fault.starts_with("triple fault"),
            || format!("{DOOMED}: vCPU {vcpu}: {fault}, not a triple fault on vCPU {PANIC_CPU}"),
        )?;
        let Some((stop_at, reason)) = self.stops.first() else {
            bail!("{DOOMED}'s vCPU {vcpu} reported `{fault}` but the qube was not stopped");
        };
        expect(stops.len() == 1, || {
            format!(
                "{DOOMED} stopped {} times: {}",
                stops.len(),
                stops.join("; ")
            )
        })?;
        expect(stop_at > at, || {
            format!("{DOOMED} stopped ({reason}) before its vCPU {vcpu} reported `{fault}`")
        })?;
        expect(reason == fault, || {
            format!(
                "{DOOMED}'s vCPU {vcpu} reported `{fault}` but the qube stopped with `{reason}`"
            )
        })?;
        let exited: Vec<i64> = out
            .exited
            .iter()
            .filter(|(q, _)| q == DOOMED)
            .map(|(_, s)| *s)
            .collect();
        expect(exited.is_empty(), || {
            format!("{DOOMED} also exited (status {exited:?})")
        })?;
        let restarts = out.restarts.iter().filter(|(q, _)| q == DOOMED).count();
        expect(restarts == 0, || {
            format!("{DOOMED} was restarted {restarts} time(s): its policy is never")
        })?;
        Ok(format!(
            "{DOOMED}: vCPU 0 on CPU {vcpu0}, vCPU 1 on CPU {cpu}; panicked on vCPU {vcpu} (CPU \
             {cpu}), {fault} contained to it, not restarted"
        ))
    }
}

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-smp.toml")?;
    let mut opts = boots::options(&a, "max", TIMEOUT_S, "appvm-smp");
    // Three CPUs, the qubes pinned to 1 and 2 (see the system file: the boot CPU stays out
    // of it under multi-threaded TCG).
    opts.smp = 3;
    let mut seen = Seen::default();
    // Until work has exited (or stopped) and doomed has stopped (or exited), or a panic.
    let (mut work_gone, mut doomed_gone) = (false, false);
    let out = qemu::boot(&opts, |e| {
        seen.see(&e.line);
        if let Some(HvEvent::Exited { qube, .. } | HvEvent::Stopped { qube, .. }) = &e.hv {
            work_gone |= qube == QUBE;
            doomed_gone |= qube == DOOMED;
        }
        Control::stop_if(work_gone && doomed_gone || matches!(e.hv, Some(HvEvent::Panic(_))))
    })?;
    boots::finished(&out)?;
    let hv = seen.check_hypervisor()?;
    let probe = seen.check_probe()?;
    seen.check_end(&out)?;
    let doomed = seen.check_doomed(&out)?;
    Ok(format!(
        "{hv}; {probe}; powered off; {doomed}; wall {:.1} s",
        out.wall.as_secs_f64()
    ))
}

#[cfg(test)]
#[path = "appvm_smp_tests.rs"]
mod tests;

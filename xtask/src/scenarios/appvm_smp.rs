//! A Linux AppVM with two vCPUs on two CPUs (`appvm-smp`, `systems/tests/appvm-smp.toml`,
//! QEMU `-smp 2`). From the hypervisor's console: vCPU 0 is where the placement line puts
//! the qube, vCPU 1 is placed on another CPU at boot (`qube work: vCPU 1 of 2 placed on CPU
//! C`) and starts there when Linux sends it a SIPI (`qube work: vCPU 1 started at SIPI
//! vector 0xVV on CPU C`). From the AppVM's console, the agent's `cpu-probe`
//! (`appvm.selftest=cpus`, `linux-appvm/agent/src/cpuprobe.rs`): 2 CPUs online, a thread
//! pinned to each saw its own CPU, 2000 round trips between them through pipes (every hop
//! wakes a thread asleep on the other vCPU: an IPI between vCPUs) came back in order, `done
//! (ok)`. Then the AppVM powers off (ACPI S5), and nothing is stopped or triple-faults.

use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent, Line};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

pub const APPVM_SMP: Scenario = Scenario {
    name: "appvm-smp",
    about: "a Linux AppVM with 2 vCPUs on 2 CPUs: vCPU 1 started by SIPI on the other CPU, a thread pinned to each CPU, 2000 IPI-woken round trips in order",
    run,
};

/// The AppVM of `systems/tests/appvm-smp.toml`, and its vCPUs.
const QUBE: &str = "work";
const VCPUS: u32 = 2;
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

/// What the console said that this scenario judges.
#[derive(Debug, Default)]
struct Seen {
    /// The qube's CPU in the placement line: its vCPU 0's.
    vcpu0: Option<u32>,
    /// vCPU 1's placement: (of how many, CPU).
    placed: Option<(u32, u32)>,
    /// vCPU 1's start: (SIPI vector, CPU).
    started: Option<(u8, u32)>,
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
    /// Hypervisor lines that mention a triple fault or a stopped qube (`qube NAME stopped:
    /// ...`, `qube NAME: vCPU K stops the qube`).
    trouble: Vec<String>,
}

impl Seen {
    /// Takes one console line.
    fn see(&mut self, line: &Line) {
        let body = line.body.trim_end();
        if line.is_hv() {
            self.see_hv(line, body);
        } else if line.source.as_deref() == Some(QUBE)
            && let Some(rest) = body.strip_prefix(PROBE)
        {
            self.see_probe(rest);
        }
    }

    fn see_hv(&mut self, line: &Line, body: &str) {
        if let Some(cpu) = placement(body, QUBE) {
            self.vcpu0 = Some(cpu);
        } else if let Some((1, of, cpu)) = placed(body, QUBE) {
            self.placed = Some((of, cpu));
        } else if let Some((1, vector, cpu)) = started(body, QUBE) {
            self.started = Some((vector, cpu));
        } else if body == format!("qube {QUBE} powered off (ACPI S5)") {
            self.powered_off = true;
        }
        let stopped = matches!(HvEvent::recognise(line), Some(HvEvent::Stopped { .. }));
        if stopped || body.contains("triple fault") || body.contains("stops the qube") {
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

    /// Judges the hypervisor's lines: vCPU 1 placed and started on a CPU other than vCPU
    /// 0's. Returns the note.
    fn check_hypervisor(&self) -> Result<String> {
        let vcpu0 = self.vcpu0.with_context(|| {
            format!("no `smp: qubes placed (name:CPU) ... {QUBE}:C` line: did both CPUs start?")
        })?;
        let Some((of, cpu)) = self.placed else {
            bail!(
                "no `qube {QUBE}: vCPU 1 of {VCPUS} placed on CPU C` line: the hypervisor did \
                 not give the qube a second vCPU"
            );
        };
        expect(of == VCPUS, || {
            format!("vCPU 1 of {of} placed, the system asks for {VCPUS}")
        })?;
        expect(cpu != vcpu0, || {
            format!("both vCPUs placed on CPU {cpu}: the second should run on the other CPU")
        })?;
        let Some((vector, on)) = self.started else {
            bail!(
                "no `qube {QUBE}: vCPU 1 started at SIPI vector 0xVV on CPU {cpu}` line: \
                 Linux's INIT-SIPI-SIPI did not start vCPU 1"
            );
        };
        expect(on == cpu, || {
            format!("vCPU 1 was placed on CPU {cpu} but started on CPU {on}")
        })?;
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

    /// Judges the end: powered off, exited 0, nothing stopped or triple-faulted.
    fn check_end(&self, out: &BootOutcome) -> Result<()> {
        expect(self.trouble.is_empty(), || {
            format!("the hypervisor said: {}", self.trouble.join("; "))
        })?;
        expect(out.stopped.is_empty(), || {
            format!("stopped: {:?}", out.stopped)
        })?;
        expect(self.powered_off, || {
            format!("no `qube {QUBE} powered off (ACPI S5)` line")
        })?;
        let status = out.exited.iter().find(|(q, _)| q == QUBE).map(|(_, s)| *s);
        expect(status == Some(0), || {
            format!("the AppVM did not exit with status 0: {status:?}")
        })
    }
}

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-smp.toml")?;
    let mut opts = boots::options(&a, "max", TIMEOUT_S, "appvm-smp");
    opts.smp = VCPUS;
    let mut seen = Seen::default();
    let out = qemu::boot(&opts, |e| {
        seen.see(&e.line);
        let gone = matches!(
            &e.hv,
            Some(HvEvent::Exited { qube, .. } | HvEvent::Stopped { qube, .. }) if qube == QUBE
        );
        Control::stop_if(gone || matches!(e.hv, Some(HvEvent::Panic(_))))
    })?;
    boots::finished(&out)?;
    let hv = seen.check_hypervisor()?;
    let probe = seen.check_probe()?;
    seen.check_end(&out)?;
    Ok(format!(
        "{hv}; {probe}; powered off; wall {:.1} s",
        out.wall.as_secs_f64()
    ))
}

#[cfg(test)]
#[path = "appvm_smp_tests.rs"]
mod tests;

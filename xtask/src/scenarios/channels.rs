//! Channels in QEMU (`systems/tests/channels.toml`): ping-pong in polling and event mode with
//! every message checked, a hostile peer that only breaks its own channel, and a qube that
//! cannot reach a channel window it was not given. Run under `-icount shift=0`, so the
//! nanoseconds the guests measure are instructions (hypervisor and qubes together).

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use anyhow::{Result, bail};

pub const CHANNELS: Scenario = Scenario {
    name: "channels",
    about: "ping-pong over channels (poll and event), a hostile peer, a snooping qube",
    run: || measure().map(|f| f.summary()),
};

/// What one round trip cost, per mode.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// `(mode, instructions per round trip (other pairs ran at the same time: use
    /// [`qemu_bench`] for clean figures), exits of ping per rt, exits of pong per rt)`.
    pub modes: Vec<(String, u64, f64, f64)>,
}

impl Figures {
    /// One line for the test log.
    pub fn summary(&self) -> String {
        self.modes
            .iter()
            .map(|(m, _, pe, qe)| format!("{m} mode: {:.2} VM exits per round trip", pe + qe))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads `N.NN exits` after `key` in a line.
pub(super) fn number_before(line: &str, unit: &str) -> Option<f64> {
    let i = line.find(unit)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// Boots the channel system and checks it; returns the per-round-trip figures.
pub fn measure() -> Result<Figures> {
    let a = boots::assemble("systems/tests/channels.toml")?;
    let mut opts = boots::options(&a, "max", 120, "channels");
    opts.extra_args = vec!["-icount".into(), "shift=0,align=off,sleep=off".into()];
    let mut done = 0;
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let t = &e.line.text;
        if t.contains("pong: echoed")
            || t.contains("still running 5")
            || t.contains("stream-rx: read")
        {
            done += 1;
        }
        if matches!(&e.hv, Some(HvEvent::Stopped { qube, .. }) if qube == "snoop") {
            done += 1;
        }
        Control::stop_if(done >= 5)
    })?;
    boots::finished(&out)?;
    let mut figures = Figures::default();
    for mode in ["poll", "event"] {
        let (ping, pong) = (format!("ping-{mode}"), format!("pong-{mode}"));
        let exited_ok = |q: &str| out.exited.iter().any(|(n, s)| n == q && *s == 0);
        expect(exited_ok(&ping) && exited_ok(&pong), || {
            format!("{ping}/{pong} did not both exit 0")
        })?;
        let ping_line = out
            .lines_from(&ping)
            .into_iter()
            .find(|l| l.contains("round trips in order and intact"));
        let pong_line = out
            .lines_from(&pong)
            .into_iter()
            .find(|l| l.contains("pong: echoed"));
        let (Some(pl), Some(ql)) = (ping_line, pong_line) else {
            bail!("{mode}: no report lines")
        };
        let insns = number_before(&pl, "ns per round trip").unwrap_or(0.0) as u64;
        let pe = number_before(&pl, "exits of this qube").unwrap_or(f64::NAN);
        let qe = number_before(&ql, "exits of this qube").unwrap_or(f64::NAN);
        figures.modes.push((mode.to_string(), insns, pe, qe));
    }
    let stream = out
        .lines_from("stream-rx")
        .iter()
        .any(|l| l.contains("intact through embedded-io"));
    expect(stream, || {
        "the embedded-io byte stream did not arrive intact".into()
    })?;
    let broken = out
        .lines_from("victim")
        .iter()
        .any(|l| l.contains("channel victim broken"));
    expect(broken, || {
        "the victim did not report its broken channel".into()
    })?;
    let alive = out
        .lines_from("victim")
        .iter()
        .any(|l| l.contains("still running 5"));
    expect(alive, || {
        "the victim did not keep running after the breach".into()
    })?;
    let hurt = |q: &str| out.stopped.iter().any(|(n, _)| n == q);
    expect(!hurt("victim") && !hurt("hostile"), || {
        "hostile or victim was stopped".into()
    })?;
    let snoop = out
        .stopped
        .iter()
        .find(|(n, _)| n == "snoop")
        .map(|(_, r)| r.clone());
    let snoop = snoop.unwrap_or_default();
    expect(
        snoop.contains("guest-physical 0x4000200000, which it does not own"),
        || format!("snoop was not stopped for reading a foreign window: {snoop:?}"),
    )?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_before_units() {
        let l = "ping: 1000 round trips in order and intact (event mode): 5231 ns per round trip, 2.01 exits of this qube per round trip, 1000 notifies";
        assert_eq!(number_before(l, "ns per round trip"), Some(5231.0));
        assert_eq!(number_before(l, "exits of this qube"), Some(2.01));
        assert_eq!(number_before(l, "nothing"), None);
    }
}

/// In-QEMU figures for `cargo xtask bench`: each system booted alone under `-icount shift=0`,
/// so guest-measured nanoseconds are instructions executed by the whole machine (hypervisor
/// and qubes).
#[derive(Clone, Debug)]
pub struct QemuBench {
    /// Instructions per null hypercall (one exit and return): the baseline.
    pub null_call: u64,
    /// `(mode, instructions per round trip, exits per round trip (both qubes))`.
    pub round_trips: Vec<(String, u64, f64)>,
    /// A bulk transfer: (instructions per MiB, exits per MiB of both qubes).
    pub bulk: (u64, u64),
    /// A service call through the admin qube, and its baseline.
    pub qrexec: super::qrexec_bench::QrexecBench,
}

pub(super) fn boot_alone(system: &str, log: &str, done: &'static str) -> Result<Vec<String>> {
    boot_alone_on(system, log, &[done], 1)
}

/// [`boot_alone`] on a machine with `cpus` CPUs, until every line of `done` was seen (on
/// several CPUs the two qubes' reports come in either order).
fn boot_alone_on(system: &str, log: &str, done: &[&'static str], cpus: u32) -> Result<Vec<String>> {
    let a = boots::assemble(system)?;
    let mut opts = boots::options(&a, "max", 120, log);
    opts.smp = cpus;
    opts.extra_args = vec!["-icount".into(), "shift=0,align=off,sleep=off".into()];
    let mut seen = vec![false; done.len()];
    let out = qemu::boot(&opts, |e| {
        for (s, d) in seen.iter_mut().zip(done) {
            *s |= e.line.text.contains(d);
        }
        Control::stop_if(matches!(e.hv, Some(HvEvent::Panic(_))) || seen.iter().all(|s| *s))
    })?;
    if let Some(p) = &out.panic {
        bail!("{system}: hypervisor panic: {p}");
    }
    expect(!out.timed_out, || format!("{system}: timed out"))?;
    Ok(out.lines)
}

/// Runs the three benchmark systems in `systems/bench/`.
pub fn qemu_bench() -> Result<QemuBench> {
    let lines = boot_alone(
        "systems/bench/null-hypercall.toml",
        "bench-null",
        "null-calls:",
    )?;
    let null_call = lines
        .iter()
        .find_map(|l| number_before(l, "ns per hypercall"))
        .ok_or_else(|| anyhow::anyhow!("no null-calls line"))? as u64;
    let mut round_trips = Vec::new();
    let runs = [
        ("poll mode", "pingpong-poll", 1),
        ("event mode", "pingpong-event", 1),
        (
            "spin mode (no yield), the two qubes on two CPUs",
            "pingpong-smp-spin",
            3,
        ),
        (
            "event mode, the two qubes on two CPUs",
            "pingpong-smp-event",
            3,
        ),
    ];
    for (mode, file, cpus) in runs {
        let system = format!("systems/bench/{file}.toml");
        let done = ["pong: echoed", "round trips in order and intact"];
        let lines = boot_alone_on(&system, &format!("bench-{file}"), &done, cpus)?;
        let ping = lines
            .iter()
            .find(|l| l.contains("round trips in order and intact"));
        let pong = lines.iter().find(|l| l.contains("pong: echoed"));
        let (Some(p), Some(q)) = (ping, pong) else {
            bail!("{mode}: no report lines")
        };
        let insns = number_before(p, "ns per round trip").unwrap_or(f64::NAN) as u64;
        let exits = number_before(p, "exits of this qube").unwrap_or(f64::NAN)
            + number_before(q, "exits of this qube").unwrap_or(f64::NAN);
        round_trips.push((mode.to_string(), insns, exits));
    }
    let lines = boot_alone(
        "systems/bench/bulk.toml",
        "bench-bulk",
        "every byte checked",
    )?;
    let line = |who: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("{who}: ")) && l.contains("per MiB"))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("bulk: no {who} report line"))
    };
    let (tx, rx) = (line("bulk-tx")?, line("bulk-rx")?);
    let per_mib = number_before(&rx, "ns per MiB").unwrap_or(f64::NAN) as u64;
    let exits = number_before(&tx, "exits of this qube per MiB").unwrap_or(f64::NAN)
        + number_before(&rx, "exits of this qube per MiB").unwrap_or(f64::NAN);
    Ok(QemuBench {
        null_call,
        round_trips,
        bulk: (per_mib, exits as u64),
        qrexec: super::qrexec_bench::measure()?,
    })
}

impl QemuBench {
    /// A markdown table with the ratios to the null hypercall.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| what | instructions | VM exits | ratio to a null hypercall |\n|---|--:|--:|--:|\n",
        );
        s.push_str(&format!(
            "| null hypercall (baseline) | {} | 1 | 1.0 |\n",
            self.null_call
        ));
        for (mode, insns, exits) in &self.round_trips {
            let ratio = *insns as f64 / self.null_call.max(1) as f64;
            s.push_str(&format!(
                "| round trip, 64-byte Probe, {mode} | {insns} | {exits:.2} | {ratio:.1} |\n"
            ));
        }
        let (insns, exits) = self.bulk;
        s.push_str(&format!(
            "| 1 MiB through a bulk area (64 KiB buffers, poll mode) | {insns} | {exits} | {:.0} |\n",
            insns as f64 / self.null_call.max(1) as f64
        ));
        s.push_str(&self.qrexec.markdown(self.null_call));
        s
    }
}

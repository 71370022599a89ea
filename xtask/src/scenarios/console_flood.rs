//! Console flood: a qube writing its console as fast as it can neither holds the CPU away
//! from its sibling for more than about one time slice nor drowns the sibling's lines; the
//! hypervisor's rate limit cuts the flood and reports the dropped bytes (docs/console.md).
//! System: `systems/tests/console-flood.toml`.
//!
//! The sibling measures its own lateness (actual wake minus intended wake, on the
//! hypervisor's clock); the scenario never looks at wall-clock time.

use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent, Line};
use anyhow::{Context, Result};

pub const CONSOLE_FLOOD: Scenario = Scenario {
    name: "console-flood",
    about: "a qube flooding its console delays its sibling by at most a time slice, drops none of its lines, and is rate-limited with the dropped bytes reported",
    run: console_flood,
};

const FLOODER: &str = "flooder";
const SIBLING: &str = "sibling";
/// Lateness allowed beyond one time slice (the hypervisor's, read from its `timer:` line):
/// the exit that ends the flooder's slice, the scheduler's pass and the sibling's own clock
/// read (about 0.8 ms under TCG with `-icount`).
const TOLERANCE_US: u64 = 2_000;
/// Fewest beats the sibling must log (5 s at 25 ms is 200).
const MIN_BEATS: u64 = 100;

/// What the sibling said about its wakes.
struct Heartbeat {
    max_late_us: u64,
    mean_late_us: u64,
    beats: u64,
}

/// `testing: heartbeat max lateness X us over K beats (mean Y us)`.
fn parse_heartbeat(body: &str) -> Option<Heartbeat> {
    let rest = body.split_once("testing: heartbeat max lateness ")?.1;
    let (max, rest) = rest.split_once(" us over ")?;
    let (beats, rest) = rest.split_once(" beats (mean ")?;
    let mean = rest.split_once(" us)")?.0;
    Some(Heartbeat {
        max_late_us: max.parse().ok()?,
        mean_late_us: mean.parse().ok()?,
        beats: beats.parse().ok()?,
    })
}

/// `hv | qube NAME: console rate limit: N bytes dropped (L lines)`: `(NAME, N)`.
fn parse_dropped(line: &Line) -> Option<(String, u64)> {
    if !line.is_hv() {
        return None;
    }
    let rest = line.body.strip_prefix("qube ")?;
    let (qube, rest) = rest.split_once(": console rate limit: ")?;
    let bytes = rest.split_once(" bytes dropped")?.0;
    Some((qube.to_string(), bytes.parse().ok()?))
}

/// The time slice the hypervisor reports at boot (`timer: ..., time slice N ms`).
fn time_slice_ms(lines: &[String]) -> Option<u64> {
    lines.iter().find_map(|l| {
        let rest = l.split_once("| timer: ")?.1;
        rest.split_once("time slice ")?
            .1
            .strip_suffix(" ms")?
            .parse()
            .ok()
    })
}

/// QEMU runs with `-icount`: the guest's clocks (TSC, APIC timer) follow the instructions
/// it executes, not the host's time, so a host busy with other work cannot add its own stalls
/// to the sibling's lateness (without it, the sibling alone saw up to 4.3 ms on a loaded
/// 2-core host). Shift 3 is 8 ns per instruction.
fn console_flood() -> Result<String> {
    let a = boots::assemble("systems/tests/console-flood.toml")?;
    let mut opts = boots::options(&a, "max", 120, "console-flood");
    opts.extra_args
        .extend(["-icount", "shift=3,sleep=off"].map(String::from));
    let out = qemu::boot(&opts, |e| {
        Control::stop_if(matches!(e.hv, Some(HvEvent::Panic(_) | HvEvent::Idle)))
    })?;
    boots::finished(&out)?;
    check(&out)
}

fn check(out: &BootOutcome) -> Result<String> {
    for qube in [FLOODER, SIBLING] {
        expect(out.exited.contains(&(qube.to_string(), 0)), || {
            format!(
                "{qube} did not exit with status 0 (exits {:?}, stops {:?})",
                out.exited, out.stopped
            )
        })?;
    }
    let sibling = out.lines_from(SIBLING);
    let hb = sibling
        .iter()
        .find_map(|l| parse_heartbeat(l))
        .context("the sibling's `heartbeat max lateness` line is missing")?;
    let beats: Vec<u64> = sibling
        .iter()
        .filter_map(|l| {
            let rest = l.split_once("testing: beat ")?.1;
            rest.split_once(" late ")?.0.parse().ok()
        })
        .collect();
    let dropped: Vec<(String, u64)> = out
        .lines
        .iter()
        .filter_map(|l| parse_dropped(&Line::parse(l)))
        .collect();
    let flood_dropped: u64 = dropped
        .iter()
        .filter(|(q, _)| q == FLOODER)
        .map(|(_, n)| n)
        .sum();
    let flood_lines = out
        .lines_from(FLOODER)
        .iter()
        .filter(|l| l.starts_with("flood "))
        .count();
    let flood_wrote: u64 = out
        .lines_from(FLOODER)
        .iter()
        .find_map(|l| {
            let rest = l.split_once("console-flood wrote ")?.1;
            rest.split_once(" bytes")?.0.parse().ok()
        })
        .unwrap_or(0);
    let figures = format!(
        "sibling max lateness {} us (mean {} us) over {} beats; flooder wrote {flood_wrote} bytes: {flood_lines} lines printed, {flood_dropped} bytes dropped in {} reports",
        hb.max_late_us,
        hb.mean_late_us,
        hb.beats,
        dropped.iter().filter(|(q, _)| q == FLOODER).count()
    );
    let slice_ms = time_slice_ms(&out.lines).context("no `time slice N ms` line")?;
    // The sibling's five seconds must fall inside the flooder's eight, or it measured
    // nothing: its summary comes before the flooder's.
    let position = |qube: &str, words: &str| {
        out.lines.iter().position(|l| {
            let l = Line::parse(l);
            l.source.as_deref() == Some(qube) && l.body.contains(words)
        })
    };
    let sibling_done = position(SIBLING, "heartbeat max lateness");
    let flood_done = position(FLOODER, "console-flood wrote");
    expect(sibling_done < flood_done, || {
        format!("the sibling's heartbeat did not run during the flood: {figures}")
    })?;
    let bound_us = slice_ms * 1000 + TOLERANCE_US;
    expect(hb.beats >= MIN_BEATS, || {
        format!("the sibling beat only {} times: {figures}", hb.beats)
    })?;
    let expected: Vec<u64> = (1..=hb.beats).collect();
    expect(beats == expected, || {
        let missing = expected.iter().filter(|b| !beats.contains(b)).count();
        format!("{missing} of the sibling's beat lines are missing or out of order: {figures}")
    })?;
    expect(dropped.iter().all(|(q, _)| q != SIBLING), || {
        format!("the sibling's lines were dropped: {dropped:?}")
    })?;
    expect(flood_dropped > 0, || {
        format!("no `qube {FLOODER}: console rate limit: N bytes dropped` line: {figures}")
    })?;
    expect(flood_lines > 0, || {
        format!("none of the flooder's lines got through: {figures}")
    })?;
    expect(hb.max_late_us <= bound_us, || {
        format!("the sibling was late by more than {bound_us} us: {figures}")
    })?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_figures() {
        let hb = parse_heartbeat(
            "[info] testing: heartbeat max lateness 10042 us over 200 beats (mean 512 us)",
        )
        .unwrap();
        assert_eq!(
            (hb.max_late_us, hb.beats, hb.mean_late_us),
            (10042, 200, 512)
        );
        let l = Line::parse(
            "hv      | qube flooder: console rate limit: 123456 bytes dropped (964 lines)",
        );
        assert_eq!(parse_dropped(&l), Some(("flooder".to_string(), 123456)));
        assert_eq!(
            parse_dropped(&Line::parse(
                "flooder | qube x: console rate limit: 5 bytes dropped"
            )),
            None
        );
        let timer = "hv | timer: TSC 2455 MHz, APIC timer 62791 kHz (/16), time slice 10 ms";
        assert_eq!(time_slice_ms(&[timer.to_string()]), Some(10));
    }
}

//! State isolation: two `cpu-state` test qubes on the one CPU write markers into every
//! register they own without a VM exit (r8-r15, rbx, rbp, XMM0-15, MXCSR, x87, DR0-DR3, DR6,
//! DR7), give up the CPU (Yield, a sleep, or only the timer's preemption) and read them back;
//! a run also checks at start that it inherited nothing (debug registers, MXCSR and x87 at
//! their reset values, no marker in an XMM or x87 register). `probe-a` is restarted once, and
//! a unikernel disposable (`dprobe`) runs the same check several times in a row. Passes when
//! every run reports `0 mismatches, 0 inherited` and exits as planned. Under QEMU `-cpu max`
//! (SVM; `systems/tests/state-isolation.toml`) and Bochs VMX
//! (`systems/tests/bochs-state-isolation.toml`).

use super::{Scenario, bochs, boots, expect};
use crate::bochs::MODEL_VMX;
use crate::qemu::{self, BootOutcome, Control, HvEvent, Line};
use anyhow::{Result, bail};

pub const STATE_ISOLATION: Scenario = Scenario {
    name: "state-isolation",
    about: "two qubes on one CPU, one restarted, and a reused unikernel disposable: every \
            register reads back its own value and no run inherits one",
    run: state_isolation,
};

pub const BOCHS_STATE_ISOLATION: Scenario = Scenario {
    name: "bochs-state-isolation",
    about: "Bochs, Intel VMX: the state-isolation qubes, shorter",
    run: bochs_state_isolation,
};

/// One run's `testing: cpu-state: R rounds, M mismatches, I inherited`.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    rounds: u64,
    mismatches: u64,
    inherited: u64,
}

/// The figures of a report line body, if it is one.
fn parse_report(body: &str) -> Option<Report> {
    let rest = body.split_once("testing: cpu-state: ")?.1;
    let (rounds, rest) = rest.split_once(" rounds, ")?;
    let (mismatches, rest) = rest.split_once(" mismatches, ")?;
    let inherited = rest.strip_suffix(" inherited")?;
    Some(Report {
        rounds: rounds.parse().ok()?,
        mismatches: mismatches.parse().ok()?,
        inherited: inherited.parse().ok()?,
    })
}

/// Each run of `qube`, in order: its report, and the lines that explain a bad one (what was
/// inherited, the first mismatch, mismatches by register).
fn runs_of(out: &BootOutcome, qube: &str) -> Vec<(Report, Vec<String>)> {
    let mut runs = Vec::new();
    let mut details = Vec::new();
    for l in out.lines.iter().map(|l| Line::parse(l)) {
        if l.source.as_deref() != Some(qube) {
            continue;
        }
        if let Some(r) = parse_report(&l.body) {
            runs.push((r, std::mem::take(&mut details)));
        } else if [
            "inherited at start:",
            "first mismatch",
            "mismatches by register",
        ]
        .iter()
        .any(|w| l.body.contains(w))
        {
            details.push(l.body.trim().to_string());
        }
    }
    runs
}

/// Checks the boot: the runs each qube must report (`probe-a` 2, `probe-b` 1, `dprobe`
/// `disposable_runs`), each clean, and the exit statuses that go with them.
fn judge(out: &BootOutcome, disposable_runs: usize) -> Result<String> {
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    let plan: [(&str, usize); 3] = [("probe-a", 2), ("probe-b", 1), ("dprobe", disposable_runs)];
    let mut bad = Vec::new();
    let mut notes = Vec::new();
    for (qube, want) in plan {
        let runs = runs_of(out, qube);
        for (k, (r, details)) in runs.iter().enumerate() {
            if r.mismatches > 0 || r.inherited > 0 {
                bad.push(format!(
                    "{qube} run {}: {} rounds, {} mismatches, {} inherited [{}]",
                    k + 1,
                    r.rounds,
                    r.mismatches,
                    r.inherited,
                    details.join("; ")
                ));
            }
        }
        let rounds: Vec<String> = runs.iter().map(|(r, _)| r.rounds.to_string()).collect();
        notes.push(format!("{qube} {} rounds", rounds.join("+")));
        expect(runs.len() == want, || {
            format!(
                "{qube}: expected {want} cpu-state reports, got {}{}",
                runs.len(),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!("; {}", bad.join("; "))
                }
            )
        })?;
    }
    expect(bad.is_empty(), || bad.join("\n      "))?;
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    let exits = |qube: &str| -> Vec<i64> {
        out.exited
            .iter()
            .filter(|(q, _)| q == qube)
            .map(|(_, s)| *s)
            .collect()
    };
    let expected: [(&str, Vec<i64>); 4] = [
        ("probe-a", vec![1, 0]),
        ("probe-b", vec![0]),
        ("probe-req", vec![0]),
        ("dprobe", vec![0; disposable_runs]),
    ];
    for (qube, want) in expected {
        let got = exits(qube);
        expect(got == want, || {
            format!("{qube}: exit statuses {got:?}, expected {want:?}")
        })?;
    }
    let restarts: Vec<u32> = out
        .restarts
        .iter()
        .filter(|(q, _)| q == "probe-a")
        .map(|(_, n)| *n)
        .collect();
    expect(restarts == [1], || {
        format!("probe-a: restarts {restarts:?}, expected [1]")
    })?;
    let (preempted, switched) = out
        .lines
        .iter()
        .filter_map(|l| preemptions(l))
        .fold((0, 0), |(p, s), (p1, s1)| (p + p1, s + s1));
    // Without this the rounds that give up nothing would test nothing.
    expect(switched > 0, || {
        format!(
            "no spin lost the CPU for over 1 ms ({preempted} briefly): no other qube ran mid-round"
        )
    })?;
    Ok(format!(
        "{}; 0 mismatches, 0 inherited; {preempted} rounds lost the CPU mid-spin, {switched} \
         of them for over 1 ms (another qube ran)",
        notes.join(", ")
    ))
}

/// From a `the spin lost the CPU in P rounds, S of them for over 1 ms` line: P and S.
fn preemptions(line: &str) -> Option<(u64, u64)> {
    let rest = line.split_once("the spin lost the CPU in ")?.1;
    let (p, rest) = rest.split_once(" rounds, ")?;
    let s = rest.split_once(" of them for over 1 ms")?.0;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// Stops when every qube has stopped, or at a hypervisor panic.
fn until_idle(e: &qemu::Event) -> Control {
    Control::stop_if(matches!(e.hv, Some(HvEvent::Idle | HvEvent::Panic(_))))
}

fn state_isolation() -> Result<String> {
    let a = boots::assemble("systems/tests/state-isolation.toml")?;
    let opts = boots::options(&a, "max", 120, "state-isolation");
    let out = qemu::boot(&opts, until_idle)?;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    judge(&out, 3)
}

fn bochs_state_isolation() -> Result<String> {
    let (_, opts) = match bochs::prepare(
        "systems/tests/bochs-state-isolation.toml",
        MODEL_VMX,
        "bochs-state-isolation",
    )? {
        Ok(p) => p,
        Err(why) => return bochs::skipped(&why),
    };
    let run = crate::bochs::boot(&opts, until_idle)?;
    bochs::check_boot(&run, &opts)?;
    let out = run.boot;
    expect(out.lines.iter().any(|l| l.contains("backend VMX")), || {
        "no `backend VMX` line".into()
    })?;
    let note = judge(&out, 2)?;
    Ok(format!("{note}; {:.1} s wall", out.wall.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_reports() {
        assert_eq!(
            parse_report("[info] testing: cpu-state: 812 rounds, 3 mismatches, 4 inherited"),
            Some(Report {
                rounds: 812,
                mismatches: 3,
                inherited: 4
            })
        );
        assert_eq!(
            parse_report("[info] testing: cpu-state: run 0, marker 0x1, 3 s"),
            None
        );
        let line = "[info] testing: cpu-state: gave up the CPU by 3 yields, 2 sleeps and 30 \
                    spins only; the spin lost the CPU in 12 rounds, 7 of them for over 1 ms \
                    (longest 9000 us)";
        assert_eq!(preemptions(line), Some((12, 7)));
    }
}

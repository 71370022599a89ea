//! Extended state between Linux AppVMs (`appvm-xstate`): two AppVMs run the agent's xstate
//! probe at the same time on the one CPU (`appvm.selftest=sleep:8,xstate:12`), each writing its own
//! markers into the 16 YMM registers and PKRU, spinning across the hypervisor's time slices
//! and reading them back. Passes when both saw usable AVX, ran rounds, read back only their
//! own values, and probed at the same time. [`Probes`] reads the probe's lines for
//! `bochs-appvm` too.

use super::{Scenario, boots, expect};
use crate::appvm;
use crate::qemu::{self, Control, HvEvent};
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const APPVM_XSTATE: Scenario = Scenario {
    name: "appvm-xstate",
    about: "two Linux AppVMs probe their YMM registers and PKRU at once on one CPU: each reads back only its own values",
    run,
};

/// The AppVMs of `systems/tests/appvm-xstate.toml`.
const APPVMS: [&str; 2] = ["work", "personal"];
/// How long both probes must run at the same time (by the console's clock). Each probes for
/// 12 s from 8 s after agent-ready, which they reach 2 to 5 s apart. (Without the wait the
/// later one booted at less than half its speed beside the other's probe: 11 s apart.)
const TOGETHER: Duration = Duration::from_secs(5);

/// The probe's closing line: `selftest: xstate: R rounds, M mismatches (avx A, pku P)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub rounds: u64,
    pub mismatches: u64,
    pub avx: bool,
    pub pku: bool,
}

impl Report {
    /// Reads the closing line (a line body).
    pub fn parse(body: &str) -> Option<Report> {
        let rest = body.strip_prefix("selftest: xstate: ")?;
        let (rounds, rest) = rest.split_once(" rounds, ")?;
        let (mismatches, rest) = rest.split_once(" mismatches (avx ")?;
        let (avx, rest) = rest.split_once(", pku ")?;
        let pku = rest.strip_suffix(')')?;
        let yes = |s: &str| match s {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        };
        Some(Report {
            rounds: rounds.parse().ok()?,
            mismatches: mismatches.parse().ok()?,
            avx: yes(avx)?,
            pku: yes(pku)?,
        })
    }
}

/// What one AppVM's probe printed, and when.
#[derive(Clone, Debug, Default)]
struct Probe {
    /// The features line (`CPUID.1:ECX AVX 1 OSXSAVE 1, XCR0 0x7, ...`).
    features: Option<String>,
    started: Option<Duration>,
    first_mismatch: Option<String>,
    failed: Option<String>,
    report: Option<(Report, Duration)>,
}

/// The probe lines of every qube, as the console shows them.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    by_qube: BTreeMap<String, Probe>,
}

impl Probes {
    /// Takes one console line from `source`, seen at `at`.
    pub fn see(&mut self, source: Option<&str>, body: &str, at: Duration) {
        let (Some(qube), Some(rest)) = (source, body.strip_prefix("selftest: xstate: ")) else {
            return;
        };
        let p = self.by_qube.entry(qube.to_string()).or_default();
        if let Some(r) = Report::parse(body) {
            p.report = Some((r, at));
        } else if rest.starts_with("CPUID.") {
            p.features = Some(rest.split(", seed").next().unwrap_or(rest).to_string());
            p.started = Some(at);
        } else if let Some(m) = rest.strip_prefix("first mismatch, ") {
            p.first_mismatch = Some(m.to_string());
        } else if rest.starts_with("the probe failed") {
            p.failed = Some(rest.to_string());
        }
    }

    /// Whether `qube` has printed its closing line.
    pub fn done(&self, qube: &str) -> bool {
        self.by_qube.get(qube).is_some_and(|p| p.report.is_some())
    }

    /// Checks the probes of `qubes`: each printed its closing line with `avx yes`, ran
    /// rounds and saw no mismatch, all of them were probing together for at least
    /// `together_min` (by the console's clock), and none ran fewer than a quarter of the
    /// rounds of another (a round lasts as long as its probe is kept off the CPU: so the
    /// probes shared it, and the hypervisor switched between them inside their rounds).
    /// Returns the figures for the note.
    pub fn check(&self, qubes: &[&str], together_min: Duration) -> Result<String> {
        let mut notes = Vec::new();
        let mut windows = Vec::new();
        for &q in qubes {
            let p = self.by_qube.get(q).cloned().unwrap_or_default();
            let features = p.features.as_deref().unwrap_or("no features line");
            let Some((r, ended)) = p.report else {
                let why = p.failed.as_deref().unwrap_or("no closing line");
                bail!("AppVM {q}: the xstate probe did not report ({why}; {features})");
            };
            expect(r.avx, || {
                format!(
                    "AppVM {q}: avx no ({features}): the hypervisor does not give Linux usable \
                     XSAVE/AVX, so the YMM state could not be probed"
                )
            })?;
            expect(r.rounds > 0, || format!("AppVM {q}: 0 rounds with avx yes"))?;
            expect(r.mismatches == 0, || {
                format!(
                    "AppVM {q}: {} mismatches in {} rounds: another qube's state reached it; \
                     first: {}",
                    r.mismatches,
                    r.rounds,
                    p.first_mismatch.as_deref().unwrap_or("?")
                )
            })?;
            let yes = |v| if v { "yes" } else { "no" };
            notes.push(format!("{q} {} rounds, pku {}", r.rounds, yes(r.pku)));
            windows.push((q, p.started.unwrap_or_default(), ended, r.rounds));
        }
        let rounds = windows.iter().map(|w| w.3);
        let (fewest, most) = (rounds.clone().min(), rounds.max());
        expect(
            fewest.unwrap_or_default() * 4 >= most.unwrap_or_default(),
            || {
                format!(
                    "the probes did not share the CPU: {} (one kept it while the other waited)",
                    notes.join(", ")
                )
            },
        )?;
        let last_start = windows.iter().map(|w| w.1).max().unwrap_or_default();
        let first_end = windows.iter().map(|w| w.2).min().unwrap_or_default();
        let together = first_end.saturating_sub(last_start);
        let spans: Vec<String> = windows
            .iter()
            .map(|(q, s, e, _)| format!("{q} {:.1}-{:.1} s", s.as_secs_f64(), e.as_secs_f64()))
            .collect();
        expect(together >= together_min, || {
            format!(
                "the probes ran together for {:.1} s, not {:.1} s ({}): too little to leak",
                together.as_secs_f64(),
                together_min.as_secs_f64(),
                spans.join(", ")
            )
        })?;
        Ok(format!(
            "{}, 0 mismatches; probing together for {:.1} s",
            notes.join(", "),
            together.as_secs_f64()
        ))
    }
}

fn run() -> Result<String> {
    if let Err(why) = appvm::kernel_available() {
        return Ok(format!(
            "skipped: Debian's kernel package is not available here: {why}"
        ));
    }
    let a = boots::assemble("systems/tests/appvm-xstate.toml")?;
    let opts = boots::options(&a, "max", 600, "appvm-xstate");
    let mut probes = Probes::default();
    let mut gone = BTreeSet::new();
    let out = qemu::boot(&opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_)) => return Control::Stop,
            Some(HvEvent::Exited { qube, .. } | HvEvent::Stopped { qube, .. }) => {
                gone.insert(qube.clone());
            }
            _ => {}
        }
        probes.see(e.line.source.as_deref(), &e.line.body, e.at);
        Control::stop_if(APPVMS.iter().all(|q| probes.done(q) || gone.contains(*q)))
    })?;
    boots::finished(&out)?;
    expect(out.stopped.is_empty(), || {
        format!("stopped: {:?}", out.stopped)
    })?;
    let note = probes.check(&APPVMS, TOGETHER)?;
    Ok(format!("{note}; wall {:.1} s", out.wall.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn reads_the_closing_line() {
        assert_eq!(
            Report::parse("selftest: xstate: 160 rounds, 0 mismatches (avx yes, pku no)"),
            Some(Report {
                rounds: 160,
                mismatches: 0,
                avx: true,
                pku: false
            })
        );
        for bad in [
            "selftest: xstate: 1 rounds, 0 mismatches (avx maybe, pku no)",
            "selftest: xstate: x rounds, 0 mismatches (avx yes, pku no)",
            "selftest: xstate: 1 rounds, 0 mismatches (avx yes, pku no",
            "selftest: busy 20",
        ] {
            assert_eq!(Report::parse(bad), None, "{bad}");
        }
    }

    fn feed(p: &mut Probes, qube: &str, start: u64, end: u64, closing: &str) {
        let f = "selftest: xstate: CPUID.1:ECX AVX 1 OSXSAVE 1, XCR0 0x7, CPUID.7:ECX PKU 0 \
                 OSPKE 0, seed 0x1";
        p.see(Some(qube), f, at(start));
        p.see(Some(qube), "selftest: busy 20", at(start));
        p.see(Some(qube), closing, at(end));
    }

    #[test]
    fn passes_overlapping_clean_probes() {
        let mut p = Probes::default();
        let ok = "selftest: xstate: 150 rounds, 0 mismatches (avx yes, pku yes)";
        feed(&mut p, "a", 10, 15, ok);
        assert!(p.done("a") && !p.done("b"));
        feed(&mut p, "b", 12, 17, ok);
        let note = p.check(&["a", "b"], at(3)).unwrap();
        assert_eq!(
            note,
            "a 150 rounds, pku yes, b 150 rounds, pku yes, 0 mismatches; probing together for 3.0 s"
        );
        // One after the other: nothing to leak.
        let mut p = Probes::default();
        feed(&mut p, "a", 10, 15, ok);
        feed(&mut p, "b", 16, 21, ok);
        let e = p.check(&["a", "b"], at(1)).unwrap_err().to_string();
        assert!(
            e.contains("together for 0.0 s, not 1.0 s (a 10.0-15.0 s, b 16.0-21.0 s)"),
            "{e}"
        );
        assert!(p.check(&["a", "b"], Duration::ZERO).is_ok());
        // One kept the CPU: 11 rounds beside 378 (SVM under QEMU, no exits in the spin).
        let mut p = Probes::default();
        feed(
            &mut p,
            "a",
            10,
            22,
            "selftest: xstate: 378 rounds, 0 mismatches (avx yes, pku yes)",
        );
        feed(
            &mut p,
            "b",
            11,
            23,
            "selftest: xstate: 11 rounds, 0 mismatches (avx yes, pku yes)",
        );
        let e = p.check(&["a", "b"], at(1)).unwrap_err().to_string();
        assert!(
            e.starts_with("the probes did not share the CPU: a 378 rounds"),
            "{e}"
        );
    }

    #[test]
    fn fails_with_the_reason() {
        let mut p = Probes::default();
        p.see(
            Some("a"),
            "selftest: xstate: CPUID.1:ECX AVX 1 OSXSAVE 0, XCR0 -, CPUID.7:ECX PKU 1 OSPKE 0, seed 0x2",
            at(1),
        );
        p.see(
            Some("a"),
            "selftest: xstate: 0 rounds, 0 mismatches (avx no, pku no)",
            at(1),
        );
        let e = p.check(&["a"], at(1)).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "AppVM a: avx no (CPUID.1:ECX AVX 1 OSXSAVE 0, XCR0 -, CPUID.7:ECX PKU 1 OSPKE 0)"
            ),
            "{e}"
        );

        let mut p = Probes::default();
        p.see(
            Some("a"),
            "selftest: xstate: first mismatch, round 3: ymm15 = 0x1 (lanes 3 differ)",
            at(2),
        );
        p.see(
            Some("a"),
            "selftest: xstate: 9 rounds, 2 mismatches (avx yes, pku no)",
            at(3),
        );
        let e = p.check(&["a"], Duration::ZERO).unwrap_err().to_string();
        assert!(
            e.ends_with("2 mismatches in 9 rounds: another qube's state reached it; first: round 3: ymm15 = 0x1 (lanes 3 differ)"),
            "{e}"
        );

        let mut p = Probes::default();
        p.see(Some("a"), "selftest: xstate: the probe failed (2)", at(1));
        let e = p
            .check(&["a", "b"], Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AppVM a: the xstate probe did not report (the probe failed (2)"),
            "{e}"
        );
        // Lines from the hypervisor or without a source are not a qube's.
        let mut p = Probes::default();
        p.see(
            None,
            "selftest: xstate: 1 rounds, 0 mismatches (avx yes, pku no)",
            at(1),
        );
        assert!(!p.done("a"));
    }
}

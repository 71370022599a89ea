//! The cost of a service call through the admin qube (`systems/bench/qrexec.toml`, part of
//! `cargo xtask bench --qemu`): a `test.Echo` call from a test client to a test server,
//! relayed by the admin qube, to its first output byte and to its exit code, against a plain
//! channel round trip between the same two qubes measured in the same boot.

use super::channels::{boot_alone, number_before};
use anyhow::{Context, Result};

/// The figures, instructions under `-icount shift=0`.
#[derive(Clone, Debug, Default)]
pub struct QrexecBench {
    /// A plain channel round trip (event mode): instructions, exits of both qubes.
    pub plain: (u64, f64),
    /// A call to its first output byte, and to its exit code: instructions.
    pub to_first: u64,
    /// To the exit code.
    pub to_exit: u64,
    /// Exits per call: the client's, the server's, the admin qube's.
    pub exits: (f64, f64, f64),
    /// `qvm-run --dispvm echo` in a Linux qube: (instructions, VM entries) to the first output
    /// byte and to the end, the whole machine (a disposable Linux booted for it).
    pub dispvm: [(u64, u64); 2],
}

/// Boots the bench system and reads the qubes' report lines.
pub fn measure() -> Result<QrexecBench> {
    let lines = boot_alone("systems/bench/qrexec.toml", "bench-qrexec", "qrexec-bench:")?;
    let last = |who: &str, what: &str| {
        lines
            .iter()
            .rev()
            .find(|l| l.contains(who) && l.contains(what))
            .cloned()
            .with_context(|| format!("qrexec bench: no {what:?} line"))
    };
    let ping = last("ping:", "ns per round trip")?;
    let pong = last("pong:", "exits of this qube per round trip")?;
    let bench = last("qrexec-bench:", "calls:")?;
    let server = last("qrexec-server: served", "exits of this qube per call")?;
    let admin = last("admin:", "exits of this qube per call")?;
    let n = |line: &str, unit: &str| number_before(line, unit).unwrap_or(f64::NAN);
    let dispvm = dispvm()?;
    Ok(QrexecBench {
        dispvm,
        plain: (
            n(&ping, "ns per round trip") as u64,
            n(&ping, "exits of this qube") + n(&pong, "exits of this qube"),
        ),
        to_first: n(&bench, "ns to the first output byte") as u64,
        to_exit: n(&bench, "ns to the exit code") as u64,
        exits: (
            n(&bench, "exits of this qube per call"),
            n(&server, "exits of this qube per call"),
            n(&admin, "exits of this qube per call"),
        ),
    })
}

/// Boots `systems/bench/dispvm.toml` under the counting plugin: work's one `qvm-run
/// --dispvm` between the agent's three marks (request, first output byte, end).
fn dispvm() -> Result<[(u64, u64); 2]> {
    use crate::qemu::{self, Control, HvEvent};
    let plugin = crate::netbench::build_plugin()?;
    let a = super::boots::assemble("systems/bench/dispvm.toml")?;
    let marks = crate::bundle::out_dir().join("bench-dispvm.marks");
    let _ = std::fs::remove_file(&marks);
    let mut opts = super::boots::options(&a, "max", 900, "bench-dispvm");
    opts.extra_args = vec![
        "-icount".into(),
        "shift=0,align=off,sleep=off".into(),
        "-plugin".into(),
        format!("{},out={}", plugin.display(), marks.display()),
    ];
    let out = qemu::boot(&opts, |e| {
        Control::stop_if(
            matches!(e.hv, Some(HvEvent::Panic(_)))
                || matches!(&e.hv, Some(HvEvent::Exited { qube, .. }) if qube == "work"),
        )
    })?;
    anyhow::ensure!(!out.timed_out, "bench-dispvm timed out");
    let said = out
        .lines
        .iter()
        .find(|l| l.contains("selftest: dispvm-bench:"));
    anyhow::ensure!(
        said.is_some_and(|l| l.contains("dispvm-echo status 0")),
        "the disposable's echo did not come back: {said:?}"
    );
    let text =
        std::fs::read_to_string(&marks).with_context(|| format!("reading {}", marks.display()))?;
    let m = crate::netbench::report::parse_marks(&text);
    anyhow::ensure!(m.len() == 3, "{} marks, 3 expected", m.len());
    let span = |later: usize| {
        let c = m[0].until(&m[later]);
        (c.insns, c.vmruns)
    };
    Ok([span(1), span(2)])
}

impl QrexecBench {
    /// Rows for the in-QEMU table (ratios to the null hypercall), and the call against its
    /// baseline.
    pub fn markdown(&self, null_call: u64) -> String {
        let ratio = |insns: u64| insns as f64 / null_call.max(1) as f64;
        let (plain, plain_exits) = self.plain;
        let (c, s, a) = self.exits;
        let mut out = format!(
            "| qrexec baseline: plain channel round trip between the same two qubes, event mode | {plain} | {plain_exits:.2} | {:.1} |\n",
            ratio(plain)
        );
        for (what, insns) in [
            ("first output byte", self.to_first),
            ("exit code", self.to_exit),
        ] {
            out.push_str(&format!(
                "| service call through the admin qube, to its {what} ({:.1}x the plain round trip) | {insns} | {:.2} | {:.1} |\n",
                insns as f64 / plain.max(1) as f64,
                c + s + a,
                ratio(insns)
            ));
        }
        for (what, (insns, entries)) in ["first output byte", "end"].iter().zip(self.dispvm) {
            out.push_str(&format!(
                "| `qvm-run --dispvm -p 'echo dispvm-echo'` in a Linux qube, to its {what} (a disposable Linux started for it; whole machine) | {insns} | {entries} VM entries | {:.0} |\n",
                ratio(insns)
            ));
        }
        out.push_str(&format!(
            "\nExits per service call: client {c:.2}, server {s:.2}, admin qube {a:.2} (the client's \
             exclude its two clock readings). The `--dispvm` call at one instruction per ns: \
             {:.2} s to its output (Qubes 4.3: about 2.9 s).\n",
            self.dispvm[0].0 as f64 / 1e9
        ));
        out
    }
}

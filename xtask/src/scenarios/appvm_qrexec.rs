//! Services between Linux qubes through the admin qube (`systems/tests/appvm-qrexec.toml`):
//! work's self-test runs the Qubes commands as a user would. `qvm-run -p` into personal
//! returns output and exit code; into evil it is refused and evil never sees it; a tree of
//! several MiB copied to personal arrives byte for byte; `qvm-move` removes its source;
//! `qvm-open-in-dvm` and `qvm-run --dispvm` run in a disposable that is wiped afterwards;
//! `qvm-ls` lists the qubes. Meanwhile evil, a unikernel, sends personal hostile file copies,
//! and nothing lands outside personal's incoming folder for it.

use super::network::{boot_until_exited, exit_status};
use super::{Scenario, expect};
use anyhow::{Context, Result};

pub const APPVM_QREXEC: Scenario = Scenario {
    name: "appvm-qrexec",
    about: "qvm-run, qvm-copy, qvm-move, qvm-open-in-dvm, qvm-run --dispvm and qvm-ls between Linux qubes through the admin qube; a hostile sender writes nothing outside the incoming folder",
    run,
};

/// Bytes work copies: 3 MiB, 1.5 MiB, "small\n" and an empty file.
const COPIED: f64 = (3072.0 + 1536.0) * 1024.0 + 6.0;

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let out = boot_until_exited(
        "systems/tests/appvm-qrexec.toml",
        "appvm-qrexec",
        &["work"],
        1200,
    )?;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!("work did not power off cleanly: {:?}", out.exited)
    })?;
    let said: Vec<String> = out
        .lines_from("work")
        .iter()
        .filter_map(|l| {
            l.split_once("selftest: qrexec: ")
                .map(|(_, r)| r.to_string())
        })
        .collect();
    let has = |s: &str| said.iter().any(|l| l.contains(s));
    for (what, line) in [
        ("qvm-run output", "run: bulkhead.name=personal"),
        ("qvm-run exit code", "run status 3"),
        ("a denied qvm-run", "denied: Request refused"),
        ("a denied qvm-run's status", "denied status 126"),
        ("the copy", "copy status 0"),
        ("the copy, byte for byte", "copy identical, 4 files"),
        ("qvm-move", "move removed the source, status 0"),
        ("the moved file", "moved: move-me"),
        ("qvm-open-in-dvm", "open status 0: 15 "),
        ("qvm-run --dispvm", "dispvm dispvm-echo status 0"),
        ("qvm-ls", "ls: personal"),
        ("the end", "done"),
    ] {
        expect(has(line), || format!("{what}: no {line:?} in {said:#?}"))?;
    }
    // The hostile sender: all its copies answered, and only its honest file arrived.
    let evil = out.lines_from("evil");
    expect(
        evil.iter()
            .any(|l| l.contains("all 8 copies answered as expected")),
        || format!("evil's copies: {evil:#?}"),
    )?;
    let landed: Vec<&String> = said.iter().filter(|l| l.starts_with("hostile: ")).collect();
    expect(
        landed.len() == 1 && landed[0] == "hostile: honest.txt",
        || format!("personal holds, for evil: {landed:?}"),
    )?;
    // The denied call is logged once by the admin qube; evil never heard of it.
    let admin = out.lines_from("admin");
    let denied = admin
        .iter()
        .filter(|l| l.contains("policy: qubes.VMShell work -> evil: denied"))
        .count();
    expect(denied == 1, || {
        format!("work -> evil logged {denied} times: {admin:#?}")
    })?;
    expect(!evil.iter().any(|l| l.contains("VMShell")), || {
        "evil heard of the denied call".into()
    })?;
    // Each disposable was wiped after its call.
    let wiped = out
        .lines
        .iter()
        .filter(|l| l.contains("qube disp: memory wiped") && l.contains("all zero"))
        .count();
    expect(wiped >= 2, || {
        format!("disp wiped {wiped} times, 2 calls ran in it")
    })?;
    let span = |prefix: &str| -> Result<f64> {
        let l = said
            .iter()
            .find(|l| l.starts_with(prefix))
            .with_context(|| format!("no {prefix:?} line"))?;
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = |w: &str| {
            words
                .iter()
                .position(|x| *x == w)
                .and_then(|i| words.get(i + 1))
        };
        let (a, b) = (at("from"), at("to"));
        let (a, b): (f64, f64) = (
            a.context("no start")?.parse()?,
            b.context("no end")?.parse()?,
        );
        Ok((b - a).max(0.01))
    };
    let (copy, local, dispvm) = (span("copy status")?, span("local read")?, span("dispvm ")?);
    let mb = COPIED / 1e6;
    Ok(format!(
        "run, deny, copy ({:.2} MB/s; a local read {:.0} MB/s), move, open-in-dvm, \
         --dispvm echo in {dispvm:.2} s, ls; the hostile sender's 7 attacks refused, disp wiped {wiped} times",
        mb / copy,
        mb / local
    ))
}

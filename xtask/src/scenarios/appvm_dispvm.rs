//! A disposable asked for from a Linux AppVM (`systems/tests/appvm-dispvm.toml`): the AppVM's
//! self-test runs the agent's `dispvm` as a user would in a terminal window. The first
//! request's output arrives with its escape sequence shown as text (`\x1b[31m`, not the byte
//! the hypervisor's console would show as `·`); a second `dispvm` while another holds the
//! request channel is refused; that other one waits for the first disposable to power off,
//! and the disposable, started again from zeroed memory, reports exit status 7.

use super::network::{boot_until_exited, exit_status, saw};
use super::{Scenario, expect};
use anyhow::Result;

pub const APPVM_DISPVM: Scenario = Scenario {
    name: "appvm-dispvm",
    about: "a Linux AppVM runs commands in a Linux disposable with `dispvm`: output made safe, status, one request at a time, a second disposable after the first",
    run,
};

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let out = boot_until_exited(
        "systems/tests/appvm-dispvm.toml",
        "appvm-dispvm",
        &["work"],
        900,
    )?;
    expect(!out.timed_out, || {
        format!("timed out; last line {:?}", out.lines.last())
    })?;
    expect(exit_status(&out, "work") == Some(0), || {
        format!(
            "the AppVM did not power off cleanly: exited {:?}, stopped {:?}",
            out.exited, out.stopped
        )
    })?;
    expect(
        saw(
            &out,
            &[
                "work",
                "channel disp.req0: requests to the disposable disp, made by `dispvm`",
            ],
        ),
        || "the agent did not leave the request channel to dispvm".into(),
    )?;
    let first = [
        "selftest: dispvm 1: hello-from-disp",
        "selftest: dispvm 1: bulkhead.name=disp",
        r"selftest: dispvm 1: \x1b[31mred\x1b[0m",
        "selftest: dispvm 1: status 0",
    ];
    for words in first {
        expect(saw(&out, &["work", words]), || {
            format!("the first request did not show {words:?}")
        })?;
    }
    expect(
        saw(
            &out,
            &[
                "work",
                "selftest: dispvm busy: dispvm: another dispvm is using disp.req0",
            ],
        ) && saw(&out, &["work", "selftest: dispvm busy: status 125"]),
        || "a second dispvm at the same time was not refused".into(),
    )?;
    expect(
        saw(&out, &["work", "selftest: dispvm 2: second"])
            && saw(&out, &["work", "selftest: dispvm 2: status 7"]),
        || "the disposable did not serve the second request (output, status 7)".into(),
    )?;
    let count = |words: &[&str]| {
        out.lines
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    };
    let started = count(&["qube disp started on request"]);
    expect(started == 2, || {
        format!("the disposable started {started} times, not 2")
    })?;
    let wiped = count(&["qube disp: memory wiped", "read back: all zero"]);
    expect(wiped == 2, || {
        format!("{wiped} wipes of the disposable's memory read back all zero, not 2")
    })?;
    let ready: Vec<String> = out
        .lines
        .iter()
        .filter_map(|l| {
            l.split_once("qube disp: agent ready after ")
                .map(|(_, r)| r.to_string())
        })
        .collect();
    Ok(format!(
        "2 requests served (status 0, then 7), 1 refused while busy; disposable ready after: {}; wall {:.1} s",
        ready.join(" | "),
        out.wall.as_secs_f64()
    ))
}

//! QEMU killed in the middle of writes to a Linux AppVM's `/home`
//! (`systems/tests/appvm-home-crash.toml`): `work` boots the debian template with its
//! private volume as ext4 at `/home` (the template's `mke2fs`), and its self-test step
//! `home-journal` writes 16 KiB records, each synced with its folder (an NBD FLUSH, then the
//! storage qube's flush of the disk) before it logs `selftest: journal: acked N`, while a
//! writer in the background keeps rewriting a 4 MiB file. The scenario kills QEMU with
//! SIGKILL once [`KILL_AT`] records are acknowledged, boots again on the same image, and
//! requires: `e2fsck -p -f` (forced over the whole file system by `appvm.fsck=force`) exits
//! 0 or 1 (clean, or journal and orphan clean-up done; never errors left), `/home` is
//! mounted, and the self-test finds at least every acknowledged record intact.

use super::appvm_template::after;
use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result};

pub const APPVM_HOME_CRASH: Scenario = Scenario {
    name: "appvm-home-crash",
    about: "QEMU killed (SIGKILL) during writes to a Linux AppVM's ext4 /home: booted again, e2fsck leaves no error and every acknowledged record is there",
    run,
};

/// Records acknowledged in boot 1 before the kill.
const KILL_AT: u64 = 20;

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-home-crash.toml")?;
    let image = boots::fresh_disk(&a, "appvm-home-crash")?;
    let mut opts = boots::options(&a, "max", 300, "appvm-home-crash-boot1");
    opts.nic = None;
    opts.disk = Some(image.path.clone());
    let out = boot_once(&opts, Some(KILL_AT))?;
    expect(out.killed, || "boot 1 ended before the kill".to_string())?;
    let lines = out.lines_from("work");
    expect(found(&lines) == Some(0), || {
        format!("boot 1 found records on a fresh volume: {lines:#?}")
    })?;
    let acked = last_ack(&lines).context("boot 1 acknowledged no record")?;

    let mut opts = boots::options(&a, "max", 300, "appvm-home-crash-boot2");
    opts.nic = None;
    opts.disk = Some(image.path.clone());
    let out = boot_once(&opts, None)?;
    let lines = out.lines_from("work");
    let checked = after(&lines, "appvm: /home checked: ")
        .with_context(|| format!("boot 2 did not check /home: {lines:#?}"))?;
    expect(
        checked.starts_with("e2fsck -p -f exit 0:") || checked.starts_with("e2fsck -p -f exit 1:"),
        || format!("e2fsck left errors, or did not check the whole file system: {checked}"),
    )?;
    expect(
        lines
            .iter()
            .any(|l| l.contains("appvm: /home is ext4, mounted in ")),
        || format!("boot 2 did not mount /home: {lines:#?}"),
    )?;
    let records = found(&lines).with_context(|| format!("boot 2 did not count: {lines:#?}"))?;
    expect(records >= acked, || {
        format!(
            "record {acked} was acknowledged before the kill, boot 2 found {records} intact: an \
             acknowledged write is lost"
        )
    })?;
    Ok(format!(
        "killed at acked record {acked}; boot 2: {checked}; {records} records intact ({} past \
         the last acknowledged)",
        records - acked
    ))
}

/// Boots until QEMU is killed (boot 1: `kill_at` records acknowledged) or, for the boot
/// after, until the AppVM has counted its records (or a failure).
fn boot_once(opts: &qemu::BootOptions, kill_at: Option<u64>) -> Result<BootOutcome> {
    let out = qemu::boot(opts, |e| {
        if let Some(HvEvent::Panic(_) | HvEvent::Stopped { .. } | HvEvent::Exited { .. }) = &e.hv {
            return Control::Stop;
        }
        if e.line.source.as_deref() != Some("work") {
            return Control::Continue;
        }
        let body = &e.line.body;
        match kill_at {
            Some(n) if ack(body).is_some_and(|a| a >= n) => Control::Kill,
            None if body.contains("selftest: journal: found ") => Control::Stop,
            _ => Control::Continue,
        }
    })?;
    boots::finished(&out)?;
    Ok(out)
}

/// N of `selftest: journal: acked N`.
fn ack(line: &str) -> Option<u64> {
    line.split_once("selftest: journal: acked ")?
        .1
        .trim()
        .parse()
        .ok()
}

/// The last record acknowledged.
fn last_ack(lines: &[String]) -> Option<u64> {
    lines.iter().filter_map(|l| ack(l)).max()
}

/// N of `selftest: journal: found N intact records`.
fn found(lines: &[String]) -> Option<u64> {
    after(lines, "selftest: journal: found ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_self_test_lines() {
        let lines: Vec<String> = [
            "selftest: journal: found 0 intact records",
            "selftest: journal: acked 1",
            "selftest: journal: acked 12",
            "selftest: journal: acked 3",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(found(&lines), Some(0));
        assert_eq!(last_ack(&lines), Some(12));
        assert_eq!(ack("x selftest: journal: acked nope"), None);
    }
}

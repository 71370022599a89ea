//! A storage qube that tampers with a template is caught by the AppVM reading it
//! (`systems/tests/template-tamper.toml`): the storage qube, built with its test hooks and
//! given `corrupt-template=40`, flips byte 40 of the debian template's root volume in the data
//! of every read that covers it (its disk keeps the right bytes). `work` reads the volume as
//! `/dev/nbd1` under dm-verity, whose root hash comes from the manifest: its kernel must log
//! the block as corrupted, `/init` must not mount the root, the `template` self-test must find
//! none, and the qube must go on in its initramfs and power off cleanly. The storage qube must
//! have flipped the byte at least once, nothing may panic, and the image on the host must
//! still hold the template as built.

use super::{Scenario, boots, expect};
use crate::disk;
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

pub const TEMPLATE_TAMPER: Scenario = Scenario {
    name: "template-tamper",
    about: "a storage qube that flips a byte of the template's root (a test hook) makes the AppVM's dm-verity refuse the block: no root is mounted, nothing changed is read",
    run,
};

/// The byte the storage qube flips: `corrupt-template=` in the system description.
const OFFSET: u64 = 40;
/// How long to wait, after the AppVM powered off, for the storage qube's flip count.
const COUNT_PATIENCE: Duration = Duration::from_secs(10);

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble_with_test_hooks("systems/tests/template-tamper.toml")?;
    let image = boots::fresh_disk(&a, "template-tamper")?;
    let path = image.path.clone();
    let made = image.describe();
    let mut opts = boots::options(&a, "max", 300, "template-tamper");
    opts.nic = None;
    opts.disk = Some(path.clone());
    let out = boot_once(&opts)?;
    let figures = check(&out)?;
    // The hook changes what is sent, never the disk: the image still holds the template
    // exactly as built (`prepare` would rewrite a volume whose bytes differ).
    let kept = disk::prepare(&a.system, &path)?.context("the image is still there")?;
    expect(kept.change == disk::Change::Kept, || {
        format!("the image changed during the boot: {}", kept.describe())
    })?;
    Ok(format!("{made}; {figures}"))
}

/// Boots until the AppVM has powered off and the storage qube has logged its flips since
/// (or a failure).
fn boot_once(opts: &qemu::BootOptions) -> Result<BootOutcome> {
    let mut exited_at: Option<Instant> = None;
    let mut counted = false;
    let out = qemu::boot(opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. }) => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) if qube == "storage" => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) if qube == "work" => {
                exited_at = Some(Instant::now());
            }
            _ => {}
        }
        if e.line.source.as_deref() == Some("storage") && flips(&e.line.body).is_some() {
            counted = true;
        }
        Control::stop_if(exited_at.is_some_and(|t| counted || t.elapsed() > COUNT_PATIENCE))
    })?;
    boots::finished(&out)?;
    Ok(out)
}

/// K of the storage qube's `storage: test hook: flipped byte N in K reads`.
fn flips(line: &str) -> Option<u64> {
    let marker = format!("storage: test hook: flipped byte {OFFSET} in ");
    let rest = line.split_once(&marker)?.1;
    rest.strip_suffix(" reads")?.parse().ok()
}

/// Checks the boot; returns its figures.
fn check(out: &BootOutcome) -> Result<String> {
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    expect(!out.exited.iter().any(|(n, _)| n == "storage"), || {
        format!("the storage qube exited: {:?}", out.exited)
    })?;
    expect(
        out.exited.iter().any(|(n, s)| n == "work" && *s == 0),
        || format!("work did not power off cleanly: exited {:?}", out.exited),
    )?;
    let panicked: Vec<&String> = out
        .lines
        .iter()
        .filter(|l| l.contains("Kernel panic") || l.contains("| panic: "))
        .collect();
    expect(panicked.is_empty(), || {
        format!("something panicked: {panicked:#?}")
    })?;

    let storage = out.lines_from("storage");
    let hooked = format!("storage: test hook: flipping byte {OFFSET} of every template root read");
    expect(storage.iter().any(|l| l.contains(&hooked)), || {
        format!("the storage qube did not turn its hook on: {storage:#?}")
    })?;
    let Some(k) = storage.iter().rev().find_map(|l| flips(l)) else {
        bail!("the storage qube did not say how many reads it changed: {storage:#?}");
    };
    expect(k >= 1, || {
        format!("the storage qube flipped the byte in {k} reads")
    })?;
    let reads = storage
        .iter()
        .rev()
        .find(|l| l.contains("storage: work.root: ") && l.contains(" requests: "))
        .and_then(|l| l.split_once(" requests: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| "no counters line".into());

    let work = out.lines_from("work");
    let has = |words: &[&str]| work.iter().any(|l| words.iter().all(|w| l.contains(w)));
    // `DMERR_LIMIT("%s: %s block %llu is corrupted", ...)` in the kernel's
    // drivers/md/dm-verity-target.c (`verity_handle_err`), a KERN_ERR line: it reaches the
    // console under `loglevel=4`.
    let Some(verity) = work
        .iter()
        .find(|l| l.contains("device-mapper: verity:") && l.contains(" is corrupted"))
    else {
        bail!("work's kernel did not log a dm-verity corruption: {work:#?}");
    };
    expect(has(&["appvm: no template root"]), || {
        format!("/init did not say it has no template root: {work:#?}")
    })?;
    expect(!has(&["appvm: root is the template"]), || {
        format!("work mounted the tampered root: {work:#?}")
    })?;
    expect(!has(&["selftest: template: debian"]), || {
        format!("work ran programs from the tampered root: {work:#?}")
    })?;
    let Some(selftest) = work
        .iter()
        .find(|l| l.contains("selftest: template: no root"))
    else {
        bail!("the self-test did not say \"selftest: template: no root\": {work:#?}");
    };
    let verity = verity
        .split_once("device-mapper: verity:")
        .map_or(verity.as_str(), |(_, r)| r.trim());
    let selftest = selftest
        .split_once("selftest: template: ")
        .map_or(selftest.as_str(), |(_, r)| r);
    Ok(format!(
        "byte {OFFSET} flipped in {k} reads; work's dm-verity: {verity}; {selftest}; work.root: {reads}"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_flip_count() {
        let line = "[info] storage: test hook: flipped byte 40 in 3 reads";
        assert_eq!(super::flips(line), Some(3));
        assert_eq!(
            super::flips("storage: test hook: flipped byte 41 in 3 reads"),
            None
        );
        assert_eq!(
            super::flips("storage: test hook: flipped byte 40 in x reads"),
            None
        );
    }
}

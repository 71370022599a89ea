//! Linux AppVMs on the debian template with `/home` on their private volumes, across a
//! restart of the whole system (`systems/tests/appvm-home.toml`): the storage qube serves
//! `work` a 32 MiB volume over `work.blk` and `personal` one of 16 MiB, and both the
//! template's root volume (`*.root`, read-only, one volume on the disk). Each agent serves
//! its volume to the kernel's NBD driver as `/dev/nbd0` and the template as `/dev/nbd1`
//! under dm-verity; `/init` mounts the template (squashfs) read-only under an in-memory
//! overlay at `/sysroot`, makes an ext2 file system on the private volume the first time (no
//! superblock magic yet) and mounts it at `/sysroot/home`, and the agent moves into
//! `/sysroot`. The system boots twice on one fresh disk image of the scenario's own
//! (`target/bulkhead/appvm-home-test/disk.img`): boot 1 creates the file system, writes
//! `boot 1` into `/home/persist.txt` and a file into `/usr`; boot 2 finds `boot 1` and no
//! file in `/usr`. Both AppVMs run Debian's bash, iproute2 and procps from the template,
//! both read it from the same sectors, each boot unmounts `/home` and flushes the device
//! before it powers off, and the storage qube refuses nothing and reports no I/O error.

use super::appvm_template::{self as template, after};
use super::{Scenario, boots, expect};
use crate::disk;
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

pub const APPVM_HOME: Scenario = Scenario {
    name: "appvm-home",
    about: "two Linux AppVMs boot the debian template's verified read-only root from one volume; /home on a private volume survives a restart of the whole system, a change to /usr does not",
    run,
};

/// How long to wait, after the AppVM powered off, for the storage qube's counters line.
const COUNTERS_PATIENCE: Duration = Duration::from_secs(10);

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-home.toml")?;
    let image = boots::fresh_disk(&a, "appvm-home")?;
    let path = image.path.clone();
    let made = image.describe();
    let mut figures = Vec::new();
    for boot in 1..=2u32 {
        let mut opts = boots::options(&a, "max", 600, &format!("appvm-home-boot{boot}"));
        opts.nic = None;
        opts.disk = Some(path.clone());
        let out = boot_once(&opts)?;
        figures.push(check_boot(&out, boot).with_context(|| format!("boot {boot}"))?);
    }
    let kept = disk::prepare(&a.system, &path)?.context("the image is still there")?;
    expect(kept.change == disk::Change::Kept, || {
        format!("the image changed between boots: {}", kept.describe())
    })?;
    Ok(format!("{made}; {}", figures.join("; ")))
}

/// Boots until the AppVM has powered off and the storage qube has reported its requests
/// since (or a failure).
fn boot_once(opts: &qemu::BootOptions) -> Result<BootOutcome> {
    let mut exited_at: Option<Instant> = None;
    let mut personal_exited = false;
    let mut counted_after_write = false;
    let mut wrote = false;
    let out = qemu::boot(opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. }) => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) if qube == "storage" => return Control::Stop,
            Some(HvEvent::Exited { qube, .. }) if qube == "work" => {
                exited_at = Some(Instant::now());
            }
            Some(HvEvent::Exited { qube, .. }) if qube == "personal" => personal_exited = true,
            _ => {}
        }
        let source = e.line.source.as_deref().unwrap_or("");
        if source == "work"
            && e.line
                .body
                .contains("selftest: home: unmounted and flushed")
        {
            wrote = true;
        }
        if wrote && source == "storage" && e.line.body.contains("storage: work: ") {
            counted_after_write = true;
        }
        let done = personal_exited
            && exited_at.is_some_and(|t| counted_after_write || t.elapsed() > COUNTERS_PATIENCE);
        Control::stop_if(done)
    })?;
    boots::finished(&out)?;
    Ok(out)
}

/// Checks one boot; returns its figures.
fn check_boot(out: &BootOutcome, boot: u32) -> Result<String> {
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    for qube in ["work", "personal"] {
        expect(out.exited.iter().any(|(n, s)| n == qube && *s == 0), || {
            format!("{qube} did not power off cleanly: exited {:?}", out.exited)
        })?;
    }
    let root = template::check_roots(out, &["work", "personal"])?;
    template::check_disposables(out, "work")?;
    let ready = |q: &str| {
        template::ready_at(out, q).map_or_else(|| "?".to_string(), |t| format!("{t:.2} s"))
    };
    let ready = format!(
        "agent ready at uptime {} (work), {} (personal) on the template, {} (plain, initramfs)",
        ready("work"),
        ready("personal"),
        ready("plain")
    );
    expect(!out.exited.iter().any(|(n, _)| n == "storage"), || {
        "the storage qube exited".into()
    })?;
    let work = out.lines_from("work");
    let has = |words: &str| work.iter().any(|l| l.contains(words));
    let how = if boot == 1 { "created" } else { "found" };
    let mounted = format!("appvm: /home on the private volume (32 MiB, {how})");
    expect(has(&mounted), || {
        format!("the AppVM did not say \"{mounted}\": {work:#?}")
    })?;
    // Under the template's root: ext4 with a journal, checked before every mount but the
    // first (a clean unmount at the end of each boot: e2fsck says clean, exit 0).
    expect(has("appvm: /home is ext4, mounted in "), || {
        format!("/home is not ext4: {work:#?}")
    })?;
    let checked = after(&work, "appvm: /home checked: ");
    if boot == 1 {
        expect(checked.is_none(), || {
            format!("a fresh file system was checked: {checked:?}")
        })?;
    } else {
        expect(
            checked
                .as_deref()
                .is_some_and(|c| c.starts_with("e2fsck -p exit 0: home: clean")),
            || format!("e2fsck did not find /home clean: {checked:?}"),
        )?;
    }
    if boot == 1 {
        expect(!has("selftest: home: found"), || {
            format!("boot 1 found a file on a fresh volume: {work:#?}")
        })?;
    } else {
        let found = format!("selftest: home: found \"boot {}\"", boot - 1);
        expect(has(&found), || {
            format!("the AppVM did not say {found}: {work:#?}")
        })?;
    }
    let wrote = format!("selftest: home: wrote boot {boot}");
    expect(has(&wrote), || {
        format!("the AppVM did not say \"{wrote}\": {work:#?}")
    })?;
    expect(has("selftest: home: unmounted and flushed"), || {
        format!("the AppVM did not unmount and flush /home: {work:#?}")
    })?;
    let storage = out.lines_from("storage");
    let Some(counters) = storage
        .iter()
        .rev()
        .find(|l| l.contains("storage: work: ") && l.contains(" requests: "))
    else {
        bail!("no counters line of the storage qube for work: {storage:#?}");
    };
    expect(
        counters.contains(" 0 refused (0 logged), 0 I/O errors"),
        || format!("work's requests were refused or failed: {counters}"),
    )?;
    let served = after(&work, "home: /dev/nbd0 serves ").unwrap_or_default();
    let ready_ms = served
        .rsplit_once("ready in ")
        .map_or("?", |(_, ms)| ms.trim_end_matches(" ms"));
    let mount = after(&work, "appvm: /home is ext4, mounted in ")
        .and_then(|r| r.split_once(',').map(|(ms, _)| ms.to_string()))
        .unwrap_or_else(|| "?".into());
    let requests = counters
        .split_once("storage: work: ")
        .map_or(counters.as_str(), |(_, r)| r);
    Ok(format!(
        "boot {boot}: {root}; two disposables on the template found /usr clean; {ready}; /home {how}, {} (ext4; device ready {ready_ms} ms after the agent asked, mkfs or fsck and mount {mount}); storage: {requests}",
        if boot == 1 {
            "wrote boot 1".to_string()
        } else {
            format!("found \"boot {}\", wrote boot {boot}", boot - 1)
        }
    ))
}

//! What a boot of Linux AppVMs on a template root must show (used by `appvm-home`): each
//! qube mounted the template from the dm-verity device, runs Debian's programs from it, its
//! agent moved into it, a file it wrote into `/usr` in an earlier boot is gone, and the
//! storage qube served every qube the template from the same sectors, read-only, refusing
//! nothing.

use super::expect;
use crate::qemu::BootOutcome;
use anyhow::{Result, bail};

/// The text after `marker` in the first of `lines` that holds it.
pub fn after(lines: &[String], marker: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        l.split_once(marker)
            .map(|(_, rest)| rest.trim().to_string())
    })
}

/// Checks every qube of `qubes` in `out`; returns the figures (mount times, what was read).
pub fn check_roots(out: &BootOutcome, qubes: &[&str]) -> Result<String> {
    let storage = out.lines_from("storage");
    let mut first_sector: Option<String> = None;
    let mut figures = Vec::new();
    for &q in qubes {
        let lines = out.lines_from(q);
        let has = |words: &str| lines.iter().any(|l| l.contains(words));
        let Some(mounted) = after(&lines, "appvm: root is the template ") else {
            bail!("{q} did not mount the template's root: {lines:#?}");
        };
        expect(mounted.starts_with("debian from /dev/dm-"), || {
            format!("{q} mounted something else as its root: {mounted}")
        })?;
        for words in [
            "selftest: template: debian 12.",
            "selftest: template: bash 5.",
            "ip utility, iproute2-",
            "ps from procps-ng",
            "selftest: template: /usr clean",
            "selftest: template: wrote /usr/local/bulkhead-scratch",
            "selftest: template: agent root /sysroot",
        ] {
            expect(has(words), || {
                format!("{q} did not say \"{words}\": {lines:#?}")
            })?;
        }
        expect(!has("/usr change KEPT"), || {
            format!("{q} found an earlier boot's change to /usr: {lines:#?}")
        })?;
        let serving = format!("storage: serving {q} its template's root (");
        let Some(place) = after(&storage, &serving) else {
            bail!("the storage qube did not serve {q} the template: {storage:#?}");
        };
        expect(place.contains(", read-only) on "), || {
            format!("{q}'s template root was not served read-only: {place}")
        })?;
        let sector = place
            .split_once(" at sector ")
            .map(|(_, r)| r.split(',').next().unwrap_or("").to_string())
            .unwrap_or_default();
        match &first_sector {
            None => first_sector = Some(sector),
            Some(s) => expect(*s == sector, || {
                format!("the qubes' template roots are at different sectors: {s} and {sector}")
            })?,
        }
        let counters = format!("storage: {q}.root: ");
        let Some(c) = storage
            .iter()
            .rev()
            .find(|l| l.contains(&counters) && l.contains(" requests: "))
        else {
            bail!("no counters line of the storage qube for {q}.root: {storage:#?}");
        };
        expect(
            c.contains(" 0 writes (0 KiB)") && c.contains(" 0 refused (0 logged), 0 I/O errors"),
            || format!("{q}'s template root saw writes, refusals or errors: {c}"),
        )?;
        let read = c
            .split_once(" reads (")
            .and_then(|(_, r)| r.split(')').next())
            .unwrap_or("?");
        let ms = mounted
            .rsplit_once(" in ")
            .map_or("?", |(_, ms)| ms.trim_end_matches(" ms"));
        figures.push(format!("{q} root mounted in {ms} ms, {read} read"));
    }
    Ok(format!(
        "template root shared at sector {}: {}",
        first_sector.unwrap_or_default(),
        figures.join(", ")
    ))
}

/// Checks that `starter`'s two disposables (self-test step `dispvm-template`) each ran on
/// the template and found `/usr` clean, whatever the one before wrote.
pub fn check_disposables(out: &BootOutcome, starter: &str) -> Result<()> {
    let lines = out.lines_from(starter);
    for n in 1..=2 {
        let prefix = format!("selftest: dispvm-template {n}: ");
        let said: Vec<String> = lines
            .iter()
            .filter_map(|l| l.split_once(&prefix).map(|(_, r)| r.trim().to_string()))
            .collect();
        for want in ["on debian", "clean", "wrote", "status 0"] {
            expect(said.iter().any(|l| l == want), || {
                format!("disposable {n} did not say \"{want}\": {said:?}")
            })?;
        }
        expect(!said.iter().any(|l| l.starts_with("KEPT")), || {
            format!("disposable {n} found an earlier disposable's file: {said:?}")
        })?;
    }
    Ok(())
}

/// The uptime at which `qube`'s agent was ready (self-test step `ready-time`), in seconds.
pub fn ready_at(out: &BootOutcome, qube: &str) -> Option<f64> {
    after(
        &out.lines_from(qube),
        "selftest: ready-time: agent ready at uptime ",
    )
    .and_then(|r| r.trim_end_matches(" s").parse().ok())
}

//! A hostile Linux AppVM against the storage qube (`systems/tests/appvm-block-hostile.toml`,
//! issue #17): `evil`'s self-test step `block-hostile` runs the agent's `block-hostile`
//! (`linux-appvm/agent/src/blockdev/hostile.rs`) on its private volume's channel `evil.blk`
//! and its template root's `evil.root`: sectors outside the volume (past its end, across
//! it, `u64::MAX`), zero and too many sectors, pool offsets past the pool or unaligned,
//! writes and discards past the end (on the read-only root: anywhere), bytes that are not
//! a request, and a flood of 2000 bad reads. The agent serves neither volume under that
//! step, so nothing else uses the channels. Meanwhile `honest` (the testing unikernel,
//! `mode=block-client`), whose volume begins where evil's ends, writes its pattern and reads
//! it back.
//!
//! Required: every message refused with the error due (no `ACCEPTED` line, the summary's
//! counts); the storage qube logged the first 8 refusals of each channel one by one and
//! counted them all, and its counters line for each shows as many requests as evil sent,
//! no read, write, flush or discard done, no I/O error; it did not exit and nothing
//! panicked; evil powered off cleanly; honest's data read back intact with nothing refused.
//! On the host, evil's volume is filled with a known pattern before the boot, and the image
//! is compared byte for byte: everything but honest's volume (the table, evil's volume,
//! the template's root) must be as before the boot, and honest's volume as it was when
//! honest had finished, which must be before evil began.

use super::storage::{figure_before, storage_summary};
use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result, bail};
use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_abi::disk::{Volume, VolumeKind};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

pub const APPVM_BLOCK_HOSTILE: Scenario = Scenario {
    name: "appvm-block-hostile",
    about: "a hostile Linux AppVM asks the storage qube for sectors outside its volume and its template's root, absurd lengths, writes to the read-only root, garbage and a flood: every request refused and logged, nothing read or written, its neighbour's data intact",
    run,
};

const EVIL: &str = "evil";
const NEIGHBOUR: &str = "honest";
/// evil's block channels, each with the name the storage qube's lines give it (a private
/// volume's lines name the qube, a root's its channel: `unikernels/storage/src/serve.rs`).
const CHANNELS: [(&str, &str); 2] = [("evil.blk", "evil"), ("evil.root", "evil.root")];
/// Refusals the storage qube logs one by one per channel (`serve::LOGGED_REFUSALS`).
const LOGGED_REFUSALS: usize = 8;
/// The flood's bad reads (`hostile::FLOOD`).
const FLOOD: u64 = 2000;
/// The start of the agent's lines (`hostile::PREFIX`).
const PREFIX: &str = "selftest: block-hostile: ";

fn run() -> Result<String> {
    if let Some(note) = super::appvms::skip() {
        return Ok(note);
    }
    let a = boots::assemble("systems/tests/appvm-block-hostile.toml")?;
    let image = boots::fresh_disk(&a, "appvm-block-hostile")?;
    let path = image.path.clone();
    let volume = |name| {
        image
            .layout
            .find(name, VolumeKind::Private)
            .with_context(|| format!("no volume of {name} on {}", path.display()))
    };
    let (evil, honest) = (bytes(volume(EVIL)?), bytes(volume(NEIGHBOUR)?));
    fill(&path, evil.clone())?;
    let len = std::fs::metadata(&path)?.len();
    let outside = [0..honest.start, honest.end..len];
    let before = digest(&path, &outside)?;

    let mut opts = boots::options(&a, "max", 420, "appvm-block-hostile");
    opts.nic = None;
    opts.disk = Some(path.clone());
    let mut snapshot: Option<Result<Vec<u8>>> = None;
    let mut evil_began = false;
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    let mut exited = 0;
    let out = qemu::boot(&opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. } | HvEvent::Idle) => {
                return Control::Stop;
            }
            Some(HvEvent::Exited { qube, status }) => {
                if *status != 0 || qube == "storage" {
                    return Control::Stop;
                }
                exited += 1;
            }
            _ => {}
        }
        let body = &e.line.body;
        match e.line.source.as_deref() {
            Some(EVIL) => {
                evil_began |= body.contains("selftest: block-hostile");
                for (ch, _) in CHANNELS {
                    if body.contains(&format!("{PREFIX}{ch}: "))
                        && let Some(n) = figure_before(body, " requests in all")
                    {
                        counted.insert(ch.to_string(), n);
                    }
                }
            }
            Some(NEIGHBOUR) => {
                if body.contains("block-client: boot 1 wrote ") && snapshot.is_none() {
                    // Its data is written, flushed and read back: what the disk must keep.
                    snapshot = Some(if evil_began {
                        Err(anyhow::anyhow!(
                            "evil began its attack before honest had finished: no baseline \
                             for honest's volume"
                        ))
                    } else {
                        digest(&path, std::slice::from_ref(&honest))
                    });
                }
                if let Some(n) = figure_before(body, " requests in all") {
                    counted.insert(NEIGHBOUR.to_string(), n);
                }
            }
            Some("storage") => {
                for (ch, label) in CHANNELS.iter().chain(&[(NEIGHBOUR, NEIGHBOUR)]) {
                    if let Some((_, rest)) = body.split_once(&format!("storage: {label}: "))
                        && let Some(n) = rest
                            .split_once(" requests: ")
                            .and_then(|(n, _)| n.parse().ok())
                    {
                        answered.insert(ch.to_string(), n);
                    }
                }
            }
            _ => {}
        }
        let done = exited == 2
            && counted.len() == 3
            && counted.iter().all(|(ch, n)| answered.get(ch) == Some(n));
        Control::stop_if(done)
    })?;
    boots::finished(&out)?;
    let figures = check(&out)?;

    let honest_at_end = snapshot.context("honest never said it wrote and read back its data")??;
    expect(digest(&path, &outside)? == before, || {
        format!(
            "the image changed outside honest's volume (bytes {}..{} of {}): evil's volume, \
             the table or the template's root was written",
            honest.start,
            honest.end,
            path.display()
        )
    })?;
    expect(
        digest(&path, std::slice::from_ref(&honest))? == honest_at_end,
        || "honest's volume changed after honest had finished with it".to_string(),
    )?;
    Ok(format!(
        "{}; {figures}; the image unchanged outside honest's volume (evil's {} MiB filled \
         before the boot), honest's volume unchanged since it finished",
        image.describe(),
        (evil.end - evil.start) >> 20
    ))
}

/// A volume's bytes in the image.
fn bytes(v: &Volume) -> Range<u64> {
    let sector = u64::from(SECTOR_SIZE);
    v.first_sector * sector..(v.first_sector + v.sectors) * sector
}

/// Fills `range` of the image at `path` with text no request of evil's may change: each
/// sector says which it is.
fn fill(path: &Path, range: Range<u64>) -> Result<()> {
    let sector = SECTOR_SIZE as usize;
    let mut data = Vec::with_capacity((range.end - range.start) as usize);
    for s in 0..(range.end - range.start) / sector as u64 {
        let text = format!("evil's own volume, sector {s}: the hostile client must not change it");
        let mut one = text.into_bytes();
        one.resize(sector - 1, b' ');
        one.push(b'\n');
        data.extend(one);
    }
    let mut f = File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(range.start))?;
    f.write_all(&data)?;
    f.sync_all()?;
    Ok(())
}

/// SHA-256 of the bytes of `ranges` of the image at `path`, in order.
fn digest(path: &Path, ranges: &[Range<u64>]) -> Result<Vec<u8>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for r in ranges {
        f.seek(SeekFrom::Start(r.start))?;
        let mut left = r.end - r.start;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..n])
                .with_context(|| format!("reading {}", path.display()))?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(h.finalize().to_vec())
}

/// Checks the boot; returns the figures.
fn check(out: &BootOutcome) -> Result<String> {
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    expect(!out.exited.iter().any(|(n, _)| n == "storage"), || {
        format!("the storage qube exited: {:?}", out.exited)
    })?;
    for q in [EVIL, NEIGHBOUR] {
        expect(out.exited.iter().any(|(n, s)| n == q && *s == 0), || {
            format!("{q} did not finish with status 0: exited {:?}", out.exited)
        })?;
    }
    let panicked: Vec<&String> = out
        .lines
        .iter()
        .filter(|l| l.contains("Kernel panic") || l.contains("| panic: ") || l.contains("panicked"))
        .collect();
    expect(panicked.is_empty(), || {
        format!("something panicked: {panicked:#?}")
    })?;

    let evil = out.lines_from(EVIL);
    let storage = out.lines_from("storage");
    let mut figures = Vec::new();
    for (ch, label) in CHANNELS {
        let prefix = format!("{PREFIX}{ch}: ");
        let lines: Vec<&String> = evil.iter().filter(|l| l.contains(&prefix)).collect();
        let bad: Vec<&&String> = lines
            .iter()
            .filter(|l| {
                l.contains("ACCEPTED")
                    || l.contains(", wanted ")
                    || l.contains(" answered tag ")
                    || l.contains("no answer")
                    || l.contains(": stopped: ")
                    || l.contains(": failed (")
            })
            .collect();
        expect(bad.is_empty(), || {
            format!("{ch}: not every request was refused as due: {bad:#?}")
        })?;
        let Some(summary) = lines.iter().find(|l| l.contains(" requests in all")) else {
            bail!("{ch}: the hostile client did not finish: {evil:#?}");
        };
        let sent = figure_before(summary, " requests in all").context("requests sent")?;
        let refused_all = figure_before(summary, " bad requests: ").context("bad requests")?;
        let said = format!(
            "{refused_all} bad requests: {refused_all} refused, 0 accepted, 0 wrong error, 0 \
             unanswered;"
        );
        expect(summary.contains(&said), || format!("{ch}: {summary}"))?;
        expect(refused_all > FLOOD, || {
            format!("{ch}: only {refused_all} bad requests: {summary}")
        })?;
        expect(
            lines
                .iter()
                .any(|l| l.contains("Info still answered, the same")),
            || format!("{ch}: the storage qube stopped serving it: {lines:#?}"),
        )?;
        let read_only = lines.iter().any(|l| l.contains(" read-only, "));
        expect(read_only == ch.ends_with(".root"), || {
            format!("{ch}: Info's read-only flag is wrong: {lines:#?}")
        })?;
        let flood = lines
            .iter()
            .find_map(|l| l.split_once(&format!("{prefix}flood: ")))
            .map(|(_, f)| f.to_string())
            .context("no flood line")?;
        let all = format!("{FLOOD} reads past the end: {FLOOD} refused OutOfRange, 0 not, in ");
        expect(flood.starts_with(&all), || format!("{ch}: flood: {flood}"))?;

        let logged = storage
            .iter()
            .filter(|l| l.contains(&format!("storage: {label}: refused ")))
            .count();
        expect(logged == LOGGED_REFUSALS, || {
            format!(
                "the storage qube logged {logged} of {label}'s refusals one by one, not {LOGGED_REFUSALS}"
            )
        })?;
        expect(
            storage.iter().any(|l| {
                l.contains(&format!(
                    "storage: {label}: {LOGGED_REFUSALS} refusals logged"
                ))
            }),
            || format!("the storage qube did not say it only counts {label}'s further refusals"),
        )?;
        let counters = storage_summary(&storage, label)?;
        let nothing = format!(
            "storage: {label}: {sent} requests: 0 reads (0 KiB), 0 writes (0 KiB), 0 flushes, \
             0 discards, {refused_all} refused ({LOGGED_REFUSALS} logged), 0 I/O errors"
        );
        expect(counters.contains(&nothing), || {
            format!("{label}'s counters are not {nothing:?}: {counters}")
        })?;
        figures.push(format!(
            "{ch}: {sent} requests, {refused_all} refused ({LOGGED_REFUSALS} logged), 0 read or \
             written; flood: {}",
            flood.split_once(": ").map_or(flood.as_str(), |(_, r)| r)
        ));
    }
    expect(
        evil.iter()
            .any(|l| l.contains("the block-hostile self-test uses its channel")),
        || format!("evil's agent did not leave its volumes to the self-test: {evil:#?}"),
    )?;

    let honest = out.lines_from(NEIGHBOUR);
    let has = |words: &str| honest.iter().any(|l| l.contains(words));
    expect(
        has("block-client: no record in sector 0: a fresh volume"),
        || format!("honest did not start from a fresh volume: {honest:#?}"),
    )?;
    let Some(wrote) = honest
        .iter()
        .find(|l| l.contains("block-client: boot 1 wrote ") && l.contains("read back intact"))
    else {
        bail!("honest did not read its data back intact: {honest:#?}");
    };
    let counters = storage_summary(&storage, NEIGHBOUR)?;
    expect(
        counters.contains(" 0 refused (0 logged), 0 I/O errors"),
        || format!("honest's requests were refused or failed: {counters}"),
    )?;
    figures.push(format!(
        "honest {}",
        wrote
            .split_once("block-client: boot 1 ")
            .map_or(wrote.as_str(), |(_, r)| r)
    ));
    Ok(figures.join("; "))
}

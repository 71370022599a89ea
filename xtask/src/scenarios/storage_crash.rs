//! QEMU killed in the middle of heavy writes (`systems/tests/storage-crash.toml`): the
//! `journal` client (`mode=block-journal`) appends numbered records to its private volume,
//! each written and flushed before the next, and logs the sequence numbers acknowledged.
//! The scenario kills QEMU with SIGKILL ([`Control::Kill`]: no clean shutdown, no flush of
//! the image) while it writes, boots again on the same image, and checks that the client
//! found every record up to at least the last one acknowledged before the kill, intact; a
//! torn last record (a write the kill cut short) must be caught by its checksum and lie after
//! the last acknowledged one. Two kills: one as soon as 200 records are acknowledged, one at
//! an arbitrary moment (a while after an acknowledgement line) once 150 more are; a third boot
//! checks the second. Then the checks are shown not to be vacuous, with the image changed
//! between boots: the last record on it torn as a kill inside its write would leave it (its
//! last sector zeroed) must be reported as a torn tail, not as corruption; and a record in
//! the middle damaged the same way must make the client fail, naming the gap.

use super::{Scenario, boots, expect};
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result, bail};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

pub const STORAGE_CRASH: Scenario = Scenario {
    name: "storage-crash",
    about: "QEMU killed (SIGKILL) during heavy writes, booted again: every acknowledged write is on the disk, a torn last record is caught",
    run,
};

/// The journal's qube.
const CLIENT: &str = "journal";
/// Bytes per sector.
const SECTOR: usize = bulkhead_abi::block::SECTOR_SIZE as usize;
/// Records acknowledged in boot 1 before the first kill.
const FIRST_KILL: u64 = 200;
/// Records acknowledged in boot 2, after those found, before the second kill.
const SECOND_KILL: u64 = 150;
/// How long after the acknowledgement line that triggers the second kill it comes, so that
/// it falls anywhere in a record's Write or Flush rather than just after a line was logged.
const SECOND_KILL_DELAY: Duration = Duration::from_millis(37);

fn run() -> Result<String> {
    let a = boots::assemble("systems/tests/storage-crash.toml")?;
    let image = boots::fresh_disk(&a, "storage-crash")?;
    let path = image.path.clone();
    let made = image.describe();
    // (the last acknowledged seq, KiB written) of the boot before, if it wrote.
    let mut before: Option<Ack> = None;
    let mut notes = Vec::new();
    let mut walls = Vec::new();
    let mut kib = 0u64;
    for boot in 1..=3u32 {
        let mut opts = boots::options(&a, "max", 240, &format!("storage-crash-boot{boot}"));
        opts.nic = None;
        opts.disk = Some(path.clone());
        let kill = match boot {
            1 => Kill::AtAck {
                at_least: FIRST_KILL,
                delay: Duration::ZERO,
            },
            2 => Kill::AtAck {
                at_least: before.map_or(0, |b| b.seq) + SECOND_KILL,
                delay: SECOND_KILL_DELAY,
            },
            _ => Kill::AtFound,
        };
        let out = boot_once(&opts, kill)?;
        let (found, ack) =
            check_boot(&out, boot, before).with_context(|| format!("boot {boot}"))?;
        walls.push(format!("{:.1} s", out.wall.as_secs_f64()));
        if let Some(b) = before {
            let torn = match found.torn {
                Some(seq) => format!("torn tail at seq {seq} caught"),
                None => "no torn tail".into(),
            };
            let how = if boot == 2 {
                "at".to_string()
            } else {
                format!("{} ms after", SECOND_KILL_DELAY.as_millis())
            };
            notes.push(format!(
                "kill {} ({how} acked seq {}, {:.1} MiB written in {:.1} s): boot {boot} found \
                 {} records intact ({} past the last acked), {torn}",
                boot - 1,
                b.seq,
                b.kib as f64 / 1024.0,
                b.ms as f64 / 1000.0,
                found.records,
                found.records - b.seq,
            ));
        }
        if let Some(a) = ack {
            kib += a.kib;
        }
        before = ack;
    }
    let volume = image
        .layout
        .volumes
        .iter()
        .find(|v| v.name.as_str() == CLIENT)
        .copied()
        .context("the client's volume")?;
    let volume = (volume.first_sector, volume.sectors);

    // Boot 4: the last record torn by hand. (The client numbers this boot one after the
    // boot that wrote the last intact record, which need not be 4.)
    let on_disk = records(&path, volume)?;
    let last = *on_disk.last().context("no record on the image")?;
    tear(&path, &last)?;
    let mut opts = boots::options(&a, "max", 240, "storage-crash-boot4");
    opts.nic = None;
    opts.disk = Some(path.clone());
    let out = boot_once(&opts, Kill::AtFound)?;
    let found = check_killed(&out).context("boot 4")?;
    expect(
        found.records + 1 == last.seq && found.torn == Some(last.seq),
        || format!("seq {} was torn, the client found {found:?}", last.seq),
    )?;
    walls.push(format!("{:.1} s", out.wall.as_secs_f64()));

    // Boot 5: a record in the middle damaged.
    let on_disk = records(&path, volume)?;
    let middle = on_disk[on_disk.len() / 2];
    tear(&path, &middle)?;
    let mut opts = boots::options(&a, "max", 240, "storage-crash-boot5");
    opts.nic = None;
    opts.disk = Some(path.clone());
    let out = boot_once(&opts, Kill::Never)?;
    let lines = out.lines_from(CLIENT);
    let gap = format!(
        "block-journal: seq {} at sector {} fails its checksum, yet seq {} lies at sector {}: a \
         gap before the last record on disk",
        middle.seq,
        middle.sector,
        middle.seq + 1,
        middle.sector + middle.sectors
    );
    expect(lines.iter().any(|l| l.contains(&gap)), || {
        format!(
            "the client did not name the damaged seq {}: {lines:#?}",
            middle.seq
        )
    })?;
    expect(out.exited == [(CLIENT.to_string(), EXIT_CORRUPT)], || {
        format!("the client did not exit {EXIT_CORRUPT}: {:?}", out.exited)
    })?;
    walls.push(format!("{:.1} s", out.wall.as_secs_f64()));

    Ok(format!(
        "{made}; {}; {:.1} MiB written in all; seq {} torn by hand reported as a torn tail; seq \
         {} of {} damaged by hand reported as a gap; boots took {}",
        notes.join("; "),
        kib as f64 / 1024.0,
        last.seq,
        middle.seq,
        on_disk.len(),
        walls.join(", ")
    ))
}

/// The client's exit status for a damaged journal (`block::EXIT_CORRUPT`).
const EXIT_CORRUPT: i64 = 43;

/// A record on the image as the harness sees it: only the magic, the length and the
/// sequence number are read (the client checks the rest).
#[derive(Clone, Copy, Debug)]
struct OnDisk {
    seq: u64,
    /// Its first sector, from the start of the volume.
    sector: u64,
    sectors: u64,
    /// Its first byte in the image.
    at: u64,
}

/// The records of the journal on the volume `(first sector, sectors)` of the image at
/// `path`, from sector 0 while the sequence numbers follow.
fn records(path: &Path, (first, sectors): (u64, u64)) -> Result<Vec<OnDisk>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out: Vec<OnDisk> = Vec::new();
    let mut head = [0u8; SECTOR];
    let mut sector = 0u64;
    while sector < sectors {
        let at = (first + sector) * SECTOR as u64;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut head)?;
        let len = u64::from(u32::from_le_bytes(head[12..16].try_into()?));
        let seq = u64::from_le_bytes(head[16..24].try_into()?);
        if head[..8] != *b"BKJRNL01" || len == 0 || seq != out.len() as u64 + 1 {
            break;
        }
        out.push(OnDisk {
            seq,
            sector,
            sectors: len,
            at,
        });
        sector += len;
    }
    Ok(out)
}

/// Tears `r` as a kill inside its write would: its last sector zeroed (for a record of one
/// sector, everything after the header), so its payload no longer matches its checksum.
fn tear(path: &Path, r: &OnDisk) -> Result<()> {
    let end = r.at + r.sectors * SECTOR as u64;
    let from = (end - SECTOR as u64).max(r.at + 64);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(from))?;
    f.write_all(&vec![0u8; (end - from) as usize])?;
    f.sync_all()?;
    Ok(())
}

/// When to kill QEMU.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// On the first `acked seq S` line with S at least `at_least`, `delay` after it.
    AtAck { at_least: u64, delay: Duration },
    /// On the client's `found` line.
    AtFound,
    /// Never: the client is to exit by itself.
    Never,
}

/// Boots once and kills QEMU as `kill` says (or stops it at a failure).
fn boot_once(opts: &qemu::BootOptions, kill: Kill) -> Result<BootOutcome> {
    let out = qemu::boot(opts, |e| {
        match &e.hv {
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. } | HvEvent::Idle) => {
                return Control::Stop;
            }
            Some(HvEvent::Exited { .. }) => return Control::Stop,
            _ => {}
        }
        if e.line.source.as_deref() != Some(CLIENT) {
            return Control::Continue;
        }
        match kill {
            Kill::AtAck { at_least, delay } => match parse_ack(&e.line.body) {
                Some(a) if a.seq >= at_least => {
                    // QEMU runs on meanwhile: the client goes on writing.
                    std::thread::sleep(delay);
                    Control::Kill
                }
                _ => Control::Continue,
            },
            Kill::AtFound if parse_found(&e.line.body).is_some() => Control::Kill,
            Kill::AtFound | Kill::Never => Control::Continue,
        }
    })?;
    boots::finished(&out)?;
    Ok(out)
}

/// Checks one boot against the last acknowledgement of the boot before; returns what the
/// client found at start and its last acknowledgement in this boot.
fn check_boot(out: &BootOutcome, boot: u32, before: Option<Ack>) -> Result<(Found, Option<Ack>)> {
    let found = check_killed(out)?;
    expect(found.boot == boot, || {
        format!("the client calls this boot {}, not {boot}", found.boot)
    })?;
    match before {
        None => expect(found.records == 0 && found.torn.is_none(), || {
            format!("a fresh volume holds records: {found:?}")
        })?,
        Some(b) => {
            expect(found.records >= b.seq, || {
                format!(
                    "seq {} was acknowledged before the kill, the journal ends at seq {}: an \
                     acknowledged write is lost",
                    b.seq, found.records
                )
            })?;
            if let Some(torn) = found.torn {
                expect(torn > b.seq, || {
                    format!(
                        "the torn record {torn} had been acknowledged (up to {})",
                        b.seq
                    )
                })?;
            }
        }
    }
    // Every line QEMU wrote before it died counts, also those the watcher never saw.
    let ack = out
        .lines_from(CLIENT)
        .iter()
        .filter_map(|l| parse_ack(l))
        .next_back();
    if let Some(a) = ack {
        expect(a.seq > found.records, || {
            format!(
                "acked seq {} is not after the {} found",
                a.seq, found.records
            )
        })?;
    }
    Ok((found, ack))
}

/// Checks a boot that was to end by [`Control::Kill`]: nothing went wrong, QEMU died of
/// SIGKILL, and the client reported the journal it found.
fn check_killed(out: &BootOutcome) -> Result<Found> {
    let lines = out.lines_from(CLIENT);

    let mut problems = lines.clone();
    problems.extend(out.lines_from("storage"));
    problems.retain(|l| l.contains("[error]") || l.contains("[warn]"));
    expect(problems.is_empty(), || {
        format!("the client or the storage qube said: {problems:#?}")
    })?;
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    expect(out.exited.is_empty(), || {
        format!("qubes exited: {:?}; {CLIENT} said {lines:#?}", out.exited)
    })?;
    expect(out.killed, || {
        format!("QEMU was not killed; last line {:?}", out.lines.last())
    })?;
    let signal = out.qemu_status.and_then(|s| s.signal());
    expect(signal == Some(9), || {
        format!("QEMU ended with {:?}, not by SIGKILL", out.qemu_status)
    })?;
    let Some(found) = lines.iter().find_map(|l| parse_found(l)) else {
        bail!("the client did not report the journal it found: {lines:#?}");
    };
    Ok(found)
}

/// An `acked seq S (K KiB written this boot, T ms)` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ack {
    seq: u64,
    kib: u64,
    ms: u64,
}

fn parse_ack(body: &str) -> Option<Ack> {
    let rest = body.split_once("block-journal: acked seq ")?.1;
    let (seq, rest) = rest.split_once(" (")?;
    let (kib, rest) = rest.split_once(" KiB written this boot, ")?;
    let ms = rest.strip_suffix(" ms)")?;
    Some(Ack {
        seq: seq.parse().ok()?,
        kib: kib.parse().ok()?,
        ms: ms.parse().ok()?,
    })
}

/// The client's report of the journal it found at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    boot: u32,
    records: u64,
    torn: Option<u64>,
}

fn parse_found(body: &str) -> Option<Found> {
    let rest = body.split_once("block-journal: boot ")?.1;
    let (boot, rest) = rest.split_once(" found ")?;
    let (records, rest) = rest.split_once(" records from earlier boots ")?;
    let (_, tail) = rest.split_once("), all intact; ")?;
    let torn = match tail.split_once("torn tail at seq ") {
        Some((_, t)) => Some(t.split_once(' ')?.0.parse().ok()?),
        None => None,
    };
    Some(Found {
        boot: boot.parse().ok()?,
        records: records.parse().ok()?,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_client_lines() {
        assert_eq!(
            parse_ack("block-journal: acked seq 230 (3637 KiB written this boot, 2104 ms)"),
            Some(Ack {
                seq: 230,
                kib: 3637,
                ms: 2104
            })
        );
        assert_eq!(
            parse_ack("block-journal: acked seq x (1 KiB written this boot, 2 ms)"),
            None
        );
        let found = "block-journal: boot 2 found 231 records from earlier boots (last seq 231, \
                     3650 KiB, read in 30 requests, 800 ms), all intact; torn tail at seq 232 \
                     (not acknowledged)";
        assert_eq!(
            parse_found(found),
            Some(Found {
                boot: 2,
                records: 231,
                torn: Some(232)
            })
        );
        let fresh = "block-journal: boot 1 found 0 records from earlier boots (last seq 0, 0 \
                     KiB, read in 2 requests, 3 ms), all intact; then zeros";
        assert_eq!(
            parse_found(fresh),
            Some(Found {
                boot: 1,
                records: 0,
                torn: None
            })
        );
        assert_eq!(parse_found("block-journal: volume full at seq 9"), None);
    }
}

//! Private volumes across a reboot (`systems/tests/storage.toml`): the storage qube owns
//! QEMU's virtio-blk disk behind the IOMMU and serves alice, bob and mallory each its own
//! volume. The system boots twice on one fresh disk image of the scenario's own
//! (`target/bulkhead/storage-test/disk.img`): in boot 1 alice and bob find fresh volumes,
//! write a record and a pattern of their own and read them back; in boot 2 each finds its
//! own boot-1 data intact and writes boot 2's. Both times mallory's bad requests (sectors
//! past her volume, absurd lengths, pool ranges outside her pool, garbage, a flood) are every
//! one refused, the storage qube logs the first few and counts them all, and it keeps
//! serving. Last, a blank disk (no volume table) is refused by the storage qube with a line
//! saying so.

use super::{Scenario, boots, expect};
use crate::disk;
use crate::qemu::{self, BootOutcome, Control, HvEvent};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

pub const STORAGE: Scenario = Scenario {
    name: "storage",
    about: "private volumes on a virtio-blk disk survive a reboot; each qube reaches only its own; a hostile client is refused",
    run,
};

/// The clients that keep data, and the hostile one.
const KEEPERS: [&str; 2] = ["alice", "bob"];
const HOSTILE: &str = "mallory";
/// Refusals the storage qube logs one by one per client (`serve::LOGGED_REFUSALS`).
const LOGGED_REFUSALS: usize = 8;

fn run() -> Result<String> {
    let a = boots::assemble("systems/tests/storage.toml")?;
    let image = boots::fresh_disk(&a, "storage")?;
    let path = image.path.clone();
    let made = image.describe();
    let mut figures = Vec::new();
    let mut memory = String::new();
    for boot in 1..=2u32 {
        let mut opts = boots::options(&a, "max", 240, &format!("storage-boot{boot}"));
        opts.nic = None;
        opts.disk = Some(path.clone());
        let out = boot_once(&opts)?;
        let f = check_boot(&out, boot).with_context(|| format!("boot {boot}"))?;
        figures.push(f);
        if boot == 1 {
            memory = out
                .lines_from("storage")
                .into_iter()
                .find_map(|l| {
                    l.split_once("storage: memory: ")
                        .map(|(_, m)| m.to_string())
                })
                .unwrap_or_default();
        }
    }
    let kept = disk::prepare(&a.system, &path)?.context("the image is still there")?;
    expect(kept.change == disk::Change::Kept, || {
        format!("the image changed between boots: {}", kept.describe())
    })?;
    blank_disk(&a, &path.with_file_name("blank.img"))?;
    Ok(format!(
        "{made}; {}; a blank disk refused; storage qube memory: {memory}",
        figures.join("; ")
    ))
}

/// A disk without a volume table (all zeros, as a new disk is): the storage qube says so
/// and exits with status 4, serving nothing.
fn blank_disk(a: &crate::bundle::Assembled, path: &std::path::Path) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(37 << 20)?;
    drop(f);
    let mut opts = boots::options(a, "max", 120, "storage-blank");
    opts.nic = None;
    opts.disk = Some(path.to_path_buf());
    let out = qemu::boot(&opts, |e| {
        let stop = matches!(
            &e.hv,
            Some(HvEvent::Panic(_) | HvEvent::Stopped { .. } | HvEvent::Idle)
        ) || matches!(&e.hv, Some(HvEvent::Exited { qube, .. }) if qube == "storage");
        Control::stop_if(stop)
    })?;
    boots::finished(&out)?;
    let said = out
        .lines_from("storage")
        .iter()
        .any(|l| l.contains("the disk holds no Bulkhead volume table"));
    expect(said, || {
        format!(
            "the storage qube did not say the disk is blank: {:#?}",
            out.lines_from("storage")
        )
    })?;
    expect(
        out.exited.iter().any(|(q, s)| q == "storage" && *s == 4),
        || {
            format!(
                "the storage qube did not exit with status 4: {:?}",
                out.exited
            )
        },
    )?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Boots the system once, until every client has exited and the storage qube's counters
/// for each say it answered as many requests as the client counted (or a failure).
fn boot_once(opts: &qemu::BootOptions) -> Result<BootOutcome> {
    let clients = [KEEPERS[0], KEEPERS[1], HOSTILE];
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    let mut exited = 0;
    let out = qemu::boot(opts, |e| {
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
        let source = e.line.source.as_deref().unwrap_or("");
        if clients.contains(&source)
            && let Some(n) = figure_before(&e.line.body, " requests in all")
        {
            counted.insert(source.to_string(), n);
        }
        if source == "storage" {
            for c in clients {
                let prefix = format!("storage: {c}: ");
                if let Some((_, rest)) = e.line.body.split_once(&prefix)
                    && let Some(n) = rest
                        .split_once(" requests: ")
                        .and_then(|(n, _)| n.parse().ok())
                {
                    answered.insert(c.to_string(), n);
                }
            }
        }
        let done = exited == clients.len()
            && clients
                .iter()
                .all(|c| counted.get(*c).is_some_and(|n| answered.get(*c) == Some(n)));
        Control::stop_if(done)
    })?;
    boots::finished(&out)?;
    Ok(out)
}

/// The number just before `marker` in `text`: `(... 1234 requests in all` gives 1234.
pub(super) fn figure_before(text: &str, marker: &str) -> Option<u64> {
    let (head, _) = text.split_once(marker)?;
    let digits: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Checks one boot; returns its figures.
fn check_boot(out: &BootOutcome, boot: u32) -> Result<String> {
    expect(out.stopped.is_empty(), || {
        format!("qubes stopped: {:?}", out.stopped)
    })?;
    let bad_exits: Vec<_> = out.exited.iter().filter(|(_, s)| *s != 0).collect();
    expect(bad_exits.is_empty(), || format!("exits: {bad_exits:?}"))?;
    for q in ["alice", "bob", "mallory"] {
        expect(out.exited.iter().any(|(n, s)| n == q && *s == 0), || {
            format!("{q} did not finish (exit 0)")
        })?;
    }
    expect(!out.exited.iter().any(|(n, _)| n == "storage"), || {
        "the storage qube exited".into()
    })?;
    let hv_device = out
        .lines
        .iter()
        .any(|l| l.contains("[1af4:1042]") && l.contains("-> qube storage") && l.contains("IOMMU"));
    expect(hv_device, || {
        "no hypervisor line assigning the virtio-blk disk to storage behind the IOMMU".into()
    })?;
    let storage = out.lines_from("storage");
    let said = |words: &str| storage.iter().any(|l| l.contains(words));
    expect(
        said("storage: disk 37 MiB, 3 volumes (alice:16 MiB bob:16 MiB mallory:4 MiB)"),
        || format!("the storage qube did not list the disk's volumes: {storage:#?}"),
    )?;
    let mut figures = Vec::new();
    for q in KEEPERS {
        let lines = out.lines_from(q);
        let has = |words: &str| lines.iter().any(|l| l.contains(words));
        if boot == 1 {
            expect(
                has("block-client: no record in sector 0: a fresh volume"),
                || format!("{q} did not start from a fresh volume: {lines:#?}"),
            )?;
        } else {
            let found = format!("block-client: found boot {}'s data, intact", boot - 1);
            expect(has(&found), || {
                format!(
                    "{q} did not find its boot-{} data intact: {lines:#?}",
                    boot - 1
                )
            })?;
        }
        let wrote = format!("block-client: boot {boot} wrote ");
        let Some(line) = lines.iter().find(|l| l.contains(&wrote)) else {
            bail!("{q} did not write and read back boot {boot}'s data: {lines:#?}");
        };
        expect(line.contains("read back intact"), || format!("{q}: {line}"))?;
        let summary = storage_summary(&storage, q)?;
        expect(
            summary.contains(" 0 refused (0 logged), 0 I/O errors"),
            || format!("{q}'s requests were refused or failed: {summary}"),
        )?;
        if q == KEEPERS[0] {
            let detail = line
                .split_once(" wrote ")
                .map_or(line.as_str(), |(_, rest)| rest);
            figures.push(format!("{q} wrote {detail}"));
        }
    }
    let mallory = out.lines_from(HOSTILE);
    let Some(verdict) = mallory
        .iter()
        .find(|l| l.contains("bad requests, every one refused"))
    else {
        bail!("mallory's bad requests were not all refused: {mallory:#?}");
    };
    let bad = figure_before(verdict, " bad requests").context("mallory's count")?;
    let logged = storage
        .iter()
        .filter(|l| l.contains("storage: mallory: refused"))
        .count();
    expect(logged == LOGGED_REFUSALS, || {
        format!(
            "the storage qube logged {logged} of mallory's refusals one by one, not {LOGGED_REFUSALS}"
        )
    })?;
    let summary = storage_summary(&storage, HOSTILE)?;
    let counted = format!(" {bad} refused ({LOGGED_REFUSALS} logged), 0 I/O errors");
    expect(summary.contains(&counted), || {
        format!("the storage qube's count of mallory's refusals differs from her {bad}: {summary}")
    })?;
    figures.push(format!(
        "mallory's {bad} bad requests refused, {LOGGED_REFUSALS} logged"
    ));
    Ok(format!("boot {boot}: {}", figures.join(", ")))
}

/// The storage qube's last counters line for `qube`.
pub(super) fn storage_summary(storage: &[String], qube: &str) -> Result<String> {
    let prefix = format!("storage: {qube}: ");
    storage
        .iter()
        .rev()
        .find(|l| l.contains(&prefix) && l.contains(" requests: "))
        .cloned()
        .with_context(|| format!("no counters line of the storage qube for {qube}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_figures_before_a_marker() {
        assert_eq!(
            figure_before("x (12 KiB, 1234 requests in all, 5 ms)", " requests in all"),
            Some(1234)
        );
        assert_eq!(
            figure_before("no figure requests in all", " requests in all"),
            None
        );
    }
}

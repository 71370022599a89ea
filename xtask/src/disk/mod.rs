//! The storage qube's disk image: a raw file (`target/bulkhead/disk.img` for `cargo xtask
//! run`, a fresh one of its own for a scenario) that QEMU gives the machine as a virtio-blk
//! disk whenever the system has private volumes.
//!
//! [`prepare`] makes it on first use and keeps it between runs: its first MiB holds the
//! volume table (`bulkhead_abi::disk`, written with `disk::plan` and `disk::encode`), each
//! private volume lies on a MiB boundary after it, and the file is sparse, so a volume
//! takes host disk space only where something was written. When the description names a
//! volume the disk does not hold yet, it is appended (the file grows, the table is
//! rewritten); a volume whose size changed is refused with what to do, because moving or
//! resizing it would lose or expose data. Volumes the description no longer names stay on
//! the disk, untouched. Templates' read-only roots are volumes too ([`templates`]).

mod templates;

pub use templates::add_verity;

use anyhow::{Context, Result, bail};
use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_abi::disk::{self, DiskLayout, LAYOUT_LEN, LayoutError, VolumeKind};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::system::{CompiledSystem, PrivateVolume};

/// Where `cargo xtask run` keeps the disk image.
pub fn default_path() -> PathBuf {
    crate::bundle::out_dir().join("disk.img")
}

/// What [`prepare`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The image was made.
    Created,
    /// The image was already right.
    Kept,
    /// These volumes were appended.
    Grew(Vec<String>),
    /// These templates' roots were written (the rest was kept).
    Wrote(Vec<String>),
}

/// A disk image ready to boot.
#[derive(Clone, Debug)]
pub struct DiskImage {
    /// The image file.
    pub path: PathBuf,
    /// Its volume table, as now written.
    pub layout: DiskLayout,
    /// What [`prepare`] did to it.
    pub change: Change,
}

impl DiskImage {
    /// `disk target/bulkhead/disk.img: 37 MiB, 3 volumes (alice:16M bob:16M mallory:4M),
    /// created`, for the progress output.
    pub fn describe(&self) -> String {
        let volumes: Vec<String> = self
            .layout
            .volumes
            .iter()
            .map(|v| format!("{}:{}", v.name, mib(v.sectors)))
            .collect();
        let change = match &self.change {
            Change::Created => "created".to_string(),
            Change::Kept => "kept".to_string(),
            Change::Grew(names) => format!("grown by {}", names.join(", ")),
            Change::Wrote(names) => format!("template {} written", names.join(", ")),
        };
        format!(
            "disk {}: {}, {} volume{} ({}), {change}",
            self.path.display(),
            mib(self.layout.disk_sectors),
            volumes.len(),
            if volumes.len() == 1 { "" } else { "s" },
            volumes.join(" ")
        )
    }
}

/// `sectors` as `16 MiB` (or bytes, for a size that is not whole MiB).
fn mib(sectors: u64) -> String {
    let bytes = sectors * u64::from(SECTOR_SIZE);
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// The storage qube whose disk holds `system`'s private volumes, if it has any. xtask makes
/// one disk image per machine, so the volumes must all be on one storage qube's disk.
pub fn storage_qube(system: &CompiledSystem) -> Result<Option<&str>> {
    let users = system
        .volumes
        .iter()
        .map(|v| (v.storage.as_str(), v.qube.as_str()))
        .chain(
            system
                .roots
                .iter()
                .map(|r| (r.storage.as_str(), r.qube.as_str())),
        );
    let mut first: Option<(&str, &str)> = None;
    for (storage, qube) in users {
        match first {
            None => first = Some((storage, qube)),
            Some((s, q)) if s != storage => bail!(
                "{}: the volumes are on two storage qubes ({s} for {q}, {storage} for {qube}), \
                 but QEMU gets one disk: give every storagevm the same storage qube",
                system.path.display(),
            ),
            Some(_) => {}
        }
    }
    Ok(first.map(|(s, _)| s))
}

/// Makes the disk image at `path` hold `system`'s private volumes, creating it if it does
/// not exist: see the module documentation. `None` when the system has no private volume
/// (then nothing is touched).
pub fn prepare(system: &CompiledSystem, path: &Path) -> Result<Option<DiskImage>> {
    if storage_qube(system)?.is_none() {
        return Ok(None);
    }
    let wanted = &system.volumes;
    let templates = templates::wanted(system)?;
    let existing = match std::fs::File::open(path) {
        Ok(f) => Some(read_layout(f, path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let existing = existing.map(|e| {
        let (layout, dropped) = templates::drop_outgrown(&e, &templates);
        for name in dropped {
            println!(
                "      the template {name} outgrew its volume on {}: it gets a new one at the \
                 end of the disk",
                path.display()
            );
        }
        layout
    });
    let mut list: Vec<(&str, VolumeKind, u64)> = wanted
        .iter()
        .map(|v| (v.qube.as_str(), VolumeKind::Private, u64::from(v.mib) << 20))
        .collect();
    for t in &templates {
        let bytes = templates::planned_bytes(t, existing.as_ref());
        list.push((t.name.as_str(), VolumeKind::TemplateRoot, bytes));
    }
    let layout = disk::plan(&list, existing.as_ref())
        .map_err(|e| plan_error(e, wanted, path, &system.path))?;
    let mut change = match &existing {
        None => Change::Created,
        Some(old) if *old == layout => Change::Kept,
        Some(old) => Change::Grew(
            layout
                .volumes
                .iter()
                .filter(|v| old.find(&v.name, v.kind).is_none())
                .map(|v| v.name.to_string())
                .collect(),
        ),
    };
    if change != Change::Kept {
        write_layout(path, &layout)?;
    }
    let written = templates::write_contents(path, &layout, &templates)?;
    if change == Change::Kept && !written.is_empty() {
        change = Change::Wrote(written);
    }
    Ok(Some(DiskImage {
        path: path.to_path_buf(),
        layout,
        change,
    }))
}

/// [`prepare`] on a new image at `path` (an old one is removed first): a scenario's own disk.
pub fn fresh(system: &CompiledSystem, path: &Path) -> Result<Option<DiskImage>> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    prepare(system, path)
}

/// The volume table of the image `f` (at `path`).
fn read_layout(mut f: std::fs::File, path: &Path) -> Result<DiskLayout> {
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut head = vec![0u8; LAYOUT_LEN];
    let got =
        read_up_to(&mut f, &mut head).with_context(|| format!("reading {}", path.display()))?;
    let fix = format!(
        "remove {} to start with an empty disk (its data is lost), or give xtask another \
         image with `cargo xtask run --disk FILE`",
        path.display()
    );
    if got < LAYOUT_LEN {
        bail!(
            "{} is not a Bulkhead disk image: it has {len} bytes, fewer than its volume table \
             needs ({LAYOUT_LEN}); {fix}",
            path.display()
        );
    }
    disk::parse(&head, len / u64::from(SECTOR_SIZE)).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a Bulkhead disk image xtask can use: {e}; {fix}",
            path.display()
        )
    })
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Writes `layout` at the start of the image at `path` and makes the file as long as the
/// layout's disk (never shorter than it was); the rest stays as it is, or sparse zeros.
fn write_layout(path: &Path, layout: &DiskLayout) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let bytes = layout.disk_sectors * u64::from(SECTOR_SIZE);
    let len = f.metadata()?.len();
    if len < bytes {
        f.set_len(bytes)
            .with_context(|| format!("growing {} to {bytes} bytes", path.display()))?;
    }
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&disk::encode(layout))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the volume table of {}", path.display()))
}

/// Says what to do about a volume table `plan` refused.
fn plan_error(
    e: LayoutError,
    wanted: &[PrivateVolume],
    path: &Path,
    system: &Path,
) -> anyhow::Error {
    let qube = |i: usize| wanted.get(i).map_or("?", |v| v.qube.as_str());
    match e {
        LayoutError::SizeChanged { volume, was, now } => anyhow::anyhow!(
            "{}: the private volume of {} is {} MiB on the disk {}, but the description says \
             private_mib = {}: a volume is never resized (that would move or expose the \
             volumes after it). Set private_mib = {} again, or remove {} to start with an \
             empty disk (every volume's data is lost)",
            system.display(),
            qube(volume),
            was >> 20,
            path.display(),
            now >> 20,
            was >> 20,
            path.display()
        ),
        LayoutError::TooManyVolumes { count } => anyhow::anyhow!(
            "{}: the disk {} would hold {count} volumes, at most {} fit its table; remove {} \
             to start afresh with only this system's volumes",
            system.display(),
            path.display(),
            disk::MAX_VOLUMES,
            path.display()
        ),
        other => anyhow::anyhow!(
            "{}: cannot place the private volumes on {}: {other}",
            system.display(),
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(volumes: &[(&str, u32)]) -> CompiledSystem {
        let mut text = String::from(
            "[system]\nram_mib = 512\n\n[[qube]]\nname = \"storage\"\nkind = \"unikernel\"\n\
             image = \"storage\"\nmemory_mib = 4\nlabel = \"gray\"\n\n",
        );
        for (name, mib) in volumes {
            text.push_str(&format!(
                "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
                 memory_mib = 4\nlabel = \"blue\"\nstoragevm = \"storage\"\nprivate_mib = {mib}\n\n"
            ));
        }
        crate::system::compile_str("systems/t.toml", &text).unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bulkhead-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn made_on_first_use_kept_then_grown() {
        let path = scratch("grow.img");
        let first = prepare(&system(&[("alice", 16), ("bob", 4)]), &path)
            .unwrap()
            .unwrap();
        assert_eq!(first.change, Change::Created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (1 + 16 + 4) << 20,
            "the first MiB, then each volume on a MiB boundary"
        );
        assert!(
            first
                .describe()
                .contains("21 MiB, 2 volumes (alice:16 MiB bob:4 MiB), created")
        );
        // Data in alice's volume survives what follows.
        let alice = first
            .layout
            .find("alice", VolumeKind::Private)
            .unwrap()
            .first_sector;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(alice * 512)).unwrap();
        f.write_all(b"alice's data").unwrap();
        drop(f);
        let again = prepare(&system(&[("alice", 16), ("bob", 4)]), &path)
            .unwrap()
            .unwrap();
        assert_eq!(again.change, Change::Kept);
        assert_eq!(again.layout, first.layout);
        let grown = prepare(&system(&[("carol", 8), ("alice", 16)]), &path)
            .unwrap()
            .unwrap();
        assert_eq!(grown.change, Change::Grew(vec!["carol".to_string()]));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (1 + 16 + 4 + 8) << 20
        );
        assert!(
            grown.layout.find("bob", VolumeKind::Private).is_some(),
            "a volume no longer named stays"
        );
        let bytes = std::fs::read(&path).unwrap();
        let at = (alice * 512) as usize;
        assert_eq!(&bytes[at..at + 12], b"alice's data");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_changed_size_or_a_foreign_file_is_refused_with_a_fix() {
        let path = scratch("resize.img");
        prepare(&system(&[("alice", 16)]), &path).unwrap();
        let e = prepare(&system(&[("alice", 32)]), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the private volume of alice is 16 MiB on the disk")
                && e.contains("private_mib = 32")
                && e.contains("Set private_mib = 16 again"),
            "{e}"
        );
        std::fs::write(&path, vec![0u8; 4 << 20]).unwrap();
        let e = prepare(&system(&[("alice", 16)]), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not a Bulkhead disk image") && e.contains("remove"),
            "{e}"
        );
        assert!(
            prepare(&system(&[]), &path).unwrap().is_none(),
            "a system without private volumes leaves the disk alone"
        );
        let fresh = fresh(&system(&[("alice", 32)]), &path).unwrap().unwrap();
        assert_eq!(fresh.change, Change::Created);
        let _ = std::fs::remove_file(&path);
    }
}

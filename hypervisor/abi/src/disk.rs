//! The disk layout: how the storage qube's disk is divided into volumes (issue #17,
//! `docs/storage.md`). xtask writes it at the start of the disk image
//! (`target/bulkhead/disk.img`, with [`plan`] and `encode`, feature `alloc`); the storage
//! qube reads it with [`parse`] before it serves any volume. A fixed little-endian layout
//! ([`crate::wire`]), [`LAYOUT_LEN`] bytes from the disk's first byte:
//!
//! ```text
//! header (64 bytes)
//!   0   magic         [u8; 8]  DISK_MAGIC, "BKDISK01"
//!   8   version       u16      LAYOUT_VERSION
//!   10                2 zero bytes
//!   12  sector size   u32      512
//!   16  disk sectors  u64      size of the disk the layout was made for
//!   24  volume count  u16      at most MAX_VOLUMES
//!   26                2 zero bytes
//!   28  checksum      u32      CRC-32 (IEEE) of bytes 0..LAYOUT_LEN, this field read as 0
//!   32                32 zero bytes
//! volume table (MAX_VOLUMES entries of 64 bytes; the first `volume count` are volumes,
//! the others all zero)
//!   0   name          text, VOLUME_NAME_MAX: length u16, the bytes, zeros
//!   33  kind          u8       1 private, 2 template root
//!   34  flags         u16      none defined: 0
//!   36                4 zero bytes
//!   40  first sector  u64      a multiple of ALIGN_SECTORS, at least DATA_START_SECTOR
//!   48  sectors       u64      at least 1
//!   56                8 zero bytes
//! ```
//!
//! The first MiB holds only the header and the table; every volume starts on a MiB
//! boundary after it. [`parse`] checks, in order: the magic, the version, the checksum, the
//! sector size, that the disk is as large as the layout says, the volume count, every zero
//! byte, and then each volume: its name ([`valid_volume_name`]), kind and flags, that it is
//! not empty, aligned, after the first MiB and inside the disk, and that it neither
//! overlaps nor has the name and kind of an earlier one. A disk whose layout fails any
//! check is served by nothing.

use crate::block::SECTOR_SIZE;
use crate::bounded::{BoundedString, BoundedVec};
use crate::wire::{Reader, WireError};

/// The layout's first eight bytes.
pub const DISK_MAGIC: [u8; 8] = *b"BKDISK01";
/// Version of the layout.
pub const LAYOUT_VERSION: u16 = 1;
/// Most volumes one disk holds.
pub const MAX_VOLUMES: usize = 32;
/// Longest volume name, in bytes.
pub const VOLUME_NAME_MAX: usize = 31;
/// Bytes of the header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one volume-table entry.
pub const ENTRY_LEN: usize = 64;
/// Bytes of the header and the volume table: what [`parse`] reads.
pub const LAYOUT_LEN: usize = HEADER_LEN + MAX_VOLUMES * ENTRY_LEN;
/// Sectors holding the header and the table (what the storage qube reads first).
pub const LAYOUT_SECTORS: u64 = LAYOUT_LEN.div_ceil(SECTOR_SIZE as usize) as u64;
/// Volumes start on a multiple of this many sectors (1 MiB).
pub const ALIGN_SECTORS: u64 = (1 << 20) / SECTOR_SIZE as u64;
/// The first sector a volume may use: the first MiB is the layout's.
pub const DATA_START_SECTOR: u64 = ALIGN_SECTORS;
const _: () = assert!(LAYOUT_SECTORS <= DATA_START_SECTOR);

/// Offset of the checksum in the header.
pub const CHECKSUM_AT: usize = 28;

/// A volume's name: the owning qube's, or the template's.
pub type VolumeName = BoundedString<VOLUME_NAME_MAX>;

/// What a volume is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    /// One qube's own volume, read-write to it alone.
    Private,
    /// A template's root file system: read-only to the qubes based on the template.
    TemplateRoot,
}

/// One volume on the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Its name (with `kind`, unique on the disk).
    pub name: VolumeName,
    /// What it is for.
    pub kind: VolumeKind,
    /// Flag bits: none is defined in layout version 1, and [`parse`] refuses any.
    pub flags: u16,
    /// Its first sector on the disk.
    pub first_sector: u64,
    /// Its size in sectors.
    pub sectors: u64,
}

/// A disk's volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLayout {
    /// Size of the disk the layout was made for, in sectors (the disk may be larger).
    pub disk_sectors: u64,
    /// The volumes, in table order.
    pub volumes: BoundedVec<Volume, MAX_VOLUMES>,
}

/// Why a layout was refused. `volume` is an index: into the table for [`parse`] and
/// [`DiskLayout::check`], into the list [`plan`] was given for its own checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Fewer than [`LAYOUT_LEN`] bytes were given.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The bytes do not start with [`DISK_MAGIC`]: not a Bulkhead disk.
    NotALayout,
    /// The layout was written for another version.
    Version {
        /// Version found.
        found: u16,
    },
    /// The checksum does not match the header and table: they are damaged.
    Checksum {
        /// The checksum the header holds.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The sector size is not [`SECTOR_SIZE`].
    SectorSize {
        /// Sector size found.
        found: u32,
    },
    /// The layout is for a larger disk than this one.
    DiskTooSmall {
        /// Sectors the layout says the disk has.
        layout: u64,
        /// Sectors the disk has.
        disk: u64,
    },
    /// More than [`MAX_VOLUMES`] volumes.
    TooManyVolumes {
        /// How many.
        count: usize,
    },
    /// A byte that must be zero (padding, or an unused table entry) is not.
    NonZeroReserved {
        /// Its offset from the start of the layout.
        at: usize,
    },
    /// A volume's name is not a [`valid_volume_name`].
    BadName {
        /// Which volume.
        volume: usize,
    },
    /// A volume's kind is not one the layout defines.
    BadKind {
        /// Which volume.
        volume: usize,
        /// The kind byte found.
        found: u8,
    },
    /// A volume has flags set that the layout does not define.
    BadFlags {
        /// Which volume.
        volume: usize,
        /// The flags found.
        found: u16,
    },
    /// A volume has no sectors ([`plan`]: its size is zero or not a multiple of
    /// [`SECTOR_SIZE`]).
    BadSize {
        /// Which volume.
        volume: usize,
    },
    /// A volume does not start on a MiB boundary.
    Unaligned {
        /// Which volume.
        volume: usize,
    },
    /// A volume starts inside the first MiB, where the layout is.
    BeforeData {
        /// Which volume.
        volume: usize,
    },
    /// A volume reaches past the end of the disk.
    PastEnd {
        /// Which volume.
        volume: usize,
    },
    /// Two volumes share sectors.
    Overlap {
        /// The later one.
        volume: usize,
        /// The earlier one.
        other: usize,
    },
    /// Two volumes have the same name and kind.
    Duplicate {
        /// The later one.
        volume: usize,
        /// The earlier one.
        other: usize,
    },
    /// [`plan`]: a volume that is already on the disk was asked for with another size
    /// (volumes are never resized: that would move the ones after it).
    SizeChanged {
        /// Which volume (in the list given to [`plan`]).
        volume: usize,
        /// Its size on the disk, in bytes.
        was: u64,
        /// The size asked for, in bytes.
        now: u64,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use LayoutError::*;
        match *self {
            TooShort { len } => write!(f, "disk layout needs {LAYOUT_LEN} bytes, got {len}"),
            NotALayout => write!(f, "not a Bulkhead disk (no BKDISK01 magic)"),
            Version { found } => write!(
                f,
                "disk layout version {found}, this reader reads version {LAYOUT_VERSION}"
            ),
            Checksum { stored, computed } => write!(
                f,
                "disk layout is damaged: checksum {stored:#010x}, bytes give {computed:#010x}"
            ),
            SectorSize { found } => {
                write!(f, "disk layout has {found}-byte sectors, not {SECTOR_SIZE}")
            }
            DiskTooSmall { layout, disk } => write!(
                f,
                "disk layout is for {layout} sectors, the disk has {disk}"
            ),
            TooManyVolumes { count } => {
                write!(f, "{count} volumes, at most {MAX_VOLUMES} fit the table")
            }
            NonZeroReserved { at } => write!(f, "disk layout byte {at} must be zero"),
            BadName { volume } => write!(
                f,
                "volume {volume}: name is not 1 to {VOLUME_NAME_MAX} letters, digits, '.', '_', '-'"
            ),
            BadKind { volume, found } => write!(f, "volume {volume}: unknown kind {found}"),
            BadFlags { volume, found } => write!(f, "volume {volume}: unknown flags {found:#x}"),
            BadSize { volume } => write!(
                f,
                "volume {volume}: size is zero or not a multiple of {SECTOR_SIZE} bytes"
            ),
            Unaligned { volume } => write!(f, "volume {volume}: does not start on a MiB boundary"),
            BeforeData { volume } => write!(f, "volume {volume}: starts inside the first MiB"),
            PastEnd { volume } => write!(f, "volume {volume}: reaches past the end of the disk"),
            Overlap { volume, other } => {
                write!(f, "volume {volume}: overlaps volume {other}")
            }
            Duplicate { volume, other } => {
                write!(f, "volume {volume}: same name and kind as volume {other}")
            }
            SizeChanged { volume, was, now } => write!(
                f,
                "volume {volume}: is {was} bytes on the disk, asked for {now} (volumes are not resized)"
            ),
        }
    }
}

/// Whether `s` may name a volume: 1 to [`VOLUME_NAME_MAX`] bytes of ASCII letters, digits,
/// `.`, `_` and `-`, starting with a letter or digit (a qube's name is one).
pub fn valid_volume_name(s: &str) -> bool {
    s.len() <= VOLUME_NAME_MAX
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Volume {
    /// The sector after its last.
    pub fn end_sector(&self) -> Option<u64> {
        self.first_sector.checked_add(self.sectors)
    }
}

impl DiskLayout {
    /// The volume named `name` of kind `kind`.
    pub fn find(&self, name: &str, kind: VolumeKind) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.kind == kind && v.name.as_str() == name)
    }

    /// Checks the volumes as [`parse`] does (names, flags, sizes, alignment, bounds,
    /// overlaps, duplicates).
    pub fn check(&self) -> Result<(), LayoutError> {
        for (i, v) in self.volumes.iter().enumerate() {
            if !valid_volume_name(&v.name) {
                return Err(LayoutError::BadName { volume: i });
            }
            if v.flags != 0 {
                return Err(LayoutError::BadFlags {
                    volume: i,
                    found: v.flags,
                });
            }
            if v.sectors == 0 {
                return Err(LayoutError::BadSize { volume: i });
            }
            if !v.first_sector.is_multiple_of(ALIGN_SECTORS) {
                return Err(LayoutError::Unaligned { volume: i });
            }
            if v.first_sector < DATA_START_SECTOR {
                return Err(LayoutError::BeforeData { volume: i });
            }
            if v.end_sector().is_none_or(|end| end > self.disk_sectors) {
                return Err(LayoutError::PastEnd { volume: i });
            }
            for (j, o) in self.volumes.iter().enumerate().take(i) {
                // Both ends are known not to overflow: `o` passed the check above.
                if v.first_sector < o.first_sector + o.sectors
                    && o.first_sector < v.first_sector + v.sectors
                {
                    return Err(LayoutError::Overlap {
                        volume: i,
                        other: j,
                    });
                }
                if o.kind == v.kind && o.name == v.name {
                    return Err(LayoutError::Duplicate {
                        volume: i,
                        other: j,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads the layout from the disk's first bytes (at least [`LAYOUT_LEN`]; more are
/// ignored) on a disk of `disk_sectors` sectors, checking everything (see the module
/// documentation). Any bytes give a layout or an error.
pub fn parse(first_sectors: &[u8], disk_sectors: u64) -> Result<DiskLayout, LayoutError> {
    let bytes = first_sectors
        .get(..LAYOUT_LEN)
        .ok_or(LayoutError::TooShort {
            len: first_sectors.len(),
        })?;
    let mut r = Reader::new(bytes);
    let read = |e: WireError| match e {
        // The reader is over exactly LAYOUT_LEN bytes, and every field is inside them.
        WireError::Truncated | WireError::TrailingBytes => LayoutError::TooShort {
            len: first_sectors.len(),
        },
        WireError::BadText | WireError::BadValue => LayoutError::NotALayout,
    };
    if r.bytes(8).map_err(read)? != DISK_MAGIC {
        return Err(LayoutError::NotALayout);
    }
    let version = r.u16().map_err(read)?;
    if version != LAYOUT_VERSION {
        return Err(LayoutError::Version { found: version });
    }
    let (stored, computed) = (
        crate::wire::u32_at(bytes, CHECKSUM_AT).unwrap_or(0),
        checksum(bytes),
    );
    if stored != computed {
        return Err(LayoutError::Checksum { stored, computed });
    }
    zeros(&mut r, 2)?;
    let sector_size = r.u32().map_err(read)?;
    if sector_size != SECTOR_SIZE {
        return Err(LayoutError::SectorSize { found: sector_size });
    }
    let layout_sectors = r.u64().map_err(read)?;
    if layout_sectors > disk_sectors {
        return Err(LayoutError::DiskTooSmall {
            layout: layout_sectors,
            disk: disk_sectors,
        });
    }
    let count = usize::from(r.u16().map_err(read)?);
    if count > MAX_VOLUMES {
        return Err(LayoutError::TooManyVolumes { count });
    }
    zeros(&mut r, 2)?;
    r.u32().map_err(read)?; // the checksum, checked above
    zeros(&mut r, HEADER_LEN - CHECKSUM_AT - 4)?;
    let mut layout = DiskLayout {
        disk_sectors: layout_sectors,
        volumes: BoundedVec::new(),
    };
    for i in 0..count {
        let name = r.text().map_err(|_| LayoutError::BadName { volume: i })?;
        let kind = match r.u8().map_err(read)? {
            1 => VolumeKind::Private,
            2 => VolumeKind::TemplateRoot,
            found => return Err(LayoutError::BadKind { volume: i, found }),
        };
        let flags = r.u16().map_err(read)?;
        zeros(&mut r, 4)?;
        let (first_sector, sectors) = (r.u64().map_err(read)?, r.u64().map_err(read)?);
        zeros(&mut r, 8)?;
        let v = Volume {
            name,
            kind,
            flags,
            first_sector,
            sectors,
        };
        // `count` is at most MAX_VOLUMES: there is room.
        let _ = layout.volumes.push(v);
    }
    zeros(&mut r, (MAX_VOLUMES - count) * ENTRY_LEN)?;
    layout.check()?;
    Ok(layout)
}

/// Reads `n` bytes that must be zero.
fn zeros(r: &mut Reader<'_>, n: usize) -> Result<(), LayoutError> {
    for _ in 0..n {
        let at = r.position();
        r.zero().map_err(|e| match e {
            WireError::BadValue => LayoutError::NonZeroReserved { at },
            _ => LayoutError::TooShort { len: at },
        })?;
    }
    Ok(())
}

/// Writes `layout` as the disk's first [`LAYOUT_LEN`] bytes, checksum included. It writes
/// what it is given: a layout from [`plan`] or [`parse`] always parses back to itself.
#[cfg(feature = "alloc")]
pub fn encode(layout: &DiskLayout) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![0u8; LAYOUT_LEN];
    let mut w = crate::wire::Writer::new(&mut out);
    w.bytes(&DISK_MAGIC);
    w.u16(LAYOUT_VERSION);
    w.u16(0);
    w.u32(SECTOR_SIZE);
    w.u64(layout.disk_sectors);
    w.u16(layout.volumes.len() as u16);
    w.u16(0);
    w.u32(0); // the checksum, below
    w.bytes(&[0; HEADER_LEN - CHECKSUM_AT - 4]);
    for v in &layout.volumes {
        w.text(&v.name);
        w.u8(match v.kind {
            VolumeKind::Private => 1,
            VolumeKind::TemplateRoot => 2,
        });
        w.u16(v.flags);
        w.u32(0);
        w.u64(v.first_sector);
        w.u64(v.sectors);
        w.u64(0);
    }
    let _ = w.finish(); // the rest (padding, unused entries) stays zero
    let sum = checksum(&out);
    out[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Places volumes on a disk, for xtask to create or grow an image. `volumes` are
/// `(name, kind, size in bytes)`; `existing` is the layout already on the disk, if any.
///
/// The growth rule: every volume of `existing` keeps its place and size (also one the list
/// no longer names: `plan` never drops a volume's data); a listed volume already on the
/// disk (same name and kind) must have the same size, or the plan is refused
/// ([`LayoutError::SizeChanged`]); a new volume is appended after the last, on the next MiB
/// boundary. The disk is as large as its last volume rounded up to a MiB, and never
/// smaller than it was. Sizes must be whole sectors; names must be valid and each (name,
/// kind) listed once.
pub fn plan(
    volumes: &[(&str, VolumeKind, u64)],
    existing: Option<&DiskLayout>,
) -> Result<DiskLayout, LayoutError> {
    let mut layout = match existing {
        Some(e) => {
            e.check()?;
            e.clone()
        }
        None => DiskLayout {
            disk_sectors: DATA_START_SECTOR,
            volumes: BoundedVec::new(),
        },
    };
    let mut next = layout
        .volumes
        .iter()
        .filter_map(Volume::end_sector)
        .max()
        .unwrap_or(DATA_START_SECTOR);
    for (i, &(name, kind, bytes)) in volumes.iter().enumerate() {
        if !valid_volume_name(name) {
            return Err(LayoutError::BadName { volume: i });
        }
        if bytes == 0 || !bytes.is_multiple_of(u64::from(SECTOR_SIZE)) {
            return Err(LayoutError::BadSize { volume: i });
        }
        if let Some(other) = volumes[..i]
            .iter()
            .position(|&(n, k, _)| n == name && k == kind)
        {
            return Err(LayoutError::Duplicate { volume: i, other });
        }
        let sectors = bytes / u64::from(SECTOR_SIZE);
        if let Some(old) = existing.and_then(|e| e.find(name, kind)) {
            if old.sectors != sectors {
                return Err(LayoutError::SizeChanged {
                    volume: i,
                    was: old.sectors * u64::from(SECTOR_SIZE),
                    now: bytes,
                });
            }
            continue;
        }
        let first_sector = next
            .checked_next_multiple_of(ALIGN_SECTORS)
            .ok_or(LayoutError::PastEnd { volume: i })?;
        next = first_sector
            .checked_add(sectors)
            .ok_or(LayoutError::PastEnd { volume: i })?;
        let v = Volume {
            // Valid names are at most VOLUME_NAME_MAX bytes: they fit.
            name: VolumeName::try_from(name).map_err(|_| LayoutError::BadName { volume: i })?,
            kind,
            flags: 0,
            first_sector,
            sectors,
        };
        if layout.volumes.push(v).is_err() {
            let new = volumes[i..]
                .iter()
                .filter(|&&(n, k, _)| existing.and_then(|e| e.find(n, k)).is_none())
                .count();
            return Err(LayoutError::TooManyVolumes {
                count: MAX_VOLUMES + new,
            });
        }
    }
    let end = next
        .checked_next_multiple_of(ALIGN_SECTORS)
        .ok_or(LayoutError::PastEnd {
            volume: volumes.len().saturating_sub(1),
        })?;
    layout.disk_sectors = layout.disk_sectors.max(end);
    layout.check()?;
    Ok(layout)
}

/// The checksum of a layout's bytes: CRC-32 of `bytes[..LAYOUT_LEN]` with the checksum
/// field read as zero.
fn checksum(bytes: &[u8]) -> u32 {
    let head = bytes.get(..CHECKSUM_AT).unwrap_or_default();
    let tail = bytes.get(CHECKSUM_AT + 4..LAYOUT_LEN).unwrap_or_default();
    let state = crc32_update(crc32_update(crc32_update(!0, head), &[0; 4]), tail);
    !state
}

/// The CRC-32 of `bytes` (IEEE 802.3, as zlib and gzip: reflected, polynomial 0xEDB88320,
/// initial value and final XOR all ones).
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc32_update(!0, bytes)
}

/// The byte-at-a-time lookup table of the reflected polynomial.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32_update(mut state: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        state = CRC_TABLE[((state ^ u32::from(b)) & 0xFF) as usize] ^ (state >> 8);
    }
    state
}

#[cfg(test)]
mod tests;

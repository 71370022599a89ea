//! The boot bundle: one file (QEMU `-initrd`, GRUB `module2`) that carries the compiled
//! manifest and every guest image.
//!
//! Layout, little-endian:
//!
//! ```text
//! 0   magic    "BHBUNDLE"
//! 8   version  u32 (BUNDLE_VERSION)
//! 12  count    u32 (number of entries, at most MAX_ENTRIES)
//! 16  entries  count × Entry { kind u32, name [u8; 20], offset u64, len u64 } (40 bytes each)
//! ..  data     each entry's bytes at `offset` from the start of the bundle
//! ```
//!
//! Entry 0 is the manifest; the manifest names images by entry index. The parser checks every
//! offset and length against the buffer, so no bundle can make it read out of bounds.

use crate::wire::{u32_at, u64_at};

/// Bundle magic.
pub const BUNDLE_MAGIC: [u8; 8] = *b"BHBUNDLE";
/// Version of this layout.
pub const BUNDLE_VERSION: u32 = 1;
/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 32;
/// Length of an entry name.
pub const ENTRY_NAME_LEN: usize = 20;
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 40;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EntryKind {
    /// The postcard manifest (always entry 0).
    Manifest = 0,
    /// An ELF image of a unikernel.
    Image = 1,
    /// A qube's configuration blob (opaque to the hypervisor, copied into the qube's memory;
    /// see `BootInfo::config_gpa`).
    Config = 2,
    /// A Linux kernel (bzImage) for a `QubeKind::Linux` qube.
    LinuxKernel = 3,
    /// A Linux initramfs.
    Initrd = 4,
    /// A Linux kernel command line.
    Cmdline = 5,
}

/// One entry of a parsed bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What it holds.
    pub kind: EntryKind,
    /// Its name (e.g. the image name), for log lines.
    pub name: &'a str,
    /// Its bytes.
    pub data: &'a [u8],
}

/// Why a bundle was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Shorter than its header or entry table.
    Truncated,
    /// Wrong magic.
    Magic,
    /// Unknown version.
    Version(u32),
    /// Zero entries or more than [`MAX_ENTRIES`].
    Count(u32),
    /// Entry `index` has an unknown kind.
    Kind(usize),
    /// Entry `index` points outside the bundle.
    Range(usize),
    /// Entry 0 is not the manifest.
    NoManifest,
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::Truncated => write!(f, "bundle is truncated"),
            BundleError::Magic => write!(f, "not a Bulkhead bundle (bad magic)"),
            BundleError::Version(v) => {
                write!(f, "bundle version {v}, expected {BUNDLE_VERSION}")
            }
            BundleError::Count(n) => write!(f, "bundle has {n} entries (1..={MAX_ENTRIES})"),
            BundleError::Kind(i) => write!(f, "bundle entry {i} has an unknown kind"),
            BundleError::Range(i) => write!(f, "bundle entry {i} lies outside the bundle"),
            BundleError::NoManifest => write!(f, "bundle entry 0 is not a manifest"),
        }
    }
}

/// A validated bundle.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Bundle<'a> {
    /// Checks the header and every entry.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() < HEADER_LEN {
            return Err(BundleError::Truncated);
        }
        if bytes[..8] != BUNDLE_MAGIC {
            return Err(BundleError::Magic);
        }
        let version = u32_at(bytes, 8).ok_or(BundleError::Truncated)?;
        if version != BUNDLE_VERSION {
            return Err(BundleError::Version(version));
        }
        let count = u32_at(bytes, 12).ok_or(BundleError::Truncated)?;
        if count == 0 || count as usize > MAX_ENTRIES {
            return Err(BundleError::Count(count));
        }
        let count = count as usize;
        if bytes.len() < HEADER_LEN + count * ENTRY_LEN {
            return Err(BundleError::Truncated);
        }
        let bundle = Bundle { bytes, count };
        for i in 0..count {
            bundle.read_entry(i)?;
        }
        if bundle.read_entry(0)?.kind != EntryKind::Manifest {
            return Err(BundleError::NoManifest);
        }
        Ok(bundle)
    }

    fn read_entry(&self, i: usize) -> Result<Entry<'a>, BundleError> {
        let at = HEADER_LEN + i * ENTRY_LEN;
        let e = &self.bytes[at..at + ENTRY_LEN];
        let kind = match u32_at(e, 0).ok_or(BundleError::Kind(i))? {
            0 => EntryKind::Manifest,
            1 => EntryKind::Image,
            2 => EntryKind::Config,
            3 => EntryKind::LinuxKernel,
            4 => EntryKind::Initrd,
            5 => EntryKind::Cmdline,
            _ => return Err(BundleError::Kind(i)),
        };
        let raw_name = &e[4..4 + ENTRY_NAME_LEN];
        let name_len = raw_name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(ENTRY_NAME_LEN);
        let name = core::str::from_utf8(&raw_name[..name_len]).unwrap_or("?");
        let range = BundleError::Range(i);
        let offset = u64_at(e, 24).ok_or(range)?;
        let end = offset
            .checked_add(u64_at(e, 32).ok_or(range)?)
            .ok_or(range)?;
        if end > self.bytes.len() as u64 {
            return Err(BundleError::Range(i));
        }
        let data = &self.bytes[offset as usize..end as usize];
        Ok(Entry { kind, name, data })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a valid bundle holds at least the manifest.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Entry `i`, if it exists.
    pub fn entry(&self, i: usize) -> Option<Entry<'a>> {
        if i < self.count {
            self.read_entry(i).ok()
        } else {
            None
        }
    }

    /// The manifest bytes (entry 0).
    pub fn manifest(&self) -> &'a [u8] {
        self.entry(0).map(|e| e.data).unwrap_or(&[])
    }
}

/// Builds a bundle (host side): the manifest, then `entries` (kind, name, bytes) in order, so
/// entry `i` of `entries` is bundle entry `i + 1`.
#[cfg(feature = "alloc")]
pub fn build(manifest: &[u8], entries: &[(EntryKind, &str, &[u8])]) -> alloc::vec::Vec<u8> {
    use alloc::vec::Vec;
    let count = entries.len() + 1;
    assert!(count <= MAX_ENTRIES, "too many bundle entries");
    let mut out = Vec::new();
    out.extend_from_slice(&BUNDLE_MAGIC);
    out.extend_from_slice(&BUNDLE_VERSION.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    let table_end = HEADER_LEN + count * ENTRY_LEN;
    let mut offset = align_up(table_end, 4096);
    let entries = core::iter::once((EntryKind::Manifest, "manifest", manifest))
        .chain(entries.iter().copied());
    let mut layout = Vec::new();
    for (kind, name, data) in entries {
        out.extend_from_slice(&(kind as u32).to_le_bytes());
        let mut raw = [0u8; ENTRY_NAME_LEN];
        let n = name.len().min(ENTRY_NAME_LEN);
        raw[..n].copy_from_slice(&name.as_bytes()[..n]);
        out.extend_from_slice(&raw);
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        layout.push((offset, data));
        offset = align_up(offset + data.len(), 4096);
    }
    for (at, data) in layout {
        out.resize(at, 0);
        out.extend_from_slice(data);
    }
    out
}

#[cfg(feature = "alloc")]
fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_and_parses() {
        let b = build(
            b"MANIFEST",
            &[
                (EntryKind::Image, "net", b"\x7fELFnet"),
                (EntryKind::Image, "gui", b"\x7fELFgui"),
                (EntryKind::Config, "net.cfg", b"cfg"),
            ],
        );
        let p = Bundle::parse(&b).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p.entry(3).unwrap().kind, EntryKind::Config);
        assert_eq!(p.manifest(), b"MANIFEST");
        let e = p.entry(2).unwrap();
        assert_eq!(
            (e.kind, e.name, e.data),
            (EntryKind::Image, "gui", &b"\x7fELFgui"[..])
        );
        assert!(p.entry(4).is_none());
    }

    #[test]
    fn refuses_bad_headers() {
        let b = build(b"M", &[(EntryKind::Image, "net", b"x")]);
        assert_eq!(Bundle::parse(&b[..10]).unwrap_err(), BundleError::Truncated);
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::Magic);
        let mut bad = b.clone();
        bad[16 + 40 + 24] = 0xff; // entry 1 offset far away
        assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::Range(1));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(b) = Bundle::parse(&bytes) {
                for i in 0..b.len() + 2 { let _ = b.entry(i); }
            }
        }

        #[test]
        fn mutated_bundles_never_escape(pos in 0usize..4200, val: u8) {
            let mut b = build(b"MANIFEST", &[(EntryKind::Image, "net", b"abc")]);
            let n = b.len();
            b[pos % n] = val;
            if let Ok(p) = Bundle::parse(&b) {
                for i in 0..p.len() {
                    let e = p.entry(i).unwrap();
                    let start = e.data.as_ptr() as usize - b.as_ptr() as usize;
                    prop_assert!(start + e.data.len() <= n);
                }
            }
        }
    }
}

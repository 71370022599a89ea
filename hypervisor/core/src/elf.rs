//! Validating an ELF64 image and planning how it is loaded into a qube's memory.
//!
//! Images come from the boot bundle, which xtask built, but the loader still treats them as
//! untrusted input: every header field is checked, every segment must lie inside the file
//! and inside the qube's image window, and the entry point must be in an executable segment.

use bulkhead_abi::wire::{u16_at, u32_at, u64_at};

/// Most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 8;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// One segment to load: copy `file_len` bytes from `file_offset` to guest-physical `gpa`,
/// then zero up to `mem_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    /// Destination guest-physical address.
    pub gpa: u64,
    /// Offset in the image file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_len: u64,
    /// Bytes in memory (`>= file_len`; the rest is zero).
    pub mem_len: u64,
    /// Executable.
    pub exec: bool,
}

/// A validated load plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    /// Entry point.
    pub entry: u64,
    /// Lowest loaded address.
    pub start: u64,
    /// One past the highest loaded address.
    pub end: u64,
}

impl LoadPlan {
    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Too short or not ELF.
    NotElf,
    /// Not 64-bit little-endian x86-64.
    WrongArch,
    /// Not a static executable.
    NotExecutable,
    /// Program header table is malformed.
    BadProgramHeaders,
    /// No loadable segments, or more than [`MAX_SEGMENTS`].
    SegmentCount,
    /// A segment's bytes are not inside the file.
    SegmentOutsideFile,
    /// A segment does not fit the window the qube allows.
    SegmentOutsideWindow,
    /// Two segments overlap.
    Overlap,
    /// The entry point is not in an executable segment.
    BadEntry,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ElfError::NotElf => "not an ELF file",
            ElfError::WrongArch => "not a 64-bit little-endian x86-64 ELF",
            ElfError::NotExecutable => "not a static executable (ET_EXEC)",
            ElfError::BadProgramHeaders => "malformed program headers",
            ElfError::SegmentCount => "no loadable segments, or too many",
            ElfError::SegmentOutsideFile => "a segment lies outside the file",
            ElfError::SegmentOutsideWindow => "a segment does not fit the qube's image window",
            ElfError::Overlap => "segments overlap",
            ElfError::BadEntry => "entry point is not in an executable segment",
        })
    }
}

/// Validates `image` and plans loading it into `[window_start, window_end)`.
pub fn plan(image: &[u8], window_start: u64, window_end: u64) -> Result<LoadPlan, ElfError> {
    if image.len() < 64 || image[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if image[4] != 2 || image[5] != 1 || u16_at(image, 18) != Some(EM_X86_64) {
        return Err(ElfError::WrongArch);
    }
    if u16_at(image, 16) != Some(ET_EXEC) {
        return Err(ElfError::NotExecutable);
    }
    let bad = ElfError::BadProgramHeaders;
    let entry = u64_at(image, 24).ok_or(bad)?;
    let phoff = u64_at(image, 32).ok_or(bad)?;
    let phentsize = u16_at(image, 54).ok_or(bad)? as u64;
    let phnum = u16_at(image, 56).ok_or(bad)? as u64;
    if phentsize != 56 || phnum > 64 {
        return Err(bad);
    }
    let table_end = phoff.checked_add(phentsize * phnum).ok_or(bad)?;
    if table_end > image.len() as u64 {
        return Err(bad);
    }
    let mut p = LoadPlan {
        segments: [Segment::default(); MAX_SEGMENTS],
        count: 0,
        entry,
        start: u64::MAX,
        end: 0,
    };
    for i in 0..phnum {
        let h = (phoff + i * phentsize) as usize;
        if u32_at(image, h).ok_or(bad)? != PT_LOAD {
            continue;
        }
        let flags = u32_at(image, h + 4).ok_or(bad)?;
        let s = Segment {
            file_offset: u64_at(image, h + 8).ok_or(bad)?,
            gpa: u64_at(image, h + 24).ok_or(bad)?,
            file_len: u64_at(image, h + 32).ok_or(bad)?,
            mem_len: u64_at(image, h + 40).ok_or(bad)?,
            exec: flags & PF_X != 0,
        };
        if s.mem_len == 0 {
            continue;
        }
        if s.file_len > s.mem_len {
            return Err(bad);
        }
        let file_end = s
            .file_offset
            .checked_add(s.file_len)
            .ok_or(ElfError::SegmentOutsideFile)?;
        if file_end > image.len() as u64 {
            return Err(ElfError::SegmentOutsideFile);
        }
        let mem_end = s
            .gpa
            .checked_add(s.mem_len)
            .ok_or(ElfError::SegmentOutsideWindow)?;
        if s.gpa < window_start || mem_end > window_end {
            return Err(ElfError::SegmentOutsideWindow);
        }
        for o in p.segments() {
            if s.gpa < o.gpa + o.mem_len && o.gpa < mem_end {
                return Err(ElfError::Overlap);
            }
        }
        if p.count == MAX_SEGMENTS {
            return Err(ElfError::SegmentCount);
        }
        p.segments[p.count] = s;
        p.count += 1;
        p.start = p.start.min(s.gpa);
        p.end = p.end.max(mem_end);
    }
    if p.count == 0 {
        return Err(ElfError::SegmentCount);
    }
    if !p
        .segments()
        .iter()
        .any(|s| s.exec && s.gpa <= entry && entry < s.gpa + s.mem_len)
    {
        return Err(ElfError::BadEntry);
    }
    Ok(p)
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A minimal ELF with the given (vaddr, file bytes, mem_len, flags) segments.
    pub fn tiny_elf(entry: u64, segs: &[(u64, &[u8], u64, u32)]) -> Vec<u8> {
        let mut f = std::vec![0u8; 64 + 56 * segs.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (vaddr, bytes, mem, flags)) in segs.iter().enumerate() {
            let off = f.len() as u64;
            let h = 64 + 56 * i;
            f[h..h + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[h + 4..h + 8].copy_from_slice(&flags.to_le_bytes());
            f[h + 8..h + 16].copy_from_slice(&off.to_le_bytes());
            f[h + 16..h + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[h + 24..h + 32].copy_from_slice(&vaddr.to_le_bytes());
            f[h + 32..h + 40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            f[h + 40..h + 48].copy_from_slice(&mem.to_le_bytes());
            f.extend_from_slice(bytes);
        }
        f
    }

    #[test]
    fn plans_a_good_image() {
        let elf = tiny_elf(
            0x20_0000,
            &[(0x20_0000, b"\x90\xc3", 2, 5), (0x20_1000, b"d", 0x100, 6)],
        );
        let p = plan(&elf, 0x20_0000, 0x40_0000).unwrap();
        assert_eq!(p.segments().len(), 2);
        assert_eq!((p.start, p.end, p.entry), (0x20_0000, 0x20_1100, 0x20_0000));
    }

    #[test]
    fn refuses_bad_images() {
        let win = (0x20_0000, 0x40_0000);
        let e = |segs: &[(u64, &[u8], u64, u32)], entry| plan(&tiny_elf(entry, segs), win.0, win.1);
        assert_eq!(
            e(&[(0x1000, b"x", 1, 5)], 0x1000),
            Err(ElfError::SegmentOutsideWindow)
        );
        assert_eq!(
            e(&[(0x3f_ffff, b"xx", 2, 5)], 0x3f_ffff),
            Err(ElfError::SegmentOutsideWindow)
        );
        assert_eq!(
            e(&[(0x20_0000, b"x", 1, 6)], 0x20_0000),
            Err(ElfError::BadEntry)
        );
        assert_eq!(
            e(
                &[(0x20_0000, b"x", 0x10, 5), (0x20_0008, b"y", 1, 6)],
                0x20_0000
            ),
            Err(ElfError::Overlap)
        );
        assert_eq!(e(&[], 0), Err(ElfError::SegmentCount));
        assert_eq!(plan(b"\x7fELF", 0, 1), Err(ElfError::NotElf));
        let mut wrap = tiny_elf(0x20_0000, &[(0x20_0000, b"x", 1, 5)]);
        wrap[64 + 40..64 + 48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            plan(&wrap, win.0, win.1),
            Err(ElfError::SegmentOutsideWindow)
        );
    }

    proptest! {
        #[test]
        fn mutated_images_never_escape(pos in 0usize..200, val: u8, pos2 in 0usize..200, val2: u8) {
            let mut elf = tiny_elf(0x20_0000, &[(0x20_0000, b"\x90\xc3", 2, 5), (0x20_1000, b"d", 0x100, 6)]);
            let n = elf.len();
            elf[pos % n] = val;
            elf[pos2 % n] = val2;
            if let Ok(p) = plan(&elf, 0x20_0000, 0x40_0000) {
                for s in p.segments() {
                    prop_assert!(s.gpa >= 0x20_0000 && s.gpa + s.mem_len <= 0x40_0000);
                    prop_assert!(s.file_offset + s.file_len <= n as u64);
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = plan(&bytes, 0, u64::MAX);
        }
    }
}

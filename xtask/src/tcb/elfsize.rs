//! Section sizes of an ELF file (32- or 64-bit, either endianness), read with `object`.
//!
//! Only sections that occupy memory at run time (`SHF_ALLOC`) count, classified by flags and
//! type: `SHT_NOBITS` is bss (`.bss`, `.tbss`); executable is text; writable is data (`.data`,
//! `.tdata`, `.got`, ...); the rest is rodata (`.rodata`, `.eh_frame`, notes, ...). Debug info,
//! symbol and string tables are not loaded and are only part of the file size.

use anyhow::{Context, Result, bail};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use serde::Serialize;
use std::path::Path;

/// Sizes in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ElfSizes {
    /// Allocated, executable sections.
    pub text: u64,
    /// Allocated, read-only, non-executable sections.
    pub rodata: u64,
    /// Allocated, writable sections with file contents.
    pub data: u64,
    /// Allocated sections without file contents.
    pub bss: u64,
    /// The size of the file on disk.
    pub file: u64,
}

/// Which bucket a section falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    /// See [`ElfSizes::text`].
    Text,
    /// See [`ElfSizes::rodata`].
    Rodata,
    /// See [`ElfSizes::data`].
    Data,
    /// See [`ElfSizes::bss`].
    Bss,
}

/// Classifies a section by its `sh_flags` and `sh_type`; `None` if it is not loaded.
pub fn bucket(flags: u64, sh_type: u32) -> Option<Bucket> {
    let has = |f: elf::SectionFlags| flags & f.0 != 0;
    if !has(elf::SHF_ALLOC) {
        None
    } else if sh_type == elf::SHT_NOBITS.0 {
        Some(Bucket::Bss)
    } else if has(elf::SHF_EXECINSTR) {
        Some(Bucket::Text)
    } else if has(elf::SHF_WRITE) {
        Some(Bucket::Data)
    } else {
        Some(Bucket::Rodata)
    }
}

/// Reads the ELF at `path`.
pub fn read(path: &Path) -> Result<ElfSizes> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    sizes(&data).with_context(|| format!("reading ELF sections of {}", path.display()))
}

/// The sizes of an ELF image held in memory.
pub fn sizes(data: &[u8]) -> Result<ElfSizes> {
    let mut out = match object::FileKind::parse(data)? {
        object::FileKind::Elf32 => sections::<elf::FileHeader32<object::Endianness>>(data)?,
        object::FileKind::Elf64 => sections::<elf::FileHeader64<object::Endianness>>(data)?,
        other => bail!("not an ELF file ({other:?})"),
    };
    out.file = data.len() as u64;
    Ok(out)
}

fn sections<Elf: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> Result<ElfSizes> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let mut out = ElfSizes::default();
    for section in header.sections(endian, data)?.iter() {
        let size: u64 = section.sh_size(endian).into();
        let flags = section.sh_flags(endian).0;
        match bucket(flags, section.sh_type(endian).0) {
            Some(Bucket::Text) => out.text += size,
            Some(Bucket::Rodata) => out.rodata += size,
            Some(Bucket::Data) => out.data += size,
            Some(Bucket::Bss) => out.bss += size,
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_flags_and_type() {
        let (a, w, x) = (elf::SHF_ALLOC.0, elf::SHF_WRITE.0, elf::SHF_EXECINSTR.0);
        let (bits, nobits) = (elf::SHT_PROGBITS.0, elf::SHT_NOBITS.0);
        assert_eq!(bucket(a | x, bits), Some(Bucket::Text));
        assert_eq!(bucket(a | w | x, bits), Some(Bucket::Text));
        assert_eq!(bucket(a, bits), Some(Bucket::Rodata));
        assert_eq!(bucket(a | w, bits), Some(Bucket::Data));
        assert_eq!(bucket(a | w, nobits), Some(Bucket::Bss));
        assert_eq!(bucket(0, bits), None);
        assert_eq!(bucket(w, nobits), None);
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let exe = std::env::current_exe().unwrap();
        let s = read(&exe).unwrap();
        assert_eq!(s.file, std::fs::metadata(&exe).unwrap().len());
        assert!(s.text > 10_000, "{s:?}");
        assert!(s.rodata > 0 && s.data > 0, "{s:?}");
        assert!(s.text + s.rodata + s.data < s.file, "{s:?}");
    }

    #[test]
    fn rejects_non_elf_input() {
        assert!(sizes(b"not an elf file at all, just some bytes").is_err());
    }
}

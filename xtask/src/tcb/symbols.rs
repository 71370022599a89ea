//! Linked code per crate: the ELF's executable bytes split by the function symbols that cover
//! them, each symbol given to the crate its demangled path names.
//!
//! Every byte of an executable section is counted once: a symbol covers its `st_size` bytes,
//! or up to the next symbol when it has no size (assembly labels); of symbols at the same
//! address (identical code folded) the first, largest one counts; bytes no symbol covers
//! (alignment padding) are gaps. So the crates' bytes plus the gaps are the image's text.
//!
//! Whose code a symbol is: the first segment of its demangled path (Rust's legacy and v0
//! manglings). For `<T as Trait>::f` it is `T`'s crate when `T` is a path outside the
//! toolchain, else the trait's (`<u32 as core::fmt::Display>::fmt` is core's,
//! `<heapless::Vec<..> as core::ops::Drop>::drop` heapless'); `<[T]>::f` (inherent methods on
//! primitives) is core's. Code inlined into a function counts as the caller's. Unmangled
//! names (`#[no_mangle]` functions, assembly) are looked up in the rlibs that define them.

use anyhow::{Context, Result, bail};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The toolchain's prebuilt crates (and rustc's generated shims): reported together.
pub const TOOLCHAIN: &[&str] = &[
    "core",
    "alloc",
    "std",
    "compiler_builtins",
    "panic_abort",
    "__rustc",
    "rustc_std_workspace_core",
];

/// Whether `name` is one of the toolchain's crates.
pub fn is_toolchain(name: &str) -> bool {
    TOOLCHAIN.contains(&name)
}

/// The executable bytes of an ELF, by symbol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    /// Each counted symbol (raw name) with the bytes it covers.
    pub symbols: Vec<(String, u64)>,
    /// Bytes no symbol covers.
    pub gaps: u64,
    /// All executable bytes (the sum of the above).
    pub total: u64,
}

/// Reads the text symbols of the ELF at `path`.
pub fn read(path: &Path) -> Result<Text> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    text(&data).with_context(|| format!("reading the symbols of {}", path.display()))
}

/// The text symbols of an ELF held in memory.
pub fn text(data: &[u8]) -> Result<Text> {
    match object::FileKind::parse(data)? {
        object::FileKind::Elf32 => text_of::<elf::FileHeader32<object::Endianness>>(data),
        object::FileKind::Elf64 => text_of::<elf::FileHeader64<object::Endianness>>(data),
        other => bail!("not an ELF file ({other:?})"),
    }
}

fn text_of<Elf: FileHeader<Endian = object::Endianness>>(data: &[u8]) -> Result<Text> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
    // (address, size, name) of the symbols in each executable section.
    let mut by_section: BTreeMap<usize, Vec<(u64, u64, String)>> = BTreeMap::new();
    for (i, sym) in symtab.iter().enumerate() {
        let kind = sym.st_type();
        if kind != elf::STT_FUNC && kind != elf::STT_NOTYPE {
            continue;
        }
        let Ok(Some(index)) = symtab.symbol_section(endian, sym, object::SymbolIndex(i)) else {
            continue;
        };
        let Ok(section) = sections.section(index) else {
            continue;
        };
        if section.sh_flags(endian).0 & elf::SHF_EXECINSTR.0 == 0 {
            continue;
        }
        let name = String::from_utf8_lossy(symtab.symbol_name(endian, sym)?).into_owned();
        if name.is_empty() || name.starts_with(".L") || name.starts_with('$') {
            continue;
        }
        let addr: u64 = sym.st_value(endian).into();
        let size: u64 = sym.st_size(endian).into();
        by_section
            .entry(index.0)
            .or_default()
            .push((addr, size, name));
    }
    let mut out = Text::default();
    for (index, section) in sections.iter().enumerate() {
        let flags = section.sh_flags(endian).0;
        let alloc_exec = elf::SHF_ALLOC.0 | elf::SHF_EXECINSTR.0;
        if flags & alloc_exec != alloc_exec {
            continue;
        }
        let start: u64 = section.sh_addr(endian).into();
        let size: u64 = section.sh_size(endian).into();
        out.total += size;
        let symbols = by_section.remove(&index).unwrap_or_default();
        let (symbols, gaps) = cover(start, start + size, symbols);
        out.symbols.extend(symbols);
        out.gaps += gaps;
    }
    Ok(out)
}

/// Splits `[start, end)` among `symbols` (address, size, name) as the module docs say.
pub fn cover(
    start: u64,
    end: u64,
    mut symbols: Vec<(u64, u64, String)>,
) -> (Vec<(String, u64)>, u64) {
    symbols.retain(|s| s.0 >= start && s.0 < end);
    symbols.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    symbols.dedup_by_key(|s| s.0);
    let mut out = Vec::new();
    let mut gaps = symbols.first().map_or(end - start, |s| s.0 - start);
    for (i, (addr, size, name)) in symbols.iter().enumerate() {
        let next = symbols.get(i + 1).map_or(end, |s| s.0);
        let room = next - addr;
        let bytes = if *size == 0 { room } else { (*size).min(room) };
        gaps += room - bytes;
        out.push((name.clone(), bytes));
    }
    (out, gaps)
}

/// The path that says whose code a mangled symbol is (see the module docs), without generic
/// arguments' crates; `None` for a name that is not a Rust mangled name.
pub fn code_path(symbol: &str) -> Option<String> {
    let demangled = rustc_demangle::try_demangle(symbol).ok()?;
    Some(owner_path(&format!("{demangled:#}")))
}

/// [`code_path`] on a demangled name.
pub fn owner_path(demangled: &str) -> String {
    let s = demangled.trim();
    let Some(rest) = s.strip_prefix('<') else {
        return s.to_string();
    };
    let Some(close) = top_level(rest, |r| r.starts_with('>')) else {
        return s.to_string();
    };
    let inner = &rest[..close];
    let (ty, tr) = match top_level(inner, |r| r.starts_with(" as ")) {
        Some(at) => (&inner[..at], Some(inner[at + 4..].trim())),
        None => (inner, None),
    };
    match (type_path(ty), tr) {
        (Some(t), Some(tr)) if is_toolchain(first_segment(&t)) => tr.to_string(),
        (Some(t), _) => t,
        (None, Some(tr)) => tr.to_string(),
        // Inherent methods of primitive types are defined in the toolchain.
        (None, None) => "core".to_string(),
    }
}

/// The crate a code path belongs to.
pub fn first_segment(path: &str) -> &str {
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(path.len());
    &path[..end]
}

/// The byte index of the first position in `s` outside any brackets where `at` holds.
fn top_level(s: &str, at: impl Fn(&str) -> bool) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        if depth == 0 && at(&s[i..]) {
            return Some(i);
        }
        match c {
            '<' | '[' | '(' => depth += 1,
            '>' | ']' | ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The path of a type written as in a demangled name, if it is a path type (references and
/// pointers looked through); `None` for primitives, slices, tuples and generic parameters.
fn type_path(ty: &str) -> Option<String> {
    let mut t = ty.trim();
    loop {
        let before = t;
        for prefix in ["&", "mut ", "*const ", "*mut ", "dyn ", "impl "] {
            t = t.strip_prefix(prefix).unwrap_or(t).trim_start();
        }
        if t == before {
            break;
        }
    }
    let head = first_segment(t);
    (!head.is_empty() && t[head.len()..].starts_with("::")).then(|| t.to_string())
}

/// The global symbols an rlib's object files define.
pub fn rlib_definitions(rlib: &Path) -> Result<HashSet<String>> {
    use object::read::archive::ArchiveFile;
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(rlib).with_context(|| format!("reading {}", rlib.display()))?;
    let archive = ArchiveFile::parse(&*data)?;
    let mut out = HashSet::new();
    for member in archive.members() {
        let member = member?;
        let Ok(bytes) = member.data(&*data) else {
            continue;
        };
        let Ok(file) = object::File::parse(bytes) else {
            continue; // lib.rmeta
        };
        for sym in file.symbols() {
            if sym.is_definition()
                && let Ok(name) = sym.name()
            {
                out.insert(name.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_of_demangled_paths() {
        let cases = [
            (
                "bulkhead_platform::boot::zero_page",
                "bulkhead_platform::boot::zero_page",
            ),
            ("core::fmt::write", "core::fmt::write"),
            ("<core::fmt::Formatter>::pad", "core::fmt::Formatter"),
            ("<u32 as core::fmt::Display>::fmt", "core::fmt::Display"),
            ("<&T as core::fmt::Debug>::fmt", "core::fmt::Debug"),
            (
                "<heapless::vec::VecInner<T, S> as core::ops::drop::Drop>::drop",
                "heapless::vec::VecInner<T, S>",
            ),
            (
                "<core::option::Option<T> as serde::ser::Serialize>::serialize",
                "serde::ser::Serialize",
            ),
            (
                "<&mut bulkhead_rt::console::Out as core::fmt::Write>::write_str",
                "bulkhead_rt::console::Out",
            ),
            ("<[u8]>::copy_from_slice", "core"),
            ("core::num::<impl u32>::pow", "core::num::<impl u32>::pow"),
            (
                "<<bulkhead_abi::X as serde::Deserialize>::V as serde::de::Visitor>::visit_seq",
                "serde::de::Visitor",
            ),
        ];
        for (demangled, want) in cases {
            assert_eq!(owner_path(demangled), want, "{demangled}");
        }
        assert_eq!(first_segment("heapless::vec::Vec<T>"), "heapless");
        assert_eq!(first_segment("core"), "core");
    }

    #[test]
    fn legacy_and_v0_symbols() {
        let legacy = "_ZN19bulkhead_hypervisor9scheduler9Scheduler9run_slice17hcfa4a95b7281226aE";
        assert_eq!(
            code_path(legacy).as_deref(),
            Some("bulkhead_hypervisor::scheduler::Scheduler::run_slice")
        );
        let v0 = "_RNvMsa_NtCsgEmfK2I1SDS_4core3fmtNtB5_9Formatter3pad";
        assert_eq!(code_path(v0).as_deref(), Some("core::fmt::Formatter"));
        let v0_trait = "_RNvXs6_NtNtCsgEmfK2I1SDS_4core3fmt3numjNtB7_8LowerHex3fmt";
        assert_eq!(first_segment(&code_path(v0_trait).unwrap()), "core");
        assert_eq!(code_path("memset"), None);
        assert_eq!(code_path("isr_exception"), None);
    }

    #[test]
    fn every_byte_counted_once() {
        let s = |a: u64, n: u64, name: &str| (a, n, name.to_string());
        let (symbols, gaps) = cover(
            100,
            200,
            vec![
                s(110, 20, "f"),
                s(110, 20, "f_alias"),
                s(140, 0, "label"),
                s(150, 60, "too_long"),
                s(300, 4, "elsewhere"),
            ],
        );
        assert_eq!(
            symbols,
            [
                ("f".to_string(), 20),
                ("label".to_string(), 10),
                ("too_long".to_string(), 50),
            ]
        );
        assert_eq!(gaps, 10 + 10);
        assert_eq!(cover(0, 8, vec![]), (vec![], 8));
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let exe = std::env::current_exe().unwrap();
        let t = read(&exe).unwrap();
        let sum: u64 = t.symbols.iter().map(|s| s.1).sum::<u64>() + t.gaps;
        assert_eq!(sum, t.total);
        assert_eq!(t.total, super::super::elfsize::read(&exe).unwrap().text);
        let ours = t
            .symbols
            .iter()
            .filter(|(n, _)| code_path(n).is_some_and(|p| first_segment(&p) == "xtask"))
            .count();
        assert!(ours > 10, "{ours}");
    }
}

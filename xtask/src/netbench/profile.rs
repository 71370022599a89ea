//! `cargo xtask bench --network --profile`: where the Bulkhead path's instructions go, per
//! megabyte and by function.
//!
//! The plugin (`blocks=FILE`) writes every translated block's executions so far at each mark
//! (`FILE.markN`); a transfer's blocks are the difference of its two marks. Each block is
//! named by the image its code came from:
//!
//! - below 2 MiB, the hypervisor's symbols;
//! - 2-4 MiB, sys-net's or sys-firewall's: both are linked there, so the block's first bytes
//!   (which the plugin writes) are compared with each image's code at that address;
//! - the upper half, the Linux kernel's `System.map` (the profiled boot has `nokaslr`);
//! - the rest, the agent's symbols, at the load address that makes the most of the hottest
//!   blocks' bytes match its code (the boot has `norandmaps`, but a static PIE still lands at
//!   a base the kernel picks); what does not match is busybox or the loader.

use crate::profile::{Block, Symbols};
use anyhow::{Context, Result};
use object::{Object, ObjectSection, SectionKind};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One block of a mark file, with its code.
#[derive(Clone, Debug)]
struct Coded {
    block: Block,
    code: Vec<u8>,
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Instructions and executions per (block address, code).
type Counts = HashMap<(u64, Vec<u8>), (u64, u64)>;

/// The blocks of a mark file, executions summed by (address, code).
fn read_mark(path: &Path) -> Result<Counts> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plugin's block counts {}", path.display()))?;
    let mut m: Counts = HashMap::new();
    for line in text.lines() {
        let Some(block) = Block::parse(line) else {
            continue;
        };
        let code = line
            .split_whitespace()
            .nth(3)
            .and_then(parse_hex)
            .unwrap_or_default();
        let e = m.entry((block.addr, code)).or_default();
        e.0 += block.insns * block.runs;
        e.1 += block.runs;
    }
    Ok(m)
}

/// The blocks executed between two marks: instructions and executions per block start.
fn between(a: &Path, b: &Path) -> Result<Vec<(Coded, u64)>> {
    let (a, b) = (read_mark(a)?, read_mark(b)?);
    let mut out = Vec::new();
    for ((addr, code), (insns, runs)) in b {
        let (i0, r0) = a.get(&(addr, code.clone())).copied().unwrap_or_default();
        let insns = insns.saturating_sub(i0);
        if insns > 0 {
            out.push((
                Coded {
                    block: Block {
                        addr,
                        insns: 0,
                        runs: runs.saturating_sub(r0),
                    },
                    code,
                },
                insns,
            ));
        }
    }
    Ok(out)
}

/// An ELF's symbols and code.
struct Image {
    name: String,
    symbols: Symbols,
    /// (address, bytes) of each code section.
    text: Vec<(u64, Vec<u8>)>,
}

impl Image {
    fn read(name: &str, elf: &Path) -> Result<Image> {
        let data = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
        let file =
            object::File::parse(&*data).with_context(|| format!("parsing {}", elf.display()))?;
        let text = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
            .collect();
        Ok(Image {
            name: name.to_string(),
            symbols: Symbols::read(elf)?,
            text,
        })
    }

    /// True when `code` is what this image has at `addr`.
    fn has_code(&self, addr: u64, code: &[u8]) -> bool {
        !code.is_empty()
            && self.text.iter().any(|(start, bytes)| {
                addr >= *start
                    && usize::try_from(addr - start)
                        .ok()
                        .and_then(|o| bytes.get(o..o + code.len()))
                        == Some(code)
            })
    }

    /// Every address of this image's code where `code` lies.
    fn find(&self, code: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        for (start, bytes) in &self.text {
            for (i, w) in bytes.windows(code.len()).enumerate() {
                if w == code {
                    v.push(start + i as u64);
                }
            }
        }
        v
    }
}

/// Names blocks.
pub struct Namer {
    hv: Symbols,
    unikernels: Vec<Image>,
    kernel: Option<Symbols>,
    agent: Option<Image>,
}

/// The Linux kernel's `System.map` of the template's cached kernel package, if any.
fn system_map() -> Option<PathBuf> {
    let cache = crate::images::target_dir().join("bulkhead/appvm/cache");
    for e in std::fs::read_dir(cache).ok()?.flatten() {
        let boot = e.path().join("boot");
        for f in std::fs::read_dir(boot).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().starts_with("System.map") {
                return Some(f.path());
            }
        }
    }
    None
}

fn read_system_map(path: &Path) -> Option<Symbols> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            let kind = w.next()?;
            let name = w.next()?;
            matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, addr, name.to_string()))
        })
        .collect::<Vec<_>>();
    // Debian's packaged System.map is a one-line stub.
    (v.len() > 100).then(|| Symbols::new(v))
}

impl Namer {
    /// The hypervisor's ELF, the unikernels' (name, ELF), the agent's ELF.
    pub fn new(hv: &Path, unikernels: &[(String, PathBuf)], agent: Option<&Path>) -> Result<Namer> {
        let mut images = Vec::new();
        for (name, elf) in unikernels {
            images.push(Image::read(name, elf)?);
        }
        Ok(Namer {
            hv: Symbols::read(hv)?,
            unikernels: images,
            kernel: system_map().and_then(|p| read_system_map(&p)),
            agent: agent.and_then(|p| Image::read("agent", p).ok()),
        })
    }

    /// The agent's load base: the offset that makes the most of the hottest program blocks'
    /// code match the agent's.
    fn agent_base(&self, blocks: &[(Coded, u64)]) -> Option<u64> {
        let agent = self.agent.as_ref()?;
        let mut hot: Vec<&(Coded, u64)> = blocks
            .iter()
            .filter(|(c, _)| region(c.block.addr) == Region::Programs && c.code.len() >= 8)
            .collect();
        hot.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let mut votes: BTreeMap<u64, u32> = BTreeMap::new();
        for (c, _) in hot.iter().take(20) {
            for at in agent.find(&c.code) {
                if at & 0xfff == c.block.addr & 0xfff {
                    *votes.entry(c.block.addr.wrapping_sub(at)).or_default() += 1;
                }
            }
        }
        votes.into_iter().max_by_key(|v| v.1).map(|v| v.0)
    }

    /// Instructions and calls (executions of the block at the function's start) by
    /// function ("where: name") for the blocks between two marks.
    pub fn functions(&self, a: &Path, b: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
        let blocks = between(a, b)?;
        let base = self.agent_base(&blocks);
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (c, insns) in &blocks {
            let addr = c.block.addr;
            let mut entry = false;
            let mut named = |side: &str, syms: &Symbols| match syms.lookup(addr) {
                Some((start, name)) => {
                    entry = start == addr;
                    format!("{side}: {name}")
                }
                None => format!("{side}: (no symbol)"),
            };
            let name = match region(addr) {
                Region::Hypervisor => named("hv", &self.hv),
                Region::Unikernels => {
                    match self.unikernels.iter().find(|i| i.has_code(addr, &c.code)) {
                        Some(i) => named(&i.name, &i.symbols),
                        None => "unikernel: (code matches no image)".to_string(),
                    }
                }
                Region::Kernel => match self.kernel.as_ref().and_then(|k| k.name(addr)) {
                    Some(n) => format!("linux: {n}"),
                    // Debian's System.map is a stub (the symbols are in the -dbg package):
                    // say at least what the string instructions cost.
                    None => match c.code.as_slice() {
                        [0xf3, 0xa4, ..] | [0xf3, 0x48, 0xa5, ..] => {
                            "linux: rep movs (copies)".to_string()
                        }
                        [0xf3, 0xaa, ..] | [0xf3, 0x48, 0xab, ..] => {
                            "linux: rep stos (clears)".to_string()
                        }
                        _ => "linux: (no symbols)".to_string(),
                    },
                },
                Region::Programs => {
                    let agent = self.agent.as_ref().zip(base).and_then(|(ag, base)| {
                        let at = addr.wrapping_sub(base);
                        ag.has_code(at, &c.code)
                            .then(|| ag.symbols.name(at))
                            .flatten()
                    });
                    match agent {
                        Some(n) => format!("agent: {n}"),
                        None => "programs: (not the agent: busybox, vdso)".to_string(),
                    }
                }
            };
            let e = out.entry(name).or_default();
            e.0 += insns;
            if entry {
                e.1 += c.block.runs;
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Hypervisor,
    Unikernels,
    Kernel,
    Programs,
}

/// The plugin's split by address.
fn region(addr: u64) -> Region {
    match addr {
        0x10_0000..0x20_0000 => Region::Hypervisor,
        0x20_0000..0x40_0000 => Region::Unikernels,
        0xffff_8000_0000_0000.. => Region::Kernel,
        _ => Region::Programs,
    }
}

/// Groups a function name: its side and the first two parts of its path
/// (`net: smoltcp::iface`), or the side alone for Linux and programs.
fn group(name: &str) -> String {
    let (side, path) = name.split_once(": ").unwrap_or(("?", name));
    match side {
        "linux" if path.starts_with('(') || path.starts_with("rep ") => name.to_string(),
        "linux" => {
            // Kernel functions by their prefix up to the first underscore (tcp_, skb_, ...).
            let p = path.split('_').next().unwrap_or(path);
            format!("linux: {p}_*")
        }
        "programs" => name.to_string(),
        _ => {
            let path = path.trim_start_matches('<');
            let key: Vec<&str> = path.split("::").take(2).collect();
            format!("{side}: {}", key.join("::"))
        }
    }
}

/// A markdown report of one direction: by side, by group, and the top functions, per MB
/// (with their calls per MB).
pub fn markdown(
    title: &str,
    with_calls: &BTreeMap<String, (u64, u64)>,
    mb: f64,
    top: usize,
) -> String {
    let functions: BTreeMap<String, u64> =
        with_calls.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    let functions = &functions;
    let total: u64 = functions.values().sum();
    let mut s = format!(
        "#### {title}: {:.0} instructions per MB\n\n| where | instructions per MB | share |\n|---|--:|--:|\n",
        total as f64 / mb
    );
    let mut sides: BTreeMap<String, u64> = BTreeMap::new();
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for (name, n) in functions {
        let side = name.split_once(": ").map_or("?", |s| s.0);
        *sides.entry(side.to_string()).or_default() += n;
        *groups.entry(group(name)).or_default() += n;
    }
    let row = |s: &mut String, name: &str, n: u64| {
        s.push_str(&format!(
            "| {} | {:.0} | {:.1}% |\n",
            name.replace('|', "\\|"),
            n as f64 / mb,
            100.0 * n as f64 / total.max(1) as f64
        ));
    };
    let sorted = |m: &BTreeMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v
    };
    for (k, v) in sorted(&sides) {
        row(&mut s, &k, v);
    }
    s.push_str("\n| group | instructions per MB | share |\n|---|--:|--:|\n");
    for (k, v) in sorted(&groups).into_iter().take(top) {
        row(&mut s, &k, v);
    }
    s.push_str("\n| function | instructions per MB | share | calls per MB |\n|---|--:|--:|--:|\n");
    for (k, v) in sorted(functions).into_iter().take(top) {
        let calls = with_calls.get(&k).map_or(0, |c| c.1);
        s.push_str(&format!(
            "| `{}` | {:.0} | {:.1}% | {:.0} |\n",
            k.replace('|', "\\|"),
            v as f64 / mb,
            100.0 * v as f64 / total.max(1) as f64,
            calls as f64 / mb
        ));
    }
    s.push_str("\n| most called | calls per MB | instructions per MB |\n|---|--:|--:|\n");
    let mut by_calls: Vec<(&String, &(u64, u64))> = with_calls.iter().collect();
    by_calls.sort_by_key(|x| std::cmp::Reverse(x.1.1));
    for (k, (insns, calls)) in by_calls.into_iter().take(top) {
        s.push_str(&format!(
            "| `{}` | {:.0} | {:.0} |\n",
            k.replace('|', "\\|"),
            *calls as f64 / mb,
            *insns as f64 / mb
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert_eq!(
            group("net: smoltcp::iface::Interface::poll"),
            "net: smoltcp::iface"
        );
        assert_eq!(group("linux: tcp_ack"), "linux: tcp_*");
        assert_eq!(
            group("firewall: <bulkhead_rt::net::NetLink as x>::y"),
            "firewall: bulkhead_rt::net"
        );
        assert_eq!(parse_hex("0f1fa0"), Some(vec![0x0f, 0x1f, 0xa0]));
    }
}

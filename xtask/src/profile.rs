//! `cargo xtask bench --qemu --profile`: where the instructions of an in-QEMU round trip go.
//!
//! The poll-mode ping-pong system of `systems/bench/` is booted twice under `-icount shift=0`
//! with the `bulkhead-qemu-counter` plugin (`blocks=`), once with `SHORT` and once with `LONG`
//! round trips. The plugin counts every translated block's executions; each block's start address is
//! named with the hypervisor's symbol table (addresses below the unikernel image base) or the
//! `testing` image's (the two qubes run the same image). The difference of the two runs,
//! divided by the difference of round trips, is the instructions each function costs per
//! round trip: boot and teardown cancel out.

use crate::bundle::Assembled;
use crate::qemu::{self, Control, HvEvent};
use crate::scenarios::boots;
use anyhow::{Context, Result, bail};
use object::{Object, ObjectSymbol, SymbolKind};
use std::collections::BTreeMap;
use std::path::Path;

const SHORT: u64 = 500;
const LONG: u64 = 2500;
/// Unikernel images are linked here (`unikernels/runtime/unikernel.ld`); the hypervisor below.
const IMAGE_BASE: u64 = 0x20_0000;

/// One line of the plugin's `blocks=` file: a block's start address, its instructions and
/// how often it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) addr: u64,
    pub(crate) insns: u64,
    pub(crate) runs: u64,
}

impl Block {
    /// A line `0xADDRESS INSTRUCTIONS RUNS [CODE]` (the plugin's first bytes of the block,
    /// which this reader ignores).
    pub(crate) fn parse(line: &str) -> Option<Block> {
        let mut f = line.split_whitespace();
        let addr = u64::from_str_radix(f.next()?.strip_prefix("0x")?, 16).ok()?;
        let insns = f.next()?.parse().ok()?;
        let runs = f.next()?.parse().ok()?;
        let _code = f.next();
        f.next().is_none().then_some(Block { addr, insns, runs })
    }
}

/// Function symbols of one ELF, sorted by address: (start, end, demangled name).
pub(crate) struct Symbols(Vec<(u64, u64, String)>);

impl Symbols {
    pub(crate) fn read(elf: &Path) -> Result<Symbols> {
        let data = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
        let file =
            object::File::parse(&*data).with_context(|| format!("parsing {}", elf.display()))?;
        let v: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                let name = format!("{:#}", rustc_demangle::demangle(s.name().ok()?));
                Some((s.address(), s.address() + s.size(), name))
            })
            .collect();
        Ok(Symbols::new(v))
    }

    /// Symbols from (start, end, name) in any order; a symbol without a size (end == start)
    /// runs to the next one.
    pub(crate) fn new(mut v: Vec<(u64, u64, String)>) -> Symbols {
        v.sort();
        for i in 0..v.len() {
            if v[i].1 == v[i].0 {
                v[i].1 = v.get(i + 1).map_or(u64::MAX, |n| n.0);
            }
        }
        Symbols(v)
    }

    pub(crate) fn name(&self, addr: u64) -> Option<&str> {
        self.lookup(addr).map(|s| s.1)
    }

    /// The function at `addr`: its start and name.
    pub(crate) fn lookup(&self, addr: u64) -> Option<(u64, &str)> {
        let i = self.0.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, end, name) = &self.0[i];
        (*start <= addr && addr < *end).then_some((*start, name.as_str()))
    }
}

/// Instructions per symbol ("hv: name" or "qube: name") of one profiled run.
fn run(a: &Assembled, round_trips: u64, plugin: &Path) -> Result<BTreeMap<String, u64>> {
    let dir = crate::bundle::out_dir();
    let out = dir.join(format!("profile-{round_trips}.txt"));
    let counters = dir.join(format!("profile-{round_trips}-counters.txt"));
    let _ = std::fs::remove_file(&out);
    let mut opts = boots::options(a, "max", 300, &format!("profile-{round_trips}"));
    opts.extra_args = vec![
        "-icount".into(),
        "shift=0,align=off,sleep=off".into(),
        "-plugin".into(),
        format!(
            "{},out={},blocks={}",
            plugin.display(),
            counters.display(),
            out.display()
        ),
    ];
    let booted = qemu::boot(&opts, |e| {
        Control::stop_if(
            matches!(e.hv, Some(HvEvent::Panic(_))) || e.line.text.contains("pong: echoed"),
        )
    })?;
    if booted.timed_out || booted.panic.is_some() {
        bail!("the profiled boot with {round_trips} round trips did not finish");
    }
    let hv = Symbols::read(&a.hypervisor.elf)?;
    let image = a
        .images
        .first()
        .context("the bench system has no unikernel image")?;
    let qube = Symbols::read(&image.elf)?;
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("{}: the plugin wrote nothing", out.display()))?;
    let mut by_symbol = BTreeMap::new();
    for b in text.lines().filter_map(Block::parse) {
        let name = if b.addr < IMAGE_BASE {
            format!("hv: {}", hv.name(b.addr).unwrap_or("(no symbol)"))
        } else {
            format!("qube: {}", qube.name(b.addr).unwrap_or("(no symbol)"))
        };
        *by_symbol.entry(name).or_insert(0) += b.insns * b.runs;
    }
    Ok(by_symbol)
}

/// The profile: instructions per round trip by function, largest first.
pub struct Profile {
    /// (function, instructions per round trip).
    pub functions: Vec<(String, f64)>,
    /// The sum over all functions.
    pub total: f64,
}

/// Builds the plugin, writes the two bench systems and profiles both.
pub fn profile_round_trip() -> Result<Profile> {
    let root = crate::workspace_root();
    let plugin = crate::netbench::build_plugin()?;
    let template = std::fs::read_to_string(root.join("systems/bench/pingpong-poll.toml"))?;
    let mut runs = Vec::new();
    for n in [SHORT, LONG] {
        let text = template.replace("count=2000", &format!("count={n}"));
        if text == template && n != 2000 {
            bail!("systems/bench/pingpong-poll.toml no longer says count=2000");
        }
        let dir = crate::bundle::out_dir().join("profile");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("pingpong-poll-{n}.toml"));
        std::fs::write(&path, text)?;
        let a = boots::assemble(path.to_str().context("non-UTF-8 path")?)?;
        runs.push(run(&a, n, &plugin)?);
    }
    let per = (LONG - SHORT) as f64;
    let mut functions: Vec<(String, f64)> = runs[1]
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (*v as f64 - *runs[0].get(k).unwrap_or(&0) as f64) / per,
            )
        })
        .filter(|(_, v)| v.abs() >= 0.5)
        .collect();
    functions.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total = functions.iter().map(|f| f.1).sum();
    Ok(Profile { functions, total })
}

impl Profile {
    /// Totals by group: hypervisor or qube, then the crate and first module of the path.
    pub fn groups(&self) -> Vec<(String, f64)> {
        let mut g: BTreeMap<String, f64> = BTreeMap::new();
        for (name, v) in &self.functions {
            let (side, path) = name.split_once(": ").unwrap_or(("?", name));
            let path = path.trim_start_matches('<');
            let key: Vec<&str> = path.split("::").take(2).collect();
            *g.entry(format!("{side}: {}", key.join("::"))).or_default() += v;
        }
        let mut v: Vec<(String, f64)> = g.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// A markdown report: groups, then the top functions.
    pub fn markdown(&self, top: usize) -> String {
        let mut s = format!(
            "Instructions per poll-mode round trip, by where they run ({SHORT} and {LONG} round \
             trips profiled, the difference divided by {}): {:.0} in all.\n\n| group | \
             instructions | share |\n|---|--:|--:|\n",
            LONG - SHORT,
            self.total
        );
        for (name, v) in self.groups().iter().take(top) {
            s.push_str(&format!(
                "| {name} | {v:.0} | {:.1}% |\n",
                100.0 * v / self.total
            ));
        }
        s.push_str("\n| function | instructions |\n|---|--:|\n");
        for (name, v) in self.functions.iter().take(top) {
            s.push_str(&format!("| `{}` | {v:.0} |\n", name.replace('|', "\\|")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Block;

    #[test]
    fn reads_the_plugins_block_lines() {
        assert_eq!(
            Block::parse("0x102040 7 123456"),
            Some(Block {
                addr: 0x10_2040,
                insns: 7,
                runs: 123_456
            })
        );
        assert_eq!(
            Block::parse("0x10 1 2 0f1f00"),
            Some(Block {
                addr: 0x10,
                insns: 1,
                runs: 2
            })
        );
        assert_eq!(Block::parse("0x10 1"), None);
        assert_eq!(Block::parse("16 1 2"), None);
        assert_eq!(Block::parse("0x10 1 2 3 4"), None);
    }
}

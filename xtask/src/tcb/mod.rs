//! `cargo xtask tcb`: measures the trusted base of every image (DESIGN.md, principle 4).
//!
//! For each image: the lines of our own code and of the dependency code compiled into it,
//! split into groups (hypervisor core / guest platform, or unikernel runtime / qube), assembly
//! lines, the unsafe sites in our code, the ELF's section sizes and the linked text bytes of
//! each crate.
//!
//! Each image is built on its own (see `cargo.rs`), so its crates have exactly the features
//! that image enables. The files counted are the ones rustc read for each crate linked into it
//! (its dep-info); within them, `strip.rs` drops what the crate's cfgs compile out, and counts
//! test code (`#[cfg(test)]`, `#[test]`, and the module files they declare) apart. What is in
//! cargo's `<bin>.d` but in no linked crate is reported as a build input. The text bytes come
//! from the linked ELF's symbols (`symbols.rs`), so code that is compiled but not linked shows.

mod cargo;
mod cfg;
mod count;
mod depinfo;
mod elfsize;
mod invoke;
mod render;
mod report;
mod strip;
mod symbols;
mod unsafety;

pub use report::TcbReport;

use report::{GENERATED, ImageReport, Role};

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// One image to measure.
#[derive(Clone, Debug)]
pub struct TcbImage {
    /// The name shown in the report (`hypervisor`, `net`, ...).
    pub name: String,
    /// Its cargo package.
    pub package: String,
    /// Its binary target (the ELF's name).
    pub bin: String,
}

/// Where the guest platform of the hypervisor lives (what it adds to run Linux qubes): the
/// pure crate (virtual devices, the Linux boot protocol, the ACPI tables) and the one
/// privileged module that feeds it the guest's exits. A source directory and the module path
/// its code has in symbols; the rest of our code in the hypervisor is the core. A test checks
/// each entry against the tree.
const PLATFORM: [(&str, &str); 2] = [
    ("hypervisor/platform", "bulkhead_platform"),
    (
        "hypervisor/src/guest/linux",
        "bulkhead_hypervisor::guest::linux",
    ),
];
/// The unikernel runtime; unikernel code outside it belongs to the qube.
const RUNTIME_DIR: &str = "unikernels/runtime";
const UNIKERNELS_DIR: &str = "unikernels";

/// Builds each image on its own under `target/tcb/` and measures it; `workspace_root` decides
/// which files are ours.
pub fn measure(workspace_root: &Path, target: &Path, images: &[TcbImage]) -> Result<TcbReport> {
    let root = workspace_root
        .canonicalize()
        .with_context(|| format!("workspace root {}", workspace_root.display()))?;
    let built = cargo::build_all(&root, target, images)?;
    let toolchain = toolchain_symbols().unwrap_or_default();
    let mut cache = HashMap::new();
    let mut reports = Vec::new();
    for (image, units) in images.iter().zip(&built) {
        let report = measure_image(&root, &image.name, units, &toolchain, &mut cache)
            .with_context(|| format!("measuring image `{}`", image.name))?;
        reports.push(report);
    }
    let notes = vec![format!(
        "each image built on its own under {}",
        rel(&root, &cargo::image_target_dir(target, "<image>"))
    )];
    Ok(TcbReport {
        images: reports,
        notes,
    })
}

/// The symbols the toolchain's prebuilt `compiler_builtins` defines (`__udivti3`, ...).
fn toolchain_symbols() -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for entry in std::fs::read_dir(invoke::target_libdir()?)? {
        let path = entry?.path();
        let name = invoke::file_name(&path);
        if name.starts_with("libcompiler_builtins-") && name.ends_with(".rlib") {
            out.extend(symbols::rlib_definitions(&path)?);
        }
    }
    Ok(out)
}

fn canonical(path: PathBuf) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| lexical(&path))
}

/// `a/b/../c` -> `a/c`, for paths that do not exist (so cannot be canonicalised).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

type Cache = HashMap<(PathBuf, cfg::Cfg), report::Measured>;

fn measure_image(
    root: &Path,
    name: &str,
    built: &cargo::ImageUnits,
    toolchain: &HashSet<String>,
    cache: &mut Cache,
) -> Result<ImageReport> {
    // Each file to the first unit that read it; each unit's first file is its crate root.
    let mut files: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut roots = HashSet::new();
    for (i, unit) in built.units.iter().enumerate() {
        let listed = depinfo::read(&unit.dep_info, root)?;
        if let Some(first) = listed.first() {
            roots.insert(canonical(first.clone()));
        }
        for f in listed {
            files.entry(canonical(f)).or_insert(i);
        }
    }
    let (inputs, missing): (Vec<PathBuf>, Vec<PathBuf>) = depinfo::read(&built.dep_info, root)?
        .into_iter()
        .map(canonical)
        .filter(|f| !files.contains_key(f))
        .partition(|f| f.exists());
    let sorted = |v: Vec<PathBuf>| -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|f| rel(root, f)).collect();
        v.sort();
        v.dedup();
        v
    };

    let is_qube = |f: &Path| {
        f.starts_with(root.join(UNIKERNELS_DIR)) && !f.starts_with(root.join(RUNTIME_DIR))
    };
    let role = if files
        .iter()
        .any(|(f, &i)| built.units[i].local && is_qube(f))
    {
        Role::Unikernel
    } else {
        Role::Hypervisor
    };
    let mut builder = report::Builder::new(name, &built.elf, role);
    for unit in &built.units {
        builder.add_crate(&unit.package, unit.local);
    }
    let add =
        |builder: &mut report::Builder, path: &Path, unit: &cargo::Unit, m: &report::Measured| {
            if !unit.local {
                builder.dependency(&path.display().to_string(), &unit.package, m);
            } else if in_target_dir(path) {
                builder.own(&rel(root, path), &unit.package, GENERATED, m);
            } else {
                builder.own(&rel(root, path), &unit.package, group(role, root, path), m);
            }
        };
    let mut compiled_out = Vec::new();
    for (path, &i) in &files {
        let unit = &built.units[i];
        let dir_owner = strip::owns_dir(path) || roots.contains(path);
        let m = cache
            .entry((path.clone(), unit.cfg.clone()))
            .or_insert_with(|| report::Measured::of(path, &unit.cfg, dir_owner));
        compiled_out.extend(
            m.removed_mods
                .iter()
                .map(|(p, why)| (canonical(p.clone()), *why, i)),
        );
        add(&mut builder, path, unit, m);
    }
    // Module files behind a cfg that does not hold (test modules, mostly), followed down.
    let mut seen = HashSet::new();
    while let Some((path, why, i)) = compiled_out.pop() {
        if files.contains_key(&path) || !seen.insert(path.clone()) {
            continue;
        }
        let m = report::Measured::compiled_out(&path, why);
        compiled_out.extend(
            m.removed_mods
                .iter()
                .map(|(p, why)| (canonical(p.clone()), *why, i)),
        );
        add(&mut builder, &path, &built.units[i], &m);
    }

    attribute_text(root, role, built, toolchain, &mut builder)?;
    let sizes = elfsize::read(&built.elf)?;
    let mut report = builder.finish(sizes, sorted(inputs), built.build_time.clone());
    report.missing_build_inputs = sorted(missing);
    Ok(report)
}

/// Gives each text symbol of the image's ELF to a crate (and, for ours, a group).
fn attribute_text(
    root: &Path,
    role: Role,
    built: &cargo::ImageUnits,
    toolchain: &HashSet<String>,
    builder: &mut report::Builder,
) -> Result<()> {
    let text = symbols::read(&built.elf)?;
    let mut by_name: HashMap<&str, Vec<&cargo::Unit>> = HashMap::new();
    for unit in &built.units {
        by_name
            .entry(unit.crate_name.as_str())
            .or_default()
            .push(unit);
    }
    for units in by_name.values().filter(|u| u.len() > 1) {
        let names: Vec<String> = units.iter().map(|u| u.package.clone()).collect();
        builder.same_name(&names);
    }
    // Where symbols are defined: for unmangled names, and to tell apart crates that share a
    // name (symbols of generic code, instantiated elsewhere, still go to the first of them).
    let mut defined: HashMap<String, &cargo::Unit> = HashMap::new();
    for unit in &built.units {
        if let Some(rlib) = &unit.rlib {
            for s in symbols::rlib_definitions(rlib)? {
                defined.entry(s).or_insert(unit);
            }
        }
    }
    let bin = built.units.iter().find(|u| u.bin);
    let unit_group = |unit: &cargo::Unit, path: Option<&str>| -> Option<&'static str> {
        if !unit.local {
            return None;
        }
        if role == Role::Hypervisor && path.is_some_and(in_platform_module) {
            return Some("platform");
        }
        Some(match &unit.dir {
            Some(dir) => group(role, root, &dir.join("src")),
            None => group(role, root, root),
        })
    };
    for (symbol, bytes) in &text.symbols {
        let (unit, path) = match symbols::code_path(symbol) {
            Some(path) => {
                let krate = symbols::first_segment(&path);
                if symbols::is_toolchain(krate) {
                    builder.other_text(true, *bytes);
                    continue;
                }
                (
                    by_name.get(krate).and_then(|units| match units.as_slice() {
                        [one] => Some(*one),
                        _ => defined
                            .get(symbol)
                            .copied()
                            .filter(|d| units.iter().any(|u| std::ptr::eq(*u, *d)))
                            .or(units.first().copied()),
                    }),
                    Some(path),
                )
            }
            None if toolchain.contains(symbol) && !defined.contains_key(symbol) => {
                builder.other_text(true, *bytes);
                continue;
            }
            // Not in any rlib: the binary crate's own `#[no_mangle]` code and assembly.
            None => (defined.get(symbol).copied().or(bin), None),
        };
        match unit {
            Some(u) => builder.text(&u.package, unit_group(u, path.as_deref()), *bytes),
            None => builder.other_text(false, *bytes),
        }
    }
    builder.other_text(false, text.gaps);
    Ok(())
}

/// Whether a code path (`bulkhead_platform::boot::..`) lies in the guest platform.
fn in_platform_module(path: &str) -> bool {
    PLATFORM.iter().any(|(_, module)| {
        path.strip_prefix(module)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('<'))
    })
}

/// The own-code group a file belongs to.
fn group(role: Role, root: &Path, path: &Path) -> &'static str {
    match role {
        Role::Hypervisor if PLATFORM.iter().any(|(d, _)| path.starts_with(root.join(d))) => {
            "platform"
        }
        Role::Hypervisor => "core",
        Role::Unikernel
            if path.starts_with(root.join(UNIKERNELS_DIR))
                && !path.starts_with(root.join(RUNTIME_DIR)) =>
        {
            "qube"
        }
        Role::Unikernel => "runtime",
    }
}

/// Whether `path` is inside a cargo target directory (marked by its `CACHEDIR.TAG`): a file a
/// build script generated into `OUT_DIR`.
fn in_target_dir(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .any(|d| d.join("CACHEDIR.TAG").is_file())
}

/// `path` relative to the workspace root when inside it.
fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

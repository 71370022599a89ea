//! `cargo xtask tcb`: measures the trusted base of every image (DESIGN.md, principle 4).
//!
//! For each image: the lines of our own code and of the dependency code compiled into it,
//! split into groups (hypervisor core / guest platform, or unikernel runtime / qube), assembly
//! lines, the unsafe sites in our code, and the ELF's section sizes.
//!
//! Where the file lists come from: cargo's `<bin>.d` lists the sources of our (path) crates,
//! including files read by `include_str!` (so `global_asm!(include_str!("x.s"))` shows up),
//! but also host-only build inputs (local `build.rs`, linker scripts and other
//! `rerun-if-changed` files) and never any registry crate. So [`measure`] asks cargo which
//! crates each image links (see `cargo.rs`) and reads rustc's per-crate dep-info files; what
//! is in `<bin>.d` but in no linked crate is reported as a build input. If cargo cannot be
//! asked (no workspace binary target makes the ELF, or the build fails), the image is measured
//! from `<bin>.d` alone: files under the workspace root are ours, the rest are dependencies,
//! and the report says dependencies were not measured.

mod cargo;
mod count;
mod depinfo;
mod elfsize;
mod invoke;
mod render;
mod report;
mod unsafety;

pub use report::TcbReport;

use report::{GENERATED, ImageReport, Role};

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One image to measure.
#[derive(Clone, Debug)]
pub struct TcbImage {
    /// The name shown in the report (`hypervisor`, `net`, ...).
    pub name: String,
    /// The ELF cargo built (`target/release/<bin>`).
    pub elf: PathBuf,
    /// cargo's dep-info file next to it (`target/release/<bin>.d`).
    pub dep_info: PathBuf,
}

/// Where the guest platform of the hypervisor lives (what it adds to run Linux qubes: the
/// virtual devices, the Linux loader and boot structures, the ACPI tables, the exit glue);
/// the rest of our code is the core.
const PLATFORM_DIRS: [&str; 4] = [
    "hypervisor/platform",
    "hypervisor/src/linux",
    "hypervisor/core/src/linux",
    "hypervisor/core/src/acpi_build",
];
/// The unikernel runtime; unikernel code outside it belongs to the qube.
const RUNTIME_DIR: &str = "unikernels/runtime";
const UNIKERNELS_DIR: &str = "unikernels";

/// Measures `images`; `workspace_root` decides which files are ours.
pub fn measure(workspace_root: &Path, images: &[TcbImage]) -> Result<TcbReport> {
    let root = workspace_root
        .canonicalize()
        .with_context(|| format!("workspace root {}", workspace_root.display()))?;
    let mut notes = Vec::new();
    let discovered = cargo::discover(&root, images).unwrap_or_else(|e| {
        notes.push(format!(
            "cargo could not list the crates compiled in: {e:#}"
        ));
        images
            .iter()
            .map(|_| Err(anyhow::anyhow!("see above")))
            .collect()
    });
    let mut cache = HashMap::new();
    let mut reports = Vec::new();
    for (image, units) in images.iter().zip(discovered) {
        let units = units
            .inspect_err(|e| {
                let d = invoke::file_name(&image.dep_info);
                notes.push(format!(
                    "{}: measured from cargo's {d} only ({e:#})",
                    image.name
                ));
            })
            .ok();
        let report = measure_image(&root, image, units, &mut cache)
            .with_context(|| format!("measuring image `{}`", image.name))?;
        reports.push(report);
    }
    Ok(TcbReport {
        images: reports,
        notes,
    })
}

/// Who a file belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Own,
    Dep(String),
}

fn canonical(path: PathBuf) -> PathBuf {
    path.canonicalize().unwrap_or(path)
}

fn measure_image(
    root: &Path,
    image: &TcbImage,
    units: Option<cargo::ImageUnits>,
    cache: &mut HashMap<PathBuf, report::Measured>,
) -> Result<ImageReport> {
    let cargo_files: Vec<PathBuf> = depinfo::read(&image.dep_info, root)?
        .into_iter()
        .map(canonical)
        .collect();
    let mut files: BTreeMap<PathBuf, Owner> = BTreeMap::new();
    let mut build_inputs = Vec::new();
    let measured_deps = units.is_some();
    let mut build_time = Vec::new();
    match units {
        Some(units) => {
            for unit in &units.units {
                let owner = if unit.local {
                    Owner::Own
                } else {
                    Owner::Dep(unit.package.clone())
                };
                for f in depinfo::read(&unit.dep_info, root)? {
                    files.entry(canonical(f)).or_insert_with(|| owner.clone());
                }
            }
            let linked: HashSet<&PathBuf> = files.keys().collect();
            build_inputs = cargo_files
                .iter()
                .filter(|f| !linked.contains(f))
                .map(|f| rel(root, f))
                .collect();
            build_time = units.build_time;
        }
        None => {
            for f in cargo_files {
                let owner = if f.starts_with(root) {
                    Owner::Own
                } else {
                    Owner::Dep(crate_dir(&f))
                };
                files.entry(f).or_insert(owner);
            }
        }
    }

    let role = if files.iter().any(|(f, o)| {
        *o == Owner::Own
            && f.starts_with(root.join(UNIKERNELS_DIR))
            && !f.starts_with(root.join(RUNTIME_DIR))
    }) {
        Role::Unikernel
    } else {
        Role::Hypervisor
    };
    let mut builder = report::Builder::new(&image.name, &image.elf, role, measured_deps);
    for (path, owner) in files {
        let m = cache
            .entry(path.clone())
            .or_insert_with(|| report::Measured::of(&path));
        match owner {
            Owner::Own if in_target_dir(&path) => builder.own(&rel(root, &path), GENERATED, m),
            Owner::Own => builder.own(&rel(root, &path), group(role, root, &path), m),
            Owner::Dep(name) => builder.dependency(&path.display().to_string(), &name, m),
        }
    }
    let sizes = elfsize::read(&image.elf)?;
    Ok(builder.finish(sizes, build_inputs, build_time))
}

/// The own-code group a file belongs to.
fn group(role: Role, root: &Path, path: &Path) -> &'static str {
    match role {
        Role::Hypervisor if PLATFORM_DIRS.iter().any(|d| path.starts_with(root.join(d))) => {
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

/// The crate a dependency file belongs to when cargo could not say: the name of the nearest
/// directory holding a `Cargo.toml` (`heapless-0.9.3` in the registry).
fn crate_dir(path: &Path) -> String {
    path.ancestors()
        .skip(1)
        .find(|d| d.join("Cargo.toml").is_file())
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "(unknown)".to_string())
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

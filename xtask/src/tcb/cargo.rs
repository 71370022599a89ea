//! Building each image on its own and asking cargo which crates went into it.
//!
//! Each image is built by its own `cargo build --release -p <package> --bin <bin>` into its own
//! target directory (`target/tcb/<image>`), so cargo unifies features only within that image,
//! as if it were the only thing built: a placeholder does not carry the dependencies another
//! image enables. The build's JSON messages give each compiled unit with its enabled features,
//! its profile and the cfgs its build script set; `cargo metadata` gives the dependency graph.
//! An image's crates are its package plus everything reachable through normal dependencies,
//! not entering proc-macro crates; build scripts, proc macros and their dependencies run on the
//! build host and are reported as build-time only. Each unit's sources come from the dep-info
//! file rustc wrote next to its artifact (`deps/<crate>-<hash>.d`).

use super::TcbImage;
use super::cfg::Cfg;
use super::invoke::{self, Messages, Target};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One crate compiled into an image.
#[derive(Clone, Debug)]
pub struct Unit {
    /// `name-version`, like the crate's directory in the cargo registry.
    pub package: String,
    /// The crate's name in paths and symbols (`bulkhead_hvcore`).
    pub crate_name: String,
    /// A path package under the workspace root: our code.
    pub local: bool,
    /// The image's binary crate.
    pub bin: bool,
    /// rustc's dep-info file for this unit.
    pub dep_info: PathBuf,
    /// The directory of the package's `Cargo.toml`, if cargo metadata knows the package.
    pub dir: Option<PathBuf>,
    /// The cfgs it was compiled with (target, profile, features, build script).
    pub cfg: Cfg,
    /// Its rlib (libraries): where its unmangled symbols are defined.
    pub rlib: Option<PathBuf>,
}

/// One image, built.
#[derive(Clone, Debug, Default)]
pub struct ImageUnits {
    /// The ELF.
    pub elf: PathBuf,
    /// cargo's `<bin>.d` next to it: every path-crate source and build input.
    pub dep_info: PathBuf,
    /// The crates compiled into the image (including its own binary crate).
    pub units: Vec<Unit>,
    /// Crates compiled only to build it (build scripts, proc macros and their dependencies).
    pub build_time: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    source: Option<String>,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

/// The directory each image is built in, under the workspace's target directory.
pub fn image_target_dir(target: &Path, image: &str) -> PathBuf {
    target.join("tcb").join(image)
}

/// Builds every image on its own (into `target/tcb/<image>`) and lists its units.
pub fn build_all(root: &Path, target: &Path, images: &[TcbImage]) -> Result<Vec<ImageUnits>> {
    let args = ["metadata", "--format-version", "1", "--color", "never"];
    let meta: Metadata = serde_json::from_slice(&invoke::run(root, &args)?)
        .context("parsing `cargo metadata` output")?;
    let graph = Graph::new(&meta);
    let target_cfg = invoke::target_cfg(root)?;
    let mut out = Vec::new();
    for image in images {
        let package = meta
            .packages
            .iter()
            .filter(|p| meta.workspace_members.contains(&p.id))
            .find(|p| p.name == image.package)
            .with_context(|| format!("no workspace package `{}`", image.package))?;
        let dir = image_target_dir(target, &image.name);
        eprintln!(
            "tcb: building {} on its own into {}",
            image.name,
            dir.display()
        );
        let args = invoke::build_args(&image.package, &image.bin, &dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let messages = invoke::build(root, &args)
            .with_context(|| format!("building image `{}`", image.name))?;
        let built = invoke::parse_messages(&messages);
        let units = select(root, &graph, package, &image.bin, &built, &target_cfg)
            .with_context(|| format!("listing the crates of image `{}`", image.name))?;
        out.push(units);
    }
    Ok(out)
}

/// Picks the units of one image out of its build's messages.
fn select(
    root: &Path,
    graph: &Graph,
    package: &Package,
    bin: &str,
    built: &Messages,
    target_cfg: &Cfg,
) -> Result<ImageUnits> {
    let linked = graph.closure(&package.id, false);
    let all = graph.closure(&package.id, true);
    let mut result = ImageUnits::default();
    let mut build_time = BTreeSet::new();
    for a in &built.artifacts {
        let known = graph.packages.get(a.package_id.as_str()).copied();
        let display = match known {
            Some(p) => format!("{}-{}", p.name, p.version),
            None => invoke::id_display(&a.package_id, &a.target.name),
        };
        let kind = |k: &str| a.target.kind.iter().any(|x| x == k);
        let host_only = kind("proc-macro") || kind("custom-build");
        let is_lib = !host_only && a.target.kind.iter().any(|k| k.ends_with("lib"));
        let mut cfg = target_cfg
            .clone()
            .with_features(a.features.iter().map(String::as_str));
        if a.profile.debug_assertions {
            cfg.set("debug_assertions", None);
        }
        if let Some(script) = built.script_cfgs.get(&a.package_id) {
            cfg.extend(&Cfg::parse(script.iter().map(String::as_str)));
        }
        let unit = |dep_info: PathBuf, local: bool, bin: bool| Unit {
            package: display.clone(),
            crate_name: a.target.name.replace('-', "_"),
            local,
            bin,
            dep_info,
            dir: known.and_then(|p| p.manifest_path.parent().map(Path::to_path_buf)),
            cfg: cfg.clone(),
            rlib: a
                .filenames
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "rlib"))
                .cloned(),
        };
        // Crates cargo metadata does not know (a `-Zbuild-std` sysroot) are linked in.
        if is_lib && (known.is_none() || linked.contains(&a.package_id)) {
            let dep_info = invoke::lib_dep_info(&a.filenames)
                .with_context(|| format!("no rustc dep-info for `{display}`"))?;
            let local =
                known.is_some_and(|p| p.source.is_none() && p.manifest_path.starts_with(root));
            result.units.push(unit(dep_info, local, false));
        } else if a.package_id == package.id && kind("bin") && a.target.name == bin {
            let elf = a
                .executable
                .clone()
                .with_context(|| format!("cargo built `{bin}` but named no executable"))?;
            result
                .units
                .push(unit(invoke::bin_dep_info(&elf)?, true, true));
            result.dep_info = elf.with_file_name(format!("{bin}.d"));
            result.elf = elf;
        } else if all.contains(&a.package_id) {
            let what = match (kind("custom-build"), kind("proc-macro")) {
                (true, _) => " (build script)",
                (_, true) => " (proc macro)",
                _ => "",
            };
            build_time.insert(format!("{display}{what}"));
        }
    }
    if result.elf.as_os_str().is_empty() {
        bail!("cargo reported no binary `{bin}` in {}", package.name);
    }
    // In a fixed order (cargo reports units as they finish): the first unit that read a file
    // owns it.
    result
        .units
        .sort_by(|a, b| (!a.local, &a.package).cmp(&(!b.local, &b.package)));
    result.build_time = build_time.into_iter().collect();
    Ok(result)
}

/// The resolved dependency graph.
struct Graph<'m> {
    packages: HashMap<&'m str, &'m Package>,
    nodes: HashMap<&'m str, &'m Node>,
}

impl<'m> Graph<'m> {
    fn new(meta: &'m Metadata) -> Graph<'m> {
        Graph {
            packages: meta.packages.iter().map(|p| (p.id.as_str(), p)).collect(),
            nodes: meta
                .resolve
                .iter()
                .flat_map(|r| &r.nodes)
                .map(|n| (n.id.as_str(), n))
                .collect(),
        }
    }

    fn is_proc_macro(&self, id: &str) -> bool {
        self.packages.get(id).is_some_and(|p| {
            p.targets
                .iter()
                .any(|t| t.kind.iter().any(|k| k == "proc-macro"))
        })
    }

    /// Packages reachable from `start`: through normal dependencies not entering proc macros
    /// (what is linked), or with `all` through every non-dev dependency (what is built).
    fn closure(&self, start: &str, all: bool) -> HashSet<String> {
        let mut seen = HashSet::from([start.to_string()]);
        let mut todo = vec![start.to_string()];
        while let Some(id) = todo.pop() {
            let deps = self
                .nodes
                .get(id.as_str())
                .map(|n| n.deps.as_slice())
                .unwrap_or_default();
            for dep in deps {
                let kinds = || dep.dep_kinds.iter().map(|k| k.kind.as_deref());
                let follow = if all {
                    !kinds().all(|k| k == Some("dev"))
                } else {
                    kinds().any(|k| k.is_none()) && !self.is_proc_macro(&dep.pkg)
                };
                if follow && seen.insert(dep.pkg.clone()) {
                    todo.push(dep.pkg.clone());
                }
            }
        }
        seen
    }
}

//! Which crates are compiled into each image, asked of cargo.
//!
//! cargo's own `<bin>.d` lists the sources of path (workspace) crates only, plus local build
//! scripts and their `rerun-if-changed` files; registry crates are left out on purpose. So this
//! module asks cargo: `cargo metadata` for the dependency graph, and a repeat of the image build
//! with `--message-format=json` (a no-op when the images are fresh) for the exact units that
//! build produced. An image's crates are its package plus everything reachable through normal
//! dependencies, not entering proc-macro crates; build scripts, proc macros and their
//! dependencies run on the build host and are reported as build-time only. Each unit's sources
//! come from the dep-info file rustc wrote next to its artifact (`deps/<crate>-<hash>.d`).

use super::TcbImage;
use super::invoke::{self, Artifact, Target, file_name};
use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One crate compiled into an image.
#[derive(Clone, Debug)]
pub struct Unit {
    /// `name-version`, like the crate's directory in the cargo registry.
    pub package: String,
    /// A path package under the workspace root: our code.
    pub local: bool,
    /// rustc's dep-info file for this unit.
    pub dep_info: PathBuf,
}

/// What cargo says about one image.
#[derive(Clone, Debug, Default)]
pub struct ImageUnits {
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

/// Asks cargo about every image. The outer error means cargo could not be asked at all; an
/// inner one that this image could not be matched to cargo's units.
pub fn discover(root: &Path, images: &[TcbImage]) -> Result<Vec<Result<ImageUnits>>> {
    let args = ["metadata", "--format-version", "1", "--color", "never"];
    let meta: Metadata = serde_json::from_slice(&invoke::run(root, &args)?)
        .context("parsing `cargo metadata` output")?;
    let packages: Vec<Option<&Package>> = images
        .iter()
        .map(|image| owning_package(&meta, &image.elf))
        .collect();

    // One build per output directory, of every package built there, like the image build.
    let mut artifacts: HashMap<&Path, Vec<Artifact>> = HashMap::new();
    for image in images {
        let Some(dir) = image.elf.parent() else {
            continue;
        };
        if artifacts.contains_key(dir) {
            continue;
        }
        let names: BTreeSet<&str> = images
            .iter()
            .zip(&packages)
            .filter(|(i, _)| i.elf.parent() == Some(dir))
            .filter_map(|(_, p)| p.map(|p| p.name.as_str()))
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut args = invoke::build_args(dir)?;
        for name in names {
            args.extend(["-p".to_string(), name.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        artifacts.insert(dir, invoke::parse_messages(&invoke::run(root, &args)?));
    }

    let graph = Graph::new(&meta);
    let out = images.iter().zip(&packages).map(|(image, package)| {
        let package = package.with_context(|| {
            format!(
                "no workspace package has a binary target named `{}`",
                file_name(&image.elf)
            )
        })?;
        let built = image.elf.parent().and_then(|dir| artifacts.get(dir));
        let built =
            built.ok_or_else(|| anyhow!("cargo built nothing for {}", image.elf.display()))?;
        select(root, &graph, package, &image.elf, built)
    });
    Ok(out.collect())
}

/// Picks the units of one image out of a build's artifacts.
fn select(
    root: &Path,
    graph: &Graph,
    package: &Package,
    elf: &Path,
    artifacts: &[Artifact],
) -> Result<ImageUnits> {
    let linked = graph.closure(&package.id, false);
    let built = graph.closure(&package.id, true);
    let mut result = ImageUnits::default();
    let mut build_time = BTreeSet::new();
    for a in artifacts {
        let known = graph.packages.get(a.package_id.as_str()).copied();
        let display = match known {
            Some(p) => format!("{}-{}", p.name, p.version),
            None => invoke::id_display(&a.package_id, &a.target.name),
        };
        let kind = |k: &str| a.target.kind.iter().any(|x| x == k);
        let host_only = kind("proc-macro") || kind("custom-build");
        let is_lib = !host_only && a.target.kind.iter().any(|k| k.ends_with("lib"));
        // Crates cargo metadata does not know (a `-Zbuild-std` sysroot) are linked in.
        if is_lib && (known.is_none() || linked.contains(&a.package_id)) {
            let dep_info = invoke::lib_dep_info(&a.filenames)
                .with_context(|| format!("no rustc dep-info for `{display}`"))?;
            let local =
                known.is_some_and(|p| p.source.is_none() && p.manifest_path.starts_with(root));
            result.units.push(Unit {
                package: display,
                local,
                dep_info,
            });
        } else if a.package_id == package.id && kind("bin") {
            if a.target.name == file_name(elf) {
                let dep_info = invoke::bin_dep_info(elf)?;
                result.units.push(Unit {
                    package: display,
                    local: true,
                    dep_info,
                });
            }
        } else if built.contains(&a.package_id) {
            let what = match (kind("custom-build"), kind("proc-macro")) {
                (true, _) => " (build script)",
                (_, true) => " (proc macro)",
                _ => "",
            };
            build_time.insert(format!("{display}{what}"));
        }
    }
    if !result.units.iter().any(|u| u.local) {
        anyhow::bail!(
            "cargo reported no binary `{}` in {}",
            file_name(elf),
            package.name
        );
    }
    result.build_time = build_time.into_iter().collect();
    Ok(result)
}

/// The workspace member with a binary target named like the ELF.
fn owning_package<'m>(meta: &'m Metadata, elf: &Path) -> Option<&'m Package> {
    let bin = file_name(elf);
    let is_bin = |t: &Target| t.name == bin && t.kind.iter().any(|k| k == "bin");
    meta.packages
        .iter()
        .filter(|p| meta.workspace_members.contains(&p.id))
        .find(|p| p.targets.iter().any(is_bin))
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

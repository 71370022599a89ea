//! Running cargo and rustc for `cargo.rs` and finding the dep-info files rustc left next to
//! artifacts.

use super::cfg::Cfg;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A cargo target (as in `cargo metadata` and in build messages).
#[derive(Deserialize)]
pub struct Target {
    /// `lib`, `rlib`, `bin`, `proc-macro`, `custom-build`, ...
    pub kind: Vec<String>,
    /// The target's name (the binary's file name for `bin`).
    pub name: String,
}

/// One `compiler-artifact` message of `cargo build --message-format=json`.
#[derive(Deserialize)]
pub struct Artifact {
    /// The package, as `cargo metadata` names it.
    pub package_id: String,
    /// The target compiled.
    pub target: Target,
    /// The files produced (rlib and rmeta for libraries, the uplifted ELF for binaries).
    pub filenames: Vec<PathBuf>,
    /// The features enabled for this unit.
    #[serde(default)]
    pub features: Vec<String>,
    /// The profile it was compiled with.
    #[serde(default)]
    pub profile: Profile,
    /// The uplifted executable (binaries).
    #[serde(default)]
    pub executable: Option<PathBuf>,
}

/// The part of an artifact's profile that sets cfgs.
#[derive(Deserialize, Default)]
pub struct Profile {
    /// `cfg(debug_assertions)`.
    #[serde(default)]
    pub debug_assertions: bool,
}

/// One `build-script-executed` message.
#[derive(Deserialize)]
struct ScriptRun {
    package_id: String,
    #[serde(default)]
    cfgs: Vec<String>,
}

/// What one build reported.
#[derive(Default)]
pub struct Messages {
    /// Every compiled unit.
    pub artifacts: Vec<Artifact>,
    /// The `cargo:rustc-cfg` values of each package's build script, by package id.
    pub script_cfgs: HashMap<String, Vec<String>>,
}

/// The last component of a path, lossily as a string.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `registry+https://..#name@1.2.3` -> `name-1.2.3`; `path+file:///x/core#0.0.0` -> `core-0.0.0`.
pub fn id_display(id: &str, target_name: &str) -> String {
    let fragment = id.rsplit('#').next().unwrap_or(id);
    match fragment.split_once('@') {
        Some((name, version)) => format!("{name}-{version}"),
        None => format!("{target_name}-{fragment}"),
    }
}

/// The `cargo build` arguments of one image built on its own into `target_dir`.
pub fn build_args(package: &str, bin: &str, target_dir: &Path) -> Vec<String> {
    [
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
        "--bin",
        bin,
        "--target-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([target_dir.display().to_string()])
    .collect()
}

/// Reads the compiler-artifact and build-script-executed messages of a build.
pub fn parse_messages(stdout: &[u8]) -> Messages {
    let mut out = Messages::default();
    for line in String::from_utf8_lossy(stdout).lines() {
        if line.contains("\"reason\":\"compiler-artifact\"") {
            out.artifacts.extend(serde_json::from_str(line).ok());
        } else if line.contains("\"reason\":\"build-script-executed\"")
            && let Ok(run) = serde_json::from_str::<ScriptRun>(line)
        {
            out.script_cfgs.insert(run.package_id, run.cfgs);
        }
    }
    out
}

/// The cfgs rustc sets for the host target in the release profile: `rustc --print cfg` with
/// the workspace's `panic` setting and without debug assertions (added per unit when its
/// profile has them).
pub fn target_cfg(root: &Path) -> Result<Cfg> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let manifest: toml::Table = toml::from_str(&manifest).context("parsing Cargo.toml")?;
    let panic = manifest
        .get("profile")
        .and_then(|p| p.get("release"))
        .and_then(|r| r.get("panic"))
        .and_then(|p| p.as_str())
        .unwrap_or("unwind");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(&rustc)
        .args(["--print", "cfg", "-C", "debug-assertions=off", "-C"])
        .arg(format!("panic={panic}"))
        .output()
        .with_context(|| format!("running `{rustc} --print cfg`"))?;
    if !out.status.success() {
        bail!("`{rustc} --print cfg` failed");
    }
    Ok(Cfg::parse(String::from_utf8_lossy(&out.stdout).lines()))
}

/// The directory of the toolchain's prebuilt libraries for the host (`core`, `alloc`,
/// `compiler_builtins`).
pub fn target_libdir() -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir"])
        .output()
        .with_context(|| format!("running `{rustc} --print target-libdir`"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `deps/libfoo-<hash>.rlib` -> `deps/foo-<hash>.d`.
pub fn lib_dep_info(filenames: &[PathBuf]) -> Option<PathBuf> {
    filenames.iter().find_map(|f| {
        let stem = f.file_stem()?.to_str()?;
        let d = f.with_file_name(format!("{}.d", stem.strip_prefix("lib").unwrap_or(stem)));
        d.exists().then_some(d)
    })
}

/// cargo's `<profile>/<bin>` is a hard link (or copy) of `deps/<crate>-<hash>`; rustc's
/// dep-info for the binary crate is that file plus `.d`.
pub fn bin_dep_info(elf: &Path) -> Result<PathBuf> {
    let deps = elf.with_file_name("deps");
    let prefix = format!("{}-", file_name(elf).replace('-', "_"));
    let want = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    for entry in std::fs::read_dir(&deps).with_context(|| format!("listing {}", deps.display()))? {
        let path = entry?.path();
        let name = file_name(&path);
        if name.starts_with(&prefix) && !name.contains('.') {
            let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == want.len() as u64)
                && std::fs::read(&path).is_ok_and(|b| b == want);
            let d = path.with_file_name(format!("{name}.d"));
            if same && d.exists() {
                return Ok(d);
            }
        }
    }
    bail!(
        "no rustc dep-info in {} for {}",
        deps.display(),
        elf.display()
    )
}

/// Runs a cargo build, its progress and errors shown; returns its (JSON) stdout.
pub fn build(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running `{cargo}`"))?;
    if !out.status.success() {
        bail!("`cargo {}` failed (see its errors above)", args.join(" "));
    }
    Ok(out.stdout)
}

/// Runs cargo and returns its stdout.
pub fn run(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("running `{cargo}`"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("`cargo {}` failed:\n{}", args.join(" "), tail.join("\n"));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_ids_display_as_registry_directories() {
        let id = "registry+https://github.com/rust-lang/crates.io-index#heapless@0.9.3";
        assert_eq!(id_display(id, "heapless"), "heapless-0.9.3");
        assert_eq!(
            id_display("path+file:///r/lib/core#0.0.0", "core"),
            "core-0.0.0"
        );
    }

    #[test]
    fn messages_keep_only_artifacts() {
        let out = br#"{"reason":"compiler-artifact","package_id":"p#a@1.0.0","target":{"kind":["lib"],"name":"a"},"filenames":["/t/deps/liba-1.rlib"],"fresh":true}
{"reason":"build-script-executed","package_id":"p#a@1.0.0","cfgs":[]}
{"reason":"build-finished","success":true}
"#;
        let got = parse_messages(out);
        assert_eq!(got.artifacts.len(), 1);
        assert_eq!(got.artifacts[0].target.name, "a");
        assert!(got.script_cfgs["p#a@1.0.0"].is_empty());
    }
}

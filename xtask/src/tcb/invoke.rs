//! Running cargo for `cargo.rs` and finding the dep-info files rustc left next to artifacts.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// `cargo build` arguments that reproduce the layout of an ELF's directory:
/// `<target-dir>/[<triple>/]<profile>/<bin>`.
pub fn build_args(profile_dir: &Path) -> Result<Vec<String>> {
    let profile = file_name(profile_dir);
    let base = profile_dir
        .parent()
        .context("ELF directory has no parent")?;
    let (target_dir, triple) = if base.join("CACHEDIR.TAG").exists() {
        (base, None)
    } else if let Some(up) = base.parent().filter(|up| up.join("CACHEDIR.TAG").exists()) {
        (up, Some(file_name(base)))
    } else {
        bail!(
            "{} is not inside a cargo target directory",
            profile_dir.display()
        );
    };
    let mut args = vec![
        "build".to_string(),
        "--message-format=json-render-diagnostics".to_string(),
    ];
    match profile.as_str() {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => args.extend(["--profile".into(), other.to_string()]),
    }
    if let Some(triple) = triple {
        args.extend(["--target".into(), triple]);
    }
    args.extend(["--target-dir".into(), target_dir.display().to_string()]);
    Ok(args)
}

pub fn parse_messages(stdout: &[u8]) -> Vec<Artifact> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
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
{"reason":"build-script-executed","package_id":"p#a@1.0.0"}
{"reason":"build-finished","success":true}
"#;
        let got = parse_messages(out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].target.name, "a");
    }
}

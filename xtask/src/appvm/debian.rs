//! Debian packages for the template: find the cloud kernel's current package name, download
//! a package's .deb into the cache with `apt-get download`, and unpack it with `dpkg-deb -x`.
//! Nothing is installed on the host.

use crate::deps;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage that always depends on the current cloud kernel.
pub const KERNEL_META: &str = "linux-image-cloud-amd64";
/// The statically linked busybox.
pub const BUSYBOX: &str = "busybox-static";

/// The kernel package `apt-cache depends <meta>` names (`Depends: linux-image-...`).
pub fn parse_kernel_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .map(str::to_string)
}

/// The commands a person runs to get `package` into `cache` by hand.
pub fn manual_commands(package: &str, cache: &Path) -> String {
    format!(
        "  sudo apt-get update\n  cd {} && apt-get download {package}",
        cache.display()
    )
}

/// The name of the current cloud kernel package, running `apt-get update` first (as root)
/// only when apt knows nothing about the metapackage yet.
pub fn kernel_package(cache: &Path) -> Result<String> {
    if deps::find_program("apt-cache").is_none() {
        bail!(
            "apt-cache is missing: this needs a Debian (12) host, or pass --kernel-deb FILE / \
             --kernel FILE\n  on Debian:\n{}",
            manual_commands(KERNEL_META, cache)
        );
    }
    if let Some(p) = depends_of(KERNEL_META)? {
        return Ok(p);
    }
    if !deps::is_root() {
        bail!(
            "apt does not know {KERNEL_META} (no package lists?); run:\n{}\n  then pass \
             --kernel-deb {}/linux-image-...-cloud-amd64_....deb",
            manual_commands(KERNEL_META, cache),
            cache.display()
        );
    }
    run(Command::new("apt-get").arg("update"), "apt-get update")?;
    depends_of(KERNEL_META)?
        .with_context(|| format!("apt-cache depends {KERNEL_META} names no kernel package"))
}

fn depends_of(meta: &str) -> Result<Option<String>> {
    let out = Command::new("apt-cache")
        .args(["depends", meta])
        .output()
        .context("running apt-cache")?;
    Ok(parse_kernel_depends(&String::from_utf8_lossy(&out.stdout)))
}

/// The cached .deb of `package` (`<package>_<version>_<arch>.deb`), if any.
pub fn cached_deb(cache: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .collect();
    found.sort();
    found.pop()
}

/// The .deb of `package` in `cache`, downloaded once.
pub fn download(cache: &Path, package: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    if let Some(deb) = cached_deb(cache, package) {
        println!("      cached: {}", deb.display());
        return Ok(deb);
    }
    if deps::find_program("apt-get").is_none() {
        bail!(
            "apt-get is missing; get {package} by hand:\n{}",
            manual_commands(package, cache)
        );
    }
    println!(
        "      $ cd {} && apt-get download {package}",
        cache.display()
    );
    let status = Command::new("apt-get")
        .args(["download", package])
        .current_dir(cache)
        .status()
        .context("running apt-get download")?;
    if !status.success() {
        let update = if deps::is_root() {
            String::new()
        } else {
            " (as root, xtask would run apt-get update itself)".to_string()
        };
        bail!(
            "apt-get download {package} failed ({status}){update}; by hand:\n{}",
            manual_commands(package, cache)
        );
    }
    cached_deb(cache, package).with_context(|| format!("apt-get download left no {package} .deb"))
}

/// Unpacks `deb` into `<cache>/<deb stem>/` with `dpkg-deb -x`, once.
pub fn extract(deb: &Path, cache: &Path) -> Result<PathBuf> {
    let stem = deb
        .file_stem()
        .and_then(|s| s.to_str())
        .context("a .deb without a name")?;
    let root = cache.join(format!("{stem}.root"));
    let done = root.join(".extracted");
    if done.is_file() {
        return Ok(root);
    }
    if deps::find_program("dpkg-deb").is_none() {
        bail!("dpkg-deb is missing: {}", deps::install_hint(&["dpkg"]));
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&root)?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root),
        &format!("dpkg-deb -x {} {}", deb.display(), root.display()),
    )?;
    std::fs::write(&done, b"")?;
    Ok(root)
}

fn run(cmd: &mut Command, line: &str) -> Result<()> {
    println!("      $ {line}");
    let status = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_from_apt_cache_depends() {
        let text = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_kernel_depends(text).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(parse_kernel_depends("linux-image-cloud-amd64\n"), None);
        assert_eq!(
            parse_kernel_depends(
                "x\n  Depends: libc6\n  Depends: linux-image-6.12.1-cloud-amd64\n"
            )
            .as_deref(),
            Some("linux-image-6.12.1-cloud-amd64")
        );
    }

    #[test]
    fn finds_the_cached_deb() {
        let dir = std::env::temp_dir().join(format!("appvm-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(cached_deb(&dir, "busybox-static"), None);
        std::fs::write(dir.join("busybox-static_1.35_amd64.deb"), b"").unwrap();
        std::fs::write(dir.join("busybox_1.35_amd64.deb"), b"").unwrap();
        assert_eq!(
            cached_deb(&dir, "busybox-static"),
            Some(dir.join("busybox-static_1.35_amd64.deb"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

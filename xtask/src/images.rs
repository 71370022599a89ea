//! The freestanding images xtask knows how to build: the hypervisor and the unikernels.
//!
//! The requested unikernels are built by one `cargo build --release -p .. -p ..` in the
//! workspace root, into the workspace's own `target/` (whatever `CARGO_TARGET_DIR` xtask
//! itself was built with), so cargo shares one dependency graph and one lock. The hypervisor
//! is built by a cargo invocation of its own: cargo unifies the features of a crate across
//! the packages of one invocation, and the unikernels turn on `bulkhead-abi/proto` (serde,
//! heapless, postcard), which the hypervisor image must not link. A system only needs the
//! hypervisor and the images it names, so an image that does not build yet only breaks the
//! systems that use it.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What an image is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The hypervisor ELF (QEMU `-kernel`, GRUB `multiboot2`).
    Hypervisor,
    /// A unikernel that runs in a qube (an entry of the boot bundle).
    Unikernel,
}

/// One buildable image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// Short name: what system descriptions and bundle entries call it.
    pub name: &'static str,
    /// Cargo package.
    pub package: &'static str,
    /// Binary target inside the package (the ELF's file name).
    pub bin: &'static str,
    /// What it is for.
    pub role: Role,
}

/// The hypervisor.
pub const HYPERVISOR: Image = Image {
    name: "hypervisor",
    package: "bulkhead-hypervisor",
    bin: "bulkhead-hypervisor",
    role: Role::Hypervisor,
};

const fn unikernel(name: &'static str, package: &'static str) -> Image {
    Image {
        name,
        package,
        bin: name,
        role: Role::Unikernel,
    }
}

/// Every image, hypervisor first.
pub const ALL: &[Image] = &[
    HYPERVISOR,
    unikernel("net", "bulkhead-net"),
    unikernel("firewall", "bulkhead-firewall"),
    unikernel("usb", "bulkhead-usb"),
    unikernel("gui", "bulkhead-gui"),
    unikernel("testing", "bulkhead-testing"),
];

/// Finds an image by its short name, its package or its binary name.
pub fn find(name: &str) -> Option<&'static Image> {
    ALL.iter()
        .find(|i| i.name == name || i.package == name || i.bin == name)
}

/// Finds a unikernel image a system description names, or says which names exist.
pub fn unikernel_named(name: &str) -> Result<&'static Image> {
    match find(name) {
        Some(image) if image.role == Role::Unikernel => Ok(image),
        _ => {
            let known: Vec<&str> = ALL
                .iter()
                .filter(|i| i.role == Role::Unikernel)
                .map(|i| i.name)
                .collect();
            bail!("unknown image `{name}` (xtask knows: {})", known.join(", "))
        }
    }
}

/// A built image on disk.
#[derive(Clone, Debug)]
pub struct Built {
    /// Which image.
    pub image: Image,
    /// The ELF.
    pub elf: PathBuf,
    #[allow(dead_code, reason = "read by the TCB count")]
    /// cargo's dep-info file (`target/release/<bin>.d`): every source file compiled in.
    pub dep_info: PathBuf,
}

/// The target directory images are built into: the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    crate::workspace_root().join("target")
}

/// Where the release ELF of `image` lands.
pub fn elf_path(image: &Image) -> PathBuf {
    target_dir().join("release").join(image.bin)
}

/// The `cargo build` invocations for `images`: the hypervisor alone, then the unikernels
/// together (pure, for tests and for the error message).
pub fn cargo_invocations(images: &[&Image], target_dir: &Path) -> Vec<Vec<String>> {
    let (hypervisor, unikernels): (Vec<&Image>, Vec<&Image>) =
        images.iter().partition(|i| i.role == Role::Hypervisor);
    [hypervisor, unikernels]
        .into_iter()
        .filter(|group| !group.is_empty())
        .map(|group| {
            let mut args = vec!["build".to_string(), "--release".to_string()];
            for image in group {
                args.push("-p".to_string());
                args.push(image.package.to_string());
            }
            args.push("--target-dir".to_string());
            args.push(target_dir.display().to_string());
            args
        })
        .collect()
}

/// Builds every known image.
#[allow(dead_code, reason = "for verbs that need every image (tcb, test)")]
pub fn build_all() -> Result<Vec<Built>> {
    let all: Vec<&Image> = ALL.iter().collect();
    build(&all)
}

/// Builds `images` (see [`cargo_invocations`]); returns them in the same order.
pub fn build(images: &[&Image]) -> Result<Vec<Built>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = crate::workspace_root();
    let names: Vec<&str> = images.iter().map(|i| i.name).collect();
    for args in cargo_invocations(images, &target_dir()) {
        let status = Command::new(&cargo)
            .args(&args)
            .current_dir(&root)
            .status()
            .with_context(|| format!("running `{cargo}`"))?;
        if !status.success() {
            bail!(
                "building images failed ({}): {cargo} {} (see cargo's errors above)",
                names.join(", "),
                args.join(" ")
            );
        }
    }
    images.iter().map(|image| found(image)).collect()
}

fn found(image: &Image) -> Result<Built> {
    let elf = elf_path(image);
    let dep_info = elf.with_file_name(format!("{}.d", image.bin));
    let head = std::fs::read(&elf).with_context(|| {
        format!(
            "cargo built `{}` but {} is missing",
            image.name,
            elf.display()
        )
    })?;
    if !head.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF file", elf.display());
    }
    Ok(Built {
        image: *image,
        elf,
        dep_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_images_by_any_name() {
        assert_eq!(find("net").unwrap().package, "bulkhead-net");
        assert_eq!(find("bulkhead-gui").unwrap().bin, "gui");
        assert_eq!(find("bulkhead-hypervisor").unwrap().role, Role::Hypervisor);
        assert!(find("nope").is_none());
        assert!(unikernel_named("hypervisor").is_err());
        let err = unikernel_named("wifi").unwrap_err().to_string();
        assert!(err.contains("net, firewall, usb, gui, testing"), "{err}");
    }

    #[test]
    fn the_hypervisor_is_built_apart_from_the_unikernels() {
        let images = [find("net").unwrap(), &HYPERVISOR, find("gui").unwrap()];
        let runs: Vec<String> = cargo_invocations(&images, Path::new("/w/target"))
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            runs,
            [
                "build --release -p bulkhead-hypervisor --target-dir /w/target",
                "build --release -p bulkhead-net -p bulkhead-gui --target-dir /w/target",
            ]
        );
        assert_eq!(
            cargo_invocations(&[find("usb").unwrap()], Path::new("/t")).len(),
            1
        );
    }
}

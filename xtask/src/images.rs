//! The freestanding images xtask knows how to build: the hypervisor and the unikernels.
//!
//! Each requested image is built by a `cargo build --release -p ..` of its own in the
//! workspace root, into the workspace's own `target/` (whatever `CARGO_TARGET_DIR` xtask
//! itself was built with): cargo unifies a crate's features across the packages of one
//! invocation, so images built together would link what the others ask for (the testing
//! image's smoltcp sockets into sys-net, `bulkhead-abi/proto` into the hypervisor). A system
//! only needs the hypervisor and the images it names, so an image that does not build yet
//! only breaks the systems that use it.

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
    // The admin qube (qrexec policy, docs/qrexec.md); its crate is on its way, so a system
    // that runs it builds once `unikernels/admin` exists.
    unikernel("admin", "bulkhead-admin"),
    // The storage qube: serves private volumes from its disk (docs/storage.md).
    unikernel("storage", "bulkhead-storage"),
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

/// The `cargo build` arguments that build `images` in one invocation (pure).
pub fn cargo_args(images: &[&Image], target_dir: &Path) -> Vec<String> {
    let mut args = vec!["build".to_string(), "--release".to_string()];
    for image in images {
        args.push("-p".to_string());
        args.push(image.package.to_string());
    }
    args.push("--target-dir".to_string());
    args.push(target_dir.display().to_string());
    args
}

/// The `cargo build` invocations for `images`, one per image (pure, for tests and for the
/// error message): cargo unifies a crate's features over the packages of one invocation, so
/// building them together would link into each image what another one asks for (the
/// testing image's smoltcp sockets into sys-net; `bulkhead-abi/proto` into the hypervisor).
/// Each image is then exactly what `cargo xtask tcb` measures.
pub fn cargo_invocations(images: &[&Image], target_dir: &Path) -> Vec<Vec<String>> {
    images
        .iter()
        .map(|image| cargo_args(&[image], target_dir))
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
    for args in cargo_invocations(images, &target_dir()) {
        run_cargo(images, &args)?;
    }
    images.iter().map(|image| found(image)).collect()
}

/// The images whose crates have test-only hooks behind a [`TEST_HOOKS_FEATURE`] feature
/// (sys-net: `dma-escape=`, `crash-after-ms=`; the gui qube: `crash-after-windows=`; the
/// storage qube: `corrupt-template=`). `build`, `run` and `iso` ship them without it; the
/// scenarios that need a hook boot [`build_with_test_hooks`]'s images.
pub const WITH_TEST_HOOKS: &[&str] = &["net", "gui", "storage"];

/// The cargo feature that compiles an image's test-only hooks in.
pub const TEST_HOOKS_FEATURE: &str = "test-hooks";

/// Where the test-hook builds go: a target directory of their own, so a hooked ELF never
/// replaces a shipped one in `target/release/`.
pub fn test_hooks_target_dir() -> PathBuf {
    target_dir().join("test-hooks")
}

/// The `cargo build` arguments for the test-hook build of `images` (pure): their packages
/// with [`TEST_HOOKS_FEATURE`] on, into `target_dir`.
pub fn test_hooks_cargo_args(images: &[&Image], target_dir: &Path) -> Vec<String> {
    let mut args = cargo_args(images, target_dir);
    let features: Vec<String> = images
        .iter()
        .map(|i| format!("{}/{TEST_HOOKS_FEATURE}", i.package))
        .collect();
    let at = args.len() - 2; // before `--target-dir DIR`
    args.splice(at..at, ["--features".to_string(), features.join(",")]);
    args
}

/// Builds `images` as [`build`] does, then those of [`WITH_TEST_HOOKS`] again with their
/// hooks into [`test_hooks_target_dir`], and returns the hooked ELFs in their place. For
/// the scenarios that drive a hook (`iommu-dma-escape`, `network-restart`) only.
pub fn build_with_test_hooks(images: &[&Image]) -> Result<Vec<Built>> {
    let mut built = build(images)?;
    let hooked: Vec<&Image> = images
        .iter()
        .copied()
        .filter(|i| WITH_TEST_HOOKS.contains(&i.name))
        .collect();
    if hooked.is_empty() {
        return Ok(built);
    }
    let dir = test_hooks_target_dir();
    run_cargo(&hooked, &test_hooks_cargo_args(&hooked, &dir))?;
    for b in built.iter_mut() {
        if hooked.contains(&&b.image) {
            *b = found_at(&b.image, &dir.join("release").join(b.image.bin))?;
        }
    }
    Ok(built)
}

fn run_cargo(images: &[&Image], args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = crate::workspace_root();
    let names: Vec<&str> = images.iter().map(|i| i.name).collect();
    let status = Command::new(&cargo)
        .args(args)
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
    Ok(())
}

fn found(image: &Image) -> Result<Built> {
    found_at(image, &elf_path(image))
}

fn found_at(image: &Image, elf: &Path) -> Result<Built> {
    let elf = elf.to_path_buf();
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
    fn every_image_is_built_on_its_own() {
        let images = [find("net").unwrap(), &HYPERVISOR];
        let runs: Vec<String> = cargo_invocations(&images, Path::new("/w/target"))
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            runs,
            [
                "build --release -p bulkhead-net --target-dir /w/target",
                "build --release -p bulkhead-hypervisor --target-dir /w/target",
            ]
        );
    }

    #[test]
    fn test_hooks_are_built_apart_with_their_feature() {
        let net = find("net").unwrap();
        let args = test_hooks_cargo_args(&[net], Path::new("/w/target/test-hooks"));
        assert_eq!(
            args.join(" "),
            "build --release -p bulkhead-net --features bulkhead-net/test-hooks \
             --target-dir /w/target/test-hooks"
        );
        assert!(!cargo_args(&[net], Path::new("/w/target")).contains(&"--features".into()));
        assert_ne!(test_hooks_target_dir(), target_dir());
        for name in WITH_TEST_HOOKS {
            assert_eq!(find(name).unwrap().role, Role::Unikernel);
        }
    }
}

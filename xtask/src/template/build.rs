//! Building a template's root image: debootstrap a Debian root file system, make it fit an
//! AppVM (hostname, mount points, marker), squash it with mksquashfs and append the
//! dm-verity hash tree. Needs root (debootstrap, and reading a root file system's files).

use super::{Recipe, mirror, verity};
use crate::deps::{self, Probe, Tool};
use crate::progress::{Steps, human_bytes};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What a build needs on the host.
pub const TOOLS: &[Tool] = &[
    Tool {
        what: "debootstrap",
        probe: Probe::Program("debootstrap"),
        package: "debootstrap",
    },
    Tool {
        what: "mksquashfs",
        probe: Probe::Program("mksquashfs"),
        package: "squashfs-tools",
    },
];

/// Number of progress steps [`build`] announces.
pub const STEPS: usize = 4;

/// The mount points an AppVM's init mounts over the read-only root, with their modes.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("home", 0o755),
    ("rw", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
];

/// The file that says a root file system is a finished template root (and which one).
pub const MARKER: &str = "etc/bulkhead-template";

/// A built image, its hash tree appended.
#[derive(Debug)]
pub struct Built {
    /// The image.
    pub image: PathBuf,
    /// Its dm-verity parameters.
    pub verity: verity::Verity,
    /// Debian packages installed in the root file system.
    pub packages: u64,
    /// Where they came from.
    pub mirror: String,
}

/// Builds `recipe` in `dir`: `rootfs/` (kept, and reused while complete), then `image`.
pub fn build(recipe: &Recipe, dir: &Path, image: &Path, steps: &mut Steps) -> Result<Built> {
    if !deps::is_root() {
        bail!(
            "building the {} template needs root (debootstrap); run:\n  sudo env \"PATH=$PATH\" \
             cargo xtask template {}",
            recipe.name,
            recipe.name
        );
    }
    deps::ensure(TOOLS)?;
    let rootfs = dir.join("rootfs");
    let mirror = mirror::find(recipe.suite);

    if rootfs.join(MARKER).is_file() {
        steps.next(&format!(
            "reusing the root file system in {}",
            rootfs.display()
        ));
    } else {
        steps.next(&format!(
            "debootstrap {} (minbase, with {})",
            recipe.suite,
            recipe.include.join(" ")
        ));
        match &mirror.from {
            Some(file) => println!("      mirror {} (from {})", mirror.uri, file.display()),
            None => println!(
                "      mirror {} (apt names no mirror for {}: Debian's default)",
                mirror.uri, recipe.suite
            ),
        }
        let started = Instant::now();
        super::remove::remove_tree(&rootfs)?;
        std::fs::create_dir_all(dir)?;
        if let Err(e) = debootstrap(recipe, &rootfs, &mirror.uri, &dir.join("debootstrap.log")) {
            super::remove::remove_tree(&rootfs).context("removing the partial root file system")?;
            return Err(e);
        }
        println!("      done in {:.1} s", started.elapsed().as_secs_f64());
    }

    steps.next("preparing the root file system for AppVMs");
    let removed = prepare(recipe, &rootfs)?;
    let packages = count_installed(&rootfs)?;
    println!(
        "      {packages} packages, {} ({} of .deb files removed), hostname {}, mount points, {MARKER}",
        human_bytes(tree_bytes(&rootfs)?),
        human_bytes(removed),
        recipe.hostname,
    );

    steps.next("mksquashfs (zstd)");
    let started = Instant::now();
    let partial = image.with_extension("img.partial");
    squash(&rootfs, &partial)?;
    let squashed = std::fs::metadata(&partial)?.len();
    println!(
        "      {} in {:.1} s",
        human_bytes(squashed),
        started.elapsed().as_secs_f64()
    );

    steps.next("appending the dm-verity hash tree (sha256, 4096-byte blocks)");
    let started = Instant::now();
    let verity = verity::append_hash_tree(&partial, verity::random_salt()?)?;
    std::fs::rename(&partial, image)
        .with_context(|| format!("renaming {} to {}", partial.display(), image.display()))?;
    let tree = std::fs::metadata(image)?.len() - verity.hash_start_block * verity::BLOCK as u64;
    println!(
        "      {} data blocks, {} of hash tree, in {:.1} s",
        verity.data_blocks,
        human_bytes(tree),
        started.elapsed().as_secs_f64()
    );
    Ok(Built {
        image: image.to_path_buf(),
        verity,
        packages,
        mirror: mirror.uri,
    })
}

/// Runs debootstrap into `rootfs`, its output into `log`.
fn debootstrap(recipe: &Recipe, rootfs: &Path, mirror: &str, log: &Path) -> Result<()> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", recipe.include.join(",")))
        .arg(recipe.suite)
        .arg(rootfs)
        .arg(mirror)
        .stdout(out.try_clone()?)
        .stderr(out);
    println!(
        "      $ {} (output in {})",
        command_line(&cmd),
        log.display()
    );
    let status = cmd.status().context("running debootstrap")?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "debootstrap failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Removes the downloaded packages, writes the hostname and the marker, makes the mount
/// points. Returns the bytes of .deb files removed.
fn prepare(recipe: &Recipe, rootfs: &Path) -> Result<u64> {
    let mut removed = 0;
    let archives = rootfs.join("var/cache/apt/archives");
    for entry in std::fs::read_dir(&archives).with_context(|| archives.display().to_string())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            removed += std::fs::metadata(&path)?.len();
            std::fs::remove_file(&path).with_context(|| path.display().to_string())?;
        }
    }
    write(
        &rootfs.join("etc/hostname"),
        &format!("{}\n", recipe.hostname),
    )?;
    for (name, mode) in MOUNT_POINTS {
        let path = rootfs.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} exists but is not a directory", path.display()),
            Err(_) => {
                std::fs::create_dir(&path).with_context(|| path.display().to_string())?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
            }
        }
    }
    // Whatever debootstrap left there, /tmp is sticky and writable by all.
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    write(&rootfs.join(MARKER), &format!("{}\n", recipe.name))?;
    Ok(removed)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Squashes `rootfs` into `image` (replacing it), with fixed time stamps where the
/// installed mksquashfs can set them, so the same tree gives the same image.
fn squash(rootfs: &Path, image: &Path) -> Result<()> {
    let help = Command::new("mksquashfs").arg("-help").output()?;
    let help = String::from_utf8_lossy(&help.stdout) + String::from_utf8_lossy(&help.stderr);
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(rootfs).arg(image).args([
        "-comp",
        "zstd",
        "-noappend",
        "-no-progress",
        "-quiet",
        "-all-root",
    ]);
    if fixed_times_supported(&help) {
        cmd.args(["-mkfs-time", "0", "-all-time", "0"]);
    }
    println!("      $ {}", command_line(&cmd));
    let out = cmd.output().context("running mksquashfs")?;
    if !out.status.success() {
        bail!(
            "mksquashfs failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Whether `mksquashfs -help` lists both `-mkfs-time` and `-all-time` (squashfs-tools 4.4
/// and later).
pub fn fixed_times_supported(help: &str) -> bool {
    let has = |opt: &str| help.split_whitespace().any(|w| w == opt);
    has("-mkfs-time") && has("-all-time")
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Packages dpkg lists as installed in `rootfs`.
fn count_installed(rootfs: &Path) -> Result<u64> {
    let status = rootfs.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status).with_context(|| status.display().to_string())?;
    Ok(text
        .lines()
        .filter(|l| l.trim_end() == "Status: install ok installed")
        .count() as u64)
}

/// The bytes of the regular files under `dir` (links not followed).
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_times_need_both_options() {
        let help = "-mkfs-time <time>\tset filesystem creation timestamp\n\
                    -all-time <time>\tset all file timestamps\n";
        assert!(fixed_times_supported(help));
        assert!(!fixed_times_supported(
            "-mkfs-time <time>\n-fstime <time>\n"
        ));
    }
}

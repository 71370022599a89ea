//! Removing a template's directory safely: a root file system may still have the host's
//! /proc, /sys or /dev mounted inside (a debootstrap that failed midway), and deleting
//! through such a mount would reach into the host's own file systems.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Removes `dir` and everything under it, after unmounting anything mounted inside (a
/// debootstrap that failed may leave /proc or /sys mounted there); refuses while something
/// stays mounted, as removing it would reach into the host's own file systems.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let dir = dir.canonicalize()?;
    let mounted = || {
        mounts_under(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            &dir,
        )
    };
    for point in mounted() {
        let _ = Command::new("umount").arg(&point).status();
    }
    let left = mounted();
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "still mounted inside {}: {}; unmount them, then remove it by hand",
            dir.display(),
            list.join(", ")
        );
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// The mount points in `mountinfo` (the format of /proc/self/mountinfo) at or under `dir`,
/// the deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Undoes the kernel's `\040`-style escapes of spaces, tabs, newlines and backslashes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], digits) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_inside_a_tree_deepest_first() {
        let info = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 22 0:5 / /t/root\\040fs rw - proc proc rw
41 40 0:6 / /t/root\\040fs/proc rw - proc proc rw
42 22 0:7 / /t/root\\040fs/sys rw - sysfs sys rw
43 22 0:8 / /t/root\\040fs-other rw - tmpfs tmpfs rw
";
        let found = mounts_under(info, Path::new("/t/root fs"));
        assert_eq!(found.len(), 3);
        assert_eq!(found[2], Path::new("/t/root fs"));
        assert!(found[..2].contains(&PathBuf::from("/t/root fs/proc")));
        assert!(mounts_under(info, Path::new("/elsewhere")).is_empty());
    }
}

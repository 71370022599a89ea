//! The template's root as the agent's `/` (`bulkhead.root=`). The agent serves the root
//! volume as `/dev/nbd1` under dm-verity (`crate::blockdev::verity`) and writes
//! `/run/root.ready`; `/init` mounts that device read-only under an overlay with an
//! in-memory upper layer at [`SYSROOT`], mounts `/home` at `/sysroot/home`, bind-mounts
//! `/dev`, `/proc`, `/sys` and `/run` into it, and writes `/run/root.mounted` (or
//! `/run/root.failed`).
//!
//! The agent waits for one of them ([`outcome`]) before it starts anything that runs
//! programs (the terminals, the qrexec services, a disposable's command: `crate::agent`),
//! then moves itself into the root ([`enter`]: `chroot` and `chdir`, for every thread), so
//! those programs run in the template's root. What it opened before (channel devices, the
//! TAP, the NBD sockets) stays open; the paths it uses afterwards (`/run/...`, `/dev/...`,
//! `/sys/...`, `/proc/...`) are the bind-mounted ones, which [`check_binds`] makes sure of
//! first. A root that failed, or that `/init` says nothing about in time, leaves the agent in
//! the initramfs: the qube works on without the template.

use crate::blockdev::Place;
use crate::config::NetConfig;
use crate::log::line;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where `/init` mounts the template's root.
pub const SYSROOT: &str = "/sysroot";

/// What became of the root, as the files in `/run` tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `/init` mounted it at [`SYSROOT`]: the verity device (from `root.ready`).
    Mounted { device: String },
    /// The agent or `/init` gave up: why.
    Failed(String),
    /// Neither in time.
    TimedOut,
}

/// The outcome once there is one: `root.failed` wins over `root.mounted` (something broke
/// after the mount, or the two disagree: the initramfs is the safe side); `None` while
/// waiting, unless `timed_out`.
pub fn outcome(place: &Place, timed_out: bool) -> Option<Outcome> {
    look(
        Path::new(place.mounted),
        Path::new(place.failed),
        Path::new(place.ready),
        timed_out,
    )
}

fn look(mounted: &Path, failed: &Path, ready: &Path, timed_out: bool) -> Option<Outcome> {
    if failed.exists() {
        let why = fs::read_to_string(failed).unwrap_or_default();
        return Some(Outcome::Failed(why.trim().to_string()));
    }
    if mounted.exists() {
        let device = fs::read_to_string(ready).unwrap_or_default();
        return Some(Outcome::Mounted {
            device: device.trim().to_string(),
        });
    }
    timed_out.then_some(Outcome::TimedOut)
}

/// The directories that must be the initramfs's own in `root`, the same file system and
/// inode (a bind mount): the agent and `/init` talk through `/run`, and the agent's devices
/// are in `/dev`.
const SHARED: [&str; 2] = ["run", "dev"];
/// What must be mounted in `root` (a bind or a new mount of the same kind): a file that only
/// a mounted procfs or sysfs has.
const MOUNTED: [(&str, &str); 2] = [("proc", "proc/self/stat"), ("sys", "sys/block")];

/// Whether `/init` has bind-mounted what the agent goes on using into `root` (the host's
/// `/` standing for the initramfs's); the error names what is missing.
pub fn check_binds(root: &Path, host: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    for dir in SHARED {
        let id = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let ours = id(&host.join(dir));
        if ours.is_none() || id(&root.join(dir)) != ours {
            missing.push(format!("/{dir}"));
        }
    }
    for (dir, file) in MOUNTED {
        if !root.join(file).exists() {
            missing.push(format!("/{dir}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not bind-mounted into {}",
            missing.join(", "),
            root.display()
        ))
    }
}

/// Moves the agent (every thread) into `root` once [`check_binds`] is content.
pub fn enter(root: &Path) -> Result<(), String> {
    check_binds(root, Path::new("/"))?;
    crate::sys::enter_root(root).map_err(|e| format!("chroot {}: {e}", root.display()))
}

/// Acts on `outcome`: moves into the root if it was mounted, logs either way; then, in the
/// root, writes the name servers to its `/etc/resolv.conf` (the one written at start-up is
/// the initramfs's). Returns whether the agent is in the template's root now.
pub fn settle(outcome: &Outcome, net: Option<&NetConfig>) -> bool {
    match outcome {
        Outcome::Mounted { device } => match enter(Path::new(SYSROOT)) {
            Ok(()) => {
                line(&format!(
                    "root: the template's root is / now ({device}, verified by dm-verity)"
                ));
                if let Some(cfg) = net
                    && let Err(e) = write_resolv_conf(&crate::net::resolv_conf(&cfg.dns))
                {
                    line(&format!("root: /etc/resolv.conf: {e}"));
                }
                true
            }
            Err(e) => {
                line(&format!(
                    "root: cannot move into {SYSROOT} ({e}): staying in the initramfs"
                ));
                false
            }
        },
        Outcome::Failed(why) => {
            line(&format!(
                "root: no template root ({why}): staying in the initramfs"
            ));
            false
        }
        Outcome::TimedOut => {
            line(
                "root: /init neither mounted the template's root nor gave up in time: staying in the initramfs",
            );
            false
        }
    }
}

/// Writes `/etc/resolv.conf`, replacing a symbolic link (Debian's may point into a
/// `/run/systemd` that is not there) rather than writing through it.
fn write_resolv_conf(contents: &str) -> io::Result<()> {
    let path = Path::new("/etc/resolv.conf");
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path)?;
    }
    fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agent-root-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn failed_wins_and_mounted_names_the_device() {
        let d = scratch("outcome");
        let (m, f, r) = (
            d.join("root.mounted"),
            d.join("root.failed"),
            d.join("root.ready"),
        );
        assert_eq!(look(&m, &f, &r, false), None);
        assert_eq!(look(&m, &f, &r, true), Some(Outcome::TimedOut));
        fs::write(&r, "/dev/dm-0\n").unwrap();
        assert_eq!(look(&m, &f, &r, false), None, "ready is not mounted");
        fs::write(&m, "").unwrap();
        let mounted = Outcome::Mounted {
            device: "/dev/dm-0".into(),
        };
        assert_eq!(look(&m, &f, &r, false), Some(mounted.clone()));
        assert_eq!(look(&m, &f, &r, true), Some(mounted));
        fs::write(&f, "mount failed\n").unwrap();
        assert_eq!(
            look(&m, &f, &r, false),
            Some(Outcome::Failed("mount failed".into()))
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn binds_are_the_same_directories() {
        let host = scratch("host");
        for dir in ["run", "dev", "proc/self", "sys"] {
            fs::create_dir_all(host.join(dir)).unwrap();
        }
        fs::write(host.join("proc/self/stat"), "1").unwrap();
        fs::create_dir_all(host.join("sys/block")).unwrap();
        let root = scratch("sysroot");
        // Nothing mounted: all four are named.
        for dir in ["run", "dev", "proc", "sys"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let e = check_binds(&root, &host).unwrap_err();
        assert!(
            e.starts_with("/run, /dev, /proc, /sys not bind-mounted"),
            "{e}"
        );
        // Links stand for bind mounts: the same directories.
        for dir in ["run", "dev", "proc", "sys"] {
            fs::remove_dir(root.join(dir)).unwrap();
            symlink(host.join(dir), root.join(dir)).unwrap();
        }
        assert_eq!(check_binds(&root, &host), Ok(()));
        // A /run of its own (a fresh tmpfs, say) is not the one the agent and /init share.
        fs::remove_file(root.join("run")).unwrap();
        fs::create_dir(root.join("run")).unwrap();
        assert_eq!(
            check_binds(&root, &host),
            Err(format!("/run not bind-mounted into {}", root.display()))
        );
        let _ = fs::remove_dir_all(&host);
        let _ = fs::remove_dir_all(&root);
    }
}

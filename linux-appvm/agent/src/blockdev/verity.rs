//! The template's root under dm-verity: once `/dev/nbd1` serves the root volume, a
//! device-mapper device named [`NAME`] maps it through the kernel's `verity` target, which
//! checks every block read against the root hash of `bulkhead.verity=` (from the
//! hypervisor's manifest, so trusted; the volume's bytes come from the storage qube and are
//! not). A block that does not match is an I/O error, never data. `/init` mounts only that
//! device; the agent never offers `/dev/nbd1` itself, also when something here fails.
//!
//! The sequence (`crate::sys::dm`), as `veritysetup open` does it without udev:
//! 1. `DM_DEV_CREATE` of [`NAME`], read-only; the reply's `dev` names `/dev/dm-<minor>`;
//! 2. `DM_TABLE_LOAD`, read-only (the `verity` target refuses a writable table), one
//!    target: sectors 0 to `data_blocks * 8`, [`table_params`];
//! 3. `DM_DEV_SUSPEND` without the suspend flag: the table goes live and the device
//!    resumes;
//! 4. devtmpfs makes `/dev/dm-<minor>` (waited for at most [`NODE_PATIENCE`]), whose path
//!    goes to `/run/root.ready`.
//!
//! If a step after the first fails, the device is removed again (`DM_DEV_REMOVE`).

use super::Place;
use crate::config::{Hex, Verity};
use crate::log::line;
use crate::sys::dm::{self, Command, READONLY_FLAG, Reply, Target};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The device-mapper device's name.
pub const NAME: &str = "root";
/// The device mapper's control device (devtmpfs makes it when `dm-mod` is loaded).
pub const CONTROL: &str = "/dev/mapper/control";
/// How long devtmpfs may take to make `/dev/dm-<minor>`.
pub const NODE_PATIENCE: Duration = Duration::from_secs(5);

/// The `verity` target's parameters for `v` over the block device `dev` (`major:minor`),
/// which holds both the data and, from `hash_start_block` on, the hash tree:
/// `<version> <data dev> <hash dev> <data block size> <hash block size> <data blocks>
/// <hash start block> <algorithm> <root hash> <salt>`
/// (`Documentation/admin-guide/device-mapper/verity.rst`).
pub fn table_params(v: &Verity, dev: (u32, u32)) -> String {
    let (major, minor) = dev;
    v.table_args(format_args!("{major}:{minor}")).to_string()
}

/// The target's length in 512-byte sectors: the data blocks, and no more.
pub fn length_sectors(v: &Verity) -> Option<u64> {
    v.data_blocks.checked_mul(Verity::SECTORS_PER_BLOCK)
}

/// Whether the data and the start of the tree lie inside a volume of `sectors` sectors
/// (the kernel would refuse otherwise too, with a vaguer message).
pub fn check_fits(v: &Verity, sectors: u64) -> Result<(), String> {
    let data = length_sectors(v).ok_or("data_blocks is too large")?;
    let hash = v
        .hash_start_block
        .checked_mul(Verity::SECTORS_PER_BLOCK)
        .ok_or("hash_start_block is too large")?;
    if data > sectors || hash >= sectors {
        return Err(format!(
            "the verity parameters ({} data blocks, hash tree from block {}) do not fit the \
             volume of {sectors} sectors ({} blocks)",
            v.data_blocks,
            v.hash_start_block,
            sectors / Verity::SECTORS_PER_BLOCK
        ));
    }
    Ok(())
}

/// `major:minor` as `/sys/block/*/dev` shows it (with its newline).
pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(major)?, number(minor)?))
}

/// Makes the verity device over the started NBD device of `place` (`sectors` long) and
/// returns what `/run/root.ready` holds: its path and a newline. `t0` is when the agent
/// began with the volume, for the log line.
pub fn setup(v: &Verity, place: &Place, sectors: u64, t0: Instant) -> Result<String, String> {
    check_fits(v, sectors)?;
    let dev_file = place.sysfs().join("dev");
    let text = fs::read_to_string(&dev_file).map_err(|e| format!("{}: {e}", dev_file.display()))?;
    let dev = parse_dev(&text)
        .ok_or_else(|| format!("{}: not major:minor: {:?}", dev_file.display(), text.trim()))?;
    let path = create(v, dev)?;
    let mib = length_sectors(v).unwrap_or(0) / 2048;
    let root = Hex(&v.root).to_string();
    line(&format!(
        "root: {path} is {} verified by dm-verity ({mib} MiB of data, root hash {}...), ready in {} ms",
        place.device(),
        &root[..16],
        t0.elapsed().as_millis()
    ));
    Ok(format!("{path}\n"))
}

/// The device-mapper sequence: the device [`NAME`] mapping the block device `dev`
/// (`major:minor`) through the `verity` target; returns `/dev/dm-<minor>` once it exists.
/// A device half made is removed again.
pub fn create(v: &Verity, dev: (u32, u32)) -> Result<String, String> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONTROL)
        .map_err(|e| format!("{CONTROL}: {e} (is dm-mod loaded?)"))?;
    let run = |command: Command, targets: &[Target]| -> Result<Reply, String> {
        let mut buf = dm::encode(NAME, READONLY_FLAG, targets)
            .map_err(|e| format!("{}: {e}", command.name()))?;
        dm::ioctl(&control, command, &mut buf).map_err(|e| format!("{}: {e}", command.name()))?;
        Reply::decode(&buf).ok_or_else(|| format!("{}: no reply", command.name()))
    };
    let created = run(Command::DevCreate, &[])?;
    let made = (|| -> Result<String, String> {
        let params = table_params(v, dev);
        let length = length_sectors(v).ok_or("data_blocks is too large")?;
        let target = Target {
            start: 0,
            length,
            kind: "verity",
            params: &params,
        };
        run(Command::TableLoad, &[target])?;
        run(Command::DevSuspend, &[])?;
        wait_for_node(created.minor())
    })();
    if made.is_err()
        && let Err(r) = run(Command::DevRemove, &[])
    {
        line(&format!("root: removing the half-made device {NAME}: {r}"));
    }
    made
}

/// Waits until devtmpfs shows `/dev/dm-<minor>` as a block device; returns its path.
fn wait_for_node(minor: u32) -> Result<String, String> {
    let path = format!("/dev/dm-{minor}");
    let start = Instant::now();
    loop {
        if let Ok(m) = fs::metadata(Path::new(&path))
            && m.file_type().is_block_device()
        {
            return Ok(path);
        }
        if start.elapsed() > NODE_PATIENCE {
            return Err(format!(
                "{path} did not appear in {} s (is devtmpfs mounted on /dev?)",
                NODE_PATIENCE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verity() -> Verity {
        Verity {
            data_blocks: 25600,
            hash_start_block: 25600,
            root: [0xab; 32],
            salt: std::array::from_fn(|i| i as u8),
        }
    }

    #[test]
    fn the_table_names_one_device_for_data_and_tree() {
        let p = table_params(&verity(), (43, 32));
        let words: Vec<&str> = p.split(' ').collect();
        assert_eq!(
            words[..8],
            [
                "1", "43:32", "43:32", "4096", "4096", "25600", "25600", "sha256"
            ]
        );
        assert_eq!(words[8], "ab".repeat(32));
        assert_eq!(
            words[9],
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(words.len(), 10);
        assert!(!p.contains('\0') && !p.ends_with(' '));
        assert_eq!(length_sectors(&verity()), Some(204800));
    }

    #[test]
    fn the_table_encodes_as_the_kernel_reads_it() {
        let v = verity();
        let params = table_params(&v, (43, 32));
        let t = Target {
            start: 0,
            length: length_sectors(&v).unwrap(),
            kind: "verity",
            params: &params,
        };
        let buf = dm::encode(NAME, READONLY_FLAG, &[t]).unwrap();
        let at = dm::HEADER_LEN + dm::SPEC_LEN;
        assert_eq!(&buf[at..at + params.len()], params.as_bytes());
        assert_eq!(buf[at + params.len()], 0);
        assert_eq!(buf.len() % 8, 0);
    }

    #[test]
    fn the_parameters_must_fit_the_volume() {
        let v = verity();
        // The data (204800 sectors) and a tree of 201 blocks after it.
        let sectors = (25600 + 201) * 8;
        assert_eq!(check_fits(&v, sectors), Ok(()));
        assert!(check_fits(&v, 204800).is_err(), "no room for the tree");
        let e = check_fits(&v, 204799).unwrap_err();
        assert!(e.contains("do not fit the volume of 204799 sectors"), "{e}");
        let huge = Verity {
            data_blocks: u64::MAX,
            ..v
        };
        assert!(check_fits(&huge, u64::MAX).is_err());
        let late = Verity {
            hash_start_block: u64::MAX / 4,
            ..v
        };
        assert!(check_fits(&late, u64::MAX).is_err());
    }

    #[test]
    fn sysfs_dev_numbers() {
        assert_eq!(parse_dev("43:32\n"), Some((43, 32)));
        assert_eq!(parse_dev("259:0"), Some((259, 0)));
        for bad in [
            "",
            "43",
            "43:",
            ":32",
            "43:32:1",
            "a:1",
            "-1:2",
            "43 :32",
            "4294967296:0",
        ] {
            assert_eq!(parse_dev(bad), None, "{bad:?}");
        }
    }
}

//! `bulkhead-agent blockbench DEVICE MIB COUNT`: the guest side of `cargo xtask bench
//! --storage`. Four measurements on the raw block device DEVICE, which must be neither
//! mounted nor held by another device (its file system would be destroyed), each with
//! `O_DIRECT` (no page cache: every request goes to the device and waits for it), one request
//! at a time, and each between two [`sys::mark`]s for QEMU's counting plugin, in this order:
//!
//! - `seq-write`: the device's first MIB MiB in 128 KiB requests, then `fdatasync` (a flush:
//!   the writes are durable when it returns);
//! - `seq-read`: the same MIB MiB back in 128 KiB requests;
//! - `rand-write`: COUNT requests of 4 KiB at 4 KiB-aligned offsets in those MIB MiB, from a
//!   generator with a fixed seed (the same offsets in every run), then `fdatasync`;
//! - `rand-read`: COUNT reads of 4 KiB at the generator's next offsets.
//!
//! Every 4 KiB block written holds its own offset in its first 8 bytes, and every block read
//! is checked for it, so a run that read other sectors than it wrote fails instead of
//! reporting. One line per measurement, `blockbench: seq-read 512 requests of 131072 bytes
//! in 3.210 s` (the guest's clock), or `blockbench: seq-read failed: ...`; a device it will
//! not or cannot measure is `blockbench: error: ...`.

use crate::sys;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// The size of a sequential request: what the agent's NBD server sends the storage qube in
/// one block request (`queue/max_sectors_kb` = 128).
pub const SEQ_REQUEST: usize = 128 * 1024;
/// The size of a random request, and the unit every block is stamped in.
pub const BLOCK: usize = 4096;
/// The seed of the random offsets.
const SEED: u64 = 0x426c_6f63_6b42_6e63;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Sequential writes of [`SEQ_REQUEST`] bytes, then a flush.
    SeqWrite,
    /// Sequential reads of [`SEQ_REQUEST`] bytes.
    SeqRead,
    /// Random writes of [`BLOCK`] bytes, then a flush.
    RandWrite,
    /// Random reads of [`BLOCK`] bytes.
    RandRead,
}

/// The measurements in the order they run: writes first, so that every block a read asks for
/// has been written (and stamped).
pub const ORDER: [Test; 4] = [
    Test::SeqWrite,
    Test::SeqRead,
    Test::RandWrite,
    Test::RandRead,
];

impl Test {
    /// Its name on the result line.
    pub fn name(self) -> &'static str {
        match self {
            Test::SeqWrite => "seq-write",
            Test::SeqRead => "seq-read",
            Test::RandWrite => "rand-write",
            Test::RandRead => "rand-read",
        }
    }

    /// Bytes per request.
    pub fn request(self) -> usize {
        match self {
            Test::SeqWrite | Test::SeqRead => SEQ_REQUEST,
            Test::RandWrite | Test::RandRead => BLOCK,
        }
    }

    fn writes(self) -> bool {
        matches!(self, Test::SeqWrite | Test::RandWrite)
    }
}

/// What to measure: the region at the device's start, and the random requests each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Bytes, a multiple of [`SEQ_REQUEST`].
    pub region: u64,
    /// Random requests per direction.
    pub random: u64,
}

impl Plan {
    /// The offsets of `test`'s requests, in order.
    pub fn offsets(&self, test: Test) -> Vec<u64> {
        match test {
            Test::SeqWrite | Test::SeqRead => (0..self.region / SEQ_REQUEST as u64)
                .map(|i| i * SEQ_REQUEST as u64)
                .collect(),
            Test::RandWrite | Test::RandRead => {
                let blocks = (self.region / BLOCK as u64).max(1);
                let mut state = SEED;
                // The reads take the generator's next offsets, after the writes'.
                let skip = if test == Test::RandRead {
                    self.random
                } else {
                    0
                };
                (0..skip + self.random)
                    .map(|_| (splitmix64(&mut state) % blocks) * BLOCK as u64)
                    .skip(skip as usize)
                    .collect()
            }
        }
    }
}

/// SplitMix64: a small generator with good statistics, enough to spread offsets.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A buffer whose start is aligned to [`BLOCK`], as `O_DIRECT` requires (a `Vec` a block
/// longer, used from its first aligned byte: no `unsafe` allocation).
struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let raw = vec![0xa5; len + BLOCK];
        let start = (BLOCK - raw.as_ptr().addr() % BLOCK) % BLOCK;
        Aligned { raw, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Writes each block's offset (`at` for the first) into its first 8 bytes.
fn stamp(buf: &mut [u8], at: u64) {
    for (k, block) in buf.chunks_mut(BLOCK).enumerate() {
        block[..8].copy_from_slice(&(at + (k * BLOCK) as u64).to_le_bytes());
    }
}

/// Checks that each block read at `at` holds its offset.
fn check(buf: &[u8], at: u64) -> io::Result<()> {
    for (k, block) in buf.chunks(BLOCK).enumerate() {
        let want = at + (k * BLOCK) as u64;
        let got = u64::from_le_bytes(block[..8].try_into().unwrap_or_default());
        if got != want {
            return Err(io::Error::other(format!(
                "the block at byte {want} holds the stamp {got:#x}: not what was written there"
            )));
        }
    }
    Ok(())
}

/// Runs `test` of `plan` on `file`: its requests one after the other between two marks (a
/// write test ends with `fdatasync`, inside them); its duration on the guest's clock.
pub fn measure(file: &File, plan: &Plan, test: Test) -> io::Result<Duration> {
    let offsets = plan.offsets(test);
    let mut buf = Aligned::new(test.request());
    sys::mark();
    let started = Instant::now();
    for &at in &offsets {
        if test.writes() {
            stamp(buf.bytes_mut(), at);
            file.write_all_at(buf.bytes(), at)?;
        } else {
            file.read_exact_at(buf.bytes_mut(), at)?;
            check(buf.bytes(), at)?;
        }
    }
    if test.writes() {
        file.sync_data()?;
    }
    let took = started.elapsed();
    sys::mark();
    Ok(took)
}

/// The result line of a measurement.
pub fn result_line(test: Test, requests: usize, took: Duration) -> String {
    format!(
        "blockbench: {} {requests} requests of {} bytes in {:.3} s",
        test.name(),
        test.request(),
        took.as_secs_f64()
    )
}

/// Why `device` must not be measured: mounted (a field of `/proc/mounts`'s text `mounts`)
/// or held by another device (`holders`, the names in its sysfs `holders` folder).
pub fn in_use(device: &str, mounts: &str, holders: &[String]) -> Option<String> {
    if mounts
        .lines()
        .any(|l| l.split_whitespace().next() == Some(device))
    {
        return Some(format!(
            "{device} is mounted: writing it would destroy its file system"
        ));
    }
    if !holders.is_empty() {
        return Some(format!("{device} is held by {}", holders.join(", ")));
    }
    None
}

/// Runs the subcommand: `args` are `DEVICE MIB COUNT`. Returns the exit status.
pub fn main(args: &[String]) -> u8 {
    let (Some(device), Some(mib), Some(random)) = (
        args.first(),
        args.get(1).and_then(|m| m.parse::<u64>().ok()),
        args.get(2).and_then(|c| c.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: bulkhead-agent blockbench DEVICE MIB COUNT");
        return 2;
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let name = device.rsplit('/').next().unwrap_or(device);
    let holders: Vec<String> = std::fs::read_dir(format!("/sys/class/block/{name}/holders"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(why) = in_use(device, &mounts, &holders) {
        println!("blockbench: error: {why}");
        return 2;
    }
    let plan = Plan {
        region: mib * 1024 * 1024,
        random,
    };
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(device);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            println!("blockbench: error: opening {device}: {e}");
            return 1;
        }
    };
    let size = file.seek(SeekFrom::End(0)).unwrap_or(0);
    if plan.region == 0 || plan.region > size || random == 0 {
        println!(
            "blockbench: error: {device} has {size} bytes: give 1 to {} MiB and at least one random request",
            size >> 20
        );
        return 2;
    }
    println!(
        "blockbench: {device} ({size} bytes): the first {mib} MiB in requests of {SEQ_REQUEST} \
         bytes, {random} random requests of {BLOCK} bytes each way, O_DIRECT, one at a time"
    );
    for test in ORDER {
        match measure(&file, &plan, test) {
            Ok(took) => println!("{}", result_line(test, plan.offsets(test).len(), took)),
            Err(e) => {
                println!("blockbench: {} failed: {e}", test.name());
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_region_and_repeat() {
        let plan = Plan {
            region: 1 << 20,
            random: 100,
        };
        let seq = plan.offsets(Test::SeqRead);
        assert_eq!(seq.len(), 8);
        assert_eq!(seq[7], 7 * SEQ_REQUEST as u64);
        assert_eq!(seq, plan.offsets(Test::SeqWrite));
        let w = plan.offsets(Test::RandWrite);
        let r = plan.offsets(Test::RandRead);
        assert_eq!((w.len(), r.len()), (100, 100));
        assert_ne!(w, r);
        assert_eq!(
            w,
            plan.offsets(Test::RandWrite),
            "the same offsets every run"
        );
        for at in w.iter().chain(&r) {
            assert!(at % BLOCK as u64 == 0 && *at + BLOCK as u64 <= plan.region);
        }
        // Spread over the region, not bunched at its start.
        assert!(w.iter().any(|a| *a >= plan.region / 2));
    }

    #[test]
    fn stamps_are_checked() {
        let mut buf = Aligned::new(2 * BLOCK);
        assert_eq!(buf.bytes().as_ptr().addr() % BLOCK, 0);
        stamp(buf.bytes_mut(), 8192);
        assert!(check(buf.bytes(), 8192).is_ok());
        assert!(check(buf.bytes(), 4096).is_err());
        buf.bytes_mut()[BLOCK] ^= 1;
        let e = check(buf.bytes(), 8192).unwrap_err().to_string();
        assert!(e.contains("the block at byte 12288"), "{e}");
    }

    #[test]
    fn refuses_a_device_in_use() {
        let mounts = "/dev/root / ext4 rw 0 0\n/dev/nbd0 /home ext2 rw 0 0\n";
        assert!(
            in_use("/dev/nbd0", mounts, &[])
                .unwrap()
                .contains("mounted")
        );
        assert_eq!(in_use("/dev/vda", mounts, &[]), None);
        let held = in_use("/dev/nbd1", "", &["dm-0".into()]).unwrap();
        assert!(held.contains("held by dm-0"), "{held}");
    }

    /// All four measurements on a file (no `O_DIRECT`: a temporary folder may not allow it).
    #[test]
    fn measures_a_file() {
        let path = std::env::temp_dir().join(format!("blockbench-test-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let plan = Plan {
            region: 4 * SEQ_REQUEST as u64,
            random: 50,
        };
        file.set_len(plan.region).unwrap();
        for test in ORDER {
            let took = measure(&file, &plan, test).unwrap();
            let line = result_line(test, plan.offsets(test).len(), took);
            assert!(line.starts_with("blockbench: "), "{line}");
        }
        // A region never written fails its check.
        file.set_len(0).unwrap();
        file.set_len(plan.region).unwrap();
        assert!(measure(&file, &plan, Test::SeqRead).is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn names_the_line() {
        assert_eq!(
            result_line(Test::RandRead, 2000, Duration::from_millis(1500)),
            "blockbench: rand-read 2000 requests of 4096 bytes in 1.500 s"
        );
    }
}

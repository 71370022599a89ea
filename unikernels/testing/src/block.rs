//! `block-client`: a private volume used as a disk, across reboots of the whole system.
//!
//! It asks the storage qube for its volume's geometry (`Info`), then reads sector 0: a
//! *record* a previous boot left there (a magic, that boot's number, this qube's seed, and
//! the size and a checksum of the pattern that boot wrote). If there is one, it reads that
//! boot's pattern back from the volume, compares every byte with the pattern regenerated
//! from the record, and logs `block-client: found boot K's data, intact`. Then it writes
//! boot K+1's pattern (extents of 1 to 256 sectors spread over the volume, several hundred
//! KiB, in requests of various sizes through the channel's bulk area), flushes, writes the
//! new record, flushes, reads everything back, compares, and logs `block-client: boot K+1
//! wrote N KiB, read back intact`. Each qube's pattern comes from its own name, so one qube
//! that found another's data would say so.
//!
//! The block protocol is `bulkhead_abi::block`; [`Link`] is its client end over the
//! channel named in this qube's configuration blob (`block_channel`), or `channel=`.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bulkhead_abi::block::{
    self, BLOCK_VERSION, BlockError, BlockOp, BlockReply, BlockRequest, BlockResponse, SECTOR_SIZE,
    VolumeGeometry,
};
use bulkhead_abi::proto::BulkRef;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_rt::channel::{Channel, ChannelError};
use bulkhead_rt::{Args, Boot, error, info, now_ns};

/// Exit status when the block channel cannot be opened or has no bulk area.
pub const EXIT_NO_CHANNEL: i32 = 40;
/// Exit status when the storage qube does not answer, or answers what was not asked.
pub const EXIT_NO_ANSWER: i32 = 41;
/// Exit status when a request that should work was refused.
pub const EXIT_REFUSED: i32 = 42;
/// Exit status when data read back differs from what was written.
pub const EXIT_CORRUPT: i32 = 43;
/// Exit status when the volume is too small for the pattern.
pub const EXIT_TOO_SMALL: i32 = 44;

/// How long to wait for one response.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The record's first bytes.
const RECORD_MAGIC: [u8; 8] = *b"BKBLKREC";
/// Sizes of the pattern's extents, in sectors: 1254 sectors (627 KiB) in all, each at most
/// 256 (the storage qube's largest request) so some are written in one request.
const EXTENTS: [u32; 12] = [1, 3, 8, 16, 31, 64, 100, 128, 200, 256, 255, 192];
/// How reads split an extent: other sizes than the writes used.
const READ_CHUNK: u32 = 48;

/// The client end of the block protocol over one channel.
pub struct Link {
    ch: Channel,
    /// The loan of our whole pool, written through at byte offsets (as the storage qube
    /// does with its own pool; see `unikernels/storage/src/serve.rs`).
    surface: BulkRef,
    /// Bytes of each pool.
    pub pool: u32,
    next_tag: u32,
    /// Requests answered.
    pub requests: u64,
}

impl Link {
    /// Opens the block channel: `channel=`, else the blob's `block_channel`.
    pub fn open(boot: &Boot, args: &Args<'_>) -> Result<Link, i32> {
        let from_blob = QubeConfig::decode(boot.config())
            .ok()
            .and_then(|c| c.block_channel);
        let name = match (args.get("channel"), from_blob.as_ref()) {
            (Some(n), _) => n,
            (None, Some(n)) => n.as_str(),
            (None, None) => {
                error!("block-client: no block channel (no channel= and none in the blob)");
                return Err(EXIT_NO_CHANNEL);
            }
        };
        let mut ch = Channel::open_named(boot, name).map_err(|e| {
            error!("block-client: cannot open channel {name}: {e}");
            EXIT_NO_CHANNEL
        })?;
        let Some(bulk) = ch.bulk() else {
            error!("block-client: channel {name} has no bulk area");
            return Err(EXIT_NO_CHANNEL);
        };
        let pool = bulk.pool_size();
        let surface = bulk.lend(&vec![0u8; pool]).map_err(|e| {
            error!("block-client: cannot take our pool of {name}: {e}");
            EXIT_NO_CHANNEL
        })?;
        Ok(Link {
            ch,
            surface,
            pool: pool as u32,
            next_tag: 1,
            requests: 0,
        })
    }

    /// Puts `data` in our pool at byte `at` (a Write's data).
    pub fn put(&mut self, at: u32, data: &[u8]) -> Result<(), ChannelError> {
        let bulk = self.ch.bulk().ok_or(ChannelError::NotLent)?;
        bulk.write_lent(&self.surface, at as usize, data)
    }

    /// Copies the storage qube's pool from byte `at` into `dst` (a Read's data).
    pub fn get(&mut self, at: u32, dst: &mut [u8]) -> Result<(), ChannelError> {
        let whole = BulkRef {
            offset: 0,
            len: self.pool,
            check: 0,
        };
        let bulk = self.ch.bulk().ok_or(ChannelError::NotLent)?;
        bulk.read_unchecked_at(&whole, at as usize, dst)
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> u32 {
        let t = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        t
    }

    /// Sends `msg` (any serializable message, for the hostile mode's garbage too), waiting
    /// while the ring is full.
    pub fn send_raw<T: serde::Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), i32> {
        self.ch.send(msg).map_err(|e| {
            error!("block-client: sending on {}: {e}", self.ch.name());
            EXIT_NO_ANSWER
        })
    }

    /// Sends `msg` if the ring has room; false if not.
    pub fn try_send_raw<T: serde::Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, i32> {
        self.ch.try_send(msg).map_err(|e| {
            error!("block-client: sending on {}: {e}", self.ch.name());
            EXIT_NO_ANSWER
        })
    }

    /// The next response, waiting at most [`ANSWER_TIMEOUT`].
    pub fn response(&mut self) -> Result<BlockResponse, i32> {
        let deadline = now_ns() + ANSWER_TIMEOUT.as_nanos() as u64;
        loop {
            match self.try_response()? {
                Some(r) => return Ok(r),
                None if now_ns() > deadline => {
                    error!(
                        "block-client: no answer from the storage qube in {} s",
                        ANSWER_TIMEOUT.as_secs()
                    );
                    return Err(EXIT_NO_ANSWER);
                }
                None => {
                    let _ = self.ch.wait_timeout(Some(Duration::from_millis(100)));
                }
            }
        }
    }

    /// The next response if one is there.
    pub fn try_response(&mut self) -> Result<Option<BlockResponse>, i32> {
        match self.ch.try_recv_with(block::decode_response) {
            Ok(None) => Ok(None),
            Ok(Some(Ok(r))) => {
                self.requests += 1;
                Ok(Some(r))
            }
            Ok(Some(Err(e))) => {
                error!(
                    "block-client: the storage qube sent a message that is not a response: {e:?}"
                );
                Err(EXIT_NO_ANSWER)
            }
            Err(e) => {
                error!("block-client: channel {}: {e}", self.ch.name());
                Err(EXIT_NO_ANSWER)
            }
        }
    }

    /// Sends `op` and waits for its answer.
    pub fn call(&mut self, op: BlockOp) -> Result<Result<BlockReply, BlockError>, i32> {
        let tag = self.tag();
        self.send_raw(&BlockRequest { tag, op })?;
        let r = self.response()?;
        if r.tag != tag {
            error!("block-client: asked {tag}, the answer is to {}", r.tag);
            return Err(EXIT_NO_ANSWER);
        }
        Ok(r.result)
    }

    /// `Info`: the volume's geometry.
    pub fn info(&mut self) -> Result<VolumeGeometry, i32> {
        match self.call(BlockOp::Info)? {
            Ok(BlockReply::Info {
                sectors,
                read_only,
                max_sectors_per_request,
                version,
            }) if version == BLOCK_VERSION => Ok(VolumeGeometry {
                sectors,
                read_only,
                max_sectors_per_request,
            }),
            other => {
                error!(
                    "block-client: Info answered {other:?} (this qube speaks version {BLOCK_VERSION})"
                );
                Err(EXIT_NO_ANSWER)
            }
        }
    }

    /// Reads `buf.len() / SECTOR_SIZE` sectors from `sector`, through the storage qube's
    /// pool at `pool_offset`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8], pool_offset: u32) -> Result<(), i32> {
        let count = (buf.len() / SECTOR_SIZE as usize) as u32;
        let op = BlockOp::Read {
            sector,
            count,
            pool_offset,
        };
        done(self.call(op)?, &op)?;
        self.get(pool_offset, buf).map_err(|e| {
            error!("block-client: reading the storage qube's pool: {e}");
            EXIT_NO_ANSWER
        })
    }

    /// Writes `data` at `sector`, through our pool at `pool_offset`.
    pub fn write(&mut self, sector: u64, data: &[u8], pool_offset: u32) -> Result<(), i32> {
        self.put(pool_offset, data).map_err(|e| {
            error!("block-client: writing our pool: {e}");
            EXIT_NO_ANSWER
        })?;
        let op = BlockOp::Write {
            sector,
            count: (data.len() / SECTOR_SIZE as usize) as u32,
            pool_offset,
        };
        done(self.call(op)?, &op)
    }

    /// `Flush`.
    pub fn flush(&mut self) -> Result<(), i32> {
        done(self.call(BlockOp::Flush)?, &BlockOp::Flush)
    }
}

/// `Ok(Done)` or the exit status for a refusal.
fn done(r: Result<BlockReply, BlockError>, op: &BlockOp) -> Result<(), i32> {
    match r {
        Ok(BlockReply::Done) => Ok(()),
        other => {
            error!("block-client: {op:?} answered {other:?}");
            Err(EXIT_REFUSED)
        }
    }
}

/// FNV-1a of `bytes`.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A 64-bit mix (splitmix64's finaliser).
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pattern of boot `boot` of the qube with `seed`, for the bytes of the volume from
/// byte `at` (a multiple of 8), into `buf`; returns the sum of its words.
fn pattern(seed: u64, boot: u32, at: u64, buf: &mut [u8]) -> u64 {
    let mut sum = 0u64;
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        let w = mix(seed ^ u64::from(boot).rotate_left(40) ^ (at / 8 + i as u64));
        word.copy_from_slice(&w.to_le_bytes());
        sum = sum.wrapping_add(w);
    }
    sum
}

/// Where the pattern's extents lie on a volume of `sectors` sectors: spread evenly after
/// sector 0 (the record's). `None` when the volume is too small.
fn extents(sectors: u64) -> Option<Vec<(u64, u32)>> {
    let n = EXTENTS.len() as u64;
    let spacing = sectors.checked_sub(1)? / n;
    let fits = EXTENTS.iter().all(|&s| u64::from(s) <= spacing);
    fits.then(|| {
        EXTENTS
            .iter()
            .enumerate()
            .map(|(i, &s)| (1 + i as u64 * spacing, s))
            .collect()
    })
}

/// What sector 0 holds after a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    boot: u32,
    seed: u64,
    /// Bytes of pattern and the sum of its words.
    bytes: u64,
    sum: u64,
}

impl Record {
    fn encode(&self) -> [u8; SECTOR_SIZE as usize] {
        let mut s = [0u8; SECTOR_SIZE as usize];
        s[..8].copy_from_slice(&RECORD_MAGIC);
        s[8..12].copy_from_slice(&self.boot.to_le_bytes());
        s[16..24].copy_from_slice(&self.seed.to_le_bytes());
        s[24..32].copy_from_slice(&self.bytes.to_le_bytes());
        s[32..40].copy_from_slice(&self.sum.to_le_bytes());
        let check = fnv(&s[..40]);
        s[40..48].copy_from_slice(&check.to_le_bytes());
        s
    }

    /// `Ok(None)` for a sector of zeros (a fresh volume), `Err` for anything else that is
    /// not a record.
    fn decode(s: &[u8]) -> Result<Option<Record>, &'static str> {
        if s.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
        if s.len() < 48 || s[..8] != RECORD_MAGIC {
            return Err("sector 0 holds something that is not a record");
        }
        if word(40) != fnv(&s[..40]) {
            return Err("the record's checksum does not match it");
        }
        Ok(Some(Record {
            boot: u32::from_le_bytes(s[8..12].try_into().unwrap_or([0; 4])),
            seed: word(16),
            bytes: word(24),
            sum: word(32),
        }))
    }
}

/// `block-client`.
pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    match run(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let mut link = Link::open(boot, args)?;
    let t0 = now_ns();
    let geometry = link.info()?;
    let max = geometry
        .max_sectors_per_request
        .min(link.pool / SECTOR_SIZE);
    info!(
        "block-client: volume of {} sectors ({} KiB), {} sectors per request at most",
        geometry.sectors,
        geometry.sectors / 2,
        max
    );
    let Some(extents) = extents(geometry.sectors).filter(|_| max > 0) else {
        error!("block-client: the volume is too small for the pattern");
        return Err(EXIT_TOO_SMALL);
    };
    let seed = fnv(boot.name().as_bytes());
    let mut record = [0u8; SECTOR_SIZE as usize];
    link.read(0, &mut record, 0)?;
    let mut reads = Traffic::default();
    reads.add(record.len());
    let previous = match Record::decode(&record) {
        Ok(r) => r,
        Err(why) => {
            error!("block-client: {why}");
            return Err(EXIT_CORRUPT);
        }
    };
    let boot_no = match previous {
        None => {
            info!("block-client: no record in sector 0: a fresh volume");
            1
        }
        Some(r) if r.seed != seed => {
            error!(
                "block-client: sector 0 holds the record of another qube (seed {:#x}, ours {seed:#x})",
                r.seed
            );
            return Err(EXIT_CORRUPT);
        }
        Some(r) => {
            let (bytes, sum) = verify(&mut link, &extents, max, seed, r.boot, &mut reads)?;
            if (bytes, sum) != (r.bytes, r.sum) {
                error!(
                    "block-client: boot {}'s record says {} bytes summing to {:#x}, the volume \
                     holds {bytes} summing to {sum:#x}",
                    r.boot, r.bytes, r.sum
                );
                return Err(EXIT_CORRUPT);
            }
            info!("block-client: found boot {}'s data, intact", r.boot);
            r.boot + 1
        }
    };
    let mut writes = Traffic::default();
    let (bytes, sum) = write(&mut link, &extents, max, seed, boot_no, &mut writes)?;
    link.flush()?;
    let new = Record {
        boot: boot_no,
        seed,
        bytes,
        sum,
    };
    link.write(0, &new.encode(), 0)?;
    writes.add(SECTOR_SIZE as usize);
    link.flush()?;
    let mut back = [0u8; SECTOR_SIZE as usize];
    link.read(0, &mut back, SECTOR_SIZE)?;
    reads.add(back.len());
    if Record::decode(&back) != Ok(Some(new)) {
        error!("block-client: the record read back differs from the one written");
        return Err(EXIT_CORRUPT);
    }
    let again = verify(&mut link, &extents, max, seed, boot_no, &mut reads)?;
    if again != (bytes, sum) {
        error!(
            "block-client: the pattern read back sums to {:#x}, written {sum:#x}",
            again.1
        );
        return Err(EXIT_CORRUPT);
    }
    let ms = (now_ns() - t0) / 1_000_000;
    info!(
        "block-client: boot {boot_no} wrote {} KiB, read back intact ({} KiB read in {} \
         requests, {} KiB written in {} requests, {} requests in all, {ms} ms)",
        writes.bytes / 1024,
        reads.bytes / 1024,
        reads.requests,
        writes.bytes / 1024,
        writes.requests,
        link.requests
    );
    Ok(())
}

/// Bytes moved and requests that moved them.
#[derive(Default)]
struct Traffic {
    bytes: u64,
    requests: u64,
}

impl Traffic {
    fn add(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.requests += 1;
    }
}

/// A pool offset for request `n` of `len` bytes: varied, sector-aligned, inside the pool.
pub(crate) fn pool_offset(n: u64, len: u32, pool: u32) -> u32 {
    let room = (pool - len) / SECTOR_SIZE + 1;
    ((n * 7) % u64::from(room)) as u32 * SECTOR_SIZE
}

/// Writes boot `boot`'s pattern into every extent, each in one request when it fits (the
/// extents differ in size, so the requests do); returns the bytes and their sum.
fn write(
    link: &mut Link,
    extents: &[(u64, u32)],
    max: u32,
    seed: u64,
    boot: u32,
    t: &mut Traffic,
) -> Result<(u64, u64), i32> {
    let (mut bytes, mut sum) = (0u64, 0u64);
    let mut buf = vec![0u8; (max * SECTOR_SIZE) as usize];
    for (sector, n) in pieces(extents, max) {
        let data = &mut buf[..(n * SECTOR_SIZE) as usize];
        sum = sum.wrapping_add(pattern(seed, boot, sector * 512, data));
        let at = pool_offset(t.requests, n * SECTOR_SIZE, link.pool);
        link.write(sector, data, at)?;
        t.add(data.len());
        bytes += data.len() as u64;
    }
    Ok((bytes, sum))
}

/// Reads every extent back in chunks of [`READ_CHUNK`] sectors and compares it with boot
/// `boot`'s pattern; returns the bytes and their sum.
fn verify(
    link: &mut Link,
    extents: &[(u64, u32)],
    max: u32,
    seed: u64,
    boot: u32,
    t: &mut Traffic,
) -> Result<(u64, u64), i32> {
    let (mut bytes, mut sum) = (0u64, 0u64);
    let chunk = READ_CHUNK.min(max);
    let mut got = vec![0u8; (chunk * SECTOR_SIZE) as usize];
    let mut want = got.clone();
    for (sector, n) in pieces(extents, chunk) {
        let len = (n * SECTOR_SIZE) as usize;
        let at = pool_offset(t.requests, n * SECTOR_SIZE, link.pool);
        link.read(sector, &mut got[..len], at)?;
        t.add(len);
        sum = sum.wrapping_add(pattern(seed, boot, sector * 512, &mut want[..len]));
        if got[..len] != want[..len] {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            error!(
                "block-client: boot {boot}'s data differs at volume byte {}",
                sector * 512 + at as u64
            );
            return Err(EXIT_CORRUPT);
        }
        bytes += len as u64;
    }
    Ok((bytes, sum))
}

/// The extents cut into requests of at most `max` sectors: (first sector, sectors).
fn pieces(extents: &[(u64, u32)], max: u32) -> impl Iterator<Item = (u64, u32)> + '_ {
    extents.iter().flat_map(move |&(first, count)| {
        (0..count)
            .step_by(max.max(1) as usize)
            .map(move |done| (first + u64::from(done), (count - done).min(max)))
    })
}

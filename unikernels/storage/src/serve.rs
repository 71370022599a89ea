//! Serving the clients: one block channel per client qube (from this qube's configuration
//! blob), each bound to that qube's volume alone. Requests are taken a bounded number per
//! client per pass, judged by `bulkhead_abi::block::check` against the client's volume,
//! carried out on the disk one at a time, and answered on the same channel. Everything a
//! client sends is hostile: a request that does not decode, or that `check` refuses, is
//! answered with the error and logged (the first [`LOGGED_REFUSALS`] of each client, then
//! counted), never acted on, and never a panic.
//!
//! Data goes through the channel's bulk area, addressed by byte offset in a pool: a Write's
//! data is read from the client's pool (read-only here), a Read's data is written into this
//! qube's pool, whose pages are held as one lent *surface* for that (see [`Pools`]). The
//! disk's DMA reaches only this qube's own memory, so each request's data is copied
//! through a bounce buffer on the heap.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bulkhead_abi::block::{
    self, BLOCK_VERSION, BlockError, BlockOp, BlockReply, BlockRequest, BlockResponse, SECTOR_SIZE,
    VolumeGeometry,
};
use bulkhead_abi::disk::VolumeKind;
use bulkhead_abi::proto::BulkRef;
use bulkhead_qubeconfig::{ClientVolume, StorageClient};
use bulkhead_rt::channel::{Bulk, Channel, ChannelError};
use bulkhead_rt::{Boot, error, info, warn};

use crate::disk::Disk;

/// Requests taken from one client per pass: a flooding client cannot hold the others up.
pub const BUDGET: usize = 16;
/// Most sectors one Read, Write or Discard may name (128 KiB): the bounce buffer's size. A
/// smaller pool lowers it to what the pool holds.
pub const MAX_SECTORS: u32 = 256;
/// Refusals logged one by one per client; the rest are counted.
pub const LOGGED_REFUSALS: u64 = 8;
/// The tag answered to a message that does not decode far enough to show its own.
pub const UNKNOWN_TAG: u32 = u32::MAX;

/// What a client's requests did, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered (done or refused).
    pub requests: u64,
    /// Reads done, and their bytes.
    pub reads: u64,
    pub read_bytes: u64,
    /// Writes done, and their bytes.
    pub writes: u64,
    pub written_bytes: u64,
    /// Flushes done.
    pub flushes: u64,
    /// Discards accepted (a no-op).
    pub discards: u64,
    /// Requests refused (an error answered without acting), and how many were logged.
    pub refused: u64,
    pub refusals_logged: u64,
    /// Requests the disk failed (answered `Io`).
    pub io_errors: u64,
}

/// A channel's two pools, addressed by byte offset as the block protocol does.
///
/// This qube writes Read data into its own pool through a *surface*: one loan of the whole
/// pool (`Bulk::lend`), never returned, written with `Bulk::write_lent`, which refuses a
/// range outside it. The client's pool is read through a descriptor of the whole of it
/// (`Bulk::read_unchecked_at`, which checks the range). No checksums: the data is a disk's,
/// never parsed here.
struct Pools {
    /// The loan of our whole pool.
    surface: BulkRef,
    /// Bytes of each pool.
    len: u32,
}

impl Pools {
    /// Lends the whole of our pool to ourselves as the surface (after opening the channel,
    /// and again after a reset, which forgets every loan).
    fn take(bulk: &mut Bulk) -> Result<Pools, ChannelError> {
        let len = bulk.pool_size();
        let zeros = alloc::vec![0u8; len];
        let surface = bulk.lend(&zeros)?;
        Ok(Pools {
            surface,
            len: len as u32,
        })
    }

    /// Copies `data` into our pool at byte `at`.
    fn put(&self, bulk: &mut Bulk, at: u32, data: &[u8]) -> Result<(), ChannelError> {
        bulk.write_lent(&self.surface, at as usize, data)
    }

    /// Copies the client's pool from byte `at` into `dst`.
    fn get(&self, bulk: &mut Bulk, at: u32, dst: &mut [u8]) -> Result<(), ChannelError> {
        let whole = BulkRef {
            offset: 0,
            len: self.len,
            check: 0,
        };
        bulk.read_unchecked_at(&whole, at as usize, dst)
    }
}

/// Where a client's volume is, or why it cannot be served.
#[derive(Clone, Copy, Debug)]
enum Volume {
    /// Its first sector on the disk and its geometry.
    Found {
        first_sector: u64,
        geometry: VolumeGeometry,
    },
    /// Not on the disk, or not the size the description gives: every request is answered
    /// `Io` (logged once at start).
    Unusable,
}

/// The volume `c`'s channel reaches on `disk`, with requests of at most `max` sectors: the
/// client's private volume (read-write, of the size the description gives) or its
/// template's root (read-only, whatever size the disk gives it: the client checks its
/// contents with dm-verity). Logs why when it cannot be served.
fn find_volume(c: &StorageClient, disk: &Disk, max: u32) -> Volume {
    let name = c.qube.as_str();
    let (kind, wanted, expected) = match &c.volume {
        ClientVolume::Private { mib } => (VolumeKind::Private, name, Some(u64::from(*mib) << 20)),
        ClientVolume::TemplateRoot { template } => {
            (VolumeKind::TemplateRoot, template.as_str(), None)
        }
    };
    let what = match kind {
        VolumeKind::Private => "volume",
        VolumeKind::TemplateRoot => "template root",
    };
    let Some(v) = disk.layout.find(wanted, kind) else {
        error!(
            "storage: {name}: the disk has no {what} called {wanted} (xtask adds it when the \
             description gives the qube storagevm); answering every request on {} with an \
             I/O error",
            c.channel
        );
        return Volume::Unusable;
    };
    let bytes = v.sectors.checked_mul(u64::from(SECTOR_SIZE));
    if let Some(expected) = expected
        && bytes != Some(expected)
    {
        error!(
            "storage: {name}: its volume on the disk has {} sectors, the description says {} \
             MiB; answering every request with an I/O error",
            v.sectors,
            expected >> 20
        );
        return Volume::Unusable;
    }
    let read_only = kind == VolumeKind::TemplateRoot;
    info!(
        "storage: serving {name} {} ({} MiB at sector {}{}) on {}",
        match kind {
            VolumeKind::Private => "its volume",
            VolumeKind::TemplateRoot => "its template's root",
        },
        bytes.unwrap_or(0) >> 20,
        v.first_sector,
        if read_only { ", read-only" } else { "" },
        c.channel
    );
    Volume::Found {
        first_sector: v.first_sector,
        geometry: VolumeGeometry {
            sectors: v.sectors,
            read_only,
            max_sectors_per_request: max,
        },
    }
}

/// One client.
pub struct Client {
    /// The qube's name (its private volume's name), or its root channel's.
    name: String,
    channel: Option<Channel>,
    pools: Option<Pools>,
    volume: Volume,
    /// A response its ring had no room for: sent before any new request is taken.
    pending: Option<BlockResponse>,
    /// What its requests did.
    pub counters: Counters,
    /// `counters` when last logged.
    reported: Counters,
}

/// An operation, as the log shows it.
struct Show<'a>(&'a BlockOp);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            BlockOp::Info => f.write_str("info"),
            BlockOp::Flush => f.write_str("flush"),
            BlockOp::Read {
                sector,
                count,
                pool_offset,
            } => write!(
                f,
                "read of {count} sectors at {sector} into pool offset {pool_offset:#x}"
            ),
            BlockOp::Write {
                sector,
                count,
                pool_offset,
            } => write!(
                f,
                "write of {count} sectors at {sector} from pool offset {pool_offset:#x}"
            ),
            BlockOp::Discard { sector, count } => {
                write!(f, "discard of {count} sectors at {sector}")
            }
        }
    }
}

impl Client {
    /// Opens `c`'s channel and finds its volume on `disk` (logging what is wrong, if
    /// anything: such a client is answered `Io` for everything).
    pub fn open(boot: &Boot, c: &StorageClient, disk: &Disk) -> Client {
        let name = c.qube.as_str();
        let mut channel = match Channel::open_named(boot, c.channel.as_str()) {
            Ok(ch) => Some(ch),
            Err(e) => {
                error!("storage: {name}: cannot open channel {}: {e}", c.channel);
                None
            }
        };
        let pools = match channel.as_mut().map(|ch| ch.bulk().map(Pools::take)) {
            Some(Some(Ok(p))) => Some(p),
            Some(Some(Err(e))) => {
                error!("storage: {name}: channel {}: its bulk area: {e}", c.channel);
                None
            }
            Some(None) => {
                error!(
                    "storage: {name}: channel {} has no bulk area; no data can move",
                    c.channel
                );
                None
            }
            None => None,
        };
        let max = pools
            .as_ref()
            .map_or(0, |p| MAX_SECTORS.min(p.len / SECTOR_SIZE));
        let volume = find_volume(c, disk, max);
        // A root channel's log lines name the channel (`bob.root`), a private one the qube.
        let name = match c.volume {
            ClientVolume::Private { .. } => name,
            ClientVolume::TemplateRoot { .. } => c.channel.as_str(),
        };
        Client {
            name: String::from(name),
            channel,
            pools,
            volume,
            pending: None,
            counters: Counters::default(),
            reported: Counters::default(),
        }
    }

    /// Whether a response waits for room in the client's ring.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Serves up to [`BUDGET`] of the client's requests; true if it did anything.
    pub fn serve(&mut self, disk: &mut Disk, bounce: &mut [u8]) -> bool {
        let mut busy = false;
        if let Some(resp) = self.pending.take() {
            match self.send(resp) {
                Ok(true) => busy = true,
                Ok(false) => {
                    self.pending = Some(resp);
                    return false;
                }
                Err(e) => {
                    self.failed(e);
                    return true;
                }
            }
        }
        for _ in 0..BUDGET {
            let Some(ch) = self.channel.as_mut() else {
                return busy;
            };
            let got = ch.try_recv_with(|bytes| match block::decode_request(bytes) {
                Ok(req) => Ok(req),
                // The tag the client meant, if the message starts with one.
                Err(_) => {
                    Err(postcard::take_from_bytes::<u32>(bytes).map_or(UNKNOWN_TAG, |(tag, _)| tag))
                }
            });
            let resp = match got {
                Ok(None) => return busy,
                Ok(Some(Ok(req))) => self.handle(req, disk, bounce),
                Ok(Some(Err(tag))) => {
                    self.refuse_garbage(tag);
                    BlockResponse {
                        tag,
                        result: Err(BlockError::BadRequest),
                    }
                }
                Err(e) => {
                    self.failed(e);
                    return true;
                }
            };
            busy = true;
            self.counters.requests += 1;
            match self.send(resp) {
                Ok(true) => {}
                Ok(false) => {
                    self.pending = Some(resp);
                    return busy;
                }
                Err(e) => {
                    self.failed(e);
                    return busy;
                }
            }
        }
        busy
    }

    /// Sends `resp` if the ring has room: `Ok(false)` if not.
    fn send(&mut self, resp: BlockResponse) -> Result<bool, ChannelError> {
        match self.channel.as_mut() {
            Some(ch) => ch.try_send(&resp),
            None => Ok(true),
        }
    }

    /// Carries out one request, or refuses it.
    fn handle(&mut self, req: BlockRequest, disk: &mut Disk, bounce: &mut [u8]) -> BlockResponse {
        let result = self.carry_out(&req.op, disk, bounce);
        match result {
            Err(BlockError::Io) => self.counters.io_errors += 1,
            Err(e) => self.refuse(&req, e),
            Ok(_) => {}
        }
        BlockResponse {
            tag: req.tag,
            result,
        }
    }

    fn carry_out(
        &mut self,
        op: &BlockOp,
        disk: &mut Disk,
        bounce: &mut [u8],
    ) -> Result<BlockReply, BlockError> {
        let Volume::Found {
            first_sector,
            geometry,
        } = self.volume
        else {
            return Err(BlockError::Io);
        };
        let (Some(ch), Some(pools)) = (self.channel.as_mut(), self.pools.as_ref()) else {
            return Err(BlockError::Io);
        };
        let checked = block::check(op, &geometry, pools.len)?;
        // Inside the volume (`check`), which lies inside the disk (the table was checked).
        let at = first_sector
            .checked_add(checked.sectors.start)
            .ok_or(BlockError::Io)?;
        let (start, end) = (checked.pool.start, checked.pool.end);
        let len = (end - start) as usize;
        match *op {
            BlockOp::Info => Ok(BlockReply::Info {
                sectors: geometry.sectors,
                read_only: geometry.read_only,
                max_sectors_per_request: geometry.max_sectors_per_request,
                version: BLOCK_VERSION,
            }),
            BlockOp::Read { .. } => {
                let data = bounce.get_mut(..len).ok_or(BlockError::Io)?;
                disk.blk
                    .read(at, data)
                    .map_err(|e| io(self.name.as_str(), e))?;
                // Test builds only: a hostile storage qube (only template roots are
                // read-only, `find_volume`).
                #[cfg(feature = "test-hooks")]
                if geometry.read_only {
                    crate::test_hooks::tamper(&self.name, checked.sectors.start, data);
                }
                let bulk = ch.bulk().ok_or(BlockError::Io)?;
                pools.put(bulk, start, data).map_err(|_| BlockError::Io)?;
                self.counters.reads += 1;
                self.counters.read_bytes += len as u64;
                Ok(BlockReply::Done)
            }
            BlockOp::Write { .. } => {
                let data = bounce.get_mut(..len).ok_or(BlockError::Io)?;
                let bulk = ch.bulk().ok_or(BlockError::Io)?;
                pools.get(bulk, start, data).map_err(|_| BlockError::Io)?;
                disk.blk
                    .write(at, data)
                    .map_err(|e| io(self.name.as_str(), e))?;
                self.counters.writes += 1;
                self.counters.written_bytes += len as u64;
                Ok(BlockReply::Done)
            }
            BlockOp::Flush => {
                disk.blk.flush().map_err(|e| io(self.name.as_str(), e))?;
                self.counters.flushes += 1;
                Ok(BlockReply::Done)
            }
            BlockOp::Discard { .. } => {
                // Accepted and ignored: the sectors keep their bytes (the protocol allows
                // old bytes or zeros after a discard).
                self.counters.discards += 1;
                Ok(BlockReply::Done)
            }
        }
    }

    /// Logs a refused request (the first [`LOGGED_REFUSALS`]).
    fn refuse(&mut self, req: &BlockRequest, e: BlockError) {
        self.counters.refused += 1;
        if self.counters.refusals_logged < LOGGED_REFUSALS {
            self.counters.refusals_logged += 1;
            warn!(
                "storage: {}: refused request {}: {} ({e:?})",
                self.name.as_str(),
                req.tag,
                Show(&req.op)
            );
            self.say_when_quiet();
        }
    }

    /// Logs a message that is not a request (the first [`LOGGED_REFUSALS`]).
    fn refuse_garbage(&mut self, tag: u32) {
        self.counters.refused += 1;
        if self.counters.refusals_logged < LOGGED_REFUSALS {
            self.counters.refusals_logged += 1;
            warn!(
                "storage: {}: refused a message that is not a block request (tag {tag}): \
                 BadRequest",
                self.name.as_str()
            );
            self.say_when_quiet();
        }
    }

    /// After the last refusal logged one by one: says the rest are only counted.
    fn say_when_quiet(&self) {
        if self.counters.refusals_logged == LOGGED_REFUSALS {
            warn!(
                "storage: {}: {LOGGED_REFUSALS} refusals logged; further ones are counted \
                 (see its summary line)",
                self.name.as_str()
            );
        }
    }

    /// The channel failed: a reset (the client restarted) starts afresh, a breach ends it.
    fn failed(&mut self, e: ChannelError) {
        self.pending = None;
        let name = self.name.as_str();
        match e {
            ChannelError::Reset => {
                info!("storage: {name}: its channel was reset (the qube restarted)");
                let bulk = self.channel.as_mut().and_then(|ch| ch.bulk());
                self.pools = match bulk.map(Pools::take) {
                    Some(Ok(p)) => Some(p),
                    Some(Err(e)) => {
                        error!("storage: {name}: its bulk area after the reset: {e}");
                        None
                    }
                    None => None,
                };
            }
            e => {
                warn!("storage: {name}: channel closed: {e}; no more requests from it");
                self.channel = None;
            }
        }
    }

    /// Logs what the client's requests did since the last such line, if anything.
    pub fn report(&mut self) {
        let c = self.counters;
        if c == self.reported {
            return;
        }
        self.reported = c;
        info!(
            "storage: {}: {} requests: {} reads ({} KiB), {} writes ({} KiB), {} flushes, {} \
             discards, {} refused ({} logged), {} I/O errors",
            self.name.as_str(),
            c.requests,
            c.reads,
            c.read_bytes / 1024,
            c.writes,
            c.written_bytes / 1024,
            c.flushes,
            c.discards,
            c.refused,
            c.refusals_logged,
            c.io_errors
        );
    }

    /// Marks the channel as about to sleep; true if a message is already waiting (or the
    /// channel failed: the next pass looks at it again).
    pub fn prepare_wait(&mut self) -> bool {
        let Some(ch) = self.channel.as_mut() else {
            return false;
        };
        match ch.prepare_wait() {
            Ok(waiting) => waiting,
            Err(e) => {
                // A reset seen here must take the surface again like any other.
                self.failed(e);
                true
            }
        }
    }

    /// After a sleep.
    pub fn finish_wait(&mut self) {
        if let Some(ch) = self.channel.as_mut() {
            ch.finish_wait();
        }
    }
}

/// A disk error, logged; the client gets `Io`.
fn io(name: &str, e: bulkhead_rt::virtio::blk::BlkError) -> BlockError {
    error!("storage: {name}: disk error: {e}");
    BlockError::Io
}

/// The bounce buffer: room for the largest request.
pub fn bounce_buffer() -> Vec<u8> {
    alloc::vec![0u8; MAX_SECTORS as usize * SECTOR_SIZE as usize]
}

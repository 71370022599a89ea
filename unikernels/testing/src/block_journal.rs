//! `block-journal`: a journal on the private volume, for the test that kills QEMU in the
//! middle of heavy writes and checks, in the next boot, that every acknowledged write is
//! there (`cargo xtask test storage-crash`, `docs/storage.md`).
//!
//! The volume, from sector 0, holds records numbered from 1, one after the other, each 1 to
//! 64 whole sectors (the length comes from the writing boot and the sequence number, so
//! records differ in size):
//!
//! ```text
//!   0   magic        "BKJRNL01"
//!   8   boot         u32   the boot that wrote it: 1 on a fresh volume, then one more
//!                          than the last record found at start
//!   12  sectors      u32   the record's length, its header's sector included (1 to 64)
//!   16  seq          u64   1, 2, 3, ... without a gap
//!   24  payload sum  u64   FNV-1a of the payload
//!   32  header sum   u64   FNV-1a of bytes 0..32
//!   40               24 zero bytes
//!   64  payload      to the record's end: words derived from (boot, seq)
//! ```
//!
//! On start it reads the journal from sector 0 and checks every record: its header, its
//! length, its payload against the checksum and against the words (boot, seq) give. It
//! stops at the first sector that is no header (zeros on a fresh volume). A last record
//! whose payload does not match its checksum is a *torn tail*: a write the kill cut short,
//! which was never acknowledged (the harness checks that). Then it looks 256 sectors past
//! the end for a header with a later sequence number: one there means a record before it
//! is missing or damaged (a gap), which is corruption. It logs `block-journal: boot B found
//! N records from earlier boots (...), all intact; then zeros` (or `; torn tail at seq X
//! (not acknowledged)`, ...), or what is wrong and exits [`EXIT_CORRUPT`].
//!
//! Then it appends records after the last intact one, as fast as it can, each a Write
//! followed by a Flush, and logs `block-journal: acked seq S (K KiB written this boot, T
//! ms)` once the Flush is `Done`: for the first 20 records of the boot, then for every 10th
//! sequence number (the console is slow). It never stops: when the next record does not fit
//! the volume it logs `block-journal: volume full at seq S` and waits forever.

use alloc::vec;
use alloc::vec::Vec;

use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_rt::{Args, Boot, error, info, now_ns};

use crate::block::{EXIT_CORRUPT, EXIT_TOO_SMALL, Link, fnv, mix, pool_offset};

/// A record's first bytes.
const MAGIC: [u8; 8] = *b"BKJRNL01";
/// Bytes of a record's header; the payload follows in the same sector.
const HEADER_LEN: usize = 64;
/// Longest record, in sectors.
const MAX_RECORD: u32 = 64;
/// Bytes per sector.
const SECTOR: usize = SECTOR_SIZE as usize;
/// Acknowledgements logged one by one at the start of a boot; after them, every
/// [`ACK_EVERY`]th sequence number.
const ACKS_LOGGED: u64 = 20;
/// See [`ACKS_LOGGED`].
const ACK_EVERY: u64 = 10;
/// Sectors looked at past the journal's end for a later record (which would mean a gap).
const LOOK_AHEAD: u32 = 256;

/// A record's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    boot: u32,
    sectors: u32,
    seq: u64,
    sum: u64,
}

/// What a sector holds, as the first sector of a record.
enum Sector {
    /// Zeros: nothing was ever written there.
    Blank,
    /// Bytes that are no record header (the rest of an older record cut short).
    Other,
    /// A header whose own checksum matches.
    Header(Header),
}

impl Header {
    fn encode(&self, s: &mut [u8]) {
        s[..HEADER_LEN].fill(0);
        s[..8].copy_from_slice(&MAGIC);
        s[8..12].copy_from_slice(&self.boot.to_le_bytes());
        s[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        s[16..24].copy_from_slice(&self.seq.to_le_bytes());
        s[24..32].copy_from_slice(&self.sum.to_le_bytes());
        let check = fnv(&s[..32]);
        s[32..40].copy_from_slice(&check.to_le_bytes());
    }

    fn decode(s: &[u8]) -> Sector {
        if s.iter().all(|&b| b == 0) {
            return Sector::Blank;
        }
        let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
        let half = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
        if s.len() < HEADER_LEN
            || s[..8] != MAGIC
            || word(32) != fnv(&s[..32])
            || s[40..HEADER_LEN].iter().any(|&b| b != 0)
        {
            return Sector::Other;
        }
        Sector::Header(Header {
            boot: half(8),
            sectors: half(12),
            seq: word(16),
            sum: word(24),
        })
    }
}

/// The length of record `seq` written by boot `boot`, in sectors: 1 to [`MAX_RECORD`].
fn length(boot: u32, seq: u64) -> u32 {
    let r = mix(seq ^ (u64::from(boot) << 40) ^ 0x6c65_6e67_7468);
    1 + (r % u64::from(MAX_RECORD)) as u32
}

/// The payload of record `seq` written by boot `boot`, into `buf` (a multiple of 8 bytes).
fn payload(boot: u32, seq: u64, buf: &mut [u8]) {
    let base = mix((u64::from(boot) << 40) ^ seq ^ 0x7061_796c_6f61_6400);
    for (i, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&mix(base.wrapping_add(i as u64)).to_le_bytes());
    }
}

/// Record `seq` of boot `boot`, whole, into the start of `buf`; returns its bytes.
fn record(boot: u32, seq: u64, buf: &mut [u8]) -> usize {
    let sectors = length(boot, seq);
    let len = sectors as usize * SECTOR;
    payload(boot, seq, &mut buf[HEADER_LEN..len]);
    let sum = fnv(&buf[HEADER_LEN..len]);
    Header {
        boot,
        sectors,
        seq,
        sum,
    }
    .encode(&mut buf[..HEADER_LEN]);
    len
}

/// The volume read through a window of up to `max` sectors, so that a scan over many small
/// records costs few requests.
struct Window {
    first: u64,
    sectors: u64,
    buf: Vec<u8>,
    max: u32,
    volume: u64,
    reads: u64,
}

impl Window {
    /// Sectors `at..at + n` (inside the volume, `n` at most `max`).
    fn get(&mut self, link: &mut Link, at: u64, n: u32) -> Result<&[u8], i32> {
        let end = at + u64::from(n);
        if at < self.first || end > self.first + self.sectors {
            let count = u64::from(self.max).min(self.volume - at);
            let bytes = count as usize * SECTOR;
            let pool_at = pool_offset(self.reads, bytes as u32, link.pool);
            link.read(at, &mut self.buf[..bytes], pool_at)?;
            self.reads += 1;
            (self.first, self.sectors) = (at, count);
        }
        let from = (at - self.first) as usize * SECTOR;
        Ok(&self.buf[from..from + n as usize * SECTOR])
    }
}

/// How the journal ends, after its last intact record.
enum Tail {
    /// Zeros.
    Clean,
    /// Bytes that are no record header.
    Other,
    /// Record `seq`'s header, and a payload that does not match its checksum.
    Torn { seq: u64 },
    /// The end of the volume.
    Full,
}

impl core::fmt::Display for Tail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Tail::Clean => f.write_str("then zeros"),
            Tail::Other => f.write_str("then bytes that are no record header"),
            Tail::Torn { seq } => write!(f, "torn tail at seq {seq} (not acknowledged)"),
            Tail::Full => f.write_str("the volume is full"),
        }
    }
}

/// What the scan found.
struct Found {
    /// Intact records: sequence numbers 1 to `records`.
    records: u64,
    /// The boot that wrote the last of them (0: none).
    last_boot: u32,
    /// The sector after the last of them.
    end: u64,
    /// Bytes of them.
    bytes: u64,
    tail: Tail,
}

/// `block-journal`.
pub fn journal(boot: &Boot, args: &Args<'_>) -> i32 {
    match run(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let mut link = Link::open(boot, args)?;
    let geometry = link.info()?;
    let max = geometry
        .max_sectors_per_request
        .min(link.pool / SECTOR_SIZE);
    if max < MAX_RECORD || geometry.sectors < u64::from(MAX_RECORD) {
        error!(
            "block-journal: a volume of {} sectors, {max} per request, is too small for records \
             of up to {MAX_RECORD} sectors",
            geometry.sectors
        );
        return Err(EXIT_TOO_SMALL);
    }
    let t0 = now_ns();
    let mut window = Window {
        first: 0,
        sectors: 0,
        buf: vec![0u8; max as usize * SECTOR],
        max,
        volume: geometry.sectors,
        reads: 0,
    };
    let found = scan(&mut link, &mut window)?;
    let boot_no = found.last_boot + 1;
    info!(
        "block-journal: boot {boot_no} found {} records from earlier boots (last seq {}, {} KiB, \
         read in {} requests, {} ms), all intact; {tail}",
        found.records,
        found.records,
        found.bytes / 1024,
        window.reads,
        (now_ns() - t0) / 1_000_000,
        tail = found.tail
    );
    drop(window);
    append(&mut link, geometry.sectors, boot_no, &found)
}

/// Reads the journal from sector 0 and checks it (see the module documentation).
fn scan(link: &mut Link, win: &mut Window) -> Result<Found, i32> {
    let mut f = Found {
        records: 0,
        last_boot: 0,
        end: 0,
        bytes: 0,
        tail: Tail::Full,
    };
    let mut want = vec![0u8; MAX_RECORD as usize * SECTOR];
    while f.end < win.volume {
        let (at, seq) = (f.end, f.records + 1);
        let h = match Header::decode(win.get(link, at, 1)?) {
            Sector::Blank => {
                f.tail = Tail::Clean;
                break;
            }
            Sector::Other => {
                f.tail = Tail::Other;
                break;
            }
            Sector::Header(h) => h,
        };
        if h.seq != seq {
            error!(
                "block-journal: sector {at} holds the header of seq {}, where seq {seq}'s belongs",
                h.seq
            );
            return Err(EXIT_CORRUPT);
        }
        if h.boot == 0
            || h.boot < f.last_boot
            || h.sectors != length(h.boot, seq)
            || at + u64::from(h.sectors) > win.volume
        {
            error!(
                "block-journal: seq {seq} at sector {at} says boot {} (the one before was boot {}) \
                 and {} sectors: not a record this journal writes",
                h.boot, f.last_boot, h.sectors
            );
            return Err(EXIT_CORRUPT);
        }
        let rec = win.get(link, at, h.sectors)?;
        if fnv(&rec[HEADER_LEN..]) != h.sum {
            f.tail = Tail::Torn { seq };
            break;
        }
        let want = &mut want[..rec.len() - HEADER_LEN];
        payload(h.boot, seq, want);
        if rec[HEADER_LEN..] != *want {
            error!(
                "block-journal: seq {seq} at sector {at} matches its checksum but not the payload \
                 of boot {} seq {seq}",
                h.boot
            );
            return Err(EXIT_CORRUPT);
        }
        f.records = seq;
        f.last_boot = h.boot;
        f.end = at + u64::from(h.sectors);
        f.bytes += rec.len() as u64;
    }
    // A later record past the end means one before it is missing or damaged.
    let from = f.end + 1;
    if from < win.volume {
        let left = u32::try_from(win.volume - from).unwrap_or(u32::MAX);
        let n = LOOK_AHEAD.min(win.max).min(left);
        let sectors = win.get(link, from, n)?;
        for (i, s) in sectors.chunks_exact(SECTOR).enumerate() {
            if let Sector::Header(h) = Header::decode(s)
                && h.seq > f.records
            {
                let next = f.records + 1;
                let what = match f.tail {
                    Tail::Torn { .. } => "fails its checksum",
                    _ => "is missing",
                };
                error!(
                    "block-journal: seq {next} at sector {} {what}, yet seq {} lies at sector {}: \
                     a gap before the last record on disk",
                    f.end,
                    h.seq,
                    from + i as u64
                );
                return Err(EXIT_CORRUPT);
            }
        }
    }
    Ok(f)
}

/// Appends records after the journal's end, each written and flushed before the next, until
/// the volume is full; then waits forever.
fn append(link: &mut Link, volume: u64, boot_no: u32, found: &Found) -> Result<(), i32> {
    let mut buf = vec![0u8; MAX_RECORD as usize * SECTOR];
    let (mut at, mut seq) = (found.end, found.records + 1);
    let (t0, mut written, mut acked) = (now_ns(), 0u64, 0u64);
    loop {
        if at + u64::from(length(boot_no, seq)) > volume {
            info!("block-journal: volume full at seq {}", seq - 1);
            loop {
                bulkhead_rt::wait_event(None);
            }
        }
        let len = record(boot_no, seq, &mut buf);
        link.write(at, &buf[..len], pool_offset(seq, len as u32, link.pool))?;
        link.flush()?;
        written += len as u64;
        acked += 1;
        if acked <= ACKS_LOGGED || seq.is_multiple_of(ACK_EVERY) {
            info!(
                "block-journal: acked seq {seq} ({} KiB written this boot, {} ms)",
                written / 1024,
                (now_ns() - t0) / 1_000_000
            );
        }
        at += (len / SECTOR) as u64;
        seq += 1;
    }
}

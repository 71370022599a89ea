//! `block-hostile`: a client that asks the storage qube for what is not its own.
//!
//! After `Info` (its volume's size), it sends requests the storage qube must refuse, each
//! with the error it must get: sectors past the end of its volume (where another qube's
//! volume may lie on the disk), a count past the limit, a zero count, a pool offset past its
//! pool, one that is not sector-aligned, a pool range that runs off the pool, sector
//! `u64::MAX`, a write and a discard past the end, bytes that are not a request (with and
//! without a tag in front), a request with a byte too many; then a flood of `flood=` (2000)
//! bad reads sent as fast as the ring takes them. It logs what each got back; every answer
//! must be an error and never data, and the right error. Last, a read of its own sector 0
//! must still work: the storage qube served on. Exit 0 when all that held, else
//! [`EXIT_ANSWERED`] (the log line says which request got what).

use bulkhead_abi::block::{BlockError, BlockOp, BlockRequest, SECTOR_SIZE};
use bulkhead_rt::{Args, Boot, error, info, now_ns};

use crate::block::{EXIT_NO_ANSWER, Link};

/// Exit status when a bad request was not refused as it should have been.
pub const EXIT_ANSWERED: i32 = 45;

/// A bad message and the error it must get.
enum Bad {
    /// A request.
    Op(&'static str, BlockOp, BlockError),
    /// Raw bytes (not a request), and the tag the answer must carry.
    Bytes(&'static str, &'static [u8], u32),
}

/// `block-hostile`.
pub fn hostile(boot: &Boot, args: &Args<'_>) -> i32 {
    match run(boot, args) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(boot: &Boot, args: &Args<'_>) -> Result<(), i32> {
    let mut link = Link::open(boot, args)?;
    let flood: u64 = args
        .get("flood")
        .and_then(|f| f.parse().ok())
        .unwrap_or(2000);
    let g = link.info()?;
    let (end, max, pool) = (g.sectors, g.max_sectors_per_request, link.pool);
    info!("block-hostile: my volume has {end} sectors, {max} per request, pools of {pool} bytes");
    let read = |sector, count, pool_offset| BlockOp::Read {
        sector,
        count,
        pool_offset,
    };
    let bad = [
        Bad::Op(
            "a read past my volume (where a neighbour's may lie)",
            read(end, 8, 0),
            BlockError::OutOfRange,
        ),
        Bad::Op(
            "a read across my volume's end",
            read(end - 1, 2, 0),
            BlockError::OutOfRange,
        ),
        Bad::Op(
            "a read of a huge count",
            read(0, u32::MAX, 0),
            BlockError::TooLong,
        ),
        Bad::Op(
            "a read of one sector more than allowed",
            read(0, max + 1, 0),
            BlockError::TooLong,
        ),
        Bad::Op(
            "a read of zero sectors",
            read(0, 0, 0),
            BlockError::BadRequest,
        ),
        Bad::Op(
            "a read into an offset past the pool",
            read(0, 1, pool),
            BlockError::BadPoolRange,
        ),
        Bad::Op(
            "a read into an unaligned pool offset",
            read(0, 1, 1),
            BlockError::Unaligned,
        ),
        Bad::Op(
            "a read running off the pool's end",
            read(0, 2, pool - SECTOR_SIZE),
            BlockError::BadPoolRange,
        ),
        Bad::Op(
            "a read of sector u64::MAX",
            read(u64::MAX, 1, 0),
            BlockError::OutOfRange,
        ),
        Bad::Op(
            "a write past my volume",
            BlockOp::Write {
                sector: end,
                count: 1,
                pool_offset: 0,
            },
            BlockError::OutOfRange,
        ),
        Bad::Op(
            "a discard past my volume",
            BlockOp::Discard {
                sector: end - 4,
                count: 8,
            },
            BlockError::OutOfRange,
        ),
        Bad::Bytes("garbage bytes", &[0xff; 16], u32::MAX),
        Bad::Bytes("a tag then an unknown operation", &[0x07, 0x63, 0x01], 7),
        // Tag 9, Info, and one byte too many.
        Bad::Bytes("a request with a byte too many", &[0x09, 0x00, 0x00], 9),
    ];
    let mut refused = 0u64;
    for b in &bad {
        let (what, want, tag) = match b {
            Bad::Op(what, op, want) => {
                let tag = link.tag();
                link.send_raw(&BlockRequest { tag, op: *op })?;
                (*what, *want, tag)
            }
            Bad::Bytes(what, bytes, tag) => {
                send_bytes(&mut link, bytes)?;
                (*what, BlockError::BadRequest, *tag)
            }
        };
        let r = link.response()?;
        if r.tag != tag || r.result != Err(want) {
            error!(
                "block-hostile: {what}: answered {:?} to tag {}, wanted {want:?} to tag {tag}",
                r.result, r.tag
            );
            return Err(EXIT_ANSWERED);
        }
        refused += 1;
        info!("block-hostile: {what}: refused {want:?}");
    }
    let t0 = now_ns();
    let (mut sent, mut answered) = (0u64, 0u64);
    while answered < flood {
        while sent < flood {
            let op = read(end + sent, 1, 0);
            let tag = link.tag();
            if !link.try_send_raw(&BlockRequest { tag, op })? {
                break;
            }
            sent += 1;
        }
        if sent == answered {
            bulkhead_rt::yield_now();
            continue;
        }
        let r = link.response()?;
        if r.result != Err(BlockError::OutOfRange) {
            error!(
                "block-hostile: flood: answered {:?} to tag {}",
                r.result, r.tag
            );
            return Err(EXIT_ANSWERED);
        }
        answered += 1;
    }
    refused += flood;
    info!(
        "block-hostile: flood: {flood} reads past my volume, every one refused OutOfRange ({} ms)",
        (now_ns() - t0) / 1_000_000
    );
    let mut own = [0u8; SECTOR_SIZE as usize];
    link.read(0, &mut own, 0).map_err(|status| {
        error!("block-hostile: my own sector 0 is no longer served");
        status.max(EXIT_NO_ANSWER)
    })?;
    info!(
        "block-hostile: {refused} bad requests, every one refused; my own sector 0 still \
         reads ({} requests in all)",
        link.requests
    );
    Ok(())
}

/// Sends `bytes` as one message, as they are (a fixed-size array is serialised without a
/// length).
fn send_bytes(link: &mut Link, bytes: &[u8]) -> Result<(), i32> {
    match bytes.len() {
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            link.send_raw(&a)
        }
        3 => {
            let mut a = [0u8; 3];
            a.copy_from_slice(bytes);
            link.send_raw(&a)
        }
        n => {
            error!("block-hostile: no way to send {n} raw bytes");
            Err(EXIT_NO_ANSWER)
        }
    }
}

//! The block protocol: how a client qube reads and writes a volume the storage qube serves
//! (issue #17, `docs/storage.md`).
//!
//! Each client has one channel to the storage qube, with a bulk area: side A the client,
//! side B the storage qube. The client sends [`BlockRequest`]s on ring A→B; the storage
//! qube answers each with one [`BlockResponse`] on ring B→A, carrying the request's `tag`
//! (the client's number for it; responses may come in any order). Data never travels in
//! the rings, only through the bulk area ([`crate::channel`]), whose two pools are the
//! same size:
//!
//! - [`BlockOp::Write`]: the client puts the data in *its own* pool at `pool_offset`; the
//!   storage qube reads it from there (its read-only view of the client's pool) and answers
//!   when it is on the disk (or in the disk's cache: see [`BlockOp::Flush`]).
//! - [`BlockOp::Read`]: the storage qube puts the data in *its own* pool at `pool_offset`,
//!   then answers; the client reads it from its read-only view of the storage qube's pool.
//!
//! A pool range stays the request's until the response arrives: the client must not change
//! what it asked to be written, nor read what it asked to be read, before then. Each side
//! decides only where in *its own* pool it writes, so neither can overwrite the other's
//! memory whatever it sends.
//!
//! Both ends judge a request with the one function [`check`]: the client before sending
//! (a refused request is a bug of its own), the storage qube on receipt (everything a
//! client sends is hostile). Sectors are [`SECTOR_SIZE`] bytes and count from the start of
//! the volume; the storage qube alone knows where the volume lies on the disk.
//!
//! The client's first request is [`BlockOp::Info`]; it must refuse a reply whose `version`
//! is not [`BLOCK_VERSION`]. Adding a variant at the end of an enum is compatible; anything
//! else bumps the version.

use core::ops::Range;
use serde::{Deserialize, Serialize};

/// Bytes per sector: the unit of every sector number and count.
pub const SECTOR_SIZE: u32 = 512;
/// Version of the block protocol (in [`BlockReply::Info`]).
pub const BLOCK_VERSION: u16 = 1;
/// Bytes per slot of a block channel: the largest message (26 bytes) with the slot header
/// fits one 64-byte cache line.
pub const BLOCK_SLOT_SIZE: u32 = 64;

/// A request from the client, answered by one [`BlockResponse`] with the same `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRequest {
    /// The client's number for the request (unique among its requests in flight).
    pub tag: u32,
    /// What to do.
    pub op: BlockOp,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOp {
    /// The volume's size and limits, and the protocol version (the first request).
    Info,
    /// Read `count` sectors from `sector` into the storage qube's pool at `pool_offset`.
    Read {
        /// First sector, from the start of the volume.
        sector: u64,
        /// Sectors to read (1 to the volume's `max_sectors_per_request`).
        count: u32,
        /// Byte offset in the storage qube's pool (a multiple of [`SECTOR_SIZE`]).
        pool_offset: u32,
    },
    /// Write `count` sectors at `sector` from the client's pool at `pool_offset`.
    Write {
        /// First sector, from the start of the volume.
        sector: u64,
        /// Sectors to write (1 to the volume's `max_sectors_per_request`).
        count: u32,
        /// Byte offset in the client's pool (a multiple of [`SECTOR_SIZE`]).
        pool_offset: u32,
    },
    /// Make every write answered so far durable (the disk's cache written out).
    Flush,
    /// The client no longer needs `count` sectors from `sector`: the disk may forget them
    /// (a later read returns their old bytes or zeros).
    Discard {
        /// First sector, from the start of the volume.
        sector: u64,
        /// Sectors to discard (1 to the volume's `max_sectors_per_request`).
        count: u32,
    },
}

/// The storage qube's answer to the request numbered `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// The request's `tag`.
    pub tag: u32,
    /// What came of it.
    pub result: Result<BlockReply, BlockError>,
}

/// A request done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockReply {
    /// The answer to [`BlockOp::Info`].
    Info {
        /// Size of the volume in sectors.
        sectors: u64,
        /// Whether writes and discards are refused ([`BlockError::ReadOnly`]).
        read_only: bool,
        /// Most sectors one Read, Write or Discard may name.
        max_sectors_per_request: u32,
        /// The storage qube's [`BLOCK_VERSION`].
        version: u16,
    },
    /// A Read (the data is in the storage qube's pool), Write, Flush or Discard is done.
    Done,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockError {
    /// The sectors asked for reach past the end of the volume.
    OutOfRange,
    /// The request names more sectors than the volume's `max_sectors_per_request`.
    TooLong,
    /// The pool range (`pool_offset` plus the request's bytes) reaches past the end of the
    /// pool.
    BadPoolRange,
    /// A Write or Discard on a read-only volume (a template's root).
    ReadOnly,
    /// `pool_offset` is not a multiple of [`SECTOR_SIZE`].
    Unaligned,
    /// The disk reported an error; the sectors' contents are unknown (for a write) or were
    /// not delivered (for a read).
    Io,
    /// The storage qube has too many of the client's requests in flight: send it again
    /// after a response arrives.
    Busy,
    /// The request is malformed: it names zero sectors.
    BadRequest,
}

/// What [`check`] judges a request against: the volume as the storage qube serves it to
/// this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeGeometry {
    /// Size of the volume in sectors.
    pub sectors: u64,
    /// Whether writes and discards are refused.
    pub read_only: bool,
    /// Most sectors one Read, Write or Discard may name.
    pub max_sectors_per_request: u32,
}

/// A request [`check`] accepted: where it acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The sectors, from the start of the volume (empty for Info and Flush).
    pub sectors: Range<u64>,
    /// The bytes of the pool the data goes through: the storage qube's for a Read, the
    /// client's for a Write (empty for Info, Flush and Discard).
    pub pool: Range<u32>,
}

/// Judges `op` against `volume` and a pool of `pool_len` bytes (each side's pool of the
/// channel's bulk area is that size). Refused, in this order: a Write or Discard on a
/// read-only volume ([`BlockError::ReadOnly`]); a count of zero ([`BlockError::BadRequest`]);
/// more than `max_sectors_per_request` sectors ([`BlockError::TooLong`]); sectors past the
/// end of the volume ([`BlockError::OutOfRange`]); a pool offset not a multiple of
/// [`SECTOR_SIZE`] ([`BlockError::Unaligned`]); a pool range past the end of the pool
/// ([`BlockError::BadPoolRange`]). Info and Flush always pass. No arithmetic can overflow.
pub fn check(op: &BlockOp, volume: &VolumeGeometry, pool_len: u32) -> Result<Checked, BlockError> {
    let (sector, count, pool_offset) = match *op {
        BlockOp::Info | BlockOp::Flush => {
            return Ok(Checked {
                sectors: 0..0,
                pool: 0..0,
            });
        }
        BlockOp::Read {
            sector,
            count,
            pool_offset,
        } => (sector, count, Some(pool_offset)),
        BlockOp::Write {
            sector,
            count,
            pool_offset,
        } => {
            if volume.read_only {
                return Err(BlockError::ReadOnly);
            }
            (sector, count, Some(pool_offset))
        }
        BlockOp::Discard { sector, count } => {
            if volume.read_only {
                return Err(BlockError::ReadOnly);
            }
            (sector, count, None)
        }
    };
    if count == 0 {
        return Err(BlockError::BadRequest);
    }
    if count > volume.max_sectors_per_request {
        return Err(BlockError::TooLong);
    }
    let end = sector
        .checked_add(u64::from(count))
        .filter(|&end| end <= volume.sectors)
        .ok_or(BlockError::OutOfRange)?;
    let pool = match pool_offset {
        None => 0..0,
        Some(offset) => {
            if offset % SECTOR_SIZE != 0 {
                return Err(BlockError::Unaligned);
            }
            // A u32 count of 512-byte sectors is below 2^41: the product fits a u64.
            let bytes = u64::from(count) * u64::from(SECTOR_SIZE);
            let pool_end = u64::from(offset)
                .checked_add(bytes)
                .filter(|&e| e <= u64::from(pool_len))
                .and_then(|e| u32::try_from(e).ok())
                .ok_or(BlockError::BadPoolRange)?;
            offset..pool_end
        }
    };
    Ok(Checked {
        sectors: sector..end,
        pool,
    })
}

/// Why a message could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The buffer is too small for the message.
    BufferFull,
    /// The bytes are not one message of this protocol: an undefined tag, a truncated
    /// field, or bytes left after the message.
    Malformed,
}

/// Encodes a request into `buf` (at least [`BLOCK_SLOT_SIZE`] − 8 bytes always suffice),
/// returning the used part.
pub fn encode_request<'a>(
    req: &BlockRequest,
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], CodecError> {
    postcard::to_slice(req, buf).map_err(|_| CodecError::BufferFull)
}

/// Decodes one request that fills `bytes` exactly (a hostile client's bytes: any input
/// gives a request or an error).
pub fn decode_request(bytes: &[u8]) -> Result<BlockRequest, CodecError> {
    decode_exact(bytes)
}

/// Encodes a response into `buf` (at least [`BLOCK_SLOT_SIZE`] − 8 bytes always suffice),
/// returning the used part.
pub fn encode_response<'a>(
    resp: &BlockResponse,
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], CodecError> {
    postcard::to_slice(resp, buf).map_err(|_| CodecError::BufferFull)
}

/// Decodes one response that fills `bytes` exactly (the storage qube is untrusted too: any
/// input gives a response or an error).
pub fn decode_response(bytes: &[u8]) -> Result<BlockResponse, CodecError> {
    decode_exact(bytes)
}

fn decode_exact<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(CodecError::Malformed),
    }
}

#[cfg(test)]
mod tests;

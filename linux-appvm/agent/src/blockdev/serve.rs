//! The NBD server's translation, pure over any stream and any [`Volume`]: each NBD request
//! becomes block requests of at most [`Geometry::chunk_sectors`] sectors, one at a time, and
//! one reply. A header with a wrong magic ends the service (the stream cannot be followed
//! after it); any other bad request (unaligned, past the end, zero or too long, unknown) is
//! answered `EINVAL` with the stream kept in step (a WRITE's data is read and dropped).

use super::nbd::{self, Command, EINVAL, EIO, EPERM, Request};
use bulkhead_abi::block::{SECTOR_SIZE, VolumeGeometry};
use std::io::{self, Read, Write};

/// The longest READ answered (bytes): the NBD driver's own limit (65536 sectors); the data
/// is gathered before the reply, so a longer one is refused rather than buffered.
pub const MAX_READ: u32 = 32 << 20;

/// The volume, one block request at a time; errors are errnos for the NBD reply.
pub trait Volume {
    /// Reads `buf.len() / 512` sectors from `sector` (at most `chunk_sectors`).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), u32>;
    /// Writes `data` at `sector` (at most `chunk_sectors`).
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), u32>;
    /// Makes every write answered so far durable.
    fn flush(&mut self) -> Result<(), u32>;
    /// The sectors may be forgotten.
    fn discard(&mut self, sector: u64, count: u32) -> Result<(), u32>;
}

/// The volume as the server splits requests for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Sectors of the volume.
    pub sectors: u64,
    pub read_only: bool,
    /// Most sectors one block request carries: the storage qube's limit, and no more than
    /// the pool holds.
    pub chunk_sectors: u32,
}

impl Geometry {
    /// From the storage qube's `Info` and our pool's size; `None` if not one sector fits.
    pub fn new(v: &VolumeGeometry, pool_bytes: u32) -> Option<Geometry> {
        let chunk_sectors = v.max_sectors_per_request.min(pool_bytes / SECTOR_SIZE);
        (chunk_sectors > 0).then_some(Geometry {
            sectors: v.sectors,
            read_only: v.read_only,
            chunk_sectors,
        })
    }
}

/// `count` sectors from `first` cut into pieces of at most `max` sectors: `(sector, count)`.
pub fn split(first: u64, count: u64, max: u32) -> impl Iterator<Item = (u64, u32)> {
    let max = u64::from(max.max(1));
    let mut at = 0u64;
    std::iter::from_fn(move || {
        if at >= count {
            return None;
        }
        let n = (count - at).min(max);
        let piece = (first.saturating_add(at), n as u32);
        at += n;
        Some(piece)
    })
}

/// What the server did, for its log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub flushes: u64,
    pub trims: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// How the service ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The kernel sent NBD_CMD_DISC.
    Disconnected,
    /// The socket closed.
    Closed,
}

/// Serves NBD requests from `stream` on `volume` until a disconnect, the end of the stream,
/// or an error of the stream (or a wrong magic).
pub fn serve<S: Read + Write, V: Volume>(
    stream: &mut S,
    volume: &mut V,
    g: &Geometry,
    stats: &mut Stats,
) -> io::Result<End> {
    let mut buf = vec![0u8; g.chunk_sectors as usize * SECTOR_SIZE as usize];
    loop {
        let mut header = [0u8; nbd::REQUEST_LEN];
        match stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(End::Closed),
            Err(e) => return Err(e),
        }
        let req = Request::parse(&header).map_err(|nbd::BadMagic(m)| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a request with magic {m:#010x}, not {:#010x}",
                    nbd::REQUEST_MAGIC
                ),
            )
        })?;
        stats.requests += 1;
        let sectors = |req: &Request| req.range(g.sectors, SECTOR_SIZE);
        let writable = |r: Result<(u64, u64), u32>| match r {
            Ok(_) if g.read_only => Err(EPERM),
            other => other,
        };
        let error = match req.command {
            Command::Disconnect => return Ok(End::Disconnected),
            Command::Read => {
                let data = match sectors(&req) {
                    Ok(_) if req.len > MAX_READ => Err(EINVAL),
                    Ok((first, count)) => read(volume, first, count, g.chunk_sectors),
                    Err(e) => Err(e),
                };
                match data {
                    Ok(data) => {
                        stream.write_all(&nbd::reply(0, req.handle))?;
                        stream.write_all(&data)?;
                        stream.flush()?;
                        stats.read_bytes += data.len() as u64;
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Command::Write => {
                let range = writable(sectors(&req));
                let mut result = range.map(|_| ());
                match range {
                    Ok((first, count)) => {
                        for (sector, n) in split(first, count, g.chunk_sectors) {
                            let piece = &mut buf[..n as usize * SECTOR_SIZE as usize];
                            stream.read_exact(piece)?;
                            if result.is_ok() {
                                result = volume.write(sector, piece);
                            }
                        }
                        if result.is_ok() && req.flags & nbd::CMD_FLAG_FUA != 0 {
                            result = volume.flush();
                        }
                        if result.is_ok() {
                            stats.written_bytes += u64::from(req.len);
                        }
                    }
                    Err(_) => drain(stream, u64::from(req.len), &mut buf)?,
                }
                result.err().unwrap_or(0)
            }
            Command::Flush => {
                stats.flushes += 1;
                volume.flush().err().unwrap_or(0)
            }
            Command::Trim => {
                stats.trims += 1;
                match writable(sectors(&req)) {
                    Ok((first, count)) => split(first, count, g.chunk_sectors)
                        .try_for_each(|(sector, n)| volume.discard(sector, n))
                        .err()
                        .unwrap_or(0),
                    Err(e) => e,
                }
            }
            Command::Other(_) => EINVAL,
        };
        if error != 0 {
            stats.errors += 1;
        }
        stream.write_all(&nbd::reply(error, req.handle))?;
        stream.flush()?;
    }
}

/// Reads `count` sectors from `first` in pieces.
fn read<V: Volume>(volume: &mut V, first: u64, count: u64, chunk: u32) -> Result<Vec<u8>, u32> {
    let bytes = usize::try_from(count * u64::from(SECTOR_SIZE)).map_err(|_| EINVAL)?;
    let mut data = vec![0u8; bytes];
    let mut at = 0usize;
    for (sector, n) in split(first, count, chunk) {
        let len = n as usize * SECTOR_SIZE as usize;
        let piece = data.get_mut(at..at + len).ok_or(EIO)?;
        volume.read(sector, piece)?;
        at += len;
    }
    Ok(data)
}

/// Reads and drops `len` bytes of the stream (a refused WRITE's data).
fn drain<S: Read>(stream: &mut S, mut len: u64, buf: &mut [u8]) -> io::Result<()> {
    while len > 0 {
        let n = len.min(buf.len() as u64) as usize;
        stream.read_exact(&mut buf[..n])?;
        len -= n as u64;
    }
    Ok(())
}

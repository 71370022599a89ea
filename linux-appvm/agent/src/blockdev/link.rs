//! The client end of the block protocol (`bulkhead_abi::block`) over the AppVM's block
//! channel device, one request at a time: a Write's data goes into our pool at offset 0
//! (the whole pool is lent once, as a surface written through at byte offsets, like the
//! unikernel client of `unikernels/testing/src/block.rs`), a Read's comes from the storage
//! qube's pool at offset 0. Every request is judged by `block::check` before it is sent.
//!
//! The storage qube restarting resets the channel: the link lends its pool again and sends
//! the request again (reads and writes of whole sectors can be repeated). `Busy` is sent
//! again after a pause; an answer that does not come within [`PATIENCE`] is an I/O error.

use super::nbd::{EINVAL, EIO, EPERM};
use super::serve::Volume;
use crate::channel::uio::UioChannel;
use crate::channel::{ChannelError, Transport};
use bulkhead_abi::block::{
    self, BLOCK_VERSION, BlockError, BlockOp, BlockReply, BlockRequest, BlockResponse, SECTOR_SIZE,
    VolumeGeometry,
};
use bulkhead_abi::proto::BulkRef;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long one request may wait for its answer.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// Times a request is sent again after a reset of the channel.
const RETRIES: u32 = 3;

/// Why a request got no `Done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The storage qube refused it or the disk failed.
    Refused(BlockError),
    /// The channel was reset (the storage qube restarted): send it again.
    Reset,
    /// No answer, a broken channel or a message that is not a response.
    NoAnswer,
}

impl Failure {
    /// The errno for the NBD reply.
    pub fn errno(self) -> u32 {
        match self {
            Failure::Refused(BlockError::ReadOnly) => EPERM,
            Failure::Refused(BlockError::Io) | Failure::Reset | Failure::NoAnswer => EIO,
            Failure::Refused(_) => EINVAL,
        }
    }
}

/// The block channel, its pool lent as one surface.
pub struct Link {
    ch: UioChannel,
    surface: Option<BulkRef>,
    pool: u32,
    geometry: Option<VolumeGeometry>,
    next_tag: u32,
    /// Block requests answered.
    pub requests: u64,
    /// Resets seen.
    pub resets: u64,
}

impl Link {
    /// Takes the channel device (it must have a bulk area).
    pub fn open(mut ch: UioChannel) -> Result<Link, String> {
        let name = ch.found.info.name.to_string();
        let pool = ch
            .ring
            .bulk()
            .map(|b| b.pool_size())
            .ok_or_else(|| format!("channel {name} has no bulk area"))?;
        let mut link = Link {
            ch,
            surface: None,
            pool: u32::try_from(pool).map_err(|_| format!("the pool of {name} is too large"))?,
            geometry: None,
            next_tag: 1,
            requests: 0,
            resets: 0,
        };
        link.lend()
            .map_err(|e| format!("cannot take our pool of {name}: {e}"))?;
        Ok(link)
    }

    /// Bytes of each pool.
    pub fn pool(&self) -> u32 {
        self.pool
    }

    /// Lends our whole pool as the surface writes go through.
    fn lend(&mut self) -> Result<(), ChannelError> {
        let pool = self.pool as usize;
        let bulk = self.ch.ring.bulk().ok_or(ChannelError::NotLent)?;
        self.surface = Some(bulk.lend(&vec![0u8; pool])?);
        Ok(())
    }

    /// `Info`: the volume's geometry (also after a reset, before anything else).
    pub fn info(&mut self) -> Result<VolumeGeometry, String> {
        let reply = (0..=RETRIES)
            .map(|_| self.call(BlockOp::Info))
            .find(|r| *r != Err(Failure::Reset))
            .unwrap_or(Err(Failure::Reset));
        match reply {
            Ok(BlockReply::Info {
                sectors,
                read_only,
                max_sectors_per_request,
                version,
            }) if version == BLOCK_VERSION => {
                let g = VolumeGeometry {
                    sectors,
                    read_only,
                    max_sectors_per_request,
                };
                self.geometry = Some(g);
                Ok(g)
            }
            other => Err(format!(
                "Info answered {other:?} (the agent speaks block protocol version {BLOCK_VERSION})"
            )),
        }
    }

    /// Sends `op` (judged by `block::check` first, once Info is known) and waits for its
    /// answer.
    fn call(&mut self, op: BlockOp) -> Result<BlockReply, Failure> {
        if let Some(g) = &self.geometry {
            block::check(&op, g, self.pool).map_err(Failure::Refused)?;
        }
        let tag = self.tag();
        let deadline = Instant::now() + PATIENCE;
        let request = BlockRequest { tag, op };
        while !self.try_send_raw(&request)? {
            if Instant::now() >= deadline {
                return Err(Failure::NoAnswer);
            }
            self.wait();
        }
        loop {
            match self.next_response(deadline)? {
                Some(r) if r.tag == tag => {
                    self.requests += 1;
                    return r.result.map_err(Failure::Refused);
                }
                // The answer to a request given up on earlier.
                Some(_) => continue,
                None => return Err(Failure::NoAnswer),
            }
        }
    }

    /// A fresh tag (never 0).
    pub fn tag(&mut self) -> u32 {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        tag
    }

    /// Sends `msg` as it is, **not** judged by `block::check`: any request, or bytes that
    /// are none (the `block-hostile` self-test, [`super::hostile`]). `Ok(false)` when the
    /// ring is full (nothing sent).
    pub fn try_send_raw<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, Failure> {
        self.ch
            .ring
            .try_send(msg)
            .map_err(|e| self.channel_error(e))
    }

    /// The next response, whatever its tag, waiting until `deadline` (`None` then). A
    /// message that is not a response is [`Failure::NoAnswer`].
    pub fn next_response(&mut self, deadline: Instant) -> Result<Option<BlockResponse>, Failure> {
        loop {
            match self.ch.ring.try_recv_with(block::decode_response) {
                Ok(Some(Ok(r))) => return Ok(Some(r)),
                Ok(Some(Err(_))) => return Err(Failure::NoAnswer),
                Ok(None) if Instant::now() < deadline => self.wait(),
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.channel_error(e)),
            }
        }
    }

    fn wait(&mut self) {
        if let Err(e) = self.ch.wait_for_peer(Duration::from_millis(100)) {
            let _ = self.channel_error(e);
        }
    }

    /// A reset: the pool is ours again, lend it anew.
    fn channel_error(&mut self, e: ChannelError) -> Failure {
        if e == ChannelError::Reset {
            self.resets += 1;
            self.surface = None;
            let _ = self.lend();
            Failure::Reset
        } else {
            Failure::NoAnswer
        }
    }

    /// `op` until it is done, sent again after a reset (with `before` redone: a Write's
    /// data put in the pool) or `Busy`.
    fn run(
        &mut self,
        op: BlockOp,
        mut before: impl FnMut(&mut Link) -> Result<(), Failure>,
    ) -> Result<(), u32> {
        let mut resets = 0;
        loop {
            let r = before(self).and_then(|()| self.call(op));
            match r {
                Ok(BlockReply::Done) => return Ok(()),
                Ok(BlockReply::Info { .. }) => return Err(EIO),
                Err(Failure::Refused(BlockError::Busy)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Failure::Reset) if resets < RETRIES => resets += 1,
                Err(f) => return Err(f.errno()),
            }
        }
    }
}

fn count(bytes: usize) -> u32 {
    (bytes / SECTOR_SIZE as usize) as u32
}

impl Volume for Link {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), u32> {
        let op = BlockOp::Read {
            sector,
            count: count(buf.len()),
            pool_offset: 0,
        };
        self.run(op, |_| Ok(()))?;
        let whole = BulkRef {
            offset: 0,
            len: self.pool,
            check: 0,
        };
        let bulk = self.ch.ring.bulk().ok_or(EIO)?;
        bulk.read_unchecked_at(&whole, 0, buf).map_err(|_| EIO)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), u32> {
        let op = BlockOp::Write {
            sector,
            count: count(data.len()),
            pool_offset: 0,
        };
        self.run(op, |link| {
            let surface = link.surface.ok_or(Failure::NoAnswer)?;
            let bulk = link.ch.ring.bulk().ok_or(Failure::NoAnswer)?;
            bulk.write_lent(&surface, 0, data)
                .map_err(|_| Failure::NoAnswer)
        })
    }

    fn flush(&mut self) -> Result<(), u32> {
        self.run(BlockOp::Flush, |_| Ok(()))
    }

    fn discard(&mut self, sector: u64, count: u32) -> Result<(), u32> {
        self.run(BlockOp::Discard { sector, count }, |_| Ok(()))
    }
}

//! A channel's bulk area: page-granular buffers lent by descriptor, for payloads that do not
//! fit a slot (window pixels, file contents, disk blocks).
//!
//! The area's first half is side A's pool, its second half side B's. Each side writes only in
//! its own pool (the hypervisor maps the peer's pool read-only), and hands a buffer to the
//! peer by sending a [`BulkRef`] (offset in its pool, length, checksum) inside one of its own
//! ring messages. From then on the buffer is *lent*: the lender does not reuse its pages until
//! the peer sends the same `BulkRef` back and [`Bulk::reclaim`] accepts it. Ownership moves
//! explicitly, and the bookkeeping of our pool is ours alone: nothing the peer writes can make
//! us hand out a page twice.
//!
//! Reading a buffer the peer lent: [`Bulk::read`] checks the descriptor lies inside the peer's
//! pool, copies the bytes into the caller's private memory and checks them against the
//! descriptor's checksum; only then may the caller parse them. The lender can still write its
//! pages while we copy, so the checksum is a diagnosis (a buffer rewritten after it was lent
//! says so: [`Breach::BulkChanged`]), not the defence: the defence is that nothing is parsed
//! in shared memory. [`Bulk::read_unchecked`] copies without the checksum, for data that is
//! never parsed (pixels go to the screen whatever they are).
//!
//! A descriptor outside the peer's pool, a changed buffer, or a return of something we never
//! lent breaks the bulk area ([`ChannelError::Broken`]); the caller treats that as a breach of
//! the whole channel. A peer that never returns buffers only exhausts our pool:
//! [`ChannelError::BulkExhausted`] says how much it holds.

use crate::Side;
use crate::error::{Breach, ChannelError};
use crate::shm::SharedRegion;
use bulkhead_abi::channel::{BULK_POOL_ALIGN, MAX_BULK_SIZE};

/// Bytes of one bulk page.
pub const BULK_PAGE: usize = BULK_POOL_ALIGN as usize;
/// Most pages one pool has.
const MAX_POOL_PAGES: usize = (MAX_BULK_SIZE / 2 / BULK_POOL_ALIGN) as usize;
/// Most buffers lent at once.
pub const MAX_LOANS: usize = 64;

/// A lent buffer, as it travels in ring messages (defined with the message vocabulary).
pub use bulkhead_abi::proto::BulkRef;

/// One outstanding loan of our pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Loan {
    first: u32,
    pages: u32,
    len: u32,
    check: u64,
}

/// One end's view of a channel's bulk area.
pub struct Bulk {
    region: SharedRegion,
    /// Offset of our pool and of the peer's in the region.
    ours: usize,
    theirs: usize,
    /// Pages per pool.
    pages: usize,
    /// Our pages that are lent (bit set) or free.
    lent: [u64; MAX_POOL_PAGES / 64],
    /// Outstanding loans (`pages == 0`: an empty entry).
    loans: [Loan; MAX_LOANS],
    /// Where the next allocation starts looking (next fit).
    cursor: usize,
    broken: Option<Breach>,
}

impl core::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bulk")
            .field("pages", &self.pages)
            .field("lent_pages", &self.lent_pages())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Bulk {
    /// `side`'s view of the bulk area in `region`, which must be exactly `bulk_size` bytes (the
    /// size the channel header names: see [`crate::Endpoint::bulk_size`]).
    pub fn open(region: SharedRegion, side: Side, bulk_size: u32) -> Result<Bulk, ChannelError> {
        let size = bulk_size as usize;
        if bulk_size == 0
            || region.len() != size
            || !bulkhead_abi::channel::bulk_size_valid(u64::from(bulk_size))
            || !region.is_page_aligned()
        {
            return Err(ChannelError::BadHeader);
        }
        let half = size / 2;
        let (ours, theirs) = match side {
            Side::A => (0, half),
            Side::B => (half, 0),
        };
        Ok(Bulk {
            region,
            ours,
            theirs,
            pages: half / BULK_PAGE,
            lent: [0; MAX_POOL_PAGES / 64],
            loans: [Loan::default(); MAX_LOANS],
            cursor: 0,
            broken: None,
        })
    }

    /// Bytes of each pool: the largest buffer one message can lend.
    pub fn pool_size(&self) -> usize {
        self.pages * BULK_PAGE
    }

    /// Pages of our pool the peer holds.
    pub fn lent_pages(&self) -> usize {
        self.lent.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Buffers the peer holds.
    pub fn loans(&self) -> usize {
        self.loans.iter().filter(|l| l.pages != 0).count()
    }

    /// What broke the bulk area, if the peer did.
    pub fn broken(&self) -> Option<Breach> {
        self.broken
    }

    /// Forgets every loan and a breach: after the channel was reset (the peer restarted and
    /// the hypervisor zeroed the area), nothing is lent any more.
    pub fn reset(&mut self) {
        self.lent = [0; MAX_POOL_PAGES / 64];
        self.loans = [Loan::default(); MAX_LOANS];
        self.cursor = 0;
        self.broken = None;
    }

    /// Copies `data` into free pages of our pool and lends them: send the returned descriptor
    /// to the peer in a ring message. [`ChannelError::TooLarge`] if it could never fit,
    /// [`ChannelError::BulkExhausted`] if the peer holds too much of the pool now.
    pub fn lend(&mut self, data: &[u8]) -> Result<BulkRef, ChannelError> {
        self.check()?;
        let len = u32::try_from(data.len()).map_err(|_| self.too_large(data.len()))?;
        let pages = data.len().div_ceil(BULK_PAGE).max(1);
        if pages > self.pages {
            return Err(self.too_large(data.len()));
        }
        let slot = self.loans.iter().position(|l| l.pages == 0);
        let (Some(slot), Some(first)) = (slot, self.find_free(pages)) else {
            return Err(ChannelError::BulkExhausted {
                lent_pages: self.lent_pages(),
                pool_pages: self.pages,
                loans: self.loans(),
            });
        };
        let at = self.ours + first * BULK_PAGE;
        // Inside our pool: `first + pages <= self.pages` (find_free).
        let _ = self.region.write_bytes(at, data);
        self.mark(first, pages, true);
        self.cursor = (first + pages) % self.pages;
        let r = BulkRef {
            offset: (first * BULK_PAGE) as u32,
            len,
            check: checksum(data),
        };
        self.loans[slot] = Loan {
            first: first as u32,
            pages: pages as u32,
            len,
            check: r.check,
        };
        Ok(r)
    }

    /// Takes back a buffer the peer returned: `r` must be exactly one we lent and have not
    /// taken back yet; anything else is a breach.
    pub fn reclaim(&mut self, r: &BulkRef) -> Result<(), ChannelError> {
        self.check()?;
        let found = self.loans.iter().position(|l| {
            l.pages != 0
                && l.first as usize * BULK_PAGE == r.offset as usize
                && l.len == r.len
                && l.check == r.check
        });
        let Some(i) = found else {
            return Err(self.breach(Breach::BulkNotLent {
                offset: r.offset,
                len: r.len,
            }));
        };
        let loan = core::mem::take(&mut self.loans[i]);
        self.mark(loan.first as usize, loan.pages as usize, false);
        Ok(())
    }

    /// Copies the buffer the peer lent with `r` into `dst` (which must hold `r.len` bytes:
    /// [`ChannelError::TooLarge`] otherwise, nothing read) and checks it against the
    /// descriptor's checksum. Returns the bytes copied. Parse only `dst`, never the pool.
    pub fn read(&mut self, r: &BulkRef, dst: &mut [u8]) -> Result<usize, ChannelError> {
        let n = self.read_unchecked(r, dst)?;
        if checksum(&dst[..n]) != r.check {
            return Err(self.breach(Breach::BulkChanged {
                offset: r.offset,
                len: r.len,
            }));
        }
        Ok(n)
    }

    /// [`Bulk::read`] without the checksum: for data that is never parsed (pixels).
    pub fn read_unchecked(&mut self, r: &BulkRef, dst: &mut [u8]) -> Result<usize, ChannelError> {
        self.check()?;
        self.check_peer_ref(r)?;
        let (offset, len) = (r.offset as usize, r.len as usize);
        let Some(dst) = dst.get_mut(..len) else {
            return Err(ChannelError::TooLarge {
                len,
                max: dst.len(),
            });
        };
        // Inside the peer's pool (checked above), inside the region.
        let _ = self.region.read_bytes(self.theirs + offset, dst);
        Ok(len)
    }

    /// Writes `data` at byte `at` of a buffer we lent with `r` and have not taken back: a
    /// *surface* (window pixels) that stays lent while we keep drawing into it. Its checksum
    /// is stale from then on, so the peer reads it with [`Bulk::read_unchecked_at`] only.
    /// [`ChannelError::TooLarge`] if the write runs past the buffer; nothing is written then.
    pub fn write_lent(&mut self, r: &BulkRef, at: usize, data: &[u8]) -> Result<(), ChannelError> {
        self.check()?;
        let lent = self.loans.iter().any(|l| {
            l.pages != 0 && l.first as usize * BULK_PAGE == r.offset as usize && l.len == r.len
        });
        if !lent {
            return Err(ChannelError::NotLent);
        }
        within(r, at, data.len())?;
        // Inside a loan of our pool: `r.offset + r.len` lies in it (it was lent so).
        let _ = self
            .region
            .write_bytes(self.ours + r.offset as usize + at, data);
        Ok(())
    }

    /// Copies `dst.len()` bytes from byte `at` of the buffer the peer lent with `r` (a
    /// surface whose damaged rows we copy out), without a checksum: for pixels only. The
    /// descriptor must lie inside the peer's pool ([`Breach::BulkOutOfRange`] otherwise) and
    /// the range inside the buffer ([`ChannelError::TooLarge`] otherwise, nothing read).
    pub fn read_unchecked_at(
        &mut self,
        r: &BulkRef,
        at: usize,
        dst: &mut [u8],
    ) -> Result<(), ChannelError> {
        self.check()?;
        self.check_peer_ref(r)?;
        within(r, at, dst.len())?;
        // Inside the peer's pool: `r` is (checked above) and the range is inside `r`.
        let _ = self
            .region
            .read_bytes(self.theirs + r.offset as usize + at, dst);
        Ok(())
    }

    /// Checks a descriptor the peer sent lies inside its pool, page-aligned; a breach if not.
    pub fn check_peer_ref(&mut self, r: &BulkRef) -> Result<(), ChannelError> {
        let pool = self.pool_size();
        let (offset, len) = (r.offset as usize, r.len as usize);
        if !offset.is_multiple_of(BULK_PAGE) || offset.checked_add(len).is_none_or(|e| e > pool) {
            return Err(self.breach(Breach::BulkOutOfRange {
                offset: r.offset,
                len: r.len,
                pool: pool as u32,
            }));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ChannelError> {
        match self.broken {
            Some(b) => Err(ChannelError::Broken(b)),
            None => Ok(()),
        }
    }

    fn breach(&mut self, b: Breach) -> ChannelError {
        self.broken = Some(b);
        ChannelError::Broken(b)
    }

    fn too_large(&self, len: usize) -> ChannelError {
        ChannelError::TooLarge {
            len,
            max: self.pool_size(),
        }
    }

    fn is_lent(&self, page: usize) -> bool {
        self.lent[page / 64] & (1 << (page % 64)) != 0
    }

    fn mark(&mut self, first: usize, pages: usize, lent: bool) {
        for p in first..first + pages {
            let bit = 1u64 << (p % 64);
            if lent {
                self.lent[p / 64] |= bit;
            } else {
                self.lent[p / 64] &= !bit;
            }
        }
    }

    /// The first page of `pages` free pages in a row, looking from the cursor on and then
    /// from the start.
    fn find_free(&self, pages: usize) -> Option<usize> {
        let run_from = |start: usize, end: usize| {
            let mut run = 0;
            for p in start..end {
                if self.is_lent(p) {
                    run = 0;
                } else {
                    run += 1;
                    if run == pages {
                        return Some(p + 1 - pages);
                    }
                }
            }
            None
        };
        run_from(self.cursor, self.pages).or_else(|| run_from(0, self.pages))
    }
}

/// `len` bytes from byte `at` lie inside the buffer `r`; [`ChannelError::TooLarge`] if not.
fn within(r: &BulkRef, at: usize, len: usize) -> Result<(), ChannelError> {
    match at.checked_add(len) {
        Some(end) if end <= r.len as usize => Ok(()),
        _ => Err(ChannelError::TooLarge {
            len: at.saturating_add(len),
            max: r.len as usize,
        }),
    }
}

/// The checksum a [`BulkRef`] carries: four interleaved FNV-1a-style lanes over 8-byte words
/// (fast enough to run over every buffer), folded with the length. It detects a buffer
/// changed after it was lent; it is not a cryptographic hash (the lender chooses both the
/// data and the checksum).
pub fn checksum(data: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    let mut lanes = [
        0xCBF2_9CE4_8422_2325u64,
        0x8422_2325_CBF2_9CE4,
        0x9E37_79B9_7F4A_7C15,
        0x7F4A_7C15_9E37_79B9,
    ];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            *lane = (*lane ^ w).wrapping_mul(PRIME);
        }
    }
    let mut tail = [0u8; 32];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    for (i, lane) in lanes.iter_mut().enumerate() {
        let w = u64::from_le_bytes(tail[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        *lane = (*lane ^ w).wrapping_mul(PRIME);
    }
    lanes.iter().fold(data.len() as u64, |h, l| {
        (h ^ l).wrapping_mul(PRIME).rotate_left(29)
    })
}

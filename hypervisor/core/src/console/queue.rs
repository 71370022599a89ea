//! The console's output queue: every line the hypervisor prints, its own and the qubes',
//! waits here, fully formatted, until the UART can take it. Writing a line never waits for
//! the UART, so no qube can hold the CPU in the hypervisor by writing its console.
//!
//! - One ring of bytes in arrival order, so lines come out exactly in the order they were
//!   written, across all sources (readers of the console rely on that order).
//! - Each qube may have at most [`Policy::QUBE_QUEUED_MAX`] bytes waiting and is held to a
//!   token bucket ([`Policy::RATE`] bytes per second, [`Policy::BURST`] at once). A line over
//!   either limit is dropped whole and counted; [`OutputQueue::take_due_report`] hands the
//!   count out once per burst of drops.
//! - The ring is sized so that every qube's allowance fits at once
//!   (`BYTES >= QUBES * QUBE_QUEUED_MAX + MIN_HV_ROOM`): a qube's line is refused only for
//!   its own backlog or rate, never because another qube filled the ring.
//! - The hypervisor's own lines may use the space no qube is promised. When that is full,
//!   [`OutputQueue::push_hv`] says so and the caller drains first (its own lines are never
//!   dropped, only delayed; a qube cannot make the hypervisor print without bound).
//!
//! A line is stored as a record: one byte naming its source, its length (two bytes, little
//! endian), then its bytes. The queue is all zeros when empty, so a `static` of it costs no
//! space in the image.

use core::marker::PhantomData;

/// Bytes of a record's header (source, length).
pub const HEADER: usize = 3;
/// Least space the hypervisor's own lines must have beyond every qube's allowance.
pub const MIN_HV_ROOM: usize = 4096;
/// The source byte of the hypervisor's own lines.
const HV: u8 = u8::MAX;

/// The queue's limits: a type rather than values, so the queue holds nothing but zeros.
pub trait Policy {
    /// Bytes one qube may have waiting (its lines as stored, headers included).
    const QUBE_QUEUED_MAX: usize;
    /// A qube's sustained rate, bytes per second (token bucket refill).
    const RATE: u64;
    /// Bytes a qube may write at once beyond the rate (token bucket depth).
    const BURST: u64;
    /// A burst of drops is reported once the qube has had no line dropped for this long...
    const QUIET_NS: u64;
    /// ...or this long after the burst's first drop, whichever comes first.
    const REPORT_EVERY_NS: u64;
}

/// The hypervisor's numbers (docs/console.md). A 115200-baud UART moves about 11.5 KB/s, so
/// one qube at the full rate leaves most of it to the others; the busiest line source in the
/// scenarios, a heartbeat every 20 ms, needs about 2.2 KB/s.
#[derive(Debug)]
pub struct Standard;

impl Policy for Standard {
    const QUBE_QUEUED_MAX: usize = 8 * 1024;
    const RATE: u64 = 4 * 1024;
    const BURST: u64 = 16 * 1024;
    const QUIET_NS: u64 = 100_000_000;
    const REPORT_EVERY_NS: u64 = 1_000_000_000;
}

/// Room for the hypervisor's own lines beside every qube's allowance, with [`Standard`]:
/// a whole boot log of a large system fits before the first drain.
pub const STANDARD_HV_ROOM: usize = 32 * 1024;

/// Where a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The hypervisor.
    Hv,
    /// The qube with this manifest index.
    Qube(usize),
}

/// Why a qube's line was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The qube already has [`Policy::QUBE_QUEUED_MAX`] bytes waiting.
    Backlog,
    /// The qube wrote faster than its token bucket allows.
    Rate,
    /// The line alone is longer than a qube's allowance (or 65535 bytes).
    TooLong,
    /// No such qube (an index past the queue's table).
    NoSuchQube,
}

/// What became of a qube's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It waits in the queue.
    Queued,
    /// It was dropped and counted.
    Dropped(Refusal),
}

/// What became of a hypervisor line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvPush {
    /// It waits in the queue.
    Queued,
    /// No room now: drain (synchronously) and push it again.
    NoRoom,
    /// Longer than the hypervisor's room: dropped and counted.
    TooLong,
}

/// Dropped lines of one qube not yet reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Bytes of text the qube wrote in those lines (as the caller counted them for each
    /// line: the hypervisor counts the line's bytes before sanitising, without prefix or
    /// line end).
    pub bytes: u64,
    /// How many lines.
    pub lines: u64,
}

/// Totals since the queue was made, in line bytes (headers not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes of every line pushed.
    pub offered: u64,
    /// Bytes handed to the UART.
    pub sent: u64,
    /// Bytes of dropped lines (qubes' and the hypervisor's).
    pub dropped: u64,
    /// Bytes waiting.
    pub queued: u64,
}

/// One source's bookkeeping.
#[derive(Clone, Copy, Debug)]
struct Account {
    /// Bytes waiting, headers included.
    queued: usize,
    /// Token bucket debt in byte-nanoseconds per second (bytes x 10^9); 0 = full bucket.
    debt: u64,
    /// When the debt was last paid down.
    paid_at: u64,
    /// Drops not yet reported.
    pending: Dropped,
    /// First and last drop of the pending burst.
    first_drop: u64,
    last_drop: u64,
}

impl Account {
    const ZERO: Account = Account {
        queued: 0,
        debt: 0,
        paid_at: 0,
        pending: Dropped { bytes: 0, lines: 0 },
        first_drop: 0,
        last_drop: 0,
    };

    /// Pays the bucket's debt down for the time since the last call.
    fn refill(&mut self, now: u64, rate: u64) {
        let elapsed = now.saturating_sub(self.paid_at);
        self.paid_at = self.paid_at.max(now);
        self.debt = self.debt.saturating_sub(elapsed.saturating_mul(rate));
    }

    fn note_drop(&mut self, now: u64, text_len: usize) {
        if self.pending.lines == 0 {
            self.first_drop = now;
        }
        self.last_drop = now;
        self.pending.lines += 1;
        self.pending.bytes += text_len as u64;
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// The console's output queue: `BYTES` of ring for up to `QUBES` qubes and the hypervisor.
pub struct OutputQueue<P: Policy, const BYTES: usize, const QUBES: usize> {
    ring: [u8; BYTES],
    /// Index of the oldest stored byte.
    head: usize,
    /// Stored bytes.
    len: usize,
    /// Bytes of the record being sent that are still in the ring (its header is consumed).
    sending_left: usize,
    /// The source byte of the record being sent.
    sending_src: u8,
    hv: Account,
    qubes: [Account; QUBES],
    /// Qubes with drops not yet reported (so the scheduler's look every pass is one compare).
    unreported: usize,
    /// Bytes all qubes have waiting, headers included.
    qube_queued: usize,
    totals: Totals,
    policy: PhantomData<P>,
}

impl<P: Policy, const BYTES: usize, const QUBES: usize> Default for OutputQueue<P, BYTES, QUBES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Policy, const BYTES: usize, const QUBES: usize> OutputQueue<P, BYTES, QUBES> {
    /// Space promised to the qubes; the rest is the hypervisor's.
    const QUBE_ROOM: usize = QUBES * P::QUBE_QUEUED_MAX;
    /// Checked when the queue is made (at compile time for a `static`).
    const SIZED: () = {
        assert!(
            QUBES < HV as usize,
            "qube indices must fit the record header"
        );
        assert!(P::QUBE_QUEUED_MAX > HEADER);
        assert!(
            BYTES >= Self::QUBE_ROOM + MIN_HV_ROOM,
            "the ring must hold every allowance"
        );
    };

    /// An empty queue.
    pub const fn new() -> Self {
        let () = Self::SIZED;
        OutputQueue {
            ring: [0; BYTES],
            head: 0,
            len: 0,
            sending_left: 0,
            sending_src: 0,
            hv: Account::ZERO,
            qubes: [Account::ZERO; QUBES],
            unreported: 0,
            qube_queued: 0,
            totals: Totals {
                offered: 0,
                sent: 0,
                dropped: 0,
                queued: 0,
            },
            policy: PhantomData,
        }
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `source` has waiting, headers included.
    pub fn queued(&self, source: Source) -> usize {
        match source {
            Source::Hv => self.hv.queued,
            Source::Qube(i) => self.qubes.get(i).map_or(0, |a| a.queued),
        }
    }

    /// Totals since the queue was made.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Queues a qube's formatted line (written at `now`, ns) if its backlog and rate allow;
    /// otherwise drops it whole and counts it: `text_len` bytes of text for the report (the
    /// limits themselves count the formatted bytes, which is what the UART carries).
    pub fn push_qube(&mut self, qube: usize, now: u64, line: &[u8], text_len: usize) -> Admission {
        self.totals.offered += line.len() as u64;
        let stored = line.len() + HEADER;
        let refusal = match self.qubes.get_mut(qube) {
            None => Some(Refusal::NoSuchQube),
            Some(a) => {
                a.refill(now, P::RATE);
                let cost = (line.len() as u64).saturating_mul(NS_PER_S);
                if line.len() > usize::from(u16::MAX) || stored > P::QUBE_QUEUED_MAX {
                    Some(Refusal::TooLong)
                } else if a.queued + stored > P::QUBE_QUEUED_MAX {
                    Some(Refusal::Backlog)
                } else if a.debt.saturating_add(cost) > P::BURST.saturating_mul(NS_PER_S) {
                    Some(Refusal::Rate)
                } else {
                    a.debt += cost;
                    a.queued += stored;
                    None
                }
            }
        };
        if let Some(why) = refusal {
            if let Some(a) = self.qubes.get_mut(qube) {
                if a.pending.lines == 0 {
                    self.unreported += 1;
                }
                a.note_drop(now, text_len);
            }
            self.totals.dropped += line.len() as u64;
            return Admission::Dropped(why);
        }
        self.qube_queued += stored;
        // The sizing rule leaves room for every qube's allowance beside the hypervisor's.
        debug_assert!(self.len + stored <= BYTES);
        self.store(qube as u8, line);
        Admission::Queued
    }

    /// Queues a hypervisor line in the space no qube is promised. `NoRoom`: drain, then push
    /// it again.
    pub fn push_hv(&mut self, line: &[u8]) -> HvPush {
        let stored = line.len() + HEADER;
        let room = BYTES - Self::QUBE_ROOM;
        if line.len() > usize::from(u16::MAX) || stored > room {
            self.totals.offered += line.len() as u64;
            self.totals.dropped += line.len() as u64;
            self.hv.pending.lines += 1;
            self.hv.pending.bytes += line.len() as u64;
            return HvPush::TooLong;
        }
        if self.hv.queued + stored > room {
            return HvPush::NoRoom;
        }
        self.totals.offered += line.len() as u64;
        self.hv.queued += stored;
        self.store(HV, line);
        HvPush::Queued
    }

    /// Hypervisor lines dropped for being too long (never for lack of room).
    pub fn hv_dropped(&self) -> Dropped {
        self.hv.pending
    }

    fn store(&mut self, source: u8, line: &[u8]) {
        let len = line.len() as u16;
        let [lo, hi] = len.to_le_bytes();
        self.put(&[source, lo, hi]);
        self.put(line);
        self.totals.queued += line.len() as u64;
    }

    fn put(&mut self, bytes: &[u8]) {
        let tail = (self.head + self.len) % BYTES;
        let first = bytes.len().min(BYTES - tail);
        self.ring[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
    }

    /// Takes `n` stored bytes off the front, charging them to `source`.
    fn release(&mut self, source: u8, n: usize) {
        self.head = (self.head + n) % BYTES;
        self.len -= n;
        if source == HV {
            self.hv.queued -= n;
        } else if let Some(a) = self.qubes.get_mut(usize::from(source)) {
            a.queued -= n;
            self.qube_queued -= n;
        }
    }

    /// Copies the next bytes to send into `out` (as many as fit and wait); returns how many.
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            if self.sending_left == 0 {
                if self.len < HEADER {
                    break;
                }
                let at = |k: usize| self.ring[(self.head + k) % BYTES];
                let (source, len) = (at(0), u16::from_le_bytes([at(1), at(2)]));
                self.release(source, HEADER);
                self.sending_src = source;
                self.sending_left = usize::from(len);
                continue;
            }
            let k = (out.len() - n)
                .min(self.sending_left)
                .min(BYTES - self.head);
            out[n..n + k].copy_from_slice(&self.ring[self.head..self.head + k]);
            self.release(self.sending_src, k);
            self.sending_left -= k;
            self.totals.sent += k as u64;
            self.totals.queued -= k as u64;
            n += k;
        }
        n
    }

    /// The first qube whose pending drops are due for a report at `now` (ns), with the
    /// count, which is reset: due when no line of it was dropped for [`Policy::QUIET_NS`], or
    /// [`Policy::REPORT_EVERY_NS`] after the burst's first drop.
    pub fn take_due_report(&mut self, now: u64) -> Option<(usize, Dropped)> {
        if self.unreported == 0 {
            return None;
        }
        let (i, a) = self.qubes.iter_mut().enumerate().find(|(_, a)| {
            a.pending.lines > 0
                && (now.saturating_sub(a.last_drop) >= P::QUIET_NS
                    || now.saturating_sub(a.first_drop) >= P::REPORT_EVERY_NS)
        })?;
        self.unreported -= 1;
        Some((i, core::mem::take(&mut a.pending)))
    }

    /// The pending drops of `qube`, reported now whatever the time (when it stops).
    pub fn take_report(&mut self, qube: usize) -> Option<Dropped> {
        let a = self.qubes.get_mut(qube)?;
        if a.pending.lines == 0 {
            return None;
        }
        self.unreported -= 1;
        Some(core::mem::take(&mut a.pending))
    }
}

#[cfg(test)]
mod tests;

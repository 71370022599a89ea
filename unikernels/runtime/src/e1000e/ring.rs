//! Descriptor rings as numbers: which slots belong to whom, and what a descriptor the device
//! wrote back says. Pure logic, tested on the host; the driver applies it to DMA memory.
//!
//! Receive: the driver owns slot `next` once the device has set its DD bit; it hands slots
//! back by moving the tail (RDT) to the slot it just emptied, so one slot always stays
//! between the device's head and the tail (the ring is never "full" to the device).
//! Transmit: the driver fills `tail`, then moves TDT past it; slots from `clean` to `tail`
//! are the device's until their DD bit is set, and at most `size - 1` are in flight (a full
//! ring would look empty, head == tail).

/// Bytes per legacy descriptor (receive and transmit).
pub const DESC_LEN: usize = 16;
/// Receive descriptor: byte offset of the length (u16).
pub const RX_LENGTH: usize = 8;
/// Receive descriptor: byte offset of the status (u8).
pub const RX_STATUS: usize = 12;
/// Receive descriptor: byte offset of the errors (u8).
pub const RX_ERRORS: usize = 13;
/// Transmit descriptor: byte offset of the length (u16).
pub const TX_LENGTH: usize = 8;
/// Transmit descriptor: byte offset of the command (u8).
pub const TX_CMD: usize = 11;
/// Transmit descriptor: byte offset of the status (u8).
pub const TX_STATUS: usize = 12;
/// Status: descriptor done.
pub const STATUS_DD: u8 = 1 << 0;
/// Receive status: end of packet.
pub const STATUS_EOP: u8 = 1 << 1;
/// Transmit command: end of packet.
pub const CMD_EOP: u8 = 1 << 0;
/// Transmit command: insert the FCS.
pub const CMD_IFCS: u8 = 1 << 1;
/// Transmit command: report status (set DD when done).
pub const CMD_RS: u8 = 1 << 3;

/// What one receive descriptor written back by the device means for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxVerdict {
    /// The device has not filled it yet.
    Pending,
    /// A whole frame of this many bytes, within the buffer.
    Frame(usize),
    /// Filled but unusable (an error bit, a length of 0 or beyond the buffer, or a frame
    /// spread over several buffers, which this driver does not ask for); drop it.
    Bad,
}

/// Reads a receive descriptor's write-back: `status`, `errors`, `length` as the device left
/// them, `buf_len` the size of the buffer it was given.
pub fn rx_verdict(status: u8, errors: u8, length: u16, buf_len: usize) -> RxVerdict {
    if status & STATUS_DD == 0 {
        return RxVerdict::Pending;
    }
    let len = usize::from(length);
    if errors != 0 || status & STATUS_EOP == 0 || len == 0 || len > buf_len {
        return RxVerdict::Bad;
    }
    RxVerdict::Frame(len)
}

/// The receive side's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxRing {
    size: usize,
    next: usize,
}

impl RxRing {
    /// A ring of `size` slots (at least 2), all given to the device but one.
    pub fn new(size: usize) -> RxRing {
        assert!(size >= 2, "a ring needs two slots");
        RxRing { size, next: 0 }
    }

    /// The slot the device fills next, to look at.
    pub fn next(&self) -> usize {
        self.next
    }

    /// The tail to write at start: every slot but one is the device's.
    pub fn initial_tail(&self) -> usize {
        self.size - 1
    }

    /// The driver is done with slot `next` (it was given back emptied); moves on. Returns the
    /// new tail: that slot, now the device's again.
    pub fn advance(&mut self) -> usize {
        let done = self.next;
        self.next = (self.next + 1) % self.size;
        done
    }
}

/// The transmit side's positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxRing {
    size: usize,
    /// The slot the next frame goes to.
    tail: usize,
    /// The oldest slot the device may still hold.
    clean: usize,
}

impl TxRing {
    /// An empty ring of `size` slots (at least 2).
    pub fn new(size: usize) -> TxRing {
        assert!(size >= 2, "a ring needs two slots");
        TxRing {
            size,
            tail: 0,
            clean: 0,
        }
    }

    /// Slots handed to the device and not yet taken back.
    pub fn in_flight(&self) -> usize {
        (self.tail + self.size - self.clean) % self.size
    }

    /// True when a frame can be queued.
    pub fn has_room(&self) -> bool {
        self.in_flight() < self.size - 1
    }

    /// The oldest slot in flight, to check for DD; `None` when none is.
    pub fn oldest(&self) -> Option<usize> {
        (self.in_flight() > 0).then_some(self.clean)
    }

    /// The oldest slot in flight is done; takes it back.
    pub fn reclaim(&mut self) {
        if self.in_flight() > 0 {
            self.clean = (self.clean + 1) % self.size;
        }
    }

    /// The slot to fill with the next frame, if there is room.
    pub fn free_slot(&self) -> Option<usize> {
        self.has_room().then_some(self.tail)
    }

    /// The slot from [`TxRing::free_slot`] is filled; returns the new tail to write to TDT.
    pub fn push(&mut self) -> usize {
        debug_assert!(self.has_room());
        self.tail = (self.tail + 1) % self.size;
        self.tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_write_backs_are_checked() {
        let full = STATUS_DD | STATUS_EOP;
        assert_eq!(rx_verdict(0, 0, 60, 2048), RxVerdict::Pending);
        assert_eq!(rx_verdict(STATUS_EOP, 0, 60, 2048), RxVerdict::Pending);
        assert_eq!(rx_verdict(full, 0, 60, 2048), RxVerdict::Frame(60));
        assert_eq!(rx_verdict(full, 0, 2048, 2048), RxVerdict::Frame(2048));
        // Hostile or broken values: dropped, never trusted.
        assert_eq!(rx_verdict(full, 0, 2049, 2048), RxVerdict::Bad);
        assert_eq!(rx_verdict(full, 0, u16::MAX, 2048), RxVerdict::Bad);
        assert_eq!(rx_verdict(full, 0, 0, 2048), RxVerdict::Bad);
        assert_eq!(rx_verdict(full, 0x80, 60, 2048), RxVerdict::Bad);
        assert_eq!(rx_verdict(STATUS_DD, 0, 60, 2048), RxVerdict::Bad, "no EOP");
    }

    #[test]
    fn receive_ring_hands_slots_back_in_order() {
        let mut r = RxRing::new(4);
        assert_eq!(r.initial_tail(), 3);
        assert_eq!(r.next(), 0);
        assert_eq!(r.advance(), 0);
        assert_eq!(r.advance(), 1);
        assert_eq!(r.advance(), 2);
        assert_eq!(r.advance(), 3);
        assert_eq!(r.next(), 0, "wraps");
    }

    #[test]
    fn transmit_ring_never_fills_up() {
        let mut t = TxRing::new(4);
        assert_eq!(t.oldest(), None);
        assert_eq!(t.free_slot(), Some(0));
        assert_eq!(t.push(), 1);
        assert_eq!(t.push(), 2);
        assert_eq!(t.push(), 3);
        assert_eq!(t.in_flight(), 3);
        assert_eq!(t.free_slot(), None, "size - 1 in flight at most");
        assert_eq!(t.oldest(), Some(0));
        t.reclaim();
        assert_eq!(t.oldest(), Some(1));
        assert_eq!(t.free_slot(), Some(3));
        assert_eq!(t.push(), 0, "wraps");
        t.reclaim();
        t.reclaim();
        t.reclaim();
        assert_eq!(t.oldest(), None);
        t.reclaim();
        assert_eq!(t.in_flight(), 0, "reclaiming an empty ring does nothing");
    }

    /// The transmit ring against a model (a count of frames in flight), over a long
    /// pseudo-random run of sends and completions.
    #[test]
    fn transmit_ring_matches_a_model() {
        let mut t = TxRing::new(8);
        let mut model = alloc::collections::VecDeque::new();
        let mut next_slot = 0usize;
        let mut x: u32 = 12345;
        for _ in 0..10_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if x >> 16 & 1 == 0 {
                match t.free_slot() {
                    Some(s) => {
                        assert_eq!(s, next_slot);
                        assert!(model.len() < 7);
                        model.push_back(s);
                        t.push();
                        next_slot = (next_slot + 1) % 8;
                    }
                    None => assert_eq!(model.len(), 7),
                }
            } else {
                assert_eq!(t.oldest(), model.front().copied());
                t.reclaim();
                model.pop_front();
            }
            assert_eq!(t.in_flight(), model.len());
        }
    }
}

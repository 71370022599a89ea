//! The physical limit: cache lines handed between the two cores with nothing else.
//!
//! - Round trip: one cache line, one atomic word in it. A stores an odd value, B spins until
//!   it sees it and stores the next even value, A spins until it sees that. A round trip is
//!   two transfers of the line, the least any shared-memory round trip can cost. No payload
//!   is carried.
//! - One way: a counter handed over in a single line makes the producer wait for each
//!   acknowledgement, which is a round trip per message, not a throughput. What limits a
//!   stream of 64-byte messages is how fast lines cross from one core to the other, so the
//!   one-way figure is a ring of 64-byte lines (sequence number and 56 payload bytes, no
//!   length, no encoding) whose producer publishes its index once per [`BURST`] messages and
//!   whose consumer publishes its own once per burst too: lines cross in bursts, with
//!   almost no synchronisation per message. No per-message queue does better.

use crate::harness::{Receiver, Sender};
use crate::message::{Msg, PAYLOAD};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One cache line (64 bytes, aligned) holding one atomic word, padded to 128 bytes so that
/// no neighbour shares the pair of lines some cores prefetch together.
#[repr(C, align(128))]
struct Line {
    word: AtomicU64,
}

/// One side of the one-line ping-pong. Sends and receives only sequence numbers.
pub struct PingPong {
    line: Arc<Line>,
    /// 1 for side A (stores odd values), 2 for side B (stores even ones).
    parity: u64,
    /// Sequence number of the message this side receives next.
    next: u64,
}

/// The two sides of a one-line ping-pong.
pub fn ping_pong() -> (PingPong, PingPong) {
    let line = Arc::new(Line {
        word: AtomicU64::new(0),
    });
    (
        PingPong {
            line: line.clone(),
            parity: 1,
            next: 0,
        },
        PingPong {
            line,
            parity: 2,
            next: 0,
        },
    )
}

impl Sender for PingPong {
    fn send(&mut self, msg: &Msg) {
        // The flags travel too (B must see Stop): the word is seq * 2 + parity, seq < 2^63.
        self.line
            .word
            .store(msg.seq.wrapping_mul(2) + self.parity, Ordering::Release);
    }
}

impl Receiver for PingPong {
    fn recv(&mut self) -> Msg {
        let peer = 3 - self.parity;
        loop {
            let w = self.line.word.load(Ordering::Acquire);
            if w % 2 == peer % 2 && w != 0 && Msg::new((w - peer) / 2).number() == self.next {
                self.next += 1;
                return Msg {
                    seq: (w - peer) / 2,
                    payload: [0; PAYLOAD],
                };
            }
            std::hint::spin_loop();
        }
    }
}

/// Messages the producer writes before it publishes them (at most; a flagged message is
/// published at once).
pub const BURST: u64 = 16;

/// One 64-byte line: a message, sequence number and payload.
#[repr(C, align(64))]
struct Slot {
    seq: AtomicU64,
    payload: [AtomicU64; WORDS],
}

const WORDS: usize = PAYLOAD / 8;

struct LineRing {
    slots: Box<[Slot]>,
    /// Messages published by the producer, in a line of its own.
    written: Line,
    /// Messages consumed, in a line of its own.
    consumed: Line,
}

impl LineRing {
    fn slot(&self, n: u64) -> &Slot {
        &self.slots[n as usize & (self.slots.len() - 1)]
    }
}

// Through `[u8; 8]` references: one 8-byte load or store each, even at opt-level "s" (where
// `copy_from_slice` of 8 bytes is a call to `memmove`, and byte loops stay loops).
fn le_word(bytes: &[u8; PAYLOAD], i: usize) -> u64 {
    let word: &[u8; 8] = bytes[8 * i..8 * i + 8].try_into().expect("8 bytes");
    u64::from_le_bytes(*word)
}

fn set_le_word(bytes: &mut [u8; PAYLOAD], i: usize, w: u64) {
    let word: &mut [u8; 8] = (&mut bytes[8 * i..8 * i + 8]).try_into().expect("8 bytes");
    *word = w.to_le_bytes();
}

/// Producer of the line ring.
pub struct LinesTx {
    ring: Arc<LineRing>,
    next: u64,
    published: u64,
    consumed: u64,
}

/// Consumer of the line ring.
pub struct LinesRx {
    ring: Arc<LineRing>,
    next: u64,
    written: u64,
}

/// A ring of `slots` lines (a power of two).
pub fn lines(slots: usize) -> (LinesTx, LinesRx) {
    assert!(slots.is_power_of_two() && slots as u64 >= BURST);
    let ring = Arc::new(LineRing {
        slots: (0..slots)
            .map(|_| Slot {
                seq: AtomicU64::new(0),
                payload: Default::default(),
            })
            .collect(),
        written: Line {
            word: AtomicU64::new(0),
        },
        consumed: Line {
            word: AtomicU64::new(0),
        },
    });
    (
        LinesTx {
            ring: ring.clone(),
            next: 0,
            published: 0,
            consumed: 0,
        },
        LinesRx {
            ring,
            next: 0,
            written: 0,
        },
    )
}

impl Sender for LinesTx {
    fn send(&mut self, msg: &Msg) {
        let slots = self.ring.slots.len() as u64;
        // Look at the shared count only when the cached one says full; pause only when
        // that look found no room either.
        while self.next - self.consumed >= slots {
            self.consumed = self.ring.consumed.word.load(Ordering::Acquire);
            if self.next - self.consumed < slots {
                break;
            }
            std::hint::spin_loop();
        }
        let slot = self.ring.slot(self.next);
        slot.seq.store(msg.seq, Ordering::Relaxed);
        for (i, word) in slot.payload.iter().enumerate() {
            word.store(le_word(&msg.payload, i), Ordering::Relaxed);
        }
        self.next += 1;
        if self.next - self.published >= BURST || msg.flag().is_some() {
            self.ring.written.word.store(self.next, Ordering::Release);
            self.published = self.next;
        }
    }
}

impl Receiver for LinesRx {
    fn recv(&mut self) -> Msg {
        while self.written == self.next {
            self.written = self.ring.written.word.load(Ordering::Acquire);
            if self.written != self.next {
                break;
            }
            std::hint::spin_loop();
        }
        let slot = self.ring.slot(self.next);
        let seq = slot.seq.load(Ordering::Relaxed);
        let mut payload = [0u8; PAYLOAD];
        for (i, word) in slot.payload.iter().enumerate() {
            set_le_word(&mut payload, i, word.load(Ordering::Relaxed));
        }
        self.next += 1;
        if self.next.is_multiple_of(BURST) || self.written == self.next {
            self.ring.consumed.word.store(self.next, Ordering::Release);
        }
        Msg { seq, payload }
    }
}

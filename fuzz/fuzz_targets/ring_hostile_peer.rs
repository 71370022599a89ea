//! Fuzz target: both ends of a channel doing random sends, receives and waits while an
//! attacker writes arbitrary bytes at arbitrary offsets of the region between operations.
//!
//! The checks are those of the ring's property tests (`hypervisor/ring/tests/harness`, included
//! here): no panic; nothing touched outside the region (under AddressSanitizer, the default of
//! `cargo fuzz`, the guard pages around the region are poisoned, so any access to them stops
//! the run at once; without it, their bytes are compared after every operation); every message
//! received on an unscribbled part of the channel was sent, intact and in order; an endpoint
//! breaks only after a scribble, and stays broken.
//!
//! Input: a shape byte, a start-index byte (and up to four more), then operations of a few
//! bytes each, interpreted until the input runs out (at most 4096 operations).
#![no_main]
#![cfg_attr(fuzzing, feature(cfg_sanitize))]

#[path = "../../hypervisor/ring/tests/harness/mod.rs"]
mod harness;

use bulkhead_abi::channel::{CONSUMER_OFFSET, LEN_OFFSET, RING_CONTROL_SIZE, WAITING_OFFSET};
use bulkhead_ring::{SharedRegion, Side};
use harness::{Op, Scenario, Via};
use libfuzzer_sys::fuzz_target;

/// The channel shapes tried: (region size, slot size).
const SHAPES: [(usize, u32); 8] = [
    (12288, 1024),
    (12288, 64),
    (16384, 128),
    (16384, 256),
    (12288, 512),
    (24576, 64),
    (20480, 2048),
    (73728, 16384),
];

/// Reads the input a byte at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn side(&mut self) -> Side {
        if self.byte() & 1 == 0 {
            Side::A
        } else {
            Side::B
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn via(b: u8) -> Via {
    match b % 3 {
        0 => Via::Typed,
        1 => Via::Bytes,
        _ => Via::With,
    }
}

/// The next operation.
fn op(s: &Scenario, input: &mut Input) -> Op {
    let g = s.geometry;
    let max = s.max_payload();
    let ring_at = |r: u8| g.ring_offset[usize::from(r & 1)] as usize;
    match input.byte() % 12 {
        0 | 1 | 2 => Op::Send {
            side: input.side(),
            len: usize::from(input.u16()) % (max + 8),
            via: via(input.byte()),
        },
        3 | 4 | 5 => {
            let side = input.side();
            let v = input.byte();
            let buf = if v & 0x80 != 0 {
                usize::from(input.u16()) % (max + 1)
            } else {
                max
            };
            Op::Recv {
                side,
                via: via(v),
                buf,
            }
        }
        6 => Op::PrepareWait { side: input.side() },
        7 => Op::FinishWait { side: input.side() },
        // Anywhere, any bytes.
        8 => {
            let offset = usize::from(input.u16()) * s.region.len() / 65536;
            let n = usize::from(input.byte() % 16) + 1;
            Op::Scribble {
                offset,
                bytes: input.bytes(n),
            }
        }
        // A control word, any value.
        9 => {
            let r = input.byte();
            let word = [CONSUMER_OFFSET, WAITING_OFFSET][usize::from(r >> 1) % 2] as usize;
            Op::Scribble {
                offset: ring_at(r) + word,
                bytes: input.u32().to_le_bytes().to_vec(),
            }
        }
        // The consumer index, a slot's sequence word or its length, moved by a little:
        // plausible values.
        10 => {
            let r = input.byte();
            let slot = ring_at(r)
                + RING_CONTROL_SIZE as usize
                + usize::from(r >> 3) % g.slot_count as usize * g.slot_size as usize;
            let offset = match (r >> 1) % 3 {
                0 => ring_at(r) + CONSUMER_OFFSET as usize,
                1 => slot,
                _ => slot + LEN_OFFSET as usize,
            };
            Op::Nudge {
                offset,
                delta: i32::from(input.byte() as i8),
            }
        }
        // Inside a slot: its header or payload.
        _ => {
            let r = input.byte();
            let slot = usize::from(input.byte()) % g.slot_count as usize;
            let within = usize::from(input.u16()) % g.slot_size as usize;
            let n = usize::from(input.byte() % 8) + 1;
            let offset =
                ring_at(r) + RING_CONTROL_SIZE as usize + slot * g.slot_size as usize + within;
            Op::Scribble {
                offset,
                bytes: input.bytes(n),
            }
        }
    }
}

/// Makes the guard pages around the region unreachable for the run (AddressSanitizer).
struct Poisoned<'a>(&'a SharedRegion);

#[cfg(all(fuzzing, sanitize = "address"))]
unsafe extern "C" {
    fn __asan_poison_memory_region(addr: *const u8, size: usize);
    fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
}

impl<'a> Poisoned<'a> {
    /// Poisons the guards; false when there is no sanitizer to do it.
    fn new(region: &'a SharedRegion) -> (Poisoned<'a>, bool) {
        #[cfg(all(fuzzing, sanitize = "address"))]
        {
            let (before, after) = guards(region);
            // SAFETY: both guard pages belong to the region's allocation, which outlives
            // `Poisoned` (it borrows the region); poisoning changes no memory.
            unsafe {
                __asan_poison_memory_region(before, SharedRegion::GUARD);
                __asan_poison_memory_region(after, SharedRegion::GUARD);
            }
            return (Poisoned(region), true);
        }
        #[allow(unreachable_code)]
        (Poisoned(region), false)
    }
}

#[cfg(all(fuzzing, sanitize = "address"))]
fn guards(region: &SharedRegion) -> (*const u8, *const u8) {
    let base = region.as_ptr() as *const u8;
    (
        base.wrapping_sub(SharedRegion::GUARD),
        base.wrapping_add(region.len()),
    )
}

impl Drop for Poisoned<'_> {
    fn drop(&mut self) {
        #[cfg(all(fuzzing, sanitize = "address"))]
        {
            let (before, after) = guards(self.0);
            // SAFETY: as in `new`; the allocator may then reuse and free the pages.
            unsafe {
                __asan_unpoison_memory_region(before, SharedRegion::GUARD);
                __asan_unpoison_memory_region(after, SharedRegion::GUARD);
            }
        }
        let _ = self.0;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (size, slot) = SHAPES[usize::from(input.byte()) % SHAPES.len()];
    let start = match input.byte() % 4 {
        0 => 0,
        1 => u32::MAX - u32::from(input.byte()),
        2 => u32::from(input.u16()),
        _ => input.u32(),
    };
    let mut s = Scenario::new(size, slot, start).expect("the shapes are real geometries");
    let region = s.region.clone();
    let (_poison, poisoned) = Poisoned::new(&region);
    // Under the sanitizer any touch of a guard stops the run; otherwise compare their bytes.
    s.check_guards = !poisoned;
    for _ in 0..4096 {
        if input.is_empty() {
            break;
        }
        let op = op(&s, &mut input);
        s.apply(&op);
    }
    drop(s);
});

//! Proptest strategies for scenarios (tests only; the fuzz target decodes its own input).

use super::{Op, Scenario, Via};
use bulkhead_abi::channel::{CONSUMER_OFFSET, RING_CONTROL_SIZE, WAITING_OFFSET};
use bulkhead_ring::Side;
use proptest::prelude::*;

/// A channel shape that exists: (region size, slot size). From two slots of 1 KiB to 64 slots
/// of 64 bytes.
pub fn geometry() -> impl Strategy<Value = (usize, u32)> {
    prop_oneof![
        Just((12288, 1024)),
        Just((12288, 64)),
        Just((16384, 128)),
        (3usize..=6, 6u32..=10).prop_map(|(pages, log)| (pages * 4096, 1 << log)),
    ]
    .prop_filter("a geometry that exists", |&(size, slot)| {
        bulkhead_abi::channel::Geometry::new(size as u64, slot).is_some()
    })
}

/// Where every index starts: zero, just below the wrap, or anywhere.
pub fn start() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        (0u32..64).prop_map(|d| u32::MAX - d),
        any::<u32>()
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::A), Just(Side::B)]
}

/// An abstract step: what to do, how often, and numbers that `expand` turns into sizes and
/// offsets once the geometry is known.
#[derive(Clone, Debug)]
pub enum Step {
    Send {
        side: Side,
        times: usize,
        len: u32,
        via: u8,
    },
    Recv {
        side: Side,
        times: usize,
        via: u8,
        buf: u32,
    },
    PrepareWait {
        side: Side,
    },
    FinishWait {
        side: Side,
    },
    Scribble {
        target: Target,
        pos: u32,
        bytes: Vec<u8>,
    },
    Nudge {
        target: Target,
        pos: u32,
        delta: i32,
    },
}

/// Where a scribble aims.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Anywhere in the region.
    Anywhere,
    /// A ring's consumer index or waiting flag.
    Control { ring: usize, word: u8 },
    /// The start of a slot (its sequence and length words and first payload bytes).
    Slot { ring: usize },
    /// The header.
    Header,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        2 => Just(Target::Anywhere),
        2 => (0usize..2, 0u8..2).prop_map(|(ring, word)| Target::Control { ring, word }),
        3 => (0usize..2).prop_map(|ring| Target::Slot { ring }),
        1 => Just(Target::Header),
    ]
}

/// Honest steps only.
pub fn honest_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (side(), 1usize..40, any::<u32>(), 0u8..2).prop_map(|(side, times, len, via)| Step::Send { side, times, len, via }),
        4 => (side(), 1usize..40, 0u8..3, any::<u32>()).prop_map(|(side, times, via, buf)| Step::Recv { side, times, via, buf }),
        1 => side().prop_map(|side| Step::PrepareWait { side }),
        1 => side().prop_map(|side| Step::FinishWait { side }),
    ]
}

/// Honest steps and an attacker's writes.
pub fn hostile_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => honest_step(),
        1 => (target(), any::<u32>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(target, pos, bytes)| Step::Scribble { target, pos, bytes }),
        1 => (target(), any::<u32>(), -3i32..=40).prop_map(|(target, pos, delta)| Step::Nudge { target, pos, delta }),
    ]
}

fn via(v: u8) -> Via {
    match v {
        0 => Via::Typed,
        1 => Via::Bytes,
        _ => Via::With,
    }
}

fn offset(s: &Scenario, target: Target, pos: u32) -> usize {
    let g = &s.geometry;
    let pos = pos as usize;
    match target {
        Target::Anywhere => pos % s.region.len(),
        Target::Header => pos % bulkhead_abi::channel::HEADER_BYTES,
        Target::Control { ring, word } => {
            g.ring_offset[ring] as usize
                + [CONSUMER_OFFSET, WAITING_OFFSET][word as usize % 2] as usize
        }
        Target::Slot { ring } => {
            let slot = pos % g.slot_count as usize;
            g.ring_offset[ring] as usize
                + RING_CONTROL_SIZE as usize
                + slot * g.slot_size as usize
                + (pos >> 24) % 12
        }
    }
}

/// The operations a step stands for in scenario `s`.
pub fn expand(s: &Scenario, step: &Step) -> Vec<Op> {
    let max = s.max_payload();
    match step {
        Step::Send {
            side,
            times,
            len,
            via: v,
        } => {
            // Bodies up to a little more than fits, so that some are refused.
            let len = *len as usize % (max + 8);
            vec![
                Op::Send {
                    side: *side,
                    len,
                    via: via(*v)
                };
                *times
            ]
        }
        Step::Recv {
            side,
            times,
            via: v,
            buf,
        } => {
            // Buffers mostly large enough, sometimes too small.
            let buf = if buf % 4 == 0 {
                *buf as usize % (max + 1)
            } else {
                max
            };
            vec![
                Op::Recv {
                    side: *side,
                    via: via(*v),
                    buf
                };
                *times
            ]
        }
        Step::PrepareWait { side } => vec![Op::PrepareWait { side: *side }],
        Step::FinishWait { side } => vec![Op::FinishWait { side: *side }],
        Step::Scribble { target, pos, bytes } => {
            vec![Op::Scribble {
                offset: offset(s, *target, *pos),
                bytes: bytes.clone(),
            }]
        }
        Step::Nudge { target, pos, delta } => vec![Op::Nudge {
            offset: offset(s, *target, *pos),
            delta: *delta,
        }],
    }
}

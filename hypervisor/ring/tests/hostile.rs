//! Property tests with a hostile peer: the same sequences, with random writes anywhere in the
//! region between operations (noise, and plausible indices and lengths). Nothing panics or
//! writes outside the region; every message received on a part of the channel that was not
//! scribbled is one that was sent, in order; an endpoint breaks only after a scribble.

mod harness;

use harness::strategy::{expand, geometry, hostile_step, start};
use harness::{Op, Scenario};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn scribbles_never_panic_nor_forge(
        shape in geometry(),
        start in start(),
        steps in prop::collection::vec(hostile_step(), 1..100),
    ) {
        let mut s = Scenario::new(shape.0, shape.1, start).expect("real geometry");
        for step in &steps {
            for op in expand(&s, step) {
                s.apply(&op);
            }
        }
    }
}

/// Every word that matters, overwritten with every interesting value in turn, between a
/// send and a receive: nothing panics, and whatever breaks says why.
#[test]
fn every_word_every_value() {
    let values = [
        0u32,
        1,
        2,
        31,
        32,
        33,
        120,
        121,
        0x7FFF_FFFF,
        0x8000_0000,
        u32::MAX - 1,
        u32::MAX,
    ];
    let mut breaks = 0;
    for start in [0u32, u32::MAX - 1] {
        let probe = Scenario::new(16384, 128, start).unwrap();
        // The header, both control blocks and the first slots of both rings, word by word.
        let g = probe.geometry;
        let mut offsets: Vec<usize> = (0..64).step_by(4).collect();
        for ring in g.ring_offset {
            offsets.extend((ring as usize..ring as usize + 128 + 2 * 128).step_by(4));
        }
        for at in offsets {
            for &v in &values {
                let mut s = Scenario::new(16384, 128, start).unwrap();
                for side in [bulkhead_ring::Side::A, bulkhead_ring::Side::B] {
                    s.apply(&Op::Send {
                        side,
                        len: 20,
                        via: harness::Via::Typed,
                    });
                }
                s.apply(&Op::Scribble {
                    offset: at,
                    bytes: v.to_le_bytes().to_vec(),
                });
                for side in [bulkhead_ring::Side::A, bulkhead_ring::Side::B] {
                    s.apply(&Op::Recv {
                        side,
                        via: harness::Via::Typed,
                        buf: 0,
                    });
                    s.apply(&Op::Recv {
                        side,
                        via: harness::Via::Bytes,
                        buf: 200,
                    });
                    s.apply(&Op::PrepareWait { side });
                    s.apply(&Op::Send {
                        side,
                        len: 5,
                        via: harness::Via::Bytes,
                    });
                }
                breaks += s.breaks;
            }
        }
    }
    assert!(breaks > 0, "no scribble ever broke the channel");
}

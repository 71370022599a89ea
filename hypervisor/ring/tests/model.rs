//! Property tests: random sequences of sends, receives and waits on both sides, against a
//! model of the rings (`harness`): exact FIFO delivery, `Full` only when the ring is full,
//! `TooLarge` exactly when a message does not fit, waits and notifications as the model says,
//! every index starting anywhere, including just below the u32 wrap.

mod harness;

use bulkhead_ring::Side;
use harness::strategy::{Step, expand, geometry, honest_step, start};
use harness::{Op, Scenario, Via};
use proptest::prelude::*;

fn run(shape: (usize, u32), start: u32, steps: &[Step]) -> Scenario {
    let mut s = Scenario::new(shape.0, shape.1, start).expect("the strategy gives real geometries");
    for step in steps {
        for op in expand(&s, step) {
            s.apply(&op);
        }
    }
    assert_eq!(s.breaks, 0, "an honest sequence broke the channel");
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn honest_sequences_match_the_model(
        shape in geometry(),
        start in start(),
        steps in prop::collection::vec(honest_step(), 1..80),
    ) {
        run(shape, start, &steps);
    }
}

/// Fills and drains the ring many times across the u32 wrap, in every receive style.
#[test]
fn laps_across_the_wrap() {
    for &(size, slot) in &[(12288usize, 1024u32), (16384, 128), (12288, 64)] {
        let mut s = Scenario::new(size, slot, u32::MAX - 5).unwrap();
        let slots = s.geometry.slot_count as usize;
        for lap in 0..6 {
            let via = [Via::Typed, Via::Bytes, Via::With][lap % 3];
            for _ in 0..slots + 1 {
                s.apply(&Op::Send {
                    side: Side::A,
                    len: lap * 3 % 40,
                    via: Via::Typed,
                });
            }
            for _ in 0..slots + 1 {
                s.apply(&Op::Recv {
                    side: Side::B,
                    via,
                    buf: 4096,
                });
            }
        }
        assert!(s.full >= 6, "the ring never filled ({} Full)", s.full);
        assert_eq!(s.delivered, 6 * slots);
    }
}

/// The model-checking harness itself notices a wrong delivery (so its passes mean something).
#[test]
#[should_panic(expected = "a message that was not sent")]
fn the_model_notices_a_changed_message() {
    let mut s = Scenario::new(16384, 128, 0).unwrap();
    s.apply(&Op::Send {
        side: Side::A,
        len: 10,
        via: Via::Typed,
    });
    // Change a payload byte behind the model's back (not through `Op::Scribble`).
    let at = s.geometry.ring_offset[0] as usize + 128 + 8 + 3;
    s.region.write_bytes(at, &[0xEE]);
    s.apply(&Op::Recv {
        side: Side::B,
        via: Via::Typed,
        buf: 0,
    });
}

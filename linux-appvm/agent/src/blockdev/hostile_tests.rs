//! Tests of the block-hostile self-test's requests and verdicts.

use super::*;
use bulkhead_abi::block;

const POOL: u32 = 256 * 1024;

fn geometry(read_only: bool) -> VolumeGeometry {
    VolumeGeometry {
        sectors: 16384,
        read_only,
        max_sectors_per_request: 256,
    }
}

#[test]
fn every_request_of_the_plan_is_one_check_refuses_with_the_error_due() {
    for ro in [false, true] {
        let g = geometry(ro);
        let cases = plan(&g, POOL);
        assert_eq!(cases.len(), if ro { 17 } else { 15 });
        for c in &cases {
            match c.bad {
                Bad::Op(op, want) => {
                    assert_eq!(block::check(&op, &g, POOL).err(), Some(want), "{}", c.what);
                }
                Bad::Bytes(garbage) => {
                    let (bytes, _) = garbage.bytes(7);
                    assert!(block::decode_request(&bytes).is_err(), "{}", c.what);
                }
            }
        }
    }
}

#[test]
fn garbage_carries_the_tag_the_storage_qube_reads() {
    let tag_of =
        |bytes: &[u8]| postcard::take_from_bytes::<u32>(bytes).map_or(UNKNOWN_TAG, |(tag, _)| tag);
    for g in [Garbage::NoTag, Garbage::UnknownOp, Garbage::ByteTooMany] {
        let (bytes, want) = g.bytes(300);
        assert_eq!(tag_of(&bytes), want, "{g:?}");
    }
    assert_eq!(Garbage::NoTag.bytes(1).1, UNKNOWN_TAG);
    assert_eq!(Garbage::UnknownOp.bytes(300).1, 300);
}

#[test]
fn raw_bytes_are_sent_as_they_are() {
    let bytes = [0xffu8, 0, 7, 0x63];
    assert_eq!(postcard::to_allocvec(&Raw(&bytes)).unwrap(), bytes);
    assert_eq!(postcard::to_allocvec(&Raw(&[])).unwrap(), Vec::<u8>::new());
}

#[test]
fn judges_answers() {
    let r = |tag, result| BlockResponse { tag, result };
    let oor = BlockError::OutOfRange;
    assert_eq!(judge(oor, 4, &r(4, Err(oor))), Verdict::Refused(oor));
    assert_eq!(
        judge(oor, 4, &r(4, Err(BlockError::Io))),
        Verdict::Wrong {
            got: BlockError::Io,
            want: oor
        }
    );
    let done = judge(oor, 4, &r(4, Ok(BlockReply::Done)));
    assert_eq!(done, Verdict::Accepted(BlockReply::Done));
    assert_eq!(done.to_string(), "ACCEPTED (Done)");
    assert_eq!(
        judge(oor, 4, &r(5, Err(oor))),
        Verdict::OtherTag {
            got: 5,
            want: Some(4)
        }
    );
    assert_eq!(Verdict::Refused(oor).to_string(), "refused OutOfRange");
}

#[test]
fn tally_passes_only_when_every_one_was_refused() {
    let mut t = Tally::default();
    assert!(!t.passed());
    t.count(&Verdict::Refused(BlockError::TooLong));
    assert!(t.passed());
    t.count(&Verdict::Unanswered);
    assert!(!t.passed());
    let mut t = Tally::default();
    t.count(&Verdict::Accepted(BlockReply::Done));
    assert_eq!((t.bad, t.accepted, t.passed()), (1, 1, false));
    assert!(!t.to_string().contains("ACCEPTED"));
}

//! The bulk area: lending, reading and taking back buffers, case by case and against a
//! model, with a peer that lies in its descriptors, rewrites what it lent and keeps buffers.

use bulkhead_ring::{BULK_PAGE, Breach, Bulk, BulkRef, ChannelError, SharedRegion, Side, checksum};
use proptest::prelude::*;

const SIZE: u32 = 64 * 1024;

/// Both ends of a fresh bulk area of `size` bytes (each pool `size / 2`).
fn pair(size: u32) -> (SharedRegion, Bulk, Bulk) {
    let region = SharedRegion::zeroed(size as usize);
    let a = Bulk::open(region.clone(), Side::A, size).unwrap();
    let b = Bulk::open(region.clone(), Side::B, size).unwrap();
    (region, a, b)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn open_checks_the_size() {
    let region = SharedRegion::zeroed(SIZE as usize);
    assert!(Bulk::open(region.clone(), Side::A, SIZE).is_ok());
    assert_eq!(
        Bulk::open(region.clone(), Side::A, SIZE / 2).err(),
        Some(ChannelError::BadHeader)
    );
    assert_eq!(
        Bulk::open(region.clone(), Side::A, 0).err(),
        Some(ChannelError::BadHeader)
    );
    let odd = SharedRegion::zeroed(3 * BULK_PAGE);
    assert_eq!(
        Bulk::open(odd, Side::B, 3 * BULK_PAGE as u32).err(),
        Some(ChannelError::BadHeader)
    );
}

#[test]
fn a_buffer_crosses_and_comes_back() {
    let (region, mut a, mut b) = pair(SIZE);
    let sent = data(10_000, 1);
    let r = a.lend(&sent).unwrap();
    assert_eq!((r.offset, r.len), (0, 10_000));
    assert_eq!(a.lent_pages(), 3);
    let mut got = vec![0; 10_000];
    assert_eq!(b.read(&r, &mut got), Ok(10_000));
    assert_eq!(got, sent);
    a.reclaim(&r).unwrap();
    assert_eq!((a.lent_pages(), a.loans()), (0, 0));
    // B lends from the second half; A's pool was not touched by it.
    let r = b.lend(&data(100, 2)).unwrap();
    let mut got = vec![0; 100];
    assert_eq!(a.read(&r, &mut got), Ok(100));
    assert_eq!(got, data(100, 2));
    let mut first = vec![0; 10_000];
    region.read_bytes(0, &mut first);
    assert_eq!(first, sent, "B wrote nothing into A's pool");
    assert!(region.guards_intact());
}

#[test]
fn a_surface_is_drawn_in_place_and_read_in_pieces() {
    let (_region, mut a, mut b) = pair(SIZE);
    let r = a.lend(&[0u8; 8192]).unwrap();
    a.write_lent(&r, 4000, b"pixels").unwrap();
    let mut row = [0u8; 6];
    b.read_unchecked_at(&r, 4000, &mut row).unwrap();
    assert_eq!(&row, b"pixels");
    // Past the end of the buffer: refused, nothing written or read, nothing broken.
    assert!(matches!(
        a.write_lent(&r, 8190, b"xyz"),
        Err(ChannelError::TooLarge {
            len: 8193,
            max: 8192
        })
    ));
    assert!(matches!(
        b.read_unchecked_at(&r, usize::MAX, &mut row),
        Err(ChannelError::TooLarge { .. })
    ));
    assert_eq!((a.broken(), b.broken()), (None, None));
    // Only a buffer on loan can be written: not a made-up one, not one taken back.
    let fake = BulkRef { offset: 16384, ..r };
    assert_eq!(a.write_lent(&fake, 0, b"x"), Err(ChannelError::NotLent));
    a.reclaim(&r).unwrap();
    assert_eq!(a.write_lent(&r, 0, b"x"), Err(ChannelError::NotLent));
    // A descriptor outside the peer's pool breaks the area for the reader.
    let outside = BulkRef {
        offset: a.pool_size() as u32,
        len: 1,
        check: 0,
    };
    assert!(matches!(
        b.read_unchecked_at(&outside, 0, &mut row[..1]),
        Err(ChannelError::Broken(Breach::BulkOutOfRange { .. }))
    ));
}

#[test]
fn a_buffer_too_large_for_the_pool_is_refused_at_once() {
    let (_r, mut a, _b) = pair(SIZE);
    let max = a.pool_size();
    assert_eq!(
        a.lend(&vec![0; max + 1]),
        Err(ChannelError::TooLarge { len: max + 1, max })
    );
    assert!(a.lend(&vec![0; max]).is_ok());
}

#[test]
fn a_peer_that_keeps_buffers_only_exhausts_the_pool() {
    let (_r, mut a, _b) = pair(SIZE);
    // 8 pages per pool: four 2-page buffers, then nothing.
    let refs: Vec<BulkRef> = (0..4).map(|i| a.lend(&data(5000, i)).unwrap()).collect();
    let full = a.lend(&[1]);
    assert_eq!(
        full,
        Err(ChannelError::BulkExhausted {
            lent_pages: 8,
            pool_pages: 8,
            loans: 4
        })
    );
    assert_eq!(
        full.unwrap_err().to_string(),
        "the peer holds 8 of the 8 pages of our bulk pool (4 buffers not returned)"
    );
    // One back: room for one more, not a breach.
    a.reclaim(&refs[2]).unwrap();
    assert!(a.lend(&data(8000, 9)).is_ok());
    assert_eq!(a.broken(), None);
}

#[test]
fn a_descriptor_outside_the_pool_breaks_the_area() {
    for (offset, len) in [
        (SIZE / 2, 1),
        (0, SIZE / 2 + 1),
        (100, 10),
        (u32::MAX - 4095, 4096),
    ] {
        let (_r, _a, mut b) = pair(SIZE);
        let r = BulkRef {
            offset,
            len,
            check: 0,
        };
        let breach = Breach::BulkOutOfRange {
            offset,
            len,
            pool: SIZE / 2,
        };
        assert_eq!(
            b.read(&r, &mut vec![0; len as usize % 70_000]),
            Err(ChannelError::Broken(breach))
        );
        assert_eq!(b.broken(), Some(breach));
        // Broken for good: lending and reading both say so.
        assert_eq!(b.lend(&[1]), Err(ChannelError::Broken(breach)));
    }
}

#[test]
fn a_buffer_rewritten_after_it_was_lent_is_caught_when_copied() {
    let (region, mut a, mut b) = pair(SIZE);
    let r = a.lend(&data(3000, 4)).unwrap();
    // The lender (it may write its own pool) changes a byte after lending.
    region.write_bytes(1234, &[0xEE]);
    let mut got = vec![0; 3000];
    let breach = Breach::BulkChanged {
        offset: 0,
        len: 3000,
    };
    assert_eq!(b.read(&r, &mut got), Err(ChannelError::Broken(breach)));
    assert_eq!(
        ChannelError::Broken(breach).to_string(),
        "channel broken by the peer: bulk buffer of 3000 bytes at 0x0 changed after it was lent"
    );
    // Data that is never parsed can be taken as it is.
    let (region, mut a, mut b) = pair(SIZE);
    let r = a.lend(&data(3000, 4)).unwrap();
    region.write_bytes(1234, &[0xEE]);
    assert_eq!(b.read_unchecked(&r, &mut got), Ok(3000));
}

#[test]
fn a_return_of_what_was_not_lent_breaks_the_area() {
    let (_r, mut a, _b) = pair(SIZE);
    let r = a.lend(&data(100, 5)).unwrap();
    let forged = BulkRef { len: 99, ..r };
    assert_eq!(
        a.reclaim(&forged),
        Err(ChannelError::Broken(Breach::BulkNotLent {
            offset: 0,
            len: 99
        }))
    );
    // Twice is a breach too.
    let (_r, mut a, _b) = pair(SIZE);
    let r = a.lend(&data(100, 5)).unwrap();
    a.reclaim(&r).unwrap();
    assert!(matches!(a.reclaim(&r), Err(ChannelError::Broken(_))));
}

#[test]
fn reset_forgets_every_loan() {
    let (_r, mut a, _b) = pair(SIZE);
    for i in 0..4 {
        a.lend(&data(5000, i)).unwrap();
    }
    let _ = a.reclaim(&BulkRef {
        offset: 4096,
        len: 1,
        check: 0,
    });
    assert!(a.broken().is_some());
    a.reset();
    assert_eq!((a.lent_pages(), a.loans(), a.broken()), (0, 0, None));
    assert!(a.lend(&vec![1; a.pool_size()]).is_ok());
}

#[test]
fn the_checksum_sees_every_byte_and_the_length() {
    let base = data(1000, 3);
    let c = checksum(&base);
    for i in [0, 7, 8, 31, 32, 500, 999] {
        let mut d = base.clone();
        d[i] ^= 1;
        assert_ne!(checksum(&d), c, "byte {i}");
    }
    assert_ne!(checksum(&base[..999]), c);
    assert_ne!(checksum(&[0; 3]), checksum(&[0; 4]));
}

/// What one step of the property test does.
#[derive(Clone, Debug)]
enum Step {
    /// A lends a buffer of this many bytes.
    Lend(usize),
    /// B reads and returns the loan at this position (of those outstanding).
    Return(usize),
    /// The peer (B) returns a made-up descriptor.
    Forge(u32, u32, u64),
    /// A writes some bytes into its own pool (a lender rewriting what it lent).
    Rewrite(usize, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..20_000).prop_map(Step::Lend),
        4 => any::<usize>().prop_map(Step::Return),
        1 => (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(o, l, c)| Step::Forge(o, l, c)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Step::Rewrite(at, v)),
    ]
}

proptest! {
    /// Against a model of the loans: no two outstanding buffers share a page, every buffer
    /// reads back as lent unless its bytes were rewritten, the pool is exhausted only when
    /// no run of free pages fits, breaches happen only for forged or rewritten buffers, and
    /// nothing is written outside the area.
    #[test]
    fn loans_never_overlap_and_arrive_intact(steps in prop::collection::vec(step(), 1..80)) {
        let (region, mut a, mut b) = pair(SIZE);
        let pool = a.pool_size();
        // Outstanding: descriptor, data, rewritten since lent.
        let mut out: Vec<(BulkRef, Vec<u8>, bool)> = Vec::new();
        let mut broken = false;
        for (n, s) in steps.into_iter().enumerate() {
            match s {
                Step::Lend(len) => match a.lend(&data(len, n as u8)) {
                    Ok(r) => {
                        prop_assert!(!broken);
                        let pages = |r: &BulkRef| {
                            let first = r.offset as usize / BULK_PAGE;
                            first..first + (r.len as usize).div_ceil(BULK_PAGE).max(1)
                        };
                        prop_assert!(pages(&r).end * BULK_PAGE <= pool);
                        for (o, ..) in &out {
                            let (x, y) = (pages(o), pages(&r));
                            prop_assert!(x.end <= y.start || y.end <= x.start, "{o:?} and {r:?}");
                        }
                        out.push((r, data(len, n as u8), false));
                    }
                    Err(ChannelError::BulkExhausted { lent_pages, pool_pages, loans }) => {
                        prop_assert_eq!(loans, out.len());
                        prop_assert_eq!(pool_pages * BULK_PAGE, pool);
                        // Only when no run of free pages is long enough (or every loan
                        // entry is taken).
                        let mut used = vec![false; pool_pages];
                        for (o, ..) in &out {
                            let first = o.offset as usize / BULK_PAGE;
                            let pages = (o.len as usize).div_ceil(BULK_PAGE).max(1);
                            used[first..first + pages].fill(true);
                        }
                        prop_assert_eq!(lent_pages, used.iter().filter(|u| **u).count());
                        let need = len.div_ceil(BULK_PAGE);
                        let fits = used.windows(need).any(|w| w.iter().all(|u| !u));
                        prop_assert!(!fits || loans == bulkhead_ring::MAX_LOANS, "exhausted with room");
                    }
                    Err(ChannelError::Broken(_)) => prop_assert!(broken),
                    Err(e) => prop_assert!(false, "lend: {e}"),
                },
                Step::Return(i) if !out.is_empty() => {
                    let (r, sent, rewritten) = out.remove(i % out.len());
                    let mut got = vec![0; r.len as usize];
                    match b.read(&r, &mut got) {
                        Ok(_) => prop_assert_eq!(&got, &sent),
                        Err(ChannelError::Broken(Breach::BulkChanged { .. })) => {
                            prop_assert!(rewritten);
                            b.reset();
                        }
                        Err(e) => prop_assert!(false, "read: {e}"),
                    }
                    match a.reclaim(&r) {
                        Ok(()) => prop_assert!(!broken),
                        Err(ChannelError::Broken(_)) => prop_assert!(broken),
                        Err(e) => prop_assert!(false, "reclaim: {e}"),
                    }
                }
                Step::Return(_) => {}
                Step::Forge(offset, len, check) => {
                    let r = BulkRef { offset, len, check };
                    let real = out.iter().any(|(o, ..)| *o == r);
                    if a.reclaim(&r).is_err() {
                        broken = true;
                    } else {
                        prop_assert!(real);
                        out.retain(|(o, ..)| *o != r);
                    }
                }
                Step::Rewrite(at, v) => {
                    let at = at % pool;
                    region.write_bytes(at, &[v]);
                    for (r, sent, rewritten) in &mut out {
                        let start = r.offset as usize;
                        if (start..start + r.len as usize).contains(&at) && sent[at - start] != v {
                            *rewritten = true;
                        }
                    }
                }
            }
        }
        prop_assert!(region.guards_intact());
    }
}

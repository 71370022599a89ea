//! A channel's bulk area between an honest lender (side A) and a hostile peer (side B) that
//! returns made-up descriptors, asks A to read made-up buffers of its own pool (whole, or a
//! piece at an offset, as the gui qube reads surface rows), and scribbles anywhere in the area (its own pool, which it may write, and A's, which the
//! hypervisor would map read-only but which the test writes anyway).
//!
//! Checked after every operation: nothing panics; nothing is written outside the area (its
//! guard pages stay intact); no two of A's outstanding loans share a page; a buffer B reads
//! back from A's pool is exactly what A lent unless that range was scribbled; A breaks only
//! after a forged return, and says so on every later call.

#![no_main]

use bulkhead_ring::{BULK_PAGE, Bulk, BulkRef, ChannelError, SharedRegion, Side};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let size = (usize::from(input.byte() % 16) + 1) * 2 * BULK_PAGE;
    let region = SharedRegion::zeroed(size);
    let mut a = Bulk::open(region.clone(), Side::A, size as u32).unwrap();
    let mut b = Bulk::open(region.clone(), Side::B, size as u32).unwrap();
    let pool = size / 2;
    // A's loans: descriptor, data, scribbled since.
    let mut out: Vec<(BulkRef, Vec<u8>, bool)> = Vec::new();
    let mut a_broken = false;
    let mut n = 0u8;
    while !input.0.is_empty() {
        n = n.wrapping_add(1);
        match input.byte() % 8 {
            0 => {
                let len = input.u32() as usize % (pool + 2);
                match a.lend(&body(len, n)) {
                    Ok(r) => {
                        assert!(!a_broken);
                        let pages = |r: &BulkRef| {
                            let f = r.offset as usize / BULK_PAGE;
                            f..f + (r.len as usize).div_ceil(BULK_PAGE).max(1)
                        };
                        assert!(pages(&r).end * BULK_PAGE <= pool);
                        for (o, ..) in &out {
                            let (x, y) = (pages(o), pages(&r));
                            assert!(x.end <= y.start || y.end <= x.start);
                        }
                        out.push((r, body(len, n), false));
                    }
                    Err(ChannelError::Broken(_)) => assert!(a_broken),
                    Err(ChannelError::BulkExhausted { loans, .. }) => assert_eq!(loans, out.len()),
                    Err(ChannelError::TooLarge { len: l, max }) => assert!(l > max && max == pool),
                    Err(e) => panic!("lend: {e}"),
                }
            }
            // B reads one of A's loans honestly and returns it.
            1 if !out.is_empty() => {
                let i = usize::from(input.byte()) % out.len();
                let (r, sent, scribbled) = out.remove(i);
                let mut got = vec![0; r.len as usize];
                match b.read(&r, &mut got) {
                    Ok(_) => assert!(got == sent || scribbled),
                    Err(ChannelError::Broken(_)) => {
                        assert!(scribbled || b.broken().is_some());
                        b.reset();
                    }
                    Err(e) => panic!("read: {e}"),
                }
                match a.reclaim(&r) {
                    Ok(()) => assert!(!a_broken),
                    Err(ChannelError::Broken(_)) => assert!(a_broken),
                    Err(e) => panic!("reclaim: {e}"),
                }
            }
            // B returns a made-up descriptor (or a near miss of a real one).
            2 => {
                let r = match (input.byte() % 2, out.first()) {
                    (0, Some((real, ..))) => BulkRef {
                        len: real.len ^ u32::from(input.byte() % 3),
                        ..*real
                    },
                    _ => BulkRef {
                        offset: input.u32(),
                        len: input.u32(),
                        check: u64::from(input.u32()),
                    },
                };
                match a.reclaim(&r) {
                    Ok(()) => {
                        assert!(out.iter().any(|(o, ..)| *o == r));
                        out.retain(|(o, ..)| *o != r);
                    }
                    Err(_) => a_broken = true,
                }
            }
            // A reads a made-up descriptor of B's pool: a breach or bytes, never a panic.
            3 => {
                let r = BulkRef {
                    offset: input.u32() % (2 * pool as u32) & !0xF00,
                    len: input.u32() % (pool as u32 + 10),
                    check: 0,
                };
                let mut buf = vec![0; input.u32() as usize % (pool + 10)];
                let _ = a.read_unchecked(&r, &mut buf);
                a_broken |= a.broken().is_some();
            }
            // A reads a piece of a made-up descriptor of B's pool (a surface row).
            6 => {
                let r = BulkRef {
                    offset: input.u32() % (2 * pool as u32) & !0xF00,
                    len: input.u32() % (pool as u32 + 10),
                    check: 0,
                };
                let at = input.u32() as usize;
                let mut buf = vec![0; input.u32() as usize % (pool + 10)];
                match a.read_unchecked_at(&r, at, &mut buf) {
                    Ok(()) => assert!(r.offset as usize + r.len as usize <= pool && at + buf.len() <= r.len as usize),
                    Err(_) => a_broken |= a.broken().is_some(),
                }
            }
            // A draws into one of its loans (a surface); B reads the piece back.
            7 if !out.is_empty() => {
                let i = usize::from(input.byte()) % out.len();
                let at = input.u32() as usize % (out[i].0.len as usize + 2);
                let piece = body(usize::from(input.byte()), n);
                let r = out[i].0;
                match a.write_lent(&r, at, &piece) {
                    Ok(()) => {
                        assert!(at + piece.len() <= r.len as usize);
                        out[i].1[at..at + piece.len()].copy_from_slice(&piece);
                        let mut got = vec![0; piece.len()];
                        if b.read_unchecked_at(&r, at, &mut got).is_ok() {
                            assert_eq!(got, piece);
                        }
                        // The checksum no longer matches: only unchecked reads from now on.
                        out[i].2 = true;
                    }
                    Err(ChannelError::TooLarge { .. }) => assert!(at + piece.len() > r.len as usize),
                    Err(ChannelError::Broken(_)) => assert!(a_broken),
                    Err(e) => panic!("write_lent: {e}"),
                }
            }
            // Scribble anywhere in the area.
            4 => {
                let at = input.u32() as usize % size;
                let v = input.byte();
                region.write_bytes(at, &[v]);
                for (r, sent, scribbled) in &mut out {
                    let s = r.offset as usize;
                    if (s..s + r.len as usize).contains(&at) && sent[at - s] != v {
                        *scribbled = true;
                    }
                }
            }
            _ => {
                if a_broken {
                    assert!(matches!(a.lend(&[1]), Err(ChannelError::Broken(_))));
                }
            }
        }
        assert!(region.guards_intact());
    }
});

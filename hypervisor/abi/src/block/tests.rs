extern crate std;
use super::*;
use proptest::prelude::*;

const VOLUME: VolumeGeometry = VolumeGeometry {
    sectors: 1000,
    read_only: false,
    max_sectors_per_request: 128,
};
const READ_ONLY: VolumeGeometry = VolumeGeometry {
    read_only: true,
    ..VOLUME
};
/// A 64 KiB pool: 128 sectors.
const POOL: u32 = 64 * 1024;

fn read(sector: u64, count: u32, pool_offset: u32) -> BlockOp {
    BlockOp::Read {
        sector,
        count,
        pool_offset,
    }
}

fn write(sector: u64, count: u32, pool_offset: u32) -> BlockOp {
    BlockOp::Write {
        sector,
        count,
        pool_offset,
    }
}

#[test]
fn accepted_requests_name_their_ranges() {
    let c = check(&read(10, 4, 1024), &VOLUME, POOL).unwrap();
    assert_eq!((c.sectors, c.pool), (10..14, 1024..3072));
    // The last sectors, filling the pool to its end.
    let c = check(&write(872, 128, 0), &VOLUME, POOL).unwrap();
    assert_eq!((c.sectors, c.pool), (872..1000, 0..POOL));
    let c = check(
        &BlockOp::Discard {
            sector: 999,
            count: 1,
        },
        &VOLUME,
        0,
    )
    .unwrap();
    assert_eq!((c.sectors, c.pool), (999..1000, 0..0));
    // Reading a read-only volume is fine.
    assert!(check(&read(0, 1, 0), &READ_ONLY, POOL).is_ok());
}

#[test]
fn info_and_flush_always_pass() {
    let nothing = VolumeGeometry {
        sectors: 0,
        read_only: true,
        max_sectors_per_request: 0,
    };
    for op in [BlockOp::Info, BlockOp::Flush] {
        let c = check(&op, &nothing, 0).unwrap();
        assert_eq!((c.sectors, c.pool), (0..0, 0..0));
    }
}

#[test]
fn each_mistake_has_its_error() {
    let cases = [
        (write(0, 1, 0), READ_ONLY, BlockError::ReadOnly),
        (
            BlockOp::Discard {
                sector: 0,
                count: 1,
            },
            READ_ONLY,
            BlockError::ReadOnly,
        ),
        (read(0, 0, 0), VOLUME, BlockError::BadRequest),
        (
            BlockOp::Discard {
                sector: 0,
                count: 0,
            },
            VOLUME,
            BlockError::BadRequest,
        ),
        (read(0, 129, 0), VOLUME, BlockError::TooLong),
        (read(0, u32::MAX, 0), VOLUME, BlockError::TooLong),
        (read(997, 4, 0), VOLUME, BlockError::OutOfRange),
        (read(1000, 1, 0), VOLUME, BlockError::OutOfRange),
        (write(u64::MAX, 1, 0), VOLUME, BlockError::OutOfRange),
        (read(u64::MAX - 1, 128, 0), VOLUME, BlockError::OutOfRange),
        (read(0, 1, 1), VOLUME, BlockError::Unaligned),
        (write(0, 1, 511), VOLUME, BlockError::Unaligned),
        (read(0, 1, POOL), VOLUME, BlockError::BadPoolRange),
        (write(0, 2, POOL - 512), VOLUME, BlockError::BadPoolRange),
    ];
    for (op, volume, error) in cases {
        assert_eq!(check(&op, &volume, POOL), Err(error), "{op:?}");
    }
}

#[test]
fn no_pool_range_overflows() {
    let huge = VolumeGeometry {
        sectors: u64::MAX,
        read_only: false,
        max_sectors_per_request: u32::MAX,
    };
    // The pool range's end is past 4 GiB: it fits neither the pool nor a u32.
    let top = u32::MAX - (SECTOR_SIZE - 1);
    assert_eq!(
        check(&read(0, u32::MAX, top), &huge, u32::MAX),
        Err(BlockError::BadPoolRange)
    );
    assert_eq!(
        check(&write(0, 2, top), &huge, u32::MAX),
        Err(BlockError::BadPoolRange)
    );
    // The one sector below it fits a pool of u32::MAX bytes exactly up to its end.
    let c = check(&write(u64::MAX - 1, 1, top - 512), &huge, u32::MAX).unwrap();
    assert_eq!(c.pool, top - 512..top);
    assert_eq!(c.sectors, u64::MAX - 1..u64::MAX);
}

fn largest_messages() -> ([BlockRequest; 3], [BlockResponse; 3]) {
    let requests = [
        BlockRequest {
            tag: u32::MAX,
            op: read(u64::MAX, u32::MAX, u32::MAX),
        },
        BlockRequest {
            tag: u32::MAX,
            op: write(u64::MAX, u32::MAX, u32::MAX),
        },
        BlockRequest {
            tag: u32::MAX,
            op: BlockOp::Discard {
                sector: u64::MAX,
                count: u32::MAX,
            },
        },
    ];
    let responses = [
        BlockResponse {
            tag: u32::MAX,
            result: Ok(BlockReply::Info {
                sectors: u64::MAX,
                read_only: true,
                max_sectors_per_request: u32::MAX,
                version: u16::MAX,
            }),
        },
        BlockResponse {
            tag: u32::MAX,
            result: Ok(BlockReply::Done),
        },
        BlockResponse {
            tag: u32::MAX,
            result: Err(BlockError::BadRequest),
        },
    ];
    (requests, responses)
}

#[test]
fn the_largest_messages_fit_a_slot() {
    let room = (BLOCK_SLOT_SIZE - crate::channel::SLOT_HEADER) as usize;
    let (requests, responses) = largest_messages();
    for r in &requests {
        let mut buf = [0u8; 64];
        let bytes = encode_request(r, &mut buf[..room]).unwrap();
        assert_eq!(decode_request(bytes), Ok(*r));
    }
    for r in &responses {
        let mut buf = [0u8; 64];
        let bytes = encode_response(r, &mut buf[..room]).unwrap();
        assert_eq!(decode_response(bytes), Ok(*r));
    }
}

#[test]
fn decoding_refuses_short_long_and_foreign_bytes() {
    let mut buf = [0u8; 64];
    let req = BlockRequest {
        tag: 7,
        op: read(1, 2, 512),
    };
    let n = encode_request(&req, &mut buf).unwrap().len();
    assert_eq!(decode_request(&buf[..n]), Ok(req));
    assert_eq!(decode_request(&buf[..n - 1]), Err(CodecError::Malformed));
    assert_eq!(decode_request(&buf[..n + 1]), Err(CodecError::Malformed));
    assert_eq!(decode_request(&[]), Err(CodecError::Malformed));
    // An operation tag past the last variant.
    assert_eq!(decode_request(&[7, 5]), Err(CodecError::Malformed));
    // A result tag that is neither Ok nor Err.
    assert_eq!(decode_response(&[7, 2, 1]), Err(CodecError::Malformed));
    assert_eq!(
        encode_request(&req, &mut buf[..2]),
        Err(CodecError::BufferFull)
    );
}

/// The fuzz target's seeds (`fuzz/seeds/block_requests/`) are encodings of these requests
/// (a geometry byte, then the message); `BULKHEAD_WRITE_SEEDS=1` writes them again.
#[test]
fn fuzz_seeds_are_current() {
    let (largest, _) = largest_messages();
    let seeds = [
        ("info", BlockOp::Info),
        ("flush", BlockOp::Flush),
        ("read", read(8, 8, 4096)),
        ("write", write(16, 16, 0)),
        (
            "discard",
            BlockOp::Discard {
                sector: 100,
                count: 50,
            },
        ),
        ("largest-write", largest[1].op),
    ];
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/block_requests");
    let write_seeds = std::env::var_os("BULKHEAD_WRITE_SEEDS").is_some();
    for (i, (name, op)) in seeds.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        buf[0] = i as u8;
        let n = 1 + encode_request(&BlockRequest { tag: 1, op }, &mut buf[1..])
            .unwrap()
            .len();
        let path = dir.join(name);
        if write_seeds {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &buf[..n]).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            on_disk,
            &buf[..n],
            "{} is stale: run with BULKHEAD_WRITE_SEEDS=1",
            path.display()
        );
    }
}

fn any_op() -> impl Strategy<Value = BlockOp> {
    // Numbers near the limits as often as anywhere.
    let sector = prop_oneof![
        0u64..2000,
        any::<u64>(),
        (0u64..300).prop_map(|d| u64::MAX - d)
    ];
    let count = prop_oneof![0u32..300, any::<u32>()];
    let offset = prop_oneof![(0u32..300).prop_map(|s| s * 512), any::<u32>()];
    prop_oneof![
        Just(BlockOp::Info),
        Just(BlockOp::Flush),
        (sector.clone(), count.clone(), offset.clone()).prop_map(|(s, c, o)| read(s, c, o)),
        (sector.clone(), count.clone(), offset).prop_map(|(s, c, o)| write(s, c, o)),
        (sector, count).prop_map(|(sector, count)| BlockOp::Discard { sector, count }),
    ]
}

fn any_volume() -> impl Strategy<Value = VolumeGeometry> {
    (
        prop_oneof![0u64..3000, any::<u64>()],
        any::<bool>(),
        prop_oneof![0u32..300, any::<u32>()],
    )
        .prop_map(|(sectors, read_only, max)| VolumeGeometry {
            sectors,
            read_only,
            max_sectors_per_request: max,
        })
}

fn any_result() -> impl Strategy<Value = Result<BlockReply, BlockError>> {
    let error = prop_oneof![
        Just(BlockError::OutOfRange),
        Just(BlockError::TooLong),
        Just(BlockError::BadPoolRange),
        Just(BlockError::ReadOnly),
        Just(BlockError::Unaligned),
        Just(BlockError::Io),
        Just(BlockError::Busy),
        Just(BlockError::BadRequest),
    ];
    prop_oneof![
        Just(Ok(BlockReply::Done)),
        (any::<u64>(), any::<bool>(), any::<u32>(), any::<u16>()).prop_map(
            |(sectors, read_only, max_sectors_per_request, version)| Ok(BlockReply::Info {
                sectors,
                read_only,
                max_sectors_per_request,
                version,
            })
        ),
        error.prop_map(Err),
    ]
}

proptest! {
    /// Whatever a request says, an accepted Read, Write or Discard lies inside the volume
    /// and the pool, moves exactly `count` sectors, and a refused one has a reason.
    #[test]
    fn accepted_requests_stay_inside(op in any_op(), volume in any_volume(), pool_len in prop_oneof![0u32..(1 << 20), any::<u32>()]) {
        match (check(&op, &volume, pool_len), op) {
            (Ok(c), BlockOp::Read { sector, count, pool_offset } | BlockOp::Write { sector, count, pool_offset }) => {
                prop_assert!(count > 0 && count <= volume.max_sectors_per_request);
                prop_assert_eq!(c.sectors.clone(), sector..sector + u64::from(count));
                prop_assert!(c.sectors.end <= volume.sectors);
                prop_assert_eq!(c.pool.start, pool_offset);
                prop_assert_eq!(pool_offset % SECTOR_SIZE, 0);
                prop_assert_eq!(u64::from(c.pool.end - c.pool.start), u64::from(count) * 512);
                prop_assert!(c.pool.end <= pool_len);
                let is_write = matches!(op, BlockOp::Write { .. });
                prop_assert!(!(volume.read_only && is_write));
            }
            (Ok(c), BlockOp::Discard { sector, count }) => {
                prop_assert!(!volume.read_only);
                prop_assert!(count > 0 && count <= volume.max_sectors_per_request);
                prop_assert_eq!(c.sectors.clone(), sector..sector + u64::from(count));
                prop_assert!(c.sectors.end <= volume.sectors);
                prop_assert!(c.pool.is_empty());
            }
            (Ok(c), BlockOp::Info | BlockOp::Flush) => {
                prop_assert!(c.sectors.is_empty() && c.pool.is_empty());
            }
            (Err(e), BlockOp::Info | BlockOp::Flush) => prop_assert!(false, "{:?} refused: {:?}", op, e),
            (Err(_), _) => {}
        }
    }

    /// Random bytes from a hostile client decode to an error, or to a request that `check`
    /// judges without panicking and that encodes back to bytes that decode to it again.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), volume in any_volume(), pool_len: u32) {
        if let Ok(req) = decode_request(&bytes) {
            let _ = check(&req.op, &volume, pool_len);
            let mut buf = [0u8; 64];
            let again = encode_request(&req, &mut buf).unwrap();
            prop_assert_eq!(decode_request(again), Ok(req));
        }
        if let Ok(resp) = decode_response(&bytes) {
            let mut buf = [0u8; 64];
            let again = encode_response(&resp, &mut buf).unwrap();
            prop_assert_eq!(decode_response(again), Ok(resp));
        }
    }

    /// Every request and response encodes into a slot and decodes to itself.
    #[test]
    fn messages_round_trip(tag: u32, op in any_op(), result in any_result()) {
        let room = (BLOCK_SLOT_SIZE - crate::channel::SLOT_HEADER) as usize;
        let req = BlockRequest { tag, op };
        let mut buf = [0u8; 64];
        let bytes = encode_request(&req, &mut buf[..room]).unwrap();
        prop_assert_eq!(decode_request(bytes), Ok(req));
        let resp = BlockResponse { tag, result };
        let bytes = encode_response(&resp, &mut buf[..room]).unwrap();
        prop_assert_eq!(decode_response(bytes), Ok(resp));
    }
}

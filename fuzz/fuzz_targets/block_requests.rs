//! Fuzz target: a hostile client's bytes as a block request, judged against a few volume
//! geometries and pool sizes as the storage qube judges them (seeded with
//! `fuzz/seeds/block_requests/`, written by `bulkhead_abi::block`'s tests).
//!
//! Input: one byte choosing the geometry and the pool, then the message.
//!
//! Checks: no panic; a request that decodes encodes back to bytes that decode to it; an
//! accepted Read, Write or Discard lies inside the volume and the pool, moves exactly its
//! count of sectors, and never writes a read-only volume; Info and Flush always pass; the
//! same bytes read as a response do not panic either.
#![no_main]

use bulkhead_abi::block::{
    BlockOp, SECTOR_SIZE, VolumeGeometry, check, decode_request, decode_response, encode_request,
    encode_response,
};
use libfuzzer_sys::fuzz_target;

/// Volumes: empty, small, read-only, as large as a sector number goes, and one whose
/// largest request passes a u32 of pool bytes.
const VOLUMES: [VolumeGeometry; 5] = [
    VolumeGeometry {
        sectors: 0,
        read_only: false,
        max_sectors_per_request: 128,
    },
    VolumeGeometry {
        sectors: 4096,
        read_only: false,
        max_sectors_per_request: 256,
    },
    VolumeGeometry {
        sectors: 1 << 21,
        read_only: true,
        max_sectors_per_request: 2048,
    },
    VolumeGeometry {
        sectors: u64::MAX,
        read_only: false,
        max_sectors_per_request: 1 << 16,
    },
    VolumeGeometry {
        sectors: u64::MAX - 1,
        read_only: false,
        max_sectors_per_request: u32::MAX,
    },
];

/// Pool sizes: none, one page, 1 MiB, the largest a bulk area gives, and the largest u32.
const POOLS: [u32; 5] = [0, 4096, 1 << 20, 32 << 20, u32::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, message)) = data.split_first() else {
        return;
    };
    let volume = VOLUMES[usize::from(choice) % VOLUMES.len()];
    let pool_len = POOLS[usize::from(choice / 8) % POOLS.len()];
    if let Ok(req) = decode_request(message) {
        let mut buf = [0u8; 64];
        let again = encode_request(&req, &mut buf).expect("a request fits 64 bytes");
        assert_eq!(decode_request(again), Ok(req));
        let verdict = check(&req.op, &volume, pool_len);
        match (req.op, verdict) {
            (BlockOp::Info | BlockOp::Flush, v) => {
                let c = v.expect("Info and Flush always pass");
                assert!(c.sectors.is_empty() && c.pool.is_empty());
            }
            (
                BlockOp::Read {
                    sector,
                    count,
                    pool_offset,
                }
                | BlockOp::Write {
                    sector,
                    count,
                    pool_offset,
                },
                Ok(c),
            ) => {
                assert!(count >= 1 && count <= volume.max_sectors_per_request);
                assert_eq!(c.sectors, sector..sector + u64::from(count));
                assert!(c.sectors.end <= volume.sectors);
                assert_eq!(c.pool.start, pool_offset);
                assert_eq!(pool_offset % SECTOR_SIZE, 0);
                assert_eq!(u64::from(c.pool.end - c.pool.start), u64::from(count) * 512);
                assert!(c.pool.end <= pool_len);
                assert!(!(volume.read_only && matches!(req.op, BlockOp::Write { .. })));
            }
            (BlockOp::Discard { sector, count }, Ok(c)) => {
                assert!(!volume.read_only);
                assert!(count >= 1 && count <= volume.max_sectors_per_request);
                assert_eq!(c.sectors, sector..sector + u64::from(count));
                assert!(c.sectors.end <= volume.sectors);
                assert!(c.pool.is_empty());
            }
            (_, Err(_)) => {}
        }
    }
    if let Ok(resp) = decode_response(message) {
        let mut buf = [0u8; 64];
        let again = encode_response(&resp, &mut buf).expect("a response fits 64 bytes");
        assert_eq!(decode_response(again), Ok(resp));
    }
});

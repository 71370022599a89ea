//! A channel's bulk area as each of its two ends maps it (`bulkhead_abi::channel`, bulk
//! areas): one host block of `size` bytes at the end's `bulk_window(local)`, its first half
//! side A's pool and its second half side B's. A side's own pool is mapped writable, the
//! peer's read-only, and neither is executable; the same split is used for the qube's nested
//! page tables and for the unikernel's own page tables, so a write into the peer's pool is a
//! fault at either level.

use crate::paging::Perm;
use crate::{LARGE_PAGE_SIZE, PAGE_SIZE, Range};
use bulkhead_abi::channel::{BULK_WINDOW_BASE, MAX_BULK_SIZE, MAX_CHANNELS_PER_QUBE};

/// Where every qube's bulk windows lie: `bulk_window(0)..bulk_window(MAX_CHANNELS_PER_QUBE)`.
pub const WINDOWS: Range = Range {
    start: BULK_WINDOW_BASE,
    len: MAX_CHANNELS_PER_QUBE as u64 * MAX_BULK_SIZE,
};

/// The two pools of a `size`-byte area (a valid bulk size, see
/// `bulkhead_abi::channel::bulk_size_valid`) as the end on `side` (0 = A, 1 = B) maps them:
/// (offset in the area, length, rights). Its own pool is read/write, the peer's read-only;
/// neither is executable.
pub fn pools(size: u64, side: u32) -> [(u64, u64, Perm); 2] {
    let half = size / 2;
    let (a, b) = if side == 0 {
        (Perm::RW, Perm::RO)
    } else {
        (Perm::RO, Perm::RW)
    };
    [(0, half, a), (half, half, b)]
}

/// Whether `offset` in a `size`-byte area lies in the pool the end on `side` may only read
/// (the peer's, [`pools`]).
pub fn in_peer_pool(size: u64, side: u32, offset: u64) -> bool {
    pools(size, side)
        .iter()
        .any(|&(start, len, perm)| !perm.write && offset.wrapping_sub(start) < len)
}

/// The alignment the host block of a `size`-byte area is allocated with: 2 MiB when each pool
/// is at least 2 MiB (so both levels of tables map most of it with 2 MiB pages), else a page.
pub fn host_alignment(size: u64) -> u64 {
    if size / 2 >= LARGE_PAGE_SIZE {
        LARGE_PAGE_SIZE
    } else {
        PAGE_SIZE
    }
}

/// Page tables (the last level) that mapping a `size`-byte area's two pools at a bulk window
/// takes, from a host block aligned to [`host_alignment`] (or identity-mapped): every 2 MiB
/// block of the window that a pool covers only in part needs one. Pools under 2 MiB use
/// 4 KiB pages throughout; larger ones are 2 MiB-aligned, so only the blocks where a pool
/// starts or ends off a 2 MiB boundary need a table. The page directory for the windows is
/// not counted (one per qube with any bulk area).
pub fn table_pages(size: u64) -> u64 {
    let half = size / 2;
    if size == 0 {
        0
    } else if half < LARGE_PAGE_SIZE {
        size.div_ceil(LARGE_PAGE_SIZE)
    } else {
        u64::from(!half.is_multiple_of(LARGE_PAGE_SIZE))
            + u64::from(!size.is_multiple_of(LARGE_PAGE_SIZE))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::paging::{EntryFormat, NestedFormat, Tables, X86Format};
    use bulkhead_abi::channel::{BULK_POOL_ALIGN, bulk_size_valid, bulk_window};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    /// Maps the pools at window `local` from `host` and returns the page tables used beyond
    /// the root, PDPT and PD.
    fn mapped<F: EntryFormat + Copy>(fmt: F, size: u64, host: u64, side: u32, local: usize) -> u64 {
        let mut arena = std::vec![0u8; 64 * PAGE_SIZE as usize];
        let mut t = Tables::new(&mut arena, 0x10_0000, fmt).unwrap();
        let window = bulk_window(local);
        for (off, len, perm) in pools(size, side) {
            t.map_range(window + off, host + off, len, perm).unwrap();
        }
        for (off, len, _) in pools(size, side) {
            assert_eq!(t.translate(window + off), Some(host + off));
            assert_eq!(
                t.translate(window + off + len - 1),
                Some(host + off + len - 1)
            );
        }
        t.pages_used() as u64 - 3
    }

    #[test]
    fn pools_split_the_area_and_only_the_own_one_is_writable() {
        let [(a_off, a_len, a), (b_off, b_len, b)] = pools(8 * MIB, 0);
        assert_eq!((a_off, a_len, b_off, b_len), (0, 4 * MIB, 4 * MIB, 4 * MIB));
        assert!(a.write && !b.write && !a.exec && !b.exec);
        let [(_, _, a), (_, _, b)] = pools(8 * MIB, 1);
        assert!(!a.write && b.write && !a.exec && !b.exec);
        assert!(!WINDOWS.overlaps(&Range {
            start: bulkhead_abi::channel::WINDOW_BASE,
            len: MAX_CHANNELS_PER_QUBE as u64 * bulkhead_abi::channel::WINDOW_STRIDE,
        }));
        assert_eq!(WINDOWS.end(), bulk_window(MAX_CHANNELS_PER_QUBE));
    }

    #[test]
    fn the_peer_pool_is_the_other_half() {
        let size = 8 * MIB;
        for (side, peer) in [(0, 4 * MIB..8 * MIB), (1, 0..4 * MIB)] {
            for offset in [0, 1, 4 * MIB - 1, 4 * MIB, 8 * MIB - 1, 8 * MIB, u64::MAX] {
                assert_eq!(
                    in_peer_pool(size, side, offset),
                    peer.contains(&offset),
                    "side {side}, offset {offset:#x}"
                );
            }
        }
        assert!(!in_peer_pool(0, 0, 0), "no area");
    }

    #[test]
    fn large_areas_take_no_page_tables() {
        assert_eq!(table_pages(0), 0);
        assert_eq!(table_pages(MAX_BULK_SIZE), 0);
        assert_eq!(table_pages(4 * MIB), 0);
        assert_eq!(table_pages(6 * MIB), 1);
        assert_eq!(table_pages(5 * MIB), 2);
        assert_eq!(table_pages(8192), 1);
        assert_eq!(table_pages(3 * MIB), 2);
        assert_eq!(
            mapped(NestedFormat::Npt, MAX_BULK_SIZE, 0x1_0000_0000, 0, 7),
            0
        );
    }

    proptest! {
        /// The count is exact for nested tables from any host block with the alignment
        /// [`host_alignment`] gives, and for identity-mapped guest tables.
        #[test]
        fn table_pages_is_what_the_tables_take(
            pools_pages in 1u64..=MAX_BULK_SIZE / 2 / BULK_POOL_ALIGN,
            host_units in 1u64..2048,
            side in 0u32..2,
            local in 0..MAX_CHANNELS_PER_QUBE,
            ept in any::<bool>(),
        ) {
            let size = pools_pages * 2 * BULK_POOL_ALIGN;
            prop_assert!(bulk_size_valid(size));
            let host = host_units * host_alignment(size);
            let fmt = if ept { NestedFormat::Ept } else { NestedFormat::Npt };
            prop_assert_eq!(mapped(fmt, size, host, side, local), table_pages(size));
            let fmt = X86Format { user: false, nx: true };
            let window = bulk_window(local);
            prop_assert_eq!(mapped(fmt, size, window, side, local), table_pages(size));
        }
    }
}

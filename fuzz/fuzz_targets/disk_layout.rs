//! Fuzz target: arbitrary bytes as the start of the storage qube's disk (seeded with
//! `fuzz/seeds/disk_layout/`, written by `bulkhead_abi::disk`'s tests).
//!
//! Input: one mode byte, then the disk's first bytes. With bit 0 of the mode set the target
//! writes a correct checksum over them first, so inputs reach the checks after it (a
//! fuzzer rarely forges a CRC-32 by itself); bits 1 and 2 choose the disk's size.
//!
//! Checks: no panic; a layout that parses is exactly what its bytes encode, passes
//! `DiskLayout::check`, fits the disk, keeps its volumes apart and after the first MiB, and
//! planning it again with no new volume changes none of them.
#![no_main]

use bulkhead_abi::disk::{
    ALIGN_SECTORS, CHECKSUM_AT, DATA_START_SECTOR, DiskLayout, LAYOUT_LEN, crc32, encode, parse,
    plan,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut bytes = bytes.to_vec();
    if mode & 1 == 1 && bytes.len() >= LAYOUT_LEN {
        bytes[CHECKSUM_AT..CHECKSUM_AT + 4].fill(0);
        let sum = crc32(&bytes[..LAYOUT_LEN]);
        bytes[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
    }
    let disk = [u64::MAX, 1 << 21, 1 << 12, 0][usize::from(mode >> 1) & 3];
    let Ok(layout) = parse(&bytes, disk) else {
        return;
    };
    assert_eq!(&encode(&layout)[..], &bytes[..LAYOUT_LEN]);
    assert_eq!(layout.check(), Ok(()));
    assert!(layout.disk_sectors <= disk);
    let vols: Vec<_> = layout.volumes.iter().collect();
    for (i, v) in vols.iter().enumerate() {
        let end = v.end_sector().expect("no volume passes a u64");
        assert!(v.sectors > 0 && end <= layout.disk_sectors);
        assert!(v.first_sector >= DATA_START_SECTOR && v.first_sector % ALIGN_SECTORS == 0);
        for o in &vols[..i] {
            assert!(end <= o.first_sector || o.end_sector().unwrap() <= v.first_sector);
        }
    }
    let again: DiskLayout = plan(&[], Some(&layout)).expect("a parsed layout plans");
    assert_eq!(again.volumes, layout.volumes);
    assert!(again.disk_sectors >= layout.disk_sectors);
});

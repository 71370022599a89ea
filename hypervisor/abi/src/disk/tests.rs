extern crate std;
use super::*;
use proptest::prelude::*;
use std::vec::Vec;

const MIB: u64 = 1 << 20;
/// A disk far larger than any layout here.
const HUGE: u64 = u64::MAX;

/// Writes the checksum of `bytes` again after a test changed them (so a later check is
/// reached).
fn reseal(bytes: &mut [u8]) {
    bytes[CHECKSUM_AT..CHECKSUM_AT + 4].fill(0);
    let sum = crc32(&bytes[..LAYOUT_LEN]);
    bytes[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
}

fn two_qubes() -> DiskLayout {
    plan(
        &[
            ("debian", VolumeKind::TemplateRoot, 3 * MIB + 512),
            ("work", VolumeKind::Private, 2 * MIB),
        ],
        None,
    )
    .unwrap()
}

/// What `plan` is given.
type List<'a> = &'a [(&'a str, VolumeKind, u64)];

/// Offset of table entry `i`'s field at `field`.
fn entry(i: usize, field: usize) -> usize {
    HEADER_LEN + i * ENTRY_LEN + field
}

#[test]
fn crc32_matches_known_vectors() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"a"), 0xE8B7_BE43);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
    assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
}

#[test]
fn layout_fits_the_first_mib() {
    assert_eq!(LAYOUT_LEN, 2112);
    assert_eq!(LAYOUT_SECTORS, 5);
    assert_eq!(ALIGN_SECTORS * u64::from(SECTOR_SIZE), MIB);
}

#[test]
fn plan_places_volumes_on_mib_boundaries() {
    let l = two_qubes();
    let v: Vec<_> = l
        .volumes
        .iter()
        .map(|v| (v.first_sector, v.sectors))
        .collect();
    // 3 MiB + one sector takes 4 MiB of the disk; the next volume starts after them.
    assert_eq!(v, [(2048, 3 * 2048 + 1), (5 * 2048, 2 * 2048)]);
    assert_eq!(l.disk_sectors, 7 * 2048);
    let bytes = encode(&l);
    assert_eq!(bytes.len(), LAYOUT_LEN);
    assert_eq!(&bytes[..8], b"BKDISK01");
    assert_eq!(parse(&bytes, l.disk_sectors), Ok(l.clone()));
    // More bytes than the layout (the whole first MiB, say) are fine.
    let mut first_mib = bytes.clone();
    first_mib.resize(MIB as usize, 0xAA);
    assert_eq!(parse(&first_mib, HUGE), Ok(l.clone()));
    assert_eq!(
        l.find("work", VolumeKind::Private).map(|v| v.sectors),
        Some(4096)
    );
    assert_eq!(l.find("work", VolumeKind::TemplateRoot), None);
    let empty = plan(&[], None).unwrap();
    assert_eq!(empty.disk_sectors, DATA_START_SECTOR);
    assert_eq!(parse(&encode(&empty), DATA_START_SECTOR), Ok(empty));
}

#[test]
fn plan_grows_a_disk_without_moving_anything() {
    let old = two_qubes();
    // A new qube, the old ones listed in another order, and one no longer listed.
    let grown = plan(
        &[
            ("personal", VolumeKind::Private, MIB),
            ("work", VolumeKind::Private, 2 * MIB),
        ],
        Some(&old),
    )
    .unwrap();
    assert_eq!(grown.volumes.len(), 3);
    for (a, b) in old.volumes.iter().zip(grown.volumes.iter()) {
        assert_eq!(a, b);
    }
    let new = grown.find("personal", VolumeKind::Private).unwrap();
    assert_eq!((new.first_sector, new.sectors), (7 * 2048, 2048));
    assert_eq!(grown.disk_sectors, 8 * 2048);
    // Planning again with the same list changes nothing.
    assert_eq!(
        plan(&[("personal", VolumeKind::Private, MIB)], Some(&grown)),
        Ok(grown.clone())
    );
    // A template's private volume is another volume than its root.
    let t = plan(&[("debian", VolumeKind::Private, MIB)], Some(&grown)).unwrap();
    assert_eq!(t.volumes.len(), 4);
    // A disk made larger than its volumes stays that large.
    let big = DiskLayout {
        disk_sectors: 1 << 30,
        ..old.clone()
    };
    assert_eq!(plan(&[], Some(&big)).unwrap().disk_sectors, 1 << 30);
}

#[test]
fn plan_refuses_what_it_cannot_place() {
    let old = two_qubes();
    assert_eq!(
        plan(&[("work", VolumeKind::Private, 4 * MIB)], Some(&old)),
        Err(LayoutError::SizeChanged {
            volume: 0,
            was: 2 * MIB,
            now: 4 * MIB
        })
    );
    let private = VolumeKind::Private;
    let long = "x".repeat(VOLUME_NAME_MAX + 1);
    let cases: [(List<'_>, LayoutError); 6] = [
        (&[("", private, MIB)], LayoutError::BadName { volume: 0 }),
        (
            &[("a", private, MIB), ("-x", private, MIB)],
            LayoutError::BadName { volume: 1 },
        ),
        (
            &[(long.as_str(), private, MIB)],
            LayoutError::BadName { volume: 0 },
        ),
        (&[("a", private, 0)], LayoutError::BadSize { volume: 0 }),
        (&[("a", private, 1000)], LayoutError::BadSize { volume: 0 }),
        (
            &[
                ("a", private, MIB),
                ("b", private, MIB),
                ("a", private, 2 * MIB),
            ],
            LayoutError::Duplicate {
                volume: 2,
                other: 0,
            },
        ),
    ];
    for (list, error) in cases {
        assert_eq!(plan(list, None), Err(error), "{list:?}");
    }
    let names: Vec<std::string::String> =
        (0..MAX_VOLUMES + 2).map(|i| std::format!("q{i}")).collect();
    let list: Vec<_> = names.iter().map(|n| (n.as_str(), private, MIB)).collect();
    assert!(plan(&list[..MAX_VOLUMES], None).is_ok());
    assert_eq!(
        plan(&list, None),
        Err(LayoutError::TooManyVolumes {
            count: MAX_VOLUMES + 2
        })
    );
    // The largest volumes a u64 of bytes can name: 32 of them still fit a u64 of sectors.
    let max = u64::MAX - 511;
    let huge: Vec<_> = names[..MAX_VOLUMES]
        .iter()
        .map(|n| (n.as_str(), private, max))
        .collect();
    let l = plan(&huge, None).unwrap();
    assert_eq!(parse(&encode(&l), HUGE), Ok(l));
}

#[test]
fn parse_names_each_failed_check() {
    let good = encode(&two_qubes());
    let disk = two_qubes().disk_sectors;
    assert_eq!(
        parse(&good[..LAYOUT_LEN - 1], disk),
        Err(LayoutError::TooShort {
            len: LAYOUT_LEN - 1
        })
    );
    assert_eq!(parse(&[0; LAYOUT_LEN], disk), Err(LayoutError::NotALayout));
    // The version is read before the checksum: a layout of version 2 is named as such.
    let mut b = good.clone();
    b[8] = 2;
    assert_eq!(parse(&b, disk), Err(LayoutError::Version { found: 2 }));
    let mut b = good.clone();
    b[entry(1, 40)] ^= 1;
    assert!(matches!(parse(&b, disk), Err(LayoutError::Checksum { .. })));
    assert_eq!(
        parse(&good, disk - 1),
        Err(LayoutError::DiskTooSmall {
            layout: disk,
            disk: disk - 1
        })
    );

    // The checks after the checksum, each reached with a resealed layout.
    let broken = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(&mut b);
        parse(&b, HUGE)
    };
    let u64_le = |v: u64| v.to_le_bytes();
    // Volume 0's name and kind.
    let same_as_first: Vec<u8> = good[entry(0, 0)..entry(0, 34)].to_vec();
    let cases = [
        (
            broken(12, &4096u32.to_le_bytes()),
            LayoutError::SectorSize { found: 4096 },
        ),
        (
            broken(24, &33u16.to_le_bytes()),
            LayoutError::TooManyVolumes { count: 33 },
        ),
        (broken(10, &[1]), LayoutError::NonZeroReserved { at: 10 }),
        (broken(63, &[1]), LayoutError::NonZeroReserved { at: 63 }),
        (
            broken(entry(1, 60), &[1]),
            LayoutError::NonZeroReserved { at: entry(1, 60) },
        ),
        // An entry past the count must be all zero.
        (
            broken(entry(2, 5), &[1]),
            LayoutError::NonZeroReserved { at: entry(2, 5) },
        ),
        // Name: too long a length, bad UTF-8, a character outside the rule, empty.
        (
            broken(entry(0, 0), &[32, 0]),
            LayoutError::BadName { volume: 0 },
        ),
        (
            broken(entry(1, 2), &[0xFF]),
            LayoutError::BadName { volume: 1 },
        ),
        (
            broken(entry(1, 2), b"/"),
            LayoutError::BadName { volume: 1 },
        ),
        (
            broken(entry(1, 0), &[0, 0, 0, 0, 0, 0]),
            LayoutError::BadName { volume: 1 },
        ),
        (
            broken(entry(0, 33), &[0]),
            LayoutError::BadKind {
                volume: 0,
                found: 0,
            },
        ),
        (
            broken(entry(1, 33), &[3]),
            LayoutError::BadKind {
                volume: 1,
                found: 3,
            },
        ),
        (
            broken(entry(1, 34), &[0, 0x80]),
            LayoutError::BadFlags {
                volume: 1,
                found: 0x8000,
            },
        ),
        (
            broken(entry(1, 48), &u64_le(0)),
            LayoutError::BadSize { volume: 1 },
        ),
        (
            broken(entry(1, 40), &u64_le(5 * 2048 + 8)),
            LayoutError::Unaligned { volume: 1 },
        ),
        (
            broken(entry(0, 40), &u64_le(0)),
            LayoutError::BeforeData { volume: 0 },
        ),
        (
            broken(entry(1, 48), &u64_le(2 * 2048 + 1)),
            LayoutError::PastEnd { volume: 1 },
        ),
        (
            broken(entry(1, 48), &u64_le(u64::MAX)),
            LayoutError::PastEnd { volume: 1 },
        ),
        (
            broken(entry(1, 40), &u64_le(2 * 2048)),
            LayoutError::Overlap {
                volume: 1,
                other: 0,
            },
        ),
        // Same name and kind as the first.
        (
            broken(entry(1, 0), &same_as_first),
            LayoutError::Duplicate {
                volume: 1,
                other: 0,
            },
        ),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, Err(want), "case {i}");
    }
    // Same name, other kind: two volumes.
    let renamed = broken(entry(1, 0), &[6, 0, b'd', b'e', b'b', b'i', b'a', b'n']).unwrap();
    assert_eq!(renamed.volumes[1].name.as_str(), "debian");
}

#[test]
fn errors_read_as_sentences() {
    let e = LayoutError::SizeChanged {
        volume: 3,
        was: 1024,
        now: 2048,
    };
    assert_eq!(
        std::format!("{e}"),
        "volume 3: is 1024 bytes on the disk, asked for 2048 (volumes are not resized)"
    );
    assert_eq!(
        std::format!("{}", LayoutError::NotALayout),
        "not a Bulkhead disk (no BKDISK01 magic)"
    );
}

/// The fuzz target's seeds (`fuzz/seeds/disk_layout/`): a mode byte (bit 0: the target
/// reseals the checksum), then a layout. `BULKHEAD_WRITE_SEEDS=1` writes them again.
#[test]
fn fuzz_seeds_are_current() {
    let names: Vec<std::string::String> =
        (0..MAX_VOLUMES).map(|i| std::format!("qube-{i}")).collect();
    let full: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), VolumeKind::Private, (i as u64 + 1) * 512))
        .collect();
    let seeds = [
        ("empty", 0u8, plan(&[], None).unwrap()),
        ("two-qubes", 0, two_qubes()),
        ("two-qubes-resealed", 1, two_qubes()),
        ("full-table", 1, plan(&full, None).unwrap()),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/disk_layout");
    let write_seeds = std::env::var_os("BULKHEAD_WRITE_SEEDS").is_some();
    for (name, mode, layout) in seeds {
        let mut seed = std::vec![mode];
        seed.extend(encode(&layout));
        let path = dir.join(name);
        if write_seeds {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &seed).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == seed,
            "{} is stale: run with BULKHEAD_WRITE_SEEDS=1",
            path.display()
        );
    }
}

/// A list of volumes to plan: valid names (some shared between kinds), sizes of whole
/// sectors from one sector to a few GiB.
fn any_list() -> impl Strategy<Value = Vec<(std::string::String, VolumeKind, u64)>> {
    let kind = prop_oneof![Just(VolumeKind::Private), Just(VolumeKind::TemplateRoot)];
    let sectors = prop_oneof![1u64..5000, 1u64..(1 << 24)];
    proptest::collection::vec(
        ("[a-z0-9][a-z0-9._-]{0,30}", kind, sectors),
        0..=MAX_VOLUMES,
    )
    .prop_map(|mut list| {
        let mut seen = std::collections::HashSet::new();
        list.retain(|(n, k, _)| seen.insert((n.clone(), *k)));
        list.into_iter().map(|(n, k, s)| (n, k, s * 512)).collect()
    })
}

fn borrowed(list: &[(std::string::String, VolumeKind, u64)]) -> Vec<(&str, VolumeKind, u64)> {
    list.iter().map(|(n, k, b)| (n.as_str(), *k, *b)).collect()
}

proptest! {
    /// Any plan encodes and parses back to itself, its volumes in the order listed, aligned,
    /// after the first MiB, inside the disk and apart.
    #[test]
    fn plans_round_trip(list in any_list()) {
        let list = borrowed(&list);
        let l = plan(&list, None).unwrap();
        prop_assert_eq!(l.volumes.len(), list.len());
        for (v, (name, kind, bytes)) in l.volumes.iter().zip(&list) {
            prop_assert_eq!((v.name.as_str(), v.kind, v.sectors * 512), (*name, *kind, *bytes));
        }
        let bytes = encode(&l);
        prop_assert_eq!(parse(&bytes, l.disk_sectors), Ok(l.clone()));
        prop_assert_eq!(encode(&parse(&bytes, HUGE).unwrap()), bytes);
    }

    /// Growing keeps every old volume where it was and appends the new ones.
    #[test]
    fn growing_keeps_old_volumes(list in any_list(), split in 0usize..=MAX_VOLUMES) {
        let list = borrowed(&list);
        let split = split.min(list.len());
        let old = plan(&list[..split], None).unwrap();
        let grown = plan(&list, Some(&old)).unwrap();
        prop_assert_eq!(&grown, &plan(&list, None).unwrap());
        for (a, b) in old.volumes.iter().zip(grown.volumes.iter()) {
            prop_assert_eq!(a, b);
        }
        prop_assert!(grown.disk_sectors >= old.disk_sectors);
    }

    /// Any single byte of the header or table changed is refused.
    #[test]
    fn any_flipped_byte_is_refused(list in any_list(), at in 0..LAYOUT_LEN, flip in 1u8..=255) {
        let list = borrowed(&list);
        let l = plan(&list, None).unwrap();
        let mut bytes = encode(&l);
        bytes[at] ^= flip;
        prop_assert!(parse(&bytes, HUGE).is_err());
    }

    /// Random bytes (and random bytes resealed, so the later checks see them) give a
    /// layout or an error, never a panic; a layout they give is what they encode.
    #[test]
    fn random_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..LAYOUT_LEN + 64),
        count in 0u16..40,
        disk: u64,
    ) {
        let _ = parse(&bytes, disk);
        if bytes.len() >= LAYOUT_LEN {
            bytes[..10].copy_from_slice(&[b'B', b'K', b'D', b'I', b'S', b'K', b'0', b'1', 1, 0]);
            bytes[24..26].copy_from_slice(&count.to_le_bytes());
            reseal(&mut bytes);
            if let Ok(l) = parse(&bytes, disk) {
                prop_assert_eq!(&encode(&l)[..], &bytes[..LAYOUT_LEN]);
            }
        }
    }
}

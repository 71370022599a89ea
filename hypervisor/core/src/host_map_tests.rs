use super::*;

extern crate std;
use proptest::prelude::*;
use std::vec::Vec;

fn r(start: u64, end: u64) -> Region {
    Region { start, end }
}

/// QEMU's q35 with 8 GiB: 2 GiB below the hole (minus the BIOS areas), 6 GiB above 4 GiB.
fn q35_8g() -> MemoryMap {
    let mut m = MemoryMap::new();
    assert!(m.add(r(0, 0x9_fc00)));
    assert!(m.add(r(0x10_0000, 0x8000_0000)));
    assert!(m.add(r(0x1_0000_0000, 0x2_8000_0000)));
    m
}

fn image() -> ImageSections {
    ImageSections {
        text: r(0x10_0000, 0x18_0000),
        rodata: r(0x18_0000, 0x1a_0000),
        data: r(0x1a_0000, 0x43_6000),
    }
}

/// The perm `plan` gives address `a`, or None if unmapped.
fn perm_at(plan: &[Mapping], a: u64) -> Option<Perm> {
    plan.iter()
        .find(|m| m.region.start <= a && a < m.region.end)
        .map(|m| m.perm)
}

#[test]
fn code_is_not_writable_and_nothing_else_executes() {
    let p = plan(&image(), &q35_8g()).unwrap();
    assert_eq!(perm_at(&p, 0x10_0000), Some(TEXT));
    assert_eq!(perm_at(&p, 0x17_f000), Some(TEXT));
    assert_eq!(perm_at(&p, 0x18_0000), Some(Perm::RO));
    assert_eq!(perm_at(&p, 0x1a_0000), Some(Perm::RW));
    assert_eq!(perm_at(&p, 0x43_5fff), Some(Perm::RW));
    assert_eq!(perm_at(&p, 0x43_6000), Some(Perm::RW));
    let exec: Vec<_> = p.iter().filter(|m| m.perm.exec).collect();
    assert_eq!(exec.len(), 1, "only the text executes: {exec:?}");
    assert!(p.iter().filter(|m| m.perm.write).all(|m| !m.perm.exec));
}

#[test]
fn below_4g_everything_is_mapped_and_only_ram_is_cached() {
    let p = plan(&image(), &q35_8g()).unwrap();
    // In order, without gaps, from 0 to 4 GiB.
    let low: Vec<_> = p.iter().filter(|m| m.region.start < LOW_4G).collect();
    assert_eq!(low[0].region.start, 0);
    for w in low.windows(2) {
        assert_eq!(w[0].region.end, w[1].region.start, "{w:?}");
    }
    assert_eq!(low.last().unwrap().region.end, LOW_4G);
    // The BIOS area, the PCI hole, ECAM and the local APIC are uncached device memory.
    for a in [0xe_0000, 0x8000_0000, 0xb000_0000, 0xfee0_0000] {
        assert_eq!(perm_at(&p, a), Some(Perm::MMIO), "{a:#x}");
    }
    // The partial page at the end of conventional memory is not RAM.
    assert_eq!(perm_at(&p, 0x9_f000), Some(Perm::MMIO));
    assert_eq!(perm_at(&p, 0x9_e000), Some(Perm::RW));
}

#[test]
fn ram_above_4g_is_mapped_and_nothing_else_there() {
    let p = plan(&image(), &q35_8g()).unwrap();
    assert_eq!(perm_at(&p, 0x1_0000_0000), Some(Perm::RW));
    assert_eq!(perm_at(&p, 0x2_7fff_f000), Some(Perm::RW));
    assert_eq!(perm_at(&p, 0x2_8000_0000), None);
}

#[test]
fn a_broken_image_layout_is_refused() {
    let mut i = image();
    i.rodata.start += 0x1000;
    assert_eq!(plan(&i, &q35_8g()), Err(PlanError::Image));
    let mut i = image();
    i.text.end = 0x17_f800;
    i.rodata.start = 0x17_f800;
    assert_eq!(plan(&i, &q35_8g()), Err(PlanError::Image));
    // An image the memory map does not call RAM would be left unmapped.
    let mut ram = MemoryMap::new();
    assert!(ram.add(r(0x40_0000, 0x8000_0000)));
    assert_eq!(plan(&image(), &ram), Err(PlanError::Image));
}

/// Reads the leaf entry for `va` from tables built in `arena` at `base`: (entry, large).
fn leaf(arena: &[u8], base: u64, va: u64) -> Option<(u64, bool)> {
    let mut table = base;
    for level in (1..=4).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 511;
        let at = (table - base + index * 8) as usize;
        let e = u64::from_le_bytes(arena[at..at + 8].try_into().ok()?);
        if e & 1 == 0 {
            return None;
        }
        if level == 1 || (level == 2 && e & (1 << 7) != 0) {
            return Some((e, level == 2));
        }
        table = e & 0x000f_ffff_ffff_f000;
    }
    None
}

#[test]
fn built_tables_say_what_the_plan_says() {
    let p = plan(&image(), &q35_8g()).unwrap();
    let pages = arena_pages(&p);
    let base = 0x7000_0000;
    let mut arena = std::vec![0u8; pages * PAGE_SIZE as usize];
    let root = build(&mut arena, base, &p).unwrap();
    assert_eq!(root, base);
    for (a, write, nx, uncached) in [
        (0x10_0000u64, false, false, false),
        (0x18_0000, false, true, false),
        (0x20_0000, true, true, false),
        (0x4000_0000, true, true, false),
        (0xfee0_0000, true, true, true),
        (0x1_8000_0000, true, true, false),
    ] {
        let (e, _) = leaf(&arena, base, a).unwrap_or_else(|| panic!("{a:#x} unmapped"));
        assert_eq!(
            e & 0x000f_ffff_fff0_0000 & !0x1f_ffff,
            a & !0x1f_ffff,
            "{a:#x} identity"
        );
        assert_eq!(e & 2 != 0, write, "{a:#x} write");
        assert_eq!(e >> 63 == 1, nx, "{a:#x} nx");
        assert_eq!(e & 0x18 == 0x18, uncached, "{a:#x} cache");
        assert_eq!(e & 4, 0, "{a:#x} supervisor only");
    }
    // 2 MiB pages where possible: RAM at 1 GiB is one large page.
    assert!(leaf(&arena, base, 0x4000_0000).unwrap().1);
    assert!(leaf(&arena, base, 0x2_8000_0000).is_none());
}

proptest! {
    /// Any memory map and any image inside the first RAM range: every RAM page is mapped
    /// with the right rights, the tables fit the arena `arena_pages` sizes, and no page is
    /// both writable and executable.
    #[test]
    fn any_map_builds_in_its_arena(
        ranges in proptest::collection::vec((0u64..1 << 24, 1u64..1 << 20), 1..12),
        text_pages in 1u64..64, ro_pages in 1u64..64, data_pages in 1u64..256,
    ) {
        let mut ram = MemoryMap::new();
        // The image's home: 1 MiB up, big enough.
        prop_assume!(ram.add(r(0x10_0000, 0x10_0000 + (text_pages + ro_pages + data_pages) * 4096)));
        for (start_page, len_pages) in ranges {
            let start = (start_page << 12) + (1 << 32);
            let _ = ram.add(r(start, start + (len_pages << 12)));
        }
        let t = r(0x10_0000, 0x10_0000 + text_pages * 4096);
        let ro = r(t.end, t.end + ro_pages * 4096);
        let data = r(ro.end, ro.end + data_pages * 4096);
        let Ok(p) = plan(&ImageSections { text: t, rodata: ro, data }, &ram) else {
            return Ok(());
        };
        let mut arena = std::vec![0u8; arena_pages(&p) * PAGE_SIZE as usize];
        let base = 0x100_0000_0000;
        build(&mut arena, base, &p).unwrap();
        for reg in ram.regions() {
            let a = (reg.start + 4095) & !4095;
            if a + 4096 <= reg.end {
                let (e, _) = leaf(&arena, base, a).unwrap();
                let exec = e >> 63 == 0;
                prop_assert!(!(exec && e & 2 != 0), "{a:#x} writable and executable");
                prop_assert_eq!(exec, t.start <= a && a < t.end);
            }
        }
    }
}

extern crate std;
use super::*;
use proptest::prelude::*;

/// A virtio-net-like function: BAR0 I/O 32 ports, BAR1 32-bit 4 KiB (MSI-X), BAR4 64-bit
/// prefetchable 16 KiB.
fn virtio_bars() -> [Bar; 6] {
    let raw = [0xc041, 0xfebd_1000, 0, 0, 0xfe00_000c, 0];
    let sized = [0xffff_ffe1, 0xffff_f000, 0, 0, 0xffff_c00c, 0xffff_ffff];
    decode_bars(raw, sized)
}

#[test]
fn decodes_io_32_and_64_bit_bars() {
    let b = virtio_bars();
    assert_eq!((b[0].kind, b[0].base, b[0].size), (BarKind::Io, 0xc040, 32));
    assert_eq!(
        (b[1].kind, b[1].base, b[1].size),
        (BarKind::Mem32, 0xfebd_1000, 0x1000)
    );
    assert_eq!(b[2].kind, BarKind::None);
    assert_eq!(
        (b[4].kind, b[4].base, b[4].size, b[4].flags),
        (BarKind::Mem64, 0xfe00_0000, 0x4000, 0xc)
    );
    assert_eq!(b[5].kind, BarKind::None);
}

/// Only memory BARs with bit 3 set are prefetchable (virtio's BAR4 is, though it holds
/// registers: which is why only a display controller's prefetchable BAR is mapped
/// write-combining). QEMU's std VGA: BAR0 32-bit prefetchable 16 MiB, BAR2 32-bit 4 KiB.
#[test]
fn prefetchable_is_bit_3_of_a_memory_bar() {
    let b = virtio_bars();
    let p: std::vec::Vec<bool> = b.iter().map(Bar::prefetchable).collect();
    assert_eq!(p, [false, false, false, false, true, false]);
    let vga = decode_bars(
        [0xfd00_0008, 0, 0xfebd_4000, 0, 0, 0],
        [0xff00_0008, 0, 0xffff_f000, 0, 0, 0],
    );
    assert!(vga[0].prefetchable() && !vga[2].prefetchable());
    let io_with_bit_3 = decode_bars([0xc049, 0, 0, 0, 0, 0], [0xffff_ffe9, 0, 0, 0, 0, 0]);
    assert_eq!(io_with_bit_3[0].kind, BarKind::Io);
    assert!(!io_with_bit_3[0].prefetchable());
}

#[test]
fn bar_sizing_works_and_never_reaches_hardware() {
    let mut v = ConfigView::new(virtio_bars(), Caps::default());
    assert_eq!(v.read(0x20, 0), 0xfe00_000c);
    assert_eq!(v.write(0x20, 0xffff_ffff, 0), Write::Absorbed);
    assert_eq!(v.write(0x24, 0xffff_ffff, 0), Write::Absorbed);
    assert_eq!(v.read(0x20, 0), 0xffff_c00c);
    assert_eq!(v.read(0x24, 0), 0xffff_ffff);
    v.write(0x20, 0xfe00_0000, 0);
    v.write(0x24, 0, 0);
    assert_eq!(v.read(0x20, 0), 0xfe00_000c);
    assert_eq!(v.read(0x10, 0xc041), 0, "I/O BARs are hidden");
    assert_eq!(v.read(0x30, 0xfeb0_0000), 0, "no expansion ROM");
}

#[test]
fn command_register_keeps_io_off_and_msi_is_denied() {
    let mut v = ConfigView::new(
        virtio_bars(),
        Caps {
            msi: Some(0x50),
            msix: Some(0x98),
        },
    );
    assert_eq!(
        v.write(COMMAND, 0xffff_ffff, 0),
        Write::Hardware(0xffff_0546)
    );
    assert_eq!(v.read(COMMAND, 0x0010_0007), 0x0010_0006);
    assert_eq!(v.write(0x98, 0x8000_0000, 0), Write::Denied);
    assert_eq!(v.write(0x54, 0xfee0_0000, 0), Write::Denied);
    assert_eq!(v.write(0xa0, 1, 0), Write::Hardware(1));
}

#[test]
fn finds_caps_and_survives_loops() {
    let space = |o: u16| match o {
        COMMAND => 1 << 20,
        0x34 => 0x40,
        0x40 => 0x5009,
        0x50 => 0x9805,
        0x98 => 0x4011, // points back to 0x40: a loop
        _ => 0,
    };
    let caps = find_caps(space);
    assert_eq!((caps.msi, caps.msix), (Some(0x50), Some(0x98)));
    let msix = |o: u16| match o {
        0x98 => 2 << 16, // 3 entries
        0x9c => 0x1,     // table in BAR1 at 0
        0xa0 => 0x801,   // PBA in BAR1 at 0x800
        _ => 0,
    };
    assert_eq!(msix_regions(msix, 0x98), [(1, 0, 48), (1, 0x800, 8)]);
}

#[test]
fn holes_are_cut_out_at_page_granularity() {
    let pieces = without_holes(0x10_0000, 0x4000, &[(0x10_1800, 16), (0x10_0000, 8)]);
    assert_eq!(
        pieces
            .iter()
            .copied()
            .collect::<std::vec::Vec<_>>()
            .as_slice(),
        &[(0x10_2000, 0x2000)]
    );
    let pieces = without_holes(0x10_0000, 0x4000, &[(0x20_0000, 16)]);
    assert_eq!(
        pieces
            .iter()
            .copied()
            .collect::<std::vec::Vec<_>>()
            .as_slice(),
        &[(0x10_0000, 0x4000)]
    );
}

proptest! {
    #[test]
    fn no_guest_write_moves_a_bar_or_enables_io(
        writes in proptest::collection::vec((0u16..1024, any::<u32>(), any::<u32>()), 1..64)
    ) {
        let mut v = ConfigView::new(virtio_bars(), Caps { msi: Some(0x50), msix: Some(0x98) });
        for (off, value, hw) in writes {
            let off = off & !3;
            match v.write(off, value, hw) {
                Write::Hardware(w) => {
                    prop_assert!(!(BAR0..BAR0 + 24).contains(&off) && off != 0x30);
                    prop_assert!(!(0x50..0x50 + 24).contains(&off) && !(0x98..0x9c).contains(&off));
                    if off == COMMAND { prop_assert_eq!(w & 1, 0); }
                }
                Write::Absorbed | Write::Denied => {}
            }
            // A BAR never reads back bits inside its size.
            let lo = v.read(0x20, 0);
            prop_assert_eq!(lo & 0x3ff0, 0);
        }
    }

    #[test]
    fn decoding_any_registers_never_panics(raw: [u32; 6], sized: [u32; 6]) {
        for b in decode_bars(raw, sized) {
            prop_assert!(b.size == 0 || b.size.is_power_of_two());
        }
    }

    #[test]
    fn pieces_never_overlap_holes(base in 0u64..1 << 20, len in 0u64..1 << 16,
                                  holes in proptest::collection::vec((0u64..1 << 21, 0u64..1 << 14), 0..4)) {
        let base = base & !0xfff;
        let len = len & !0xfff;
        for &(s, l) in without_holes(base, len, &holes).iter() {
            prop_assert!(s >= base && s + l <= base + len);
            for (hs, hl) in &holes {
                if *hl > 0 {
                    prop_assert!(s + l <= (hs & !0xfff) || s >= (hs + hl + 0xfff) & !0xfff);
                }
            }
        }
    }
}

mod channel;

use super::*;
use bulkhead_abi::guest_pci::{FIRST_CHANNEL_SLOT, INFO_CAP_OFFSET, IO_BASE, IO_STRIDE};

fn device(local: u8, region_size: u64) -> ChannelDevice {
    ChannelDevice {
        local,
        bar0: bulkhead_abi::channel::window(usize::from(local)),
        region_size,
        bar4: bulkhead_abi::channel::bulk_window(usize::from(local)),
        info: InfoCap {
            side: 1,
            size: region_size as u32,
            bulk_size: 0,
            name: bulkhead_abi::bounded::BoundedString::try_from("work.net").unwrap(),
        },
    }
}

/// [`device`] with a bulk area of `bulk_size` bytes.
fn with_bulk(local: u8, bulk_size: u32) -> ChannelDevice {
    let mut d = device(local, 0x3000);
    d.info.bulk_size = bulk_size;
    d
}

fn bus_with(locals: &[u8]) -> PciBus {
    let mut bus = PciBus::new();
    for &l in locals {
        assert!(bus.add_channel(device(l, 0x3000)));
    }
    bus
}

fn addr(dev: u8, func: u8, reg: u8) -> u32 {
    0x8000_0000 | u32::from(dev) << 11 | u32::from(func) << 8 | u32::from(reg & 0xFC)
}

/// Linux's `pci_conf1_read`.
fn cfg_read(bus: &mut PciBus, dev: u8, reg: u8, len: u8) -> u32 {
    bus.io_write(0xCF8, 4, addr(dev, 0, reg));
    match len {
        1 => bus.io_read(0xCFC + u16::from(reg & 3), 1),
        2 => bus.io_read(0xCFC + u16::from(reg & 2), 2),
        _ => bus.io_read(0xCFC, 4),
    }
}

/// Linux's `pci_conf1_write`.
fn cfg_write(bus: &mut PciBus, dev: u8, reg: u8, len: u8, value: u32) {
    bus.io_write(0xCF8, 4, addr(dev, 0, reg));
    let port = match len {
        1 => 0xCFC + u16::from(reg & 3),
        2 => 0xCFC + u16::from(reg & 2),
        _ => 0xCFC,
    };
    assert_eq!(bus.io_write(port, len, value), PciEffect::None);
}

const SLOT0: u8 = FIRST_CHANNEL_SLOT;

#[test]
fn linux_type1_check_and_sanity_scan() {
    let mut bus = PciBus::new();
    // pci_check_type1.
    bus.io_write(0xCFB, 1, 0x01);
    let tmp = bus.io_read(0xCF8, 4);
    bus.io_write(0xCF8, 4, 0x8000_0000);
    assert_eq!(bus.io_read(0xCF8, 4), 0x8000_0000);
    bus.io_write(0xCF8, 4, tmp);
    bus.io_write(0xCF8, 4, 0x8000_0000);
    bus.io_write(0xCFB, 1, 0x00);
    assert_eq!(
        bus.io_read(0xCF8, 4),
        0x8000_0000,
        "outb 0xcfb leaves the latch alone"
    );
    assert_eq!(bus.io_read(0xCFA, 2), 0xFFFF);
    // pci_sanity_check: a host bridge class somewhere on bus 0.
    let found = (0..=255u8).any(|devfn| {
        bus.io_write(0xCF8, 4, 0x8000_0000 | u32::from(devfn) << 8 | 0x08);
        bus.io_read(0xCFE, 2) == 0x0600
    });
    assert!(found);
}

#[test]
fn host_bridge_is_read_only() {
    let mut bus = PciBus::new();
    assert_eq!(cfg_read(&mut bus, 0, 0, 2), u32::from(guest_pci::VENDOR_ID));
    assert_eq!(
        cfg_read(&mut bus, 0, 2, 2),
        u32::from(guest_pci::HOST_BRIDGE_DEVICE_ID)
    );
    assert_eq!(
        cfg_read(&mut bus, 0, 0x08, 4),
        guest_pci::HOST_BRIDGE_CLASS << 8
    );
    assert_eq!(
        cfg_read(&mut bus, 0, 0x0E, 1),
        0,
        "header type 0, single function"
    );
    for reg in (0x10..0x28).step_by(4) {
        cfg_write(&mut bus, 0, reg, 4, u32::MAX);
        assert_eq!(cfg_read(&mut bus, 0, reg, 4), 0, "no BAR");
    }
    cfg_write(&mut bus, 0, 0x04, 2, 0x0407);
    assert_eq!(cfg_read(&mut bus, 0, 0x04, 4), 0);
    assert_eq!(cfg_read(&mut bus, 0, 0x34, 1), 0);
}

#[test]
fn absent_functions_read_all_ones() {
    let mut bus = bus_with(&[0]);
    assert_eq!(cfg_read(&mut bus, SLOT0 + 1, 0, 4), u32::MAX);
    assert_eq!(cfg_read(&mut bus, 31, 0, 2), 0xFFFF);
    bus.io_write(0xCF8, 4, addr(SLOT0, 1, 0));
    assert_eq!(bus.io_read(0xCFC, 4), u32::MAX, "function 1");
    bus.io_write(0xCF8, 4, addr(0, 0, 0) | 1 << 16);
    assert_eq!(bus.io_read(0xCFC, 2), 0xFFFF, "bus 1");
    bus.io_write(0xCF8, 4, addr(0, 0, 0) | 1 << 24);
    assert_eq!(bus.io_read(0xCFC, 4), u32::MAX, "extended register 0x100");
    bus.io_write(0xCF8, 4, addr(0, 0, 0) & !(1 << 31));
    assert_eq!(bus.io_read(0xCFC, 4), u32::MAX, "latch disabled");
    bus.io_write(0xCF8, 4, addr(0, 0, 0));
    assert_eq!(bus.io_read(0xCFD, 4), u32::MAX, "straddles 0xcff");
    assert_eq!(bus.io_read(0xCFF, 2), 0xFFFF);
    assert_eq!(bus.io_read(0xCFD, 1), u32::from(guest_pci::VENDOR_ID >> 8));
}

#[test]
fn channel_identity_and_capability() {
    let mut bus = bus_with(&[0, 3]);
    let dev = SLOT0 + 3;
    let id = cfg_read(&mut bus, dev, 0, 4);
    assert_eq!(
        id,
        u32::from(guest_pci::CHANNEL_DEVICE_ID) << 16 | u32::from(guest_pci::VENDOR_ID)
    );
    assert_eq!(
        cfg_read(&mut bus, dev, 0x08, 4),
        guest_pci::CHANNEL_CLASS << 8 | 1
    );
    assert_eq!(cfg_read(&mut bus, dev, 0x0E, 1), 0);
    assert_eq!(
        cfg_read(&mut bus, dev, 0x2C, 2),
        u32::from(guest_pci::VENDOR_ID)
    );
    assert_eq!(
        cfg_read(&mut bus, dev, 0x2E, 2),
        3,
        "subsystem id = local index"
    );
    assert_eq!(cfg_read(&mut bus, dev, 0x06, 2), u32::from(STATUS_CAP_LIST));
    assert_eq!(cfg_read(&mut bus, dev, 0x34, 1), u32::from(INFO_CAP_OFFSET));
    assert_eq!(cfg_read(&mut bus, dev, 0x3C, 1), 16 + 3);
    assert_eq!(cfg_read(&mut bus, dev, 0x3D, 1), 1, "INTA");
    // Read the capability back as the agent does from sysfs, byte by byte.
    let mut cap = [0u8; InfoCap::LEN];
    for (i, b) in cap.iter_mut().enumerate() {
        *b = cfg_read(&mut bus, dev, INFO_CAP_OFFSET + i as u8, 1) as u8;
    }
    let info = InfoCap::parse(&cap).unwrap();
    assert_eq!(info, device(3, 0x3000).info);
    assert_eq!(
        cfg_read(&mut bus, dev, INFO_CAP_OFFSET + 1, 1),
        0,
        "last capability"
    );
    assert_eq!(cfg_read(&mut bus, dev, 0xFC, 4), 0);
    cfg_write(&mut bus, dev, INFO_CAP_OFFSET, 4, 0);
    assert_eq!(
        cfg_read(&mut bus, dev, INFO_CAP_OFFSET, 1),
        0x09,
        "read-only"
    );
    cfg_write(&mut bus, dev, 0x3C, 1, 11);
    assert_eq!(
        cfg_read(&mut bus, dev, 0x3C, 2),
        0x010B,
        "line writable, pin not"
    );
}

#[test]
fn bar_sizing_as_linux_does_it() {
    let mut bus = PciBus::new();
    assert!(bus.add_channel(device(2, 0x3000)));
    let dev = SLOT0 + 2;
    let base = device(2, 0).bar0;
    // pci_read_bases: decoding off while sizing.
    let cmd = cfg_read(&mut bus, dev, 0x04, 2);
    cfg_write(&mut bus, dev, 0x04, 2, cmd & !3);
    let l = cfg_read(&mut bus, dev, 0x10, 4);
    assert_eq!(l, base as u32 | 0x4);
    cfg_write(&mut bus, dev, 0x10, 4, l | !0);
    let sz = cfg_read(&mut bus, dev, 0x10, 4);
    cfg_write(&mut bus, dev, 0x10, 4, l);
    assert_eq!(sz, 0xFFFF_C004, "16 KiB, 64-bit memory");
    let h = cfg_read(&mut bus, dev, 0x14, 4);
    cfg_write(&mut bus, dev, 0x14, 4, !0);
    let szh = cfg_read(&mut bus, dev, 0x14, 4);
    cfg_write(&mut bus, dev, 0x14, 4, h);
    assert_eq!((h, szh), ((base >> 32) as u32, u32::MAX));
    assert_eq!(cfg_read(&mut bus, dev, 0x10, 4), l, "restored");
    // BAR2: 16 I/O ports.
    let io = cfg_read(&mut bus, dev, 0x18, 4);
    assert_eq!(io, u32::from(IO_BASE + 2 * IO_STRIDE) | 1);
    cfg_write(&mut bus, dev, 0x18, 4, !0);
    assert_eq!(cfg_read(&mut bus, dev, 0x18, 4), 0xFFFF_FFF1);
    cfg_write(&mut bus, dev, 0x18, 4, 0x1234);
    assert_eq!(cfg_read(&mut bus, dev, 0x18, 4), io, "never moves");
    for reg in [0x1C, 0x20, 0x24, 0x30] {
        cfg_write(&mut bus, dev, reg, 4, !0);
        assert_eq!(
            cfg_read(&mut bus, dev, reg, 4),
            0,
            "unimplemented BAR / ROM"
        );
    }
    cfg_write(&mut bus, dev, 0x10, 2, 0xFFFF);
    assert_eq!(
        cfg_read(&mut bus, dev, 0x10, 4),
        l,
        "partial writes do not size"
    );
    cfg_write(&mut bus, dev, 0x04, 2, cmd);
}

#[test]
fn bulk_bar_sizing_as_linux_does_it() {
    use bulkhead_abi::channel::bulk_window;
    for (local, bulk, size) in [
        (0u8, 8192u32, 0x2000u64),
        (3, 24 * 1024, 0x8000),
        (5, 6 << 20, 8 << 20),
        (7, 64 << 20, 64 << 20),
    ] {
        let mut bus = PciBus::new();
        assert!(bus.add_channel(with_bulk(local, bulk)));
        let dev = SLOT0 + local;
        let base = bulk_window(usize::from(local));
        let l = cfg_read(&mut bus, dev, 0x20, 4);
        assert_eq!(l, base as u32 | 0x4, "64-bit memory, not prefetchable");
        cfg_write(&mut bus, dev, 0x20, 4, !0);
        let sz = cfg_read(&mut bus, dev, 0x20, 4);
        cfg_write(&mut bus, dev, 0x20, 4, l);
        assert_eq!(u64::from(!(sz & !0xF)) + 1, size, "bulk area {bulk:#x}");
        let h = cfg_read(&mut bus, dev, 0x24, 4);
        cfg_write(&mut bus, dev, 0x24, 4, !0);
        assert_eq!(cfg_read(&mut bus, dev, 0x24, 4), u32::MAX);
        cfg_write(&mut bus, dev, 0x24, 4, 0x1234);
        assert_eq!(h, (base >> 32) as u32);
        assert_eq!(cfg_read(&mut bus, dev, 0x24, 4), h, "never moves");
        assert_eq!(cfg_read(&mut bus, dev, 0x20, 4), l, "restored");
        // BAR0 is still the region, BAR3 still absent.
        assert_eq!(
            cfg_read(&mut bus, dev, 0x10, 4),
            bulkhead_abi::channel::window(usize::from(local)) as u32 | 4
        );
        cfg_write(&mut bus, dev, 0x1C, 4, !0);
        assert_eq!(cfg_read(&mut bus, dev, 0x1C, 4), 0);
        // The capability names the area.
        let mut cap = [0u8; InfoCap::LEN];
        for (i, b) in cap.iter_mut().enumerate() {
            *b = cfg_read(&mut bus, dev, INFO_CAP_OFFSET + i as u8, 1) as u8;
        }
        assert_eq!(InfoCap::parse(&cap).map(|c| c.bulk_size), Some(bulk));
    }
}

#[test]
fn bar_size_rounding() {
    for (region, size) in [
        (1, 0x1000),
        (0x3000, 0x4000),
        (0x4000, 0x4000),
        (0x20_0000, 0x20_0000),
    ] {
        let mut bus = PciBus::new();
        assert!(bus.add_channel(device(0, region)));
        cfg_write(&mut bus, SLOT0, 0x10, 4, !0);
        let mask = cfg_read(&mut bus, SLOT0, 0x10, 4) & !0xF;
        assert_eq!(!mask + 1, size, "region {region:#x}");
    }
}

#[test]
fn add_channel_rejections() {
    let mut bus = bus_with(&[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(bus.channel_count(), 8);
    assert!(!bus.add_channel(device(0, 0x3000)), "duplicate");
    let mut bus = PciBus::new();
    assert!(!bus.add_channel(device(8, 0x3000)), "local 8 has no GSI");
    let mut misaligned = device(0, 0x3000);
    misaligned.bar0 += 0x1000;
    assert!(!bus.add_channel(misaligned));
    assert!(!bus.add_channel(device(0, u64::MAX)));
    let mut misaligned = with_bulk(0, 8 << 20);
    misaligned.bar4 += 4 << 20;
    assert!(
        !bus.add_channel(misaligned),
        "bulk window not aligned to its BAR"
    );
    let mut unused = device(0, 0x3000);
    unused.bar4 += 0x1000;
    assert!(
        bus.add_channel(unused),
        "no bulk area: bar4 is not looked at"
    );
    assert_eq!(bus.channel_count(), 1);
}

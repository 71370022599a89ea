use super::*;
use bulkhead_abi::guest_pci::{IO_BASE, IO_STRIDE, reg};
use proptest::prelude::*;

#[test]
fn register_block_doorbell_and_events() {
    let mut bus = bus_with(&[0, 1]);
    let port = IO_BASE + IO_STRIDE;
    assert!(bus.claims(port) && bus.claims(port + 15) && !bus.claims(IO_BASE + 2 * IO_STRIDE));
    assert!((0xCF8..=0xCFF).all(|p| bus.claims(p)) && !bus.claims(0xCF7));
    assert_eq!(
        bus.io_write(port + reg::DOORBELL, 4, 1),
        PciEffect::None,
        "IO decoding off"
    );
    bus.raise(1);
    assert_eq!(bus.io_read(port + reg::EVENTS, 4), u32::MAX);
    cfg_write(
        &mut bus,
        SLOT0 + 1,
        0x04,
        2,
        u32::from(COMMAND_IO | COMMAND_MEMORY),
    );
    assert_eq!(
        bus.io_write(port + reg::DOORBELL, 4, 0),
        PciEffect::Doorbell(1)
    );
    assert_eq!(
        bus.io_write(port + reg::DOORBELL, 2, 0),
        PciEffect::None,
        "32-bit only"
    );
    assert_eq!(bus.io_write(port + 8, 4, 0), PciEffect::None);
    assert_eq!(bus.io_read(port + reg::EVENTS, 2), 0);
    assert_eq!(bus.io_read(port + reg::EVENTS, 4), 1);
    assert_eq!(bus.io_read(port + reg::EVENTS, 4), 0, "reading cleared it");
    assert_eq!(bus.io_read(port + 12, 4), 0);
    assert_eq!(
        bus.io_write(IO_BASE + reg::DOORBELL, 4, 0),
        PciEffect::None,
        "channel 0 off"
    );
}

#[test]
fn uio_pci_generic_intx_masking() {
    let mut bus = bus_with(&[0]);
    // pcim_enable_device.
    cfg_write(
        &mut bus,
        SLOT0,
        0x04,
        2,
        u32::from(COMMAND_IO | COMMAND_MEMORY),
    );
    // pci_intx_mask_supported: toggle INTX_DISABLE, read back, restore.
    let orig = cfg_read(&mut bus, SLOT0, 0x04, 2) as u16;
    cfg_write(
        &mut bus,
        SLOT0,
        0x04,
        2,
        u32::from(orig ^ COMMAND_INTX_DISABLE),
    );
    let new = cfg_read(&mut bus, SLOT0, 0x04, 2) as u16;
    assert_eq!(new ^ orig, COMMAND_INTX_DISABLE);
    cfg_write(&mut bus, SLOT0, 0x04, 2, u32::from(orig));
    assert!(!bus.intx_asserted(0));
    // The peer notifies: the line goes up.
    bus.raise(0);
    assert!(bus.intx_asserted(0));
    // pci_check_and_mask_intx: one dword read, then a word write of COMMAND.
    let dword = cfg_read(&mut bus, SLOT0, 0x04, 4);
    assert_ne!((dword >> 16) as u16 & STATUS_INTERRUPT, 0);
    cfg_write(
        &mut bus,
        SLOT0,
        0x04,
        2,
        (dword & 0xFFFF) | u32::from(COMMAND_INTX_DISABLE),
    );
    assert!(!bus.intx_asserted(0), "masked");
    cfg_write(&mut bus, SLOT0, 0x06, 2, 0xFFFF);
    assert_ne!(
        cfg_read(&mut bus, SLOT0, 0x06, 2) as u16 & STATUS_INTERRUPT,
        0,
        "STATUS is RO"
    );
    // The agent reads EVENTS, then unmasks through sysfs.
    assert_eq!(bus.io_read(IO_BASE + reg::EVENTS, 4), 1);
    assert_eq!(
        cfg_read(&mut bus, SLOT0, 0x06, 2) as u16 & STATUS_INTERRUPT,
        0
    );
    let cmd = cfg_read(&mut bus, SLOT0, 0x04, 2) as u16;
    cfg_write(
        &mut bus,
        SLOT0,
        0x04,
        2,
        u32::from(cmd & !COMMAND_INTX_DISABLE),
    );
    assert!(!bus.intx_asserted(0));
    // An event while masked shows after unmasking (level-triggered).
    cfg_write(
        &mut bus,
        SLOT0,
        0x04,
        2,
        u32::from(cmd | COMMAND_INTX_DISABLE),
    );
    bus.raise(0);
    assert!(!bus.intx_asserted(0));
    cfg_write(&mut bus, SLOT0, 0x05, 1, 0);
    assert!(
        bus.intx_asserted(0),
        "byte write of COMMAND's high half unmasks"
    );
    assert_eq!(
        cfg_read(&mut bus, SLOT0, 0x04, 2) as u16,
        COMMAND_IO | COMMAND_MEMORY
    );
    cfg_write(&mut bus, SLOT0, 0x04, 2, 0xFFFF);
    assert_eq!(
        cfg_read(&mut bus, SLOT0, 0x04, 2) as u16,
        0x0407,
        "unimplemented bits 0"
    );
    assert!(!bus.intx_asserted(1) && !bus.intx_asserted(200));
    bus.raise(200);
}

proptest! {
    #[test]
    fn arbitrary_accesses_never_panic(ops in proptest::collection::vec(
        (any::<bool>(), prop_oneof![0xCF0u16..0xD08, IO_BASE - 4..IO_BASE + 0x90, any::<u16>()],
         0u8..9, any::<u32>(), any::<u8>()), 0..200)
    ) {
        let mut bus = bus_with(&[0, 1, 7]);
        for (write, port, size, value, local) in ops {
            if write {
                if let PciEffect::Doorbell(n) = bus.io_write(port, size, value) {
                    prop_assert!(port >= IO_BASE && size == 4);
                    prop_assert_eq!(port, IO_BASE + u16::from(n) * IO_STRIDE);
                }
            } else {
                let v = bus.io_read(port, size);
                if size == 1 { prop_assert!(v <= 0xFF); }
                if size == 2 { prop_assert!(v <= 0xFFFF); }
            }
            if local % 4 == 0 {
                bus.raise(local % 10);
            }
            bus.intx_asserted(local);
        }
    }

    #[test]
    fn random_config_writes_keep_bars_and_identity(
        writes in proptest::collection::vec((0u8..=255, 1u8..=4, any::<u32>()), 0..100)
    ) {
        let mut bus = bus_with(&[0]);
        assert!(bus.add_channel(with_bulk(1, 1 << 20)));
        for (reg, len, value) in writes {
            let len = if len == 3 { 4 } else { len };
            cfg_write(&mut bus, SLOT0, reg, len, value);
            cfg_write(&mut bus, SLOT0 + 1, reg, len, value);
        }
        for reg in [0x10, 0x14, 0x18, 0x20, 0x24] {
            cfg_write(&mut bus, SLOT0, reg, 4, 0);
            cfg_write(&mut bus, SLOT0 + 1, reg, 4, 0);
        }
        let dev = device(0, 0x3000);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x10, 4), dev.bar0 as u32 | 4);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x14, 4), (dev.bar0 >> 32) as u32);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x20, 4), 0, "no bulk area, no BAR4");
        let bulk = with_bulk(1, 1 << 20);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0 + 1, 0x20, 4), bulk.bar4 as u32 | 4);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0 + 1, 0x24, 4), (bulk.bar4 >> 32) as u32);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x18, 4), u32::from(IO_BASE) | 1);
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x00, 2), u32::from(guest_pci::VENDOR_ID));
        prop_assert_eq!(cfg_read(&mut bus, SLOT0, 0x04, 2) & !0x0407, 0);
    }
}

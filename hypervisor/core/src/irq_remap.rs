//! VT-d interrupt remapping and queued invalidation formats (VT-d 3.x, chapters 5 and 6.5.2),
//! and the MSI messages that point at them.
//!
//! A device assigned to a qube may only interrupt through one interrupt remapping table
//! entry (IRTE) written for it: the entry names the host vector and the CPU that receives it,
//! and verifies the requester ID of the message, so a device (or the qube driving it) that
//! writes another entry's handle into its message is refused by the unit. Compatibility-
//! format messages (the old `0xFEEx_xxxx` address that names a vector and CPU directly) are
//! blocked once remapping is on (`GSTS.CFIS` stays clear).
//!
//! Interrupt entries may be cached by the unit, and their cache can only be invalidated
//! through the invalidation queue, so a unit that remaps interrupts takes every
//! invalidation (context cache, IOTLB, interrupt entries) as queued descriptors, each batch
//! ended by a wait descriptor whose status write says the unit got through it.

/// Registers of queued invalidation and interrupt remapping (offsets from the unit's base).
pub mod reg {
    /// Invalidation queue head (read only; bits 18:4 the index of the next descriptor).
    pub const IQH: u64 = 0x80;
    /// Invalidation queue tail (software writes the index after the last descriptor).
    pub const IQT: u64 = 0x88;
    /// Invalidation queue address and size.
    pub const IQA: u64 = 0x90;
    /// Invalidation completion status.
    pub const ICS: u64 = 0x9c;
    /// Interrupt remapping table address and size.
    pub const IRTA: u64 = 0xb8;
}

/// Global command / status bits of queued invalidation and interrupt remapping.
pub mod gcmd {
    /// Queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// Interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// Set interrupt remapping table pointer (a one-shot command).
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility-format interrupts allowed (never set here).
    pub const CFI: u32 = 1 << 23;
}

/// `ECAP.QI`: queued invalidation is supported.
pub fn has_queued_invalidation(ecap: u64) -> bool {
    ecap & (1 << 1) != 0
}

/// `ECAP.IR`: interrupt remapping is supported.
pub fn has_interrupt_remapping(ecap: u64) -> bool {
    ecap & (1 << 3) != 0
}

/// Entries in the interrupt remapping table (one 4 KiB page of 16-byte entries).
pub const IRT_ENTRIES: usize = 256;
/// Descriptors in the invalidation queue (one 4 KiB page of 16-byte descriptors).
pub const QUEUE_DESCRIPTORS: usize = 256;
/// Bytes per IRTE and per invalidation descriptor.
pub const ENTRY_BYTES: u64 = 16;

/// The `IRTA` value for a table of [`IRT_ENTRIES`] at `table` (xAPIC destinations: EIME
/// clear). The size field S means 2^(S+1) entries.
pub fn irta(table: u64) -> u64 {
    let s = (IRT_ENTRIES.trailing_zeros() - 1) as u64;
    (table & !0xfff) | s
}

/// The `IQA` value for a queue of [`QUEUE_DESCRIPTORS`] 128-bit descriptors at `queue`
/// (queue size field 0: one page).
pub fn iqa(queue: u64) -> u64 {
    queue & !0xfff
}

/// The `IQT` value that makes descriptor `index` the next one the unit would read.
pub fn iqt(index: usize) -> u64 {
    ((index % QUEUE_DESCRIPTORS) as u64) << 4
}

/// An interrupt remapping table entry: present, fixed delivery, edge-triggered, physical
/// destination `apic_id` (xAPIC: bits 47:40), host `vector`, accepted only from requester
/// `source_id` (SVT = 01: all 16 bits of the requester ID compared, SQ = 00).
pub fn irte(vector: u8, apic_id: u8, source_id: u16) -> [u64; 2] {
    let lo = 1 | u64::from(vector) << 16 | u64::from(apic_id) << 40;
    let hi = u64::from(source_id) | 0b01 << 18;
    [lo, hi]
}

/// What an IRTE says (for tests and the log): vector, destination APIC ID, verified source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    /// Present.
    pub present: bool,
    /// Host vector.
    pub vector: u8,
    /// Destination APIC ID (xAPIC).
    pub apic_id: u8,
    /// The only requester ID accepted, when verified.
    pub source_id: Option<u16>,
    /// Edge-triggered, fixed delivery, physical destination mode.
    pub edge_fixed_physical: bool,
}

/// Decodes an IRTE.
pub fn decode_irte(e: [u64; 2]) -> Irte {
    let [lo, hi] = e;
    Irte {
        present: lo & 1 != 0,
        vector: (lo >> 16) as u8,
        apic_id: (lo >> 40) as u8,
        source_id: ((hi >> 18) & 0b11 == 0b01 && (hi >> 16) & 0b11 == 0).then_some(hi as u16),
        edge_fixed_physical: lo & 0b1111_1100 == 0,
    }
}

/// The address of a remappable-format MSI naming IRTE `handle` (no subhandle: the data
/// word is ignored, 0 is written).
pub fn msi_address(handle: u16) -> u32 {
    let h = u32::from(handle);
    0xFEE0_0000 | (h & 0x7fff) << 5 | 1 << 4 | (h >> 15) << 2
}

/// The IRTE handle a remappable-format MSI address names, `None` for a compatibility-format
/// address or one outside the interrupt range (what the unit does with the message).
pub fn handle_of(address: u32) -> Option<u16> {
    if address & 0xFFF0_0000 != 0xFEE0_0000 || address & (1 << 4) == 0 {
        return None;
    }
    Some((((address >> 5) & 0x7fff) | ((address >> 2) & 1) << 15) as u16)
}

/// Invalidation descriptors.
pub mod descriptor {
    /// Context-cache invalidation, global.
    pub const CONTEXT_GLOBAL: [u64; 2] = [0x1 | 0b01 << 4, 0];
    /// IOTLB invalidation, global, draining reads and writes first.
    pub const IOTLB_GLOBAL: [u64; 2] = [0x2 | 0b01 << 4 | 1 << 6 | 1 << 7, 0];
    /// Interrupt entry cache invalidation, global.
    pub const IEC_GLOBAL: [u64; 2] = [0x4, 0];

    /// Invalidation wait: when the unit reaches it (every earlier descriptor done), it
    /// writes the 32-bit `data` at `status` (4-byte aligned).
    pub fn wait(status: u64, data: u32) -> [u64; 2] {
        [0x5 | 1 << 5 | u64::from(data) << 32, status & !0b11]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_and_queue_registers_say_one_page() {
        // 256 entries: S = 7 (2^(7+1)).
        assert_eq!(irta(0x1234_5000), 0x1234_5007);
        assert_eq!(
            irta(0x1234_5000) & (1 << 11),
            0,
            "xAPIC destinations (EIME clear)"
        );
        assert_eq!(iqa(0x7000), 0x7000);
        assert_eq!(iqt(1), 0x10);
        assert_eq!(iqt(QUEUE_DESCRIPTORS), 0, "the tail wraps");
        assert_eq!(QUEUE_DESCRIPTORS as u64 * ENTRY_BYTES, 4096);
        assert_eq!(IRT_ENTRIES as u64 * ENTRY_BYTES, 4096);
    }

    #[test]
    fn capability_bits_are_qi_and_ir() {
        assert!(has_queued_invalidation(0b10) && !has_interrupt_remapping(0b10));
        assert!(has_interrupt_remapping(0b1000) && !has_queued_invalidation(0b1000));
    }

    #[test]
    fn descriptors_carry_their_types_and_the_status_address() {
        assert_eq!(descriptor::CONTEXT_GLOBAL[0] & 0xf, 1);
        assert_eq!(descriptor::IOTLB_GLOBAL[0] & 0xf, 2);
        assert_eq!(descriptor::IEC_GLOBAL[0] & 0xf, 4);
        let w = descriptor::wait(0x9000_0004, 0xABCD);
        assert_eq!(w[0] & 0xf, 5);
        assert_eq!(w[0] >> 32, 0xABCD);
        assert_ne!(w[0] & (1 << 5), 0, "status write");
        assert_eq!(w[1], 0x9000_0004);
    }

    #[test]
    fn a_compatibility_format_address_names_no_entry() {
        assert_eq!(handle_of(0xFEE0_1000), None);
        assert_eq!(handle_of(0xFED0_0010), None);
    }

    proptest! {
        #[test]
        fn irtes_decode_to_what_was_asked(vector: u8, apic_id: u8, source_id: u16) {
            let e = decode_irte(irte(vector, apic_id, source_id));
            prop_assert_eq!(e, Irte {
                present: true,
                vector,
                apic_id,
                source_id: Some(source_id),
                edge_fixed_physical: true,
            });
        }

        #[test]
        fn msi_addresses_name_their_handle(handle: u16) {
            let a = msi_address(handle);
            prop_assert_eq!(a & 0xFFF0_0000, 0xFEE0_0000);
            prop_assert_eq!(handle_of(a), Some(handle));
        }
    }
}

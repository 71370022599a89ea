//! The legacy 8259 PICs: masked, so only the local APIC delivers interrupts. Firmware leaves
//! them unmasked with the PIT on vector 8, which would look like a double fault.

use super::cpu;

/// Masks every line of both PICs.
pub fn mask_all() {
    for port in [0x21u16, 0xA1] {
        // SAFETY: the PIC mask registers belong to the hypervisor (qubes get no I/O ports);
        // masking only stops legacy interrupts.
        unsafe { cpu::outb(port, 0xFF) };
    }
}

//! Programming an assigned device's message-signalled interrupt with a remappable message
//! (`bulkhead_hvcore::irq_remap::msi_address`): the MSI capability in configuration space,
//! or else MSI-X table entry 0 in the BAR page the qube is never given. The qube cannot
//! write either (`bulkhead_hvcore::pci::ConfigView` refuses the capabilities; the table's
//! pages are holes in its mapping).

use super::ecam::Function;
use crate::memory::mmio::Mmio;
use bulkhead_hvcore::irq_remap::msi_address;
use bulkhead_hvcore::pci::{Bar, BarKind, msix_regions};

/// MSI control: enable.
const MSI_ENABLE: u16 = 1 << 0;
/// MSI control: 64-bit address.
const MSI_64BIT: u16 = 1 << 7;
/// MSI control: per-vector masking.
const MSI_MASKABLE: u16 = 1 << 8;
/// MSI control: multiple message enable (0: one message).
const MSI_MULTIPLE: u16 = 0b111 << 4;
/// MSI-X control: enable.
const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X control: every vector masked.
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Bytes per MSI-X table entry.
const MSIX_ENTRY: u64 = 16;
/// MSI-X entry vector control: masked.
const MSIX_MASKED: u32 = 1;

/// Sets the 16-bit control word of the capability at `cap` (the upper half of its first
/// dword; the lower half, ID and next pointer, is read-only).
fn set_control(func: &Function, cap: u16, control: u16) {
    let dw = func.read(cap);
    func.write(cap, (dw & 0xffff) | u32::from(control) << 16);
}

/// Points the MSI capability at `cap` at IRTE `handle`: one message, unmasked, enabled.
pub fn program_msi(func: &Function, cap: u16, handle: u16) {
    let control = (func.read(cap) >> 16) as u16;
    set_control(func, cap, control & !MSI_ENABLE & !MSI_MULTIPLE);
    func.write(cap + 4, msi_address(handle));
    let (data, mask) = if control & MSI_64BIT != 0 {
        func.write(cap + 8, 0);
        (cap + 0xC, cap + 0x10)
    } else {
        (cap + 8, cap + 0xC)
    };
    // The data word is ignored for a message without a subhandle; 0.
    func.write(data, func.read(data) & 0xffff_0000);
    if control & MSI_MASKABLE != 0 {
        func.write(mask, func.read(mask) & !1);
    }
    set_control(func, cap, (control & !MSI_MULTIPLE) | MSI_ENABLE);
}

/// Points MSI-X table entry 0 of the capability at `cap` at IRTE `handle` (unmasked) and
/// masks every other entry, then enables MSI-X. False, with nothing changed, when the
/// table is not inside a memory BAR of `bars`.
pub fn program_msix(func: &Function, bars: &[Bar; 6], cap: u16, handle: u16) -> bool {
    let control = (func.read(cap) >> 16) as u16;
    let [(bir, offset, len), _] = msix_regions(|o| func.read(o), cap);
    let Some(bar) = bars.get(bir) else {
        return false;
    };
    let inside = offset.checked_add(len).is_some_and(|end| end <= bar.size);
    if !matches!(bar.kind, BarKind::Mem32 | BarKind::Mem64) || !inside || len < MSIX_ENTRY {
        return false;
    }
    // SAFETY: the MSI-X table of a device the hypervisor assigned, inside its memory BAR
    // (checked above); `assign` leaves the table's pages out of the qube's mapping, so only
    // the hypervisor reaches them, and the BAR is device memory the host maps uncached.
    let Some(table) = (unsafe { Mmio::new(bar.base + offset, len) }) else {
        return false;
    };
    // Programmed while the function is masked, so no half-written entry can fire.
    set_control(func, cap, control | MSIX_ENABLE | MSIX_FUNCTION_MASK);
    for entry in 0..len / MSIX_ENTRY {
        let at = entry * MSIX_ENTRY;
        if entry == 0 {
            table.write32(at, msi_address(handle));
            table.write32(at + 4, 0);
            table.write32(at + 8, 0);
            table.write32(at + 12, 0);
        } else {
            table.write32(at + 12, MSIX_MASKED);
        }
    }
    set_control(func, cap, (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK);
    true
}

/// Turns the device's MSI and MSI-X off (its qube stopped): it sends nothing until the next
/// `DeviceInterrupts`.
pub fn disable(func: &Function, msi: Option<u16>, msix: Option<u16>) {
    if let Some(cap) = msi {
        let control = (func.read(cap) >> 16) as u16;
        set_control(func, cap, control & !MSI_ENABLE);
    }
    if let Some(cap) = msix {
        let control = (func.read(cap) >> 16) as u16;
        set_control(func, cap, control & !MSIX_ENABLE);
    }
}

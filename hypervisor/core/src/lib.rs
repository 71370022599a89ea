//! The hypervisor's pure logic, kept out of the privileged image's hardware modules so it
//! runs under host tests (as Hubris keeps `kerncore`): nothing here touches hardware, and the
//! crate forbids unsafe code. The image crate supplies memory as byte slices.
//!
//! - [`bootinfo`]: PVH `hvm_start_info` and multiboot2 information → [`bootinfo::BootEnv`].
//! - [`memmap`]: the physical memory map and the frame allocator.
//! - [`elf`]: validating ELF64 images and planning their load.
//! - [`unikernel`]: where a unikernel's image, configuration, heap, stack, boot info, page
//!   tables, channel windows and device pieces go in its memory (as
//!   `bulkhead_platform::boot` plans it for Linux).
//! - [`bulk`]: how each end of a channel maps its bulk area (its own pool writable, the
//!   peer's read-only) and the page tables that takes.
//! - [`paging`]: building 4-level page tables (guest, NPT; EPT formats plug in).
//! - [`acpi`]: reading the firmware's RSDP, RSDT/XSDT, MCFG, DMAR and MADT.
//! - [`pci`]: BAR and capability decoding, and the configuration-space filter of an
//!   assigned device.
//! - [`vtd`]: Intel VT-d registers, root and context entries, second-level tables, fault
//!   records, and the write order and cache lines of a table update.
//! - [`ioports`]: the checks on the I/O ports the manifest gives qubes, and the permission
//!   bitmaps (SVM IOPM, VMX I/O bitmaps) that pass exactly those through.
//! - [`console`]: per-qube line buffering and sanitising of guest console output, and the
//!   output queue with its per-qube limits (`console::queue`).
//! - [`sched`]: qube run states, time slices, the restart policy, and which CPU each qube
//!   runs on.
//! - [`collections`]: the fixed-capacity collections the hypervisor uses (no heap, no
//!   third-party crate).
#![no_std]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod ap_gate;
pub mod bootinfo;
pub mod bulk;
pub mod console;

/// The hypervisor's only collections: fixed capacity, no heap, no unsafe code. They live in
/// the ABI crate (`bulkhead_abi::bounded`), the one crate below this one, because the
/// manifest's types hold them too.
pub mod collections {
    pub use bulkhead_abi::bounded::{
        ArrayVec, BoundedDeque, BoundedString, BoundedVec, CapacityError,
    };
}
pub mod elf;
pub mod host_map;
pub mod ioports;
pub mod irq_remap;
pub mod memmap;
pub mod paging;
pub mod pci;
pub mod sched;
pub mod unikernel;
pub mod vtd;
pub mod wake;

#[cfg(test)]
mod test_memory;

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large page.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;

/// A range of guest-physical memory (the layouts of [`unikernel`] and of Linux qubes,
/// `bulkhead_platform::boot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Range {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
    /// Whether the two ranges share a byte.
    pub fn overlaps(&self, o: &Range) -> bool {
        self.len != 0 && o.len != 0 && self.start < o.end() && o.start < self.end()
    }
}

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

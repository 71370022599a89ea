//! Device registers: the one place the hypervisor reads and writes memory-mapped I/O.
//!
//! An [`Mmio`] names a register window (PCI configuration space of one function through
//! ECAM, or a VT-d unit's registers). It is created only from addresses the firmware's ACPI
//! tables gave and that are not RAM (the caller checks the memory map), inside the identity
//! map, and every access is checked against the window, so a wrong offset is a refused
//! access, not a stray write.
//!
//! Caching: the hypervisor's tables (`memory::host_tables`) map everything below 4 GiB that
//! is not RAM uncached (the boot tables: 3 GiB and up; below that, as for q35's ECAM at
//! 2.75 GiB, the firmware's MTRRs make the PCI hole uncached, as on every PC).

use bulkhead_hvcore::host_map::LOW_4G as MAPPED_LIMIT;

/// Below this is conventional memory and ROM, never device registers we own.
const LOW_MEMORY_END: u64 = 0x10_0000;

/// A window of device registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// A window of `len` bytes at physical `base`, if it lies in the uncached identity map.
    ///
    /// # Safety
    /// The window must be device registers that the hypervisor owns (described by the
    /// firmware's ACPI tables), not RAM, and not registers a qube is given; the firmware's
    /// MTRRs must make it uncached.
    pub unsafe fn new(base: u64, len: u64) -> Option<Mmio> {
        let end = base.checked_add(len)?;
        (base >= LOW_MEMORY_END && end <= MAPPED_LIMIT && base.is_multiple_of(4))
            .then_some(Mmio { base, len })
    }

    fn at(&self, offset: u64, size: u64) -> Option<u64> {
        (offset.is_multiple_of(size) && offset.checked_add(size)? <= self.len)
            .then(|| self.base + offset)
    }

    /// Reads the 32-bit register at `offset`; all-ones if the offset is outside the window.
    pub fn read32(&self, offset: u64) -> u32 {
        match self.at(offset, 4) {
            // SAFETY: the address is inside a window of device registers (checked above and
            // by the constructor's contract), identity-mapped uncached and 4-byte aligned.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => u32::MAX,
        }
    }

    /// Writes the 32-bit register at `offset`; ignored outside the window.
    pub fn write32(&self, offset: u64, value: u32) {
        if let Some(a) = self.at(offset, 4) {
            // SAFETY: as in `read32`; the hypervisor owns these registers.
            unsafe { core::ptr::write_volatile(a as *mut u32, value) }
        }
    }

    /// Reads the 64-bit register at `offset` (two 32-bit reads, low first, as VT-d allows).
    pub fn read64(&self, offset: u64) -> u64 {
        u64::from(self.read32(offset)) | u64::from(self.read32(offset + 4)) << 32
    }

    /// Writes the 64-bit register at `offset` (low half first).
    pub fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

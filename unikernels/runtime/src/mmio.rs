//! A device's registers and memory: one mapped memory BAR of an assigned device, reached
//! with volatile accesses that are checked to stay inside it.
//!
//! The hypervisor maps every memory BAR of a qube's devices (uncached, never the MSI-X
//! pages) at its guest-physical address, which the qube's page tables map one to one; the
//! boot info says where (`PciDevice::mapped_bars`). Nothing else in the qube uses those
//! pages. The firmware's framebuffer, when the qube is given it, is mapped the same way
//! (`Boot::framebuffer`).

use crate::pci::PciDevice;

/// The mapped range of one memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// BAR `bar` of `dev`, if it is a memory BAR mapped into this qube.
    pub fn of_bar(dev: &PciDevice, bar: usize) -> Option<Mmio> {
        let (_, r) = dev.mapped_bars().find(|(i, _)| *i == bar)?;
        (r.end > r.start).then_some(Mmio {
            base: r.start,
            len: r.end - r.start,
        })
    }

    /// The firmware's framebuffer, if the boot info gives this qube one
    /// ([`crate::boot::Boot::framebuffer`]).
    pub fn of_framebuffer(boot: &crate::boot::Boot) -> Option<Mmio> {
        let fb = boot.framebuffer()?;
        Some(Mmio {
            base: fb.gpa,
            len: fb.size,
        })
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (never, for a range `of_bar` gives).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `[offset, offset + size)` if that lies inside and is aligned to `align`.
    fn at(&self, offset: u64, size: u64, align: u64) -> Option<u64> {
        let end = offset.checked_add(size)?;
        (end <= self.len && offset.is_multiple_of(align)).then_some(self.base + offset)
    }

    /// Reads the 16-bit register at `offset` (`None`: outside or misaligned).
    pub fn read16(&self, offset: u64) -> Option<u16> {
        let addr = self.at(offset, 2, 2)?;
        // SAFETY: `addr` is an aligned 2-byte location inside a BAR the hypervisor maps into
        // this qube at this address (see the module comment); a device register read has no
        // effect on Rust memory.
        Some(unsafe { core::ptr::read_volatile(addr as *const u16) })
    }

    /// Writes the 16-bit register at `offset`; false (nothing written) outside or misaligned.
    pub fn write16(&self, offset: u64, value: u16) -> bool {
        let Some(addr) = self.at(offset, 2, 2) else {
            return false;
        };
        // SAFETY: as in `read16`; the location is device memory no Rust object lives in.
        unsafe { core::ptr::write_volatile(addr as *mut u16, value) };
        true
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: u64) -> Option<u32> {
        let addr = self.at(offset, 4, 4)?;
        // SAFETY: as in `read16`, for an aligned 4-byte location.
        Some(unsafe { core::ptr::read_volatile(addr as *const u32) })
    }

    /// Writes the 32-bit register at `offset`; false (nothing written) outside or misaligned.
    pub fn write32(&self, offset: u64, value: u32) -> bool {
        let Some(addr) = self.at(offset, 4, 4) else {
            return false;
        };
        // SAFETY: as in `read16`, for an aligned 4-byte location of device memory no Rust
        // object lives in.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
        true
    }

    /// Writes `pixels` (or any 32-bit words) from `offset` on, in order; false (nothing
    /// written) if they would not fit or `offset` is misaligned. For device memory that
    /// behaves as memory (a framebuffer): the words are stored one by one, volatile.
    pub fn write_words(&self, offset: u64, words: &[u32]) -> bool {
        let Some(addr) = self.at(offset, (words.len() as u64) * 4, 4) else {
            return false;
        };
        let dst = addr as *mut u32;
        for (i, w) in words.iter().enumerate() {
            // SAFETY: `[addr, addr + 4 * words.len())` lies inside the BAR (checked by `at`)
            // and is 4-byte aligned; device memory no Rust object lives in.
            unsafe { core::ptr::write_volatile(dst.add(i), *w) };
        }
        true
    }
}

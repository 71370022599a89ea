//! Memory a device reads and writes by DMA, for drivers that program a card themselves (the
//! e1000e driver): a zeroed, page-aligned block from the heap, its bus address, and volatile
//! accesses checked to stay inside it.
//!
//! Rules every unsafe access below refers to:
//! 1. A [`DmaRegion`] owns its block: it was allocated by [`DmaRegion::new`] and no Rust
//!    reference to its bytes is ever made, so the only accesses from this side are the
//!    volatile reads and writes (and the copies) of this module, each checked to lie inside
//!    `[ptr, ptr + len)`.
//! 2. The device may write the block at any time (a broken or hostile card can, whatever the
//!    driver's protocol says). Nothing here trusts what it reads: values are plain integers
//!    and bytes, checked by the driver before use.
//! 3. The block is never freed: once its bus address has been given to a device, only
//!    resetting that device would make freeing it sound, so a dropped region is leaked.
//!
//! The qube's memory is identity-mapped, so guest-physical = the pointer's address, and the
//! device reaches guest-physical `p` at bus address `p + dma_offset` (0 behind an IOMMU).

use alloc::alloc::{Layout, alloc_zeroed};
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};

/// Page size, the alignment of every region.
pub const PAGE: usize = 4096;

/// A block of DMA memory (see the module's rules).
#[derive(Debug)]
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    bus: u64,
}

// SAFETY: the region is only reached through `&self`/`&mut self` volatile accesses; it has
// no thread affinity (the qube has one thread; the device is not a Rust thread).
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// A zeroed block of at least `len` bytes (rounded up to whole pages) that the device
    /// sees at `bus_address()` = its guest-physical address + `dma_offset`. `None` if `len`
    /// is 0 or the heap cannot give it.
    pub fn new(len: usize, dma_offset: u64) -> Option<DmaRegion> {
        let size = len.checked_next_multiple_of(PAGE).filter(|&s| s > 0)?;
        let layout = Layout::from_size_align(size, PAGE).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let bus = (ptr.addr().get() as u64).wrapping_add(dma_offset);
        Some(DmaRegion {
            ptr,
            len: size,
            bus,
        })
    }

    /// Bytes in the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address the device uses for byte `offset` of the region.
    pub fn bus_address(&self, offset: usize) -> u64 {
        self.bus.wrapping_add(offset as u64)
    }

    /// The pointer to `[offset, offset + size)` if that lies inside and is aligned to `align`.
    fn at(&self, offset: usize, size: usize, align: usize) -> Option<*mut u8> {
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(align) {
            return None;
        }
        // SAFETY: `offset <= len`, so the result stays inside the allocation (rule 1).
        Some(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Reads the byte at `offset`.
    pub fn read8(&self, offset: usize) -> Option<u8> {
        let p = self.at(offset, 1, 1)?;
        // SAFETY: inside the region (rule 1); any value is a valid `u8` (rule 2).
        Some(unsafe { p.read_volatile() })
    }

    /// Reads the 16-bit little-endian word at `offset` (2-aligned).
    pub fn read16(&self, offset: usize) -> Option<u16> {
        let p = self.at(offset, 2, 2)?;
        // SAFETY: inside the region and aligned (rule 1); any value is valid (rule 2).
        Some(u16::from_le(unsafe { p.cast::<u16>().read_volatile() }))
    }

    /// Writes the byte at `offset`; false (nothing written) outside.
    pub fn write8(&mut self, offset: usize, value: u8) -> bool {
        let Some(p) = self.at(offset, 1, 1) else {
            return false;
        };
        // SAFETY: inside the region (rule 1).
        unsafe { p.write_volatile(value) };
        true
    }

    /// Writes the 16-bit word at `offset` (2-aligned, little-endian); false outside.
    pub fn write16(&mut self, offset: usize, value: u16) -> bool {
        let Some(p) = self.at(offset, 2, 2) else {
            return false;
        };
        // SAFETY: inside the region and aligned (rule 1).
        unsafe { p.cast::<u16>().write_volatile(value.to_le()) };
        true
    }

    /// Writes the 64-bit word at `offset` (8-aligned, little-endian); false outside.
    pub fn write64(&mut self, offset: usize, value: u64) -> bool {
        let Some(p) = self.at(offset, 8, 8) else {
            return false;
        };
        // SAFETY: inside the region and aligned (rule 1).
        unsafe { p.cast::<u64>().write_volatile(value.to_le()) };
        true
    }

    /// Copies `src` into the region at `offset`; false (nothing copied) if it does not fit.
    pub fn copy_in(&mut self, offset: usize, src: &[u8]) -> bool {
        let Some(p) = self.at(offset, src.len(), 1) else {
            return false;
        };
        // SAFETY: the destination lies inside the region (rule 1), which no Rust reference
        // (so not `src`) points into.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
        true
    }

    /// Copies `dst.len()` bytes from the region at `offset` into `dst`; false (nothing
    /// copied) if they do not lie inside.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> bool {
        let Some(p) = self.at(offset, dst.len(), 1) else {
            return false;
        };
        // SAFETY: the source lies inside the region (rule 1), which `dst` cannot overlap (no
        // reference into the region exists); any bytes are valid `u8`s (rule 2).
        unsafe { core::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) };
        true
    }
}

/// Orders this side's writes to DMA memory before a later doorbell (a register write that
/// lets the device read them), and the device's writes seen through a status bit before the
/// reads that follow it.
pub fn barrier() {
    fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_stay_inside_and_aligned() {
        let mut r = DmaRegion::new(100, 0x1000_0000).unwrap();
        assert_eq!(r.len(), PAGE);
        assert_eq!(r.bus_address(0) % PAGE as u64, 0);
        assert_eq!(r.bus_address(8), r.bus_address(0) + 8);
        assert_eq!(r.read8(PAGE - 1), Some(0), "zeroed");
        assert_eq!(r.read8(PAGE), None);
        assert!(r.write16(2, 0xbeef));
        assert_eq!(r.read16(2), Some(0xbeef));
        assert_eq!(r.read8(2), Some(0xef), "little-endian");
        assert!(!r.write16(3, 1), "misaligned");
        assert!(r.write64(8, 0x0102_0304_0506_0708));
        assert_eq!(r.read8(8), Some(8));
        assert!(!r.write64(PAGE - 4, 1), "runs past the end");
        assert!(r.copy_in(PAGE - 3, b"abc"));
        assert!(!r.copy_in(PAGE - 2, b"abc"));
        let mut out = [0u8; 3];
        assert!(r.copy_out(PAGE - 3, &mut out));
        assert_eq!(&out, b"abc");
        assert!(!r.copy_out(usize::MAX - 1, &mut out), "wraps");
        assert!(DmaRegion::new(0, 0).is_none());
    }
}

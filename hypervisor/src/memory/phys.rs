//! Access to physical memory. The hypervisor identity-maps the first 4 GiB (entry.s), so a
//! physical address below 4 GiB is also its virtual address. This is the one module that
//! turns physical addresses into Rust references; everything else names memory by
//! [`Region`] and goes through the functions here.
//!
//! Soundness rests on who owns a region: RAM handed out by the frame allocator belongs to
//! exactly one owner (a qube's memory, a VMCB, a table arena), so the slices made here never
//! alias each other or the hypervisor image. Slices over qube memory are made only while the
//! qube is not running (the hypervisor runs on one CPU and a qube runs only inside VMRUN),
//! and never outlive the call that made them.

use bulkhead_hvcore::bootinfo::PhysRead;
use bulkhead_hvcore::memmap::Region;

/// Highest physical address (exclusive) the boot page tables map.
pub const MAPPED_LIMIT: u64 = 4 << 30;

fn mapped(r: Region) -> bool {
    r.start <= r.end && r.end <= MAPPED_LIMIT
}

/// Reads loader structures (PVH start info, multiboot2 tags, the memory map), which the
/// loader placed in RAM or ROM below 4 GiB before the hypervisor started.
pub struct BootMemory;

impl PhysRead for BootMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(r) = Region::from_len(addr, buf.len() as u64) else {
            return false;
        };
        if !mapped(r) || addr == 0 {
            return false;
        }
        // SAFETY: the range is identity-mapped (checked above), it is not written by
        // anyone while we read (single CPU, boot time), and `read_volatile`-free copying of
        // plain bytes is valid for any bit pattern.
        let src = unsafe { core::slice::from_raw_parts(addr as *const u8, buf.len()) };
        buf.copy_from_slice(src);
        true
    }
}

/// A region of RAM the caller owns exclusively, viewed as bytes for the duration of `f`.
///
/// # Safety
/// `r` must be RAM below [`MAPPED_LIMIT`] that the caller owns: it came from the frame
/// allocator (or is the boot bundle, which is removed from it) and no other reference to it
/// exists during the call. If a qube can access it, that qube must not be running.
pub unsafe fn with_region<R>(r: Region, f: impl FnOnce(&mut [u8]) -> R) -> R {
    assert!(mapped(r), "region outside the identity map");
    // SAFETY: the caller guarantees exclusive ownership and that it is mapped RAM.
    let bytes = unsafe { core::slice::from_raw_parts_mut(r.start as *mut u8, r.len() as usize) };
    f(bytes)
}

/// The boot bundle as bytes. It lives for the whole run: its range is removed from the frame
/// allocator and nothing writes it.
///
/// # Safety
/// `r` must be the bundle region the loader reported, below [`MAPPED_LIMIT`], and must have
/// been kept out of the frame allocator.
pub unsafe fn bundle_bytes(r: Region) -> &'static [u8] {
    assert!(mapped(r), "bundle outside the identity map");
    // SAFETY: the caller guarantees the region is the loader's module, never handed out or
    // written, so a shared 'static view is valid.
    unsafe { core::slice::from_raw_parts(r.start as *const u8, r.len() as usize) }
}

/// Turns an owned, page-aligned region into a `'static` exclusive reference to a `T`
/// (a VMCB, an FXSAVE area), zeroed.
///
/// # Safety
/// `r` must be owned by the caller for the rest of the run and never handed to anyone else;
/// `T` must be valid when all-zero.
pub unsafe fn leak_zeroed<T>(r: Region) -> &'static mut T {
    assert!(mapped(r) && r.len() >= core::mem::size_of::<T>() as u64);
    assert!(r.start.is_multiple_of(core::mem::align_of::<T>() as u64));
    let p = r.start as *mut T;
    // SAFETY: size, alignment and mapping checked above; exclusive ownership is the
    // caller's guarantee; all-zero is a valid `T` by the caller's guarantee.
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<T>());
        &mut *p
    }
}

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
use core::arch::asm;
use core::sync::atomic::{Ordering, compiler_fence, fence};

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

/// Makes `stores` (each `(physical address, value)`) in the order given, each as one aligned,
/// volatile 64-bit store, for tables a device reads while they change (VT-d root and context
/// entries, whose present bit must be written last). A full fence comes first, so everything
/// written before the call (the tables the new entry points to) is visible before the first
/// store, and a compiler fence separates the stores; x86 keeps stores to write-back memory in
/// program order, so the device sees them in this order too.
///
/// # Safety
/// 1. Every address lies inside `r` (checked: a store outside it panics).
/// 2. `r` is RAM below [`MAPPED_LIMIT`] that the caller owns, as for [`with_region`]: no Rust
///    reference to it exists during the call. A device may read it meanwhile.
/// 3. Each intermediate state (after each store) is one the device may see safely.
pub unsafe fn store_ordered(r: Region, stores: &[(u64, u64)]) {
    assert!(mapped(r), "region outside the identity map");
    fence(Ordering::SeqCst);
    for &(addr, value) in stores {
        assert!(
            addr.is_multiple_of(8) && addr >= r.start && addr + 8 <= r.end,
            "store at {addr:#x} outside {:#x}..{:#x}",
            r.start,
            r.end
        );
        // SAFETY: (1) checked above: aligned, inside `r`, which is identity-mapped (checked at
        // entry); (2) the caller owns `r` and holds no reference to it, so this store aliases
        // no Rust object; volatile keeps the store whole, single and in order.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
        compiler_fence(Ordering::SeqCst);
    }
}

/// Writes every cache line of `lines` (line-aligned addresses) back to memory and drops it
/// from the caches (CLFLUSH), with MFENCE before (earlier stores are in the lines first) and
/// after (the flushes are done before anything that follows, such as the register write that
/// tells a device to read the tables). For devices that read memory without snooping the
/// caches: a VT-d unit with `ECAP.C = 0`.
pub fn flush_cache_lines(lines: impl Iterator<Item = u64>) {
    // SAFETY: MFENCE only orders memory accesses; it reads and writes no memory.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
    for line in lines {
        // CLFLUSH of an address outside the identity map would page-fault.
        assert!(
            line < MAPPED_LIMIT,
            "flush of {line:#x} outside the identity map"
        );
        // SAFETY: the address is identity-mapped (checked above). CLFLUSH writes a line back
        // and invalidates it; what software reads at that address does not change, so it
        // affects no Rust object.
        unsafe { asm!("clflush [{}]", in(reg) line, options(nostack, preserves_flags)) };
    }
    // SAFETY: as above.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
}

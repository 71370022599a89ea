//! Access to physical memory. The hypervisor identity-maps the first 4 GiB (entry.s's boot
//! tables) and, once its own tables are loaded (`memory::host_tables`), all of RAM, so a
//! physical address is also its virtual address. This is the one module that
//! turns physical addresses into Rust references; everything else names memory by
//! [`Region`] and goes through the functions here.
//!
//! Soundness rests on who owns a region: RAM handed out by the frame allocator belongs to
//! exactly one owner (a qube's memory, a VMCB, a table arena), so the slices made here never
//! alias each other or the hypervisor image. Slices over qube memory are made only while the
//! qube is not running (the hypervisor runs on one CPU and a qube runs only inside VMRUN),
//! and never outlive the call that made them.

use bulkhead_hvcore::bootinfo::PhysRead;
use bulkhead_hvcore::memmap::{Frames, Region};
use core::arch::asm;
use core::sync::atomic::{Ordering, compiler_fence, fence};

/// Highest physical address (exclusive) the boot page tables map.
pub const MAPPED_LIMIT: u64 = 4 << 30;

/// Highest physical address (exclusive) of RAM mapped: [`MAPPED_LIMIT`] until the
/// hypervisor's own tables map all of it.
static MAPPED_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(MAPPED_LIMIT);

/// All RAM up to `end` is identity-mapped from now on, on every CPU.
pub fn set_mapped_end(end: u64) {
    MAPPED_END.fetch_max(end, Ordering::Release);
}

fn mapped(r: Region) -> bool {
    r.start <= r.end && r.end <= MAPPED_END.load(Ordering::Acquire)
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

/// Owned RAM viewed as bytes for the duration of `f`. Safe because a [`Frames`] is the one
/// owner of its block: only the frame allocator makes one, it is neither `Copy` nor `Clone`,
/// and `&mut` makes this the only use of it now. The allocator holds only RAM inside the
/// identity map (`frame_allocator` removes everything from [`MAPPED_LIMIT`] up, checked here
/// again). A qube may map the block (its memory, a channel), but no qube runs while the
/// hypervisor does (one CPU), so nothing else touches it during `f`.
pub fn with_frames<R>(frames: &mut Frames, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let r = frames.region();
    assert!(mapped(r), "frames outside the identity map");
    // SAFETY: exclusive ownership and mapping, as argued above.
    let bytes = unsafe { core::slice::from_raw_parts_mut(r.start as *mut u8, r.len() as usize) };
    f(bytes)
}

/// Memory a qube running on another CPU may write while the hypervisor writes it (a
/// channel's region or bulk area being started over): no Rust slice is made over it, every
/// access is volatile. Reads the little-endian word at `offset` (0 if outside).
pub fn shared_read_u32(frames: &Frames, offset: u64) -> u32 {
    let r = frames.region();
    assert!(mapped(r), "frames outside the identity map");
    if !offset.is_multiple_of(4) || offset.saturating_add(4) > r.len() {
        return 0;
    }
    // SAFETY: aligned and inside `r` (checked), which is identity-mapped RAM the caller owns
    // through `frames`; a volatile load of a plain u32 is valid whatever a peer wrote.
    u32::from_le(unsafe { core::ptr::read_volatile((r.start + offset) as *const u32) })
}

/// Copies `buf.len()` bytes at `offset` of `region` (a qube's memory, which its guest may
/// write meanwhile on another CPU) into `buf`, with volatile loads; nothing is read when
/// the range is not inside `region`.
pub fn shared_read(region: Region, offset: u64, buf: &mut [u8]) {
    assert!(mapped(region), "memory outside the identity map");
    if offset.saturating_add(buf.len() as u64) > region.len() {
        return;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: inside `region` (checked), identity-mapped RAM that stays allocated to the
        // qube for the whole run (`MemView`); a volatile byte load is valid whatever the
        // guest writes concurrently, and no Rust reference to the memory is made.
        *b = unsafe { core::ptr::read_volatile((region.start + offset + i as u64) as *const u8) };
    }
}

/// Writes `bytes` at `offset` of `frames` and zeroes the rest, with volatile stores (see
/// [`shared_read_u32`]); the header goes last, so a peer reading concurrently sees a zeroed
/// region before it sees the new header.
pub fn shared_reset(frames: &mut Frames, header: &[(u64, u32)]) {
    let r = frames.region();
    assert!(mapped(r), "frames outside the identity map");
    let words = r.len() / 8;
    for i in 0..words {
        // SAFETY: inside `r`, 8-aligned (frames are page-aligned), identity-mapped RAM the
        // caller owns by `&mut`; no Rust reference to it exists (none is made here).
        unsafe { core::ptr::write_volatile((r.start + i * 8) as *mut u64, 0) };
    }
    fence(Ordering::SeqCst);
    for &(offset, value) in header {
        if offset.is_multiple_of(4) && offset.saturating_add(4) <= r.len() {
            // SAFETY: as above, for one aligned u32 inside `r` (checked).
            unsafe { core::ptr::write_volatile((r.start + offset) as *mut u32, value.to_le()) };
        }
    }
    fence(Ordering::SeqCst);
}

/// Moves `value` into `frames` for the rest of the run (a qube, whose few KiB would
/// otherwise sit in every CPU's run queue, a static). Safe: `frames` is the one owner of its
/// RAM and is consumed; size, alignment and mapping are checked.
pub fn leak_init<T>(frames: Frames, value: T) -> &'static mut T {
    let r = frames.region();
    assert!(mapped(r) && r.len() >= core::mem::size_of::<T>() as u64);
    assert!(r.start.is_multiple_of(core::mem::align_of::<T>() as u64));
    let p = r.start as *mut T;
    // SAFETY: size, alignment and mapping checked above; `frames` was the one owner and is
    // gone, so nothing else refers to this memory; `write` stores a valid `T` without
    // reading the old bytes.
    unsafe {
        core::ptr::write(p, value);
        &mut *p
    }
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

/// Turns owned frames into a `'static` exclusive reference to a `T` (a VMCB), zeroed. The
/// frames are consumed, so nothing else can reach the memory again.
///
/// # Safety
/// `T` must be valid when all-zero.
pub unsafe fn leak_zeroed<T>(frames: Frames) -> &'static mut T {
    let r = frames.region();
    assert!(mapped(r) && r.len() >= core::mem::size_of::<T>() as u64);
    assert!(r.start.is_multiple_of(core::mem::align_of::<T>() as u64));
    let p = r.start as *mut T;
    // SAFETY: size, alignment and mapping checked above; `frames` was the one owner and is
    // gone; all-zero is a valid `T` by the caller's guarantee.
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<T>());
        &mut *p
    }
}

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __image_end: u8;
}

/// The image's code, constants and data (page-aligned by the linker script).
pub fn image_sections() -> bulkhead_hvcore::host_map::ImageSections {
    let (text, rodata, data, end) = (
        (&raw const __image_start) as u64,
        (&raw const __rodata_start) as u64,
        (&raw const __data_start) as u64,
        (&raw const __image_end) as u64,
    );
    bulkhead_hvcore::host_map::ImageSections {
        text: Region {
            start: text,
            end: rodata,
        },
        rodata: Region {
            start: rodata,
            end: data,
        },
        data: Region { start: data, end },
    }
}

/// The hypervisor image's physical range (from the linker script).
pub fn image_region() -> Region {
    Region {
        start: (&raw const __image_start) as u64,
        end: (&raw const __image_end) as u64,
    }
}

/// How many bytes of `bytes` are not zero, read with volatile loads (so the count is of
/// what is in RAM, not of what the compiler knows was written there).
pub fn count_nonzero_volatile(bytes: &[u8]) -> u64 {
    let mut nonzero = 0u64;
    for chunk in bytes.chunks_exact(8) {
        // SAFETY: `chunk` is 8 readable bytes (borrowed); an unaligned volatile read of a
        // [u8; 8] is always valid.
        let word = unsafe { core::ptr::read_volatile(chunk.as_ptr().cast::<[u8; 8]>()) };
        // One test per word; the bytes are counted only in a word that is not all zero
        // (the wipe of a disposable reads back hundreds of MiB of zeros).
        if u64::from_ne_bytes(word) != 0 {
            nonzero += word.iter().filter(|&&b| b != 0).count() as u64;
        }
    }
    nonzero
        + bytes
            .chunks_exact(8)
            .remainder()
            .iter()
            .filter(|&&b| b != 0)
            .count() as u64
}

/// Makes `stores` (each `(physical address, value)`) in the order given, each as one aligned,
/// volatile 64-bit store, for tables a device reads while they change (VT-d root and context
/// entries, whose present bit must be written last). A full fence comes first, so everything
/// written before the call (the tables the new entry points to) is visible before the first
/// store, and a compiler fence separates the stores; x86 keeps stores to write-back memory in
/// program order, so the device sees them in this order too.
///
/// Every address must lie inside `frames` (a store outside them panics); the caller also
/// makes sure each intermediate state (after each store) is one the device may see safely.
pub fn store_ordered(frames: &mut Frames, stores: &[(u64, u64)]) {
    let r = frames.region();
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
        // entry); (2) `frames` is the one owner of `r`, held here by `&mut`, so no Rust
        // reference to it exists and this store aliases none; volatile keeps the store whole,
        // single and in order.
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
            line < MAPPED_END.load(Ordering::Acquire),
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

//! Entry: `_start`, the boot-info read, the hypercall choice and the heap hand-off.
//!
//! The hypervisor enters `_start` with `rsp` = the 16-byte aligned stack top and `rdi` = the
//! guest-physical address of the boot info ([`layout::BOOT_INFO`]). `_start` calls
//! [`rust_start`] (so the stack is aligned as the System V ABI expects at a function
//! entry), which checks the boot info, sets up the heap and runs the image's main.
//!
//! When the boot info is refused, the qube exits with [`BootError::status`]. The hypercall
//! instruction is taken from the boot info only when its magic and version are right;
//! otherwise `VMMCALL` is used, which on an Intel host raises #UD and, with no IDT, a triple
//! fault that the hypervisor reports instead of the status.

use core::ops::Range;

use bulkhead_abi::boot_info::{BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo, FLAG_VMCALL, layout};

use crate::boot::{Boot, BootError};
use crate::log::Level;

core::arch::global_asm!(
    ".pushsection .text._start, \"ax\", @progbits",
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "    xor ebp, ebp",
    "    call {entry}",
    "    ud2",
    ".size _start, . - _start",
    ".popsection",
    entry = sym rust_start,
);

unsafe extern "C" {
    /// First byte of the image (linker script).
    static __image_start: u8;
    /// First byte after the image, `.bss` included (linker script).
    static __image_end: u8;
}

// SAFETY: `entry!` defines `bulkhead_rt_main` with exactly this signature in every image; an
// image without `entry!` fails to link instead of calling something else.
unsafe extern "Rust" {
    /// The image's main function, named by [`crate::entry!`].
    safe fn bulkhead_rt_main(boot: &Boot) -> i32;
}

/// The first Rust code of the qube; `rdi` from `_start` is `info_addr`.
extern "sysv64" fn rust_start(info_addr: u64) -> ! {
    let boot = match read_boot_info(info_addr) {
        Ok(boot) => boot,
        Err(e) => {
            crate::error!("boot info refused: {e}");
            crate::exit(e.status());
        }
    };
    let boot = attach_config(boot);
    claim_heap(&boot);
    apply_log_level(&boot);
    let status = bulkhead_rt_main(&boot);
    crate::exit(i64::from(status) as u64)
}

/// Reads and checks the boot info at `info_addr`, and chooses the hypercall instruction.
fn read_boot_info(info_addr: u64) -> Result<Boot, BootError> {
    if info_addr != layout::BOOT_INFO {
        return Err(BootError::Address(info_addr));
    }
    let ptr = core::ptr::with_exposed_provenance::<BootInfo>(info_addr as usize);
    // SAFETY: (1) the entry contract places the boot info at layout::BOOT_INFO (checked
    // above), a page of this qube's memory that the hypervisor identity-maps and fills
    // before entry, so `ptr` is valid for reads of size_of::<BootInfo>() bytes; (2) it is
    // 4 KiB aligned, more than BootInfo needs; (3) BootInfo has only integer and byte-array
    // fields, so any bytes there form a valid value. A volatile read, because no Rust code
    // wrote that memory.
    let info = unsafe { core::ptr::read_volatile(ptr) };
    if info.magic == BOOT_INFO_MAGIC && info.version == BOOT_INFO_VERSION {
        crate::hypercall::select_vmcall(info.flags & FLAG_VMCALL != 0);
    }
    Boot::new(info, linked_image())
}

/// Where the linker placed this image.
fn linked_image() -> Range<u64> {
    let start = &raw const __image_start;
    let end = &raw const __image_end;
    start.addr() as u64..end.addr() as u64
}

/// Gives `boot` the configuration blob's bytes.
fn attach_config(boot: Boot) -> Boot {
    let range = boot.config_range();
    if range.is_empty() {
        return boot;
    }
    let base = core::ptr::with_exposed_provenance::<u8>(range.start as usize);
    // SAFETY: (1) `Boot::new` checked image_end <= config_gpa and config_gpa + config_len <=
    // heap_start (without overflow), so the blob lies in this qube's identity-mapped memory,
    // outside the linked image, the heap, the stack and the boot-info/page-table pages, and
    // the hypervisor filled it before entry. (2) Nothing in the qube writes that memory: the
    // runtime claims only [heap_start, heap_end) for the allocator and no other code is
    // given the range, so a shared `'static` borrow of it is never invalidated. (3) u8 has
    // no alignment or validity requirement.
    let blob = unsafe { core::slice::from_raw_parts(base, (range.end - range.start) as usize) };
    boot.with_config(blob)
}

/// Hands the heap region to the global allocator.
fn claim_heap(boot: &Boot) {
    let heap = boot.heap();
    if heap.is_empty() {
        crate::warn!("no heap in the boot info: every allocation will fail");
        return;
    }
    let base = core::ptr::with_exposed_provenance_mut::<u8>(heap.start as usize);
    // SAFETY: (1) `Boot::new` checked image_end <= heap_start <= heap_end <=
    // stack_top - STACK_SIZE <= mem_size and that the linked image (code, data, .bss) ends
    // at or below image_end; boot info, GDT and page tables lie below IMAGE_BASE <=
    // image_start. So the region is memory of this qube, identity-mapped, that holds neither
    // the image, nor the stack, nor anything the hypervisor set up. (2) It is claimed once,
    // here, before any allocation, and no other code of the runtime or the image refers to
    // it, so nothing but the allocator mutates it. (3) The `Manual` source allows manual
    // heap management.
    let claimed = unsafe {
        crate::heap::HEAP
            .lock()
            .claim(base, boot.heap_size() as usize)
    };
    if claimed.is_none() {
        crate::warn!(
            "heap of {} bytes is too small for the allocator",
            boot.heap_size()
        );
    }
}

/// Applies `log=LEVEL` from the argument string.
fn apply_log_level(boot: &Boot) {
    if let Some(name) = boot.args().get("log") {
        match Level::parse(name) {
            Some(level) => crate::log::set_level(level),
            None => crate::warn!("unknown log level \"{name}\" (error, warn, info, debug)"),
        }
    }
}

//! A canary at the bottom of every CPU's stack (the stack the hypervisor runs on outside
//! interrupts: the boot stack for the boot CPU, one from the frame allocator for each AP).
//! The page tables use 2 MiB pages, so there is no guard page; instead each CPU's scheduler
//! checks its canary on every pass and stops the machine with a clear message if the stack
//! ever overflowed, rather than running on with corrupted memory.

use core::sync::atomic::{AtomicU64, Ordering};

const CANARY: u64 = 0x5354_4143_4B5F_4F4B; // "KO_KCATS"

unsafe extern "C" {
    /// Lowest address of the boot stack (entry.s).
    static mut boot_stack_bottom: u64;
}

/// Each AP's stack bottom (0: none yet); the boot CPU's is `boot_stack_bottom`.
static AP_BOTTOMS: [AtomicU64; crate::smp::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::smp::MAX_CPUS];

fn bottom(cpu: usize) -> *mut u64 {
    match cpu {
        0 => &raw mut boot_stack_bottom,
        _ => AP_BOTTOMS.get(cpu).map_or(0, |b| b.load(Ordering::Relaxed)) as *mut u64,
    }
}

/// Writes the boot CPU's canary. Call once, early in `hv_main`, far above the stack's bottom.
pub fn arm() {
    // SAFETY: `boot_stack_bottom` is the first word of the 512 KiB boot stack, which is
    // only reached if the stack overflows; nothing else refers to it.
    unsafe { (&raw mut boot_stack_bottom).write_volatile(CANARY) };
}

/// Writes AP `cpu`'s canary at `bottom`, the lowest word of the stack the boot CPU gave it
/// (identity-mapped frames used by nothing else).
pub fn arm_ap(cpu: usize, bottom_addr: u64) {
    if let Some(b) = AP_BOTTOMS.get(cpu) {
        // SAFETY: `bottom_addr` is the first word of that AP's stack (the caller's
        // guarantee), only reached if the stack overflows.
        unsafe { (bottom_addr as *mut u64).write_volatile(CANARY) };
        b.store(bottom_addr, Ordering::Relaxed);
    }
}

/// Stops the machine if CPU `cpu`'s canary was overwritten.
pub fn check(cpu: usize) {
    let p = bottom(cpu);
    if p.is_null() {
        return;
    }
    // SAFETY: as in `arm` and `arm_ap`; a volatile read of a plain u64.
    let v = unsafe { p.read_volatile() };
    if v != CANARY {
        panic!("hypervisor stack overflow on CPU {cpu} (stack canary overwritten)");
    }
}

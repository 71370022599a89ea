//! A canary at the bottom of the boot stack (the stack the hypervisor runs on outside
//! interrupts). The boot page tables use 2 MiB pages, so there is no guard page; instead the
//! scheduler checks the canary on every pass and stops the machine with a clear message if
//! the stack ever overflowed, rather than running on with corrupted memory.

const CANARY: u64 = 0x5354_4143_4B5F_4F4B; // "KO_KCATS"

unsafe extern "C" {
    /// Lowest address of the boot stack (entry.s).
    static mut boot_stack_bottom: u64;
}

/// Writes the canary. Call once, early in `hv_main`, far above the stack's bottom.
pub fn arm() {
    // SAFETY: `boot_stack_bottom` is the first word of the 512 KiB boot stack, which is
    // only reached if the stack overflows; nothing else refers to it.
    unsafe { (&raw mut boot_stack_bottom).write_volatile(CANARY) };
}

/// Stops the machine if the canary was overwritten.
pub fn check() {
    // SAFETY: as in `arm`; a volatile read of a plain u64.
    let v = unsafe { (&raw const boot_stack_bottom).read_volatile() };
    if v != CANARY {
        panic!("hypervisor stack overflow (boot stack canary overwritten)");
    }
}

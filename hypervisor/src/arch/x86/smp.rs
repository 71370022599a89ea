//! Starting an application processor (AP): the real-mode trampoline (`boot/ap.s`) copied to
//! its page below 1 MiB, the start variables it reads, and INIT-SIPI-SIPI. Unsafe module:
//! it writes the trampoline's physical page and the variables `ap.s` shares.

use super::apic::{self, Ipi};
use crate::time;

unsafe extern "C" {
    /// The trampoline's first and one-past-last bytes in the image (`ap.s`).
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
    /// The stack `ap_entry64` loads, and the CPU number it passes to `ap_main`.
    static mut ap_stack_top: u64;
    static mut ap_cpu_index: u32;
    /// The page tables `ap_entry64` loads before it touches its stack (0: stay on the boot
    /// tables).
    static mut ap_cr3: u64;
}

/// The hypervisor's own tables (`memory::host_tables`), for the APs started from now on.
pub fn set_ap_cr3(root: u64) {
    // SAFETY: written by the boot CPU before it starts any AP; read by each AP once in
    // `ap_entry64`, after the start-up IPI (which orders it).
    unsafe { (&raw mut ap_cr3).write_volatile(root) };
}

/// Where the trampoline runs (`AP_TRAMPOLINE_BASE` in `ap.s`): page 8, whose number is the
/// start-up IPI's vector.
pub const TRAMPOLINE_BASE: u64 = 0x8000;

/// The trampoline's length in bytes.
pub fn trampoline_len() -> u64 {
    (&raw const ap_trampoline_end) as u64 - (&raw const ap_trampoline) as u64
}

/// Copies the trampoline to [`TRAMPOLINE_BASE`].
///
/// The caller checked that `TRAMPOLINE_BASE .. + trampoline_len()` is RAM that nothing else
/// uses (below 1 MiB the frame allocator never hands out memory; the loader's structures and
/// the bundle were checked against it).
pub fn install_trampoline() {
    let len = trampoline_len() as usize;
    // SAFETY: the source is the image's own code bytes; the destination is the page the
    // caller checked, identity-mapped by the boot page tables, which nothing in Rust refers
    // to; the two do not overlap (the image is at 1 MiB and up).
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const ap_trampoline, TRAMPOLINE_BASE as *mut u8, len);
    }
}

/// Starts the AP whose local APIC ID is `apic_id` as CPU `cpu` on the stack ending at
/// `stack_top`, and waits for `alive()` (set by the AP in `ap_main`). False if it did not
/// come up within 200 ms; it may still wake later, so the caller must leave it no work
/// and no memory it could reuse.
pub fn start_ap(apic_id: u32, cpu: u32, stack_top: u64, alive: impl Fn() -> bool) -> bool {
    // SAFETY: the boot CPU starts one AP at a time and waits for it (or gives up on it)
    // before writing these again; the AP reads them once in `ap_entry64`.
    unsafe {
        (&raw mut ap_stack_top).write_volatile(stack_top);
        (&raw mut ap_cpu_index).write_volatile(cpu);
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    let page = (TRAMPOLINE_BASE >> 12) as u8;
    apic::send(apic_id, Ipi::Init);
    wait_ns(10_000_000, || false);
    apic::send(apic_id, Ipi::Startup(page));
    if wait_ns(1_000_000, &alive) {
        return true;
    }
    apic::send(apic_id, Ipi::Startup(page));
    wait_ns(200_000_000, &alive)
}

/// Spins up to `ns` nanoseconds or until `done()`; returns `done()`.
fn wait_ns(ns: u64, done: impl Fn() -> bool) -> bool {
    let end = time::now_ns() + ns;
    while time::now_ns() < end {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Rust entry of an AP (called by `ap_entry64` on its own stack, interrupts off).
#[unsafe(no_mangle)]
extern "C" fn ap_main(cpu: u32) -> ! {
    let cpu = cpu as usize;
    let ist = crate::smp::start::ist_base(cpu);
    // SAFETY: first thing on this AP, interrupts off; `cpu` is the number the boot CPU gave
    // this AP alone, and its IST stacks were allocated for it (`smp::start`).
    unsafe { super::descriptors::init_ap(cpu, ist) };
    crate::smp::start::ap_run(cpu)
}

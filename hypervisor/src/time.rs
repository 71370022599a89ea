//! Time since boot, from the TSC calibrated against the PIT at boot.

use crate::arch::x86::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_KHZ: AtomicU64 = AtomicU64::new(1_000_000);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Records the TSC frequency and the boot instant.
pub fn init(tsc_khz: u64, tsc_at_boot: u64) {
    TSC_KHZ.store(tsc_khz.max(1), Ordering::Relaxed);
    TSC_AT_BOOT.store(tsc_at_boot, Ordering::Relaxed);
}

/// TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    let ticks = cpu::rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(tsc_khz())) as u64
}

//! Time since boot, from the TSC calibrated against the PIT at boot, and the wall-clock time
//! from the machine's RTC read at boot.

use crate::arch::x86::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_KHZ: AtomicU64 = AtomicU64::new(1_000_000);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Seconds since the Unix epoch at the boot instant (the machine's RTC; 0 when unknown).
static WALL_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick as a 32.32 fixed-point number, so converting needs a multiply
/// and a shift, not a 128-bit division (the scheduler reads the time on every switch).
static NS_PER_TICK_FP32: AtomicU64 = AtomicU64::new(1 << 32);

/// Records the TSC frequency and the boot instant.
pub fn init(tsc_khz: u64, tsc_at_boot: u64) {
    let khz = tsc_khz.max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    TSC_AT_BOOT.store(tsc_at_boot, Ordering::Relaxed);
    NS_PER_TICK_FP32.store((1_000_000u64 << 32) / khz, Ordering::Relaxed);
}

/// Records the wall-clock time (seconds since the Unix epoch) that `now_ns()` stands for.
pub fn set_wall_clock(unix_secs: u64) {
    let since_boot = now_ns() / 1_000_000_000;
    WALL_AT_BOOT.store(unix_secs.saturating_sub(since_boot), Ordering::Relaxed);
}

/// The wall-clock time now, in seconds since the Unix epoch (UTC); counts from 0 at boot if
/// the machine's clock could not be read.
pub fn wall_clock_secs() -> u64 {
    WALL_AT_BOOT.load(Ordering::Relaxed) + now_ns() / 1_000_000_000
}

/// TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    tsc_to_ns(cpu::rdtsc())
}

/// The instant TSC value `tsc` stands for, in nanoseconds since boot (0 for earlier ones).
pub fn tsc_to_ns(tsc: u64) -> u64 {
    let boot = TSC_AT_BOOT.load(Ordering::Relaxed);
    ticks_to_ns(tsc.saturating_sub(boot))
}

/// A duration of `ticks` TSC ticks in nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let fp = NS_PER_TICK_FP32.load(Ordering::Relaxed);
    ((u128::from(ticks) * u128::from(fp)) >> 32).min(u128::from(u64::MAX)) as u64
}

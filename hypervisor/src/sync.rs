//! The hypervisor's one lock. Unsafe module (shared mutable state behind an atomic flag).
//!
//! Two ways in: [`Locked::with`] refuses at once when the value is in use, and
//! [`Locked::with_spin`] waits a bounded time for another CPU to let go first. Neither
//! waits forever, so a fault inside a holder (which never lets go) cannot hang the panic
//! path or another CPU.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Rounds [`Locked::with_spin`] waits: some milliseconds, far longer than any holder.
const SPIN_LIMIT: u32 = 1 << 22;

/// A value used by one caller at a time: [`Locked::with`] refuses (returns `None`) rather
/// than wait, so a fault inside the console cannot deadlock the panic path.
pub struct Locked<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `with`, which hands out one `&mut` at a time
// (the `busy` flag, taken with Acquire and released with Release, orders the accesses
// across CPUs), so sharing `Locked` between CPUs is sharing `T` by moving access to it.
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// A free lock around `value`.
    pub const fn new(value: T) -> Locked<T> {
        Locked {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value, or returns `None` if it is in use (further up this stack, an
    /// interrupted caller, or another CPU).
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: (1) `busy` was false and is now ours, so no other `&mut T` exists: every
        // access goes through `with`, and the one that set `busy` clears it only after its
        // `&mut` is gone; (2) the reference does not outlive `f`.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        Some(r)
    }

    /// As [`Locked::with`], but while the value is in use (by another CPU: holders are
    /// short) tries again for about `SPIN_LIMIT` rounds before giving up with `None`.
    pub fn with_spin<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut f = Some(f);
        for _ in 0..SPIN_LIMIT {
            if !self.busy.load(Ordering::Relaxed) {
                if let Some(r) = self.with(|v| f.take().map(|f| f(v))) {
                    return r;
                }
            }
            core::hint::spin_loop();
        }
        None
    }
}

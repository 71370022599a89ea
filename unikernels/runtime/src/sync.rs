//! A spin lock for the runtime's shared state (the heap and the console line buffer).
//!
//! A unikernel runs on one vCPU with interrupts off, so a lock is never contended by another
//! thread; it only guards against re-entry (for example a panic while the console is held).
//! Code that can run re-entrantly uses [`Mutex::try_lock`] and falls back instead of
//! spinning.

use core::sync::atomic::{AtomicBool, Ordering};

use talc::lock_api::{GuardSend, RawMutex};

/// A test-and-set spin lock implementing [`lock_api::RawMutex`](talc::lock_api::RawMutex).
#[derive(Debug)]
pub struct RawSpinlock {
    locked: AtomicBool,
}

// SAFETY: the lock is held exactly between a successful compare-exchange false→true (in
// `try_lock`, which `lock` loops on) and the store of false in `unlock`, so at most one
// guard exists at a time (1). Acquire on taking and Release on giving it back order the
// guarded accesses inside the critical section (2). `unlock` is only called by lock_api on
// behalf of the guard's owner, as its contract requires (3).
unsafe impl RawMutex for RawSpinlock {
    #[allow(
        clippy::declare_interior_mutable_const,
        reason = "lock_api's initialiser constant is meant to be copied into each static"
    )]
    const INIT: RawSpinlock = RawSpinlock {
        locked: AtomicBool::new(false),
    };

    type GuardMarker = GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            core::hint::spin_loop();
        }
    }

    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// A mutex over [`RawSpinlock`].
pub type Mutex<T> = talc::lock_api::Mutex<RawSpinlock, T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_try_lock_until_dropped() {
        let m = Mutex::new(5u32);
        {
            let mut g = m.lock();
            *g += 1;
            assert!(m.try_lock().is_none());
        }
        assert_eq!(*m.try_lock().unwrap(), 6);
    }
}

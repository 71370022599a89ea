//! Events: bits the hypervisor sets for a qube (channel notifications, later device
//! interrupts) and the qube collects with `WaitEvent`.
//!
//! `WaitEvent` clears the bits it returns, and [`crate::sleep`] also waits with it; bits that
//! arrive during a sleep are kept here and returned by the next [`wait_event`], so none is
//! lost.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use bulkhead_abi::hypercall::WAIT_FOREVER;

/// A set of event bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Events(pub u64);

impl Events {
    /// No event.
    pub const NONE: Events = Events(0);

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True when no bit is set (a wait that timed out).
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when bit `n` (0..64) is set.
    pub const fn contains(self, n: u32) -> bool {
        n < 64 && self.0 & (1 << n) != 0
    }

    /// The set bits' numbers, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |&n| self.contains(n))
    }
}

impl fmt::Display for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Binary for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Binary::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Bits collected while sleeping, not yet handed to [`wait_event`].
static SAVED: AtomicU64 = AtomicU64::new(0);

/// Keeps bits a sleep received.
pub(crate) fn save(bits: u64) {
    if bits != 0 {
        SAVED.fetch_or(bits, Ordering::Relaxed);
    }
}

/// The hypercall's timeout for `timeout`: nanoseconds, capped below [`WAIT_FOREVER`];
/// `None` waits forever.
pub(crate) fn timeout_ns(timeout: Option<Duration>) -> u64 {
    match timeout {
        None => WAIT_FOREVER,
        Some(d) => u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .min(WAIT_FOREVER - 1),
    }
}

/// Waits until an event is pending or `timeout` has passed (`None`: no limit) and returns
/// the pending events, clearing them; empty when the time ran out. The qube costs nothing
/// while it waits.
pub fn wait_event(timeout: Option<Duration>) -> Events {
    let saved = SAVED.swap(0, Ordering::Relaxed);
    if saved != 0 {
        return Events(saved);
    }
    Events(crate::hypercall::wait_event_ns(timeout_ns(timeout)))
}

/// Waits for events with no time limit.
pub fn wait_forever() -> Events {
    wait_event(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_map_to_nanoseconds() {
        assert_eq!(timeout_ns(None), WAIT_FOREVER);
        assert_eq!(timeout_ns(Some(Duration::from_millis(5))), 5_000_000);
        assert_eq!(timeout_ns(Some(Duration::ZERO)), 0);
        // A finite wait never turns into "forever".
        assert_eq!(timeout_ns(Some(Duration::MAX)), WAIT_FOREVER - 1);
    }

    #[test]
    fn bits_are_listed_and_printed() {
        let e = Events(0b1010_0001);
        assert!(e.contains(0) && e.contains(5) && e.contains(7) && !e.contains(1));
        assert!(!e.contains(64));
        assert_eq!(e.iter().collect::<Vec<_>>(), [0, 5, 7]);
        assert_eq!(format!("{e}"), "0xa1");
        assert!(Events::NONE.is_empty());
    }
}

//! Time: the hypervisor's monotonic clock and sleeping.

use core::time::Duration;

/// Nanoseconds since the hypervisor started (monotonic).
pub fn now_ns() -> u64 {
    crate::hypercall::time_ns()
}

/// Time since the hypervisor started.
pub fn now() -> Duration {
    Duration::from_nanos(now_ns())
}

/// Sleeps at least `d`, waiting with `WaitEvent` (the qube costs nothing meanwhile). Events
/// that arrive during the sleep are kept for the next [`crate::wait_event`].
pub fn sleep(d: Duration) {
    let deadline = deadline(now_ns(), d);
    loop {
        let now = now_ns();
        if now >= deadline {
            return;
        }
        let bits = crate::hypercall::wait_event_ns(crate::events::timeout_ns(Some(
            Duration::from_nanos(deadline - now),
        )));
        crate::events::save(bits);
    }
}

/// `now + d` in nanoseconds, saturating.
fn deadline(now: u64, d: Duration) -> u64 {
    now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline(10, Duration::from_nanos(5)), 15);
        assert_eq!(deadline(u64::MAX - 1, Duration::from_secs(1)), u64::MAX);
        assert_eq!(deadline(0, Duration::MAX), u64::MAX);
    }
}

//! Qube run states and the scheduling policy: round robin over runnable qubes on one CPU,
//! a fixed time slice enforced by the timer, waits with deadlines, and the restart budget.
//!
//! This is policy only; the mechanism (running a vCPU, the timer interrupt) is in the
//! hypervisor image. Times are nanoseconds since boot. Which CPU each qube runs on is
//! decided once, at boot, by [`place`].

mod placement;
#[cfg(test)]
mod placement_tests;
pub use placement::{LINUX_WEIGHT, PlaceRequest, Placement, UNIKERNEL_WEIGHT, place};

/// Length of a time slice.
pub const TIME_SLICE_NS: u64 = 10_000_000;
/// How many times a qube is restarted before the hypervisor gives up on it.
pub const MAX_RESTARTS: u32 = 3;

/// Where a qube is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    /// Not running and will not run again unless restarted. (First: a table of stopped
    /// qubes is then all zero bytes, so the hypervisor's per-CPU run queues, statics, go to
    /// .bss rather than into the image.)
    #[default]
    Stopped,
    /// Wants the CPU.
    Runnable,
    /// Waiting for an event, or until `deadline` (ns) if set.
    Waiting {
        /// When to wake without an event.
        deadline: Option<u64>,
    },
}

/// Picks the next runnable qube after `current` in round-robin order (`current` itself last).
pub fn pick_next(states: &[RunState], current: usize) -> Option<usize> {
    let n = states.len();
    (1..=n)
        .map(|k| (current + k) % n)
        .find(|&i| states[i] == RunState::Runnable)
}

/// Wakes every waiting qube whose deadline has passed or that has events pending.
/// `pending(i)` says whether qube `i` has events.
pub fn wake(states: &mut [RunState], now: u64, pending: impl Fn(usize) -> bool) {
    for (i, s) in states.iter_mut().enumerate() {
        if let RunState::Waiting { deadline } = *s
            && (pending(i) || deadline.is_some_and(|d| d <= now))
        {
            *s = RunState::Runnable;
        }
    }
}

/// The earliest deadline among waiting qubes: when the CPU must next look, if all are idle.
pub fn next_deadline(states: &[RunState]) -> Option<u64> {
    states
        .iter()
        .filter_map(|s| match s {
            RunState::Waiting { deadline } => *deadline,
            _ => None,
        })
        .min()
}

/// The deadline for a wait of `timeout_ns` from `now` (`u64::MAX` = none).
pub fn deadline_after(now: u64, timeout_ns: u64) -> Option<u64> {
    (timeout_ns != u64::MAX).then(|| now.saturating_add(timeout_ns))
}

/// Whether a qube that has been restarted `restarts` times may be restarted again.
pub fn may_restart(restarts: u32) -> bool {
    restarts < MAX_RESTARTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;

    #[test]
    fn round_robin_skips_blocked_and_stopped() {
        let s = [Runnable, Waiting { deadline: None }, Runnable, Stopped];
        assert_eq!(pick_next(&s, 0), Some(2));
        assert_eq!(pick_next(&s, 2), Some(0));
        assert_eq!(pick_next(&[Runnable], 0), Some(0));
        assert_eq!(
            pick_next(&[Stopped, Waiting { deadline: Some(1) }], 0),
            None
        );
    }

    #[test]
    fn wakes_on_deadline_or_event() {
        let mut s = [
            Waiting {
                deadline: Some(100),
            },
            Waiting { deadline: None },
            Waiting {
                deadline: Some(500),
            },
        ];
        assert_eq!(next_deadline(&s), Some(100));
        wake(&mut s, 100, |i| i == 1);
        assert_eq!(
            s,
            [
                Runnable,
                Runnable,
                Waiting {
                    deadline: Some(500)
                }
            ]
        );
        assert_eq!(next_deadline(&s), Some(500));
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_after(5, u64::MAX), None);
        assert_eq!(deadline_after(u64::MAX - 1, 10), Some(u64::MAX));
        assert!(may_restart(0) && !may_restart(MAX_RESTARTS));
    }
}

//! The idle check: how many VM exits sys-net causes over 10 s once DHCP has settled, logged
//! once, so polling and interrupts can be compared (`README.md`, "Idle check").
//!
//! The exit count is sampled at the first round at least [`SETTLE`] after the bridge
//! started and again at the first round at least [`WINDOW`] after that sample; the bridge
//! caps its sleep by [`IdleCheck::due_in`] until then, so with interrupts on (no 1 ms
//! polling) it costs two extra wake-ups in all.

use core::fmt;
use core::time::Duration;

use bulkhead_rt::info;

/// From the bridge's start to the first sample (the DHCP exchange is over by then).
pub const SETTLE: Duration = Duration::from_secs(2);
/// From the first sample to the second.
pub const WINDOW: Duration = Duration::from_secs(10);

const fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

enum State {
    /// Waiting for the first sample, due at this time.
    Before(u64),
    /// The first sample: when, and the count then.
    Measuring { since_ns: u64, exits: u64 },
    /// Logged.
    Done,
}

/// The check's progress.
pub struct IdleCheck {
    state: State,
}

impl IdleCheck {
    /// For a bridge that started at `start_ns`.
    pub fn new(start_ns: u64) -> IdleCheck {
        IdleCheck {
            state: State::Before(start_ns.saturating_add(ns(SETTLE))),
        }
    }

    /// How long from `now_ns` until the next sample is due (`None`: the check is over).
    pub fn due_in(&self, now_ns: u64) -> Option<Duration> {
        let at = match self.state {
            State::Before(at) => at,
            State::Measuring { since_ns, .. } => since_ns.saturating_add(ns(WINDOW)),
            State::Done => return None,
        };
        Some(Duration::from_nanos(at.saturating_sub(now_ns)))
    }

    /// Takes the sample that is due at `now_ns`, if one is, and logs the result after the
    /// second.
    pub fn run(&mut self, now_ns: u64, interrupts: bool) {
        if self.due_in(now_ns) != Some(Duration::ZERO) {
            return;
        }
        let exits = bulkhead_rt::hypercall::exit_count();
        self.state = match self.state {
            State::Before(_) => State::Measuring {
                since_ns: now_ns,
                exits,
            },
            State::Measuring {
                since_ns,
                exits: before,
            } => {
                let n = exits.saturating_sub(before);
                let elapsed = now_ns.saturating_sub(since_ns).max(1);
                info!(
                    "net: idle check: {n} VM exits in the last {} s ({} per second), interrupts {}",
                    (elapsed + 500_000_000) / 1_000_000_000,
                    Tenths(u128::from(n) * 10_000_000_000 / u128::from(elapsed)),
                    if interrupts { "on" } else { "off" }
                );
                State::Done
            }
            State::Done => State::Done,
        };
    }
}

/// A number of tenths printed as `12.3`.
struct Tenths(u128);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

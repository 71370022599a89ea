//! Waking a CPU across CPUs without losing the wake-up: the protocol between a CPU that
//! posts work for a qube another CPU runs and that CPU, which may be about to halt.
//!
//! - A [`Mailbox`] per qube holds bits posted by other CPUs (channel events, admin
//!   requests); only the CPU that runs the qube takes them.
//! - A [`Sleeper`] per CPU says whether that CPU may be halting.
//!
//! The poster: [`Mailbox::post`], then, if [`Sleeper::needs_kick`], a wake-up IPI. The CPU,
//! with interrupts off: [`Sleeper::going_idle`], then [`Mailbox::has_mail`] on each of its
//! qubes; with mail it goes on ([`Sleeper::awake`]), without it halts with `sti; hlt`, which
//! an IPI sent at any point after `going_idle` ends (an IPI arriving while interrupts are
//! off stays pending until the `sti`). Every access of the protocol is a read-modify-write
//! with acquire-release ordering (a store then a load, even sequentially consistent ones,
//! is the store-buffering pattern, and loom, which treats SeqCst as AcqRel, rightly finds
//! the lost wake-up in it): read-modify-writes of one word are totally ordered, so if the
//! CPU's read of the mailbox comes first, it synchronises with the poster's post, which then
//! reads the CPU's earlier `going_idle`. Either the CPU sees the mail, or the poster sees
//! the CPU idle and sends the IPI (`tests/wake_loom.rs` checks every interleaving with
//! loom). On x86 each of these is one `lock`-prefixed instruction.

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bits posted to a qube by other CPUs.
#[derive(Debug, Default)]
pub struct Mailbox {
    pending: AtomicU64,
}

impl Mailbox {
    /// An empty mailbox.
    #[cfg(not(loom))]
    pub const fn new() -> Mailbox {
        Mailbox {
            pending: AtomicU64::new(0),
        }
    }

    /// An empty mailbox.
    #[cfg(loom)]
    pub fn new() -> Mailbox {
        Mailbox {
            pending: AtomicU64::new(0),
        }
    }

    /// Adds `bits`. The caller then kicks the qube's CPU if its [`Sleeper::needs_kick`].
    pub fn post(&self, bits: u64) {
        self.pending.fetch_or(bits, Ordering::AcqRel);
    }

    /// Whether bits wait (the halting CPU's check, after [`Sleeper::going_idle`]; a
    /// read-modify-write, see the module's text).
    pub fn has_mail(&self) -> bool {
        self.pending.fetch_or(0, Ordering::AcqRel) != 0
    }

    /// Takes every bit posted so far (0 if none: then no write, so an empty mailbox's cache
    /// line stays shared).
    pub fn take(&self) -> u64 {
        if self.pending.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.pending.swap(0, Ordering::AcqRel)
    }
}

/// Whether a CPU may be halting, or otherwise not looking at its mailboxes without an IPI
/// (running a qube alone, with no time slice).
#[derive(Debug, Default)]
pub struct Sleeper {
    idle: AtomicBool,
}

impl Sleeper {
    /// Awake.
    #[cfg(not(loom))]
    pub const fn new() -> Sleeper {
        Sleeper {
            idle: AtomicBool::new(false),
        }
    }

    /// Awake.
    #[cfg(loom)]
    pub fn new() -> Sleeper {
        Sleeper {
            idle: AtomicBool::new(false),
        }
    }

    /// The CPU, interrupts off, before it looks at its mailboxes a last time and halts.
    pub fn going_idle(&self) {
        self.idle.swap(true, Ordering::AcqRel);
    }

    /// The CPU found work, or woke.
    pub fn awake(&self) {
        self.idle.store(false, Ordering::Relaxed);
    }

    /// The poster, after [`Mailbox::post`]: whether the CPU must get a wake-up IPI.
    pub fn needs_kick(&self) -> bool {
        self.idle.fetch_or(false, Ordering::AcqRel)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn take_empties_the_mailbox_and_returns_every_bit() {
        let m = Mailbox::new();
        assert_eq!(m.take(), 0);
        m.post(0b101);
        m.post(0b010);
        assert!(m.has_mail());
        assert_eq!(m.take(), 0b111);
        assert!(!m.has_mail());
        assert_eq!(m.take(), 0);
    }

    #[test]
    fn a_sleeping_cpu_needs_a_kick_until_it_wakes() {
        let s = Sleeper::new();
        assert!(!s.needs_kick());
        s.going_idle();
        assert!(s.needs_kick());
        s.awake();
        assert!(!s.needs_kick());
    }
}

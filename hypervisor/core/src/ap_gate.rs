//! The start-up and the entry of a secondary vCPU of a Linux qube (an application
//! processor), which runs on one CPU while the qube's other vCPUs, on other CPUs, send it
//! INIT and STARTUP, and its first vCPU parks it when the qube stops or starts over.
//!
//! The start-up follows the processor's: powered on ([`RESET`]); INIT makes it wait for a
//! STARTUP ([`WAIT_SIPI`]); a STARTUP then names the page it starts at, which its own CPU
//! takes ([`ApGate::take_startup`]) to start it running ([`RUNNING`]). A STARTUP in any other
//! state is ignored, as on hardware.
//!
//! The entry: before each entry into the guest its CPU says it enters, then checks that it
//! is still running ([`ApGate::enter`]); after the exit it says it left. The first vCPU
//! parks it ([`ApGate::park`]: back to [`RESET`]) and then waits while
//! [`ApGate::inside`]: when that wait ends, the vCPU is out of the guest and stays out until
//! the guest starts it again, so the qube's memory may be rewritten. Both sides use
//! acquire-release read-modify-writes on both words (as `crate::wake`, and for the same
//! reason): either the parker sees the vCPU inside and waits, or the vCPU sees itself
//! parked and does not enter (`tests/wake_loom.rs` checks every interleaving).

#[cfg(loom)]
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Powered on: waiting for INIT.
pub const RESET: u32 = 0;
/// INIT received: waiting for STARTUP.
pub const WAIT_SIPI: u32 = 1;
/// STARTUP received (its vector in bits 8..16): to be started by its CPU.
pub const SIPI: u32 = 2;
/// Running guest code.
pub const RUNNING: u32 = 3;

/// One secondary vCPU's start-up state and whether it is in the guest.
#[derive(Debug, Default)]
pub struct ApGate {
    state: AtomicU32,
    inside: AtomicBool,
}

impl ApGate {
    /// Powered on, out of the guest.
    #[cfg(not(loom))]
    pub const fn new() -> ApGate {
        ApGate {
            state: AtomicU32::new(RESET),
            inside: AtomicBool::new(false),
        }
    }

    /// Powered on, out of the guest.
    #[cfg(loom)]
    pub fn new() -> ApGate {
        ApGate {
            state: AtomicU32::new(RESET),
            inside: AtomicBool::new(false),
        }
    }

    /// Its state ([`RESET`], [`WAIT_SIPI`], [`SIPI`], [`RUNNING`]) and the STARTUP vector
    /// (a read-modify-write: a halting CPU's last look, as `crate::wake`).
    pub fn state(&self) -> (u32, u8) {
        let s = self.state.fetch_or(0, Ordering::AcqRel);
        (s & 0xFF, (s >> 8) as u8)
    }

    /// INIT: it waits for a STARTUP (leaving the guest first if it was running).
    pub fn init(&self) {
        self.state.swap(WAIT_SIPI, Ordering::AcqRel);
    }

    /// STARTUP at `vector`: true if it was waiting for one (its CPU is then to be woken).
    pub fn startup(&self, vector: u8) -> bool {
        let sipi = SIPI | u32::from(vector) << 8;
        self.state
            .compare_exchange(WAIT_SIPI, sipi, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Its CPU: the STARTUP vector to start it at, if one came; it is then running.
    pub fn take_startup(&self) -> Option<u8> {
        let (state, vector) = self.state();
        let sipi = SIPI | u32::from(vector) << 8;
        let taken = self
            .state
            .compare_exchange(sipi, RUNNING, Ordering::AcqRel, Ordering::Acquire);
        (state == SIPI && taken.is_ok()).then_some(vector)
    }

    /// Its CPU, before an entry: says it enters, then whether it still runs. False: it was
    /// parked or sent INIT, and must not enter (it is out again).
    pub fn enter(&self) -> bool {
        self.inside.swap(true, Ordering::AcqRel);
        if self.state().0 == RUNNING {
            return true;
        }
        self.left();
        false
    }

    /// Its CPU, after the exit.
    pub fn left(&self) {
        self.inside.swap(false, Ordering::AcqRel);
    }

    /// The qube's first vCPU: back to power-on. Then wait while [`ApGate::inside`].
    pub fn park(&self) {
        self.state.swap(RESET, Ordering::AcqRel);
    }

    /// Whether it is in the guest or about to enter it.
    pub fn inside(&self) -> bool {
        self.inside.fetch_or(false, Ordering::AcqRel)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn starts_only_after_init_then_startup() {
        let g = ApGate::new();
        assert!(!g.startup(0x9a), "STARTUP before INIT is ignored");
        assert_eq!(g.take_startup(), None);
        assert!(!g.enter(), "not running yet");
        g.init();
        assert!(g.startup(0x9a));
        assert!(!g.startup(0x12), "the second STARTUP is ignored");
        assert_eq!(g.state(), (SIPI, 0x9a));
        assert_eq!(g.take_startup(), Some(0x9a));
        assert_eq!(g.take_startup(), None, "taken once");
        assert!(g.enter());
        assert!(g.inside());
        g.left();
        assert!(!g.inside());
    }

    #[test]
    fn init_or_park_keeps_a_running_vcpu_out() {
        let g = ApGate::new();
        g.init();
        g.startup(1);
        g.take_startup();
        g.init();
        assert!(!g.enter(), "INIT: waits for STARTUP");
        assert!(!g.inside());
        g.startup(2);
        assert_eq!(g.take_startup(), Some(2));
        g.park();
        assert!(!g.enter(), "parked");
        assert_eq!(g.state().0, RESET);
        assert!(!g.startup(3), "parked: STARTUP needs INIT first");
    }
}

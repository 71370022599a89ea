//! `marks=N` (N windows to wait for): the gui qube brackets what `cargo xtask bench --gui`
//! measures with the counting plugin's marks (`bulkhead_rt::hypercall::mark`, a NOP on a
//! CPU) and says in its log when each part is done, so the benchmark knows what to do next:
//!
//! 1. mark 1 once N windows are shown; mark 2 after 2 s of the idle desktop;
//! 2. mark 3 when a key goes to a client, mark 4 when the screen shows that client's answer
//!    (the present after its next damage);
//! 3. mark 5 at the first damage that covers a whole window, mark 6 after
//!    [`FULL_UPDATES`] presents of such damage.

use bulkhead_rt::hypercall::mark;
use bulkhead_rt::{info, now_ns};

/// Full-window updates timed.
pub const FULL_UPDATES: u32 = 20;
/// The idle span, in ns.
const IDLE_NS: u64 = 2_000_000_000;

#[derive(Clone, Copy)]
enum Phase {
    Windows(usize),
    Idle(u64),
    Key,
    Answer { client: usize, damaged: bool },
    Full,
    Updates(u32),
    Done,
}

/// Where the measurement is.
pub struct Bench(Phase);

impl Bench {
    /// Waits for `windows` windows first.
    pub fn new(windows: usize) -> Bench {
        Bench(Phase::Windows(windows))
    }

    /// One pass of the loop: how many windows are shown, whether a pressed key went to a
    /// client (which), the last damage (client, whole window), whether a frame was presented.
    pub fn pass(
        &mut self,
        windows: usize,
        key_to: Option<usize>,
        damage: Option<(usize, bool)>,
        presented: bool,
    ) {
        let now = now_ns();
        self.0 = match self.0 {
            Phase::Windows(n) if windows >= n && presented => {
                mark();
                info!("gui: bench: {windows} windows shown; idle from here");
                Phase::Idle(now)
            }
            Phase::Idle(since) if now - since >= IDLE_NS => {
                mark();
                info!("gui: bench: idle span done; waiting for a key");
                Phase::Key
            }
            Phase::Key => match key_to {
                Some(client) => {
                    mark();
                    Phase::Answer {
                        client,
                        damaged: false,
                    }
                }
                None => Phase::Key,
            },
            Phase::Answer { client, damaged } => {
                let damaged = damaged || damage.is_some_and(|(c, _)| c == client);
                if damaged && presented {
                    mark();
                    info!("gui: bench: key to pixels done");
                    Phase::Full
                } else {
                    Phase::Answer { client, damaged }
                }
            }
            Phase::Full if damage.is_some_and(|(_, whole)| whole) => {
                mark();
                Phase::Updates(0)
            }
            Phase::Updates(n) if presented && damage.is_some_and(|(_, whole)| whole) => {
                if n + 1 >= FULL_UPDATES {
                    mark();
                    info!("gui: bench: {FULL_UPDATES} full-window updates done");
                    Phase::Done
                } else {
                    Phase::Updates(n + 1)
                }
            }
            other => other,
        };
    }
}

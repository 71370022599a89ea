//! The admin qube's qrexec core, free of hardware so it runs in host tests.
//!
//! [`Relay`] takes every message the qubes send on their `<qube>.qrexec` channels
//! ([`Relay::on_message`]), decides each call with the policy (`bulkhead_policy`), asks the
//! user through the gui qube where the policy says `ask`, starts the target (a disposable,
//! or a stopped qube), and then relays the call's [`Io`] between its two ends, renumbering
//! it, so each end names only its own calls and nothing reaches a third qube. It serves the
//! `admin.vm.*` services itself ([`services`]). Everything it does to the world goes
//! through [`Host`]: sending on a channel, the admin hypercalls, the clock, the log.
//!
//! Back-pressure: when the channel a message must go to is full, [`Relay::on_message`]
//! returns [`Outcome::Retry`] and the caller offers the same message again later (it keeps
//! it, and reads nothing more from that channel meanwhile). Nothing is buffered here, so
//! the admin qube's memory does not grow with what the qubes send.
//!
//! Qube numbers are manifest indices (`AdminConfig::qubes`); [`HOST`] is the host's console
//! (`cargo xtask qvm`), which calls like Qubes' dom0: without policy.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "testkit")]
extern crate std;

mod calls;
mod route;
pub mod services;

use bulkhead_abi::hypercall::QubeState;
use bulkhead_abi::qrexec::{FromAdmin, Io, QREXEC_VERSION, ToAdmin};
use bulkhead_qubeconfig::AdminConfig;
use calls::{Calls, State};

/// The host's console as a call's source.
pub const HOST: u8 = 0xFF;
/// How long a target may take to say hello after it is started, in ms (a Linux qube boots
/// in seconds; under TCG in tens of them).
pub const START_TIMEOUT_MS: u64 = 120_000;
/// How long `qvm-shutdown` waits for a qube to power off before killing it, in ms.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;

/// A channel's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// What the relay needs of the world.
pub trait Host {
    /// Sends `msg` to qube `to` (or [`HOST`]); `Err(Full)` when its ring has no room.
    fn send(&mut self, to: u8, msg: &FromAdmin<'_>) -> Result<(), Full>;
    /// How many more messages `to`'s ring takes now.
    fn room(&self, to: u8) -> usize;
    /// Qube `q`'s state (`None` for no such qube).
    fn state(&self, q: u8) -> Option<QubeState>;
    /// Starts the stopped qube `q` (false when the hypervisor refuses).
    fn start(&mut self, q: u8) -> bool;
    /// Stops qube `q` at once (false when the hypervisor refuses).
    fn kill(&mut self, q: u8) -> bool;
    /// Milliseconds on a monotonic clock.
    fn now_ms(&self) -> u64;
    /// Writes one log line.
    fn log(&mut self, line: core::fmt::Arguments<'_>);
}

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (forwarded, answered, or dropped as hostile).
    Done,
    /// A channel it must go to is full: offer it again later.
    Retry,
}

/// The admin qube's qrexec state.
pub struct Relay<'c> {
    config: &'c AdminConfig,
    qubes: heapless::Vec<bulkhead_policy::Qube, { bulkhead_policy::MAX_QUBES }>,
    /// Bit `q`: qube `q` said hello since its channel last reset.
    up: u64,
    calls: Calls,
    /// Qubes told to shut down, and when to kill them if they have not.
    shutdowns: heapless::Vec<(u8, u64), 8>,
    /// Messages dropped as hostile or stale (for the log's summary).
    pub dropped: u64,
    /// Calls that ended (for the admin qube's figures).
    pub ended: u64,
    /// Disposables whose calls ended, to destroy ([`Relay::destroy_done`]).
    done: heapless::Vec<u8, { bulkhead_policy::MAX_QUBES }>,
}

impl<'c> Relay<'c> {
    /// A relay for the system `config` describes (already checked).
    pub fn new(config: &'c AdminConfig) -> Self {
        Relay {
            config,
            qubes: config.policy_qubes(),
            up: 0,
            calls: Calls::new(),
            shutdowns: heapless::Vec::new(),
            done: heapless::Vec::new(),
            dropped: 0,
            ended: 0,
        }
    }

    /// Whether qube `q` said hello since its channel last reset.
    pub fn is_up(&self, q: u8) -> bool {
        q == HOST || (q < 64 && self.up & (1 << q) != 0)
    }

    /// The calls open now.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// The calls open now that `q` (or [`HOST`]) made.
    pub fn calls_from(&self, q: u8) -> usize {
        (0..self.calls.len())
            .filter(|&i| self.calls[i].source == q)
            .count()
    }

    /// Qube `q`'s name (`host` for [`HOST`], `?` for none).
    pub fn name(&self, q: u8) -> &'c str {
        match q {
            HOST => "host",
            _ => self
                .config
                .qubes
                .get(usize::from(q))
                .map_or("?", |q| q.name.as_str()),
        }
    }

    /// Handles one message from qube `from` (or [`HOST`]).
    pub fn on_message(&mut self, host: &mut impl Host, from: u8, msg: &ToAdmin<'_>) -> Outcome {
        if let ToAdmin::Hello { version } = *msg {
            return self.hello(host, from, version);
        }
        if !self.is_up(from) {
            self.dropped += 1;
            return Outcome::Done;
        }
        match *msg {
            ToAdmin::Hello { .. } => Outcome::Done,
            ToAdmin::Call {
                call,
                service,
                argument,
                target,
            } => self.call(host, from, call, service, argument, target),
            ToAdmin::Io(ref io) => self.io(host, from, io),
            ToAdmin::Query {
                query,
                service,
                source,
                target,
            } if Some(from) == self.config.gui => self.query(host, query, service, source, target),
            ToAdmin::Answer { ask, choice } if Some(from) == self.config.gui => {
                self.answer(host, ask, choice)
            }
            ToAdmin::Query { .. } | ToAdmin::Answer { .. } => {
                host.log(format_args!(
                    "{}: a query or answer from a qube that is not the gui qube; dropped",
                    self.name(from)
                ));
                self.dropped += 1;
                Outcome::Done
            }
        }
    }

    fn hello(&mut self, host: &mut impl Host, from: u8, version: u16) -> Outcome {
        if from == HOST || usize::from(from) >= self.config.qubes.len() {
            return Outcome::Done;
        }
        if version != QREXEC_VERSION {
            host.log(format_args!(
                "{}: qrexec version {version}, this admin qube speaks {QREXEC_VERSION}; ignored",
                self.name(from)
            ));
            return Outcome::Done;
        }
        if host.room(from) == 0 {
            return Outcome::Retry;
        }
        if self.is_up(from) {
            // A second hello: it started over without its channel resetting first.
            self.reset(host, from);
        }
        let hello = FromAdmin::Hello {
            version: QREXEC_VERSION,
        };
        if host.send(from, &hello).is_err() {
            return Outcome::Retry;
        }
        self.up |= 1 << from;
        self.tick(host);
        Outcome::Done
    }

    /// Qube `q`'s channel was reset (it stopped or started over; for [`HOST`], a new client
    /// said hello): its calls end, and the other end of each is told.
    pub fn reset(&mut self, host: &mut impl Host, q: u8) {
        if q < 64 {
            self.up &= !(1 << q);
        }
        let gui = self.config.gui;
        // A qube started for a call has its channels reset as it starts: the calls waiting
        // for its hello wait on (they time out if it never comes).
        let starting = host.state(q).is_some_and(|s| s.running);
        for i in (0..self.calls.len()).rev() {
            let c = &self.calls[i];
            if starting && c.target == Some(q) && matches!(c.state, State::Starting { .. }) {
                continue;
            }
            let asking_gui = matches!(c.state, State::Asking { .. }) && gui == Some(q);
            let query = matches!(c.state, State::Asking { query: Some(_), .. });
            if query && (asking_gui || c.source == q || c.target == Some(q)) {
                // A paste's question: nobody waits for it but the gui qube.
                self.calls.remove(i);
            } else if c.source == q {
                let c = self.calls.remove(i);
                if let (State::Running, Some(t)) = (&c.state, c.target) {
                    // As far as its ring takes it: a target that misses it keeps a dead call.
                    let _ = host.send(t, &FromAdmin::Io(Io::Abort { call: c.id }));
                }
                self.finished(host, &c);
            } else if c.target == Some(q) || asking_gui {
                let c = &mut self.calls[i];
                c.state = State::Closing {
                    to_source: c.refusal_on_reset(),
                };
            }
        }
        self.tick(host);
    }

    /// Periodic work: delivers calls whose target came up, times out targets that never
    /// did, retries the notices owed to sources, kills qubes that ignored a shutdown.
    pub fn tick(&mut self, host: &mut impl Host) {
        let now = host.now_ms();
        let mut i = 0;
        while i < self.calls.len() {
            if self.advance(host, i, now) {
                let c = self.calls.remove(i);
                self.finished(host, &c);
            } else {
                i += 1;
            }
        }
        let mut k = 0;
        while k < self.shutdowns.len() {
            let (q, deadline) = self.shutdowns[k];
            let running = host.state(q).is_some_and(|s| s.running);
            if !running {
                self.shutdowns.swap_remove(k);
            } else if now >= deadline {
                host.log(format_args!(
                    "{} did not power off in time; killed",
                    self.name(q)
                ));
                host.kill(q);
                self.shutdowns.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Forwards one message of a running call between its ends.
    fn io(&mut self, host: &mut impl Host, from: u8, io: &Io<'_>) -> Outcome {
        let Some((i, from_source)) = self.calls.find_running(from, io.call()) else {
            self.dropped += 1;
            return Outcome::Done;
        };
        let c = &self.calls[i];
        let (to, number) = if from_source {
            (c.source_target(), c.id)
        } else {
            (c.source, c.source_call)
        };
        let allowed = calls::direction_ok(io, from_source);
        let msg = if allowed {
            io.renumbered(number)
        } else {
            Io::Abort { call: number }
        };
        if host.send(to, &FromAdmin::Io(msg.clone())).is_err() {
            return Outcome::Retry;
        }
        if !allowed {
            // The sender broke the protocol: the other end was told; the sender is too,
            // as far as its ring takes it.
            let own = if from_source { c.source_call } else { c.id };
            let _ = host.send(from, &FromAdmin::Io(Io::Abort { call: own }));
            host.log(format_args!(
                "{}: call {} broke the protocol ({io:?}); aborted",
                self.name(from),
                c.describe(self)
            ));
        }
        if !allowed || matches!(msg, Io::Exit { .. } | Io::Abort { .. }) {
            let c = self.calls.remove(i);
            self.finished(host, &c);
        }
        Outcome::Done
    }

    /// A call is over: a disposable that ran it is destroyed at the next
    /// [`Relay::destroy_done`], so the caller first gets to see the end (the hypervisor wipes
    /// the disposable's memory inside the kill, which takes a while).
    fn finished(&mut self, _host: &mut impl Host, c: &calls::Open) {
        self.ended += 1;
        if let (true, Some(t)) = (c.disposable, c.target)
            && !self.done.contains(&t)
        {
            // More disposables than this cannot have ended in one pass (one per qube).
            let _ = self.done.push(t);
        }
    }

    /// Destroys the disposables whose calls ended since the last time. The admin qube calls
    /// this once a pass, before reading the channels: the callers were woken at the end of
    /// the pass before and have had the CPU meanwhile.
    pub fn destroy_done(&mut self, host: &mut impl Host) {
        for t in core::mem::take(&mut self.done) {
            if host.state(t).is_some_and(|s| s.running) {
                host.log(format_args!("disposable {} done; destroyed", self.name(t)));
                host.kill(t);
            }
        }
    }
}

#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(test)]
mod tests;

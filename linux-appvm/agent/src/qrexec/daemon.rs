//! The daemon over any [`Transport`]: the [`Core`], the calls this qube serves ([`Served`])
//! and the commands' connections ([`ClientEnd`]). [`Daemon::step`] does all the
//! non-blocking work there is; the thread in [`super::run`] sleeps between steps, the
//! host tests just step.

use super::client_end::ClientEnd;
use super::core::{Core, End, Event};
use super::served::Served;
use super::wire::refusal_text;
use crate::channel::{ChannelError, Transport};
use crate::log::printable;
use crate::services::Start;
use crate::services::call::CallInfo;
use bulkhead_abi::qrexec::{MAX_CALLS, Stream};
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Connections at most (beyond them a command is turned away at once).
pub const MAX_CONNECTIONS: usize = 2 * MAX_CALLS;
/// How long a disposable waits for the admin qube to take its last messages.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Exit code of a call for a service this qube does not have (a shell's "not found").
pub const NO_SERVICE: i32 = 127;

/// What the daemon needs to know about its qube.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where commands run and files land (`<home>/QubesIncoming/<source>`).
    pub home: PathBuf,
    /// A disposable powers off once the first call it serves is over.
    pub disposable: bool,
    /// The services by name.
    pub lookup: fn(&str) -> Option<Start>,
}

/// What the step asks of the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Something moved: step again before sleeping.
    pub busy: bool,
    /// Sync and power off now.
    pub power_off: bool,
    /// Step again after this long at the latest (a grace period, a drain).
    pub soon: Option<Duration>,
}

/// The qrexec daemon of one qube.
pub struct Daemon<T: Transport> {
    ch: T,
    pub core: Core,
    served: BTreeMap<u32, Served>,
    clients: Vec<ClientEnd>,
    config: Config,
    notes: Vec<String>,
    /// Powering off once the admin qube took our last messages (since when).
    draining: Option<Instant>,
    shutdown: bool,
    /// The channel is broken (until a reset).
    broken: bool,
}

impl<T: Transport> Daemon<T> {
    /// A daemon whose `Hello` waits to be sent.
    pub fn new(ch: T, config: Config) -> Daemon<T> {
        Daemon {
            ch,
            core: Core::new(),
            served: BTreeMap::new(),
            clients: Vec::new(),
            config,
            notes: Vec::new(),
            draining: None,
            shutdown: false,
            broken: false,
        }
    }

    /// The channel (the loop waits on its interrupt).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.ch
    }

    /// Console lines about what happened.
    pub fn take_notes(&mut self) -> Vec<String> {
        let mut notes = self.core.take_notes();
        notes.append(&mut self.notes);
        notes
    }

    /// Calls served now.
    pub fn served_calls(&self) -> usize {
        self.served.len()
    }

    /// A line on what it holds (calls, queued messages, buffered bytes, served calls,
    /// connections), for diagnostics.
    pub fn state(&self) -> String {
        format!(
            "{} calls, {} queued, {} bytes, {} served, {} connections, {} unconsumed",
            self.core.open_calls(),
            self.core.queued_messages(),
            self.core.buffered_bytes(),
            self.served.len(),
            self.clients.len(),
            self.ch.unconsumed()
        )
    }

    /// Takes a command's connection.
    pub fn add_client(&mut self, sock: std::os::unix::net::UnixStream) {
        let end = if self.clients.len() >= MAX_CONNECTIONS {
            ClientEnd::turn_away(sock, "too many commands are connected")
        } else {
            ClientEnd::new(sock)
        };
        match end {
            Ok(end) => self.clients.push(end),
            Err(e) => self.notes.push(format!("a command's connection: {e}")),
        }
    }

    /// Descriptors to wait on: (fd, read, write).
    pub fn watches(&self) -> Vec<(RawFd, bool, bool)> {
        let served = self.served.values().flat_map(|s| s.watches(&self.core));
        let served = served.map(|(fd, write)| (fd, !write, write));
        let clients = self.clients.iter().map(|c| c.watch(&self.core));
        served.chain(clients).collect()
    }

    /// Does all the work there is now.
    pub fn step(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        let received = self.core.receive(&mut self.ch);
        step.busy |= self.channel_result(received);
        while let Some(event) = self.core.take_event() {
            step.busy = true;
            self.on_event(event);
        }
        step.busy |= self.pump_served(now);
        for client in &mut self.clients {
            step.busy |= client.pump(&mut self.core);
        }
        self.clients.retain(|c| !c.done());
        let sent = self.core.send(&mut self.ch);
        step.busy |= self.channel_result(sent);
        step.soon = self.served.values().filter_map(Served::next_check).min();
        if self.shutdown {
            step.power_off = true;
        } else if let Some(since) = self.draining {
            let drained = self.core.queued_messages() == 0 && self.ch.unconsumed() == 0;
            step.power_off = drained || now.duration_since(since) > DRAIN_TIMEOUT;
            step.soon = Some(Duration::from_millis(20));
        }
        step
    }

    /// Whether the channel moved (a reset counts: the `Hello` goes out at once); a breach
    /// is said once (calls fail until the admin qube restarts and the channel is reset).
    fn channel_result(&mut self, r: Result<bool, ChannelError>) -> bool {
        match r {
            Ok(moved) => moved,
            Err(ChannelError::Reset) => {
                self.broken = false;
                self.notes
                    .push("the admin qube restarted: saying Hello again".into());
                true
            }
            Err(e) => {
                if !std::mem::replace(&mut self.broken, true) {
                    self.notes.push(format!(
                        "the admin qube broke the channel ({e}): calls fail until it restarts"
                    ));
                }
                false
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming {
                call,
                source,
                service,
                argument,
            } => self.serve(call, source, service, argument),
            Event::Accepted { call, target } => {
                match self.clients.iter_mut().find(|c| c.call() == Some(call)) {
                    Some(client) => client.accepted(&target),
                    None => self.core.abort(call),
                }
            }
            Event::Refused { call, reason } => {
                if let Some(client) = self.clients.iter_mut().find(|c| c.call() == Some(call)) {
                    client.refused(refusal_text(reason));
                }
            }
            Event::Shutdown => {
                self.notes
                    .push("the admin qube asks to shut down: powering off".into());
                self.shutdown = true;
            }
        }
    }

    fn serve(&mut self, call: u32, source: String, service: String, argument: String) {
        let name = match argument.as_str() {
            "" => service.clone(),
            a => format!("{service}+{a}"),
        };
        if self.core.take_end(call).is_some() {
            // It failed before it started (a reset while the event waited).
            return;
        }
        if self.draining.is_some() {
            self.notes.push(format!(
                "call {call}: {name} from {source} refused: powering off"
            ));
            return self.core.abort(call);
        }
        let info = CallInfo {
            call,
            source,
            service,
            argument,
            home: self.config.home.clone(),
        };
        let started = match (self.config.lookup)(&info.service) {
            Some(start) => Served::start(&info, start).map_err(|e| e.to_string()),
            None => Err(format!("no service {name} in this qube")),
        };
        match started {
            Ok(served) => {
                self.notes
                    .push(format!("call {call}: {name} from {}", info.source));
                self.served.insert(call, served);
            }
            Err(why) => {
                let why = printable(&why, 200);
                self.notes
                    .push(format!("call {call}: {name} from {}: {why}", info.source));
                self.core
                    .write(call, Stream::Stderr, format!("{why}\n").as_bytes());
                self.core.close(call, Stream::Stdout);
                self.core.close(call, Stream::Stderr);
                self.core.exit(call, NO_SERVICE);
                self.call_over();
            }
        }
    }

    /// A served call is over: a disposable powers off after its first.
    fn call_over(&mut self) {
        if self.config.disposable && self.draining.is_none() {
            self.notes
                .push("a disposable's call is over: powering off".into());
            self.draining = Some(Instant::now());
        }
    }

    fn pump_served(&mut self, now: Instant) -> bool {
        let mut busy = false;
        let calls: Vec<u32> = self.served.keys().copied().collect();
        for call in calls {
            if let Some(End::Failed(why)) = self.core.take_end(call) {
                if let Some(served) = self.served.remove(&call) {
                    served.stop();
                }
                self.notes
                    .push(format!("call {call}: stopped: {}", printable(&why, 200)));
                self.call_over();
                busy = true;
                continue;
            }
            let Some(served) = self.served.get_mut(&call) else {
                continue;
            };
            let (moved, code) = served.pump(&mut self.core, now);
            busy |= moved;
            if let Some(code) = code {
                self.served.remove(&call);
                self.core.exit(call, code);
                self.notes.push(format!("call {call}: exit code {code}"));
                self.call_over();
            }
        }
        busy
    }
}

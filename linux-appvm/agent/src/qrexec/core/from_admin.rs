//! What each message from the admin qube does to the call table (hostile input: see the
//! module's documentation).

use super::out::Out;
use super::types::{End, Event, Role};
use super::{Core, OUTBOX_MESSAGES_MAX, index, new_call};
use crate::log::printable;
use crate::qrexec::names::valid_source;
use bulkhead_abi::qrexec::{
    DATA_MAX, FromAdmin, Io, MAX_CALLS, QREXEC_VERSION, WINDOW, valid_argument, valid_service,
};

impl Core {
    fn ignore(&mut self, why: impl FnOnce() -> String) {
        self.ignored += 1;
        if self.ignored.is_power_of_two() {
            let n = self.ignored;
            self.note(format!(
                "ignored a message from the admin qube ({}; {n} so far)",
                why()
            ));
        }
    }

    /// Handles one message from the admin qube, whatever its bytes.
    pub fn on_message(&mut self, bytes: &[u8]) {
        let msg = match postcard::from_bytes::<FromAdmin<'_>>(bytes) {
            Ok(m) => m,
            Err(_) => {
                let n = bytes.len();
                return self.ignore(|| format!("{n} bytes that do not decode"));
            }
        };
        if !self.greeted && !matches!(msg, FromAdmin::Hello { .. }) {
            return self.ignore(|| "a message before its Hello".into());
        }
        match msg {
            FromAdmin::Hello { version } => self.on_hello(version),
            FromAdmin::Accepted { call, target } => match self.calls.get_mut(&call) {
                Some(c) if c.role == Role::Source && !c.running && c.end.is_none() => {
                    c.running = true;
                    let target = printable(target, 64);
                    self.events.push_back(Event::Accepted { call, target });
                }
                _ => self.ignore(|| format!("Accepted for call {call}, not waiting for it")),
            },
            FromAdmin::Refused { call, reason } => match self.calls.get(&call) {
                Some(c) if c.role == Role::Source && !c.running && c.end.is_none() => {
                    self.calls.remove(&call);
                    self.events.push_back(Event::Refused { call, reason });
                }
                _ => self.ignore(|| format!("Refused for call {call}, not waiting for it")),
            },
            FromAdmin::Incoming {
                call,
                source,
                service,
                argument,
            } => self.on_incoming(call, source, service, argument),
            FromAdmin::Io(io) => self.on_io(io),
            FromAdmin::Shutdown => self.events.push_back(Event::Shutdown),
            FromAdmin::Ask { .. } | FromAdmin::Verdict { .. } => {
                self.ignore(|| "a message for the gui qube".into())
            }
        }
    }

    fn on_hello(&mut self, version: u16) {
        if version != QREXEC_VERSION {
            self.greeted = false;
            return self.note(format!(
                "the admin qube speaks qrexec version {version}, we {QREXEC_VERSION}: \
                 nothing is served until it restarts"
            ));
        }
        if self.greeted {
            // It started over without a reset: the calls it knew are gone (it has our Hello).
            self.fail_all("the admin qube said Hello again");
        }
        self.greeted = true;
    }

    fn on_incoming(&mut self, call: u32, source: &str, service: &str, argument: &str) {
        if self.calls.contains_key(&call) {
            return self.ignore(|| format!("Incoming call {call}: the number is in use"));
        }
        if call < bulkhead_abi::qrexec::INCOMING_BASE {
            return self.ignore(|| format!("Incoming call {call}: a number this qube's calls use"));
        }
        let why = if !valid_service(service) {
            Some("a bad service name")
        } else if !valid_argument(argument) {
            Some("a bad argument")
        } else if !valid_source(source) {
            Some("a bad source name")
        } else if self.calls.len() >= MAX_CALLS {
            Some("too many open calls")
        } else {
            None
        };
        if let Some(why) = why {
            self.note(format!("refused incoming call {call}: {why}"));
            return self.abort_for_peer(call);
        }
        self.calls.insert(call, new_call(Role::Target));
        self.events.push_back(Event::Incoming {
            call,
            source: source.to_string(),
            service: service.to_string(),
            argument: argument.to_string(),
        });
    }

    fn on_io(&mut self, io: Io<'_>) {
        let call = io.call();
        let Some(c) = self.calls.get_mut(&call).filter(|c| c.end.is_none()) else {
            // Expected after we ended a call (its peer's last acks and data cross ours).
            self.ignored += 1;
            return;
        };
        let broken = match io {
            Io::Data { stream, bytes, .. } => {
                if !c.running || !c.role.receives(stream) {
                    Some(format!("data on {stream:?}, which it may not send"))
                } else if bytes.len() > DATA_MAX {
                    Some(format!("{} data bytes in one message", bytes.len()))
                } else {
                    c.inbound[index(stream)]
                        .push(bytes)
                        .err()
                        .map(|e| format!("{stream:?}: {e} ({WINDOW} bytes)"))
                }
            }
            Io::Eof { stream, .. } if c.running && c.role.receives(stream) => {
                c.inbound[index(stream)].end();
                None
            }
            Io::Ack { stream, bytes, .. } if c.running && !c.role.receives(stream) => c.outbound
                [index(stream)]
            .acked(bytes)
            .err()
            .map(|e| format!("{stream:?}: {e}")),
            Io::Exit { code, .. } if c.running && c.role == Role::Source => {
                c.end = Some(End::Exit(code));
                None
            }
            Io::Abort { .. } => {
                c.end = Some(End::Failed("the other end gave up the call".into()));
                c.inbound = Default::default();
                None
            }
            other => Some(format!("{other:?} out of turn")),
        };
        if let Some(why) = broken {
            let why = printable(&why, 120);
            self.note(format!("call {call} aborted: the admin qube sent {why}"));
            if let Some(c) = self.calls.get_mut(&call) {
                c.end = Some(End::Failed(format!("protocol error: {why}")));
                c.inbound = Default::default();
            }
            self.abort_for_peer(call);
        }
    }

    /// Tells the admin qube we give up `call`, which it broke; such aborts are dropped once
    /// [`OUTBOX_MESSAGES_MAX`] messages wait (a peer that writes and never reads).
    fn abort_for_peer(&mut self, call: u32) {
        if self.outbox.len() < OUTBOX_MESSAGES_MAX {
            self.outbox.push_back(Out::Abort { call });
        }
    }
}

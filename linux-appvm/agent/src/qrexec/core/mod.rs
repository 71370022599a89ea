//! The transport-independent heart of the qrexec daemon: the table of open calls, their
//! flow control, and what every message from the admin qube does to them. No I/O: bytes
//! come in through [`Core::on_message`], local ends read and write through the per-call
//! methods, and [`Core::send`] moves the queued messages into any [`Transport`].
//!
//! Everything the admin qube sends is hostile input: a message that does not decode is
//! counted and ignored, one for a call that is not open is ignored, one that breaks a
//! call's rules (a stream in the wrong direction, over the window, data after its end)
//! aborts that call only. Memory is bounded: at most [`MAX_CALLS`] calls, each buffering at
//! most [`WINDOW`](bulkhead_abi::qrexec::WINDOW) bytes per received stream, and at most [`OUTBOX_DATA_MAX`] bytes of our
//! data queued for the ring.

mod channel;
mod from_admin;
mod out;
mod types;

pub use types::{End, Event, Read, Role, StartError};

use super::flow::{Inbound, Outbound};
use super::names::valid_target;
use bulkhead_abi::qrexec::{DATA_MAX, MAX_CALLS, Stream, valid_argument, valid_service};
use out::Out;
use std::collections::{BTreeMap, VecDeque};

/// Bytes of call data queued for the ring at most (beyond it, local ends wait).
pub const OUTBOX_DATA_MAX: usize = 128 * 1024;
/// Messages queued for the ring at most before refusals of the admin qube's calls are
/// dropped (an admin qube that sends calls and never reads cannot grow the queue).
const OUTBOX_MESSAGES_MAX: usize = 1024;
/// The first number of the calls this qube makes; they stay below
/// [`bulkhead_abi::qrexec::INCOMING_BASE`], where the admin qube numbers the calls it brings
/// (`Incoming`) from, so the two never meet on the channel.
pub const FIRST_SOURCE_CALL: u32 = 1;

/// The number after `call` for a call of this qube's: wraps below `INCOMING_BASE`.
fn next_source_call(call: u32) -> u32 {
    let next = call.wrapping_add(1);
    if (FIRST_SOURCE_CALL..bulkhead_abi::qrexec::INCOMING_BASE).contains(&next) {
        next
    } else {
        FIRST_SOURCE_CALL
    }
}
/// Messages taken from the ring per [`Core::receive`].
const RECEIVE_BUDGET: usize = 64;

/// One open call.
#[derive(Debug)]
struct Call {
    role: Role,
    /// A source call runs once `Accepted` (a target call at once).
    running: bool,
    inbound: [Inbound; 3],
    outbound: [Outbound; 3],
    /// How it ended, until its local end takes it.
    end: Option<End>,
}

fn index(stream: Stream) -> usize {
    stream as usize
}

/// The call table and the queue towards the admin qube.
#[derive(Debug, Default)]
pub struct Core {
    calls: BTreeMap<u32, Call>,
    outbox: VecDeque<Out>,
    outbox_data: usize,
    events: VecDeque<Event>,
    notes: Vec<String>,
    next_call: u32,
    /// The admin qube's `Hello` arrived (with our version).
    greeted: bool,
    /// Messages ignored: undecodable, for calls not open, before the `Hello`.
    pub ignored: u64,
}

impl Core {
    /// A core whose `Hello` is queued.
    pub fn new() -> Core {
        let mut core = Core {
            next_call: FIRST_SOURCE_CALL,
            ..Core::default()
        };
        core.outbox.push_back(Out::Hello);
        core
    }

    /// Whether the admin qube greeted us.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// How many calls are open.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether `call` is in the table (open, or ended and not yet taken).
    pub fn is_open(&self, call: u32) -> bool {
        self.calls.contains_key(&call)
    }

    /// Call data buffered in both directions (the fuzz target checks the bound).
    pub fn buffered_bytes(&self) -> usize {
        let inbound: usize = self
            .calls
            .values()
            .flat_map(|c| c.inbound.iter())
            .map(Inbound::buffered)
            .sum();
        inbound + self.outbox_data
    }

    /// Messages waiting for the ring.
    pub fn queued_messages(&self) -> usize {
        self.outbox.len()
    }

    /// The next thing the daemon must act on.
    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Console lines about what happened.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn note(&mut self, text: String) {
        // A hostile admin qube can cause a note per message: keep the first ones only.
        if self.notes.len() < 32 {
            self.notes.push(text);
        }
    }

    /// Starts a call of ours; its number.
    pub fn start(
        &mut self,
        service: &str,
        argument: &str,
        target: &str,
    ) -> Result<u32, StartError> {
        if !valid_service(service) {
            return Err(StartError::Malformed("not a valid service name"));
        }
        if !valid_argument(argument) {
            return Err(StartError::Malformed("not a valid service argument"));
        }
        if !valid_target(target) {
            return Err(StartError::Malformed("not a valid target"));
        }
        if self.calls.len() >= MAX_CALLS {
            return Err(StartError::Busy);
        }
        let mut call = self.next_call;
        while self.calls.contains_key(&call) {
            call = next_source_call(call);
        }
        self.next_call = next_source_call(call);
        self.calls.insert(call, new_call(Role::Source));
        self.outbox.push_back(Out::Call {
            call,
            service: service.to_string(),
            argument: argument.to_string(),
            target: target.to_string(),
        });
        Ok(call)
    }

    fn live(&self, call: u32) -> Option<&Call> {
        self.calls
            .get(&call)
            .filter(|c| c.end.is_none() && c.running)
    }

    /// How many bytes of `stream` may be written to `call` now.
    pub fn room(&self, call: u32, stream: Stream) -> usize {
        match self.live(call) {
            Some(c) if !c.role.receives(stream) => c.outbound[index(stream)]
                .room()
                .min(OUTBOX_DATA_MAX.saturating_sub(self.outbox_data)),
            _ => 0,
        }
    }

    /// Queues up to [`Core::room`] bytes of `bytes` on `stream`; how many it took.
    pub fn write(&mut self, call: u32, stream: Stream, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room(call, stream));
        if let Some(c) = self.calls.get_mut(&call) {
            c.outbound[index(stream)].sent(n);
        }
        for chunk in bytes[..n].chunks(DATA_MAX) {
            self.outbox.push_back(Out::Data {
                call,
                stream,
                bytes: chunk.to_vec(),
            });
        }
        self.outbox_data += n;
        n
    }

    /// Ends our side of `stream` (once).
    pub fn close(&mut self, call: u32, stream: Stream) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.end.is_none()
            && c.running
            && !c.role.receives(stream)
            && c.outbound[index(stream)].end()
        {
            self.outbox.push_back(Out::Eof { call, stream });
        }
    }

    /// Reads received bytes of `stream` into `buf`, acknowledging what was consumed.
    pub fn read(&mut self, call: u32, stream: Stream, buf: &mut [u8]) -> Read {
        let Some(c) = self.calls.get_mut(&call) else {
            return Read::Eof;
        };
        if !c.role.receives(stream) {
            return Read::Eof;
        }
        let s = &mut c.inbound[index(stream)];
        let n = s.read(buf);
        let ack = if c.end.is_none() { s.take_ack() } else { None };
        if let Some(bytes) = ack {
            self.outbox.push_back(Out::Ack {
                call,
                stream,
                bytes,
            });
        }
        match n {
            0 if s.finished() || c.end.is_some() => Read::Eof,
            0 => Read::Empty,
            n => Read::Data(n),
        }
    }

    /// How `call` ended, once everything it received was read; the call is then gone.
    pub fn take_end(&mut self, call: u32) -> Option<End> {
        let c = self.calls.get(&call)?;
        let drained = c.inbound.iter().all(|s| s.buffered() == 0);
        if c.end.is_some() && drained {
            return self.calls.remove(&call).and_then(|c| c.end);
        }
        None
    }

    /// Ends a call we serve with the service's exit code (nothing for a call of ours).
    pub fn exit(&mut self, call: u32, code: i32) {
        if self.calls.get(&call).is_none_or(|c| c.role != Role::Target) {
            return;
        }
        if let Some(c) = self.calls.remove(&call)
            && c.end.is_none()
        {
            self.outbox.push_back(Out::Exit { call, code });
        }
    }

    /// Gives up `call` (the other end is told unless it already ended).
    pub fn abort(&mut self, call: u32) {
        if let Some(c) = self.calls.remove(&call)
            && c.end.is_none()
        {
            self.outbox.push_back(Out::Abort { call });
        }
    }
}

fn new_call(role: Role) -> Call {
    Call {
        role,
        running: role == Role::Target,
        inbound: Default::default(),
        outbound: Default::default(),
        end: None,
    }
}

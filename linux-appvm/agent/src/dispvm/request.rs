//! The requester's side of one disposable's conversation (`bulkhead_abi::proto::Disposable`),
//! over any [`Transport`], so the host tests play the disposable:
//!
//! 1. we send `Hello` and `Run { template, command }` (the caller then notifies the channel,
//!    which starts the disposable: [`Request::request_queued`]);
//! 2. the disposable's `Hello` must carry our protocol version;
//! 3. `Output` chunks are made safe ([`super::text`]) and written out as they come;
//! 4. `Exited { status }` or `Refused(why)` ends the request.
//!
//! Anything else ends it too, with the blame on the disposable: a message that does not
//! decode, one out of turn (output before its `Hello`, a `Run`, a second `Hello`), another
//! protocol version, a broken ring, or a reset (the hypervisor resets the channel when the
//! disposable stops: before `Exited` that means it stopped early).

use super::text::Sanitizer;
use super::text::sanitize;
use crate::channel::{ChannelError, Transport};
use bulkhead_abi::proto::{Disposable, Hello, PROTO_VERSION};
use std::io::Write;

/// Messages taken per [`Request::step`] (the caller's loop comes back at once).
const BATCH: usize = 32;
/// The longest refusal reason shown (characters).
const MAX_REASON: usize = 200;

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The command ran and exited with this status (128 + signal when killed).
    Exited(i32),
    /// The disposable refused the request; why, made printable.
    Refused(String),
    /// The request failed; whose fault and how.
    Failed(Failure),
}

/// What went wrong (the disposable is to blame for all but [`Failure::TooLong`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The channel was reset: the disposable stopped; `answered`: after its `Hello`.
    Stopped { answered: bool },
    /// The disposable broke the ring.
    Broken(ChannelError),
    /// A message that does not decode as `Disposable`.
    Undecodable,
    /// A message out of turn (what it was).
    OutOfTurn(&'static str),
    /// Its `Hello` carried another protocol version.
    Version(u16),
    /// The `Run` message does not fit the channel's slots.
    TooLong { len: usize, max: usize },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Stopped { answered: false } => {
                write!(f, "stopped before it answered (the channel was reset)")
            }
            Failure::Stopped { answered: true } => write!(
                f,
                "stopped before the command ended (the channel was reset); the output may be incomplete"
            ),
            Failure::Broken(e) => write!(f, "broke the channel: {e}"),
            Failure::Undecodable => write!(f, "sent a message that does not decode"),
            Failure::OutOfTurn(what) => write!(f, "sent {what} out of turn"),
            Failure::Version(v) => write!(
                f,
                "speaks protocol version {v}, this qube speaks {PROTO_VERSION}"
            ),
            Failure::TooLong { len, max } => write!(
                f,
                "cannot take the command: the request needs {len} bytes, a message holds at most {max}"
            ),
        }
    }
}

/// A refusal's reason made safe like the output (without its line ends), cut to
/// [`MAX_REASON`] characters.
fn reason(why: &str) -> String {
    let safe = sanitize(why.as_bytes())
        .replace('\n', "\\n")
        .replace('\t', " ");
    match safe.char_indices().nth(MAX_REASON) {
        Some((at, _)) => format!("{}...", &safe[..at]),
        None => safe,
    }
}

/// What a received message was, for the conversation (output already made safe).
enum Got {
    Hello(u16),
    Output,
    Exited(i32),
    Refused(String),
    OutOfTurn(&'static str),
    Undecodable,
}

/// One request over `T`.
pub struct Request<T: Transport> {
    ch: T,
    qube: String,
    template: String,
    command: String,
    /// Messages of ours queued: 0, 1 (`Hello`) or 2 (`Run` too).
    sent: u8,
    /// The disposable's `Hello` arrived.
    answered: bool,
    end: Option<End>,
    text: Sanitizer,
    /// Output bytes received (before sanitizing).
    pub output_bytes: u64,
    /// Writing the output failed (a closed pipe): the rest is dropped, the status still
    /// counts.
    pub output_lost: bool,
}

impl<T: Transport> Request<T> {
    /// A request from `qube` to run `command` in a disposable made from `template`.
    pub fn new(ch: T, qube: &str, template: &str, command: &str) -> Self {
        Request {
            ch,
            qube: qube.to_string(),
            template: template.to_string(),
            command: command.to_string(),
            sent: 0,
            answered: false,
            end: None,
            text: Sanitizer::default(),
            output_bytes: 0,
            output_lost: false,
        }
    }

    /// The transport (the caller waits on it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.ch
    }

    /// `Hello` and `Run` are in the ring: time to notify the disposable.
    pub fn request_queued(&self) -> bool {
        self.sent == 2
    }

    /// The disposable's `Hello` arrived.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// How it ended, once it has.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// Characters of output shown escaped so far.
    pub fn escaped(&self) -> u64 {
        self.text.escaped
    }

    /// News about the channel from the caller's wait (a reset, a breach).
    pub fn channel_error(&mut self, e: ChannelError) {
        if self.end.is_some() {
            return;
        }
        let failure = match e {
            ChannelError::Reset => Failure::Stopped {
                answered: self.answered,
            },
            ChannelError::TooLarge { len, max } => Failure::TooLong { len, max },
            e => Failure::Broken(e),
        };
        self.end = Some(End::Failed(failure));
    }

    /// One round: send what is due, take what arrived, write the output to `out`. True when
    /// anything moved.
    pub fn step(&mut self, out: &mut dyn Write) -> bool {
        let mut moved = self.send();
        let mut shown = Vec::new();
        for _ in 0..BATCH {
            if self.end.is_some() {
                break;
            }
            let (text, bytes) = (&mut self.text, &mut self.output_bytes);
            let got = self.ch.try_recv_with(|m| match postcard::from_bytes(m) {
                Ok(Disposable::Hello(h)) => Got::Hello(h.version),
                Ok(Disposable::Output(b)) => {
                    *bytes += b.len() as u64;
                    text.push(b, &mut shown);
                    Got::Output
                }
                Ok(Disposable::Exited { status }) => Got::Exited(status),
                Ok(Disposable::Refused(why)) => Got::Refused(reason(why)),
                Ok(Disposable::Run { .. }) => Got::OutOfTurn("a Run request"),
                Err(_) => Got::Undecodable,
            });
            match got {
                Ok(None) => break,
                Ok(Some(g)) => {
                    moved = true;
                    self.take(g);
                }
                Err(e) => {
                    moved = true;
                    self.channel_error(e);
                }
            }
        }
        if self.end.is_some() {
            self.text.finish(&mut shown);
        }
        if !shown.is_empty() && !self.output_lost {
            self.output_lost = out.write_all(&shown).and_then(|()| out.flush()).is_err();
        }
        moved
    }

    fn take(&mut self, got: Got) {
        let end = match (self.answered, got) {
            (false, Got::Hello(v)) if v == PROTO_VERSION => {
                self.answered = true;
                return;
            }
            (false, Got::Hello(v)) => End::Failed(Failure::Version(v)),
            (true, Got::Hello(_)) => End::Failed(Failure::OutOfTurn("a second Hello")),
            (false, Got::Output | Got::Exited(_)) => {
                End::Failed(Failure::OutOfTurn("output before its Hello"))
            }
            (true, Got::Output) => return,
            (true, Got::Exited(status)) => End::Exited(status),
            // A refusal may come before the Hello (a disposable that cannot serve at all).
            (_, Got::Refused(why)) => End::Refused(why),
            (_, Got::OutOfTurn(what)) => End::Failed(Failure::OutOfTurn(what)),
            (_, Got::Undecodable) => End::Failed(Failure::Undecodable),
        };
        self.end = Some(end);
    }

    /// Queues `Hello`, then `Run`, as the ring takes them.
    fn send(&mut self) -> bool {
        let mut moved = false;
        while self.sent < 2 && self.end.is_none() {
            let r = if self.sent == 0 {
                let mut name = heapless::String::new();
                for c in self.qube.chars() {
                    if name.push(c).is_err() {
                        break;
                    }
                }
                self.ch.try_send(&Disposable::Hello(Hello {
                    version: PROTO_VERSION,
                    qube: name,
                }))
            } else {
                self.ch.try_send(&Disposable::Run {
                    template: &self.template,
                    command: &self.command,
                })
            };
            match r {
                Ok(true) => {
                    self.sent += 1;
                    moved = true;
                }
                Ok(false) => break,
                Err(e) => self.channel_error(e),
            }
        }
        moved
    }
}

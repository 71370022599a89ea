//! A disposable's one request. The agent is side B of a channel named `<disposable>.req<k>` (or `<...>.disp`); the
//! hypervisor started this qube because the requester (side A) notified it, so the request
//! is already in the ring. The conversation (`bulkhead_abi::proto::Disposable`):
//!
//! 1. both sides send `Hello`; the requester's must carry our protocol version;
//! 2. the requester sends `Run { template, command }`; a template other than ours
//!    (`bulkhead.template=`) or a command that cannot run is answered with `Refused`;
//! 3. `/bin/sh -c <command>` runs with stdout and stderr in one pipe; what it writes goes
//!    out as `Output` chunks of at most [`MAX_OUTPUT_CHUNK`] bytes as it arrives, then
//!    `Exited { status }` (128 + signal when killed);
//! 4. the agent waits until the requester took every message (or [`DRAIN_TIMEOUT`]) and
//!    the qube powers off ([`DisposableService::finished`] says so to the event loop).
//!
//! Anything else from the requester (garbage, a message out of turn, a broken channel) ends
//! the request with `Refused` where a message can still be sent. A reset (the requester
//! restarted) before `Run` starts the handshake again; after `Run` the asker is gone, so the
//! command is stopped and the qube powers off.

use crate::channel::{ChannelError, Transport};
use crate::log::printable;
use bulkhead_abi::proto::{Disposable, Hello, MAX_OUTPUT_CHUNK, PROTO_VERSION};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

mod shell;
pub use shell::{Job, Runner, ShellRunner, status_number};

/// How long the agent waits for the requester to take its last messages.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long output is still collected after the shell exited (a background process may
/// hold the pipe open).
pub const EOF_GRACE: Duration = Duration::from_millis(500);
/// Output chunks queued before the command's pipe is no longer read (back-pressure).
const OUTBOX_MAX: usize = 8;

/// A message to send, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Hello,
    Output(Vec<u8>),
    Exited(i32),
    Refused(String),
}

/// Where the request stands.
enum State {
    /// Waiting for the requester's `Hello`.
    Greeting,
    /// Waiting for `Run`.
    AwaitRun,
    /// The command runs.
    Running {
        job: Box<dyn Job>,
        /// When the shell was seen to exit, and its status.
        exited: Option<(Instant, i32)>,
        eof: bool,
    },
    /// The last message is queued: wait for the requester to take everything.
    Draining { since: Option<Instant> },
    /// Done: power off.
    Finished,
}

/// The disposable request service over one channel.
pub struct DisposableService<T: Transport, R: Runner> {
    ch: T,
    name: String,
    qube: String,
    template: Option<String>,
    runner: R,
    state: State,
    outbox: VecDeque<Out>,
    notes: Vec<String>,
    /// The command and its status, once it ran.
    pub ran: Option<(String, i32)>,
}

impl<T: Transport, R: Runner> DisposableService<T, R> {
    /// Serves the channel `name`, as `qube` made from `template`; sends our `Hello`.
    pub fn new(ch: T, name: &str, qube: &str, template: Option<&str>, runner: R) -> Self {
        let mut s = DisposableService {
            ch,
            name: name.to_string(),
            qube: qube.to_string(),
            template: template.map(str::to_string),
            runner,
            state: State::Greeting,
            outbox: VecDeque::from([Out::Hello]),
            notes: Vec::new(),
            ran: None,
        };
        s.flush();
        s
    }

    /// The transport (the event loop waits on it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.ch
    }

    /// Notable events since the last call, one console line each.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// True once the request is over and the qube may power off.
    pub fn finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The command's output pipe, to poll while it runs.
    pub fn output_fd(&self) -> Option<RawFd> {
        match &self.state {
            State::Running {
                job, eof: false, ..
            } => Some(job.output_fd()),
            _ => None,
        }
    }

    /// How soon [`DisposableService::step`] wants to run again without any event (`None`:
    /// only an event or the pipe can change anything).
    pub fn next_step_in(&self) -> Option<Duration> {
        match &self.state {
            _ if !self.outbox.is_empty() => Some(Duration::from_millis(2)),
            State::Running { .. } => Some(Duration::from_millis(20)),
            State::Draining { .. } => Some(Duration::from_millis(20)),
            _ => None,
        }
    }

    fn push_hello(&mut self) {
        self.outbox.retain(|m| *m != Out::Hello);
        self.outbox.push_front(Out::Hello);
    }

    /// Handles news about the channel (also from the event loop's wait).
    pub fn channel_error(&mut self, e: ChannelError) {
        match (&mut self.state, e) {
            (State::Greeting | State::AwaitRun, ChannelError::Reset) => {
                self.notes.push(format!(
                    "{}: channel reset before the request: Hello again",
                    self.name
                ));
                self.state = State::Greeting;
                self.outbox.clear();
                self.push_hello();
            }
            (State::Finished, _) => {}
            (_, e) => {
                self.notes
                    .push(format!("{}: {e}: the request is over", self.name));
                if let State::Running { job, .. } = &mut self.state {
                    job.kill();
                }
                self.outbox.clear();
                self.state = State::Finished;
            }
        }
    }

    /// Ends the request with `Refused(why)`.
    fn refuse(&mut self, why: String) {
        self.notes.push(format!(
            "{}: refused the request: {}",
            self.name,
            printable(&why, 120)
        ));
        self.outbox.push_back(Out::Refused(why));
        self.state = State::Draining { since: None };
    }

    /// Sends what the outbox holds, in order, while the ring has room.
    fn flush(&mut self) -> bool {
        let mut moved = false;
        while let Some(m) = self.outbox.front() {
            let sent = match m {
                Out::Hello => self.ch.try_send(&Disposable::Hello(Hello {
                    version: PROTO_VERSION,
                    qube: heapless::String::try_from(self.qube.as_str()).unwrap_or_default(),
                })),
                Out::Output(b) => self.ch.try_send(&Disposable::Output(b)),
                Out::Exited(status) => self.ch.try_send(&Disposable::Exited { status: *status }),
                Out::Refused(why) => self.ch.try_send(&Disposable::Refused(why)),
            };
            match sent {
                Ok(true) => {
                    self.outbox.pop_front();
                    moved = true;
                }
                Ok(false) => break,
                Err(e) => {
                    self.channel_error(e);
                    break;
                }
            }
        }
        moved
    }

    /// One round: receive, run, send. True when anything moved.
    pub fn step(&mut self, now: Instant) -> bool {
        let mut moved = self.flush();
        moved |= self.receive();
        moved |= self.collect_output(now);
        moved |= self.flush();
        if let State::Draining { since } = &mut self.state
            && self.outbox.is_empty()
        {
            let start = *since.get_or_insert(now);
            if self.ch.unconsumed() == 0 || now.duration_since(start) >= DRAIN_TIMEOUT {
                self.state = State::Finished;
                moved = true;
            }
        }
        moved
    }

    fn receive(&mut self) -> bool {
        let mut moved = false;
        while matches!(self.state, State::Greeting | State::AwaitRun) {
            let got = self
                .ch
                .try_recv_with(|bytes| match postcard::from_bytes(bytes) {
                    Ok(Disposable::Hello(h)) => Ok(Got::Hello(h.version)),
                    Ok(Disposable::Run { template, command }) => Ok(Got::Run {
                        template: template.to_string(),
                        command: command.to_string(),
                    }),
                    Ok(_) => Ok(Got::OutOfTurn),
                    Err(_) => Err(()),
                });
            let msg = match got {
                Ok(None) => break,
                Ok(Some(m)) => m,
                Err(e) => {
                    self.channel_error(e);
                    continue;
                }
            };
            moved = true;
            match (&self.state, msg) {
                (_, Err(())) => self.refuse("a message that does not decode".into()),
                (State::Greeting, Ok(Got::Hello(v))) if v == PROTO_VERSION => {
                    self.state = State::AwaitRun
                }
                (State::Greeting, Ok(Got::Hello(v))) => self.refuse(format!(
                    "protocol version {v}, this agent speaks {PROTO_VERSION}"
                )),
                // The requester started over without a reset: greet it again.
                (State::AwaitRun, Ok(Got::Hello(_))) => self.push_hello(),
                (State::AwaitRun, Ok(Got::Run { template, command })) => {
                    self.run(&template, command)
                }
                (_, Ok(_)) => self.refuse("a message out of turn".into()),
            }
        }
        // After Run the requester has nothing to say: whatever it sends is left unread.
        moved
    }

    fn run(&mut self, template: &str, command: String) {
        let ours = self.template.as_deref().unwrap_or("");
        if self.template.is_none() {
            return self.refuse("this qube has no template (no bulkhead.template=)".into());
        }
        if template != ours {
            let asked = printable(template, 40);
            return self.refuse(format!("this disposable is made from {ours}, not {asked}"));
        }
        if command.contains('\0') {
            return self.refuse("the command contains a NUL byte".into());
        }
        match self.runner.start(&command) {
            Ok(job) => {
                self.notes.push(format!(
                    "{}: running {}",
                    self.name,
                    printable(&command, 120)
                ));
                self.ran = Some((command, 0));
                self.state = State::Running {
                    job,
                    exited: None,
                    eof: false,
                };
            }
            Err(e) => self.refuse(format!("cannot run /bin/sh: {e}")),
        }
    }

    fn collect_output(&mut self, now: Instant) -> bool {
        let State::Running { job, exited, eof } = &mut self.state else {
            return false;
        };
        let mut moved = false;
        let mut buf = [0u8; MAX_OUTPUT_CHUNK];
        while !*eof && self.outbox.len() < OUTBOX_MAX {
            match job.read_output(&mut buf) {
                Ok(Some(0)) => *eof = true,
                Ok(Some(n)) => {
                    self.outbox.push_back(Out::Output(buf[..n].to_vec()));
                    moved = true;
                }
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => *eof = true,
            }
        }
        if exited.is_none() {
            match job.try_status() {
                Ok(Some(status)) => *exited = Some((now, status)),
                Ok(None) => {}
                Err(_) => *exited = Some((now, -1)),
            }
        }
        // Done once the shell exited and its output ended (or the grace period passed).
        let Some((at, status)) = *exited else {
            return moved;
        };
        if !*eof && now.duration_since(at) < EOF_GRACE {
            return moved;
        }
        if self.outbox.len() >= OUTBOX_MAX && !*eof {
            return moved;
        }
        job.kill();
        self.outbox.push_back(Out::Exited(status));
        if let Some((command, s)) = &mut self.ran {
            *s = status;
            self.notes.push(format!(
                "disposable ran {} -> status {status}",
                printable(command, 200)
            ));
        }
        self.state = State::Draining { since: None };
        true
    }
}

/// A decoded request message, owned.
enum Got {
    Hello(u16),
    Run { template: String, command: String },
    OutOfTurn,
}

/// Whether a channel name is a disposable request channel as the system compiler names them:
/// `<disposable>.req<k>` (or the older `<...>.disp`).
pub fn is_request_channel(name: &str) -> bool {
    name.ends_with(".disp") || requested_disposable(name).is_some()
}

/// The disposable a request channel named `<disposable>.req<k>` leads to (the system
/// compiler's names, `xtask/sysdesc/src/disposables.rs`); `None` for any other name.
pub fn requested_disposable(name: &str) -> Option<&str> {
    let (qube, k) = name.rsplit_once(".req")?;
    let numbered = !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit());
    (!qube.is_empty() && numbered).then_some(qube)
}

#[cfg(test)]
mod tests;

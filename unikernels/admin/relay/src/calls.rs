//! The table of open calls and what each is waiting for.

use crate::{HOST, Host, Relay, START_TIMEOUT_MS};
use bulkhead_abi::qrexec::{
    ARGUMENT_MAX, FromAdmin, INCOMING_BASE, Io, MAX_CALLS, Refusal, SERVICE_MAX, Stream,
};
use bulkhead_policy::{MAX_CANDIDATES, Resolved};
use heapless::{String, Vec};

/// Most calls open at once in the whole system.
pub const MAX_OPEN: usize = 64;

/// One call the relay knows.
#[derive(Clone, Debug)]
pub struct Open {
    /// The admin qube's number for it: the target's call number, and the ask's.
    pub id: u32,
    /// The caller.
    pub source: u8,
    /// The caller's number for it.
    pub source_call: u32,
    /// Where it runs, once decided (`None`: the admin qube itself, or not decided yet).
    pub target: Option<u8>,
    /// The target is a disposable started for this call (destroyed when it ends).
    pub disposable: bool,
    /// The service.
    pub service: String<SERVICE_MAX>,
    /// Its argument.
    pub argument: String<ARGUMENT_MAX>,
    /// What it waits for.
    pub state: State,
}

/// What a call waits for.
#[derive(Clone, Debug)]
pub enum State {
    /// The user's answer (the gui qube shows the prompt). For a gui query, `query` is the
    /// gui qube's number for it: the answer becomes a verdict.
    Asking {
        /// The choices offered, in the prompt's order.
        candidates: Vec<Resolved, MAX_CANDIDATES>,
        /// A gui query's number.
        query: Option<u32>,
        /// The prompt still has to be sent (the gui qube's ring was full).
        unsent: bool,
    },
    /// Its target was started (at `since`, ms) and has not said hello yet.
    Starting {
        /// When.
        since: u64,
    },
    /// Bytes flow.
    Running,
    /// The admin qube served it itself; the answer waits for room in the source's ring.
    Reply(crate::services::Reply),
    /// It is over; the source is still owed this refusal (or, with `None`, an abort).
    Closing {
        /// What the source is told.
        to_source: Option<Refusal>,
    },
}

impl Open {
    /// Where the source's bytes go: the target qube.
    pub fn source_target(&self) -> u8 {
        self.target.unwrap_or(HOST)
    }

    /// What the source is told when the other side's channel resets: a refusal before the
    /// call ran, an abort after.
    pub fn refusal_on_reset(&self) -> Option<Refusal> {
        match self.state {
            State::Running => None,
            State::Asking { .. } => Some(Refusal::UserRefused),
            _ => Some(Refusal::Unavailable),
        }
    }

    /// `service+argument source -> target`, for log lines.
    pub fn describe<'a>(&'a self, relay: &'a Relay<'_>) -> Describe<'a> {
        Describe {
            call: self,
            source: relay.name(self.source),
            target: self.target.map_or("?", |t| relay.name(t)),
        }
    }
}

/// A call as a log line names it.
pub struct Describe<'a> {
    call: &'a Open,
    source: &'a str,
    target: &'a str,
}

impl core::fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let c = self.call;
        let plus = if c.argument.is_empty() { "" } else { "+" };
        write!(
            f,
            "{}{plus}{} {} -> {}",
            c.service, c.argument, self.source, self.target
        )
    }
}

/// Whether `io` may flow that way: the source writes stdin and acknowledges stdout and
/// stderr; the target writes stdout and stderr, acknowledges stdin, and alone exits.
pub fn direction_ok(io: &Io<'_>, from_source: bool) -> bool {
    let writes = |s: Stream| (s == Stream::Stdin) == from_source;
    match *io {
        Io::Data { stream, .. } | Io::Eof { stream, .. } => writes(stream),
        Io::Ack { stream, .. } => !writes(stream),
        Io::Exit { .. } => !from_source,
        Io::Abort { .. } => true,
    }
}

/// The open calls.
pub struct Calls {
    open: Vec<Open, MAX_OPEN>,
    next: u32,
}

impl Calls {
    /// None open.
    pub const fn new() -> Self {
        Calls {
            open: Vec::new(),
            next: INCOMING_BASE,
        }
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// A fresh number for a call or question: at least [`INCOMING_BASE`], none in use.
    pub fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.next;
            self.next = self.next.wrapping_add(1).max(INCOMING_BASE);
            if !self.open.iter().any(|c| c.id == id) {
                return id;
            }
        }
    }

    /// Opens a call; `Err` when the system or either end has too many.
    pub fn push(&mut self, c: Open) -> Result<usize, Refusal> {
        let of = |q: u8| {
            self.open
                .iter()
                .filter(|o| o.source == q || o.target == Some(q))
                .count()
        };
        if of(c.source) >= MAX_CALLS || c.target.is_some_and(|t| of(t) >= MAX_CALLS) {
            return Err(Refusal::Busy);
        }
        self.open.push(c).map_err(|_| Refusal::Busy)?;
        Ok(self.open.len() - 1)
    }

    /// Closes call `i`.
    pub fn remove(&mut self, i: usize) -> Open {
        self.open.remove(i)
    }

    /// Whether `source` already has a call numbered `call`.
    pub fn source_uses(&self, source: u8, call: u32) -> bool {
        self.open
            .iter()
            .any(|c| c.source == source && c.source_call == call)
    }

    /// The running call `call` as qube `from` numbers it, and whether `from` is its source.
    pub fn find_running(&self, from: u8, call: u32) -> Option<(usize, bool)> {
        self.open.iter().enumerate().find_map(|(i, c)| {
            if !matches!(c.state, State::Running) {
                return None;
            }
            if c.source == from && c.source_call == call {
                Some((i, true))
            } else if c.source_target() == from && c.id == call {
                Some((i, false))
            } else {
                None
            }
        })
    }

    /// The call asking question `ask`.
    pub fn find_ask(&self, ask: u32) -> Option<usize> {
        self.open
            .iter()
            .position(|c| c.id == ask && matches!(c.state, State::Asking { .. }))
    }
}

impl core::ops::Index<usize> for Calls {
    type Output = Open;
    fn index(&self, i: usize) -> &Open {
        &self.open[i]
    }
}

impl core::ops::IndexMut<usize> for Calls {
    fn index_mut(&mut self, i: usize) -> &mut Open {
        &mut self.open[i]
    }
}

impl Relay<'_> {
    /// Moves call `i` on if it can; true when it is over.
    pub(crate) fn advance(&mut self, host: &mut impl Host, i: usize, now: u64) -> bool {
        match self.calls[i].state {
            State::Closing { to_source } => {
                let c = &self.calls[i];
                let msg = match to_source {
                    Some(reason) => FromAdmin::Refused {
                        call: c.source_call,
                        reason,
                    },
                    None => FromAdmin::Io(Io::Abort {
                        call: c.source_call,
                    }),
                };
                host.send(c.source, &msg).is_ok()
            }
            State::Starting { since } => {
                let Some(t) = self.calls[i].target else {
                    return true;
                };
                if self.is_up(t) {
                    self.deliver(host, i);
                } else if now.saturating_sub(since) > START_TIMEOUT_MS {
                    host.log(format_args!(
                        "{}: {} did not start in time; refused",
                        self.calls[i].describe(self),
                        self.name(t)
                    ));
                    self.calls[i].state = State::Closing {
                        to_source: Some(Refusal::Unavailable),
                    };
                    return self.advance(host, i, now);
                }
                false
            }
            State::Asking { unsent: true, .. } => {
                self.send_ask(host, i);
                false
            }
            State::Reply(_) => self.send_reply(host, i),
            State::Asking { .. } | State::Running => false,
        }
    }
}

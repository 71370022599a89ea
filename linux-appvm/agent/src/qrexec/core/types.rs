//! What the core tells the daemon, and what the daemon asks of it.

use bulkhead_abi::qrexec::{Refusal, Stream};

/// Which end of a call this qube is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We made it (a command's call): we send Stdin, receive Stdout and Stderr.
    Source,
    /// We serve it: we receive Stdin, send Stdout and Stderr.
    Target,
}

impl Role {
    pub(super) fn receives(self, stream: Stream) -> bool {
        (stream == Stream::Stdin) == (self == Role::Target)
    }
}

/// What the daemon must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A call to serve (its service, argument and source are well-formed).
    Incoming {
        call: u32,
        source: String,
        service: String,
        argument: String,
    },
    /// Our call runs in `target`.
    Accepted { call: u32, target: String },
    /// Our call was refused (it is closed).
    Refused { call: u32, reason: Refusal },
    /// The admin qube asks this qube to power off.
    Shutdown,
}

/// How a call ended, for its local end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The target's exit code.
    Exit(i32),
    /// It broke off (said why).
    Failed(String),
}

/// What [`Core::read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes.
    Data(usize),
    /// Nothing now.
    Empty,
    /// The stream ended (and everything was read).
    Eof,
}

/// Why a call could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// A service, argument or target the protocol cannot carry.
    Malformed(&'static str),
    /// [`MAX_CALLS`] are open.
    Busy,
}

//! The qrexec protocol: services between qubes under policy, as in Qubes OS.
//!
//! Each qube that takes part (a Linux qube's agent, the gui qube) has one channel to the
//! admin qube, `<qube>.qrexec` (side A the qube, side B the admin qube). A call goes
//! source -> admin -> target and back: the admin qube asks the policy, then relays the
//! call's messages between the two channels, renumbering calls so each end names only its
//! own (`docs/qrexec.md`).
//!
//! A call's life, as its *source* sees it: [`ToAdmin::Call`]; then [`FromAdmin::Accepted`]
//! (with the target the policy chose) or [`FromAdmin::Refused`]; then [`Io`] both ways until
//! [`Io::Exit`] arrives from the target (or [`Io::Abort`] from either end). The *target*
//! sees [`FromAdmin::Incoming`] and answers with [`Io`]; it ends the call with
//! [`Io::Exit`]. Data is flow-controlled per call and direction: at most [`WINDOW`] bytes
//! may be sent and not yet acknowledged with [`Io::Ack`], so every receiver buffers at most
//! that much per call and a full ring never blocks another call for long.
//!
//! Everything is hostile on both sides of the admin qube: it checks every name, service and
//! argument against the limits below and the policy, and forwards only calls it knows on
//! the two channels of that call. The first message each way is a hello with
//! [`QREXEC_VERSION`]. Adding a variant at the end of an enum is compatible; anything else
//! bumps the version.

use serde::{Deserialize, Serialize};

pub mod host_console;

/// Version of the qrexec protocol.
pub const QREXEC_VERSION: u16 = 1;
/// Bytes per slot of a qrexec channel.
pub const QREXEC_SLOT_SIZE: u32 = 2048;
/// Most data bytes in one [`Io::Data`] (it fits a slot with its header).
pub const DATA_MAX: usize = 1900;
/// Longest service name (Qubes: letters, digits, `.`, `_`, `-`).
pub const SERVICE_MAX: usize = 64;
/// Longest service argument (the part after `+`).
pub const ARGUMENT_MAX: usize = 64;
/// Longest target as a caller writes it: a qube's name, `@default`, `@adminvm`,
/// `@dispvm` or `@dispvm:NAME`.
pub const TARGET_MAX: usize = 32;
/// Bytes a sender may have in flight (sent, not acknowledged) per call and direction.
pub const WINDOW: u32 = 64 * 1024;
/// The first number the admin qube gives the calls it delivers ([`FromAdmin::Incoming`]);
/// a source numbers its own calls below it, so a qube's two kinds of calls never share a
/// number.
pub const INCOMING_BASE: u32 = 1 << 31;
/// Most calls one qube may have open at once (as source and target together).
pub const MAX_CALLS: usize = 16;
/// Most targets an `ask` prompt offers.
pub const MAX_CANDIDATES: usize = 16;

/// One of a call's byte streams, named from the target's side (as a process's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Source to target.
    Stdin,
    /// Target to source.
    Stdout,
    /// Target to source, diagnostics.
    Stderr,
}

/// What flows in a call once it is accepted, either way; `call` is the receiver's number
/// for it (the admin qube renumbers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Io<'a> {
    /// Bytes on a stream (at most [`DATA_MAX`]).
    Data {
        /// The call.
        call: u32,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// The stream ends (the writer closed it).
    Eof {
        /// The call.
        call: u32,
        /// Which stream.
        stream: Stream,
    },
    /// The receiver consumed `bytes` more of `stream`: the sender may send that much more.
    Ack {
        /// The call.
        call: u32,
        /// Which stream.
        stream: Stream,
        /// How many.
        bytes: u32,
    },
    /// The service finished with this exit code (from the target; ends the call).
    Exit {
        /// The call.
        call: u32,
        /// Its exit code (as a process's; negative for a signal or a broken call).
        code: i32,
    },
    /// Either end gives up the call (the other end sees it; ends the call).
    Abort {
        /// The call.
        call: u32,
    },
}

impl Io<'_> {
    /// The call it belongs to.
    pub fn call(&self) -> u32 {
        match *self {
            Io::Data { call, .. }
            | Io::Eof { call, .. }
            | Io::Ack { call, .. }
            | Io::Exit { call, .. }
            | Io::Abort { call } => call,
        }
    }

    /// The same message for another call number.
    pub fn renumbered(&self, call: u32) -> Self {
        let mut m = self.clone();
        match &mut m {
            Io::Data { call: c, .. }
            | Io::Eof { call: c, .. }
            | Io::Ack { call: c, .. }
            | Io::Exit { call: c, .. }
            | Io::Abort { call: c } => *c = call,
        }
        m
    }
}

/// From a qube to the admin qube.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAdmin<'a> {
    /// The first message: the qube serves calls from now on.
    Hello {
        /// [`QREXEC_VERSION`].
        version: u16,
    },
    /// Starts call `call` (the source's number: below [`INCOMING_BASE`], unique among its
    /// open calls).
    Call {
        /// The source's number for it.
        call: u32,
        /// The service, e.g. `qubes.Filecopy`.
        #[serde(borrow)]
        service: &'a str,
        /// Its argument (empty for none).
        argument: &'a str,
        /// The target as asked: a qube, `@default`, `@dispvm`, `@dispvm:NAME`, `@adminvm`.
        target: &'a str,
    },
    /// Bytes of a call.
    Io(#[serde(borrow)] Io<'a>),
    /// The gui qube only: may `source` do `service` to `target`? (a clipboard paste).
    Query {
        /// The gui qube's number for it.
        query: u32,
        /// The service, e.g. `qubes.ClipboardPaste`.
        service: &'a str,
        /// Who acts.
        source: &'a str,
        /// On whom.
        target: &'a str,
    },
    /// The gui qube only: the user's answer to [`FromAdmin::Ask`]: an index into its
    /// candidates, or `None` (refused).
    Answer {
        /// The admin qube's number for the question.
        ask: u32,
        /// The chosen target.
        choice: Option<u8>,
    },
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The policy denies it (or no entry matches).
    Denied,
    /// The user refused it at the prompt (or there is no gui qube to ask).
    UserRefused,
    /// The call is malformed: a bad service, argument or target, or a number in use.
    Malformed,
    /// The target cannot run it now (it failed to start, or has no qrexec channel).
    Unavailable,
    /// Too many open calls.
    Busy,
}

/// From the admin qube to a qube.
#[allow(
    clippy::large_enum_variant,
    reason = "decoded one at a time on the stack"
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAdmin<'a> {
    /// The first message: the admin qube serves this qube's calls.
    Hello {
        /// [`QREXEC_VERSION`].
        version: u16,
    },
    /// The source's call `call` runs in `target`.
    Accepted {
        /// The source's number.
        call: u32,
        /// Where it runs (a disposable's name for `@dispvm`).
        #[serde(borrow)]
        target: &'a str,
    },
    /// The source's call `call` was refused.
    Refused {
        /// The source's number.
        call: u32,
        /// Why.
        reason: Refusal,
    },
    /// A call for this qube to serve, numbered `call` (the admin qube's number, at least
    /// [`INCOMING_BASE`]).
    Incoming {
        /// Its number.
        call: u32,
        /// Who calls.
        source: &'a str,
        /// The service.
        service: &'a str,
        /// Its argument.
        argument: &'a str,
    },
    /// Bytes of a call.
    Io(#[serde(borrow)] Io<'a>),
    /// To the gui qube: ask the user whether `source` may call `service+argument`, and in
    /// which of `candidates` (`default` preselected).
    Ask {
        /// The admin qube's number for the question.
        ask: u32,
        /// Who calls.
        source: &'a str,
        /// The service.
        service: &'a str,
        /// Its argument.
        argument: &'a str,
        /// Targets the user may pick.
        #[serde(borrow)]
        candidates: heapless::Vec<&'a str, MAX_CANDIDATES>,
        /// The preselected one.
        default: Option<u8>,
    },
    /// To the gui qube: the policy's answer to [`ToAdmin::Query`].
    Verdict {
        /// The gui qube's number.
        query: u32,
        /// Allowed.
        allowed: bool,
    },
    /// Shut down cleanly now (`qvm-shutdown`): the qube powers off.
    Shutdown,
}

/// Whether `s` is a well-formed service name: 1 to [`SERVICE_MAX`] bytes of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.`.
pub fn valid_service(s: &str) -> bool {
    valid_word(s, SERVICE_MAX) && !s.starts_with('.')
}

/// Whether `s` is a well-formed argument: empty, or at most [`ARGUMENT_MAX`] bytes of ASCII
/// letters, digits, `.`, `_`, `-` and `+` (Qubes' rule).
pub fn valid_argument(s: &str) -> bool {
    s.is_empty() || (s.len() <= ARGUMENT_MAX && s.bytes().all(|b| word_byte(b) || b == b'+'))
}

fn valid_word(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(word_byte)
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

#[cfg(test)]
mod tests;

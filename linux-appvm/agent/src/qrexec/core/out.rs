//! Messages for the admin qube, owned while they wait for room in the ring.

use bulkhead_abi::qrexec::{Io, QREXEC_VERSION, Stream, ToAdmin};

/// A message waiting for room in the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Out {
    Hello,
    Call {
        call: u32,
        service: String,
        argument: String,
        target: String,
    },
    Data {
        call: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
    Eof {
        call: u32,
        stream: Stream,
    },
    Ack {
        call: u32,
        stream: Stream,
        bytes: u32,
    },
    Exit {
        call: u32,
        code: i32,
    },
    Abort {
        call: u32,
    },
}

impl Out {
    pub(super) fn message(&self) -> ToAdmin<'_> {
        match self {
            Out::Hello => ToAdmin::Hello {
                version: QREXEC_VERSION,
            },
            Out::Call {
                call,
                service,
                argument,
                target,
            } => ToAdmin::Call {
                call: *call,
                service,
                argument,
                target,
            },
            Out::Data {
                call,
                stream,
                bytes,
            } => ToAdmin::Io(Io::Data {
                call: *call,
                stream: *stream,
                bytes,
            }),
            Out::Eof { call, stream } => ToAdmin::Io(Io::Eof {
                call: *call,
                stream: *stream,
            }),
            Out::Ack {
                call,
                stream,
                bytes,
            } => ToAdmin::Io(Io::Ack {
                call: *call,
                stream: *stream,
                bytes: *bytes,
            }),
            Out::Exit { call, code } => ToAdmin::Io(Io::Exit {
                call: *call,
                code: *code,
            }),
            Out::Abort { call } => ToAdmin::Io(Io::Abort { call: *call }),
        }
    }
}

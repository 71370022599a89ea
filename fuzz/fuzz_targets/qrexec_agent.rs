//! Fuzz target: a hostile admin qube against the agent's qrexec core
//! (`bulkhead_agent::qrexec::core::Core`). The input is a sequence of operations: raw
//! message bytes from the admin qube, well-formed messages built from a few bytes (calls
//! near the numbers in use, any stream and length), and what the daemon does in between
//! (start a call, write, read, close, exit, abort, take the ends, a channel reset, the ring
//! drained or not).
//!
//! Checks: no panic; at most `MAX_CALLS` calls; at most a window buffered per received
//! stream plus the bounded outbox (`OUTBOX_DATA_MAX`); every call the core announces
//! (`Incoming`) has a well-formed service, argument and source.
#![no_main]

use bulkhead_abi::qrexec::{
    FromAdmin, Io, MAX_CALLS, QREXEC_SLOT_SIZE, QREXEC_VERSION, Refusal, Stream, WINDOW,
    valid_argument, valid_service,
};
use bulkhead_agent::channel::Transport;
use bulkhead_agent::channel::ring::pair;
use bulkhead_agent::qrexec::core::{Core, Event, FIRST_SOURCE_CALL, OUTBOX_DATA_MAX};
use bulkhead_agent::qrexec::names::valid_source;
use libfuzzer_sys::fuzz_target;

fn stream(b: u8) -> Stream {
    match b % 3 {
        0 => Stream::Stdin,
        1 => Stream::Stdout,
        _ => Stream::Stderr,
    }
}

/// A call number near those in use: ours, the admin qube's, or any.
fn number(known: &[u32], b: u8, raw: u32) -> u32 {
    match b % 4 {
        0 => known
            .get(b as usize / 4 % known.len().max(1))
            .copied()
            .unwrap_or(raw),
        1 => FIRST_SOURCE_CALL + u32::from(b % 8),
        2 => bulkhead_abi::qrexec::INCOMING_BASE + u32::from(b % 8),
        _ => raw,
    }
}

/// A well-formed message of kind `k` from the fields in `f`.
fn message(k: u8, f: &[u8], known: &[u32]) -> Vec<u8> {
    let byte = |i: usize| f.get(i).copied().unwrap_or(0);
    let raw = u32::from_le_bytes([byte(2), byte(3), byte(4), byte(5)]);
    let call = number(known, byte(1), raw);
    let len = usize::from(byte(6)) * 16;
    let text = std::str::from_utf8(f.get(7..).unwrap_or(&[])).unwrap_or("x");
    let data = vec![byte(0); len];
    let m = match k % 10 {
        0 => FromAdmin::Hello {
            version: QREXEC_VERSION + u16::from(byte(0) == 255),
        },
        1 => FromAdmin::Accepted { call, target: text },
        2 => FromAdmin::Refused {
            call,
            reason: Refusal::Busy,
        },
        3 => FromAdmin::Incoming {
            call,
            source: if byte(0) % 2 == 0 { "work" } else { text },
            service: if byte(0) % 3 == 0 {
                text
            } else {
                "qubes.VMShell"
            },
            argument: if byte(0) % 5 == 0 { text } else { "" },
        },
        4 => FromAdmin::Io(Io::Data {
            call,
            stream: stream(byte(0)),
            bytes: &data,
        }),
        5 => FromAdmin::Io(Io::Eof {
            call,
            stream: stream(byte(0)),
        }),
        6 => FromAdmin::Io(Io::Ack {
            call,
            stream: stream(byte(0)),
            bytes: raw % (2 * WINDOW),
        }),
        7 => FromAdmin::Io(Io::Exit {
            call,
            code: raw as i32,
        }),
        8 => FromAdmin::Io(Io::Abort { call }),
        _ => FromAdmin::Shutdown,
    };
    postcard::to_allocvec(&m).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Some((mut ch, mut admin)) = pair(16384, QREXEC_SLOT_SIZE) else {
        return;
    };
    let mut core = Core::new();
    let mut known: Vec<u32> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut at = 0;
    while at + 2 <= data.len() {
        let (op, arg) = (data[at], data[at + 1]);
        at += 2;
        let take = usize::from(arg % 32).min(data.len() - at);
        let field = &data[at..at + take];
        let pick = number(&known, arg, u32::from(arg));
        match op % 12 {
            0 => {
                core.on_message(field);
                at += take;
            }
            1..=4 => {
                core.on_message(&message(op / 12, field, &known));
                at += take;
            }
            5 => {
                if let Ok(call) = core.start("qubes.Filecopy", "", "@default") {
                    known.push(call);
                }
            }
            6 => {
                let n = usize::from(arg) * 64;
                let wrote = core.write(pick, stream(op / 12), &vec![7; n]);
                assert!(wrote <= WINDOW as usize);
            }
            7 => {
                let _ = core.read(pick, stream(op / 12), &mut buf);
            }
            8 => core.close(pick, stream(op / 12)),
            9 => match arg % 3 {
                0 => core.exit(pick, 0),
                1 => core.abort(pick),
                _ => core.on_reset("fuzz"),
            },
            10 => {
                let _ = core.send(&mut ch);
            }
            _ => while let Ok(Some(())) = admin.try_recv_with(|_| ()) {},
        }
        while let Some(event) = core.take_event() {
            if let Event::Incoming {
                call,
                source,
                service,
                argument,
            } = event
            {
                assert!(valid_service(&service) && valid_argument(&argument));
                assert!(valid_source(&source));
                known.push(call);
            }
        }
        for &call in &known {
            let _ = core.take_end(call);
        }
        known.retain(|&c| core.is_open(c));
        let _ = core.take_notes();
        assert!(core.open_calls() <= MAX_CALLS);
        assert!(core.buffered_bytes() <= MAX_CALLS * 2 * WINDOW as usize + OUTBOX_DATA_MAX);
    }
});

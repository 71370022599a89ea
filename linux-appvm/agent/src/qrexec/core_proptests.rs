//! The core under a hostile admin qube: any messages, between anything the daemon does.

use super::core::{Core, Event, FIRST_SOURCE_CALL, OUTBOX_DATA_MAX};
use crate::channel::ring::pair;
use bulkhead_abi::qrexec::{
    FromAdmin, Io, MAX_CALLS, QREXEC_SLOT_SIZE, QREXEC_VERSION, Stream, WINDOW,
};
use proptest::prelude::*;

fn bytes(m: &FromAdmin<'_>) -> Vec<u8> {
    postcard::to_allocvec(m).unwrap()
}

fn io(m: Io<'_>) -> Vec<u8> {
    bytes(&FromAdmin::Io(m))
}

/// One thing a hostile admin qube, or the daemon, does.
#[derive(Clone, Debug)]
enum Op {
    Admin(Vec<u8>),
    Start,
    Write(u8, Stream, u16),
    Read(u8, Stream),
    Close(u8, Stream),
    Exit(u8),
    Abort(u8),
    Reset,
}

fn stream() -> impl Strategy<Value = Stream> {
    prop_oneof![
        Just(Stream::Stdin),
        Just(Stream::Stdout),
        Just(Stream::Stderr)
    ]
}

/// Messages an admin qube could send, most of them well-formed, about few calls.
fn admin_message() -> impl Strategy<Value = Vec<u8>> {
    let call = prop_oneof![
        0u32..4,
        FIRST_SOURCE_CALL..FIRST_SOURCE_CALL + 4,
        any::<u32>()
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(bytes(&FromAdmin::Hello {
            version: QREXEC_VERSION
        })),
        (call.clone(), "[a-z.@]{0,8}").prop_map(|(call, target)| bytes(&FromAdmin::Accepted {
            call,
            target: &target
        })),
        (call.clone(), "[a-z.]{0,6}", "[a-zA-Z.]{0,20}").prop_map(|(call, source, service)| bytes(
            &FromAdmin::Incoming {
                call,
                source: &source,
                service: &service,
                argument: ""
            }
        )),
        (call.clone(), stream(), 0usize..2500).prop_map(|(call, stream, n)| io(Io::Data {
            call,
            stream,
            bytes: &vec![1; n]
        })),
        (call.clone(), stream()).prop_map(|(call, stream)| io(Io::Eof { call, stream })),
        (call.clone(), stream(), any::<u32>()).prop_map(|(call, stream, bytes)| io(Io::Ack {
            call,
            stream,
            bytes
        })),
        (call.clone(), any::<i32>()).prop_map(|(call, code)| io(Io::Exit { call, code })),
        call.prop_map(|call| io(Io::Abort { call })),
        Just(bytes(&FromAdmin::Shutdown)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => admin_message().prop_map(Op::Admin),
        1 => Just(Op::Start),
        2 => (any::<u8>(), stream(), any::<u16>()).prop_map(|(c, s, n)| Op::Write(c, s, n)),
        2 => (any::<u8>(), stream()).prop_map(|(c, s)| Op::Read(c, s)),
        1 => (any::<u8>(), stream()).prop_map(|(c, s)| Op::Close(c, s)),
        1 => any::<u8>().prop_map(Op::Exit),
        1 => any::<u8>().prop_map(Op::Abort),
        1 => Just(Op::Reset),
    ]
}

/// The calls the daemon knows about, by index.
fn pick(calls: &[u32], i: u8) -> u32 {
    calls
        .get(i as usize % calls.len().max(1))
        .copied()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the admin qube sends, between whatever the daemon does, the core never
    /// panics, keeps at most MAX_CALLS calls, and buffers at most a window per received
    /// stream plus its bounded outbox; a ring that is never drained stops nothing.
    #[test]
    fn a_hostile_admin_qube_never_panics_the_core(ops in prop::collection::vec(op(), 0..200)) {
        let (mut a, _b) = pair(16384, QREXEC_SLOT_SIZE).unwrap();
        let mut core = Core::new();
        let mut calls: Vec<u32> = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for op in ops {
            match op {
                Op::Admin(m) => core.on_message(&m),
                Op::Start => {
                    if let Ok(c) = core.start("qubes.VMShell", "", "work") {
                        calls.push(c);
                    }
                }
                Op::Write(c, s, n) => {
                    let n = core.write(pick(&calls, c), s, &buf[..n as usize]);
                    prop_assert!(n <= WINDOW as usize);
                }
                Op::Read(c, s) => { core.read(pick(&calls, c), s, &mut buf); }
                Op::Close(c, s) => core.close(pick(&calls, c), s),
                Op::Exit(c) => core.exit(pick(&calls, c), 0),
                Op::Abort(c) => core.abort(pick(&calls, c)),
                Op::Reset => core.on_reset("test"),
            }
            while let Some(e) = core.take_event() {
                if let Event::Incoming { call, .. } = e {
                    calls.push(call);
                }
            }
            for &c in &calls {
                core.take_end(c);
            }
            calls.retain(|c| core.is_open(*c));
            let _ = core.send(&mut a);
            core.take_notes();
            prop_assert!(core.open_calls() <= MAX_CALLS);
            let bound = MAX_CALLS * 2 * WINDOW as usize + OUTBOX_DATA_MAX;
            prop_assert!(core.buffered_bytes() <= bound);
        }
    }
}

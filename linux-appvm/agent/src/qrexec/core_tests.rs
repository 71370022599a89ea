//! The core against an admin qube played by hand: the call's life both ways, flow control,
//! and everything a hostile admin qube can send (unit and property tests).

use super::core::{Core, End, Event, FIRST_SOURCE_CALL, Read};
use crate::channel::ring::{RingChannel, pair, reset_region};
use crate::channel::{CountingBell, Transport};
use bulkhead_abi::qrexec::{
    DATA_MAX, FromAdmin, Io, MAX_CALLS, QREXEC_SLOT_SIZE, QREXEC_VERSION, Refusal, Stream, ToAdmin,
    WINDOW,
};

/// The admin qube numbers the calls it brings from here.
const IN: u32 = bulkhead_abi::qrexec::INCOMING_BASE;

type Chan = RingChannel<CountingBell>;

fn bytes(m: &FromAdmin<'_>) -> Vec<u8> {
    postcard::to_allocvec(m).unwrap()
}

fn io(m: Io<'_>) -> Vec<u8> {
    bytes(&FromAdmin::Io(m))
}

/// A core greeted by the admin qube, and the admin's end of a roomy channel.
fn greeted() -> (Core, Chan, Chan) {
    let (a, b) = pair(1 << 20, QREXEC_SLOT_SIZE).unwrap();
    let mut core = Core::new();
    core.on_message(&bytes(&FromAdmin::Hello {
        version: QREXEC_VERSION,
    }));
    assert!(core.greeted());
    (core, a, b)
}

/// What the core sent, as text (`Debug` of each `ToAdmin`).
fn sent(core: &mut Core, a: &mut Chan, b: &mut Chan) -> Vec<String> {
    core.send(a).unwrap();
    let mut out = Vec::new();
    while let Some(m) = b
        .try_recv_with(|m| format!("{:?}", postcard::from_bytes::<ToAdmin<'_>>(m).unwrap()))
        .unwrap()
    {
        out.push(m);
    }
    out
}

#[test]
fn a_call_of_ours_from_start_to_exit() {
    let (mut core, mut a, mut b) = greeted();
    let call = core.start("qubes.VMShell", "", "work").unwrap();
    assert_eq!(call, FIRST_SOURCE_CALL);
    assert_eq!(core.room(call, Stream::Stdin), 0, "no data before Accepted");
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(out.len(), 2);
    assert!(out[0].starts_with("Hello") && out[1].contains("qubes.VMShell"));
    core.on_message(&bytes(&FromAdmin::Accepted {
        call,
        target: "work",
    }));
    let accepted = Event::Accepted {
        call,
        target: "work".into(),
    };
    assert_eq!(core.take_event(), Some(accepted));
    // Our stdin: a window's worth, then nothing until acknowledged.
    let data = vec![5u8; WINDOW as usize + 10];
    assert_eq!(core.room(call, Stream::Stdout), 0, "we do not send stdout");
    assert_eq!(core.write(call, Stream::Stdin, &data), WINDOW as usize);
    assert_eq!(core.room(call, Stream::Stdin), 0);
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(out.len(), (WINDOW as usize).div_ceil(DATA_MAX));
    core.on_message(&io(Io::Ack {
        call,
        stream: Stream::Stdin,
        bytes: 1000,
    }));
    assert_eq!(core.room(call, Stream::Stdin), 1000);
    core.close(call, Stream::Stdin);
    core.close(call, Stream::Stdin);
    assert_eq!(sent(&mut core, &mut a, &mut b).len(), 1, "one Eof");
    // Output, then the exit: the end waits until the output was read.
    let stdout = Io::Data {
        call,
        stream: Stream::Stdout,
        bytes: b"hello\n",
    };
    core.on_message(&io(stdout));
    core.on_message(&io(Io::Exit { call, code: 3 }));
    assert_eq!(core.take_end(call), None);
    let mut buf = [0u8; 64];
    assert_eq!(core.read(call, Stream::Stdout, &mut buf), Read::Data(6));
    assert_eq!(&buf[..6], b"hello\n");
    assert_eq!(core.read(call, Stream::Stdout, &mut buf), Read::Eof);
    assert_eq!(core.take_end(call), Some(End::Exit(3)));
    assert!(!core.is_open(call));
    // Late messages for it are ignored.
    core.on_message(&io(Io::Ack {
        call,
        stream: Stream::Stdin,
        bytes: 5,
    }));
    assert_eq!(core.open_calls(), 0);
}

#[test]
fn a_served_call_acknowledges_what_was_read() {
    let (mut core, mut a, mut b) = greeted();
    let incoming = FromAdmin::Incoming {
        call: IN + 7,
        source: "work",
        service: "qubes.Filecopy",
        argument: "",
    };
    core.on_message(&bytes(&incoming));
    assert!(matches!(
        core.take_event(),
        Some(Event::Incoming { call, .. }) if call == IN + 7
    ));
    for _ in 0..20 {
        core.on_message(&io(Io::Data {
            call: IN + 7,
            stream: Stream::Stdin,
            bytes: &[1; 1000],
        }));
    }
    let mut buf = vec![0; 10_000];
    assert_eq!(
        core.read(IN + 7, Stream::Stdin, &mut buf),
        Read::Data(10_000)
    );
    assert_eq!(
        sent(&mut core, &mut a, &mut b).len(),
        1,
        "only the Hello: 10 000 < a quarter"
    );
    assert_eq!(
        core.read(IN + 7, Stream::Stdin, &mut buf),
        Read::Data(10_000)
    );
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(
        out,
        [format!(
            "Io(Ack {{ call: {}, stream: Stdin, bytes: 20000 }})",
            IN + 7
        )]
    );
    assert_eq!(core.read(IN + 7, Stream::Stdin, &mut buf), Read::Empty);
    // We answer on stdout and exit.
    assert_eq!(core.write(IN + 7, Stream::Stdout, b"ok"), 2);
    core.close(IN + 7, Stream::Stdout);
    core.exit(IN + 7, 0);
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(out.len(), 3);
    assert!(out[2].contains(&format!("Exit {{ call: {}, code: 0 }}", IN + 7)));
    assert!(!core.is_open(IN + 7));
}

#[test]
fn refusals_and_bad_incoming_calls() {
    let (mut core, mut a, mut b) = greeted();
    let call = core.start("qubes.Filecopy", "", "@default").unwrap();
    core.on_message(&bytes(&FromAdmin::Refused {
        call,
        reason: Refusal::Denied,
    }));
    let refused = Event::Refused {
        call,
        reason: Refusal::Denied,
    };
    assert_eq!(core.take_event(), Some(refused));
    assert!(!core.is_open(call));
    sent(&mut core, &mut a, &mut b);
    let bad = [
        ("../x", "qubes.VMShell", ""),
        ("work", "no/such", ""),
        ("work", "a", "b c"),
    ];
    for (i, (source, service, argument)) in bad.into_iter().enumerate() {
        let m = FromAdmin::Incoming {
            call: IN + i as u32,
            source,
            service,
            argument,
        };
        core.on_message(&bytes(&m));
    }
    assert_eq!(core.take_event(), None);
    assert_eq!(sent(&mut core, &mut a, &mut b).len(), 3, "three Aborts");
    // A full table refuses; a number in use is ignored.
    for call in IN..=IN + MAX_CALLS as u32 {
        let m = FromAdmin::Incoming {
            call,
            source: "work",
            service: "qubes.VMShell",
            argument: "",
        };
        core.on_message(&bytes(&m));
    }
    assert_eq!(core.open_calls(), MAX_CALLS);
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(
        out,
        [format!("Io(Abort {{ call: {} }})", IN + MAX_CALLS as u32)]
    );
    assert_eq!(
        core.start("qubes.VMShell", "", "work").unwrap_err(),
        super::core::StartError::Busy
    );
}

#[test]
fn a_rule_broken_aborts_that_call_only() {
    let (mut core, mut a, mut b) = greeted();
    for call in [IN + 1, IN + 2, IN + 3, IN + 4] {
        let m = FromAdmin::Incoming {
            call,
            source: "work",
            service: "qubes.VMShell",
            argument: "",
        };
        core.on_message(&bytes(&m));
    }
    let chunk = [0u8; DATA_MAX];
    for _ in 0..=(WINDOW as usize / DATA_MAX) {
        core.on_message(&io(Io::Data {
            call: IN + 1,
            stream: Stream::Stdin,
            bytes: &chunk,
        }));
    }
    core.on_message(&io(Io::Data {
        call: IN + 2,
        stream: Stream::Stdout,
        bytes: b"wrong way",
    }));
    core.on_message(&io(Io::Ack {
        call: IN + 3,
        stream: Stream::Stdout,
        bytes: 1,
    }));
    core.on_message(&io(Io::Exit {
        call: IN + 4,
        code: 0,
    }));
    core.on_message(&[0xff; 9]);
    core.on_message(&[]);
    let notes = core.take_notes().join("\n");
    assert!(notes.contains("sent more than the window"), "{notes}");
    for call in [IN + 1, IN + 2, IN + 3, IN + 4] {
        assert!(
            matches!(core.take_end(call), Some(End::Failed(_))),
            "call {call}"
        );
    }
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(out.len(), 5, "the Hello and four aborts: {out:?}");
    assert!(core.ignored >= 2);
}

#[test]
fn a_reset_fails_open_calls_and_greets_again() {
    let (mut core, mut a, mut b) = greeted();
    let ours = core.start("qubes.VMShell", "", "work").unwrap();
    let m = FromAdmin::Incoming {
        call: IN + 1,
        source: "work",
        service: "qubes.VMShell",
        argument: "",
    };
    core.on_message(&bytes(&m));
    core.on_message(&bytes(&FromAdmin::Accepted {
        call: ours,
        target: "work",
    }));
    while core.take_event().is_some() {}
    sent(&mut core, &mut a, &mut b);
    reset_region(a.region());
    assert!(core.receive(&mut a).is_err());
    for call in [ours, IN + 1] {
        match core.take_end(call) {
            Some(End::Failed(why)) => assert!(why.contains("restarted"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(!core.greeted());
    let _ = b.try_recv_with(|_| ());
    let out = sent(&mut core, &mut a, &mut b);
    assert_eq!(out, ["Hello { version: 1 }"]);
    // Before the admin's Hello, nothing counts.
    core.on_message(&bytes(&m));
    assert_eq!(core.take_event(), None);
}

//! `dispvm` against a disposable played by the other end of a heap channel: the agent's own
//! disposable service (a fake runner and the real `/bin/sh`), and a hostile one sending
//! garbage, messages out of turn, escape sequences, floods, scribbles and resets.

use super::request::{End, Failure, Request};
use super::text::{Sanitizer, sanitize};
use super::*;
use crate::channel::ring::{RingChannel, pair, reset_region};
use crate::channel::{CountingBell, Transport};
use crate::services::disposable::{DisposableService, ShellRunner};
use bulkhead_abi::bounded::BoundedString;
use bulkhead_abi::guest_pci::InfoCap;
use bulkhead_abi::proto::{DISPOSABLE_SLOT_SIZE, Disposable, Hello, PROTO_VERSION};
use proptest::prelude::*;
use std::time::Instant;

type Chan = RingChannel<CountingBell>;
/// What a hostile disposable does to its end of the channel.
type Misdeed = Box<dyn Fn(&mut Chan)>;

/// A request channel as the system compiler sizes them (32 slots of 2 KiB).
fn channel() -> (Chan, Chan) {
    pair(32 * 2048 + 4096, DISPOSABLE_SLOT_SIZE).unwrap()
}

fn request(a: Chan, command: &str) -> Request<Chan> {
    Request::new(a, "work", "debian", command)
}

fn hello(v: u16) -> Disposable<'static> {
    Disposable::Hello(Hello {
        version: v,
        qube: heapless::String::try_from("disp").unwrap(),
    })
}

/// Runs `req` against `b` driven by `script`, which sees what the requester sent.
fn against(
    req: &mut Request<Chan>,
    b: &mut Chan,
    mut script: impl FnMut(&mut Chan, usize, &[String]),
) -> (End, String) {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for round in 0..20_000 {
        req.step(&mut out);
        if let Some(end) = req.end() {
            return (end.clone(), String::from_utf8(out).expect("UTF-8 output"));
        }
        while let Ok(Some(m)) =
            b.try_recv_with(|m| format!("{:?}", postcard::from_bytes::<Disposable>(m)))
        {
            seen.push(m);
        }
        script(b, round, &seen);
    }
    panic!("the request did not end: {}", String::from_utf8_lossy(&out));
}

#[test]
fn runs_a_command_in_the_agents_disposable_service() {
    let (a, b) = channel();
    let mut req = request(a, "echo hello-from-disp; printf '\\033[31mred\\n'; exit 3");
    let mut svc = DisposableService::new(
        b,
        "disp.req0",
        "disp",
        Some("debian"),
        ShellRunner::default(),
    );
    let mut out = Vec::new();
    let start = Instant::now();
    while req.end().is_none() {
        req.step(&mut out);
        svc.step(Instant::now());
        assert!(start.elapsed() < Duration::from_secs(20), "no end");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(req.end(), Some(&End::Exited(3)));
    assert!(req.request_queued() && req.answered());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "hello-from-disp\n\\x1b[31mred\n");
    assert_eq!(req.escaped(), 1);
    assert_eq!(svc.ran, Some((req_command(), 3)));
    // The service drains once we published what we took, then powers off.
    req.transport_mut().prepare_wait().unwrap();
    req.transport_mut().finish_wait();
    for _ in 0..100 {
        svc.step(Instant::now());
    }
    assert!(svc.finished());
}

fn req_command() -> String {
    "echo hello-from-disp; printf '\\033[31mred\\n'; exit 3".into()
}

#[test]
fn a_template_the_disposable_is_not_made_from_is_refused() {
    let (a, b) = channel();
    let mut req = Request::new(a, "work", "fedora", "true");
    let mut svc = DisposableService::new(
        b,
        "disp.req0",
        "disp",
        Some("debian"),
        ShellRunner::default(),
    );
    let mut out = Vec::new();
    for _ in 0..100 {
        req.step(&mut out);
        svc.step(Instant::now());
        if req.end().is_some() {
            break;
        }
    }
    assert_eq!(
        req.end(),
        Some(&End::Refused(
            "this disposable is made from debian, not fedora".into()
        ))
    );
    assert_eq!(super::exit_status(req.end().unwrap(), "disp"), EXIT_REFUSED);
}

#[test]
fn statuses_map_to_exit_codes() {
    assert_eq!(exit_status(&End::Exited(0), "d"), 0);
    assert_eq!(exit_status(&End::Exited(137), "d"), 137);
    assert_eq!(exit_status(&End::Exited(-1), "d"), EXIT_FAILED);
    assert_eq!(exit_status(&End::Exited(256), "d"), EXIT_FAILED);
    let stopped = End::Failed(Failure::Stopped { answered: true });
    assert_eq!(exit_status(&stopped, "d"), EXIT_FAILED);
}

/// The disposable greets and streams `chunks`, then exits with `status`.
fn well_behaved(chunks: Vec<Vec<u8>>, status: i32) -> impl FnMut(&mut Chan, usize, &[String]) {
    let mut next = 0;
    let mut greeted = false;
    move |b, _, seen| {
        if seen.len() < 2 {
            return;
        }
        if !greeted {
            greeted = b.try_send(&hello(PROTO_VERSION)).unwrap();
        }
        while next < chunks.len() {
            if !b.try_send(&Disposable::Output(&chunks[next])).unwrap() {
                return;
            }
            next += 1;
        }
        if next == chunks.len() && b.try_send(&Disposable::Exited { status }).unwrap() {
            next += 1;
        }
    }
}

#[test]
fn sends_hello_then_run_and_streams_output_made_safe() {
    let (a, mut b) = channel();
    let mut req = request(a, "ls");
    let chunks = vec![
        b"plain line\n".to_vec(),
        b"\x1b]0;owned\x07title\r\n".to_vec(),
        // A multi-byte character cut between chunks stays one character.
        vec![b'a', 0xc3],
        vec![0xa9, b'\n'],
        "\u{202e}evil\u{9b}2J\tok\n".as_bytes().to_vec(),
        vec![0xff, 0xfe, b'\n'],
    ];
    let mut first = None;
    let (end, out) = against(&mut req, &mut b, |b, r, seen| {
        if first.is_none() && seen.len() >= 2 {
            first = Some(seen.to_vec());
        }
        well_behaved(chunks.clone(), 0)(b, r, seen)
    });
    let first = first.unwrap();
    assert!(
        first[0].contains("Hello") && first[0].contains("work"),
        "{first:?}"
    );
    assert!(first[1].contains("Run { template: \"debian\", command: \"ls\" }"));
    assert_eq!(end, End::Exited(0));
    assert_eq!(
        out,
        "plain line\n\\x1b]0;owned\\x07title\\x0d\naé\n\\u{202e}evil\\u{9b}2J\tok\n\\xff\\xfe\n"
    );
    assert_eq!(req.transport_mut().doorbell().rung, 0);
}

#[test]
fn a_flood_of_output_arrives_whole_in_bounded_steps() {
    let (a, mut b) = channel();
    let mut req = request(a, "yes");
    let chunk: Vec<u8> = (0..1900u32)
        .map(|i| b"abcdefgh\n"[(i % 9) as usize])
        .collect();
    let total = 3000;
    let mut sent = 0;
    let mut out = Vec::new();
    let mut greeted = false;
    for _ in 0..100_000 {
        let before = out.len();
        req.step(&mut out);
        // At most a batch of messages per step, whatever the disposable queues.
        assert!(out.len() - before <= 32 * 1900);
        if req.end().is_some() {
            break;
        }
        if !greeted {
            greeted = b.try_send(&hello(PROTO_VERSION)).unwrap();
        }
        while sent < total && b.try_send(&Disposable::Output(&chunk)).unwrap() {
            sent += 1;
        }
        if sent == total {
            let _ = b.try_send(&Disposable::Exited { status: 0 });
        }
    }
    assert_eq!(req.end(), Some(&End::Exited(0)));
    assert_eq!(out.len(), 1900 * total);
    assert_eq!(req.output_bytes, 1900 * total as u64);
}

/// A disposable that greets and, once the requester took its `Hello`, does `then` once.
fn hostile(then: impl Fn(&mut Chan)) -> impl FnMut(&mut Chan, usize, &[String]) {
    let mut greeted_in = None;
    move |b, round, seen| match greeted_in {
        None if seen.len() >= 2 => {
            assert!(b.try_send(&hello(PROTO_VERSION)).unwrap());
            greeted_in = Some(round);
        }
        Some(r) if r + 1 == round => then(b),
        _ => {}
    }
}

#[test]
fn a_hostile_disposable_is_named_for_what_it_did() {
    let cases: Vec<(Misdeed, End)> = vec![
        (
            Box::new(|b: &mut Chan| {
                b.try_send_bytes(&[0xff; 40]).unwrap();
            }),
            End::Failed(Failure::Undecodable),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&hello(PROTO_VERSION)).unwrap();
            }),
            End::Failed(Failure::OutOfTurn("a second Hello")),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Run {
                    template: "x",
                    command: "rm -rf /",
                })
                .unwrap();
            }),
            End::Failed(Failure::OutOfTurn("a Run request")),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Refused("no\x1b[2J\r\nway\u{202e}"))
                    .unwrap();
            }),
            End::Refused("no\\x1b[2J\\x0d\\nway\\u{202e}".into()),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Output(b"partial\n")).unwrap();
                reset_region(b.region());
            }),
            End::Failed(Failure::Stopped { answered: true }),
        ),
    ];
    for (then, want) in cases {
        let (a, mut b) = channel();
        let mut req = request(a, "true");
        let (end, _) = against(&mut req, &mut b, hostile(|b: &mut Chan| then(b)));
        assert_eq!(end, want);
    }
}

#[test]
fn before_its_hello_the_disposable_may_only_greet_or_refuse() {
    let first: Vec<(Misdeed, End)> = vec![
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Output(b"x")).unwrap();
            }),
            End::Failed(Failure::OutOfTurn("output before its Hello")),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Exited { status: 0 }).unwrap();
            }),
            End::Failed(Failure::OutOfTurn("output before its Hello")),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&hello(PROTO_VERSION + 1)).unwrap();
            }),
            End::Failed(Failure::Version(PROTO_VERSION + 1)),
        ),
        (
            Box::new(|b: &mut Chan| {
                b.try_send(&Disposable::Refused("busy")).unwrap();
            }),
            End::Refused("busy".into()),
        ),
        // Early hang-up: the disposable stopped before it said anything.
        (
            Box::new(|b: &mut Chan| reset_region(b.region())),
            End::Failed(Failure::Stopped { answered: false }),
        ),
    ];
    for (then, want) in first {
        let (a, mut b) = channel();
        let mut req = request(a, "true");
        let mut done = false;
        let (end, _) = against(&mut req, &mut b, |b, _, seen| {
            if !done && seen.len() >= 2 {
                done = true;
                then(b);
            }
        });
        assert_eq!(end, want);
        assert!(!req.answered() || matches!(want, End::Refused(_)));
    }
}

#[test]
fn a_command_too_long_for_a_slot_is_said_so() {
    let (a, _b) = channel();
    let mut req = request(a, &"x".repeat(4000));
    let mut out = Vec::new();
    req.step(&mut out);
    match req.end() {
        Some(End::Failed(Failure::TooLong { len, max })) => assert!(len > max),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sanitizer_passes_text_and_escapes_controls() {
    assert_eq!(sanitize(b"hello\tworld\n"), "hello\tworld\n");
    assert_eq!(sanitize("naïve – ok\n".as_bytes()), "naïve – ok\n");
    assert_eq!(sanitize(b"\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
    assert_eq!(sanitize(b"a\rb\x08\x07\x7f"), "a\\x0db\\x08\\x07\\x7f");
    assert_eq!(sanitize("\u{9b}31m".as_bytes()), "\\u{9b}31m");
    assert_eq!(
        sanitize("x\u{202e}y\u{2066}".as_bytes()),
        "x\\u{202e}y\\u{2066}"
    );
    // Not UTF-8: a lone continuation byte, an overlong form, a cut sequence at the end.
    assert_eq!(
        sanitize(b"\x80 \xc0\xaf \xe2\x82"),
        "\\x80 \\xc0\\xaf \\xe2\\x82"
    );
    let mut s = Sanitizer::default();
    let mut out = Vec::new();
    s.push(b"\xe2", &mut out);
    s.push(b"\x82", &mut out);
    assert!(out.is_empty());
    s.push(b"\xac!", &mut out);
    assert_eq!(out, "€!".as_bytes());
}

/// Whether `text` could drive a terminal: any control but newline and tab, or a bidi
/// override.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

proptest! {
    #[test]
    fn sanitized_output_is_safe_and_independent_of_the_chunking(
        bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(0x1b), Just(b'\n'), Just(0xc2), Just(0x9b), Just(0xe2)],
            0..400,
        ),
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let whole = sanitize(&bytes);
        prop_assert!(!whole.chars().any(unsafe_char), "{whole:?}");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort();
        let (mut s, mut out, mut at) = (Sanitizer::default(), Vec::new(), 0);
        for c in cuts {
            s.push(&bytes[at..c], &mut out);
            at = c;
        }
        s.push(&bytes[at..], &mut out);
        s.finish(&mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), whole);
    }

    /// Any messages and garbage from the disposable, and scribbles over the region: the
    /// request never panics, what it writes is safe, and it ends once the channel resets.
    #[test]
    fn a_hostile_disposable_never_panics_the_requester(
        actions in proptest::collection::vec(
            prop_oneof![
                any::<u16>().prop_map(Act::Hello),
                proptest::collection::vec(any::<u8>(), 0..1900).prop_map(Act::Output),
                any::<i32>().prop_map(Act::Exited),
                "(.|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{202e}]){0,300}".prop_map(Act::Refused),
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(Act::Garbage),
                (0usize..66_000, any::<u32>()).prop_map(|(at, v)| Act::Scribble(at, v)),
            ],
            0..40,
        ),
    ) {
        let (a, mut b) = channel();
        let mut req = request(a, "true");
        let mut out = Vec::new();
        for act in &actions {
            req.step(&mut out);
            let _ = match act {
                Act::Hello(v) => b.try_send(&hello(*v)),
                Act::Output(o) => b.try_send(&Disposable::Output(o)),
                Act::Exited(s) => b.try_send(&Disposable::Exited { status: *s }),
                Act::Refused(r) => b.try_send(&Disposable::Refused(r)),
                Act::Garbage(g) => b.try_send_bytes(g),
                Act::Scribble(at, v) => {
                    let at = (*at).min(b.region().len() - 4);
                    b.region().write_bytes(at, &v.to_le_bytes());
                    Ok(true)
                }
            };
        }
        for _ in 0..40 {
            req.step(&mut out);
        }
        reset_region(b.region());
        for _ in 0..40 {
            req.step(&mut out);
        }
        prop_assert!(req.end().is_some());
        let text = String::from_utf8(out).unwrap();
        prop_assert!(!text.chars().any(unsafe_char));
        if let Some(End::Refused(why)) = req.end() {
            prop_assert!(!why.chars().any(unsafe_char));
        }
    }
}

#[derive(Clone, Debug)]
enum Act {
    Hello(u16),
    Output(Vec<u8>),
    Exited(i32),
    Refused(String),
    Garbage(Vec<u8>),
    Scribble(usize, u32),
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn arguments() {
    let a = Args::parse(&strings(&["echo", "hi", "there"])).unwrap();
    assert_eq!(a.command, "echo hi there");
    assert_eq!((a.disposable, a.template), (None, None));
    let a = Args::parse(&strings(&[
        "--disposable",
        "d2",
        "-t",
        "deb",
        "--",
        "-x",
        "y",
    ]))
    .unwrap();
    assert_eq!(a.disposable.as_deref(), Some("d2"));
    assert_eq!(a.template.as_deref(), Some("deb"));
    assert_eq!(a.command, "-x y");
    assert_eq!(
        Args::parse(&strings(&["uname -n"])).unwrap().command,
        "uname -n"
    );
    for bad in [
        &[][..],
        &["--disposable"],
        &["--bogus", "x"],
        &["--", " "],
        &["-d", "", "x"],
    ] {
        assert!(Args::parse(&strings(bad)).is_err(), "{bad:?}");
    }
    assert_eq!(Args::parse(&strings(&["--help"])), Err(String::new()));
}

fn found(name: &str, side: u8) -> Found {
    Found {
        address: "0000:00:01.0".into(),
        dir: "/nonexistent".into(),
        info: InfoCap {
            side,
            size: 69632,
            bulk_size: 0,
            name: BoundedString::try_from(name).unwrap(),
        },
    }
}

#[test]
fn the_request_channel_is_side_a_and_named_for_a_disposable() {
    let devices = vec![
        found("work.net", 1),
        found("disp.req0", 1),
        found("disp.req1", 0),
    ];
    assert_eq!(
        choose(&devices, None).unwrap().info.name.as_str(),
        "disp.req1"
    );
    assert_eq!(
        choose(&devices, Some("disp")).unwrap().info.name.as_str(),
        "disp.req1"
    );
    assert!(
        choose(&devices, Some("other"))
            .unwrap_err()
            .contains("may start: disp")
    );
    assert!(
        choose(&devices[..2], None)
            .unwrap_err()
            .contains("may not start disposables")
    );
    let two = vec![found("a.req0", 0), found("b.req0", 0)];
    let e = choose(&two, None).unwrap_err();
    assert!(
        e.contains("several disposables (a, b)") && e.contains("--disposable"),
        "{e}"
    );
    assert_eq!(
        choose(&two, Some("b")).unwrap().info.name.as_str(),
        "b.req0"
    );
}

#[test]
fn one_request_per_channel_at_a_time_and_the_last_generation_is_kept() {
    let dir = std::env::temp_dir().join(format!("dispvm-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = Lock::take(&dir, "disp.req0").unwrap();
    assert_eq!(first.last_generation(), None);
    let e = Lock::take(&dir, "disp.req0").unwrap_err();
    assert!(e.contains("another dispvm is using disp.req0"), "{e}");
    // Another disposable's channel is a lock of its own.
    let other = Lock::take(&dir, "other.req0").unwrap();
    first.record(7).unwrap();
    first.record(12).unwrap();
    drop(first);
    let mut again = Lock::take(&dir, "disp.req0").unwrap();
    assert_eq!(again.last_generation(), Some(12));
    // A name that tries to leave the directory stays in it.
    let odd = Lock::take(&dir, "../x/y").unwrap();
    assert!(odd.path.starts_with(&dir) && odd.path.file_name().unwrap() == "_x_y");
    drop((again, other, odd));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_request_waits_for_the_last_disposable_to_power_off() {
    let (a, _b) = channel();
    let region = a.region().clone();
    let resetter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        reset_region(&region);
    });
    let mut said = false;
    let took = await_reset(|| a.generation(), Duration::from_secs(10), || said = true);
    resetter.join().unwrap();
    assert!(took.unwrap() >= Duration::from_millis(700));
    assert!(said);
    // No reset at all: it gives up after its patience, without a word before 500 ms.
    let mut said = false;
    let took = await_reset(
        || a.generation(),
        Duration::from_millis(100),
        || said = true,
    );
    assert_eq!((took, said), (None, false));
}

#[test]
fn the_ring_tells_a_reset_by_its_generation() {
    let (a, _b) = channel();
    let g = a.generation();
    reset_region(a.region());
    assert_eq!(a.generation(), g.wrapping_add(1));
}

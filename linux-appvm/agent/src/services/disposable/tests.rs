//! The disposable service against a requester played by the other end of a heap channel.

use super::*;
use crate::channel::ring::{RingChannel, pair, reset_region};
use crate::channel::{CountingBell, Transport};
use bulkhead_abi::proto::DISPOSABLE_SLOT_SIZE;
use proptest::prelude::*;

type Chan = RingChannel<CountingBell>;

/// A runner that records commands and "runs" them instantly: `output` then `status`.
#[derive(Default)]
struct Fake {
    started: Vec<String>,
    output: Vec<u8>,
    status: i32,
}

struct FakeJob {
    output: Vec<u8>,
    at: usize,
    status: i32,
}

impl Runner for &mut Fake {
    fn start(&mut self, command: &str) -> io::Result<Box<dyn Job>> {
        self.started.push(command.to_string());
        Ok(Box::new(FakeJob {
            output: self.output.clone(),
            at: 0,
            status: self.status,
        }))
    }
}

impl Job for FakeJob {
    fn read_output(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let n = buf.len().min(self.output.len() - self.at).min(1000);
        buf[..n].copy_from_slice(&self.output[self.at..self.at + n]);
        self.at += n;
        Ok(Some(n))
    }
    fn try_status(&mut self) -> io::Result<Option<i32>> {
        Ok(Some(self.status))
    }
    fn output_fd(&self) -> RawFd {
        -1
    }
    fn kill(&mut self) {}
}

fn requester() -> (Chan, Chan) {
    pair(65536, DISPOSABLE_SLOT_SIZE).unwrap()
}

fn hello(v: u16) -> Disposable<'static> {
    Disposable::Hello(Hello {
        version: v,
        qube: heapless::String::try_from("work").unwrap(),
    })
}

/// Everything the requester received, as debug text.
fn received(a: &mut Chan) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(m)) =
        a.try_recv_with(|b| format!("{:?}", postcard::from_bytes::<Disposable>(b)))
    {
        got.push(m);
    }
    got
}

/// Steps until finished (bounded), the requester reading as it goes.
fn run_to_end<R: Runner>(d: &mut DisposableService<Chan, R>, a: &mut Chan) -> Vec<String> {
    let mut got = Vec::new();
    let start = Instant::now();
    for i in 0..10_000u64 {
        d.step(start + Duration::from_millis(i));
        got.extend(received(a));
        if d.finished() {
            return got;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("not finished: {got:?}");
}

#[test]
fn runs_the_command_streams_output_and_finishes() {
    let (mut a, b) = requester();
    assert!(a.try_send(&hello(PROTO_VERSION)).unwrap());
    let run = Disposable::Run {
        template: "debian-12",
        command: "echo hi",
    };
    assert!(a.try_send(&run).unwrap());
    let mut fake = Fake {
        output: vec![b'x'; 4000],
        status: 3,
        ..Fake::default()
    };
    let mut d = DisposableService::new(b, "work.disp", "disp1", Some("debian-12"), &mut fake);
    let got = run_to_end(&mut d, &mut a);
    assert!(got[0].contains("Hello") && got[0].contains("disp1"));
    let outputs: Vec<_> = got.iter().filter(|m| m.contains("Output")).collect();
    assert_eq!(outputs.len(), 4, "1000-byte reads: {got:?}");
    assert!(got.last().unwrap().contains("Exited { status: 3 }"));
    assert_eq!(d.ran, Some(("echo hi".into(), 3)));
    let notes = d.take_notes();
    assert!(
        notes
            .iter()
            .any(|n| n == "disposable ran echo hi -> status 3"),
        "{notes:?}"
    );
    drop(d);
    assert_eq!(fake.started, ["echo hi"]);
}

#[test]
fn the_real_shell_merges_stdout_and_stderr() {
    let (mut a, b) = requester();
    a.try_send(&hello(PROTO_VERSION)).unwrap();
    let big = "i=0; while [ $i -lt 300 ]; do echo line-$i-0123456789; i=$((i+1)); done";
    let command = format!("echo out; echo err >&2; {big}; exit 7");
    a.try_send(&Disposable::Run {
        template: "t",
        command: &command,
    })
    .unwrap();
    let mut d = DisposableService::new(b, "x.disp", "d", Some("t"), ShellRunner::default());
    let mut bytes = Vec::new();
    let start = Instant::now();
    while !d.finished() {
        d.step(Instant::now());
        while let Ok(Some(m)) = a.try_recv_with(|b| match postcard::from_bytes(b) {
            Ok(Disposable::Output(o)) => {
                assert!(o.len() <= MAX_OUTPUT_CHUNK);
                bytes.extend_from_slice(o);
                String::new()
            }
            other => format!("{other:?}"),
        }) {
            if m.contains("Exited") {
                assert!(m.contains("status: 7"), "{m}");
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("out\nerr\nline-0-"), "{text:.40}");
    assert!(text.ends_with("line-299-0123456789\n"));
    assert_eq!(d.ran.as_ref().map(|r| r.1), Some(7));
}

#[test]
fn refusals() {
    for (template, command, ours, why) in [
        (
            "other",
            "ls",
            Some("debian-12"),
            "made from debian-12, not other",
        ),
        ("t", "ls", None, "no template"),
        ("t", "a\0b", Some("t"), "NUL byte"),
    ] {
        let (mut a, b) = requester();
        a.try_send(&hello(PROTO_VERSION)).unwrap();
        a.try_send(&Disposable::Run { template, command }).unwrap();
        let mut fake = Fake::default();
        let mut d = DisposableService::new(b, "w.disp", "d", ours, &mut fake);
        let got = run_to_end(&mut d, &mut a);
        assert!(
            got.last().unwrap().contains("Refused") && got.last().unwrap().contains(why),
            "{got:?}"
        );
        drop(d);
        assert!(fake.started.is_empty());
    }
}

#[test]
fn out_of_turn_and_wrong_version_are_refused() {
    for first in [
        postcard::to_allocvec(&hello(9)).unwrap(),
        postcard::to_allocvec(&Disposable::Run {
            template: "t",
            command: "ls",
        })
        .unwrap(),
        postcard::to_allocvec(&Disposable::Exited { status: 0 }).unwrap(),
        vec![0xff, 0xff, 0xff],
    ] {
        let (mut a, b) = requester();
        a.try_send_bytes(&first).unwrap();
        let mut fake = Fake::default();
        let mut d = DisposableService::new(b, "w.disp", "d", Some("t"), &mut fake);
        let got = run_to_end(&mut d, &mut a);
        assert!(got.last().unwrap().contains("Refused"), "{got:?}");
    }
}

#[test]
fn a_reset_before_run_greets_again() {
    let (mut a, b) = requester();
    let mut fake = Fake::default();
    let mut d = DisposableService::new(b, "w.disp", "d", Some("t"), &mut fake);
    let now = Instant::now();
    d.step(now);
    assert_eq!(received(&mut a).len(), 1);
    reset_region(a.region());
    assert_eq!(a.try_send(&0u8), Err(ChannelError::Reset));
    d.step(now);
    assert_eq!(received(&mut a).len(), 1, "our Hello again");
    a.try_send(&hello(PROTO_VERSION)).unwrap();
    a.try_send(&Disposable::Run {
        template: "t",
        command: "true",
    })
    .unwrap();
    let got = run_to_end(&mut d, &mut a);
    assert!(got.last().unwrap().contains("Exited"));
}

#[test]
fn an_absent_requester_is_waited_for_only_so_long() {
    let (mut a, b) = requester();
    a.try_send(&hello(PROTO_VERSION)).unwrap();
    a.try_send(&Disposable::Run {
        template: "t",
        command: "true",
    })
    .unwrap();
    let mut fake = Fake::default();
    let mut d = DisposableService::new(b, "w.disp", "d", Some("t"), &mut fake);
    // The requester never reads again: the drain times out.
    let t0 = Instant::now();
    for i in 0..10 {
        d.step(t0 + Duration::from_millis(i));
    }
    assert!(!d.finished());
    d.step(t0 + DRAIN_TIMEOUT + Duration::from_secs(1));
    assert!(d.finished());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the requester puts in the ring (garbage, huge or invalid Run requests,
    /// scribbles over the region, resets), the service never panics, starts at most one
    /// command, and always finishes.
    #[test]
    fn a_hostile_requester_never_panics_the_service(
        messages in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2100),
            ("\\PC{0,40}", "\\PC{0,2000}").prop_map(|(t, c)| postcard::to_allocvec(
                &Disposable::Run { template: &t, command: &c }).unwrap()),
            any::<u16>().prop_map(|v| postcard::to_allocvec(&hello(v)).unwrap()),
        ], 0..12),
        scribbles in prop::collection::vec((0usize..70000, any::<u32>()), 0..4),
        reset in any::<bool>(),
    ) {
        let (mut a, b) = requester();
        for m in &messages {
            let _ = a.try_send_bytes(m);
        }
        for (at, v) in &scribbles {
            a.region().write_bytes(*at, &v.to_le_bytes());
        }
        if reset {
            reset_region(a.region());
        }
        let mut fake = Fake { output: b"out".to_vec(), ..Fake::default() };
        let mut d = DisposableService::new(b, "w.disp", "d", Some("t"), &mut fake);
        let t0 = Instant::now();
        for i in 0..50u64 {
            d.step(t0 + Duration::from_millis(i));
            let _ = a.try_recv_with(|_| ());
        }
        d.step(t0 + DRAIN_TIMEOUT * 3);
        d.step(t0 + DRAIN_TIMEOUT * 4);
        let finished_or_waiting = d.finished() || d.ran.is_none();
        prop_assert!(finished_or_waiting);
        drop(d);
        prop_assert!(fake.started.len() <= 1);
    }
}

#[test]
fn recognises_the_compilers_names() {
    assert!(is_request_channel("disp.req0"));
    assert!(is_request_channel("disp.req12"));
    assert!(is_request_channel("x.disp"));
    assert!(!is_request_channel("work.net"));
    assert!(!is_request_channel("disp.req"));
    assert!(!is_request_channel(".req0"));
    assert!(!is_request_channel("disp.reqx"));
    assert_eq!(requested_disposable("disp.req0"), Some("disp"));
    assert_eq!(requested_disposable("a.b.req3"), Some("a.b"));
    assert_eq!(requested_disposable("x.disp"), None);
}

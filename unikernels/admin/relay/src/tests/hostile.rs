//! Every qube hostile at once: arbitrary messages from arbitrary qubes, resets, ticks and
//! full rings. Whatever happens, the relay never panics, and no qube ever receives bytes
//! that did not come from the other end of a call it is in: each qube's data starts with
//! its own number, and each receiver checks it against what the relay told it about the
//! call (`Incoming` names the source, `Accepted` the target).

use super::sim::*;
use crate::{HOST, Relay};
use bulkhead_abi::qrexec::{FromAdmin, INCOMING_BASE, Io, QREXEC_VERSION, Stream, ToAdmin};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

const QUBES: [u8; 6] = [GUI, WORK, PERSONAL, DISP, USB, HOST];
const NAMES: [&str; 9] = [
    "work", "personal", "disp", "usb", "admin", "@dispvm", "@default", "@adminvm", "nosuch",
];
const SERVICES: [&str; 5] = [
    "qubes.VMShell",
    "qubes.Filecopy",
    "admin.vm.List",
    "admin.vm.Kill",
    "x",
];

#[derive(Clone, Debug)]
enum Step {
    Send { from: u8, msg: Msg },
    Reset(u8),
    Tick(u64),
    Drain(u8),
    Capacity(usize),
}

#[derive(Clone, Debug)]
enum Msg {
    Hello(u16),
    Call(u32, usize, usize),
    Data(u32, u8),
    Eof(u32, u8),
    Ack(u32, u8),
    Exit(u32),
    Abort(u32),
    Answer(u32, Option<u8>),
}

fn stream(s: u8) -> Stream {
    [Stream::Stdin, Stream::Stdout, Stream::Stderr][usize::from(s % 3)]
}

fn step() -> impl Strategy<Value = Step> {
    let qube = proptest::sample::select(&QUBES[..]);
    let n = prop_oneof![0u32..4, (0u32..16).prop_map(|k| INCOMING_BASE + k)];
    let msg = prop_oneof![
        1 => prop_oneof![Just(QREXEC_VERSION), any::<u16>()].prop_map(Msg::Hello),
        3 => (0u32..4, 0..SERVICES.len(), 0..NAMES.len()).prop_map(|(c, s, t)| Msg::Call(c, s, t)),
        // Calls the policy allows, so bytes flow.
        3 => (0u32..4, 0..2usize).prop_map(|(c, t)| Msg::Call(c, 0, [1, 5][t])),
        4 => (n.clone(), any::<u8>()).prop_map(|(c, s)| Msg::Data(c, s)),
        1 => (n.clone(), any::<u8>()).prop_map(|(c, s)| Msg::Eof(c, s)),
        1 => (n.clone(), any::<u8>()).prop_map(|(c, s)| Msg::Ack(c, s)),
        1 => n.clone().prop_map(Msg::Exit),
        1 => n.clone().prop_map(Msg::Abort),
        1 => (n, proptest::option::of(0u8..4)).prop_map(|(a, c)| Msg::Answer(a, c)),
    ];
    let ends = proptest::sample::select(&[WORK, PERSONAL, DISP][..]);
    let n2 = prop_oneof![0u32..4, (0u32..8).prop_map(|k| INCOMING_BASE + k)];
    prop_oneof![
        12 => (qube.clone(), msg).prop_map(|(from, msg)| Step::Send { from, msg }),
        // work's allowed calls, and bytes from the qubes that run them.
        3 => (0u32..4, 0..2usize).prop_map(|(c, t)| Step::Send { from: WORK, msg: Msg::Call(c, 0, [1, 5][t]) }),
        6 => (ends, n2, any::<u8>()).prop_map(|(from, c, st)| Step::Send { from, msg: Msg::Data(c, st) }),
        1 => qube.clone().prop_map(Step::Reset),
        1 => (0u64..200_000).prop_map(Step::Tick),
        3 => qube.prop_map(Step::Drain),
        1 => (0usize..6).prop_map(Step::Capacity),
    ]
}

/// Every qube says hello first, so calls can run.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 1..120).prop_map(|mut steps| {
        let hellos = QUBES.iter().map(|&from| Step::Send {
            from,
            msg: Msg::Hello(QREXEC_VERSION),
        });
        steps.splice(0..0, hellos);
        steps
    })
}

/// What each qube has been told about its calls: its call number -> the other end's name.
#[derive(Default)]
struct Told(BTreeMap<(u8, u32), std::string::String>, usize);

impl Told {
    /// Checks one message `q` received.
    fn check(&mut self, relay: &Relay<'_>, q: u8, m: &FromAdmin<'_>) -> Result<(), TestCaseError> {
        match m {
            FromAdmin::Incoming { call, source, .. } => {
                self.0.insert((q, *call), (*source).into());
            }
            FromAdmin::Accepted { call, target } => {
                self.0.insert((q, *call), (*target).into());
            }
            FromAdmin::Io(Io::Data { call, bytes, .. }) if !bytes.is_empty() => {
                self.1 += 1;
                let peer = self.0.get(&(q, *call));
                prop_assert!(
                    peer.is_some(),
                    "{q} got data for call {call} it was never told of"
                );
                let peer = peer.unwrap();
                let from = relay.name(bytes[0]);
                prop_assert!(
                    peer == "@adminvm" || *peer == from || peer.ends_with(from),
                    "{q}'s call {call} is with {peer}, but carried bytes of {from}"
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// Runs one case; returns how many data messages were delivered and checked.
fn run(steps: Vec<Step>) -> Result<usize, TestCaseError> {
    let config = config();
    let mut relay = Relay::new(&config);
    let mut sim = Sim::new();
    let mut told = Told::default();
    for s in steps {
        match s {
            Step::Send { from, msg } => {
                let payload = [from, 0xEE];
                let m = match msg {
                    Msg::Hello(version) => ToAdmin::Hello { version },
                    Msg::Call(call, s, t) => ToAdmin::Call {
                        call,
                        service: SERVICES[s],
                        argument: if SERVICES[s] == "admin.vm.Kill" {
                            "disp"
                        } else {
                            ""
                        },
                        target: NAMES[t],
                    },
                    Msg::Data(call, s) => ToAdmin::Io(Io::Data {
                        call,
                        stream: stream(s),
                        bytes: &payload,
                    }),
                    Msg::Eof(call, s) => ToAdmin::Io(Io::Eof {
                        call,
                        stream: stream(s),
                    }),
                    Msg::Ack(call, s) => ToAdmin::Io(Io::Ack {
                        call,
                        stream: stream(s),
                        bytes: 1,
                    }),
                    Msg::Exit(call) => ToAdmin::Io(Io::Exit { call, code: 1 }),
                    Msg::Abort(call) => ToAdmin::Io(Io::Abort { call }),
                    Msg::Answer(ask, choice) => ToAdmin::Answer { ask, choice },
                };
                let _ = relay.on_message(&mut sim, from, &m);
            }
            Step::Reset(q) => relay.reset(&mut sim, q),
            Step::Tick(ms) => {
                sim.now += ms;
                relay.tick(&mut sim);
            }
            Step::Drain(q) => {
                for bytes in sim.take(q) {
                    told.check(&relay, q, &decode(&bytes))?;
                }
            }
            Step::Capacity(c) => sim.capacity = c,
        }
        prop_assert!(relay.open_calls() <= crate::calls::MAX_OPEN);
    }
    for q in QUBES {
        for bytes in sim.take(q) {
            told.check(&relay, q, &decode(&bytes))?;
        }
    }
    Ok(told.1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn hostile_qubes_never_reach_a_third_one(steps in steps()) {
        run(steps)?;
    }
}

/// The property above is only as good as the calls it gets running: with a fixed seed,
/// its cases deliver data dozens of times (93 with this seed).
#[test]
fn the_hostile_cases_run_real_calls() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut delivered = 0;
    for _ in 0..300 {
        let steps = steps().new_tree(&mut runner).unwrap().current();
        delivered += run(steps).unwrap();
    }
    assert!(delivered > 50, "only {delivered} data messages delivered");
}

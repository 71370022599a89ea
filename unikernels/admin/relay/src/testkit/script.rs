//! A scripted run of hostile qubes against the relay, shared by the property test and the
//! fuzz target: arbitrary messages from arbitrary qubes, resets, ticks, drains and ring
//! sizes. [`run`] checks, on every message a qube receives, that a call's data comes only
//! from the other end of a call the relay told that qube about: each qube's data starts
//! with its own number; `Incoming` names a call's source and `Accepted` its target.

use super::*;
use crate::{HOST, Relay};
use bulkhead_abi::qrexec::{FromAdmin, INCOMING_BASE, Io, QREXEC_VERSION, Stream, ToAdmin};
use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

/// The qubes that send.
pub const QUBES: [u8; 6] = [GUI, WORK, PERSONAL, DISP, USB, HOST];
/// The targets they name.
pub const NAMES: [&str; 9] = [
    "work", "personal", "disp", "usb", "admin", "@dispvm", "@default", "@adminvm", "nosuch",
];
/// The services they call.
pub const SERVICES: [&str; 5] = [
    "qubes.VMShell",
    "qubes.Filecopy",
    "admin.vm.List",
    "admin.vm.Kill",
    "x",
];

/// One thing that happens.
#[derive(Clone, Debug)]
pub enum Step {
    Send { from: u8, msg: Msg },
    Reset(u8),
    Tick(u64),
    Drain(u8),
    Capacity(usize),
}

/// A message a qube sends.
#[derive(Clone, Debug)]
pub enum Msg {
    Hello(u16),
    Call(u32, usize, usize),
    Data(u32, u8),
    Eof(u32, u8),
    Ack(u32, u8),
    Exit(u32),
    Abort(u32),
    Answer(u32, Option<u8>),
}

/// A stream by number.
pub fn stream(s: u8) -> Stream {
    [Stream::Stdin, Stream::Stdout, Stream::Stderr][usize::from(s % 3)]
}

/// What each qube has been told about its calls: its call number -> the other end's name.
#[derive(Default)]
struct Told(BTreeMap<(u8, u32), std::string::String>, usize);

impl Told {
    /// Checks one message `q` received.
    fn check(&mut self, relay: &Relay<'_>, q: u8, m: &FromAdmin<'_>) -> Result<(), String> {
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
                let Some(peer) = peer else {
                    return Err(format!("{q} got data for call {call} it was never told of"));
                };
                let from = relay.name(bytes[0]);
                if !(peer == "@adminvm" || *peer == from || peer.ends_with(from)) {
                    return Err(format!(
                        "{q}'s call {call} is with {peer}, but carried bytes of {from}"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Runs one case; returns how many data messages were delivered and checked.
pub fn run(steps: Vec<Step>) -> Result<usize, String> {
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
                relay.destroy_done(&mut sim);
                relay.tick(&mut sim);
            }
            Step::Drain(q) => {
                for bytes in sim.take(q) {
                    told.check(&relay, q, &decode(&bytes))?;
                }
            }
            Step::Capacity(c) => sim.capacity = c,
        }
        if relay.open_calls() > crate::calls::MAX_OPEN {
            return Err(format!("{} calls open", relay.open_calls()));
        }
    }
    for q in QUBES {
        for bytes in sim.take(q) {
            told.check(&relay, q, &decode(&bytes))?;
        }
    }
    Ok(told.1)
}

/// Steps from arbitrary bytes (the fuzz target's input), every qube's hello first: three
/// bytes a step, the first choosing what.
pub fn steps_from_bytes(data: &[u8]) -> Vec<Step> {
    let mut steps: Vec<Step> = QUBES
        .iter()
        .map(|&from| Step::Send {
            from,
            msg: Msg::Hello(QREXEC_VERSION),
        })
        .collect();
    for c in data.chunks(3) {
        let (a, b, n) = (c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0));
        let from = QUBES[usize::from(b) % QUBES.len()];
        let call = if n & 0x80 != 0 {
            INCOMING_BASE + u32::from(n & 7)
        } else {
            u32::from(n & 3)
        };
        let msg = match a % 16 {
            0 => Msg::Hello(if n == 0 { 0 } else { QREXEC_VERSION }),
            1..=3 => Msg::Call(
                call & 3,
                usize::from(n) % SERVICES.len(),
                usize::from(b >> 3) % NAMES.len(),
            ),
            4..=7 => Msg::Data(call, b >> 4),
            8 => Msg::Eof(call, b >> 4),
            9 => Msg::Ack(call, b >> 4),
            10 => Msg::Exit(call),
            11 => Msg::Abort(call),
            12 => Msg::Answer(call, (n & 0x40 != 0).then_some(b & 3)),
            13 => {
                steps.push(Step::Reset(from));
                continue;
            }
            14 => {
                steps.push(if n & 1 == 0 {
                    Step::Drain(from)
                } else {
                    Step::Tick(u64::from(b) * 1_000)
                });
                continue;
            }
            _ => {
                steps.push(Step::Capacity(usize::from(n % 8)));
                continue;
            }
        };
        steps.push(Step::Send { from, msg });
    }
    steps
}

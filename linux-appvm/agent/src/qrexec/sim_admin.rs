//! An admin qube played in the tests: it greets each qube first, accepts every call but the
//! services it is told to deny, relays a call's messages between its two qubes renumbering
//! them as the real one does, and answers calls to `@adminvm` itself. It holds messages a
//! full ring does not take, and measures how many bytes it ever held: the agents' flow
//! control is what bounds that.

use crate::channel::ring::{RingChannel, reset_region};
use crate::channel::{CountingBell, Transport};
use bulkhead_abi::qrexec::{FromAdmin, Io, QREXEC_VERSION, Refusal, Stream, ToAdmin};
use std::collections::VecDeque;

pub type Chan = RingChannel<CountingBell>;

/// One relayed call: (qube index, that qube's number) at each end.
struct Relay {
    source: (usize, u32),
    target: (usize, u32),
}

pub struct SimAdmin {
    /// The admin qube's end of each qube's channel.
    pub chans: Vec<Chan>,
    pub names: Vec<&'static str>,
    /// Services refused with `Denied`.
    pub deny: Vec<&'static str>,
    relays: Vec<Relay>,
    pending: Vec<VecDeque<Vec<u8>>>,
    next: u32,
    /// The most message bytes ever held for full rings.
    pub max_held: usize,
}

impl SimAdmin {
    pub fn new(chans: Vec<Chan>, names: Vec<&'static str>) -> SimAdmin {
        // The admin qube's Hello is its first message on every channel.
        let hello = postcard::to_allocvec(&FromAdmin::Hello {
            version: QREXEC_VERSION,
        })
        .unwrap();
        let pending = chans
            .iter()
            .map(|_| VecDeque::from([hello.clone()]))
            .collect();
        SimAdmin {
            chans,
            names,
            deny: Vec::new(),
            relays: Vec::new(),
            pending,
            next: bulkhead_abi::qrexec::INCOMING_BASE,
            max_held: 0,
        }
    }

    fn queue(&mut self, qube: usize, msg: &FromAdmin<'_>) {
        self.pending[qube].push_back(postcard::to_allocvec(msg).unwrap());
    }

    /// Relays what there is; whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        for q in 0..self.chans.len() {
            loop {
                let got = self.chans[q].try_recv_with(|m| m.to_vec());
                match got {
                    Ok(Some(m)) => {
                        moved = true;
                        self.handle(q, &m);
                    }
                    Ok(None) => break,
                    // The qube restarted or broke its channel: forget its calls.
                    Err(_) => {
                        self.forget(q);
                        break;
                    }
                }
            }
        }
        let held: usize = self.pending.iter().flatten().map(Vec::len).sum();
        self.max_held = self.max_held.max(held);
        for q in 0..self.chans.len() {
            while let Some(m) = self.pending[q].front() {
                match self.chans[q].try_send_bytes(m) {
                    Ok(true) => {
                        self.pending[q].pop_front();
                        moved = true;
                    }
                    _ => break,
                }
            }
        }
        moved
    }

    /// Messages held per qube, and the relays.
    pub fn state(&self) -> (Vec<usize>, usize) {
        (
            self.pending.iter().map(VecDeque::len).collect(),
            self.relays.len(),
        )
    }

    /// Plays the admin qube restarting: qube `q`'s channel is reset, its calls aborted at
    /// their other ends.
    pub fn reset(&mut self, q: usize) {
        reset_region(self.chans[q].region());
        let _ = self.chans[q].try_recv_with(|_| ());
        self.forget(q);
        let version = QREXEC_VERSION;
        self.queue(q, &FromAdmin::Hello { version });
    }

    fn forget(&mut self, q: usize) {
        self.pending[q].clear();
        let (gone, kept): (Vec<Relay>, Vec<Relay>) = std::mem::take(&mut self.relays)
            .into_iter()
            .partition(|r| r.source.0 == q || r.target.0 == q);
        self.relays = kept;
        for r in gone {
            let (other, call) = if r.source.0 == q { r.target } else { r.source };
            if other != q {
                self.queue(other, &FromAdmin::Io(Io::Abort { call }));
            }
        }
    }

    fn handle(&mut self, q: usize, bytes: &[u8]) {
        let msg: ToAdmin<'_> =
            postcard::from_bytes(bytes).expect("an agent sends well-formed messages");
        match msg {
            ToAdmin::Hello { version } => assert_eq!(version, QREXEC_VERSION),
            ToAdmin::Call {
                call,
                service,
                argument,
                target,
            } => self.call(q, call, service, argument, target),
            ToAdmin::Io(io) => {
                let Some(i) = self
                    .relays
                    .iter()
                    .position(|r| r.source == (q, io.call()) || r.target == (q, io.call()))
                else {
                    return;
                };
                let r = &self.relays[i];
                let (other, call) = if r.source == (q, io.call()) {
                    r.target
                } else {
                    r.source
                };
                if matches!(io, Io::Exit { .. } | Io::Abort { .. }) {
                    self.relays.remove(i);
                }
                self.queue(other, &FromAdmin::Io(io.renumbered(call)));
            }
            other => panic!("an agent sent {other:?}"),
        }
    }

    fn call(&mut self, q: usize, call: u32, service: &str, argument: &str, target: &str) {
        if self.deny.contains(&service) {
            let reason = Refusal::Denied;
            return self.queue(q, &FromAdmin::Refused { call, reason });
        }
        if target == "@adminvm" {
            // The admin API: one line naming the service and its argument.
            self.queue(q, &FromAdmin::Accepted { call, target });
            let line = format!("{service} {argument}\n");
            let stream = Stream::Stdout;
            let data = Io::Data {
                call,
                stream,
                bytes: line.as_bytes(),
            };
            self.queue(q, &FromAdmin::Io(data));
            self.queue(q, &FromAdmin::Io(Io::Eof { call, stream }));
            return self.queue(q, &FromAdmin::Io(Io::Exit { call, code: 0 }));
        }
        // Every other target is the other qube.
        let other = (q + 1) % self.chans.len();
        let number = self.next;
        self.next += 1;
        self.relays.push(Relay {
            source: (q, call),
            target: (other, number),
        });
        let name = self.names[other];
        self.queue(q, &FromAdmin::Accepted { call, target: name });
        let source = self.names[q];
        let incoming = FromAdmin::Incoming {
            call: number,
            source,
            service,
            argument,
        };
        self.queue(other, &incoming);
    }
}

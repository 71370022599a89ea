//! A channel with both endpoints honest and an attacker who may write any bytes anywhere in
//! the region between operations, checked against a model after every step.
//!
//! Shared by the property tests (`tests/model.rs`, `tests/hostile.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/ring_hostile_peer.rs`, which includes this file by path).
//!
//! The model keeps, per ring, the messages in flight. A scribble *taints* what it can change:
//! the consumer index of a ring or the sequence word of any of its slots taints the whole ring
//! (from then on it may deliver anything, or break); a slot's length or payload taints the
//! message in flight there, if any; the waiting flag taints notifications; the header (read
//! once, at open), the padding and the payloads of free slots taint nothing. The checks:
//! - nothing panics, and nothing is written outside the region (its guard pages stay intact);
//! - an untainted message on an untainted ring arrives intact, in order, and the ring holds
//!   exactly the messages in flight;
//! - an endpoint breaks only if something was tainted, and once broken it says so on every call;
//! - `Full`, `TooLarge`, `prepare_wait` and `notify` say what the model says, while untainted.

#![allow(dead_code)]

use bulkhead_abi::channel::{
    CONSUMER_OFFSET, GENERATION_OFFSET, Geometry, LEN_OFFSET, RING_CONTROL_SIZE, SEQ_OFFSET,
    SLOT_HEADER, WAITING_OFFSET,
};
use bulkhead_ring::{ChannelError, Endpoint, Sent, SharedRegion, Side};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A message of the scenario: its number and a body whose bytes follow from both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    pub seq: u32,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn new(seq: u32, len: usize) -> Msg {
        Msg {
            seq,
            body: (0..len).map(|i| (seq as usize * 31 + i) as u8).collect(),
        }
    }

    pub fn encoded(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a Msg always encodes")
    }
}

/// How a message is sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `send` / `try_recv::<Msg>`.
    Typed,
    /// `send_bytes` of the encoding / `try_recv_bytes`, then decoded here.
    Bytes,
    /// (receive only) `recv_with`, decoding the borrowed copy.
    With,
}

/// One step of a scenario.
#[derive(Clone, Debug)]
pub enum Op {
    /// `side` sends a message whose body has `len` bytes.
    Send { side: Side, len: usize, via: Via },
    /// `side` receives one message (into a buffer of `buf` bytes, for `Via::Bytes`).
    Recv { side: Side, via: Via, buf: usize },
    /// `side` prepares to wait.
    PrepareWait { side: Side },
    /// `side` finishes waiting.
    FinishWait { side: Side },
    /// The attacker writes `bytes` at `offset` (clipped to the region).
    Scribble { offset: usize, bytes: Vec<u8> },
    /// The attacker adds `delta` to the little-endian u32 at `offset` (rounded down to a
    /// multiple of 4): plausible indices and lengths, not just noise.
    Nudge { offset: usize, delta: i32 },
}

struct InFlight {
    msg: Msg,
    /// Its free-running index on the ring (the slot is this modulo the slot count).
    index: u32,
    tainted: bool,
}

struct RingModel {
    /// Region offset of the ring.
    offset: usize,
    in_flight: VecDeque<InFlight>,
    /// The index the next message sent will have.
    next_index: u32,
    /// The producer or consumer index was scribbled.
    tainted: bool,
    /// The waiting flag was scribbled.
    flag_tainted: bool,
    /// The consumer's flag is set (it prepared to wait, found nothing, and has not finished).
    waiting: bool,
}

/// The channel, both endpoints and the model.
pub struct Scenario {
    pub region: SharedRegion,
    pub geometry: Geometry,
    a: Endpoint,
    b: Endpoint,
    /// Ring 0 carries A→B, ring 1 B→A.
    rings: [RingModel; 2],
    next_seq: u32,
    /// Counts, for the tests to see what they exercised.
    pub delivered: usize,
    pub full: usize,
    pub too_large: usize,
    pub breaks: usize,
    /// The peer scribbled over the header's reset generation: the endpoints may report
    /// `Reset` from then on (as after a real reset, which only the hypervisor should do).
    pub generation_tainted: bool,
    /// Compare the guard pages after every step (the fuzz target turns it off when the
    /// sanitizer guards them instead).
    pub check_guards: bool,
}

fn tx_ring(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn overlaps(start: usize, len: usize, at: usize, n: usize) -> bool {
    start < at + n && at < start + len
}

impl Scenario {
    /// A fresh channel of `size` bytes with `slot_size`-byte slots, every index at `start`;
    /// `None` if that geometry does not exist.
    pub fn new(size: usize, slot_size: u32, start: u32) -> Option<Scenario> {
        let geometry = Geometry::new(size as u64, slot_size)?;
        let region = SharedRegion::zeroed(size);
        region.init_header_at(&geometry, start);
        let a = Endpoint::open(region.clone(), Side::A).expect("side A opens");
        let b = Endpoint::open(region.clone(), Side::B).expect("side B opens");
        let ring = |i: usize| RingModel {
            offset: geometry.ring_offset[i] as usize,
            in_flight: VecDeque::new(),
            next_index: start,
            tainted: false,
            flag_tainted: false,
            waiting: false,
        };
        Some(Scenario {
            region,
            geometry,
            a,
            b,
            rings: [ring(0), ring(1)],
            next_seq: 0,
            delivered: 0,
            full: 0,
            too_large: 0,
            breaks: 0,
            generation_tainted: false,
            check_guards: true,
        })
    }

    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload() as usize
    }

    fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// An error from `side`: a break is allowed only after a taint, and must be what
    /// `broken()` reports.
    fn on_error(&mut self, side: Side, e: ChannelError, what: &str) {
        match e {
            ChannelError::Broken(b) => {
                assert!(
                    self.rings
                        .iter()
                        .any(|r| r.tainted || r.in_flight.iter().any(|m| m.tainted)),
                    "{what}: {side:?} broke ({b}) though nothing it reads was scribbled"
                );
                assert_eq!(
                    self.endpoint(side).broken(),
                    Some(b),
                    "{what}: broken() disagrees"
                );
                self.breaks += 1;
            }
            ChannelError::Reset => assert!(
                self.generation_tainted,
                "{what}: {side:?} reported a reset though the generation was not touched"
            ),
            other => panic!("{what}: {side:?} failed with {other:?}"),
        }
    }

    /// Runs one step and checks it.
    pub fn apply(&mut self, op: &Op) {
        let was_broken = [self.a.broken(), self.b.broken()];
        match op {
            Op::Send { side, len, via } => self.send(*side, *len, *via),
            Op::Recv { side, via, buf } => self.recv(*side, *via, *buf),
            Op::PrepareWait { side } => self.prepare_wait(*side),
            Op::FinishWait { side } => {
                self.endpoint(*side).finish_wait();
                self.rings[1 - tx_ring(*side)].waiting = false;
            }
            Op::Scribble { offset, bytes } => self.scribble(*offset, bytes),
            Op::Nudge { offset, delta } => {
                let at = (offset % self.region.len()) & !3;
                let mut word = [0u8; 4];
                assert!(self.region.read_bytes(at, &mut word));
                let value = u32::from_le_bytes(word).wrapping_add(*delta as u32);
                self.scribble(at, &value.to_le_bytes());
            }
        }
        // Once broken, always broken, with the same breach.
        for (was, now) in was_broken.iter().zip([self.a.broken(), self.b.broken()]) {
            if was.is_some() {
                assert_eq!(*was, now, "a breach changed");
            }
        }
        if self.check_guards {
            assert!(
                self.region.guards_intact(),
                "something wrote outside the region"
            );
        }
    }

    fn send(&mut self, side: Side, len: usize, via: Via) {
        let msg = Msg::new(self.next_seq, len);
        let encoded = msg.encoded();
        let max = self.max_payload();
        let r = tx_ring(side);
        let slots = self.geometry.slot_count as usize;
        let broken = self.endpoint(side).broken();
        let result = match via {
            Via::Bytes => self.endpoint(side).send_bytes(&encoded),
            _ => self.endpoint(side).send(&msg),
        };
        if let Some(b) = broken {
            assert_eq!(
                result,
                Err(ChannelError::Broken(b)),
                "send on a broken endpoint"
            );
            return;
        }
        let ring = &self.rings[r];
        let untainted = !ring.tainted;
        match result {
            Ok(Sent::Queued { notify }) => {
                assert!(
                    encoded.len() <= max,
                    "a message of {} bytes was sent in {max}",
                    encoded.len()
                );
                if untainted {
                    assert!(ring.in_flight.len() < slots, "sent into a full ring");
                    if !ring.flag_tainted {
                        assert_eq!(
                            notify, ring.waiting,
                            "notify while the peer's flag is {}",
                            ring.waiting
                        );
                    }
                }
                let ring = &mut self.rings[r];
                ring.in_flight.push_back(InFlight {
                    msg,
                    index: ring.next_index,
                    tainted: false,
                });
                ring.next_index = ring.next_index.wrapping_add(1);
                self.next_seq += 1;
            }
            Ok(Sent::Full) => {
                self.full += 1;
                if untainted {
                    // The receiver publishes its index every quarter ring (or before waiting).
                    let batch = (slots / 4).max(1);
                    assert!(
                        ring.in_flight.len() + batch > slots,
                        "Full with {} of {slots} in flight",
                        ring.in_flight.len()
                    );
                }
            }
            Err(ChannelError::TooLarge { len, max: m }) => {
                self.too_large += 1;
                assert_eq!((len, m), (encoded.len(), max), "TooLarge figures");
                assert!(encoded.len() > max, "refused a message that fits");
            }
            Err(e) => self.on_error(side, e, "send"),
        }
    }

    fn recv(&mut self, side: Side, via: Via, buf: usize) {
        let r = 1 - tx_ring(side);
        let broken = self.endpoint(side).broken();
        let result: Result<Option<Result<Msg, ()>>, ChannelError> = match via {
            Via::Typed => self.endpoint(side).try_recv::<Msg>().map(|m| m.map(Ok)),
            Via::With => self
                .endpoint(side)
                .recv_with(|bytes| postcard::from_bytes::<Msg>(bytes).map_err(|_| ())),
            Via::Bytes => {
                let mut buffer = vec![0u8; buf];
                match self.endpoint(side).try_recv_bytes(&mut buffer) {
                    Ok(Some(n)) => {
                        assert!(
                            n <= buffer.len().min(self.max_payload()),
                            "received {n} bytes"
                        );
                        Ok(Some(
                            postcard::from_bytes::<Msg>(&buffer[..n]).map_err(|_| ()),
                        ))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        if let Some(b) = broken {
            assert_eq!(
                result.err(),
                Some(ChannelError::Broken(b)),
                "receive on a broken endpoint"
            );
            return;
        }
        let ring = &mut self.rings[r];
        match result {
            Ok(None) => {
                if !ring.tainted {
                    assert!(
                        ring.in_flight.is_empty(),
                        "nothing received with {} in flight",
                        ring.in_flight.len()
                    );
                }
            }
            Ok(Some(got)) => {
                if ring.tainted {
                    ring.in_flight.pop_front();
                    return;
                }
                let expected = ring
                    .in_flight
                    .pop_front()
                    .expect("received from an empty ring");
                if !expected.tainted {
                    assert_eq!(
                        got.as_ref().ok(),
                        Some(&expected.msg),
                        "a message that was not sent"
                    );
                    self.delivered += 1;
                }
            }
            Err(ChannelError::TooLarge { len, max }) => {
                assert_eq!(via, Via::Bytes, "only a caller's buffer can be too small");
                assert_eq!(max, buf);
                if !ring.tainted {
                    let front = ring.in_flight.front().expect("TooLarge from an empty ring");
                    if !front.tainted {
                        assert_eq!(len, front.msg.encoded().len(), "TooLarge length");
                    }
                }
            }
            Err(e) => {
                self.on_error(side, e, "receive");
                let ring = &mut self.rings[r];
                // What broke it is not delivered; the rest of the ring no longer matters.
                ring.tainted = true;
            }
        }
    }

    fn prepare_wait(&mut self, side: Side) {
        let r = 1 - tx_ring(side);
        let broken = self.endpoint(side).broken();
        let result = self.endpoint(side).prepare_wait();
        if let Some(b) = broken {
            assert_eq!(
                result,
                Err(ChannelError::Broken(b)),
                "prepare_wait on a broken endpoint"
            );
            return;
        }
        let ring = &mut self.rings[r];
        match result {
            Ok(data) => {
                if !ring.tainted {
                    assert_eq!(data, !ring.in_flight.is_empty(), "prepare_wait");
                }
                ring.waiting = !data;
            }
            Err(e) => {
                self.on_error(side, e, "prepare_wait");
                self.rings[r].tainted = true;
            }
        }
    }

    fn scribble(&mut self, offset: usize, bytes: &[u8]) {
        let len = self.region.len();
        let offset = offset % len;
        let bytes = &bytes[..bytes.len().min(len - offset)];
        if bytes.is_empty() {
            return;
        }
        if overlaps(offset, bytes.len(), GENERATION_OFFSET as usize, 4) {
            self.generation_tainted = true;
        }
        let g = self.geometry;
        let slot_size = g.slot_size as usize;
        let control = RING_CONTROL_SIZE as usize;
        for ring in &mut self.rings {
            let slots_at = ring.offset + control;
            let word = |at: u64| overlaps(offset, bytes.len(), ring.offset + at as usize, 4);
            if word(CONSUMER_OFFSET) {
                ring.tainted = true;
            }
            if word(WAITING_OFFSET) {
                ring.flag_tainted = true;
            }
            let slots_end = slots_at + g.slot_count as usize * slot_size;
            if overlaps(offset, bytes.len(), slots_at, slots_end - slots_at) {
                // Which slots: every one the scribble covers.
                let first = offset.saturating_sub(slots_at) / slot_size;
                let last = (offset + bytes.len() - 1)
                    .min(slots_end - 1)
                    .saturating_sub(slots_at)
                    / slot_size;
                for slot in first..=last {
                    // Bytes of the slot that matter: the sequence word (it can make any index
                    // look published or not), the length word and the payload.
                    let s = slots_at + slot * slot_size;
                    if overlaps(offset, bytes.len(), s + SEQ_OFFSET as usize, 4) {
                        ring.tainted = true;
                    }
                    let hits_len = overlaps(offset, bytes.len(), s + LEN_OFFSET as usize, 4);
                    let hits_payload = overlaps(
                        offset,
                        bytes.len(),
                        s + SLOT_HEADER as usize,
                        slot_size - SLOT_HEADER as usize,
                    );
                    if hits_len || hits_payload {
                        ring.taint_slot(slot, g.slot_count);
                    }
                }
            }
        }
        self.region.write_bytes(offset, bytes);
    }
}

impl RingModel {
    /// Taints the message in flight in slot number `slot`, if there is one.
    fn taint_slot(&mut self, slot: usize, slot_count: u32) {
        for m in &mut self.in_flight {
            if (m.index & (slot_count - 1)) as usize == slot {
                m.tainted = true;
            }
        }
    }
}

#[cfg(test)]
pub mod strategy;

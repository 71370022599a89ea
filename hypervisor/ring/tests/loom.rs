//! Model check of the concurrent protocol with loom: both ends in their own threads, every
//! interleaving of their shared-memory accesses (up to a preemption bound), the slots as loom
//! cells so that any payload access the indices do not order is reported as a race.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p bulkhead-ring --release --test loom`
//!
//! - FIFO: every message arrives once, intact, in order, through full rings and the wrap.
//! - No lost wake-up: a receiver that sleeps (an event modelled by a loom mutex and condition
//!   variable, raised only when `send` says `notify`) is always woken; a lost one leaves a
//!   thread blocked for ever, which loom reports as a deadlock.
#![cfg(loom)]

use bulkhead_abi::channel::Geometry;
use bulkhead_ring::{Endpoint, Sent, SharedRegion, Side};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// The hypervisor's event for one qube: raised by the peer's notify, coalesced, consumed by
/// waiting.
#[derive(Default)]
struct Event {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    fn raise(&self) {
        *self.pending.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut p = self.pending.lock().unwrap();
        while !*p {
            p = self.cv.wait(p).unwrap();
        }
        *p = false;
    }
}

/// A channel with two 1 KiB slots per ring (the smallest ring), indices starting at `start`.
fn pair(start: u32) -> (Endpoint, Endpoint) {
    let size = 12288;
    let g = Geometry::new(size as u64, 1024).unwrap();
    assert_eq!(g.slot_count, 2);
    let region = SharedRegion::model(&g, size, start);
    (
        Endpoint::open(region.clone(), Side::A).unwrap(),
        Endpoint::open(region, Side::B).unwrap(),
    )
}

/// Sends, yielding while the ring is full, raising `peer` when told to.
fn send(ep: &mut Endpoint, peer: Option<&Event>, v: u32) {
    loop {
        match ep.send(&v).unwrap() {
            Sent::Queued { notify } => {
                if notify {
                    peer.expect("notify asked of a polling peer").raise();
                }
                return;
            }
            Sent::Full => thread::yield_now(),
        }
    }
}

/// Receives, sleeping on `own` (or yielding, when polling) while the ring is empty.
fn recv(ep: &mut Endpoint, own: Option<&Event>) -> u32 {
    loop {
        if let Some(v) = ep.try_recv::<u32>().unwrap() {
            return v;
        }
        match own {
            Some(ev) => {
                if !ep.prepare_wait().unwrap() {
                    ev.wait();
                }
                ep.finish_wait();
            }
            None => thread::yield_now(),
        }
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b
}

/// One way, three messages through a two-slot ring (full once), the receiver sleeping.
#[test]
fn one_way_with_events() {
    builder().check(|| {
        let (mut a, mut b) = pair(u32::MAX - 1);
        let ev_b = Arc::new(Event::default());
        let ev = ev_b.clone();
        let rx = thread::spawn(move || {
            for i in 0..3 {
                assert_eq!(recv(&mut b, Some(&ev)), i);
            }
        });
        for i in 0..3 {
            send(&mut a, Some(&ev_b), i);
        }
        rx.join().unwrap();
    });
}

/// Polling both ways at once: each side sends two and receives two, interleaved.
#[test]
fn both_ways_polling() {
    builder().check(|| {
        let (mut a, mut b) = pair(u32::MAX);
        let other = thread::spawn(move || {
            send(&mut b, None, 10);
            assert_eq!(recv(&mut b, None), 0);
            send(&mut b, None, 11);
            assert_eq!(recv(&mut b, None), 1);
        });
        send(&mut a, None, 0);
        send(&mut a, None, 1);
        assert_eq!(recv(&mut a, None), 10);
        assert_eq!(recv(&mut a, None), 11);
        other.join().unwrap();
    });
}

/// Request and reply, both ends sleeping when idle: two round trips.
#[test]
fn ping_pong_with_events() {
    builder().check(|| {
        let (mut a, mut b) = pair(0);
        let (ev_a, ev_b) = (Arc::new(Event::default()), Arc::new(Event::default()));
        let (ea, eb) = (ev_a.clone(), ev_b.clone());
        let server = thread::spawn(move || {
            for _ in 0..2 {
                let v = recv(&mut b, Some(&eb));
                send(&mut b, Some(&ea), v + 100);
            }
        });
        for i in 0..2 {
            send(&mut a, Some(&ev_b), i);
            assert_eq!(recv(&mut a, Some(&ev_a)), i + 100);
        }
        server.join().unwrap();
    });
}

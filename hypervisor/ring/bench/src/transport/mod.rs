//! The transports measured, in the order they are reported.

pub mod atomic;
#[cfg(feature = "iceoryx2")]
mod iceoryx2;
pub mod queues;
pub mod ring;
pub mod streams;

use crate::harness::{self, Cores, Duplex, Measured, Plan};
use queues::Queue;

/// What every transport is given.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Messages a transport holds in one direction (the ring's slot count; the queues get
    /// the same capacity).
    pub slots: usize,
    /// Where the two sides run.
    pub cores: Cores,
}

/// One measurement of one transport, or why it could not be made.
pub type Measure = fn(&Plan, &Setup) -> Result<Measured, String>;

/// A transport in the report.
pub struct Transport {
    /// Short name (JSON key, `--only`).
    pub name: &'static str,
    /// What it is, for the table.
    pub label: &'static str,
    /// Round trip.
    pub round_trip: Measure,
    /// One way.
    pub one_way: Measure,
    /// Send and receive on one thread (the software path, no cross-core traffic), where the
    /// transport allows it.
    pub same_thread: Option<Measure>,
    /// What the one-way figure is, where it is not simply this transport streaming.
    pub one_way_note: Option<&'static str>,
}

/// A transport that could not be measured here, and why.
pub struct Missing {
    /// Short name.
    pub name: &'static str,
    /// Why.
    pub why: String,
}

/// Every transport this build can measure, and the ones it cannot.
pub fn all() -> (Vec<Transport>, Vec<Missing>) {
    let mut list = vec![
        Transport {
            name: "atomic",
            label: "one-line atomic ping-pong",
            round_trip: |plan, s| {
                let (a, b) = atomic::ping_pong();
                Ok(harness::round_trip(plan, s.cores, a, b))
            },
            one_way: |plan, s| {
                let (tx, rx) = atomic::lines(s.slots);
                Ok(harness::one_way(plan, s.cores, tx, rx))
            },
            same_thread: None,
            one_way_note: Some(
                "one way: a ring of 64-byte lines whose indices are published once per 16 messages (lines cross in bursts)",
            ),
        },
        Transport {
            name: "ring",
            label: "Bulkhead ring, postcard encode + decode (128-byte slots)",
            round_trip: |plan, s| {
                let (a, b) = ring::pair(s.slots)?;
                Ok(harness::round_trip(plan, s.cores, a, b))
            },
            one_way: |plan, s| {
                let (a, b) = ring::pair(s.slots)?;
                Ok(harness::one_way(plan, s.cores, a, b))
            },
            same_thread: Some(|plan, s| {
                let (a, b) = ring::pair(s.slots)?;
                Ok(harness::same_thread(plan, s.cores, Duplex { tx: a, rx: b }))
            }),
            one_way_note: None,
        },
        queue::<queues::Rtrb>("rtrb", "rtrb 0.3 (SPSC, by value)"),
        queue::<queues::Crossbeam>("crossbeam", "crossbeam-channel 0.5 bounded (by value)"),
        queue::<queues::StdMpsc>("std-mpsc", "std::sync::mpsc::sync_channel (by value)"),
        Transport {
            name: "pipe",
            label: "pipe pair (64-byte write, blocking read)",
            round_trip: |plan, s| {
                let (a_tx, b_rx) = streams::pipe();
                let (b_tx, a_rx) = streams::pipe();
                let a = Duplex { tx: a_tx, rx: a_rx };
                let b = Duplex { tx: b_tx, rx: b_rx };
                Ok(harness::round_trip(plan, s.cores, a, b))
            },
            one_way: |plan, s| {
                let (tx, rx) = streams::pipe();
                Ok(harness::one_way(plan, s.cores, tx, rx))
            },
            same_thread: Some(|plan, s| {
                let (tx, rx) = streams::pipe();
                Ok(harness::same_thread(plan, s.cores, Duplex { tx, rx }))
            }),
            one_way_note: None,
        },
        Transport {
            name: "unix-socket",
            label: "Unix socket pair (64-byte write, blocking read)",
            round_trip: |plan, s| {
                let (a, b) = streams::unix_socket_both_ways();
                Ok(harness::round_trip(plan, s.cores, a, b))
            },
            one_way: |plan, s| {
                let (tx, rx) = streams::unix_socket();
                Ok(harness::one_way(plan, s.cores, tx, rx))
            },
            same_thread: Some(|plan, s| {
                let (tx, rx) = streams::unix_socket();
                Ok(harness::same_thread(plan, s.cores, Duplex { tx, rx }))
            }),
            one_way_note: None,
        },
    ];
    let mut missing = Vec::new();
    iceoryx2_entry(&mut list, &mut missing);
    (list, missing)
}

fn queue<Q: Queue>(name: &'static str, label: &'static str) -> Transport {
    Transport {
        name,
        label,
        round_trip: |plan, s| {
            let (a_tx, b_rx) = Q::with_capacity(s.slots);
            let (b_tx, a_rx) = Q::with_capacity(s.slots);
            let a = Duplex { tx: a_tx, rx: a_rx };
            let b = Duplex { tx: b_tx, rx: b_rx };
            Ok(harness::round_trip(plan, s.cores, a, b))
        },
        one_way: |plan, s| {
            let (tx, rx) = Q::with_capacity(s.slots);
            Ok(harness::one_way(plan, s.cores, tx, rx))
        },
        same_thread: Some(|plan, s| {
            let (tx, rx) = Q::with_capacity(s.slots);
            Ok(harness::same_thread(plan, s.cores, Duplex { tx, rx }))
        }),
        one_way_note: None,
    }
}

#[cfg(feature = "iceoryx2")]
use iceoryx2::entry as iceoryx2_entry;

#[cfg(not(feature = "iceoryx2"))]
fn iceoryx2_entry(_: &mut Vec<Transport>, missing: &mut Vec<Missing>) {
    missing.push(Missing {
        name: "iceoryx2",
        why: "not built in (cargo feature `iceoryx2` off)".to_string(),
    });
}

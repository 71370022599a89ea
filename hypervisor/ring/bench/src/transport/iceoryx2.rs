//! iceoryx2 publish-subscribe (shared memory, zero-copy), inter-thread: one service per
//! direction, `[u8; 64]` samples, the thread-safe IPC service variant so the ports can move
//! to the measuring threads. The subscriber's buffer holds as many samples as the other
//! transports' capacity, safe overflow is off and the publisher retries until delivered, so
//! nothing is dropped; both ends busy-poll (`send_copy` and `receive` in a spin loop).

use super::{Missing, Transport};
use crate::harness::{self, Duplex, Receiver, Sender};
use crate::message::Msg;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

type Svc = ipc_threadsafe::Service;

/// Publishing half, with the node that owns it.
pub struct Tx {
    port: Publisher<Svc, [u8; 64], ()>,
    _node: Node<Svc>,
}

/// Subscribing half, with the node that owns it.
pub struct Rx {
    port: Subscriber<Svc, [u8; 64], ()>,
    _node: Node<Svc>,
}

fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("{what}: {e:?}")
}

/// A fresh one-way service holding `slots` samples per subscriber.
fn service(slots: usize) -> Result<(Tx, Rx), String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "bulkhead-bench/{}/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let name: ServiceName = name
        .as_str()
        .try_into()
        .map_err(|e| err("service name", e))?;
    let node = |what| NodeBuilder::new().create::<Svc>().map_err(|e| err(what, e));
    let (pub_node, sub_node) = (node("publisher node")?, node("subscriber node")?);
    let open = |node: &Node<Svc>| {
        node.service_builder(&name)
            .publish_subscribe::<[u8; 64]>()
            .subscriber_max_buffer_size(slots)
            .history_size(0)
            .enable_safe_overflow(false)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .map_err(|e| err("service", e))
    };
    let publisher = open(&pub_node)?
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(|e| err("publisher", e))?;
    let subscriber = open(&sub_node)?
        .subscriber_builder()
        .buffer_size(slots)
        .create()
        .map_err(|e| err("subscriber", e))?;
    Ok((
        Tx {
            port: publisher,
            _node: pub_node,
        },
        Rx {
            port: subscriber,
            _node: sub_node,
        },
    ))
}

impl Sender for Tx {
    fn send(&mut self, msg: &Msg) {
        let bytes = msg.to_bytes();
        loop {
            match self.port.send_copy(bytes) {
                Ok(1) => return,
                Ok(_) => std::hint::spin_loop(),
                Err(e) => panic!("iceoryx2 send: {e:?}"),
            }
        }
    }
}

impl Receiver for Rx {
    fn recv(&mut self) -> Msg {
        loop {
            match self.port.receive() {
                Ok(Some(sample)) => return Msg::from_bytes(&sample),
                Ok(None) => std::hint::spin_loop(),
                Err(e) => panic!("iceoryx2 receive: {e:?}"),
            }
        }
    }
}

/// The iceoryx2 row.
pub fn entry(list: &mut Vec<Transport>, _: &mut Vec<Missing>) {
    set_log_level(LogLevel::Error);
    list.push(Transport {
        name: "iceoryx2",
        label: "iceoryx2 0.10 publish-subscribe, ipc_threadsafe ([u8; 64] samples, send_copy)",
        round_trip: |plan, s| {
            let (a_tx, b_rx) = service(s.slots)?;
            let (b_tx, a_rx) = service(s.slots)?;
            Ok(harness::round_trip(
                plan,
                s.cores,
                Duplex { tx: a_tx, rx: a_rx },
                Duplex { tx: b_tx, rx: b_rx },
            ))
        },
        one_way: |plan, s| {
            let (tx, rx) = service(s.slots)?;
            Ok(harness::one_way(plan, s.cores, tx, rx))
        },
        same_thread: Some(|plan, s| {
            let (tx, rx) = service(s.slots)?;
            Ok(harness::same_thread(plan, s.cores, Duplex { tx, rx }))
        }),
        one_way_note: None,
    });
}

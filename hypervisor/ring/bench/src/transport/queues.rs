//! In-process queues that carry the message by value: rtrb, crossbeam-channel (bounded) and
//! std's `sync_channel`. Both ends busy-poll (`try_send` / `try_recv` in a spin loop), as the
//! ring's ends do, so the figures compare data structures, not thread wake-ups.

use crate::harness::{Receiver, Sender};
use crate::message::Msg;

/// A bounded queue's halves; `cap` is the number of messages it holds.
pub trait Queue {
    /// Sending half.
    type Tx: Sender;
    /// Receiving half.
    type Rx: Receiver;
    /// A new queue of `cap` messages.
    fn with_capacity(cap: usize) -> (Self::Tx, Self::Rx);
}

/// rtrb: a wait-free SPSC ring buffer.
pub struct Rtrb;

impl Queue for Rtrb {
    type Tx = rtrb::Producer<Msg>;
    type Rx = rtrb::Consumer<Msg>;
    fn with_capacity(cap: usize) -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(cap)
    }
}

impl Sender for rtrb::Producer<Msg> {
    fn send(&mut self, msg: &Msg) {
        while self.push(*msg).is_err() {
            std::hint::spin_loop();
        }
    }
}

impl Receiver for rtrb::Consumer<Msg> {
    fn recv(&mut self) -> Msg {
        loop {
            if let Ok(m) = self.pop() {
                return m;
            }
            std::hint::spin_loop();
        }
    }
}

/// crossbeam-channel, bounded (an MPMC array queue).
pub struct Crossbeam;

impl Queue for Crossbeam {
    type Tx = crossbeam_channel::Sender<Msg>;
    type Rx = crossbeam_channel::Receiver<Msg>;
    fn with_capacity(cap: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(cap)
    }
}

impl Sender for crossbeam_channel::Sender<Msg> {
    fn send(&mut self, msg: &Msg) {
        while self.try_send(*msg).is_err() {
            std::hint::spin_loop();
        }
    }
}

impl Receiver for crossbeam_channel::Receiver<Msg> {
    fn recv(&mut self) -> Msg {
        loop {
            if let Ok(m) = self.try_recv() {
                return m;
            }
            std::hint::spin_loop();
        }
    }
}

/// std::sync::mpsc::sync_channel (bounded).
pub struct StdMpsc;

impl Queue for StdMpsc {
    type Tx = std::sync::mpsc::SyncSender<Msg>;
    type Rx = std::sync::mpsc::Receiver<Msg>;
    fn with_capacity(cap: usize) -> (Self::Tx, Self::Rx) {
        std::sync::mpsc::sync_channel(cap)
    }
}

impl Sender for std::sync::mpsc::SyncSender<Msg> {
    fn send(&mut self, msg: &Msg) {
        while self.try_send(*msg).is_err() {
            std::hint::spin_loop();
        }
    }
}

impl Receiver for std::sync::mpsc::Receiver<Msg> {
    fn recv(&mut self) -> Msg {
        loop {
            if let Ok(m) = self.try_recv() {
                return m;
            }
            std::hint::spin_loop();
        }
    }
}

//! The AppVM's channels. On the hypervisor each channel is a PCI function ([`uio`]: found in
//! sysfs, bound to `uio_pci_generic`, its region mmap'd, its doorbell and events in I/O
//! ports); the messages travel through a `bulkhead-ring` endpoint over that region
//! ([`ring`]). The protocol code above (bridge, services) sees only [`Transport`], so the
//! host tests run it over two endpoints sharing one heap buffer ([`ring::pair`]).

pub mod ring;
pub mod uio;

pub use bulkhead_ring::{Breach, ChannelError, Side};
pub use ring::RingChannel;

use serde::Serialize;
use std::io;

/// A message transport to one peer: postcard messages, never blocking.
///
/// [`ChannelError::Reset`] means the peer restarted and the hypervisor reset the channel:
/// the transport has already reopened itself, and the caller starts its conversation again
/// (its `Hello`). [`ChannelError::Broken`] means the peer broke the protocol: the transport
/// stays unusable until a reset.
pub trait Transport {
    /// Sends `msg` if the ring has room (raising the peer's event when it waits);
    /// `Ok(false)` when full (nothing sent).
    fn try_send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError>;
    /// Takes the next message, if there is one, and calls `f` on a private copy of its bytes.
    fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError>;
    /// How many of our messages the peer has not taken yet, as far as it has said (it
    /// publishes its progress in batches and before it waits).
    fn unconsumed(&self) -> u32;
    /// [`Transport::try_send`], but a peer that waits is told only at the next
    /// [`Transport::flush`], once for the whole batch (one doorbell, so one VM exit, instead
    /// of one per message). The caller flushes before it sleeps.
    fn try_send_batched<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError> {
        self.try_send(msg)
    }
    /// Rings the doorbell once if a batched send found the peer waiting.
    fn flush(&mut self) {}
    /// The channel's bulk area, if it has one.
    fn bulk(&mut self) -> Option<&mut bulkhead_ring::Bulk> {
        None
    }
}

/// Raises the peer's event (the channel device's DOORBELL register on the hypervisor).
pub trait Doorbell {
    /// Rings once.
    fn ring(&mut self) -> io::Result<()>;
}

/// A doorbell that only counts (host tests; a peer that polls).
#[derive(Debug, Default)]
pub struct CountingBell {
    /// Times rung.
    pub rung: u64,
}

impl Doorbell for CountingBell {
    fn ring(&mut self) -> io::Result<()> {
        self.rung += 1;
        Ok(())
    }
}

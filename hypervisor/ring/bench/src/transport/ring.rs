//! The Bulkhead ring: one channel region (ring 0 carries A→B, ring 1 B→A) in ordinary
//! memory, an [`Endpoint`] on each side. Every message is postcard-encoded into its slot by
//! `send` and decoded out of it by `try_recv`, both included in the timing; both ends
//! busy-poll (`Sent::Full` and `None` are retried).

use crate::harness::{Receiver, Sender};
use crate::message::Msg;
use bulkhead_abi::channel::Geometry;
use bulkhead_ring::{Endpoint, Sent, SharedRegion, Side};

/// Bytes per slot: the 65-byte encoded message needs more than a 64-byte slot's 56.
pub const SLOT_SIZE: u32 = 128;

/// One end of the channel.
pub struct RingEnd(Endpoint);

/// The smallest channel region with at least `slots` slots per ring.
pub fn geometry(slots: usize) -> Result<(u64, Geometry), String> {
    (3..=bulkhead_abi::channel::MAX_CHANNEL_SIZE / 4096)
        .map(|pages| pages * 4096)
        .find_map(|size| {
            Geometry::new(size, SLOT_SIZE)
                .filter(|g| g.slot_count as usize >= slots)
                .map(|g| (size, g))
        })
        .ok_or_else(|| format!("no channel region holds {slots} slots of {SLOT_SIZE} bytes"))
}

/// Both ends of a fresh channel with at least `slots` slots per ring.
pub fn pair(slots: usize) -> Result<(RingEnd, RingEnd), String> {
    let (size, geometry) = geometry(slots)?;
    let region = SharedRegion::zeroed(size as usize);
    region.init_header(&geometry);
    let a = Endpoint::open(region.clone(), Side::A).map_err(|e| format!("opening side A: {e}"))?;
    let b = Endpoint::open(region, Side::B).map_err(|e| format!("opening side B: {e}"))?;
    Ok((RingEnd(a), RingEnd(b)))
}

impl RingEnd {
    /// Sends any postcard message, spinning while the ring is full.
    pub fn send_msg<T: serde::Serialize>(&mut self, msg: &T) {
        loop {
            match self.0.send(msg) {
                Ok(Sent::Queued { .. }) => return,
                Ok(Sent::Full) => std::hint::spin_loop(),
                Err(e) => panic!("ring send: {e}"),
            }
        }
    }

    /// Receives a postcard message, spinning until one is there.
    pub fn recv_msg<T: serde::de::DeserializeOwned>(&mut self) -> T {
        loop {
            match self.0.try_recv::<T>() {
                Ok(Some(m)) => return m,
                Ok(None) => std::hint::spin_loop(),
                Err(e) => panic!("ring receive: {e}"),
            }
        }
    }
}

impl Sender for RingEnd {
    fn send(&mut self, msg: &Msg) {
        self.send_msg(msg)
    }
}

impl Receiver for RingEnd {
    fn recv(&mut self) -> Msg {
        self.recv_msg()
    }
}

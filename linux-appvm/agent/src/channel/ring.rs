//! A [`Transport`] over a `bulkhead-ring` endpoint, with the channel's bulk area when it has
//! one: the same code over the mmap'd BARs of a channel device and, in the tests, over heap
//! buffers shared by two endpoints.

use super::{ChannelError, CountingBell, Doorbell, Side, Transport};
use bulkhead_abi::channel::{GENERATION_OFFSET, Geometry, HEADER_BYTES};
use bulkhead_ring::{Bulk, Endpoint, Sent, SharedRegion};
use serde::Serialize;

/// One end of a channel with its doorbell (and its bulk area, if it has one).
pub struct RingChannel<D: Doorbell> {
    ep: Endpoint,
    bulk: Option<Box<Bulk>>,
    region: SharedRegion,
    side: Side,
    /// The reset generation when the endpoint was (re)opened.
    generation: u32,
    doorbell: D,
    /// Doorbells rung.
    pub notifies: u64,
    /// Doorbell writes that failed (logged by the owner, not fatal: the peer may poll).
    pub doorbell_errors: u64,
    /// A batched send found the peer waiting: ring at the next flush.
    bell_pending: bool,
    /// Resets seen (the peer restarted).
    pub resets: u64,
}

impl<D: Doorbell> std::fmt::Debug for RingChannel<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingChannel")
            .field("side", &self.side)
            .field("ep", &self.ep)
            .finish_non_exhaustive()
    }
}

/// The reset generation in a region's header.
fn generation(region: &SharedRegion) -> u32 {
    let mut w = [0u8; 4];
    region.read_bytes(GENERATION_OFFSET as usize, &mut w);
    u32::from_le_bytes(w)
}

impl<D: Doorbell> RingChannel<D> {
    /// Opens `side` of the channel in `region` (its header checked by the ring).
    pub fn open(region: SharedRegion, side: Side, doorbell: D) -> Result<Self, ChannelError> {
        let generation = generation(&region);
        let ep = Endpoint::open(region.clone(), side)?;
        Ok(RingChannel {
            ep,
            bulk: None,
            region,
            side,
            generation,
            doorbell,
            notifies: 0,
            doorbell_errors: 0,
            bell_pending: false,
            resets: 0,
        })
    }

    /// Adds the channel's bulk area in `region`, which the hypervisor says is `size` bytes
    /// (the channel device's capability): the header the ring checked must name the same size
    /// (the peer can write the header; it cannot change what the hypervisor said), else
    /// [`ChannelError::BadHeader`].
    pub fn with_bulk(mut self, region: SharedRegion, size: u32) -> Result<Self, ChannelError> {
        if self.ep.bulk_size() != size {
            return Err(ChannelError::BadHeader);
        }
        self.bulk = Some(Box::new(Bulk::open(region, self.side, size)?));
        Ok(self)
    }

    /// The channel's bulk area, if it has one: lend buffers from our pool, read the peer's
    /// (`bulkhead_ring::Bulk`). A breach it reports breaks the channel as a ring breach does;
    /// after a reset (the peer restarted) every loan is forgotten.
    pub fn bulk(&mut self) -> Option<&mut Bulk> {
        self.bulk.as_deref_mut()
    }

    /// The reset generation the region's header holds now (the hypervisor bumps it at every
    /// reset: a disposable's request channel moves on when the disposable powered off).
    pub fn generation(&self) -> u32 {
        generation(&self.region)
    }

    /// Which side we are.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The shared region (tests play the hostile peer through it).
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Largest message payload.
    pub fn max_payload(&self) -> usize {
        self.ep.max_payload()
    }

    /// What the peer did wrong, if it broke the channel.
    pub fn broken(&self) -> Option<Breach> {
        self.ep.broken()
    }

    /// Sends `bytes` as one message, as they are (tests play a peer sending garbage).
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<bool, ChannelError> {
        let sent = self.ep.send_bytes(bytes);
        Ok(matches!(self.after(sent)?, Sent::Queued { .. }))
    }

    /// The doorbell.
    pub fn doorbell(&mut self) -> &mut D {
        &mut self.doorbell
    }

    /// Sets our waiting flag before the caller sleeps: true means a message is already here
    /// (do not sleep). Call [`RingChannel::finish_wait`] after.
    pub fn prepare_wait(&mut self) -> Result<bool, ChannelError> {
        let r = self.ep.prepare_wait();
        self.after(r)
    }

    /// Clears our waiting flag after a sleep.
    pub fn finish_wait(&mut self) {
        self.ep.finish_wait();
    }

    /// Reopens the endpoint when the channel was reset: on `Reset` from the ring, and also
    /// when a broken endpoint (which reports only its breach) sees the generation move.
    fn after<R>(&mut self, r: Result<R, ChannelError>) -> Result<R, ChannelError> {
        let reset = match &r {
            Err(ChannelError::Reset) => true,
            Err(ChannelError::Broken(_)) => generation(&self.region) != self.generation,
            _ => false,
        };
        if reset {
            self.generation = generation(&self.region);
            self.ep = self.ep.reopen()?;
            if let Some(b) = self.bulk.as_deref_mut() {
                b.reset();
            }
            self.resets += 1;
            return Err(ChannelError::Reset);
        }
        r
    }
}

use super::Breach;

impl<D: Doorbell> RingChannel<D> {
    fn ring_bell(&mut self) {
        self.notifies += 1;
        if self.doorbell.ring().is_err() {
            self.doorbell_errors += 1;
        }
    }
}

impl<D: Doorbell> Transport for RingChannel<D> {
    fn try_send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError> {
        let sent = self.ep.send(msg);
        match self.after(sent)? {
            Sent::Queued { notify } => {
                if notify {
                    self.bell_pending = false;
                    self.ring_bell();
                }
                Ok(true)
            }
            Sent::Full => Ok(false),
        }
    }

    fn try_send_batched<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError> {
        let sent = self.ep.send(msg);
        match self.after(sent)? {
            Sent::Queued { notify } => {
                self.bell_pending |= notify;
                Ok(true)
            }
            Sent::Full => Ok(false),
        }
    }

    fn flush(&mut self) {
        if std::mem::take(&mut self.bell_pending) {
            self.ring_bell();
        }
    }

    fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError> {
        let r = self.ep.recv_with(f);
        self.after(r)
    }

    fn bulk(&mut self) -> Option<&mut Bulk> {
        RingChannel::bulk(self)
    }

    fn unconsumed(&self) -> u32 {
        // The peer's consumer index is any value: the difference is only a number to wait
        // on, bounded by the caller's timeout.
        self.ep.unconsumed()
    }
}

/// Two connected ends over one heap buffer of `size` bytes with `slot_size`-byte slots (side
/// A first), as the hypervisor would set them up: for tests.
pub fn pair(
    size: usize,
    slot_size: u32,
) -> Option<(RingChannel<CountingBell>, RingChannel<CountingBell>)> {
    let region = SharedRegion::zeroed(size);
    region.init_header(&Geometry::new(size as u64, slot_size)?);
    let a = RingChannel::open(region.clone(), Side::A, CountingBell::default()).ok()?;
    let b = RingChannel::open(region, Side::B, CountingBell::default()).ok()?;
    Some((a, b))
}

/// [`pair`] with a bulk area of `bulk_size` bytes (its own heap buffer, as the hypervisor
/// gives it a window of its own): for tests.
pub fn pair_with_bulk(
    size: usize,
    slot_size: u32,
    bulk_size: u32,
) -> Option<(RingChannel<CountingBell>, RingChannel<CountingBell>)> {
    let region = SharedRegion::zeroed(size);
    let g = Geometry::new(size as u64, slot_size)?.with_bulk(u64::from(bulk_size))?;
    region.init_header(&g);
    let bulk = SharedRegion::zeroed(bulk_size as usize);
    let end = |side| {
        RingChannel::open(region.clone(), side, CountingBell::default())
            .and_then(|c| c.with_bulk(bulk.clone(), bulk_size))
            .ok()
    };
    Some((end(Side::A)?, end(Side::B)?))
}

/// Plays the hypervisor resetting the channel: new header and indices, generation bumped.
pub fn reset_region(region: &SharedRegion) {
    let mut header = [0u8; HEADER_BYTES];
    region.read_bytes(0, &mut header);
    if let Some(g) = Geometry::from_header(&header, region.len() as u64) {
        let next = generation(region).wrapping_add(1);
        region.init_header(&g);
        region.write_bytes(GENERATION_OFFSET as usize, &next.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_abi::proto::{BulkRef, NET_SLOT_SIZE, Net};

    #[test]
    fn messages_cross_and_notify_a_waiting_peer() {
        let (mut a, mut b) = pair(16384, 128).unwrap();
        assert!(a.try_send(&7u32).unwrap());
        assert_eq!(a.unconsumed(), 1);
        assert_eq!(b.try_recv_with(|m| m.to_vec()).unwrap(), Some(vec![7]));
        assert_eq!(b.prepare_wait(), Ok(false));
        assert!(a.try_send(&8u32).unwrap());
        assert_eq!((a.notifies, a.doorbell().rung), (1, 1));
        b.finish_wait();
        // The consumer published its index before it waited.
        assert_eq!(a.unconsumed(), 1);
        assert_eq!(b.prepare_wait(), Ok(true));
    }

    #[test]
    fn a_batch_rings_once_at_the_flush() {
        let (mut a, mut b) = pair(16384, 128).unwrap();
        assert_eq!(b.prepare_wait(), Ok(false));
        for i in 0..5u32 {
            assert!(a.try_send_batched(&i).unwrap());
        }
        assert_eq!(a.doorbell().rung, 0);
        a.flush();
        a.flush();
        assert_eq!((a.notifies, a.doorbell().rung), (1, 1));
        b.finish_wait();
        // A peer that does not wait is not rung at all.
        assert!(a.try_send_batched(&9u32).unwrap());
        a.flush();
        assert_eq!(a.doorbell().rung, 1);
    }

    #[test]
    fn a_bulk_buffer_crosses_and_a_reset_forgets_the_loans() {
        let (mut a, mut b) = pair_with_bulk(16384, 128, 64 * 1024).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let r = a.bulk().unwrap().lend(&data).unwrap();
        assert!(a.try_send(&r).unwrap());
        let got: BulkRef = b
            .try_recv_with(|m| postcard::from_bytes(m).unwrap())
            .unwrap()
            .unwrap();
        let mut copy = vec![0u8; got.len as usize];
        assert_eq!(b.bulk().unwrap().read(&got, &mut copy), Ok(data.len()));
        assert_eq!(copy, data);
        assert_eq!(a.bulk().unwrap().lent_pages(), 3);
        // Outside the lender's pool: the borrower's bulk area breaks, its ring does not.
        let outside = BulkRef {
            offset: 32 * 1024,
            ..got
        };
        assert!(matches!(
            b.bulk().unwrap().read(&outside, &mut copy),
            Err(ChannelError::Broken(Breach::BulkOutOfRange { .. }))
        ));
        // The lender restarts: the hypervisor resets the channel; both ends forget.
        reset_region(a.region());
        assert_eq!(a.try_send(&1u8), Err(ChannelError::Reset));
        assert_eq!(b.try_recv_with(|_| ()), Err(ChannelError::Reset));
        assert_eq!(a.bulk().unwrap().lent_pages(), 0);
        assert_eq!(b.bulk().unwrap().broken(), None);
    }

    #[test]
    fn a_bulk_area_must_be_the_size_the_hypervisor_said() {
        let region = SharedRegion::zeroed(16384);
        let g = Geometry::new(16384, 128).unwrap().with_bulk(65536).unwrap();
        region.init_header(&g);
        let open = |size: u32| {
            RingChannel::open(region.clone(), Side::B, CountingBell::default())
                .unwrap()
                .with_bulk(SharedRegion::zeroed(size as usize), size)
                .map(|_| ())
        };
        assert_eq!(open(65536), Ok(()));
        // A header scribbled to name another size (or a capability that disagrees).
        assert_eq!(open(131072), Err(ChannelError::BadHeader));
        assert_eq!(open(0), Err(ChannelError::BadHeader));
    }

    #[test]
    fn a_reset_reopens_and_mends_a_breach() {
        let (mut a, mut b) = pair(65536, NET_SLOT_SIZE).unwrap();
        // The peer sends bytes that are no u32 (more than 5 bytes of varint): a breach.
        assert!(a.try_send(&Net::Frame(&[1; 20])).unwrap());
        let got = b.try_recv_with(|_| ()).map(|_| ());
        assert_eq!(got, Ok(()));
        assert!(a.try_send(&[0xffu8; 8]).unwrap());
        assert!(b.ep.try_recv::<u32>().is_err());
        assert!(b.broken().is_some());
        assert!(matches!(
            b.try_recv_with(|_| ()),
            Err(ChannelError::Broken(_))
        ));
        reset_region(b.region());
        assert_eq!(b.try_recv_with(|_| ()), Err(ChannelError::Reset));
        assert_eq!(b.resets, 1);
        assert_eq!(b.broken(), None);
        assert_eq!(a.try_send(&1u8), Err(ChannelError::Reset));
        assert!(a.try_send(&1u8).unwrap());
        assert_eq!(b.try_recv_with(|m| m.to_vec()).unwrap(), Some(vec![1]));
    }
}

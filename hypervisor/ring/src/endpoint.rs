//! One end of a channel: sends on one ring, receives on the other.

use crate::error::{Breach, ChannelError, PeerIndex};
use crate::shm::{Ring, SharedRegion};
use crate::sync::{Ordering, fence};
use bulkhead_abi::channel::{
    CHANNEL_VERSION, Geometry, HEADER_BYTES, header_version, published_seq,
};

/// Which end of a channel this is (the system description names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Sends on ring 0, receives on ring 1.
    A,
    /// Sends on ring 1, receives on ring 0.
    B,
}

/// What happened to a message given to [`Endpoint::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a full ring sent nothing, and `notify` asks the caller to raise the peer's event"]
pub enum Sent {
    /// The message is in the ring. With `notify`, the peer had announced it waits for an event
    /// (its waiting flag was set when we looked, after publishing): raise its event, or it may
    /// sleep on a ring that is not empty. Without, the peer is polling and needs nothing.
    Queued {
        /// Raise the peer's event.
        notify: bool,
    },
    /// The ring is full; nothing was sent. Try again once the peer has received.
    Full,
}

/// One end of a channel: the sending side of one ring and the receiving side of the other.
///
/// Its own indices live here; the copies in shared memory are only written, never read back
/// (except once, by [`Endpoint::open`], to learn where the hypervisor started them). Every
/// value the peer writes is checked before use, and the first breach of the protocol breaks
/// the endpoint for good: every later call returns [`ChannelError::Broken`] (until
/// [`Endpoint::reopen`]).
pub struct Endpoint {
    region: SharedRegion,
    side: Side,
    /// The header's reset generation when we opened; a change means the channel was reset.
    generation: u32,
    tx: Ring,
    rx: Ring,
    /// Slots per ring.
    slot_count: u32,
    /// Bytes of the channel's bulk area (0: none).
    bulk_size: u32,
    /// Our producer index on `tx`: the next slot we fill.
    tx_tail: u32,
    /// The peer's consumer index on `tx` when we last read it: slots before it are free.
    tx_head_seen: u32,
    /// Our consumer index on `rx`: the next slot we read.
    rx_head: u32,
    /// The length word of slot `rx_head` when its sequence word said it holds a message.
    rx_ready: Option<u32>,
    /// The consumer index we last stored in shared memory.
    rx_published: u32,
    /// Store the consumer index once this many slots were read since the last store.
    publish_batch: u32,
    /// Our waiting flag on `rx` is set.
    waiting: bool,
    broken: Option<Breach>,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("slot_count", &self.slot_count)
            .field("tx_tail", &self.tx_tail)
            .field("rx_head", &self.rx_head)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Opens `side` of the channel in `region`: reads and checks the header once (it must be
    /// exactly what the hypervisor writes for a region of this size; it is never read again)
    /// and takes its starting indices from the region.
    ///
    /// A header of another layout version is refused with [`ChannelError::Version`].
    pub fn open(region: SharedRegion, side: Side) -> Result<Endpoint, ChannelError> {
        if !region.is_page_aligned() {
            return Err(ChannelError::BadHeader);
        }
        let mut header = [0u8; HEADER_BYTES];
        let size = u64::try_from(region.len()).map_err(|_| ChannelError::BadHeader)?;
        if !region.read_bytes(0, &mut header) {
            return Err(ChannelError::BadHeader);
        }
        match header_version(&header) {
            Some(CHANNEL_VERSION) => {}
            Some(found) => {
                return Err(ChannelError::Version {
                    found,
                    expected: CHANNEL_VERSION,
                });
            }
            None => return Err(ChannelError::BadHeader),
        }
        let geometry = Geometry::from_header(&header, size).ok_or(ChannelError::BadHeader)?;
        let (tx, rx) = match side {
            Side::A => (0, 1),
            Side::B => (1, 0),
        };
        let tx = Ring::new(&region, &geometry, tx).ok_or(ChannelError::BadHeader)?;
        let rx = Ring::new(&region, &geometry, rx).ok_or(ChannelError::BadHeader)?;
        // A fresh channel: we produce from where the peer's consumer index starts.
        let tx_tail = tx.consumer().load(Ordering::Relaxed);
        let rx_head = rx.consumer().load(Ordering::Relaxed);
        let generation = region.generation();
        Ok(Endpoint {
            region,
            side,
            generation,
            tx,
            rx,
            slot_count: geometry.slot_count,
            bulk_size: geometry.bulk_size,
            tx_tail,
            tx_head_seen: tx_tail,
            rx_head,
            rx_ready: None,
            rx_published: rx_head,
            publish_batch: (geometry.slot_count / 4).max(1),
            waiting: false,
            broken: None,
        })
    }

    /// Opens the same side of the same region again and clears a breach. After
    /// [`ChannelError::Reset`] (the hypervisor started the region over) this is a fresh start
    /// from the indices the region holds now. Without a reset it goes on from this endpoint's
    /// own indices, never from the consumer index last published (which lags by up to a
    /// quarter ring): no message is delivered twice.
    pub fn reopen(&self) -> Result<Endpoint, ChannelError> {
        let mut fresh = Endpoint::open(self.region.clone(), self.side)?;
        if fresh.generation == self.generation {
            fresh.tx_tail = self.tx_tail;
            fresh.tx_head_seen = self.tx_head_seen;
            fresh.rx_head = self.rx_head;
            fresh.rx_published = self.rx_published;
        }
        Ok(fresh)
    }

    /// Largest message payload, in bytes (postcard-encoded size for [`Endpoint::send`]).
    #[inline]
    pub fn max_payload(&self) -> usize {
        self.tx.max_payload()
    }

    /// Bytes of the channel's bulk area as the header names it (0: none); open it with
    /// [`crate::Bulk::open`].
    pub fn bulk_size(&self) -> u32 {
        self.bulk_size
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Slots per ring: how many messages can be in flight one way.
    pub fn capacity(&self) -> u32 {
        self.slot_count
    }

    /// How many of the messages we sent the peer has not yet said it received: our producer
    /// index minus the consumer index it last published (every quarter ring, and before it
    /// waits), at most a ring. A number to wait on, nothing more: the peer writes it.
    pub fn unconsumed(&self) -> u32 {
        let head = self.tx.consumer().load(Ordering::Acquire);
        self.tx_tail.wrapping_sub(head).min(self.slot_count)
    }

    /// What broke the channel, if the peer did.
    pub fn broken(&self) -> Option<Breach> {
        self.broken
    }

    /// Encodes `msg` with postcard straight into the next free slot and publishes it.
    ///
    /// [`ChannelError::TooLarge`] (with the encoded size) when it does not fit a slot.
    pub fn send<T: serde::Serialize + ?Sized>(&mut self, msg: &T) -> Result<Sent, ChannelError> {
        self.check()?;
        if !self.tx_has_space()? {
            return Ok(Sent::Full);
        }
        let len = match postcard::serialize_with_flavor(msg, self.tx.writer(self.tx_tail)) {
            Ok(len) => len,
            Err(postcard::Error::SerializeBufferFull) => {
                return Err(
                    match postcard::serialize_with_flavor(
                        msg,
                        postcard::ser_flavors::Size::default(),
                    ) {
                        Ok(len) => ChannelError::TooLarge {
                            len,
                            max: self.max_payload(),
                        },
                        Err(_) => ChannelError::Encode,
                    },
                );
            }
            Err(_) => return Err(ChannelError::Encode),
        };
        Ok(self.publish(len))
    }

    /// Sends `bytes` as they are (the receiver gets them from [`Endpoint::try_recv_bytes`]).
    #[inline]
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<Sent, ChannelError> {
        self.check()?;
        if bytes.len() > self.max_payload() {
            return Err(ChannelError::TooLarge {
                len: bytes.len(),
                max: self.max_payload(),
            });
        }
        if !self.tx_has_space()? {
            return Ok(Sent::Full);
        }
        if !self.tx.writer(self.tx_tail).put(bytes) {
            return Err(ChannelError::TooLarge {
                len: bytes.len(),
                max: self.max_payload(),
            });
        }
        Ok(self.publish(bytes.len()))
    }

    /// Receives and decodes the next message, if there is one. The slot is copied out of
    /// shared memory first and decoded from that private copy, so the peer cannot change it
    /// halfway through. A message that does not decode as `T` (or leaves bytes over) breaks
    /// the channel with [`Breach::Decode`].
    ///
    /// The copy is on the stack: 256 bytes for messages up to that size, 4 KiB up to that,
    /// 64 KiB beyond (only channels with slots that large can carry such messages).
    #[inline]
    pub fn try_recv<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, ChannelError> {
        self.check()?;
        if !self.rx_has_data()? {
            return Ok(None);
        }
        let len = self.rx_len()?;
        let decoded = self.rx.with_payload(self.rx_head, len, decode_all::<T>);
        self.rx_advance();
        if decoded.is_err() {
            self.broken = Some(Breach::Decode);
        }
        decoded
    }

    /// Receives the next message's bytes into `buf` and returns their number. A message longer
    /// than `buf` stays in the ring and [`ChannelError::TooLarge`] says how long it is.
    #[inline]
    pub fn try_recv_bytes(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        self.check()?;
        if !self.rx_has_data()? {
            return Ok(None);
        }
        let len = self.rx_len()?;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(ChannelError::TooLarge {
                len,
                max: buf.len(),
            });
        };
        if !self.rx.read_payload(self.rx_head, dst) {
            return Err(self.length_breach(len));
        }
        self.rx_advance();
        Ok(Some(len))
    }

    /// Receives the next message and calls `f` on its bytes: a private copy on the stack (as
    /// for [`Endpoint::try_recv`]), never the shared slot, so `f` may read them as often as it
    /// likes and borrow from them (to decode a borrowing type, say).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError> {
        self.check()?;
        if !self.rx_has_data()? {
            return Ok(None);
        }
        let len = self.rx_len()?;
        let r = self.rx.with_payload(self.rx_head, len, f);
        self.rx_advance();
        Ok(Some(r))
    }

    /// Announces that we are about to wait for the peer's event: publishes our consumer
    /// index, sets our waiting flag, then (after a SeqCst fence, the other half of the one in
    /// [`Endpoint::send`]) looks at the ring again. True: a message is already there, so do
    /// not sleep (the flag is cleared again). False: sleep; the peer's next send will ask for
    /// the event. Call [`Endpoint::finish_wait`] after waking.
    pub fn prepare_wait(&mut self) -> Result<bool, ChannelError> {
        self.check()?;
        if self.rx_has_data()? {
            self.finish_wait();
            return Ok(true);
        }
        self.publish_consumer();
        self.rx.waiting().store(1, Ordering::Relaxed);
        self.waiting = true;
        fence(Ordering::SeqCst);
        match self.rx_has_data() {
            Ok(false) => Ok(false),
            other => {
                self.finish_wait();
                other
            }
        }
    }

    /// Clears our waiting flag: the peer stops asking for events until the next
    /// [`Endpoint::prepare_wait`].
    pub fn finish_wait(&mut self) {
        if self.waiting {
            self.rx.waiting().store(0, Ordering::Relaxed);
            self.waiting = false;
        }
    }

    #[inline]
    fn check(&self) -> Result<(), ChannelError> {
        // A breach stays reported as such; a reset is only news for a working endpoint.
        if self.broken.is_none() && self.region.generation() != self.generation {
            return Err(ChannelError::Reset);
        }
        match self.broken {
            Some(b) => Err(ChannelError::Broken(b)),
            None => Ok(()),
        }
    }

    fn breach(&mut self, b: Breach) -> ChannelError {
        self.broken = Some(b);
        ChannelError::Broken(b)
    }

    fn length_breach(&mut self, len: usize) -> ChannelError {
        let max = u32::try_from(self.max_payload()).unwrap_or(u32::MAX);
        self.breach(Breach::LengthOutOfRange {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            max,
        })
    }

    /// Whether the next `tx` slot is free; re-reads the peer's consumer index only when the
    /// ring looks full.
    #[inline]
    fn tx_has_space(&mut self) -> Result<bool, ChannelError> {
        if self.tx_tail.wrapping_sub(self.tx_head_seen) < self.slot_count {
            return Ok(true);
        }
        // Acquire: the peer's reads of the slots it frees happen before our next writes.
        let head = self.tx.consumer().load(Ordering::Acquire);
        // It may only move forward, up to what we sent.
        if head.wrapping_sub(self.tx_head_seen) > self.tx_tail.wrapping_sub(self.tx_head_seen) {
            let (low, high) = (self.tx_head_seen, self.tx_tail);
            return Err(self.breach(Breach::IndexOutOfRange {
                index: PeerIndex::Consumer,
                value: head,
                low,
                high,
            }));
        }
        self.tx_head_seen = head;
        Ok(self.tx_tail.wrapping_sub(head) < self.slot_count)
    }

    /// Publishes the slot just written: its sequence and length words in one store (release);
    /// then (SeqCst fence, paired with the one in `prepare_wait`) looks at the peer's waiting
    /// flag.
    #[inline]
    fn publish(&mut self, len: usize) -> Sent {
        // `len <= max_payload < u32::MAX`: the writers refuse more.
        self.tx
            .publish_slot(self.tx_tail, published_seq(self.tx_tail), len as u32);
        self.tx_tail = self.tx_tail.wrapping_add(1);
        fence(Ordering::SeqCst);
        let notify = self.tx.waiting().load(Ordering::Relaxed) != 0;
        Sent::Queued { notify }
    }

    /// Whether slot `rx_head` holds a message: its sequence word is the one its producer
    /// stores when it publishes index `rx_head`. The lap before's word, or 0 (never written),
    /// means not yet; any other value is a breach.
    #[inline]
    fn rx_has_data(&mut self) -> Result<bool, ChannelError> {
        if self.rx_ready.is_some() {
            return Ok(true);
        }
        let (seq, len) = self.rx.slot_seq_len(self.rx_head);
        let expected = published_seq(self.rx_head);
        if seq == expected {
            self.rx_ready = Some(len);
            return Ok(true);
        }
        if seq == expected.wrapping_sub(self.slot_count) || seq == 0 {
            return Ok(false);
        }
        let index = self.rx_head;
        Err(self.breach(Breach::SequenceOutOfRange {
            index,
            value: seq,
            expected,
        }))
    }

    /// The length of slot `rx_head` (read with its sequence word by `rx_has_data`), checked
    /// against the payload size.
    #[inline]
    fn rx_len(&mut self) -> Result<usize, ChannelError> {
        let len = self.rx_ready.unwrap_or(u32::MAX);
        match usize::try_from(len) {
            Ok(n) if n <= self.max_payload() => Ok(n),
            _ => Err(self.length_breach(usize::try_from(len).unwrap_or(usize::MAX))),
        }
    }

    /// Frees slot `rx_head`; stores the consumer index every `publish_batch` slots.
    #[inline]
    fn rx_advance(&mut self) {
        self.rx_head = self.rx_head.wrapping_add(1);
        self.rx_ready = None;
        if self.rx_head.wrapping_sub(self.rx_published) >= self.publish_batch {
            self.publish_consumer();
        }
    }

    /// Stores our consumer index (release: our reads of the freed slots happen before the
    /// peer's next writes to them).
    #[inline]
    fn publish_consumer(&mut self) {
        if self.rx_published != self.rx_head {
            self.rx.consumer().store(self.rx_head, Ordering::Release);
            self.rx_published = self.rx_head;
        }
    }
}

/// Decodes a whole message, already in the shape `try_recv` returns: a breach if it does not
/// decode or leaves bytes over.
#[inline]
fn decode_all<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, ChannelError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((msg, [])) => Ok(Some(msg)),
        _ => Err(ChannelError::Broken(Breach::Decode)),
    }
}

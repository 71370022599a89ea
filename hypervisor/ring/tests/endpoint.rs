//! The endpoint's behaviour, case by case: opening, sizes, full rings, waiting, and every kind
//! of breach a peer can commit.

use bulkhead_abi::channel::{
    CONSUMER_OFFSET, Geometry, LEN_OFFSET, RING_CONTROL_SIZE, SEQ_OFFSET, WAITING_OFFSET,
};
use bulkhead_ring::{Breach, ChannelError, Endpoint, PeerIndex, Sent, SharedRegion, Side};

const QUEUED: Result<Sent, ChannelError> = Ok(Sent::Queued { notify: false });

/// A fresh channel of `size` bytes with `slot`-byte slots, indices at `start`.
fn channel_at(size: usize, slot: u32, start: u32) -> (SharedRegion, Geometry, Endpoint, Endpoint) {
    let g = Geometry::new(size as u64, slot).expect("a real geometry");
    let region = SharedRegion::zeroed(size);
    region.init_header_at(&g, start);
    let a = Endpoint::open(region.clone(), Side::A).unwrap();
    let b = Endpoint::open(region.clone(), Side::B).unwrap();
    (region, g, a, b)
}

fn channel(size: usize, slot: u32) -> (SharedRegion, Geometry, Endpoint, Endpoint) {
    channel_at(size, slot, 0)
}

fn put_u32(region: &SharedRegion, at: u64, value: u32) {
    assert!(region.write_bytes(at as usize, &value.to_le_bytes()));
}

fn get_u32(region: &SharedRegion, at: u64) -> u32 {
    let mut w = [0; 4];
    assert!(region.read_bytes(at as usize, &mut w));
    u32::from_le_bytes(w)
}

/// Offset of slot `i`'s length word in ring `ring`.
fn slot_at(g: &Geometry, ring: usize, i: u32) -> u64 {
    seq_at(g, ring, i) - SEQ_OFFSET + LEN_OFFSET
}

/// Offset of slot `i`'s sequence word in ring `ring`.
fn seq_at(g: &Geometry, ring: usize, i: u32) -> u64 {
    u64::from(g.ring_offset[ring]) + RING_CONTROL_SIZE + u64::from(i * g.slot_size) + SEQ_OFFSET
}

#[test]
fn open_refuses_what_is_not_a_channel() {
    let g = Geometry::new(16384, 128).unwrap();
    // No header at all.
    let blank = SharedRegion::zeroed(16384);
    assert_eq!(
        Endpoint::open(blank.clone(), Side::A).err(),
        Some(ChannelError::BadHeader)
    );
    // A header for another size.
    let other = Geometry::new(32768, 128).unwrap();
    blank.init_header(&other);
    assert_eq!(
        Endpoint::open(blank.clone(), Side::B).err(),
        Some(ChannelError::BadHeader)
    );
    // One wrong byte.
    blank.init_header(&g);
    assert!(Endpoint::open(blank.clone(), Side::A).is_ok());
    blank.write_bytes(20, &[0xFF]);
    assert_eq!(
        Endpoint::open(blank.clone(), Side::A).err(),
        Some(ChannelError::BadHeader)
    );
    // Too small to hold a header.
    let tiny = SharedRegion::zeroed(16);
    assert_eq!(
        Endpoint::open(tiny, Side::A).err(),
        Some(ChannelError::BadHeader)
    );
    // Not page-aligned.
    let big = SharedRegion::zeroed(16384 + 4096);
    // SAFETY: 16384 bytes from offset 8 lie inside `big`, which outlives `shifted` (it is
    // dropped at the end of the test, after the `open` that returns at once).
    let shifted = unsafe { SharedRegion::new(big.as_ptr().add(8), 16384) };
    shifted.init_header(&g);
    assert_eq!(
        Endpoint::open(shifted, Side::A).err(),
        Some(ChannelError::BadHeader)
    );
}

#[test]
fn messages_arrive_in_order_both_ways() {
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    for i in 0..100u32 {
        assert_eq!(a.send(&(i, "from a")), QUEUED);
        assert_eq!(b.send(&[i; 3]), QUEUED);
        assert_eq!(
            b.try_recv::<(u32, String)>(),
            Ok(Some((i, "from a".to_string())))
        );
        assert_eq!(a.try_recv::<[u32; 3]>(), Ok(Some([i; 3])));
    }
    assert_eq!(a.try_recv::<u32>(), Ok(None));
    assert_eq!(b.try_recv::<u32>(), Ok(None));
    // Raw bytes, and a borrowed look at a private copy.
    assert_eq!(a.send_bytes(b"raw"), QUEUED);
    let mut buf = [0; 8];
    assert_eq!(b.try_recv_bytes(&mut buf), Ok(Some(3)));
    assert_eq!(&buf[..3], b"raw");
    assert_eq!(a.send(&"borrowed"), QUEUED);
    assert_eq!(
        b.recv_with(|bytes| postcard::from_bytes::<&str>(bytes).map(str::len)),
        Ok(Some(Ok(8)))
    );
    // An empty message.
    assert_eq!(a.send(&()), QUEUED);
    assert_eq!(b.try_recv::<()>(), Ok(Some(())));
    assert_eq!(b.try_recv::<()>(), Ok(None));
}

#[test]
fn a_full_ring_says_so_and_frees_up() {
    // 1 KiB slots: two per ring.
    let (_r, g, mut a, mut b) = channel(12288, 1024);
    assert_eq!(g.slot_count, 2);
    assert_eq!(a.capacity(), 2);
    assert_eq!(a.send(&1u8), QUEUED);
    assert_eq!(a.send(&2u8), QUEUED);
    assert_eq!(a.send(&3u8), Ok(Sent::Full));
    assert_eq!(b.try_recv::<u8>(), Ok(Some(1)));
    assert_eq!(a.send(&3u8), QUEUED);
    assert_eq!(a.send(&4u8), Ok(Sent::Full));
    assert_eq!(b.try_recv::<u8>(), Ok(Some(2)));
    assert_eq!(b.try_recv::<u8>(), Ok(Some(3)));
    assert_eq!(b.try_recv::<u8>(), Ok(None));
}

#[test]
fn sizes_are_exact() {
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    assert_eq!(a.max_payload(), 120);
    // A byte string of n bytes encodes as a one-byte length and the bytes.
    assert_eq!(a.send(&serde_bytes_like(119)), QUEUED);
    assert_eq!(
        a.send(&serde_bytes_like(120)),
        Err(ChannelError::TooLarge { len: 121, max: 120 })
    );
    assert_eq!(a.send_bytes(&[7; 120]), QUEUED);
    assert_eq!(
        a.send_bytes(&[7; 121]),
        Err(ChannelError::TooLarge { len: 121, max: 120 })
    );
    assert_eq!(b.try_recv::<Vec<u8>>(), Ok(Some(serde_bytes_like(119))));
    // A buffer too small leaves the message where it is.
    let mut small = [0; 100];
    assert_eq!(
        b.try_recv_bytes(&mut small),
        Err(ChannelError::TooLarge { len: 120, max: 100 })
    );
    let mut big = [0; 200];
    assert_eq!(b.try_recv_bytes(&mut big), Ok(Some(120)));
    assert_eq!(big[..120], [7; 120]);
    assert_eq!(b.broken(), None);
}

fn serde_bytes_like(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

#[test]
fn large_messages_use_the_larger_copies() {
    // 64 KiB slots in the largest region: 8 per ring.
    let size = bulkhead_abi::channel::MAX_CHANNEL_SIZE as usize;
    let (_r, g, mut a, mut b) = channel(size, 65536);
    assert_eq!(g.slot_count, 8);
    for n in [
        0usize,
        200,
        255,
        256,
        257,
        1000,
        4090,
        4095,
        4096,
        4097,
        30000,
        65528 - 3,
    ] {
        let msg = serde_bytes_like(n);
        assert_eq!(a.send(&msg), QUEUED, "{n} bytes");
        assert_eq!(b.try_recv::<Vec<u8>>(), Ok(Some(msg)), "{n} bytes");
    }
    assert_eq!(a.send_bytes(&vec![1; 65528]), QUEUED);
    assert_eq!(b.recv_with(|bytes| bytes.len()), Ok(Some(65528)));
}

#[test]
fn waiting_and_notifying() {
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    // Nothing there: B may sleep, and A's next send asks for the event.
    assert_eq!(b.prepare_wait(), Ok(false));
    assert_eq!(a.send(&1u8), Ok(Sent::Queued { notify: true }));
    assert_eq!(a.send(&2u8), Ok(Sent::Queued { notify: true }));
    b.finish_wait();
    assert_eq!(a.send(&3u8), QUEUED);
    // Something there: B must not sleep, and the flag is down again.
    assert_eq!(b.prepare_wait(), Ok(true));
    assert_eq!(a.send(&4u8), QUEUED);
    for i in 1..=4u8 {
        assert_eq!(b.try_recv::<u8>(), Ok(Some(i)));
    }
    // The flag is per direction: A waiting does not make B's receives notify.
    assert_eq!(a.prepare_wait(), Ok(false));
    assert_eq!(a.send(&5u8), QUEUED);
    assert_eq!(b.send(&6u8), Ok(Sent::Queued { notify: true }));
    assert_eq!(a.prepare_wait(), Ok(true));
    assert_eq!(b.send(&7u8), QUEUED);
}

#[test]
fn waiting_publishes_what_was_received() {
    let (r, g, mut a, mut b) = channel(16384, 128);
    let consumer = u64::from(g.ring_offset[0]) + CONSUMER_OFFSET;
    assert_eq!(a.send(&1u8), QUEUED);
    assert_eq!(b.try_recv::<u8>(), Ok(Some(1)));
    // Published lazily (every quarter ring), but always before sleeping.
    assert_eq!(get_u32(&r, consumer), 0);
    assert_eq!(b.prepare_wait(), Ok(false));
    assert_eq!(get_u32(&r, consumer), 1);
    assert_eq!(get_u32(&r, u64::from(g.ring_offset[0]) + WAITING_OFFSET), 1);
    b.finish_wait();
    assert_eq!(get_u32(&r, u64::from(g.ring_offset[0]) + WAITING_OFFSET), 0);
}

#[test]
fn indices_wrap() {
    let (_r, _g, mut a, mut b) = channel_at(12288, 1024, u32::MAX - 1);
    for i in 0..20u32 {
        assert_eq!(a.send(&i), QUEUED);
        assert_eq!(a.send(&(i + 100)), QUEUED);
        assert_eq!(a.send(&0u32), Ok(Sent::Full));
        assert_eq!(b.try_recv::<u32>(), Ok(Some(i)));
        assert_eq!(b.try_recv::<u32>(), Ok(Some(i + 100)));
    }
}

/// Opens a channel, lets `attack` scribble after A sent one message, then has B receive.
fn breach_on_receive(
    attack: impl Fn(&SharedRegion, &Geometry),
) -> (Endpoint, Endpoint, Result<Option<u32>, ChannelError>) {
    let (r, g, mut a, mut b) = channel_at(16384, 128, 7);
    assert_eq!(a.send(&5u32), QUEUED);
    attack(&r, &g);
    let got = b.try_recv::<u32>();
    (a, b, got)
}

#[test]
fn a_sequence_word_out_of_range_breaks() {
    // B reads index 7 (slot 7 of 32) next; A published it with word 8.
    let (_a, mut b, got) = breach_on_receive(|r, g| put_u32(r, seq_at(g, 0, 7), 9));
    let breach = Breach::SequenceOutOfRange {
        index: 7,
        value: 9,
        expected: 8,
    };
    assert_eq!(got, Err(ChannelError::Broken(breach)));
    assert_eq!(b.broken(), Some(breach));
    // Broken for good, in both directions, on every call.
    assert_eq!(b.try_recv::<u32>(), Err(ChannelError::Broken(breach)));
    assert_eq!(b.send(&1u8), Err(ChannelError::Broken(breach)));
    assert_eq!(b.send_bytes(&[1]), Err(ChannelError::Broken(breach)));
    assert_eq!(b.prepare_wait(), Err(ChannelError::Broken(breach)));
    assert_eq!(
        b.try_recv_bytes(&mut [0; 8]),
        Err(ChannelError::Broken(breach))
    );
    assert_eq!(b.recv_with(|_| ()), Err(ChannelError::Broken(breach)));
    // The lap before's word, or 0, only hides the message (as a silent peer would).
    let (_a, _b, got) =
        breach_on_receive(|r, g| put_u32(r, seq_at(g, 0, 7), 8u32.wrapping_sub(32)));
    assert_eq!(got, Ok(None));
    let (_a, _b, got) = breach_on_receive(|r, g| put_u32(r, seq_at(g, 0, 7), 0));
    assert_eq!(got, Ok(None));
    // A word a lap ahead is not a message from this lap.
    let (r, g, mut a, mut b) = channel_at(16384, 128, 7);
    assert_eq!(a.send(&1u8), QUEUED);
    assert_eq!(b.try_recv::<u8>(), Ok(Some(1)));
    put_u32(&r, seq_at(&g, 0, 8), 9 + 32);
    let ahead = Breach::SequenceOutOfRange {
        index: 8,
        value: 41,
        expected: 9,
    };
    assert_eq!(b.try_recv::<u8>(), Err(ChannelError::Broken(ahead)));
    // And A, the honest side here, carries on.
    assert_eq!(a.send(&3u8), QUEUED);
}

#[test]
fn a_message_crosses_in_its_slot_alone() {
    // Everything a receive reads, besides its own endpoint, is the slot: B finds the
    // message although every control word of the ring it reads is garbage.
    let (r, g, mut a, mut b) = channel(16384, 128);
    put_u32(&r, u64::from(g.ring_offset[0]) + CONSUMER_OFFSET, 0xDEAD);
    assert_eq!(a.send(&77u32), QUEUED);
    assert_eq!(get_u32(&r, seq_at(&g, 0, 0)), 1);
    assert_eq!(b.try_recv::<u32>(), Ok(Some(77)));
}

#[test]
fn a_slot_length_out_of_range_breaks() {
    let (_a, _b, got) = breach_on_receive(|r, g| put_u32(r, slot_at(g, 0, 7), 121));
    assert_eq!(
        got,
        Err(ChannelError::Broken(Breach::LengthOutOfRange {
            len: 121,
            max: 120
        }))
    );
    let (_a, _b, got) = breach_on_receive(|r, g| put_u32(r, slot_at(g, 0, 7), u32::MAX));
    assert_eq!(
        got,
        Err(ChannelError::Broken(Breach::LengthOutOfRange {
            len: u32::MAX,
            max: 120
        }))
    );
    // The same through the byte and borrowed paths.
    let (r, g, mut a, mut b) = channel(16384, 128);
    assert_eq!(a.send_bytes(&[1, 2]), QUEUED);
    put_u32(&r, slot_at(&g, 0, 0), 5000);
    assert!(matches!(
        b.try_recv_bytes(&mut [0; 8]),
        Err(ChannelError::Broken(Breach::LengthOutOfRange { .. }))
    ));
    let (r, g, mut a, mut b) = channel(16384, 128);
    assert_eq!(a.send_bytes(&[1, 2]), QUEUED);
    put_u32(&r, slot_at(&g, 0, 0), 5000);
    assert!(matches!(
        b.recv_with(|_| ()),
        Err(ChannelError::Broken(Breach::LengthOutOfRange { .. }))
    ));
}

#[test]
fn what_does_not_decode_breaks() {
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    // Not a bool.
    assert_eq!(a.send_bytes(&[2]), QUEUED);
    assert_eq!(
        b.try_recv::<bool>(),
        Err(ChannelError::Broken(Breach::Decode))
    );
    // Bytes left over.
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    assert_eq!(a.send_bytes(&[1, 1]), QUEUED);
    assert_eq!(
        b.try_recv::<bool>(),
        Err(ChannelError::Broken(Breach::Decode))
    );
    // Too short.
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    assert_eq!(a.send_bytes(&[]), QUEUED);
    assert_eq!(
        b.try_recv::<u8>(),
        Err(ChannelError::Broken(Breach::Decode))
    );
}

#[test]
fn a_consumer_index_out_of_range_breaks() {
    let (r, g, mut a, mut b) = channel(12288, 1024);
    let consumer = u64::from(g.ring_offset[0]) + CONSUMER_OFFSET;
    assert_eq!(a.send(&1u8), QUEUED);
    assert_eq!(a.send(&2u8), QUEUED);
    // Claims to have read three of the two sent: A looks when the ring is full.
    put_u32(&r, consumer, 3);
    let breach = Breach::IndexOutOfRange {
        index: PeerIndex::Consumer,
        value: 3,
        low: 0,
        high: 2,
    };
    assert_eq!(a.send(&3u8), Err(ChannelError::Broken(breach)));
    assert_eq!(a.try_recv::<u8>(), Err(ChannelError::Broken(breach)));
    // B is fine.
    assert_eq!(b.try_recv::<u8>(), Ok(Some(1)));
    assert_eq!(b.send(&9u8), QUEUED);
}

#[test]
fn nothing_the_peer_writes_after_open_is_trusted_back() {
    let (r, g, mut a, mut b) = channel(16384, 128);
    // The header is read once, at open.
    r.write_bytes(0, &[0xFF; 64]);
    // Our own published index and flag are only ever written.
    put_u32(&r, u64::from(g.ring_offset[0]) + CONSUMER_OFFSET, 0xDEAD);
    put_u32(&r, u64::from(g.ring_offset[0]) + WAITING_OFFSET, 0);
    for i in 0..40u32 {
        assert_eq!(a.send(&i), QUEUED);
        assert_eq!(b.try_recv::<u32>(), Ok(Some(i)));
    }
    // B's index as A reads it is now what B wrote (40 messages = 5 batches of 8).
    assert_eq!(
        get_u32(&r, u64::from(g.ring_offset[0]) + CONSUMER_OFFSET),
        40
    );
    assert!(r.guards_intact());
}

/// Two threads, each end waiting for events when idle (a condition variable plays the
/// hypervisor): every message arrives, in order, and no wake-up is lost.
#[test]
fn two_threads_with_events() {
    use std::sync::{Arc, Condvar, Mutex};

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

    fn recv(ep: &mut Endpoint, ev: &Event) -> u64 {
        loop {
            if let Some(v) = ep.try_recv::<u64>().unwrap() {
                return v;
            }
            if !ep.prepare_wait().unwrap() {
                ev.wait();
            }
            ep.finish_wait();
        }
    }

    fn send(ep: &mut Endpoint, peer: &Event, v: u64) {
        loop {
            match ep.send(&v).unwrap() {
                Sent::Queued { notify } => {
                    if notify {
                        peer.raise();
                    }
                    return;
                }
                Sent::Full => std::thread::yield_now(),
            }
        }
    }

    const N: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        500_000
    };
    let (_r, _g, mut a, mut b) = channel(12288, 1024);
    let (ev_a, ev_b) = (Arc::new(Event::default()), Arc::new(Event::default()));
    let (ea, eb) = (ev_a.clone(), ev_b.clone());
    let echo = std::thread::spawn(move || {
        for i in 0..N {
            let v = recv(&mut b, &eb);
            assert_eq!(v, i);
            send(&mut b, &ea, v * 2);
        }
    });
    // Bursts of up to three (more than the ring holds) one way, replies the other.
    let mut next_reply = 0;
    let mut i = 0;
    while i < N {
        let burst = (i % 4).min(N - i).max(1);
        for _ in 0..burst {
            send(&mut a, &ev_b, i);
            i += 1;
        }
        while next_reply < i {
            assert_eq!(recv(&mut a, &ev_a), next_reply * 2);
            next_reply += 1;
        }
    }
    echo.join().unwrap();
}

#[test]
fn a_reset_is_reported_once_and_reopening_starts_afresh() {
    use bulkhead_abi::channel::GENERATION_OFFSET;
    let (region, g, mut a, mut b) = channel(16384, 128);
    for i in 0..5u32 {
        assert_eq!(a.send(&i), QUEUED);
    }
    assert_eq!(b.try_recv::<u32>(), Ok(Some(0)));
    // The hypervisor resets the channel (B restarted): zero, header, next generation.
    let generation = get_u32(&region, GENERATION_OFFSET);
    region.init_header(&g);
    put_u32(&region, GENERATION_OFFSET, generation.wrapping_add(1));
    // The survivor learns of it before touching the rings, whatever it does.
    assert_eq!(a.send(&9u32), Err(ChannelError::Reset));
    assert_eq!(a.try_recv::<u32>(), Err(ChannelError::Reset));
    assert_eq!(a.prepare_wait(), Err(ChannelError::Reset));
    // Both ends start again from the reset state and talk.
    let mut a = a.reopen().unwrap();
    let mut b = Endpoint::open(region.clone(), Side::B).unwrap();
    assert_eq!(
        b.try_recv::<u32>(),
        Ok(None),
        "nothing from before the reset"
    );
    assert_eq!(a.send(&42u32), QUEUED);
    assert_eq!(b.try_recv::<u32>(), Ok(Some(42)));
    assert_eq!(b.send(&43u32), QUEUED);
    assert_eq!(a.try_recv::<u32>(), Ok(Some(43)));
}

#[test]
fn reopening_without_a_reset_delivers_nothing_twice() {
    let (_r, _g, mut a, mut b) = channel(16384, 128);
    // B has received 5 of 7, and published none of it yet (every 8 = a quarter of 32).
    for i in 0..7u32 {
        assert_eq!(a.send(&i), QUEUED);
    }
    for i in 0..5u32 {
        assert_eq!(b.try_recv::<u32>(), Ok(Some(i)));
    }
    let mut b = b.reopen().unwrap();
    let mut a = a.reopen().unwrap();
    assert_eq!(b.try_recv::<u32>(), Ok(Some(5)));
    assert_eq!(b.try_recv::<u32>(), Ok(Some(6)));
    assert_eq!(b.try_recv::<u32>(), Ok(None));
    // And A goes on where it was: the next message is the next slot.
    assert_eq!(a.send(&7u32), QUEUED);
    assert_eq!(b.try_recv::<u32>(), Ok(Some(7)));
}

#[test]
fn a_channel_of_another_layout_version_is_refused_by_name() {
    let (r, _g, _a, _b) = channel(16384, 128);
    // What a version-1 hypervisor writes: magic ending in version 1, version word 1.
    r.write_bytes(6, &[0, 1]);
    r.write_bytes(8, &1u32.to_le_bytes());
    let err = Endpoint::open(r.clone(), Side::A).unwrap_err();
    assert_eq!(
        err,
        ChannelError::Version {
            found: 1,
            expected: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "the channel has layout version 1, this end speaks version 2"
    );
}

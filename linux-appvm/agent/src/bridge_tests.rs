//! The bridge against a firewall played by the other end of a heap channel and a fake TAP.

use super::*;
use crate::channel::ring::{RingChannel, pair, reset_region};
use crate::channel::{CountingBell, Transport};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::io;

/// A TAP that is two queues.
#[derive(Default)]
struct FakeTap {
    /// Frames the local stack "sent" (the bridge reads them).
    out: VecDeque<Vec<u8>>,
    /// Frames the bridge delivered.
    delivered: Vec<Vec<u8>>,
}

impl FrameDevice for FakeTap {
    fn recv_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(f) = self.out.pop_front() else {
            return Ok(None);
        };
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(Some(f.len()))
    }
    fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.delivered.push(frame.to_vec());
        Ok(())
    }
}

type Chan = RingChannel<CountingBell>;

fn setup() -> (NetBridge<Chan>, Chan, FakeTap) {
    let (fw, client) = pair(65536, bulkhead_abi::proto::NET_SLOT_SIZE).unwrap();
    (
        NetBridge::new(client, "work.net", "work"),
        fw,
        FakeTap::default(),
    )
}

/// Everything the firewall end has received, decoded.
fn firewall_gets(fw: &mut Chan) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = fw
        .try_recv_with(|b| format!("{:?}", postcard::from_bytes::<Net>(b).unwrap()))
        .unwrap()
    {
        got.push(m);
    }
    got
}

fn fw_hello(fw: &mut Chan, version: u16) {
    let hello = Hello {
        version,
        qube: heapless::String::try_from("firewall").unwrap(),
    };
    assert!(fw.try_send(&Net::Hello(hello)).unwrap());
}

#[test]
fn handshake_then_frames_both_ways() {
    let (mut b, mut fw, mut tap) = setup();
    let got = firewall_gets(&mut fw);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("Hello") && got[0].contains("\"work\""),
        "{got:?}"
    );
    // Before the firewall's Hello: the interface's frames are dropped.
    tap.out.push_back(vec![1; 60]);
    assert!(b.pump(&mut tap));
    assert_eq!(b.stats.tx_not_up, 1);
    assert!(!b.is_up());
    fw_hello(&mut fw, PROTO_VERSION);
    assert!(fw.try_send(&Net::Frame(&[2; 42])).unwrap());
    tap.out.push_back(vec![3; 1514]);
    b.pump(&mut tap);
    assert!(b.is_up());
    assert_eq!(tap.delivered, vec![vec![2; 42]]);
    assert_eq!(firewall_gets(&mut fw).len(), 1);
    assert_eq!((b.stats.to_peer, b.stats.from_peer), (1, 1));
    assert_eq!(b.take_notes(), ["work.net: link to firewall is up"]);
    assert!(!b.pump(&mut tap), "nothing left to move");
}

#[test]
fn oversized_and_undecodable_are_dropped_and_counted() {
    let (mut b, mut fw, mut tap) = setup();
    fw_hello(&mut fw, PROTO_VERSION);
    assert!(fw.try_send(&Net::Frame(&[0; MAX_FRAME + 1])).unwrap());
    assert!(fw.try_send_bytes(&[0xff; 30]).unwrap());
    assert!(fw.try_send_bytes(&[]).unwrap());
    tap.out.push_back(vec![0; MAX_FRAME + 1]);
    tap.out.push_back(vec![0; 9000]);
    b.pump(&mut tap);
    assert_eq!(b.stats.rx_oversized, 1);
    assert_eq!(b.stats.undecodable, 2);
    assert_eq!(b.stats.tx_oversized, 2);
    assert!(tap.delivered.is_empty() && b.is_up());
}

#[test]
fn another_version_is_refused() {
    let (mut b, mut fw, mut tap) = setup();
    fw_hello(&mut fw, PROTO_VERSION + 1);
    assert!(fw.try_send(&Net::Frame(&[2; 42])).unwrap());
    b.pump(&mut tap);
    assert!(!b.is_up());
    assert!(tap.delivered.is_empty());
    assert!(b.take_notes()[0].contains("protocol version 2"));
}

#[test]
fn a_full_ring_holds_the_frame_until_the_firewall_reads() {
    let (mut b, mut fw, mut tap) = setup();
    fw_hello(&mut fw, PROTO_VERSION);
    b.pump(&mut tap);
    for i in 0..40u8 {
        tap.out.push_back(vec![i; 100]);
    }
    b.pump(&mut tap);
    assert!(b.has_pending(), "8 slots: the ring fills");
    assert!(
        !b.pump(&mut tap),
        "a full ring is no progress (no spinning)"
    );
    let mut got = 0;
    for _ in 0..100 {
        got += firewall_gets(&mut fw).len();
        b.pump(&mut tap);
        if !b.has_pending() && tap.out.is_empty() {
            break;
        }
    }
    got += firewall_gets(&mut fw).len();
    // Our Hello, then every frame, none lost.
    assert_eq!(got, 41);
    assert_eq!(b.stats.to_peer, 40);
}

#[test]
fn a_reset_starts_the_handshake_again() {
    let (mut b, mut fw, mut tap) = setup();
    fw_hello(&mut fw, PROTO_VERSION);
    b.pump(&mut tap);
    assert!(b.is_up());
    reset_region(fw.region());
    assert_eq!(fw.try_send(&0u8), Err(ChannelError::Reset));
    b.pump(&mut tap);
    assert!(!b.is_up());
    assert!(b.take_notes().iter().any(|n| n.contains("reset")));
    let got = firewall_gets(&mut fw);
    assert!(got.len() == 1 && got[0].contains("Hello"), "{got:?}");
    fw_hello(&mut fw, PROTO_VERSION);
    b.pump(&mut tap);
    assert!(b.is_up());
}

#[test]
fn a_breach_drops_everything_until_a_reset() {
    let (mut b, fw, mut tap) = setup();
    // The sequence word of the firewall's first slot jumps far ahead: a breach.
    let slot0 = 4096 + bulkhead_abi::channel::RING_CONTROL_SIZE as usize;
    fw.region().write_bytes(slot0, &1000u32.to_le_bytes());
    b.pump(&mut tap);
    tap.out.push_back(vec![1; 60]);
    b.pump(&mut tap);
    assert!(b.take_notes()[0].contains("broken"));
    assert_eq!(b.stats.tx_not_up, 1);
    reset_region(fw.region());
    b.pump(&mut tap);
    assert!(b.take_notes()[0].contains("reset"));
}

/// What a hostile firewall does between two pumps.
#[derive(Clone, Debug)]
enum Attack {
    Bytes(Vec<u8>),
    Frame(Vec<u8>),
    Hello(u16, String),
    Scribble(usize, Vec<u8>),
    Reset,
    TapFrame(usize),
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2100).prop_map(Attack::Bytes),
        prop::collection::vec(any::<u8>(), 0..1600).prop_map(Attack::Frame),
        (any::<u16>(), "\\PC{0,30}").prop_map(|(v, q)| Attack::Hello(v, q)),
        (0usize..70000, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Attack::Scribble(at, b)),
        Just(Attack::Reset),
        (0usize..3000).prop_map(Attack::TapFrame),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the firewall writes into the ring or the region, the bridge never panics,
    /// never hands the interface a frame longer than MAX_FRAME, and keeps its counters sane.
    #[test]
    fn a_hostile_firewall_never_panics_the_bridge(attacks in prop::collection::vec(attack(), 1..40)) {
        let (mut b, mut fw, mut tap) = setup();
        for a in attacks {
            match a {
                Attack::Bytes(bytes) => { let _ = fw.try_send_bytes(&bytes); }
                Attack::Frame(f) => { let _ = fw.try_send(&Net::Frame(&f)); }
                Attack::Hello(v, q) => {
                    let mut qube = heapless::String::new();
                    for c in q.chars() { if qube.push(c).is_err() { break; } }
                    let _ = fw.try_send(&Net::Hello(Hello { version: v, qube }));
                }
                Attack::Scribble(at, bytes) => { fw.region().write_bytes(at, &bytes); }
                Attack::Reset => reset_region(fw.region()),
                Attack::TapFrame(len) => tap.out.push_back(vec![0x5a; len]),
            }
            b.pump(&mut tap);
            let _ = fw.try_recv_with(|_| ());
            for n in b.take_notes() {
                prop_assert!(!n.contains('\n'));
            }
        }
        prop_assert!(tap.delivered.iter().all(|f| f.len() <= MAX_FRAME));
    }
}

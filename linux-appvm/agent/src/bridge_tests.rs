//! The bridge against a firewall played by the other end of a heap channel and a fake TAP.

use super::*;
use crate::channel::ring::{RingChannel, pair, reset_region};
use crate::channel::{CountingBell, Transport};
use crate::net::offload::tests::{Seg, kernel_accepts};
use crate::net::offload::{F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4};
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
    /// With a virtio header (offloads on): what the bridge delivered, header and packet.
    vnet: bool,
    delivered_vnet: Vec<(VnetHdr, Vec<u8>)>,
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
    fn vnet(&self) -> bool {
        self.vnet
    }
    fn send_vnet(&mut self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
        assert!(self.vnet);
        self.delivered_vnet
            .push((VnetHdr::parse(hdr).unwrap(), frame.to_vec()));
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

/// Everything the firewall end has received, as raw frames.
fn firewall_frames(fw: &mut Chan) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(m) = fw
        .try_recv_with(|b| match postcard::from_bytes::<Net>(b).unwrap() {
            Net::Frame(f) => Some(f.to_vec()),
            _ => None,
        })
        .unwrap()
    {
        got.extend(m);
    }
    got
}

#[test]
fn a_large_segment_goes_out_as_mss_frames() {
    let (mut b, mut fw, mut tap) = setup();
    tap.vnet = true;
    fw_hello(&mut fw, PROTO_VERSION);
    b.pump(&mut tap);
    firewall_gets(&mut fw);
    // 40 frames' worth: more than the ring holds, so the segment waits half sent.
    let payload: Vec<u8> = (0..40 * 1448u32).map(|i| (i / 7) as u8).collect();
    let seg = Seg::new(77, payload.clone()).frame();
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut read = hdr.to_bytes().to_vec();
    read.extend_from_slice(&seg);
    tap.out.push_back(read);
    // A plain frame behind an empty header follows it.
    let mut plain = VnetHdr::default().to_bytes().to_vec();
    plain.extend_from_slice(&[0x11; 60]);
    tap.out.push_back(plain);
    let mut frames = Vec::new();
    for _ in 0..200 {
        b.pump(&mut tap);
        frames.extend(firewall_frames(&mut fw));
        if !b.has_pending() && tap.out.is_empty() {
            break;
        }
    }
    frames.extend(firewall_frames(&mut fw));
    assert_eq!(frames.len(), 41, "{:?} {:?}", b.stats, b.pending);
    assert_eq!(b.stats.tso_segments, 1);
    let mut got = Vec::new();
    for f in &frames[..40] {
        assert_eq!(f.len(), 54 + 1448);
        got.extend_from_slice(&f[54..]);
    }
    assert_eq!(got, payload);
    assert_eq!(frames[40], vec![0x11; 60]);
    // A read shorter than its header is dropped and counted.
    tap.out.push_back(vec![0; 5]);
    b.pump(&mut tap);
    assert_eq!(b.stats.offload_errors, 1);
}

#[test]
fn in_order_frames_reach_the_interface_as_one_segment() {
    let (mut b, mut fw, mut tap) = setup();
    tap.vnet = true;
    fw_hello(&mut fw, PROTO_VERSION);
    for i in 0..6u32 {
        let mut s = Seg::new(1000 + i * 1448, vec![i as u8; 1448]);
        s.id = i as u16;
        assert!(fw.try_send(&Net::Frame(&s.frame())).unwrap());
    }
    b.pump(&mut tap);
    assert!(tap.delivered.is_empty());
    assert_eq!(tap.delivered_vnet.len(), 1, "one large segment");
    let (h, p) = &tap.delivered_vnet[0];
    kernel_accepts(h, p).unwrap();
    assert_eq!(p.len(), 54 + 6 * 1448);
    assert_eq!(b.stats.from_peer, 6);
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
    /// In-order TCP segments: first sequence number, how many, payload bytes each.
    Segments(u32, u32, usize),
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
        (
            any::<u32>(),
            1u32..12,
            prop_oneof![Just(1448usize), 1usize..1460]
        )
            .prop_map(|(s, n, m)| Attack::Segments(s, n, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the firewall writes into the ring or the region, the bridge never panics,
    /// never hands the interface a frame longer than MAX_FRAME, and keeps its counters sane.
    #[test]
    fn a_hostile_firewall_never_panics_the_bridge(attacks in prop::collection::vec(attack(), 1..40), vnet in any::<bool>()) {
        let (mut b, mut fw, mut tap) = setup();
        tap.vnet = vnet;
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
                Attack::Segments(seq, n, mss) => {
                    for i in 0..n {
                        let s = Seg::new(seq.wrapping_add(i * mss as u32), vec![i as u8; mss]);
                        let _ = fw.try_send(&Net::Frame(&s.frame()));
                    }
                }
            }
            b.pump(&mut tap);
            let _ = fw.try_recv_with(|_| ());
            for n in b.take_notes() {
                prop_assert!(!n.contains('\n'));
            }
        }
        prop_assert!(tap.delivered.iter().all(|f| f.len() <= MAX_FRAME));
        // With offloads: a frame as it came, or a large segment the kernel parses as meant.
        for (h, p) in &tap.delivered_vnet {
            if h.gso_type == GSO_NONE {
                prop_assert_eq!(*h, VnetHdr::default());
                prop_assert!(p.len() <= MAX_FRAME);
            } else {
                prop_assert!(kernel_accepts(h, p).is_ok(), "{:?}", kernel_accepts(h, p));
            }
        }
    }
}

//! Segmentation and coalescing: round trips, and a hostile firewall's frames.

use super::*;
use proptest::prelude::*;

const MAX_FRAME: usize = bulkhead_abi::proto::MAX_FRAME;

/// A TCP/IPv4 frame with correct checksums.
#[derive(Clone, Debug)]
pub(crate) struct Seg {
    pub(crate) src_port: u16,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) window: u16,
    pub(crate) id: u16,
    pub(crate) options: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

impl Seg {
    pub(crate) fn new(seq: u32, payload: Vec<u8>) -> Seg {
        Seg {
            src_port: 80,
            seq,
            ack: 1000,
            flags: TCP_ACK,
            window: 512,
            id: 7,
            options: Vec::new(),
            payload,
        }
    }

    pub(crate) fn frame(&self) -> Vec<u8> {
        let thl = 20 + self.options.len();
        let total = 20 + thl + self.payload.len();
        let mut f = vec![0u8; ETH + total];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut f[ETH..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.id.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = PROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 2, 2]);
        ip[16..20].copy_from_slice(&[10, 137, 0, 10]);
        let tcp = &mut ip[20..];
        tcp[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.to_be_bytes());
        tcp[12] = ((thl / 4) as u8) << 4;
        tcp[13] = self.flags;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        tcp[20..thl].copy_from_slice(&self.options);
        tcp[thl..].copy_from_slice(&self.payload);
        fix_checksums(&mut f);
        f
    }
}

/// Recomputes both checksums of a frame that parses as TCP/IPv4.
fn fix_checksums(f: &mut [u8]) {
    if let Some(t) = parse_tcp4(f) {
        set_ip_checksum(&mut f[ETH..], t.ihl);
        let (a, b) = f[..t.end].split_at_mut(ETH + t.ihl);
        b[16] = 0;
        b[17] = 0;
        let c = !fold(sum(b, pseudo_sum(&a[ETH..], b.len())));
        b[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

/// The straightforward checksum: 16-bit words, one at a time.
fn slow_sum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += u32::from(w);
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Segments a read from the interface the way the bridge does.
fn segment_all(hdr: &VnetHdr, pkt: &[u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut pkt = pkt.to_vec();
    let out = prepare(hdr, &mut pkt, MAX_FRAME)?;
    Ok(match out {
        Outgoing::Frame { len } => vec![pkt[..len].to_vec()],
        Outgoing::Tso { count, .. } => (0..count)
            .map(|i| {
                let mut buf = vec![0u8; MAX_FRAME];
                let n = tso_frame(&pkt, &out, i, &mut buf);
                buf.truncate(n);
                buf
            })
            .collect(),
    })
}

/// The coalescer's output for `frames`, flushed at the end.
fn coalesce(frames: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
    let mut c = Coalescer::new();
    let mut got = Vec::new();
    let mut sink = |h: &VnetHdr, f: &[u8]| got.push((*h, f.to_vec()));
    for f in frames {
        c.push(f, &mut sink);
    }
    c.flush(&mut sink);
    assert!(!c.holding());
    got
}

/// What the kernel checks of a `TCPV4` segment written to the TAP
/// (`virtio_net_hdr_to_skb`, then the IP and TCP receive paths), and more.
pub(crate) fn kernel_accepts(h: &VnetHdr, pkt: &[u8]) -> Result<(), String> {
    let t = parse_tcp4(pkt).ok_or("not TCP/IPv4")?;
    if t.end != pkt.len() {
        return Err("IP length is not the packet's".into());
    }
    if h.gso_type != GSO_TCPV4 || h.flags != F_NEEDS_CSUM {
        return Err(format!("header {h:?}"));
    }
    if usize::from(h.hdr_len) != t.headers() || usize::from(h.hdr_len) > pkt.len() {
        return Err("hdr_len".into());
    }
    if usize::from(h.csum_start) != ETH + t.ihl || h.csum_offset != 16 {
        return Err("checksum offsets".into());
    }
    if h.gso_size == 0 || pkt.len() - t.headers() <= usize::from(h.gso_size) {
        return Err("gso_size".into());
    }
    if fold(sum(&pkt[ETH..ETH + t.ihl], 0)) != 0xffff {
        return Err("IP header checksum".into());
    }
    // Finishing the partial checksum gives a correct one.
    let mut done = pkt.to_vec();
    finish_checksum(&mut done, ETH + t.ihl, 16).map_err(|e| format!("{e:?}"))?;
    if !checksums_ok(&done, &t) {
        return Err("TCP checksum after finishing".into());
    }
    Ok(())
}

/// A frame with the fields segmentation renumbers zeroed (IP id and both checksums),
/// trimmed to its IP length: what must survive coalescing and segmentation unchanged.
fn normal(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    if let Some(t) = parse_tcp4(&f) {
        f.truncate(t.end);
        for at in [
            ETH + 4,
            ETH + 5,
            ETH + 10,
            ETH + 11,
            ETH + t.ihl + 16,
            ETH + t.ihl + 17,
        ] {
            f[at] = 0;
        }
    }
    f
}

/// The coalescer's output, cut back into frames.
fn expand(out: &[(VnetHdr, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (h, f) in out {
        if h.gso_type == GSO_NONE {
            assert_eq!(*h, VnetHdr::default());
            frames.push(f.clone());
        } else {
            kernel_accepts(h, f).unwrap();
            // The large MSS of a hostile run may exceed a frame: segment without the bound.
            let mut pkt = f.clone();
            let seg = prepare(h, &mut pkt, usize::MAX / 4).unwrap();
            let Outgoing::Tso { count, .. } = seg else {
                panic!("a merged run is one frame")
            };
            for i in 0..count {
                let mut buf = vec![0u8; ETH + MAX_IP];
                let n = tso_frame(&pkt, &seg, i, &mut buf);
                frames.push(buf[..n].to_vec());
            }
        }
    }
    frames
}

#[test]
fn sum_matches_the_word_by_word_checksum() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 999, 1000] {
        assert_eq!(fold(sum(&data[..len], 0)), slow_sum(&data[..len]), "{len}");
    }
}

#[test]
fn vnet_header_round_trips() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
    assert_eq!(VnetHdr::parse(&[0; 9]), None);
}

#[test]
fn a_large_segment_becomes_mss_frames() {
    let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let mut big = Seg::new(1_000_000, payload.clone());
    big.flags = TCP_ACK | TCP_PSH | TCP_CWR;
    let mut pkt = big.frame();
    // The kernel leaves the pseudo-header's sum in the TCP checksum field.
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    pkt[50..52].copy_from_slice(&[0x12, 0x34]);
    let frames = segment_all(&hdr, &pkt).unwrap();
    assert_eq!(frames.len(), 4);
    let mut seq = 1_000_000u32;
    let mut got = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let t = parse_tcp4(f).unwrap();
        assert!(checksums_ok(f, &t), "frame {i}");
        assert!(f.len() <= MAX_FRAME);
        assert_eq!(be32(f, 38), seq);
        assert_eq!(be16(f, 18), 7 + i as u16);
        let flags = f[47];
        assert_eq!(flags & TCP_PSH != 0, i == 3);
        assert_eq!(flags & TCP_CWR != 0, i == 0);
        seq += (f.len() - 54) as u32;
        got.extend_from_slice(&f[54..]);
    }
    assert_eq!(got, payload);
}

#[test]
fn a_plain_frame_gets_its_checksum_finished() {
    let s = Seg::new(5, vec![9; 100]);
    let good = s.frame();
    let mut pkt = good.clone();
    // What the kernel hands over: the pseudo-header's sum in the field.
    let t = parse_tcp4(&pkt).unwrap();
    let partial = fold(pseudo_sum(&pkt[ETH..], t.end - ETH - 20));
    pkt[50..52].copy_from_slice(&partial.to_be_bytes());
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    assert_eq!(segment_all(&hdr, &pkt).unwrap(), vec![good.clone()]);
    // Offsets outside the frame are refused, not followed.
    for (start, offset) in [(34, 2000), (5000, 0), (u16::MAX, u16::MAX)] {
        let bad = VnetHdr {
            csum_start: start,
            csum_offset: offset,
            ..hdr
        };
        assert_eq!(
            segment_all(&bad, &pkt),
            Err(OffloadError::BadChecksumOffset)
        );
    }
    // Without NEEDS_CSUM the frame passes as it is.
    assert_eq!(segment_all(&VnetHdr::default(), &pkt).unwrap(), vec![pkt]);
}

#[test]
fn in_order_segments_merge_and_the_rest_pass() {
    let mss = 1448;
    let mut frames = Vec::new();
    let mut seq = 100u32;
    for i in 0..10u16 {
        let mut s = Seg::new(seq, vec![i as u8; mss]);
        s.id = i;
        if i == 9 {
            s.flags |= TCP_PSH;
        }
        frames.push(s.frame());
        seq += mss as u32;
    }
    let out = coalesce(&frames);
    assert_eq!(out.len(), 1);
    let (h, pkt) = &out[0];
    kernel_accepts(h, pkt).unwrap();
    assert_eq!(usize::from(h.gso_size), mss);
    assert_eq!(pkt.len(), 54 + 10 * mss);
    assert_eq!(pkt[47] & TCP_PSH, TCP_PSH);
    assert_eq!(expand(&out), frames);

    // A gap, another flow, a pure ACK, a bad checksum: each ends the run.
    let mut other = Seg::new(0, vec![1; 10]);
    other.src_port = 81;
    let mut corrupt = Seg::new(seq + 2 * mss as u32, vec![3; mss]).frame();
    corrupt[60] ^= 1;
    let frames = vec![
        Seg::new(seq, vec![0; mss]).frame(),
        Seg::new(seq + mss as u32, vec![0; mss]).frame(),
        other.frame(),
        Seg::new(seq + 2 * mss as u32, vec![2; mss]).frame(),
        corrupt.clone(),
        Seg::new(seq + 9 * mss as u32, vec![4; mss]).frame(),
        Seg::new(seq, Vec::new()).frame(),
    ];
    let out = coalesce(&frames);
    let kinds: Vec<u8> = out.iter().map(|(h, _)| h.gso_type).collect();
    assert_eq!(kinds, [GSO_TCPV4, 0, 0, 0, 0, 0]);
    assert_eq!(
        out[3].1, corrupt,
        "a frame that fails its checksum passes as it came"
    );
    let norm = |v: &[Vec<u8>]| v.iter().map(|f| normal(f)).collect::<Vec<_>>();
    assert!(norm(&expand(&out)) == norm(&frames));
}

#[test]
fn a_run_stops_below_64_kib() {
    let mss = 1460;
    let frames: Vec<Vec<u8>> = (0..100u32)
        .map(|i| Seg::new(i * mss as u32, vec![i as u8; mss]).frame())
        .collect();
    let out = coalesce(&frames);
    assert!(out.len() >= 3);
    for (h, f) in &out {
        assert!(f.len() - ETH <= MAX_IP);
        if h.gso_type != GSO_NONE {
            kernel_accepts(h, f).unwrap();
        }
    }
    let norm = |v: &[Vec<u8>]| v.iter().map(|f| normal(f)).collect::<Vec<_>>();
    assert_eq!(norm(&expand(&out)), norm(&frames));
}

/// One frame of a hostile firewall's stream.
#[derive(Clone, Debug)]
enum Hostile {
    /// The next in-order segment of flow `flow` with `len` payload bytes (PSH if `psh`).
    Next { flow: u8, len: usize, psh: bool },
    /// A segment at any sequence number, any flags, options and header fields.
    Any {
        seq: u32,
        flags: u8,
        window: u16,
        options: Vec<u8>,
        len: usize,
    },
    /// A valid segment with bytes overwritten, its checksums fixed again or not.
    Mangled {
        at: usize,
        bytes: Vec<u8>,
        fix: bool,
        len: usize,
    },
    /// Bytes.
    Garbage(Vec<u8>),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        6 => (0u8..2, prop_oneof![Just(1448usize), Just(1460), 0usize..1500], any::<bool>())
            .prop_map(|(flow, len, psh)| Hostile::Next { flow, len, psh: psh && len % 5 == 0 }),
        1 => (any::<u32>(), any::<u8>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..11).prop_map(|mut o| { o.truncate(o.len() / 4 * 4); o }), 0usize..1500)
            .prop_map(|(seq, flags, window, options, len)| Hostile::Any { seq, flags, window, options, len }),
        2 => (0usize..100, prop::collection::vec(any::<u8>(), 1..4), any::<bool>(), 0usize..1500)
            .prop_map(|(at, bytes, fix, len)| Hostile::Mangled { at, bytes, fix, len }),
        1 => prop::collection::vec(any::<u8>(), 0..1600).prop_map(Hostile::Garbage),
    ]
}

fn frames_of(stream: &[Hostile]) -> Vec<Vec<u8>> {
    let mut seqs = [5000u32, u32::MAX - 3000];
    let mut ids = [0u16; 2];
    stream
        .iter()
        .map(|h| match h {
            Hostile::Next { flow, len, psh } => {
                let k = usize::from(*flow);
                let mut s = Seg::new(seqs[k], vec![*flow ^ 0x5a; *len]);
                s.src_port = 80 + u16::from(*flow);
                s.id = ids[k];
                if *psh {
                    s.flags |= TCP_PSH;
                }
                seqs[k] = seqs[k].wrapping_add(*len as u32);
                ids[k] = ids[k].wrapping_add(1);
                s.frame()
            }
            Hostile::Any {
                seq,
                flags,
                window,
                options,
                len,
            } => {
                let mut s = Seg::new(*seq, vec![0xa5; *len]);
                s.flags = *flags;
                s.window = *window;
                s.options = options.clone();
                s.frame()
            }
            Hostile::Mangled {
                at,
                bytes,
                fix,
                len,
            } => {
                let mut f = Seg::new(seqs[0], vec![0x33; *len]).frame();
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(x) = f.get_mut(at + i) {
                        *x = *b;
                    }
                }
                if *fix {
                    fix_checksums(&mut f);
                }
                f
            }
            Hostile::Garbage(g) => g.clone(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever frames the firewall sends, the coalescer never panics; every merged
    /// segment is one the kernel parses as intended (lengths, offsets, checksums); and cut
    /// back into frames, its output is exactly its input (in order, nothing lost, nothing
    /// invented; only IP ids and checksums renumbered, Ethernet padding trimmed).
    #[test]
    fn a_hostile_stream_coalesces_faithfully(stream in prop::collection::vec(hostile(), 1..80)) {
        let frames = frames_of(&stream);
        let out = coalesce(&frames);
        for (h, f) in &out {
            if h.gso_type != GSO_NONE {
                prop_assert!(kernel_accepts(h, f).is_ok(), "{:?}", kernel_accepts(h, f));
                prop_assert!(f.len() - ETH <= MAX_IP);
            }
        }
        let norm = |v: &[Vec<u8>]| v.iter().map(|f| normal(f)).collect::<Vec<_>>();
        prop_assert_eq!(norm(&expand(&out)), norm(&frames));
    }

    /// Any virtio header and bytes from the interface: segmentation never panics, and every
    /// frame it makes fits the channel and carries correct checksums.
    #[test]
    fn segmentation_never_panics(
        flags in any::<u8>(), gso_type in prop_oneof![Just(0u8), Just(1), Just(0x81), any::<u8>()],
        gso_size in prop_oneof![Just(1448u16), 0u16..3000], csum_start in 0u16..200, csum_offset in 0u16..40,
        payload in 0usize..20000, mangle in prop::collection::vec((0usize..80, any::<u8>()), 0..3),
    ) {
        let mut pkt = Seg::new(1, vec![7; payload]).frame();
        for (at, b) in mangle { if let Some(x) = pkt.get_mut(at) { *x = b; } }
        let hdr = VnetHdr { flags, gso_type, hdr_len: 54, gso_size, csum_start, csum_offset };
        if let Ok(frames) = segment_all(&hdr, &pkt)
            && gso_type & !GSO_ECN == GSO_TCPV4
        {
            for f in &frames {
                prop_assert!(f.len() <= MAX_FRAME);
                let t = parse_tcp4(f).unwrap();
                prop_assert!(checksums_ok(f, &t));
            }
        }
    }
}

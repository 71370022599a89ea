//! A long TCP flow through the engine, as `cargo xtask bench --network` moves one: real
//! segments both ways (sequence and acknowledgement numbers, window, options: MSS, SACK,
//! timestamps, window scale), bulk data with PSH, delayed and duplicate ACKs with SACK
//! blocks, retransmissions, window updates, zero windows and window probes, ECN flags,
//! keep-alives across an idle minute, the gateway's MAC confirmed again (and once late),
//! the timers run as the firewall's loop runs them, and an orderly close. Every legitimate
//! segment must come out on the other side, rewritten with valid checksums, and nothing may
//! be dropped or left queued.

mod common;

use bulkhead_firewall_engine::{Port, Verdict};
use common::*;
use smoltcp::wire::{ArpOperation, TcpPacket};

const PSH: u8 = 0x08;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;
const MSS: usize = 1448;
const SPORT: u16 = 44_933;
const DPORT: u16 = 5001;

/// One TCP segment with options and payload, as a client or the peer sends it.
struct Seg {
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    options: Vec<u8>,
    len: usize,
}

fn timestamps(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o
}

fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut o = vec![1, 1, 5, 2 + 8 * blocks.len() as u8];
    for (l, r) in blocks {
        o.extend_from_slice(&l.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
    }
    o
}

fn syn_options() -> Vec<u8> {
    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
    o.extend_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
    o.extend_from_slice(&[1, 3, 3, 7]);
    o
}

/// The frame of `s` from `src` to `dst` (ports `sport` -> `dport`), between these MACs.
fn frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4,
    dst: Ipv4,
    sport: u16,
    dport: u16,
    s: &Seg,
) -> Vec<u8> {
    let mut p = Pkt::new(
        src,
        dst,
        L4::Tcp {
            sport,
            dport,
            flags: s.flags,
        },
    );
    p.src_mac = src_mac;
    p.dst_mac = dst_mac;
    assert_eq!(s.options.len() % 4, 0);
    let mut payload = s.options.clone();
    payload.extend((0..s.len).map(|k| (s.seq as usize + k) as u8));
    p.payload = payload;
    let mut f = p.build();
    let t = &mut f[34..];
    t[4..8].copy_from_slice(&s.seq.to_be_bytes());
    t[8..12].copy_from_slice(&s.ack.to_be_bytes());
    t[12] = ((20 + s.options.len()) / 4 << 4) as u8;
    t[13] = s.flags;
    t[14..16].copy_from_slice(&s.window.to_be_bytes());
    TcpPacket::new_unchecked(&mut t[..]).fill_checksum(&ip_addr(src), &ip_addr(dst));
    f
}

use bulkhead_firewall_engine::{Ipv4, Mac};

/// The flow: client 0 at `CLIENTS[0]:SPORT` with `REMOTE:DPORT`, the port the firewall
/// gave it, and what was sent.
struct Flow {
    net: Net,
    nat_port: Option<u16>,
    segments: u64,
}

impl Flow {
    /// Client 0 sends `s`; it must come out on the uplink as the same segment.
    fn up(&mut self, s: Seg) {
        let f = frame(
            CLIENT_MACS[0],
            bulkhead_firewall_engine::ROUTER_MAC,
            CLIENTS[0],
            REMOTE,
            SPORT,
            DPORT,
            &s,
        );
        let v = self.net.send(Port::Client(0), &f);
        assert_eq!(
            v,
            Verdict::Forwarded,
            "segment {} up, flags {:#04x}",
            self.segments,
            s.flags
        );
        let out = self.take_ip(Port::Uplink);
        let seen = read(&out);
        assert_eq!(
            (seen.src, seen.dst, seen.dst_mac),
            (UPLINK_ADDR, REMOTE, LAN_GATEWAY_MAC)
        );
        let L4::Tcp {
            sport,
            dport,
            flags,
        } = seen.l4
        else {
            panic!("not TCP")
        };
        assert_eq!((dport, flags), (DPORT, s.flags));
        match self.nat_port {
            None => self.nat_port = Some(sport),
            Some(p) => assert_eq!(sport, p),
        }
        assert_eq!(out[34 + 4..34 + 16], f[34 + 4..34 + 16]);
        assert_eq!(
            out[34 + 20..],
            f[34 + 20..],
            "options and payload unchanged"
        );
        self.segments += 1;
    }

    /// The peer sends `s`; it must come out to client 0 as the same segment.
    fn down(&mut self, s: Seg) {
        let f = frame(
            LAN_GATEWAY_MAC,
            UPLINK_MAC,
            REMOTE,
            UPLINK_ADDR,
            DPORT,
            self.nat_port.expect("SYN first"),
            &s,
        );
        let v = self.net.send(Port::Uplink, &f);
        assert_eq!(
            v,
            Verdict::Forwarded,
            "segment {} down, flags {:#04x}",
            self.segments,
            s.flags
        );
        let out = self.take_ip(Port::Client(0));
        let seen = read(&out);
        assert_eq!(
            (seen.src, seen.dst, seen.dst_mac),
            (REMOTE, CLIENTS[0], CLIENT_MACS[0])
        );
        assert_eq!(
            seen.l4,
            L4::Tcp {
                sport: DPORT,
                dport: SPORT,
                flags: s.flags
            }
        );
        assert_eq!(out[34 + 4..34 + 16], f[34 + 4..34 + 16]);
        assert_eq!(
            out[34 + 20..],
            f[34 + 20..],
            "options and payload unchanged"
        );
        self.segments += 1;
    }

    /// The one IPv4 frame sent to `port`; ARP requests of the firewall for the gateway
    /// (confirmations) are answered by the gateway at once.
    fn take_ip(&mut self, port: Port) -> Vec<u8> {
        let mut ip = Vec::new();
        for (p, f) in self.net.take() {
            if f[12..14] == [0x08, 0x06] {
                let (op, _, _, tpa, _) = read_arp(&f);
                assert_eq!(
                    (p, op, tpa),
                    (Port::Uplink, ArpOperation::Request, LAN_GATEWAY)
                );
                self.gateway_answers();
            } else {
                assert_eq!(p, port);
                ip.push(f);
            }
        }
        assert_eq!(ip.len(), 1, "one frame out");
        ip.pop().unwrap()
    }

    fn gateway_answers(&mut self) {
        let reply = arp(
            ArpOperation::Reply,
            LAN_GATEWAY_MAC,
            LAN_GATEWAY,
            UPLINK_MAC,
            UPLINK_ADDR,
            UPLINK_MAC,
        );
        let sent = std::mem::take(&mut self.net.sent);
        assert_eq!(self.net.send(Port::Uplink, &reply), Verdict::Consumed);
        assert!(self.net.take().is_empty());
        self.net.sent = sent;
    }

    /// Time passes by `ms`, the firewall's loop running its timers each millisecond step.
    fn wait(&mut self, ms: u64) {
        let end = self.net.now + ms;
        while self.net.now < end {
            self.net.now = (self.net.now + 250).min(end);
            self.net.poll();
            assert!(self.net.take().is_empty(), "nothing to send on a timer");
        }
    }
}

fn seg(flags: u8, seq: u32, ack: u32, window: u16, options: Vec<u8>, len: usize) -> Seg {
    Seg {
        flags,
        seq,
        ack,
        window,
        options,
        len,
    }
}

#[test]
fn a_long_bulk_flow_both_ways_forwards_every_segment() {
    let mut flow = Flow {
        net: Net::new(&[&[]]),
        nat_port: None,
        segments: 0,
    };
    // The handshake, with ECN negotiated (SYN with ECE and CWR, SYN+ACK with ECE).
    let (mut c_seq, mut p_seq) = (0x1000_0000u32, 0xf000_0000u32);
    flow.up(seg(TCP_SYN | ECE | CWR, c_seq, 0, 64240, syn_options(), 0));
    c_seq = c_seq.wrapping_add(1);
    flow.down(seg(
        TCP_SYN | TCP_ACK | ECE,
        p_seq,
        c_seq,
        65160,
        syn_options(),
        0,
    ));
    p_seq = p_seq.wrapping_add(1);
    flow.up(seg(TCP_ACK, c_seq, p_seq, 502, timestamps(2, 1), 0));
    // The request line.
    flow.up(seg(TCP_ACK | PSH, c_seq, p_seq, 502, timestamps(3, 1), 20));
    c_seq = c_seq.wrapping_add(20);
    flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(2, 3), 0));

    // Upload: 16 MiB in MSS segments, PSH at the end of each 64 KiB write, an ACK every
    // other segment, a loss every 997 segments (duplicate ACKs with SACK, then the
    // retransmission), a congestion signal every 5001 (ECE, then CWR), a zero window and
    // its probes every 7919, time passing a millisecond a segment and ARP confirmations.
    let up_segments = 16 * 1024 * 1024 / MSS;
    let mut tsval = 10u32;
    for k in 0..up_segments {
        let flags = if k % 45 == 44 { TCP_ACK | PSH } else { TCP_ACK };
        let flags = if k % 5001 == 5000 { flags | CWR } else { flags };
        flow.up(seg(flags, c_seq, p_seq, 502, timestamps(tsval, 7), MSS));
        let sent = c_seq;
        c_seq = c_seq.wrapping_add(MSS as u32);
        tsval = tsval.wrapping_add(1);
        if k % 997 == 996 {
            // Lost: three duplicate ACKs with a SACK block, then the retransmission.
            flow.up(seg(TCP_ACK, c_seq, p_seq, 502, timestamps(tsval, 7), MSS));
            let after = c_seq.wrapping_add(MSS as u32);
            for _ in 0..3 {
                let mut o = vec![1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0];
                o.extend_from_slice(&sack(&[(c_seq, after)]));
                flow.down(seg(TCP_ACK, p_seq, sent, 509, o, 0));
            }
            flow.up(seg(TCP_ACK, sent, p_seq, 502, timestamps(tsval, 7), MSS));
            c_seq = after;
            flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(7, tsval), 0));
        } else if k % 5001 == 5000 {
            flow.down(seg(
                TCP_ACK | ECE,
                p_seq,
                c_seq,
                509,
                timestamps(7, tsval),
                0,
            ));
        } else if k % 7919 == 7918 {
            // The receiver's buffer fills: a zero window, probes, then a window update.
            flow.down(seg(TCP_ACK, p_seq, c_seq, 0, timestamps(7, tsval), 0));
            for _ in 0..3 {
                flow.up(seg(
                    TCP_ACK,
                    c_seq.wrapping_sub(1),
                    p_seq,
                    502,
                    timestamps(tsval, 7),
                    0,
                ));
                flow.down(seg(TCP_ACK, p_seq, c_seq, 0, timestamps(7, tsval), 0));
                flow.wait(200);
            }
            flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(7, tsval), 0));
        } else if k % 2 == 1 {
            flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(7, tsval), 0));
        }
        if k % 1000 == 0 {
            flow.wait(1);
        }
        flow.net.now += 1;
    }
    // The server's answer.
    flow.down(seg(
        TCP_ACK | PSH,
        p_seq,
        c_seq,
        509,
        timestamps(8, tsval),
        12,
    ));
    p_seq = p_seq.wrapping_add(12);
    flow.up(seg(TCP_ACK, c_seq, p_seq, 502, timestamps(tsval, 8), 0));

    // Idle for three minutes: keep-alives (seq - 1, no data, and with one garbage byte) and
    // their answers; the gateway's MAC goes stale and is confirmed on the next segment.
    for _ in 0..3 {
        flow.wait(60_000);
        flow.up(seg(
            TCP_ACK,
            c_seq.wrapping_sub(1),
            p_seq,
            502,
            timestamps(tsval, 8),
            0,
        ));
        flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(9, tsval), 0));
        flow.up(seg(
            TCP_ACK,
            c_seq.wrapping_sub(1),
            p_seq,
            502,
            timestamps(tsval, 8),
            1,
        ));
        flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(9, tsval), 0));
    }

    // Download: 16 MiB the other way, the client ACKing every other segment, with an
    // out-of-order arrival (SACK) every 1009 segments and window updates every 4099.
    for k in 0..up_segments {
        let flags = if k % 45 == 44 { TCP_ACK | PSH } else { TCP_ACK };
        flow.down(seg(flags, p_seq, c_seq, 509, timestamps(9, tsval), MSS));
        p_seq = p_seq.wrapping_add(MSS as u32);
        if k % 1009 == 1008 {
            let mut o = vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0];
            o.extend_from_slice(&sack(&[(p_seq, p_seq.wrapping_add(MSS as u32))]));
            flow.up(seg(
                TCP_ACK,
                c_seq,
                p_seq.wrapping_sub(MSS as u32),
                502,
                o,
                0,
            ));
        } else if k % 4099 == 4098 || k % 2 == 1 {
            flow.up(seg(
                TCP_ACK,
                c_seq,
                p_seq,
                502 + (k % 7) as u16,
                timestamps(tsval, 9),
                0,
            ));
        }
        flow.net.now += 1;
        if k % 1000 == 0 {
            flow.wait(1);
        }
    }
    // The client's `got` line, and an orderly close from both sides.
    flow.up(seg(
        TCP_ACK | PSH,
        c_seq,
        p_seq,
        502,
        timestamps(tsval, 9),
        12,
    ));
    c_seq = c_seq.wrapping_add(12);
    flow.down(seg(TCP_ACK, p_seq, c_seq, 509, timestamps(10, tsval), 0));
    flow.up(seg(
        TCP_FIN | TCP_ACK,
        c_seq,
        p_seq,
        502,
        timestamps(tsval, 10),
        0,
    ));
    c_seq = c_seq.wrapping_add(1);
    flow.down(seg(
        TCP_FIN | TCP_ACK,
        p_seq,
        c_seq,
        509,
        timestamps(11, tsval),
        0,
    ));
    p_seq = p_seq.wrapping_add(1);
    flow.up(seg(TCP_ACK, c_seq, p_seq, 502, timestamps(tsval, 11), 0));

    let s = flow.net.fw.stats();
    assert_eq!(s.dropped_total(), 0, "nothing dropped: {s:?}");
    assert_eq!(s.queued, 0, "nothing waited for ARP");
    assert_eq!(s.forwarded, flow.segments);
    assert_eq!(s.connections_created, 1, "one connection all along");
}

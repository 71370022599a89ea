//! Test helpers: a small network around one firewall (two or three clients, an uplink with a
//! gateway), frame builders that fill checksums with smoltcp, and a reader that checks every
//! checksum of a frame the firewall sent.
#![allow(dead_code, reason = "each test file uses a different part")]

use bulkhead_firewall_engine::{
    Downstream, Firewall, Ipv4, Mac, Port, ROUTER_MAC, Router, UplinkInfo, Verdict,
};
use bulkhead_qubeconfig::{Action, Cidr, PortRange, Proto, Rule, SpecialTarget};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket,
};

pub const GATEWAY: Ipv4 = [10, 137, 0, 1];
pub const VDNS: [Ipv4; 2] = [[10, 139, 1, 1], [10, 139, 1, 2]];
pub const CLIENTS: [Ipv4; 3] = [[10, 137, 0, 5], [10, 137, 0, 6], [10, 137, 0, 7]];
pub const CLIENT_MACS: [Mac; 3] = [
    [0x00, 0x16, 0x3e, 0, 0, 5],
    [0x00, 0x16, 0x3e, 0, 0, 6],
    [0x00, 0x16, 0x3e, 0, 0, 7],
];
pub const UPLINK_MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub const UPLINK_ADDR: Ipv4 = [192, 168, 1, 50];
pub const LAN_GATEWAY: Ipv4 = [192, 168, 1, 1];
pub const LAN_GATEWAY_MAC: Mac = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc];
pub const LAN_DNS: Ipv4 = [192, 168, 1, 1];
pub const REMOTE: Ipv4 = [93, 184, 216, 34];

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

pub fn router() -> Router {
    Router {
        gateway: GATEWAY,
        virtual_dns: VDNS.iter().copied().collect(),
        upstream_dns: None,
    }
}

pub fn downstream(i: usize, rules: &[Rule]) -> Downstream {
    Downstream {
        qube: heapless::String::try_from(["work", "personal", "vault"][i]).unwrap(),
        channel: heapless::String::try_from(["fw-work", "fw-personal", "fw-vault"][i]).unwrap(),
        address: Some(CLIENTS[i]),
        rules: rules.iter().copied().collect(),
    }
}

pub fn uplink_info() -> UplinkInfo {
    UplinkInfo {
        mac: UPLINK_MAC,
        address: UPLINK_ADDR,
        prefix_len: 24,
        gateway: Some(LAN_GATEWAY),
        dns: [LAN_DNS].into_iter().collect(),
    }
}

/// A rule with only the fields set that the closure sets.
pub fn rule(action: Action, edit: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = Rule::catch_all(action);
    edit(&mut r);
    r
}

pub fn host(addr: Ipv4) -> Cidr {
    Cidr {
        addr,
        prefix_len: 32,
    }
}

pub fn ports(lo: u16, hi: u16) -> PortRange {
    PortRange { lo, hi }
}

pub fn dns_rule() -> Rule {
    rule(Action::Accept, |r| {
        r.specialtarget = Some(SpecialTarget::Dns)
    })
}

pub fn tcp_rule(action: Action, dst: Option<Ipv4>, port: u16) -> Rule {
    rule(action, |r| {
        r.proto = Some(Proto::Tcp);
        r.dsthost = dst.map(host);
        r.dstports = Some(ports(port, port));
    })
}

/// The transport part of a packet to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
        ident: u16,
        seq: u16,
    },
    Raw {
        proto: u8,
    },
}

/// A packet to build.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: Ipv4,
    pub dst: Ipv4,
    pub ttl: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Pkt {
    pub fn new(src: Ipv4, dst: Ipv4, l4: L4) -> Pkt {
        Pkt {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: ROUTER_MAC,
            src,
            dst,
            ttl: 64,
            l4,
            payload: b"hello".to_vec(),
        }
    }

    /// From client `i` to the firewall.
    pub fn from_client(i: usize, dst: Ipv4, l4: L4) -> Pkt {
        Pkt {
            src_mac: CLIENT_MACS[i],
            ..Pkt::new(CLIENTS[i], dst, l4)
        }
    }

    /// From the LAN gateway to the uplink address.
    pub fn from_uplink(src: Ipv4, l4: L4) -> Pkt {
        Pkt {
            src_mac: LAN_GATEWAY_MAC,
            dst_mac: UPLINK_MAC,
            ..Pkt::new(src, UPLINK_ADDR, l4)
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let (proto, l4_len) = match &self.l4 {
            L4::Tcp { .. } => (6, 20),
            L4::Udp { .. } => (17, 8),
            L4::Icmp { .. } => (1, 8),
            L4::Raw { proto } => (*proto, 0),
        };
        let ip_len = 20 + l4_len + self.payload.len();
        let mut f = vec![0u8; 14 + ip_len];
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        {
            let ip = &mut f[14..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = self.ttl;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&self.src);
            ip[16..20].copy_from_slice(&self.dst);
            ip[20 + l4_len..].copy_from_slice(&self.payload);
            Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        }
        let (s, d) = (ip_addr(self.src), ip_addr(self.dst));
        let t = &mut f[34..];
        match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                t[4..8].copy_from_slice(&1000u32.to_be_bytes());
                t[12] = 5 << 4;
                t[13] = *flags;
                t[14..16].copy_from_slice(&64240u16.to_be_bytes());
                TcpPacket::new_unchecked(&mut t[..]).fill_checksum(&s, &d);
            }
            L4::Udp { sport, dport } => {
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                let len = (8 + self.payload.len()) as u16;
                t[4..6].copy_from_slice(&len.to_be_bytes());
                UdpPacket::new_unchecked(&mut t[..]).fill_checksum(&s, &d);
            }
            L4::Icmp {
                ty,
                code,
                ident,
                seq,
            } => {
                t[0] = *ty;
                t[1] = *code;
                t[4..6].copy_from_slice(&ident.to_be_bytes());
                t[6..8].copy_from_slice(&seq.to_be_bytes());
                Icmpv4Packet::new_unchecked(&mut t[..]).fill_checksum();
            }
            L4::Raw { .. } => {}
        }
        f
    }
}

pub fn ip_addr(a: Ipv4) -> IpAddress {
    IpAddress::Ipv4(Ipv4Address::from_octets(a))
}

/// An ICMP error (`ty`, `code`) from `from` to the uplink address quoting `quoted` (an IPv4
/// packet as the firewall sent it), as a router on the way would send it.
pub fn icmp_error(from: Ipv4, ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let quote = &quoted[..quoted.len().min(28)];
    let mut p = Pkt::from_uplink(
        from,
        L4::Icmp {
            ty,
            code,
            ident: 0,
            seq: 0,
        },
    );
    p.payload = quote.to_vec();
    let mut f = p.build();
    // Bytes 4..8 of an error are unused (zero); fix the checksum over the quote.
    Icmpv4Packet::new_unchecked(&mut f[34..]).fill_checksum();
    f
}

pub fn arp(op: ArpOperation, sha: Mac, spa: Ipv4, tha: Mac, tpa: Ipv4, dst_mac: Mac) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&sha);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: Ipv4Address::from_octets(spa),
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: Ipv4Address::from_octets(tpa),
    }
    .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    f
}

/// A frame the firewall sent, read back with every checksum verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src: Ipv4,
    pub dst: Ipv4,
    pub ttl: u8,
    pub l4: L4,
    pub payload: Vec<u8>,
}

/// Reads an IPv4 frame the firewall sent; panics (fails the test) on a bad checksum.
pub fn read(frame: &[u8]) -> Seen {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let (s, d) = (
        ip_addr(ip.src_addr().octets()),
        ip_addr(ip.dst_addr().octets()),
    );
    let (l4, payload) = match ip.next_header() {
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(ip.payload()).expect("tcp");
            assert!(t.verify_checksum(&s, &d), "TCP checksum");
            let flags = ip.payload()[13];
            (
                L4::Tcp {
                    sport: t.src_port(),
                    dport: t.dst_port(),
                    flags,
                },
                t.payload().to_vec(),
            )
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).expect("udp");
            assert!(u.verify_checksum(&s, &d), "UDP checksum");
            (
                L4::Udp {
                    sport: u.src_port(),
                    dport: u.dst_port(),
                },
                u.payload().to_vec(),
            )
        }
        IpProtocol::Icmp => {
            let i = Icmpv4Packet::new_checked(ip.payload()).expect("icmp");
            assert!(i.verify_checksum(), "ICMP checksum");
            let b = ip.payload();
            (
                L4::Icmp {
                    ty: b[0],
                    code: b[1],
                    ident: u16::from_be_bytes([b[4], b[5]]),
                    seq: u16::from_be_bytes([b[6], b[7]]),
                },
                b[8..].to_vec(),
            )
        }
        p => (L4::Raw { proto: p.into() }, ip.payload().to_vec()),
    };
    Seen {
        dst_mac: eth.dst_addr().0,
        src_mac: eth.src_addr().0,
        src: ip.src_addr().octets(),
        dst: ip.dst_addr().octets(),
        ttl: ip.hop_limit(),
        l4,
        payload,
    }
}

/// Reads an ARP frame: (operation, sender MAC, sender IP, target IP, Ethernet destination).
pub fn read_arp(frame: &[u8]) -> (ArpOperation, Mac, Ipv4, Ipv4, Mac) {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    let p = ArpPacket::new_checked(eth.payload()).expect("arp");
    match ArpRepr::parse(&p).expect("arp repr") {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => (
            operation,
            source_hardware_addr.0,
            source_protocol_addr.octets(),
            target_protocol_addr.octets(),
            eth.dst_addr().0,
        ),
        _ => unreachable!(),
    }
}

/// A firewall with its clients and the frames it sent.
pub struct Net {
    pub fw: Firewall,
    pub now: u64,
    pub sent: Vec<(Port, Vec<u8>)>,
}

impl Net {
    /// Clients with these rule lists, the uplink up, every MAC known.
    pub fn new(rules: &[&[Rule]]) -> Net {
        let mut net = Net::bare(rules, router());
        net.fw.set_uplink(Some(&uplink_info()));
        for i in 0..rules.len() {
            net.introduce(i);
        }
        net.learn_gateway();
        net
    }

    /// As `new`, with a connection table of `connections` entries.
    pub fn with_table(rules: &[&[Rule]], connections: usize) -> Net {
        let mut net = Net::bare(rules, router());
        let ds: Vec<Downstream> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| downstream(i, r))
            .collect();
        net.fw = Firewall::with_capacity(&ds, &router(), 7, connections).unwrap();
        net.fw.set_uplink(Some(&uplink_info()));
        for i in 0..rules.len() {
            net.introduce(i);
        }
        net.learn_gateway();
        net
    }

    /// Clients with these rule lists, nothing learnt, the uplink down.
    pub fn bare(rules: &[&[Rule]], router: Router) -> Net {
        let ds: Vec<Downstream> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| downstream(i, r))
            .collect();
        Net {
            fw: Firewall::new(&ds, &router).unwrap(),
            now: 1_000,
            sent: Vec::new(),
        }
    }

    pub fn send(&mut self, port: Port, frame: &[u8]) -> Verdict {
        let sent = &mut self.sent;
        self.fw.handle(port, frame, self.now, &mut |p, f| {
            sent.push((p, f.to_vec()))
        })
    }

    pub fn poll(&mut self) {
        let sent = &mut self.sent;
        self.fw
            .poll(self.now, &mut |p, f| sent.push((p, f.to_vec())));
    }

    /// Takes the frames sent so far.
    pub fn take(&mut self) -> Vec<(Port, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }

    /// Takes exactly one frame sent so far.
    pub fn one(&mut self) -> (Port, Vec<u8>) {
        let mut s = self.take();
        assert_eq!(s.len(), 1, "expected one frame, got {}", s.len());
        s.pop().unwrap()
    }

    /// Client `i` asks for the gateway's MAC (so the firewall learns the client's).
    pub fn introduce(&mut self, i: usize) {
        let f = arp(
            ArpOperation::Request,
            CLIENT_MACS[i],
            CLIENTS[i],
            [0; 6],
            GATEWAY,
            [0xff; 6],
        );
        assert_eq!(self.send(Port::Client(i), &f), Verdict::Answered);
        self.take();
    }

    /// The LAN gateway asks for the uplink address (so the firewall learns its MAC).
    pub fn learn_gateway(&mut self) {
        let f = arp(
            ArpOperation::Request,
            LAN_GATEWAY_MAC,
            LAN_GATEWAY,
            [0; 6],
            UPLINK_ADDR,
            [0xff; 6],
        );
        assert_eq!(self.send(Port::Uplink, &f), Verdict::Answered);
        self.take();
    }

    /// As `learn_gateway`, when the uplink is up (the answer is not checked).
    pub fn learn_gateway_if_up(&mut self) {
        let f = arp(
            ArpOperation::Request,
            LAN_GATEWAY_MAC,
            LAN_GATEWAY,
            [0; 6],
            UPLINK_ADDR,
            [0xff; 6],
        );
        self.send(Port::Uplink, &f);
        self.take();
    }

    /// Sends `p` from client `i`, expects it forwarded on `to`, returns what came out.
    pub fn through(&mut self, i: usize, p: &Pkt, to: Port) -> Seen {
        let v = self.send(Port::Client(i), &p.build());
        assert_eq!(v, Verdict::Forwarded, "{p:?}");
        let (port, frame) = self.one();
        assert_eq!(port, to);
        read(&frame)
    }

    /// Sends `p` from the uplink, expects it forwarded to client `i`, returns it.
    pub fn back(&mut self, p: &Pkt, i: usize) -> Seen {
        let v = self.send(Port::Uplink, &p.build());
        assert_eq!(v, Verdict::Forwarded, "{p:?}");
        let (port, frame) = self.one();
        assert_eq!(port, Port::Client(i));
        read(&frame)
    }
}

/// The reply a peer would send to `seen` (addresses and ports swapped; echo reply for echo).
pub fn reply_to(seen: &Seen, l4: Option<L4>) -> Pkt {
    let default = match seen.l4 {
        L4::Tcp { sport, dport, .. } => L4::Tcp {
            sport: dport,
            dport: sport,
            flags: TCP_SYN | TCP_ACK,
        },
        L4::Udp { sport, dport } => L4::Udp {
            sport: dport,
            dport: sport,
        },
        L4::Icmp { ident, seq, .. } => L4::Icmp {
            ty: 0,
            code: 0,
            ident,
            seq,
        },
        L4::Raw { proto } => L4::Raw { proto },
    };
    let l4 = l4.unwrap_or(default);
    Pkt {
        src_mac: seen.dst_mac,
        dst_mac: seen.src_mac,
        payload: b"reply".to_vec(),
        ..Pkt::new(seen.dst, seen.src, l4)
    }
}

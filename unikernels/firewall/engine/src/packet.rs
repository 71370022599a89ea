//! Reading frames: every length and field is checked (through smoltcp's `new_checked` wire
//! views) before anything is used, and the result is a small value with the offsets the
//! translation needs, so the rest of the engine never indexes into unchecked bytes.

use crate::stats::DropReason;
use crate::{Ipv4, Mac};
use core::fmt;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// Length of the Ethernet II header.
pub const ETH_HEADER: usize = 14;
/// Length of an IPv4 header without options (the only kind the firewall forwards).
pub const IP_HEADER: usize = 20;

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// ICMP types the firewall reads.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
/// Echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// TCP flags.
pub const TCP_FIN: u8 = 0x01;
/// SYN.
pub const TCP_SYN: u8 = 0x02;
/// RST.
pub const TCP_RST: u8 = 0x04;
/// ACK.
pub const TCP_ACK: u8 = 0x10;
/// URG.
pub const TCP_URG: u8 = 0x20;

/// Whether Linux's connection tracking accepts a segment with these flags
/// (`tcp_valid_flags` in `nf_conntrack_proto_tcp.c`): PSH, ECE and CWR aside, only SYN,
/// SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK and ACK+URG. Everything else
/// (SYN+FIN, SYN+RST, no flags, FIN without ACK, ...) is invalid.
pub const fn tcp_flags_valid(flags: u8) -> bool {
    const SIGNIFICANT: u8 = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG;
    const VALID: u64 = 1 << TCP_SYN
        | 1 << (TCP_SYN | TCP_URG)
        | 1 << (TCP_SYN | TCP_ACK)
        | 1 << TCP_RST
        | 1 << (TCP_RST | TCP_ACK)
        | 1 << (TCP_FIN | TCP_ACK)
        | 1 << (TCP_FIN | TCP_ACK | TCP_URG)
        | 1 << TCP_ACK
        | 1 << (TCP_ACK | TCP_URG);
    (VALID >> (flags & SIGNIFICANT)) & 1 == 1
}

/// The Ethernet header of a frame.
#[derive(Clone, Copy, Debug)]
pub struct Eth {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: EthernetProtocol,
}

/// Reads the Ethernet header.
pub fn ethernet(frame: &[u8]) -> Result<Eth, DropReason> {
    let f = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
    Ok(Eth {
        dst: f.dst_addr().0,
        src: f.src_addr().0,
        ethertype: f.ethertype(),
    })
}

/// True for a unicast MAC that is not all zeros.
pub fn is_unicast(mac: Mac) -> bool {
    EthernetAddress(mac).is_unicast() && mac != [0; 6]
}

/// The transport part of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP segment with a consistent data offset.
    Tcp { sport: u16, dport: u16, flags: u8 },
    /// A UDP datagram with a consistent length.
    Udp { sport: u16, dport: u16 },
    /// An ICMP message of at least 8 bytes; `ident` is the echo identifier (bytes 4..6).
    Icmp { ty: u8, code: u8, ident: u16 },
    /// Any other protocol (its header is not read).
    Other,
}

/// A checked IPv4 packet without options and not fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    pub src: Ipv4,
    pub dst: Ipv4,
    pub proto: u8,
    pub ttl: u8,
    /// The IPv4 total length (the frame may carry padding after it).
    pub total_len: usize,
    pub l4: L4,
}

impl Ip {
    /// Source and destination ports (TCP, UDP) or the echo identifier twice (ICMP).
    pub fn ports(&self) -> (u16, u16) {
        match self.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { ident, .. } => (ident, ident),
            L4::Other => (0, 0),
        }
    }

    /// What a log line shows about the packet.
    pub fn summary(&self) -> Summary {
        let (sport, dport) = match self.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { ty, code, .. } => (u16::from(ty), u16::from(code)),
            L4::Other => (0, 0),
        };
        Summary {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            sport,
            dport,
        }
    }
}

/// Parses the IPv4 packet after the Ethernet header; `bytes` may be longer than the packet
/// (Ethernet padding).
pub fn ipv4(bytes: &[u8]) -> Result<Ip, DropReason> {
    let p = Ipv4Packet::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
    if p.version() != 4 || !p.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    if usize::from(p.header_len()) != IP_HEADER {
        return Err(DropReason::IpOptions);
    }
    if p.more_frags() || p.frag_offset() != 0 {
        return Err(DropReason::Fragment);
    }
    let payload = p.payload();
    let proto: u8 = p.next_header().into();
    let l4 = transport(proto, payload)?;
    Ok(Ip {
        src: p.src_addr().octets(),
        dst: p.dst_addr().octets(),
        proto,
        ttl: p.hop_limit(),
        total_len: usize::from(p.total_len()),
        l4,
    })
}

/// Parses the transport header of protocol `proto` in `payload`.
fn transport(proto: u8, payload: &[u8]) -> Result<L4, DropReason> {
    Ok(match IpProtocol::from(proto) {
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(payload).map_err(|_| DropReason::Malformed)?;
            L4::Tcp {
                sport: t.src_port(),
                dport: t.dst_port(),
                flags: payload[13],
            }
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(payload).map_err(|_| DropReason::Malformed)?;
            L4::Udp {
                sport: u.src_port(),
                dport: u.dst_port(),
            }
        }
        IpProtocol::Icmp => match payload {
            [ty, code, _, _, i0, i1, _, _, ..] => L4::Icmp {
                ty: *ty,
                code: *code,
                ident: u16::from_be_bytes([*i0, *i1]),
            },
            _ => return Err(DropReason::Malformed),
        },
        _ => L4::Other,
    })
}

/// The packet an ICMP error quotes: its IPv4 header (no options) and the first 8 bytes of
/// its transport header, which hold the ports (TCP, UDP) or the echo identifier (ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: Ipv4,
    pub dst: Ipv4,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Reads the packet quoted by an ICMP error (`icmp` is the whole ICMP message).
pub fn quoted(icmp: &[u8]) -> Result<Quoted, DropReason> {
    let inner = icmp.get(8..).ok_or(DropReason::Malformed)?;
    let header = inner.get(..IP_HEADER).ok_or(DropReason::Malformed)?;
    if header[0] != 0x45 {
        return Err(DropReason::Malformed);
    }
    let t = inner
        .get(IP_HEADER..IP_HEADER + 8)
        .ok_or(DropReason::Malformed)?;
    let proto = header[9];
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
        PROTO_ICMP if t[0] == ICMP_ECHO_REQUEST => {
            let ident = u16::from_be_bytes([t[4], t[5]]);
            (ident, ident)
        }
        _ => return Err(DropReason::Unsupported),
    };
    Ok(Quoted {
        src: [header[12], header[13], header[14], header[15]],
        dst: [header[16], header[17], header[18], header[19]],
        proto,
        sport,
        dport,
    })
}

/// What a log line shows about a dropped packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4,
    /// Destination address.
    pub dst: Ipv4,
    /// Source port (TCP, UDP) or ICMP type.
    pub sport: u16,
    /// Destination port (TCP, UDP) or ICMP code.
    pub dport: u16,
}

/// Shows an address as `a.b.c.d`.
pub struct Dotted(pub Ipv4);

impl fmt::Display for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, dst) = (Dotted(self.src), Dotted(self.dst));
        match self.proto {
            PROTO_TCP => write!(f, "tcp {src}:{} -> {dst}:{}", self.sport, self.dport),
            PROTO_UDP => write!(f, "udp {src}:{} -> {dst}:{}", self.sport, self.dport),
            PROTO_ICMP => write!(
                f,
                "icmp {src} -> {dst} type {} code {}",
                self.sport, self.dport
            ),
            p => write!(f, "proto {p} {src} -> {dst}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_like_flows() {
        let s = Summary {
            proto: PROTO_UDP,
            src: [10, 137, 0, 5],
            dst: [1, 1, 1, 1],
            sport: 4000,
            dport: 53,
        };
        assert_eq!(alloc::format!("{s}"), "udp 10.137.0.5:4000 -> 1.1.1.1:53");
    }

    #[test]
    fn tcp_flags_are_valid_exactly_as_linux_conntrack_says() {
        let valid = [0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30];
        for flags in 0..=255u8 {
            // PSH, ECE and CWR do not matter.
            let want = valid.contains(&(flags & !(0x08 | 0x40 | 0x80)));
            assert_eq!(tcp_flags_valid(flags), want, "{flags:#04x}");
        }
        for invalid in [0x00, 0x01, 0x03, 0x06, 0x09, 0x08, 0x20, 0x05, 0x13, 0x07] {
            assert!(!tcp_flags_valid(invalid), "{invalid:#04x}");
        }
    }

    #[test]
    fn short_icmp_is_malformed() {
        assert_eq!(
            transport(PROTO_ICMP, &[8, 0, 0, 0]),
            Err(DropReason::Malformed)
        );
    }
}

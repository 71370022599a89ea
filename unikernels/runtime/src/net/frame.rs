//! Ethernet frames by hand: the few a qube looks into or builds outside smoltcp's sockets
//! (sys-net's choice of what its own interface sees; the test client's ARP, ping and spoofed
//! datagram). Parsers never panic on short or odd frames; builders compute every checksum.

use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

/// The Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// The UDP port DHCP servers send to.
pub const DHCP_CLIENT_PORT: u16 = 68;

/// Length of an Ethernet II header.
const ETH_HEADER: usize = 14;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The frame's EtherType.
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    be16(frame, 12)
}

/// The frame's source MAC address.
pub fn source_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(6..12)?.try_into().ok()
}

/// True for an ARP frame.
pub fn is_arp(frame: &[u8]) -> bool {
    ethertype(frame) == Some(ETHERTYPE_ARP)
}

/// The destination port of an IPv4 UDP datagram (first fragment only); `None` for anything
/// else.
pub fn ipv4_udp_dst_port(frame: &[u8]) -> Option<u16> {
    if ethertype(frame)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_HEADER..)?;
    let version_ihl = *ip.first()?;
    let ihl = usize::from(version_ihl & 0xf) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    if be16(ip, 6)? & 0x1fff != 0 {
        return None; // a later fragment has no UDP header
    }
    be16(ip, ihl + 2)
}

/// True for a DHCP message to a client (UDP to port 68).
pub fn is_dhcp_to_client(frame: &[u8]) -> bool {
    ipv4_udp_dst_port(frame) == Some(DHCP_CLIENT_PORT)
}

fn ethernet(src: [u8; 6], dst: [u8; 6], ethertype: EthernetProtocol, payload: usize) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = alloc::vec![0u8; repr.buffer_len() + payload];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    buf
}

/// An ARP request (broadcast) from `src_mac`/`src_ip` for `target_ip`.
pub fn arp_request(src_mac: [u8; 6], src_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(src_mac),
        source_protocol_addr: Ipv4Address::from(src_ip),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Address::from(target_ip),
    };
    let mut buf = ethernet(src_mac, BROADCAST, EthernetProtocol::Arp, arp.buffer_len());
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_HEADER..]));
    buf
}

/// If `frame` is an ARP reply from `ip`, the MAC address it gives.
pub fn arp_reply_from(frame: &[u8], ip: [u8; 4]) -> Option<[u8; 6]> {
    if !is_arp(frame) {
        return None;
    }
    let packet = ArpPacket::new_checked(frame.get(ETH_HEADER..)?).ok()?;
    match ArpRepr::parse(&packet).ok()? {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
            ..
        } if source_protocol_addr == Ipv4Address::from(ip) => Some(source_hardware_addr.0),
        _ => None,
    }
}

/// Addresses of an IPv4 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Ends {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address (the builder writes whatever it is given: spoofing is the point
    /// of some tests).
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
}

fn ipv4(ends: &Ipv4Ends, protocol: IpProtocol, payload: usize) -> (Vec<u8>, Ipv4Repr) {
    let ip = Ipv4Repr {
        src_addr: Ipv4Address::from(ends.src_ip),
        dst_addr: Ipv4Address::from(ends.dst_ip),
        next_header: protocol,
        payload_len: payload,
        hop_limit: 64,
    };
    let mut buf = ethernet(
        ends.src_mac,
        ends.dst_mac,
        EthernetProtocol::Ipv4,
        ip.buffer_len() + payload,
    );
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut buf[ETH_HEADER..]),
        &ChecksumCapabilities::default(),
    );
    (buf, ip)
}

/// A UDP datagram in an Ethernet frame.
pub fn udp_ipv4(ends: &Ipv4Ends, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr { src_port, dst_port };
    let (mut buf, ip) = ipv4(ends, IpProtocol::Udp, udp.header_len() + payload.len());
    let at = ETH_HEADER + ip.buffer_len();
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut buf[at..]),
        &IpAddress::Ipv4(ip.src_addr),
        &IpAddress::Ipv4(ip.dst_addr),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// An ICMP echo request in an Ethernet frame.
pub fn icmp_echo_request(ends: &Ipv4Ends, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    let (mut buf, ip) = ipv4(ends, IpProtocol::Icmp, icmp.buffer_len());
    let at = ETH_HEADER + ip.buffer_len();
    icmp.emit(
        &mut Icmpv4Packet::new_unchecked(&mut buf[at..]),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// The payload of `frame` when it is a valid IPv4 packet from `from` carrying `proto`.
fn ipv4_payload(frame: &[u8], from: [u8; 4], proto: IpProtocol) -> Option<&[u8]> {
    if ethertype(frame)? != ETHERTYPE_IPV4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(frame.get(ETH_HEADER..)?).ok()?;
    let ip = Ipv4Repr::parse(&packet, &ChecksumCapabilities::default()).ok()?;
    let len = packet.header_len() as usize;
    (ip.src_addr == Ipv4Address::from(from) && ip.next_header == proto)
        .then(|| frame.get(ETH_HEADER + len..ETH_HEADER + usize::from(packet.total_len())))
        .flatten()
}

/// True when `frame` is an ICMP echo reply from `from` with identifier `ident`.
pub fn is_icmp_echo_reply(frame: &[u8], from: [u8; 4], ident: u16) -> bool {
    let parse = || -> Option<bool> {
        let icmp = Icmpv4Packet::new_checked(ipv4_payload(frame, from, IpProtocol::Icmp)?).ok()?;
        Some(matches!(
            Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).ok()?,
            Icmpv4Repr::EchoReply { ident: i, .. } if i == ident
        ))
    };
    parse().unwrap_or(false)
}

/// A TCP SYN (connection request) in an Ethernet frame.
pub fn tcp_syn(ends: &Ipv4Ends, src_port: u16, dst_port: u16, seq: u32) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let (mut buf, ip) = ipv4(ends, IpProtocol::Tcp, tcp.buffer_len());
    let at = ETH_HEADER + ip.buffer_len();
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut buf[at..]),
        &IpAddress::Ipv4(ip.src_addr),
        &IpAddress::Ipv4(ip.dst_addr),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// True when `frame` is any TCP segment from `from`:`from_port` to port `to_port` (a SYN-ACK
/// or a reset: the far end answered).
pub fn is_tcp_from(frame: &[u8], from: [u8; 4], from_port: u16, to_port: u16) -> bool {
    let parse = || -> Option<bool> {
        let tcp = TcpPacket::new_checked(ipv4_payload(frame, from, IpProtocol::Tcp)?).ok()?;
        Some(tcp.src_port() == from_port && tcp.dst_port() == to_port)
    };
    parse().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn ends() -> Ipv4Ends {
        Ipv4Ends {
            src_mac: A,
            dst_mac: B,
            src_ip: [10, 137, 0, 99],
            dst_ip: [10, 0, 2, 2],
        }
    }

    #[test]
    fn udp_frames_parse_back_with_valid_checksums() {
        let f = udp_ipv4(&ends(), 40000, 5557, b"spoof");
        assert_eq!(ethertype(&f), Some(ETHERTYPE_IPV4));
        assert_eq!(source_mac(&f), Some(A));
        assert_eq!(ipv4_udp_dst_port(&f), Some(5557));
        assert!(!is_dhcp_to_client(&f));
        let caps = ChecksumCapabilities::default();
        let ip = Ipv4Packet::new_checked(&f[ETH_HEADER..]).unwrap();
        let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!(repr.src_addr, Ipv4Address::new(10, 137, 0, 99));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        UdpRepr::parse(
            &udp,
            &IpAddress::Ipv4(repr.src_addr),
            &IpAddress::Ipv4(repr.dst_addr),
            &caps,
        )
        .expect("checksum verifies");
        assert_eq!(udp.payload(), b"spoof");
        let dhcp = udp_ipv4(&ends(), 67, 68, &[0; 300]);
        assert!(is_dhcp_to_client(&dhcp));
    }

    #[test]
    fn fragments_options_and_other_protocols_are_not_udp_ports() {
        let mut f = udp_ipv4(&ends(), 1, 68, b"x");
        // A later fragment carries no UDP header.
        f[ETH_HEADER + 7] = 1;
        assert_eq!(ipv4_udp_dst_port(&f), None);
        // With IP options the header is longer (IHL 6): the UDP header starts 4 bytes
        // later, where this frame has its UDP checksum at the port's place.
        let mut f = udp_ipv4(&ends(), 1, 68, b"xxxx");
        f[ETH_HEADER] = 0x46;
        let checksum = u16::from_be_bytes([f[ETH_HEADER + 26], f[ETH_HEADER + 27]]);
        assert_ne!(checksum, 68);
        assert_eq!(ipv4_udp_dst_port(&f), Some(checksum));
        let ping = icmp_echo_request(&ends(), 7, 1, b"hi");
        assert_eq!(ipv4_udp_dst_port(&ping), None);
        assert_eq!(ipv4_udp_dst_port(&[0; 13]), None);
        assert_eq!(ipv4_udp_dst_port(&f[..ETH_HEADER + 10]), None);
        assert!(!is_arp(&[]));
    }

    #[test]
    fn arp_request_and_reply() {
        let req = arp_request(A, [10, 137, 0, 10], [10, 137, 0, 1]);
        assert!(is_arp(&req));
        assert_eq!(&req[..6], &BROADCAST);
        assert_eq!(arp_reply_from(&req, [10, 137, 0, 10]), None, "a request");
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(B),
            source_protocol_addr: Ipv4Address::new(10, 137, 0, 1),
            target_hardware_addr: EthernetAddress(A),
            target_protocol_addr: Ipv4Address::new(10, 137, 0, 10),
        };
        let mut f = ethernet(B, A, EthernetProtocol::Arp, reply.buffer_len());
        reply.emit(&mut ArpPacket::new_unchecked(&mut f[ETH_HEADER..]));
        assert_eq!(arp_reply_from(&f, [10, 137, 0, 1]), Some(B));
        assert_eq!(arp_reply_from(&f, [10, 137, 0, 2]), None, "another address");
        assert_eq!(arp_reply_from(&f[..20], [10, 137, 0, 1]), None, "short");
    }

    #[test]
    fn tcp_syn_parses_back_and_answers_are_recognised() {
        let e = ends();
        let syn = tcp_syn(&e, 40001, 7, 0x1234_5678);
        let caps = ChecksumCapabilities::default();
        let ip = Ipv4Packet::new_checked(&syn[ETH_HEADER..]).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let repr = TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(ip_repr.src_addr),
            &IpAddress::Ipv4(ip_repr.dst_addr),
            &caps,
        )
        .expect("checksum verifies");
        assert_eq!(repr.control, TcpControl::Syn);
        assert_eq!((repr.src_port, repr.dst_port), (40001, 7));
        // The SYN itself, seen from the other end, is "TCP from 10.137.0.99:40001 to 7".
        assert!(is_tcp_from(&syn, e.src_ip, 40001, 7));
        assert!(!is_tcp_from(&syn, e.src_ip, 40001, 8));
        assert!(!is_tcp_from(&syn, e.dst_ip, 40001, 7));
        let ping = icmp_echo_request(&e, 1, 1, b"");
        assert!(!is_tcp_from(&ping, e.src_ip, 40001, 7));
        assert!(!is_tcp_from(&syn[..40], e.src_ip, 40001, 7));
    }

    #[test]
    fn echo_replies_are_recognised() {
        let e = ends();
        let request = icmp_echo_request(&e, 0x77, 1, b"ping");
        assert!(!is_icmp_echo_reply(&request, e.src_ip, 0x77), "a request");
        let back = Ipv4Ends {
            src_mac: e.dst_mac,
            dst_mac: e.src_mac,
            src_ip: e.dst_ip,
            dst_ip: e.src_ip,
        };
        let icmp = Icmpv4Repr::EchoReply {
            ident: 0x77,
            seq_no: 1,
            data: b"ping",
        };
        let (mut f, ip) = ipv4(&back, IpProtocol::Icmp, icmp.buffer_len());
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(&mut f[ETH_HEADER + ip.buffer_len()..]),
            &ChecksumCapabilities::default(),
        );
        assert!(is_icmp_echo_reply(&f, e.dst_ip, 0x77));
        assert!(!is_icmp_echo_reply(&f, e.dst_ip, 0x78), "another ident");
        assert!(
            !is_icmp_echo_reply(&f, [1, 2, 3, 4], 0x77),
            "another source"
        );
        assert!(!is_icmp_echo_reply(&f[..30], e.dst_ip, 0x77), "short");
    }
}

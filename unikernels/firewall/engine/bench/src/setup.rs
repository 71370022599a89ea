//! The network both measurements use: one client qube (10.137.0.5) behind the firewall
//! (gateway 10.137.0.1), the uplink 192.168.77.50/24 and a server at 192.168.77.1 on the
//! uplink's network; `FLOWS` UDP flows from the client's ports 40000.. to the server's ports
//! 9000..; and the rule set both firewalls apply.

use bulkhead_firewall_engine::{Downstream, ROUTER_MAC, Router, UplinkInfo};
use bulkhead_qubeconfig::{Action, Cidr, PortRange, Proto, Rule, SpecialTarget};

/// UDP flows measured (round robin).
pub const FLOWS: usize = 16;
pub const CLIENT: [u8; 4] = [10, 137, 0, 5];
pub const CLIENT_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x5e, 0x00, 0x05];
pub const GATEWAY: [u8; 4] = [10, 137, 0, 1];
pub const VIRTUAL_DNS: [[u8; 4]; 2] = [[10, 139, 1, 1], [10, 139, 1, 2]];
pub const UPLINK: [u8; 4] = [192, 168, 77, 50];
pub const UPLINK_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x00, 0x50];
pub const SERVER: [u8; 4] = [192, 168, 77, 1];
pub const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x00, 0x01];
/// The client's first source port.
pub const CLIENT_PORT: u16 = 40000;
/// The server's first port.
pub const SERVER_PORT: u16 = 9000;
/// The rules' UDP port range on the server (the flows use the first `FLOWS`).
pub const SERVER_PORTS: (u16, u16) = (9000, 9099);
/// Headers of a UDP frame: Ethernet 14, IPv4 20, UDP 8.
pub const HEADERS: usize = 42;

/// The rule set: DNS to the virtual servers, HTTPS to the server, UDP to the server's
/// ports 9000-9099, nothing else.
pub fn rules() -> Vec<Rule> {
    let server = Some(Cidr {
        addr: SERVER,
        prefix_len: 32,
    });
    vec![
        Rule {
            specialtarget: Some(SpecialTarget::Dns),
            ..Rule::catch_all(Action::Accept)
        },
        Rule {
            dsthost: server,
            proto: Some(Proto::Tcp),
            dstports: Some(PortRange { lo: 443, hi: 443 }),
            ..Rule::catch_all(Action::Accept)
        },
        Rule {
            dsthost: server,
            proto: Some(Proto::Udp),
            dstports: Some(PortRange {
                lo: SERVER_PORTS.0,
                hi: SERVER_PORTS.1,
            }),
            ..Rule::catch_all(Action::Accept)
        },
        Rule::catch_all(Action::Drop),
    ]
}

/// The same rules for nftables (the router namespace): anti-spoofing as the engine does it,
/// established connections first, then the client's rules, then masquerade on the uplink.
pub fn nft_ruleset() -> String {
    let ip = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    format!(
        "table ip bulkhead_bench {{
  chain forward {{
    type filter hook forward priority filter; policy drop;
    iifname \"r0\" ip saddr != {client} drop
    ct state established,related accept
    iifname \"r0\" ip daddr {{ {dns0}, {dns1} }} udp dport 53 accept
    iifname \"r0\" ip daddr {{ {dns0}, {dns1} }} tcp dport 53 accept
    iifname \"r0\" ip daddr {server} tcp dport 443 accept
    iifname \"r0\" ip daddr {server} udp dport {lo}-{hi} accept
    iifname \"r0\" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    oifname \"r1\" masquerade
  }}
}}
",
        client = ip(CLIENT),
        dns0 = ip(VIRTUAL_DNS[0]),
        dns1 = ip(VIRTUAL_DNS[1]),
        server = ip(SERVER),
        lo = SERVER_PORTS.0,
        hi = SERVER_PORTS.1,
    )
}

/// The engine's configuration: the client with [`rules`], and the router.
pub fn config() -> (Vec<Downstream>, Router) {
    let client = Downstream {
        qube: heapless::String::try_from("work").expect("short name"),
        channel: heapless::String::try_from("fw-work").expect("short name"),
        address: Some(CLIENT),
        rules: rules().into_iter().collect(),
    };
    let router = Router {
        gateway: GATEWAY,
        virtual_dns: VIRTUAL_DNS.into_iter().collect(),
        upstream_dns: None,
    };
    (vec![client], router)
}

/// What sys-net would report.
pub fn uplink() -> UplinkInfo {
    UplinkInfo {
        mac: UPLINK_MAC,
        address: UPLINK,
        prefix_len: 24,
        gateway: Some(SERVER),
        dns: [SERVER].into_iter().collect(),
    }
}

fn arp(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// The client asks for the gateway (the firewall learns its MAC).
pub fn client_arp() -> Vec<u8> {
    arp(CLIENT_MAC, CLIENT, GATEWAY)
}

/// The server asks for the uplink address (the firewall learns its MAC).
pub fn server_arp() -> Vec<u8> {
    arp(SERVER_MAC, SERVER, UPLINK)
}

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Flow `k`'s frame of `len` bytes (Ethernet to UDP payload) from the client.
pub fn client_frame(k: usize, len: usize) -> Vec<u8> {
    let len = len.max(HEADERS);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&ROUTER_MAC);
    f[6..12].copy_from_slice(&CLIENT_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&CLIENT);
        ip[16..20].copy_from_slice(&SERVER);
        let c = checksum(ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let udp_len = ip_len - 20;
    let sport = CLIENT_PORT + k as u16;
    let dport = SERVER_PORT + k as u16;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut pseudo = 0u32;
    for w in [&CLIENT[..2], &CLIENT[2..], &SERVER[..2], &SERVER[2..]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 17 + u32::from(udp_len);
    let c = checksum(&f[34..], pseudo);
    f[40..42].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    f
}

/// The reply to a frame the firewall sent to the uplink: MACs, addresses and ports swapped
/// (the checksums stay valid).
pub fn mirror(sent: &[u8]) -> Vec<u8> {
    let mut f = sent.to_vec();
    f[0..6].copy_from_slice(&sent[6..12]);
    f[6..12].copy_from_slice(&sent[0..6]);
    f[26..30].copy_from_slice(&sent[30..34]);
    f[30..34].copy_from_slice(&sent[26..30]);
    f[34..36].copy_from_slice(&sent[36..38]);
    f[36..38].copy_from_slice(&sent[34..36]);
    f
}

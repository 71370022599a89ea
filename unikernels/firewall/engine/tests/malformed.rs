//! Frames the firewall refuses, each under its own reason.

mod common;

use bulkhead_firewall_engine::{DropReason, MAX_FRAME, Port, Verdict};
use common::*;

fn reason(net: &mut Net, port: Port, frame: &[u8]) -> DropReason {
    match net.send(port, frame) {
        Verdict::Dropped { reason, .. } => reason,
        v => panic!("expected a drop, got {v:?}"),
    }
}

fn good() -> Vec<u8> {
    Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 }).build()
}

/// Refills the IPv4 header checksum after an edit.
fn reseal(f: &mut [u8]) {
    smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
}

#[test]
fn each_kind_of_bad_frame_has_its_reason() {
    let mut net = Net::new(&[&[]]);
    let c = Port::Client(0);
    assert_eq!(
        reason(&mut net, c, &vec![0u8; MAX_FRAME + 1]),
        DropReason::TooLarge
    );
    assert_eq!(reason(&mut net, c, &good()[..13]), DropReason::Malformed);
    assert_eq!(reason(&mut net, c, &good()[..30]), DropReason::Malformed);
    assert_eq!(
        reason(&mut net, Port::Client(7), &good()),
        DropReason::UnknownPort
    );

    let mut f = good();
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(reason(&mut net, c, &f), DropReason::Ipv6);
    let mut f = good();
    f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    assert_eq!(reason(&mut net, c, &f), DropReason::Ethertype, "VLAN tag");

    let mut f = good();
    f[0] = 0x02;
    assert_eq!(reason(&mut net, c, &f), DropReason::NotForUs, "another MAC");

    let mut f = good();
    f[24] ^= 0x55;
    assert_eq!(
        reason(&mut net, c, &f),
        DropReason::Malformed,
        "header checksum"
    );

    let mut f = good();
    f[14] = 0x44;
    reseal(&mut f);
    assert_eq!(reason(&mut net, c, &f), DropReason::Malformed, "IHL 4");

    let mut f = good();
    f[14] = 0x65;
    reseal(&mut f);
    assert_eq!(
        reason(&mut net, c, &f),
        DropReason::Malformed,
        "version 6 in an IPv4 frame"
    );

    let mut f = good();
    f[16..18].copy_from_slice(&2000u16.to_be_bytes());
    reseal(&mut f);
    assert_eq!(
        reason(&mut net, c, &f),
        DropReason::Malformed,
        "total length"
    );

    let mut f = good();
    f[20] = 0x20; // more fragments
    reseal(&mut f);
    assert_eq!(reason(&mut net, c, &f), DropReason::Fragment);
    let mut f = good();
    f[20] = 0x00;
    f[21] = 0x10; // offset 16 * 8
    reseal(&mut f);
    assert_eq!(reason(&mut net, c, &f), DropReason::Fragment);

    // A header with 4 bytes of options (a NOP and an end of list).
    let g = good();
    let mut f = g[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&g[34..]);
    f[14] = 0x46;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    reseal(&mut f);
    assert_eq!(reason(&mut net, c, &f), DropReason::IpOptions);

    // UDP length larger than the packet.
    let mut f = good();
    f[38..40].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(reason(&mut net, c, &f), DropReason::Malformed);

    // TCP data offset past the end.
    let mut f = Pkt::from_client(
        0,
        REMOTE,
        L4::Tcp {
            sport: 1,
            dport: 2,
            flags: TCP_SYN,
        },
    )
    .build();
    f[46] = 0xf0;
    assert_eq!(reason(&mut net, c, &f), DropReason::Malformed);

    // ARP for another protocol.
    let mut a = arp(
        smoltcp::wire::ArpOperation::Request,
        CLIENT_MACS[0],
        CLIENTS[0],
        [0; 6],
        GATEWAY,
        [0xff; 6],
    );
    a[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(reason(&mut net, c, &a), DropReason::Malformed);

    assert!(net.take().is_empty(), "nothing is sent for any of them");
    assert_eq!(net.fw.stats().forwarded, 0);
}

#[test]
fn ethernet_padding_is_not_forwarded() {
    let mut net = Net::new(&[&[]]);
    let mut f = Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 }).build();
    let len = f.len();
    f.resize(60, 0xee);
    assert_eq!(net.send(Port::Client(0), &f), Verdict::Forwarded);
    let (_, out) = net.one();
    assert_eq!(out.len(), len);
}

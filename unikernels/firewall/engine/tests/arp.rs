//! ARP on both sides: proxy ARP for clients, the uplink address, resolution with a queue,
//! retries and giving up.

mod common;

use bulkhead_firewall_engine::{DropReason, Port, ROUTER_MAC, Verdict, timeouts};
use common::*;
use smoltcp::wire::ArpOperation;

fn client_asks(i: usize, target: [u8; 4]) -> Vec<u8> {
    arp(
        ArpOperation::Request,
        CLIENT_MACS[i],
        CLIENTS[i],
        [0; 6],
        target,
        [0xff; 6],
    )
}

#[test]
fn clients_get_the_firewall_mac_for_every_address_but_their_own() {
    let mut net = Net::bare(&[&[], &[]], router());
    for target in [GATEWAY, REMOTE, CLIENTS[1], VDNS[0]] {
        assert_eq!(
            net.send(Port::Client(0), &client_asks(0, target)),
            Verdict::Answered
        );
        let (port, frame) = net.one();
        assert_eq!(port, Port::Client(0));
        let (op, sha, spa, tpa, dst) = read_arp(&frame);
        assert_eq!(op, ArpOperation::Reply);
        assert_eq!((sha, spa), (ROUTER_MAC, target));
        assert_eq!((tpa, dst), (CLIENTS[0], CLIENT_MACS[0]));
    }
    // Its own address (a gratuitous announcement) is not answered.
    assert_eq!(
        net.send(Port::Client(0), &client_asks(0, CLIENTS[0])),
        Verdict::Consumed
    );
    assert!(net.take().is_empty());
}

#[test]
fn arp_with_another_sender_address_is_spoofing() {
    let mut net = Net::bare(&[&[], &[]], router());
    let f = arp(
        ArpOperation::Request,
        CLIENT_MACS[0],
        CLIENTS[1],
        [0; 6],
        GATEWAY,
        [0xff; 6],
    );
    let v = net.send(Port::Client(0), &f);
    assert!(matches!(
        v,
        Verdict::Dropped {
            reason: DropReason::Spoofed,
            ..
        }
    ));
    assert!(net.take().is_empty());
}

#[test]
fn the_uplink_address_is_answered_only_while_the_uplink_is_up() {
    let mut net = Net::bare(&[&[]], router());
    let ask = arp(
        ArpOperation::Request,
        LAN_GATEWAY_MAC,
        LAN_GATEWAY,
        [0; 6],
        UPLINK_ADDR,
        [0xff; 6],
    );
    assert!(matches!(
        net.send(Port::Uplink, &ask),
        Verdict::Dropped {
            reason: DropReason::UplinkDown,
            ..
        }
    ));
    net.fw.set_uplink(Some(&uplink_info()));
    assert_eq!(net.send(Port::Uplink, &ask), Verdict::Answered);
    let (port, frame) = net.one();
    assert_eq!(port, Port::Uplink);
    let (op, sha, spa, tpa, dst) = read_arp(&frame);
    assert_eq!(op, ArpOperation::Reply);
    assert_eq!(
        (sha, spa, tpa, dst),
        (UPLINK_MAC, UPLINK_ADDR, LAN_GATEWAY, LAN_GATEWAY_MAC)
    );
    // Questions about other hosts, from hosts we do not talk to, are not ours.
    let other = arp(
        ArpOperation::Request,
        [2, 0, 0, 0, 0, 20],
        [192, 168, 1, 20],
        [0; 6],
        [192, 168, 1, 77],
        [0xff; 6],
    );
    assert!(matches!(
        net.send(Port::Uplink, &other),
        Verdict::Dropped {
            reason: DropReason::NotForUs,
            ..
        }
    ));
}

#[test]
fn packets_wait_for_the_gateway_mac_and_go_when_it_answers() {
    let mut net = Net::bare(&[&[]], router());
    net.fw.set_uplink(Some(&uplink_info()));
    net.introduce(0);
    let p = Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 });
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
    let (port, req) = net.one();
    assert_eq!(port, Port::Uplink);
    let (op, sha, spa, tpa, dst) = read_arp(&req);
    assert_eq!(op, ArpOperation::Request);
    assert_eq!(
        (sha, spa, tpa, dst),
        (UPLINK_MAC, UPLINK_ADDR, LAN_GATEWAY, [0xff; 6])
    );
    // A second packet waits too, without a second request.
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
    assert!(net.take().is_empty());
    let answer = arp(
        ArpOperation::Reply,
        LAN_GATEWAY_MAC,
        LAN_GATEWAY,
        UPLINK_MAC,
        UPLINK_ADDR,
        UPLINK_MAC,
    );
    assert_eq!(net.send(Port::Uplink, &answer), Verdict::Consumed);
    let sent = net.take();
    assert_eq!(sent.len(), 2);
    for (port, f) in sent {
        assert_eq!(port, Port::Uplink);
        let s = read(&f);
        assert_eq!((s.dst_mac, s.src), (LAN_GATEWAY_MAC, UPLINK_ADDR));
    }
    assert_eq!(net.fw.stats().forwarded, 2);
    // Now known: straight through.
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
}

#[test]
fn an_unanswered_next_hop_is_retried_then_given_up() {
    let mut net = Net::bare(&[&[]], router());
    net.fw.set_uplink(Some(&uplink_info()));
    net.introduce(0);
    let on_link = [192, 168, 1, 9];
    let p = Pkt::from_client(0, on_link, L4::Udp { sport: 1, dport: 2 });
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
    let (_, req) = net.one();
    assert_eq!(
        read_arp(&req).3,
        on_link,
        "on-link: asks for the host itself"
    );
    net.poll();
    for _ in 1..timeouts::ARP_TRIES {
        assert_eq!(
            net.fw.next_deadline(),
            Some(net.now + timeouts::ARP_RETRY_MS)
        );
        net.now += timeouts::ARP_RETRY_MS;
        net.poll();
        let (_, req) = net.one();
        assert_eq!(read_arp(&req).3, on_link);
    }
    net.now += timeouts::ARP_RETRY_MS;
    net.poll();
    assert!(net.take().is_empty());
    assert_eq!(net.fw.stats().dropped(DropReason::Unresolved), 1);
}

#[test]
fn the_queue_is_bounded() {
    let mut net = Net::bare(&[&[]], router());
    net.fw.set_uplink(Some(&uplink_info()));
    net.introduce(0);
    let mut queued = 0;
    let mut full = 0;
    for n in 0..200u16 {
        // Distinct on-link hosts: each needs its own resolution.
        let p = Pkt::from_client(
            0,
            [192, 168, 1, (n % 100) as u8 + 100],
            L4::Udp { sport: n, dport: 2 },
        );
        match net.send(Port::Client(0), &p.build()) {
            Verdict::Queued => queued += 1,
            Verdict::Dropped {
                reason: DropReason::QueueFull,
                ..
            } => full += 1,
            v => panic!("{v:?}"),
        }
    }
    assert!(queued > 0 && full > 0, "{queued} queued, {full} refused");
    assert!(queued <= 32, "{queued}");
}

#[test]
fn a_client_mac_is_learnt_from_its_frames_and_asked_for_when_unknown() {
    let open = tcp_rule(bulkhead_qubeconfig::Action::Accept, Some(CLIENTS[1]), 22);
    let mut net = Net::bare(&[&[open], &[]], router());
    net.fw.set_uplink(Some(&uplink_info()));
    net.introduce(0);
    // Client 1 has not said anything yet: its MAC is asked for on its channel.
    let p = Pkt::from_client(
        0,
        CLIENTS[1],
        L4::Tcp {
            sport: 1,
            dport: 22,
            flags: TCP_SYN,
        },
    );
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
    let (port, req) = net.one();
    assert_eq!(port, Port::Client(1));
    let (op, sha, spa, tpa, _) = read_arp(&req);
    assert_eq!(
        (op, sha, spa, tpa),
        (ArpOperation::Request, ROUTER_MAC, GATEWAY, CLIENTS[1])
    );
    // Its answer releases the packet.
    let answer = arp(
        ArpOperation::Reply,
        CLIENT_MACS[1],
        CLIENTS[1],
        ROUTER_MAC,
        GATEWAY,
        ROUTER_MAC,
    );
    assert_eq!(net.send(Port::Client(1), &answer), Verdict::Consumed);
    let (port, f) = net.one();
    assert_eq!(port, Port::Client(1));
    assert_eq!(read(&f).dst_mac, CLIENT_MACS[1]);
}

#[test]
fn stale_gateway_entries_are_refreshed_in_use_and_forgotten_when_silent() {
    let mut net = Net::new(&[&[]]);
    let p = Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 });
    net.now += timeouts::ARP_REFRESH_MS;
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
    let sent = net.take();
    assert_eq!(sent.len(), 2, "the packet and a confirming request");
    assert_eq!(read_arp(&sent[1].1).0, ArpOperation::Request);
    net.now += timeouts::ARP_EXPIRE_MS;
    net.poll();
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
}

/// A /32 lease (cloud and some hotspot DHCP servers): the gateway is off the uplink's
/// prefix, and is learnt from the reply to our own request.
fn slash32() -> bulkhead_firewall_engine::UplinkInfo {
    bulkhead_firewall_engine::UplinkInfo {
        mac: UPLINK_MAC,
        address: [100, 69, 227, 175],
        prefix_len: 32,
        gateway: Some([100, 69, 227, 1]),
        dns: [[100, 69, 227, 1]].into_iter().collect(),
    }
}

#[test]
fn a_slash_32_lease_learns_its_gateway_from_the_answer_to_our_request() {
    let info = slash32();
    let (me, gw) = (info.address, info.gateway.unwrap());
    let gw_mac = [0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c];
    let mut net = Net::bare(&[&[]], router());
    net.fw.set_uplink(Some(&info));
    net.introduce(0);
    // An unsolicited reply from an off-prefix host, before we asked: not ours.
    let unsolicited = arp(ArpOperation::Reply, gw_mac, gw, UPLINK_MAC, me, UPLINK_MAC);
    assert!(matches!(
        net.send(Port::Uplink, &unsolicited),
        Verdict::Dropped {
            reason: DropReason::NotForUs,
            ..
        }
    ));
    let p = Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 });
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Queued);
    let (port, req) = net.one();
    assert_eq!(port, Port::Uplink);
    assert_eq!(
        read_arp(&req),
        (ArpOperation::Request, UPLINK_MAC, me, gw, [0xff; 6])
    );
    // A reply from another off-prefix host we did not ask about is still not ours.
    let other = arp(
        ArpOperation::Reply,
        [2, 0, 0, 0, 0, 66],
        [100, 69, 227, 66],
        UPLINK_MAC,
        me,
        UPLINK_MAC,
    );
    assert!(matches!(
        net.send(Port::Uplink, &other),
        Verdict::Dropped {
            reason: DropReason::NotForUs,
            ..
        }
    ));
    // The gateway's answer releases the packet, from our /32 address to its MAC.
    assert_eq!(net.send(Port::Uplink, &unsolicited), Verdict::Consumed);
    let (port, f) = net.one();
    assert_eq!(port, Port::Uplink);
    let s = read(&f);
    assert_eq!((s.dst_mac, s.src, s.dst), (gw_mac, me, REMOTE));
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
    net.take();
    // The reply comes back through the gateway.
    let back = Pkt {
        src_mac: gw_mac,
        dst_mac: UPLINK_MAC,
        ..Pkt::new(REMOTE, me, L4::Udp { sport: 2, dport: 1 })
    };
    assert_eq!(net.send(Port::Uplink, &back.build()), Verdict::Forwarded);
    net.take();
    // An unsolicited off-prefix reply does not move the gateway elsewhere.
    let moved = arp(
        ArpOperation::Reply,
        [2, 0, 0, 0, 0, 99],
        gw,
        UPLINK_MAC,
        me,
        UPLINK_MAC,
    );
    assert!(matches!(
        net.send(Port::Uplink, &moved),
        Verdict::Dropped {
            reason: DropReason::NotForUs,
            ..
        }
    ));
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
    assert_eq!(read(&net.one().1).dst_mac, gw_mac);
    // Once old, the entry is confirmed by a request of ours, and the answer is taken.
    net.now += timeouts::ARP_REFRESH_MS;
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
    let sent = net.take();
    assert_eq!(sent.len(), 2, "the packet and a confirming request");
    net.now += 10;
    assert_eq!(net.send(Port::Uplink, &unsolicited), Verdict::Consumed);
    // Confirmed: still in use after the time the old entry would have been forgotten.
    net.now += timeouts::ARP_EXPIRE_MS - timeouts::ARP_REFRESH_MS;
    net.poll();
    assert_eq!(net.send(Port::Client(0), &p.build()), Verdict::Forwarded);
}

#[test]
fn the_gateway_of_a_slash_32_lease_is_answered_and_others_off_the_prefix_are_not() {
    let info = slash32();
    let (me, gw) = (info.address, info.gateway.unwrap());
    let mut net = Net::bare(&[&[]], router());
    net.fw.set_uplink(Some(&info));
    let from_gw = arp(
        ArpOperation::Request,
        LAN_GATEWAY_MAC,
        gw,
        [0; 6],
        me,
        [0xff; 6],
    );
    assert_eq!(net.send(Port::Uplink, &from_gw), Verdict::Answered);
    let (_, f) = net.one();
    assert_eq!(
        read_arp(&f),
        (ArpOperation::Reply, UPLINK_MAC, me, gw, LAN_GATEWAY_MAC)
    );
    let stranger = arp(
        ArpOperation::Request,
        [2, 0, 0, 0, 0, 7],
        [100, 69, 227, 7],
        [0; 6],
        me,
        [0xff; 6],
    );
    assert!(matches!(
        net.send(Port::Uplink, &stranger),
        Verdict::Dropped {
            reason: DropReason::NotForUs,
            ..
        }
    ));
    assert!(net.take().is_empty());
}

//! Per-client rules, anti-spoofing and client isolation, through `Firewall::handle`.

mod common;

use bulkhead_firewall_engine::{DropReason, Port, Verdict};
use bulkhead_qubeconfig::{Action, Cidr, Proto, Rule};
use common::*;

fn verdict_of(rules: &[Rule], p: &Pkt) -> Verdict {
    let mut net = Net::new(&[rules, &[]]);
    net.send(Port::Client(0), &p.build())
}

fn reason(v: Verdict) -> Option<DropReason> {
    match v {
        Verdict::Dropped { reason, .. } => Some(reason),
        _ => None,
    }
}

fn udp(dst: [u8; 4], dport: u16) -> Pkt {
    Pkt::from_client(0, dst, L4::Udp { sport: 5555, dport })
}

fn syn(dst: [u8; 4], dport: u16) -> Pkt {
    Pkt::from_client(
        0,
        dst,
        L4::Tcp {
            sport: 5555,
            dport,
            flags: TCP_SYN,
        },
    )
}

fn ping(dst: [u8; 4], ty: u8) -> Pkt {
    Pkt::from_client(
        0,
        dst,
        L4::Icmp {
            ty,
            code: 0,
            ident: 1,
            seq: 1,
        },
    )
}

#[test]
fn an_empty_rule_list_accepts_everything() {
    assert_eq!(verdict_of(&[], &udp(REMOTE, 9)), Verdict::Forwarded);
    assert_eq!(verdict_of(&[], &syn(REMOTE, 22)), Verdict::Forwarded);
    assert_eq!(verdict_of(&[], &ping(REMOTE, 8)), Verdict::Forwarded);
}

#[test]
fn dsthost_matches_a_network() {
    let rules = [
        rule(Action::Accept, |r| {
            r.dsthost = Some(Cidr {
                addr: [93, 184, 0, 0],
                prefix_len: 16,
            })
        }),
        Rule::catch_all(Action::Drop),
    ];
    assert_eq!(verdict_of(&rules, &udp(REMOTE, 9)), Verdict::Forwarded);
    assert_eq!(
        reason(verdict_of(&rules, &udp([93, 185, 0, 1], 9))),
        Some(DropReason::DroppedByRule)
    );
}

#[test]
fn proto_matches_only_its_protocol() {
    let rules = [rule(Action::Accept, |r| r.proto = Some(Proto::Udp))];
    assert_eq!(verdict_of(&rules, &udp(REMOTE, 9)), Verdict::Forwarded);
    assert_eq!(
        reason(verdict_of(&rules, &syn(REMOTE, 9))),
        Some(DropReason::NoRuleMatched)
    );
    assert_eq!(
        reason(verdict_of(&rules, &ping(REMOTE, 8))),
        Some(DropReason::NoRuleMatched)
    );
}

#[test]
fn dstports_match_a_range_of_tcp_or_udp_ports() {
    let rules = [
        rule(Action::Accept, |r| {
            r.proto = Some(Proto::Tcp);
            r.dstports = Some(ports(8000, 8080));
        }),
        Rule::catch_all(Action::Drop),
    ];
    for (port, ok) in [
        (7999, false),
        (8000, true),
        (8042, true),
        (8080, true),
        (8081, false),
    ] {
        let v = verdict_of(&rules, &syn(REMOTE, port));
        assert_eq!(v == Verdict::Forwarded, ok, "port {port}: {v:?}");
    }
    // The same ports over UDP do not match a TCP rule.
    assert_eq!(
        reason(verdict_of(&rules, &udp(REMOTE, 8000))),
        Some(DropReason::DroppedByRule)
    );
}

#[test]
fn icmptype_matches_only_that_type() {
    let rules = [
        rule(Action::Drop, |r| {
            r.proto = Some(Proto::Icmp);
            r.icmptype = Some(8);
        }),
        Rule::catch_all(Action::Accept),
    ];
    assert_eq!(
        reason(verdict_of(&rules, &ping(REMOTE, 8))),
        Some(DropReason::DroppedByRule)
    );
    // Type 13 (timestamp) passes the rules but cannot be tracked.
    assert_eq!(
        reason(verdict_of(&rules, &ping(REMOTE, 13))),
        Some(DropReason::Unsupported)
    );
    assert_eq!(verdict_of(&rules, &udp(REMOTE, 8)), Verdict::Forwarded);
}

#[test]
fn specialtarget_dns_matches_the_virtual_servers_on_port_53() {
    let rules = [dns_rule(), tcp_rule(Action::Accept, Some(REMOTE), 443)];
    assert_eq!(verdict_of(&rules, &udp(VDNS[0], 53)), Verdict::Forwarded);
    assert_eq!(verdict_of(&rules, &syn(VDNS[1], 53)), Verdict::Forwarded);
    assert_eq!(verdict_of(&rules, &syn(REMOTE, 443)), Verdict::Forwarded);
    // Port 53 elsewhere is not the DNS target.
    assert_eq!(
        reason(verdict_of(&rules, &udp(REMOTE, 53))),
        Some(DropReason::NoRuleMatched)
    );
    // Other ports on the virtual addresses are the firewall's own: never forwarded.
    assert_eq!(
        reason(verdict_of(&rules, &udp(VDNS[0], 54))),
        Some(DropReason::ToFirewall)
    );
}

#[test]
fn the_first_matching_rule_wins() {
    let accept_443 = tcp_rule(Action::Accept, None, 443);
    let drop_remote = rule(Action::Drop, |r| r.dsthost = Some(host(REMOTE)));
    let a = [accept_443, drop_remote];
    let b = [drop_remote, accept_443];
    assert_eq!(verdict_of(&a, &syn(REMOTE, 443)), Verdict::Forwarded);
    assert_eq!(
        reason(verdict_of(&b, &syn(REMOTE, 443))),
        Some(DropReason::DroppedByRule)
    );
}

#[test]
fn rules_decide_new_connections_only() {
    // Once accepted, the replies come back although no rule mentions them.
    let mut net = Net::new(&[&[tcp_rule(Action::Accept, Some(REMOTE), 443)]]);
    let seen = net.through(0, &syn(REMOTE, 443), Port::Uplink);
    let back = net.back(&reply_to(&seen, None), 0);
    assert_eq!(back.src, REMOTE);
}

#[test]
fn a_spoofed_source_is_dropped_and_counted() {
    let mut net = Net::new(&[&[], &[]]);
    let mut p = udp(REMOTE, 9);
    p.src = CLIENTS[1];
    let v = net.send(Port::Client(0), &p.build());
    let Verdict::Dropped { reason, packet } = v else {
        panic!("{v:?}")
    };
    assert_eq!(reason, DropReason::Spoofed);
    assert_eq!(packet.unwrap().src, CLIENTS[1]);
    p.src = [10, 137, 0, 99];
    net.send(Port::Client(0), &p.build());
    assert_eq!(net.fw.stats().dropped(DropReason::Spoofed), 2);
    assert!(net.take().is_empty());
}

#[test]
fn clients_are_isolated_unless_an_explicit_host_rule_opens_the_way() {
    // Client 0 accepts everything; client 2 names client 1 explicitly for TCP 22.
    let open = tcp_rule(Action::Accept, Some(CLIENTS[1]), 22);
    let mut net = Net::new(&[&[], &[], &[open]]);
    let to_1 = |i| {
        Pkt::from_client(
            i,
            CLIENTS[1],
            L4::Tcp {
                sport: 4000,
                dport: 22,
                flags: TCP_SYN,
            },
        )
    };
    assert_eq!(
        reason(net.send(Port::Client(0), &to_1(0).build())),
        Some(DropReason::ClientIsolation)
    );
    // Allowed: forwarded without translation to client 1, and its answer comes back.
    let seen = net.through(2, &to_1(2), Port::Client(1));
    assert_eq!((seen.src, seen.dst), (CLIENTS[2], CLIENTS[1]));
    assert_eq!(seen.dst_mac, CLIENT_MACS[1]);
    assert_eq!(
        seen.l4,
        L4::Tcp {
            sport: 4000,
            dport: 22,
            flags: TCP_SYN
        }
    );
    let answer = reply_to(&seen, None);
    let v = net.send(Port::Client(1), &answer.build());
    assert_eq!(v, Verdict::Forwarded);
    let (port, frame) = net.one();
    assert_eq!(port, Port::Client(2));
    assert_eq!(read(&frame).src, CLIENTS[1]);
    // Client 1 cannot open anything towards client 2 by itself.
    let back_in = Pkt::from_client(
        1,
        CLIENTS[2],
        L4::Tcp {
            sport: 22,
            dport: 4001,
            flags: TCP_SYN,
        },
    );
    assert_eq!(
        reason(net.send(Port::Client(1), &back_in.build())),
        Some(DropReason::ClientIsolation)
    );
    assert_eq!(
        net.fw.stats().dropped(DropReason::ClientIsolation),
        2,
        "two isolation drops"
    );
}

#[test]
fn the_firewall_answers_ping_and_refuses_other_traffic_to_itself() {
    let mut net = Net::new(&[&[]]);
    assert_eq!(
        net.send(Port::Client(0), &ping(GATEWAY, 8).build()),
        Verdict::Answered
    );
    let (port, frame) = net.one();
    assert_eq!(port, Port::Client(0));
    let r = read(&frame);
    assert_eq!((r.src, r.dst), (GATEWAY, CLIENTS[0]));
    assert!(matches!(
        r.l4,
        L4::Icmp {
            ty: 0,
            ident: 1,
            ..
        }
    ));
    assert_eq!(
        reason(net.send(Port::Client(0), &syn(GATEWAY, 22).build())),
        Some(DropReason::ToFirewall)
    );
    assert_eq!(
        reason(net.send(Port::Client(0), &udp(UPLINK_ADDR, 9).build())),
        Some(DropReason::ToFirewall)
    );
}

#[test]
fn the_firewall_answers_only_echo_requests_that_arrived_intact() {
    let mut net = Net::new(&[&[]]);
    for dst in [GATEWAY, VDNS[1], UPLINK_ADDR] {
        let good = ping(dst, 8).build();
        // A flipped payload bit, a wrong checksum field, a cut message with its IPv4 header
        // made consistent again.
        let mut payload = good.clone();
        *payload.last_mut().unwrap() ^= 0x01;
        let mut field = good.clone();
        field[36] ^= 0x80;
        let mut cut = good.clone();
        cut.truncate(cut.len() - 2);
        let len = (cut.len() - 14) as u16;
        cut[16..18].copy_from_slice(&len.to_be_bytes());
        smoltcp::wire::Ipv4Packet::new_unchecked(&mut cut[14..]).fill_checksum();
        for bad in [payload, field, cut] {
            assert_eq!(
                reason(net.send(Port::Client(0), &bad)),
                Some(DropReason::BadChecksum),
                "{dst:?}"
            );
        }
        assert!(net.take().is_empty());
        assert_eq!(net.send(Port::Client(0), &good), Verdict::Answered);
        assert!(matches!(read(&net.one().1).l4, L4::Icmp { ty: 0, .. }));
    }
    assert_eq!(net.fw.stats().dropped(DropReason::BadChecksum), 9);
    // A forwarded echo keeps its checksum as it came, as any router does.
    let mut bad = ping(REMOTE, 8).build();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(net.send(Port::Client(0), &bad), Verdict::Forwarded);
}

#[test]
fn unroutable_destinations_are_dropped() {
    for dst in [
        [127, 0, 0, 1],
        [224, 0, 0, 251],
        [255, 255, 255, 255],
        [0, 1, 2, 3],
        CLIENTS[0],
    ] {
        assert_eq!(
            reason(verdict_of(&[], &udp(dst, 5353))),
            Some(DropReason::NotRoutable),
            "{dst:?}"
        );
    }
}

#[test]
fn the_uplink_networks_broadcast_and_network_addresses_are_not_forwarded() {
    // The uplink is 192.168.1.50/24.
    let mut net = Net::new(&[&[]]);
    for dst in [[192, 168, 1, 255], [192, 168, 1, 0]] {
        for l4 in [
            L4::Udp {
                sport: 4000,
                dport: 9,
            },
            L4::Icmp {
                ty: 8,
                code: 0,
                ident: 1,
                seq: 1,
            },
        ] {
            let v = net.send(Port::Client(0), &Pkt::from_client(0, dst, l4).build());
            assert_eq!(reason(v), Some(DropReason::Broadcast), "{dst:?}");
        }
    }
    assert!(net.take().is_empty());
    assert_eq!(net.fw.stats().dropped(DropReason::Broadcast), 4);
    assert_eq!(net.fw.stats().connections, 0);
    // Hosts of that network, and the broadcast of a network that is not the uplink's, go.
    let v = net.send(Port::Client(0), &udp([192, 168, 1, 254], 9).build());
    assert_eq!(v, Verdict::Queued, "on the link: waits for its ARP answer");
    net.take();
    net.through(0, &udp([192, 168, 2, 255], 9), Port::Uplink);
    // A /31 (RFC 3021) and a /32 have no broadcast address: both ends are hosts.
    for (addr, prefix_len, gw) in [
        ([192, 168, 7, 0], 31, [192, 168, 7, 1]),
        ([100, 69, 227, 175], 32, [100, 69, 227, 1]),
    ] {
        let mut info = uplink_info();
        info.address = addr;
        info.prefix_len = prefix_len;
        info.gateway = Some(gw);
        net.fw.set_uplink(Some(&info));
        let v = net.send(Port::Client(0), &udp(gw, 9).build());
        assert_eq!(v, Verdict::Queued, "{addr:?}/{prefix_len}");
        net.take();
    }
}

#[test]
fn protocols_without_ports_are_not_tracked() {
    let mut p = udp(REMOTE, 1);
    p.l4 = L4::Raw { proto: 47 };
    assert_eq!(reason(verdict_of(&[], &p)), Some(DropReason::Unsupported));
}

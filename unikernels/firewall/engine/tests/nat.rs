//! Masquerading, connection tracking and DNS forwarding, seen from outside the engine.

mod common;

use bulkhead_firewall_engine::{DropReason, Port, Router, Verdict, timeouts};
use common::*;

fn dropped(v: Verdict) -> DropReason {
    match v {
        Verdict::Dropped { reason, .. } => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn udp_round_trip_is_masqueraded_and_translated_back() {
    let mut net = Net::new(&[&[]]);
    let out = Pkt::from_client(
        0,
        REMOTE,
        L4::Udp {
            sport: 40000,
            dport: 123,
        },
    );
    let seen = net.through(0, &out, Port::Uplink);
    assert_eq!(seen.src, UPLINK_ADDR);
    assert_eq!(seen.dst, REMOTE);
    assert_eq!(seen.src_mac, UPLINK_MAC);
    assert_eq!(seen.dst_mac, LAN_GATEWAY_MAC, "off-link: via the gateway");
    assert_eq!(seen.ttl, 63);
    assert_eq!(seen.payload, b"hello");
    let L4::Udp { sport: nat, dport } = seen.l4 else {
        panic!("{seen:?}")
    };
    assert_eq!(dport, 123);
    assert_eq!(nat, 40000, "a free source port is kept");

    let back = net.back(&reply_to(&seen, None), 0);
    assert_eq!(back.src, REMOTE);
    assert_eq!(back.dst, CLIENTS[0]);
    assert_eq!(
        back.l4,
        L4::Udp {
            sport: 123,
            dport: 40000
        }
    );
    assert_eq!(back.dst_mac, CLIENT_MACS[0]);
    assert_eq!(back.src_mac, bulkhead_firewall_engine::ROUTER_MAC);
    assert_eq!(back.payload, b"reply");
    assert_eq!(net.fw.stats().forwarded, 2);
    assert_eq!(net.fw.stats().connections, 1);
}

#[test]
fn tcp_round_trip_and_two_clients_on_the_same_port_get_different_ports() {
    let mut net = Net::new(&[&[], &[]]);
    let syn = |i| {
        Pkt::from_client(
            i,
            REMOTE,
            L4::Tcp {
                sport: 50000,
                dport: 443,
                flags: TCP_SYN,
            },
        )
    };
    let a = net.through(0, &syn(0), Port::Uplink);
    let b = net.through(1, &syn(1), Port::Uplink);
    let (L4::Tcp { sport: pa, .. }, L4::Tcp { sport: pb, .. }) = (&a.l4, &b.l4) else {
        panic!()
    };
    assert_ne!(pa, pb, "replies must be told apart");
    for (seen, i) in [(&b, 1), (&a, 0)] {
        let back = net.back(&reply_to(seen, None), i);
        assert_eq!(back.dst, CLIENTS[i]);
        assert_eq!(
            back.l4,
            L4::Tcp {
                sport: 443,
                dport: 50000,
                flags: TCP_SYN | TCP_ACK
            }
        );
    }
    // Established: the client's ACK goes out on the same translated port.
    let ack = Pkt::from_client(
        0,
        REMOTE,
        L4::Tcp {
            sport: 50000,
            dport: 443,
            flags: TCP_ACK,
        },
    );
    let seen = net.through(0, &ack, Port::Uplink);
    assert_eq!(
        seen.l4,
        L4::Tcp {
            sport: *pa,
            dport: 443,
            flags: TCP_ACK
        }
    );
}

#[test]
fn icmp_echo_round_trip_translates_the_identifier() {
    let mut net = Net::new(&[&[], &[]]);
    let ping = |i| {
        Pkt::from_client(
            i,
            REMOTE,
            L4::Icmp {
                ty: 8,
                code: 0,
                ident: 7,
                seq: 1,
            },
        )
    };
    let a = net.through(0, &ping(0), Port::Uplink);
    let b = net.through(1, &ping(1), Port::Uplink);
    let (L4::Icmp { ident: ia, .. }, L4::Icmp { ident: ib, .. }) = (&a.l4, &b.l4) else {
        panic!()
    };
    assert_ne!(ia, ib);
    let back = net.back(&reply_to(&b, None), 1);
    assert_eq!(
        back.l4,
        L4::Icmp {
            ty: 0,
            code: 0,
            ident: 7,
            seq: 1
        }
    );
    assert_eq!((back.src, back.dst), (REMOTE, CLIENTS[1]));
}

#[test]
fn dns_to_a_virtual_address_goes_to_the_dhcp_resolver_and_comes_back_from_the_virtual_one() {
    let mut net = Net::new(&[&[dns_rule()]]);
    let q = Pkt::from_client(
        0,
        VDNS[1],
        L4::Udp {
            sport: 33333,
            dport: 53,
        },
    );
    let seen = net.through(0, &q, Port::Uplink);
    assert_eq!((seen.src, seen.dst), (UPLINK_ADDR, LAN_DNS));
    assert_eq!(
        seen.dst_mac, LAN_GATEWAY_MAC,
        "on-link resolver: its own MAC"
    );
    let L4::Udp { dport: 53, .. } = seen.l4 else {
        panic!("{seen:?}")
    };
    let back = net.back(&reply_to(&seen, None), 0);
    assert_eq!((back.src, back.dst), (VDNS[1], CLIENTS[0]));
    assert_eq!(
        back.l4,
        L4::Udp {
            sport: 53,
            dport: 33333
        }
    );
}

#[test]
fn dns_over_tcp_and_the_configured_upstream_override() {
    let mut r = router();
    r.upstream_dns = Some(([9, 9, 9, 9], 5353));
    let mut net = Net::bare(&[&[]], r);
    net.fw.set_uplink(Some(&uplink_info()));
    net.introduce(0);
    net.learn_gateway();
    let q = Pkt::from_client(
        0,
        VDNS[0],
        L4::Tcp {
            sport: 40001,
            dport: 53,
            flags: TCP_SYN,
        },
    );
    let seen = net.through(0, &q, Port::Uplink);
    assert_eq!(seen.dst, [9, 9, 9, 9]);
    let L4::Tcp { dport: 5353, .. } = seen.l4 else {
        panic!("{seen:?}")
    };
    let back = net.back(&reply_to(&seen, None), 0);
    assert_eq!(back.src, VDNS[0]);
    let L4::Tcp {
        sport: 53,
        dport: 40001,
        ..
    } = back.l4
    else {
        panic!("{back:?}")
    };
}

#[test]
fn dns_without_a_resolver_is_dropped() {
    let mut net = Net::new(&[&[]]);
    let mut info = uplink_info();
    info.dns.clear();
    net.fw.set_uplink(Some(&info));
    net.learn_gateway();
    let q = Pkt::from_client(
        0,
        VDNS[0],
        L4::Udp {
            sport: 1,
            dport: 53,
        },
    );
    assert_eq!(
        dropped(net.send(Port::Client(0), &q.build())),
        DropReason::NoDnsServer
    );
}

#[test]
fn uplink_traffic_without_a_connection_is_dropped() {
    let mut net = Net::new(&[&[]]);
    let unsolicited = Pkt::from_uplink(
        REMOTE,
        L4::Tcp {
            sport: 443,
            dport: 22,
            flags: TCP_SYN,
        },
    );
    assert_eq!(
        dropped(net.send(Port::Uplink, &unsolicited.build())),
        DropReason::NoConnection
    );
    // Not even a reply to a connection of another port.
    let out = Pkt::from_client(
        0,
        REMOTE,
        L4::Udp {
            sport: 5000,
            dport: 53,
        },
    );
    let seen = net.through(0, &out, Port::Uplink);
    let mut r = reply_to(&seen, None);
    r.l4 = L4::Udp {
        sport: 53,
        dport: 5001,
    };
    assert_eq!(
        dropped(net.send(Port::Uplink, &r.build())),
        DropReason::NoConnection
    );
    // Nor from another remote host.
    let mut r = reply_to(&seen, None);
    r.src = [1, 2, 3, 4];
    assert_eq!(
        dropped(net.send(Port::Uplink, &r.build())),
        DropReason::NoConnection
    );
    assert!(net.take().is_empty());
    assert_eq!(net.fw.stats().dropped(DropReason::NoConnection), 3);
}

#[test]
fn udp_flows_expire_sooner_unanswered() {
    let mut net = Net::new(&[&[]]);
    let out = Pkt::from_client(
        0,
        REMOTE,
        L4::Udp {
            sport: 6000,
            dport: 9,
        },
    );
    let seen = net.through(0, &out, Port::Uplink);
    net.now += timeouts::UDP_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
    assert_eq!(
        dropped(net.send(Port::Uplink, &reply_to(&seen, None).build())),
        DropReason::NoConnection
    );
    // Answered, it lives for the longer timeout.
    let seen = net.through(0, &out, Port::Uplink);
    net.back(&reply_to(&seen, None), 0);
    net.now += timeouts::UDP_MS + 1;
    net.poll();
    net.back(&reply_to(&seen, None), 0);
    net.now += timeouts::UDP_REPLIED_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
    assert!(net.fw.stats().connections_expired >= 2);
}

#[test]
fn tcp_must_start_with_syn_and_closes_quickly_after_rst() {
    let mut net = Net::new(&[&[]]);
    let ack = Pkt::from_client(
        0,
        REMOTE,
        L4::Tcp {
            sport: 7000,
            dport: 80,
            flags: TCP_ACK,
        },
    );
    assert_eq!(
        dropped(net.send(Port::Client(0), &ack.build())),
        DropReason::NoConnection
    );
    let syn = Pkt::from_client(
        0,
        REMOTE,
        L4::Tcp {
            sport: 7000,
            dport: 80,
            flags: TCP_SYN,
        },
    );
    let seen = net.through(0, &syn, Port::Uplink);
    let rst = reply_to(
        &seen,
        Some(L4::Tcp {
            sport: 80,
            dport: 7000,
            flags: TCP_RST | TCP_ACK,
        }),
    );
    net.back(&rst, 0);
    net.now += timeouts::TCP_CLOSED_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
}

#[test]
fn icmp_errors_about_a_connection_reach_its_client_translated() {
    let mut net = Net::new(&[&[]]);
    let q = Pkt::from_client(
        0,
        VDNS[0],
        L4::Udp {
            sport: 44444,
            dport: 53,
        },
    );
    let v = net.send(Port::Client(0), &q.build());
    assert_eq!(v, Verdict::Forwarded);
    let (_, frame) = net.one();
    let seen = read(&frame);
    // The resolver's host answers "port unreachable", quoting the query as it saw it.
    let err = icmp_error(seen.dst, 3, 3, &frame[14..]);
    assert_eq!(net.send(Port::Uplink, &err), Verdict::Forwarded);
    let (port, back) = net.one();
    assert_eq!(port, Port::Client(0));
    let b = read(&back);
    assert_eq!((b.src, b.dst), (LAN_DNS, CLIENTS[0]));
    assert!(matches!(b.l4, L4::Icmp { ty: 3, code: 3, .. }));
    // The quoted packet is the client's own query again.
    let inner = &b.payload;
    assert_eq!(&inner[12..16], &CLIENTS[0]);
    assert_eq!(&inner[16..20], &VDNS[0]);
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 44444);
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 53);
    assert!(
        smoltcp::wire::Ipv4Packet::new_unchecked(&inner[..20]).verify_checksum(),
        "quoted header checksum"
    );
    // An error about nothing we sent is dropped.
    let mut other = frame[14..].to_vec();
    other[20] ^= 0xff;
    let err = icmp_error(seen.dst, 3, 3, &other);
    assert_eq!(
        dropped(net.send(Port::Uplink, &err)),
        DropReason::NoConnection
    );
}

#[test]
fn a_new_uplink_address_forgets_the_old_connections() {
    let mut net = Net::new(&[&[]]);
    let out = Pkt::from_client(
        0,
        REMOTE,
        L4::Udp {
            sport: 6000,
            dport: 9,
        },
    );
    let seen = net.through(0, &out, Port::Uplink);
    // The same lease again: nothing changes.
    net.fw.set_uplink(Some(&uplink_info()));
    assert_eq!(net.fw.stats().connections, 1);
    net.fw.set_uplink(None);
    assert_eq!(
        dropped(net.send(Port::Client(0), &out.build())),
        DropReason::UplinkDown
    );
    assert_eq!(
        dropped(net.send(Port::Uplink, &reply_to(&seen, None).build())),
        DropReason::UplinkDown
    );
    let mut info = uplink_info();
    info.address = [192, 168, 1, 51];
    net.fw.set_uplink(Some(&info));
    assert_eq!(net.fw.stats().connections, 0);
}

#[test]
fn ttl_one_is_not_forwarded() {
    let mut net = Net::new(&[&[]]);
    let mut p = Pkt::from_client(0, REMOTE, L4::Udp { sport: 1, dport: 2 });
    p.ttl = 1;
    assert_eq!(
        dropped(net.send(Port::Client(0), &p.build())),
        DropReason::TtlExceeded
    );
}

#[test]
fn one_client_may_borrow_the_whole_table_and_gives_back_what_another_needs() {
    use bulkhead_firewall_engine::MAX_CONNECTIONS;
    let mut net = Net::new(&[&[], &[]]);
    assert_eq!(net.fw.connection_share(), MAX_CONNECTIONS / 2);
    let flow = |i: usize, n: usize| {
        Pkt::from_client(
            i,
            [100, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8],
            L4::Udp {
                sport: 1000,
                dport: 53,
            },
        )
    };
    // Alone, client 0 fills the whole table.
    for n in 0..MAX_CONNECTIONS {
        let v = net.send(Port::Client(0), &flow(0, n).build());
        assert_eq!(v, Verdict::Forwarded, "{n}");
    }
    net.take();
    assert_eq!(net.fw.connections_of(0), MAX_CONNECTIONS);
    // Full, and over its share: a new flow of its own replaces its oldest unanswered one.
    net.through(0, &flow(0, MAX_CONNECTIONS), Port::Uplink);
    assert_eq!(net.fw.stats().connections_evicted, 1);
    // Client 1 still gets through, taking back from client 0's part of its share.
    for n in 0..8 {
        net.through(1, &flow(1, n), Port::Uplink);
    }
    assert_eq!(net.fw.connections_of(1), 8);
    assert_eq!(net.fw.connections_of(0), MAX_CONNECTIONS - 8);
    assert_eq!(net.fw.stats().connections, MAX_CONNECTIONS);
    // Once client 0's flows expire, everything is free again.
    net.now += timeouts::UDP_MS + 1;
    net.poll();
    assert_eq!(net.fw.stats().connections, 0);
}

#[test]
fn router_configuration_errors_are_reported() {
    use bulkhead_firewall_engine::{ConfigError, Firewall};
    let mut a = downstream(0, &[]);
    let b = downstream(1, &[]);
    let r: Router = router();
    let mut dup = b.clone();
    dup.address = a.address;
    assert!(matches!(
        Firewall::new(&[a.clone(), dup], &r),
        Err(ConfigError::DuplicateAddress(1))
    ));
    a.address = Some(GATEWAY);
    assert!(matches!(
        Firewall::new(&[a.clone()], &r),
        Err(ConfigError::RouterAddress(0))
    ));
    a.address = None;
    assert!(matches!(
        Firewall::new(&[b, a], &r),
        Err(ConfigError::NoAddress(1))
    ));
}

//! Properties: no input panics the engine; translation is invertible; the rule engine
//! agrees with a plain reference model.

mod common;

use bulkhead_firewall_engine::{DropReason, Port, Verdict};
use bulkhead_qubeconfig::{Action, Cidr, PortRange, Proto, Rule, SpecialTarget};
use common::*;
use proptest::prelude::*;

fn port_of(sel: u8) -> Port {
    match sel % 5 {
        0 => Port::Uplink,
        4 => Port::Client(usize::from(sel)),
        n => Port::Client(usize::from(n) - 1),
    }
}

/// Valid frames of every kind the engine reads, with the port they belong to, to mutate.
fn templates() -> Vec<(Port, Vec<u8>)> {
    let l4s = [
        L4::Tcp {
            sport: 1000,
            dport: 443,
            flags: TCP_SYN,
        },
        L4::Udp {
            sport: 1000,
            dport: 53,
        },
        L4::Icmp {
            ty: 8,
            code: 0,
            ident: 9,
            seq: 1,
        },
    ];
    let mut t = Vec::new();
    for l4 in &l4s {
        t.push((
            Port::Client(0),
            Pkt::from_client(0, REMOTE, l4.clone()).build(),
        ));
        t.push((
            Port::Client(1),
            Pkt::from_client(1, VDNS[0], l4.clone()).build(),
        ));
        t.push((
            Port::Client(2),
            Pkt::from_client(2, CLIENTS[1], l4.clone()).build(),
        ));
        t.push((Port::Uplink, Pkt::from_uplink(REMOTE, l4.clone()).build()));
    }
    let inner = t[1].1[14..].to_vec();
    t.push((Port::Uplink, icmp_error(REMOTE, 3, 3, &inner)));
    t.push((
        Port::Client(0),
        arp(
            smoltcp::wire::ArpOperation::Request,
            CLIENT_MACS[0],
            CLIENTS[0],
            [0; 6],
            GATEWAY,
            [0xff; 6],
        ),
    ));
    t.push((
        Port::Uplink,
        arp(
            smoltcp::wire::ArpOperation::Reply,
            LAN_GATEWAY_MAC,
            LAN_GATEWAY,
            UPLINK_MAC,
            UPLINK_ADDR,
            UPLINK_MAC,
        ),
    ));
    t
}

/// The reply a peer would send to a frame the firewall sent to the uplink: MACs, addresses
/// and ports swapped (which keeps every checksum as it was), an echo request turned into a
/// reply.
fn mirror(sent: &[u8]) -> Vec<u8> {
    let mut f = sent.to_vec();
    if f.len() < 42 || f[12..14] != [0x08, 0x00] {
        return f;
    }
    let (dst, src) = (f[0..6].to_vec(), f[6..12].to_vec());
    f[0..6].copy_from_slice(&src);
    f[6..12].copy_from_slice(&dst);
    let (a, b) = (f[26..30].to_vec(), f[30..34].to_vec());
    f[26..30].copy_from_slice(&b);
    f[30..34].copy_from_slice(&a);
    match f[23] {
        6 | 17 => {
            let (s, d) = (f[34..36].to_vec(), f[36..38].to_vec());
            f[34..36].copy_from_slice(&d);
            f[36..38].copy_from_slice(&s);
        }
        1 if f[34] == 8 => {
            f[34] = 0;
            smoltcp::wire::Icmpv4Packet::new_unchecked(&mut f[34..]).fill_checksum();
        }
        _ => {}
    }
    f
}

#[derive(Clone, Debug)]
enum Input {
    /// Random bytes from a port chosen by the byte.
    Bytes(u8, Vec<u8>),
    /// A template (from its own port or another), bytes overwritten, maybe cut, maybe with
    /// its IPv4 header checksum fixed after the edits.
    Mutated(Option<u8>, usize, Vec<(usize, u8)>, Option<usize>, bool),
    /// The reply to the last frame sent to the uplink, edited likewise.
    Reply(Vec<(usize, u8)>),
    Uplink(bool),
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..1600))
            .prop_map(|(p, b)| Input::Bytes(p, b)),
        4 => (
            proptest::option::weighted(0.2, any::<u8>()),
            any::<usize>(),
            edits(),
            proptest::option::weighted(0.2, any::<usize>()),
            any::<bool>(),
        )
            .prop_map(|(p, t, e, cut, seal)| Input::Mutated(p, t, e, cut, seal)),
        2 => edits().prop_map(Input::Reply),
        1 => any::<bool>().prop_map(Input::Uplink),
    ]
}

fn edit(f: &mut [u8], edits: &[(usize, u8)]) {
    let n = f.len();
    if n == 0 {
        return;
    }
    for &(at, v) in edits {
        f[at % n] = v;
    }
}

/// What the firewall may send: well-formed Ethernet from its own MAC on that side; to the
/// uplink only from the uplink address (never a client's), to a client only addressed to it.
fn check_sent(port: Port, f: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(f.len() >= 42 && f.len() <= bulkhead_firewall_engine::MAX_FRAME);
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let (mac, addr) = match port {
        Port::Uplink => (UPLINK_MAC, UPLINK_ADDR),
        Port::Client(i) => {
            prop_assert!(i < 3);
            (bulkhead_firewall_engine::ROUTER_MAC, CLIENTS[i])
        }
    };
    prop_assert_eq!(&f[6..12], &mac[..]);
    match ethertype {
        0x0806 => {
            let (_, sha, spa, tpa, _) = read_arp(f);
            prop_assert_eq!(sha, mac);
            if port == Port::Uplink {
                prop_assert_eq!(spa, UPLINK_ADDR);
            } else {
                prop_assert!(spa == addr || tpa == addr, "ARP to a client is about it");
            }
        }
        0x0800 => {
            let ip = smoltcp::wire::Ipv4Packet::new_checked(&f[14..]).expect("ipv4");
            prop_assert!(ip.verify_checksum());
            if port == Port::Uplink {
                prop_assert_eq!(ip.src_addr().octets(), UPLINK_ADDR);
            } else {
                prop_assert_eq!(ip.dst_addr().octets(), addr);
            }
        }
        other => prop_assert!(false, "ethertype {other:#x} sent"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any sequence of frames from any port, at advancing times, is handled without a
    /// panic, every frame is counted, and what comes out respects `check_sent`.
    #[test]
    fn no_input_panics(inputs in proptest::collection::vec((input(), 0u64..40_000), 1..40)) {
        let mut net = Net::new(&[&[], &[dns_rule()], &[tcp_rule(Action::Accept, Some(CLIENTS[1]), 443)]]);
        let templates = templates();
        let mut last_up: Option<Vec<u8>> = None;
        let mut handled = 0u64;
        for (inp, dt) in inputs {
            net.now += dt;
            match inp {
                Input::Bytes(p, b) => {
                    net.send(port_of(p), &b);
                    handled += 1;
                }
                Input::Mutated(p, t, edits, cut, seal) => {
                    let (own, mut f) = templates[t % templates.len()].clone();
                    edit(&mut f, &edits);
                    if let Some(c) = cut {
                        f.truncate(c % (f.len() + 1));
                    }
                    let header = f.get(14).map_or(0, |b| usize::from(b & 0xf) * 4);
                    if seal && header >= 20 && 14 + header <= f.len() {
                        smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
                    }
                    net.send(p.map_or(own, port_of), &f);
                    handled += 1;
                }
                Input::Reply(edits) => {
                    if let Some(sent) = &last_up {
                        let mut f = mirror(sent);
                        edit(&mut f, &edits);
                        net.send(Port::Uplink, &f);
                        handled += 1;
                    }
                }
                Input::Uplink(up) => {
                    let info = uplink_info();
                    net.fw.set_uplink(up.then_some(&info));
                    net.learn_gateway_if_up();
                }
            }
            net.poll();
            for (port, f) in net.take() {
                check_sent(port, &f)?;
                if port == Port::Uplink && f.get(12..14) == Some(&[0x08, 0x00][..]) {
                    last_up = Some(f);
                }
            }
        }
        let s = net.fw.stats();
        let counted = s.forwarded + s.answered + s.consumed + s.queued + s.dropped_total();
        // Queued frames are counted again when they go or are dropped.
        prop_assert!(counted >= handled, "{counted} < {handled}");
    }
}

#[derive(Clone, Debug)]
struct FlowSpec {
    client: usize,
    proto: u8,
    dst: [u8; 4],
    sport: u16,
    dport: u16,
}

fn flow() -> impl Strategy<Value = FlowSpec> {
    (
        0usize..3,
        0u8..4,
        (1u8..=100, any::<u8>(), any::<u8>(), 1u8..255),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_filter("not 10/8 or 0/8", |(_, _, (a, ..), _, _)| *a != 10)
        .prop_map(|(client, proto, (a, b, c, d), sport, dport)| {
            // proto 3: DNS to a virtual address.
            let dst = if proto == 3 {
                VDNS[usize::from(b % 2)]
            } else {
                [a, b, c, d]
            };
            FlowSpec {
                client,
                proto,
                dst,
                sport,
                dport: if proto == 3 { 53 } else { dport },
            }
        })
}

fn l4_of(f: &FlowSpec) -> L4 {
    match f.proto {
        0 => L4::Tcp {
            sport: f.sport,
            dport: f.dport,
            flags: TCP_SYN,
        },
        1 | 3 => L4::Udp {
            sport: f.sport,
            dport: f.dport,
        },
        _ => L4::Icmp {
            ty: 8,
            code: 0,
            ident: f.sport,
            seq: f.dport,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every translated packet's reply reaches the client that sent it, with the addresses
    /// and ports it used, swapped; every checksum on the way is valid.
    #[test]
    fn nat_is_invertible(flows in proptest::collection::vec(flow(), 1..24)) {
        let mut net = Net::new(&[&[], &[], &[]]);
        let mut out = Vec::new();
        for f in &flows {
            let p = Pkt::from_client(f.client, f.dst, l4_of(f));
            let seen = net.through(f.client, &p, Port::Uplink);
            prop_assert_eq!(seen.src, UPLINK_ADDR);
            if f.proto == 3 {
                prop_assert_eq!(seen.dst, LAN_DNS);
            } else {
                prop_assert_eq!(seen.dst, f.dst);
            }
            out.push(seen);
        }
        // Replies in reverse order, so later flows' state does not help earlier ones.
        for (f, seen) in flows.iter().zip(&out).rev() {
            let back = net.back(&reply_to(seen, None), f.client);
            prop_assert_eq!(back.src, f.dst);
            prop_assert_eq!(back.dst, CLIENTS[f.client]);
            let want = match l4_of(f) {
                L4::Tcp { sport, dport, .. } => L4::Tcp { sport: dport, dport: sport, flags: TCP_SYN | TCP_ACK },
                L4::Udp { sport, dport } => L4::Udp { sport: dport, dport: sport },
                L4::Icmp { ident, seq, .. } => L4::Icmp { ty: 0, code: 0, ident, seq },
                L4::Raw { .. } => unreachable!(),
            };
            prop_assert_eq!(back.l4, want);
        }
    }
}

// ---- the rule engine against a reference model ----

const HOSTS: [Cidr; 6] = [
    Cidr {
        addr: REMOTE,
        prefix_len: 32,
    },
    Cidr {
        addr: [93, 184, 0, 0],
        prefix_len: 16,
    },
    Cidr {
        addr: [0, 0, 0, 0],
        prefix_len: 0,
    },
    Cidr {
        addr: CLIENTS[1],
        prefix_len: 32,
    },
    Cidr {
        addr: VDNS[0],
        prefix_len: 32,
    },
    Cidr {
        addr: [10, 137, 0, 0],
        prefix_len: 24,
    },
];
const DSTS: [[u8; 4]; 6] = [
    REMOTE,
    [93, 184, 1, 1],
    [8, 8, 8, 8],
    CLIENTS[1],
    VDNS[0],
    VDNS[1],
];
const PORTS: [u16; 5] = [22, 53, 80, 443, 8080];

fn any_rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        proptest::option::of(0usize..HOSTS.len()),
        proptest::option::of(0u8..3),
        proptest::option::of((0usize..PORTS.len(), prop_oneof![Just(0u16), 0u16..100])),
        proptest::option::of(prop_oneof![Just(0u8), Just(8), Just(13)]),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(accept, host, proto, range, icmp, dns)| Rule {
            action: if accept { Action::Accept } else { Action::Drop },
            dsthost: host.map(|h| HOSTS[h]),
            proto: proto.map(|p| [Proto::Tcp, Proto::Udp, Proto::Icmp][usize::from(p)]),
            dstports: range.map(|(i, w)| PortRange {
                lo: PORTS[i],
                hi: PORTS[i] + w,
            }),
            icmptype: icmp,
            specialtarget: dns.then_some(SpecialTarget::Dns),
        })
}

/// A packet from client 0: (destination, protocol kind, port or ICMP type).
fn any_packet() -> impl Strategy<Value = ([u8; 4], u8, u16)> {
    (
        0usize..DSTS.len(),
        0u8..4,
        prop_oneof![(0usize..PORTS.len()).prop_map(|i| PORTS[i]), any::<u16>()],
    )
        .prop_map(|(d, kind, port)| (DSTS[d], kind, port))
}

/// What the reference model expects.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Forwarded,
    Answered,
    Dropped(DropReason),
}

/// The Qubes rule semantics, written out plainly.
fn model(rules: &[Rule], dst: [u8; 4], kind: u8, port: u16) -> Expect {
    let is_tcp = kind == 0;
    let is_udp = kind == 1;
    let is_icmp = kind == 2;
    let icmp_type = port as u8;
    let is_vdns = dst == VDNS[0] || dst == VDNS[1];
    if is_vdns && !((is_tcp || is_udp) && port == 53) {
        return if is_icmp && icmp_type == 8 {
            Expect::Answered
        } else {
            Expect::Dropped(DropReason::ToFirewall)
        };
    }
    let to_client = dst == CLIENTS[1];
    let cidr_has = |c: &Cidr, a: [u8; 4]| {
        let bits = |x: [u8; 4]| u32::from_be_bytes(x);
        c.prefix_len == 0 || bits(c.addr) >> (32 - c.prefix_len) == bits(a) >> (32 - c.prefix_len)
    };
    let mut saw_open_accept = rules.is_empty();
    let mut decided = (rules.is_empty() && !to_client).then_some(Action::Accept);
    for r in rules {
        let mut ok = true;
        if let Some(c) = &r.dsthost {
            ok &= cidr_has(c, dst);
        }
        if let Some(p) = r.proto {
            ok &= match p {
                Proto::Tcp => is_tcp,
                Proto::Udp => is_udp,
                Proto::Icmp => is_icmp,
            };
        }
        if let Some(range) = r.dstports {
            ok &= (is_tcp || is_udp) && range.lo <= port && port <= range.hi;
        }
        if let Some(t) = r.icmptype {
            ok &= is_icmp && icmp_type == t;
        }
        if r.specialtarget.is_some() {
            // Qubes skips a DNS rule with any dstports but 53 alone.
            let only_53 = r.dstports.is_none_or(|p| p.lo == 53 && p.hi == 53);
            ok &= only_53 && (is_tcp || is_udp) && port == 53 && is_vdns;
        }
        if !ok {
            continue;
        }
        if r.action == Action::Accept && to_client && r.dsthost.is_none() {
            saw_open_accept = true;
            continue;
        }
        decided = Some(r.action);
        break;
    }
    match decided {
        Some(Action::Drop) => Expect::Dropped(DropReason::DroppedByRule),
        None if to_client && saw_open_accept => Expect::Dropped(DropReason::ClientIsolation),
        None => Expect::Dropped(DropReason::NoRuleMatched),
        Some(Action::Accept) if kind == 3 || (is_icmp && icmp_type != 8) => {
            Expect::Dropped(DropReason::Unsupported)
        }
        Some(Action::Accept) => Expect::Forwarded,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn rules_agree_with_the_reference_model(
        rules in proptest::collection::vec(any_rule(), 0..8),
        packets in proptest::collection::vec(any_packet(), 1..8),
    ) {
        // A fresh firewall per packet: each is a new connection.
        for (dst, kind, port) in packets {
            let mut net = Net::new(&[&rules, &[]]);
            let l4 = match kind {
                0 => L4::Tcp { sport: 4242, dport: port, flags: TCP_SYN },
                1 => L4::Udp { sport: 4242, dport: port },
                2 => L4::Icmp { ty: port as u8, code: 0, ident: 1, seq: 1 },
                _ => L4::Raw { proto: 47 },
            };
            let v = net.send(Port::Client(0), &Pkt::from_client(0, dst, l4).build());
            let got = match v {
                Verdict::Forwarded => Expect::Forwarded,
                Verdict::Answered => Expect::Answered,
                Verdict::Dropped { reason, .. } => Expect::Dropped(reason),
                other => panic!("{other:?}"),
            };
            prop_assert_eq!(got, model(&rules, dst, kind, port), "{:?} {} {}", dst, kind, port);
        }
    }
}

// ---- TCP validity against Linux's table ----

/// Linux's `tcp_valid_flags`, written out: the flag combinations (PSH, ECE and CWR aside)
/// that connection tracking does not call invalid.
fn linux_valid(flags: u8) -> bool {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    const FIN: u8 = 0x01;
    const RST: u8 = 0x04;
    [
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    ]
    .contains(&(flags & !(0x08 | 0x40 | 0x80)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A first segment opens a connection exactly when it is a valid SYN without ACK; on an
    /// established connection, a segment from either side passes exactly when Linux calls
    /// its flags valid (and is counted as invalid otherwise).
    #[test]
    fn tcp_flags_pass_exactly_when_linux_says_they_are_valid(
        first in any::<u8>(),
        later in proptest::collection::vec((any::<bool>(), any::<u8>()), 1..24),
    ) {
        let mut net = Net::new(&[&[]]);
        let l4 = |flags| L4::Tcp { sport: 7000, dport: 80, flags };
        let v = net.send(Port::Client(0), &Pkt::from_client(0, REMOTE, l4(first)).build());
        let opens = linux_valid(first) && first & 0x17 == 0x02;
        match v {
            Verdict::Forwarded => prop_assert!(opens, "{first:#04x} opened a connection"),
            Verdict::Dropped { reason: DropReason::InvalidTcp, .. } => {
                prop_assert!(!linux_valid(first), "{first:#04x}")
            }
            Verdict::Dropped { reason: DropReason::NoConnection, .. } => {
                prop_assert!(linux_valid(first) && !opens, "{first:#04x}")
            }
            other => prop_assert!(false, "{first:#04x}: {other:?}"),
        }
        net.take();
        let seen = net.through(0, &Pkt::from_client(0, REMOTE, l4(0x02)), Port::Uplink);
        net.back(&reply_to(&seen, None), 0);
        net.through(0, &Pkt::from_client(0, REMOTE, l4(0x10)), Port::Uplink);
        for (from_client, flags) in later {
            let (port, frame) = if from_client {
                (Port::Client(0), Pkt::from_client(0, REMOTE, l4(flags)).build())
            } else {
                let L4::Tcp { sport, dport, .. } = seen.l4 else { unreachable!() };
                let back = L4::Tcp { sport: dport, dport: sport, flags };
                (Port::Uplink, reply_to(&seen, Some(back)).build())
            };
            let v = net.send(port, &frame);
            if linux_valid(flags) {
                prop_assert_eq!(v, Verdict::Forwarded, "{:#04x} from {:?}", flags, port);
            } else {
                prop_assert!(
                    matches!(v, Verdict::Dropped { reason: DropReason::InvalidTcp, .. }),
                    "{:#04x} from {:?}: {:?}", flags, port, v
                );
            }
            // Keep the connection open: a reset or FINs would end it.
            if flags & 0x05 != 0 && linux_valid(flags) {
                net.now += timeouts_closed();
                net.poll();
                net.learn_gateway();
                net.take();
                let seen2 = net.through(0, &Pkt::from_client(0, REMOTE, l4(0x02)), Port::Uplink);
                net.back(&reply_to(&seen2, None), 0);
                net.through(0, &Pkt::from_client(0, REMOTE, l4(0x10)), Port::Uplink);
            }
            net.take();
        }
    }
}

/// Longer than any closing TCP state lasts.
fn timeouts_closed() -> u64 {
    bulkhead_firewall_engine::timeouts::TCP_FIN_WAIT_MS + 1
}

// ---- fair shares of the connection table ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever three clients do (new flows, answered or not, at any pace) against a small
    /// table: a client under its share is never refused a new flow, a client at or over it
    /// is refused only when every flow it holds was answered, nobody takes a flow of a
    /// client within its share, and the table never holds more than its capacity.
    #[test]
    fn every_client_keeps_its_share(
        steps in proptest::collection::vec((0usize..3, any::<u16>(), any::<bool>(), 0u64..3), 1..400),
    ) {
        const CAPACITY: usize = 30;
        let mut net = Net::with_table(&[&[], &[], &[]], CAPACITY);
        let share = net.fw.connection_share();
        prop_assert_eq!(share, 10);
        for (i, n, answer, dt) in steps {
            net.now += dt * 1000;
            net.poll();
            net.learn_gateway();
            let held = [0, 1, 2].map(|c| net.fw.connections_of(c));
            let expired = net.fw.stats().connections_expired;
            let p = Pkt::from_client(i, [100, 64, (n >> 8) as u8, n as u8], L4::Udp { sport: 5000, dport: 9 });
            let v = net.send(Port::Client(i), &p.build());
            let sent = net.take();
            match v {
                Verdict::Forwarded => {
                    if answer {
                        let seen = read(&sent[0].1);
                        net.back(&reply_to(&seen, None), i);
                    }
                }
                Verdict::Dropped { reason: DropReason::ClientTableFull, .. } => {
                    prop_assert!(held[i] >= share, "client {} refused with {} < {}", i, held[i], share);
                }
                other => prop_assert!(false, "{:?}", other),
            }
            let after = [0, 1, 2].map(|c| net.fw.connections_of(c));
            // (Unless flows expired meanwhile: the full table sweeps before it evicts.)
            let swept = net.fw.stats().connections_expired != expired;
            for c in 0..3 {
                if c != i && held[c] <= share && !swept {
                    prop_assert!(after[c] >= held[c], "client {}'s flows taken: {:?} -> {:?}", c, held, after);
                }
            }
            prop_assert!(after.iter().sum::<usize>() <= CAPACITY);
            prop_assert_eq!(net.fw.stats().connections, after.iter().sum::<usize>());
            net.take();
        }
    }
}

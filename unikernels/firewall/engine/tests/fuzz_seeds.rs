//! Seeds for the firewall fuzz target (`fuzz/fuzz_targets/firewall_frames.rs`): one input per
//! case of issue #18, in the target's record format, replayed here against an engine set up
//! as the target sets it up (so each seed is checked to reach its case), and compared with
//! the files in `fuzz/seeds/firewall_frames/`. `BULKHEAD_WRITE_SEEDS=1 cargo test -p
//! bulkhead-firewall-engine --test fuzz_seeds` writes the files again after a change.

mod common;

use bulkhead_firewall_engine::{DropReason, Firewall, Port, Router, UplinkInfo, Verdict};
use bulkhead_qubeconfig::{Action, Cidr, Downstream, PortRange, Proto, Rule, SpecialTarget};
use common::*;
use smoltcp::wire::ArpOperation;
use std::path::PathBuf;

/// As `CONNECTIONS` in the fuzz target.
const CONNECTIONS: usize = 64;
const SLASH32: [u8; 4] = [100, 69, 227, 175];
const SLASH32_GW: [u8; 4] = [100, 69, 227, 1];

/// The fuzz target's configuration (`config()` there).
fn config() -> (Vec<Downstream>, Router) {
    let dns = Rule {
        specialtarget: Some(SpecialTarget::Dns),
        ..Rule::catch_all(Action::Accept)
    };
    let web = Rule {
        proto: Some(Proto::Tcp),
        dstports: Some(PortRange { lo: 80, hi: 443 }),
        ..Rule::catch_all(Action::Accept)
    };
    let to_second = Rule {
        dsthost: Some(Cidr {
            addr: CLIENTS[1],
            prefix_len: 32,
        }),
        ..Rule::catch_all(Action::Accept)
    };
    let dns_ports = Rule {
        proto: Some(Proto::Udp),
        dstports: Some(PortRange { lo: 50, hi: 60 }),
        ..dns
    };
    let rules: [&[Rule]; 3] = [
        &[],
        &[dns, web, Rule::catch_all(Action::Drop)],
        &[dns_ports, to_second],
    ];
    let ds = rules
        .iter()
        .enumerate()
        .map(|(i, r)| Downstream {
            address: Some(CLIENTS[i]),
            ..downstream(i, r)
        })
        .collect();
    (ds, router())
}

fn slash32() -> UplinkInfo {
    UplinkInfo {
        mac: UPLINK_MAC,
        address: SLASH32,
        prefix_len: 32,
        gateway: Some(SLASH32_GW),
        dns: [SLASH32_GW].into_iter().collect(),
    }
}

/// A seed being written: records and the verdict each frame must get.
#[derive(Default)]
struct Seed {
    bytes: Vec<u8>,
    expect: Vec<Option<Expect>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Forwarded,
    Queued,
    Answered,
    Consumed,
    Dropped(DropReason),
}

impl Seed {
    fn record(&mut self, port: u8, dt: u8, frame: &[u8], expect: Option<Expect>) {
        self.bytes.push(port);
        self.bytes.push(dt);
        self.bytes
            .extend_from_slice(&(frame.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(frame);
        self.expect.push(expect);
    }

    fn client(&mut self, i: usize, p: &Pkt, expect: Expect) {
        self.record(i as u8 + 1, 0, &p.build(), Some(expect));
    }

    fn uplink(&mut self, frame: &[u8], expect: Expect) {
        self.record(0, 0, frame, Some(expect));
    }

    /// Toggles the uplink (up again with the /32 lease when `slash32`).
    fn toggle(&mut self, slash32: bool) {
        self.record(5, 0, &[u8::from(slash32)], None);
    }

    /// The LAN gateway asks for the /24 uplink address: the firewall learns its MAC.
    fn learn_gateway(&mut self) {
        let f = arp(
            ArpOperation::Request,
            LAN_GATEWAY_MAC,
            LAN_GATEWAY,
            [0; 6],
            UPLINK_ADDR,
            [0xff; 6],
        );
        self.uplink(&f, Expect::Answered);
    }
}

/// Replays `seed` as the fuzz target does and checks every verdict it expects.
fn replay(name: &str, seed: &Seed) {
    let (ds, router) = config();
    let mut fw = Firewall::with_capacity(&ds, &router, 0x5eed, CONNECTIONS).unwrap();
    let leases = [uplink_info(), slash32()];
    fw.set_uplink(Some(&leases[0]));
    let mut up = true;
    let mut now = 0u64;
    let mut rest = &seed.bytes[..];
    let mut expect = seed.expect.iter();
    let mut n = 0;
    while let [port, dt, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += u64::from(*dt) * 997;
        let want = expect.next().copied().flatten();
        n += 1;
        let port = match port % 6 {
            0 => Port::Uplink,
            5 => {
                up = !up;
                let lease = &leases[usize::from(frame.first().is_some_and(|b| b % 2 == 1))];
                fw.set_uplink(up.then_some(lease));
                continue;
            }
            c => Port::Client(usize::from(c) - 1),
        };
        let v = fw.handle(port, frame, now, &mut |_, _| {});
        fw.poll(now, &mut |_, _| {});
        let got = match v {
            Verdict::Forwarded => Expect::Forwarded,
            Verdict::Queued => Expect::Queued,
            Verdict::Answered => Expect::Answered,
            Verdict::Consumed => Expect::Consumed,
            Verdict::Dropped { reason, .. } => Expect::Dropped(reason),
        };
        if let Some(want) = want {
            assert_eq!(got, want, "{name}: record {n}");
        }
    }
}

fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        flags,
    }
}

fn seeds() -> Vec<(&'static str, Seed)> {
    use Expect::*;
    let mut all = Vec::new();

    // A /32 lease: the gateway answers our request from off the prefix.
    let mut s = Seed::default();
    s.toggle(false);
    s.toggle(true);
    let out = Pkt::from_client(
        0,
        REMOTE,
        L4::Udp {
            sport: 4000,
            dport: 9,
        },
    );
    s.client(0, &out, Queued);
    let gw_mac = [0x52, 0x54, 0x00, 0x0a, 0x0b, 0x0c];
    let answer = arp(
        ArpOperation::Reply,
        gw_mac,
        SLASH32_GW,
        UPLINK_MAC,
        SLASH32,
        UPLINK_MAC,
    );
    s.uplink(&answer, Consumed);
    s.client(0, &out, Forwarded);
    let back = Pkt {
        src_mac: gw_mac,
        dst_mac: UPLINK_MAC,
        ..Pkt::new(
            REMOTE,
            SLASH32,
            L4::Udp {
                sport: 9,
                dport: 4000,
            },
        )
    };
    s.uplink(&back.build(), Forwarded);
    let stranger = arp(
        ArpOperation::Reply,
        [2, 0, 0, 0, 0, 66],
        [100, 69, 227, 66],
        UPLINK_MAC,
        SLASH32,
        UPLINK_MAC,
    );
    s.uplink(&stranger, Dropped(DropReason::NotForUs));
    all.push(("slash32-lease", s));

    // Invalid TCP both ways.
    let mut s = Seed::default();
    s.learn_gateway();
    for flags in [TCP_SYN | TCP_FIN, 0, TCP_FIN] {
        s.client(
            0,
            &Pkt::from_client(0, REMOTE, tcp(7000, 80, flags)),
            Dropped(DropReason::InvalidTcp),
        );
    }
    s.client(
        0,
        &Pkt::from_client(0, REMOTE, tcp(7000, 80, TCP_SYN)),
        Forwarded,
    );
    s.client(
        0,
        &Pkt::from_client(0, REMOTE, tcp(7000, 80, TCP_ACK)),
        Dropped(DropReason::InvalidTcp),
    );
    let peer = |flags| Pkt::from_uplink(REMOTE, tcp(80, 7000, flags)).build();
    s.uplink(&peer(TCP_FIN | TCP_ACK), Dropped(DropReason::InvalidTcp));
    s.uplink(&peer(TCP_SYN | TCP_ACK), Forwarded);
    s.client(
        0,
        &Pkt::from_client(0, REMOTE, tcp(7000, 80, TCP_ACK)),
        Forwarded,
    );
    s.client(
        0,
        &Pkt::from_client(0, REMOTE, tcp(7000, 80, TCP_FIN)),
        Dropped(DropReason::InvalidTcp),
    );
    s.uplink(&peer(TCP_FIN), Dropped(DropReason::InvalidTcp));
    s.uplink(&peer(0), Dropped(DropReason::InvalidTcp));
    s.client(
        0,
        &Pkt::from_client(0, REMOTE, tcp(7000, 80, TCP_FIN | TCP_ACK)),
        Forwarded,
    );
    s.uplink(&peer(TCP_FIN | TCP_ACK), Forwarded);
    all.push(("invalid-tcp", s));

    // The uplink network's broadcast and network addresses, and the limited broadcast.
    let mut s = Seed::default();
    s.learn_gateway();
    let udp = |dst| {
        Pkt::from_client(
            0,
            dst,
            L4::Udp {
                sport: 4000,
                dport: 9,
            },
        )
    };
    s.client(0, &udp([192, 168, 1, 255]), Dropped(DropReason::Broadcast));
    s.client(0, &udp([192, 168, 1, 0]), Dropped(DropReason::Broadcast));
    s.client(
        0,
        &udp([255, 255, 255, 255]),
        Dropped(DropReason::NotRoutable),
    );
    s.client(0, &udp([192, 168, 2, 255]), Forwarded);
    all.push(("directed-broadcast", s));

    // A DNS rule with other ports than 53 alone matches nothing (client 2's first rule).
    let mut s = Seed::default();
    s.learn_gateway();
    let dns = Pkt::from_client(
        2,
        VDNS[0],
        L4::Udp {
            sport: 4000,
            dport: 53,
        },
    );
    s.client(2, &dns, Dropped(DropReason::NoRuleMatched));
    let dns = Pkt::from_client(
        1,
        VDNS[0],
        L4::Udp {
            sport: 4000,
            dport: 53,
        },
    );
    s.client(1, &dns, Forwarded);
    all.push(("dns-rule-with-ports", s));

    // An echo request to the firewall with a bad checksum is not answered.
    let mut s = Seed::default();
    let ping = Pkt::from_client(
        0,
        GATEWAY,
        L4::Icmp {
            ty: 8,
            code: 0,
            ident: 1,
            seq: 1,
        },
    )
    .build();
    let mut bad = ping.clone();
    *bad.last_mut().unwrap() ^= 0x10;
    s.record(1, 0, &bad, Some(Dropped(DropReason::BadChecksum)));
    s.record(1, 0, &ping, Some(Answered));
    all.push(("echo-bad-checksum", s));

    // Two clients flood the (64-entry) table, a third still connects and keeps its flow.
    let mut s = Seed::default();
    s.learn_gateway();
    let c2 = |flags| Pkt::from_client(2, REMOTE, tcp(6000, 22, flags));
    // Client 2's rules only open client 1 (and nothing to the uplink): it talks to client 1.
    let to_1 = |flags| Pkt::from_client(2, CLIENTS[1], tcp(6000, 22, flags));
    s.client(2, &c2(TCP_SYN), Dropped(DropReason::NoRuleMatched));
    s.client(2, &to_1(TCP_SYN), Queued);
    let hello = arp(
        ArpOperation::Request,
        CLIENT_MACS[1],
        CLIENTS[1],
        [0; 6],
        GATEWAY,
        [0xff; 6],
    );
    s.record(2, 0, &hello, Some(Answered));
    let back = |flags| Pkt::from_client(1, CLIENTS[2], tcp(22, 6000, flags));
    // Client 2's MAC is known from its own frames.
    s.client(1, &back(TCP_SYN | TCP_ACK), Forwarded);
    s.client(2, &to_1(TCP_ACK), Forwarded);
    for n in 0..(CONNECTIONS as u16) {
        let dst = [100, 64, (n >> 8) as u8, n as u8];
        s.client(
            0,
            &Pkt::from_client(0, dst, tcp(40000 + n, 443, TCP_SYN)),
            Forwarded,
        );
        s.client(
            1,
            &Pkt::from_client(
                1,
                dst,
                L4::Udp {
                    sport: 50000,
                    dport: 9,
                },
            ),
            Dropped(DropReason::DroppedByRule),
        );
        let web = Pkt::from_client(1, dst, tcp(41000 + n, 80, TCP_SYN));
        s.client(1, &web, Forwarded);
    }
    s.client(2, &to_1(TCP_ACK), Forwarded);
    s.client(1, &back(TCP_ACK), Forwarded);
    let to_1_again = Pkt::from_client(2, CLIENTS[1], tcp(6001, 22, TCP_SYN));
    s.client(2, &to_1_again, Forwarded);
    all.push(("flood-fair-share", s));
    all
}

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../fuzz/seeds/firewall_frames")
}

#[test]
fn the_fuzz_seeds_reach_their_cases_and_are_written_out() {
    let write = std::env::var_os("BULKHEAD_WRITE_SEEDS").is_some();
    let dir = seeds_dir();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, seed) in seeds() {
        replay(name, &seed);
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &seed.bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == seed.bytes,
                "{} is missing or out of date: BULKHEAD_WRITE_SEEDS=1 cargo test -p \
                 bulkhead-firewall-engine --test fuzz_seeds",
                path.display()
            );
        }
    }
}

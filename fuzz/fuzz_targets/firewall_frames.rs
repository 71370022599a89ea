//! Fuzz target: the firewall engine fed arbitrary frames from arbitrary ports, with the
//! clock advancing, the uplink coming and going, and the timers polled.
//!
//! Checks: no panic; every frame the engine sends is at most `MAX_FRAME` bytes and comes
//! from the firewall's own MAC on that side; nothing reaches the uplink with a client's
//! source address. (smoltcp skips checksum verification under `cfg(fuzzing)`, so mutated
//! frames reach the translation code.)
//!
//! Input: records of `[port] [time step] [length lo] [length hi] [bytes...]` until the input
//! runs out (a short record takes what is left). Port 0 is the uplink, 1..=3 the clients,
//! 4 an unknown client, 5 toggles the uplink (down if it was up, else up with the /24 lease,
//! or with a /32 lease whose gateway is off its prefix when the record's first byte is odd),
//! anything else is taken modulo 6.
//!
//! The connection table is small ([`CONNECTIONS`]) so that inputs reach a full table and its
//! fair shares quickly. Seeds for the cases of issue #18 (a /32 lease, invalid TCP, the
//! uplink network's broadcast, a DNS rule with ports, an echo with a bad checksum, two
//! flooding clients) are in `fuzz/seeds/firewall_frames/`, written by the engine's
//! `tests/fuzz_seeds.rs`.
#![no_main]

use bulkhead_abi::proto::UplinkInfo;
use bulkhead_firewall_engine::{Firewall, MAX_FRAME, Port, ROUTER_MAC};
use bulkhead_qubeconfig::{
    Action, Cidr, Downstream, PortRange, Proto, Router, Rule, SpecialTarget,
};
use libfuzzer_sys::fuzz_target;

const UPLINK_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const UPLINK_ADDR: [u8; 4] = [192, 168, 1, 50];
const SLASH32_ADDR: [u8; 4] = [100, 69, 227, 175];
const CLIENTS: [[u8; 4]; 3] = [[10, 137, 0, 5], [10, 137, 0, 6], [10, 137, 0, 7]];
/// Connection table entries (21 per client).
const CONNECTIONS: usize = 64;

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
    // Qubes never installs a DNS rule with other ports (the compiler refuses one); the
    // engine must match nothing with it.
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
    let downstream = rules
        .iter()
        .enumerate()
        .map(|(i, r)| Downstream {
            qube: heapless::String::try_from("client").unwrap(),
            channel: heapless::String::try_from("ch").unwrap(),
            address: Some(CLIENTS[i]),
            rules: r.iter().copied().collect(),
        })
        .collect();
    let router = Router {
        gateway: [10, 137, 0, 1],
        virtual_dns: [[10, 139, 1, 1], [10, 139, 1, 2]].into_iter().collect(),
        upstream_dns: None,
    };
    (downstream, router)
}

fn uplink() -> UplinkInfo {
    UplinkInfo {
        mac: UPLINK_MAC,
        address: UPLINK_ADDR,
        prefix_len: 24,
        gateway: Some([192, 168, 1, 1]),
        dns: [[192, 168, 1, 1]].into_iter().collect(),
    }
}

/// A /32 lease: the gateway is off the uplink's prefix.
fn slash32() -> UplinkInfo {
    UplinkInfo {
        mac: UPLINK_MAC,
        address: SLASH32_ADDR,
        prefix_len: 32,
        gateway: Some([100, 69, 227, 1]),
        dns: [[100, 69, 227, 1]].into_iter().collect(),
    }
}

/// Checks a frame the engine sent while the uplink address is `uplink_addr`.
fn check(uplink_addr: [u8; 4], port: Port, f: &[u8]) {
    assert!(
        f.len() >= 14 && f.len() <= MAX_FRAME,
        "sent {} bytes",
        f.len()
    );
    match port {
        Port::Uplink => {
            assert_eq!(f[6..12], UPLINK_MAC);
            if f[12..14] == [0x08, 0x00] {
                assert_eq!(
                    f[26..30],
                    uplink_addr,
                    "a client address leaked to the uplink"
                );
            }
        }
        Port::Client(i) => {
            assert!(i < CLIENTS.len());
            assert_eq!(f[6..12], ROUTER_MAC);
            if f[12..14] == [0x08, 0x00] {
                assert_eq!(f[30..34], CLIENTS[i], "a packet to the wrong client");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (downstream, router) = config();
    let mut fw = Firewall::with_capacity(&downstream, &router, 0x5eed, CONNECTIONS)
        .expect("valid configuration");
    let leases = [uplink(), slash32()];
    fw.set_uplink(Some(&leases[0]));
    let mut up: Option<&UplinkInfo> = Some(&leases[0]);
    let mut now = 0u64;
    let mut rest = data;
    while let [port, dt, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += u64::from(*dt) * 997;
        let port = match port % 6 {
            0 => Port::Uplink,
            5 => {
                up = match up {
                    Some(_) => None,
                    None => Some(&leases[usize::from(frame.first().is_some_and(|b| b % 2 == 1))]),
                };
                fw.set_uplink(up);
                continue;
            }
            n => Port::Client(usize::from(n) - 1),
        };
        // While the uplink is down nothing goes to it; the /24 address stands in.
        let addr = up.map_or(UPLINK_ADDR, |u| u.address);
        let mut check = |p: Port, f: &[u8]| check(addr, p, f);
        fw.handle(port, frame, now, &mut check);
        fw.poll(now, &mut check);
    }
});

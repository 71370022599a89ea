//! Property tests of the network part of the language: no edit of a networked description
//! and no near-valid one makes the compiler panic, and every valid network (a card owner, a
//! router, clients with random rules and addresses) compiles to channels and configuration
//! blobs that say exactly what was written.

use super::proptests::{compile_checked, text_value, toml_str};
use super::*;
use bulkhead_qubeconfig::{Action, Cidr, PortRange, Proto, QubeConfig, Rule, SpecialTarget};
use proptest::prelude::*;

/// Names the near-valid qubes have or name.
const NAMES: &[&str] = &["net", "fw", "work", "vpn", "Net", "", "nett"];

/// One `[[qube.rule]]`, each key present or not, each value often right.
fn near_valid_rule() -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(0.9, text_value(&["accept", "drop", "allow"])),
        proptest::option::weighted(
            0.3,
            text_value(&[
                "10.0.2.2",
                "10.0.0.0/8",
                "10.1.0.0/8",
                "example.org",
                "::1",
                "1.2.3",
            ]),
        ),
        proptest::option::weighted(0.4, text_value(&["tcp", "udp", "icmp", "sctp"])),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                text_value(&["443", "1024-2048", "2048-1024", "0", "80,443"]),
                (0i64..70000).prop_map(|n| n.to_string()).boxed(),
            ],
        ),
        proptest::option::weighted(0.2, (-5i64..300).prop_map(|n| n.to_string())),
        proptest::option::weighted(0.2, text_value(&["dns", "dhcp"])),
        proptest::option::weighted(0.05, "[a-z_]{1,10}"),
    )
        .prop_map(|(action, host, proto, ports, icmp, special, unknown)| {
            let mut out = String::from("[[qube.rule]]\n");
            let keys = [
                "action",
                "dsthost",
                "proto",
                "dstports",
                "icmptype",
                "specialtarget",
            ];
            for (key, value) in keys.iter().zip([action, host, proto, ports, icmp, special]) {
                if let Some(v) = value {
                    out.push_str(&format!("{key} = {v}\n"));
                }
            }
            if let Some(key) = unknown {
                out.push_str(&format!("{key} = 1\n"));
            }
            out
        })
}

/// One `[[qube]]` with network keys: netvm, devices, ip and rules, each often right.
fn near_valid_network_qube() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(NAMES),
        proptest::option::weighted(0.6, text_value(NAMES)),
        proptest::option::weighted(
            0.3,
            proptest::collection::vec(
                proptest::sample::select(
                    &[
                        "pci-id:1af4:1041",
                        "pci-id:1af4:1041#1",
                        "pci:00:03.0",
                        "pci:0000:00:03.0",
                        "pci:00:20.0",
                        "1af4:1041",
                        "",
                    ][..],
                ),
                0..3,
            ),
        ),
        proptest::option::weighted(
            0.3,
            text_value(&[
                "10.137.0.10",
                "10.137.0.1",
                "10.137.1.10",
                "10.137.0.255",
                "x",
            ]),
        ),
        proptest::collection::vec(near_valid_rule(), 0..4),
    )
        .prop_map(|(name, netvm, devices, ip, rules)| {
            let mut out = format!(
                "[[qube]]\nname = {}\nkind = \"unikernel\"\nimage = \"testing\"\n\
                 memory_mib = 4\nlabel = \"red\"\n",
                toml_str(name)
            );
            if let Some(n) = netvm {
                out.push_str(&format!("netvm = {n}\n"));
            }
            if let Some(d) = devices {
                let items: Vec<String> = d.iter().map(|s| toml_str(s)).collect();
                out.push_str(&format!("devices = [{}]\n", items.join(", ")));
            }
            if let Some(ip) = ip {
                out.push_str(&format!("ip = {ip}\n"));
            }
            out + &rules.concat()
        })
}

/// `[network]` with each key present or not.
fn near_valid_network_table() -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(
            0.5,
            text_value(&[
                "10.137.0.0/24",
                "10.137.0.0/30",
                "10.137.0.1/24",
                "10.0.0.0/33",
            ]),
        ),
        proptest::option::weighted(0.3, text_value(&["10.137.0.1", "10.137.0.2", "10.0.0.1"])),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                Just("[\"10.139.1.1\"]".to_string()),
                Just("[\"10.139.1.1\", \"10.139.1.1\"]".to_string()),
                Just("[]".to_string()),
                Just("\"10.139.1.1\"".to_string()),
            ],
        ),
        proptest::option::weighted(0.3, text_value(&["10.0.2.2:5353", "10.0.2.2", "x:0"])),
    )
        .prop_map(|(clients, gateway, dns, upstream)| {
            let mut out = String::from("[network]\n");
            let keys = ["clients", "gateway", "dns", "upstream_dns"];
            for (key, value) in keys.iter().zip([clients, gateway, dns, upstream]) {
                if let Some(v) = value {
                    out.push_str(&format!("{key} = {v}\n"));
                }
            }
            out
        })
}

/// A valid rule as TOML and as the compiler should read it. `conditions` picks which
/// conditions it sets; the values are always right together.
fn valid_rule() -> impl Strategy<Value = (String, Rule)> {
    (
        any::<bool>(),
        0usize..6,
        (any::<[u8; 4]>(), 0u8..=32),
        (1u16..=65535, 0u16..1000),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(accept, shape, (addr, len), (lo, span), icmp, udp)| {
            let action = if accept { Action::Accept } else { Action::Drop };
            let mut rule = Rule::catch_all(action);
            let mut lines = vec![format!(
                "action = \"{}\"",
                if accept { "accept" } else { "drop" }
            )];
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            let network = (u32::from_be_bytes(addr) & mask).to_be_bytes();
            let transport = if udp { Proto::Udp } else { Proto::Tcp };
            let name = |p: Proto| match p {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
                Proto::Icmp => "icmp",
            };
            let hi = lo.saturating_add(span);
            match shape {
                // A host or network.
                0 => {
                    rule.dsthost = Some(Cidr {
                        addr: network,
                        prefix_len: len,
                    });
                    lines.push(format!(
                        "dsthost = \"{}/{len}\"",
                        std::net::Ipv4Addr::from(network)
                    ));
                }
                // A protocol and ports, maybe with a network.
                1 | 2 => {
                    rule.proto = Some(transport);
                    rule.dstports = Some(PortRange { lo, hi });
                    lines.push(format!("proto = \"{}\"", name(transport)));
                    lines.push(format!("dstports = \"{lo}-{hi}\""));
                    if shape == 2 {
                        rule.dsthost = Some(Cidr {
                            addr: network,
                            prefix_len: len,
                        });
                        lines.push(format!(
                            "dsthost = \"{}/{len}\"",
                            std::net::Ipv4Addr::from(network)
                        ));
                    }
                }
                // ICMP of one type.
                3 => {
                    rule.proto = Some(Proto::Icmp);
                    rule.icmptype = Some(icmp);
                    lines.push("proto = \"icmp\"".to_string());
                    lines.push(format!("icmptype = {icmp}"));
                }
                // DNS, maybe over one protocol.
                4 => {
                    rule.specialtarget = Some(SpecialTarget::Dns);
                    lines.push("specialtarget = \"dns\"".to_string());
                    if udp {
                        rule.proto = Some(Proto::Udp);
                        lines.push("proto = \"udp\"".to_string());
                        // Port 53 alone may be written out (Qubes installs the rule).
                        if span % 2 == 0 {
                            rule.dstports = Some(PortRange { lo: 53, hi: 53 });
                            lines.push("dstports = \"53\"".to_string());
                        }
                    }
                }
                // One port, written as a number.
                _ => {
                    rule.proto = Some(transport);
                    rule.dstports = Some(PortRange { lo, hi: lo });
                    lines.push(format!("proto = \"{}\"", name(transport)));
                    lines.push(format!("dstports = {lo}"));
                }
            }
            (format!("[[qube.rule]]\n{}\n", lines.join("\n")), rule)
        })
}

/// A client of the router: its rules (with the last, condition-free action, if any) and
/// whether it writes its address (else it gets the next free one).
type Client = (Vec<(String, Rule)>, Option<bool>, bool);

fn client() -> impl Strategy<Value = Client> {
    (
        proptest::collection::vec(valid_rule(), 0..6),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn no_edit_of_the_network_system_makes_it_panic(
        at in 0usize..1800, cut in 0usize..40, insert in "\\PC{0,20}|[\\[\\]\".:/#0-9 ]{0,6}"
    ) {
        let path = crate::workspace_root().join("systems/tests/network.toml");
        let text = std::fs::read_to_string(path).unwrap();
        prop_assert!(compile_str("systems/p.toml", &text).is_ok());
        let at = text.floor_char_boundary(at.min(text.len()));
        let end = text.floor_char_boundary((at + cut).min(text.len()));
        compile_checked(&format!("{}{insert}{}", &text[..at], &text[end..]));
    }

    #[test]
    fn no_near_valid_network_description_makes_it_panic(
        qubes in proptest::collection::vec(near_valid_network_qube(), 0..6),
        network in proptest::option::weighted(0.4, near_valid_network_table()),
        iommu in proptest::option::weighted(
            0.3, text_value(&["required", "accept-risk-dma-can-read-all-memory", "off"])),
    ) {
        let mut text = String::from("[system]\nram_mib = 256\n");
        if let Some(i) = iommu {
            text.push_str(&format!("iommu = {i}\n"));
        }
        text.push_str(&network.unwrap_or_default());
        compile_checked(&(text + &qubes.concat()));
    }

    #[test]
    fn every_valid_network_compiles_to_what_was_written(
        clients in proptest::collection::vec(client(), 1..=7),
        upstream in proptest::option::of((any::<[u8; 4]>(), 1u16..=65535)),
    ) {
        let mut text = String::from("[system]\nram_mib = 256\n");
        if let Some((a, port)) = upstream {
            text.push_str(&format!(
                "[network]\nupstream_dns = \"{}:{port}\"\n",
                std::net::Ipv4Addr::from(a)
            ));
        }
        let qube = |name: &str, extra: &str| format!(
            "\n[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
             memory_mib = 4\nlabel = \"blue\"\n{extra}"
        );
        text.push_str(&qube("net", "devices = [\"pci-id:1af4:1041\"]\n"));
        text.push_str(&qube("fw", "netvm = \"net\"\n"));
        // Written addresses from the top of the network down, so they never meet the ones
        // handed out from the bottom.
        let mut expected = Vec::new();
        for (k, (rules, last, written)) in clients.iter().enumerate() {
            let mut extra = String::from("netvm = \"fw\"\n");
            let address = written.then(|| [10, 137, 0, 254 - k as u8]);
            if let Some(a) = address {
                extra.push_str(&format!("ip = \"{}\"\n", std::net::Ipv4Addr::from(a)));
            }
            let mut want: Vec<Rule> = Vec::new();
            if let Some(accept) = last {
                for (toml, rule) in rules {
                    extra.push_str(toml);
                    want.push(*rule);
                }
                let action = if *accept { "accept" } else { "drop" };
                extra.push_str(&format!("[[qube.rule]]\naction = \"{action}\"\n"));
                want.push(Rule::catch_all(if *accept { Action::Accept } else { Action::Drop }));
            }
            text.push_str(&qube(&format!("c{k}"), &extra));
            expected.push((format!("c{k}"), address, want));
        }
        let c = match compile_str("systems/p.toml", &text) {
            Ok(c) => c,
            Err(d) => panic!("{d}\n---\n{text}"),
        };
        let m = &c.manifest;
        let decoded = Manifest::decode(&m.to_vec());
        prop_assert_eq!(decoded.as_ref(), Ok(m));
        // The channels: the firewall's, then one per client, side A the netvm.
        let channels: Vec<(String, u8, u8)> =
            m.channels.iter().map(|ch| (ch.name.to_string(), ch.a, ch.b)).collect();
        let mut want_channels = vec![("fw.net".to_string(), 0, 1)];
        for k in 0..clients.len() {
            want_channels.push((format!("c{k}.net"), 1, 2 + k as u8));
        }
        prop_assert_eq!(channels, want_channels);
        // Every blob decodes; the firewall's holds each client's rules and address.
        let decode = |i: usize| -> QubeConfig {
            let entry = usize::from(m.qubes[i].config.unwrap());
            QubeConfig::decode(&c.configs[entry - 1 - c.images.len()].bytes).unwrap()
        };
        let fw = decode(1);
        prop_assert_eq!(fw.downstream.len(), clients.len());
        let router = fw.router.unwrap();
        prop_assert_eq!(router.upstream_dns, upstream);
        let mut seen = Vec::new();
        for (k, (name, written, rules)) in expected.iter().enumerate() {
            let d = &fw.downstream[k];
            prop_assert_eq!(d.qube.as_str(), name.as_str());
            prop_assert_eq!(d.rules.as_slice(), rules.as_slice());
            let a = d.address.unwrap();
            if let Some(w) = written {
                prop_assert_eq!(a, *w);
            }
            prop_assert!(a[..3] == [10, 137, 0] && a[3] > 1 && a[3] < 255, "{:?}", a);
            prop_assert!(!seen.contains(&a), "{:?} given twice", a);
            seen.push(a);
            let uplink = decode(2 + k).uplink.unwrap();
            prop_assert_eq!(uplink.address, Some(a));
            prop_assert_eq!(uplink.gateway, router.gateway);
            prop_assert_eq!(uplink.channel.as_str(), format!("{name}.net"));
        }
    }
}

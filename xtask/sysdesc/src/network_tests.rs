//! Tests of the network and device parts of the language: netvm links and their automatic
//! channels, addresses, firewall rules, devices, the IOMMU policy, and the configuration
//! blobs each networked qube gets.

use super::diagnostics::Diagnostic;
use super::*;
use bulkhead_abi::channel::Geometry;
use bulkhead_abi::manifest::{IommuPolicy, MAX_DEVICES, PciSelect};
use bulkhead_qubeconfig::{
    Action, Cidr, Downstream, MAX_RULES, PortRange, Proto, QubeConfig, Router, Rule, SpecialTarget,
    Uplink,
};

/// A `[[qube]]` of 4 MiB running `testing`, with `extra` lines after its required keys.
fn qube(name: &str, extra: &str) -> String {
    format!(
        "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
         memory_mib = 4\nlabel = \"blue\"\n{extra}\n\n"
    )
}

/// sys-net with the virtio-net card and sys-firewall behind it, then `rest`.
fn net_and_firewall(rest: &str) -> String {
    format!(
        "[system]\nram_mib = 512\n\n{}{}{rest}",
        qube("net", "devices = [\"pci-id:1af4:1041\"]"),
        qube("fw", "netvm = \"net\"")
    )
}

fn compiled(text: &str) -> CompiledSystem {
    match compile_str("systems/n.toml", text) {
        Ok(c) => c,
        Err(d) => panic!("{d}\n---\n{text}"),
    }
}

fn problems(text: &str) -> Vec<Diagnostic> {
    match compile_str("systems/n.toml", text) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(d) => d.iter().cloned().collect(),
    }
}

/// The one problem of `text`: under `key`, its message containing `message`, its hint
/// containing `hint`.
fn one_problem(text: &str, key: &str, message: &str, hint: &str) {
    let found = problems(text);
    assert_eq!(
        found.len(),
        1,
        "one problem expected in\n{text}\n{found:#?}"
    );
    let d = &found[0];
    assert_eq!(d.key, key, "{d}");
    assert!(d.message.contains(message), "{d}\nlacks {message:?}");
    assert!(d.hint.contains(hint), "{d}\nlacks hint {hint:?}");
    assert!(d.position.is_some(), "{d} has no place");
}

/// The decoded configuration blob of qube `name`.
fn config_of(c: &CompiledSystem, name: &str) -> QubeConfig {
    let i = c
        .manifest
        .qubes
        .iter()
        .position(|q| q.name == name)
        .unwrap();
    let entry = c.manifest.qubes[i].config.expect("a configuration entry");
    let blob = &c.configs[usize::from(entry) - 1 - c.images.len()];
    assert_eq!(blob.qube, i);
    let decoded = QubeConfig::decode(&blob.bytes).unwrap();
    assert_eq!(decoded, blob.config);
    decoded
}

fn text<const N: usize>(s: &str) -> heapless::String<N> {
    heapless::String::try_from(s).unwrap()
}

fn rule(action: Action) -> Rule {
    Rule::catch_all(action)
}

#[test]
fn the_network_test_system_compiles_to_channels_devices_and_blobs() {
    let path = crate::workspace_root().join("systems/tests/network.toml");
    let c = compile_file(&path).unwrap();
    let m = &c.manifest;
    let names: Vec<&str> = m.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["net", "firewall", "work", "other"]);
    // One channel per netvm link, side A the netvm: 128 slots of 2048 bytes each way.
    let channels: Vec<_> = m
        .channels
        .iter()
        .map(|ch| (ch.name.as_str(), ch.a, ch.b, ch.purpose.as_str()))
        .collect();
    assert_eq!(
        channels,
        [
            ("firewall.net", 0, 1, "network"),
            ("work.net", 1, 2, "network"),
            ("other.net", 1, 3, "network"),
        ]
    );
    for ch in &m.channels {
        let g = Geometry::new(u64::from(ch.size), ch.slot_size).unwrap();
        assert_eq!(
            (ch.size, g.slot_size, g.slot_count),
            (520 * 1024, 2048, 128)
        );
    }
    let devices: Vec<_> = m.devices.iter().map(|d| (d.qube, d.select)).collect();
    let card = PciSelect::Id {
        vendor: 0x1af4,
        device: 0x1041,
        index: 0,
    };
    assert_eq!(devices, [(0, card)]);
    assert_eq!(m.iommu, IommuPolicy::Required);
    // Images keep their numbers; the blobs follow them, in qube order.
    assert_eq!(c.images, ["net", "firewall", "testing"]);
    let configs: Vec<Option<u16>> = m.qubes.iter().map(|q| q.config).collect();
    assert_eq!(configs, [Some(4), Some(5), Some(6), Some(7)]);
    let entries: Vec<&str> = c.configs.iter().map(|b| b.entry.as_str()).collect();
    assert_eq!(
        entries,
        ["net.cfg", "firewall.cfg", "work.cfg", "other.cfg"]
    );
    assert_eq!(Manifest::decode(&m.to_vec()).as_ref(), Ok(m));

    let dns = heapless::Vec::from_slice(&[[10, 139, 1, 1], [10, 139, 1, 2]]).unwrap();
    // sys-net: no uplink, bridges to the firewall, which takes its DHCP address.
    let mut net = QubeConfig::empty();
    net.downstream
        .push(Downstream {
            qube: text("firewall"),
            channel: text("firewall.net"),
            address: None,
            rules: heapless::Vec::new(),
        })
        .unwrap();
    assert_eq!(config_of(&c, "net"), net);
    // sys-firewall: uplink without an address, both clients with their rules, a router.
    let work_rules = [
        Rule {
            specialtarget: Some(SpecialTarget::Dns),
            ..rule(Action::Accept)
        },
        Rule {
            proto: Some(Proto::Tcp),
            dsthost: Some(Cidr {
                addr: [10, 0, 2, 2],
                prefix_len: 32,
            }),
            dstports: Some(PortRange { lo: 5555, hi: 5555 }),
            ..rule(Action::Accept)
        },
        rule(Action::Drop),
    ];
    let mut firewall = QubeConfig::empty();
    firewall.uplink = Some(Uplink {
        channel: text("firewall.net"),
        address: None,
        prefix_len: 24,
        gateway: [0; 4],
        dns: heapless::Vec::new(),
    });
    for (name, address, rules) in [
        ("work", [10, 137, 0, 10], &work_rules[..]),
        ("other", [10, 137, 0, 11], &[][..]),
    ] {
        firewall
            .downstream
            .push(Downstream {
                qube: text(name),
                channel: text(&format!("{name}.net")),
                address: Some(address),
                rules: heapless::Vec::from_slice(rules).unwrap(),
            })
            .unwrap();
    }
    firewall.router = Some(Router {
        gateway: [10, 137, 0, 1],
        virtual_dns: dns.clone(),
        upstream_dns: Some(([10, 0, 2, 2], 5353)),
    });
    assert_eq!(config_of(&c, "firewall"), firewall);
    // The clients: their address, the gateway and the virtual DNS.
    for (name, address) in [("work", [10, 137, 0, 10]), ("other", [10, 137, 0, 11])] {
        let mut client = QubeConfig::empty();
        client.uplink = Some(Uplink {
            channel: text(&format!("{name}.net")),
            address: Some(address),
            prefix_len: 24,
            gateway: [10, 137, 0, 1],
            dns: dns.clone(),
        });
        assert_eq!(config_of(&c, name), client);
    }

    let summary = c.summary();
    for words in [
        "network: clients 10.137.0.0/24, gateway 10.137.0.1, virtual DNS 10.139.1.1 10.139.1.2, \
         DNS forwarded to 10.0.2.2:5353",
        "qube      netvm     role                          address            firewall rules",
        "net       -         card owner, bridge to 1 qube  DHCP on the card   -",
        "firewall  net       router for 2 qubes            DHCP lease of net  -",
        "work      firewall  client                        10.137.0.10/24     3 rules, then drop",
        "other     firewall  client                        10.137.0.11/24     none: accept all",
        "pci-id:1af4:1041",
        "1 device assigned only behind an IOMMU (iommu = \"required\")",
        "work.net      firewall (1)    work (0)        520 KiB  128 x 2048 B    2040 B           network",
        "#4 net.cfg (34 bytes), #5 firewall.cfg",
    ] {
        assert!(summary.contains(words), "{words:?} missing from\n{summary}");
    }
}

#[test]
fn rules_written_inline_are_the_same_rules() {
    let headers = net_and_firewall(&qube(
        "work",
        "netvm = \"fw\"\n[[qube.rule]]\naction = \"accept\"\nproto = \"udp\"\ndstports = \
         \"1024-2048\"\n[[qube.rule]]\naction = \"accept\"\nproto = \"icmp\"\nicmptype = 8\n\
         [[qube.rule]]\naction = \"drop\"",
    ));
    let inline = net_and_firewall(&qube(
        "work",
        "netvm = \"fw\"\nrule = [\n  { action = \"accept\", proto = \"udp\", dstports = \
         \"1024-2048\" },\n  { action = \"accept\", proto = \"icmp\", icmptype = 8 },\n  \
         { action = \"drop\" },\n]",
    ));
    let (a, b) = (compiled(&headers), compiled(&inline));
    let rules = |c: &CompiledSystem| config_of(c, "fw").downstream[0].rules.clone();
    assert_eq!(rules(&a), rules(&b));
    assert_eq!(
        rules(&a).as_slice(),
        [
            Rule {
                proto: Some(Proto::Udp),
                dstports: Some(PortRange { lo: 1024, hi: 2048 }),
                ..rule(Action::Accept)
            },
            Rule {
                proto: Some(Proto::Icmp),
                icmptype: Some(8),
                ..rule(Action::Accept)
            },
            rule(Action::Drop),
        ]
    );
    // A port may be written as a number.
    let number = net_and_firewall(&qube(
        "work",
        "netvm = \"fw\"\nrule = [{ action = \"accept\", proto = \"tcp\", dstports = 443 }, \
         { action = \"drop\" }]",
    ));
    let ports = config_of(&compiled(&number), "fw").downstream[0].rules[0].dstports;
    assert_eq!(ports, Some(PortRange { lo: 443, hi: 443 }));
}

#[test]
fn addresses_are_given_in_order_around_the_taken_ones() {
    // Explicit addresses are reserved before the others are handed out, wherever they are
    // written; the gateway and the virtual DNS addresses are never handed out.
    let text = format!(
        "[network]\nclients = \"192.168.7.0/29\"\ndns = [\"192.168.7.3\"]\n\n{}",
        net_and_firewall(&format!(
            "{}{}{}",
            qube("a", "netvm = \"fw\""),
            qube("b", "netvm = \"fw\""),
            qube("c", "netvm = \"fw\"\nip = \"192.168.7.2\"")
        ))
    );
    let c = compiled(&text);
    let fw = config_of(&c, "fw");
    let got: Vec<(&str, Option<[u8; 4]>)> = fw
        .downstream
        .iter()
        .map(|d| (d.qube.as_str(), d.address))
        .collect();
    assert_eq!(
        got,
        [
            ("a", Some([192, 168, 7, 4])),
            ("b", Some([192, 168, 7, 5])),
            ("c", Some([192, 168, 7, 2])),
        ]
    );
    // The gateway defaults to the first address of the network.
    let router = fw.router.unwrap();
    assert_eq!(router.gateway, [192, 168, 7, 1]);
    assert_eq!(router.virtual_dns.as_slice(), [[192, 168, 7, 3]]);
    let a = config_of(&c, "a").uplink.unwrap();
    assert_eq!(
        (a.address, a.prefix_len, a.gateway),
        (Some([192, 168, 7, 4]), 29, [192, 168, 7, 1])
    );
    // One more client does not fit a /29 (6 hosts: gateway, DNS, 4 clients).
    let full = text.clone() + &qube("d", "netvm = \"fw\"") + &qube("e", "netvm = \"fw\"");
    one_problem(
        &full,
        "qube \"e\".netvm",
        "no free address left in the client network 192.168.7.0/29 for \"e\"",
        "use a larger network",
    );
}

#[test]
fn address_problems() {
    let client = |ip: &str| {
        net_and_firewall(
            &(qube("a", "netvm = \"fw\"\nip = \"10.137.0.9\"")
                + &qube("b", &format!("netvm = \"fw\"\nip = \"{ip}\""))),
        )
    };
    let key = "qube \"b\".ip";
    for (ip, message, hint) in [
        (
            "10.137.1.9",
            "outside the client network 10.137.0.0/24",
            "e.g. ip = \"10.137.0.2\"",
        ),
        (
            "10.137.0.0",
            "the network address of 10.137.0.0/24",
            "leave ip out",
        ),
        ("10.137.0.255", "the broadcast address", "free address"),
        (
            "10.137.0.1",
            "the gateway's address",
            "other than the gateway 10.137.0.1",
        ),
        (
            "10.137.0.9",
            "already the address of qube \"a\"",
            "e.g. ip = \"10.137.0.2\"",
        ),
        (
            "10.137.0.300",
            "\"10.137.0.300\" is not an IPv4 address",
            "four numbers",
        ),
        (
            "10.137.0.9/24",
            "has a prefix",
            "the prefix comes from [network] clients",
        ),
        ("work.example", "is a name", "write the address"),
    ] {
        one_problem(&client(ip), key, message, hint);
    }
    // A virtual DNS address inside the client network is not handed to a qube.
    let dns = "[network]\ndns = [\"10.137.0.53\"]\n".to_string() + &client("10.137.0.53");
    one_problem(&dns, key, "a virtual DNS address", "free address");
    // Only qubes behind a router have addresses.
    one_problem(
        &net_and_firewall(&qube("a", "ip = \"10.137.0.9\"")),
        "qube \"a\".ip",
        "qube \"a\" has an address but no netvm",
        "add netvm = \"fw\", or remove ip",
    );
    let behind_card = "[system]\nram_mib = 256\n".to_string()
        + &qube("net", "devices = [\"pci-id:1af4:1041\"]")
        + &qube("fw", "netvm = \"net\"\nip = \"10.137.0.9\"");
    one_problem(
        &behind_card,
        "qube \"fw\".ip",
        "its netvm \"net\" owns the network card and does not route",
        "addresses are given to the qubes behind a router",
    );
}

#[test]
fn network_table_problems() {
    let with = |lines: &str| format!("[network]\n{lines}\n{}", net_and_firewall(""));
    for (lines, key, message, hint) in [
        (
            "clients = \"10.137.0.0\"",
            "network.clients",
            "not a network address/prefix",
            "clients = \"10.137.0.0/24\"",
        ),
        (
            "clients = \"10.137.0.1/24\"",
            "network.clients",
            "bits set after the /24 prefix",
            "clients = \"10.137.0.0/24\"",
        ),
        (
            "clients = \"10.137.0.0/31\"",
            "network.clients",
            "a /31 client network is not possible here",
            "/30 holds the gateway and one client",
        ),
        (
            "clients = \"sys-net/24\"",
            "network.clients",
            "is a name",
            "write the address",
        ),
        (
            "gateway = \"10.137.1.1\"",
            "network.gateway",
            "outside the client network 10.137.0.0/24",
            "gateway = \"10.137.0.1\"",
        ),
        (
            "gateway = \"10.137.0.255\"",
            "network.gateway",
            "the broadcast address",
            "an address of the clients network",
        ),
        (
            "dns = []",
            "network.dns",
            "dns names 0 addresses, one or two fit",
            "dns = [\"10.139.1.1\", \"10.139.1.2\"]",
        ),
        (
            "dns = [\"10.139.1.1\", \"10.139.1.1\"]",
            "network.dns",
            "10.139.1.1 is named twice",
            "two different addresses",
        ),
        (
            "dns = [\"10.137.0.1\"]",
            "network.dns",
            "10.137.0.1 is also the gateway",
            "separate from the gateway",
        ),
        (
            "clients = \"10.139.1.0/24\"",
            "network.clients",
            "its first address, 10.139.1.1, which is also a virtual DNS address",
            "clients = \"10.137.0.0/24\"",
        ),
        (
            "clients = \"10.139.0.0/16\"\ngateway = \"10.139.1.2\"",
            "network.gateway",
            "gateway 10.139.1.2 is also a virtual DNS address (without dns, 10.139.1.1 and \
             10.139.1.2)",
            "dns = [\"10.139.2.1\", \"10.139.2.2\"]",
        ),
        (
            "dns = \"10.139.1.1\"",
            "network.dns",
            "expected a list of addresses in double quotes, found string",
            "dns = [\"10.139.1.1\"]",
        ),
        (
            "upstream_dns = \"10.0.2.2:dns\"",
            "network.upstream_dns",
            "not an address with an optional port",
            "upstream_dns = \"10.0.2.2:5353\"",
        ),
        (
            "subnet = \"10.137.0.0/24\"",
            "network.subnet",
            "unknown key \"subnet\"",
            "did you mean clients?",
        ),
    ] {
        one_problem(&with(lines), key, message, hint);
    }
    // The same network with other virtual DNS addresses is fine.
    let c = compiled(&with("clients = \"10.139.1.0/24\"\ndns = [\"10.139.2.1\"]"));
    assert_eq!(c.network.unwrap().gateway, [10, 139, 1, 1]);
    // Without a port, upstream DNS is port 53.
    let c = compiled(&with("upstream_dns = \"192.0.2.53\""));
    assert_eq!(c.network.unwrap().upstream_dns, Some(([192, 0, 2, 53], 53)));
    one_problem(
        &("network = 1\n".to_string() + &net_and_firewall("")),
        "network",
        "network must be a table",
        "[network] header",
    );
}

#[test]
fn rule_problems() {
    let with = |rules: &str| {
        net_and_firewall(&qube(
            "work",
            &format!("netvm = \"fw\"\n{rules}\n[[qube.rule]]\naction = \"drop\""),
        ))
    };
    let r0 = |key: &str| format!("qube \"work\".rule[0].{key}");
    for (rule, key, message, hint) in [
        (
            "dstports = \"443\"",
            r0("dstports"),
            "dstports needs proto = \"tcp\" or \"udp\"",
            "add proto = \"tcp\"",
        ),
        (
            "proto = \"icmp\"\ndstports = \"443\"",
            r0("dstports"),
            "dstports does not apply to proto = \"icmp\"",
            "add proto",
        ),
        (
            "icmptype = 8",
            r0("icmptype"),
            "icmptype needs proto = \"icmp\"",
            "add proto = \"icmp\"",
        ),
        (
            "proto = \"udp\"\nicmptype = 8",
            r0("icmptype"),
            "icmptype does not apply to proto = \"udp\"",
            "proto = \"icmp\"",
        ),
        (
            "proto = \"icmp\"\nicmptype = 256",
            r0("icmptype"),
            "ICMP type 256 does not exist",
            "icmptype = 8",
        ),
        (
            "specialtarget = \"dns\"\ndsthost = \"10.139.1.1\"",
            r0("dsthost"),
            "specialtarget and dsthost cannot both be set",
            "remove dsthost",
        ),
        (
            "specialtarget = \"dns\"\nproto = \"icmp\"",
            r0("proto"),
            "never matches ICMP",
            "proto = \"udp\"",
        ),
        (
            "specialtarget = \"dns\"\nproto = \"udp\"\ndstports = \"50-60\"",
            r0("dstports"),
            "specialtarget = \"dns\" is port 53 alone; with dstports = \"50-60\" Qubes never installs this rule",
            "remove dstports",
        ),
        (
            "specialtarget = \"dns\"\nproto = \"tcp\"\ndstports = 853",
            r0("dstports"),
            "dstports = \"853\" never matches it",
            "remove dstports",
        ),
        (
            "specialtarget = \"dhcp\"",
            r0("specialtarget"),
            "unknown specialtarget \"dhcp\"",
            "special targets are dns",
        ),
        (
            "proto = \"sctp\"",
            r0("proto"),
            "unknown proto \"sctp\"",
            "protocols are tcp, udp, icmp",
        ),
        (
            "dsthost = \"example.org\"",
            r0("dsthost"),
            "\"example.org\" is a DNS name: not supported yet",
            "write the address instead",
        ),
        ("dsthost = \"::1\"", r0("dsthost"), "IPv6", "use IPv4"),
        (
            "dsthost = \"10.0.0\"",
            r0("dsthost"),
            "not an IPv4 address or network",
            "four numbers",
        ),
        (
            "dsthost = \"10.0.0.0/40\"",
            r0("dsthost"),
            "prefix length",
            "\"10.0.0.0/8\"",
        ),
        (
            "dsthost = \"10.1.2.3/8\"",
            r0("dsthost"),
            "10.1.2.3/8 has bits set after the /8 prefix",
            "\"10.0.0.0/8\", or the one host, \"10.1.2.3\"",
        ),
        (
            "proto = \"tcp\"\ndstports = \"80,443\"",
            r0("dstports"),
            "\"80,443\" is not a port or a port range",
            "dstports = \"1024-2048\"",
        ),
        (
            "proto = \"tcp\"\ndstports = \"2048-1024\"",
            r0("dstports"),
            "not a port or a port range",
            "lower port first",
        ),
        (
            "proto = \"tcp\"\nport = 443",
            r0("port"),
            "unknown key \"port\"",
            "did you mean dstports?",
        ),
        (
            "proto = \"tcp\"\ndstports = [443]",
            r0("dstports"),
            "expected text in double quotes or a whole number",
            "dstports = \"443\"",
        ),
    ] {
        let text = with(&format!("[[qube.rule]]\naction = \"accept\"\n{rule}"));
        one_problem(&text, &key, message, hint);
    }
    let missing = with("[[qube.rule]]\nproto = \"tcp\"");
    one_problem(
        &missing,
        &r0("action"),
        "missing action",
        "action = \"accept\"",
    );
    let allow = with("[[qube.rule]]\naction = \"allow\"\nproto = \"tcp\"");
    one_problem(
        &allow,
        &r0("action"),
        "unknown action \"allow\"",
        "did you mean \"accept\"?",
    );
    let deny = with("[[qube.rule]]\naction = \"deny\"\nproto = \"tcp\"");
    one_problem(
        &deny,
        &r0("action"),
        "unknown action \"deny\"",
        "did you mean \"drop\"?",
    );
}

#[test]
fn rule_lists_end_with_a_rule_without_conditions() {
    let with = |rules: &str| net_and_firewall(&qube("work", &format!("netvm = \"fw\"\n{rules}")));
    one_problem(
        &with("[[qube.rule]]\naction = \"accept\"\nproto = \"tcp\""),
        "qube \"work\".rule[0]",
        "the rules of qube \"work\" end with a rule that has conditions",
        "end the list with a rule that has only an action",
    );
    one_problem(
        &with(
            "[[qube.rule]]\naction = \"drop\"\n[[qube.rule]]\naction = \"accept\"\nproto = \"udp\"\n\
             [[qube.rule]]\naction = \"accept\"",
        ),
        "qube \"work\".rule[1]",
        "this rule can never match: qube \"work\".rule[0] above it has no condition",
        "move the rule without conditions to the end",
    );
    // No rules at all: an empty list, which accepts everything.
    let c = compiled(&with(""));
    assert!(config_of(&c, "fw").downstream[0].rules.is_empty());
    let c = compiled(&with("rule = []"));
    assert!(config_of(&c, "fw").downstream[0].rules.is_empty());
    // At most MAX_RULES.
    let most = "[[qube.rule]]\naction = \"accept\"\nproto = \"tcp\"\n".repeat(MAX_RULES - 1)
        + "[[qube.rule]]\naction = \"drop\"\n";
    assert_eq!(
        config_of(&compiled(&with(&most)), "fw").downstream[0]
            .rules
            .len(),
        MAX_RULES
    );
    one_problem(
        &with(&("[[qube.rule]]\naction = \"accept\"\nproto = \"udp\"\n".to_string() + &most)),
        &format!("qube \"work\".rule[{MAX_RULES}]"),
        &format!("{} firewall rules, at most {MAX_RULES} fit", MAX_RULES + 1),
        "remove 1 rule(s)",
    );
}

#[test]
fn rules_need_a_router() {
    let drop = "[[qube.rule]]\naction = \"drop\"";
    one_problem(
        &net_and_firewall(&qube("a", drop)),
        "qube \"a\".rule",
        "qube \"a\" has firewall rules but no netvm",
        "add netvm = \"fw\", or remove the rules",
    );
    let behind_card = "[system]\nram_mib = 256\n".to_string()
        + &qube("net", "devices = [\"pci-id:1af4:1041\"]")
        + &qube("fw", &format!("netvm = \"net\"\n{drop}"));
    one_problem(
        &behind_card,
        "qube \"fw\".rule",
        "its netvm \"net\" owns the network card and does not route",
        "firewall rules are enforced by a router",
    );
}

#[test]
fn rule_tables_are_read_with_their_place() {
    // A key of the qube after its rules is read as the rule's, and said so.
    one_problem(
        &net_and_firewall(&qube(
            "a",
            "[[qube.rule]]\naction = \"drop\"\nnetvm = \"fw\"",
        )),
        "qube \"a\".rule[0].netvm",
        "unknown key \"netvm\"",
        "move netvm above the qube's first [[qube.rule]]",
    );
    // A rule key written in the qube.
    one_problem(
        &net_and_firewall(&qube("a", "netvm = \"fw\"\naction = \"drop\"")),
        "qube \"a\".action",
        "unknown key \"action\"",
        "action belongs to a firewall rule, not a [[qube]]: put it below a [[qube.rule]] header",
    );
    one_problem(
        &net_and_firewall(&qube("a", "netvm = \"fw\"\n[qube.rule]\naction = \"drop\"")),
        "qube \"a\".rule",
        "rule must be a list of tables",
        "write [[qube.rule]] (double brackets)",
    );
    one_problem(
        &net_and_firewall(&qube("a", "netvm = \"fw\"\nrule = [1]")),
        "qube \"a\".rule[0]",
        "each rule must be a table",
        "[[qube.rule]]",
    );
    // A syntax error in a rule names the qube and the rule by position.
    let syntax = net_and_firewall(&qube("a", "netvm = \"fw\"\n[[qube.rule]]\nproto = tcp"));
    let found = problems(&syntax);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "qube[2].rule[0].proto");
    // A rule above every qube.
    let stray =
        "[system]\nram_mib = 64\n[[qube.rule]]\naction = \"drop\"\n".to_string() + &qube("a", "");
    let found = problems(&stray);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].message,
        "a [[qube.rule]] comes before any [[qube]]"
    );
    assert_eq!(found[0].position, Some((3, 1)));
    // Network keys in the wrong table.
    let found = problems(&("clients = \"10.0.0.0/8\"\n".to_string() + &net_and_firewall("")));
    assert!(
        found[0].hint.contains("belongs in the [network] table"),
        "{found:#?}"
    );
    one_problem(
        &net_and_firewall(&qube("a", "iommu = \"required\"")),
        "qube \"a\".iommu",
        "unknown key \"iommu\"",
        "iommu belongs in the [system] table, not a [[qube]]",
    );
}

#[test]
fn netvm_problems() {
    let base = |rest: &str| net_and_firewall(rest);
    one_problem(
        &base(&qube("a", "netvm = \"a\"")),
        "qube \"a\".netvm",
        "\"a\" cannot be its own netvm",
        "qubes are net, fw",
    );
    one_problem(
        &base(&qube("a", "netvm = \"fww\"")),
        "qube \"a\".netvm",
        "unknown netvm \"fww\"",
        "did you mean \"fw\"?",
    );
    // A three-qube cycle, reported once, at its first qube.
    let cycle = base(&format!(
        "{}{}{}",
        qube("a", "netvm = \"b\""),
        qube("b", "netvm = \"c\""),
        qube("c", "netvm = \"a\"")
    ));
    one_problem(
        &cycle,
        "qube \"a\".netvm",
        "netvm cycle: \"a\" -> \"b\" -> \"c\" -> \"a\"",
        "must end at a qube that owns a network card",
    );
    // A netvm with neither a netvm nor a card, reported once for its two clients.
    let nowhere = base(&format!(
        "{}{}{}",
        qube("island", ""),
        qube("a", "netvm = \"island\""),
        qube("b", "netvm = \"island\"")
    ));
    one_problem(
        &nowhere,
        "qube \"a\".netvm",
        "\"island\" cannot reach any network: it has no netvm and no devices",
        "give \"island\" its network card",
    );
    // The card owner serves one qube.
    one_problem(
        &base(&qube("a", "netvm = \"net\"")),
        "qube \"a\".netvm",
        "\"net\" owns the network card and serves one qube, \"fw\" already",
        "netvm = \"fw\" here",
    );
    // The automatic channel's name must fit.
    let long = "a".repeat(21);
    one_problem(
        &base(&qube(&long, "netvm = \"fw\"")),
        &format!("qube \"{long}\".netvm"),
        &format!("would be called \"{long}.net\", 25 bytes; at most 24 fit"),
        "at most 20 bytes",
    );
    // A wrong netvm does not make its clients' problems up: only the real one is reported.
    let chain = base(&(qube("vpn", "netvm = \"nett\"") + &qube("a", "netvm = \"vpn\"")));
    one_problem(
        &chain,
        "qube \"vpn\".netvm",
        "unknown netvm \"nett\"",
        "\"net\"",
    );
}

#[test]
fn automatic_channels_count_against_the_limits() {
    // sys-firewall's uplink and 7 clients fill its 8 channel windows; the 8th client does
    // not fit, and the hint says why.
    let clients: String = (1..=8)
        .map(|i| qube(&format!("c{i}"), "netvm = \"fw\""))
        .collect();
    one_problem(
        &net_and_firewall(&clients),
        "qube \"c8\".netvm",
        "\"fw\" is an endpoint of 9 channels, at most 8 fit",
        "every qube with netvm = \"fw\" takes one",
    );
    let seven: String = (1..=7)
        .map(|i| qube(&format!("c{i}"), "netvm = \"fw\""))
        .collect();
    let c = compiled(&net_and_firewall(&seven));
    assert_eq!(c.manifest.channels.len(), 8);
    assert_eq!(config_of(&c, "fw").downstream.len(), 7);
    // Their memory counts: 2 qubes of 4 MiB and one 520 KiB channel need 40 MiB 520 KiB.
    let tight = net_and_firewall("").replace("ram_mib = 512", "ram_mib = 40");
    one_problem(
        &tight,
        "system.ram_mib",
        "qubes need 8 MiB + 520 KiB of channels + 32 MiB hypervisor reserve",
        "raise ram_mib to 41",
    );
    // Declared channels come first; a declared one that repeats the automatic one is
    // flagged, with where the automatic one comes from.
    let declared = net_and_firewall(
        "[[channel]]\nname = \"frames\"\nbetween = [\"net\", \"fw\"]\npurpose = \"Network\"\n",
    );
    one_problem(
        &declared,
        "channel \"frames\".purpose",
        "channel \"frames\" joins \"net\" and \"fw\" for the same purpose as channel \"fw.net\"",
        "qube \"fw\".netvm makes channel \"fw.net\" already",
    );
    let other = declared.replace("\"Network\"", "\"control\"");
    let names: Vec<String> = compiled(&other)
        .manifest
        .channels
        .iter()
        .map(|ch| ch.name.to_string())
        .collect();
    assert_eq!(names, ["frames", "fw.net"]);
}

#[test]
fn devices_and_the_iommu_policy() {
    let with = |devices: &str| {
        format!(
            "[system]\nram_mib = 256\n\n{}{}",
            qube("net", &format!("devices = {devices}")),
            qube("usb", "devices = [\"pci:00:1d.0\"]")
        )
    };
    let c = compiled(&with(
        "[\"pci:0001:02:03.4\", \"pci-id:8086:100e\", \"pci-id:8086:100e#1\"]",
    ));
    let devices: Vec<_> = c
        .manifest
        .devices
        .iter()
        .map(|d| (d.qube, d.select))
        .collect();
    let e1000 = |index| PciSelect::Id {
        vendor: 0x8086,
        device: 0x100e,
        index,
    };
    let usb = PciSelect::Address {
        segment: 0,
        bus: 0,
        device: 0x1d,
        function: 0,
    };
    assert_eq!(
        devices,
        [
            (
                0,
                PciSelect::Address {
                    segment: 1,
                    bus: 2,
                    device: 3,
                    function: 4
                }
            ),
            (0, e1000(0)),
            (0, e1000(1)),
            (1, usb),
        ]
    );
    // Devices alone make no configuration blob.
    assert!(c.configs.is_empty() && c.network.is_none());
    assert!(
        c.summary()
            .contains("pci:0001:02:03.4 pci-id:8086:100e pci-id:8086:100e#1")
    );
    // The same device twice, however it is written.
    one_problem(
        &with("[\"pci-id:8086:100e\", \"pci-id:8086:100E#0\"]"),
        "qube \"net\".devices",
        "pci-id:8086:100e is named twice (written \"pci-id:8086:100E#0\" here)",
        "this qube already names it",
    );
    one_problem(
        &with("[\"pci:0000:00:1d.0\"]"),
        "qube \"usb\".devices",
        "pci:00:1d.0 is named twice",
        "qube \"net\" already has it",
    );
    one_problem(
        &with("\"pci-id:8086:100e\""),
        "qube \"net\".devices",
        "expected a list of devices in double quotes, found string",
        "devices = [\"pci-id:8086:100e\"]",
    );
    one_problem(
        &with("[\"eth0\"]"),
        "qube \"net\".devices",
        "\"eth0\" is not a device",
        "lspci -nn",
    );
    let many: Vec<String> = (0..MAX_DEVICES)
        .map(|i| format!("\"pci:01:{i:02x}.0\""))
        .collect();
    one_problem(
        &with(&format!("[{}]", many.join(", "))),
        "qube \"usb\".devices",
        &format!(
            "{} devices are assigned, at most {MAX_DEVICES} fit",
            MAX_DEVICES + 1
        ),
        "assign 1 device(s) fewer",
    );
    // The IOMMU policy.
    assert_eq!(c.manifest.iommu, IommuPolicy::Required);
    let risky = with("[]").replace(
        "ram_mib = 256",
        "ram_mib = 256\niommu = \"accept-risk-dma-can-read-all-memory\"",
    );
    let c = compiled(&risky);
    assert_eq!(c.manifest.iommu, IommuPolicy::AcceptRisk);
    assert!(
        c.summary()
            .contains("a device can read and write all memory")
    );
    one_problem(
        &with("[]").replace("ram_mib = 256", "ram_mib = 256\niommu = \"accept-risk\""),
        "system.iommu",
        "unknown iommu policy \"accept-risk\"",
        "\"required\" (the default",
    );
}

#[test]
fn long_qube_names_give_entry_names_that_fit() {
    let name = "a-twenty-byte-name-x";
    assert_eq!(name.len(), 20);
    let c = compiled(&net_and_firewall(&qube(name, "netvm = \"fw\"")));
    let blob = c.configs.iter().find(|b| b.qube == 2).unwrap();
    assert_eq!(blob.entry, "a-twenty-byte-na.cfg");
    assert!(blob.entry.len() <= bulkhead_abi::bundle::ENTRY_NAME_LEN);
    assert_eq!(
        config_of(&c, name).uplink.unwrap().channel.as_str(),
        "a-twenty-byte-name-x.net"
    );
}

#[test]
fn the_documented_example_compiles_as_the_document_says() {
    let doc = std::fs::read_to_string(crate::workspace_root().join("docs/system-description.md"))
        .unwrap();
    // The whole-system example (the page's smaller snippets have no [system] table).
    let example = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[system]"))
        .expect("a toml example with a [system] table");
    let c = compiled(example);
    let channels: Vec<_> = c
        .manifest
        .channels
        .iter()
        .map(|ch| (ch.name.as_str(), ch.a, ch.b))
        .collect();
    assert_eq!(channels, [("firewall.net", 0, 1), ("work.net", 1, 2)]);
    let owners: Vec<u8> = c.manifest.devices.iter().map(|d| d.qube).collect();
    assert_eq!(owners, [0, 3]);
    let entries: Vec<&str> = c.configs.iter().map(|b| b.entry.as_str()).collect();
    assert_eq!(entries, ["net.cfg", "firewall.cfg", "work.cfg"]);
    let fw = config_of(&c, "firewall");
    assert_eq!(fw.uplink.unwrap().address, None);
    assert_eq!(fw.downstream[0].address, Some([10, 137, 0, 10]));
    assert_eq!(fw.downstream[0].rules.len(), 3);
    let router = fw.router.unwrap();
    assert_eq!(
        (router.gateway, router.upstream_dns),
        ([10, 137, 0, 1], Some(([10, 0, 2, 2], 5353)))
    );
    let work = config_of(&c, "work").uplink.unwrap();
    assert_eq!(
        (work.address, work.prefix_len, work.gateway),
        (Some([10, 137, 0, 10]), 24, [10, 137, 0, 1])
    );
    assert_eq!(work.dns.as_slice(), [[10, 139, 1, 1], [10, 139, 1, 2]]);
    assert_eq!(config_of(&c, "net").downstream[0].qube.as_str(), "firewall");
}

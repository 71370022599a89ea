//! Networking in Qubes' terms. A qube's `netvm` is the qube it reaches the network through;
//! the compiler joins the two with a channel (`<client>.net`, side A the netvm). A netvm
//! without a netvm of its own owns the network card (sys-net) and bridges it to its one
//! client; a netvm with a netvm routes for its clients (sys-firewall): they get addresses in
//! the client network (`[network]`) and their `[[qube.rule]]` firewall rules are enforced
//! there. Each qube on a link gets a configuration blob ([`QubeConfig`]) saying all this.

use super::channels::{Automatic, Channel, net_channel_size};
use super::diagnostics::Diagnostics;
use super::hints;
use super::ip::{self, Net, NotAddress, NotNet};
use super::rules;
use super::schema::{Raw, Section};
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::proto::NET_SLOT_SIZE;
use bulkhead_qubeconfig::{Downstream, Ipv4, MAX_DOWNSTREAM, QubeConfig, Router, Rule, Uplink};
use std::ops::Range;

/// What the automatic channel of a qube is called after: `<qube>.net`. User channels cannot
/// have a `.` in their names, so the two never clash.
const CHANNEL_SUFFIX: &str = ".net";
/// The purpose of automatic channels.
pub(super) const PURPOSE: &str = "network";
/// Port DNS is forwarded to when `upstream_dns` names none.
const DNS_PORT: u16 = 53;

/// The name of the channel between `qube` and its netvm.
pub(super) fn channel_name(qube: &str) -> String {
    format!("{qube}{CHANNEL_SUFFIX}")
}

/// The client network behind the routers (`[network]`, or Qubes' defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Where client addresses come from.
    pub clients: ip::Net,
    /// The address every router presents to its clients.
    pub gateway: Ipv4,
    /// The virtual DNS addresses (one or two) routers answer on.
    pub dns: Vec<Ipv4>,
    /// Where routers forward DNS, instead of the resolver sys-net learned by DHCP.
    pub upstream_dns: Option<(Ipv4, u16)>,
}

impl Params {
    /// Qubes' addresses: clients in 10.137.0.0/24 with the gateway 10.137.0.1, virtual DNS
    /// at 10.139.1.1 and 10.139.1.2.
    pub fn qubes_defaults() -> Params {
        Params {
            clients: Net {
                addr: [10, 137, 0, 0],
                prefix_len: 24,
            },
            gateway: [10, 137, 0, 1],
            dns: vec![[10, 139, 1, 1], [10, 139, 1, 2]],
            upstream_dns: None,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let dns: Vec<String> = self.dns.iter().map(|a| ip::show(*a)).collect();
        let upstream = match self.upstream_dns {
            Some((a, port)) => format!(", DNS forwarded to {}:{port}", ip::show(a)),
            None => ", DNS forwarded to the resolver sys-net learns by DHCP".to_string(),
        };
        format!(
            "clients {}, gateway {}, virtual DNS {}{upstream}",
            self.clients,
            ip::show(self.gateway),
            dns.join(" ")
        )
    }
}

/// A problem with an address-like value: message and hint.
fn not_address(value: &str, why: NotAddress, example: &str) -> (String, String) {
    let shown = hints::quoted(value);
    match why {
        NotAddress::Name => (
            format!("{shown} is a name: an IPv4 address is needed here"),
            format!("write the address, e.g. {example}"),
        ),
        NotAddress::V6 => (
            format!("{shown} is an IPv6 address: not supported yet"),
            format!("use IPv4, e.g. {example}"),
        ),
        NotAddress::Syntax => (
            format!("{shown} is not an IPv4 address"),
            format!("write four numbers from 0 to 255 with dots, e.g. {example}"),
        ),
    }
}

/// `[network]` with the defaults filled in. `None` when a value is wrong (reported).
pub(super) fn params(raw: &Raw, text: &str, d: &mut Diagnostics) -> Option<Params> {
    let defaults = Params::qubes_defaults();
    let Some(n) = &raw.network else {
        return Some(defaults);
    };
    let clients = match n.text("clients") {
        None => n.absent("clients").then_some(defaults.clients),
        Some((value, span)) => clients(n, value, span, text, d),
    };
    // The gateway is checked against the clients network only when that one is right.
    let gateway = match (n.text("gateway"), clients) {
        (None, Some(c)) if n.absent("gateway") => c.hosts().next(),
        (Some((value, span)), c) => gateway(n, value, span, c, text, d),
        _ => None,
    };
    let dns = match n.names("dns") {
        None => n.absent("dns").then_some(defaults.dns),
        Some((list, span)) => dns(n, list, span, gateway, text, d),
    };
    let upstream_dns = match n.text("upstream_dns") {
        None => n.absent("upstream_dns").then_some(None),
        Some((value, span)) => match ip::host_port(value, DNS_PORT) {
            Some(at) => Some(Some(at)),
            None => {
                let message = format!(
                    "{} is not an address with an optional port",
                    hints::quoted(value)
                );
                let hint = "write the resolver's IPv4 address, and its port after a colon if \
                            it is not 53, e.g. upstream_dns = \"10.0.2.2:5353\"";
                d.fail(text, Some(span), n.key("upstream_dns"), message, hint)
            }
        },
    };
    Some(Params {
        clients: clients?,
        gateway: gateway?,
        dns: dns?,
        upstream_dns: upstream_dns?,
    })
}

/// `clients`: a network from /8 to /30 (room for the gateway and a client), as written
/// (no bits after the prefix).
fn clients(
    n: &Section,
    value: &str,
    span: Range<usize>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Net> {
    let key = n.key("clients");
    let example = "clients = \"10.137.0.0/24\"";
    let net = match ip::net(value) {
        Ok(net) if value.contains('/') => net,
        Ok(_) | Err(NotNet::Prefix) => {
            let message = format!("{} is not a network address/prefix", hints::quoted(value));
            let hint = format!("write the network and its prefix length, e.g. {example}");
            return d.fail(text, Some(span), key, message, hint);
        }
        Err(NotNet::Address(why)) => {
            let (message, hint) = not_address(value, why, example);
            return d.fail(text, Some(span), key, message, hint);
        }
    };
    if !(8..=30).contains(&net.prefix_len) {
        let message = format!(
            "a /{} client network is not possible here: the prefix is from 8 to 30",
            net.prefix_len
        );
        let hint = format!(
            "/30 holds the gateway and one client, /24 (Qubes') 253 clients; e.g. {example}"
        );
        return d.fail(text, Some(span), key, message, hint);
    }
    if net.has_host_bits() {
        let message = format!("{net} has bits set after the /{} prefix", net.prefix_len);
        let hint = format!(
            "write the network itself: clients = \"{}/{}\"",
            ip::show(net.network()),
            net.prefix_len
        );
        return d.fail(text, Some(span), key, message, hint);
    }
    Some(net)
}

/// `gateway`: an address inside the clients network (when that is known), neither its
/// network nor its broadcast address.
fn gateway(
    n: &Section,
    value: &str,
    span: Range<usize>,
    clients: Option<Net>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Ipv4> {
    let key = n.key("gateway");
    let a = match ip::ipv4(value) {
        Ok(a) => a,
        Err(why) => {
            let (message, hint) = not_address(value, why, "gateway = \"10.137.0.1\"");
            return d.fail(text, Some(span), key, message, hint);
        }
    };
    let c = clients?;
    let first = c.hosts().next().map_or(String::new(), |h| {
        format!(", e.g. gateway = \"{}\"", ip::show(h))
    });
    let message = if !c.contains(a) {
        format!("gateway {value} is outside the client network {c}")
    } else if a == c.network() {
        format!("gateway {value} is the network address of {c}")
    } else if a == c.broadcast() {
        format!("gateway {value} is the broadcast address of {c}")
    } else {
        return Some(a);
    };
    let hint = format!("the gateway is an address of the clients network{first}");
    d.fail(text, Some(span), key, message, hint)
}

/// `dns`: one or two addresses, different from each other and from the gateway.
fn dns(
    n: &Section,
    list: &[(String, Range<usize>)],
    span: Range<usize>,
    gateway: Option<Ipv4>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Vec<Ipv4>> {
    let key = n.key("dns");
    let example = "dns = [\"10.139.1.1\", \"10.139.1.2\"]";
    if list.is_empty() || list.len() > 2 {
        let message = format!("dns names {} addresses, one or two fit", list.len());
        let hint = format!("routers answer DNS on one or two virtual addresses, e.g. {example}");
        return d.fail(text, Some(span), key, message, hint);
    }
    let mut out: Vec<Ipv4> = Vec::new();
    let mut ok = true;
    for (value, span) in list {
        let problem = match ip::ipv4(value) {
            Err(why) => Some(not_address(value, why, example)),
            Ok(a) if out.contains(&a) => Some((
                format!("{value} is named twice"),
                "name two different addresses, or one".to_string(),
            )),
            Ok(a) if Some(a) == gateway => Some((
                format!("{value} is also the gateway"),
                format!("the virtual DNS addresses are separate from the gateway, e.g. {example}"),
            )),
            Ok(a) => {
                out.push(a);
                None
            }
        };
        if let Some((message, hint)) = problem {
            d.push(text, Some(span.clone()), key.clone(), message, hint);
            ok = false;
        }
    }
    ok.then_some(out)
}

/// Each qube's netvm as written and resolved, and the channels they make.
pub(super) struct Links {
    /// Each qube's netvm, by index, when it names a known qube.
    pub netvm: Vec<Option<usize>>,
    /// Whether every netvm is right and there is no cycle.
    pub ok: bool,
    /// The channels between each qube and its netvm.
    pub automatic: Vec<Automatic>,
}

/// Whether qube `q` has devices (or a `devices` key too broken to tell).
fn has_devices(q: &Section) -> bool {
    match q.names("devices") {
        Some((list, _)) => !list.is_empty(),
        None => !q.absent("devices"),
    }
}

/// Reads every `netvm`: a known qube other than itself, no cycles, a netvm that reaches a
/// network, one client per card owner, and at most [`MAX_DOWNSTREAM`] clients per netvm.
pub(super) fn links(raw: &Raw, text: &str, d: &mut Diagnostics) -> Links {
    let qubes = &raw.qubes.items;
    let names: Vec<Option<&str>> = qubes
        .iter()
        .map(|q| q.text("name").map(|(n, _)| n))
        .collect();
    let listed: Vec<&str> = names.iter().flatten().copied().collect();
    let known = !qubes.is_empty() && !raw.qubes.malformed;
    let mut netvm = vec![None; qubes.len()];
    // Qubes whose netvm is given but wrong: where they lead is unknown.
    let mut broken = vec![false; qubes.len()];
    for (i, q) in qubes.iter().enumerate() {
        let Some((target, span)) = q.text("netvm") else {
            broken[i] = !q.absent("netvm");
            continue;
        };
        let key = q.key("netvm");
        if names[i] == Some(target) {
            let message = format!("\"{target}\" cannot be its own netvm");
            let others: Vec<&str> = listed.iter().copied().filter(|n| *n != target).collect();
            let hint = format!(
                "netvm names the qube this one reaches the network through, e.g. a firewall; \
                 qubes are {}",
                hints::list(&others)
            );
            d.push(text, Some(span), key, message, hint);
            broken[i] = true;
            continue;
        }
        match names.iter().position(|n| *n == Some(target)) {
            Some(n) => netvm[i] = Some(n),
            None => {
                if known {
                    let message = format!("unknown netvm {}", hints::quoted(target));
                    let hint = hints::one_of("qubes", target, &listed);
                    d.push(text, Some(span.clone()), key.clone(), message, hint);
                }
                broken[i] = true;
            }
        }
        if let Some(name) = names[i].filter(|n| n.len() + CHANNEL_SUFFIX.len() > NAME_MAX) {
            let channel = channel_name(name);
            let message = format!(
                "the channel to the netvm would be called \"{channel}\", {} bytes; at most \
                 {NAME_MAX} fit",
                channel.len()
            );
            let hint = format!(
                "a qube with a netvm has a name of at most {} bytes; shorten \"{name}\"",
                NAME_MAX - CHANNEL_SUFFIX.len()
            );
            d.push(text, Some(span), key, message, hint);
            broken[i] = true;
        }
    }
    let mut ok = !broken.contains(&true);
    ok &= cycles(raw, &names, &netvm, text, d);
    ok &= reachable(raw, &names, &netvm, &broken, text, d);
    let automatic = automatic(raw, &names, &netvm);
    Links {
        netvm,
        ok,
        automatic,
    }
}

/// Reports each netvm cycle once, at the first qube of it; false if there is one.
fn cycles(
    raw: &Raw,
    names: &[Option<&str>],
    netvm: &[Option<usize>],
    text: &str,
    d: &mut Diagnostics,
) -> bool {
    let mut reported = vec![false; netvm.len()];
    let mut ok = true;
    for start in 0..netvm.len() {
        // Follow the chain; after `len` steps without a repeat there is none through start.
        let mut chain = vec![start];
        let mut at = start;
        let cycle = loop {
            match netvm[at] {
                None => break None,
                Some(next) if next == start => break Some(chain),
                Some(next) if chain.contains(&next) || chain.len() > netvm.len() => break None,
                Some(next) => {
                    chain.push(next);
                    at = next;
                }
            }
        };
        let Some(cycle) = cycle else {
            continue;
        };
        ok = false;
        if cycle.iter().any(|i| reported[*i]) {
            continue;
        }
        for i in &cycle {
            reported[*i] = true;
        }
        let name = |i: usize| format!("\"{}\"", names[i].unwrap_or("?"));
        let path: Vec<String> = cycle.iter().chain([&start]).map(|i| name(*i)).collect();
        let q = &raw.qubes.items[start];
        let span = q.text("netvm").map(|(_, s)| s);
        let message = format!("netvm cycle: {}", path.join(" -> "));
        let hint = "a chain of netvms must end at a qube that owns a network card (devices = \
                    [...]) and has no netvm; remove netvm from one of these qubes";
        d.push(text, span, q.key("netvm"), message, hint);
    }
    ok
}

/// Each netvm reaches a network (it has a netvm or devices), a card owner serves one client,
/// and no netvm has more than [`MAX_DOWNSTREAM`] clients. Netvms whose own netvm is
/// `broken` are left alone (where they lead is unknown).
fn reachable(
    raw: &Raw,
    names: &[Option<&str>],
    netvm: &[Option<usize>],
    broken: &[bool],
    text: &str,
    d: &mut Diagnostics,
) -> bool {
    let qubes = &raw.qubes.items;
    let name = |i: usize| names[i].unwrap_or("?");
    let mut ok = true;
    let mut clients: Vec<Vec<usize>> = vec![Vec::new(); qubes.len()];
    for (i, q) in qubes.iter().enumerate() {
        let Some(n) = netvm[i] else {
            continue;
        };
        clients[n].push(i);
        let span = q.text("netvm").map(|(_, s)| s);
        let key = q.key("netvm");
        let bridge = netvm[n].is_none() && !broken[n];
        if bridge && !has_devices(&qubes[n]) {
            // Once per netvm, at its first client.
            if clients[n].len() == 1 {
                let message = format!(
                    "\"{}\" cannot reach any network: it has no netvm and no devices",
                    name(n)
                );
                let hint = format!(
                    "give \"{}\" its network card (devices = [\"pci-id:1af4:1041\"]) or a \
                     netvm of its own, or choose another netvm here",
                    name(n)
                );
                d.push(text, span, key, message, hint);
            }
            ok = false;
        } else if bridge && clients[n].len() == 2 {
            let first = clients[n][0];
            let message = format!(
                "\"{}\" owns the network card and serves one qube, \"{}\" already",
                name(n),
                name(first)
            );
            let hint = format!(
                "the card owner hands its one DHCP address to its one client; put a router \
                 between: netvm = \"{}\" here, if \"{}\" routes (a qube whose netvm is \"{}\", \
                 like sys-firewall)",
                name(first),
                name(first),
                name(n)
            );
            d.push(text, span, key, message, hint);
            ok = false;
        } else if clients[n].len() == MAX_DOWNSTREAM + 1 {
            let message = format!(
                "\"{}\" is the netvm of {} qubes, at most {MAX_DOWNSTREAM} fit",
                name(n),
                MAX_DOWNSTREAM + 1
            );
            let hint = "give some of its clients another netvm";
            d.push(text, span, key, message, hint);
            ok = false;
        }
    }
    ok
}

/// The channel between each qube with a (known) netvm and that netvm.
fn automatic(raw: &Raw, names: &[Option<&str>], netvm: &[Option<usize>]) -> Vec<Automatic> {
    let size = net_channel_size();
    raw.qubes
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, q)| {
            let n = netvm[i]?;
            let name = names[i].filter(|n| n.len() + CHANNEL_SUFFIX.len() <= NAME_MAX)?;
            Some(Automatic {
                channel: Channel {
                    name: channel_name(name),
                    a: n,
                    b: i,
                    size,
                    slot_size: NET_SLOT_SIZE,
                    purpose: PURPOSE.to_string(),
                },
                key: q.key("netvm"),
                span: q.text("netvm").map(|(_, s)| s),
            })
        })
        .collect()
}

/// The network as checked: who is whose netvm, the clients' addresses and rules.
pub(super) struct Plan {
    pub netvm: Vec<Option<usize>>,
    /// The address of each qube behind a router.
    pub address: Vec<Option<Ipv4>>,
    /// The firewall rules of each qube behind a router (empty: accept everything).
    pub rules: Vec<Vec<Rule>>,
    pub params: Params,
}

/// Checks every qube's rules and address against its place in the network and assigns the
/// missing addresses. `None` when something is wrong (reported).
pub(super) fn plan(
    raw: &Raw,
    links: &Links,
    params: Option<Params>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Plan> {
    let qubes = &raw.qubes.items;
    let names: Vec<Option<&str>> = qubes
        .iter()
        .map(|q| q.text("name").map(|(n, _)| n))
        .collect();
    let netvm = &links.netvm;
    // Where a qube stands, when its netvm (and its netvm's netvm) are known.
    let behind_router = |i: usize| netvm[i].map(|n| netvm[n].is_some());
    let mut ok = links.ok;
    let mut rules = Vec::new();
    for (i, q) in qubes.iter().enumerate() {
        let checked = rules::check(q, text, d);
        ok &= checked.is_some();
        let checked = checked.unwrap_or_default();
        // A netvm written after the rules is read as a rule's key (and reported there).
        let netvm_in_rule = q
            .tables("rule")
            .is_some_and(|t| t.items.iter().any(|r| r.has_unknown("netvm")));
        ok &= !netvm_in_rule;
        if !checked.is_empty() && links.ok && !netvm_in_rule && behind_router(i) != Some(true) {
            let span = q.tables("rule").and_then(|t| t.span.clone());
            let (message, hint) = misplaced(raw, &names, netvm, i, Misplaced::Rules);
            d.push(text, span, q.key("rule"), message, hint);
            ok = false;
        }
        rules.push(checked);
    }
    let address = addresses(raw, &names, links, params.as_ref(), text, d);
    if !ok {
        return None;
    }
    Some(Plan {
        netvm: netvm.clone(),
        address: address?,
        rules,
        params: params?,
    })
}

/// What a qube not behind a router may not have: its firewall rules or its address.
#[derive(Clone, Copy)]
enum Misplaced {
    Rules,
    Address,
}

/// Message and hint for `what` on qube `i`, which is not behind a router.
fn misplaced(
    raw: &Raw,
    names: &[Option<&str>],
    netvm: &[Option<usize>],
    i: usize,
    what: Misplaced,
) -> (String, String) {
    let name = |i: usize| names[i].unwrap_or("?");
    // A qube that routes, or could: one whose netvm owns the card.
    let router = (0..netvm.len())
        .find(|r| *r != i && netvm[*r].is_some_and(|n| netvm[n].is_none()))
        .map_or("firewall".to_string(), |r| name(r).to_string());
    let (has, are_for, remove) = match what {
        Misplaced::Rules => (
            "firewall rules",
            "firewall rules are enforced by a router",
            "remove the rules",
        ),
        Misplaced::Address => (
            "an address",
            "addresses are given to the qubes behind a router",
            "remove ip",
        ),
    };
    let path = &raw.qubes.items[i].path;
    match netvm[i] {
        None => (
            format!("{path} has {has} but no netvm"),
            format!(
                "{are_for} (a qube whose netvm owns the network card, like sys-firewall): add \
                 netvm = \"{router}\", or {remove}"
            ),
        ),
        Some(n) => (
            format!(
                "{path} has {has}, but its netvm \"{}\" owns the network card and does not \
                 route",
                name(n)
            ),
            format!(
                "{are_for} (a qube whose netvm owns the network card, like sys-firewall): set \
                 netvm = \"{router}\", or {remove}"
            ),
        ),
    }
}

/// Each qube's address: as given by `ip`, or the next free one of the client network for a
/// qube behind a router without one. `None` when an address is wrong or the network is full.
fn addresses(
    raw: &Raw,
    names: &[Option<&str>],
    links: &Links,
    params: Option<&Params>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Vec<Option<Ipv4>>> {
    let qubes = &raw.qubes.items;
    let netvm = &links.netvm;
    let mut address: Vec<Option<Ipv4>> = vec![None; qubes.len()];
    let mut ok = true;
    // Addresses as given, with the qube that has each.
    let mut taken: Vec<(Ipv4, usize)> = Vec::new();
    for (i, q) in qubes.iter().enumerate() {
        let Some((value, span)) = q.text("ip") else {
            ok &= q.absent("ip");
            continue;
        };
        let key = q.key("ip");
        let a = match ip::ipv4(value) {
            Ok(a) => a,
            Err(why) => {
                let (mut message, mut hint) = not_address(value, why, "ip = \"10.137.0.10\"");
                if value.contains('/') {
                    message = format!("{} has a prefix", hints::quoted(value));
                    hint = "write the address alone; the prefix comes from [network] clients"
                        .to_string();
                }
                d.push(text, Some(span), key, message, hint);
                ok = false;
                continue;
            }
        };
        // Where the qube stands decides first: an address off a router's network is moot.
        if links.ok && netvm[i].is_none_or(|n| netvm[n].is_none()) {
            let (message, hint) = misplaced(raw, names, netvm, i, Misplaced::Address);
            d.push(text, Some(span), key, message, hint);
            ok = false;
            continue;
        }
        let Some(p) = params else {
            ok = false;
            continue;
        };
        let c = p.clients;
        let problem = if !c.contains(a) {
            Some(format!("{value} is outside the client network {c}"))
        } else if a == c.network() {
            Some(format!("{value} is the network address of {c}"))
        } else if a == c.broadcast() {
            Some(format!("{value} is the broadcast address of {c}"))
        } else if a == p.gateway {
            Some(format!("{value} is the gateway's address"))
        } else if p.dns.contains(&a) {
            Some(format!("{value} is a virtual DNS address"))
        } else if let Some((_, j)) = taken.iter().find(|(t, _)| *t == a) {
            Some(format!(
                "{value} is already the address of {}",
                qubes[*j].path
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            let hint = match free(p, &taken) {
                Some(f) => format!(
                    "use a free address of {c} other than the gateway {}, e.g. ip = \"{}\", or \
                     leave ip out to get the next free one",
                    ip::show(p.gateway),
                    ip::show(f)
                ),
                None => format!("{c} has no free address left: use a larger [network] clients"),
            };
            d.push(text, Some(span), key, message, hint);
            ok = false;
            continue;
        }
        taken.push((a, i));
        address[i] = Some(a);
    }
    if !ok || !links.ok {
        return None;
    }
    let p = params?;
    for (i, q) in qubes.iter().enumerate() {
        let behind_router = netvm[i].is_some_and(|n| netvm[n].is_some());
        if !behind_router || address[i].is_some() {
            continue;
        }
        match free(p, &taken) {
            Some(a) => {
                taken.push((a, i));
                address[i] = Some(a);
            }
            None => {
                let message = format!(
                    "no free address left in the client network {} for \"{}\"",
                    p.clients,
                    names[i].unwrap_or("?")
                );
                let hint = "use a larger network, e.g. [network] clients = \"10.137.0.0/24\"";
                let span = q.text("netvm").map(|(_, s)| s);
                d.push(text, span, q.key("netvm"), message, hint);
                ok = false;
            }
        }
    }
    ok.then_some(address)
}

/// The lowest address of the client network that is not the gateway, a DNS address or taken.
fn free(p: &Params, taken: &[(Ipv4, usize)]) -> Option<Ipv4> {
    p.clients
        .hosts()
        .find(|a| *a != p.gateway && !p.dns.contains(a) && !taken.iter().any(|(t, _)| t == a))
}

/// The configuration blob of every qube that has a netvm or clients, by qube index. Fails
/// only if a checked value does not fit the blob, which the checks rule out.
pub(super) fn configs(plan: &Plan, names: &[String]) -> Result<Vec<(usize, QubeConfig)>, String> {
    let text = |s: &str| {
        heapless::String::try_from(s).map_err(|_| format!("name {s:?} does not fit the blob"))
    };
    let dns: heapless::Vec<Ipv4, 2> = heapless::Vec::from_slice(&plan.params.dns)
        .map_err(|_| "more than two DNS addresses".to_string())?;
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let clients: Vec<usize> = (0..names.len())
            .filter(|j| plan.netvm[*j] == Some(i))
            .collect();
        if plan.netvm[i].is_none() && clients.is_empty() {
            continue;
        }
        let mut config = QubeConfig::empty();
        if plan.netvm[i].is_some() {
            let address = plan.address[i];
            config.uplink = Some(Uplink {
                channel: text(&channel_name(name))?,
                address,
                prefix_len: plan.params.clients.prefix_len,
                gateway: if address.is_some() {
                    plan.params.gateway
                } else {
                    [0; 4]
                },
                dns: if address.is_some() {
                    dns.clone()
                } else {
                    heapless::Vec::new()
                },
            });
        }
        for j in &clients {
            let rules = heapless::Vec::from_slice(&plan.rules[*j])
                .map_err(|_| format!("too many rules for {:?}", names[*j]))?;
            let client = Downstream {
                qube: text(&names[*j])?,
                channel: text(&channel_name(&names[*j]))?,
                address: plan.address[*j],
                rules,
            };
            config
                .downstream
                .push(client)
                .map_err(|_| format!("too many clients of {name:?}"))?;
        }
        if plan.netvm[i].is_some() && !clients.is_empty() {
            config.router = Some(Router {
                gateway: plan.params.gateway,
                virtual_dns: dns.clone(),
                upstream_dns: plan.params.upstream_dns,
            });
        }
        out.push((i, config));
    }
    Ok(out)
}

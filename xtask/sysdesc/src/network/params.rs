//! `[network]`: the client network behind the routers, its gateway and DNS addresses, with
//! Qubes' defaults.

use crate::diagnostics::Diagnostics;
use crate::hints;
use crate::ip::{self, Net, NotAddress, NotNet};
use crate::schema::{Raw, Section};
use bulkhead_qubeconfig::Ipv4;
use std::ops::Range;

/// Port DNS is forwarded to when `upstream_dns` names none.
const DNS_PORT: u16 = 53;

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
pub(super) fn not_address(value: &str, why: NotAddress, example: &str) -> (String, String) {
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
pub(crate) fn params(raw: &Raw, text: &str, d: &mut Diagnostics) -> Option<Params> {
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
        None if n.absent("dns") => default_dns(n, defaults.dns, gateway, clients, text, d),
        None => None,
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

/// Qubes' virtual DNS addresses, when `dns` is not written: the gateway (written, or the
/// first address of `clients`) must not be one of them, or the routers would answer DNS and
/// route on one address. Reported at the gateway if written, else at the clients network.
fn default_dns(
    n: &Section,
    defaults: Vec<Ipv4>,
    gateway: Option<Ipv4>,
    clients: Option<Net>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Vec<Ipv4>> {
    let g = gateway?;
    if !defaults.contains(&g) {
        return Some(defaults);
    }
    let shown: Vec<String> = defaults.iter().map(|a| ip::show(*a)).collect();
    let shown = shown.join(" and ");
    let other_dns = "or name other virtual DNS addresses, e.g. dns = [\"10.139.2.1\", \
                     \"10.139.2.2\"]";
    let (key, span, message, hint) = match (n.text("gateway"), clients) {
        (Some((_, span)), _) => (
            "gateway",
            span,
            format!(
                "gateway {} is also a virtual DNS address (without dns, {shown})",
                ip::show(g)
            ),
            format!("choose another gateway, {other_dns}"),
        ),
        (None, Some(c)) => (
            "clients",
            n.text("clients").map_or(0..0, |(_, s)| s),
            format!(
                "the gateway of {c} is its first address, {}, which is also a virtual DNS \
                 address (without dns, {shown})",
                ip::show(g)
            ),
            format!(
                "use another client network, e.g. clients = \"10.137.0.0/24\" (Qubes'), write \
                 gateway = \"...\" with another address of {c}, {other_dns}"
            ),
        ),
        (None, None) => return None,
    };
    d.fail(text, Some(span), n.key(key), message, hint)
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

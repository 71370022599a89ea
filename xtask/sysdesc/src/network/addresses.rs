//! The addresses of the qubes behind a router: as written (`ip`), checked against the client
//! network, or handed out in order.

use super::params::not_address;
use super::{Links, Misplaced, Params, misplaced};
use crate::diagnostics::Diagnostics;
use crate::schema::Raw;
use crate::{hints, ip};
use bulkhead_qubeconfig::Ipv4;

/// Each qube's address: as given by `ip`, or the next free one of the client network for a
/// qube behind a router without one. `None` when an address is wrong or the network is full.
pub(super) fn addresses(
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

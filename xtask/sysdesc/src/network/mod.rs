//! Networking in Qubes' terms. A qube's `netvm` is the qube it reaches the network through;
//! the compiler joins the two with a channel (`<client>.net`, side A the netvm). A netvm
//! without a netvm of its own owns the network card (sys-net) and bridges it to its one
//! client; a netvm with a netvm routes for its clients (sys-firewall): they get addresses in
//! the client network (`[network]`) and their `[[qube.rule]]` firewall rules are enforced
//! there. Each qube on a link gets a configuration blob ([`QubeConfig`]) saying all this.

mod addresses;
mod links;
mod params;

pub(crate) use links::{Links, links};
pub use params::Params;
pub(crate) use params::params;

use addresses::addresses;

use super::compile::blob_name;
use super::diagnostics::Diagnostics;
use super::rules;
use super::schema::Raw;
use bulkhead_qubeconfig::{Downstream, Ipv4, QubeConfig, Router, Rule, Uplink};

/// What the automatic channel of a qube is called after: `<qube>.net`. User channels cannot
/// have a `.` in their names, so the two never clash.
const CHANNEL_SUFFIX: &str = ".net";
/// The purpose of automatic channels.
const PURPOSE: &str = "network";

/// The name of the channel between `qube` and its netvm.
pub(crate) fn channel_name(qube: &str) -> String {
    format!("{qube}{CHANNEL_SUFFIX}")
}

/// The network as checked: who is whose netvm, the clients' addresses and rules.
pub(crate) struct Plan {
    pub netvm: Vec<Option<usize>>,
    /// The address of each qube behind a router.
    pub address: Vec<Option<Ipv4>>,
    /// The firewall rules of each qube behind a router (empty: accept everything).
    pub rules: Vec<Vec<Rule>>,
    pub params: Params,
}

/// Checks every qube's rules and address against its place in the network and assigns the
/// missing addresses. `None` when something is wrong (reported).
pub(crate) fn plan(
    raw: &Raw,
    links: &Links,
    params: Option<Params>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Plan> {
    let qubes = &raw.qubes.items;
    let names = raw.qubes.item_names();
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

/// The configuration blob of every qube that has a netvm or clients, by qube index. Fails
/// only if a checked value does not fit the blob, which the checks rule out.
pub(crate) fn configs(plan: &Plan, names: &[String]) -> Result<Vec<(usize, QubeConfig)>, String> {
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
                channel: blob_name(&channel_name(name))?,
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
                qube: blob_name(&names[*j])?,
                channel: blob_name(&channel_name(&names[*j]))?,
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

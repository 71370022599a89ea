//! sys-firewall: routes every client qube's traffic to sys-net under Qubes-style per-client
//! rules, masquerading it behind the uplink address, forwarding DNS and keeping clients
//! apart. The decisions are `bulkhead-firewall-engine`'s; this image reads the
//! configuration, opens the channels and moves frames between them and the engine. See
//! README.md for what it logs and what it does not do.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod drops;
mod ports;
mod show;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use bulkhead_firewall_engine::{Dotted, Firewall};
use bulkhead_freestanding as _;
use bulkhead_qubeconfig::{QubeConfig, Router};
use bulkhead_rt::channel::Channel;
use bulkhead_rt::net::NetLink;
use bulkhead_rt::{Boot, error, info, warn};

bulkhead_rt::entry!(main);

/// Exit status when the configuration blob is unreadable or inconsistent.
const BAD_CONFIG: i32 = 5;

/// Opens the channel `name` as a network link (our `Hello` goes out at once).
fn open(boot: &Boot, name: &str, what: &str) -> Option<NetLink> {
    match Channel::open_named(boot, name) {
        Ok(ch) => Some(NetLink::new(ch, boot.name())),
        Err(e) => {
            error!("firewall: cannot open the channel {name} to {what}: {e}; it is left out");
            None
        }
    }
}

fn main(boot: &Boot) -> i32 {
    let config = match boot.config() {
        [] => QubeConfig::empty(),
        blob => match QubeConfig::decode(blob) {
            Ok(c) => c,
            Err(e) => {
                error!("firewall: {e}");
                return BAD_CONFIG;
            }
        },
    };
    let router = match (&config.router, config.downstream.is_empty()) {
        (Some(r), _) => r.clone(),
        (None, true) => Router {
            gateway: [0; 4],
            virtual_dns: heapless::Vec::new(),
            upstream_dns: None,
        },
        (None, false) => {
            error!("firewall: the configuration has clients but no router addresses");
            return BAD_CONFIG;
        }
    };
    // The connection table's hash is keyed by the boot time, which no client can read.
    let seed = bulkhead_rt::now_ns() ^ 0x9e37_79b9_7f4a_7c15;
    let fw = match Firewall::with_seed(&config.downstream, &router, seed) {
        Ok(fw) => Box::new(fw),
        Err(e) => {
            error!("firewall: {e}");
            return BAD_CONFIG;
        }
    };

    let uplink = match &config.uplink {
        Some(u) => open(boot, u.channel.as_str(), "sys-net"),
        None => {
            warn!("firewall: no uplink in the configuration: clients reach only each other");
            None
        }
    };
    let mut clients = Vec::new();
    let mut names = Vec::new();
    for d in &config.downstream {
        clients.push(open(boot, d.channel.as_str(), d.qube.as_str()));
        let mut who = String::from("client ");
        who.push_str(d.qube.as_str());
        names.push(who);
    }
    if config.downstream.is_empty() {
        info!("firewall: no client qube names this one as its netvm: nothing to route");
    } else {
        info!(
            "firewall: {} client(s), gateway {}, virtual DNS {}, DNS forwarded to {}",
            config.downstream.len(),
            Dotted(router.gateway),
            show::Addrs(&router.virtual_dns),
            show::Upstream(router.upstream_dns)
        );
    }
    for d in &config.downstream {
        info!(
            "firewall: client {} at {} on {}, {}",
            d.qube,
            show::Addr(d.address),
            d.channel,
            show::Rules(d.rules.len())
        );
    }
    bulkhead_rt::ready();
    ports::Ports::new(fw, uplink, clients, names).run()
}

//! The sys-firewall engine: Qubes-style per-client rules, masquerading with connection
//! tracking, DNS forwarding and ARP, on Ethernet II frames between the uplink (the channel
//! to sys-net, which bridges frames to the card) and the clients (one channel each).
//!
//! It is a pure state machine: a frame goes in with the port it came from and the time,
//! the frames it causes come out through a callback, and nothing else happens. Timers (ARP
//! retries, connection expiry) run in [`Firewall::poll`]. No input makes it panic; every
//! frame it does not forward is counted under a [`DropReason`].
//!
//! ```
//! use bulkhead_firewall_engine::{Firewall, Port, Verdict};
//! # let (downstream, router) = (heapless::Vec::<bulkhead_qubeconfig::Downstream, 16>::new(),
//! #     bulkhead_qubeconfig::Router { gateway: [10, 137, 0, 1], virtual_dns: heapless::Vec::new(),
//! #     upstream_dns: None });
//! let mut fw = Firewall::new(&downstream, &router).unwrap();
//! let verdict = fw.handle(Port::Uplink, &[0u8; 10], 0, &mut |_port, _frame| {});
//! assert!(matches!(verdict, Verdict::Dropped { .. }));
//! ```
//!
//! Storage is allocated once, in [`Firewall::new`] (about 0.6 MiB: the connection table and
//! the ARP queue); nothing is allocated afterwards.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod checksum;
mod conntrack;
mod neighbour;
mod packet;
pub mod rules;
mod stats;

use crate::conntrack::{Conn, Dir, Key, UPLINK};
use crate::neighbour::{Found, Neighbours};
use crate::packet::{
    ETH_HEADER, Eth, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, IP_HEADER, Ip,
    L4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN,
};
use crate::rules::{Decision, Flow};
use alloc::boxed::Box;
use alloc::vec::Vec;
use bulkhead_qubeconfig::{MAX_DOWNSTREAM, Rule};
use core::fmt;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetProtocol, Ipv4Address,
};

pub use crate::packet::{Dotted, Summary};
pub use crate::stats::{DropReason, Stats};
pub use bulkhead_abi::proto::UplinkInfo;
pub use bulkhead_qubeconfig::{Downstream, Router};

/// An IPv4 address, network byte order.
pub type Ipv4 = [u8; 4];
/// An Ethernet address.
pub type Mac = [u8; 6];

/// The MAC the firewall uses towards every client (the address Qubes gives the netvm side
/// of a client's interface).
pub const ROUTER_MAC: Mac = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];
/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];
/// Longest frame handled (Ethernet II without FCS, no jumbo frames).
pub const MAX_FRAME: usize = bulkhead_abi::proto::MAX_FRAME;
/// Connections tracked at once. Each client is guaranteed an equal share of them
/// ([`Firewall::connection_share`]) that no other client can take; a full table drops
/// unanswered entries first (the README says how).
pub const MAX_CONNECTIONS: usize = 8192;

/// Timers, in milliseconds.
pub mod timeouts {
    /// A TCP connection whose SYN has not been answered.
    pub const TCP_SYN_SENT_MS: u64 = 120_000;
    /// An established TCP connection without traffic.
    pub const TCP_ESTABLISHED_MS: u64 = 2 * 3600 * 1000;
    /// After a FIN in one direction.
    pub const TCP_FIN_WAIT_MS: u64 = 300_000;
    /// After FINs in both directions.
    pub const TCP_TIME_WAIT_MS: u64 = 120_000;
    /// After a RST.
    pub const TCP_CLOSED_MS: u64 = 10_000;
    /// A UDP flow the peer has not answered.
    pub const UDP_MS: u64 = 30_000;
    /// A UDP flow the peer has answered.
    pub const UDP_REPLIED_MS: u64 = 180_000;
    /// An ICMP echo exchange.
    pub const ICMP_MS: u64 = 30_000;
    /// Between ARP requests for a next hop.
    pub const ARP_RETRY_MS: u64 = 1_000;
    /// ARP requests before a next hop is given up (its queued packets are dropped).
    pub const ARP_TRIES: u8 = 3;
    /// Age at which a cached uplink neighbour is confirmed again (it stays in use).
    pub const ARP_REFRESH_MS: u64 = 60_000;
    /// Age at which a cached uplink neighbour is forgotten.
    pub const ARP_EXPIRE_MS: u64 = 120_000;
    /// Between sweeps of the connection table.
    pub const SWEEP_MS: u64 = 1_000;
}

/// Where a frame comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// The channel to sys-net.
    Uplink,
    /// The channel to client `i` (its position in `QubeConfig::downstream`).
    Client(usize),
}

impl Port {
    fn code(self) -> u8 {
        match self {
            Port::Uplink => UPLINK,
            Port::Client(i) => i as u8 + 1,
        }
    }

    fn from_code(code: u8) -> Port {
        match code {
            UPLINK => Port::Uplink,
            c => Port::Client(usize::from(c) - 1),
        }
    }
}

/// What became of a frame given to [`Firewall::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent on (possibly translated).
    Forwarded,
    /// Waiting for the next hop's ARP answer; [`Firewall::poll`] sends or drops it.
    Queued,
    /// Answered by the firewall itself (ARP, ICMP echo to its addresses).
    Answered,
    /// Taken in without an answer (an ARP message it learned from).
    Consumed,
    /// Dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The packet's addresses, when it got far enough to have them.
        packet: Option<Summary>,
    },
}

/// Why a configuration cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Client `i` has no address.
    NoAddress(usize),
    /// Client `i` has the same address as an earlier client.
    DuplicateAddress(usize),
    /// Client `i`'s address is the gateway or a virtual DNS address.
    RouterAddress(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAddress(i) => write!(f, "client {i} has no address"),
            ConfigError::DuplicateAddress(i) => {
                write!(f, "client {i} has the address of another client")
            }
            ConfigError::RouterAddress(i) => {
                write!(f, "client {i} has the gateway's or a virtual DNS address")
            }
        }
    }
}

/// A drop, before it is counted.
struct Refused(DropReason, Option<Summary>);

impl From<DropReason> for Refused {
    fn from(r: DropReason) -> Refused {
        Refused(r, None)
    }
}

type Outcome = Result<Verdict, Refused>;

/// One client.
struct Client {
    addr: Ipv4,
    mac: Option<Mac>,
    rules: Vec<Rule>,
}

/// The uplink as sys-net reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Uplink {
    mac: Mac,
    addr: Ipv4,
    prefix_len: u8,
    gateway: Option<Ipv4>,
    dns: Option<Ipv4>,
    /// The network's network and broadcast addresses (a /31 or /32 has neither).
    ends: Option<(u32, u32)>,
}

impl Uplink {
    fn on_link(&self, ip: Ipv4) -> bool {
        let len = u32::from(self.prefix_len);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from_be_bytes(ip) & mask == u32::from_be_bytes(self.addr) & mask
    }

    /// The network and broadcast addresses of a network (none for a /31 or /32).
    fn ends(addr: Ipv4, prefix_len: u8) -> Option<(u32, u32)> {
        let len = u32::from(prefix_len);
        if len > 30 {
            return None;
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = u32::from_be_bytes(addr) & mask;
        Some((net, net | !mask))
    }

    /// Whether `dst` is the broadcast or the network address of the uplink's network.
    fn broadcast_or_network(&self, dst: Ipv4) -> bool {
        let d = u32::from_be_bytes(dst);
        self.ends.is_some_and(|(net, bcast)| d == net || d == bcast)
    }

    /// The next hop towards `dst`.
    fn next_hop(&self, dst: Ipv4) -> Option<Ipv4> {
        if self.on_link(dst) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

/// The firewall.
pub struct Firewall {
    clients: Vec<Client>,
    gateway: Ipv4,
    virtual_dns: heapless::Vec<Ipv4, 2>,
    upstream_dns: Option<(Ipv4, u16)>,
    uplink: Option<Uplink>,
    last_uplink_addr: Option<Ipv4>,
    conns: conntrack::Table,
    neigh: Neighbours,
    stats: Stats,
    next_sweep: u64,
    buf: Box<[u8; MAX_FRAME]>,
}

/// The seed [`Firewall::new`] uses for the connection table's hash.
const DEFAULT_SEED: u64 = 0x5eed_f12e_ba11_0000 ^ 0x2545_f491_4f6c_dd1d;

impl Firewall {
    /// A firewall for `downstream` clients behind `router`, with a fixed hash seed.
    pub fn new(downstream: &[Downstream], router: &Router) -> Result<Firewall, ConfigError> {
        Firewall::with_seed(downstream, router, DEFAULT_SEED)
    }

    /// As [`Firewall::new`], with the connection table's hash keyed by `seed` (pass
    /// something a client cannot guess, such as the boot time, so it cannot choose flows
    /// that collide).
    pub fn with_seed(
        downstream: &[Downstream],
        router: &Router,
        seed: u64,
    ) -> Result<Firewall, ConfigError> {
        Firewall::with_capacity(downstream, router, seed, MAX_CONNECTIONS)
    }

    /// As [`Firewall::with_seed`], with a connection table of `connections` entries (at
    /// most 65535) instead of [`MAX_CONNECTIONS`]: tests and the fuzz target use a small
    /// one to reach a full table quickly.
    pub fn with_capacity(
        downstream: &[Downstream],
        router: &Router,
        seed: u64,
        connections: usize,
    ) -> Result<Firewall, ConfigError> {
        let mut clients = Vec::with_capacity(downstream.len().min(MAX_DOWNSTREAM));
        for (i, d) in downstream.iter().enumerate().take(MAX_DOWNSTREAM) {
            let addr = d.address.ok_or(ConfigError::NoAddress(i))?;
            if addr == router.gateway || router.virtual_dns.contains(&addr) {
                return Err(ConfigError::RouterAddress(i));
            }
            if clients.iter().any(|c: &Client| c.addr == addr) {
                return Err(ConfigError::DuplicateAddress(i));
            }
            clients.push(Client {
                addr,
                mac: None,
                rules: d.rules.iter().copied().collect(),
            });
        }
        let n = clients.len();
        Ok(Firewall {
            clients,
            gateway: router.gateway,
            virtual_dns: router.virtual_dns.clone(),
            upstream_dns: router.upstream_dns,
            uplink: None,
            last_uplink_addr: None,
            conns: conntrack::Table::new(connections, n, seed),
            neigh: Neighbours::new(),
            stats: Stats::default(),
            next_sweep: 0,
            buf: Box::new([0; MAX_FRAME]),
        })
    }

    /// Sets what sys-net reported about the uplink; `None` while it is down (traffic to the
    /// uplink is dropped). A new uplink address forgets the masqueraded connections of the
    /// old one; any change forgets the uplink's ARP cache.
    pub fn set_uplink(&mut self, info: Option<&UplinkInfo>) {
        let new = info.map(|i| Uplink {
            mac: i.mac,
            addr: i.address,
            prefix_len: i.prefix_len.min(32),
            gateway: i.gateway,
            dns: i.dns.first().copied(),
            ends: Uplink::ends(i.address, i.prefix_len.min(32)),
        });
        if new == self.uplink {
            return;
        }
        let waiting = self.neigh.clear_port(Port::Uplink);
        self.stats.drop(DropReason::UplinkDown, waiting as u64);
        self.neigh.clear_cache();
        if let Some(u) = &new {
            if self.last_uplink_addr.is_some_and(|a| a != u.addr) {
                self.conns.remove_where(|c| c.reply.port == UPLINK);
            }
            self.last_uplink_addr = Some(u.addr);
        }
        self.uplink = new;
        self.refresh_stats();
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The connections each client is guaranteed: the table's capacity divided among the
    /// configured clients.
    pub fn connection_share(&self) -> usize {
        self.conns.share()
    }

    /// The connections client `i` holds now.
    pub fn connections_of(&self, i: usize) -> usize {
        self.conns.held(i)
    }

    /// When [`Firewall::poll`] next has something to do (an ARP retry or a sweep of the
    /// connection table), if anything.
    pub fn next_deadline(&self) -> Option<u64> {
        let arp = self.neigh.pending().iter().map(|p| p.next_try).min();
        let sweep = (self.conns.len() > 0).then_some(self.next_sweep);
        match (arp, sweep) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        }
    }

    /// Handles one frame from `from` at `now_ms` (a monotonic clock); the frames it causes
    /// go to `out`.
    pub fn handle<O: FnMut(Port, &[u8])>(
        &mut self,
        from: Port,
        frame: &[u8],
        now_ms: u64,
        out: &mut O,
    ) -> Verdict {
        let verdict = match self.dispatch(from, frame, now_ms, out) {
            Ok(v) => v,
            Err(Refused(reason, packet)) => Verdict::Dropped { reason, packet },
        };
        let s = &mut self.stats;
        match verdict {
            Verdict::Forwarded => s.forwarded += 1,
            Verdict::Queued => s.queued += 1,
            Verdict::Answered => s.answered += 1,
            Verdict::Consumed => s.consumed += 1,
            Verdict::Dropped { reason, .. } => s.drop(reason, 1),
        }
        self.refresh_stats();
        verdict
    }

    /// Runs the timers: ARP retries (and giving up on next hops that do not answer, dropping
    /// their queued packets), expiry of the ARP cache and of connections.
    pub fn poll<O: FnMut(Port, &[u8])>(&mut self, now_ms: u64, out: &mut O) {
        let mut k = 0;
        while let Some(p) = self.neigh.pending().get(k) {
            let (port, ip, tries, due) = (p.port, p.ip, p.tries, p.next_try);
            if due > now_ms {
                k += 1;
            } else if tries >= timeouts::ARP_TRIES {
                let n = self.neigh.finish(port, ip, None, &mut |_, _| {});
                self.stats.drop(DropReason::Unresolved, n as u64);
            } else {
                self.arp_request(port, ip, out);
                self.neigh.retried(k, now_ms);
                k += 1;
            }
        }
        self.neigh.expire(now_ms);
        if now_ms >= self.next_sweep {
            self.conns.sweep(now_ms);
            self.next_sweep = now_ms.saturating_add(timeouts::SWEEP_MS);
        }
        self.refresh_stats();
    }

    fn refresh_stats(&mut self) {
        self.stats.connections = self.conns.len();
        self.stats.connections_expired = self.conns.expired;
        self.stats.connections_created = self.conns.created;
        self.stats.connections_evicted = self.conns.evicted;
    }

    fn dispatch<O: FnMut(Port, &[u8])>(
        &mut self,
        from: Port,
        frame: &[u8],
        now: u64,
        out: &mut O,
    ) -> Outcome {
        if frame.len() > MAX_FRAME {
            return Err(DropReason::TooLarge.into());
        }
        let eth = packet::ethernet(frame)?;
        match from {
            Port::Client(i) if i >= self.clients.len() => Err(DropReason::UnknownPort.into()),
            Port::Client(i) => match eth.ethertype {
                EthernetProtocol::Arp if eth.dst == ROUTER_MAC || eth.dst == BROADCAST => {
                    self.client_arp(i, &frame[ETH_HEADER..], out)
                }
                EthernetProtocol::Ipv4 if eth.dst == ROUTER_MAC => {
                    self.client_ipv4(i, &eth, frame, now, out)
                }
                EthernetProtocol::Arp | EthernetProtocol::Ipv4 => Err(DropReason::NotForUs.into()),
                EthernetProtocol::Ipv6 => Err(DropReason::Ipv6.into()),
                _ => Err(DropReason::Ethertype.into()),
            },
            Port::Uplink => {
                let Some(up) = self.uplink.clone() else {
                    return Err(DropReason::UplinkDown.into());
                };
                match eth.ethertype {
                    EthernetProtocol::Arp if eth.dst == up.mac || eth.dst == BROADCAST => {
                        self.uplink_arp(&up, &frame[ETH_HEADER..], now, out)
                    }
                    EthernetProtocol::Ipv4 if eth.dst == up.mac => {
                        self.uplink_ipv4(&up, frame, now, out)
                    }
                    EthernetProtocol::Arp | EthernetProtocol::Ipv4 => {
                        Err(DropReason::NotForUs.into())
                    }
                    EthernetProtocol::Ipv6 => Err(DropReason::Ipv6.into()),
                    _ => Err(DropReason::Ethertype.into()),
                }
            }
        }
    }

    // ---- ARP ----

    /// An ARP message from client `i`: learn its MAC; answer requests for any address but
    /// its own with ours (proxy ARP).
    fn client_arp<O: FnMut(Port, &[u8])>(
        &mut self,
        i: usize,
        bytes: &[u8],
        out: &mut O,
    ) -> Outcome {
        let (op, sha, spa, tpa) = parse_arp(bytes)?;
        let own = self.clients[i].addr;
        if spa == [0; 4] {
            // An address probe (RFC 5227): nobody else owns the client's addresses.
            return Ok(Verdict::Consumed);
        }
        if spa != own {
            let summary = Summary {
                proto: 0,
                src: spa,
                dst: tpa,
                sport: 0,
                dport: 0,
            };
            return Err(Refused(DropReason::Spoofed, Some(summary)));
        }
        self.learn_client(i, sha, out);
        match op {
            ArpOperation::Request if tpa != own => {
                let f = arp_frame(ArpOperation::Reply, ROUTER_MAC, tpa, sha, spa);
                out(Port::Client(i), &f);
                Ok(Verdict::Answered)
            }
            _ => Ok(Verdict::Consumed),
        }
    }

    /// Records client `i`'s MAC and sends what waited for it.
    fn learn_client<O: FnMut(Port, &[u8])>(&mut self, i: usize, mac: Mac, out: &mut O) {
        let c = &mut self.clients[i];
        if c.mac == Some(mac) {
            return;
        }
        c.mac = Some(mac);
        let addr = c.addr;
        let n = self.neigh.finish(Port::Client(i), addr, Some(mac), out);
        self.stats.forwarded += n as u64;
    }

    /// An ARP message on the uplink: answer requests for our address, learn neighbours we
    /// asked for or already know.
    ///
    /// A sender on the uplink's prefix is a neighbour: its requests for our address are
    /// answered, and it is learnt from those, from replies and from any ARP once known. Off
    /// the prefix (the gateway of a /32 lease), a sender is learnt only from a reply to our
    /// address answering a request of ours about it, and only the gateway's requests for
    /// our address are answered (Linux answers them through the lease's on-link route);
    /// any other off-prefix ARP is not ours.
    fn uplink_arp<O: FnMut(Port, &[u8])>(
        &mut self,
        up: &Uplink,
        bytes: &[u8],
        now: u64,
        out: &mut O,
    ) -> Outcome {
        let (op, sha, spa, tpa) = parse_arp(bytes)?;
        let for_us = op == ArpOperation::Request && tpa == up.addr;
        let valid = spa != up.addr && spa != [0; 4];
        let on_link = valid && up.on_link(spa);
        let from_gateway = valid && up.gateway == Some(spa);
        let answers_us =
            valid && op == ArpOperation::Reply && tpa == up.addr && self.neigh.asked(spa);
        let mut learned = false;
        if answers_us
            || (for_us && from_gateway)
            || on_link
                && (for_us || self.neigh.known(spa) || self.neigh.is_pending(Port::Uplink, spa))
        {
            self.neigh.learn(spa, sha, now);
            let n = self.neigh.finish(Port::Uplink, spa, Some(sha), out);
            self.stats.forwarded += n as u64;
            learned = true;
        }
        if for_us && (on_link || from_gateway) {
            let f = arp_frame(ArpOperation::Reply, up.mac, up.addr, sha, spa);
            out(Port::Uplink, &f);
            Ok(Verdict::Answered)
        } else if learned {
            Ok(Verdict::Consumed)
        } else {
            Err(DropReason::NotForUs.into())
        }
    }

    /// Asks who has `ip` on `port`.
    fn arp_request<O: FnMut(Port, &[u8])>(&mut self, port: Port, ip: Ipv4, out: &mut O) {
        let (mac, addr) = match port {
            Port::Uplink => match &self.uplink {
                Some(u) => (u.mac, u.addr),
                None => return,
            },
            Port::Client(_) => (ROUTER_MAC, self.gateway),
        };
        let f = arp_frame(ArpOperation::Request, mac, addr, BROADCAST, ip);
        out(port, &f);
        self.stats.arp_requests += 1;
    }

    // ---- IPv4 from a client ----

    fn client_ipv4<O: FnMut(Port, &[u8])>(
        &mut self,
        i: usize,
        eth: &Eth,
        frame: &[u8],
        now: u64,
        out: &mut O,
    ) -> Outcome {
        let ip = packet::ipv4(&frame[ETH_HEADER..])?;
        let summary = Some(ip.summary());
        let refuse = |r: DropReason| Err(Refused(r, summary));
        let own = self.clients[i].addr;
        if ip.src != own {
            return refuse(DropReason::Spoofed);
        }
        if packet::is_unicast(eth.src) {
            self.learn_client(i, eth.src, out);
        }
        if invalid_tcp(&ip) {
            return refuse(DropReason::InvalidTcp);
        }
        let (_, dport) = ip.ports();
        let transport = matches!(ip.l4, L4::Tcp { .. } | L4::Udp { .. });
        let dns = self.virtual_dns.contains(&ip.dst) && transport && dport == 53;
        let to_uplink_addr = self.uplink.as_ref().is_some_and(|u| u.addr == ip.dst);
        if !dns && (ip.dst == self.gateway || self.virtual_dns.contains(&ip.dst) || to_uplink_addr)
        {
            return match ip.l4 {
                L4::Icmp {
                    ty: ICMP_ECHO_REQUEST,
                    ..
                } if packet::is_unicast(eth.src) => {
                    // Answered only when intact (the reply would carry a corrupted request's
                    // payload back with a checksum updated from a wrong one).
                    let icmp = &frame[ETH_HEADER + IP_HEADER..ETH_HEADER + ip.total_len];
                    if checksum::compute(icmp) != 0 {
                        return refuse(DropReason::BadChecksum);
                    }
                    Ok(self.answer_echo(i, eth, frame, &ip, out))
                }
                _ => refuse(DropReason::ToFirewall),
            };
        }
        if !routable(ip.dst) || ip.dst == own {
            return refuse(DropReason::NotRoutable);
        }
        if let Some(up) = &self.uplink
            && up.broadcast_or_network(ip.dst)
        {
            return refuse(DropReason::Broadcast);
        }
        if ip.ttl <= 1 {
            return refuse(DropReason::TtlExceeded);
        }
        let port = Port::Client(i).code();
        // A reply within a connection another client opened to this one.
        if let Some(key) = key_of(port, &ip, Dir::Reply)
            && let Some(slot) = self.conns.lookup_reply(&key, now)
        {
            return self
                .forward(slot, Dir::Reply, frame, &ip, now, out)
                .map_err(|r| Refused(r, summary));
        }
        let key = key_of(port, &ip, Dir::Orig);
        if let Some(k) = &key
            && let Some(slot) = self.conns.lookup_orig(k, now)
        {
            return self
                .forward(slot, Dir::Orig, frame, &ip, now, out)
                .map_err(|r| Refused(r, summary));
        }
        self.open(i, key, dns, frame, &ip, now, out)
            .map_err(|r| Refused(r, summary))
    }

    /// Decides and opens a new connection from client `i`, and forwards its first packet.
    #[allow(clippy::too_many_arguments)]
    fn open<O: FnMut(Port, &[u8])>(
        &mut self,
        i: usize,
        key: Option<Key>,
        dns: bool,
        frame: &[u8],
        ip: &Ip,
        now: u64,
        out: &mut O,
    ) -> Result<Verdict, DropReason> {
        let target = self.clients.iter().position(|c| c.addr == ip.dst);
        let flow = Flow {
            proto: ip.proto,
            dst: ip.dst,
            dport: match ip.l4 {
                L4::Tcp { dport, .. } | L4::Udp { dport, .. } => Some(dport),
                _ => None,
            },
            icmp_type: match ip.l4 {
                L4::Icmp { ty, .. } => Some(ty),
                _ => None,
            },
        };
        match rules::decide(
            &self.clients[i].rules,
            &flow,
            &self.virtual_dns,
            target.is_some(),
        ) {
            Decision::Accept(_) => {}
            Decision::Drop(_) => return Err(DropReason::DroppedByRule),
            Decision::NoMatch => return Err(DropReason::NoRuleMatched),
            Decision::Isolated => return Err(DropReason::ClientIsolation),
        }
        let orig = key.ok_or(DropReason::Unsupported)?;
        if let L4::Tcp { flags, .. } = ip.l4
            && flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN
        {
            return Err(DropReason::NoConnection);
        }
        let conn = match target {
            Some(j) => Conn::new(orig, orig.reversed(Port::Client(j).code()), i as u8, now),
            None => {
                let up = self.uplink.as_ref().ok_or(DropReason::UplinkDown)?;
                let (dst, dport) = if dns {
                    self.upstream_dns
                        .or(up.dns.map(|d| (d, 53)))
                        .ok_or(DropReason::NoDnsServer)?
                } else {
                    (orig.dst, orig.dport)
                };
                up.next_hop(dst).ok_or(DropReason::NoRoute)?;
                let template = Key {
                    port: UPLINK,
                    proto: orig.proto,
                    src: dst,
                    sport: dport,
                    dst: up.addr,
                    dport: 0,
                };
                let nat = self
                    .conns
                    .free_port(template, orig.sport)
                    .ok_or(DropReason::PortsExhausted)?;
                let mut reply = template;
                reply.dport = nat;
                if orig.proto == PROTO_ICMP {
                    reply.sport = nat;
                }
                Conn::new(orig, reply, i as u8, now)
            }
        };
        let slot = self.conns.insert(conn, now)?;
        self.forward(slot, Dir::Orig, frame, ip, now, out)
    }

    /// Answers an ICMP echo request to one of the firewall's addresses.
    fn answer_echo<O: FnMut(Port, &[u8])>(
        &mut self,
        i: usize,
        eth: &Eth,
        frame: &[u8],
        ip: &Ip,
        out: &mut O,
    ) -> Verdict {
        let len = ETH_HEADER + ip.total_len;
        let b = &mut self.buf[..len];
        b.copy_from_slice(&frame[..len]);
        b[0..6].copy_from_slice(&eth.src);
        b[6..12].copy_from_slice(&ROUTER_MAC);
        let p = &mut b[ETH_HEADER..];
        p[8] = 64;
        p[12..16].copy_from_slice(&ip.dst);
        p[16..20].copy_from_slice(&ip.src);
        set_ip_checksum(p);
        let icmp = &mut p[IP_HEADER..];
        let old = u16::from_be_bytes([icmp[0], icmp[1]]);
        icmp[0] = packet::ICMP_ECHO_REPLY;
        let new = u16::from_be_bytes([icmp[0], icmp[1]]);
        let c = checksum::update16(get16(icmp, 2), old, new);
        put16(icmp, 2, c);
        out(Port::Client(i), b);
        Verdict::Answered
    }

    // ---- IPv4 from the uplink ----

    fn uplink_ipv4<O: FnMut(Port, &[u8])>(
        &mut self,
        up: &Uplink,
        frame: &[u8],
        now: u64,
        out: &mut O,
    ) -> Outcome {
        let ip = packet::ipv4(&frame[ETH_HEADER..])?;
        let summary = Some(ip.summary());
        let refuse = |r: DropReason| Err(Refused(r, summary));
        if ip.dst != up.addr {
            return refuse(DropReason::NotForUs);
        }
        if invalid_tcp(&ip) {
            return refuse(DropReason::InvalidTcp);
        }
        if let L4::Icmp { ty, .. } = ip.l4
            && matches!(ty, ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | 12)
        {
            return self
                .icmp_error(up, frame, &ip, now, out)
                .map_err(|r| Refused(r, summary));
        }
        let Some(key) = key_of(UPLINK, &ip, Dir::Reply) else {
            return refuse(DropReason::NoConnection);
        };
        let Some(slot) = self.conns.lookup_reply(&key, now) else {
            return refuse(DropReason::NoConnection);
        };
        if ip.ttl <= 1 {
            return refuse(DropReason::TtlExceeded);
        }
        self.forward(slot, Dir::Reply, frame, &ip, now, out)
            .map_err(|r| Refused(r, summary))
    }

    /// An ICMP error about a packet of a masqueraded connection: translated back like a
    /// reply (outer destination, and the quoted packet's addresses and ports).
    fn icmp_error<O: FnMut(Port, &[u8])>(
        &mut self,
        up: &Uplink,
        frame: &[u8],
        ip: &Ip,
        now: u64,
        out: &mut O,
    ) -> Result<Verdict, DropReason> {
        let len = ETH_HEADER + ip.total_len;
        let q = packet::quoted(&frame[ETH_HEADER + IP_HEADER..len])?;
        if q.src != up.addr {
            return Err(DropReason::NoConnection);
        }
        let key = Key {
            port: UPLINK,
            proto: q.proto,
            src: q.dst,
            sport: q.dport,
            dst: q.src,
            dport: q.sport,
        };
        let slot = self
            .conns
            .lookup_reply(&key, now)
            .ok_or(DropReason::NoConnection)?;
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        let c = *self.conns.get(slot).ok_or(DropReason::NoConnection)?;
        let client = usize::from(c.client);
        let b = &mut self.buf[..len];
        b.copy_from_slice(&frame[..len]);
        b[6..12].copy_from_slice(&ROUTER_MAC);
        let p = &mut b[ETH_HEADER..];
        p[8] = p[8].saturating_sub(1);
        p[16..20].copy_from_slice(&c.orig.src);
        set_ip_checksum(p);
        let icmp = &mut p[IP_HEADER..];
        let mut check = get16(icmp, 2);
        let inner = &mut icmp[8..];
        // The quoted IPv4 header: addresses and its own checksum.
        let inner_check = get16(inner, 10);
        let mut new_inner_check = checksum::update_addr(inner_check, q.src, c.orig.src);
        new_inner_check = checksum::update_addr(new_inner_check, q.dst, c.orig.dst);
        check = checksum::update_addr(check, q.src, c.orig.src);
        check = checksum::update_addr(check, q.dst, c.orig.dst);
        inner[12..16].copy_from_slice(&c.orig.src);
        inner[16..20].copy_from_slice(&c.orig.dst);
        put_word(inner, 10, new_inner_check, &mut check);
        // The quoted transport header: ports (and the UDP checksum, which is within the
        // quoted 8 bytes), or the echo identifier (and the echo's checksum).
        let t = &mut inner[IP_HEADER..];
        match q.proto {
            PROTO_UDP | PROTO_TCP => {
                let off = if q.proto == PROTO_UDP { 6 } else { 16 };
                if t.len() >= off + 2 {
                    let old = get16(t, off);
                    if !(q.proto == PROTO_UDP && old == 0) {
                        let mut n = checksum::update_addr(old, q.src, c.orig.src);
                        n = checksum::update_addr(n, q.dst, c.orig.dst);
                        n = checksum::update16(n, q.sport, c.orig.sport);
                        n = checksum::update16(n, q.dport, c.orig.dport);
                        if q.proto == PROTO_UDP && n == 0 {
                            n = 0xffff;
                        }
                        put_word(t, off, n, &mut check);
                    }
                }
                put_word(t, 0, c.orig.sport, &mut check);
                put_word(t, 2, c.orig.dport, &mut check);
            }
            _ => {
                let old = get16(t, 2);
                put_word(
                    t,
                    2,
                    checksum::update16(old, q.sport, c.orig.sport),
                    &mut check,
                );
                put_word(t, 4, c.orig.sport, &mut check);
            }
        }
        put16(icmp, 2, check);
        let next_hop = self.clients[client].addr;
        self.transmit(Port::Client(client), next_hop, len, now, out)
    }

    // ---- forwarding ----

    /// Forwards a packet of the connection in `slot` going `dir`: translate, decrement the
    /// TTL, fix the checksums, address the frame and send it (or queue it for ARP).
    fn forward<O: FnMut(Port, &[u8])>(
        &mut self,
        slot: usize,
        dir: Dir,
        frame: &[u8],
        ip: &Ip,
        now: u64,
        out: &mut O,
    ) -> Result<Verdict, DropReason> {
        let flags = match ip.l4 {
            L4::Tcp { flags, .. } => flags,
            _ => 0,
        };
        let c = self.conns.seen(slot, dir, flags, now)?;
        // The packet's new addresses, and where it goes.
        let (src, sport, dst, dport, egress) = match dir {
            Dir::Orig => (
                c.reply.dst,
                c.reply.dport,
                c.reply.src,
                c.reply.sport,
                Port::from_code(c.reply.port),
            ),
            Dir::Reply => (
                c.orig.dst,
                c.orig.dport,
                c.orig.src,
                c.orig.sport,
                Port::Client(usize::from(c.client)),
            ),
        };
        let (src_mac, next_hop) = match egress {
            Port::Uplink => {
                let up = self.uplink.as_ref().ok_or(DropReason::UplinkDown)?;
                (up.mac, up.next_hop(dst).ok_or(DropReason::NoRoute)?)
            }
            Port::Client(j) => (
                ROUTER_MAC,
                self.clients.get(j).ok_or(DropReason::UnknownPort)?.addr,
            ),
        };
        let len = ETH_HEADER + ip.total_len;
        let b = &mut self.buf[..len];
        b.copy_from_slice(&frame[..len]);
        b[6..12].copy_from_slice(&src_mac);
        rewrite(&mut b[ETH_HEADER..], ip, src, sport, dst, dport);
        self.transmit(egress, next_hop, len, now, out)
    }

    /// Sends the first `len` bytes of the frame buffer to `port`, addressed to `next_hop`'s
    /// MAC; queues it and asks by ARP when the MAC is not known.
    fn transmit<O: FnMut(Port, &[u8])>(
        &mut self,
        port: Port,
        next_hop: Ipv4,
        len: usize,
        now: u64,
        out: &mut O,
    ) -> Result<Verdict, DropReason> {
        let (mac, refresh) = match port {
            Port::Client(j) => (self.clients.get(j).and_then(|c| c.mac), false),
            Port::Uplink => match self.neigh.lookup(next_hop, now) {
                Found::Fresh(m) => (Some(m), false),
                Found::Refresh(m) => (Some(m), true),
                Found::Unknown => (None, false),
            },
        };
        match mac {
            Some(mac) => {
                self.buf[0..6].copy_from_slice(&mac);
                out(port, &self.buf[..len]);
                if refresh {
                    self.arp_request(port, next_hop, out);
                }
                Ok(Verdict::Forwarded)
            }
            None => {
                if self.neigh.queue(port, next_hop, &self.buf[..len], now)? {
                    self.arp_request(port, next_hop, out);
                }
                Ok(Verdict::Queued)
            }
        }
    }
}

/// The connection key of `ip` arriving on `port`: TCP and UDP always; ICMP only an echo
/// request (opening, `Dir::Orig`) or an echo reply (`Dir::Reply`).
fn key_of(port: u8, ip: &Ip, dir: Dir) -> Option<Key> {
    let (sport, dport) = match ip.l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
        L4::Icmp { ty, ident, .. }
            if ty
                == match dir {
                    Dir::Orig => ICMP_ECHO_REQUEST,
                    Dir::Reply => packet::ICMP_ECHO_REPLY,
                } =>
        {
            (ident, ident)
        }
        _ => return None,
    };
    Some(Key {
        port,
        proto: ip.proto,
        src: ip.src,
        sport,
        dst: ip.dst,
        dport,
    })
}

/// A TCP segment whose flags Linux's connection tracking calls invalid, whatever its
/// connection (Qubes drops `ct state invalid` before any rule).
fn invalid_tcp(ip: &Ip) -> bool {
    matches!(ip.l4, L4::Tcp { flags, .. } if !packet::tcp_flags_valid(flags))
}

/// Whether anyone routes to `dst`: not 0.0.0.0/8, loopback, multicast or reserved/broadcast.
fn routable(dst: Ipv4) -> bool {
    !matches!(dst[0], 0 | 127 | 224..=255)
}

/// Reads an ARP message for Ethernet and IPv4.
fn parse_arp(bytes: &[u8]) -> Result<(ArpOperation, Mac, Ipv4, Ipv4), DropReason> {
    let p = ArpPacket::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
    let repr = ArpRepr::parse(&p).map_err(|_| DropReason::Malformed)?;
    #[allow(unreachable_patterns, reason = "ArpRepr is non_exhaustive")]
    let (op, sha, spa, tpa) = match repr {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } => (
            operation,
            source_hardware_addr.0,
            source_protocol_addr.octets(),
            target_protocol_addr.octets(),
        ),
        _ => return Err(DropReason::Malformed),
    };
    if !matches!(op, ArpOperation::Request | ArpOperation::Reply) || !packet::is_unicast(sha) {
        return Err(DropReason::Malformed);
    }
    Ok((op, sha, spa, tpa))
}

/// An Ethernet frame with an ARP message (requests go to the broadcast MAC).
fn arp_frame(op: ArpOperation, sha: Mac, spa: Ipv4, tha: Mac, tpa: Ipv4) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(if op == ArpOperation::Request {
        &BROADCAST
    } else {
        &tha
    });
    f[6..12].copy_from_slice(&sha);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: Ipv4Address::from_octets(spa),
        target_hardware_addr: EthernetAddress(if op == ArpOperation::Request {
            [0; 6]
        } else {
            tha
        }),
        target_protocol_addr: Ipv4Address::from_octets(tpa),
    };
    repr.emit(&mut ArpPacket::new_unchecked(&mut f[ETH_HEADER..]));
    f
}

fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a word inside an ICMP message and updates the message's checksum for it.
fn put_word(b: &mut [u8], off: usize, v: u16, check: &mut u16) {
    *check = checksum::update16(*check, get16(b, off), v);
    put16(b, off, v);
}

/// Recomputes the checksum of the 20-byte IPv4 header at the start of `p`.
fn set_ip_checksum(p: &mut [u8]) {
    put16(p, 10, 0);
    let c = checksum::compute(&p[..IP_HEADER]);
    put16(p, 10, c);
}

/// Rewrites the IPv4 packet `p` (parsed as `ip`) to the new addresses and ports (the echo
/// identifier for ICMP), decrements its TTL and fixes the checksums.
fn rewrite(p: &mut [u8], ip: &Ip, src: Ipv4, sport: u16, dst: Ipv4, dport: u16) {
    p[8] = ip.ttl.saturating_sub(1);
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    set_ip_checksum(p);
    let t = &mut p[IP_HEADER..];
    let fix = |c: u16, os: u16, od: u16| {
        let mut c = checksum::update_addr(c, ip.src, src);
        c = checksum::update_addr(c, ip.dst, dst);
        c = checksum::update16(c, os, sport);
        checksum::update16(c, od, dport)
    };
    match ip.l4 {
        L4::Tcp {
            sport: os,
            dport: od,
            ..
        } => {
            let c = fix(get16(t, 16), os, od);
            put16(t, 0, sport);
            put16(t, 2, dport);
            put16(t, 16, c);
        }
        L4::Udp {
            sport: os,
            dport: od,
        } => {
            let old = get16(t, 6);
            if old != 0 {
                let c = fix(old, os, od);
                put16(t, 6, if c == 0 { 0xffff } else { c });
            }
            put16(t, 0, sport);
            put16(t, 2, dport);
        }
        L4::Icmp { ident, .. } => {
            let c = checksum::update16(get16(t, 2), ident, sport);
            put16(t, 4, sport);
            put16(t, 2, c);
        }
        L4::Other => {}
    }
}

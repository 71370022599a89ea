//! What happened to the frames: counters per outcome and per drop reason.

use core::fmt;

/// Why a frame was dropped. Every drop is counted under exactly one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Longer than [`crate::MAX_FRAME`] bytes.
    TooLarge,
    /// Truncated or inconsistent headers (Ethernet, ARP, IPv4 length, IHL or header checksum,
    /// TCP data offset, UDP length, short ICMP).
    Malformed,
    /// An IPv6 frame (the firewall routes IPv4 only).
    Ipv6,
    /// Another ethertype: VLAN tags, LLDP, anything but IPv4, ARP and IPv6.
    Ethertype,
    /// Not addressed to the firewall (another unicast or a multicast MAC, another IPv4
    /// address on the uplink, an ARP message that is not ours to answer).
    NotForUs,
    /// An IPv4 fragment (the firewall does not reassemble; see the README).
    Fragment,
    /// An IPv4 header with options.
    IpOptions,
    /// From a client port that the configuration does not have.
    UnknownPort,
    /// A client's packet (or ARP message) whose source address is not the client's.
    Spoofed,
    /// A destination nobody routes to: 0.0.0.0/8, 127.0.0.0/8, multicast, broadcast, the
    /// client itself.
    NotRoutable,
    /// To one of the firewall's own addresses, and not something it answers (DNS on the
    /// virtual DNS addresses, ICMP echo).
    ToFirewall,
    /// A `drop` rule matched.
    DroppedByRule,
    /// No rule matched.
    NoRuleMatched,
    /// To another client, and no `accept` rule with an explicit `dsthost` matched.
    ClientIsolation,
    /// A protocol the firewall cannot track: only TCP, UDP and ICMP echo start connections.
    Unsupported,
    /// Belongs to no connection: from the uplink, or a TCP segment without SYN from a client.
    NoConnection,
    /// The TTL would reach 0.
    TtlExceeded,
    /// The uplink is down (no `Net::Uplink` yet, or `Net::UplinkDown`).
    UplinkDown,
    /// The destination is off the uplink's network and the uplink has no gateway.
    NoRoute,
    /// DNS to a virtual DNS address, but no resolver is known (none from DHCP, no override).
    NoDnsServer,
    /// The connection table is full and no entry can make room (not expected: a client
    /// under its share always finds one of a client over its own).
    TableFull,
    /// The connection table is full, this client holds its share or more, and every one of
    /// its connections has been answered (it may only replace its own unanswered ones).
    ClientTableFull,
    /// No free translated port towards this destination.
    PortsExhausted,
    /// Too many packets are waiting for ARP answers.
    QueueFull,
    /// The next hop did not answer ARP.
    Unresolved,
    /// A TCP segment Linux's connection tracking calls invalid (Qubes drops `ct state
    /// invalid`): a flag combination outside `tcp_valid_flags` (SYN+FIN, no flags, FIN
    /// without ACK, ...), or flags its connection's state does not allow (the client's ACK
    /// or FIN before the peer answered its SYN, the peer's FIN before it did).
    InvalidTcp,
    /// To the uplink network's broadcast address (a directed broadcast, which Linux
    /// delivers locally and never forwards) or its network address.
    Broadcast,
    /// A message the firewall would answer itself (an ICMP echo request to one of its
    /// addresses) with a wrong checksum: it answers only what arrived intact.
    BadChecksum,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 28;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::Ipv6,
        DropReason::Ethertype,
        DropReason::NotForUs,
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::UnknownPort,
        DropReason::Spoofed,
        DropReason::NotRoutable,
        DropReason::ToFirewall,
        DropReason::DroppedByRule,
        DropReason::NoRuleMatched,
        DropReason::ClientIsolation,
        DropReason::Unsupported,
        DropReason::NoConnection,
        DropReason::TtlExceeded,
        DropReason::UplinkDown,
        DropReason::NoRoute,
        DropReason::NoDnsServer,
        DropReason::TableFull,
        DropReason::ClientTableFull,
        DropReason::PortsExhausted,
        DropReason::QueueFull,
        DropReason::Unresolved,
        DropReason::InvalidTcp,
        DropReason::Broadcast,
        DropReason::BadChecksum,
    ];

    /// The counter index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short phrase for log lines ("spoofed source").
    pub const fn text(self) -> &'static str {
        match self {
            DropReason::TooLarge => "frame too large",
            DropReason::Malformed => "malformed",
            DropReason::Ipv6 => "IPv6",
            DropReason::Ethertype => "unsupported ethertype",
            DropReason::NotForUs => "not for us",
            DropReason::Fragment => "IPv4 fragment",
            DropReason::IpOptions => "IPv4 options",
            DropReason::UnknownPort => "unknown port",
            DropReason::Spoofed => "spoofed source",
            DropReason::NotRoutable => "unroutable destination",
            DropReason::ToFirewall => "to the firewall itself",
            DropReason::DroppedByRule => "drop rule",
            DropReason::NoRuleMatched => "no rule matched",
            DropReason::ClientIsolation => "client isolation",
            DropReason::Unsupported => "unsupported protocol",
            DropReason::NoConnection => "no connection",
            DropReason::TtlExceeded => "TTL exceeded",
            DropReason::UplinkDown => "uplink down",
            DropReason::NoRoute => "no route",
            DropReason::NoDnsServer => "no DNS server",
            DropReason::TableFull => "connection table full",
            DropReason::ClientTableFull => "client's connection share full",
            DropReason::PortsExhausted => "NAT ports exhausted",
            DropReason::QueueFull => "ARP queue full",
            DropReason::Unresolved => "next hop unresolved",
            DropReason::InvalidTcp => "invalid TCP",
            DropReason::Broadcast => "uplink network broadcast",
            DropReason::BadChecksum => "bad checksum",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Counters since the firewall started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames sent on towards their destination (including queued ones once resolved).
    pub forwarded: u64,
    /// Frames the firewall answered itself (ARP, ICMP echo to its addresses).
    pub answered: u64,
    /// Frames absorbed without an answer (ARP replies it learned from).
    pub consumed: u64,
    /// Frames that waited for an ARP answer.
    pub queued: u64,
    /// Frames dropped, by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Connections in the table now.
    pub connections: usize,
    /// Connections created.
    pub connections_created: u64,
    /// Connections that timed out (or were forgotten when the uplink address changed).
    pub connections_expired: u64,
    /// Connections given up to make room in a full table (fair shares, early drop).
    pub connections_evicted: u64,
    /// ARP requests sent.
    pub arp_requests: u64,
}

impl Stats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason.index()] += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_once_in_counter_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert!(!r.text().is_empty());
        }
    }
}

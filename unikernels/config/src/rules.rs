//! Qubes-style firewall rules: an ordered list of `accept` / `drop` rules; a rule matches a
//! packet when every condition it sets matches; the first matching rule decides.

use serde::{Deserialize, Serialize};

/// What a rule does with a matching packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Let it through.
    Accept,
    /// Drop it silently.
    Drop,
}

/// An IPv4 network: `addr/prefix_len` (a host is `/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cidr {
    /// Network address (host bits may be set; they are ignored when matching).
    pub addr: [u8; 4],
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: [u8; 4]) -> bool {
        let len = u32::from(self.prefix_len.min(32));
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from_be_bytes(self.addr) & mask == u32::from_be_bytes(ip) & mask
    }
}

/// A transport protocol a rule can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
}

/// An inclusive destination port range (a single port has `lo == hi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// Qubes' special targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialTarget {
    /// The router's virtual DNS addresses, port 53, TCP or UDP.
    Dns,
}

/// One rule. Unset conditions match anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// What to do with a match.
    pub action: Action,
    /// Destination address or network.
    pub dsthost: Option<Cidr>,
    /// Transport protocol.
    pub proto: Option<Proto>,
    /// Destination ports (TCP or UDP only).
    pub dstports: Option<PortRange>,
    /// ICMP type (ICMP only).
    pub icmptype: Option<u8>,
    /// A special target.
    pub specialtarget: Option<SpecialTarget>,
}

impl Rule {
    /// A rule with no conditions (the default at the end of a list).
    pub const fn catch_all(action: Action) -> Rule {
        Rule {
            action,
            dsthost: None,
            proto: None,
            dstports: None,
            icmptype: None,
            specialtarget: None,
        }
    }

    /// Whether the rule sets no condition.
    pub const fn is_catch_all(&self) -> bool {
        self.dsthost.is_none()
            && self.proto.is_none()
            && self.dstports.is_none()
            && self.icmptype.is_none()
            && self.specialtarget.is_none()
    }
}

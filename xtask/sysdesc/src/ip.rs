//! IPv4 text as descriptions write it: addresses, networks (`10.137.0.0/24`), an address with
//! a port (`10.0.2.2:5353`) and port ranges (`1024-2048`). Parsing only: whether a value fits
//! the description is decided by the checks that call these.

use bulkhead_qubeconfig::Ipv4;
use std::fmt;
use std::net::Ipv4Addr;

/// An address as people read it.
pub(super) fn show(ip: Ipv4) -> String {
    Ipv4Addr::from(ip).to_string()
}

/// Why a text is not an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NotAddress {
    /// A DNS name (letters, dots and dashes).
    Name,
    /// An IPv6 address.
    V6,
    /// Anything else.
    Syntax,
}

/// The address `text` (four decimal numbers 0-255, dots between, no leading zeros).
pub(super) fn ipv4(text: &str) -> Result<Ipv4, NotAddress> {
    if let Ok(a) = text.parse::<Ipv4Addr>() {
        return Ok(a.octets());
    }
    let name = text.contains(|c: char| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !text.starts_with(['.', '-']);
    if name {
        Err(NotAddress::Name)
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        Err(NotAddress::V6)
    } else {
        Err(NotAddress::Syntax)
    }
}

/// An IPv4 network or host: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub addr: Ipv4,
    pub prefix_len: u8,
}

impl Net {
    fn mask(self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// Whether host bits are set (`10.0.0.1/8`).
    pub fn has_host_bits(self) -> bool {
        u32::from_be_bytes(self.addr) & !self.mask() != 0
    }

    /// The network with the host bits cleared.
    pub fn network(self) -> Ipv4 {
        (u32::from_be_bytes(self.addr) & self.mask()).to_be_bytes()
    }

    /// The broadcast address (all host bits set).
    pub fn broadcast(self) -> Ipv4 {
        (u32::from_be_bytes(self.addr) | !self.mask()).to_be_bytes()
    }

    /// Whether `ip` lies in the network.
    pub fn contains(self, ip: Ipv4) -> bool {
        u32::from_be_bytes(ip) & self.mask() == u32::from_be_bytes(self.addr) & self.mask()
    }

    /// The addresses between the network and the broadcast address, in order.
    pub fn hosts(self) -> impl Iterator<Item = Ipv4> {
        let first = u32::from_be_bytes(self.network());
        let last = u32::from_be_bytes(self.broadcast());
        (first.saturating_add(1)..last).map(u32::to_be_bytes)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", show(self.addr), self.prefix_len)
    }
}

/// Why a text is not a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NotNet {
    /// The part before `/` is not an address.
    Address(NotAddress),
    /// The prefix length is not a number from 0 to 32.
    Prefix,
}

/// A network `a.b.c.d/n`, or a single host `a.b.c.d` (`/32`).
pub(super) fn net(text: &str) -> Result<Net, NotNet> {
    let (addr, prefix_len) = match text.split_once('/') {
        Some((addr, len)) => {
            let digits =
                !len.is_empty() && len.len() <= 2 && len.bytes().all(|b| b.is_ascii_digit());
            let len = digits
                .then(|| len.parse::<u8>().ok())
                .flatten()
                .filter(|n| *n <= 32)
                .ok_or(NotNet::Prefix)?;
            (addr, len)
        }
        None => (text, 32),
    };
    let addr = ipv4(addr).map_err(NotNet::Address)?;
    Ok(Net { addr, prefix_len })
}

/// An address with a port (`10.0.2.2:5353`), or without one (then `default_port`).
pub(super) fn host_port(text: &str, default_port: u16) -> Option<(Ipv4, u16)> {
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => {
            let digits =
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
            let port = digits
                .then(|| port.parse::<u16>().ok())
                .flatten()
                .filter(|p| *p > 0)?;
            (host, port)
        }
        None => (text, default_port),
    };
    Some((ipv4(host).ok()?, port))
}

/// A port (`443`) or an inclusive range (`1024-2048`), each from 1 to 65535, low first.
pub(super) fn ports(text: &str) -> Option<(u16, u16)> {
    let port = |t: &str| {
        let t = t.trim();
        let digits = !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| t.parse::<u16>().ok())
            .flatten()
            .filter(|p| *p > 0)
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(text)?, port(text)?),
    };
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ipv4("10.137.0.10"), Ok([10, 137, 0, 10]));
        assert_eq!(ipv4("0.0.0.0"), Ok([0; 4]));
        for bad in [
            "10.137.0",
            "10.137.0.256",
            "10.137.0.1.2",
            "",
            " 10.0.0.1",
            "010.0.0.1",
        ] {
            assert_eq!(ipv4(bad), Err(NotAddress::Syntax), "{bad}");
        }
        assert_eq!(ipv4("example.org"), Err(NotAddress::Name));
        assert_eq!(ipv4("localhost"), Err(NotAddress::Name));
        assert_eq!(ipv4("fe80::1"), Err(NotAddress::V6));
        assert_eq!(show([10, 139, 1, 1]), "10.139.1.1");
    }

    #[test]
    fn networks() {
        let n = net("10.137.0.0/24").unwrap();
        assert_eq!((n.addr, n.prefix_len), ([10, 137, 0, 0], 24));
        assert!(!n.has_host_bits());
        assert_eq!(n.broadcast(), [10, 137, 0, 255]);
        assert!(n.contains([10, 137, 0, 200]) && !n.contains([10, 137, 1, 0]));
        assert_eq!(n.hosts().count(), 254);
        assert_eq!(n.hosts().next(), Some([10, 137, 0, 1]));
        assert_eq!(n.to_string(), "10.137.0.0/24");
        let host = net("1.2.3.4").unwrap();
        assert_eq!(host.prefix_len, 32);
        assert!(host.contains([1, 2, 3, 4]) && !host.contains([1, 2, 3, 5]));
        let wide = net("10.0.0.1/8").unwrap();
        assert!(wide.has_host_bits());
        assert_eq!(wide.network(), [10, 0, 0, 0]);
        assert_eq!(net("0.0.0.0/0").unwrap().hosts().next(), Some([0, 0, 0, 1]));
        assert_eq!(net("10.0.0.0/33"), Err(NotNet::Prefix));
        assert_eq!(net("10.0.0.0/"), Err(NotNet::Prefix));
        assert_eq!(net("10.0.0.0/+8"), Err(NotNet::Prefix));
        assert_eq!(net("a.b/8"), Err(NotNet::Address(NotAddress::Name)));
        assert_eq!(net("/8"), Err(NotNet::Address(NotAddress::Syntax)));
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(host_port("10.0.2.2:5353", 53), Some(([10, 0, 2, 2], 5353)));
        assert_eq!(host_port("10.0.2.2", 53), Some(([10, 0, 2, 2], 53)));
        for bad in [
            "10.0.2.2:0",
            "10.0.2.2:65536",
            "10.0.2.2:",
            "dns:53",
            ":53",
            "1.2.3.4:+5",
        ] {
            assert_eq!(host_port(bad, 53), None, "{bad}");
        }
        assert_eq!(ports("443"), Some((443, 443)));
        assert_eq!(ports("1024-2048"), Some((1024, 2048)));
        assert_eq!(ports("1 - 2"), Some((1, 2)));
        for bad in [
            "0",
            "65536",
            "2048-1024",
            "a",
            "",
            "-5",
            "1-",
            "80,443",
            "+80",
        ] {
            assert_eq!(ports(bad), None, "{bad}");
        }
    }
}

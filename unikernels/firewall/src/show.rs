//! Log-line pieces that format without allocating (the prebuilt `alloc::format!` needs
//! unwinding support the images do not have).

use bulkhead_firewall_engine::{Dotted, Ipv4};
use core::fmt;

/// An optional address, or `none`.
pub struct Addr(pub Option<Ipv4>);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{}", Dotted(a)),
            None => f.write_str("none"),
        }
    }
}

/// Addresses separated by spaces, or `none`.
pub struct Addrs<'a>(pub &'a [Ipv4]);

impl fmt::Display for Addrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, a) in self.0.iter().enumerate() {
            write!(f, "{}{}", if i == 0 { "" } else { " " }, Dotted(*a))?;
        }
        Ok(())
    }
}

/// Where DNS goes: the configured resolver, or sys-net's.
pub struct Upstream(pub Option<(Ipv4, u16)>);

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((a, p)) => write!(f, "{}:{p}", Dotted(a)),
            None => f.write_str("sys-net's resolver (DHCP)"),
        }
    }
}

/// A client's rule count.
pub struct Rules(pub usize);

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("no rules: accept all (but other clients)"),
            1 => f.write_str("1 rule"),
            n => write!(f, "{n} rules"),
        }
    }
}

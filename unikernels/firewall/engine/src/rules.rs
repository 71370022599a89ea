//! Qubes-style rule evaluation: a client's rules in order, the first matching rule decides,
//! a rule matches when every condition it sets matches, an empty list accepts everything and
//! a packet no rule matches is dropped.
//!
//! Rules are evaluated once per new connection (replies and later packets of an accepted
//! connection pass through the connection table, as in Qubes' `ct state established`).

use crate::Ipv4;
use crate::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use bulkhead_qubeconfig::{Action, Proto, Rule, SpecialTarget};

/// What a rule looks at in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// IP protocol number.
    pub proto: u8,
    /// Destination address as the client sent it (before DNS forwarding).
    pub dst: Ipv4,
    /// Destination port (TCP and UDP).
    pub dport: Option<u16>,
    /// ICMP type (ICMP).
    pub icmp_type: Option<u8>,
}

/// The outcome for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Accepted: by the rule at this index, or by an empty list (`None`).
    Accept(Option<usize>),
    /// Dropped by the rule at this index.
    Drop(usize),
    /// No rule matched.
    NoMatch,
    /// To another client, and no `accept` rule with an explicit `dsthost` matched (while an
    /// accept without one did, or the list is empty).
    Isolated,
}

/// The protocol number a rule's `proto` names.
pub const fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => PROTO_TCP,
        Proto::Udp => PROTO_UDP,
        Proto::Icmp => PROTO_ICMP,
    }
}

/// Whether every condition `rule` sets matches `flow`. `virtual_dns` are the router's
/// virtual DNS addresses (for `specialtarget = dns`).
pub fn matches(rule: &Rule, flow: &Flow, virtual_dns: &[Ipv4]) -> bool {
    let transport = flow.proto == PROTO_TCP || flow.proto == PROTO_UDP;
    if rule.dsthost.is_some_and(|c| !c.contains(flow.dst)) {
        return false;
    }
    if rule.proto.is_some_and(|p| proto_number(p) != flow.proto) {
        return false;
    }
    if let Some(range) = rule.dstports
        && !(transport && flow.dport.is_some_and(|p| range.contains(p)))
    {
        return false;
    }
    if let Some(ty) = rule.icmptype
        && !(flow.proto == PROTO_ICMP && flow.icmp_type == Some(ty))
    {
        return false;
    }
    match rule.specialtarget {
        // Qubes never installs a DNS rule whose dstports is anything but port 53 alone (the
        // description compiler refuses one); here it matches nothing, as in Qubes.
        Some(SpecialTarget::Dns) => {
            rule.dstports.is_none_or(|r| (r.lo, r.hi) == (53, 53))
                && transport
                && flow.dport == Some(53)
                && virtual_dns.contains(&flow.dst)
        }
        None => true,
    }
}

/// Decides a new connection. `to_client` says the destination is another client: then an
/// `accept` rule counts only with an explicit `dsthost` (accept rules without one are
/// skipped, `drop` rules apply as usual), so catch-all accepts never open traffic between
/// clients.
pub fn decide(rules: &[Rule], flow: &Flow, virtual_dns: &[Ipv4], to_client: bool) -> Decision {
    let mut skipped_accept = rules.is_empty();
    if rules.is_empty() && !to_client {
        return Decision::Accept(None);
    }
    for (i, rule) in rules.iter().enumerate() {
        if !matches(rule, flow, virtual_dns) {
            continue;
        }
        match rule.action {
            Action::Accept if to_client && rule.dsthost.is_none() => skipped_accept = true,
            Action::Accept => return Decision::Accept(Some(i)),
            Action::Drop => return Decision::Drop(i),
        }
    }
    if to_client && skipped_accept {
        Decision::Isolated
    } else {
        Decision::NoMatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_qubeconfig::{Cidr, PortRange};

    const DNS: [Ipv4; 2] = [[10, 139, 1, 1], [10, 139, 1, 2]];

    fn flow(proto: u8, dst: Ipv4, dport: u16) -> Flow {
        Flow {
            proto,
            dst,
            dport: (proto != PROTO_ICMP).then_some(dport),
            icmp_type: (proto == PROTO_ICMP).then_some(dport as u8),
        }
    }

    fn rule(action: Action) -> Rule {
        Rule::catch_all(action)
    }

    #[test]
    fn an_empty_list_accepts_all_but_other_clients() {
        let f = flow(PROTO_TCP, [1, 2, 3, 4], 80);
        assert_eq!(decide(&[], &f, &DNS, false), Decision::Accept(None));
        assert_eq!(decide(&[], &f, &DNS, true), Decision::Isolated);
    }

    #[test]
    fn first_match_wins() {
        let mut drop_ssh = rule(Action::Drop);
        drop_ssh.proto = Some(Proto::Tcp);
        drop_ssh.dstports = Some(PortRange { lo: 22, hi: 22 });
        let rules = [drop_ssh, rule(Action::Accept)];
        assert_eq!(
            decide(&rules, &flow(PROTO_TCP, [1, 2, 3, 4], 22), &DNS, false),
            Decision::Drop(0)
        );
        assert_eq!(
            decide(&rules, &flow(PROTO_TCP, [1, 2, 3, 4], 23), &DNS, false),
            Decision::Accept(Some(1))
        );
        // dstports only match TCP and UDP.
        assert_eq!(
            decide(&rules, &flow(PROTO_ICMP, [1, 2, 3, 4], 22), &DNS, false),
            Decision::Accept(Some(1))
        );
    }

    #[test]
    fn dns_target_is_the_virtual_addresses_on_port_53() {
        let mut dns = rule(Action::Accept);
        dns.specialtarget = Some(SpecialTarget::Dns);
        let rules = [dns];
        for (f, ok) in [
            (flow(PROTO_UDP, DNS[0], 53), true),
            (flow(PROTO_TCP, DNS[1], 53), true),
            (flow(PROTO_UDP, DNS[0], 54), false),
            (flow(PROTO_UDP, [8, 8, 8, 8], 53), false),
            (flow(PROTO_ICMP, DNS[0], 8), false),
        ] {
            let want = if ok {
                Decision::Accept(Some(0))
            } else {
                Decision::NoMatch
            };
            assert_eq!(decide(&rules, &f, &DNS, false), want, "{f:?}");
        }
    }

    #[test]
    fn a_dns_target_with_other_ports_than_53_alone_matches_nothing_as_in_qubes() {
        for (lo, hi, matches) in [(53, 53, true), (50, 60, false), (1, 65535, false)] {
            let mut dns = rule(Action::Accept);
            dns.specialtarget = Some(SpecialTarget::Dns);
            dns.proto = Some(Proto::Udp);
            dns.dstports = Some(PortRange { lo, hi });
            let want = if matches {
                Decision::Accept(Some(0))
            } else {
                Decision::NoMatch
            };
            let f = flow(PROTO_UDP, DNS[0], 53);
            assert_eq!(decide(&[dns], &f, &DNS, false), want, "{lo}-{hi}");
        }
    }

    #[test]
    fn icmp_type_and_host() {
        let mut ping = rule(Action::Accept);
        ping.proto = Some(Proto::Icmp);
        ping.icmptype = Some(8);
        ping.dsthost = Some(Cidr {
            addr: [192, 168, 0, 0],
            prefix_len: 16,
        });
        let rules = [ping];
        assert_eq!(
            decide(&rules, &flow(PROTO_ICMP, [192, 168, 4, 4], 8), &DNS, false),
            Decision::Accept(Some(0))
        );
        assert_eq!(
            decide(&rules, &flow(PROTO_ICMP, [192, 169, 4, 4], 8), &DNS, false),
            Decision::NoMatch
        );
        assert_eq!(
            decide(&rules, &flow(PROTO_ICMP, [192, 168, 4, 4], 13), &DNS, false),
            Decision::NoMatch
        );
    }

    #[test]
    fn only_explicit_hosts_open_other_clients() {
        let mut to_work = rule(Action::Accept);
        to_work.dsthost = Some(Cidr {
            addr: [10, 137, 0, 6],
            prefix_len: 32,
        });
        let rules = [rule(Action::Accept), to_work];
        let f = flow(PROTO_TCP, [10, 137, 0, 6], 22);
        assert_eq!(decide(&rules, &f, &DNS, true), Decision::Accept(Some(1)));
        let other = flow(PROTO_TCP, [10, 137, 0, 7], 22);
        assert_eq!(decide(&rules, &other, &DNS, true), Decision::Isolated);
        // To the uplink the first rule decides.
        assert_eq!(decide(&rules, &f, &DNS, false), Decision::Accept(Some(0)));
    }
}

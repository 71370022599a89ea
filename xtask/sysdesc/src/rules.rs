//! A qube's firewall rules (`[[qube.rule]]`), with Qubes' meaning: in order, the first rule
//! whose every condition matches decides, and the last rule has no condition (it decides
//! everything else). No rules at all accepts everything, as in Qubes.

use super::diagnostics::Diagnostics;
use super::hints;
use super::ip::{self, NotAddress, NotNet};
use super::schema::{Section, Tables};
use bulkhead_qubeconfig::{Action, Cidr, MAX_RULES, PortRange, Proto, Rule, SpecialTarget};

const ACTIONS: &[&str] = &["accept", "drop"];
const PROTOS: &[&str] = &["tcp", "udp", "icmp"];
const SPECIAL_TARGETS: &[&str] = &["dns"];

/// How the rule list must end, for hints.
const END_WITH_DEFAULT: &str = "end the list with a rule that has only an action, e.g. \
    [[qube.rule]] action = \"drop\" (drop what no rule above accepts) or action = \"accept\"";

/// The rules of the qube `q`, when every one is right. `None` when some rule is wrong (each
/// problem is reported).
pub(super) fn check(q: &Section, text: &str, d: &mut Diagnostics) -> Option<Vec<Rule>> {
    let Some(tables) = q.tables("rule") else {
        return q.absent("rule").then(Vec::new);
    };
    let mut rules = Vec::new();
    let mut ok = !tables.malformed;
    for r in &tables.items {
        match rule(r, text, d) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    if tables.items.len() > MAX_RULES {
        let extra = &tables.items[MAX_RULES];
        let message = format!(
            "{} firewall rules, at most {MAX_RULES} fit",
            tables.items.len()
        );
        let hint = format!(
            "remove {} rule(s); a network (dsthost = \"10.0.0.0/8\") or a port range \
             (dstports = \"1024-2048\") covers several destinations in one rule",
            tables.items.len() - MAX_RULES
        );
        d.push(text, extra.span.clone(), extra.path.clone(), message, hint);
        return None;
    }
    if !ok {
        return None;
    }
    order(q, tables, &rules, text, d).then_some(rules)
}

/// The list ends with a rule without conditions, and no rule follows one.
fn order(q: &Section, tables: &Tables, rules: &[Rule], text: &str, d: &mut Diagnostics) -> bool {
    let Some(last) = rules.last() else {
        return true;
    };
    if let Some(first) = rules.iter().position(Rule::is_catch_all)
        && first + 1 < rules.len()
    {
        let dead = &tables.items[first + 1];
        let message = format!(
            "this rule can never match: {} above it has no condition and decides everything",
            tables.items[first].path
        );
        let hint = format!(
            "move the rule without conditions to the end of {}'s rules, or remove the rules \
             after it",
            q.path
        );
        d.push(text, dead.span.clone(), dead.path.clone(), message, hint);
        return false;
    }
    if !last.is_catch_all() {
        let table = &tables.items[rules.len() - 1];
        let message = format!(
            "the rules of {} end with a rule that has conditions; the last rule must have none",
            q.path
        );
        let hint = format!(
            "{END_WITH_DEFAULT}; without such a rule it is not clear what happens to the rest \
             (no rules at all accepts everything, as in Qubes)"
        );
        d.push(text, table.span.clone(), table.path.clone(), message, hint);
        return false;
    }
    true
}

/// One rule: each key right on its own, then the combinations Qubes forbids.
fn rule(r: &Section, text: &str, d: &mut Diagnostics) -> Option<Rule> {
    let action = action(r, text, d);
    let dsthost = dsthost(r, text, d);
    let proto = choice(r, "proto", PROTOS, text, d).map(|p| {
        p.map(|p| match p {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => Proto::Icmp,
        })
    });
    let dstports = dstports(r, text, d);
    let icmptype = icmptype(r, text, d);
    let special =
        choice(r, "specialtarget", SPECIAL_TARGETS, text, d).map(|s| s.map(|_| SpecialTarget::Dns));
    let rule = Rule {
        action: action?,
        dsthost: dsthost?,
        proto: proto?,
        dstports: dstports?,
        icmptype: icmptype?,
        specialtarget: special?,
    };
    combinations(r, &rule, text, d).then_some(rule)
}

/// Qubes' rules about which conditions go together.
fn combinations(r: &Section, rule: &Rule, text: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    let mut fail = |key: &str, message: String, hint: String| {
        let span = r
            .text(key)
            .map(|(_, s)| s)
            .or_else(|| r.number(key).map(|(_, s)| s));
        d.push(text, span, r.key(key), message, hint);
        ok = false;
    };
    let proto = rule.proto.map(|p| match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => "icmp",
    });
    if rule.dstports.is_some() && !matches!(rule.proto, Some(Proto::Tcp | Proto::Udp)) {
        let message = match proto {
            Some(p) => {
                format!("dstports does not apply to proto = \"{p}\": ports are TCP's and UDP's")
            }
            None => "dstports needs proto = \"tcp\" or \"udp\"".to_string(),
        };
        let hint =
            "add proto = \"tcp\" or proto = \"udp\" to this rule (two rules for both)".to_string();
        fail("dstports", message, hint);
    }
    if rule.icmptype.is_some() && rule.proto != Some(Proto::Icmp) {
        let message = match proto {
            Some(p) => format!("icmptype does not apply to proto = \"{p}\""),
            None => "icmptype needs proto = \"icmp\"".to_string(),
        };
        fail(
            "icmptype",
            message,
            "add proto = \"icmp\" to this rule".to_string(),
        );
    }
    if rule.specialtarget.is_some() && rule.dsthost.is_some() {
        let message = "specialtarget and dsthost cannot both be set".to_string();
        let hint = "specialtarget = \"dns\" already names the destination (the virtual DNS \
                    servers); remove dsthost, or write a second rule for it"
            .to_string();
        fail("dsthost", message, hint);
    }
    if rule.specialtarget.is_some()
        && let Some(ports) = rule.dstports
        && (ports.lo, ports.hi) != (53, 53)
    {
        let shown = if ports.lo == ports.hi {
            format!("{}", ports.lo)
        } else {
            format!("{}-{}", ports.lo, ports.hi)
        };
        let message = if ports.contains(53) {
            format!(
                "specialtarget = \"dns\" is port 53 alone; with dstports = \"{shown}\" Qubes \
                 never installs this rule"
            )
        } else {
            format!("specialtarget = \"dns\" is port 53: dstports = \"{shown}\" never matches it")
        };
        let hint = "remove dstports: specialtarget = \"dns\" already means port 53, the only \
                    port the virtual DNS servers serve"
            .to_string();
        fail("dstports", message, hint);
    }
    if rule.specialtarget.is_some() && rule.proto == Some(Proto::Icmp) {
        let message = "specialtarget = \"dns\" never matches ICMP: DNS is TCP or UDP".to_string();
        let hint = "remove proto, or use proto = \"udp\" or \"tcp\"".to_string();
        fail("proto", message, hint);
    }
    ok
}

/// `action`: required.
fn action(r: &Section, text: &str, d: &mut Diagnostics) -> Option<Action> {
    if r.absent("action") {
        let hint = "add action = \"accept\" or action = \"drop\"";
        d.push(
            text,
            r.span.clone(),
            r.key("action"),
            "missing action",
            hint,
        );
        return None;
    }
    match choice(r, "action", ACTIONS, text, d)?? {
        "accept" => Some(Action::Accept),
        _ => Some(Action::Drop),
    }
}

/// An optional key whose value is one of `allowed`: `Some(None)` when absent.
fn choice(
    r: &Section,
    key: &str,
    allowed: &[&'static str],
    text: &str,
    d: &mut Diagnostics,
) -> Option<Option<&'static str>> {
    let Some((value, span)) = r.text(key) else {
        return r.absent(key).then_some(None);
    };
    if let Some(found) = allowed.iter().find(|a| **a == value) {
        return Some(Some(found));
    }
    let message = format!("unknown {key} {}", hints::quoted(value));
    let what = match key {
        "proto" => "protocols",
        "action" => "actions",
        _ => "special targets",
    };
    // Other firewalls' words for the two actions.
    let meant = match value.to_ascii_lowercase().as_str() {
        "allow" | "permit" | "pass" | "ok" => Some("accept"),
        "deny" | "reject" | "block" | "refuse" => Some("drop"),
        _ => None,
    };
    let mut hint = match meant.filter(|_| key == "action") {
        Some(m) => format!("did you mean \"{m}\"? {what} are {}", hints::list(allowed)),
        None => hints::one_of(what, value, allowed),
    };
    if key == "specialtarget" {
        hint.push_str(" (the router's virtual DNS servers)");
    }
    d.fail(text, Some(span), r.key(key), message, hint)
}

/// `dsthost`: an address or a network, without host bits after the prefix.
fn dsthost(r: &Section, text: &str, d: &mut Diagnostics) -> Option<Option<Cidr>> {
    let Some((value, span)) = r.text("dsthost") else {
        return r.absent("dsthost").then_some(None);
    };
    let key = r.key("dsthost");
    let example = "e.g. dsthost = \"93.184.216.34\" (one host) or \"10.0.0.0/8\" (a network)";
    let net = match ip::net(value) {
        Ok(net) => net,
        Err(NotNet::Address(NotAddress::Name)) => {
            let message = format!(
                "{} is a DNS name: not supported yet, dsthost is an IPv4 address or network",
                hints::quoted(value)
            );
            let hint = format!("write the address instead, {example}");
            return d.fail(text, Some(span), key, message, hint);
        }
        Err(NotNet::Address(NotAddress::V6)) => {
            let message = format!(
                "{} is an IPv6 address: not supported yet",
                hints::quoted(value)
            );
            return d.fail(
                text,
                Some(span),
                key,
                message,
                format!("use IPv4, {example}"),
            );
        }
        Err(NotNet::Address(NotAddress::Syntax)) => {
            let message = format!("{} is not an IPv4 address or network", hints::quoted(value));
            let hint = format!("write four numbers from 0 to 255 with dots, {example}");
            return d.fail(text, Some(span), key, message, hint);
        }
        Err(NotNet::Prefix) => {
            let message = format!(
                "{}: the prefix length after / is a number from 0 to 32",
                hints::quoted(value)
            );
            return d.fail(text, Some(span), key, message, example.to_string());
        }
    };
    if net.has_host_bits() {
        let message = format!("{net} has bits set after the /{} prefix", net.prefix_len);
        let hint = format!(
            "write the network, \"{}/{}\", or the one host, \"{}\"",
            ip::show(net.network()),
            net.prefix_len,
            ip::show(net.addr)
        );
        return d.fail(text, Some(span), key, message, hint);
    }
    Some(Some(Cidr {
        addr: net.addr,
        prefix_len: net.prefix_len,
    }))
}

/// `dstports`: a port or a range, as text or a number.
fn dstports(r: &Section, text: &str, d: &mut Diagnostics) -> Option<Option<PortRange>> {
    let Some((value, span)) = r.text("dstports") else {
        return r.absent("dstports").then_some(None);
    };
    match ip::ports(value) {
        Some((lo, hi)) => Some(Some(PortRange { lo, hi })),
        None => {
            let message = format!("{} is not a port or a port range", hints::quoted(value));
            let hint = "write one port from 1 to 65535, e.g. dstports = \"443\", or a range with \
                        the lower port first, e.g. dstports = \"1024-2048\"";
            d.fail(text, Some(span), r.key("dstports"), message, hint)
        }
    }
}

/// `icmptype`: 0 to 255.
fn icmptype(r: &Section, text: &str, d: &mut Diagnostics) -> Option<Option<u8>> {
    let Some((value, span)) = r.number("icmptype") else {
        return r.absent("icmptype").then_some(None);
    };
    match u8::try_from(value) {
        Ok(t) => Some(Some(t)),
        Err(_) => {
            let message = format!("ICMP type {value} does not exist: types are 0 to 255");
            let hint = "e.g. icmptype = 8 (echo request, what ping sends)";
            d.fail(text, Some(span), r.key("icmptype"), message, hint)
        }
    }
}

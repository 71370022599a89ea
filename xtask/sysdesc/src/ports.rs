//! I/O ports: a unikernel's `io_ports = ["0x60", "0x64"]` (single ports or inclusive ranges
//! `"0x60-0x64"`, hexadecimal with `0x`). A port belongs to one qube, never to a Linux qube
//! (its ports are its guest platform's), and never one of the ports the hypervisor or the
//! whole machine depends on ([`bulkhead_abi::io_ports::RESERVED`]); at most
//! [`MAX_PORT_RANGES`] ranges in the whole system.

use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::Raw;
use bulkhead_abi::io_ports::{MAX_PORT_RANGES, PortRange, reserved_in};

/// The syntax, for every hint.
const SYNTAX: &str = "write each port in hexadecimal with 0x, e.g. io_ports = [\"0x60\", \
    \"0x64\"], or a range of ports with both ends included, e.g. \"0x2f8-0x2ff\"";

/// `0x` and 1 to 4 hexadecimal digits.
fn port(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let Some(digits) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) else {
        return Err(match t.parse::<u32>() {
            Ok(n) if n <= 0xFFFF => format!("write it in hexadecimal with 0x: {n} is {n:#x}"),
            _ => "a port is 0x followed by hexadecimal digits".to_string(),
        });
    };
    let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit());
    match ok.then(|| u32::from_str_radix(digits, 16).ok()).flatten() {
        Some(n) if n <= 0xFFFF => Ok(n as u16),
        Some(_) => Err("ports go from 0x0 to 0xffff".to_string()),
        None => Err("a port is 0x followed by hexadecimal digits".to_string()),
    }
}

/// `"0x60"` or `"0x60-0x64"`, or what is wrong with it.
pub(super) fn parse(text: &str) -> Result<PortRange, String> {
    let range = match text.split_once('-') {
        None => port(text).map(PortRange::single),
        Some((a, b)) => {
            let (first, last) = (port(a)?, port(b)?);
            PortRange::new(first, last).ok_or_else(|| {
                format!("the range ends before it starts: write \"{last:#x}-{first:#x}\"")
            })
        }
    };
    range.map_err(|why| format!("{} is not an I/O port: {why}", hints::quoted(text)))
}

/// Every qube's ports as (qube index, range), in qube order, when all are right. A Linux
/// qube's `io_ports` is reported by `linux::foreign_keys`.
pub(super) fn check(raw: &Raw, text: &str, d: &mut Diagnostics) -> Option<Vec<(usize, PortRange)>> {
    let mut ok = true;
    let mut seen: Vec<(PortRange, usize)> = Vec::new();
    for (i, q) in raw.qubes.items.iter().enumerate() {
        let Some((list, _)) = q.names("io_ports") else {
            ok &= q.absent("io_ports");
            continue;
        };
        if super::linux::is_linux(q) {
            ok = false;
            continue;
        }
        for (item, span) in list {
            let mut problem = |message: String, hint: String| {
                d.push(text, Some(span.clone()), q.key("io_ports"), message, hint);
            };
            let range = match parse(item) {
                Ok(r) => r,
                Err(message) => {
                    problem(message, SYNTAX.to_string());
                    ok = false;
                    continue;
                }
            };
            if let Some(r) = reserved_in(&range) {
                let message = match range.first == range.last {
                    true => format!("I/O port {range} is one of {}", r.ports),
                    false => format!("I/O ports {range} include {}", r.ports),
                };
                let message = format!("{message}, which no qube may own: {}", r.what);
                let hint = "leave these ports to the hypervisor; give the qube only the ports \
                    of its own device (the PS/2 controller is \"0x60\" and \"0x64\", without \
                    0x61)"
                    .to_string();
                problem(message, hint);
                ok = false;
                continue;
            }
            if let Some((other, j)) = seen.iter().find(|(s, _)| s.overlaps(&range)) {
                let whose = if *j == i {
                    "this qube names it already".to_string()
                } else {
                    format!("{} has it", raw.qubes.items[*j].path)
                };
                let message = match range.first == range.last {
                    true => format!("I/O port {range} is in {other}, given before"),
                    false => format!("I/O ports {range} overlap {other}, given before"),
                };
                let hint = format!("a port belongs to one qube and is named once ({whose})");
                problem(message, hint);
                ok = false;
                continue;
            }
            seen.push((range, i));
        }
    }
    if seen.len() > MAX_PORT_RANGES {
        let (_, i) = seen[MAX_PORT_RANGES];
        let q = &raw.qubes.items[i];
        let message = format!(
            "{} I/O port ranges are given, at most {MAX_PORT_RANGES} fit",
            seen.len()
        );
        let hint = "join neighbouring ports into ranges (\"0x2f8-0x2ff\"), or give fewer";
        let span = q.names("io_ports").map(|(_, s)| s).or(q.span.clone());
        d.push(text, span, q.key("io_ports"), message, hint);
        return None;
    }
    ok.then(|| seen.into_iter().map(|(r, i)| (i, r)).collect())
}

/// Ranges as the description writes them, separated by spaces.
pub(super) fn show(ranges: &[PortRange]) -> String {
    let shown: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_ranges() {
        assert_eq!(parse("0x60"), Ok(PortRange::single(0x60)));
        assert_eq!(parse("0X64"), Ok(PortRange::single(0x64)));
        assert_eq!(
            parse(" 0x2f8-0x2FF "),
            Ok(PortRange::new(0x2F8, 0x2FF).unwrap())
        );
        assert_eq!(parse("0xffff"), Ok(PortRange::single(0xFFFF)));
        assert_eq!(parse("0x60-0x60"), Ok(PortRange::single(0x60)));
    }

    #[test]
    fn refuses_malformed_ports_with_the_reason() {
        let why = |t: &str| parse(t).unwrap_err();
        assert!(why("96").contains("96 is 0x60"));
        assert!(why("0x10000").contains("0xffff"));
        assert!(why("0x").contains("hexadecimal digits"));
        assert!(why("0xg0").contains("hexadecimal digits"));
        assert!(why("port60").contains("0x followed"));
        assert!(why("0x64-0x60").contains("write \"0x60-0x64\""));
        assert!(why("0x60-").contains("0x followed"));
        assert!(why("0x60-0x61-0x62").contains("hexadecimal digits"));
        assert!(why("").contains("0x followed"));
    }
}

//! Making TOML syntax errors readable: which key they are in, and what usually fixes them.

use super::hints;
use std::ops::Range;
use toml::de::DeTable;

/// Best-effort key path of the line holding byte `offset`, from the headers above it, e.g.
/// `qube[1].label` for a broken `label = ...` line in the second qube, or
/// `qube[1].rule[0].proto` in the first `[[qube.rule]]` of that qube.
pub(super) fn key_at(text: &str, offset: usize) -> String {
    let mut table = String::new();
    // How many `[[qube]]` and `[[channel]]` headers came so far.
    let mut counts: Vec<(String, usize)> = Vec::new();
    // The latest `[[qube]]` and how many `[[qube.rule]]` headers it has so far.
    let mut qube = String::from("qube[0]");
    let mut rules = 0usize;
    let mut start = 0usize;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        let header = trimmed.starts_with('[');
        if header {
            let name = trimmed.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("").trim();
            if trimmed.starts_with("[[") && (name == "qube" || name == "channel") {
                let index = match counts.iter_mut().find(|(n, _)| n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count - 1
                    }
                    None => {
                        counts.push((name.to_string(), 1));
                        0
                    }
                };
                table = format!("{name}[{index}]");
                if name == "qube" {
                    qube = table.clone();
                    rules = 0;
                }
            } else if trimmed.starts_with("[[") && name == "qube.rule" {
                table = format!("{qube}.rule[{rules}]");
                rules += 1;
            } else {
                table = shown(name);
            }
        }
        if offset < end || end == text.len() {
            if header {
                return if table.is_empty() {
                    "TOML syntax".into()
                } else {
                    table
                };
            }
            return match trimmed.split_once('=') {
                Some((key, _)) if !key.trim().is_empty() => {
                    let key = shown(key.trim().trim_matches('"'));
                    if table.is_empty() {
                        key
                    } else {
                        format!("{table}.{key}")
                    }
                }
                _ if !table.is_empty() => table,
                _ => "TOML syntax".into(),
            };
        }
        start = end;
    }
    "TOML syntax".into()
}

/// Where a `[[qube.rule]]` header comes before any `[[qube]]` (a rule belongs to the qube
/// above it; TOML then reads the later `[[qube]]` as a second definition of `qube`).
pub(super) fn stray_rule(text: &str) -> Option<Range<usize>> {
    let mut start = 0usize;
    for line in text.split_inclusive('\n') {
        let header: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if header == "[[qube]]" {
            return None;
        }
        if header == "[[qube.rule]]" {
            let at = start + line.len() - line.trim_start().len();
            return Some(at..at + line.trim().len());
        }
        start += line.len();
    }
    None
}

/// Where the parser's error `message`, which came without a place (the reader's recursion
/// limit on dotted keys), is: the first line such that the text up to its end gives that
/// error, found by halving; from its first non-blank character to its end. The start of the
/// file if no prefix gives it.
pub(super) fn locate(text: &str, message: &str) -> Range<usize> {
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(text.len()))
        .collect();
    let fails = |end: usize| {
        let (_, errors) = DeTable::parse_recoverable(&text[..end]);
        errors
            .iter()
            .any(|e| e.span().is_none() && e.message() == message)
    };
    let k = ends.partition_point(|&end| !fails(end));
    let Some(&end) = ends.get(k) else {
        return 0..0;
    };
    let start = k.checked_sub(1).map_or(0, |j| ends[j]);
    let line = &text[start..end];
    let at = start + (line.len() - line.trim_start().len());
    at..(start + line.trim_end().len()).max(at)
}

/// The parser's `message`, said for people.
pub(super) fn message(message: &str) -> String {
    if message == "recursion limit" {
        "a key (or value) nested deeper than the TOML reader goes (its recursion limit)".into()
    } else {
        message.to_string()
    }
}

/// A key as written, quoted when it is not a plain word.
fn shown(key: &str) -> String {
    let plain = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if plain && !key.is_empty() && key.len() <= 40 {
        key.to_string()
    } else {
        hints::quoted(key)
    }
}

/// A fix for a TOML syntax error, from the parser's message.
pub(super) fn hint(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("recursion") {
        "no key of a description has more than a few parts: write key = value lines under \
         their table header ([[qube]], [[qube.rule]], ...), with one plain word before the ="
    } else if m.contains("duplicate") || m.contains("redefin") {
        "each key may appear once per table, [system] and [network] once; start each qube \
         with [[qube]], each of its firewall rules with [[qube.rule]] and each channel with \
         [[channel]]"
    } else if m.contains("string") && (m.contains("unterminated") || m.contains("expected `\"`")) {
        "close the text with a double quote on the same line"
    } else if m.contains("string") || m.contains("invalid") || m.contains("unquoted") {
        "text values need double quotes, e.g. label = \"red\"; numbers are written bare, e.g. 8"
    } else {
        "a system description is TOML: [system], [network], [[qube]], [[qube.rule]] and \
         [[channel]] headers, each followed by key = value lines, text in double quotes"
    };
    hint.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_key_of_a_broken_line() {
        let text = "[system]\nram_mib = 1\n[[qube]]\nname = \"a\"\n[[qube]]\nlabel = red\n";
        let at = text.find("red").unwrap();
        assert_eq!(key_at(text, at), "qube[1].label");
        assert_eq!(key_at(text, text.find("ram").unwrap()), "system.ram_mib");
        let rules = "[[qube]]\n[[qube]]\n[[qube.rule]]\n[[qube.rule]]\nproto = tcp\n";
        assert_eq!(
            key_at(rules, rules.find("tcp").unwrap()),
            "qube[1].rule[1].proto"
        );
        let net = "[network]\nclients = 10\n";
        assert_eq!(key_at(net, net.find("10").unwrap()), "network.clients");
        let two = "[[qube]]\n[[channel]]\n[[qube]]\n[[channel]]\nsize_kib = x\n";
        let at = two.find('x').unwrap();
        assert_eq!(key_at(two, at), "channel[1].size_kib");
        assert_eq!(key_at(text, 0), "system");
        assert_eq!(key_at("x", 99), "TOML syntax");
        assert_eq!(key_at("", 0), "TOML syntax");
        assert_eq!(key_at("\"\" x", 3), "TOML syntax");
        assert_eq!(key_at("[]\n = 1", 5), "\"\"");
    }

    #[test]
    fn locates_an_error_without_a_place() {
        let deep = ["a"; 100].join(".");
        let text = format!("[system]\nram_mib = 1\n\n  {deep} = 1 \nx = 2\n");
        let (_, errors) = DeTable::parse_recoverable(&text);
        let e = errors
            .iter()
            .find(|e| e.span().is_none())
            .expect("no place");
        let at = locate(&text, e.message());
        assert_eq!(&text[at], format!("{deep} = 1"));
        assert_eq!(locate("x = 1", "no such error"), 0..0);
    }

    #[test]
    fn finds_a_rule_above_every_qube() {
        let text = "[system]\n  [[ qube.rule ]] # drop\naction = \"drop\"\n[[qube]]\n";
        let at = stray_rule(text).unwrap();
        assert_eq!(&text[at], "[[ qube.rule ]] # drop");
        assert_eq!(stray_rule("[[qube]]\n[[qube.rule]]\n"), None);
        assert_eq!(stray_rule("[system]\n"), None);
    }
}

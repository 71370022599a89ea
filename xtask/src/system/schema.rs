//! The shape of a system description: its tables, their keys and the type of each, and a
//! reader that turns the parsed TOML into located values. Unknown keys and wrong types are
//! errors (the rule serde's `deny_unknown_fields` gives), but the reader reports every one of
//! them and carries on, so the checker can still look at everything else.

use super::check;
use super::diagnostics::Diagnostics;
use super::keys::{self, CHANNEL_KEYS, Key, Located, QUBE_KEYS, SYSTEM_KEYS, Value};
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One table (`[system]`, a `[[qube]]` or a `[[channel]]`) with its well-typed values.
pub(super) struct Section {
    /// How diagnostics name the table: `system`, `qube "net"`, `qube[2]`, `channel "uplink"`.
    pub path: String,
    /// Where the table is.
    pub span: Option<Range<usize>>,
    values: Vec<(&'static str, Range<usize>, Value)>,
    /// Keys present with a wrong type (already reported).
    mistyped: Vec<&'static str>,
}

impl Section {
    /// The text value of `key` and where it is, if present and text.
    pub fn text(&self, key: &str) -> Option<(&str, Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Text(s) => Some((s.as_str(), span.clone())),
                _ => None,
            })
    }

    /// The number value of `key` and where it is, if present and a whole number.
    pub fn number(&self, key: &str) -> Option<(i128, Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Number(n) => Some((*n, span.clone())),
                _ => None,
            })
    }

    /// The list of text values of `key` (each with where it is) and where the list is, if
    /// present and a list of text.
    pub fn names(&self, key: &str) -> Option<(&[Located], Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Names(names) => Some((names.as_slice(), span.clone())),
                _ => None,
            })
    }

    /// Whether `key` is missing altogether (not merely of the wrong type).
    pub fn absent(&self, key: &str) -> bool {
        !self.mistyped.contains(&key) && !self.values.iter().any(|(k, ..)| *k == key)
    }

    /// The key path of `key` in this table.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// The tables of one array of tables (`[[qube]]` or `[[channel]]`).
#[derive(Default)]
pub(super) struct Tables {
    /// The tables, in file order.
    pub items: Vec<Section>,
    /// Where the key (`qube`, `channel`) is, when present.
    pub span: Option<Range<usize>>,
    /// Whether the key or one of its items was not a table (already reported).
    pub malformed: bool,
}

/// A description that parsed as TOML, split into its tables.
pub(super) struct Raw {
    /// `[system]`, when present and a table.
    pub system: Option<Section>,
    /// The `[[qube]]` tables.
    pub qubes: Tables,
    /// The `[[channel]]` tables.
    pub channels: Tables,
}

/// Parses `text` and reads its tables, reporting syntax errors, unknown keys and wrong types.
/// `None` when the text is not TOML (nothing more can be checked then).
pub(super) fn read(text: &str, diags: &mut Diagnostics) -> Option<Raw> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let offset = e.span().map_or(text.len(), |s| s.start);
            let key = super::syntax::key_at(text, offset);
            diags.push(
                text,
                e.span(),
                key,
                e.message(),
                super::syntax::hint(e.message()),
            );
        }
        return None;
    }
    let mut raw = Raw {
        system: None,
        qubes: Tables::default(),
        channels: Tables::default(),
    };
    for (key, value) in root.get_ref() {
        let span = Some(value.span());
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("system", DeValue::Table(t)) => {
                let path = "system".to_string();
                raw.system = Some(section(text, t, "system", path, span, SYSTEM_KEYS, diags));
            }
            ("system", _) => diags.push(
                text,
                span,
                "system",
                "system must be a table",
                "write it as a [system] header followed by name = ... and ram_mib = ... lines",
            ),
            ("qube", v) => {
                raw.qubes = read_tables(text, "qube", QUBE_KEYS, v, key.span(), span, diags);
            }
            ("channel", v) => {
                raw.channels =
                    read_tables(text, "channel", CHANNEL_KEYS, v, key.span(), span, diags);
            }
            (other, _) => {
                let (message, hint) = keys::unknown_top(other);
                diags.push(text, Some(key.span()), keys::key_text(other), message, hint);
            }
        }
    }
    Some(raw)
}

/// Reads the array of tables `kind` (`qube` or `channel`), each against `allowed`. A table
/// is named by its name in diagnostics when that name is valid and unique, by its index
/// otherwise.
fn read_tables(
    text: &str,
    kind: &'static str,
    allowed: &[Key],
    value: &DeValue<'_>,
    key_span: Range<usize>,
    span: Option<Range<usize>>,
    diags: &mut Diagnostics,
) -> Tables {
    let mut tables = Tables {
        span: Some(key_span),
        ..Tables::default()
    };
    let fix = format!("write [[{kind}]] (double brackets) above each {kind}'s keys");
    let DeValue::Array(items) = value else {
        tables.malformed = true;
        let message = format!("{kind} must be a list of tables");
        diags.push(text, span, kind, message, fix);
        return tables;
    };
    let names: Vec<Option<&str>> = items
        .iter()
        .map(|item| {
            item.get_ref()
                .get("name")
                .and_then(|n| n.get_ref().as_str())
        })
        .collect();
    for (i, item) in items.iter().enumerate() {
        let unique_valid = names[i].filter(|n| {
            check::name_problem(n).is_none()
                && names.iter().filter(|m| **m == Some(*n)).count() == 1
        });
        let path = match unique_valid {
            Some(n) => format!("{kind} \"{n}\""),
            None => format!("{kind}[{i}]"),
        };
        let span = Some(item.span());
        match item.get_ref() {
            DeValue::Table(t) => tables
                .items
                .push(section(text, t, kind, path, span, allowed, diags)),
            _ => {
                tables.malformed = true;
                let message = format!("each {kind} must be a table");
                diags.push(text, span, path, message, fix.clone());
            }
        }
    }
    tables
}

/// Reads one table of kind `kind` (`system`, `qube`, `channel`) against its allowed keys.
fn section(
    text: &str,
    table: &DeTable<'_>,
    kind: &str,
    path: String,
    span: Option<Range<usize>>,
    allowed: &[Key],
    diags: &mut Diagnostics,
) -> Section {
    let mut s = Section {
        path,
        span,
        values: Vec::new(),
        mistyped: Vec::new(),
    };
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let Some(k) = allowed.iter().find(|k| k.name == name) else {
            let (message, hint) = keys::unknown_in(name, allowed, kind);
            diags.push(
                text,
                Some(key.span()),
                s.key(&keys::key_text(name)),
                message,
                hint,
            );
            continue;
        };
        match keys::typed(k, value) {
            Some(v) => s.values.push((k.name, value.span(), v)),
            None => {
                s.mistyped.push(k.name);
                let (message, hint) = keys::type_problem(k, value.get_ref());
                diags.push(text, Some(value.span()), s.key(k.name), message, hint);
            }
        }
    }
    s
}

//! The shape of a system description: its tables, their keys and the type of each, and a
//! reader that turns the parsed TOML into located values. Unknown keys and wrong types are
//! errors (the rule serde's `deny_unknown_fields` gives), but the reader reports every one of
//! them and carries on, so the checker can still look at everything else.

use super::check;
use super::diagnostics::Diagnostics;
use super::keys::{self, Key, QUBE_KEYS, SYSTEM_KEYS, Value};
use std::ops::Range;
use toml::de::{DeTable, DeValue};
/// One table (`[system]` or a `[[qube]]`) with its well-typed values.
pub(super) struct Section {
    /// How diagnostics name the table: `system`, `qube "net"` or `qube[2]`.
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
                Value::Number(_) => None,
            })
    }

    /// The number value of `key` and where it is, if present and a whole number.
    pub fn number(&self, key: &str) -> Option<(i128, Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Number(n) => Some((*n, span.clone())),
                Value::Text(_) => None,
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

/// A description that parsed as TOML, split into its tables.
pub(super) struct Raw {
    /// `[system]`, when present and a table.
    pub system: Option<Section>,
    /// The `[[qube]]` tables, in file order.
    pub qubes: Vec<Section>,
    /// Where the `qube` key is, when present.
    pub qube_span: Option<Range<usize>>,
    /// Whether `qube` or one of its items was not a table (already reported).
    pub qube_malformed: bool,
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
        qubes: Vec::new(),
        qube_span: None,
        qube_malformed: false,
    };
    for (key, value) in root.get_ref() {
        let span = Some(value.span());
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("system", DeValue::Table(t)) => {
                raw.system = Some(section(text, t, "system".into(), span, SYSTEM_KEYS, diags));
            }
            ("system", _) => diags.push(
                text,
                span,
                "system",
                "system must be a table",
                "write it as a [system] header followed by name = ... and ram_mib = ... lines",
            ),
            ("qube", v) => {
                raw.qube_span = Some(key.span());
                read_qubes(text, v, span, &mut raw, diags);
            }
            (other, _) => {
                let (message, hint) = keys::unknown_top(other);
                diags.push(text, Some(key.span()), keys::key_text(other), message, hint);
            }
        }
    }
    Some(raw)
}

/// Reads the `qube` array of tables.
fn read_qubes(
    text: &str,
    value: &DeValue<'_>,
    span: Option<Range<usize>>,
    raw: &mut Raw,
    diags: &mut Diagnostics,
) {
    let DeValue::Array(items) = value else {
        let hint = "write [[qube]] (double brackets) above each qube's keys";
        raw.qube_malformed = true;
        return diags.push(text, span, "qube", "qube must be a list of tables", hint);
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
            Some(n) => format!("qube \"{n}\""),
            None => format!("qube[{i}]"),
        };
        let span = Some(item.span());
        match item.get_ref() {
            DeValue::Table(t) => raw
                .qubes
                .push(section(text, t, path, span, QUBE_KEYS, diags)),
            _ => {
                raw.qube_malformed = true;
                let hint = "write [[qube]] (double brackets) above each qube's keys";
                diags.push(text, span, path, "each qube must be a table", hint);
            }
        }
    }
}

/// Reads one table against its allowed keys.
fn section(
    text: &str,
    table: &DeTable<'_>,
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
            let (message, hint) = keys::unknown_in(name, allowed, s.path == "system");
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

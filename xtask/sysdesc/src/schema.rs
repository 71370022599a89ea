//! The shape of a system description: its tables, their keys and the type of each, and a
//! reader that turns the parsed TOML into located values. Unknown keys and wrong types are
//! errors (the rule serde's `deny_unknown_fields` gives), but the reader reports every one of
//! them and carries on, so the checker can still look at everything else.

use super::check;
use super::diagnostics::Diagnostics;
use super::keys::{
    self, CHANNEL_KEYS, Key, Located, LocatedNumber, NETWORK_KEYS, POLICY_KEYS, QUBE_KEYS,
    RULE_KEYS, SYSTEM_KEYS, Ty, Value,
};
use std::collections::HashMap;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// One table (`[system]`, `[network]`, a `[[qube]]`, a `[[channel]]`, a `[[qube.rule]]` or a
/// `[[policy]]`) with its well-typed values.
pub(super) struct Section {
    /// How diagnostics name the table: `system`, `qube "net"`, `qube[2]`, `channel "uplink"`,
    /// `qube "work".rule[1]`, `policy[0]`.
    pub path: String,
    /// Where the table is.
    pub span: Option<Range<usize>>,
    values: Vec<(&'static str, Range<usize>, Value)>,
    /// Keys holding lists of tables (a qube's `rule`), read like the top-level ones.
    lists: Vec<(&'static str, Tables)>,
    /// Keys present with a wrong type (already reported).
    mistyped: Vec<&'static str>,
    /// Keys this table does not have (already reported).
    unknown: Vec<String>,
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

    /// The value of the `true`/`false` key `key` and where it is, if present and of that type.
    pub fn flag(&self, key: &str) -> Option<(bool, Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Bool(b) => Some((*b, span.clone())),
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

    /// The list of whole numbers of `key` (each with where it is) and where the list is, if
    /// present and a list of whole numbers.
    pub fn numbers(&self, key: &str) -> Option<(&[LocatedNumber], Range<usize>)> {
        self.values
            .iter()
            .find(|(k, ..)| *k == key)
            .and_then(|(_, span, v)| match v {
                Value::Numbers(numbers) => Some((numbers.as_slice(), span.clone())),
                _ => None,
            })
    }

    /// The tables of the list-of-tables key `key`, if present (`malformed` tells whether
    /// some of it was not tables).
    pub fn tables(&self, key: &str) -> Option<&Tables> {
        self.lists.iter().find(|(k, _)| *k == key).map(|(_, t)| t)
    }

    /// Whether `key` is missing altogether (not merely of the wrong type).
    pub fn absent(&self, key: &str) -> bool {
        !self.mistyped.contains(&key)
            && !self.values.iter().any(|(k, ..)| *k == key)
            && !self.lists.iter().any(|(k, _)| *k == key)
    }

    /// Whether the unknown key `key` was written in this table (and reported).
    pub fn has_unknown(&self, key: &str) -> bool {
        self.unknown.iter().any(|k| k == key)
    }

    /// The key path of `key` in this table.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// The tables of one array of tables (`[[qube]]`, `[[channel]]`, `[[policy]]` or a qube's
/// `[[qube.rule]]`).
#[derive(Default)]
pub(super) struct Tables {
    /// The tables, in file order.
    pub items: Vec<Section>,
    /// Where the key (`qube`, `channel`, `rule`) is, when present.
    pub span: Option<Range<usize>>,
    /// Whether the key or one of its items was not a table (already reported).
    pub malformed: bool,
}

impl Tables {
    /// Each table's `name`, in file order (`None` where it has no text `name`).
    pub fn item_names(&self) -> Vec<Option<&str>> {
        self.items
            .iter()
            .map(|t| t.text("name").map(|(n, _)| n))
            .collect()
    }

    /// Whether a name can be checked against these tables: there are some and none is
    /// malformed (else every name would look unknown; that problem is reported already).
    pub fn known(&self) -> bool {
        !self.items.is_empty() && !self.malformed
    }
}

/// A description that parsed as TOML, split into its tables.
pub(super) struct Raw {
    /// `[system]`, when present and a table.
    pub system: Option<Section>,
    /// `[network]`, when present and a table.
    pub network: Option<Section>,
    /// The `[[qube]]` tables.
    pub qubes: Tables,
    /// The `[[channel]]` tables.
    pub channels: Tables,
    /// The `[[policy]]` tables, in order.
    pub policy: Tables,
}

/// Parses `text` and reads its tables, reporting syntax errors, unknown keys and wrong types.
/// `None` when the text is not TOML (nothing more can be checked then).
pub(super) fn read(text: &str, diags: &mut Diagnostics) -> Option<Raw> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        // A rule above every qube makes TOML see `qube` defined twice; say what happened.
        let stray = super::syntax::stray_rule(text);
        if let Some(span) = &stray {
            stray_rule(text, span.clone(), diags);
        }
        for e in errors {
            if stray.is_some() && e.message().contains("duplicate") {
                continue;
            }
            // An error without a place (the recursion limit) is found by reading prefixes.
            let span = e
                .span()
                .unwrap_or_else(|| super::syntax::locate(text, e.message()));
            let key = super::syntax::key_at(text, span.start);
            diags.push(
                text,
                Some(span),
                key,
                super::syntax::message(e.message()),
                super::syntax::hint(e.message()),
            );
        }
        return None;
    }
    let mut raw = Raw {
        system: None,
        network: None,
        qubes: Tables::default(),
        channels: Tables::default(),
        policy: Tables::default(),
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
            ("network", DeValue::Table(t)) => {
                let path = "network".to_string();
                raw.network = Some(section(text, t, "network", path, span, NETWORK_KEYS, diags));
            }
            ("network", _) => diags.push(
                text,
                span,
                "network",
                "network must be a table",
                "write it as a [network] header followed by clients = \"10.137.0.0/24\" and \
                 the other addresses, one per line",
            ),
            ("qube", DeValue::Table(_)) if super::syntax::stray_rule(text).is_some() => {
                let span = super::syntax::stray_rule(text).unwrap_or_default();
                stray_rule(text, span, diags);
                raw.qubes.malformed = true;
            }
            ("qube", v) => {
                let list = List::top("qube", QUBE_KEYS);
                raw.qubes = read_tables(text, &list, v, key.span(), span, diags);
            }
            ("channel", v) => {
                let list = List::top("channel", CHANNEL_KEYS);
                raw.channels = read_tables(text, &list, v, key.span(), span, diags);
            }
            ("policy", v) => {
                let list = List::top("policy", POLICY_KEYS);
                raw.policy = read_tables(text, &list, v, key.span(), span, diags);
            }
            (other, _) => {
                let (message, hint) = keys::unknown_top(other);
                diags.push(text, Some(key.span()), keys::key_text(other), message, hint);
            }
        }
    }
    Some(raw)
}

/// Reports a `[[qube.rule]]` header above every `[[qube]]`, at `span`.
fn stray_rule(text: &str, span: Range<usize>, diags: &mut Diagnostics) {
    diags.push(
        text,
        Some(span),
        "qube.rule",
        "a [[qube.rule]] comes before any [[qube]]",
        "a rule belongs to the qube above it: move the [[qube.rule]] tables below the keys of \
         the qube whose traffic they filter",
    );
}

/// An array of tables as the reader sees it.
struct List {
    /// What one item is called in messages: `qube`, `channel`, `rule`.
    item: &'static str,
    /// Its header, without brackets: `qube`, `channel`, `qube.rule`.
    header: &'static str,
    /// The key path of the list: `qube`, or `qube "work".rule` for a qube's rules.
    path: String,
    /// The keys an item may have.
    keys: &'static [Key],
    /// Whether items are named in diagnostics by their `name` (rules have none).
    named: bool,
}

impl List {
    fn top(kind: &'static str, keys: &'static [Key]) -> List {
        List {
            item: kind,
            header: kind,
            path: kind.to_string(),
            keys,
            named: true,
        }
    }
}

/// Reads the array of tables `list`, each item against its keys. An item is named by its
/// name in diagnostics when that name is valid and unique, by its index otherwise.
fn read_tables(
    text: &str,
    list: &List,
    value: &DeValue<'_>,
    key_span: Range<usize>,
    span: Option<Range<usize>>,
    diags: &mut Diagnostics,
) -> Tables {
    let mut tables = Tables {
        span: Some(key_span),
        ..Tables::default()
    };
    let (item, header) = (list.item, list.header);
    let fix = format!("write [[{header}]] (double brackets) above each {item}'s keys");
    let DeValue::Array(items) = value else {
        tables.malformed = true;
        let message = format!("{item} must be a list of tables");
        diags.push(text, span, list.path.clone(), message, fix);
        return tables;
    };
    let names: Vec<Option<&str>> = items
        .iter()
        .map(|item| {
            item.get_ref()
                .get("name")
                .and_then(|n| n.get_ref().as_str())
                .filter(|_| list.named)
        })
        .collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in names.iter().flatten() {
        *uses.entry(n).or_default() += 1;
    }
    for (i, entry) in items.iter().enumerate() {
        let unique_valid =
            names[i].filter(|n| check::name_problem(n).is_none() && uses.get(n) == Some(&1));
        let path = match unique_valid {
            Some(n) => format!("{} \"{n}\"", list.path),
            None => format!("{}[{i}]", list.path),
        };
        let span = Some(entry.span());
        match entry.get_ref() {
            DeValue::Table(t) => tables
                .items
                .push(section(text, t, header, path, span, list.keys, diags)),
            _ => {
                tables.malformed = true;
                let message = format!("each {item} must be a table");
                diags.push(text, span, path, message, fix.clone());
            }
        }
    }
    tables
}

/// Reads one table of kind `kind` (`system`, `network`, `qube`, `channel`, `qube.rule`,
/// `policy`) against its allowed keys.
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
        lists: Vec::new(),
        mistyped: Vec::new(),
        unknown: Vec::new(),
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
            s.unknown.push(name.to_string());
            continue;
        };
        if k.ty == Ty::Tables {
            let list = List {
                item: k.name,
                header: "qube.rule",
                path: s.key(k.name),
                keys: RULE_KEYS,
                named: false,
            };
            let tables = read_tables(
                text,
                &list,
                value.get_ref(),
                key.span(),
                Some(value.span()),
                diags,
            );
            s.lists.push((k.name, tables));
            continue;
        }
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

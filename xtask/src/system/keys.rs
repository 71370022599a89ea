//! The keys a system description may use, with their types and example values, and the
//! wording of the problems a key or value can have: unknown keys (with where they probably
//! belong) and values of the wrong type (with the fix).

use super::hints;
use std::ops::Range;
use toml::Spanned;
use toml::de::DeValue;

/// The type a key takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Text,
    Number,
    /// A list of text values (a channel's endpoints).
    Names,
}

/// One allowed key of a table, with an example value for hints.
pub(super) struct Key {
    pub name: &'static str,
    pub ty: Ty,
    pub example: &'static str,
}

/// Keys of `[system]`.
pub(super) const SYSTEM_KEYS: &[Key] = &[
    Key {
        name: "name",
        ty: Ty::Text,
        example: "\"default\"",
    },
    Key {
        name: "ram_mib",
        ty: Ty::Number,
        example: "256",
    },
];

/// Keys of each `[[qube]]`.
pub(super) const QUBE_KEYS: &[Key] = &[
    Key {
        name: "name",
        ty: Ty::Text,
        example: "\"net\"",
    },
    Key {
        name: "kind",
        ty: Ty::Text,
        example: "\"unikernel\"",
    },
    Key {
        name: "image",
        ty: Ty::Text,
        example: "\"net\"",
    },
    Key {
        name: "memory_mib",
        ty: Ty::Number,
        example: "8",
    },
    Key {
        name: "label",
        ty: Ty::Text,
        example: "\"red\"",
    },
    Key {
        name: "restart",
        ty: Ty::Text,
        example: "\"on-failure\"",
    },
    Key {
        name: "args",
        ty: Ty::Text,
        example: "\"\"",
    },
];

/// Keys of each `[[channel]]`.
pub(super) const CHANNEL_KEYS: &[Key] = &[
    Key {
        name: "name",
        ty: Ty::Text,
        example: "\"uplink\"",
    },
    Key {
        name: "between",
        ty: Ty::Names,
        example: "[\"net\", \"firewall\"]",
    },
    Key {
        name: "size_kib",
        ty: Ty::Number,
        example: "16",
    },
    Key {
        name: "slot_size",
        ty: Ty::Number,
        example: "256",
    },
    Key {
        name: "purpose",
        ty: Ty::Text,
        example: "\"frames from net\"",
    },
];

/// Words people write for a channel key, and the key they mean.
const CHANNEL_ALIASES: &[(&str, &str)] = &[
    ("size", "size_kib"),
    ("size_bytes", "size_kib"),
    ("kib", "size_kib"),
    ("memory_kib", "size_kib"),
    ("slot", "slot_size"),
    ("slots", "slot_size"),
    ("slot_bytes", "slot_size"),
    ("endpoints", "between"),
    ("ends", "between"),
    ("qubes", "between"),
    ("peers", "between"),
    ("from", "between"),
    ("to", "between"),
    ("description", "purpose"),
    ("about", "purpose"),
    ("comment", "purpose"),
];

/// Top-level keys.
pub(super) const TOP_KEYS: &[&str] = &["system", "qube", "channel"];

/// A text value and where it is.
pub(super) type Located = (String, Range<usize>);

/// A value of the right type.
pub(super) enum Value {
    Text(String),
    Number(i128),
    /// Text values with where each one is.
    Names(Vec<Located>),
}

/// The value, if it has the key's type.
pub(super) fn typed(key: &Key, value: &Spanned<DeValue<'_>>) -> Option<Value> {
    match (key.ty, value.get_ref()) {
        (Ty::Text, DeValue::String(s)) => Some(Value::Text(s.to_string())),
        (Ty::Number, DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Value::Number),
        (Ty::Names, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Some((s.to_string(), item.span())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Value::Names),
        _ => None,
    }
}

/// The unit of a number key, for hints.
fn unit(key: &str) -> &'static str {
    if key.ends_with("_mib") {
        "MiB"
    } else if key.ends_with("_kib") {
        "KiB"
    } else {
        "bytes"
    }
}

/// Message and hint for a value of the wrong type.
pub(super) fn type_problem(key: &Key, value: &DeValue<'_>) -> (String, String) {
    let expected = match key.ty {
        Ty::Text => "text in double quotes",
        Ty::Number => "a whole number",
        Ty::Names => "a list of qube names in double quotes",
    };
    let found = match value {
        DeValue::Array(items) => match items.iter().find(|i| i.get_ref().as_str().is_none()) {
            Some(item) => format!("a list holding {} values", item.get_ref().type_str()),
            None => "array".to_string(),
        },
        other => other.type_str().to_string(),
    };
    let message = format!("expected {expected}, found {found}");
    let hint = match (key.ty, value) {
        (Ty::Names, DeValue::String(s)) => {
            let names: Vec<String> = s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .take(4)
                .map(|n| format!("{n:?}"))
                .collect();
            if names.len() == 2 {
                format!(
                    "write both names in brackets: {} = [{}]",
                    key.name,
                    names.join(", ")
                )
            } else {
                format!(
                    "write the two qube names in brackets, e.g. {} = {}",
                    key.name, key.example
                )
            }
        }
        (Ty::Number, DeValue::String(s)) if s.trim().parse::<u64>().is_ok() => {
            format!("remove the quotes: {} = {}", key.name, s.trim())
        }
        (Ty::Number, DeValue::Float(f)) => match f.as_str().parse::<f64>() {
            Ok(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
                format!("write it without a fraction: {} = {x:.0}", key.name)
            }
            _ => format!(
                "write a whole number of {}, e.g. {} = {}",
                unit(key.name),
                key.name,
                key.example
            ),
        },
        _ => format!("write it as {} = {}", key.name, key.example),
    };
    (message, hint)
}

/// Message and hint for an unknown top-level key, pointing to where it probably belongs.
pub(super) fn unknown_top(name: &str) -> (String, String) {
    let hint = if SYSTEM_KEYS.iter().any(|k| k.name == name) {
        format!("{name} belongs in the [system] table: put it below the [system] header")
    } else if QUBE_KEYS.iter().any(|k| k.name == name) {
        format!("{name} belongs to a qube: put it below a [[qube]] header")
    } else if CHANNEL_KEYS.iter().any(|k| k.name == name) {
        format!("{name} belongs to a channel: put it below a [[channel]] header")
    } else if let Some(c) = hints::closest(name, TOP_KEYS) {
        format!(
            "did you mean {c}? a description has one [system] table, [[qube]] tables and \
             [[channel]] tables"
        )
    } else {
        "a description has one [system] table, [[qube]] tables and [[channel]] tables, \
         nothing else"
            .to_string()
    };
    (format!("unknown key {}", hints::quoted(name)), hint)
}

/// Message and hint for an unknown key of the table `table` (`system`, `qube` or
/// `channel`), whose keys are `keys`.
pub(super) fn unknown_in(name: &str, keys: &[Key], table: &str) -> (String, String) {
    let allowed: Vec<&str> = keys.iter().map(|k| k.name).collect();
    let shown = match table {
        "system" => "[system]".to_string(),
        other => format!("a [[{other}]]"),
    };
    let table_text = shown.as_str();
    let alias = match table {
        "channel" => CHANNEL_ALIASES
            .iter()
            .find(|(alias, _)| name.eq_ignore_ascii_case(alias))
            .map(|(_, key)| *key),
        _ => None,
    };
    // A key of another table, written in this one (e.g. after the wrong header).
    let owner = [("qube", QUBE_KEYS), ("channel", CHANNEL_KEYS)]
        .into_iter()
        .find(|(other, keys)| {
            *other != table && !allowed.contains(&name) && keys.iter().any(|k| k.name == name)
        })
        .map(|(other, _)| other);
    let hint = match alias.or_else(|| hints::closest(name, &allowed)) {
        Some(c) => format!(
            "did you mean {c}? keys of {table_text} are {}",
            hints::list(&allowed)
        ),
        None => match owner {
            Some(other) => format!(
                "{name} belongs to a {other}, not {table_text}: put it below a [[{other}]] \
                 header; keys of {table_text} are {}",
                hints::list(&allowed)
            ),
            None => format!("keys of {table_text} are {}", hints::list(&allowed)),
        },
    };
    (format!("unknown key {}", hints::quoted(name)), hint)
}

/// A key as it would be written in TOML: bare when it can be, quoted otherwise.
pub(super) fn key_text(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_string()
    } else {
        hints::quoted(name)
    }
}

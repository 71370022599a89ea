//! The keys a system description may use, with their types and example values, and the
//! wording of the problems a key or value can have: unknown keys (with where they probably
//! belong) and values of the wrong type (with the fix).

use super::hints;
use toml::Spanned;
use toml::de::DeValue;

/// The type a key takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Text,
    Number,
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

/// Top-level keys.
pub(super) const TOP_KEYS: &[&str] = &["system", "qube"];

/// A value of the right type.
pub(super) enum Value {
    Text(String),
    Number(i128),
}

/// The value, if it has the key's type.
pub(super) fn typed(key: &Key, value: &Spanned<DeValue<'_>>) -> Option<Value> {
    match (key.ty, value.get_ref()) {
        (Ty::Text, DeValue::String(s)) => Some(Value::Text(s.to_string())),
        (Ty::Number, DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Value::Number),
        _ => None,
    }
}

/// Message and hint for a value of the wrong type.
pub(super) fn type_problem(key: &Key, value: &DeValue<'_>) -> (String, String) {
    let expected = match key.ty {
        Ty::Text => "text in double quotes",
        Ty::Number => "a whole number",
    };
    let message = format!("expected {expected}, found {}", value.type_str());
    let hint = match (key.ty, value) {
        (Ty::Number, DeValue::String(s)) if s.trim().parse::<u64>().is_ok() => {
            format!("remove the quotes: {} = {}", key.name, s.trim())
        }
        (Ty::Number, DeValue::Float(f)) => match f.as_str().parse::<f64>() {
            Ok(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
                format!("write it without a fraction: {} = {x:.0}", key.name)
            }
            _ => format!(
                "write a whole number of MiB, e.g. {} = {}",
                key.name, key.example
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
    } else if let Some(c) = hints::closest(name, TOP_KEYS) {
        format!("did you mean {c}? a description has one [system] table and [[qube]] tables")
    } else {
        "a description has one [system] table and [[qube]] tables, nothing else".to_string()
    };
    (format!("unknown key {}", hints::quoted(name)), hint)
}

/// Message and hint for an unknown key of `[system]` (`system`) or of a `[[qube]]`.
pub(super) fn unknown_in(name: &str, keys: &[Key], system: bool) -> (String, String) {
    let allowed: Vec<&str> = keys.iter().map(|k| k.name).collect();
    let table = if system { "[system]" } else { "a [[qube]]" };
    let hint = match hints::closest(name, &allowed) {
        Some(c) => format!(
            "did you mean {c}? keys of {table} are {}",
            hints::list(&allowed)
        ),
        None => format!("keys of {table} are {}", hints::list(&allowed)),
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

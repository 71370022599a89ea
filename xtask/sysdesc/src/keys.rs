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
    /// A list of text values (a channel's endpoints, a qube's devices, DNS servers).
    Names,
    /// A list of whole numbers (a qube's `cpus`).
    Numbers,
    /// Text, or a whole number taken as its text (`dstports = 443` or `"1024-2048"`).
    TextOrNumber,
    /// A list of tables (a qube's `[[qube.rule]]` firewall rules).
    Tables,
    /// `true` or `false` (a qube's `disposable`).
    Bool,
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
    Key {
        name: "iommu",
        ty: Ty::Text,
        example: "\"required\"",
    },
];

/// Keys of `[network]`, the addresses of the client network behind the routers.
pub(super) const NETWORK_KEYS: &[Key] = &[
    Key {
        name: "clients",
        ty: Ty::Text,
        example: "\"10.137.0.0/24\"",
    },
    Key {
        name: "gateway",
        ty: Ty::Text,
        example: "\"10.137.0.1\"",
    },
    Key {
        name: "dns",
        ty: Ty::Names,
        example: "[\"10.139.1.1\", \"10.139.1.2\"]",
    },
    Key {
        name: "upstream_dns",
        ty: Ty::Text,
        example: "\"10.0.2.2:5353\"",
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
    Key {
        name: "devices",
        ty: Ty::Names,
        example: "[\"pci-id:1af4:1041\"]",
    },
    Key {
        name: "netvm",
        ty: Ty::Text,
        example: "\"firewall\"",
    },
    Key {
        name: "ip",
        ty: Ty::Text,
        example: "\"10.137.0.10\"",
    },
    Key {
        name: "rule",
        ty: Ty::Tables,
        example: "[{ action = \"drop\" }]",
    },
    Key {
        name: "template",
        ty: Ty::Text,
        example: "\"debian\"",
    },
    Key {
        name: "kernel_args",
        ty: Ty::Text,
        example: "\"mitigations=auto\"",
    },
    Key {
        name: "disposable",
        ty: Ty::Bool,
        example: "true",
    },
    Key {
        name: "disposables",
        ty: Ty::Names,
        example: "[\"disp\"]",
    },
    Key {
        name: "guivm",
        ty: Ty::Text,
        example: "\"gui\"",
    },
    Key {
        name: "window_size",
        ty: Ty::Text,
        example: "\"800x600\"",
    },
    Key {
        name: "clipboard_deny",
        ty: Ty::Names,
        example: "[\"work\"]",
    },
    Key {
        name: "io_ports",
        ty: Ty::Names,
        example: "[\"0x60\", \"0x64\"]",
    },
    Key {
        name: "framebuffer",
        ty: Ty::Bool,
        example: "true",
    },
    Key {
        name: "tags",
        ty: Ty::Names,
        example: "[\"dev\"]",
    },
    Key {
        name: "default_dispvm",
        ty: Ty::Text,
        example: "\"disp\"",
    },
    Key {
        name: "cpus",
        ty: Ty::Numbers,
        example: "[0, 2]",
    },
    Key {
        name: "vcpus",
        ty: Ty::Number,
        example: "2",
    },
    Key {
        name: "storagevm",
        ty: Ty::Text,
        example: "\"storage\"",
    },
    Key {
        name: "private_mib",
        ty: Ty::Number,
        example: "16",
    },
];

/// Keys of each `[[policy]]` (a qrexec policy entry, as in Qubes' policy files).
pub(super) const POLICY_KEYS: &[Key] = &[
    Key {
        name: "service",
        ty: Ty::Text,
        example: "\"qubes.Filecopy\"",
    },
    Key {
        name: "source",
        ty: Ty::Text,
        example: "\"@anyvm\"",
    },
    Key {
        name: "target",
        ty: Ty::Text,
        example: "\"@default\"",
    },
    Key {
        name: "action",
        ty: Ty::Text,
        example: "\"ask\"",
    },
    Key {
        name: "redirect",
        ty: Ty::Text,
        example: "\"personal\"",
    },
    Key {
        name: "default_target",
        ty: Ty::Text,
        example: "\"personal\"",
    },
];

/// Keys of each `[[qube.rule]]` (a firewall rule, as in Qubes' `qvm-firewall`).
pub(super) const RULE_KEYS: &[Key] = &[
    Key {
        name: "action",
        ty: Ty::Text,
        example: "\"accept\"",
    },
    Key {
        name: "dsthost",
        ty: Ty::Text,
        example: "\"10.0.2.2\"",
    },
    Key {
        name: "proto",
        ty: Ty::Text,
        example: "\"tcp\"",
    },
    Key {
        name: "dstports",
        ty: Ty::TextOrNumber,
        example: "\"443\"",
    },
    Key {
        name: "icmptype",
        ty: Ty::Number,
        example: "8",
    },
    Key {
        name: "specialtarget",
        ty: Ty::Text,
        example: "\"dns\"",
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
        name: "bulk_kib",
        ty: Ty::Number,
        example: "1024",
    },
    Key {
        name: "purpose",
        ty: Ty::Text,
        example: "\"frames from net\"",
    },
];

/// Words people write for a key, and the key they mean, per table.
const ALIASES: &[(&str, &[(&str, &str)])] = &[
    ("channel", CHANNEL_ALIASES),
    ("qube", QUBE_ALIASES),
    ("qube.rule", RULE_ALIASES),
    ("policy", POLICY_ALIASES),
    ("network", NETWORK_ALIASES),
];

/// Words people write for a qube key, and the key they mean.
const QUBE_ALIASES: &[(&str, &str)] = &[
    ("address", "ip"),
    ("ip_address", "ip"),
    ("ipv4", "ip"),
    ("device", "devices"),
    ("pci", "devices"),
    ("pci_devices", "devices"),
    ("net_vm", "netvm"),
    ("storage_vm", "storagevm"),
    ("storage", "storagevm"),
    ("private_size_mib", "private_mib"),
    ("private_size", "private_mib"),
    ("volume_mib", "private_mib"),
    ("uplink", "netvm"),
    ("firewall", "rule"),
    ("cmdline", "kernel_args"),
    ("kernel_cmdline", "kernel_args"),
    ("append", "kernel_args"),
    ("dispvm", "disposable"),
    ("dispvms", "disposables"),
    ("may_start", "disposables"),
    ("ports", "io_ports"),
    ("ioports", "io_ports"),
    ("io_port", "io_ports"),
    ("port_io", "io_ports"),
    ("tag", "tags"),
    ("default_disposable", "default_dispvm"),
    ("dispvm_default", "default_dispvm"),
    ("fb", "framebuffer"),
    ("efifb", "framebuffer"),
    ("display", "framebuffer"),
    ("cpu", "cpus"),
    ("affinity", "cpus"),
    ("cpu_affinity", "cpus"),
    ("pin", "cpus"),
    ("pinned_cpus", "cpus"),
    ("vcpu", "vcpus"),
    ("num_vcpus", "vcpus"),
    ("nr_vcpus", "vcpus"),
    ("vcpu_count", "vcpus"),
    ("smp", "vcpus"),
];

/// Words people write for a firewall rule key (some from Qubes' older syntax).
const RULE_ALIASES: &[(&str, &str)] = &[
    ("port", "dstports"),
    ("ports", "dstports"),
    ("dstport", "dstports"),
    ("dst4", "dsthost"),
    ("dst", "dsthost"),
    ("host", "dsthost"),
    ("destination", "dsthost"),
    ("protocol", "proto"),
    ("target", "specialtarget"),
    ("icmp_type", "icmptype"),
    ("policy", "action"),
];

/// Words people write for a policy key (some from Qubes' policy files).
const POLICY_ALIASES: &[(&str, &str)] = &[
    ("rpc", "service"),
    ("from", "source"),
    ("src", "source"),
    ("to", "target"),
    ("dest", "target"),
    ("destination", "target"),
    ("verdict", "action"),
    ("decision", "action"),
    ("default", "default_target"),
];

/// Words people write for a `[network]` key.
const NETWORK_ALIASES: &[(&str, &str)] = &[
    ("network", "clients"),
    ("subnet", "clients"),
    ("client_network", "clients"),
    ("router", "gateway"),
    ("dns_servers", "dns"),
    ("nameservers", "dns"),
    ("upstream", "upstream_dns"),
    ("resolver", "upstream_dns"),
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
    ("bulk", "bulk_kib"),
    ("bulk_size", "bulk_kib"),
    ("bulk_area", "bulk_kib"),
    ("bulk_bytes", "bulk_kib"),
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
pub(super) const TOP_KEYS: &[&str] = &["system", "network", "qube", "channel", "policy"];

/// A text value and where it is.
pub(super) type Located = (String, Range<usize>);
/// A whole number and where it is.
pub(super) type LocatedNumber = (i128, Range<usize>);

/// A value of the right type.
pub(super) enum Value {
    Text(String),
    Number(i128),
    /// Text values with where each one is.
    Names(Vec<Located>),
    /// Whole numbers with where each one is.
    Numbers(Vec<LocatedNumber>),
    Bool(bool),
}

/// The value, if it has the key's type.
pub(super) fn typed(key: &Key, value: &Spanned<DeValue<'_>>) -> Option<Value> {
    match (key.ty, value.get_ref()) {
        (Ty::Text, DeValue::String(s)) => Some(Value::Text(s.to_string())),
        (Ty::Number, DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Value::Number),
        (Ty::TextOrNumber, DeValue::String(s)) => Some(Value::Text(s.to_string())),
        (Ty::TextOrNumber, DeValue::Integer(i)) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| Value::Text(n.to_string())),
        (Ty::Names, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Some((s.to_string(), item.span())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Value::Names),
        (Ty::Numbers, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
                    .ok()
                    .map(|n| (n, item.span())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Value::Numbers),
        (Ty::Bool, DeValue::Boolean(b)) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// The unit of a number key, for hints.
fn unit(key: &str) -> &'static str {
    if key.ends_with("_mib") {
        "MiB"
    } else if key.ends_with("_kib") {
        "KiB"
    } else if key == "vcpus" {
        "virtual CPUs"
    } else {
        "bytes"
    }
}

/// What a list key holds, for messages.
fn list_of(key: &str) -> &'static str {
    match key {
        "between" => "qube names",
        "devices" => "devices",
        "dns" => "addresses",
        "disposables" | "clipboard_deny" => "qube names",
        "tags" => "tag names",
        "io_ports" => "ports",
        _ => "text values",
    }
}

/// Message and hint for a value of the wrong type.
pub(super) fn type_problem(key: &Key, value: &DeValue<'_>) -> (String, String) {
    let expected = match key.ty {
        Ty::Text => "text in double quotes".to_string(),
        Ty::Number => "a whole number".to_string(),
        Ty::Names => format!("a list of {} in double quotes", list_of(key.name)),
        Ty::Numbers => "a list of whole numbers".to_string(),
        Ty::TextOrNumber => "text in double quotes or a whole number".to_string(),
        Ty::Tables => "a list of tables".to_string(),
        Ty::Bool => "true or false".to_string(),
    };
    let found = match value {
        DeValue::Array(items) => {
            let odd = |v: &DeValue<'_>| match key.ty {
                Ty::Numbers => !matches!(v, DeValue::Integer(_)),
                _ => v.as_str().is_none(),
            };
            match items.iter().find(|i| odd(i.get_ref())) {
                Some(item) => format!("a list holding {} values", item.get_ref().type_str()),
                None => "array".to_string(),
            }
        }
        other => other.type_str().to_string(),
    };
    let message = format!("expected {expected}, found {found}");
    let hint = match (key.ty, value) {
        (Ty::Names, DeValue::String(s)) if key.name == "between" => {
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
        (Ty::Names, DeValue::String(s)) => {
            let items: Vec<String> = s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|n| !n.is_empty())
                .take(4)
                .map(|n| format!("{n:?}"))
                .collect();
            if items.is_empty() {
                format!("write it as a list: {} = {}", key.name, key.example)
            } else {
                format!(
                    "write it as a list, in brackets: {} = [{}]",
                    key.name,
                    items.join(", ")
                )
            }
        }
        // `cpus = 2` may mean two virtual CPUs rather than a pin to CPU 2.
        (Ty::Numbers, DeValue::Integer(i)) if key.name == "cpus" => {
            let n = i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(2);
            format!(
                "{} (the CPUs it may run on); for {n} virtual CPUs write vcpus = {n}",
                numbers_hint(key, value)
            )
        }
        (Ty::Numbers, _) => numbers_hint(key, value),
        (Ty::Bool, DeValue::String(s)) if matches!(s.trim(), "true" | "false") => {
            format!("remove the quotes: {} = {}", key.name, s.trim())
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

/// The fix for a list of numbers written otherwise: quoted numbers, one number without
/// brackets, or numbers in a text.
fn numbers_hint(key: &Key, value: &DeValue<'_>) -> String {
    let (fix, words): (&str, Option<Vec<String>>) = match value {
        DeValue::Array(items) => (
            "remove the quotes",
            items
                .iter()
                .map(|i| i.get_ref().as_str().map(|w| w.trim().to_string()))
                .collect(),
        ),
        DeValue::Integer(i) => (
            "write it as a list",
            i128::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| vec![n.to_string()]),
        ),
        DeValue::String(s) => (
            "write it as a list, in brackets",
            Some(
                s.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        ),
        _ => ("", None),
    };
    match words.filter(|w| !w.is_empty() && w.iter().all(|w| w.parse::<u64>().is_ok())) {
        Some(words) => format!("{fix}: {} = [{}]", key.name, words.join(", ")),
        None => format!("write it as {} = {}", key.name, key.example),
    }
}

/// What a description holds, for hints about keys that fit nowhere.
const TOP_SHAPE: &str = "a description has one [system] table, an optional [network] table, \
                         [[qube]] tables (each with optional [[qube.rule]] tables), \
                         [[channel]] tables and [[policy]] tables";

/// The table other than `table` whose key `name` is, as (table, whose key it is, where
/// to put it).
fn owner_of(name: &str, table: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const OWNERS: &[(&str, &[Key], &str, &str)] = &[
        (
            "system",
            SYSTEM_KEYS,
            "in the [system] table",
            "put it below the [system] header",
        ),
        (
            "network",
            NETWORK_KEYS,
            "in the [network] table",
            "put it below a [network] header",
        ),
        (
            "qube",
            QUBE_KEYS,
            "to a qube",
            "put it below a [[qube]] header",
        ),
        (
            "channel",
            CHANNEL_KEYS,
            "to a channel",
            "put it below a [[channel]] header",
        ),
        (
            "qube.rule",
            RULE_KEYS,
            "to a firewall rule",
            "put it below a [[qube.rule]] header, under the qube whose traffic it filters",
        ),
        (
            "policy",
            POLICY_KEYS,
            "to a qrexec policy entry",
            "put it below a [[policy]] header",
        ),
    ];
    OWNERS
        .iter()
        .find(|(other, keys, ..)| *other != table && keys.iter().any(|k| k.name == name))
        .map(|(other, _, who, put)| (*other, *who, *put))
}

/// Message and hint for an unknown top-level key, pointing to where it probably belongs.
pub(super) fn unknown_top(name: &str) -> (String, String) {
    let hint = if let Some((_, who, put)) = owner_of(name, "") {
        format!("{name} belongs {who}: {put}")
    } else if let Some(c) = hints::closest(name, TOP_KEYS) {
        format!("did you mean {c}? {TOP_SHAPE}")
    } else {
        format!("{TOP_SHAPE}, nothing else")
    };
    (format!("unknown key {}", hints::quoted(name)), hint)
}

/// Message and hint for an unknown key of the table `table` (`system`, `network`, `qube`,
/// `channel`, `qube.rule` or `policy`), whose keys are `keys`.
pub(super) fn unknown_in(name: &str, keys: &[Key], table: &str) -> (String, String) {
    let allowed: Vec<&str> = keys.iter().map(|k| k.name).collect();
    let shown = match table {
        "system" | "network" => format!("[{table}]"),
        other => format!("a [[{other}]]"),
    };
    let table_text = shown.as_str();
    let alias = ALIASES
        .iter()
        .find(|(t, _)| *t == table)
        .and_then(|(_, aliases)| aliases.iter().find(|(a, _)| name.eq_ignore_ascii_case(a)))
        .map(|(_, key)| *key);
    // A key of another table, written in this one (e.g. after the wrong header).
    let owner = owner_of(name, table).filter(|_| !allowed.contains(&name));
    let keys_are = format!("keys of {table_text} are {}", hints::list(&allowed));
    let hint = match alias.or_else(|| hints::closest(name, &allowed)) {
        Some(c) => format!("did you mean {c}? {keys_are}"),
        None => match owner {
            // Keys after a [[qube.rule]] header belong to that rule, up to the next header.
            Some(("qube", ..)) if table == "qube.rule" => format!(
                "{name} belongs to the qube, not to its rule: every key after a [[qube.rule]] \
                 header belongs to that rule, so move {name} above the qube's first \
                 [[qube.rule]]; {keys_are}"
            ),
            Some((_, who, put)) => {
                format!("{name} belongs {who}, not {table_text}: {put}; {keys_are}")
            }
            None => keys_are,
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

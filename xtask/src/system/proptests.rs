//! Property tests of the system compiler: no text makes it panic, every problem it reports is
//! complete, and every valid description compiles to a manifest that round-trips.

use super::*;
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{MAX_QUBES, RestartPolicy};
use proptest::prelude::*;

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

/// Compiles `text` and checks that a failure is well formed: every problem has a key, a
/// message and a hint, and the report names the file.
fn compile_checked(text: &str) -> Option<CompiledSystem> {
    match compile_str("systems/p.toml", text) {
        Ok(c) => Some(c),
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in diags.iter() {
                assert!(
                    !d.key.is_empty() && !d.message.is_empty() && !d.hint.is_empty(),
                    "{d}"
                );
            }
            assert!(diags.to_string().starts_with("systems/p.toml"));
            None
        }
    }
}

/// A value for a text key: usually a right one, sometimes a wrong one or another type.
fn text_value(valid: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => proptest::sample::select(valid).prop_map(toml_str),
        2 => "\\PC{0,30}".prop_map(|s| toml_str(&s)),
        1 => Just("8".to_string()),
        1 => Just("[\"a\"]".to_string()),
    ]
    .boxed()
}

/// A value for `memory_mib`: any number, or another type.
fn memory_value() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (2u32..40).prop_map(|n| n.to_string()),
        3 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop_oneof![Just("\"8\""), Just("8.5"), Just("true"), Just("0x10"), Just("1_0")]
            .prop_map(String::from),
    ]
    .boxed()
}

/// One `[[qube]]`, each key present or not, maybe with an unknown key.
fn near_valid_qube() -> impl Strategy<Value = String> {
    let fields = (
        proptest::option::weighted(0.9, text_value(&["net", "gui", "usb", "Net", "a-b", ""])),
        proptest::option::weighted(0.9, text_value(&["unikernel", "linux", "vm"])),
        proptest::option::weighted(0.9, text_value(&["net", "firewall", "testing", "wifi"])),
        proptest::option::weighted(0.9, memory_value()),
        proptest::option::weighted(0.9, text_value(&["red", "black", "grey", "pink"])),
        proptest::option::weighted(0.5, text_value(&["never", "always", "on_failure"])),
        proptest::option::weighted(0.3, "\\PC{0,120}".prop_map(|s| toml_str(&s))),
        proptest::option::weighted(0.1, "[a-z_]{1,12}|\"[^\"\\\\]{0,10}\""),
    );
    fields.prop_map(
        |(name, kind, image, memory, label, restart, args, unknown)| {
            let mut out = String::from("[[qube]]\n");
            let keys = [
                "name",
                "kind",
                "image",
                "memory_mib",
                "label",
                "restart",
                "args",
            ];
            let values = [name, kind, image, memory, label, restart, args];
            for (key, value) in keys.iter().zip(values) {
                if let Some(v) = value {
                    out.push_str(&format!("{key} = {v}\n"));
                }
            }
            if let Some(key) = unknown {
                out.push_str(&format!("{key} = 1\n"));
            }
            out
        },
    )
}

/// A whole description near a valid one.
fn near_valid_description() -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(0.9, memory_value()),
        proptest::option::weighted(0.3, text_value(&["default", "Bad Name", "x"])),
        proptest::collection::vec(near_valid_qube(), 0..=MAX_QUBES + 2),
        any::<bool>(),
    )
        .prop_map(|(ram, name, qubes, system_first)| {
            let mut system = String::from("[system]\n");
            if let Some(ram) = ram {
                system.push_str(&format!("ram_mib = {}\n", ram.replace("40", "4000")));
            }
            if let Some(name) = name {
                system.push_str(&format!("name = {name}\n"));
            }
            let qubes = qubes.concat();
            if system_first {
                system + &qubes
            } else {
                qubes + &system
            }
        })
}

/// A valid qube: (name suffix, image, memory in granules, label, restart, args).
type ValidQube = (usize, usize, u32, usize, Option<usize>, Option<String>);

fn valid_qube() -> impl Strategy<Value = ValidQube> {
    (
        0usize..1000,
        0..KNOWN_IMAGES.len(),
        2u32..=64,
        0..Label::ALL.len(),
        proptest::option::of(0usize..3),
        proptest::option::of("[a-zA-Z0-9 =,._/é-]{0,40}"),
    )
}

const RESTARTS: [RestartPolicy; 3] = [
    RestartPolicy::Never,
    RestartPolicy::OnFailure,
    RestartPolicy::Always,
];

proptest! {
    #[test]
    fn no_string_makes_it_panic(text in "\\PC{0,300}") {
        compile_checked(&text);
    }

    #[test]
    fn no_toml_like_text_makes_it_panic(text in "[\\[\\]a-z_=\"' \n0-9.{},#-]{0,300}") {
        compile_checked(&text);
    }

    #[test]
    fn no_near_valid_description_makes_it_panic(text in near_valid_description()) {
        compile_checked(&text);
    }

    #[test]
    fn no_edit_of_the_default_system_makes_it_panic(
        at in 0usize..2000, cut in 0usize..40, insert in "\\PC{0,20}"
    ) {
        let text = std::fs::read_to_string(crate::workspace_root().join("systems/default.toml"))
            .unwrap();
        let at = text.floor_char_boundary(at.min(text.len()));
        let end = text.floor_char_boundary((at + cut).min(text.len()));
        compile_checked(&format!("{}{insert}{}", &text[..at], &text[end..]));
    }

    #[test]
    fn every_valid_description_compiles_and_round_trips(
        qubes in proptest::collection::vec(valid_qube(), 1..=MAX_QUBES),
        base in "[a-z][a-z0-9-]{0,10}",
        system in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
        spare in 0u32..1000,
        inline in any::<bool>(),
    ) {
        let g = QUBE_GRANULE;
        let total: u32 = qubes.iter().map(|q| q.2 * g).sum();
        let mut text = format!("[system]\nram_mib = {}\n", total + HYPERVISOR_RESERVE_MIB + spare);
        if let Some(s) = &system {
            text.push_str(&format!("name = \"{s}\"\n"));
        }
        let mut rendered = Vec::new();
        for (i, (suffix, image, mem, label, restart, args)) in qubes.iter().enumerate() {
            let mut fields = vec![
                format!("name = \"{base}{i}-{suffix}\""),
                "kind = \"unikernel\"".to_string(),
                format!("image = \"{}\"", KNOWN_IMAGES[*image]),
                format!("memory_mib = {}", mem * g),
                format!("label = \"{}\"", Label::ALL[*label].name()),
            ];
            if let Some(r) = restart {
                fields.push(format!("restart = \"{}\"", RESTARTS[*r].name()));
            }
            if let Some(a) = args {
                fields.push(format!("args = {}", toml_str(a)));
            }
            rendered.push(fields);
        }
        if inline {
            let items: Vec<String> =
                rendered.iter().map(|f| format!("{{ {} }}", f.join(", "))).collect();
            text = format!("qube = [\n{}\n]\n{text}", items.join(",\n"));
        } else {
            for fields in &rendered {
                text.push_str(&format!("\n[[qube]]\n{}\n", fields.join("\n")));
            }
        }
        let c = match compile_str("systems/p.toml", &text) {
            Ok(c) => c,
            Err(d) => panic!("{d}\n---\n{text}"),
        };
        let m = &c.manifest;
        prop_assert_eq!(m.system.as_str(), system.as_deref().unwrap_or("p"));
        prop_assert_eq!(m.qubes.len(), qubes.len());
        let mut first_use: Vec<&str> = Vec::new();
        for (spec, (suffix, image, mem, label, restart, args)) in m.qubes.iter().zip(&qubes) {
            let image = KNOWN_IMAGES[*image];
            if !first_use.contains(&image) {
                first_use.push(image);
            }
            let suffix = format!("-{suffix}");
            prop_assert!(spec.name.ends_with(&suffix));
            prop_assert_eq!(c.images[usize::from(spec.image) - 1].as_str(), image);
            prop_assert_eq!(spec.memory_mib, mem * g);
            prop_assert_eq!(spec.label, Label::ALL[*label]);
            prop_assert_eq!(spec.restart, restart.map_or(RestartPolicy::Never, |r| RESTARTS[r]));
            prop_assert_eq!(spec.args.as_str(), args.as_deref().unwrap_or(""));
        }
        prop_assert_eq!(&c.images, &first_use);
        let decoded = Manifest::decode(&m.to_vec());
        prop_assert_eq!(decoded.as_ref(), Ok(m));
        prop_assert!(c.summary().contains(m.qubes[0].name.as_str()));
    }
}

const QUBE_GRANULE: u32 = bulkhead_abi::manifest::QUBE_MEMORY_GRANULE_MIB;

//! Property tests of the system compiler: no text makes it panic, every problem it reports is
//! complete, and every valid description (channels included) compiles to a manifest that
//! round-trips.

use super::*;
use bulkhead_abi::channel::{Geometry, MAX_CHANNELS_PER_QUBE};
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{MAX_CHANNELS, MAX_QUBES, RestartPolicy};
use proptest::prelude::*;

/// The images a random qube may run: every image but the admin qube's, of which a system has
/// one (and which gives Linux and gui qubes channels of their own; `qrexec_tests.rs`).
const IMAGES: &[&str] = &["net", "firewall", "usb", "gui", "testing"];

/// `s` as a TOML basic string.
pub(super) fn toml_str(s: &str) -> String {
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
/// The compiler's explicit indices say what the manifest says, and lead to entries of the
/// right kind; each channel end's index is its position among that qube's channels in
/// manifest order (how the hypervisor fills the boot-info table), below the table's size.
pub(super) fn assert_explicit_indices(c: &CompiledSystem) {
    use bulkhead_abi::bundle::EntryKind;
    use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
    use bulkhead_abi::manifest::QubeKind;
    let m = &c.manifest;
    let entries = c.entries();
    let kind_at = |i: usize| entries[i - 1].kind;
    assert_eq!(c.qube_entries.len(), m.qubes.len());
    for (i, (q, e)) in m.qubes.iter().zip(&c.qube_entries).enumerate() {
        assert_eq!(usize::from(q.image), e.image, "{}", q.name);
        assert_eq!(q.config.map(usize::from), e.config, "{}", q.name);
        match (q.kind, e.linux) {
            (QubeKind::Unikernel, None) => assert_eq!(kind_at(e.image), EntryKind::Image),
            (QubeKind::Linux { initrd, cmdline }, Some(l)) => {
                assert_eq!(
                    (usize::from(initrd), usize::from(cmdline)),
                    (l.initrd, l.cmdline)
                );
                assert_eq!(kind_at(e.image), EntryKind::LinuxKernel);
                assert_eq!(kind_at(l.initrd), EntryKind::Initrd);
                assert_eq!(kind_at(l.cmdline), EntryKind::Cmdline);
                let line = c.cmdlines.iter().find(|l| l.qube == i).unwrap();
                assert_eq!(
                    entries[l.cmdline - 1].content,
                    Content::Bytes(line.text.as_bytes())
                );
            }
            other => panic!("{}: kind and entries disagree: {other:?}", q.name),
        }
        if let Some(k) = e.config {
            let blob = c.configs.iter().find(|b| b.qube == i).unwrap();
            assert_eq!(kind_at(k), EntryKind::Config);
            assert_eq!(entries[k - 1].content, Content::Bytes(&blob.bytes));
        }
    }
    assert_eq!(c.channel_ends.len(), m.channels.len());
    for (k, (ch, ends)) in m.channels.iter().zip(&c.channel_ends).enumerate() {
        for (qube, end) in [(ch.a, ends.a), (ch.b, ends.b)] {
            let before = m
                .channels
                .iter()
                .take(k)
                .filter(|o| o.a == qube || o.b == qube)
                .count();
            assert_eq!(
                (usize::from(qube), before),
                (end.qube, end.local),
                "{}",
                ch.name
            );
            assert!(end.local < MAX_CHANNELS_PER_QUBE);
        }
    }
}

pub(super) fn compile_checked(text: &str) -> Option<CompiledSystem> {
    compile_checked_bytes(text.as_bytes())
}

/// Like [`compile_checked`], for bytes that need not be UTF-8; also: every problem prints as
/// two lines with no control character (the fuzz target's property).
pub(super) fn compile_checked_bytes(bytes: &[u8]) -> Option<CompiledSystem> {
    match compile_bytes("systems/p.toml", bytes) {
        Ok(c) => {
            assert_explicit_indices(&c);
            Some(c)
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in diags.iter() {
                assert!(
                    !d.key.is_empty() && !d.message.is_empty() && !d.hint.is_empty(),
                    "{d}"
                );
                assert!(d.position.is_some(), "no line and column: {d}");
                let shown = d.to_string();
                assert_eq!(shown.split('\n').count(), 2, "{shown:?}");
                assert!(!shown.split('\n').any(|l| l.chars().any(char::is_control)));
            }
            assert!(diags.to_string().starts_with("systems/p.toml"));
            None
        }
    }
}

/// A value for a text key: usually a right one, sometimes a wrong one or another type.
pub(super) fn text_value(valid: &'static [&'static str]) -> BoxedStrategy<String> {
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

/// A value for `between`: usually two names of qubes `near_valid_qube` writes, sometimes
/// fewer or more, unknown ones, or another type.
fn between_value() -> BoxedStrategy<String> {
    const NAMES: &[&str] = &["net", "gui", "usb", "Net", "a-b", "", "nett", "firewall"];
    prop_oneof![
        8 => proptest::collection::vec(proptest::sample::select(NAMES), 2)
            .prop_map(|v| format!("[{}]", v.iter().map(|n| toml_str(n)).collect::<Vec<_>>().join(", "))),
        2 => proptest::collection::vec("\\PC{0,8}", 0..4)
            .prop_map(|v| format!("[{}]", v.iter().map(|n| toml_str(n)).collect::<Vec<_>>().join(", "))),
        1 => prop_oneof![Just("\"net, gui\""), Just("[1, 2]"), Just("[]"), Just("[[\"net\"]]"),
            Just("{ a = \"net\" }"), Just("7")].prop_map(String::from),
    ]
    .boxed()
}

/// A value for `size_kib` or `slot_size`: from `likely`, any number, or another type.
fn size_value(likely: &'static [i64]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => proptest::sample::select(likely).prop_map(|n| n.to_string()),
        3 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop_oneof![Just("\"16\""), Just("16.0"), Just("true"), Just("0x1000"), Just("-4")]
            .prop_map(String::from),
    ]
    .boxed()
}

/// One `[[channel]]`, each key present or not, maybe with an unknown key.
fn near_valid_channel() -> impl Strategy<Value = String> {
    let fields = (
        proptest::option::weighted(0.9, text_value(&["uplink", "rules", "Up Link", "a"])),
        proptest::option::weighted(0.9, between_value()),
        proptest::option::weighted(0.6, size_value(&[12, 16, 30, 64, 264, 2048, 4096, 0])),
        proptest::option::weighted(0.6, size_value(&[64, 256, 1500, 2048, 65536, 131072, 32])),
        proptest::option::weighted(0.9, text_value(&["frames", "rules", "", " frames"])),
        proptest::option::weighted(0.1, "[a-z_]{1,12}|\"[^\"\\\\]{0,10}\""),
        proptest::option::weighted(0.3, size_value(&[0, 8, 12, 1024, 65536, 65544, -8])),
    );
    fields.prop_map(|(name, between, size, slot, purpose, unknown, bulk)| {
        let mut out = String::from("[[channel]]\n");
        let keys = [
            "name",
            "between",
            "size_kib",
            "slot_size",
            "purpose",
            "bulk_kib",
        ];
        for (key, value) in keys.iter().zip([name, between, size, slot, purpose, bulk]) {
            if let Some(v) = value {
                out.push_str(&format!("{key} = {v}\n"));
            }
        }
        if let Some(key) = unknown {
            out.push_str(&format!("{key} = 1\n"));
        }
        out
    })
}

/// A whole description near a valid one.
fn near_valid_description() -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(0.9, memory_value()),
        proptest::option::weighted(0.3, text_value(&["default", "Bad Name", "x"])),
        proptest::collection::vec(near_valid_qube(), 0..=MAX_QUBES + 2),
        proptest::collection::vec(near_valid_channel(), 0..12),
        any::<bool>(),
    )
        .prop_map(|(ram, name, qubes, channels, system_first)| {
            let mut system = String::from("[system]\n");
            if let Some(ram) = ram {
                system.push_str(&format!("ram_mib = {}\n", ram.replace("40", "4000")));
            }
            if let Some(name) = name {
                system.push_str(&format!("name = {name}\n"));
            }
            let qubes = qubes.concat() + &channels.concat();
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
        0..IMAGES.len(),
        2u32..=64,
        0..Label::ALL.len(),
        proptest::option::of(0usize..3),
        proptest::option::of("[a-zA-Z0-9 =,._/é-]{0,40}"),
    )
}

/// A valid channel, if the qube limits allow it: (endpoint A, endpoint B, slot size as a
/// power of two, size in pages, purpose, whether to leave sizes at their defaults).
/// (side A, side B, slot size log, pages, purpose, default sizes, bulk KiB).
type ValidChannel = (usize, usize, u32, u32, String, bool, u32);

fn valid_channel() -> impl Strategy<Value = ValidChannel> {
    (
        0usize..MAX_QUBES,
        0usize..MAX_QUBES,
        6u32..=16,
        3u32..=512,
        "[a-zA-Z0-9 ,.:é-]{0,20}",
        proptest::bool::weighted(0.2),
        prop_oneof![
            3 => Just(0u32),
            1 => (1u32..=64).prop_map(|n| n * 8),
            1 => (1u32..=8).prop_map(|n| n * 8192),
        ],
    )
}

/// A description with channels whose every byte may be edited.
const WITH_CHANNELS: &str = "[system]\nram_mib = 128\n\n\
    [[qube]]\nname = \"net\"\nkind = \"unikernel\"\nimage = \"net\"\nmemory_mib = 8\nlabel = \"red\"\n\n\
    [[qube]]\nname = \"firewall\"\nkind = \"unikernel\"\nimage = \"firewall\"\nmemory_mib = 8\n\
    label = \"green\"\n\n\
    [[channel]]\nname = \"uplink\"\nbetween = [\"net\", \"firewall\"]\nsize_kib = 64\nslot_size = 2048\n\
    purpose = \"Ethernet frames\"\n\n\
    [[channel]]\nname = \"rules\"\nbetween = [\"firewall\", \"net\"]\npurpose = \"firewall rules\"\n";

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
    fn no_bytes_written_over_the_network_system_make_it_panic(
        writes in proptest::collection::vec((0usize..4000, any::<u8>()), 1..8)
    ) {
        let mut bytes = std::fs::read(crate::workspace_root().join("systems/tests/network.toml"))
            .unwrap();
        for (at, byte) in writes {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        compile_checked_bytes(&bytes);
    }

    #[test]
    fn no_edit_of_a_system_with_channels_makes_it_panic(
        at in 0usize..700, cut in 0usize..40, insert in "\\PC{0,20}|[\\[\\]\",0-9 ]{0,6}"
    ) {
        prop_assert!(compile_str("systems/p.toml", WITH_CHANNELS).is_ok());
        let text = WITH_CHANNELS;
        let at = text.floor_char_boundary(at.min(text.len()));
        let end = text.floor_char_boundary((at + cut).min(text.len()));
        compile_checked(&format!("{}{insert}{}", &text[..at], &text[end..]));
    }

    #[test]
    fn every_valid_description_compiles_and_round_trips(
        qubes in proptest::collection::vec(valid_qube(), 1..=MAX_QUBES),
        wanted in proptest::collection::vec(valid_channel(), 0..=MAX_CHANNELS + 12),
        base in "[a-z][a-z0-9-]{0,10}",
        system in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
        spare in 0u32..1000,
        inline in any::<bool>(),
    ) {
        let g = QUBE_GRANULE;
        let total: u32 = qubes.iter().map(|q| q.2 * g).sum();
        // Keep the channels the limits allow: (a, b, size in bytes, slot size, purpose, defaults).
        let mut channels: Vec<(usize, usize, u32, u32, String, bool, u32)> = Vec::new();
        let mut per_qube = vec![0usize; qubes.len()];
        for (a, b, slot_log, pages, purpose, defaults, bulk_kib) in wanted {
            let (a, b) = (a % qubes.len(), b % qubes.len());
            let (size, slot) = if defaults { (16 * 1024, 256) } else { (pages * 4096, 1 << slot_log) };
            if a == b
                || channels.len() == MAX_CHANNELS
                || per_qube[a] == MAX_CHANNELS_PER_QUBE
                || per_qube[b] == MAX_CHANNELS_PER_QUBE
                || Geometry::new(u64::from(size), slot).is_none()
            {
                continue;
            }
            per_qube[a] += 1;
            per_qube[b] += 1;
            let purpose = format!("{purpose} #{}", channels.len());
            channels.push((a, b, size, slot, purpose, defaults, bulk_kib));
        }
        let channel_kib: u32 = channels.iter().map(|c| c.2 / 1024 + c.6).sum();
        let ram = total + HYPERVISOR_RESERVE_MIB + channel_kib.div_ceil(1024) + spare;
        let mut text = format!("[system]\nram_mib = {ram}\n");
        if let Some(s) = &system {
            text.push_str(&format!("name = \"{s}\"\n"));
        }
        let mut rendered = Vec::new();
        for (i, (suffix, image, mem, label, restart, args)) in qubes.iter().enumerate() {
            let mut fields = vec![
                format!("name = \"{base}{i}-{suffix}\""),
                "kind = \"unikernel\"".to_string(),
                format!("image = \"{}\"", IMAGES[*image]),
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
        let qube_name = |i: usize| format!("{base}{i}-{}", qubes[i].0);
        let mut rendered_channels = Vec::new();
        for (k, (a, b, size, slot, purpose, defaults, bulk_kib)) in channels.iter().enumerate() {
            let mut fields = vec![
                format!("name = \"c{k}\""),
                format!("between = [\"{}\", \"{}\"]", qube_name(*a), qube_name(*b)),
                format!("purpose = {}", toml_str(purpose)),
            ];
            if !defaults {
                fields.push(format!("size_kib = {}", size / 1024));
                fields.push(format!("slot_size = {slot}"));
            }
            if *bulk_kib != 0 || !defaults {
                fields.push(format!("bulk_kib = {bulk_kib}"));
            }
            rendered_channels.push(fields);
        }
        if inline {
            let items = |tables: &[Vec<String>]| {
                tables.iter().map(|f| format!("{{ {} }}", f.join(", "))).collect::<Vec<_>>()
            };
            let channel_items = items(&rendered_channels);
            text = format!(
                "qube = [\n{}\n]\nchannel = [\n{}\n]\n{text}",
                items(&rendered).join(",\n"),
                channel_items.join(",\n")
            );
        } else {
            for fields in &rendered {
                text.push_str(&format!("\n[[qube]]\n{}\n", fields.join("\n")));
            }
            for fields in &rendered_channels {
                text.push_str(&format!("\n[[channel]]\n{}\n", fields.join("\n")));
            }
        }
        let c = match compile_str("systems/p.toml", &text) {
            Ok(c) => c,
            Err(d) => panic!("{d}\n---\n{text}"),
        };
        assert_explicit_indices(&c);
        let m = &c.manifest;
        prop_assert_eq!(m.system.as_str(), system.as_deref().unwrap_or("p"));
        prop_assert_eq!(m.qubes.len(), qubes.len());
        let mut first_use: Vec<&str> = Vec::new();
        for (spec, (suffix, image, mem, label, restart, args)) in m.qubes.iter().zip(&qubes) {
            let image = IMAGES[*image];
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
        prop_assert_eq!(m.channels.len(), channels.len());
        for (k, (spec, (a, b, size, slot, purpose, _, bulk_kib))) in m.channels.iter().zip(&channels).enumerate() {
            prop_assert_eq!(spec.name.as_str(), format!("c{k}"));
            prop_assert_eq!((usize::from(spec.a), usize::from(spec.b)), (*a, *b));
            prop_assert_eq!((spec.size, spec.slot_size), (*size, *slot));
            prop_assert_eq!(spec.bulk_size, bulk_kib * 1024);
            prop_assert_eq!(spec.purpose.as_str(), purpose.as_str());
        }
        let decoded = Manifest::decode(&m.to_vec());
        prop_assert_eq!(decoded.as_ref(), Ok(m));
        let summary = c.summary();
        prop_assert!(summary.contains(m.qubes[0].name.as_str()));
        if let Some(last) = m.channels.last() {
            prop_assert!(summary.contains(last.purpose.as_str()));
        }
    }
}

const QUBE_GRANULE: u32 = bulkhead_abi::manifest::QUBE_MEMORY_GRANULE_MIB;

//! Tests of the whole compiler: the shipped descriptions, the broken fixtures, and the wording
//! of the diagnostics people will read.

use super::diagnostics::Diagnostic;
use super::test_support::problems;
use super::*;
use bulkhead_abi::channel::Geometry;
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{
    IommuPolicy, MAX_CHANNELS, MAX_QUBES, PciSelect, QubeKind, RestartPolicy,
};

fn systems_dir() -> PathBuf {
    crate::workspace_root().join("systems")
}

/// A description with `qubes` appended after a `[system]` of 256 MiB.
fn with_qubes(qubes: &str) -> String {
    format!("[system]\nram_mib = 256\n\n{qubes}")
}

fn qube(name: &str, image: &str, mib: u32, label: &str) -> String {
    format!(
        "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"{image}\"\n\
         memory_mib = {mib}\nlabel = \"{label}\"\n\n"
    )
}

/// A `[[channel]]` with `extra` lines (e.g. `size_kib = 64`) after its required keys.
fn channel(name: &str, a: &str, b: &str, purpose: &str, extra: &str) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\nbetween = [\"{a}\", \"{b}\"]\npurpose = \"{purpose}\"\n\
         {extra}\n"
    )
}

/// `net` and `firewall` (8 MiB each) followed by `channels`.
fn two_qubes_and(channels: &str) -> String {
    with_qubes(&format!(
        "{}{}{channels}",
        qube("net", "net", 8, "red"),
        qube("firewall", "firewall", 8, "green")
    ))
}

/// The problem under `key`, shown as the user sees it.
fn shown(found: &[Diagnostic], key: &str) -> String {
    match found.iter().find(|d| d.key == key) {
        Some(d) => d.to_string(),
        None => panic!("no problem under {key} in {found:#?}"),
    }
}

/// Every shipped description (not the broken ones) names its qubes' bundle entries and its
/// channel ends as its manifest says.
#[test]
fn shipped_systems_name_their_entries_and_channel_ends() {
    let mut dirs = vec![systems_dir()];
    let mut checked = 0;
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if path.is_dir() && !path.ends_with("broken") {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "toml") {
                let c = compile_file(&path).unwrap_or_else(|e| panic!("{e}"));
                super::proptests::assert_explicit_indices(&c);
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked} systems");
    // The network system: the firewall's uplink is its channel 0, its clients' 1 and 2.
    let c = compile_file(&systems_dir().join("tests/network.toml")).unwrap();
    let ends: Vec<(usize, usize, usize, usize)> = c
        .channel_ends
        .iter()
        .map(|e| (e.a.qube, e.a.local, e.b.qube, e.b.local))
        .collect();
    assert_eq!(ends, [(0, 0, 1, 0), (1, 1, 2, 0), (1, 2, 3, 0)]);
    let firewall = c.qube_entries[1];
    assert_eq!(
        (firewall.image, firewall.config, firewall.linux),
        (2, Some(5), None)
    );
}

#[test]
fn default_system_compiles_and_round_trips() {
    let c = compile_file(&systems_dir().join("default.toml")).unwrap();
    let m = &c.manifest;
    assert_eq!(m.system.as_str(), "default");
    assert_eq!(c.ram_mib, 1024);
    assert_eq!(c.images, ["admin", "net", "firewall", "usb", "gui"]);
    assert_eq!(c.templates, ["debian"]);
    let names: Vec<&str> = m.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin", "net", "firewall", "usb", "gui", "work", "personal", "disp"
        ]
    );
    let admins: Vec<bool> = m.qubes.iter().map(|q| q.admin).collect();
    assert_eq!(
        admins,
        [true, false, false, false, false, false, false, false]
    );
    let labels: Vec<Label> = m.qubes.iter().map(|q| q.label).collect();
    assert_eq!(
        labels,
        [
            Label::Black,
            Label::Red,
            Label::Green,
            Label::Red,
            Label::Black,
            Label::Blue,
            Label::Yellow,
            Label::Red
        ]
    );
    for (i, q) in m.qubes.iter().enumerate() {
        if i < 5 {
            let memory = if i == 4 { 16 } else { 8 };
            assert_eq!(
                (q.kind, q.memory_mib, q.image),
                (QubeKind::Unikernel, memory, i as u16 + 1)
            );
        } else {
            assert!(matches!(q.kind, QubeKind::Linux { .. }), "{q:?}");
        }
        let disposable = q.name.as_str() == "disp";
        assert_eq!(
            q.start == bulkhead_abi::manifest::StartPolicy::OnRequest,
            disposable,
            "{}",
            q.name.as_str()
        );
        if !disposable {
            assert_eq!(q.restart, RestartPolicy::OnFailure);
        }
    }
    assert_eq!(Manifest::decode(&m.to_vec()).as_ref(), Ok(m));
    // sys-net owns the virtio-net card, the gui qube the display.
    let devices: Vec<(u8, PciSelect)> = m.devices.iter().map(|d| (d.qube, d.select)).collect();
    let id = |vendor, device| PciSelect::Id {
        vendor,
        device,
        index: 0,
    };
    assert_eq!(devices, [(1, id(0x1af4, 0x1041)), (4, id(0x1234, 0x1111))]);
    assert_eq!(m.iommu, IommuPolicy::Required);
    let channels: Vec<_> = m
        .channels
        .iter()
        .map(|ch| {
            (
                ch.name.as_str(),
                ch.a,
                ch.b,
                ch.purpose.as_str(),
                ch.bulk_size > 0,
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("firewall.net", 1, 2, "network", false),
            ("work.net", 2, 5, "network", false),
            ("personal.net", 2, 6, "network", false),
            ("disp.req0", 5, 7, "disposable", false),
            ("work.gui", 4, 5, "gui", true),
            ("personal.gui", 4, 6, "gui", true),
            ("disp.gui", 4, 7, "gui", true),
            ("gui.qrexec", 4, 0, "qrexec", true),
            ("work.qrexec", 5, 0, "qrexec", true),
            ("personal.qrexec", 6, 0, "qrexec", true),
            ("disp.qrexec", 7, 0, "qrexec", true),
        ]
    );
    let summary = c.summary();
    for word in [
        "firewall",
        "on-failure",
        "black",
        "16 MiB",
        "#5 gui",
        "I/O ports of admin: 0x2f8-0x2ff",
        "12 policy entries",
        "debian.kernel",
        "pci-id:1af4:1041",
        "pci-id:1234:1111",
        "I/O ports of gui: 0x60 0x64",
    ] {
        assert!(summary.contains(word), "{word} missing from:\n{summary}");
    }
}

/// Each fixture: file, the key its one problem is under, words of its message, and the text
/// its line and column point at.
const FIXTURES: &[(&str, &str, &str, &str)] = &[
    (
        "unknown-field.toml",
        "qube \"net\".colour",
        "unknown key",
        "colour = \"red\"",
    ),
    (
        "duplicate-name.toml",
        "qube[1].name",
        "called \"net\"",
        "\"net\"",
    ),
    (
        "unknown-image.toml",
        "qube \"wifi\".image",
        "unknown image \"wifi\"",
        "\"wifi\"",
    ),
    (
        "bad-label.toml",
        "qube \"net\".label",
        "unknown label \"pink\"",
        "\"pink\"",
    ),
    (
        "memory-not-multiple.toml",
        "qube \"net\".memory_mib",
        "not a multiple of 2 MiB",
        "9",
    ),
    (
        "memory-too-big.toml",
        "system.ram_mib",
        "40 MiB more than ram_mib = 256",
        "256",
    ),
    (
        "bad-restart.toml",
        "qube \"net\".restart",
        "unknown restart policy",
        "\"sometimes\"",
    ),
    ("syntax-error.toml", "qube[0].label", "string", "red"),
    ("no-qubes.toml", "qube", "no qubes", "# Wrong"),
    (
        "bad-name.toml",
        "qube[0].name",
        "\"Net_VM\" is not a valid name",
        "\"Net_VM\"",
    ),
    (
        "linux-image.toml",
        "qube \"work\".image",
        "image is for unikernel qubes, this one is Linux",
        "\"net\"",
    ),
    (
        "linux-devices.toml",
        "qube \"work\".devices",
        "devices is for unikernel qubes",
        "[\"pci:00:03.0\"]",
    ),
    (
        "linux-memory-too-small.toml",
        "qube \"work\".memory_mib",
        "32 MiB is too little for Linux, at least 64 MiB",
        "32",
    ),
    (
        "linux-unknown-template.toml",
        "qube \"work\".template",
        "unknown template \"fedora\"",
        "\"fedora\"",
    ),
    (
        "linux-key-on-unikernel.toml",
        "qube \"work\".kernel_args",
        "kernel_args is for Linux qubes",
        "\"quiet\"",
    ),
    (
        "linux-reserved-args.toml",
        "qube \"work\".kernel_args",
        "which the system sets itself",
        "\"quiet bulkhead.ip",
    ),
    (
        "linux-netvm-card-owner.toml",
        "qube \"work\".netvm",
        "a Linux qube needs a router as netvm, but \"net\" owns the network card",
        "\"net\"",
    ),
    (
        "linux-as-netvm.toml",
        "qube \"client\".netvm",
        "\"router\" is a Linux qube and cannot be a netvm yet",
        "\"router\"",
    ),
    (
        "disposable-restart.toml",
        "qube \"disp\".restart",
        "a disposable cannot restart",
        "\"always\"",
    ),
    (
        "disposable-never-started.toml",
        "qube \"disp\".disposable",
        "can never start: no qube may start it",
        "true",
    ),
    (
        "not-a-disposable.toml",
        "qube \"requester\".disposables",
        "\"work\" is not a disposable",
        "\"work\"",
    ),
    (
        "disposables-unknown.toml",
        "qube \"requester\".disposables",
        "unknown disposable \"dsp\"",
        "\"dsp\"",
    ),
    (
        "channel-unknown-endpoint.toml",
        "channel \"uplink\".between",
        "unknown qube \"firewal\"",
        "\"firewal\"",
    ),
    (
        "channel-to-itself.toml",
        "channel \"loop\".between",
        "from \"net\" to itself",
        "\"net\"]",
    ),
    (
        "channel-bad-size.toml",
        "channel \"uplink\".size_kib",
        "30 KiB is not a multiple of 4 KiB",
        "30",
    ),
    (
        "channel-bad-slot-size.toml",
        "channel \"uplink\".slot_size",
        "1500 is not a power of two",
        "1500",
    ),
    (
        "channel-too-few-slots.toml",
        "channel \"uplink\".slot_size",
        "64 KiB with 65536-byte slots leaves fewer than 2 slots per ring",
        "65536",
    ),
    (
        "channel-bad-bulk.toml",
        "channel \"pixels\".bulk_kib",
        "12 KiB is not a multiple of 8 KiB",
        "12",
    ),
    (
        "channel-bulk-too-large.toml",
        "channel \"pixels\".bulk_kib",
        "129600 KiB is above the largest bulk area, 65536 KiB (64 MiB)",
        "129600",
    ),
    (
        "channel-duplicate-name.toml",
        "channel[1].name",
        "a second channel is called \"uplink\"",
        "\"uplink\"",
    ),
    (
        "channel-unknown-key.toml",
        "channel \"uplink\".size",
        "unknown key \"size\"",
        "size = 64",
    ),
    (
        "channel-too-many-on-qube.toml",
        "channel \"link-9\".between",
        "\"hub\" is an endpoint of 9 channels, at most 8 fit",
        "[\"hub\", \"right\"]",
    ),
    (
        "device-bad-syntax.toml",
        "qube \"net\".devices",
        "\"pci:00:03\" is not a device: an address ends with .function",
        "\"pci:00:03\"",
    ),
    (
        "io-ports-bad-syntax.toml",
        "qube \"gui\".io_ports",
        "96 is 0x60",
        "\"96\"",
    ),
    (
        "io-ports-reserved.toml",
        "qube \"gui\".io_ports",
        "0x60-0x64 include 0x61, which no qube may own",
        "\"0x60-0x64\"",
    ),
    (
        "io-ports-serial.toml",
        "qube \"usb\".io_ports",
        "0x3f8 is one of 0x3f8-0x3ff, which no qube may own: COM1",
        "\"0x3f8\"",
    ),
    (
        "io-ports-pci-config.toml",
        "qube \"usb\".io_ports",
        "reset control (0xcf9)",
        "\"0xcf9\"",
    ),
    (
        "io-ports-twice.toml",
        "qube \"usb\".io_ports",
        "0x5e-0x60 overlap 0x60, given before",
        "\"0x5e-0x60\"",
    ),
    (
        "framebuffer-linux.toml",
        "qube \"work\".framebuffer",
        "framebuffer is for unikernel qubes",
        "true",
    ),
    (
        "framebuffer-twice.toml",
        "qube \"other\".framebuffer",
        "the framebuffer is given to qube \"gui\" already",
        "true",
    ),
    (
        "io-ports-linux.toml",
        "qube \"work\".io_ports",
        "io_ports is for unikernel qubes",
        "[\"0x60\"",
    ),
    (
        "io-ports-too-many.toml",
        "qube \"usb\".io_ports",
        "17 I/O port ranges are given, at most 16 fit",
        "[\"0x200\"",
    ),
    (
        "device-duplicate.toml",
        "qube \"usb\".devices",
        "pci:00:03.0 is named twice",
        "\"pci:0000:00:03.0\"",
    ),
    (
        "storagevm-not-storage.toml",
        "qube \"alice\".storagevm",
        "\"disk\" is not a storage qube",
        "\"disk\"",
    ),
    (
        "storagevm-disposable.toml",
        "qube \"disp\".private_mib",
        "a disposable keeps nothing",
        "16",
    ),
    (
        "netvm-unknown.toml",
        "qube \"firewall\".netvm",
        "unknown netvm \"nett\"",
        "\"nett\"",
    ),
    (
        "netvm-cycle.toml",
        "qube \"firewall\".netvm",
        "netvm cycle: \"firewall\" -> \"vpn\" -> \"firewall\"",
        "\"vpn\"",
    ),
    (
        "rule-ports-without-proto.toml",
        "qube \"work\".rule[0].dstports",
        "dstports needs proto = \"tcp\" or \"udp\"",
        "\"443\"",
    ),
    (
        "rule-dns-with-ports.toml",
        "qube \"work\".rule[0].dstports",
        "specialtarget = \"dns\" is port 53 alone; with dstports = \"50-60\" Qubes never installs this rule",
        "\"50-60\"",
    ),
    (
        "rule-no-catch-all.toml",
        "qube \"work\".rule[1]",
        "end with a rule that has conditions; the last rule must have none",
        "[[qube.rule]]",
    ),
    (
        "ip-outside-network.toml",
        "qube \"work\".ip",
        "10.138.0.10 is outside the client network 10.137.0.0/24",
        "\"10.138.0.10\"",
    ),
    (
        "ip-duplicate.toml",
        "qube \"personal\".ip",
        "10.137.0.10 is already the address of qube \"work\"",
        "\"10.137.0.10\"",
    ),
    (
        "iommu-bad-value.toml",
        "system.iommu",
        "unknown iommu policy \"off\"",
        "\"off\"",
    ),
    (
        "admin-twice.toml",
        "qube \"admin2\".image",
        "qube \"admin\" runs the admin qube already",
        "\"admin\"",
    ),
    (
        "default-dispvm-bad.toml",
        "qube \"work\".default_dispvm",
        "\"personal\" is not a disposable",
        "\"personal\"",
    ),
    (
        "cpus-out-of-range.toml",
        "qube \"work\".cpus",
        "CPU 16 does not exist: CPUs are numbered 0 to 15",
        "16]",
    ),
    (
        "cpus-twice.toml",
        "qube \"net\".cpus",
        "CPU 1 is listed twice",
        "1]",
    ),
    (
        "cpus-empty.toml",
        "qube \"net\".cpus",
        "cpus is empty",
        "[]",
    ),
    (
        "vcpus-unikernel.toml",
        "qube \"net\".vcpus",
        "vcpus is for Linux qubes: a unikernel runs on one virtual CPU",
        "2",
    ),
    (
        "vcpus-too-many.toml",
        "qube \"work\".vcpus",
        "vcpus = 16 is more than the 8 virtual CPUs a qube may have",
        "16",
    ),
    (
        "tags-bad-name.toml",
        "qube \"work\".tags",
        "tag \"Work Data\" is not a valid name",
        "\"Work Data\"",
    ),
    (
        "qrexec-name-too-long.toml",
        "qube \"eighteen-bytes-xyz\".name",
        "\"eighteen-bytes-xyz.qrexec\", more than 24 bytes",
        "\"eighteen-bytes-xyz\"",
    ),
    (
        "policy-without-admin.toml",
        "policy[0]",
        "[[policy]] tables, but no qube is the admin qube",
        "[[policy]]",
    ),
    (
        "policy-adminvm-no-admin.toml",
        "policy[0].target",
        "@adminvm names the admin qube, and this system has none",
        "\"@adminvm\"",
    ),
    (
        "policy-unknown-qube.toml",
        "policy[0].source",
        "unknown qube \"wrok\"",
        "\"wrok\"",
    ),
    (
        "policy-unknown-tag.toml",
        "policy[0].source",
        "unknown tag \"secret\": no qube has it",
        "\"@tag:secret\"",
    ),
    (
        "policy-bad-service.toml",
        "policy[0].service",
        "\"qubes Filecopy\" is not a service name",
        "\"qubes Filecopy\"",
    ),
    (
        "policy-bad-action.toml",
        "policy[0].action",
        "unknown action \"permit\"",
        "\"permit\"",
    ),
    (
        "policy-redirect-on-deny.toml",
        "policy[0].redirect",
        "redirect with action = \"deny\"",
        "\"work\"",
    ),
    (
        "policy-allow-default.toml",
        "policy[0].action",
        "allow for target = \"@default\" without redirect",
        "\"allow\"",
    ),
    (
        "policy-dispvm-not-disp.toml",
        "policy[0].target",
        "\"personal\" is not a disposable",
        "\"@dispvm:personal\"",
    ),
    (
        "policy-unknown-key.toml",
        "policy[0].redirct",
        "unknown key \"redirct\"",
        "redirct",
    ),
];

#[test]
fn every_broken_fixture_reports_its_key_and_a_hint() {
    let dir = systems_dir().join("broken");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|(f, ..)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every fixture in systems/broken is listed here"
    );
    for (file, key, words, at) in FIXTURES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Wrong: "),
            "{file} starts with a comment saying what is wrong"
        );
        let err = compile_file(&path).expect_err(file);
        let Error::Problems(diags) = &err else {
            panic!("{file}: {err}")
        };
        let all: Vec<&Diagnostic> = diags.iter().collect();
        assert_eq!(all.len(), 1, "{file}: one problem expected:\n{diags}");
        let d = all[0];
        assert_eq!(d.key, *key, "{file}:\n{diags}");
        assert!(
            d.message.contains(words),
            "{file}: {:?} lacks {words:?}",
            d.message
        );
        let (line, column) = d.position.expect("a line and column");
        let pointed: String = text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .chars()
            .skip(column - 1)
            .collect();
        assert!(
            pointed.starts_with(at),
            "{file}:{line}:{column} points at {pointed:?}, not {at:?}"
        );
        assert!(!d.hint.is_empty());
        let shown = err.to_string();
        assert!(shown.contains(&*path.display().to_string()) && shown.contains("\n    hint: "));
    }
}

#[test]
fn reports_every_problem_in_file_order() {
    let text = with_qubes(&format!(
        "{}{}{}",
        qube("net", "net", 9, "red"),
        qube("net", "wifi", 8, "grey"),
        qube("usb", "usb", 8, "red").replace("label", "colour")
    ));
    let found: Vec<String> = problems(&text).iter().map(|d| d.to_string()).collect();
    let expected = [
        "systems/t.toml:8:14: qube[0].memory_mib: 9 MiB is not a multiple of 2 MiB\n    hint: use 8 or 10",
        "systems/t.toml:12:8: qube[1].name: a second qube is called \"net\"",
        "systems/t.toml:14:9: qube[1].image: unknown image \"wifi\"",
        "systems/t.toml:16:9: qube[1].label: unknown label \"grey\"\n    hint: did you mean \"gray\"?",
        "systems/t.toml:18:1: qube \"usb\".label: missing label",
        "systems/t.toml:23:1: qube \"usb\".colour: unknown key \"colour\"",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (f, e) in found.iter().zip(expected) {
        assert!(f.starts_with(e), "{f}\ndoes not start with\n{e}");
    }
    assert!(
        found[1].contains("hint: another qube (qube[0]) is already called \"net\"; rename one")
    );
}

#[test]
fn wrong_types_and_misplaced_keys_have_fixes() {
    let text = "ram_mib = 256\n[system]\nname = 5\n[[qube]]\nmemory_mib = \"8\"\n";
    let found = problems(text);
    let text_of = |key: &str| found.iter().find(|d| d.key == key).map(|d| d.to_string());
    assert!(
        text_of("ram_mib")
            .unwrap()
            .contains("put it below the [system] header")
    );
    assert!(
        text_of("system.name")
            .unwrap()
            .contains("hint: write it as name = \"default\"")
    );
    assert!(
        text_of("qube[0].memory_mib")
            .unwrap()
            .contains("remove the quotes: memory_mib = 8")
    );
    assert!(
        text_of("system.ram_mib")
            .unwrap()
            .contains("missing ram_mib")
    );
    for key in ["name", "kind", "image", "label"] {
        assert!(
            text_of(&format!("qube[0].{key}"))
                .unwrap()
                .contains("missing"),
            "{key}"
        );
    }
    let single = problems(&with_qubes("[qube]\nname = \"a\"\n"));
    assert_eq!(single.len(), 1);
    assert!(single[0].hint.contains("[[qube]] (double brackets)"));
    let float = problems(&with_qubes(
        &qube("net", "net", 8, "red").replace("= 8", "= 80.0"),
    ));
    assert!(
        float[0]
            .hint
            .contains("without a fraction: memory_mib = 80")
    );
    let typo = problems("[qubes]\n");
    assert!(
        typo.iter()
            .any(|d| d.key == "qubes" && d.hint.contains("did you mean qube?"))
    );
}

#[test]
fn images_are_deduplicated_in_first_use_order() {
    let text = with_qubes(&format!(
        "{}{}{}{}",
        qube("a", "gui", 8, "red"),
        qube("b", "net", 8, "red"),
        qube("c", "gui", 8, "red"),
        qube("d", "testing", 8, "red")
    ));
    let c = compile_str("systems/mine.toml", &text).unwrap();
    assert_eq!(c.images, ["gui", "net", "testing"]);
    let images: Vec<u16> = c.manifest.qubes.iter().map(|q| q.image).collect();
    assert_eq!(images, [1, 2, 1, 3]);
    assert_eq!(
        c.manifest.system.as_str(),
        "mine",
        "the file stem names the system"
    );
    let q = &c.manifest.qubes[0];
    assert_eq!((q.restart, q.args.as_str()), (RestartPolicy::Never, ""));
}

#[test]
fn counts_and_lengths_are_bounded() {
    let many: String = (0..=MAX_QUBES)
        .map(|i| qube(&format!("q{i}"), "net", 4, "red"))
        .collect();
    let found = problems(&with_qubes(&many).replace("256", "4096"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, format!("qube \"q{MAX_QUBES}\""));
    let long = qube("net", "net", 8, "red") + &format!("args = \"{}\"\n", "x".repeat(97));
    assert!(
        problems(&with_qubes(&long))[0]
            .message
            .contains("97 bytes long, at most 96")
    );
    let long_name = "a".repeat(25);
    assert!(
        problems(&with_qubes(&qube(&long_name, "net", 8, "red")))[0]
            .message
            .contains("25 bytes")
    );
    let bad_stem = compile_str(
        "systems/My System.toml",
        &with_qubes(&qube("a", "net", 8, "red")),
    );
    assert_eq!(
        bad_stem.unwrap_err().iter().next().unwrap().key,
        "system.name"
    );
}

#[test]
fn channels_compile_into_the_manifest() {
    let text = two_qubes_and(&format!(
        "{}{}{}",
        channel(
            "uplink",
            "net",
            "firewall",
            "Ethernet frames",
            "size_kib = 64\nslot_size = 2048"
        ),
        channel("rules", "firewall", "net", "firewall rules", ""),
        channel(
            "more",
            "net",
            "firewall",
            "Ethernet frames, second queue",
            ""
        ),
    ));
    let c = compile_str("systems/chan.toml", &text).unwrap();
    let m = &c.manifest;
    let got: Vec<_> = m
        .channels
        .iter()
        .map(|ch| {
            (
                ch.name.as_str(),
                ch.a,
                ch.b,
                ch.size,
                ch.slot_size,
                ch.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("uplink", 0, 1, 65536, 2048, "Ethernet frames"),
            ("rules", 1, 0, 16384, 256, "firewall rules"),
            ("more", 0, 1, 16384, 256, "Ethernet frames, second queue"),
        ]
    );
    for ch in &m.channels {
        assert!(Geometry::new(u64::from(ch.size), ch.slot_size).is_some());
    }
    assert_eq!(Manifest::decode(&m.to_vec()).as_ref(), Ok(m));
    let summary = c.summary();
    for words in [
        "2 qubes and 3 channels, 16 MiB + 96 KiB of channels of 256 MiB RAM",
        "207 MiB 928 KiB free",
        "slots per ring",
        "uplink   net (0)         firewall (0)    64 KiB  8 x 2048 B      2040 B",
        "rules    firewall (1)    net (1)         16 KiB  16 x 256 B      248 B            firewall rules",
    ] {
        assert!(
            summary.contains(words),
            "{words:?} missing from:\n{summary}"
        );
    }
}

#[test]
fn channel_problems_name_their_key_and_fix() {
    let long = "x".repeat(50);
    let text = two_qubes_and(&format!(
        "{}{}{}{}{}{}{}{}",
        channel("Up Link", "net", "firewall", "a", ""),
        channel("three", "net", "firewall", "b", "")
            .replace("\"firewall\"]", "\"firewall\", \"usb\"]"),
        "[[channel]]\nname = \"bare\"\n\n",
        channel(
            "long",
            "net",
            "firewall",
            &long,
            "size_kib = 8\nslot_size = 32"
        ),
        channel(
            "ctl",
            "net",
            "firewall",
            "a\\tb",
            "size_kib = 4096\nslot_size = 131072"
        ),
        channel("typed", "net", "firewall", "c", "").replace(
            "between = [\"net\", \"firewall\"]",
            "between = \"net, firewall\""
        ),
        channel("numbers", "net", "firewall", "d", "").replace("[\"net\", \"firewall\"]", "[1, 2]"),
        channel(
            "gap",
            "nett",
            "nett",
            "e",
            "size_kib = 13\nslot_size = 4096"
        ),
    ));
    let found = problems(&text);
    let expect = [
        (
            "channel[0].name",
            "\"Up Link\" is not a valid name",
            "try \"up-link\"",
        ),
        (
            "channel \"three\".between",
            "between names 3 qubes, a channel joins exactly two",
            "keep two names (side A first), e.g. between = [\"net\", \"firewall\"]",
        ),
        (
            "channel \"bare\".between",
            "missing between",
            "add between = [\"net\", \"firewall\"] (two qube names: the first is side A",
        ),
        (
            "channel \"bare\".purpose",
            "missing purpose",
            "at most 48 bytes",
        ),
        (
            "channel \"long\".purpose",
            "purpose is 50 bytes long, at most 48 fit",
            "shorten it by 2 bytes",
        ),
        (
            "channel \"long\".size_kib",
            "8 KiB is below the smallest channel, 12 KiB",
            "use size_kib = 12",
        ),
        (
            "channel \"long\".slot_size",
            "32-byte slots are below the smallest slot, 64 bytes",
            "use slot_size = 64",
        ),
        (
            "channel \"ctl\".purpose",
            "control character '\\t'",
            "on one line",
        ),
        (
            "channel \"ctl\".size_kib",
            "4096 KiB is above the largest channel, 2048 KiB",
            "use size_kib = 2048",
        ),
        (
            "channel \"ctl\".slot_size",
            "131072-byte slots are above the largest slot",
            "use slot_size = 65536",
        ),
        (
            "channel \"typed\".between",
            "expected a list of qube names in double quotes, found string",
            "write both names in brackets: between = [\"net\", \"firewall\"]",
        ),
        (
            "channel \"numbers\".between",
            "found a list holding integer values",
            "write it as between = [\"net\", \"firewall\"]",
        ),
        (
            "channel \"gap\".size_kib",
            "13 KiB is not a multiple of 4 KiB",
            "use size_kib = 24, the smallest that holds 4096-byte slots",
        ),
    ];
    for (key, message, hint) in expect {
        let d = found
            .iter()
            .find(|d| d.key == key && d.message.contains(message))
            .unwrap_or_else(|| panic!("no {key}: {message} in {found:#?}"));
        assert!(d.hint.contains(hint), "{d}\nlacks hint {hint:?}");
    }
    let gap: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.key == "channel \"gap\".between")
        .collect();
    assert_eq!(gap.len(), 2, "{gap:#?}");
    assert!(gap[0].message.contains("unknown qube \"nett\"") && gap[0].hint.contains("\"net\""));
    assert!(gap[1].message.contains("from \"nett\" to itself"));
    assert_eq!(found.len(), expect.len() + 2, "{found:#?}");
}

#[test]
fn duplicated_channels_are_flagged_and_distinct_ones_pass() {
    let same = two_qubes_and(&format!(
        "{}{}",
        channel("a", "net", "firewall", "Frames", ""),
        channel("b", "firewall", "net", "frames ", "")
    ));
    let found = problems(&same);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "channel \"b\".purpose");
    assert!(
        found[0]
            .message
            .contains("for the same purpose as channel \"a\"")
    );
    assert!(found[0].hint.contains("remove one"));
    let different = two_qubes_and(&format!(
        "{}{}",
        channel("a", "net", "firewall", "frames", ""),
        channel("b", "net", "firewall", "rules", "")
    ));
    assert_eq!(
        compile_str("systems/t.toml", &different)
            .unwrap()
            .manifest
            .channels
            .len(),
        2
    );
}

#[test]
fn channel_counts_are_bounded() {
    let n = 14;
    let qubes: String = (0..n)
        .map(|i| qube(&format!("q{i}"), "net", 4, "red"))
        .collect();
    let mut channels = String::new();
    let mut pairs = Vec::new();
    'outer: for d in 1..n {
        for i in 0..n {
            if pairs.len() == MAX_CHANNELS + 1 {
                break 'outer;
            }
            pairs.push((i, (i + d) % n));
        }
    }
    for (k, (i, j)) in pairs.iter().enumerate() {
        channels.push_str(&channel(
            &format!("c{k}"),
            &format!("q{i}"),
            &format!("q{j}"),
            &format!("p{k}"),
            "",
        ));
    }
    let text = with_qubes(&(qubes + &channels)).replace("256", "4096");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, format!("channel \"c{MAX_CHANNELS}\""));
    assert!(found[0].message.contains("49 channels, at most 48 fit"));
    let fits: String = text
        .split("[[channel]]")
        .take(MAX_CHANNELS + 1)
        .collect::<Vec<_>>()
        .join("[[channel]]");
    let c = compile_str("systems/t.toml", &fits).unwrap();
    assert_eq!(c.manifest.channels.len(), MAX_CHANNELS);
    assert_eq!(
        Manifest::decode(&c.manifest.to_vec()).as_ref(),
        Ok(&c.manifest)
    );
}

#[test]
fn channel_memory_counts_against_ram() {
    let fits = two_qubes_and("").replace("ram_mib = 256", "ram_mib = 48");
    assert!(compile_str("systems/t.toml", &fits).is_ok());
    let over = fits.clone() + &channel("a", "net", "firewall", "frames", "");
    let found = problems(&over);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].message,
        "qubes need 16 MiB + 16 KiB of channels + 32 MiB hypervisor reserve = 48 MiB 16 KiB, \
         16 KiB more than ram_mib = 48"
    );
    assert!(found[0].hint.starts_with("raise ram_mib to 49 or more"));
    assert!(found[0].hint.ends_with("or make channels smaller"));
    // A channel with a wrong size still counts with those whose size is right.
    let partly = over + &channel("b", "net", "firewall", "more", "size_kib = 7");
    let found = problems(&partly);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().any(|d| d.key == "system.ram_mib"));
}

#[test]
fn misplaced_channel_keys_have_fixes() {
    let text = two_qubes_and(&channel("a", "net", "firewall", "f", "memory_mib = 8"));
    let found = problems(&text);
    assert!(
        shown(&found, "channel \"a\".memory_mib")
            .contains("memory_mib belongs to a qube, not a [[channel]]: put it below a [[qube]]")
    );
    let found = problems(&(two_qubes_and("") + "between = [\"net\", \"firewall\"]\n"));
    assert!(
        shown(&found, "qube \"firewall\".between")
            .contains("between belongs to a channel, not a [[qube]]: put it below a [[channel]]")
    );
    let found = problems(&("between = [\"net\", \"firewall\"]\n".to_string() + &two_qubes_and("")));
    assert!(
        found
            .iter()
            .any(|d| d.hint.contains("put it below a [[channel]] header")),
        "{found:#?}"
    );
    let found = problems(&two_qubes_and("[channel]\nname = \"a\"\n"));
    assert!(shown(&found, "channel").contains("hint: write [[channel]] (double brackets)"));
    let found = problems(&two_qubes_and("[[channels]]\nname = \"a\"\n"));
    assert!(shown(&found, "channels").contains("did you mean channel?"));
    let found = problems(&("channel = [1]\n".to_string() + &two_qubes_and("")));
    assert!(shown(&found, "channel[0]").contains("each channel must be a table"));
    let found = problems(&two_qubes_and(
        "[[channel]]\nname = \"a\"\nslot = 64\nsize_kib = 1.5\n",
    ));
    assert!(shown(&found, "channel \"a\".slot").contains("did you mean slot_size?"));
    assert!(
        shown(&found, "channel \"a\".size_kib")
            .contains("a whole number of KiB, e.g. size_kib = 16")
    );
    // Without qubes, endpoints are not called unknown: the missing qubes are the problem.
    let found = problems(&format!(
        "[system]\nram_mib = 256\n{}",
        channel("a", "x", "y", "f", "")
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "qube");
}

#[test]
fn syntax_errors_in_channels_name_the_channel() {
    let text =
        two_qubes_and(&(channel("a", "net", "firewall", "f", "") + "[[channel]]\nsize_kib = x\n"));
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "channel[1].size_kib");
}

#[test]
fn a_bulk_area_is_compiled_shown_and_budgeted() {
    let text = two_qubes_and(&channel(
        "pixels",
        "net",
        "firewall",
        "pixels",
        "bulk_kib = 4096",
    ));
    let c = compile_str("systems/t.toml", &text).unwrap();
    let ch = &c.manifest.channels[0];
    assert_eq!(ch.bulk_size, 4 << 20);
    let g = Geometry::new(u64::from(ch.size), ch.slot_size).unwrap();
    assert_eq!(
        g.with_bulk(u64::from(ch.bulk_size))
            .unwrap()
            .bulk_pool_size(),
        2 << 20
    );
    let summary = c.summary();
    assert!(summary.contains("bulk area"), "{summary}");
    assert!(summary.contains("2 x 2 MiB"), "{summary}");
    assert!(
        summary.contains("16 MiB + 4 MiB 16 KiB of channels"),
        "{summary}"
    );
    // No bulk_kib, or 0: no bulk area, and no bulk column.
    for extra in ["", "bulk_kib = 0"] {
        let text = two_qubes_and(&channel("pixels", "net", "firewall", "pixels", extra));
        let c = compile_str("systems/t.toml", &text).unwrap();
        assert_eq!(c.manifest.channels[0].bulk_size, 0);
        assert!(!c.summary().contains("bulk area"));
    }
    // The bulk area counts against the RAM.
    let text = two_qubes_and(&channel(
        "pixels",
        "net",
        "firewall",
        "p",
        "bulk_kib = 65536",
    ))
    .replace("ram_mib = 256", "ram_mib = 100");
    let found = problems(&text);
    let ram = shown(&found, "system.ram_mib");
    assert!(ram.contains("+ 64 MiB 16 KiB of channels"), "{ram}");
}

#[test]
fn a_linux_end_gets_a_bulk_area_too() {
    // What `systems/broken/channel-bulk-too-large.toml` asks for, within the limit: the
    // channel device of the Linux end shows the area as BAR4.
    let path = systems_dir().join("broken/channel-bulk-too-large.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("bulk_kib = 129600", "bulk_kib = 4096");
    let c = compile_str("systems/t.toml", &text).unwrap();
    let ch = &c.manifest.channels[0];
    assert_eq!(ch.bulk_size, 4 << 20);
    let work = c
        .manifest
        .qubes
        .iter()
        .position(|q| q.name.as_str() == "work");
    assert_eq!(work, Some(usize::from(ch.a)));
    assert!(matches!(
        c.manifest.qubes[usize::from(ch.a)].kind,
        bulkhead_abi::manifest::QubeKind::Linux { .. }
    ));
}

#[test]
fn bad_bulk_sizes_are_named_with_a_fix() {
    for (value, words, hint) in [
        (
            "12",
            "12 KiB is not a multiple of 8 KiB",
            "use bulk_kib = 8 or 16",
        ),
        (
            "65544",
            "65544 KiB is above the largest bulk area, 65536 KiB (64 MiB)",
            "use bulk_kib = 65536",
        ),
        ("-8", "-8 KiB is not a size", "use bulk_kib = 0"),
        ("\"4 MiB\"", "bulk_kib", "bulk_kib = 1024"),
    ] {
        let extra = format!("bulk_kib = {value}");
        let found = problems(&two_qubes_and(&channel(
            "pixels", "net", "firewall", "p", &extra,
        )));
        let text = shown(&found, "channel \"pixels\".bulk_kib");
        assert!(text.starts_with("systems/t.toml:"), "{text}");
        assert!(
            text.contains(words) && text.contains(hint),
            "{value}: {text}"
        );
    }
    let found = problems(&two_qubes_and(&channel(
        "pixels", "net", "firewall", "p", "bulk = 8",
    )));
    assert!(shown(&found, "channel \"pixels\".bulk").contains("bulk_kib"));
}

#[test]
fn the_framebuffer_reaches_the_manifest_and_the_summary() {
    let text = with_qubes(&format!(
        "{}\nframebuffer = true\n\n{}\nframebuffer = false\n",
        qube("gui", "gui", 8, "purple").trim_end(),
        qube("net", "net", 8, "red").trim_end(),
    ));
    let c = compile_str("systems/t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let flags: Vec<bool> = c.manifest.qubes.iter().map(|q| q.framebuffer).collect();
    assert_eq!(flags, [true, false]);
    let summary = c.summary();
    assert!(
        summary.contains("Framebuffer: gui maps the firmware's framebuffer"),
        "{summary}"
    );
    let word = with_qubes(&format!(
        "{}\nframebuffer = \"yes\"\n",
        qube("gui", "gui", 8, "purple").trim_end()
    ));
    let found = problems(&word);
    assert!(shown(&found, "qube \"gui\".framebuffer").contains("true or false"));
}

#[test]
fn io_ports_reach_the_manifest_and_the_summary() {
    let text = with_qubes(&format!(
        "{}\nio_ports = [\"0x60\", \"0x64\"]\n\n{}\nio_ports = [\"0x2F8-0x2ff\"]\n\n{}",
        qube("gui", "gui", 8, "purple").trim_end(),
        qube("usb", "usb", 8, "red").trim_end(),
        qube("net", "net", 8, "red"),
    ));
    let c = compile_str("systems/t.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<(u8, u16, u16)> = c
        .manifest
        .ports
        .iter()
        .map(|p| (p.qube, p.ports.first, p.ports.last))
        .collect();
    assert_eq!(ports, [(0, 0x60, 0x60), (0, 0x64, 0x64), (1, 0x2F8, 0x2FF)]);
    let summary = c.summary();
    assert!(
        summary.contains("I/O ports of gui: 0x60 0x64, passed through; every other port traps (0x64 is the i8042 controller's command port: it can reset the machine)"),
        "{summary}"
    );
    assert!(
        summary.contains("I/O ports of usb: 0x2f8-0x2ff, passed through; every other port traps\n")
    );
    // The same port in one qube twice, and a port as a TOML number.
    let twice = with_qubes(&format!(
        "{}\nio_ports = [\"0x60\", \"0x60-0x60\"]\n",
        qube("gui", "gui", 8, "purple").trim_end()
    ));
    let found = problems(&twice);
    assert!(shown(&found, "qube \"gui\".io_ports").contains("this qube names it already"));
    let number = with_qubes(&format!(
        "{}\nio_ports = [0x60]\n",
        qube("gui", "gui", 8, "purple").trim_end()
    ));
    let found = problems(&number);
    assert!(shown(&found, "qube \"gui\".io_ports").contains("a list of ports in double quotes"));
}

//! Tests of the whole compiler: the shipped descriptions, the broken fixtures, and the wording
//! of the diagnostics people will read.

use super::diagnostics::Diagnostic;
use super::*;
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{MAX_QUBES, QubeKind, RestartPolicy};

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

fn problems(text: &str) -> Vec<Diagnostic> {
    match compile_str("systems/t.toml", text) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(d) => d.iter().cloned().collect(),
    }
}

#[test]
fn default_system_compiles_and_round_trips() {
    let c = compile_file(&systems_dir().join("default.toml")).unwrap();
    let m = &c.manifest;
    assert_eq!(m.system.as_str(), "default");
    assert_eq!(c.ram_mib, 256);
    assert_eq!(c.images, ["net", "firewall", "usb", "gui"]);
    let names: Vec<&str> = m.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["net", "firewall", "usb", "gui"]);
    let labels: Vec<Label> = m.qubes.iter().map(|q| q.label).collect();
    assert_eq!(labels, [Label::Red, Label::Green, Label::Red, Label::Black]);
    for (i, q) in m.qubes.iter().enumerate() {
        assert_eq!(
            (q.kind, q.memory_mib, q.image),
            (QubeKind::Unikernel, 8, i as u16 + 1)
        );
        assert_eq!(q.restart, RestartPolicy::OnFailure);
    }
    assert_eq!(Manifest::decode(&m.to_vec()).as_ref(), Ok(m));
    let summary = c.summary();
    for word in [
        "firewall",
        "on-failure",
        "black",
        "8 MiB",
        "#4 gui",
        "192 MiB free",
    ] {
        assert!(summary.contains(word), "{word} missing from:\n{summary}");
    }
}

/// Each fixture: file, the key its one problem is under, and words of its message.
const FIXTURES: &[(&str, &str, &str)] = &[
    ("unknown-field.toml", "qube \"net\".colour", "unknown key"),
    ("duplicate-name.toml", "qube[1].name", "called \"net\""),
    (
        "unknown-image.toml",
        "qube \"wifi\".image",
        "unknown image \"wifi\"",
    ),
    (
        "bad-label.toml",
        "qube \"net\".label",
        "unknown label \"pink\"",
    ),
    (
        "memory-not-multiple.toml",
        "qube \"net\".memory_mib",
        "not a multiple of 2 MiB",
    ),
    (
        "memory-too-big.toml",
        "system.ram_mib",
        "40 MiB more than ram_mib = 256",
    ),
    (
        "bad-restart.toml",
        "qube \"net\".restart",
        "unknown restart policy",
    ),
    ("syntax-error.toml", "qube[0].label", "string"),
    ("no-qubes.toml", "qube", "no qubes"),
    (
        "bad-name.toml",
        "qube[0].name",
        "\"Net_VM\" is not a valid name",
    ),
    (
        "linux-kind.toml",
        "qube \"work\".kind",
        "not supported yet: Linux AppVMs arrive",
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
    for (file, key, words) in FIXTURES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Wrong: "),
            "{file} starts with a comment saying what is wrong"
        );
        let err = compile_file(&path).expect_err(file);
        let diags = err.downcast_ref::<Diagnostics>().expect("diagnostics");
        let all: Vec<&Diagnostic> = diags.iter().collect();
        assert_eq!(all.len(), 1, "{file}: one problem expected:\n{diags}");
        let d = all[0];
        assert_eq!(d.key, *key, "{file}:\n{diags}");
        assert!(
            d.message.contains(words),
            "{file}: {:?} lacks {words:?}",
            d.message
        );
        assert!(d.position.is_some(), "{file} has a line and column");
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

//! Tests of Linux qubes and disposables: `systems/appvm.toml`, the bundle layout they make,
//! their command lines, and properties over generated descriptions.

use super::*;
use bulkhead_abi::bundle::EntryKind;
use bulkhead_abi::manifest::{QubeKind, RestartPolicy, StartPolicy};
use proptest::prelude::*;

fn appvm() -> CompiledSystem {
    compile_file(&crate::workspace_root().join("systems/appvm.toml")).unwrap()
}

#[test]
fn appvm_system_compiles() {
    let c = appvm();
    let m = &c.manifest;
    let names: Vec<&str> = m.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["net", "firewall", "work", "disp", "requester"]);
    assert_eq!(c.images, ["net", "firewall", "testing"]);
    assert_eq!(c.templates, ["debian"]);
    let (work, disp) = (&m.qubes[2], &m.qubes[3]);
    // Both boot the one kernel (#4) and initramfs (#5); each has its command line.
    assert_eq!((work.image, disp.image), (4, 4));
    assert_eq!(
        work.kind,
        QubeKind::Linux {
            initrd: 5,
            cmdline: 8
        }
    );
    assert_eq!(
        disp.kind,
        QubeKind::Linux {
            initrd: 5,
            cmdline: 9
        }
    );
    assert_eq!((work.config, disp.config), (None, None));
    assert_eq!(
        (work.start, disp.start),
        (StartPolicy::AtBoot, StartPolicy::OnRequest)
    );
    assert_eq!(disp.restart, RestartPolicy::Never);
    assert!(work.args.is_empty());
    let kinds: Vec<(usize, EntryKind, &str)> = c
        .entries()
        .iter()
        .map(|e| (e.index, e.kind, &*e.name.clone().leak()))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, EntryKind::Image, "net"),
            (2, EntryKind::Image, "firewall"),
            (3, EntryKind::Image, "testing"),
            (4, EntryKind::LinuxKernel, "debian.kernel"),
            (5, EntryKind::Initrd, "debian.initrd"),
            (6, EntryKind::Config, "net.cfg"),
            (7, EntryKind::Config, "firewall.cfg"),
            (8, EntryKind::Cmdline, "work.cmdline"),
            (9, EntryKind::Cmdline, "disp.cmdline"),
        ]
    );
    let channels: Vec<(&str, u8, u8, u32, &str)> = m
        .channels
        .iter()
        .map(|ch| {
            (
                ch.name.as_str(),
                ch.a,
                ch.b,
                ch.slot_size,
                ch.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("firewall.net", 0, 1, 2048, "network"),
            ("work.net", 1, 2, 2048, "network"),
            ("disp.req0", 4, 3, 2048, "disposable"),
        ]
    );
    // The firewall serves work at its address, from its blob.
    let fw = c.configs.iter().find(|b| b.qube == 1).unwrap();
    assert_eq!(fw.config.downstream[0].qube, "work");
    assert_eq!(fw.config.downstream[0].address, Some([10, 137, 0, 10]));
}

#[test]
fn appvm_command_lines() {
    let c = appvm();
    let line = |q: &str| {
        c.cmdlines
            .iter()
            .find(|l| c.manifest.qubes[l.qube].name == q)
            .unwrap()
            .text
            .clone()
    };
    assert_eq!(
        line("work"),
        "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable bulkhead.name=work \
         bulkhead.template=debian bulkhead.net=work.net bulkhead.ip=10.137.0.10/24 \
         bulkhead.gw=10.137.0.1 bulkhead.dns=10.139.1.1,10.139.1.2"
    );
    assert_eq!(
        line("disp"),
        "console=ttyS0 loglevel=4 reboot=t panic=-1 tsc=reliable bulkhead.name=disp \
         bulkhead.template=debian"
    );
}

#[test]
fn appvm_summary_shows_linux_qubes() {
    let summary = appvm().summary();
    for words in [
        "work       linux      debian #4    256 MiB  blue    on-failure  at boot",
        "disp       linux      debian #4    192 MiB  gray    never       on request",
        "disp.req0     requester (0)   disp (0)        136 KiB  32 x 2048 B",
        "work      firewall  client                        10.137.0.10/24",
        "#4 debian.kernel, #5 debian.initrd",
        "#8 work.cmdline (",
    ] {
        assert!(summary.contains(words), "{words:?} missing from\n{summary}");
    }
}

/// `[system]` with room, then `qubes`.
fn system(qubes: &str) -> String {
    format!("[system]\nram_mib = 4096\n{qubes}")
}

fn linux(name: &str, extra: &str) -> String {
    format!(
        "\n[[qube]]\nname = \"{name}\"\nkind = \"linux\"\nmemory_mib = 64\nlabel = \"blue\"\n{extra}"
    )
}

#[test]
fn kernel_args_are_appended_and_template_defaults() {
    let c = compile_str(
        "systems/t.toml",
        &system(&linux("a", "kernel_args = \" quiet   x=1 \"\n")),
    )
    .unwrap();
    assert!(
        c.cmdlines[0]
            .text
            .ends_with("bulkhead.name=a bulkhead.template=debian quiet x=1"),
        "{}",
        c.cmdlines[0].text
    );
    assert!(c.summary().contains("\"quiet x=1\""));
}

#[test]
fn several_requesters_number_their_channels() {
    let uni = |name: &str| {
        format!(
            "\n[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
             memory_mib = 8\nlabel = \"red\"\ndisposables = [\"d1\", \"d2\"]\n"
        )
    };
    let text = system(&format!(
        "{}{}{}{}",
        uni("r1"),
        linux("d1", "disposable = true\n"),
        uni("r2"),
        linux("d2", "disposable = true\nrestart = \"never\"\n")
    ));
    let c = compile_str("systems/t.toml", &text).unwrap();
    let names: Vec<(&str, u8, u8)> = c
        .manifest
        .channels
        .iter()
        .map(|ch| (ch.name.as_str(), ch.a, ch.b))
        .collect();
    assert_eq!(
        names,
        [
            ("d1.req0", 0, 1),
            ("d2.req0", 0, 3),
            ("d1.req1", 2, 1),
            ("d2.req1", 2, 3)
        ]
    );
}

#[test]
fn a_unikernel_may_be_a_disposable() {
    let uni = |name: &str, extra: &str| {
        format!(
            "\n[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
             memory_mib = 4\nlabel = \"red\"\n{extra}"
        )
    };
    let text = system(&format!(
        "{}{}",
        uni("req", "disposables = [\"dprobe\"]\n"),
        uni("dprobe", "disposable = true\nargs = \"mode=cpu-state\"\n")
    ));
    let c = compile_str("systems/t.toml", &text).unwrap();
    let m = &c.manifest;
    assert_eq!(m.qubes[1].kind, QubeKind::Unikernel);
    assert_eq!(
        (m.qubes[0].start, m.qubes[1].start),
        (StartPolicy::AtBoot, StartPolicy::OnRequest)
    );
    let ch = &m.channels[0];
    assert_eq!((ch.name.as_str(), ch.a, ch.b), ("dprobe.req0", 0, 1));
    // It is still a disposable: it may not restart.
    let err = compile_str(
        "systems/t.toml",
        &text.replace(
            "disposable = true",
            "disposable = true\nrestart = \"always\"",
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("a disposable cannot restart"), "{err}");
}

#[test]
fn disposable_names_must_leave_room_for_the_channel() {
    let long = "d".repeat(20);
    let text = system(&format!(
        "{}\n[[qube]]\nname = \"r\"\nkind = \"unikernel\"\nimage = \"testing\"\nmemory_mib = 8\n\
         label = \"red\"\ndisposables = [\"{long}\"]\n",
        linux(&long, "disposable = true\n")
    ));
    let err = compile_str("systems/t.toml", &text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 19 bytes"), "{err}");
}

#[test]
fn mistyped_disposable_has_a_fix() {
    let err = compile_str(
        "systems/t.toml",
        &system(&linux("a", "disposable = \"true\"\n")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("remove the quotes: disposable = true"),
        "{err}"
    );
}

proptest! {
    /// However many Linux qubes there are, the bundle has one kernel and one initramfs, every
    /// Linux qube points at them and at its own command line, and the entries are numbered
    /// without gaps.
    #[test]
    fn linux_qubes_share_the_template(kinds in proptest::collection::vec(any::<bool>(), 1..12)) {
        let mut text = String::from("[system]\nram_mib = 4096\n");
        for (i, linux_qube) in kinds.iter().enumerate() {
            if *linux_qube {
                text.push_str(&linux(&format!("q{i}"), ""));
            } else {
                text.push_str(&format!(
                    "\n[[qube]]\nname = \"q{i}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
                     memory_mib = 8\nlabel = \"red\"\n"
                ));
            }
        }
        let c = compile_str("systems/p.toml", &text).unwrap();
        let entries = c.entries();
        for (k, e) in entries.iter().enumerate() {
            prop_assert_eq!(e.index, k + 1);
        }
        let count = |kind| entries.iter().filter(|e| e.kind == kind).count();
        let linux_count = kinds.iter().filter(|l| **l).count();
        prop_assert_eq!(count(EntryKind::LinuxKernel), usize::from(linux_count > 0));
        prop_assert_eq!(count(EntryKind::Initrd), usize::from(linux_count > 0));
        prop_assert_eq!(count(EntryKind::Cmdline), linux_count);
        let kind_of = |i: u16| entries[usize::from(i) - 1].kind;
        for q in &c.manifest.qubes {
            match q.kind {
                QubeKind::Linux { initrd, cmdline } => {
                    prop_assert_eq!(kind_of(q.image), EntryKind::LinuxKernel);
                    prop_assert_eq!(kind_of(initrd), EntryKind::Initrd);
                    prop_assert_eq!(kind_of(cmdline), EntryKind::Cmdline);
                    let name = format!("bulkhead.name={} ", q.name);
                    let has_name = matches!(entries[usize::from(cmdline) - 1].content,
                        Content::Bytes(b) if std::str::from_utf8(b).unwrap().contains(&name));
                    prop_assert!(has_name);
                }
                QubeKind::Unikernel => prop_assert_eq!(kind_of(q.image), EntryKind::Image),
            }
        }
    }
}

//! Tests of the admin qube, `tags`, `default_dispvm` and `[[policy]]`: the qrexec channels and
//! command lines they make, the admin qube's blob (decided against end to end), the
//! refusals the fixtures do not show, and the warnings.

use super::test_support::{one_problem, problems};
use super::*;
use bulkhead_policy::{Call, Decision, DenyReason, Requested, Resolved, evaluate};
use bulkhead_qubeconfig::{AdminConfig, QubeConfig, QubeKind};

/// An admin qube, work (tag dev, default disposable disp), personal and disp, then `rest`.
fn system(rest: &str) -> String {
    format!(
        "[system]\nram_mib = 1024\n\n\
         [[qube]]\nname = \"admin\"\nkind = \"unikernel\"\nimage = \"admin\"\nmemory_mib = 8\n\
         label = \"black\"\ndisposables = [\"disp\"]\n\n\
         [[qube]]\nname = \"work\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"blue\"\n\
         tags = [\"dev\"]\ndefault_dispvm = \"disp\"\n\n\
         [[qube]]\nname = \"personal\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"yellow\"\n\n\
         [[qube]]\nname = \"disp\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"red\"\n\
         disposable = true\n\n{rest}"
    )
}

fn policy(service: &str, source: &str, target: &str, action: &str, extra: &str) -> String {
    format!(
        "[[policy]]\nservice = \"{service}\"\nsource = \"{source}\"\ntarget = \"{target}\"\n\
         action = \"{action}\"\n{extra}\n"
    )
}

/// The admin qube's blob, decoded as the admin qube decodes it.
fn admin_blob(c: &CompiledSystem) -> AdminConfig {
    let blob = c.configs.iter().find(|b| b.config.admin.is_some()).unwrap();
    QubeConfig::decode(&blob.bytes).unwrap().admin.unwrap()
}

#[test]
fn the_qrexec_system_compiles_to_channels_command_lines_and_blobs() {
    let c = compile_file(&workspace_root().join("systems/tests/qrexec.toml")).unwrap();
    let m = &c.manifest;
    let channels: Vec<(&str, u8, u8, &str)> = m
        .channels
        .iter()
        .map(|ch| (ch.name.as_str(), ch.a, ch.b, ch.purpose.as_str()))
        .collect();
    // After the disposables' and the GUI channels, one per Linux qube and gui qube.
    assert_eq!(
        &channels[4..],
        [
            ("gui.qrexec", 1, 0, "qrexec"),
            ("work.qrexec", 2, 0, "qrexec"),
            ("personal.qrexec", 3, 0, "qrexec"),
            ("disp.qrexec", 4, 0, "qrexec"),
        ]
    );
    let q = m
        .channels
        .iter()
        .find(|ch| ch.name.as_str() == "work.qrexec")
        .unwrap();
    assert_eq!((q.slot_size, q.bulk_size), (2048, 2048 * 1024));
    // Each qube's qrexec channel comes after its GUI channel.
    let work = c.channel_ends.iter().zip(m.channels.iter());
    let local: Vec<(&str, usize)> = work
        .filter(|(e, _)| e.a.qube == 2 || e.b.qube == 2)
        .map(|(e, ch)| {
            (
                ch.name.as_str(),
                if e.a.qube == 2 { e.a.local } else { e.b.local },
            )
        })
        .collect();
    assert_eq!(local, [("work.gui", 0), ("work.qrexec", 1)]);
    let line = &c.cmdlines.iter().find(|l| l.qube == 2).unwrap().text;
    assert!(
        line.ends_with("bulkhead.gui=work.gui bulkhead.qrexec=work.qrexec"),
        "{line}"
    );
    let gui = c.configs.iter().find(|b| b.qube == 1).unwrap();
    assert_eq!(gui.config.qrexec.as_deref(), Some("gui.qrexec"));
    let admin = admin_blob(&c);
    let names: Vec<&str> = admin.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["admin", "gui", "work", "personal", "disp"]);
    for (i, q) in admin.qubes.iter().enumerate() {
        assert_eq!(usize::from(q.index), i);
        assert_eq!(q.memory_mib, m.qubes[i].memory_mib);
        assert_eq!(q.label, m.qubes[i].label as u8);
        assert_eq!(q.kind == QubeKind::Linux, i >= 2, "{}", q.name);
        let channel = (i > 0).then(|| format!("{}.qrexec", q.name));
        assert_eq!(q.qrexec.as_deref(), channel.as_deref());
        assert_eq!(q.policy.admin, i == 0);
        assert_eq!(q.policy.disposable, i == 4);
        assert_eq!(
            q.policy.default_dispvm,
            [None, None, Some(4), Some(4), None][i]
        );
    }
    assert_eq!(
        admin.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        ["work-data", "home"]
    );
    assert!(admin.qubes[2].policy.tags.contains(0) && admin.qubes[3].policy.tags.contains(1));
    assert_eq!((admin.gui, admin.policy.entries.len()), (Some(1), 9));
    let summary = c.summary();
    assert!(
        summary.contains("qrexec: admin qube \"admin\", 9 policy entries"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "policy[7]  qubes.OpenInVM  @anyvm          @anyvm     ask default_target=@dispvm"
        ),
        "{summary}"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_admin_qube_decides_as_the_description_says() {
    let c = compile_file(&workspace_root().join("systems/tests/qrexec.toml")).unwrap();
    let admin = admin_blob(&c);
    let qubes = admin.policy_qubes();
    let (work, personal, disp) = (2, 3, 4);
    let decide = |service, source, target| {
        let call = Call {
            service,
            argument: "",
            source,
            target,
        };
        evaluate(&admin.policy, &qubes, &call)
    };
    let allow = |target, entry| Decision::Allow { target, entry };
    assert_eq!(
        decide("qubes.VMShell", work, Requested::Named(personal)),
        allow(Resolved::Qube(personal), 3)
    );
    assert_eq!(
        decide("qubes.VMShell", personal, Requested::Named(work)),
        Decision::Deny {
            reason: DenyReason::Policy,
            entry: Some(5)
        }
    );
    assert_eq!(
        decide("qubes.OpenInVM", personal, Requested::DispVm),
        allow(Resolved::Disposable(disp), 6)
    );
    assert_eq!(
        decide("admin.vm.List", personal, Requested::AdminVm),
        allow(Resolved::Admin, 8)
    );
    assert_eq!(
        decide("qubes.Filecopy", work, Requested::Named(personal)).entry(),
        Some(0)
    );
    let Decision::Ask {
        candidates, entry, ..
    } = decide("qubes.Filecopy", work, Requested::Default)
    else {
        panic!()
    };
    assert_eq!(entry, 1);
    assert!(candidates.contains(&Resolved::Disposable(disp)));
    assert!(
        !candidates.contains(&Resolved::Qube(personal)),
        "work-data never reaches home"
    );
    let Decision::Ask { default, .. } = decide("qubes.OpenInVM", work, Requested::Named(personal))
    else {
        panic!()
    };
    assert_eq!(default, Some(Resolved::Disposable(disp)));
}

#[test]
fn without_an_admin_qube_there_is_no_qrexec() {
    let c = compile_file(&workspace_root().join("systems/tests/services.toml")).unwrap();
    assert!(
        c.manifest
            .channels
            .iter()
            .all(|ch| ch.purpose.as_str() != "qrexec")
    );
    assert!(c.cmdlines.iter().all(|l| !l.text.contains("qrexec")));
    assert!(
        c.configs
            .iter()
            .all(|b| b.config.admin.is_none() && b.config.qrexec.is_none())
    );
    assert!(!c.summary().contains("qrexec:"));
}

#[test]
fn refusals() {
    let p = |source, target, action, extra| system(&policy("s", source, target, action, extra));
    one_problem(
        &p("@default", "work", "allow", ""),
        "policy[0].source",
        "\"@default\" cannot be written in source",
    );
    one_problem(
        &p("work", "@dispvm:disp", "allow", "redirect = \"@anyvm\""),
        "policy[0].redirect",
        "\"@anyvm\" cannot be written in redirect",
    );
    one_problem(
        &p("work", "personal", "allow", "default_target = \"work\""),
        "policy[0].default_target",
        "default_target with action = \"allow\"",
    );
    one_problem(
        &p("work", "@nobody", "deny", ""),
        "policy[0].target",
        "unknown keyword \"@nobody\"",
    );
    one_problem(
        &p("work", "@dispvm:nope", "deny", ""),
        "policy[0].target",
        "unknown qube \"nope\"",
    );
    one_problem(
        &system(&policy("*+x", "work", "personal", "deny", "")),
        "policy[0].service",
        "takes no argument",
    );
    one_problem(
        &system(&policy("s+a b", "work", "personal", "deny", "")),
        "policy[0].service",
        "is not a service argument",
    );
    let missing = system("[[policy]]\nservice = \"s\"\nsource = \"work\"\ntarget = \"personal\"\n");
    one_problem(&missing, "policy[0].action", "missing action");
    let twice = system("").replace("tags = [\"dev\"]", "tags = [\"dev\", \"dev\"]");
    one_problem(&twice, "qube \"work\".tags", "tag \"dev\" is listed twice");
    let unknown = system("").replace("default_dispvm = \"disp\"", "default_dispvm = \"dsp\"");
    one_problem(
        &unknown,
        "qube \"work\".default_dispvm",
        "unknown qube \"dsp\"",
    );
    let many: String = (0..=bulkhead_policy::MAX_ENTRIES)
        .map(|_| policy("s", "work", "personal", "deny", ""))
        .collect();
    one_problem(
        &system(&many),
        "policy[128]",
        "129 policy entries, at most 128 fit",
    );
    let names: String = (0..=bulkhead_policy::MAX_NAMES)
        .map(|i| policy(&format!("s{i}"), "work", "personal", "deny", ""))
        .collect();
    one_problem(
        &system(&names),
        "policy[64].service",
        "more than 64 different service names",
    );
}

#[test]
fn the_admin_qube_serves_at_most_as_many_qubes_as_it_has_channels() {
    let more: String = (0..5)
        .map(|i| {
            format!(
                "[[qube]]\nname = \"q{i}\"\nkind = \"linux\"\nmemory_mib = 64\nlabel = \"red\"\n\n"
            )
        })
        .collect();
    let found = problems(&system(&more));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "qube \"admin\".image");
    assert!(
        found[0]
            .message
            .contains("\"admin\" is an endpoint of 9 channels, at most 8 fit")
    );
    assert!(
        found[0]
            .hint
            .contains("has a qrexec channel to the admin qube"),
        "{}",
        found[0]
    );
}

#[test]
fn entries_that_can_never_match_are_warned_about() {
    let shadowed = [
        // (earlier, later): the later entry is covered.
        (
            policy("*", "@anyvm", "@anyvm", "deny", ""),
            policy("s+x", "work", "@dispvm:disp", "allow", ""),
        ),
        (
            policy("s", "@tag:dev", "@anyvm", "deny", ""),
            policy("s+", "work", "@tag:dev", "allow", ""),
        ),
        (
            policy("s", "@anyvm", "personal", "deny", ""),
            policy("s", "@tag:dev", "personal", "ask", ""),
        ),
        (
            policy("s", "@adminvm", "@adminvm", "deny", ""),
            policy("s", "admin", "admin", "allow", ""),
        ),
    ];
    for (earlier, later) in shadowed {
        let c = compile_str("systems/q.toml", &system(&format!("{earlier}{later}"))).unwrap();
        let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["policy[1]"], "{earlier}{later}");
        assert!(
            c.warnings[0]
                .message
                .contains("policy[1] can never match: policy[0]")
        );
        assert!(
            c.summary().contains("\n\nwarning: systems/q.toml:"),
            "{}",
            c.summary()
        );
    }
    let reachable = [
        (
            policy("s+x", "@anyvm", "@anyvm", "deny", ""),
            policy("s", "work", "personal", "allow", ""),
        ),
        (
            policy("s", "work", "@anyvm", "deny", ""),
            policy("s", "@anyvm", "personal", "allow", ""),
        ),
        (
            policy("s", "@anyvm", "@anyvm", "deny", ""),
            policy("s", "@anyvm", "@default", "ask", ""),
        ),
        (
            policy("s", "@anyvm", "@anyvm", "deny", ""),
            policy("s", "admin", "personal", "allow", ""),
        ),
        (
            policy("s", "@tag:dev", "@anyvm", "deny", ""),
            policy("s", "personal", "work", "allow", ""),
        ),
        (
            policy("s", "@anyvm", "@dispvm:disp", "deny", ""),
            policy("s", "work", "@dispvm", "allow", ""),
        ),
    ];
    for (earlier, later) in reachable {
        let c = compile_str("systems/q.toml", &system(&format!("{earlier}{later}"))).unwrap();
        assert!(c.warnings.is_empty(), "{earlier}{later}{:?}", c.warnings);
    }
}

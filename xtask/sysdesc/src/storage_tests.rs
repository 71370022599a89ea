//! Tests of `storagevm` and `private_mib`: the block channels they make, the storage qube's
//! blob, the clients' blobs, the volumes xtask places, and each refusal.

use super::test_support::{one_problem, problems};
use super::*;
use bulkhead_qubeconfig::ClientVolume;

fn qube(name: &str, image: &str, extra: &str) -> String {
    format!(
        "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"{image}\"\n\
         memory_mib = 4\nlabel = \"blue\"\n{extra}\n\n"
    )
}

fn system(rest: &str) -> String {
    format!(
        "[system]\nram_mib = 512\n\n{}{rest}",
        qube("storage", "storage", "devices = [\"pci-id:1af4:1042\"]")
    )
}

#[test]
fn each_client_gets_a_channel_and_the_storage_qube_lists_them() {
    let text = system(&format!(
        "{}{}",
        qube(
            "alice",
            "testing",
            "storagevm = \"storage\"\nprivate_mib = 16"
        ),
        qube(
            "bob",
            "testing",
            "storagevm = \"storage\"\nprivate_mib = 4096"
        ),
    ));
    let c = compile_str("systems/s.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let ch: Vec<_> = c.manifest.channels.iter().collect();
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].name.as_str(), "alice.blk");
    assert_eq!(
        (ch[0].a, ch[0].b),
        (1, 0),
        "side A the client, B the storage qube"
    );
    assert_eq!(ch[0].slot_size, bulkhead_abi::block::BLOCK_SLOT_SIZE);
    assert_eq!(ch[0].bulk_size, 2 * storage::POOL_KIB * 1024);
    assert_eq!(ch[1].purpose.as_str(), "block");
    let server = c
        .configs
        .iter()
        .find(|b| b.qube == 0)
        .and_then(|b| b.config.storage.clone())
        .expect("the storage qube's clients");
    let clients: Vec<_> = server
        .clients
        .iter()
        .map(|c| (c.qube.as_str(), c.channel.as_str(), c.volume.clone()))
        .collect();
    assert_eq!(
        clients,
        [
            ("alice", "alice.blk", ClientVolume::Private { mib: 16 }),
            ("bob", "bob.blk", ClientVolume::Private { mib: 4096 })
        ]
    );
    assert!(c.roots.is_empty(), "a unikernel has no template root");
    let alice = c.configs.iter().find(|b| b.qube == 1).unwrap();
    assert_eq!(
        alice.config.block_channel.as_deref(),
        Some("alice.blk"),
        "the client's blob names its channel"
    );
    let volumes: Vec<_> = c
        .volumes
        .iter()
        .map(|v| (v.qube.as_str(), v.storage.as_str(), v.mib))
        .collect();
    assert_eq!(
        volumes,
        [("alice", "storage", 16), ("bob", "storage", 4096)]
    );
    let summary = c.summary();
    assert!(
        summary
            .contains("Private volumes on storage's disk (4112 MiB): alice 16 MiB, bob 4096 MiB"),
        "{summary}"
    );
}

#[test]
fn the_block_channels_come_after_every_other() {
    let text = format!(
        "[system]\nram_mib = 512\n\n{}{}{}",
        qube("gui", "gui", ""),
        qube("storage", "storage", ""),
        qube(
            "alice",
            "testing",
            "guivm = \"gui\"\nstoragevm = \"storage\"\nprivate_mib = 8"
        ),
    );
    let c = compile_str("systems/s.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<_> = c
        .manifest
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["alice.gui", "alice.blk"]);
}

#[test]
fn a_linux_appvm_gets_its_volume_as_home() {
    let text = system(
        "[[qube]]\nname = \"work\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"blue\"\n\
         storagevm = \"storage\"\nprivate_mib = 32\n",
    );
    let c = compile_str("systems/s.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let ch = &c.manifest.channels[0];
    assert_eq!(ch.name.as_str(), "work.blk");
    assert_eq!((ch.a, ch.b), (1, 0), "side A the AppVM, B the storage qube");
    assert_eq!(ch.bulk_size, 2 * storage::POOL_KIB * 1024);
    let root = &c.manifest.channels[1];
    assert_eq!(root.name.as_str(), "work.root");
    assert_eq!((root.a, root.b), (1, 0));
    assert_eq!(root.purpose.as_str(), "block");
    let line = &c.cmdlines.iter().find(|l| l.qube == 1).unwrap().text;
    assert!(line.contains(" bulkhead.home=work.blk"), "{line}");
    assert!(line.contains(" bulkhead.root=work.root"), "{line}");
    // A Linux qube reads its settings from its command line: no blob of its own.
    assert!(c.configs.iter().all(|b| b.qube != 1));
    let server = c.configs.iter().find(|b| b.qube == 0).unwrap();
    let clients = &server.config.storage.as_ref().unwrap().clients;
    assert_eq!(
        (clients[0].qube.as_str(), &clients[0].volume),
        ("work", &ClientVolume::Private { mib: 32 })
    );
    assert_eq!(
        (clients[1].channel.as_str(), &clients[1].volume),
        (
            "work.root",
            &ClientVolume::TemplateRoot {
                template: "debian".try_into().unwrap()
            }
        )
    );
    let volumes: Vec<_> = c.volumes.iter().map(|v| (v.qube.as_str(), v.mib)).collect();
    assert_eq!(volumes, [("work", 32)]);
    let roots: Vec<_> = c
        .roots
        .iter()
        .map(|r| (r.qube.as_str(), r.storage.as_str(), r.template.as_str()))
        .collect();
    assert_eq!(roots, [("work", "storage", "debian")]);
    let summary = c.summary();
    assert!(
        summary.contains("Template root debian on storage's disk (one read-only volume, checked by dm-verity), booted by work"),
        "{summary}"
    );
    // Without a volume, no `bulkhead.home=`.
    let plain =
        system("[[qube]]\nname = \"work\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"blue\"\n");
    let c = compile_str("systems/s.toml", &plain).unwrap_or_else(|d| panic!("{d}"));
    assert!(c.cmdlines.iter().all(|l| !l.text.contains("bulkhead.home")));
    assert!(c.cmdlines.iter().all(|l| !l.text.contains("bulkhead.root")));
}

#[test]
fn a_disposable_gets_the_template_root_and_no_volume() {
    let text = system(
        "[[qube]]\nname = \"disp1\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"red\"\n\
         disposable = true\nstoragevm = \"storage\"\n\n\
         [[qube]]\nname = \"work\"\nkind = \"linux\"\nmemory_mib = 128\nlabel = \"blue\"\n\
         disposables = [\"disp1\"]\n",
    );
    let c = compile_str("systems/s.toml", &text).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<_> = c
        .manifest
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| n.starts_with("disp1.") && !n.ends_with(".req0"))
        .collect();
    assert_eq!(names, ["disp1.root"], "a root channel, no volume channel");
    assert!(c.volumes.is_empty());
    assert_eq!(c.roots.len(), 1);
    let line = &c.cmdlines.iter().find(|l| l.qube == 1).unwrap().text;
    assert!(line.contains(" bulkhead.root=disp1.root"), "{line}");
    assert!(!line.contains("bulkhead.home"), "{line}");
}

#[test]
fn refusals_name_the_qube_and_say_why() {
    let client = |extra: &str| system(&qube("alice", "testing", extra));
    one_problem(
        &client("storagevm = \"storag\"\nprivate_mib = 16"),
        "qube \"alice\".storagevm",
        "unknown storagevm \"storag\"",
    );
    let hint = &problems(&client("storagevm = \"storag\"\nprivate_mib = 16"))[0].hint;
    assert!(hint.contains("did you mean \"storage\""), "{hint}");
    one_problem(
        &client("storagevm = \"storage\""),
        "qube \"alice\".private_mib",
        "missing private_mib",
    );
    one_problem(
        &client("private_mib = 16"),
        "qube \"alice\".private_mib",
        "private_mib without storagevm",
    );
    for bad in ["0", "-4", "1048577"] {
        one_problem(
            &client(&format!("storagevm = \"storage\"\nprivate_mib = {bad}")),
            "qube \"alice\".private_mib",
            "is not possible",
        );
    }
    // (A disposable no qube may start is a problem of its own.)
    let disposable = problems(&system(&qube(
        "alice",
        "testing",
        "storagevm = \"storage\"\nprivate_mib = 16\ndisposable = true",
    )));
    assert!(
        disposable
            .iter()
            .any(|d| d.key == "qube \"alice\".private_mib"
                && d.message.contains("a disposable keeps nothing")),
        "{disposable:#?}"
    );
    one_problem(
        &format!(
            "[system]\nram_mib = 512\n\n{}",
            qube(
                "storage",
                "storage",
                "storagevm = \"storage\"\nprivate_mib = 4"
            )
        ),
        "qube \"storage\".storagevm",
        "cannot keep its own private volume",
    );
    let long = "a-twenty-one-byte-qub";
    assert_eq!(long.len(), 21);
    one_problem(
        &system(&qube(
            long,
            "testing",
            "storagevm = \"storage\"\nprivate_mib = 16",
        )),
        &format!("qube \"{long}\".storagevm"),
        "more than 24 bytes",
    );
}

#[test]
fn a_storage_qube_of_the_shipped_scenario_compiles() {
    let path = crate::workspace_root().join("systems/tests/storage.toml");
    let c = compile_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.volumes.len() >= 3, "alice, bob and mallory have volumes");
    assert!(c.volumes.iter().all(|v| v.storage == "storage"));
}

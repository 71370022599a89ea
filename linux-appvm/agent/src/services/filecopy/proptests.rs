//! Properties: any tree of files and directories arrives as it was sent; any bytes at all
//! leave everything outside the incoming folder, and everything planted in it, as it was.

use super::testutil::{Node, Raw, Tmp, snapshot};
use super::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
enum Tree {
    File(Vec<u8>, bool),
    Dir(BTreeMap<String, Tree>),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._é-]{1,12}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn tree() -> impl Strategy<Value = Tree> {
    let file = (vec(any::<u8>(), 0..3000), any::<bool>()).prop_map(|(d, x)| Tree::File(d, x));
    file.prop_recursive(4, 32, 5, |inner| {
        btree_map(name(), inner, 0..5).prop_map(Tree::Dir)
    })
}

fn make(path: &Path, tree: &Tree) {
    match tree {
        Tree::File(data, exec) => {
            fs::write(path, data).unwrap();
            let mode = if *exec { 0o750 } else { 0o640 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Tree::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, tree) in entries {
                make(&path.join(name), tree);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Dir(Vec<u8>),
    File(Vec<u8>, Vec<u8>),
    Up,
    End,
    Bytes(Vec<u8>),
}

/// Names aimed at the planted entries and the way out, and anything at all.
fn hostile_name() -> impl Strategy<Value = Vec<u8>> {
    let aimed = [
        "..",
        ".",
        "",
        "/",
        "../outside",
        "/tmp",
        "x",
        "f",
        "g",
        "d",
        "e",
        "ok",
        "a\0",
        "x/..",
    ];
    prop_oneof![
        proptest::sample::select(aimed.map(|s| s.as_bytes().to_vec()).to_vec()),
        vec(any::<u8>(), 0..8),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => hostile_name().prop_map(Op::Dir),
        3 => (hostile_name(), vec(any::<u8>(), 0..64)).prop_map(|(n, d)| Op::File(n, d)),
        2 => Just(Op::Up),
        1 => Just(Op::End),
        1 => vec(any::<u8>(), 0..16).prop_map(Op::Bytes),
    ]
}

fn encode(ops: &[Op]) -> Vec<u8> {
    let mut raw = Raw::new();
    for op in ops {
        raw = match op {
            Op::Dir(name) => raw.dir(name),
            Op::File(name, data) => raw.file(name, data),
            Op::Up => raw.up(),
            Op::End => Raw(raw.end()),
            Op::Bytes(b) => Raw(raw.0.into_iter().chain(b.iter().copied()).collect()),
        };
    }
    raw.0
}

/// `outside/secret`, and in `in/`: links `x` (to `outside`), `f` (to the secret), `g`
/// (dangling, to `outside/new`), a directory `d` with `old`, a file `e`.
fn plant(root: &Path) -> PathBuf {
    let (incoming, outside) = (root.join("in"), root.join("outside"));
    fs::create_dir_all(incoming.join("d")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::write(incoming.join("d/old"), b"old").unwrap();
    fs::write(incoming.join("e"), b"old").unwrap();
    symlink("../outside", incoming.join("x")).unwrap();
    symlink(outside.join("secret"), incoming.join("f")).unwrap();
    symlink(outside.join("new"), incoming.join("g")).unwrap();
    incoming
}

fn check_contained(bytes: &[u8]) {
    let t = Tmp::new();
    let incoming = plant(&t.0);
    let outside = snapshot(&t.0, Some("in"));
    let planted = snapshot(&incoming, None);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 1000,
        max_depth: 8,
    };
    let _ = receive(&mut Cursor::new(bytes), &incoming, limits);
    assert_eq!(snapshot(&t.0, Some("in")), outside);
    let after = snapshot(&incoming, None);
    for (path, node) in &planted {
        assert_eq!(after.get(path), Some(node), "{}", path.display());
    }
    for (path, node) in &after {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            !(name.starts_with(".filecopy-") && name.ends_with(".part")),
            "{name}"
        );
        if !planted.contains_key(path) {
            assert!(
                matches!(node, Node::Dir | Node::File(..)),
                "{}",
                path.display()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_tree_round_trips(top in btree_map(name(), tree(), 1..4)) {
        let (src, dst) = (Tmp::new(), Tmp::new());
        let mut sources = Vec::new();
        for (name, tree) in &top {
            make(&src.0.join(name), tree);
            sources.push(src.0.join(name));
        }
        let mut stream = Vec::new();
        let sent = send(&sources, &mut stream).unwrap();
        let got = receive(&mut Cursor::new(&stream), &dst.0, Limits::default()).unwrap();
        prop_assert_eq!(got, sent);
        prop_assert_eq!(snapshot(&dst.0, None), snapshot(&src.0, None));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_records_stay_inside(ops in vec(op(), 0..24), cut in any::<prop::sample::Index>(),
                                   flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>()))) {
        let mut bytes = encode(&ops);
        if let Some((at, v)) = flip && !bytes.is_empty() {
            let at = at.index(bytes.len());
            bytes[at] ^= v;
        }
        if cut.index(4) == 0 && !bytes.is_empty() {
            bytes.truncate(cut.index(bytes.len()));
        }
        check_contained(&bytes);
    }

    #[test]
    fn any_bytes_stay_inside(mut bytes in vec(any::<u8>(), 0..300), header in any::<bool>()) {
        if header {
            bytes.splice(0..0, Raw::new().0);
        }
        check_contained(&bytes);
    }
}

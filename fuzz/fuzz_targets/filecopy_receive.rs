//! Fuzz target: arbitrary bytes as a `qubes.Filecopy` stream into the receiver
//! (`bulkhead_agent::services::filecopy::receive`), into a fresh incoming folder that holds
//! planted traps: symbolic links to a folder outside (`x`), to a file outside (`f`), a
//! dangling one whose target would be created outside (`g`), an existing directory (`d`)
//! and file (`e`). Seeded by the dictionary `filecopy_receive.dict`.
//!
//! Checks: no panic; nothing outside the incoming folder changed; every planted entry is
//! as it was; everything new is a regular file or a directory; no temporary file is left.
#![no_main]

use bulkhead_agent::services::filecopy::{Limits, receive};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>, u32),
    Link(PathBuf),
    Other,
}

/// Everything under `root` without following links, the top-level entry `skip` left out.
fn snapshot(root: &Path, skip: &str) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(skip) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let node = if meta.is_dir() {
                todo.push(path.clone());
                Node::Dir
            } else if meta.is_file() {
                Node::File(fs::read(&path).unwrap(), meta.permissions().mode())
            } else if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else {
                Node::Other
            };
            out.insert(rel, node);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("fuzz-filecopy-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let (incoming, outside) = (root.join("in"), root.join("outside"));
    fs::create_dir_all(incoming.join("d")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::write(incoming.join("d/old"), b"old").unwrap();
    fs::write(incoming.join("e"), b"old").unwrap();
    symlink("../outside", incoming.join("x")).unwrap();
    symlink(outside.join("secret"), incoming.join("f")).unwrap();
    symlink(outside.join("new"), incoming.join("g")).unwrap();
    let before = snapshot(&root, "in");
    let planted = snapshot(&incoming, "");

    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 256,
        max_depth: 16,
    };
    let _ = receive(&mut &data[..], &incoming, limits);

    assert_eq!(snapshot(&root, "in"), before, "something outside changed");
    let after = snapshot(&incoming, "");
    for (path, node) in &planted {
        assert_eq!(after.get(path), Some(node), "{} changed", path.display());
    }
    for (path, node) in &after {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(!(name.starts_with(".filecopy-") && name.ends_with(".part")), "{name} left");
        if !planted.contains_key(path) {
            assert!(matches!(node, Node::Dir | Node::File(..)), "{} made", path.display());
        }
    }
    fs::remove_dir_all(&root).unwrap();
});

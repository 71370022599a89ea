//! What the tests share: temporary folders, a tree's snapshot, raw streams.

use super::format;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh folder, removed on drop.
pub(super) struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new() -> Tmp {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("filecopy-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Tmp(path)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What is at a path, as far as a copy cares (files: bytes and the owner's x bit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    Dir,
    File(Vec<u8>, bool),
    Link(PathBuf),
    Other,
}

/// Everything under `root`, by path relative to it, without following links; the
/// top-level entry `skip` left out.
pub(super) fn snapshot(root: &Path, skip: Option<&str>) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, skip: Option<&str>, out: &mut BTreeMap<PathBuf, Node>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if skip.is_some_and(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let node = if meta.is_dir() {
                walk(root, &path, None, out);
                Node::Dir
            } else if meta.is_file() {
                let exec = meta.permissions().mode() & 0o100 != 0;
                Node::File(fs::read(&path).unwrap(), exec)
            } else if meta.file_type().is_symlink() {
                Node::Link(fs::read_link(&path).unwrap())
            } else {
                Node::Other
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

/// A stream written byte by byte, names unchecked.
pub(super) struct Raw(pub Vec<u8>);

impl Raw {
    pub fn new() -> Raw {
        let mut v = format::MAGIC.to_vec();
        v.extend(format::VERSION.to_le_bytes());
        Raw(v)
    }
    fn name(mut self, tag: u8, name: &[u8], mode: u32) -> Raw {
        self.0.push(tag);
        self.0.extend((name.len() as u16).to_le_bytes());
        self.0.extend(name);
        self.0.extend(mode.to_le_bytes());
        self
    }
    pub fn dir(self, name: &[u8]) -> Raw {
        self.name(1, name, 0o755)
    }
    pub fn file(self, name: &[u8], data: &[u8]) -> Raw {
        let mut r = self.name(2, name, 0o644);
        r.0.extend((data.len() as u64).to_le_bytes());
        r.0.extend(data);
        r
    }
    pub fn up(mut self) -> Raw {
        self.0.push(3);
        self
    }
    pub fn end(mut self) -> Vec<u8> {
        self.0.push(4);
        self.0
    }
}

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

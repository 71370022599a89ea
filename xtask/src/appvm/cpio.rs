//! A writer for the "newc" cpio format (the one the kernel unpacks as an initramfs):
//! every entry is a 110-byte ASCII header, the NUL-terminated name padded to 4 bytes, then
//! the data padded to 4 bytes; a `TRAILER!!!` entry ends the archive.
//!
//! The archive is deterministic: entries are sorted by path, every parent directory is
//! present before its children, owners are root, inode numbers count up from 1 and every
//! mtime is the same fixed value.

use std::collections::BTreeMap;

/// The mtime of every entry (deterministic output; 2024-01-01T00:00:00Z).
pub const FIXED_MTIME: u32 = 1_704_067_200;

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Symlink { target: String },
    CharDev { major: u32, minor: u32 },
}

/// An archive under construction: paths (without the leading `/`) to nodes.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds `node` at `path` (leading `/` optional), creating the missing parent directories.
    /// A later add to the same path replaces the earlier one.
    pub fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_matches('/');
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Node::Dir);
        }
        self.entries.insert(path.to_string(), node);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, executable: bool) {
        self.add(path, Node::File { data, executable });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        );
    }

    pub fn dir(&mut self, path: &str) {
        self.add(path, Node::Dir);
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// The archive bytes (uncompressed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, node)) in self.entries.iter().enumerate() {
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match node {
                Node::Dir => (0o040_755, 2, &[], (0, 0)),
                Node::File { data, executable } => (
                    if *executable { 0o100_755 } else { 0o100_644 },
                    1,
                    data,
                    (0, 0),
                ),
                Node::Symlink { target } => (0o120_777, 1, target.as_bytes(), (0, 0)),
                Node::CharDev { major, minor } => (0o020_600, 1, &[], (*major, *minor)),
            };
            write_entry(&mut out, ino as u32 + 1, mode, nlink, rdev, path, data);
        }
        write_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
        out
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        if name == "TRAILER!!!" { 0 } else { FIXED_MTIME },
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check (only for the "070702" variant)
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, rdev major, data) per entry, trailer excluded.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let total = bytes.len();
        let mut out = Vec::new();
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap() as usize
            };
            let (mode, size, rmajor, namesize) = (field(1), field(6), field(9), field(11));
            let name = std::str::from_utf8(&bytes[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = bytes[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            assert_eq!((total - bytes.len() + next) % 4, 0);
            if name == "TRAILER!!!" {
                assert_eq!(next, bytes.len());
                return out;
            }
            out.push((name, mode as u32, rmajor as u32, data));
            bytes = &bytes[next..];
        }
    }

    #[test]
    fn round_trips_with_parents_first_and_sorted() {
        let mut a = Archive::new();
        a.file("/lib/modules/6.1/kernel/tun.ko", b"12345".to_vec(), false);
        a.symlink("/bin/sh", "busybox");
        a.file("/init", b"#!/bin/sh\n".to_vec(), true);
        a.add("/dev/console", Node::CharDev { major: 5, minor: 1 });
        let entries = parse(&a.to_bytes());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/tun.ko"
            ]
        );
        let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(get("bin").1, 0o040_755);
        assert_eq!(get("bin/sh").1, 0o120_777);
        assert_eq!(get("bin/sh").3, b"busybox");
        assert_eq!(get("init").1, 0o100_755);
        assert_eq!(get("dev/console").1 & 0o170_000, 0o020_000);
        assert_eq!(get("dev/console").2, 5);
        assert_eq!(get("lib/modules/6.1/kernel/tun.ko").3, b"12345");
    }

    #[test]
    fn is_deterministic() {
        let build = |order: &[&str]| {
            let mut a = Archive::new();
            for p in order {
                a.file(p, p.as_bytes().to_vec(), false);
            }
            a.to_bytes()
        };
        assert_eq!(
            build(&["/a/b", "/c", "/a/d"]),
            build(&["/c", "/a/d", "/a/b"])
        );
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let bytes = Archive::new().to_bytes();
        assert_eq!(bytes.len(), (110 + 11usize).next_multiple_of(4));
        assert!(parse(&bytes).is_empty());
    }
}

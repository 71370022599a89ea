//! The receiver against hostile streams.

use super::format;
use super::receive::receive_with;
use super::testutil::{Node, Raw, Tmp, pattern, snapshot};
use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Cursor};
use std::os::unix::fs::symlink;
use std::path::Path;

fn recv(bytes: &[u8], incoming: &Path) -> Result<Summary, ReceiveError> {
    receive(&mut Cursor::new(bytes), incoming, Limits::default())
}

fn recv_limits(bytes: &[u8], incoming: &Path, limits: Limits) -> Result<Summary, ReceiveError> {
    receive(&mut Cursor::new(bytes), incoming, limits)
}

#[test]
fn bad_names_are_refused() {
    let long = vec![b'n'; 256];
    let bad: [&[u8]; 11] = [
        b"", b".", b"..", b"a/b", b"/etc", b"../x", b"a\0b", &long, b"\xff", b"a\nb", b"\x1b[2J",
    ];
    for name in bad {
        for stream in [
            Raw::new().dir(name).up().end(),
            Raw::new().file(name, b"x").end(),
        ] {
            let t = Tmp::new();
            let err = recv(&stream, &t.0.join("in")).unwrap_err();
            assert!(
                matches!(err, ReceiveError::BadName { .. }),
                "{name:?}: {err}"
            );
            assert_eq!(err.code(), format::BAD_NAME);
            assert_eq!(
                snapshot(&t.0, None),
                BTreeMap::from([("in".into(), Node::Dir)])
            );
        }
    }
    let t = Tmp::new();
    let ok = vec![b'n'; 255];
    recv(
        &Raw::new().dir(&ok).file("é ü".as_bytes(), b"").up().end(),
        &t.0,
    )
    .unwrap();
}

#[test]
fn a_broken_stream_is_refused() {
    let t = Tmp::new();
    let mut bad_version = Raw::new().end();
    bad_version[4] = 2;
    let cases: [(Vec<u8>, &str); 6] = [
        (Raw::new().up().end(), "Up at the top"),
        (Raw::new().dir(b"d").end(), "End inside"),
        (b"BHFX\x01\x00\x04".to_vec(), "not a file-copy"),
        (bad_version, "version 2"),
        (
            Raw::new().0.into_iter().chain([9]).collect(),
            "record type 9",
        ),
        (Vec::new(), "ended early"),
    ];
    for (bytes, why) in cases {
        let err = recv(&bytes, &t.0).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(err.code(), format::BROKEN);
    }
}

#[test]
fn planted_symbolic_links_are_never_followed() {
    let t = Tmp::new();
    let (incoming, outside) = (t.0.join("in"), t.0.join("outside"));
    fs::create_dir_all(&incoming).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("file"), b"keep").unwrap();
    symlink(&outside, incoming.join("x")).unwrap();
    symlink(outside.join("file"), incoming.join("f")).unwrap();
    symlink(outside.join("new"), incoming.join("g")).unwrap();
    let before = snapshot(&t.0, None);
    for (stream, path) in [
        (Raw::new().dir(b"x").file(b"a", b"evil").up().end(), "x"),
        (Raw::new().file(b"f", b"evil").end(), "f"),
        (Raw::new().file(b"g", b"evil").end(), "g"),
    ] {
        let err = recv(&stream, &incoming).unwrap_err();
        assert!(
            matches!(&err, ReceiveError::Exists(p) if p == path),
            "{err}"
        );
    }
    assert_eq!(snapshot(&t.0, None), before);
    // The incoming folder itself a link: refused.
    let link = t.0.join("link-in");
    symlink(&outside, &link).unwrap();
    let err = recv(&Raw::new().file(b"a", b"evil").end(), &link).unwrap_err();
    assert_eq!(err.code(), format::IO, "{err}");
    assert_eq!(snapshot(&outside, None).len(), 1);
}

#[test]
fn existing_files_stay_and_directories_merge() {
    let t = Tmp::new();
    fs::create_dir_all(t.0.join("d")).unwrap();
    fs::write(t.0.join("d/old"), b"old").unwrap();
    fs::write(t.0.join("e"), b"old").unwrap();
    let s = recv(&Raw::new().dir(b"d").file(b"new", b"n").up().end(), &t.0).unwrap();
    assert_eq!(
        s,
        Summary {
            files: 1,
            dirs: 1,
            bytes: 1
        }
    );
    assert_eq!(fs::read(t.0.join("d/old")).unwrap(), b"old");
    let err = recv(&Raw::new().file(b"e", b"new").end(), &t.0).unwrap_err();
    assert!(matches!(&err, ReceiveError::Exists(p) if p == "e"), "{err}");
    let err = recv(&Raw::new().dir(b"e").up().end(), &t.0).unwrap_err();
    assert!(matches!(&err, ReceiveError::Exists(p) if p == "e"), "{err}");
    assert_eq!(fs::read(t.0.join("e")).unwrap(), b"old");
    assert_eq!(snapshot(&t.0, None).len(), 4);
}

#[test]
fn limits_stop_the_copy_and_keep_what_was_complete() {
    let limits = Limits {
        max_bytes: 15,
        max_entries: 3,
        max_depth: 2,
    };
    let cases = [
        (
            Raw::new().file(b"a", &[1; 10]).file(b"b", &[2; 10]).end(),
            "more than 15 bytes",
        ),
        (
            Raw::new()
                .file(b"a", b"")
                .file(b"b", b"")
                .dir(b"c")
                .dir(b"d")
                .end(),
            "more than 3",
        ),
        (
            Raw::new().dir(b"a").dir(b"b").dir(b"c").end(),
            "deeper than 2",
        ),
    ];
    for (stream, why) in cases {
        let t = Tmp::new();
        let err = recv_limits(&stream, &t.0, limits).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert_eq!(err.code(), format::LIMIT);
        assert!(
            snapshot(&t.0, None)
                .keys()
                .all(|p| !p.to_string_lossy().contains(".part"))
        );
    }
    // A huge size is refused before any byte is read.
    let t = Tmp::new();
    let mut huge = Raw::new().file(b"a", b"").0;
    let at = huge.len() - 8;
    huge[at..].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = recv(&huge, &t.0).unwrap_err();
    assert_eq!(err.code(), format::LIMIT, "{err}");
    assert_eq!(Limits::default().max_bytes, 4 << 30);
}

#[test]
fn a_truncated_stream_never_leaves_a_partial_file() {
    let src = Tmp::new();
    fs::create_dir_all(src.0.join("d/e")).unwrap();
    fs::write(src.0.join("d/one"), b"first file").unwrap();
    fs::write(src.0.join("d/e/two"), b"").unwrap();
    fs::write(src.0.join("d/three"), pattern(300, 3)).unwrap();
    let mut stream = Vec::new();
    send(&[src.0.join("d")], &mut stream).unwrap();
    let whole = snapshot(&src.0, None);
    for len in 0..stream.len() {
        let t = Tmp::new();
        let err = recv(&stream[..len], &t.0).unwrap_err();
        assert!(matches!(err, ReceiveError::Truncated), "at {len}: {err}");
        for (path, node) in snapshot(&t.0, None) {
            assert_eq!(
                whole.get(&path),
                Some(&node),
                "at {len}: {}",
                path.display()
            );
        }
    }
    let t = Tmp::new();
    recv(&stream, &t.0).unwrap();
    assert_eq!(snapshot(&t.0, None), whole);
}

#[test]
fn a_full_disk_removes_the_file_being_written() {
    let t = Tmp::new();
    let stream = Raw::new()
        .file(b"a", &[1; 100])
        .file(b"b", &pattern(200_000, 4))
        .end();
    let mut written = 0;
    let mut full = |f: &mut fs::File, bytes: &[u8]| {
        written += bytes.len();
        if written > 150_000 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        io::Write::write_all(f, bytes)
    };
    let err = receive_with(
        &mut Cursor::new(&stream),
        &t.0,
        Limits::default(),
        &mut full,
    );
    let err = err.unwrap_err();
    assert!(
        matches!(&err, ReceiveError::DiskFull(p) if p == "b"),
        "{err}"
    );
    assert_eq!(err.code(), format::DISK_FULL);
    let want = BTreeMap::from([("a".into(), Node::File(vec![1; 100], false))]);
    assert_eq!(snapshot(&t.0, None), want);
}

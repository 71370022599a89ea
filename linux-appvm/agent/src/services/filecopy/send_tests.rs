//! The sender, and whole copies from one end to the other.

use super::format::{self, Answer, Record};
use super::testutil::{Tmp, pattern, snapshot};
use super::*;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// A source tree: `a/` with an empty file, a text, `sub/deep/bin` (executable, 100 KiB) and
/// an empty directory; a 200 KiB file `top.bin` beside it.
fn source_tree(root: &Path) -> Vec<PathBuf> {
    let a = root.join("a");
    fs::create_dir_all(a.join("sub/deep")).unwrap();
    fs::create_dir_all(a.join("empty-dir")).unwrap();
    fs::write(a.join("empty"), b"").unwrap();
    fs::write(a.join("x.txt"), b"hello\n").unwrap();
    fs::write(a.join("sub/deep/bin"), pattern(100_000, 1)).unwrap();
    fs::set_permissions(a.join("sub/deep/bin"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("top.bin"), pattern(200_000, 2)).unwrap();
    vec![a, root.join("top.bin")]
}

#[test]
fn a_tree_round_trips_byte_for_byte() {
    let (src, dst) = (Tmp::new(), Tmp::new());
    let sources = source_tree(&src.0);
    let mut stream = Vec::new();
    let sent = send(&sources, &mut stream).unwrap();
    assert_eq!(
        sent,
        Summary {
            files: 4,
            dirs: 4,
            bytes: 300_006
        }
    );
    let incoming = dst.0.join("QubesIncoming/work");
    let got = receive(&mut Cursor::new(&stream), &incoming, Limits::default());
    assert_eq!(got.as_ref().unwrap(), &sent);
    assert_eq!(snapshot(&incoming, None), snapshot(&src.0, None));
    let mode = |p: &str| fs::metadata(incoming.join(p)).unwrap().permissions().mode();
    assert_eq!(mode("a/sub/deep/bin") & 0o7000, 0);
    assert_eq!(mode("a/x.txt") & 0o133, 0);
    // The answer goes back; the same copy again is refused (nothing is replaced).
    let mut back = Vec::new();
    answer(&mut back, &got).unwrap();
    assert_eq!(read_answer(&mut Cursor::new(back)).unwrap(), sent);
    let again = receive(&mut Cursor::new(&stream), &incoming, Limits::default()).unwrap_err();
    assert!(
        matches!(&again, ReceiveError::Exists(p) if p == "a/empty"),
        "{again}"
    );
}

#[test]
fn the_sender_refuses_what_it_cannot_send_before_sending() {
    use std::os::unix::ffi::OsStrExt;
    let t = Tmp::new();
    let d = t.0.join("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("ok"), b"x").unwrap();
    fs::write(t.0.join("file"), b"x").unwrap();
    symlink("ok", t.0.join("link")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(t.0.join("sock")).unwrap();
    let nested = t.0.join("n");
    fs::create_dir_all(&nested).unwrap();
    symlink("/etc", nested.join("etc")).unwrap();
    let odd = t.0.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    fs::write(&odd, b"x").unwrap();
    let cases = [
        (vec![d.clone(), t.0.join("link")], "symbolic link"),
        (vec![d.clone(), nested], "symbolic link"),
        (vec![d.clone(), t.0.join("sock")], "socket"),
        (vec![d.clone(), odd], "not UTF-8"),
        (vec![d.clone(), "/".into()], "no name"),
        (vec![d.join("ok"), t.0.join("d/..")], "no name"),
        (vec![d.join("ok"), t.0.join("d/ok")], "second source"),
        (vec![d.clone(), t.0.join("missing")], "No such file"),
    ];
    for (paths, why) in cases {
        let mut out = Vec::new();
        let err = send(&paths, &mut out).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert!(out.is_empty());
    }
    if std::process::Command::new("mkfifo")
        .arg(t.0.join("fifo"))
        .status()
        .is_ok_and(|s| s.success())
    {
        let err = plan(&[t.0.join("fifo")]).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
    }
}

#[test]
fn the_sender_keeps_only_permission_bits_and_sees_changes() {
    let t = Tmp::new();
    let f = t.0.join("f");
    fs::write(&f, b"1234").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
    let mut stream = Vec::new();
    send(std::slice::from_ref(&f), &mut stream).unwrap();
    let mut r = Cursor::new(&stream);
    format::read_header(&mut r).unwrap();
    let record = format::read_record(&mut r).unwrap();
    assert_eq!(
        record,
        Record::File {
            name: "f".into(),
            mode: 0o777,
            size: 4
        }
    );
    for change in [&b"12345"[..], b"123"] {
        let plan = plan(std::slice::from_ref(&f)).unwrap();
        fs::write(&f, change).unwrap();
        let err = plan.send(&mut Vec::new()).unwrap_err();
        assert!(matches!(err, SendError::Changed(_)), "{err}");
        fs::write(&f, b"1234").unwrap();
    }
}

#[test]
fn the_answer_is_read_with_care() {
    let mut bytes = Vec::new();
    let message = format!("evil\x1b[2J{}", "x".repeat(5000));
    format::write_answer(&mut bytes, &Answer::Failed { code: 99, message }).unwrap();
    match read_answer(&mut Cursor::new(&bytes)).unwrap_err() {
        SendError::Failed { code: 99, message } => {
            assert!(message.starts_with("evil\\u{1b}[2J"));
            assert!(message.len() <= format::MAX_MESSAGE + 10);
        }
        e => panic!("{e}"),
    }
    for bad in [&b"BHFA\x01\x00\x00\x00\xff\xff"[..], b"BHFA", b"nope", b""] {
        let err = read_answer(&mut Cursor::new(bad)).unwrap_err();
        assert!(matches!(err, SendError::Answer(_)), "{err}");
    }
}

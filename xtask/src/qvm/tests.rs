mod peer;

use super::call::{self, Call, Ending, Request};
use super::*;
use bulkhead_abi::qrexec::host_console::Deframer;
use bulkhead_abi::qrexec::{FromAdmin, Io, QREXEC_VERSION, Stream, ToAdmin, WINDOW};
use peer::{ECHO, Peer, echo_server, session};
use std::os::unix::net::UnixStream;

#[test]
fn a_long_call_flows_both_ways_within_the_window() {
    let (mut conn, peer) = session(echo_server);
    let stdin: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (target, ending) = call::run(
        &mut conn,
        1,
        &ECHO,
        &stdin,
        &mut out,
        &mut err,
        Duration::from_secs(10),
    )
    .unwrap();
    let garbled = conn.garbled;
    drop(conn);
    peer.join().unwrap();
    assert_eq!(target.as_deref(), Some("server"));
    assert_eq!(ending, Ending::Exited(200_000));
    assert!(out == stdin.to_ascii_uppercase(), "stdout differs");
    assert_eq!(err, b"done\n");
    assert_eq!(garbled, 1, "the frame that does not decode is skipped");
}

#[test]
fn a_refusal_ends_the_call_and_nothing_is_sent_for_it() {
    let (mut conn, peer) = session(|p| {
        let call = p.recv(|m| match m {
            ToAdmin::Call { call, target, .. } => {
                assert_eq!(target, "@dispvm:work");
                call
            }
            other => panic!("expected a call, got {other:?}"),
        });
        p.send(&FromAdmin::Refused {
            call,
            reason: Refusal::Malformed,
        });
    });
    let request = Request {
        target: "@dispvm:work",
        ..ECHO
    };
    let mut sink = Vec::new();
    let (target, ending) = call::run(
        &mut conn,
        1,
        &request,
        b"ls\n",
        &mut Vec::new(),
        &mut sink,
        Duration::from_secs(10),
    )
    .unwrap();
    drop(conn);
    peer.join().unwrap();
    assert_eq!(
        (target, ending),
        (None, Ending::Refused(Refusal::Malformed))
    );
    assert!(sink.is_empty());
}

#[test]
fn the_state_machine_waits_for_acceptance_and_acks_and_ignores_other_calls() {
    let stdin = vec![b'x'; WINDOW as usize + 10];
    let mut c = Call::new(4, &stdin);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert!(c.next_to_send().is_none(), "nothing before Accepted");
    let mut feed = |c: &mut Call<'_>, m: FromAdmin<'_>| c.on_message(&m, &mut out, &mut err);
    feed(
        &mut c,
        FromAdmin::Accepted {
            call: 5,
            target: "x",
        },
    )
    .unwrap();
    assert!(c.target.is_none(), "another call's answer");
    feed(
        &mut c,
        FromAdmin::Accepted {
            call: 4,
            target: "w",
        },
    )
    .unwrap();
    let mut sent = 0;
    while let Some(Io::Data { bytes, .. }) = c.next_to_send() {
        sent += bytes.len();
    }
    assert_eq!(sent, WINDOW as usize, "a full window, then it waits");
    let ack = |bytes| {
        FromAdmin::Io(Io::Ack {
            call: 4,
            stream: Stream::Stdin,
            bytes,
        })
    };
    feed(&mut c, ack(4)).unwrap();
    assert!(matches!(c.next_to_send(), Some(Io::Data { bytes, .. }) if bytes.len() == 4));
    feed(&mut c, ack(100)).unwrap();
    assert!(matches!(c.next_to_send(), Some(Io::Data { bytes, .. }) if bytes.len() == 6));
    assert!(matches!(
        c.next_to_send(),
        Some(Io::Eof {
            stream: Stream::Stdin,
            ..
        })
    ));
    assert!(c.next_to_send().is_none());
    let data = |stream, bytes| {
        FromAdmin::Io(Io::Data {
            call: 4,
            stream,
            bytes,
        })
    };
    feed(&mut c, data(Stream::Stdout, b"ab")).unwrap();
    feed(&mut c, data(Stream::Stdout, b"cd")).unwrap();
    feed(&mut c, data(Stream::Stderr, b"e")).unwrap();
    assert_eq!(
        c.next_to_send(),
        Some(Io::Ack {
            call: 4,
            stream: Stream::Stdout,
            bytes: 4
        })
    );
    assert!(matches!(
        c.next_to_send(),
        Some(Io::Ack {
            stream: Stream::Stderr,
            bytes: 1,
            ..
        })
    ));
    assert!(
        feed(&mut c, data(Stream::Stdin, b"!")).is_err(),
        "a target writes no stdin"
    );
    feed(&mut c, FromAdmin::Io(Io::Exit { call: 4, code: -9 })).unwrap();
    assert_eq!(c.ending, Some(Ending::Exited(-9)));
    assert!(c.next_to_send().is_none());
    assert_eq!((out.as_slice(), err.as_slice()), (&b"abcd"[..], &b"e"[..]));
}

#[test]
fn nothing_listening_says_to_start_cargo_xtask_run() {
    let e = connect(Path::new("/nonexistent/qvm.sock")).err().unwrap();
    let text = format!("{e:#}");
    assert!(text.contains("`cargo xtask run` must be running"), "{text}");
}

#[test]
fn hello_with_another_version_is_an_error() {
    let (host, admin) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut p = Peer {
            stream: admin,
            deframer: Deframer::new(),
        };
        p.recv(|_| ());
        p.send(&FromAdmin::Hello {
            version: QREXEC_VERSION + 1,
        });
    });
    let e = Conn::new(host).hello(Duration::from_secs(5)).unwrap_err();
    t.join().unwrap();
    assert!(format!("{e}").contains("qrexec version"), "{e}");
}

#[test]
fn exit_codes_become_process_statuses() {
    assert_eq!(exit_status(0), 0);
    assert_eq!(exit_status(3), 3);
    assert_eq!(exit_status(256), 255);
    assert_eq!(exit_status(-9), 137);
    assert_eq!(exit_status(i32::MIN), 255);
}

#[test]
fn the_host_console_is_there_when_the_admin_qube_owns_com2() {
    let compile = |path: &str| {
        let path = crate::workspace_root().join(path);
        crate::system::compile_file(&path).unwrap().manifest
    };
    assert!(admin_owns_com2(&compile(
        "systems/tests/qrexec-unikernels.toml"
    )));
    assert!(!admin_owns_com2(&compile("systems/tests/qrexec.toml")));
    assert!(default_socket().as_os_str().len() <= SOCKET_PATH_MAX);
}

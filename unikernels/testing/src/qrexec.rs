//! qrexec through the admin qube, without Linux (`qrexec-server`, `qrexec-client`), over
//! this qube's `<name>.qrexec` channel.
//!
//! `qrexec-server` serves `test.Echo` (stdout: stdin in capitals; exit code: its length;
//! stdin up to the flow-control window, as it neither acknowledges nor waits for
//! acknowledgements) and logs every call it gets, so a scenario can check a denied call never arrived.
//! `qrexec-client target=NAME` makes calls the test system's policy allows, denies and does
//! not understand, checks each answer, and exits 0 when all are as expected.

use alloc::string::String;
use alloc::vec::Vec;
use bulkhead_abi::qrexec::{DATA_MAX, FromAdmin, Io, QREXEC_VERSION, Refusal, Stream, ToAdmin};
use bulkhead_rt::channel::Channel;
use bulkhead_rt::{Args, Boot, error, info};
use core::time::Duration;

/// Exit status when a check failed.
const EXIT_FAILED: i32 = 5;

/// What a call came back with.
#[derive(Debug, Default)]
struct Answer {
    refused: Option<Refusal>,
    target: String,
    stdout: Vec<u8>,
    code: Option<i32>,
}

fn open(boot: &Boot) -> Result<Channel, &'static str> {
    let mut name: heapless::String<32> = heapless::String::new();
    let _ = core::fmt::write(&mut name, format_args!("{}.qrexec", boot.name()));
    let mut ch = Channel::open_named(boot, &name).map_err(|e| {
        error!("testing: {name}: {e}");
        "cannot open the qrexec channel"
    })?;
    let hello = ToAdmin::Hello {
        version: QREXEC_VERSION,
    };
    ch.send(&hello).map_err(|_| "cannot send hello")?;
    Ok(ch)
}

/// Receives the next message and hands it to `f` (decoded from a private copy).
fn next<R>(ch: &mut Channel, mut f: impl FnMut(FromAdmin<'_>) -> R) -> Result<R, &'static str> {
    loop {
        let got = ch.try_recv_with(|bytes| {
            postcard::from_bytes::<FromAdmin<'_>>(bytes)
                .map_err(|_| ())
                .map(&mut f)
        });
        match got {
            Ok(Some(Ok(r))) => return Ok(r),
            Ok(Some(Err(()))) => return Err("a message that does not decode"),
            Ok(None) => {
                let _ = ch.wait_timeout(Some(Duration::from_millis(200)));
            }
            Err(e) => {
                error!("testing: qrexec channel: {e}");
                return Err("the channel failed");
            }
        }
    }
}

pub fn server(boot: &Boot, _args: &Args<'_>) -> i32 {
    let mut ch = match open(boot) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: qrexec-server: {e}");
            return EXIT_FAILED;
        }
    };
    // (call, stdin so far) of the calls being served.
    let mut calls: Vec<(u32, Vec<u8>)> = Vec::new();
    loop {
        let r = next(&mut ch, |m| match m {
            FromAdmin::Hello { version } => {
                info!("testing: qrexec-server: admin hello (version {version})");
                None
            }
            FromAdmin::Incoming {
                call,
                source,
                service,
                argument,
            } => {
                info!("testing: qrexec-server: call {service}+{argument} from {source}");
                if service == "test.Echo" {
                    calls.push((call, Vec::new()));
                    None
                } else {
                    Some((call, Vec::new(), 127))
                }
            }
            FromAdmin::Io(Io::Data {
                call,
                stream: Stream::Stdin,
                bytes,
            }) => {
                if let Some((_, buf)) = calls.iter_mut().find(|(c, _)| *c == call) {
                    buf.extend_from_slice(bytes);
                }
                None
            }
            FromAdmin::Io(Io::Eof {
                call,
                stream: Stream::Stdin,
            }) => {
                let at = calls.iter().position(|(c, _)| *c == call)?;
                let (call, input) = calls.swap_remove(at);
                let len = input.len() as i32;
                let upper: Vec<u8> = input.iter().map(u8::to_ascii_uppercase).collect();
                Some((call, upper, len))
            }
            FromAdmin::Io(Io::Abort { call }) => {
                calls.retain(|(c, _)| *c != call);
                None
            }
            _ => None,
        });
        let reply = match r {
            Ok(reply) => reply,
            Err(e) => {
                error!("testing: qrexec-server: {e}");
                return EXIT_FAILED;
            }
        };
        if let Some((call, out, code)) = reply {
            // In one go: the calls the tests make stay within the flow-control window.
            let data = out.chunks(DATA_MAX).map(|bytes| Io::Data {
                call,
                stream: Stream::Stdout,
                bytes,
            });
            let end = [
                Io::Eof {
                    call,
                    stream: Stream::Stdout,
                },
                Io::Exit { call, code },
            ];
            for m in data.chain(end) {
                if let Err(e) = ch.send(&ToAdmin::Io(m)) {
                    error!("testing: qrexec-server: {e}");
                    return EXIT_FAILED;
                }
            }
        }
    }
}

/// Makes call `id` and waits for its end.
fn call(
    ch: &mut Channel,
    id: u32,
    service: &str,
    argument: &str,
    target: &str,
    stdin: &[u8],
) -> Result<Answer, &'static str> {
    ch.send(&ToAdmin::Call {
        call: id,
        service,
        argument,
        target,
    })
    .map_err(|_| "cannot send")?;
    let mut a = Answer::default();
    loop {
        let done = next(ch, |m| match m {
            FromAdmin::Refused { call, reason } if call == id => {
                a.refused = Some(reason);
                true
            }
            FromAdmin::Accepted { call, target } if call == id => {
                a.target = target.into();
                false
            }
            FromAdmin::Io(Io::Data {
                call,
                stream: Stream::Stdout,
                bytes,
            }) if call == id => {
                a.stdout.extend_from_slice(bytes);
                false
            }
            FromAdmin::Io(Io::Exit { call, code }) if call == id => {
                a.code = Some(code);
                true
            }
            FromAdmin::Io(Io::Abort { call }) if call == id => true,
            _ => false,
        })?;
        if done {
            return Ok(a);
        }
        if !a.target.is_empty() && !stdin.is_empty() && a.stdout.is_empty() && a.code.is_none() {
            let data = Io::Data {
                call: id,
                stream: Stream::Stdin,
                bytes: stdin,
            };
            let eof = Io::Eof {
                call: id,
                stream: Stream::Stdin,
            };
            for m in [data, eof] {
                ch.send(&ToAdmin::Io(m)).map_err(|_| "cannot send")?;
            }
            // Sent once: forget it.
            return call_rest(ch, id, a);
        }
    }
}

/// The rest of call `id` once its stdin is sent.
fn call_rest(ch: &mut Channel, id: u32, mut a: Answer) -> Result<Answer, &'static str> {
    loop {
        let done = next(ch, |m| match m {
            FromAdmin::Io(Io::Data {
                call,
                stream: Stream::Stdout,
                bytes,
            }) if call == id => {
                a.stdout.extend_from_slice(bytes);
                false
            }
            FromAdmin::Io(Io::Exit { call, code }) if call == id => {
                a.code = Some(code);
                true
            }
            FromAdmin::Io(Io::Abort { call }) if call == id => true,
            _ => false,
        })?;
        if done {
            return Ok(a);
        }
    }
}

pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let target = args.get("target").unwrap_or("server");
    let mut ch = match open(boot) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: qrexec-client: {e}");
            return EXIT_FAILED;
        }
    };
    let me = boot.name();
    let mut failed = 0;
    let mut check = |what: &str, ok: bool, a: &Answer| {
        if ok {
            info!("testing: qrexec-client: {what}: ok");
        } else {
            failed += 1;
            error!("testing: qrexec-client: {what}: FAILED ({a:?})");
        }
    };
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8]);
    let cases: [Case<'_>; 4] = [
        ("test.Echo", "", target, b"hello qrexec"),
        ("test.Denied", "", target, b""),
        ("admin.vm.List", "", "@adminvm", b""),
        ("test.Echo", "", "nosuch", b"x"),
    ];
    for (i, (service, argument, to, stdin)) in cases.iter().enumerate() {
        let a = match call(&mut ch, i as u32 + 1, service, argument, to, stdin) {
            Ok(a) => a,
            Err(e) => {
                error!("testing: qrexec-client: {service}: {e}");
                return EXIT_FAILED;
            }
        };
        let out = core::str::from_utf8(&a.stdout).unwrap_or("");
        match i {
            0 => check(
                "allowed call echoed",
                a.target == target && out == "HELLO QREXEC" && a.code == Some(12),
                &a,
            ),
            1 => check(
                "denied call refused",
                a.refused == Some(Refusal::Denied),
                &a,
            ),
            2 => {
                for line in out.lines() {
                    info!("testing: qrexec-client: qvm-ls: {line}");
                }
                let listed = out.contains(me) && out.contains(target) && out.contains("AdminVM");
                check(
                    "admin.vm.List lists the qubes",
                    listed && a.code == Some(0),
                    &a,
                );
            }
            _ => check(
                "unknown target refused",
                a.refused == Some(Refusal::Malformed),
                &a,
            ),
        }
    }
    if failed == 0 {
        info!("testing: qrexec-client: all {} checks passed", cases.len());
        0
    } else {
        EXIT_FAILED
    }
}

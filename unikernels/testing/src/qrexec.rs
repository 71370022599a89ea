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
pub(crate) struct Answer {
    pub refused: Option<Refusal>,
    pub target: String,
    pub stdout: Vec<u8>,
    pub code: Option<i32>,
    /// When the first stdout byte arrived (ns since boot).
    pub first_out_ns: Option<u64>,
}

pub(crate) fn open(boot: &Boot) -> Result<Channel, &'static str> {
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

pub fn server(boot: &Boot, args: &Args<'_>) -> i32 {
    // A plain channel's round trips first, the baseline of `cargo xtask bench --qemu`.
    if args.get("channel").is_some() {
        let status = crate::channels::pong(boot, args);
        if status != 0 {
            return status;
        }
    }
    let (e0, mut served) = (bulkhead_rt::hypercall::exit_count(), 0u64);
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
                // The first calls are logged (the scenarios read them), the rest counted.
                if served < 8 {
                    info!("testing: qrexec-server: call {service}+{argument} from {source}");
                }
                served += 1;
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
            if served % 100 == 0 {
                let exits = bulkhead_rt::hypercall::exit_count() - e0;
                info!(
                    "testing: qrexec-server: served {served} calls: {}.{:02} exits of this qube per call",
                    exits / served,
                    exits * 100 / served % 100
                );
            }
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

/// Makes call `id`, sends `stdin` once it is accepted, and waits for its end.
pub(crate) fn call(
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
    let mut sent = stdin.is_empty();
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
                if a.first_out_ns.is_none() {
                    a.first_out_ns = Some(bulkhead_rt::now_ns());
                }
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
        if !sent && !a.target.is_empty() {
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
            sent = true;
        }
    }
}

pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let target = args.get("target").unwrap_or("server");
    if args.get("ask") == Some("yes") {
        return asked(boot, target);
    }
    if args.get("hostile-copy") == Some("yes") {
        return crate::qrexec_hostile::client(boot, args);
    }
    if args.get("bench").is_some() {
        return crate::qrexec_bench::client(boot, args);
    }
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
    // Only the admin qube may use the admin hypercalls: this qube is refused each one.
    {
        use bulkhead_abi::hypercall::HcError;
        use bulkhead_rt::hypercall::{admin_kill, admin_qube_state, admin_start};
        let refused = [
            admin_qube_state(0).err(),
            admin_start(0).err(),
            admin_kill(0).err(),
        ];
        let ok = refused.iter().all(|r| *r == Some(HcError::Denied));
        let a = Answer::default();
        check(
            "admin hypercalls refused to a qube that is not the admin qube",
            ok,
            &a,
        );
        if !ok {
            error!("testing: qrexec-client: admin hypercalls answered {refused:?}");
        }
    }
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
        info!(
            "testing: qrexec-client: all {} checks passed",
            cases.len() + 1
        );
        0
    } else {
        EXIT_FAILED
    }
}

/// `ask=yes`: two calls at `@default` that the policy asks the user about; the test
/// allows the first at the prompt and refuses the second.
fn asked(boot: &Boot, target: &str) -> i32 {
    let mut ch = match open(boot) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: qrexec-client: {e}");
            return EXIT_FAILED;
        }
    };
    let mut failed = 0;
    for (id, expect_allowed) in [(1u32, true), (2, false)] {
        info!("testing: qrexec-client: call {id} at @default: waiting for the user");
        let a = match call(&mut ch, id, "test.Echo", "", "@default", b"asked") {
            Ok(a) => a,
            Err(e) => {
                error!("testing: qrexec-client: {e}");
                return EXIT_FAILED;
            }
        };
        let ok = if expect_allowed {
            a.target == target && a.stdout == b"ASKED" && a.code == Some(5)
        } else {
            a.refused == Some(Refusal::UserRefused)
        };
        let what = if expect_allowed {
            "ask allowed"
        } else {
            "ask refused"
        };
        if ok {
            info!("testing: qrexec-client: {what}: ok");
        } else {
            failed += 1;
            error!("testing: qrexec-client: {what}: FAILED ({a:?})");
        }
    }
    if failed == 0 {
        info!("testing: qrexec-client: all 2 checks passed");
        0
    } else {
        EXIT_FAILED
    }
}

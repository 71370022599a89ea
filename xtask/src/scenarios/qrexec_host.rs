//! qrexec from the host (`qrexec-host`): the `qrexec-unikernels` system booted with COM2 on
//! a socket, which its admin qube drives as the host's console. Once the test client is
//! done, xtask's own `cargo xtask qvm` client (the module, not a process) lists the qubes,
//! calls the test server's `test.Echo` (short, then several frames each way), is refused a
//! qube that does not exist, and kills the server; the admin qube logs each call as the
//! host's.

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent};
use crate::qvm::{self, call::Ending, call::Request};
use anyhow::{Result, bail};
use bulkhead_abi::qrexec::Refusal;
use std::path::Path;
use std::time::{Duration, Instant};

pub const QREXEC_HOST: Scenario = Scenario {
    name: "qrexec-host",
    about: "`cargo xtask qvm` from the host over the admin qube's COM2 console: ls, a call into a unikernel, a refusal, a kill",
    run: host,
};

const SYSTEM: &str = "systems/tests/qrexec-unikernels.toml";
/// Bytes of the long echo: several frames each way, within the test server's window.
const LONG: usize = 10_000;

/// What the admin qube must log, once the host has made its calls.
const LOGGED: [&str; 4] = [
    "policy: admin.vm.List host -> @adminvm: allowed to @adminvm, from the host",
    "policy: test.Echo host -> server: allowed to server, from the host",
    "policy: test.Echo host -> nosuch: denied (InvalidCall)",
    "server: killed by host",
];

/// One call in its own session, as `cargo xtask qvm` makes it: (stdout, stderr, ending).
fn call(socket: &Path, request: Request<'_>, stdin: &[u8]) -> Result<(String, String, Ending)> {
    let mut conn = qvm::connect(socket)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (_, ending) = qvm::call::run(
        &mut conn,
        1,
        &request,
        stdin,
        &mut out,
        &mut err,
        Duration::from_secs(20),
    )?;
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok((text(out), text(err), ending))
}

/// The host's calls and their checks; a note with the long echo's time.
fn calls(socket: &Path) -> Result<String> {
    let admin = |service, argument| Request {
        service,
        argument,
        target: "@adminvm",
    };
    let echo = |target| Request {
        service: "test.Echo",
        argument: "",
        target,
    };
    let (ls, _, ending) = call(socket, admin("admin.vm.List", ""), b"")?;
    let names: Vec<&str> = ls.lines().filter_map(|l| l.split(' ').next()).collect();
    expect(
        ending == Ending::Exited(0)
            && ["admin", "server", "client"]
                .iter()
                .all(|q| names.contains(q)),
        || format!("ls: {ending:?}, {ls:?}"),
    )?;
    let (out, _, ending) = call(socket, echo("server"), b"hello from the host")?;
    expect(
        out == "HELLO FROM THE HOST" && ending == Ending::Exited(19),
        || format!("echo: {out:?}, {ending:?}"),
    )?;
    let long: Vec<u8> = (0..LONG).map(|i| b'a' + (i % 26) as u8).collect();
    let started = Instant::now();
    let (out, _, ending) = call(socket, echo("server"), &long)?;
    let took = started.elapsed();
    expect(
        out.as_bytes() == long.to_ascii_uppercase() && ending == Ending::Exited(LONG as i32),
        || format!("long echo: {} bytes back, {ending:?}", out.len()),
    )?;
    let (_, _, ending) = call(socket, echo("nosuch"), b"x")?;
    expect(ending == Ending::Refused(Refusal::Malformed), || {
        format!("a call to no qube: {ending:?}")
    })?;
    let (_, err, ending) = call(socket, admin("admin.vm.Kill", "server"), b"")?;
    expect(ending == Ending::Exited(0), || {
        format!("kill: {ending:?} {err:?}")
    })?;
    Ok(format!(
        "ls listed {} qubes; a {LONG}-byte echo took {:.2} s",
        names.len().saturating_sub(1),
        took.as_secs_f64()
    ))
}

fn host() -> Result<String> {
    let a = boots::assemble(SYSTEM)?;
    let mut opts = boots::options(&a, "max", 120, "qrexec-host");
    let socket = std::env::temp_dir().join(format!("bulkhead-qvm-{}.sock", std::process::id()));
    opts.host_console = Some(socket.clone());
    let mut result = None;
    let mut logged = [false; LOGGED.len()];
    let out = qemu::boot(&opts, |e| {
        if matches!(e.hv, Some(HvEvent::Panic(_))) {
            return Control::Stop;
        }
        let from = e.line.source.as_deref();
        if from == Some("admin") {
            for (seen, line) in logged.iter_mut().zip(LOGGED) {
                *seen |= e.line.body.contains(line);
            }
        }
        let client_done = from == Some("client") && e.line.body.contains("checks passed");
        if client_done && result.is_none() {
            // QEMU's output keeps being read meanwhile; the admin qube's lines come after.
            let r = calls(&socket);
            let failed = r.is_err();
            result = Some(r);
            return Control::stop_if(failed);
        }
        Control::stop_if(result.is_some() && logged.iter().all(|&l| l))
    });
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    boots::finished(&out)?;
    let note = match result {
        Some(r) => r?,
        None => bail!(
            "the test client never finished: {:?}",
            out.lines_from("client")
        ),
    };
    let admin = out.lines_from("admin");
    expect(
        admin.iter().any(|l| l.contains("host console on COM2")),
        || format!("the admin qube did not find its host console: {admin:?}"),
    )?;
    for line in LOGGED {
        expect(admin.iter().any(|l| l.contains(line)), || {
            format!("the admin qube never logged {line:?}: {admin:?}")
        })?;
    }
    Ok(note)
}

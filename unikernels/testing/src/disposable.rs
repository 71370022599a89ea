//! `disposable-client channel=NAME template=T runs=N`: asks for N disposables in a row over
//! a disposable channel (`proto::Disposable`) and logs what each one's command printed.
//! The first run writes a secret into a file of its own; every later run looks for that
//! file and must not find it. Each run ends with the disposable powering off, which resets
//! the channel (the hypervisor wipes the disposable's memory and starts the channel over).

use bulkhead_abi::proto::{Disposable, Hello, PROTO_VERSION};
use bulkhead_rt::channel::{Channel, ChannelError};
use bulkhead_rt::{Args, Boot, error, info, now_ns};
use core::time::Duration;

/// Exit status when a run failed (refused, wrong output, a broken channel, a timeout).
const EXIT_RUN_FAILED: i32 = 5;
/// How long one run may take (a Linux boot under TCG included).
const RUN_TIMEOUT_NS: u64 = 240_000_000_000;

/// What one run's output showed.
#[derive(Default)]
struct RunResult {
    status: Option<i32>,
    saw_secret: bool,
    saw_absent: bool,
}

pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let name = args.get("channel").unwrap_or("disp.req0");
    let template = args.get("template").unwrap_or("debian");
    let runs: u32 = args.get("runs").and_then(|r| r.parse().ok()).unwrap_or(2);
    let mut ch = match Channel::open_named(boot, name) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: cannot open {name}: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    // A secret no earlier boot could know: the TSC-derived time of this request.
    let secret = now_ns() ^ 0x5eed_b01d_face_cafe;
    let mut command: heapless::String<160> = heapless::String::new();
    for run in 1..=runs {
        command.clear();
        let _ = if run == 1 {
            core::fmt::write(
                &mut command,
                format_args!(
                    "echo bulkhead-secret-{secret:x} > /tmp/marker; cat /tmp/marker; uname -r"
                ),
            )
        } else {
            core::fmt::write(
                &mut command,
                format_args!(
                    "cat /tmp/marker 2>/dev/null || echo marker-absent; grep -rl bulkhead-secret /tmp /root 2>/dev/null || echo no-secret-anywhere"
                ),
            )
        };
        let started = now_ns();
        info!("testing: disposable run {run}: asking for a {template} disposable");
        let result = match request(boot, &mut ch, template, &command, secret) {
            Ok(r) => r,
            Err(why) => {
                error!("testing: disposable run {run} failed: {why}");
                return EXIT_RUN_FAILED;
            }
        };
        let ms = (now_ns() - started) / 1_000_000;
        info!(
            "testing: disposable run {run}: exited with {:?} after {ms} ms, secret seen {}, marker absent {}",
            result.status, result.saw_secret, result.saw_absent
        );
        let ok = result.status == Some(0)
            && if run == 1 {
                result.saw_secret
            } else {
                !result.saw_secret && result.saw_absent
            };
        if !ok {
            error!("testing: disposable run {run} did not show what it should");
            return EXIT_RUN_FAILED;
        }
        // The disposable powers off; the hypervisor then resets the channel.
        if let Err(why) = wait_for_reset(&mut ch) {
            error!("testing: disposable run {run}: {why}");
            return EXIT_RUN_FAILED;
        }
    }
    info!("testing: {runs} disposables ran; none saw what an earlier one wrote");
    0
}

fn request(
    boot: &Boot,
    ch: &mut Channel,
    template: &str,
    command: &str,
    secret: u64,
) -> Result<RunResult, &'static str> {
    let mut qube = heapless::String::new();
    let _ = qube.push_str(boot.name());
    let hello = Disposable::Hello(Hello {
        version: PROTO_VERSION,
        qube,
    });
    ch.send(&hello).map_err(|_| "cannot send Hello")?;
    ch.send(&Disposable::Run { template, command })
        .map_err(|_| "cannot send Run")?;
    ch.notify_peer();
    let mut secret_text: heapless::String<40> = heapless::String::new();
    let _ = core::fmt::write(&mut secret_text, format_args!("bulkhead-secret-{secret:x}"));
    let mut result = RunResult::default();
    let deadline = now_ns() + RUN_TIMEOUT_NS;
    let mut line: heapless::Vec<u8, 256> = heapless::Vec::new();
    while result.status.is_none() {
        if now_ns() > deadline {
            return Err("no answer in time");
        }
        let got = ch.try_recv_with(
            |bytes| match postcard::from_bytes::<Disposable<'_>>(bytes) {
                Ok(Disposable::Output(out)) => {
                    for &b in out {
                        if b == b'\n' || line.is_full() {
                            let text = core::str::from_utf8(&line).unwrap_or("<not UTF-8>");
                            info!("testing: disposable output: {text}");
                            result.saw_secret |= text.contains(secret_text.as_str());
                            result.saw_absent |= text.contains("marker-absent");
                            line.clear();
                        } else {
                            let _ = line.push(b);
                        }
                    }
                    Ok(())
                }
                Ok(Disposable::Exited { status }) => {
                    result.status = Some(status);
                    Ok(())
                }
                Ok(Disposable::Hello(h)) => {
                    info!(
                        "testing: disposable {} answered (version {})",
                        h.qube, h.version
                    );
                    Ok(())
                }
                Ok(Disposable::Refused(why)) => {
                    error!("testing: disposable refused: {why}");
                    Err("refused")
                }
                Ok(Disposable::Run { .. }) | Err(_) => Err("unexpected message"),
            },
        );
        match got {
            Ok(Some(r)) => r?,
            Ok(None) => {
                let _ = ch.wait_timeout(Some(Duration::from_millis(100)));
            }
            Err(ChannelError::Reset) => return Err("the disposable stopped before it answered"),
            Err(_) => return Err("the channel broke"),
        }
    }
    Ok(result)
}

fn wait_for_reset(ch: &mut Channel) -> Result<(), &'static str> {
    let deadline = now_ns() + 60_000_000_000;
    loop {
        match ch.try_recv_with(|_| ()) {
            Err(ChannelError::Reset) => return Ok(()),
            Err(_) => return Err("the channel broke while waiting for the power-off"),
            Ok(_) => {}
        }
        if now_ns() > deadline {
            return Err("the disposable did not power off");
        }
        let _ = ch.wait_timeout(Some(Duration::from_millis(100)));
    }
}

/// `start-disposable channel=NAME runs=N`: starts the disposable at the other end of NAME (a
/// disposable channel) N times in a row. Each run is started by notifying the channel, and
/// has ended when the hypervisor resets the channel (it does when the disposable stops and
/// its memory has been wiped). The disposable need not speak on the channel at all: this is
/// for unikernel disposables such as `cpu-state`, which check what they inherit themselves.
/// Logs `testing: start-disposable: run K ended after MS ms` for each; exits 0 when all
/// ended, [`EXIT_RUN_FAILED`] otherwise.
pub fn start_runs(boot: &Boot, args: &Args<'_>) -> i32 {
    let Some(name) = args.get("channel") else {
        error!("testing: start-disposable needs channel=NAME");
        return crate::EXIT_BAD_MODE;
    };
    let runs: u32 = args.get("runs").and_then(|r| r.parse().ok()).unwrap_or(2);
    let mut ch = match Channel::open_named(boot, name) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: cannot open {name}: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    for run in 1..=runs {
        let started = now_ns();
        info!("testing: start-disposable: starting run {run} over {name}");
        ch.notify_peer();
        if let Err(why) = wait_for_reset(&mut ch) {
            error!("testing: start-disposable: run {run}: {why}");
            return EXIT_RUN_FAILED;
        }
        let ms = (now_ns() - started) / 1_000_000;
        info!("testing: start-disposable: run {run} ended after {ms} ms");
    }
    info!("testing: start-disposable: {runs} runs");
    0
}

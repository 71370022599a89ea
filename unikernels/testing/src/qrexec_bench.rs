//! `qrexec-client bench=N channel=NAME count=M`: the cost of a service call through the
//! admin qube against a plain channel round trip measured in the same boot (first `ping`
//! over `channel` M times, the baseline; the server answers with `pong` first). Under
//! `-icount shift=0` a nanosecond is an instruction, so the figures are instructions.
//!
//! Each call is `test.Echo` with one byte of stdin: from the `Call` to its first stdout
//! byte, and to its exit code. The clock is a hypercall: two per call (the first byte's and
//! the exit's time) are subtracted from this qube's exits.

use bulkhead_rt::hypercall::exit_count;
use bulkhead_rt::{Args, Boot, error, info, now_ns};

const EXIT_FAILED: i32 = 5;

pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let n: u64 = args
        .get("bench")
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let target = args.get("target").unwrap_or("server");
    if args.get("channel").is_some() {
        let status = crate::channels::ping(boot, args);
        if status != 0 {
            return status;
        }
    }
    let mut ch = match super::qrexec::open(boot) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: qrexec-bench: {e}");
            return EXIT_FAILED;
        }
    };
    // One call first: the server and the admin qube are up and warm.
    let (mut to_first, mut to_exit) = (0u64, 0u64);
    let mut exits = 0;
    for i in 0..=n {
        let (e0, t0) = (exit_count(), now_ns());
        let a = match super::qrexec::call(&mut ch, i as u32 + 1, "test.Echo", "", target, b"x") {
            Ok(a) => a,
            Err(e) => {
                error!("testing: qrexec-bench: call {i}: {e}");
                return EXIT_FAILED;
            }
        };
        let t1 = now_ns();
        let (Some(first), Some(1), b"X") = (a.first_out_ns, a.code, a.stdout.as_slice()) else {
            error!("testing: qrexec-bench: call {i} answered {a:?}");
            return EXIT_FAILED;
        };
        if i > 0 {
            to_first += first - t0;
            to_exit += t1 - t0;
            // Less the two clock hypercalls inside the span.
            exits += (exit_count() - e0).saturating_sub(2);
        }
    }
    info!(
        "qrexec-bench: {n} calls: {} ns to the first output byte, {} ns to the exit code, \
         {}.{:02} exits of this qube per call",
        to_first / n.max(1),
        to_exit / n.max(1),
        exits / n.max(1),
        exits * 100 / n.max(1) % 100
    );
    0
}

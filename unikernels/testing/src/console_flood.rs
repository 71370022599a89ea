//! The console-flood test's two qubes (scenario `console-flood`):
//!
//! - `console-flood [seconds=S]`: writes its console as fast as it can, `MAX_CONSOLE_WRITE`
//!   bytes of whole lines per `console_write`, for S seconds (forever without `seconds=`),
//!   then, after half a second (its console allowance refills), logs `testing: console-flood
//!   wrote B bytes in W writes over S s` and exits 0.
//! - `heartbeat-gap [period_ms=N] [seconds=S]`: wakes every N ms (default 25) for S seconds
//!   (default 5), measures how late each wake is against the hypervisor's clock (actual wake
//!   minus intended wake), logs `testing: beat K late X us` for each, then
//!   `testing: heartbeat max lateness X us over K beats (mean Y us)` and exits 0.

use bulkhead_abi::hypercall::MAX_CONSOLE_WRITE;
use bulkhead_rt::{Args, error, info};
use core::time::Duration;

/// Bytes per flood line, newline included (32 lines per write).
const FLOOD_LINE: usize = 128;

/// `console-flood`: returns the exit status.
pub fn flood(args: &Args<'_>) -> i32 {
    let seconds = match args.parse::<u64>("seconds") {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            error!("testing: seconds is not a number");
            return 2;
        }
    };
    let mut buf = [b'x'; MAX_CONSOLE_WRITE as usize];
    for line in buf.chunks_mut(FLOOD_LINE) {
        line[..6].copy_from_slice(b"flood ");
        line[FLOOD_LINE - 1] = b'\n';
    }
    let start = bulkhead_rt::now_ns();
    let end = seconds.map(|s| start.saturating_add(s.saturating_mul(1_000_000_000)));
    let (mut writes, mut bytes) = (0u64, 0u64);
    loop {
        if let Ok(n) = bulkhead_rt::hypercall::console_write(&buf) {
            bytes += n as u64;
        }
        writes += 1;
        // The clock costs a hypercall too: look at it every 8 writes.
        if writes % 8 == 0 && end.is_some_and(|e| bulkhead_rt::now_ns() >= e) {
            break;
        }
    }
    let secs = (bulkhead_rt::now_ns() - start) / 1_000_000_000;
    // The flood spent this qube's console allowance: a line written at once would be dropped
    // like the flood's (whether it got through depended on where the last write fell). Half
    // a second refills room for the summary.
    bulkhead_rt::sleep(core::time::Duration::from_millis(500));
    info!("testing: console-flood wrote {bytes} bytes in {writes} writes over {secs} s");
    0
}

/// `heartbeat-gap`: returns the exit status.
pub fn heartbeat_gap(args: &Args<'_>) -> i32 {
    let number = |key: &str, default: u64| match args.parse::<u64>(key) {
        None => Some(default),
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => None,
    };
    let (Some(period_ms), Some(seconds)) = (number("period_ms", 25), number("seconds", 5)) else {
        error!("testing: period_ms and seconds must be numbers");
        return 2;
    };
    let period = period_ms.max(1) * 1_000_000;
    let start = bulkhead_rt::now_ns();
    let end = start + seconds * 1_000_000_000;
    let mut intended = start + period;
    let (mut beats, mut max_late, mut sum_late) = (0u64, 0u64, 0u64);
    while intended <= end {
        let woke = loop {
            let now = bulkhead_rt::now_ns();
            if now >= intended {
                break now;
            }
            bulkhead_rt::wait_event(Some(Duration::from_nanos(intended - now)));
        };
        let late = woke - intended;
        beats += 1;
        max_late = max_late.max(late);
        sum_late += late;
        info!("testing: beat {beats} late {} us", late / 1000);
        intended += period;
        // Behind by more than a period: measure from now on rather than count one delay
        // again at every later beat.
        let now = bulkhead_rt::now_ns();
        if intended < now {
            intended = now + period;
        }
    }
    info!(
        "testing: heartbeat max lateness {} us over {beats} beats (mean {} us)",
        max_late / 1000,
        sum_late / beats.max(1) / 1000
    );
    0
}

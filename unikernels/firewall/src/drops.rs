//! What the log says about dropped packets: the first few drops of each reason with the
//! packet (`firewall: dropped from client work: spoofed source: udp 10.137.0.99:4000 ->
//! 10.0.2.2:5557`), then only counts, once a minute, for the reasons that grew, with the
//! engine's totals.

use alloc::vec::Vec;
use core::fmt;

use bulkhead_firewall_engine::{DropReason, Stats, Verdict};
use bulkhead_rt::info;

/// Drops of one reason logged one by one before only counts are.
const DETAILED: u32 = 3;
/// Between two count reports.
const REPORT_EVERY_MS: u64 = 60_000;

/// The rate limiter.
pub struct DropLog {
    detailed: [u32; DropReason::COUNT],
    /// The engine's drop counters at the last report.
    reported: [u64; DropReason::COUNT],
    forwarded: u64,
    next_report: u64,
}

impl DropLog {
    pub fn new() -> DropLog {
        DropLog {
            detailed: [0; DropReason::COUNT],
            reported: [0; DropReason::COUNT],
            forwarded: 0,
            next_report: REPORT_EVERY_MS,
        }
    }

    /// Logs a drop of a frame from `who`, while its reason has had fewer than [`DETAILED`].
    pub fn note(&mut self, who: &str, verdict: Verdict) {
        let Verdict::Dropped { reason, packet } = verdict else {
            return;
        };
        let n = &mut self.detailed[reason.index()];
        if *n >= DETAILED {
            return;
        }
        *n += 1;
        let more = if *n == DETAILED {
            " (more are only counted)"
        } else {
            ""
        };
        match packet {
            Some(p) => info!("firewall: dropped from {who}: {reason}: {p}{more}"),
            None => info!("firewall: dropped from {who}: {reason}{more}"),
        }
    }

    /// Every [`REPORT_EVERY_MS`]: the drop reasons that grew since the last report, and the
    /// totals, if anything happened.
    pub fn report(&mut self, stats: &Stats, now: u64) {
        if now < self.next_report {
            return;
        }
        self.next_report = now.saturating_add(REPORT_EVERY_MS);
        let mut grew: Vec<(DropReason, u64)> = Vec::new();
        for r in DropReason::ALL {
            let n = stats.dropped(r);
            let before = core::mem::replace(&mut self.reported[r.index()], n);
            if n > before {
                grew.push((r, n - before));
            }
        }
        if grew.is_empty() && stats.forwarded == self.forwarded {
            return;
        }
        self.forwarded = stats.forwarded;
        if !grew.is_empty() {
            info!("firewall: dropped in the last minute: {}", Counts(&grew));
        }
        info!(
            "firewall: totals: forwarded {}, answered {}, dropped {}, connections {} (created {}, expired {}, evicted {})",
            stats.forwarded,
            stats.answered,
            stats.dropped_total(),
            stats.connections,
            stats.connections_created,
            stats.connections_expired,
            stats.connections_evicted
        );
    }
}

/// `reason n, reason n`.
struct Counts<'a>(&'a [(DropReason, u64)]);

impl fmt::Display for Counts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (r, n)) in self.0.iter().enumerate() {
            write!(f, "{}{r} {n}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

//! How much of the machine other processes took while we measured, from /proc/stat and
//! /proc/self/stat. Both sides busy-poll, so on a quiet two-core machine this process is
//! everything that runs; any share taken by others was taken from the figures.

/// Clock ticks of the whole machine and of this process at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Ticks {
    total: u64,
    busy: u64,
    mine: u64,
}

impl Ticks {
    /// Now, or `None` where /proc cannot tell.
    pub fn now() -> Option<Ticks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        if cpu.len() < 8 {
            return None;
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = cpu.iter().sum();
        let busy = total - cpu[3] - cpu[4];
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command (which may hold spaces) start after the last ')'.
        let rest: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15, i.e. 12 and 13 after the state field (3).
        let mine = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some(Ticks { total, busy, mine })
    }

    /// The share (0..=1) of all cores' time that went to other processes (or to the host,
    /// as steal) between `self` and `later`.
    pub fn others_since(&self, later: &Ticks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let others =
            (later.busy.checked_sub(self.busy)?).saturating_sub(later.mine.checked_sub(self.mine)?);
        (total > 0).then(|| (others as f64 / total as f64).min(1.0))
    }
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

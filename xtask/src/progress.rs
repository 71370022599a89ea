//! Numbered progress lines (`[2/4] building images`), so a person can see where a long
//! command is and how much is left.

use std::time::Instant;

/// A fixed number of steps, announced one after the other.
#[derive(Debug)]
pub struct Steps {
    total: usize,
    done: usize,
    started: Instant,
}

impl Steps {
    /// A plan of `total` steps.
    pub fn new(total: usize) -> Steps {
        Steps {
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Announces the next step.
    pub fn next(&mut self, what: &str) {
        self.done += 1;
        // A step added after the plan was made still gets a sensible number.
        let total = self.total.max(self.done);
        println!("[{}/{}] {what}", self.done, total);
    }

    /// Seconds since the plan was made.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Formats a byte count for people (`1.4 MiB`).
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let v = n as f64;
    if v >= KIB * KIB {
        format!("{:.1} MiB", v / (KIB * KIB))
    } else if v >= KIB {
        format!("{:.1} KiB", v / KIB)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
    }
}

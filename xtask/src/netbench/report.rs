//! What a run of the network benchmark leaves behind, read back: the guest's result lines,
//! the counting plugin's marks, the server's transfers; and the figures made of them, as a
//! table for the terminal and docs/bench.md.

use anyhow::{Result, bail};
use std::fmt::Write as _;

/// Where the plugin says instructions ran (its `Region`s, in its order): the hypervisor,
/// the unikernels, a Linux kernel, Linux programs.
pub const PARTS: [&str; 4] = ["hypervisor", "unikernels", "linux-kernel", "programs"];

/// The counting plugin's counters at one mark (`mark N insns X vmruns Y hypervisor A ...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Guest instructions executed so far.
    pub insns: u64,
    /// VMRUN instructions executed so far.
    pub vmruns: u64,
    /// Instructions by [`PARTS`].
    pub parts: [u64; 4],
    /// Wall-clock nanoseconds the CPU spent halted.
    pub idle_ns: u64,
}

impl Counters {
    /// What was executed from `self` to `later`.
    pub fn until(&self, later: &Counters) -> Counters {
        let mut parts = [0; 4];
        for (i, p) in parts.iter_mut().enumerate() {
            *p = later.parts[i].saturating_sub(self.parts[i]);
        }
        Counters {
            insns: later.insns.saturating_sub(self.insns),
            vmruns: later.vmruns.saturating_sub(self.vmruns),
            parts,
            idle_ns: later.idle_ns.saturating_sub(self.idle_ns),
        }
    }
}

/// The marks in the plugin's file, in order (its `exit` line is left out).
pub fn parse_marks(text: &str) -> Vec<Counters> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() != Some(&"mark") {
                return None;
            }
            let value = |key: &str| -> Option<u64> {
                let at = w.iter().position(|x| *x == key)?;
                w.get(at + 1)?.parse().ok()
            };
            let mut parts = [0; 4];
            for (p, key) in parts.iter_mut().zip(PARTS) {
                *p = value(key)?;
            }
            Some(Counters {
                insns: value("insns")?,
                vmruns: value("vmruns")?,
                parts,
                idle_ns: value("idle-ns")?,
            })
        })
        .collect()
}

/// A guest line `netbench: up 16777216 bytes in 4.210 s`: `Some(Ok((direction, bytes,
/// seconds)))`; `Some(Err(line))` for `netbench: up failed: ...`; `None` for other lines.
/// The line may carry a prefix (the hypervisor's `work | `).
pub fn parse_guest(line: &str) -> Option<Result<(String, u64, f64), String>> {
    let rest = &line[line.find("netbench: ")? + "netbench: ".len()..];
    let w: Vec<&str> = rest.split_whitespace().collect();
    match w.as_slice() {
        [dir, n, "bytes", "in", s, "s"] => match (n.parse(), s.parse()) {
            (Ok(n), Ok(s)) => Some(Ok((dir.to_string(), n, s))),
            _ => Some(Err(rest.to_string())),
        },
        [_, "failed:", ..] => Some(Err(rest.to_string())),
        _ => None,
    }
}

/// One direction on one path.
#[derive(Clone, Debug)]
pub struct Figures {
    /// `up` (guest to host) or `down`.
    pub direction: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds on the host's clock (the server's).
    pub host_secs: f64,
    /// Seconds on the guest's clock (the agent's).
    pub guest_secs: f64,
    /// Instructions and VMRUNs between the two marks around the transfer.
    pub counted: Counters,
}

const MB: f64 = 1e6;

impl Figures {
    /// Megabytes (10^6 bytes) per second, host clock.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / MB / self.host_secs
    }
    /// Instructions per megabyte.
    pub fn insns_per_mb(&self) -> f64 {
        self.counted.insns as f64 / (self.bytes as f64 / MB)
    }
    /// VM exits (VMRUNs) per megabyte.
    pub fn exits_per_mb(&self) -> f64 {
        self.counted.vmruns as f64 / (self.bytes as f64 / MB)
    }
    /// The share of the transfer's wall time the CPU spent halted.
    pub fn halted(&self) -> f64 {
        (self.counted.idle_ns as f64 / 1e9 / self.host_secs).min(1.0)
    }
}

/// Pairs the marks (two per transfer, up then down) with the guest's lines and the server's
/// host-clock durations `(direction, bytes, seconds)`.
pub fn figures(
    marks: &[Counters],
    guest: &[(String, u64, f64)],
    host: &[(String, u64, f64)],
) -> Result<Vec<Figures>> {
    if guest.len() != 2 || host.len() != 2 || marks.len() != 4 {
        bail!(
            "expected two transfers with four marks; the guest reported {}, the server {}, \
             the plugin saw {} marks",
            guest.len(),
            host.len(),
            marks.len()
        );
    }
    let mut out = Vec::new();
    for (i, (g, h)) in guest.iter().zip(host).enumerate() {
        if g.0 != h.0 || g.1 != h.1 {
            bail!("the guest's transfer {g:?} and the server's {h:?} do not match");
        }
        let (a, b) = (marks[2 * i], marks[2 * i + 1]);
        out.push(Figures {
            direction: g.0.clone(),
            bytes: g.1,
            host_secs: h.2,
            guest_secs: g.2,
            counted: a.until(&b),
        });
    }
    Ok(out)
}

/// Everything the benchmark measured.
#[derive(Clone, Debug)]
pub struct NetBench {
    /// MiB each way.
    pub mib: u64,
    /// Through the hypervisor, sys-firewall and sys-net.
    pub bulkhead: Vec<Figures>,
    /// The same kernel straight on QEMU with its own virtio-net card.
    pub baseline: Vec<Figures>,
    /// The kernel release.
    pub kernel: String,
    /// Seconds the whole benchmark took (builds included).
    pub seconds: f64,
    /// The 1-minute load average before the first boot and after the last.
    pub load: (Option<f64>, Option<f64>),
}

fn label(direction: &str) -> &str {
    match direction {
        "up" => "up (guest → host)",
        "down" => "down (host → guest)",
        other => other,
    }
}

/// Thousands separated by commas.
pub(crate) fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl NetBench {
    /// The table: one row per direction.
    pub fn table(&self) -> String {
        let mut md = String::from(
            "| direction | Bulkhead MB/s | no compartments MB/s | Bulkhead / no compartments | \
             Bulkhead VM exits per MB | Bulkhead instructions per MB | no compartments \
             instructions per MB |\n|---|--:|--:|--:|--:|--:|--:|\n",
        );
        for (b, n) in self.bulkhead.iter().zip(&self.baseline) {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                label(&b.direction),
                b.mb_per_s(),
                n.mb_per_s(),
                b.mb_per_s() / n.mb_per_s(),
                grouped(b.exits_per_mb()),
                grouped(b.insns_per_mb()),
                grouped(n.insns_per_mb()),
            );
        }
        md
    }

    /// Where the instructions ran: per megabyte, and the share of all, for each path and
    /// direction.
    pub fn breakdown(&self) -> String {
        let mut md = String::from(
            "| path, direction | hypervisor | unikernels (sys-net, sys-firewall) | Linux kernel | \
             Linux programs | CPU halted |\n|---|--:|--:|--:|--:|--:|\n",
        );
        for (name, figs) in [
            ("Bulkhead", &self.bulkhead),
            ("no compartments", &self.baseline),
        ] {
            for f in figs.iter() {
                let mb = f.bytes as f64 / MB;
                let all = f.counted.insns.max(1) as f64;
                let _ = write!(md, "| {name}, {} |", f.direction);
                for part in f.counted.parts {
                    let _ = write!(
                        md,
                        " {} ({:.0}%) |",
                        grouped(part as f64 / mb),
                        100.0 * part as f64 / all
                    );
                }
                let _ = writeln!(md, " {:.0}% |", 100.0 * f.halted());
            }
        }
        md
    }

    /// The generated section of docs/bench.md.
    pub fn markdown(&self, revision: &str) -> String {
        let mut md = format!(
            "Generated by `cargo xtask bench --network --write-docs` at commit {revision}; do \
             not edit by hand.\n\n{} MiB each way over TCP, one connection per direction, \
             between `bulkhead-agent netbench` in a Linux guest (Debian's kernel {}) and a \
             server in xtask on the host; both paths in the same QEMU (TCG, `-cpu max`, one \
             CPU, user network), in the same run ({:.0} s in all; 1-minute load average {} \
             before, {} after).\n\n",
            self.mib,
            self.kernel,
            self.seconds,
            self.load.0.map_or("?".into(), |l| format!("{l:.2}")),
            self.load.1.map_or("?".into(), |l| format!("{l:.2}")),
        );
        md.push_str(&self.table());
        md.push_str(
            "\nWhere the instructions ran, per MB (and the share of all), and how much of the \
             transfer's wall time the CPU spent halted:\n\n",
        );
        md.push_str(&self.breakdown());
        md.push('\n');
        for (name, figs) in [
            ("Bulkhead", &self.bulkhead),
            ("no compartments", &self.baseline),
        ] {
            for f in figs.iter() {
                let _ = writeln!(
                    md,
                    "- {name}, {}: {} bytes in {:.2} s on the host's clock ({:.2} s on the \
                     guest's); {} instructions, {} VM exits.",
                    f.direction,
                    f.bytes,
                    f.host_secs,
                    f.guest_secs,
                    grouped(f.counted.insns as f64),
                    grouped(f.counted.vmruns as f64),
                );
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_plugin_marks() {
        let text = "mark 1 insns 100 vmruns 3 idle-ns 7 hypervisor 10 unikernels 20 linux-kernel 30 programs 40\n\
                    mark 2 insns 250 vmruns 10 idle-ns 9 hypervisor 1 unikernels 2 linux-kernel 3 programs 244\n\
                    mark 3 insns 260 vmruns 10\n\
                    exit insns 900 vmruns 12 hypervisor 0 unikernels 0 linux-kernel 0 programs 900\nnoise\n";
        let marks = parse_marks(text);
        assert_eq!(
            marks,
            vec![
                Counters {
                    insns: 100,
                    vmruns: 3,
                    parts: [10, 20, 30, 40],
                    idle_ns: 7,
                },
                Counters {
                    insns: 250,
                    vmruns: 10,
                    parts: [1, 2, 3, 244],
                    idle_ns: 9,
                }
            ]
        );
        assert_eq!(marks[0].until(&marks[1]).parts, [0, 0, 0, 204]);
        assert_eq!(marks[0].until(&marks[1]).idle_ns, 2);
    }

    #[test]
    fn reads_the_guest_lines() {
        assert_eq!(
            parse_guest("netbench: up 16777216 bytes in 4.210 s"),
            Some(Ok(("up".to_string(), 16777216, 4.21)))
        );
        assert_eq!(
            parse_guest("work     | netbench: down 1048576 bytes in 0.500 s"),
            Some(Ok(("down".to_string(), 1048576, 0.5)))
        );
        assert_eq!(
            parse_guest("netbench: up failed: Connection refused (os error 111)"),
            Some(Err(
                "up failed: Connection refused (os error 111)".to_string()
            ))
        );
        assert_eq!(parse_guest("selftest: netbench:5:16"), None);
        assert_eq!(parse_guest("agent: ready"), None);
    }

    fn c(insns: u64, vmruns: u64) -> Counters {
        Counters {
            insns,
            vmruns,
            parts: [0, 0, 0, insns],
            idle_ns: insns * 250,
        }
    }

    #[test]
    fn pairs_marks_with_transfers() {
        let marks = [
            c(10, 1),
            c(2_000_010, 501),
            c(3_000_000, 600),
            c(7_000_000, 1600),
        ];
        let guest = [
            ("up".into(), 2_000_000, 1.9),
            ("down".into(), 2_000_000, 3.9),
        ];
        let host = [
            ("up".into(), 2_000_000, 2.0),
            ("down".into(), 2_000_000, 4.0),
        ];
        let f = figures(&marks, &guest, &host).unwrap();
        assert_eq!(f[0].counted, c(2_000_000, 500));
        assert_eq!(f[1].counted, c(4_000_000, 1000));
        assert!((f[0].mb_per_s() - 1.0).abs() < 1e-9);
        assert!((f[1].insns_per_mb() - 2_000_000.0).abs() < 1e-6);
        assert!((f[1].exits_per_mb() - 500.0).abs() < 1e-9);
        assert!(figures(&marks[..3], &guest, &host).is_err());
        let swapped = [host[1].clone(), host[0].clone()];
        assert!(figures(&marks, &guest, &swapped).is_err());

        let bench = NetBench {
            mib: 2,
            bulkhead: f.clone(),
            baseline: f,
            kernel: "6.1.0-1-cloud-amd64".into(),
            seconds: 100.0,
            load: (Some(1.5), None),
        };
        let md = bench.markdown("abc123");
        assert!(
            md.contains("| up (guest → host) | 1.00 | 1.00 | 1.00 | 250 | 1,000,000 | 1,000,000 |"),
            "{md}"
        );
        assert!(md.contains("at commit abc123"), "{md}");
        assert!(md.contains("load average 1.50 before, ? after"), "{md}");
        assert!(
            md.contains("| Bulkhead, up | 0 (0%) | 0 (0%) | 0 (0%) | 1,000,000 (100%) | 25% |"),
            "{md}"
        );
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(12_345_678.0), "12,345,678");
    }
}

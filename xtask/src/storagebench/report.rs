//! What a run of the storage benchmark leaves behind, read back: the guest's result lines
//! (`bulkhead-agent blockbench`) and the counting plugin's marks; and the figures made of
//! them, as a table for the terminal and docs/bench.md.

use crate::netbench::report::{Counters, grouped};
use anyhow::{Result, bail};
use std::fmt::Write as _;

/// The measurements, in the order the guest runs them (writes first, so that reads find
/// what was written).
pub const TESTS: [&str; 4] = ["seq-write", "seq-read", "rand-write", "rand-read"];

/// One measurement as the guest reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// One of [`TESTS`].
    pub test: String,
    /// Requests made, one at a time.
    pub requests: u64,
    /// Bytes per request.
    pub size: u64,
    /// Seconds on the guest's clock, the write tests' final flush included.
    pub secs: f64,
}

/// A guest line: `Some(Ok(_))` for `blockbench: seq-read 512 requests of 131072 bytes in
/// 3.210 s`, `Some(Err(line))` for `blockbench: seq-read failed: ...`, `blockbench: error:
/// ...` or the self-test's `selftest: blockbench failed (N)`; `None` for other lines. The line
/// may carry a prefix (the hypervisor's `work | `).
pub fn parse_guest(line: &str) -> Option<Result<Measured, String>> {
    if let Some(at) = line.find("selftest: blockbench failed") {
        return Some(Err(line[at..].to_string()));
    }
    let rest = &line[line.find("blockbench: ")? + "blockbench: ".len()..];
    let w: Vec<&str> = rest.split_whitespace().collect();
    match w.as_slice() {
        [test, n, "requests", "of", size, "bytes", "in", s, "s"] => {
            match (n.parse(), size.parse(), s.parse()) {
                (Ok(requests), Ok(size), Ok(secs)) if TESTS.contains(test) => Some(Ok(Measured {
                    test: test.to_string(),
                    requests,
                    size,
                    secs,
                })),
                _ => Some(Err(rest.to_string())),
            }
        }
        ["error:", ..] | [_, "failed:", ..] => Some(Err(rest.to_string())),
        _ => None,
    }
}

/// One measurement on one path, with what the machine executed meanwhile.
#[derive(Clone, Debug)]
pub struct Figures {
    /// What the guest reported.
    pub measured: Measured,
    /// Instructions and VMRUNs between the two marks around it.
    pub counted: Counters,
}

impl Figures {
    /// Megabytes (10^6 bytes) per second, guest clock.
    pub fn mb_per_s(&self) -> f64 {
        (self.measured.requests * self.measured.size) as f64 / 1e6 / self.measured.secs
    }
    /// Requests per second, guest clock.
    pub fn iops(&self) -> f64 {
        self.measured.requests as f64 / self.measured.secs
    }
    /// The figure of the table: MB/s for a sequential test, IOPS for a random one.
    pub fn rate(&self) -> f64 {
        if self.measured.test.starts_with("seq") {
            self.mb_per_s()
        } else {
            self.iops()
        }
    }
    /// Instructions per request.
    pub fn insns_per_request(&self) -> f64 {
        self.counted.insns as f64 / self.measured.requests.max(1) as f64
    }
    /// VM exits (VMRUNs) per request.
    pub fn exits_per_request(&self) -> f64 {
        self.counted.vmruns as f64 / self.measured.requests.max(1) as f64
    }
    /// The share of the measurement's time the CPU spent halted (waiting for the disk).
    pub fn halted(&self) -> f64 {
        (self.counted.idle_ns as f64 / 1e9 / self.measured.secs).min(1.0)
    }
}

/// Pairs the marks (two per measurement) with the guest's lines, which must be [`TESTS`] in
/// order.
pub fn figures(marks: &[Counters], guest: &[Measured]) -> Result<Vec<Figures>> {
    let names: Vec<&str> = guest.iter().map(|m| m.test.as_str()).collect();
    if names != TESTS || marks.len() != 2 * TESTS.len() {
        bail!(
            "expected the measurements {} with two marks each; the guest reported {names:?}, \
             the plugin saw {} marks",
            TESTS.join(", "),
            marks.len()
        );
    }
    Ok(guest
        .iter()
        .enumerate()
        .map(|(i, m)| Figures {
            measured: m.clone(),
            counted: marks[2 * i].until(&marks[2 * i + 1]),
        })
        .collect())
}

/// Everything the benchmark measured.
#[derive(Clone, Debug)]
pub struct StorageBench {
    /// MiB of the sequential tests.
    pub mib: u64,
    /// Random requests per direction.
    pub random: u64,
    /// The AppVM's private volume, through NBD, the agent and the storage qube.
    pub bulkhead: Vec<Figures>,
    /// The same kernel straight on QEMU with the disk as its own virtio-blk device.
    pub baseline: Vec<Figures>,
    /// The kernel release.
    pub kernel: String,
    /// Seconds the whole benchmark took (builds included).
    pub seconds: f64,
    /// The 1-minute load average before the first boot and after the last.
    pub load: (Option<f64>, Option<f64>),
    /// The storage qube's last counters line for the AppVM's volume (`N requests: ...`).
    pub storage: Option<String>,
}

/// What the storage qube last said it did for `work.blk`: the text after `storage: work: `
/// in its last counters line (`412 requests: 84 reads (325 KiB), ..., 0 I/O errors`).
pub fn storage_counters(lines: &[String]) -> Option<String> {
    lines.iter().rev().find_map(|l| {
        let rest = l.split_once("storage: work: ")?.1;
        rest.contains(" requests: ")
            .then(|| rest.trim().to_string())
    })
}

/// Whether a counters line says the storage qube refused a request or saw an I/O error.
pub fn counters_trouble(counters: &str) -> bool {
    !(counters.contains(" 0 refused") && counters.ends_with(" 0 I/O errors"))
}

/// The table's rows: (test, label), reads before writes.
const ROWS: [(&str, &str); 4] = [
    ("seq-read", "sequential read, 128 KiB requests (MB/s)"),
    (
        "seq-write",
        "sequential write, 128 KiB requests + flush (MB/s)",
    ),
    ("rand-read", "random read, 4 KiB requests (IOPS)"),
    ("rand-write", "random write, 4 KiB requests + flush (IOPS)"),
];

fn find<'a>(figs: &'a [Figures], test: &str) -> Option<&'a Figures> {
    figs.iter().find(|f| f.measured.test == test)
}

impl StorageBench {
    /// The table: one row per measurement.
    pub fn table(&self) -> String {
        let mut md = String::from(
            "| measurement | Bulkhead | no compartments | Bulkhead / no compartments | \
             Bulkhead VM exits per request | Bulkhead instructions per request | no \
             compartments instructions per request |\n|---|--:|--:|--:|--:|--:|--:|\n",
        );
        for (test, label) in ROWS {
            let (Some(b), Some(n)) = (find(&self.bulkhead, test), find(&self.baseline, test))
            else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {label} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                b.rate(),
                n.rate(),
                b.rate() / n.rate(),
                grouped(b.exits_per_request()),
                grouped(b.insns_per_request()),
                grouped(n.insns_per_request()),
            );
        }
        md
    }

    /// Where the instructions ran, per request (and the share of all), for each path and
    /// measurement.
    pub fn breakdown(&self) -> String {
        let mut md = String::from(
            "| path, measurement | hypervisor | unikernels (the storage qube) | Linux kernel | \
             Linux programs (the agent) |\n|---|--:|--:|--:|--:|\n",
        );
        for (name, figs) in [
            ("Bulkhead", &self.bulkhead),
            ("no compartments", &self.baseline),
        ] {
            for (test, _) in ROWS {
                let Some(f) = find(figs, test) else { continue };
                let all = f.counted.insns.max(1) as f64;
                let requests = f.measured.requests.max(1) as f64;
                let _ = write!(md, "| {name}, {test} |");
                for part in f.counted.parts {
                    let _ = write!(
                        md,
                        " {} ({:.0}%) |",
                        grouped(part as f64 / requests),
                        100.0 * part as f64 / all
                    );
                }
                md.push('\n');
            }
        }
        md
    }

    /// One line per path and measurement: the raw figures.
    pub fn details(&self) -> String {
        let mut md = String::new();
        for (name, figs) in [
            ("Bulkhead", &self.bulkhead),
            ("no compartments", &self.baseline),
        ] {
            for f in figs.iter() {
                let m = &f.measured;
                let _ = writeln!(
                    md,
                    "- {name}, {}: {} requests of {} bytes in {:.2} s on the guest's clock \
                     ({:.2} MB/s, {:.0} IOPS); {} instructions, {} VM exits, CPU halted {:.0}% \
                     of the time.",
                    m.test,
                    m.requests,
                    m.size,
                    m.secs,
                    f.mb_per_s(),
                    f.iops(),
                    grouped(f.counted.insns as f64),
                    grouped(f.counted.vmruns as f64),
                    100.0 * f.halted(),
                );
            }
        }
        md
    }

    /// What the terminal shows.
    pub fn terminal(&self) -> String {
        format!(
            "{}\nInstructions per request by where they ran:\n\n{}\n{}{}\nQEMU TCG (emulated \
             CPU, one CPU, -cpu max): emulator figures to compare changes by, not a claim \
             about hardware.",
            self.table(),
            self.breakdown(),
            self.details(),
            self.storage_counters(),
        )
    }

    /// The generated section of docs/bench.md.
    pub fn markdown(&self, revision: &str) -> String {
        let mut md = format!(
            "Generated by `cargo xtask bench --storage --write-docs` at commit {revision}; do \
             not edit by hand.\n\n`bulkhead-agent blockbench` in a Linux guest (Debian's \
             kernel {}) on a raw block device with `O_DIRECT`, one request at a time: {} MiB \
             written then read in 128 KiB requests, then {} random 4 KiB writes and {} random \
             4 KiB reads in that region; each write test ends with a flush. Bulkhead: the \
             AppVM's private volume (`/dev/nbd0`, served by its agent over the storage \
             qube's channel); no compartments: the same kernel and initramfs straight in \
             QEMU on its own virtio-blk disk (`/dev/vda`). Both in the same QEMU (TCG, `-cpu \
             max`, one CPU; emulator figures, not a claim about hardware), in the same run \
             ({:.0} s in all; 1-minute load average {} before, {} after).\n\n",
            self.kernel,
            self.mib,
            self.random,
            self.random,
            self.seconds,
            self.load.0.map_or("?".into(), |l| format!("{l:.2}")),
            self.load.1.map_or("?".into(), |l| format!("{l:.2}")),
        );
        md.push_str(&self.table());
        md.push_str("\nWhere the instructions ran, per request (and the share of all):\n\n");
        md.push_str(&self.breakdown());
        md.push('\n');
        md.push_str(&self.details());
        md.push_str(&self.storage_counters());
        md
    }

    fn storage_counters(&self) -> String {
        match &self.storage {
            Some(c) => format!("- The storage qube's count for `work.blk`: {c}.\n"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guest_lines() {
        assert_eq!(
            parse_guest("work     | blockbench: seq-read 512 requests of 131072 bytes in 3.210 s"),
            Some(Ok(Measured {
                test: "seq-read".into(),
                requests: 512,
                size: 131072,
                secs: 3.21,
            }))
        );
        assert_eq!(
            parse_guest("blockbench: rand-write failed: Input/output error (os error 5)"),
            Some(Err(
                "rand-write failed: Input/output error (os error 5)".into()
            ))
        );
        assert_eq!(
            parse_guest("blockbench: error: /dev/nbd0 is mounted: writing it would destroy it"),
            Some(Err(
                "error: /dev/nbd0 is mounted: writing it would destroy it".into()
            ))
        );
        assert!(matches!(
            parse_guest("work | selftest: blockbench failed (2)"),
            Some(Err(e)) if e == "selftest: blockbench failed (2)"
        ));
        // An unknown test, or figures that are not numbers, are errors, not figures.
        assert!(matches!(
            parse_guest("blockbench: seq-sideways 1 requests of 2 bytes in 3 s"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_guest("blockbench: seq-read x requests of 2 bytes in 3 s"),
            Some(Err(_))
        ));
        assert_eq!(
            parse_guest("blockbench: /dev/vda (268435456 bytes): the first 64 MiB ..."),
            None
        );
        assert_eq!(parse_guest("selftest: blockbench:vda:64:2000"), None);
        assert_eq!(parse_guest("agent: ready"), None);
    }

    fn marks(n: usize) -> Vec<Counters> {
        (0..n as u64)
            .map(|i| Counters {
                insns: i * 1_000_000,
                vmruns: i * 100,
                parts: [0; 4],
                idle_ns: i * 500_000_000,
            })
            .collect()
    }

    fn measured(test: &str, requests: u64, size: u64, secs: f64) -> Measured {
        Measured {
            test: test.into(),
            requests,
            size,
            secs,
        }
    }

    #[test]
    fn pairs_marks_with_measurements() {
        let guest = vec![
            measured("seq-write", 8, 125_000, 2.0),
            measured("seq-read", 8, 125_000, 1.0),
            measured("rand-write", 100, 4096, 2.0),
            measured("rand-read", 100, 4096, 1.0),
        ];
        let f = figures(&marks(8), &guest).unwrap();
        assert_eq!(f[1].counted.insns, 1_000_000);
        assert_eq!(f[1].counted.vmruns, 100);
        assert!((f[1].mb_per_s() - 1.0).abs() < 1e-9);
        assert!(
            (f[0].rate() - 0.5).abs() < 1e-9,
            "MB/s for a sequential test"
        );
        assert!((f[3].rate() - 100.0).abs() < 1e-9, "IOPS for a random one");
        assert!((f[2].exits_per_request() - 1.0).abs() < 1e-9);
        assert!((f[3].halted() - 0.5).abs() < 1e-9);
        assert!(figures(&marks(7), &guest).is_err());
        let mut swapped = guest.clone();
        swapped.swap(0, 1);
        assert!(figures(&marks(8), &swapped).is_err());

        let mut slower = f.clone();
        for s in &mut slower {
            s.measured.secs *= 4.0;
        }
        let bench = StorageBench {
            mib: 1,
            random: 100,
            bulkhead: slower,
            baseline: f,
            kernel: "6.1.0-1-cloud-amd64".into(),
            seconds: 100.0,
            load: (Some(1.5), None),
            storage: Some("5 requests: 0 I/O errors".into()),
        };
        let md = bench.markdown("abc123");
        assert!(
            md.contains(
                "| sequential read, 128 KiB requests (MB/s) | 0.25 | 1.00 | 0.25 | 12 | 125,000 | 125,000 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| random read, 4 KiB requests (IOPS) | 25.00 | 100.00 | 0.25 | 1 |"),
            "{md}"
        );
        // Reads before writes in the table.
        assert!(md.find("sequential read").unwrap() < md.find("sequential write").unwrap());
        assert!(md.contains("at commit abc123"), "{md}");
        assert!(md.contains("load average 1.50 before, ? after"), "{md}");
        assert!(md.contains("- no compartments, rand-read: 100 requests of 4096 bytes"));
        assert!(bench.terminal().contains("QEMU TCG"));
        assert!(
            md.contains("| Bulkhead, seq-read | 0 (0%) | 0 (0%) | 0 (0%) | 0 (0%) |"),
            "{md}"
        );
        assert!(
            md.contains("count for `work.blk`: 5 requests: 0 I/O errors."),
            "{md}"
        );
    }

    #[test]
    fn reads_the_storage_qube_counters() {
        let lines = [
            "storage | [info] storage: work: 3 requests: 3 reads (12 KiB), 0 writes (0 KiB), 0 flushes, 0 discards, 0 refused (0 logged), 0 I/O errors",
            "storage | [info] storage: work.root: 9 requests: ...",
            "storage | [info] storage: work: 9 requests: 5 reads (20 KiB), 4 writes (16 KiB), 0 flushes, 0 discards, 0 refused (0 logged), 0 I/O errors",
            "storage | [info] storage: serving work its volume (256 MiB at sector 2048) on work.blk",
        ]
        .map(String::from);
        let c = storage_counters(&lines).unwrap();
        assert!(c.starts_with("9 requests: 5 reads"), "{c}");
        assert!(!counters_trouble(&c));
        assert!(counters_trouble(
            &c.replace(" 0 I/O errors", " 1 I/O errors")
        ));
        assert!(counters_trouble(&c.replace(" 0 refused", " 2 refused")));
        assert_eq!(storage_counters(&lines[1..2]), None);
    }
}

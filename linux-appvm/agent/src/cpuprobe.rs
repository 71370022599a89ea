//! `bulkhead-agent cpu-probe` (the `appvm.selftest=cpus` step): checks from inside an AppVM
//! that Linux has several CPUs and that each one runs: the AppVM side of `cargo xtask test
//! appvm-smp`. Every line goes to stdout, after [`PREFIX`]:
//!
//! 1. `N online (0-1), this process may run on 0-1`: `sysconf(_SC_NPROCESSORS_ONLN)`, the
//!    kernel's list of online CPUs (`/sys/devices/system/cpu/online`), and the CPUs this
//!    process may run on (its affinity).
//! 2. For each of those CPUs a thread pinned to it alone, all of them busy at the same time
//!    for [`BUSY`] (a checksum loop, iterations counted); `sched_getcpu` must name the CPU
//!    before and after: `cpu K ran pinned: getcpu K, ITER iterations`, or `cpu K WRONG:
//!    getcpu G ...`.
//! 3. Two threads pinned to the first two of those CPUs pass a counter back and forth
//!    [`ROUND_TRIPS`] times through two pipes. Each blocks in `read` until the other writes,
//!    so every hop wakes a sleeping thread on the other CPU: the guest kernel sends a
//!    reschedule IPI, which the hypervisor must deliver. `2000 round trips between cpu A and
//!    cpu B in X ms, values all in order` (or `value out of order at N`, the first round whose
//!    value was wrong).
//! 4. `done (ok)` when at least two CPUs were online, every pinned thread saw its own CPU and
//!    the round trips were all in order; else `done (FAILED: reasons)` and exit status 1.
//!
//! The system calls are in [`crate::sys::cpus`]; this module is safe code.

use crate::sys::cpus;
use std::fmt;
use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

/// What every line of the probe starts with.
pub const PREFIX: &str = "selftest: cpus: ";
/// How long every pinned thread keeps busy.
pub const BUSY: Duration = Duration::from_millis(200);
/// Round trips between the first two CPUs.
pub const ROUND_TRIPS: u32 = 2000;
/// Where the kernel lists its online CPUs.
const ONLINE: &str = "/sys/devices/system/cpu/online";
/// The highest CPU number a list may name (the kernel's largest `NR_CPUS`), so that a bad
/// range cannot make a huge list.
const LIST_MAX: usize = 8191;
/// How long the pinned threads have to pin themselves before they all start.
const START_DELAY: Duration = Duration::from_millis(50);

/// Reads the kernel's CPU list format (`0`, `0-3`, `0-1,4,6-7`, a newline after it
/// allowed), in ascending order; `None` if it is not one.
pub fn parse_list(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut cpus: Vec<usize> = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        if first > last || last > LIST_MAX || cpus.last().is_some_and(|&l| l >= first) {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// Writes CPUs (ascending) in the kernel's list format: `[0, 1, 3]` is `0-1,3`.
pub fn format_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(match j > i {
            true => format!("{}-{}", cpus[i], cpus[j]),
            false => cpus[i].to_string(),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// What one pinned thread saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// `sched_getcpu` named its CPU before and after the busy work.
    Ran { cpu: usize, iterations: u64 },
    /// `sched_getcpu` named another CPU, before or after.
    Wrong {
        cpu: usize,
        before: usize,
        after: usize,
        iterations: u64,
    },
    /// It could not be started, pinned or ask where it ran.
    Failed { cpu: usize, why: String },
}

impl Pinned {
    /// The verdict on a thread pinned to `cpu` that saw `before` and `after`.
    pub fn judge(cpu: usize, before: usize, after: usize, iterations: u64) -> Pinned {
        if before == cpu && after == cpu {
            Pinned::Ran { cpu, iterations }
        } else {
            Pinned::Wrong {
                cpu,
                before,
                after,
                iterations,
            }
        }
    }

    /// Whether it ran where it was pinned.
    pub fn ok(&self) -> bool {
        matches!(self, Pinned::Ran { .. })
    }
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pinned::Ran { cpu, iterations } => {
                write!(
                    f,
                    "cpu {cpu} ran pinned: getcpu {cpu}, {iterations} iterations"
                )
            }
            Pinned::Wrong {
                cpu,
                before,
                after,
                iterations,
            } => {
                let seen = if before != cpu { before } else { after };
                write!(
                    f,
                    "cpu {cpu} WRONG: getcpu {seen} (before {before}, after {after}), \
                     {iterations} iterations"
                )
            }
            Pinned::Failed { cpu, why } => write!(f, "cpu {cpu} FAILED: {why}"),
        }
    }
}

/// The round trips between two CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingPong {
    pub a: usize,
    pub b: usize,
    pub trips: u32,
    pub elapsed: Duration,
    /// The first round in which a thread received another value than it expected.
    pub out_of_order: Option<u32>,
}

impl fmt::Display for PingPong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} round trips between cpu {} and cpu {} in {:.1} ms, ",
            self.trips,
            self.a,
            self.b,
            self.elapsed.as_secs_f64() * 1000.0
        )?;
        match self.out_of_order {
            None => write!(f, "values all in order"),
            Some(n) => write!(f, "value out of order at {n}"),
        }
    }
}

/// Everything the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `sysconf(_SC_NPROCESSORS_ONLN)`, or why it failed.
    pub online: Result<usize, String>,
    /// The kernel's online list, or why it could not be read.
    pub online_list: Result<Vec<usize>, String>,
    /// One entry per CPU the process may run on; empty if the affinity could not be read.
    pub pinned: Vec<Pinned>,
    /// The round trips, or why there were none.
    pub ping_pong: Result<PingPong, String>,
}

impl Report {
    /// Every reason the probe fails (none: it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        match (&self.online, &self.online_list) {
            (Ok(n), _) if *n < 2 => why.push(format!("{n} CPU(s) online, 2 needed")),
            (Ok(n), Ok(list)) if list.len() != *n => why.push(format!(
                "sysconf says {n} CPUs online, {ONLINE} lists {}",
                list.len()
            )),
            (Err(e), _) => why.push(format!("sysconf: {e}")),
            _ => {}
        }
        if let Err(e) = &self.online_list {
            why.push(e.clone());
        }
        if self.pinned.is_empty() {
            why.push("no CPU to pin a thread to".into());
        }
        why.extend(self.pinned.iter().filter(|p| !p.ok()).map(|p| match p {
            Pinned::Failed { cpu, .. } => format!("cpu {cpu}'s thread failed"),
            other => format!("cpu {} ran elsewhere", cpu_of(other)),
        }));
        match &self.ping_pong {
            Ok(p) => why.extend(
                p.out_of_order
                    .map(|n| format!("round trip value out of order at {n}")),
            ),
            Err(e) => why.push(format!("no round trips: {e}")),
        }
        why
    }

    /// The closing line (without [`PREFIX`]).
    pub fn verdict(&self) -> String {
        let why = self.failures();
        if why.is_empty() {
            "done (ok)".into()
        } else {
            format!("done (FAILED: {})", why.join("; "))
        }
    }
}

fn cpu_of(p: &Pinned) -> usize {
    match p {
        Pinned::Ran { cpu, .. } | Pinned::Wrong { cpu, .. } | Pinned::Failed { cpu, .. } => *cpu,
    }
}

/// Spins until `end`, folding a counter into a checksum; returns the iterations.
fn busy_until(end: Instant) -> u64 {
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        for _ in 0..4096 {
            n += 1;
            sum = std::hint::black_box(sum.rotate_left(7) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        if Instant::now() >= end {
            return n;
        }
    }
}

/// One pinned thread: pin to `cpu`, wait for `start`, ask, spin until `end`, ask again.
fn pinned_thread(cpu: usize, start: Instant, end: Instant) -> Pinned {
    let run = || -> io::Result<Pinned> {
        cpus::pin_this_thread(cpu)?;
        thread::sleep(start.saturating_duration_since(Instant::now()));
        let before = cpus::current()?;
        let iterations = busy_until(end);
        let after = cpus::current()?;
        Ok(Pinned::judge(cpu, before, after, iterations))
    };
    run().unwrap_or_else(|e| Pinned::Failed {
        cpu,
        why: e.to_string(),
    })
}

/// Runs a thread pinned to each of `on`, all busy together for `busy`.
pub fn run_pinned(on: &[usize], busy: Duration) -> Vec<Pinned> {
    let start = Instant::now() + START_DELAY;
    let end = start + busy;
    thread::scope(|s| {
        let threads: Vec<_> = on
            .iter()
            .map(|&cpu| {
                let t = thread::Builder::new().name(format!("cpu{cpu}"));
                (
                    cpu,
                    t.spawn_scoped(s, move || pinned_thread(cpu, start, end)),
                )
            })
            .collect();
        threads
            .into_iter()
            .map(|(cpu, t)| {
                let failed = |why: String| Pinned::Failed { cpu, why };
                match t {
                    Ok(t) => t
                        .join()
                        .unwrap_or_else(|_| failed("the thread panicked".into())),
                    Err(e) => failed(format!("no thread: {e}")),
                }
            })
            .collect()
    })
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// The value each side expects in round `i`: the ping carries `2i`, the pong `2i + 1`.
fn ping(i: u32) -> u32 {
    i.wrapping_mul(2)
}

/// What the thread of one side (pinned to `cpu`) returned, or why it did not.
fn joined<T>(
    cpu: usize,
    t: io::Result<thread::ScopedJoinHandle<'_, io::Result<T>>>,
) -> Result<T, String> {
    match t.map(thread::ScopedJoinHandle::join) {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(format!("cpu {cpu}'s side: {e}")),
        Ok(Err(_)) => Err(format!("cpu {cpu}'s side panicked")),
        Err(e) => Err(format!("no thread for cpu {cpu}'s side: {e}")),
    }
}

/// `trips` round trips between a thread pinned to `a` and one pinned to `b`, through two
/// pipes with blocking reads and writes.
pub fn ping_pong(a: usize, b: usize, trips: u32) -> Result<PingPong, String> {
    let (mut b_reads, mut a_writes) = io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (mut a_reads, mut b_writes) = io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let side_a = move || -> io::Result<(Duration, Option<u32>)> {
        cpus::pin_this_thread(a)?;
        let (t, mut bad) = (Instant::now(), None);
        for i in 0..trips {
            a_writes.write_all(&ping(i).to_le_bytes())?;
            if read_u32(&mut a_reads)? != ping(i).wrapping_add(1) {
                bad = bad.or(Some(i));
            }
        }
        Ok((t.elapsed(), bad))
    };
    let side_b = move || -> io::Result<Option<u32>> {
        cpus::pin_this_thread(b)?;
        let mut bad = None;
        for i in 0..trips {
            let v = read_u32(&mut b_reads)?;
            if v != ping(i) {
                bad = bad.or(Some(i));
            }
            b_writes.write_all(&v.wrapping_add(1).to_le_bytes())?;
        }
        Ok(bad)
    };
    // A side that fails drops its pipe ends, so the other's read or write fails too (SIGPIPE
    // is ignored in Rust programs): neither waits for ever.
    let (ra, rb) = thread::scope(|s| {
        let ta = thread::Builder::new()
            .name("ping".into())
            .spawn_scoped(s, side_a);
        let tb = thread::Builder::new()
            .name("pong".into())
            .spawn_scoped(s, side_b);
        (joined(a, ta), joined(b, tb))
    });
    match (ra, rb) {
        (Ok((elapsed, bad_a)), Ok(bad_b)) => Ok(PingPong {
            a,
            b,
            trips,
            elapsed,
            out_of_order: [bad_a, bad_b].into_iter().flatten().min(),
        }),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(ea), Err(eb)) => Err(format!("{ea}; {eb}")),
    }
}

/// Runs the probe, handing each line (without [`PREFIX`]) to `out` as soon as it is known.
pub fn probe(busy: Duration, trips: u32, out: &mut dyn FnMut(&str)) -> Report {
    let online = cpus::online_count().map_err(|e| e.to_string());
    let online_list = match std::fs::read_to_string(ONLINE) {
        Ok(text) => parse_list(&text)
            .ok_or_else(|| format!("{ONLINE} holds {:?}, not a CPU list", text.trim())),
        Err(e) => Err(format!("{ONLINE}: {e}")),
    };
    let allowed = cpus::allowed().map_err(|e| format!("sched_getaffinity: {e}"));
    let show = |r: &Result<Vec<usize>, String>| match r {
        Ok(l) => format_list(l),
        Err(e) => e.clone(),
    };
    let count = online.as_ref().map_or("?".to_string(), usize::to_string);
    out(&format!(
        "{count} online ({}), this process may run on {}",
        show(&online_list),
        show(&allowed)
    ));
    let allowed = allowed.unwrap_or_default();
    let pinned = run_pinned(&allowed, busy);
    for p in &pinned {
        out(&p.to_string());
    }
    let ping_pong = match allowed[..] {
        [a, b, ..] => ping_pong(a, b, trips),
        _ => Err(format!(
            "fewer than 2 CPUs to run on ({})",
            format_list(&allowed)
        )),
    };
    match &ping_pong {
        Ok(p) => out(&p.to_string()),
        Err(e) => out(&format!("no round trips: {e}")),
    }
    let report = Report {
        online,
        online_list,
        pinned,
        ping_pong,
    };
    out(&report.verdict());
    report
}

/// `bulkhead-agent cpu-probe`: prints the lines, returns the exit status (0 passed, 1
/// failed, 2 usage).
pub fn main(args: &[String]) -> u8 {
    if !args.is_empty() {
        eprintln!("usage: bulkhead-agent cpu-probe (no arguments)");
        return 2;
    }
    let report = probe(BUSY, ROUND_TRIPS, &mut |line| println!("{PREFIX}{line}"));
    u8::from(!report.failures().is_empty())
}

#[cfg(test)]
#[path = "cpuprobe_tests.rs"]
mod tests;

//! `bulkhead-ring-bench`: round-trip latency and one-way throughput of the Bulkhead ring
//! against the physical limit (a one-line atomic ping-pong) and other inter-thread IPC, in
//! one run, two threads pinned one per core. Run by `cargo xtask bench --host`, which also
//! writes docs/bench.md; see that file for what each figure means.
//!
//!
//! Then the paired rounds (`paired.rs`): the figures the issue's ratios compare, measured in
//! short alternating runs, each ratio taken from the runs of one round; the targets are
//! checked on those.
//!
//! ```text
//! bulkhead-ring-bench [--json FILE] [--runs N] [--batches N] [--budget-ms MS]
//!                     [--warmup-ms MS] [--slots N] [--only NAME,NAME]
//!                     [--rounds N] [--round-ms MS] [--bulk-kib N] [--paired-only]
//! ```
#![forbid(unsafe_code)]

mod bulk;
mod harness;
mod load;
mod message;
mod paired;
mod probes;
mod report;
mod stats;
mod transport;

use harness::{Cores, Plan};
use report::{Figure, Machine, Report, Row, Settings};
use stats::Summary;
use std::time::{Duration, Instant};
use transport::Setup;

const USAGE: &str = "\
bulkhead-ring-bench: the Bulkhead ring against other IPC, two threads pinned to two cores

  --json FILE       also write the report as JSON
  --runs N          timed runs per figure [20]
  --batches N       samples per run [50]
  --budget-ms MS    time of one figure's runs together [1200]
  --warmup-ms MS    warm-up before each figure [100]
  --slots N         messages each transport holds per direction, a power of two [256]
  --only A,B        only these rows: atomic, ring, rtrb, crossbeam, std-mpsc, pipe,
                    unix-socket, iceoryx2 (with --features iceoryx2), postcard, and
                    bulk (the bulk figures of the paired rounds)

Paired rounds (the targets are checked on them): the round trips of atomic, ring, rtrb
and iceoryx2, the one-way rates of atomic and ring, and the bulk figures, each measured
once per round in short alternating runs; every ratio is taken within a round.
  --rounds N        paired rounds, 0 for none [20]
  --round-ms MS     length of one run in a round [30]
  --bulk-kib N      bytes of the bulk buffer, KiB, 0 for no bulk figures [1024]
  --paired-only     only the paired rounds, not the table
";

struct Options {
    json: Option<std::path::PathBuf>,
    runs: usize,
    batches: usize,
    budget_ms: u64,
    warmup_ms: u64,
    slots: usize,
    only: Option<Vec<String>>,
    rounds: usize,
    round_ms: u64,
    bulk_kib: usize,
    paired_only: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        json: None,
        runs: 20,
        batches: 50,
        budget_ms: 1200,
        warmup_ms: 100,
        slots: 256,
        only: None,
        rounds: 20,
        round_ms: 30,
        bulk_kib: 1024,
        paired_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{arg}: not a number: {v}"))
        };
        match arg.as_str() {
            "--json" => o.json = Some(value()?.into()),
            "--runs" => o.runs = number(value()?)?.max(1) as usize,
            "--batches" => o.batches = number(value()?)?.max(1) as usize,
            "--budget-ms" => o.budget_ms = number(value()?)?,
            "--warmup-ms" => o.warmup_ms = number(value()?)?,
            "--slots" => o.slots = number(value()?)? as usize,
            "--only" => o.only = Some(value()?.split(',').map(str::to_string).collect()),
            "--rounds" => o.rounds = number(value()?)? as usize,
            "--round-ms" => o.round_ms = number(value()?)?.max(1),
            "--bulk-kib" => o.bulk_kib = number(value()?)? as usize,
            "--paired-only" => o.paired_only = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if !o.slots.is_power_of_two() || o.slots < 2 {
        return Err(format!(
            "--slots {}: must be a power of two, at least 2",
            o.slots
        ));
    }
    // Two pools of the buffer's size: the bulk area holds at most 64 MiB.
    if o.bulk_kib > 32 * 1024 {
        return Err(format!("--bulk-kib {}: at most 32768", o.bulk_kib));
    }
    Ok(o)
}

/// Samples per paired run.
const PAIRED_BATCHES: usize = 10;
/// Warm-up before each paired run.
const PAIRED_WARMUP: Duration = Duration::from_millis(5);

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; the figures mean little (use --release)");
    }
    let cores = Cores::detect();
    if !cores.pinned() {
        eprintln!("warning: fewer than two cores available; the threads are not pinned");
    }
    let plan = Plan {
        runs: o.runs,
        batches: o.batches,
        warmup: Duration::from_millis(o.warmup_ms),
        budget: Duration::from_millis(o.budget_ms),
        max_per_run: u64::MAX,
    };
    let setup = Setup {
        slots: o.slots,
        cores,
    };
    let (transports, missing) = transport::all();
    let wanted = |name: &str| {
        o.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| w == name))
    };
    let in_table = |name: &str| !o.paired_only && wanted(name);

    let started = Instant::now();
    let load_before = load::loadavg();
    let ticks_before = load::Ticks::now();
    let mut rows = Vec::new();
    for t in transports.iter().filter(|t| in_table(t.name)) {
        eprint!("{:<13} round trip ", t.name);
        let before = load::Ticks::now();
        let mut errors = Vec::new();
        let rtt = match (t.round_trip)(&plan, &setup) {
            Ok(m) => Some(Figure::new(
                Summary::of(&m.runs),
                1.0,
                m.per_run,
                m.per_batch,
            )),
            Err(e) => {
                errors.push(format!("round trip: {e}"));
                None
            }
        };
        eprint!(
            "{:>8}   one way ",
            rtt.map_or("failed".into(), |f| format!("{:.0} ns", f.median))
        );
        let rate = match (t.one_way)(&plan, &setup) {
            Ok(m) => Some(Figure::new(
                Summary::of(&m.runs),
                1e-6,
                m.per_run,
                m.per_batch,
            )),
            Err(e) => {
                errors.push(format!("one way: {e}"));
                None
            }
        };
        // The software path is steady: a third of the time is plenty.
        let short = Plan {
            budget: plan.budget / 3,
            ..plan
        };
        let local = match t.same_thread.map(|m| m(&short, &setup)) {
            Some(Ok(m)) => Some(Figure::new(
                Summary::of(&m.runs),
                1.0,
                m.per_run,
                m.per_batch,
            )),
            Some(Err(e)) => {
                errors.push(format!("same thread: {e}"));
                None
            }
            None => None,
        };
        let others = before
            .zip(load::Ticks::now())
            .and_then(|(b, a)| b.others_since(&a));
        eprintln!(
            "{:>14}   others took {}",
            rate.map_or("failed".into(), |f| format!("{:.2} M msg/s", f.median)),
            others.map_or("?".into(), |o| format!("{:.0}%", o * 100.0))
        );
        rows.push(Row {
            name: t.name.into(),
            label: t.label.into(),
            round_trip_ns: rtt,
            one_way_mmsgs: rate,
            same_thread_ns: local,
            one_way_note: t.one_way_note.map(str::to_string),
            others,
            rtt_vs_atomic: None,
            rtt_vs_ring: None,
            one_way_vs_ring: None,
            errors,
        });
    }

    if in_table("postcard") {
        let short = Plan {
            budget: plan.budget / 3,
            ..plan
        };
        let m = harness::encode_decode(&short, cores);
        rows.push(Row {
            name: "postcard".into(),
            label: "postcard encode + decode of the message alone, into and out of a 128-byte buffer (no transport)".into(),
            round_trip_ns: None,
            one_way_mmsgs: None,
            same_thread_ns: Some(Figure::new(Summary::of(&m.runs), 1.0, m.per_run, m.per_batch)),
            one_way_note: None,
            others: None,
            rtt_vs_atomic: None,
            rtt_vs_ring: None,
            one_way_vs_ring: None,
            errors: Vec::new(),
        });
    }

    let paired = (o.rounds > 0).then(|| {
        let plan = Plan {
            runs: 1,
            batches: PAIRED_BATCHES,
            warmup: PAIRED_WARMUP,
            budget: Duration::from_millis(o.round_ms),
            max_per_run: u64::MAX,
        };
        let bytes = o.bulk_kib * 1024;
        let probes = probes::probes(&transports, setup, bytes, &wanted);
        paired::measure(&plan, o.rounds, bytes, &probes)
    });

    let mut report = Report {
        schema: report::SCHEMA,
        machine: machine(cores),
        settings: Settings {
            runs: o.runs,
            batches: o.batches,
            warmup_ms: o.warmup_ms,
            budget_ms: o.budget_ms,
            slots: o.slots,
            message_bytes: std::mem::size_of::<message::Msg>(),
            postcard_bytes: postcard::to_allocvec(&message::Msg::new(0)).map_or(0, |v| v.len()),
            opt_level: env!("BENCH_OPT_LEVEL").to_string(),
            args: std::env::args().skip(1).collect(),
        },
        transports: rows,
        missing: missing
            .into_iter()
            .filter(|m| wanted(m.name))
            .map(|m| report::Missing {
                name: m.name.into(),
                why: m.why,
            })
            .collect(),
        paired,
        targets: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
        load: report::Load {
            others: ticks_before
                .zip(load::Ticks::now())
                .and_then(|(b, a)| b.others_since(&a)),
            loadavg_before: load_before,
            loadavg_after: load::loadavg(),
        },
    };
    report.compare();
    print!("{}", report.table());
    if let Some(path) = &o.json {
        let json = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("error: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

fn machine(cores: Cores) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let count = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    Machine {
        cpu,
        cores: count,
        pinned: cores.ids(),
        kernel,
    }
}

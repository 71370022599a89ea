//! `cargo xtask bench`: channel latency and throughput, recorded in docs/bench.md.
//!
//! The host part runs `bulkhead-ring-bench` (hypervisor/ring/bench): the Bulkhead ring
//! against a one-line atomic ping-pong, rtrb, crossbeam-channel, std mpsc, a pipe pair, a
//! Unix socket pair and, when it builds here, iceoryx2, two threads pinned to two cores; then
//! the paired rounds (the ratios the issue's targets name, each taken from neighbouring short
//! runs, and a 1 MiB buffer through a bulk area against memcpy: `bench/paired.rs`). The
//! benchmark writes `target/bulkhead/bench-host.json`; with `write_docs`, the figures replace
//! the part of docs/bench.md between `<!-- host:begin -->` and `<!-- host:end -->`.
//!
//! iceoryx2 is a cargo feature of the benchmark: it is large and needs libclang, so a probe
//! build with the feature comes first, and only if it succeeds is the benchmark run with it.
//! Otherwise the report says why iceoryx2 is missing and everything else is measured as usual.

mod paired;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The benchmark's package.
const PACKAGE: &str = "bulkhead-ring-bench";
/// JSON layout the benchmark writes (its `report::SCHEMA`).
const SCHEMA: u32 = 2;
/// The probe build compiles iceoryx2 and its dependencies the first time: minutes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Markers of the generated parts of docs/bench.md.
pub const HOST_BEGIN: &str = "<!-- host:begin -->";
/// End of the host part.
pub const HOST_END: &str = "<!-- host:end -->";
/// Start of the QEMU part (filled by the QEMU benchmark).
pub const QEMU_BEGIN: &str = "<!-- qemu:begin -->";
/// End of the QEMU part.
pub const QEMU_END: &str = "<!-- qemu:end -->";

/// What the host benchmark measured (the JSON it writes, as far as xtask reads it).
#[derive(Clone, Debug, Deserialize)]
pub struct HostBench {
    /// JSON layout version.
    pub schema: u32,
    /// The machine.
    pub machine: Machine,
    /// How it was measured.
    pub settings: Settings,
    /// One row per transport measured.
    pub transports: Vec<Row>,
    /// Transports not measured, and why.
    pub missing: Vec<Missing>,
    /// The paired rounds, if they were run.
    #[serde(default)]
    pub paired: Option<paired::Paired>,
    /// The issue's targets, checked on the paired rounds.
    pub targets: Vec<Target>,
    /// Seconds the measurements took.
    pub seconds: f64,
    /// What else ran meanwhile.
    pub load: Load,
    /// The command that produced it (filled in by xtask).
    #[serde(default)]
    pub command: String,
}

/// The machine.
#[derive(Clone, Debug, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs online.
    pub cores: usize,
    /// The CPUs the two sides were pinned to.
    pub pinned: Option<[usize; 2]>,
    /// Kernel release.
    pub kernel: String,
}

/// How it was measured.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// Timed runs per figure.
    pub runs: usize,
    /// Samples per run.
    pub batches: usize,
    /// Warm-up per figure, ms.
    pub warmup_ms: u64,
    /// Time of a figure's runs together, ms.
    pub budget_ms: u64,
    /// Messages a transport holds per direction.
    pub slots: usize,
    /// Message bytes in memory.
    pub message_bytes: usize,
    /// Message bytes postcard-encoded.
    pub postcard_bytes: usize,
    /// Optimisation level of the benchmark build.
    pub opt_level: String,
}

/// A figure: median of run medians, 10th and 90th percentiles of all samples.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Figure {
    /// Median of the run medians.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
}

/// One transport.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    /// Short name.
    pub name: String,
    /// What it is.
    pub label: String,
    /// Round trip, ns.
    pub round_trip_ns: Option<Figure>,
    /// One way, millions of messages per second.
    pub one_way_mmsgs: Option<Figure>,
    /// Send and receive on one thread, ns per message: the software path alone.
    pub same_thread_ns: Option<Figure>,
    /// What the one-way figure is, where not obvious.
    pub one_way_note: Option<String>,
    /// Share of the machine other processes took while this row was measured.
    pub others: Option<f64>,
    /// Round trip / the atomic ping-pong's.
    pub rtt_vs_atomic: Option<f64>,
    /// Round trip / the ring's.
    pub rtt_vs_ring: Option<f64>,
    /// One-way rate / the ring's.
    pub one_way_vs_ring: Option<f64>,
    /// Measurements that failed.
    pub errors: Vec<String>,
}

/// A transport not measured.
#[derive(Clone, Debug, Deserialize)]
pub struct Missing {
    /// Short name.
    pub name: String,
    /// Why.
    pub why: String,
}

/// A target of the issue, checked.
#[derive(Clone, Debug, Deserialize)]
pub struct Target {
    /// The target.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not checkable.
    pub pass: Option<bool>,
}

/// What else ran during the measurements.
#[derive(Clone, Debug, Deserialize)]
pub struct Load {
    /// Share of all cores' time other processes took.
    pub others: Option<f64>,
    /// 1-minute load average before.
    pub loadavg_before: Option<f64>,
    /// 1-minute load average after.
    pub loadavg_after: Option<f64>,
}

/// Where the host figures are written.
pub fn host_json_path() -> PathBuf {
    crate::images::target_dir()
        .join("bulkhead")
        .join("bench-host.json")
}

/// Runs the host benchmark (the table goes to stdout as it is printed), reads its JSON back
/// and, with `write_docs`, rewrites the host part of docs/bench.md.
pub fn host(write_docs: bool) -> Result<HostBench> {
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let json_path = host_json_path();

    let iceoryx2 = probe_iceoryx2(&cargo, &root);
    let features: &[&str] = if iceoryx2.is_ok() {
        &["--features", "iceoryx2"]
    } else {
        &[]
    };
    let mut build = vec!["build", "--release", "--quiet", "-p", PACKAGE];
    build.extend_from_slice(features);
    if iceoryx2.is_err() {
        let status = Command::new(&cargo)
            .args(&build)
            .current_dir(&root)
            .status();
        if !status
            .with_context(|| format!("running `{cargo}`"))?
            .success()
        {
            bail!(
                "building the benchmark failed: cargo {} (see cargo's errors above)",
                build.join(" ")
            );
        }
    }

    let json_arg = json_path.display().to_string();
    let mut args = vec!["run", "--release", "--quiet", "-p", PACKAGE];
    args.extend_from_slice(features);
    args.extend_from_slice(&["--", "--json", &json_arg]);
    let command = format!("cargo {}", args.join(" ")).replace(&format!("{}/", root.display()), "");
    println!("      {command}");
    let status = Command::new(&cargo)
        .args(&args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("running `{cargo}`"))?;
    if !status.success() {
        bail!("the benchmark failed ({status}): {command}");
    }

    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json_path.display()))?;
    json["command"] = serde_json::Value::String(command);
    if let Err(why) = &iceoryx2 {
        for m in json["missing"].as_array_mut().into_iter().flatten() {
            if m["name"] == "iceoryx2" {
                m["why"] = serde_json::Value::String(why.clone());
            }
        }
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")?;
    let bench: HostBench = serde_json::from_value(json).context("the benchmark's JSON")?;
    if bench.schema != SCHEMA {
        bail!(
            "{} has layout {}, xtask reads {SCHEMA}",
            json_path.display(),
            bench.schema
        );
    }
    println!("full report: {}", json_path.display());

    if write_docs {
        let doc = root.join("docs/bench.md");
        let old = std::fs::read_to_string(&doc).unwrap_or_default();
        let section = host_markdown(&bench, &git_revision(&root));
        let mut new = replace_section(&old, HOST_BEGIN, HOST_END, &section);
        if !new.contains(QEMU_BEGIN) {
            new = replace_section(&new, QEMU_BEGIN, QEMU_END, "Not measured yet.");
        }
        std::fs::write(&doc, new)?;
        println!("wrote {}", doc.display());
    }
    Ok(bench)
}

/// Builds the benchmark with iceoryx2; `Err` says why it cannot be had here.
fn probe_iceoryx2(cargo: &str, root: &Path) -> std::result::Result<(), String> {
    let args = [
        "build",
        "--release",
        "-p",
        PACKAGE,
        "--features",
        "iceoryx2",
    ];
    println!(
        "      cargo {} (probe; the first build of iceoryx2 takes minutes)",
        args.join(" ")
    );
    let child = Command::new(cargo)
        .args(args)
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.map_err(|e| format!("could not run cargo: {e}"))?;
    // Read stderr on a thread so a chatty build cannot fill the pipe and stall.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for cargo: {e}")),
        }
    };
    let log = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(_) => Err(format!(
            "the probe build with iceoryx2 failed: {}",
            build_error(&log)
        )),
        None => Err(format!(
            "the probe build with iceoryx2 took longer than {} minutes",
            PROBE_TIMEOUT.as_secs() / 60
        )),
    }
}

/// The first error cargo printed, on one line, with the panic of a build script if one
/// failed (that is where "Unable to find libclang" and the like are said).
fn build_error(log: &str) -> String {
    let mut lines = log.lines().map(str::trim);
    let mut one = lines
        .find(|l| l.starts_with("error"))
        .unwrap_or("no error message")
        .to_string();
    if let Some(panic) = lines.by_ref().find(|l| l.contains("panicked at")) {
        let message = if panic.ends_with(':') {
            lines.find(|l| !l.is_empty())
        } else {
            None
        };
        one.push_str(": ");
        one.push_str(message.unwrap_or(panic));
    }
    one.chars().take(400).collect()
}

/// The commit, short, with "with uncommitted changes" when the tree differs from it.
pub fn git_revision(root: &Path) -> String {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = out(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev} with uncommitted changes")
    } else {
        rev
    }
}

/// Start of the firewall part of docs/bench.md (filled by `cargo xtask bench --firewall`).
pub const FIREWALL_BEGIN: &str = "<!-- firewall:begin -->";
/// End of the firewall part.
pub const FIREWALL_END: &str = "<!-- firewall:end -->";

/// Runs the firewall benchmark (unikernels/firewall/engine/bench: the engine's frames per
/// second against Linux nftables between network namespaces; the Linux part needs root) and,
/// with `write_docs`, puts the table it writes into docs/bench.md.
pub fn firewall(write_docs: bool) -> Result<()> {
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let md = crate::images::target_dir()
        .join("bulkhead")
        .join("bench-firewall.md");
    if let Some(dir) = md.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let md_arg = md.display().to_string();
    let args = [
        "run",
        "--release",
        "--quiet",
        "-p",
        "bulkhead-firewall-bench",
        "--",
        "--markdown",
        &md_arg,
    ];
    println!("      cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("running `{cargo}`"))?;
    if !status.success() {
        bail!("the firewall benchmark failed ({status})");
    }
    if write_docs {
        let body =
            std::fs::read_to_string(&md).with_context(|| format!("reading {}", md.display()))?;
        let doc = root.join("docs/bench.md");
        let old = std::fs::read_to_string(&doc).unwrap_or_default();
        let body = format!(
            "Generated by `cargo xtask bench --firewall --write-docs` at commit {}; do not edit by hand.\n\n{body}",
            git_revision(&root)
        );
        let mut new = old.clone();
        if !old.contains(FIREWALL_BEGIN) {
            new = format!("{}\n\n## Firewall: frames per second\n\n", old.trim_end());
        }
        new = replace_section(&new, FIREWALL_BEGIN, FIREWALL_END, &body);
        std::fs::write(&doc, new)?;
        println!("wrote {}", doc.display());
    }
    Ok(())
}

/// Replaces what lies between `begin` and `end` in `doc` with `body`; appends a new section
/// (markers included) when the markers are missing.
pub fn replace_section(doc: &str, begin: &str, end: &str, body: &str) -> String {
    let body = body.trim_end();
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{begin}\n{body}\n{}", &doc[..b], &doc[e..])
        }
        _ => {
            let mut out = doc.trim_end().to_string();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            format!("{out}{begin}\n{body}\n{end}\n")
        }
    }
}

fn ns(f: &Option<Figure>) -> String {
    f.map_or("—".into(), |f| {
        format!("{:.0} [{:.0}, {:.0}]", f.median, f.p10, f.p90)
    })
}

fn rate(f: &Option<Figure>) -> String {
    f.map_or("—".into(), |f| {
        format!("{:.2} [{:.2}, {:.2}]", f.median, f.p10, f.p90)
    })
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}"))
}

fn percent(share: Option<f64>) -> String {
    share.map_or("?".into(), |s| format!("{:.0}%", s * 100.0))
}

/// The host part of docs/bench.md.
pub fn host_markdown(b: &HostBench, revision: &str) -> String {
    let mut md = String::new();
    let m = &b.machine;
    let s = &b.settings;
    md.push_str("Generated by `cargo xtask bench --host --write-docs`; do not edit by hand.\n\n");
    let pinned = match m.pinned {
        Some([a, c]) => format!("the two threads pinned to CPUs {a} and {c}"),
        None => "the threads NOT pinned (fewer than two CPUs available)".into(),
    };
    let _ = writeln!(
        md,
        "- Machine: {}, {} logical CPUs, Linux {}; {pinned}.",
        m.cpu, m.cores, m.kernel
    );
    let _ = writeln!(
        md,
        "- Command: `{}` (run by `cargo xtask bench --host`), at commit {revision}.",
        b.command
    );
    let _ = writeln!(
        md,
        "- Message: {} bytes in memory ({} bytes postcard-encoded on the ring); {} slots per direction for every queue.",
        s.message_bytes, s.postcard_bytes, s.slots
    );
    let _ = writeln!(
        md,
        "- Each figure: {} ms warm-up, then {} runs of {} samples (~{} ms in all); the median of the run medians, [p10, p90] of all samples. Built at opt-level {} (the workspace release profile).",
        s.warmup_ms, s.runs, s.batches, s.budget_ms, s.opt_level
    );
    let l = &b.load;
    let quiet = if l.others.is_some_and(|o| o > 0.05) {
        " **The machine was busy: other processes took time from the measuring threads, so these figures are pessimistic; measure again when it is quiet.**"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "- Other processes took {} of the machine during the {:.0} s of measurements (1-minute load average {} before, {} after).{quiet}",
        percent(l.others),
        b.seconds,
        l.loadavg_before.map_or("?".into(), |v| format!("{v:.2}")),
        l.loadavg_after.map_or("?".into(), |v| format!("{v:.2}")),
    );
    md.push_str("\n| Transport | Round trip, ns [p10, p90] | × atomic | × ring | One way, M msg/s [p10, p90] | × ring | One thread, ns | Others took |\n");
    md.push_str("|---|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in &b.transports {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            ns(&r.round_trip_ns),
            ratio(r.rtt_vs_atomic),
            ratio(r.rtt_vs_ring),
            rate(&r.one_way_mmsgs),
            ratio(r.one_way_vs_ring),
            r.same_thread_ns
                .map_or("—".into(), |f| format!("{:.0}", f.median)),
            percent(r.others)
        );
    }
    md.push('\n');
    for r in &b.transports {
        let _ = write!(md, "- `{}`: {}", r.name, r.label);
        if let Some(note) = &r.one_way_note {
            let _ = write!(md, "; {note}");
        }
        md.push_str(".\n");
        for e in &r.errors {
            let _ = writeln!(md, "  - failed: {e}");
        }
    }
    for miss in &b.missing {
        let _ = writeln!(
            md,
            "- `{}`: not measured: {}.",
            miss.name,
            miss.why.trim_end_matches('.')
        );
    }
    md.push_str("\nThe ratios of this table divide figures measured seconds apart, possibly on different placements of the two CPUs; those of the paired runs below do not.\n\n");
    match &b.paired {
        Some(p) => md.push_str(&paired::markdown(p)),
        None => md.push_str("**Paired runs**: not run (`--rounds 0`).\n"),
    }
    md.push_str(
        "\nThe issue's targets (figures, not tests), each on the median of its paired runs:\n\n",
    );
    for t in &b.targets {
        let verdict = match t.pass {
            Some(true) => "**pass**",
            Some(false) => "**fail**",
            None => "not checked",
        };
        let _ = writeln!(md, "- {}: {verdict} ({})", t.target, t.measured);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_between_markers_and_keeps_the_rest() {
        let doc = "# Bench\n\nintro\n<!-- host:begin -->\nold\n<!-- host:end -->\n\n## QEMU\n<!-- qemu:begin -->\nq\n<!-- qemu:end -->\n";
        let new = replace_section(doc, HOST_BEGIN, HOST_END, "new table\n");
        assert_eq!(
            new,
            "# Bench\n\nintro\n<!-- host:begin -->\nnew table\n<!-- host:end -->\n\n## QEMU\n<!-- qemu:begin -->\nq\n<!-- qemu:end -->\n"
        );
        assert_eq!(
            replace_section(&new, HOST_BEGIN, HOST_END, "new table"),
            new
        );
    }

    #[test]
    fn appends_a_section_when_markers_are_missing() {
        assert_eq!(
            replace_section("", HOST_BEGIN, HOST_END, "x"),
            "<!-- host:begin -->\nx\n<!-- host:end -->\n"
        );
        assert_eq!(
            replace_section("# T\n", QEMU_BEGIN, QEMU_END, "y\n"),
            "# T\n\n<!-- qemu:begin -->\ny\n<!-- qemu:end -->\n"
        );
    }

    #[test]
    fn first_build_error_on_one_line() {
        let log = "   Compiling a v1\nerror: failed to run custom build command for `iceoryx2-pal-posix`\n\nCaused by:\n  Unable to find libclang\n";
        assert_eq!(
            build_error(log),
            "error: failed to run custom build command for `iceoryx2-pal-posix`"
        );
        let log = "error[E0432]: unresolved import `x`\n --> src/a.rs:1:5\n  |\n1 | use x;\n  |     ^ no `x`\n";
        assert_eq!(build_error(log), "error[E0432]: unresolved import `x`");
    }

    #[test]
    fn reads_the_benchmark_json() {
        let json = r#"{"schema":2,"machine":{"cpu":"AMD EPYC","cores":2,"pinned":[0,1],"kernel":"6.1"},
            "settings":{"runs":20,"batches":50,"warmup_ms":100,"budget_ms":1200,"slots":256,"message_bytes":64,
            "postcard_bytes":65,"opt_level":"s","args":[]},
            "transports":[{"name":"atomic","label":"one-line atomic ping-pong","round_trip_ns":{"median":70.0,"p10":66.0,"p90":80.0,"per_run":1000,"per_sample":20},
            "one_way_mmsgs":null,"same_thread_ns":null,"one_way_note":null,"others":0.01,"rtt_vs_atomic":1.0,"rtt_vs_ring":null,"one_way_vs_ring":null,"errors":[]}],
            "missing":[{"name":"iceoryx2","why":"off"}],
            "paired":{"rounds":20,"run_ms":30,"batches":10,"warmup_ms":5,"bulk_bytes":1048576,
              "series":[{"name":"rtt:atomic","label":"atomic round trip","unit":"ns","spread":{"median":90.0,"p10":86.0,"p90":470.0,"min":85.0,"max":490.0},"values":[90.0],"errors":[]}],
              "ratios":[],"others":0.0,"seconds":10.0},
            "targets":[{"target":"t","measured":"m","pass":true}],"seconds":30.0,
            "load":{"others":0.01,"loadavg_before":0.1,"loadavg_after":0.2}}"#;
        let b: HostBench = serde_json::from_str(json).unwrap();
        let md = host_markdown(&b, "abc123");
        assert!(
            md.contains("| atomic | 70 [66, 80] | 1.00 | — | — | — | — | 1% |"),
            "{md}"
        );
        assert!(md.contains("- `iceoryx2`: not measured: off."), "{md}");
        assert!(md.contains("**Paired runs** (the targets"), "{md}");
        assert!(
            md.contains("| atomic round trip, ns | 90.0 [86.0, 470] | 85.0 – 490 |"),
            "{md}"
        );
        assert!(md.contains("- t: **pass** (m)"), "{md}");
        assert!(!md.contains("busy"), "{md}");

        // Without the paired rounds (`--rounds 0`), the JSON has `"paired": null`.
        let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["paired"] = serde_json::Value::Null;
        let b: HostBench = serde_json::from_value(value).unwrap();
        assert!(b.paired.is_none());
        assert!(host_markdown(&b, "abc123").contains("**Paired runs**: not run (`--rounds 0`)."));
    }
}

//! The host benchmark's paired rounds, as xtask reads them from its JSON and writes them into
//! docs/bench.md: the raw figures (with their spread, which shows this machine's two modes),
//! the ratios taken within each round, and the bulk figures against `memcpy`.

use serde::Deserialize;
use std::fmt::Write as _;

/// The paired rounds.
#[derive(Clone, Debug, Deserialize)]
pub struct Paired {
    /// Rounds.
    pub rounds: usize,
    /// Length of one run, ms.
    pub run_ms: u64,
    /// Samples per run.
    pub batches: usize,
    /// Warm-up before each run, ms.
    pub warmup_ms: u64,
    /// Bytes of the bulk buffer.
    pub bulk_bytes: usize,
    /// One series per figure.
    pub series: Vec<Series>,
    /// Ratios from paired runs.
    pub ratios: Vec<Ratio>,
    /// Share of the machine other processes took during the rounds.
    pub others: Option<f64>,
    /// Seconds the rounds took.
    pub seconds: f64,
}

/// Median, p10, p90, smallest and largest of one value per round.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// One figure, one value per round.
#[derive(Clone, Debug, Deserialize)]
pub struct Series {
    /// Short name (`rtt:ring`, `bulk:memcpy`).
    pub name: String,
    /// What it is.
    pub label: String,
    /// Unit.
    pub unit: String,
    /// Spread over the rounds.
    pub spread: Option<Spread>,
    /// Why runs failed.
    pub errors: Vec<String>,
}

/// A ratio taken within each round.
#[derive(Clone, Debug, Deserialize)]
pub struct Ratio {
    /// What it is.
    pub label: String,
    /// Numerator and denominator series.
    pub of: [String; 2],
    /// "x" or "%".
    pub unit: String,
    /// Spread of the paired ratios.
    pub spread: Option<Spread>,
}

fn is_bulk(name: &str) -> bool {
    name.starts_with("bulk:")
}

/// Three significant figures, at most two decimals.
fn sig(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn median_range(s: Option<Spread>, scale: f64, suffix: &str) -> String {
    s.map_or("—".into(), |s| {
        format!(
            "{}{suffix} [{}, {}]",
            sig(s.median * scale),
            sig(s.p10 * scale),
            sig(s.p90 * scale)
        )
    })
}

fn min_max(s: Option<Spread>, scale: f64) -> String {
    s.map_or("—".into(), |s| {
        format!("{} – {}", sig(s.min * scale), sig(s.max * scale))
    })
}

fn ratio_text(r: &Ratio) -> (String, String) {
    let (scale, suffix) = if r.unit == "%" {
        (100.0, "%")
    } else {
        (1.0, "×")
    };
    (
        median_range(r.spread, scale, suffix),
        min_max(r.spread, scale),
    )
}

fn percent(share: Option<f64>) -> String {
    share.map_or("?".into(), |s| format!("{:.0}%", s * 100.0))
}

fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The paired part of the host section of docs/bench.md.
pub fn markdown(p: &Paired) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "**Paired runs** (the targets below are checked on these): {} rounds; in each round every figure below got one run of ~{} ms after {} ms of warm-up (the run's value: the median of its {} samples), in the order listed, reversed every other round. Each ratio is taken within a round, from that round's two runs, so both come from the same placement of the two CPUs; the table gives the median and [p10, p90] of the paired ratios. Other processes took {} of the machine during the {:.0} s of rounds.",
        p.rounds,
        p.run_ms,
        p.warmup_ms,
        p.batches,
        percent(p.others),
        p.seconds
    );
    md.push_str(
        "\n| Figure (one run per round) | Median [p10, p90] | Min – max |\n|---|--:|--:|\n",
    );
    for s in p.series.iter().filter(|s| !is_bulk(&s.name)) {
        let _ = writeln!(
            md,
            "| {}, {} | {} | {} |",
            s.label,
            s.unit,
            median_range(s.spread, 1.0, ""),
            min_max(s.spread, 1.0)
        );
    }
    md.push_str("\n| Ratio (within each round) | Median [p10, p90] | Min – max |\n|---|--:|--:|\n");
    for r in p.ratios.iter().filter(|r| !is_bulk(&r.of[0])) {
        let (median, range) = ratio_text(r);
        let _ = writeln!(md, "| {} | {median} | {range} |", r.label);
    }
    let bulk: Vec<&Series> = p.series.iter().filter(|s| is_bulk(&s.name)).collect();
    if !bulk.is_empty() {
        let _ = writeln!(
            md,
            "\n| Bulk, {} | GB/s, median [p10, p90] | Min – max | × memcpy, paired [p10, p90] |\n|---|--:|--:|--:|",
            size_name(p.bulk_bytes)
        );
        for s in &bulk {
            let vs = p
                .ratios
                .iter()
                .find(|r| r.of[0] == s.name && r.of[1] == "bulk:memcpy")
                .map_or("—".into(), |r| ratio_text(r).0);
            let vs = if s.name == "bulk:memcpy" {
                "1 (the baseline)".into()
            } else {
                vs
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {vs} |",
                s.label,
                median_range(s.spread, 1.0, ""),
                min_max(s.spread, 1.0)
            );
        }
        md.push('\n');
        for r in p.ratios.iter().filter(|r| r.unit == "%") {
            let (median, _) = ratio_text(r);
            let dominates = if r.spread.is_some_and(|s| s.median > 0.5) {
                ": **the checksum dominates**"
            } else {
                ""
            };
            let _ = writeln!(md, "- {}: {median}{dominates}.", r.label);
        }
    }
    for s in &p.series {
        for e in &s.errors {
            let _ = writeln!(md, "- {} failed: {e}", s.label);
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_rounds_in_markdown() {
        let json = r#"{"rounds":20,"run_ms":30,"batches":10,"warmup_ms":5,"bulk_bytes":1048576,
            "series":[
              {"name":"rtt:atomic","label":"atomic round trip","unit":"ns","spread":{"median":90.0,"p10":86.0,"p90":470.0,"min":85.0,"max":490.0},"values":[90.0,null],"errors":[]},
              {"name":"bulk:memcpy","label":"memcpy of 1 MiB","unit":"GB/s","spread":{"median":21.3,"p10":19.1,"p90":25.0,"min":18.9,"max":25.1},"values":[21.3],"errors":[]},
              {"name":"bulk:a-to-b","label":"1 MiB from A to B","unit":"GB/s","spread":{"median":2.13,"p10":1.0,"p90":2.5,"min":0.9,"max":2.6},"values":[2.13],"errors":[]},
              {"name":"bulk:a-to-b-unchecked","label":"unchecked","unit":"GB/s","spread":null,"values":[null],"errors":["boom"]}],
            "ratios":[
              {"name":"ring/atomic rtt","label":"ring round trip / atomic ping-pong","of":["rtt:ring","rtt:atomic"],"unit":"x","spread":{"median":2.41,"p10":2.2,"p90":2.9,"min":2.1,"max":13.0},"values":[2.41]},
              {"name":"bulk a-to-b/memcpy","label":"bulk A → B / memcpy","of":["bulk:a-to-b","bulk:memcpy"],"unit":"x","spread":{"median":0.1,"p10":0.05,"p90":0.12,"min":0.04,"max":0.13},"values":[0.1]},
              {"name":"checksum share","label":"the checksums' share","of":["bulk:one-thread","bulk:checksum"],"unit":"%","spread":{"median":0.6,"p10":0.5,"p90":0.7,"min":0.4,"max":0.8},"values":[0.6]}],
            "others":0.02,"seconds":12.0}"#;
        let p: Paired = serde_json::from_str(json).unwrap();
        let md = markdown(&p);
        assert!(
            md.contains("| atomic round trip, ns | 90.0 [86.0, 470] | 85.0 – 490 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| ring round trip / atomic ping-pong | 2.41× [2.20, 2.90] | 2.10 – 13.0 |"
            ),
            "{md}"
        );
        assert!(md.contains("| Bulk, 1 MiB |"), "{md}");
        assert!(
            md.contains("| memcpy of 1 MiB | 21.3 [19.1, 25.0] | 18.9 – 25.1 | 1 (the baseline) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 1 MiB from A to B | 2.13 [1.00, 2.50] | 0.90 – 2.60 | 0.10× [0.05, 0.12] |"
            ),
            "{md}"
        );
        assert!(md.contains("| unchecked | — | — | — |"), "{md}");
        assert!(
            !md.contains("bulk A → B / memcpy |"),
            "bulk ratios go in the bulk table: {md}"
        );
        assert!(
            md.contains("- the checksums' share: 60.0% [50.0, 70.0]: **the checksum dominates**."),
            "{md}"
        );
        assert!(md.contains("- unchecked failed: boom"), "{md}");
    }
}

//! Paired measurements: ratios that survive a machine whose two CPUs move.
//!
//! This machine's two vCPUs land near or far apart, per process, and can move in the middle
//! of a run, so a figure measured a few seconds after another may have been taken on another
//! placement, and their ratio then means nothing. Here the figures a ratio compares are
//! measured in short alternating runs instead: in each round every probe gets one short run
//! (a few tens of milliseconds: [`Plan::budget`]), in order, then in reverse order the next
//! round, and so on. A ratio is taken per round, from the two runs of that round (adjacent
//! or nearly so in time), and reported as the median and [p10, p90] of those paired ratios.
//! A placement change can spoil the one or two pairs it falls between, not the median.

use crate::harness::{Measured, Plan};
use crate::stats::Spread;
use serde::Serialize;

/// What a probe's samples are, and what its value is shown in.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    /// Samples and value in nanoseconds per operation.
    Ns,
    /// Samples in messages per second, value in millions of them.
    MMsgs,
    /// Samples in nanoseconds per buffer of this many bytes, value in GB/s (10^9 bytes/s).
    GBs(usize),
}

impl Unit {
    fn value(self, sample: f64) -> f64 {
        match self {
            Unit::Ns => sample,
            Unit::MMsgs => sample * 1e-6,
            Unit::GBs(bytes) => bytes as f64 / sample,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::MMsgs => "M msg/s",
            Unit::GBs(_) => "GB/s",
        }
    }
}

/// One measurement that takes part in every round.
pub struct Probe {
    /// Short name (`rtt:ring`, `bulk:memcpy`), what the ratios refer to.
    pub name: &'static str,
    /// What it is, in words.
    pub label: String,
    /// What its samples are.
    pub unit: Unit,
    /// One short run.
    pub run: Run,
}

/// One short run of a probe.
pub type Run = Box<dyn Fn(&Plan) -> Result<Measured, String>>;

/// A ratio between two probes, taken round by round.
struct RatioDef {
    name: &'static str,
    label: &'static str,
    num: &'static str,
    den: &'static str,
    /// Multiplies every ratio (2: two checksums per buffer).
    factor: f64,
    /// "x" (times) or "%" (a share).
    unit: &'static str,
}

const fn ratio(name: &'static str, num: &'static str, den: &'static str) -> RatioDef {
    RatioDef {
        name,
        label: "",
        num,
        den,
        factor: 1.0,
        unit: "x",
    }
}

/// The ratios reported, each from the paired runs of its two probes.
const RATIOS: &[RatioDef] = &[
    RatioDef {
        label: "ring round trip / atomic ping-pong",
        ..ratio("ring/atomic rtt", "rtt:ring", "rtt:atomic")
    },
    RatioDef {
        label: "ring round trip / rtrb round trip",
        ..ratio("ring/rtrb rtt", "rtt:ring", "rtt:rtrb")
    },
    RatioDef {
        label: "iceoryx2 round trip / ring round trip (the ring's speed-up)",
        ..ratio("iceoryx2/ring rtt", "rtt:iceoryx2", "rtt:ring")
    },
    RatioDef {
        label: "ring one way / line ring one way",
        ..ratio("ring/atomic one way", "one-way:ring", "one-way:atomic")
    },
    RatioDef {
        label: "bulk A → B / memcpy",
        ..ratio("bulk a-to-b/memcpy", "bulk:a-to-b", "bulk:memcpy")
    },
    RatioDef {
        label: "bulk A → B, read unchecked / memcpy",
        ..ratio(
            "bulk a-to-b-unchecked/memcpy",
            "bulk:a-to-b-unchecked",
            "bulk:memcpy",
        )
    },
    RatioDef {
        label: "bulk A → B, two in flight / memcpy",
        ..ratio(
            "bulk a-to-b-pipelined/memcpy",
            "bulk:a-to-b-pipelined",
            "bulk:memcpy",
        )
    },
    RatioDef {
        label: "bulk one thread / memcpy",
        ..ratio("bulk one-thread/memcpy", "bulk:one-thread", "bulk:memcpy")
    },
    RatioDef {
        label: "bulk one thread, read unchecked / memcpy",
        ..ratio(
            "bulk one-thread-unchecked/memcpy",
            "bulk:one-thread-unchecked",
            "bulk:memcpy",
        )
    },
    RatioDef {
        label: "checksum / memcpy",
        ..ratio("checksum/memcpy", "bulk:checksum", "bulk:memcpy")
    },
    RatioDef {
        label: "the two checksums' share of lend + read + reclaim, one thread",
        factor: 2.0,
        unit: "%",
        ..ratio("checksum share", "bulk:one-thread", "bulk:checksum")
    },
    RatioDef {
        label: "lend's checksum's share of lend + read_unchecked + reclaim",
        unit: "%",
        ..ratio(
            "checksum share unchecked",
            "bulk:one-thread-unchecked",
            "bulk:checksum",
        )
    },
];

/// Everything the paired rounds measured.
#[derive(Debug, Serialize)]
pub struct Paired {
    /// Rounds (each probe runs once per round).
    pub rounds: usize,
    /// Length of one probe's run, milliseconds (its warm-up not counted).
    pub run_ms: u64,
    /// Samples per run; a run's value is their median.
    pub batches: usize,
    /// Warm-up before each run, milliseconds.
    pub warmup_ms: u64,
    /// Bytes of the bulk buffer.
    pub bulk_bytes: usize,
    /// One series per probe.
    pub series: Vec<Series>,
    /// The ratios, from paired runs.
    pub ratios: Vec<Ratio>,
    /// Share (0..=1) of all cores' time other processes took during the rounds.
    pub others: Option<f64>,
    /// Wall time of the rounds, seconds.
    pub seconds: f64,
}

/// One probe's values, one per round.
#[derive(Debug, Serialize)]
pub struct Series {
    /// Short name.
    pub name: String,
    /// What it is.
    pub label: String,
    /// Unit of the values.
    pub unit: String,
    /// Spread of the values over the rounds (`None`: no run succeeded).
    pub spread: Option<Spread>,
    /// Each round's value (the median of its run's samples), `None` where the run failed.
    pub values: Vec<Option<f64>>,
    /// Why runs failed.
    pub errors: Vec<String>,
}

/// A ratio from paired runs.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// Short name.
    pub name: String,
    /// What it is.
    pub label: String,
    /// The two series, numerator first.
    pub of: [String; 2],
    /// "x" (times) or "%" (a share, 0..=1 in the values).
    pub unit: String,
    /// Spread of the paired ratios (`None`: no round had both).
    pub spread: Option<Spread>,
    /// Each round's ratio where both runs succeeded.
    pub values: Vec<f64>,
}

impl Paired {
    /// A ratio by name, if both of its series were measured.
    pub fn ratio(&self, name: &str) -> Option<&Ratio> {
        self.ratios.iter().find(|r| r.name == name)
    }

    /// A series by name.
    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }
}

/// Runs `rounds` rounds of `probes`, each run as `plan` says (one run), alternating the order.
pub fn measure(plan: &Plan, rounds: usize, bulk_bytes: usize, probes: &[Probe]) -> Paired {
    let started = std::time::Instant::now();
    let before = crate::load::Ticks::now();
    let mut values = vec![Vec::with_capacity(rounds); probes.len()];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); probes.len()];
    eprint!("paired rounds ");
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..probes.len()).collect()
        } else {
            (0..probes.len()).rev().collect()
        };
        let mut this_round = vec![None; probes.len()];
        for i in order {
            let p = &probes[i];
            match (p.run)(plan) {
                Ok(m) => this_round[i] = m.runs.first().map(|r| p.unit.value(r.median())),
                Err(e) if !errors[i].contains(&e) => errors[i].push(e),
                Err(_) => {}
            }
        }
        for (series, value) in values.iter_mut().zip(this_round) {
            series.push(value);
        }
        eprint!("{} ", round + 1);
    }
    let others = before
        .zip(crate::load::Ticks::now())
        .and_then(|(b, a)| b.others_since(&a));
    eprintln!(
        "  others took {}",
        others.map_or("?".into(), |o| format!("{:.0}%", o * 100.0))
    );
    let series: Vec<Series> = probes
        .iter()
        .zip(values)
        .zip(errors)
        .map(|((p, values), errors)| Series {
            name: p.name.into(),
            label: p.label.clone(),
            unit: p.unit.name().into(),
            spread: Spread::of(values.iter().flatten().copied()),
            values,
            errors,
        })
        .collect();
    let ratios = RATIOS
        .iter()
        .filter_map(|d| {
            let find = |n| series.iter().find(|s: &&Series| s.name == n);
            let (num, den) = (find(d.num)?, find(d.den)?);
            let values: Vec<f64> = num
                .values
                .iter()
                .zip(&den.values)
                .filter_map(|(n, d)| Some(n.as_ref()? / d.as_ref()?))
                .map(|r| r * d.factor)
                .collect();
            Some(Ratio {
                name: d.name.into(),
                label: d.label.into(),
                of: [d.num.into(), d.den.into()],
                unit: d.unit.into(),
                spread: Spread::of(values.iter().copied()),
                values,
            })
        })
        .collect();
    Paired {
        rounds,
        run_ms: plan.budget.as_millis() as u64,
        batches: plan.batches,
        warmup_ms: plan.warmup.as_millis() as u64,
        bulk_bytes,
        series,
        ratios,
        others,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Samples;

    fn probe(name: &'static str, unit: Unit, value: f64) -> Probe {
        Probe {
            name,
            label: name.into(),
            unit,
            run: Box::new(move |_| {
                Ok(Measured {
                    runs: vec![Samples::new(vec![value])],
                    per_run: 1,
                    per_batch: 1,
                })
            }),
        }
    }

    #[test]
    fn ratios_come_from_the_same_round() {
        let plan = Plan {
            runs: 1,
            batches: 1,
            warmup: std::time::Duration::ZERO,
            budget: std::time::Duration::from_millis(1),
            max_per_run: 1,
        };
        let probes = [
            probe("rtt:atomic", Unit::Ns, 100.0),
            probe("rtt:ring", Unit::Ns, 250.0),
            probe("bulk:memcpy", Unit::GBs(1000), 100.0),
            probe("bulk:one-thread", Unit::GBs(1000), 400.0),
            probe("bulk:checksum", Unit::GBs(1000), 100.0),
        ];
        let p = measure(&plan, 3, 1000, &probes);
        let r = p.ratio("ring/atomic rtt").unwrap();
        assert_eq!((r.values.len(), r.spread.unwrap().median), (3, 2.5));
        assert!(p.ratio("ring/rtrb rtt").is_none(), "rtrb was not measured");
        assert_eq!(
            p.series("bulk:memcpy").unwrap().spread.unwrap().median,
            10.0
        );
        assert_eq!(
            p.ratio("bulk one-thread/memcpy")
                .unwrap()
                .spread
                .unwrap()
                .median,
            0.25
        );
        // Two checksums of 100 ns in a 400 ns lend + read + reclaim: half the time.
        assert_eq!(
            p.ratio("checksum share").unwrap().spread.unwrap().median,
            0.5
        );
    }
}

//! Medians and percentiles.

use serde::Serialize;

/// Samples of one run, sorted.
#[derive(Clone, Debug)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Sorts `v` (NaNs last).
    pub fn new(mut v: Vec<f64>) -> Samples {
        v.sort_by(f64::total_cmp);
        Samples(v)
    }

    /// The `p`-th percentile (0..=100), linearly interpolated; NaN when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.0, p)
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let at = p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let lo = at.floor() as usize;
            let hi = at.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
        }
    }
}

/// A figure: the median of the runs' medians, and the 10th and 90th percentiles of all
/// samples of all runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    /// Median of the run medians.
    pub median: f64,
    /// 10th percentile of all samples.
    pub p10: f64,
    /// 90th percentile of all samples.
    pub p90: f64,
}

impl Summary {
    /// Summarises runs of samples.
    pub fn of(runs: &[Samples]) -> Summary {
        let medians = Samples::new(runs.iter().map(Samples::median).collect());
        let all = Samples::new(runs.iter().flat_map(|r| r.0.iter().copied()).collect());
        Summary {
            median: medians.median(),
            p10: all.percentile(10.0),
            p90: all.percentile(90.0),
        }
    }
}

/// The spread of one value per round (or per pair): median, 10th and 90th percentiles,
/// smallest and largest. A bimodal series shows as a p10 and a p90 far apart.
#[derive(Clone, Copy, Debug, Serialize)]
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

impl Spread {
    /// The spread of `values` (NaNs ignored); `None` when none is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let s = Samples::new(values.into_iter().filter(|v| !v.is_nan()).collect());
        Some(Spread {
            median: s.median(),
            p10: s.percentile(10.0),
            p90: s.percentile(90.0),
            min: *s.0.first()?,
            max: *s.0.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let s = Samples::new(vec![4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!(s.median(), 3.0);
        assert_eq!(s.percentile(0.0), 1.0);
        assert_eq!(s.percentile(100.0), 5.0);
        assert_eq!(s.percentile(10.0), 1.4);
        assert!(Samples::new(vec![]).median().is_nan());
    }

    #[test]
    fn summary_takes_the_median_of_run_medians() {
        let runs = [
            Samples::new(vec![1.0, 2.0, 3.0]),
            Samples::new(vec![10.0, 20.0, 30.0]),
            Samples::new(vec![5.0]),
        ];
        let s = Summary::of(&runs);
        assert_eq!(s.median, 5.0);
        assert_eq!(s.p10, 1.6);
    }

    #[test]
    fn spread_ignores_nans_and_shows_both_modes() {
        let s = Spread::of([90.0, 470.0, f64::NAN, 88.0, 480.0, 92.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (92.0, 88.0, 480.0));
        assert!(s.p10 < 90.0 && s.p90 > 470.0, "{s:?}");
        assert!(Spread::of([f64::NAN]).is_none());
    }
}

//! Summaries of repeated runs: median with min and max, and ratios taken within one round.

use serde::Serialize;

/// A figure from repeated runs.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order, for the JSON.
    pub runs: Vec<f64>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                runs: values.to_vec(),
            };
        }
        Self {
            median: median_sorted(&sorted),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            runs: values.to_vec(),
        }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.median.is_nan() {
            return "n/a".into();
        }
        format!(
            "{:.*} ({:.*}–{:.*})",
            digits, self.median, digits, self.min, digits, self.max
        )
    }

    /// Per-run ratios `self / base`, run by run: both sides were measured in the same round.
    pub fn ratio_to(&self, base: &Summary) -> Summary {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .zip(base.runs.iter())
            .map(|(a, b)| a / b)
            .collect();
        Summary::of(&ratios)
    }
}

pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Median and a percentile of raw samples (nanoseconds, microseconds...).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

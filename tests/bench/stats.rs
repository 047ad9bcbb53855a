//! Percentiles and the spread of ratios across rounds.

use std::time::Duration;

/// The latency of one contender over all its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// How many runs.
    pub samples: usize,
}

/// p50 and p99 (nearest rank) of `samples`.
#[must_use]
pub fn latency(samples: &[Duration]) -> Latency {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Latency {
        p50: percentile(&sorted, 50.0),
        p99: percentile(&sorted, 99.0),
        samples: sorted.len(),
    }
}

/// The `p`th percentile of sorted `samples` (nearest rank); zero when empty.
#[must_use]
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

/// A ratio measured once per round: its median and range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Median over rounds.
    pub median: f64,
    /// Smallest round.
    pub min: f64,
    /// Largest round.
    pub max: f64,
}

/// The median and range of per-round values; NaN when there are none.
#[must_use]
pub fn spread(values: &[f64]) -> Spread {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted.get(middle).copied().unwrap_or(f64::NAN)
    } else {
        let low = sorted.get(middle - 1).copied().unwrap_or(f64::NAN);
        let high = sorted.get(middle).copied().unwrap_or(f64::NAN);
        f64::midpoint(low, high)
    };
    Spread {
        median,
        min: sorted.first().copied().unwrap_or(f64::NAN),
        max: sorted.last().copied().unwrap_or(f64::NAN),
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.median.is_nan() {
            return f.write_str("–");
        }
        write!(
            f,
            "{} ({}–{})",
            ratio(self.median),
            ratio(self.min),
            ratio(self.max)
        )
    }
}

/// A ratio with sensible precision: `1.18×`, `37.5×`, `1210×`.
#[must_use]
pub fn ratio(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}×")
    } else if value < 100.0 {
        format!("{value:.1}×")
    } else {
        format!("{value:.0}×")
    }
}

/// A duration in microseconds with sensible precision.
#[must_use]
pub fn micros(duration: Duration) -> String {
    let us = duration.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let latency = latency(&samples);
        assert_eq!(latency.p50, Duration::from_micros(50));
        assert_eq!(latency.p99, Duration::from_micros(99));
        assert_eq!(latency.samples, 100);
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(
            percentile(&[Duration::from_micros(7)], 99.0),
            Duration::from_micros(7)
        );
    }

    #[test]
    fn spreads_take_the_median_and_range() {
        let spread = spread(&[3.0, 1.0, 2.0, f64::NAN]);
        assert!((spread.median - 2.0).abs() < f64::EPSILON);
        assert!((spread.min - 1.0).abs() < f64::EPSILON);
        assert!((spread.max - 3.0).abs() < f64::EPSILON);
        assert!((super::spread(&[1.0, 2.0]).median - 1.5).abs() < f64::EPSILON);
        assert!(super::spread(&[]).median.is_nan());
    }
}

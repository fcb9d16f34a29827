//! Small numeric helpers that runtime code (tracking, streaming, profiling) and evaluation share: box IoU,
//! one-to-one assignment, percentiles. A leaf: it imports nothing from the rest of the crate.

pub mod assign;

use serde::{Deserialize, Serialize};

/// IoU of two `[x1, y1, x2, y2]` boxes; 0 when the union is empty.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let union = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0) + (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentiles and the mean of a list of milliseconds.
pub fn percentiles(values: &[f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v.get(rank - 1).copied().unwrap_or(0.0)
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Percentiles {
        p50_ms: round(at(0.50)),
        p95_ms: round(at(0.95)),
        p99_ms: round(at(0.99)),
        mean_ms: round(v.iter().sum::<f64>() / v.len() as f64),
    }
}

/// Relative width of a histogram bucket: percentiles come back within 1 % of the exact nearest-rank value.
const BUCKET_GROWTH: f64 = 1.01;
/// The smallest and largest latencies a histogram resolves (ms); values outside land in the end buckets.
const HIST_MIN_MS: f64 = 0.01;
const HIST_MAX_MS: f64 = 1.0e6;

/// A latency histogram of fixed size (log-spaced buckets 1 % wide from 0.01 ms to 1000 s, ~15 kB), so a stream
/// that runs for weeks keeps its percentiles without keeping every frame's latency.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    sum_ms: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let buckets = ((HIST_MAX_MS / HIST_MIN_MS).ln() / BUCKET_GROWTH.ln()).ceil() as usize + 1;
        LatencyHistogram { counts: vec![0; buckets], total: 0, sum_ms: 0.0 }
    }
}

impl LatencyHistogram {
    fn bucket(ms: f64) -> usize {
        if ms.is_nan() || ms <= HIST_MIN_MS {
            return 0;
        }
        ((ms / HIST_MIN_MS).ln() / BUCKET_GROWTH.ln()).ceil() as usize
    }

    /// Records one latency; allocation-free.
    pub fn record(&mut self, ms: f64) {
        let last = self.counts.len().saturating_sub(1);
        if let Some(c) = self.counts.get_mut(Self::bucket(ms).min(last)) {
            *c += 1;
        }
        self.total += 1;
        self.sum_ms += if ms.is_finite() { ms } else { 0.0 };
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Nearest-rank percentiles (bucket upper bounds, within 1 %) and the exact mean.
    pub fn percentiles(&self) -> Percentiles {
        if self.total == 0 {
            return Percentiles::default();
        }
        let at = |p: f64| {
            let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
            let mut seen = 0u64;
            for (i, c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return HIST_MIN_MS * BUCKET_GROWTH.powi(i as i32);
                }
            }
            HIST_MAX_MS
        };
        let round = |x: f64| (x * 100.0).round() / 100.0;
        Percentiles {
            p50_ms: round(at(0.50)),
            p95_ms: round(at(0.95)),
            p99_ms: round(at(0.99)),
            mean_ms: round(self.sum_ms / self.total as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_gives_the_exact_percentiles_within_one_percent_in_fixed_memory() {
        let values: Vec<f64> = (0..5000).map(|i| 3.0 + ((i * 7919) % 1000) as f64 * 0.731 + (i % 13) as f64).collect();
        let mut h = LatencyHistogram::default();
        let size = h.counts.len();
        for v in &values {
            h.record(*v);
        }
        assert_eq!((h.count(), h.counts.len()), (5000, size), "no growth with the number of frames");
        let (exact, approx) = (percentiles(&values), h.percentiles());
        for (e, a) in [(exact.p50_ms, approx.p50_ms), (exact.p95_ms, approx.p95_ms), (exact.p99_ms, approx.p99_ms)] {
            assert!(a >= e - 0.01 && a <= e * 1.0101 + 0.01, "{a} vs exact {e}");
        }
        assert!((approx.mean_ms - exact.mean_ms).abs() < 0.011);
        // out-of-range and odd values are counted, never lost
        let mut h = LatencyHistogram::default();
        for v in [0.0, -1.0, f64::NAN, 5.0e7] {
            h.record(v);
        }
        assert_eq!(h.count(), 4);
        assert_eq!(LatencyHistogram::default().percentiles(), Percentiles::default());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms, p.mean_ms), (50.0, 95.0, 99.0, 50.5));
        assert_eq!(percentiles(&[7.0]).p99_ms, 7.0);
    }
}

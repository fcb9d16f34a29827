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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms, p.mean_ms), (50.0, 95.0, 99.0, 50.5));
        assert_eq!(percentiles(&[7.0]).p99_ms, 7.0);
    }
}

//! Latency profiles: per-stage percentiles over frames measured after warm-up, end-to-end time, frame rate,
//! memory and allocations, in the layout of the `targets/*.baseline.json` files.

use crate::scene::ModelProvider;
use crate::timing::{Stage, Timings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    pub stage: Stage,
    pub model: Option<String>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

pub use crate::math::{percentiles, Percentiles};

/// Per-stage statistics over frames: a stage recorded several times in one frame (describe, merge) counts as
/// its sum for that frame; stages keep the order in which they first appear.
pub fn stage_stats(frames: &[Timings]) -> Vec<StageStats> {
    let mut order: Vec<(Stage, Option<crate::timing::ModelName>)> = Vec::new();
    let mut per_frame: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for t in frames {
        let mut sums: BTreeMap<usize, f64> = BTreeMap::new();
        for s in &t.0 {
            let key = (s.stage, s.model.clone());
            let i = match order.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    order.push(key);
                    order.len() - 1
                }
            };
            *sums.entry(i).or_insert(0.0) += s.ms;
        }
        for (i, ms) in sums {
            per_frame.entry(i).or_default().push(ms);
        }
    }
    order
        .into_iter()
        .enumerate()
        .map(|(i, (stage, model))| {
            let p = percentiles(per_frame.get(&i).map(Vec::as_slice).unwrap_or_default());
            StageStats { stage, model: model.as_deref().map(str::to_string), p50_ms: p.p50_ms, p95_ms: p.p95_ms, p99_ms: p.p99_ms, mean_ms: p.mean_ms }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    pub detectors: Vec<String>,
    pub segmenter: Option<String>,
    pub discovery: bool,
    pub self_check: bool,
}

/// One profile run, in the layout of `targets/*.baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    pub target: String,
    pub machine: String,
    pub backend: String,
    /// fp32, fp16 or int8.
    #[serde(default)]
    pub precision: String,
    /// What ran each model (backend, execution provider, threads).
    #[serde(default)]
    pub providers: Vec<ModelProvider>,
    /// Threads asked for (`--threads`, or `@N` in `--compare`); none: the backend's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    pub build: String,
    pub suite: Suite,
    pub images: String,
    pub warmup: usize,
    pub frames: usize,
    pub stages: Vec<StageStats>,
    pub end_to_end: Percentiles,
    pub fps: f64,
    pub peak_rss_kb: u64,
    /// Resident memory the process gained while this configuration's models loaded.
    #[serde(default)]
    pub load_rss_kb: Option<u64>,
    pub allocations_per_frame_outside_engines: Option<f64>,
    /// Rust heap allocations during engine runs (ONNX Runtime's own C++ allocations are not seen by the counter).
    pub allocations_per_frame_in_engines: Option<f64>,
}

/// One stage of one configuration against the same stage of the first (baseline) configuration, measured in the
/// same run on the same frames (round-robin, so machine noise falls on all alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRatio {
    pub stage: String,
    pub model: Option<String>,
    pub baseline_p50_ms: f64,
    pub p50_ms: f64,
    /// p50 of this configuration over p50 of the baseline (below 1: faster).
    pub p50_ratio: f64,
    pub mean_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub variant: String,
    pub stages: Vec<StageRatio>,
    pub end_to_end: StageRatio,
}

/// Several configurations side by side: each one's report, then each one against the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileComparison {
    pub reports: Vec<ProfileReport>,
    pub comparisons: Vec<Comparison>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        ((a / b) * 1000.0).round() / 1000.0
    } else {
        f64::NAN
    }
}

/// Compares each report with the first, stage by stage (stages matched by stage and model; stages only one side
/// has are left out) and end to end.
pub fn compare(reports: &[ProfileReport]) -> Vec<Comparison> {
    let Some(base) = reports.first() else { return Vec::new() };
    let label = |r: &ProfileReport| match r.threads {
        Some(n) => format!("{}/{}@{n}", r.backend, r.precision),
        None => format!("{}/{}", r.backend, r.precision),
    };
    reports
        .iter()
        .skip(1)
        .map(|r| {
            let stages = r
                .stages
                .iter()
                .filter_map(|s| {
                    let b = base.stages.iter().find(|b| b.stage == s.stage && b.model == s.model)?;
                    Some(StageRatio {
                        stage: s.stage.name().to_string(),
                        model: s.model.clone(),
                        baseline_p50_ms: b.p50_ms,
                        p50_ms: s.p50_ms,
                        p50_ratio: ratio(s.p50_ms, b.p50_ms),
                        mean_ratio: ratio(s.mean_ms, b.mean_ms),
                    })
                })
                .collect();
            Comparison {
                baseline: label(base),
                variant: label(r),
                stages,
                end_to_end: StageRatio {
                    stage: "end-to-end".into(),
                    model: None,
                    baseline_p50_ms: base.end_to_end.p50_ms,
                    p50_ms: r.end_to_end.p50_ms,
                    p50_ratio: ratio(r.end_to_end.p50_ms, base.end_to_end.p50_ms),
                    mean_ratio: ratio(r.end_to_end.mean_ms, base.end_to_end.mean_ms),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::StageTime;

    #[test]
    fn repeated_stages_in_a_frame_are_summed_and_models_kept_apart() {
        let st = |stage, model: Option<&str>, ms| StageTime { stage, model: model.map(Into::into), ms };
        let frames = vec![
            Timings(vec![st(Stage::Inference, Some("a"), 10.0), st(Stage::Describe, None, 1.0), st(Stage::Describe, None, 2.0)]),
            Timings(vec![st(Stage::Inference, Some("a"), 20.0), st(Stage::Inference, Some("b"), 5.0), st(Stage::Describe, None, 4.0)]),
        ];
        let s = stage_stats(&frames);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].model.as_deref(), s[0].mean_ms), (Some("a"), 15.0));
        assert_eq!((s[1].stage, s[1].mean_ms), (Stage::Describe, 3.5));
        assert_eq!((s[2].model.as_deref(), s[2].p50_ms), (Some("b"), 5.0));
    }
}

//! Per-stage timings of one frame, typed (no string-keyed bags).

use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Decode,
    Preprocess,
    Inference,
    Postprocess,
    Discovery,
    Merge,
    Stuff,
    Describe,
    Caption,
    SelfCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: Stage,
    /// The model this time belongs to, for per-model stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timings(pub Vec<StageTime>);

impl Timings {
    pub fn record(&mut self, stage: Stage, model: Option<&str>, since: Instant) {
        self.0.push(StageTime { stage, model: model.map(str::to_string), ms: since.elapsed().as_secs_f64() * 1e3 });
    }

    pub fn total_ms(&self) -> f64 {
        self.0.iter().map(|s| s.ms).sum()
    }
}

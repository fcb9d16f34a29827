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
    Masks,
    Describe,
    Caption,
    SelfCheck,
}

impl Stage {
    /// The name used in reports (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Preprocess => "preprocess",
            Stage::Inference => "inference",
            Stage::Postprocess => "postprocess",
            Stage::Discovery => "discovery",
            Stage::Merge => "merge",
            Stage::Stuff => "stuff",
            Stage::Masks => "masks",
            Stage::Describe => "describe",
            Stage::Caption => "caption",
            Stage::SelfCheck => "self-check",
        }
    }
}

/// A model's name as timings carry it: shared, so recording a stage copies a pointer, not the name.
pub type ModelName = std::sync::Arc<str>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: Stage,
    /// The model this time belongs to, for per-model stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelName>,
    pub ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timings(pub Vec<StageTime>);

impl Timings {
    pub fn record(&mut self, stage: Stage, model: Option<&ModelName>, since: Instant) {
        self.0.push(StageTime { stage, model: model.cloned(), ms: since.elapsed().as_secs_f64() * 1e3 });
    }

    /// Records the time since `since` minus what was recorded after `mark` (the models run inside a stage,
    /// which keep their own entries), so no time is counted twice.
    pub fn record_excluding(&mut self, stage: Stage, since: Instant, mark: usize) {
        let inner: f64 = self.0.get(mark..).map(|s| s.iter().map(|t| t.ms).sum()).unwrap_or(0.0);
        let ms = (since.elapsed().as_secs_f64() * 1e3 - inner).max(0.0);
        self.0.push(StageTime { stage, model: None, ms });
    }

    /// A position to pass to [`Timings::record_excluding`].
    pub fn mark(&self) -> usize {
        self.0.len()
    }

    pub fn total_ms(&self) -> f64 {
        self.0.iter().map(|s| s.ms).sum()
    }
}

#[cfg(test)]
mod stage_name_tests {
    use super::Stage;

    #[test]
    fn names_are_the_serialised_names() {
        for s in [Stage::Decode, Stage::Preprocess, Stage::Inference, Stage::Postprocess, Stage::Discovery, Stage::Merge, Stage::Stuff, Stage::Masks, Stage::Describe, Stage::Caption, Stage::SelfCheck] {
            assert_eq!(serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).as_deref(), Some(s.name()));
        }
    }
}

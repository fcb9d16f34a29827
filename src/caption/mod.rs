//! Captions and the formats they are written in.

pub mod overlay;
pub mod panoptic_out;
pub mod text;

use crate::geometry::BoxF;
use serde::{Deserialize, Serialize};

/// One SA-Pancap prediction entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaPancapPrediction {
    pub image_path: String,
    pub model_response: String,
}

/// One scored detection kept for COCO evaluation (the whole ranking, down to low scores).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredBox {
    /// COCO category id (the dataset's own id, not the contiguous index).
    pub category_id: u32,
    pub bbox: BoxF,
    pub score: f32,
}

/// One COCO detection result, as pycocotools' `loadRes` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoResult {
    pub image_id: u64,
    pub category_id: u32,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f32; 4],
    pub score: f32,
}

impl CocoResult {
    pub fn new(image_id: u64, b: &ScoredBox) -> Self {
        let r = |v: f32| (v * 100.0).round() / 100.0;
        let [x, y, w, h] = b.bbox.to_xywh();
        CocoResult { image_id, category_id: b.category_id, bbox: [r(x), r(y), r(w), r(h)], score: (b.score * 1e5).round() / 1e5 }
    }
}

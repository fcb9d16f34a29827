//! Dataset evaluation, host-side (feature `eval`, on by default; a device build can leave it out): COCO files
//! and the mapping of their category names to caption tags (this file), COCO bbox mAP (`map`), panoptic quality
//! (`pq`) and caption-text metrics (`captions`). PancapScore is not here: it lives in `crate::score`, which the
//! on-device self-check needs. Runtime code (pipeline, stream, tracking) imports nothing from this module.

pub mod captions;
pub mod map;
pub mod pq;

pub use map::{coco_map, MapReport};

use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CocoAnnotation {
    pub image_id: u64,
    pub category_id: u32,
    pub bbox: [f32; 4],
    #[serde(default)]
    pub iscrowd: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CocoCategory {
    pub id: u32,
    pub name: String,
}

/// The parts of a COCO instances file that evaluation needs.
#[derive(Debug, Clone, Deserialize)]
pub struct CocoInstances {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoAnnotation>,
    pub categories: Vec<CocoCategory>,
}

/// Reads a JSON file of the given kind; errors name the file and say what it was expected to be.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, EvalError> {
    let err = |reason: String| EvalError::Read { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not a {what}: {e}")))
}

impl CocoInstances {
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        read_json(path, "COCO instances file")
    }
}

/// A COCO `[x, y, w, h]` pixel box as a normalised `[x1, y1, x2, y2]`, clamped to the image.
pub fn normalised_xywh(bbox: [f32; 4], image: &CocoImage) -> [f64; 4] {
    let (w, h) = (f64::from(image.width.max(1)), f64::from(image.height.max(1)));
    let [x, y, bw, bh] = bbox.map(f64::from);
    [x / w, y / h, (x + bw) / w, (y + bh) / h].map(|v| v.clamp(0.0, 1.0))
}

/// The reference entities of one image for PancapScore: every non-crowd annotation, tagged with its
/// category's official name, its box normalised by the image size.
pub fn reference_content(gt: &CocoInstances, image: &CocoImage) -> crate::score::Content {
    let names: HashMap<u32, &str> = gt.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
    let annotations = gt.annotations.iter().filter(|a| a.image_id == image.id).map(|a| (a.category_id, a.bbox, a.iscrowd));
    reference_entities(&names, annotations, image)
}

/// Reference entities from `(category id, COCO box, iscrowd)` annotations of one image: crowd regions dropped,
/// official names without COCO panoptic's suffixes, boxes normalised.
pub fn reference_entities(
    names: &HashMap<u32, &str>,
    annotations: impl Iterator<Item = (u32, [f32; 4], u8)>,
    image: &CocoImage,
) -> crate::score::Content {
    let entities = annotations
        .filter(|(_, _, crowd)| *crowd == 0)
        .filter_map(|(category, bbox, _)| {
            let name = names.get(&category)?;
            let bbox = normalised_xywh(bbox, image);
            Some(crate::score::ScoredEntity { tag: crate::caption::panoptic_out::plain_name(name), bbox: Some(bbox) })
        })
        .collect();
    crate::score::Content { entities, ..Default::default() }
}


//! The perception suite (PancapEngine analogue): several detectors, each `preprocess → engine.run →
//! postprocess`, merged by redundancy removal; an extra-instance discovery pass on tiles; and a semantic
//! segmenter whose unclaimed stuff pixels become stuff regions.

pub mod decode;
pub mod masks;
pub mod merge;
pub mod ocr;
pub mod pose;
pub mod preprocess;
pub mod resize;
pub mod stuff;

use crate::engine::{Engine, EngineError, Tensor};
use crate::models::{DecoderManifest, LabelSet, Manifest, Role};
use crate::timing::{ModelName, Stage, Timings};
use decode::{DecodeParams, Detection};
use image::RgbImage;
use merge::{absorb, Hit, Instance, MergeParams, Pass};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use stuff::LabelMap;

#[derive(Debug, thiserror::Error)]
pub enum PerceiveError {
    #[error(transparent)]
    Engine(Box<EngineError>),
    #[error("unexpected model output: {0}")]
    BadOutput(String),
    #[error("unsupported model input: {0}")]
    UnsupportedInput(String),
    #[error("resizing {0}")]
    Resize(String),
    #[error("model {name} cannot serve as a {want}: {reason}")]
    WrongModel { name: String, want: &'static str, reason: String },
}

impl From<EngineError> for PerceiveError {
    fn from(e: EngineError) -> Self {
        PerceiveError::Engine(Box::new(e))
    }
}

/// Thresholds of one detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectParams {
    /// Candidates below this class score are dropped (low, so COCO evaluation sees the full ranking).
    pub score_threshold: f32,
    pub max_candidates: usize,
    /// Detections kept after NMS.
    pub max_detections: usize,
    /// Map scores through the manifest's calibration (off: the model's own scores, as the calibration fit needs).
    #[serde(default = "yes")]
    pub calibrated: bool,
}

fn yes() -> bool {
    true
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams { score_threshold: 0.01, max_candidates: 2000, max_detections: 100, calibrated: true }
    }
}

/// A COCO detector: its manifest, an engine running it, and thresholds.
pub struct Detector {
    manifest: Manifest,
    engine: Box<dyn Engine>,
    pub params: DetectParams,
    /// The manifest's name, shared with every timing recorded for it.
    label: ModelName,
    /// The preprocessing scratch and the model's input tensors, refilled in place each run.
    prep: preprocess::Preprocessor,
    /// The decoded candidates of the last run, cut down in place by NMS to its detections: kept across runs so
    /// that decoding allocates only while the list grows to its largest.
    cands: Vec<Detection>,
}

/// Every input tensor a model takes for one image, in its spec's order (the image; DETR-style models also
/// take the original size), with the letterbox that maps its outputs back.
pub fn model_inputs(rgb: &RgbImage, manifest: &Manifest) -> Result<(Vec<Tensor>, crate::geometry::Letterbox), PerceiveError> {
    let mut prep = preprocess::Preprocessor::new();
    let (_, lb) = prep.model_inputs(resize::RgbView::whole(rgb), manifest)?;
    Ok((prep.take_inputs(), lb))
}

impl Detector {
    pub fn new(manifest: Manifest, engine: Box<dyn Engine>, params: DetectParams) -> Result<Self, PerceiveError> {
        let wrong = |reason: &str| PerceiveError::WrongModel {
            name: manifest.name.clone(),
            want: "detector",
            reason: reason.to_string(),
        };
        if manifest.role != Role::Detector
            || matches!(
                manifest.decoder,
                DecoderManifest::Argmax
                | DecoderManifest::UpsampleArgmax { .. }
                | DecoderManifest::Probability { .. }
                | DecoderManifest::Movenet { .. }
            )
        {
            return Err(wrong("its manifest does not describe a detector"));
        }
        if manifest.labels != LabelSet::Coco80 {
            return Err(wrong("the suite merges COCO-80 detectors only"));
        }
        let label = ModelName::from(manifest.name.as_str());
        Ok(Detector { manifest, engine, params, label, prep: preprocess::Preprocessor::new(), cands: Vec::new() })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The name as timings carry it.
    pub fn label(&self) -> &ModelName {
        &self.label
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn backend(&self) -> &'static str {
        self.engine.backend()
    }

    /// What runs this model (backend and execution provider).
    pub fn provider(&self) -> String {
        self.engine.provider()
    }

    /// Runs the detector on a whole image: preprocess → engine → decode → per-class NMS → the manifest's score
    /// calibration, if any (so every detector's score is the chance that the detection is right).
    pub fn detect(&mut self, rgb: &RgbImage, timings: &mut Timings) -> Result<Vec<Detection>, PerceiveError> {
        Ok(self.detect_view(resize::RgbView::whole(rgb), timings)?.to_vec())
    }

    /// [`Self::detect`] into a list the caller keeps across frames (cleared first): no allocation once it and
    /// the detector's candidate list have grown to their largest.
    pub fn detect_into(&mut self, rgb: &RgbImage, timings: &mut Timings, out: &mut Vec<Detection>) -> Result<(), PerceiveError> {
        out.clear();
        out.extend_from_slice(self.detect_view(resize::RgbView::whole(rgb), timings)?);
        Ok(())
    }

    /// [`Self::detect`] on a view of an image (a crop read in place); boxes in the view's pixels. The detections
    /// are lent from the detector's own list, valid until its next run.
    pub fn detect_view(&mut self, rgb: resize::RgbView<'_>, timings: &mut Timings) -> Result<&[Detection], PerceiveError> {
        let name = &self.label;
        let t = Instant::now();
        let (inputs, lb) = self.prep.model_inputs(rgb, &self.manifest)?;
        timings.record(Stage::Preprocess, Some(name), t);

        let t = Instant::now();
        let outputs = self.engine.run(inputs)?;
        timings.record(Stage::Inference, Some(name), t);

        let t = Instant::now();
        let p = DecodeParams {
            score_threshold: self.params.score_threshold,
            max_candidates: self.params.max_candidates,
            num_classes: LabelSet::Coco80.labels().len(),
        };
        let dets = &mut self.cands;
        let iou = match &self.manifest.decoder {
            DecoderManifest::Yolox { strides, nms_iou } => {
                let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("yolox: no output".into()))?;
                decode::decode_yolox(out, strides, &lb, &p, dets)?;
                *nms_iou
            }
            DecoderManifest::Gfl { strides, reg_max, nms_iou } => {
                decode::decode_gfl(&outputs, strides, *reg_max, &lb, &p, dets)?;
                *nms_iou
            }
            DecoderManifest::Detr { nms_iou, .. } => {
                decode::decode_detr(&outputs, &p, dets)?;
                *nms_iou
            }
            DecoderManifest::Argmax
                | DecoderManifest::UpsampleArgmax { .. }
                | DecoderManifest::Probability { .. }
                | DecoderManifest::Movenet { .. } => {
                return Err(PerceiveError::BadOutput("segmenter used as detector".into()))
            }
        };
        let (w, h) = (rgb.width() as f32, rgb.height() as f32);
        let calibration = self.manifest.calibration.as_ref().filter(|_| self.params.calibrated);
        decode::nms(dets, iou, self.params.max_detections);
        for d in dets.iter_mut() {
            d.bbox = d.bbox.clamp(w, h);
            d.score = calibration.map_or(d.score, |c| c.apply(d.score));
        }
        dets.retain(|d| d.bbox.area() > 0.0);
        timings.record(Stage::Postprocess, Some(name), t);
        Ok(dets)
    }
}

/// The semantic segmenter used for stuff.
pub struct Segmenter {
    manifest: Manifest,
    engine: Box<dyn Engine>,
    label: ModelName,
    prep: preprocess::Preprocessor,
}

impl Segmenter {
    pub fn new(manifest: Manifest, engine: Box<dyn Engine>) -> Result<Self, PerceiveError> {
        if manifest.role != Role::Segmenter
            || !matches!(manifest.decoder, DecoderManifest::Argmax | DecoderManifest::UpsampleArgmax { .. })
        {
            return Err(PerceiveError::WrongModel {
                name: manifest.name.clone(),
                want: "segmenter",
                reason: "its manifest does not describe an ArgMax segmenter".into(),
            });
        }
        let label = ModelName::from(manifest.name.as_str());
        Ok(Segmenter { manifest, engine, label, prep: preprocess::Preprocessor::new() })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn labels(&self) -> LabelSet {
        self.manifest.labels
    }

    /// What runs this model (backend and execution provider).
    pub fn provider(&self) -> String {
        self.engine.provider()
    }

    pub fn segment(&mut self, rgb: &RgbImage, timings: &mut Timings) -> Result<LabelMap, PerceiveError> {
        let name = &self.label;
        let t = Instant::now();
        let (tensor, lb) = self.prep.preprocess(resize::RgbView::whole(rgb), &self.manifest.input)?;
        timings.record(Stage::Preprocess, Some(name), t);
        let t = Instant::now();
        let outputs = self.engine.run(std::slice::from_ref(tensor))?;
        timings.record(Stage::Inference, Some(name), t);
        let t = Instant::now();
        let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("segmenter: no output".into()))?;
        let map = stuff::decode_labels(out, &self.manifest.decoder, &lb, rgb.width(), rgb.height())?;
        timings.record(Stage::Postprocess, Some(name), t);
        Ok(map)
    }
}

/// Extra-instance discovery: the primary detector looks again at overlapping tiles, where small objects are
/// larger relative to its input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryParams {
    /// Tiles per side.
    pub grid: u32,
    /// Fraction of a tile shared with its neighbour.
    pub overlap: f32,
    /// Tile detections below this score are ignored.
    pub min_score: f32,
    /// New instances from tiles must be at most this fraction of the image (larger ones are fragments).
    pub max_area_fraction: f32,
    /// Images smaller than this (longest side, pixels) are not tiled.
    pub min_image_side: u32,
}

impl Default for DiscoveryParams {
    fn default() -> Self {
        DiscoveryParams { grid: 2, overlap: 0.25, min_score: 0.2, max_area_fraction: 0.04, min_image_side: 320 }
    }
}

/// Tile rectangles `(x, y, w, h)` covering the image in a `grid × grid` layout with overlap, row by row
/// (computed as they are taken: nothing is allocated).
pub fn tiles(width: u32, height: u32, grid: u32, overlap: f32) -> impl Iterator<Item = (u32, u32, u32, u32)> {
    let grid = grid.max(1);
    let g = grid as f32;
    // one axis: the tile's length and the start of tile `i`
    let axis = move |len: u32| {
        let tile = (len as f32 / (g - (g - 1.0) * overlap.clamp(0.0, 0.9))).ceil().min(len as f32) as u32;
        let step = if grid > 1 { (len - tile) as f32 / (g - 1.0) } else { 0.0 };
        (tile, step)
    };
    let ((tw, sx), (th, sy)) = (axis(width), axis(height));
    (0..grid).flat_map(move |j| {
        (0..grid).map(move |i| ((i as f32 * sx).round() as u32, (j as f32 * sy).round() as u32, tw, th))
    })
}

/// Runs the discovery pass with `detector` (suite index `index`) and adds its findings to `instances`.
/// Returns how many new instances it created.
pub fn discover(
    detector: &mut Detector,
    index: usize,
    rgb: &RgbImage,
    instances: &mut Vec<Instance>,
    params: &DiscoveryParams,
    merge: &MergeParams,
    timings: &mut Timings,
) -> Result<usize, PerceiveError> {
    let (w, h) = (rgb.width(), rgb.height());
    if w.max(h) < params.min_image_side || params.grid < 2 {
        return Ok(0);
    }
    let t = Instant::now();
    let image_area = (w as f32) * (h as f32);
    let mut created = 0;
    // the tiles' own stage times are not kept (discovery's total is): each tile's are taken back off the list
    let mark = timings.mark();
    for (tx, ty, tw, th) in tiles(w, h, params.grid, params.overlap) {
        let dets = detector.detect_view(resize::RgbView::crop(rgb, tx, ty, tw, th), timings)?;
        let edge = 2.0;
        for d in dets.iter().filter(|d| d.score >= params.min_score) {
            let b = d.bbox;
            // a box cut by an inner tile edge is a fragment
            let cut = (tx > 0 && b.x1 <= edge)
                || (ty > 0 && b.y1 <= edge)
                || (tx + tw < w && b.x2 >= tw as f32 - edge)
                || (ty + th < h && b.y2 >= th as f32 - edge);
            if cut {
                continue;
            }
            let bbox = b.translate(tx as f32, ty as f32);
            let small = bbox.area() <= params.max_area_fraction * image_area;
            let inside_same = instances.iter().any(|i| i.class == d.class && bbox.covered_by(&i.bbox) >= 0.7);
            let hit = Hit { detector: index, pass: Pass::Tiles, class: d.class, score: d.score, bbox };
            if absorb(instances, hit, merge, small && !inside_same) {
                created += 1;
            }
        }
        timings.0.truncate(mark);
    }
    timings.record(Stage::Discovery, Some(detector.label()), t);
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_with_overlap() {
        let t: Vec<_> = tiles(640, 480, 2, 0.25).collect();
        assert_eq!(t.len(), 4);
        for &(x, y, w, h) in &t {
            assert!(x + w <= 640 && y + h <= 480);
        }
        assert_eq!(t[0].0, 0);
        assert_eq!(t[3].0 + t[3].2, 640, "last tile reaches the right edge");
        assert_eq!(t[3].1 + t[3].3, 480, "and the bottom edge");
        assert!(t[1].0 < t[0].2, "neighbours overlap");
    }
}

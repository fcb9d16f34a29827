//! One frame through the whole suite: detectors → merge → discovery → stuff → attributes, relations, global
//! state → caption. Configuration is a plain serde value; the CLI builds it, the library never sees clap.

use crate::score::ScoredEntity;
use crate::caption::{text::region_caption, text::write_caption, ScoredBox};
use crate::engine::{self, BackendConfig, ModelSpec, Precision};
use crate::geometry::BoxF;
use crate::models::{self, LabelSet, Manifest, ManifestError, OcrManifest, ProvisionError, Role};
use crate::perceive::merge::{Instance, MergeParams, Pass};
use crate::perceive::masks::{self, BoxMask, MaskSource, PersonSegmenter};
use crate::perceive::ocr::{OcrParams, TextLine, TextReader};
use crate::perceive::pose::{self as pose_model, Pose, PoseEstimator, PoseMode, PoseParams};
use crate::perceive::stuff::{stuff_regions, StuffParams, StuffPixels};
use crate::perceive::decode::Detection;
use crate::perceive::{self, DetectParams, Detector, DiscoveryParams, PerceiveError, Segmenter};
use crate::scene::attributes::{dominant_colour, Illuminant, Region};
use crate::scene::plausible::{plausible_stuff, SuppressedStuff, ThingView};
use crate::scene::pose::{classify, Keypoint, PoseInfo, PoseSource, PostureParams};
use crate::scene::relations::{relate, RelationParams};
use crate::scene::{
    global::global_state, Alternative, DiscoveryReport, Entity, ModelProvider, PanopticCaption, Placement, SourceVote,
    Truncation, MAX_ALTERNATIVES, MAX_SOURCES, SCHEMA_VERSION,
};
use crate::source::{DecodeLimits, Frame};
use crate::timing::{Stage, Timings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// The default suite: two different real detectors and the ADE20K-32 stuff segmenter, chosen by measurement
/// (README, "Choosing the suite": DEIMv2-femto + PicoDet-S leads YOLOX-nano + PicoDet-S on mAP, tag and location
/// F1, and is faster on tract). The first detector is discovery's.
pub const DEFAULT_DETECTORS: &[&str] = &["deimv2_hgnetv2_femto_coco", "picodet_s_416_coco"];
/// The float graph pancap derives from the mirror's uint8 segmenter (see models/deeplabv3_mnv2_ade20k32_f32.toml):
/// faster on tract, which runs the uint8 graph's quantize/dequantize nodes as separate passes.
pub const DEFAULT_SEGMENTER: &str = "deeplabv3_mnv2_ade20k32_f32";
pub const DEFAULT_PERSON_SEGMENTER: &str = "selfie_person_256";
pub const DEFAULT_TEXT_READER: &str = "ppocr_v4";
pub const DEFAULT_POSE: &str = "movenet_multipose_lightning";

/// ADE20K-32 classes whose pixels, inside a detected thing's box, are that thing (mask refinement). Not
/// "person": on coco-panoptic-dev its person pixels inside riders' boxes (horse and rider run together at 512²)
/// scored below plain ellipses (things PQ 23.26 against 27.30), so people without a person-segmenter mask
/// keep the ellipse.
const ADE_FOR_THING: &[(&str, &str)] = &[
    ("car", "car"),
    ("chair", "chair"),
    ("armchair", "chair"),
    ("sofa", "couch"),
    ("armchair", "couch"),
    ("bed", "bed"),
    ("table", "dining table"),
    ("plant", "potted plant"),
];

fn default_person_segmenter() -> Option<String> {
    Some(DEFAULT_PERSON_SEGMENTER.to_string())
}

fn default_pose() -> Option<String> {
    Some(DEFAULT_POSE.to_string())
}

fn default_text_reader() -> Option<String> {
    Some(DEFAULT_TEXT_READER.to_string())
}

fn default_max_person_masks() -> usize {
    16
}

/// ADE20K-32 classes that are COCO things (left to the detectors, never stuff).
const ADE_THINGS: &[&str] = &["other", "person", "car", "chair", "bed", "sofa", "armchair"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    pub models_dir: PathBuf,
    /// Backend, precision and backend options for every model of the suite.
    #[serde(default)]
    pub backend: BackendConfig,
    /// Detector manifests by name, primary first (the primary also runs extra-instance discovery).
    pub detectors: Vec<String>,
    /// Stuff segmenter manifest, or none to caption things only.
    pub segmenter: Option<String>,
    /// Person segmenter manifest giving people masks, or none (people then take the stuff segmenter's person
    /// pixels, or their box's ellipse).
    #[serde(default = "default_person_segmenter")]
    pub person_segmenter: Option<String>,
    /// People masked by the person segmenter per frame, largest first (the rest fall back).
    #[serde(default = "default_max_person_masks")]
    pub max_person_masks: usize,
    /// Pose model manifest giving people keypoints, posture and actions, or none.
    #[serde(default = "default_pose")]
    pub pose: Option<String>,
    #[serde(default)]
    pub pose_params: PoseParams,
    #[serde(default)]
    pub posture: PostureParams,
    /// Text reader (PP-OCR) manifest, or none to read no text.
    #[serde(default = "default_text_reader")]
    pub text_reader: Option<String>,
    #[serde(default)]
    pub ocr: OcrParams,
    /// Extra-instance discovery on tiles, or none.
    pub discovery: Option<DiscoveryParams>,
    pub detect: DetectParams,
    pub merge: MergeParams,
    /// Entities below this merged score are kept for COCO evaluation but not captioned.
    pub caption_threshold: f32,
    /// How segmenter pixels become stuff regions (least area, specks, scattered pieces).
    #[serde(default)]
    pub stuff: StuffParams,
    pub relations: RelationParams,
    /// Most thing entities in one caption (the rest are counted as truncated).
    pub max_things: usize,
    pub decode_limits: DecodeLimits,
    /// Threads for the stuff segmenter, the text reader, the person segmenter and the pose model (none: the
    /// backend's `threads`): in a stream they run on threads of their own beside the detectors, which keep the
    /// rest of the cores.
    #[serde(default)]
    pub slow_stage_threads: Option<usize>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            models_dir: models::default_models_dir(),
            backend: BackendConfig::default(),
            detectors: DEFAULT_DETECTORS.iter().map(|s| s.to_string()).collect(),
            segmenter: Some(DEFAULT_SEGMENTER.to_string()),
            person_segmenter: default_person_segmenter(),
            max_person_masks: default_max_person_masks(),
            text_reader: default_text_reader(),
            pose: default_pose(),
            pose_params: PoseParams::default(),
            posture: PostureParams::default(),
            ocr: OcrParams::default(),
            discovery: Some(DiscoveryParams::default()),
            detect: DetectParams::default(),
            merge: MergeParams::default(),
            caption_threshold: 0.5,
            stuff: StuffParams::default(),
            relations: RelationParams::default(),
            max_things: 40,
            slow_stage_threads: None,
            decode_limits: DecodeLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Engine(Box<engine::EngineError>),
    #[error(transparent)]
    Perceive(#[from] PerceiveError),
    #[error("{origin}: {source}")]
    Frame { origin: String, source: Box<PerceiveError> },
    #[error("{origin}: the thread running the stuff segmenter and the text reader died: {message}")]
    SideStages { origin: String, message: String },
    #[error("the suite needs at least one detector")]
    NoDetector,
    #[error(transparent)]
    Int8(#[from] models::quantized::Int8Error),
    #[error("model {0} is a {1:?}, not usable here")]
    WrongRole(String, Role),
}

impl From<engine::EngineError> for PipelineError {
    fn from(e: engine::EngineError) -> Self {
        PipelineError::Engine(Box::new(e))
    }
}

/// What a model gave the same person on the last frame it ran: the item of the box that best overlaps `b`, at
/// IoU ≥ 0.5, with that box.
fn same_person<'a, T>(carried: &'a [(BoxF, T)], b: &BoxF) -> Option<(&'a BoxF, &'a T)> {
    carried
        .iter()
        .map(|(ob, item)| (ob.iou(b), ob, item))
        .filter(|(iou, _, _)| *iou >= 0.5)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, ob, item)| (ob, item))
}

/// The mask the person segmenter gave the same person (`same_person`) on the last frame it ran, moved and scaled
/// into `b` (nearest neighbour), or None.
fn carried_mask(carried: &[(BoxF, BoxMask)], b: &BoxF, width: u32, height: u32) -> Option<BoxMask> {
    let (old, mask) = same_person(carried, b)?;
    let (sx, sy) = (old.width() / b.width().max(1e-3), old.height() / b.height().max(1e-3));
    Some(BoxMask::from_fn(b, width, height, |x, y| {
        let ox = old.x1 + (x as f32 + 0.5 - b.x1) * sx;
        let oy = old.y1 + (y as f32 + 0.5 - b.y1) * sy;
        ox >= 0.0 && oy >= 0.0 && mask.get(ox as u32, oy as u32)
    }))
}

/// A rider whose keypoints were read sits astride the mount, whatever the legs show (they hang like a standing
/// person's): the posture becomes sitting, its evidence marked as riding.
fn seat_riders(entities: &mut [Entity], relations: &[crate::scene::Relation]) {
    for r in relations.iter().filter(|r| r.predicate == crate::scene::Predicate::Riding) {
        let posture = entities.iter_mut().find(|e| e.id == r.subject).and_then(|e| e.attributes.posture.as_mut());
        if let Some(p) = posture {
            p.posture = crate::scene::pose::Posture::Sitting;
            p.evidence.riding = true;
        }
    }
}

/// The pose the pose model gave the same person (`same_person`) on the last frame it ran, moved and scaled with
/// the box, or None.
fn carried_pose(carried: &[(BoxF, Pose)], b: &BoxF) -> Option<Pose> {
    let (old, pose) = same_person(carried, b)?;
    let (sx, sy) = (b.width() / old.width().max(1e-3), b.height() / old.height().max(1e-3));
    let moved = |x: f32, y: f32| (b.x1 + (x - old.x1) * sx, b.y1 + (y - old.y1) * sy);
    let mut out = pose.clone();
    for k in out.keypoints.iter_mut() {
        (k.x, k.y) = moved(k.x, k.y);
    }
    let (x1, y1) = moved(pose.bbox.x1, pose.bbox.y1);
    let (x2, y2) = moved(pose.bbox.x2, pose.bbox.y2);
    out.bbox = BoxF::new(x1, y1, x2, y2);
    Some(out)
}

/// The model file for the configured precision: the provisioned file, or for INT8 the verified file
/// `pancap quantize` wrote for a detector (models the mirror ships quantized run as shipped; the 0.45 MB person
/// segmenter, which `pancap quantize` does not take, and models pancap derives, run as provisioned at every
/// precision).
fn spec_for(m: &Manifest, cfg: &PipelineConfig) -> Result<ModelSpec, PipelineError> {
    let mut spec = m.model_spec(&cfg.models_dir);
    if cfg.backend.precision == Precision::Int8 && !m.quantized && m.derived.is_none() && m.role == Role::Detector {
        spec.path = models::quantized::resolve(&cfg.models_dir, &m.name, &m.file, &m.sha256)?;
    }
    Ok(spec)
}

/// Verifies the text reader's files by sha256 and loads it on `backend`. It runs its FP32 files at every
/// precision (`pancap quantize` makes INT8 detectors only); its bucket engines load on first use.
pub fn load_text_reader(name: &str, models_dir: &std::path::Path, backend: &BackendConfig, params: OcrParams) -> Result<TextReader, PipelineError> {
    load_text_reader_with(name, models_dir, backend, params, std::sync::Arc::new(engine::load))
}

/// `load_text_reader` with the engines loaded by `loader`.
pub fn load_text_reader_with(
    name: &str,
    models_dir: &std::path::Path,
    backend: &BackendConfig,
    params: OcrParams,
    loader: engine::Loader,
) -> Result<TextReader, PipelineError> {
    let manifest = OcrManifest::by_name(name).ok_or_else(|| {
        let known: Vec<String> = OcrManifest::all().unwrap_or_default().into_iter().map(|m| m.name).collect();
        ManifestError::Unknown(name.into(), known.join(", "))
    })??;
    backend.validate()?;
    for r in models::verify(&manifest.files(), models_dir) {
        r?;
    }
    let backend = backend.clone();
    let loader: crate::perceive::ocr::EngineLoader = Box::new(move |spec| loader(&backend, spec));
    Ok(TextReader::load(manifest, models_dir, params, loader)?)
}

/// A stuff label map computed elsewhere (a segmenter on its own thread), with what is needed to read it.
#[derive(Debug, Clone)]
pub struct StuffMap {
    pub model: String,
    pub labels: LabelSet,
    pub map: crate::perceive::stuff::LabelMap,
}

impl StuffMap {
    /// The segmenter's label map of `rgb`, with its model name and labels.
    pub fn segment(seg: &mut Segmenter, rgb: &image::RgbImage, timings: &mut Timings) -> Result<Self, PerceiveError> {
        let map = seg.segment(rgb, timings)?;
        Ok(StuffMap { model: seg.name().to_string(), labels: seg.labels(), map })
    }
}

/// Where a frame's stuff comes from.
#[derive(Debug, Clone, Copy)]
pub enum StuffInput<'a> {
    /// Run the pipeline's own segmenter on this frame (when it has one).
    Run,
    /// Use a label map from an earlier frame (carried between slow-stage runs); ignored if its size differs.
    Given(&'a StuffMap),
    /// No stuff for this frame.
    Skip,
}

/// Where a frame's text comes from.
#[derive(Debug, Clone, Copy)]
pub enum TextInput<'a> {
    /// Run the pipeline's own text reader on this frame (when it has one).
    Run,
    /// Place lines read on an earlier frame (carried between reader runs, like stuff).
    Given(&'a [TextLine]),
    /// No text for this frame.
    Skip,
}

/// Per-frame choices of the stream path: slow stages on their own cadence.
#[derive(Debug, Clone, Copy)]
pub struct FrameOptions<'a> {
    pub stuff: StuffInput<'a>,
    pub discovery: bool,
    pub text: TextInput<'a>,
    /// Run the person segmenter on this frame's people; when false, each person takes the mask the segmenter
    /// gave the same person (the best-overlapping box, IoU ≥ 0.5) on the last frame it ran, moved and scaled to
    /// the new box.
    pub person_masks: bool,
    /// Run the pose model on this frame's people; when false, each person takes the keypoints of the same person
    /// (as for masks) on the last frame it ran, moved and scaled to the new box.
    pub pose: bool,
}

impl Default for FrameOptions<'_> {
    fn default() -> Self {
        FrameOptions { stuff: StuffInput::Run, discovery: true, text: TextInput::Run, person_masks: true, pose: true }
    }
}

/// What one frame yields: the caption and the full detection ranking for COCO evaluation.
#[derive(Debug, Clone)]
pub struct FrameResult {
    pub caption: PanopticCaption,
    pub ranking: Vec<ScoredBox>,
    /// The lines the text reader read on this frame (None when it did not run), for carrying to later frames.
    pub text_lines: Option<Vec<TextLine>>,
}

pub struct Pipeline {
    detectors: Vec<Detector>,
    segmenter: Option<Segmenter>,
    person_segmenter: Option<PersonSegmenter>,
    pose: Option<PoseEstimator>,
    text_reader: Option<TextReader>,
    cfg: PipelineConfig,
    providers: std::sync::Arc<[ModelProvider]>,
    /// The person segmenter's masks from the last frame it ran on, with the boxes they were made for.
    people_masks: Vec<(BoxF, BoxMask)>,
    /// The pose model's poses from the last frame it ran on, with the person boxes they were matched to.
    people_poses: Vec<(BoxF, Pose)>,
    /// The text reader's name once it was moved to a thread of its own (lines it read are still placed here).
    text_reader_name: Option<String>,
    /// What the people models were, once moved to a thread of their own (what they see is still placed here).
    people_elsewhere: PeopleElsewhere,
    /// Each detector's full-frame detections of the current frame, kept across frames (one list per detector).
    detections: Vec<Vec<Detection>>,
    /// Each thing's mask of the current frame with where it came from, kept across frames (the pixel buffers
    /// are refilled in place).
    thing_masks: Vec<(BoxMask, MaskSource)>,
    /// The frame's pixels claimed by things (stuff takes the rest), kept across frames.
    claimed: Vec<bool>,
}

/// The people models moved out of the pipeline: whether there was a person segmenter, and the pose model's
/// keypoint threshold when there was one.
#[derive(Debug, Clone, Copy, Default)]
struct PeopleElsewhere {
    masks: bool,
    pose_visible: Option<f32>,
}

/// The people models — person segmenter and pose model — moved out of the pipeline to run on a thread of their
/// own (a stream's people worker): they look at a frame's person boxes and what they see is handed back with
/// [`Pipeline::set_people_seen`], to be carried with each person's box as between runs in the pipeline.
pub struct PeopleModels {
    segmenter: Option<PersonSegmenter>,
    pose: Option<PoseEstimator>,
    max_person_masks: usize,
    pose_params: PoseParams,
}

/// What the people models saw on one frame: each mask and pose with the person box it was made for (None: that
/// model did not run).
#[derive(Debug, Clone, Default)]
pub struct PeopleSeen {
    pub masks: Option<Vec<(BoxF, BoxMask)>>,
    pub poses: Option<Vec<(BoxF, Pose)>>,
}

impl PeopleModels {
    /// The person segmenter (when `masks`) on the largest people and the pose model (when `pose`) for the people
    /// in `people` (boxes in frame pixels), as the pipeline runs them on a frame.
    pub fn see(&mut self, rgb: &image::RgbImage, people: &[BoxF], masks: bool, pose: bool, timings: &mut Timings) -> Result<PeopleSeen, PerceiveError> {
        let masks = match self.segmenter.as_mut().filter(|_| masks) {
            Some(ps) => {
                let largest = largest_people(people.iter().copied().enumerate(), self.max_person_masks);
                let boxes: Vec<BoxF> = largest.iter().filter_map(|&(i, _)| people.get(i).copied()).collect();
                let seen = segment_people(ps, rgb, &boxes, timings)?;
                Some(boxes.into_iter().zip(seen).filter_map(|(b, m)| m.map(|m| (b, m))).collect())
            }
            None => None,
        };
        let poses = match self.pose.as_mut().filter(|_| pose) {
            Some(estimator) => {
                let found = estimate_poses(estimator, &self.pose_params, rgb, people, timings)?;
                Some(people.iter().zip(found).filter_map(|(b, f)| f.map(|(p, _)| (*b, p))).collect())
            }
            None => None,
        };
        Ok(PeopleSeen { masks, poses })
    }
}

/// The `max` largest of `people` (index, box), largest first.
fn largest_people(people: impl Iterator<Item = (usize, BoxF)>, max: usize) -> Vec<(usize, f32)> {
    let mut people: Vec<(usize, f32)> = people.map(|(i, b)| (i, b.area())).collect();
    people.sort_by(|a, b| b.1.total_cmp(&a.1));
    people.truncate(max);
    people
}

/// The person segmenter on each box: its mask where the model's agrees with the box, in the order given.
fn segment_people(ps: &mut PersonSegmenter, rgb: &image::RgbImage, boxes: &[BoxF], timings: &mut Timings) -> Result<Vec<Option<BoxMask>>, PerceiveError> {
    let mut out = Vec::with_capacity(boxes.len());
    for b in boxes {
        let m = ps.segment(rgb, b, timings)?;
        out.push(masks::agrees(&m).then_some(m));
    }
    Ok(out)
}

/// The pose model on the frame and/or on people's widened boxes (as `p.mode` says), each pose given to the person
/// whose box (`boxes`, frame pixels) it fits best: per person, its pose and where it came from, or None.
fn estimate_poses(
    estimator: &mut PoseEstimator,
    p: &PoseParams,
    rgb: &image::RgbImage,
    boxes: &[BoxF],
    timings: &mut Timings,
) -> Result<Vec<Option<(Pose, PoseSource)>>, PerceiveError> {
    let (w, h) = (rgb.width(), rgb.height());
    let visible = estimator.keypoint_score();
    let mut found: Vec<Option<(Pose, PoseSource)>> = vec![None; boxes.len()];
    if boxes.is_empty() {
        return Ok(found);
    }
    if p.mode != PoseMode::Crops {
        let poses = estimator.estimate(rgb, None, timings)?;
        for (slot, m) in found.iter_mut().zip(pose_model::match_poses(boxes, &poses, p.min_fit)) {
            *slot = m.and_then(|j| poses.get(j)).map(|pose| (pose.clone(), PoseSource::Frame));
        }
    }
    if p.mode != PoseMode::Frame {
        let mut todo: Vec<usize> = (0..boxes.len())
            .filter(|&i| found.get(i).is_some_and(|f| f.as_ref().is_none_or(|(pose, _)| pose.visible(visible) < p.min_visible)))
            .filter(|&i| boxes.get(i).is_some_and(|b| b.height() >= p.min_crop_height))
            .collect();
        todo.sort_by(|&a, &b| {
            let area = |i: usize| boxes.get(i).map_or(0.0, BoxF::area);
            area(b).total_cmp(&area(a))
        });
        todo.truncate(p.max_crops);
        let group = if p.mosaic { pose_model::MOSAIC } else { 1 };
        for chunk in todo.chunks(group) {
            let regions: Vec<BoxF> =
                chunk.iter().filter_map(|&i| boxes.get(i)).map(|b| pose_model::crop_region(b, p.crop_context, w, h)).collect();
            let per_region = if p.mosaic {
                estimator.estimate_mosaic(rgb, &regions, timings)?
            } else {
                let mut v = Vec::with_capacity(regions.len());
                for r in &regions {
                    v.push(estimator.estimate(rgb, Some(r), timings)?);
                }
                v
            };
            for (&i, poses) in chunk.iter().zip(per_region) {
                let Some(b) = boxes.get(i) else { continue };
                let best = poses.into_iter().filter(|q| q.fit(b) >= p.min_fit).max_by(|x, y| x.fit(b).total_cmp(&y.fit(b)));
                if let (Some(best), Some(slot)) = (best, found.get_mut(i)) {
                    if slot.as_ref().is_none_or(|(old, _)| best.visible(visible) > old.visible(visible)) {
                        *slot = Some((best, PoseSource::Crop));
                    }
                }
            }
        }
    }
    Ok(found)
}

impl Pipeline {
    /// Verifies every model of the configured suite by sha256, then loads it on the configured backend.
    pub fn load(cfg: PipelineConfig) -> Result<Self, PipelineError> {
        Self::load_with(cfg, std::sync::Arc::new(engine::load))
    }

    /// `load` with every model loaded by `loader` (backend equivalence wraps each engine in a mirror).
    pub fn load_with(cfg: PipelineConfig, loader: engine::Loader) -> Result<Self, PipelineError> {
        let mut manifests = Vec::new();
        for name in &cfg.detectors {
            let m = Manifest::by_name(name)?;
            if m.role != Role::Detector {
                return Err(PipelineError::WrongRole(m.name, m.role));
            }
            manifests.push(m);
        }
        let seg = cfg.segmenter.as_deref().map(Manifest::by_name).transpose()?;
        manifests.extend(seg.iter().cloned());
        let person = cfg.person_segmenter.as_deref().map(Manifest::by_name).transpose()?;
        manifests.extend(person.iter().cloned());
        let pose = cfg.pose.as_deref().map(Manifest::by_name).transpose()?;
        manifests.extend(pose.iter().cloned());
        let files: Vec<_> = manifests.iter().flat_map(Manifest::files).collect();
        for r in models::verify(&files, &cfg.models_dir) {
            r?;
        }
        let mut detectors = Vec::new();
        for m in manifests.iter().filter(|m| m.role == Role::Detector) {
            let e = loader(&cfg.backend, spec_for(m, &cfg)?)?;
            detectors.push(Detector::new(m.clone(), e, cfg.detect)?);
        }
        let slow_backend = BackendConfig { threads: cfg.slow_stage_threads.or(cfg.backend.threads), ..cfg.backend.clone() };
        let segmenter = match seg {
            Some(m) if m.role == Role::Segmenter => {
                let e = loader(&slow_backend, spec_for(&m, &cfg)?)?;
                Some(Segmenter::new(m, e)?)
            }
            Some(m) => return Err(PipelineError::WrongRole(m.name, m.role)),
            None => None,
        };
        let person_segmenter = match person {
            Some(m) if m.role == Role::PersonSegmenter => {
                let e = loader(&slow_backend, spec_for(&m, &cfg)?)?;
                Some(PersonSegmenter::new(m, e)?)
            }
            Some(m) => return Err(PipelineError::WrongRole(m.name, m.role)),
            None => None,
        };
        let pose = match pose {
            Some(m) if m.role == Role::Pose => {
                let e = loader(&slow_backend, spec_for(&m, &cfg)?)?;
                Some(PoseEstimator::new(m, e)?)
            }
            Some(m) => return Err(PipelineError::WrongRole(m.name, m.role)),
            None => None,
        };
        let text_reader =
            cfg.text_reader.as_deref().map(|name| load_text_reader_with(name, &cfg.models_dir, &slow_backend, cfg.ocr, loader.clone())).transpose()?;
        Ok(Self::from_parts(detectors, segmenter, cfg)?
            .with_person_segmenter(person_segmenter)
            .with_pose(pose)
            .with_text_reader(text_reader))
    }

    /// Builds a pipeline from already loaded models (tests use fake engines here).
    pub fn from_parts(
        detectors: Vec<Detector>,
        segmenter: Option<Segmenter>,
        mut cfg: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        if detectors.is_empty() {
            return Err(PipelineError::NoDetector);
        }
        // the fusion divides by the detectors actually in the suite
        cfg.merge.detectors = detectors.len();
        let dets = detectors.iter().map(|d| ModelProvider { model: d.name().to_string(), provider: d.provider() });
        let seg = segmenter.iter().map(|s| ModelProvider { model: s.name().to_string(), provider: s.provider() });
        let providers: Vec<ModelProvider> = dets.chain(seg).collect();
        Ok(Pipeline {
            detectors,
            segmenter,
            person_segmenter: None,
            pose: None,
            text_reader: None,
            cfg,
            providers: providers.into(),
            people_masks: Vec::new(),
            people_poses: Vec::new(),
            text_reader_name: None,
            people_elsewhere: PeopleElsewhere::default(),
            detections: Vec::new(),
            thing_masks: Vec::new(),
            claimed: Vec::new(),
        })
    }

    /// The provider list with `old`'s entry (a model being replaced) dropped and `new`'s (model, provider) added.
    fn swap_provider(&mut self, old: Option<&str>, new: Option<(&str, String)>) {
        let mut providers = self.providers.to_vec();
        providers.retain(|p| old.is_none_or(|name| name != p.model));
        if let Some((model, provider)) = new {
            providers.push(ModelProvider { model: model.to_string(), provider });
        }
        self.providers = providers.into();
    }

    /// Adds (or removes) the text reader.
    pub fn with_text_reader(mut self, reader: Option<TextReader>) -> Self {
        let old = self.text_reader.as_ref().map(|r| r.name().to_string());
        self.swap_provider(old.as_deref(), reader.as_ref().map(|r| (r.name(), r.provider())));
        self.text_reader = reader;
        self
    }

    /// Adds (or removes) the person segmenter that gives people their masks.
    pub fn with_person_segmenter(mut self, person: Option<PersonSegmenter>) -> Self {
        let old = self.person_segmenter.as_ref().map(|s| s.name().to_string());
        self.swap_provider(old.as_deref(), person.as_ref().map(|s| (s.name(), s.provider())));
        self.person_segmenter = person;
        self
    }

    /// Adds (or removes) the pose model that gives people keypoints.
    pub fn with_pose(mut self, pose: Option<PoseEstimator>) -> Self {
        let old = self.pose.as_ref().map(|s| s.name().to_string());
        self.swap_provider(old.as_deref(), pose.as_ref().map(|s| (s.name(), s.provider())));
        self.pose = pose;
        self
    }

    /// Builds every plan the text reader would otherwise build on first use (see `TextReader::build_all_buckets`)
    /// and returns how many it built.
    pub fn build_all_buckets(&mut self) -> Result<usize, PipelineError> {
        Ok(match self.text_reader.as_mut() {
            Some(reader) => reader.build_all_buckets()?,
            None => 0,
        })
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    pub fn backend(&self) -> &'static str {
        self.detectors.first().map(|d| d.backend()).unwrap_or("none")
    }

    /// What runs each model, detectors first.
    pub fn providers(&self) -> &[ModelProvider] {
        &self.providers
    }

    pub fn detector_names(&self) -> Vec<String> {
        self.detectors.iter().map(|d| d.name().to_string()).collect()
    }

    /// Moves the segmenter out (to run it on its own thread); the pipeline then takes stuff as `StuffInput::Given`.
    pub fn take_segmenter(&mut self) -> Option<Segmenter> {
        self.segmenter.take()
    }

    /// Moves the text reader out (to run it on its own thread); the pipeline then takes text as
    /// `TextInput::Given`.
    pub fn take_text_reader(&mut self) -> Option<TextReader> {
        let reader = self.text_reader.take();
        if let Some(r) = &reader {
            self.text_reader_name = Some(r.name().to_string());
        }
        reader
    }

    /// Moves the person segmenter and the pose model out (to run them on their own thread); the pipeline then
    /// carries what they saw, handed back with [`Pipeline::set_people_seen`], with each person's box. None when
    /// the suite has neither.
    pub fn take_people_models(&mut self) -> Option<PeopleModels> {
        let (segmenter, pose) = (self.person_segmenter.take(), self.pose.take());
        if segmenter.is_none() && pose.is_none() {
            return None;
        }
        self.people_elsewhere = PeopleElsewhere { masks: segmenter.is_some(), pose_visible: pose.as_ref().map(PoseEstimator::keypoint_score) };
        Some(PeopleModels { segmenter, pose, max_person_masks: self.cfg.max_person_masks, pose_params: self.cfg.pose_params })
    }

    /// What the people models saw on an earlier frame, carried from now on with each person's box (a model that
    /// did not run leaves what was carried before).
    pub fn set_people_seen(&mut self, seen: PeopleSeen) {
        if let Some(m) = seen.masks {
            self.people_masks = m;
        }
        if let Some(p) = seen.poses {
            self.people_poses = p;
        }
    }

    /// Captions one frame with every stage. `timings` may already hold the decode time of the frame.
    pub fn process(&mut self, frame: &Frame, timings: Timings) -> Result<FrameResult, PipelineError> {
        self.process_with(frame, timings, FrameOptions::default())
    }

    /// Captions one frame; `opts` says whether discovery runs and where stuff and text come from. The stages, in
    /// order: detect and merge (with discovery), things, stuff map, thing masks, stuff regions, text, then the
    /// scene graph and the paragraph. The stuff map and the text reader's lines need only the frame, so when they
    /// run here (and the backend may use more than one thread) they run on a second thread while the detectors run
    /// on this one (their stage times overlap the detectors' and are listed after them); the result is the same as
    /// in order.
    pub fn process_with(&mut self, frame: &Frame, mut timings: Timings, opts: FrameOptions<'_>) -> Result<FrameResult, PipelineError> {
        let frame_err = |source: PerceiveError| PipelineError::Frame { origin: frame.origin.clone(), source: Box::new(source) };
        let rgb = &frame.rgb;
        let (w, h) = (rgb.width(), rgb.height());
        // room for a full suite's stages at once, rather than growing the list several times a frame
        timings.0.reserve(48);

        // The segmenter and the text reader need only the frame: they run on a second thread while the detectors
        // run here, and their results join the frame where the serial order used them.
        let (detected, side) = {
            // only where the suite may use more than one thread (`--threads 1` keeps a frame on one core)
            let beside = self.cfg.backend.threads.unwrap_or_else(engine::default_threads) > 1;
            let seg = self.segmenter.as_mut().filter(|_| beside && matches!(opts.stuff, StuffInput::Run));
            let reader = self.text_reader.as_mut().filter(|_| beside && matches!(opts.text, TextInput::Run));
            let (detectors, cfg, lists) = (&mut self.detectors, &self.cfg, &mut self.detections);
            if seg.is_none() && reader.is_none() {
                // nothing to run beside the detectors: no scope (it allocates its shared state each time)
                (Self::detect_with(detectors, cfg, lists, rgb, opts.discovery, &mut timings), None)
            } else {
                std::thread::scope(|s| {
                    let side = s.spawn(move || {
                        let mut t = Timings(Vec::with_capacity(16));
                        let stuff = seg.map(|seg| StuffMap::segment(seg, rgb, &mut t)).transpose();
                        let lines = reader.map(|r| r.read(rgb, &mut t)).transpose();
                        (stuff, lines, t)
                    });
                    let detected = Self::detect_with(detectors, cfg, lists, rgb, opts.discovery, &mut timings);
                    (detected, Some(side.join()))
                })
            }
        };
        let (instances, discovery_ran) = detected.map_err(frame_err)?;
        let (side_stuff, side_text) = match side {
            Some(Ok((stuff, lines, t))) => {
                timings.0.extend(t.0);
                (stuff.map_err(frame_err)?, lines.map_err(frame_err)?)
            }
            Some(Err(payload)) => {
                return Err(PipelineError::SideStages { origin: frame.origin.clone(), message: crate::stream::panic_message(payload.as_ref()) })
            }
            None => (None, None),
        };
        let ranking = ranking(&instances);
        let (captioned, dropped) = self.to_caption(&instances);
        let mut truncation = Truncation { entities: dropped as u32, ..Truncation::default() };
        let t = Instant::now();
        let mut entities = self.things(&captioned, w, h, &mut truncation);
        timings.record(Stage::Describe, None, t);

        let stuff = self.stuff_map(rgb, side_stuff.as_ref().map_or(opts.stuff, StuffInput::Given), &mut timings).map_err(frame_err)?;
        // colours are named with the frame's light undone
        let light = Illuminant::estimate(rgb);
        let stuff_view = stuff.as_ref().map(|s| (s.labels.labels(), s.map.as_ref()));
        let claimed = self.mask_things(rgb, &mut entities, stuff_view, &light, opts.person_masks, &mut timings).map_err(frame_err)?;
        self.add_poses(rgb, &mut entities, opts.pose, &mut timings).map_err(frame_err)?;
        let stuff_suppressed = match &stuff {
            Some(s) => self.add_stuff(rgb, &mut entities, s, &claimed, &light, &mut truncation, &mut timings),
            None => Vec::new(),
        };
        self.claimed = claimed;
        // lines read beside the detectors are placed as given ones, and returned as read on this frame
        let text = side_text.as_deref().map_or(opts.text, TextInput::Given);
        let read_here = self.add_text(rgb, &mut entities, text, &mut truncation, &mut timings).map_err(frame_err)?;
        let text_lines = side_text.or(read_here);

        // relations, global state and region captions, then the paragraph
        let t = Instant::now();
        let (relations, rel_dropped) = relate(&entities, w, h, &self.cfg.relations);
        truncation.relations = rel_dropped;
        seat_riders(&mut entities, &relations);
        let global = global_state(rgb, &entities);
        // each written straight into its entity (no list of them)
        for i in 0..entities.len() {
            let Some(e) = entities.get(i) else { break };
            let d = region_caption(e, &entities, &relations);
            if let Some(e) = entities.get_mut(i) {
                e.description = d;
            }
        }
        timings.record(Stage::Describe, None, t);
        let t = Instant::now();
        let caption = write_caption(&entities, &relations, &global);
        timings.record(Stage::Caption, None, t);

        let added = entities.iter().filter(|e| e.discovered).count() as u32;
        Ok(FrameResult {
            caption: PanopticCaption {
                schema_version: SCHEMA_VERSION,
                image: frame.origin.clone(),
                width: w,
                height: h,
                entities,
                relations,
                global,
                caption,
                discovery: DiscoveryReport { ran: discovery_ran, added },
                stuff_suppressed,
                truncated: truncation,
                backend: self.backend().into(),
                providers: self.providers.clone(),
                timings_ms: timings,
                self_check: None,
            },
            ranking,
            text_lines,
        })
    }

    /// Every detector on the whole frame, redundancy removal across them, then (when asked) extra-instance
    /// discovery with the primary detector. Returns the instances and whether discovery ran.
    fn detect_with(
        detectors: &mut [Detector],
        cfg: &PipelineConfig,
        lists: &mut Vec<Vec<Detection>>,
        rgb: &image::RgbImage,
        discovery: bool,
        timings: &mut Timings,
    ) -> Result<(Vec<Instance>, bool), PerceiveError> {
        lists.resize_with(detectors.len(), Vec::new);
        for (d, list) in detectors.iter_mut().zip(lists.iter_mut()) {
            d.detect_into(rgb, timings, list)?;
        }
        let t = Instant::now();
        let mut instances = perceive::merge::merge(lists, &cfg.merge);
        timings.record(Stage::Merge, None, t);
        let ran = match (cfg.discovery, detectors.first_mut()) {
            (Some(p), Some(primary)) if discovery => {
                perceive::discover(primary, 0, rgb, &mut instances, &p, &cfg.merge, timings)?;
                let t = Instant::now();
                perceive::merge::consolidate(&mut instances, &cfg.merge);
                timings.record(Stage::Merge, None, t);
                true
            }
            _ => false,
        };
        Ok((instances, ran))
    }

    /// The instances the caption mentions: above the caption threshold, fragments of a stronger same-class box
    /// left out, at most `max_things`; and how many were cut by that bound.
    fn to_caption<'a>(&self, instances: &'a [Instance]) -> (Vec<&'a Instance>, usize) {
        let mut above: Vec<&Instance> = Vec::new();
        for i in instances.iter().filter(|i| i.score >= self.cfg.caption_threshold) {
            if !above.iter().any(|s| is_fragment_of(i, s)) {
                above.push(i);
            }
        }
        let dropped = above.len().saturating_sub(self.cfg.max_things);
        (above.into_iter().take(self.cfg.max_things).collect(), dropped)
    }

    /// The captioned instances as thing entities (ids from 1), with the votes of the detectors that saw them as
    /// their class.
    fn things(&self, captioned: &[&Instance], w: u32, h: u32, truncation: &mut Truncation) -> Vec<Entity> {
        let coco = LabelSet::Coco80.labels();
        let mut entities = Vec::with_capacity(captioned.len());
        for (n, inst) in captioned.iter().enumerate() {
            let mut sources = heapless::Vec::<SourceVote, MAX_SOURCES>::new();
            // the votes for the captioned class: a detector's vote for another class is in the alternatives
            for hit in inst.hits.iter().filter(|h| h.class == inst.class) {
                let name = self.detectors.get(hit.detector).map(|d| d.name()).unwrap_or("unknown");
                truncation.vote(&mut sources, name, hit.pass, hit.score);
            }
            let mut e = Entity::thing(n as u32 + 1, coco.name(inst.class), inst.score, &Placement::of_box(inst.bbox, w, h), sources);
            e.category_id = coco.get(inst.class).map(|l| l.dataset_id);
            e.discovered = inst.discovered();
            for &(class, score) in inst.alternatives.iter().take(MAX_ALTERNATIVES) {
                let tag = truncation.name(coco.name(class));
                if e.alternatives.push(Alternative { tag, score }).is_err() {
                    break; // at most MAX_ALTERNATIVES by the take above
                }
            }
            entities.push(e);
        }
        entities
    }

    /// The frame's stuff label map: segmented now, carried from an earlier frame of the same size, or none.
    fn stuff_map<'a>(&mut self, rgb: &image::RgbImage, input: StuffInput<'a>, timings: &mut Timings) -> Result<Option<FrameStuff<'a>>, PerceiveError> {
        let (w, h) = (rgb.width(), rgb.height());
        Ok(match input {
            StuffInput::Run => match self.segmenter.as_mut() {
                Some(seg) => {
                    let map = seg.segment(rgb, timings)?;
                    Some(FrameStuff { model: seg.name().to_string(), labels: seg.labels(), map: std::borrow::Cow::Owned(map) })
                }
                None => None,
            },
            StuffInput::Given(m) if m.map.width == w && m.map.height == h => {
                Some(FrameStuff { model: m.model.clone(), labels: m.labels, map: std::borrow::Cow::Borrowed(&m.map) })
            }
            StuffInput::Given(_) | StuffInput::Skip => None,
        })
    }

    /// Every thing gets a mask — people from the person segmenter, other things from the stuff segmenter's pixels
    /// of their class where those agree with the box, the rest their box's ellipse — and its colour from it.
    /// Returns the pixels the things claim, which stuff does not get.
    fn mask_things(
        &mut self,
        rgb: &image::RgbImage,
        entities: &mut [Entity],
        stuff: Option<(&crate::models::Labels, &crate::perceive::stuff::LabelMap)>,
        light: &Illuminant,
        run_people: bool,
        timings: &mut Timings,
    ) -> Result<Vec<bool>, PerceiveError> {
        let (w, h) = (rgb.width(), rgb.height());
        let t = Instant::now();
        let mark = timings.mark();
        let mut thing_masks = std::mem::take(&mut self.thing_masks);
        let found = self.thing_masks(rgb, entities, stuff, run_people, timings, &mut thing_masks);
        self.thing_masks = thing_masks;
        found?;
        let mut claimed = std::mem::take(&mut self.claimed);
        claimed.clear();
        claimed.resize(w as usize * h as usize, false);
        for (e, (m, source)) in entities.iter_mut().zip(&self.thing_masks) {
            m.paint_into(&mut claimed, w);
            e.mask = Some(m.to_rle(w, h));
            e.mask_source = Some(*source);
            // a model's mask names the colour of the thing's own pixels; the box core stands in otherwise
            let from_mask = (*source != MaskSource::BoxEllipse).then(|| dominant_colour(rgb, Region::Patch(m), 0.35, light)).flatten();
            e.attributes.colour = from_mask.or_else(|| dominant_colour(rgb, Region::BoxCore(e.bbox()), 0.35, light));
        }
        timings.record_excluding(Stage::Masks, t, mark);
        Ok(claimed)
    }

    /// Stuff regions from the pixels no thing claims, as stuff entities.
    #[allow(clippy::too_many_arguments)]
    fn add_stuff(
        &self,
        rgb: &image::RgbImage,
        entities: &mut Vec<Entity>,
        stuff: &FrameStuff<'_>,
        claimed: &[bool],
        light: &Illuminant,
        truncation: &mut Truncation,
        timings: &mut Timings,
    ) -> Vec<SuppressedStuff> {
        let (w, h) = (rgb.width(), rgb.height());
        let labels = stuff.labels.labels();
        let t = Instant::now();
        let mut suppressed = Vec::new();
        let is_stuff = |c: usize| !ADE_THINGS.contains(&labels.name(c));
        let mut found = stuff_regions(stuff.map.as_ref(), claimed, is_stuff, &self.cfg.stuff);
        let regions = std::mem::take(&mut found.regions);
        let pixels = StuffPixels::new(stuff.map.as_ref(), &found);
        let things: Vec<ThingView<'_>> = entities.iter().map(|e| ThingView { tag: &e.tag, bbox: e.bbox() }).collect();
        let (regions, mut dropped) = plausible_stuff(regions, pixels, |c| labels.name(c), &things);
        let rles = pixels.rles(&regions);
        suppressed.extend(found.dropped.iter().map(|d| SuppressedStuff {
            tag: labels.name(d.class).to_string(),
            area_fraction: d.area_fraction,
            reason: d.reason.into(),
            into: None,
        }));
        suppressed.append(&mut dropped);
        timings.record(Stage::Stuff, None, t);
        let t = Instant::now();
        for (r, rle) in regions.iter().zip(rles) {
            let id = entities.len() as u32 + 1;
            let at = Placement { area_fraction: r.area_fraction, ..Placement::of_box(r.bbox, w, h) };
            let mut e = Entity::stuff(id, labels.name(r.class), &at, source_of(&stuff.model, truncation), rle);
            e.attributes.colour = dominant_colour(rgb, Region::Stuff(pixels, r), 0.35, light);
            entities.push(e);
        }
        timings.record(Stage::Describe, None, t);
        suppressed
    }

    /// Text in the scene, read now or carried: on the thing it lies on, or a text entity of its own. Returns the
    /// lines read on this frame (for carrying to later frames), None when the reader did not run.
    fn add_text(
        &mut self,
        rgb: &image::RgbImage,
        entities: &mut Vec<Entity>,
        input: TextInput<'_>,
        truncation: &mut Truncation,
        timings: &mut Timings,
    ) -> Result<Option<Vec<TextLine>>, PerceiveError> {
        let ran = matches!(input, TextInput::Run);
        let lines: std::borrow::Cow<'_, [TextLine]> = match (input, self.text_reader.as_mut()) {
            (TextInput::Run, Some(reader)) => std::borrow::Cow::Owned(reader.read(rgb, timings)?),
            (TextInput::Given(lines), _) => std::borrow::Cow::Borrowed(lines),
            (TextInput::Run, None) | (TextInput::Skip, _) => return Ok(None),
        };
        let reader_name: &str = match (&self.text_reader, &self.text_reader_name) {
            (Some(r), _) => r.name(),
            (None, Some(name)) => name,
            (None, None) => return Ok(None),
        };
        let t = Instant::now();
        crate::scene::text::place_text(entities, &lines, rgb.width(), rgb.height(), reader_name, truncation);
        timings.record(Stage::Describe, None, t);
        Ok(ran.then(|| lines.into_owned()))
    }

    /// People's keypoints and posture: the pose model on the frame and/or on people's widened boxes (as
    /// `pose_params.mode` says), each pose given to the person whose box it fits best; when `run` is false, each
    /// person takes the keypoints its best-overlapping box had on the last run, moved with the box. People the
    /// model did not find get no keypoints and no posture.
    fn add_poses(&mut self, rgb: &image::RgbImage, entities: &mut [Entity], run: bool, timings: &mut Timings) -> Result<(), PerceiveError> {
        let visible = match (&self.pose, self.people_elsewhere.pose_visible) {
            (Some(estimator), _) => estimator.keypoint_score(),
            (None, Some(v)) => v,
            (None, None) => return Ok(()),
        };
        let (w, h) = (rgb.width(), rgb.height());
        let people: Vec<usize> = entities.iter().enumerate().filter(|(_, e)| e.tag == "person").map(|(i, _)| i).collect();
        let boxes: Vec<BoxF> = people.iter().filter_map(|&i| entities.get(i).map(Entity::bbox)).collect();
        let found: Vec<Option<(Pose, PoseSource)>> = match self.pose.as_mut().filter(|_| run) {
            Some(estimator) => {
                self.people_poses.clear();
                if people.is_empty() {
                    return Ok(());
                }
                let found = estimate_poses(estimator, &self.cfg.pose_params, rgb, &boxes, timings)?;
                for (b, f) in boxes.iter().zip(&found) {
                    if let Some((pose, _)) = f {
                        self.people_poses.push((*b, pose.clone()));
                    }
                }
                found
            }
            None => boxes.iter().map(|b| carried_pose(&self.people_poses, b).map(|pose| (pose, PoseSource::Carried))).collect(),
        };
        let t = Instant::now();
        for (&i, f) in people.iter().zip(found) {
            let (Some(e), Some((pose, source))) = (entities.get_mut(i), f) else { continue };
            e.keypoints = crate::scene::pose::Joint::ALL
                .iter()
                .zip(&pose.keypoints)
                .map(|(&name, k)| Keypoint { name, x: k.x / w.max(1) as f32, y: k.y / h.max(1) as f32, score: k.score })
                .collect();
            e.pose = Some(PoseInfo { score: pose.score, source, visible: pose.visible(visible) as u8, threshold: visible });
            e.attributes.posture = Some(classify(&pose.keypoints, visible, &self.cfg.posture));
        }
        timings.record(Stage::Describe, None, t);
        Ok(())
    }

    /// The mask of each thing entity (all of `entities` are things here), with where it came from, into `out`
    /// (one per entity; the masks already there are refilled in place).
    fn thing_masks(
        &mut self,
        rgb: &image::RgbImage,
        entities: &[Entity],
        stuff: Option<(&crate::models::Labels, &crate::perceive::stuff::LabelMap)>,
        run_people: bool,
        timings: &mut Timings,
        out: &mut Vec<(BoxMask, MaskSource)>,
    ) -> Result<(), PerceiveError> {
        let (w, h) = (rgb.width(), rgb.height());
        // the largest people get the person segmenter (run now, or what it saw carried), up to the configured number
        let people = largest_people(entities.iter().enumerate().filter(|(_, e)| e.tag == "person").map(|(i, e)| (i, e.bbox())), self.cfg.max_person_masks);
        let fresh = match self.person_segmenter.as_mut().filter(|_| run_people) {
            Some(ps) => {
                let boxes: Vec<BoxF> = people.iter().filter_map(|&(i, _)| entities.get(i).map(Entity::bbox)).collect();
                let seen = segment_people(ps, rgb, &boxes, timings)?;
                self.people_masks = boxes.into_iter().zip(&seen).filter_map(|(b, m)| m.clone().map(|m| (b, m))).collect();
                Some(seen)
            }
            None => None,
        };
        let carry = self.person_segmenter.is_some() || self.people_elsewhere.masks;
        out.truncate(entities.len());
        for (i, e) in entities.iter().enumerate() {
            let b = e.bbox();
            if out.len() <= i {
                out.push((BoxMask { x0: 0, y0: 0, w: 0, h: 0, bits: Vec::new() }, MaskSource::BoxEllipse));
            }
            let Some(slot) = out.get_mut(i) else { continue };
            if let Some(rank) = people.iter().position(|(p, _)| *p == i) {
                match &fresh {
                    Some(seen) => {
                        if let Some(Some(m)) = seen.get(rank) {
                            slot.0.clone_from(m);
                            slot.1 = MaskSource::PersonSegmenter;
                            continue;
                        }
                    }
                    None if carry => {
                        if let Some(m) = carried_mask(&self.people_masks, &b, w, h) {
                            *slot = (m, MaskSource::PersonCarried);
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let refined = stuff.and_then(|(labels, map)| {
                let classes: Vec<u8> = ADE_FOR_THING
                    .iter()
                    .filter(|(_, thing)| *thing == e.tag)
                    .filter_map(|(ade, _)| labels.index_of(ade).and_then(|c| u8::try_from(c).ok()))
                    .collect();
                masks::from_label_map(map, &b, &classes)
            });
            match refined {
                Some(m) => *slot = (m, MaskSource::Segmenter),
                None => {
                    slot.0.refill_ellipse(&b, w, h);
                    slot.1 = MaskSource::BoxEllipse;
                }
            }
        }
        Ok(())
    }

    /// An independent second opinion on a frame's things for the self-check: the suite's detectors on the
    /// horizontally mirrored frame (no discovery, no stuff), boxes mirrored back, entities at the caption
    /// threshold. Records its time as the self-check stage.
    pub fn second_opinion(&mut self, frame: &Frame, timings: &mut Timings) -> Result<Vec<ScoredEntity>, PipelineError> {
        let t = Instant::now();
        let frame_err = |source: PerceiveError| PipelineError::Frame { origin: frame.origin.clone(), source: Box::new(source) };
        let mirrored = image::imageops::flip_horizontal(&frame.rgb);
        let (w, h) = (mirrored.width(), mirrored.height());
        let mut scratch = Timings::default();
        let mut per_detector = Vec::with_capacity(self.detectors.len());
        for d in &mut self.detectors {
            per_detector.push(d.detect(&mirrored, &mut scratch).map_err(frame_err)?);
        }
        let instances = perceive::merge::merge(&mut per_detector, &self.cfg.merge);
        let coco = LabelSet::Coco80.labels();
        let mut out: Vec<ScoredEntity> = Vec::new();
        let mut kept: Vec<&Instance> = Vec::new();
        for inst in instances.iter().filter(|i| i.score >= self.cfg.caption_threshold) {
            if kept.iter().any(|k| is_fragment_of(inst, k)) || kept.len() >= self.cfg.max_things {
                continue;
            }
            kept.push(inst);
            let b = inst.bbox.clamp(w as f32, h as f32);
            let unflipped = BoxF::new(w as f32 - b.x2, b.y1, w as f32 - b.x1, b.y2);
            out.push(ScoredEntity { tag: coco.name(inst.class).to_string(), bbox: Some(unflipped.normalised(w, h)) });
        }
        timings.record(Stage::SelfCheck, None, t);
        Ok(out)
    }
}

/// The stuff label map a frame uses, with the model that made it.
struct FrameStuff<'a> {
    model: String,
    labels: LabelSet,
    map: std::borrow::Cow<'a, crate::perceive::stuff::LabelMap>,
}

/// A same-class box lying almost entirely inside a stronger one is a fragment of it (a part seen as a whole),
/// not another instance worth captioning, when it is much weaker, or weaker and less than half its size (fused
/// scores of boxes several detectors agree on crowd near 1, so "much weaker" alone misses a wheel seen as a
/// bicycle by two detectors). It stays in the COCO ranking.
fn is_fragment_of(weak: &Instance, strong: &Instance) -> bool {
    weak.class == strong.class
        && weak.bbox.covered_by(&strong.bbox) >= 0.85
        && (weak.score < 0.75 * strong.score || (weak.score < strong.score && weak.bbox.area() < 0.5 * strong.bbox.area()))
}

fn source_of(model: &str, truncation: &mut Truncation) -> heapless::Vec<SourceVote, MAX_SOURCES> {
    let mut v = heapless::Vec::new();
    truncation.vote(&mut v, model, Pass::Full, 1.0);
    v
}

/// The full ranking for COCO evaluation: each instance under its class, plus its alternative classes.
fn ranking(instances: &[Instance]) -> Vec<ScoredBox> {
    let coco = LabelSet::Coco80.labels();
    let mut out = Vec::new();
    for inst in instances {
        for (class, score) in std::iter::once((inst.class, inst.score)).chain(inst.alternatives.iter().copied()) {
            if let Some(l) = coco.get(class) {
                out.push(ScoredBox { category_id: l.dataset_id, bbox: inst.bbox, score });
            }
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carried_person_mask_follows_its_box_and_needs_an_overlap() {
        // the left half of a 10x20 box at (10, 10)
        let old = BoxF::new(10.0, 10.0, 20.0, 30.0);
        let mask = BoxMask::from_fn(&old, 100, 100, |x, _| x < 15);
        let carried = [(old, mask)];
        // moved 2 px right and down, the same size: the same pixels, moved
        let moved = BoxF::new(12.0, 12.0, 22.0, 32.0);
        let m = carried_mask(&carried, &moved, 100, 100).unwrap_or_else(|| panic!("IoU is over 0.5"));
        assert_eq!((m.x0, m.y0, m.w, m.h), (12, 12, 10, 20));
        assert!(m.get(16, 20) && !m.get(17, 20), "columns 12..17 set");
        assert_eq!(m.area(), 5 * 20);
        // twice as wide (IoU 0.5): the set part scales with it
        let wide = BoxF::new(10.0, 10.0, 30.0, 30.0);
        let m = carried_mask(&carried, &wide, 100, 100).unwrap_or_else(|| panic!("IoU is 0.5"));
        assert_eq!(m.area(), 10 * 20);
        // somewhere else: nothing to carry
        assert!(carried_mask(&carried, &BoxF::new(50.0, 50.0, 60.0, 70.0), 100, 100).is_none());
    }

    #[test]
    fn a_carried_pose_moves_and_scales_with_its_box() {
        use crate::scene::pose::{Point, JOINTS};
        let old = BoxF::new(10.0, 10.0, 20.0, 30.0);
        let mut keypoints = [Point::default(); JOINTS];
        keypoints[0] = Point { x: 15.0, y: 12.0, score: 0.9 };
        let carried = [(old, Pose { bbox: old, score: 0.8, keypoints })];
        // twice as wide (IoU 0.5): the nose keeps its place relative to the box
        let p = carried_pose(&carried, &BoxF::new(10.0, 10.0, 30.0, 30.0)).unwrap_or_else(|| panic!("IoU is 0.5"));
        assert_eq!((p.keypoints[0].x, p.keypoints[0].y, p.keypoints[0].score), (20.0, 12.0, 0.9));
        assert_eq!((p.bbox.x1, p.bbox.y1, p.bbox.x2, p.bbox.y2), (10.0, 10.0, 30.0, 30.0));
        // moved 2 px right and down, the same size: the nose moves with it
        let p = carried_pose(&carried, &BoxF::new(12.0, 12.0, 22.0, 32.0)).unwrap_or_else(|| panic!("IoU is over 0.5"));
        assert_eq!((p.keypoints[0].x, p.keypoints[0].y), (17.0, 14.0));
        assert!(carried_pose(&carried, &BoxF::new(50.0, 50.0, 60.0, 70.0)).is_none());
    }
}

//! Model manifests (checked in, embedded in the binary) and provisioning of the weights they describe from an
//! offline mirror, verified by sha256. Nothing here reaches a network.

pub mod data;
mod labels;
pub mod ocr;
mod provision;
pub mod quantized;
pub mod text;

pub use labels::{LabelSet, Labels, ADE20K32, COCO80};
pub use provision::{pull, sha256_of, verify, FileStatus, ProvisionError, PullReport};
pub use data::DataManifest;
pub use ocr::OcrManifest;
pub use text::TextManifest;

use crate::engine::{DType, InputSpec, ModelSpec};
use crate::geometry::ResizeMode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifests compiled into the binary, one per supported model.
const EMBEDDED: &[(&str, &str)] = &[
    ("yolox_nano_416", include_str!("../../models/yolox_nano_416.toml")),
    ("picodet_s_416_coco", include_str!("../../models/picodet_s_416_coco.toml")),
    ("nanodet_m_416", include_str!("../../models/nanodet_m_416.toml")),
    ("yolox_nano_416_opset13", include_str!("../../models/yolox_nano_416_opset13.toml")),
    ("picodet_s_416_coco_opset13", include_str!("../../models/picodet_s_416_coco_opset13.toml")),
    ("nanodet_m_416_opset13", include_str!("../../models/nanodet_m_416_opset13.toml")),
    ("deimv2_hgnetv2_femto_coco", include_str!("../../models/deimv2_hgnetv2_femto_coco.toml")),
    ("deeplabv3_mnv2_ade20k32_uint8", include_str!("../../models/deeplabv3_mnv2_ade20k32_uint8.toml")),
    ("deeplabv3_mnv2_ade20k32_f32", include_str!("../../models/deeplabv3_mnv2_ade20k32_f32.toml")),
    ("selfie_person_256", include_str!("../../models/selfie_person_256.toml")),
    ("movenet_multipose_lightning", include_str!("../../models/movenet_multipose_lightning.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Detector,
    Segmenter,
    /// A per-pixel person probability, run on person crops to give them masks.
    #[serde(rename = "person-segmenter")]
    PersonSegmenter,
    /// People's keypoints (posture, actions).
    Pose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub repo: String,
    pub commit: String,
    pub path: String,
    pub licence: String,
    pub upstream: String,
}

/// The image input of a model and exactly how pixels become tensor values:
/// `value = (pixel * scale - mean[c]) / std[c]`, channels in `colour` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputManifest {
    pub name: String,
    pub shape: [usize; 4],
    pub layout: Layout,
    pub dtype: DType,
    pub colour: ColourOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: ResizeMode,
    pub pad_value: u8,
}

impl InputManifest {
    /// Model input width and height.
    pub fn size(&self) -> (u32, u32) {
        let [_, a, b, c] = self.shape;
        match self.layout {
            Layout::Nchw => (c as u32, b as u32),
            Layout::Nhwc => (b as u32, a as u32),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputManifest {
    pub name: String,
    pub shape: Vec<usize>,
}

/// How a derived model file is made from its source file: `pancap models pull` provisions the source from the
/// mirror (by its sha256), applies the transform and installs the result only if its sha256 is the one recorded
/// here (the transforms are deterministic), so loading checks it like any other model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    /// The source file, relative to the models directory and the mirror, and its sha256.
    pub source_file: String,
    pub source_sha256: String,
    pub transform: Transform,
}

/// A mirror file made by the mirror from another mirror file (not by pancap: provisioning copies it and checks
/// its own sha256). Recorded so the provenance is in the manifest, and checked against the manifest of the model
/// it was made from: that one's file and sha256, and everything a run depends on (input, outputs, decoder,
/// labels, score calibration), which a conversion that keeps the weights must keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorDerivation {
    /// The manifest of the model it was made from.
    pub model: String,
    pub file: String,
    pub sha256: String,
    /// What the mirror did, and how it checked the result (from the mirror's sidecar).
    pub how: String,
    pub check: String,
}

/// Platt scaling of a detector's scores: `p = σ(a·logit(s) + b)`, fitted by `scripts/fit-score-calibration.py`
/// on annotated images that are not the evaluation images. A detection is "right" when it overlaps an unclaimed
/// reference box of its class at IoU ≥ 0.5 (greedy by score, as COCO matches), so `p` is the chance of that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreCalibration {
    /// Slope on the score's log-odds (> 0: the mapping keeps the detector's ranking).
    pub a: f32,
    /// Offset on the log-odds.
    pub b: f32,
    /// What it was fitted on, and how many detections (of which right) the fit saw.
    pub fitted_on: String,
    pub detections: u32,
    pub true_positives: u32,
}

impl ScoreCalibration {
    /// Scores are clamped to [1e-4, 1 − 1e-4] before taking log-odds, as in the fit.
    const EPS: f32 = 1e-4;

    /// The calibrated probability of a raw score (NaN stays NaN, so a broken output is not hidden).
    pub fn apply(&self, score: f32) -> f32 {
        let s = score.clamp(Self::EPS, 1.0 - Self::EPS);
        let z = self.a * (s / (1.0 - s)).ln() + self.b;
        1.0 / (1.0 + (-z).exp())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    /// A QDQ-quantized graph rewritten to float (`engine::dequantize`).
    Dequantize,
    /// The same, ending at the logits' uint8 codes; the head (upsampling, ArgMax) is the decoder's
    /// (`upsample-argmax`).
    DequantizeLogitCodes,
}

/// How raw outputs become detections or a label map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecoderManifest {
    /// YOLOX: one row per grid cell `[dx, dy, log w, log h, obj, classes...]`, obj/classes already sigmoid.
    Yolox { strides: Vec<u32>, nms_iou: f32 },
    /// GFL (PicoDet, NanoDet): per-stride class maps then per-stride distance distributions.
    Gfl { strides: Vec<u32>, reg_max: u32, nms_iou: f32 },
    /// NMS-free DETR (DEIMv2) with an extra input carrying the original image size `[[w, h]]`.
    Detr { size_input: String, nms_iou: f32 },
    /// Semantic segmentation whose graph ends in an ArgMax: one class id per pixel.
    Argmax,
    /// Semantic segmentation whose graph ends at the logits' uint8 codes `[1, C, h, w]`: upsampled by `factor`
    /// (ONNX Resize, linear, asymmetric), requantized and ArgMax-ed here (`perceive::stuff::upsample_argmax`).
    #[serde(rename = "upsample-argmax")]
    UpsampleArgmax { factor: u32 },
    /// One probability per pixel `[1, H, W, 1]`, foreground at or above `threshold`.
    Probability { threshold: f32 },
    /// MoveNet MultiPose `[1, N, 56]`: per person 17 COCO keypoints as (y, x, score) normalised to the input
    /// canvas, then its box (ymin, xmin, ymax, xmax) and score. People below `person_score` are dropped,
    /// keypoints below `keypoint_score` count as not visible.
    Movenet { person_score: f32, keypoint_score: f32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub role: Role,
    /// Path of the weights relative to the models directory (and to the mirror).
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub labels: LabelSet,
    pub validated_backends: Vec<String>,
    #[serde(default)]
    pub ignore_declared_shapes: bool,
    /// The mirror ships this model already quantized (Q/DQ nodes): it runs as shipped at every precision and
    /// `pancap quantize` leaves it alone.
    #[serde(default)]
    pub quantized: bool,
    /// Made by pancap from another provisioned file rather than copied from the mirror.
    #[serde(default)]
    pub derived: Option<Derivation>,
    /// Made by the mirror from another model's file (same weights, another form).
    #[serde(default)]
    pub derived_from: Option<MirrorDerivation>,
    /// Detectors: the mapping from the model's scores to the probability that a detection is right, so that
    /// detectors' scores compare and combine (absent: scores are used as they come).
    #[serde(default)]
    pub calibration: Option<ScoreCalibration>,
    pub source: Source,
    pub input: InputManifest,
    pub outputs: Vec<OutputManifest>,
    pub decoder: DecoderManifest,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {name}: {reason}")]
    Parse { name: String, reason: String },
    #[error("manifest {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("unknown model '{0}' (known: {1})")]
    Unknown(String, String),
}

impl Manifest {
    pub fn parse(name: &str, text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse { name: name.into(), reason: e.to_string() })?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |reason: String| Err(ManifestError::Invalid { name: self.name.clone(), reason });
        check_hash(&self.name, &self.sha256)?;
        self.labels.check().map_err(|reason| ManifestError::Invalid { name: self.name.clone(), reason })?;
        if self.input.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return bad("input.std must be finite and non-zero".into());
        }
        let (w, h) = self.input.size();
        if w == 0 || h == 0 || self.input.shape[0] != 1 {
            return bad(format!("input shape {:?} must be batch 1 with a non-zero size", self.input.shape));
        }
        let channels = match self.input.layout {
            Layout::Nchw => self.input.shape[1],
            Layout::Nhwc => self.input.shape[3],
        };
        if channels != 3 {
            return bad(format!("input shape {:?} must have 3 channels", self.input.shape));
        }
        let expected_outputs = match &self.decoder {
            DecoderManifest::Yolox { .. }
            | DecoderManifest::Argmax
            | DecoderManifest::UpsampleArgmax { .. }
            | DecoderManifest::Probability { .. }
            | DecoderManifest::Movenet { .. } => 1,
            DecoderManifest::Gfl { strides, .. } => 2 * strides.len(),
            DecoderManifest::Detr { .. } => 3,
        };
        if self.outputs.len() != expected_outputs {
            return bad(format!("decoder needs {expected_outputs} outputs, manifest lists {}", self.outputs.len()));
        }
        if let Some(c) = &self.calibration {
            if self.role != Role::Detector {
                return bad("only detectors carry a score calibration".into());
            }
            if !(c.a.is_finite() && c.a > 0.0 && c.b.is_finite()) {
                return bad(format!("calibration a = {}, b = {}: a must be finite and positive, b finite", c.a, c.b));
            }
            if c.true_positives > c.detections || c.detections == 0 {
                return bad(format!("calibration counts {} right of {} detections", c.true_positives, c.detections));
            }
        }
        if let Some(d) = &self.derived {
            check_hash(&self.name, &d.source_sha256)?;
            check_relative(&self.name, &d.source_file)?;
        }
        if let Some(d) = &self.derived_from {
            check_hash(&self.name, &d.sha256)?;
            check_relative(&self.name, &d.file)?;
            if d.model == self.name || d.file == self.file {
                return bad(format!("derived_from names the model itself ({})", d.model));
            }
        }
        check_relative(&self.name, &self.file)
    }

    /// Every embedded manifest, in a fixed order.
    pub fn all() -> Result<Vec<Manifest>, ManifestError> {
        EMBEDDED.iter().map(|(name, text)| Manifest::parse(name, text)).collect()
    }

    pub fn by_name(name: &str) -> Result<Manifest, ManifestError> {
        match EMBEDDED.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Manifest::parse(n, text),
            None => Err(ManifestError::Unknown(
                name.into(),
                EMBEDDED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    pub fn path_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.file)
    }

    /// The files provisioning installs for this model.
    pub fn files(&self) -> Vec<ModelFile> {
        vec![ModelFile {
            model: self.name.clone(),
            file: self.file.clone(),
            sha256: self.sha256.clone(),
            derived: self.derived.clone(),
        }]
    }

    /// What an engine needs to load this model from `models_dir`.
    pub fn model_spec(&self, models_dir: &Path) -> ModelSpec {
        let mut inputs = vec![InputSpec {
            name: self.input.name.clone(),
            shape: self.input.shape.to_vec(),
            dtype: self.input.dtype,
        }];
        if let DecoderManifest::Detr { size_input, .. } = &self.decoder {
            inputs.push(InputSpec { name: size_input.clone(), shape: vec![1, 2], dtype: DType::I64 });
        }
        ModelSpec {
            path: self.path_in(models_dir),
            inputs,
            outputs: self.outputs.iter().map(|o| o.name.clone()).collect(),
            ignore_declared_shapes: self.ignore_declared_shapes,
            unordered_rows: matches!(self.decoder, DecoderManifest::Detr { .. }),
        }
    }
}

/// One file a model needs (weights, tokenizer), as provisioning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The model it belongs to.
    pub model: String,
    /// Path relative to the models directory (and to the mirror).
    pub file: String,
    pub sha256: String,
    /// Made from another file instead of copied from the mirror.
    pub derived: Option<Derivation>,
}

impl ModelFile {
    pub fn path_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.file)
    }
}

pub(crate) fn check_hash(name: &str, sha256: &str) -> Result<(), ManifestError> {
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ManifestError::Invalid { name: name.into(), reason: format!("sha256 '{sha256}' is not 64 hex digits") });
    }
    Ok(())
}

pub(crate) fn check_relative(name: &str, file: &str) -> Result<(), ManifestError> {
    if file.contains("..") || Path::new(file).is_absolute() {
        return Err(ManifestError::Invalid {
            name: name.into(),
            reason: format!("file '{file}' must be a relative path inside the models directory"),
        });
    }
    Ok(())
}

/// Every file of every model and data set this build knows (image models, the text reader, text models, then
/// data such as WordNet).
pub fn all_files() -> Result<Vec<ModelFile>, ManifestError> {
    let mut files: Vec<ModelFile> = Manifest::all()?.iter().flat_map(Manifest::files).collect();
    files.extend(ocr::OcrManifest::all()?.iter().flat_map(ocr::OcrManifest::files));
    files.extend(text::TextManifest::all()?.iter().flat_map(text::TextManifest::files));
    files.extend(data::DataManifest::all()?.iter().flat_map(data::DataManifest::files));
    Ok(files)
}

/// The files of the named models (image, text reader, text or data).
pub fn files_of(names: &[String]) -> Result<Vec<ModelFile>, ManifestError> {
    let mut files = Vec::new();
    for name in names {
        match Manifest::by_name(name) {
            Ok(m) => files.extend(m.files()),
            Err(e) => {
                if let Some(o) = ocr::OcrManifest::by_name(name) {
                    files.extend(o?.files());
                } else if let Some(t) = text::TextManifest::by_name(name) {
                    files.extend(t?.files());
                } else if let Some(d) = data::DataManifest::by_name(name) {
                    files.extend(d?.files());
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(files)
}

/// Where provisioned weights live: `--models-dir`, else `PANCAP_MODELS_DIR`, else `./models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("PANCAP_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifests_parse_and_validate() {
        let all = Manifest::all().map_err(|e| e.to_string());
        let all = all.as_deref().unwrap_or_default();
        assert_eq!(all.len(), EMBEDDED.len());
        for m in all {
            assert!(m.file.ends_with(".onnx"), "{}", m.name);
        }
        let y = all.iter().find(|m| m.name == "yolox_nano_416");
        assert_eq!(y.map(|m| m.input.size()), Some((416, 416)));
        let s = all.iter().find(|m| m.role == Role::Segmenter);
        assert_eq!(s.map(|m| m.input.size()), Some((512, 512)));
    }

    #[test]
    fn every_detector_carries_a_calibration_that_keeps_its_ranking() {
        for m in Manifest::all().unwrap().into_iter().filter(|m| m.role == Role::Detector) {
            let c = m.calibration.as_ref().unwrap_or_else(|| panic!("{} has no [calibration]", m.name));
            let probs: Vec<f32> = [0.0, 0.01, 0.2, 0.45, 0.5, 0.8, 0.99, 1.0].iter().map(|s| c.apply(*s)).collect();
            assert!(probs.windows(2).all(|w| w[0] <= w[1]), "{}: {probs:?}", m.name);
            assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{}: {probs:?}", m.name);
            // p = 0.5 where a·logit(s) + b = 0
            let s_half = 1.0 / (1.0 + (c.b / c.a).exp());
            assert!((c.apply(s_half) - 0.5).abs() < 1e-4, "{}", m.name);
            assert!(c.apply(f32::NAN).is_nan(), "{}: a NaN score is not hidden", m.name);
        }
    }

    #[test]
    fn a_calibration_that_would_reverse_the_ranking_is_rejected() {
        let text = include_str!("../../models/yolox_nano_416.toml").replace("a = 1.2090", "a = -1.0");
        let e = Manifest::parse("yolox_nano_416", &text).unwrap_err().to_string();
        assert!(e.contains("a must be finite and positive"), "{e}");
        let text = include_str!("../../models/yolox_nano_416.toml").replace("true_positives = 102", "true_positives = 9999");
        assert!(Manifest::parse("yolox_nano_416", &text).is_err());
    }

    #[test]
    fn mirror_derived_models_match_the_manifest_they_were_made_from() {
        let all = Manifest::all().unwrap();
        let copies: Vec<&Manifest> = all.iter().filter(|m| m.derived_from.is_some()).collect();
        assert_eq!(copies.len(), 3, "the three opset-13 detectors");
        for m in copies {
            let d = m.derived_from.as_ref().unwrap();
            let original = all.iter().find(|o| o.name == d.model).unwrap_or_else(|| panic!("{}: no manifest {}", m.name, d.model));
            assert_eq!((&d.file, &d.sha256), (&original.file, &original.sha256), "{}", m.name);
            assert_eq!(m.role, original.role, "{}", m.name);
            assert_eq!(m.labels, original.labels, "{}", m.name);
            assert_eq!(m.input, original.input, "{}", m.name);
            assert_eq!(m.outputs, original.outputs, "{}", m.name);
            assert_eq!(m.decoder, original.decoder, "{}", m.name);
            assert_eq!(m.calibration, original.calibration, "{}", m.name);
            assert_ne!(m.sha256, original.sha256, "{}", m.name);
        }
        let text = include_str!("../../models/yolox_nano_416_opset13.toml").replace("model = \"yolox_nano_416\"", "model = \"yolox_nano_416_opset13\"");
        let e = Manifest::parse("yolox_nano_416_opset13", &text).unwrap_err().to_string();
        assert!(e.contains("names the model itself"), "{e}");
    }

    #[test]
    fn a_bad_hash_is_rejected() {
        let text = include_str!("../../models/yolox_nano_416.toml").replace(
            "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            "abc",
        );
        let err = Manifest::parse("x", &text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("sha256"), "{err}");
    }

    #[test]
    fn unknown_model_names_the_known_ones() {
        let err = Manifest::by_name("nope").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("yolox_nano_416"), "{err}");
    }

    #[test]
    fn detr_spec_has_the_size_input() {
        let m = Manifest::by_name("deimv2_hgnetv2_femto_coco").ok();
        let spec = m.map(|m| m.model_spec(Path::new("models")));
        assert_eq!(spec.map(|s| s.inputs.len()), Some(2));
    }
}

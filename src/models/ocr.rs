//! The manifest of the text reader (PP-OCR): three ONNX files (text detector, line orientation classifier, line
//! recogniser) provisioned from the offline mirror by sha256 like every model, with the bucket sizes tract runs
//! them at and the post-processing settings.

use super::{check_hash, check_relative, ManifestError, ModelFile, Source};
use crate::engine::{DType, InputSpec, ModelSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

const EMBEDDED: &[(&str, &str)] = &[("ppocr_v4", include_str!("../../models/ppocr_v4.toml"))];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcrRole {
    #[serde(rename = "text-reader")]
    TextReader,
}

/// The DB text detector: a probability map of text pixels at the input's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrDetector {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub input: String,
    pub output: String,
    /// `[width, height]` input sizes, multiples of 32.
    pub buckets: Vec<[u32; 2]>,
    /// Map pixels above this are text.
    pub threshold: f32,
    /// A box is kept when the mean probability inside it reaches this.
    pub box_threshold: f32,
    /// Boxes grow by `area × ratio / perimeter` on every side (DB shrinks text regions in training).
    pub unclip_ratio: f32,
    pub max_candidates: usize,
}

/// The 0°/180° orientation classifier of a line crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrClassifier {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub input: String,
    pub output: String,
    pub width: u32,
    pub height: u32,
    pub threshold: f32,
}

/// The CTC line recogniser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrRecogniser {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub input: String,
    pub output: String,
    pub height: u32,
    /// Input widths, ascending.
    pub widths: Vec<u32>,
    /// ONNX metadata key holding the dictionary, one character per line.
    pub dictionary_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrManifest {
    pub name: String,
    pub role: OcrRole,
    pub validated_backends: Vec<String>,
    pub source: Source,
    pub detector: OcrDetector,
    pub classifier: OcrClassifier,
    pub recogniser: OcrRecogniser,
}

fn nchw(name: &str, n: usize, w: u32, h: u32) -> InputSpec {
    InputSpec { name: name.to_string(), shape: vec![n, 3, h as usize, w as usize], dtype: DType::F32 }
}

impl OcrManifest {
    pub fn parse(name: &str, text: &str) -> Result<OcrManifest, ManifestError> {
        let m: OcrManifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse { name: name.into(), reason: e.to_string() })?;
        let bad = |reason: String| Err(ManifestError::Invalid { name: m.name.clone(), reason });
        for (file, sha) in [
            (&m.detector.file, &m.detector.sha256),
            (&m.classifier.file, &m.classifier.sha256),
            (&m.recogniser.file, &m.recogniser.sha256),
        ] {
            check_hash(&m.name, sha)?;
            check_relative(&m.name, file)?;
        }
        if m.detector.buckets.is_empty() {
            return bad("detector.buckets is empty".into());
        }
        if let Some(b) = m.detector.buckets.iter().find(|[w, h]| *w == 0 || *h == 0 || w % 32 != 0 || h % 32 != 0) {
            return bad(format!("detector bucket {b:?} must be non-zero multiples of 32"));
        }
        if m.recogniser.widths.is_empty() || m.recogniser.widths.windows(2).any(|w| w.first() >= w.get(1)) {
            return bad(format!("recogniser.widths {:?} must be non-empty and ascending", m.recogniser.widths));
        }
        if m.recogniser.widths.iter().any(|w| w % 8 != 0) || m.recogniser.height == 0 {
            return bad("recogniser widths must be multiples of 8 and its height non-zero".into());
        }
        if m.classifier.width == 0 || m.classifier.height == 0 {
            return bad("classifier size must be non-zero".into());
        }
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !unit(m.detector.threshold) || !unit(m.detector.box_threshold) || !unit(m.classifier.threshold) {
            return bad("thresholds must lie in [0, 1]".into());
        }
        if !(m.detector.unclip_ratio.is_finite() && m.detector.unclip_ratio >= 0.0) {
            return bad("detector.unclip_ratio must be finite and non-negative".into());
        }
        Ok(m)
    }

    pub fn all() -> Result<Vec<OcrManifest>, ManifestError> {
        EMBEDDED.iter().map(|(name, text)| OcrManifest::parse(name, text)).collect()
    }

    /// None when no text reader has this name.
    pub fn by_name(name: &str) -> Option<Result<OcrManifest, ManifestError>> {
        EMBEDDED.iter().find(|(n, _)| *n == name).map(|(n, text)| OcrManifest::parse(n, text))
    }

    pub fn files(&self) -> Vec<ModelFile> {
        [
            (&self.detector.file, &self.detector.sha256),
            (&self.classifier.file, &self.classifier.sha256),
            (&self.recogniser.file, &self.recogniser.sha256),
        ]
        .into_iter()
        .map(|(file, sha256)| ModelFile { model: self.name.clone(), file: file.clone(), sha256: sha256.clone(), derived: None })
        .collect()
    }

    /// The detector at one bucket size.
    pub fn detector_spec(&self, models_dir: &Path, [w, h]: [u32; 2]) -> ModelSpec {
        ModelSpec {
            path: models_dir.join(&self.detector.file),
            inputs: vec![nchw(&self.detector.input, 1, w, h)],
            outputs: vec![self.detector.output.clone()],
            ignore_declared_shapes: false,
            unordered_rows: false,
        }
    }

    pub fn classifier_spec(&self, models_dir: &Path) -> ModelSpec {
        let c = &self.classifier;
        ModelSpec {
            path: models_dir.join(&c.file),
            inputs: vec![nchw(&c.input, 1, c.width, c.height)],
            outputs: vec![c.output.clone()],
            ignore_declared_shapes: false,
            unordered_rows: false,
        }
    }

    /// The recogniser at one width.
    pub fn recogniser_spec(&self, models_dir: &Path, width: u32) -> ModelSpec {
        let r = &self.recogniser;
        ModelSpec {
            path: models_dir.join(&r.file),
            inputs: vec![nchw(&r.input, 1, width, r.height)],
            outputs: vec![r.output.clone()],
            ignore_declared_shapes: false,
            unordered_rows: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_reader_parses_with_three_files_and_bucket_specs() {
        let m = OcrManifest::by_name("ppocr_v4").and_then(Result::ok);
        assert_eq!(m.as_ref().map(|m| m.files().len()), Some(3));
        let spec = m.as_ref().map(|m| m.detector_spec(Path::new("models"), [640, 480]));
        assert_eq!(spec.map(|s| s.inputs.first().map(|i| i.shape.clone())), Some(Some(vec![1, 3, 480, 640])));
        let rec = m.as_ref().map(|m| m.recogniser_spec(Path::new("models"), 320));
        assert_eq!(rec.map(|s| s.inputs.first().map(|i| i.shape.clone())), Some(Some(vec![1, 3, 48, 320])));
        assert!(OcrManifest::by_name("nope").is_none());
    }

    #[test]
    fn buckets_that_are_not_multiples_of_32_are_refused() {
        let text = include_str!("../../models/ppocr_v4.toml").replace("[640, 480]", "[630, 480]");
        let err = OcrManifest::parse("x", &text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("multiples of 32"), "{err}");
        let text = include_str!("../../models/ppocr_v4.toml").replace("[320, 640, 960]", "[640, 320]");
        assert!(OcrManifest::parse("x", &text).is_err());
    }
}

//! Deployment targets: one TOML profile per kind of machine (backend, providers, precision, threads, suite,
//! capture size, TensorRT options), embedded in the binary so a field device needs no checkout. `--target NAME`
//! applies one; flags given on the command line win over it.

use crate::engine::BackendConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The profiles compiled into the binary (targets/*.toml).
const EMBEDDED: &[(&str, &str)] = &[
    ("x86-cpu", include_str!("../targets/x86-cpu.toml")),
    ("x86-cuda", include_str!("../targets/x86-cuda.toml")),
    ("x86-tract-cuda", include_str!("../targets/x86-tract-cuda.toml")),
    ("jetson-orin-nano", include_str!("../targets/jetson-orin-nano.toml")),
    ("jetson-orin-nx", include_str!("../targets/jetson-orin-nx.toml")),
    ("jetson-agx-orin", include_str!("../targets/jetson-agx-orin.toml")),
];

/// Which models run on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteProfile {
    /// Detector manifests, primary first.
    pub detectors: Vec<String>,
    /// Stuff segmentation on or off.
    pub stuff: bool,
    /// The stuff segmenter (none: the default, the float graph derived from the uint8 one; ONNX Runtime targets
    /// name the uint8 graph, which its integer kernels run faster).
    #[serde(default)]
    pub segmenter: Option<String>,
    /// Extra-instance discovery on tiles (four more primary-detector runs per frame).
    pub discovery: bool,
    /// In `pancap stream`: discovery every Nth frame.
    pub discovery_every: u32,
    /// The live self-check second pass.
    pub self_check: bool,
    /// Person masks from the person segmenter (one small model run per person).
    #[serde(default = "on")]
    pub person_masks: bool,
    /// Text reading (PP-OCR: the text detector on the frame, then one recogniser run per line).
    #[serde(default = "on")]
    pub text: bool,
    /// In `pancap stream`: text reading every Nth frame.
    #[serde(default = "ten")]
    pub text_every: u32,
    /// In `pancap stream`: the person segmenter every Nth frame (masks follow their boxes in between).
    #[serde(default = "five")]
    pub person_masks_every: u32,
    /// People's keypoints from the pose model (posture, sitting on, holding, carrying, lying on).
    #[serde(default = "on")]
    pub pose: bool,
    /// In `pancap stream`: the pose model every Nth frame (keypoints follow their boxes in between).
    #[serde(default = "ten")]
    pub pose_every: u32,
    /// In `pancap stream`: a frame for the stuff segmenter every Nth frame (when it is idle).
    #[serde(default = "ten")]
    pub stuff_every: u32,
    /// In `pancap stream`: threads of the stuff segmenter and the text reader, which run beside the detectors
    /// (none: half the backend's threads).
    #[serde(default)]
    pub worker_threads: Option<usize>,
}

fn five() -> u32 {
    5
}

fn on() -> bool {
    true
}

fn ten() -> u32 {
    10
}

/// What a camera on this target is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureProfile {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetProfile {
    pub name: String,
    /// The hardware and software this profile is for.
    pub hardware: String,
    pub software: String,
    pub backend: BackendConfig,
    pub suite: SuiteProfile,
    pub capture: CaptureProfile,
    /// Whether the settings were measured on the hardware (a `targets/NAME.profile.json` exists) or are the
    /// documented starting point for it.
    pub measured: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("unknown target {name:?}; known targets: {known} (or give a path to a .toml profile)")]
    Unknown { name: String, known: String },
    #[error("target profile {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl TargetProfile {
    /// Names of the embedded profiles.
    pub fn names() -> Vec<&'static str> {
        EMBEDDED.iter().map(|(n, _)| *n).collect()
    }

    /// Parses and checks one profile.
    pub fn parse(name: &str, text: &str) -> Result<TargetProfile, TargetError> {
        let p: TargetProfile =
            toml::from_str(text).map_err(|e| TargetError::Invalid { name: name.into(), reason: e.to_string() })?;
        let invalid = |reason: String| TargetError::Invalid { name: name.into(), reason };
        if p.suite.detectors.is_empty() {
            return Err(invalid("the suite needs at least one detector".into()));
        }
        p.backend.validate_settings().map_err(|e| invalid(e.to_string()))?;
        if p.capture.width == 0 || p.capture.height == 0 || !p.capture.fps.is_finite() || p.capture.fps <= 0.0 {
            return Err(invalid("capture width, height and fps must be positive".into()));
        }
        Ok(p)
    }

    /// An embedded profile by name, or a profile file when `name_or_path` ends in `.toml`.
    pub fn load(name_or_path: &str) -> Result<TargetProfile, TargetError> {
        if name_or_path.ends_with(".toml") {
            let text = std::fs::read_to_string(Path::new(name_or_path))
                .map_err(|source| TargetError::Io { path: name_or_path.into(), source })?;
            return Self::parse(name_or_path, &text);
        }
        let (_, text) = EMBEDDED.iter().find(|(n, _)| *n == name_or_path).ok_or_else(|| TargetError::Unknown {
            name: name_or_path.into(),
            known: Self::names().join(", "),
        })?;
        Self::parse(name_or_path, text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::{Backend, Precision};

    #[test]
    fn every_embedded_profile_parses_and_names_itself() {
        for name in TargetProfile::names() {
            let p = TargetProfile::load(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name, name);
            for d in &p.suite.detectors {
                crate::models::Manifest::by_name(d).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let nano = TargetProfile::load("jetson-orin-nano").unwrap();
        assert_eq!((nano.backend.backend, nano.backend.precision), (Backend::OrtTensorRt, Precision::Fp16));
        // INT8 and FP16 pay on TensorRT only: a Jetson target switched to another backend runs FP32 there
        for name in ["jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin"] {
            let t = TargetProfile::load(name).unwrap();
            for b in [Backend::OrtCuda, Backend::OrtCpu, Backend::Tract] {
                assert_eq!(t.backend.switched_to(b).precision, Precision::Fp32, "{name} on {b}");
            }
        }
        assert!(nano.backend.trt_cache_dir.is_some());
        let cpu = TargetProfile::load("x86-cpu").unwrap();
        assert_eq!(cpu.backend.backend, Backend::Tract);
        // the measured stream layout of the 2-core box; the default segmenter (the derived float graph) on tract
        assert_eq!((cpu.suite.stuff_every, cpu.suite.worker_threads, cpu.suite.segmenter.as_deref()), (10, Some(1), None));
        // ONNX Runtime targets run the uint8 segmenter with its integer kernels; unset stream knobs take defaults
        assert_eq!(nano.suite.segmenter.as_deref(), Some("deeplabv3_mnv2_ade20k32_uint8"));
        assert_eq!((nano.suite.stuff_every, nano.suite.worker_threads, nano.suite.person_masks_every), (10, None, 5));
        let cuda = TargetProfile::load("x86-tract-cuda").unwrap();
        assert_eq!((cuda.backend.backend, cuda.backend.allow_host_ops, cuda.measured), (Backend::TractCuda, true, true));
        assert!(cuda.backend.validate_settings().is_ok());
    }

    #[test]
    fn unknown_and_invalid_profiles_are_clear_errors() {
        let e = TargetProfile::load("jetson-tx1").unwrap_err().to_string();
        assert!(e.contains("jetson-orin-nano") && e.contains("jetson-tx1"), "{e}");
        let text = include_str!("../targets/x86-cpu.toml").replace("precision = \"fp32\"", "precision = \"fp16\"");
        let e = TargetProfile::parse("x", &text).unwrap_err().to_string();
        assert!(e.contains("fp16"), "{e}");
        let e = TargetProfile::load("/nonexistent/t.toml").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/t.toml"), "{e}");
    }
}

//! Subcommands beyond `models`, and the argument groups they share.

#[cfg(feature = "eval")]
pub mod eval;
pub mod caption;
pub mod profile;
pub mod progress;
#[cfg(feature = "quantize")]
pub mod quantize;
pub mod read;
pub mod score;
pub mod stream;
pub mod verify;
#[cfg(feature = "serve")]
pub mod view;

use pancap::perceive::merge::MergeParams;
use pancap::perceive::DetectParams;
use anyhow::{Context, Result};
use pancap::engine::{Backend, BackendConfig, Precision};
use pancap::targets::TargetProfile;
use pancap::PipelineConfig;
use std::path::{Path, PathBuf};

/// How models run: backend, precision and backend options. Flags win over a `--target` profile.
#[derive(clap::Args, Clone, Default)]
pub struct BackendArgs {
    /// Backend: tract (pure Rust, CPU), ort-cpu, ort-cuda, ort-tensorrt (the ort ones need `--features ort`),
    /// tract-cuda (tract's CUDA runtime; `--features cuda`)
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Model precision: fp32, fp16 (TensorRT), int8 (models written by `pancap quantize`)
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Threads per model: tract's multi-threaded executor, ONNX Runtime's intra-op threads [default: one per core]
    #[arg(long)]
    pub threads: Option<usize>,
    /// CUDA device for ort-cuda / ort-tensorrt
    #[arg(long)]
    pub device_id: Option<u32>,
    /// tract-cuda: run ops the CUDA runtime cannot take on the CPU between GPU ops (default: such a model is an
    /// error naming its ops)
    #[arg(long)]
    pub allow_host_ops: bool,
    /// The ONNX Runtime library (libonnxruntime.so); default: ORT_DYLIB_PATH
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Keep TensorRT engines and timing caches in this directory across runs
    #[arg(long)]
    pub trt_cache: Option<PathBuf>,
    /// TensorRT builder workspace in MiB
    #[arg(long)]
    pub trt_workspace_mib: Option<usize>,
    /// Run TensorRT layers on this DLA core (Jetson Orin NX / AGX Orin)
    #[arg(long)]
    pub trt_dla_core: Option<u32>,
}

impl BackendArgs {
    /// The target's backend settings (or the defaults) with every given flag applied on top.
    pub fn apply(&self, base: BackendConfig) -> BackendConfig {
        let mut c = match self.backend {
            Some(b) => base.switched_to(b),
            None => base,
        };
        if let Some(p) = self.precision {
            c.precision = p;
        }
        c.threads = self.threads.or(c.threads);
        c.device_id = self.device_id.unwrap_or(c.device_id);
        c.allow_host_ops |= self.allow_host_ops;
        c.ort_library = self.ort_lib.clone().or(c.ort_library);
        c.trt_cache_dir = self.trt_cache.clone().or(c.trt_cache_dir);
        c.trt_workspace_mib = self.trt_workspace_mib.or(c.trt_workspace_mib);
        c.trt_dla_core = self.trt_dla_core.or(c.trt_dla_core);
        c
    }
}

/// Which models run and how: shared by `caption`, `eval`, `stream` and `profile`.
#[derive(clap::Args, Clone)]
pub struct SuiteArgs {
    /// Apply a target profile: jetson-orin-nano, jetson-orin-nx, jetson-agx-orin, x86-cpu, x86-cuda, x86-tract-cuda,
    /// or a .toml file (flags given here win over it)
    #[arg(long)]
    pub target: Option<String>,
    /// Detectors of the suite, primary first [default: deimv2_hgnetv2_femto_coco,picodet_s_416_coco]
    #[arg(long, value_delimiter = ',')]
    pub detectors: Option<Vec<String>>,
    /// Skip stuff segmentation (things only)
    #[arg(long)]
    pub no_stuff: bool,
    /// The stuff segmenter [default: deeplabv3_mnv2_ade20k32_f32, the float graph pancap derives from the
    /// uint8 deeplabv3_mnv2_ade20k32_uint8, which ONNX Runtime runs faster]
    #[arg(long)]
    pub segmenter: Option<String>,
    /// Skip the extra-instance discovery pass
    #[arg(long)]
    pub no_discovery: bool,
    /// Skip the person segmenter (people then get the stuff segmenter's person pixels or their box's ellipse)
    #[arg(long)]
    pub no_person_masks: bool,
    /// Skip the pose model (people then get no keypoints, posture or pose-based actions)
    #[arg(long)]
    pub no_pose: bool,
    /// Skip text reading (OCR)
    #[arg(long)]
    pub no_text: bool,
    /// Minimum merged score for an entity to be captioned
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// How the detectors' (calibrated) scores for one object combine [default: noisy-or]
    #[arg(long, value_enum)]
    pub fusion: Option<pancap::perceive::merge::Fusion>,
    /// Use the detectors' own scores, not their calibrated probabilities (what `scripts/fit-score-calibration.py`
    /// fits on)
    #[arg(long)]
    pub raw_scores: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

impl SuiteArgs {
    /// The pipeline configuration: defaults, then the target profile, then the flags.
    pub fn config(&self, models_dir: &Path) -> Result<PipelineConfig> {
        Ok(self.resolve(models_dir)?.0)
    }

    /// The pipeline configuration and the target profile it applied, if any.
    pub fn resolve(&self, models_dir: &Path) -> Result<(PipelineConfig, Option<TargetProfile>)> {
        let (config, target) = self.resolve_unchecked(models_dir)?;
        config.backend.validate()?;
        Ok((config, target))
    }

    /// `resolve` without checking the backend settings: for `profile --compare`, which checks each configuration
    /// it derives (`--allow-host-ops` then reaches tract-cuda alone).
    pub fn resolve_unchecked(&self, models_dir: &Path) -> Result<(PipelineConfig, Option<TargetProfile>)> {
        let target = self.target.as_deref().map(TargetProfile::load).transpose().context("--target")?;
        let defaults = PipelineConfig::default();
        let (detectors, stuff, discovery, person_masks, pose, text, backend) = match &target {
            Some(t) => {
                let s = &t.suite;
                (s.detectors.clone(), s.stuff, s.discovery, s.person_masks, s.pose, s.text, t.backend.clone())
            }
            None => (defaults.detectors.clone(), true, true, true, true, true, BackendConfig::default()),
        };
        let segmenter = self
            .segmenter
            .clone()
            .or_else(|| target.as_ref().and_then(|t| t.suite.segmenter.clone()))
            .or(defaults.segmenter.clone());
        let config = PipelineConfig {
            models_dir: models_dir.to_path_buf(),
            backend: self.backend.apply(backend),
            detectors: self.detectors.clone().unwrap_or(detectors),
            segmenter: if stuff && !self.no_stuff { segmenter } else { None },
            discovery: if discovery && !self.no_discovery { defaults.discovery } else { None },
            person_segmenter: if person_masks && !self.no_person_masks { defaults.person_segmenter.clone() } else { None },
            pose: if pose && !self.no_pose { defaults.pose.clone() } else { None },
            text_reader: if text && !self.no_text { defaults.text_reader.clone() } else { None },
            caption_threshold: self.threshold,
            merge: MergeParams { fusion: self.fusion.unwrap_or(defaults.merge.fusion), ..defaults.merge },
            detect: DetectParams { calibrated: !self.raw_scores, ..defaults.detect },
            ..defaults
        };
        Ok((config, target))
    }

    /// Whether the self-check runs: asked for on the command line or by the target.
    pub fn self_check(flag: bool, target: Option<&TargetProfile>) -> bool {
        flag || target.is_some_and(|t| t.suite.self_check)
    }
}

/// `pancap backends`: what this build can run here. Exit 1 when an ONNX Runtime library was named but cannot load.
pub fn backends_cmd(args: &BackendArgs) -> Result<i32> {
    for b in Backend::ALL {
        let state =
            if b.compiled_in() { "compiled in".to_string() } else { format!("not compiled in (rebuild with --features {})", b.feature()) };
        println!("{:<14} {state}", b.name());
    }
    let cuda = cuda_report();
    let ort = ort_report(args)?;
    Ok(cuda.max(ort))
}

/// tract-cuda's device, or why it cannot start (exit status 1 then).
#[cfg(feature = "tract-cuda-runtime")]
fn cuda_report() -> i32 {
    match pancap::engine::cuda_device() {
        Ok(name) => {
            println!("tract-cuda: CUDA device 0 = {name}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(not(feature = "tract-cuda-runtime"))]
fn cuda_report() -> i32 {
    0
}

#[cfg(feature = "ort")]
fn ort_report(args: &BackendArgs) -> Result<i32> {
    let config = args.apply(BackendConfig::new(Backend::OrtCpu));
    let (library, version) = match pancap::engine::runtime_info(&config) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    println!("ONNX Runtime {version} from {}", library.display());
    for (name, available) in pancap::engine::available_providers(&config)? {
        println!("  {name:<28} {}", if available { "available" } else { "not in this library" });
    }
    Ok(0)
}

#[cfg(not(feature = "ort"))]
fn ort_report(_: &BackendArgs) -> Result<i32> {
    Ok(0)
}

/// `pancap targets [NAME]`.
pub fn targets_cmd(name: Option<&str>) -> Result<i32> {
    match name {
        Some(n) => print!("{}", toml::to_string_pretty(&TargetProfile::load(n)?)?),
        None => {
            for n in TargetProfile::names() {
                let t = TargetProfile::load(n)?;
                let measured = if t.measured { "measured" } else { "not measured here" };
                println!("{n:<18} {:<13} {:<6} {measured:<18} {}", t.backend.backend, t.backend.precision, t.hardware);
            }
        }
    }
    Ok(0)
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}

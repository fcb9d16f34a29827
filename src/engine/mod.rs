//! The engine seam: our own narrow trait and tensor type. Backend types (tract, ort) never leave this module.

pub mod dequantize;
mod fake;
mod gpu_rewrite;
mod binary;
mod depthwise;
mod grid_sample;
mod reduce;
mod resize;
#[cfg(test)]
mod test_noise;
mod topk;
pub mod mirror;
#[cfg(feature = "ort")]
mod ort;
mod tract;
pub mod u8_activations;

pub use fake::FakeEngine;
pub use mirror::{AgreementLog, Mirror, OutputAgreement, Tolerance};
#[cfg(feature = "tract-cuda-runtime")]
pub use tract::cuda_device;
pub use tract::{default_threads, onnx_metadata, profile_ops, OpTime, TractEngine};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    U8,
    I32,
    I64,
}

/// Tensor storage; one variant per supported element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// A dense row-major tensor that crosses the engine seam.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the data length matches the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, EngineError> {
        let want: usize = shape.iter().product();
        let have = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        };
        if want != have {
            return Err(EngineError::ShapeMismatch { shape, len: have });
        }
        Ok(Tensor { shape, data })
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
        }
    }

    pub fn as_f32(&self) -> Result<&[f32], EngineError> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            _ => Err(EngineError::WrongDType { want: DType::F32, have: self.dtype() }),
        }
    }

    pub fn as_i32(&self) -> Result<&[i32], EngineError> {
        match &self.data {
            TensorData::I32(v) => Ok(v),
            _ => Err(EngineError::WrongDType { want: DType::I32, have: self.dtype() }),
        }
    }

    pub fn as_i64(&self) -> Result<&[i64], EngineError> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            _ => Err(EngineError::WrongDType { want: DType::I64, have: self.dtype() }),
        }
    }
}

/// Name, shape and element type of one model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// What a backend needs to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub path: PathBuf,
    pub inputs: Vec<InputSpec>,
    /// Output names in the order `run` returns them.
    pub outputs: Vec<String>,
    /// The graph declares symbolic shapes that conflict with concrete input facts (DEIMv2): tell the backend
    /// to trust the input facts instead.
    pub ignore_declared_shapes: bool,
    /// The outputs are one set of rows along axis 1 (`[1, N, …]`: a DETR's queries) whose order carries no
    /// meaning where scores tie; backends may order tied rows differently, so comparisons align rows first.
    pub unordered_rows: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model {path}: could not load: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("model {path}: inference failed: {reason}")]
    Run { path: PathBuf, reason: String },
    #[error("model {path}: expected {want} inputs, got {have}")]
    InputCount { path: PathBuf, want: usize, have: usize },
    #[error("model {path}: input {name} expects shape {want:?} {dtype:?}, got {have:?} {have_dtype:?}")]
    InputMismatch { path: PathBuf, name: String, want: Vec<usize>, dtype: DType, have: Vec<usize>, have_dtype: DType },
    #[error("model {path}: output {name} has unsupported element type {dtype}")]
    OutputType { path: PathBuf, name: String, dtype: String },
    #[error("model {path}: produced {have} outputs, expected {want}")]
    OutputCount { path: PathBuf, want: usize, have: usize },
    #[error("tensor of shape {shape:?} cannot hold {len} elements")]
    ShapeMismatch { shape: Vec<usize>, len: usize },
    #[error("tensor holds {have:?}, expected {want:?}")]
    WrongDType { want: DType, have: DType },
    #[error("fake engine: {0}")]
    Fake(String),
    #[error("model {path}: output {name} has a dynamic dimension at run time (shape {shape:?}); pancap needs concrete output shapes")]
    DynamicDimension { path: PathBuf, name: String, shape: Vec<i64> },
    #[error("backend {backend} is not compiled into this build: rebuild with `--features {feature}`")]
    NotCompiled { backend: &'static str, feature: &'static str },
    #[error("backend {backend} is not available on this machine: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    #[error("model {path}: the CUDA runtime cannot take {count} op(s): {ops}; they would run on the CPU. \
             Use --allow-host-ops to run them there between GPU ops, or another backend")]
    HostOps { path: PathBuf, count: usize, ops: String },
    #[error("backend {backend} does not support {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}

/// One loaded model. `run` takes inputs in the spec's order and returns outputs in the spec's order.
pub trait Engine: Send {
    fn spec(&self) -> &ModelSpec;
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError>;
    /// Backend name for reports (e.g. `tract`).
    fn backend(&self) -> &'static str;
    /// What actually runs this model, for logs and reports: `tract`, `ort 1.31.1 CPUExecutionProvider`,
    /// `ort … TensorrtExecutionProvider fp16 + CUDAExecutionProvider`.
    fn provider(&self) -> String {
        self.backend().to_string()
    }
}

/// Checks inputs against the spec before any backend sees them.
pub(crate) fn check_inputs(spec: &ModelSpec, inputs: &[Tensor]) -> Result<(), EngineError> {
    if inputs.len() != spec.inputs.len() {
        return Err(EngineError::InputCount { path: spec.path.clone(), want: spec.inputs.len(), have: inputs.len() });
    }
    for (s, t) in spec.inputs.iter().zip(inputs) {
        if s.shape != t.shape || s.dtype != t.dtype() {
            return Err(EngineError::InputMismatch {
                path: spec.path.clone(),
                name: s.name.clone(),
                want: s.shape.clone(),
                dtype: s.dtype,
                have: t.shape.clone(),
                have_dtype: t.dtype(),
            });
        }
    }
    Ok(())
}

/// Which backend runs the models. Every variant parses in every build; asking for one that is not compiled in
/// is an error naming the missing feature, never a silent fallback to another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Pure-Rust tract on the CPU (always built).
    #[default]
    Tract,
    /// ONNX Runtime, CPU execution provider (`ort` feature).
    OrtCpu,
    /// ONNX Runtime, CUDA execution provider (`ort` feature, a CUDA-enabled ONNX Runtime library).
    OrtCuda,
    /// ONNX Runtime, TensorRT execution provider with CUDA for the nodes TensorRT does not take.
    #[serde(rename = "ort-tensorrt")]
    OrtTensorRt,
    /// tract's own CUDA runtime: the tract graph on an NVIDIA GPU through cuDNN, cuBLAS and NVRTC kernels
    /// (`cuda` or `cuda-12` feature; CUDA libraries loaded at run time).
    TractCuda,
}

impl Backend {
    pub const ALL: [Backend; 5] =
        [Backend::Tract, Backend::OrtCpu, Backend::OrtCuda, Backend::OrtTensorRt, Backend::TractCuda];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::OrtCpu => "ort-cpu",
            Backend::OrtCuda => "ort-cuda",
            Backend::OrtTensorRt => "ort-tensorrt",
            Backend::TractCuda => "tract-cuda",
        }
    }

    /// The cargo feature that compiles the backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Tract => "(always built)",
            Backend::OrtCpu | Backend::OrtCuda | Backend::OrtTensorRt => "ort",
            Backend::TractCuda => "cuda (CUDA 13) or cuda-12 (CUDA 12.6, JetPack 6)",
        }
    }

    /// Whether this build can run the backend at all (the library and providers are checked at load).
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Tract => true,
            Backend::OrtCpu | Backend::OrtCuda | Backend::OrtTensorRt => cfg!(feature = "ort"),
            Backend::TractCuda => cfg!(feature = "tract-cuda-runtime"),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
            format!("unknown backend {s:?} (expected one of {})", names.join(", "))
        })
    }
}

/// Numeric precision the models run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The provisioned FP32 models.
    #[default]
    Fp32,
    /// FP32 models built into FP16 TensorRT engines (TensorRT only).
    Fp16,
    /// The INT8 models `pancap quantize` wrote beside the FP32 ones (any backend; TensorRT also gets
    /// `trt_int8_enable` and builds from their Q/DQ nodes).
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision {s:?} (expected fp32, fp16 or int8)"))
    }
}

/// Everything that decides how models are run: backend, precision and the backend's own options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub precision: Precision,
    /// Threads for a model's CPU work: tract's matrix-product executor, ONNX Runtime's intra-op threads (none:
    /// one per core for tract, ONNX Runtime's default for ort).
    #[serde(default)]
    pub threads: Option<usize>,
    /// CUDA device for ort-cuda and ort-tensorrt (tract-cuda runs on device 0: choose it with
    /// CUDA_VISIBLE_DEVICES).
    #[serde(default)]
    pub device_id: u32,
    /// tract-cuda: let ops the CUDA runtime cannot take run on the CPU between GPU ops (each model's provider
    /// then names them). Off: such a model is an error naming the model and the ops.
    #[serde(default)]
    pub allow_host_ops: bool,
    /// The ONNX Runtime shared library (none: `ORT_DYLIB_PATH`).
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// TensorRT engine and timing caches, kept across runs (none: TensorRT rebuilds engines every start).
    #[serde(default)]
    pub trt_cache_dir: Option<PathBuf>,
    /// TensorRT builder workspace limit in MiB (none: TensorRT's default).
    #[serde(default)]
    pub trt_workspace_mib: Option<usize>,
    /// Run TensorRT layers on this deep-learning accelerator core (Jetson AGX Orin / Orin NX), GPU fallback on.
    #[serde(default)]
    pub trt_dla_core: Option<u32>,
    /// The precision each backend runs at when a run switches to it (`--backend`, `profile --compare BACKEND`
    /// without `/PRECISION`): a target whose INT8 pays only on TensorRT says so here, so switching it to a CPU
    /// backend does not carry a slower INT8 along. Backends not listed take `precision`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub precision_by_backend: std::collections::BTreeMap<Backend, Precision>,
}

impl BackendConfig {
    pub fn new(backend: Backend) -> Self {
        BackendConfig { backend, ..BackendConfig::default() }
    }

    /// Rejects combinations that cannot mean what was asked, before anything loads.
    pub fn validate(&self) -> Result<(), EngineError> {
        if !self.backend.compiled_in() {
            return Err(EngineError::NotCompiled { backend: self.backend.name(), feature: self.backend.feature() });
        }
        self.validate_settings()
    }

    /// The checks of `validate` that do not depend on this build (target profiles name ort backends in any build).
    pub fn validate_settings(&self) -> Result<(), EngineError> {
        if self.threads == Some(0) {
            return Err(EngineError::Unsupported { backend: self.backend.name(), what: "0 threads (--threads must be at least 1)".into() });
        }
        if self.precision == Precision::Fp16 && self.backend != Backend::OrtTensorRt {
            return Err(EngineError::Unsupported {
                backend: self.backend.name(),
                what: "fp16 (it is a TensorRT build option; use --backend ort-tensorrt, or fp32/int8 models)".into(),
            });
        }
        if self.backend == Backend::TractCuda && self.device_id != 0 {
            return Err(EngineError::Unsupported {
                backend: self.backend.name(),
                what: format!(
                    "device id {} (tract-cuda runs on CUDA device 0; pick the GPU with CUDA_VISIBLE_DEVICES={})",
                    self.device_id, self.device_id
                ),
            });
        }
        if self.allow_host_ops && self.backend != Backend::TractCuda {
            return Err(EngineError::Unsupported { backend: self.backend.name(), what: "--allow-host-ops (a tract-cuda option)".into() });
        }
        let trt_only = [
            (self.trt_cache_dir.is_some(), "a TensorRT cache directory"),
            (self.trt_workspace_mib.is_some(), "a TensorRT workspace size"),
            (self.trt_dla_core.is_some(), "a DLA core"),
        ];
        if self.backend != Backend::OrtTensorRt {
            if let Some((_, what)) = trt_only.iter().find(|(set, _)| *set) {
                return Err(EngineError::Unsupported { backend: self.backend.name(), what: (*what).into() });
            }
        }
        Ok(())
    }

    /// The same settings on another backend: what applies to any backend (precision, threads, device, library)
    /// carries over, TensorRT's own options only to TensorRT, tract-cuda's only to tract-cuda.
    pub fn switched_to(&self, backend: Backend) -> BackendConfig {
        let trt = backend == Backend::OrtTensorRt;
        BackendConfig {
            backend,
            precision: self.precision_by_backend.get(&backend).copied().unwrap_or(self.precision),
            allow_host_ops: self.allow_host_ops && backend == Backend::TractCuda,
            trt_cache_dir: self.trt_cache_dir.clone().filter(|_| trt),
            trt_workspace_mib: self.trt_workspace_mib.filter(|_| trt),
            trt_dla_core: self.trt_dla_core.filter(|_| trt),
            ..self.clone()
        }
    }

    /// Short label for reports: `ort-tensorrt/fp16`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.backend, self.precision)
    }
}

/// Books every run's allocations as engine allocations (see `alloc_count`).
struct Counted<E>(E);

impl<E: Engine> Engine for Counted<E> {
    fn spec(&self) -> &ModelSpec {
        self.0.spec()
    }
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        crate::alloc_count::in_engine(|| self.0.run(inputs))
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn provider(&self) -> String {
        self.0.provider()
    }
}

/// How a pipeline loads its models: `load`, or a wrapper of it (backend equivalence mirrors every model).
pub type Loader = std::sync::Arc<dyn Fn(&BackendConfig, ModelSpec) -> Result<Box<dyn Engine>, EngineError> + Send + Sync>;

/// Loads a model on the chosen backend. The model file is taken as given: the caller picks the FP32 or INT8 file
/// for `config.precision`.
pub fn load(config: &BackendConfig, spec: ModelSpec) -> Result<Box<dyn Engine>, EngineError> {
    config.validate()?;
    let engine: Box<dyn Engine> = match config.backend {
        Backend::Tract => Box::new(Counted(TractEngine::load(spec, config.threads)?)),
        #[cfg(feature = "tract-cuda-runtime")]
        Backend::TractCuda => Box::new(Counted(TractEngine::load_cuda(spec, config.threads, config.allow_host_ops)?)),
        #[cfg(not(feature = "tract-cuda-runtime"))]
        Backend::TractCuda => return Err(EngineError::NotCompiled { backend: "tract-cuda", feature: Backend::TractCuda.feature() }),
        #[cfg(feature = "ort")]
        Backend::OrtCpu | Backend::OrtCuda | Backend::OrtTensorRt => Box::new(Counted(ort::OrtEngine::load(config, spec)?)),
        #[cfg(not(feature = "ort"))]
        other @ (Backend::OrtCpu | Backend::OrtCuda | Backend::OrtTensorRt) => {
            return Err(EngineError::NotCompiled { backend: other.name(), feature: "ort" })
        }
    };
    log::info!("model {} runs on {}", engine.spec().path.display(), engine.provider());
    Ok(engine)
}

/// The ONNX Runtime library this process would load (`--ort-lib`, else `ORT_DYLIB_PATH`), with the version it
/// reports once loaded; for `pancap backends` and error messages.
#[cfg(feature = "ort")]
pub use ort::{available_providers, runtime_info};

#[cfg(test)]
mod backend_config_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn switching_backend_keeps_portable_settings_and_drops_tensorrt_ones() {
        let trt = BackendConfig {
            precision: Precision::Int8,
            threads: Some(4),
            device_id: 1,
            trt_cache_dir: Some("/var/cache/pancap".into()),
            trt_workspace_mib: Some(1024),
            trt_dla_core: Some(0),
            ..BackendConfig::new(Backend::OrtTensorRt)
        };
        let cuda = trt.switched_to(Backend::OrtCuda);
        assert_eq!((cuda.backend, cuda.precision, cuda.threads, cuda.device_id), (Backend::OrtCuda, Precision::Int8, Some(4), 1));
        assert_eq!((cuda.trt_cache_dir.as_deref(), cuda.trt_workspace_mib, cuda.trt_dla_core), (None, None, None));
        assert_eq!(trt.switched_to(Backend::OrtTensorRt), trt);
        assert!(cuda.validate_settings().is_ok());
    }

    #[test]
    fn a_precision_per_backend_decides_what_a_switch_runs_at() {
        let trt = BackendConfig {
            precision: Precision::Int8,
            precision_by_backend: [(Backend::OrtCpu, Precision::Fp32), (Backend::Tract, Precision::Fp32)].into_iter().collect(),
            ..BackendConfig::new(Backend::OrtTensorRt)
        };
        assert_eq!(trt.switched_to(Backend::OrtCpu).precision, Precision::Fp32);
        assert_eq!(trt.switched_to(Backend::Tract).precision, Precision::Fp32);
        // not listed: the configured precision carries over
        assert_eq!(trt.switched_to(Backend::OrtCuda).precision, Precision::Int8);
        assert_eq!(trt.switched_to(Backend::OrtTensorRt).precision, Precision::Int8);
        // and back: a CPU config switched to TensorRT gets TensorRT's entry
        let cpu = trt.switched_to(Backend::OrtCpu);
        let back = BackendConfig { precision_by_backend: [(Backend::OrtTensorRt, Precision::Int8)].into_iter().collect(), ..cpu };
        assert_eq!(back.switched_to(Backend::OrtTensorRt).precision, Precision::Int8);
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(serde_json::to_value(b).unwrap(), b.name());
        }
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("cuda".parse::<Backend>().unwrap_err().contains("ort-cuda"));
    }
}

//! The engine seam: our own narrow trait and tensor type. Backend types (tract, ort) never leave this module.

mod fake;
mod tract;

pub use fake::FakeEngine;
pub use tract::TractEngine;

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
}

/// One loaded model. `run` takes inputs in the spec's order and returns outputs in the spec's order.
pub trait Engine: Send {
    fn spec(&self) -> &ModelSpec;
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError>;
    /// Backend name for reports (e.g. `tract`).
    fn backend(&self) -> &'static str;
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

/// Which backend runs the models. Only backends compiled into this build are listed; asking for another is a
/// configuration error raised by the CLI, never a silent fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    #[default]
    Tract,
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
}

/// Loads a model on the chosen backend.
pub fn load(backend: Backend, spec: ModelSpec) -> Result<Box<dyn Engine>, EngineError> {
    match backend {
        Backend::Tract => Ok(Box::new(Counted(TractEngine::load(spec)?))),
    }
}

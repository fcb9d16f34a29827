//! The default backend: pure-Rust tract on the CPU.

use super::{check_inputs, DType, Engine, EngineError, ModelSpec, Tensor, TensorData};
use std::sync::Mutex;
use tract_onnx::prelude::multithread::Executor;
use tract_onnx::prelude::*;

/// One execution state per engine, kept across runs (tract's `plan.run` would build a fresh one every call).
pub struct TractEngine {
    spec: ModelSpec,
    state: TypedSimpleState,
    threads: usize,
}

/// The executor for `threads` threads: tract's single-threaded default for one, else a thread pool shared by
/// every engine that asked for that many (a process holds one pool per thread count, not one per model).
fn executor_for(threads: usize) -> Option<Executor> {
    static POOLS: Mutex<Vec<(usize, Executor)>> = Mutex::new(Vec::new());
    if threads <= 1 {
        return None;
    }
    let mut pools = POOLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, e)) = pools.iter().find(|(n, _)| *n == threads) {
        return Some(e.clone());
    }
    let e = Executor::multithread_with_name(threads, "pancap-tract");
    pools.push((threads, e.clone()));
    Some(e)
}

/// The thread count tract uses when none is asked for: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

impl TractEngine {
    /// Loads and optimises the model for its declared input shapes, to run on `threads` threads (None: one per
    /// core).
    pub fn load(spec: ModelSpec, threads: Option<usize>) -> Result<Self, EngineError> {
        let threads = threads.unwrap_or_else(default_threads).max(1);
        let err = |e: anyhow_like::E| EngineError::Load { path: spec.path.clone(), reason: e.0 };
        let mut onnx = tract_onnx::onnx();
        if spec.ignore_declared_shapes {
            onnx = onnx.with_ignore_output_shapes(true).with_ignore_value_info(true);
        }
        let mut model = onnx.model_for_path(&spec.path).map_err(|e| err(e.into()))?;
        for (i, input) in spec.inputs.iter().enumerate() {
            let fact: InferenceFact = match input.dtype {
                DType::F32 => f32::fact(&input.shape).into(),
                DType::U8 => u8::fact(&input.shape).into(),
                DType::I32 => i32::fact(&input.shape).into(),
                DType::I64 => i64::fact(&input.shape).into(),
            };
            model = model.with_input_fact(i, fact).map_err(|e| err(e.into()))?;
        }
        let options = RunOptions { executor: executor_for(threads), ..RunOptions::default() };
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable_with_options(&options))
            .map_err(|e| err(e.into()))?;
        let state = plan.spawn().map_err(|e| err(e.into()))?;
        Ok(TractEngine { spec, state, threads })
    }
}

/// The value of one metadata entry (`metadata_props`) of an ONNX file, read without building the model (the
/// text recogniser keeps its dictionary there). Any backend's models are ONNX files, so this serves all of them.
pub fn onnx_metadata(path: &std::path::Path, key: &str) -> Result<Option<String>, EngineError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| EngineError::Load { path: path.to_path_buf(), reason: format!("{e:#}") })?;
    Ok(proto.metadata_props.into_iter().find(|p| p.key == key).map(|p| p.value))
}

/// Keeps tract's error type inside this file.
mod anyhow_like {
    pub struct E(pub String);
    impl From<tract_onnx::prelude::TractError> for E {
        fn from(e: tract_onnx::prelude::TractError) -> Self {
            E(format!("{e:#}"))
        }
    }
}

fn to_tract(t: &Tensor) -> TractResult<TValue> {
    let tensor = match &t.data {
        TensorData::F32(v) => tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?,
        TensorData::U8(v) => tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?,
        TensorData::I32(v) => tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?,
        TensorData::I64(v) => tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?,
    };
    Ok(tensor.into_tvalue())
}

fn from_tract(v: &TValue, spec: &ModelSpec, index: usize) -> Result<Tensor, EngineError> {
    let shape = v.shape().to_vec();
    let name = spec.outputs.get(index).cloned().unwrap_or_else(|| format!("#{index}"));
    let run_err = |e: TractError| EngineError::Run { path: spec.path.clone(), reason: format!("output {name}: {e:#}") };
    let data = match v.datum_type() {
        DatumType::F32 => TensorData::F32(v.to_plain_array_view::<f32>().map_err(run_err)?.iter().copied().collect()),
        DatumType::U8 => TensorData::U8(v.to_plain_array_view::<u8>().map_err(run_err)?.iter().copied().collect()),
        DatumType::I32 => TensorData::I32(v.to_plain_array_view::<i32>().map_err(run_err)?.iter().copied().collect()),
        DatumType::I64 => TensorData::I64(v.to_plain_array_view::<i64>().map_err(run_err)?.iter().copied().collect()),
        other => {
            return Err(EngineError::OutputType { path: spec.path.clone(), name, dtype: format!("{other:?}") })
        }
    };
    Tensor::new(shape, data)
}

impl Engine for TractEngine {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        check_inputs(&self.spec, inputs)?;
        let run_err = |e: TractError| EngineError::Run { path: self.spec.path.clone(), reason: format!("{e:#}") };
        let values = inputs.iter().map(to_tract).collect::<TractResult<TVec<_>>>().map_err(run_err)?;
        let outputs = self.state.run(values).map_err(run_err)?;
        if !self.spec.outputs.is_empty() && outputs.len() != self.spec.outputs.len() {
            return Err(EngineError::OutputCount {
                path: self.spec.path.clone(),
                want: self.spec.outputs.len(),
                have: outputs.len(),
            });
        }
        outputs.iter().enumerate().map(|(i, v)| from_tract(v, &self.spec, i)).collect()
    }

    fn backend(&self) -> &'static str {
        "tract"
    }

    fn provider(&self) -> String {
        match self.threads {
            1 => "tract, 1 thread".into(),
            n => format!("tract, {n} threads"),
        }
    }
}

//! The default backend: pure-Rust tract on the CPU; and tract's CUDA runtime on an NVIDIA GPU (`tract-cuda`).

use super::{check_inputs, DType, Engine, EngineError, ModelSpec, Tensor, TensorData};
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::multithread::Executor;
use tract_onnx::prelude::*;

/// One execution state per engine, kept across runs (tract's `plan.run` would build a fresh one every call).
pub struct TractEngine {
    spec: ModelSpec,
    state: Box<dyn State>,
    backend: &'static str,
    provider: String,
}

/// The executor for `threads` threads: tract's single-threaded default for one, else a thread pool shared by
/// every engine that asked for that many (a process holds one pool per thread count, not one per model).
fn executor_for(threads: usize) -> Result<Option<Executor>, String> {
    static POOLS: Mutex<Vec<(usize, Executor)>> = Mutex::new(Vec::new());
    if threads <= 1 {
        return Ok(None);
    }
    let mut pools = POOLS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, e)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Some(e.clone()));
    }
    // tract's own constructor, plus a start handler: the pool's threads run only engine work, so their
    // allocations are booked inside the engines (`alloc_count`)
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|n| format!("pancap-tract-{n}"))
        .num_threads(threads)
        .start_handler(|_| crate::alloc_count::mark_engine_thread())
        .build();
    let e = Executor::MultiThread(Arc::new(pool.map_err(|e| format!("cannot start tract's {threads}-thread pool: {e}"))?));
    pools.push((threads, e.clone()));
    Ok(Some(e))
}

/// The thread count tract uses when none is asked for: the machine's cores. Asked of the system once (on Linux
/// `available_parallelism` reads the cgroup quota files, three heap allocations a call, and the pipeline asks
/// every frame).
pub fn default_threads() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1))
}

impl TractEngine {
    /// Loads and optimises the model for its declared input shapes, to run on `threads` threads (None: one per
    /// core).
    pub fn load(spec: ModelSpec, threads: Option<usize>) -> Result<Self, EngineError> {
        Ok(Self::load_cpu(spec, threads, false)?.0)
    }

    /// Loads the model for the CPU with the graph rewrites the CUDA path applies (max pools and downsamples as
    /// pads, slices, `max` and reshapes), and says how many ops were rewritten: checks those rewrites on any
    /// machine, since they must not change an output.
    pub fn load_with_gpu_rewrites(spec: ModelSpec, threads: Option<usize>) -> Result<(Self, usize), EngineError> {
        Self::load_cpu(spec, threads, true)
    }

    fn load_cpu(spec: ModelSpec, threads: Option<usize>, gpu_rewrites: bool) -> Result<(Self, usize), EngineError> {
        let threads = threads.unwrap_or_else(default_threads).max(1);
        let (plan, rewritten) = cpu_plan(&spec, threads, gpu_rewrites, true)?;
        let state = plan.spawn().map_err(|e| EngineError::Load { path: spec.path.clone(), reason: format!("{e:#}") })?;
        let mut provider = match threads {
            1 => "tract, 1 thread".to_string(),
            n => format!("tract, {n} threads"),
        };
        if gpu_rewrites {
            provider.push_str(&format!(", {rewritten} op(s) rewritten for the GPU"));
        }
        Ok((TractEngine { spec, state: Box::new(state), backend: "tract", provider }, rewritten))
    }

    /// Loads the model onto CUDA device 0 through tract's CUDA runtime. Fails, naming what is missing, when the
    /// driver or a CUDA library cannot be loaded; and, unless `allow_host_ops`, when an op of the model would be
    /// left on the CPU. `threads` serves those host ops.
    #[cfg(feature = "tract-cuda-runtime")]
    pub fn load_cuda(spec: ModelSpec, threads: Option<usize>, allow_host_ops: bool) -> Result<Self, EngineError> {
        let device = cuda::device()?;
        let threads = threads.unwrap_or_else(default_threads).max(1);
        let err = |e: anyhow_like::E| EngineError::Load { path: spec.path.clone(), reason: e.0 };
        let mut model = typed_model(&spec)?.into_decluttered().map_err(|e| err(e.into()))?;
        super::gpu_rewrite::rewrite_for_cuda(&mut model).map_err(|e| err(e.into()))?;
        let executor = executor_for(threads).map_err(|reason| EngineError::Load { path: spec.path.clone(), reason })?;
        let options = RunOptions { executor, ..RunOptions::default() };
        let runnable = cuda::prepare(model, &options).map_err(|e| err(e.into()))?;
        let host = cuda::host_ops(runnable.as_ref());
        if !host.is_empty() && !allow_host_ops {
            return Err(EngineError::HostOps { path: spec.path.clone(), count: host.count(), ops: host.to_string() });
        }
        let state = runnable.spawn().map_err(|e| err(e.into()))?;
        let provider = if host.is_empty() {
            format!("tract-cuda {device}")
        } else {
            format!("tract-cuda {device}, {} op(s) on the CPU: {host}", host.count())
        };
        Ok(TractEngine { spec, state, backend: "tract-cuda", provider })
    }
}

/// The CPU plan of a model as `TractEngine` runs it (with pancap's versions of slow tract ops unless
/// `pancap_ops` is false), and how many ops the GPU rewrites changed.
fn cpu_plan(
    spec: &ModelSpec,
    threads: usize,
    gpu_rewrites: bool,
    pancap_ops: bool,
) -> Result<(Arc<TypedSimplePlan>, usize), EngineError> {
    let err = |e: anyhow_like::E| EngineError::Load { path: spec.path.clone(), reason: e.0 };
    let mut model = typed_model(spec)?;
    let mut rewritten = 0;
    if gpu_rewrites {
        model = model.into_decluttered().map_err(|e| err(e.into()))?;
        rewritten = super::gpu_rewrite::rewrite_for_cuda(&mut model).map_err(|e| err(e.into()))?;
    }
    let executor = executor_for(threads).map_err(|reason| EngineError::Load { path: spec.path.clone(), reason })?;
    let options = RunOptions { executor, ..RunOptions::default() };
    // tract's x86 depthwise kernel takes unit strides only: a strided one walks one point and one tap at a time
    if pancap_ops {
        if !gpu_rewrites {
            model = model.into_decluttered().map_err(|e| err(e.into()))?;
        }
        super::depthwise::replace_strided_depthwise(&mut model).map_err(|e| err(e.into()))?;
    }
    let mut model = model.into_optimized().map_err(|e| err(e.into()))?;
    // tract's Resize sweeps its last axis one element at a time through slices; its Reduce allocates per output
    // element; it broadcasts anything but a scalar or an equal shape through ndarray's dynamic-rank zip; its TopK
    // sorts every lane whole
    if pancap_ops {
        super::resize::replace_resizes(&mut model).map_err(|e| err(e.into()))?;
        super::reduce::replace_reduces(&mut model).map_err(|e| err(e.into()))?;
        super::binary::replace_broadcasts(&mut model).map_err(|e| err(e.into()))?;
        super::topk::replace_topks(&mut model).map_err(|e| err(e.into()))?;
    }
    let plan = model.into_runnable_with_options(&options).map_err(|e| err(e.into()))?;
    Ok((plan, rewritten))
}

/// Time spent in one op of a plan, summed over the runs of [`profile_ops`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    /// The node's name in the graph.
    pub node: String,
    /// The op's name (tract's: `Conv`, `OptMatMul`, `Add`, …).
    pub op: String,
    /// The shapes of its inputs and of its first output.
    pub inputs: Vec<Vec<usize>>,
    pub output: Vec<usize>,
    /// Wall time of the node's evaluation, all runs together.
    pub total: std::time::Duration,
}

/// Runs the model `runs` times on the CPU as `TractEngine` would and times every node: where a model's time goes
/// in tract (`examples/op_profile.rs`). With `pancap_ops` false the plan keeps tract's own ops where pancap runs
/// faster versions (`GridSample2d`, which replaces ops before optimisation, stays), to measure what those buy.
pub fn profile_ops(
    spec: &ModelSpec,
    threads: Option<usize>,
    inputs: &[Tensor],
    runs: usize,
    pancap_ops: bool,
) -> Result<Vec<OpTime>, EngineError> {
    check_inputs(spec, inputs)?;
    let threads = threads.unwrap_or_else(default_threads).max(1);
    let (plan, _) = cpu_plan(spec, threads, false, pancap_ops)?;
    let run_err = |e: TractError| EngineError::Run { path: spec.path.clone(), reason: format!("{e:#}") };
    let mut state = plan.spawn().map_err(run_err)?;
    let mut times: Vec<OpTime> = plan
        .model()
        .nodes()
        .iter()
        .map(|n| {
            let shape = |f: &TypedFact| f.shape.as_concrete().map(<[usize]>::to_vec).unwrap_or_default();
            let model = plan.model();
            OpTime {
                node: n.name.clone(),
                op: n.op().name().to_string(),
                inputs: n.inputs.iter().filter_map(|o| model.outlet_fact(*o).ok()).map(shape).collect(),
                output: n.outputs.first().map(|o| shape(&o.fact)).unwrap_or_default(),
                total: std::time::Duration::ZERO,
            }
        })
        .collect();
    // one untimed run first: the first run of a fresh state pays for its caches and first allocations
    for run in 0..=runs {
        let values = inputs.iter().map(to_tract).collect::<TractResult<TVec<_>>>().map_err(run_err)?;
        state
            .run_plan_with_eval(values, |ctx, op_state, node, input| {
                let start = std::time::Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                if let Some(t) = times.get_mut(node.id).filter(|_| run > 0) {
                    t.total += start.elapsed();
                }
                out
            })
            .map_err(run_err)?;
    }
    times.retain(|t| !t.total.is_zero());
    times.sort_by_key(|t| std::cmp::Reverse(t.total));
    Ok(times)
}

/// The model as a typed tract graph with the spec's input facts.
fn typed_model(spec: &ModelSpec) -> Result<TypedModel, EngineError> {
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
    let mut model = model.into_typed().map_err(|e| err(e.into()))?;
    // tract's own GridSample allocates per output element: the deformable-attention decoders (DEIMv2) spend most
    // of their time there
    super::grid_sample::replace_grid_samples(&mut model).map_err(|e| err(e.into()))?;
    Ok(model)
}

/// What a pancap op's computation gives back: its outputs, as tract's eval returns them.
pub(super) trait Outputs {
    fn into_outputs(self) -> TVec<TValue>;
}

impl Outputs for tract_onnx::prelude::Tensor {
    fn into_outputs(self) -> TVec<TValue> {
        tvec!(self.into_tvalue())
    }
}

impl Outputs for (tract_onnx::prelude::Tensor, tract_onnx::prelude::Tensor) {
    fn into_outputs(self) -> TVec<TValue> {
        tvec!(self.0.into_tvalue(), self.1.into_tvalue())
    }
}

/// The `Op`, `EvalOp` and `TypedOp` impls of a pancap op standing in for tract's op `self.inner`: named by
/// `name` (and described by `info`), evaluated by `self.compute(&inputs)` — `Ok(None)` hands the inputs to
/// tract's op — with tract's op's output facts (`Resize2d`, `Reduce1d`, `Broadcast2`, `SelectTopk`).
macro_rules! fallback_op {
    ($ty:ty, name: $name:expr, compute: $compute:ident $(, info: $info:expr)?) => {
        impl Op for $ty {
            fn name(&self) -> StaticName {
                let name: fn(&$ty) -> String = $name;
                name(self).into()
            }

            $(fn info(&self) -> TractResult<Vec<String>> {
                let info: fn(&$ty) -> String = $info;
                Ok(vec![info(self)])
            })?

            op_as_typed_op!();
        }

        impl EvalOp for $ty {
            fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                match self.$compute(&inputs)? {
                    Some(out) => Ok(super::tract::Outputs::into_outputs(out)),
                    None => self.inner.eval(ctx, inputs),
                }
            }

            op_out_of_plan!();
        }

        impl TypedOp for $ty {
            as_op!();

            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                self.inner.output_facts(inputs)
            }
        }
    };
}
pub(super) use fallback_op;

/// Puts the op `make` returns in place of every node whose op is an `O` (None keeps the node), and returns how
/// many it replaced: pancap's faster versions of tract ops (`GridSample2d`, `Resize2d`), same output facts.
pub(super) fn replace_ops<O: TypedOp>(
    model: &mut TypedModel,
    make: impl Fn(&TypedModel, usize, &O) -> TractResult<Option<Box<dyn TypedOp>>>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let Some(op) = model.nodes().get(id).and_then(|n| n.op_as::<O>()) else { continue };
        if let Some(fast) = make(model, id, op)? {
            model.node_mut(id).op = fast;
            replaced += 1;
        }
    }
    Ok(replaced)
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
        self.backend
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }
}

/// tract's CUDA runtime: device discovery with errors instead of the runtime's panics, preparation, and the ops a
/// prepared graph leaves on the host.
#[cfg(feature = "tract-cuda-runtime")]
mod cuda {
    use super::EngineError;
    use std::sync::OnceLock;
    use tract_gpu::fact::DeviceTypedFactExt;
    use tract_onnx::prelude::*;

    const BACKEND: &str = "tract-cuda";

    /// The name of CUDA device 0, after checking that the driver and every CUDA library tract-cuda needs load
    /// (once per process; the answer, good or bad, is kept).
    pub fn device() -> Result<String, EngineError> {
        static DEVICE: OnceLock<Result<String, String>> = OnceLock::new();
        DEVICE
            .get_or_init(|| {
                tract_cuda::utils::ensure_cuda_runtime_dependencies("tract-cuda cannot start")
                    .map_err(|e| format!("{e:#} (put the folders holding libcuda, libcudart, libnvrtc, libcublas and libcudnn on LD_LIBRARY_PATH)"))?;
                let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| format!("CUDA device 0: {e:?}"))?;
                ctx.name().map_err(|e| format!("CUDA device 0 name: {e:?}"))
            })
            .clone()
            .map_err(|reason| EngineError::Unavailable { backend: BACKEND, reason })
    }

    /// Translates the decluttered graph to CUDA ops and plans it. tract-cuda panics where it cannot build its
    /// context or kernels; the panic becomes an error here.
    pub fn prepare(model: TypedModel, options: &RunOptions) -> TractResult<Box<dyn Runnable>> {
        let runtime = runtime_for_name("cuda")?.ok_or_else(|| TractError::msg("tract's cuda runtime is not registered"))?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.prepare_with_options(model, options)))
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(TractError::msg(format!("the CUDA runtime failed while preparing the model: {why}")))
            })
    }

    /// The compute ops of a prepared graph that run on the host: not inputs, constants or device syncs, with an
    /// output that is not a device tensor. Counted by op name, in graph order.
    pub fn host_ops(runnable: &dyn Runnable) -> HostOps {
        let mut ops = HostOps::default();
        let Some(model) = runnable.typed_model() else { return ops };
        for node in model.nodes() {
            let name = node.op().name();
            let structural = node.op_is::<tract_onnx::tract_core::ops::source::TypedSource>()
                || node.op_is::<tract_onnx::tract_core::ops::konst::Const>()
                || name.starts_with("DeviceSync");
            if structural || node.outputs.iter().all(|o| o.fact.as_device_fact().is_some()) {
                continue;
            }
            ops.add(&name);
        }
        ops
    }

    /// Op names and how many nodes of each stay on the host.
    #[derive(Debug, Default)]
    pub struct HostOps(Vec<(String, usize)>);

    impl HostOps {
        fn add(&mut self, name: &str) {
            match self.0.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += 1,
                None => self.0.push((name.to_string(), 1)),
            }
        }
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        pub fn count(&self) -> usize {
            self.0.iter().map(|(_, c)| c).sum()
        }
    }

    impl std::fmt::Display for HostOps {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for (i, (name, count)) in self.0.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                match count {
                    1 => write!(f, "{sep}{name}")?,
                    n => write!(f, "{sep}{name} ×{n}")?,
                }
            }
            Ok(())
        }
    }
}

/// The CUDA device tract-cuda would run on, or why it cannot (for `pancap backends`).
#[cfg(feature = "tract-cuda-runtime")]
pub fn cuda_device() -> Result<String, EngineError> {
    cuda::device()
}

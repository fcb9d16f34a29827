//! ONNX Runtime through `ort` (feature `ort`): CPU, CUDA and TensorRT execution providers, chosen at run time.
//!
//! The ONNX Runtime library is loaded at run time (`load-dynamic`) from `--ort-lib` / `ORT_DYLIB_PATH`: the PyPI
//! `onnxruntime` wheel on x86 CPU, `onnxruntime-gpu` for CUDA/TensorRT, JetPack's build on a Jetson. Providers are
//! registered with error-on-failure and checked against the library's own list first, so asking for CUDA or
//! TensorRT where the library or the machine lacks it fails loudly instead of quietly running on the CPU.

use super::{check_inputs, Backend, BackendConfig, Engine, EngineError, ModelSpec, Precision, Tensor, TensorData};
use ort::ep::{ExecutionProvider, ExecutionProviderDispatch, CPU, CUDA, TensorRT};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The one ONNX Runtime environment of this process (ONNX Runtime allows one) and the library it came from.
struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
    version: String,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

const LIBRARY_HINT: &str = "point --ort-lib or ORT_DYLIB_PATH at libonnxruntime.so: the PyPI `onnxruntime` wheel's \
    onnxruntime/capi/libonnxruntime.so.<version> (CPU), `onnxruntime-gpu`'s for CUDA/TensorRT, or JetPack's \
    onnxruntime-gpu build on a Jetson";

fn library_path(config: &BackendConfig) -> Result<PathBuf, EngineError> {
    if let Some(p) = &config.ort_library {
        return Ok(p.clone());
    }
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(EngineError::Runtime(format!("no ONNX Runtime library given: {LIBRARY_HINT}"))),
    }
}

fn runtime(config: &BackendConfig) -> Result<&'static Runtime, EngineError> {
    let wanted = library_path(config)?;
    let rt = RUNTIME.get_or_init(|| {
        if !wanted.is_file() {
            return Err(format!("{}: no such file; {LIBRARY_HINT}", wanted.display()));
        }
        let builder = ort::init_from(&wanted).map_err(|e| format!("{}: cannot load: {e}; {LIBRARY_HINT}", wanted.display()))?;
        let env = builder
            .with_name("pancap")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("{}: cannot create the environment: {e}", wanted.display()))?;
        let version = library_version(&wanted).unwrap_or_else(|| build_version(ort::info()));
        Ok(Runtime { env, library: wanted.clone(), version })
    });
    let rt = rt.as_ref().map_err(|e| EngineError::Runtime(e.clone()))?;
    if rt.library != wanted {
        return Err(EngineError::Runtime(format!(
            "{} is already loaded in this process; cannot also load {}",
            rt.library.display(),
            wanted.display()
        )));
    }
    Ok(rt)
}

/// `libonnxruntime.so.1.31.1` → `1.31.1` (the file name of every ONNX Runtime release library on Linux).
fn library_version(path: &std::path::Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let v = name.split_once(".so.")?.1;
    (v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))).then(|| v.to_string())
}

/// `git-branch=rel-1.31.1, …` → `1.31.1`; `unknown version (git-commit-id=…)` when the build info does not say.
fn build_version(info: &str) -> String {
    let parts: Vec<&str> = info.split([',', ' ']).map(str::trim).collect();
    if let Some(v) = parts.iter().find_map(|p| p.strip_prefix("git-branch=rel-")) {
        return v.to_string();
    }
    match parts.iter().find(|p| p.starts_with("git-commit-id=")) {
        Some(c) => format!("unknown version ({c})"),
        None => "unknown version".into(),
    }
}

/// The library's version and its execution providers, for `pancap backends`.
pub fn runtime_info(config: &BackendConfig) -> Result<(PathBuf, String), EngineError> {
    let rt = runtime(config)?;
    Ok((rt.library.clone(), rt.version.clone()))
}

/// Execution providers the loaded library was built with (CPU, CUDA, TensorRT, …).
pub fn available_providers(config: &BackendConfig) -> Result<Vec<(&'static str, bool)>, EngineError> {
    runtime(config)?;
    let check = |name: &'static str, r: ort::Result<bool>| -> Result<(&'static str, bool), EngineError> {
        r.map(|ok| (name, ok)).map_err(|e| EngineError::Runtime(format!("cannot list providers: {e}")))
    };
    Ok(vec![
        check(CPU::NAME, CPU::is_available())?,
        check(CUDA::NAME, CUDA::is_available())?,
        check(TensorRT::NAME, TensorRT::is_available())?,
    ])
}

fn require<E: ExecutionProvider>(rt: &Runtime, backend: Backend) -> Result<(), EngineError> {
    let ok = E::is_available().map_err(|e| EngineError::Runtime(format!("cannot list providers: {e}")))?;
    if ok {
        return Ok(());
    }
    Err(EngineError::Runtime(format!(
        "backend {backend} needs {}, which the ONNX Runtime library {} (version {}) was not built with \
         (the PyPI `onnxruntime` wheel is CPU-only: use `onnxruntime-gpu`, or JetPack's build on a Jetson)",
        E::NAME,
        rt.library.display(),
        rt.version
    )))
}

/// `images:1x3x416x416,scale:1x2` for TensorRT's optimisation profile: our inputs have fixed shapes, so min, opt
/// and max are the same and TensorRT builds one engine per model.
fn profile_shapes(spec: &ModelSpec) -> String {
    spec.inputs
        .iter()
        .map(|i| format!("{}:{}", i.name, i.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The providers to register for this backend, error-on-failure, and how to describe them in reports.
fn providers(config: &BackendConfig, spec: &ModelSpec, rt: &Runtime) -> Result<(Vec<ExecutionProviderDispatch>, String), EngineError> {
    let device = i32::try_from(config.device_id).map_err(|_| EngineError::Unsupported {
        backend: config.backend.name(),
        what: format!("device id {}", config.device_id),
    })?;
    match config.backend {
        Backend::OrtCpu => {
            require::<CPU>(rt, config.backend)?;
            Ok((vec![CPU::default().build().error_on_failure()], CPU::NAME.to_string()))
        }
        Backend::OrtCuda => {
            require::<CUDA>(rt, config.backend)?;
            Ok((vec![CUDA::default().with_device_id(device).build().error_on_failure()], CUDA::NAME.to_string()))
        }
        Backend::OrtTensorRt => {
            require::<TensorRT>(rt, config.backend)?;
            require::<CUDA>(rt, config.backend)?;
            let shapes = profile_shapes(spec);
            let mut trt = TensorRT::default()
                .with_device_id(device)
                .with_fp16(config.precision == Precision::Fp16)
                .with_int8(config.precision == Precision::Int8)
                .with_profile_min_shapes(&shapes)
                .with_profile_opt_shapes(&shapes)
                .with_profile_max_shapes(&shapes);
            if let Some(dir) = &config.trt_cache_dir {
                std::fs::create_dir_all(dir).map_err(|e| EngineError::Runtime(format!("TensorRT cache {}: {e}", dir.display())))?;
                let dir = dir.display().to_string();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&dir);
            }
            if let Some(mib) = config.trt_workspace_mib {
                trt = trt.with_max_workspace_size(mib.saturating_mul(1 << 20));
            }
            if let Some(core) = config.trt_dla_core {
                trt = trt.with_dla(true).with_dla_core(core);
            }
            let label = format!("{} {} + {} for the rest", TensorRT::NAME, config.precision, CUDA::NAME);
            Ok((
                vec![trt.build().error_on_failure(), CUDA::default().with_device_id(device).build().error_on_failure()],
                label,
            ))
        }
        Backend::Tract | Backend::TractCuda => {
            Err(EngineError::Unsupported { backend: config.backend.name(), what: "ONNX Runtime providers".into() })
        }
    }
}

pub struct OrtEngine {
    spec: ModelSpec,
    session: Session,
    /// Output names in the model's order (used when the spec names none).
    model_outputs: Vec<String>,
    provider: String,
}

impl OrtEngine {
    pub fn load(config: &BackendConfig, spec: ModelSpec) -> Result<Self, EngineError> {
        let rt = runtime(config)?;
        let load_err = |reason: String| EngineError::Load { path: spec.path.clone(), reason };
        let (eps, provider) = providers(config, &spec, rt)?;
        let mut builder = Session::builder(&rt.env)
            .map_err(|e| load_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load_err(e.to_string()))?
            // ONNX Runtime's intra-op threads spin after each run by default: on a small board they take the cores
            // from whatever runs next (the stream's worker, another model, tract in `profile --compare`)
            .with_intra_op_spinning(false)
            .map_err(|e| load_err(e.to_string()))?
            .with_execution_providers(eps)
            .map_err(|e| load_err(format!("registering {provider}: {e}")))?;
        if let Some(n) = config.threads {
            builder = builder.with_intra_threads(n).map_err(|e| load_err(e.to_string()))?;
        }
        let session = match x86_u8_twin(config, &spec).map_err(load_err)? {
            Some(bytes) => builder.commit_from_memory(&bytes),
            None => builder.commit_from_file(&spec.path),
        }
        .map_err(|e| load_err(e.to_string()))?;
        let model_outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let model_inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if model_inputs.len() != spec.inputs.len() {
            return Err(EngineError::InputCount { path: spec.path.clone(), want: model_inputs.len(), have: spec.inputs.len() });
        }
        let threads = config.threads.map(|n| format!(", {n} thread{}", if n == 1 { "" } else { "s" })).unwrap_or_default();
        let provider = format!("ort {} {provider}{threads}", rt.version);
        Ok(OrtEngine { spec, session, model_outputs, provider })
    }
}

/// ONNX Runtime's CPU provider on x86-64 runs an INT8 model with int8 activations (`pancap quantize --method static`) from
/// its exact uint8 twin ([`super::u8_activations`]), which its integer kernels take; other models, backends and
/// machines load the file as it is. On a CPU without VNNI the twin's weights are uint8 too, so the kernels do not
/// saturate; they are slower there than the int8-weight ones (and than FP32 on the 2-core AVX2 dev box), which the
/// log says.
fn x86_u8_twin(config: &BackendConfig, spec: &ModelSpec) -> Result<Option<Vec<u8>>, String> {
    if !(cfg!(target_arch = "x86_64") && config.backend == Backend::OrtCpu && config.precision == Precision::Int8) {
        return Ok(None);
    }
    let bytes = std::fs::read(&spec.path).map_err(|e| e.to_string())?;
    let weights = super::u8_activations::Weights::for_this_cpu();
    let twin = super::u8_activations::to_u8_activations(&bytes, weights).map_err(|e| e.to_string())?;
    Ok(twin.map(|(bytes, report)| {
        log::info!("{}: {} activation zero points re-encoded as uint8 (+128) for the CPU provider", spec.path.display(), report.zero_points);
        if weights == super::u8_activations::Weights::Uint8 {
            log::warn!(
                "{}: this CPU has no VNNI, so ONNX Runtime's int8-weight kernels would saturate: {} weights re-encoded as uint8 \
                 (+128) too; their kernels are exact but slower, and FP32 may run faster here",
                spec.path.display(),
                report.weights
            );
        }
        bytes
    }))
}

fn input_value<'a>(t: &'a Tensor) -> ort::Result<SessionInputValue<'a>> {
    let shape = t.shape.clone();
    Ok(match &t.data {
        TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::U8(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::I32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
        TensorData::I64(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into(),
    })
}

fn output_tensor(value: &ort::value::DynValue, spec: &ModelSpec, name: &str) -> Result<Tensor, EngineError> {
    let run_err = |e: ort::Error| EngineError::Run { path: spec.path.clone(), reason: format!("output {name}: {e}") };
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(EngineError::OutputType { path: spec.path.clone(), name: name.to_string(), dtype: format!("{other:?}") })
        }
    };
    // an output's runtime shape is concrete; a negative (dynamic) dimension here is reported, never taken as 0
    let dims = |shape: &ort::value::Shape| -> Result<Vec<usize>, EngineError> {
        shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| EngineError::DynamicDimension { path: spec.path.clone(), name: name.to_string(), shape: shape.to_vec() }))
            .collect()
    };
    let (shape, data) = match ty {
        TensorElementType::Float32 => {
            let (s, d) = value.try_extract_tensor::<f32>().map_err(run_err)?;
            (dims(s)?, TensorData::F32(d.to_vec()))
        }
        TensorElementType::Uint8 => {
            let (s, d) = value.try_extract_tensor::<u8>().map_err(run_err)?;
            (dims(s)?, TensorData::U8(d.to_vec()))
        }
        TensorElementType::Int32 => {
            let (s, d) = value.try_extract_tensor::<i32>().map_err(run_err)?;
            (dims(s)?, TensorData::I32(d.to_vec()))
        }
        TensorElementType::Int64 => {
            let (s, d) = value.try_extract_tensor::<i64>().map_err(run_err)?;
            (dims(s)?, TensorData::I64(d.to_vec()))
        }
        other => {
            return Err(EngineError::OutputType { path: spec.path.clone(), name: name.to_string(), dtype: format!("{other:?}") })
        }
    };
    Tensor::new(shape, data)
}

impl Engine for OrtEngine {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        check_inputs(&self.spec, inputs)?;
        let path = self.spec.path.clone();
        let run_err = |e: ort::Error| EngineError::Run { path: path.clone(), reason: e.to_string() };
        let values = inputs.iter().map(input_value).collect::<ort::Result<Vec<_>>>().map_err(run_err)?;
        let outputs = self.session.run(values.as_slice()).map_err(run_err)?;
        let names: &[String] = if self.spec.outputs.is_empty() { &self.model_outputs } else { &self.spec.outputs };
        names
            .iter()
            .map(|name| {
                let value = outputs.get(name.as_str()).ok_or_else(|| EngineError::Run {
                    path: self.spec.path.clone(),
                    reason: format!("the model has no output named {name} (it has {})", self.model_outputs.join(", ")),
                })?;
                output_tensor(value, &self.spec, name)
            })
            .collect()
    }

    fn backend(&self) -> &'static str {
        "ort"
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_file_names_and_build_info() {
        assert_eq!(library_version(std::path::Path::new("/x/libonnxruntime.so.1.31.1")).as_deref(), Some("1.31.1"));
        assert_eq!(library_version(std::path::Path::new("/x/libonnxruntime.so")), None);
        assert_eq!(build_version("ORT Build Info: git-branch=rel-1.20.1, git-commit-id=abc, build type=Release"), "1.20.1");
        assert_eq!(build_version("ORT Build Info: git-branch=HEAD, git-commit-id=6af1a93, build type=Release"), "unknown version (git-commit-id=6af1a93)");
    }
}

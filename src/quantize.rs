//! `pancap quantize` (host-only feature `quantize`, never in the device build): INT8 models from the FP32 ones
//! with quantize-rs, then a verification in this build's tract 0.23.9.
//!
//! Recipes:
//! - `weights`: per-channel symmetric INT8 weights (DequantizeLinear on every Conv/Gemm weight, zero point 0),
//!   activations stay FP32. Calibration images are not needed to make it; they measure its output error.
//! - `static`: the same weights plus INT8 activations on the Conv edges, their ranges calibrated by running the
//!   calibration images (with the runtime preprocessing) through the model. quantize-rs writes asymmetric
//!   activation ranges (non-zero zero points, which TensorRT rejects); `static` re-centres every activation
//!   range on zero (scale = max(|lo|, |hi|) / 127, zero point 0) so the graph stays TensorRT-compatible.
//!
//! Verification: the INT8 model must load and run in tract 0.23.9 (quantize-rs calibrates with its own tract
//! 0.21, which runs some graphs silently wrong: only our tract's numbers are reported); output error against
//! FP32 over the verification images; every Q/DQ zero point checked; detector AP before and after on annotated
//! images.

use crate::engine::{self, BackendConfig, EngineError, Precision, Tensor};
use crate::eval::{coco_map, CocoInstances, MapReport};
use crate::models::quantized::{self, Int8Record, MapChange, Recipe, Verification};
use crate::models::{self, Manifest, ProvisionError, Role};
use crate::perceive::{model_inputs, PerceiveError};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineError};
use crate::source::{self, DecodeLimits, SourceError};
use crate::caption::CocoResult;
use prost::Message;
use quantize_rs::onnx_proto::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto};
use quantize_rs::{quantize_static, CalibrationDataset, OnnxModel, QuantConfig, Quantizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Weights,
    Static,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{model}: quantize-rs: {reason}")]
    Tool { model: String, reason: String },
    #[error("{model}: {reason}")]
    Unsupported { model: String, reason: String },
    #[error("{path}: not a readable ONNX model: {reason}")]
    Onnx { path: PathBuf, reason: String },
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Int8(#[from] quantized::Int8Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Perceive(#[from] PerceiveError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<PipelineError> for QuantizeError {
    fn from(e: PipelineError) -> Self {
        QuantizeError::Pipeline(Box::new(e))
    }
}

/// How `static` sets each activation's range from what the calibration images produced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum RangeMethod {
    /// The whole observed range.
    MinMax,
    /// Outliers clipped at this percentile of |x| (e.g. 99.99).
    Percentile(f32),
    /// The clip that minimises the KL divergence of the quantized histogram (TensorRT's entropy calibrator).
    Entropy,
    /// The clip that minimises the mean squared quantization error.
    Mse,
}

impl RangeMethod {
    fn tool(self) -> quantize_rs::calibration::methods::CalibrationMethod {
        use quantize_rs::calibration::methods::CalibrationMethod as C;
        match self {
            RangeMethod::MinMax => C::MinMax,
            RangeMethod::Percentile(p) => C::Percentile(p),
            RangeMethod::Entropy => C::Entropy,
            RangeMethod::Mse => C::MSE,
        }
    }

    pub fn describe(self) -> String {
        match self {
            RangeMethod::MinMax => "MinMax".into(),
            RangeMethod::Percentile(p) => format!("percentile {p}"),
            RangeMethod::Entropy => "entropy (KL)".into(),
            RangeMethod::Mse => "MSE".into(),
        }
    }
}

/// Annotated images for the AP check.
pub struct MapSet<'a> {
    pub name: String,
    pub instances: &'a CocoInstances,
    pub images_dir: &'a Path,
}

pub struct Job<'a> {
    pub model: &'a str,
    pub models_dir: &'a Path,
    pub method: Method,
    /// Calibration images (static activation ranges; output error for both recipes).
    pub calibration: &'a [PathBuf],
    /// How the calibration images are named in the record.
    pub calibration_names: &'a [String],
    pub map: Option<MapSet<'a>>,
    /// `static`: how activation ranges are set from the calibration images.
    pub ranges: RangeMethod,
    /// `static`: leave the first Conv (it reads the image) and the last ones (they write the outputs) in FP32.
    pub keep_edges_fp32: bool,
    /// `static`: re-centre activation ranges on zero (zero points 0: what TensorRT takes). Off: quantize-rs's
    /// asymmetric ranges stay (finer steps for one-sided activations; ONNX Runtime only).
    pub symmetric_activations: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuantizeError + '_ {
    move |source| QuantizeError::Io { path: path.to_path_buf(), source }
}

/// Quantizes one model, verifies it and writes it with its record under `<models>/int8/`.
pub fn quantize(job: &Job) -> Result<Int8Record, QuantizeError> {
    let manifest = Manifest::by_name(job.model).map_err(|e| QuantizeError::Unsupported { model: job.model.into(), reason: e.to_string() })?;
    for r in models::verify(&manifest.files(), job.models_dir) {
        r?;
    }
    let src = manifest.path_in(job.models_dir);
    let tool = |e: quantize_rs::QuantizeError| QuantizeError::Tool { model: job.model.into(), reason: e.to_string() };
    if manifest.quantized {
        return Err(QuantizeError::Unsupported {
            model: job.model.into(),
            reason: "already quantized (it ships with Q/DQ nodes); it runs as it is at every precision".into(),
        });
    }
    let dest = quantized::int8_path(job.models_dir, &manifest.file);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = dest.with_extension(format!("partial-{}.onnx", std::process::id()));
    // every input of the model per image, preprocessed exactly as at run time
    let samples: Vec<Vec<Tensor>> = job
        .calibration
        .iter()
        .map(|p| -> Result<Vec<Tensor>, QuantizeError> {
            let frame = source::read_image(p, &DecodeLimits::default())?;
            Ok(model_inputs(&frame.rgb, &manifest)?.0)
        })
        .collect::<Result<_, _>>()?;
    let mut config = QuantConfig::int8().with_per_channel(true).with_symmetric(true);
    let mut kept_fp32 = Vec::new();
    if job.method == Method::Static {
        let source = read_model(&src)?;
        let opset = opset_of(&source);
        if opset < 13 {
            let copy = Manifest::all()
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.derived_from.as_ref().is_some_and(|d| d.model == manifest.name))
                .map(|m| format!("; its opset-13 copy is `{}`: run `pancap quantize --method static --models {}`", m.name, m.name))
                .unwrap_or_default();
            return Err(QuantizeError::Unsupported {
                model: job.model.into(),
                reason: format!("opset {opset}: quantize-rs calibrates activations only for opset >= 13 graphs{copy}"),
            });
        }
        config.calibration_method = Some(job.ranges.tool());
        if job.keep_edges_fp32 {
            kept_fp32 = edge_conv_weights(&source);
            config.excluded_layers = kept_fp32.clone();
        }
    }
    let result = (|| -> Result<(), QuantizeError> {
        match job.method {
            Method::Weights => {
                let mut model = OnnxModel::load(&src).map_err(tool)?;
                let outputs = Quantizer::new(config).quantize_model(&model).map_err(tool)?;
                let qdq: Vec<_> = outputs.into_iter().map(|o| o.qdq).collect();
                model.save_quantized(&qdq, &tmp).map_err(tool)?;
                upgrade_split_nodes(&tmp)?;
            }
            Method::Static => {
                if samples.is_empty() {
                    return Err(QuantizeError::Unsupported { model: job.model.into(), reason: "static calibration needs calibration images".into() });
                }
                let images: Vec<&Tensor> = samples.iter().filter_map(|s| s.first()).collect();
                let data: Vec<Vec<f32>> = images.iter().map(|t| t.as_f32().map(<[f32]>::to_vec)).collect::<Result<_, _>>()?;
                // one sample's shape without the batch dimension
                let shape = images.first().map(|t| t.shape.iter().skip(1).copied().collect()).unwrap_or_default();
                let dataset = CalibrationDataset::from_samples(data, shape).map_err(tool)?;
                let (src_s, tmp_s) = (src.to_string_lossy(), tmp.to_string_lossy());
                quantize_static(&src_s, &tmp_s, &dataset, config).map_err(tool)?;
                upgrade_split_nodes(&tmp)?;
                if job.symmetric_activations {
                    symmetrise_activations(&tmp)?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;

    let mut verification = verify(&manifest, job.models_dir, &src, &dest, &samples)?;
    let sha256 = models::sha256_of(&dest)?;
    let mut record = Int8Record {
        model: manifest.name.clone(),
        source_file: manifest.file.clone(),
        source_sha256: manifest.sha256.clone(),
        sha256,
        recipe: Recipe {
            tool: format!("quantize-rs {}", quantize_rs::VERSION),
            method: match job.method {
                Method::Weights => "per-channel symmetric INT8 weights; FP32 activations".into(),
                Method::Static => format!(
                    "per-channel symmetric INT8 weights; INT8 Conv activations calibrated ({}){}{}",
                    job.ranges.describe(),
                    if job.symmetric_activations { " and re-centred to zero point 0" } else { ", asymmetric (not for TensorRT)" },
                    if kept_fp32.is_empty() { String::new() } else { format!("; FP32 kept for the edge Convs' weights {}", kept_fp32.join(", ")) }
                ),
            },
            calibration_images: job.calibration_names.to_vec(),
        },
        verification: verification.clone(),
    };
    // the record must exist before the pipeline can load the INT8 model for the AP check
    quantized::write_record(job.models_dir, &record)?;
    if let (Some(set), Role::Detector) = (&job.map, manifest.role) {
        let fp32 = detector_map(&manifest, job.models_dir, Precision::Fp32, set)?;
        let int8 = detector_map(&manifest, job.models_dir, Precision::Int8, set)?;
        verification.map = Some(MapChange {
            annotations: set.name.clone(),
            images: set.instances.images.len(),
            fp32_ap: fp32.ap,
            int8_ap: int8.ap,
            fp32_ap50: fp32.ap50,
            int8_ap50: int8.ap50,
        });
        record.verification = verification;
        quantized::write_record(job.models_dir, &record)?;
    }
    Ok(record)
}

fn verify(manifest: &Manifest, models_dir: &Path, fp32: &Path, int8: &Path, samples: &[Vec<Tensor>]) -> Result<Verification, QuantizeError> {
    let (qdq_nodes, nonzero_zero_points) = zero_points(int8)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(io(p));
    let spec = manifest.model_spec(models_dir);
    let tract = BackendConfig::default();
    let mut reference = engine::load(&tract, spec.clone())?;
    let quantized = engine::load(&tract, engine::ModelSpec { path: int8.to_path_buf(), ..spec });
    let (mut loads, mut max_err, mut sum_err, mut n) = (true, 0.0f64, 0.0f64, 0usize);
    match quantized {
        Err(e) => {
            log::warn!("{}: the INT8 model does not load in tract: {e}", manifest.name);
            loads = false;
        }
        Ok(mut q) => {
            for s in samples {
                let a = reference.run(s)?;
                let b = match q.run(s) {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("{}: the INT8 model fails in tract: {e}", manifest.name);
                        loads = false;
                        break;
                    }
                };
                for (x, y) in a.iter().zip(&b) {
                    if let (Ok(x), Ok(y)) = (x.as_f32(), y.as_f32()) {
                        for (p, q) in x.iter().zip(y) {
                            let d = f64::from((p - q).abs());
                            max_err = max_err.max(d);
                            sum_err += d;
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(Verification {
        loads_in_tract: loads,
        max_abs_error: max_err,
        mean_abs_error: if n > 0 { sum_err / n as f64 } else { 0.0 },
        zero_points_all_zero: nonzero_zero_points == 0,
        qdq_nodes,
        nonzero_zero_points,
        map: None,
        fp32_bytes: size(fp32)?,
        int8_bytes: size(int8)?,
    })
}

/// This detector alone (no stuff, no discovery) over the annotated images: COCO bbox AP.
fn detector_map(manifest: &Manifest, models_dir: &Path, precision: Precision, set: &MapSet) -> Result<MapReport, QuantizeError> {
    let cfg = PipelineConfig {
        models_dir: models_dir.to_path_buf(),
        backend: BackendConfig { precision, ..BackendConfig::default() },
        detectors: vec![manifest.name.clone()],
        segmenter: None,
        person_segmenter: None,
        pose: None,
        text_reader: None,
        discovery: None,
        ..PipelineConfig::default()
    };
    let mut pipeline = Pipeline::load(cfg)?;
    let mut results = Vec::new();
    for image in &set.instances.images {
        let frame = source::read_image(&set.images_dir.join(&image.file_name), &DecodeLimits::default())?;
        let r = pipeline.process(&frame, Default::default())?;
        results.extend(r.ranking.iter().map(|b| CocoResult::new(image.id, b)));
    }
    Ok(coco_map(set.instances, &results))
}

fn opset_of(model: &ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version)
}

/// The weight initializers of the Convs at the graph's edges: those reading a graph input directly (the first
/// layer sees raw pixels) and those whose output reaches a graph output through no other Conv (the heads).
fn edge_conv_weights(model: &ModelProto) -> Vec<String> {
    let Some(graph) = &model.graph else { return Vec::new() };
    let inputs: std::collections::HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let outputs: std::collections::HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut consumers: std::collections::HashMap<&str, Vec<&NodeProto>> = std::collections::HashMap::new();
    for n in &graph.node {
        for i in &n.input {
            consumers.entry(i.as_str()).or_default().push(n);
        }
    }
    // does this tensor reach a graph output without passing another Conv?
    let reaches_output = |start: &str| -> bool {
        let mut stack = vec![start];
        let mut seen = std::collections::HashSet::new();
        while let Some(t) = stack.pop() {
            if outputs.contains(t) {
                return true;
            }
            if !seen.insert(t) {
                continue;
            }
            for n in consumers.get(t).map(Vec::as_slice).unwrap_or_default() {
                if n.op_type != "Conv" {
                    stack.extend(n.output.iter().map(String::as_str));
                }
            }
        }
        false
    };
    let mut names = Vec::new();
    for n in graph.node.iter().filter(|n| n.op_type == "Conv") {
        let first = n.input.first().is_some_and(|i| inputs.contains(i.as_str()));
        let last = n.output.iter().any(|o| reaches_output(o));
        if let (true, Some(w)) = (first || last, n.input.get(1)) {
            names.push(w.clone());
        }
    }
    names
}

fn read_model(path: &Path) -> Result<ModelProto, QuantizeError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| QuantizeError::Onnx { path: path.to_path_buf(), reason: e.to_string() })
}

fn is_qdq(node: &NodeProto) -> bool {
    node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear"
}

/// The integer values of a zero-point tensor (int8/uint8/int32 storage, raw or typed).
fn integer_values(t: &TensorProto) -> Vec<i64> {
    let signed = t.data_type == DataType::Int8 as i32;
    if !t.raw_data.is_empty() {
        return t.raw_data.iter().map(|&b| if signed { i64::from(b as i8) } else { i64::from(b) }).collect();
    }
    t.int32_data.iter().map(|&v| i64::from(v)).collect()
}

/// Q/DQ nodes in the graph and how many of them carry a non-zero zero point (absent means 0).
pub fn zero_points(path: &Path) -> Result<(usize, usize), QuantizeError> {
    let model = read_model(path)?;
    let Some(graph) = model.graph else { return Ok((0, 0)) };
    let tensor = |name: &str| -> Option<TensorProto> {
        if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
            return Some(t.clone());
        }
        graph
            .node
            .iter()
            .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == name))
            .and_then(|n| n.attribute.iter().find(|a| a.name == "value"))
            .and_then(|a| a.t.clone())
    };
    let (mut nodes, mut nonzero) = (0, 0);
    for node in graph.node.iter().filter(|n| is_qdq(n)) {
        nodes += 1;
        if let Some(name) = node.input.get(2).filter(|n| !n.is_empty()) {
            let zero = tensor(name).map(|t| integer_values(&t).iter().all(|&v| v == 0)).unwrap_or(false);
            if !zero {
                nonzero += 1;
            }
        }
    }
    Ok((nodes, nonzero))
}

fn float_values(t: &TensorProto) -> Vec<f32> {
    if !t.raw_data.is_empty() {
        return t.raw_data.chunks_exact(4).filter_map(|c| <[u8; 4]>::try_from(c).ok()).map(f32::from_le_bytes).collect();
    }
    t.float_data.clone()
}

/// Re-centres every activation Q/DQ range on zero: the range `[s(-128 - z), s(127 - z)]` becomes
/// `[-m, m]` with `m = max(|lo|, |hi|)`, scale `m / 127`, zero point 0 (int8). Weight Q/DQ pairs are already
/// symmetric and stay as they are. The range only grows, so nothing the calibration saw is clipped.
fn symmetrise_activations(path: &Path) -> Result<(), QuantizeError> {
    let mut model = read_model(path)?;
    let onnx_err = |reason: String| QuantizeError::Onnx { path: path.to_path_buf(), reason };
    let graph = model.graph.as_mut().ok_or_else(|| onnx_err("no graph".into()))?;
    let pairs: Vec<(String, String)> = graph
        .node
        .iter()
        .filter(|n| is_qdq(n))
        .filter_map(|n| Some((n.input.get(1)?.clone(), n.input.get(2)?.clone())))
        .collect();
    let mut done = std::collections::HashSet::new();
    for (scale_name, zp_name) in pairs {
        if !done.insert(zp_name.clone()) {
            continue;
        }
        let Some(zp_idx) = graph.initializer.iter().position(|t| t.name == zp_name) else { continue };
        let Some(scale_idx) = graph.initializer.iter().position(|t| t.name == scale_name) else { continue };
        let zps = graph.initializer.get(zp_idx).map(integer_values).unwrap_or_default();
        if zps.iter().all(|&z| z == 0) {
            continue;
        }
        let scales = graph.initializer.get(scale_idx).map(float_values).unwrap_or_default();
        if scales.len() != zps.len() {
            return Err(onnx_err(format!("{scale_name}: {} scales for {} zero points", scales.len(), zps.len())));
        }
        let signed = graph.initializer.get(zp_idx).is_some_and(|t| t.data_type == DataType::Int8 as i32);
        let (qmin, qmax) = if signed { (-128.0f32, 127.0f32) } else { (0.0, 255.0) };
        let new_scales: Vec<f32> = scales
            .iter()
            .zip(&zps)
            .map(|(&s, &z)| {
                let (lo, hi) = (s * (qmin - z as f32), s * (qmax - z as f32));
                (lo.abs().max(hi.abs()) / 127.0).max(f32::MIN_POSITIVE)
            })
            .collect();
        if let Some(t) = graph.initializer.get_mut(scale_idx) {
            t.raw_data = new_scales.iter().flat_map(|v| v.to_le_bytes()).collect();
            t.float_data.clear();
        }
        if let Some(t) = graph.initializer.get_mut(zp_idx) {
            t.data_type = DataType::Int8 as i32;
            t.raw_data = vec![0; zps.len()];
            t.int32_data.clear();
        }
    }
    std::fs::write(path, model.encode_to_vec()).map_err(io(path))
}

/// quantize-rs raises the opset to 13 for per-channel DequantizeLinear but leaves opset-11 Split nodes with their
/// `split` attribute, which opset 13 moved to an input: ONNX Runtime rejects such a graph (tract accepts it).
/// Moves each such attribute into an int64 initializer input, as the opset-13 schema has it.
fn upgrade_split_nodes(path: &Path) -> Result<usize, QuantizeError> {
    let mut model = read_model(path)?;
    if opset_of(&model) < 13 {
        return Ok(0);
    }
    let Some(graph) = model.graph.as_mut() else { return Ok(0) };
    let mut added = Vec::new();
    for (i, node) in graph.node.iter_mut().enumerate().filter(|(_, n)| n.op_type == "Split") {
        let Some(pos) = node.attribute.iter().position(|a| a.name == "split") else { continue };
        let attr = node.attribute.remove(pos);
        let name = format!("pancap_split_sizes_{i}_{}", node.name);
        added.push(TensorProto {
            name: name.clone(),
            data_type: DataType::Int64 as i32,
            dims: vec![attr.ints.len() as i64],
            int64_data: attr.ints,
            ..Default::default()
        });
        node.input.truncate(1);
        node.input.push(name);
    }
    let n = added.len();
    graph.initializer.extend(added);
    if n > 0 {
        std::fs::write(path, model.encode_to_vec()).map_err(io(path))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use quantize_rs::onnx_proto::{AttributeProto, GraphProto, OperatorSetIdProto};

    fn tensor(name: &str, data_type: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto { name: name.into(), data_type: data_type as i32, raw_data: raw, ..Default::default() }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn write(graph: GraphProto, opset: i64) -> tempfile::NamedTempFile {
        let model = ModelProto {
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
            ..Default::default()
        };
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), model.encode_to_vec()).unwrap();
        f
    }

    #[test]
    fn activation_ranges_are_recentred_to_zero_point_zero_without_clipping() {
        // uint8 activation pair: scale 0.1, zero point 100 covers [-10.0, 15.5]
        let graph = GraphProto {
            node: vec![node("QuantizeLinear", &["x", "s", "z"], &["q"]), node("DequantizeLinear", &["q", "s", "z"], &["y"])],
            initializer: vec![tensor("s", DataType::Float, 0.1f32.to_le_bytes().to_vec()), tensor("z", DataType::Uint8, vec![100])],
            ..Default::default()
        };
        let f = write(graph, 13);
        assert_eq!(zero_points(f.path()).unwrap(), (2, 2));
        symmetrise_activations(f.path()).unwrap();
        assert_eq!(zero_points(f.path()).unwrap(), (2, 0));
        let g = read_model(f.path()).unwrap().graph.unwrap();
        let s = float_values(g.initializer.iter().find(|t| t.name == "s").unwrap())[0];
        assert!((s * 127.0 - 15.5).abs() < 1e-4, "new range ±{}", s * 127.0);
        let z = g.initializer.iter().find(|t| t.name == "z").unwrap();
        assert_eq!((z.data_type, integer_values(z)), (DataType::Int8 as i32, vec![0]));
    }

    #[test]
    fn opset_13_split_attributes_become_inputs() {
        let mut split = node("Split", &["x"], &["a", "b"]);
        split.attribute.push(AttributeProto { name: "split".into(), ints: vec![2, 3], ..Default::default() });
        let f = write(GraphProto { node: vec![split.clone()], ..Default::default() }, 13);
        assert_eq!(upgrade_split_nodes(f.path()).unwrap(), 1);
        let g = read_model(f.path()).unwrap().graph.unwrap();
        assert!(g.node[0].attribute.is_empty());
        let sizes = g.initializer.iter().find(|t| t.name == g.node[0].input[1]).unwrap();
        assert_eq!(sizes.int64_data, vec![2, 3]);
        // below opset 13 the attribute form is the right one and stays
        let f = write(GraphProto { node: vec![split], ..Default::default() }, 11);
        assert_eq!(upgrade_split_nodes(f.path()).unwrap(), 0);
    }
}

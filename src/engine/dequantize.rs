//! A float graph derived from a QDQ-quantized ONNX model (the uint8 ADE20K segmenter): tract 0.23.9 runs the
//! uint8 graph's 270 QuantizeLinear/DequantizeLinear nodes as separate element-wise passes around float
//! convolutions, which is most of its time; the same network in float needs none of them.
//!
//! The rewrite, at the ONNX level (deterministic: the same source bytes give the same result bytes):
//! - a DequantizeLinear of a constant (weights, int32 biases) becomes that constant in float, `(q − zp) · scale`
//!   per tensor or per channel;
//! - a QuantizeLinear of an activation becomes `Clip(x, (qmin − zp) · scale, (qmax − zp) · scale)`: the clamp
//!   is kept because these graphs express ReLU6 and ReLU only through the quantization range; the rounding to
//!   the uint8 grid is what is dropped;
//! - a DequantizeLinear of such a value (directly or through layout ops: Concat, Reshape, Transpose…) becomes
//!   Identity; its scale and zero point must be the ones the value was quantized with, else the rewrite refuses;
//! - a DequantizeLinear of a graph input (the uint8 image) stays: it is the input normalisation;
//! - the head after the last convolution (the logits' quantization, the upsampling, the ArgMax) stays as it
//!   is: the ArgMax then reads uint8 codes as in the source model and breaks ties the same way;
//! - or, with [`Head::LogitCodes`], the graph ends at the head's first QuantizeLinear: its output is the
//!   logits' uint8 codes at the last convolution's resolution, and the caller upsamples and takes the ArgMax
//!   (`perceive::stuff::upsample_argmax`, exact integer arithmetic). tract runs the head's bilinear Resize of
//!   32 channels to 512×512 through a generic per-axis resampler (with the float ArgMax after it, ~60 % of the
//!   float graph's time): the graph without its head runs in ~125 ms where the whole float graph took ~306 ms,
//!   and the upsample-and-ArgMax here takes ~3 ms.
//!
//! Measured on the 16 coco-val2017-dev photos, 2-core x86-64, tract 2 threads (examples in the issue-14 note):
//! the float graph runs in ~270–300 ms with its head, ~125 ms without (plus ~3 ms for the head here) against ~400 ms
//! for the uint8 graph, and labels 97.6 % of image pixels as the uint8 model on ONNX Runtime does (tract's own
//! uint8 run: 97.9 %). Alternatives measured: emulating the
//! rounding too (Mul, Round, Clip, Mul per quantization) agrees 100 % with tract's uint8 run but takes 352 ms;
//! fusing DQ→Conv→Q into QLinearConv (what ONNX Runtime does) runs 1,374 ms in tract 0.23.9's integer path.
//!
//! Any other op fed a quantized value refuses the rewrite, since it would compute on the uint8 codes.

use prost14::Message;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::{type_proto, ModelProto, NodeProto, TensorProto, TypeProto};

/// What the rewrite did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DequantizeReport {
    /// DequantizeLinear of constants folded into float constants.
    pub constants_folded: usize,
    /// QuantizeLinear nodes turned into Clip.
    pub quantize_to_clip: usize,
    /// DequantizeLinear nodes of activations turned into Identity.
    pub dequantize_to_identity: usize,
    /// QuantizeLinear nodes kept (the head, after the last convolution).
    pub quantize_kept: usize,
    /// DequantizeLinear nodes kept (of graph inputs and of the head's codes).
    pub dequantize_kept: usize,
    /// Nodes after the logits' codes left to the caller ([`Head::LogitCodes`]).
    pub head_nodes_cut: usize,
}

/// What becomes of the head after the last convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Kept as in the source (quantization, upsampling, ArgMax).
    Keep,
    /// The graph ends with the logits' uint8 codes (the head's first QuantizeLinear).
    LogitCodes,
}

#[derive(Debug, thiserror::Error)]
pub enum DequantizeError {
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("the model's ONNX opset {0} is older than 11 (Clip with tensor bounds)")]
    Opset(i64),
    #[error("node {node} ({op}): {reason}")]
    Node { node: String, op: String, reason: String },
    #[error("constant {name}: {reason}")]
    Constant { name: String, reason: String },
    #[error("cannot end the graph at the logits' codes: {0}")]
    Head(String),
}

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;

/// Ops that only move or select values: applied to quantized codes or to the values they stand for, they give
/// the same result (given one scale and zero point, which the DequantizeLinear after them checks).
const LAYOUT_OPS: [&str; 10] =
    ["Concat", "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split", "MaxPool"];

/// Rewrites the QDQ model in `bytes` into a float model; returns its bytes and what was rewritten.
pub fn dequantize_onnx(bytes: &[u8]) -> Result<(Vec<u8>, DequantizeReport), DequantizeError> {
    rewrite(bytes, Head::Keep)
}

/// [`dequantize_onnx`] with the graph ending at the logits' uint8 codes ([`Head::LogitCodes`]).
pub fn dequantize_to_logit_codes(bytes: &[u8]) -> Result<(Vec<u8>, DequantizeReport), DequantizeError> {
    rewrite(bytes, Head::LogitCodes)
}

fn rewrite(bytes: &[u8], head: Head) -> Result<(Vec<u8>, DequantizeReport), DequantizeError> {
    let mut model = ModelProto::decode(bytes).map_err(|e| DequantizeError::Decode(e.to_string()))?;
    let opset = model.opset_import.iter().filter(|o| o.domain.is_empty()).map(|o| o.version).max().unwrap_or(0);
    if opset < 11 {
        return Err(DequantizeError::Opset(opset));
    }
    let graph = model.graph.as_mut().ok_or(DequantizeError::NoGraph)?;
    let mut report = DequantizeReport::default();
    let constants: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    // values that now flow in float but stand for quantized codes: name -> (scale, zero point)
    let mut floated: HashMap<String, (f32, i32)> = HashMap::new();
    // values that are still real quantized codes: the graph inputs and the head's
    let mut codes: HashSet<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    let last_conv = graph.node.iter().rposition(|n| n.op_type == "Conv");
    let mut new_constants: Vec<TensorProto> = Vec::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    let total = graph.node.len();
    let mut codes_output: Option<String> = None;
    for (index, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if codes_output.is_some() {
            report.head_nodes_cut = total - index;
            break;
        }
        let fail = |reason: String| DequantizeError::Node { node: node.name.clone(), op: node.op_type.clone(), reason };
        let input = |i: usize| node.input.get(i).filter(|s| !s.is_empty());
        match node.op_type.as_str() {
            "DequantizeLinear" => {
                let x = input(0).ok_or_else(|| fail("no input".into()))?;
                if let Some(c) = constants.get(x.as_str()) {
                    let out = node.output.first().ok_or_else(|| fail("no output".into()))?;
                    new_constants.push(fold(&node, c, &constants, out).map_err(fail)?);
                    report.constants_folded += 1;
                } else if let Some(&(scale, zp)) = floated.get(x) {
                    let (s, z) = scalar_params(&node, &constants).map_err(fail)?;
                    if s != scale || z != zp {
                        return Err(fail(format!(
                            "dequantizes {x} with scale {s} zero point {z}, but it was quantized with {scale} / {zp}"
                        )));
                    }
                    nodes.push(NodeProto { op_type: "Identity".into(), input: vec![x.clone()], attribute: vec![], ..node });
                    report.dequantize_to_identity += 1;
                } else if codes.contains(x) {
                    report.dequantize_kept += 1;
                    nodes.push(node);
                } else {
                    return Err(fail(format!("dequantizes {x}, which is neither a constant nor a quantized value")));
                }
            }
            // the head (after the last convolution) stays quantized: the ArgMax then reads the same codes as in
            // the uint8 model and breaks its ties the same way
            "QuantizeLinear" if last_conv.is_some_and(|c| index > c) => {
                if head == Head::LogitCodes {
                    codes_output = Some(node.output.first().ok_or_else(|| fail("no output".into()))?.clone());
                }
                codes.extend(node.output.iter().cloned());
                report.quantize_kept += 1;
                nodes.push(node);
            }
            "QuantizeLinear" => {
                let x = input(0).ok_or_else(|| fail("no input".into()))?.clone();
                let out = node.output.first().ok_or_else(|| fail("no output".into()))?.clone();
                let (scale, zp) = scalar_params(&node, &constants).map_err(fail)?;
                let (qmin, qmax) = match input(2).and_then(|z| constants.get(z.as_str())).map(|t| t.data_type) {
                    Some(INT8) => (-128.0f32, 127.0f32),
                    Some(UINT8) | None => (0.0, 255.0),
                    Some(t) => return Err(fail(format!("zero point of element type {t}"))),
                };
                let lo = format!("{out}__pancap_clip_min");
                let hi = format!("{out}__pancap_clip_max");
                new_constants.push(float_scalar(&lo, (qmin - zp as f32) * scale));
                new_constants.push(float_scalar(&hi, (qmax - zp as f32) * scale));
                floated.insert(out, (scale, zp));
                nodes.push(NodeProto { op_type: "Clip".into(), input: vec![x, lo, hi], attribute: vec![], ..node });
                report.quantize_to_clip += 1;
            }
            op => {
                if let Some(first) = node.input.iter().find(|i| floated.contains_key(*i) || codes.contains(*i)) {
                    if !LAYOUT_OPS.contains(&op) {
                        if floated.contains_key(first) {
                            return Err(fail(format!("computes on the quantized value {first}")));
                        }
                    } else if let Some(&p) = floated.get(first) {
                        floated.extend(node.output.iter().map(|o| (o.clone(), p)));
                    } else {
                        codes.extend(node.output.iter().cloned());
                    }
                }
                nodes.push(node);
            }
        }
    }
    graph.node = nodes;
    if head == Head::LogitCodes {
        let name = codes_output.ok_or_else(|| DequantizeError::Head("no QuantizeLinear after the last convolution".into()))?;
        let [output] = graph.output.as_slice() else {
            return Err(DequantizeError::Head(format!("the graph has {} outputs, not one", graph.output.len())));
        };
        let mut output = output.clone();
        // uint8 codes; the shape is left for the backend to infer
        let tensor = type_proto::Tensor { elem_type: UINT8, shape: None };
        output.r#type = Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..TypeProto::default() });
        output.name = name;
        graph.output = vec![output];
    }
    // drop the constants no node reads any more (the uint8 weights, scales and zero points)
    let used: HashSet<&String> = graph.node.iter().flat_map(|n| n.input.iter()).collect();
    let mut initializers: Vec<TensorProto> =
        std::mem::take(&mut graph.initializer).into_iter().filter(|t| used.contains(&t.name)).collect();
    initializers.extend(new_constants.into_iter().filter(|t| used.contains(&t.name)));
    graph.initializer = initializers;
    // the declared intermediate types name uint8 where float now flows
    graph.value_info.clear();
    Ok((model.encode_to_vec(), report))
}

/// The scales and zero points of a (De)QuantizeLinear node (zero points 0 when it names none).
fn params(node: &NodeProto, constants: &HashMap<&str, &TensorProto>) -> Result<(Vec<f32>, Vec<i32>), String> {
    let scale = floats(node.input.get(1).and_then(|s| constants.get(s.as_str())).ok_or("scale is not a constant")?)?;
    let zp = match node.input.get(2).filter(|s| !s.is_empty()) {
        Some(z) => ints(constants.get(z.as_str()).ok_or("zero point is not a constant")?)?,
        None => vec![0; scale.len()],
    };
    if zp.len() != scale.len() {
        return Err(format!("{} scales but {} zero points", scale.len(), zp.len()));
    }
    Ok((scale, zp))
}

/// The per-tensor scale and zero point of a (De)QuantizeLinear node.
fn scalar_params(node: &NodeProto, constants: &HashMap<&str, &TensorProto>) -> Result<(f32, i32), String> {
    match params(node, constants)? {
        (scale, zp) if scale.len() == 1 => Ok((scale.first().copied().unwrap_or(1.0), zp.first().copied().unwrap_or(0))),
        (scale, _) => Err(format!("per-channel quantization of an activation ({} scales)", scale.len())),
    }
}

/// `(q − zp) · scale` of a constant, per tensor or along the node's `axis`.
fn fold(node: &NodeProto, q: &TensorProto, constants: &HashMap<&str, &TensorProto>, out: &str) -> Result<TensorProto, String> {
    let values = ints(q)?;
    let (scale, zp) = params(node, constants)?;
    let dims: Vec<usize> = q.dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d}"))).collect::<Result<_, _>>()?;
    let data: Vec<f32> = if scale.len() == 1 {
        let (s, z) = (scale.first().copied().unwrap_or(1.0), zp.first().copied().unwrap_or(0));
        values.iter().map(|&v| (v - z) as f32 * s).collect()
    } else {
        let rank = dims.len() as i64;
        let axis = node.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).unwrap_or(1);
        let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).map_err(|_| format!("axis {axis}"))?;
        let channels = *dims.get(axis).ok_or(format!("axis {axis} of a rank-{rank} constant"))?;
        if channels != scale.len() {
            return Err(format!("{} scales for {channels} channels", scale.len()));
        }
        let inner: usize = dims.iter().skip(axis + 1).product();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner.max(1)) % channels;
                (v - zp.get(c).copied().unwrap_or(0)) as f32 * scale.get(c).copied().unwrap_or(1.0)
            })
            .collect()
    };
    Ok(TensorProto {
        name: out.to_string(),
        dims: q.dims.clone(),
        data_type: FLOAT,
        raw_data: data.iter().flat_map(|f| f.to_le_bytes()).collect(),
        ..TensorProto::default()
    })
}

fn float_scalar(name: &str, v: f32) -> TensorProto {
    TensorProto { name: name.to_string(), dims: vec![], data_type: FLOAT, raw_data: v.to_le_bytes().to_vec(), ..TensorProto::default() }
}

fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    match t.data_type {
        FLOAT if !t.raw_data.is_empty() => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map(f32::from_le_bytes).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?),
        FLOAT => Ok(t.float_data.clone()),
        other => Err(format!("{}: element type {other}, expected float", t.name)),
    }
}

fn ints(t: &TensorProto) -> Result<Vec<i32>, String> {
    let raw = !t.raw_data.is_empty();
    match t.data_type {
        UINT8 if raw => Ok(t.raw_data.iter().map(|&b| i32::from(b)).collect()),
        INT8 if raw => Ok(t.raw_data.iter().map(|&b| i32::from(b as i8)).collect()),
        INT32 if raw => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map(i32::from_le_bytes).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?),
        UINT8 | INT8 | INT32 => Ok(t.int32_data.clone()),
        other => Err(format!("{}: element type {other}, expected uint8, int8 or int32", t.name)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{DType, Engine, InputSpec, ModelSpec, Tensor, TensorData, TractEngine};
    use tract_onnx::pb::{
        tensor_shape_proto::{dimension, Dimension},
        GraphProto, OperatorSetIdProto, TensorShapeProto, ValueInfoProto,
    };

    fn value(name: &str, elem_type: i32) -> ValueInfoProto {
        let dim = |d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Dimension::default() };
        let shape = TensorShapeProto { dim: vec![dim(1), dim(1), dim(2), dim(2)] };
        let tensor = type_proto::Tensor { elem_type, shape: Some(shape) };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..TypeProto::default() }),
            ..ValueInfoProto::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            name: output.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..NodeProto::default()
        }
    }

    fn constant(name: &str, data_type: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
        TensorProto { name: name.into(), data_type, dims: dims.to_vec(), raw_data: raw, ..TensorProto::default() }
    }

    /// A small QDQ model the rewrite takes (for provisioning tests).
    pub(crate) fn tiny_qdq_model() -> Vec<u8> {
        qdq_model(vec![node("DequantizeLinear", &["x_q", "a_s", "a_z"], "x_dq")])
    }

    /// x → Q(0.1, 0) → DQ → Conv(w = DQ(130; 0.5, 128) = 1, b = DQ(4; 0.25) = 1) → Q(1, 0) → DQ → y
    fn qdq_model(middle: Vec<NodeProto>) -> Vec<u8> {
        let mut nodes = vec![
            node("DequantizeLinear", &["w_q", "w_s", "w_z"], "w"),
            node("DequantizeLinear", &["b_q", "b_s"], "b"),
            node("QuantizeLinear", &["x", "a_s", "a_z"], "x_q"),
        ];
        nodes.extend(middle);
        nodes.extend([
            node("Conv", &["x_dq", "w", "b"], "y_f"),
            node("QuantizeLinear", &["y_f", "y_s", "a_z"], "y_q"),
            node("DequantizeLinear", &["y_q", "y_s", "a_z"], "y"),
        ]);
        let graph = GraphProto {
            node: nodes,
            initializer: vec![
                constant("w_q", UINT8, &[1, 1, 1, 1], vec![130]),
                constant("w_s", FLOAT, &[], 0.5f32.to_le_bytes().to_vec()),
                constant("w_z", UINT8, &[], vec![128]),
                constant("b_q", INT32, &[1], 4i32.to_le_bytes().to_vec()),
                constant("b_s", FLOAT, &[], 0.25f32.to_le_bytes().to_vec()),
                constant("a_s", FLOAT, &[], 0.1f32.to_le_bytes().to_vec()),
                constant("a_z", UINT8, &[], vec![0]),
                constant("y_s", FLOAT, &[], 1.0f32.to_le_bytes().to_vec()),
            ],
            input: vec![value("x", FLOAT)],
            output: vec![value("y", FLOAT)],
            ..GraphProto::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 15 }],
            graph: Some(graph),
            ..ModelProto::default()
        };
        model.encode_to_vec()
    }

    /// Runs the model in `bytes` on the 1×1×2×2 input `x` and returns its output `output`.
    fn run_output(bytes: &[u8], output: &str, x: Vec<f32>) -> TensorData {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, bytes).unwrap();
        let spec = ModelSpec {
            path,
            inputs: vec![InputSpec { name: "x".into(), shape: vec![1, 1, 2, 2], dtype: DType::F32 }],
            outputs: vec![output.into()],
            ignore_declared_shapes: false,
            unordered_rows: false,
        };
        let mut engine = TractEngine::load(spec, Some(1)).unwrap();
        let out = engine.run(&[Tensor::new(vec![1, 1, 2, 2], TensorData::F32(x)).unwrap()]).unwrap();
        out[0].data.clone()
    }

    fn run(bytes: &[u8], x: Vec<f32>) -> Vec<f32> {
        match run_output(bytes, "y", x) {
            TensorData::F32(v) => v,
            other => panic!("float output expected, got {other:?}"),
        }
    }

    #[test]
    fn quantization_becomes_a_clamp_and_the_head_stays_quantized() {
        let source = qdq_model(vec![node("DequantizeLinear", &["x_q", "a_s", "a_z"], "x_dq")]);
        let (derived, report) = dequantize_onnx(&source).unwrap();
        assert_eq!(
            report,
            DequantizeReport {
                constants_folded: 2,
                quantize_to_clip: 1,
                dequantize_to_identity: 1,
                quantize_kept: 1,
                dequantize_kept: 1,
                head_nodes_cut: 0
            }
        );
        let ops: Vec<String> = ModelProto::decode(derived.as_slice()).unwrap().graph.unwrap().node.into_iter().map(|n| n.op_type).collect();
        assert_eq!(ops, ["Clip", "Identity", "Conv", "QuantizeLinear", "DequantizeLinear"]);
        // below the range, rounded in the source only, inside, above the uint8 range (25.5)
        let x = vec![-1.0, 0.26, 3.0, 30.0];
        assert_eq!(run(&source, x.clone()), [1.0, 1.0, 4.0, 26.0]);
        // the clamp is kept (ReLU6 lives in it), the rounding of 0.26 to 0.3 is what goes; the head rounds after
        assert_eq!(run(&derived, x), [1.0, 1.0, 4.0, 26.0]);
        assert_eq!(dequantize_onnx(&source).unwrap().0, derived, "the rewrite is deterministic");
    }

    #[test]
    fn the_graph_can_end_at_the_logits_codes() {
        let source = qdq_model(vec![node("DequantizeLinear", &["x_q", "a_s", "a_z"], "x_dq")]);
        let (derived, report) = dequantize_to_logit_codes(&source).unwrap();
        assert_eq!((report.quantize_kept, report.dequantize_kept, report.head_nodes_cut), (1, 0, 1));
        let graph = ModelProto::decode(derived.as_slice()).unwrap().graph.unwrap();
        let ops: Vec<String> = graph.node.iter().map(|n| n.op_type.clone()).collect();
        assert_eq!(ops, ["Clip", "Identity", "Conv", "QuantizeLinear"]);
        assert_eq!(graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["y_q"]);
        let out = run_output(&derived, "y_q", vec![-1.0, 0.26, 3.0, 300.0]);
        // the codes the head's DequantizeLinear read (scale 1, zero point 0): 300 is clamped to 25.5 at the input, 26.5 rounds to even
        assert_eq!(out, TensorData::U8(vec![1, 1, 4, 26]));
        // a graph without a quantized head cannot be cut
        let mut model = ModelProto::decode(source.as_slice()).unwrap();
        if let Some(g) = model.graph.as_mut() {
            g.node.retain(|n| n.output != ["y_q"] && n.output != ["y"]);
        }
        let err = dequantize_to_logit_codes(&model.encode_to_vec()).unwrap_err().to_string();
        assert!(err.contains("no QuantizeLinear after the last convolution"), "{err}");
    }

    #[test]
    fn arithmetic_on_quantized_codes_is_refused() {
        let source = qdq_model(vec![
            node("Add", &["x_q", "x_q"], "x_2q"),
            node("DequantizeLinear", &["x_2q", "a_s", "a_z"], "x_dq"),
        ]);
        let err = dequantize_onnx(&source).unwrap_err().to_string();
        assert!(err.contains("x_2q (Add): computes on the quantized value x_q"), "{err}");
    }

    #[test]
    fn a_dequantization_with_other_parameters_is_refused() {
        let source = qdq_model(vec![node("DequantizeLinear", &["x_q", "y_s", "a_z"], "x_dq")]);
        let err = dequantize_onnx(&source).unwrap_err().to_string();
        assert!(err.contains("but it was quantized with 0.1 / 0"), "{err}");
        assert!(dequantize_onnx(b"not a model").is_err());
    }
}

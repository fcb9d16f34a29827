//! The uint8 twin of an INT8 Q/DQ model with int8 activations, for ONNX Runtime's CPU provider on x86-64.
//!
//! `pancap quantize --method static` writes activations as int8 (zero point 0 unless `--asymmetric-activations`:
//! TensorRT takes nothing else).
//! On x86-64, ONNX Runtime's integer kernels (MLAS) are fast for uint8 activations × int8 weights (VPMADDUBSW /
//! VNNI) and its graph optimiser only fuses `DQ → Conv → Q` into `QLinearConv` for int8 activations after turning
//! each int8 Q/DQ pair into uint8 — which it skips for a QuantizeLinear whose output feeds more than one
//! DequantizeLinear (every SiLU / hard-swish edge once the DQ is duplicated per consumer). Those Convs then run
//! in float between a quantize and a dequantize, slower than the FP32 model (YOLOX-Nano 4.1 → 22 ms, measured in
//! the issue-20 notes).
//!
//! The rewrite is exact: an activation pair `int8, scale s, zero point z` quantizes `x` to
//! `q = clamp(round(x / s) + z, -128, 127)` and dequantizes to `s·(q − z)`; the pair `uint8, scale s, zero point
//! z + 128` gives `q + 128` and `s·((q + 128) − (z + 128))` — the same values. int32 biases are left alone. Only a
//! model whose activation zero points are all int8 initializers is rewritten; any other model (FP32, weight-only,
//! the mirror's uint8 segmenter) is left as it is.
//!
//! Weights (DequantizeLinear on an initializer, never fed by a QuantizeLinear) are encoded as [`Weights`] says.
//! int8 is what the fast u8s8 kernels want, and they are exact on a CPU with VNNI (`VPDPBUSD` sums in 32 bits).
//! Without VNNI they multiply with `VPMADDUBSW`, which adds pairs of uint8 × int8 products in saturating 16 bits:
//! on the static YOLOX-Nano that moved the outputs by 0.030 on average from the file as written, three times what
//! two runtimes differ by (ONNX Runtime's quantization docs name the saturation and the uint8-weight cure). There
//! the weights move up by 128 with their zero points as the activations do (exact by the same arithmetic), and the
//! u8u8 kernels, which widen to 16 bits before they multiply, do not saturate.

use prost14::Message;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, TensorProto};

#[derive(Debug, thiserror::Error)]
pub enum U8Error {
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
}

/// How the twin encodes the weights of its DequantizeLinear nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Left int8 (zero point 0): ONNX Runtime's u8s8 kernels, fast, exact where the CPU has VNNI.
    Int8,
    /// Moved up by 128 with their zero points: the u8u8 kernels, which do not saturate on a CPU without VNNI.
    Uint8,
}

impl Weights {
    /// The encoding ONNX Runtime's CPU kernels run without saturating on this CPU: int8 where it has AVX-512 VNNI or
    /// AVX-VNNI (and on any CPU that is not x86-64, where the twin is not used), uint8 elsewhere.
    pub fn for_this_cpu() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if !(std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")) {
                return Weights::Uint8;
            }
        }
        Weights::Int8
    }
}

/// What [`to_u8_activations`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U8Report {
    /// Activation zero-point tensors re-encoded as uint8 (each value moved up by 128).
    pub zero_points: usize,
    /// QuantizeLinear nodes whose output type changed with them.
    pub quantize_nodes: usize,
    /// Weight tensors re-encoded as uint8 with their zero points ([`Weights::Uint8`]; 0 for [`Weights::Int8`]).
    pub weights: usize,
}

fn int8_values(t: &TensorProto) -> Vec<i8> {
    if !t.raw_data.is_empty() {
        return t.raw_data.iter().map(|&b| b as i8).collect();
    }
    t.int32_data.iter().map(|&v| v as i8).collect()
}

/// The weights a [`Weights::Uint8`] twin moves up by 128, with their zero points (names sorted), and how many
/// weights that is. A weight is an int8 initializer dequantized by a node no QuantizeLinear feeds. It moves when
/// every DequantizeLinear of it has an int8 zero-point initializer that is not an activation's, and no weight that
/// stays int8 shares one of those zero points (a shared tensor has one type). The rest stay int8: exact either way.
fn movable_weights<'g>(
    graph: &'g GraphProto,
    produced_by_q: &HashSet<String>,
    activation_zero_points: &[String],
    is_int8_initializer: &dyn Fn(&str) -> bool,
) -> (Vec<String>, usize) {
    // weight -> (whether it may move, its usable zero points)
    let mut weights: HashMap<&'g str, (bool, Vec<&'g str>)> = HashMap::new();
    for n in graph.node.iter().filter(|n| n.op_type == "DequantizeLinear") {
        let Some(w) = n.input.first().filter(|w| !produced_by_q.contains(*w) && is_int8_initializer(w)) else { continue };
        let zero_point = n.input.get(2).filter(|z| is_int8_initializer(z) && activation_zero_points.binary_search(z).is_err());
        let (movable, zs) = weights.entry(w.as_str()).or_insert((true, Vec::new()));
        match zero_point {
            Some(z) => zs.push(z.as_str()),
            None => *movable = false,
        }
    }
    // a zero point a staying weight uses stays, and with it every weight that uses it, until nothing changes
    loop {
        let pinned: HashSet<&str> = weights.values().filter(|(m, _)| !m).flat_map(|(_, zs)| zs.iter().copied()).collect();
        let mut changed = false;
        for (movable, zs) in weights.values_mut() {
            if *movable && zs.iter().any(|z| pinned.contains(z)) {
                *movable = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let moving = || weights.iter().filter(|(_, (m, _))| *m);
    let mut names: Vec<String> = moving().flat_map(|(w, (_, zs))| std::iter::once(*w).chain(zs.iter().copied())).map(str::to_string).collect();
    names.sort();
    names.dedup();
    (names, moving().count())
}

/// Re-encodes every activation Q/DQ pair of an INT8 model as uint8 with its zero point moved up by 128, and the
/// weights as `weights` says; `None` for a model that has no activation pairs or any activation zero point that is
/// not an int8 initializer.
pub fn to_u8_activations(bytes: &[u8], weights: Weights) -> Result<Option<(Vec<u8>, U8Report)>, U8Error> {
    let mut model = ModelProto::decode(bytes).map_err(|e| U8Error::Decode(e.to_string()))?;
    let graph = model.graph.as_mut().ok_or(U8Error::NoGraph)?;
    let produced_by_q: HashSet<String> =
        graph.node.iter().filter(|n| n.op_type == "QuantizeLinear").flat_map(|n| n.output.iter().cloned()).collect();
    // zero points of QuantizeLinear nodes and of the DequantizeLinear nodes they feed
    let mut zero_points: Vec<String> = Vec::new();
    let mut quantize_nodes = 0;
    for n in &graph.node {
        let activation = match n.op_type.as_str() {
            "QuantizeLinear" => {
                quantize_nodes += 1;
                true
            }
            "DequantizeLinear" => n.input.first().is_some_and(|i| produced_by_q.contains(i)),
            _ => false,
        };
        if activation {
            match n.input.get(2).filter(|z| !z.is_empty()) {
                Some(z) => zero_points.push(z.clone()),
                // no zero point means uint8 zero point 0: not an int8 pair
                None => return Ok(None),
            }
        }
    }
    zero_points.sort();
    zero_points.dedup();
    if zero_points.is_empty() {
        return Ok(None);
    }
    let index: HashMap<String, usize> = graph.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    let is_int8_initializer =
        |name: &str| index.get(name).and_then(|&i| graph.initializer.get(i)).is_some_and(|t| t.data_type == DataType::Int8 as i32);
    let (weight_tensors, weight_count) = match weights {
        Weights::Int8 => (Vec::new(), 0),
        Weights::Uint8 => movable_weights(graph, &produced_by_q, &zero_points, &is_int8_initializer),
    };
    // one pass: the model is this function's own decoded copy, so giving up half-way leaves nothing behind
    for z in zero_points.iter().chain(&weight_tensors) {
        let Some(t) = index.get(z).and_then(|&i| graph.initializer.get_mut(i)) else { return Ok(None) };
        if t.data_type != DataType::Int8 as i32 {
            return Ok(None);
        }
        let shifted: Vec<u8> = int8_values(t).iter().map(|&v| (i16::from(v) + 128) as u8).collect();
        t.data_type = DataType::Uint8 as i32;
        t.raw_data = shifted;
        t.int32_data.clear();
    }
    // declared types of the re-encoded tensors follow them (initializers may be listed among the inputs too)
    let retyped = |name: &str| {
        produced_by_q.contains(name) || zero_points.binary_search_by(|z| z.as_str().cmp(name)).is_ok() || weight_tensors.binary_search_by(|w| w.as_str().cmp(name)).is_ok()
    };
    for v in graph.value_info.iter_mut().chain(graph.output.iter_mut()).chain(graph.input.iter_mut()).filter(|v| retyped(&v.name)) {
        if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if t.elem_type == DataType::Int8 as i32 {
                t.elem_type = DataType::Uint8 as i32;
            }
        }
    }
    let report = U8Report { zero_points: zero_points.len(), quantize_nodes, weights: weight_count };
    Ok(Some((model.encode_to_vec(), report)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use tract_onnx::pb::{GraphProto, NodeProto, OperatorSetIdProto};

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

    fn model(graph: GraphProto) -> Vec<u8> {
        ModelProto { graph: Some(graph), opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }], ..Default::default() }
            .encode_to_vec()
    }

    /// x → Q → DQ → Conv(w: DQ of int8 weights) : the activation pair becomes uint8 128, the weights stay int8.
    fn conv_graph(activation_zp: TensorProto) -> GraphProto {
        GraphProto {
            node: vec![
                node("QuantizeLinear", &["x", "xs", "xz"], &["xq"]),
                node("DequantizeLinear", &["xq", "xs", "xz"], &["xd"]),
                node("DequantizeLinear", &["wq", "ws", "wz"], &["wd"]),
                node("Conv", &["xd", "wd"], &["y"]),
            ],
            initializer: vec![
                tensor("xs", DataType::Float, 0.5f32.to_le_bytes().to_vec()),
                activation_zp,
                tensor("wq", DataType::Int8, vec![1, 255, 3, 4]),
                tensor("ws", DataType::Float, 0.1f32.to_le_bytes().to_vec()),
                tensor("wz", DataType::Int8, vec![0]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn activation_pairs_become_uint8_128_and_weights_stay_int8() {
        let (bytes, report) = to_u8_activations(&model(conv_graph(tensor("xz", DataType::Int8, vec![0]))), Weights::Int8).unwrap().unwrap();
        assert_eq!(report, U8Report { zero_points: 1, quantize_nodes: 1, weights: 0 });
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let get = |n: &str| g.initializer.iter().find(|t| t.name == n).unwrap().clone();
        assert_eq!((get("xz").data_type, get("xz").raw_data), (DataType::Uint8 as i32, vec![128]));
        assert_eq!((get("wz").data_type, get("wz").raw_data), (DataType::Int8 as i32, vec![0]));
        assert_eq!(get("wq").raw_data, vec![1, 255, 3, 4]);
        assert_eq!(get("xs").raw_data, 0.5f32.to_le_bytes().to_vec());
    }

    #[test]
    fn without_vnni_the_weights_move_up_by_128_with_their_zero_points() {
        let (bytes, report) = to_u8_activations(&model(conv_graph(tensor("xz", DataType::Int8, vec![0]))), Weights::Uint8).unwrap().unwrap();
        assert_eq!(report, U8Report { zero_points: 1, quantize_nodes: 1, weights: 1 });
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let get = |n: &str| g.initializer.iter().find(|t| t.name == n).unwrap().clone();
        assert_eq!((get("xz").data_type, get("xz").raw_data), (DataType::Uint8 as i32, vec![128]));
        assert_eq!((get("wz").data_type, get("wz").raw_data), (DataType::Uint8 as i32, vec![128]));
        // int8 1, -1, 3, 4 → uint8 129, 127, 131, 132
        assert_eq!((get("wq").data_type, get("wq").raw_data), (DataType::Uint8 as i32, vec![129, 127, 131, 132]));
        assert_eq!(get("ws").raw_data, 0.1f32.to_le_bytes().to_vec());
    }

    #[test]
    fn a_weight_without_an_int8_zero_point_stays_int8() {
        let mut graph = conv_graph(tensor("xz", DataType::Int8, vec![0]));
        graph.node[2].input.truncate(2);
        let (bytes, report) = to_u8_activations(&model(graph), Weights::Uint8).unwrap().unwrap();
        assert_eq!(report.weights, 0);
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        assert_eq!(g.initializer.iter().find(|t| t.name == "wq").unwrap().data_type, DataType::Int8 as i32);
    }

    #[test]
    fn a_zero_point_shared_with_a_staying_weight_keeps_both_weights_int8_and_no_more() {
        // "vq" shares "wz" with "wq" but has a second node without a zero point; "uq" has its own "uz"
        let mut graph = conv_graph(tensor("xz", DataType::Int8, vec![0]));
        graph.node.push(node("DequantizeLinear", &["vq", "ws", "wz"], &["vd"]));
        graph.node.push(node("DequantizeLinear", &["vq", "ws"], &["vd2"]));
        graph.node.push(node("DequantizeLinear", &["uq", "ws", "uz"], &["ud"]));
        graph.initializer.push(tensor("vq", DataType::Int8, vec![7]));
        graph.initializer.push(tensor("uq", DataType::Int8, vec![(-3i8) as u8]));
        graph.initializer.push(tensor("uz", DataType::Int8, vec![0]));
        let (bytes, report) = to_u8_activations(&model(graph), Weights::Uint8).unwrap().unwrap();
        assert_eq!(report.weights, 1, "only uq moves");
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let get = |n: &str| g.initializer.iter().find(|t| t.name == n).unwrap().clone();
        for staying in ["wq", "vq", "wz"] {
            assert_eq!(get(staying).data_type, DataType::Int8 as i32, "{staying}");
        }
        assert_eq!((get("uq").data_type, get("uq").raw_data), (DataType::Uint8 as i32, vec![125]));
        assert_eq!((get("uz").data_type, get("uz").raw_data), (DataType::Uint8 as i32, vec![128]));
    }

    #[test]
    fn the_uint8_pair_dequantizes_to_the_same_values() {
        // the arithmetic the rewrite relies on, over the whole int8 range and beyond it, for several zero points
        for z in [-128i16, -37, 0, 5, 127] {
            let zu = z + 128;
            for i in -2000..2000 {
                let (x, s) = (i as f32 * 0.37, 1.3f32);
                let q8 = ((x / s).round_ties_even() + f32::from(z)).clamp(-128.0, 127.0);
                let qu = ((x / s).round_ties_even() + f32::from(zu)).clamp(0.0, 255.0);
                assert_eq!(s * (q8 - f32::from(z)), s * (qu - f32::from(zu)), "x = {x}, z = {z}");
            }
        }
    }

    #[test]
    fn asymmetric_int8_zero_points_move_up_by_128() {
        let (bytes, report) = to_u8_activations(&model(conv_graph(tensor("xz", DataType::Int8, vec![(-5i8) as u8]))), Weights::Uint8).unwrap().unwrap();
        assert_eq!(report.zero_points, 1);
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let z = g.initializer.iter().find(|t| t.name == "xz").unwrap();
        assert_eq!((z.data_type, z.raw_data.clone()), (DataType::Uint8 as i32, vec![123]));
    }

    #[test]
    fn uint8_models_are_left_alone() {
        assert!(to_u8_activations(&model(conv_graph(tensor("xz", DataType::Uint8, vec![0]))), Weights::Uint8).unwrap().is_none());
        assert!(to_u8_activations(b"not onnx", Weights::Int8).is_err());
    }

    #[test]
    fn a_weight_only_model_is_left_as_it_is() {
        let graph = GraphProto {
            node: vec![node("DequantizeLinear", &["wq", "ws", "wz"], &["wd"]), node("Conv", &["x", "wd"], &["y"])],
            initializer: vec![tensor("wq", DataType::Int8, vec![1, 2]), tensor("ws", DataType::Float, vec![0; 4]), tensor("wz", DataType::Int8, vec![0])],
            ..Default::default()
        };
        assert!(to_u8_activations(&model(graph), Weights::Uint8).unwrap().is_none());
    }
}

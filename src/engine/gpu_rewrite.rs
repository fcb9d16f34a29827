//! Graph rewrites that keep a model on the GPU under tract's CUDA runtime. tract-cuda 0.23.9 has no pooling and no
//! strided-subsampling kernel, so max pooling (YOLOX's SPP, PicoDet, PP-OCR) and `Downsample` (YOLOX's Focus
//! stem) would run on the CPU, each with a device→host→device round trip. Both are rewritten here into ops the
//! runtime has: constant padding, slices, element-wise `max`, and reshapes, with the same results bit for bit
//! (max is exact; the padding is −∞, as pooling means it).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::TypedModelPatch;
use tract_onnx::tract_core::ops::array::{Pad, PadMode, Slice};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::math::Max;
use tract_onnx::tract_core::ops::Downsample;

/// Rewrites every max pool and downsample the runtime could not take; returns how many were rewritten.
pub fn rewrite_for_cuda(model: &mut TypedModel) -> TractResult<usize> {
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let Some(node) = model.nodes().get(id) else { continue };
        let patch = if let Some(op) = node.op_as::<MaxPool>() {
            max_pool(model, node, &op.clone())?
        } else if let Some(op) = node.op_as::<Downsample>() {
            downsample(model, node, op.clone())?
        } else {
            None
        };
        if let Some(patch) = patch {
            patch.apply(model)?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

fn slice(p: &mut TypedModelPatch, name: String, x: OutletId, axis: usize, start: usize, end: usize) -> TractResult<OutletId> {
    wire(p, name, Slice::new(axis, start, end), x)
}

fn wire(p: &mut TypedModelPatch, name: String, op: impl Into<Box<dyn TypedOp>>, x: OutletId) -> TractResult<OutletId> {
    p.wire_node(name, op, &[x])?.first().copied().ok_or_else(|| TractError::msg("op wired without an output"))
}

/// Keeps every `stride`th of the first `stride·n` elements along `axis`, starting at `offset < stride`, by
/// reshaping the axis to (n, stride) and slicing the inner one.
fn subsample(p: &mut TypedModelPatch, name: &str, x: OutletId, axis: usize, n: usize, stride: usize, offset: usize) -> TractResult<OutletId> {
    let split = AxisOp::Reshape(axis, tvec!((n * stride).to_dim()), tvec!(n.to_dim(), stride.to_dim()));
    let x = wire(p, format!("{name}.split{axis}"), split, x)?;
    let x = slice(p, format!("{name}.pick{axis}"), x, axis + 1, offset, offset + 1)?;
    wire(p, format!("{name}.join{axis}"), AxisOp::Rm(axis + 1), x)
}

/// A max pool as −∞ padding, then per spatial axis the max of `kernel` shifted slices, subsampled by the stride.
fn max_pool(model: &TypedModel, node: &TypedNode, op: &MaxPool) -> TractResult<Option<TypedModelPatch>> {
    let spec = &op.pool_spec;
    let Some(&input) = node.inputs.first() else { return Ok(None) };
    let fact = model.outlet_fact(input)?;
    let Some(shape) = fact.shape.as_concrete().map(<[usize]>::to_vec) else { return Ok(None) };
    if op.with_index_outputs.is_some() || fact.datum_type != f32::datum_type() || spec.dilations().iter().any(|d| *d != 1) {
        return Ok(None);
    }
    let geometry = spec.data_format.shape(shape.clone())?;
    let axes: Vec<usize> = geometry.hw_axes().collect();
    let strides = spec.strides().to_vec();
    let padding = spec.computed_padding(geometry.hw_dims());
    if axes.len() != spec.kernel_shape.len() || padding.len() != axes.len() || strides.len() != axes.len() {
        return Ok(None);
    }
    let name = &node.name;
    let mut p = TypedModelPatch::default();
    let mut x = p.tap_model(model, input)?;
    // pad so that every axis holds stride·out + kernel − 1 elements: each output's window, and the whole groups
    // the subsampling reshape needs (windows past the last output are computed and dropped)
    let mut pads = vec![(0usize, 0usize); shape.len()];
    let mut plan = Vec::new();
    for (((&axis, &k), &s), pad) in axes.iter().zip(&spec.kernel_shape).zip(&strides).zip(&padding) {
        let (len, out) = (shape.get(axis).copied().unwrap_or(0), pad.convoluted);
        let need = s * out + k - 1;
        let after = pad.pad_after.max(need.saturating_sub(len + pad.pad_before));
        if let Some(slot) = pads.get_mut(axis) {
            *slot = (pad.pad_before, after);
        }
        plan.push((axis, k, s, out));
    }
    if pads.iter().any(|(a, b)| *a + *b > 0) {
        let value = PadMode::Constant(tensor0(f32::NEG_INFINITY).into_arc_tensor());
        x = wire(&mut p, format!("{name}.pad"), Pad::new(pads, value), x)?;
    }
    for (axis, k, s, out) in plan {
        let width = s * out;
        let mut acc = slice(&mut p, format!("{name}.win{axis}.0"), x, axis, 0, width)?;
        for j in 1..k {
            let shifted = slice(&mut p, format!("{name}.win{axis}.{j}"), x, axis, j, j + width)?;
            acc = p.wire_node(format!("{name}.max{axis}.{j}"), TypedBinOp(Box::new(Max), None), &[acc, shifted])?
                .first()
                .copied()
                .ok_or_else(|| TractError::msg("max wired without an output"))?;
        }
        x = if s > 1 { subsample(&mut p, name, acc, axis, out, s, 0)? } else { acc };
    }
    p.shunt_outside(model, OutletId::new(node.id, 0), x)?;
    Ok(Some(p))
}

/// Every `stride`th element from `modulo` on, as a slice of whole stride groups, a reshape and a slice.
fn downsample(model: &TypedModel, node: &TypedNode, op: Downsample) -> TractResult<Option<TypedModelPatch>> {
    let Some(&input) = node.inputs.first() else { return Ok(None) };
    let fact = model.outlet_fact(input)?;
    let Some(shape) = fact.shape.as_concrete().map(<[usize]>::to_vec) else { return Ok(None) };
    let (Some(&len), Ok(stride)) = (shape.get(op.axis), usize::try_from(op.stride)) else { return Ok(None) };
    if stride == 0 || op.modulo >= len {
        return Ok(None);
    }
    let n = (len - op.modulo).div_ceil(stride);
    let (groups_before, offset) = (op.modulo / stride, op.modulo % stride);
    let (start, end) = (stride * groups_before, stride * (groups_before + n));
    let name = &node.name;
    let mut p = TypedModelPatch::default();
    let mut x = p.tap_model(model, input)?;
    if end > len {
        let mut pads = vec![(0usize, 0usize); shape.len()];
        if let Some(slot) = pads.get_mut(op.axis) {
            *slot = (0, end - len);
        }
        let zero = Tensor::zero_scalar_dt(fact.datum_type)?.into_arc_tensor();
        x = wire(&mut p, format!("{name}.pad"), Pad::new(pads, PadMode::Constant(zero)), x)?;
    }
    if start > 0 || end < len {
        x = slice(&mut p, format!("{name}.groups"), x, op.axis, start, end)?;
    }
    x = if stride > 1 { subsample(&mut p, name, x, op.axis, n, stride, offset)? } else { x };
    p.shunt_outside(model, OutletId::new(node.id, 0), x)?;
    Ok(Some(p))
}

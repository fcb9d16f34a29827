//! A constant `Pad` for tract that copies rows. tract 0.23.9 fills the output and assigns the input into a
//! dynamic-rank ndarray slice, element by element; the pad tract puts before DEIMv2's first strided 3×3
//! convolution (`[1, 32, 208, 208]` → `[1, 32, 210, 210]`) took 1.3 ms of a 34 ms run, the model's twenty pads
//! ~2–6 ms (`examples/op_profile.rs`, 2-core x86-64).
//!
//! [`RowPad`] wraps tract's own op: same output facts; for constant padding of f32 tensors it fills the output
//! with the constant once and copies each input row (its last axis) into place. A copy, so the same values bit
//! for bit. Edge and reflect modes and other element types run tract's op unchanged.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Pad, PadMode};

/// tract's `Pad`, evaluated row by row for constant padding of f32 tensors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowPad {
    inner: Pad,
}

/// Replaces every constant-mode tract `Pad` node and returns how many. Run on the optimised model.
pub fn replace_pads(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |_, _, op: &Pad| {
        Ok(matches!(op.mode, PadMode::Constant(_)).then(|| Box::new(RowPad { inner: op.clone() }) as Box<dyn TypedOp>))
    })
}

impl RowPad {
    /// The output, or None when tract's op must compute it.
    fn pad(&self, inputs: &TVec<TValue>) -> TractResult<Option<Tensor>> {
        let (Some(input), PadMode::Constant(value)) = (inputs.first(), &self.inner.mode) else { return Ok(None) };
        if input.datum_type() != f32::datum_type() || self.inner.pads.len() != input.rank() || input.rank() == 0 {
            return Ok(None);
        }
        let fill = value.cast_to_scalar::<f32>()?;
        let in_shape: TVec<usize> = input.shape().into();
        let out_shape: TVec<usize> = in_shape.iter().zip(&self.inner.pads).map(|(&d, &(a, b))| d + a + b).collect();
        let src_ram = input.try_as_plain_ram()?;
        let src = src_ram.as_slice::<f32>()?;
        // one pass to fill (a fresh zeroed allocation when the constant is +0), then the rows
        let mut dst = vec![fill; out_shape.iter().product()];
        // output strides, and the offset of the input's first element in the output
        let mut strides: TVec<usize> = tvec![0; out_shape.len()];
        let mut acc = 1;
        for (s, &d) in strides.iter_mut().zip(&out_shape).rev() {
            *s = acc;
            acc *= d;
        }
        let base: usize = strides.iter().zip(&self.inner.pads).map(|(s, (before, _))| s * before).sum();
        let Some((&len, outer)) = in_shape.split_last() else { return Ok(None) };
        let short = || format_err!("RowPad: tensors shorter than their shapes");
        let mut index: TVec<usize> = tvec![0; outer.len()];
        for row in src.chunks_exact(len.max(1)).take(outer.iter().product()) {
            let at: usize = base + index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>();
            dst.get_mut(at..at + len).ok_or_else(short)?.copy_from_slice(row.get(..len).ok_or_else(short)?);
            // odometer over the input's outer axes
            for (i, &d) in index.iter_mut().zip(outer).rev() {
                *i += 1;
                if *i < d {
                    break;
                }
                *i = 0;
            }
        }
        let out = tract_ndarray::ArrayD::from_shape_vec(out_shape.as_slice(), dst)?.into_tensor();
        Ok(Some(out))
    }
}

impl Op for RowPad {
    fn name(&self) -> StaticName {
        "RowPad".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowPad {
    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        match self.pad(&inputs)? {
            Some(out) => Ok(tvec!(out.into_tvalue())),
            None => self.inner.eval(ctx, inputs),
        }
    }

    op_out_of_plan!();
}

impl TypedOp for RowPad {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.inner.output_facts(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn TypedOp, input: &Tensor) -> Tensor {
        op.as_op().eval_out_of_plan(tvec!(input.clone().into_tvalue())).unwrap().unwrap()[0].clone().into_tensor()
    }

    #[test]
    fn same_values_as_tracts_pad() {
        let shapes: &[&[usize]] = &[&[1, 3, 5, 4], &[3, 5, 4], &[7], &[2, 1, 3], &[2, 3, 0, 2]];
        let pads: &[&[(usize, usize)]] = &[&[(0, 0), (0, 0), (1, 1), (1, 1)], &[(1, 0), (2, 3), (0, 1), (1, 2)], &[(0, 0), (0, 0), (0, 1), (0, 1)]];
        let mut cases = 0;
        for shape in shapes {
            let v: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.25 - 3.0).collect();
            let t = Tensor::from_shape(shape, &v).unwrap();
            for pad in pads {
                let pad: Vec<(usize, usize)> = pad.iter().rev().take(shape.len()).rev().copied().collect();
                for fill in [0.0f32, -1.5, f32::NEG_INFINITY] {
                    let reference = Pad { pads: pad.clone(), mode: PadMode::Constant(Arc::new(fill.into())) };
                    let fast = RowPad { inner: reference.clone() };
                    let (want, got) = (run(&reference, &t), run(&fast, &t));
                    assert_eq!(want.shape(), got.shape(), "{shape:?} {pad:?}");
                    let (rw, rg) = (want.try_as_plain_ram().unwrap(), got.try_as_plain_ram().unwrap());
                    assert_eq!(rw.as_bytes(), rg.as_bytes(), "{shape:?} {pad:?} {fill}");
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 5 * 3 * 3);
    }

    #[test]
    fn edge_and_reflect_stay_tracts() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3, 4])).unwrap();
        let pads = vec![(0, 0), (1, 1), (1, 1)];
        let a = model.wire_node("c", Pad { pads: pads.clone(), mode: PadMode::Constant(Arc::new(0f32.into())) }, &[x]).unwrap();
        let b = model.wire_node("e", Pad { pads: pads.clone(), mode: PadMode::Edge }, &[x]).unwrap();
        let c = model.wire_node("r", Pad { pads, mode: PadMode::Reflect }, &[x]).unwrap();
        model.select_output_outlets(&[a[0], b[0], c[0]]).unwrap();
        assert_eq!(replace_pads(&mut model).unwrap(), 1);
    }
}

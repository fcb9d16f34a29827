//! A faster 2-D `Resize` for tract. tract 0.23.9 resamples one axis at a time through a generic loop that, on
//! the last axis, fills and sums one element at a time through slices; the bilinear upsamplings of the person
//! segmenter and the text detector's upsamplings (sizes computed from shapes) spent ~5 % of the default suite's
//! time there (`perf`, 16 dev photos).
//!
//! [`Resize2d`] wraps tract's own op: same output facts, same per-axis plans (taps and weights from tract's
//! `plan_axis`), the same floating-point operations in the same order — so the same values bit for bit — with
//! the last axis swept row by row over precomputed taps. Inputs it does not cover (not f32, not rank 4, or a
//! resize of the batch or channel axes) run tract's op unchanged.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::resize::{AxisPlan, Resize};

/// tract's core `Resize`, evaluated faster on rank-4 f32 inputs resized over their last two axes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resize2d {
    inner: Resize,
}

/// Replaces every tract core `Resize` node (what ONNX Resize declutters into) and returns how many. Run on the
/// optimised model: the optimiser has then lowered what it lowers (integer nearest upsamples) and fused the rest.
pub fn replace_resizes(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |_, _, op: &Resize| Ok(Some(Box::new(Resize2d { inner: op.clone() }) as Box<dyn TypedOp>)))
}

impl Resize2d {
    /// The output, or None when tract's op must compute it.
    fn resize(&self, inputs: &TVec<TValue>) -> TractResult<Option<Tensor>> {
        let Some(input) = inputs.first() else { bail!("Resize2d: no input") };
        if input.datum_type() != f32::datum_type() || input.rank() != 4 {
            return Ok(None);
        }
        let scales_in = self.inner.optional_scales_input.and_then(|ix| inputs.get(ix));
        let sizes_in = self.inner.optional_sizes_input.and_then(|ix| inputs.get(ix));
        let shape: TVec<usize> = input.shape().into();
        let out_shape = self.inner.compute_output_shape(&shape, scales_in.map(|t| &**t), sizes_in.map(|t| &**t))?;
        // as tract's eval: the scales given when they cover every axis, else output / input lengths
        let scales: TVec<f32> = match scales_in.filter(|s| s.len() == shape.len()) {
            Some(s) => s.try_as_plain_ram()?.as_slice::<f32>()?.into(),
            None => out_shape.iter().zip(&shape).map(|(o, i)| *o as f32 / *i as f32).collect(),
        };
        let kept = |axis: usize| shape.get(axis) == out_shape.get(axis) && scales.get(axis) == Some(&1.0);
        if !(kept(0) && kept(1)) {
            return Ok(None);
        }
        let (&[n, c, h, w], &[_, _, oh, ow]) = (shape.as_slice(), out_shape.as_slice()) else { return Ok(None) };
        let (sh, sw) = (scales.get(2).copied().unwrap_or(1.0), scales.get(3).copied().unwrap_or(1.0));
        let src = input.try_as_plain_ram()?;
        let src = src.as_slice::<f32>()?;
        let planes = n * c;
        // rows: tract skips an axis whose length and scale stay
        let rows: std::borrow::Cow<[f32]> = if kept(2) {
            std::borrow::Cow::Borrowed(src)
        } else {
            let plan = self.inner.plan_axis(sh, h, oh);
            let mut out = vec![0f32; planes * oh * w];
            for (s, d) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * w)) {
                for (y, drow) in d.chunks_exact_mut(w).enumerate() {
                    if plan.extrapolated.get(y).copied().unwrap_or(true) {
                        drow.fill(0.0);
                        continue;
                    }
                    for (&i, &wt) in taps(&plan, y) {
                        if wt == 0.0 {
                            continue;
                        }
                        let Some(srow) = s.get(i * w..(i + 1) * w) else { bail!("Resize2d: tap {i} outside {h} rows") };
                        for (o, v) in drow.iter_mut().zip(srow) {
                            *o += wt * v;
                        }
                    }
                }
            }
            std::borrow::Cow::Owned(out)
        };
        let mut out = Tensor::zero::<f32>(&[n, c, oh, ow])?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let dst = view.as_slice_mut::<f32>()?;
            if kept(3) {
                dst.copy_from_slice(rows.get(..dst.len()).unwrap_or_default());
            } else {
                let plan = self.inner.plan_axis(sw, w, ow);
                // each output column's taps once: (index, weight) pairs, zero weights dropped as tract skips them
                let cols: Vec<Option<TVec<(usize, f32)>>> = (0..ow)
                    .map(|x| {
                        (!plan.extrapolated.get(x).copied().unwrap_or(true))
                            .then(|| taps(&plan, x).filter(|(_, wt)| **wt != 0.0).map(|(i, wt)| (*i, *wt)).collect())
                    })
                    .collect();
                if cols.iter().flatten().flatten().any(|&(i, _)| i >= w) {
                    bail!("Resize2d: a tap outside {w} columns");
                }
                for (srow, drow) in rows.chunks_exact(w).zip(dst.chunks_exact_mut(ow)) {
                    for (o, col) in drow.iter_mut().zip(&cols) {
                        let mut acc = 0.0f32;
                        for &(i, wt) in col.iter().flatten() {
                            acc += wt * srow.get(i).copied().unwrap_or(0.0);
                        }
                        *o = acc;
                    }
                }
            }
        }
        Ok(Some(out))
    }
}

/// Output index `x`'s taps: (input index, weight) in the plan's order.
fn taps(plan: &AxisPlan, x: usize) -> impl Iterator<Item = (&usize, &f32)> {
    let range = x * plan.window..(x + 1) * plan.window;
    plan.indices.get(range.clone()).unwrap_or_default().iter().zip(plan.weights.get(range).unwrap_or_default())
}

super::tract::fallback_op!(
    Resize2d,
    name: |_| "Resize2d".into(),
    compute: resize,
    info: |op| format!("{:?}, {:?}, nearest {:?}", op.inner.interpolator, op.inner.coord_transformer, op.inner.nearest)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_noise::lcg_values;
    use tract_onnx::tract_core::ops::nn::resize::{CoordTransformer, Interpolator, Nearest};

    fn noise(shape: &[usize], seed: u64) -> Tensor {
        let v = lcg_values(shape.iter().product(), seed, |s| (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0);
        Tensor::from_shape(shape, &v).unwrap()
    }

    fn run(op: &dyn TypedOp, inputs: &[Tensor]) -> Tensor {
        let inputs: TVec<TValue> = inputs.iter().map(|t| t.clone().into_tvalue()).collect();
        op.as_op().eval_out_of_plan(inputs).unwrap().unwrap()[0].clone().into_tensor()
    }

    #[test]
    fn same_values_as_tracts_resize_bit_for_bit() {
        let x = noise(&[1, 3, 5, 7], 1);
        let mut cases = 0;
        for interpolator in [Interpolator::Linear, Interpolator::Nearest, Interpolator::Cubic] {
            for coord_transformer in [
                CoordTransformer::HalfPixel,
                CoordTransformer::Asymmetric,
                CoordTransformer::AlignCorners,
                CoordTransformer::PytorchHalfPixel,
            ] {
                for nearest in [Nearest::Floor, Nearest::RoundPreferCeil] {
                    // up, down, mixed and one axis only, by scales and by sizes
                    for (by_sizes, aux) in [
                        (false, vec![1.0f32, 1.0, 2.0, 2.0]),
                        (false, vec![1.0, 1.0, 0.5, 3.0]),
                        (false, vec![1.0, 1.0, 1.0, 1.7]),
                        (true, vec![1.0, 3.0, 9.0, 4.0]),
                        (true, vec![1.0, 3.0, 5.0, 7.0]),
                    ] {
                        let reference = Resize {
                            coord_transformer: coord_transformer.clone(),
                            interpolator: interpolator.clone(),
                            nearest,
                            optional_scales_input: (!by_sizes).then_some(1),
                            optional_sizes_input: by_sizes.then_some(1),
                        };
                        let aux = if by_sizes {
                            Tensor::from_shape(&[4], &aux.iter().map(|v| *v as i64).collect::<Vec<_>>()).unwrap()
                        } else {
                            Tensor::from_shape(&[4], &aux).unwrap()
                        };
                        let fast = Resize2d { inner: reference.clone() };
                        let inputs = [x.clone(), aux];
                        let (want, have) = (run(&reference, &inputs), run(&fast, &inputs));
                        assert_eq!(want.shape(), have.shape());
                        let (a, b) = (want.to_plain_array_view::<f32>().unwrap(), have.to_plain_array_view::<f32>().unwrap());
                        for (i, (p, q)) in a.iter().zip(b).enumerate() {
                            assert!(p.to_bits() == q.to_bits(), "{interpolator:?} {coord_transformer:?} {nearest:?}: element {i}: tract {p}, fast {q}");
                        }
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 3 * 4 * 2 * 5);
    }

    #[test]
    fn inputs_it_does_not_cover_run_tracts_op() {
        let op = Resize2d {
            inner: Resize {
                coord_transformer: CoordTransformer::HalfPixel,
                interpolator: Interpolator::Linear,
                nearest: Nearest::Floor,
                optional_scales_input: Some(1),
                optional_sizes_input: None,
            },
        };
        // rank 3, and a channel resize
        let rank3 = [noise(&[2, 3, 4], 2), Tensor::from_shape(&[3], &[1.0f32, 2.0, 2.0]).unwrap()];
        assert!(op.resize(&rank3.iter().map(|t| t.clone().into_tvalue()).collect()).unwrap().is_none());
        assert_eq!(run(&op, &rank3).shape(), &[2, 6, 8]);
        let channels = [noise(&[1, 2, 3, 3], 3), Tensor::from_shape(&[4], &[1.0f32, 2.0, 1.0, 1.0]).unwrap()];
        assert!(op.resize(&channels.iter().map(|t| t.clone().into_tvalue()).collect()).unwrap().is_none());
        assert_eq!(run(&op, &channels).shape(), &[1, 4, 3, 3]);
    }

    #[test]
    fn replaces_the_nodes_of_a_typed_model() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 4, 4])).unwrap();
        let scales = model.add_const("scales", tensor1(&[1.0f32, 1.0, 2.0, 2.0])).unwrap();
        let op = Resize {
            coord_transformer: CoordTransformer::HalfPixel,
            interpolator: Interpolator::Linear,
            nearest: Nearest::Floor,
            optional_scales_input: Some(1),
            optional_sizes_input: None,
        };
        let y = model.wire_node("resize", op, &[x, scales]).unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(replace_resizes(&mut model).unwrap(), 1);
        assert!(model.nodes().iter().any(|n| n.op_is::<Resize2d>()));
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(noise(&[1, 2, 4, 4], 3).into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 8, 8]);
    }
}

//! A `TopK` for tract that selects before it sorts. tract 0.23.9 sorts every lane whole (a stable sort through an
//! iterator, then writes each of the k values through a dynamic-rank index): DEIMv2's three TopK nodes — 300 of
//! 24,000 class scores in its postprocessor, and the decoder's query selection — took ~1.6 ms of a ~30 ms run,
//! and the model runs five times a frame with discovery (`examples/op_profile.rs`, 2-core x86-64).
//!
//! [`SelectTopk`] wraps tract's own op: same output facts; on f32 lanes without NaN it partitions the k best
//! (`select_nth_unstable_by`) and sorts only those, ordering by value and then by index — exactly the order of
//! tract's stable sort, which keeps tied values in index order — so the values and indices are the same. Lanes
//! holding a NaN (where tract's comparator is not an order) and other element types run tract's op unchanged.

use std::cmp::Ordering;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Topk;

/// tract's `Topk`, evaluated by selection on f32 inputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SelectTopk {
    inner: Topk,
}

/// Replaces every tract `Topk` node and returns how many. Run on the optimised model.
pub fn replace_topks(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |_, _, op: &Topk| Ok(Some(Box::new(SelectTopk { inner: op.clone() }) as Box<dyn TypedOp>)))
}

impl SelectTopk {
    /// The two outputs, or None when tract's op must compute them.
    fn topk(&self, inputs: &TVec<TValue>) -> TractResult<Option<(Tensor, Tensor)>> {
        let [input, k] = inputs.as_slice() else { return Ok(None) };
        if input.datum_type() != f32::datum_type() {
            return Ok(None);
        }
        let k = usize::try_from(k.cast_to_scalar::<i64>()?).map_err(|_| format_err!("TopK: negative k"))?;
        let axis = self.inner.axis;
        let shape: TVec<usize> = input.shape().into();
        let Some(&len) = shape.get(axis) else { return Ok(None) };
        if k > len {
            return Ok(None);
        }
        let outer: usize = shape.get(..axis).map(|s| s.iter().product()).unwrap_or(1);
        let inner: usize = shape.get(axis + 1..).map(|s| s.iter().product()).unwrap_or(1);
        let ram = input.try_as_plain_ram()?;
        let src = ram.as_slice::<f32>()?;
        if src.iter().any(|v| v.is_nan()) {
            return Ok(None);
        }
        let largest = self.inner.largest;
        // value first (the larger first when `largest`), then the lower index: a total order without NaN
        let order = |a: &(f32, usize), b: &(f32, usize)| {
            let by_value = a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal);
            let by_value = if largest { by_value.reverse() } else { by_value };
            by_value.then(a.1.cmp(&b.1))
        };
        let mut out_shape = shape.clone();
        if let Some(d) = out_shape.get_mut(axis) {
            *d = k;
        }
        let mut values = vec![0f32; outer * k * inner];
        let mut indices = vec![0i64; outer * k * inner];
        let mut lane: Vec<(f32, usize)> = Vec::with_capacity(len);
        let short = || format_err!("TopK: input shorter than its shape");
        for o in 0..outer {
            for i in 0..inner {
                lane.clear();
                for j in 0..len {
                    lane.push((*src.get((o * len + j) * inner + i).ok_or_else(short)?, j));
                }
                if k == 0 {
                    continue;
                }
                if k < len {
                    lane.select_nth_unstable_by(k - 1, order);
                }
                let best = lane.get_mut(..k).ok_or_else(short)?;
                best.sort_unstable_by(order);
                for (r, &(v, j)) in best.iter().enumerate() {
                    let at = (o * k + r) * inner + i;
                    *values.get_mut(at).ok_or_else(short)? = v;
                    *indices.get_mut(at).ok_or_else(short)? = j as i64;
                }
            }
        }
        let values = tract_ndarray::ArrayD::from_shape_vec(out_shape.as_slice(), values)?.into_tensor();
        let indices = tract_ndarray::ArrayD::from_shape_vec(out_shape.as_slice(), indices)?.into_tensor();
        Ok(Some((values, indices)))
    }
}

super::tract::fallback_op!(SelectTopk, name: |_| "SelectTopk".into(), compute: topk);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_noise::lcg_values;

    fn run(op: &dyn TypedOp, x: &Tensor, k: i64) -> TVec<Tensor> {
        let inputs = tvec!(x.clone().into_tvalue(), tensor0(k).into_tvalue());
        op.as_op().eval_out_of_plan(inputs).unwrap().unwrap().into_iter().map(|v| v.into_tensor()).collect()
    }

    #[test]
    fn same_values_and_indices_as_tracts_topk() {
        // a coarse grid of values so that many tie, ±0 and infinities
        let v = lcg_values(3 * 40 * 2, 0x2545f4914f6cdd1d, |s| match (s >> 33) % 17 {
            0 => 0.0,
            1 => -0.0,
            2 => f32::INFINITY,
            3 => f32::NEG_INFINITY,
            r => (r % 6) as f32 * 0.5,
        });
        let x = Tensor::from_shape(&[3, 40, 2], &v).unwrap();
        let mut cases = 0;
        for axis in 0..3 {
            let len = x.shape()[axis] as i64;
            for k in [0, 1, 2, len / 2, len - 1, len] {
                for largest in [true, false] {
                    let reference = Topk { axis, largest, fallback_k: TDim::Val(k) };
                    let fast = SelectTopk { inner: reference.clone() };
                    let (want, got) = (run(&reference, &x, k), run(&fast, &x, k));
                    assert_eq!(want.len(), 2);
                    for (w, g) in want.iter().zip(&got) {
                        assert_eq!(w.shape(), g.shape(), "axis {axis} k {k}");
                        let (rw, rg) = (w.try_as_plain_ram().unwrap(), g.try_as_plain_ram().unwrap());
                        assert_eq!(rw.as_bytes(), rg.as_bytes(), "axis {axis} k {k} largest {largest}");
                    }
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 3 * 6 * 2);
    }

    #[test]
    fn a_lane_with_nan_runs_tracts_op() {
        let x = Tensor::from_shape(&[4], &[1.0f32, f32::NAN, 3.0, 2.0]).unwrap();
        let fast = SelectTopk { inner: Topk { axis: 0, largest: true, fallback_k: TDim::Val(2) } };
        assert!(fast.topk(&tvec!(x.clone().into_tvalue(), tensor0(2i64).into_tvalue())).unwrap().is_none());
        let reference = Topk { axis: 0, largest: true, fallback_k: TDim::Val(2) };
        let (want, got) = (run(&reference, &x, 2), run(&fast, &x, 2));
        assert_eq!(want[1].try_as_plain_ram().unwrap().as_bytes(), got[1].try_as_plain_ram().unwrap().as_bytes());
    }
}

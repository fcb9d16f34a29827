//! A `Reduce` for tract that does not allocate per output element. tract 0.23.9 computes max, min, argmax and
//! argmin (and integer sums) by building an n-dimensional slice description — a `Vec` and a dynamic shape — for
//! every output element; MoveNet's heads reduce over a short axis for thousands of positions, ~50,000 heap
//! allocations a run (`perf` with a uprobe on malloc: 80 % of the pose model's allocations).
//!
//! [`Reduce1d`] wraps tract's own op: same output facts; over one axis of an f32, i32 or i64 tensor it sweeps
//! each lane with the same comparisons in the same order as tract's folds (the same start values, ties resolved
//! the same way, tract's SIMD kernel where tract uses it: f32 max and min over contiguous lanes), so the values
//! are the same bit for bit. Other reductions run tract's op unchanged.

use tract_linalg::routines::Func;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

/// tract's core `Reduce`, evaluated without per-element allocations for max / min / argmax / argmin over one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reduce1d {
    inner: Reduce,
}

/// Replaces every tract core `Reduce` node this op covers and returns how many.
pub fn replace_reduces(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |_, _, op: &Reduce| {
        let covered = op.axes.len() == 1
            && matches!(op.reducer, Reducer::Max | Reducer::Min | Reducer::ArgMax(_) | Reducer::ArgMin(_));
        Ok(covered.then(|| Box::new(Reduce1d { inner: op.clone() }) as Box<dyn TypedOp>))
    })
}

/// The element types covered, with the start values of tract's folds.
trait Lane: Datum + Copy + PartialOrd {
    const LOWEST: Self;
    const HIGHEST: Self;
    /// tract's SIMD max (or min) of a contiguous lane, for the types it has one for (f32).
    fn simd(_lane: &[Self], _max: bool) -> Option<TractResult<Self>> {
        None
    }
}

impl Lane for f32 {
    const LOWEST: f32 = f32::MIN;
    const HIGHEST: f32 = f32::MAX;
    fn simd(lane: &[f32], max: bool) -> Option<TractResult<f32>> {
        let func = if max { Func::ReduceMax } else { Func::ReduceMin };
        Some(func.reduce_f32().and_then(|k| k.run(lane)))
    }
}

impl Lane for i32 {
    const LOWEST: i32 = i32::MIN;
    const HIGHEST: i32 = i32::MAX;
}

impl Lane for i64 {
    const LOWEST: i64 = i64::MIN;
    const HIGHEST: i64 = i64::MAX;
}

/// `[outer, len, inner]` around the reduced axis.
fn split(shape: &[usize], axis: usize) -> Option<(usize, usize, usize)> {
    let len = *shape.get(axis)?;
    let outer = shape.get(..axis)?.iter().product();
    let inner = shape.get(axis + 1..)?.iter().product();
    Some((outer, len, inner))
}

/// Max or min of every lane: tract folds `if acc > v { acc } else { v }` (max) from the lowest value, or runs its
/// SIMD kernel on an f32 lane that lies contiguous in memory.
fn extreme<T: Lane>(src: &[T], (outer, len, inner): (usize, usize, usize), max: bool, out: &mut [T]) -> TractResult<()> {
    for (o, dst) in out.chunks_exact_mut(inner.max(1)).enumerate().take(outer) {
        let block = src.get(o * len * inner..(o + 1) * len * inner).ok_or_else(|| format_err!("Reduce1d: short input"))?;
        // a lane lies contiguous when it is the last axis (inner 1) or holds one element: tract's SIMD kernel then
        if inner == 1 {
            if let (Some(d), Some(v)) = (dst.first_mut(), T::simd(block, max)) {
                *d = v?;
                continue;
            }
        } else if len == 1 {
            let mut done = true;
            for (d, v) in dst.iter_mut().zip(block) {
                match T::simd(std::slice::from_ref(v), max) {
                    Some(r) => *d = r?,
                    None => {
                        done = false;
                        break;
                    }
                }
            }
            if done {
                continue;
            }
        }
        dst.fill(if max { T::LOWEST } else { T::HIGHEST });
        for row in block.chunks_exact(inner) {
            for (acc, &v) in dst.iter_mut().zip(row) {
                let keep = if max { *acc > v } else { *acc < v };
                if !keep {
                    *acc = v;
                }
            }
        }
    }
    Ok(())
}

/// Argmax or argmin of every lane, as tract folds it: from `(0, lowest)` (argmax) a value replaces the best when
/// greater, or equal and `last`.
fn arg<T: Lane>(src: &[T], (outer, len, inner): (usize, usize, usize), max: bool, last: bool, out: &mut [i64]) -> TractResult<()> {
    let mut best: Vec<T> = vec![if max { T::LOWEST } else { T::HIGHEST }; inner];
    for (o, dst) in out.chunks_exact_mut(inner.max(1)).enumerate().take(outer) {
        let block = src.get(o * len * inner..(o + 1) * len * inner).ok_or_else(|| format_err!("Reduce1d: short input"))?;
        dst.fill(0);
        best.fill(if max { T::LOWEST } else { T::HIGHEST });
        for (k, row) in block.chunks_exact(inner).enumerate() {
            for ((b, i), &v) in best.iter_mut().zip(dst.iter_mut()).zip(row) {
                let better = if max { v > *b } else { v < *b };
                if better || (last && *b == v) {
                    *b = v;
                    *i = k as i64;
                }
            }
        }
    }
    Ok(())
}

impl Reduce1d {
    fn typed<T: Lane>(&self, input: &Tensor, axis: usize) -> TractResult<Option<Tensor>> {
        let shape: TVec<usize> = input.shape().into();
        let Some(parts) = split(&shape, axis) else { return Ok(None) };
        if parts.1 == 0 {
            return Ok(None);
        }
        let mut out_shape = shape.clone();
        if let Some(d) = out_shape.get_mut(axis) {
            *d = 1;
        }
        let ram = input.try_as_plain_ram()?;
        let src = ram.as_slice::<T>()?;
        let out = match self.inner.reducer {
            Reducer::Max | Reducer::Min => {
                let mut out = Tensor::zero_dt(T::datum_type(), &out_shape)?;
                {
                    let mut view = out.try_as_plain_ram_mut()?;
                    extreme(src, parts, self.inner.reducer == Reducer::Max, view.as_slice_mut::<T>()?)?;
                }
                out
            }
            Reducer::ArgMax(last) | Reducer::ArgMin(last) => {
                let mut out = Tensor::zero::<i64>(&out_shape)?;
                {
                    let mut view = out.try_as_plain_ram_mut()?;
                    arg(src, parts, matches!(self.inner.reducer, Reducer::ArgMax(_)), last, view.as_slice_mut::<i64>()?)?;
                }
                out
            }
            _ => return Ok(None),
        };
        Ok(Some(out))
    }

    /// The output, or None when tract's op must compute it.
    fn reduce(&self, inputs: &TVec<TValue>) -> TractResult<Option<Tensor>> {
        let (Some(input), [axis]) = (inputs.first(), self.inner.axes.as_slice()) else { return Ok(None) };
        let dt = input.datum_type();
        if dt == f32::datum_type() {
            self.typed::<f32>(input, *axis)
        } else if dt == i32::datum_type() {
            self.typed::<i32>(input, *axis)
        } else if dt == i64::datum_type() {
            self.typed::<i64>(input, *axis)
        } else {
            Ok(None)
        }
    }
}

super::tract::fallback_op!(Reduce1d, name: |op| format!("Reduce1d<{:?}>", op.inner.reducer), compute: reduce);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &dyn TypedOp, input: &Tensor) -> Tensor {
        op.as_op().eval_out_of_plan(tvec!(input.clone().into_tvalue())).unwrap().unwrap()[0].clone().into_tensor()
    }

    /// Values with ties, the extremes of the type and (for floats) infinities.
    fn values<T: Datum + Copy>(n: usize, pick: impl Fn(u64) -> T) -> Vec<T> {
        let mut s = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pick(s >> 33)
            })
            .collect()
    }

    #[test]
    fn same_values_as_tracts_reduce_bit_for_bit() {
        let floats = values(2 * 3 * 5 * 4, |r| match r % 11 {
            0 => f32::NEG_INFINITY,
            1 => f32::INFINITY,
            2 => f32::MIN,
            3 => 1.5,
            _ => (r % 1000) as f32 / 37.0 - 13.0,
        });
        let ints = values(2 * 3 * 5 * 4, |r| match r % 9 {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => 7,
            _ => (r % 50) as i32 - 25,
        });
        let longs: Vec<i64> = ints.iter().map(|v| i64::from(*v) * 3).collect();
        let tensors = [
            Tensor::from_shape(&[2, 3, 5, 4], &floats).unwrap(),
            Tensor::from_shape(&[2, 3, 5, 4], &ints).unwrap(),
            Tensor::from_shape(&[2, 3, 5, 4], &longs).unwrap(),
            // an all −∞ lane: tract's fold keeps its start value, its SIMD kernel does not
            Tensor::from_shape(&[2, 3], &[f32::NEG_INFINITY; 6]).unwrap(),
            // lanes of one element
            Tensor::from_shape(&[3, 1, 2], &[1.0f32, -2.0, f32::NEG_INFINITY, 4.0, 0.0, -0.0]).unwrap(),
        ];
        let mut cases = 0;
        for t in &tensors {
            for axis in 0..t.rank() {
                for reducer in [Reducer::Max, Reducer::Min, Reducer::ArgMax(false), Reducer::ArgMax(true), Reducer::ArgMin(false), Reducer::ArgMin(true)] {
                    let reference = Reduce { axes: tvec!(axis), reducer };
                    let fast = Reduce1d { inner: reference.clone() };
                    let (a, b) = (run(&reference, t), run(&fast, t));
                    assert_eq!(a.shape(), b.shape(), "{reducer:?} axis {axis} of {:?}", t.shape());
                    assert_eq!(a.datum_type(), b.datum_type());
                    // bit for bit: compare the raw bytes
                    let (ra, rb) = (a.try_as_plain_ram().unwrap(), b.try_as_plain_ram().unwrap());
                    assert_eq!(ra.as_bytes(), rb.as_bytes(), "{reducer:?} axis {axis} of {:?} {:?}", t.shape(), t.datum_type());
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 6 * (4 + 4 + 4 + 2 + 3));
    }

    #[test]
    fn reductions_it_does_not_cover_stay_tracts() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3, 4])).unwrap();
        let a = model.wire_node("max01", Reduce { axes: tvec!(0, 1), reducer: Reducer::Max }, &[x]).unwrap();
        let b = model.wire_node("argmax2", Reduce { axes: tvec!(2), reducer: Reducer::ArgMax(false) }, &[x]).unwrap();
        let c = model.wire_node("prod2", Reduce { axes: tvec!(2), reducer: Reducer::Prod }, &[x]).unwrap();
        model.select_output_outlets(&[a[0], b[0], c[0]]).unwrap();
        assert_eq!(replace_reduces(&mut model).unwrap(), 1, "only the single-axis argmax");
    }
}

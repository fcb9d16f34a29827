//! Broadcasting element-wise arithmetic and comparisons for tract. tract 0.23.9 turns a binary op into a fast
//! kernel when one side is a scalar or both sides have one shape; any other broadcast (`[64, 64, 6, 17] ×
//! [64, 64, 1, 17]`, `[64, 64, 1, 1] − [1, 1, 6, 17]`, `[1, 256, 256, 3] ÷ [1, 1, 1, 3]`) runs through ndarray's
//! dynamic-rank zip, ~5–12 ns an element: in MoveNet's decoding ten such nodes took ~10 ms of a 44 ms run, in
//! DEIMv2's deformable attention ~3 ms (`examples/op_profile.rs`, 2-core x86-64).
//!
//! [`Broadcast2`] wraps tract's own op: same output facts; on f32 inputs of Add, Sub, Mul, Div (f32 out) and the
//! six comparisons (bool out) it folds the broadcast into one outer walk over rows of the output, each row a
//! contiguous run of one side against a contiguous run or a single value of the other. Each output element is
//! the one IEEE operation tract computes on the same two values, so the outputs are the same bit for bit. Other
//! element types and ops run tract's op unchanged.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::logic::{CompEq, CompGT, CompGTE, CompLT, CompLTE, CompNE};
use tract_onnx::tract_core::ops::math::{Add, Div, Mul, Sub, SubF};

/// The element-wise operations covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Sub,
    /// tract's `SubF`: `b − a`.
    SubF,
    Mul,
    Div,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
}

impl Kind {
    fn of(op: &TypedBinOp) -> Option<Kind> {
        let m = &op.0;
        Some(if m.is::<Add>() {
            Kind::Add
        } else if m.is::<Sub>() {
            Kind::Sub
        } else if m.is::<SubF>() {
            Kind::SubF
        } else if m.is::<Mul>() {
            Kind::Mul
        } else if m.is::<Div>() {
            Kind::Div
        } else if m.is::<CompLT>() {
            Kind::Lt
        } else if m.is::<CompGT>() {
            Kind::Gt
        } else if m.is::<CompLTE>() {
            Kind::Le
        } else if m.is::<CompGTE>() {
            Kind::Ge
        } else if m.is::<CompEq>() {
            Kind::Eq
        } else if m.is::<CompNE>() {
            Kind::Ne
        } else {
            return None;
        })
    }
}

/// tract's `TypedBinOp`, evaluated without ndarray's dynamic-rank broadcast on f32 inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast2 {
    inner: TypedBinOp,
    kind: Kind,
}

/// Replaces every `TypedBinOp` node this op covers whose two inputs have different shapes (same shapes already
/// run tract's in-place kernels) and returns how many. Run on the optimised model.
pub fn replace_broadcasts(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |model, id, op: &TypedBinOp| {
        let Some(kind) = Kind::of(op) else { return Ok(None) };
        let node = model.node(id);
        let facts = model.node_input_facts(id)?;
        let [a, b] = facts.as_slice() else { return Ok(None) };
        let covered = node.inputs.len() == 2
            && a.datum_type == f32::datum_type()
            && b.datum_type == f32::datum_type()
            && op.1.is_none()
            && a.shape != b.shape;
        Ok(covered.then(|| Box::new(Broadcast2 { inner: op.clone(), kind }) as Box<dyn TypedOp>))
    })
}

/// The output shape and each side's strides over it (0 along a broadcast axis), with neighbouring axes merged
/// where both sides stay contiguous across them; None when the shapes do not broadcast.
fn walk(a: &[usize], b: &[usize]) -> Option<(TVec<usize>, TVec<isize>, TVec<isize>)> {
    if a.len() != b.len() {
        return None;
    }
    let strides = |shape: &[usize]| {
        let mut s: TVec<isize> = tvec![0; shape.len()];
        let mut acc = 1isize;
        for (i, &d) in shape.iter().enumerate().rev() {
            if let Some(x) = s.get_mut(i) {
                *x = if d == 1 { 0 } else { acc };
            }
            acc *= d as isize;
        }
        s
    };
    let (sa, sb) = (strides(a), strides(b));
    let mut shape: TVec<usize> = tvec![];
    let (mut ma, mut mb): (TVec<isize>, TVec<isize>) = (tvec![], tvec![]);
    for (i, (&da, &db)) in a.iter().zip(b).enumerate() {
        let d = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
        let (xa, xb) = (*sa.get(i)?, *sb.get(i)?);
        if d == 1 {
            continue;
        }
        // merge with the previous axis when each side's previous stride is this axis's stride times its length
        // (contiguous across both) or both are 0 (broadcast across both)
        if let (Some(last_d), Some(la), Some(lb)) = (shape.last_mut(), ma.last_mut(), mb.last_mut()) {
            let joins = |prev: isize, cur: isize| (prev == 0 && cur == 0) || (cur != 0 && prev == cur * d as isize);
            if joins(*la, xa) && joins(*lb, xb) {
                *last_d *= d;
                *la = xa;
                *lb = xb;
                continue;
            }
        }
        shape.push(d);
        ma.push(xa);
        mb.push(xb);
    }
    Some((shape, ma, mb))
}

/// Calls `row(a_offset, b_offset, out_offset, len)` for every row of the merged walk (its last axis).
fn rows(shape: &[usize], sa: &[isize], sb: &[isize], mut row: impl FnMut(usize, usize, usize, usize) -> TractResult<()>) -> TractResult<()> {
    let Some((&len, outer)) = shape.split_last() else { return row(0, 0, 0, 1) };
    let count: usize = outer.iter().product();
    let mut index: TVec<usize> = tvec![0; outer.len()];
    let (mut oa, mut ob) = (0isize, 0isize);
    for r in 0..count {
        row(oa as usize, ob as usize, r * len, len)?;
        // odometer over the outer axes
        for ax in (0..outer.len()).rev() {
            let (Some(i), Some(&d), Some(&xa), Some(&xb)) = (index.get_mut(ax), outer.get(ax), sa.get(ax), sb.get(ax)) else {
                break;
            };
            *i += 1;
            oa += xa;
            ob += xb;
            if *i < d {
                break;
            }
            *i = 0;
            oa -= xa * d as isize;
            ob -= xb * d as isize;
        }
    }
    Ok(())
}

/// One row: `f(a[i], b[i])` with either side's stride 0 (a single value) or 1.
#[inline(always)]
fn row<T: Copy>(a: &[f32], b: &[f32], out: &mut [T], f: impl Fn(f32, f32) -> T) {
    match (a.len(), b.len()) {
        (1, _) => {
            let x = a.first().copied().unwrap_or_default();
            for (o, &y) in out.iter_mut().zip(b) {
                *o = f(x, y);
            }
        }
        (_, 1) => {
            let y = b.first().copied().unwrap_or_default();
            for (o, &x) in out.iter_mut().zip(a) {
                *o = f(x, y);
            }
        }
        _ => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
        }
    }
}

impl Broadcast2 {
    fn typed<T: Datum + Copy + Default>(
        &self,
        a: &[f32],
        b: &[f32],
        walk: &(TVec<usize>, TVec<isize>, TVec<isize>),
        out_shape: &[usize],
        f: impl Fn(f32, f32) -> T + Copy,
    ) -> TractResult<Tensor> {
        let mut out = Tensor::zero_dt(T::datum_type(), out_shape)?;
        {
            let mut ram = out.try_as_plain_ram_mut()?;
            let dst = ram.as_slice_mut::<T>()?;
            let (shape, sa, sb) = walk;
            let (ra, rb) = (sa.last().copied().unwrap_or(0), sb.last().copied().unwrap_or(0));
            rows(shape, sa, sb, |ia, ib, io, len| {
                let short = || format_err!("Broadcast2: inputs shorter than their shapes");
                let xa = a.get(ia..ia + if ra == 0 { 1 } else { len }).ok_or_else(short)?;
                let xb = b.get(ib..ib + if rb == 0 { 1 } else { len }).ok_or_else(short)?;
                let o = dst.get_mut(io..io + len).ok_or_else(short)?;
                row(xa, xb, o, f);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The output, or None when tract's op must compute it.
    fn compute(&self, inputs: &TVec<TValue>) -> TractResult<Option<Tensor>> {
        let [a, b] = inputs.as_slice() else { return Ok(None) };
        if a.datum_type() != f32::datum_type() || b.datum_type() != f32::datum_type() || a.shape() == b.shape() {
            return Ok(None);
        }
        let Some(w) = walk(a.shape(), b.shape()) else { return Ok(None) };
        let out_shape: TVec<usize> = a.shape().iter().zip(b.shape()).map(|(&x, &y)| x.max(y)).collect();
        let (ra, rb) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
        let (x, y) = (ra.as_slice::<f32>()?, rb.as_slice::<f32>()?);
        let s = &out_shape;
        let out = match self.kind {
            Kind::Add => self.typed(x, y, &w, s, |p, q| p + q)?,
            Kind::Sub => self.typed(x, y, &w, s, |p, q| p - q)?,
            Kind::SubF => self.typed(x, y, &w, s, |p, q| q - p)?,
            Kind::Mul => self.typed(x, y, &w, s, |p, q| p * q)?,
            Kind::Div => self.typed(x, y, &w, s, |p, q| p / q)?,
            Kind::Lt => self.typed(x, y, &w, s, |p, q| p < q)?,
            Kind::Gt => self.typed(x, y, &w, s, |p, q| p > q)?,
            Kind::Le => self.typed(x, y, &w, s, |p, q| p <= q)?,
            Kind::Ge => self.typed(x, y, &w, s, |p, q| p >= q)?,
            Kind::Eq => self.typed(x, y, &w, s, |p, q| p == q)?,
            Kind::Ne => self.typed(x, y, &w, s, |p, q| p != q)?,
        };
        Ok(Some(out))
    }
}

super::tract::fallback_op!(Broadcast2, name: |op| format!("Broadcast2<{}>", op.inner.0.name()), compute: compute);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_noise::lcg_values;
    use tract_onnx::tract_core::ops::binary::BinMiniOp;

    fn noise(shape: &[usize], seed: u64) -> Tensor {
        // a coarse grid, so comparisons see ties; a zero now and then for division
        let v = lcg_values(shape.iter().product(), seed, |s| match (s >> 33) % 13 {
            0 => 0.0,
            1 => -0.0,
            2 => f32::INFINITY,
            _ => ((s >> 40) % 9) as f32 * 0.5 - 2.0,
        });
        Tensor::from_shape(shape, &v).unwrap()
    }

    fn run(op: &dyn TypedOp, a: &Tensor, b: &Tensor) -> Tensor {
        let inputs = tvec!(a.clone().into_tvalue(), b.clone().into_tvalue());
        op.as_op().eval_out_of_plan(inputs).unwrap().unwrap()[0].clone().into_tensor()
    }

    fn minis() -> Vec<Box<dyn BinMiniOp>> {
        vec![
            Box::new(Add),
            Box::new(Sub),
            Box::new(SubF),
            Box::new(Mul),
            Box::new(Div),
            Box::new(CompLT),
            Box::new(CompGT),
            Box::new(CompLTE),
            Box::new(CompGTE),
            Box::new(CompEq),
            Box::new(CompNE),
        ]
    }

    #[test]
    fn same_values_as_tracts_binary_ops_bit_for_bit() {
        // the broadcasts of the models (MoveNet's decoding, DEIMv2's attention) and odd ones: both sides
        // broadcast, a scalar-like side, rank 1, a middle axis
        let pairs: &[(&[usize], &[usize])] = &[
            (&[6, 5, 3, 4], &[6, 5, 1, 4]),
            (&[6, 5, 1, 1], &[1, 1, 3, 4]),
            (&[1, 7, 9, 3], &[1, 1, 1, 3]),
            (&[2, 3, 5, 2], &[2, 1, 5, 2]),
            (&[1, 5, 2, 4, 2], &[1, 5, 1, 1, 2]),
            (&[4, 1, 3], &[1, 2, 1]),
            (&[1, 1, 1], &[2, 3, 4]),
            (&[3, 1], &[3, 4]),
            (&[7], &[1]),
            (&[2, 3, 4], &[2, 3, 1]),
        ];
        let mut cases = 0;
        for (k, (sa, sb)) in pairs.iter().enumerate() {
            for (a, b) in [(noise(sa, k as u64), noise(sb, 100 + k as u64)), (noise(sb, 7 + k as u64), noise(sa, 9 + k as u64))] {
                for mini in minis() {
                    let reference = TypedBinOp(mini, None);
                    let kind = Kind::of(&reference).unwrap();
                    let fast = Broadcast2 { inner: reference.clone(), kind };
                    let (want, got) = (run(&reference, &a, &b), run(&fast, &a, &b));
                    assert_eq!(want.shape(), got.shape(), "{kind:?} {:?} {:?}", a.shape(), b.shape());
                    assert_eq!(want.datum_type(), got.datum_type(), "{kind:?}");
                    let (rw, rg) = (want.try_as_plain_ram().unwrap(), got.try_as_plain_ram().unwrap());
                    assert_eq!(rw.as_bytes(), rg.as_bytes(), "{kind:?} {:?} {:?}", a.shape(), b.shape());
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 10 * 2 * 11);
    }

    #[test]
    fn merges_contiguous_axes_into_rows() {
        let (shape, sa, sb) = walk(&[64, 64, 6, 17], &[64, 64, 1, 17]).unwrap();
        assert_eq!((shape.as_slice(), sa.as_slice(), sb.as_slice()), (&[4096, 6, 17][..], &[102, 17, 1][..], &[17, 0, 1][..]));
        let (shape, sa, sb) = walk(&[64, 64, 1, 1], &[1, 1, 6, 17]).unwrap();
        assert_eq!((shape.as_slice(), sa.as_slice(), sb.as_slice()), (&[4096, 102][..], &[1, 0][..], &[0, 1][..]));
        assert!(walk(&[2, 3], &[3, 2]).is_none());
    }

    #[test]
    fn replaces_only_broadcasting_f32_nodes() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3, 4])).unwrap();
        let y = model.add_source("y", f32::fact([2, 1, 4])).unwrap();
        let z = model.add_source("z", f32::fact([2, 3, 4])).unwrap();
        let i = model.add_source("i", i32::fact([2, 3, 4])).unwrap();
        let j = model.add_source("j", i32::fact([2, 1, 4])).unwrap();
        let a = model.wire_node("mul", TypedBinOp(Box::new(Mul), None), &[x, y]).unwrap();
        let b = model.wire_node("same", TypedBinOp(Box::new(Mul), None), &[x, z]).unwrap();
        let c = model.wire_node("ints", TypedBinOp(Box::new(Add), None), &[i, j]).unwrap();
        let d = model.wire_node("lt", TypedBinOp(Box::new(CompLT), None), &[x, y]).unwrap();
        model.select_output_outlets(&[a[0], b[0], c[0], d[0]]).unwrap();
        assert_eq!(replace_broadcasts(&mut model).unwrap(), 2, "the f32 Mul and LT that broadcast");
    }
}

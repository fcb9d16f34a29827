//! A fast 2-D `GridSample` for tract. tract 0.23.9 evaluates GridSample one output element at a time through
//! n-dimensional index vectors: every element allocates four to six small `Vec`s and indexes the input through
//! ndarray's dynamic-rank checks. DEIMv2's deformable-attention decoder samples six times per image, and those
//! ops take well over half of its time in tract, with millions of allocations a frame.
//!
//! [`GridSample2d`] computes the same values (same formulas, same order of operations, bit for bit) for the
//! cases those models use — 2-D, f32, bilinear or nearest, zeros or border padding — by working out each output
//! pixel's taps once and then sweeping the channels over them. Other cases keep tract's op.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::grid_sample::{GridSample, InterpolationMode, PaddingMode};

/// How an out-of-range tap is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Padding {
    Zeros,
    Border,
}

/// Which input pixels one output pixel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Interpolation {
    Bilinear,
    Nearest,
}

/// GridSample over NCHW f32 input with an (N, Ho, Wo, 2) f32 grid of normalised (x, y) coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GridSample2d {
    interpolation: Interpolation,
    padding: Padding,
    align_corners: bool,
}

/// Replaces every tract `GridSample` node this op can compute (2-D spatial, f32 input and grid, bilinear or
/// nearest, zeros or border padding) and returns how many it replaced. Output facts are unchanged.
pub fn replace_grid_samples(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |model, id, op: &GridSample| {
        let Some(fast) = GridSample2d::for_op(op) else { return Ok(None) };
        let facts = model.node_input_facts(id)?;
        let fits = facts.len() == 2
            && facts.iter().all(|f| f.datum_type == f32::datum_type() && f.rank() == 4)
            && facts.get(1).and_then(|g| g.shape.get(3)).is_some_and(|d| *d == 2.to_dim());
        Ok(fits.then(|| Box::new(fast) as Box<dyn TypedOp>))
    })
}

impl GridSample2d {
    fn for_op(op: &GridSample) -> Option<Self> {
        let interpolation = match op.mode {
            InterpolationMode::Bilinear => Interpolation::Bilinear,
            InterpolationMode::Nearest => Interpolation::Nearest,
            InterpolationMode::Bicubic => return None,
        };
        let padding = match op.padding_mode {
            PaddingMode::Zeros => Padding::Zeros,
            PaddingMode::Border => Padding::Border,
            PaddingMode::Reflection => return None,
        };
        Some(GridSample2d { interpolation, padding, align_corners: op.align_corners })
    }

    /// A normalised coordinate in pixels (as tract and ONNX define it).
    fn denormalize(&self, coord: f32, size: usize) -> f32 {
        if self.align_corners {
            (coord + 1.0) / 2.0 * (size as f32 - 1.0)
        } else {
            ((coord + 1.0) * size as f32 - 1.0) / 2.0
        }
    }

    fn in_bounds(&self, coord: f32, size: usize) -> bool {
        let (lo, hi) = if self.align_corners { (0.0, size as f32 - 1.0) } else { (-0.5, size as f32 - 0.5) };
        coord >= lo && coord <= hi
    }

    /// Border padding clamps a coordinate that falls outside into the image (both coordinates, when either is
    /// outside, as tract does); zeros padding leaves it.
    fn pad(&self, y: f32, x: f32, h: usize, w: usize) -> (f32, f32) {
        if self.padding == Padding::Zeros || (self.in_bounds(y, h) && self.in_bounds(x, w)) {
            return (y, x);
        }
        (y.clamp(0.0, h as f32 - 1.0), x.clamp(0.0, w as f32 - 1.0))
    }

    /// The plane offset of pixel (row, col), or None where zeros padding reads a zero.
    fn tap(&self, row: isize, col: isize, h: usize, w: usize) -> Option<usize> {
        let inside = |c: isize, s: usize| c >= 0 && (c as usize) < s;
        match self.padding {
            Padding::Zeros if !(inside(row, h) && inside(col, w)) => None,
            Padding::Zeros => Some(row as usize * w + col as usize),
            Padding::Border => {
                let r = (row.max(0) as usize).min(h.saturating_sub(1));
                let c = (col.max(0) as usize).min(w.saturating_sub(1));
                Some(r * w + c)
            }
        }
    }

    /// One output pixel's taps: up to four (offset, weight) pairs, in tract's corner order (row bit first); a
    /// tap without an offset reads a zero (it is skipped, where tract adds `weight · 0`).
    fn taps(&self, gx: f32, gy: f32, h: usize, w: usize) -> [(Option<usize>, f32); 4] {
        let (y, x) = self.pad(self.denormalize(gy, h), self.denormalize(gx, w), h, w);
        let mut taps = [(None, 0.0f32); 4];
        match self.interpolation {
            Interpolation::Nearest => {
                // tract rounds, then clamps: the same as clamping to whole-pixel bounds, then rounding
                let (r, c) = (y.round_ties_even() as isize, x.round_ties_even() as isize);
                if let Some(slot) = taps.first_mut() {
                    *slot = (self.tap(r, c, h, w), 1.0);
                }
            }
            Interpolation::Bilinear => {
                let (r0, c0) = (y.floor() as isize, x.floor() as isize);
                for (corner, slot) in taps.iter_mut().enumerate() {
                    let (r, wy) = if corner & 1 == 0 { (r0, (r0 + 1) as f32 - y) } else { (r0 + 1, y - r0 as f32) };
                    let (c, wx) = if corner & 2 == 0 { (c0, (c0 + 1) as f32 - x) } else { (c0 + 1, x - c0 as f32) };
                    *slot = (self.tap(r, c, h, w), wy * wx);
                }
            }
        }
        taps
    }

    fn sample(&self, x: &Tensor, grid: &Tensor) -> TractResult<Tensor> {
        let (xs, gs) = (x.shape(), grid.shape());
        let (&[n, c, h, w], &[gn, ho, wo, two]) = (xs, gs) else {
            bail!("GridSample2d wants a rank-4 input and grid, got {xs:?} and {gs:?}")
        };
        if gn != n || two != 2 {
            bail!("GridSample2d: grid {gs:?} does not fit input {xs:?}")
        }
        let xv = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let gv = grid.try_as_plain_ram()?.as_slice::<f32>()?;
        let (plane, points) = (h * w, ho * wo);
        let mut out = Tensor::zero::<f32>(&[n, c, ho, wo])?;
        let mut view = out.try_as_plain_ram_mut()?;
        let ov = view.as_slice_mut::<f32>()?;
        let mut taps = Vec::with_capacity(points);
        for b in 0..n {
            taps.clear();
            let grid_b = gv.get(b * points * 2..(b + 1) * points * 2).unwrap_or(&[]);
            taps.extend(grid_b.chunks_exact(2).map(|g| match g {
                [gx, gy] => self.taps(*gx, *gy, h, w),
                _ => [(None, 0.0); 4],
            }));
            for ch in 0..c {
                let base = (b * c + ch) * plane;
                let Some(src) = xv.get(base..base + plane) else { bail!("GridSample2d: input shorter than its shape") };
                let start = (b * c + ch) * points;
                let Some(dst) = ov.get_mut(start..start + points) else { bail!("GridSample2d: output shorter than its shape") };
                for (o, t) in dst.iter_mut().zip(&taps) {
                    let mut acc = 0.0f32;
                    for &(offset, weight) in t {
                        if let Some(v) = offset.and_then(|o| src.get(o)) {
                            acc += weight * v;
                        }
                    }
                    *o = acc;
                }
            }
        }
        Ok(out)
    }
}

impl Op for GridSample2d {
    fn name(&self) -> StaticName {
        "GridSample2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, {:?} padding, align_corners: {}", self.interpolation, self.padding, self.align_corners)])
    }

    op_as_typed_op!();
}

impl EvalOp for GridSample2d {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [x, grid] = inputs.as_slice() else { bail!("GridSample2d takes two inputs, got {}", inputs.len()) };
        Ok(tvec!(self.sample(x, grid)?.into_tvalue()))
    }

    op_out_of_plan!();
}

impl TypedOp for GridSample2d {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let [x, grid] = inputs else { bail!("GridSample2d takes two inputs") };
        let (xs, gs) = (x.shape.dims(), grid.shape.dims());
        let ([n, c, _, _], [_, ho, wo, _]) = (xs, gs) else { bail!("GridSample2d wants rank-4 input and grid") };
        let shape: TVec<TDim> = tvec![n.clone(), c.clone(), ho.clone(), wo.clone()];
        Ok(tvec!(f32::fact(&shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random tensor of values in [lo, hi).
    fn noise(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = shape.iter().product();
        let v: Vec<f32> = (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect();
        Tensor::from_shape(shape, &v).unwrap()
    }

    fn run(op: &dyn TypedOp, x: &Tensor, grid: &Tensor) -> Tensor {
        let out = op.as_op().eval_out_of_plan(tvec!(x.clone().into_tvalue(), grid.clone().into_tvalue())).unwrap().unwrap();
        out[0].clone().into_tensor()
    }

    #[test]
    fn same_values_as_tracts_grid_sample_bit_for_bit() {
        // grids reaching past the image on every side, so padding is exercised, on an odd-sized input
        let x = noise(&[2, 3, 7, 9], 1, -2.0, 2.0);
        let grid = noise(&[2, 5, 6, 2], 2, -1.4, 1.4);
        let mut cases = 0;
        for mode in [InterpolationMode::Bilinear, InterpolationMode::Nearest] {
            for padding_mode in [PaddingMode::Zeros, PaddingMode::Border] {
                for align_corners in [false, true] {
                    let reference = GridSample { mode: mode.clone(), padding_mode: padding_mode.clone(), align_corners };
                    let fast = GridSample2d::for_op(&reference).unwrap();
                    let (want, have) = (run(&reference, &x, &grid), run(&fast, &x, &grid));
                    assert_eq!(want.shape(), have.shape());
                    let (w, h) = (want.to_plain_array_view::<f32>().unwrap(), have.to_plain_array_view::<f32>().unwrap());
                    for (i, (a, b)) in w.iter().zip(h).enumerate() {
                        assert!(a == b, "{mode:?} {padding_mode:?} align {align_corners}: element {i}: tract {a}, fast {b}");
                    }
                    assert!(w.iter().any(|v| *v != 0.0));
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 8);
    }

    #[test]
    fn cases_it_does_not_compute_keep_tracts_op() {
        let bicubic = GridSample { mode: InterpolationMode::Bicubic, padding_mode: PaddingMode::Zeros, align_corners: false };
        let reflect = GridSample { mode: InterpolationMode::Bilinear, padding_mode: PaddingMode::Reflection, align_corners: false };
        assert!(GridSample2d::for_op(&bicubic).is_none());
        assert!(GridSample2d::for_op(&reflect).is_none());
    }

    #[test]
    fn replaces_the_nodes_of_a_typed_model() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 4, 4])).unwrap();
        let g = model.add_source("g", f32::fact([1, 3, 3, 2])).unwrap();
        let op = GridSample { mode: InterpolationMode::Bilinear, padding_mode: PaddingMode::Zeros, align_corners: false };
        let y = model.wire_node("gs", op, &[x, g]).unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(replace_grid_samples(&mut model).unwrap(), 1);
        assert!(model.nodes().iter().any(|n| n.op_is::<GridSample2d>()));
        assert!(!model.nodes().iter().any(|n| n.op_is::<GridSample>()));
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(noise(&[1, 2, 4, 4], 3, 0.0, 1.0).into_tvalue(), noise(&[1, 3, 3, 2], 4, -1.0, 1.0).into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[1, 2, 3, 3]);
    }
}

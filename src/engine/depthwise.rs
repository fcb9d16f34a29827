//! Strided depthwise convolution for tract. tract 0.23.9 has a vectorised x86 depthwise kernel for unit strides
//! only: a depthwise convolution with stride 2 (the downsampling layers of DEIMv2's HGNetv2 backbone, YOLOX-nano
//! and PicoDet) walks one output point and one tap at a time — DEIMv2-femto's two such layers took ~2.2 ms of a
//! ~30 ms run, 1.1 ms for a 64 × 52 × 52 output (`examples/op_profile.rs`, 2-core x86-64).
//!
//! [`StridedDepthwise`] takes the place of tract's `Conv` before tract optimises the graph, where the convolution
//! is depthwise (one input and one output channel per group), over two spatial axes of an NCHW (or CHW) f32
//! tensor, with a constant kernel, no dilation and a stride above 1. It deinterleaves each input plane once into
//! its stride phases, zero-padded planes with the accumulator's row stride, so every tap becomes one multiply-add
//! over a single contiguous run of the whole output plane, which the compiler vectorises; the planes split across
//! tract's executor. Each output point is the bias plus every tap's product, added in tract's order (row-major over
//! the kernel) without fused multiply-adds, so the values are tract's (a tap in the padding adds a zero that tract
//! skips). Anything else falls back to tract's `Conv`.

use tract_onnx::prelude::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};

/// tract's `Conv`, evaluated for a strided depthwise convolution on f32 planes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StridedDepthwise {
    inner: Conv,
    geometry: Geometry,
}

/// The sizes the evaluation walks: `planes` (batch × channels) input planes of `h × w`, each giving an output
/// plane of `oh × ow` through a `kh × kw` kernel at strides `sh`, `sw`, with `pt` rows and `pl` columns of zero
/// padding before the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Geometry {
    planes: usize,
    channels: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
}

/// Replaces every `Conv` node this op covers and returns how many. Run on the decluttered model, before
/// `into_optimized` turns convolutions into tract's kernels.
pub fn replace_strided_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    super::tract::replace_ops(model, |model, id, op: &Conv| {
        let facts = model.node_input_facts(id)?;
        let [x, kernel, _bias] = facts.as_slice() else { return Ok(None) };
        let Some(geometry) = geometry(op, x, kernel) else { return Ok(None) };
        Ok(Some(Box::new(StridedDepthwise { inner: op.clone(), geometry }) as Box<dyn TypedOp>))
    })
}

/// The walk of `op` over inputs of these facts, or None when this op does not cover it.
fn geometry(op: &Conv, x: &TypedFact, kernel: &TypedFact) -> Option<Geometry> {
    let spec = &op.pool_spec;
    let channels = spec.input_channels;
    let covered = op.q_params.is_none()
        && x.datum_type == f32::datum_type()
        && kernel.datum_type == f32::datum_type()
        && kernel.konst.is_some()
        && op.kernel_fmt == KernelFormat::OIHW
        && !spec.data_format.c_is_last()
        && spec.rank() == 2
        && op.group == channels
        && spec.output_channels == channels
        && channels > 1
        && spec.dilations().iter().all(|&d| d == 1);
    let strides = spec.strides();
    let &[sh, sw] = strides.as_ref() else { return None };
    if !covered || (sh == 1 && sw == 1) {
        return None;
    }
    let shape = x.shape.as_concrete()?;
    let data = spec.data_format.shape(shape.to_vec()).ok()?;
    let (&[h, w], &[kh, kw]) = (data.hw_dims(), spec.kernel_shape.as_slice()) else { return None };
    let padding = spec.computed_padding(&[h, w]);
    let [rows, cols] = padding.as_slice() else { return None };
    let planes = data.n().copied().unwrap_or(1) * *data.c();
    // the kernel must be the [channels, 1, kh, kw] of a depthwise OIHW convolution
    let kernel_shape = kernel.shape.as_concrete()?;
    if kernel_shape != [channels, 1, kh, kw] || *data.c() != channels || h * w == 0 {
        return None;
    }
    Some(Geometry {
        planes,
        channels,
        h,
        w,
        oh: rows.convoluted,
        ow: cols.convoluted,
        kh,
        kw,
        sh,
        sw,
        pt: rows.pad_before,
        pl: cols.pad_before,
    })
}

/// Where one kernel tap reads: input row `oy·sh + ky − pt` is row `oy + dy` of row phase `q` (the input rows
/// `q`, `q + sh`, …), and likewise for columns with `dx` and `p`.
#[derive(Clone, Copy, Debug)]
struct Tap {
    q: usize,
    dy: isize,
    p: usize,
    dx: isize,
}

/// `k − pad` as `d·stride + phase`, phase in `0..stride`.
fn split(k: usize, pad: usize, stride: usize) -> (usize, isize) {
    let offset = k as isize - pad as isize;
    let phase = offset.rem_euclid(stride as isize);
    (phase as usize, (offset - phase) / stride as isize)
}

/// The layout of the scratch planes: each of the `sh × sw` phases of the input is a zero-padded plane of `rows ×
/// cols` (`top` rows and `left` columns of margin before the phase's first element), and the accumulator has the
/// same row stride, so one tap is one multiply-add over a single contiguous run of `oh × cols` elements.
#[derive(Clone, Copy, Debug)]
struct Layout {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
}

impl Geometry {
    fn tap(&self, ky: usize, kx: usize) -> Tap {
        let (q, dy) = split(ky, self.pt, self.sh);
        let (p, dx) = split(kx, self.pl, self.sw);
        Tap { q, dy, p, dx }
    }

    fn layout(&self) -> Layout {
        let (dy0, dy1) = (self.tap(0, 0).dy, self.tap(self.kh.saturating_sub(1), 0).dy);
        let (dx0, dx1) = (self.tap(0, 0).dx, self.tap(0, self.kw.saturating_sub(1)).dx);
        let (top, left) = ((-dy0).max(0) as usize, (-dx0).max(0) as usize);
        Layout { top, left, rows: top + self.oh + dy1.max(0) as usize, cols: left + self.ow + dx1.max(0) as usize }
    }

    /// Scratch elements [`Geometry::plane`] needs: the phase planes, then the accumulator.
    fn scratch_len(&self) -> usize {
        let l = self.layout();
        self.sh * self.sw * l.rows * l.cols + self.oh * l.cols
    }

    /// One output plane from its input plane. `scratch` holds [`Geometry::scratch_len`] elements, zeroed before
    /// the first plane: the margins of the phase planes stay zero, their insides are overwritten every plane.
    fn plane(&self, input: &[f32], taps: &[f32], bias: f32, scratch: &mut [f32], out: &mut [f32]) -> TractResult<()> {
        if self.oh == 0 || self.ow == 0 {
            return Ok(());
        }
        let short = || format_err!("StridedDepthwise: a plane shorter than its geometry");
        let (h, w, sh, sw) = (self.h, self.w, self.sh, self.sw);
        let l = self.layout();
        let plane_len = l.rows * l.cols;
        let (phases, acc) = scratch.split_at_mut(sh * sw * plane_len);
        // phase (q, p) row r, column c holds input[r·sh + q][c·sw + p]
        for y in 0..h {
            let (q, r) = (y % sh, y / sh + l.top);
            if r >= l.rows {
                continue;
            }
            let row = input.get(y * w..(y + 1) * w).ok_or_else(short)?;
            for p in 0..sw {
                let start = ((q * sw + p) * l.rows + r) * l.cols + l.left;
                let dst = phases.get_mut(start..start + (l.cols - l.left)).ok_or_else(short)?;
                if sw == 2 {
                    // pairs vectorise; `step_by(2)` does not (5 against 13–26 ns a 104-wide row)
                    for (d, pair) in dst.iter_mut().zip(row.get(p..).unwrap_or_default().chunks_exact(2)) {
                        *d = pair.first().copied().unwrap_or_default();
                    }
                    // an odd tail the pairs missed
                    if (w - p) % 2 == 1 {
                        if let (Some(d), Some(&v)) = (dst.get_mut((w - p) / 2), row.last()) {
                            *d = v;
                        }
                    }
                } else {
                    for (d, &v) in dst.iter_mut().zip(row.iter().skip(p).step_by(sw)) {
                        *d = v;
                    }
                }
            }
        }
        // output (oy, ox) accumulates at oy·cols + left + ox; the run from the first output to the last one
        let (lo, hi) = (l.left, (self.oh - 1) * l.cols + l.left + self.ow);
        let acc = acc.get_mut(..hi).ok_or_else(short)?;
        acc.fill(bias);
        let run = acc.get_mut(lo..).ok_or_else(short)?;
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let t = *taps.get(ky * self.kw + kx).ok_or_else(short)?;
                let tap = self.tap(ky, kx);
                let start = (tap.q * sw + tap.p) * plane_len;
                let from = start as isize + (tap.dy + l.top as isize) * l.cols as isize + tap.dx + lo as isize;
                let from = usize::try_from(from).map_err(|_| short())?;
                let src = phases.get(from..from + run.len()).ok_or_else(short)?;
                for (o, &v) in run.iter_mut().zip(src) {
                    *o += v * t;
                }
            }
        }
        for (oy, dst) in out.chunks_exact_mut(self.ow).enumerate() {
            let src = acc.get(oy * l.cols + l.left..oy * l.cols + l.left + self.ow).ok_or_else(short)?;
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}

impl StridedDepthwise {
    /// The output, or None when tract's `Conv` must compute it.
    fn compute(&self, inputs: &TVec<TValue>) -> TractResult<Option<Tensor>> {
        let [x, kernel, bias] = inputs.as_slice() else { return Ok(None) };
        let g = self.geometry;
        let f32s = [x, kernel, bias].iter().all(|t| t.datum_type() == f32::datum_type());
        if !f32s || x.len() != g.planes * g.h * g.w || kernel.len() != g.channels * g.kh * g.kw {
            return Ok(None);
        }
        if bias.len() != 1 && bias.len() != g.channels {
            return Ok(None);
        }
        // channels first: the spatial axes are the last two
        let mut shape: TVec<usize> = x.shape().into();
        match shape.as_mut_slice() {
            [.., oh, ow] => (*oh, *ow) = (g.oh, g.ow),
            _ => return Ok(None),
        }
        let mut out = Tensor::zero::<f32>(&shape)?;
        let plane = g.oh * g.ow;
        if out.len() != g.planes * plane || plane == 0 {
            return Ok(None);
        }
        let (rx, rk, rb) = (x.try_as_plain_ram()?, kernel.try_as_plain_ram()?, bias.try_as_plain_ram()?);
        let (input, taps, biases) = (rx.as_slice::<f32>()?, rk.as_slice::<f32>()?, rb.as_slice::<f32>()?);
        {
            let mut ram = out.try_as_plain_ram_mut()?;
            let dst = ram.as_slice_mut::<f32>()?;
            let work = g.planes * g.oh * g.ow * g.kh * g.kw;
            par_chunks_mut(dst, plane, work, |first, chunk| {
                let mut scratch = vec![0f32; g.scratch_len()];
                for (i, out) in chunk.chunks_mut(plane).enumerate() {
                    let n = first + i;
                    let c = n % g.channels;
                    let src = input.get(n * g.h * g.w..(n + 1) * g.h * g.w);
                    let kc = taps.get(c * g.kh * g.kw..(c + 1) * g.kh * g.kw);
                    let b = if biases.len() == 1 { biases.first() } else { biases.get(c) };
                    let (Some(src), Some(kc), Some(&b)) = (src, kc, b) else {
                        bail!("StridedDepthwise: inputs shorter than their shapes");
                    };
                    g.plane(src, kc, b, &mut scratch, out)?;
                }
                Ok(())
            })?;
        }
        Ok(Some(out))
    }
}

super::tract::fallback_op!(StridedDepthwise, name: |_| "StridedDepthwise".to_string(), compute: compute,
    info: |op| format!("{:?}", op.geometry));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_noise::lcg_values;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::nn::DataFormat;

    fn noise(shape: &[usize], seed: u64) -> Tensor {
        let v = lcg_values(shape.iter().product(), seed, |s| ((s >> 40) % 2001) as f32 / 1000.0 - 1.0);
        Tensor::from_shape(shape, &v).unwrap()
    }

    /// Channels, height, width, kernel, strides, padding.
    type Case = (usize, usize, usize, [usize; 2], [usize; 2], PaddingSpec);

    type Plans = (Arc<TypedSimplePlan>, Arc<TypedSimplePlan>, usize, Option<(StridedDepthwise, TValue, TValue)>);

    /// A depthwise convolution over `[1, c, h, w]` with this kernel, strides and padding, its kernel a constant,
    /// built as tract's ONNX loader builds it; and the plan tract makes of it, with and without the replacement.
    fn plans(c: usize, h: usize, w: usize, k: [usize; 2], strides: [usize; 2], padding: PaddingSpec, bias: &Tensor) -> Plans {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, c, h, w])).unwrap();
        let kernel = model.add_const("kernel", noise(&[c, 1, k[0], k[1]], 11)).unwrap();
        let bias = model.add_const("bias", bias.clone()).unwrap();
        let op = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(k[0], k[1]),
                padding,
                dilations: None,
                strides: Some(tvec!(strides[0], strides[1])),
                input_channels: c,
                output_channels: c,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: c,
            q_params: None,
        };
        let y = model.wire_node("dw", op, &[x, kernel, bias]).unwrap();
        model.select_output_outlets(&y).unwrap();
        let reference = model.clone().into_optimized().unwrap().into_runnable().unwrap();
        let mut ours = model.into_decluttered().unwrap();
        let replaced = replace_strided_depthwise(&mut ours).unwrap();
        let direct = ours.nodes().iter().find_map(|n| {
            let op = n.op_as::<StridedDepthwise>()?.clone();
            let konst = |i: usize| ours.outlet_fact(n.inputs[i]).unwrap().konst.clone().unwrap().into_tvalue();
            Some((op, konst(1), konst(2)))
        });
        let ours = ours.into_optimized().unwrap().into_runnable().unwrap();
        (reference, ours, replaced, direct)
    }

    #[test]
    fn same_values_as_tracts_depthwise_convolution() {
        // DEIMv2's downsampling layers (3 × 3, stride 2, one pixel of padding), odd sizes, asymmetric padding,
        // a stride on one axis only, wider kernels, a scalar bias
        let cases: &[Case] = &[
            (8, 20, 20, [3, 3], [2, 2], PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1))),
            (5, 17, 13, [3, 3], [2, 2], PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1))),
            (3, 16, 15, [3, 3], [2, 2], PaddingSpec::Explicit(tvec!(0, 1), tvec!(1, 0))),
            (4, 12, 19, [5, 5], [2, 2], PaddingSpec::Explicit(tvec!(2, 2), tvec!(2, 2))),
            (2, 11, 10, [3, 3], [1, 2], PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1))),
            (6, 14, 14, [3, 3], [3, 3], PaddingSpec::Valid),
            (3, 9, 21, [1, 4], [2, 3], PaddingSpec::SameUpper),
        ];
        for (i, (c, h, w, k, s, padding)) in cases.iter().enumerate() {
            for bias in [noise(&[*c], 3), tensor0(0.25f32)] {
                let (reference, ours, replaced, direct) = plans(*c, *h, *w, *k, *s, padding.clone(), &bias);
                assert_eq!(replaced, 1, "case {i}");
                let x = noise(&[1, *c, *h, *w], 100 + i as u64);
                let want = reference.run(tvec!(x.clone().into_tvalue())).unwrap().remove(0).into_tensor();
                // pancap's walk, not the fallback to tract's Conv, computes it
                let (op, kernel, bias) = direct.unwrap();
                let computed = op.compute(&tvec!(x.clone().into_tvalue(), kernel, bias)).unwrap().unwrap();
                let got = ours.run(tvec!(x.into_tvalue())).unwrap().remove(0).into_tensor();
                for got in [&got, &computed] {
                    assert_eq!(want.shape(), got.shape(), "case {i}");
                    let (rw, rg) = (want.try_as_plain_ram().unwrap(), got.try_as_plain_ram().unwrap());
                    // equal values: a tap in the padding adds a zero here where tract skips it, so only the sign
                    // of an exact zero could differ
                    let (w, g) = (rw.as_slice::<f32>().unwrap(), rg.as_slice::<f32>().unwrap());
                    assert!(w.iter().zip(g).all(|(a, b)| a == b), "case {i}: not tract's values");
                }
            }
        }
    }

    #[test]
    fn covers_only_strided_depthwise_f32() {
        let conv = |group: usize, out: usize, strides: [usize; 2]| Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(3, 3),
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: Some(tvec!(strides[0], strides[1])),
                input_channels: 4,
                output_channels: out,
            },
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        let x = f32::fact([1, 4, 9, 9]);
        let k = |o: usize, i: usize| TypedFact::try_from(noise(&[o, i, 3, 3], 1)).unwrap();
        assert!(geometry(&conv(4, 4, [2, 2]), &x, &k(4, 1)).is_some());
        assert!(geometry(&conv(4, 4, [1, 1]), &x, &k(4, 1)).is_none(), "unit strides run tract's vector kernel");
        assert!(geometry(&conv(1, 4, [2, 2]), &x, &k(4, 4)).is_none(), "not depthwise");
        assert!(geometry(&conv(4, 8, [2, 2]), &x, &k(8, 1)).is_none(), "a channel multiplier");
        assert!(geometry(&conv(4, 4, [2, 2]), &f32::fact([1, 4, 9, 9]), &TypedFact::shape::<f32, _>([4, 1, 3, 3])).is_none(), "a kernel that is not a constant");
        assert!(geometry(&conv(4, 4, [2, 2]), &u8::fact([1, 4, 9, 9]), &k(4, 1)).is_none(), "not f32");
    }
}



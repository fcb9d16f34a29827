//! Fake detector outputs and a synthetic frame: the whole pipeline without weights, deterministic.

use pancap::engine::{EngineError, FakeEngine, Tensor, TensorData};
use pancap::models::Manifest;
use pancap::perceive::{DetectParams, Detector};
use pancap::source::Frame;
use std::path::Path;

/// A YOLOX head output with one confident cell per (stride index, gx, gy, w, h, class, score).
pub fn yolox_output(cells: &[(usize, usize, usize, f32, f32, usize, f32)]) -> Tensor {
    let strides = [8usize, 16, 32];
    let sizes: Vec<usize> = strides.iter().map(|s| 416 / s).collect();
    let rows: usize = sizes.iter().map(|g| g * g).sum();
    let mut v = vec![0f32; rows * 85];
    for &(si, gx, gy, w, h, class, score) in cells {
        let offset: usize = sizes[..si].iter().map(|g| g * g).sum();
        let r = (offset + gy * sizes[si] + gx) * 85;
        let s = strides[si] as f32;
        v[r] = 0.5;
        v[r + 1] = 0.5;
        v[r + 2] = (w / s).ln();
        v[r + 3] = (h / s).ln();
        v[r + 4] = 1.0;
        v[r + 5 + class] = score;
    }
    Tensor::new(vec![1, rows, 85], TensorData::F32(v)).unwrap()
}

/// PicoDet outputs (strides 8, 16, 32, 64 on 416) with one cell per (stride index, gx, gy, l, t, r, b, class, score);
/// distances in pixels, encoded as a two-bin distribution whose expectation is exact.
/// (stride index, gx, gy, [l, t, r, b], class, score)
pub type GflCell = (usize, usize, usize, [f32; 4], usize, f32);

pub fn picodet_outputs(cells: &[GflCell]) -> Vec<Tensor> {
    let strides = [8usize, 16, 32, 64];
    let sizes: Vec<usize> = strides.iter().map(|s| 416usize.div_ceil(*s)).collect();
    let mut cls: Vec<Vec<f32>> = sizes.iter().map(|g| vec![0.0; g * g * 80]).collect();
    let mut dist: Vec<Vec<f32>> = sizes.iter().map(|g| vec![-30.0; g * g * 32]).collect();
    for &(si, gx, gy, sides, class, score) in cells {
        let cell = gy * sizes[si] + gx;
        cls[si][cell * 80 + class] = score;
        for (k, d) in sides.iter().enumerate() {
            let e = d / strides[si] as f32;
            let lo = e.floor();
            let frac = e - lo;
            let base = cell * 32 + k * 8 + lo as usize;
            dist[si][base] = (1.0 - frac).max(1e-9).ln();
            dist[si][base + 1] = frac.max(1e-9).ln();
        }
    }
    let mut out: Vec<Tensor> = cls
        .into_iter()
        .zip(&sizes)
        .map(|(v, g)| Tensor::new(vec![1, g * g, 80], TensorData::F32(v)).unwrap())
        .collect();
    out.extend(dist.into_iter().zip(&sizes).map(|(v, g)| Tensor::new(vec![1, g * g, 32], TensorData::F32(v)).unwrap()));
    out
}

pub fn fake_picodet(outputs: Vec<Tensor>) -> Detector {
    let m = Manifest::by_name("picodet_s_416_coco").unwrap();
    let spec = m.model_spec(Path::new("unused"));
    let engine = FakeEngine::new(spec, move |_inputs: &[Tensor]| -> Result<Vec<Tensor>, EngineError> { Ok(outputs.clone()) });
    Detector::new(m, Box::new(engine), DetectParams::default()).unwrap()
}

pub fn fake_yolox(outputs: Tensor) -> Detector {
    let m = Manifest::by_name("yolox_nano_416").unwrap();
    let spec = m.model_spec(Path::new("unused"));
    let engine = FakeEngine::new(spec, move |_inputs: &[Tensor]| -> Result<Vec<Tensor>, EngineError> { Ok(vec![outputs.clone()]) });
    Detector::new(m, Box::new(engine), DetectParams::default()).unwrap()
}

pub fn frame() -> Frame {
    // 416x416 so model pixels are image pixels: sky-blue top half, green bottom half
    let mut rgb = image::RgbImage::from_pixel(416, 416, image::Rgb([120, 180, 235]));
    for y in 208..416 {
        for x in 0..416 {
            rgb.put_pixel(x, y, image::Rgb([40, 150, 50]));
        }
    }
    // a red square where the fake detector will see the first thing
    for y in 180..260 {
        for x in 60..140 {
            rgb.put_pixel(x, y, image::Rgb([210, 30, 30]));
        }
    }
    Frame { rgb, origin: "synthetic.png".into(), seq: 0 }
}


#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The graph rewrites the tract-cuda path applies (max pools and downsamples as pads, slices, `max` and
//! reshapes, which tract's CUDA runtime has kernels for) change no output: checked on the CPU, on every real
//! model that has such ops, against the unrewritten graph.

mod common;

use pancap::engine::{self, BackendConfig, ModelSpec, Tensor, TensorData, TractEngine};
use pancap::models::{Manifest, OcrManifest};
use pancap::perceive::model_inputs;

fn compare(name: &str, spec: ModelSpec, inputs: &[Tensor], want_rewritten: usize) {
    let mut plain = engine::load(&BackendConfig::default(), spec.clone()).unwrap();
    let (mut rewritten, count) = TractEngine::load_with_gpu_rewrites(spec, None).unwrap();
    eprintln!("{name}: {count} op(s) rewritten");
    assert_eq!(count, want_rewritten, "{name}: ops rewritten");
    let a = plain.run(inputs).unwrap();
    let b = pancap::engine::Engine::run(&mut rewritten, inputs).unwrap();
    assert_eq!(a.len(), b.len(), "{name}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.shape, y.shape, "{name}");
        let (TensorData::F32(x), TensorData::F32(y)) = (&x.data, &y.data) else { panic!("{name}: not f32") };
        let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "{name}: max |plain - rewritten| = {d}");
    }
}

#[test]
fn rewritten_pools_and_downsamples_give_the_same_outputs_on_the_real_models() {
    let rgb = image::open(common::data("darknet-images-unannotated/person.jpg")).unwrap().to_rgb8();
    // YOLOX: the Focus stem's 6 downsamples and SPP's 3 max pools (5, 9, 13); PicoDet: one max pool
    for (name, want) in [("yolox_nano_416", 9), ("picodet_s_416_coco", 1)] {
        let m = Manifest::by_name(name).unwrap();
        let (input, _) = model_inputs(&rgb, &m).unwrap();
        compare(name, m.model_spec(&common::models_dir()), &input, want);
    }
    // PP-OCR: the direction classifier's max pool (the detector and recogniser have none: run as controls), on
    // real pixels (the photo squeezed to each input)
    let ocr = OcrManifest::by_name("ppocr_v4").unwrap().unwrap();
    let dir = common::models_dir();
    for (name, spec, want) in [
        ("ppocr_v4/det", ocr.detector_spec(&dir, [640, 480]), 0),
        ("ppocr_v4/cls", ocr.classifier_spec(&dir), 1),
        ("ppocr_v4/rec", ocr.recogniser_spec(&dir, 320), 0),
    ] {
        let shape = spec.inputs[0].shape.clone();
        let (h, w) = (shape[2] as u32, shape[3] as u32);
        let strip = image::imageops::resize(&rgb, w, h, image::imageops::FilterType::Triangle);
        let data: Vec<f32> = (0..3).flat_map(|c| strip.pixels().map(move |p| f32::from(p[c]) / 127.5 - 1.0)).collect();
        let input = Tensor::new(shape, TensorData::F32(data)).unwrap();
        compare(name, spec, &[input], want);
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The ONNX Runtime backend (`--features ort`) against tract on the real models, and its loud failures.
//! Needs the ONNX Runtime library in ORT_DYLIB_PATH (`.ci/run` installs the PyPI `onnxruntime` wheel's); fails,
//! never skips, without it.
#![cfg(feature = "ort")]

mod common;

use pancap::engine::{self, Backend, BackendConfig, Precision, TensorData};
use pancap::models::{DecoderManifest, Manifest};
use pancap::perceive::{model_inputs, DetectParams, Detector};
use std::path::PathBuf;

fn ort_library() -> PathBuf {
    let p = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .expect("set ORT_DYLIB_PATH to libonnxruntime.so (.ci/run installs the onnxruntime wheel's)");
    assert!(p.is_file(), "ORT_DYLIB_PATH={} is not a file", p.display());
    p
}

fn ort_cpu() -> BackendConfig {
    BackendConfig { ort_library: Some(ort_library()), threads: Some(1), ..BackendConfig::new(Backend::OrtCpu) }
}

fn image(rel: &str) -> image::RgbImage {
    image::open(common::data(rel)).unwrap().to_rgb8()
}

/// Per-pixel class ids of the uint8-quantized segmenter: integer kernels round differently in tract and ONNX
/// Runtime, which flips labels along region borders (measured: 2.3 % of pixels on dog.jpg); the regions agree.
fn labels_agree<T: PartialEq>(name: &str, x: &[T], y: &[T]) {
    assert_eq!(x.len(), y.len(), "{name}");
    let differ = x.iter().zip(y).filter(|(a, b)| a != b).count();
    assert!(differ * 100 <= x.len() * 4, "{name}: {differ} of {} labels differ", x.len());
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn detections_agree(m: &Manifest, rgb: &image::RgbImage) {
    let detect = |backend: &BackendConfig| {
        let e = engine::load(backend, m.model_spec(&common::models_dir())).unwrap();
        let mut d = Detector::new(m.clone(), e, DetectParams::default()).unwrap();
        let mut dets = d.detect(rgb, &mut Default::default()).unwrap();
        dets.retain(|d| d.score >= 0.3);
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        dets
    };
    let (a, b) = (detect(&BackendConfig::default()), detect(&ort_cpu()));
    assert!(!a.is_empty(), "{}", m.name);
    assert_eq!(a.len(), b.len(), "{}", m.name);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.class, y.class, "{}", m.name);
        assert!((x.score - y.score).abs() < 1e-2, "{}: {} vs {}", m.name, x.score, y.score);
        let d = [x.bbox.x1 - y.bbox.x1, x.bbox.y1 - y.bbox.y1, x.bbox.x2 - y.bbox.x2, x.bbox.y2 - y.bbox.y2];
        assert!(d.iter().all(|v| v.abs() < 1.0), "{}: {:?} vs {:?}", m.name, x.bbox, y.bbox);
    }
}

#[test]
fn ort_cpu_and_tract_give_the_same_raw_outputs_on_every_image_model() {
    let rgb = image("darknet-images-unannotated/dog.jpg");
    for m in Manifest::all().unwrap() {
        let name = m.name.as_str();
        // the manifest says which backends it was validated on: this test is what backs "ort-cpu" there
        assert!(m.validated_backends.iter().any(|b| b == "ort-cpu"), "{name}");
        let spec = m.model_spec(&common::models_dir());
        if let DecoderManifest::Detr { .. } = m.decoder {
            // DETR outputs are top-k sorted by score: tiny score differences reorder the rows, so compare what
            // the decoder makes of them
            detections_agree(&m, &rgb);
            continue;
        }
        let (input, _) = model_inputs(&rgb, &m).unwrap();
        let mut tract = engine::load(&BackendConfig::default(), spec.clone()).unwrap();
        let mut ort = engine::load(&ort_cpu(), spec).unwrap();
        assert!(ort.provider().contains("CPUExecutionProvider"), "{}", ort.provider());
        let threads = pancap::engine::default_threads();
        let want = if threads == 1 { "tract, 1 thread".to_string() } else { format!("tract, {threads} threads") };
        assert_eq!(tract.provider(), want);
        let a = tract.run(&input).unwrap();
        let b = ort.run(&input).unwrap();
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.shape, y.shape, "{name}");
            match (&x.data, &y.data) {
                (TensorData::F32(x), TensorData::F32(y)) => {
                    let scale = x.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let d = max_abs_diff(x, y);
                    assert!(d <= 2e-3 * scale, "{name}: max |tract - ort| = {d} (scale {scale})");
                }
                (TensorData::I64(x), TensorData::I64(y)) => labels_agree(name, x, y),
                (TensorData::I32(x), TensorData::I32(y)) => labels_agree(name, x, y),
                (TensorData::U8(x), TensorData::U8(y)) => labels_agree(name, x, y),
                _ => panic!("{name}: element types differ: {:?} vs {:?}", x.dtype(), y.dtype()),
            }
        }
    }
}

#[test]
fn caption_with_ort_cpu_finds_the_same_entities_as_tract_and_reports_its_provider() {
    let img = common::data("darknet-images-unannotated/dog.jpg");
    let run = |backend: &str| {
        let out = common::pancap(&[
            "caption",
            img.to_str().unwrap(),
            "--no-discovery",
            "--backend",
            backend,
            "--ort-lib",
            ort_library().to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0].clone()
    };
    let (t, o) = (run("tract"), run("ort-cpu"));
    let providers = o["providers"].as_array().unwrap();
    // two detectors, the stuff segmenter, the person segmenter, the pose model and the text reader
    assert_eq!(providers.len(), 6, "{providers:?}");
    assert!(providers.iter().any(|p| p["model"] == "selfie_person_256"), "{providers:?}");
    assert!(providers.iter().any(|p| p["model"] == "movenet_multipose_lightning"), "{providers:?}");
    assert!(providers.iter().any(|p| p["model"] == "ppocr_v4"), "{providers:?}");
    assert!(providers.iter().all(|p| p["provider"].as_str().unwrap().contains("CPUExecutionProvider")), "{providers:?}");
    assert!(t["providers"][0]["provider"].as_str().unwrap().starts_with("tract, "), "{}", t["providers"]);
    let things = |v: &serde_json::Value| -> Vec<(String, Vec<f64>)> {
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "thing")
            .map(|e| (e["tag"].as_str().unwrap().to_string(), e["box"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()))
            .collect()
    };
    let (a, b) = (things(&t), things(&o));
    assert!(!a.is_empty());
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 2e-3, "{x:?} vs {y:?}");
        }
    }
}

#[test]
fn gpu_providers_missing_from_the_library_are_errors_never_a_cpu_fallback() {
    let img = common::data("darknet-images-unannotated/dog.jpg");
    for (backend, precision, provider) in
        [("ort-cuda", "fp32", "CUDAExecutionProvider"), ("ort-tensorrt", "fp16", "TensorrtExecutionProvider")]
    {
        let out = common::pancap(&[
            "caption",
            img.to_str().unwrap(),
            "--backend",
            backend,
            "--precision",
            precision,
            "--ort-lib",
            ort_library().to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{backend}: {err}");
        assert!(err.contains(provider) && err.contains("onnxruntime-gpu"), "{backend}: {err}");
        assert!(out.stdout.is_empty(), "{backend} wrote a caption anyway");
    }
    // the library directly, too: a CUDA session is refused, not built on the CPU
    let m = Manifest::by_name("yolox_nano_416").unwrap();
    let cfg = BackendConfig { ort_library: Some(ort_library()), ..BackendConfig::new(Backend::OrtCuda) };
    let e = engine::load(&cfg, m.model_spec(&common::models_dir())).err().expect("CUDA must not load here");
    assert!(e.to_string().contains("CUDAExecutionProvider"), "{e}");
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let img = common::data("darknet-images-unannotated/dog.jpg");
    let out = common::pancap(&["caption", img.to_str().unwrap(), "--backend", "ort-cpu", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("ORT_DYLIB_PATH"), "{err}");
}

#[test]
fn backends_lists_the_library_and_its_providers() {
    let out = common::pancap(&["backends", "--ort-lib", ort_library().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("CPUExecutionProvider         available"), "{text}");
    assert!(text.contains("CUDAExecutionProvider        not in this library"), "{text}");
    assert!(text.contains("ort-tensorrt   compiled in"), "{text}");
}

#[test]
fn profile_compares_tract_and_ort_cpu_in_one_run() {
    let img = common::data("darknet-images-unannotated/dog.jpg");
    let out = common::pancap(&[
        "profile",
        img.to_str().unwrap(),
        "--detectors",
        "yolox_nano_416",
        "--no-stuff",
        "--no-discovery",
        "--warmup",
        "1",
        "--repeat",
        "2",
        "--compare",
        "tract,ort-cpu",
        "--ort-lib",
        ort_library().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = v["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!((reports[0]["backend"].as_str(), reports[1]["backend"].as_str()), (Some("tract"), Some("ort-cpu")));
    assert_eq!(reports[1]["frames"], 2);
    let c = &v["comparisons"][0];
    assert_eq!((c["baseline"].as_str(), c["variant"].as_str()), (Some("tract/fp32"), Some("ort-cpu/fp32")));
    let inference = c["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "inference").unwrap();
    // the comparison is built from the two reports of this run: each side's p50 is that report's own stage p50
    let p50_of = |report: &serde_json::Value| {
        let stages = report["stages"].as_array().unwrap();
        stages.iter().find(|s| s["stage"] == "inference").unwrap()["p50_ms"].as_f64().unwrap()
    };
    let (tract_ms, ort_ms) = (p50_of(&reports[0]), p50_of(&reports[1]));
    assert_eq!(inference["baseline_p50_ms"].as_f64(), Some(tract_ms));
    assert_eq!(inference["p50_ms"].as_f64(), Some(ort_ms));
    assert!(tract_ms > 0.5 && ort_ms > 0.5, "a real YOLOX run takes milliseconds: {tract_ms} / {ort_ms}");
    let ratio = inference["p50_ratio"].as_f64().unwrap();
    assert!((ratio - ort_ms / tract_ms).abs() < 1e-2, "{ratio} vs {ort_ms} / {tract_ms}");
    // the two reports name different runtimes for the detector
    let provider = |r: &serde_json::Value| r["providers"][0]["provider"].as_str().unwrap_or_default().to_string();
    assert!(provider(&reports[0]).contains("tract") && provider(&reports[1]).contains("CPUExecutionProvider"));
}

#[test]
fn precision_and_backend_options_are_checked_before_loading() {
    let bad = BackendConfig { precision: Precision::Fp16, ..ort_cpu() };
    assert!(bad.validate().unwrap_err().to_string().contains("fp16"));
    let bad = BackendConfig { trt_cache_dir: Some("/tmp/x".into()), ..ort_cpu() };
    assert!(bad.validate().unwrap_err().to_string().contains("TensorRT cache"));
}

#[test]
fn the_text_reader_reads_the_same_lines_on_ort_cpu_as_on_tract() {
    use pancap::perceive::ocr::OcrParams;
    use pancap::pipeline::{load_text_reader, DEFAULT_TEXT_READER};
    let img = image("coco-val2017-dev/images/000000143931.jpg");
    let read = |config: &BackendConfig| {
        let mut r = load_text_reader(DEFAULT_TEXT_READER, &common::models_dir(), config, OcrParams::default()).unwrap();
        assert!(r.provider().contains(if config.backend == Backend::Tract { "tract" } else { "CPUExecutionProvider" }));
        r.read(&img, &mut Default::default()).unwrap()
    };
    let (t, o) = (read(&BackendConfig::default()), read(&ort_cpu()));
    let texts = |v: &[pancap::perceive::ocr::TextLine]| v.iter().map(|l| l.text.clone()).collect::<Vec<_>>();
    assert!(t.len() >= 8, "{:?}", texts(&t));
    assert_eq!(texts(&t), texts(&o));
    for (a, b) in t.iter().zip(&o) {
        assert_eq!(a.quad, b.quad, "{}: the detector's boxes agree to the pixel", a.text);
        assert!((a.score - b.score).abs() < 0.01, "{}: {} vs {}", a.text, a.score, b.score);
    }
}

#[test]
fn verify_backend_compares_every_model_output_and_caption_of_ort_cpu_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("verify.json");
    let photo = common::data("darknet-images-unannotated/person.jpg");
    let lib = ort_library();
    let base = [
        "verify-backend",
        photo.to_str().unwrap(),
        "--backend",
        "ort-cpu",
        "--ort-lib",
        lib.to_str().unwrap(),
        "--no-text",
        "--no-discovery",
    ];
    let mut args = base.to_vec();
    args.extend(["-o", report.to_str().unwrap()]);
    let out = common::pancap(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("equivalent") && stdout.contains("1/1 images with the same entities"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((r["equivalent"].as_bool(), r["reference"].as_str(), r["candidate"].as_str()), (Some(true), Some("tract/fp32"), Some("ort-cpu/fp32")));
    let outputs = r["outputs"].as_array().unwrap();
    // the default suite (DEIMv2's query set is compared after pairing its rows: tied queries come in either order)
    for model in [
        "deimv2_hgnetv2_femto_coco.onnx",
        "picodet_s_416_coco.onnx",
        "deeplabv3_mnv2_ade20k32_f32.onnx",
        "selfie_person_256.onnx",
        "movenet_multipose_lightning.onnx",
    ] {
        let rows: Vec<_> = outputs.iter().filter(|o| o["model"] == model).collect();
        assert!(!rows.is_empty(), "{model} not compared: {stdout}");
        for o in rows {
            assert!(o["runs"].as_u64().unwrap() >= 1 && o["elements"].as_u64().unwrap() > 0, "{o}");
            assert!(o["passes"].as_bool().unwrap(), "{o}");
        }
    }
    let c = &r["captions"][0];
    assert!(c["matched"].as_u64().unwrap() >= 3 && c["matched"] == c["reference_entities"], "{c}");
    assert!(c["min_iou"].as_f64().unwrap() >= 0.95, "{c}");
    // the same run with no tolerance at all finds differences and says so in its exit status
    let mut strict = base.to_vec();
    strict.extend(["--atol", "0", "--rtol", "0", "--min-float-agreement", "1"]);
    let out = common::pancap(&strict);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NOT equivalent") && stdout.contains(" NO"), "{stdout}");
}

/// The build's oldest accepted ONNX Runtime is 1.17 (ort's `api-17`: JetPack 6's onnxruntime-gpu builds start
/// there); an older library is refused by name and version. `.ci/run` fetches ONNX Runtime 1.16.3's library from
/// the npm package onnxruntime-node into PANCAP_ORT_OLD_LIB; fails, never skips, without it.
#[test]
fn an_onnx_runtime_older_than_1_17_is_refused_with_its_version() {
    let old = std::env::var_os("PANCAP_ORT_OLD_LIB")
        .map(PathBuf::from)
        .expect("set PANCAP_ORT_OLD_LIB to libonnxruntime.so.1.16.3 (.ci/run fetches it from the npm onnxruntime-node 1.16.3)");
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = common::pancap(&["caption", dog.to_str().unwrap(), "--backend", "ort-cpu", "--ort-lib", old.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("expected version >= '1.17.x'") && err.contains("got '1.16.3'"), "{err}");
    assert!(out.stdout.is_empty());
    // the library this build is tested with is accepted
    let out = common::pancap(&["backends", "--ort-lib", ort_library().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ONNX Runtime 1.31.1"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The float segmenter pancap derives from the uint8 one (the default on tract) against the uint8 model as ONNX
/// Runtime runs it, on every dev photo's pixels.
#[test]
fn the_derived_float_segmenter_on_tract_labels_as_the_uint8_one_on_ort_cpu() {
    let tract = BackendConfig::default();
    let (share, least) =
        common::segmenter_agreement("deeplabv3_mnv2_ade20k32_uint8", &ort_cpu(), "deeplabv3_mnv2_ade20k32_f32", &tract);
    eprintln!("derived float on tract vs uint8 on ort-cpu: {:.2} % of pixels alike (least {:.2} %)", share * 100.0, least * 100.0);
    assert!(share >= 0.97, "only {:.2} % of pixels labelled alike", share * 100.0);
}

/// The pose model on ONNX Runtime finds the same people with the same keypoints as on tract: on the darknet photo
/// of a man (the whole frame) and on a crop of him (the crop path), keypoints within a pixel, scores within 0.01.
#[test]
fn the_pose_model_gives_the_same_keypoints_on_ort_cpu_as_on_tract() {
    use pancap::geometry::BoxF;
    use pancap::perceive::pose::PoseEstimator;
    let m = Manifest::by_name("movenet_multipose_lightning").unwrap();
    let rgb = image("darknet-images-unannotated/person.jpg");
    let estimate = |backend: &BackendConfig, region: Option<&BoxF>| {
        let e = engine::load(backend, m.model_spec(&common::models_dir())).unwrap();
        let mut p = PoseEstimator::new(m.clone(), e).unwrap();
        p.estimate(&rgb, region, &mut Default::default()).unwrap()
    };
    let crop = BoxF::new(150.0, 60.0, 320.0, 410.0);
    for region in [None, Some(&crop)] {
        let (a, b) = (estimate(&BackendConfig::default(), region), estimate(&ort_cpu(), region));
        assert!(!a.is_empty(), "the man is found ({region:?})");
        assert_eq!(a.len(), b.len(), "{region:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.score - y.score).abs() < 1e-2, "{} vs {}", x.score, y.score);
            for (p, q) in x.keypoints.iter().zip(&y.keypoints) {
                assert!((p.x - q.x).abs() < 1.0 && (p.y - q.y).abs() < 1.0, "{p:?} vs {q:?}");
                assert!((p.score - q.score).abs() < 1e-2, "{p:?} vs {q:?}");
            }
        }
    }
}

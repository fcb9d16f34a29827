#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `pancap quantize` (host-only feature `quantize`) on the real detectors: the INT8 models load and run in our
//! tract, keep their zero points at 0, keep their AP, and are refused when stale or edited.
#![cfg(feature = "quantize")]

mod common;

use std::path::Path;
use std::process::Output;

fn pancap_in(models: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pancap"))
        .arg("--models-dir")
        .arg(models)
        .args(args)
        .env("PANCAP_SHARED", common::shared())
        .output()
        .unwrap()
}

/// A models directory holding just these provisioned models (so quantizing never touches the shared test one).
fn models_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let files = pancap::models::files_of(&names).unwrap();
    for r in pancap::models::pull(&files, &common::models_dir(), dir.path()).unwrap() {
        r.unwrap();
    }
    dir
}

fn quantize(models: &Path, model: &str) -> serde_json::Value {
    let out = pancap_in(models, &["quantize", "--models", model, "--max-calibration", "4", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

#[test]
fn yolox_int8_is_verified_tensorrt_compatible_and_keeps_its_ap() {
    let dir = models_with(&["yolox_nano_416"]);
    let r = quantize(dir.path(), "yolox_nano_416");
    let v = &r["verification"];
    assert_eq!(v["loads_in_tract"], true);
    assert_eq!(v["zero_points_all_zero"], true, "{v}");
    assert!(v["qdq_nodes"].as_u64().unwrap() > 50, "{v}");
    assert!(v["int8_bytes"].as_f64().unwrap() * 3.0 < v["fp32_bytes"].as_f64().unwrap(), "{v}");
    assert!(v["mean_abs_error"].as_f64().unwrap() < 0.05, "{v}");
    let map = &v["map"];
    let (fp32, int8) = (map["fp32_ap"].as_f64().unwrap(), map["int8_ap"].as_f64().unwrap());
    assert!(fp32 > 30.0 && int8 > fp32 - 3.0, "AP {fp32} → {int8}");
    assert_eq!(r["recipe"]["calibration_images"].as_array().unwrap().len(), 4);

    // the INT8 model runs in the pipeline and still sees the dog
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let caption = |dir: &Path| {
        pancap_in(
            dir,
            &["caption", dog.to_str().unwrap(), "--precision", "int8", "--detectors", "yolox_nano_416", "--no-stuff", "--no-discovery", "--no-person-masks", "--no-pose", "--no-text", "--format", "json"],
        )
    };
    let out = caption(dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["entities"].as_array().unwrap().iter().any(|e| e["tag"] == "dog"), "{}", v[0]["caption"]);

    // an edited INT8 file is refused, never run
    let int8 = dir.path().join("int8/detection/yolox_nano_416.onnx");
    let mut bytes = std::fs::read(&int8).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&int8, bytes).unwrap();
    let out = caption(dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed after quantization"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_shipped_uint8_segmenter_is_left_alone_and_static_calibration_explains_itself() {
    let dir = models_with(&["deeplabv3_mnv2_ade20k32_uint8", "picodet_s_416_coco"]);
    let out = pancap_in(dir.path(), &["quantize", "--models", "deeplabv3_mnv2_ade20k32_uint8", "--no-map"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already quantized"), "{}", String::from_utf8_lossy(&out.stderr));
    // quantize-rs 0.10 calibrates activations only for opset >= 13 graphs; ours are opset 11
    let out = pancap_in(dir.path(), &["quantize", "--models", "picodet_s_416_coco", "--method", "static", "--max-calibration", "2", "--no-map"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opset"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("int8/detection/picodet_s_416_coco.onnx").exists(), "a failed run left a model behind");
}

/// PicoDet has opset-11 Split nodes that quantize-rs leaves behind when it moves the graph to opset 13; ONNX
/// Runtime rejects those unless pancap rewrites them.
#[cfg(feature = "ort")]
#[test]
fn picodet_int8_loads_in_onnx_runtime_too() {
    let lib = std::env::var("ORT_DYLIB_PATH").expect("set ORT_DYLIB_PATH (.ci/run installs the onnxruntime wheel's)");
    let dir = models_with(&["picodet_s_416_coco"]);
    let r = quantize(dir.path(), "picodet_s_416_coco");
    assert_eq!(r["verification"]["zero_points_all_zero"], true);
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = pancap_in(
        dir.path(),
        &[
            "caption", dog.to_str().unwrap(), "--backend", "ort-cpu", "--ort-lib", &lib, "--precision", "int8", "--detectors",
            "picodet_s_416_coco", "--no-stuff", "--no-discovery", "--no-person-masks", "--no-pose", "--no-text", "--format", "json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["entities"].as_array().unwrap().iter().any(|e| e["tag"] == "dog"), "{}", v[0]["caption"]);
}

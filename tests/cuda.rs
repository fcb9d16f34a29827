#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! tract's CUDA runtime (`--features cuda`): the x86-tract-cuda suite on the GPU gives the same outputs as tract on the
//! CPU, model by model, and the same entities, tags and boxes. Runs where a CUDA device is present; elsewhere it
//! says loudly that it did not run (CI builds the feature without a GPU).

#![cfg(feature = "tract-cuda-runtime")]

mod common;

/// The CUDA device, or None after saying loudly why the GPU tests cannot run here.
fn device() -> Option<String> {
    match pancap::engine::cuda_device() {
        Ok(name) => Some(name),
        Err(e) => {
            eprintln!("\n*** NOT RUN: no usable CUDA device here, so tract-cuda was not checked against tract: {e}\n");
            None
        }
    }
}

#[test]
fn the_tract_cuda_suite_matches_tract_on_the_cpu() {
    let Some(device) = device() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("verify.json");
    let images = common::data("coco-val2017-dev/images");
    let out = common::pancap(&[
        "verify-backend",
        images.to_str().unwrap(),
        "--backend",
        "tract-cuda",
        "--allow-host-ops",
        // the x86-tract-cuda target's detectors: DEIMv2 (the CPU default's primary) has no tract-cuda GridSample
        "--detectors",
        "yolox_nano_416,picodet_s_416_coco",
        "-o",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["equivalent"], true);
    assert_eq!(r["images"], 16);
    // every model of the suite was compared, and ran on the device
    let outputs = r["outputs"].as_array().unwrap();
    for model in ["yolox_nano_416", "picodet_s_416_coco", "deeplabv3_mnv2_ade20k32_f32", "selfie_person_256", "PP-OCRv4_det"] {
        assert!(outputs.iter().any(|o| o["model"].as_str().unwrap().contains(model)), "{model} not compared: {stdout}");
    }
    for p in r["providers"].as_array().unwrap() {
        assert!(p["provider"].as_str().unwrap().contains(&format!("tract-cuda {device}")), "{p}");
    }
    for c in r["captions"].as_array().unwrap() {
        assert!(c["only_reference"].as_array().unwrap().is_empty() && c["only_candidate"].as_array().unwrap().is_empty(), "{c}");
    }
}

#[test]
fn tract_cuda_without_a_device_or_with_another_device_id_is_an_error_never_a_cpu_run() {
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = common::pancap(&["caption", dog.to_str().unwrap(), "--backend", "tract-cuda", "--device-id", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CUDA_VISIBLE_DEVICES"), "{err}");
    if device().is_none() {
        let out = common::pancap(&["caption", dog.to_str().unwrap(), "--backend", "tract-cuda"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("tract-cuda is not available") && err.contains("LD_LIBRARY_PATH"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

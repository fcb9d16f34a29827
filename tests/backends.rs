#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Backend selection and target profiles through the CLI, in every build.

mod common;

fn dog() -> String {
    common::data("darknet-images-unannotated/dog.jpg").to_str().unwrap().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[cfg(not(feature = "ort"))]
#[test]
fn ort_backends_in_a_build_without_ort_name_the_missing_feature() {
    for backend in ["ort-cpu", "ort-cuda", "ort-tensorrt"] {
        let out = common::pancap(&["caption", &dog(), "--backend", backend]);
        assert_eq!(out.status.code(), Some(2), "{backend}: {}", stderr(&out));
        assert!(stderr(&out).contains("--features ort"), "{backend}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    // a target that needs TensorRT fails the same way instead of running on tract
    let out = common::pancap(&["caption", &dog(), "--target", "jetson-orin-nano"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ort-tensorrt") && stderr(&out).contains("--features ort"), "{}", stderr(&out));
    let out = common::pancap(&["backends"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tract          compiled in") && text.contains("ort-cuda       not compiled in"), "{text}");
}

#[test]
fn impossible_precisions_and_unknown_names_are_usage_errors() {
    let out = common::pancap(&["caption", &dog(), "--precision", "fp16"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("fp16") && stderr(&out).contains("TensorRT"), "{}", stderr(&out));
    let out = common::pancap(&["caption", &dog(), "--backend", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ort-cuda"), "{}", stderr(&out));
    let out = common::pancap(&["caption", &dog(), "--target", "jetson-tx1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("jetson-orin-nano"), "{}", stderr(&out));
}

#[test]
fn int8_without_quantized_models_says_how_to_make_them() {
    let out = common::pancap(&["caption", &dog(), "--precision", "int8", "--detectors", "yolox_nano_416", "--no-stuff"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pancap quantize"), "{}", stderr(&out));
}

#[test]
fn a_target_profile_sets_the_suite_and_flags_win_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("small.toml");
    let text = include_str!("../targets/x86-cpu.toml")
        .replace("name = \"x86-cpu\"", "name = \"small\"")
        .replace("detectors = [\"deimv2_hgnetv2_femto_coco\", \"picodet_s_416_coco\"]", "detectors = [\"yolox_nano_416\"]")
        .replace("stuff = true", "stuff = false")
        .replace("person_masks = true", "person_masks = false")
        .replace("pose = true", "pose = false")
        .replace("text = true", "text = false");
    std::fs::write(&profile, text).unwrap();
    let caption = |extra: &[&str]| {
        let d = dog();
        let mut args = vec!["caption", &d, "--format", "json", "--target", profile.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = common::pancap(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["providers"].as_array().unwrap().iter().map(|p| p["model"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(caption(&[]), ["yolox_nano_416"]);
    assert_eq!(caption(&["--detectors", "picodet_s_416_coco"]), ["picodet_s_416_coco"]);
}

#[test]
fn targets_lists_and_prints_the_embedded_profiles() {
    let out = common::pancap(&["targets"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "x86-cpu", "x86-cuda", "x86-tract-cuda"] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    let out = common::pancap(&["targets", "jetson-agx-orin"]);
    let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed["backend"]["backend"].as_str(), Some("ort-tensorrt"));
    assert_eq!(printed["backend"]["trt_cache_dir"].as_str(), Some("/var/cache/pancap/tensorrt"));
}

#[test]
fn tract_honours_threads_and_reports_them_per_model() {
    let run = |threads: &str| {
        let out = common::pancap(&[
            "caption", &dog(), "--detectors", "yolox_nano_416", "--no-stuff", "--no-discovery", "--no-person-masks",
            "--no-text", "--format", "json", "--threads", threads,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = v[0].clone();
        (c["providers"][0]["provider"].as_str().unwrap().to_string(), c["caption"].as_str().unwrap().to_string())
    };
    let (one, caption_one) = run("1");
    let (two, caption_two) = run("2");
    assert_eq!((one.as_str(), two.as_str()), ("tract, 1 thread", "tract, 2 threads"));
    assert_eq!(caption_one, caption_two, "the thread count changes the speed, not the answer");
    let out = common::pancap(&["caption", &dog(), "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0 threads"), "{}", stderr(&out));
}

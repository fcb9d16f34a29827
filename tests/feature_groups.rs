#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Says what the plain `cargo test` leaves to the second group that `.ci/run` installs for and runs: the ONNX
//! Runtime backend tests (`--features ort` + the onnxruntime library), `pancap quantize` (`--features quantize`),
//! the V4L2 build (`--features camera`, clang), the aarch64 build under qemu, the PQ cross-check against
//! hotcoco (a PyPI package), the MQTT tests against a real mosquitto broker (`tests/mqtt.rs`, ignored here), the
//! live view in a real browser with promtool and curl (`tests/serve.rs`, ignored here) and
//! tract's CUDA runtime (`--features cuda`: built and its loud no-GPU errors tested
//! there; the equivalence test runs where a GPU is, `.ci/gpu-check`). It checks that the build really is the one
//! it says it is.

mod common;

#[test]
fn this_build_is_what_it_says_and_ort_quantize_camera_aarch64_pq_crosscheck_are_left_to_ci_run_feature_group() {
    let out = common::pancap(&["backends"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // a cuda build on a machine without a GPU says why tract-cuda cannot start, with exit status 1
    let cuda = cfg!(feature = "tract-cuda-runtime");
    assert!((out.status.success() || cuda) && text.contains("tract          compiled in"), "{text}");
    let ort = cfg!(feature = "ort");
    assert_eq!(text.contains("ort-cpu        compiled in"), ort, "{text}");
    if !ort {
        assert!(text.contains("rebuild with --features ort"), "{text}");
    }
    assert_eq!(text.contains("tract-cuda     compiled in"), cuda, "{text}");
    if !cuda {
        assert!(text.contains("tract-cuda     not compiled in (rebuild with --features cuda"), "{text}");
    }
    if !ort || !cuda {
        eprintln!(
            "note: left to .ci/run's second group: tests/ort_backend.rs (--features ort, ORT_DYLIB_PATH), \
             tests/quantize.rs (--features quantize), the camera build, .ci/aarch64-check (qemu), \
             .ci/pq-crosscheck (hotcoco from PyPI), tests/cuda.rs (--features cuda; its equivalence test needs a \
             GPU: .ci/gpu-bundle + .ci/gpu-check on a lent one), tests/mqtt.rs (the mosquitto broker: \
             cargo test --test mqtt -- --ignored) and tests/serve.rs (chromium, promtool, curl: \
             cargo test --test serve -- --ignored)"
        );
    }
}

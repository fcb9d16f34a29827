#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Shared helpers for integration tests: provisioning real models from the offline mirror and locating the
//! development data. Tests that need them fail loudly (never skip) when the mirror is absent.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared`, or `PANCAP_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("PANCAP_SHARED").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared"))
}

pub fn data(rel: &str) -> PathBuf {
    let p = shared().join("data").join(rel);
    assert!(p.exists(), "development data {} is missing (set PANCAP_SHARED to the shared folder)", p.display());
    p
}

/// Provisions every model from the mirror (`PANCAP_MODEL_MIRROR`, else ../shared/models) into
/// target/test-models once per test binary, verifying sha256, and returns that directory.
pub fn models_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mirror = std::env::var_os("PANCAP_MODEL_MIRROR")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared().join("models"));
        let dir = repo().join("target/test-models");
        let files = pancap::models::all_files().expect("embedded manifests");
        let results = pancap::models::pull(&files, &mirror, &dir)
            .unwrap_or_else(|e| panic!("cannot provision test models: {e} (set PANCAP_MODEL_MIRROR)"));
        for r in results {
            if let Err(e) = r {
                panic!("cannot provision test models: {e}");
            }
        }
        dir
    })
    .clone()
}

pub fn config() -> pancap::PipelineConfig {
    pancap::PipelineConfig { models_dir: models_dir(), ..Default::default() }
}

/// Runs the pancap binary of this build with the test models directory.
pub fn pancap(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pancap"))
        .arg("--models-dir")
        .arg(models_dir())
        .args(args)
        .output()
        .expect("run pancap")
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Shared helpers for integration tests: provisioning real models from the offline mirror and locating the
//! development data. Tests that need them fail loudly (never skip) when the mirror is absent.
#![allow(dead_code)]

pub mod fakes;

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

/// Differences between two JSON values, floats compared with a relative-or-absolute tolerance `tol`, each as
/// `path: golden → actual`.
pub fn json_diff(golden: &serde_json::Value, actual: &serde_json::Value, tol: f64) -> Vec<String> {
    use serde_json::Value;
    fn walk(g: &Value, a: &Value, at: String, tol: f64, out: &mut Vec<String>) {
        match (g, a) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                let close = (x - y).abs() <= tol * x.abs().max(1.0);
                if !close {
                    out.push(format!("{at}: {x} → {y}"));
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    out.push(format!("{at}: {} items → {}", x.len(), y.len()));
                }
                for (i, (gx, ay)) in x.iter().zip(y).enumerate() {
                    walk(gx, ay, format!("{at}[{i}]"), tol, out);
                }
            }
            (Value::Object(x), Value::Object(y)) => {
                for (k, gx) in x {
                    match y.get(k) {
                        Some(ay) => walk(gx, ay, format!("{at}.{k}"), tol, out),
                        None => out.push(format!("{at}.{k}: missing")),
                    }
                }
                for k in y.keys().filter(|k| !x.contains_key(*k)) {
                    out.push(format!("{at}.{k}: new"));
                }
            }
            _ if g == a => {}
            _ => out.push(format!("{at}: {g} → {a}")),
        }
    }
    let mut out = Vec::new();
    walk(golden, actual, String::new(), tol, &mut out);
    out
}

/// Compares `actual` with the golden file `path` as parsed values (floats within `tol`). With UPDATE_GOLDEN set
/// the file is rewritten and the test fails with the differences it recorded, so a regeneration is always
/// looked at and then confirmed by a run without the variable.
pub fn check_golden(path: &std::path::Path, actual: &serde_json::Value, tol: f64) {
    let golden: Option<serde_json::Value> =
        std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let diff = golden.as_ref().map(|g| json_diff(g, actual, tol)).unwrap_or_else(|| vec!["no golden file yet".into()]);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        panic!(
            "{} rewritten ({} difference(s)); check them, then run again without UPDATE_GOLDEN:\n{}",
            path.display(),
            diff.len(),
            diff.join("\n")
        );
    }
    assert!(diff.is_empty(), "output differs from {} (regenerate on purpose with UPDATE_GOLDEN=1):\n{}", path.display(), diff.join("\n"));
}

/// The share of image pixels (letterbox padding cropped) that stuff segmenter `b` on `b_backend` labels as
/// segmenter `a` on `a_backend` does, over the coco-val2017-dev photos; and the lowest share of one photo.
pub fn segmenter_agreement(
    a: &str,
    a_backend: &pancap::engine::BackendConfig,
    b: &str,
    b_backend: &pancap::engine::BackendConfig,
) -> (f64, f64) {
    use pancap::models::Manifest;
    let dir = models_dir();
    let (ma, mb) = (Manifest::by_name(a).unwrap(), Manifest::by_name(b).unwrap());
    let mut ea = pancap::engine::load(a_backend, ma.model_spec(&dir)).unwrap();
    let mut eb = pancap::engine::load(b_backend, mb.model_spec(&dir)).unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(data("coco-val2017-dev/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    assert_eq!(photos.len(), 16, "the 16 coco-val2017-dev photos");
    let (mut same, mut total, mut least) = (0usize, 0usize, 1.0f64);
    for p in &photos {
        let rgb = image::open(p).unwrap().to_rgb8();
        let label = |m: &Manifest, e: &mut Box<dyn pancap::engine::Engine>| {
            let (inputs, lb) = pancap::perceive::model_inputs(&rgb, m).unwrap();
            let out = e.run(&inputs).unwrap();
            pancap::perceive::stuff::decode_labels(&out[0], &m.decoder, &lb, rgb.width(), rgb.height()).unwrap().classes
        };
        let (la, lb) = (label(&ma, &mut ea), label(&mb, &mut eb));
        let s = la.iter().zip(&lb).filter(|(x, y)| x == y).count();
        least = least.min(s as f64 / la.len() as f64);
        same += s;
        total += la.len();
    }
    (same as f64 / total as f64, least)
}

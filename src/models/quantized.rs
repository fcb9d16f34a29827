//! INT8 models written by `pancap quantize`: they live under `<models>/int8/` beside the FP32 files, each with a
//! record naming the FP32 file it came from (by sha256), its own sha256, the recipe and the verification report.
//! Loading an INT8 model checks both hashes, so a stale or edited file is refused, never used.

use super::provision::{hash_file, ProvisionError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the INT8 model for the FP32 file `file` (relative to the models directory) lives.
pub fn int8_path(models_dir: &Path, file: &str) -> PathBuf {
    models_dir.join("int8").join(file)
}

/// Where its record lives.
pub fn record_path(models_dir: &Path, file: &str) -> PathBuf {
    let mut p = int8_path(models_dir, file).into_os_string();
    p.push(".json");
    PathBuf::from(p)
}

/// How the INT8 model was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The tool and version (`quantize-rs 0.10.x`).
    pub tool: String,
    /// `per-channel symmetric INT8 weights` or `static activations (calibrated)`.
    pub method: String,
    /// Calibration images used (paths as listed in calibration/images.txt), empty for weight-only.
    pub calibration_images: Vec<String>,
}

/// What the verification step found (see `pancap quantize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The INT8 model loads and runs in this build's tract (0.23.9).
    pub loads_in_tract: bool,
    /// Largest and mean absolute difference of the raw outputs against FP32 over the verification images.
    pub max_abs_error: f64,
    pub mean_abs_error: f64,
    /// Every QuantizeLinear/DequantizeLinear zero point in the graph is 0 (TensorRT accepts only those).
    pub zero_points_all_zero: bool,
    /// Q/DQ nodes found and how many of them have a non-zero zero point.
    pub qdq_nodes: usize,
    pub nonzero_zero_points: usize,
    /// COCO bbox AP (×100) of this detector alone, FP32 and INT8, on the named annotations (detectors only).
    #[serde(default)]
    pub map: Option<MapChange>,
    pub fp32_bytes: u64,
    pub int8_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapChange {
    pub annotations: String,
    pub images: usize,
    pub fp32_ap: f64,
    pub int8_ap: f64,
    pub fp32_ap50: f64,
    pub int8_ap50: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int8Record {
    pub model: String,
    /// The FP32 file (relative to the models directory) and its sha256 when quantized.
    pub source_file: String,
    pub source_sha256: String,
    /// sha256 of the INT8 file.
    pub sha256: String,
    pub recipe: Recipe,
    pub verification: Verification,
}

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("{model}: no INT8 model at {path}; fix: run `pancap quantize --models {model}` (a build with the `quantize` feature)")]
    Missing { model: String, path: PathBuf },
    #[error("{model}: INT8 record {path} is unreadable: {reason}")]
    BadRecord { model: String, path: PathBuf, reason: String },
    #[error(
        "{model}: the INT8 model at {path} was quantized from a different FP32 file (sha256 {recorded}, the manifest's \
         is {expected}); fix: run `pancap quantize --models {model}` again"
    )]
    Stale { model: String, path: PathBuf, recorded: String, expected: String },
    #[error("{model}: {path} has sha256 {actual}, its record says {expected}; the INT8 file was changed after quantization")]
    Tampered { model: String, path: PathBuf, expected: String, actual: String },
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

/// Reads the record of `file`'s INT8 model, if there is one.
pub fn read_record(models_dir: &Path, model: &str, file: &str) -> Result<Int8Record, Int8Error> {
    let path = record_path(models_dir, file);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| Int8Error::Missing { model: model.into(), path: int8_path(models_dir, file) })?;
    serde_json::from_str(&text).map_err(|e| Int8Error::BadRecord { model: model.into(), path, reason: e.to_string() })
}

/// The verified INT8 model for the FP32 `file` with manifest hash `sha256`.
pub fn resolve(models_dir: &Path, model: &str, file: &str, sha256: &str) -> Result<PathBuf, Int8Error> {
    let path = int8_path(models_dir, file);
    if !path.is_file() {
        return Err(Int8Error::Missing { model: model.into(), path });
    }
    let record = read_record(models_dir, model, file)?;
    if record.source_sha256 != sha256 {
        return Err(Int8Error::Stale { model: model.into(), path, recorded: record.source_sha256, expected: sha256.into() });
    }
    let actual = hash_file(&path, None)?;
    if actual != record.sha256 {
        return Err(Int8Error::Tampered { model: model.into(), path, expected: record.sha256, actual });
    }
    Ok(path)
}

/// Writes the record atomically (temp file + rename).
pub fn write_record(models_dir: &Path, record: &Int8Record) -> Result<PathBuf, ProvisionError> {
    let path = record_path(models_dir, &record.source_file);
    let io = |e: std::io::Error| ProvisionError::Io { path: path.clone(), source: e };
    let json = serde_json::to_string_pretty(record).map_err(|e| io(std::io::Error::other(e)))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(source_sha256: &str, sha256: &str) -> Int8Record {
        Int8Record {
            model: "m".into(),
            source_file: "detection/m.onnx".into(),
            source_sha256: source_sha256.into(),
            sha256: sha256.into(),
            recipe: Recipe { tool: "t".into(), method: "w".into(), calibration_images: vec![] },
            verification: Verification {
                loads_in_tract: true,
                max_abs_error: 0.1,
                mean_abs_error: 0.01,
                zero_points_all_zero: true,
                qdq_nodes: 2,
                nonzero_zero_points: 0,
                map: None,
                fp32_bytes: 4,
                int8_bytes: 1,
            },
        }
    }

    #[test]
    fn resolve_checks_presence_source_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = "detection/m.onnx";
        assert!(matches!(resolve(dir.path(), "m", file, "aa"), Err(Int8Error::Missing { .. })));
        let path = int8_path(dir.path(), file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"int8").unwrap();
        let sha = hash_file(&path, None).unwrap();
        write_record(dir.path(), &record("aa", &sha)).unwrap();
        assert_eq!(resolve(dir.path(), "m", file, "aa").unwrap(), path);
        assert!(matches!(resolve(dir.path(), "m", file, "bb"), Err(Int8Error::Stale { .. })));
        std::fs::write(&path, b"edited").unwrap();
        assert!(matches!(resolve(dir.path(), "m", file, "aa"), Err(Int8Error::Tampered { .. })));
    }
}

//! Copies model weights from an offline mirror into the models directory and verifies them by sha256.
//! A copy is written to a temporary file and renamed into place only after its hash matched, so a failed or
//! interrupted pull never leaves a half-written model behind.

use super::{Derivation, ModelFile, Transform};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{model}: {path} is missing; fix: run `pancap models pull --from <mirror>` (or set PANCAP_MODEL_MIRROR)")]
    Missing { model: String, path: PathBuf },
    #[error(
        "{model}: {path} has sha256 {actual}, the manifest expects {expected}; the file is corrupt or not the \
         model the manifest describes; fix: delete it and run `pancap models pull --from <mirror>`"
    )]
    HashMismatch { model: String, path: PathBuf, expected: String, actual: String },
    #[error("{model}: mirror file {path} is missing; the mirror must hold {file} (see models/{model}.toml)")]
    MirrorMissing { model: String, path: PathBuf, file: String },
    #[error(
        "{model}: mirror file {path} has sha256 {actual}, the manifest expects {expected}; the mirror holds a \
         different or tampered file; nothing was installed"
    )]
    MirrorMismatch { model: String, path: PathBuf, expected: String, actual: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("mirror directory {0} does not exist")]
    NoMirror(PathBuf),
    #[error("{model}: cannot derive {path} from {source_path}: {reason}")]
    Derive { model: String, path: PathBuf, source_path: PathBuf, reason: String },
    #[error(
        "{model}: deriving {path} from its source gave sha256 {actual}, the manifest expects {expected}; this \
         build's transform does not make the file the manifest describes; nothing was installed"
    )]
    DerivedMismatch { model: String, path: PathBuf, expected: String, actual: String },
}

/// State of one model file after `verify` or `pull`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    /// Present with the expected hash.
    Verified,
    /// Copied from the mirror and verified.
    Installed,
    /// Made from its (verified) source file and verified.
    Derived,
}

#[derive(Debug, serde::Serialize)]
pub struct PullReport {
    pub model: String,
    pub path: PathBuf,
    pub status: FileStatus,
    pub sha256: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io { path: path.to_path_buf(), source }
}

/// sha256 of a file as lowercase hex; optionally copies the bytes to `copy_to` while hashing.
pub(crate) fn hash_file(path: &Path, mut copy_to: Option<&mut File>) -> Result<String, ProvisionError> {
    let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(io(path))?;
        let Some(chunk) = buf.get(..n) else { break };
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        if let Some(out) = copy_to.as_deref_mut() {
            out.write_all(chunk).map_err(io(path))?;
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// sha256 of a file as lowercase hex.
pub fn sha256_of(path: &Path) -> Result<String, ProvisionError> {
    hash_file(path, None)
}

/// Checks that each file is present in `models_dir` with its manifest's sha256.
pub fn verify(files: &[ModelFile], models_dir: &Path) -> Vec<Result<PullReport, ProvisionError>> {
    files.iter().map(|m| verify_one(m, models_dir)).collect()
}

fn verify_one(m: &ModelFile, models_dir: &Path) -> Result<PullReport, ProvisionError> {
    let path = m.path_in(models_dir);
    if !path.is_file() {
        return Err(ProvisionError::Missing { model: m.model.clone(), path });
    }
    let actual = hash_file(&path, None)?;
    if actual != m.sha256 {
        return Err(ProvisionError::HashMismatch { model: m.model.clone(), path, expected: m.sha256.clone(), actual });
    }
    Ok(PullReport { model: m.model.clone(), path, status: FileStatus::Verified, sha256: actual })
}

/// Installs each file from `mirror` into `models_dir`, skipping files already present and verified.
pub fn pull(
    files: &[ModelFile],
    mirror: &Path,
    models_dir: &Path,
) -> Result<Vec<Result<PullReport, ProvisionError>>, ProvisionError> {
    if !mirror.is_dir() {
        return Err(ProvisionError::NoMirror(mirror.to_path_buf()));
    }
    Ok(files.iter().map(|m| pull_one(m, mirror, models_dir)).collect())
}

fn pull_one(m: &ModelFile, mirror: &Path, models_dir: &Path) -> Result<PullReport, ProvisionError> {
    if let Ok(report) = verify_one(m, models_dir) {
        return Ok(report);
    }
    if let Some(d) = &m.derived {
        return derive_one(m, d, mirror, models_dir);
    }
    let src = mirror.join(&m.file);
    if !src.is_file() {
        return Err(ProvisionError::MirrorMissing { model: m.model.clone(), path: src, file: m.file.clone() });
    }
    let dest = m.path_in(models_dir);
    let actual = install(&dest, |out| {
        let actual = hash_file(&src, Some(out))?;
        if actual != m.sha256 {
            return Err(ProvisionError::MirrorMismatch {
                model: m.model.clone(),
                path: src.clone(),
                expected: m.sha256.clone(),
                actual,
            });
        }
        Ok(actual)
    })?;
    Ok(PullReport { model: m.model.clone(), path: dest, status: FileStatus::Installed, sha256: actual })
}

/// Writes `dest` through a temporary file beside it: `write` fills it (and may refuse it), then it is synced and
/// renamed into place, so a failed or interrupted install never leaves a half-written file under the real name.
fn install<T>(dest: &Path, write: impl FnOnce(&mut File) -> Result<T, ProvisionError>) -> Result<T, ProvisionError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = dest.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut out = File::create(&tmp).map_err(io(&tmp))?;
        let value = write(&mut out)?;
        out.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Provisions the source of a derived file, applies the transform and installs the result if its sha256 is the
/// manifest's (written to a temporary file, synced, renamed).
fn derive_one(m: &ModelFile, d: &Derivation, mirror: &Path, models_dir: &Path) -> Result<PullReport, ProvisionError> {
    let source = ModelFile { model: m.model.clone(), file: d.source_file.clone(), sha256: d.source_sha256.clone(), derived: None };
    let source_path = pull_one(&source, mirror, models_dir)?.path;
    let dest = m.path_in(models_dir);
    let fail = |reason: String| ProvisionError::Derive {
        model: m.model.clone(),
        path: dest.clone(),
        source_path: source_path.clone(),
        reason,
    };
    let bytes = std::fs::read(&source_path).map_err(io(&source_path))?;
    let derived = match d.transform {
        Transform::Dequantize => crate::engine::dequantize::dequantize_onnx(&bytes).map_err(|e| fail(e.to_string()))?.0,
        Transform::DequantizeLogitCodes => {
            crate::engine::dequantize::dequantize_to_logit_codes(&bytes).map_err(|e| fail(e.to_string()))?.0
        }
    };
    let actual: String = Sha256::digest(&derived).iter().map(|b| format!("{b:02x}")).collect();
    if actual != m.sha256 {
        return Err(ProvisionError::DerivedMismatch { model: m.model.clone(), path: dest, expected: m.sha256.clone(), actual });
    }
    install(&dest, |out| out.write_all(&derived).map_err(io(&dest)))?;
    Ok(PullReport { model: m.model.clone(), path: dest, status: FileStatus::Derived, sha256: actual })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_manifest(dir: &Path, bytes: &[u8]) -> ModelFile {
        let mut m = ModelFile { model: "fake".into(), file: "detection/fake.onnx".into(), sha256: String::new(), derived: None };
        let mirror_file = dir.join("mirror").join(&m.file);
        std::fs::create_dir_all(mirror_file.parent().unwrap_or(dir)).ok();
        std::fs::write(&mirror_file, bytes).ok();
        m.sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        m
    }

    #[test]
    fn pull_installs_then_verify_passes_then_tamper_is_caught() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = fake_manifest(tmp.path(), b"weights");
        let models = tmp.path().join("models");
        let r = pull(std::slice::from_ref(&m), &tmp.path().join("mirror"), &models).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.first(), Some(Ok(PullReport { status: FileStatus::Installed, .. }))));
        let v = verify(std::slice::from_ref(&m), &models);
        assert!(matches!(v.first(), Some(Ok(PullReport { status: FileStatus::Verified, .. }))));

        std::fs::write(m.path_in(&models), b"tampered").ok();
        let v = verify(std::slice::from_ref(&m), &models);
        let msg = v.first().and_then(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("fake.onnx") && msg.contains(&m.sha256) && msg.contains("pancap models pull"), "{msg}");
        // the actual hash of the tampered bytes is named too
        let actual: String = Sha256::digest(b"tampered").iter().map(|b| format!("{b:02x}")).collect();
        assert!(msg.contains(&actual), "{msg}");
    }

    #[test]
    fn tampered_mirror_installs_nothing() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut m = fake_manifest(tmp.path(), b"weights");
        m.sha256 = "0".repeat(64);
        let models = tmp.path().join("models");
        let r = pull(std::slice::from_ref(&m), &tmp.path().join("mirror"), &models).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.first(), Some(Err(ProvisionError::MirrorMismatch { .. }))));
        assert!(!m.path_in(&models).exists());
        let leftovers = std::fs::read_dir(models.join("detection")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "no partial file may remain");
    }

    #[test]
    fn missing_file_names_the_fix() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = fake_manifest(tmp.path(), b"weights");
        let v = verify(std::slice::from_ref(&m), tmp.path());
        let msg = v.first().and_then(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("missing") && msg.contains("models pull"), "{msg}");
    }

    fn derived_from(dir: &Path, source: &[u8]) -> ModelFile {
        let src = fake_manifest(dir, source);
        let derived = crate::engine::dequantize::dequantize_onnx(source).map(|(b, _)| b).unwrap_or_default();
        ModelFile {
            model: "fake".into(),
            file: "derived/fake.onnx".into(),
            sha256: Sha256::digest(&derived).iter().map(|b| format!("{b:02x}")).collect(),
            derived: Some(Derivation { source_file: src.file, source_sha256: src.sha256, transform: Transform::Dequantize }),
        }
    }

    #[test]
    fn a_derived_file_is_made_from_its_pulled_source_and_checked_by_sha256() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let source = crate::engine::dequantize::tests::tiny_qdq_model();
        let m = derived_from(tmp.path(), &source);
        let models = tmp.path().join("models");
        let r = pull(std::slice::from_ref(&m), &tmp.path().join("mirror"), &models).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(r.first(), Some(Ok(PullReport { status: FileStatus::Derived, .. }))), "{r:?}");
        assert!(models.join("detection/fake.onnx").is_file(), "the source is provisioned too");
        let v = verify(std::slice::from_ref(&m), &models);
        assert!(matches!(v.first(), Some(Ok(PullReport { status: FileStatus::Verified, .. }))));

        // a transform that does not give the recorded bytes installs nothing
        let mut wrong = derived_from(tmp.path(), &source);
        wrong.sha256 = "0".repeat(64);
        wrong.file = "derived/other.onnx".into();
        let r = pull(std::slice::from_ref(&wrong), &tmp.path().join("mirror"), &models).unwrap_or_else(|e| panic!("{e}"));
        let msg = r.first().and_then(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("gave sha256") && msg.contains("nothing was installed"), "{msg}");
        assert!(!wrong.path_in(&models).exists());
        assert_eq!(std::fs::read_dir(models.join("derived")).map(|d| d.count()).unwrap_or(0), 1, "no partial file");

        // a source the transform cannot read is an error naming it
        let bad = derived_from(&tmp.path().join("bad"), b"weights");
        let r = pull(std::slice::from_ref(&bad), &tmp.path().join("bad/mirror"), &tmp.path().join("bad/models"))
            .unwrap_or_else(|e| panic!("{e}"));
        let msg = r.first().and_then(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("cannot derive") && msg.contains("fake.onnx") && msg.contains("not a readable ONNX model"), "{msg}");
    }
}

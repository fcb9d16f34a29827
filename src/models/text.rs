//! Manifests of text models (the sentence embedder PancapScore's third tier uses). Like image models they are
//! embedded in the binary and provisioned from the offline mirror by sha256; a text model has a second file,
//! its tokenizer.

use super::{check_hash, check_relative, ManifestError, ModelFile, Source};
use crate::engine::{DType, InputSpec, ModelSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const EMBEDDED: &[(&str, &str)] = &[("all_minilm_l6_v2", include_str!("../../models/all_minilm_l6_v2.toml"))];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextRole {
    Embedder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerFile {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextManifest {
    pub name: String,
    pub role: TextRole,
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub validated_backends: Vec<String>,
    /// Fixed sequence length of every run, special tokens included.
    pub max_tokens: usize,
    pub input_ids: String,
    pub attention_mask: String,
    /// Graph outputs in order.
    pub outputs: Vec<String>,
    /// The output holding the pooled, normalised sentence embedding.
    pub embedding: String,
    pub dim: usize,
    pub tokenizer: TokenizerFile,
    pub source: Source,
}

impl TextManifest {
    pub fn parse(name: &str, text: &str) -> Result<TextManifest, ManifestError> {
        let m: TextManifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse { name: name.into(), reason: e.to_string() })?;
        check_hash(&m.name, &m.sha256)?;
        check_hash(&m.name, &m.tokenizer.sha256)?;
        check_relative(&m.name, &m.file)?;
        check_relative(&m.name, &m.tokenizer.file)?;
        if !m.outputs.contains(&m.embedding) {
            return Err(ManifestError::Invalid {
                name: m.name.clone(),
                reason: format!("embedding output {} is not among outputs {:?}", m.embedding, m.outputs),
            });
        }
        if m.max_tokens < 3 || m.dim == 0 {
            return Err(ManifestError::Invalid {
                name: m.name.clone(),
                reason: format!("max_tokens {} must be at least 3 and dim {} non-zero", m.max_tokens, m.dim),
            });
        }
        Ok(m)
    }

    pub fn all() -> Result<Vec<TextManifest>, ManifestError> {
        EMBEDDED.iter().map(|(name, text)| TextManifest::parse(name, text)).collect()
    }

    /// None when no text model has this name.
    pub fn by_name(name: &str) -> Option<Result<TextManifest, ManifestError>> {
        EMBEDDED.iter().find(|(n, _)| *n == name).map(|(n, text)| TextManifest::parse(n, text))
    }

    pub fn files(&self) -> Vec<ModelFile> {
        vec![
            ModelFile { model: self.name.clone(), file: self.file.clone(), sha256: self.sha256.clone(), derived: None },
            ModelFile {
                model: self.name.clone(),
                file: self.tokenizer.file.clone(),
                sha256: self.tokenizer.sha256.clone(),
                derived: None,
            },
        ]
    }

    pub fn tokenizer_path(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.tokenizer.file)
    }

    /// Index of the embedding among the outputs.
    pub fn embedding_index(&self) -> usize {
        self.outputs.iter().position(|o| *o == self.embedding).unwrap_or(0)
    }

    /// Both inputs at the fixed sequence length; the outputs.
    pub fn model_spec(&self, models_dir: &Path) -> ModelSpec {
        let shape = vec![1, self.max_tokens];
        ModelSpec {
            path: models_dir.join(&self.file),
            inputs: vec![
                InputSpec { name: self.input_ids.clone(), shape: shape.clone(), dtype: DType::I64 },
                InputSpec { name: self.attention_mask.clone(), shape, dtype: DType::I64 },
            ],
            outputs: self.outputs.clone(),
            ignore_declared_shapes: false,
            unordered_rows: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_text_manifests_parse_with_two_files() {
        let all = TextManifest::all().unwrap_or_default();
        assert_eq!(all.len(), EMBEDDED.len());
        let m = TextManifest::by_name("all_minilm_l6_v2").and_then(Result::ok);
        let files = m.map(|m| m.files()).unwrap_or_default();
        assert_eq!(files.len(), 2);
        assert!(files.iter().any(|f| f.file.ends_with("tokenizer.json")));
    }
}

//! PancapScore's third tier: sentence-embedding cosine between two tags, with all-MiniLM-L6-v2 run through our
//! engine seam (a documented deviation: the official metric uses all-mpnet-base-v2, not available offline).
//!
//! Tokenisation is BERT's uncased WordPiece as the model's `tokenizer.json` declares it: clean the text (drop
//! control characters, whitespace becomes a space), space out CJK ideographs, lower-case and strip accents
//! (NFD, drop combining marks), split on whitespace and punctuation, then greedy longest-match-first WordPiece
//! with the `##` continuation prefix (words over 100 characters become `[UNK]`), framed by `[CLS]` … `[SEP]`.
//! Every run uses the manifest's fixed sequence length: shorter texts are padded with attention mask 0 (the
//! graph's mean pooling is mask-aware, so padding does not change the embedding), longer ones truncated.

use crate::engine::{self, BackendConfig, Engine, EngineError, Tensor, TensorData};
use crate::models::{ModelFile, TextManifest};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error(transparent)]
    Provision(#[from] crate::models::ProvisionError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("embedder {model}: output has {have} values, expected {want}")]
    Output { model: String, have: usize, want: usize },
}

/// BERT uncased WordPiece over a fixed vocabulary.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, i64>,
    unk: i64,
    cls: i64,
    sep: i64,
}

const MAX_CHARS_PER_WORD: usize = 100;

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// BERT's punctuation: all non-alphanumeric ASCII symbols, plus the common Unicode punctuation blocks.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F)
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

impl WordPiece {
    /// Reads the vocabulary from a Hugging Face `tokenizer.json` (model type WordPiece).
    pub fn from_tokenizer_json(path: &Path) -> Result<WordPiece, EmbedError> {
        let bad = |reason: String| EmbedError::Tokenizer { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct Model {
            #[serde(rename = "type")]
            kind: String,
            vocab: HashMap<String, i64>,
        }
        #[derive(serde::Deserialize)]
        struct File {
            model: Model,
        }
        let f: File = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if f.model.kind != "WordPiece" {
            return Err(bad(format!("model type {} is not WordPiece", f.model.kind)));
        }
        WordPiece::new(f.model.vocab).map_err(bad)
    }

    pub fn new(vocab: HashMap<String, i64>) -> Result<WordPiece, String> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| format!("vocabulary lacks {t}"));
        Ok(WordPiece { unk: id("[UNK]")?, cls: id("[CLS]")?, sep: id("[SEP]")?, vocab })
    }

    /// Normalised, pre-tokenised words.
    fn words(text: &str) -> Vec<String> {
        let mut cleaned = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                cleaned.push(' ');
            } else if is_cjk(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        let lowered: String = cleaned.to_lowercase().nfd().filter(|c| !is_combining_mark(*c)).collect();
        let mut words = Vec::new();
        for chunk in lowered.split(' ').filter(|w| !w.is_empty()) {
            let mut current = String::new();
            for c in chunk.chars() {
                if is_punctuation(c) {
                    if !current.is_empty() {
                        words.push(std::mem::take(&mut current));
                    }
                    words.push(c.to_string());
                } else {
                    current.push(c);
                }
            }
            if !current.is_empty() {
                words.push(current);
            }
        }
        words
    }

    fn word_pieces(&self, word: &str, out: &mut Vec<i64>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_CHARS_PER_WORD {
            out.push(self.unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let piece: String = chars.get(start..end).unwrap_or_default().iter().collect();
                let key = if start > 0 { format!("##{piece}") } else { piece };
                if let Some(id) = self.vocab.get(&key) {
                    found = Some(*id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    pieces.push(id);
                    start = end;
                }
                None => {
                    out.push(self.unk);
                    return;
                }
            }
        }
        out.extend(pieces);
    }

    /// Token ids with `[CLS]` and `[SEP]`, truncated to `max_len` (which keeps `[SEP]`).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<i64> {
        let mut ids = vec![self.cls];
        for w in WordPiece::words(text) {
            self.word_pieces(&w, &mut ids);
        }
        ids.truncate(max_len.saturating_sub(1).max(1));
        ids.push(self.sep);
        ids
    }
}

/// Sentence embeddings on the engine seam.
pub struct Embedder {
    name: String,
    engine: Box<dyn Engine>,
    tokenizer: WordPiece,
    max_tokens: usize,
    dim: usize,
    output: usize,
}

impl Embedder {
    /// Verifies the manifest's files by sha256 and loads the model on `backend`.
    pub fn load(manifest: &TextManifest, models_dir: &Path, backend: &BackendConfig) -> Result<Embedder, EmbedError> {
        let files: Vec<ModelFile> = manifest.files();
        for r in crate::models::verify(&files, models_dir) {
            r?;
        }
        let tokenizer = WordPiece::from_tokenizer_json(&manifest.tokenizer_path(models_dir))?;
        let engine = engine::load(backend, manifest.model_spec(models_dir))?;
        Ok(Embedder::from_parts(manifest, engine, tokenizer))
    }

    pub fn from_parts(manifest: &TextManifest, engine: Box<dyn Engine>, tokenizer: WordPiece) -> Embedder {
        Embedder {
            name: manifest.name.clone(),
            engine,
            tokenizer,
            max_tokens: manifest.max_tokens,
            dim: manifest.dim,
            output: manifest.embedding_index(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The L2-normalised embedding of `text`.
    pub fn embed(&mut self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut ids = self.tokenizer.encode(text, self.max_tokens);
        let used = ids.len();
        ids.resize(self.max_tokens, 0);
        let mask: Vec<i64> = (0..self.max_tokens).map(|i| i64::from(i < used)).collect();
        let shape = vec![1, self.max_tokens];
        let out = self.engine.run(&[
            Tensor::new(shape.clone(), TensorData::I64(ids))?,
            Tensor::new(shape, TensorData::I64(mask))?,
        ])?;
        let v = out.get(self.output).map(|t| t.as_f32().map(<[f32]>::to_vec)).transpose()?.unwrap_or_default();
        if v.len() != self.dim {
            return Err(EmbedError::Output { model: self.name.clone(), have: v.len(), want: self.dim });
        }
        Ok(v)
    }
}

/// Cosine similarity; 0 for a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na > 0.0 && nb > 0.0 {
        dot / (na.sqrt() * nb.sqrt())
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "traffic", "light", "un", "##aff", "##able", ",", "cafe", "!"];
        WordPiece::new(vocab.iter().enumerate().map(|(i, t)| (t.to_string(), i as i64)).collect()).unwrap()
    }

    #[test]
    fn wordpiece_is_greedy_longest_match_with_continuations() {
        let wp = tiny();
        assert_eq!(wp.encode("Traffic LIGHT", 32), vec![2, 4, 5, 3]);
        assert_eq!(wp.encode("unaffable", 32), vec![2, 6, 7, 8, 3]);
        // a word with no complete segmentation is one [UNK]; punctuation splits words
        assert_eq!(wp.encode("unx light,light!", 32), vec![2, 1, 5, 9, 5, 11, 3]);
        // accents stripped after lower-casing; control characters dropped
        assert_eq!(wp.encode("Caf\u{e9}\u{7}", 32), vec![2, 10, 3]);
    }

    #[test]
    fn truncation_keeps_sep() {
        let wp = tiny();
        let ids = wp.encode("light light light light light", 4);
        assert_eq!(ids, vec![2, 5, 5, 3]);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}

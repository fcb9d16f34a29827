//! The full tiered tag cost: identical (−1000), WordNet synonym overlap (−100 × overlap, 1.0 when one tag
//! contains the other), sentence-embedding cosine ≥ 0.5 (−10 × cosine), else not matchable. Lemma sets and
//! embeddings are computed once per distinct tag (`prepare`), so the cost itself is a pure lookup.

use super::embed::{cosine, EmbedError, Embedder};
use super::wordnet::{self, WordNet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Which tiers a score used; every report carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiers {
    /// WordNet database directory, or None when the tier was skipped.
    pub wordnet: Option<String>,
    /// Embedding model, or None when the tier was skipped.
    pub embedding: Option<String>,
    /// Plain-language notes on skipped tiers and deviations.
    pub notes: Vec<String>,
}

pub struct TagMatcher {
    wordnet: Option<WordNet>,
    embedder: Option<Embedder>,
    lemmas: HashMap<String, BTreeSet<String>>,
    embeddings: HashMap<String, Vec<f32>>,
}

fn norm(tag: &str) -> String {
    tag.trim().to_lowercase()
}

impl TagMatcher {
    pub fn new(wordnet: Option<WordNet>, embedder: Option<Embedder>) -> TagMatcher {
        TagMatcher { wordnet, embedder, lemmas: HashMap::new(), embeddings: HashMap::new() }
    }

    pub fn tiers(&self) -> Tiers {
        let mut notes = Vec::new();
        if self.wordnet.is_none() {
            notes.push("WordNet synonym tier skipped (no database): only identical and contained tags match at tier 2".into());
        }
        match &self.embedder {
            None => notes.push("sentence-embedding tier skipped: no embedding model provisioned".into()),
            Some(e) => notes.push(format!(
                "sentence-embedding tier uses {} (the official metric uses all-mpnet-base-v2)",
                e.name()
            )),
        }
        notes.push("attribute, relation and global dimensions are approximate (structured items, no LLM)".into());
        Tiers {
            wordnet: self.wordnet.as_ref().map(|w| w.dir().display().to_string()),
            embedding: self.embedder.as_ref().map(|e| e.name().to_string()),
            notes,
        }
    }

    /// Computes lemma sets and embeddings of tags not seen before.
    pub fn prepare<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>) -> Result<(), EmbedError> {
        for tag in tags {
            let key = norm(tag);
            if let Some(wn) = &self.wordnet {
                if !self.lemmas.contains_key(&key) {
                    self.lemmas.insert(key.clone(), wn.lemma_set(&key));
                }
            }
            if let Some(e) = &mut self.embedder {
                if !self.embeddings.contains_key(&key) && !key.is_empty() {
                    let v = e.embed(&key)?;
                    self.embeddings.insert(key, v);
                }
            }
        }
        Ok(())
    }

    /// Tiered cost of a (reference, prediction) tag pair, or None when not matchable. Tags not prepared only
    /// reach the lexical tiers.
    pub fn cost(&self, reference: &str, predicted: &str) -> Option<f64> {
        let (r, p) = (norm(reference), norm(predicted));
        if r.is_empty() || p.is_empty() {
            return None;
        }
        if r == p {
            return Some(-1000.0);
        }
        let empty = BTreeSet::new();
        let s = wordnet::similarity(&r, self.lemmas.get(&r).unwrap_or(&empty), &p, self.lemmas.get(&p).unwrap_or(&empty));
        if s > 0.0 {
            return Some(-100.0 * s);
        }
        if let (Some(a), Some(b)) = (self.embeddings.get(&r), self.embeddings.get(&p)) {
            let c = cosine(a, b);
            if c >= 0.5 {
                return Some(-10.0 * c);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_databases_only_lexical_tiers_match_and_the_report_says_so() {
        let m = TagMatcher::new(None, None);
        assert_eq!(m.cost("Dog", "dog "), Some(-1000.0));
        assert_eq!(m.cost("man", "woman"), Some(-100.0));
        assert_eq!(m.cost("sofa", "couch"), None);
        let t = m.tiers();
        assert!(t.wordnet.is_none() && t.embedding.is_none());
        assert!(t.notes.iter().any(|n| n.contains("embedding tier skipped")));
        assert!(t.notes.iter().any(|n| n.contains("approximate")));
    }
}

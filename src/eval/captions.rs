//! Caption-text metrics of the related datasets — BLEU-4, ROUGE-L and CIDEr-D — computed as pycocoevalcap
//! computes them (corpus BLEU with the closest reference length; ROUGE-L with β = 1.2 from the best precision and
//! recall over references, averaged over images; CIDEr-D with n = 4, σ = 6, clipped tf-idf vectors, document
//! frequencies from the references, ×10), over captions tokenised by `tokenize`.
//!
//! pycocoevalcap tokenises with Stanford's PTB tokenizer (Java); `tokenize` lower-cases and drops the same
//! punctuation but splits on whitespace and punctuation itself, so on text with clitics ("dog's") the token
//! streams, and scores, can differ slightly from a run that used the Java tokenizer.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Lower-case words with punctuation removed (apostrophes and ampersands stay inside words).
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '&'))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

type Ngrams = HashMap<Vec<String>, u32>;

fn ngrams(words: &[String], max_n: usize) -> Ngrams {
    let mut out = HashMap::new();
    for n in 1..=max_n {
        for w in words.windows(n) {
            *out.entry(w.to_vec()).or_insert(0) += 1;
        }
    }
    out
}

/// One image: a candidate and its references, tokenised.
#[derive(Debug, Clone)]
pub struct Example {
    pub candidate: Vec<String>,
    pub references: Vec<Vec<String>>,
}

/// BLEU-1..4 over the corpus.
pub fn bleu(examples: &[Example]) -> [f64; 4] {
    let (tiny, small) = (1e-15, 1e-9);
    let mut correct = [0f64; 4];
    let mut guess = [0f64; 4];
    let (mut test_len, mut ref_len) = (0f64, 0f64);
    for ex in examples {
        let c = ngrams(&ex.candidate, 4);
        let mut max_ref: Ngrams = HashMap::new();
        for r in &ex.references {
            for (g, n) in ngrams(r, 4) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(n);
            }
        }
        let len = ex.candidate.len();
        // the reference length closest to the candidate's, the shorter on a tie
        let closest = ex
            .references
            .iter()
            .map(Vec::len)
            .min_by(|a, b| a.abs_diff(len).cmp(&b.abs_diff(len)).then(a.cmp(b)))
            .unwrap_or(0);
        test_len += len as f64;
        ref_len += closest as f64;
        for (k, (c_k, g_k)) in correct.iter_mut().zip(guess.iter_mut()).enumerate() {
            *g_k += len.saturating_sub(k) as f64;
            *c_k += c
                .iter()
                .filter(|(g, _)| g.len() == k + 1)
                .map(|(g, n)| f64::from((*n).min(max_ref.get(g).copied().unwrap_or(0))))
                .sum::<f64>();
        }
    }
    let mut out = [0f64; 4];
    let mut product = 1.0;
    for (k, o) in out.iter_mut().enumerate() {
        product *= (correct.get(k).copied().unwrap_or(0.0) + tiny) / (guess.get(k).copied().unwrap_or(0.0) + small);
        *o = product.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (test_len + tiny) / (ref_len + small);
    if ratio < 1.0 {
        for o in &mut out {
            *o *= (1.0 - 1.0 / ratio).exp();
        }
    }
    out
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            let v = if x == y {
                prev.get(j).copied().unwrap_or(0) + 1
            } else {
                prev.get(j + 1).copied().unwrap_or(0).max(cur.get(j).copied().unwrap_or(0))
            };
            if let Some(c) = cur.get_mut(j + 1) {
                *c = v;
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(b.len()).copied().unwrap_or(0)
}

/// ROUGE-L, averaged over images.
pub fn rouge_l(examples: &[Example]) -> f64 {
    const BETA: f64 = 1.2;
    if examples.is_empty() {
        return 0.0;
    }
    let total: f64 = examples
        .iter()
        .map(|ex| {
            let (mut p_max, mut r_max) = (0f64, 0f64);
            for r in &ex.references {
                let l = lcs(r, &ex.candidate) as f64;
                if !ex.candidate.is_empty() {
                    p_max = p_max.max(l / ex.candidate.len() as f64);
                }
                if !r.is_empty() {
                    r_max = r_max.max(l / r.len() as f64);
                }
            }
            if p_max > 0.0 && r_max > 0.0 {
                ((1.0 + BETA * BETA) * p_max * r_max) / (r_max + BETA * BETA * p_max)
            } else {
                0.0
            }
        })
        .sum();
    total / examples.len() as f64
}

struct TfIdf {
    vec: [BTreeMap<Vec<String>, f64>; 4],
    norm: [f64; 4],
    length: f64,
}

fn tfidf(words: &[String], df: &HashMap<Vec<String>, f64>, log_refs: f64) -> TfIdf {
    let mut vec: [BTreeMap<Vec<String>, f64>; 4] = Default::default();
    let mut norm = [0f64; 4];
    let mut length = 0f64;
    for (g, tf) in ngrams(words, 4) {
        let n = g.len() - 1;
        let d = df.get(&g).copied().unwrap_or(0.0).max(1.0).ln();
        let v = f64::from(tf) * (log_refs - d);
        if let (Some(slot), Some(nm)) = (vec.get_mut(n), norm.get_mut(n)) {
            *nm += v * v;
            slot.insert(g, v);
        }
        // pycocoevalcap counts the length over bigrams (its `n == 1`), kept for parity
        if n == 1 {
            length += f64::from(tf);
        }
    }
    for nm in &mut norm {
        *nm = nm.sqrt();
    }
    TfIdf { vec, norm, length }
}

/// CIDEr-D over the corpus (×10, as pycocoevalcap reports it).
pub fn cider_d(examples: &[Example]) -> f64 {
    const SIGMA: f64 = 6.0;
    if examples.is_empty() {
        return 0.0;
    }
    let mut df: HashMap<Vec<String>, f64> = HashMap::new();
    for ex in examples {
        let mut seen: std::collections::HashSet<Vec<String>> = std::collections::HashSet::new();
        for r in &ex.references {
            seen.extend(ngrams(r, 4).into_keys());
        }
        for g in seen {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let log_refs = (examples.len() as f64).ln();
    let mut total = 0.0;
    for ex in examples {
        let h = tfidf(&ex.candidate, &df, log_refs);
        let mut score = [0f64; 4];
        for r in &ex.references {
            let rv = tfidf(r, &df, log_refs);
            let delta = h.length - rv.length;
            for (n, s) in score.iter_mut().enumerate() {
                let (Some(hv), Some(rvv)) = (h.vec.get(n), rv.vec.get(n)) else { continue };
                let mut val: f64 = hv.iter().map(|(g, v)| v.min(rvv.get(g).copied().unwrap_or(0.0)) * rvv.get(g).copied().unwrap_or(0.0)).sum();
                let (hn, rn) = (h.norm.get(n).copied().unwrap_or(0.0), rv.norm.get(n).copied().unwrap_or(0.0));
                if hn != 0.0 && rn != 0.0 {
                    val /= hn * rn;
                }
                *s += val * (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
            }
        }
        let refs = ex.references.len().max(1) as f64;
        total += score.iter().sum::<f64>() / 4.0 / refs * 10.0;
    }
    total / examples.len() as f64
}

/// The three metrics, ×100 for BLEU and ROUGE-L (CIDEr-D as pycocoevalcap prints it, ×1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CaptionMetrics {
    pub images: usize,
    pub bleu4: f64,
    pub rouge_l: f64,
    pub cider_d: f64,
}

pub fn caption_metrics(examples: &[Example]) -> CaptionMetrics {
    let b = bleu(examples);
    CaptionMetrics {
        images: examples.len(),
        bleu4: 100.0 * b.get(3).copied().unwrap_or(0.0),
        rouge_l: 100.0 * rouge_l(examples),
        cider_d: cider_d(examples),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(c: &str, refs: &[&str]) -> Example {
        Example { candidate: tokenize(c), references: refs.iter().map(|r| tokenize(r)).collect() }
    }

    #[test]
    fn tokenises_like_the_ptb_pipeline_on_plain_text() {
        assert_eq!(tokenize("A dog, running."), ["a", "dog", "running"]);
        assert_eq!(tokenize("Texas A&M's"), ["texas", "a&m's"]);
    }

    #[test]
    fn identical_captions_score_at_the_top() {
        let e = [ex("a man rides a brown horse on the beach", &["a man rides a brown horse on the beach"])];
        let b = bleu(&e);
        assert!((b[3] - 1.0).abs() < 1e-6, "{b:?}");
        assert!((rouge_l(&e) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_worked_bleu_and_rouge() {
        // candidate "the cat sat" vs reference "the cat sat down": 1-gram 3/3, 2-gram 2/2, 3-gram 1/1, 4-gram 0/0
        let e = [ex("the cat sat", &["the cat sat down"])];
        let b = bleu(&e);
        let bp = (1.0f64 - 4.0 / 3.0).exp();
        assert!((b[0] - bp).abs() < 1e-6, "{b:?}");
        // LCS 3: P = 1, R = 0.75 → (1 + 1.44)·0.75 / (0.75 + 1.44)
        assert!((rouge_l(&e) - 2.44 * 0.75 / 2.19).abs() < 1e-12);
    }

    #[test]
    fn cider_rewards_the_consensus_caption() {
        let refs = ["a dog runs on the grass", "a brown dog running on grass", "dog running across a lawn"];
        let good = [ex("a dog running on the grass", &refs), ex("a cat on a sofa", &["a cat sleeps on a sofa", "a cat lying on a couch"])];
        let bad = [ex("a plate of food", &refs), ex("a cat on a sofa", &["a cat sleeps on a sofa", "a cat lying on a couch"])];
        assert!(cider_d(&good) > cider_d(&bad));
        assert!(cider_d(&bad) > 0.0);
    }
}

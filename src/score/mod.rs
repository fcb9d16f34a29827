//! PancapScore building blocks (see ../shared/docs/pancapscore.md): reading mentions from caption text,
//! one-to-one entity assignment, per-image precision/recall/F1, macro averaging and the overall score.
//!
//! Entity matching uses the official tiered cost (`matcher`: identical tags, WordNet synonym overlap,
//! sentence-embedding cosine) plus −IoU for boxes overlapping at IoU ≥ 0.5. Attribute, relation and global
//! items are compared structurally after matching (`content`) and are labelled approximate everywhere.

pub use crate::math::assign;
pub mod content;
pub mod embed;
pub mod input;
pub mod matcher;
pub mod reader;
pub mod wordnet;

pub use content::{Content, ItemCounts};
pub use matcher::{TagMatcher, Tiers};

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one dimension on one image, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Prf {
    /// From counts: `matched` of `predicted` predictions and of `reference` references. A side with no items
    /// scores 0, so an image with no reference items scores 0 in that dimension.
    pub fn from_counts(matched: usize, predicted: usize, reference: usize) -> Prf {
        Prf::from_parts(matched, predicted, matched, reference)
    }

    /// Precision `confirmed / asked` and recall `recalled / reference` (each 0 when its denominator is 0).
    pub fn from_parts(confirmed: usize, asked: usize, recalled: usize, reference: usize) -> Prf {
        let precision = if asked > 0 { confirmed as f64 / asked as f64 } else { 0.0 };
        let recall = if reference > 0 { recalled as f64 / reference as f64 } else { 0.0 };
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Prf { precision, recall, f1 }
    }
}

/// Macro average of per-image values, ×100.
pub fn macro_average(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        100.0 * sum / n as f64
    }
}

/// PancapScore = Tag + Loc + Att + Rel + 0.1 × Global (each a macro-averaged F1 ×100; maximum 410).
pub fn pancap_score(tag: f64, location: f64, attribute: f64, relation: f64, global: f64) -> f64 {
    tag + location + attribute + relation + 0.1 * global
}

/// One entity for matching: a tag and, when it has one, a normalised box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredEntity {
    pub tag: String,
    pub bbox: Option<[f64; 4]>,
}

pub use crate::math::iou;

/// The lexical tiers of the tag cost, or None when the tags are not matchable by them.
pub fn lexical_tag_cost(reference: &str, predicted: &str) -> Option<f64> {
    let (r, p) = (reference.trim().to_lowercase(), predicted.trim().to_lowercase());
    if r.is_empty() || p.is_empty() {
        return None;
    }
    if r == p {
        Some(-1000.0)
    } else if r.contains(&p) || p.contains(&r) {
        Some(-100.0)
    } else {
        None
    }
}

/// Result of matching one image's entities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMatch {
    /// `(reference index, prediction index)` of every matched pair.
    pub pairs: Vec<(usize, usize)>,
    /// The pairs (indices into `pairs`) that also earned location credit.
    pub located: Vec<usize>,
    pub tag: Prf,
    pub location: Prf,
}

/// Matches references (rows) to predictions (columns) one to one with the tiered cost; only pairs with a tag
/// match count (there is no IoU-only match), and a matched pair with IoU ≥ 0.5 earns location credit.
pub fn match_entities(
    references: &[ScoredEntity],
    predictions: &[ScoredEntity],
    tag_cost: impl Fn(&str, &str) -> Option<f64>,
) -> EntityMatch {
    let mut located_pair = vec![vec![false; predictions.len()]; references.len()];
    let costs: Vec<Vec<f64>> = references
        .iter()
        .zip(located_pair.iter_mut())
        .map(|(r, located_row)| {
            predictions
                .iter()
                .zip(located_row.iter_mut())
                .map(|(p, located)| match tag_cost(&r.tag, &p.tag) {
                    None => assign::UNMATCHABLE,
                    Some(c) => match (&r.bbox, &p.bbox) {
                        (Some(a), Some(b)) if iou(a, b) >= 0.5 => {
                            *located = true;
                            c - iou(a, b)
                        }
                        _ => c,
                    },
                })
                .collect()
        })
        .collect();
    let pairs: Vec<(usize, usize)> = assign::min_cost_assignment(&costs)
        .into_iter()
        .filter(|&(r, p)| costs.get(r).and_then(|row| row.get(p)).is_some_and(|c| *c < 0.0))
        .collect();
    let located: Vec<usize> = pairs
        .iter()
        .enumerate()
        .filter(|(_, (r, p))| located_pair.get(*r).and_then(|row| row.get(*p)).copied().unwrap_or(false))
        .map(|(i, _)| i)
        .collect();
    let tag = Prf::from_counts(pairs.len(), predictions.len(), references.len());
    let location = Prf::from_counts(
        located.len(),
        predictions.iter().filter(|p| p.bbox.is_some()).count(),
        references.iter().filter(|r| r.bbox.is_some()).count(),
    );
    EntityMatch { pairs, located, tag, location }
}

/// The scores of one image, all five dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScore {
    pub image: String,
    pub reference_entities: usize,
    pub predicted_entities: usize,
    pub matched: usize,
    pub tag: Prf,
    pub location: Prf,
    /// Approximate (structured items, no LLM).
    pub attribute: Prf,
    /// Approximate.
    pub relation: Prf,
    /// Approximate.
    pub global: Prf,
}

impl ImageScore {
    /// The per-image PancapScore (F1s ×100).
    pub fn overall(&self) -> f64 {
        100.0 * pancap_score(self.tag.f1, self.location.f1, self.attribute.f1, self.relation.f1, self.global.f1)
    }
}

fn item_prf(c: ItemCounts) -> Prf {
    Prf::from_parts(c.confirmed_predicted, c.asked_predicted, c.recalled_reference, c.reference)
}

/// Scores one prediction against its reference.
pub fn score_image(
    image: &str,
    reference: &Content,
    predicted: &Content,
    matcher: &mut TagMatcher,
) -> Result<ImageScore, embed::EmbedError> {
    matcher.prepare(reference.entities.iter().chain(&predicted.entities).map(|e| e.tag.as_str()))?;
    let m = match_entities(&reference.entities, &predicted.entities, |r, p| matcher.cost(r, p));
    let (att, rel, glob) = content::compare_items(reference, predicted, &m.pairs);
    Ok(ImageScore {
        image: image.to_string(),
        reference_entities: reference.entities.len(),
        predicted_entities: predicted.entities.len(),
        matched: m.pairs.len(),
        tag: m.tag,
        location: m.location,
        attribute: item_prf(att),
        relation: item_prf(rel),
        global: item_prf(glob),
    })
}

/// PancapEngine's consistency filter, live: scores a caption's things against a second opinion (see
/// `Pipeline::second_opinion`); the verdict uses tag F1 (location excluded, as PancapEngine does), location F1 is
/// reported alongside.
pub fn self_check(
    caption: &crate::scene::PanopticCaption,
    second: &[ScoredEntity],
    matcher: &mut TagMatcher,
    threshold: f64,
    ms: f64,
) -> Result<crate::scene::SelfCheck, embed::EmbedError> {
    let things: Vec<ScoredEntity> = caption
        .entities
        .iter()
        .filter(|e| e.kind == crate::scene::Kind::Thing)
        .map(|e| ScoredEntity { tag: e.tag.to_string(), bbox: Some(e.box_norm) })
        .collect();
    matcher.prepare(things.iter().chain(second).map(|e| e.tag.as_str()))?;
    let m = match_entities(&things, second, |r, p| matcher.cost(r, p));
    // no things on either side is agreement, not failure
    let (tag, location) = if things.is_empty() && second.is_empty() { (1.0, 1.0) } else { (m.tag.f1, m.location.f1) };
    Ok(crate::scene::SelfCheck {
        method: "suite detectors on the horizontally mirrored frame, boxes mirrored back".into(),
        compared: "things".into(),
        tag: 100.0 * tag,
        location: 100.0 * location,
        threshold: 100.0 * threshold,
        pass: tag >= threshold,
        ms,
    })
}

/// Macro-averaged scores ×100 over images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub images: usize,
    pub tag: Prf,
    pub location: Prf,
    pub attribute: Prf,
    pub relation: Prf,
    pub global: Prf,
    /// Tag + Loc + Att + Rel + 0.1 × Global (F1s).
    pub pancap_score: f64,
    /// The dimensions computed by structured comparison instead of the official LLM questions.
    pub approximate: Vec<String>,
}

fn macro_prf<'a>(scores: impl Iterator<Item = &'a Prf> + Clone) -> Prf {
    Prf {
        precision: macro_average(scores.clone().map(|p| p.precision)),
        recall: macro_average(scores.clone().map(|p| p.recall)),
        f1: macro_average(scores.map(|p| p.f1)),
    }
}

pub fn aggregate(images: &[ImageScore]) -> Aggregate {
    let tag = macro_prf(images.iter().map(|i| &i.tag));
    let location = macro_prf(images.iter().map(|i| &i.location));
    let attribute = macro_prf(images.iter().map(|i| &i.attribute));
    let relation = macro_prf(images.iter().map(|i| &i.relation));
    let global = macro_prf(images.iter().map(|i| &i.global));
    Aggregate {
        images: images.len(),
        pancap_score: pancap_score(tag.f1, location.f1, attribute.f1, relation.f1, global.f1),
        tag,
        location,
        attribute,
        relation,
        global,
        approximate: vec!["attribute".into(), "relation".into(), "global".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: &str, b: Option<[f64; 4]>) -> ScoredEntity {
        ScoredEntity { tag: tag.into(), bbox: b }
    }

    #[test]
    fn published_arithmetic_check() {
        let s = pancap_score(57.56, 30.34, 44.78, 34.61, 84.59);
        assert!((s - 175.749).abs() < 1e-9);
        assert_eq!(format!("{s:.2}"), "175.75");
    }

    #[test]
    fn substring_tags_match_and_iou_only_does_not() {
        let refs = vec![e("man", Some([0.0, 0.0, 0.5, 0.5])), e("tree", Some([0.5, 0.5, 1.0, 1.0]))];
        // "woman" contains "man": tier 2 match; "car" lies exactly on the tree but has no tag match
        let preds = vec![e("woman", Some([0.0, 0.0, 0.5, 0.5])), e("car", Some([0.5, 0.5, 1.0, 1.0]))];
        let m = match_entities(&refs, &preds, lexical_tag_cost);
        assert_eq!(m.pairs, vec![(0, 0)]);
        assert_eq!(m.located, vec![0]);
        assert!((m.tag.f1 - 0.5).abs() < 1e-12);
        assert!((m.location.f1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn identical_tags_beat_substrings_and_iou_breaks_ties() {
        let refs = vec![e("dog", Some([0.0, 0.0, 0.4, 0.4])), e("dog", Some([0.6, 0.6, 1.0, 1.0]))];
        let preds = vec![e("dog", Some([0.6, 0.6, 1.0, 1.0])), e("dog", Some([0.0, 0.0, 0.4, 0.4])), e("hot dog", None)];
        let m = match_entities(&refs, &preds, lexical_tag_cost);
        assert_eq!(m.pairs, vec![(0, 1), (1, 0)], "IoU decides between equal tags");
        assert_eq!(m.located.len(), 2);
        assert!((m.tag.precision - 2.0 / 3.0).abs() < 1e-12 && (m.tag.recall - 1.0).abs() < 1e-12);
        // location precision counts only predictions that have a box
        assert!((m.location.precision - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_dimension_without_reference_items_scores_zero() {
        let m = match_entities(&[], &[e("dog", None)], lexical_tag_cost);
        assert_eq!(m.tag.f1, 0.0);
        assert_eq!(Prf::from_counts(0, 0, 0).f1, 0.0);
    }

    #[test]
    fn macro_averaging_weights_images_equally() {
        // image A: 1 of 1 matched (F1 1); image B: 1 of 9 references, 1 prediction (F1 0.2)
        let a = Prf::from_counts(1, 1, 1).f1;
        let b = Prf::from_counts(1, 1, 9).f1;
        assert!((macro_average([a, b]) - 60.0).abs() < 1e-9, "macro, not micro ({})", macro_average([a, b]));
    }
}

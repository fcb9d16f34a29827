//! Backend equivalence at the caption level: do two backends give the same entities, tags and boxes?

use crate::math::iou;
use crate::scene::{Entity, EntityClass, PanopticCaption};
use serde::Serialize;

/// When two captions of one image agree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaptionTolerance {
    /// Least box IoU for a thing (or text) of the candidate to be the reference's entity of the same tag.
    pub min_iou: f64,
    /// The same for stuff regions. Their boxes span the extreme pixels of a label map, so a few labels flipped
    /// along a region's border by the uint8 segmenter's rounding (1.6 % of pixels between tract and tract-cuda,
    /// 2.3 % between tract and ONNX Runtime) can move a side far: the region is the same, its box less so.
    pub min_stuff_iou: f64,
}

impl Default for CaptionTolerance {
    fn default() -> Self {
        CaptionTolerance { min_iou: 0.95, min_stuff_iou: 0.5 }
    }
}

/// How one image's candidate caption compares with its reference caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionAgreement {
    pub image: String,
    pub reference_entities: usize,
    pub candidate_entities: usize,
    /// Entities paired with the same tag and class and an IoU of at least the tolerance's.
    pub matched: usize,
    /// Reference entities with no partner ("tag box" each).
    pub only_reference: Vec<String>,
    /// Candidate entities with no partner.
    pub only_candidate: Vec<String>,
    /// The lowest IoU among the paired things and text (1 when there are none).
    pub min_iou: f64,
    /// The lowest IoU among the paired stuff regions (1 when there are none).
    pub min_stuff_iou: f64,
    /// The largest shift of any box side among the paired things and text, in pixels.
    pub max_box_shift_px: f32,
    /// Whether the caption paragraphs are the same text.
    pub same_text: bool,
}

impl CaptionAgreement {
    /// The same entities, tags and boxes (the paragraph may differ in wording only if an entity does).
    pub fn agrees(&self) -> bool {
        self.only_reference.is_empty() && self.only_candidate.is_empty()
    }
}

fn label(e: &Entity) -> String {
    let b = e.box_px;
    format!("{} [{:.0}, {:.0}, {:.0}, {:.0}]", e.tag, b[0], b[1], b[2], b[3])
}

fn px(e: &Entity) -> [f64; 4] {
    e.box_px.map(f64::from)
}

/// Pairs the entities of two captions of one image: each reference entity, in order, takes the unpaired
/// candidate entity of the same tag and class with the highest IoU, if that IoU reaches `tol.min_iou`.
pub fn compare_captions(reference: &PanopticCaption, candidate: &PanopticCaption, tol: CaptionTolerance) -> CaptionAgreement {
    let mut taken = vec![false; candidate.entities.len()];
    let mut out = CaptionAgreement {
        image: reference.image.clone(),
        reference_entities: reference.entities.len(),
        candidate_entities: candidate.entities.len(),
        matched: 0,
        only_reference: Vec::new(),
        only_candidate: Vec::new(),
        min_iou: 1.0,
        min_stuff_iou: 1.0,
        max_box_shift_px: 0.0,
        same_text: reference.caption == candidate.caption,
    };
    for r in &reference.entities {
        let stuff = r.class() == EntityClass::Stuff;
        let floor = if stuff { tol.min_stuff_iou } else { tol.min_iou };
        let best = candidate
            .entities
            .iter()
            .enumerate()
            .filter(|(i, c)| !taken.get(*i).copied().unwrap_or(true) && c.tag == r.tag && c.class() == r.class())
            .map(|(i, c)| (i, iou(&px(r), &px(c))))
            .filter(|(_, v)| *v >= floor)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, v)) => {
                if let (Some(t), Some(c)) = (taken.get_mut(i), candidate.entities.get(i)) {
                    *t = true;
                    out.matched += 1;
                    if stuff {
                        out.min_stuff_iou = out.min_stuff_iou.min(v);
                    } else {
                        out.min_iou = out.min_iou.min(v);
                        let shift = r.box_px.iter().zip(&c.box_px).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                        out.max_box_shift_px = out.max_box_shift_px.max(shift);
                    }
                }
            }
            None => out.only_reference.push(label(r)),
        }
    }
    for (c, t) in candidate.entities.iter().zip(&taken) {
        if !t {
            out.only_candidate.push(label(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn golden() -> PanopticCaption {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/synthetic_fake_engines.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_caption_agrees_with_itself_and_a_slightly_shifted_copy() {
        let r = golden();
        assert!(r.entities.len() >= 3);
        let same = compare_captions(&r, &r, CaptionTolerance::default());
        assert!(same.agrees() && same.same_text);
        assert_eq!((same.matched, same.min_iou, same.max_box_shift_px), (r.entities.len(), 1.0, 0.0));
        let mut c = r.clone();
        c.entities[0].box_px[2] += 0.5;
        let near = compare_captions(&r, &c, CaptionTolerance::default());
        assert!(near.agrees(), "{near:?}");
        assert_eq!(near.max_box_shift_px, 0.5);
        assert!(near.min_iou < 1.0);
    }

    #[test]
    fn a_lost_retagged_or_moved_entity_is_named() {
        let r = golden();
        let mut c = r.clone();
        let lost = c.entities.remove(0);
        c.entities[0].tag = "giraffe".into();
        let moved = &mut c.entities[1].box_px;
        let w = moved[2] - moved[0];
        moved[0] += w;
        moved[2] += w;
        let a = compare_captions(&r, &c, CaptionTolerance::default());
        assert!(!a.agrees());
        assert_eq!(a.matched, r.entities.len() - 3);
        assert_eq!(a.only_reference.len(), 3);
        assert!(a.only_reference[0].starts_with(&*lost.tag), "{:?}", a.only_reference);
        assert_eq!(a.only_candidate.len(), 2);
        assert!(a.only_candidate.iter().any(|l| l.starts_with("giraffe")), "{:?}", a.only_candidate);
    }
}

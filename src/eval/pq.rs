//! COCO panoptic references and panoptic quality (PQ), per the COCO panoptic definition (Kirillov et al.;
//! panopticapi `pq_compute`): a predicted and a reference segment of the same category match when their IoU
//! exceeds 0.5 (unique by construction); IoU ignores the predicted pixels that fall on unlabelled (void) reference
//! pixels; unmatched predictions are false positives unless more than half of them lies on void or on a crowd
//! region of their category; PQ = Σ IoU(TP) / (TP + ½FP + ½FN) per category, averaged over the categories that
//! occur. SQ and RQ are its two factors.
//!
//! The prediction scored is exactly what `--format coco-panoptic` writes: the map and segments of
//! [`crate::caption::panoptic_out::panoptic_output`].

use super::{CocoAnnotation, CocoCategory, CocoImage, CocoInstances, EvalError};
use crate::caption::panoptic_out::{PanCategory, PanopticOutput};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct SegmentInfo {
    pub id: u32,
    pub category_id: u32,
    #[serde(default)]
    pub iscrowd: u8,
    pub bbox: [f32; 4],
}

#[derive(Debug, Clone, Deserialize)]
pub struct PanAnnotation {
    pub image_id: u64,
    pub file_name: String,
    pub segments_info: Vec<SegmentInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PanopticJson {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<PanAnnotation>,
    pub categories: Vec<PanCategory>,
}

impl PanopticJson {
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        super::read_json(path, "COCO panoptic file")
    }

    /// The thing segments as a COCO instances file (for box mAP).
    pub fn things_as_instances(&self) -> CocoInstances {
        let thing: HashMap<u32, bool> = self.categories.iter().map(|c| (c.id, c.isthing == 1)).collect();
        CocoInstances {
            images: self.images.clone(),
            annotations: self
                .annotations
                .iter()
                .flat_map(|a| {
                    a.segments_info.iter().filter(|s| thing.get(&s.category_id) == Some(&true)).map(|s| CocoAnnotation {
                        image_id: a.image_id,
                        category_id: s.category_id,
                        bbox: s.bbox,
                        iscrowd: s.iscrowd,
                    })
                })
                .collect(),
            categories: self
                .categories
                .iter()
                .filter(|c| c.isthing == 1)
                .map(|c| CocoCategory { id: c.id, name: c.name.clone() })
                .collect(),
        }
    }
}

/// Decodes an RGB-encoded panoptic PNG into segment ids (`R + 256 G + 256² B`).
pub fn read_segment_png(path: &Path) -> Result<(u32, u32, Vec<u32>), EvalError> {
    let err = |reason: String| EvalError::Read { path: path.to_path_buf(), reason };
    let img = image::open(path).map_err(|e| err(e.to_string()))?.to_rgb8();
    let ids = img.pixels().map(|p| u32::from(p.0[0]) + 256 * u32::from(p.0[1]) + 65536 * u32::from(p.0[2])).collect();
    Ok((img.width(), img.height(), ids))
}

/// Per-category PQ accumulators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PqCounts {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
    pub iou_sum: f64,
}

/// PQ, SQ, RQ ×100 over a set of categories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pq {
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub categories: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PqReport {
    pub all: Pq,
    pub things: Pq,
    pub stuff: Pq,
    /// Predicted segments whose tag has no COCO panoptic category (counted as false positives).
    pub unmapped_segments: u32,
}

#[derive(Default)]
pub struct PqAccumulator {
    per_category: BTreeMap<u32, PqCounts>,
    unmapped: u32,
}

impl PqAccumulator {
    /// Adds one image: the reference ids (`gt_ids`, with its segments) against a prediction of the same size.
    pub fn add(&mut self, gt_ids: &[u32], gt_segments: &[SegmentInfo], pred: &PanopticOutput) {
        let pred_categories: BTreeMap<u32, Option<u32>> = pred.segments.iter().map(|s| (s.id, s.category_id)).collect();
        let gt_cat: HashMap<u32, &SegmentInfo> = gt_segments.iter().map(|s| (s.id, s)).collect();
        let mut gt_area: HashMap<u32, u64> = HashMap::new();
        let mut pred_area: HashMap<u32, u64> = HashMap::new();
        let mut inter: HashMap<(u32, u32), u64> = HashMap::new();
        for (g, p) in gt_ids.iter().zip(&pred.ids) {
            *gt_area.entry(*g).or_default() += 1;
            *pred_area.entry(*p).or_default() += 1;
            *inter.entry((*g, *p)).or_default() += 1;
        }
        let mut gt_matched = std::collections::HashSet::new();
        let mut pred_matched = std::collections::HashSet::new();
        for (&(g, p), &i) in &inter {
            let (Some(gs), Some(Some(pc))) = (gt_cat.get(&g), pred_categories.get(&p)) else { continue };
            if gs.iscrowd == 1 || gs.category_id != *pc {
                continue;
            }
            let void_in_pred = inter.get(&(0, p)).copied().unwrap_or(0);
            let union = pred_area.get(&p).copied().unwrap_or(0) + gt_area.get(&g).copied().unwrap_or(0) - i - void_in_pred;
            let iou = if union > 0 { i as f64 / union as f64 } else { 0.0 };
            if iou > 0.5 {
                let c = self.per_category.entry(gs.category_id).or_default();
                c.tp += 1;
                c.iou_sum += iou;
                gt_matched.insert(g);
                pred_matched.insert(p);
            }
        }
        for s in gt_segments {
            if s.iscrowd == 0 && !gt_matched.contains(&s.id) && gt_area.contains_key(&s.id) {
                self.per_category.entry(s.category_id).or_default().fn_ += 1;
            }
        }
        for (&p, cat) in &pred_categories {
            let area = pred_area.get(&p).copied().unwrap_or(0);
            if area == 0 || pred_matched.contains(&p) {
                continue;
            }
            let Some(cat) = cat else {
                self.unmapped += 1;
                continue;
            };
            // pixels on void or on a crowd region of the same category do not make a false positive
            let mut ignored = inter.get(&(0, p)).copied().unwrap_or(0);
            for s in gt_segments.iter().filter(|s| s.iscrowd == 1 && s.category_id == *cat) {
                ignored += inter.get(&(s.id, p)).copied().unwrap_or(0);
            }
            if ignored * 2 > area {
                continue;
            }
            self.per_category.entry(*cat).or_default().fp += 1;
        }
    }

    pub fn report(&self, categories: &[PanCategory]) -> PqReport {
        let is_thing: HashMap<u32, bool> = categories.iter().map(|c| (c.id, c.isthing == 1)).collect();
        let pq_of = |filter: &dyn Fn(u32) -> bool| {
            let (mut pq, mut sq, mut rq, mut n) = (0.0, 0.0, 0.0, 0usize);
            for (&cat, c) in self.per_category.iter().filter(|(k, _)| filter(**k)) {
                let _ = cat;
                let denom = f64::from(c.tp) + 0.5 * f64::from(c.fp) + 0.5 * f64::from(c.fn_);
                if denom == 0.0 {
                    continue;
                }
                n += 1;
                let s = if c.tp > 0 { c.iou_sum / f64::from(c.tp) } else { 0.0 };
                let r = f64::from(c.tp) / denom;
                pq += s * r;
                sq += s;
                rq += r;
            }
            let k = n.max(1) as f64;
            Pq { pq: 100.0 * pq / k, sq: 100.0 * sq / k, rq: 100.0 * rq / k, categories: n }
        };
        PqReport {
            all: pq_of(&|_| true),
            things: pq_of(&|c| is_thing.get(&c) == Some(&true)),
            stuff: pq_of(&|c| is_thing.get(&c) != Some(&true)),
            unmapped_segments: self.unmapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u32, category_id: u32, iscrowd: u8) -> SegmentInfo {
        SegmentInfo { id, category_id, iscrowd, bbox: [0.0; 4] }
    }

    fn cats() -> Vec<PanCategory> {
        vec![
            PanCategory { id: 1, name: "person".into(), isthing: 1 },
            PanCategory { id: 187, name: "sky-other-merged".into(), isthing: 0 },
        ]
    }

    /// A predicted map of `ids` whose segments have the given categories.
    fn prediction(width: u32, ids: Vec<u32>, categories: &[(u32, Option<u32>)]) -> PanopticOutput {
        let segments = categories
            .iter()
            .map(|&(id, category_id)| crate::caption::panoptic_out::Segment {
                id,
                category_id,
                tag: String::new(),
                isthing: 0,
                bbox: [0; 4],
                area: ids.iter().filter(|p| **p == id).count() as u64,
                iscrowd: 0,
                description: String::new(),
                mask_source: None,
            })
            .collect();
        PanopticOutput { width, height: ids.len() as u32 / width, ids, segments }
    }

    #[test]
    fn pq_of_a_hand_worked_case() {
        // 1x10 image: gt sky 0..6, person 6..10. Prediction: sky 0..5 (IoU 5/6), person 5..10 (IoU 4/5)
        let gt: Vec<u32> = (0..10).map(|i| if i < 6 { 10 } else { 20 }).collect();
        let segments = vec![seg(10, 187, 0), seg(20, 1, 0)];
        let ids: Vec<u32> = (0..10).map(|i| if i < 5 { 1 } else { 2 }).collect();
        let pred = prediction(10, ids, &[(1, Some(187)), (2, Some(1))]);
        let mut acc = PqAccumulator::default();
        acc.add(&gt, &segments, &pred);
        let r = acc.report(&cats());
        let want = 100.0 * (5.0 / 6.0 + 4.0 / 5.0) / 2.0;
        assert!((r.all.pq - want).abs() < 1e-9, "{r:?}");
        assert!((r.all.rq - 100.0).abs() < 1e-9);
        assert!((r.things.pq - 80.0).abs() < 1e-9);

        // a wrong category: one FN for the gt, one FP for the prediction → PQ 0 for both categories
        let pred = prediction(10, vec![1; 10], &[(1, Some(1))]);
        let mut acc = PqAccumulator::default();
        acc.add(&gt, &segments, &pred);
        let r = acc.report(&cats());
        assert_eq!(r.all.pq, 0.0);
        assert_eq!(r.all.categories, 2);
    }

    #[test]
    fn void_pixels_leave_iou_and_false_positives_alone() {
        // gt: 0..4 void, 4..10 sky. Prediction sky covers everything: IoU = 6 / (10 + 6 - 6 - 4) = 1
        let gt: Vec<u32> = (0..10).map(|i| if i < 4 { 0 } else { 10 }).collect();
        let pred = prediction(10, vec![1; 10], &[(1, Some(187))]);
        let mut acc = PqAccumulator::default();
        acc.add(&gt, &[seg(10, 187, 0)], &pred);
        assert!((acc.report(&cats()).all.pq - 100.0).abs() < 1e-9);
    }
}

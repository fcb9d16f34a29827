//! COCO bounding-box evaluation (AP over IoU 0.50:0.95, AP50, AP75), following pycocotools' COCOeval for the
//! "all" area range with at most 100 detections per image and category: crowd annotations are ignored regions,
//! precision is interpolated at 101 recall points, classes without ground truth are left out of the mean.

use super::CocoInstances;
use crate::caption::CocoResult;
use crate::geometry::BoxF;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapReport {
    /// AP averaged over IoU 0.50:0.05:0.95, ×100.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    /// Categories with ground truth that entered the mean.
    pub categories: usize,
}

fn xywh(b: &[f32; 4]) -> BoxF {
    BoxF::new(b[0], b[1], b[0] + b[2], b[1] + b[3])
}

const MAX_DETS: usize = 100;

/// For one IoU threshold: per-category lists of (score, true positive) plus the number of non-ignored gts.
struct PerCategory {
    dets: Vec<(f32, bool)>,
    npig: usize,
}

/// COCO bbox mAP of `results` against `gt`.
pub fn coco_map(gt: &CocoInstances, results: &[CocoResult]) -> MapReport {
    let thresholds: Vec<f32> = (0..10).map(|i| 0.5 + 0.05 * i as f32).collect();
    let image_ids: std::collections::HashSet<u64> = gt.images.iter().map(|i| i.id).collect();
    let mut gts: HashMap<(u64, u32), Vec<(BoxF, bool)>> = HashMap::new();
    for a in &gt.annotations {
        gts.entry((a.image_id, a.category_id)).or_default().push((xywh(&a.bbox), a.iscrowd != 0));
    }
    let mut dts: HashMap<(u64, u32), Vec<(BoxF, f32)>> = HashMap::new();
    for r in results.iter().filter(|r| image_ids.contains(&r.image_id)) {
        dts.entry((r.image_id, r.category_id)).or_default().push((xywh(&r.bbox), r.score));
    }
    let mut per_t: Vec<BTreeMap<u32, PerCategory>> = thresholds.iter().map(|_| BTreeMap::new()).collect();
    let cats: Vec<u32> = gt.categories.iter().map(|c| c.id).collect();
    for img in &gt.images {
        for &cat in &cats {
            let mut g = gts.get(&(img.id, cat)).cloned().unwrap_or_default();
            // non-ignored first, as COCOeval sorts them
            g.sort_by_key(|(_, crowd)| *crowd);
            let mut d = dts.get(&(img.id, cat)).cloned().unwrap_or_default();
            d.sort_by(|a, b| b.1.total_cmp(&a.1));
            d.truncate(MAX_DETS);
            for (ti, &t) in thresholds.iter().enumerate() {
                let Some(slot) = per_t.get_mut(ti) else { continue };
                let entry = slot.entry(cat).or_insert(PerCategory { dets: Vec::new(), npig: 0 });
                entry.npig += g.iter().filter(|(_, crowd)| !crowd).count();
                let mut matched = vec![false; g.len()];
                for (db, score) in &d {
                    let mut best: Option<usize> = None;
                    let mut best_iou = t.min(1.0 - 1e-10);
                    for (gi, (gb, crowd)) in g.iter().enumerate() {
                        if matched.get(gi).copied().unwrap_or(false) && !crowd {
                            continue;
                        }
                        if let Some(m) = best {
                            let m_crowd = g.get(m).map(|x| x.1).unwrap_or(false);
                            if !m_crowd && *crowd {
                                break;
                            }
                        }
                        let iou = if *crowd {
                            let a = db.area();
                            if a > 0.0 { db.intersection(gb) / a } else { 0.0 }
                        } else {
                            db.iou(gb)
                        };
                        if iou < best_iou {
                            continue;
                        }
                        best_iou = iou;
                        best = Some(gi);
                    }
                    match best {
                        Some(m) => {
                            if let Some(flag) = matched.get_mut(m) {
                                *flag = true;
                            }
                            // a match to a crowd region is ignored, neither true nor false positive
                            if !g.get(m).map(|x| x.1).unwrap_or(false) {
                                entry.dets.push((*score, true));
                            }
                        }
                        None => entry.dets.push((*score, false)),
                    }
                }
            }
        }
    }
    let recall_points: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
    let mut ap_t = Vec::new();
    let mut ncat = 0;
    for cats in &per_t {
        let mut aps = Vec::new();
        for pc in cats.values().filter(|pc| pc.npig > 0) {
            let mut d = pc.dets.clone();
            // stable sort by score, descending (COCOeval uses mergesort)
            d.sort_by(|a, b| b.0.total_cmp(&a.0));
            let (mut tp, mut fp) = (0f64, 0f64);
            let mut rc = Vec::with_capacity(d.len());
            let mut pr = Vec::with_capacity(d.len());
            for (_, is_tp) in &d {
                if *is_tp {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                rc.push(tp / pc.npig as f64);
                pr.push(tp / (tp + fp + f64::EPSILON));
            }
            for i in (1..pr.len()).rev() {
                let next = pr.get(i).copied().unwrap_or(0.0);
                if let Some(p) = pr.get_mut(i - 1) {
                    *p = p.max(next);
                }
            }
            let mut sum = 0.0;
            for r in &recall_points {
                let idx = rc.partition_point(|x| x < r);
                sum += pr.get(idx).copied().unwrap_or(0.0);
            }
            aps.push(sum / recall_points.len() as f64);
        }
        ncat = aps.len();
        ap_t.push(if aps.is_empty() { 0.0 } else { aps.iter().sum::<f64>() / aps.len() as f64 });
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    MapReport {
        ap: 100.0 * mean(&ap_t),
        ap50: 100.0 * ap_t.first().copied().unwrap_or(0.0),
        ap75: 100.0 * ap_t.get(5).copied().unwrap_or(0.0),
        categories: ncat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt() -> CocoInstances {
        serde_json::from_str(
            r#"{"images":[{"id":1,"file_name":"a.jpg","width":100,"height":100}],
                "annotations":[{"image_id":1,"category_id":1,"bbox":[0,0,10,10]},
                               {"image_id":1,"category_id":1,"bbox":[50,50,10,10]},
                               {"image_id":1,"category_id":2,"bbox":[20,20,30,30],"iscrowd":1}],
                "categories":[{"id":1,"name":"person"},{"id":2,"name":"bicycle"}]}"#,
        )
        .unwrap()
    }

    fn det(cat: u32, b: [f32; 4], score: f32) -> CocoResult {
        CocoResult { image_id: 1, category_id: cat, bbox: b, score }
    }

    #[test]
    fn perfect_detections_score_100() {
        let r = coco_map(&gt(), &[det(1, [0., 0., 10., 10.], 0.9), det(1, [50., 50., 10., 10.], 0.8)]);
        assert!((r.ap - 100.0).abs() < 1e-9 && (r.ap50 - 100.0).abs() < 1e-9);
        assert_eq!(r.categories, 1, "a category with only crowd ground truth is left out");
    }

    #[test]
    fn half_recall_and_a_false_positive_ranked_first() {
        // one hit out of two gts, ranked after a false positive: precision 0.5 up to recall 0.5
        let r = coco_map(&gt(), &[det(1, [80., 0., 10., 10.], 0.9), det(1, [0., 0., 10., 10.], 0.8)]);
        assert!((r.ap50 - 100.0 * 0.5 * 51.0 / 101.0).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn detections_on_crowd_regions_are_ignored() {
        let with = coco_map(&gt(), &[det(1, [0., 0., 10., 10.], 0.9), det(1, [50., 50., 10., 10.], 0.8), det(2, [25., 25., 5., 5.], 0.99)]);
        assert!((with.ap - 100.0).abs() < 1e-9);
    }
}

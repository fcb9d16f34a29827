//! Merging detections across detectors by IoU-based redundancy removal (PancapEngine's recipe), not NMS:
//! detectors' scores live on different scales, so no detector's score may suppress another's box. Overlapping
//! boxes become one instance that remembers every detector that saw it; its class is the one with the most
//! combined evidence and its box the evidence-weighted mean of that class's boxes.

use super::decode::Detection;
use crate::geometry::BoxF;
use serde::{Deserialize, Serialize};

/// Which pass produced a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// The detector on the whole frame.
    Full,
    /// Extra-instance discovery on tiles of the frame.
    Tiles,
}

/// One detector's vote for an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index of the detector in the suite.
    pub detector: usize,
    pub pass: Pass,
    pub class: usize,
    pub score: f32,
    pub bbox: BoxF,
}

/// The hits of one instance, inline up to eight (more spill to the heap), at most one per detector, class and
/// pass ([`add_hit`]). One detector can give an object several hits (other classes on the same box, the full
/// frame and tiles): with four inline, 14 of the dog photo's instances spilled each frame (`tests/allocations.rs`,
/// DEIMv2-femto + PicoDet-S).
pub type Hits = smallvec::SmallVec<[Hit; 8]>;

/// Adds `hit` to an instance's hits, where an instance keeps one hit per detector, class and pass: the stronger
/// (the earlier on a tie). Everything read from the hits — each detector's best score and box for a class
/// ([`evidence`]), whether a full-frame pass saw it, the votes a caption lists (best per model and pass) — is
/// the same as with every hit kept; DEIMv2's NMS-free queries no longer pile up weaker copies of one vote (the
/// dog photo spilled ten hit lists a frame that way).
pub fn add_hit(hits: &mut Hits, hit: Hit) {
    match hits.iter_mut().find(|h| h.detector == hit.detector && h.class == hit.class && h.pass == hit.pass) {
        Some(h) => {
            if hit.score.total_cmp(&h.score) == std::cmp::Ordering::Greater {
                *h = hit;
            }
        }
        None => hits.push(hit),
    }
}

/// An instance after merging.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub hits: Hits,
    pub class: usize,
    pub score: f32,
    pub bbox: BoxF,
    /// Other classes proposed for the same region, with their combined evidence, best first (inline up to
    /// six; more spill to the heap).
    pub alternatives: smallvec::SmallVec<[(usize, f32); 6]>,
}

impl Instance {
    /// True when only the discovery pass found this instance.
    pub fn discovered(&self) -> bool {
        self.hits.iter().all(|h| h.pass == Pass::Tiles)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MergeParams {
    /// Same-class boxes overlapping at least this much are one instance.
    pub same_class_iou: f32,
    /// Boxes of different classes overlapping at least this much are one instance with disputed class.
    pub cross_class_iou: f32,
    /// How the detectors' scores for one instance become its score.
    pub fusion: Fusion,
    /// Detectors that run on the whole frame (the suite's size): what `Fusion::Mean` divides by.
    pub detectors: usize,
}

impl MergeParams {
    /// How many detectors looked at a region that `voters` detectors found: the whole suite when one of them found
    /// it on the full frame, else (discovery's tiles) just the voters. At least 1.
    fn looked(&self, voters: usize, full_frame: bool) -> usize {
        if full_frame { self.detectors.max(voters) } else { voters }.max(1)
    }
}

impl Default for MergeParams {
    fn default() -> Self {
        MergeParams { same_class_iou: 0.55, cross_class_iou: 0.65, fusion: Fusion::default(), detectors: 1 }
    }
}

/// Score fusion across detectors. Each detector contributes its best score for the class (one vote each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// `1 − Π(1 − pᵢ)`: as if the detectors erred independently. They do not (they learnt from the same
    /// images), so on raw scores two weak votes made a confident instance; on calibrated scores it measured best
    /// of the three on coco-val2017-dev (README, "Choosing the suite").
    #[default]
    NoisyOr,
    /// The strongest vote.
    Max,
    /// Weighted box fusion's score: the votes summed over the detectors that looked at the region (the whole
    /// suite for a full-frame hit; the primary alone for a region only the tiles found), so a detector that
    /// saw nothing there counts as a vote of 0. Ranks best for mAP but, at the caption threshold, drops what
    /// only one detector saw.
    Mean,
}

/// `detector`'s best hit for `class` (the earliest of equal scores), found in place.
fn best_of(hits: &[Hit], class: usize, detector: usize) -> Option<&Hit> {
    hits.iter().filter(|h| h.class == class && h.detector == detector).fold(None, |best: Option<&Hit>, h| match best {
        Some(b) if b.score.total_cmp(&h.score) != std::cmp::Ordering::Less => Some(b),
        _ => Some(h),
    })
}

/// Evidence that several detectors saw `class`: each detector's best score fused by `params.fusion`; the box is
/// the score-weighted mean of those best boxes. The votes are taken in detector order, so the result does not
/// depend on the order the hits arrived in. Allocates nothing.
fn evidence(hits: &[Hit], class: usize, params: &MergeParams) -> (f32, BoxF) {
    let last = hits.iter().map(|h| h.detector).max().unwrap_or(0);
    let best = || (0..=last).filter_map(move |d| best_of(hits, class, d));
    let score = match params.fusion {
        Fusion::NoisyOr => 1.0 - best().map(|h| 1.0 - h.score.clamp(0.0, 1.0)).product::<f32>(),
        Fusion::Max => best().map(|h| h.score).fold(0.0, f32::max),
        Fusion::Mean => {
            let looked = params.looked(best().count(), hits.iter().any(|h| h.pass == Pass::Full));
            best().map(|h| h.score.clamp(0.0, 1.0)).sum::<f32>() / looked as f32
        }
    };
    (score, weighted_box(best))
}

/// The score-weighted mean of the boxes `hits` yields (called twice: once for the weights' sum).
fn weighted_box<'h, I: Iterator<Item = &'h Hit>>(hits: impl Fn() -> I) -> BoxF {
    let wsum: f32 = hits().map(|h| h.score.max(1e-6)).sum();
    let mut b = [0f32; 4];
    for h in hits() {
        let w = h.score.max(1e-6) / wsum.max(1e-6);
        b[0] += w * h.bbox.x1;
        b[1] += w * h.bbox.y1;
        b[2] += w * h.bbox.x2;
        b[3] += w * h.bbox.y2;
    }
    BoxF::new(b[0], b[1], b[2], b[3])
}

/// The instance's class, score and box from the class with the most evidence (ties: the lower class id); the
/// other classes become its alternatives, best first. Reuses the alternatives' buffer (inline up to three), so
/// an instance with up to four classes allocates nothing.
fn resolve(inst: &mut Instance, params: &MergeParams) {
    let better = |a: (usize, f32), b: (usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)) == std::cmp::Ordering::Less;
    inst.alternatives.clear();
    let mut top: Option<(usize, f32, BoxF)> = None;
    for (i, h) in inst.hits.iter().enumerate() {
        if inst.hits.get(..i).unwrap_or_default().iter().any(|o| o.class == h.class) {
            continue;
        }
        let (e, b) = evidence(&inst.hits, h.class, params);
        match top {
            Some((tc, te, _)) if !better((h.class, e), (tc, te)) => inst.alternatives.push((h.class, e)),
            Some((tc, te, _)) => {
                inst.alternatives.push((tc, te));
                top = Some((h.class, e, b));
            }
            None => top = Some((h.class, e, b)),
        }
    }
    inst.alternatives.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some((c, e, b)) = top {
        inst.class = c;
        inst.score = e;
        inst.bbox = b;
    }
}

/// The instance a box is redundant with: the best same-class overlap at `same_class_iou`, else the best
/// other-class overlap at `cross_class_iou`.
fn redundant_with(instances: &[Instance], class: usize, bbox: &BoxF, params: &MergeParams, skip: Option<usize>) -> Option<usize> {
    let mut same: Option<(usize, f32)> = None;
    let mut cross: Option<(usize, f32)> = None;
    for (i, inst) in instances.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let iou = inst.bbox.iou(bbox);
        let is_same = inst.class == class || inst.hits.iter().any(|h| h.class == class);
        let (slot, needed) = if is_same { (&mut same, params.same_class_iou) } else { (&mut cross, params.cross_class_iou) };
        if iou >= needed && slot.is_none_or(|(_, b)| iou > b) {
            *slot = Some((i, iou));
        }
    }
    same.or(cross).map(|(i, _)| i)
}

/// Adds one hit: into the instance it is redundant with, or as a new instance when `may_create`.
/// Returns whether the hit started a new instance.
pub fn absorb(instances: &mut Vec<Instance>, hit: Hit, params: &MergeParams, may_create: bool) -> bool {
    match redundant_with(instances, hit.class, &hit.bbox, params, None).and_then(|i| instances.get_mut(i)) {
        Some(inst) => {
            add_hit(&mut inst.hits, hit);
            resolve(inst, params);
            false
        }
        None if may_create => {
            // one hit: its own score (divided among the detectors that looked, for Mean) and box
            let score = match params.fusion {
                Fusion::NoisyOr | Fusion::Max => hit.score,
                Fusion::Mean => hit.score.clamp(0.0, 1.0) / params.looked(1, hit.pass == Pass::Full) as f32,
            };
            instances.push(Instance { hits: smallvec::smallvec![hit], class: hit.class, score, bbox: hit.bbox, alternatives: smallvec::SmallVec::new() });
            true
        }
        None => false,
    }
}

/// Re-merges instances whose resolved boxes became redundant with a stronger one after absorbing hits, until
/// none is left; the result is sorted by score.
pub fn consolidate(instances: &mut Vec<Instance>, params: &MergeParams) {
    loop {
        // best first, ties by class and then box: a total order, so the unstable sort (no scratch buffer, where a
        // stable sort of more than a few instances allocates one) gives one order whatever the input's
        instances.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(a.bbox.total_cmp(&b.bbox)));
        let mut merged = false;
        for j in (1..instances.len()).rev() {
            let Some(weak) = instances.get(j) else { continue };
            let (class, bbox) = (weak.class, weak.bbox);
            let target = redundant_with(instances.get(..j).unwrap_or_default(), class, &bbox, params, None);
            if let Some(i) = target {
                let weak = instances.remove(j);
                if let Some(strong) = instances.get_mut(i) {
                    for hit in weak.hits {
                        add_hit(&mut strong.hits, hit);
                    }
                    resolve(strong, params);
                }
                merged = true;
                break;
            }
        }
        if !merged {
            return;
        }
    }
}

/// Merges the full-frame detections of every detector (index = position in `per_detector`); each detector's
/// detections are sorted by score in place (not copied to be sorted).
pub fn merge(per_detector: &mut [Vec<Detection>], params: &MergeParams) -> Vec<Instance> {
    let mut instances = Vec::new();
    for (detector, dets) in per_detector.iter_mut().enumerate() {
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        for d in dets.iter() {
            let hit = Hit { detector, pass: Pass::Full, class: d.class, score: d.score, bbox: d.bbox };
            absorb(&mut instances, hit, params, true);
        }
    }
    consolidate(&mut instances, params);
    instances
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32, class: usize) -> Detection {
        Detection { bbox: BoxF::new(x, 0.0, x + 10.0, 10.0), score, class }
    }

    #[test]
    fn agreeing_detectors_make_one_instance_with_both_sources() {
        let m = merge(&mut [vec![det(0.0, 0.8, 16)], vec![det(0.5, 0.6, 16)]], &MergeParams::default());
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].hits.len(), 2);
        assert!((m[0].score - (1.0 - 0.2 * 0.4)).abs() < 1e-5, "noisy-or evidence");
        // weighted box lies between the two
        assert!(m[0].bbox.x1 > 0.0 && m[0].bbox.x1 < 0.5);
    }

    #[test]
    fn a_weak_detector_never_suppresses_a_strong_one_elsewhere() {
        let m = merge(&mut [vec![det(0.0, 0.9, 0)], vec![det(30.0, 0.05, 0)]], &MergeParams::default());
        assert_eq!(m.len(), 2, "non-overlapping boxes both survive, whatever their scores");
    }

    #[test]
    fn disputed_class_keeps_the_stronger_with_an_alternative() {
        // horse 0.6 + cow 0.7 on the same box from two detectors, plus horse 0.5 from the second
        let m = merge(&mut [vec![det(0.0, 0.6, 17)], vec![det(0.0, 0.7, 19), det(0.2, 0.5, 17)]], &MergeParams::default());
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].class, 17, "horse has 0.8 combined evidence against cow's 0.7");
        assert_eq!(m[0].alternatives.first().map(|a| a.0), Some(19));
    }

    #[test]
    fn a_hit_prefers_its_own_class_over_a_closer_other_class() {
        let p = MergeParams::default();
        // yolox: horse; picodet: cow at almost the same box, and horse at a box that overlaps the yolox horse less
        let horse = Detection { bbox: BoxF::new(0.0, 0.0, 100.0, 100.0), score: 0.65, class: 17 };
        let cow = Detection { bbox: BoxF::new(0.0, 20.0, 90.0, 100.0), score: 0.48, class: 19 };
        let horse2 = Detection { bbox: BoxF::new(0.0, 20.0, 92.0, 100.0), score: 0.37, class: 17 };
        let m = merge(&mut [vec![horse], vec![cow, horse2]], &p);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].class, 17);
    }

    fn params(fusion: Fusion, detectors: usize) -> MergeParams {
        MergeParams { fusion, detectors, ..MergeParams::default() }
    }

    #[test]
    fn fusion_methods_combine_one_vote_per_detector() {
        // detector 0 twice (its best counts), detector 1 once, on one object; a third detector saw nothing
        let per = [vec![det(0.0, 0.6, 2), det(0.3, 0.4, 2)], vec![det(0.5, 0.5, 2)], vec![]];
        let one = |fusion| {
            let m = merge(&mut per.clone(), &params(fusion, 3));
            assert_eq!(m.len(), 1, "{fusion:?}: {m:?}");
            m[0].score
        };
        assert!((one(Fusion::NoisyOr) - (1.0 - 0.4 * 0.5)).abs() < 1e-6);
        assert!((one(Fusion::Max) - 0.6).abs() < 1e-6);
        assert!((one(Fusion::Mean) - (0.6 + 0.5) / 3.0).abs() < 1e-6, "the silent detector votes 0");
    }

    #[test]
    fn mean_fusion_divides_a_tiles_only_find_by_the_primary_alone() {
        let p = params(Fusion::Mean, 2);
        let mut instances = Vec::new();
        let hit = Hit { detector: 0, pass: Pass::Tiles, class: 0, score: 0.8, bbox: BoxF::new(0.0, 0.0, 10.0, 10.0) };
        assert!(absorb(&mut instances, hit, &p, true));
        assert!((instances[0].score - 0.8).abs() < 1e-6, "only the primary looked at the tile");
        let full = Hit { pass: Pass::Full, ..hit };
        let mut instances = Vec::new();
        absorb(&mut instances, full, &p, true);
        assert!((instances[0].score - 0.4).abs() < 1e-6, "both detectors looked at the whole frame");
    }

    #[test]
    fn the_box_is_the_score_weighted_mean_of_each_detectors_best() {
        let a = Detection { bbox: BoxF::new(0.0, 0.0, 10.0, 10.0), score: 0.9, class: 1 };
        let b = Detection { bbox: BoxF::new(2.0, 0.0, 12.0, 10.0), score: 0.3, class: 1 };
        for fusion in [Fusion::NoisyOr, Fusion::Max, Fusion::Mean] {
            let m = merge(&mut [vec![a], vec![b]], &params(fusion, 2));
            assert!((m[0].bbox.x1 - 0.5).abs() < 1e-5, "{fusion:?}: {:?}", m[0].bbox);
        }
    }

    #[test]
    fn consolidate_merges_instances_that_drifted_together() {
        let p = MergeParams::default();
        let a = Instance { hits: smallvec::smallvec![Hit { detector: 0, pass: Pass::Full, class: 1, score: 0.9, bbox: BoxF::new(0.0, 0.0, 10.0, 10.0) }], class: 1, score: 0.9, bbox: BoxF::new(0.0, 0.0, 10.0, 10.0), alternatives: smallvec::SmallVec::new() };
        let b = Instance { hits: smallvec::smallvec![Hit { detector: 1, pass: Pass::Full, class: 1, score: 0.5, bbox: BoxF::new(1.0, 0.0, 11.0, 10.0) }], class: 1, score: 0.5, bbox: BoxF::new(1.0, 0.0, 11.0, 10.0), alternatives: smallvec::SmallVec::new() };
        let mut v = vec![b, a];
        consolidate(&mut v, &p);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hits.len(), 2);
    }

    /// The collecting implementation evidence and resolve replaced (one `Vec` of best hits per class, one of
    /// classes and one of scored classes per resolve): the oracle the allocation-free ones must equal. It checks
    /// which hits are each detector's best and how classes rank; the box arithmetic is the shared `weighted_box`.
    fn resolve_by_collecting(hits: &[Hit], params: &MergeParams) -> (usize, f32, BoxF, Vec<(usize, f32)>) {
        let evidence = |class: usize| {
            let mut best: Vec<&Hit> = Vec::new();
            for h in hits.iter().filter(|h| h.class == class) {
                match best.iter_mut().find(|b| b.detector == h.detector) {
                    Some(b) if b.score < h.score => *b = h,
                    Some(_) => {}
                    None => best.push(h),
                }
            }
            // the votes in detector order, as evidence takes them
            best.sort_by_key(|h| h.detector);
            let score = match params.fusion {
                Fusion::NoisyOr => 1.0 - best.iter().map(|h| 1.0 - h.score.clamp(0.0, 1.0)).product::<f32>(),
                Fusion::Max => best.iter().map(|h| h.score).fold(0.0, f32::max),
                Fusion::Mean => {
                    let looked = params.looked(best.len(), hits.iter().any(|h| h.pass == Pass::Full));
                    best.iter().map(|h| h.score.clamp(0.0, 1.0)).sum::<f32>() / looked as f32
                }
            };
            // the same weighted mean over the collected best hits
            (score, weighted_box(|| best.iter().copied()))
        };
        let mut classes: Vec<usize> = hits.iter().map(|h| h.class).collect();
        classes.sort_unstable();
        classes.dedup();
        let mut scored: Vec<(usize, f32, BoxF)> = classes.into_iter().map(|c| (c, evidence(c).0, evidence(c).1)).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (c, e, b) = scored[0];
        (c, e, b, scored.iter().skip(1).map(|&(c, e, _)| (c, e)).collect())
    }

    proptest::proptest! {
        #[test]
        fn resolve_equals_the_collecting_oracle(
            raw in proptest::collection::vec((0usize..3, 0.0f32..100.0, 0.01f32..1.0, 0usize..4, proptest::bool::ANY), 1..24),
            fusion in 0usize..3,
        ) {
            let fusion = [Fusion::NoisyOr, Fusion::Max, Fusion::Mean][fusion];
            let params = MergeParams { fusion, detectors: 3, ..MergeParams::default() };
            let hits: Vec<Hit> = raw
                .iter()
                .map(|&(detector, x, score, class, tiles)| Hit {
                    detector,
                    pass: if tiles { Pass::Tiles } else { Pass::Full },
                    class,
                    // coarse scores, so that one detector's hits often tie
                    score: (score * 4.0).round() / 4.0 + 0.01,
                    bbox: BoxF::new(x, x, x + 10.0 + score * 5.0, x + 20.0),
                })
                .collect();
            let mut inst = Instance { hits: hits.iter().copied().collect(), class: 0, score: 0.0, bbox: BoxF::new(0.0, 0.0, 0.0, 0.0), alternatives: smallvec::smallvec![(9, 0.9)] };
            resolve(&mut inst, &params);
            let (c, e, b, alts) = resolve_by_collecting(&hits, &params);
            proptest::prop_assert_eq!(inst.class, c);
            proptest::prop_assert!((inst.score - e).abs() < 1e-5, "{} vs {}", inst.score, e);
            for (p, q) in [(inst.bbox.x1, b.x1), (inst.bbox.y1, b.y1), (inst.bbox.x2, b.x2), (inst.bbox.y2, b.y2)] {
                proptest::prop_assert!((p - q).abs() < 1e-3, "box {:?} vs {:?}", inst.bbox, b);
            }
            proptest::prop_assert_eq!(inst.alternatives.len(), alts.len());
            for ((c1, e1), (c2, e2)) in inst.alternatives.iter().zip(&alts) {
                proptest::prop_assert_eq!(c1, c2);
                proptest::prop_assert!((e1 - e2).abs() < 1e-5);
            }
        }

        #[test]
        fn merge_invariants(a in proptest::collection::vec((0.0f32..200.0, 0.01f32..1.0, 0usize..3), 0..30),
                            b in proptest::collection::vec((0.0f32..200.0, 0.01f32..1.0, 0usize..3), 0..30)) {
            let to = |v: &Vec<(f32, f32, usize)>| v.iter().map(|&(x, s, c)| det(x, s, c)).collect::<Vec<_>>();
            let (da, db) = (to(&a), to(&b));
            let m = merge(&mut [da.clone(), db.clone()], &MergeParams::default());
            // every input hit ends up in an instance, itself or as a stronger hit of its detector and class; an
            // instance holds one hit per detector, class and pass
            let hits: usize = m.iter().map(|i| i.hits.len()).sum();
            proptest::prop_assert!(hits <= da.len() + db.len());
            proptest::prop_assert!(m.len() <= da.len() + db.len());
            for (k, dets) in [&da, &db].into_iter().enumerate() {
                for d in dets {
                    let held = m.iter().flat_map(|i| &i.hits).any(|h| h.detector == k && h.class == d.class && h.score >= d.score);
                    proptest::prop_assert!(held, "detector {}'s {:?} is lost", k, d);
                }
            }
            for i in &m {
                for (n, h) in i.hits.iter().enumerate() {
                    let twin = i.hits[n + 1..].iter().any(|o| o.detector == h.detector && o.class == h.class && o.pass == h.pass);
                    proptest::prop_assert!(!twin, "two hits of one detector, class and pass: {:?}", i.hits);
                }
            }
            for i in &m {
                proptest::prop_assert!(i.score >= 0.0 && i.score <= 1.0);
                // the merged score is at least the best single score of its class
                let best = i.hits.iter().filter(|h| h.class == i.class).map(|h| h.score).fold(0.0, f32::max);
                proptest::prop_assert!(i.score + 1e-6 >= best);
            }
        }
    }
}

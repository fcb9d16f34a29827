//! Stable instance ids across frames: detections are associated with tracks one to one by Kuhn–Munkres
//! (`score::assign`, from the pathfinding crate) on cost 1 − IoU, only between the same tag and at IoU ≥
//! `min_iou`. A track is born tentative and confirmed after `confirm_hits` consecutive hits; it dies after
//! `max_misses` frames without a hit (hysteresis both ways, so one missed detection does not renumber an
//! instance and one spurious detection does not create one). Ids are never reused.

use crate::math::assign::{min_cost_assignment, UNMATCHABLE};
use crate::math::iou;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackParams {
    pub min_iou: f64,
    pub confirm_hits: u32,
    pub max_misses: u32,
}

impl Default for TrackParams {
    fn default() -> Self {
        TrackParams { min_iou: 0.3, confirm_hits: 2, max_misses: 5 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u32,
    pub tag: String,
    pub bbox: [f64; 4],
    pub hits: u32,
    pub misses: u32,
    pub confirmed: bool,
}

/// One detection to associate: tag and normalised box.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    pub tag: &'a str,
    pub bbox: [f64; 4],
}

#[derive(Debug, Default)]
pub struct Tracker {
    params: TrackParams,
    tracks: Vec<Track>,
    next_id: u32,
    /// The association's working buffers, kept across frames so that a steady stream allocates only what the
    /// assignment solver itself does.
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct Scratch {
    costs: Vec<Vec<f64>>,
    assigned: Vec<Option<usize>>,
    hit: Vec<bool>,
}

impl Tracker {
    pub fn new(params: TrackParams) -> Tracker {
        Tracker { params, tracks: Vec::new(), next_id: 1, scratch: Scratch::default() }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Associates one frame's observations; returns the track id of each observation (every observation gets
    /// one: a new tentative track when nothing matches).
    pub fn update(&mut self, observations: &[Observation<'_>]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(observations.len());
        self.update_into(observations, &mut ids);
        ids
    }

    /// As [`Tracker::update`], writing the ids into `ids` (cleared first), so a caller that keeps the buffer
    /// allocates nothing for them.
    pub fn update_into(&mut self, observations: &[Observation<'_>], ids: &mut Vec<u32>) {
        let Scratch { costs, assigned, hit } = &mut self.scratch;
        // one row per track, refilled in place (a row keeps its capacity from frame to frame)
        costs.truncate(self.tracks.len());
        costs.resize_with(self.tracks.len(), Vec::new);
        for (row, t) in costs.iter_mut().zip(&self.tracks) {
            row.clear();
            row.extend(observations.iter().map(|o| {
                let v = iou(&t.bbox, &o.bbox);
                if t.tag == o.tag && v >= self.params.min_iou {
                    1.0 - v
                } else {
                    UNMATCHABLE
                }
            }));
        }
        assigned.clear();
        assigned.resize(observations.len(), None);
        for (t, o) in min_cost_assignment(costs) {
            if costs.get(t).and_then(|r| r.get(o)).is_some_and(|c| *c < UNMATCHABLE) {
                if let Some(slot) = assigned.get_mut(o) {
                    *slot = Some(t);
                }
            }
        }
        hit.clear();
        hit.resize(self.tracks.len(), false);
        ids.clear();
        for (o, a) in observations.iter().zip(assigned.iter()) {
            match a.and_then(|t| self.tracks.get_mut(t).map(|tr| (t, tr))) {
                Some((t, tr)) => {
                    tr.bbox = o.bbox;
                    tr.hits += 1;
                    tr.misses = 0;
                    tr.confirmed |= tr.hits >= self.params.confirm_hits;
                    if let Some(h) = hit.get_mut(t) {
                        *h = true;
                    }
                    ids.push(tr.id);
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let confirmed = self.params.confirm_hits <= 1;
                    self.tracks.push(Track { id, tag: o.tag.to_string(), bbox: o.bbox, hits: 1, misses: 0, confirmed });
                    ids.push(id);
                }
            }
        }
        for (tr, h) in self.tracks.iter_mut().zip(hit.iter().chain(std::iter::repeat(&true))) {
            if !h {
                tr.misses += 1;
                if !tr.confirmed {
                    tr.misses = self.params.max_misses + 1; // a tentative track missed once is gone
                }
            }
        }
        let max = self.params.max_misses;
        self.tracks.retain(|t| t.misses <= max);
    }

    /// Whether a track id is confirmed (and alive).
    pub fn is_confirmed(&self, id: u32) -> bool {
        self.tracks.iter().any(|t| t.id == id && t.confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(tag: &str, x: f64) -> Observation<'_> {
        Observation { tag, bbox: [x, 0.1, x + 0.2, 0.5] }
    }

    #[test]
    fn ids_are_stable_under_motion_and_a_missed_frame() {
        let mut t = Tracker::new(TrackParams::default());
        let a = t.update(&[obs("dog", 0.1), obs("cat", 0.6)]);
        let b = t.update(&[obs("cat", 0.62), obs("dog", 0.12)]);
        assert_eq!((b[0], b[1]), (a[1], a[0]), "order of detections does not matter");
        assert!(t.is_confirmed(a[0]) && t.is_confirmed(a[1]));
        // the dog is missed for two frames, then seen again: same id
        t.update(&[obs("cat", 0.63)]);
        t.update(&[obs("cat", 0.64)]);
        let c = t.update(&[obs("dog", 0.14), obs("cat", 0.65)]);
        assert_eq!(c, vec![a[0], a[1]]);
    }

    #[test]
    fn tags_do_not_swap_and_dead_ids_are_not_reused() {
        let mut t = Tracker::new(TrackParams { max_misses: 1, ..TrackParams::default() });
        let a = t.update(&[obs("dog", 0.1)]);
        t.update(&[obs("dog", 0.1)]);
        // a cat exactly where the dog was is a new instance
        let b = t.update(&[obs("cat", 0.1)]);
        assert_ne!(a[0], b[0]);
        t.update(&[]);
        t.update(&[]);
        let c = t.update(&[obs("dog", 0.1)]);
        assert!(c[0] > b[0], "a new id after death");
    }

    #[test]
    fn one_spurious_detection_never_confirms() {
        let mut t = Tracker::new(TrackParams::default());
        let a = t.update(&[obs("kite", 0.5)]);
        assert!(!t.is_confirmed(a[0]));
        t.update(&[]);
        assert!(t.tracks().is_empty());
    }
}

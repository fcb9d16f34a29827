//! Verbs from tracks: how each tracked person or vehicle moves, and the moments worth saying (entered, left,
//! started moving, stopped). Speeds are measured over a short window of the track's boxes, in the entity's own
//! size per second (body heights for people, box widths for vehicles: a size every camera distance shares), with
//! the camera's own motion (the median displacement of every tracked entity, when there are enough of them)
//! taken out, and states change only past a start threshold and back below a lower stop threshold (hysteresis).
//! A still image says none of this: only stream records carry motion.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Tags that move as vehicles.
const VEHICLES: &[&str] = &["car", "truck", "bus", "motorcycle", "bicycle", "train", "boat", "airplane"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MotionState {
    /// A person not moving.
    StandingStill,
    Walking,
    Running,
    /// A vehicle.
    Moving,
    Stopped,
}

impl MotionState {
    pub fn moving(self) -> bool {
        matches!(self, MotionState::Walking | MotionState::Running | MotionState::Moving)
    }

    /// The verb a caption uses ("walks"), present tense, third person.
    pub fn verb(self) -> &'static str {
        match self {
            MotionState::StandingStill => "stands still",
            MotionState::Walking => "walks",
            MotionState::Running => "runs",
            MotionState::Moving => "moves",
            MotionState::Stopped => "is stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Left,
    Right,
    /// Growing in the frame: coming closer.
    Towards,
    /// Shrinking: going away.
    Away,
}

impl Direction {
    pub fn phrase(self) -> &'static str {
        match self {
            Direction::Left => "to the left",
            Direction::Right => "to the right",
            Direction::Towards => "towards the camera",
            Direction::Away => "away from the camera",
        }
    }
}

/// A frame edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
    Top,
    Bottom,
}

/// How one tracked entity moves now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Motion {
    pub state: MotionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Smoothed speed in sizes per second (body heights for people, box widths for vehicles), the camera's
    /// motion taken out.
    pub speed: f32,
    /// Growth of the box's size per second (relative; > 0 coming closer).
    pub growth: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MotionEventKind {
    Entered,
    Left,
    StartedMoving,
    Stopped,
}

/// A moment in a track's motion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionEvent {
    pub id: u32,
    pub tag: String,
    pub kind: MotionEventKind,
    /// Entered from, or left through, this edge (none: appeared or vanished inside the frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MotionParams {
    /// The window speeds are measured over (seconds).
    pub window_s: f64,
    /// People: walking from this speed (body heights per second), standing still again below `still_below`.
    pub walk_from: f32,
    pub still_below: f32,
    /// People: running from this speed, walking again below `run_below`.
    pub run_from: f32,
    pub run_below: f32,
    /// Vehicles: moving from this speed (box widths per second), stopped again below `stop_below`.
    pub move_from: f32,
    pub stop_below: f32,
    /// Smoothing of the measured speed (weight of the newest measurement).
    pub smoothing: f32,
    /// A box within this fraction of the frame from an edge touches it (entered from / left through it).
    pub edge: f64,
    /// The camera's motion is taken out only when at least this many entities are tracked.
    pub min_for_camera: usize,
}

impl Default for MotionParams {
    fn default() -> Self {
        MotionParams {
            window_s: 1.0,
            walk_from: 0.3,
            still_below: 0.15,
            run_from: 1.8,
            run_below: 1.3,
            move_from: 0.15,
            stop_below: 0.07,
            smoothing: 0.4,
            edge: 0.03,
            min_for_camera: 3,
        }
    }
}

/// One tracked entity in one frame: its track id, tag and normalised box.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting<'a> {
    pub id: u32,
    pub tag: &'a str,
    pub bbox: [f64; 4],
}

struct TrackMotion {
    tag: String,
    /// (time s, box in pixels) over the window.
    history: VecDeque<(f64, [f64; 4])>,
    speed: f32,
    /// Smoothed sideways velocity (sizes per second, camera taken out; < 0 leftwards).
    sideways: f32,
    growth: f32,
    state: Option<MotionState>,
    last_box: [f64; 4],
}

/// Motion of every tracked person and vehicle, frame by frame.
#[derive(Default)]
pub struct MotionTracker {
    params: MotionParams,
    tracks: BTreeMap<u32, TrackMotion>,
    /// The time of the first frame with anything in it: what is there within half a window of it was already in
    /// view when the stream started, and did not enter.
    start_s: Option<f64>,
}

/// How far a box moved from `a` to `b` (pixels, x and y) in a `w × h` frame: by its centre, or where the frame
/// cuts it (an edge within `margin` pixels of the border, in either box) by its other edge, which the cut does not
/// move.
fn shift(a: &[f64; 4], b: &[f64; 4], w: f64, h: f64, margin: f64) -> (f64, f64) {
    let axis = |(a_lo, a_hi): (f64, f64), (b_lo, b_hi): (f64, f64), size: f64| {
        let cut_lo = a_lo <= margin || b_lo <= margin;
        let cut_hi = a_hi >= size - margin || b_hi >= size - margin;
        match (cut_lo, cut_hi) {
            (true, false) => b_hi - a_hi,
            (false, true) => b_lo - a_lo,
            _ => 0.5 * (b_lo + b_hi) - 0.5 * (a_lo + a_hi),
        }
    };
    let [ax1, ay1, ax2, ay2] = *a;
    let [bx1, by1, bx2, by2] = *b;
    (axis((ax1, ax2), (bx1, bx2), w), axis((ay1, ay2), (by1, by2), h))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v.get(n / 2).copied().unwrap_or(0.0)
    } else {
        0.5 * (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0))
    }
}

/// The frame edge a normalised box touches, the nearest if several.
fn edge_of(b: &[f64; 4], margin: f64) -> Option<Side> {
    let d = [(Side::Left, b[0]), (Side::Top, b[1]), (Side::Right, 1.0 - b[2]), (Side::Bottom, 1.0 - b[3])];
    d.into_iter().filter(|(_, v)| *v <= margin).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(s, _)| s)
}

impl MotionTracker {
    pub fn new(params: MotionParams) -> MotionTracker {
        MotionTracker { params, tracks: BTreeMap::new(), start_s: None }
    }

    /// The motion of track `id` now, if it is a person or vehicle seen long enough to measure.
    pub fn motion(&self, id: u32) -> Option<Motion> {
        let t = self.tracks.get(&id)?;
        let state = t.state?;
        let direction = state.moving().then(|| direction(t));
        Some(Motion { state, direction, speed: t.speed, growth: t.growth })
    }

    /// One frame at time `t_s` (seconds) of a `width × height` stream: the confirmed entities seen in it; `alive`
    /// tells whether a track not seen in this frame still lives (missed for a frame or two, it has not left).
    /// Events are appended to `out`: departures first, then arrivals and changes.
    pub fn update(&mut self, t_s: f64, width: u32, height: u32, seen: &[Sighting<'_>], alive: impl Fn(u32) -> bool, out: &mut Vec<MotionEvent>) {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let px = |b: &[f64; 4]| [b[0] * w, b[1] * h, b[2] * w, b[3] * h];
        let p = self.params;
        let margin = p.edge * w.min(h);
        // tracks gone: left through the edge they last touched (or vanished inside the frame)
        let gone: Vec<u32> = self.tracks.keys().copied().filter(|id| !seen.iter().any(|s| s.id == *id) && !alive(*id)).collect();
        for id in gone {
            if let Some(t) = self.tracks.remove(&id) {
                let side = edge_of(&[t.last_box[0] / w, t.last_box[1] / h, t.last_box[2] / w, t.last_box[3] / h], p.edge);
                out.push(MotionEvent { id, tag: t.tag, kind: MotionEventKind::Left, side });
            }
        }
        // the camera's motion over the window: the median displacement, in pixels per second, of every entity
        // tracked long enough
        let shifts: Vec<(f64, f64)> = seen
            .iter()
            .filter_map(|s| {
                let t = self.tracks.get(&s.id)?;
                let (t0, b0) = t.history.front()?;
                let dt = t_s - t0;
                (dt > 0.0).then(|| {
                    let (dx, dy) = shift(b0, &px(&s.bbox), w, h, margin);
                    (dx / dt, dy / dt)
                })
            })
            .collect();
        let camera = if shifts.len() >= p.min_for_camera {
            (median(shifts.iter().map(|s| s.0).collect()), median(shifts.iter().map(|s| s.1).collect()))
        } else {
            (0.0, 0.0)
        };
        let start = *self.start_s.get_or_insert(t_s);
        let at_start = t_s - start <= 0.5 * p.window_s;
        for s in seen {
            let b = px(&s.bbox);
            let person = s.tag == "person";
            let vehicle = VEHICLES.contains(&s.tag);
            let t = self.tracks.entry(s.id).or_insert_with(|| {
                if !at_start {
                    out.push(MotionEvent {
                        id: s.id,
                        tag: s.tag.to_string(),
                        kind: MotionEventKind::Entered,
                        side: edge_of(&s.bbox, p.edge),
                    });
                }
                TrackMotion {
                    tag: s.tag.to_string(),
                    history: VecDeque::new(),
                    speed: 0.0,
                    sideways: 0.0,
                    growth: 0.0,
                    state: None,
                    last_box: b,
                }
            });
            t.last_box = b;
            t.history.push_back((t_s, b));
            while t.history.len() > 2 && t.history.front().is_some_and(|(t0, _)| t_s - t0 > p.window_s) {
                t.history.pop_front();
            }
            if !(person || vehicle) {
                continue;
            }
            let Some(&(t0, b0)) = t.history.front() else { continue };
            let dt = t_s - t0;
            // measure once the window is at least half full
            if dt < 0.5 * p.window_s {
                continue;
            }
            let (dx, dy) = shift(&b0, &b, w, h, margin);
            let (vx, vy) = (dx / dt - camera.0, dy / dt - camera.1);
            let size = if person { 0.5 * ((b0[3] - b0[1]) + (b[3] - b[1])) } else { 0.5 * ((b0[2] - b0[0]) + (b[2] - b[0])) };
            let speed = (vx.hypot(vy) / size.max(1.0)) as f32;
            let (h0, h1) = ((b0[3] - b0[1]).max(1.0), (b[3] - b[1]).max(1.0));
            let growth = ((h1 / h0).ln() / dt) as f32;
            // moving towards or away also counts: a size change of 1 size per second at the same place
            let speed = speed.max(growth.abs());
            let sideways = (vx / size.max(1.0)) as f32;
            let a = p.smoothing;
            let smooth = |new: f32, old: f32| a * new + (1.0 - a) * old;
            (t.speed, t.sideways, t.growth) = if t.state.is_none() {
                (speed, sideways, growth)
            } else {
                (smooth(speed, t.speed), smooth(sideways, t.sideways), smooth(growth, t.growth))
            };
            let before = t.state;
            t.state = Some(next_state(before, person, t.speed, &p));
            if let (Some(b), Some(n)) = (before, t.state) {
                if !b.moving() && n.moving() {
                    out.push(MotionEvent { id: s.id, tag: s.tag.to_string(), kind: MotionEventKind::StartedMoving, side: None });
                } else if b.moving() && !n.moving() {
                    out.push(MotionEvent { id: s.id, tag: s.tag.to_string(), kind: MotionEventKind::Stopped, side: None });
                }
            }
        }
    }
}

/// The state after `before` at smoothed `speed`, with hysteresis.
fn next_state(before: Option<MotionState>, person: bool, speed: f32, p: &MotionParams) -> MotionState {
    use MotionState::*;
    if !person {
        return match before {
            Some(Moving) if speed >= p.stop_below => Moving,
            _ if speed >= p.move_from => Moving,
            _ => Stopped,
        };
    }
    match before {
        Some(Running) if speed >= p.run_below => Running,
        _ if speed >= p.run_from => Running,
        Some(Walking | Running) if speed >= p.still_below => Walking,
        _ if speed >= p.walk_from => Walking,
        _ => StandingStill,
    }
}

/// The direction of a moving track: sideways or in depth, whichever moves it more (sizes per second, smoothed,
/// the camera's motion taken out).
fn direction(t: &TrackMotion) -> Direction {
    let (sideways, depth) = (t.sideways, t.growth);
    if sideways.abs() >= depth.abs() {
        if sideways < 0.0 {
            Direction::Left
        } else {
            Direction::Right
        }
    } else if depth > 0.0 {
        Direction::Towards
    } else {
        Direction::Away
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person 0.2 of the frame tall walking right at `v` body heights per second, seen at 10 fps.
    fn walk(m: &mut MotionTracker, frames: usize, x0: f64, v: f64, out: &mut Vec<MotionEvent>) {
        for i in 0..frames {
            let t = i as f64 / 10.0;
            let x = x0 + v * 0.2 * t; // frame is square: 0.2 of the width = one body height
            m.update(t, 1000, 1000, &[Sighting { id: 1, tag: "person", bbox: [x, 0.5, x + 0.08, 0.7] }], |_| false, out);
        }
    }

    #[test]
    fn a_walker_walks_to_the_right_and_a_runner_runs() {
        let mut m = MotionTracker::new(MotionParams::default());
        let mut ev = Vec::new();
        walk(&mut m, 20, 0.3, 0.8, &mut ev);
        let s = m.motion(1).unwrap();
        assert_eq!((s.state, s.direction), (MotionState::Walking, Some(Direction::Right)), "{s:?}");
        assert!((s.speed - 0.8).abs() < 0.05, "{s:?}");
        assert!(ev.is_empty(), "in view from the start: it did not enter, and it kept walking: {ev:?}");
        let mut m = MotionTracker::new(MotionParams::default());
        walk(&mut m, 20, 0.3, 2.5, &mut Vec::new());
        assert_eq!(m.motion(1).map(|s| s.state), Some(MotionState::Running));
        let mut m = MotionTracker::new(MotionParams::default());
        walk(&mut m, 20, 0.3, 0.0, &mut Vec::new());
        assert_eq!(m.motion(1).map(|s| (s.state, s.direction)), Some((MotionState::StandingStill, None)));
    }

    #[test]
    fn jitter_below_the_stop_threshold_keeps_a_walker_walking_and_a_stop_is_an_event() {
        let mut m = MotionTracker::new(MotionParams::default());
        let mut ev = Vec::new();
        walk(&mut m, 20, 0.3, 0.8, &mut ev);
        // slowing to 0.2 body heights per second: under the walking threshold, over the stop threshold
        for i in 20..40 {
            let t = i as f64 / 10.0;
            let x = 0.3 + 0.8 * 0.2 * 2.0 + 0.2 * 0.2 * (t - 2.0);
            m.update(t, 1000, 1000, &[Sighting { id: 1, tag: "person", bbox: [x, 0.5, x + 0.08, 0.7] }], |_| false, &mut ev);
        }
        assert_eq!(m.motion(1).map(|s| s.state), Some(MotionState::Walking));
        assert!(!ev.iter().any(|e| e.kind == MotionEventKind::Stopped));
        // standing
        for i in 40..60 {
            let x = 0.3 + 0.8 * 0.2 * 2.0 + 0.2 * 0.2 * 2.0;
            m.update(i as f64 / 10.0, 1000, 1000, &[Sighting { id: 1, tag: "person", bbox: [x, 0.5, x + 0.08, 0.7] }], |_| false, &mut ev);
        }
        assert_eq!(m.motion(1).map(|s| s.state), Some(MotionState::StandingStill));
        assert_eq!(ev.iter().filter(|e| e.kind == MotionEventKind::Stopped).count(), 1, "{ev:?}");
    }

    #[test]
    fn growing_is_coming_closer_and_edges_name_where_tracks_enter_and_leave() {
        let mut m = MotionTracker::new(MotionParams::default());
        let mut ev = Vec::new();
        // the stream starts empty; the car comes in a second later
        m.update(0.0, 1000, 1000, &[], |_| false, &mut ev);
        for i in 0..20 {
            let t = 1.0 + i as f64 / 10.0;
            let h = 0.2 * (1.0 + 0.5 * (t - 1.0)); // 50 % taller per second, in place
            m.update(t, 1000, 1000, &[Sighting { id: 7, tag: "car", bbox: [0.0, 0.5, 2.0 * h, 0.5 + h] }], |_| false, &mut ev);
        }
        let s = m.motion(7).unwrap();
        assert_eq!((s.state, s.direction), (MotionState::Moving, Some(Direction::Towards)), "{s:?}");
        assert_eq!(ev.first().map(|e| (e.kind, e.side)), Some((MotionEventKind::Entered, Some(Side::Left))));
        m.update(3.1, 1000, 1000, &[], |_| false, &mut ev);
        assert_eq!(ev.last().map(|e| (e.kind, e.side)), Some((MotionEventKind::Left, Some(Side::Left))));
    }

    #[test]
    fn a_camera_pan_moves_nothing() {
        // four still things and a person, all shifting left together as the camera pans right
        let mut m = MotionTracker::new(MotionParams::default());
        for i in 0..20 {
            let t = i as f64 / 10.0;
            let dx = -0.1 * t;
            let seen: Vec<Sighting<'_>> = (0..5u32)
                .map(|k| {
                    let x = 0.3 + 0.1 * f64::from(k) + dx;
                    Sighting { id: k + 1, tag: if k == 0 { "person" } else { "car" }, bbox: [x, 0.4, x + 0.08, 0.6] }
                })
                .collect();
            m.update(t, 1000, 1000, &seen, |_| false, &mut Vec::new());
        }
        for id in 1..=5 {
            let s = m.motion(id).unwrap();
            assert!(!s.state.moving(), "{id}: {s:?}");
        }
    }
}

//! People's keypoints (17 COCO joints) and the posture their geometry shows: standing, sitting, lying, bending,
//! crouching, or unknown when the joints it needs are not visible. Never from a box's aspect ratio.

use smallvec::SmallVec;
use serde::{Deserialize, Serialize};

/// Keypoints per person (COCO order).
pub const JOINTS: usize = 17;

/// The 17 COCO keypoints, in the order pose models give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Joint {
    Nose,
    LeftEye,
    RightEye,
    LeftEar,
    RightEar,
    LeftShoulder,
    RightShoulder,
    LeftElbow,
    RightElbow,
    LeftWrist,
    RightWrist,
    LeftHip,
    RightHip,
    LeftKnee,
    RightKnee,
    LeftAnkle,
    RightAnkle,
}

impl Joint {
    pub const ALL: [Joint; JOINTS] = [
        Joint::Nose,
        Joint::LeftEye,
        Joint::RightEye,
        Joint::LeftEar,
        Joint::RightEar,
        Joint::LeftShoulder,
        Joint::RightShoulder,
        Joint::LeftElbow,
        Joint::RightElbow,
        Joint::LeftWrist,
        Joint::RightWrist,
        Joint::LeftHip,
        Joint::RightHip,
        Joint::LeftKnee,
        Joint::RightKnee,
        Joint::LeftAnkle,
        Joint::RightAnkle,
    ];

    /// Position in the model's output (and in [`Joint::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Joint::Nose => "nose",
            Joint::LeftEye => "left_eye",
            Joint::RightEye => "right_eye",
            Joint::LeftEar => "left_ear",
            Joint::RightEar => "right_ear",
            Joint::LeftShoulder => "left_shoulder",
            Joint::RightShoulder => "right_shoulder",
            Joint::LeftElbow => "left_elbow",
            Joint::RightElbow => "right_elbow",
            Joint::LeftWrist => "left_wrist",
            Joint::RightWrist => "right_wrist",
            Joint::LeftHip => "left_hip",
            Joint::RightHip => "right_hip",
            Joint::LeftKnee => "left_knee",
            Joint::RightKnee => "right_knee",
            Joint::LeftAnkle => "left_ankle",
            Joint::RightAnkle => "right_ankle",
        }
    }
}

/// The limbs drawn as a skeleton (COCO's own pairs).
pub const SKELETON: [(Joint, Joint); 16] = [
    (Joint::LeftAnkle, Joint::LeftKnee),
    (Joint::LeftKnee, Joint::LeftHip),
    (Joint::RightAnkle, Joint::RightKnee),
    (Joint::RightKnee, Joint::RightHip),
    (Joint::LeftHip, Joint::RightHip),
    (Joint::LeftShoulder, Joint::LeftHip),
    (Joint::RightShoulder, Joint::RightHip),
    (Joint::LeftShoulder, Joint::RightShoulder),
    (Joint::LeftShoulder, Joint::LeftElbow),
    (Joint::RightShoulder, Joint::RightElbow),
    (Joint::LeftElbow, Joint::LeftWrist),
    (Joint::RightElbow, Joint::RightWrist),
    (Joint::LeftEye, Joint::RightEye),
    (Joint::Nose, Joint::LeftEye),
    (Joint::Nose, Joint::RightEye),
    (Joint::LeftEar, Joint::LeftShoulder),
];

/// One keypoint as JSON writes it: `x`, `y` normalised to the image, the model's confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Keypoint {
    pub name: Joint,
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

/// A keypoint in image pixels, as models and geometry use it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

/// How a person's keypoints were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoseSource {
    /// The pose model on the whole frame.
    Frame,
    /// The pose model on the person's widened box.
    Crop,
    /// In a stream between pose runs: the same person's keypoints on the last run, moved with the box.
    Carried,
}

/// Where a person's keypoints came from and how sure the model was of the person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoseInfo {
    pub score: f32,
    pub source: PoseSource,
    /// Keypoints at or above the visibility score.
    pub visible: u8,
    /// The visibility score: keypoints below it are not used.
    pub threshold: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Posture {
    Standing,
    Sitting,
    Lying,
    Bending,
    Crouching,
    Unknown,
}

impl Posture {
    /// The participle used in captions ("a person standing"), none for unknown.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Posture::Standing => Some("standing"),
            Posture::Sitting => Some("sitting"),
            Posture::Lying => Some("lying down"),
            Posture::Bending => Some("bending over"),
            Posture::Crouching => Some("crouching"),
            Posture::Unknown => None,
        }
    }
}

/// The measurements a posture was decided from (absent: the joints it needs were not visible). Angles in
/// degrees, lengths in torso lengths (mid-shoulder to mid-hip).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PostureEvidence {
    /// The torso's angle from upright (0 upright, 90 horizontal, 180 upside down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torso: Option<f32>,
    /// Each visible thigh's angle from hanging straight down, the more upright one (a standing leg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thigh_min: Option<f32>,
    /// The same, the more raised one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thigh_max: Option<f32>,
    /// The straighter knee's inner angle (180 straight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_max: Option<f32>,
    /// The more bent knee's inner angle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_min: Option<f32>,
    /// The longer visible thigh's length in image (short when foreshortened: a seated person facing the camera).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thigh_length: Option<f32>,
    /// How far the hips lie above the ankles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hip_height: Option<f32>,
    /// The person rides a mount (the riding relation's box evidence): seated astride, whatever the legs show.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub riding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostureAttr {
    pub posture: Posture,
    pub evidence: PostureEvidence,
}

/// Thresholds of the posture rules (degrees and torso lengths).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostureParams {
    /// Torso within this of upright is upright.
    pub upright: f32,
    /// Torso beyond this from upright is horizontal.
    pub horizontal: f32,
    /// A thigh raised beyond this from hanging is raised (sitting, crouching).
    pub raised_thigh: f32,
    /// A standing leg: thigh within this of hanging.
    pub hanging_thigh: f32,
    /// Standing: the other thigh within this of hanging too (a stride, not a raised knee).
    pub stride_thigh: f32,
    /// A standing leg's knee at least this straight.
    pub straight_knee: f32,
    /// Thighs shorter than this (torso lengths) are foreshortened: a seated person facing the camera.
    pub short_thigh: f32,
    /// Crouching: a knee bent beyond this, with hips lower than `low_hips` above the ankles.
    pub deep_knee: f32,
    pub low_hips: f32,
    /// Hips lower than this above the ankles sit on the surface the feet are on (knees up), not crouch.
    pub seated_hips: f32,
}

impl Default for PostureParams {
    fn default() -> Self {
        PostureParams {
            upright: 30.0,
            horizontal: 60.0,
            raised_thigh: 45.0,
            hanging_thigh: 30.0,
            stride_thigh: 50.0,
            straight_knee: 140.0,
            short_thigh: 0.45,
            deep_knee: 100.0,
            low_hips: 0.7,
            seated_hips: 0.25,
        }
    }
}

fn dist(a: Point, b: Point) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// Angle in degrees between `v` and `reference` (both non-zero).
fn angle_between(v: (f32, f32), reference: (f32, f32)) -> Option<f32> {
    let n = (v.0.hypot(v.1)) * (reference.0.hypot(reference.1));
    if n <= f32::EPSILON || !n.is_finite() {
        return None;
    }
    let c = ((v.0 * reference.0 + v.1 * reference.1) / n).clamp(-1.0, 1.0);
    Some(c.acos().to_degrees())
}

/// The mean position of `points`, scored by the weakest of them; None without points.
pub(super) fn mid(points: &[Point]) -> Option<Point> {
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f32;
    Some(Point {
        x: points.iter().map(|p| p.x).sum::<f32>() / n,
        y: points.iter().map(|p| p.y).sum::<f32>() / n,
        score: points.iter().map(|p| p.score).fold(f32::INFINITY, f32::min),
    })
}

fn min_max(v: &[f32]) -> (Option<f32>, Option<f32>) {
    let min = v.iter().copied().reduce(f32::min);
    let max = v.iter().copied().reduce(f32::max);
    (min, max)
}

/// The torso's mid-shoulder and mid-hip from whichever shoulders and hips are visible.
pub fn torso(kp: &[Point; JOINTS], visible: f32) -> Option<(Point, Point)> {
    let seen = |j: Joint| kp.get(j.index()).copied().filter(|p| p.score >= visible);
    // two joints each, on the stack: this runs for every person of every frame
    let shoulders: SmallVec<[Point; 2]> = [Joint::LeftShoulder, Joint::RightShoulder].into_iter().filter_map(seen).collect();
    let hips: SmallVec<[Point; 2]> = [Joint::LeftHip, Joint::RightHip].into_iter().filter_map(seen).collect();
    Some((mid(&shoulders)?, mid(&hips)?))
}

/// The measurements of [`PostureEvidence`] from keypoints in image pixels.
pub fn measure(kp: &[Point; JOINTS], visible: f32) -> PostureEvidence {
    let seen = |j: Joint| kp.get(j.index()).copied().filter(|p| p.score >= visible);
    let mut ev = PostureEvidence::default();
    let torso_pts = torso(kp, visible);
    let torso_len = torso_pts.map(|(s, h)| dist(s, h)).filter(|l| *l > 1.0);
    if let Some((s, h)) = torso_pts {
        ev.torso = angle_between((s.x - h.x, s.y - h.y), (0.0, -1.0));
    }
    // at most one value a leg each
    type Two = SmallVec<[f32; 2]>;
    let (mut thighs, mut knees, mut lengths, mut heights) = (Two::new(), Two::new(), Two::new(), Two::new());
    for (hip, knee, ankle) in [
        (Joint::LeftHip, Joint::LeftKnee, Joint::LeftAnkle),
        (Joint::RightHip, Joint::RightKnee, Joint::RightAnkle),
    ] {
        let (Some(h), Some(k)) = (seen(hip), seen(knee)) else { continue };
        thighs.extend(angle_between((k.x - h.x, k.y - h.y), (0.0, 1.0)));
        if let Some(t) = torso_len {
            lengths.push(dist(h, k) / t);
        }
        if let Some(a) = seen(ankle) {
            knees.extend(angle_between((h.x - k.x, h.y - k.y), (a.x - k.x, a.y - k.y)));
            if let Some(t) = torso_len {
                heights.push((a.y - h.y) / t);
            }
        }
    }
    (ev.thigh_min, ev.thigh_max) = min_max(&thighs);
    (ev.knee_min, ev.knee_max) = min_max(&knees);
    ev.thigh_length = min_max(&lengths).1;
    ev.hip_height = min_max(&heights).1;
    ev
}

/// The posture the keypoints show (see [`PostureParams`] for the thresholds):
/// - torso horizontal: lying, unless a leg hangs straight below hips high over the ankles (bending over);
/// - torso leaning: bending when a leg hangs straight, crouching or sitting when the thighs are raised;
/// - torso upright: crouching when both thighs are raised, a knee is deeply bent and the hips are low (but not
///   level with the feet: that is sitting with the knees up); sitting when both thighs are raised, or
///   foreshortened (a seated person facing the camera); standing when a leg hangs straight with a straight knee
///   and the other is no more than a stride from hanging;
/// - anything else, or no torso, or no knee visible: unknown.
///
/// A keypoint counts when its score is at least `visible`.
pub fn classify(kp: &[Point; JOINTS], visible: f32, p: &PostureParams) -> PostureAttr {
    let ev = measure(kp, visible);
    let unknown = PostureAttr { posture: Posture::Unknown, evidence: ev };
    let Some(torso) = ev.torso else { return unknown };
    let (Some(thigh_min), Some(thigh_max)) = (ev.thigh_min, ev.thigh_max) else {
        // legs unseen: only a horizontal torso says anything (lying)
        let posture = if torso >= p.horizontal && torso <= 180.0 - p.horizontal { Posture::Lying } else { Posture::Unknown };
        return PostureAttr { posture, evidence: ev };
    };
    let hanging = thigh_min <= p.hanging_thigh && thigh_max <= p.stride_thigh;
    let straight = ev.knee_max.is_none_or(|k| k >= p.straight_knee);
    let raised = thigh_min >= p.raised_thigh;
    let crouched = raised
        && ev.knee_min.is_some_and(|k| k <= p.deep_knee)
        && ev.hip_height.is_some_and(|h| h <= p.low_hips && h >= p.seated_hips);
    let foreshortened = ev.thigh_length.is_some_and(|l| l < p.short_thigh);
    let posture = if torso >= p.horizontal {
        if hanging && straight && ev.hip_height.is_some_and(|h| h >= 1.0) {
            Posture::Bending
        } else {
            Posture::Lying
        }
    } else if torso > p.upright {
        if hanging && straight && !foreshortened {
            Posture::Bending
        } else if crouched {
            Posture::Crouching
        } else if raised || foreshortened {
            Posture::Sitting
        } else {
            Posture::Unknown
        }
    } else if crouched {
        Posture::Crouching
    } else if raised || (foreshortened && thigh_max < 90.0) {
        Posture::Sitting
    } else if hanging && straight {
        Posture::Standing
    } else {
        Posture::Unknown
    };
    PostureAttr { posture, evidence: ev }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body from named joints (image pixels, y down); the rest invisible.
    fn body(points: &[(Joint, f32, f32)]) -> [Point; JOINTS] {
        let mut kp = [Point::default(); JOINTS];
        for &(j, x, y) in points {
            kp[j.index()] = Point { x, y, score: 0.9 };
        }
        kp
    }

    fn standing() -> [Point; JOINTS] {
        body(&[
            (Joint::LeftShoulder, 90.0, 100.0),
            (Joint::RightShoulder, 110.0, 100.0),
            (Joint::LeftHip, 92.0, 160.0),
            (Joint::RightHip, 108.0, 160.0),
            (Joint::LeftKnee, 92.0, 210.0),
            (Joint::RightKnee, 108.0, 210.0),
            (Joint::LeftAnkle, 92.0, 260.0),
            (Joint::RightAnkle, 108.0, 260.0),
        ])
    }

    fn posture(kp: &[Point; JOINTS]) -> Posture {
        classify(kp, 0.25, &PostureParams::default()).posture
    }

    #[test]
    fn upright_with_straight_legs_is_standing() {
        let a = classify(&standing(), 0.25, &PostureParams::default());
        assert_eq!(a.posture, Posture::Standing);
        assert!(a.evidence.torso.is_some_and(|t| t < 1.0), "{a:?}");
        assert!(a.evidence.knee_max.is_some_and(|k| k > 179.0), "{a:?}");
        assert!(a.evidence.hip_height.is_some_and(|h| (h - 100.0 / 60.0).abs() < 1e-3), "{a:?}");
    }

    #[test]
    fn raised_thighs_sit_and_deep_knees_with_low_hips_crouch() {
        // seated in profile: thighs forward (horizontal), shins down
        let seated = body(&[
            (Joint::LeftShoulder, 100.0, 100.0),
            (Joint::LeftHip, 100.0, 160.0),
            (Joint::LeftKnee, 150.0, 162.0),
            (Joint::LeftAnkle, 150.0, 210.0),
        ]);
        assert_eq!(posture(&seated), Posture::Sitting);
        // squatting: knees folded, hips just above the ankles
        let squat = body(&[
            (Joint::LeftShoulder, 100.0, 100.0),
            (Joint::LeftHip, 100.0, 160.0),
            (Joint::LeftKnee, 140.0, 150.0),
            (Joint::LeftAnkle, 110.0, 190.0),
        ]);
        assert_eq!(posture(&squat), Posture::Crouching);
        // the same knees with the hips down at the feet's level: sitting on the ground, knees up
        let mut knees_up = squat;
        knees_up[Joint::LeftAnkle.index()].y = 165.0;
        assert_eq!(posture(&knees_up), Posture::Sitting);
        // one knee raised, one leg straight down: not standing (a step up, a kneel), and not enough for more
        let step = body(&[
            (Joint::LeftShoulder, 100.0, 100.0),
            (Joint::LeftHip, 100.0, 160.0),
            (Joint::RightHip, 100.0, 160.0),
            (Joint::LeftKnee, 100.0, 210.0),
            (Joint::LeftAnkle, 100.0, 260.0),
            (Joint::RightKnee, 140.0, 150.0),
        ]);
        assert_eq!(posture(&step), Posture::Unknown);
        // seated facing the camera: thighs point at the viewer, short in the image
        let facing = body(&[
            (Joint::LeftShoulder, 90.0, 100.0),
            (Joint::RightShoulder, 110.0, 100.0),
            (Joint::LeftHip, 92.0, 160.0),
            (Joint::RightHip, 108.0, 160.0),
            (Joint::LeftKnee, 90.0, 175.0),
            (Joint::RightKnee, 110.0, 175.0),
            (Joint::LeftAnkle, 90.0, 225.0),
            (Joint::RightAnkle, 110.0, 225.0),
        ]);
        assert_eq!(posture(&facing), Posture::Sitting);
    }

    #[test]
    fn a_horizontal_torso_lies_unless_it_bends_over_straight_legs() {
        let lying = body(&[
            (Joint::LeftShoulder, 100.0, 200.0),
            (Joint::LeftHip, 160.0, 205.0),
            (Joint::LeftKnee, 210.0, 205.0),
            (Joint::LeftAnkle, 260.0, 208.0),
        ]);
        assert_eq!(posture(&lying), Posture::Lying);
        // torso forward over legs that stand straight
        let bending = body(&[
            (Joint::LeftShoulder, 100.0, 150.0),
            (Joint::LeftHip, 160.0, 145.0),
            (Joint::LeftKnee, 160.0, 200.0),
            (Joint::LeftAnkle, 160.0, 255.0),
        ]);
        assert_eq!(posture(&bending), Posture::Bending);
        // lying with the legs out of view
        let torso_only = body(&[(Joint::LeftShoulder, 100.0, 200.0), (Joint::LeftHip, 160.0, 204.0)]);
        assert_eq!(posture(&torso_only), Posture::Lying);
    }

    #[test]
    fn missing_joints_leave_the_posture_unknown() {
        // upper body only: a portrait says nothing about the legs
        let portrait = body(&[(Joint::LeftShoulder, 90.0, 100.0), (Joint::RightShoulder, 110.0, 100.0), (Joint::LeftHip, 92.0, 160.0)]);
        let a = classify(&portrait, 0.25, &PostureParams::default());
        assert_eq!(a.posture, Posture::Unknown);
        assert!(a.evidence.torso.is_some() && a.evidence.thigh_min.is_none());
        // no torso at all
        let mut legs = standing();
        for j in [Joint::LeftShoulder, Joint::RightShoulder] {
            legs[j.index()].score = 0.1;
        }
        assert_eq!(posture(&legs), Posture::Unknown);
        // a low-score joint is not seen
        let mut weak = standing();
        for p in weak.iter_mut() {
            p.score = 0.2;
        }
        assert_eq!(posture(&weak), Posture::Unknown);
    }

    #[test]
    fn joints_serialise_by_name_in_model_order() {
        for (i, j) in Joint::ALL.iter().enumerate() {
            assert_eq!(j.index(), i);
            assert_eq!(serde_json::to_value(j).ok(), Some(serde_json::Value::String(j.name().into())));
        }
    }
}

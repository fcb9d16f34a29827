//! Relations between entities from geometry alone: spatial (left/right, above/below, on top of, inside, next to,
//! overlapping), part-whole (only for region pairs that are parts by definition), scale (larger than) and a
//! few actions where geometry is real evidence for them (a person seated over a bicycle, motorcycle, horse or
//! elephant rides it; a person holding or next to a frisbee, kite, ball, racket, bat or glove plays with it), and
//! actions read from a person's keypoints (sitting on, lying on, holding, carrying), each carrying the
//! measurements that justified it.

use super::pose::{Joint, Point, Posture};
use super::{Entity, Kind};
use crate::geometry::BoxF;
use crate::perceive::masks::RleLookup;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Predicate {
    LeftOf,
    RightOf,
    Above,
    Below,
    OnTopOf,
    Inside,
    PartOf,
    NextTo,
    Overlapping,
    LargerThan,
    Riding,
    PlayingWith,
    SittingOn,
    LyingOn,
    Holding,
    Carrying,
}

impl Predicate {
    /// The verb phrase used in captions: "A is {phrase} B".
    pub fn phrase(self) -> &'static str {
        match self {
            Predicate::LeftOf => "to the left of",
            Predicate::RightOf => "to the right of",
            Predicate::Above => "above",
            Predicate::Below => "below",
            Predicate::OnTopOf => "on",
            Predicate::Inside => "within",
            Predicate::PartOf => "part of",
            Predicate::NextTo => "next to",
            Predicate::Overlapping => "overlapping",
            Predicate::LargerThan => "larger than",
            Predicate::Riding => "riding",
            Predicate::PlayingWith => "playing with",
            Predicate::SittingOn => "sitting on",
            Predicate::LyingOn => "lying on",
            Predicate::Holding => "holding",
            Predicate::Carrying => "carrying",
        }
    }

    pub fn kind(self) -> RelationKind {
        match self {
            Predicate::PartOf => RelationKind::PartWhole,
            Predicate::LargerThan => RelationKind::Scale,
            Predicate::Riding
            | Predicate::PlayingWith
            | Predicate::SittingOn
            | Predicate::LyingOn
            | Predicate::Holding
            | Predicate::Carrying => RelationKind::Action,
            _ => RelationKind::Spatial,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationKind {
    Spatial,
    PartWhole,
    Scale,
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    pub subject: u32,
    pub predicate: Predicate,
    pub object: u32,
    pub kind: RelationKind,
    /// For actions: the geometry that supports the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<ActionEvidence>,
}

impl Relation {
    pub fn new(subject: u32, predicate: Predicate, object: u32) -> Self {
        Relation { subject, predicate, object, kind: predicate.kind(), evidence: None }
    }
}

/// The measurements behind an action relation, all relative to the subject (the person).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActionEvidence {
    /// Horizontal overlap of the two boxes over the person's width.
    pub overlap: f32,
    /// Where the person's lower edge lies down the object's height (0 its top edge, 1 its bottom edge).
    pub seat: f32,
    /// Gap between the two boxes in person heights (0 when they touch or intersect).
    pub gap: f32,
    /// Fraction of the object's box inside the person's box.
    pub held: f32,
    /// For actions read from keypoints: the body part and how it meets the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<PoseEvidence>,
}

/// The part of a body whose keypoints support an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyPart {
    LeftWrist,
    RightWrist,
    LeftElbow,
    RightElbow,
    LeftShoulder,
    RightShoulder,
    /// The middle of the visible hips.
    Hips,
    /// The middle of the visible shoulders and hips.
    Torso,
}

/// How a body part meets the object of an action.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoseEvidence {
    pub part: BodyPart,
    /// The person's posture when the action was read.
    pub posture: Posture,
    /// From the part to the object's box (0 inside), in person heights.
    pub distance: f32,
    /// Where the part lies down the object's box (0 its top edge, 1 its bottom edge; outside: below 0 or above 1).
    pub depth: f32,
    /// The lowest keypoint score behind the part.
    pub score: f32,
}

/// Vehicles and animals a person seated over is riding.
const RIDDEN: &[&str] = &["bicycle", "motorcycle", "horse", "elephant"];
/// Objects held in the hand while playing.
const HELD_TOYS: &[&str] = &["tennis racket", "baseball bat", "baseball glove"];
/// Objects thrown, kicked or flown while playing.
const FLOWN_TOYS: &[&str] = &["frisbee", "sports ball", "kite"];

fn gap_between(a: &BoxF, b: &BoxF) -> f32 {
    let dx = (a.x1.max(b.x1) - a.x2.min(b.x2)).max(0.0);
    let dy = (a.y1.max(b.y1) - a.y2.min(b.y2)).max(0.0);
    (dx * dx + dy * dy).sqrt()
}

fn evidence(person: &BoxF, object: &BoxF) -> ActionEvidence {
    let ph = person.height().max(1.0);
    ActionEvidence {
        overlap: horizontal_overlap(person, object) / person.width().max(1.0),
        seat: (person.y2 - object.y1) / object.height().max(1.0),
        gap: gap_between(person, object) / ph,
        held: object.covered_by(person),
        pose: None,
    }
}

/// Does the geometry of `person` and `object` support `predicate`? Thresholds are loose enough for seated riders
/// seen from the side or behind and tight enough to leave people standing beside a horse or a bicycle alone.
fn action_holds(predicate: Predicate, object_tag: &str, person: &BoxF, object: &BoxF, e: &ActionEvidence) -> bool {
    match predicate {
        Predicate::Riding => {
            let animal = matches!(object_tag, "horse" | "elephant");
            // the rider's head is above the mount's top, the rider sits over it and the feet end within its
            // height (a standing person's feet reach the ground line of an animal; on a bicycle they reach the
            // pedals, near the wheels' bottom, so the rider must also be short relative to the bicycle)
            let seated = if animal { e.seat >= 0.15 && e.seat <= 0.85 } else { e.seat >= 0.3 && e.seat <= 1.05 };
            let proportion = person.height() <= 2.6 * object.height();
            e.overlap >= 0.5 && person.y1 < object.y1 && seated && proportion
        }
        Predicate::PlayingWith if HELD_TOYS.contains(&object_tag) => e.held >= 0.3 || e.gap <= 0.15,
        Predicate::PlayingWith if object_tag == "kite" => {
            // a kite flies above its flier, within a few body heights sideways
            let ph = person.height().max(1.0);
            object.y2 < person.y1 + 0.5 * ph && (object.centre().0 - person.centre().0).abs() <= 3.0 * ph
        }
        Predicate::PlayingWith => e.held >= 0.3 || e.gap <= 1.0,
        _ => false,
    }
}

/// Action relations: each ridden mount or toy goes to the one person whose geometry supports it best (nearest);
/// each person rides at most one mount and plays with at most one toy (a flier holds one kite line).
fn actions(entities: &[Entity]) -> Vec<Relation> {
    let people: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Thing && e.tag == "person").collect();
    let mut out: Vec<Relation> = Vec::new();
    for o in entities.iter().filter(|e| e.kind == Kind::Thing) {
        let predicate = if RIDDEN.contains(&&*o.tag) {
            Predicate::Riding
        } else if HELD_TOYS.contains(&&*o.tag) || FLOWN_TOYS.contains(&&*o.tag) {
            Predicate::PlayingWith
        } else {
            continue;
        };
        let ob = o.bbox();
        let best = people
            .iter()
            .filter(|p| !out.iter().any(|r| r.subject == p.id && r.predicate == predicate))
            .map(|p| (p, evidence(&p.bbox(), &ob)))
            .filter(|(p, e)| action_holds(predicate, &o.tag, &p.bbox(), &ob, e))
            .min_by(|(pa, ea), (pb, eb)| {
                let d = |p: &Entity| {
                    let ((px, py), (ox, oy)) = (p.bbox().centre(), ob.centre());
                    ((px - ox).powi(2) + (py - oy).powi(2)).sqrt()
                };
                ea.gap.total_cmp(&eb.gap).then(d(pa).total_cmp(&d(pb)))
            });
        if let Some((p, e)) = best {
            out.push(Relation { evidence: Some(e), ..Relation::new(p.id, predicate, o.id) });
        }
    }
    out
}

/// Things a sitting person's hips rest on.
const SEATS: &[&str] = &["chair", "couch", "bench", "bed", "toilet", "motorcycle", "bicycle"];
/// Things a lying person's torso rests on.
const BEDS: &[&str] = &["bed", "couch", "bench"];
/// Stuff people sit or lie on.
const GROUND_STUFF: &[&str] = &["grass", "sand", "floor", "earth", "field", "rug", "snow", "road", "sidewalk"];
/// Things held in a hand.
const HOLDABLE: &[&str] = &[
    "cup", "bottle", "wine glass", "cell phone", "umbrella", "tennis racket", "baseball bat", "baseball glove", "knife",
    "fork", "spoon", "remote", "book", "toothbrush", "scissors", "hair drier", "teddy bear", "frisbee", "sports ball",
    "banana", "apple", "orange", "sandwich", "hot dog", "donut", "mouse",
];
/// Things carried on a shoulder or back, or by hand.
const CARRIED: &[&str] = &["backpack", "handbag", "suitcase"];

/// A hand touches an object when the wrist lies within this many person heights of its box.
const TOUCH: f32 = 0.05;

/// How far `p` lies from box `b` (0 inside), in pixels.
fn point_gap(p: Point, b: &BoxF) -> f32 {
    let dx = (b.x1 - p.x).max(p.x - b.x2).max(0.0);
    let dy = (b.y1 - p.y).max(p.y - b.y2).max(0.0);
    dx.hypot(dy)
}

/// The middle of the visible joints among `joints`, with their lowest score.
fn middle(person: &Entity, joints: &[Joint], width: u32, height: u32) -> Option<Point> {
    let pts: Vec<Point> = joints.iter().filter_map(|j| person.joint(*j, width, height)).collect();
    super::pose::mid(&pts)
}

fn pose_evidence(person: &Entity, object: &BoxF, part: BodyPart, at: Point, posture: Posture) -> ActionEvidence {
    let ph = person.bbox().height().max(1.0);
    ActionEvidence {
        pose: Some(PoseEvidence {
            part,
            posture,
            distance: point_gap(at, object) / ph,
            depth: (at.y - object.y1) / object.height().max(1.0),
            score: at.score,
        }),
        ..evidence(&person.bbox(), object)
    }
}

/// Where a resting body part (hips, torso) lies on a support: horizontally within its box (5 % slack) and
/// between `top` and `bottom` of its height.
fn rests_on(at: Point, b: &BoxF, top: f32, bottom: f32) -> bool {
    let slack = 0.05 * b.width();
    let depth = (at.y - b.y1) / b.height().max(1.0);
    at.x >= b.x1 - slack && at.x <= b.x2 + slack && depth >= top && depth <= bottom
}

/// The ground stuff at `at` or a little below it (within `below` pixels), if any.
fn ground_under<'a>(at: Point, below: f32, stuff: &[(&'a Entity, &RleLookup)]) -> Option<&'a Entity> {
    [0.0, 0.5, 1.0].iter().find_map(|f| {
        let (x, y) = (at.x.max(0.0) as u32, (at.y + f * below).max(0.0) as u32);
        stuff.iter().find(|(_, m)| m.get(x, y)).map(|(s, _)| *s)
    })
}

/// Actions read from people's keypoints, for pairs the box-based actions (`taken`) leave free:
/// - sitting on: a sitting person whose hips rest in the upper part of a seat's box, or on ground stuff when
///   the hips are near the ankles' height (sitting on the ground);
/// - lying on: a lying person whose torso rests on a bed, couch or bench, or on ground stuff;
/// - holding: a wrist on or within [`TOUCH`] of a hand-held object's box (each wrist holds one object, each
///   object is held by one person, the nearest wrist);
/// - carrying: a backpack, handbag or suitcase touched by a shoulder or hand (a backpack also when it covers the
///   torso's middle).
fn pose_actions(entities: &[Entity], masks: &BTreeMap<u32, RleLookup>, width: u32, height: u32, taken: &[Relation]) -> Vec<Relation> {
    let people: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Thing && e.tag == "person" && e.pose.is_some()).collect();
    let things: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Thing && e.tag != "person").collect();
    let ground: Vec<(&Entity, &RleLookup)> = entities
        .iter()
        .filter(|e| e.kind == Kind::Stuff && GROUND_STUFF.contains(&&*e.tag))
        .filter_map(|e| Some((e, masks.get(&e.id)?)))
        .collect();
    let free = |o: &Entity| !taken.iter().any(|r| r.object == o.id);
    let mut out: Vec<Relation> = Vec::new();
    for p in &people {
        let posture = p.attributes.posture.map_or(Posture::Unknown, |a| a.posture);
        if taken.iter().any(|r| r.subject == p.id && r.predicate == Predicate::Riding) {
            continue;
        }
        let ph = p.bbox().height().max(1.0);
        let (predicate, part, at, supports): (Predicate, BodyPart, Option<Point>, &[&str]) = match posture {
            Posture::Sitting => {
                (Predicate::SittingOn, BodyPart::Hips, middle(p, &[Joint::LeftHip, Joint::RightHip], width, height), SEATS)
            }
            Posture::Lying => (
                Predicate::LyingOn,
                BodyPart::Torso,
                middle(p, &[Joint::LeftShoulder, Joint::RightShoulder, Joint::LeftHip, Joint::RightHip], width, height),
                BEDS,
            ),
            _ => continue,
        };
        let Some(at) = at else { continue };
        let (top, bottom) = if predicate == Predicate::SittingOn { (-0.15, 0.8) } else { (-0.1, 1.0) };
        let seat = things
            .iter()
            .filter(|o| supports.contains(&&*o.tag) && free(o) && rests_on(at, &o.bbox(), top, bottom))
            .min_by(|a, b| {
                let d = |o: &Entity| (o.bbox().centre().0 - at.x).abs() / o.bbox().width().max(1.0);
                d(a).total_cmp(&d(b))
            });
        if let Some(o) = seat {
            let ev = pose_evidence(p, &o.bbox(), part, at, posture);
            out.push(Relation { evidence: Some(ev), ..Relation::new(p.id, predicate, o.id) });
            continue;
        }
        // on the ground: a seated person's hips near the ankles' height (legs out, cross-legged), or a body lying
        let low = predicate == Predicate::LyingOn
            || p.attributes.posture.and_then(|a| a.evidence.hip_height).is_some_and(|h| h <= 0.5);
        if let Some(s) = ground_under(at, 0.05 * ph, &ground).filter(|_| low) {
            let ev = pose_evidence(p, &s.bbox(), part, at, posture);
            out.push(Relation { evidence: Some(ev), ..Relation::new(p.id, predicate, s.id) });
        }
    }
    // hands and shoulders on objects: every (person, part, object) within reach, nearest first
    let mut reach: Vec<(f32, usize, BodyPart, Point, usize, Predicate)> = Vec::new();
    let parts = [
        (BodyPart::LeftWrist, Joint::LeftWrist),
        (BodyPart::RightWrist, Joint::RightWrist),
        (BodyPart::LeftElbow, Joint::LeftElbow),
        (BodyPart::RightElbow, Joint::RightElbow),
        (BodyPart::LeftShoulder, Joint::LeftShoulder),
        (BodyPart::RightShoulder, Joint::RightShoulder),
    ];
    for (pi, p) in people.iter().enumerate() {
        let ph = p.bbox().height().max(1.0);
        let torso = middle(p, &[Joint::LeftShoulder, Joint::RightShoulder, Joint::LeftHip, Joint::RightHip], width, height);
        for (oi, o) in things.iter().enumerate().filter(|(_, o)| free(o)) {
            let ob = o.bbox();
            let tag = &*o.tag;
            let (predicate, allowed): (Predicate, &[BodyPart]) = if HOLDABLE.contains(&tag) {
                // a hand-held object is smaller than its holder (an umbrella's canopy need not be)
                if tag != "umbrella" && ob.area() > p.bbox().area() {
                    continue;
                }
                (Predicate::Holding, &[BodyPart::LeftWrist, BodyPart::RightWrist])
            } else if CARRIED.contains(&tag) {
                let by: &[BodyPart] = match tag {
                    "suitcase" => &[BodyPart::LeftWrist, BodyPart::RightWrist],
                    "backpack" => &[BodyPart::LeftShoulder, BodyPart::RightShoulder],
                    _ => &[
                        BodyPart::LeftWrist,
                        BodyPart::RightWrist,
                        BodyPart::LeftElbow,
                        BodyPart::RightElbow,
                        BodyPart::LeftShoulder,
                        BodyPart::RightShoulder,
                    ],
                };
                (Predicate::Carrying, by)
            } else {
                continue;
            };
            for (part, joint) in parts.iter().filter(|(part, _)| allowed.contains(part)) {
                let Some(at) = p.joint(*joint, width, height) else { continue };
                let d = point_gap(at, &ob) / ph;
                if d <= TOUCH {
                    reach.push((d, pi, *part, at, oi, predicate));
                }
            }
            if tag == "backpack" {
                if let Some(t) = torso.filter(|t| point_gap(*t, &ob) == 0.0) {
                    reach.push((0.0, pi, BodyPart::Torso, t, oi, predicate));
                }
            }
        }
    }
    reach.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.4.cmp(&b.4)));
    let mut used_parts: Vec<(usize, BodyPart)> = Vec::new();
    let mut used_objects: Vec<usize> = Vec::new();
    for (_, pi, part, at, oi, predicate) in reach {
        if used_objects.contains(&oi) || used_parts.contains(&(pi, part)) {
            continue;
        }
        let (Some(p), Some(o)) = (people.get(pi), things.get(oi)) else { continue };
        used_objects.push(oi);
        used_parts.push((pi, part));
        let posture = p.attributes.posture.map_or(Posture::Unknown, |a| a.posture);
        let ev = pose_evidence(p, &o.bbox(), part, at, posture);
        out.push(Relation { evidence: Some(ev), ..Relation::new(p.id, predicate, o.id) });
    }
    out
}

/// Stuff that things stand or lie on.
const SUPPORT_STUFF: &[&str] =
    &["floor", "road", "grass", "sidewalk", "earth", "field", "rug", "sand", "snow", "table", "bed", "shelf"];
/// Things that other things rest on.
const SUPPORT_THINGS: &[&str] = &["dining table", "bed", "couch", "chair", "bench", "desk", "car", "truck", "suitcase"];
/// Things that are never "on" furniture merely because their box lies within its outline.
const NOT_HELD: &[&str] = &["person", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "chair"];
/// Stuff that surrounds what is in it (a bird within the sky, a boat within the water).
const CONTAINER_STUFF: &[&str] = &["sky", "water", "sea", "tree", "grass", "field"];
/// (part, whole) region pairs that are parts by definition.
const PART_WHOLE: &[(&str, &str)] =
    &[("windowpane", "building"), ("windowpane", "house"), ("door", "building"), ("door", "house")];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RelationParams {
    /// Relations kept per entity (its strongest, nearest ones).
    pub per_entity: usize,
    /// Relations kept per image.
    pub max_total: usize,
}

impl Default for RelationParams {
    fn default() -> Self {
        RelationParams { per_entity: 3, max_total: 64 }
    }
}

fn horizontal_overlap(a: &BoxF, b: &BoxF) -> f32 {
    (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0)
}

fn vertical_overlap(a: &BoxF, b: &BoxF) -> f32 {
    (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0)
}

/// The one spatial predicate that best describes `a` relative to thing `b`, if any.
fn thing_thing(a: &Entity, b: &Entity) -> Option<Predicate> {
    let (ba, bb) = (a.bbox(), b.bbox());
    // one box inside another says only that they overlap in the picture, except for a small object within the
    // outline of furniture that holds things (a bowl on a dining table)
    if ba.covered_by(&bb) >= 0.9 && ba.area() < 0.5 * bb.area() {
        let holder = ["dining table", "bed", "couch", "bench", "desk"].contains(&&*b.tag);
        let held = ba.area() < 0.15 * bb.area() && !NOT_HELD.contains(&&*a.tag);
        return Some(if holder && held { Predicate::OnTopOf } else { Predicate::Overlapping });
    }
    let hov = horizontal_overlap(&ba, &bb);
    // a rests on b: its bottom edge lies in the upper part of b, it is mostly over b, and b is a support
    if SUPPORT_THINGS.contains(&&*b.tag)
        && ba.area() < bb.area()
        && hov >= 0.6 * ba.width()
        && ba.y2 >= bb.y1 - 0.05 * bb.height()
        && ba.y2 <= bb.y1 + 0.4 * bb.height()
        && ba.centre().1 < bb.y1 + 0.25 * bb.height()
    {
        return Some(Predicate::OnTopOf);
    }
    let iou = ba.iou(&bb);
    let small = ba.area().min(bb.area()).max(1.0);
    if iou >= 0.1 || ba.intersection(&bb) >= 0.3 * small {
        return Some(Predicate::Overlapping);
    }
    let vov = vertical_overlap(&ba, &bb);
    let (acx, acy) = ba.centre();
    let (bcx, bcy) = bb.centre();
    let dx = (acx - bcx).abs() / (ba.width() + bb.width()).max(1.0);
    let dy = (acy - bcy).abs() / (ba.height() + bb.height()).max(1.0);
    if dx >= dy {
        let gap = if acx < bcx { bb.x1 - ba.x2 } else { ba.x1 - bb.x2 };
        let side = ba.width().min(bb.width());
        if vov >= 0.5 * ba.height().min(bb.height()) && gap <= 0.5 * side {
            return Some(Predicate::NextTo);
        }
        Some(if acx < bcx { Predicate::LeftOf } else { Predicate::RightOf })
    } else {
        Some(if acy < bcy { Predicate::Above } else { Predicate::Below })
    }
}

/// How `a` (a thing) relates to stuff region `s`, whose mask `mask` answers point queries.
fn thing_stuff(a: &Entity, s: &Entity, mask: &RleLookup, width: u32, height: u32) -> Option<Predicate> {
    let b = a.bbox().clamp(width as f32, height as f32);
    // the support under the thing: the row just below its bottom edge, middle half of its width
    if SUPPORT_STUFF.contains(&&*s.tag) {
        let y = (b.y2 as u32).min(height.saturating_sub(1));
        let ys = [y, (y + 3).min(height.saturating_sub(1)), y.saturating_sub(3)];
        let (x0, x1) = ((b.x1 + 0.25 * b.width()) as u32, (b.x2 - 0.25 * b.width()) as u32);
        let mut hits = 0;
        let mut total = 0;
        for &yy in &ys {
            for x in (x0..=x1.max(x0)).step_by(((x1 - x0.min(x1)) / 8).max(1) as usize) {
                total += 1;
                if mask.get(x, yy) {
                    hits += 1;
                }
            }
        }
        if total > 0 && hits * 2 >= total {
            return Some(Predicate::OnTopOf);
        }
    }
    if CONTAINER_STUFF.contains(&&*s.tag) {
        // most of the ring just outside the box belongs to the stuff
        let ring = [
            ((b.x1 - 3.0).max(0.0), b.centre().1),
            ((b.x2 + 3.0).min(width as f32 - 1.0), b.centre().1),
            (b.centre().0, (b.y1 - 3.0).max(0.0)),
            (b.centre().0, (b.y2 + 3.0).min(height as f32 - 1.0)),
        ];
        let inside = ring.iter().filter(|(x, y)| mask.get(*x as u32, *y as u32)).count();
        if inside >= 3 {
            return Some(Predicate::Inside);
        }
    }
    None
}

fn stuff_stuff(a: &Entity, b: &Entity) -> Option<Predicate> {
    if PART_WHOLE.contains(&(&*a.tag, &*b.tag)) && a.bbox().covered_by(&b.bbox()) >= 0.8 {
        return Some(Predicate::PartOf);
    }
    None
}

/// Ranks candidate relations: containment and support first, then nearness.
fn strength(p: Predicate) -> u8 {
    match p {
        Predicate::Riding
        | Predicate::PlayingWith
        | Predicate::SittingOn
        | Predicate::LyingOn
        | Predicate::Holding
        | Predicate::Carrying => 0,
        Predicate::PartOf => 0,
        Predicate::OnTopOf => 1,
        Predicate::Inside => 2,
        Predicate::Overlapping => 3,
        Predicate::NextTo => 4,
        _ => 5,
    }
}

/// Relations among `entities`, bounded per entity and in total. Returns the relations and how many were dropped.
pub fn relate(entities: &[Entity], width: u32, height: u32, params: &RelationParams) -> (Vec<Relation>, u32) {
    let mut out: Vec<Relation> = Vec::new();
    // each stuff mask is indexed once (its run ends, not a full frame) and queried by point; things' masks are
    // never read here
    let masks: BTreeMap<u32, RleLookup> = entities
        .iter()
        .filter(|e| e.kind == Kind::Stuff)
        .filter_map(|e| Some((e.id, RleLookup::new(e.mask.as_ref()?)?)))
        .collect();
    let diag = ((width as f32).powi(2) + (height as f32).powi(2)).sqrt().max(1.0);
    let mut dropped = 0u32;
    let mut acts = actions(entities);
    let from_pose = pose_actions(entities, &masks, width, height, &acts);
    acts.extend(from_pose);
    // one candidate list for every entity in turn (emptied as it is taken)
    let mut cands: Vec<(u8, f32, Relation)> = Vec::new();
    for a in entities {
        for r in acts.iter().filter(|r| r.subject == a.id) {
            cands.push((strength(r.predicate), 0.0, *r));
        }
        for b in entities.iter().filter(|b| b.id != a.id) {
            // an action between the two says more than where they are
            if acts.iter().any(|r| (r.subject, r.object) == (a.id, b.id) || (r.subject, r.object) == (b.id, a.id)) {
                continue;
            }
            let p = match (a.kind, b.kind) {
                (Kind::Thing, Kind::Thing) => thing_thing(a, b),
                (Kind::Thing, Kind::Stuff) => masks.get(&b.id).and_then(|m| thing_stuff(a, b, m, width, height)),
                (Kind::Stuff, Kind::Stuff) => stuff_stuff(a, b),
                (Kind::Stuff, Kind::Thing) => None,
            };
            let Some(p) = p else { continue };
            // each symmetric pair is stated once, from the entity with the smaller id
            let symmetric = matches!(p, Predicate::NextTo | Predicate::Overlapping);
            let mirrored = matches!(p, Predicate::RightOf | Predicate::Below);
            if (symmetric && a.id > b.id) || mirrored {
                continue;
            }
            let (acx, acy) = a.bbox().centre();
            let (bcx, bcy) = b.bbox().centre();
            let dist = ((acx - bcx).powi(2) + (acy - bcy).powi(2)).sqrt() / diag;
            cands.push((strength(p), dist, Relation::new(a.id, p, b.id)));
            // scale: the same kind of thing at clearly different sizes
            if a.kind == Kind::Thing && a.tag == b.tag && a.bbox().area() >= 1.8 * b.bbox().area() {
                let p = Predicate::LargerThan;
                cands.push((6, dist, Relation::new(a.id, p, b.id)));
            }
        }
        cands.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        dropped += cands.len().saturating_sub(params.per_entity) as u32;
        out.extend(cands.drain(..).take(params.per_entity).map(|c| c.2));
    }
    if out.len() > params.max_total {
        dropped += (out.len() - params.max_total) as u32;
        out.truncate(params.max_total);
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(id: u32, tag: &str, kind: Kind, b: [f32; 4]) -> Entity {
        crate::scene::test_entity(id, tag, kind, b, 0.1, crate::scene::Position::Centre)
    }

    fn find(r: &[Relation], s: u32, o: u32) -> Option<Predicate> {
        r.iter().find(|x| x.subject == s && x.object == o).map(|x| x.predicate)
    }

    #[test]
    fn left_right_above_next_to() {
        let es = vec![
            ent(1, "dog", Kind::Thing, [0.0, 50.0, 20.0, 70.0]),
            ent(2, "cat", Kind::Thing, [80.0, 50.0, 100.0, 70.0]),
            ent(3, "kite", Kind::Thing, [80.0, 0.0, 100.0, 10.0]),
            ent(4, "dog", Kind::Thing, [22.0, 52.0, 40.0, 70.0]),
        ];
        let (r, _) = relate(&es, 100, 100, &RelationParams { per_entity: 10, max_total: 100 });
        assert_eq!(find(&r, 1, 2), Some(Predicate::LeftOf));
        assert_eq!(find(&r, 2, 1), None, "the mirror is not stated twice");
        assert_eq!(find(&r, 3, 2), Some(Predicate::Above));
        assert_eq!(find(&r, 1, 4), Some(Predicate::NextTo));
        assert!(r.iter().all(|x| x.predicate != Predicate::LargerThan || x.subject != 4));
    }

    #[test]
    fn cup_on_table_and_dog_on_grass() {
        let mut grass = ent(9, "grass", Kind::Stuff, [0.0, 60.0, 100.0, 100.0]);
        let bits = (0..100 * 100).map(|i| i / 100 >= 60).collect();
        grass.mask = Some(crate::perceive::masks::Mask { width: 100, height: 100, bits }.to_rle());
        let es = vec![
            ent(1, "cup", Kind::Thing, [40.0, 20.0, 50.0, 32.0]),
            ent(2, "dining table", Kind::Thing, [20.0, 30.0, 80.0, 55.0]),
            ent(3, "dog", Kind::Thing, [0.0, 40.0, 15.0, 70.0]),
            grass,
        ];
        let (r, _) = relate(&es, 100, 100, &RelationParams::default());
        assert_eq!(find(&r, 1, 2), Some(Predicate::OnTopOf));
        assert_eq!(find(&r, 3, 9), Some(Predicate::OnTopOf));
        assert!(r.iter().all(|x| x.kind != RelationKind::PartWhole), "no part-whole without a defined pair");
    }

    #[test]
    fn containment_is_on_for_held_objects_and_overlap_otherwise() {
        let es = vec![
            ent(1, "bowl", Kind::Thing, [40.0, 60.0, 50.0, 68.0]),
            ent(2, "dining table", Kind::Thing, [0.0, 40.0, 100.0, 100.0]),
            ent(3, "person", Kind::Thing, [5.0, 60.0, 20.0, 95.0]),
            ent(4, "kite", Kind::Thing, [60.0, 50.0, 70.0, 60.0]),
        ];
        let (r, _) = relate(&es, 100, 100, &RelationParams { per_entity: 10, max_total: 100 });
        assert_eq!(find(&r, 1, 2), Some(Predicate::OnTopOf));
        assert_eq!(find(&r, 3, 2).or(find(&r, 2, 3)), Some(Predicate::Overlapping), "a person is not on the table");
        assert!(r.iter().all(|x| x.predicate != Predicate::Inside), "no thing is within another thing");
    }

    #[test]
    fn larger_than_and_bounds() {
        let es = vec![
            ent(1, "horse", Kind::Thing, [0.0, 0.0, 60.0, 60.0]),
            ent(2, "horse", Kind::Thing, [70.0, 0.0, 90.0, 20.0]),
        ];
        let (r, _) = relate(&es, 100, 100, &RelationParams::default());
        assert!(r.iter().any(|x| x.subject == 1 && x.object == 2 && x.predicate == Predicate::LargerThan));
        let (r, dropped) = relate(&es, 100, 100, &RelationParams { per_entity: 1, max_total: 1 });
        assert_eq!(r.len(), 1);
        assert!(dropped >= 1);
    }

    #[test]
    fn riders_ride_and_people_beside_a_horse_do_not() {
        let es = vec![
            ent(1, "horse", Kind::Thing, [100.0, 100.0, 200.0, 200.0]),
            // seated: head above the horse, feet halfway down its flank
            ent(2, "person", Kind::Thing, [130.0, 60.0, 170.0, 150.0]),
            ent(3, "horse", Kind::Thing, [300.0, 100.0, 400.0, 200.0]),
            // standing beside it: feet on the ground line
            ent(4, "person", Kind::Thing, [280.0, 90.0, 320.0, 200.0]),
            ent(5, "frisbee", Kind::Thing, [450.0, 100.0, 470.0, 110.0]),
            ent(6, "person", Kind::Thing, [480.0, 80.0, 520.0, 200.0]),
        ];
        let (r, _) = relate(&es, 600, 300, &RelationParams::default());
        let riding = r.iter().find(|x| x.predicate == Predicate::Riding).unwrap();
        assert_eq!((riding.subject, riding.object, riding.kind), (2, 1, RelationKind::Action));
        let ev = riding.evidence.unwrap();
        assert!(ev.overlap >= 0.99 && (0.4..0.6).contains(&ev.seat), "{ev:?}");
        assert_eq!(r.iter().filter(|x| x.predicate == Predicate::Riding).count(), 1, "{r:?}");
        assert!(r.iter().all(|x| !(x.subject == 4 && x.object == 3 && x.kind == RelationKind::Action)));
        let play = r.iter().find(|x| x.predicate == Predicate::PlayingWith).unwrap();
        assert_eq!((play.subject, play.object), (6, 5));
        assert!(r.iter().all(|x| x.evidence.is_some() == (x.kind == RelationKind::Action)));
        // no spatial relation is stated for a pair an action already describes
        assert!(!r.iter().any(|x| (x.subject, x.object) == (2, 1) && x.kind != RelationKind::Action));
    }

    #[test]
    fn one_kite_per_flier_and_only_above_them() {
        let es = vec![
            ent(1, "person", Kind::Thing, [100.0, 200.0, 120.0, 260.0]),
            ent(2, "kite", Kind::Thing, [150.0, 20.0, 170.0, 40.0]),
            ent(3, "kite", Kind::Thing, [60.0, 30.0, 80.0, 50.0]),
            ent(4, "kite", Kind::Thing, [300.0, 250.0, 320.0, 270.0]),
        ];
        let (r, _) = relate(&es, 400, 300, &RelationParams { per_entity: 10, max_total: 100 });
        let plays: Vec<_> = r.iter().filter(|x| x.predicate == Predicate::PlayingWith).collect();
        assert_eq!(plays.len(), 1, "{plays:?}");
        assert_ne!(plays[0].object, 4, "a kite on the ground beside nobody is not flown");
    }
}

//! Entity events: one message per change of a tracked entity, for consumers that want changes rather than
//! snapshots (a fleet's back office, an alarm rule). An entity is *new* when its track is confirmed, *updated*
//! when what a person would notice changed since the state last reported — its attributes (colour, size,
//! position on the 3 × 3 grid, text), its relations, or its box (IoU with the reported box below
//! [`EventParams::moved_iou`]) — and *ended* when its track dies. Score jitter and small box moves are not
//! changes, and a change must hold for [`EventParams::confirm_frames`] frames in a row (a relation that flickers
//! between "next to" and "overlapping" from frame to frame is not reported each time). Every event carries the
//! state before and after, and the entity's start (and end) time.

use crate::scene::attributes::{ColourName, Position, SizeClass};
use crate::scene::Entity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    New,
    Update,
    End,
}

/// The attributes an event reports (the discrete ones: an area fraction moving by a pixel is not a change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<ColourName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_colour: Option<ColourName>,
    pub size: SizeClass,
    pub position: Position,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl EventAttributes {
    pub fn of(entity: &Entity) -> EventAttributes {
        let a = &entity.attributes;
        EventAttributes {
            colour: a.colour.map(|c| c.name),
            secondary_colour: a.colour.and_then(|c| c.secondary),
            size: a.size,
            position: a.position,
            text: a.text.as_ref().map(|t| t.text.to_string()),
        }
    }
}

/// A relation from the entity to another tracked entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventRelation {
    pub predicate: String,
    pub object: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    pub score: f32,
    pub attributes: EventAttributes,
    pub relations: Vec<EventRelation>,
}

/// One confirmed, tracked entity as seen in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub id: u32,
    pub tag: String,
    pub state: EntityState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The track id (stable while the entity is in view).
    pub id: u32,
    pub tag: String,
    /// The record seq of the frame the change was seen in; `(device, seq, id, type)` identifies an event.
    pub seq: u64,
    /// Capture time of that frame, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// When the entity was first reported (new).
    pub start_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_unix_ms: Option<u64>,
    /// The state last reported (absent for new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<EntityState>,
    /// The state now (absent for end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<EntityState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventParams {
    /// A box whose IoU with the box last reported falls below this has moved.
    pub moved_iou: f64,
    /// Frames in a row a changed state must be seen before it is reported.
    pub confirm_frames: u32,
}

impl Default for EventParams {
    fn default() -> Self {
        EventParams { moved_iou: 0.5, confirm_frames: 2 }
    }
}

struct Live {
    tag: String,
    start_unix_ms: u64,
    reported: EntityState,
    /// Consecutive frames the entity was seen different from `reported`.
    differing: u32,
}

/// Turns each frame's confirmed entities into new / update / end events.
#[derive(Default)]
pub struct EventTracker {
    params: EventParams,
    live: BTreeMap<u32, Live>,
}

impl EventTracker {
    pub fn new(params: EventParams) -> EventTracker {
        EventTracker { params, live: BTreeMap::new() }
    }

    /// One frame: `seen` are the confirmed entities observed in it, `alive` tells whether a track id still lives
    /// (a confirmed entity missed for a frame or two is not ended). Events are appended to `out` in id order:
    /// ends, then new and updates.
    pub fn update(&mut self, seq: u64, at_unix_ms: u64, seen: &[Observed], alive: impl Fn(u32) -> bool, out: &mut Vec<EntityEvent>) {
        let ended: Vec<u32> = self.live.keys().copied().filter(|id| !alive(*id)).collect();
        for id in ended {
            if let Some(l) = self.live.remove(&id) {
                out.push(EntityEvent {
                    kind: EventType::End,
                    id,
                    tag: l.tag,
                    seq,
                    at_unix_ms,
                    start_unix_ms: l.start_unix_ms,
                    end_unix_ms: Some(at_unix_ms),
                    before: Some(l.reported),
                    after: None,
                });
            }
        }
        for o in seen {
            match self.live.get_mut(&o.id) {
                None => {
                    let reported = o.state.clone();
                    self.live.insert(o.id, Live { tag: o.tag.clone(), start_unix_ms: at_unix_ms, reported, differing: 0 });
                    out.push(EntityEvent {
                        kind: EventType::New,
                        id: o.id,
                        tag: o.tag.clone(),
                        seq,
                        at_unix_ms,
                        start_unix_ms: at_unix_ms,
                        end_unix_ms: None,
                        before: None,
                        after: Some(o.state.clone()),
                    });
                }
                Some(l) => {
                    let moved = crate::math::iou(&l.reported.bbox, &o.state.bbox) < self.params.moved_iou;
                    let differs = moved || l.reported.attributes != o.state.attributes || l.reported.relations != o.state.relations;
                    l.differing = if differs { l.differing + 1 } else { 0 };
                    if differs && l.differing >= self.params.confirm_frames.max(1) {
                        l.differing = 0;
                        let before = std::mem::replace(&mut l.reported, o.state.clone());
                        out.push(EntityEvent {
                            kind: EventType::Update,
                            id: o.id,
                            tag: l.tag.clone(),
                            seq,
                            at_unix_ms,
                            start_unix_ms: l.start_unix_ms,
                            end_unix_ms: None,
                            before: Some(before),
                            after: Some(o.state.clone()),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn state(bbox: [f64; 4], colour: ColourName, relations: &[(&str, u32)]) -> EntityState {
        EntityState {
            bbox,
            score: 0.8,
            attributes: EventAttributes {
                colour: Some(colour),
                secondary_colour: None,
                size: SizeClass::Medium,
                position: Position::Centre,
                text: None,
            },
            relations: relations.iter().map(|(p, o)| EventRelation { predicate: p.to_string(), object: *o }).collect(),
        }
    }

    #[test]
    fn new_update_and_end_with_before_and_after_states() {
        let mut t = EventTracker::default();
        let mut out = Vec::new();
        let car = |b, c, r: &[(&str, u32)]| Observed { id: 3, tag: "car".into(), state: state(b, c, r) };
        t.update(1, 1000, &[car([0.1, 0.1, 0.5, 0.5], ColourName::Red, &[])], |_| true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].kind, out[0].id, out[0].start_unix_ms), (EventType::New, 3, 1000));
        assert!(out[0].before.is_none() && out[0].after.is_some());
        // jitter: a slightly moved box and another score are no change
        out.clear();
        let mut jitter = car([0.11, 0.1, 0.51, 0.5], ColourName::Red, &[]);
        jitter.state.score = 0.6;
        t.update(2, 1100, &[jitter], |_| true, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // a relation seen for one frame only (flicker) is not
        t.update(3, 1150, &[car([0.11, 0.1, 0.51, 0.5], ColourName::Red, &[("overlapping", 7)])], |_| true, &mut out);
        t.update(3, 1160, &[car([0.11, 0.1, 0.51, 0.5], ColourName::Red, &[])], |_| true, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // a new relation that holds for two frames is
        t.update(3, 1190, &[car([0.11, 0.1, 0.51, 0.5], ColourName::Red, &[("next to", 7)])], |_| true, &mut out);
        assert!(out.is_empty());
        t.update(3, 1200, &[car([0.11, 0.1, 0.51, 0.5], ColourName::Red, &[("next to", 7)])], |_| true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventType::Update);
        assert!(out[0].before.as_ref().unwrap().relations.is_empty());
        assert_eq!(out[0].after.as_ref().unwrap().relations[0].object, 7);
        // so is a box that moved away, and a colour change
        out.clear();
        for seq in [4, 5] {
            t.update(seq, 1300, &[car([0.5, 0.5, 0.9, 0.9], ColourName::Red, &[("next to", 7)])], |_| true, &mut out);
        }
        for seq in [6, 7] {
            t.update(seq, 1400, &[car([0.5, 0.5, 0.9, 0.9], ColourName::Blue, &[("next to", 7)])], |_| true, &mut out);
        }
        assert_eq!(out.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventType::Update, EventType::Update]);
        assert_eq!(out[0].before.as_ref().unwrap().bbox, [0.11, 0.1, 0.51, 0.5]);
        // missed in a frame while its track lives: nothing; its track dies: end, with start and end times
        out.clear();
        t.update(6, 1500, &[], |_| true, &mut out);
        assert!(out.is_empty());
        t.update(7, 1600, &[], |_| false, &mut out);
        assert_eq!(out.len(), 1);
        let end = &out[0];
        assert_eq!((end.kind, end.start_unix_ms, end.end_unix_ms), (EventType::End, 1000, Some(1600)));
        assert_eq!(end.before.as_ref().unwrap().attributes.colour, Some(ColourName::Blue));
        assert!(end.after.is_none());
        let json = serde_json::to_value(end).unwrap();
        assert_eq!(json["type"], "end");
        assert_eq!(json["before"]["box"][0], 0.5);
    }
}

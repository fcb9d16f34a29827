//! The scene graph: typed, bounded, serialisable. Entities (things and stuff) with attributes, relations between
//! them, and the global state of the image.

pub mod attributes;
pub mod global;
pub mod plausible;
pub mod pose;
pub mod relations;
pub mod text;

use crate::geometry::BoxF;
use crate::perceive::merge::Pass;
use crate::perceive::masks::MaskSource;
use crate::perceive::masks::Rle;
use crate::timing::Timings;
pub use attributes::{Attributes, ColourAttr, ColourName, Position, SizeClass};
pub use global::{Crowdedness, GlobalState, Lighting, SceneType, Setting};
pub use relations::{Predicate, Relation, RelationKind};
pub use text::TextAttr;
use serde::{Deserialize, Serialize};

/// Version of the JSON layout below; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;
/// Detectors that may vote for one entity.
pub const MAX_SOURCES: usize = 8;
/// Alternative tags kept per entity.
pub const MAX_ALTERNATIVES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Thing,
    Stuff,
}

/// One model's vote for an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceVote {
    pub model: heapless::String<48>,
    pub pass: Pass,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub tag: heapless::String<32>,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: u32,
    pub tag: std::borrow::Cow<'static, str>,
    pub kind: Kind,
    pub score: f32,
    /// Normalised `[x1, y1, x2, y2]`, 3 decimals.
    #[serde(rename = "box")]
    pub box_norm: [f64; 4],
    /// `[x1, y1, x2, y2]` in image pixels.
    pub box_px: [f32; 4],
    /// COCO category id for things (the dataset's own id), absent for stuff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<u32>,
    pub sources: heapless::Vec<SourceVote, MAX_SOURCES>,
    /// True when only the extra-instance discovery pass found this entity.
    pub discovered: bool,
    #[serde(default, skip_serializing_if = "heapless::Vec::is_empty")]
    pub alternatives: heapless::Vec<Alternative, MAX_ALTERNATIVES>,
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Rle>,
    /// Which model gave the mask (or that it is only the box's ellipse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_source: Option<MaskSource>,
    /// The entity's own short region caption (Pix2Cap style).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A person's 17 COCO keypoints (normalised), when the pose model found them.
    #[serde(default, skip_serializing_if = "heapless::Vec::is_empty")]
    pub keypoints: heapless::Vec<pose::Keypoint, { pose::JOINTS }>,
    /// How the keypoints were found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<pose::PoseInfo>,
}

/// What an entity is, as evaluation against a dataset sees it: a thing, a stuff region, or text read on nothing
/// detected (a thing-kind entity tagged `text` whose mask is its lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityClass {
    Thing,
    Stuff,
    Text,
}

impl EntityClass {
    pub fn name(self) -> &'static str {
        match self {
            EntityClass::Thing => "thing",
            EntityClass::Stuff => "stuff",
            EntityClass::Text => "text",
        }
    }
}

impl Entity {
    fn placed(id: u32, tag: impl Into<std::borrow::Cow<'static, str>>, kind: Kind, score: f32, at: &Placement, sources: heapless::Vec<SourceVote, MAX_SOURCES>) -> Entity {
        let b = at.bbox;
        Entity {
            id,
            tag: tag.into(),
            kind,
            score,
            box_norm: b.normalised(at.width, at.height),
            box_px: [b.x1, b.y1, b.x2, b.y2],
            category_id: None,
            sources,
            discovered: false,
            alternatives: heapless::Vec::new(),
            attributes: at.attributes(),
            mask: None,
            mask_source: None,
            description: String::new(),
            keypoints: heapless::Vec::new(),
            pose: None,
        }
    }

    /// A detected thing; its mask, colour, category, alternatives and description come later.
    pub fn thing(id: u32, tag: impl Into<std::borrow::Cow<'static, str>>, score: f32, at: &Placement, sources: heapless::Vec<SourceVote, MAX_SOURCES>) -> Entity {
        Self::placed(id, tag, Kind::Thing, score, at, sources)
    }

    /// A stuff region of the segmenter, with its mask.
    pub fn stuff(id: u32, tag: impl Into<std::borrow::Cow<'static, str>>, at: &Placement, sources: heapless::Vec<SourceVote, MAX_SOURCES>, mask: Rle) -> Entity {
        Entity { mask: Some(mask), mask_source: Some(MaskSource::Region), ..Self::placed(id, tag, Kind::Stuff, 1.0, at, sources) }
    }

    /// Text read on nothing detected: a `text` entity whose mask is its lines.
    pub fn text(id: u32, text: TextAttr, score: f32, at: &Placement, sources: heapless::Vec<SourceVote, MAX_SOURCES>, mask: Rle) -> Entity {
        let mut e = Self::placed(id, text::TEXT_TAG, Kind::Thing, score, at, sources);
        e.attributes.text = Some(text);
        e.mask = Some(mask);
        e.mask_source = Some(MaskSource::TextLines);
        e
    }

    pub fn class(&self) -> EntityClass {
        match self.kind {
            Kind::Stuff => EntityClass::Stuff,
            Kind::Thing if self.tag == text::TEXT_TAG && self.mask_source == Some(MaskSource::TextLines) => {
                EntityClass::Text
            }
            Kind::Thing => EntityClass::Thing,
        }
    }

    pub fn bbox(&self) -> BoxF {
        let [x1, y1, x2, y2] = self.box_px;
        BoxF::new(x1, y1, x2, y2)
    }

    /// A visible keypoint of this person in image pixels (`width × height`), or None.
    pub fn joint(&self, j: pose::Joint, width: u32, height: u32) -> Option<pose::Point> {
        let info = self.pose?;
        let k = self.keypoints.iter().find(|k| k.name == j)?;
        (k.score >= info.threshold).then_some(pose::Point { x: k.x * width as f32, y: k.y * height as f32, score: k.score })
    }

    /// Box mention as written in captions: `[[x1, y1, x2, y2]]`, normalised, 3 decimals.
    pub fn box_text(&self) -> String {
        let [a, b, c, d] = self.box_norm;
        format!("[[{a:.3}, {b:.3}, {c:.3}, {d:.3}]]")
    }
}

/// Counts of items dropped or cut to respect the bounds, so truncation is visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    pub entities: u32,
    pub relations: u32,
    /// Model names and alternative tags longer than their bound, cut at a character boundary.
    #[serde(default)]
    pub names: u32,
    /// Source votes beyond `MAX_SOURCES` for one entity, dropped.
    #[serde(default)]
    pub source_votes: u32,
}

impl Truncation {
    /// `s` within `N` bytes, cut at a character boundary; a cut is counted.
    pub fn name<const N: usize>(&mut self, s: &str) -> heapless::String<N> {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        if end < s.len() {
            self.names += 1;
        }
        let mut out = heapless::String::new();
        // within N bytes by construction; a failure would only leave the name shorter, and is counted above
        let _ = out.push_str(s.get(..end).unwrap_or_default());
        out
    }

    /// Records `model`'s vote in `sources`: the strongest score of one model and pass is kept; a vote past
    /// the bound is dropped and counted.
    pub fn vote(&mut self, sources: &mut heapless::Vec<SourceVote, MAX_SOURCES>, model: &str, pass: Pass, score: f32) {
        let model = self.name(model);
        match sources.iter_mut().find(|s| s.model == model && s.pass == pass) {
            Some(s) => s.score = s.score.max(score),
            None => {
                if sources.push(SourceVote { model, pass, score }).is_err() {
                    self.source_votes += 1;
                }
            }
        }
    }

}

/// Where an entity lies: its box in the image and the share of the image it covers.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub bbox: BoxF,
    pub width: u32,
    pub height: u32,
    /// Box (things) or mask (stuff) area over the image area.
    pub area_fraction: f32,
}

impl Placement {
    /// A box, clamped to the image, covering its own area.
    pub fn of_box(bbox: BoxF, width: u32, height: u32) -> Placement {
        let bbox = bbox.clamp(width as f32, height as f32);
        let area_fraction = bbox.area() / (width as f32 * height as f32).max(1.0);
        Placement { bbox, width, height, area_fraction }
    }

    fn attributes(&self) -> Attributes {
        Attributes {
            colour: None,
            size: SizeClass::from_area_fraction(self.area_fraction),
            position: Position::of(&self.bbox, self.width, self.height),
            area_fraction: self.area_fraction,
            text: None,
            posture: None,
        }
    }
}

/// What the extra-instance discovery pass contributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryReport {
    pub ran: bool,
    /// Entities in this caption found only by discovery.
    pub added: u32,
}

/// Everything pancap says about one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanopticCaption {
    pub schema_version: u32,
    /// The input path (or stream name).
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
    pub global: GlobalState,
    pub caption: String,
    pub discovery: DiscoveryReport,
    /// Stuff classes the segmenter found over the least area but the caption leaves out, and why (at most one
    /// per segmenter class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuff_suppressed: Vec<plausible::SuppressedStuff>,
    pub truncated: Truncation,
    /// The backend's name: borrowed from the backend's static name, not copied into each frame's caption.
    pub backend: std::borrow::Cow<'static, str>,
    /// What ran each model: backend and execution provider (ONNX Runtime's provider, precision, threads).
    /// Shared with the pipeline: a frame's caption points at the list, it does not copy it.
    #[serde(default)]
    pub providers: std::sync::Arc<[ModelProvider]>,
    pub timings_ms: Timings,
    /// The live consistency check against an independent second pass, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheck>,
}

/// Which backend and execution provider runs one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelProvider {
    pub model: String,
    pub provider: String,
}

/// PancapEngine's consistency filter, live: this caption's things scored against an independent second pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// How the second opinion was formed.
    pub method: String,
    /// Things compared (the second pass does not segment stuff).
    pub compared: String,
    /// PancapScore tag F1 ×100 between the two (location excluded from the verdict, as PancapEngine does).
    pub tag: f64,
    /// Location F1 ×100, reported.
    pub location: f64,
    pub threshold: f64,
    pub pass: bool,
    pub ms: f64,
}

impl PanopticCaption {
    pub fn entity(&self, id: u32) -> Option<&Entity> {
        self.entities.iter().find(|e| e.id == id)
    }
}

/// A plain entity for tests: no sources, alternatives, colour or mask; size from `area_fraction`.
#[cfg(test)]
pub(crate) fn test_entity(id: u32, tag: &str, kind: Kind, box_px: [f32; 4], area_fraction: f32, position: Position) -> Entity {
    Entity {
        id,
        tag: tag.to_string().into(),
        kind,
        score: 0.9,
        box_norm: [0.0; 4],
        box_px,
        category_id: None,
        sources: heapless::Vec::new(),
        discovered: false,
        alternatives: heapless::Vec::new(),
        attributes: Attributes { colour: None, size: SizeClass::from_area_fraction(area_fraction), position, area_fraction, text: None, posture: None },
        mask: None,
        mask_source: None,
        description: String::new(),
        keypoints: heapless::Vec::new(),
        pose: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_class_names_are_their_json_names() {
        for c in [EntityClass::Thing, EntityClass::Stuff, EntityClass::Text] {
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::Value::String(c.name().into())));
        }
    }
}

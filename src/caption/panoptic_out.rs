//! Mask-grounded outputs: a panoptic PNG per image (COCO panoptic encoding, segment id = `R + 256 G + 256² B`,
//! one segment per entity with the entity's id, 0 = no entity) with its segments, for `--format coconut`
//! (COCONut-PanCap: the caption with inline `<id: phrase>` mentions) and `--format coco-panoptic` (COCO panoptic
//! JSON with a Pix2Cap-style `description` per segment).
//!
//! This is the one panoptic painter: `pancap eval --panoptic` scores exactly the map and segments it paints.

use super::text::{write_caption_grounded, Grounding};
use crate::perceive::masks::{BoxMask, MaskSource};
use crate::scene::{Kind, PanopticCaption};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// A COCO panoptic category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanCategory {
    pub id: u32,
    pub name: String,
    #[serde(default)]
    pub isthing: u8,
}

/// A category name as a caption would say it: COCO panoptic's "-merged"/"-other"/"-stuff" suffixes dropped
/// ("wall-other-merged" → "wall", "sky-other-merged" → "sky").
pub fn plain_name(name: &str) -> String {
    let base = name.split('-').next().unwrap_or(name);
    base.to_string()
}

/// Our stuff tags whose COCO panoptic name differs (ADE20K → COCO).
const ALIASES: &[(&str, &str)] =
    &[("earth", "dirt"), ("windowpane", "window"), ("plant", "tree"), ("field", "playingfield"), ("sofa", "couch"), ("rug", "rug")];

/// The COCO panoptic category a predicted tag maps to, if any.
pub fn category_for_tag(tag: &str, categories: &[PanCategory]) -> Option<u32> {
    let tag = ALIASES.iter().find(|(a, _)| *a == tag).map_or(tag, |(_, b)| *b);
    categories.iter().find(|c| c.name == tag || plain_name(&c.name) == tag).map(|c| c.id)
}

/// The 133 COCO panoptic categories, embedded.
pub fn coco_panoptic_categories() -> &'static [PanCategory] {
    static CATS: OnceLock<Vec<PanCategory>> = OnceLock::new();
    CATS.get_or_init(|| {
        include_str!("../../models/labels/coco_panoptic133.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                let id = it.next()?.parse().ok()?;
                let isthing = it.next()?.parse().ok()?;
                Some(PanCategory { id, isthing, name: it.next()?.trim().to_string() })
            })
            .collect()
    })
}

/// One segment of the panoptic PNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The segment id in the PNG (the entity id).
    pub id: u32,
    /// COCO panoptic category, when the tag has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<u32>,
    pub tag: String,
    pub isthing: u8,
    /// `[x, y, w, h]` of the painted pixels.
    pub bbox: [u32; 4],
    /// Painted pixels (after overlaps are resolved).
    pub area: u64,
    pub iscrowd: u8,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_source: Option<MaskSource>,
}

/// An image's panoptic map (segment id per pixel, row-major, 0 = no segment) and its segments.
pub struct PanopticOutput {
    pub width: u32,
    pub height: u32,
    pub ids: Vec<u32>,
    pub segments: Vec<Segment>,
}

impl PanopticOutput {
    /// The map in COCO panoptic's RGB encoding (`id = R + 256 G + 256² B`).
    pub fn png(&self) -> RgbImage {
        let w = self.width;
        RgbImage::from_fn(w, self.height, |x, y| {
            let id = self.ids.get((y * w + x) as usize).copied().unwrap_or(0);
            image::Rgb([(id & 0xff) as u8, ((id >> 8) & 0xff) as u8, ((id >> 16) & 0xff) as u8])
        })
    }
}

/// Paints the entities (stuff first, then things in rising score order, so the most confident thing wins an
/// overlapped pixel) and measures what each segment kept; segments left with no pixel are dropped. The segment
/// id is the entity id (entity ids start at 1; 0 is void). An entity carries its mask; one without a mask (a
/// caption read back from older JSON) is painted with its box's inscribed ellipse, as the pipeline does.
/// With `mapped_only`, entities without a COCO panoptic category are left out (COCO panoptic files need one).
pub fn panoptic_output(caption: &PanopticCaption, mapped_only: bool) -> PanopticOutput {
    let (w, h) = (caption.width, caption.height);
    let cats = coco_panoptic_categories();
    let mut ids = vec![0u32; w as usize * h as usize];
    let mut order: Vec<_> = caption.entities.iter().filter(|e| e.id != 0).collect();
    order.sort_by(|a, b| {
        let thing = |e: &crate::scene::Entity| u8::from(e.kind == Kind::Thing);
        thing(a).cmp(&thing(b)).then(a.score.total_cmp(&b.score))
    });
    for e in order {
        if mapped_only && category_for_tag(&e.tag, cats).is_none() {
            continue;
        }
        match e.mask.as_ref() {
            Some(rle) => {
                let Some(mask) = rle.to_mask().filter(|m| m.width == w && m.height == h) else {
                    log::warn!("{}: entity {} has a mask of another size; not painted", caption.image, e.id);
                    continue;
                };
                for (p, set) in ids.iter_mut().zip(&mask.bits) {
                    if *set {
                        *p = e.id;
                    }
                }
            }
            None => {
                let ellipse = BoxMask::ellipse(&e.bbox(), w, h);
                ellipse.for_each_set(|x, y| {
                    if let Some(p) = ids.get_mut(y as usize * w as usize + x as usize) {
                        *p = e.id;
                    }
                });
            }
        }
    }
    // what each segment kept: area and box
    let mut stats: std::collections::BTreeMap<u32, (u64, u32, u32, u32, u32)> = Default::default();
    for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != 0) {
        let (x, y) = ((i as u32) % w.max(1), (i as u32) / w.max(1));
        let s = stats.entry(id).or_insert((0, u32::MAX, u32::MAX, 0, 0));
        *s = (s.0 + 1, s.1.min(x), s.2.min(y), s.3.max(x + 1), s.4.max(y + 1));
    }
    let segments = caption
        .entities
        .iter()
        .filter_map(|e| {
            let &(area, x1, y1, x2, y2) = stats.get(&e.id)?;
            Some(Segment {
                id: e.id,
                category_id: category_for_tag(&e.tag, cats),
                tag: e.tag.to_string(),
                isthing: u8::from(e.kind == Kind::Thing),
                bbox: [x1, y1, x2 - x1, y2 - y1],
                area,
                iscrowd: 0,
                description: e.description.clone(),
                mask_source: e.mask_source,
            })
        })
        .collect();
    PanopticOutput { width: w, height: h, ids, segments }
}

/// The caption with COCONut-PanCap segment-id mentions (`<id: phrase>`), from the caption's scene graph.
pub fn coconut_caption(caption: &PanopticCaption) -> String {
    write_caption_grounded(&caption.entities, &caption.relations, &caption.global, Grounding::SegmentId)
}

/// One `--format coconut` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoconutRecord {
    pub image: String,
    pub width: u32,
    pub height: u32,
    /// The panoptic PNG written for this image.
    pub panoptic_png: String,
    pub caption: String,
    pub segments_info: Vec<Segment>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perceive::masks::BoxMask;
    use crate::geometry::BoxF;
    use crate::scene::{test_entity, Position};

    fn scene() -> PanopticCaption {
        let mut sky = test_entity(3, "sky", Kind::Stuff, [0.0, 0.0, 20.0, 10.0], 0.5, Position::Top);
        sky.mask = Some(BoxMask::from_fn(&BoxF::new(0.0, 0.0, 20.0, 10.0), 20, 10, |_, y| y < 5).to_rle(20, 10));
        let mut dog = test_entity(1, "dog", Kind::Thing, [2.0, 2.0, 8.0, 10.0], 0.2, Position::Left);
        dog.mask = Some(BoxMask::from_fn(&BoxF::new(2.0, 2.0, 8.0, 10.0), 20, 10, |_, _| true).to_rle(20, 10));
        dog.description = "A dog in the left of the frame.".into();
        let mut thing = test_entity(2, "blob", Kind::Thing, [12.0, 6.0, 14.0, 8.0], 0.02, Position::Right);
        thing.mask = Some(BoxMask::from_fn(&BoxF::new(12.0, 6.0, 14.0, 8.0), 20, 10, |_, _| true).to_rle(20, 10));
        PanopticCaption {
            schema_version: crate::scene::SCHEMA_VERSION,
            image: "x.jpg".into(),
            width: 20,
            height: 10,
            entities: vec![dog, thing, sky],
            relations: vec![],
            global: crate::scene::global::global_state(&image::RgbImage::new(20, 10), &[]),
            caption: String::new(),
            discovery: Default::default(),
            stuff_suppressed: Vec::new(),
            truncated: Default::default(),
            backend: "fake".into(),
            providers: Default::default(),
            timings_ms: Default::default(),
            self_check: None,
        }
    }

    #[test]
    fn png_ids_are_entity_ids_and_things_win_over_stuff() {
        let out = panoptic_output(&scene(), false);
        let png = out.png();
        let id = |x, y| {
            let p = png.get_pixel(x, y).0;
            u32::from(p[0]) + 256 * u32::from(p[1]) + 65536 * u32::from(p[2])
        };
        assert_eq!((id(3, 3), id(15, 1), id(15, 8), id(13, 7)), (1, 3, 0, 2));
        let dog = out.segments.iter().find(|s| s.id == 1).unwrap();
        assert_eq!((dog.bbox, dog.area, dog.category_id, dog.isthing), ([2, 2, 6, 8], 48, Some(18), 1));
        assert_eq!(dog.description, "A dog in the left of the frame.");
        let sky = out.segments.iter().find(|s| s.id == 3).unwrap();
        assert_eq!(sky.area, 100 - 18, "the dog's pixels in the top half went to the dog");
        assert!(sky.category_id.is_some());
        // a tag without a COCO panoptic category is kept for coconut, dropped for COCO panoptic files
        assert!(out.segments.iter().any(|s| s.id == 2 && s.category_id.is_none()));
        assert!(!panoptic_output(&scene(), true).segments.iter().any(|s| s.id == 2));
    }

    #[test]
    fn coconut_caption_names_segment_ids_not_boxes() {
        let c = coconut_caption(&scene());
        assert!(c.contains("<1: a dog>") && c.contains("<3: the sky>"), "{c}");
        assert!(!c.contains("[["), "{c}");
    }

    #[test]
    fn names_map_to_coco_panoptic_categories() {
        let cats = coco_panoptic_categories();
        let name = |tag| category_for_tag(tag, cats).and_then(|id| cats.iter().find(|c| c.id == id)).map(|c| c.name.as_str());
        assert_eq!(name("sky"), Some("sky-other-merged"));
        assert_eq!(name("person"), Some("person"));
        assert_eq!(name("earth"), Some("dirt-merged"));
        assert_eq!(name("unicorn"), None);
    }

    #[test]
    fn an_entity_without_a_mask_is_painted_with_its_ellipse() {
        let mut c = scene();
        c.entities.retain(|e| e.id == 1);
        if let Some(dog) = c.entities.first_mut() {
            dog.mask = None;
        }
        let out = panoptic_output(&c, true);
        let dog = out.segments.iter().find(|s| s.id == 1).unwrap();
        // the ellipse inscribed in the 6x8 box at (2, 2): its centre is painted, its corners are not
        assert_eq!((out.ids[5 * 20 + 5], out.ids[2 * 20 + 2]), (1, 0));
        assert_eq!(dog.area, BoxMask::ellipse(&crate::geometry::BoxF::new(2.0, 2.0, 8.0, 10.0), 20, 10).area());
    }

    #[test]
    fn embedded_categories_are_the_133() {
        let c = coco_panoptic_categories();
        assert_eq!(c.len(), 133);
        assert_eq!(c.iter().filter(|c| c.isthing == 1).count(), 80);
    }
}

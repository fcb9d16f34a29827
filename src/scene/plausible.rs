//! Which stuff regions the scene supports. The segmenter names every pixel, so it also names pixels it cannot
//! tell apart (a road behind a porch as "water", a grey sky as "ceiling"); these rules keep what the rest of the
//! scene agrees with and say what they left out and why:
//!
//! - a stuff class that is the same kind of object as a detected thing it overlaps is that thing;
//! - near-synonymous classes (water and sea, building and house) are one region, named by the larger;
//! - water under a land vehicle's wheels is not water (cars stand on ground);
//! - outdoor-only stuff (water, sea, mountain, road, sidewalk, field) where the indoor evidence outweighs all the
//!   outdoor evidence, this region's included, twice over, and indoor-only stuff (ceiling, floor, rug) where the
//!   outdoor evidence outweighs the indoor twice over, is left out. A mixed view (a porch: floor, trees, a car)
//!   keeps both.
//!
//! Geometry (specks, scattered pieces, tiny classes) is settled before, in `perceive::stuff`.

use super::global::setting_votes;
use crate::geometry::BoxF;
use crate::perceive::stuff::{GeometryDrop, StuffPixels, StuffRegion};
use serde::{Deserialize, Serialize};

/// Why a stuff class the segmenter found is not in the caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StuffDrop {
    /// Its pieces that hold together cover too little of the image.
    Tiny,
    /// Most of its pixels are scattered pieces.
    Fragmented,
    /// The same kind of object as a detected thing it overlaps.
    DuplicatesThing,
    /// A near-synonym of a larger region, merged into it (`into`).
    Merged,
    /// Under a land vehicle's wheels, where there is ground.
    UnderVehicle,
    /// Outdoor-only stuff in a view whose indoor evidence outweighs the outdoor twice over.
    Indoors,
    /// Indoor-only stuff in a view whose outdoor evidence outweighs the indoor twice over.
    Outdoors,
}

impl From<GeometryDrop> for StuffDrop {
    fn from(g: GeometryDrop) -> Self {
        match g {
            GeometryDrop::Tiny => StuffDrop::Tiny,
            GeometryDrop::Fragmented => StuffDrop::Fragmented,
        }
    }
}

/// A stuff class left out of the caption: its tag, the share of the image it covered, why, and for a merge the
/// region it joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuppressedStuff {
    pub tag: String,
    pub area_fraction: f32,
    pub reason: StuffDrop,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
}

/// ADE20K stuff classes naming the same objects as a COCO thing class.
const STUFF_AS_THING: &[(&str, &str)] = &[("table", "dining table"), ("plant", "potted plant")];
/// Classes that name one kind of region; the larger region's name stands for the group.
const SYNONYMS: &[&[&str]] = &[&["water", "sea"], &["building", "house"]];
const WATER: &[&str] = &["water", "sea"];
const OUTDOOR_ONLY: &[&str] = &["water", "sea", "mountain", "road", "sidewalk", "field"];
const INDOOR_ONLY: &[&str] = &["ceiling", "floor", "rug"];
/// Least evidence (share of the image, or 0.05 a telling thing) that may overrule a region.
const MIN_EVIDENCE: f32 = 0.05;
/// Things that stand on ground, not water.
const LAND_VEHICLES: &[&str] = &["car", "truck", "bus", "motorcycle", "bicycle", "train"];

/// A detected thing, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct ThingView<'a> {
    pub tag: &'a str,
    pub bbox: BoxF,
}

fn group_of(tag: &str) -> Option<&'static [&'static str]> {
    SYNONYMS.iter().copied().find(|g| g.contains(&tag))
}

/// Keeps the regions the scene supports (largest first) and says what it left out. `name` gives a class's tag.
pub fn plausible_stuff<'n>(
    regions: Vec<StuffRegion>,
    pixels: StuffPixels<'_>,
    name: impl Fn(usize) -> &'n str,
    things: &[ThingView<'_>],
) -> (Vec<StuffRegion>, Vec<SuppressedStuff>) {
    let mut suppressed = Vec::new();
    let drop = |r: &StuffRegion, reason: StuffDrop, into: Option<&str>| SuppressedStuff {
        tag: name(r.class).to_string(),
        area_fraction: r.area_fraction,
        reason,
        into: into.map(str::to_string),
    };

    // a stuff class that is a detected thing it overlaps
    let mut kept: Vec<StuffRegion> = Vec::with_capacity(regions.len());
    for r in regions {
        let is_thing = STUFF_AS_THING.iter().find(|(s, _)| *s == name(r.class)).is_some_and(|(_, thing)| {
            things.iter().any(|t| t.tag == *thing && r.bbox.covered_by(&t.bbox).max(t.bbox.covered_by(&r.bbox)) >= 0.5)
        });
        if is_thing {
            suppressed.push(drop(&r, StuffDrop::DuplicatesThing, None));
        } else {
            kept.push(r);
        }
    }

    // near-synonyms join the largest region of their group (regions come largest first)
    kept.sort_by(|a, b| b.area_fraction.total_cmp(&a.area_fraction));
    let mut merged: Vec<StuffRegion> = Vec::with_capacity(kept.len());
    for r in kept {
        let group = group_of(name(r.class));
        let host = group.and_then(|g| merged.iter_mut().find(|m| g.contains(&name(m.class))));
        match host {
            Some(host) => {
                suppressed.push(drop(&r, StuffDrop::Merged, Some(name(host.class))));
                host.classes.union(&r.classes);
                host.bbox = host.bbox.hull(&r.bbox);
                host.pixels += r.pixels;
                host.area_fraction += r.area_fraction;
            }
            None => merged.push(r),
        }
    }

    // judge every region against the same view of the scene, so the order of the rules does not matter
    let verdicts: Vec<Option<StuffDrop>> = merged.iter().map(|r| verdict(r, &merged, pixels, &name, things)).collect();
    let mut out = Vec::with_capacity(merged.len());
    for (r, v) in merged.into_iter().zip(verdicts) {
        match v {
            Some(reason) => suppressed.push(drop(&r, reason, None)),
            None => out.push(r),
        }
    }
    // a merge may have made a region larger than ones before it
    out.sort_by(|a, b| b.area_fraction.total_cmp(&a.area_fraction));
    (out, suppressed)
}

fn verdict<'n>(
    r: &StuffRegion,
    all: &[StuffRegion],
    pixels: StuffPixels<'_>,
    name: &impl Fn(usize) -> &'n str,
    things: &[ThingView<'_>],
) -> Option<StuffDrop> {
    let tag = name(r.class);
    if WATER.contains(&tag) && things.iter().any(|t| LAND_VEHICLES.contains(&t.tag) && stands_on(&t.bbox, r, all, pixels)) {
        return Some(StuffDrop::UnderVehicle);
    }
    let outdoor_only = OUTDOOR_ONLY.contains(&tag);
    let indoor_only = INDOOR_ONLY.contains(&tag);
    if !outdoor_only && !indoor_only {
        return None;
    }
    let stuff = all.iter().map(|o| (name(o.class), o.area_fraction));
    let (outdoor, indoor) = setting_votes(stuff, things.iter().map(|t| t.tag));
    let outweighs = |a: f32, b: f32| a >= MIN_EVIDENCE && a >= 2.0 * b;
    if outdoor_only && outweighs(indoor, outdoor) {
        Some(StuffDrop::Indoors)
    } else if indoor_only && outweighs(outdoor, indoor) {
        Some(StuffDrop::Outdoors)
    } else {
        None
    }
}

/// Whether `r` holds most of the stuff pixels in the band around the bottom edge of a thing's box (where its
/// wheels meet the ground), and enough of them to say so.
fn stands_on(b: &BoxF, r: &StuffRegion, all: &[StuffRegion], pixels: StuffPixels<'_>) -> bool {
    let (w, h) = (pixels.map.width, pixels.map.height);
    let band = (b.height() * 0.15).max(2.0);
    let (x1, x2) = (b.x1.max(0.0) as u32, (b.x2.max(0.0) as u32).min(w));
    let (y1, y2) = ((b.y2 - band).max(0.0) as u32, ((b.y2 + band).max(0.0) as u32).min(h));
    let (mut mine, mut stuff) = (0u64, 0u64);
    for y in y1..y2 {
        for x in x1..x2 {
            let Some(c) = pixels.class_at(x, y) else { continue };
            if r.classes.contains(c) {
                mine += 1;
                stuff += 1;
            } else if all.iter().any(|o| o.classes.contains(c)) {
                stuff += 1;
            }
        }
    }
    let band_px = u64::from(x2.saturating_sub(x1)) * u64::from(y2.saturating_sub(y1));
    stuff > 0 && mine * 2 > stuff && mine * 10 >= band_px
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perceive::stuff::{stuff_regions, LabelMap, StuffParams, StuffRegions};

    const NAMES: &[&str] = &["other", "water", "sea", "floor", "tree", "ceiling", "sky", "road", "table", "wall"];

    fn name(c: usize) -> &'static str {
        NAMES.get(c).copied().unwrap_or("other")
    }

    fn class(tag: &str) -> u8 {
        NAMES.iter().position(|n| *n == tag).unwrap() as u8
    }

    /// A 100x100 frame painted with `(tag, x1, y1, x2, y2)` rectangles in order; every painted class a region.
    fn scene(rects: &[(&str, u32, u32, u32, u32)]) -> (LabelMap, StuffRegions) {
        let mut classes = vec![0u8; 100 * 100];
        for &(tag, x1, y1, x2, y2) in rects {
            for y in y1..y2 {
                for x in x1..x2 {
                    classes[(y * 100 + x) as usize] = class(tag);
                }
            }
        }
        let map = LabelMap { width: 100, height: 100, classes };
        let every = StuffParams { min_area: 0.0, speck: 0.0, min_part: 0.0, min_coherence: 0.0 };
        let found = stuff_regions(&map, &[], |c| c != 0, &every);
        (map, found)
    }

    fn judge(map: &LabelMap, found: &StuffRegions, things: &[ThingView<'_>]) -> (Vec<StuffRegion>, Vec<SuppressedStuff>) {
        plausible_stuff(found.regions.clone(), StuffPixels::new(map, found), name, things)
    }

    fn tags(regions: &[StuffRegion]) -> Vec<&'static str> {
        regions.iter().map(|r| name(r.class)).collect()
    }

    #[test]
    fn water_and_sea_are_one_region_named_by_the_larger() {
        let (map, found) = scene(&[("sky", 0, 0, 100, 40), ("water", 0, 40, 30, 100), ("sea", 30, 40, 100, 100)]);
        let (kept, out) = judge(&map, &found, &[]);
        assert_eq!(tags(&kept), vec!["sea", "sky"]);
        let sea = &kept[0];
        assert_eq!(sea.bbox, BoxF::new(0.0, 40.0, 100.0, 100.0));
        assert_eq!(sea.pixels, 6000);
        let mask = StuffPixels::new(&map, &found).rles(&kept)[0].to_mask().unwrap();
        assert_eq!((mask.area(), mask.get(10, 50), mask.get(50, 50), mask.get(50, 10)), (6000, true, true, false));
        assert!((sea.area_fraction - 0.6).abs() < 1e-6);
        assert_eq!(out, vec![SuppressedStuff { tag: "water".into(), area_fraction: 0.18, reason: StuffDrop::Merged, into: Some("sea".into()) }]);
    }

    #[test]
    fn a_merged_region_takes_its_place_by_its_merged_size() {
        // sky 40 %, sea 30 % and water 20 %: sea + water (50 %) now comes before the sky
        let (map, found) = scene(&[("sky", 0, 0, 100, 40), ("sea", 0, 40, 100, 70), ("water", 0, 70, 100, 90)]);
        let (kept, _) = judge(&map, &found, &[]);
        assert_eq!(tags(&kept), vec!["sea", "sky"]);
        assert!((kept[0].area_fraction - 0.5).abs() < 1e-6);
    }

    #[test]
    fn water_under_a_car_is_left_out_and_a_road_is_kept() {
        let car = ThingView { tag: "car", bbox: BoxF::new(40.0, 20.0, 80.0, 50.0) };
        let (map, found) = scene(&[("tree", 0, 0, 100, 30), ("water", 30, 40, 100, 60), ("road", 0, 60, 100, 100)]);
        let (kept, out) = judge(&map, &found, &[car]);
        assert_eq!(tags(&kept), vec!["road", "tree"]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].tag.as_str(), out[0].reason), ("water", StuffDrop::UnderVehicle));
        // the same water with the car standing on the road below it is kept
        let parked = ThingView { tag: "car", bbox: BoxF::new(40.0, 50.0, 80.0, 80.0) };
        let (kept, out) = judge(&map, &found, &[parked]);
        assert_eq!(kept.len(), 3, "{out:?}");
        // and a boat on it changes nothing
        let boat = ThingView { tag: "boat", bbox: BoxF::new(40.0, 20.0, 80.0, 50.0) };
        assert_eq!(judge(&map, &found, &[boat]).0.len(), 3);
    }

    #[test]
    fn water_indoors_and_a_ceiling_under_the_open_sky_are_left_out() {
        // a room: floor, wall and ceiling; the "water" is a shiny floor patch
        let (map, room) = scene(&[("floor", 0, 60, 100, 100), ("wall", 0, 10, 100, 60), ("ceiling", 0, 0, 100, 10), ("water", 0, 95, 20, 100)]);
        let (kept, out) = judge(&map, &room, &[]);
        assert_eq!(tags(&kept), vec!["wall", "floor", "ceiling"]);
        assert_eq!(out.iter().map(|s| (s.tag.as_str(), s.reason)).collect::<Vec<_>>(), vec![("water", StuffDrop::Indoors)]);
        // outdoors: sky over a road; a grey patch of sky called ceiling goes, the road stays
        let (map, street) = scene(&[("sky", 0, 0, 100, 40), ("road", 0, 60, 100, 100), ("ceiling", 0, 40, 30, 50)]);
        let (kept, out) = judge(&map, &street, &[]);
        assert_eq!(tags(&kept), vec!["sky", "road"]);
        assert_eq!(out.iter().map(|s| (s.tag.as_str(), s.reason)).collect::<Vec<_>>(), vec![("ceiling", StuffDrop::Outdoors)]);
    }

    #[test]
    fn a_mixed_view_keeps_everything() {
        // a porch: as much floor as tree, neither outweighs the other twice over; nothing left out
        let (map, found) = scene(&[("floor", 0, 50, 100, 100), ("tree", 0, 0, 100, 50), ("road", 0, 45, 10, 50)]);
        let before = tags(&found.regions);
        let (kept, out) = judge(&map, &found, &[]);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(tags(&kept).len(), before.len());
    }

    #[test]
    fn a_table_region_on_a_detected_dining_table_is_that_table() {
        let table = ThingView { tag: "dining table", bbox: BoxF::new(10.0, 50.0, 90.0, 90.0) };
        let (map, found) = scene(&[("wall", 0, 0, 100, 50), ("table", 12, 55, 88, 88)]);
        let (kept, out) = judge(&map, &found, &[table]);
        assert_eq!(tags(&kept), vec!["wall"]);
        assert_eq!(out[0].reason, StuffDrop::DuplicatesThing);
    }
}

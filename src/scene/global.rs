//! Image-level state: lighting from luminance, indoor/outdoor and the dominant scene from stuff and thing cues,
//! crowdedness from the number of things.

use super::{Entity, Kind};
use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lighting {
    Dark,
    Dim,
    WellLit,
    Bright,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Setting {
    Indoor,
    Outdoor,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crowdedness {
    Empty,
    Sparse,
    Moderate,
    Crowded,
}

/// The kind of place the largest regions suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SceneType {
    Street,
    Field,
    OpenSky,
    Waterside,
    Greenery,
    Mountains,
    Room,
    BuiltUp,
    Unknown,
}

impl SceneType {
    pub fn phrase(self) -> Option<&'static str> {
        match self {
            SceneType::Street => Some("street scene"),
            SceneType::Field => Some("open field"),
            SceneType::OpenSky => Some("scene under an open sky"),
            SceneType::Waterside => Some("waterside scene"),
            SceneType::Greenery => Some("scene among trees and plants"),
            SceneType::Mountains => Some("mountain landscape"),
            SceneType::Room => Some("room interior"),
            SceneType::BuiltUp => Some("built-up area"),
            SceneType::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GlobalState {
    pub lighting: Lighting,
    /// Mean luma in [0, 1].
    pub brightness: f32,
    pub setting: Setting,
    pub crowdedness: Crowdedness,
    pub thing_count: u32,
    pub scene: SceneType,
}

const OUTDOOR_STUFF: &[&str] =
    &["sky", "tree", "road", "grass", "sidewalk", "earth", "mountain", "water", "sea", "field", "house", "building"];
const INDOOR_STUFF: &[&str] = &["ceiling", "floor", "bed", "cabinet", "curtain", "rug", "shelf", "painting", "mirror"];
const OUTDOOR_THINGS: &[&str] = &[
    "car", "bus", "truck", "traffic light", "fire hydrant", "stop sign", "parking meter", "horse", "cow", "sheep",
    "elephant", "bear", "zebra", "giraffe", "kite", "airplane", "boat", "train", "motorcycle", "bicycle", "skis",
    "snowboard", "surfboard",
];
const INDOOR_THINGS: &[&str] = &[
    "couch", "bed", "tv", "refrigerator", "oven", "microwave", "sink", "toilet", "dining table", "laptop", "keyboard",
    "mouse", "remote", "book", "potted plant", "vase", "clock",
];

fn mean_luma(img: &RgbImage) -> f32 {
    let step = ((img.width() as u64 * img.height() as u64 / 65_536) as f32).sqrt().ceil().max(1.0) as usize;
    let (mut sum, mut n) = (0f64, 0u64);
    for y in (0..img.height()).step_by(step) {
        for x in (0..img.width()).step_by(step) {
            if let Some(p) = img.get_pixel_checked(x, y) {
                let [r, g, b] = p.0;
                sum += 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b);
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64 / 255.0) as f32
    }
}

/// The evidence for outdoor and for indoor in what is in view: stuff votes with its share of the image (a wall
/// half: walls stand outdoors too), each telling thing with 0.05.
pub fn setting_votes<'a>(stuff: impl IntoIterator<Item = (&'a str, f32)>, things: impl IntoIterator<Item = &'a str>) -> (f32, f32) {
    let (mut outdoor, mut indoor) = (0f32, 0f32);
    for (tag, area) in stuff {
        if OUTDOOR_STUFF.contains(&tag) {
            outdoor += area;
        } else if INDOOR_STUFF.contains(&tag) {
            indoor += area;
        } else if tag == "wall" {
            indoor += 0.5 * area;
        }
    }
    for tag in things {
        if OUTDOOR_THINGS.contains(&tag) {
            outdoor += 0.05;
        } else if INDOOR_THINGS.contains(&tag) {
            indoor += 0.05;
        }
    }
    (outdoor, indoor)
}

/// Indoor or outdoor from [`setting_votes`]; too little evidence or too close a call is unknown.
pub fn setting_of<'a>(stuff: impl IntoIterator<Item = (&'a str, f32)>, things: impl IntoIterator<Item = &'a str>) -> Setting {
    let (outdoor, indoor) = setting_votes(stuff, things);
    if outdoor.max(indoor) < 0.05 || (outdoor - indoor).abs() < 0.02 {
        Setting::Unknown
    } else if outdoor > indoor {
        Setting::Outdoor
    } else {
        Setting::Indoor
    }
}

/// Derives the global state from the image and its entities.
pub fn global_state(img: &RgbImage, entities: &[Entity]) -> GlobalState {
    let brightness = mean_luma(img);
    let lighting = match brightness {
        b if b < 0.18 => Lighting::Dark,
        b if b < 0.32 => Lighting::Dim,
        b if b < 0.62 => Lighting::WellLit,
        _ => Lighting::Bright,
    };
    let stuff = entities.iter().filter(|e| e.kind == Kind::Stuff).map(|e| (&*e.tag, e.attributes.area_fraction));
    let things = entities.iter().filter(|e| e.kind == Kind::Thing).map(|e| &*e.tag);
    let setting = setting_of(stuff, things);
    let thing_count = entities.iter().filter(|e| e.kind == Kind::Thing).count() as u32;
    let crowdedness = match thing_count {
        0 => Crowdedness::Empty,
        1..=3 => Crowdedness::Sparse,
        4..=9 => Crowdedness::Moderate,
        _ => Crowdedness::Crowded,
    };
    let scene = dominant_scene(entities, setting);
    GlobalState { lighting, brightness, setting, crowdedness, thing_count, scene }
}

fn dominant_scene(entities: &[Entity], setting: Setting) -> SceneType {
    let vehicles = entities.iter().filter(|e| ["car", "bus", "truck", "traffic light"].contains(&&*e.tag)).count();
    let mut best: Option<(&Entity, SceneType)> = None;
    for e in entities.iter().filter(|e| e.kind == Kind::Stuff) {
        let t = match &*e.tag {
            "road" | "sidewalk" => SceneType::Street,
            "grass" | "field" | "earth" => SceneType::Field,
            "sky" => SceneType::OpenSky,
            "water" | "sea" => SceneType::Waterside,
            "tree" | "plant" => SceneType::Greenery,
            "mountain" => SceneType::Mountains,
            "floor" | "ceiling" | "wall" | "rug" | "curtain" | "cabinet" => SceneType::Room,
            "building" | "house" => SceneType::BuiltUp,
            _ => continue,
        };
        if best.is_none_or(|(b, _)| e.attributes.area_fraction > b.attributes.area_fraction) {
            best = Some((e, t));
        }
    }
    let scene = best.map(|(_, t)| t).unwrap_or(SceneType::Unknown);
    match (scene, setting) {
        (SceneType::Room, Setting::Outdoor) => SceneType::BuiltUp,
        (SceneType::OpenSky | SceneType::BuiltUp, _) if vehicles >= 2 => SceneType::Street,
        (s, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(tag: &str, kind: Kind, area: f32) -> Entity {
        crate::scene::test_entity(0, tag, kind, [0.0; 4], area, crate::scene::Position::Top)
    }

    #[test]
    fn outdoor_bright_field() {
        let img = RgbImage::from_pixel(10, 10, image::Rgb([230, 230, 230]));
        let g = global_state(&img, &[ent("sky", Kind::Stuff, 0.3), ent("grass", Kind::Stuff, 0.4), ent("horse", Kind::Thing, 0.1)]);
        assert_eq!(g.setting, Setting::Outdoor);
        assert_eq!(g.lighting, Lighting::Bright);
        assert_eq!(g.scene, SceneType::Field);
        assert_eq!(g.crowdedness, Crowdedness::Sparse);
    }

    #[test]
    fn dark_room() {
        let img = RgbImage::from_pixel(10, 10, image::Rgb([20, 20, 20]));
        let g = global_state(&img, &[ent("floor", Kind::Stuff, 0.3), ent("wall", Kind::Stuff, 0.3)]);
        assert_eq!((g.setting, g.lighting, g.scene), (Setting::Indoor, Lighting::Dark, SceneType::Room));
        assert_eq!(g.crowdedness, Crowdedness::Empty);
    }

    #[test]
    fn nothing_known_is_unknown() {
        let img = RgbImage::from_pixel(10, 10, image::Rgb([100, 100, 100]));
        let g = global_state(&img, &[]);
        assert_eq!((g.setting, g.scene), (Setting::Unknown, SceneType::Unknown));
    }
}

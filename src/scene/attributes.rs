//! Per-entity attributes measured from pixels and geometry: named colour, relative size, position in frame.

use crate::geometry::BoxF;
use crate::perceive::masks::Mask;
use image::RgbImage;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourName {
    Black,
    White,
    Gray,
    Red,
    Orange,
    Yellow,
    Green,
    Blue,
    Purple,
    Pink,
    Brown,
}

impl ColourName {
    pub const ALL: [ColourName; 11] = [
        ColourName::Black,
        ColourName::White,
        ColourName::Gray,
        ColourName::Red,
        ColourName::Orange,
        ColourName::Yellow,
        ColourName::Green,
        ColourName::Blue,
        ColourName::Purple,
        ColourName::Pink,
        ColourName::Brown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ColourName::Black => "black",
            ColourName::White => "white",
            ColourName::Gray => "gray",
            ColourName::Red => "red",
            ColourName::Orange => "orange",
            ColourName::Yellow => "yellow",
            ColourName::Green => "green",
            ColourName::Blue => "blue",
            ColourName::Purple => "purple",
            ColourName::Pink => "pink",
            ColourName::Brown => "brown",
        }
    }
}

/// Names the colour of one sRGB pixel by hue, saturation and value.
pub fn name_pixel(r: u8, g: u8, b: u8) -> ColourName {
    let (rf, gf, bf) = (f32::from(r) / 255.0, f32::from(g) / 255.0, f32::from(b) / 255.0);
    let max = rf.max(gf).max(bf);
    let min = rf.min(gf).min(bf);
    let v = max;
    let s = if max > 0.0 { (max - min) / max } else { 0.0 };
    if v < 0.18 {
        return ColourName::Black;
    }
    if s < 0.16 || (max - min) < 0.07 {
        // white surfaces in shade stay white down to 0.70 (the frame's light is already undone, see Illuminant)
        return if v > 0.70 {
            ColourName::White
        } else if v < 0.28 {
            ColourName::Black
        } else {
            ColourName::Gray
        };
    }
    let d = max - min;
    let h = if max == rf {
        60.0 * (((gf - bf) / d).rem_euclid(6.0))
    } else if max == gf {
        60.0 * ((bf - rf) / d + 2.0)
    } else {
        60.0 * ((rf - gf) / d + 4.0)
    };
    match h {
        h if !(12.0..330.0).contains(&h) => {
            if s < 0.5 && v > 0.65 {
                ColourName::Pink
            } else if v < 0.45 && !(s > 0.6 && v >= 0.3) {
                // dark, dull reds are brown; a saturated red in shadow is still red
                ColourName::Brown
            } else {
                ColourName::Red
            }
        }
        h if h < 45.0 => {
            if v < 0.62 || s < 0.35 {
                ColourName::Brown
            } else {
                ColourName::Orange
            }
        }
        h if h < 68.0 => {
            if v < 0.5 {
                ColourName::Brown
            } else {
                ColourName::Yellow
            }
        }
        h if h < 165.0 => ColourName::Green,
        h if h < 255.0 => ColourName::Blue,
        h if h < 290.0 => ColourName::Purple,
        _ => ColourName::Pink,
    }
}

/// The light of a frame, to be undone before colours are named: per-channel gains that are a shades-of-grey
/// white balance (Minkowski p = 6 mean per channel, gains kept within 0.7–1.4) times an exposure gain that
/// brings the frame's 97th-percentile brightness to 220 (never darkening, at most × 2). Estimated once per
/// frame and carried as a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Illuminant {
    /// Multipliers for R, G and B.
    pub gains: [f32; 3],
}

impl Default for Illuminant {
    fn default() -> Self {
        Illuminant::NEUTRAL
    }
}

impl Illuminant {
    /// No correction.
    pub const NEUTRAL: Illuminant = Illuminant { gains: [1.0; 3] };

    /// Estimates the frame's light from up to ~65 k evenly spaced pixels.
    pub fn estimate(img: &RgbImage) -> Illuminant {
        let (w, h) = (img.width(), img.height());
        let n = u64::from(w) * u64::from(h);
        if n == 0 {
            return Illuminant::NEUTRAL;
        }
        let step = ((n as f64 / 65536.0).sqrt().ceil() as usize).max(1);
        let mut pow6 = [0f64; 3];
        let mut count = 0f64;
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                if let Some(p) = img.get_pixel_checked(x, y) {
                    for (acc, c) in pow6.iter_mut().zip(p.0) {
                        *acc += (f64::from(c) / 255.0).powi(6);
                    }
                    count += 1.0;
                }
            }
        }
        let est = pow6.map(|a| (a / count.max(1.0)).powf(1.0 / 6.0).max(1e-3));
        let grey = est.iter().sum::<f64>() / 3.0;
        let wb = est.map(|e| ((grey / e) as f32).clamp(0.7, 1.4));
        // exposure: the 97th percentile of the white-balanced brightness (0..=357 in steps of 1)
        let mut hist = [0u32; 512];
        let mut total = 0u32;
        for y in (0..h).step_by(step) {
            for x in (0..w).step_by(step) {
                if let Some(p) = img.get_pixel_checked(x, y) {
                    let l = p.0.iter().zip(wb).map(|(c, g)| f32::from(*c) * g).sum::<f32>() / 3.0;
                    if let Some(slot) = hist.get_mut((l as usize).min(511)) {
                        *slot += 1;
                    }
                    total += 1;
                }
            }
        }
        let target = (f64::from(total) * 0.97).ceil() as u32;
        let mut seen = 0u32;
        let mut p97 = 255usize;
        for (i, c) in hist.iter().enumerate() {
            seen += c;
            if seen >= target {
                p97 = i;
                break;
            }
        }
        let exposure = (220.0 / (p97.max(1) as f32)).clamp(1.0, 2.0);
        Illuminant { gains: wb.map(|g| g * exposure) }
    }

    /// One lookup table per channel: the corrected value of every 8-bit value.
    fn tables(&self) -> [[u8; 256]; 3] {
        let mut t = [[0u8; 256]; 3];
        for (table, g) in t.iter_mut().zip(self.gains) {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 * g).round().clamp(0.0, 255.0) as u8;
            }
        }
        t
    }
}

/// The dominant named colour(s) of a region, with the fraction of sampled pixels each covers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColourAttr {
    pub name: ColourName,
    pub fraction: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<ColourName>,
}

impl ColourAttr {
    /// How captions say it: "brown", "black and white".
    pub fn phrase(&self) -> String {
        self.to_string()
    }
}

/// The caption phrase, written where it is used (no String of its own).
impl std::fmt::Display for ColourAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.secondary {
            Some(s) => write!(f, "{} and {}", self.name.as_str(), s.as_str()),
            None => f.write_str(self.name.as_str()),
        }
    }
}

/// Region whose pixels are sampled for colour.
pub enum Region<'a> {
    /// A thing: the central ellipse of its box (half the box's radii), avoiding the background at the corners.
    BoxCore(BoxF),
    /// A stuff region: its mask.
    Mask(&'a Mask),
    /// A thing with a model's mask: the mask's pixels inside its box.
    Patch(&'a crate::perceive::masks::BoxMask),
    /// A stuff region: its pixels, sampled on the same grid as a full mask of it would be.
    Stuff(crate::perceive::stuff::StuffPixels<'a>, &'a crate::perceive::stuff::StuffRegion),
}

/// Names the dominant colour of a region under `light` (the frame's light undone first); None when no colour dominates (≥ `min_fraction` of samples).
pub fn dominant_colour(img: &RgbImage, region: Region<'_>, min_fraction: f32, light: &Illuminant) -> Option<ColourAttr> {
    let mut hist = [0u32; 11];
    let (w, h) = (img.width(), img.height());
    let [tr, tg, tb] = light.tables();
    let mut count = |x: u32, y: u32| {
        if let Some(p) = img.get_pixel_checked(x, y) {
            let [r, g, b] = p.0;
            let at = |t: &[u8; 256], v: u8| t.get(usize::from(v)).copied().unwrap_or(v);
            let (r, g, b) = (at(&tr, r), at(&tg, g), at(&tb, b));
            if let Some(slot) = hist.get_mut(name_pixel(r, g, b) as usize) {
                *slot += 1;
            }
        }
    };
    match region {
        Region::BoxCore(b) => {
            let b = b.clamp(w as f32, h as f32);
            let (cx, cy) = b.centre();
            let (rx, ry) = (b.width() / 4.0, b.height() / 4.0);
            // the core: the ellipse inscribed in the box's central half
            let core = BoxF::new(cx - rx, cy - ry, cx + rx, cy + ry);
            let inside = crate::perceive::masks::in_inscribed_ellipse(&core);
            let step = ((b.width() * b.height() / 4.0 / 4096.0).sqrt().ceil() as u32).max(1);
            let (x0, y0) = ((cx - rx).max(0.0) as u32, (cy - ry).max(0.0) as u32);
            let (x1, y1) = (((cx + rx).ceil() as u32).min(w), ((cy + ry).ceil() as u32).min(h));
            for y in (y0..y1).step_by(step as usize) {
                for x in (x0..x1).step_by(step as usize) {
                    if inside(x, y) {
                        count(x, y);
                    }
                }
            }
        }
        Region::Patch(m) => {
            let step = ((m.area().max(1) as f32 / 4096.0).sqrt().ceil() as u32).max(1);
            for y in (m.y0..(m.y0 + m.h).min(h)).step_by(step as usize) {
                for x in (m.x0..(m.x0 + m.w).min(w)).step_by(step as usize) {
                    if m.get(x, y) {
                        count(x, y);
                    }
                }
            }
        }
        Region::Stuff(px, r) => {
            let step = ((r.pixels.max(1) as f32 / 4096.0).sqrt().ceil() as u32).max(1);
            // the full-frame grid (multiples of step), walked only inside the region's box
            let first = |v: f32| (v.max(0.0) as u32).div_ceil(step) * step;
            let (x1, y1) = (((r.bbox.x2.ceil()) as u32).min(w), ((r.bbox.y2.ceil()) as u32).min(h));
            for y in (first(r.bbox.y1)..y1).step_by(step as usize) {
                for x in (first(r.bbox.x1)..x1).step_by(step as usize) {
                    if px.contains(r, x, y) {
                        count(x, y);
                    }
                }
            }
        }
        Region::Mask(m) => {
            let area = m.area().max(1);
            let step = ((area as f32 / 4096.0).sqrt().ceil() as u32).max(1);
            for y in (0..m.height.min(h)).step_by(step as usize) {
                for x in (0..m.width.min(w)).step_by(step as usize) {
                    if m.get(x, y) {
                        count(x, y);
                    }
                }
            }
        }
    }
    let total: u32 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    // on the stack: this runs for every entity of every frame
    let mut ranked = ColourName::ALL.map(|c| (c, 0u32));
    for (slot, n) in ranked.iter_mut().zip(hist) {
        slot.1 = n;
    }
    // a total order (ties by name), so the unstable sort ranks as a stable one would
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let (first, n1) = *ranked.first()?;
    let fraction = n1 as f32 / total as f32;
    if fraction < min_fraction {
        return None;
    }
    let secondary = ranked.get(1).filter(|(_, n2)| *n2 as f32 / total as f32 >= 0.3).map(|(c, _)| *c);
    Some(ColourAttr { name: first, fraction, secondary })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeClass {
    Tiny,
    Small,
    Medium,
    Large,
    Huge,
}

impl SizeClass {
    pub fn from_area_fraction(f: f32) -> SizeClass {
        match f {
            f if f < 0.005 => SizeClass::Tiny,
            f if f < 0.03 => SizeClass::Small,
            f if f < 0.15 => SizeClass::Medium,
            f if f < 0.4 => SizeClass::Large,
            _ => SizeClass::Huge,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SizeClass::Tiny => "tiny",
            SizeClass::Small => "small",
            SizeClass::Medium => "medium-sized",
            SizeClass::Large => "large",
            SizeClass::Huge => "huge",
        }
    }
}

/// Where the centre of an entity lies on a 3 × 3 grid of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    TopLeft,
    Top,
    TopRight,
    Left,
    Centre,
    Right,
    BottomLeft,
    Bottom,
    BottomRight,
}

impl Position {
    pub fn of(b: &BoxF, width: u32, height: u32) -> Position {
        let (cx, cy) = b.centre();
        let col = ((cx / width.max(1) as f32) * 3.0).clamp(0.0, 2.999) as usize;
        let row = ((cy / height.max(1) as f32) * 3.0).clamp(0.0, 2.999) as usize;
        use Position::*;
        match (row, col) {
            (0, 0) => TopLeft,
            (0, 1) => Top,
            (0, _) => TopRight,
            (1, 0) => Left,
            (1, 1) => Centre,
            (1, _) => Right,
            (_, 0) => BottomLeft,
            (_, 1) => Bottom,
            _ => BottomRight,
        }
    }

    /// "the top left", "the centre"…, for "in the … of the frame".
    pub fn phrase(self) -> &'static str {
        use Position::*;
        match self {
            TopLeft => "top left",
            Top => "top",
            TopRight => "top right",
            Left => "left",
            Centre => "centre",
            Right => "right",
            BottomLeft => "bottom left",
            Bottom => "bottom",
            BottomRight => "bottom right",
        }
    }

    pub fn row(self) -> u8 {
        use Position::*;
        match self {
            TopLeft | Top | TopRight => 0,
            Left | Centre | Right => 1,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<ColourAttr>,
    pub size: SizeClass,
    pub position: Position,
    /// Area of the box (things) or mask (stuff) over the image area.
    pub area_fraction: f32,
    /// Text read on the entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<super::text::TextAttr>,
    /// A person's posture from their keypoints, with the measurements behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<super::pose::PostureAttr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_primary_and_neutral_colours() {
        assert_eq!(name_pixel(220, 30, 30), ColourName::Red);
        assert_eq!(name_pixel(30, 160, 40), ColourName::Green);
        assert_eq!(name_pixel(40, 80, 200), ColourName::Blue);
        assert_eq!(name_pixel(240, 220, 40), ColourName::Yellow);
        assert_eq!(name_pixel(250, 140, 20), ColourName::Orange);
        assert_eq!(name_pixel(120, 70, 30), ColourName::Brown);
        assert_eq!(name_pixel(245, 245, 245), ColourName::White);
        assert_eq!(name_pixel(128, 128, 130), ColourName::Gray);
        assert_eq!(name_pixel(10, 10, 12), ColourName::Black);
        assert_eq!(name_pixel(240, 160, 200), ColourName::Pink);
        assert_eq!(name_pixel(120, 40, 170), ColourName::Purple);
        assert_eq!(name_pixel(135, 190, 235), ColourName::Blue, "sky blue");
    }

    #[test]
    fn a_stuff_region_samples_the_pixels_its_full_mask_would() {
        use crate::perceive::stuff::{stuff_regions, LabelMap, StuffParams, StuffPixels};
        // a 300x200 frame: class 1 a blue block and a red strip (two parts), class 2 the rest; pixels vary so the
        // sampling grid decides the histogram
        let (w, h) = (300u32, 200u32);
        let classes: Vec<u8> = (0..w * h).map(|i| if (i % w > 40 && i / w > 120) || i % w > 250 { 1 } else { 2 }).collect();
        let img = RgbImage::from_fn(w, h, |x, y| {
            if x > 250 { image::Rgb([200, 30, 30]) } else { image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 180]) }
        });
        let map = LabelMap { width: w, height: h, classes };
        let found = stuff_regions(&map, &[], |c| c != 0, &StuffParams::default());
        assert_eq!(found.regions.len(), 2);
        let px = StuffPixels::new(&map, &found);
        for (r, rle) in found.regions.iter().zip(px.rles(&found.regions)) {
            let mask = rle.to_mask().unwrap();
            let by_mask = dominant_colour(&img, Region::Mask(&mask), 0.2, &Illuminant::NEUTRAL);
            let by_pixels = dominant_colour(&img, Region::Stuff(px, r), 0.2, &Illuminant::NEUTRAL);
            assert!(by_mask.is_some());
            assert_eq!(by_pixels, by_mask, "class {}", r.class);
        }
    }

    #[test]
    fn dominant_colour_of_a_two_tone_box() {
        let mut img = RgbImage::from_pixel(100, 100, image::Rgb([0, 0, 255]));
        for y in 0..100 {
            for x in 50..100 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let c = dominant_colour(&img, Region::BoxCore(BoxF::new(0.0, 0.0, 100.0, 100.0)), 0.3, &Illuminant::NEUTRAL).unwrap();
        assert!(c.fraction > 0.4 && c.fraction < 0.6);
        let pair = [c.name, c.secondary.unwrap()];
        assert!(pair.contains(&ColourName::Blue) && pair.contains(&ColourName::White));
        // a box entirely in the blue half
        let c = dominant_colour(&img, Region::BoxCore(BoxF::new(0.0, 0.0, 40.0, 100.0)), 0.3, &Illuminant::NEUTRAL).unwrap();
        assert_eq!((c.name, c.secondary), (ColourName::Blue, None));
    }

    #[test]
    fn a_tinted_dim_frame_is_balanced_and_brightened() {
        // a grey card and a white card under dim, warm light
        let mut img = RgbImage::from_pixel(100, 100, image::Rgb([96, 80, 60]));
        for y in 0..100 {
            for x in 50..100 {
                img.put_pixel(x, y, image::Rgb([150, 125, 94]));
            }
        }
        let light = Illuminant::estimate(&img);
        assert!(light.gains[2] > light.gains[0] * 1.2, "blue is raised against red: {:?}", light.gains);
        let white = dominant_colour(&img, Region::BoxCore(BoxF::new(60.0, 0.0, 100.0, 100.0)), 0.3, &light);
        assert_eq!(white.map(|c| c.name), Some(ColourName::White));
        let plain = dominant_colour(&img, Region::BoxCore(BoxF::new(60.0, 0.0, 100.0, 100.0)), 0.3, &Illuminant::NEUTRAL);
        assert_eq!(plain.map(|c| c.name), Some(ColourName::Brown), "uncorrected, the white card reads brown");
        // a neutral, well exposed frame is left alone
        let mut img = RgbImage::from_pixel(10, 10, image::Rgb([120, 120, 120]));
        img.put_pixel(0, 0, image::Rgb([230, 230, 230]));
        img.put_pixel(1, 0, image::Rgb([230, 230, 230]));
        img.put_pixel(2, 0, image::Rgb([230, 230, 230]));
        img.put_pixel(3, 0, image::Rgb([230, 230, 230]));
        let g = Illuminant::estimate(&img).gains;
        assert!(g.iter().all(|g| (g - 1.0).abs() < 0.05), "{g:?}");
    }

    #[test]
    fn size_and_position() {
        assert_eq!(SizeClass::from_area_fraction(0.001), SizeClass::Tiny);
        assert_eq!(SizeClass::from_area_fraction(0.5), SizeClass::Huge);
        assert_eq!(Position::of(&BoxF::new(0.0, 0.0, 10.0, 10.0), 100, 100), Position::TopLeft);
        assert_eq!(Position::of(&BoxF::new(40.0, 40.0, 60.0, 60.0), 100, 100), Position::Centre);
        assert_eq!(Position::of(&BoxF::new(90.0, 90.0, 100.0, 100.0), 100, 100), Position::BottomRight);
    }
}

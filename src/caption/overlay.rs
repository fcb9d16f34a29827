//! Overlay rendering: stuff masks and model-given thing masks tinted, thing boxes outlined, each labelled with its
//! id, tag and the text read on it.

use crate::perceive::masks::MaskSource;
use crate::scene::{Entity, Kind};
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// A fixed, distinguishable palette; entity ids pick colours deterministically.
const PALETTE: [[u8; 3]; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
];

/// The colour an entity id is drawn in (the live view page colours its table rows the same way).
pub fn colour_of(id: u32) -> [u8; 3] {
    PALETTE.get(id as usize % PALETTE.len()).copied().unwrap_or([255, 255, 255])
}

fn blend(p: &mut Rgb<u8>, c: [u8; 3], alpha: f32) {
    for (v, c) in p.0.iter_mut().zip(c) {
        *v = (f32::from(*v) * (1.0 - alpha) + f32::from(c) * alpha).round() as u8;
    }
}

fn rect(img: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, c: [u8; 3], thickness: i64) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for t in 0..thickness {
        for x in x1.max(0)..=x2.min(w - 1) {
            for y in [y1 + t, y2 - t] {
                if (0..h).contains(&y) {
                    img.put_pixel(x as u32, y as u32, Rgb(c));
                }
            }
        }
        for y in y1.max(0)..=y2.min(h - 1) {
            for x in [x1 + t, x2 - t] {
                if (0..w).contains(&x) {
                    img.put_pixel(x as u32, y as u32, Rgb(c));
                }
            }
        }
    }
}

/// A straight line `thickness` pixels wide (a square brush stepped along the longer axis), clipped to the image.
fn line(img: &mut RgbImage, from: (f32, f32), to: (f32, f32), c: [u8; 3], thickness: i64) {
    let steps = (to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil().clamp(1.0, 1e5) as i64;
    let r = thickness / 2;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = ((from.0 + t * (to.0 - from.0)).round() as i64, (from.1 + t * (to.1 - from.1)).round() as i64);
        for dy in -r..=r {
            for dx in -r..=r {
                if let (Ok(px), Ok(py)) = (u32::try_from(x + dx), u32::try_from(y + dy)) {
                    if let Some(p) = img.get_pixel_mut_checked(px, py) {
                        *p = Rgb(c);
                    }
                }
            }
        }
    }
}

/// A person's skeleton: the limbs between visible keypoints in the entity's colour, the joints as white dots.
fn skeleton(img: &mut RgbImage, e: &Entity, thickness: i64) {
    let (w, h) = (img.width(), img.height());
    let c = colour_of(e.id);
    for (a, b) in crate::scene::pose::SKELETON {
        if let (Some(p), Some(q)) = (e.joint(a, w, h), e.joint(b, w, h)) {
            line(img, (p.x, p.y), (q.x, q.y), c, thickness);
        }
    }
    for j in crate::scene::pose::Joint::ALL {
        if let Some(p) = e.joint(j, w, h) {
            line(img, (p.x, p.y), (p.x, p.y), [255, 255, 255], thickness + 2);
        }
    }
}

/// Draws `text` with an 8×8 bitmap font scaled by `scale`, on a dark background box, top-left at (x, y).
fn label(img: &mut RgbImage, x: i64, y: i64, text: &str, c: [u8; 3], scale: i64) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let tw = 8 * scale * text.chars().count() as i64 + 2;
    let th = 8 * scale + 2;
    let x = x.clamp(0, (w - tw).max(0));
    let y = y.clamp(0, (h - th).max(0));
    for yy in y..(y + th).min(h) {
        for xx in x..(x + tw).min(w) {
            if let Some(p) = img.get_pixel_mut_checked(xx as u32, yy as u32) {
                blend(p, [0, 0, 0], 0.7);
            }
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + 1 + (i as i64 * 8 + col) * scale + dx;
                        let py = y + 1 + row as i64 * scale + dy;
                        if let Some(p) = img.get_pixel_mut_checked(px as u32, py as u32) {
                            *p = Rgb(c);
                        }
                    }
                }
            }
        }
    }
}

fn tint(out: &mut RgbImage, e: &Entity, alpha: f32) {
    if let Some(mask) = e.mask.as_ref().and_then(|m| m.to_mask()) {
        let c = colour_of(e.id);
        for (i, _) in mask.bits.iter().enumerate().filter(|(_, b)| **b) {
            let (x, y) = ((i as u32) % mask.width.max(1), (i as u32) / mask.width.max(1));
            if let Some(p) = out.get_pixel_mut_checked(x, y) {
                blend(p, c, alpha);
            }
        }
    }
}

/// An entity as a record carries it (no mask): outlined, or for stuff only labelled, by [`render_outlines`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    pub id: u32,
    pub tag: String,
    pub stuff: bool,
    /// `[x1, y1, x2, y2]` in image pixels.
    pub box_px: [f32; 4],
    pub text: Option<String>,
}

/// Renders records' entities on a frame: thing boxes outlined and labelled `#id tag`, stuff labelled at the
/// centre of its box (a record has no masks).
pub fn render_outlines(img: &RgbImage, outlines: &[Outline]) -> RgbImage {
    let mut out = img.clone();
    let scale = if img.width().max(img.height()) >= 1000 { 2 } else { 1 };
    for o in outlines.iter().filter(|o| !o.stuff) {
        let [x1, y1, x2, y2] = o.box_px.map(|v| v.round() as i64);
        rect(&mut out, x1, y1, x2, y2, colour_of(o.id), 2);
    }
    for o in outlines {
        let [x1, y1, x2, y2] = o.box_px.map(|v| v.round() as i64);
        let text = label_text(o.id, &o.tag, o.text.as_deref());
        let (lx, ly) = if o.stuff { ((x1 + x2) / 2 - 4 * scale * text.len() as i64, (y1 + y2) / 2) } else { (x1, y1 - 8 * scale - 2) };
        label(&mut out, lx, ly, &text, colour_of(o.id), scale);
    }
    out
}

/// `#id tag 'text read'`, the text cut to [`LABEL_TEXT_CHARS`].
fn label_text(id: u32, tag: &str, read: Option<&str>) -> String {
    let mut text = format!("#{id} {tag}");
    if let Some(t) = read {
        let mut shown: String = t.chars().take(LABEL_TEXT_CHARS).collect();
        if t.chars().count() > LABEL_TEXT_CHARS {
            shown.push_str("...");
        }
        text.push_str(&format!(" '{shown}'"));
    }
    text
}

/// Most characters of read text shown in a label.
const LABEL_TEXT_CHARS: usize = 24;

/// Renders the overlay for one image.
pub fn render(img: &RgbImage, entities: &[Entity]) -> RgbImage {
    let mut out = img.clone();
    let scale = if img.width().max(img.height()) >= 1000 { 2 } else { 1 };
    for e in entities.iter().filter(|e| e.kind == Kind::Stuff) {
        tint(&mut out, e, 0.35);
    }
    // things whose mask a model gave (or text lines) are tinted too; an ellipse is only the box's guess
    for e in entities.iter().filter(|e| e.kind == Kind::Thing && e.mask_source.is_some_and(|s| s != MaskSource::BoxEllipse)) {
        tint(&mut out, e, 0.3);
    }
    for e in entities.iter().filter(|e| e.kind == Kind::Thing) {
        let [x1, y1, x2, y2] = e.box_px.map(|v| v.round() as i64);
        rect(&mut out, x1, y1, x2, y2, colour_of(e.id), 2);
    }
    for e in entities.iter().filter(|e| e.pose.is_some()) {
        skeleton(&mut out, e, scale + 1);
    }
    for e in entities {
        let [x1, y1, x2, y2] = e.box_px.map(|v| v.round() as i64);
        let text = label_text(e.id, &e.tag, e.attributes.text.as_ref().map(|t| t.text.as_str()));
        let (lx, ly) = match e.kind {
            Kind::Thing => (x1, y1 - 8 * scale - 2),
            Kind::Stuff => ((x1 + x2) / 2 - 4 * scale * text.len() as i64, (y1 + y2) / 2),
        };
        label(&mut out, lx, ly, &text, colour_of(e.id), scale);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Position;

    #[test]
    fn draws_box_outline_and_label_inside_the_image() {
        let img = RgbImage::from_pixel(100, 80, Rgb([128, 128, 128]));
        let e = crate::scene::test_entity(1, "dog", Kind::Thing, [20.0, 30.0, 60.0, 70.0], 0.2, Position::Centre);
        let out = render(&img, &[e]);
        assert_eq!(out.get_pixel(40, 70).0, colour_of(1), "bottom edge drawn");
        assert_eq!(out.get_pixel(40, 50).0, [128, 128, 128], "inside untouched");
        // label background darkens the area above the box
        assert!(out.get_pixel(21, 22).0[0] < 128);
    }

    #[test]
    fn model_masks_are_tinted_and_ellipses_are_not() {
        let img = RgbImage::from_pixel(100, 80, Rgb([128, 128, 128]));
        let mut person = crate::scene::test_entity(1, "person", Kind::Thing, [10.0, 10.0, 40.0, 70.0], 0.2, Position::Left);
        let mask = crate::perceive::masks::BoxMask::from_fn(&person.bbox(), 100, 80, |x, _| x < 25);
        person.mask = Some(mask.to_rle(100, 80));
        person.mask_source = Some(MaskSource::PersonSegmenter);
        let mut guess = crate::scene::test_entity(2, "dog", Kind::Thing, [50.0, 30.0, 90.0, 70.0], 0.2, Position::Right);
        guess.mask = Some(crate::perceive::masks::BoxMask::ellipse(&guess.bbox(), 100, 80).to_rle(100, 80));
        guess.mask_source = Some(MaskSource::BoxEllipse);
        let out = render(&img, &[person, guess]);
        assert_ne!(out.get_pixel(20, 40).0, [128, 128, 128], "inside the person's mask");
        assert_eq!(out.get_pixel(30, 40).0, [128, 128, 128], "in the box, outside the mask");
        assert_eq!(out.get_pixel(70, 50).0, [128, 128, 128], "an ellipse is not drawn as a mask");
    }

    #[test]
    fn visible_keypoints_are_drawn_as_a_skeleton() {
        use crate::scene::pose::{Joint, Keypoint, PoseInfo, PoseSource};
        let img = RgbImage::from_pixel(100, 100, Rgb([128, 128, 128]));
        let mut person = crate::scene::test_entity(3, "person", Kind::Thing, [10.0, 10.0, 90.0, 90.0], 0.5, Position::Centre);
        person.pose = Some(PoseInfo { score: 0.9, source: PoseSource::Frame, visible: 2, threshold: 0.3 });
        person.keypoints = Joint::ALL
            .iter()
            .map(|&name| {
                let (x, y, score) = match name {
                    Joint::LeftHip => (0.3, 0.5, 0.9),
                    Joint::LeftKnee => (0.3, 0.8, 0.9),
                    Joint::RightHip => (0.7, 0.5, 0.1), // not visible
                    _ => (0.5, 0.5, 0.0),
                };
                Keypoint { name, x, y, score }
            })
            .collect();
        let out = render(&img, &[person]);
        assert_eq!(out.get_pixel(30, 65).0, colour_of(3), "the thigh between hip and knee");
        assert_eq!(out.get_pixel(30, 80).0, [255, 255, 255], "the knee");
        assert_eq!(out.get_pixel(50, 50).0, [128, 128, 128], "no limb to an invisible hip");
        assert_eq!(out.get_pixel(70, 50).0, [128, 128, 128], "an invisible joint is not drawn");
    }
}

//! Masks: box-local masks ([`BoxMask`]), full-image masks and their COCO RLE, the one inscribed-ellipse test, and
//! the masks of things. People get theirs from the person segmenter run on their box; other things from the
//! semantic segmenter's pixels of their own class inside their box, where those pixels agree with the box; a
//! thing no model agrees on keeps the ellipse inscribed in its box, and says so.
//!
//! Masks are kept box-local ([`BoxMask`]): a thing's mask never reaches outside its box, and a full-image
//! bitmap per thing would cost megabytes per entity on large frames.

use super::stuff::LabelMap;
use super::PerceiveError;
use crate::engine::Engine;
use crate::geometry::BoxF;
use crate::models::{DecoderManifest, Manifest, Role};
use crate::timing::{ModelName, Stage, Timings};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Where an entity's mask came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskSource {
    /// The person segmenter on the person's box.
    PersonSegmenter,
    /// The person segmenter's mask of the same person on an earlier frame (in a stream, between its runs),
    /// moved and scaled to the person's box.
    PersonCarried,
    /// The semantic segmenter's pixels of the thing's class inside its box.
    Segmenter,
    /// No model agreed with the box: the ellipse inscribed in it.
    BoxEllipse,
    /// A stuff region of the semantic segmenter.
    Region,
    /// Text read on nothing detected: the rectangles of its lines.
    TextLines,
}

/// A binary mask at image resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub bits: Vec<bool>,
}

/// COCO's uncompressed run-length encoding: column-major runs, starting with a run of zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]`, as COCO writes it.
    pub size: [u32; 2],
    pub counts: Vec<u32>,
}

impl Mask {
    pub fn area(&self) -> u64 {
        self.bits.iter().filter(|b| **b).count() as u64
    }

    pub fn get(&self, x: u32, y: u32) -> bool {
        x < self.width && self.bits.get((y * self.width + x) as usize).copied().unwrap_or(false)
    }

    /// Tight box around the set pixels (pixel edges), or None for an empty mask.
    pub fn bbox(&self) -> Option<BoxF> {
        let (mut x1, mut y1, mut x2, mut y2) = (u32::MAX, u32::MAX, 0, 0);
        let mut any = false;
        for (i, _) in self.bits.iter().enumerate().filter(|(_, b)| **b) {
            let (x, y) = ((i as u32) % self.width.max(1), (i as u32) / self.width.max(1));
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
            any = true;
        }
        any.then(|| BoxF::new(x1 as f32, y1 as f32, x2 as f32, y2 as f32))
    }

    pub fn to_rle(&self) -> Rle {
        let mut counts = Vec::new();
        let mut current = false;
        let mut run = 0u32;
        for x in 0..self.width {
            for y in 0..self.height {
                let b = self.get(x, y);
                if b != current {
                    counts.push(run);
                    run = 0;
                    current = b;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle { size: [self.height, self.width], counts }
    }
}

impl Rle {
    /// Decodes back into a mask; None when the counts do not cover the declared size exactly.
    pub fn to_mask(&self) -> Option<Mask> {
        let [h, w] = self.size;
        let total = (h as usize).checked_mul(w as usize)?;
        if self.counts.iter().map(|&c| c as usize).sum::<usize>() != total {
            return None;
        }
        let mut bits = vec![false; total];
        let mut pos = 0usize;
        for (i, &c) in self.counts.iter().enumerate() {
            if i % 2 == 1 {
                for p in pos..pos + c as usize {
                    let (x, y) = (p / h.max(1) as usize, p % h.max(1) as usize);
                    if let Some(b) = bits.get_mut(y * w as usize + x) {
                        *b = true;
                    }
                }
            }
            pos += c as usize;
        }
        Some(Mask { width: w, height: h, bits })
    }
}

/// Point queries on an RLE without decoding it to a full frame: where each run ends, column-major; a query is a
/// binary search. None when the counts do not cover the declared size exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct RleLookup {
    width: u32,
    height: u32,
    ends: Vec<u64>,
}

impl RleLookup {
    pub fn new(rle: &Rle) -> Option<RleLookup> {
        let [height, width] = rle.size;
        let mut end = 0u64;
        let ends: Vec<u64> = rle
            .counts
            .iter()
            .map(|&c| {
                end += u64::from(c);
                end
            })
            .collect();
        (end == u64::from(width) * u64::from(height)).then_some(RleLookup { width, height, ends })
    }

    /// Whether pixel (x, y) is set; pixels outside the frame are not.
    pub fn get(&self, x: u32, y: u32) -> bool {
        if x >= self.width || y >= self.height {
            return false;
        }
        let p = u64::from(x) * u64::from(self.height) + u64::from(y);
        // runs alternate, starting with a run of zeros: the run holding p is the number of runs ending at or before it
        self.ends.partition_point(|&e| e <= p) % 2 == 1
    }
}

/// Whether a pixel's centre lies in the ellipse inscribed in `b`: the one ellipse every mask, region and colour
/// sample uses (a thing no model gives a mask, the panoptic painter's fallback, the core of a box for colour).
pub fn in_inscribed_ellipse(b: &BoxF) -> impl Fn(u32, u32) -> bool {
    let (cx, cy) = b.centre();
    let (rx, ry) = ((b.width() / 2.0).max(0.5), (b.height() / 2.0).max(0.5));
    move |x, y| {
        let (dx, dy) = ((x as f32 + 0.5 - cx) / rx, (y as f32 + 0.5 - cy) / ry);
        dx * dx + dy * dy <= 1.0
    }
}

/// A mask confined to a pixel rectangle of the image: `bits` is `w × h`, row-major, from `(x0, y0)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxMask {
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
    pub bits: Vec<bool>,
}

impl BoxMask {
    /// The integer pixel rectangle covering `bbox` inside a `width × height` image.
    pub(crate) fn frame(bbox: &BoxF, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let b = bbox.clamp(width as f32, height as f32);
        let (x0, y0) = (b.x1.floor().max(0.0) as u32, b.y1.floor().max(0.0) as u32);
        let (x1, y1) = ((b.x2.ceil() as u32).min(width), (b.y2.ceil() as u32).min(height));
        (x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0))
    }

    /// The pixels of `bbox` for which `inside(x, y)` holds (image coordinates).
    pub fn from_fn(bbox: &BoxF, width: u32, height: u32, mut inside: impl FnMut(u32, u32) -> bool) -> BoxMask {
        let (x0, y0, w, h) = Self::frame(bbox, width, height);
        let mut bits = Vec::with_capacity(w as usize * h as usize);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                bits.push(inside(x, y));
            }
        }
        BoxMask { x0, y0, w, h, bits }
    }

    /// [`Self::from_fn`] into this mask, reusing its pixel buffer (no allocation once it is large enough).
    pub fn refill_from_fn(&mut self, bbox: &BoxF, width: u32, height: u32, mut inside: impl FnMut(u32, u32) -> bool) {
        let (x0, y0, w, h) = Self::frame(bbox, width, height);
        (self.x0, self.y0, self.w, self.h) = (x0, y0, w, h);
        self.bits.clear();
        self.bits.reserve(w as usize * h as usize);
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.bits.push(inside(x, y));
            }
        }
    }

    /// The ellipse inscribed in `bbox`.
    pub fn ellipse(bbox: &BoxF, width: u32, height: u32) -> BoxMask {
        let mut m = BoxMask { x0: 0, y0: 0, w: 0, h: 0, bits: Vec::new() };
        m.refill_ellipse(bbox, width, height);
        m
    }

    /// [`Self::ellipse`] into this mask, reusing its pixel buffer.
    pub fn refill_ellipse(&mut self, bbox: &BoxF, width: u32, height: u32) {
        let b = bbox.clamp(width as f32, height as f32);
        self.refill_from_fn(&b, width, height, in_inscribed_ellipse(&b));
    }

    pub fn area(&self) -> u64 {
        self.bits.iter().filter(|b| **b).count() as u64
    }

    /// Calls `f(x, y)` for every set pixel, in image coordinates, row by row.
    pub fn for_each_set(&self, mut f: impl FnMut(u32, u32)) {
        for (row, chunk) in self.bits.chunks(self.w.max(1) as usize).enumerate() {
            for (col, _) in chunk.iter().enumerate().filter(|(_, b)| **b) {
                f(self.x0 + col as u32, self.y0 + row as u32);
            }
        }
    }

    /// Whether image pixel `(x, y)` is set.
    pub fn get(&self, x: u32, y: u32) -> bool {
        if x < self.x0 || y < self.y0 || x >= self.x0 + self.w || y >= self.y0 + self.h {
            return false;
        }
        let i = (y - self.y0) as usize * self.w as usize + (x - self.x0) as usize;
        self.bits.get(i).copied().unwrap_or(false)
    }

    /// Sets every pixel of this mask in a full-image bitmap (`width` wide).
    pub fn paint_into(&self, full: &mut [bool], width: u32) {
        for (row, chunk) in self.bits.chunks(self.w.max(1) as usize).enumerate() {
            let start = (self.y0 as usize + row) * width as usize + self.x0 as usize;
            if let Some(dst) = full.get_mut(start..start + chunk.len()) {
                for (d, s) in dst.iter_mut().zip(chunk) {
                    *d |= *s;
                }
            }
        }
    }

    /// A full-image mask (for tests and small images; entities carry the RLE).
    pub fn to_mask(&self, width: u32, height: u32) -> Mask {
        let mut bits = vec![false; width as usize * height as usize];
        self.paint_into(&mut bits, width);
        Mask { width, height, bits }
    }

    /// COCO uncompressed RLE over the whole `width × height` image, column-major, without a full bitmap.
    pub fn to_rle(&self, width: u32, height: u32) -> Rle {
        let mut counts = Vec::new();
        let mut current = false;
        let mut run = 0u32;
        let mut push = |bit: bool, n: u32, counts: &mut Vec<u32>| {
            if n == 0 {
                return;
            }
            if bit != current {
                counts.push(run);
                run = 0;
                current = bit;
            }
            run += n;
        };
        for x in 0..width {
            if x < self.x0 || x >= self.x0 + self.w {
                push(false, height, &mut counts);
                continue;
            }
            push(false, self.y0.min(height), &mut counts);
            for y in self.y0..(self.y0 + self.h).min(height) {
                push(self.get(x, y), 1, &mut counts);
            }
            push(false, height.saturating_sub(self.y0 + self.h), &mut counts);
        }
        counts.push(run);
        Rle { size: [height, width], counts }
    }
}

/// The person segmenter: one probability map per person crop.
pub struct PersonSegmenter {
    manifest: Manifest,
    engine: Box<dyn Engine>,
    threshold: f32,
    /// The manifest's name as timings carry it.
    label: ModelName,
    prep: super::preprocess::Preprocessor,
}

/// How much of a person's box the model sees around it on each side (fraction of the box), for context.
const CROP_CONTEXT: f32 = 0.1;

impl PersonSegmenter {
    pub fn new(manifest: Manifest, engine: Box<dyn Engine>) -> Result<Self, PerceiveError> {
        let threshold = match (&manifest.role, &manifest.decoder) {
            (Role::PersonSegmenter, DecoderManifest::Probability { threshold }) => *threshold,
            _ => {
                return Err(PerceiveError::WrongModel {
                    name: manifest.name.clone(),
                    want: "person segmenter",
                    reason: "its manifest does not describe a per-pixel person probability".into(),
                })
            }
        };
        let label = ModelName::from(manifest.name.as_str());
        Ok(PersonSegmenter { manifest, engine, threshold, label, prep: super::preprocess::Preprocessor::new() })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn provider(&self) -> String {
        self.engine.provider()
    }

    /// The person pixels inside `bbox`: the model sees the box widened by [`CROP_CONTEXT`], stretched to its
    /// input; its map is read back inside the box only.
    pub fn segment(&mut self, rgb: &RgbImage, bbox: &BoxF, timings: &mut Timings) -> Result<BoxMask, PerceiveError> {
        let (w, h) = (rgb.width(), rgb.height());
        let b = bbox.clamp(w as f32, h as f32);
        let t = Instant::now();
        let (mx, my) = (CROP_CONTEXT * b.width(), CROP_CONTEXT * b.height());
        let crop_box = BoxF::new(b.x1 - mx, b.y1 - my, b.x2 + mx, b.y2 + my).clamp(w as f32, h as f32);
        let (cx, cy, cw, ch) = BoxMask::frame(&crop_box, w, h);
        if cw == 0 || ch == 0 {
            return Ok(BoxMask::from_fn(&b, w, h, |_, _| false));
        }
        let crop = super::resize::RgbView::crop(rgb, cx, cy, cw, ch);
        let (tensor, lb) = self.prep.preprocess(crop, &self.manifest.input)?;
        timings.record(Stage::Preprocess, Some(&self.label), t);
        let t = Instant::now();
        let outputs = self.engine.run(std::slice::from_ref(tensor))?;
        timings.record(Stage::Inference, Some(&self.label), t);
        let t = Instant::now();
        let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("person segmenter: no output".into()))?;
        let probs = out.as_f32()?;
        let (mh, mw) = match out.shape.as_slice() {
            [1, h, w, 1] | [1, 1, h, w] | [1, h, w] => (*h, *w),
            s => return Err(PerceiveError::BadOutput(format!("person segmenter output shape {s:?}, expected [1, H, W, 1]"))),
        };
        if probs.len() < mh * mw {
            return Err(PerceiveError::BadOutput(format!("person segmenter output holds {} values for {mw}x{mh}", probs.len())));
        }
        let threshold = self.threshold;
        let mask = BoxMask::from_fn(&b, w, h, |x, y| {
            let px = ((x - cx) as f32 + 0.5) * lb.scale_x + lb.pad_x;
            let py = ((y - cy) as f32 + 0.5) * lb.scale_y + lb.pad_y;
            let (ix, iy) = ((px as usize).min(mw.saturating_sub(1)), (py as usize).min(mh.saturating_sub(1)));
            probs.get(iy * mw + ix).is_some_and(|p| *p >= threshold)
        });
        timings.record(Stage::Postprocess, Some(&self.label), t);
        Ok(mask)
    }
}

/// A model's mask agrees with a box when it fills at least this fraction of it.
pub const MIN_BOX_FILL: f32 = 0.2;

/// The semantic segmenter's pixels of `classes` inside `bbox`, or None when they fill less than
/// [`MIN_BOX_FILL`] of it (the segmenter did not see that thing there).
pub fn from_label_map(map: &LabelMap, bbox: &BoxF, classes: &[u8]) -> Option<BoxMask> {
    if classes.is_empty() {
        return None;
    }
    let width = map.width;
    let mask = BoxMask::from_fn(bbox, map.width, map.height, |x, y| {
        map.classes.get(y as usize * width as usize + x as usize).is_some_and(|c| classes.contains(c))
    });
    agrees(&mask).then_some(mask)
}

/// Whether a model's mask fills enough of its box to be believed.
pub fn agrees(mask: &BoxMask) -> bool {
    let total = (mask.w as u64 * mask.h as u64).max(1);
    mask.area() as f32 >= MIN_BOX_FILL * total as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn rle_point_queries_equal_the_decoded_mask(w in 1u32..12, h in 1u32..12, seed in proptest::collection::vec(proptest::bool::ANY, 144)) {
            let bits: Vec<bool> = seed.iter().take((w * h) as usize).copied().collect();
            let mask = Mask { width: w, height: h, bits };
            let lookup = RleLookup::new(&mask.to_rle()).unwrap();
            for y in 0..h + 1 {
                for x in 0..w + 1 {
                    proptest::prop_assert_eq!(lookup.get(x, y), x < w && y < h && mask.get(x, y), "({}, {})", x, y);
                }
            }
        }
    }

    #[test]
    fn an_rle_that_does_not_cover_its_size_has_no_lookup() {
        assert!(RleLookup::new(&Rle { size: [2, 2], counts: vec![1, 2] }).is_none());
        assert!(RleLookup::new(&Rle { size: [2, 2], counts: vec![0, 4] }).unwrap().get(1, 1));
    }

    #[test]
    fn box_mask_rle_equals_the_full_mask_rle() {
        let b = BoxF::new(2.3, 1.0, 6.7, 5.0);
        let m = BoxMask::from_fn(&b, 9, 7, |x, y| (x + y) % 3 != 0);
        assert_eq!((m.x0, m.y0, m.w, m.h), (2, 1, 5, 4));
        let full = m.to_mask(9, 7);
        assert_eq!(m.to_rle(9, 7), full.to_rle());
        assert_eq!(m.to_rle(9, 7).to_mask().unwrap(), full);
        assert_eq!(full.area(), m.area());
        assert!(!m.get(0, 0) && m.get(2, 2) == full.get(2, 2));
    }

    #[test]
    fn ellipse_fills_the_centre_not_the_corners() {
        let m = BoxMask::ellipse(&BoxF::new(10.0, 10.0, 30.0, 20.0), 40, 40);
        assert!(m.get(20, 15) && !m.get(10, 10) && !m.get(29, 19));
        let fill = m.area() as f32 / 200.0;
        assert!((fill - std::f32::consts::FRAC_PI_4).abs() < 0.08, "{fill}");
    }

    #[test]
    fn label_map_masks_only_where_the_segmenter_agrees() {
        // a 20x10 map: class 5 fills the left half
        let classes = (0..200).map(|i| if i % 20 < 10 { 5 } else { 1 }).collect();
        let map = LabelMap { width: 20, height: 10, classes };
        let m = from_label_map(&map, &BoxF::new(5.0, 0.0, 15.0, 10.0), &[5]).unwrap();
        assert_eq!(m.area(), 50);
        assert!(m.get(6, 3) && !m.get(12, 3));
        assert!(from_label_map(&map, &BoxF::new(12.0, 0.0, 20.0, 10.0), &[5]).is_none(), "no class pixels there");
        assert!(from_label_map(&map, &BoxF::new(0.0, 0.0, 5.0, 5.0), &[]).is_none());
    }
}

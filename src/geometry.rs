//! Boxes and coordinate transforms. Transforms are values (`Letterbox`), never implicit state, and are named
//! after what they map: `image_from_model` takes a point in model-input pixels to original-image pixels.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixels of some image, `x1 <= x2`, `y1 <= y2` (top-left, bottom-right).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BoxF {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxF {
    /// A box from two corners in any order; NaN coordinates become 0 so a bad tensor cannot poison sorting.
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        let f = |v: f32| if v.is_finite() { v } else { 0.0 };
        let (x1, x2, y1, y2) = (f(x1), f(x2), f(y1), f(y2));
        Self { x1: x1.min(x2), y1: y1.min(y2), x2: x1.max(x2), y2: y1.max(y2) }
    }

    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn centre(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    pub fn intersection(&self, o: &BoxF) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        w * h
    }

    /// Intersection over union; 0 for two empty boxes.
    pub fn iou(&self, o: &BoxF) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Fraction of `self` covered by `o` (intersection over self's area).
    /// A total order on boxes (by x1, y1, x2, y2, each by `f32::total_cmp`): a tie-break that makes a ranking total.
    pub fn total_cmp(&self, o: &BoxF) -> std::cmp::Ordering {
        self.x1
            .total_cmp(&o.x1)
            .then(self.y1.total_cmp(&o.y1))
            .then(self.x2.total_cmp(&o.x2))
            .then(self.y2.total_cmp(&o.y2))
    }

    /// The smallest box holding both.
    pub fn hull(&self, o: &BoxF) -> BoxF {
        BoxF { x1: self.x1.min(o.x1), y1: self.y1.min(o.y1), x2: self.x2.max(o.x2), y2: self.y2.max(o.y2) }
    }

    pub fn covered_by(&self, o: &BoxF) -> f32 {
        let a = self.area();
        if a > 0.0 {
            self.intersection(o) / a
        } else {
            0.0
        }
    }

    pub fn clamp(&self, width: f32, height: f32) -> BoxF {
        BoxF::new(
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
            self.x2.clamp(0.0, width),
            self.y2.clamp(0.0, height),
        )
    }

    pub fn translate(&self, dx: f32, dy: f32) -> BoxF {
        BoxF::new(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy)
    }

    /// Normalised `[x1, y1, x2, y2]` in [0, 1], rounded to 3 decimals (the SA-Pancap caption convention).
    pub fn normalised(&self, width: u32, height: u32) -> [f64; 4] {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let r = |v: f32, d: f64| ((f64::from(v) / d * 1000.0).round() / 1000.0).clamp(0.0, 1.0);
        [r(self.x1, w), r(self.y1, h), r(self.x2, w), r(self.y2, h)]
    }

    /// COCO `[x, y, w, h]` in pixels.
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.x1, self.y1, self.width(), self.height()]
    }
}

/// How an image was placed in a model's input: `model = image * scale + pad`, per axis.
/// Covers keep-aspect letterboxing (top-left or centred) and plain stretching.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Letterbox {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    /// Size of the resized image content inside the model input, in model pixels.
    pub content_w: u32,
    pub content_h: u32,
    pub model_w: u32,
    pub model_h: u32,
}

/// Where the resized image goes in the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Keep aspect ratio, paste at the top-left corner, pad right/bottom.
    LetterboxTopLeft,
    /// Keep aspect ratio, centre the content, pad all sides.
    LetterboxCentre,
    /// Ignore aspect ratio and fill the whole input.
    Stretch,
}

impl Letterbox {
    pub fn new(image_w: u32, image_h: u32, model_w: u32, model_h: u32, mode: ResizeMode) -> Self {
        let (iw, ih) = (image_w.max(1) as f32, image_h.max(1) as f32);
        let (mw, mh) = (model_w.max(1) as f32, model_h.max(1) as f32);
        match mode {
            ResizeMode::Stretch => Letterbox {
                scale_x: mw / iw,
                scale_y: mh / ih,
                pad_x: 0.0,
                pad_y: 0.0,
                content_w: model_w,
                content_h: model_h,
                model_w,
                model_h,
            },
            ResizeMode::LetterboxTopLeft | ResizeMode::LetterboxCentre => {
                let r = (mw / iw).min(mh / ih);
                let cw = ((iw * r).round() as u32).clamp(1, model_w.max(1));
                let ch = ((ih * r).round() as u32).clamp(1, model_h.max(1));
                let (px, py) = if mode == ResizeMode::LetterboxCentre {
                    (((model_w - cw) / 2) as f32, ((model_h - ch) / 2) as f32)
                } else {
                    (0.0, 0.0)
                };
                // The effective scale is the content size over the image size, so that the content edges map
                // exactly onto the image edges after rounding.
                Letterbox {
                    scale_x: cw as f32 / iw,
                    scale_y: ch as f32 / ih,
                    pad_x: px,
                    pad_y: py,
                    content_w: cw,
                    content_h: ch,
                    model_w,
                    model_h,
                }
            }
        }
    }

    pub fn model_from_image(&self, x: f32, y: f32) -> (f32, f32) {
        (x * self.scale_x + self.pad_x, y * self.scale_y + self.pad_y)
    }

    pub fn image_from_model(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.pad_x) / self.scale_x, (y - self.pad_y) / self.scale_y)
    }

    pub fn box_image_from_model(&self, b: &BoxF) -> BoxF {
        let (x1, y1) = self.image_from_model(b.x1, b.y1);
        let (x2, y2) = self.image_from_model(b.x2, b.y2);
        BoxF::new(x1, y1, x2, y2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BoxF::new(0.0, 0.0, 10.0, 10.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoxF::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let half = BoxF::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&half) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn nan_coordinates_do_not_survive() {
        let b = BoxF::new(f32::NAN, 1.0, 5.0, f32::INFINITY);
        assert!(b.x1.is_finite() && b.y2.is_finite());
    }

    #[test]
    fn normalised_box_has_three_decimals() {
        let b = BoxF::new(133.1, 207.0, 324.6, 542.3);
        assert_eq!(b.normalised(768, 576), [0.173, 0.359, 0.423, 0.941]);
    }

    #[test]
    fn top_left_letterbox_of_landscape_image() {
        let lb = Letterbox::new(640, 480, 416, 416, ResizeMode::LetterboxTopLeft);
        assert_eq!((lb.content_w, lb.content_h), (416, 312));
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 0.0));
        let c = Letterbox::new(640, 480, 416, 416, ResizeMode::LetterboxCentre);
        assert_eq!((c.pad_x, c.pad_y), (0.0, 52.0));
    }

    proptest! {
        #[test]
        fn letterbox_round_trip(iw in 1u32..5000, ih in 1u32..5000, mw in 32u32..1024, mh in 32u32..1024,
                                fx in 0.0f32..1.0, fy in 0.0f32..1.0, mode in 0u8..3) {
            let mode = [ResizeMode::LetterboxTopLeft, ResizeMode::LetterboxCentre, ResizeMode::Stretch][mode as usize];
            let lb = Letterbox::new(iw, ih, mw, mh, mode);
            let (x, y) = (fx * iw as f32, fy * ih as f32);
            let (mx, my) = lb.model_from_image(x, y);
            prop_assert!(mx >= -1e-3 && mx <= mw as f32 + 1e-3);
            prop_assert!(my >= -1e-3 && my <= mh as f32 + 1e-3);
            let (bx, by) = lb.image_from_model(mx, my);
            prop_assert!((bx - x).abs() <= 1e-3 * iw as f32 + 1e-3);
            prop_assert!((by - y).abs() <= 1e-3 * ih as f32 + 1e-3);
        }

        #[test]
        fn iou_is_symmetric_and_bounded(a in proptest::array::uniform4(0.0f32..100.0),
                                        b in proptest::array::uniform4(0.0f32..100.0)) {
            let (a, b) = (BoxF::new(a[0], a[1], a[2], a[3]), BoxF::new(b[0], b[1], b[2], b[3]));
            let (i, j) = (a.iou(&b), b.iou(&a));
            prop_assert!((i - j).abs() < 1e-5);
            prop_assert!((0.0..=1.0 + 1e-6).contains(&i));
        }
    }
}

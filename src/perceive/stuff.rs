//! Semantic label map → stuff regions (sky, road, grass, wall…): the pixels of each stuff class that no thing
//! instance claims, with a mask and a box.

use super::PerceiveError;
use crate::engine::Tensor;
use crate::geometry::{BoxF, Letterbox};
use serde::{Deserialize, Serialize};

/// One class id per image pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub width: u32,
    pub height: u32,
    pub classes: Vec<u8>,
}

/// Crops the letterbox padding off an ArgMax output `[1, H, W]` and resizes it (nearest) to the image.
pub fn decode_argmax(out: &Tensor, lb: &Letterbox, width: u32, height: u32) -> Result<LabelMap, PerceiveError> {
    let v = out.as_i32()?;
    let (mh, mw) = match out.shape.as_slice() {
        [1, h, w] => (*h, *w),
        s => return Err(PerceiveError::BadOutput(format!("segmenter output shape {s:?}, expected [1, H, W]"))),
    };
    if (mw as u32, mh as u32) != (lb.model_w, lb.model_h) {
        return Err(PerceiveError::BadOutput(format!(
            "segmenter output {mw}x{mh} does not match the model input {}x{}",
            lb.model_w, lb.model_h
        )));
    }
    let xs: Vec<usize> = (0..width)
        .map(|x| (((x as f32 + 0.5) * lb.scale_x + lb.pad_x) as usize).min(mw.saturating_sub(1)))
        .collect();
    let mut classes = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        let my = (((y as f32 + 0.5) * lb.scale_y + lb.pad_y) as usize).min(mh.saturating_sub(1));
        let row = v.get(my * mw..(my + 1) * mw).unwrap_or_default();
        classes.extend(xs.iter().map(|&mx| row.get(mx).map(|&c| c.clamp(0, 255) as u8).unwrap_or(0)));
    }
    Ok(LabelMap { width, height, classes })
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

/// Pixels a thing instance claims: the ellipse inscribed in its box (an approximation of the object's
/// silhouette that leaves the box corners to the background).
pub fn claimed_by_things(width: u32, height: u32, boxes: &[BoxF]) -> Vec<bool> {
    let mut claimed = vec![false; width as usize * height as usize];
    for b in boxes {
        let b = b.clamp(width as f32, height as f32);
        let (cx, cy) = b.centre();
        let (rx, ry) = (b.width() / 2.0, b.height() / 2.0);
        if rx < 0.5 || ry < 0.5 {
            continue;
        }
        for y in (b.y1.floor() as u32)..(b.y2.ceil() as u32).min(height) {
            let dy = (y as f32 + 0.5 - cy) / ry;
            let t = 1.0 - dy * dy;
            if t <= 0.0 {
                continue;
            }
            let half = rx * t.sqrt();
            let x1 = (cx - half).max(0.0).round() as u32;
            let x2 = ((cx + half).round() as u32).min(width);
            let row = (y * width) as usize;
            if let Some(s) = claimed.get_mut(row + x1 as usize..row + x2 as usize) {
                s.fill(true);
            }
        }
    }
    claimed
}

/// A stuff region: one per stuff class present, minus claimed pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct StuffRegion {
    pub class: usize,
    pub mask: Mask,
    pub bbox: BoxF,
    pub area_fraction: f32,
}

/// Builds one region per stuff class whose unclaimed pixels cover at least `min_area_fraction` of the image.
pub fn stuff_regions(
    map: &LabelMap,
    claimed: &[bool],
    is_stuff: impl Fn(usize) -> bool,
    min_area_fraction: f32,
) -> Vec<StuffRegion> {
    let mut counts = [0u64; 256];
    for (&c, &taken) in map.classes.iter().zip(claimed.iter().chain(std::iter::repeat(&false))) {
        if !taken {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
            }
        }
    }
    let total = (map.width as u64 * map.height as u64).max(1);
    let mut regions = Vec::new();
    for (class, &n) in counts.iter().enumerate() {
        if n == 0 || !is_stuff(class) || (n as f32 / total as f32) < min_area_fraction {
            continue;
        }
        let bits: Vec<bool> = map
            .classes
            .iter()
            .zip(claimed.iter().chain(std::iter::repeat(&false)))
            .map(|(&c, &taken)| c as usize == class && !taken)
            .collect();
        let mask = Mask { width: map.width, height: map.height, bits };
        if let Some(bbox) = mask.bbox() {
            regions.push(StuffRegion { class, mask, bbox, area_fraction: n as f32 / total as f32 });
        }
    }
    regions.sort_by(|a, b| b.area_fraction.total_cmp(&a.area_fraction));
    regions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TensorData;
    use crate::geometry::ResizeMode;

    #[test]
    fn argmax_is_cropped_and_resized() {
        // 4x4 model input, image 8x4 -> content 4x2 at the top, rows 2..4 are padding
        let lb = Letterbox::new(8, 4, 4, 4, ResizeMode::LetterboxTopLeft);
        let v = vec![1, 1, 2, 2, 3, 3, 4, 4, 9, 9, 9, 9, 9, 9, 9, 9];
        let t = Tensor::new(vec![1, 4, 4], TensorData::I32(v)).unwrap();
        let m = decode_argmax(&t, &lb, 8, 4).unwrap();
        assert_eq!(&m.classes[..8], &[1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(&m.classes[24..], &[3, 3, 3, 3, 4, 4, 4, 4]);
        assert!(!m.classes.contains(&9), "padding must be cropped");
    }

    #[test]
    fn rle_round_trip_and_coco_order() {
        let mask = Mask { width: 3, height: 2, bits: vec![false, true, true, false, false, true] };
        let rle = mask.to_rle();
        // column-major: col0 = [0,0], col1 = [1,0], col2 = [1,1]
        assert_eq!(rle.counts, vec![2, 1, 1, 2]);
        assert_eq!(rle.size, [2, 3]);
        assert_eq!(rle.to_mask().unwrap(), mask);
        assert_eq!(mask.bbox(), Some(BoxF::new(1.0, 0.0, 3.0, 2.0)));
    }

    #[test]
    fn things_claim_their_ellipse_and_stuff_gets_the_rest() {
        let map = LabelMap { width: 20, height: 20, classes: vec![3; 400] };
        let claimed = claimed_by_things(20, 20, &[BoxF::new(5.0, 5.0, 15.0, 15.0)]);
        assert!(claimed[10 * 20 + 10], "centre is claimed");
        assert!(!claimed[5 * 20 + 5], "box corner stays stuff");
        let r = stuff_regions(&map, &claimed, |c| c == 3, 0.01);
        assert_eq!(r.len(), 1);
        assert!(r[0].area_fraction < 1.0 && r[0].area_fraction > 0.7);
        assert!(!r[0].mask.get(10, 10));
        let none = stuff_regions(&map, &claimed, |c| c != 3, 0.01);
        assert!(none.is_empty());
    }
}

//! Semantic label map → stuff regions (sky, road, grass, wall…): the pixels of each stuff class that no thing
//! instance claims, with a mask and a box.

use super::PerceiveError;
use crate::engine::Tensor;
use super::masks::Mask;
use crate::geometry::{BoxF, Letterbox};

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
        let mut claimed = vec![false; 400];
        crate::perceive::masks::BoxMask::ellipse(&BoxF::new(5.0, 5.0, 15.0, 15.0), 20, 20).paint_into(&mut claimed, 20);
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

//! Semantic label map → stuff regions (sky, road, grass, wall…): the pixels of each stuff class that no thing
//! instance claims and that hold together — connected pieces labelled in one pass, specks and scattered pieces
//! dropped — with a mask and the box of what is kept.

use super::PerceiveError;
use crate::engine::Tensor;
use super::masks::Rle;
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
    crop_to_image(v, (mw, mh), lb, width, height, |c| c.clamp(0, 255) as u8)
}

/// The segmenter's head done here, on the logits' uint8 codes `[1, C, h, w]` (a graph cut before its head:
/// `engine::dequantize::Head::LogitCodes`): upsampled by `factor` as ONNX Resize does (linear, asymmetric
/// coordinates), requantized (rounding half to even, as QuantizeLinear), and the first class of the highest code
/// per pixel (ArgMax); then cropped and resized to the image as [`decode_argmax`].
pub fn decode_logit_codes(out: &Tensor, factor: u32, lb: &Letterbox, width: u32, height: u32) -> Result<LabelMap, PerceiveError> {
    let (c, h, w) = match out.shape.as_slice() {
        [1, c, h, w] => (*c, *h, *w),
        s => return Err(PerceiveError::BadOutput(format!("segmenter logits shape {s:?}, expected [1, C, H, W]"))),
    };
    let codes = match &out.data {
        crate::engine::TensorData::U8(v) => v.as_slice(),
        _ => return Err(PerceiveError::BadOutput(format!("segmenter logits are {:?}, expected uint8 codes", out.dtype()))),
    };
    let f = factor as usize;
    let mut labels = Vec::new();
    upsample_argmax(codes, (c, h, w), f, &mut labels)?;
    crop_to_image(&labels, (w * f, h * f), lb, width, height, |c| c)
}

/// The label map of a segmenter's output, decoded as its manifest's decoder says (`argmax` or `upsample-argmax`).
pub fn decode_labels(
    out: &Tensor,
    decoder: &crate::models::DecoderManifest,
    lb: &Letterbox,
    width: u32,
    height: u32,
) -> Result<LabelMap, PerceiveError> {
    match decoder {
        crate::models::DecoderManifest::UpsampleArgmax { factor } => decode_logit_codes(out, *factor, lb, width, height),
        crate::models::DecoderManifest::Argmax => decode_argmax(out, lb, width, height),
        other => Err(PerceiveError::BadOutput(format!("a segmenter's output cannot be decoded as {other:?}"))),
    }
}

/// Samples the model-resolution label map `v` (`mw × mh`) at each image pixel's centre (letterbox undone).
fn crop_to_image<T: Copy>(
    v: &[T],
    (mw, mh): (usize, usize),
    lb: &Letterbox,
    width: u32,
    height: u32,
    class: impl Fn(T) -> u8,
) -> Result<LabelMap, PerceiveError> {
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
        classes.extend(xs.iter().map(|&mx| row.get(mx).map(|&c| class(c)).unwrap_or(0)));
    }
    Ok(LabelMap { width, height, classes })
}

/// Upsamples the uint8 logit codes `codes` (`[C, h, w]`, channel-major) by `factor` (a power of two up to 16)
/// and writes the ArgMax class of each of the `h·factor × w·factor` pixels into `labels`, exactly as the source
/// graph's `Resize(linear, asymmetric) → QuantizeLinear → ArgMax` on the same codes: interpolation in code space
/// with integer weights (the dequantization is affine and the weights sum to one, so nothing is lost), the
/// quantizer's rounding half to even, ties to the lower class.
///
/// A cell whose four corner pixels share their ArgMax class has that class everywhere inside: a convex
/// combination keeps the corners' winner ahead of every other class, and ahead by at least a whole code of
/// every lower class, so rounding cannot make a tie it loses. Only the cells on class boundaries are
/// interpolated pixel by pixel.
pub fn upsample_argmax(codes: &[u8], (c, h, w): (usize, usize, usize), factor: usize, labels: &mut Vec<u8>) -> Result<(), PerceiveError> {
    if !(factor.is_power_of_two() && factor <= 16) {
        return Err(PerceiveError::BadOutput(format!("segmenter upsampling factor {factor}: a power of two up to 16 is supported")));
    }
    if c == 0 || c > 256 || h == 0 || w == 0 || codes.len() != c * h * w {
        return Err(PerceiveError::BadOutput(format!("segmenter logits: {} codes for {c} classes of {h}x{w}", codes.len())));
    }
    let plane = h * w;
    // pixel-major codes, so each pixel's classes are contiguous
    let mut pix = vec![0u8; c * plane];
    for (k, ch) in codes.chunks_exact(plane).enumerate() {
        for (p, &q) in ch.iter().enumerate() {
            if let Some(slot) = pix.get_mut(p * c + k) {
                *slot = q;
            }
        }
    }
    let first_max = |v: &[u8]| {
        let mut best = 0usize;
        let mut top = 0u8;
        for (k, &q) in v.iter().enumerate() {
            if k == 0 || q > top {
                best = k;
                top = q;
            }
        }
        best as u8
    };
    let corner: Vec<u8> = pix.chunks_exact(c).map(first_max).collect();
    let (ow, oh) = (w * factor, h * factor);
    labels.clear();
    labels.resize(ow * oh, 0);
    let shift = 2 * factor.trailing_zeros();
    let d = 1u32 << shift;
    let f = factor as u32;
    let mut blend = vec![0u32; c];
    let mut rounded = vec![0u8; c];
    for iy in 0..h {
        let iy1 = (iy + 1).min(h - 1);
        for ix in 0..w {
            let ix1 = (ix + 1).min(w - 1);
            let at = |y: usize, x: usize| corner.get(y * w + x).copied().unwrap_or(0);
            let k = at(iy, ix);
            let uniform = k == at(iy, ix1) && k == at(iy1, ix) && k == at(iy1, ix1);
            let px = |y: usize, x: usize| pix.get((y * w + x) * c..(y * w + x + 1) * c).unwrap_or_default();
            let (a, b, cc, dd) = (px(iy, ix), px(iy, ix1), px(iy1, ix), px(iy1, ix1));
            for fy in 0..factor {
                let row = (iy * factor + fy) * ow + ix * factor;
                let Some(out) = labels.get_mut(row..row + factor) else { continue };
                if uniform {
                    out.fill(k);
                    continue;
                }
                let (wy1, wy0) = (fy as u32, f - fy as u32);
                for (fx, slot) in out.iter_mut().enumerate() {
                    let (wx1, wx0) = (fx as u32, f - fx as u32);
                    for ((((v, &qa), &qb), &qc), &qd) in blend.iter_mut().zip(a).zip(b).zip(cc).zip(dd) {
                        *v = wy0 * (wx0 * u32::from(qa) + wx1 * u32::from(qb)) + wy1 * (wx0 * u32::from(qc) + wx1 * u32::from(qd));
                    }
                    for (q, &v) in rounded.iter_mut().zip(&blend) {
                        let (whole, rest) = (v >> shift, v & (d - 1));
                        let up = 2 * rest > d || (2 * rest == d && whole & 1 == 1);
                        *q = (whole + u32::from(up)).min(255) as u8;
                    }
                    *slot = first_max(&rounded);
                }
            }
        }
    }
    Ok(())
}

/// How raw segmenter pixels become stuff regions: what is a speck, a part of a region, and a region at all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StuffParams {
    /// Least share of the image a region's kept pixels cover; below it the class is dropped as tiny.
    pub min_area: f32,
    /// Connected pieces (4-neighbour) below this share of the image are specks: not part of any region.
    pub speck: f32,
    /// A piece belongs to its class's region when it is at least this share of the class's largest piece;
    /// smaller pieces are scattered pixels, dropped from the mask and the box.
    pub min_part: f32,
    /// A class whose kept pieces hold less than this share of its pixels is fragmented noise, dropped.
    pub min_coherence: f32,
}

impl Default for StuffParams {
    fn default() -> Self {
        StuffParams { min_area: 0.01, speck: 0.001, min_part: 0.25, min_coherence: 0.5 }
    }
}

/// A set of label-map classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassSet([u64; 4]);

impl ClassSet {
    pub fn of(class: u8) -> ClassSet {
        let mut s = ClassSet::default();
        s.insert(class);
        s
    }

    pub fn insert(&mut self, class: u8) {
        if let Some(w) = self.0.get_mut(usize::from(class / 64)) {
            *w |= 1 << (class % 64);
        }
    }

    pub fn contains(&self, class: u8) -> bool {
        self.0.get(usize::from(class / 64)).is_some_and(|w| w & (1 << (class % 64)) != 0)
    }

    pub fn union(&mut self, other: &ClassSet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }
}

/// A stuff region: the kept pieces of one stuff class (and of near-synonyms merged into it), minus pixels things
/// claim. It holds no pixels of its own: [`StuffPixels`] answers which pixels are its.
#[derive(Debug, Clone, PartialEq)]
pub struct StuffRegion {
    /// The class that names it.
    pub class: usize,
    /// Every class whose kept pixels are this region's.
    pub classes: ClassSet,
    /// The box of the kept pieces (the main piece and those at least `min_part` of it).
    pub bbox: BoxF,
    pub pixels: u64,
    pub area_fraction: f32,
}

/// Why a class the segmenter found over `min_area` of the image is not a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeometryDrop {
    /// Its pieces that hold together cover less than `min_area`.
    Tiny,
    /// Most of its pixels are scattered pieces.
    Fragmented,
}

/// A class left out by [`stuff_regions`], with the share of the image its unclaimed pixels covered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DroppedClass {
    pub class: usize,
    pub area_fraction: f32,
    pub reason: GeometryDrop,
}

/// The regions, largest first, the classes dropped for their geometry, and which pixels the regions keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StuffRegions {
    pub regions: Vec<StuffRegion>,
    pub dropped: Vec<DroppedClass>,
    /// Per pixel, row-major: part of a kept piece of some class (its class is the label map's).
    pub kept: Vec<bool>,
}

/// The pixels of stuff regions: the label map, and which of its pixels are kept. One frame-sized bitmap for every
/// region, instead of a full-frame mask per region.
#[derive(Debug, Clone, Copy)]
pub struct StuffPixels<'a> {
    pub map: &'a LabelMap,
    pub kept: &'a [bool],
}

impl<'a> StuffPixels<'a> {
    pub fn new(map: &'a LabelMap, regions: &'a StuffRegions) -> Self {
        StuffPixels { map, kept: &regions.kept }
    }

    /// The class of a kept pixel; None for pixels no region keeps and outside the frame.
    pub fn class_at(&self, x: u32, y: u32) -> Option<u8> {
        if x >= self.map.width || y >= self.map.height {
            return None;
        }
        let i = y as usize * self.map.width as usize + x as usize;
        self.kept.get(i).copied().unwrap_or(false).then(|| self.map.classes.get(i).copied()).flatten()
    }

    /// Whether pixel (x, y) is `region`'s.
    pub fn contains(&self, region: &StuffRegion, x: u32, y: u32) -> bool {
        self.class_at(x, y).is_some_and(|c| region.classes.contains(c))
    }

    /// Every region's COCO RLE in one column-major pass over the frame. A class in two regions' sets counts for
    /// the first.
    pub fn rles(&self, regions: &[StuffRegion]) -> Vec<Rle> {
        let (w, h) = (self.map.width, self.map.height);
        let mut owner = [usize::MAX; 256];
        for (i, r) in regions.iter().enumerate().rev() {
            for (c, slot) in owner.iter_mut().enumerate() {
                if r.classes.contains(c as u8) {
                    *slot = i;
                }
            }
        }
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); regions.len()];
        let mut last = vec![0u64; regions.len()];
        let mut switch = |r: Option<usize>, p: u64| {
            if let (Some(c), Some(l)) = (r.and_then(|r| counts.get_mut(r)), r.and_then(|r| last.get_mut(r))) {
                c.push((p - *l) as u32);
                *l = p;
            }
        };
        let mut prev: Option<usize> = None;
        let mut p = 0u64;
        for x in 0..w {
            for y in 0..h {
                let cur = self.class_at(x, y).and_then(|c| owner.get(usize::from(c)).copied()).filter(|&r| r != usize::MAX);
                if cur != prev {
                    switch(prev, p);
                    switch(cur, p);
                    prev = cur;
                }
                p += 1;
            }
        }
        counts
            .into_iter()
            .zip(last)
            .map(|(mut c, l)| {
                c.push((p - l) as u32);
                Rle { size: [h, w], counts: c }
            })
            .collect()
    }
}

/// Union-find over component labels; label 0 is "no component".
struct Labels {
    parent: Vec<u32>,
}

impl Labels {
    fn new() -> Self {
        Labels { parent: vec![0] }
    }

    fn make(&mut self) -> u32 {
        let id = self.parent.len() as u32;
        self.parent.push(id);
        id
    }

    fn find(&mut self, mut a: u32) -> u32 {
        loop {
            let p = self.parent.get(a as usize).copied().unwrap_or(a);
            if p == a {
                return a;
            }
            let gp = self.parent.get(p as usize).copied().unwrap_or(p);
            if let Some(slot) = self.parent.get_mut(a as usize) {
                *slot = gp;
            }
            a = gp;
        }
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        if let Some(slot) = self.parent.get_mut(hi as usize) {
            *slot = lo;
        }
        lo
    }
}

/// One connected piece of one class.
#[derive(Debug, Clone, Copy)]
struct Piece {
    class: u8,
    pixels: u64,
    x1: u32,
    y1: u32,
    x2: u32,
    y2: u32,
}

/// Labels the 4-connected pieces of every stuff class's unclaimed pixels in one pass over the map; returns each
/// pixel's piece (`u32::MAX`: none) and the pieces.
fn pieces(map: &LabelMap, claimed: &[bool], stuff: &[bool; 256]) -> (Vec<u32>, Vec<Piece>) {
    let w = map.width as usize;
    let eligible = |i: usize, c: u8| stuff.get(c as usize).copied().unwrap_or(false) && !claimed.get(i).copied().unwrap_or(false);
    let mut uf = Labels::new();
    let mut label = vec![0u32; map.classes.len()];
    for (i, &c) in map.classes.iter().enumerate() {
        if !eligible(i, c) {
            continue;
        }
        let same = |j: usize| if map.classes.get(j) == Some(&c) { label.get(j).copied().unwrap_or(0) } else { 0 };
        let left = if w > 0 && i % w > 0 { same(i - 1) } else { 0 };
        let up = if i >= w { same(i - w) } else { 0 };
        let l = match (left, up) {
            (0, 0) => uf.make(),
            (l, 0) | (0, l) => l,
            (l, u) if l == u => l,
            (l, u) => uf.union(l, u),
        };
        if let Some(slot) = label.get_mut(i) {
            *slot = l;
        }
    }
    // roots to dense piece indices
    let mut index = vec![u32::MAX; uf.parent.len()];
    let mut out: Vec<Piece> = Vec::new();
    for l in 1..uf.parent.len() as u32 {
        let root = uf.find(l);
        let dense = match index.get(root as usize).copied() {
            Some(d) if d != u32::MAX => d,
            _ => {
                let d = out.len() as u32;
                out.push(Piece { class: 0, pixels: 0, x1: u32::MAX, y1: u32::MAX, x2: 0, y2: 0 });
                if let Some(slot) = index.get_mut(root as usize) {
                    *slot = d;
                }
                d
            }
        };
        if let Some(slot) = index.get_mut(l as usize) {
            *slot = dense;
        }
    }
    for (i, (l, &c)) in label.iter_mut().zip(&map.classes).enumerate() {
        if *l == 0 {
            *l = u32::MAX;
            continue;
        }
        *l = index.get(*l as usize).copied().unwrap_or(u32::MAX);
        if let Some(p) = out.get_mut(*l as usize) {
            let (x, y) = ((i % w.max(1)) as u32, (i / w.max(1)) as u32);
            p.class = c;
            p.pixels += 1;
            p.x1 = p.x1.min(x);
            p.y1 = p.y1.min(y);
            p.x2 = p.x2.max(x + 1);
            p.y2 = p.y2.max(y + 1);
        }
    }
    (label, out)
}

/// Builds one region per stuff class from its unclaimed pixels: specks and scattered pieces dropped, the box of
/// the pieces that hold together; classes whose kept pieces are tiny or hold too little of their pixels are
/// reported as dropped (those under `min_area` before any of this are not reported).
pub fn stuff_regions(map: &LabelMap, claimed: &[bool], is_stuff: impl Fn(usize) -> bool, p: &StuffParams) -> StuffRegions {
    let mut stuff = [false; 256];
    for (c, s) in stuff.iter_mut().enumerate() {
        *s = is_stuff(c);
    }
    let (label, pieces) = pieces(map, claimed, &stuff);
    let total = (map.width as u64 * map.height as u64).max(1) as f32;
    let share = |px: u64| px as f32 / total;
    // the pieces' indices grouped by class (one list sorted, not a list per class)
    let mut by_class: Vec<usize> = (0..pieces.len()).collect();
    by_class.sort_unstable_by_key(|&i| (pieces.get(i).map_or(0, |q| q.class), i));
    // which pieces are kept
    let mut kept_piece = vec![false; pieces.len()];
    let mut out = StuffRegions::default();
    let class_of = |i: &usize| pieces.get(*i).map_or(0, |q| q.class as usize);
    for members in by_class.chunk_by(|a, b| class_of(a) == class_of(b)) {
        let class = members.first().map_or(0, class_of);
        let all: u64 = members.iter().filter_map(|&i| pieces.get(i)).map(|p| p.pixels).sum();
        if all == 0 || share(all) < p.min_area {
            continue;
        }
        let main = members.iter().filter_map(|&i| pieces.get(i)).map(|p| p.pixels).max().unwrap_or(0);
        let keep = |q: &Piece| share(q.pixels) >= p.speck && q.pixels as f32 >= p.min_part * main as f32;
        let kept: u64 = members.iter().filter_map(|&i| pieces.get(i)).filter(|q| keep(q)).map(|q| q.pixels).sum();
        let reason = if share(kept) < p.min_area {
            Some(GeometryDrop::Tiny)
        } else if (kept as f32) < p.min_coherence * all as f32 {
            Some(GeometryDrop::Fragmented)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.dropped.push(DroppedClass { class, area_fraction: share(all), reason });
            continue;
        }
        let mut bbox: Option<BoxF> = None;
        for &i in members {
            let Some(q) = pieces.get(i).filter(|q| keep(q)) else { continue };
            if let Some(slot) = kept_piece.get_mut(i) {
                *slot = true;
            }
            let b = BoxF::new(q.x1 as f32, q.y1 as f32, q.x2 as f32, q.y2 as f32);
            bbox = Some(bbox.map_or(b, |a| a.hull(&b)));
        }
        if let (Some(bbox), Ok(c)) = (bbox, u8::try_from(class)) {
            out.regions.push(StuffRegion { class, classes: ClassSet::of(c), bbox, pixels: kept, area_fraction: share(kept) });
        }
    }
    out.kept = label.iter().map(|&l| kept_piece.get(l as usize).copied().unwrap_or(false)).collect();
    out.regions.sort_by(|a, b| b.area_fraction.total_cmp(&a.area_fraction));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perceive::masks::Mask;

    /// A region's pixels as a full mask, from its RLE.
    fn mask_of(map: &LabelMap, r: &StuffRegions, region: usize) -> Mask {
        StuffPixels::new(map, r).rles(&r.regions)[region].to_mask().unwrap()
    }
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

    /// ONNX Resize (linear, asymmetric) of the codes in f64, QuantizeLinear's rounding half to even, ArgMax:
    /// the source graph's head, written plainly.
    fn head_reference(codes: &[u8], (c, h, w): (usize, usize, usize), f: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..h * f {
            for x in 0..w * f {
                let (sy, sx) = (y as f64 / f as f64, x as f64 / f as f64);
                let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                let (ly, lx) = (sy - y0 as f64, sx - x0 as f64);
                let mut best = (0usize, f64::MIN);
                for k in 0..c {
                    let q = |yy: usize, xx: usize| f64::from(codes[k * h * w + yy * w + xx]);
                    let v = (1.0 - ly) * ((1.0 - lx) * q(y0, x0) + lx * q(y0, x1)) + ly * ((1.0 - lx) * q(y1, x0) + lx * q(y1, x1));
                    let r = v.round_ties_even().clamp(0.0, 255.0);
                    if r > best.1 {
                        best = (k, r);
                    }
                }
                out.push(best.0 as u8);
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn upsample_argmax_is_the_source_graphs_head(
            c in 1usize..6, h in 1usize..7, w in 1usize..7, f in proptest::sample::select(vec![1usize, 2, 4, 8]),
            narrow in proptest::bool::ANY, cells in proptest::collection::vec(0u8..=255, 6 * 7 * 7),
        ) {
            // narrow codes make many ties, after rounding too
            let codes: Vec<u8> = cells.iter().take(c * h * w).map(|&q| if narrow { 100 + q % 3 } else { q }).collect();
            let mut labels = Vec::new();
            upsample_argmax(&codes, (c, h, w), f, &mut labels).unwrap();
            proptest::prop_assert_eq!(labels, head_reference(&codes, (c, h, w), f));
        }
    }

    #[test]
    fn upsample_argmax_refuses_what_it_cannot_do() {
        let mut labels = Vec::new();
        assert!(upsample_argmax(&[0; 8], (2, 2, 2), 3, &mut labels).is_err(), "not a power of two");
        assert!(upsample_argmax(&[0; 8], (2, 2, 2), 32, &mut labels).is_err(), "beyond 16");
        assert!(upsample_argmax(&[0; 7], (2, 2, 2), 4, &mut labels).is_err(), "short");
        // [1, C, h, w] logits, letterboxed: a 4x2 image in a 4x4 model input made from 2x2 codes upsampled by 2
        let lb = Letterbox::new(4, 2, 4, 4, ResizeMode::LetterboxTopLeft);
        let codes = vec![9, 0, 9, 9, /* class 1 */ 0, 9, 0, 0];
        let t = Tensor::new(vec![1, 2, 2, 2], TensorData::U8(codes)).unwrap();
        let m = decode_logit_codes(&t, 2, &lb, 4, 2).unwrap();
        assert_eq!(m.classes, [0, 0, 1, 1, 0, 0, 0, 0]);
        let wrong = Tensor::new(vec![1, 2, 2, 2], TensorData::F32(vec![0.0; 8])).unwrap();
        assert!(decode_logit_codes(&wrong, 2, &lb, 4, 2).unwrap_err().to_string().contains("uint8"));
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
        let p = StuffParams::default();
        let found = stuff_regions(&map, &claimed, |c| c == 3, &p);
        let r = &found.regions;
        assert_eq!(r.len(), 1);
        assert!(r[0].area_fraction < 1.0 && r[0].area_fraction > 0.7);
        let mask = mask_of(&map, &found, 0);
        assert!(!mask.get(10, 10) && !StuffPixels::new(&map, &found).contains(&r[0], 10, 10));
        assert_eq!(mask.area() as f32 / 400.0, r[0].area_fraction);
        assert_eq!(mask.area(), r[0].pixels);
        let none = stuff_regions(&map, &claimed, |c| c != 3, &p);
        assert!(none.regions.is_empty() && none.dropped.is_empty());
    }

    /// A 100x100 map from rectangles of classes painted in order.
    fn painted(rects: &[(u8, u32, u32, u32, u32)]) -> LabelMap {
        let mut classes = vec![0u8; 100 * 100];
        for &(c, x1, y1, x2, y2) in rects {
            for y in y1..y2 {
                for x in x1..x2 {
                    classes[(y * 100 + x) as usize] = c;
                }
            }
        }
        LabelMap { width: 100, height: 100, classes }
    }

    #[test]
    fn scattered_pieces_leave_the_mask_and_the_box() {
        // class 1: a 40x40 block top-left, a 30x30 block bottom-right (a part: over a quarter of the main piece),
        // and a 5x5 piece far right (above the speck size, under a quarter of the main piece)
        let map = painted(&[(1, 0, 0, 40, 40), (1, 60, 60, 90, 90), (1, 94, 0, 99, 5)]);
        let r = stuff_regions(&map, &[], |c| c == 1, &StuffParams::default());
        assert_eq!(r.regions.len(), 1);
        let region = &r.regions[0];
        assert_eq!(region.bbox, BoxF::new(0.0, 0.0, 90.0, 90.0));
        let mask = mask_of(&map, &r, 0);
        assert_eq!(mask.area(), 1600 + 900);
        assert!(!mask.get(95, 2), "the scattered piece is not part of the region");
        assert_eq!(mask.bbox(), Some(region.bbox));
        assert!((region.area_fraction - 0.25).abs() < 1e-6);
    }

    #[test]
    fn diagonal_neighbours_are_separate_pieces_and_u_shapes_are_one() {
        // a U: two columns joined at the bottom, labelled before their join is seen
        let map = painted(&[(2, 0, 0, 10, 60), (2, 50, 0, 60, 60), (2, 0, 60, 60, 70)]);
        let r = stuff_regions(&map, &[], |c| c == 2, &StuffParams { min_part: 0.99, ..StuffParams::default() });
        assert_eq!(r.regions.len(), 1, "one piece, so nothing is below 99 % of the main piece");
        assert_eq!(mask_of(&map, &r, 0).area(), 600 + 600 + 600);
        // a checkerboard of single pixels: all specks
        let mut classes = vec![0u8; 100 * 100];
        for (i, c) in classes.iter_mut().enumerate() {
            if (i % 100 + i / 100) % 2 == 0 {
                *c = 3;
            }
        }
        let board = LabelMap { width: 100, height: 100, classes };
        let r = stuff_regions(&board, &[], |c| c == 3, &StuffParams::default());
        assert!(r.regions.is_empty());
        assert_eq!(r.dropped, vec![DroppedClass { class: 3, area_fraction: 0.5, reason: GeometryDrop::Tiny }]);
    }

    #[test]
    fn a_class_mostly_in_scattered_pieces_is_fragmented() {
        // a 20x20 main piece (4 %) and twenty 6x6 pieces (36 px each, 0.36 %, under a quarter of the main piece)
        let mut rects = vec![(4u8, 0u32, 0u32, 20u32, 20u32)];
        for k in 0..20u32 {
            let (x, y) = (30 + (k % 5) * 14, 30 + (k / 5) * 14);
            rects.push((4, x, y, x + 6, y + 6));
        }
        let map = painted(&rects);
        let r = stuff_regions(&map, &[], |c| c == 4, &StuffParams::default());
        assert!(r.regions.is_empty());
        assert_eq!(r.dropped.len(), 1);
        assert_eq!(r.dropped[0].reason, GeometryDrop::Fragmented);
        assert!((r.dropped[0].area_fraction - (400.0 + 720.0) / 10_000.0).abs() < 1e-6);
    }

    proptest::proptest! {
        /// The one-pass RLEs equal each region's full mask encoded on its own, on random maps of a few classes.
        #[test]
        fn one_pass_rles_equal_per_region_masks(w in 1u32..40, h in 1u32..40, cells in proptest::collection::vec(0u8..4, 1600), merge in proptest::bool::ANY) {
            let map = LabelMap { width: w, height: h, classes: cells.iter().take((w * h) as usize).copied().collect() };
            let p = StuffParams { min_area: 0.0, speck: 0.0, min_part: 0.3, min_coherence: 0.0 };
            let mut found = stuff_regions(&map, &[], |c| c != 0, &p);
            if merge && found.regions.len() >= 2 {
                // a merged region holds two classes, as scene::plausible makes them
                let other = found.regions.remove(1);
                found.regions[0].classes.union(&other.classes);
            }
            let px = StuffPixels::new(&map, &found);
            let rles = px.rles(&found.regions);
            for (r, rle) in found.regions.iter().zip(&rles) {
                let bits = (0..w * h).map(|i| px.contains(r, i % w, i / w)).collect();
                proptest::prop_assert_eq!(rle, &Mask { width: w, height: h, bits }.to_rle());
            }
        }
    }

    #[test]
    fn classes_are_separate_even_when_touching() {
        let map = painted(&[(5, 0, 0, 100, 50), (6, 0, 50, 100, 100)]);
        let r = stuff_regions(&map, &[], |c| c == 5 || c == 6, &StuffParams::default());
        assert_eq!(r.regions.len(), 2);
        let boxes: Vec<(usize, BoxF)> = r.regions.iter().map(|g| (g.class, g.bbox)).collect();
        assert!(boxes.contains(&(5, BoxF::new(0.0, 0.0, 100.0, 50.0))));
        assert!(boxes.contains(&(6, BoxF::new(0.0, 50.0, 100.0, 100.0))));
    }
}

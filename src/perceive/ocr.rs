//! Text in the scene (PP-OCR): DB text detection on the frame → one crop per text line (rotated rectangle,
//! straightened) → 0°/180° orientation → CTC line recognition. Every step is `preprocess → engine.run →
//! postprocess` with pure halves; the detector and recogniser run at fixed bucket sizes (tract builds one plan per
//! input size), each engine loaded the first time its bucket is needed.

use super::resize::{RgbResizer, RgbView};
use super::PerceiveError;
use crate::engine::{self, Engine, EngineError, ModelSpec, Tensor, TensorData};
use crate::geometry::{BoxF, Letterbox, ResizeMode};
use crate::models::OcrManifest;
use crate::timing::{ModelName, Stage, Timings};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Loads one model for the text reader (the pipeline passes the configured backend; tests pass fakes).
pub type EngineLoader = Box<dyn FnMut(ModelSpec) -> Result<Box<dyn Engine>, EngineError> + Send>;

/// Four corners of a rotated text rectangle in image pixels: top-left, top-right, bottom-right, bottom-left.
pub type Quad = [[f32; 2]; 4];

/// One line of text read in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextLine {
    pub quad: Quad,
    /// The quad's axis-aligned box.
    #[serde(rename = "box")]
    pub bbox: BoxF,
    pub text: String,
    /// Recognition confidence: the mean probability of the characters read.
    pub score: f32,
    /// Mean text probability of the detector inside the line.
    pub det_score: f32,
    /// The orientation classifier turned the crop over before reading it.
    pub flipped: bool,
}

/// What is kept of the reader's output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrParams {
    /// Lines read with a lower confidence are dropped (below ~0.9 PP-OCR mostly misreads small or blurred text).
    pub min_score: f32,
    /// Most lines recognised per frame, the largest first (each costs one recogniser run).
    pub max_lines: usize,
    /// Lines less tall than this (image pixels) are not read.
    pub min_height_px: f32,
}

impl Default for OcrParams {
    fn default() -> Self {
        OcrParams { min_score: 0.88, max_lines: 24, min_height_px: 6.0 }
    }
}

pub struct TextReader {
    manifest: OcrManifest,
    models_dir: PathBuf,
    loader: EngineLoader,
    detectors: Vec<([u32; 2], Box<dyn Engine>)>,
    classifier: Box<dyn Engine>,
    recognisers: Vec<(u32, Box<dyn Engine>)>,
    /// Character of class `i + 1` (class 0 is the CTC blank; the class after the last is a space).
    dictionary: Vec<String>,
    params: OcrParams,
    /// The three models' names as timings carry them.
    names: [ModelName; 3],
    /// Resizing tables and scratch kept between frames and lines.
    resizer: RgbResizer,
}

impl TextReader {
    /// Reads the dictionary from the recogniser's metadata and loads the classifier; the detector and recogniser
    /// buckets load on first use through `loader`.
    pub fn load(manifest: OcrManifest, models_dir: &Path, params: OcrParams, mut loader: EngineLoader) -> Result<Self, PerceiveError> {
        let rec_path = models_dir.join(&manifest.recogniser.file);
        let text = engine::onnx_metadata(&rec_path, &manifest.recogniser.dictionary_key)?.ok_or_else(|| {
            PerceiveError::WrongModel {
                name: manifest.name.clone(),
                want: "text recogniser",
                reason: format!("{} has no metadata entry '{}'", rec_path.display(), manifest.recogniser.dictionary_key),
            }
        })?;
        let dictionary = parse_dictionary(&text);
        let classifier = loader(manifest.classifier_spec(models_dir))?;
        Self::from_parts(manifest, models_dir, params, loader, classifier, dictionary)
    }

    /// A reader from an already loaded classifier and a dictionary (tests use fake engines here).
    pub fn from_parts(
        manifest: OcrManifest,
        models_dir: &Path,
        params: OcrParams,
        loader: EngineLoader,
        classifier: Box<dyn Engine>,
        dictionary: Vec<String>,
    ) -> Result<Self, PerceiveError> {
        if dictionary.is_empty() {
            return Err(PerceiveError::WrongModel {
                name: manifest.name.clone(),
                want: "text recogniser",
                reason: "its dictionary is empty".into(),
            });
        }
        let names = ["det", "cls", "rec"].map(|part| ModelName::from(format!("{}/{part}", manifest.name)));
        Ok(TextReader {
            manifest,
            models_dir: models_dir.to_path_buf(),
            loader,
            detectors: Vec::new(),
            classifier,
            recognisers: Vec::new(),
            dictionary,
            params,
            names,
            resizer: RgbResizer::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn provider(&self) -> String {
        self.classifier.provider()
    }

    /// Builds the plan of every detector bucket and recogniser width not built yet, and returns how many it built:
    /// what `profile` does before its first frame, so no measured frame pays for a plan (each ~130 ms and a few
    /// hundred thousand allocations on tract). A stream keeps building them on first use: each plan holds its own
    /// copy of the weights.
    pub fn build_all_buckets(&mut self) -> Result<usize, PerceiveError> {
        let (manifest, dir) = (&self.manifest, &self.models_dir);
        let mut built = 0;
        for &bucket in &manifest.detector.buckets {
            let before = self.detectors.len();
            bucket_engine(&mut self.detectors, bucket, &mut self.loader, || manifest.detector_spec(dir, bucket), &self.names[0])?;
            built += self.detectors.len() - before;
        }
        for &width in &manifest.recogniser.widths {
            let before = self.recognisers.len();
            bucket_engine(&mut self.recognisers, width, &mut self.loader, || manifest.recogniser_spec(dir, width), &self.names[2])?;
            built += self.recognisers.len() - before;
        }
        Ok(built)
    }

    /// Every line of text in `rgb` read with at least `min_score`, in reading order (top to bottom, left to right).
    pub fn read(&mut self, rgb: &RgbImage, timings: &mut Timings) -> Result<Vec<TextLine>, PerceiveError> {
        let (w, h) = (rgb.width(), rgb.height());
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        // 1. detection at the bucket closest to the frame's aspect ratio
        let t = Instant::now();
        let bucket = pick_bucket(w, h, &self.manifest.detector.buckets);
        let (tensor, lb) = det_input(&mut self.resizer, rgb, bucket)?;
        timings.record(Stage::Preprocess, Some(&self.names[0]), t);
        let (manifest, dir) = (&self.manifest, &self.models_dir);
        let engine = bucket_engine(&mut self.detectors, bucket, &mut self.loader, || manifest.detector_spec(dir, bucket), &self.names[0])?;
        let t = Instant::now();
        let outputs = engine.run(&[tensor])?;
        timings.record(Stage::Inference, Some(&self.names[0]), t);
        let t = Instant::now();
        let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("text detector: no output".into()))?;
        let (mh, mw) = match out.shape.as_slice() {
            [1, 1, h, w] => (*h, *w),
            s => return Err(PerceiveError::BadOutput(format!("text detector output shape {s:?}, expected [1, 1, H, W]"))),
        };
        let probs = out.as_f32()?;
        let det = &self.manifest.detector;
        let db = DbParams {
            threshold: det.threshold,
            box_threshold: det.box_threshold,
            unclip_ratio: det.unclip_ratio,
            max_candidates: det.max_candidates,
        };
        let mut boxes: Vec<(Quad, f32)> = db_boxes(probs, mw, mh, &db)?
            .into_iter()
            .map(|(q, s)| (quad_to_image(&q, &lb, w, h), s))
            .filter(|(q, _)| quad_size(q).1 >= self.params.min_height_px)
            .collect();
        // the largest lines first, up to the budget
        boxes.sort_by(|a, b| quad_area(&b.0).total_cmp(&quad_area(&a.0)));
        boxes.truncate(self.params.max_lines);
        timings.record(Stage::Postprocess, Some(&self.names[0]), t);

        // 2. per line: crop, orientation, recognition
        let mut lines = Vec::new();
        for (quad, det_score) in boxes {
            let t = Instant::now();
            let mut crop = crop_quad(rgb, &quad);
            let cls = &self.manifest.classifier;
            let cls_input = line_input(&mut self.resizer, &crop, cls.width, cls.height, &[cls.width])?;
            timings.record(Stage::Preprocess, Some(&self.names[1]), t);
            let t = Instant::now();
            let cls_out = self.classifier.run(&[cls_input.0])?;
            timings.record(Stage::Inference, Some(&self.names[1]), t);
            let flipped = match cls_out.first().map(|o| o.as_f32()) {
                Some(Ok([p0, p180, ..])) => {
                    log::debug!("orientation: p(0°) {p0:.3}, p(180°) {p180:.3}");
                    p180 > p0 && *p180 >= cls.threshold
                }
                _ => return Err(PerceiveError::BadOutput("text orientation classifier: expected two probabilities".into())),
            };
            let t = Instant::now();
            if flipped {
                image::imageops::rotate180_in_place(&mut crop);
            }
            let rec = &self.manifest.recogniser;
            let (rec_input, width) = line_input(&mut self.resizer, &crop, 0, rec.height, &rec.widths)?;
            timings.record(Stage::Preprocess, Some(&self.names[2]), t);
            let (manifest, dir) = (&self.manifest, &self.models_dir);
            let spec = || manifest.recogniser_spec(dir, width);
            let engine = bucket_engine(&mut self.recognisers, width, &mut self.loader, spec, &self.names[2])?;
            let t = Instant::now();
            let outputs = engine.run(&[rec_input])?;
            timings.record(Stage::Inference, Some(&self.names[2]), t);
            let t = Instant::now();
            let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("text recogniser: no output".into()))?;
            let (steps, classes) = match out.shape.as_slice() {
                [1, t, c] => (*t, *c),
                s => return Err(PerceiveError::BadOutput(format!("text recogniser output shape {s:?}, expected [1, T, C]"))),
            };
            let (text, score) = ctc_decode(out.as_f32()?, steps, classes, &self.dictionary)?;
            timings.record(Stage::Postprocess, Some(&self.names[2]), t);
            let text = text.trim().to_string();
            if score >= self.params.min_score && text.chars().filter(|c| c.is_alphanumeric()).count() >= 2 {
                lines.push(TextLine { quad, bbox: quad_bbox(&quad), text, score, det_score, flipped });
            }
        }
        sort_reading_order(&mut lines);
        Ok(lines)
    }
}

/// The engine of one bucket, built through `loader` the first time the bucket is needed (logged, and not
/// counted in any frame's inference time).
fn bucket_engine<'a, K: PartialEq + Copy + std::fmt::Debug>(
    engines: &'a mut Vec<(K, Box<dyn Engine>)>,
    key: K,
    loader: &mut EngineLoader,
    spec: impl FnOnce() -> ModelSpec,
    name: &str,
) -> Result<&'a mut Box<dyn Engine>, PerceiveError> {
    let index = match engines.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let t = Instant::now();
            let e = loader(spec())?;
            log::info!("{name}: built the plan for bucket {key:?} in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
            engines.push((key, e));
            engines.len() - 1
        }
    };
    engines.get_mut(index).map(|(_, e)| e).ok_or_else(|| PerceiveError::BadOutput(format!("{name}: bucket {key:?} lost")))
}

/// One character per line; a trailing empty line (the text ends in a newline) is not a character.
pub fn parse_dictionary(text: &str) -> Vec<String> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n').map(|c| c.trim_end_matches('\r').to_string()).collect()
}

/// The bucket whose aspect ratio is closest to the frame's (the larger one on a tie).
pub fn pick_bucket(w: u32, h: u32, buckets: &[[u32; 2]]) -> [u32; 2] {
    let aspect = (w.max(1) as f32 / h.max(1) as f32).ln();
    let cost = |b: &[u32; 2]| ((b[0].max(1) as f32 / b[1].max(1) as f32).ln() - aspect).abs();
    buckets
        .iter()
        .copied()
        .min_by(|a, b| cost(a).total_cmp(&cost(b)).then((b[0] * b[1]).cmp(&(a[0] * a[1]))))
        .unwrap_or([640, 640])
}

/// `(x / 255 − 0.5) / 0.5`, BGR planes, as PaddleOCR feeds its models.
fn bgr_planes(img: &RgbImage, out_w: usize, out_h: usize) -> Vec<f32> {
    // padding stays 0: the normalised mid-grey
    let n = out_w * out_h;
    let mut v = vec![0f32; 3 * n];
    for (x, y, p) in img.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x >= out_w || y >= out_h {
            continue;
        }
        let i = y * out_w + x;
        for (plane, c) in [2usize, 1, 0].into_iter().enumerate() {
            if let (Some(d), Some(&s)) = (v.get_mut(plane * n + i), p.0.get(c)) {
                *d = f32::from(s) / 127.5 - 1.0;
            }
        }
    }
    v
}

/// The detector input at `bucket` (`[w, h]`): the frame scaled to fit, aspect kept, at the top-left.
pub fn det_input(resizer: &mut RgbResizer, rgb: &RgbImage, [bw, bh]: [u32; 2]) -> Result<(Tensor, Letterbox), PerceiveError> {
    let lb = Letterbox::new(rgb.width(), rgb.height(), bw, bh, ResizeMode::LetterboxTopLeft);
    let resized = super::preprocess::resize_view(resizer, RgbView::whole(rgb), lb.content_w, lb.content_h)?;
    let data = bgr_planes(&resized, bw as usize, bh as usize);
    Ok((Tensor::new(vec![1, 3, bh as usize, bw as usize], TensorData::F32(data))?, lb))
}

/// A line crop as recogniser (or classifier) input: scaled to `height` with its aspect kept, into the smallest
/// of `widths` that holds it (padded at the right), or squeezed into the widest. `min_width` > 0 fixes the
/// classifier's single width. Returns the tensor and the width used.
pub fn line_input(resizer: &mut RgbResizer, crop: &RgbImage, min_width: u32, height: u32, widths: &[u32]) -> Result<(Tensor, u32), PerceiveError> {
    let (cw, ch) = (crop.width().max(1), crop.height().max(1));
    let natural = ((height as f32 * cw as f32 / ch as f32).ceil() as u32).max(1);
    let width = widths
        .iter()
        .copied()
        .find(|w| *w >= natural.max(min_width))
        .or_else(|| widths.last().copied())
        .ok_or_else(|| PerceiveError::UnsupportedInput("text line input: no widths".into()))?;
    let resized = super::preprocess::resize_view(resizer, RgbView::whole(crop), natural.min(width), height)?;
    let data = bgr_planes(&resized, width as usize, height as usize);
    Ok((Tensor::new(vec![1, 3, height as usize, width as usize], TensorData::F32(data))?, width))
}

/// The DB post-processing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbParams {
    pub threshold: f32,
    pub box_threshold: f32,
    pub unclip_ratio: f32,
    pub max_candidates: usize,
}

/// A rotated rectangle: centre, side lengths along its two axes, and the unit vector of the first axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RotRect {
    cx: f32,
    cy: f32,
    w: f32,
    h: f32,
    ux: f32,
    uy: f32,
}

impl RotRect {
    fn corners(&self) -> [[f32; 2]; 4] {
        let (ax, ay) = (self.ux * self.w / 2.0, self.uy * self.w / 2.0);
        let (bx, by) = (-self.uy * self.h / 2.0, self.ux * self.h / 2.0);
        [
            [self.cx - ax - bx, self.cy - ay - by],
            [self.cx + ax - bx, self.cy + ay - by],
            [self.cx + ax + bx, self.cy + ay + by],
            [self.cx - ax + bx, self.cy - ay + by],
        ]
    }
}

/// Text boxes from a DB probability map (`mw × mh`, model pixels): threshold, 2 × 2 dilation, connected
/// regions, each region's minimum-area rectangle scored by the mean probability inside it, kept at
/// `box_threshold` and grown by `area × unclip_ratio / perimeter` on every side. Corners are ordered
/// top-left, top-right, bottom-right, bottom-left.
pub fn db_boxes(probs: &[f32], mw: usize, mh: usize, p: &DbParams) -> Result<Vec<(Quad, f32)>, PerceiveError> {
    if probs.len() < mw * mh {
        return Err(PerceiveError::BadOutput(format!("text detector map holds {} values for {mw}x{mh}", probs.len())));
    }
    let at = |x: usize, y: usize| probs.get(y * mw + x).copied().unwrap_or(0.0);
    // threshold + dilation with a 2 × 2 kernel (a pixel is set when it or its left, upper or upper-left
    // neighbour is above the threshold)
    let mut bitmap = vec![false; mw * mh];
    for y in 0..mh {
        for x in 0..mw {
            let hit = at(x, y) > p.threshold
                || (x > 0 && at(x - 1, y) > p.threshold)
                || (y > 0 && at(x, y - 1) > p.threshold)
                || (x > 0 && y > 0 && at(x - 1, y - 1) > p.threshold);
            if let Some(b) = bitmap.get_mut(y * mw + x) {
                *b = hit;
            }
        }
    }
    let mut out = Vec::new();
    for region in regions(&bitmap, mw, mh).into_iter().take(p.max_candidates) {
        let Some(rect) = min_area_rect(&region) else { continue };
        if rect.w.min(rect.h) < 3.0 {
            continue;
        }
        let score = mean_inside(probs, mw, mh, &rect.corners());
        if score < p.box_threshold {
            continue;
        }
        let (area, perimeter) = (rect.w * rect.h, 2.0 * (rect.w + rect.h));
        let d = if perimeter > 0.0 { area * p.unclip_ratio / perimeter } else { 0.0 };
        let grown = RotRect { w: rect.w + 2.0 * d, h: rect.h + 2.0 * d, ..rect };
        if grown.w.min(grown.h) < 5.0 {
            continue;
        }
        out.push((order_corners(grown.corners()), score));
    }
    Ok(out)
}

/// The extreme pixel centres (leftmost and rightmost per row) of each 8-connected region of `bitmap`, in
/// raster order of the regions' first pixels. Enough for a convex hull.
fn regions(bitmap: &[bool], w: usize, h: usize) -> Vec<Vec<[f32; 2]>> {
    let mut label = vec![0u32; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !bitmap.get(start).copied().unwrap_or(false) || label.get(start).copied().unwrap_or(1) != 0 {
            continue;
        }
        let id = out.len() as u32 + 1;
        // per row: (min x, max x)
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = std::collections::BTreeMap::new();
        stack.push(start);
        if let Some(l) = label.get_mut(start) {
            *l = id;
        }
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let e = rows.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            for (dx, dy) in [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let j = ny as usize * w + nx as usize;
                if bitmap.get(j).copied().unwrap_or(false) && label.get(j).copied() == Some(0) {
                    if let Some(l) = label.get_mut(j) {
                        *l = id;
                    }
                    stack.push(j);
                }
            }
        }
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (y, (x0, x1)) in rows {
            pts.push([x0 as f32, y as f32]);
            if x1 != x0 {
                pts.push([x1 as f32, y as f32]);
            }
        }
        out.push(pts);
    }
    out
}

fn cross(o: [f32; 2], a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in a y-down frame's mirror; no repeated points.
fn convex_hull(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<[f32; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f32; 2]>> = if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 {
                let (Some(&a), Some(&b)) = (hull.get(hull.len() - 2), hull.last()) else { break };
                if cross(a, b, p) <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The minimum-area rectangle enclosing `points` (one of its sides lies on a hull edge). The first axis is the
/// longer side.
fn min_area_rect(points: &[[f32; 2]]) -> Option<RotRect> {
    let hull = convex_hull(points);
    let first = *hull.first()?;
    if hull.len() == 1 {
        return Some(RotRect { cx: first[0], cy: first[1], w: 0.0, h: 0.0, ux: 1.0, uy: 0.0 });
    }
    let mut best: Option<(f32, RotRect)> = None;
    for (i, a) in hull.iter().enumerate() {
        let b = hull.get((i + 1) % hull.len()).copied().unwrap_or(first);
        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
        let len = (ex * ex + ey * ey).sqrt();
        if len == 0.0 {
            continue;
        }
        let (ux, uy) = (ex / len, ey / len);
        let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in &hull {
            let u = p[0] * ux + p[1] * uy;
            let v = -p[0] * uy + p[1] * ux;
            lo_u = lo_u.min(u);
            hi_u = hi_u.max(u);
            lo_v = lo_v.min(v);
            hi_v = hi_v.max(v);
        }
        let area = (hi_u - lo_u) * (hi_v - lo_v);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let (mu, mv) = ((lo_u + hi_u) / 2.0, (lo_v + hi_v) / 2.0);
            let rect = RotRect { cx: mu * ux - mv * uy, cy: mu * uy + mv * ux, w: hi_u - lo_u, h: hi_v - lo_v, ux, uy };
            best = Some((area, rect));
        }
    }
    let (_, r) = best?;
    // the first axis along the longer side, pointing right
    let r = if r.h > r.w { RotRect { w: r.h, h: r.w, ux: -r.uy, uy: r.ux, ..r } } else { r };
    Some(if r.ux < 0.0 { RotRect { ux: -r.ux, uy: -r.uy, ..r } } else { r })
}

/// Corners as top-left, top-right, bottom-right, bottom-left: the two leftmost (by x) become the left side,
/// each side ordered by y (as PaddleOCR orders them).
pub fn order_corners(mut c: [[f32; 2]; 4]) -> Quad {
    c.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let [a, b, cc, d] = c;
    let (tl, bl) = if a[1] <= b[1] { (a, b) } else { (b, a) };
    let (tr, br) = if cc[1] <= d[1] { (cc, d) } else { (d, cc) };
    [tl, tr, br, bl]
}

fn inside_convex(q: &[[f32; 2]; 4], x: f32, y: f32) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (Some(&a), Some(&b)) = (q.get(i), q.get((i + 1) % 4)) else { return false };
        let c = cross(a, b, [x, y]);
        if c.abs() < 1e-6 {
            continue;
        }
        if sign == 0.0 {
            sign = c.signum();
        } else if c.signum() != sign {
            return false;
        }
    }
    true
}

/// Mean of the map over the pixel centres inside the quad (its bounding pixels when none is inside).
fn mean_inside(probs: &[f32], mw: usize, mh: usize, q: &[[f32; 2]; 4]) -> f32 {
    let xs = q.iter().map(|p| p[0]);
    let ys = q.iter().map(|p| p[1]);
    let clampi = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi.saturating_sub(1));
    let (x0, x1) = (clampi(xs.clone().fold(f32::MAX, f32::min).floor(), mw), clampi(xs.fold(f32::MIN, f32::max).ceil(), mw));
    let (y0, y1) = (clampi(ys.clone().fold(f32::MAX, f32::min).floor(), mh), clampi(ys.fold(f32::MIN, f32::max).ceil(), mh));
    let (mut sum, mut n, mut all_sum, mut all_n) = (0.0f64, 0u32, 0.0f64, 0u32);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let v = f64::from(probs.get(y * mw + x).copied().unwrap_or(0.0));
            all_sum += v;
            all_n += 1;
            if inside_convex(q, x as f32, y as f32) {
                sum += v;
                n += 1;
            }
        }
    }
    match (n, all_n) {
        (0, 0) => 0.0,
        (0, _) => (all_sum / f64::from(all_n)) as f32,
        _ => (sum / f64::from(n)) as f32,
    }
}

/// Model-pixel corners → whole image pixels (as PaddleOCR rounds them: its line crops, and the orientation
/// classifier reading them, are tuned to crops on the pixel grid), clipped to the image.
fn quad_to_image(q: &Quad, lb: &Letterbox, w: u32, h: u32) -> Quad {
    q.map(|[x, y]| {
        let (ix, iy) = lb.image_from_model(x, y);
        [ix.round().clamp(0.0, w as f32), iy.round().clamp(0.0, h as f32)]
    })
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Width (along the top and bottom edges) and height (along the sides) of a quad: the longer of each pair.
pub fn quad_size(q: &Quad) -> (f32, f32) {
    let [tl, tr, br, bl] = *q;
    (dist(tl, tr).max(dist(bl, br)), dist(tl, bl).max(dist(tr, br)))
}

fn quad_area(q: &Quad) -> f32 {
    let (w, h) = quad_size(q);
    w * h
}

pub fn quad_bbox(q: &Quad) -> BoxF {
    let (mut x1, mut y1, mut x2, mut y2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for [x, y] in q {
        x1 = x1.min(*x);
        y1 = y1.min(*y);
        x2 = x2.max(*x);
        y2 = y2.max(*y);
    }
    BoxF::new(x1, y1, x2, y2)
}

/// Whether an image point lies inside a line's quad.
pub fn quad_contains(q: &Quad, x: f32, y: f32) -> bool {
    inside_convex(q, x, y)
}

/// The line straightened: the quad sampled bilinearly (edges replicated) into a `width × height` image; a line
/// standing upright (height ≥ 1.5 × width) is turned a quarter counter-clockwise to lie flat.
pub fn crop_quad(rgb: &RgbImage, q: &Quad) -> RgbImage {
    let (qw, qh) = quad_size(q);
    let (cw, ch) = ((qw.round() as u32).max(1), (qh.round() as u32).max(1));
    let [tl, tr, br, bl] = *q;
    let (iw, ih) = (rgb.width(), rgb.height());
    let sample = |x: f32, y: f32| -> [u8; 3] {
        let x = x.clamp(0.0, iw.saturating_sub(1) as f32);
        let y = y.clamp(0.0, ih.saturating_sub(1) as f32);
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(iw.saturating_sub(1)), (y0 + 1).min(ih.saturating_sub(1)));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let px = |x: u32, y: u32| rgb.get_pixel_checked(x, y).map(|p| p.0).unwrap_or([0, 0, 0]);
        let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
        let mut out = [0u8; 3];
        for (i, o) in out.iter_mut().enumerate() {
            let g = |p: [u8; 3]| f32::from(p.get(i).copied().unwrap_or(0));
            let top = g(a) * (1.0 - fx) + g(b) * fx;
            let bottom = g(c) * (1.0 - fx) + g(d) * fx;
            *o = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        out
    };
    let crop = RgbImage::from_fn(cw, ch, |x, y| {
        let (u, v) = ((x as f32 + 0.5) / cw as f32, (y as f32 + 0.5) / ch as f32);
        let top = [tl[0] + (tr[0] - tl[0]) * u, tl[1] + (tr[1] - tl[1]) * u];
        let bottom = [bl[0] + (br[0] - bl[0]) * u, bl[1] + (br[1] - bl[1]) * u];
        let p = [top[0] + (bottom[0] - top[0]) * v, top[1] + (bottom[1] - top[1]) * v];
        image::Rgb(sample(p[0] - 0.5, p[1] - 0.5))
    });
    if ch as f32 >= 1.5 * cw as f32 {
        image::imageops::rotate270(&crop)
    } else {
        crop
    }
}

/// Greedy CTC decoding of `[steps, classes]` probabilities: the best class per step, repeats merged, blanks
/// (class 0) dropped; class `i` is `dictionary[i − 1]`, the class after the dictionary a space. The score is the
/// mean probability of the characters kept (0 when none).
pub fn ctc_decode(probs: &[f32], steps: usize, classes: usize, dictionary: &[String]) -> Result<(String, f32), PerceiveError> {
    if classes < 2 || probs.len() < steps * classes {
        return Err(PerceiveError::BadOutput(format!("text recogniser output holds {} values for {steps}x{classes}", probs.len())));
    }
    if classes > dictionary.len() + 2 {
        return Err(PerceiveError::BadOutput(format!(
            "text recogniser has {classes} classes but its dictionary only {} characters",
            dictionary.len()
        )));
    }
    let (mut text, mut sum, mut n, mut prev) = (String::new(), 0.0f32, 0u32, 0usize);
    for row in probs.chunks_exact(classes).take(steps) {
        let (best, p) = row
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        if best != 0 && best != prev {
            match dictionary.get(best - 1) {
                Some(c) => text.push_str(c),
                None => text.push(' '),
            }
            sum += p;
            n += 1;
        }
        prev = best;
    }
    Ok((text, if n == 0 { 0.0 } else { sum / n as f32 }))
}

/// Top to bottom by rows (a line whose vertical extent overlaps the row's first line by half the taller of the
/// two joins that row), left to right in a row.
pub fn sort_reading_order(lines: &mut Vec<TextLine>) {
    lines.sort_by(|a, b| a.bbox.centre().1.total_cmp(&b.bbox.centre().1));
    let mut rows: Vec<Vec<TextLine>> = Vec::new();
    for line in lines.drain(..) {
        let joins = rows.last().and_then(|r| r.first()).is_some_and(|first| {
            let overlap = line.bbox.y2.min(first.bbox.y2) - line.bbox.y1.max(first.bbox.y1);
            overlap > 0.5 * line.bbox.height().max(first.bbox.height())
        });
        match rows.last_mut() {
            Some(row) if joins => row.push(line),
            _ => rows.push(vec![line]),
        }
    }
    for mut row in rows {
        row.sort_by(|a, b| a.bbox.x1.total_cmp(&b.bbox.x1));
        lines.extend(row);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn dict(chars: &str) -> Vec<String> {
        chars.chars().map(|c| c.to_string()).collect()
    }

    #[test]
    fn ctc_merges_repeats_drops_blanks_and_maps_the_space_class() {
        let d = dict("ABC");
        // classes: 0 blank, 1 A, 2 B, 3 C, 4 space
        let steps = [1, 1, 0, 1, 4, 2, 2, 0, 3];
        let mut probs = vec![0.0f32; steps.len() * 5];
        for (t, &c) in steps.iter().enumerate() {
            probs[t * 5 + c] = 0.9;
        }
        let (text, score) = ctc_decode(&probs, steps.len(), 5, &d).unwrap();
        assert_eq!(text, "AA BC");
        assert!((score - 0.9).abs() < 1e-6);
        assert!(ctc_decode(&probs, steps.len(), 9, &d).is_err(), "more classes than the dictionary explains");
    }

    #[test]
    fn every_bucket_plan_is_built_once_ahead_of_the_frames() {
        use crate::engine::FakeEngine;
        use std::sync::{Arc, Mutex};
        let manifest = crate::models::ocr::OcrManifest::by_name("ppocr_v4").unwrap().unwrap();
        let dir = Path::new("models");
        let built: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
        let log = built.clone();
        let loader: EngineLoader = Box::new(move |spec: ModelSpec| {
            log.lock().unwrap().push(spec.inputs[0].shape.clone());
            Ok(Box::new(FakeEngine::new(spec, |_| Ok(Vec::new()))) as Box<dyn Engine>)
        });
        let classifier = Box::new(FakeEngine::new(manifest.classifier_spec(dir), |_| Ok(Vec::new())));
        let mut reader = TextReader::from_parts(manifest.clone(), dir, OcrParams::default(), loader, classifier, dict("ab")).unwrap();
        let want = manifest.detector.buckets.len() + manifest.recogniser.widths.len();
        assert_eq!(reader.build_all_buckets().unwrap(), want);
        assert_eq!(reader.build_all_buckets().unwrap(), 0, "a second call builds nothing");
        let shapes = built.lock().unwrap().clone();
        assert_eq!(shapes.len(), want);
        for [w, h] in &manifest.detector.buckets {
            assert!(shapes.contains(&vec![1, 3, *h as usize, *w as usize]), "detector bucket {w}×{h} built");
        }
        for w in &manifest.recogniser.widths {
            assert!(shapes.contains(&vec![1, 3, manifest.recogniser.height as usize, *w as usize]), "recogniser width {w} built");
        }
    }

    #[test]
    fn the_dictionary_is_one_character_per_line() {
        assert_eq!(parse_dictionary("a\nb\n'\n"), vec!["a", "b", "'"]);
        assert_eq!(parse_dictionary("a\r\nb"), vec!["a", "b"]);
    }

    #[test]
    fn buckets_follow_the_aspect_ratio() {
        let b = [[640, 480], [480, 640], [640, 640], [640, 352], [352, 640]];
        assert_eq!(pick_bucket(640, 480, &b), [640, 480]);
        assert_eq!(pick_bucket(375, 500, &b), [480, 640]);
        assert_eq!(pick_bucket(1920, 1080, &b), [640, 352]);
        assert_eq!(pick_bucket(500, 500, &b), [640, 640]);
    }

    #[test]
    fn a_rotated_bar_gives_its_rotated_rectangle_grown_by_the_unclip_distance() {
        // a 60 × 10 bar turned by 10° around (100, 60) in a 200 × 120 map
        let (mw, mh) = (200usize, 120usize);
        let (c, s) = (10f32.to_radians().cos(), 10f32.to_radians().sin());
        let mut probs = vec![0.0f32; mw * mh];
        for y in 0..mh {
            for x in 0..mw {
                let (dx, dy) = (x as f32 - 100.0, y as f32 - 60.0);
                let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
                if u.abs() <= 30.0 && v.abs() <= 5.0 {
                    probs[y * mw + x] = 0.9;
                }
            }
        }
        let p = DbParams { threshold: 0.3, box_threshold: 0.5, unclip_ratio: 1.6, max_candidates: 10 };
        let boxes = db_boxes(&probs, mw, mh, &p).unwrap();
        assert_eq!(boxes.len(), 1);
        let (q, score) = boxes[0];
        // the dilated fringe inside the rectangle reads 0
        assert!(score > 0.7, "{score}");
        let (w, h) = quad_size(&q);
        // the region is ~61 × 11 after dilation; unclip adds 2 × (61·11·1.6 / 144) ≈ 15 to each side length
        assert!((w - 76.0).abs() < 4.0 && (h - 26.0).abs() < 4.0, "{w} × {h}");
        let angle = (q[1][1] - q[0][1]).atan2(q[1][0] - q[0][0]).to_degrees();
        assert!((angle - 10.0).abs() < 2.0, "{angle}");
        // top-left is left of top-right and above bottom-left
        assert!(q[0][0] < q[1][0] && q[0][1] < q[3][1]);
    }

    #[test]
    fn weak_or_thin_regions_are_dropped() {
        let (mw, mh) = (50usize, 20usize);
        let mut probs = vec![0.0f32; mw * mh];
        for x in 5..45 {
            probs[10 * mw + x] = 0.9; // one pixel tall: 2 after dilation, below the 3-pixel minimum side
        }
        for y in 2..8 {
            for x in 30..45 {
                probs[y * mw + x] = 0.35; // above the threshold, below the box threshold
            }
        }
        let p = DbParams { threshold: 0.3, box_threshold: 0.5, unclip_ratio: 1.6, max_candidates: 10 };
        assert!(db_boxes(&probs, mw, mh, &p).unwrap().is_empty());
        assert!(db_boxes(&probs[..10], mw, mh, &p).is_err());
    }

    #[test]
    fn crops_are_straightened_and_upright_lines_laid_flat() {
        let mut img = RgbImage::from_pixel(100, 100, image::Rgb([255, 255, 255]));
        for y in 40..50 {
            for x in 20..80 {
                img.put_pixel(x, y, image::Rgb([0, 0, 0]));
            }
        }
        let q = [[20.0, 40.0], [80.0, 40.0], [80.0, 50.0], [20.0, 50.0]];
        let crop = crop_quad(&img, &q);
        assert_eq!((crop.width(), crop.height()), (60, 10));
        assert!(crop.pixels().all(|p| p.0[0] < 40), "the crop holds only the black bar");
        let upright = [[40.0, 10.0], [50.0, 10.0], [50.0, 90.0], [40.0, 90.0]];
        let crop = crop_quad(&img, &upright);
        assert_eq!((crop.width(), crop.height()), (80, 10));
    }

    #[test]
    fn line_inputs_pick_the_smallest_width_that_holds_them() {
        let crop = RgbImage::from_pixel(200, 20, image::Rgb([255, 0, 0]));
        let (t, w) = line_input(&mut RgbResizer::new(), &crop, 0, 48, &[320, 640, 960]).unwrap();
        assert_eq!((w, t.shape.clone()), (640, vec![1, 3, 48, 640]));
        let v = t.as_f32().unwrap();
        // BGR: blue plane first (0 → −1), red plane last (255 → 1); padding past 480 px is 0
        assert!((v[0] + 1.0).abs() < 1e-6 && (v[2 * 48 * 640] - 1.0).abs() < 1e-6);
        assert_eq!(v[2 * 48 * 640 + 600], 0.0);
        let long = RgbImage::from_pixel(2000, 20, image::Rgb([0, 0, 0]));
        assert_eq!(line_input(&mut RgbResizer::new(), &long, 0, 48, &[320, 640, 960]).unwrap().1, 960, "squeezed into the widest");
        let (t, w) = line_input(&mut RgbResizer::new(), &crop, 192, 48, &[192]).unwrap();
        assert_eq!((w, t.shape), (192, vec![1, 3, 48, 192]));
    }

    #[test]
    fn reading_order_is_rows_then_columns() {
        let line = |x: f32, y: f32, t: &str| TextLine {
            quad: [[x, y], [x + 40.0, y], [x + 40.0, y + 10.0], [x, y + 10.0]],
            bbox: BoxF::new(x, y, x + 40.0, y + 10.0),
            text: t.into(),
            score: 1.0,
            det_score: 1.0,
            flipped: false,
        };
        let mut v = vec![line(60.0, 31.0, "D"), line(0.0, 30.0, "C"), line(50.0, 0.0, "B"), line(0.0, 2.0, "A")];
        sort_reading_order(&mut v);
        let order: String = v.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(order, "ABCD");
    }
}

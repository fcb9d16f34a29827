//! The pose model (MoveNet MultiPose): people's 17 COCO keypoints, on the whole frame and on people's widened
//! boxes, matched to the detected people. `preprocess → engine.run → decode`, the crop and letterbox carried as
//! values.

use super::resize::RgbView;
use super::{preprocess, PerceiveError};
use crate::engine::{Engine, Tensor};
use crate::geometry::{BoxF, Letterbox};
use crate::models::{DecoderManifest, Manifest, Role};
use crate::scene::pose::{Point, JOINTS};
use crate::timing::{ModelName, Stage, Timings};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Values per person in MoveNet's output: 17 × (y, x, score), then ymin, xmin, ymax, xmax, score.
const ROW: usize = 3 * JOINTS + 5;

/// One person the pose model found, in image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    pub bbox: BoxF,
    pub score: f32,
    pub keypoints: [Point; JOINTS],
}

impl Pose {
    /// Keypoints at or above `threshold`.
    pub fn visible(&self, threshold: f32) -> usize {
        self.keypoints.iter().filter(|p| p.score >= threshold).count()
    }

    /// How well this pose fits a detected person's box: the IoU of the two boxes.
    pub fn fit(&self, person: &BoxF) -> f32 {
        self.bbox.iou(person)
    }
}

/// Where the pose model looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoseMode {
    /// Once on the whole frame.
    Frame,
    /// Once per person, on the person's widened box.
    Crops,
    /// On the whole frame, then on the widened box of each person the frame run did not find well.
    FrameThenCrops,
}

/// How the pose stage runs and matches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoseParams {
    pub mode: PoseMode,
    /// Most crop runs per frame (largest people first).
    pub max_crops: usize,
    /// People shorter than this (pixels) get no crop run: too small to show their joints.
    pub min_crop_height: f32,
    /// A frame-run pose with fewer visible keypoints than this sends its person to a crop run.
    pub min_visible: usize,
    /// A pose belongs to a person when their boxes overlap at least this much (IoU).
    pub min_fit: f32,
    /// How much a person's box is widened on each side for a crop run (fraction of its longer side).
    pub crop_context: f32,
    /// Crop runs share one model run four at a time, each crop in a quarter of the input (a 2 × 2 mosaic; a crop
    /// is seen at half the input size, as large as most people it is run for are in the frame).
    #[serde(default = "yes")]
    pub mosaic: bool,
}

fn yes() -> bool {
    true
}

/// Crops per mosaic run.
pub const MOSAIC: usize = 4;

impl Default for PoseParams {
    fn default() -> Self {
        PoseParams {
            mode: PoseMode::FrameThenCrops,
            max_crops: 4,
            min_crop_height: 48.0,
            min_visible: 10,
            min_fit: 0.3,
            crop_context: 0.15,
            mosaic: true,
        }
    }
}

/// MoveNet's output `[1, N, 56]` as poses in image pixels: `lb` maps the model canvas back to the region the
/// model saw, `origin` is that region's top-left corner in the image. People below `person_score` are dropped.
pub fn decode_movenet(out: &Tensor, lb: &Letterbox, origin: (f32, f32), person_score: f32) -> Result<Vec<Pose>, PerceiveError> {
    let values = out.as_f32()?;
    let n = match out.shape.as_slice() {
        [1, n, row] | [n, row] if *row == ROW => *n,
        s => return Err(PerceiveError::BadOutput(format!("pose output shape {s:?}, expected [1, N, {ROW}]"))),
    };
    if values.len() < n * ROW {
        return Err(PerceiveError::BadOutput(format!("pose output holds {} values for {n} people", values.len())));
    }
    let (mw, mh) = (lb.model_w as f32, lb.model_h as f32);
    let to_image = |y: f32, x: f32| {
        let (ix, iy) = lb.image_from_model(x * mw, y * mh);
        (ix + origin.0, iy + origin.1)
    };
    let mut poses = Vec::new();
    for row in values.chunks_exact(ROW).take(n) {
        let (Some(kps), Some(tail)) = (row.get(..3 * JOINTS), row.get(3 * JOINTS..)) else { continue };
        let &[ymin, xmin, ymax, xmax, score] = tail else { continue };
        if score.is_nan() || score < person_score {
            continue;
        }
        let mut keypoints = [Point::default(); JOINTS];
        for (k, v) in keypoints.iter_mut().zip(kps.chunks_exact(3)) {
            let &[y, x, s] = v else { continue };
            let (ix, iy) = to_image(y, x);
            *k = Point { x: ix, y: iy, score: if s.is_finite() { s } else { 0.0 } };
        }
        let (x1, y1) = to_image(ymin, xmin);
        let (x2, y2) = to_image(ymax, xmax);
        poses.push(Pose { bbox: BoxF::new(x1, y1, x2, y2), score, keypoints });
    }
    Ok(poses)
}

/// Assigns poses to people, best fit first, each pose to at most one person and only at `min_fit` or more.
pub fn match_poses(people: &[BoxF], poses: &[Pose], min_fit: f32) -> Vec<Option<usize>> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, b) in people.iter().enumerate() {
        for (j, p) in poses.iter().enumerate() {
            let f = p.fit(b);
            if f >= min_fit {
                pairs.push((f, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut out = vec![None; people.len()];
    let mut used = vec![false; poses.len()];
    for (_, i, j) in pairs {
        if out.get(i).is_some_and(Option::is_none) && used.get(j) == Some(&false) {
            if let (Some(o), Some(u)) = (out.get_mut(i), used.get_mut(j)) {
                *o = Some(j);
                *u = true;
            }
        }
    }
    out
}

/// The region a crop run sees around a person: the box widened by `context` of its longer side on each side,
/// clamped to the image.
pub fn crop_region(person: &BoxF, context: f32, width: u32, height: u32) -> BoxF {
    let m = context * person.width().max(person.height());
    BoxF::new(person.x1 - m, person.y1 - m, person.x2 + m, person.y2 + m).clamp(width as f32, height as f32)
}

pub struct PoseEstimator {
    manifest: Manifest,
    engine: Box<dyn Engine>,
    person_score: f32,
    keypoint_score: f32,
    label: ModelName,
    prep: preprocess::Preprocessor,
}

impl PoseEstimator {
    pub fn new(manifest: Manifest, engine: Box<dyn Engine>) -> Result<Self, PerceiveError> {
        let (person_score, keypoint_score) = match (&manifest.role, &manifest.decoder) {
            (Role::Pose, DecoderManifest::Movenet { person_score, keypoint_score }) => (*person_score, *keypoint_score),
            _ => {
                return Err(PerceiveError::WrongModel {
                    name: manifest.name.clone(),
                    want: "pose model",
                    reason: "its manifest does not describe MoveNet keypoints".into(),
                })
            }
        };
        let label = ModelName::from(manifest.name.as_str());
        Ok(PoseEstimator { manifest, engine, person_score, keypoint_score, label, prep: preprocess::Preprocessor::new() })
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn provider(&self) -> String {
        self.engine.provider()
    }

    /// The score at or above which a keypoint is visible.
    pub fn keypoint_score(&self) -> f32 {
        self.keypoint_score
    }

    /// The people the model finds in `region` of the image (the whole image when none), in image pixels.
    pub fn estimate(&mut self, rgb: &RgbImage, region: Option<&BoxF>, timings: &mut Timings) -> Result<Vec<Pose>, PerceiveError> {
        let t = Instant::now();
        let (w, h) = (rgb.width(), rgb.height());
        let (view, origin) = match region {
            Some(r) => {
                let (x, y, cw, ch) = crate::perceive::masks::BoxMask::frame(&r.clamp(w as f32, h as f32), w, h);
                if cw == 0 || ch == 0 {
                    return Ok(Vec::new());
                }
                (RgbView::crop(rgb, x, y, cw, ch), (x as f32, y as f32))
            }
            None => (RgbView::whole(rgb), (0.0, 0.0)),
        };
        let (tensor, lb) = self.prep.preprocess(view, &self.manifest.input)?;
        timings.record(Stage::Preprocess, Some(&self.label), t);
        let (poses, t) = Self::run_and_decode(self.engine.as_mut(), &self.label, self.person_score, tensor, &lb, origin, timings)?;
        timings.record(Stage::Postprocess, Some(&self.label), t);
        Ok(poses)
    }

    /// Runs the model on a prepared input and decodes its poses through `lb` and `origin`; returns them with the
    /// start of the postprocess stage (the caller's own postprocess ends it).
    /// (The model's fields one by one: the input may be borrowed from the kept preprocessing scratch.)
    fn run_and_decode(
        engine: &mut dyn Engine,
        label: &ModelName,
        person_score: f32,
        tensor: &Tensor,
        lb: &Letterbox,
        origin: (f32, f32),
        timings: &mut Timings,
    ) -> Result<(Vec<Pose>, Instant), PerceiveError> {
        let t = Instant::now();
        let outputs = engine.run(std::slice::from_ref(tensor))?;
        timings.record(Stage::Inference, Some(label), t);
        let t = Instant::now();
        let out = outputs.first().ok_or_else(|| PerceiveError::BadOutput("pose model: no output".into()))?;
        Ok((decode_movenet(out, lb, origin, person_score)?, t))
    }
}

impl PoseEstimator {
    /// The people the model finds in each of up to [`MOSAIC`] regions of the image, in one run: each region
    /// letterboxed into its quarter of the input (left to right, top to bottom). A pose is given to the quarter
    /// holding its box's centre and kept only if its box stays within that quarter (a pose straddling two
    /// quarters is two people run together); keypoints are mapped back through that region's own letterbox.
    pub fn estimate_mosaic(&mut self, rgb: &RgbImage, regions: &[BoxF], timings: &mut Timings) -> Result<Vec<Vec<Pose>>, PerceiveError> {
        let t = Instant::now();
        let (w, h) = (rgb.width(), rgb.height());
        let (mw, mh) = self.manifest.input.size();
        let (cw, ch) = (mw / 2, mh / 2);
        let pad = self.manifest.input.pad_value;
        let mut canvas = RgbImage::from_pixel(mw, mh, image::Rgb([pad, pad, pad]));
        let mut cell_input = self.manifest.input.clone();
        cell_input.shape = match self.manifest.input.layout {
            crate::models::Layout::Nhwc => [1, ch as usize, cw as usize, 3],
            crate::models::Layout::Nchw => [1, 3, ch as usize, cw as usize],
        };
        // per region: its letterbox into the cell and its origin in the image (none: an empty region)
        let mut placed: Vec<Option<(Letterbox, (f32, f32))>> = Vec::with_capacity(MOSAIC);
        for (k, r) in regions.iter().take(MOSAIC).enumerate() {
            let (x, y, rw, rh) = crate::perceive::masks::BoxMask::frame(&r.clamp(w as f32, h as f32), w, h);
            if rw == 0 || rh == 0 {
                placed.push(None);
                continue;
            }
            let lb = self.prep.letterbox(RgbView::crop(rgb, x, y, rw, rh), &cell_input)?;
            let cell = RgbImage::from_raw(cw, ch, self.prep.canvas().to_vec())
                .ok_or_else(|| PerceiveError::Resize(format!("a {cw}x{ch} mosaic cell: buffer size")))?;
            let (ox, oy) = ((k as u32 % 2) * cw, (k as u32 / 2) * ch);
            image::imageops::replace(&mut canvas, &cell, i64::from(ox), i64::from(oy));
            placed.push(Some((lb, (x as f32, y as f32))));
        }
        let tensor = preprocess::canvas_to_tensor(&canvas, &self.manifest.input)?;
        timings.record(Stage::Preprocess, Some(&self.label), t);
        let whole = Letterbox::new(mw, mh, mw, mh, crate::geometry::ResizeMode::Stretch);
        let (poses, t) = Self::run_and_decode(self.engine.as_mut(), &self.label, self.person_score, &tensor, &whole, (0.0, 0.0), timings)?;
        let mut per_region: Vec<Vec<Pose>> = vec![Vec::new(); placed.len()];
        for pose in poses {
            let (px, py) = pose.bbox.centre();
            let (col, row) = (u32::from(px >= cw as f32), u32::from(py >= ch as f32));
            let k = (row * 2 + col) as usize;
            let (x0, y0) = ((col * cw) as f32, (row * ch) as f32);
            // a box may reach a little past its quarter (a limb at the edge), not into the next person
            let (sx, sy) = (0.1 * cw as f32, 0.1 * ch as f32);
            let inside = pose.bbox.x1 >= x0 - sx && pose.bbox.x2 <= x0 + cw as f32 + sx && pose.bbox.y1 >= y0 - sy && pose.bbox.y2 <= y0 + ch as f32 + sy;
            let (Some(Some((lb, origin))), Some(slot)) = (placed.get(k), per_region.get_mut(k)) else { continue };
            if !inside {
                continue;
            }
            let back = |x: f32, y: f32| {
                let (ix, iy) = lb.image_from_model(x - x0, y - y0);
                (ix + origin.0, iy + origin.1)
            };
            let mut keypoints = pose.keypoints;
            for kp in keypoints.iter_mut() {
                (kp.x, kp.y) = back(kp.x, kp.y);
            }
            let (x1, y1) = back(pose.bbox.x1, pose.bbox.y1);
            let (x2, y2) = back(pose.bbox.x2, pose.bbox.y2);
            slot.push(Pose { bbox: BoxF::new(x1, y1, x2, y2), score: pose.score, keypoints });
        }
        timings.record(Stage::Postprocess, Some(&self.label), t);
        Ok(per_region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TensorData;
    use crate::geometry::ResizeMode;

    fn output(people: &[[f32; ROW]]) -> Tensor {
        let data: Vec<f32> = people.iter().flatten().copied().collect();
        Tensor::new(vec![1, people.len(), ROW], TensorData::F32(data)).unwrap()
    }

    fn person(y1: f32, x1: f32, y2: f32, x2: f32, score: f32) -> [f32; ROW] {
        let mut r = [0.0; ROW];
        for j in 0..JOINTS {
            // joints down the middle of the box, score rising with the index
            r[3 * j] = y1 + (y2 - y1) * j as f32 / 16.0;
            r[3 * j + 1] = 0.5 * (x1 + x2);
            r[3 * j + 2] = j as f32 / 16.0;
        }
        r[3 * JOINTS..].copy_from_slice(&[y1, x1, y2, x2, score]);
        r
    }

    #[test]
    fn decoding_undoes_the_letterbox_and_the_crop_offset() {
        // a 512x256 region letterboxed top-left into 256x256: content 256x128, scale 0.5
        let lb = Letterbox::new(512, 256, 256, 256, ResizeMode::LetterboxTopLeft);
        let out = output(&[person(0.0, 0.25, 0.5, 0.5, 0.8), person(0.1, 0.1, 0.2, 0.2, 0.1)]);
        let poses = decode_movenet(&out, &lb, (100.0, 50.0), 0.2).unwrap();
        assert_eq!(poses.len(), 1, "the second person is below the score");
        let p = &poses[0];
        // box: x 0.25..0.5 of 256 = 64..128 model px = 128..256 region px, + 100; y 0..0.5 → 0..256, + 50
        assert_eq!((p.bbox.x1, p.bbox.y1, p.bbox.x2, p.bbox.y2), (228.0, 50.0, 356.0, 306.0));
        assert_eq!(p.score, 0.8);
        assert_eq!((p.keypoints[0].x, p.keypoints[0].y), (292.0, 50.0));
        assert_eq!(p.keypoints[16].y, 306.0);
        assert_eq!(p.visible(0.5), 9);
    }

    #[test]
    fn bad_outputs_are_errors_not_empty_poses() {
        let lb = Letterbox::new(256, 256, 256, 256, ResizeMode::LetterboxTopLeft);
        let wrong = Tensor::new(vec![1, 6, 55], TensorData::F32(vec![0.0; 330])).unwrap();
        assert!(decode_movenet(&wrong, &lb, (0.0, 0.0), 0.2).is_err());
        let ints = Tensor::new(vec![1, 1, ROW], TensorData::I32(vec![0; ROW])).unwrap();
        assert!(decode_movenet(&ints, &lb, (0.0, 0.0), 0.2).is_err());
        let mut nan = person(0.0, 0.0, 1.0, 1.0, 0.9);
        nan[ROW - 1] = f32::NAN;
        assert!(decode_movenet(&output(&[nan]), &lb, (0.0, 0.0), 0.2).unwrap().is_empty());
    }

    #[test]
    fn each_pose_goes_to_its_best_fitting_person_once() {
        let pose = |b: BoxF| Pose { bbox: b, score: 0.9, keypoints: [Point::default(); JOINTS] };
        let people = [BoxF::new(0.0, 0.0, 10.0, 20.0), BoxF::new(2.0, 0.0, 12.0, 20.0), BoxF::new(50.0, 0.0, 60.0, 20.0)];
        let poses = [pose(BoxF::new(2.0, 0.0, 12.0, 20.0)), pose(BoxF::new(100.0, 0.0, 110.0, 20.0))];
        // person 1 fits pose 0 exactly; person 0 overlaps it too but loses it; nobody fits pose 1
        assert_eq!(match_poses(&people, &poses, 0.3), vec![None, Some(0), None]);
    }

    #[test]
    fn crop_regions_widen_by_the_longer_side_and_stay_inside() {
        let r = crop_region(&BoxF::new(100.0, 100.0, 140.0, 200.0), 0.1, 1000, 1000);
        assert_eq!((r.x1, r.y1, r.x2, r.y2), (90.0, 90.0, 150.0, 210.0));
        let r = crop_region(&BoxF::new(0.0, 0.0, 40.0, 100.0), 0.5, 60, 120);
        assert_eq!((r.x1, r.y1, r.x2, r.y2), (0.0, 0.0, 60.0, 120.0));
    }
}

//! Raw detector outputs → detections in image pixels. One decoder per output family; each is pure and takes
//! the letterbox used in preprocessing as a value.

use super::PerceiveError;
use crate::engine::Tensor;
use crate::geometry::{BoxF, Letterbox};

/// One detection in original-image pixels; `class` indexes the detector's label set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    pub score: f32,
    pub class: usize,
}

/// Candidate limits shared by the decoders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeParams {
    /// Drop class scores below this (low, e.g. 0.01, so COCO evaluation sees the whole ranking).
    pub score_threshold: f32,
    /// Keep at most this many candidates before NMS.
    pub max_candidates: usize,
    pub num_classes: usize,
}

fn bad(what: &str) -> PerceiveError {
    PerceiveError::BadOutput(what.to_string())
}

/// Best first: by score, ties by class, then box (a total order, so the unstable sort, which needs no scratch
/// buffer, ranks as a stable one would for distinct candidates).
fn best_first(a: &Detection, b: &Detection) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.class.cmp(&b.class)).then(a.bbox.total_cmp(&b.bbox))
}

/// Keeps the best `max` candidates (NaN-safe).
fn top_k(d: &mut Vec<Detection>, max: usize) {
    if d.len() > max {
        d.sort_unstable_by(best_first);
        d.truncate(max);
    }
}

/// YOLOX head output `[1, N, 5 + C]` with rows for each stride's grid, row-major; obj and classes sigmoid-ed.
pub fn decode_yolox(
    out: &Tensor,
    strides: &[u32],
    lb: &Letterbox,
    p: &DecodeParams,
    dets: &mut Vec<Detection>,
) -> Result<(), PerceiveError> {
    dets.clear();
    let v = out.as_f32()?;
    let row = 5 + p.num_classes;
    let expected: usize = strides
        .iter()
        .map(|s| (lb.model_w as usize).div_ceil(*s as usize) * (lb.model_h as usize).div_ceil(*s as usize))
        .sum();
    if out.shape.len() != 3 || out.shape.get(1) != Some(&expected) || out.shape.get(2) != Some(&row) {
        return Err(bad(&format!("yolox output shape {:?}, expected [1, {expected}, {row}]", out.shape)));
    }
    let mut rows = v.chunks_exact(row);
    for &s in strides {
        let gw = (lb.model_w as usize).div_ceil(s as usize);
        let gh = (lb.model_h as usize).div_ceil(s as usize);
        let s = s as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let Some(r) = rows.next() else { return Err(bad("yolox output too short")) };
                let [dx, dy, lw, lh, obj] = match r.get(..5) {
                    Some(&[a, b, c, d, e]) => [a, b, c, d, e],
                    _ => return Err(bad("yolox row too short")),
                };
                if obj.is_nan() || obj < p.score_threshold {
                    continue;
                }
                let cx = (dx + gx as f32) * s;
                let cy = (dy + gy as f32) * s;
                let w = lw.clamp(-20.0, 20.0).exp() * s;
                let h = lh.clamp(-20.0, 20.0).exp() * s;
                let bbox = lb.box_image_from_model(&BoxF::from_cxcywh(cx, cy, w, h));
                for (class, &c) in r.iter().skip(5).enumerate() {
                    let score = obj * c;
                    if score >= p.score_threshold {
                        dets.push(Detection { bbox, score, class });
                    }
                }
            }
        }
    }
    top_k(dets, p.max_candidates);
    Ok(())
}

/// GFL heads (PicoDet, NanoDet): `strides.len()` class maps `[1, N_s, C]` then as many distance maps
/// `[1, N_s, 4 * (reg_max + 1)]`.
pub fn decode_gfl(
    outs: &[Tensor],
    strides: &[u32],
    reg_max: u32,
    lb: &Letterbox,
    p: &DecodeParams,
    dets: &mut Vec<Detection>,
) -> Result<(), PerceiveError> {
    dets.clear();
    let bins = reg_max as usize + 1;
    if outs.len() != 2 * strides.len() {
        return Err(bad(&format!("gfl needs {} outputs, got {}", 2 * strides.len(), outs.len())));
    }
    let (cls_maps, dist_maps) = outs.split_at(strides.len());
    // the softmax over one side's bins, inline for the usual reg_max (7: 8 bins)
    let mut probs = smallvec::SmallVec::<[f32; 32]>::from_elem(0.0, bins);
    for ((&s, cls), dist) in strides.iter().zip(cls_maps).zip(dist_maps) {
        let gw = (lb.model_w as usize).div_ceil(s as usize);
        let gh = (lb.model_h as usize).div_ceil(s as usize);
        let cls_v = cls.as_f32()?;
        let dist_v = dist.as_f32()?;
        if cls_v.len() != gw * gh * p.num_classes || dist_v.len() != gw * gh * 4 * bins {
            return Err(bad(&format!(
                "gfl stride {s}: outputs {:?} and {:?} do not fit a {gw}x{gh} grid with {} classes",
                cls.shape, dist.shape, p.num_classes
            )));
        }
        let sf = s as f32;
        for (i, (scores, d)) in cls_v.chunks_exact(p.num_classes).zip(dist_v.chunks_exact(4 * bins)).enumerate() {
            let best = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if best.is_nan() || best < p.score_threshold {
                continue;
            }
            let (gx, gy) = ((i % gw) as f32, (i / gw) as f32);
            let cx = gx * sf + 0.5 * (sf - 1.0);
            let cy = gy * sf + 0.5 * (sf - 1.0);
            let mut side = [0f32; 4];
            for (k, logits) in d.chunks_exact(bins).enumerate() {
                let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (pb, &l) in probs.iter_mut().zip(logits) {
                    *pb = (l - m).exp();
                    sum += *pb;
                }
                let e: f32 = probs.iter().enumerate().map(|(b, pb)| b as f32 * pb).sum::<f32>() / sum.max(1e-12);
                if let Some(slot) = side.get_mut(k) {
                    *slot = e * sf;
                }
            }
            let [l, t, r, b] = side;
            let bbox = lb.box_image_from_model(&BoxF::new(cx - l, cy - t, cx + r, cy + b));
            for (class, &score) in scores.iter().enumerate() {
                if score >= p.score_threshold {
                    dets.push(Detection { bbox, score, class });
                }
            }
        }
    }
    top_k(dets, p.max_candidates);
    Ok(())
}

/// NMS-free DETR outputs: `labels [1, Q]` (i64), `boxes [1, Q, 4]` x1y1x2y2 in original pixels, `scores [1, Q]`.
pub fn decode_detr(outs: &[Tensor], p: &DecodeParams, dets: &mut Vec<Detection>) -> Result<(), PerceiveError> {
    dets.clear();
    let [labels, boxes, scores] = outs else {
        return Err(bad(&format!("detr needs 3 outputs, got {}", outs.len())));
    };
    let labels = labels.as_i64()?;
    let boxes = boxes.as_f32()?;
    let scores = scores.as_f32()?;
    if boxes.len() != 4 * labels.len() || scores.len() != labels.len() {
        return Err(bad("detr outputs disagree on the number of queries"));
    }
    dets.extend(labels
        .iter()
        .zip(boxes.chunks_exact(4))
        .zip(scores)
        .filter_map(|((&l, b), &score)| {
            let class = usize::try_from(l).ok().filter(|c| *c < p.num_classes)?;
            let [x1, y1, x2, y2] = <[f32; 4]>::try_from(b).ok()?;
            (score >= p.score_threshold).then(|| Detection { bbox: BoxF::new(x1, y1, x2, y2), score, class })
        }));
    top_k(dets, p.max_candidates);
    Ok(())
}

/// Greedy per-class non-maximum suppression (non-finite scores dropped): highest score first, drop same-class boxes with IoU > `iou`.
/// Leaves at most `max_out` detections in `dets`, best first.
pub fn nms(dets: &mut Vec<Detection>, iou: f32, max_out: usize) {
    dets.retain(|d| d.score.is_finite());
    dets.sort_unstable_by(best_first);
    // kept detections are compacted to the front of the candidates' own buffer: no second list
    let mut kept = 0;
    for i in 0..dets.len() {
        if kept >= max_out {
            break;
        }
        let Some(&d) = dets.get(i) else { break };
        let clash = dets.get(..kept).is_some_and(|k| k.iter().any(|k| k.class == d.class && k.bbox.iou(&d.bbox) > iou));
        if !clash {
            if let Some(slot) = dets.get_mut(kept) {
                *slot = d;
            }
            kept += 1;
        }
    }
    dets.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TensorData;
    use crate::geometry::ResizeMode;

    fn params() -> DecodeParams {
        DecodeParams { score_threshold: 0.3, max_candidates: 100, num_classes: 80 }
    }

    #[test]
    fn yolox_decodes_a_crafted_cell() {
        // 32x32 input, strides 8,16,32 -> 16 + 4 + 1 = 21 rows of 85
        let lb = Letterbox::new(64, 64, 32, 32, ResizeMode::LetterboxTopLeft); // image = 2x model
        let mut v = vec![0f32; 21 * 85];
        // stride-16 grid, cell (1, 0) = row 16 + 1
        let r = &mut v[17 * 85..18 * 85];
        r[0] = 0.5; // dx
        r[1] = 0.5; // dy
        r[2] = (2.0f32).ln(); // w = 2 * 16 = 32
        r[3] = 0.0; // h = 16
        r[4] = 0.9; // obj
        r[5 + 16] = 0.8; // class 16 (dog)
        let t = Tensor::new(vec![1, 21, 85], TensorData::F32(v)).unwrap();
        let mut d = Vec::new();
        decode_yolox(&t, &[8, 16, 32], &lb, &params(), &mut d).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 16);
        assert!((d[0].score - 0.72).abs() < 1e-6);
        // model centre (24, 8), size 32x16 -> model box (8,0)-(40,16) -> image x2
        let b = d[0].bbox;
        assert!((b.x1 - 16.0).abs() < 1e-4 && (b.y1 - 0.0).abs() < 1e-4);
        assert!((b.x2 - 80.0).abs() < 1e-4 && (b.y2 - 32.0).abs() < 1e-4);
    }

    #[test]
    fn yolox_rejects_wrong_shape() {
        let lb = Letterbox::new(64, 64, 32, 32, ResizeMode::LetterboxTopLeft);
        let t = Tensor::new(vec![1, 20, 85], TensorData::F32(vec![0.0; 20 * 85])).unwrap();
        assert!(decode_yolox(&t, &[8, 16, 32], &lb, &params(), &mut Vec::new()).is_err());
    }

    #[test]
    fn gfl_decodes_expected_distances() {
        // one stride of 16 on a 32x32 input: 2x2 grid; 8 bins per side
        let lb = Letterbox::new(32, 32, 32, 32, ResizeMode::LetterboxCentre);
        let mut cls = vec![0f32; 4 * 80];
        cls[3 * 80 + 2] = 0.7; // cell (1,1), class 2 (car)
        let mut dist = vec![-30f32; 4 * 32];
        // cell 3: each side puts all mass on bin 1 -> distance 1 * 16
        for side in 0..4 {
            dist[3 * 32 + side * 8 + 1] = 30.0;
        }
        let outs = vec![
            Tensor::new(vec![1, 4, 80], TensorData::F32(cls)).unwrap(),
            Tensor::new(vec![1, 4, 32], TensorData::F32(dist)).unwrap(),
        ];
        let mut d = Vec::new();
        decode_gfl(&outs, &[16], 7, &lb, &params(), &mut d).unwrap();
        assert_eq!(d.len(), 1);
        // centre = 1*16 + 7.5 = 23.5; box = 23.5 -+ 16
        let b = d[0].bbox;
        assert!((b.x1 - 7.5).abs() < 1e-3 && (b.x2 - 39.5).abs() < 1e-3, "{b:?}");
        assert_eq!(d[0].class, 2);
    }

    #[test]
    fn detr_filters_by_score_and_class_range() {
        let outs = vec![
            Tensor::new(vec![1, 3], TensorData::I64(vec![0, 99, 5])).unwrap(),
            Tensor::new(vec![1, 3, 4], TensorData::F32(vec![0., 0., 10., 10., 0., 0., 5., 5., 1., 1., 2., 2.])).unwrap(),
            Tensor::new(vec![1, 3], TensorData::F32(vec![0.9, 0.9, 0.1])).unwrap(),
        ];
        let mut d = Vec::new();
        decode_detr(&outs, &params(), &mut d).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, 0);
    }

    #[test]
    fn nms_keeps_the_strongest_and_other_classes() {
        let b = BoxF::new(0.0, 0.0, 10.0, 10.0);
        let dets = vec![
            Detection { bbox: b, score: 0.5, class: 0 },
            Detection { bbox: b.translate(1.0, 0.0), score: 0.9, class: 0 },
            Detection { bbox: b, score: 0.4, class: 1 },
            Detection { bbox: b.translate(50.0, 0.0), score: f32::NAN, class: 0 },
        ];
        let mut k = dets;
        nms(&mut k, 0.45, 10);
        assert_eq!(k.len(), 2, "the weaker same-class box and the NaN score are gone");
        assert_eq!(k[0].score, 0.9);
        assert!(k.iter().any(|d| d.class == 1));
    }

    proptest::proptest! {
        #[test]
        fn nms_output_has_no_same_class_overlap(boxes in proptest::collection::vec(
            (0.0f32..100.0, 0.0f32..100.0, 1.0f32..50.0, 1.0f32..50.0, 0.0f32..1.0, 0usize..3), 0..40)) {
            let dets: Vec<Detection> = boxes.iter().map(|&(x, y, w, h, s, c)|
                Detection { bbox: BoxF::new(x, y, x + w, y + h), score: s, class: c }).collect();
            let n = dets.len();
            let mut k = dets;
            nms(&mut k, 0.5, 1000);
            proptest::prop_assert!(k.len() <= n);
            for (i, a) in k.iter().enumerate() {
                for b in &k[i + 1..] {
                    proptest::prop_assert!(a.class != b.class || a.bbox.iou(&b.bbox) <= 0.5);
                }
                if i > 0 { proptest::prop_assert!(k[i - 1].score >= a.score); }
            }
        }
    }
}

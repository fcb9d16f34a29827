//! Backend equivalence: an engine that runs every input on a candidate backend and on a reference backend, returns
//! the candidate's outputs, and books how far they are from the reference's, element by element.

use super::{Engine, EngineError, ModelSpec, Tensor, TensorData};
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};

/// When two outputs agree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Float elements agree when `|candidate − reference| ≤ atol + rtol · |reference|`.
    pub atol: f64,
    pub rtol: f64,
    /// Least share of float elements that must agree, per output.
    pub min_float_agreement: f64,
    /// Least share of integer elements (labels, class ids) that must be equal, per output. The uint8 stuff
    /// segmenter's labels flip along region borders between any two backends (tract and ONNX Runtime: 2.3 % of
    /// pixels on dog.jpg), so the floor is the 97 % its FP32 derivations are held to.
    pub min_integer_agreement: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { atol: 1e-2, rtol: 1e-2, min_float_agreement: 0.999, min_integer_agreement: 0.97 }
    }
}

/// How one output of one model agreed over every run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputAgreement {
    /// The model file's name.
    pub model: String,
    pub output: String,
    pub integer: bool,
    pub runs: u64,
    pub elements: u64,
    /// Elements that agree (within tolerance for floats, equal for integers).
    pub agreeing: u64,
    pub max_abs_diff: f64,
    pub mean_abs_diff: f64,
    /// The largest |reference| seen, to read the differences against.
    pub max_abs_reference: f64,
    #[serde(skip)]
    sum_abs_diff: f64,
}

impl OutputAgreement {
    /// Share of elements that agree.
    pub fn agreement(&self) -> f64 {
        if self.elements == 0 {
            1.0
        } else {
            self.agreeing as f64 / self.elements as f64
        }
    }

    /// Whether the output is within `tol`.
    pub fn passes(&self, tol: &Tolerance) -> bool {
        let floor = if self.integer { tol.min_integer_agreement } else { tol.min_float_agreement };
        self.agreement() >= floor
    }
}

/// The agreement of every mirrored output, shared by the mirrored engines of one pipeline.
#[derive(Debug, Clone, Default)]
pub struct AgreementLog {
    tolerance: Tolerance,
    outputs: Arc<Mutex<Vec<OutputAgreement>>>,
}

impl AgreementLog {
    pub fn new(tolerance: Tolerance) -> Self {
        AgreementLog { tolerance, outputs: Arc::default() }
    }

    pub fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    /// Every output seen so far, in the order first seen.
    pub fn outputs(&self) -> Vec<OutputAgreement> {
        self.outputs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn book(&self, model: &str, output: &str, candidate: &Tensor, reference: &Tensor) -> Result<(), String> {
        if candidate.shape != reference.shape {
            return Err(format!("output {output}: shape {:?} against the reference's {:?}", candidate.shape, reference.shape));
        }
        let tol = self.tolerance;
        let (integer, diffs): (bool, Vec<(f64, f64)>) = match (&candidate.data, &reference.data) {
            (TensorData::F32(c), TensorData::F32(r)) => (false, c.iter().zip(r).map(|(c, r)| (f64::from(*c), f64::from(*r))).collect()),
            (TensorData::U8(c), TensorData::U8(r)) => (true, c.iter().zip(r).map(|(c, r)| (f64::from(*c), f64::from(*r))).collect()),
            (TensorData::I32(c), TensorData::I32(r)) => (true, c.iter().zip(r).map(|(c, r)| (f64::from(*c), f64::from(*r))).collect()),
            (TensorData::I64(c), TensorData::I64(r)) => (true, c.iter().zip(r).map(|(c, r)| (*c as f64, *r as f64)).collect()),
            _ => return Err(format!("output {output}: {:?} against the reference's {:?}", candidate.dtype(), reference.dtype())),
        };
        let mut outputs = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = match outputs.iter().position(|o| o.model == model && o.output == output) {
            Some(i) => i,
            None => {
                outputs.push(OutputAgreement {
                    model: model.to_string(),
                    output: output.to_string(),
                    integer,
                    runs: 0,
                    elements: 0,
                    agreeing: 0,
                    max_abs_diff: 0.0,
                    mean_abs_diff: 0.0,
                    max_abs_reference: 0.0,
                    sum_abs_diff: 0.0,
                });
                outputs.len() - 1
            }
        };
        let Some(o) = outputs.get_mut(idx) else { return Err(format!("output {output}: agreement record lost")) };
        o.runs += 1;
        for (c, r) in diffs {
            let d = (c - r).abs();
            // NaN on either side never agrees and shows as an infinite difference
            let d = if d.is_nan() { f64::INFINITY } else { d };
            let agrees = if integer { d == 0.0 } else { d <= tol.atol + tol.rtol * r.abs() };
            o.elements += 1;
            o.agreeing += u64::from(agrees);
            o.max_abs_diff = o.max_abs_diff.max(d);
            o.sum_abs_diff += d;
            o.max_abs_reference = o.max_abs_reference.max(r.abs());
        }
        o.mean_abs_diff = if o.elements == 0 { 0.0 } else { o.sum_abs_diff / o.elements as f64 };
        Ok(())
    }
}

/// One output's rows: (row width, values row-major).
type Rows = (usize, Vec<f64>);

/// Every output as rows along axis 1 (`[1, N, …]`, the same N for all): N and each output's rows. None when the
/// outputs are not one set of rows.
fn rows_of(outputs: &[Tensor]) -> Option<(usize, Vec<Rows>)> {
    let mut n = None;
    let mut out = Vec::with_capacity(outputs.len());
    for t in outputs {
        let (&[1, rows], rest) = (t.shape.get(..2)?, t.shape.get(2..)?) else { return None };
        if *n.get_or_insert(rows) != rows {
            return None;
        }
        let values: Vec<f64> = match &t.data {
            TensorData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::U8(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        };
        out.push((rest.iter().product::<usize>(), values));
    }
    Some((n?, out))
}

/// Row `i` of output `o` of a set of rows.
fn row(set: &[Rows], o: usize, i: usize) -> Option<&[f64]> {
    let (w, v) = set.get(o)?;
    v.get(i * w..(i + 1) * w)
}

/// The candidate's outputs with their rows reordered to pair each reference row (in order) with the unused
/// candidate row nearest to it (least summed |difference| over every output's row); None when the outputs are
/// not one set of rows of the same shape on both sides.
fn align_rows(candidate: &[Tensor], reference: &[Tensor]) -> Option<Vec<Tensor>> {
    let (n, cand) = rows_of(candidate)?;
    let (m, refr) = rows_of(reference)?;
    if n != m || cand.len() != refr.len() || cand.iter().zip(&refr).any(|(c, r)| c.0 != r.0) {
        return None;
    }
    let mut used = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for i in 0..n {
        let mut best: Option<(f64, usize)> = None;
        for (j, taken) in used.iter().enumerate() {
            if *taken {
                continue;
            }
            let mut d = 0.0;
            for o in 0..cand.len() {
                let (c, r) = (row(&cand, o, j)?, row(&refr, o, i)?);
                d += c.iter().zip(r).map(|(a, b)| (a - b).abs()).sum::<f64>();
            }
            let d = if d.is_nan() { f64::INFINITY } else { d };
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, j));
            }
        }
        let (_, j) = best?;
        *used.get_mut(j)? = true;
        order.push(j);
    }
    candidate
        .iter()
        .enumerate()
        .map(|(o, t)| {
            let w = cand.get(o)?.0;
            let pick = |len: usize| order.iter().flat_map(move |&j| j * w..(j + 1) * w).filter(move |&k| k < len);
            let data = match &t.data {
                TensorData::F32(v) => TensorData::F32(pick(v.len()).filter_map(|k| v.get(k).copied()).collect()),
                TensorData::U8(v) => TensorData::U8(pick(v.len()).filter_map(|k| v.get(k).copied()).collect()),
                TensorData::I32(v) => TensorData::I32(pick(v.len()).filter_map(|k| v.get(k).copied()).collect()),
                TensorData::I64(v) => TensorData::I64(pick(v.len()).filter_map(|k| v.get(k).copied()).collect()),
            };
            Tensor::new(t.shape.clone(), data).ok()
        })
        .collect()
}

/// Runs the candidate engine and the reference engine on the same inputs; returns the candidate's outputs.
pub struct Mirror {
    candidate: Box<dyn Engine>,
    reference: Box<dyn Engine>,
    log: AgreementLog,
    model: String,
}

impl Mirror {
    pub fn new(candidate: Box<dyn Engine>, reference: Box<dyn Engine>, log: AgreementLog) -> Self {
        let model = candidate
            .spec()
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| candidate.spec().path.display().to_string());
        Mirror { candidate, reference, log, model }
    }
}

impl Engine for Mirror {
    fn spec(&self) -> &ModelSpec {
        self.candidate.spec()
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        let candidate = self.candidate.run(inputs)?;
        let reference = self.reference.run(inputs)?;
        let path = self.candidate.spec().path.clone();
        if candidate.len() != reference.len() {
            return Err(EngineError::OutputCount { path, want: reference.len(), have: candidate.len() });
        }
        // a set of rows is compared row to row after pairing each reference row with its nearest candidate row
        let aligned = if self.candidate.spec().unordered_rows { align_rows(&candidate, &reference) } else { None };
        let booked = aligned.as_deref().unwrap_or(&candidate);
        for (i, (c, r)) in booked.iter().zip(&reference).enumerate() {
            let name = self.candidate.spec().outputs.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
            self.log.book(&self.model, &name, c, r).map_err(|reason| EngineError::Run { path: path.clone(), reason })?;
        }
        Ok(candidate)
    }

    fn backend(&self) -> &'static str {
        self.candidate.backend()
    }

    fn provider(&self) -> String {
        format!("{} (checked against {})", self.candidate.provider(), self.reference.provider())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::engine::FakeEngine;

    fn spec() -> ModelSpec {
        ModelSpec { path: "m/det.onnx".into(), inputs: vec![], outputs: vec!["scores".into(), "labels".into()], ignore_declared_shapes: false, unordered_rows: false }
    }

    fn outputs(scores: Vec<f32>, labels: Vec<i64>) -> Vec<Tensor> {
        vec![
            Tensor::new(vec![scores.len()], TensorData::F32(scores)).unwrap(),
            Tensor::new(vec![labels.len()], TensorData::I64(labels)).unwrap(),
        ]
    }

    /// A DETR-like set: labels [1, 3], boxes [1, 3, 2].
    fn detr(labels: Vec<i64>, boxes: Vec<f32>) -> Vec<Tensor> {
        vec![Tensor::new(vec![1, 3], TensorData::I64(labels)).unwrap(), Tensor::new(vec![1, 3, 2], TensorData::F32(boxes)).unwrap()]
    }

    #[test]
    fn a_set_of_rows_is_compared_after_pairing_rows_not_by_position() {
        let set_spec = || ModelSpec { unordered_rows: true, outputs: vec!["labels".into(), "boxes".into()], ..spec() };
        // the candidate lists the last two (tied) queries the other way round; the first is slightly off
        let (c, r) = (detr(vec![1, 7, 2], vec![10.001, 20.0, 50.0, 60.0, 30.0, 40.0]), detr(vec![1, 2, 7], vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0]));
        for (unordered, agreeing) in [(true, [3u64, 6]), (false, [1, 2])] {
            let log = AgreementLog::new(Tolerance::default());
            let (cc, rr) = (c.clone(), r.clone());
            let spec = if unordered { set_spec() } else { ModelSpec { outputs: vec!["labels".into(), "boxes".into()], ..spec() } };
            let cand = FakeEngine::new(spec.clone(), move |_: &[Tensor]| Ok(cc.clone()));
            let refe = FakeEngine::new(spec, move |_: &[Tensor]| Ok(rr.clone()));
            let mut m = Mirror::new(Box::new(cand), Box::new(refe), log.clone());
            let out = m.run(&[]).unwrap();
            assert_eq!(out, c, "the pipeline gets the candidate's outputs as they were");
            let booked = log.outputs();
            assert_eq!([booked[0].agreeing, booked[1].agreeing], agreeing, "unordered {unordered}");
        }
        // a real difference still shows after pairing
        let log = AgreementLog::new(Tolerance::default());
        let wrong = detr(vec![1, 7, 2], vec![10.0, 20.0, 50.0, 60.0, 35.0, 40.0]);
        let cand = FakeEngine::new(set_spec(), move |_: &[Tensor]| Ok(wrong.clone()));
        let rr = r.clone();
        let refe = FakeEngine::new(set_spec(), move |_: &[Tensor]| Ok(rr.clone()));
        Mirror::new(Box::new(cand), Box::new(refe), log.clone()).run(&[]).unwrap();
        assert_eq!(log.outputs()[1].agreeing, 5);
        assert!((log.outputs()[1].max_abs_diff - 5.0).abs() < 1e-6);
    }

    #[test]
    fn books_differences_and_returns_the_candidates_outputs() {
        let log = AgreementLog::new(Tolerance::default());
        let cand = FakeEngine::new(spec(), |_: &[Tensor]| Ok(outputs(vec![1.0, 0.5, 0.2, 9.0], vec![3, 4])));
        let refe = FakeEngine::new(spec(), |_: &[Tensor]| Ok(outputs(vec![1.005, 0.5, 0.3, 9.05], vec![3, 5])));
        let mut m = Mirror::new(Box::new(cand), Box::new(refe), log.clone());
        let out = m.run(&[]).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[1.0, 0.5, 0.2, 9.0]);
        let booked = log.outputs();
        assert_eq!(booked.len(), 2);
        let (s, l) = (&booked[0], &booked[1]);
        assert_eq!((s.model.as_str(), s.output.as_str(), s.integer, s.elements), ("det.onnx", "scores", false, 4));
        // 0.005 ≤ 0.01 + 0.01·1.005 and 0.05 ≤ 0.01 + 0.01·9.05 agree; 0.1 does not
        assert_eq!(s.agreeing, 3);
        assert!((s.max_abs_diff - 0.1).abs() < 1e-6, "{}", s.max_abs_diff);
        assert_eq!((l.integer, l.elements, l.agreeing), (true, 2, 1));
        assert!(!s.passes(&Tolerance::default()) && !l.passes(&Tolerance::default()));
        assert!(l.passes(&Tolerance { min_integer_agreement: 0.5, ..Tolerance::default() }));
    }

    #[test]
    fn a_shape_or_type_disagreement_is_an_error_naming_the_output() {
        let log = AgreementLog::new(Tolerance::default());
        let cand = FakeEngine::new(spec(), |_: &[Tensor]| Ok(outputs(vec![1.0], vec![3])));
        let refe = FakeEngine::new(spec(), |_: &[Tensor]| Ok(outputs(vec![1.0, 2.0], vec![3])));
        let err = Mirror::new(Box::new(cand), Box::new(refe), log).run(&[]).unwrap_err().to_string();
        assert!(err.contains("det.onnx") && err.contains("scores") && err.contains("[1]") && err.contains("[2]"), "{err}");
    }
}

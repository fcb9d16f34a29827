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
        for (i, (c, r)) in candidate.iter().zip(&reference).enumerate() {
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
        ModelSpec { path: "m/det.onnx".into(), inputs: vec![], outputs: vec!["scores".into(), "labels".into()], ignore_declared_shapes: false }
    }

    fn outputs(scores: Vec<f32>, labels: Vec<i64>) -> Vec<Tensor> {
        vec![
            Tensor::new(vec![scores.len()], TensorData::F32(scores)).unwrap(),
            Tensor::new(vec![labels.len()], TensorData::I64(labels)).unwrap(),
        ]
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

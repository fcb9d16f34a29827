//! A fake engine for unit tests: returns outputs computed by a closure from the inputs, and records the calls.

use super::{check_inputs, Engine, EngineError, ModelSpec, Tensor};

type Responder = Box<dyn FnMut(&[Tensor]) -> Result<Vec<Tensor>, EngineError> + Send>;

pub struct FakeEngine {
    spec: ModelSpec,
    respond: Responder,
    /// How many times `run` was called.
    pub calls: usize,
}

impl FakeEngine {
    pub fn new(spec: ModelSpec, respond: impl FnMut(&[Tensor]) -> Result<Vec<Tensor>, EngineError> + Send + 'static) -> Self {
        FakeEngine { spec, respond: Box::new(respond), calls: 0 }
    }
}

impl Engine for FakeEngine {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Booked as an engine run for the allocation counts, as a real engine's run is: the fake stands in for it,
    /// so the outputs it builds are not a host stage's allocations.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, EngineError> {
        check_inputs(&self.spec, inputs)?;
        self.calls += 1;
        crate::alloc_count::in_engine(|| (self.respond)(inputs))
    }

    fn backend(&self) -> &'static str {
        "fake"
    }
}

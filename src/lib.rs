//! pancap: grounded panoptic captions from camera frames, on edge devices.
//!
//! Pipeline: [`source`] frames → [`perceive`] (detector suite, discovery, stuff) → [`scene`] graph →
//! [`caption`] text and formats. Models are described by [`models`] manifests and run behind the
//! [`engine::Engine`] seam.

pub mod alloc_count;
pub mod caption;
pub mod engine;
#[cfg(feature = "eval")]
pub mod eval;
pub mod geometry;
pub mod math;
pub mod models;
pub mod perceive;
pub mod pipeline;
pub mod profile;
#[cfg(feature = "mqtt")]
pub mod publish;
#[cfg(feature = "quantize")]
pub mod quantize;
pub mod score;
#[cfg(feature = "serve")]
pub mod serve;
pub mod scene;
pub mod source;
pub mod stream;
pub mod targets;
pub mod timing;
pub mod verify;

pub use pipeline::{FrameResult, Pipeline, PipelineConfig, PipelineError};

/// The library's aggregated error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Provision(#[from] models::ProvisionError),
    #[error(transparent)]
    Manifest(#[from] models::ManifestError),
}

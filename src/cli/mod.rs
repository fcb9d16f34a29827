//! Subcommands beyond `caption` and `models`, and the argument groups they share.

pub mod eval;
pub mod profile;
pub mod score;
pub mod stream;

use pancap::PipelineConfig;
use std::path::Path;

/// Which models run: shared by `caption` and `eval`.
#[derive(clap::Args, Clone)]
pub struct SuiteArgs {
    /// Detectors of the suite, primary first
    #[arg(long, value_delimiter = ',', default_values_t = pancap::pipeline::DEFAULT_DETECTORS.iter().map(|s| s.to_string()))]
    pub detectors: Vec<String>,
    /// Skip stuff segmentation (things only)
    #[arg(long)]
    pub no_stuff: bool,
    /// Skip the extra-instance discovery pass
    #[arg(long)]
    pub no_discovery: bool,
    /// Minimum merged score for an entity to be captioned
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
}

impl SuiteArgs {
    pub fn config(&self, models_dir: &Path) -> PipelineConfig {
        PipelineConfig {
            models_dir: models_dir.to_path_buf(),
            detectors: self.detectors.clone(),
            segmenter: if self.no_stuff { None } else { PipelineConfig::default().segmenter },
            discovery: if self.no_discovery { None } else { PipelineConfig::default().discovery },
            caption_threshold: self.threshold,
            ..PipelineConfig::default()
        }
    }
}

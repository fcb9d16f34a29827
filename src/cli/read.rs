//! `pancap read`: the text reader alone (PP-OCR) over images, one JSON line per image with every line read.

use super::BackendArgs;
use anyhow::{Context, Result};
use pancap::engine::BackendConfig;
use pancap::perceive::ocr::{OcrParams, TextLine};
use pancap::pipeline::{load_text_reader, DEFAULT_TEXT_READER};
use pancap::source::{self, DecodeLimits};
use pancap::timing::Timings;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Image files or directories (not recursive)
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Text reader model
    #[arg(long, default_value = DEFAULT_TEXT_READER)]
    reader: String,
    /// Lines read with a lower confidence are left out
    #[arg(long, default_value_t = OcrParams::default().min_score)]
    min_score: f32,
    /// Most lines recognised per image (the largest first)
    #[arg(long, default_value_t = OcrParams::default().max_lines)]
    max_lines: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Serialize)]
struct ImageText<'a> {
    image: String,
    width: u32,
    height: u32,
    lines: &'a [TextLine],
    /// Reader time for this image (detector, classifier and recogniser runs with their pre/post-processing).
    ms: f64,
}

pub fn read_cmd(args: ReadArgs, models_dir: &Path) -> Result<i32> {
    let backend = args.backend.apply(BackendConfig::default());
    let params = OcrParams { min_score: args.min_score, max_lines: args.max_lines, ..OcrParams::default() };
    let mut reader = load_text_reader(&args.reader, models_dir, &backend, params).context("loading the text reader")?;
    let limits = DecodeLimits::default();
    let (inputs, _) = source::expand_inputs(&args.inputs);
    let (mut ok, mut failed) = (0usize, 0usize);
    let stdout = std::io::stdout();
    for input in inputs {
        let result = input.map_err(anyhow::Error::from).and_then(|path| {
            let frame = source::read_image(&path, &limits)?;
            let mut timings = Timings::default();
            let lines = reader.read(&frame.rgb, &mut timings).with_context(|| path.display().to_string())?;
            let record = ImageText {
                image: path.display().to_string(),
                width: frame.rgb.width(),
                height: frame.rgb.height(),
                lines: &lines,
                ms: timings.total_ms(),
            };
            Ok(serde_json::to_string(&record)?)
        });
        match result {
            Ok(line) => {
                let mut out = stdout.lock();
                writeln!(out, "{line}")?;
                ok += 1;
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    eprintln!("read {ok} image(s), {failed} failed");
    Ok(if failed > 0 { 1 } else { 0 })
}

//! `pancap profile`: the real suite over images or a recording after warm-up, per-stage percentiles,
//! end-to-end time and frame rate, peak RSS and allocations per frame, as a table or baseline JSON.

use super::score::{MatcherArgs, ReportFormat};
use super::SuiteArgs;
use anyhow::{bail, Context, Result};
use pancap::profile::{percentiles, stage_stats, ProfileReport, Suite};
use pancap::source::{self, DecodeLimits, Frame};
use pancap::stream::rss_kb;
use pancap::stream::sources::open_replay;
use pancap::timing::{Stage, Timings};
use pancap::Pipeline;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// Image files or directories (decoded anew for every measured frame, so decode is profiled too)
    inputs: Vec<PathBuf>,
    /// Or a recording (.mjpeg, .y4m, a directory): its first --max-frames frames, decoded once up front
    #[arg(long, conflicts_with = "inputs")]
    replay: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    max_frames: usize,
    /// Frames run before measuring (engine warm-up, caches)
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Passes over the inputs that are measured
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Include the self-check second pass
    #[arg(long)]
    self_check: bool,
    /// Target name recorded in the report (see targets/)
    #[arg(long, default_value = "x86-cpu")]
    target: String,
    /// Machine description recorded in the report
    #[arg(long, default_value = "unspecified")]
    machine: String,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    /// Also write the JSON report here
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    suite: SuiteArgs,
    #[command(flatten)]
    matcher: MatcherArgs,
}

enum Input {
    File(PathBuf),
    Decoded(Box<Frame>),
}

pub fn profile_cmd(args: ProfileArgs, models_dir: &Path) -> Result<i32> {
    let limits = DecodeLimits::default();
    let inputs: Vec<Input> = match &args.replay {
        Some(path) => {
            let mut src = open_replay(path, None, None, limits)?;
            let mut frames = Vec::new();
            while frames.len() < args.max_frames {
                match src.next_frame() {
                    Some(Ok(f)) => frames.push(Input::Decoded(Box::new(f))),
                    Some(Err(e)) => log::warn!("skipped: {e}"),
                    None => break,
                }
            }
            frames
        }
        None => {
            let (paths, _) = source::expand_inputs(&args.inputs);
            paths.into_iter().filter_map(|p| p.map_err(|e| log::warn!("skipped: {e}")).ok()).map(Input::File).collect()
        }
    };
    if inputs.is_empty() {
        bail!("nothing to profile: give image files, a directory, or --replay FILE");
    }
    let mut pipeline = Pipeline::load(args.suite.config(models_dir)).context("loading the model suite")?;
    let mut matcher = if args.self_check { Some(args.matcher.build(models_dir)?) } else { None };

    let total = args.warmup + args.repeat.max(1) * inputs.len();
    let (mut frames, mut wall) = (Vec::new(), Vec::new());
    let mut allocs = pancap::alloc_count::PerFrame::default();
    for k in 0..total {
        let Some(input) = inputs.get(k % inputs.len()) else { break };
        let frame_start = pancap::alloc_count::mark();
        let t0 = Instant::now();
        let mut timings = Timings::default();
        let decoded;
        let frame = match input {
            Input::File(p) => {
                let t = Instant::now();
                decoded = source::read_image(p, &limits)?;
                timings.record(Stage::Decode, None, t);
                &decoded
            }
            Input::Decoded(f) => f.as_ref(),
        };
        let mut result = pipeline.process(frame, timings)?;
        if let Some(m) = matcher.as_mut() {
            let second = pipeline.second_opinion(frame, &mut result.caption.timings_ms)?;
            let t = Instant::now();
            let check = pancap::score::self_check(&result.caption, &second, m, 0.5, 0.0)?;
            drop(check);
            result.caption.timings_ms.record(Stage::SelfCheck, Some("scoring"), t);
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if k >= args.warmup {
            frames.push(result.caption.timings_ms);
            wall.push(ms);
            allocs.add_since(frame_start);
        }
    }
    let end_to_end = percentiles(&wall);
    let cfg = pipeline.config();
    let report = ProfileReport {
        target: args.target.clone(),
        machine: args.machine.clone(),
        backend: format!("{} (tract-onnx 0.23.9)", pipeline.backend()),
        build: if cfg!(debug_assertions) { "dev profile".into() } else { "release profile".into() },
        suite: Suite {
            detectors: cfg.detectors.clone(),
            segmenter: cfg.segmenter.clone(),
            discovery: cfg.discovery.is_some(),
            self_check: args.self_check,
        },
        images: match &args.replay {
            Some(p) => format!("{} ({} frames)", p.display(), inputs.len()),
            None => format!("{} image(s)", inputs.len()),
        },
        warmup: args.warmup,
        frames: wall.len(),
        stages: stage_stats(&frames),
        fps: if end_to_end.mean_ms > 0.0 { 1000.0 / end_to_end.mean_ms } else { 0.0 },
        end_to_end,
        peak_rss_kb: rss_kb().1,
        allocations_per_frame_outside_engines: allocs.outside_mean(),
        allocations_per_frame_in_engines: allocs.inside_mean(),
    };
    if let Some(p) = &args.output {
        std::fs::write(p, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", p.display()))?;
    }
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Text => {
            println!("{} on {} [{}], {}; {} measured frame(s) after {} warm-up", report.target, report.machine, report.backend, report.build, report.frames, report.warmup);
            println!("{:<14} {:<32} {:>9} {:>9} {:>9} {:>9}", "stage", "model", "p50 ms", "p95 ms", "p99 ms", "mean ms");
            for s in &report.stages {
                let stage = serde_json::to_value(s.stage)?.as_str().unwrap_or_default().to_string();
                println!("{:<14} {:<32} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", stage, s.model.as_deref().unwrap_or("-"), s.p50_ms, s.p95_ms, s.p99_ms, s.mean_ms);
            }
            let e = &report.end_to_end;
            println!("{:<14} {:<32} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", "end-to-end", "", e.p50_ms, e.p95_ms, e.p99_ms, e.mean_ms);
            println!("{:.2} fps; peak RSS {} kB", report.fps, report.peak_rss_kb);
            if let (Some(o), Some(i)) = (report.allocations_per_frame_outside_engines, report.allocations_per_frame_in_engines) {
                println!("heap allocations per frame: {o:.0} outside the engines, {i:.0} inside");
            }
        }
    }
    Ok(0)
}

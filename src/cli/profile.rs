//! `pancap profile`: the real suite over images or a recording after warm-up, per-stage percentiles,
//! end-to-end time and frame rate, peak RSS and allocations per frame, as a table or baseline JSON.

use super::score::{MatcherArgs, ReportFormat};
use super::SuiteArgs;
use anyhow::{bail, Context, Result};
use pancap::engine::{Backend, Precision};
use pancap::profile::{compare, percentiles, stage_stats, ProfileComparison, ProfileReport, Suite};
use pancap::source::{self, DecodeLimits, Frame};
use pancap::stream::rss_kb;
use pancap::stream::sources::open_replay;
use pancap::timing::{Stage, Timings};
use pancap::{Pipeline, PipelineConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One configuration to profile: `BACKEND[/PRECISION][@THREADS]`, e.g. `ort-cpu`, `tract/int8`,
/// `ort-tensorrt/fp16`, `tract@1`.
#[derive(Clone, Debug)]
pub struct Variant {
    backend: Backend,
    precision: Option<Precision>,
    threads: Option<usize>,
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (s, threads) = match s.split_once('@') {
            Some((rest, n)) => {
                let n: usize = n.parse().map_err(|_| format!("'{n}' is not a thread count"))?;
                if n == 0 {
                    return Err("a thread count must be at least 1".into());
                }
                (rest, Some(n))
            }
            None => (s, None),
        };
        let (b, p) = match s.split_once('/') {
            Some((b, p)) => (b, Some(p.parse()?)),
            None => (s, None),
        };
        Ok(Variant { backend: b.parse()?, precision: p, threads })
    }
}

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
    /// Profile these configurations side by side in one run, BACKEND[/PRECISION] separated by commas, the first
    /// being the baseline of the ratios (default: just the one the suite flags or --target give)
    #[arg(long, value_delimiter = ',')]
    compare: Vec<Variant>,
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

/// One loaded configuration and what was measured of it.
struct Run {
    pipeline: Pipeline,
    frames: Vec<Timings>,
    wall: Vec<f64>,
    allocs: pancap::alloc_count::PerFrame,
    load_rss_kb: u64,
}

fn variant_config(base: &PipelineConfig, v: &Variant) -> Result<PipelineConfig> {
    let mut backend = base.backend.switched_to(v.backend);
    if let Some(p) = v.precision {
        backend.precision = p;
    }
    if let Some(n) = v.threads {
        backend.threads = Some(n);
    }
    backend.validate().with_context(|| format!("--compare {}", backend.label()))?;
    Ok(PipelineConfig { backend, ..base.clone() })
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
    let (base, target) =
        if args.compare.is_empty() { args.suite.resolve(models_dir)? } else { args.suite.resolve_unchecked(models_dir)? };
    let configs = if args.compare.is_empty() {
        vec![base.clone()]
    } else {
        args.compare.iter().map(|v| variant_config(&base, v)).collect::<Result<Vec<_>>>()?
    };
    let mut runs = Vec::new();
    for cfg in configs {
        let label = cfg.backend.label();
        let before = rss_kb().0;
        let mut pipeline = Pipeline::load(cfg).with_context(|| format!("loading the model suite on {label}"))?;
        // every plan built before the first frame: the measured frames are the steady state
        let built = pipeline.build_all_buckets().with_context(|| format!("building the text reader's plans on {label}"))?;
        log::info!("{label}: built {built} text reader plan(s) before the first frame");
        let load_rss_kb = rss_kb().0.saturating_sub(before);
        runs.push(Run { pipeline, frames: Vec::new(), wall: Vec::new(), allocs: Default::default(), load_rss_kb });
    }
    let self_check = SuiteArgs::self_check(args.self_check, target.as_ref());
    let mut matcher = if self_check { Some(args.matcher.build(models_dir)?) } else { None };
    let scoring = self_check.then(|| pancap::timing::ModelName::from("scoring"));

    // round-robin: every configuration runs frame k before any runs frame k+1, so load on the machine falls on
    // all of them alike
    let total = args.warmup + args.repeat.max(1) * inputs.len();
    // the bar moves between frames, outside the allocation and time windows it would otherwise pollute
    let progress = super::progress::Progress::new(total as u64, "profiling", args.format == ReportFormat::Json && args.output.is_none());
    for k in 0..total {
        progress.inc(if k < args.warmup { "warm-up" } else { "measured" });
        let Some(input) = inputs.get(k % inputs.len()) else { break };
        for run in runs.iter_mut() {
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
            let mut result = run.pipeline.process(frame, timings)?;
            if let Some((m, scoring)) = matcher.as_mut().zip(scoring.as_ref()) {
                let second = run.pipeline.second_opinion(frame, &mut result.caption.timings_ms)?;
                let t = Instant::now();
                let check = pancap::score::self_check(&result.caption, &second, m, 0.5, 0.0)?;
                drop(check);
                result.caption.timings_ms.record(Stage::SelfCheck, Some(scoring), t);
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if k >= args.warmup {
                run.frames.push(result.caption.timings_ms);
                run.wall.push(ms);
                run.allocs.add_since(frame_start);
            }
        }
    }
    progress.finish();
    let peak_rss_kb = rss_kb().1;
    let target = args.suite.target.clone().unwrap_or_else(|| "custom".into());
    let reports: Vec<ProfileReport> = runs
        .iter()
        .map(|run| {
            let end_to_end = percentiles(&run.wall);
            let cfg = run.pipeline.config();
            ProfileReport {
                target: target.clone(),
                machine: args.machine.clone(),
                backend: cfg.backend.backend.name().to_string(),
                precision: cfg.backend.precision.name().to_string(),
                providers: run.pipeline.providers().to_vec(),
                threads: cfg.backend.threads,
                build: if cfg!(debug_assertions) { "dev profile".into() } else { "release profile".into() },
                suite: Suite {
                    detectors: cfg.detectors.clone(),
                    segmenter: cfg.segmenter.clone(),
                    discovery: cfg.discovery.is_some(),
                    self_check,
                },
                images: match &args.replay {
                    Some(p) => format!("{} ({} frames)", p.display(), inputs.len()),
                    None => format!("{} image(s)", inputs.len()),
                },
                warmup: args.warmup,
                frames: run.wall.len(),
                stages: stage_stats(&run.frames),
                fps: if end_to_end.mean_ms > 0.0 { 1000.0 / end_to_end.mean_ms } else { 0.0 },
                end_to_end,
                peak_rss_kb,
                load_rss_kb: Some(run.load_rss_kb),
                allocations_per_frame_outside_engines: run.allocs.outside_mean(),
                allocations_per_frame_in_engines: run.allocs.inside_mean(),
            }
        })
        .collect();
    let json = match reports.as_slice() {
        [one] => serde_json::to_string_pretty(one)?,
        _ => serde_json::to_string_pretty(&ProfileComparison { comparisons: compare(&reports), reports: reports.clone() })?,
    };
    if let Some(p) = &args.output {
        super::write_atomically(p, json.as_bytes())?;
    }
    match args.format {
        ReportFormat::Json => println!("{json}"),
        ReportFormat::Text => {
            for report in &reports {
                print_report(report);
                println!();
            }
            for c in compare(&reports) {
                print_comparison(&c);
                println!();
            }
        }
    }
    Ok(0)
}

fn print_report(report: &ProfileReport) {
    println!(
        "{} on {} [{}/{}], {}; {} measured frame(s) after {} warm-up",
        report.target, report.machine, report.backend, report.precision, report.build, report.frames, report.warmup
    );
    for p in &report.providers {
        println!("  {:<32} {}", p.model, p.provider);
    }
    println!("{:<14} {:<32} {:>9} {:>9} {:>9} {:>9}", "stage", "model", "p50 ms", "p95 ms", "p99 ms", "mean ms");
    for s in &report.stages {
        println!("{:<14} {:<32} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", s.stage.name(), s.model.as_deref().unwrap_or("-"), s.p50_ms, s.p95_ms, s.p99_ms, s.mean_ms);
    }
    let e = &report.end_to_end;
    println!("{:<14} {:<32} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", "end-to-end", "", e.p50_ms, e.p95_ms, e.p99_ms, e.mean_ms);
    let load = report.load_rss_kb.map(|k| format!(" (+{k} kB loading these models)")).unwrap_or_default();
    println!("{:.2} fps; peak RSS {} kB{load}", report.fps, report.peak_rss_kb);
    if let (Some(o), Some(i)) = (report.allocations_per_frame_outside_engines, report.allocations_per_frame_in_engines) {
        println!("heap allocations per frame: {o:.0} outside the engines, {i:.0} inside");
    }
}

fn print_comparison(c: &pancap::profile::Comparison) {
    println!("{} against {} (p50 ratio; below 1 is faster)", c.variant, c.baseline);
    println!("{:<14} {:<32} {:>12} {:>12} {:>9}", "stage", "model", "baseline p50", "p50 ms", "ratio");
    for s in c.stages.iter().chain(std::iter::once(&c.end_to_end)) {
        println!("{:<14} {:<32} {:>12.2} {:>12.2} {:>8.3}x", s.stage, s.model.as_deref().unwrap_or("-"), s.baseline_p50_ms, s.p50_ms, s.p50_ratio);
    }
}

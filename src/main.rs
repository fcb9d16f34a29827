//! The `pancap` command line: a thin layer over the library. clap and anyhow live here only.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pancap::caption::{overlay, CocoResult, SaPancapPrediction};
use pancap::caption::panoptic_out::{coco_panoptic_categories, coconut_caption, panoptic_output, CoconutRecord};
use pancap::models::{self, Manifest};
use pancap::source::{self, DecodeLimits};
use pancap::timing::{Stage, Timings};
use pancap::{Pipeline, PipelineConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod cli;

/// Counts heap allocations (an atomic increment per call) so `stream` can report them per frame.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Grounded panoptic captions from images, on the CPU (tract) by default.
#[derive(Parser)]
#[command(name = "pancap", version, about)]
struct Cli {
    /// Directory holding the provisioned model files [env: PANCAP_MODELS_DIR; default: ./models]
    #[arg(long, global = true)]
    models_dir: Option<PathBuf>,
    /// Log level (error, warn, info, debug)
    #[arg(long, global = true, default_value = "warn", env = "PANCAP_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Caption image files and directories
    Caption(Box<CaptionArgs>),
    /// Caption annotated images and report PancapScore tag/location, box mAP, PQ, or caption-text metrics
    Eval(Box<cli::eval::EvalArgs>),
    /// Caption a camera or a recording live, as JSON Lines (changes, heartbeats, optionally every frame)
    Stream(Box<cli::stream::StreamArgs>),
    /// Per-stage latency profile of the suite (p50/p95/p99, fps, peak RSS, allocations per frame)
    Profile(Box<cli::profile::ProfileArgs>),
    /// PancapScore of predicted captions against reference captions
    Score(cli::score::ScoreArgs),
    /// Read the text in images (PP-OCR alone): one JSON line per image with each line's text, confidence and
    /// corners
    Read(Box<cli::read::ReadArgs>),
    /// INT8 models from the FP32 ones, verified in tract (host-only: a build with `--features quantize`)
    #[cfg(feature = "quantize")]
    Quantize(Box<cli::quantize::QuantizeArgs>),
    /// The backends this build can run and, for ONNX Runtime, the library and its execution providers
    Backends(cli::BackendArgs),
    /// The deployment target profiles (`--target NAME`): list them, or print one
    Targets {
        /// A target name or .toml file to print
        name: Option<String>,
    },
    /// List, provision and verify model files
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// List the models this build knows, with their files and hashes
    List,
    /// Copy model files from an offline mirror directory and verify their sha256
    Pull {
        /// Mirror directory laid out like ../shared/models
        #[arg(long, env = "PANCAP_MODEL_MIRROR")]
        from: PathBuf,
        /// Only these models (default: all)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Check that every model file is installed with the expected sha256
    Verify {
        /// Only these models (default: all)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The caption paragraph per image
    Text,
    /// One JSON array of full results
    Json,
    /// One JSON object per line, per image, written as each image finishes
    Jsonl,
    /// SA-Pancap predictions: [{"image_path", "model_response"}]
    Sapancap,
    /// COCO detection results for the images listed by --coco-instances
    Coco,
    /// COCONut-PanCap: captions with inline segment ids `<id: phrase>`, plus a panoptic PNG per image in
    /// --panoptic-dir and its segments (with each entity's region caption)
    Coconut,
    /// COCO panoptic JSON (images, annotations with segments_info carrying a `description` per segment,
    /// categories) plus a panoptic PNG per image in --panoptic-dir
    CocoPanoptic,
}

#[derive(clap::Args)]
struct CaptionArgs {
    /// Image files or directories (not recursive)
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the output here instead of standard output (replaced atomically when complete)
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write an overlay PNG per image (boxes, stuff masks, ids and tags) into this directory
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// COCO instances JSON naming the images and their ids (required by --format coco)
    #[arg(long)]
    coco_instances: Option<PathBuf>,
    /// Directory for the panoptic PNGs of --format coconut and coco-panoptic (one `<stem>.png` per image)
    #[arg(long)]
    panoptic_dir: Option<PathBuf>,
    #[command(flatten)]
    suite: cli::SuiteArgs,
    /// Largest accepted image side in pixels
    #[arg(long, default_value_t = DecodeLimits::default().max_side)]
    max_side: u32,
    /// Score each caption against an independent second pass (mirrored frame) and attach score and pass/fail
    #[arg(long)]
    self_check: bool,
    /// Tag F1 (0-1) the self-check needs to pass
    #[arg(long, default_value_t = 0.5)]
    self_check_threshold: f64,
    #[command(flatten)]
    matcher: cli::score::MatcherArgs,
}

fn main() {
    pancap::alloc_count::install(|| GLOBAL.stats().allocations as u64);
    let cli = Cli::parse();
    env_logger::Builder::new().parse_filters(&cli.log).format_timestamp(None).init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let models_dir = cli.models_dir.unwrap_or_else(models::default_models_dir);
    match cli.command {
        Command::Models { action } => models_cmd(action, &models_dir),
        Command::Caption(args) => caption_cmd(*args, models_dir),
        Command::Eval(args) => cli::eval::eval_cmd(*args, &models_dir),
        Command::Stream(args) => cli::stream::stream_cmd(*args, models_dir),
        Command::Profile(args) => cli::profile::profile_cmd(*args, &models_dir),
        Command::Score(args) => cli::score::score_cmd(args, &models_dir),
        Command::Read(args) => cli::read::read_cmd(*args, &models_dir),
        #[cfg(feature = "quantize")]
        Command::Quantize(args) => cli::quantize::quantize_cmd(*args, &models_dir),
        Command::Backends(args) => cli::backends_cmd(&args),
        Command::Targets { name } => cli::targets_cmd(name.as_deref()),
    }
}

fn selected(only: &[String]) -> Result<Vec<models::ModelFile>> {
    if only.is_empty() {
        Ok(models::all_files()?)
    } else {
        Ok(models::files_of(only)?)
    }
}

fn models_cmd(action: ModelsAction, models_dir: &Path) -> Result<i32> {
    let mut failed = 0;
    let mut report = |results: Vec<Result<models::PullReport, models::ProvisionError>>| {
        for r in results {
            match r {
                Ok(r) => println!("{:<32} {:<10} {}", r.model, format!("{:?}", r.status).to_lowercase(), r.path.display()),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
    };
    match action {
        ModelsAction::List => {
            for m in Manifest::all()? {
                println!(
                    "{:<32} {:<9} {:<48} {}  [{}]",
                    m.name,
                    format!("{:?}", m.role).to_lowercase(),
                    m.file,
                    m.sha256,
                    m.validated_backends.join(",")
                );
            }
            for m in models::OcrManifest::all()? {
                let v = m.validated_backends.join(",");
                println!("{:<32} {:<9} {:<48} {}  [{v}]", m.name, "text-det", m.detector.file, m.detector.sha256);
                println!("{:<32} {:<9} {:<48} {}", "", "text-cls", m.classifier.file, m.classifier.sha256);
                println!("{:<32} {:<9} {:<48} {}", "", "text-rec", m.recogniser.file, m.recogniser.sha256);
            }
            for m in models::TextManifest::all()? {
                println!("{:<32} {:<9} {:<48} {}  [{}]", m.name, "embedder", m.file, m.sha256, m.validated_backends.join(","));
                println!("{:<32} {:<9} {:<48} {}", "", "tokenizer", m.tokenizer.file, m.tokenizer.sha256);
            }
        }
        ModelsAction::Pull { from, only } => report(models::pull(&selected(&only)?, &from, models_dir)?),
        ModelsAction::Verify { only } => report(models::verify(&selected(&only)?, models_dir)),
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Image file name → COCO image id, from an instances JSON.
fn coco_image_ids(path: &Path) -> Result<HashMap<String, u64>> {
    #[derive(serde::Deserialize)]
    struct Img {
        id: u64,
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct Instances {
        images: Vec<Img>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let inst: Instances = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(inst.images.into_iter().map(|i| (i.file_name, i.id)).collect())
}

/// Where results go: standard output, or a file replaced atomically when everything is written.
struct Sink {
    out: Box<dyn Write>,
    target: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    fn open(path: Option<&Path>) -> Result<Sink> {
        match path {
            None => Ok(Sink { out: Box::new(std::io::stdout().lock()), target: None }),
            Some(p) => {
                let tmp = p.with_extension(format!("partial-{}", std::process::id()));
                let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                Ok(Sink { out: Box::new(std::io::BufWriter::new(f)), target: Some((tmp, p.to_path_buf())) })
            }
        }
    }

    /// Writes one whole record and flushes it, so a reader never sees half a line.
    fn line(&mut self, s: &str) -> Result<()> {
        let mut buf = String::with_capacity(s.len() + 1);
        buf.push_str(s);
        buf.push('\n');
        self.out.write_all(buf.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        drop(self.out);
        if let Some((tmp, dest)) = self.target {
            std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    }
}

/// Writes a PNG beside its destination and renames it into place, so no reader sees half a file.
fn save_png_atomically(img: &image::RgbImage, dest: &std::path::Path) -> Result<()> {
    let tmp = dest.with_extension(format!("partial-{}.png", std::process::id()));
    img.save(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

fn caption_cmd(args: CaptionArgs, models_dir: PathBuf) -> Result<i32> {
    let coco_ids = match (&args.format, &args.coco_instances) {
        (Format::Coco, None) => bail!("--format coco needs --coco-instances FILE to map images to COCO ids"),
        (_, Some(p)) => Some(coco_image_ids(p)?),
        _ => None,
    };
    let panoptic_dir = match (args.format, &args.panoptic_dir) {
        (Format::Coconut | Format::CocoPanoptic, None) => {
            bail!("--format coconut and coco-panoptic write a panoptic PNG per image: name a directory with --panoptic-dir")
        }
        (Format::Coconut | Format::CocoPanoptic, Some(d)) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            Some(d.clone())
        }
        _ => None,
    };
    let limits = DecodeLimits { max_side: args.max_side, ..DecodeLimits::default() };
    let (cfg, target) = args.suite.resolve(&models_dir)?;
    let cfg = PipelineConfig { decode_limits: limits, ..cfg };
    let self_check = cli::SuiteArgs::self_check(args.self_check, target.as_ref());
    let t = Instant::now();
    let mut pipeline = Pipeline::load(cfg).context("loading the model suite")?;
    log::info!("suite {:?} loaded on {} in {:.0} ms", pipeline.detector_names(), pipeline.backend(), t.elapsed().as_secs_f64() * 1e3);
    if let Some(dir) = &args.overlay {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let mut matcher = if self_check { Some(args.matcher.build(&pipeline.config().models_dir)?) } else { None };
    let mut sink = Sink::open(args.output.as_deref())?;
    let (mut ok, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut json_items: Vec<serde_json::Value> = Vec::new();
    let mut sapancap: Vec<SaPancapPrediction> = Vec::new();
    let mut coco: Vec<CocoResult> = Vec::new();
    let mut coconut: Vec<CoconutRecord> = Vec::new();
    let mut pan_images: Vec<serde_json::Value> = Vec::new();
    let mut pan_annotations: Vec<serde_json::Value> = Vec::new();

    let (inputs, passed_over) = source::expand_inputs(&args.inputs);
    for p in &passed_over {
        log::info!("{}: no image extension; not captioned", p.display());
    }
    for (seq, input) in inputs.into_iter().enumerate() {
        let path = match input {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        let image_id = match &coco_ids {
            Some(ids) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                match ids.get(name) {
                    Some(id) => Some(*id),
                    None if args.format == Format::Coco => {
                        log::warn!("{}: not listed in the COCO instances file; skipped", path.display());
                        skipped += 1;
                        continue;
                    }
                    None => None,
                }
            }
            None => None,
        };
        let t = Instant::now();
        let mut frame = match source::read_image(&path, &limits) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        frame.seq = seq as u64;
        let mut timings = Timings::default();
        timings.record(Stage::Decode, None, t);
        let mut result = match pipeline.process(&frame, timings) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        if let Some(m) = matcher.as_mut() {
            let t = Instant::now();
            let second = pipeline.second_opinion(&frame, &mut result.caption.timings_ms)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            result.caption.self_check =
                Some(pancap::score::self_check(&result.caption, &second, m, args.self_check_threshold, ms)?);
        }
        ok += 1;
        log::info!("{}: {} entities in {:.0} ms", path.display(), result.caption.entities.len(), result.caption.timings_ms.total_ms());
        if let Some(dir) = &args.overlay {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            let out = dir.join(format!("{stem}.overlay.png"));
            if let Err(e) = overlay::render(&frame.rgb, &result.caption.entities).save(&out) {
                eprintln!("error: {}: writing overlay: {e}", out.display());
                failed += 1;
            }
        }
        match args.format {
            Format::Text => {
                let check = match &result.caption.self_check {
                    Some(c) => format!(
                        "self-check: {} (tag {:.1}, location {:.1}, threshold {:.0}; {:.0} ms)\n",
                        if c.pass { "pass" } else { "FAIL" },
                        c.tag,
                        c.location,
                        c.threshold,
                        c.ms
                    ),
                    None => String::new(),
                };
                sink.line(&format!("{}\n{}\n{check}", result.caption.image, result.caption.caption))?
            }
            Format::Jsonl => sink.line(&serde_json::to_string(&result.caption)?)?,
            Format::Json => json_items.push(serde_json::to_value(&result.caption)?),
            Format::Sapancap => sapancap.push(SaPancapPrediction {
                image_path: result.caption.image.clone(),
                model_response: result.caption.caption.clone(),
            }),
            Format::Coco => {
                if let Some(id) = image_id {
                    coco.extend(result.ranking.iter().map(|b| CocoResult::new(id, b)));
                }
            }
            Format::Coconut | Format::CocoPanoptic => {
                let Some(dir) = &panoptic_dir else { continue };
                let c = &result.caption;
                let out = panoptic_output(c, args.format == Format::CocoPanoptic);
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
                let png = dir.join(format!("{stem}.png"));
                if let Err(e) = save_png_atomically(&out.png, &png) {
                    eprintln!("error: {}: writing the panoptic PNG: {e:#}", png.display());
                    failed += 1;
                    continue;
                }
                let png_name = format!("{stem}.png");
                if args.format == Format::Coconut {
                    coconut.push(CoconutRecord {
                        image: c.image.clone(),
                        width: c.width,
                        height: c.height,
                        panoptic_png: png.display().to_string(),
                        caption: coconut_caption(c),
                        segments_info: out.segments,
                    });
                } else {
                    let id = image_id.unwrap_or(seq as u64 + 1);
                    let file_name = path.file_name().and_then(|s| s.to_str()).unwrap_or_default();
                    pan_images.push(serde_json::json!({"id": id, "file_name": file_name, "width": c.width, "height": c.height}));
                    pan_annotations.push(serde_json::json!({"image_id": id, "file_name": png_name, "segments_info": out.segments}));
                }
            }
        }
    }
    match args.format {
        Format::Json => sink.line(&serde_json::to_string_pretty(&json_items)?)?,
        Format::Sapancap => sink.line(&serde_json::to_string_pretty(&sapancap)?)?,
        Format::Coco => sink.line(&serde_json::to_string(&coco)?)?,
        Format::Coconut => sink.line(&serde_json::to_string_pretty(&coconut)?)?,
        Format::CocoPanoptic => {
            let categories: Vec<serde_json::Value> = coco_panoptic_categories()
                .iter()
                .map(|c| serde_json::json!({"id": c.id, "name": c.name, "isthing": c.isthing}))
                .collect();
            let file = serde_json::json!({"images": pan_images, "annotations": pan_annotations, "categories": categories});
            sink.line(&serde_json::to_string(&file)?)?
        }
        Format::Text | Format::Jsonl => {}
    }
    sink.finish()?;
    let mut summary = format!("captioned {ok} image(s), {failed} failed");
    if skipped > 0 {
        summary.push_str(&format!(", {skipped} not in the COCO file"));
    }
    if !passed_over.is_empty() {
        summary.push_str(&format!(", {} non-image file(s) in directories passed over", passed_over.len()));
    }
    eprintln!("{summary}");
    Ok(if failed > 0 { 1 } else { 0 })
}

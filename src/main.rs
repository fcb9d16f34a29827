//! The `pancap` command line: a thin layer over the library. clap and anyhow live here only.

use anyhow::Result;
use clap::{Parser, Subcommand};
use pancap::models::{self, Manifest};
use std::path::{Path, PathBuf};

mod cli;

/// Counts heap allocations (an atomic increment per call), inside and outside the engines, so `stream` and
/// `profile` can report them per frame.
#[global_allocator]
static GLOBAL: pancap::alloc_count::Counting = pancap::alloc_count::Counting;

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
    /// No progress bars (they are drawn only on a terminal, and never over JSON written to standard output)
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Caption image files and directories
    Caption(Box<cli::caption::CaptionArgs>),
    /// Caption annotated images and report PancapScore tag/location, box mAP, PQ, or caption-text metrics
    #[cfg(feature = "eval")]
    Eval(Box<cli::eval::EvalArgs>),
    /// Caption a camera or a recording live, as JSON Lines (changes, heartbeats, optionally every frame)
    Stream(Box<cli::stream::StreamArgs>),
    /// The live view's page over a recorded run: its JSON Lines records played again on its recording (no models)
    #[cfg(feature = "serve")]
    View(Box<cli::view::ViewArgs>),
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
    /// Check a backend against tract on the CPU: every model's outputs on the same inputs, and the captions
    /// (entities, tags, boxes) of every image; exit status 1 when not equivalent
    VerifyBackend(Box<cli::verify::VerifyArgs>),
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

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::new().parse_filters(&cli.log).format_timestamp(None).init();
    limit_malloc_arenas();
    cli::progress::set_quiet(cli.quiet);
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// glibc gives threads that allocate their own malloc arenas (up to 8 per core), and tensors of several MB
/// allocated per engine run in one arena and freed in another stay in the process's RSS. Measured on the looped
/// street recording (`pancap stream --replay target/bench/street-loop60.mjpeg --max-frames 60 --summary-json`,
/// release, 2-core x86-64, three alternated runs each): peak RSS 408–420 MB with glibc's default, 279–331 MB with
/// one arena, 322–357 MB with two, at the same frame rate (10.67–10.88 fps default, 10.65–10.83 one arena). One
/// arena, unless MALLOC_ARENA_MAX is set (glibc has then read it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets an allocator parameter; it is called once, before pancap starts any thread.
    let done = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if done != 1 {
        log::warn!("mallopt(M_ARENA_MAX, 1) was refused; glibc's default malloc arenas stay");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn run(cli: Cli) -> Result<i32> {
    let models_dir = cli.models_dir.unwrap_or_else(models::default_models_dir);
    match cli.command {
        Command::Models { action } => models_cmd(action, &models_dir),
        Command::Caption(args) => cli::caption::caption_cmd(*args, models_dir),
        #[cfg(feature = "eval")]
        Command::Eval(args) => cli::eval::eval_cmd(*args, &models_dir),
        Command::Stream(args) => cli::stream::stream_cmd(*args, models_dir),
        #[cfg(feature = "serve")]
        Command::View(args) => cli::view::view_cmd(*args),
        Command::Profile(args) => cli::profile::profile_cmd(*args, &models_dir),
        Command::Score(args) => cli::score::score_cmd(args, &models_dir),
        Command::Read(args) => cli::read::read_cmd(*args, &models_dir),
        #[cfg(feature = "quantize")]
        Command::Quantize(args) => cli::quantize::quantize_cmd(*args, &models_dir),
        Command::VerifyBackend(args) => cli::verify::verify_cmd(*args, models_dir),
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
            for m in models::DataManifest::all()? {
                for (i, f) in m.files.iter().enumerate() {
                    let name = if i == 0 { m.name.as_str() } else { "" };
                    println!("{:<32} {:<9} {:<48} {}", name, format!("{:?}", m.role).to_lowercase(), f.file, f.sha256);
                }
            }
        }
        ModelsAction::Pull { from, only } => {
            let files = selected(&only)?;
            let progress = cli::progress::Progress::new(files.len() as u64, "pulling", false);
            for file in &files {
                progress.inc(&file.file);
                let results = models::pull(std::slice::from_ref(file), &from, models_dir)?;
                progress.suspend(|| report(results));
            }
            progress.finish();
        }
        ModelsAction::Verify { only } => report(models::verify(&selected(&only)?, models_dir)),
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

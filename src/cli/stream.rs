//! `pancap stream`: live captioning from a camera or a recording, as JSON Lines.

use anyhow::{bail, Context, Result};
use pancap::source::DecodeLimits;
use pancap::stream::sources::{open_replay, FrameSource, ReplayFormat};
use pancap::stream::{self, StreamOptions};
use pancap::targets::TargetProfile;
use pancap::{Pipeline, PipelineConfig};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordingFormat {
    Mjpeg,
    Y4m,
    Yuyv,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraFormat {
    Mjpeg,
    Yuyv,
}

#[derive(clap::Args)]
pub struct StreamArgs {
    /// V4L2 camera device (needs a build with the `camera` feature)
    #[arg(long, conflicts_with = "replay")]
    device: Option<PathBuf>,
    /// Recording to replay: .mjpeg (concatenated JPEGs), .y4m, .yuyv (with --size), a directory of images, or - (stdin)
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Format of the recording when its extension does not say (stdin defaults to mjpeg)
    #[arg(long, value_enum)]
    replay_format: Option<RecordingFormat>,
    /// Frame size of raw YUYV recordings, or the size asked of a camera, as WIDTHxHEIGHT
    #[arg(long)]
    size: Option<String>,
    /// Pixel format asked of the camera
    #[arg(long, value_enum, default_value = "mjpeg")]
    camera_format: CameraFormat,
    /// Replay at this frame rate instead of as fast as possible
    #[arg(long, value_name = "FPS", num_args = 0..=1, default_missing_value = "30")]
    realtime: Option<f64>,
    /// Treat the recording as a live camera: with --realtime, frames arrive at that pace and stale ones are dropped
    #[arg(long)]
    live: bool,
    /// Write a record for every frame, not only on changes and heartbeats
    #[arg(long)]
    every_frame: bool,
    /// Seconds between heartbeat records when nothing changes
    #[arg(long, default_value_t = 5.0)]
    heartbeat: f64,
    /// Frames held between capture and the pipeline (live sources drop the oldest beyond this)
    #[arg(long, default_value_t = 2)]
    queue: usize,
    /// Run extra-instance discovery on every Nth frame (0: never) [default: 10, or the target's]
    #[arg(long)]
    discovery_every: Option<u32>,
    /// Read text (OCR) on every Nth frame (0: never), on its own thread [default: 10, or the target's]
    #[arg(long)]
    text_every: Option<u32>,
    /// Run the person segmenter on every Nth frame (0: never); in between, each person's last mask follows its
    /// box [default: 5, or the target's]
    #[arg(long)]
    person_masks_every: Option<u32>,
    /// Hand a frame to the stuff segmenter (on its own thread) when N frames passed since the last and it is idle
    /// (1: whenever it is idle) [default: 10, or the target's]
    #[arg(long)]
    stuff_every: Option<u32>,
    /// Threads for the stuff segmenter and the text reader, which run on threads of their own beside the
    /// detectors [default: the target's, else half the backend's threads, at least 1, so the detectors keep the
    /// other half]
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Stop after this many frames
    #[arg(long)]
    max_frames: Option<u64>,
    /// Add this many milliseconds of work per frame (a deliberately slow pipeline, to see dropping)
    #[arg(long, default_value_t = 0, hide = true)]
    slow_ms: u64,
    /// Append the JSON Lines here instead of standard output (each line written whole)
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print the summary as JSON on standard error
    #[arg(long)]
    summary_json: bool,
    #[command(flatten)]
    suite: super::SuiteArgs,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("--size {s}: expected WIDTHxHEIGHT"))?;
    Ok((w.trim().parse().context("--size width")?, h.trim().parse().context("--size height")?))
}

fn open_source(args: &StreamArgs, target: Option<&TargetProfile>, limits: DecodeLimits) -> Result<Box<dyn FrameSource>> {
    let size = args.size.as_deref().map(parse_size).transpose()?;
    match (&args.device, &args.replay) {
        (Some(dev), None) => {
            let size = size.or(target.map(|t| (t.capture.width, t.capture.height)));
            open_camera(dev, size, args.camera_format, limits)
        }
        (None, Some(path)) => {
            let format = args.replay_format.map(|f| match f {
                RecordingFormat::Mjpeg => ReplayFormat::Mjpeg,
                RecordingFormat::Y4m => ReplayFormat::Y4m,
                RecordingFormat::Yuyv => ReplayFormat::Yuyv,
            });
            Ok(open_replay(path, format, size, limits)?)
        }
        _ => bail!("pancap stream needs --device /dev/videoN or --replay FILE"),
    }
}

#[cfg(feature = "camera")]
fn open_camera(dev: &Path, size: Option<(u32, u32)>, format: CameraFormat, limits: DecodeLimits) -> Result<Box<dyn FrameSource>> {
    use pancap::stream::camera::{CameraConfig, CameraSource, PixelFormat};
    let mut cfg = CameraConfig::default();
    if let Some((w, h)) = size {
        cfg.width = w;
        cfg.height = h;
    }
    cfg.format = match format {
        CameraFormat::Mjpeg => PixelFormat::Mjpeg,
        CameraFormat::Yuyv => PixelFormat::Yuyv,
    };
    Ok(Box::new(CameraSource::open(dev, cfg, limits)?))
}

#[cfg(not(feature = "camera"))]
fn open_camera(dev: &Path, _: Option<(u32, u32)>, _: CameraFormat, _: DecodeLimits) -> Result<Box<dyn FrameSource>> {
    bail!("{}: this pancap was built without camera support; rebuild with `--features camera` (needs clang and libclang-dev)", dev.display())
}

/// A stream stage's cadence (every Nth frame): 0 when the stage is off, else the flag, the target's, the default.
fn cadence(on: bool, flag: Option<u32>, target: Option<u32>, default: u32) -> u32 {
    if on {
        flag.or(target).unwrap_or(default)
    } else {
        0
    }
}

pub fn stream_cmd(args: StreamArgs, models_dir: PathBuf) -> Result<i32> {
    let limits = DecodeLimits::default();
    let (cfg, target) = args.suite.resolve(&models_dir)?;
    let source = open_source(&args, target.as_ref(), limits)?;
    let suite = target.as_ref().map(|t| &t.suite);
    let defaults = StreamOptions::default();
    let discovery_every =
        cadence(cfg.discovery.is_some(), args.discovery_every, suite.map(|s| s.discovery_every), defaults.discovery_every);
    let text_every = cadence(cfg.text_reader.is_some(), args.text_every, suite.map(|s| s.text_every), defaults.text_every);
    let person_masks_every = cadence(
        cfg.person_segmenter.is_some(),
        args.person_masks_every,
        suite.map(|s| s.person_masks_every),
        defaults.person_masks_every,
    );
    let stuff_every = cadence(true, args.stuff_every, suite.map(|s| s.stuff_every), defaults.stuff_every);
    // measured on a 2-core box (issue 14): the segmenter and text reader on their own threads with all the cores
    // took them from the detectors (6.8 fps); with one thread and stuff every 10th frame, 10.1 fps
    let half = (cfg.backend.threads.unwrap_or_else(pancap::engine::default_threads) / 2).max(1);
    let worker_threads = args.worker_threads.or(suite.and_then(|s| s.worker_threads)).unwrap_or(half);
    let cfg = PipelineConfig { slow_stage_threads: Some(worker_threads), ..cfg };
    let mut pipeline = Pipeline::load(cfg).context("loading the model suite")?;
    let opts = StreamOptions {
        every_frame: args.every_frame,
        heartbeat: Duration::from_secs_f64(args.heartbeat.max(0.0)),
        realtime_fps: args.realtime,
        queue: args.queue,
        discovery_every,
        text_every,
        person_masks_every,
        stuff_every,
        max_frames: args.max_frames,
        slow_down: Duration::from_millis(args.slow_ms),
        live: args.live,
        ..StreamOptions::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // SIGINT and SIGTERM: finish the frame in flight, flush, print the summary
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("installing the signal handler")?;
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    let summary = stream::run(&mut pipeline, source, &opts, stop, &mut out)?;
    out.flush()?;
    if args.summary_json {
        eprintln!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!(
            "{}: {} frame(s), {} dropped, {} corrupt skipped, {} record(s); latency p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {:.2} fps; RSS {} kB after warm-up, {} kB at the end (peak {} kB){}",
            summary.source, summary.frames, summary.dropped, summary.corrupt, summary.records, summary.p50_ms, summary.p95_ms,
            summary.p99_ms, summary.fps, summary.rss_warm_kb, summary.rss_end_kb, summary.rss_peak_kb,
            if summary.interrupted { "; interrupted" } else { "" }
        );
        if let (Some(o), Some(e)) = (summary.allocations_per_frame_outside_engines, summary.allocations_per_frame_in_engines) {
            eprintln!("heap allocations per frame after warm-up: {o:.0} outside the engines (capture and decode included), {e:.0} inside");
        }
    }
    Ok(0)
}

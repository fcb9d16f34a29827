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
    /// Run the pose model on every Nth frame (0: never); in between, each person's last keypoints follow its box
    /// [default: 10, or the target's]
    #[arg(long)]
    pose_every: Option<u32>,
    /// The recording's own frame rate, for motion speeds (walking, running, moving) when it is replayed faster than
    /// it was made [default: --realtime's pace, else capture times]
    #[arg(long)]
    recording_fps: Option<f64>,
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
    /// Publish records, entity events, the latest caption and stats to an MQTT broker:
    /// mqtt://[user@]host[:port] (TCP, 1883) or mqtts://… (TLS, 8883). With it, JSON Lines are written only to
    /// --output. The password comes from --password-file or PANCAP_MQTT_PASSWORD, never the URL
    #[arg(long, value_name = "URL")]
    publish: Option<String>,
    /// First topic level(s): topics are PREFIX/DEVICE/{available,records,events,caption,stats}
    #[arg(long, default_value = "pancap")]
    topic_prefix: String,
    /// This device's name in the topics and payloads [default: the host name]
    #[arg(long)]
    device_name: Option<String>,
    /// Store-and-forward spool: records wait here until the broker acknowledges them [default: pancap-spool/DEVICE]
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Bound of the spool in MB (fractions allowed; at least 0.0625); when full, the oldest records are dropped
    /// and counted
    #[arg(long, default_value_t = 64.0)]
    spool_max_mb: f64,
    /// File holding the broker password (first line); else PANCAP_MQTT_PASSWORD
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) for an mqtts:// broker [default: the system's roots]
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for an mqtts:// broker that asks for one (with --tls-key)
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM)
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Seconds between stats messages
    #[arg(long, default_value_t = 10.0)]
    stats_every: f64,
    /// At the end, seconds to keep sending what the broker has not acknowledged before leaving it in the spool
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Start even when the broker cannot be reached (spool and retry in the background) instead of exiting with
    /// status 2; refused credentials are still an error. For devices that boot before their network link
    #[arg(long)]
    start_offline: bool,
    /// Serve the live view on this address (e.g. 127.0.0.1:8080): the page at /, the overlay as MJPEG at
    /// /stream.mjpeg, the latest record at /api/state, records as Server-Sent Events at /api/events, Prometheus
    /// metrics at /metrics, /healthz. A non-loopback address needs --serve-token
    #[arg(long, value_name = "ADDR")]
    serve: Option<std::net::SocketAddr>,
    /// A file whose first line is the token every request must carry (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`): at least 16 characters of A-Z a-z 0-9 - . _ ~
    #[arg(long, value_name = "FILE", requires = "serve")]
    serve_token: Option<PathBuf>,
    /// Most overlay pictures drawn a second for viewers (drawn only while somebody watches)
    #[arg(long, default_value_t = 5.0, requires = "serve")]
    serve_fps: f64,
    /// Most open connections to the live view; more are answered 503
    #[arg(long, default_value_t = 32, requires = "serve")]
    serve_max_clients: usize,
    /// /healthz answers 503 when no frame arrived for this many seconds
    #[arg(long, default_value_t = 10.0, requires = "serve")]
    health_timeout: f64,
    /// Keep serving this many seconds after the source ends (to look at the last state of a recording)
    #[arg(long, default_value_t = 0.0, requires = "serve")]
    serve_linger: f64,
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
    // the live view starts first: a wrong address or token fails before anything else, and the page (and
    // /healthz's "no frame yet") answer while the models load
    let mut view = start_view(&args)?;
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
    let pose_every = cadence(cfg.pose.is_some(), args.pose_every, suite.map(|s| s.pose_every), defaults.pose_every);
    let stuff_every = cadence(true, args.stuff_every, suite.map(|s| s.stuff_every), defaults.stuff_every);
    // measured on a 2-core box (issue 14): the segmenter and text reader on their own threads with all the cores
    // took them from the detectors (6.8 fps); with one thread and stuff every 10th frame, 10.1 fps
    let cores = pancap::engine::default_threads();
    let half = (cfg.backend.threads.unwrap_or(cores) / 2).max(1);
    let worker_threads = args.worker_threads.or(suite.and_then(|s| s.worker_threads)).unwrap_or(half);
    // on the CPU the detectors take the cores the workers leave, unless --threads or the target says: measured on
    // the 2-core box (looped street recording, 3 alternated runs each), detectors on 1 thread beside the 1-thread
    // worker ran YOLOX-nano alone at 19.5-20.5 fps against 15.7-18.1 with 2 (3 threads on 2 cores), the default
    // suite at 9.8-10.4 fps against 8.6-10.6 (DEIMv2 gains more from a second thread: in the last three
    // alternated pairs 9.85-10.02 against 10.11-10.29)
    let on_cpu = matches!(cfg.backend.backend, pancap::engine::Backend::Tract | pancap::engine::Backend::OrtCpu);
    let detector_threads = match cfg.backend.threads {
        None if on_cpu => Some(cores.saturating_sub(worker_threads).max(1)),
        t => t,
    };
    let cfg = PipelineConfig {
        slow_stage_threads: Some(worker_threads),
        backend: pancap::engine::BackendConfig { threads: detector_threads, ..cfg.backend },
        ..cfg
    };
    let mut pipeline = Pipeline::load(cfg).context("loading the model suite")?;
    let opts = StreamOptions {
        every_frame: args.every_frame,
        heartbeat: Duration::from_secs_f64(args.heartbeat.max(0.0)),
        realtime_fps: args.realtime,
        queue: args.queue,
        discovery_every,
        text_every,
        person_masks_every,
        pose_every,
        recording_fps: args.recording_fps,
        stuff_every,
        max_frames: args.max_frames,
        slow_down: Duration::from_millis(args.slow_ms),
        live: args.live,
        ..StreamOptions::default()
    };
    let stats_every = Duration::from_secs_f64(args.stats_every.max(1.0));
    let mut publisher = start_publisher(&args, stats_every)?;
    let seq_offset = publisher.as_ref().map_or(0, |p| p.seq_offset());
    let opts = StreamOptions { seq_offset, stats_every, ..opts };
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
        None if publisher.is_some() => Box::new(std::io::sink()),
        None => Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    if let (Some(v), Some(g)) = (view.as_ref(), publisher.as_ref().and_then(|p| p.gauges())) {
        v.set_spool(g);
    }
    let result = {
        let mut sinks: Vec<&mut dyn stream::StreamSink> = Vec::new();
        if let Some(p) = publisher.as_mut() {
            sinks.push(p.sink());
        }
        if let Some(v) = view.as_mut() {
            sinks.push(v.sink());
        }
        let mut sinks = stream::Sinks(sinks);
        let sink: Option<&mut dyn stream::StreamSink> = if sinks.0.is_empty() { None } else { Some(&mut sinks) };
        stream::run_with_sink(&mut pipeline, source, &opts, Arc::clone(&stop), &mut out, sink)
    };
    // the publisher finishes (sends what it can, says offline, closes the spool) however the stream ended
    let published = publisher.map(|p| p.finish()).transpose();
    if let Some(v) = view.take() {
        v.linger(Duration::from_secs_f64(args.serve_linger.max(0.0)), &stop);
        v.finish()?;
    }
    let summary = result?;
    let published = published?;
    out.flush()?;
    if args.summary_json {
        #[derive(serde::Serialize)]
        struct WithPublish<'a, P: serde::Serialize> {
            #[serde(flatten)]
            stream: &'a stream::StreamSummary,
            #[serde(skip_serializing_if = "Option::is_none")]
            publish: Option<P>,
        }
        eprintln!("{}", serde_json::to_string(&WithPublish { stream: &summary, publish: published.as_ref().map(|p| p.json()) })?);
    } else {
        if let Some(p) = &published {
            eprintln!("{}", p.line());
        }
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

/// The live view behind `--serve` (feature `serve`).
#[cfg(feature = "serve")]
mod viewing {
    use anyhow::Result;
    use pancap::serve::{LiveView, ServeConfig, SpoolGauges, Token};
    use pancap::stream::StreamSink;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    pub type Gauges = Arc<dyn SpoolGauges>;

    pub struct Viewing(LiveView);

    impl Viewing {
        pub fn sink(&mut self) -> &mut dyn StreamSink {
            self.0.sink()
        }
        /// Keeps serving up to `d` after the stream ended, until interrupted.
        pub fn linger(&self, d: Duration, stop: &AtomicBool) {
            if d.is_zero() || stop.load(Ordering::SeqCst) {
                return;
            }
            eprintln!("the stream ended; serving http://{}/ for {:.0} s more (Ctrl-C ends it)", self.0.local_addr, d.as_secs_f64());
            self.0.linger(d, stop);
        }
        pub fn set_spool(&self, g: Gauges) {
            self.0.set_spool(g);
        }
        pub fn finish(self) -> Result<()> {
            Ok(self.0.finish()?)
        }
    }

    pub fn start(args: &super::StreamArgs) -> Result<Option<Viewing>> {
        let Some(addr) = args.serve else { return Ok(None) };
        let mut cfg = ServeConfig::new(addr);
        cfg.token = args.serve_token.as_deref().map(Token::read).transpose()?;
        cfg.fps = args.serve_fps;
        cfg.max_clients = args.serve_max_clients;
        cfg.health_timeout = Duration::from_secs_f64(args.health_timeout.max(0.1));
        cfg.title = args.device_name.clone().unwrap_or_else(pancap::stream::host_name);
        let view = LiveView::start(cfg)?;
        eprintln!("live view: http://{}/", view.local_addr);
        Ok(Some(Viewing(view)))
    }
}

#[cfg(feature = "serve")]
fn start_view(args: &StreamArgs) -> Result<Option<viewing::Viewing>> {
    viewing::start(args)
}

#[cfg(not(feature = "serve"))]
mod viewing {
    pub enum Viewing {}
    pub enum Gauges {}
    impl Viewing {
        pub fn sink(&mut self) -> &mut dyn pancap::stream::StreamSink {
            match *self {}
        }
        pub fn linger(&self, _: std::time::Duration, _: &std::sync::atomic::AtomicBool) {
            match *self {}
        }
        pub fn set_spool(&self, _: Gauges) {
            match *self {}
        }
        pub fn finish(self) -> anyhow::Result<()> {
            match self {}
        }
    }
}

#[cfg(not(feature = "serve"))]
fn start_view(args: &StreamArgs) -> Result<Option<viewing::Viewing>> {
    match &args.serve {
        Some(_) => bail!("--serve: this pancap was built without the live view; rebuild with the `serve` feature (on by default)"),
        None => Ok(None),
    }
}

/// The broker publisher behind `--publish` (feature `mqtt`).
#[cfg(feature = "mqtt")]
mod publishing {
    use anyhow::{Context, Result};
    use pancap::publish::{BrokerUrl, PublishConfig, PublishSummary, Publisher, Secret, TlsFiles};
    use pancap::stream::StreamSink;
    use std::time::Duration;

    pub struct Publishing(Publisher);
    pub struct Published(PublishSummary);

    impl Publishing {
        /// A new run's seq continues after the spool's (a source's seq starts at 0).
        pub fn seq_offset(&self) -> u64 {
            self.0.seq_base()
        }
        pub fn sink(&mut self) -> &mut dyn StreamSink {
            &mut self.0
        }
        #[cfg(feature = "serve")]
        pub fn gauges(&self) -> Option<super::viewing::Gauges> {
            Some(self.0.gauges())
        }
        #[cfg(not(feature = "serve"))]
        pub fn gauges(&self) -> Option<super::viewing::Gauges> {
            None
        }
        pub fn finish(self) -> Result<Published> {
            Ok(Published(self.0.finish()?))
        }
    }

    impl Published {
        pub fn json(&self) -> &PublishSummary {
            &self.0
        }
        pub fn line(&self) -> String {
            let p = &self.0;
            format!(
                "published to {} as {}: {} message(s) acknowledged, {} resent after lost links, {} reconnect(s); spool: {} left, peak {}, {} dropped when full, {} torn cut off, {} recovered from an earlier run; {} not handed over (channel full)",
                p.broker, p.device, p.acknowledged, p.resent, p.reconnects, p.spool.depth, p.spool.peak, p.spool.dropped,
                p.spool.torn, p.spool.recovered, p.channel_full
            )
        }
    }

    fn password(args: &super::StreamArgs) -> Result<Option<Secret>> {
        if let Some(path) = &args.password_file {
            let text = std::fs::read_to_string(path).with_context(|| format!("--password-file {}", path.display()))?;
            return Ok(Some(Secret::new(text.lines().next().unwrap_or("").to_string())));
        }
        Ok(std::env::var("PANCAP_MQTT_PASSWORD").ok().map(Secret::new))
    }

    pub fn start(args: &super::StreamArgs, stats_every: Duration) -> Result<Option<Publishing>> {
        let Some(url) = &args.publish else { return Ok(None) };
        let url = BrokerUrl::parse(url)?;
        let device = args.device_name.clone().unwrap_or_else(pancap::publish::host_name);
        let spool_dir = args.spool_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("pancap-spool").join(&device));
        let mut cfg = PublishConfig::new(url, device, spool_dir);
        cfg.password = password(args)?;
        cfg.tls = TlsFiles { ca: args.tls_ca.clone(), client_cert: args.tls_cert.clone(), client_key: args.tls_key.clone() };
        cfg.topic_prefix = args.topic_prefix.trim_end_matches('/').to_string();
        cfg.spool_max_bytes = (args.spool_max_mb.max(0.0625) * 1048576.0) as u64;
        cfg.drain_timeout = Duration::from_secs_f64(args.drain_timeout.max(0.0));
        cfg.start_offline = args.start_offline;
        cfg.stats_every = stats_every;
        Ok(Some(Publishing(Publisher::start(cfg)?)))
    }
}

#[cfg(feature = "mqtt")]
fn start_publisher(args: &StreamArgs, stats_every: Duration) -> Result<Option<publishing::Publishing>> {
    publishing::start(args, stats_every)
}

/// Without the feature, there is never a publisher.
#[cfg(not(feature = "mqtt"))]
mod publishing {
    pub enum Publishing {}
    pub enum Published {}
    impl Publishing {
        pub fn seq_offset(&self) -> u64 {
            match *self {}
        }
        pub fn sink(&mut self) -> &mut dyn pancap::stream::StreamSink {
            match *self {}
        }
        pub fn gauges(&self) -> Option<super::viewing::Gauges> {
            match *self {}
        }
        pub fn finish(self) -> anyhow::Result<Published> {
            match self {}
        }
    }
    impl Published {
        pub fn json(&self) -> &'static str {
            match *self {}
        }
        pub fn line(&self) -> String {
            match *self {}
        }
    }
}

#[cfg(not(feature = "mqtt"))]
fn start_publisher(args: &StreamArgs, _stats_every: Duration) -> Result<Option<publishing::Publishing>> {
    match &args.publish {
        Some(_) => bail!("--publish: this pancap was built without MQTT publishing; rebuild with the `mqtt` feature (on by default)"),
        None => Ok(None),
    }
}

//! `pancap view RECORDS.jsonl --replay RECORDING`: the live view's page over a field run after the fact — the
//! recording played again under the boxes and captions its JSON Lines records hold, no models run.

use anyhow::{bail, Context, Result};
use pancap::serve::{LiveView, ServeConfig, Token};
use pancap::source::DecodeLimits;
use pancap::stream::sources::open_replay;
use pancap::stream::StreamRecord;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ViewArgs {
    /// The JSON Lines records of a `pancap stream` run (`-o`)
    records: PathBuf,
    /// The recording that run read; its frames are shown under the boxes of the record written at or before each
    /// (exact with records of every frame, `stream --every-frame`)
    #[arg(long)]
    replay: PathBuf,
    /// Subtracted from the records' seq to find their frames (a run that published continued the seq of its
    /// spool: give the seq of its first frame)
    #[arg(long, default_value_t = 0)]
    seq_offset: u64,
    /// Serve on this address (a non-loopback one needs --serve-token)
    #[arg(long, default_value = "127.0.0.1:8080")]
    serve: std::net::SocketAddr,
    /// A file whose first line is the token every request must carry
    #[arg(long, value_name = "FILE")]
    serve_token: Option<PathBuf>,
    /// Most overlay pictures drawn a second
    #[arg(long, default_value_t = 5.0)]
    serve_fps: f64,
    /// Most open connections
    #[arg(long, default_value_t = 32)]
    serve_max_clients: usize,
    /// Frames per second the recording is played at
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    /// Play the recording again from the start when it ends, until interrupted
    #[arg(long = "loop")]
    repeat: bool,
    /// Keep serving this many seconds after the recording ends (the last frame stays on the page)
    #[arg(long, default_value_t = 600.0)]
    linger: f64,
}

/// The records of a JSON Lines file in seq order; a line that is not a record is skipped, named and counted.
fn read_records(path: &std::path::Path) -> Result<Vec<StreamRecord>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut records = Vec::new();
    let mut bad = 0u64;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<StreamRecord>(&line) {
            Ok(r) => records.push(r),
            Err(e) => {
                bad += 1;
                log::warn!("{}:{}: not a stream record, skipped: {e}", path.display(), i + 1);
            }
        }
    }
    if bad > 0 {
        eprintln!("{}: {bad} line(s) that are not stream records skipped", path.display());
    }
    if records.is_empty() {
        bail!("{}: no stream records in it (the JSON Lines `pancap stream -o` writes)", path.display());
    }
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

pub fn view_cmd(args: ViewArgs) -> Result<i32> {
    let records = read_records(&args.records)?;
    let mut cfg = ServeConfig::new(args.serve);
    cfg.token = args.serve_token.as_deref().map(Token::read).transpose()?;
    cfg.fps = args.serve_fps;
    cfg.max_clients = args.serve_max_clients;
    cfg.title = format!("{} (recorded)", args.records.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let fps = if args.fps.is_finite() && args.fps > 0.0 { args.fps } else { 10.0 };
    // the page says "no frames" after twice a frame's interval plus a second
    cfg.health_timeout = Duration::from_secs_f64(2.0 / fps + 1.0);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("installing the signal handler")?;
    }
    let mut view = LiveView::start(cfg)?;
    eprintln!("viewing {} ({} records) over {}: http://{}/", args.records.display(), records.len(), args.replay.display(), view.local_addr);
    let interval = Duration::from_secs_f64(1.0 / fps);
    let (mut frames, mut corrupt, mut matched) = (0u64, 0u64, 0u64);
    'plays: loop {
        let mut source = open_replay(&args.replay, None, None, DecodeLimits::default())?;
        let mut next = 0usize;
        let mut current: Option<&StreamRecord> = None;
        let mut due = Instant::now();
        while let Some(frame) = source.next_frame() {
            if stop.load(Ordering::SeqCst) {
                break 'plays;
            }
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("skipped: {e}");
                    corrupt += 1;
                    continue;
                }
            };
            frames += 1;
            let seq = frame.seq + args.seq_offset;
            // the newest record at or before this frame, handed on as the stream handed it when it was written
            while let Some(r) = records.get(next).filter(|r| r.seq <= seq) {
                view.sink().record(r);
                current = Some(r);
                next += 1;
            }
            if let Some(r) = current {
                matched += 1;
                view.view_sink().recorded_frame(&frame.rgb, r, [frames, 0, corrupt, next as u64]);
            }
            due += interval;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                due = Instant::now();
            }
        }
        if !args.repeat || frames == 0 {
            break;
        }
    }
    if matched == 0 {
        let first = records.first().map_or(0, |r| r.seq);
        eprintln!(
            "warning: no frame of {} had a record at or before it (the first record's seq is {first}; a run that published \
             continued its spool's seq: give --seq-offset)",
            args.replay.display()
        );
    }
    eprintln!("{frames} frame(s) shown, {corrupt} corrupt skipped, {matched} under a record");
    view.linger(Duration::from_secs_f64(args.linger.max(0.0)), &stop);
    view.finish()?;
    Ok(0)
}

//! The stream path: a capture thread feeds a bounded queue (live sources drop the oldest frame when the
//! pipeline falls behind; recordings wait, so every frame is processed in order), the detectors run on every
//! frame, slow stages run on their own cadence (stuff segmentation on a worker thread whose latest label map is
//! carried to the frames in between; extra-instance discovery every N frames), a tracker gives instances stable
//! ids, and JSON Lines records go out when the scene changes, on a heartbeat, or per frame on request.

pub mod events;
pub mod motion;
pub mod queue;
pub mod sources;
pub mod track;

#[cfg(feature = "camera")]
pub mod camera;

use crate::perceive::ocr::{TextLine, TextReader};
use crate::perceive::Segmenter;
use crate::geometry::BoxF;
use crate::pipeline::{FrameOptions, PeopleModels, PeopleSeen, StuffInput, StuffMap, TextInput};
use crate::scene::{Kind, PanopticCaption};
use crate::source::{Frame, SourceError};
use crate::timing::Timings;
use crate::{Pipeline, PipelineError};
use queue::FrameQueue;
use serde::{Deserialize, Serialize};
use sources::FrameSource;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use track::{Observation, TrackParams, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("writing records: {0}")]
    Write(#[from] std::io::Error),
    #[error("encoding a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// A worker thread died (panicked): the stream stops rather than carry its last result forever.
    #[error("the {stage} thread died: {reason}; the stream stopped (records written so far are complete)")]
    WorkerDied { stage: &'static str, reason: String },
}

/// The message of a thread's panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// Closes the frame queue when dropped: at the end of the capture thread, however it ends (a panic included),
/// so the frame loop never waits on a capture thread that is gone; and at the end of `run`, so a capture thread
/// never waits on a frame loop that is gone.
struct CloseOnDrop(Arc<FrameQueue<Captured>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Also write a record for every processed frame.
    pub every_frame: bool,
    /// A heartbeat record when nothing changed for this long.
    pub heartbeat: Duration,
    /// Replay paced at this many frames per second instead of as fast as possible.
    pub realtime_fps: Option<f64>,
    /// Frames held between capture and the pipeline.
    pub queue: usize,
    /// Run extra-instance discovery on every Nth frame (0: never).
    pub discovery_every: u32,
    /// Read text on every Nth frame (0: never), on its own thread: a frame is handed over when N frames passed
    /// since the last hand-over and the reader is idle.
    pub text_every: u32,
    /// Hand a frame to the stuff segmenter when N frames passed since the last hand-over and it is idle (1: whenever
    /// it is idle).
    pub stuff_every: u32,
    /// Run the person segmenter on every Nth frame (0: never); in between, each person's last mask is moved and
    /// scaled to the person's new box.
    pub person_masks_every: u32,
    /// Run the pose model on every Nth frame (0: never); in between, each person's last keypoints move with its
    /// box.
    pub pose_every: u32,
    pub track: TrackParams,
    pub motion: motion::MotionParams,
    /// The recording's own frame rate, for motion speeds when it is replayed faster than it was made (none: the
    /// `realtime_fps` pace, else capture times).
    pub recording_fps: Option<f64>,
    /// Stop after this many frames from the source.
    pub max_frames: Option<u64>,
    /// Extra delay per frame, to exercise dropping (tests, drills).
    pub slow_down: Duration,
    /// Treat a recording as a live source: stale frames are dropped when the pipeline falls behind (with
    /// `realtime_fps`, a recording then behaves like a camera).
    pub live: bool,
    /// Reopen attempts for a live source that fails, with backoff doubling from 100 ms to 5 s.
    pub max_reopen: u32,
    /// Added to every record's seq (a publisher continues the seq of its spool's earlier runs, so `(device, seq)`
    /// stays unique across restarts).
    pub seq_offset: u64,
    /// How often a sink is given live stats.
    pub stats_every: Duration,
    pub events: events::EventParams,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            every_frame: false,
            heartbeat: Duration::from_secs(5),
            realtime_fps: None,
            queue: 2,
            discovery_every: 10,
            text_every: 10,
            person_masks_every: 5,
            pose_every: 10,
            stuff_every: 10,
            track: TrackParams::default(),
            motion: motion::MotionParams::default(),
            recording_fps: None,
            max_frames: None,
            slow_down: Duration::ZERO,
            max_reopen: 20,
            live: false,
            seq_offset: 0,
            stats_every: Duration::from_secs(10),
            events: events::EventParams::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// The set of instances, their tags or their relations changed.
    Update,
    /// Nothing changed for a while; the current state again.
    Heartbeat,
    /// Every frame, on request.
    Frame,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEntity {
    /// Stable across frames (the track id).
    pub id: u32,
    pub tag: String,
    pub kind: Kind,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    /// False while the track is tentative (seen in fewer frames than the confirmation needs).
    pub confirmed: bool,
    /// The text read on it, when the text reader read any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// How a tracked person or vehicle moves (once its track is long enough to measure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<motion::Motion>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrackedRelation {
    pub subject: u32,
    /// The relation's phrase: borrowed from the relation's own `'static` phrase when built from a caption (no
    /// allocation a frame), owned when read back from JSON.
    pub predicate: std::borrow::Cow<'static, str>,
    pub object: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub kind: RecordKind,
    pub seq: u64,
    /// Capture time, milliseconds since the Unix epoch.
    pub capture_unix_ms: u64,
    /// From capture to this record.
    pub latency_ms: f64,
    pub entities: Vec<TrackedEntity>,
    pub relations: Vec<TrackedRelation>,
    pub caption: String,
    /// Confirmed ids that appeared and disappeared since the previous update.
    pub appeared: Vec<u32>,
    pub disappeared: Vec<u32>,
    /// Frames the stuff shown here comes from (carried from an earlier frame between segmentation runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuff_from_seq: Option<u64>,
    /// Resident memory of the process when the record was written (kB; 0 where /proc is not available).
    pub rss_kb: u64,
    /// What happened to tracked entities' motion since the previous record (entered, left, started moving,
    /// stopped); a frame with such an event is always recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub motion_events: Vec<motion::MotionEvent>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub source: String,
    pub frames: u64,
    pub dropped: u64,
    pub corrupt: u64,
    /// Frames the stuff segmenter failed on (logged; the previous map stays in use).
    pub stuff_failed: u64,
    /// Frames the text reader failed on (logged; the previous lines stay in use).
    #[serde(default)]
    pub text_failed: u64,
    /// Frames the people worker (person masks, pose) failed on (logged; what it saw before stays in use).
    #[serde(default)]
    pub people_failed: u64,
    pub records: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub fps: f64,
    pub reopened: u32,
    pub interrupted: bool,
    /// Resident memory after the first frames and at the end, and the peak (kB, Linux /proc).
    pub rss_warm_kb: u64,
    pub rss_end_kb: u64,
    pub rss_peak_kb: u64,
    /// Mean heap allocations per frame after the first 10 frames, outside the engines (capture and decode
    /// included) and inside them; None when the binary installed no allocation counter.
    pub allocations_per_frame_outside_engines: Option<f64>,
    pub allocations_per_frame_in_engines: Option<f64>,
}

/// The stream's state every `stats_every`, for a sink to publish.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// Seconds since the stream started.
    pub uptime_s: f64,
    pub frames: u64,
    /// Frames per second and latency percentiles over the last interval.
    pub fps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Totals since the start: frames dropped because the pipeline fell behind, corrupt frames skipped.
    pub dropped: u64,
    pub corrupt: u64,
    pub records: u64,
    pub rss_kb: u64,
}

/// One processed frame as a sink sees it: a live view draws it, metrics count it.
pub struct FrameView<'a> {
    pub frame: &'a Frame,
    pub caption: &'a PanopticCaption,
    /// The track id of each of the caption's entities, in order.
    pub ids: &'a [u32],
    pub entities: &'a [TrackedEntity],
    /// From capture to the end of this frame's pipeline run.
    pub latency_ms: f64,
    /// Totals since the start: frames processed (this one included), dropped, corrupt, records written.
    pub frames: u64,
    pub dropped: u64,
    pub corrupt: u64,
    pub records: u64,
}

/// Where a stream's records go besides the JSON Lines (a broker publisher, a live view). Calls come from the
/// frame loop and must not block it.
pub trait StreamSink {
    /// Every processed frame (before its record, if it has one).
    fn frame(&mut self, _view: &FrameView<'_>) {}
    fn record(&mut self, record: &StreamRecord);
    fn events(&mut self, events: &[events::EntityEvent]);
    fn stats(&mut self, stats: &LiveStats);
}

/// Several sinks as one, called in order.
pub struct Sinks<'a>(pub Vec<&'a mut dyn StreamSink>);

impl StreamSink for Sinks<'_> {
    fn frame(&mut self, view: &FrameView<'_>) {
        self.0.iter_mut().for_each(|s| s.frame(view));
    }
    fn record(&mut self, record: &StreamRecord) {
        self.0.iter_mut().for_each(|s| s.record(record));
    }
    fn events(&mut self, events: &[events::EntityEvent]) {
        self.0.iter_mut().for_each(|s| s.events(events));
    }
    fn stats(&mut self, stats: &LiveStats) {
        self.0.iter_mut().for_each(|s| s.stats(stats));
    }
}

/// The host name (for the default device name), from the kernel.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty() && !s.contains(['/', '+', '#']))
        .unwrap_or_else(|| "pancap".into())
}

/// VmRSS and VmHWM of this process in kB (0 where /proc is not available).
pub fn rss_kb() -> (u64, u64) {
    thread_local! {
        // /proc/self/status is ~1.5 kB: read into a buffer kept per thread, not a String per record
        static STATUS: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
    }
    STATUS.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => rss_from_status(&mut buf),
        Err(_) => rss_from_status(&mut Vec::new()),
    })
}

fn rss_from_status(buf: &mut Vec<u8>) -> (u64, u64) {
    use std::io::Read as _;
    buf.clear();
    if std::fs::File::open("/proc/self/status").and_then(|mut f| f.read_to_end(buf)).is_err() {
        buf.clear();
    }
    let text = std::str::from_utf8(buf).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Captured {
    frame: Result<Frame, SourceError>,
    at: Instant,
    unix_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The capture side: reads the source until it ends, the frame budget is spent or `stop` is set.
fn capture(mut source: Box<dyn FrameSource>, queue: Arc<FrameQueue<Captured>>, opts: StreamOptions, stop: Arc<AtomicBool>, reopened: Arc<std::sync::atomic::AtomicU32>) {
    let _closer = CloseOnDrop(Arc::clone(&queue));
    let live = source.is_live() || opts.live;
    let start = Instant::now();
    let mut n = 0u64;
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) && opts.max_frames.is_none_or(|m| n < m) {
        let Some(frame) = source.next_frame() else { break };
        if live {
            if let Err(SourceError::Read { .. }) = &frame {
                // the device went away: reopen with backoff, without restarting the process
                let mut wait = Duration::from_millis(100);
                loop {
                    if stop.load(Ordering::SeqCst) || failures >= opts.max_reopen {
                        queue.close();
                        return;
                    }
                    failures += 1;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                    match source.reopen() {
                        Ok(()) => {
                            reopened.fetch_add(1, Ordering::SeqCst);
                            log::warn!("{}: reopened", source.describe());
                            break;
                        }
                        Err(e) => log::warn!("{}: reopen failed: {e}", source.describe()),
                    }
                }
                continue;
            }
            failures = 0;
        }
        if let Some(fps) = opts.realtime_fps.filter(|f| *f > 0.0) {
            let due = start + Duration::from_secs_f64(n as f64 / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        n += 1;
        let item = Captured { frame, at: Instant::now(), unix_ms: unix_ms() };
        let accepted = if live { queue.push_latest(item) } else { queue.push_wait(item) };
        if !accepted {
            break;
        }
    }
    queue.close();
}

/// One finished slow-stage run: the frame's sequence number and its result, or why it failed.
type WorkerResult<T> = (u64, Result<T, String>);

/// A slow stage (stuff segmentation, text reading, the people models) on its own thread: it takes a job (`J`: a
/// frame, and what else the stage needs of it) only when idle, so the detector loop never waits for it, and the
/// stream carries its latest result to the frames in between.
struct Worker<J, T> {
    stage: &'static str,
    idle: Arc<AtomicBool>,
    tx: mpsc::SyncSender<(u64, J)>,
    rx: mpsc::Receiver<WorkerResult<T>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The stream's frame count at the last hand-over.
    offered: Option<u64>,
}

impl<J: Send + 'static, T: Send + 'static> Worker<J, T> {
    fn spawn(stage: &'static str, mut work: impl FnMut(&J) -> Result<T, String> + Send + 'static) -> Worker<J, T> {
        let idle = Arc::new(AtomicBool::new(true));
        let (tx, jobs) = mpsc::sync_channel::<(u64, J)>(1);
        let (results, rx) = mpsc::channel();
        let worker_idle = Arc::clone(&idle);
        let thread = std::thread::spawn(move || {
            for (seq, job) in jobs {
                let r = work(&job);
                worker_idle.store(true, Ordering::SeqCst);
                if results.send((seq, r)).is_err() {
                    break;
                }
            }
        });
        Worker { stage, idle, tx, rx, thread: Some(thread), offered: None }
    }

    /// The results finished since the last call, or an error when the worker thread died.
    fn finished(&mut self) -> Result<Vec<WorkerResult<T>>, StreamError> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(r) => out.push(r),
                Err(mpsc::TryRecvError::Empty) => return Ok(out),
                Err(mpsc::TryRecvError::Disconnected) => {
                    let reason = match self.thread.take().map(std::thread::JoinHandle::join) {
                        Some(Err(payload)) => panic_message(payload.as_ref()),
                        _ => "it ended without a result".into(),
                    };
                    return Err(StreamError::WorkerDied { stage: self.stage, reason });
                }
            }
        }
    }

    /// Ends the worker: no more frames, waits for it, and reports a panic it died of.
    fn close(mut self) -> Result<(), StreamError> {
        let thread = self.thread.take();
        drop(self.tx);
        drop(self.rx);
        match thread.map(std::thread::JoinHandle::join) {
            Some(Err(payload)) => Err(StreamError::WorkerDied { stage: self.stage, reason: panic_message(payload.as_ref()) }),
            _ => Ok(()),
        }
    }

    /// Takes the results finished since the last call: the newest success into `latest` (with its frame's
    /// sequence number), each failure logged and counted in `failed`.
    fn collect(&mut self, latest: &mut Option<(u64, T)>, failed: &mut u64) -> Result<(), StreamError> {
        for (seq, r) in self.finished()? {
            match r {
                Ok(v) => *latest = Some((seq, v)),
                Err(e) => {
                    log::warn!("{} failed: {e}", self.stage);
                    *failed += 1;
                }
            }
        }
        Ok(())
    }

    /// Hands frame `seq`'s job over when `every` frames passed since the last hand-over (`frames` is the
    /// stream's count) and the worker is idle; the job is made only then.
    fn offer_every(&mut self, seq: u64, frames: u64, every: u32, job: impl FnOnce() -> J) {
        let due = self.offered.is_none_or(|at| frames >= at + u64::from(every.max(1)));
        if due && self.offer(seq, job) {
            self.offered = Some(frames);
        }
    }

    /// Hands frame `seq`'s job over if the worker is idle (the job is made only then); says whether it took it.
    fn offer(&self, seq: u64, job: impl FnOnce() -> J) -> bool {
        if !self.idle.swap(false, Ordering::SeqCst) {
            return false;
        }
        if self.tx.try_send((seq, job())).is_err() {
            self.idle.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// A people-worker job: a frame, its people's boxes (frame pixels), and which of the people models are due.
struct PeopleJob {
    frame: Frame,
    people: Vec<BoxF>,
    masks: bool,
    pose: bool,
}

fn stuff_worker(mut seg: Segmenter) -> Worker<Frame, StuffMap> {
    Worker::spawn("stuff segmentation", move |frame: &Frame| {
        StuffMap::segment(&mut seg, &frame.rgb, &mut Timings::default()).map_err(|e| format!("{}: {e}", frame.origin))
    })
}

fn text_worker(mut reader: TextReader) -> Worker<Frame, Vec<TextLine>> {
    Worker::spawn("text reading", move |frame: &Frame| {
        let mut t = Timings::default();
        reader.read(&frame.rgb, &mut t).map_err(|e| format!("{}: {e}", frame.origin))
    })
}

fn people_worker(mut models: PeopleModels) -> Worker<PeopleJob, PeopleSeen> {
    Worker::spawn("person masks and pose", move |job: &PeopleJob| {
        let mut t = Timings::default();
        models.see(&job.frame.rgb, &job.people, job.masks, job.pose, &mut t).map_err(|e| format!("{}: {e}", job.frame.origin))
    })
}

/// What makes a record worth writing: the confirmed tracks, their relations, and how the moving ones move (state
/// and direction; speeds change every frame and are not part of it). Each list is sorted and without duplicates,
/// so two signatures are equal exactly when the sets are. The stream keeps two (this frame's and the last
/// record's) and refills them in place, so comparing allocates nothing once their buffers have grown.
#[derive(Debug, Default, PartialEq)]
struct Signature {
    tracks: Vec<(u32, String)>,
    relations: Vec<TrackedRelation>,
    motion: Vec<(u32, motion::MotionState, Option<motion::Direction>)>,
}

impl Signature {
    fn refill(&mut self, tracks: &[track::Track], relations: &[TrackedRelation], entities: &[TrackedEntity]) {
        refill(
            &mut self.tracks,
            tracks.iter().filter(|t| t.confirmed),
            |slot, t| {
                slot.0 = t.id;
                slot.1.clone_from(&t.tag);
            },
            |t| (t.id, t.tag.clone()),
        );
        self.tracks.sort_unstable();
        self.tracks.dedup();
        self.relations.clear();
        self.relations.extend(relations.iter().cloned());
        self.relations.sort_unstable();
        self.relations.dedup();
        self.motion.clear();
        self.motion.extend(entities.iter().filter(|t| t.confirmed).filter_map(|t| t.motion.map(|m| (t.id, m.state, m.direction))));
        self.motion.sort_unstable();
        self.motion.dedup();
    }

    /// The track ids of `self` that `other` lacks, ascending (both lists are sorted by id).
    fn ids_not_in(&self, other: Option<&Signature>) -> Vec<u32> {
        let has = |id: u32| other.is_some_and(|o| o.tracks.binary_search_by_key(&id, |(i, _)| *i).is_ok());
        let mut ids: Vec<u32> = self.tracks.iter().map(|(id, _)| *id).filter(|&id| !has(id)).collect();
        ids.dedup();
        ids
    }
}

/// Overwrites `buf` with one element per item, reusing the elements (and what they own) already there: `set`
/// overwrites a kept element, `make` builds a new one past the old length.
fn refill<T, S>(buf: &mut Vec<T>, items: impl IntoIterator<Item = S>, set: impl Fn(&mut T, S), make: impl Fn(S) -> T) {
    let mut n = 0;
    for item in items {
        match buf.get_mut(n) {
            Some(slot) => set(slot, item),
            None => buf.push(make(item)),
        }
        n += 1;
    }
    buf.truncate(n);
}

/// An empty `Vec` with `v`'s allocation, for elements that borrow from another frame: collecting a `vec::IntoIter`
/// through `filter_map` reuses its buffer in place when the element types have the same size and alignment (here
/// they differ only in lifetime), so a loop can keep one buffer of borrowed elements across frames.
fn recycle<T, U>(v: Vec<T>) -> Vec<U> {
    v.into_iter().filter_map(|_| None).collect()
}

/// Runs a stream to its end (or until `stop`), writing records to `out`; returns the summary.
pub fn run(
    pipeline: &mut Pipeline,
    source: Box<dyn FrameSource>,
    opts: &StreamOptions,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
) -> Result<StreamSummary, StreamError> {
    run_with_sink(pipeline, source, opts, stop, out, None)
}

/// As [`run`], also handing every record, the entity events and live stats to `sink`.
pub fn run_with_sink(
    pipeline: &mut Pipeline,
    source: Box<dyn FrameSource>,
    opts: &StreamOptions,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
    mut sink: Option<&mut dyn StreamSink>,
) -> Result<StreamSummary, StreamError> {
    let name = source.describe();
    let queue = Arc::new(FrameQueue::new(opts.queue));
    // however this function returns (an error included), the capture thread is told to stop
    let _stop_capture = CloseOnDrop(Arc::clone(&queue));
    let reopened = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let capture_thread = {
        let (q, o, s, r) = (Arc::clone(&queue), opts.clone(), Arc::clone(&stop), Arc::clone(&reopened));
        std::thread::spawn(move || capture(source, q, o, s, r))
    };
    let mut stuff = pipeline.take_segmenter().map(stuff_worker);
    let mut text_reader = if opts.text_every > 0 { pipeline.take_text_reader().map(text_worker) } else { None };
    // the person segmenter and the pose model on a thread of their own too: on the detectors' thread they cost a
    // fifth of the frame rate on a 2-core box
    let mut people = if opts.person_masks_every > 0 || opts.pose_every > 0 { pipeline.take_people_models().map(people_worker) } else { None };
    // the stream's frame count at the last hand-over of person masks and of pose
    let mut people_offered: (Option<u64>, Option<u64>) = (None, None);
    let mut latest_stuff: Option<(u64, StuffMap)> = None;
    let mut latest_text: Option<(u64, Vec<TextLine>)> = None;
    let mut tracker = Tracker::new(opts.track);
    let mut summary = StreamSummary { source: name, ..StreamSummary::default() };
    let mut latencies = crate::math::LatencyHistogram::default();
    let mut last: Option<Signature> = None;
    let mut signature = Signature::default();
    // buffers kept across frames (see `recycle` for the borrowed ones)
    let mut ids: Vec<u32> = Vec::new();
    let mut tracked_entities: Vec<TrackedEntity> = Vec::new();
    let mut tracked_relations: Vec<TrackedRelation> = Vec::new();
    let mut observations_kept: Vec<Observation<'static>> = Vec::new();
    let mut sightings_kept: Vec<motion::Sighting<'static>> = Vec::new();
    let mut last_record = Instant::now();
    let started = Instant::now();
    let mut line = Vec::with_capacity(64 * 1024);
    let mut event_tracker = events::EventTracker::new(opts.events);
    let mut frame_events: Vec<events::EntityEvent> = Vec::new();
    let mut motion_tracker = motion::MotionTracker::new(opts.motion);
    // motion events wait here for the next record (every frame with one is recorded, so none is lost)
    let mut motion_events: Vec<motion::MotionEvent> = Vec::new();
    let mut first_unix_ms: Option<u64> = None;
    let mut interval = crate::math::LatencyHistogram::default();
    let (mut interval_start, mut interval_frames) = (Instant::now(), 0u64);

    let mut allocs = crate::alloc_count::PerFrame::default();
    while let Some(item) = queue.pop() {
        let frame_start = crate::alloc_count::mark();
        let frame = match item.frame {
            Ok(f) => f,
            Err(e) => {
                log::warn!("skipped: {e}");
                summary.corrupt += 1;
                continue;
            }
        };
        if let Some(w) = &mut stuff {
            w.collect(&mut latest_stuff, &mut summary.stuff_failed)?;
            w.offer_every(frame.seq, summary.frames, opts.stuff_every, || frame.clone());
        }
        if let Some(w) = &mut text_reader {
            w.collect(&mut latest_text, &mut summary.text_failed)?;
            w.offer_every(frame.seq, summary.frames, opts.text_every, || frame.clone());
        }
        // what the people worker saw last is carried with each person's box from now on
        if let Some(w) = &mut people {
            let mut seen = None;
            w.collect(&mut seen, &mut summary.people_failed)?;
            if let Some((_, seen)) = seen {
                pipeline.set_people_seen(seen);
            }
        }
        // with a people worker the people models run there, and the frame only carries what they saw
        let person_masks =
            people.is_none() && opts.person_masks_every > 0 && summary.frames.is_multiple_of(u64::from(opts.person_masks_every));
        let pose = people.is_none() && opts.pose_every > 0 && summary.frames.is_multiple_of(u64::from(opts.pose_every));
        let discovery = opts.discovery_every > 0 && summary.frames.is_multiple_of(u64::from(opts.discovery_every));
        let stuff_input = match &latest_stuff {
            Some((_, m)) => StuffInput::Given(m),
            None => StuffInput::Skip,
        };
        // text is read on its own thread and cadence; the lines read last are placed on the frames in between (as
        // stuff is)
        let text = match &latest_text {
            Some((_, lines)) => TextInput::Given(lines),
            None => TextInput::Skip,
        };
        let opts_frame = FrameOptions { stuff: stuff_input, discovery, text, person_masks, pose };
        let result = pipeline.process_with(&frame, Timings::default(), opts_frame);
        let caption = match result {
            Ok(r) => r.caption,
            Err(e) => {
                log::warn!("skipped: {e}");
                summary.corrupt += 1;
                continue;
            }
        };
        if let Some(w) = &mut people {
            let due = |last: Option<u64>, every: u32| every > 0 && last.is_none_or(|at| summary.frames >= at + u64::from(every));
            let (masks, pose) = (due(people_offered.0, opts.person_masks_every), due(people_offered.1, opts.pose_every));
            let job = || PeopleJob {
                frame: frame.clone(),
                people: caption.entities.iter().filter(|e| e.tag == "person").map(crate::scene::Entity::bbox).collect(),
                masks,
                pose,
            };
            if (masks || pose) && w.offer(frame.seq, job) {
                people_offered = (if masks { Some(summary.frames) } else { people_offered.0 }, if pose { Some(summary.frames) } else { people_offered.1 });
            }
        }
        if !opts.slow_down.is_zero() {
            std::thread::sleep(opts.slow_down);
        }
        summary.frames += 1;
        let mut observations: Vec<Observation<'_>> = recycle(std::mem::take(&mut observations_kept));
        observations.extend(caption.entities.iter().map(|e| Observation { tag: &e.tag, bbox: e.box_norm }));
        tracker.update_into(&observations, &mut ids);
        observations_kept = recycle(observations);
        tracked_into(&caption, &ids, &tracker, &mut tracked_entities, &mut tracked_relations);
        let (entities, relations) = (&mut tracked_entities, &tracked_relations);
        // the stream's clock: the recording's frame rate when known, else capture times
        let t_s = match opts.recording_fps.or(opts.realtime_fps).filter(|f| *f > 0.0) {
            Some(fps) => frame.seq as f64 / fps,
            None => (item.unix_ms - *first_unix_ms.get_or_insert(item.unix_ms)) as f64 / 1e3,
        };
        let mut sightings: Vec<motion::Sighting<'_>> = recycle(std::mem::take(&mut sightings_kept));
        sightings.extend(
            entities.iter().filter(|t| t.confirmed && t.kind == Kind::Thing).map(|t| motion::Sighting { id: t.id, tag: t.tag.as_str(), bbox: t.bbox }),
        );
        let events_before = motion_events.len();
        motion_tracker.update(t_s, frame.width(), frame.height(), &sightings, |id| tracker.is_confirmed(id), &mut motion_events);
        sightings_kept = recycle(sightings);
        let motion_now = motion_events.len() > events_before;
        for t in entities.iter_mut() {
            t.motion = motion_tracker.motion(t.id);
        }
        // the scene is the set of confirmed live tracks: an instance missed for a frame or two is still there
        signature.refill(tracker.tracks(), relations, entities);
        let changed = last.as_ref() != Some(&signature);
        let kind = if changed || motion_now {
            Some(RecordKind::Update)
        } else if last_record.elapsed() >= opts.heartbeat {
            Some(RecordKind::Heartbeat)
        } else if opts.every_frame {
            Some(RecordKind::Frame)
        } else {
            None
        };
        let latency_ms = item.at.elapsed().as_secs_f64() * 1e3;
        latencies.record(latency_ms);
        let seq = frame.seq + opts.seq_offset;
        if let Some(sink) = sink.as_deref_mut() {
            sink.frame(&FrameView {
                frame: &frame,
                caption: &caption,
                ids: &ids,
                entities,
                latency_ms,
                frames: summary.frames,
                dropped: queue.dropped(),
                corrupt: summary.corrupt,
                records: summary.records,
            });
            let seen: Vec<events::Observed> = caption
                .entities
                .iter()
                .zip(entities.iter())
                .filter(|(_, t)| t.confirmed)
                .map(|(e, t)| events::Observed {
                    id: t.id,
                    tag: t.tag.clone(),
                    state: events::EntityState {
                        bbox: t.bbox,
                        score: t.score,
                        attributes: events::EventAttributes::of(e),
                        relations: relations
                            .iter()
                            .filter(|r| r.subject == t.id)
                            .map(|r| events::EventRelation { predicate: r.predicate.to_string(), object: r.object })
                            .collect(),
                    },
                })
                .collect();
            frame_events.clear();
            event_tracker.update(seq, item.unix_ms, &seen, |id| tracker.is_confirmed(id), &mut frame_events);
            if !frame_events.is_empty() {
                sink.events(&frame_events);
            }
            interval.record(latency_ms);
            interval_frames += 1;
            if interval_start.elapsed() >= opts.stats_every {
                let p = interval.percentiles();
                let secs = interval_start.elapsed().as_secs_f64();
                sink.stats(&LiveStats {
                    uptime_s: started.elapsed().as_secs_f64(),
                    frames: summary.frames,
                    fps: if secs > 0.0 { interval_frames as f64 / secs } else { 0.0 },
                    p50_ms: p.p50_ms,
                    p95_ms: p.p95_ms,
                    dropped: queue.dropped(),
                    corrupt: summary.corrupt,
                    records: summary.records,
                    rss_kb: rss_kb().0,
                });
                interval = crate::math::LatencyHistogram::default();
                (interval_start, interval_frames) = (Instant::now(), 0);
            }
        }
        if let Some(kind) = kind {
            let caption_text = match motion_sentences(entities, &motion_events) {
                m if m.is_empty() => caption.caption,
                m => format!("{} {m}", caption.caption),
            };
            let record = StreamRecord {
                kind,
                seq,
                capture_unix_ms: item.unix_ms,
                latency_ms,
                entities: std::mem::take(entities),
                relations: std::mem::take(&mut tracked_relations),
                caption: caption_text,
                motion_events: std::mem::take(&mut motion_events),
                appeared: signature.ids_not_in(last.as_ref()),
                disappeared: last.as_ref().map(|l| l.ids_not_in(Some(&signature))).unwrap_or_default(),
                stuff_from_seq: latest_stuff.as_ref().map(|(s, _)| *s),
                rss_kb: rss_kb().0,
            };
            // one whole line per write: a kill never leaves half a record
            line.clear();
            serde_json::to_writer(&mut line, &record)?;
            line.push(b'\n');
            out.write_all(&line)?;
            out.flush()?;
            if let Some(sink) = sink.as_deref_mut() {
                sink.record(&record);
            }
            summary.records += 1;
            last_record = Instant::now();
            // the record's lists go back to the buffers they came from, to be refilled on the next frame
            let StreamRecord { entities, relations, motion_events: events, .. } = record;
            (tracked_entities, tracked_relations, motion_events) = (entities, relations, events);
            motion_events.clear();
            if kind == RecordKind::Update {
                match &mut last {
                    Some(l) => std::mem::swap(l, &mut signature),
                    None => last = Some(std::mem::take(&mut signature)),
                }
            }
        }
        if summary.frames == 10 {
            summary.rss_warm_kb = rss_kb().0;
        }
        if summary.frames > 10 {
            allocs.add_since(frame_start);
        }
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
    }
    queue.close();
    if let Some(w) = stuff.take() {
        w.close()?;
    }
    if let Some(w) = text_reader.take() {
        w.close()?;
    }
    if let Some(w) = people.take() {
        w.close()?;
    }
    summary.dropped = queue.dropped();
    summary.reopened = reopened.load(Ordering::SeqCst);
    if !summary.interrupted || capture_thread.is_finished() {
        if let Err(payload) = capture_thread.join() {
            return Err(StreamError::WorkerDied { stage: "capture", reason: panic_message(payload.as_ref()) });
        }
    }
    let p = latencies.percentiles();
    (summary.p50_ms, summary.p95_ms, summary.p99_ms) = (p.p50_ms, p.p95_ms, p.p99_ms);
    let secs = started.elapsed().as_secs_f64();
    summary.fps = if secs > 0.0 { summary.frames as f64 / secs } else { 0.0 };
    summary.allocations_per_frame_outside_engines = allocs.outside_mean();
    summary.allocations_per_frame_in_engines = allocs.inside_mean();
    let (rss, peak) = rss_kb();
    summary.rss_end_kb = rss;
    summary.rss_peak_kb = peak;
    out.flush()?;
    Ok(summary)
}

/// What a record's caption says of motion: each moving person or vehicle with its verb and direction ("A person
/// [[…]] walks to the left."), then the events since the last record ("A car entered from the right.").
fn motion_sentences(entities: &[TrackedEntity], events: &[motion::MotionEvent]) -> String {
    let mention = |t: &TrackedEntity| {
        let [a, b, c, d] = t.bbox;
        format!("{} {} [[{a:.3}, {b:.3}, {c:.3}, {d:.3}]]", crate::caption::text::article(&t.tag), t.tag)
    };
    let mut out: Vec<String> = Vec::new();
    for t in entities.iter().filter(|t| t.confirmed) {
        let Some(m) = t.motion.filter(|m| m.state.moving()) else { continue };
        let direction = m.direction.map(|d| format!(" {}", d.phrase())).unwrap_or_default();
        out.push(format!("{} {}{direction}.", capitalise_first(&mention(t)), m.state.verb()));
    }
    for e in events {
        let what = format!("{} {}", crate::caption::text::article(&e.tag), e.tag);
        let side = |s: Option<motion::Side>, from: bool| match (s, from) {
            (Some(s), true) => format!(" from the {}", side_word(s)),
            (Some(s), false) => format!(" through the {} edge", side_word(s)),
            (None, _) => String::new(),
        };
        let sentence = match (e.kind, e.side) {
            (motion::MotionEventKind::Entered, None) => format!("{what} came into view."),
            (motion::MotionEventKind::Left, None) => format!("{what} went out of view."),
            (motion::MotionEventKind::Entered, s) => format!("{what} entered{}.", side(s, true)),
            (motion::MotionEventKind::Left, s) => format!("{what} left{}.", side(s, false)),
            (motion::MotionEventKind::StartedMoving, _) => format!("{what} started moving."),
            (motion::MotionEventKind::Stopped, _) => format!("{what} stopped."),
        };
        out.push(capitalise_first(&sentence));
    }
    out.join(" ")
}

fn side_word(s: motion::Side) -> &'static str {
    match s {
        motion::Side::Left => "left",
        motion::Side::Right => "right",
        motion::Side::Top => "top",
        motion::Side::Bottom => "bottom",
    }
}

fn capitalise_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// The text read on an entity, if any.
fn text_of(e: &crate::scene::Entity) -> Option<&str> {
    e.attributes.text.as_ref().map(|t| t.text.as_str())
}

/// The caption's entities and relations under track ids, written into `entities` and `relations` (reusing what
/// they hold: a kept entity's tag and text keep their allocations).
fn tracked_into(caption: &PanopticCaption, ids: &[u32], tracker: &Tracker, entities: &mut Vec<TrackedEntity>, relations: &mut Vec<TrackedRelation>) {
    refill(
        entities,
        caption.entities.iter().zip(ids),
        |slot, (e, id)| {
            slot.id = *id;
            slot.tag.clear();
            slot.tag.push_str(&e.tag);
            slot.kind = e.kind;
            slot.score = e.score;
            slot.bbox = e.box_norm;
            slot.confirmed = tracker.is_confirmed(*id);
            match (&mut slot.text, text_of(e)) {
                (Some(kept), Some(t)) => {
                    kept.clear();
                    kept.push_str(t);
                }
                (kept, t) => *kept = t.map(str::to_string),
            }
            slot.motion = None;
        },
        |(e, id)| TrackedEntity {
            id: *id,
            tag: e.tag.to_string(),
            kind: e.kind,
            score: e.score,
            bbox: e.box_norm,
            confirmed: tracker.is_confirmed(*id),
            text: text_of(e).map(str::to_string),
            motion: None,
        },
    );
    let track_of = |entity_id: u32| caption.entities.iter().position(|e| e.id == entity_id).and_then(|i| ids.get(i)).copied();
    relations.clear();
    relations.extend(caption.relations.iter().filter_map(|r| {
        let (s, o) = (track_of(r.subject)?, track_of(r.object)?);
        (tracker.is_confirmed(s) && tracker.is_confirmed(o)).then(|| TrackedRelation {
            subject: s,
            predicate: std::borrow::Cow::Borrowed(r.predicate.phrase()),
            object: o,
        })
    }));
    relations.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn rss_is_read_from_proc_again_on_each_call() {
        let (rss, peak) = rss_kb();
        assert!(rss > 0 && peak >= rss, "VmRSS {rss} kB, VmHWM {peak} kB");
        let grown = vec![1u8; 64 << 20];
        let (rss2, peak2) = rss_kb();
        assert!(rss2 >= rss + 32 * 1024 && peak2 >= rss2, "64 MB touched: VmRSS {rss} -> {rss2} kB, VmHWM {peak2} kB");
        assert_eq!(grown.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
    }
    use std::sync::atomic::AtomicU32;

    /// A camera that delivers two frames, disappears (read error, first reopen fails), comes back and delivers
    /// two more.
    struct FlakyCamera {
        script: Vec<&'static str>,
        reopen_failures: u32,
        seq: u64,
    }

    impl FrameSource for FlakyCamera {
        fn next_frame(&mut self) -> Option<Result<Frame, SourceError>> {
            let step = if self.script.is_empty() { return None } else { self.script.remove(0) };
            self.seq += 1;
            Some(match step {
                "frame" => Ok(Frame { rgb: image::RgbImage::new(4, 4), origin: "cam".into(), seq: self.seq }),
                _ => Err(SourceError::Read {
                    path: "cam".into(),
                    source: std::io::Error::new(std::io::ErrorKind::NotConnected, "gone"),
                }),
            })
        }
        fn is_live(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn reopen(&mut self) -> Result<(), SourceError> {
            if self.reopen_failures > 0 {
                self.reopen_failures -= 1;
                return Err(SourceError::NotFound { path: "cam".into() });
            }
            Ok(())
        }
    }

    #[test]
    fn a_camera_that_disappears_is_reopened_with_backoff() {
        let cam = FlakyCamera { script: vec!["frame", "frame", "gone", "frame", "frame"], reopen_failures: 1, seq: 0 };
        let queue = Arc::new(FrameQueue::new(16));
        let reopened = Arc::new(AtomicU32::new(0));
        let t = Instant::now();
        capture(Box::new(cam), Arc::clone(&queue), StreamOptions::default(), Arc::new(AtomicBool::new(false)), Arc::clone(&reopened));
        let frames: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(frames.len(), 4, "the error is not a frame; capture goes on after the reopen");
        assert!(frames.iter().all(|c| c.frame.is_ok()));
        assert_eq!(reopened.load(Ordering::SeqCst), 1);
        // one failed attempt after 100 ms, the successful one after another 200 ms
        assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    }

    /// A source that panics on its third frame.
    struct PanickingSource(u64);

    impl FrameSource for PanickingSource {
        fn next_frame(&mut self) -> Option<Result<Frame, SourceError>> {
            self.0 += 1;
            assert!(self.0 < 3, "the capture device broke");
            Some(Ok(Frame { rgb: image::RgbImage::new(8, 8), origin: "p".into(), seq: self.0 }))
        }
        fn describe(&self) -> String {
            "panicking".into()
        }
    }

    fn fake_pipeline(segmenter: Option<crate::perceive::Segmenter>) -> Pipeline {
        use crate::engine::FakeEngine;
        use crate::engine::{EngineError, Tensor};
        let m = crate::models::Manifest::by_name("yolox_nano_416").unwrap();
        let engine = FakeEngine::new(m.model_spec(std::path::Path::new("x")), |_: &[Tensor]| Err(EngineError::Fake("no detections".into())));
        let d = crate::perceive::Detector::new(m, Box::new(engine), Default::default()).unwrap();
        let cfg = crate::PipelineConfig { discovery: None, text_reader: None, person_segmenter: None, segmenter: None, ..Default::default() };
        Pipeline::from_parts(vec![d], segmenter, cfg).unwrap()
    }

    #[test]
    fn a_panicking_capture_thread_ends_the_stream_with_an_error_naming_it() {
        let mut p = fake_pipeline(None);
        let mut out = Vec::new();
        let r = run(&mut p, Box::new(PanickingSource(0)), &StreamOptions::default(), Arc::new(AtomicBool::new(false)), &mut out);
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("capture thread died") && e.contains("the capture device broke"), "{e}");
    }

    #[test]
    fn a_panicking_stuff_worker_ends_the_stream_with_an_error_naming_it() {
        use crate::engine::FakeEngine;
        use crate::engine::Tensor;
        let m = crate::models::Manifest::by_name("deeplabv3_mnv2_ade20k32_uint8").unwrap();
        let engine = FakeEngine::new(m.model_spec(std::path::Path::new("x")), |_: &[Tensor]| -> Result<Vec<Tensor>, _> {
            panic!("segmenter blew up")
        });
        let seg = crate::perceive::Segmenter::new(m, Box::new(engine)).unwrap();
        let mut p = fake_pipeline(Some(seg));
        let frames = (0..4).map(|i| Ok(Frame { rgb: image::RgbImage::new(8, 8), origin: "r".into(), seq: i }));
        let source = crate::stream::sources::Recording::new("four frames", frames);
        let mut out = Vec::new();
        let r = run(&mut p, Box::new(source), &StreamOptions::default(), Arc::new(AtomicBool::new(false)), &mut out);
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("stuff segmentation thread died") && e.contains("segmenter blew up"), "{e}");
    }

    #[test]
    fn a_camera_that_never_returns_ends_the_stream_after_the_budget() {
        let cam = FlakyCamera { script: vec!["frame", "gone"], reopen_failures: u32::MAX, seq: 0 };
        let queue = Arc::new(FrameQueue::new(16));
        let opts = StreamOptions { max_reopen: 2, ..StreamOptions::default() };
        capture(Box::new(cam), Arc::clone(&queue), opts, Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
        assert!(queue.is_closed());
        assert_eq!(std::iter::from_fn(|| queue.pop()).count(), 1);
    }
}

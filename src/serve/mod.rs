//! The live view: `pancap stream … --serve ADDR` serves what the device sees and says.
//!
//! - `GET /` — one self-contained page (no CDN, no external fonts): the overlay picture, the caption whose
//!   grounded mentions highlight their boxes under the pointer, the tracked entities, fps and latency; it updates
//!   itself once a second from `/api/state` and `/api/stats`, and its picture from `/frame.jpg`.
//! - `GET /stream.mjpeg` — the overlay as `multipart/x-mixed-replace` JPEG parts at most `--serve-fps` a second.
//! - `GET /frame.jpg` — the newest overlay picture (the page refreshes its picture from it).
//! - `GET /api/state` — the latest record (the JSON Lines schema, with its `seq`).
//! - `GET /api/events` — Server-Sent Events: `record` (each record), `stats` (every second).
//! - `GET /api/stats` — frames, drops, fps and latency now (what the page shows beside the picture).
//! - `GET /metrics` — Prometheus text exposition; `GET /healthz` — 200 while frames flow, 503 otherwise.
//!
//! The frame loop never waits for a viewer: it updates counters under a short lock, and hands a copy of the frame
//! to the overlay encoder thread only while somebody watches, at most `--serve-fps` a second, and only when the
//! encoder is idle. Every client reads the newest picture or record from a `watch` channel and skips the rest;
//! records for Server-Sent Events go through a bounded broadcast channel whose slow readers skip. The server is one
//! tokio thread: a client limit, an 8 KiB request head limit, a header read time-out, a write time-out for stalled
//! readers, one request per connection, GET (and HEAD) only, nothing read from disk.

pub mod metrics;

use crate::caption::overlay;
use crate::scene::Entity;
use crate::stream::{FrameView, LiveStats, StreamRecord, StreamSink};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use image::RgbImage;
use metrics::{Metrics, ScrapeFigures, SpoolFigures};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{broadcast, watch, Semaphore};

/// The page, self-contained (its script and style inline).
const PAGE: &str = include_str!("page.html");
/// Longest a request head may be (hyper's smallest buffer).
const MAX_HEAD_BYTES: usize = 8192;
/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that takes nothing for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Records held for Server-Sent Events readers; a reader further behind skips to the newest.
const SSE_BACKLOG: usize = 64;
/// How long a `/frame.jpg` request keeps the overlay encoder drawing after it.
const PICTURE_INTEREST: Duration = Duration::from_secs(3);
/// The shortest token accepted.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--serve {addr}: cannot listen: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("--serve {addr}: not a loopback address, so a token is required: give --serve-token FILE (a file holding at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~), or serve on 127.0.0.1")]
    PublicWithoutToken { addr: SocketAddr },
    #[error("--serve-token {}: {reason}", path.display())]
    Token { path: PathBuf, reason: String },
    #[error("--serve {addr}: {reason}")]
    Start { addr: SocketAddr, reason: String },
    #[error("the live view's {0} thread died")]
    Died(&'static str),
}

/// A bearer token, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// The first line of `path`, which must be at least 16 URL-safe characters (so it travels in `?token=`
    /// unescaped).
    pub fn read(path: &Path) -> Result<Token, ServeError> {
        let err = |reason: String| ServeError::Token { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Token::parse(text.lines().next().unwrap_or("")).map_err(err)
    }

    pub fn parse(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!("the token has {} characters; at least {MIN_TOKEN_CHARS} are needed", t.chars().count()));
        }
        if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c))) {
            return Err(format!("the token holds {c:?}; only A-Z a-z 0-9 - . _ ~ are allowed"));
        }
        Ok(Token(t.to_string()))
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub token: Option<Token>,
    /// Most overlay pictures a second.
    pub fps: f64,
    /// Most open connections; more are answered 503 and closed.
    pub max_clients: usize,
    /// `/healthz` says 503 when no frame arrived for this long.
    pub health_timeout: Duration,
    /// Shown in the page's title (the device name).
    pub title: String,
}

impl ServeConfig {
    pub fn new(addr: SocketAddr) -> ServeConfig {
        ServeConfig {
            addr,
            token: None,
            fps: 5.0,
            max_clients: 32,
            health_timeout: Duration::from_secs(10),
            title: "pancap".into(),
        }
    }
}

/// Where `/metrics` reads the publisher's spool and link figures from.
pub trait SpoolGauges: Send + Sync {
    fn figures(&self) -> SpoolFigures;
}

/// A record as `/api/state` serves it (JSON) and as `/api/events` sends it (an SSE event), each made once.
#[derive(Clone)]
struct Latest {
    json: Bytes,
    event: Bytes,
}

/// What the frame loop and the server share.
struct Shared {
    started: Instant,
    metrics: Mutex<Metrics>,
    /// The newest overlay picture (JPEG).
    picture: watch::Sender<Option<Bytes>>,
    /// The newest record.
    state: watch::Sender<Option<Latest>>,
    /// Records for Server-Sent Events readers, as events.
    records: broadcast::Sender<Bytes>,
    /// The page, filled in once.
    page: Bytes,
    /// MJPEG streams open now.
    streams: AtomicU64,
    /// Until when (ms since start) a `/frame.jpg` reader wants pictures drawn.
    picture_wanted_until_ms: AtomicU64,
    clients: AtomicU64,
    /// The publisher's figures, once it started (the view starts before the models load).
    spool: std::sync::OnceLock<Arc<dyn SpoolGauges>>,
    cfg: ServeConfig,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn viewers(&self) -> u64 {
        let page = u64::from(self.picture_wanted_until_ms.load(Ordering::Relaxed) > self.now_ms());
        self.streams.load(Ordering::Relaxed) + page
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        // a poisoned lock only means a panic elsewhere mid-update; the counters are still the best figures
        self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What to draw on a frame: the pipeline's entities (masks included) under their track ids, or a record's
/// entities (boxes only; `pancap view`).
enum Drawing {
    Entities(Vec<Entity>),
    Outlines(Vec<overlay::Outline>),
}

/// One overlay to draw.
type OverlayJob = (RgbImage, Drawing);

/// The running live view: the server thread, the overlay encoder thread, and the sink the stream feeds.
pub struct LiveView {
    shared: Arc<Shared>,
    sink: ViewSink,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
    encoder: Option<std::thread::JoinHandle<()>>,
    pub local_addr: SocketAddr,
}

/// The frame loop's side: counts, and offers frames to the encoder while somebody watches.
pub struct ViewSink {
    shared: Arc<Shared>,
    jobs: Option<SyncSender<OverlayJob>>,
    /// When the last frame was handed to the encoder.
    last_overlay: Option<Instant>,
    min_interval: Duration,
}

impl LiveView {
    /// Listens on `cfg.addr` (a non-loopback address needs a token) and starts serving.
    pub fn start(cfg: ServeConfig) -> Result<LiveView, ServeError> {
        let addr = cfg.addr;
        if !addr.ip().is_loopback() && cfg.token.is_none() {
            return Err(ServeError::PublicWithoutToken { addr });
        }
        let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| ServeError::Bind { addr, source })?;
        let fps = if cfg.fps.is_finite() && cfg.fps > 0.0 { cfg.fps.min(60.0) } else { 5.0 };
        let cfg = ServeConfig { fps, ..cfg };
        let shared = Arc::new(Shared {
            started: Instant::now(),
            metrics: Mutex::new(Metrics::default()),
            picture: watch::channel(None).0,
            state: watch::channel(None).0,
            records: broadcast::channel(SSE_BACKLOG).0,
            page: Bytes::from(page_for(&cfg)),
            streams: AtomicU64::new(0),
            picture_wanted_until_ms: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            spool: std::sync::OnceLock::new(),
            cfg,
        });
        let (jobs, job_rx) = sync_channel::<OverlayJob>(1);
        let encoder = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("serve-overlay".into())
                .spawn(move || {
                    for (rgb, drawing) in job_rx {
                        let started = Instant::now();
                        let drawn = match drawing {
                            Drawing::Entities(entities) => overlay::render(&rgb, &entities),
                            Drawing::Outlines(outlines) => overlay::render_outlines(&rgb, &outlines),
                        };
                        let mut jpeg = Vec::with_capacity(64 * 1024);
                        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80);
                        match drawn.write_with_encoder(enc) {
                            Ok(()) => {
                                shared.picture.send_replace(Some(Bytes::from(jpeg)));
                                let mut m = shared.metrics();
                                m.overlays += 1;
                                m.overlay.observe(started.elapsed().as_secs_f64());
                            }
                            Err(e) => log::warn!("live view: encoding the overlay: {e}"),
                        }
                    }
                })
                .map_err(|e| ServeError::Start { addr, reason: format!("cannot start the overlay thread: {e}") })?
        };
        let (shutdown, on_shutdown) = tokio::sync::oneshot::channel();
        let server = {
            let shared = Arc::clone(&shared);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| ServeError::Start { addr, reason: format!("cannot start the runtime: {e}") })?;
            std::thread::Builder::new()
                .name("serve".into())
                .spawn(move || runtime.block_on(serve(listener, shared, on_shutdown)))
                .map_err(|e| ServeError::Start { addr, reason: format!("cannot start the server thread: {e}") })?
        };
        let min_interval = Duration::from_secs_f64(1.0 / fps);
        let sink = ViewSink { shared: Arc::clone(&shared), jobs: Some(jobs), last_overlay: None, min_interval };
        log::info!("live view on http://{local_addr}/ (metrics on /metrics)");
        Ok(LiveView { shared, sink, shutdown: Some(shutdown), server: Some(server), encoder: Some(encoder), local_addr })
    }

    pub fn sink(&mut self) -> &mut dyn StreamSink {
        &mut self.sink
    }

    /// The sink itself, for a player of recorded records (`pancap view`).
    pub fn view_sink(&mut self) -> &mut ViewSink {
        &mut self.sink
    }

    /// Adds the publisher's spool and link figures to `/metrics`.
    pub fn set_spool(&self, gauges: Arc<dyn SpoolGauges>) {
        if self.shared.spool.set(gauges).is_err() {
            log::warn!("live view: spool figures were already set; the first stay");
        }
    }

    /// Keeps serving up to `d` (after the stream or the recording ended), until `stop` is set (Ctrl-C).
    pub fn linger(&self, d: Duration, stop: &std::sync::atomic::AtomicBool) {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops serving: closes every connection and ends both threads; says whether one of them had died.
    pub fn finish(mut self) -> Result<(), ServeError> {
        self.sink.jobs = None;
        if let Some(s) = self.shutdown.take() {
            let _already_gone = s.send(());
        }
        let server = self.server.take().map(std::thread::JoinHandle::join);
        let encoder = self.encoder.take().map(std::thread::JoinHandle::join);
        if matches!(server, Some(Err(_))) {
            return Err(ServeError::Died("server"));
        }
        if matches!(encoder, Some(Err(_))) {
            return Err(ServeError::Died("overlay"));
        }
        Ok(())
    }
}

impl Drop for LiveView {
    /// A view dropped without [`LiveView::finish`] (an error on the way) still stops serving.
    fn drop(&mut self) {
        self.sink.jobs = None;
        if let Some(s) = self.shutdown.take() {
            let _already_gone = s.send(());
        }
    }
}

impl ViewSink {
    /// Hands the frame and what to draw on it to the encoder, while somebody watches, at most `--serve-fps` a
    /// second, when the encoder is idle; `drawing` is made only then.
    fn offer(&mut self, rgb: &RgbImage, drawing: impl FnOnce() -> Drawing) {
        if self.shared.viewers() == 0 || self.last_overlay.is_some_and(|t| t.elapsed() < self.min_interval) {
            return;
        }
        let Some(jobs) = &self.jobs else { return };
        match jobs.try_send((rgb.clone(), drawing())) {
            Ok(()) => self.last_overlay = Some(Instant::now()),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                log::error!("live view: the overlay thread has stopped; no more pictures");
                self.jobs = None;
            }
        }
    }

    /// A recorded frame (`pancap view`): counted, and shown under `record`'s entities (the record written at or
    /// before it).
    pub fn recorded_frame(&mut self, rgb: &RgbImage, record: &StreamRecord, totals: [u64; 4]) {
        let now_s = self.shared.started.elapsed().as_secs_f64();
        let tracked = record.entities.iter().filter(|e| e.confirmed).count() as u64;
        let timings = crate::timing::Timings::default();
        self.shared.metrics().frame(now_s, record.latency_ms, &timings, totals, tracked, record.entities.len() as u64);
        let (w, h) = (rgb.width() as f64, rgb.height() as f64);
        self.offer(rgb, || {
            Drawing::Outlines(
                record
                    .entities
                    .iter()
                    .map(|e| overlay::Outline {
                        id: e.id,
                        tag: e.tag.clone(),
                        stuff: e.kind == crate::scene::Kind::Stuff,
                        box_px: [e.bbox[0] * w, e.bbox[1] * h, e.bbox[2] * w, e.bbox[3] * h].map(|v| v as f32),
                        text: e.text.clone(),
                    })
                    .collect(),
            )
        });
    }
}

impl StreamSink for ViewSink {
    fn frame(&mut self, v: &FrameView<'_>) {
        let now_s = self.shared.started.elapsed().as_secs_f64();
        let tracked = v.entities.iter().filter(|e| e.confirmed).count() as u64;
        let totals = [v.frames, v.dropped, v.corrupt, v.records];
        self.shared.metrics().frame(now_s, v.latency_ms, &v.caption.timings_ms, totals, tracked, v.entities.len() as u64);
        // the overlay names entities by their track ids, as the records do
        self.offer(&v.frame.rgb, || {
            Drawing::Entities(v.caption.entities.iter().zip(v.ids).map(|(e, id)| Entity { id: *id, ..e.clone() }).collect())
        });
    }
    fn record(&mut self, record: &StreamRecord) {
        match serde_json::to_vec(record) {
            Ok(json) => {
                let event = sse_record(record.seq, &json);
                self.shared.state.send_replace(Some(Latest { json: Bytes::from(json), event: event.clone() }));
                // no reader is not an error: nobody is looking
                let _readers = self.shared.records.send(event);
            }
            Err(e) => log::warn!("live view: encoding record {}: {e}", record.seq),
        }
    }

    fn events(&mut self, _events: &[crate::stream::events::EntityEvent]) {}

    fn stats(&mut self, _stats: &LiveStats) {}
}

/// A connection whose writes time out: a client that takes nothing for [`WRITE_TIMEOUT`] is dropped, so a
/// stalled viewer holds neither a slot nor memory for long.
struct Timed<IO> {
    io: IO,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> Timed<IO> {
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let deadline = self.write_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client took nothing"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Timed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx).map(|r| r.map(|()| 0)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => self.pending(cx),
        }
    }
}

/// Counts an open connection while alive.
struct ClientGuard(Arc<Shared>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, mut shutdown: tokio::sync::oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("live view: cannot listen: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(shared.cfg.max_clients.max(1)));
    let app = router(Arc::clone(&shared));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of descriptors and the like: wait a little rather than spin
                    log::warn!("live view: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            shared.metrics().rejected += 1;
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.clients.fetch_add(1, Ordering::Relaxed);
        let guard = ClientGuard(Arc::clone(&shared));
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(Timed { io: stream, write_deadline: None });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(io, service);
            if let Err(e) = conn.await {
                log::debug!("live view: {peer}: {e}");
            }
            drop((permit, guard));
        });
    }
}

/// Answers a connection over the client limit with 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many clients now\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/stream.mjpeg", get(mjpeg))
        .route("/frame.jpg", get(frame_jpg))
        .route("/api/state", get(state))
        .route("/api/events", get(sse))
        .route("/api/stats", get(stats))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), auth))
        .with_state(shared)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// With a token configured, every path needs it: `Authorization: Bearer TOKEN` or `?token=TOKEN`. A refusal says
/// nothing else.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(token) = &shared.cfg.token else { return next.run(req).await };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token.matches(t.trim()));
    let query = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').filter_map(|kv| kv.strip_prefix("token=")).any(|t| token.matches(t)));
    if bearer || query {
        next.run(req).await
    } else {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page with the device's name, the picture rate and the overlay's palette filled in.
fn page_for(cfg: &ServeConfig) -> String {
    PAGE.replace("{{TITLE}}", &html_escape(&cfg.title))
        .replace("{{FPS}}", &format!("{}", cfg.fps))
        .replace("{{PALETTE}}", &palette_js())
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.page.clone();
    no_store(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'"),
            ],
            body,
        )
            .into_response(),
    )
}

/// The overlay's palette as a JavaScript array of CSS colours (the page colours rows as the overlay does).
fn palette_js() -> String {
    let colours: Vec<String> = (0..12).map(|i| {
        let [r, g, b] = overlay::colour_of(i);
        format!("\"rgb({r},{g},{b})\"")
    }).collect();
    format!("[{}]", colours.join(","))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let latest = shared.state.borrow().as_ref().map(|l| l.json.clone());
    match latest {
        Some(json) => no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        None => no_store(text(StatusCode::SERVICE_UNAVAILABLE, "no record yet\n")),
    }
}

/// Marks the picture wanted, and returns the newest (waiting up to 2 s for a first or a fresher one).
async fn frame_jpg(State(shared): State<Arc<Shared>>) -> Response {
    let until = shared.now_ms() + PICTURE_INTEREST.as_millis() as u64;
    shared.picture_wanted_until_ms.fetch_max(until, Ordering::Relaxed);
    let mut rx = shared.picture.subscribe();
    if rx.borrow_and_update().is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
    }
    let latest = rx.borrow().clone();
    match latest {
        Some(jpeg) => no_store(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()),
        None => no_store(text(StatusCode::SERVICE_UNAVAILABLE, "no picture yet\n")),
    }
}

/// Counts an MJPEG reader while its body lives.
struct StreamGuard(Arc<Shared>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

const BOUNDARY: &str = "pancapframe";

async fn mjpeg(State(shared): State<Arc<Shared>>) -> Response {
    shared.streams.fetch_add(1, Ordering::Relaxed);
    let guard = StreamGuard(Arc::clone(&shared));
    let mut rx = shared.picture.subscribe();
    // the first part is the newest picture there is; after it, each new one
    rx.mark_changed();
    let parts = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        // before the first picture is drawn there is none: wait on
        let jpeg = loop {
            rx.changed().await.ok()?;
            if let Some(jpeg) = rx.borrow_and_update().clone() {
                break jpeg;
            }
        };
        let head = format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len());
        let mut part = Vec::with_capacity(head.len() + jpeg.len() + 2);
        part.extend_from_slice(head.as_bytes());
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(b"\r\n");
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(part)), (rx, guard)))
    });
    let content_type = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    no_store(([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(parts)).into_response())
}

async fn sse(State(shared): State<Arc<Shared>>) -> Response {
    let records = shared.records.subscribe();
    let first = shared.state.borrow().as_ref().map(|l| l.event.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let events = futures_util::stream::unfold((records, tick, first, shared), |(mut records, mut tick, first, shared)| async move {
        if let Some(event) = first {
            return Some((Ok::<_, std::convert::Infallible>(event), (records, tick, None, shared)));
        }
        loop {
            tokio::select! {
                r = records.recv() => match r {
                    Ok(event) => return Some((Ok(event), (records, tick, None, shared))),
                    // a slow reader skips to the newest; records carry their seq, so the gap shows
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tick.tick() => {
                    let stats = shared.metrics().page_stats(shared.started.elapsed().as_secs_f64());
                    let json = serde_json::to_string(&stats).unwrap_or_default();
                    return Some((Ok(Bytes::from(format!("event: stats\ndata: {json}\n\n"))), (records, tick, None, shared)));
                }
            }
        }
    });
    no_store(([(header::CONTENT_TYPE, "text/event-stream")], axum::body::Body::from_stream(events)).into_response())
}

/// A record as a Server-Sent Event: `event: record`, its seq as the id, the JSON on one data line.
fn sse_record(seq: u64, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 48);
    out.extend_from_slice(format!("event: record\nid: {seq}\ndata: ").as_bytes());
    // serde_json writes no raw newline, so the record is one data line
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.metrics().page_stats(shared.started.elapsed().as_secs_f64());
    let json = serde_json::to_vec(&stats).unwrap_or_default();
    no_store(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    let spool = shared.spool.get().map(|g| g.figures());
    let scrape = ScrapeFigures {
        uptime_s: shared.started.elapsed().as_secs_f64(),
        rss_bytes: crate::stream::rss_kb().0 * 1024,
        viewers: shared.viewers(),
        clients: shared.clients.load(Ordering::Relaxed),
        spool,
    };
    let body = shared.metrics().exposition(&scrape);
    no_store(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let last = shared.metrics().last_frame_s();
    let now = shared.started.elapsed().as_secs_f64();
    let limit = shared.cfg.health_timeout.as_secs_f64();
    let (status, body) = match last {
        None => (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n".to_string()),
        Some(t) if now - t > limit => (StatusCode::SERVICE_UNAVAILABLE, format!("stale: no frame for {:.1} s (limit {limit} s)\n", now - t)),
        Some(t) => (StatusCode::OK, format!("ok: last frame {:.1} s ago\n", now - t)),
    };
    no_store((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_url_safe_and_compared_whole() {
        assert!(Token::parse("short").is_err());
        assert!(Token::parse("has spaces in the middle").is_err());
        assert!(Token::parse("abc/def+ghi=jklmnop").is_err());
        let t = Token::parse("  0123456789abcdef-._~\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.matches("0123456789abcdef-._~"));
        assert!(!t.matches("0123456789abcdef-._"));
        assert!(!t.matches("0123456789abcdef-._x"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(…)");
    }

    #[test]
    fn a_public_address_without_a_token_is_refused_before_listening() {
        let cfg = ServeConfig::new("0.0.0.0:0".parse().unwrap_or_else(|e| panic!("{e}")));
        match LiveView::start(cfg) {
            Err(ServeError::PublicWithoutToken { addr }) => assert_eq!(addr.port(), 0),
            other => panic!("expected a refusal, got {:?}", other.err()),
        }
    }

    #[test]
    fn the_page_is_self_contained_and_uses_the_overlay_palette() {
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"), "the page loads nothing from elsewhere");
        assert!(!PAGE.contains("<link") && !PAGE.contains("src=\"//"), "no external style sheets or scripts");
        let js = palette_js();
        let [r, g, b] = overlay::colour_of(0);
        assert!(js.starts_with(&format!("[\"rgb({r},{g},{b})\"")), "{js}");
        assert!(PAGE.contains("{{PALETTE}}") && PAGE.contains("{{TITLE}}"));
    }

    #[test]
    fn sse_records_are_one_data_line_with_their_seq_as_id() {
        let json = br#"{"kind":"update","seq":42,"caption":"a"}"#;
        let ev = sse_record(42, json);
        let text = String::from_utf8(ev.to_vec()).unwrap_or_default();
        assert_eq!(text, "event: record\nid: 42\ndata: {\"kind\":\"update\",\"seq\":42,\"caption\":\"a\"}\n\n");
    }
}

//! Publishing a stream to an MQTT broker (feature `mqtt`): records and entity events at QoS 1 through an on-disk
//! store-and-forward [`spool`], the latest caption and the device's availability retained, live stats at QoS 0.
//!
//! Topics under `PREFIX/DEVICE/`:
//! - `available` — `online` / `offline`, retained; `offline` is also the last will.
//! - `records` — every stream record (the JSON Lines record plus `device`), QoS 1.
//! - `events` — one message per entity change ([`crate::stream::events::EntityEvent`] plus `device`), QoS 1.
//! - `caption` — the latest caption and its grounded entities, retained, QoS 1.
//! - `stats` — every `stats_every`: fps, latency, drops, corrupt frames, spool depth, RSS; QoS 0.
//!
//! The frame loop hands records to a bounded channel ([`Publisher`] never blocks it; a full channel is counted).
//! One publisher thread appends them to the spool, syncs each group, and sends from the spool in order, at most
//! [`WINDOW`] unacknowledged; a record leaves the spool when the broker's PUBACK for it arrives. A lost link is
//! a logged, counted reconnect with backoff (250 ms doubling to 10 s); on reconnect the spool is sent from its
//! first unacknowledged record, so the backlog goes before live records. What was sent but not acknowledged
//! before a link was lost is sent again: delivery is at least once, and `(device, seq)` identifies a record
//! (`(device, seq, id, type)` an event) so consumers drop duplicates.

pub mod spool;

use crate::stream::events::EntityEvent;
use crate::stream::{LiveStats, StreamRecord, StreamSink};
use rumqttc::{Client, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde::Serialize;
use spool::{Pos, Spool, SpoolError, SpoolStats, SpoolTopic};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records sent and not yet acknowledged, at most.
pub const WINDOW: usize = 64;
/// Messages held between the frame loop and the publisher thread.
pub const CHANNEL: usize = 4096;
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A broker that has not acknowledged the oldest record for this long is treated as lost (reconnect).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("--publish {0}: {1}")]
    Url(String, String),
    #[error("broker {url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("broker {url} refused the connection: {reason}")]
    Refused { url: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the publisher thread died: {0}")]
    Died(String),
}

/// `mqtt://[user@]host[:port]` (TCP, port 1883) or `mqtts://[user@]host[:port]` (TLS, port 8883). A password in
/// the URL is refused (it would show in process listings and shell history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, PublishError> {
        let bad = |why: &str| PublishError::Url(redact(url), why.to_string());
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("expected mqtt://[user@]host[:port] or mqtts://[user@]host[:port]"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(bad("no path or query is taken: topics come from --topic-prefix and --device-name"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => {
                if u.contains(':') {
                    return Err(bad("a password in the URL is refused: put it in --password-file or PANCAP_MQTT_PASSWORD"));
                }
                if u.is_empty() {
                    return Err(bad("empty user name before @"));
                }
                (Some(u.to_string()), h)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(|| bad("unclosed [ in an IPv6 address"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            None if tls => 8883,
            None => 1883,
        };
        Ok(BrokerUrl { tls, user, host, port })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        if self.host.contains(':') {
            write!(f, "{scheme}://{user}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
        }
    }
}

/// A URL as it may be shown: anything between `//` and `@` that has a `:` (a password) is masked.
fn redact(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a && url.get(a + 2..b).is_some_and(|u| u.contains(':')) => {
            let user = url.get(a + 2..b).and_then(|u| u.split(':').next()).unwrap_or("");
            format!("{}{user}:***{}", url.get(..a + 2).unwrap_or(""), url.get(b..).unwrap_or(""))
        }
        _ => url.to_string(),
    }
}

/// A secret that is never printed (Debug shows `***`).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// TLS files: the CA that signed the broker's certificate (PEM; without it, the system's roots), and an optional
/// client certificate and key (PEM).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub url: BrokerUrl,
    pub password: Option<Secret>,
    pub tls: TlsFiles,
    pub topic_prefix: String,
    pub device: String,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    /// At the end of a stream, how long to keep sending what is left before leaving it in the spool.
    pub drain_timeout: Duration,
    /// A broker that cannot be reached at start is retried in the background (records spooled meanwhile) instead
    /// of being an error; refused credentials and bad URLs stay errors. For devices that boot before their link.
    pub start_offline: bool,
    /// The stream's stats interval: when no stats came from the frame loop for twice this long (a stalled camera),
    /// the publisher sends the last ones itself, marked `stalled`, at this interval.
    pub stats_every: Duration,
}

impl PublishConfig {
    pub fn new(url: BrokerUrl, device: String, spool_dir: PathBuf) -> PublishConfig {
        PublishConfig {
            url,
            password: None,
            tls: TlsFiles::default(),
            topic_prefix: "pancap".into(),
            device,
            spool_dir,
            spool_max_bytes: 64 << 20,
            keep_alive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            start_offline: false,
            stats_every: Duration::from_secs(10),
        }
    }
}

/// A topic level must not hold MQTT wildcards or separators.
pub fn check_topic_level(what: &str, s: &str) -> Result<(), PublishError> {
    if s.is_empty() || s.contains(['+', '#', '\0']) {
        return Err(PublishError::Url(format!("{what} {s:?}"), "must be non-empty and hold no +, # or NUL".into()));
    }
    Ok(())
}

pub use crate::stream::host_name;

struct Topics {
    available: String,
    records: String,
    events: String,
    caption: String,
    stats: String,
}

impl Topics {
    fn new(prefix: &str, device: &str) -> Topics {
        let t = |leaf: &str| format!("{prefix}/{device}/{leaf}");
        Topics { available: t("available"), records: t("records"), events: t("events"), caption: t("caption"), stats: t("stats") }
    }
    fn of(&self, s: SpoolTopic) -> &str {
        match s {
            SpoolTopic::Records => &self.records,
            SpoolTopic::Events => &self.events,
        }
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, PublishError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |what: &str, p: &Path, e: &dyn std::fmt::Display| PublishError::Tls(format!("{what} {}: {e}", p.display()));
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls("CA file", ca, &e))? {
                let cert = cert.map_err(|e| tls("CA file", ca, &e))?;
                roots.add(cert).map_err(|e| tls("CA file", ca, &e))?;
            }
            if roots.is_empty() {
                return Err(PublishError::Tls(format!("CA file {}: no certificate in it", ca.display())));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // a system store may hold certificates rustls cannot use; the others still count
                let _ignored = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(PublishError::Tls("no --tls-ca given and no system CA certificates found".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PublishError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (Some(c), Some(k)) => {
            let certs = CertificateDer::pem_file_iter(c)
                .map_err(|e| tls("client certificate", c, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls("client certificate", c, &e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| tls("client key", k, &e))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| PublishError::Tls(format!("client certificate {}: {e}", c.display())))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(PublishError::Tls("a client certificate needs both --tls-cert and --tls-key".into())),
    }
}

fn mqtt_options(cfg: &PublishConfig, topics: &Topics) -> Result<MqttOptions, PublishError> {
    // one client id per device: a second process with the same name takes the session over
    let mut o = MqttOptions::new(format!("pancap-{}", cfg.device), cfg.url.host.clone(), cfg.url.port);
    o.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)));
    o.set_clean_session(true);
    o.set_inflight(WINDOW as u16 + 8);
    o.set_max_packet_size(spool::MAX_RECORD as usize + 1024, spool::MAX_RECORD as usize + 1024);
    o.set_last_will(LastWill::new(&topics.available, "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &cfg.url.user {
        o.set_credentials(user.clone(), cfg.password.as_ref().map(|p| p.0.clone()).unwrap_or_default());
    }
    if cfg.url.tls {
        o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(&cfg.tls)?))));
    }
    Ok(o)
}

/// What the publisher did, for the stream's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PublishSummary {
    pub broker: String,
    pub device: String,
    /// Records and events acknowledged by the broker.
    pub acknowledged: u64,
    /// Sent again after a lost link (the duplicates consumers may see, at most).
    pub resent: u64,
    pub reconnects: u64,
    /// Messages the frame loop could not hand over because the publisher's channel was full.
    pub channel_full: u64,
    /// Caption and stats messages not sent because the link was down (they are live state, not spooled).
    pub live_skipped: u64,
    /// Records or events larger than the spool takes (half its bound, or 4 MB), logged and left out.
    #[serde(default)]
    pub too_large: u64,
    pub spool: SpoolStats,
}

/// The publisher's state as a metrics endpoint reads it, updated by the publisher thread after every step.
#[derive(Debug, Default)]
pub struct PublishGauges {
    pub spool_depth: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub acknowledged: AtomicU64,
    pub reconnects: AtomicU64,
    pub channel_full: AtomicU64,
    pub connected: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "serve")]
impl crate::serve::SpoolGauges for PublishGauges {
    fn figures(&self) -> crate::serve::metrics::SpoolFigures {
        crate::serve::metrics::SpoolFigures {
            depth: self.spool_depth.load(Ordering::Relaxed),
            bytes: self.spool_bytes.load(Ordering::Relaxed),
            dropped: self.spool_dropped.load(Ordering::Relaxed),
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            channel_full: self.channel_full.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

enum Net {
    ConnAck,
    Outgoing(u16),
    PubAck(u16),
    Disconnected,
    Error { reason: String, refused: bool },
}

enum Msg {
    Record(Box<StreamRecord>),
    Events(Vec<EntityEvent>),
    Stats(LiveStats),
    Net { gen: u64, net: Net },
    Finish,
}

#[derive(Serialize)]
struct WithDevice<'a, T: Serialize> {
    device: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

#[derive(Serialize)]
struct CaptionMessage<'a> {
    device: &'a str,
    seq: u64,
    capture_unix_ms: u64,
    caption: &'a str,
    entities: &'a [crate::stream::TrackedEntity],
    relations: &'a [crate::stream::TrackedRelation],
}

#[derive(Serialize)]
struct StatsMessage<'a> {
    device: &'a str,
    #[serde(flatten)]
    stream: &'a LiveStats,
    spool_depth: u64,
    spool_bytes: u64,
    spool_dropped: u64,
    channel_full: u64,
    reconnects: u64,
    connected: bool,
    /// No frame reached the stream for two stats intervals or more: these are the last figures, sent again.
    stalled: bool,
}

/// One connection attempt and its event thread (rumqttc's blocking iterator, forwarded to the publisher).
fn connect(opts: &MqttOptions, gen: u64, tx: &SyncSender<Msg>) -> Client {
    let (client, mut connection) = Client::new(opts.clone(), WINDOW * 4);
    let events = tx.clone();
    let spawned = std::thread::Builder::new().name(format!("mqtt-{gen}")).spawn(move || {
        let tx = events;
        for event in connection.iter() {
            let net = match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Net::ConnAck,
                Ok(Event::Incoming(Packet::PubAck(a))) => Net::PubAck(a.pkid),
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Net::Outgoing(pkid),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => Net::Disconnected,
                Ok(_) => continue,
                Err(e) => {
                    let refused = matches!(e, rumqttc::ConnectionError::ConnectionRefused(_));
                    let _gone = tx.send(Msg::Net { gen, net: Net::Error { reason: e.to_string(), refused } });
                    return;
                }
            };
            let disconnected = matches!(net, Net::Disconnected);
            if tx.send(Msg::Net { gen, net }).is_err() || disconnected {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        let _gone = tx.send(Msg::Net { gen, net: Net::Error { reason: format!("cannot start the connection thread: {e}"), refused: false } });
    }
    client
}

/// The frame loop's handle: hands records over without blocking; [`Publisher::finish`] ends publishing.
pub struct Publisher {
    tx: SyncSender<Msg>,
    channel_full: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<PublishSummary, PublishError>>>,
    seq_base: u64,
    gauges: Arc<PublishGauges>,
}

impl Publisher {
    /// Opens the spool and connects; an unreachable broker or refused credentials are an error here (the first
    /// connection must succeed; later losses are reconnected).
    pub fn start(cfg: PublishConfig) -> Result<Publisher, PublishError> {
        check_topic_level("--device-name", &cfg.device)?;
        for level in cfg.topic_prefix.split('/') {
            check_topic_level("--topic-prefix", level)?;
        }
        let topics = Topics::new(&cfg.topic_prefix, &cfg.device);
        let opts = mqtt_options(&cfg, &topics)?;
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        let stats = spool.stats();
        if stats.recovered > 0 || stats.torn > 0 {
            log::info!(
                "spool {}: {} record(s) left by an earlier run will be sent first{}",
                cfg.spool_dir.display(),
                stats.recovered,
                if stats.torn > 0 { format!(" ({} torn record cut off)", stats.torn) } else { String::new() }
            );
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
        let client = connect(&opts, 1, &tx);
        let url = cfg.url.to_string();
        let deadline = Instant::now() + cfg.connect_timeout + Duration::from_secs(1);
        let first = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Net { net: Net::ConnAck, .. }) => break Ok(()),
                Ok(Msg::Net { net: Net::Error { reason, refused: true }, .. }) => {
                    return Err(PublishError::Refused { url, reason: refusal(&reason) })
                }
                Ok(Msg::Net { net: Net::Error { reason, .. }, .. }) => break Err(reason),
                Ok(_) => {}
                Err(_) => break Err(format!("no answer within {:?}", cfg.connect_timeout)),
            }
        };
        let link = match first {
            Ok(()) => {
                log::info!("publishing to {url} as {}/{}", cfg.topic_prefix, cfg.device);
                Link::Up(client)
            }
            Err(reason) if cfg.start_offline => {
                log::warn!("broker {url}: cannot connect ({reason}); spooling and retrying in the background");
                Link::Down { retry_at: Instant::now() + BACKOFF_FIRST }
            }
            Err(reason) => return Err(PublishError::Connect { url, reason }),
        };
        let seq_base = spool.next_seq();
        let channel_full = Arc::new(AtomicU64::new(0));
        let gauges = Arc::new(PublishGauges::default());
        let worker = Worker {
            summary: PublishSummary { broker: url, device: cfg.device.clone(), ..PublishSummary::default() },
            cfg,
            topics,
            opts,
            spool,
            tx: tx.clone(),
            gen: 1,
            link,
            backoff: BACKOFF_FIRST,
            requests: VecDeque::new(),
            inflight: VecDeque::new(),
            latest_caption: None,
            last_stats: None,
            channel_full: Arc::clone(&channel_full),
            finishing: None,
            gauges: Arc::clone(&gauges),
        };
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| PublishError::Died(format!("cannot start: {e}")))?;
        Ok(Publisher { tx, channel_full, thread: Some(thread), seq_base, gauges })
    }

    /// The spool and link state, kept current by the publisher thread (for `/metrics`).
    pub fn gauges(&self) -> Arc<PublishGauges> {
        Arc::clone(&self.gauges)
    }

    /// One past the highest seq an earlier run wrote to the spool: a new stream's seq starts here.
    pub fn seq_base(&self) -> u64 {
        self.seq_base
    }

    fn send(&self, msg: Msg) {
        let dead = match self.tx.try_send(msg) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => true,
        };
        let n = self.channel_full.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            if dead {
                // its error is returned by finish(); until then every record is counted as not handed over
                log::error!("the publisher thread has stopped: {n} message(s) not handed over");
            } else {
                log::warn!("publisher behind: {n} message(s) could not be handed over (channel of {CHANNEL} full)");
            }
        }
    }

    /// Sends what is left (up to the drain timeout), says `offline`, disconnects, and closes the spool.
    pub fn finish(mut self) -> Result<PublishSummary, PublishError> {
        let _gone = self.tx.send(Msg::Finish);
        let thread = self.thread.take().ok_or_else(|| PublishError::Died("already finished".into()))?;
        match thread.join() {
            Ok(r) => r,
            Err(p) => Err(PublishError::Died(crate::stream::panic_message(p.as_ref()))),
        }
    }
}

fn refusal(reason: &str) -> String {
    if reason.contains("BadUserNamePassword") || reason.contains("NotAuthorized") {
        format!("{reason} (check the user name in the URL and the password in --password-file or PANCAP_MQTT_PASSWORD)")
    } else {
        reason.to_string()
    }
}

impl StreamSink for Publisher {
    fn record(&mut self, record: &StreamRecord) {
        self.send(Msg::Record(Box::new(record.clone())));
    }
    fn events(&mut self, events: &[EntityEvent]) {
        self.send(Msg::Events(events.to_vec()));
    }
    fn stats(&mut self, stats: &LiveStats) {
        self.send(Msg::Stats(stats.clone()));
    }
}

enum Link {
    Up(Client),
    /// Connected as far as the socket goes; waiting for the broker's CONNACK.
    Connecting(Client),
    Down { retry_at: Instant },
}

struct InFlight {
    pkid: Option<u16>,
    end: Pos,
    sent_at: Instant,
    acked: bool,
}

struct Worker {
    cfg: PublishConfig,
    topics: Topics,
    opts: MqttOptions,
    spool: Spool,
    tx: SyncSender<Msg>,
    gen: u64,
    link: Link,
    backoff: Duration,
    /// Publish requests in the order they were given to the client: Some(end) for spooled records.
    requests: VecDeque<Option<Pos>>,
    inflight: VecDeque<InFlight>,
    latest_caption: Option<Vec<u8>>,
    /// The frame loop's last stats and when they (or their stalled repeat) were sent.
    last_stats: Option<(Instant, LiveStats)>,
    channel_full: Arc<AtomicU64>,
    finishing: Option<Instant>,
    summary: PublishSummary,
    gauges: Arc<PublishGauges>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) -> Result<PublishSummary, PublishError> {
        if let Link::Up(_) = self.link {
            self.on_connected();
        } else {
            // the first attempt's thread may still report; its generation is over
            self.gen += 1;
        }
        loop {
            let msg = rx.recv_timeout(Duration::from_millis(100));
            let mut next = match msg {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Msg::Finish),
            };
            // a group: everything waiting, appended, then one sync before any of it is sent
            while let Some(m) = next.take() {
                self.handle(m)?;
                next = rx.try_recv().ok();
            }
            self.spool.sync()?;
            self.check_link();
            self.stats_when_stalled();
            self.send_window()?;
            self.update_gauges();
            if let Some(deadline) = self.finishing {
                let drained = !self.spool.unsent() && self.inflight.is_empty();
                let down = !matches!(self.link, Link::Up(_));
                if drained || Instant::now() >= deadline || (down && Instant::now() + BACKOFF_FIRST >= deadline) {
                    return self.close(&rx);
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) -> Result<(), PublishError> {
        match msg {
            Msg::Record(r) => {
                let payload = serde_json::to_vec(&WithDevice { device: &self.cfg.device, inner: r.as_ref() }).unwrap_or_default();
                self.spool_append(SpoolTopic::Records, r.seq, &payload)?;
                let caption = CaptionMessage {
                    device: &self.cfg.device,
                    seq: r.seq,
                    capture_unix_ms: r.capture_unix_ms,
                    caption: &r.caption,
                    entities: &r.entities,
                    relations: &r.relations,
                };
                self.latest_caption = serde_json::to_vec(&caption).ok();
                if let Link::Up(_) = self.link {
                    self.publish_caption();
                } else {
                    self.summary.live_skipped += 1;
                }
            }
            Msg::Events(events) => {
                for e in &events {
                    let payload = serde_json::to_vec(&WithDevice { device: &self.cfg.device, inner: e }).unwrap_or_default();
                    self.spool_append(SpoolTopic::Events, e.seq, &payload)?;
                }
            }
            Msg::Stats(s) => {
                self.publish_stats(&s, false);
                self.last_stats = Some((Instant::now(), s));
            }
            Msg::Net { gen, net } if gen == self.gen => self.on_net(net),
            Msg::Net { .. } => {}
            Msg::Finish => {
                if self.finishing.is_none() {
                    self.finishing = Some(Instant::now() + self.cfg.drain_timeout);
                }
            }
        }
        Ok(())
    }

    fn update_gauges(&self) {
        let st = self.spool.stats();
        let g = &self.gauges;
        g.spool_depth.store(st.depth, Ordering::Relaxed);
        g.spool_bytes.store(st.bytes, Ordering::Relaxed);
        g.spool_dropped.store(st.dropped, Ordering::Relaxed);
        g.acknowledged.store(self.summary.acknowledged, Ordering::Relaxed);
        g.reconnects.store(self.summary.reconnects, Ordering::Relaxed);
        g.channel_full.store(self.channel_full.load(Ordering::Relaxed), Ordering::Relaxed);
        g.connected.store(matches!(self.link, Link::Up(_)), Ordering::Relaxed);
    }

    fn publish_stats(&mut self, s: &LiveStats, stalled: bool) {
        let st = self.spool.stats();
        let m = StatsMessage {
            device: &self.cfg.device,
            stream: s,
            spool_depth: st.depth,
            spool_bytes: st.bytes,
            spool_dropped: st.dropped,
            channel_full: self.channel_full.load(Ordering::Relaxed),
            reconnects: self.summary.reconnects,
            connected: matches!(self.link, Link::Up(_)),
            stalled,
        };
        let payload = serde_json::to_vec(&m).unwrap_or_default();
        if let Link::Up(_) = self.link {
            let topic = self.topics.stats.clone();
            self.publish_live(&topic, QoS::AtMostOnce, false, payload);
        } else {
            self.summary.live_skipped += 1;
        }
    }

    /// No stats from the frame loop for two intervals: the last ones again, with no frame rate, marked stalled.
    fn stats_when_stalled(&mut self) {
        let every = self.cfg.stats_every.max(Duration::from_secs(1));
        let Some((at, last)) = &self.last_stats else { return };
        if at.elapsed() < every * 2 || self.finishing.is_some() {
            return;
        }
        let stalled = LiveStats { fps: 0.0, p50_ms: 0.0, p95_ms: 0.0, ..last.clone() };
        self.publish_stats(&stalled, true);
        // the next repeat one interval later
        let now = Instant::now();
        self.last_stats = Some((now.checked_sub(every).unwrap_or(now), stalled));
    }

    /// Appends to the spool; a message too large for it is logged and counted, any other spool failure (a full
    /// or failing disk) ends publishing with that error.
    fn spool_append(&mut self, topic: SpoolTopic, seq: u64, payload: &[u8]) -> Result<(), PublishError> {
        match self.spool.append(topic, seq, payload) {
            Err(SpoolError::TooLarge(n)) => {
                self.summary.too_large += 1;
                log::error!("{} seq {seq}: {n} bytes is more than the spool takes; left out", topic.name());
                Ok(())
            }
            r => Ok(r?),
        }
    }

    /// A caption, stats or availability message: not spooled (live state).
    fn publish_live(&mut self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        if let Link::Up(client) = &self.link {
            match client.try_publish(topic, qos, retain, payload) {
                Ok(()) => self.requests.push_back(None),
                Err(e) => {
                    log::debug!("{topic}: not sent ({e})");
                    self.summary.live_skipped += 1;
                }
            }
        }
    }

    fn on_connected(&mut self) {
        self.backoff = BACKOFF_FIRST;
        self.requests.clear();
        self.inflight.clear();
        self.spool.rewind();
        let available = self.topics.available.clone();
        self.publish_live(&available, QoS::AtLeastOnce, true, b"online".to_vec());
        self.publish_caption();
    }

    /// The latest caption, retained (on every record, and again after a reconnect).
    fn publish_caption(&mut self) {
        if let Some(c) = self.latest_caption.clone() {
            let topic = self.topics.caption.clone();
            self.publish_live(&topic, QoS::AtLeastOnce, true, c);
        }
    }

    fn on_net(&mut self, net: Net) {
        match net {
            Net::ConnAck => {
                if let Link::Connecting(_) = &self.link {
                    if let Link::Connecting(c) = std::mem::replace(&mut self.link, Link::Down { retry_at: Instant::now() }) {
                        self.link = Link::Up(c);
                    }
                    self.summary.reconnects += 1;
                    log::warn!("broker {}: reconnected; sending {} spooled message(s) first", self.summary.broker, self.spool.stats().depth);
                    self.on_connected();
                }
            }
            Net::Outgoing(pkid) => {
                if let Some(Some(end)) = self.requests.pop_front() {
                    if let Some(f) = self.inflight.iter_mut().find(|f| f.pkid.is_none() && f.end == end) {
                        f.pkid = Some(pkid);
                    }
                }
            }
            Net::PubAck(pkid) => {
                if let Some(f) = self.inflight.iter_mut().find(|f| f.pkid == Some(pkid) && !f.acked) {
                    f.acked = true;
                }
                let mut end = None;
                while self.inflight.front().is_some_and(|f| f.acked) {
                    end = self.inflight.pop_front().map(|f| f.end);
                    self.summary.acknowledged += 1;
                }
                if let Some(end) = end {
                    if let Err(e) = self.spool.ack(end) {
                        log::error!("{e}");
                    }
                }
            }
            Net::Disconnected => {}
            Net::Error { reason, refused } => {
                let what = if refused { refusal(&reason) } else { reason };
                log::warn!("broker {}: link lost ({what}); retrying in {:?}", self.summary.broker, self.backoff);
                self.lose_link();
            }
        }
    }

    fn lose_link(&mut self) {
        self.gen += 1;
        self.link = Link::Down { retry_at: Instant::now() + self.backoff };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let unacked = self.inflight.len() as u64;
        self.summary.resent += unacked;
        self.requests.clear();
        self.inflight.clear();
        self.spool.rewind();
    }

    fn check_link(&mut self) {
        match &self.link {
            Link::Down { retry_at } if Instant::now() >= *retry_at => {
                self.gen += 1;
                self.link = Link::Connecting(connect(&self.opts, self.gen, &self.tx));
            }
            Link::Up(_) if self.inflight.front().is_some_and(|f| f.sent_at.elapsed() > ACK_TIMEOUT) => {
                log::warn!("broker {}: no acknowledgement for {ACK_TIMEOUT:?}; reconnecting", self.summary.broker);
                self.lose_link();
            }
            _ => {}
        }
    }

    fn send_window(&mut self) -> Result<(), PublishError> {
        while self.inflight.len() < WINDOW {
            let Link::Up(client) = &self.link else { return Ok(()) };
            let Some(rec) = self.spool.next_unsent()? else { return Ok(()) };
            let topic = self.topics.of(rec.topic);
            if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, rec.payload) {
                log::warn!("broker {}: request queue refused a record ({e}); reconnecting", self.summary.broker);
                self.lose_link();
                return Ok(());
            }
            self.requests.push_back(Some(rec.end));
            self.inflight.push_back(InFlight { pkid: None, end: rec.end, sent_at: Instant::now(), acked: false });
        }
        Ok(())
    }

    fn close(mut self, rx: &Receiver<Msg>) -> Result<PublishSummary, PublishError> {
        if let Link::Up(client) = &self.link {
            // a clean goodbye: `offline` (retained) before the disconnect, in order
            let _queued = client.try_publish(&self.topics.available, QoS::AtLeastOnce, true, b"offline".to_vec());
            let _queued = client.try_disconnect();
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(Msg::Net { gen, net: Net::Disconnected | Net::Error { .. } }) if gen == self.gen => break,
                    Ok(Msg::Net { gen, net }) if gen == self.gen => self.on_net(net),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        self.spool.close()?;
        self.summary.channel_full = self.channel_full.load(Ordering::Relaxed);
        self.summary.spool = self.spool.stats();
        if self.summary.spool.depth > 0 {
            log::warn!(
                "{} record(s) left in the spool {} for the next run",
                self.summary.spool.depth,
                self.cfg.spool_dir.display()
            );
        }
        Ok(self.summary)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_defaults_and_refuse_passwords_without_echoing_them() {
        let u = BrokerUrl::parse("mqtt://gateway.local").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.user.clone()), (false, "gateway.local", 1883, None));
        let u = BrokerUrl::parse("mqtts://cam7@broker:9001").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.user.as_deref()), (true, "broker", 9001, Some("cam7")));
        assert_eq!(BrokerUrl::parse("mqtts://h").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().host, "::1");
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().to_string(), "mqtt://[::1]:1884");
        let e = BrokerUrl::parse("mqtt://cam7:hunter2@broker:1883").unwrap_err().to_string();
        assert!(e.contains("password in the URL is refused") && !e.contains("hunter2"), "{e}");
        for bad in ["http://broker", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://h:x", "mqtt://h/topic"] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "***");
    }

    #[test]
    fn topic_levels_refuse_wildcards() {
        assert!(check_topic_level("--device-name", "cam-7").is_ok());
        assert!(check_topic_level("--device-name", "cam+7").is_err());
        assert!(check_topic_level("--device-name", "").is_err());
    }

    #[test]
    fn an_unreachable_broker_at_start_is_a_clear_error() {
        // a port nothing listens on: bind one, learn it, let it go
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = PublishConfig::new(BrokerUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(), "t".into(), dir.path().into());
        cfg.connect_timeout = Duration::from_secs(3);
        let e = Publisher::start(cfg.clone()).err().unwrap().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("cannot connect"), "{e}");
        // with start_offline the records go to the spool and stay there for the next run
        cfg.start_offline = true;
        cfg.drain_timeout = Duration::from_millis(300);
        let mut p = Publisher::start(cfg.clone()).unwrap();
        for seq in 0..5 {
            let r = StreamRecord {
                kind: crate::stream::RecordKind::Frame,
                seq,
                capture_unix_ms: 0,
                latency_ms: 0.0,
                entities: vec![],
                relations: vec![],
                caption: "nothing".into(),
                appeared: vec![],
                disappeared: vec![],
                stuff_from_seq: None,
                rss_kb: 0,
                motion_events: vec![],
            };
            p.record(&r);
        }
        let s = p.finish().unwrap();
        assert_eq!((s.spool.depth, s.acknowledged), (5, 0), "{s:?}");
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes).unwrap();
        assert_eq!((spool.stats().recovered, spool.next_seq()), (5, 5));
    }
}

//! The stream's counters and histograms, and their Prometheus text exposition (format 0.0.4): names and units
//! per Prometheus conventions (`_total` counters, `_seconds` and `_bytes` units, cumulative `le` buckets).

use crate::timing::{ModelName, Stage, Timings};
use std::fmt::Write;

/// Upper bounds (seconds) of the latency buckets: a camera frame's 33 ms up to a stalled stage's 10 s.
pub const BUCKETS_S: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

/// A cumulative histogram with fixed buckets: observing allocates nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound of [`BUCKETS_S`] (not yet cumulative).
    counts: [u64; BUCKETS_S.len()],
    /// Observations above the last bound.
    over: u64,
    sum_s: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        match BUCKETS_S.iter().position(|b| seconds <= *b) {
            Some(i) => {
                if let Some(c) = self.counts.get_mut(i) {
                    *c += 1;
                }
            }
            None => self.over += 1,
        }
        self.sum_s += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    /// `NAME_bucket{LABELS,le="…"}` cumulative lines, `+Inf`, `_sum` and `_count`.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, c) in BUCKETS_S.iter().zip(self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count());
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// How many of the most recent frames the frame rate and the page's latency figure are taken over.
const RECENT: usize = 32;

/// Everything `/metrics` and the page's stats show, updated once a frame by the stream's sink.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub frames: u64,
    pub dropped: u64,
    pub corrupt: u64,
    pub records: u64,
    /// Confirmed tracked entities and all entities on the last frame.
    pub tracked: u64,
    pub entities: u64,
    pub latency: Histogram,
    /// Per stage and model (in the order first seen; a suite has a few dozen at most).
    pub stages: Vec<(Stage, Option<ModelName>, Histogram)>,
    /// Overlay pictures drawn and encoded, and the time each took (on the encoder thread).
    pub overlays: u64,
    pub overlay: Histogram,
    /// Connections turned away because the client limit was reached.
    pub rejected: u64,
    /// Seconds since the start at the most recent frames (a ring), and their latencies.
    recent_at: [f64; RECENT],
    recent_latency_ms: [f64; RECENT],
    recent_len: usize,
    recent_next: usize,
}

/// The figures the page shows beside the picture.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PageStats {
    pub frames: u64,
    pub dropped: u64,
    pub corrupt: u64,
    pub records: u64,
    pub tracked: u64,
    /// Over the most recent frames (up to 32).
    pub fps: f64,
    pub latency_p50_ms: f64,
    /// Seconds since the last frame (None before the first).
    pub last_frame_age_s: Option<f64>,
}

/// Which of the publisher's gauges to expose, read when scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpoolFigures {
    pub depth: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub acknowledged: u64,
    pub reconnects: u64,
    pub channel_full: u64,
    pub connected: bool,
}

/// What `/metrics` adds to [`Metrics`] when scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScrapeFigures {
    pub uptime_s: f64,
    pub rss_bytes: u64,
    pub viewers: u64,
    pub clients: u64,
    pub spool: Option<SpoolFigures>,
}

impl Metrics {
    /// Counts one frame: totals, end-to-end latency, each stage's time, the tracked entities.
    pub fn frame(&mut self, at_s: f64, latency_ms: f64, timings: &Timings, totals: [u64; 4], tracked: u64, entities: u64) {
        [self.frames, self.dropped, self.corrupt, self.records] = totals;
        (self.tracked, self.entities) = (tracked, entities);
        self.latency.observe(latency_ms / 1e3);
        for t in &timings.0 {
            let found = self.stages.iter_mut().find(|(s, m, _)| *s == t.stage && m.as_deref() == t.model.as_deref());
            match found {
                Some((_, _, h)) => h.observe(t.ms / 1e3),
                None => {
                    let mut h = Histogram::default();
                    h.observe(t.ms / 1e3);
                    self.stages.push((t.stage, t.model.clone(), h));
                }
            }
        }
        if let Some(slot) = self.recent_at.get_mut(self.recent_next) {
            *slot = at_s;
        }
        if let Some(slot) = self.recent_latency_ms.get_mut(self.recent_next) {
            *slot = latency_ms;
        }
        self.recent_next = (self.recent_next + 1) % RECENT;
        self.recent_len = (self.recent_len + 1).min(RECENT);
    }

    /// Frames per second over the most recent frames (0 with fewer than two).
    pub fn fps(&self) -> f64 {
        if self.recent_len < 2 {
            return 0.0;
        }
        let newest = (self.recent_next + RECENT - 1) % RECENT;
        let oldest = if self.recent_len < RECENT { 0 } else { self.recent_next };
        let (a, b) = (self.recent_at.get(oldest).copied().unwrap_or(0.0), self.recent_at.get(newest).copied().unwrap_or(0.0));
        if b > a {
            (self.recent_len - 1) as f64 / (b - a)
        } else {
            0.0
        }
    }

    pub fn last_frame_s(&self) -> Option<f64> {
        (self.recent_len > 0).then(|| self.recent_at.get((self.recent_next + RECENT - 1) % RECENT).copied().unwrap_or(0.0))
    }

    pub fn page_stats(&self, now_s: f64) -> PageStats {
        let mut recent: [f64; RECENT] = self.recent_latency_ms;
        let recent = recent.get_mut(..self.recent_len).unwrap_or(&mut []);
        recent.sort_by(f64::total_cmp);
        PageStats {
            frames: self.frames,
            dropped: self.dropped,
            corrupt: self.corrupt,
            records: self.records,
            tracked: self.tracked,
            fps: self.fps(),
            latency_p50_ms: recent.get(recent.len() / 2).copied().unwrap_or(0.0),
            last_frame_age_s: self.last_frame_s().map(|t| (now_s - t).max(0.0)),
        }
    }

    /// The Prometheus text exposition.
    pub fn exposition(&self, scrape: &ScrapeFigures) -> String {
        let mut o = String::with_capacity(8 * 1024);
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
        };
        let counters: [(&str, &str, u64); 6] = [
            ("pancap_frames_total", "Frames the pipeline processed.", self.frames),
            ("pancap_frames_dropped_total", "Frames dropped because the pipeline fell behind a live source.", self.dropped),
            ("pancap_frames_corrupt_total", "Frames skipped because they could not be decoded or processed.", self.corrupt),
            ("pancap_records_total", "JSON Lines records written (updates, heartbeats, every-frame records).", self.records),
            ("pancap_overlays_total", "Overlay pictures drawn and encoded for viewers.", self.overlays),
            ("pancap_serve_rejected_total", "Connections turned away because the client limit was reached.", self.rejected),
        ];
        for (name, help, v) in counters {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
        let gauges: [(&str, &str, f64); 7] = [
            ("pancap_fps", "Frames per second over the most recent 32 frames.", self.fps()),
            ("pancap_tracked_entities", "Confirmed tracked entities on the last frame.", self.tracked as f64),
            ("pancap_entities", "Entities (things and stuff) on the last frame.", self.entities as f64),
            ("pancap_uptime_seconds", "Seconds since the stream started.", scrape.uptime_s),
            ("process_resident_memory_bytes", "Resident memory of the pancap process.", scrape.rss_bytes as f64),
            ("pancap_serve_viewers", "Clients receiving the overlay picture (MJPEG streams and page pictures).", scrape.viewers as f64),
            ("pancap_serve_clients", "Open HTTP connections.", scrape.clients as f64),
        ];
        for (name, help, v) in gauges {
            family(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(&mut o, "pancap_latency_seconds", "histogram", "From capture to the end of the frame's pipeline run.");
        self.latency.write(&mut o, "pancap_latency_seconds", "");
        family(&mut o, "pancap_overlay_seconds", "histogram", "Drawing and JPEG-encoding one overlay picture for viewers.");
        self.overlay.write(&mut o, "pancap_overlay_seconds", "");
        family(&mut o, "pancap_stage_seconds", "histogram", "Time per pipeline stage and model, per frame that ran it.");
        for (stage, model, h) in &self.stages {
            let labels = format!("stage=\"{}\",model=\"{}\"", stage.name(), escape_label(model.as_deref().unwrap_or("")));
            h.write(&mut o, "pancap_stage_seconds", &labels);
        }
        if let Some(s) = scrape.spool {
            let spool: [(&str, &str, &str, f64); 7] = [
                ("pancap_spool_records", "gauge", "Records in the publish spool not yet acknowledged by the broker.", s.depth as f64),
                ("pancap_spool_bytes", "gauge", "Bytes the publish spool's segment files hold (a segment leaves once all its records are acknowledged).", s.bytes as f64),
                ("pancap_spool_dropped_total", "counter", "Records dropped from a full spool (oldest first).", s.dropped as f64),
                ("pancap_publish_acknowledged_total", "counter", "Records and events the broker acknowledged.", s.acknowledged as f64),
                ("pancap_publish_reconnects_total", "counter", "Reconnections to the broker.", s.reconnects as f64),
                ("pancap_publish_channel_full_total", "counter", "Messages not handed to the publisher (channel full).", s.channel_full as f64),
                ("pancap_publish_connected", "gauge", "1 while connected to the broker.", if s.connected { 1.0 } else { 0.0 }),
            ];
            for (name, kind, help, v) in spool {
                family(&mut o, name, kind, help);
                let _ = writeln!(o, "{name} {v}");
            }
        }
        o
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::StageTime;

    fn sample_value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let mut h = Histogram::default();
        for s in [0.001, 0.03, 0.03, 0.5, 100.0] {
            h.observe(s);
        }
        let mut o = String::new();
        h.write(&mut o, "x_seconds", "a=\"b\"");
        assert_eq!(sample_value(&o, "x_seconds_bucket{a=\"b\",le=\"0.005\"}"), Some(1.0));
        assert_eq!(sample_value(&o, "x_seconds_bucket{a=\"b\",le=\"0.05\"}"), Some(3.0));
        assert_eq!(sample_value(&o, "x_seconds_bucket{a=\"b\",le=\"12.8\"}"), Some(4.0));
        assert_eq!(sample_value(&o, "x_seconds_bucket{a=\"b\",le=\"+Inf\"}"), Some(5.0));
        assert_eq!(sample_value(&o, "x_seconds_count{a=\"b\"}"), Some(5.0));
        let sum = sample_value(&o, "x_seconds_sum{a=\"b\"}").unwrap_or(0.0);
        assert!((sum - 100.561).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn frames_fill_counters_stage_histograms_and_the_frame_rate() {
        let mut m = Metrics::default();
        let model: ModelName = std::sync::Arc::from("yolox_nano_416");
        let timings = Timings(vec![
            StageTime { stage: Stage::Inference, model: Some(model.clone()), ms: 30.0 },
            StageTime { stage: Stage::Merge, model: None, ms: 1.0 },
        ]);
        for i in 0..40u64 {
            m.frame(i as f64 * 0.1, 80.0 + i as f64, &timings, [i + 1, 2, 1, 7], 3, 5);
        }
        assert!((m.fps() - 10.0).abs() < 1e-6, "{}", m.fps());
        let text = m.exposition(&ScrapeFigures { uptime_s: 4.0, rss_bytes: 1 << 20, ..ScrapeFigures::default() });
        assert_eq!(sample_value(&text, "pancap_frames_total"), Some(40.0));
        assert_eq!(sample_value(&text, "pancap_frames_dropped_total"), Some(2.0));
        assert_eq!(sample_value(&text, "pancap_tracked_entities"), Some(3.0));
        assert_eq!(sample_value(&text, "pancap_stage_seconds_count{stage=\"inference\",model=\"yolox_nano_416\"}"), Some(40.0));
        assert_eq!(sample_value(&text, "pancap_stage_seconds_count{stage=\"merge\",model=\"\"}"), Some(40.0));
        assert_eq!(sample_value(&text, "pancap_latency_seconds_bucket{le=\"0.1\"}"), Some(21.0));
        assert!(!text.contains("pancap_spool_records"), "no spool figures without a publisher");
        // every sample line belongs to a family announced with HELP and TYPE before it
        let mut announced = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| announced.contains(*f));
                assert!(announced.contains(name) || family.is_some(), "{line}");
            }
        }
        let p = m.page_stats(4.0);
        assert_eq!(p.frames, 40);
        assert!((p.latency_p50_ms - 104.0).abs() < 1.0, "{p:?}");
        assert!(p.last_frame_age_s.is_some_and(|a| (a - 0.1).abs() < 1e-9), "{p:?}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

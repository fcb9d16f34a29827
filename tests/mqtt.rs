#![cfg(feature = "mqtt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `pancap stream --publish` against a real broker: Debian's `mosquitto`, started here on a free loopback port
//! with a config file of its own. These need the mosquitto program, so they are ignored by the plain `cargo test`
//! and run by `.ci/run` (which installs it) with `cargo test --test mqtt -- --ignored`; `PANCAP_MOSQUITTO` names
//! the program where it is not /usr/sbin/mosquitto or on PATH.
//!
//! The subscriber is a persistent MQTT session (clean session off, QoS 1) on a broker with persistence on, so
//! what pancap publishes while the subscriber reconnects after a broker restart waits for it, as a back office's
//! consumer would.

mod common;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NEEDS: &str = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored";

fn mosquitto_program() -> PathBuf {
    if let Some(p) = std::env::var_os("PANCAP_MOSQUITTO") {
        return PathBuf::from(p);
    }
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("mosquitto")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A mosquitto of this test's own: a config file, a persistence directory, a loopback port.
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        Broker::with_password(None)
    }

    fn with_password(user: Option<(&str, &str)>) -> Broker {
        Broker::configured(user, |_| String::new())
    }

    /// `extra` writes files into the broker's directory and returns more configuration (other listeners).
    fn configured(user: Option<(&str, &str)>, extra: impl FnOnce(&Path) -> String) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\nuser root\npersistence true\npersistence_location {}/\nautosave_interval 1\n\
             max_queued_messages 100000\nmax_inflight_messages 0\nlog_dest file {}/broker.log\nlog_type all\n",
            dir.path().display(),
            dir.path().display()
        );
        match user {
            Some((u, p)) => {
                let pw = dir.path().join("passwd");
                std::fs::write(&pw, "").unwrap();
                let st = Command::new("mosquitto_passwd").args(["-b", pw.to_str().unwrap(), u, p]).status().expect("mosquitto_passwd");
                assert!(st.success());
                conf.push_str(&format!("allow_anonymous false\npassword_file {}\n", pw.display()));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        conf.push_str(&extra(dir.path()));
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut b = Broker { dir, port, child: None };
        b.resume();
        b
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port with the same persistence.
    fn resume(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let child = Command::new(mosquitto_program())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} ({NEEDS})", mosquitto_program().display()));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not listen on {}: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGTERM: it saves its persistence and exits).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
            let until = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < until, "mosquitto did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    at_unix_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A persistent QoS 1 subscriber to `pancap/#` that reconnects on its own.
struct Subscriber {
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Subscriber {
    fn start(port: u16, id: &str) -> Subscriber {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let (got, stop, id) = (Arc::clone(&got), Arc::clone(&stop), id.to_string());
            std::thread::spawn(move || {
                let mut o = MqttOptions::new(id, "127.0.0.1", port);
                o.set_clean_session(false);
                o.set_keep_alive(Duration::from_secs(5));
                o.set_max_packet_size(8 << 20, 8 << 20);
                let (client, mut conn) = Client::new(o, 64);
                let mut ready = Some(ready_tx);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match conn.recv_timeout(Duration::from_millis(200)) {
                        // a broker that lost the session (no persistence) forgot the subscription
                        Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) if !c.session_present => {
                            client.try_subscribe("pancap/#", QoS::AtLeastOnce).unwrap();
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            if let Some(r) = ready.take() {
                                r.send(()).unwrap();
                            }
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at_unix_ms: now_ms(),
                        }),
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            });
        }
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("subscribed");
        Subscriber { got, stop }
    }

    fn on(&self, leaf: &str) -> Vec<Received> {
        self.got.lock().unwrap().iter().filter(|r| r.topic.ends_with(&format!("/{leaf}"))).cloned().collect()
    }

    /// Waits until `done` holds for what arrived (bounded).
    fn wait_for(&self, what: &str, secs: u64, done: impl Fn(&[Received]) -> bool) {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if done(&self.got.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}; got {} message(s)", self.got.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn json(r: &Received) -> serde_json::Value {
    serde_json::from_slice(&r.payload).unwrap_or_else(|e| panic!("{}: {e}: {}", r.topic, String::from_utf8_lossy(&r.payload)))
}

/// A recording of the labelme street frames, `times` times over (forward and backward).
fn recording(dir: &Path, times: usize) -> PathBuf {
    let video = common::data("labelme-examples/examples/video_annotation/data_annotated");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(video)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    paths.sort();
    let frames: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut data = Vec::new();
    for i in 0..times {
        let pass: Vec<&Vec<u8>> = if i % 2 == 0 { frames.iter().collect() } else { frames.iter().rev().collect() };
        for f in pass {
            data.extend_from_slice(f);
        }
    }
    let rec = dir.join(format!("street{times}.mjpeg"));
    std::fs::write(&rec, data).unwrap();
    rec
}

/// The stream flags shared by these tests: the fast part of the suite, a record per frame.
const LIGHT: [&str; 6] = ["--every-frame", "--no-stuff", "--no-text", "--no-discovery", "--no-person-masks", "--no-pose"];

fn stream_cmd(broker: &Broker, rec: &Path, spool: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pancap"));
    c.arg("--models-dir")
        .arg(common::models_dir())
        .args(["stream", "--replay", rec.to_str().unwrap(), "--publish", &broker.url(), "--device-name", "cam-test"])
        .arg("--spool-dir")
        .arg(spool)
        .arg("--output")
        .arg(output)
        .args(LIGHT)
        .args(["--summary-json", "--stats-every", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// One `pancap stream --publish` run to its end, output collected.
fn publish_once(rec: &Path, url: &str, spool: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pancap"))
        .arg("--models-dir")
        .arg(common::models_dir())
        .args(["stream", "--replay", rec.to_str().unwrap(), "--publish", url])
        .arg("--spool-dir")
        .arg(spool)
        .args(LIGHT)
        .args(extra)
        .output()
        .unwrap()
}

/// Waits (at most a minute) until the stream has written `n` records.
fn wait_written(output: &Path, n: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while written(output).len() < n {
        assert!(Instant::now() < until, "fewer than {n} records written in a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn written(output: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(output)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole lines"))
        .collect()
}

fn summary(out: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pancap failed: {err}");
    serde_json::from_str(err.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {err}"))
}

/// Records received, duplicates dropped by (device, seq), in arrival order; and how many duplicates there were.
fn dedup(received: &[Received]) -> (Vec<serde_json::Value>, usize) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut dups = 0;
    for r in received {
        let v = json(r);
        if seen.insert((v["device"].as_str().unwrap().to_string(), v["seq"].as_u64().unwrap())) {
            out.push(v);
        } else {
            dups += 1;
        }
    }
    (out, dups)
}

fn seqs(v: &[serde_json::Value]) -> Vec<u64> {
    v.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn every_record_event_caption_and_stat_arrives_and_parses() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-all");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 3);
    let output = dir.path().join("records.jsonl");
    // paced so that several stats intervals pass
    let out = stream_cmd(&broker, &rec, &dir.path().join("spool"), &output, &["--realtime", "5"]).output().unwrap();
    let s = summary(&out);
    let lines = written(&output);
    assert_eq!(lines.len(), 15);
    sub.wait_for("15 records", 20, |g| g.iter().filter(|r| r.topic.ends_with("/records")).count() >= 15);
    let (records, _) = dedup(&sub.on("records"));
    assert_eq!(records.len(), 15);
    for (got, wrote) in records.iter().zip(&lines) {
        assert_eq!(got["device"], "cam-test");
        let mut without = got.clone();
        without.as_object_mut().unwrap().remove("device");
        assert_eq!(&without, wrote, "the published record is the written one plus device");
    }
    assert_eq!(sub.on("records")[0].topic, "pancap/cam-test/records");
    // events: every confirmed entity is new once; ends carry start and end times; all parse
    let events: Vec<serde_json::Value> = sub.on("events").iter().map(json).collect();
    assert!(events.iter().any(|e| e["type"] == "new" && e["after"]["box"].is_array()), "{events:?}");
    for e in &events {
        assert!(["new", "update", "end"].contains(&e["type"].as_str().unwrap()));
        assert!(e["id"].is_u64() && e["tag"].is_string() && e["start_unix_ms"].is_u64());
    }
    let news: Vec<u64> = events.iter().filter(|e| e["type"] == "new").map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(news.len(), news.iter().collect::<BTreeSet<_>>().len(), "an entity is new once");
    // stats every second: fps, latency, spool depth, RSS
    let stats: Vec<serde_json::Value> = sub.on("stats").iter().map(json).collect();
    assert!(!stats.is_empty(), "no stats");
    for st in &stats {
        assert!(st["fps"].as_f64().unwrap() > 0.0 && st["p95_ms"].as_f64().unwrap() > 0.0, "{st}");
        assert!(st["spool_depth"].is_u64() && st["rss_kb"].as_u64().unwrap() > 0 && st["connected"] == true, "{st}");
    }
    // the caption is retained: a dashboard connecting now sees the last one at once, and the device is offline
    let late = Subscriber::start(broker.port, "sub-late");
    late.wait_for("retained caption and availability", 10, |g| {
        g.iter().any(|r| r.topic.ends_with("/caption")) && g.iter().any(|r| r.topic.ends_with("/available"))
    });
    let caption = late.on("caption");
    assert!(caption[0].retain);
    let c = json(&caption[0]);
    assert_eq!(c["seq"], lines.last().unwrap()["seq"]);
    assert_eq!(c["caption"], lines.last().unwrap()["caption"]);
    assert!(c["entities"].as_array().unwrap().iter().all(|e| e["box"].is_array()));
    assert_eq!(late.on("available")[0].payload, b"offline", "a clean end says offline");
    // online came first to the first subscriber
    assert_eq!(sub.on("available")[0].payload, b"online");
    assert_eq!(s["publish"]["spool"]["depth"], 0, "{s}");
    assert!(s["publish"]["acknowledged"].as_u64().unwrap() >= 15 + events.len() as u64, "{s}");
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn stats_keep_coming_marked_stalled_while_no_frame_arrives() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-stall");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 1);
    // a frame every 4 s: the frame loop has nothing to report between them
    let out = stream_cmd(&broker, &rec, &dir.path().join("spool"), &dir.path().join("r.jsonl"), &["--realtime", "0.25", "--max-frames", "3"])
        .output()
        .unwrap();
    summary(&out);
    let stats: Vec<serde_json::Value> = sub.on("stats").iter().map(json).collect();
    let stalled: Vec<&serde_json::Value> = stats.iter().filter(|s| s["stalled"] == true).collect();
    assert!(!stalled.is_empty(), "{stats:?}");
    assert!(stalled.iter().all(|s| s["fps"] == 0.0 && s["frames"].as_u64().unwrap() >= 1), "{stalled:?}");
    assert!(stats.iter().any(|s| s["stalled"] == false), "{stats:?}");
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn a_broker_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-restart");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 12); // 60 frames at 6 fps: 10 s
    let output = dir.path().join("records.jsonl");
    let child = stream_cmd(&broker, &rec, &dir.path().join("spool"), &output, &["--realtime", "6"]).spawn().unwrap();
    // a few records through, then the broker goes for four seconds while pancap keeps writing
    wait_written(&output, 8);
    broker.stop();
    let at_stop = written(&output).len();
    std::thread::sleep(Duration::from_secs(4));
    let during = written(&output).len() - at_stop;
    assert!(during >= 10, "pancap kept writing while the broker was down: {during}");
    broker.resume();
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    let lines = written(&output);
    assert_eq!(lines.len(), 60);
    sub.wait_for("every record after the restart", 30, |g| dedup_count(g) >= 60);
    let (records, dups) = dedup(&sub.on("records"));
    assert_eq!(seqs(&records), seqs(&lines), "every record the stream wrote, in order");
    let lost = lines.len() - records.len();
    eprintln!(
        "restart: written {}, received {} ({} unique, {dups} duplicate(s) dropped), lost {lost}, {during} written while the broker was down; publish summary {}",
        lines.len(),
        sub.on("records").len(),
        records.len(),
        s["publish"]
    );
    assert_eq!(lost, 0);
    assert!(s["publish"]["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reconnected"), "the reconnect is logged");
}

fn dedup_count(g: &[Received]) -> usize {
    g.iter()
        .filter(|r| r.topic.ends_with("/records"))
        .map(|r| json(r)["seq"].as_u64().unwrap())
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn start_offline_spools_until_the_broker_appears() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-offline");
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 4); // 20 frames at 5 fps
    let output = dir.path().join("records.jsonl");
    let child = stream_cmd(&broker, &rec, &dir.path().join("spool"), &output, &["--realtime", "5", "--start-offline"]).spawn().unwrap();
    wait_written(&output, 5);
    broker.resume();
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("spooling and retrying in the background"));
    sub.wait_for("all 20 records", 30, |g| dedup_count(g) >= 20);
    let (records, _) = dedup(&sub.on("records"));
    assert_eq!(seqs(&records), seqs(&written(&output)));
    assert_eq!(s["publish"]["spool"]["depth"], 0, "{s}");
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn a_stalled_broker_does_not_hold_the_frame_loop_back() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-stalled");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 12); // 60 frames at 6 fps: 10 s
    let output = dir.path().join("records.jsonl");
    let child = stream_cmd(&broker, &rec, &dir.path().join("spool"), &output, &["--realtime", "6"]).spawn().unwrap();
    wait_written(&output, 6);
    // the broker stops reading and acknowledging (SIGSTOP: its sockets stay open) for 4 s
    let pid = broker.child.as_ref().unwrap().id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let at_stop = written(&output).len();
    std::thread::sleep(Duration::from_secs(4));
    let during = written(&output).len() - at_stop;
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let s = summary(&child.wait_with_output().unwrap());
    eprintln!("stalled broker: {during} records written in the 4 s it was stopped; stream {} fps", s["fps"]);
    // the frame loop kept its pace (6 fps: 24 frames in 4 s, a frame or two of slack)
    assert!(during >= 20, "{during}");
    assert!(s["fps"].as_f64().unwrap() > 5.0, "{s}");
    sub.wait_for("every record after the broker resumed", 30, |g| dedup_count(g) >= 60);
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn a_killed_pancap_sends_its_spool_when_restarted() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-kill");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let rec = recording(dir.path(), 12);
    let first_out = dir.path().join("first.jsonl");
    let mut child = stream_cmd(&broker, &rec, &spool, &first_out, &["--realtime", "10"]).spawn().unwrap();
    wait_written(&first_out, 3);
    broker.stop();
    wait_written(&first_out, 15);
    // a group of records is synced before any of it is sent; give the last group its sync
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    let first = written(&first_out);
    broker.resume();
    // the same spool, a short recording
    let short = recording(dir.path(), 1);
    let second_out = dir.path().join("second.jsonl");
    let out = stream_cmd(&broker, &short, &spool, &second_out, &[]).output().unwrap();
    let s = summary(&out);
    let second = written(&second_out);
    assert!(s["publish"]["spool"]["recovered"].as_u64().unwrap() > 0, "{s}");
    // the second run's seq continues after the first's, so (device, seq) stays unique
    assert!(seqs(&second)[0] > *seqs(&first).last().unwrap(), "{:?} then {:?}", seqs(&first), seqs(&second));
    let want = first.len() + second.len();
    sub.wait_for("the first run's spooled records and the second run's", 30, |g| dedup_count(g) >= want);
    let (records, dups) = dedup(&sub.on("records"));
    let got: BTreeSet<u64> = seqs(&records).into_iter().collect();
    let missing: Vec<u64> = seqs(&first).into_iter().chain(seqs(&second)).filter(|q| !got.contains(q)).collect();
    eprintln!(
        "kill: first run wrote {} (killed while the broker was down), second {}; received {} unique, {dups} duplicate(s); missing {missing:?}; recovered from the spool {}",
        first.len(),
        second.len(),
        records.len(),
        s["publish"]["spool"]["recovered"]
    );
    assert!(missing.is_empty());
    // in order: the first run's backlog before the second run's records
    let order = seqs(&records);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn a_full_spool_drops_the_oldest_and_counts_them() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let rec = recording(dir.path(), 12);
    let output = dir.path().join("records.jsonl");
    // the broker goes as soon as pancap is connected; 60 records do not fit 64 kB
    let child = stream_cmd(&broker, &rec, &spool, &output, &["--spool-max-mb", "0.0625", "--realtime", "20", "--drain-timeout", "1"])
        .spawn()
        .unwrap();
    let mut child = child;
    let until = Instant::now() + Duration::from_secs(60);
    while written(&output).is_empty() {
        assert!(Instant::now() < until && child.try_wait().unwrap().is_none(), "{:?}", child.wait_with_output());
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.stop();
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    let sp = &s["publish"]["spool"];
    let on_disk: u64 = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    eprintln!("full spool: {sp}; {on_disk} bytes on disk; bound 65536");
    assert!(sp["dropped"].as_u64().unwrap() > 0, "{s}");
    assert!(on_disk <= 65536 + 64, "{on_disk}");
    assert!(sp["bytes"].as_u64().unwrap() <= 65536);
    // what is left is the newest: a restart with the broker back sends it, ending with the last record written
    broker.resume();
    let sub = Subscriber::start(broker.port, "sub-full");
    let short = recording(dir.path(), 1);
    let out = stream_cmd(&broker, &short, &spool, &dir.path().join("second.jsonl"), &[]).output().unwrap();
    let s2 = summary(&out);
    assert_eq!(s2["publish"]["spool"]["recovered"], sp["depth"], "{s2}");
    let last = *seqs(&written(&output)).last().unwrap();
    sub.wait_for("the spooled newest records", 20, |g| g.iter().any(|r| r.topic.ends_with("/records") && json(r)["seq"] == last));
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn the_last_will_says_offline_when_pancap_dies() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-will");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 12);
    let output = dir.path().join("records.jsonl");
    let mut child = stream_cmd(&broker, &rec, &dir.path().join("spool"), &output, &["--realtime", "5"]).spawn().unwrap();
    sub.wait_for("online", 30, |g| g.iter().any(|r| r.topic == "pancap/cam-test/available" && r.payload == b"online"));
    Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
    sub.wait_for("the last will", 30, |g| g.iter().any(|r| r.topic == "pancap/cam-test/available" && r.payload == b"offline"));
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn refused_credentials_and_an_unreachable_broker_are_clear_errors_at_start() {
    let broker = Broker::with_password(Some(("cam7", "right-password")));
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 1);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let url = format!("mqtt://cam7@127.0.0.1:{}", broker.port);
    let spool = dir.path().join("spool");
    let run = |url: &str, pw: &Path| publish_once(&rec, url, &spool, &["--password-file", pw.to_str().unwrap()]);
    let out = run(&url, &pw);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refused") && err.contains(&format!("127.0.0.1:{}", broker.port)), "{err}");
    assert!(!err.contains("wrong-password"), "the password is never echoed: {err}");
    // the right one works
    std::fs::write(&pw, "right-password\n").unwrap();
    let out = run(&url, &pw);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // nothing listening
    let port = free_port();
    let out = run(&format!("mqtt://127.0.0.1:{port}"), &pw);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot connect") && err.contains(&port.to_string()), "{err}");
    // a password in the URL is refused without being echoed
    let out = run(&format!("mqtt://cam7:right-password@127.0.0.1:{}", broker.port), &pw);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("right-password"), "{err}");
}

/// The soak: 10,000 records published through a broker restart by the library's publisher (the stream's sink),
/// as fast as the spool and the broker take them; reports the publish rate, the spool's peak and the delivery
/// latency from capture time to the subscriber's receipt.
#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn soak_10000_records_through_a_broker_restart() {
    use pancap::publish::{BrokerUrl, PublishConfig, Publisher};
    use pancap::stream::{RecordKind, StreamRecord, StreamSink, TrackedEntity};
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-soak");
    let dir = tempfile::tempdir().unwrap();
    let cfg = PublishConfig::new(BrokerUrl::parse(&broker.url()).unwrap(), "soak".into(), dir.path().join("spool"));
    let mut publisher = Publisher::start(cfg).unwrap();
    const N: u64 = 10_000;
    const RATE: f64 = 1000.0; // records per second offered
    let start = Instant::now();
    for seq in 0..N {
        let due = start + Duration::from_secs_f64(seq as f64 / RATE);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        if seq == N / 3 {
            broker.stop();
        }
        if seq == N / 3 + 2000 {
            broker.resume();
        }
        let record = StreamRecord {
            kind: RecordKind::Frame,
            seq,
            capture_unix_ms: now_ms(),
            latency_ms: 50.0,
            entities: vec![TrackedEntity {
                id: 1,
                tag: "car".into(),
                kind: pancap::scene::Kind::Thing,
                score: 0.9,
                bbox: [0.1, 0.2, 0.3, 0.4],
                confirmed: true,
                text: None,
                motion: None,
            }],
            relations: vec![],
            caption: "A car [[0.1, 0.2, 0.3, 0.4]] on the road.".into(),
            appeared: vec![],
            disappeared: vec![],
            stuff_from_seq: None,
            rss_kb: 0,
            motion_events: vec![],
        };
        publisher.record(&record);
    }
    let offered_s = start.elapsed().as_secs_f64();
    let summary = publisher.finish().unwrap();
    let published_s = start.elapsed().as_secs_f64();
    sub.wait_for("10,000 records", 60, |g| dedup_count(g) >= N as usize);
    let received = sub.on("records");
    let (unique, dups) = dedup(&received);
    assert_eq!(unique.len() as u64, N, "lost {}", N - unique.len() as u64);
    let mut first_arrival: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &received {
        let v = json(r);
        first_arrival.entry(v["seq"].as_u64().unwrap()).or_insert(r.at_unix_ms.saturating_sub(v["capture_unix_ms"].as_u64().unwrap()));
    }
    let mut lat: Vec<u64> = first_arrival.values().copied().collect();
    lat.sort_unstable();
    let pct = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    eprintln!(
        "soak: {N} records offered at {RATE}/s over {offered_s:.1} s, broker stopped for 2,000 of them; all acknowledged after {published_s:.1} s \
         ({:.0} records/s overall); spool peak {} records; {} reconnect(s), {dups} duplicate(s) dropped, 0 lost; \
         delivery latency capture->subscriber p50 {} ms, p95 {} ms, max {} ms",
        N as f64 / published_s,
        summary.spool.peak,
        summary.reconnects,
        pct(0.5),
        pct(0.95),
        lat.last().unwrap()
    );
    assert!(summary.reconnects >= 1);
    assert_eq!(summary.spool.depth, 0);
    assert_eq!(summary.spool.dropped, 0);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, by the openssl program.
fn certificates(dir: &Path, ca_name: &str) {
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &format!("/CN={ca_name}")]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{who}.key"), "-out", &format!("{who}.csr"), "-subj", &format!("/CN={who}")]);
        openssl(dir, &[
            "x509", "-req", "-in", &format!("{who}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            &format!("{who}.pem"), "-days", "2", "-extfile", &format!("{who}.ext"),
        ]);
    }
}

#[test]
#[ignore = "needs the mosquitto broker: .ci/run installs it and runs these with --ignored"]
fn tls_with_a_ca_file_and_a_client_certificate() {
    let tls_port = free_port();
    let broker = Broker::configured(None, |dir| {
        certificates(dir, "pancap-test-ca");
        format!(
            "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
            d = dir.display()
        )
    });
    let certs = broker.dir.path();
    let sub = Subscriber::start(broker.port, "sub-tls");
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 1);
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let spool = dir.path().join("spool");
    let run = |tls: &[&str]| publish_once(&rec, &url, &spool, &[&["--device-name", "cam-tls"], tls].concat());
    let ca = certs.join("ca.pem");
    let (cert, key) = (certs.join("client.pem"), certs.join("client.key"));
    let out = run(&["--tls-ca", ca.to_str().unwrap(), "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sub.wait_for("five records over TLS", 20, |g| g.iter().filter(|r| r.topic == "pancap/cam-tls/records").count() >= 5);
    // a broker whose certificate another CA signed is refused at start
    let other = tempfile::tempdir().unwrap();
    certificates(other.path(), "some-other-ca");
    let out = run(&["--tls-ca", other.path().join("ca.pem").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot connect") && err.contains("certificate"), "{err}");
    // without the client certificate the broker hangs up
    let out = run(&["--tls-ca", ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // half a client certificate is a clear error before any connection
    let out = run(&["--tls-ca", ca.to_str().unwrap(), "--tls-cert", cert.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs both --tls-cert and --tls-key"), "{err}");
}

#![cfg(feature = "serve")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `pancap stream --serve` as its users meet it: a real browser (Debian's `chromium`, headless) loads the page
//! while a recording streams, `promtool` (Debian's `prometheus`) checks `/metrics`, and `curl` checks the MJPEG
//! framing, Server-Sent Events, the token's 401s, the client limit and the health transitions. The tests that need
//! those programs are ignored by the plain `cargo test` and run by `.ci/run` (which installs them) with
//! `cargo test --test serve -- --ignored`; the refusal of a public address without a token needs nothing and runs
//! everywhere.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const NEEDS: &str = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A recording of `frames` copies of one photo (an MJPEG file: concatenated JPEGs), so the scene and its caption
/// hold still while the browser looks.
fn still_recording(dir: &Path, frames: usize) -> PathBuf {
    let jpeg = std::fs::read(common::data("darknet-images-unannotated/dog.jpg")).unwrap();
    let path = dir.join("still.mjpeg");
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..frames {
        f.write_all(&jpeg).unwrap();
    }
    path
}

/// A `pancap stream --serve` of its own on a free loopback port; killed when dropped.
struct Viewer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    token: Option<String>,
}

impl Viewer {
    /// Streams `frames` frames of the still recording at 10 fps (a light suite: YOLOX-nano, no stuff, no
    /// discovery, no person masks, no text), then keeps serving for `linger` seconds.
    fn start(frames: usize, linger: u32, extra: &[&str]) -> Viewer {
        let dir = tempfile::tempdir().unwrap();
        let rec = still_recording(dir.path(), frames);
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("pancap.log")).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let linger = linger.to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_pancap"))
            .arg("--models-dir")
            .arg(common::models_dir())
            .args(["stream", "--replay", rec.to_str().unwrap(), "--realtime", "10"])
            .args(["--detectors", "yolox_nano_416", "--no-stuff", "--no-discovery", "--no-person-masks", "--no-text"])
            .args(["--serve", &addr, "--serve-linger", &linger])
            .args(["-o", dir.path().join("records.jsonl").to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut v = Viewer { child, port, dir, token: None };
        let until = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(v.child.try_wait().unwrap().is_none(), "pancap exited: {}", v.log());
            assert!(Instant::now() < until, "pancap did not listen on {port}: {}", v.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    fn with_token(frames: usize, linger: u32, extra: &[&str]) -> Viewer {
        let token = "s3cret-token_0123456789.abc~";
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), format!("{token}\n")).unwrap();
        let mut args = vec!["--serve-token", tmp.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut v = Viewer::start(frames, linger, &args);
        v.token = Some(token.into());
        v
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The URL with `?token=` when this viewer has one.
    fn authed(&self, path: &str) -> String {
        match &self.token {
            Some(t) => format!("{}{}token={t}", self.url(path), if path.contains('?') { '&' } else { '?' }),
            None => self.url(path),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pancap.log")).unwrap_or_default()
    }

    /// Waits until `/healthz` answers 200 (frames flow) and a record is there.
    fn wait_live(&self) {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let (h, _) = curl_status(&[&self.authed("/healthz")]);
            let (s, _) = curl_status(&[&self.authed("/api/state")]);
            if h == 200 && s == 200 {
                return;
            }
            assert!(Instant::now() < until, "no frames served within 90 s (healthz {h}, state {s}): {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn state(&self) -> serde_json::Value {
        let (status, body) = curl_status(&[&self.authed("/api/state")]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e} ({NEEDS})"))
}

/// curl with `args`; the body and the status code (written after the body as the last line).
fn curl_status(args: &[&str]) -> (u16, Vec<u8>) {
    let mut all = vec!["-s", "--max-time", "10", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = run("curl", &all);
    let text = out.stdout;
    let cut = text.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&text[cut..]).trim().parse().unwrap_or(0);
    (code, text[..cut].to_vec())
}

/// The caption as a reader sees it: the grounding `[[…]]` markers left out.
fn plain_caption(caption: &str) -> String {
    let mut out = String::new();
    let mut rest = caption;
    while let Some(i) = rest.find("[[") {
        out.push_str(rest[..i].trim_end());
        rest = rest[i..].find("]]").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the element with `id` in an HTML dump (tags stripped, entities decoded).
fn element_text(html: &str, id: &str) -> String {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page: {html}"));
    let open_end = start + html[start..].find('>').unwrap() + 1;
    let close = open_end + html[open_end..].find("</p>").unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in html[open_end..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn chromium(args: &[&str]) -> Output {
    let program = std::env::var("PANCAP_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    // headless, no sandbox (CI runs as root), virtual time: the page's timers and requests run for 6 virtual
    // seconds, then the DOM is dumped or the screenshot taken
    let mut all = vec!["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=6000"];
    all.extend_from_slice(args);
    let out = Command::new(&program).args(&all).output().unwrap_or_else(|e| panic!("cannot run {program}: {e} ({NEEDS})"));
    assert!(out.status.success(), "{program} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn a_browser_shows_the_current_caption_the_entities_and_the_overlay() {
    let v = Viewer::start(600, 0, &[]);
    v.wait_live();
    let state = v.state();
    let caption = plain_caption(state["caption"].as_str().unwrap());
    let entities = state["entities"].as_array().unwrap();
    assert!(!entities.is_empty(), "the dog photo has entities: {state}");

    let dom = String::from_utf8(chromium(&["--dump-dom", &v.url("/")]).stdout).unwrap();
    // the still scene's caption is the same on every record, so the page shows exactly the one asked for above
    assert_eq!(element_text(&dom, "caption"), caption, "the page's caption is not the current one");
    for e in entities {
        let row = format!("<tr data-id=\"{}\"", e["id"]);
        assert!(dom.contains(&row), "no table row for entity {e} in the page");
        assert!(dom.contains(&format!("<td>{}</td>", e["tag"].as_str().unwrap())), "no tag cell for {e}");
    }
    // each grounded mention is a marker that outlines its box on hover
    let markers = dom.matches("class=\"m\"").count();
    assert_eq!(markers, state["caption"].as_str().unwrap().matches("[[").count(), "one marker per grounded mention");
    // the picture loaded: the dog photo is 768x576
    assert!(dom.contains("data-loaded=\"768x576\""), "the overlay picture did not load in the page");

    let shot = v.dir.path().join("page.png");
    chromium(&["--window-size=1400,900", &format!("--screenshot={}", shot.display()), &v.url("/")]);
    let png = image::open(&shot).unwrap().to_rgb8();
    // the picture sits at the top left (under the header): a photo with an overlay has thousands of colours where
    // a blank or broken image has a handful
    let mut colours = std::collections::HashSet::new();
    for y in 80..500 {
        for x in 30..700 {
            colours.insert(png.get_pixel(x, y).0);
        }
    }
    assert!(colours.len() > 5000, "the picture area has only {} colours: blank or broken", colours.len());
    // the overlay is drawn on it: the first entity's box colour (the overlay palette) is there
    let palette = pancap::caption::overlay::colour_of(entities[0]["id"].as_u64().unwrap() as u32);
    let drawn = png.pixels().filter(|p| p.0.iter().zip(palette).all(|(a, b)| a.abs_diff(b) <= 12)).count();
    assert!(drawn > 200, "the overlay's box colour {palette:?} covers only {drawn} pixels");
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn metrics_pass_promtool_and_count_what_the_stream_did() {
    let v = Viewer::start(600, 0, &[]);
    v.wait_live();
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = curl_status(&[&v.url("/metrics")]);
    assert_eq!(status, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e} ({NEEDS})"));
    check.stdin.take().unwrap().write_all(&body).unwrap();
    let out = check.wait_with_output().unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool's lint speaks of style; it finds nothing here
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    let frames = value("pancap_frames_total");
    assert!(frames >= 5.0, "{frames}");
    assert_eq!(value("pancap_latency_seconds_count"), frames);
    assert_eq!(value("pancap_stage_seconds_count{stage=\"inference\",model=\"yolox_nano_416\"}"), frames);
    assert!(value("pancap_fps") > 3.0 && value("pancap_fps") < 20.0, "the recording plays at 10 fps");
    assert!(value("pancap_tracked_entities") >= 1.0);
    assert!(value("process_resident_memory_bytes") > 1e7);
    assert_eq!(value("pancap_frames_corrupt_total"), 0.0);
    assert!(!text.contains("pancap_spool_records"), "no spool without --publish");
}

/// Reads `multipart/x-mixed-replace` parts: each `--BOUNDARY`, headers with Content-Type and Content-Length,
/// a blank line, exactly that many bytes, CRLF.
fn mjpeg_parts(body: &[u8], boundary: &str) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut at = 0;
    let delimiter = format!("--{boundary}\r\n");
    while body.len() > at + delimiter.len() {
        assert!(body[at..].starts_with(delimiter.as_bytes()), "part {} does not start with the boundary", parts.len());
        at += delimiter.len();
        let head_end = at + body[at..].windows(4).position(|w| w == b"\r\n\r\n").expect("part headers end");
        let head = String::from_utf8(body[at..head_end].to_vec()).unwrap();
        assert!(head.lines().any(|l| l.eq_ignore_ascii_case("content-type: image/jpeg")), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
            .expect("content-length")
            .parse()
            .unwrap();
        let data = head_end + 4;
        if body.len() < data + len + 2 {
            break; // the last part, cut by curl's time limit
        }
        assert_eq!(&body[data + len..data + len + 2], b"\r\n", "part {} is not followed by CRLF", parts.len());
        parts.push(body[data..data + len].to_vec());
        at = data + len + 2;
    }
    parts
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn mjpeg_is_framed_jpeg_parts_at_the_capped_rate_and_sse_sends_records_and_stats() {
    let v = Viewer::start(600, 0, &["--serve-fps", "4"]);
    v.wait_live();
    let headers = v.dir.path().join("headers.txt");
    let out = run("curl", &["-s", "--max-time", "4", "-D", headers.to_str().unwrap(), &v.url("/stream.mjpeg")]);
    let head = std::fs::read_to_string(&headers).unwrap();
    let boundary = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: multipart/x-mixed-replace; boundary=").map(|b| b.trim().to_string()))
        .unwrap_or_else(|| panic!("not multipart/x-mixed-replace: {head}"));
    let parts = mjpeg_parts(&out.stdout, &boundary);
    // 4 s at a cap of 4 a second (frames arrive at 10): between 8 and 17 pictures
    assert!((8..=17).contains(&parts.len()), "{} parts in 4 s at --serve-fps 4", parts.len());
    for p in &parts {
        let img = image::load_from_memory_with_format(p, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (768, 576));
    }

    let out = run("curl", &["-s", "-N", "--max-time", "3", &v.url("/api/events")]);
    let text = String::from_utf8(out.stdout).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    let records: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.starts_with("event: record\n"))
        .map(|e| {
            let lines: Vec<&str> = e.lines().collect();
            assert_eq!(lines.len(), 3, "event, id, one data line: {e}");
            let json: serde_json::Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(lines[1], format!("id: {}", json["seq"]));
            json
        })
        .collect();
    assert!(!records.is_empty(), "the current record first: {text}");
    assert!(records[0]["caption"].as_str().unwrap().contains("[["), "{}", records[0]);
    let stats = events.iter().filter(|e| e.starts_with("event: stats\ndata: ")).count();
    assert!(stats >= 2, "a stats event a second: {text}");
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn health_is_503_before_frames_and_after_they_stop() {
    // 20 frames at 10 fps: two seconds of frames, then the server lingers
    let v = Viewer::start(20, 30, &["--health-timeout", "1"]);
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < until {
        let (status, body) = curl_status(&[&v.url("/healthz")]);
        let body = String::from_utf8_lossy(&body).to_string();
        if seen.last().map(|(s, _): &(u16, String)| *s) != Some(status) {
            seen.push((status, body));
        }
        if seen.len() >= 2 && status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // the models load while the server already answers "no frame yet" (seen when the first request comes before
    // the first frame); then frames flow, then they stop
    if seen.first().is_some_and(|(s, b)| *s == 503 && b.starts_with("no frame yet")) {
        seen.remove(0);
    }
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![200, 503], "{seen:?}");
    assert!(seen[0].1.starts_with("ok: last frame"), "{seen:?}");
    assert!(seen[1].1.starts_with("stale: no frame for"), "{seen:?}");
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn the_token_guards_every_path_and_a_refusal_reveals_nothing() {
    let v = Viewer::with_token(600, 0, &[]);
    v.wait_live();
    let token = v.token.clone().unwrap();
    for path in ["/", "/stream.mjpeg", "/frame.jpg", "/api/state", "/api/events", "/api/stats", "/metrics", "/healthz", "/nope"] {
        for args in [
            vec![v.url(path)],
            vec!["-H".into(), "Authorization: Bearer wrong-token-0123456789".into(), v.url(path)],
            vec![format!("{}?token=wrong-token-0123456789", v.url(path))],
            vec!["-H".into(), format!("Authorization: Basic {token}"), v.url(path)],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (status, body) = curl_status(&args);
            assert_eq!((status, body.as_slice()), (401, &b"unauthorized\n"[..]), "{path} {args:?}");
        }
    }
    let bearer = format!("Authorization: Bearer {token}");
    for path in ["/", "/api/state", "/metrics", "/healthz", "/frame.jpg", "/api/stats"] {
        assert_eq!(curl_status(&["-H", &bearer, &v.url(path)]).0, 200, "{path} with the bearer token");
        assert_eq!(curl_status(&[&v.authed(path)]).0, 200, "{path} with ?token=");
    }
    // the streams open too (cut by the time limit: curl's 28)
    let out = run("curl", &["-s", "--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}", &v.authed("/stream.mjpeg")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // only GET (and HEAD)
    assert_eq!(curl_status(&["-X", "POST", "-H", &bearer, &v.url("/api/state")]).0, 405);
    assert_eq!(curl_status(&["-H", &bearer, &v.url("/nope")]).0, 404);
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn stalled_viewers_are_limited_and_cost_the_stream_nothing() {
    let v = Viewer::start(600, 0, &["--serve-max-clients", "3", "--serve-fps", "10"]);
    v.wait_live();
    // three viewers that ask for the MJPEG stream and then read nothing: the client limit is reached
    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", v.port)).unwrap();
            s.write_all(b"GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = curl_status(&[&v.url("/healthz")]);
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (503, "too many clients now"));
    // frames keep flowing while they stall (a frame loop that waited on a viewer would stand still)
    let frames = |v: &Viewer| -> f64 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", v.port)).unwrap();
        s.write_all(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        if r.starts_with("HTTP/1.1 503") {
            return -1.0;
        }
        let json: serde_json::Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        json["frames"].as_f64().unwrap()
    };
    drop(stalled.into_iter().next());
    std::thread::sleep(Duration::from_millis(300));
    let before = frames(&v);
    assert!(before > 0.0, "a slot freed by a closed viewer serves again");
    std::thread::sleep(Duration::from_secs(3));
    let after = frames(&v);
    assert!(after > before, "{before} -> {after}: no frame processed while two viewers stalled");
    let text = String::from_utf8(curl_status(&[&v.url("/metrics")]).1).unwrap();
    let rejected: f64 = text.lines().find_map(|l| l.strip_prefix("pancap_serve_rejected_total ")).unwrap().parse().unwrap();
    assert!(rejected >= 1.0, "{text}");
}

/// A public address without a token is refused before any model loads, with the fix in the message.
#[test]
fn a_public_address_without_a_token_is_refused() {
    let out = common::pancap(&["stream", "--replay", "nothing.mjpeg", "--serve", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--serve-token"), "{err}");
}

#[test]
#[ignore = "needs chromium, promtool (prometheus) and curl: .ci/run installs them and runs these with --ignored"]
fn view_plays_a_recorded_run_under_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let rec = still_recording(dir.path(), 12);
    let records = dir.path().join("run.jsonl");
    let out = common::pancap(&[
        "stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--detectors", "yolox_nano_416", "--no-stuff",
        "--no-discovery", "--no-person-masks", "--no-text", "-o", records.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written: Vec<serde_json::Value> =
        std::fs::read_to_string(&records).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(written.len(), 12);
    // a torn last line (a run killed mid-write elsewhere) is skipped and said
    std::fs::OpenOptions::new().append(true).open(&records).unwrap().write_all(b"{\"kind\":\"upd").unwrap();

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pancap"))
        .args(["view", records.to_str().unwrap(), "--replay", rec.to_str().unwrap(), "--serve", &addr, "--fps", "4"])
        .args(["--linger", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let url = |p: &str| format!("http://{addr}{p}");
    while curl_status(&[&url("/api/state")]).0 != 200 {
        assert!(Instant::now() < until, "pancap view served no record");
        std::thread::sleep(Duration::from_millis(100));
    }
    // the state is one of the run's records, unchanged
    let (_, body) = curl_status(&[&url("/api/state")]);
    let state: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(written.contains(&state), "{state}");
    // the picture is the recording's frame with the record's boxes drawn in the entities' colours
    let (status, jpeg) = curl_status(&[&url("/frame.jpg")]);
    assert_eq!(status, 200);
    let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (768, 576));
    let first = &state["entities"][0];
    let palette = pancap::caption::overlay::colour_of(first["id"].as_u64().unwrap() as u32);
    let b: Vec<f64> = first["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // along the box's top edge (2 px thick), within JPEG's error
    let (x1, x2, y) = ((b[0] * 768.0) as u32, (b[2] * 768.0) as u32, ((b[1] * 576.0).round() as u32).min(575));
    let on_edge = (x1 + 4..x2.saturating_sub(4))
        .filter(|x| (y..=(y + 1).min(575)).any(|yy| img.get_pixel(*x, yy).0.iter().zip(palette).all(|(a, c)| a.abs_diff(c) <= 40)))
        .count();
    assert!(on_edge * 2 > (x2 - x1) as usize, "the box of {first} is not drawn: {on_edge} of {} pixels", x2 - x1);
    // the page shows the recorded caption
    let dom = String::from_utf8(chromium(&["--dump-dom", &url("/")]).stdout).unwrap();
    let captions: Vec<String> = written.iter().map(|r| plain_caption(r["caption"].as_str().unwrap())).collect();
    assert!(captions.contains(&element_text(&dom, "caption")), "{}", element_text(&dom, "caption"));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 line(s) that are not stream records skipped"), "{err}");
}

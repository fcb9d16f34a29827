#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `pancap stream` end to end on recordings built from the development data: stable ids, corrupt frames,
//! dropping under a slow pipeline, and SIGINT finishing cleanly with whole lines.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn video_dir() -> PathBuf {
    common::data("labelme-examples/examples/video_annotation/data_annotated")
}

fn video_frames() -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(video_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

use common::pancap;

fn records(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a whole JSON line")).collect()
}

fn summary(out: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&out.stderr);
    serde_json::from_str(err.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {err}"))
}

#[test]
fn ids_stay_stable_over_the_labelme_video() {
    // the five street-video frames, three times over (forward, backward, forward): a 15-frame recording
    let frames = video_frames();
    let mut data = Vec::new();
    for f in frames.iter().chain(frames.iter().rev()).chain(frames.iter()) {
        data.extend_from_slice(f);
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("street.mjpeg");
    std::fs::write(&rec, &data).unwrap();
    let out = pancap(&["stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--no-stuff", "--summary-json"]);
    let recs = records(&out);
    assert_eq!(recs.len(), 15, "one record per frame with --every-frame");
    let s = summary(&out);
    assert_eq!(s["frames"], 15);
    // the binary counts heap allocations; frames after warm-up give a per-frame figure on both sides
    assert!(s["allocations_per_frame_outside_engines"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["allocations_per_frame_in_engines"].as_f64().unwrap() > 0.0, "{s}");
    // the car and the truck (the annotated vehicles) keep one id each over the whole recording
    for tag in ["car", "truck"] {
        let ids: std::collections::BTreeSet<u64> = recs
            .iter()
            .flat_map(|r| r["entities"].as_array().unwrap().iter())
            .filter(|e| e["tag"] == tag)
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "{tag} ids {ids:?}");
    }
    // sequence numbers in order, capture timestamps present, first record an update
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..15).collect::<Vec<_>>());
    assert_eq!(recs[0]["kind"], "update");
    assert!(recs.iter().all(|r| r["capture_unix_ms"].as_u64().unwrap() > 1_600_000_000_000));
}

#[test]
fn corrupt_frames_are_skipped_and_counted() {
    let frames = video_frames();
    let mut data = frames[0].clone();
    data.extend_from_slice(&frames[1][..frames[1].len() / 2]); // cut mid-scan
    data.extend_from_slice(b"garbage between frames");
    data.extend_from_slice(&frames[2]);
    let mut broken = frames[3].clone(); // structurally whole, but the header is destroyed
    for b in broken.iter_mut().skip(4).take(200) {
        *b = 0x11;
    }
    data.extend_from_slice(&broken);
    data.extend_from_slice(&frames[4][..frames[4].len() - 100]); // cut at the end of the file
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("broken.mjpeg");
    std::fs::write(&rec, &data).unwrap();
    let out = pancap(&["stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--no-stuff", "--summary-json"]);
    let recs = records(&out);
    let s = summary(&out);
    assert_eq!(s["frames"], 2, "{s}");
    assert_eq!(s["corrupt"], 3, "{s}");
    assert_eq!(recs.len(), 2);
}

#[test]
fn a_slow_pipeline_on_a_live_source_drops_stale_frames() {
    let out = pancap(&[
        "stream", "--replay", video_dir().to_str().unwrap(), "--live", "--realtime", "30", "--slow-ms", "400",
        "--no-stuff", "--summary-json",
    ]);
    let s = summary(&out);
    let (frames, dropped) = (s["frames"].as_u64().unwrap(), s["dropped"].as_u64().unwrap());
    assert_eq!(frames + dropped, 5, "{s}");
    assert!(dropped >= 1, "{s}");
    // the same recording replayed (not live) loses nothing
    let s = summary(&pancap(&["stream", "--replay", video_dir().to_str().unwrap(), "--slow-ms", "100", "--no-stuff", "--summary-json"]));
    assert_eq!((s["frames"].as_u64(), s["dropped"].as_u64()), (Some(5), Some(0)), "{s}");
}

#[test]
fn sigint_finishes_the_frame_in_flight_and_flushes_whole_lines() {
    interrupt_with("-INT");
}

#[test]
fn sigterm_does_the_same() {
    interrupt_with("-TERM");
}

fn interrupt_with(signal: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pancap"))
        .arg("--models-dir")
        .arg(common::models_dir())
        .args(["stream", "--replay", video_dir().to_str().unwrap(), "--realtime", "1", "--every-frame", "--no-stuff", "--summary-json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    serde_json::from_str::<serde_json::Value>(&first).expect("first record whole");
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    for line in rest.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line whole");
    }
    let s: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(s["interrupted"], true, "{s}");
    assert!(s["frames"].as_u64().unwrap() < 5, "stopped early: {s}");
}

#[test]
fn yuyv_recordings_need_a_size_and_cameras_need_the_feature() {
    let out = pancap(&["stream", "--replay", "nonexistent.yuyv"]);
    assert!(!out.status.success());
    let out = pancap(&["stream", "--replay", "Cargo.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown recording format"), "{err}");
    if !cfg!(feature = "camera") {
        let out = pancap(&["stream", "--device", "/dev/video0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--features camera"), "{err}");
    }
}

#[test]
fn text_read_on_its_own_thread_is_carried_to_the_frames_in_between() {
    // 30 frames paced at 10 fps (3 s): the reader, on its own thread, is handed a frame every 3 frames when idle
    let sign = std::fs::read(common::data("coco-val2017-dev/images/000000226111.jpg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("sign.mjpeg");
    std::fs::write(&rec, vec![sign; 30].concat()).unwrap();
    let out = pancap(&[
        "stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--no-stuff", "--no-discovery", "--no-person-masks",
        "--text-every", "3", "--realtime", "10", "--summary-json",
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 30);
    assert_eq!(summary(&out)["text_failed"], 0);
    // the detector loop does not wait for the reader: once its first lines arrive they are on every later frame
    let has_text = |r: &serde_json::Value| r["caption"].as_str().unwrap().contains("reading 'NO BICYCLES SKATES OR SKATEBOARDS");
    let first = recs.iter().position(has_text).unwrap_or_else(|| panic!("no frame carries the sign's text"));
    for r in &recs[first..] {
        assert!(has_text(r), "frame {}: {}", r["seq"], r["caption"]);
    }
    // each block of text is one tracked entity over the recording
    let text_ids = |r: &serde_json::Value| -> std::collections::BTreeSet<u64> {
        r["entities"].as_array().unwrap().iter().filter(|e| e["tag"] == "text").map(|e| e["id"].as_u64().unwrap()).collect()
    };
    let all: std::collections::BTreeSet<u64> = recs.iter().flat_map(text_ids).collect();
    assert!(!all.is_empty() && all == text_ids(&recs[29]), "text ids {all:?} against the last frame's {:?}", text_ids(&recs[29]));
}

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

/// The entity of `tag` in a record whose box centre is nearest `x` (normalised), if any.
fn entity_near<'a>(rec: &'a serde_json::Value, tag: &str, x: f64) -> Option<&'a serde_json::Value> {
    let cx = |e: &serde_json::Value| 0.5 * (e["box"][0].as_f64().unwrap() + e["box"][2].as_f64().unwrap());
    rec["entities"].as_array().unwrap().iter().filter(|e| e["tag"] == tag).min_by(|a, b| (cx(a) - x).abs().total_cmp(&(cx(b) - x).abs()))
}

#[test]
fn the_street_truck_moves_left_forward_and_right_reversed_while_the_people_at_the_kerb_stand_still() {
    // the five street-video frames forward then backward, said to be 5 frames a second (the motion window is a
    // second): the truck drives left across the frames, so backwards it drives right
    let frames = video_frames();
    let mut data = Vec::new();
    for f in frames.iter().chain(frames.iter().rev()) {
        data.extend_from_slice(f);
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("street.mjpeg");
    std::fs::write(&rec, &data).unwrap();
    let args = ["stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--no-stuff", "--no-text", "--no-discovery", "--recording-fps", "5"];
    let recs = records(&pancap(&args));
    assert_eq!(recs.len(), 10);
    let truck = |i: usize| entity_near(&recs[i], "truck", 0.7).and_then(|e| e.get("motion")).cloned();
    let forward = truck(4).expect("the truck's motion is measured by the fifth frame");
    assert_eq!((forward["state"].as_str(), forward["direction"].as_str()), (Some("moving"), Some("left")), "{forward}");
    let backward = truck(9).expect("and at the end");
    assert_eq!((backward["state"].as_str(), backward["direction"].as_str()), (Some("moving"), Some("right")), "{backward}");
    // the two people waiting at the kerb (x ≈ 0.26 and 0.38) never move
    for (i, r) in recs.iter().enumerate().skip(4) {
        for x in [0.26, 0.38] {
            let m = entity_near(r, "person", x).and_then(|e| e.get("motion")).cloned();
            if let Some(m) = m {
                assert_eq!(m["state"], "standing-still", "record {i}, person at {x}: {m}");
            }
        }
    }
    // a record caption says the motion
    assert!(recs.iter().any(|r| r["caption"].as_str().unwrap().contains("truck") && r["caption"].as_str().unwrap().contains("moves to the left")));
    let events: Vec<&serde_json::Value> = recs.iter().flat_map(|r| r["motion_events"].as_array().into_iter().flatten()).collect();
    // what was in view from the start did not enter; the man with the umbrella walking in from the left did
    assert!(!events.iter().any(|e| e["kind"] == "entered" && e["tag"] == "truck"), "{events:?}");
    assert!(events.iter().any(|e| e["kind"] == "entered" && e["tag"] == "person" && e["side"] == "left"), "{events:?}");
    // the truck turning round is a change of direction: a record says it without --every-frame
    let changes = records(&pancap(&args[..args.len()].iter().filter(|a| **a != "--every-frame").copied().collect::<Vec<_>>()));
    let last = changes.last().unwrap();
    assert!(last["caption"].as_str().unwrap().contains("moves to the right"), "{}", last["caption"]);
}

#[test]
fn a_camera_pan_over_a_still_photo_moves_nobody() {
    // a 440-pixel window sliding right over the darknet photo (a man, a dog, a horse, a sheep) 12 pixels a frame:
    // everything in view slides left together; with the camera's motion taken out, nothing walks or moves
    let photo = image::open(common::data("darknet-images-unannotated/person.jpg")).unwrap().to_rgb8();
    let mut data = Vec::new();
    for i in 0..14u32 {
        let crop = image::imageops::crop_imm(&photo, 12 * i, 0, 440, photo.height()).to_image();
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 90).encode_image(&crop).unwrap();
        data.extend_from_slice(&jpg);
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("pan.mjpeg");
    std::fs::write(&rec, &data).unwrap();
    let args = ["stream", "--replay", rec.to_str().unwrap(), "--every-frame", "--no-stuff", "--no-text", "--no-discovery", "--recording-fps", "10"];
    let recs = records(&pancap(&args));
    assert_eq!(recs.len(), 14);
    let mut measured = 0;
    for r in &recs[7..] {
        for e in r["entities"].as_array().unwrap() {
            if let Some(m) = e.get("motion") {
                measured += 1;
                assert!(m["state"] == "standing-still" || m["state"] == "stopped", "{}: {m}", e["tag"]);
            }
        }
        assert!(!r["caption"].as_str().unwrap().contains("walks"), "{}", r["caption"]);
    }
    assert!(measured >= 7, "the man and the horse are measured in the last frames");
}

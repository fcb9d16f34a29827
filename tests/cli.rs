#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The `pancap` binary end to end: formats, overlays, bad input, model provisioning errors.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::pancap;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG whose header claims `w × h` pixels (a decompression bomb if it were decoded).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // a tiny IDAT (a zlib stream holding one zero byte) and IEND, so the header parses like a real file's
    for (kind, data) in [(&b"IDAT"[..], &[0x78, 0x01, 0x01, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x01][..]), (b"IEND", &[])] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    png
}

fn mixed_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mixed");
    std::fs::create_dir(&dir).unwrap();
    let dog = std::fs::read(common::data("darknet-images-unannotated/dog.jpg")).unwrap();
    std::fs::write(dir.join("a_good.jpg"), &dog).unwrap();
    std::fs::write(dir.join("b_truncated.jpg"), &dog[..dog.len() / 2]).unwrap();
    std::fs::write(dir.join("c_empty.jpg"), b"").unwrap();
    std::fs::write(dir.join("d_notes.jpg"), b"not an image at all\n").unwrap();
    std::fs::write(dir.join("README.txt"), b"a text file beside the photos\n").unwrap();
    std::fs::write(dir.join("e_bomb.png"), png_claiming(100_000, 100_000)).unwrap();
    std::fs::write(dir.join("f_zero.png"), png_claiming(0, 10)).unwrap();
    std::fs::write(dir.join(".hidden.jpg"), b"ignored").unwrap();
    (tmp, dir)
}

#[test]
fn a_directory_of_mixed_content_captions_the_good_and_names_each_bad_file() {
    let (_tmp, dir) = mixed_dir();
    let out = pancap(&["caption", dir.to_str().unwrap(), "--format", "jsonl", "--no-stuff", "--no-discovery"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "a failure is reported in the exit status\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0]["image"].as_str().unwrap().ends_with("a_good.jpg"));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 5, "{stderr}");
    for (name, why) in [
        ("b_truncated.jpg", "truncated"),
        ("c_empty.jpg", "empty"),
        ("d_notes.jpg", "not an image"),
        ("e_bomb.png", "100000x100000"),
        ("f_zero.png", "dimensions"),
    ] {
        let line = errors.iter().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no error for {name}: {stderr}"));
        assert!(line.contains(why), "{line}");
    }
    assert!(!stderr.contains("hidden"), "hidden files are skipped");
    assert!(!stderr.contains("error: ") || !stderr.contains("README.txt"), "non-image files in a directory are passed over");
    assert!(stderr.contains("1 non-image file(s) in directories passed over"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn a_missing_input_is_an_error_but_the_rest_still_run() {
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let tmp = tempfile::tempdir().unwrap();
    let named = tmp.path().join("named.txt");
    std::fs::write(&named, b"text").unwrap();
    let out = pancap(&["caption", "/nonexistent/x.jpg", named.to_str().unwrap(), dog.to_str().unwrap(), "--no-stuff", "--no-discovery"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/x.jpg: no such file"));
    assert!(text(&out.stderr).contains("named.txt: not an image"), "a file named explicitly is always tried");
    assert!(text(&out.stdout).contains("dog [["));
}

#[test]
fn json_sapancap_and_overlay_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let img = common::data("darknet-images-unannotated/person.jpg");
    let json = tmp.path().join("out.json");
    let overlays = tmp.path().join("ov");
    let out = pancap(&[
        "caption",
        img.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
        "--overlay",
        overlays.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let item = &v[0];
    assert_eq!(item["image"].as_str(), img.to_str());
    assert_eq!((item["width"].as_u64(), item["height"].as_u64()), (Some(640), Some(424)));
    for e in item["entities"].as_array().unwrap() {
        for key in ["id", "tag", "kind", "score", "box", "sources", "attributes"] {
            assert!(e.get(key).is_some(), "entity lacks {key}: {e}");
        }
        let b: Vec<f64> = e["box"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(b.iter().all(|x| (0.0..=1.0).contains(x)) && b[0] <= b[2] && b[1] <= b[3]);
        if e["kind"] == "stuff" {
            assert!(e["mask"]["counts"].is_array());
        }
    }
    for key in ["relations", "global", "caption", "timings_ms"] {
        assert!(item.get(key).is_some(), "{key}");
    }
    assert!(item["timings_ms"].as_array().unwrap().iter().any(|t| t["stage"] == "inference"));
    let png = overlays.join("person.overlay.png");
    let ov = image::open(&png).unwrap();
    assert_eq!((ov.width(), ov.height()), (640, 424));
    assert!(ov.to_rgb8() != image::open(&img).unwrap().to_rgb8(), "overlay draws something");

    let sa = tmp.path().join("sa.json");
    let out = pancap(&["caption", img.to_str().unwrap(), "--format", "sapancap", "-o", sa.to_str().unwrap(), "--no-discovery"]);
    assert!(out.status.success());
    let v: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&sa).unwrap()).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["image_path"].as_str(), img.to_str());
    assert!(v[0]["model_response"].as_str().unwrap().contains("[["));
}

#[test]
fn coco_results_cover_the_listed_images_with_low_scores_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::data("coco-val2017-dev/images");
    let instances = common::data("coco-val2017-dev/instances.json");
    // two listed images and one unlisted image
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for f in ["000000397133.jpg", "000000037777.jpg"] {
        std::fs::copy(dir.join(f), imgs.join(f)).unwrap();
    }
    std::fs::copy(common::data("darknet-images-unannotated/dog.jpg"), imgs.join("dog.jpg")).unwrap();
    let res = tmp.path().join("res.json");
    let out = pancap(&[
        "caption", imgs.to_str().unwrap(), "--format", "coco", "--coco-instances", instances.to_str().unwrap(),
        "-o", res.to_str().unwrap(), "--no-stuff",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 not in the COCO file"));
    let v: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&res).unwrap()).unwrap();
    let ids: std::collections::BTreeSet<u64> = v.iter().map(|r| r["image_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![37777, 397133]);
    let min = v.iter().map(|r| r["score"].as_f64().unwrap()).fold(1.0, f64::min);
    assert!(min < 0.05, "low-score detections are kept for COCO evaluation (min {min})");
    assert!(v.iter().all(|r| r["bbox"].as_array().unwrap().len() == 4 && r["category_id"].as_u64().unwrap() <= 90));
}

#[test]
fn coco_format_without_instances_is_a_usage_error() {
    let out = pancap(&["caption", "x.jpg", "--format", "coco"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--coco-instances"));
}

#[test]
fn models_verify_names_a_tampered_file_and_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let mirror = common::shared().join("models");
    let out = Command::new(env!("CARGO_BIN_EXE_pancap"))
        .args(["--models-dir", models.to_str().unwrap(), "models", "pull", "--only", "yolox_nano_416", "--from"])
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = models.join("detection/yolox_nano_416.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pancap"))
        .args(["--models-dir", models.to_str().unwrap(), "models", "verify", "--only", "yolox_nano_416"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("yolox_nano_416.onnx"), "{err}");
    assert!(err.contains("695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"), "expected hash: {err}");
    let actual = pancap::models::sha256_of(&file).unwrap();
    assert!(err.contains(&actual) && err.contains("models pull"), "actual hash {actual} and the fix: {err}");
    // captioning refuses the tampered model
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_pancap"))
        .args(["--models-dir", models.to_str().unwrap(), "caption", dog.to_str().unwrap(), "--detectors", "yolox_nano_416", "--no-stuff"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("sha256"));
}

#[test]
fn models_list_names_every_manifest() {
    let out = pancap(&["models", "list"]);
    let s = text(&out.stdout);
    for m in ["yolox_nano_416", "picodet_s_416_coco", "nanodet_m_416", "deimv2_hgnetv2_femto_coco", "deeplabv3_mnv2_ade20k32_uint8", "deeplabv3_mnv2_ade20k32_f32"] {
        assert!(s.contains(m), "{s}");
    }
}

fn segment_ids(png: &std::path::Path) -> (u32, u32, Vec<u32>) {
    pancap::eval::pq::read_segment_png(png).unwrap()
}

#[test]
fn coconut_format_grounds_every_mention_in_the_panoptic_png() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::data("darknet-images-unannotated/dog.jpg");
    let pan = dir.path().join("pan");
    let out = pancap(&["caption", img.to_str().unwrap(), "--format", "coconut", "--panoptic-dir", pan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = &v[0];
    let caption = rec["caption"].as_str().unwrap();
    assert!(!caption.contains("[["), "{caption}");
    let (w, h, ids) = segment_ids(&pan.join("dog.png"));
    assert_eq!((w, h), (rec["width"].as_u64().unwrap() as u32, rec["height"].as_u64().unwrap() as u32));
    let segs = rec["segments_info"].as_array().unwrap();
    // each segment's area is exactly its pixels in the PNG, and it carries a region caption
    for s in segs {
        let id = s["id"].as_u64().unwrap() as u32;
        let area = ids.iter().filter(|&&p| p == id).count() as u64;
        assert_eq!(area, s["area"].as_u64().unwrap(), "segment {id}");
        assert!(s["description"].as_str().unwrap().contains(s["tag"].as_str().unwrap()), "{s}");
    }
    // every `<id: ...>` mention names a segment of the PNG, and the dog, bicycle and car are among them
    let mentioned: std::collections::BTreeSet<u32> =
        caption.split('<').skip(1).filter_map(|p| p.split(':').next()?.parse().ok()).collect();
    assert!(!mentioned.is_empty());
    for id in &mentioned {
        assert!(segs.iter().any(|s| s["id"].as_u64() == Some(u64::from(*id))), "<{id}:> is not a segment: {caption}");
    }
    for tag in ["dog", "bicycle", "car"] {
        assert!(segs.iter().any(|s| s["tag"] == tag && s["isthing"] == 1), "{tag} missing");
    }
    // without a directory for the PNGs the format is refused up front
    let out = pancap(&["caption", img.to_str().unwrap(), "--format", "coconut"]);
    assert!(!out.status.success() && text(&out.stderr).contains("--panoptic-dir"));
}

#[test]
fn coco_panoptic_format_is_read_back_as_a_panoptic_prediction_with_descriptions() {
    let dir = tempfile::tempdir().unwrap();
    let img = common::data("coco-panoptic-dev/images/000000439180.jpg");
    let pan = dir.path().join("pan");
    let json = dir.path().join("pred.json");
    let out = pancap(&[
        "caption", img.to_str().unwrap(), "--format", "coco-panoptic", "--panoptic-dir", pan.to_str().unwrap(), "-o",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pred = pancap::eval::pq::PanopticJson::read(&json).unwrap();
    assert_eq!(pred.categories.len(), 133);
    // the image id is COCO's, from the numeric file name, in the image list and the annotation alike
    assert_eq!((pred.images[0].id, pred.annotations[0].image_id), (439180, 439180));
    let ann = &pred.annotations[0];
    let (_, _, ids) = segment_ids(&pan.join(&ann.file_name));
    let raw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let segs = raw["annotations"][0]["segments_info"].as_array().unwrap();
    assert!(segs.iter().all(|s| !s["description"].as_str().unwrap().is_empty()));
    // every painted id is a listed segment with a real category; horses and people are there
    let listed: std::collections::BTreeSet<u32> = ann.segments_info.iter().map(|s| s.id).collect();
    assert!(ids.iter().all(|p| *p == 0 || listed.contains(p)));
    for cat in [1, 19] {
        assert!(ann.segments_info.iter().filter(|s| s.category_id == cat).count() >= 5, "category {cat}");
    }
    let riders = segs.iter().filter(|s| s["description"].as_str().unwrap().contains("riding a horse")).count();
    assert!(riders >= 5, "{riders} region captions say riding");

    // ids from a reference file win over the file name; an image with neither is an error naming the fix
    let refs = dir.path().join("refs.json");
    std::fs::write(&refs, r#"{"images": [{"id": 7, "file_name": "000000439180.jpg", "width": 1, "height": 1}]}"#).unwrap();
    let json2 = dir.path().join("pred2.json");
    let out = pancap(&[
        "caption", img.to_str().unwrap(), "--format", "coco-panoptic", "--panoptic-dir", pan.to_str().unwrap(), "-o",
        json2.to_str().unwrap(), "--coco-instances", refs.to_str().unwrap(), "--no-stuff", "--no-text",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pred = pancap::eval::pq::PanopticJson::read(&json2).unwrap();
    assert_eq!(pred.annotations[0].image_id, 7);
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = pancap(&["caption", dog.to_str().unwrap(), "--format", "coco-panoptic", "--panoptic-dir", pan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("dog.jpg: has no COCO image id") && text(&out.stderr).contains("--coco-instances"), "{}", text(&out.stderr));
}

#[test]
fn read_prints_one_json_line_per_image_with_the_text_lines() {
    let sign = common::data("coco-val2017-dev/images/000000226111.jpg");
    let dog = common::data("darknet-images-unannotated/dog.jpg");
    let out = pancap(&["read", sign.to_str().unwrap(), dog.to_str().unwrap(), "/nonexistent/x.jpg"]);
    assert_eq!(out.status.code(), Some(1), "a missing image fails the run: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nonexistent/x.jpg"), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    let lines = records[0]["lines"].as_array().unwrap();
    let words: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(words.contains(&"SKATEBOARDS"), "{words:?}");
    let l = &lines[0];
    assert_eq!(l["quad"].as_array().unwrap().len(), 4);
    assert!(l["score"].as_f64().unwrap() >= 0.88 && l["box"]["x2"].as_f64() > l["box"]["x1"].as_f64());
    assert_eq!(records[1]["lines"].as_array().unwrap().len(), 0, "no text on the dog photo");
    // an unknown reader is named
    let out = pancap(&["read", sign.to_str().unwrap(), "--reader", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ppocr_v4"), "{}", text(&out.stderr));
}

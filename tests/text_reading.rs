#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Text reading (PP-OCR) on the real models: signs and a shelf label in ../shared/data, and a rendered sign
//! with one line upside down (the orientation classifier must turn it over); then the text in captions.

mod common;

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use pancap::geometry::BoxF;
use pancap::perceive::ocr::{OcrParams, TextLine, TextReader};
use pancap::pipeline::{load_text_reader, DEFAULT_TEXT_READER};
use pancap::scene::Kind;
use pancap::source::{read_image, DecodeLimits};
use pancap::timing::Timings;
use std::sync::Mutex;

fn reader() -> std::sync::MutexGuard<'static, TextReader> {
    static R: std::sync::OnceLock<Mutex<TextReader>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let r = load_text_reader(DEFAULT_TEXT_READER, &common::models_dir(), &Default::default(), OcrParams::default());
        Mutex::new(r.expect("text reader loads"))
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

fn read(img: &RgbImage) -> Vec<TextLine> {
    let mut t = Timings::default();
    reader().read(img, &mut t).unwrap()
}

fn read_file(rel: &str) -> Vec<TextLine> {
    read(&read_image(&common::data(rel), &DecodeLimits::default()).unwrap().rgb)
}

fn texts(lines: &[TextLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

#[test]
fn the_sidewalk_sign_is_read_line_by_line_in_reading_order() {
    let lines = read_file("coco-val2017-dev/images/000000226111.jpg");
    let t = texts(&lines);
    for want in ["NO", "BICYCLES", "SKATES", "OR", "SKATEBOARDS", "ON SIDEWALKS IN THIS AREA"] {
        assert!(t.contains(&want), "{want} missing from {t:?}");
    }
    let at = |w: &str| t.iter().position(|x| *x == w).unwrap();
    assert!(at("NO") < at("BICYCLES") && at("BICYCLES") < at("SKATES") && at("SKATES") < at("OR") && at("OR") < at("SKATEBOARDS"));
    // where the word is on the sign (RapidOCR's box for it: [44, 100, 326, 148])
    let b = lines.iter().find(|l| l.text == "BICYCLES").unwrap().bbox;
    assert!(b.iou(&BoxF::new(44.0, 100.0, 326.0, 148.0)) > 0.8, "{b:?}");
    assert!(lines.iter().all(|l| l.score >= OcrParams::default().min_score));
}

#[test]
fn the_labelme_shelf_photo_shows_its_highland_label_and_the_campaign_bus_its_name() {
    let shelf = read_file("labelme-examples/examples/tutorial/apc2016_obj3.jpg");
    assert!(shelf.iter().any(|l| l.text.starts_with("Highland")), "{:?}", texts(&shelf));
    let bus = read_file("coco-val2017-dev/images/000000143931.jpg");
    let t = texts(&bus);
    assert!(t.contains(&"SCOTT") && t.contains(&"BROWN") && t.contains(&"HE'S FOR US"), "{t:?}");
    // photos without text read nothing
    assert!(read_file("darknet-images-unannotated/dog.jpg").is_empty());
}

/// Black 8 × 8 glyphs scaled by `scale` onto `img` at (x, y).
fn render(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap();
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as u32 * 8 + col) * scale + dx;
                            let py = y + row as u32 * scale + dy;
                            img.put_pixel(px, py, Rgb([20, 20, 20]));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_rendered_sign_is_read() {
    let mut img = RgbImage::from_pixel(640, 480, Rgb([235, 235, 225]));
    render(&mut img, "EXIT 24", 60, 60, 7);
    render(&mut img, "STREET", 60, 300, 5);
    let lines = read(&img);
    // the wide gap of the 8 × 8 font splits "EXIT 24" into two lines
    assert_eq!(texts(&lines), ["EXIT", "24", "STREET"]);
    assert!(lines.iter().all(|l| !l.flipped));
    assert!(lines[2].bbox.iou(&BoxF::new(60.0, 300.0, 60.0 + 6.0 * 8.0 * 5.0, 340.0)) > 0.6, "{:?}", lines[2].bbox);
}

#[test]
fn an_upside_down_photo_is_read_after_turning_its_lines_over() {
    let frame = read_image(&common::data("coco-val2017-dev/images/000000226111.jpg"), &DecodeLimits::default()).unwrap();
    let lines = read(&image::imageops::rotate180(&frame.rgb));
    for want in ["BICYCLES", "SKATEBOARDS", "ON SIDEWALKS IN THIS AREA"] {
        let line = lines.iter().find(|l| l.text == want).unwrap_or_else(|| panic!("{want} missing from {:?}", texts(&lines)));
        assert!(line.flipped, "{want} was read without turning it over");
    }
}

#[test]
fn captions_carry_the_text_on_its_entity() {
    let mut pipeline = pancap::Pipeline::load(common::config()).unwrap();
    let frame = read_image(&common::data("coco-val2017-dev/images/000000226111.jpg"), &DecodeLimits::default()).unwrap();
    let c = pipeline.process(&frame, Timings::default()).unwrap().caption;
    let sign = c
        .entities
        .iter()
        .find(|e| e.attributes.text.as_ref().is_some_and(|t| t.text.contains("BICYCLES SKATES OR SKATEBOARDS")))
        .unwrap_or_else(|| panic!("no entity reads the sign: {:#?}", c.entities.iter().map(|e| (&e.tag, &e.attributes.text)).collect::<Vec<_>>()));
    let text = sign.attributes.text.as_ref().unwrap();
    assert!(text.text.starts_with("NO BICYCLES"), "{}", text.text);
    assert!(sign.mask.is_some() && sign.kind == Kind::Thing);
    assert!(c.caption.contains(&format!("{}, reading '{}'", sign.box_text(), text.text)), "{}", c.caption);
    assert!(sign.description.contains(&format!("reading '{}'", text.text)), "{}", sign.description);
    // the self-check's structured reading carries it as an attribute
    let content = pancap::score::Content::from_caption(&c);
    assert!(content.attributes.iter().any(|a| a.value.starts_with("text 'no bicycles")));
    let from_text = pancap::score::Content::from_text(&c.caption, None);
    assert!(from_text.attributes.iter().any(|a| a.value.starts_with("text 'no bicycles")), "{:?}", from_text.attributes);
}

//! Criterion benches of the pure stages across input sizes: letterbox + tensor conversion, the YOLOX and GFL
//! decoders, cross-detector merge, the resizer's two passes, colour naming, caption writing, stuff regions from a label map. Run:
//! `cargo bench --bench stages`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pancap::engine::{Tensor, TensorData};
use pancap::geometry::{BoxF, Letterbox, ResizeMode};
use pancap::models::Manifest;
use pancap::perceive::decode::{decode_gfl, decode_yolox, nms, DecodeParams, Detection};
use pancap::perceive::merge::{merge, MergeParams};
use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use pancap::perceive::preprocess::preprocess;
use pancap::perceive::resize::{RgbResizer, RgbView, RgbViewMut};
use pancap::scene::attributes::{dominant_colour, Illuminant, Region};
use pancap::perceive::masks::RleLookup;
use pancap::perceive::stuff::{stuff_regions, upsample_argmax, LabelMap, StuffParams, StuffPixels};
use pancap::scene::plausible::plausible_stuff;
use std::hint::black_box;

/// Deterministic pseudo-random values (xorshift), so runs compare like for like.
fn noise(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * scale
        })
        .collect()
}

fn image(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]))
}

fn bench_preprocess(c: &mut Criterion) {
    let yolox = Manifest::by_name("yolox_nano_416").unwrap();
    let seg = Manifest::by_name("deeplabv3_mnv2_ade20k32_uint8").unwrap();
    let mut g = c.benchmark_group("preprocess");
    for (w, h) in [(640, 480), (1280, 720), (1920, 1080)] {
        let img = image(w, h);
        g.bench_with_input(BenchmarkId::new("yolox_f32_nchw", format!("{w}x{h}")), &img, |b, img| {
            b.iter(|| preprocess(black_box(img), &yolox.input).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("segmenter_u8_nhwc", format!("{w}x{h}")), &img, |b, img| {
            b.iter(|| preprocess(black_box(img), &seg.input).unwrap())
        });
    }
    g.finish();
    // the letterbox's resize alone, side by side: the image crate's Triangle (what pancap used first),
    // fast_image_resize's SIMD bilinear convolution (what it used next: the same bytes, tables built per call),
    // and pancap's resizer with its tables and output kept (what it uses)
    let mut g = c.benchmark_group("resize_to_416");
    for (w, h) in [(640, 480), (1280, 720), (1920, 1080)] {
        let img = image(w, h);
        let (tw, th) = (416, (416 * h / w).max(1));
        g.bench_with_input(BenchmarkId::new("image_triangle", format!("{w}x{h}")), &img, |b, img| {
            b.iter(|| image::imageops::resize(black_box(img), tw, th, image::imageops::FilterType::Triangle))
        });
        resize_side_by_side(&mut g, ("fast_image_resize_bilinear", "pancap_kept_tables"), &format!("{w}x{h}"), &img, (tw, th));
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let lb = Letterbox::new(640, 480, 416, 416, ResizeMode::LetterboxTopLeft);
    let mut g = c.benchmark_group("decode");
    for threshold in [0.01f32, 0.3] {
        let p = DecodeParams { score_threshold: threshold, max_candidates: 2000, num_classes: 80 };
        let mut v = noise(3549 * 85, 7, 1.0);
        for r in v.chunks_exact_mut(85) {
            r[0] -= 0.5;
            r[1] -= 0.5;
            r[4] *= 0.2; // mostly low objectness, like a real frame
        }
        let t = Tensor::new(vec![1, 3549, 85], TensorData::F32(v)).unwrap();
        g.bench_with_input(BenchmarkId::new("yolox", threshold), &t, |b, t| {
            let mut out = Vec::new();
            b.iter(|| decode_yolox(black_box(t), &[8, 16, 32], &lb, &p, &mut out).unwrap())
        });
        let mut outs = Vec::new();
        for (i, n) in [2704usize, 676, 169, 49].iter().enumerate() {
            let cls: Vec<f32> = noise(n * 80, 11 + i as u32, 0.35);
            outs.push(Tensor::new(vec![1, *n, 80], TensorData::F32(cls)).unwrap());
        }
        for (i, n) in [2704usize, 676, 169, 49].iter().enumerate() {
            outs.push(Tensor::new(vec![1, *n, 32], TensorData::F32(noise(n * 32, 21 + i as u32, 4.0))).unwrap());
        }
        g.bench_with_input(BenchmarkId::new("gfl", threshold), &outs, |b, outs| {
            let mut out = Vec::new();
            b.iter(|| decode_gfl(black_box(outs), &[8, 16, 32, 64], 7, &lb, &p, &mut out).unwrap())
        });
    }
    g.finish();
}

fn detections(n: usize, seed: u32) -> Vec<Detection> {
    let v = noise(n * 6, seed, 1.0);
    v.chunks_exact(6)
        .map(|r| {
            let (x, y) = (r[0] * 600.0, r[1] * 440.0);
            Detection { bbox: BoxF::new(x, y, x + 20.0 + r[2] * 200.0, y + 20.0 + r[3] * 200.0), score: r[4], class: (r[5] * 10.0) as usize }
        })
        .collect()
}

fn bench_nms_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("nms_merge");
    for n in [50usize, 100, 300] {
        let a = detections(n, 3);
        let b = detections(n, 5);
        g.bench_with_input(BenchmarkId::new("nms", n), &a, |bch, a| bch.iter(|| {
            let mut d = black_box(a.clone());
            nms(&mut d, 0.45, 100);
            d
        }));
        g.bench_with_input(BenchmarkId::new("merge_two_detectors", n), &(a, b), |bch, (a, b)| {
            bch.iter(|| merge(black_box(&mut [a.clone(), b.clone()]), &MergeParams::default()))
        });
    }
    g.finish();
}

/// A label map like a segmenter's: horizontal bands of sky, tree, grass and road with a wavy border, specks of
/// water scattered over the road, 1280x720.
fn label_map(w: u32, h: u32) -> LabelMap {
    let specks = noise((w * h / 400) as usize, 11, (w * h) as f32);
    let mut classes: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let wave = ((x as f32 / 40.0).sin() * 12.0) as i32;
            match y as i32 + wave {
                v if v < h as i32 / 4 => 3,
                v if v < h as i32 / 2 => 5,
                v if v < 3 * h as i32 / 4 => 10,
                _ => 7,
            }
        })
        .collect();
    for s in specks {
        if let Some(c) = classes.get_mut(s as usize) {
            *c = 22;
        }
    }
    LabelMap { width: w, height: h, classes }
}

/// The segmenter head on 32 classes of 128×128 logit codes, ×4 to 512×512: a Voronoi-like scene (each class
/// highest near its own centre, as a label map of regions) and pure noise (every cell on a boundary).
fn bench_segmenter_head(c: &mut Criterion) {
    let (classes, h, w) = (32usize, 128usize, 128usize);
    let centres = noise(2 * classes, 11, 128.0);
    let mut regions = vec![0u8; classes * h * w];
    for k in 0..classes {
        let (cx, cy) = (centres[2 * k], centres[2 * k + 1]);
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                regions[k * h * w + y * w + x] = (255.0 - d.min(255.0)) as u8;
            }
        }
    }
    let random: Vec<u8> = noise(classes * h * w, 5, 255.0).into_iter().map(|v| v as u8).collect();
    let mut g = c.benchmark_group("segmenter_head");
    let mut labels = Vec::new();
    for (name, codes) in [("regions", &regions), ("noise", &random)] {
        g.bench_function(BenchmarkId::new("upsample_argmax_32x128x128_x4", name), |bch| {
            bch.iter(|| upsample_argmax(black_box(codes), (classes, h, w), 4, &mut labels).unwrap())
        });
    }
    g.finish();
}

fn bench_stuff(c: &mut Criterion) {
    let labels = pancap::models::LabelSet::Ade20k32.labels();
    let mut g = c.benchmark_group("stuff");
    for (w, h) in [(640u32, 360u32), (1280, 720)] {
        let map = label_map(w, h);
        let claimed = vec![false; (w * h) as usize];
        let params = StuffParams::default();
        g.bench_with_input(BenchmarkId::new("regions", format!("{w}x{h}")), &map, |bch, map| {
            bch.iter(|| stuff_regions(black_box(map), &claimed, |c| c != 0, &params))
        });
        let found = stuff_regions(&map, &claimed, |c| c != 0, &params);
        let px = StuffPixels::new(&map, &found);
        g.bench_with_input(BenchmarkId::new("plausible_and_rles", format!("{w}x{h}")), &found, |bch, found| {
            bch.iter(|| {
                let (kept, _) = plausible_stuff(found.regions.clone(), px, |c| labels.name(c), &[]);
                px.rles(black_box(&kept))
            })
        });
        let rles = px.rles(&found.regions);
        g.bench_with_input(BenchmarkId::new("rle_lookup_1000_points", format!("{w}x{h}")), &rles, |bch, rles| {
            bch.iter(|| {
                let lookups: Vec<RleLookup> = rles.iter().filter_map(RleLookup::new).collect();
                (0..1000u32).filter(|i| lookups.iter().any(|l| l.get(i * 7 % w, i * 13 % h))).count()
            })
        });
    }
    g.finish();
}

fn bench_colour(c: &mut Criterion) {
    let img = image(1280, 720);
    let mut g = c.benchmark_group("colour");
    for side in [50f32, 200.0, 700.0] {
        let b = BoxF::new(10.0, 10.0, 10.0 + side, 10.0 + side.min(700.0));
        g.bench_with_input(BenchmarkId::new("box_core", side as u32), &b, |bch, b| {
            bch.iter(|| dominant_colour(black_box(&img), Region::BoxCore(*b), 0.35, &Illuminant::NEUTRAL))
        });
    }
    g.bench_function("illuminant_estimate_1280x720", |bch| bch.iter(|| Illuminant::estimate(black_box(&img))));
    g.finish();
}

fn bench_pixel_conversion(c: &mut Criterion) {
    use pancap::source::pixel::{planar_to_rgb, yuyv_to_rgb, Chroma};
    let mut g = c.benchmark_group("pixel");
    for (w, h) in [(320u32, 240u32), (640, 480), (1280, 720), (1920, 1080)] {
        let yuyv: Vec<u8> = (0..w * h * 2).map(|i| (i * 7 % 251) as u8).collect();
        g.bench_with_input(BenchmarkId::new("yuyv_to_rgb", format!("{w}x{h}")), &yuyv, |b, d| {
            b.iter(|| yuyv_to_rgb(black_box(d), w, h))
        });
        let planar: Vec<u8> = (0..Chroma::C420.frame_bytes(w, h)).map(|i| (i * 13 % 251) as u8).collect();
        g.bench_with_input(BenchmarkId::new("i420_to_rgb", format!("{w}x{h}")), &planar, |b, d| {
            b.iter(|| planar_to_rgb(black_box(d), w, h, Chroma::C420))
        });
    }
    g.finish();
}

fn bench_caption(c: &mut Criterion) {
    use pancap::caption::text::write_caption;
    use pancap::scene::PanopticCaption;
    // a real scene graph (the fake-engine golden), its things replicated to grow the scene
    let golden: PanopticCaption =
        serde_json::from_str(include_str!("../tests/golden/synthetic_fake_engines.json")).expect("golden parses");
    let mut g = c.benchmark_group("caption");
    for copies in [1usize, 4, 10] {
        let mut entities = Vec::new();
        for k in 0..copies {
            for e in &golden.entities {
                let mut e = e.clone();
                e.id += (k * golden.entities.len()) as u32;
                entities.push(e);
            }
        }
        g.bench_with_input(BenchmarkId::new("write", entities.len()), &entities, |b, es| {
            b.iter(|| write_caption(black_box(es), &golden.relations, &golden.global))
        });
    }
    g.finish();
}

fn bench_score(c: &mut Criterion) {
    use pancap::score::{match_entities, Content, TagMatcher};
    let mut g = c.benchmark_group("score");
    let matcher = TagMatcher::new(None, None);
    let tags = ["person", "dog", "car", "sky", "tree", "grass", "horse", "road"];
    for n in [10usize, 30, 100] {
        let mut text = String::new();
        for i in 0..n {
            let v = noise(4, i as u32, 1.0);
            let (x, y) = (v[0].abs().min(0.8), v[1].abs().min(0.8));
            text.push_str(&format!(
                "The brown {} [[{x:.3}, {y:.3}, {:.3}, {:.3}]] is to the left of the white {} [[{y:.3}, {x:.3}, {:.3}, {:.3}]]. ",
                tags[i % tags.len()], x + 0.2, y + 0.2, tags[(i + 3) % tags.len()], y + 0.2, x + 0.2
            ));
        }
        g.bench_with_input(BenchmarkId::new("read_caption", n), &text, |b, t| b.iter(|| Content::from_text(t, None)));
        let content = Content::from_text(&text, None);
        g.bench_with_input(BenchmarkId::new("match_entities", 2 * n), &content, |b, c| {
            b.iter(|| match_entities(&c.entities, &c.entities, |r, p| matcher.cost(r, p)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_preprocess, bench_decode, bench_nms_merge, bench_segmenter_head, bench_stuff, bench_colour, bench_pixel_conversion, bench_caption, bench_score);
criterion_main!(benches, passes);

/// Each pass of the resize alone (one axis changes), fast_image_resize against pancap's resizer: where the time
/// of `resize_to_416` goes.
fn bench_resize_passes(c: &mut Criterion) {
    let mut g = c.benchmark_group("resize_pass");
    for (w, h, tw, th) in [(640, 480, 640, 312), (640, 312, 416, 312), (1920, 1080, 1920, 234), (1920, 234, 416, 234)] {
        resize_side_by_side(&mut g, ("fir", "pancap"), &format!("{w}x{h}-{tw}x{th}"), &image(w, h), (tw, th));
    }
}

/// fast_image_resize (a fresh `Resizer` and output, as pancap used it) then pancap's resizer (tables and output
/// kept), `img` to `tw × th`.
fn resize_side_by_side(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    (fir, ours): (&str, &str),
    size: &str,
    img: &image::RgbImage,
    (tw, th): (u32, u32),
) {
    g.bench_function(BenchmarkId::new(fir, size), |b| {
        b.iter(|| {
            let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3).unwrap();
            let mut dst = Image::new(tw, th, PixelType::U8x3);
            let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            Resizer::new().resize(&src, &mut dst, &options).unwrap();
            dst
        })
    });
    let mut resizer = RgbResizer::new();
    let mut out = vec![0u8; (tw * th * 3) as usize];
    g.bench_function(BenchmarkId::new(ours, size), |b| {
        b.iter(|| {
            let mut dst = RgbViewMut::new(&mut out, tw as usize * 3, 0, 0, tw, th).unwrap();
            resizer.resize(RgbView::whole(black_box(img)), &mut dst).unwrap();
        })
    });
}
criterion_group!(passes, bench_resize_passes);

//! Recorded-stream readers and pixel decoders on any bytes: no panic, and memory bounded by the decode limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pancap::source::pixel::{planar_to_rgb, yuyv_to_rgb, Chroma};
use pancap::source::replay::{split_mjpeg, Y4mFrames, YuyvFrames};
use pancap::source::DecodeLimits;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_side: 512, ..DecodeLimits::default() };
    let path = Path::new("fuzz-input");
    for r in split_mjpeg(data) {
        assert!(r.start <= r.end && r.end <= data.len());
    }
    if let Ok(frames) = Y4mFrames::new(data, path, limits) {
        for f in frames.take(4) {
            let _ = f;
        }
    }
    let (w, h) = match data.first_chunk::<2>() {
        Some([a, b]) => (u32::from(*a % 64) + 1, u32::from(*b % 64) + 1),
        None => (2, 2),
    };
    if let Ok(frames) = YuyvFrames::new(data, path, w * 2, h, limits) {
        for f in frames.take(4) {
            let _ = f;
        }
    }
    let _ = yuyv_to_rgb(data, w * 2, h);
    let _ = planar_to_rgb(data, w * 2, h * 2, Chroma::C420);
});

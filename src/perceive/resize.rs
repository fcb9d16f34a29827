//! Bilinear (triangle) resizing of 8-bit RGB images that keeps its coefficient tables and scratch between calls.
//!
//! The arithmetic is Pillow-SIMD's, as fast_image_resize 6 implements it for `U8x3` with
//! `ResizeAlg::Convolution(FilterType::Bilinear)`: the kernel widens with the downscale factor, weights are
//! normalised per output pixel, turned into `i16` at the widest precision that fits, and each pass rounds once
//! (vertical pass first, then horizontal). The bytes out are the crate's (a test holds them equal), but
//! fast_image_resize builds its tables anew on every call — one `Vec` per output row and column, ~1,500 heap
//! allocations for one detector frame — and has no way to keep them. Here the tables are rebuilt only when the
//! geometry changes, into buffers that keep their capacity, so a stream's steady state allocates nothing.
//!
//! Sources and destinations are views with a row stride, so a crop is read in place and the result is written
//! straight into a letterbox canvas.

use super::PerceiveError;

/// A read-only window onto packed 8-bit RGB pixels: `width × height` pixels, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    data: &'a [u8],
    stride: usize,
    width: u32,
    height: u32,
}

impl<'a> RgbView<'a> {
    /// The whole image.
    pub fn whole(rgb: &'a image::RgbImage) -> Self {
        RgbView { data: rgb.as_raw(), stride: rgb.width() as usize * 3, width: rgb.width(), height: rgb.height() }
    }

    /// Packed pixels with rows `stride` bytes apart; an error when `data` is too short for them.
    pub fn new(data: &'a [u8], stride: usize, width: u32, height: u32) -> Result<Self, PerceiveError> {
        let view = RgbView { data, stride, width, height };
        if stride < width as usize * 3 || data.len() < view.needed() {
            return Err(PerceiveError::Resize(format!(
                "a {width}x{height} RGB view with rows {stride} bytes apart needs {} bytes, has {}",
                view.needed(),
                data.len()
            )));
        }
        Ok(view)
    }

    /// The `w × h` window at (`x`, `y`), clamped to the image (a crop without a copy).
    pub fn crop(rgb: &'a image::RgbImage, x: u32, y: u32, w: u32, h: u32) -> Self {
        let x = x.min(rgb.width());
        let y = y.min(rgb.height());
        let width = w.min(rgb.width() - x);
        let height = h.min(rgb.height() - y);
        let stride = rgb.width() as usize * 3;
        let start = y as usize * stride + x as usize * 3;
        RgbView { data: rgb.as_raw().get(start..).unwrap_or_default(), stride, width, height }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    fn needed(&self) -> usize {
        if self.width == 0 || self.height == 0 {
            return 0;
        }
        (self.height as usize - 1) * self.stride + self.width as usize * 3
    }

    /// Row `y`'s pixels (`width × 3` bytes).
    fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        self.data.get(start..start + self.width as usize * 3).unwrap_or_default()
    }
}

/// A writable window: `width × height` pixels starting at `offset` in `data`, rows `stride` bytes apart.
#[derive(Debug)]
pub struct RgbViewMut<'a> {
    data: &'a mut [u8],
    offset: usize,
    stride: usize,
    width: u32,
    height: u32,
}

impl<'a> RgbViewMut<'a> {
    /// The `width × height` window at pixel (`x`, `y`) of a packed buffer whose rows are `stride` bytes apart;
    /// an error when the buffer does not hold it.
    pub fn new(data: &'a mut [u8], stride: usize, x: u32, y: u32, width: u32, height: u32) -> Result<Self, PerceiveError> {
        let offset = y as usize * stride + x as usize * 3;
        let needed = if width == 0 || height == 0 { 0 } else { offset + (height as usize - 1) * stride + width as usize * 3 };
        if stride < (x + width) as usize * 3 || data.len() < needed {
            return Err(PerceiveError::Resize(format!(
                "a {width}x{height} window at ({x}, {y}) with rows {stride} bytes apart needs {needed} bytes, has {}",
                data.len()
            )));
        }
        Ok(RgbViewMut { data, offset, stride, width, height })
    }

    fn rows(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let (offset, stride, bytes) = (self.offset, self.stride, self.width as usize * 3);
        let height = self.height as usize;
        self.data.get_mut(offset..).unwrap_or_default().chunks_mut(stride.max(1)).take(height).map(move |r| {
            let n = r.len().min(bytes);
            r.get_mut(..n).unwrap_or_default()
        })
    }
}

/// One axis's resampling table: per output pixel the first input pixel, the number of taps, and `window`
/// fixed-point weights (the unused ones zero).
#[derive(Debug, Default)]
struct Axis {
    /// (input size, output size) the table was built for.
    built_for: Option<(u32, u32)>,
    precision: u8,
    window: usize,
    bounds: Vec<(u32, u32)>,
    weights: Vec<f64>,
    values: Vec<i16>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

// fast_image_resize's (and Pillow-SIMD's) limits: 8 bits of result, 2 of headroom in an i32; i16 weights
const PRECISION_BITS: u8 = 32 - 8 - 2;
const MAX_COEFFS_PRECISION: u8 = 16 - 1;

impl Axis {
    /// Builds the table for `in_size → out_size` unless it is already built (both sizes non-zero).
    fn prepare(&mut self, in_size: u32, out_size: u32) {
        if self.built_for == Some((in_size, out_size)) {
            return;
        }
        let scale = f64::from(in_size) / f64::from(out_size);
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // the triangle's support is 1
        let window = radius.ceil() as usize * 2 + 1;
        let recip = 1.0 / filter_scale;
        self.weights.clear();
        self.bounds.clear();
        for out_x in 0..out_size {
            let in_center = (f64::from(out_x) + 0.5) * scale;
            let x_min = (in_center - radius).floor().max(0.0) as u32;
            let x_max = (in_center + radius).ceil().min(f64::from(in_size)) as u32;
            let first = self.weights.len();
            let center = in_center - 0.5;
            let (mut start, mut end) = (x_min, x_max);
            let mut sum = 0.0;
            for x in x_min..x_max {
                let w = triangle((f64::from(x) - center) * recip);
                if x == start && w == 0.0 {
                    start += 1; // no zero weights at the start
                } else {
                    self.weights.push(w);
                    sum += w;
                }
            }
            for &c in self.weights.iter().rev() {
                if end <= start || c != 0.0 {
                    break;
                }
                end -= 1; // nor at the end
            }
            if sum != 0.0 {
                self.weights.iter_mut().skip(first).for_each(|w| *w /= sum);
            }
            self.weights.resize(first + window, 0.0);
            self.bounds.push((start, end - start));
        }
        let max_weight = self.weights.iter().copied().fold(0.0f64, f64::max);
        let mut precision = 0u8;
        for p in 0..PRECISION_BITS {
            precision = p;
            if (max_weight * f64::from(1u32 << (p + 1))).round() as i32 >= (1 << MAX_COEFFS_PRECISION) {
                break;
            }
        }
        let fixed = f64::from(1u32 << precision);
        self.values.clear();
        self.values.extend(self.weights.iter().map(|&w| (w * fixed).round() as i16));
        self.precision = precision.max(1);
        self.window = window;
        self.built_for = Some((in_size, out_size));
    }

    /// Output pixel `i`'s first input pixel and its weights.
    fn taps(&self, i: usize) -> (usize, &[i16]) {
        let (start, size) = self.bounds.get(i).copied().unwrap_or((0, 0));
        let from = i * self.window;
        (start as usize, self.values.get(from..from + size as usize).unwrap_or_default())
    }

    fn round(&self, v: i32) -> u8 {
        (v >> self.precision).clamp(0, 255) as u8
    }
}

/// Bilinear RGB resizer with kept tables and scratch: after the first call at a geometry, resizing allocates
/// nothing.
#[derive(Debug, Default)]
pub struct RgbResizer {
    horizontal: Axis,
    vertical: Axis,
    /// The vertical pass's output, `src width × dst height` pixels.
    temp: Vec<u8>,
    /// One row of vertical-pass accumulators.
    acc: Vec<i32>,
    /// The horizontal pass's input and output transposed (a row per column).
    cols_in: Vec<u8>,
    cols_out: Vec<u8>,
}

impl RgbResizer {
    pub fn new() -> Self {
        RgbResizer::default()
    }

    /// Resizes `src` to the size of `dst` and writes it there.
    pub fn resize(&mut self, src: RgbView<'_>, dst: &mut RgbViewMut<'_>) -> Result<(), PerceiveError> {
        let (sw, sh, dw, dh) = (src.width, src.height, dst.width, dst.height);
        if dw == 0 || dh == 0 {
            return Ok(());
        }
        if sw == 0 || sh == 0 {
            return Err(PerceiveError::Resize(format!("an empty {sw}x{sh} image to {dw}x{dh}")));
        }
        match (sw != dw, sh != dh) {
            (false, false) => {
                for (y, row) in dst.rows().enumerate() {
                    row.copy_from_slice(src.row(y));
                }
            }
            (true, false) => {
                self.horizontal.prepare(sw, dw);
                self.horizontal_pass(src, dst)?;
            }
            (false, true) => {
                self.vertical.prepare(sh, dh);
                vertical_pass(&self.vertical, &src, &mut self.acc, dst.rows());
            }
            (true, true) => {
                // vertical first, as fast_image_resize does for 8-bit pixels
                self.vertical.prepare(sh, dh);
                self.horizontal.prepare(sw, dw);
                let row_bytes = sw as usize * 3;
                let mut temp = std::mem::take(&mut self.temp);
                temp.resize(row_bytes * dh as usize, 0);
                vertical_pass(&self.vertical, &src, &mut self.acc, temp.chunks_exact_mut(row_bytes));
                let result = RgbView::new(&temp, row_bytes, sw, dh).and_then(|t| self.horizontal_pass(t, dst));
                self.temp = temp;
                result?;
            }
        }
        Ok(())
    }

    /// The horizontal pass run as a vertical one, which the compiler vectorises (three interleaved channels and a
    /// few taps per output pixel do not vectorise in place): `src` is transposed so each of its columns is a
    /// row, convolved along those rows, and the result transposed into `dst`. The two transposes cost less than
    /// the scalar pass they replace.
    fn horizontal_pass(&mut self, src: RgbView<'_>, dst: &mut RgbViewMut<'_>) -> Result<(), PerceiveError> {
        let (w, h) = (src.width as usize, src.height as usize);
        let col_bytes = h * 3;
        self.cols_in.resize(w * col_bytes, 0);
        for y in 0..h {
            let row = src.row(y);
            for (px, col) in row.chunks_exact(3).zip(self.cols_in.chunks_exact_mut(col_bytes)) {
                if let Some(d) = col.get_mut(y * 3..y * 3 + 3) {
                    d.copy_from_slice(px);
                }
            }
        }
        let dw = dst.width as usize;
        self.cols_out.resize(dw * col_bytes, 0);
        let columns = RgbView::new(&self.cols_in, col_bytes, src.height, src.width)?;
        vertical_pass(&self.horizontal, &columns, &mut self.acc, self.cols_out.chunks_exact_mut(col_bytes));
        for (y, row) in dst.rows().enumerate() {
            for (px, col) in row.chunks_exact_mut(3).zip(self.cols_out.chunks_exact(col_bytes)) {
                if let Some(s) = col.get(y * 3..y * 3 + 3) {
                    px.copy_from_slice(s);
                }
            }
        }
        Ok(())
    }
}

// The pass is a plain loop the compiler vectorises; on x86-64 it is compiled twice, for the baseline (SSE2,
// which has no 32-bit multiply) and for AVX2, picked at run time. aarch64's baseline has NEON.

fn vertical_pass<'d>(axis: &Axis, src: &RgbView<'_>, acc: &mut Vec<i32>, dst_rows: impl Iterator<Item = &'d mut [u8]>) {
    acc.resize(src.width as usize * 3, 0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: a target_feature function's one requirement is that the CPU has the feature, checked above
        return unsafe { vertical_avx2(axis, src, acc, dst_rows) };
    }
    vertical_body(axis, src, acc, dst_rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_avx2<'d>(axis: &Axis, src: &RgbView<'_>, acc: &mut [i32], dst_rows: impl Iterator<Item = &'d mut [u8]>) {
    vertical_body(axis, src, acc, dst_rows);
}

#[inline(always)]
fn vertical_body<'d>(axis: &Axis, src: &RgbView<'_>, acc: &mut [i32], dst_rows: impl Iterator<Item = &'d mut [u8]>) {
    let initial = 1i32 << (axis.precision - 1);
    for (y, dst) in dst_rows.enumerate() {
        let (start, ks) = axis.taps(y);
        acc.fill(initial);
        // two taps a sweep over the accumulators (half their loads and stores), then the odd one
        let mut pairs = ks.chunks_exact(2);
        for (j, pair) in pairs.by_ref().enumerate() {
            let (&[k0, k1], r) = (pair, start + 2 * j) else { continue };
            let (k0, k1) = (i32::from(k0), i32::from(k1));
            for ((a, &p0), &p1) in acc.iter_mut().zip(src.row(r)).zip(src.row(r + 1)) {
                *a += i32::from(p0) * k0 + i32::from(p1) * k1;
            }
        }
        if let [k] = pairs.remainder() {
            let k = i32::from(*k);
            for (a, &p) in acc.iter_mut().zip(src.row(start + ks.len() - 1)) {
                *a += i32::from(p) * k;
            }
        }
        for (d, &a) in dst.iter_mut().zip(acc.iter()) {
            *d = axis.round(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

    fn noise(w: u32, h: u32, seed: u64) -> image::RgbImage {
        let mut s = seed;
        image::RgbImage::from_fn(w, h, |x, y| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (s >> 33) as u32;
            // smooth gradients plus noise, so both flat and busy areas are covered
            image::Rgb([((x * 7 + n) % 256) as u8, ((y * 5 + (n >> 8)) % 256) as u8, (n >> 16) as u8])
        })
    }

    fn crate_resize(src: &image::RgbImage, w: u32, h: u32) -> Vec<u8> {
        let s = ImageRef::new(src.width(), src.height(), src.as_raw(), PixelType::U8x3).unwrap();
        let mut d = Image::new(w, h, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new().resize(&s, &mut d, &options).unwrap();
        d.into_vec()
    }

    fn ours(r: &mut RgbResizer, src: RgbView<'_>, w: u32, h: u32) -> Vec<u8> {
        let mut out = vec![0u8; (w * h * 3) as usize];
        let mut dst = RgbViewMut::new(&mut out, w as usize * 3, 0, 0, w, h).unwrap();
        r.resize(src, &mut dst).unwrap();
        out
    }

    #[test]
    fn same_bytes_as_fast_image_resize() {
        let mut r = RgbResizer::new();
        // downscales by up to 12x, upscales, one axis only, odd sizes, the identity
        let cases = [
            (640, 480, 416, 312),
            (1920, 1080, 640, 360),
            (4000, 3000, 333, 250),
            (320, 180, 416, 234),
            (97, 61, 416, 262),
            (500, 375, 416, 375),
            (500, 375, 500, 333),
            (37, 1, 5, 3),
            (123, 77, 123, 77),
        ];
        for (k, &(sw, sh, dw, dh)) in cases.iter().enumerate() {
            let src = noise(sw, sh, k as u64);
            let want = crate_resize(&src, dw, dh);
            let got = ours(&mut r, RgbView::whole(&src), dw, dh);
            assert!(got == want, "{sw}x{sh} -> {dw}x{dh}: {} of {} bytes differ", got.iter().zip(&want).filter(|(a, b)| a != b).count(), want.len());
        }
    }

    #[test]
    fn a_crop_view_resizes_like_the_copied_crop_and_writes_only_its_window() {
        let img = noise(300, 200, 9);
        let (x, y, w, h) = (37, 21, 151, 97);
        let copied = image::imageops::crop_imm(&img, x, y, w, h).to_image();
        let view = RgbView::crop(&img, x, y, w, h);
        let want = crate_resize(&copied, 64, 48);
        // into the middle of a 100x80 canvas filled with 7
        let mut canvas = vec![7u8; 100 * 80 * 3];
        let mut dst = RgbViewMut::new(&mut canvas, 300, 10, 20, 64, 48).unwrap();
        RgbResizer::new().resize(view, &mut dst).unwrap();
        for yy in 0..80usize {
            for xx in 0..100usize {
                let px = &canvas[(yy * 100 + xx) * 3..][..3];
                if (10..74).contains(&xx) && (20..68).contains(&yy) {
                    let w = &want[((yy - 20) * 64 + (xx - 10)) * 3..][..3];
                    assert_eq!(px, w, "pixel ({xx}, {yy})");
                } else {
                    assert_eq!(px, &[7, 7, 7], "outside the window at ({xx}, {yy})");
                }
            }
        }
        // a crop past the image's edge is clamped to it
        let edge = RgbView::crop(&img, 290, 190, 50, 50);
        assert_eq!((edge.width(), edge.height()), (10, 10));
    }

    #[test]
    fn windows_that_do_not_fit_are_errors() {
        let mut small = vec![0u8; 10 * 10 * 3];
        assert!(RgbViewMut::new(&mut small, 30, 5, 5, 6, 6).is_err());
        assert!(RgbViewMut::new(&mut small, 30, 4, 4, 6, 6).is_ok());
        assert!(RgbView::new(&small, 30, 10, 11).is_err());
        let empty = RgbView::new(&[], 0, 0, 0).unwrap();
        let mut out = vec![0u8; 12];
        let mut dst = RgbViewMut::new(&mut out, 6, 0, 0, 2, 2).unwrap();
        assert!(RgbResizer::new().resize(empty, &mut dst).is_err(), "an empty source has nothing to resize");
    }

    #[test]
    fn tables_are_rebuilt_when_the_geometry_changes() {
        let mut r = RgbResizer::new();
        let a = noise(200, 100, 1);
        let b = noise(90, 300, 2);
        for (src, (w, h)) in [(&a, (64, 32)), (&b, (64, 32)), (&a, (64, 32)), (&a, (50, 70))] {
            assert!(ours(&mut r, RgbView::whole(src), w, h) == crate_resize(src, w, h));
        }
    }
}

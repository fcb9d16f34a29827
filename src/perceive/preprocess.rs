//! Image → model input tensor, exactly as each model's manifest prescribes. Pure: the same function feeds
//! runtime and calibration.

use crate::engine::{DType, Tensor, TensorData};
use crate::geometry::Letterbox;
use crate::models::{ColourOrder, DecoderManifest, InputManifest, Layout, Manifest};
use image::RgbImage;

use super::resize::{RgbResizer, RgbView, RgbViewMut};
use super::PerceiveError;

/// Resizes a view into a new image with a bilinear (triangle) convolution, with `resizer`'s kept tables.
/// Downscaling widens the kernel with the scale, like the image crate's `Triangle`, so the result matches it to a
/// level or two per channel, in a fraction of the time; the bytes are fast_image_resize's `Convolution(Bilinear)`
/// (see [`super::resize`]).
pub fn resize_view(resizer: &mut RgbResizer, src: RgbView<'_>, width: u32, height: u32) -> Result<RgbImage, PerceiveError> {
    let (width, height) = (width.max(1), height.max(1));
    let mut out = vec![0u8; width as usize * height as usize * 3];
    let mut dst = RgbViewMut::new(&mut out, width as usize * 3, 0, 0, width, height)?;
    resizer.resize(src, &mut dst)?;
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| PerceiveError::Resize(format!("{}x{} to {width}x{height}: buffer size", src.width(), src.height())))
}

/// Per-model preprocessing scratch: the resizer's tables, the model's input canvas and its input tensors, kept
/// between frames so a stream's steady state allocates nothing here. The one owner of a model's inputs.
#[derive(Debug, Default)]
pub struct Preprocessor {
    resizer: RgbResizer,
    canvas: Vec<u8>,
    /// The input tensors of the last call, the image first, refilled in place.
    inputs: Vec<Tensor>,
}

impl Preprocessor {
    pub fn new() -> Self {
        Preprocessor::default()
    }

    /// Resizes and pads `src` into the model's input canvas (8-bit RGB, kept here), returning the transform.
    pub fn letterbox(&mut self, src: RgbView<'_>, input: &InputManifest) -> Result<Letterbox, PerceiveError> {
        let (mw, mh) = input.size();
        let lb = Letterbox::new(src.width(), src.height(), mw, mh, input.resize);
        let pad = input.pad_value;
        self.canvas.clear();
        self.canvas.resize(mw as usize * mh as usize * 3, pad);
        let (x, y) = (lb.pad_x as u32, lb.pad_y as u32);
        let mut dst = RgbViewMut::new(&mut self.canvas, mw as usize * 3, x, y, lb.content_w, lb.content_h)?;
        self.resizer.resize(src, &mut dst)?;
        Ok(lb)
    }

    /// The canvas of the last [`Self::letterbox`] call, packed RGB at the model's input size.
    pub fn canvas(&self) -> &[u8] {
        &self.canvas
    }

    /// `letterbox` then the input tensor, written into the one kept here: returned by reference, so a model's
    /// steady state allocates no input.
    pub fn preprocess(&mut self, src: RgbView<'_>, input: &InputManifest) -> Result<(&Tensor, Letterbox), PerceiveError> {
        let lb = self.letterbox(src, input)?;
        self.fill_image(input)?;
        self.inputs.truncate(1);
        let image = self.inputs.first().ok_or_else(|| PerceiveError::UnsupportedInput("no input tensor written".into()))?;
        Ok((image, lb))
    }

    /// Every input tensor `manifest`'s model takes for one view, in its spec's order (the image; DETR-style models
    /// also take the view's size), with the letterbox that maps its outputs back. Written over the ones kept here.
    pub fn model_inputs(&mut self, view: RgbView<'_>, manifest: &Manifest) -> Result<(&[Tensor], Letterbox), PerceiveError> {
        let lb = self.letterbox(view, &manifest.input)?;
        self.fill_image(&manifest.input)?;
        if let DecoderManifest::Detr { .. } = manifest.decoder {
            let (w, h) = (i64::from(view.width()), i64::from(view.height()));
            match self.inputs.get_mut(1) {
                Some(Tensor { shape, data: TensorData::I64(v) }) => {
                    shape.clear();
                    shape.extend_from_slice(&[1, 2]);
                    v.clear();
                    v.extend_from_slice(&[w, h]);
                }
                _ => {
                    self.inputs.truncate(1);
                    self.inputs.push(Tensor::new(vec![1, 2], TensorData::I64(vec![w, h]))?);
                }
            }
            self.inputs.truncate(2);
        } else {
            self.inputs.truncate(1);
        }
        Ok((&self.inputs, lb))
    }

    /// The kept input tensors, handed over (the next call makes new ones).
    pub fn take_inputs(&mut self) -> Vec<Tensor> {
        std::mem::take(&mut self.inputs)
    }

    /// Writes the canvas as the image tensor, first of the kept inputs, into its own buffers. An error leaves the
    /// inputs without an image tensor: the next call makes a new one.
    fn fill_image(&mut self, input: &InputManifest) -> Result<(), PerceiveError> {
        let (mw, mh) = input.size();
        let mut image = if self.inputs.is_empty() { None } else { Some(self.inputs.remove(0)) };
        pixels_into_tensor(&self.canvas, mw, mh, input, &mut image)?;
        let image = image.ok_or_else(|| PerceiveError::UnsupportedInput("no input tensor written".into()))?;
        self.inputs.insert(0, image);
        Ok(())
    }
}

/// The canvas's pixel values as they are, in `layout` and channel `order`, written over `v` (its buffer kept).
fn raw_pixels_into<T: From<u8> + Copy + Default>(pixels: &[u8], layout: Layout, order: [usize; 3], v: &mut Vec<T>) {
    let n = pixels.len() / 3;
    v.clear();
    v.resize(n * 3, T::default());
    match layout {
        Layout::Nhwc => {
            for (dst, px) in v.chunks_exact_mut(3).zip(pixels.chunks_exact(3)) {
                for (d, &c) in dst.iter_mut().zip(&order) {
                    *d = T::from(px.get(c).copied().unwrap_or(0));
                }
            }
        }
        Layout::Nchw => {
            for (plane, &c) in order.iter().enumerate() {
                let dst = v.get_mut(plane * n..(plane + 1) * n).unwrap_or_default();
                for (d, px) in dst.iter_mut().zip(pixels.chunks_exact(3)) {
                    *d = T::from(px.get(c).copied().unwrap_or(0));
                }
            }
        }
    }
}

/// Converts a model-sized RGB canvas into the input tensor (layout, colour order, dtype, normalisation).
pub fn canvas_to_tensor(canvas: &RgbImage, input: &InputManifest) -> Result<Tensor, PerceiveError> {
    pixels_to_tensor(canvas.as_raw(), canvas.width(), canvas.height(), input)
}

/// [`canvas_to_tensor`] over packed RGB pixels, `w × h`.
pub fn pixels_to_tensor(pixels: &[u8], w: u32, h: u32, input: &InputManifest) -> Result<Tensor, PerceiveError> {
    let mut out = None;
    pixels_into_tensor(pixels, w, h, input, &mut out)?;
    out.ok_or_else(|| PerceiveError::UnsupportedInput("no input tensor written".into()))
}

/// [`pixels_to_tensor`] written into `out`: a tensor already there keeps its shape and data buffers (a stream's
/// steady state allocates nothing here); an empty slot gets a new one. Returns the tensor.
pub fn pixels_into_tensor<'a>(pixels: &[u8], w: u32, h: u32, input: &InputManifest, out: &'a mut Option<Tensor>) -> Result<&'a mut Tensor, PerceiveError> {
    let n = w as usize * h as usize;
    let pixels = pixels
        .get(..n * 3)
        .ok_or_else(|| PerceiveError::UnsupportedInput(format!("a {w}x{h} canvas from {} bytes", pixels.len())))?;
    let order: [usize; 3] = match input.colour {
        ColourOrder::Rgb => [0, 1, 2],
        ColourOrder::Bgr => [2, 1, 0],
    };
    let t = out.get_or_insert_with(|| Tensor { shape: Vec::new(), data: TensorData::U8(Vec::new()) });
    // the slot's buffer when it holds this dtype, else a new one
    macro_rules! buffer {
        ($variant:ident) => {{
            if !matches!(t.data, TensorData::$variant(_)) {
                t.data = TensorData::$variant(Vec::new());
            }
            match &mut t.data {
                TensorData::$variant(v) => v,
                _ => return Err(PerceiveError::UnsupportedInput("input buffer of another dtype".into())),
            }
        }};
    }
    match input.dtype {
        DType::U8 => raw_pixels_into(pixels, input.layout, order, buffer!(U8)),
        DType::I32 => {
            // raw 0..255 pixel values (MoveNet); scale, mean and std must be the identity
            if input.scale != 1.0 || input.mean != [0.0; 3] || input.std != [1.0; 3] {
                return Err(PerceiveError::UnsupportedInput("i32 image input with a normalisation (it takes raw pixel values)".into()));
            }
            raw_pixels_into(pixels, input.layout, order, buffer!(I32));
        }
        DType::F32 => {
            let mut lut = [[0f32; 256]; 3];
            for (ch, table) in lut.iter_mut().enumerate() {
                let (mean, std) = (input.mean.get(ch).copied().unwrap_or(0.0), input.std.get(ch).copied().unwrap_or(1.0));
                for (p, slot) in table.iter_mut().enumerate() {
                    *slot = (p as f32 * input.scale - mean) / std;
                }
            }
            let v = buffer!(F32);
            v.clear();
            v.resize(n * 3, 0.0);
            match input.layout {
                Layout::Nchw => {
                    for (plane, (&c, table)) in order.iter().zip(&lut).enumerate() {
                        let dst = v.get_mut(plane * n..(plane + 1) * n).unwrap_or_default();
                        for (d, px) in dst.iter_mut().zip(pixels.chunks_exact(3)) {
                            *d = table.get(px.get(c).copied().unwrap_or(0) as usize).copied().unwrap_or(0.0);
                        }
                    }
                }
                Layout::Nhwc => {
                    for (dst, px) in v.chunks_exact_mut(3).zip(pixels.chunks_exact(3)) {
                        for ((d, &c), table) in dst.iter_mut().zip(&order).zip(&lut) {
                            *d = table.get(px.get(c).copied().unwrap_or(0) as usize).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
        other => return Err(PerceiveError::UnsupportedInput(format!("{other:?} image input"))),
    }
    t.shape.clear();
    t.shape.extend_from_slice(&input.shape);
    // the same check as Tensor::new
    let want: usize = t.shape.iter().product();
    if want != n * 3 {
        return Err(PerceiveError::UnsupportedInput(format!("input shape {:?} for a {w}x{h} RGB canvas", input.shape)));
    }
    Ok(t)
}

/// [`Preprocessor::preprocess`] of a whole image with fresh scratch (calibration, one-off images).
pub fn preprocess(rgb: &RgbImage, input: &InputManifest) -> Result<(Tensor, Letterbox), PerceiveError> {
    let mut p = Preprocessor::new();
    let (_, lb) = p.preprocess(RgbView::whole(rgb), input)?;
    let t = p.take_inputs().into_iter().next().ok_or_else(|| PerceiveError::UnsupportedInput("no input tensor written".into()))?;
    Ok((t, lb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Manifest;

    #[test]
    fn a_kept_input_tensor_is_refilled_in_its_own_buffer() {
        let m = Manifest::by_name("yolox_nano_416").unwrap();
        let mut p = Preprocessor::new();
        let a = RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
        let b = RgbImage::from_pixel(64, 48, image::Rgb([200, 100, 50]));
        let first = match &p.preprocess(RgbView::whole(&a), &m.input).unwrap().0.data {
            TensorData::F32(v) => v.as_ptr(),
            other => panic!("{other:?}"),
        };
        let (t, _) = p.preprocess(RgbView::whole(&b), &m.input).unwrap();
        let TensorData::F32(v) = &t.data else { panic!() };
        assert_eq!(v.as_ptr(), first, "the second frame must reuse the first one's buffer");
        // the second image's pixels, not the first's: a fresh conversion gives the same tensor
        assert_eq!(t, &preprocess(&b, &m.input).unwrap().0);
        assert_eq!(t.shape, m.input.shape.to_vec());
    }

    #[test]
    fn movenet_tensor_is_rgb_int32_raw_padded_bottom_right() {
        let m = Manifest::by_name("movenet_multipose_lightning").unwrap();
        let img = RgbImage::from_pixel(512, 256, image::Rgb([10, 20, 30]));
        let (t, lb) = preprocess(&img, &m.input).unwrap();
        assert_eq!(t.shape, vec![1, 256, 256, 3]);
        assert_eq!((lb.content_w, lb.content_h, lb.pad_x, lb.pad_y), (256, 128, 0.0, 0.0));
        let v = t.as_i32().unwrap();
        assert_eq!(&v[..3], &[10, 20, 30], "top-left pixel, RGB, not scaled");
        assert_eq!(&v[v.len() - 3..], &[0, 0, 0], "bottom rows padded with 0");
        let mut scaled = m.input.clone();
        scaled.scale = 1.0 / 255.0;
        assert!(preprocess(&img, &scaled).is_err(), "an i32 input takes raw values only");
    }

    #[test]
    fn yolox_tensor_is_bgr_raw_with_114_padding() {
        let m = Manifest::by_name("yolox_nano_416").unwrap();
        let img = RgbImage::from_pixel(832, 416, image::Rgb([10, 20, 30]));
        let (t, lb) = preprocess(&img, &m.input).unwrap();
        assert_eq!(t.shape, vec![1, 3, 416, 416]);
        assert_eq!((lb.content_w, lb.content_h, lb.pad_y), (416, 208, 0.0));
        let v = t.as_f32().unwrap();
        let n = 416 * 416;
        // top-left pixel is content, BGR order
        assert_eq!((v[0], v[n], v[2 * n]), (30.0, 20.0, 10.0));
        // bottom-left pixel is padding
        assert_eq!(v[415 * 416], 114.0);
    }

    #[test]
    fn picodet_tensor_is_normalised_rgb_centred() {
        let m = Manifest::by_name("picodet_s_416_coco").unwrap();
        let img = RgbImage::from_pixel(416, 208, image::Rgb([255, 0, 0]));
        let (t, lb) = preprocess(&img, &m.input).unwrap();
        assert_eq!(lb.pad_y, 104.0);
        let v = t.as_f32().unwrap();
        let centre = 208 * 416 + 208;
        assert!((v[centre] - (255.0 - 123.675) / 58.395).abs() < 1e-4);
        // padding is raw zero, normalised
        assert!((v[0] - (0.0 - 123.675) / 58.395).abs() < 1e-4);
    }

    #[test]
    fn a_kept_preprocessor_gives_what_fresh_scratch_gives_and_reads_crops_in_place() {
        let m = Manifest::by_name("picodet_s_416_coco").unwrap();
        let img = |w: u32, h: u32, k: u32| RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * k % 256) as u8, (y * 3 % 256) as u8, ((x ^ y) % 256) as u8]));
        let mut kept = Preprocessor::new();
        // sizes that change between calls: wider, taller, smaller than the input, and the input's own size
        for (k, (w, h)) in [(640, 480), (300, 500), (200, 100), (416, 416), (640, 480)].into_iter().enumerate() {
            let frame = img(w, h, k as u32 + 1);
            let (fresh, lb) = preprocess(&frame, &m.input).unwrap();
            let (again, lb2) = kept.preprocess(RgbView::whole(&frame), &m.input).unwrap();
            assert_eq!(lb, lb2);
            assert_eq!(fresh.as_f32().unwrap(), again.as_f32().unwrap(), "{w}x{h}");
        }
        let frame = img(640, 480, 7);
        let copied = image::imageops::crop_imm(&frame, 100, 50, 333, 222).to_image();
        let (want, _) = preprocess(&copied, &m.input).unwrap();
        let (got, _) = kept.preprocess(RgbView::crop(&frame, 100, 50, 333, 222), &m.input).unwrap();
        assert_eq!(want.as_f32().unwrap(), got.as_f32().unwrap());
    }

    #[test]
    fn segmenter_tensor_is_u8_nhwc() {
        let m = Manifest::by_name("deeplabv3_mnv2_ade20k32_uint8").unwrap();
        let img = RgbImage::from_pixel(100, 50, image::Rgb([1, 2, 3]));
        let (t, lb) = preprocess(&img, &m.input).unwrap();
        assert_eq!(t.shape, vec![1, 512, 512, 3]);
        assert_eq!((lb.content_w, lb.content_h), (512, 256));
        match &t.data {
            TensorData::U8(v) => assert_eq!(&v[..3], &[1, 2, 3]),
            _ => panic!("expected u8"),
        }
    }
}

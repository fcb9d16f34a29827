//! Image → model input tensor, exactly as each model's manifest prescribes. Pure: the same function feeds
//! runtime and calibration.

use crate::engine::{DType, Tensor, TensorData};
use crate::geometry::Letterbox;
use crate::models::{ColourOrder, InputManifest, Layout};
use fast_image_resize::{images::Image, images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::PerceiveError;

/// Resizes an RGB image with a bilinear (triangle) convolution, SIMD where the CPU has it (fast_image_resize:
/// AVX2/SSE4.1 on x86-64, NEON on aarch64). Downscaling widens the kernel with the scale, like the image crate's
/// `Triangle`, so the result matches it to a level or two per channel, in a fraction of the time.
pub fn resize_rgb(rgb: &RgbImage, width: u32, height: u32) -> Result<RgbImage, PerceiveError> {
    if (width, height) == (rgb.width(), rgb.height()) {
        return Ok(rgb.clone());
    }
    let err = |e: &dyn std::fmt::Display| PerceiveError::Resize(format!("{}x{} to {width}x{height}: {e}", rgb.width(), rgb.height()));
    let src = ImageRef::new(rgb.width(), rgb.height(), rgb.as_raw(), PixelType::U8x3).map_err(|e| err(&e))?;
    let mut dst = Image::new(width.max(1), height.max(1), PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| err(&e))?;
    RgbImage::from_raw(width.max(1), height.max(1), dst.into_vec()).ok_or_else(|| err(&"buffer size"))
}

/// Resizes and pads `rgb` into the model's input canvas (still 8-bit RGB), returning the transform used.
pub fn letterbox_image(rgb: &RgbImage, input: &InputManifest) -> Result<(RgbImage, Letterbox), PerceiveError> {
    let (mw, mh) = input.size();
    let lb = Letterbox::new(rgb.width(), rgb.height(), mw, mh, input.resize);
    let resized = resize_rgb(rgb, lb.content_w, lb.content_h)?;
    if (lb.content_w, lb.content_h) == (mw, mh) {
        return Ok((resized, lb));
    }
    let pad = input.pad_value;
    let mut canvas = RgbImage::from_pixel(mw, mh, image::Rgb([pad, pad, pad]));
    image::imageops::replace(&mut canvas, &resized, lb.pad_x as i64, lb.pad_y as i64);
    Ok((canvas, lb))
}

/// The canvas's pixel values as they are, in `layout` and channel `order`.
fn raw_pixels<T: From<u8> + Copy + Default>(canvas: &RgbImage, layout: Layout, order: [usize; 3]) -> Vec<T> {
    let n = canvas.width() as usize * canvas.height() as usize;
    let mut v = vec![T::default(); n * 3];
    match layout {
        Layout::Nhwc => {
            for (dst, px) in v.chunks_exact_mut(3).zip(canvas.pixels()) {
                for (d, &c) in dst.iter_mut().zip(&order) {
                    *d = T::from(px.0.get(c).copied().unwrap_or(0));
                }
            }
        }
        Layout::Nchw => {
            for (i, px) in canvas.pixels().enumerate() {
                for (plane, &c) in order.iter().enumerate() {
                    if let Some(d) = v.get_mut(plane * n + i) {
                        *d = T::from(px.0.get(c).copied().unwrap_or(0));
                    }
                }
            }
        }
    }
    v
}

/// Converts a model-sized RGB canvas into the input tensor (layout, colour order, dtype, normalisation).
pub fn canvas_to_tensor(canvas: &RgbImage, input: &InputManifest) -> Result<Tensor, PerceiveError> {
    let (w, h) = (canvas.width() as usize, canvas.height() as usize);
    let order: [usize; 3] = match input.colour {
        ColourOrder::Rgb => [0, 1, 2],
        ColourOrder::Bgr => [2, 1, 0],
    };
    let shape = input.shape.to_vec();
    let n = w * h;
    let data = match input.dtype {
        DType::U8 => TensorData::U8(raw_pixels(canvas, input.layout, order)),
        DType::I32 => {
            // raw 0..255 pixel values (MoveNet); scale, mean and std must be the identity
            if input.scale != 1.0 || input.mean != [0.0; 3] || input.std != [1.0; 3] {
                return Err(PerceiveError::UnsupportedInput("i32 image input with a normalisation (it takes raw pixel values)".into()));
            }
            TensorData::I32(raw_pixels(canvas, input.layout, order))
        }
        DType::F32 => {
            let mut lut = [[0f32; 256]; 3];
            for (ch, table) in lut.iter_mut().enumerate() {
                let (mean, std) = (input.mean.get(ch).copied().unwrap_or(0.0), input.std.get(ch).copied().unwrap_or(1.0));
                for (p, slot) in table.iter_mut().enumerate() {
                    *slot = (p as f32 * input.scale - mean) / std;
                }
            }
            let mut v = vec![0f32; n * 3];
            match input.layout {
                Layout::Nchw => {
                    for (plane, (&c, table)) in order.iter().zip(&lut).enumerate() {
                        let dst = v.get_mut(plane * n..(plane + 1) * n).unwrap_or_default();
                        for (d, px) in dst.iter_mut().zip(canvas.pixels()) {
                            *d = table.get(px.0.get(c).copied().unwrap_or(0) as usize).copied().unwrap_or(0.0);
                        }
                    }
                }
                Layout::Nhwc => {
                    for (dst, px) in v.chunks_exact_mut(3).zip(canvas.pixels()) {
                        for ((d, &c), table) in dst.iter_mut().zip(&order).zip(&lut) {
                            *d = table.get(px.0.get(c).copied().unwrap_or(0) as usize).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
            TensorData::F32(v)
        }
        other => return Err(PerceiveError::UnsupportedInput(format!("{other:?} image input"))),
    };
    Ok(Tensor::new(shape, data)?)
}

/// `letterbox_image` then `canvas_to_tensor`.
pub fn preprocess(rgb: &RgbImage, input: &InputManifest) -> Result<(Tensor, Letterbox), PerceiveError> {
    let (canvas, lb) = letterbox_image(rgb, input)?;
    Ok((canvas_to_tensor(&canvas, input)?, lb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Manifest;

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

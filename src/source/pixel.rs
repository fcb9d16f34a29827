//! Pixel-format conversion for camera and recorded frames: packed YUYV (YUY2) and planar Y′CbCr (as in Y4M)
//! to RGB, with BT.601 limited-range coefficients (what UVC webcams and Y4M files carry by default).

use image::RgbImage;

/// Y′CbCr (BT.601, limited range: Y 16–235, Cb/Cr 16–240) → RGB, integer arithmetic (16.16 fixed point).
#[inline]
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16) * 76_309; // 1.164 * 65536
    let d = i32::from(cb) - 128;
    let e = i32::from(cr) - 128;
    let clamp = |v: i32| ((v + 32_768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104_597 * e),             // 1.596
        clamp(c - 25_675 * d - 53_279 * e), // 0.392, 0.813
        clamp(c + 132_201 * d),             // 2.017
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    #[error("frame of {width}x{height} needs {want} bytes, got {have}")]
    Size { width: u32, height: u32, want: usize, have: usize },
    #[error("YUYV needs an even width, got {0}")]
    OddWidth(u32),
    #[error("frame has zero width or height ({0}x{1})")]
    ZeroSize(u32, u32),
}

/// Packed YUYV 4:2:2 (Y0 Cb Y1 Cr per pixel pair) → RGB. Extra trailing bytes are ignored.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, PixelError> {
    if width == 0 || height == 0 {
        return Err(PixelError::ZeroSize(width, height));
    }
    if !width.is_multiple_of(2) {
        return Err(PixelError::OddWidth(width));
    }
    let want = width as usize * height as usize * 2;
    let src = data.get(..want).ok_or(PixelError::Size { width, height, want, have: data.len() })?;
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (quad, px) in src.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        if let ([y0, cb, y1, cr], [r0, g0, b0, r1, g1, b1]) = (quad, px) {
            [*r0, *g0, *b0] = ycbcr_to_rgb(*y0, *cb, *cr);
            [*r1, *g1, *b1] = ycbcr_to_rgb(*y1, *cb, *cr);
        }
    }
    RgbImage::from_raw(width, height, out).ok_or(PixelError::Size { width, height, want, have: data.len() })
}

/// Chroma subsampling of a planar frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0: chroma planes at half width and half height (rounded up).
    C420,
    /// 4:2:2: half width, full height.
    C422,
    /// 4:4:4: full resolution.
    C444,
    /// Luma only.
    Mono,
}

impl Chroma {
    /// Size of one chroma plane.
    pub fn plane_size(self, width: u32, height: u32) -> (usize, usize) {
        let (w, h) = (width as usize, height as usize);
        match self {
            Chroma::C420 => (w.div_ceil(2), h.div_ceil(2)),
            Chroma::C422 => (w.div_ceil(2), h),
            Chroma::C444 => (w, h),
            Chroma::Mono => (0, 0),
        }
    }

    /// Bytes of one whole frame (Y plane plus both chroma planes).
    pub fn frame_bytes(self, width: u32, height: u32) -> usize {
        let (cw, ch) = self.plane_size(width, height);
        width as usize * height as usize + 2 * cw * ch
    }
}

/// Planar Y, Cb, Cr (one after the other, as Y4M stores them) → RGB.
pub fn planar_to_rgb(data: &[u8], width: u32, height: u32, chroma: Chroma) -> Result<RgbImage, PixelError> {
    if width == 0 || height == 0 {
        return Err(PixelError::ZeroSize(width, height));
    }
    let want = chroma.frame_bytes(width, height);
    let src = data.get(..want).ok_or(PixelError::Size { width, height, want, have: data.len() })?;
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma.plane_size(width, height);
    let (y_plane, rest) = src.split_at(w * h);
    let (cb_plane, cr_plane) = rest.split_at(cw * ch);
    let mut out = vec![0u8; w * h * 3];
    for (row, line) in out.chunks_exact_mut(w * 3).enumerate().take(h) {
        let crow = match chroma {
            Chroma::C420 => row / 2,
            _ => row,
        };
        for (col, px) in line.chunks_exact_mut(3).enumerate() {
            let y = y_plane.get(row * w + col).copied().unwrap_or(16);
            let ccol = match chroma {
                Chroma::C420 | Chroma::C422 => col / 2,
                _ => col,
            };
            let (cb, cr) = if chroma == Chroma::Mono {
                (128, 128)
            } else {
                let i = crow * cw + ccol;
                (cb_plane.get(i).copied().unwrap_or(128), cr_plane.get(i).copied().unwrap_or(128))
            };
            px.copy_from_slice(&ycbcr_to_rgb(y, cb, cr));
        }
    }
    RgbImage::from_raw(width, height, out).ok_or(PixelError::Size { width, height, want, have: data.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook floating-point BT.601 limited-range conversion.
    fn reference(y: u8, cb: u8, cr: u8) -> [f64; 3] {
        let (y, cb, cr) = (f64::from(y) - 16.0, f64::from(cb) - 128.0, f64::from(cr) - 128.0);
        [1.164 * y + 1.596 * cr, 1.164 * y - 0.392 * cb - 0.813 * cr, 1.164 * y + 2.017 * cb].map(|v| v.clamp(0.0, 255.0))
    }

    #[test]
    fn known_colours() {
        assert_eq!(ycbcr_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(ycbcr_to_rgb(235, 128, 128), [255, 255, 255]);
        let red = ycbcr_to_rgb(81, 90, 240);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{red:?}");
    }

    #[test]
    fn yuyv_pairs_share_chroma_and_sizes_are_checked() {
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 2, 2).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        assert!(img.get_pixel(0, 1).0[0] > 250);
        assert!(matches!(yuyv_to_rgb(&data[..7], 2, 2), Err(PixelError::Size { want: 8, have: 7, .. })));
        assert_eq!(yuyv_to_rgb(&data, 1, 2), Err(PixelError::OddWidth(1)));
    }

    #[test]
    fn planar_420_uses_the_right_chroma_sample() {
        // 4x2 frame: left half neutral chroma, right half red chroma
        let mut data = vec![128u8; 8];
        data.extend_from_slice(&[128, 90]); // Cb: 2x1
        data.extend_from_slice(&[128, 240]); // Cr: 2x1
        let img = planar_to_rgb(&data, 4, 2, Chroma::C420).unwrap();
        let (l, r) = (img.get_pixel(1, 1).0, img.get_pixel(2, 1).0);
        assert_eq!(l[0], l[1], "neutral chroma is gray");
        assert!(r[0] > r[1] && r[0] > r[2], "{r:?}");
        assert!(planar_to_rgb(&data[..11], 4, 2, Chroma::C420).is_err());
        assert_eq!(Chroma::C420.frame_bytes(5, 3), 15 + 2 * 3 * 2);
    }

    proptest::proptest! {
        #[test]
        fn integer_conversion_matches_the_reference(y in 0u8..=255, cb in 0u8..=255, cr in 0u8..=255) {
            let got = ycbcr_to_rgb(y, cb, cr);
            let want = reference(y, cb, cr);
            for (g, w) in got.iter().zip(want) {
                proptest::prop_assert!((f64::from(*g) - w).abs() <= 1.0, "{:?} vs {:?}", got, want);
            }
        }

        #[test]
        fn conversions_never_panic(data in proptest::collection::vec(0u8..=255, 0..300), w in 0u32..20, h in 0u32..20) {
            let _ = yuyv_to_rgb(&data, w, h);
            for c in [Chroma::C420, Chroma::C422, Chroma::C444, Chroma::Mono] {
                let _ = planar_to_rgb(&data, w, h, c);
            }
        }
    }
}

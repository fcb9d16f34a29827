//! Frames and where they come from: image files and directories, and recorded streams ([`replay`]: MJPEG,
//! Y4M, raw YUYV). Every bad file or frame yields one error that names it, and the caller carries on.

pub mod pixel;
pub mod replay;

use image::RgbImage;
use std::path::{Path, PathBuf};

/// One decoded RGB frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub rgb: RgbImage,
    /// Where the frame came from (a file path, or a stream name and sequence number).
    pub origin: String,
    pub seq: u64,
}

impl Frame {
    pub fn width(&self) -> u32 {
        self.rgb.width()
    }
    pub fn height(&self) -> u32 {
        self.rgb.height()
    }
}

/// Limits that keep a hostile or broken file from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted pixel count (width × height).
    pub max_pixels: u64,
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_side: 16_384, max_pixels: 64 * 1024 * 1024, max_file_bytes: 256 * 1024 * 1024 }
    }
}

impl DecodeLimits {
    /// Refuses a zero-sized frame, or one over the side or pixel limits, before any pixel is allocated.
    pub fn check_size(&self, path: &Path, width: u32, height: u32) -> Result<(), SourceError> {
        if width == 0 || height == 0 {
            return Err(SourceError::ZeroSize { path: path.to_path_buf() });
        }
        if width > self.max_side || height > self.max_side || u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(SourceError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: file is {bytes} bytes, over the {limit}-byte limit")]
    TooLargeFile { path: PathBuf, bytes: u64, limit: u64 },
    #[error("{path}: not an image in a supported format (JPEG, PNG, BMP, GIF, TIFF, WebP, PNM)")]
    NotAnImage { path: PathBuf },
    #[error("{path}: image is {width}x{height}, over the limit ({max_side} px a side, {max_pixels} pixels); refusing to decode it")]
    TooLarge { path: PathBuf, width: u32, height: u32, max_side: u32, max_pixels: u64 },
    #[error("{path}: image has zero width or height")]
    ZeroSize { path: PathBuf },
    #[error("{path}: corrupt or truncated image: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
}

/// Reads a whole file after checking it is non-empty and within the file-size limit.
pub(crate) fn read_bounded(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, SourceError> {
    let p = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SourceError::NotFound { path: p() }
        } else {
            SourceError::Read { path: p(), source }
        }
    })?;
    if meta.len() == 0 {
        return Err(SourceError::Empty { path: p() });
    }
    if meta.len() > limits.max_file_bytes {
        return Err(SourceError::TooLargeFile { path: p(), bytes: meta.len(), limit: limits.max_file_bytes });
    }
    std::fs::read(path).map_err(|source| SourceError::Read { path: p(), source })
}

/// Decodes one image file into an RGB frame, checking the header's dimensions before decoding any pixels.
pub fn read_image(path: &Path, limits: &DecodeLimits) -> Result<Frame, SourceError> {
    let bytes = read_bounded(path, limits)?;
    decode_bytes(&bytes, path, limits)
}

/// Decodes an encoded image held in memory; `path` names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<Frame, SourceError> {
    let p = || path.to_path_buf();
    if bytes.is_empty() {
        return Err(SourceError::Empty { path: p() });
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| SourceError::Read { path: p(), source })?;
    let Some(format) = reader.format() else {
        return Err(SourceError::NotAnImage { path: p() });
    };
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(SourceError::Corrupt {
            path: p(),
            reason: "JPEG ends before its end-of-image marker (truncated file)".into(),
        });
    }
    // one decoder: its header gives the size, checked before any pixel is decoded (a decoder made only to read
    // the size and then another to decode parsed every frame's header, and copied its bytes, twice)
    let corrupt = |e: image::ImageError| SourceError::Corrupt { path: p(), reason: e.to_string() };
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    limits.check_size(path, width, height)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    // RGBA8 of the largest accepted image plus decoder working memory.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    l.reserve(image::ImageDecoder::total_bytes(&decoder)).map_err(corrupt)?;
    image::ImageDecoder::set_limits(&mut decoder, l).map_err(corrupt)?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok(Frame { rgb: img.into_rgb8(), origin: path.display().to_string(), seq: 0 })
}

/// A complete JPEG has its end-of-image marker (FF D9) after the last start-of-scan marker (FF DA). Inside
/// entropy-coded data every FF byte is stuffed, so neither pattern occurs there; an EOI that only precedes the
/// last scan belongs to an embedded thumbnail. The decoder alone pads a truncated scan with grey silently.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// File extensions a directory walk treats as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp", "pnm", "ppm", "pgm", "pbm"];

pub fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The files to caption: files named as inputs are taken as they are; directories are walked (not recursively,
/// sorted, hidden entries skipped) for files with an image extension. A missing input is an error in the list,
/// in place. Also returns the other files the walk passed over.
pub fn expand_inputs(inputs: &[PathBuf]) -> (Vec<Result<PathBuf, SourceError>>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut passed_over = Vec::new();
    for input in inputs {
        if input.is_dir() {
            match std::fs::read_dir(input) {
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = Vec::new();
                    for entry in entries {
                        // an entry that cannot be read is an error in the list, never passed over in silence
                        let p = match entry {
                            Ok(e) => e.path(),
                            Err(source) => {
                                out.push(Err(SourceError::Read { path: input.clone(), source }));
                                continue;
                            }
                        };
                        if p.is_file() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                            files.push(p);
                        }
                    }
                    files.sort();
                    let (images, others): (Vec<PathBuf>, Vec<PathBuf>) =
                        files.into_iter().partition(|p| has_image_extension(p));
                    out.extend(images.into_iter().map(Ok));
                    passed_over.extend(others);
                }
                Err(source) => out.push(Err(SourceError::Read { path: input.clone(), source })),
            }
        } else if input.exists() {
            out.push(Ok(input.clone()));
        } else {
            out.push(Err(SourceError::NotFound { path: input.clone() }));
        }
    }
    (out, passed_over)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut buf = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png).unwrap();
        buf
    }

    #[test]
    fn decodes_a_png() {
        let f = decode_bytes(&png_bytes(7, 5), Path::new("a.png"), &DecodeLimits::default()).unwrap();
        assert_eq!((f.width(), f.height()), (7, 5));
        assert_eq!(f.rgb.get_pixel(3, 3).0, [10, 20, 30]);
    }

    #[test]
    fn truncated_jpeg_is_caught() {
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 7]));
        let mut jpg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
        let l = DecodeLimits::default();
        assert!(decode_bytes(&jpg, Path::new("ok.jpg"), &l).is_ok());
        let mut padded = jpg.clone();
        padded.extend_from_slice(&[0, 0, 0, 0]);
        assert!(decode_bytes(&padded, Path::new("padded.jpg"), &l).is_ok(), "trailing bytes after EOI are fine");
        let cut = &jpg[..jpg.len() - 40];
        let e = decode_bytes(cut, Path::new("cut.jpg"), &l).unwrap_err();
        assert!(matches!(e, SourceError::Corrupt { .. }) && e.to_string().contains("cut.jpg"), "{e}");
    }

    #[test]
    fn rejects_text_empty_truncated_and_bombs() {
        let l = DecodeLimits::default();
        let e = decode_bytes(b"hello, I am text", Path::new("notes.txt"), &l).unwrap_err();
        assert!(matches!(e, SourceError::NotAnImage { .. }) && e.to_string().contains("notes.txt"));
        assert!(matches!(decode_bytes(b"", Path::new("e.png"), &l), Err(SourceError::Empty { .. })));
        let png = png_bytes(64, 64);
        let cut = &png[..png.len() / 2];
        assert!(matches!(decode_bytes(cut, Path::new("cut.png"), &l), Err(SourceError::Corrupt { .. })));
        // a header that claims a huge image is refused before any pixel is decoded
        let small = DecodeLimits { max_side: 32, max_pixels: 1024, max_file_bytes: 1 << 20 };
        let e = decode_bytes(&png, Path::new("bomb.png"), &small).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { width: 64, height: 64, .. }), "{e}");
    }
}

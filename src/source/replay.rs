//! Readers for recorded streams: Y4M and raw YUYV of a given size, and the marker scan that splits concatenated
//! JPEGs (the MJPEG reader itself is `stream::sources::MjpegStream`, for files and pipes alike). Each yields
//! frames one at a time; a corrupt frame is an error for that frame only and the reader moves on, so a stream
//! can skip and count it. Memory is bounded by one frame (frame sizes are checked against limits before
//! anything is allocated).

use super::pixel::{planar_to_rgb, yuyv_to_rgb, Chroma};
use super::{DecodeLimits, Frame, SourceError};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

fn corrupt(path: &Path, reason: impl Into<String>) -> SourceError {
    SourceError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

/// Splits a byte stream of concatenated JPEGs into whole JPEGs by walking their markers: segment lengths are
/// followed up to the scan, entropy-coded data is scanned for the next real marker, and a frame ends at its
/// EOI. Bytes that do not start with SOI are skipped up to the next SOI. Linear in the input.
pub fn split_mjpeg(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    scan_mjpeg(data).into_iter().filter_map(|p| match p {
        MjpegPiece::Frame(r) => Some(r),
        MjpegPiece::Broken(_) | MjpegPiece::Incomplete(_) => None,
    }).collect()
}

/// What a scan of concatenated JPEGs finds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MjpegPiece {
    /// A whole frame, SOI to EOI.
    Frame(std::ops::Range<usize>),
    /// A frame that starts with SOI but breaks off (a new SOI before its EOI, or garbage between segments).
    Broken(std::ops::Range<usize>),
    /// A frame still open at the end of the data (truncated, or more bytes to come).
    Incomplete(std::ops::Range<usize>),
}

/// Like `split_mjpeg`, but reports broken and unfinished frames too, so a stream can count them.
pub fn scan_mjpeg(data: &[u8]) -> Vec<MjpegPiece> {
    let mut frames = Vec::new();
    scan_mjpeg_into(data, &mut frames);
    frames
}

/// `scan_mjpeg` into a list the caller keeps (cleared first), so a reader that scans every chunk does not
/// allocate a list per scan.
pub fn scan_mjpeg_into(data: &[u8], frames: &mut Vec<MjpegPiece>) {
    frames.clear();
    let mut i = 0usize;
    let byte = |k: usize| data.get(k).copied();
    while i + 1 < data.len() {
        // find SOI
        if !(byte(i) == Some(0xFF) && byte(i + 1) == Some(0xD8)) {
            i += 1;
            continue;
        }
        let start = i;
        let mut k = i + 2;
        let mut end = None;
        let mut in_scan = false;
        while k + 1 < data.len() {
            if byte(k) != Some(0xFF) {
                if !in_scan {
                    break; // garbage between segments: not a valid frame
                }
                k += 1;
                continue;
            }
            let Some(m) = byte(k + 1) else { break };
            match m {
                0x00 | 0xFF if in_scan => k += if m == 0x00 { 2 } else { 1 },
                0xFF => k += 1, // fill byte
                0xD0..=0xD7 | 0x01 => k += 2,
                0xD9 => {
                    end = Some(k + 2);
                    break;
                }
                0xD8 => break, // a new SOI before EOI: truncated frame
                _ => {
                    let len = usize::from(byte(k + 2).unwrap_or(0)) << 8 | usize::from(byte(k + 3).unwrap_or(0));
                    if len < 2 {
                        break;
                    }
                    in_scan = m == 0xDA;
                    k += 2 + len;
                }
            }
        }
        match end {
            Some(e) => {
                frames.push(MjpegPiece::Frame(start..e));
                i = e;
            }
            None => {
                // resume at the next SOI after this one
                let next = (start + 2..data.len().saturating_sub(1))
                    .find(|&k| data.get(k) == Some(&0xFF) && data.get(k + 1) == Some(&0xD8));
                match next {
                    Some(n) => {
                        frames.push(MjpegPiece::Broken(start..n));
                        i = n;
                    }
                    None => {
                        frames.push(MjpegPiece::Incomplete(start..data.len()));
                        i = data.len();
                    }
                }
            }
        }
    }
}

/// Frames of a Y4M file (YUV4MPEG2), read one at a time from the file.
pub struct Y4mFrames<R: Read> {
    path: PathBuf,
    reader: BufReader<R>,
    width: u32,
    height: u32,
    chroma: Chroma,
    buf: Vec<u8>,
    seq: u64,
    done: bool,
}

impl Y4mFrames<std::fs::File> {
    pub fn open(path: &Path, limits: DecodeLimits) -> Result<Self, SourceError> {
        let f = std::fs::File::open(path).map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
        Y4mFrames::new(f, path, limits)
    }
}

impl<R: Read> Y4mFrames<R> {
    /// Reads the stream header; `path` names the stream in errors.
    pub fn new(inner: R, path: &Path, limits: DecodeLimits) -> Result<Self, SourceError> {
        let mut reader = BufReader::new(inner);
        let mut header = Vec::new();
        reader
            .by_ref()
            .take(1024)
            .read_until(b'\n', &mut header)
            .map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
        let text = String::from_utf8_lossy(&header);
        let mut fields = text.trim_end().split(' ');
        if fields.next() != Some("YUV4MPEG2") {
            return Err(corrupt(path, "not a Y4M stream (missing YUV4MPEG2 header)"));
        }
        let (mut width, mut height, mut chroma) = (0u32, 0u32, Chroma::C420);
        for f in fields {
            // the tag is the first character, whatever its width (split_at on a byte index could cut a char)
            let mut chars = f.chars();
            let key = chars.next().map(String::from).unwrap_or_default();
            let value = chars.as_str();
            let key = key.as_str();
            match key {
                "W" => width = value.parse().unwrap_or(0),
                "H" => height = value.parse().unwrap_or(0),
                "C" => {
                    chroma = match value {
                        v if v.starts_with("420") => Chroma::C420,
                        v if v.starts_with("422") => Chroma::C422,
                        v if v.starts_with("444") && !v.contains("alpha") => Chroma::C444,
                        "mono" => Chroma::Mono,
                        other => return Err(corrupt(path, format!("unsupported Y4M colour space C{other}"))),
                    }
                }
                _ => {}
            }
        }
        limits.check_size(path, width, height)?;
        Ok(Y4mFrames {
            path: path.to_path_buf(),
            reader,
            width,
            height,
            chroma,
            buf: vec![0; chroma.frame_bytes(width, height)],
            seq: 0,
            done: false,
        })
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl<R: Read> Iterator for Y4mFrames<R> {
    type Item = Result<Frame, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let seq = self.seq;
        self.seq += 1;
        let name = format!("{}#{seq}", self.path.display());
        let mut line = Vec::new();
        match self.reader.by_ref().take(1024).read_until(b'\n', &mut line) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) if line.starts_with(b"FRAME") && line.ends_with(b"\n") => {}
            Ok(_) => {
                self.done = true; // framing is lost: nothing after this can be trusted
                return Some(Err(corrupt(Path::new(&name), "bad FRAME header; stream ends here")));
            }
            Err(source) => {
                self.done = true;
                return Some(Err(SourceError::Read { path: PathBuf::from(name), source }));
            }
        }
        if let Err(e) = self.reader.read_exact(&mut self.buf) {
            self.done = true;
            return Some(Err(corrupt(Path::new(&name), format!("truncated frame: {e}"))));
        }
        Some(
            planar_to_rgb(&self.buf, self.width, self.height, self.chroma)
                .map(|rgb| Frame { rgb, origin: name.clone(), seq })
                .map_err(|e| corrupt(Path::new(&name), e.to_string())),
        )
    }
}

/// Frames of a raw YUYV recording of a known size (`--size WxH`), read one at a time.
pub struct YuyvFrames<R: Read> {
    path: PathBuf,
    reader: R,
    width: u32,
    height: u32,
    buf: Vec<u8>,
    seq: u64,
    done: bool,
}

impl<R: Read> YuyvFrames<R> {
    pub fn new(reader: R, path: &Path, width: u32, height: u32, limits: DecodeLimits) -> Result<Self, SourceError> {
        limits.check_size(path, width, height)?;
        if !width.is_multiple_of(2) {
            return Err(corrupt(path, format!("YUYV needs an even width, got {width}")));
        }
        let buf = vec![0; width as usize * height as usize * 2];
        Ok(YuyvFrames { path: path.to_path_buf(), reader, width, height, buf, seq: 0, done: false })
    }
}

impl<R: Read> Iterator for YuyvFrames<R> {
    type Item = Result<Frame, SourceError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let seq = self.seq;
        self.seq += 1;
        let name = format!("{}#{seq}", self.path.display());
        let mut filled = 0;
        while filled < self.buf.len() {
            match self.reader.read(self.buf.get_mut(filled..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.done = true;
                    return Some(Err(SourceError::Read { path: PathBuf::from(name), source }));
                }
            }
        }
        if filled == 0 {
            self.done = true;
            return None;
        }
        if filled < self.buf.len() {
            self.done = true;
            return Some(Err(corrupt(
                Path::new(&name),
                format!("truncated frame: {filled} of {} bytes", self.buf.len()),
            )));
        }
        Some(
            yuyv_to_rgb(&self.buf, self.width, self.height)
                .map(|rgb| Frame { rgb, origin: name.clone(), seq })
                .map_err(|e| corrupt(Path::new(&name), e.to_string())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multibyte_header_field_is_not_a_panic() {
        // found by the recording_readers fuzz target: a field starting with a 3-byte character
        let data = "YUV4MPEG2 \u{FFFD}x W4 H2\n".as_bytes();
        let r = Y4mFrames::new(data, Path::new("fuzz"), DecodeLimits::default());
        assert!(r.is_ok());
    }

    fn jpeg(w: u32, h: u32, v: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v / 2, 255 - v]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out
    }

    #[test]
    fn splits_concatenated_jpegs_and_skips_garbage_and_truncation() {
        let (a, b, c) = (jpeg(16, 8, 10), jpeg(16, 8, 200), jpeg(8, 8, 90));
        let mut stream = a.clone();
        stream.extend_from_slice(b"garbage between frames");
        stream.extend_from_slice(&b[..b.len() / 2]); // truncated frame
        stream.extend_from_slice(&c);
        let frames = split_mjpeg(&stream);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(&stream[frames[0].clone()], &a[..]);
        assert_eq!(&stream[frames[1].clone()], &c[..]);
    }

    #[test]
    fn y4m_frames_and_a_truncated_tail() {
        let mut data = b"YUV4MPEG2 W4 H2 F30:1 Ip A1:1 C420jpeg\n".to_vec();
        for y in [16u8, 235] {
            data.extend_from_slice(b"FRAME\n");
            data.extend(std::iter::repeat_n(y, 8));
            data.extend_from_slice(&[128; 4]);
        }
        data.extend_from_slice(b"FRAME\n\x10\x10");
        let r = Y4mFrames::new(std::io::Cursor::new(data), Path::new("t.y4m"), DecodeLimits::default()).unwrap();
        assert_eq!(r.size(), (4, 2));
        let frames: Vec<_> = r.collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].as_ref().unwrap().rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(frames[1].as_ref().unwrap().rgb.get_pixel(3, 1).0, [255, 255, 255]);
        let e = frames[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("t.y4m#2") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn y4m_header_is_checked() {
        let l = DecodeLimits::default();
        assert!(Y4mFrames::new(std::io::Cursor::new(b"RIFF....".to_vec()), Path::new("x"), l).is_err());
        let huge = b"YUV4MPEG2 W100000 H100000 C420\n".to_vec();
        assert!(matches!(Y4mFrames::new(std::io::Cursor::new(huge), Path::new("x"), l), Err(SourceError::TooLarge { .. })));
    }

    #[test]
    fn raw_yuyv_frames() {
        let mut data = [16u8, 128, 235, 128].repeat(4); // one whole 4x2 frame of black/white pairs
        data.extend_from_slice(&[16, 128, 16]); // then a truncated second frame
        let frames: Vec<_> = YuyvFrames::new(std::io::Cursor::new(data), Path::new("cam.yuyv"), 4, 2, DecodeLimits::default())
            .unwrap()
            .collect();
        assert_eq!(frames.len(), 2);
        let f = frames[0].as_ref().unwrap();
        assert_eq!((f.rgb.get_pixel(0, 0).0, f.rgb.get_pixel(1, 0).0), ([0, 0, 0], [255, 255, 255]));
        assert!(frames[1].as_ref().unwrap_err().to_string().contains("truncated"));
        assert!(YuyvFrames::new(std::io::empty(), Path::new("x"), 3, 2, DecodeLimits::default()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn readers_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(0u8..=255, 0..600)) {
            let ranges = split_mjpeg(&data);
            for r in &ranges {
                proptest::prop_assert!(r.start < r.end && r.end <= data.len());
            }
            let mut y4m = b"YUV4MPEG2 W4 H4 C420\n".to_vec();
            y4m.extend_from_slice(&data);
            if let Ok(r) = Y4mFrames::new(std::io::Cursor::new(y4m), Path::new("p"), DecodeLimits::default()) {
                proptest::prop_assert!(r.take(1000).count() <= 1000);
            }
            if let Ok(r) = YuyvFrames::new(std::io::Cursor::new(data.clone()), Path::new("p"), 2, 2, DecodeLimits::default()) {
                proptest::prop_assert!(r.count() <= data.len() / 8 + 1);
            }
        }
    }
}

//! Frame sources behind one trait: recordings (MJPEG of concatenated JPEGs, Y4M, raw YUYV with a given size), an
//! image directory as a sequence, standard input, and (feature `camera`) a V4L2 camera.

use crate::source::replay::{scan_mjpeg_into, MjpegPiece, Y4mFrames, YuyvFrames};
use crate::source::{self, decode_bytes, DecodeLimits, Frame, SourceError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where frames come from. `next_frame` returns None at the end of a recording; a live source that fails returns
/// an error and may be reopened.
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Option<Result<Frame, SourceError>>;
    /// Live sources (cameras) drop stale frames when the pipeline falls behind; recordings never do.
    fn is_live(&self) -> bool {
        false
    }
    fn describe(&self) -> String;
    /// Reopens a live source after a failure (a camera that disappeared).
    fn reopen(&mut self) -> Result<(), SourceError> {
        Err(SourceError::Corrupt { path: PathBuf::from(self.describe()), reason: "this source cannot be reopened".into() })
    }
}

/// Any iterator of frames, named.
pub struct Recording<I> {
    name: String,
    frames: I,
}

impl<I> Recording<I> {
    pub fn new(name: &str, frames: I) -> Self {
        Recording { name: name.to_string(), frames }
    }
}

impl<I: Iterator<Item = Result<Frame, SourceError>> + Send> FrameSource for Recording<I> {
    fn next_frame(&mut self) -> Option<Result<Frame, SourceError>> {
        self.frames.next()
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Concatenated JPEGs read incrementally from any reader (a recording, standard input, a pipe): bytes are
/// buffered until a whole frame (SOI … EOI) is present; a buffer that grows past the file-size limit without one
/// is discarded and counted as a corrupt frame, so memory holds about one frame on any input, whatever the
/// recording's length.
pub struct MjpegStream<R> {
    name: String,
    reader: R,
    buf: Vec<u8>,
    /// the last scan's pieces, kept so a scan per chunk does not allocate a list
    scanned: Vec<MjpegPiece>,
    pending: std::collections::VecDeque<MjpegPiece>,
    consumed: usize,
    limits: DecodeLimits,
    seq: u64,
    eof: bool,
    /// the input ended without a single JPEG start marker (reported once, as a corrupt frame)
    found_none: bool,
}

impl<R: Read> MjpegStream<R> {
    pub fn new(reader: R, name: &str, limits: DecodeLimits) -> Self {
        MjpegStream {
            name: name.to_string(),
            reader,
            buf: Vec::new(),
            scanned: Vec::new(),
            pending: Default::default(),
            consumed: 0,
            limits,
            seq: 0,
            eof: false,
            found_none: false,
        }
    }

    /// True once the input has ended without a single JPEG in it: garbage, or nothing at all.
    pub fn found_none(&self) -> bool {
        self.found_none
    }

    /// A corrupt frame, named by its place in the stream and counted in the sequence.
    fn corrupt(&mut self, reason: impl Into<String>) -> SourceError {
        let seq = self.seq;
        self.seq += 1;
        SourceError::Corrupt { path: PathBuf::from(format!("{}#{seq}", self.name)), reason: reason.into() }
    }

    fn emit(&mut self, range: std::ops::Range<usize>) -> Result<Frame, SourceError> {
        let seq = self.seq;
        self.seq += 1;
        let name = PathBuf::from(format!("{}#{seq}", self.name));
        let bytes = self.buf.get(range).unwrap_or_default();
        decode_bytes(bytes, &name, &self.limits).map(|mut f| {
            f.seq = seq;
            f
        })
    }
}

impl<R: Read + Send> Iterator for MjpegStream<R> {
    type Item = Result<Frame, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.pending.pop_front() {
                Some(MjpegPiece::Frame(r)) => return Some(self.emit(r)),
                Some(MjpegPiece::Broken(_)) => {
                    return Some(Err(self.corrupt("truncated JPEG frame (a new frame starts before its end)")));
                }
                // only queued at the end of the input
                Some(MjpegPiece::Incomplete(_)) => {
                    return Some(Err(self.corrupt("truncated JPEG frame at the end of the recording")));
                }
                None => {}
            }
            if self.consumed > 0 {
                self.buf.drain(..self.consumed.min(self.buf.len()));
                self.consumed = 0;
            }
            if self.eof {
                // corrupt() counts this one, so it is reported once
                if self.seq == 0 {
                    self.found_none = true;
                    return Some(Err(self.corrupt("no JPEG frame in this MJPEG stream")));
                }
                return None;
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.reader.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.eof = true;
                    return Some(Err(SourceError::Read { path: PathBuf::from(&self.name), source }));
                }
            }
            // everything up to the last finished piece is settled; an open frame waits for more bytes, and at
            // the end of the input it is a truncated frame
            scan_mjpeg_into(&self.buf, &mut self.scanned);
            match self.scanned.last() {
                Some(MjpegPiece::Incomplete(r)) if !self.eof => {
                    self.consumed = r.start;
                    self.scanned.pop();
                }
                Some(MjpegPiece::Frame(r) | MjpegPiece::Broken(r) | MjpegPiece::Incomplete(r)) => self.consumed = r.end,
                None => self.consumed = 0,
            }
            self.pending.extend(self.scanned.drain(..));
            if self.pending.is_empty() && self.buf.len() as u64 > self.limits.max_file_bytes {
                self.buf.clear();
                let reason = format!("no complete JPEG within {} bytes; resynchronising", self.limits.max_file_bytes);
                return Some(Err(self.corrupt(reason)));
            }
        }
    }
}

/// Formats a recording can have; chosen from the extension unless given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    Mjpeg,
    Y4m,
    Yuyv,
}

impl ReplayFormat {
    pub fn from_path(path: &Path) -> Option<ReplayFormat> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("mjpeg" | "mjpg" | "mjp") => Some(ReplayFormat::Mjpeg),
            Some("y4m") => Some(ReplayFormat::Y4m),
            Some("yuyv" | "yuv" | "yuy2") => Some(ReplayFormat::Yuyv),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}: raw YUYV needs --size WIDTHxHEIGHT")]
    NeedSize(PathBuf),
    #[error("{0}: unknown recording format (use .mjpeg, .y4m, .yuyv, a directory of images, or --replay-format)")]
    UnknownFormat(PathBuf),
    #[error("{0}: the directory holds no images")]
    EmptyDirectory(PathBuf),
}

/// Opens a recording: a directory of images, an MJPEG / Y4M / YUYV file, or `-` for standard input.
pub fn open_replay(
    path: &Path,
    format: Option<ReplayFormat>,
    size: Option<(u32, u32)>,
    limits: DecodeLimits,
) -> Result<Box<dyn FrameSource>, OpenError> {
    let name = path.display().to_string();
    if path == Path::new("-") {
        let stdin = std::io::stdin();
        return Ok(match format.unwrap_or(ReplayFormat::Mjpeg) {
            ReplayFormat::Mjpeg => Box::new(Recording { name: "stdin".into(), frames: MjpegStream::new(stdin, "stdin", limits) }),
            ReplayFormat::Y4m => Box::new(Recording { name: "stdin".into(), frames: Y4mFrames::new(stdin, Path::new("stdin"), limits)? }),
            ReplayFormat::Yuyv => {
                let (w, h) = size.ok_or_else(|| OpenError::NeedSize(path.to_path_buf()))?;
                Box::new(Recording { name: "stdin".into(), frames: YuyvFrames::new(stdin, Path::new("stdin"), w, h, limits)? })
            }
        });
    }
    if path.is_dir() {
        let (inputs, _) = source::expand_inputs(&[path.to_path_buf()]);
        let files: Vec<PathBuf> = inputs.into_iter().filter_map(Result::ok).collect();
        if files.is_empty() {
            return Err(OpenError::EmptyDirectory(path.to_path_buf()));
        }
        let frames = files.into_iter().enumerate().map(move |(seq, p)| {
            source::read_image(&p, &limits).map(|mut f| {
                f.seq = seq as u64;
                f
            })
        });
        return Ok(Box::new(Recording { name, frames }));
    }
    if !path.exists() {
        return Err(SourceError::NotFound { path: path.to_path_buf() }.into());
    }
    match format.or_else(|| ReplayFormat::from_path(path)) {
        Some(ReplayFormat::Mjpeg) => {
            // read incrementally whatever the file's size: the whole of a 60-frame recording held in memory was
            // 7.7 MB of the stream's live heap at its peak
            let f = std::fs::File::open(path).map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
            if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
                return Err(SourceError::Empty { path: path.to_path_buf() }.into());
            }
            // a file with no JPEG in it is refused here, not streamed as zero frames
            let mut frames = MjpegStream::new(f, &name, limits);
            let first = frames.next();
            if frames.found_none() {
                let reason = "no JPEG frame in this MJPEG recording".into();
                return Err(SourceError::Corrupt { path: path.to_path_buf(), reason }.into());
            }
            Ok(Box::new(Recording { name, frames: first.into_iter().chain(frames) }))
        }
        Some(ReplayFormat::Y4m) => Ok(Box::new(Recording { name, frames: Y4mFrames::open(path, limits)? })),
        Some(ReplayFormat::Yuyv) => {
            let (w, h) = size.ok_or_else(|| OpenError::NeedSize(path.to_path_buf()))?;
            let f = std::fs::File::open(path).map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
            Ok(Box::new(Recording { name, frames: YuyvFrames::new(std::io::BufReader::new(f), path, w, h, limits)? }))
        }
        None => Err(OpenError::UnknownFormat(path.to_path_buf())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, shade: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([shade, 100, 50]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// A reader that hands out a few bytes at a time, like a pipe.
    struct Trickle(std::io::Cursor<Vec<u8>>);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn incremental_mjpeg_yields_whole_frames_and_skips_a_cut_one() {
        let mut data = jpeg(16, 8, 10);
        let cut = jpeg(16, 8, 20);
        data.extend_from_slice(&cut[..cut.len() / 2]);
        data.extend(jpeg(16, 8, 30));
        let frames: Vec<_> = MjpegStream::new(Trickle(std::io::Cursor::new(data)), "pipe", DecodeLimits::default()).collect();
        let ok: Vec<_> = frames.iter().filter_map(|f| f.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!(frames.iter().filter(|f| f.is_err()).count(), 1, "the cut frame is reported, not silently lost");
        assert!(ok.iter().all(|f| f.rgb.dimensions() == (16, 8)));
    }

    #[test]
    fn an_mjpeg_file_is_read_frame_by_frame_and_a_cut_tail_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("rec.mjpeg");
        let mut data = jpeg(16, 8, 10);
        data.extend(jpeg(16, 8, 200));
        let tail = jpeg(16, 8, 90);
        data.extend_from_slice(&tail[..tail.len() / 2]);
        std::fs::write(&p, &data).unwrap();
        let mut source = open_replay(&p, None, None, DecodeLimits::default()).unwrap();
        let frames: Vec<_> = std::iter::from_fn(|| source.next_frame()).collect();
        assert_eq!(frames.len(), 3);
        let f1 = frames[1].as_ref().unwrap();
        assert_eq!((f1.seq, f1.width(), f1.height()), (1, 16, 8));
        assert!(f1.origin.ends_with("rec.mjpeg#1"), "{}", f1.origin);
        assert!(f1.rgb.get_pixel(4, 4).0[0] > 150);
        let e = frames[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("rec.mjpeg#2") && e.contains("at the end of the recording"), "{e}");
    }

    #[test]
    fn an_mjpeg_file_without_a_jpeg_is_refused_at_open_and_a_pipe_reports_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (empty, junk) = (tmp.path().join("empty.mjpeg"), tmp.path().join("junk.mjpeg"));
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&junk, vec![0x42u8; 5000]).unwrap();
        let e = open_replay(&empty, None, None, DecodeLimits::default()).err().unwrap().to_string();
        assert!(e.contains("empty.mjpeg") && e.contains("empty"), "{e}");
        let e = open_replay(&junk, None, None, DecodeLimits::default()).err().unwrap().to_string();
        assert!(e.contains("junk.mjpeg") && e.contains("no JPEG frame"), "{e}");
        // a pipe cannot be refused before it is read: nothing in it is one corrupt frame, not silence
        let frames: Vec<_> = MjpegStream::new(std::io::Cursor::new(vec![0x42u8; 5000]), "pipe", DecodeLimits::default()).collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].as_ref().unwrap_err().to_string().contains("no JPEG frame"));
        assert_eq!(MjpegStream::new(std::io::Cursor::new(Vec::new()), "pipe", DecodeLimits::default()).count(), 1);
    }

    #[test]
    fn garbage_without_frames_is_bounded() {
        let limits = DecodeLimits { max_file_bytes: 1000, ..DecodeLimits::default() };
        let data = vec![0x42u8; 10_000];
        let frames: Vec<_> = MjpegStream::new(std::io::Cursor::new(data), "junk", limits).collect();
        assert!(!frames.is_empty() && frames.iter().all(Result::is_err));
    }
}

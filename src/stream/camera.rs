//! A V4L2 camera (feature `camera`): negotiates YUYV or MJPEG at a requested size, reads back the format the
//! driver chose, captures through mmap buffers with a dequeue timeout, slices MJPEG buffers to `bytesused`, and
//! reopens with backoff (driven by the stream) when the device disappears.

use super::sources::FrameSource;
use crate::source::pixel::yuyv_to_rgb;
use crate::source::{decode_bytes, DecodeLimits, Frame, SourceError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Mjpeg,
}

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        match self {
            PixelFormat::Yuyv => FourCC::new(b"YUYV"),
            PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CameraConfig {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub buffers: u32,
    pub timeout: Duration,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig { format: PixelFormat::Mjpeg, width: 640, height: 480, buffers: 4, timeout: Duration::from_secs(2) }
    }
}

struct Open {
    stream: Stream<'static>,
    format: PixelFormat,
    width: u32,
    height: u32,
    _device: Device,
}

pub struct CameraSource {
    path: PathBuf,
    cfg: CameraConfig,
    open: Option<Open>,
    limits: DecodeLimits,
    seq: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Read { path: path.to_path_buf(), source }
}

fn open(path: &Path, cfg: &CameraConfig) -> Result<Open, SourceError> {
    let device = Device::with_path(path).map_err(|e| io_err(path, e))?;
    let mut fmt = device.format().map_err(|e| io_err(path, e))?;
    fmt.width = cfg.width;
    fmt.height = cfg.height;
    fmt.fourcc = cfg.format.fourcc();
    // the driver may choose another size or format: use what it reports back
    let chosen = device.set_format(&fmt).map_err(|e| io_err(path, e))?;
    let format = if chosen.fourcc == PixelFormat::Yuyv.fourcc() {
        PixelFormat::Yuyv
    } else if chosen.fourcc == PixelFormat::Mjpeg.fourcc() {
        PixelFormat::Mjpeg
    } else {
        return Err(SourceError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the driver offers {} instead of YUYV or MJPG", chosen.fourcc),
        });
    };
    log::info!("{}: capturing {}x{} {}", path.display(), chosen.width, chosen.height, chosen.fourcc);
    let mut stream = Stream::with_buffers(&device, Type::VideoCapture, cfg.buffers).map_err(|e| io_err(path, e))?;
    stream.set_timeout(cfg.timeout);
    Ok(Open { stream, format, width: chosen.width, height: chosen.height, _device: device })
}

impl CameraSource {
    pub fn open(path: &Path, cfg: CameraConfig, limits: DecodeLimits) -> Result<Self, SourceError> {
        let o = open(path, &cfg)?;
        limits.check_size(path, o.width, o.height)?;
        Ok(CameraSource { path: path.to_path_buf(), cfg, open: Some(o), limits, seq: 0 })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Option<Result<Frame, SourceError>> {
        let seq = self.seq;
        self.seq += 1;
        let name = PathBuf::from(format!("{}#{seq}", self.path.display()));
        let Some(o) = self.open.as_mut() else {
            return Some(Err(io_err(&self.path, std::io::Error::new(std::io::ErrorKind::NotConnected, "camera closed"))));
        };
        let (buf, meta) = match o.stream.next() {
            Ok(x) => x,
            Err(e) => {
                self.open = None;
                return Some(Err(io_err(&self.path, e)));
            }
        };
        let used = (meta.bytesused as usize).min(buf.len());
        let data = buf.get(..used).unwrap_or_default();
        let frame = match o.format {
            PixelFormat::Mjpeg => decode_bytes(data, &name, &self.limits),
            PixelFormat::Yuyv => yuyv_to_rgb(data, o.width, o.height)
                .map(|rgb| Frame { rgb, origin: name.display().to_string(), seq })
                .map_err(|e| SourceError::Corrupt { path: name.clone(), reason: e.to_string() }),
        };
        Some(frame.map(|mut f| {
            f.seq = seq;
            f
        }))
    }

    fn is_live(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.open = None;
        self.open = Some(open(&self.path, &self.cfg)?);
        Ok(())
    }
}

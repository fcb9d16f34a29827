//! `pancap caption`: caption image files and directories, written by one output writer per format.

use super::progress::Progress;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use pancap::caption::panoptic_out::{coco_panoptic_categories, coconut_caption, panoptic_output, CoconutRecord};
use pancap::caption::{overlay, CocoResult, SaPancapPrediction};
use pancap::source::{self, DecodeLimits, Frame};
use pancap::timing::{Stage, Timings};
use pancap::{FrameResult, Pipeline, PipelineConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The caption paragraph per image
    Text,
    /// One JSON array of full results
    Json,
    /// One JSON object per line, per image, written as each image finishes
    Jsonl,
    /// SA-Pancap predictions: [{"image_path", "model_response"}]
    Sapancap,
    /// COCO detection results for the images listed by --coco-instances
    Coco,
    /// COCONut-PanCap: captions with inline segment ids `<id: phrase>`, plus a panoptic PNG per image in
    /// --panoptic-dir and its segments (with each entity's region caption)
    Coconut,
    /// COCO panoptic JSON (images, annotations with segments_info carrying a `description` per segment,
    /// categories) plus a panoptic PNG per image in --panoptic-dir; image ids from --coco-instances (any COCO
    /// file listing the images, e.g. the panoptic reference) or a numeric file name (000000439180.jpg → 439180)
    CocoPanoptic,
}

#[derive(clap::Args)]
pub struct CaptionArgs {
    /// Image files or directories (not recursive)
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the output here instead of standard output (replaced atomically when complete)
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write an overlay PNG per image (boxes, stuff masks, ids and tags) into this directory
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// A COCO JSON (instances or panoptic) naming the images and their ids (required by --format coco; gives
    /// --format coco-panoptic its image ids)
    #[arg(long)]
    coco_instances: Option<PathBuf>,
    /// Directory for the panoptic PNGs of --format coconut and coco-panoptic (one `<stem>.png` per image)
    #[arg(long)]
    panoptic_dir: Option<PathBuf>,
    #[command(flatten)]
    suite: super::SuiteArgs,
    /// Largest accepted image side in pixels
    #[arg(long, default_value_t = DecodeLimits::default().max_side)]
    max_side: u32,
    /// Score each caption against an independent second pass (mirrored frame) and attach score and pass/fail
    #[arg(long)]
    self_check: bool,
    /// Tag F1 (0-1) the self-check needs to pass
    #[arg(long, default_value_t = 0.5)]
    self_check_threshold: f64,
    #[command(flatten)]
    matcher: super::score::MatcherArgs,
}

/// Image file name → COCO image id, from any COCO JSON with an `images` list (instances or panoptic).
fn coco_image_ids(path: &Path) -> Result<HashMap<String, u64>> {
    #[derive(serde::Deserialize)]
    struct Img {
        id: u64,
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct Images {
        images: Vec<Img>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: Images = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.images.into_iter().map(|i| (i.file_name, i.id)).collect())
}

/// Where results go: standard output, or a file replaced atomically when everything is written.
struct Sink {
    out: Box<dyn Write>,
    target: Option<(PathBuf, PathBuf)>,
}

impl Sink {
    fn open(path: Option<&Path>) -> Result<Sink> {
        match path {
            None => Ok(Sink { out: Box::new(std::io::stdout().lock()), target: None }),
            Some(p) => {
                let tmp = p.with_extension(format!("partial-{}", std::process::id()));
                let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
                Ok(Sink { out: Box::new(std::io::BufWriter::new(f)), target: Some((tmp, p.to_path_buf())) })
            }
        }
    }

    /// Writes one whole record and flushes it, so a reader never sees half a line.
    fn line(&mut self, s: &str) -> Result<()> {
        let mut buf = String::with_capacity(s.len() + 1);
        buf.push_str(s);
        buf.push('\n');
        self.out.write_all(buf.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        drop(self.out);
        if let Some((tmp, dest)) = self.target {
            std::fs::rename(&tmp, &dest).with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    }
}

/// Writes a PNG beside its destination and renames it into place, so no reader sees half a file.
fn save_png_atomically(img: &image::RgbImage, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension(format!("partial-{}.png", std::process::id()));
    img.save(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// One captioned image, as the writers see it.
struct Captioned<'a> {
    path: &'a Path,
    result: &'a FrameResult,
}

impl Captioned<'_> {
    fn stem(&self) -> &str {
        self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("image")
    }

    fn file_name(&self) -> &str {
        self.path.file_name().and_then(|s| s.to_str()).unwrap_or_default()
    }
}

/// What went wrong with one image's output: that image failed (counted, the run goes on), or the output itself
/// cannot be written (the run stops).
enum PushError {
    Image(anyhow::Error),
    Output(anyhow::Error),
}

impl From<anyhow::Error> for PushError {
    fn from(e: anyhow::Error) -> Self {
        PushError::Output(e)
    }
}

impl From<serde_json::Error> for PushError {
    fn from(e: serde_json::Error) -> Self {
        PushError::Output(e.into())
    }
}

/// Whether a format can take an image, asked before the image is captioned.
enum Acceptance {
    Take,
    /// Left out on purpose (an image the COCO results file does not list), counted.
    Skip(String),
    /// The image cannot be written in this format: an error, counted as failed.
    Refuse(String),
}

/// One output format: takes each captioned image as it finishes, writes what is left at the end.
trait OutputWriter {
    fn accepts(&self, _path: &Path) -> Acceptance {
        Acceptance::Take
    }
    fn push(&mut self, sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError>;
    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()>;
}

struct TextWriter;

impl OutputWriter for TextWriter {
    fn push(&mut self, sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        let c = &item.result.caption;
        let check = match &c.self_check {
            Some(s) => format!(
                "self-check: {} (tag {:.1}, location {:.1}, threshold {:.0}; {:.0} ms)\n",
                if s.pass { "pass" } else { "FAIL" },
                s.tag,
                s.location,
                s.threshold,
                s.ms
            ),
            None => String::new(),
        };
        Ok(sink.line(&format!("{}\n{}\n{check}", c.image, c.caption))?)
    }

    fn finish(self: Box<Self>, _sink: &mut Sink) -> Result<()> {
        Ok(())
    }
}

struct JsonlWriter;

impl OutputWriter for JsonlWriter {
    fn push(&mut self, sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        Ok(sink.line(&serde_json::to_string(&item.result.caption)?)?)
    }

    fn finish(self: Box<Self>, _sink: &mut Sink) -> Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct JsonWriter(Vec<serde_json::Value>);

impl OutputWriter for JsonWriter {
    fn push(&mut self, _sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        self.0.push(serde_json::to_value(&item.result.caption)?);
        Ok(())
    }

    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()> {
        sink.line(&serde_json::to_string_pretty(&self.0)?)
    }
}

#[derive(Default)]
struct SaPancapWriter(Vec<SaPancapPrediction>);

impl OutputWriter for SaPancapWriter {
    fn push(&mut self, _sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        let c = &item.result.caption;
        self.0.push(SaPancapPrediction { image_path: c.image.clone(), model_response: c.caption.clone() });
        Ok(())
    }

    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()> {
        sink.line(&serde_json::to_string_pretty(&self.0)?)
    }
}

struct CocoWriter {
    ids: HashMap<String, u64>,
    results: Vec<CocoResult>,
}

impl OutputWriter for CocoWriter {
    fn accepts(&self, path: &Path) -> Acceptance {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match self.ids.contains_key(name) {
            true => Acceptance::Take,
            false => Acceptance::Skip("not listed in the COCO instances file".into()),
        }
    }

    fn push(&mut self, _sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        if let Some(&id) = self.ids.get(item.file_name()) {
            self.results.extend(item.result.ranking.iter().map(|b| CocoResult::new(id, b)));
        }
        Ok(())
    }

    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()> {
        sink.line(&serde_json::to_string(&self.results)?)
    }
}

/// Paints and writes one image's panoptic PNG; the segments it kept.
fn write_panoptic_png(dir: &Path, item: &Captioned<'_>, mapped_only: bool) -> Result<Vec<pancap::caption::panoptic_out::Segment>, PushError> {
    let out = panoptic_output(&item.result.caption, mapped_only);
    let png = dir.join(format!("{}.png", item.stem()));
    save_png_atomically(&out.png(), &png)
        .map_err(|e| PushError::Image(e.context(format!("{}: writing the panoptic PNG", png.display()))))?;
    Ok(out.segments)
}

struct CoconutWriter {
    dir: PathBuf,
    records: Vec<CoconutRecord>,
}

impl OutputWriter for CoconutWriter {
    fn push(&mut self, _sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        let segments_info = write_panoptic_png(&self.dir, item, false)?;
        let c = &item.result.caption;
        self.records.push(CoconutRecord {
            image: c.image.clone(),
            width: c.width,
            height: c.height,
            panoptic_png: self.dir.join(format!("{}.png", item.stem())).display().to_string(),
            caption: coconut_caption(c),
            segments_info,
        });
        Ok(())
    }

    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()> {
        sink.line(&serde_json::to_string_pretty(&self.records)?)
    }
}

#[derive(serde::Serialize)]
struct PanopticImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(serde::Serialize)]
struct PanopticAnnotation {
    image_id: u64,
    file_name: String,
    segments_info: Vec<pancap::caption::panoptic_out::Segment>,
}

struct CocoPanopticWriter {
    dir: PathBuf,
    ids: HashMap<String, u64>,
    images: Vec<PanopticImage>,
    annotations: Vec<PanopticAnnotation>,
}

impl CocoPanopticWriter {
    /// The image id: the reference file's, else a numeric file stem (COCO's `000000439180.jpg`).
    fn image_id(&self, path: &Path) -> Option<u64> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        self.ids.get(name).copied().or_else(|| stem.parse().ok())
    }
}

impl OutputWriter for CocoPanopticWriter {
    fn accepts(&self, path: &Path) -> Acceptance {
        match self.image_id(path) {
            Some(_) => Acceptance::Take,
            None => Acceptance::Refuse(
                "has no COCO image id: list it in a COCO file given with --coco-instances, or name the file by its \
                 numeric id"
                    .into(),
            ),
        }
    }

    fn push(&mut self, _sink: &mut Sink, item: &Captioned<'_>) -> Result<(), PushError> {
        let Some(id) = self.image_id(item.path) else {
            return Err(PushError::Image(anyhow::anyhow!("{}: no COCO image id", item.path.display())));
        };
        let segments_info = write_panoptic_png(&self.dir, item, true)?;
        let c = &item.result.caption;
        let file_name = item.file_name().to_string();
        self.images.push(PanopticImage { id, file_name, width: c.width, height: c.height });
        self.annotations.push(PanopticAnnotation { image_id: id, file_name: format!("{}.png", item.stem()), segments_info });
        Ok(())
    }

    fn finish(self: Box<Self>, sink: &mut Sink) -> Result<()> {
        let file = serde_json::json!({
            "images": self.images,
            "annotations": self.annotations,
            "categories": coco_panoptic_categories(),
        });
        sink.line(&serde_json::to_string(&file)?)
    }
}

fn writer(args: &CaptionArgs) -> Result<Box<dyn OutputWriter>> {
    let ids = args.coco_instances.as_deref().map(coco_image_ids).transpose()?;
    let panoptic_dir = || -> Result<PathBuf> {
        let Some(d) = &args.panoptic_dir else {
            bail!("--format coconut and coco-panoptic write a panoptic PNG per image: name a directory with --panoptic-dir")
        };
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d.clone())
    };
    Ok(match args.format {
        Format::Text => Box::new(TextWriter),
        Format::Jsonl => Box::new(JsonlWriter),
        Format::Json => Box::<JsonWriter>::default(),
        Format::Sapancap => Box::<SaPancapWriter>::default(),
        Format::Coco => {
            let Some(ids) = ids else { bail!("--format coco needs --coco-instances FILE to map images to COCO ids") };
            Box::new(CocoWriter { ids, results: Vec::new() })
        }
        Format::Coconut => Box::new(CoconutWriter { dir: panoptic_dir()?, records: Vec::new() }),
        Format::CocoPanoptic => Box::new(CocoPanopticWriter {
            dir: panoptic_dir()?,
            ids: ids.unwrap_or_default(),
            images: Vec::new(),
            annotations: Vec::new(),
        }),
    })
}

/// What happened to the inputs.
#[derive(Default)]
struct Counts {
    ok: usize,
    failed: usize,
    skipped: usize,
}

/// Reads, captions and (when asked) self-checks one image.
fn caption_one(
    pipeline: &mut Pipeline,
    matcher: Option<&mut pancap::score::TagMatcher>,
    args: &CaptionArgs,
    limits: &DecodeLimits,
    path: &Path,
    seq: usize,
) -> Result<(Frame, FrameResult)> {
    let t = Instant::now();
    let mut frame = source::read_image(path, limits)?;
    frame.seq = seq as u64;
    let mut timings = Timings::default();
    timings.record(Stage::Decode, None, t);
    let mut result = pipeline.process(&frame, timings)?;
    if let Some(m) = matcher {
        let t = Instant::now();
        let second = pipeline.second_opinion(&frame, &mut result.caption.timings_ms)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        result.caption.self_check = Some(pancap::score::self_check(&result.caption, &second, m, args.self_check_threshold, ms)?);
    }
    Ok((frame, result))
}

pub fn caption_cmd(args: CaptionArgs, models_dir: PathBuf) -> Result<i32> {
    let mut out = writer(&args)?;
    let limits = DecodeLimits { max_side: args.max_side, ..DecodeLimits::default() };
    let (cfg, target) = args.suite.resolve(&models_dir)?;
    let cfg = PipelineConfig { decode_limits: limits, ..cfg };
    let self_check = super::SuiteArgs::self_check(args.self_check, target.as_ref());
    let t = Instant::now();
    let mut pipeline = Pipeline::load(cfg).context("loading the model suite")?;
    log::info!("suite {:?} loaded on {} in {:.0} ms", pipeline.detector_names(), pipeline.backend(), t.elapsed().as_secs_f64() * 1e3);
    if let Some(dir) = &args.overlay {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut matcher = if self_check { Some(args.matcher.build(&pipeline.config().models_dir)?) } else { None };
    let mut sink = Sink::open(args.output.as_deref())?;
    let mut n = Counts::default();

    let (inputs, passed_over) = source::expand_inputs(&args.inputs);
    for p in &passed_over {
        log::info!("{}: no image extension; not captioned", p.display());
    }
    // JSON on standard output gets no bar; text paragraphs are printed above it
    let json_on_stdout = args.output.is_none() && args.format != Format::Text;
    let progress = Progress::new(inputs.len() as u64, "captioning", json_on_stdout);
    for (seq, input) in inputs.into_iter().enumerate() {
        progress.inc(&input.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
        let path = match input {
            Ok(p) => p,
            Err(e) => {
                progress.error(&e.to_string());
                n.failed += 1;
                continue;
            }
        };
        match out.accepts(&path) {
            Acceptance::Take => {}
            Acceptance::Skip(why) => {
                progress.warn(&format!("{}: {why}; skipped", path.display()));
                n.skipped += 1;
                continue;
            }
            Acceptance::Refuse(why) => {
                progress.error(&format!("{}: {why}", path.display()));
                n.failed += 1;
                continue;
            }
        }
        let (frame, result) = match caption_one(&mut pipeline, matcher.as_mut(), &args, &limits, &path, seq) {
            Ok(r) => r,
            Err(e) => {
                progress.error(&format!("{e:#}"));
                n.failed += 1;
                continue;
            }
        };
        log::info!("{}: {} entities in {:.0} ms", path.display(), result.caption.entities.len(), result.caption.timings_ms.total_ms());
        if let Some(dir) = &args.overlay {
            let file = dir.join(format!("{}.overlay.png", path.file_stem().and_then(|s| s.to_str()).unwrap_or("image")));
            if let Err(e) = save_png_atomically(&overlay::render(&frame.rgb, &result.caption.entities), &file) {
                progress.error(&format!("{}: writing overlay: {e:#}", file.display()));
                n.failed += 1;
                continue;
            }
        }
        match progress.suspend(|| out.push(&mut sink, &Captioned { path: &path, result: &result })) {
            Ok(()) => n.ok += 1,
            Err(PushError::Image(e)) => {
                progress.error(&format!("{e:#}"));
                n.failed += 1;
            }
            Err(PushError::Output(e)) => return Err(e.context("writing the output")),
        }
    }
    progress.finish();
    out.finish(&mut sink)?;
    sink.finish()?;
    let mut summary = format!("captioned {} image(s), {} failed", n.ok, n.failed);
    if n.skipped > 0 {
        summary.push_str(&format!(", {} not in the COCO file", n.skipped));
    }
    if !passed_over.is_empty() {
        summary.push_str(&format!(", {} non-image file(s) in directories passed over", passed_over.len()));
    }
    eprintln!("{summary}");
    Ok(if n.failed > 0 { 1 } else { 0 })
}

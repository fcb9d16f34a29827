//! `pancap eval`: captions annotated images and reports PancapScore tag/location, COCO box mAP and, for panoptic
//! references, PQ; or caption-text metrics (BLEU-4, ROUGE-L, CIDEr-D) over COCO-caption references.

use super::score::{print_report, score_pairs, MatcherArgs, ReportFormat, ScoreReport};
use anyhow::{bail, Context, Result};
use pancap::caption::panoptic_out::panoptic_output;
use pancap::caption::CocoResult;
use pancap::eval::captions::{caption_metrics, tokenize, CaptionMetrics, Example};
use pancap::eval::pq::{read_segment_png, PanopticJson, PqAccumulator, PqReport};
use pancap::eval::{coco_map, reference_content, CocoImage, CocoInstances, MapReport};
use pancap::scene::EntityClass;
use pancap::score::input::ScoredCaption;
use pancap::score::Content;
use pancap::source::{self, DecodeLimits};
use pancap::timing::Timings;
use pancap::Pipeline;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// COCO instances JSON: thing references (boxes, official names; crowd regions ignored)
    #[arg(long, conflicts_with = "panoptic")]
    coco: Option<PathBuf>,
    /// COCO panoptic JSON (PNG folder beside it, named like the JSON without .json, or --panoptic-dir): things + stuff
    #[arg(long)]
    panoptic: Option<PathBuf>,
    /// Folder of the panoptic PNGs [default: beside the JSON, `panoptic/`]
    #[arg(long)]
    panoptic_dir: Option<PathBuf>,
    /// COCO-caption references ({"images", "annotations": [{"image_id", "caption"}]}) for BLEU-4/ROUGE-L/CIDEr-D
    #[arg(long)]
    captions: Option<PathBuf>,
    /// Candidate captions for --captions as COCO caption results ([{"image_id", "caption"}]); default: caption --images
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Folder of the images named by the annotation file
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    #[command(flatten)]
    suite: super::SuiteArgs,
    #[command(flatten)]
    matcher: MatcherArgs,
}

#[derive(serde::Serialize)]
struct EvalReport {
    /// The entity classes whose predictions competed with the references (PancapScore and PQ): things alone
    /// against COCO instances, things and stuff against COCO panoptic.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scored: Vec<EntityClass>,
    /// Predictions of the other classes, counted and reported beside, never scored as false positives.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    not_scored: BTreeMap<EntityClass, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pancap: Option<ScoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox_map: Option<MapReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    panoptic_quality: Option<PqReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    captions: Option<CaptionMetrics>,
    failed_images: Vec<String>,
}

fn pipeline(args: &EvalArgs, models_dir: &Path) -> Result<Pipeline> {
    Pipeline::load(args.suite.config(models_dir)?).context("loading the model suite")
}

/// Captions one listed image; None (and the failure recorded) when it cannot be read.
fn caption_image(
    pipeline: &mut Pipeline,
    dir: &Path,
    image: &CocoImage,
    failed: &mut Vec<String>,
) -> Option<pancap::FrameResult> {
    let path = dir.join(&image.file_name);
    let result = source::read_image(&path, &DecodeLimits::default())
        .map_err(|e| e.to_string())
        .and_then(|frame| pipeline.process(&frame, Timings::default()).map_err(|e| e.to_string()));
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: {e}");
            failed.push(path.display().to_string());
            None
        }
    }
}

pub fn eval_cmd(args: EvalArgs, models_dir: &Path) -> Result<i32> {
    if args.coco.is_none() && args.panoptic.is_none() && args.captions.is_none() {
        bail!("pancap eval needs --coco, --panoptic or --captions");
    }
    let mut report = EvalReport {
        scored: Vec::new(),
        not_scored: BTreeMap::new(),
        pancap: None,
        bbox_map: None,
        panoptic_quality: None,
        captions: None,
        failed_images: Vec::new(),
    };
    let mut pipe: Option<Pipeline> = None;
    let mut captions_by_id: HashMap<u64, String> = HashMap::new();

    // things (COCO instances) or things + stuff (COCO panoptic)
    let panoptic = args.panoptic.as_deref().map(PanopticJson::read).transpose()?;
    let instances = match (&args.coco, &panoptic) {
        (Some(p), _) => Some(CocoInstances::read(p)?),
        (None, Some(p)) => Some(p.things_as_instances()),
        _ => None,
    };
    if let Some(gt) = &instances {
        let dir = args.images.clone().context("--coco/--panoptic need --images DIR")?;
        let p = pipe.insert(pipeline(&args, models_dir)?);
        let mut matcher = args.matcher.build(models_dir)?;
        let (mut refs, mut preds, mut results) = (Vec::new(), Vec::new(), Vec::<CocoResult>::new());
        let mut pq = PqAccumulator::default();
        let png_dir = args.panoptic_dir.clone().unwrap_or_else(|| {
            args.panoptic.as_deref().and_then(Path::parent).unwrap_or(Path::new(".")).join("panoptic")
        });
        // the references say what competes: COCO instances cover things alone, COCO panoptic things and stuff
        let scored = match &panoptic {
            Some(_) => vec![EntityClass::Thing, EntityClass::Stuff],
            None => vec![EntityClass::Thing],
        };
        let progress = super::progress::Progress::new(gt.images.len() as u64, "evaluating", args.format == ReportFormat::Json);
        for image in &gt.images {
            progress.inc(&image.file_name);
            let Some(r) = caption_image(p, &dir, image, &mut report.failed_images) else { continue };
            results.extend(r.ranking.iter().map(|b| CocoResult::new(image.id, b)));
            captions_by_id.insert(image.id, r.caption.caption.clone());
            for e in r.caption.entities.iter().filter(|e| !scored.contains(&e.class())) {
                *report.not_scored.entry(e.class()).or_default() += 1;
            }
            let reference = match &panoptic {
                Some(pan) => panoptic_reference(pan, image),
                None => reference_content(gt, image),
            };
            if let Some(pan) = &panoptic {
                let ann = pan.annotations.iter().find(|a| a.image_id == image.id);
                if let Some(ann) = ann {
                    let (w, h, ids) = read_segment_png(&png_dir.join(&ann.file_name))?;
                    if (w, h) != (r.caption.width, r.caption.height) {
                        bail!("{}: panoptic PNG is {w}x{h}, the image {}x{}", ann.file_name, r.caption.width, r.caption.height);
                    }
                    // exactly the map and segments `caption --format coco-panoptic` writes
                    pq.add(&ids, &ann.segments_info, &panoptic_output(&r.caption, true));
                }
            }
            refs.push(ScoredCaption { image: image.file_name.clone(), content: reference, text: None });
            let content = Content::from_caption_of(&r.caption, |c| scored.contains(&c));
            preds.push(ScoredCaption { image: image.file_name.clone(), content, text: None });
        }
        progress.finish();
        report.scored = scored;
        report.pancap = Some(score_pairs(&refs, &preds, &mut matcher)?);
        report.bbox_map = Some(coco_map(gt, &results));
        if let Some(pan) = &panoptic {
            report.panoptic_quality = Some(pq.report(&pan.categories));
        }
    }

    if let Some(path) = &args.captions {
        report.captions =
            Some(caption_scores(&args, path, models_dir, &mut pipe, &captions_by_id, &mut report.failed_images)?);
    }

    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Text => {
            if !report.scored.is_empty() {
                let scored: Vec<&str> = report.scored.iter().map(|c| c.name()).collect();
                let beside: Vec<String> = report.not_scored.iter().map(|(c, n)| format!("{n} {}", c.name())).collect();
                println!(
                    "scored: {} (the classes the references cover){}",
                    scored.join(" + "),
                    if beside.is_empty() { String::new() } else { format!("; reported beside, not scored: {}", beside.join(", ")) }
                );
            }
            if let Some(s) = &report.pancap {
                print_report(s, ReportFormat::Text)?;
                println!("note: references from annotations carry no attribute, relation or global items; only tag and location are meaningful here");
            }
            if let Some(m) = &report.bbox_map {
                println!("\nCOCO bbox: AP {:.2}  AP50 {:.2}  AP75 {:.2}  ({} categories)", m.ap, m.ap50, m.ap75, m.categories);
            }
            if let Some(q) = &report.panoptic_quality {
                println!("PQ {:.2} (SQ {:.2}, RQ {:.2}; things PQ {:.2} over {}, stuff PQ {:.2} over {}; {} predicted segment(s) without a COCO panoptic category)",
                    q.all.pq, q.all.sq, q.all.rq, q.things.pq, q.things.categories, q.stuff.pq, q.stuff.categories, q.unmapped_segments);
                println!("note: thing masks come from the person segmenter, the stuff segmenter where it agrees with the box, or else the box's inscribed ellipse (mask_source per entity)");
            }
            if let Some(c) = &report.captions {
                println!("\ncaptions over {} image(s): BLEU-4 {:.2}  ROUGE-L {:.2}  CIDEr-D {:.3}", c.images, c.bleu4, c.rouge_l, c.cider_d);
            }
            for f in &report.failed_images {
                println!("failed: {f}");
            }
        }
    }
    Ok(if report.failed_images.is_empty() { 0 } else { 1 })
}

/// Reference entities of one panoptic image: things and stuff, official names without COCO's suffixes.
fn panoptic_reference(pan: &PanopticJson, image: &CocoImage) -> Content {
    let names: HashMap<u32, &str> = pan.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
    let segments = pan
        .annotations
        .iter()
        .filter(|a| a.image_id == image.id)
        .flat_map(|a| a.segments_info.iter())
        .map(|s| (s.category_id, s.bbox, s.iscrowd));
    pancap::eval::reference_entities(&names, segments, image)
}

#[derive(serde::Deserialize)]
struct CaptionRefs {
    images: Vec<CocoImage>,
    annotations: Vec<CaptionAnn>,
}

#[derive(serde::Deserialize)]
struct CaptionAnn {
    image_id: u64,
    caption: String,
}

fn caption_scores(
    args: &EvalArgs,
    path: &Path,
    models_dir: &Path,
    pipe: &mut Option<Pipeline>,
    already_captioned: &HashMap<u64, String>,
    failed: &mut Vec<String>,
) -> Result<CaptionMetrics> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let refs: CaptionRefs =
        serde_json::from_str(&text).with_context(|| format!("{}: not a COCO caption file", path.display()))?;
    let mut candidates: HashMap<u64, String> = HashMap::new();
    match &args.pred {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let items: Vec<CaptionAnn> = serde_json::from_str(&text)
                .with_context(|| format!("{}: not COCO caption results [{{image_id, caption}}]", p.display()))?;
            for i in items {
                candidates.insert(i.image_id, i.caption);
            }
        }
        None => {
            let dir = args.images.clone().context("--captions needs --pred FILE or --images DIR")?;
            let p = match pipe {
                Some(p) => p,
                None => pipe.insert(pipeline(args, models_dir)?),
            };
            for image in &refs.images {
                // images the --coco/--panoptic pass captioned are not captioned again
                if let Some(c) = already_captioned.get(&image.id) {
                    candidates.insert(image.id, c.clone());
                } else if let Some(r) = caption_image(p, &dir, image, failed) {
                    candidates.insert(image.id, r.caption.caption);
                }
            }
        }
    }
    let mut examples = Vec::new();
    for image in &refs.images {
        let references: Vec<Vec<String>> =
            refs.annotations.iter().filter(|a| a.image_id == image.id).map(|a| tokenize(&a.caption)).collect();
        if references.is_empty() {
            continue;
        }
        let Some(c) = candidates.get(&image.id) else {
            bail!("no candidate caption for image {} ({})", image.id, image.file_name);
        };
        examples.push(Example { candidate: tokenize(c), references });
    }
    Ok(caption_metrics(&examples))
}

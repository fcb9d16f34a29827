//! `pancap quantize` (feature `quantize`, host-only): INT8 models beside the FP32 ones, verified in our tract.

use super::score::ReportFormat;
use anyhow::{bail, Context, Result};
use pancap::eval::CocoInstances;
use pancap::models::{Manifest, Role};
use pancap::quantize::{quantize, Job, MapSet, Method, RangeMethod};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MethodArg {
    /// Per-channel symmetric INT8 weights, FP32 activations
    Weights,
    /// INT8 weights and calibrated INT8 Conv activations, re-centred to zero point 0
    Static,
}

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Models to quantize [default: every FP32 detector]
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    #[arg(long, value_enum, default_value = "weights")]
    method: MethodArg,
    /// Calibration list: image paths relative to --data, one per line, '#' comments
    #[arg(long, default_value = "calibration/images.txt")]
    calibration: PathBuf,
    /// The shared data folder the calibration and evaluation paths are relative to [default: $PANCAP_SHARED/data
    /// or ../shared/data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use at most this many calibration images
    #[arg(long)]
    max_calibration: Option<usize>,
    /// COCO instances for the AP check (relative to --data)
    #[arg(long, default_value = "coco-val2017-dev/instances.json")]
    map_annotations: PathBuf,
    /// Their images (relative to --data)
    #[arg(long, default_value = "coco-val2017-dev/images")]
    map_images: PathBuf,
    /// Skip the AP check
    #[arg(long)]
    no_map: bool,
    /// `static`: activation ranges from the calibration images: minmax, percentile[:P] (default P 99.99),
    /// entropy (KL) or mse
    #[arg(long, default_value = "minmax", value_parser = parse_ranges)]
    ranges: RangeMethod,
    /// `static`: keep the first Conv (raw pixels in) and the output Convs in FP32
    #[arg(long)]
    keep_edges_fp32: bool,
    /// `static`: keep quantize-rs's asymmetric activation ranges (non-zero zero points: ONNX Runtime only, TensorRT
    /// refuses them) instead of re-centring them on zero
    #[arg(long)]
    asymmetric_activations: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

fn parse_ranges(s: &str) -> std::result::Result<RangeMethod, String> {
    match s.split_once(':') {
        None if s == "minmax" => Ok(RangeMethod::MinMax),
        None if s == "entropy" => Ok(RangeMethod::Entropy),
        None if s == "mse" => Ok(RangeMethod::Mse),
        None if s == "percentile" => Ok(RangeMethod::Percentile(99.99)),
        Some(("percentile", p)) => match p.parse::<f32>() {
            Ok(p) if p > 50.0 && p <= 100.0 => Ok(RangeMethod::Percentile(p)),
            _ => Err(format!("percentile '{p}': a number in (50, 100]")),
        },
        _ => Err(format!("'{s}': one of minmax, percentile[:P], entropy, mse")),
    }
}

fn data_root(args: &QuantizeArgs) -> PathBuf {
    args.data.clone().unwrap_or_else(|| {
        std::env::var_os("PANCAP_SHARED").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared")).join("data")
    })
}

/// The listed calibration images: (path on disk, name as listed).
pub fn calibration_list(list: &Path, root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let text = std::fs::read_to_string(list).with_context(|| format!("reading the calibration list {}", list.display()))?;
    let entries: Vec<(PathBuf, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| (root.join(l), l.to_string()))
        .collect();
    if let Some((p, _)) = entries.iter().find(|(p, _)| !p.is_file()) {
        bail!("{}: calibration image {} is missing (is --data right?)", list.display(), p.display());
    }
    Ok(entries)
}

pub fn quantize_cmd(args: QuantizeArgs, models_dir: &Path) -> Result<i32> {
    let root = data_root(&args);
    let mut images = calibration_list(&args.calibration, &root)?;
    if let Some(n) = args.max_calibration {
        images.truncate(n);
    }
    let (paths, names): (Vec<PathBuf>, Vec<String>) = images.into_iter().unzip();
    let models: Vec<String> = if args.models.is_empty() {
        Manifest::all()?.into_iter().filter(|m| m.role == Role::Detector).map(|m| m.name).collect()
    } else {
        args.models.clone()
    };
    let instances = if args.no_map { None } else { Some(CocoInstances::read(&root.join(&args.map_annotations))?) };
    let map_images = root.join(&args.map_images);
    let method = match args.method {
        MethodArg::Weights => Method::Weights,
        MethodArg::Static => Method::Static,
    };
    let mut records = Vec::new();
    let mut failed = 0;
    let progress = super::progress::Progress::new(models.len() as u64, "quantizing", args.format == ReportFormat::Json);
    for model in &models {
        progress.inc(model);
        let job = Job {
            model,
            models_dir,
            method,
            calibration: &paths,
            calibration_names: &names,
            map: instances.as_ref().map(|i| MapSet {
                name: args.map_annotations.display().to_string(),
                instances: i,
                images_dir: &map_images,
            }),
            ranges: args.ranges,
            keep_edges_fp32: args.keep_edges_fp32,
            symmetric_activations: !args.asymmetric_activations,
        };
        log::info!("quantizing {model} ({} calibration images)", paths.len());
        match quantize(&job) {
            Ok(r) => records.push(r),
            Err(e) => {
                failed += 1;
                progress.error(&e.to_string());
            }
        }
    }
    progress.finish();
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&records)?),
        ReportFormat::Text => {
            for r in &records {
                let v = &r.verification;
                println!("{} → {} ({})", r.model, pancap::models::quantized::int8_path(models_dir, &r.source_file).display(), r.recipe.method);
                println!(
                    "  loads in tract 0.23.9: {}; output error vs FP32: max {:.4}, mean {:.5}; size {} → {} bytes",
                    if v.loads_in_tract { "yes" } else { "NO" },
                    v.max_abs_error,
                    v.mean_abs_error,
                    v.fp32_bytes,
                    v.int8_bytes
                );
                println!(
                    "  Q/DQ nodes {}; zero points all 0 (TensorRT-compatible): {}",
                    v.qdq_nodes,
                    if v.zero_points_all_zero { "yes".to_string() } else { format!("NO ({} non-zero)", v.nonzero_zero_points) }
                );
                if let Some(m) = &v.map {
                    println!(
                        "  AP on {} ({} images): FP32 {:.2} → INT8 {:.2} ({:+.2}); AP50 {:.2} → {:.2}",
                        m.annotations, m.images, m.fp32_ap, m.int8_ap, m.int8_ap - m.fp32_ap, m.fp32_ap50, m.int8_ap50
                    );
                }
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

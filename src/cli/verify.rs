//! `pancap verify-backend`: is a backend equivalent to the reference (tract on the CPU) on these images? Every
//! model of the suite runs each input on both, output by output; and the two backends caption every image apart,
//! entity by entity.

use anyhow::{bail, Context, Result};
use pancap::engine::{self, AgreementLog, Backend, BackendConfig, Mirror, Tolerance};
use pancap::source::{self, DecodeLimits};
use pancap::timing::Timings;
use pancap::verify::{compare_captions, CaptionAgreement, CaptionTolerance};
use pancap::{Pipeline, PipelineConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Image files or directories (not recursive)
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The backend to check against, with the same settings [default: tract]
    #[arg(long, default_value = "tract")]
    reference: Backend,
    /// Float outputs agree within atol + rtol·|reference|
    #[arg(long, default_value_t = Tolerance::default().atol)]
    atol: f64,
    #[arg(long, default_value_t = Tolerance::default().rtol)]
    rtol: f64,
    /// Least share of each float output's elements within that tolerance
    #[arg(long, default_value_t = Tolerance::default().min_float_agreement)]
    min_float_agreement: f64,
    /// Least share of each integer output's elements (labels) equal
    #[arg(long, default_value_t = Tolerance::default().min_integer_agreement)]
    min_integer_agreement: f64,
    /// Least IoU for a thing's box to be the same on both backends
    #[arg(long, default_value_t = CaptionTolerance::default().min_iou)]
    min_iou: f64,
    /// Least IoU for a stuff region's box to be the same on both backends (a region's box spans its extreme
    /// pixels, which a few border labels flipped by uint8 rounding move far)
    #[arg(long, default_value_t = CaptionTolerance::default().min_stuff_iou)]
    min_stuff_iou: f64,
    /// Write the report as JSON here (the text summary still goes to standard output)
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    suite: super::SuiteArgs,
}

/// What `verify-backend` found.
#[derive(Serialize)]
pub struct VerifyReport {
    pub reference: String,
    pub candidate: String,
    pub images: usize,
    pub tolerance: Tolerance,
    pub caption_tolerance: CaptionTolerance,
    /// What ran each model on the candidate backend.
    pub providers: Vec<pancap::scene::ModelProvider>,
    pub outputs: Vec<OutputRow>,
    pub captions: Vec<CaptionAgreement>,
    /// Every output within tolerance and every caption with the same entities.
    pub equivalent: bool,
}

#[derive(Serialize)]
pub struct OutputRow {
    #[serde(flatten)]
    pub agreement: pancap::engine::OutputAgreement,
    pub agreement_share: f64,
    pub passes: bool,
}

pub fn verify_cmd(args: VerifyArgs, models_dir: PathBuf) -> Result<i32> {
    let limits = DecodeLimits::default();
    let cfg = PipelineConfig { decode_limits: limits, ..args.suite.config(&models_dir)? };
    let candidate_cfg = cfg.backend.clone();
    if candidate_cfg.backend == args.reference {
        bail!("--backend and --reference are both {}: nothing to compare", args.reference);
    }
    let reference_cfg = BackendConfig { allow_host_ops: false, ..candidate_cfg.switched_to(args.reference) };
    let tolerance = Tolerance {
        atol: args.atol,
        rtol: args.rtol,
        min_float_agreement: args.min_float_agreement,
        min_integer_agreement: args.min_integer_agreement,
    };
    let caption_tolerance = CaptionTolerance { min_iou: args.min_iou, min_stuff_iou: args.min_stuff_iou };
    let log = AgreementLog::new(tolerance);
    let mirror_log = log.clone();
    let reference_for_mirror = reference_cfg.clone();
    let loader: engine::Loader = Arc::new(move |cfg: &BackendConfig, spec: engine::ModelSpec| {
        let candidate = engine::load(cfg, spec.clone())?;
        let reference = engine::load(&reference_for_mirror, spec)?;
        Ok(Box::new(Mirror::new(candidate, reference, mirror_log.clone())) as Box<dyn engine::Engine>)
    });
    let mut mirrored = Pipeline::load_with(cfg.clone(), loader).context("loading the suite on both backends")?;
    let mut reference = Pipeline::load(PipelineConfig { backend: reference_cfg.clone(), ..cfg })
        .with_context(|| format!("loading the suite on {}", reference_cfg.backend))?;
    let providers = mirrored.providers().to_vec();

    let (inputs, _) = source::expand_inputs(&args.inputs);
    let mut captions = Vec::new();
    for input in inputs {
        let path = input?;
        let frame = source::read_image(&path, &limits)?;
        let candidate = mirrored.process(&frame, Timings::default()).with_context(|| format!("{} on {}", path.display(), candidate_cfg.backend))?;
        let reference = reference.process(&frame, Timings::default()).with_context(|| format!("{} on {}", path.display(), reference_cfg.backend))?;
        captions.push(compare_captions(&reference.caption, &candidate.caption, caption_tolerance));
    }
    if captions.is_empty() {
        bail!("no images to verify on");
    }
    let outputs: Vec<OutputRow> = log
        .outputs()
        .into_iter()
        .map(|a| OutputRow { agreement_share: a.agreement(), passes: a.passes(&tolerance), agreement: a })
        .collect();
    let equivalent = outputs.iter().all(|o| o.passes) && captions.iter().all(CaptionAgreement::agrees);
    let report = VerifyReport {
        reference: reference_cfg.label(),
        candidate: candidate_cfg.label(),
        images: captions.len(),
        tolerance,
        caption_tolerance,
        providers,
        outputs,
        captions,
        equivalent,
    };
    print_report(&report);
    if let Some(path) = &args.output {
        let json = serde_json::to_vec_pretty(&report)?;
        super::write_atomically(path, &json)?;
    }
    Ok(if report.equivalent { 0 } else { 1 })
}

fn print_report(r: &VerifyReport) {
    println!("{} against {} on {} image(s)", r.candidate, r.reference, r.images);
    for p in &r.providers {
        println!("  {:<34} {}", p.model, p.provider);
    }
    println!("{:<36} {:<32} {:>6} {:>12} {:>12} {:>10}  ok", "model", "output", "runs", "max |diff|", "mean |diff|", "agree");
    for o in &r.outputs {
        let a = &o.agreement;
        println!(
            "{:<36} {:<32} {:>6} {:>12.3e} {:>12.3e} {:>9.4}%  {}",
            a.model,
            a.output,
            a.runs,
            a.max_abs_diff,
            a.mean_abs_diff,
            o.agreement_share * 100.0,
            if o.passes { "yes" } else { "NO" }
        );
    }
    let agreeing = r.captions.iter().filter(|c| c.agrees()).count();
    let same_text = r.captions.iter().filter(|c| c.same_text).count();
    let matched: usize = r.captions.iter().map(|c| c.matched).sum();
    let total: usize = r.captions.iter().map(|c| c.reference_entities).sum();
    let min_iou = r.captions.iter().map(|c| c.min_iou).fold(1.0, f64::min);
    let min_stuff_iou = r.captions.iter().map(|c| c.min_stuff_iou).fold(1.0, f64::min);
    let shift = r.captions.iter().map(|c| c.max_box_shift_px).fold(0.0, f32::max);
    println!(
        "captions: {agreeing}/{} images with the same entities ({matched}/{total} entities paired; things: least IoU \
         {min_iou:.4}, largest box shift {shift:.2} px; stuff: least IoU {min_stuff_iou:.4}), {same_text} with the same paragraph",
        r.captions.len()
    );
    for c in r.captions.iter().filter(|c| !c.agrees()) {
        println!("  {}: only on the reference {:?}; only on the candidate {:?}", c.image, c.only_reference, c.only_candidate);
    }
    println!("{}", if r.equivalent { "equivalent" } else { "NOT equivalent" });
}

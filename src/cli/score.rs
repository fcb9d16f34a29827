//! `pancap score`: PancapScore of predicted captions against references.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use pancap::engine::BackendConfig;
use pancap::models::{ProvisionError, TextManifest};
use pancap::score::embed::{EmbedError, Embedder};
use pancap::score::input::{image_key, read_captions, ScoredCaption};
use pancap::score::wordnet::WordNet;
use pancap::score::{aggregate, score_image, Aggregate, Content, ImageScore, Prf, TagMatcher, Tiers};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How the tag tiers are set up; shared by `score`, `eval` and `caption --self-check`.
#[derive(clap::Args, Clone)]
pub struct MatcherArgs {
    /// WordNet 3.0 noun database directory [default: the copy `models pull` provisioned into the models
    /// directory, `wordnet/`, checked by sha256]
    #[arg(long, env = "PANCAP_WORDNET")]
    pub wordnet: Option<PathBuf>,
    /// Skip the WordNet synonym tier (reported in the output)
    #[arg(long)]
    pub no_wordnet: bool,
    /// Skip the sentence-embedding tier even when its model is provisioned (reported in the output)
    #[arg(long)]
    pub no_embedding: bool,
}

impl MatcherArgs {
    /// The matcher with every tier that is asked for and available. WordNet asked for but absent is an error;
    /// an embedding model that is not provisioned skips its tier (reported); one that fails verification is an
    /// error.
    pub fn build(&self, models_dir: &Path) -> Result<TagMatcher> {
        let wordnet = match (&self.wordnet, self.no_wordnet) {
            (_, true) => None,
            (Some(dir), false) => Some(WordNet::load(dir)?),
            (None, false) => Some(WordNet::load_provisioned(models_dir)?),
        };
        let embedder = if self.no_embedding {
            None
        } else {
            let manifest = TextManifest::by_name("all_minilm_l6_v2").context("embedded text manifest")??;
            match Embedder::load(&manifest, models_dir, &BackendConfig::default()) {
                Ok(e) => Some(e),
                Err(EmbedError::Provision(ProvisionError::Missing { path, .. })) => {
                    log::warn!("{}: not provisioned; the sentence-embedding tier is skipped", path.display());
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(TagMatcher::new(wordnet, embedder))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Predicted captions: SA-Pancap JSON (model_response) or pancap JSON / JSON Lines
    #[arg(long)]
    pred: PathBuf,
    /// Reference captions: SA-Pancap JSON (gt_response) or pancap JSON / JSON Lines
    #[arg(long = "ref")]
    reference: PathBuf,
    /// Directory of the images, to read their sizes for `<box>` coordinates (else images are taken as square)
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
    #[command(flatten)]
    matcher: MatcherArgs,
}

/// What `score` and `eval` print.
#[derive(serde::Serialize)]
pub struct ScoreReport {
    pub aggregate: Aggregate,
    pub tiers: Tiers,
    pub images: Vec<ImageScore>,
    /// References without a prediction (scored as empty predictions).
    pub missing_predictions: Vec<String>,
    /// Predictions without a reference (not scored).
    pub unmatched_predictions: Vec<String>,
}

/// Image sizes from `--images DIR`: none without it (images taken as square, as the option says); with it an
/// image that cannot be read is an error naming it.
pub fn size_reader(images: Option<PathBuf>) -> impl Fn(&str) -> Result<Option<(u32, u32)>, String> {
    move |image: &str| {
        let Some(dir) = images.as_ref() else { return Ok(None) };
        let p = dir.join(image_key(image));
        image::image_dimensions(&p).map(Some).map_err(|e| format!("{}: cannot read its size: {e}", p.display()))
    }
}

/// Scores predictions against references paired by image file name.
pub fn score_pairs(references: &[ScoredCaption], predictions: &[ScoredCaption], matcher: &mut TagMatcher) -> Result<ScoreReport> {
    let mut by_key: HashMap<String, &ScoredCaption> = HashMap::new();
    for p in predictions {
        if by_key.insert(image_key(&p.image), p).is_some() {
            bail!("two predictions for image {}", p.image);
        }
    }
    let empty = Content::default();
    let mut images = Vec::new();
    let mut missing = Vec::new();
    let mut used = std::collections::HashSet::new();
    for r in references {
        let key = image_key(&r.image);
        let pred = match by_key.get(&key) {
            Some(p) => {
                used.insert(key);
                &p.content
            }
            None => {
                missing.push(r.image.clone());
                &empty
            }
        };
        images.push(score_image(&r.image, &r.content, pred, matcher)?);
    }
    let unmatched = predictions.iter().filter(|p| !used.contains(&image_key(&p.image))).map(|p| p.image.clone()).collect();
    Ok(ScoreReport {
        aggregate: aggregate(&images),
        tiers: matcher.tiers(),
        images,
        missing_predictions: missing,
        unmatched_predictions: unmatched,
    })
}

/// An aggregate row (already ×100).
fn prf(p: &Prf) -> String {
    format!("{:6.2} {:6.2} {:6.2}", p.precision, p.recall, p.f1)
}

pub fn print_report(r: &ScoreReport, format: ReportFormat) -> Result<()> {
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(r)?),
        ReportFormat::Text => {
            println!("{:<40} {:>4} {:>4} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}", "image", "ref", "pred", "match", "tag", "loc", "att~", "rel~", "glob~", "overall");
            for i in &r.images {
                println!(
                    "{:<40} {:>4} {:>4} {:>4} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>7.2}",
                    image_key(&i.image),
                    i.reference_entities,
                    i.predicted_entities,
                    i.matched,
                    100.0 * i.tag.f1,
                    100.0 * i.location.f1,
                    100.0 * i.attribute.f1,
                    100.0 * i.relation.f1,
                    100.0 * i.global.f1,
                    i.overall()
                );
            }
            let a = &r.aggregate;
            println!("\nmacro average over {} image(s)     P      R      F1", a.images);
            println!("tag                          {}", prf(&a.tag));
            println!("location                     {}", prf(&a.location));
            println!("attribute (approximate)      {}", prf(&a.attribute));
            println!("relation (approximate)       {}", prf(&a.relation));
            println!("global (approximate)         {}", prf(&a.global));
            println!("PancapScore = Tag + Loc + Att + Rel + 0.1 x Global = {:.2} (approximate: att, rel, global)", a.pancap_score);
            for n in &r.tiers.notes {
                println!("note: {n}");
            }
            if !r.missing_predictions.is_empty() {
                println!("note: {} reference image(s) had no prediction and scored 0", r.missing_predictions.len());
            }
            if !r.unmatched_predictions.is_empty() {
                println!("note: {} prediction(s) had no reference and were not scored", r.unmatched_predictions.len());
            }
        }
    }
    Ok(())
}

pub fn score_cmd(args: ScoreArgs, models_dir: &Path) -> Result<i32> {
    let size_of = size_reader(args.images.clone());
    let references = read_captions(&args.reference, &size_of)?;
    let predictions = read_captions(&args.pred, &size_of)?;
    let mut matcher = args.matcher.build(models_dir)?;
    let report = score_pairs(&references, &predictions, &mut matcher)?;
    print_report(&report, args.format)?;
    Ok(0)
}

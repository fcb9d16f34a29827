#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! People and their poses against a labelled set built by eye from ../shared/data (tests/data/pose_labels.json:
//! posture per person, holding / sitting-on pairs), with the real suite and the real pose model; and the pose
//! model's keypoints on a known photo.

mod common;

use pancap::geometry::BoxF;
use pancap::perceive::pose::{PoseMode, PoseParams};
use pancap::scene::pose::{Joint, PoseSource, Posture};
use pancap::scene::{PanopticCaption, RelationKind};
use pancap::{Pipeline, PipelineConfig};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Labels {
    people: Vec<PersonLabel>,
    pairs: Vec<PairLabel>,
}

#[derive(Deserialize)]
struct PersonLabel {
    image: String,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    posture: Vec<Posture>,
    legs_visible: bool,
}

#[derive(Deserialize)]
struct PairLabel {
    image: String,
    person: [f32; 4],
    predicate: pancap::scene::Predicate,
    object: String,
    object_box: [f32; 4],
    #[serde(default)]
    truth: bool,
    #[serde(default)]
    ambiguous: bool,
}

fn bx(b: &[f32; 4]) -> BoxF {
    BoxF::new(b[0], b[1], b[2], b[3])
}

fn labels() -> Labels {
    serde_json::from_str(include_str!("data/pose_labels.json")).unwrap()
}

/// The suite as captions run it, less what the labels do not need (text, discovery).
fn pipeline() -> Pipeline {
    pipeline_with(PoseParams::default())
}

fn pipeline_with(pose_params: PoseParams) -> Pipeline {
    Pipeline::load(PipelineConfig { text_reader: None, discovery: None, pose_params, ..common::config() }).unwrap()
}

fn caption(p: &mut Pipeline, image: &str) -> PanopticCaption {
    let frame = pancap::source::read_image(&common::data(image), &Default::default()).unwrap();
    p.process(&frame, Default::default()).unwrap().caption
}

/// The entity tagged `tag` whose box best overlaps `b` at IoU ≥ 0.5.
fn find<'a>(c: &'a PanopticCaption, tag: &str, b: &BoxF) -> Option<&'a pancap::scene::Entity> {
    c.entities
        .iter()
        .filter(|e| e.tag == tag)
        .map(|e| (e.bbox().iou(b), e))
        .filter(|(iou, _)| *iou >= 0.5)
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, e)| e)
}

#[derive(Default, Debug)]
struct Tally {
    /// People with their legs in view: found, posture right.
    legs: usize,
    legs_right: usize,
    /// People whose legs are out of view: found, posture unknown or right.
    hidden: usize,
    hidden_ok: usize,
    /// Postures stated (not unknown), and of those right.
    stated: usize,
    stated_right: usize,
    /// Labelled people the detectors did not find (not held against the pose model).
    missed_people: usize,
    /// Confusions: (truth, said).
    confusions: BTreeMap<(String, String), usize>,
    pairs_true: usize,
    pairs_found: usize,
    actions_said: usize,
    actions_right: usize,
    wrong_actions: Vec<String>,
}

/// The labelled set through a pipeline with `params`: the tally, and the pose model's runs and mean inference
/// time per image.
fn run_labelled_set(labels: &Labels, params: PoseParams) -> (Tally, usize, f64) {
    let mut images: Vec<&str> = labels.people.iter().map(|p| p.image.as_str()).collect();
    images.extend(labels.pairs.iter().map(|p| p.image.as_str()));
    images.sort();
    images.dedup();
    let mut p = pipeline_with(params);
    let mut t = Tally::default();
    let (mut runs, mut ms) = (0usize, 0.0f64);
    let n = images.len();
    for image in images {
        let c = caption(&mut p, image);
        for s in c.timings_ms.0.iter().filter(|s| s.stage == pancap::timing::Stage::Inference) {
            if s.model.as_deref() == Some("movenet_multipose_lightning") {
                runs += 1;
                ms += s.ms;
            }
        }
        for l in labels.people.iter().filter(|l| l.image == image) {
            let Some(e) = find(&c, "person", &bx(&l.bbox)) else {
                t.missed_people += 1;
                continue;
            };
            let said = e.attributes.posture.map_or(Posture::Unknown, |a| a.posture);
            let right = l.posture.contains(&said);
            if l.legs_visible {
                t.legs += 1;
                t.legs_right += usize::from(right);
            } else {
                t.hidden += 1;
                t.hidden_ok += usize::from(right || said == Posture::Unknown);
            }
            if said != Posture::Unknown {
                t.stated += 1;
                t.stated_right += usize::from(right);
            }
            if !right {
                let truth = format!("{:?}", l.posture[0]).to_lowercase();
                *t.confusions.entry((truth, format!("{said:?}").to_lowercase())).or_default() += 1;
            }
        }
        // every pose-based action said here, judged against the labelled pairs
        let pose_action = |r: &&pancap::scene::Relation| {
            r.kind == RelationKind::Action && r.evidence.is_some_and(|ev| ev.pose.is_some())
        };
        let pairs: Vec<&PairLabel> = labels.pairs.iter().filter(|l| l.image == image).collect();
        for r in c.relations.iter().filter(pose_action) {
            let (Some(s), Some(o)) = (c.entity(r.subject), c.entity(r.object)) else { continue };
            let label = pairs.iter().find(|l| {
                l.predicate == r.predicate && l.object == o.tag && s.bbox().iou(&bx(&l.person)) >= 0.5 && o.bbox().iou(&bx(&l.object_box)) >= 0.5
            });
            match label {
                Some(l) if l.ambiguous => {}
                Some(l) => {
                    t.actions_said += 1;
                    t.actions_right += usize::from(l.truth);
                }
                None => {
                    t.actions_said += 1;
                    t.wrong_actions.push(format!("{image}: {:?} {} {} {:?}", s.box_px, r.predicate.phrase(), o.tag, o.box_px));
                }
            }
        }
        for l in pairs.iter().filter(|l| l.truth && !l.ambiguous) {
            t.pairs_true += 1;
            let found = find(&c, "person", &bx(&l.person)).zip(find(&c, &l.object, &bx(&l.object_box))).is_some_and(|(s, o)| {
                c.relations.iter().any(|r| r.subject == s.id && r.object == o.id && r.predicate == l.predicate)
            });
            t.pairs_found += usize::from(found);
        }
    }
    (t, runs, ms / n.max(1) as f64)
}

fn pct(a: usize, b: usize) -> f64 {
    100.0 * a as f64 / b.max(1) as f64
}

/// Which way of running the pose model finds postures best, and at what cost (printed: `-- --nocapture`).
#[test]
fn pose_modes_compared_on_the_labelled_set() {
    let labels = labels();
    let modes = [(PoseMode::Frame, false), (PoseMode::Crops, false), (PoseMode::FrameThenCrops, false), (PoseMode::Crops, true), (PoseMode::FrameThenCrops, true)];
    for (mode, mosaic) in modes {
        let (t, runs, ms) = run_labelled_set(&labels, PoseParams { mode, mosaic, ..PoseParams::default() });
        println!(
            "{mode:?}{}: legs in view {}/{} right ({:.1} %), stated {}/{} right, pairs found {}/{}, said right {}/{}; \
             {runs} pose runs, {ms:.1} ms of pose inference per image (debug-profile test build)",
            if mosaic { " (2 x 2 mosaic)" } else { "" },
            t.legs_right,
            t.legs,
            pct(t.legs_right, t.legs),
            t.stated_right,
            t.stated,
            t.pairs_found,
            t.pairs_true,
            t.actions_right,
            t.actions_said
        );
        // every mode finds most postures it states right: the comparison is between working modes
        assert!(pct(t.stated_right, t.stated) >= 70.0, "{mode:?}: {t:?}");
    }
}

#[test]
fn posture_and_actions_match_the_labelled_set() {
    let (t, _, _) = run_labelled_set(&labels(), PoseParams::default());
    println!(
        "posture, legs in view: {}/{} right ({:.1} %); legs out of view: {}/{} unknown or right ({:.1} %); \
         stated postures right: {}/{} (precision {:.1} %); labelled people not detected: {}",
        t.legs_right,
        t.legs,
        pct(t.legs_right, t.legs),
        t.hidden_ok,
        t.hidden,
        pct(t.hidden_ok, t.hidden),
        t.stated_right,
        t.stated,
        pct(t.stated_right, t.stated),
        t.missed_people
    );
    println!("confusions (truth, said): {:?}", t.confusions);
    println!(
        "actions (holding, sitting on): recall {}/{} ({:.1} %), precision {}/{} ({:.1} %); wrong: {:?}",
        t.pairs_found,
        t.pairs_true,
        pct(t.pairs_found, t.pairs_true),
        t.actions_right,
        t.actions_said,
        pct(t.actions_right, t.actions_said),
        t.wrong_actions
    );
    // floors a little under what this build measures (see the closing note of issue 18), so a regression shows
    assert!(t.legs >= 25, "most labelled people with legs in view are detected: {t:?}");
    assert!(pct(t.legs_right, t.legs) >= FLOOR_LEGS, "{t:?}");
    assert!(pct(t.hidden_ok, t.hidden) >= FLOOR_HIDDEN, "{t:?}");
    assert!(pct(t.stated_right, t.stated) >= FLOOR_PRECISION, "{t:?}");
    assert!(pct(t.pairs_found, t.pairs_true) >= FLOOR_PAIR_RECALL, "{t:?}");
    assert!(pct(t.actions_right, t.actions_said) >= FLOOR_PAIR_PRECISION, "{t:?}");
}

// measured at this commit (tract, 2-core x86, frame then a 2 x 2 mosaic of crops): legs in view 21/27 = 77.8 %,
// legs out of view 14/15 = 93.3 %, stated 21/23 = 91.3 %, pairs 2/6 found, 2/5 said right
const FLOOR_LEGS: f64 = 74.0;
const FLOOR_HIDDEN: f64 = 90.0;
const FLOOR_PRECISION: f64 = 85.0;
const FLOOR_PAIR_RECALL: f64 = 30.0;
const FLOOR_PAIR_PRECISION: f64 = 35.0;

/// The darknet photo of a standing man beside a dog and a horse: the pose model (tract) finds him on the whole
/// frame with every keypoint, in the places the mirror's sidecar recorded from onnxruntime.
#[test]
fn the_standing_man_has_his_keypoints_posture_and_skeleton() {
    let mut p = pipeline();
    let c = caption(&mut p, "darknet-images-unannotated/person.jpg");
    let man = c.entities.iter().find(|e| e.tag == "person").expect("the man is detected");
    let info = man.pose.expect("the pose model found him");
    assert_eq!(info.source, PoseSource::Frame);
    assert!(info.visible >= 15, "{info:?}");
    assert_eq!(man.keypoints.len(), 17);
    let (w, h) = (c.width, c.height);
    // the sidecar's onnxruntime check: nose at (244, 127), left ankle at (218, 354) on this photo
    let nose = man.joint(Joint::Nose, w, h).expect("nose visible");
    let ankle = man.joint(Joint::LeftAnkle, w, h).expect("left ankle visible");
    assert!((nose.x - 244.0).abs() < 6.0 && (nose.y - 127.0).abs() < 6.0, "{nose:?}");
    assert!((ankle.x - 218.0).abs() < 6.0 && (ankle.y - 354.0).abs() < 6.0, "{ankle:?}");
    let posture = man.attributes.posture.expect("a posture");
    assert_eq!(posture.posture, Posture::Standing, "{posture:?}");
    assert!(posture.evidence.torso.is_some_and(|t| t < 15.0), "{posture:?}");
    assert!(c.caption.contains("standing in the"), "{}", c.caption);
    assert!(man.description.contains("standing"), "{}", man.description);
    // written in the JSON: keypoints by name, normalised
    let v = serde_json::to_value(man).unwrap();
    assert_eq!(v["keypoints"][0]["name"], "nose");
    assert!(v["keypoints"][15]["x"].as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)));
    assert_eq!(v["attributes"]["posture"]["posture"], "standing");
    assert_eq!(v["pose"]["source"], "frame");
    assert!(c.providers.iter().any(|m| m.model == "movenet_multipose_lightning"));
}

/// Without the pose model nobody gets keypoints or a posture, and the caption says no posture.
#[test]
fn no_pose_model_no_keypoints_and_no_posture() {
    let mut p = Pipeline::load(PipelineConfig { pose: None, text_reader: None, discovery: None, ..common::config() }).unwrap();
    let c = caption(&mut p, "darknet-images-unannotated/person.jpg");
    assert!(c.entities.iter().all(|e| e.keypoints.is_empty() && e.pose.is_none() && e.attributes.posture.is_none()));
    assert!(!c.caption.contains("standing"), "{}", c.caption);
}

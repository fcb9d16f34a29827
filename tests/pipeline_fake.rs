#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The whole pipeline driven by fake engines: no weights, fully deterministic, checked against a golden JSON
//! compared as parsed values. Regenerate on purpose with `UPDATE_GOLDEN=1 cargo test --test pipeline_fake`.

mod common;

use pancap::engine::{EngineError, FakeEngine, Tensor, TensorData};
use pancap::models::Manifest;
use pancap::perceive::{DetectParams, Detector};
use pancap::timing::Timings;
use pancap::{Pipeline, PipelineConfig};
use std::path::Path;

use common::fakes::{fake_picodet, fake_yolox, frame, picodet_outputs, yolox_output};

fn run() -> pancap::FrameResult {
    // primary: a dog (class 16) centred at (100, 220) 80x80, two people; secondary agrees on the dog only
    let primary = fake_yolox(yolox_output(&[
        (1, 6, 13, 80.0, 80.0, 16, 0.9),   // centre (104, 216)
        (1, 18, 10, 40.0, 100.0, 0, 0.8),  // person at (296, 168)
        (1, 22, 10, 40.0, 100.0, 0, 0.7),  // person at (360, 168)
    ]));
    // PicoDet cell (6, 13) at stride 16 has its centre at (103.5, 215.5)
    let secondary = fake_picodet(picodet_outputs(&[(1, 6, 13, [42.0, 39.0, 42.0, 39.0], 16, 0.6)]));
    let cfg = PipelineConfig { segmenter: None, discovery: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary, secondary], None, cfg).unwrap();
    let mut r = p.process(&frame(), Timings::default()).unwrap();
    r.caption.timings_ms = Timings::default(); // times are not deterministic
    r
}

#[test]
fn fake_engines_drive_the_whole_pipeline() {
    let r = run();
    let c = &r.caption;
    let tags: Vec<&str> = c.entities.iter().map(|e| &*e.tag).collect();
    assert_eq!(tags, vec!["dog", "person", "person"]);
    let dog = &c.entities[0];
    assert_eq!(dog.sources.len(), 2, "both fake detectors voted for the dog");
    // each detector's score through its manifest's calibration, then noisy-or (the default fusion)
    let cal = |name: &str, s: f32| Manifest::by_name(name).unwrap().calibration.unwrap().apply(s);
    let want = 1.0 - (1.0 - cal("yolox_nano_416", 0.9)) * (1.0 - cal("picodet_s_416_coco", 0.6));
    assert!((dog.score - want).abs() < 1e-4, "{} vs {want}", dog.score);
    assert_eq!(dog.attributes.colour.map(|c| c.name), Some(pancap::scene::ColourName::Red));
    assert!(c.caption.contains("two people [["), "{}", c.caption);
    assert!(c.relations.iter().any(|r| r.subject == 2 && r.object == 3 && r.predicate == pancap::scene::Predicate::LeftOf));
    // the ranking keeps every scored class for COCO evaluation
    assert!(r.ranking.iter().any(|b| b.category_id == 18));
}

#[test]
fn golden_json() {
    let r = run();
    let actual = serde_json::to_value(&r.caption).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/synthetic_fake_engines.json");
    common::check_golden(&path, &actual, 1e-5);
}

#[test]
fn the_golden_comparison_tolerates_float_noise_and_nothing_else() {
    let golden = serde_json::json!({"score": 0.96, "tag": "dog", "box": [1.0, 2.0]});
    assert!(common::json_diff(&golden, &serde_json::json!({"score": 0.9600001, "tag": "dog", "box": [1.0, 2.0]}), 1e-5).is_empty());
    let d = common::json_diff(&golden, &serde_json::json!({"score": 0.97, "tag": "cat", "box": [1.0], "extra": 1}), 1e-5);
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(d.iter().any(|l| l.starts_with(".score")) && d.iter().any(|l| l.starts_with(".extra")));
}

#[test]
fn a_failing_engine_names_the_frame() {
    let m = Manifest::by_name("yolox_nano_416").unwrap();
    let engine = FakeEngine::new(m.model_spec(Path::new("x")), |_: &[Tensor]| Err(EngineError::Fake("boom".into())));
    let d = Detector::new(m, Box::new(engine), DetectParams::default()).unwrap();
    let cfg = PipelineConfig { segmenter: None, discovery: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![d], None, cfg).unwrap();
    let e = p.process(&frame(), Timings::default()).unwrap_err().to_string();
    assert!(e.contains("synthetic.png") && e.contains("boom"), "{e}");
}

#[test]
fn between_person_segmenter_runs_people_keep_their_last_mask() {
    use pancap::perceive::masks::{MaskSource, PersonSegmenter};
    use pancap::pipeline::{FrameOptions, StuffInput, TextInput};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let primary = fake_yolox(yolox_output(&[(1, 18, 10, 40.0, 100.0, 0, 0.8), (1, 22, 10, 40.0, 100.0, 0, 0.7)]));
    // the fake person segmenter sees a person in the left 60 % of whatever it is shown, and counts its runs
    let runs = Arc::new(AtomicUsize::new(0));
    let m = Manifest::by_name("selfie_person_256").unwrap();
    let counted = Arc::clone(&runs);
    let engine = FakeEngine::new(m.model_spec(Path::new("unused")), move |_: &[Tensor]| -> Result<Vec<Tensor>, EngineError> {
        counted.fetch_add(1, Ordering::SeqCst);
        let probs: Vec<f32> = (0..256 * 256).map(|i| if i % 256 < 154 { 1.0 } else { 0.0 }).collect();
        Ok(vec![Tensor::new(vec![1, 256, 256, 1], TensorData::F32(probs)).unwrap()])
    });
    let person = PersonSegmenter::new(m, Box::new(engine)).unwrap();
    let cfg = PipelineConfig { segmenter: None, discovery: None, text_reader: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary], None, cfg).unwrap().with_person_segmenter(Some(person));
    let opts = |person_masks| FrameOptions { stuff: StuffInput::Skip, discovery: false, text: TextInput::Skip, person_masks, pose: false };
    let people = |r: &pancap::FrameResult| -> Vec<(Option<MaskSource>, Option<pancap::perceive::masks::Rle>)> {
        r.caption.entities.iter().filter(|e| e.tag == "person").map(|e| (e.mask_source, e.mask.clone())).collect()
    };
    let ran = p.process_with(&frame(), Timings::default(), opts(true)).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one run per person");
    let carried = p.process_with(&frame(), Timings::default(), opts(false)).unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "no run on a frame without person masks");
    let (ran, carried) = (people(&ran), people(&carried));
    assert_eq!(ran.len(), 2);
    assert!(ran.iter().all(|(s, _)| *s == Some(MaskSource::PersonSegmenter)), "{ran:?}");
    assert!(carried.iter().all(|(s, _)| *s == Some(MaskSource::PersonCarried)), "{carried:?}");
    // the same boxes: the carried masks are the segmenter's masks, pixel for pixel
    let masks = |v: &[(Option<MaskSource>, Option<pancap::perceive::masks::Rle>)]| v.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>();
    assert_eq!(masks(&ran), masks(&carried));
}

#[test]
fn an_entitys_sources_are_the_votes_for_its_class() {
    // the primary sees a dog, the secondary a cat (class 15) in the same box: one entity, a dog with a cat alternative
    let primary = fake_yolox(yolox_output(&[(1, 6, 13, 80.0, 80.0, 16, 0.9)]));
    let secondary = fake_picodet(picodet_outputs(&[(1, 6, 13, [42.0, 39.0, 42.0, 39.0], 15, 0.6)]));
    let cfg = PipelineConfig { segmenter: None, discovery: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary, secondary], None, cfg).unwrap();
    let r = p.process(&frame(), Timings::default()).unwrap();
    let things: Vec<_> = r.caption.entities.iter().filter(|e| e.kind == pancap::scene::Kind::Thing).collect();
    assert_eq!(things.len(), 1, "{:?}", r.caption.entities);
    let dog = things[0];
    assert_eq!(dog.tag, "dog");
    assert_eq!(dog.alternatives.iter().map(|a| a.tag.as_str()).collect::<Vec<_>>(), vec!["cat"]);
    // PicoDet voted for the cat, not the dog: its vote is the alternative's, not a source of the dog
    let models: Vec<&str> = dog.sources.iter().map(|s| s.model.as_str()).collect();
    assert_eq!(models, vec!["yolox_nano_416"]);
    let cal = Manifest::by_name("yolox_nano_416").unwrap().calibration.unwrap().apply(0.9);
    assert!((dog.sources[0].score - cal).abs() < 1e-5, "{:?}", dog.sources);
}

/// A fake ADE20K segmenter: sky (class 3) over the top half, road (7) below; it notes the thread it ran on, and
/// panics when asked to.
fn fake_segmenter(ran_on: std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>, panic: bool) -> pancap::perceive::Segmenter {
    let m = Manifest::by_name("deeplabv3_mnv2_ade20k32_uint8").unwrap();
    let engine = FakeEngine::new(m.model_spec(Path::new("unused")), move |_: &[Tensor]| -> Result<Vec<Tensor>, EngineError> {
        ran_on.lock().unwrap().push(std::thread::current().id());
        assert!(!panic, "segmenter blew up");
        let labels: Vec<i32> = (0..512 * 512).map(|i| if i < 256 * 512 { 3 } else { 7 }).collect();
        Ok(vec![Tensor::new(vec![1, 512, 512], TensorData::I32(labels)).unwrap()])
    });
    pancap::perceive::Segmenter::new(m, Box::new(engine)).unwrap()
}

#[test]
fn the_segmenter_runs_beside_the_detectors_and_gives_what_it_gives_run_in_order() {
    use pancap::pipeline::{FrameOptions, StuffInput, StuffMap, TextInput};
    use std::sync::{Arc, Mutex};
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let primary = fake_yolox(yolox_output(&[(1, 6, 13, 80.0, 80.0, 16, 0.9)]));
    let two = pancap::engine::BackendConfig { threads: Some(2), ..Default::default() };
    let cfg = PipelineConfig { backend: two.clone(), discovery: None, person_segmenter: None, text_reader: None, pose: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary], Some(fake_segmenter(Arc::clone(&ran_on), false)), cfg).unwrap();
    let opts = |stuff| FrameOptions { stuff, discovery: false, text: TextInput::Skip, person_masks: false, pose: false };
    let beside = p.process_with(&frame(), Timings::default(), opts(StuffInput::Run)).unwrap();
    let threads = ran_on.lock().unwrap().clone();
    assert_eq!(threads.len(), 1);
    assert_ne!(threads.first(), Some(&std::thread::current().id()), "the segmenter ran on the detectors' thread");
    assert!(beside.caption.timings_ms.0.iter().any(|t| t.stage == pancap::timing::Stage::Inference && t.model.as_deref() == Some("deeplabv3_mnv2_ade20k32_uint8")), "{:?}", beside.caption.timings_ms);

    // the same label map given in order (as a stream carries it) captions the frame the same way
    let mut seg = p.take_segmenter().unwrap();
    let map = seg.segment(&frame().rgb, &mut Timings::default()).unwrap();
    let given = StuffMap { model: seg.name().to_string(), labels: seg.labels(), map };
    let in_order = p.process_with(&frame(), Timings::default(), opts(StuffInput::Given(&given))).unwrap();
    assert!(beside.caption.entities.iter().any(|e| e.tag == "sky") && beside.caption.entities.iter().any(|e| e.tag == "road"), "{}", beside.caption.caption);
    assert_eq!(beside.caption.caption, in_order.caption.caption);
    assert_eq!(beside.caption.entities, in_order.caption.entities);

    // with one thread asked for, the frame stays on one thread
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let one = pancap::engine::BackendConfig { threads: Some(1), ..two };
    let cfg = PipelineConfig { backend: one, discovery: None, person_segmenter: None, text_reader: None, pose: None, ..PipelineConfig::default() };
    let primary = fake_yolox(yolox_output(&[(1, 6, 13, 80.0, 80.0, 16, 0.9)]));
    let mut p = Pipeline::from_parts(vec![primary], Some(fake_segmenter(Arc::clone(&ran_on), false)), cfg).unwrap();
    let alone = p.process_with(&frame(), Timings::default(), opts(StuffInput::Run)).unwrap();
    assert_eq!(ran_on.lock().unwrap().clone(), vec![std::thread::current().id()]);
    assert_eq!(alone.caption.caption, in_order.caption.caption);
}

#[test]
fn a_segmenter_that_dies_beside_the_detectors_fails_the_frame_naming_it() {
    use std::sync::{Arc, Mutex};
    let primary = fake_yolox(yolox_output(&[(1, 6, 13, 80.0, 80.0, 16, 0.9)]));
    let two = pancap::engine::BackendConfig { threads: Some(2), ..Default::default() };
    let cfg = PipelineConfig { backend: two, discovery: None, person_segmenter: None, text_reader: None, pose: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary], Some(fake_segmenter(Arc::new(Mutex::new(Vec::new())), true)), cfg).unwrap();
    let e = p.process(&frame(), Timings::default()).unwrap_err().to_string();
    assert!(e.contains("synthetic.png") && e.contains("segmenter blew up") && e.contains("died"), "{e}");
}

#[test]
fn in_a_stream_the_person_segmenter_runs_on_the_people_worker_and_its_masks_are_carried() {
    use pancap::perceive::masks::{MaskSource, PersonSegmenter};
    use pancap::stream::{run_with_sink, FrameView, LiveStats, StreamOptions, StreamRecord, StreamSink};
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let primary = fake_yolox(yolox_output(&[(1, 18, 10, 40.0, 100.0, 0, 0.8)]));
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let m = Manifest::by_name("selfie_person_256").unwrap();
    let noted = Arc::clone(&ran_on);
    let engine = FakeEngine::new(m.model_spec(Path::new("unused")), move |_: &[Tensor]| -> Result<Vec<Tensor>, EngineError> {
        noted.lock().unwrap().push(std::thread::current().id());
        let probs: Vec<f32> = (0..256 * 256).map(|i| if i % 256 < 154 { 1.0 } else { 0.0 }).collect();
        Ok(vec![Tensor::new(vec![1, 256, 256, 1], TensorData::F32(probs)).unwrap()])
    });
    let cfg = PipelineConfig { segmenter: None, discovery: None, text_reader: None, pose: None, ..PipelineConfig::default() };
    let mut p = Pipeline::from_parts(vec![primary], None, cfg).unwrap().with_person_segmenter(Some(PersonSegmenter::new(m, Box::new(engine)).unwrap()));

    /// The mask source of each frame's people, in frame order.
    struct Sources(Vec<Vec<Option<MaskSource>>>);
    impl StreamSink for Sources {
        fn frame(&mut self, view: &FrameView<'_>) {
            self.0.push(view.caption.entities.iter().filter(|e| e.tag == "person").map(|e| e.mask_source).collect());
        }
        fn record(&mut self, _: &StreamRecord) {}
        fn events(&mut self, _: &[pancap::stream::events::EntityEvent]) {}
        fn stats(&mut self, _: &LiveStats) {}
    }
    let mut sink = Sources(Vec::new());
    // a frame every 25 ms (slowed down), so the worker's ~1 ms runs finish well within the 12 frames
    let frames = (0..12).map(|i| Ok(pancap::source::Frame { seq: i, ..frame() }));
    let source = pancap::stream::sources::Recording::new("twelve frames", frames);
    let opts = StreamOptions { person_masks_every: 1, pose_every: 0, slow_down: std::time::Duration::from_millis(25), ..StreamOptions::default() };
    let mut out = Vec::new();
    let summary = run_with_sink(&mut p, Box::new(source), &opts, Arc::new(AtomicBool::new(false)), &mut out, Some(&mut sink)).unwrap();
    assert_eq!(summary.frames, 12);
    assert_eq!(summary.people_failed, 0);
    let threads = ran_on.lock().unwrap().clone();
    assert!(!threads.is_empty(), "the person segmenter never ran");
    assert!(threads.iter().all(|t| *t != std::thread::current().id()), "the person segmenter ran on the detectors' thread");
    // every frame's person is masked by the person segmenter's mask carried from the worker, once one arrived
    let sources: Vec<Option<MaskSource>> = sink.0.iter().map(|people| people.first().copied().flatten()).collect();
    assert_eq!(sink.0.iter().map(Vec::len).collect::<Vec<_>>(), vec![1; 12]);
    assert!(!sources.contains(&Some(MaskSource::PersonSegmenter)), "{sources:?}");
    let first = sources.iter().position(|s| *s == Some(MaskSource::PersonCarried)).expect("no carried mask");
    assert!(first <= 6 && sources.iter().skip(first).all(|s| *s == Some(MaskSource::PersonCarried)), "{sources:?}");
}

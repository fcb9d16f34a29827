#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The calibration list names real, decodable images that are disjoint from the evaluation sets.

mod common;

#[test]
fn calibration_list_is_valid_and_disjoint_from_evaluation() {
    let list = std::fs::read_to_string(common::repo().join("calibration/images.txt")).unwrap();
    let entries: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(entries.len() >= 16, "enough images to calibrate");
    let eval: Vec<String> = ["coco-val2017-dev/instances.json", "coco-panoptic-dev/panoptic.json"]
        .iter()
        .map(|f| std::fs::read_to_string(common::data(f)).unwrap())
        .collect();
    for e in &entries {
        let frame = pancap::source::read_image(&common::data(e), &Default::default());
        assert!(frame.is_ok(), "{e}: {:?}", frame.err());
        let name = e.rsplit('/').next().unwrap();
        assert!(eval.iter().all(|j| !j.contains(name)), "{e} is an evaluation image");
    }
}

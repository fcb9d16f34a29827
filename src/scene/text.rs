//! Text read in the scene, placed on the entity it lies on (a sign, a bus, a shirt) as an attribute, or, where
//! it lies on nothing detected, grouped into blocks that become text entities of their own.

use crate::geometry::BoxF;
use crate::perceive::masks::BoxMask;
use crate::perceive::merge::Pass;
use crate::perceive::ocr::{quad_contains, sort_reading_order, TextLine};
use crate::scene::{Entity, Kind, Placement, SourceVote, Truncation, MAX_SOURCES};
use serde::{Deserialize, Serialize};

/// Bytes of text kept per entity (UTF-8; a longer text is cut at a word and marked truncated).
pub const MAX_TEXT_BYTES: usize = 160;
/// The tag of an entity that is only text.
pub const TEXT_TAG: &str = "text";
/// A line lies on a thing when at least this much of its box is inside the thing's box.
const ON_THING: f32 = 0.7;

/// The text an entity shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextAttr {
    /// The lines in reading order, joined by spaces.
    pub text: heapless::String<MAX_TEXT_BYTES>,
    /// The lowest recognition confidence among the lines.
    pub score: f32,
    pub lines: u8,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl TextAttr {
    /// The lines (already in reading order) as one bounded text.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a TextLine>) -> Option<TextAttr> {
        Self::from_blocks([lines])
    }

    /// Blocks of lines as one bounded text: each block's lines joined by spaces, blocks by " / ".
    pub fn from_blocks<'a, B: IntoIterator<Item = &'a TextLine>>(blocks: impl IntoIterator<Item = B>) -> Option<TextAttr> {
        let mut text = heapless::String::<MAX_TEXT_BYTES>::new();
        let (mut score, mut count, mut truncated) = (f32::INFINITY, 0u8, false);
        'blocks: for (b, block) in blocks.into_iter().enumerate() {
            for (l, line) in block.into_iter().enumerate() {
                let mut wrote = false;
                for (w, word) in line.text.split_whitespace().enumerate() {
                    let sep = match (text.is_empty(), b > 0 && l == 0 && w == 0) {
                        (true, _) => "",
                        (false, true) => " / ",
                        (false, false) => " ",
                    };
                    if text.len() + sep.len() + word.len() > MAX_TEXT_BYTES {
                        truncated = true;
                        if wrote {
                            count = count.saturating_add(1);
                            score = score.min(line.score);
                        }
                        break 'blocks;
                    }
                    let _ = text.push_str(sep);
                    let _ = text.push_str(word);
                    wrote = true;
                }
                if wrote {
                    count = count.saturating_add(1);
                    score = score.min(line.score);
                }
            }
        }
        (count > 0 && !text.is_empty()).then_some(TextAttr { text, score, lines: count, truncated })
    }
}

/// The thing a line lies on: the smallest thing (not a text entity) whose box holds most of the line's box.
fn host_of(line: &TextLine, entities: &[Entity]) -> Option<usize> {
    entities
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::Thing && e.tag != TEXT_TAG && line.bbox.covered_by(&e.bbox()) >= ON_THING)
        .min_by(|a, b| a.1.bbox().area().total_cmp(&b.1.bbox().area()))
        .map(|(i, _)| i)
}

/// Whether two lines belong to one block of text: stacked (a small vertical gap, overlapping columns) or side
/// by side on one row (a small horizontal gap), at comparable letter heights.
fn same_block(a: &BoxF, b: &BoxF) -> bool {
    let (ha, hb) = (a.height().max(1.0), b.height().max(1.0));
    let (small, large) = (ha.min(hb), ha.max(hb));
    if large > 2.5 * small {
        return false;
    }
    let v_gap = (a.y1.max(b.y1) - a.y2.min(b.y2)).max(0.0);
    let h_gap = (a.x1.max(b.x1) - a.x2.min(b.x2)).max(0.0);
    let v_overlap = a.y2.min(b.y2) - a.y1.max(b.y1);
    let stacked = v_gap <= 0.8 * small && h_gap == 0.0;
    let same_row = v_overlap > 0.5 * small && h_gap <= 1.5 * small;
    stacked || same_row
}

/// The lines grouped into blocks, each block's lines in reading order.
fn blocks(lines: &[&TextLine]) -> Vec<Vec<TextLine>> {
    let n = lines.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while let Some(&p) = parent.get(i) {
            if p == i {
                break;
            }
            let grand = parent.get(p).copied().unwrap_or(p);
            if let Some(slot) = parent.get_mut(i) {
                *slot = grand;
            }
            i = p;
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            let (Some(a), Some(b)) = (lines.get(i), lines.get(j)) else { continue };
            if same_block(&a.bbox, &b.bbox) {
                let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                if let Some(slot) = parent.get_mut(ri.max(rj)) {
                    *slot = ri.min(rj);
                }
            }
        }
    }
    let mut out: Vec<(usize, Vec<TextLine>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let r = root(&mut parent, i);
        match out.iter_mut().find(|(root, _)| *root == r) {
            Some((_, members)) => members.push((*line).clone()),
            None => out.push((r, vec![(*line).clone()])),
        }
    }
    out.into_iter()
        .map(|(_, mut members)| {
            sort_reading_order(&mut members);
            members
        })
        .collect()
}

/// Places the lines read in a frame: lines on a thing become that thing's text attribute; the rest are grouped
/// into blocks, each a new `text` entity (box: the block's extent, mask: its line rectangles) appended to
/// `entities` with the next ids. `lines` are in reading order.
pub fn place_text(entities: &mut Vec<Entity>, lines: &[TextLine], width: u32, height: u32, reader: &str, truncation: &mut Truncation) {
    let mut on_host: Vec<(usize, Vec<&TextLine>)> = Vec::new();
    let mut free: Vec<&TextLine> = Vec::new();
    for line in lines {
        match host_of(line, entities) {
            Some(h) => match on_host.iter_mut().find(|(i, _)| *i == h) {
                Some((_, v)) => v.push(line),
                None => on_host.push((h, vec![line])),
            },
            None => free.push(line),
        }
    }
    for (i, host_lines) in on_host {
        // a thing can carry several blocks (a bus: its slogan, its route, a web address): the largest letters
        // first, each block in reading order
        let mut host_blocks = blocks(&host_lines);
        let letter = |b: &Vec<TextLine>| b.iter().map(|l| crate::perceive::ocr::quad_size(&l.quad).1).fold(0.0, f32::max);
        host_blocks.sort_by(|a, b| letter(b).total_cmp(&letter(a)));
        if let Some(e) = entities.get_mut(i) {
            e.attributes.text = TextAttr::from_blocks(host_blocks.iter());
        }
    }
    for members in blocks(&free) {
        let Some(text) = TextAttr::from_lines(&members) else { continue };
        let bbox = members
            .iter()
            .map(|l| l.bbox)
            .reduce(|a, b| BoxF::new(a.x1.min(b.x1), a.y1.min(b.y1), a.x2.max(b.x2), a.y2.max(b.y2)))
            .unwrap_or_default()
            .clamp(width as f32, height as f32);
        let mask = BoxMask::from_fn(&bbox, width, height, |x, y| {
            members.iter().any(|l| quad_contains(&l.quad, x as f32 + 0.5, y as f32 + 0.5))
        });
        let score = members.iter().map(|l| l.score).sum::<f32>() / members.len().max(1) as f32;
        let at = Placement::of_box(bbox, width, height);
        let mut sources = heapless::Vec::<SourceVote, MAX_SOURCES>::new();
        truncation.vote(&mut sources, reader, Pass::Full, score);
        let id = entities.len() as u32 + 1;
        entities.push(Entity::text(id, text, score, &at, sources, mask.to_rle(width, height)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::perceive::masks::MaskSource;
    use crate::scene::{test_entity, Position};

    fn line(x1: f32, y1: f32, x2: f32, y2: f32, text: &str) -> TextLine {
        TextLine {
            quad: [[x1, y1], [x2, y1], [x2, y2], [x1, y2]],
            bbox: BoxF::new(x1, y1, x2, y2),
            text: text.into(),
            score: 0.95,
            det_score: 0.9,
            flipped: false,
        }
    }

    #[test]
    fn text_on_a_thing_becomes_its_attribute_and_free_text_its_own_entities() {
        let mut es = vec![
            test_entity(1, "bus", Kind::Thing, [0.0, 0.0, 400.0, 200.0], 0.3, Position::Top),
            test_entity(2, "stop sign", Kind::Thing, [300.0, 20.0, 360.0, 80.0], 0.01, Position::TopRight),
            test_entity(3, "wall", Kind::Stuff, [0.0, 200.0, 640.0, 480.0], 0.5, Position::Bottom),
        ];
        let lines = vec![
            line(305.0, 40.0, 355.0, 60.0, "STOP"),
            line(20.0, 20.0, 120.0, 40.0, "CITY"),
            line(130.0, 20.0, 200.0, 40.0, "LINE"),
            // a sign on the wall: two stacked lines and one far away
            line(100.0, 300.0, 260.0, 330.0, "NO"),
            line(90.0, 336.0, 300.0, 366.0, "PARKING"),
            line(500.0, 420.0, 600.0, 440.0, "EXIT"),
        ];
        place_text(&mut es, &lines, 640, 480, "ppocr_v4", &mut Truncation::default());
        assert_eq!(es[1].attributes.text.as_ref().map(|t| t.text.as_str()), Some("STOP"), "the smallest host");
        assert_eq!(es[0].attributes.text.as_ref().map(|t| (t.text.as_str(), t.lines)), Some(("CITY LINE", 2)));
        assert!(es[2].attributes.text.is_none(), "stuff does not host text");
        let texts: Vec<(&str, u32)> = es[3..]
            .iter()
            .map(|e| (e.attributes.text.as_ref().map(|t| t.text.as_str()).unwrap_or(""), e.id))
            .collect();
        assert_eq!(texts, vec![("NO PARKING", 4), ("EXIT", 5)]);
        let sign = &es[3];
        assert_eq!((&*sign.tag, sign.kind, sign.mask_source), (TEXT_TAG, Kind::Thing, Some(MaskSource::TextLines)));
        assert_eq!(sign.box_px, [90.0, 300.0, 300.0, 366.0]);
        let area = sign.mask.as_ref().and_then(|m| m.to_mask()).map(|m| m.area()).unwrap_or(0);
        assert_eq!(area, 160 * 30 + 210 * 30, "the mask is the two line rectangles");
    }

    #[test]
    fn a_thing_with_several_blocks_reads_the_largest_letters_first() {
        let mut es = vec![test_entity(1, "bus", Kind::Thing, [0.0, 0.0, 600.0, 300.0], 0.5, Position::Centre)];
        let lines = vec![
            line(20.0, 20.0, 200.0, 40.0, "www.example.com"),
            line(300.0, 100.0, 560.0, 160.0, "CITY"),
            line(300.0, 170.0, 560.0, 230.0, "EXPRESS"),
        ];
        place_text(&mut es, &lines, 640, 480, "ppocr_v4", &mut Truncation::default());
        let t = es[0].attributes.text.as_ref().unwrap();
        assert_eq!((t.text.as_str(), t.lines), ("CITY EXPRESS / www.example.com", 3));
    }

    #[test]
    fn long_text_is_cut_at_a_word_and_marked() {
        let long = "WORD ".repeat(60);
        let l = line(0.0, 0.0, 100.0, 10.0, &long);
        let t = TextAttr::from_lines([&l]).unwrap();
        assert!(t.truncated && t.text.len() <= MAX_TEXT_BYTES && t.text.ends_with("WORD"));
        let empty = line(0.0, 0.0, 1.0, 1.0, "  ");
        assert!(TextAttr::from_lines([&empty]).is_none());
    }
}

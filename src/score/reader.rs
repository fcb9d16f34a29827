//! Reads entity mentions and their boxes out of free caption text, in both syntaxes PancapScore accepts:
//! `[[x1, y1, x2, y2]]` normalised to [0, 1], and `<box>[[x1, y1, x2, y2]]</box>` with integers in [0, 1000) on
//! the image padded to a square (LLaVA / ASMv2: the image centred on the square), converted with the image size.
//! The tag of a box is the noun phrase it follows; boxes listed after one phrase ("three horses [[…]], [[…]]
//! and [[…]]") share its tag. One pass over the text, linear in its length, never panics.

use serde::{Deserialize, Serialize};

/// One mention: a tag and its normalised box `[x1, y1, x2, y2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    pub tag: String,
    #[serde(rename = "box")]
    pub bbox: [f64; 4],
    /// Byte offset of the box in the text.
    pub offset: usize,
}

/// Words that end a noun phrase when reading backwards from a box.
const STOP: &[&str] = &[
    "a", "an", "the", "of", "with", "and", "or", "is", "are", "was", "were", "on", "in", "at", "to", "by", "near",
    "next", "above", "below", "under", "behind", "beside", "from", "for", "into", "onto", "over", "its", "their",
    "his", "her", "this", "that", "these", "those", "there", "which", "while", "as", "than", "one", "another",
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "several", "some",
    "many", "few", "other", "overlapping", "within", "between", "shows", "show", "showing", "has", "have", "holds",
    "covers", "lies", "part", "larger", "smaller", "left", "right", "top", "bottom", "front", "it", "they",
];

/// Attribute words dropped from the front of a tag (sizes, colours).
const MODIFIERS: &[&str] = &[
    "tiny", "small", "medium-sized", "large", "huge", "big", "little", "black", "white", "gray", "grey", "red",
    "orange", "yellow", "green", "blue", "purple", "pink", "brown", "light", "dark", "bright",
];

/// Longest noun phrase kept, in words.
const MAX_TAG_WORDS: usize = 4;

/// Singular of an English noun (the last word of a tag).
pub fn singular(word: &str) -> String {
    match word {
        "people" => return "person".into(),
        "men" => return "man".into(),
        "women" => return "woman".into(),
        "children" => return "child".into(),
        "mice" => return "mouse".into(),
        "knives" => return "knife".into(),
        "shelves" => return "shelf".into(),
        "leaves" => return "leaf".into(),
        "buses" => return "bus".into(),
        "sheep" | "skis" | "scissors" | "glasses" | "grass" | "bus" | "glass" | "species" => return word.into(),
        _ => {}
    }
    let n = word.len();
    if n > 4 && word.ends_with("ies") {
        return format!("{}y", word.get(..n - 3).unwrap_or(word));
    }
    for suffix in ["ches", "shes", "sses", "xes"] {
        if n > suffix.len() + 1 && word.ends_with(suffix) {
            return word.get(..n - 2).unwrap_or(word).to_string();
        }
    }
    if n > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") && !word.ends_with("is") {
        return word.get(..n - 1).unwrap_or(word).to_string();
    }
    word.to_string()
}

/// Parses up to four comma-separated numbers from `s`; None unless exactly four finite ones.
fn four_numbers(s: &str) -> Option<[f64; 4]> {
    let mut out = [0f64; 4];
    let mut n = 0;
    for part in s.split(',') {
        let v: f64 = part.trim().parse().ok()?;
        if !v.is_finite() {
            return None;
        }
        *out.get_mut(n)? = v;
        n += 1;
    }
    (n == 4).then_some(out)
}

fn clamp01(b: [f64; 4]) -> [f64; 4] {
    b.map(|v| v.clamp(0.0, 1.0))
}

/// Converts a `<box>` box (integers in [0, 1000) on the image centred in a square) to normalised coordinates.
fn from_padded_square(b: [f64; 4], width: u32, height: u32) -> [f64; 4] {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let side = w.max(h);
    let (ox, oy) = ((side - w) / 2.0, (side - h) / 2.0);
    let x = |v: f64| (v / 1000.0 * side - ox) / w;
    let y = |v: f64| (v / 1000.0 * side - oy) / h;
    clamp01([x(b[0]), y(b[1]), x(b[2]), y(b[3])])
}

/// The noun phrase at the end of `before`: trailing words back to a stop word or punctuation, attribute words
/// dropped from its front, last word singular. Empty when there is none.
fn phrase_before(before: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for raw in before.split(|c: char| c.is_whitespace()).rev() {
        if raw.is_empty() {
            continue;
        }
        let ends_clause = raw.ends_with([',', '.', ';', ':', '!', '?', ')', '(']);
        let w: String = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '-').to_lowercase();
        if w.is_empty() {
            continue; // a bare bracket or symbol, e.g. from a malformed box
        }
        if (ends_clause && !words.is_empty()) || STOP.contains(&w.as_str()) {
            break;
        }
        if w.chars().all(|c| c.is_ascii_digit()) {
            break;
        }
        words.push(w);
        if ends_clause || words.len() >= MAX_TAG_WORDS + 2 {
            break;
        }
    }
    words.reverse();
    while words.len() > 1
        && words.first().is_some_and(|w| MODIFIERS.contains(&w.as_str()) || super::content::is_attribute_word(w))
    {
        words.remove(0);
    }
    if words.len() > MAX_TAG_WORDS {
        words.drain(..words.len() - MAX_TAG_WORDS);
    }
    if let Some(last) = words.last_mut() {
        *last = singular(last);
    }
    words.join(" ")
}

/// True when the text between two boxes only continues a list ("," / "and" / "or").
fn continues_list(between: &str) -> bool {
    between
        .split(|c: char| c.is_whitespace() || c == ',')
        .all(|w| w.is_empty() || w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or"))
}

/// Extracts every mention from `text`. `image_size` (width, height) is needed to read `<box>` boxes; without
/// it they are skipped.
pub fn extract(text: &str, image_size: Option<(u32, u32)>) -> Vec<Mention> {
    let mut out: Vec<Mention> = Vec::new();
    let mut cursor = 0usize; // end of the previous box
    let mut search = 0usize;
    while let Some(rel) = text.get(search..).and_then(|t| t.find("[[")) {
        let start = search + rel;
        let Some(close_rel) = text.get(start + 2..).and_then(|t| t.find("]]")) else { break };
        let close = start + 2 + close_rel;
        search = close + 2;
        let inner = text.get(start + 2..close).unwrap_or_default();
        // a "[[" inside the numbers means this one was not a box: resume at the innermost one (keeps the scan
        // linear on inputs like "[[ [[ [[ … ]]")
        if let Some(inner_open) = inner.rfind("[[") {
            search = start + 2 + inner_open;
            continue;
        }
        let Some(nums) = four_numbers(inner) else { continue };
        let before = text.get(..start).unwrap_or_default();
        let tagged_box = before.trim_end().ends_with("<box>");
        let mut end = close + 2;
        let bbox = if tagged_box {
            let Some((w, h)) = image_size else { continue };
            if text.get(end..).is_some_and(|t| t.starts_with("</box>")) {
                end += "</box>".len();
            }
            from_padded_square(nums, w, h)
        } else {
            clamp01(nums)
        };
        let phrase_end = if tagged_box { before.trim_end().len().saturating_sub("<box>".len()) } else { start };
        let between = text.get(cursor.min(phrase_end)..phrase_end).unwrap_or_default();
        let between = between.trim_end().trim_end_matches("</box>");
        let tag = match out.last() {
            Some(prev) if continues_list(between) => prev.tag.clone(),
            _ => phrase_before(text.get(cursor.min(phrase_end)..phrase_end).unwrap_or_default()),
        };
        if !tag.is_empty() {
            out.push(Mention { tag, bbox, offset: start });
        }
        cursor = end;
        search = search.max(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sa_pancap_mentions() {
        let t = "The sky [[0.003, 0.003, 0.996, 0.997]] is light blue. A brown dog [[0.1, 0.2, 0.3, 0.4]] sits.";
        let m = extract(t, None);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].tag.as_str(), m[0].bbox), ("sky", [0.003, 0.003, 0.996, 0.997]));
        assert_eq!(m[1].tag, "dog", "colour words are attributes, not the tag");
    }

    #[test]
    fn list_of_boxes_shares_the_plural_tag() {
        let t = "The image shows three horses [[0.0, 0.1, 0.2, 0.3]], [[0.4, 0.1, 0.5, 0.3]] and [[0.6, 0.1, 0.7, 0.3]], \
                 two people [[0.1, 0.1, 0.2, 0.2]] and [[0.3, 0.3, 0.4, 0.4]] and a traffic light [[0.5, 0.5, 0.6, 0.6]].";
        let tags: Vec<String> = extract(t, None).into_iter().map(|m| m.tag).collect();
        assert_eq!(tags, ["horse", "horse", "horse", "person", "person", "traffic light"]);
    }

    #[test]
    fn reads_our_own_captions_back() {
        let t = "One large gray horse [[0.000, 0.373, 0.437, 0.804]] is in the left of the frame, on the earth \
                 [[0.000, 0.289, 1.000, 1.000]] and overlapping the dining table [[0.1, 0.2, 0.3, 0.4]].";
        let tags: Vec<String> = extract(t, None).into_iter().map(|m| m.tag).collect();
        assert_eq!(tags, ["horse", "earth", "dining table"]);
    }

    #[test]
    fn box_tag_syntax_is_converted_from_the_padded_square() {
        // 200x100 image centred on a 200x200 square: y offset 50 px
        let t = "a cat <box>[[0, 250, 500, 750]]</box> on a mat <box>[[500, 250, 1000, 750]]</box>";
        let m = extract(t, Some((200, 100)));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].tag, "cat");
        let b = m[0].bbox;
        assert!((b[0] - 0.0).abs() < 1e-9 && (b[1] - 0.0).abs() < 1e-9 && (b[2] - 0.5).abs() < 1e-9 && (b[3] - 1.0).abs() < 1e-9, "{b:?}");
        assert_eq!(m[1].tag, "mat");
        assert!(extract(t, None).is_empty(), "without the image size such boxes cannot be read");
    }

    #[test]
    fn malformed_boxes_are_skipped() {
        let t = "a dog [[0.1, 0.2, 0.3]] a cat [[x, 1, 2, 3]] a cow [[ [[0.1, 0.1, 0.2, 0.2]] a [[0.5, NaN, 1, 1]]";
        let m = extract(t, None);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].bbox, [0.1, 0.1, 0.2, 0.2]);
    }

    #[test]
    fn singulars() {
        for (p, s) in [("horses", "horse"), ("people", "person"), ("buses", "bus"), ("benches", "bench"), ("skies", "sky"), ("glasses", "glasses"), ("grass", "grass"), ("knives", "knife"), ("houses", "house"), ("boxes", "box")] {
            assert_eq!(singular(p), s);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_boxes_are_normalised(s in "\\PC{0,400}", w in 1u32..5000, h in 1u32..5000) {
            for m in extract(&s, Some((w, h))) {
                proptest::prop_assert!(m.bbox.iter().all(|v| (0.0..=1.0).contains(v)));
                proptest::prop_assert!(!m.tag.is_empty());
            }
        }

        #[test]
        fn finds_every_well_formed_box(n in 1usize..20) {
            let text: String = (0..n).map(|i| format!("a thing{i} [[0.1, 0.2, 0.3, 0.4]]. ")).collect();
            proptest::prop_assert_eq!(extract(&text, None).len(), n);
        }
    }
}

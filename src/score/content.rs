//! What a caption says, as PancapScore compares it: entities (tag + box) and, for the approximate dimensions,
//! attribute items `(entity, value)`, relation items `(subject, predicate, object)` and global items.
//!
//! Officially an LLM extracts these and another answers yes/no questions about them; on a device we compare
//! structured items instead, so the attribute, relation and global dimensions are an **approximation**. Values
//! are canonicalised on extraction (synonyms map to one word: "grey" → gray, "beside" → next to, "below A" →
//! "A above"), so equal canonical items are a match. Our own JSON gives the items directly; free text (SA-Pancap
//! references, other models' captions) goes through a vocabulary-based reader that is linear in the text.

use super::reader::{self, Mention};
use super::ScoredEntity;
use crate::scene::{Crowdedness, EntityClass, Lighting, PanopticCaption, Predicate, SceneType, Setting, SizeClass};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeItem {
    pub entity: usize,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationItem {
    pub subject: usize,
    pub predicate: String,
    pub object: usize,
}

/// Everything of one caption that PancapScore compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    pub entities: Vec<ScoredEntity>,
    pub attributes: Vec<AttributeItem>,
    pub relations: Vec<RelationItem>,
    pub global: Vec<String>,
}

/// Attribute words → canonical value.
const ATTRIBUTES: &[(&str, &str)] = &[
    ("black", "black"), ("white", "white"), ("gray", "gray"), ("grey", "gray"), ("silver", "gray"), ("red", "red"),
    ("orange", "orange"), ("yellow", "yellow"), ("golden", "yellow"), ("gold", "yellow"), ("green", "green"),
    ("blue", "blue"), ("purple", "purple"), ("violet", "purple"), ("pink", "pink"), ("brown", "brown"),
    ("tan", "brown"), ("beige", "beige"), ("tiny", "tiny"), ("small", "small"), ("little", "small"),
    ("large", "large"), ("big", "large"), ("huge", "huge"), ("giant", "huge"), ("enormous", "huge"),
    ("wooden", "wooden"), ("wood", "wooden"), ("metal", "metal"), ("metallic", "metal"), ("steel", "metal"),
    ("glass", "glass"), ("plastic", "plastic"), ("stone", "stone"), ("brick", "brick"), ("concrete", "concrete"),
    ("leather", "leather"), ("fabric", "fabric"), ("furry", "furry"), ("fluffy", "furry"), ("striped", "striped"),
    ("spotted", "spotted"), ("checkered", "checkered"), ("round", "round"), ("square", "square"),
    ("rectangular", "rectangular"), ("open", "open"), ("closed", "closed"), ("parked", "parked"),
    ("standing", "standing"), ("sitting", "sitting"), ("seated", "sitting"), ("lying", "lying"),
    ("running", "running"), ("walking", "walking"), ("flying", "flying"), ("empty", "empty"), ("wet", "wet"),
    ("dry", "dry"), ("old", "old"), ("new", "new"), ("young", "young"), ("clear", "clear"), ("cloudy", "cloudy"),
];

/// Relation phrases (longest first where one contains another) → (canonical predicate, swap subject/object).
const RELATIONS: &[(&str, &str, bool)] = &[
    ("to the left of", "left of", false), ("on the left of", "left of", false), ("left of", "left of", false),
    ("to the right of", "left of", true), ("on the right of", "left of", true), ("right of", "left of", true),
    ("on top of", "on", false), ("in front of", "in front of", false), ("behind", "in front of", true),
    ("next to", "next to", false), ("beside", "next to", false), ("alongside", "next to", false),
    ("near", "next to", false), ("above", "above", false), ("over", "above", false), ("below", "above", true),
    ("under", "above", true), ("underneath", "above", true), ("beneath", "above", true),
    ("part of", "part of", false), ("inside", "within", false), ("within", "within", false),
    ("larger than", "larger than", false), ("bigger than", "larger than", false),
    ("smaller than", "larger than", true), ("overlapping", "overlapping", false), ("overlaps", "overlapping", false),
    ("riding", "riding", false), ("rides", "riding", false), ("holding", "holding", false),
    ("holds", "holding", false), ("wearing", "wearing", false), ("wears", "wearing", false),
    ("carrying", "carrying", false), ("carries", "carrying", false), ("playing with", "playing with", false),
    ("eating", "eating", false), ("looking at", "looking at", false), ("walking on", "on", false),
    ("standing on", "on", false), ("sitting on", "on", false), ("lying on", "on", false), ("on", "on", false),
    ("in", "within", false),
];

/// Global-state words → canonical item. Read only from sentences that mention no entity.
const GLOBAL: &[(&str, &str)] = &[
    ("indoor", "indoor"), ("indoors", "indoor"), ("interior", "indoor"), ("outdoor", "outdoor"),
    ("outdoors", "outdoor"), ("outside", "outdoor"), ("brightly", "bright"), ("bright", "bright"),
    ("sunny", "bright"), ("sunlit", "bright"), ("well", "well lit"), ("dimly", "dim"), ("dim", "dim"),
    ("dark", "dark"), ("daytime", "daytime"), ("day", "daytime"), ("night", "night"), ("nighttime", "night"),
    ("cloudy", "cloudy"), ("overcast", "cloudy"), ("rainy", "rainy"), ("snowy", "snowy"), ("foggy", "foggy"),
    ("crowded", "crowded"), ("busy", "crowded"), ("bustling", "crowded"), ("calm", "calm"), ("tranquil", "calm"),
    ("peaceful", "calm"), ("serene", "calm"), ("street", "street"), ("field", "field"), ("waterside", "waterside"),
    ("beach", "waterside"), ("mountain", "mountains"), ("mountains", "mountains"), ("room", "room"),
    ("kitchen", "room"), ("bedroom", "room"), ("office", "room"), ("built-up", "built-up"), ("city", "built-up"),
    ("urban", "built-up"), ("sky", "open sky"), ("trees", "greenery"), ("plants", "greenery"),
];

/// True for a word the attribute vocabulary knows (the reader drops these from the front of a tag).
pub(crate) fn is_attribute_word(w: &str) -> bool {
    lookup(ATTRIBUTES, w).is_some()
}

fn lookup<'a>(table: &'a [(&str, &str)], word: &str) -> Option<&'a str> {
    table.iter().find(|(w, _)| *w == word).map(|(_, c)| *c)
}

/// One lower-case word of the text with its byte span.
#[derive(Debug, Clone)]
struct Word {
    start: usize,
    text: String,
}

fn words_of(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        let part_of_word = c.is_alphanumeric() || c == '-' || c == '\'';
        match (part_of_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word { start: s, text: text.get(s..i).unwrap_or_default().to_lowercase() });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Byte offsets where sentences or clauses end (`.`, `!`, `?`, `;`), ignoring the dots inside box numbers.
fn sentence_breaks(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut out = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth = (depth - 1).max(0),
            b'.' | b'!' | b'?' | b';' if depth == 0 => {
                let next_is_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !next_is_digit {
                    out.push(i);
                }
            }
            _ => {}
        }
    }
    out
}

/// Last relation phrase in a run of words, matched on whole words.
fn last_relation(words: &[&str]) -> Option<(&'static str, bool)> {
    let mut best: Option<(usize, usize, &'static str, bool)> = None; // (end, len, predicate, swap)
    for (phrase, canon, swap) in RELATIONS {
        let p: Vec<&str> = phrase.split(' ').collect();
        if p.len() > words.len() {
            continue;
        }
        for start in 0..=words.len() - p.len() {
            if words.get(start..start + p.len()) == Some(p.as_slice()) {
                let end = start + p.len();
                let better = match best {
                    None => true,
                    Some((e, l, _, _)) => end > e || (end == e && p.len() > l),
                };
                if better {
                    best = Some((end, p.len(), canon, *swap));
                }
            }
        }
    }
    best.map(|(_, _, c, s)| (c, s))
}

/// The canonical attribute value of text an entity shows: `text 'stop'` (case and spacing folded).
fn text_value(t: &str) -> String {
    format!("text '{}'", t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
}

/// Phrases that introduce quoted text right after a mention.
const TEXT_LEADS: &[&str] = &[
    "reading", "reads", "which reads", "that reads", "saying", "says", "which says", "that says", "with the text",
    "with the words", "bearing the words", "wearing the words", "labeled", "labelled", "marked",
];

/// The quoted text right after a mention's box: `, reading 'STOP' …` → `STOP`. The quote closes at a `'` or
/// `"` followed by a space, punctuation or the end (so "HE'S" stays whole).
fn quoted_text(after: &str) -> Option<&str> {
    let rest = after.trim_start_matches([',', ' ']);
    let lead = TEXT_LEADS.iter().filter(|l| rest.starts_with(**l)).max_by_key(|l| l.len())?;
    let rest = rest.get(lead.len()..)?.trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '\'' | '"' | '‘' | '“'))?;
    let close = match quote {
        '‘' => '’',
        '“' => '”',
        q => q,
    };
    let body = rest.get(quote.len_utf8()..)?;
    let mut end = None;
    for (i, c) in body.char_indices() {
        if c == close {
            let next = body.get(i + c.len_utf8()..).and_then(|r| r.chars().next());
            if next.is_none_or(|n| n.is_whitespace() || n.is_ascii_punctuation()) {
                end = Some(i);
                break;
            }
        }
    }
    body.get(..end?).filter(|t| !t.trim().is_empty())
}

impl Content {
    /// The items of one of our own captions, straight from its scene graph.
    pub fn from_caption(c: &PanopticCaption) -> Content {
        Self::from_caption_of(c, |_| true)
    }

    /// What a caption says about the entities of the classes `keep` accepts (e.g. things alone, when the
    /// references cover only things); attributes and relations of the others are left out with them.
    pub fn from_caption_of(c: &PanopticCaption, keep: impl Fn(EntityClass) -> bool) -> Content {
        let kept: Vec<&crate::scene::Entity> = c.entities.iter().filter(|e| keep(e.class())).collect();
        let entities = kept.iter().map(|e| ScoredEntity { tag: e.tag.to_string(), bbox: Some(e.box_norm) }).collect();
        let index_of = |id: u32| kept.iter().position(|e| e.id == id);
        let mut attributes = Vec::new();
        for (i, e) in kept.iter().enumerate() {
            if let Some(col) = e.attributes.colour {
                let mut push = |v: &str| {
                    if let Some(v) = lookup(ATTRIBUTES, v) {
                        attributes.push(AttributeItem { entity: i, value: v.to_string() });
                    }
                };
                push(col.name.as_str());
                if let Some(s) = col.secondary {
                    push(s.as_str());
                }
            }
            if e.attributes.size != SizeClass::Medium && e.kind == crate::scene::Kind::Thing {
                if let Some(v) = lookup(ATTRIBUTES, e.attributes.size.as_str()) {
                    attributes.push(AttributeItem { entity: i, value: v.to_string() });
                }
            }
            if let Some(t) = &e.attributes.text {
                attributes.push(AttributeItem { entity: i, value: text_value(&t.text) });
            }
        }
        let mut relations = Vec::new();
        for r in &c.relations {
            let (Some(s), Some(o)) = (index_of(r.subject), index_of(r.object)) else { continue };
            let words: Vec<&str> = r.predicate.phrase().split(' ').collect();
            if let Some((p, swap)) = last_relation(&words) {
                let (subject, object) = if swap { (o, s) } else { (s, o) };
                relations.push(RelationItem { subject, predicate: p.to_string(), object });
            }
        }
        let g = &c.global;
        let mut global = Vec::new();
        match g.setting {
            Setting::Indoor => global.push("indoor"),
            Setting::Outdoor => global.push("outdoor"),
            Setting::Unknown => {}
        }
        global.push(match g.lighting {
            Lighting::Dark => "dark",
            Lighting::Dim => "dim",
            Lighting::WellLit => "well lit",
            Lighting::Bright => "bright",
        });
        if let Some(scene) = g.scene.phrase() {
            if g.scene != SceneType::Unknown {
                for w in scene.split(' ') {
                    if let Some(v) = lookup(GLOBAL, w) {
                        global.push(v);
                    }
                }
            }
        }
        if g.crowdedness == Crowdedness::Crowded {
            global.push("crowded");
        }
        let mut global: Vec<String> = global.into_iter().map(str::to_string).collect();
        global.dedup();
        Content { entities, attributes, relations, global }
    }

    /// The items of free caption text: mentions by `reader::extract`; attributes from the modifiers right
    /// before a tag and from "is/are …" clauses after its box; a relation between consecutive mentions of one
    /// sentence when a relation phrase lies between them; global items from sentences that mention no entity.
    pub fn from_text(text: &str, image_size: Option<(u32, u32)>) -> Content {
        let mentions: Vec<Mention> = reader::extract(text, image_size);
        let words = words_of(text);
        let breaks = sentence_breaks(text);
        let sentence_of = |offset: usize| breaks.partition_point(|b| *b < offset);
        let entities: Vec<ScoredEntity> =
            mentions.iter().map(|m| ScoredEntity { tag: m.tag.clone(), bbox: Some(m.bbox) }).collect();
        let box_end = |m: &Mention| text.get(m.offset..).and_then(|t| t.find("]]")).map_or(m.offset, |e| m.offset + e + 2);
        // index of the first word at or after each box, and where each mention's noun phrase starts
        let first_word_at = |offset: usize| words.partition_point(|w| w.start < offset);
        let mut phrase_start = Vec::with_capacity(mentions.len());
        let mut attributes = Vec::new();
        for (i, m) in mentions.iter().enumerate() {
            let k = first_word_at(m.offset);
            let tag_words = m.tag.split(' ').count();
            // a list of boxes after one phrase: the phrase lies before the first box of the list
            let mut j = k.saturating_sub(tag_words);
            if i > 0 && mentions.get(i - 1).is_some_and(|p| first_word_at(box_end(p)) >= k && p.tag == m.tag) {
                j = phrase_start.last().copied().unwrap_or(j);
            } else {
                while j > 0 {
                    let Some(w) = words.get(j - 1) else { break };
                    let shade = w.text == "light" || w.text == "dark";
                    if lookup(ATTRIBUTES, &w.text).is_some() || shade {
                        if let Some(v) = lookup(ATTRIBUTES, &w.text) {
                            attributes.push(AttributeItem { entity: i, value: v.to_string() });
                        }
                        j -= 1;
                    } else {
                        break;
                    }
                }
            }
            phrase_start.push(j);
        }
        let mut relations = Vec::new();
        let mut sentence_subject: Option<(usize, usize)> = None; // (sentence, mention)
        for (i, m) in mentions.iter().enumerate() {
            let end = box_end(m);
            let from = first_word_at(end);
            let next = mentions.get(i + 1);
            let to = match next {
                Some(n) if sentence_of(n.offset) == sentence_of(m.offset) => phrase_start.get(i + 1).copied().unwrap_or(from),
                _ => {
                    let stop = breaks.get(sentence_of(m.offset)).copied().unwrap_or(text.len());
                    first_word_at(stop)
                }
            };
            let between: Vec<&str> = words.get(from..to.max(from)).unwrap_or_default().iter().map(|w| w.text.as_str()).collect();
            // "X [[…]], reading 'STOP'": the text X shows
            if let Some(t) = text.get(end..).and_then(quoted_text) {
                attributes.push(AttributeItem { entity: i, value: text_value(t) });
            }
            // "X [[…]] is brown": attributes after a copula belong to X
            if let Some(pos) = between.iter().position(|w| matches!(*w, "is" | "are" | "appears" | "looks" | "seems")) {
                for w in between.iter().skip(pos + 1) {
                    if let Some(v) = lookup(ATTRIBUTES, w) {
                        attributes.push(AttributeItem { entity: i, value: v.to_string() });
                    } else if last_relation(&[w]).is_some() {
                        break;
                    }
                }
            }
            let Some(n) = next else { continue };
            let sentence = sentence_of(m.offset);
            if sentence_of(n.offset) != sentence {
                sentence_subject = None;
                continue;
            }
            if between.first().is_some_and(|w| matches!(*w, "which" | "that" | "who")) {
                sentence_subject = None;
            }
            let Some((predicate, swap)) = last_relation(&between) else { continue };
            // "A is left of B and next to C": the subject carries over to C
            let subject = match sentence_subject {
                Some((s, subj)) if s == sentence && matches!(between.first(), Some(&"and") | None) => subj,
                _ => i,
            };
            sentence_subject = Some((sentence, subject));
            let (s, o) = if swap { (i + 1, subject) } else { (subject, i + 1) };
            relations.push(RelationItem { subject: s, predicate: predicate.to_string(), object: o });
        }
        // global items: sentences without a box
        let mut global: Vec<String> = Vec::new();
        let mut sentence_start = 0;
        for end in breaks.iter().copied().chain(std::iter::once(text.len())) {
            let has_box = mentions.iter().any(|m| m.offset >= sentence_start && m.offset < end);
            if !has_box {
                let a = first_word_at(sentence_start);
                let b = first_word_at(end);
                for w in words.get(a..b.max(a)).unwrap_or_default() {
                    if let Some(v) = lookup(GLOBAL, &w.text) {
                        if !global.iter().any(|g| g == v) {
                            global.push(v.to_string());
                        }
                    }
                }
            }
            sentence_start = end + 1;
        }
        attributes.sort_by(|a, b| a.entity.cmp(&b.entity).then_with(|| a.value.cmp(&b.value)));
        attributes.dedup();
        Content { entities, attributes, relations, global }
    }
}

/// Precision/recall counts of the approximate dimensions given the entity pairs `(reference, prediction)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCounts {
    /// Prediction items about matched entities (the ones that are "asked"), and how many the reference holds.
    pub asked_predicted: usize,
    pub confirmed_predicted: usize,
    /// Reference items, and how many the prediction holds.
    pub reference: usize,
    pub recalled_reference: usize,
}

fn counts<T>(
    reference: &[T],
    predicted: &[T],
    to_pred: impl Fn(&T) -> Option<T>,
    to_ref: impl Fn(&T) -> Option<T>,
) -> ItemCounts
where
    T: PartialEq,
{
    let recalled_reference = reference.iter().filter(|r| to_pred(r).is_some_and(|m| predicted.contains(&m))).count();
    let asked: Vec<T> = predicted.iter().filter_map(&to_ref).collect();
    let confirmed_predicted = asked.iter().filter(|a| reference.contains(a)).count();
    ItemCounts { asked_predicted: asked.len(), confirmed_predicted, reference: reference.len(), recalled_reference }
}

/// Attribute, relation and global counts of one image after entity matching.
pub fn compare_items(
    reference: &Content,
    predicted: &Content,
    pairs: &[(usize, usize)],
) -> (ItemCounts, ItemCounts, ItemCounts) {
    let r2p = |r: usize| pairs.iter().find(|(a, _)| *a == r).map(|(_, b)| *b);
    let p2r = |p: usize| pairs.iter().find(|(_, b)| *b == p).map(|(a, _)| *a);
    let att = counts(
        &reference.attributes,
        &predicted.attributes,
        |a| r2p(a.entity).map(|entity| AttributeItem { entity, value: a.value.clone() }),
        |a| p2r(a.entity).map(|entity| AttributeItem { entity, value: a.value.clone() }),
    );
    let rel = counts(
        &reference.relations,
        &predicted.relations,
        |r| Some(RelationItem { subject: r2p(r.subject)?, predicate: r.predicate.clone(), object: r2p(r.object)? }),
        |r| Some(RelationItem { subject: p2r(r.subject)?, predicate: r.predicate.clone(), object: p2r(r.object)? }),
    );
    let glob = counts(&reference.global, &predicted.global, |g| Some(g.clone()), |g| Some(g.clone()));
    (att, rel, glob)
}

/// Canonical predicate of one of our relation predicates (for tests and reports).
pub fn canonical_predicate(p: Predicate) -> Option<(&'static str, bool)> {
    let words: Vec<&str> = p.phrase().split(' ').collect();
    last_relation(&words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_relations_and_global_from_text() {
        let text = "A large brown dog [[0.1, 0.5, 0.4, 0.9]] is to the left of a white cat [[0.6, 0.5, 0.8, 0.8]] \
                    and below the grey sky [[0.0, 0.0, 1.0, 0.3]]. The grass [[0.0, 0.7, 1.0, 1.0]] is green. \
                    It is a sunny outdoor scene.";
        let c = Content::from_text(text, None);
        let tags: Vec<&str> = c.entities.iter().map(|e| e.tag.as_str()).collect();
        assert_eq!(tags, ["dog", "cat", "sky", "grass"]);
        let att: Vec<(usize, &str)> = c.attributes.iter().map(|a| (a.entity, a.value.as_str())).collect();
        assert_eq!(att, [(0, "brown"), (0, "large"), (1, "white"), (2, "gray"), (3, "green")]);
        let rel: Vec<(usize, &str, usize)> =
            c.relations.iter().map(|r| (r.subject, r.predicate.as_str(), r.object)).collect();
        // "below the sky" is stored as "sky above dog"; the subject carries over the "and"
        assert_eq!(rel, [(0, "left of", 1), (2, "above", 0)]);
        assert_eq!(c.global, ["bright", "outdoor"]);
    }

    #[test]
    fn quoted_text_after_a_mention_is_an_attribute() {
        let text = "The red stop sign [[0.4, 0.1, 0.5, 0.2]], reading 'STOP', is in the top of the frame. \
                    A banner [[0.1, 0.1, 0.3, 0.2]] which reads \"HE'S FOR US\" hangs there. A dog [[0.5, 0.5, 0.9, 0.9]] sits.";
        let c = Content::from_text(text, None);
        let att: Vec<(usize, &str)> = c.attributes.iter().map(|a| (a.entity, a.value.as_str())).collect();
        assert_eq!(att, [(0, "red"), (0, "text 'stop'"), (1, "text 'he's for us'")]);
        assert_eq!(quoted_text(" reading ''"), None);
        assert_eq!(quoted_text(" is reading 'X'"), None, "only right after the mention");
    }

    #[test]
    fn inverse_predicates_are_one_item() {
        assert_eq!(canonical_predicate(Predicate::RightOf), Some(("left of", true)));
        assert_eq!(canonical_predicate(Predicate::Below), Some(("above", true)));
        assert_eq!(canonical_predicate(Predicate::OnTopOf), Some(("on", false)));
    }

    #[test]
    fn items_count_only_through_matched_entities() {
        let reference = Content {
            entities: vec![],
            attributes: vec![AttributeItem { entity: 0, value: "red".into() }, AttributeItem { entity: 1, value: "small".into() }],
            relations: vec![RelationItem { subject: 0, predicate: "left of".into(), object: 1 }],
            global: vec!["outdoor".into(), "bright".into()],
        };
        let predicted = Content {
            entities: vec![],
            // entity 2 is unmatched: its item is not asked
            attributes: vec![AttributeItem { entity: 0, value: "red".into() }, AttributeItem { entity: 2, value: "blue".into() }],
            relations: vec![RelationItem { subject: 0, predicate: "left of".into(), object: 1 }],
            global: vec!["outdoor".into(), "night".into()],
        };
        // reference 0 ↔ prediction 0, reference 1 ↔ prediction 1
        let (att, rel, glob) = compare_items(&reference, &predicted, &[(0, 0), (1, 1)]);
        assert_eq!(att, ItemCounts { asked_predicted: 1, confirmed_predicted: 1, reference: 2, recalled_reference: 1 });
        assert_eq!(rel, ItemCounts { asked_predicted: 1, confirmed_predicted: 1, reference: 1, recalled_reference: 1 });
        assert_eq!(glob, ItemCounts { asked_predicted: 2, confirmed_predicted: 1, reference: 2, recalled_reference: 1 });
        // an unmatched reference entity's items are misses
        let (att, rel, _) = compare_items(&reference, &predicted, &[(0, 0)]);
        assert_eq!(att.recalled_reference, 1);
        assert_eq!(rel.recalled_reference, 0);
    }

    proptest::proptest! {
        #[test]
        fn any_text_gives_items_that_point_at_entities(s in "\\PC{0,300}") {
            let c = Content::from_text(&s, None);
            for a in &c.attributes {
                proptest::prop_assert!(a.entity < c.entities.len());
            }
            for r in &c.relations {
                proptest::prop_assert!(r.subject < c.entities.len() && r.object < c.entities.len());
            }
        }

        #[test]
        fn boxes_with_arbitrary_words_between(words in proptest::collection::vec("[a-z]{1,8}|is|on|left of|and|,|\\.", 0..40)) {
            let mut text = String::new();
            for (i, w) in words.iter().enumerate() {
                text.push_str(w);
                text.push(' ');
                if i % 3 == 2 {
                    text.push_str("[[0.1, 0.2, 0.3, 0.4]] ");
                }
            }
            let c = Content::from_text(&text, None);
            for r in &c.relations {
                proptest::prop_assert!(r.subject < c.entities.len() && r.object < c.entities.len());
            }
        }
    }
}

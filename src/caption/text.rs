//! Scene graph → grounded caption text in the SA-Pancap style (PancapChain stage 4 analogue).
//! Deterministic, and grounded: every mention of an entity is followed by its normalised box, and nothing is
//! said that the scene graph does not hold.

use crate::scene::{
    Crowdedness, Entity, GlobalState, Kind, Lighting, Predicate, Relation, RelationKind, SceneType, Setting,
    SizeClass,
};
use std::fmt::Write as _;

/// How a caption grounds its mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounding {
    /// SA-Pancap: the phrase followed by the normalised box, `a dog [[0.1, 0.2, 0.5, 0.9]]`.
    Box,
    /// COCONut-PanCap: the phrase inside its segment id, `<3: a dog>`; the ids are the segment ids of the
    /// panoptic PNG written beside the caption (entity ids).
    SegmentId,
}

/// Most instances described one by one within a group; the rest are still mentioned in the group's sentence.
const MAX_DESCRIBED_PER_GROUP: usize = 4;
/// Most relation clauses attached to one entity's sentence.
const MAX_RELATION_CLAUSES: usize = 2;

const NUMBER_WORDS: [&str; 13] =
    ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];

pub fn number_word(n: usize) -> String {
    NumberWord(n).to_string()
}

/// English plural of a COCO / ADE20K tag.
pub fn plural(tag: &str) -> String {
    Plural(tag).to_string()
}

/// "a" or "an" for the phrase that follows.
pub fn article(phrase: &str) -> &'static str {
    match phrase.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The posture word said of a person ("standing"), unless an action of theirs already says it (sitting on,
/// lying on) or it is unknown.
fn posture_word(e: &Entity, relations: &[Relation]) -> Option<&'static str> {
    let word = e.attributes.posture?.posture.word()?;
    let said = relations
        .iter()
        .any(|r| r.subject == e.id && matches!(r.predicate, Predicate::SittingOn | Predicate::LyingOn | Predicate::Riding));
    (!said).then_some(word)
}

fn lighting_phrase(l: Lighting) -> &'static str {
    match l {
        Lighting::Dark => "dark",
        Lighting::Dim => "dimly lit",
        Lighting::WellLit => "well lit",
        Lighting::Bright => "brightly lit",
    }
}

fn crowd_phrase(c: Crowdedness) -> &'static str {
    match c {
        Crowdedness::Empty => "no distinct objects in view",
        Crowdedness::Sparse => "only a few objects in view",
        Crowdedness::Moderate => "several objects in view",
        Crowdedness::Crowded => "a crowded view of many objects",
    }
}

fn importance(e: &Entity) -> f32 {
    e.attributes.area_fraction.sqrt() * e.score
}

/// The passive of an action taken on an entity: "ridden by".
fn passive_verb(p: Predicate) -> Option<&'static str> {
    match p {
        Predicate::Riding => Some("ridden by"),
        Predicate::Holding => Some("held by"),
        Predicate::Carrying => Some("carried by"),
        _ => None,
    }
}

/// The main relation of `e` for its region caption, after ", ": an action it takes part in first, then an action
/// taken on it, then its strongest relation as subject (relations come strongest first per entity).
fn write_main_relation(out: &mut String, e: &Entity, entities: &[Entity], relations: &[Relation]) {
    let as_subject = |r: &&Relation| r.subject == e.id;
    let action = relations.iter().find(|r| as_subject(r) && r.kind == RelationKind::Action);
    if let Some((r, o)) = action.and_then(|r| Some((r, by_id(entities, r.object)?))) {
        put(out, format_args!(", {} {} {}", r.predicate.phrase(), article(&o.tag), o.tag));
        return;
    }
    if let Some((r, verb)) = relations.iter().filter(|r| r.object == e.id).find_map(|r| Some((r, passive_verb(r.predicate)?))) {
        // an action on it whose subject is unknown says nothing, and no other relation is said instead
        if let Some(s) = by_id(entities, r.subject) {
            put(out, format_args!(", {verb} {} {}", article(&s.tag), s.tag));
        }
        return;
    }
    let Some((r, o)) = relations.iter().find(as_subject).and_then(|r| Some((r, by_id(entities, r.object)?))) else { return };
    if r.predicate == Predicate::LargerThan {
        put(out, format_args!(", {} other {}", r.predicate.phrase(), o.tag));
    } else {
        put(out, format_args!(", {} the {}", r.predicate.phrase(), o.tag));
    }
}

/// One short region caption per entity (Pix2Cap style): tag with size and colour, where it is in the frame,
/// what it reads, and its main relation. Plain text: the entity's mask and box ground it.
pub fn region_caption(e: &Entity, entities: &[Entity], relations: &[Relation]) -> String {
    let mut out = String::with_capacity(96);
    if e.kind == Kind::Thing {
        let d = Described { e, with_size: true };
        let lead = if article(d.first_word()) == "an" { "An" } else { "A" };
        put(&mut out, format_args!("{lead} {d}"));
    } else {
        put(&mut out, format_args!("The {}", StuffName(e)));
    }
    if let Some(w) = posture_word(e, relations) {
        put(&mut out, format_args!(" {w}"));
    }
    put(&mut out, format_args!(" in the {} of the frame", e.attributes.position.phrase()));
    if let Some(t) = e.attributes.text.as_ref() {
        if e.tag == "person" {
            put(&mut out, format_args!(", wearing the words '{}'", t.text));
        } else {
            put(&mut out, format_args!(", reading '{}'", t.text));
        }
    }
    write_main_relation(&mut out, e, entities, relations);
    out.push('.');
    out
}

/// Region captions of every entity, in entity order.
pub fn region_captions(entities: &[Entity], relations: &[Relation]) -> Vec<String> {
    entities.iter().map(|e| region_caption(e, entities, relations)).collect()
}

/// Writes the caption paragraph for an image's scene graph, SA-Pancap style (boxes).
pub fn write_caption(entities: &[Entity], relations: &[Relation], global: &GlobalState) -> String {
    write_caption_grounded(entities, relations, global, Grounding::Box)
}

/// Writes the caption paragraph with the given grounding of mentions.
pub fn write_caption_grounded(entities: &[Entity], relations: &[Relation], global: &GlobalState, g: Grounding) -> String {
    let mut out = String::new();
    write_caption_into(&mut out, entities, relations, global, g);
    out
}

/// Writes the caption paragraph into `out` (cleared first; its capacity is kept, so a caller that keeps the
/// String allocates only for the entity lists): four parts, each of one or more sentences.
///
/// 1. The overview: the things, grouped by tag in order of their most important member, then the stuff.
/// 2. The things, group by group: a lone thing in one sentence; a group in one sentence, then its first
///    `MAX_DESCRIBED_PER_GROUP` members one each.
/// 3. The stuff, in one sentence of clauses.
/// 4. The global state.
pub fn write_caption_into(out: &mut String, entities: &[Entity], relations: &[Relation], global: &GlobalState, g: Grounding) {
    out.clear();
    let mut things: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Thing).collect();
    // ids are unique, so this order is total and an unstable sort (which never allocates) gives the stable one
    things.sort_unstable_by(|a, b| importance(b).total_cmp(&importance(a)).then(a.id.cmp(&b.id)));
    let mut stuff: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Stuff).collect();
    stuff.sort_unstable_by(|a, b| b.attributes.area_fraction.total_cmp(&a.attributes.area_fraction).then(a.id.cmp(&b.id)));
    // groups of the same tag, ordered by their most important member: (rank of the group's first member, own rank)
    let mut grouped: Vec<(usize, usize, &Entity)> = things
        .iter()
        .enumerate()
        .map(|(i, t)| (things.iter().position(|o| o.tag == t.tag).unwrap_or(i), i, *t))
        .collect();
    grouped.sort_unstable_by_key(|&(group, rank, _)| (group, rank));
    let groups = || grouped.chunk_by(|a, b| a.0 == b.0);

    // 1. overview
    let n_groups = groups().count();
    if n_groups == 0 && stuff.is_empty() {
        out.push_str("The image shows no recognisable objects or regions.");
    } else {
        out.push_str("The image shows ");
        for (i, group) in groups().enumerate() {
            separate(out, i, n_groups);
            write_group_phrase(out, group, g);
        }
        if n_groups > 0 && !stuff.is_empty() {
            out.push_str(", with ");
        }
        for (i, s) in stuff.iter().enumerate() {
            separate(out, i, stuff.len());
            put(out, format_args!("{}", Mention { g, e: s, phrase: format_args!("the {}", s.tag) }));
        }
        out.push_str(if n_groups > 0 && !stuff.is_empty() { " around them." } else { "." });
    }

    // 2. things, group by group
    for group in groups() {
        let members = || group.iter().map(|&(_, _, e)| e);
        let Some(first) = members().next() else { continue };
        out.push(' ');
        if group.len() == 1 {
            write_thing_sentence(out, first, format_args!("The {}", Described { e: first, with_size: true }), entities, relations, g);
            continue;
        }
        let phrase = format_args!("The {} {}", NumberWord(group.len()), Plural(&first.tag));
        write_group(out, group, phrase, g);
        out.push_str(" are spread ");
        write_spread(out, group);
        out.push('.');
        for (i, e) in members().take(MAX_DESCRIBED_PER_GROUP).enumerate() {
            out.push(' ');
            let d = Described { e, with_size: true };
            if i == 0 {
                write_thing_sentence(out, e, format_args!("One {d}"), entities, relations, g);
            } else {
                write_thing_sentence(out, e, format_args!("Another {d}"), entities, relations, g);
            }
        }
    }

    // 3. stuff
    for (i, s) in stuff.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { "; " });
        let name = StuffName(s);
        let verb = if s.attributes.area_fraction >= 0.2 { "covers" } else { "lies at" };
        // the sentence's first word is capitalised, inside a segment-id mention too
        if i == 0 {
            put(out, format_args!("{}", Mention { g, e: s, phrase: format_args!("The {name}") }));
        } else {
            put(out, format_args!("{}", Mention { g, e: s, phrase: format_args!("the {name}") }));
        }
        put(out, format_args!(" {verb} the {}", s.attributes.position.phrase()));
        let n = relation_objects(s, entities, relations).count();
        if n > 0 {
            out.push_str(", ");
            for (k, (r, o)) in relation_objects(s, entities, relations).enumerate() {
                separate(out, k, n);
                write_relation_clause(out, r, o, g);
            }
        }
    }
    if !stuff.is_empty() {
        out.push('.');
    }

    // 4. global state
    out.push(' ');
    write_global_sentence(out, global);
}

/// Appends formatted text. Writing to a String cannot fail (its `fmt::Write` always returns Ok), and every
/// Display here only writes.
fn put(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _infallible = out.write_fmt(args);
}

/// The separator before item `i` of `n` in "A, B and C".
fn separate(out: &mut String, i: usize, n: usize) {
    if i > 0 {
        out.push_str(if i + 1 == n { " and " } else { ", " });
    }
}

/// One grounded mention of `e`, said as `phrase` (what `Grounding::mention` returns).
struct Mention<'a, P> {
    g: Grounding,
    e: &'a Entity,
    phrase: P,
}

impl<P: std::fmt::Display> std::fmt::Display for Mention<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.g {
            Grounding::Box => write!(f, "{} {}", self.phrase, BoxText(self.e)),
            Grounding::SegmentId => write!(f, "<{}: {}>", self.e.id, self.phrase),
        }
    }
}

/// An entity's normalised box as captions give it (what `Entity::box_text` returns).
struct BoxText<'a>(&'a Entity);

impl std::fmt::Display for BoxText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0.box_norm;
        write!(f, "[[{a:.3}, {b:.3}, {c:.3}, {d:.3}]]")
    }
}

/// `describe`'s noun phrase, written where it is used.
struct Described<'a> {
    e: &'a Entity,
    with_size: bool,
}

impl Described<'_> {
    fn colour(&self) -> Option<crate::scene::ColourAttr> {
        // "orange orange" says nothing: a colour that names the thing itself is left out
        self.e.attributes.colour.filter(|c| !self.e.tag.split(' ').any(|w| w == c.name.as_str()))
    }

    fn size(&self) -> Option<&'static str> {
        (self.with_size && self.e.attributes.size != SizeClass::Medium).then(|| self.e.attributes.size.as_str())
    }

    /// Its first word, which picks the article.
    fn first_word(&self) -> &str {
        match (self.size(), self.colour()) {
            (Some(size), _) => size,
            (None, Some(c)) => c.name.as_str(),
            (None, None) => &self.e.tag,
        }
    }
}

impl std::fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(size) = self.size() {
            write!(f, "{size} ")?;
        }
        if let Some(c) = self.colour() {
            write!(f, "{c} ")?;
        }
        f.write_str(&self.e.tag)
    }
}

/// A stuff region's name with its colour: "brown sky".
struct StuffName<'a>(&'a Entity);

impl std::fmt::Display for StuffName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.attributes.colour {
            Some(c) => write!(f, "{c} {}", self.0.tag),
            None => f.write_str(&self.0.tag),
        }
    }
}

/// `number_word`, written where it is used.
struct NumberWord(usize);

impl std::fmt::Display for NumberWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match NUMBER_WORDS.get(self.0) {
            Some(w) => f.write_str(w),
            None => write!(f, "{}", self.0),
        }
    }
}

/// `plural`, written where it is used.
struct Plural<'a>(&'a str);

impl std::fmt::Display for Plural<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = self.0;
        match tag {
            "person" => return f.write_str("people"),
            "mouse" => return f.write_str("mice"),
            "sheep" | "skis" | "scissors" | "grass" => return f.write_str(tag),
            "knife" => return f.write_str("knives"),
            "shelf" => return f.write_str("shelves"),
            _ => {}
        }
        // multi-word tags pluralise their last word
        if let Some((head, last)) = tag.rsplit_once(' ') {
            return write!(f, "{head} {}", Plural(last));
        }
        if tag.ends_with('s') || tag.ends_with("sh") || tag.ends_with("ch") || tag.ends_with('x') {
            write!(f, "{tag}es")
        } else if let Some(stem) = tag.strip_suffix('y').filter(|_| !tag.ends_with("ey") && !tag.ends_with("ay") && !tag.ends_with("oy")) {
            write!(f, "{stem}ies")
        } else {
            write!(f, "{tag}s")
        }
    }
}

/// The entity a relation's id names (the last of that id, as a map built over the list would hold).
fn by_id(entities: &[Entity], id: u32) -> Option<&Entity> {
    entities.iter().rev().find(|e| e.id == id)
}

/// The relations `e` is the subject of whose object is known, at most `MAX_RELATION_CLAUSES`.
fn relation_objects<'a>(e: &'a Entity, entities: &'a [Entity], relations: &'a [Relation]) -> impl Iterator<Item = (&'a Relation, &'a Entity)> + 'a {
    relations
        .iter()
        .filter(move |r| r.subject == e.id)
        .filter_map(move |r| Some((r, by_id(entities, r.object)?)))
        .take(MAX_RELATION_CLAUSES)
}

/// "on the floor [[…]]".
fn write_relation_clause(out: &mut String, r: &Relation, o: &Entity, g: Grounding) {
    let phrase = r.predicate.phrase();
    if r.predicate == Predicate::LargerThan {
        put(out, format_args!("{phrase} {}", Mention { g, e: o, phrase: format_args!("the other {}", o.tag) }));
    } else {
        put(out, format_args!("{phrase} {}", Mention { g, e: o, phrase: format_args!("the {}", o.tag) }));
    }
}

/// "a brown dog [[…]]" for a lone thing, "three horses [[…]], [[…]] and [[…]]" for a group.
fn write_group_phrase(out: &mut String, group: &[(usize, usize, &Entity)], g: Grounding) {
    let Some(&(_, _, first)) = group.first() else { return };
    if group.len() == 1 {
        let d = Described { e: first, with_size: false };
        put(out, format_args!("{}", Mention { g, e: first, phrase: format_args!("{} {d}", article(d.first_word())) }));
    } else {
        write_group(out, group, format_args!("{} {}", NumberWord(group.len()), Plural(&first.tag)), g);
    }
}

/// A group said as `phrase` with each member grounded (what `Grounding::group` returns).
fn write_group(out: &mut String, group: &[(usize, usize, &Entity)], phrase: std::fmt::Arguments<'_>, g: Grounding) {
    let n = group.len();
    match g {
        Grounding::Box => {
            put(out, format_args!("{phrase} "));
            for (i, &(_, _, e)) in group.iter().enumerate() {
                separate(out, i, n);
                put(out, format_args!("{}", BoxText(e)));
            }
        }
        Grounding::SegmentId => {
            put(out, format_args!("{phrase} ("));
            for (i, &(_, _, e)) in group.iter().enumerate() {
                separate(out, i, n);
                put(out, format_args!("{}", Mention { g, e, phrase: &e.tag }));
            }
            out.push(')');
        }
    }
}

/// Where a group lies, by the rows its members occupy (what `spread` returns).
fn write_spread(out: &mut String, group: &[(usize, usize, &Entity)]) {
    let mut rows = [false; 3];
    for &(_, _, e) in group {
        if let Some(r) = rows.get_mut(usize::from(e.attributes.position.row().min(2))) {
            *r = true;
        }
    }
    let n = rows.iter().filter(|r| **r).count();
    if n == 3 {
        out.push_str("all over the frame");
        return;
    }
    out.push_str("across the ");
    for (i, word) in ["top", "middle", "bottom"].iter().zip(rows).filter(|(_, on)| *on).map(|(w, _)| w).enumerate() {
        separate(out, i, n);
        out.push_str(word);
    }
    out.push_str(" of the frame");
}

/// One thing's sentence (what `thing_sentence` returns): its mention led by `lead`, what it reads, where it is
/// and its relations.
fn write_thing_sentence(out: &mut String, e: &Entity, lead: std::fmt::Arguments<'_>, entities: &[Entity], relations: &[Relation], g: Grounding) {
    put(out, format_args!("{}", Mention { g, e, phrase: lead }));
    if let Some(t) = e.attributes.text.as_ref() {
        if e.tag == "person" {
            put(out, format_args!(", wearing the words '{}',", t.text));
        } else {
            put(out, format_args!(", reading '{}',", t.text));
        }
    }
    out.push_str(" is ");
    let n = 1 + relation_objects(e, entities, relations).count();
    if let Some(w) = posture_word(e, relations) {
        put(out, format_args!("{w} "));
    }
    put(out, format_args!("in the {} of the frame", e.attributes.position.phrase()));
    for (k, (r, o)) in relation_objects(e, entities, relations).enumerate() {
        separate(out, k + 1, n);
        write_relation_clause(out, r, o, g);
    }
    out.push('.');
}

/// The global state's sentence (what `global_sentence` returns).
fn write_global_sentence(out: &mut String, g: &GlobalState) {
    let setting = match g.setting {
        Setting::Indoor => "indoor ",
        Setting::Outdoor => "outdoor ",
        Setting::Unknown => "",
    };
    let scene = match g.scene.phrase() {
        Some(p) if g.scene != SceneType::Unknown => p,
        _ => "scene",
    };
    let (lighting, crowd) = (lighting_phrase(g.lighting), crowd_phrase(g.crowdedness));
    if g.setting == Setting::Unknown && g.scene == SceneType::Unknown {
        put(out, format_args!("Overall, the scene is {lighting}, with {crowd}."));
        return;
    }
    let first = if setting.is_empty() { scene } else { setting };
    put(out, format_args!("Overall, this is {} {setting}{scene}, {lighting}, with {crowd}.", article(first)));
}

/// The paragraph writer before `write_caption_into` (2026-12-02): each phrase a String, joined. Kept as the
/// reference the streaming writer is held byte-equal to.
#[cfg(test)]
mod by_parts {
    use super::*;
    use crate::scene::Position;
    use std::collections::BTreeMap;

    pub(super) fn capitalise(s: &str) -> String {
        // a segment-id mention "<3: the sky>" capitalises its phrase
        if let Some(rest) = s.strip_prefix('<') {
            if let Some((id, phrase)) = rest.split_once(": ") {
                return format!("<{id}: {}", capitalise(phrase));
            }
        }
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => String::new(),
        }
    }

    /// The determiner-less noun phrase for one thing: "large brown dog".
    pub(super) fn describe(e: &Entity, with_size: bool) -> String {
        let mut words = Vec::new();
        if with_size && e.attributes.size != SizeClass::Medium {
            words.push(e.attributes.size.as_str().to_string());
        }
        if let Some(c) = e.attributes.colour {
            // "orange orange" says nothing: a colour that names the thing itself is left out
            if !e.tag.split(' ').any(|w| w == c.name.as_str()) {
                words.push(c.phrase());
            }
        }
        words.push(e.tag.to_string());
        words.join(" ")
    }


    /// What the text on an entity says, as a participle clause: "reading 'STOP'" (a person's text is on what they
    /// wear).
    pub(super) fn reading_clause(e: &Entity) -> Option<String> {
        let t = e.attributes.text.as_ref()?;
        Some(if e.tag == "person" { format!("wearing the words '{}'", t.text) } else { format!("reading '{}'", t.text) })
    }

    pub(super) fn where_in_frame(p: Position) -> String {
        format!("in the {} of the frame", p.phrase())
    }

    /// The main relation of `e` for its region caption: an action it takes part in first, then its strongest
    /// relation as subject (relations come strongest first per entity).
    pub(super) fn main_relation(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>) -> Option<String> {
        let as_subject = |r: &&Relation| r.subject == e.id;
        let action = relations.iter().find(|r| as_subject(r) && r.kind == RelationKind::Action);
        if let Some(o) = action.and_then(|r| by_id.get(&r.object).map(|o| (r, o))) {
            return Some(format!("{} {} {}", o.0.predicate.phrase(), article(&o.1.tag), o.1.tag));
        }
        if let Some((r, verb)) = relations.iter().filter(|r| r.object == e.id).find_map(|r| Some((r, passive_verb(r.predicate)?))) {
            return by_id.get(&r.subject).map(|s| format!("{verb} {} {}", article(&s.tag), s.tag));
        }
        let r = relations.iter().find(as_subject)?;
        let o = by_id.get(&r.object)?;
        let noun = if r.predicate == Predicate::LargerThan { format!("other {}", o.tag) } else { format!("the {}", o.tag) };
        Some(format!("{} {noun}", r.predicate.phrase()))
    }

    /// One short region caption per entity (Pix2Cap style): tag with size and colour, where it is in the frame,
    /// and its main relation. Plain text: the entity's mask and box ground it.
    pub(super) fn region_caption(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>) -> String {
        let d = if e.kind == Kind::Thing {
            describe(e, true)
        } else {
            match e.attributes.colour {
                Some(c) => format!("{} {}", c.phrase(), e.tag),
                None => e.tag.to_string(),
            }
        };
        let lead = if e.kind == Kind::Thing { format!("{} {d}", article(&d)) } else { format!("the {d}") };
        let place = where_in_frame(e.attributes.position);
        let mut out = match posture_word(e, relations) {
            Some(w) => format!("{} {w} {place}", capitalise(&lead)),
            None => format!("{} {place}", capitalise(&lead)),
        };
        if let Some(r) = reading_clause(e) {
            out.push_str(", ");
            out.push_str(&r);
        }
        if let Some(r) = main_relation(e, relations, by_id) {
            out.push_str(", ");
            out.push_str(&r);
        }
        out.push('.');
        out
    }

    /// Region captions of every entity, in entity order.
    pub(super) fn region_captions(entities: &[Entity], relations: &[Relation]) -> Vec<String> {
        let by_id: BTreeMap<u32, &Entity> = entities.iter().map(|e| (e.id, e)).collect();
        entities.iter().map(|e| region_caption(e, relations, &by_id)).collect()
    }

    impl Grounding {
        /// One grounded mention of `e`, said as `phrase`.
        pub(super) fn mention(self, e: &Entity, phrase: &str) -> String {
            match self {
                Grounding::Box => format!("{phrase} {}", e.box_text()),
                Grounding::SegmentId => format!("<{}: {phrase}>", e.id),
            }
        }

        /// A group said as `phrase` ("three horses") with each member grounded.
        pub(super) fn group(self, group: &[&Entity], phrase: &str) -> String {
            match self {
                Grounding::Box => format!("{phrase} {}", join_and(&group.iter().map(|e| e.box_text()).collect::<Vec<_>>())),
                Grounding::SegmentId => {
                    let each: Vec<String> = group.iter().map(|e| self.mention(e, &e.tag)).collect();
                    format!("{phrase} ({})", join_and(&each))
                }
            }
        }
    }


    /// "A, B and C".
    pub(super) fn join_and(items: &[String]) -> String {
        match items {
            [] => String::new(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        }
    }


    pub(super) fn relation_clauses(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>, g: Grounding) -> Vec<String> {
        relations
            .iter()
            .filter(|r| r.subject == e.id)
            .filter_map(|r| {
                let o = by_id.get(&r.object)?;
                let noun = if r.predicate == Predicate::LargerThan { format!("other {}", o.tag) } else { o.tag.to_string() };
                Some(format!("{} {}", r.predicate.phrase(), g.mention(o, &format!("the {noun}"))))
            })
            .take(MAX_RELATION_CLAUSES)
            .collect()
    }

    pub(super) fn group_phrase(group: &[&Entity], g: Grounding) -> String {
        let Some(first) = group.first() else { return String::new() };
        if group.len() == 1 {
            let d = describe(first, false);
            g.mention(first, &format!("{} {d}", article(&d)))
        } else {
            g.group(group, &format!("{} {}", number_word(group.len()), plural(&first.tag)))
        }
    }

    /// Where a group lies, by the rows and sides its members occupy.
    pub(super) fn spread(group: &[&Entity]) -> String {
        let rows: std::collections::BTreeSet<u8> = group.iter().map(|e| e.attributes.position.row()).collect();
        let row_word = |r: u8| match r {
            0 => "top",
            1 => "middle",
            _ => "bottom",
        };
        let words: Vec<String> = rows.iter().map(|r| row_word(*r).to_string()).collect();
        if rows.len() == 3 {
            "all over the frame".into()
        } else {
            format!("across the {} of the frame", join_and(&words))
        }
    }


    pub(super) fn thing_sentence(e: &Entity, lead: &str, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>, g: Grounding) -> String {
        let place = where_in_frame(e.attributes.position);
        let mut parts = vec![match posture_word(e, relations) {
            Some(w) => format!("{w} {place}"),
            None => place,
        }];
        parts.extend(relation_clauses(e, relations, by_id, g));
        let reading = reading_clause(e).map(|r| format!(", {r},")).unwrap_or_default();
        format!("{}{reading} is {}.", g.mention(e, lead), join_and(&parts))
    }


    pub(super) fn global_sentence(g: &GlobalState) -> String {
        let setting = match g.setting {
            Setting::Indoor => "indoor ",
            Setting::Outdoor => "outdoor ",
            Setting::Unknown => "",
        };
        let scene = match (g.scene.phrase(), g.setting) {
            (Some(p), _) if g.scene != SceneType::Unknown => p.to_string(),
            _ => "scene".to_string(),
        };
        if g.setting == Setting::Unknown && g.scene == SceneType::Unknown {
            return format!("Overall, the scene is {}, with {}.", lighting_phrase(g.lighting), crowd_phrase(g.crowdedness));
        }
        let what = format!("{setting}{scene}");
        format!(
            "Overall, this is {} {what}, {}, with {}.",
            article(&what),
            lighting_phrase(g.lighting),
            crowd_phrase(g.crowdedness)
        )
    }


    /// Writes the caption paragraph with the given grounding of mentions.
    pub(super) fn write_caption_grounded(entities: &[Entity], relations: &[Relation], global: &GlobalState, g: Grounding) -> String {
        let by_id: BTreeMap<u32, &Entity> = entities.iter().map(|e| (e.id, e)).collect();
        let mut things: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Thing).collect();
        things.sort_by(|a, b| importance(b).total_cmp(&importance(a)).then(a.id.cmp(&b.id)));
        let mut stuff: Vec<&Entity> = entities.iter().filter(|e| e.kind == Kind::Stuff).collect();
        stuff.sort_by(|a, b| b.attributes.area_fraction.total_cmp(&a.attributes.area_fraction).then(a.id.cmp(&b.id)));

        // groups of the same tag, ordered by their most important member
        let mut groups: Vec<Vec<&Entity>> = Vec::new();
        for t in &things {
            match groups.iter_mut().find(|g| g.first().is_some_and(|f| f.tag == t.tag)) {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }

        let mut sentences: Vec<String> = Vec::new();
        // 1. overview
        let thing_list: Vec<String> = groups.iter().map(|group| group_phrase(group, g)).collect();
        let stuff_list: Vec<String> = stuff.iter().map(|s| g.mention(s, &format!("the {}", s.tag))).collect();
        match (thing_list.is_empty(), stuff_list.is_empty()) {
            (true, true) => sentences.push("The image shows no recognisable objects or regions.".into()),
            (false, true) => sentences.push(format!("The image shows {}.", join_and(&thing_list))),
            (true, false) => sentences.push(format!("The image shows {}.", join_and(&stuff_list))),
            (false, false) => sentences.push(format!(
                "The image shows {}, with {} around them.",
                join_and(&thing_list),
                join_and(&stuff_list)
            )),
        }

        // 2. things, group by group
        for group in &groups {
            let Some(first) = group.first() else { continue };
            if group.len() == 1 {
                let d = describe(first, true);
                sentences.push(thing_sentence(first, &capitalise(&format!("the {d}")), relations, &by_id, g));
                continue;
            }
            let phrase = format!("The {} {}", number_word(group.len()), plural(&first.tag));
            sentences.push(format!("{} are spread {}.", g.group(group, &phrase), spread(group)));
            for (i, e) in group.iter().take(MAX_DESCRIBED_PER_GROUP).enumerate() {
                let d = describe(e, true);
                let lead = if i == 0 { format!("One {d}") } else { format!("Another {d}") };
                sentences.push(thing_sentence(e, &lead, relations, &by_id, g));
            }
        }

        // 3. stuff
        let stuff_clauses: Vec<String> = stuff
            .iter()
            .map(|s| {
                let name = match s.attributes.colour {
                    Some(c) => format!("{} {}", c.phrase(), s.tag),
                    None => s.tag.to_string(),
                };
                let verb = if s.attributes.area_fraction >= 0.2 { "covers" } else { "lies at" };
                let mut clause = format!("{} {verb} the {}", g.mention(s, &format!("the {name}")), s.attributes.position.phrase());
                let rel = relation_clauses(s, relations, &by_id, g);
                if !rel.is_empty() {
                    clause.push_str(&format!(", {}", join_and(&rel)));
                }
                clause
            })
            .collect();
        if !stuff_clauses.is_empty() {
            sentences.push(format!("{}.", capitalise(&stuff_clauses.join("; "))));
        }

        // 4. global state
        sentences.push(global_sentence(global));
        sentences.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Position;
    use crate::scene::{ColourAttr, ColourName};

    fn ent(id: u32, tag: &str, kind: Kind, area: f32, pos: Position, norm: [f64; 4]) -> Entity {
        let mut e = crate::scene::test_entity(id, tag, kind, [0.0; 4], area, pos);
        e.box_norm = norm;
        e.attributes.colour = Some(ColourAttr { name: ColourName::Brown, fraction: 0.6, secondary: None });
        e
    }

    fn global() -> GlobalState {
        GlobalState {
            lighting: Lighting::Bright,
            brightness: 0.7,
            setting: Setting::Outdoor,
            crowdedness: Crowdedness::Sparse,
            thing_count: 3,
            scene: SceneType::Field,
        }
    }

    #[test]
    fn a_colour_naming_the_thing_is_left_out() {
        let mut e = ent(1, "orange", Kind::Thing, 0.01, Position::Centre, [0.0; 4]);
        e.attributes.colour = Some(ColourAttr { name: ColourName::Orange, fraction: 0.9, secondary: None });
        assert_eq!(Described { e: &e, with_size: false }.to_string(), "orange");
        e.tag = "apple".into();
        assert_eq!(Described { e: &e, with_size: false }.to_string(), "orange apple");
    }

    #[test]
    fn words() {
        assert_eq!(plural("person"), "people");
        assert_eq!(plural("bus"), "buses");
        assert_eq!(plural("wine glass"), "wine glasses");
        assert_eq!(plural("sandwich"), "sandwiches");
        assert_eq!(plural("teddy bear"), "teddy bears");
        assert_eq!(plural("skis"), "skis");
        assert_eq!(article("orange cat"), "an");
        assert_eq!(article("brown dog"), "a");
        assert_eq!(number_word(3), "three");
        assert_eq!(number_word(20), "20");
    }

    #[test]
    fn plurals_are_aggregated_with_every_box() {
        let es = vec![
            ent(1, "horse", Kind::Thing, 0.2, Position::Left, [0.0, 0.4, 0.5, 0.9]),
            ent(2, "horse", Kind::Thing, 0.1, Position::Centre, [0.4, 0.4, 0.7, 0.8]),
            ent(3, "horse", Kind::Thing, 0.05, Position::Right, [0.7, 0.4, 0.9, 0.7]),
            ent(4, "sky", Kind::Stuff, 0.3, Position::Top, [0.0, 0.0, 1.0, 0.4]),
        ];
        let c = write_caption(&es, &[], &global());
        assert!(
            c.starts_with(
                "The image shows three horses [[0.000, 0.400, 0.500, 0.900]], [[0.400, 0.400, 0.700, 0.800]] and \
                 [[0.700, 0.400, 0.900, 0.700]], with the sky [[0.000, 0.000, 1.000, 0.400]] around them."
            ),
            "{c}"
        );
        assert!(c.contains("across the middle of the frame"), "{c}");
        assert!(c.contains("The brown sky [[0.000, 0.000, 1.000, 0.400]] covers the top"), "{c}");
        assert!(c.ends_with("Overall, this is an outdoor open field, brightly lit, with only a few objects in view."), "{c}");
    }

    #[test]
    fn every_tag_mention_is_followed_by_a_box() {
        let es = vec![
            ent(1, "dog", Kind::Thing, 0.2, Position::BottomLeft, [0.1, 0.4, 0.4, 0.9]),
            ent(2, "bicycle", Kind::Thing, 0.3, Position::Centre, [0.1, 0.2, 0.7, 0.7]),
            ent(3, "floor", Kind::Stuff, 0.3, Position::Bottom, [0.0, 0.6, 1.0, 1.0]),
        ];
        let rel = vec![
            Relation::new(1, Predicate::OnTopOf, 3),
            Relation::new(1, Predicate::Overlapping, 2),
        ];
        let c = write_caption(&es, &rel, &global());
        assert!(c.contains("The large brown dog [[0.100, 0.400, 0.400, 0.900]] is in the bottom left of the frame, on the floor [[0.000, 0.600, 1.000, 1.000]] and overlapping the bicycle [[0.100, 0.200, 0.700, 0.700]]."), "{c}");
        for tag in ["dog", "bicycle", "floor"] {
            for (i, _) in c.match_indices(tag) {
                let rest = &c[i + tag.len()..];
                assert!(rest.trim_start().starts_with("[["), "mention of {tag} without a box: …{rest}");
            }
        }
    }

    #[test]
    fn text_on_an_entity_is_read_out_after_its_box() {
        let mut sign = ent(1, "stop sign", Kind::Thing, 0.02, Position::Top, [0.4, 0.1, 0.5, 0.2]);
        sign.attributes.colour = Some(ColourAttr { name: ColourName::Red, fraction: 0.7, secondary: None });
        sign.attributes.text = Some(crate::scene::TextAttr {
            text: heapless::String::try_from("STOP").unwrap(),
            score: 0.99,
            lines: 1,
            truncated: false,
        });
        let mut shirt = ent(2, "person", Kind::Thing, 0.2, Position::Left, [0.0, 0.2, 0.3, 0.9]);
        shirt.attributes.text = sign.attributes.text.clone();
        let es = vec![sign, shirt];
        let c = write_caption(&es, &[], &global());
        assert!(c.contains("The small red stop sign [[0.400, 0.100, 0.500, 0.200]], reading 'STOP', is in the top of the frame."), "{c}");
        assert!(c.contains("[[0.000, 0.200, 0.300, 0.900]], wearing the words 'STOP', is"), "{c}");
        assert_eq!(region_caption(&es[0], &es, &[]), "A small red stop sign in the top of the frame, reading 'STOP'.");
    }

    const TAGS: [&str; 12] =
        ["person", "dog", "orange", "wine glass", "bus", "sky", "grass", "teddy bear", "shelf", "sandwich", "toy", "brown bear"];
    const PREDICATES: [Predicate; 6] =
        [Predicate::LeftOf, Predicate::OnTopOf, Predicate::LargerThan, Predicate::SittingOn, Predicate::Riding, Predicate::NextTo];
    const POSITIONS: [Position; 9] = [
        Position::TopLeft,
        Position::Top,
        Position::TopRight,
        Position::Left,
        Position::Centre,
        Position::Right,
        Position::BottomLeft,
        Position::Bottom,
        Position::BottomRight,
    ];

    proptest::proptest! {
        /// The streaming writer says, byte for byte, what the writer of joined phrases said, over scenes with
        /// groups (up to 14 of a tag: past the number words and the described members), stuff, colours that
        /// name the thing, text, postures, relations to known and unknown ids, both groundings and every
        /// global state; and a kept String gives the same paragraph again.
        #[test]
        fn the_streaming_writer_says_what_the_joined_phrases_said(
            raw in proptest::collection::vec(
                (0usize..12, proptest::bool::ANY, 0.0f32..0.6, 0usize..9, 0usize..13, 0usize..5, 0usize..3, 0.3f32..1.0),
                0..18,
            ),
            rels in proptest::collection::vec((0u32..20, 0usize..6, 0u32..20), 0..24),
            many in 0usize..14,
            global_raw in (0usize..4, 0usize..3, 0usize..4, proptest::bool::ANY),
        ) {
            let mut es: Vec<Entity> = Vec::new();
            for (i, &(tag, stuff, area, pos, colour, text, posture, score)) in raw.iter().enumerate() {
                let kind = if stuff { Kind::Stuff } else { Kind::Thing };
                let p = POSITIONS.get(pos).copied().unwrap_or(Position::Centre);
                let f = i as f64 / 20.0;
                let mut e = crate::scene::test_entity(i as u32 + 1, TAGS.get(tag).copied().unwrap_or("dog"), kind, [0.0; 4], area, p);
                e.box_norm = [f, f / 2.0, f + 0.1234, 0.98765 - f / 3.0];
                e.score = score;
                e.attributes.colour = ColourName::ALL.get(colour).map(|&name| ColourAttr {
                    name,
                    fraction: 0.5,
                    secondary: (colour % 3 == 0).then_some(ColourName::White),
                });
                e.attributes.text = match text {
                    1 => Some(crate::scene::TextAttr { text: heapless::String::try_from("STOP").unwrap(), score: 0.9, lines: 1, truncated: false }),
                    _ => None,
                };
                e.attributes.posture = match posture {
                    1 => Some(crate::scene::pose::PostureAttr { posture: crate::scene::pose::Posture::Standing, evidence: Default::default() }),
                    2 => Some(crate::scene::pose::PostureAttr { posture: crate::scene::pose::Posture::Unknown, evidence: Default::default() }),
                    _ => None,
                };
                es.push(e);
            }
            // a crowd of one tag, equal in importance to each other (ties broken by id)
            for k in 0..many {
                let id = 100 + k as u32;
                let mut e = crate::scene::test_entity(id, "sheep", Kind::Thing, [0.0; 4], 0.01, POSITIONS.get(k % 9).copied().unwrap_or(Position::Top));
                e.box_norm = [0.5, 0.25, 0.75, 0.5];
                es.push(e);
            }
            let relations: Vec<Relation> = rels
                .iter()
                .map(|&(s, p, o)| Relation::new(s, PREDICATES.get(p).copied().unwrap_or(Predicate::NextTo), if o == 19 { 100 } else { o }))
                .collect();
            let (lighting, setting, crowd, field) = global_raw;
            let global = GlobalState {
                lighting: [Lighting::Dark, Lighting::Dim, Lighting::WellLit, Lighting::Bright].get(lighting).copied().unwrap_or(Lighting::Dim),
                setting: [Setting::Indoor, Setting::Outdoor, Setting::Unknown].get(setting).copied().unwrap_or(Setting::Unknown),
                crowdedness: [Crowdedness::Empty, Crowdedness::Sparse, Crowdedness::Moderate, Crowdedness::Crowded].get(crowd).copied().unwrap_or(Crowdedness::Sparse),
                scene: if field { SceneType::Field } else { SceneType::Unknown },
                ..global()
            };
            let mut kept = String::from("left over from the frame before");
            for g in [Grounding::Box, Grounding::SegmentId] {
                let want = by_parts::write_caption_grounded(&es, &relations, &global, g);
                proptest::prop_assert_eq!(&write_caption_grounded(&es, &relations, &global, g), &want);
                write_caption_into(&mut kept, &es, &relations, &global, g);
                proptest::prop_assert_eq!(&kept, &want);
            }
            proptest::prop_assert_eq!(region_captions(&es, &relations), by_parts::region_captions(&es, &relations));
        }
    }

    #[test]
    fn empty_scene_says_so() {
        let g = GlobalState { crowdedness: Crowdedness::Empty, thing_count: 0, scene: SceneType::Unknown, setting: Setting::Unknown, ..global() };
        let c = write_caption(&[], &[], &g);
        assert_eq!(c, "The image shows no recognisable objects or regions. Overall, the scene is brightly lit, with no distinct objects in view.");
    }
}

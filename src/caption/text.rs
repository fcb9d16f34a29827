//! Scene graph → grounded caption text in the SA-Pancap style (PancapChain stage 4 analogue).
//! Deterministic, and grounded: every mention of an entity is followed by its normalised box, and nothing is
//! said that the scene graph does not hold.

use crate::scene::{
    Crowdedness, Entity, GlobalState, Kind, Lighting, Position, Predicate, Relation, RelationKind, SceneType, Setting,
    SizeClass,
};
use std::collections::BTreeMap;

/// How a caption grounds its mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounding {
    /// SA-Pancap: the phrase followed by the normalised box, `a dog [[0.1, 0.2, 0.5, 0.9]]`.
    Box,
    /// COCONut-PanCap: the phrase inside its segment id, `<3: a dog>`; the ids are the segment ids of the
    /// panoptic PNG written beside the caption (entity ids).
    SegmentId,
}

impl Grounding {
    /// One grounded mention of `e`, said as `phrase`.
    fn mention(self, e: &Entity, phrase: &str) -> String {
        match self {
            Grounding::Box => format!("{phrase} {}", e.box_text()),
            Grounding::SegmentId => format!("<{}: {phrase}>", e.id),
        }
    }

    /// A group said as `phrase` ("three horses") with each member grounded.
    fn group(self, group: &[&Entity], phrase: &str) -> String {
        match self {
            Grounding::Box => format!("{phrase} {}", join_and(&group.iter().map(|e| e.box_text()).collect::<Vec<_>>())),
            Grounding::SegmentId => {
                let each: Vec<String> = group.iter().map(|e| self.mention(e, &e.tag)).collect();
                format!("{phrase} ({})", join_and(&each))
            }
        }
    }
}

/// Most instances described one by one within a group; the rest are still mentioned in the group's sentence.
const MAX_DESCRIBED_PER_GROUP: usize = 4;
/// Most relation clauses attached to one entity's sentence.
const MAX_RELATION_CLAUSES: usize = 2;

pub fn number_word(n: usize) -> String {
    const W: [&str; 13] =
        ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    W.get(n).map(|s| s.to_string()).unwrap_or_else(|| n.to_string())
}

/// English plural of a COCO / ADE20K tag.
pub fn plural(tag: &str) -> String {
    match tag {
        "person" => return "people".into(),
        "mouse" => return "mice".into(),
        "sheep" | "skis" | "scissors" | "grass" => return tag.into(),
        "knife" => return "knives".into(),
        "shelf" => return "shelves".into(),
        _ => {}
    }
    // multi-word tags pluralise their last word
    if let Some((head, last)) = tag.rsplit_once(' ') {
        return format!("{head} {}", plural(last));
    }
    if tag.ends_with('s') || tag.ends_with("sh") || tag.ends_with("ch") || tag.ends_with('x') {
        format!("{tag}es")
    } else if tag.ends_with('y') && !tag.ends_with("ey") && !tag.ends_with("ay") && !tag.ends_with("oy") {
        format!("{}ies", &tag[..tag.len() - 1])
    } else {
        format!("{tag}s")
    }
}

/// "a" or "an" for the phrase that follows.
pub fn article(phrase: &str) -> &'static str {
    match phrase.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn capitalise(s: &str) -> String {
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

/// "A, B and C".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The determiner-less noun phrase for one thing: "large brown dog".
fn describe(e: &Entity, with_size: bool) -> String {
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
    words.push(e.tag.clone());
    words.join(" ")
}

/// What the text on an entity says, as a participle clause: "reading 'STOP'" (a person's text is on what they
/// wear).
pub fn reading_clause(e: &Entity) -> Option<String> {
    let t = e.attributes.text.as_ref()?;
    Some(if e.tag == "person" { format!("wearing the words '{}'", t.text) } else { format!("reading '{}'", t.text) })
}

fn where_in_frame(p: Position) -> String {
    format!("in the {} of the frame", p.phrase())
}

fn relation_clauses(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>, g: Grounding) -> Vec<String> {
    relations
        .iter()
        .filter(|r| r.subject == e.id)
        .filter_map(|r| {
            let o = by_id.get(&r.object)?;
            let noun = if r.predicate == Predicate::LargerThan { format!("other {}", o.tag) } else { o.tag.clone() };
            Some(format!("{} {}", r.predicate.phrase(), g.mention(o, &format!("the {noun}"))))
        })
        .take(MAX_RELATION_CLAUSES)
        .collect()
}

fn group_phrase(group: &[&Entity], g: Grounding) -> String {
    let Some(first) = group.first() else { return String::new() };
    if group.len() == 1 {
        let d = describe(first, false);
        g.mention(first, &format!("{} {d}", article(&d)))
    } else {
        g.group(group, &format!("{} {}", number_word(group.len()), plural(&first.tag)))
    }
}

/// Where a group lies, by the rows and sides its members occupy.
fn spread(group: &[&Entity]) -> String {
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

/// The posture word said of a person ("standing"), unless an action of theirs already says it (sitting on,
/// lying on) or it is unknown.
fn posture_word(e: &Entity, relations: &[Relation]) -> Option<&'static str> {
    let word = e.attributes.posture?.posture.word()?;
    let said = relations
        .iter()
        .any(|r| r.subject == e.id && matches!(r.predicate, Predicate::SittingOn | Predicate::LyingOn | Predicate::Riding));
    (!said).then_some(word)
}

fn thing_sentence(e: &Entity, lead: &str, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>, g: Grounding) -> String {
    let place = where_in_frame(e.attributes.position);
    let mut parts = vec![match posture_word(e, relations) {
        Some(w) => format!("{w} {place}"),
        None => place,
    }];
    parts.extend(relation_clauses(e, relations, by_id, g));
    let reading = reading_clause(e).map(|r| format!(", {r},")).unwrap_or_default();
    format!("{}{reading} is {}.", g.mention(e, lead), join_and(&parts))
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

fn global_sentence(g: &GlobalState) -> String {
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

fn importance(e: &Entity) -> f32 {
    e.attributes.area_fraction.sqrt() * e.score
}

/// The main relation of `e` for its region caption: an action it takes part in first, then its strongest
/// relation as subject (relations come strongest first per entity).
fn main_relation(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>) -> Option<String> {
    let as_subject = |r: &&Relation| r.subject == e.id;
    let action = relations.iter().find(|r| as_subject(r) && r.kind == RelationKind::Action);
    if let Some(o) = action.and_then(|r| by_id.get(&r.object).map(|o| (r, o))) {
        return Some(format!("{} {} {}", o.0.predicate.phrase(), article(&o.1.tag), o.1.tag));
    }
    let passive = |p: Predicate| match p {
        Predicate::Riding => Some("ridden by"),
        Predicate::Holding => Some("held by"),
        Predicate::Carrying => Some("carried by"),
        _ => None,
    };
    if let Some((r, verb)) = relations.iter().filter(|r| r.object == e.id).find_map(|r| Some((r, passive(r.predicate)?))) {
        return by_id.get(&r.subject).map(|s| format!("{verb} {} {}", article(&s.tag), s.tag));
    }
    let r = relations.iter().find(as_subject)?;
    let o = by_id.get(&r.object)?;
    let noun = if r.predicate == Predicate::LargerThan { format!("other {}", o.tag) } else { format!("the {}", o.tag) };
    Some(format!("{} {noun}", r.predicate.phrase()))
}

/// One short region caption per entity (Pix2Cap style): tag with size and colour, where it is in the frame,
/// and its main relation. Plain text: the entity's mask and box ground it.
pub fn region_caption(e: &Entity, relations: &[Relation], by_id: &BTreeMap<u32, &Entity>) -> String {
    let d = if e.kind == Kind::Thing {
        describe(e, true)
    } else {
        match e.attributes.colour {
            Some(c) => format!("{} {}", c.phrase(), e.tag),
            None => e.tag.clone(),
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
pub fn region_captions(entities: &[Entity], relations: &[Relation]) -> Vec<String> {
    let by_id: BTreeMap<u32, &Entity> = entities.iter().map(|e| (e.id, e)).collect();
    entities.iter().map(|e| region_caption(e, relations, &by_id)).collect()
}

/// Writes the caption paragraph for an image's scene graph, SA-Pancap style (boxes).
pub fn write_caption(entities: &[Entity], relations: &[Relation], global: &GlobalState) -> String {
    write_caption_grounded(entities, relations, global, Grounding::Box)
}

/// Writes the caption paragraph with the given grounding of mentions.
pub fn write_caption_grounded(entities: &[Entity], relations: &[Relation], global: &GlobalState, g: Grounding) -> String {
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
                None => s.tag.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(describe(&e, false), "orange");
        e.tag = "apple".into();
        assert_eq!(describe(&e, false), "orange apple");
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
        let by_id: BTreeMap<u32, &Entity> = es.iter().map(|e| (e.id, e)).collect();
        assert_eq!(region_caption(&es[0], &[], &by_id), "A small red stop sign in the top of the frame, reading 'STOP'.");
    }

    #[test]
    fn empty_scene_says_so() {
        let g = GlobalState { crowdedness: Crowdedness::Empty, thing_count: 0, scene: SceneType::Unknown, setting: Setting::Unknown, ..global() };
        let c = write_caption(&[], &[], &g);
        assert_eq!(c, "The image shows no recognisable objects or regions. Overall, the scene is brightly lit, with no distinct objects in view.");
    }
}

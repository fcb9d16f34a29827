#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! PancapScore with its real databases: WordNet 3.0 nouns and all-MiniLM-L6-v2, both provisioned from the model
//! mirror by sha256 (no system package).

mod common;

use pancap::engine::BackendConfig;
use pancap::models::TextManifest;
use pancap::score::embed::{cosine, Embedder, WordPiece};
use pancap::score::wordnet::{self, WordNet};
use pancap::score::{score_image, Content, ScoredEntity, TagMatcher};

fn load_wordnet() -> WordNet {
    WordNet::load_provisioned(&common::models_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn manifest() -> TextManifest {
    TextManifest::by_name("all_minilm_l6_v2").unwrap().unwrap()
}

fn embedder() -> Embedder {
    Embedder::load(&manifest(), &common::models_dir(), &BackendConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn wordnet_synonyms_of_real_tags() {
    let wn = load_wordnet();
    let (car, automobile) = (wn.lemma_set("car"), wn.lemma_set("automobile"));
    assert!(car.contains("automobile") && automobile.contains("car"));
    let sofa_couch = wordnet::overlap(&wn.lemma_set("sofa"), &wn.lemma_set("couch"));
    assert!(sofa_couch > 0.0 && sofa_couch <= 1.0, "{sofa_couch}");
    // plurals through morphy, irregular ones through noun.exc
    assert_eq!(wn.morphy("mice"), vec!["mouse"]);
    assert!(wn.morphy("buses").contains(&"bus".to_string()));
    // a multi-word tag is looked up whole too
    assert!(wn.lemma_set("traffic light").contains("traffic signal"));
    assert_eq!(wordnet::overlap(&wn.lemma_set("giraffe"), &wn.lemma_set("toaster")), 0.0);
    // the same sets NLTK's WordNet reader gives (`wn.synsets(w, pos='n')` lemma names, on this database)
    let set = |t: &str| wn.lemma_set(t).into_iter().collect::<Vec<_>>();
    assert_eq!(set("couch"), ["couch", "lounge", "sofa"]);
    assert_eq!(set("mice"), ["black eye", "computer mouse", "mouse", "shiner"]);
    assert_eq!(set("tv").len(), 11);
}

#[test]
fn tokenizer_matches_the_reference_implementation() {
    // ids produced by Hugging Face `tokenizers` 0.22 from the same tokenizer.json, padding off
    let wp = WordPiece::from_tokenizer_json(&manifest().tokenizer_path(&common::models_dir())).unwrap();
    let cases: &[(&str, &[i64])] = &[
        ("traffic light", &[101, 4026, 2422, 102]),
        ("The new movie is awesome", &[101, 1996, 2047, 3185, 2003, 12476, 102]),
        ("Café naïve déjà-vu, unaffable!", &[101, 7668, 15743, 2139, 3900, 1011, 24728, 1010, 14477, 20961, 3468, 999, 102]),
        ("playingfield", &[101, 2652, 3790, 102]),
        ("wall-other-merged", &[101, 2813, 1011, 2060, 1011, 5314, 102]),
    ];
    for (text, ids) in cases {
        assert_eq!(wp.encode(text, 128), ids.to_vec(), "{text}");
    }
}

#[test]
fn embeddings_reproduce_published_similarities() {
    // sentence-transformers' own examples for all-MiniLM-L6-v2 (MODELS.md)
    let mut e = embedder();
    let mut sim = |a: &str, b: &str| cosine(&e.embed(a).unwrap(), &e.embed(b).unwrap());
    assert!((sim("The new movie is awesome", "The new movie is so great") - 0.8939).abs() < 2e-3);
    assert!((sim("The cat sits outside", "The dog plays in the garden") - 0.2838).abs() < 2e-3);
    assert!((sim("A man is playing guitar", "A woman watches TV") - -0.0327).abs() < 2e-3);
}

#[test]
fn all_three_tiers_order_the_costs() {
    let mut m = TagMatcher::new(Some(load_wordnet()), Some(embedder()));
    let tags = ["dog", "puppy", "automobile", "car", "sofa", "couch", "lamp", "sky", "woman", "man", "giraffe", "toaster"];
    m.prepare(tags).unwrap();
    assert_eq!(m.cost("dog", "dog"), Some(-1000.0));
    let car = m.cost("car", "automobile").unwrap();
    assert!((-100.0..0.0).contains(&car) && car < -10.0, "WordNet tier: {car}");
    assert_eq!(m.cost("woman", "man"), Some(-100.0), "containment is overlap 1.0");
    assert_eq!(m.cost("giraffe", "toaster"), None);
    let t = m.tiers();
    assert!(t.wordnet.is_some() && t.embedding.as_deref() == Some("all_minilm_l6_v2"));
    // a pair WordNet does not link but the embedding does lands in the third tier (−10·cos, cos ≥ 0.5)
    m.prepare(["puppy", "dog", "lawn", "grass"]).unwrap();
    assert_eq!(wordnet::overlap(&load_wordnet().lemma_set("lawn"), &load_wordnet().lemma_set("grass")), 0.0);
    let lawn = m.cost("lawn", "grass").expect("lawn and grass are linked by the embedding tier");
    assert!((-10.0..=-5.0).contains(&lawn), "embedding tier: {lawn}");
    // unrelated tags stay unlinked
    assert_eq!(m.cost("sky", "lamp"), None);
}

#[test]
fn a_caption_scored_against_itself_is_perfect_on_tag_and_location() {
    let text = "A brown dog [[0.1, 0.4, 0.4, 0.9]] lies on the green grass [[0.0, 0.6, 1.0, 1.0]], next to a red \
                bicycle [[0.4, 0.3, 0.8, 0.8]]. The sky [[0.0, 0.0, 1.0, 0.3]] is blue. It is a sunny outdoor scene.";
    let c = Content::from_text(text, None);
    let mut m = TagMatcher::new(Some(load_wordnet()), None);
    let s = score_image("x.jpg", &c, &c, &mut m).unwrap();
    assert_eq!((s.tag.f1, s.location.f1, s.attribute.f1, s.global.f1), (1.0, 1.0, 1.0, 1.0));
    assert_eq!(s.relation.f1, 1.0, "{:?}", c.relations);
    assert!((s.overall() - 410.0).abs() < 1e-9);
    // synonyms at every level: a different wording of the same scene still matches all entities
    let other = "A tan puppy [[0.11, 0.41, 0.41, 0.9]] is beside a red bike [[0.4, 0.3, 0.8, 0.8]] and on the lawn \
                 [[0.0, 0.6, 1.0, 1.0]]. Overhead the sky [[0.0, 0.0, 1.0, 0.3]] is blue.";
    let p = Content::from_text(other, None);
    // WordNet links bike and bicycle (overlap 0.8) besides the identical sky; puppy/dog and lawn/grass share
    // no lemma and need the embedding tier
    let s = score_image("x.jpg", &c, &p, &mut m).unwrap();
    assert_eq!(s.matched, 2, "{:?}", p.entities);
    let mut m = TagMatcher::new(Some(load_wordnet()), Some(embedder()));
    let s = score_image("x.jpg", &c, &p, &mut m).unwrap();
    assert_eq!(s.matched, 4, "{:?}", p.entities);
    assert_eq!(s.location.f1, 1.0);
    let _ = ScoredEntity { tag: String::new(), bbox: None };
}

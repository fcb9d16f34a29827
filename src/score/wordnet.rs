//! PancapScore's second tier: WordNet noun-synonym overlap between two tags, read from the WordNet 3.0 database
//! files (`index.noun`, `data.noun`, `noun.exc`) that `pancap models pull` provisions from the offline mirror
//! into `<models dir>/wordnet`, checked by sha256 at load (any other copy, e.g. Debian's `/usr/share/wordnet`,
//! can be named with `--wordnet`).
//!
//! The lemma set of a tag is the union, over every word of the tag, of the lemma names of every noun synset of
//! that word (after WordNet's own morphological reduction, "morphy": the exception list, then the noun suffix
//! rules, keeping forms the index knows). Multi-word tags are also looked up whole ("traffic light" →
//! `traffic_light`). The overlap of two tags is the Jaccard index of their lemma sets, and 1.0 when one tag
//! string contains the other. The authors' `eval_alldims.py` is not available offline; the Jaccard form is our
//! reading of "synonym overlap" and is documented as such in README.md.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WordNetError {
    #[error(
        "WordNet database not found: {0} is missing; provision it with `pancap models pull --from <mirror>` \
         (model wordnet_3_0_nouns) or point --wordnet / PANCAP_WORDNET at a directory holding index.noun, \
         data.noun and noun.exc"
    )]
    Missing(PathBuf),
    #[error("WordNet database: {0}")]
    Provision(#[from] crate::models::ProvisionError),
    #[error("WordNet database: {0}")]
    Manifest(#[from] crate::models::ManifestError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: {reason}")]
    Format { path: PathBuf, line: usize, reason: String },
}


/// The noun part of WordNet 3.0, in memory (~20 MB).
pub struct WordNet {
    dir: PathBuf,
    /// lemma (lower case, `_` for spaces) → byte offsets of its synsets in data.noun
    index: HashMap<String, Vec<usize>>,
    /// irregular plural → base forms
    exceptions: HashMap<String, Vec<String>>,
    data: Vec<u8>,
}

/// Noun suffix rules of WordNet's morphy, in its order.
const SUFFIXES: &[(&str, &str)] =
    &[("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y")];

fn read(path: &Path) -> Result<Vec<u8>, WordNetError> {
    if !path.is_file() {
        return Err(WordNetError::Missing(path.to_path_buf()));
    }
    std::fs::read(path).map_err(|source| WordNetError::Io { path: path.to_path_buf(), source })
}

impl WordNet {
    /// Loads the database `pancap models pull` provisioned into `models_dir`, after checking every file's
    /// sha256 against the embedded manifest.
    pub fn load_provisioned(models_dir: &Path) -> Result<WordNet, WordNetError> {
        let manifest = crate::models::DataManifest::wordnet()?;
        let dir = manifest.verified_dir(models_dir).map_err(|e| match e {
            crate::models::ProvisionError::Missing { path, .. } => WordNetError::Missing(path),
            e => WordNetError::Provision(e),
        })?;
        WordNet::load(&dir)
    }

    /// Loads `index.noun`, `data.noun` and `noun.exc` from `dir`.
    pub fn load(dir: &Path) -> Result<WordNet, WordNetError> {
        let index_path = dir.join("index.noun");
        let index_bytes = read(&index_path)?;
        let data = read(&dir.join("data.noun"))?;
        let exc_bytes = read(&dir.join("noun.exc"))?;
        let mut index = HashMap::new();
        for (n, line) in String::from_utf8_lossy(&index_bytes).lines().enumerate() {
            if line.starts_with(' ') || line.is_empty() {
                continue; // licence header
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let bad = |reason: &str| WordNetError::Format { path: index_path.clone(), line: n + 1, reason: reason.into() };
            let (Some(lemma), Some(synsets)) = (fields.first(), fields.get(2)) else {
                return Err(bad("fewer than 3 fields"));
            };
            let synsets: usize = synsets.parse().map_err(|_| bad("synset count is not a number"))?;
            let offsets = fields
                .get(fields.len().saturating_sub(synsets)..)
                .unwrap_or_default()
                .iter()
                .map(|o| o.parse::<usize>().map_err(|_| bad("synset offset is not a number")))
                .collect::<Result<Vec<_>, _>>()?;
            index.insert(lemma.to_string(), offsets);
        }
        let mut exceptions: HashMap<String, Vec<String>> = HashMap::new();
        for line in String::from_utf8_lossy(&exc_bytes).lines() {
            let mut words = line.split_ascii_whitespace();
            if let Some(inflected) = words.next() {
                exceptions.entry(inflected.to_string()).or_default().extend(words.map(str::to_string));
            }
        }
        Ok(WordNet { dir: dir.to_path_buf(), index, exceptions, data })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Base forms of a noun that the index knows (WordNet's morphy for nouns).
    pub fn morphy(&self, word: &str) -> Vec<String> {
        let word = word.to_lowercase();
        let mut candidates = vec![word.clone()];
        match self.exceptions.get(&word) {
            Some(bases) => candidates.extend(bases.iter().cloned()),
            None => {
                for (suffix, replacement) in SUFFIXES {
                    if let Some(stem) = word.strip_suffix(suffix) {
                        if !stem.is_empty() {
                            candidates.push(format!("{stem}{replacement}"));
                        }
                    }
                }
            }
        }
        let mut out: Vec<String> = Vec::new();
        for c in candidates {
            if self.index.contains_key(&c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Lemma names (lower case, spaces for `_`) of one data.noun synset.
    fn synset_lemmas(&self, offset: usize, into: &mut BTreeSet<String>) {
        let Some(rest) = self.data.get(offset..) else { return };
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut fields = line.split_ascii_whitespace();
        // offset, lex_filenum, ss_type, w_cnt (hex), then w_cnt pairs of (word, lex_id)
        let count = fields.nth(3).and_then(|c| usize::from_str_radix(c, 16).ok()).unwrap_or(0);
        for _ in 0..count {
            let (Some(word), Some(_lex_id)) = (fields.next(), fields.next()) else { break };
            // adjective markers like "(p)" never occur on nouns, but strip any parenthesised suffix anyway
            let word = word.split('(').next().unwrap_or(word);
            into.insert(word.replace('_', " ").to_lowercase());
        }
    }

    /// The noun lemma set of a tag: every lemma of every noun synset of each word, and of the whole tag.
    pub fn lemma_set(&self, tag: &str) -> BTreeSet<String> {
        let tag = tag.trim().to_lowercase();
        let words: Vec<&str> = tag.split(|c: char| !c.is_alphanumeric() && c != '-').filter(|w| !w.is_empty()).collect();
        let mut keys: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if words.len() > 1 {
            keys.push(words.join("_"));
        }
        let mut set = BTreeSet::new();
        for key in keys {
            for base in self.morphy(&key) {
                for &offset in self.index.get(&base).map(Vec::as_slice).unwrap_or_default() {
                    self.synset_lemmas(offset, &mut set);
                }
            }
        }
        set
    }
}

/// Overlap of two lemma sets: |A ∩ B| / |A ∪ B|, 0 when either is empty.
pub fn overlap(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    inter as f64 / union as f64
}

/// The WordNet tier's similarity of two tags: 1.0 when one tag string contains the other, else the overlap of
/// their lemma sets.
pub fn similarity(a: &str, la: &BTreeSet<String>, b: &str, lb: &BTreeSet<String>) -> f64 {
    let (a, b) = (a.trim().to_lowercase(), b.trim().to_lowercase());
    if !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a)) {
        return 1.0;
    }
    overlap(la, lb)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny database in WordNet's file format, so the reader is tested without the Debian package.
    fn tiny() -> (tempfile::TempDir, WordNet) {
        let dir = tempfile::tempdir().unwrap();
        let l1 = "00000000 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | a dog\n";
        let l2 = "00000066 05 n 02 man 0 adult_male 0 000 | a man\n";
        let off2 = l1.len();
        let l2 = l2.replacen("00000066", &format!("{off2:08}"), 1);
        let off3 = off2 + l2.len();
        let l3 = format!("{off3:08} 05 n 02 bus 0 autobus 0 000 | a bus\n");
        std::fs::write(dir.path().join("data.noun"), format!("{l1}{l2}{l3}")).unwrap();
        std::fs::write(
            dir.path().join("index.noun"),
            format!(
                "  1 licence header line\ndog n 1 0 1 0 00000000  \ndomestic_dog n 1 0 1 0 00000000  \nman n 1 0 1 0 {off2:08}  \nbus n 1 0 1 0 {off3:08}  \n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("noun.exc"), "men man\n").unwrap();
        let wn = WordNet::load(dir.path()).unwrap();
        (dir, wn)
    }

    #[test]
    fn morphy_uses_exceptions_and_suffix_rules() {
        let (_d, wn) = tiny();
        assert_eq!(wn.morphy("men"), vec!["man"]);
        assert_eq!(wn.morphy("dogs"), vec!["dog"]);
        assert_eq!(wn.morphy("buses"), vec!["bus"], "ses → s");
        assert!(wn.morphy("unicorns").is_empty());
    }

    #[test]
    fn lemma_sets_and_overlap() {
        let (_d, wn) = tiny();
        let dog = wn.lemma_set("dog");
        assert_eq!(dog, ["canis familiaris", "dog", "domestic dog"].iter().map(|s| s.to_string()).collect());
        let dd = wn.lemma_set("domestic dog");
        assert!(dd.is_superset(&dog));
        assert!((overlap(&dog, &wn.lemma_set("dogs")) - 1.0).abs() < 1e-12);
        assert_eq!(overlap(&dog, &wn.lemma_set("men")), 0.0);
        // "man" is contained in "woman": 1.0 without any synonym evidence
        assert_eq!(similarity("woman", &BTreeSet::new(), "man", &wn.lemma_set("man")), 1.0);
    }

    #[test]
    fn a_missing_database_names_the_fix() {
        let err = WordNet::load(Path::new("/nonexistent/wordnet")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("pancap models pull") && err.contains("index.noun"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let err = WordNet::load_provisioned(tmp.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("pancap models pull") && err.contains("wordnet/index.noun"), "{err}");
    }

    #[test]
    fn a_changed_provisioned_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let m = crate::models::DataManifest::wordnet().unwrap();
        for f in m.files() {
            let p = f.path_in(tmp.path());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "not the database").unwrap();
        }
        let err = WordNet::load_provisioned(tmp.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("sha256") && err.contains(&m.files[0].sha256), "{err}");
    }
}

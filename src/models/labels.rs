//! Label sets the models are trained on, embedded from models/labels/.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSet {
    /// The 80 COCO thing categories, official names, contiguous index 0..79.
    Coco80,
    /// ADE20K top-31 classes with 0 = "other".
    Ade20k32,
    /// A person segmenter's one class (COCO id 1).
    Person,
}

/// One label: its contiguous index, the dataset's own category id and its official name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub index: usize,
    pub dataset_id: u32,
    pub name: String,
}

pub struct Labels {
    labels: Vec<Label>,
}

impl Labels {
    pub fn get(&self, index: usize) -> Option<&Label> {
        self.labels.get(index)
    }

    pub fn name(&self, index: usize) -> &str {
        self.labels.get(index).map(|l| l.name.as_str()).unwrap_or("object")
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.name == name)
    }

    pub fn by_dataset_id(&self, id: u32) -> Option<&Label> {
        self.labels.iter().find(|l| l.dataset_id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }
}

/// Parses a label table: one label a line (`#` comments and blank lines aside), `ID NAME` where the table
/// carries dataset ids. A line without a numeric id, or with an empty name, is an error naming the line.
fn parse(text: &str, with_ids: bool) -> Result<Labels, String> {
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let index = labels.len();
        let label = if with_ids {
            let Some((id, name)) = line.split_once(' ') else {
                return Err(format!("line {n}: '{line}' is not 'ID NAME'"));
            };
            let dataset_id = id.parse().map_err(|_| format!("line {n}: '{id}' is not a numeric id"))?;
            Label { index, dataset_id, name: name.trim().to_string() }
        } else {
            Label { index, dataset_id: index as u32, name: line.to_string() }
        };
        if label.name.is_empty() {
            return Err(format!("line {n}: empty name"));
        }
        labels.push(label);
    }
    Ok(Labels { labels })
}

pub static COCO80: LabelTable =
    LabelTable { cell: OnceLock::new(), name: "coco80.txt", text: include_str!("../../models/labels/coco80.txt"), ids: true };
pub static PERSON: LabelTable =
    LabelTable { cell: OnceLock::new(), name: "person.txt", text: include_str!("../../models/labels/person.txt"), ids: true };
pub static ADE20K32: LabelTable =
    LabelTable { cell: OnceLock::new(), name: "ade20k32.txt", text: include_str!("../../models/labels/ade20k32.txt"), ids: false };

static EMPTY: Labels = Labels { labels: Vec::new() };

/// A lazily parsed, embedded label table.
pub struct LabelTable {
    cell: OnceLock<Result<Labels, String>>,
    name: &'static str,
    text: &'static str,
    ids: bool,
}

impl LabelTable {
    /// The parsed table, or the error naming its malformed line.
    pub fn check(&self) -> Result<&Labels, String> {
        self.cell.get_or_init(|| parse(self.text, self.ids)).as_ref().map_err(|e| format!("models/labels/{}: {e}", self.name))
    }

    /// The table; empty when it is malformed, which `check` (run by every manifest's validation, so before any
    /// model loads) reports as an error.
    pub fn get(&self) -> &Labels {
        self.check().unwrap_or(&EMPTY)
    }
}

impl LabelSet {
    fn table(self) -> &'static LabelTable {
        match self {
            LabelSet::Coco80 => &COCO80,
            LabelSet::Ade20k32 => &ADE20K32,
            LabelSet::Person => &PERSON,
        }
    }

    pub fn labels(self) -> &'static Labels {
        self.table().get()
    }

    /// An error naming the malformed line of this set's embedded table.
    pub fn check(self) -> Result<(), String> {
        self.table().check().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_uses_official_names_and_ids() {
        let l = COCO80.get();
        assert_eq!(l.len(), 80);
        assert_eq!(l.name(0), "person");
        assert_eq!(l.name(3), "motorcycle");
        assert_eq!(l.name(4), "airplane");
        assert_eq!(l.name(57), "couch");
        assert_eq!(l.name(60), "dining table");
        assert_eq!(l.name(62), "tv");
        assert_eq!(l.get(79).map(|x| x.dataset_id), Some(90));
        assert_eq!(l.index_of("hair drier"), Some(78));
    }

    #[test]
    fn every_embedded_table_parses() {
        for set in [LabelSet::Coco80, LabelSet::Ade20k32, LabelSet::Person] {
            assert_eq!(set.check(), Ok(()));
        }
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let err = parse("1 person\nbicycle\n", true).err().unwrap_or_default();
        assert!(err.contains("line 2") && err.contains("bicycle"), "{err}");
        let err = parse("1 person\nx2 bicycle\n", true).err().unwrap_or_default();
        assert!(err.contains("line 2") && err.contains("x2"), "{err}");
        assert_eq!(parse("# c\n\n3 car\n", true).map(|l| l.name(0).to_string()), Ok("car".to_string()));
    }

    #[test]
    fn ade_has_other_first() {
        let l = ADE20K32.get();
        assert_eq!(l.len(), 32);
        assert_eq!(l.name(0), "other");
        assert_eq!(l.name(3), "sky");
    }
}

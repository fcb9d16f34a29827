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

fn parse(text: &str, with_ids: bool) -> Labels {
    let labels = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(index, line)| {
            if with_ids {
                let (id, name) = line.split_once(' ').unwrap_or(("0", line));
                Label { index, dataset_id: id.parse().unwrap_or(0), name: name.trim().to_string() }
            } else {
                Label { index, dataset_id: index as u32, name: line.to_string() }
            }
        })
        .collect();
    Labels { labels }
}

pub static COCO80: LabelTable = LabelTable { cell: OnceLock::new(), text: include_str!("../../models/labels/coco80.txt"), ids: true };
pub static PERSON: LabelTable =
    LabelTable { cell: OnceLock::new(), text: include_str!("../../models/labels/person.txt"), ids: true };
pub static ADE20K32: LabelTable =
    LabelTable { cell: OnceLock::new(), text: include_str!("../../models/labels/ade20k32.txt"), ids: false };

/// A lazily parsed, embedded label table.
pub struct LabelTable {
    cell: OnceLock<Labels>,
    text: &'static str,
    ids: bool,
}

impl LabelTable {
    pub fn get(&self) -> &Labels {
        self.cell.get_or_init(|| parse(self.text, self.ids))
    }
}

impl LabelSet {
    pub fn labels(self) -> &'static Labels {
        match self {
            LabelSet::Coco80 => COCO80.get(),
            LabelSet::Ade20k32 => ADE20K32.get(),
            LabelSet::Person => PERSON.get(),
        }
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
    fn ade_has_other_first() {
        let l = ADE20K32.get();
        assert_eq!(l.len(), 32);
        assert_eq!(l.name(0), "other");
        assert_eq!(l.name(3), "sky");
    }
}

//! Reading captions to score: SA-Pancap JSON (`[{"image_path", "gt_response" | "model_response"}]`) and our own
//! output (`pancap caption --format json` arrays or `--format jsonl` lines), detected from the content.

use super::content::Content;
use crate::scene::PanopticCaption;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// One captioned image, ready to score.
#[derive(Debug, Clone)]
pub struct ScoredCaption {
    pub image: String,
    pub content: Content,
    /// The caption text, when the input had one.
    pub text: Option<String>,
}

#[derive(serde::Deserialize)]
struct SaPancapItem {
    image_path: String,
    #[serde(default)]
    gt_response: Option<String>,
    #[serde(default)]
    model_response: Option<String>,
}

/// Image sizes for `<box>` conversion: `Ok(None)` when no image folder was given (images are then taken as
/// square, and the report says so), an error naming the image when it cannot be read.
pub type SizeOf = dyn Fn(&str) -> Result<Option<(u32, u32)>, String>;

fn from_value(
    v: serde_json::Value,
    at: &str,
    path: &Path,
    size_of: &SizeOf,
) -> Result<ScoredCaption, InputError> {
    let bad = |reason: String| InputError::Format { path: path.to_path_buf(), reason: format!("{at}: {reason}") };
    let is_ours = v.get("schema_version").is_some() && v.get("entities").is_some();
    if is_ours {
        let c: PanopticCaption = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        return Ok(ScoredCaption { image: c.image.clone(), content: Content::from_caption(&c), text: Some(c.caption) });
    }
    let item: SaPancapItem = serde_json::from_value(v).map_err(|e| {
        bad(format!("neither a pancap caption nor an SA-Pancap item with image_path and gt_response/model_response ({e})"))
    })?;
    let text = item
        .gt_response
        .or(item.model_response)
        .ok_or_else(|| bad(format!("{}: no gt_response or model_response", item.image_path)))?;
    let size = size_of(&item.image_path).map_err(|e| bad(format!("{}: {e}", item.image_path)))?;
    let content = Content::from_text(&text, size);
    Ok(ScoredCaption { image: item.image_path, content, text: Some(text) })
}

/// Reads every caption of a file. `size_of` gives image sizes for `<box>` conversion.
pub fn read_captions(
    path: &Path,
    size_of: &SizeOf,
) -> Result<Vec<ScoredCaption>, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| InputError::Format { path: path.to_path_buf(), reason: format!("not a JSON array: {e}") })?;
        values.into_iter().enumerate().map(|(i, v)| from_value(v, &format!("item {i}"), path, size_of)).collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                let v: serde_json::Value = serde_json::from_str(l).map_err(|e| InputError::Format {
                    path: path.to_path_buf(),
                    reason: format!("line {}: not JSON: {e}", n + 1),
                })?;
                from_value(v, &format!("line {}", n + 1), path, size_of)
            })
            .collect()
    }
}

/// The key images are paired by: the file name of the path.
pub fn image_key(image: &str) -> String {
    Path::new(image).file_name().and_then(|n| n.to_str()).unwrap_or(image).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sa_pancap_and_reports_bad_items_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("refs.json");
        std::fs::write(&p, r#"[{"image_path": "a/b.jpg", "gt_response": "A dog [[0.1, 0.2, 0.3, 0.4]] runs."}]"#).unwrap();
        let items = read_captions(&p, &|_| Ok(None)).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].content.entities[0].tag, "dog");
        assert_eq!(image_key(&items[0].image), "b.jpg");

        std::fs::write(&p, r#"[{"image_path": "a.jpg", "gt_response": "x"}, {"image_path": "b.jpg"}]"#).unwrap();
        let err = read_captions(&p, &|_| Ok(None)).unwrap_err().to_string();
        assert!(err.contains("item 1") && err.contains("b.jpg") && err.contains("refs.json"), "{err}");

        // an image whose size cannot be read is an error naming it, not a square guess
        std::fs::write(&p, r#"[{"image_path": "a/b.jpg", "gt_response": "A dog <box>[10, 20, 30, 40]</box> runs."}]"#).unwrap();
        let err = read_captions(&p, &|_| Err("cannot read the image".into())).unwrap_err().to_string();
        assert!(err.contains("b.jpg") && err.contains("cannot read the image"), "{err}");
    }
}

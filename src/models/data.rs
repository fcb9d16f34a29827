//! Manifests of data files that are not models (the WordNet noun database PancapScore's synonym tier reads).
//! Like models they are embedded in the binary and provisioned from the offline mirror by sha256, and
//! checked again when they are loaded.

use super::provision::{verify, ProvisionError};
use super::{check_hash, check_relative, ManifestError, ModelFile, Source};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The WordNet database every PancapScore tier setup uses by default.
pub const WORDNET: &str = "wordnet_3_0_nouns";
const WORDNET_TOML: &str = include_str!("../../models/wordnet_3_0_nouns.toml");

const EMBEDDED: &[(&str, &str)] = &[(WORDNET, WORDNET_TOML)];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataRole {
    /// A lexical database (WordNet).
    Lexicon,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataManifest {
    pub name: String,
    pub role: DataRole,
    /// The directory holding the files, relative to the models directory.
    pub dir: String,
    pub files: Vec<DataFile>,
    pub source: Source,
}

impl DataManifest {
    pub fn parse(name: &str, text: &str) -> Result<DataManifest, ManifestError> {
        let m: DataManifest =
            toml::from_str(text).map_err(|e| ManifestError::Parse { name: name.into(), reason: e.to_string() })?;
        check_relative(&m.name, &m.dir)?;
        if m.files.is_empty() {
            return Err(ManifestError::Invalid { name: m.name.clone(), reason: "lists no files".into() });
        }
        for f in &m.files {
            check_hash(&m.name, &f.sha256)?;
            check_relative(&m.name, &f.file)?;
            if !Path::new(&f.file).starts_with(&m.dir) {
                return Err(ManifestError::Invalid {
                    name: m.name.clone(),
                    reason: format!("file {} is not inside its directory {}", f.file, m.dir),
                });
            }
        }
        Ok(m)
    }

    pub fn all() -> Result<Vec<DataManifest>, ManifestError> {
        EMBEDDED.iter().map(|(name, text)| DataManifest::parse(name, text)).collect()
    }

    /// None when no data set has this name.
    pub fn by_name(name: &str) -> Option<Result<DataManifest, ManifestError>> {
        EMBEDDED.iter().find(|(n, _)| *n == name).map(|(n, text)| DataManifest::parse(n, text))
    }

    /// The embedded WordNet manifest.
    pub fn wordnet() -> Result<DataManifest, ManifestError> {
        DataManifest::parse(WORDNET, WORDNET_TOML)
    }

    pub fn files(&self) -> Vec<ModelFile> {
        self.files
            .iter()
            .map(|f| ModelFile { model: self.name.clone(), file: f.file.clone(), sha256: f.sha256.clone(), derived: None })
            .collect()
    }

    pub fn dir_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.dir)
    }

    /// The provisioned directory, after every file was checked against its sha256 (the first failure is
    /// returned: a missing file names `pancap models pull` as the fix, a changed one both hashes).
    pub fn verified_dir(&self, models_dir: &Path) -> Result<PathBuf, ProvisionError> {
        for r in verify(&self.files(), models_dir) {
            r?;
        }
        Ok(self.dir_in(models_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordnet_manifest_lists_the_three_database_files_and_the_licence() {
        let m = DataManifest::by_name(WORDNET).and_then(Result::ok);
        let files: Vec<String> = m.iter().flat_map(|m| m.files()).map(|f| f.file).collect();
        assert_eq!(files, ["wordnet/index.noun", "wordnet/data.noun", "wordnet/noun.exc", "wordnet/LICENSE"]);
        assert_eq!(DataManifest::all().map(|a| a.len()).ok(), Some(EMBEDDED.len()));
    }

    #[test]
    fn a_file_outside_its_directory_is_rejected() {
        let text = include_str!("../../models/wordnet_3_0_nouns.toml").replace("wordnet/noun.exc", "other/noun.exc");
        let err = DataManifest::parse("x", &text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("other/noun.exc") && err.contains("not inside"), "{err}");
    }

    #[test]
    fn verified_dir_names_the_missing_file_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let m = DataManifest::by_name(WORDNET).and_then(Result::ok);
        let err = m.map(|m| m.verified_dir(tmp.path())).and_then(Result::err).map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("index.noun") && err.contains("models pull"), "{err}");
    }
}

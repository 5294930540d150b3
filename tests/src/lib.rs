//! Shared helpers for the cross-crate tests of abkit (the tests themselves live in `tests/tests/`).

pub mod elf_patch;
pub mod env;
pub mod etcd;
pub mod fixtures;
pub mod marker;

use std::path::PathBuf;

/// One case of the bucketing-v1 conformance vectors (`tests/data/bucketing-v1-vectors.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VectorCase {
    /// Salt.
    pub salt: String,
    /// Unit id.
    pub unit: String,
    /// Variant weights.
    pub weights: Vec<u32>,
    /// Coverage fraction.
    pub coverage: f64,
    /// Expected bucket.
    pub bucket: u32,
    /// Expected variant (None = not enrolled).
    pub variant: Option<usize>,
}

#[derive(serde::Deserialize)]
struct VectorFile {
    spec: String,
    cases: Vec<VectorCase>,
}

/// The copy of the conformance vectors committed in `tests/data/`.
pub fn committed_vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/bucketing-v1-vectors.json")
}

/// The normative vectors in `../shared/spec/` beside the repository, when present.
pub fn shared_vectors_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/spec/bucketing-v1-vectors.json");
    p.exists().then_some(p)
}

/// Reads and parses a vectors file; panics with the path on error (test helper).
pub fn read_vectors(path: &std::path::Path) -> Vec<VectorCase> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let file: VectorFile =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    assert_eq!(
        file.spec,
        "bucketing-v1",
        "{} is not a bucketing-v1 vector file",
        path.display()
    );
    file.cases
}

/// A one-experiment TOML config with these parameters (key `e`).
pub fn single_experiment_toml(salt: &str, weights: &[u32], coverage: f64) -> String {
    let variants: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{{ name = \"v{i}\", weight = {w} }}"))
        .collect();
    format!(
        "[[experiments]]\nkey = \"e\"\nsalt = {}\ncoverage = {coverage:?}\nvariants = [{}]\n",
        toml_string(salt),
        variants.join(", ")
    )
}

/// A TOML basic string literal for `s`.
pub fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

//! Shared helpers for jose-core's integration tests: fixtures from `tests/vectors/` and fresh file keys.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use key_provider::{KeyBackend, KeySpec, OpenOptions};

/// The repository's `tests/vectors` directory.
pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// A JSON vector file.
pub fn vector_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(vectors().join(name)).unwrap()).unwrap()
}

/// Opens a vector key through the file backend (copied to a 0600 file: git does not keep modes).
pub fn vector_key(dir: &tempfile::TempDir, name: &str) -> Arc<dyn KeyBackend> {
    let src = vectors().join(name);
    let dst = dir.path().join(name);
    std::fs::copy(&src, &dst).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    open_file(&dst)
}

/// Opens a key file through the file backend.
pub fn open_file(path: &Path) -> Arc<dyn KeyBackend> {
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap()
}

/// A new key in a temp dir, plus the path of its PEM file.
pub fn new_key(
    dir: &tempfile::TempDir,
    name: &str,
    spec: KeySpec,
) -> (Arc<dyn KeyBackend>, PathBuf) {
    let path = dir.path().join(name);
    key_provider::file::generate(&path, spec).unwrap();
    (open_file(&path), path)
}

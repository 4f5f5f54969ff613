//! Replays every input the fuzz targets ever crashed on (`tests/fuzz-regressions/<target>/*`, copied there by
//! `cargo xtask fuzz`) through the same target bodies (`fuzz/src/targets.rs`), so a fixed bug stays fixed
//! in the normal test suite, without libFuzzer or a nightly toolchain. Also replays the hand-written seeds of
//! `fuzz/seeds/<target>/`, so the target bodies themselves are exercised on every run.

// The target bodies use the in-memory software key (`file` or `env`).
#![cfg(any(feature = "file", feature = "env"))]

#[path = "../../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut replayed = 0;
    for (name, body) in targets::TARGETS {
        for file in inputs(&repo().join(kind).join(name)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {name} fails again on {}",
                file.display()
            );
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn saved_crash_inputs_no_longer_crash() {
    let replayed = replay("tests/fuzz-regressions");
    // Two findings so far (pkcs11_uri, flex_claims); the directory only grows.
    assert!(replayed >= 2, "only {replayed} regression inputs found");
}

#[test]
fn hand_written_seeds_pass_the_targets() {
    assert!(replay("fuzz/seeds") >= 10);
}

#[test]
fn the_hostile_corpus_passes_the_jws_and_jwe_targets() {
    for (file, body) in [
        ("jws.tsv", targets::jws_verify as targets::Target),
        ("jwe.tsv", targets::jwe_decrypt),
    ] {
        let text = std::fs::read_to_string(repo().join("tests/hostile").join(file)).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let token = line.splitn(3, '\t').nth(2).unwrap_or("");
            body(token.as_bytes());
        }
    }
}

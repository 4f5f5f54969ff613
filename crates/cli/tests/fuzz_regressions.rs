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
    let mut valid = Vec::new();
    for (file, body, rows) in [
        ("jws.tsv", targets::jws_verify as targets::Target, 64),
        ("jwe.tsv", targets::jwe_decrypt, 32),
    ] {
        let text = std::fs::read_to_string(repo().join("tests/hostile").join(file)).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), rows, "{file} rows");
        for line in lines {
            let mut it = line.splitn(3, '\t');
            let (name, kind, token) = (
                it.next().unwrap(),
                it.next().unwrap(),
                it.next().unwrap_or(""),
            );
            body(token.as_bytes());
            if kind == "valid" {
                valid.push((file, name.to_owned(), token.to_owned()));
            }
        }
    }
    // The positive controls are accepted with the targets' own victim keys, so the targets exercise the
    // success paths too and their keys are the corpus's.
    assert_eq!(valid.len(), 4, "{valid:?}");
    for (file, name, token) in valid {
        if file == "jws.tsv" {
            let verified = jose_core::jwt::verify(
                &token,
                targets::victim_keys(),
                &jose_core::Validation::new(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.claims["iss"], "hostile-corpus");
        } else {
            let out = jose_core::jwe::decrypt(
                &token,
                targets::jwe_key(),
                &jose_core::jwe::DecryptOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out.plaintext.as_slice(), br#"{"data":"x"}"#);
        }
    }
}

//! A key's certificate kept with the key (`store_certificate` / `read_certificate`): for a `file:` key,
//! `PATH.crt` beside it, written only for the key's own certificate, never over an existing one unless
//! replacing, with an audit event; an `env:` key keeps none. (The token side, `CKO_CERTIFICATE` objects, is
//! tested through the CLI with `pkcs11-tool`: `crates/cli/tests/certificates.rs`.) The certificates are made
//! by `openssl req -x509` from the key file, independently of keybound.

#![cfg(feature = "file")]

use std::path::Path;
use std::process::Command;

use key_provider::{KeyError, KeyRef, KeySpec, OpenOptions};

fn openssl_certificate(key: &Path, subject: &str) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(key)
        .args(["-subj", subject, "-days", "30", "-outform", "DER"])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_file_key_keeps_its_own_certificate_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("issuer.pem");
    key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
    let other = dir.path().join("other.pem");
    key_provider::file::generate(&other, KeySpec::Rsa(2048)).unwrap();
    let key_ref: KeyRef = format!("file:{}", path.display()).parse().unwrap();
    let options = OpenOptions::new();
    let first = openssl_certificate(&path, "/CN=first");
    let second = openssl_certificate(&path, "/CN=second");
    let foreign = openssl_certificate(&other, "/CN=other");

    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        None
    );
    let (log, _guard) = keybound_test_support::capture::capture();
    key_provider::store_certificate(&key_ref, &first, false, &options).unwrap();
    let crt = key_provider::certificate_path(&path);
    assert_eq!(crt, dir.path().join("issuer.pem.crt"));
    assert!(
        std::fs::read_to_string(&crt)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        Some(first.clone())
    );
    let text = log.text();
    assert!(
        text.contains("keybound::audit")
            && text.contains("store certificate")
            && text.contains("success"),
        "{text}"
    );

    // Not over the one that is there, unless replacing.
    let err = key_provider::store_certificate(&key_ref, &second, false, &options).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        Some(first)
    );
    key_provider::store_certificate(&key_ref, &second, true, &options).unwrap();
    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        Some(second.clone())
    );

    // Another key's certificate is refused, even when replacing, and what was kept stays.
    let err = key_provider::store_certificate(&key_ref, &foreign, true, &options).unwrap_err();
    assert!(
        err.to_string().contains("is not the public key of"),
        "{err}"
    );
    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        Some(second)
    );

    // A PATH.crt that is not this key's certificate is an error when read, not an answer.
    std::fs::write(&crt, &foreign).unwrap();
    let err = key_provider::read_certificate(&key_ref, &options).unwrap_err();
    assert!(err.to_string().contains("issuer.pem.crt"), "{err}");

    // No temporary files left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["issuer.pem", "issuer.pem.crt", "other.pem"]);
}

#[cfg(feature = "env")]
#[test]
fn an_env_key_keeps_no_certificate() {
    let key_ref: KeyRef = "env:KB_STORED_CERTIFICATE_UNSET".parse().unwrap();
    let options = OpenOptions::new();
    assert_eq!(
        key_provider::read_certificate(&key_ref, &options).unwrap(),
        None
    );
    let err = key_provider::store_certificate(&key_ref, b"\x30\x00", false, &options).unwrap_err();
    assert!(matches!(err, KeyError::NotSupported { .. }), "{err}");
}

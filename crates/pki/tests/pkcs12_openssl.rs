//! PKCS#12 files written by `openssl pkcs12 -export` (modern default and `-legacy`; RSA and P-256) are read
//! back: the key's public half (derived by openssl from the key keybound read) equals the certificate's, and
//! the certificate is the one exported. Wrong passwords, a file without a key and damaged files are refused.

use std::path::Path;
use std::process::Command;

use keybound_pki::{KeyFile, Pkcs12Error};

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Makes key.pem + cert.pem of `alg` ("rsa" or "ec") in `dir`.
fn key_and_cert(dir: &Path, alg: &str) {
    let newkey = if alg == "rsa" { "rsa:2048" } else { "ec" };
    let mut args = vec!["req", "-x509", "-newkey", newkey];
    if alg == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend([
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "30",
        "-subj",
        "/CN=acme merchant/serialNumber=0a1b2c3d-key-id",
    ]);
    openssl(dir, &args);
}

fn export(dir: &Path, legacy: bool, out: &str) -> Vec<u8> {
    let mut args = vec![
        "pkcs12",
        "-export",
        "-inkey",
        "key.pem",
        "-in",
        "cert.pem",
        "-out",
        out,
        "-passout",
        "pass:s3cret pw",
    ];
    if legacy {
        args.push("-legacy");
    }
    openssl(dir, &args);
    std::fs::read(dir.join(out)).unwrap()
}

fn check_reads(alg: &str, legacy: bool) {
    let dir = tempfile::tempdir().unwrap();
    key_and_cert(dir.path(), alg);
    let p12 = export(dir.path(), legacy, "m.p12");
    let file = KeyFile::read(&p12, "s3cret pw").unwrap();
    // The certificate is the one exported, and tied to the key.
    let cert_der = openssl(dir.path(), &["x509", "-in", "cert.pem", "-outform", "DER"]);
    assert_eq!(file.key_certificate(), Some(cert_der.as_slice()));
    assert_eq!(file.certificates().count(), 1);
    // openssl derives the same public key from the key keybound decrypted as from the certificate.
    std::fs::write(
        dir.path().join("read.pem"),
        file.private_key_pem().as_bytes(),
    )
    .unwrap();
    let from_key = openssl(dir.path(), &["pkey", "-in", "read.pem", "-pubout"]);
    let from_cert = openssl(
        dir.path(),
        &["x509", "-in", "cert.pem", "-pubkey", "-noout"],
    );
    assert_eq!(from_key, from_cert);

    assert!(matches!(
        KeyFile::read(&p12, "wrong"),
        Err(Pkcs12Error::WrongPassword)
    ));
    for cut in [10, p12.len() / 2, p12.len() - 1] {
        let err = KeyFile::read(&p12[..cut], "s3cret pw").unwrap_err();
        assert!(
            matches!(err, Pkcs12Error::Corrupt(_)),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn modern_rsa() {
    check_reads("rsa", false);
}

#[test]
fn modern_p256() {
    check_reads("ec", false);
}

#[test]
fn legacy_rsa() {
    check_reads("rsa", true);
}

#[test]
fn legacy_p256() {
    check_reads("ec", true);
}

#[test]
fn certificate_only_file_has_no_key() {
    let dir = tempfile::tempdir().unwrap();
    key_and_cert(dir.path(), "ec");
    openssl(
        dir.path(),
        &[
            "pkcs12", "-export", "-nokeys", "-in", "cert.pem", "-out", "c.p12", "-passout",
            "pass:pw",
        ],
    );
    let p12 = std::fs::read(dir.path().join("c.p12")).unwrap();
    assert!(matches!(KeyFile::read(&p12, "pw"), Err(Pkcs12Error::NoKey)));
}

#[test]
fn flipped_byte_fails_the_mac() {
    let dir = tempfile::tempdir().unwrap();
    key_and_cert(dir.path(), "ec");
    let mut p12 = export(dir.path(), false, "m.p12");
    // A byte inside the encrypted content (well past the headers, before the MAC at the end).
    let i = p12.len() / 2;
    p12[i] ^= 0x01;
    let err = KeyFile::read(&p12, "s3cret pw").unwrap_err();
    assert!(
        matches!(err, Pkcs12Error::WrongPassword | Pkcs12Error::Corrupt(_)),
        "{err}"
    );
}

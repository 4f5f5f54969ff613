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

/// PKCS#8 DER and certificate DER made by openssl in `dir`.
fn der_key_and_cert(dir: &Path, alg: &str) -> (Vec<u8>, Vec<u8>) {
    key_and_cert(dir, alg);
    let key = openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER",
        ],
    );
    let cert = openssl(dir, &["x509", "-in", "cert.pem", "-outform", "DER"]);
    (key, cert)
}

#[test]
fn written_files_are_read_by_openssl_and_by_keybound() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = der_key_and_cert(dir.path(), "rsa");
    let p12 = keybound_pki::write_pkcs12(&key, &[&cert], "demo pw").unwrap();
    std::fs::write(dir.path().join("w.p12"), &p12).unwrap();
    // openssl checks the MAC, decrypts both bags, and gives back the same certificate and key.
    let certs = openssl(
        dir.path(),
        &[
            "pkcs12",
            "-in",
            "w.p12",
            "-passin",
            "pass:demo pw",
            "-nokeys",
            "-clcerts",
        ],
    );
    let cert_pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
    let tail = |b: &[u8]| {
        let t = String::from_utf8_lossy(b).into_owned();
        t[t.find("-----BEGIN CERTIFICATE-----").unwrap()..].to_owned()
    };
    assert_eq!(tail(&certs), tail(&cert_pem));
    let key_out = openssl(
        dir.path(),
        &[
            "pkcs12",
            "-in",
            "w.p12",
            "-passin",
            "pass:demo pw",
            "-nocerts",
            "-nodes",
        ],
    );
    std::fs::write(dir.path().join("out.pem"), key_out).unwrap();
    let der = openssl(
        dir.path(),
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "out.pem", "-outform", "DER",
        ],
    );
    assert_eq!(der, key);
    let read = KeyFile::read(&p12, "demo pw").unwrap();
    assert_eq!(read.private_key().as_slice(), key.as_slice());
    assert_eq!(read.key_certificate(), Some(cert.as_slice()));
}

#[test]
fn a_file_with_two_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = der_key_and_cert(dir.path(), "ec");
    let p12 = keybound_pki::pkcs12::write_pkcs12_keys(&[&key, &key], &[&cert], "pw").unwrap();
    std::fs::write(dir.path().join("two.p12"), &p12).unwrap();
    // openssl reads the file (so it is well-formed) and finds two keys in it.
    let keys = openssl(
        dir.path(),
        &[
            "pkcs12", "-in", "two.p12", "-passin", "pass:pw", "-nocerts", "-nodes",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&keys)
            .matches("BEGIN PRIVATE KEY")
            .count(),
        2
    );
    assert!(matches!(
        KeyFile::read(&p12, "pw"),
        Err(Pkcs12Error::SeveralKeys(2))
    ));
}

#[test]
fn encrypted_pem_keys_are_read_with_the_password() {
    let dir = tempfile::tempdir().unwrap();
    key_and_cert(dir.path(), "rsa");
    let plain = openssl(
        dir.path(),
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER",
        ],
    );
    for extra in [&["-v2", "aes-256-cbc"][..], &["-v1", "PBE-SHA1-3DES"]] {
        let mut args = vec![
            "pkcs8",
            "-topk8",
            "-in",
            "key.pem",
            "-passout",
            "pass:pem pw",
        ];
        args.extend(extra);
        let pem = openssl(dir.path(), &args);
        let file = KeyFile::read(&pem, "pem pw").unwrap();
        assert_eq!(file.private_key().as_slice(), plain.as_slice(), "{extra:?}");
        let err = KeyFile::read(&pem, "wrong").unwrap_err();
        assert!(
            err.to_string().contains("wrong password"),
            "{extra:?}: {err}"
        );
    }
}

/// Every truncation and every flipped byte of a real file (modern and legacy) is an error of one line,
/// never a panic and never a key; the password appears in no message.
#[test]
fn hostile_variants_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    key_and_cert(dir.path(), "ec");
    for legacy in [false, true] {
        let p12 = export(dir.path(), legacy, "h.p12");
        let check = |bytes: &[u8], what: &str| match KeyFile::read(bytes, "s3cret pw") {
            Ok(_) => panic!("{what}: a damaged file was read"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    !message.contains('\n') && !message.contains("s3cret"),
                    "{what}: {message}"
                );
            }
        };
        for cut in 0..p12.len() {
            check(&p12[..cut], &format!("cut at {cut}"));
        }
        // Flipped bytes: the MAC (checked first) catches every change to the content; headers fail to parse.
        for i in (0..p12.len()).step_by(7) {
            let mut bad = p12.clone();
            bad[i] ^= 0x5a;
            check(&bad, &format!("byte {i} flipped"));
        }
    }
}

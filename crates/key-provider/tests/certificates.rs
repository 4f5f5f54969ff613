//! `PublicKeyFile`, the one parser behind every `--pubkey`: X.509 certificates made by `openssl req -x509`
//! (RSA-2048, EC P-256, EC P-384), in PEM and DER, yield exactly the public key `openssl x509 -pubkey` prints
//! and the validity period openssl wrote, and the serial number and issuer name CMS names a recipient by; a chain is used by its leaf only when given leaf first; a
//! certificate outside its validity period is used with a warning (no signature is checked: the expired
//! certificate here is an edited copy whose signature no longer matches).

use std::path::Path;
use std::process::Command;

use key_provider::{PublicKey, PublicKeyFile};

#[track_caller]
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A self-signed certificate for a new key of `algorithm` / `option` (`genpkey` spelling), valid 30 days.
fn certificate(dir: &Path, name: &str, algorithm: &str, option: &str) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.der"));
    openssl(&[
        "genpkey",
        "-algorithm",
        algorithm,
        "-pkeyopt",
        option,
        "-out",
        s(&key),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-key",
        s(&key),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-out",
        s(&pem),
    ]);
    openssl(&["x509", "-in", s(&pem), "-outform", "DER", "-out", s(&der)]);
    (std::fs::read(&pem).unwrap(), std::fs::read(&der).unwrap())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

#[test]
fn openssl_certificates_yield_the_key_openssl_sees() {
    let dir = tempfile::tempdir().unwrap();
    for (name, algorithm, option, describe) in [
        ("rsa", "RSA", "rsa_keygen_bits:2048", "RSA-2048"),
        ("p256", "EC", "ec_paramgen_curve:P-256", "EC P-256"),
        ("p384", "EC", "ec_paramgen_curve:P-384", "EC P-384"),
    ] {
        let (pem, der) = certificate(dir.path(), name, algorithm, option);
        let pem_path = dir.path().join(format!("{name}.pem"));
        let openssl_spki = openssl(&["x509", "-in", s(&pem_path), "-noout", "-pubkey"]);
        for input in [&pem, &der] {
            let file = PublicKeyFile::parse(input).unwrap();
            assert_eq!(file.key.describe(), describe);
            assert_eq!(
                file.key.to_spki_pem().as_bytes(),
                &openssl_spki[..],
                "{name}: the key differs from `openssl x509 -pubkey`"
            );
            let cert = file.certificate.expect("came as a certificate");
            assert_eq!(cert.public_key, file.key);
            assert_eq!(cert.not_after - cert.not_before, 30 * 86_400, "{name}");
            assert!((cert.not_before - now()).abs() < 3600, "{name}");
            assert!(cert.is_valid_at(now()));
            // CMS's issuerAndSerialNumber: the serial openssl prints, and the issuer Name as encoded
            // (self-signed: the subject `/CN={name}`, one RDN of a UTF8String).
            let serial = openssl(&["x509", "-in", s(&pem_path), "-noout", "-serial"]);
            let serial = String::from_utf8(serial).unwrap();
            let printed = serial.trim().strip_prefix("serial=").unwrap();
            let ours: String = cert
                .serial_number()
                .iter()
                .skip_while(|b| **b == 0)
                .map(|b| format!("{b:02X}"))
                .collect();
            assert_eq!(ours, printed, "{name}: serial");
            let issuer = cert.issuer_der();
            assert_eq!(issuer[0], 0x30, "{name}: a Name is a SEQUENCE");
            assert!(
                issuer.ends_with(name.as_bytes()) && der.windows(issuer.len()).any(|w| w == issuer),
                "{name}: the issuer Name as it is in the certificate"
            );
        }
        assert_eq!(
            PublicKey::from_certificate_der(&der).unwrap().describe(),
            describe
        );
        let path = dir.path().join(format!("{name}.der"));
        assert_eq!(PublicKey::load(&path).unwrap().describe(), describe);
    }
}

#[test]
fn a_chain_counts_only_leaf_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_pem, _) = certificate(d, "ca", "RSA", "rsa_keygen_bits:2048");
    let leaf_key = d.join("leaf.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        s(&leaf_key),
    ]);
    let csr = d.join("leaf.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        s(&leaf_key),
        "-subj",
        "/CN=leaf",
        "-out",
        s(&csr),
    ]);
    let leaf = d.join("leaf.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&d.join("ca.pem")),
        "-CAkey",
        s(&d.join("ca.key")),
        "-set_serial",
        "7",
        "-days",
        "30",
        "-out",
        s(&leaf),
    ]);
    let leaf_pem = std::fs::read(&leaf).unwrap();
    let leaf_spki = openssl(&["x509", "-in", s(&leaf), "-noout", "-pubkey"]);

    let chain = [leaf_pem.clone(), ca_pem.clone()].concat();
    let file = PublicKeyFile::parse(&chain).unwrap();
    assert_eq!(file.key.to_spki_pem().as_bytes(), &leaf_spki[..]);

    let reversed = [ca_pem.clone(), leaf_pem.clone()].concat();
    let err = PublicKeyFile::parse(&reversed).unwrap_err().to_string();
    assert!(err.contains("not in chain order"), "{err}");
    assert!(err.contains("certificate 1"), "{err}");

    // A longer chain with one link out of place is refused at that link.
    let broken = [leaf_pem.clone(), ca_pem.clone(), leaf_pem].concat();
    let err = PublicKeyFile::parse(&broken).unwrap_err().to_string();
    assert!(err.contains("certificate 2"), "{err}");
}

#[test]
fn an_expired_certificate_is_used_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut der) = certificate(dir.path(), "old", "EC", "ec_paramgen_curve:P-256");
    // notAfter is the second UTCTime (tag 0x17, 13 bytes): move it to 2001-01-01 (the signature no longer
    // matches, which nothing here checks).
    let times: Vec<usize> = der
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == &[0x17, 13])
        .map(|(i, _)| i + 2)
        .collect();
    let not_after = times[1];
    der[not_after..not_after + 13].copy_from_slice(b"010101000000Z");

    let (log, _guard) = keybound_test_support::capture::capture();
    let file = PublicKeyFile::parse(&der).unwrap();
    let cert = file.certificate.unwrap();
    assert_eq!(cert.not_after, 978_307_200);
    assert!(!cert.is_valid_at(now()));
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("outside its validity period"),
        "{text}"
    );
    // A current certificate warns of nothing.
    let (_, current) = certificate(dir.path(), "new", "EC", "ec_paramgen_curve:P-256");
    let before = log.text().len();
    PublicKeyFile::parse(&current).unwrap();
    assert_eq!(log.text().len(), before);
}

#[test]
fn what_is_not_a_public_key_is_refused_saying_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = certificate(dir.path(), "k", "RSA", "rsa_keygen_bits:2048");
    let key = std::fs::read(dir.path().join("k.key")).unwrap();
    let err = PublicKeyFile::parse(&key).unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
    let with_key = [pem.clone(), key].concat();
    let err = PublicKeyFile::parse(&with_key).unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
    let spki = openssl(&[
        "x509",
        "-in",
        s(&dir.path().join("k.pem")),
        "-noout",
        "-pubkey",
    ]);
    let mixed = [pem, spki].concat();
    let err = PublicKeyFile::parse(&mixed).unwrap_err().to_string();
    assert!(err.contains("other PEM blocks"), "{err}");
    let err = PublicKeyFile::parse(b"hello").unwrap_err().to_string();
    assert!(err.contains("X.509 certificate"), "{err}");
    assert!(
        PublicKeyFile::parse(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
            .is_err()
    );
}

/// Cybersource names its certificates by the subject's `serialNumber` attribute (OID 2.5.4.5), which is
/// not the X.509 serial: the value openssl wrote into the subject comes back; a subject without it gives
/// `None`.
#[test]
fn the_subject_serial_number_attribute_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("mle.key");
    let pem = dir.path().join("mle.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        s(&key),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-key",
        s(&key),
        "-subj",
        "/C=US/O=CyberSource/CN=CyberSource_SJC_US/serialNumber=SJC3b5c1e9a2f",
        "-days",
        "30",
        "-out",
        s(&pem),
    ]);
    let file = PublicKeyFile::parse(&std::fs::read(&pem).unwrap()).unwrap();
    let cert = file.certificate.unwrap();
    assert_eq!(
        cert.subject_serial_number().as_deref(),
        Some("SJC3b5c1e9a2f")
    );
    assert_ne!(cert.serial_number(), b"SJC3b5c1e9a2f");

    let (plain, _) = certificate(dir.path(), "plain", "RSA", "rsa_keygen_bits:2048");
    let file = PublicKeyFile::parse(&plain).unwrap();
    assert_eq!(file.certificate.unwrap().subject_serial_number(), None);
}

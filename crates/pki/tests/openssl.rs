//! CSRs and self-signed certificates made through the backends, checked by OpenSSL (an independent
//! implementation): `openssl req -verify` accepts every request, `openssl verify -CAfile` every certificate,
//! for RSA-2048/4096 and EC P-256/P-384, on the file backend and (with `cargo xtask softhsm-test -p
//! keybound-pki`) on SoftHSM; the SubjectPublicKeyInfo inside is the backend's public key; `openssl … -text`
//! shows the subject, the alternative names and the key usage asked for.

// The keys are made as files (and, with `pkcs11`, in SoftHSM).
#![cfg(feature = "file")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use key_provider::{EcCurve, KeyBackend, KeySpec, KeyUsage, PublicKey, SignatureScheme};
use keybound_pki::{CertificateBuilder, CsrBuilder, certificate_pem, csr_pem};

const SUBJECT: &str = r"CN=acmebank,O=Acme\, Bank,serialNumber=1234567890,C=FR";
const SANS: [&str; 5] = [
    "DNS:issuer.acme.example",
    "IP:192.0.2.7",
    "IP:2001:db8::7",
    "URI:https://acme.example/issuer",
    "email:pki@acme.example",
];

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed for these tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn specs() -> [(KeySpec, &'static str); 4] {
    [
        (KeySpec::Rsa(2048), "rsa2048"),
        (KeySpec::Rsa(4096), "rsa4096"),
        (KeySpec::Ec(EcCurve::P256), "p256"),
        (KeySpec::Ec(EcCurve::P384), "p384"),
    ]
}

/// The schemes to try with a key: its default, and PS256 for RSA.
fn schemes(key: &PublicKey) -> Vec<Option<SignatureScheme>> {
    match key {
        PublicKey::Rsa { .. } => vec![None, Some(SignatureScheme::RsaPssSha256)],
        _ => vec![None],
    }
}

fn public_key_of(args: &[&str]) -> PublicKey {
    let (ok, text) = openssl(args);
    assert!(ok, "{text}");
    PublicKey::from_pem(&text).unwrap()
}

/// Every check of a request made by `key`.
fn check_csr(key: &dyn KeyBackend, dir: &Path, name: &str) {
    for scheme in schemes(key.public_key()) {
        let mut builder = CsrBuilder::new(SUBJECT.parse().unwrap()).scheme(scheme);
        for san in SANS {
            builder = builder.san(san.parse().unwrap());
        }
        let der = builder.sign(key).unwrap();
        let path = dir.join(format!("{name}-{scheme:?}.csr"));
        std::fs::write(&path, csr_pem(&der)).unwrap();
        let path = path.to_str().unwrap();
        let (ok, text) = openssl(&["req", "-verify", "-noout", "-in", path]);
        assert!(
            ok && text.contains("verify OK"),
            "{name} {scheme:?}: {text}"
        );
        assert_eq!(
            &public_key_of(&["req", "-pubkey", "-noout", "-in", path]),
            key.public_key(),
            "{name}: the request's SPKI is the backend's key"
        );
        let (ok, text) = openssl(&["req", "-text", "-noout", "-nameopt", "RFC2253", "-in", path]);
        assert!(ok, "{text}");
        assert!(text.contains(&format!("Subject: {SUBJECT}")), "{text}");
        for shown in [
            "DNS:issuer.acme.example",
            "IP Address:192.0.2.7",
            "IP Address:2001:DB8:0:0:0:0:0:7",
            "URI:https://acme.example/issuer",
            "email:pki@acme.example",
        ] {
            assert!(text.contains(shown), "{name}: {shown} missing from\n{text}");
        }
        if scheme == Some(SignatureScheme::RsaPssSha256) {
            for shown in [
                "Signature Algorithm: rsassaPss",
                "Hash Algorithm: sha256",
                "Mask Algorithm: mgf1 with sha256",
                "Salt Length: 0x20",
            ] {
                assert!(text.contains(shown), "{name}: {shown} missing from\n{text}");
            }
        }
    }
}

/// Every check of a self-signed certificate made by `key`, for `asked` (`None`: the usage the backend
/// records, else signing only).
fn check_certificate(key: &dyn KeyBackend, dir: &Path, name: &str, asked: Option<KeyUsage>) {
    let usage = asked.or_else(|| key.usage()).unwrap_or_default();
    for scheme in schemes(key.public_key()) {
        let mut builder = CertificateBuilder::new(SUBJECT.parse().unwrap())
            .scheme(scheme)
            .days(30)
            .usage(asked);
        for san in SANS {
            builder = builder.san(san.parse().unwrap());
        }
        let der = builder.sign(key).unwrap();
        let path = dir.join(format!("{name}-{scheme:?}.pem"));
        std::fs::write(&path, certificate_pem(&der)).unwrap();
        let path = path.to_str().unwrap();
        let (ok, text) = openssl(&["verify", "-CAfile", path, path]);
        assert!(ok && text.contains(": OK"), "{name} {scheme:?}: {text}");
        assert_eq!(
            &public_key_of(&["x509", "-pubkey", "-noout", "-in", path]),
            key.public_key(),
            "{name}: the certificate's SPKI is the backend's key"
        );
        let cert = key_provider::Certificate::from_der(&der).unwrap();
        assert_eq!(cert.not_after - cert.not_before, 30 * 86_400 + 300);
        let (ok, text) = openssl(&[
            "x509", "-text", "-noout", "-nameopt", "RFC2253", "-in", path,
        ]);
        assert!(ok, "{text}");
        let usage_line = match usage {
            KeyUsage::SignAndDecrypt => "Digital Signature, Key Encipherment",
            _ => "Digital Signature",
        };
        for shown in [
            "Version: 3 (0x2)",
            &format!("Issuer: {SUBJECT}"),
            &format!("Subject: {SUBJECT}"),
            "X509v3 Key Usage: critical",
            usage_line,
            "X509v3 Basic Constraints: critical",
            "CA:FALSE",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "DNS:issuer.acme.example, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:7, \
             URI:https://acme.example/issuer, email:pki@acme.example",
        ] {
            assert!(text.contains(shown), "{name}: {shown} missing from\n{text}");
        }
        if usage == KeyUsage::Sign {
            assert!(!text.contains("Key Encipherment"), "{text}");
        }
        // The subject key identifier is RFC 5280's method 1, as openssl computes it (`hash` default).
        let ski = keybound_pki::key_identifier(key.public_key())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert!(text.contains(&ski), "{name}: SKI {ski} in\n{text}");
    }
}

#[test]
fn file_keys_make_requests_and_certificates_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, name) in specs() {
        let path = dir.path().join(format!("{name}.pem"));
        let key: Arc<dyn KeyBackend> = Arc::new(key_provider::file::generate(&path, spec).unwrap());
        check_csr(key.as_ref(), dir.path(), name);
        let usage = match spec {
            KeySpec::Rsa(_) => KeyUsage::SignAndDecrypt,
            _ => KeyUsage::Sign,
        };
        check_certificate(key.as_ref(), dir.path(), name, Some(usage));
        // A key file records no usage: signing only unless asked.
        assert_eq!(key.usage(), None);
        check_certificate(key.as_ref(), dir.path(), &format!("{name}-sign"), None);
    }
}

#[test]
fn async_signing_gives_the_same_kind_of_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_provider::file::generate(&dir.path().join("k.pem"), KeySpec::Ec(EcCurve::P256))
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let der = runtime
        .block_on(CertificateBuilder::new("CN=async".parse().unwrap()).sign_async(&key))
        .unwrap();
    let path = dir.path().join("async.pem");
    std::fs::write(&path, certificate_pem(&der)).unwrap();
    let path = path.to_str().unwrap();
    let (ok, text) = openssl(&["verify", "-CAfile", path, path]);
    assert!(ok, "{text}");
    let der = runtime
        .block_on(CsrBuilder::new("CN=async".parse().unwrap()).sign_async(&key))
        .unwrap();
    let path = dir.path().join("async.csr");
    std::fs::write(&path, csr_pem(&der)).unwrap();
    let (ok, text) = openssl(&["req", "-verify", "-noout", "-in", path.to_str().unwrap()]);
    assert!(ok, "{text}");
}

#[test]
fn schemes_and_usages_that_do_not_fit_the_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ec = key_provider::file::generate(&dir.path().join("ec.pem"), KeySpec::Ec(EcCurve::P256))
        .unwrap();
    let subject = || "CN=x".parse().unwrap();
    let err = CsrBuilder::new(subject())
        .scheme(Some(SignatureScheme::RsaPkcs1Sha256))
        .sign(&ec)
        .unwrap_err();
    assert!(
        err.to_string().contains("not possible with this key"),
        "{err}"
    );
    let err = CertificateBuilder::new(subject())
        .usage(KeyUsage::SignAndDecrypt)
        .sign(&ec)
        .unwrap_err();
    assert!(
        err.to_string().contains("keyEncipherment needs an RSA key"),
        "{err}"
    );
    let err = CertificateBuilder::new(subject())
        .days(0)
        .sign(&ec)
        .unwrap_err();
    assert!(err.to_string().contains("invalid validity"), "{err}");
}

#[test]
fn validity_after_2049_is_generalized_time_and_openssl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_provider::file::generate(&dir.path().join("k.pem"), KeySpec::Ec(EcCurve::P256))
        .unwrap();
    // From 2049-06-03 for 365 days: notBefore UTCTime, notAfter GeneralizedTime (2050).
    let der = CertificateBuilder::new("CN=late".parse().unwrap())
        .now(2_506_291_200)
        .sign(&key)
        .unwrap();
    let path = dir.path().join("late.pem");
    std::fs::write(&path, certificate_pem(&der)).unwrap();
    let (ok, text) = openssl(&["x509", "-noout", "-dates", "-in", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("notBefore=Jun  2 23:55:00 2049 GMT"),
        "{text}"
    );
    assert!(text.contains("notAfter=Jun  3 00:00:00 2050 GMT"), "{text}");
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"\x17\x0d490602235500Z"), "notBefore as UTCTime");
    assert!(
        contains(b"\x18\x0f20500603000000Z"),
        "notAfter as GeneralizedTime"
    );
}

#[cfg(feature = "pkcs11")]
#[test]
fn softhsm_keys_make_requests_and_certificates_openssl_accepts() {
    use keybound_test_support::pkcs11::TestToken;
    let Some(token) = TestToken::fresh(
        "softhsm_keys_make_requests_and_certificates_openssl_accepts",
        "pki",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let options = key_provider::OpenOptions::new();
    for (spec, name) in specs() {
        let usage = match spec {
            KeySpec::Rsa(_) => KeyUsage::SignAndDecrypt,
            _ => KeyUsage::Sign,
        };
        let key =
            key_provider::pkcs11::generate_with_usage(&token.uri(name), spec, usage, &options)
                .unwrap();
        assert_eq!(key.backend_name(), "pkcs11");
        check_csr(key.as_ref(), dir.path(), name);
        // The token records the usage the key was made for; the certificate says it unless told otherwise.
        assert_eq!(key.usage(), Some(usage));
        check_certificate(key.as_ref(), dir.path(), name, None);
        check_certificate(
            key.as_ref(),
            dir.path(),
            &format!("{name}-sign"),
            Some(KeyUsage::Sign),
        );
    }
}

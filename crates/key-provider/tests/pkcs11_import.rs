//! `pkcs11::import` on SoftHSM, on the two ways into a token: `C_CreateObject` with the key's components,
//! and the unwrap path (RFC 5649 AES key wrap with padding in software, `C_UnwrapKey` with
//! `CKM_AES_KEY_WRAP_PAD`) that tokens refusing plaintext keys need, forced here with a test option. Keys and
//! certificates are made by `openssl req -x509`; signatures are checked with the certificate's public key by
//! aws-lc-rs directly (not by keybound's verifier). A failure part-way (the certificate refused) leaves no
//! object behind.

#![cfg(feature = "pkcs11")]

use std::path::Path;
use std::process::Command;

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use key_provider::pkcs11::ImportOptions;
use key_provider::{Certificate, ImportKey, KeyUsage, OpenOptions, PublicKey, SignatureScheme};
use keybound_test_support::pkcs11::{self as testing, TestToken};

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

/// (key PEM, certificate DER) made by openssl for "rsa" or "ec".
fn key_and_cert(alg: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        if alg == "rsa" { "rsa:2048" } else { "ec" },
    ];
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
        "5",
        "-subj",
        "/CN=import test",
    ]);
    openssl(dir.path(), &args);
    let cert = openssl(dir.path(), &["x509", "-in", "cert.pem", "-outform", "DER"]);
    (std::fs::read(dir.path().join("key.pem")).unwrap(), cert)
}

/// How many objects of the token carry `label`, and how many the token holds in all.
fn counts(token: &TestToken, label: &str) -> (usize, usize) {
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri(label), &OpenOptions::new()).unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let labelled = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .unwrap();
    let all = session.find_objects(&[]).unwrap();
    (labelled.len(), all.len())
}

fn verify(public: &PublicKey, message: &[u8], sig: &[u8]) {
    let ok = match public {
        PublicKey::Rsa { .. } => UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            public.rsa_public_key_der().unwrap(),
        )
        .verify(message, sig),
        _ => UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            public.ec_point().unwrap(),
        )
        .verify(message, sig),
    };
    assert!(
        ok.is_ok(),
        "the certificate's key does not verify the token's signature"
    );
}

fn import_and_check(token: &TestToken, alg: &str, label: &str, force_unwrap: bool) {
    let (pem, cert) = key_and_cert(alg);
    let key = ImportKey::from_bytes(&pem).unwrap();
    let mut options = ImportOptions::new(KeyUsage::Sign);
    options.force_unwrap = force_unwrap;
    let imported = key_provider::pkcs11::import(
        &token.uri(label),
        &key,
        Some(&cert),
        &options,
        &OpenOptions::new(),
    )
    .unwrap();
    let certificate = Certificate::from_der(&cert).unwrap();
    assert_eq!(imported.public_key(), &certificate.public_key);
    let scheme = if alg == "rsa" {
        SignatureScheme::RsaPkcs1Sha256
    } else {
        SignatureScheme::EcdsaP256Sha256
    };
    let sig = imported.sign(scheme, b"imported").unwrap();
    verify(&certificate.public_key, b"imported", &sig);

    // Private key, public key and certificate under the label, with one id; the private key sensitive,
    // not extractable, signing only.
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri(label), &OpenOptions::new()).unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let find = |class| {
        session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()
    };
    let (private, public, certs) = (
        find(ObjectClass::PRIVATE_KEY),
        find(ObjectClass::PUBLIC_KEY),
        find(ObjectClass::CERTIFICATE),
    );
    assert_eq!((private.len(), public.len(), certs.len()), (1, 1, 1));
    let id = |h| match session
        .get_attributes(h, &[AttributeType::Id])
        .unwrap()
        .pop()
    {
        Some(Attribute::Id(id)) => id,
        other => panic!("no id: {other:?}"),
    };
    assert_eq!(id(private[0]), id(public[0]));
    assert_eq!(id(private[0]), id(certs[0]));
    let attrs = session
        .get_attributes(
            private[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Sign,
                AttributeType::Decrypt,
            ],
        )
        .unwrap();
    assert_eq!(
        attrs,
        vec![
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false)
        ]
    );
    match session
        .get_attributes(certs[0], &[AttributeType::Value])
        .unwrap()
        .pop()
    {
        Some(Attribute::Value(v)) => assert_eq!(v, cert),
        other => panic!("certificate value: {other:?}"),
    }
}

#[test]
fn imports_by_create_object() {
    let Some(token) = TestToken::fresh("pkcs11 import create", "import-create") else {
        return;
    };
    import_and_check(&token, "rsa", "create-rsa", false);
    import_and_check(&token, "ec", "create-ec", false);
}

#[test]
fn imports_by_unwrapping_with_aes_key_wrap_pad() {
    let Some(token) = TestToken::fresh("pkcs11 import unwrap", "import-unwrap") else {
        return;
    };
    let before = counts(&token, "unwrap-rsa").1;
    import_and_check(&token, "rsa", "unwrap-rsa", true);
    import_and_check(&token, "ec", "unwrap-ec", true);
    // Three objects per key; the session AES key is gone.
    assert_eq!(counts(&token, "unwrap-rsa").1, before + 6);
}

#[test]
fn a_failed_certificate_leaves_nothing_behind() {
    let Some(token) = TestToken::fresh("pkcs11 import rollback", "import-rollback") else {
        return;
    };
    for force_unwrap in [false, true] {
        let (pem, cert) = key_and_cert("ec");
        let key = ImportKey::from_bytes(&pem).unwrap();
        let before = counts(&token, "rollback");
        let mut options = ImportOptions::new(KeyUsage::Sign);
        options.fail_certificate = true;
        options.force_unwrap = force_unwrap;
        let err = key_provider::pkcs11::import(
            &token.uri("rollback"),
            &key,
            Some(&cert),
            &options,
            &OpenOptions::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("CKR_ATTRIBUTE_VALUE_INVALID"),
            "{err}"
        );
        assert_eq!(
            counts(&token, "rollback"),
            before,
            "no object left behind (force_unwrap {force_unwrap})"
        );
        assert_eq!(before.0, 0);
    }
}

#[test]
fn a_certificate_of_another_key_and_a_taken_label_are_refused() {
    let Some(token) = TestToken::fresh("pkcs11 import refusals", "import-refusals") else {
        return;
    };
    let (pem, _) = key_and_cert("ec");
    let (_, other_cert) = key_and_cert("ec");
    let key = ImportKey::from_bytes(&pem).unwrap();
    let options = ImportOptions::new(KeyUsage::Sign);
    let err = key_provider::pkcs11::import(
        &token.uri("mismatch"),
        &key,
        Some(&other_cert),
        &options,
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not the private key's"), "{err}");
    assert_eq!(counts(&token, "mismatch").0, 0);

    key_provider::pkcs11::import(
        &token.uri("taken"),
        &key,
        None,
        &options,
        &OpenOptions::new(),
    )
    .unwrap();
    let before = counts(&token, "taken");
    let err = key_provider::pkcs11::import(
        &token.uri("taken"),
        &key,
        None,
        &options,
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(counts(&token, "taken"), before);
}

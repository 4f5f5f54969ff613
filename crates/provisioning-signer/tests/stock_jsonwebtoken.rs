//! jsonwebtoken as shipped accepts our authorization codes: its stock aws-lc-rs provider, with the issuer
//! key as SPKI PEM (`DecodingKey::from_rsa_pem`), validating `iss`, `aud`, `exp`, `iat`, `sub`.
//!
//! jsonwebtoken fixes its crypto provider process-wide on first use, and jose-core installs keybound's own
//! (its RSA verifier, `jwt_provider.rs`) the first time it verifies. This file is its own test binary, so its
//! own process: every test installs the stock provider before anything else can, and nothing here calls
//! jose-core's verification (signing does not touch jsonwebtoken). So these checks never run through
//! keybound's RSA verifier.

mod common;

use key_provider::{KeySpec, PublicKey};
use provisioning_signer::batch::{self, BatchOptions};
use provisioning_signer::{Audience, AuthCodeRequest, AuthCodeSigner, Subject};
use serde_json::Value;

/// Installs jsonwebtoken's stock provider; fails the test if another provider got there first.
fn stock_provider() {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let installed = *INSTALLED.get_or_init(|| {
        jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
            .install_default()
            .is_ok()
    });
    assert!(
        installed,
        "another jsonwebtoken provider was installed first"
    );
}

fn verify(public: &PublicKey, jwt: &str, aud: &str) -> jsonwebtoken::errors::Result<Value> {
    stock_provider();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.to_spki_pem().as_bytes())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_issuer(&["acmebank"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    v.leeway = 0;
    Ok(jsonwebtoken::decode::<Value>(jwt, &key, &v)?.claims)
}

fn signer(dir: &tempfile::TempDir) -> AuthCodeSigner {
    AuthCodeSigner::new(
        common::new_key(dir, "issuer.pem", KeySpec::Rsa(2048)),
        "acmebank",
    )
    .unwrap()
}

#[test]
fn stock_jsonwebtoken_verifies_our_codes_and_refuses_forgeries() {
    stock_provider();
    let dir = tempfile::tempdir().unwrap();
    let signer = signer(&dir);
    let public = signer.key().public_key();
    let request = AuthCodeRequest::new(
        Subject::IssuerCardRefId("card-42".into()),
        Audience::GooglePay,
    );
    let code = signer.sign(&request).unwrap();
    let claims = verify(public, code.as_str(), "GOOGLE_PAY").unwrap();
    assert_eq!(claims["sub"], "card-42");
    let header = jsonwebtoken::decode_header(code.as_str()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(signer.kid()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    let async_code = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(signer.sign_async(&request))
        .unwrap();
    verify(public, async_code.as_str(), "GOOGLE_PAY").unwrap();

    // The same library refuses: another key, a flipped signature, another audience.
    let other = common::new_key(&dir, "other.pem", KeySpec::Rsa(2048));
    assert!(verify(other.public_key(), code.as_str(), "GOOGLE_PAY").is_err());
    let mut tampered = code.as_str().to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'Q' } else { 'A' });
    assert!(verify(public, &tampered, "GOOGLE_PAY").is_err());
    assert!(verify(public, code.as_str(), "APPLE_PAY").is_err());
}

#[test]
fn stock_jsonwebtoken_verifies_every_batch_code() {
    stock_provider();
    let dir = tempfile::tempdir().unwrap();
    let signer = signer(&dir);
    let auds = ["GOOGLE_PAY", "APPLE_PAY", "SAMSUNG_PAY"];
    let input: String = (0..30)
        .map(|i| format!("{{\"sub\":\"card-{i:02}\",\"aud\":\"{}\"}}\n", auds[i % 3]))
        .collect();
    let mut out = Vec::new();
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut out,
        &BatchOptions::with_concurrency(3),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((summary.signed, summary.errors), (30, 0));
    for (i, line) in String::from_utf8(out).unwrap().lines().enumerate() {
        let line: Value = serde_json::from_str(line).unwrap();
        let claims = verify(
            signer.key().public_key(),
            line["jwt"].as_str().unwrap(),
            auds[i % 3],
        )
        .unwrap_or_else(|e| panic!("line {i}: {e}"));
        assert_eq!(claims["sub"], format!("card-{i:02}"));
    }
}

//! The "done when" of the issue, against SoftHSM: an issuer whose RSA-2048 key lives in a PKCS#11 token
//! signs authorization codes one at a time (sync and async) and in batch, and josekit (OpenSSL) accepts them;
//! the enrollment JWE produced alongside decrypts with josekit. An EC key in the token is refused.
//!
//! Needs `cargo xtask softhsm-test -p provisioning-signer`; without its variables each test prints a loud
//! SKIPPED line and passes (unless `KEYBOUND_TEST_PKCS11_REQUIRED=1`, which makes skipping a failure).

#![cfg(feature = "pkcs11")]

mod common;

use std::sync::Arc;

use key_provider::{EcCurve, KeyBackend, KeySpec, OpenOptions};
use keybound_test_support::pkcs11::TestToken;
use provisioning_signer::batch::{self, BatchOptions};
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, CardData, EnrollmentEncryptor,
    SecretString, Subject, load_public_key, push_provisioning,
};
use serde_json::Value;

/// A fresh key in a token of this test's own, opened again by its key reference the way the CLI does.
/// Tests running in parallel never share a token: SoftHSM's file object store fails key generation that
/// races another thread's use of the same token (SoftHSMv2 issue 573).
fn token_key(test: &str, spec: KeySpec) -> Option<Arc<dyn KeyBackend>> {
    let token = TestToken::fresh(test, test.trim_start_matches("softhsm_"))?;
    let label = format!("ps-{}-{test}", std::process::id());
    let label = &label[..label.len().min(60)];
    key_provider::pkcs11::generate(&token.uri(label), spec, &OpenOptions::new())
        .expect("generate in SoftHSM");
    let key_ref = token.key_ref(label).parse().expect("key reference");
    Some(key_provider::open(&key_ref, &OpenOptions::new()).expect("open the token key"))
}

/// josekit (OpenSSL, from the SPKI PEM) accepts the code: an implementation independent of keybound's.
fn independent_verify(key: &dyn KeyBackend, jwt: &str, aud: &str) -> Value {
    Value::Object(common::josekit_verify(key.public_key(), jwt, "ISSUER0001", aud).1)
}

#[test]
fn softhsm_rsa_key_signs_codes_and_payloads_an_independent_implementation_accepts() {
    let Some(key) = token_key("softhsm_single", KeySpec::Rsa(2048)) else {
        return;
    };
    assert_eq!(key.backend_name(), "pkcs11");
    let signer = AuthCodeSigner::new(key.clone(), "ISSUER0001").unwrap();

    let code = signer
        .sign(&AuthCodeRequest::new(
            Subject::IssuerCardRefId("hsm-card-1".into()),
            Audience::ApplePay,
        ))
        .unwrap();
    let claims = independent_verify(key.as_ref(), code.as_str(), "APPLE_PAY");
    assert_eq!(claims["sub"], "hsm-card-1");
    let verified = AuthCodeVerifier::new(key.public_key().clone())
        .unwrap()
        .verify(code.as_str())
        .unwrap();
    assert_eq!(verified.kid, jose_core::thumbprint(key.public_key()));

    // Code and enrollment data together; josekit decrypts the payload with the Thales test key.
    let thales = load_public_key(&common::fixture_bytes("thales_test.cert.pem")).unwrap();
    let encryptor = EnrollmentEncryptor::new(thales.key, "ISSUER0001").unwrap();
    let card = CardData::new(
        "hsm-card-2",
        SecretString::from("4111111111111111"),
        SecretString::from("1230"),
        SecretString::from("HSM HOLDER"),
    );
    let both =
        push_provisioning(&signer, &encryptor, &card, Audience::GooglePay, Some(60)).unwrap();
    assert_eq!(
        independent_verify(key.as_ref(), both.auth_code.as_str(), "GOOGLE_PAY")["sub"],
        "hsm-card-2"
    );
    let decrypter = josekit::jwe::RSA_OAEP_256
        .decrypter_from_pem(common::fixture_bytes("thales_test.key.pem"))
        .unwrap();
    let (plaintext, _) =
        josekit::jwe::deserialize_compact(&both.enrollment_data, &decrypter).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&plaintext).unwrap()["issuerCardRefId"],
        "hsm-card-2"
    );
}

#[test]
fn softhsm_batch_keeps_order_and_every_code_verifies() {
    let Some(key) = token_key("softhsm_batch", KeySpec::Rsa(2048)) else {
        return;
    };
    let signer = AuthCodeSigner::new(key.clone(), "ISSUER0001")
        .unwrap()
        .with_kid("hsm-kid-1")
        .unwrap();
    let input: String = (0..200)
        .map(|i| {
            format!(
                "{{\"sub\":\"card-{i}\",\"aud\":\"SAMSUNG_PAY\",\"token_id\":{}}}\n",
                i % 2 == 0
            )
        })
        .collect();
    let mut out = Vec::new();
    let options = BatchOptions::for_signer(&signer);
    assert_eq!(
        options.concurrency,
        OpenOptions::DEFAULT_PKCS11_MAX_SESSIONS
    );
    let summary = batch::run(&signer, input.as_bytes(), &mut out, &options, &mut |_| {}).unwrap();
    assert_eq!((summary.total, summary.errors), (200, 0));
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 200);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["sub"], format!("card-{i}"));
        let claims = independent_verify(key.as_ref(), line["jwt"].as_str().unwrap(), "SAMSUNG_PAY");
        assert_eq!(claims["sub"], format!("card-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_async_signing_runs_off_the_worker_threads() {
    let Some(key) = token_key("softhsm_async", KeySpec::Rsa(2048)) else {
        return;
    };
    let signer = AuthCodeSigner::new(key.clone(), "ISSUER0001").unwrap();
    let code = signer
        .sign_async(&AuthCodeRequest::new(
            Subject::TokenId("tok-1".into()),
            Audience::GooglePay,
        ))
        .await
        .unwrap();
    assert_eq!(
        independent_verify(key.as_ref(), code.as_str(), "GOOGLE_PAY")["sub"],
        "tok-1"
    );
}

#[test]
fn softhsm_ec_key_is_refused() {
    let Some(key) = token_key("softhsm_ec", KeySpec::Ec(EcCurve::P256)) else {
        return;
    };
    let err = AuthCodeSigner::new(key, "ISSUER0001").unwrap_err();
    assert!(err.to_string().contains("EC P-256"), "{err}");
}

//! Response message-level encryption with the merchant's response key inside a PKCS#11 token (SoftHSM):
//! the simulator encrypts the answer (josekit) to the token key's public half, and flex-client unwraps the
//! content-encryption key in the token through `KeyBackend::decrypt_async`. RSA-OAEP (SHA-1) must work on
//! every SoftHSM; RSA-OAEP-256 works where the token supports OAEP with SHA-256 and otherwise fails with the
//! token's clear "not supported" error, never a wrong plaintext.
//!
//! Runs under `cargo xtask softhsm-test`; without it, the test prints a loud SKIPPED line and passes.

#![cfg(feature = "pkcs11")]

mod support;

use flex_client::key_provider::{self, KeySpec, KeyUsage, OpenOptions};
use flex_client::{JwtAuth, MerchantAuth, Mle, MleCertificate, ResponseMle, SessionEndpoint};
use flex_simulator::FlexSimulator;
use keybound_test_support::pkcs11::TestToken;
use support::{KEY_ID, MERCHANT, client, flex_fields, merchant_file_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_mle_with_the_response_key_in_softhsm() {
    let Some(token) =
        TestToken::shared("flex-client response_mle_with_the_response_key_in_softhsm")
    else {
        return;
    };
    let label = format!("flex-mle-response-{}", std::process::id());
    let generated = key_provider::pkcs11::generate_with_usage(
        &token.uri(&label),
        KeySpec::Rsa(2048),
        KeyUsage::Decrypt,
        &OpenOptions::new(),
    )
    .unwrap();
    let public_pem = generated.public_key().to_spki_pem();
    drop(generated);
    let key =
        key_provider::open(&token.key_ref(&label).parse().unwrap(), &OpenOptions::new()).unwrap();
    assert_eq!(key.backend_name(), "pkcs11");

    let sim = FlexSimulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth =
        MerchantAuth::Jwt(JwtAuth::new(MERCHANT, KEY_ID, merchant_file_key(&sim, &dir)).unwrap());
    sim.add_merchant_response_mle_key(MERCHANT, "hsm-resp-1", &public_pem);
    sim.require_request_mle(true);
    let cert = dir.path().join("mle.pem");
    std::fs::write(&cert, sim.mle_certificate_pem()).unwrap();
    let mle = Mle::new(MleCertificate::from_file(&cert).unwrap())
        .with_response(ResponseMle::new(key, "hsm-resp-1").unwrap());
    let client = client(&sim);

    sim.response_mle_sha1(true);
    let context = client
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &flex_fields(), &mle)
        .await
        .unwrap();
    assert_eq!(context.as_str().split('.').count(), 3);
    assert_eq!(sim.stats().encrypted_responses, 1);

    sim.response_mle_sha1(false);
    match client
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &flex_fields(), &mle)
        .await
    {
        Ok(context) => assert_eq!(context.as_str().split('.').count(), 3),
        Err(e) => assert!(e.to_string().contains("not supported"), "{e}"),
    }
}

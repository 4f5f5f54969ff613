//! The full flow with the merchant's JWT-authentication key inside a PKCS#11 token (SoftHSM): the key is
//! generated in the token, only its public half is registered with the simulator, and every capture-context
//! request is signed by the token through `KeyBackend::sign_async`.
//!
//! Runs under `cargo xtask softhsm-test` (which creates the token and exports its identity); without it, the
//! test prints a loud SKIPPED line and passes.

#![cfg(feature = "pkcs11")]

mod support;

use flex_client::key_provider::{self, KeySpec, OpenOptions};
use flex_client::{JwtAuth, MerchantAuth, SessionEndpoint};
use flex_simulator::FlexSimulator;
use keybound_test_support::pkcs11::TestToken;
use support::{KEY_ID, MERCHANT, card_data, client, flex_fields};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_the_merchant_key_in_softhsm() {
    let Some(token) = TestToken::shared("flex-client full_flow_with_the_merchant_key_in_softhsm")
    else {
        return;
    };
    let label = format!("flex-merchant-{}", std::process::id());
    let uri = token.uri(&label);
    let generated =
        key_provider::pkcs11::generate(&uri, KeySpec::Rsa(2048), &OpenOptions::new()).unwrap();
    let public_pem = generated.public_key().to_spki_pem();
    drop(generated);
    // Opened again by its URI, as an application would.
    let key =
        key_provider::open(&token.key_ref(&label).parse().unwrap(), &OpenOptions::new()).unwrap();
    assert_eq!(key.backend_name(), "pkcs11");

    let sim = FlexSimulator::start().await.unwrap();
    sim.add_merchant_jwt_key(MERCHANT, KEY_ID, &public_pem);
    let auth = MerchantAuth::Jwt(JwtAuth::new(MERCHANT, KEY_ID, key).unwrap());
    let client = client(&sim);
    // Concurrent requests share the token's session pool.
    let mut tasks = Vec::new();
    for endpoint in [
        SessionEndpoint::Flex,
        SessionEndpoint::Microform,
        SessionEndpoint::UnifiedPayments,
    ] {
        let (client, auth) = (client.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let body = if endpoint == SessionEndpoint::Flex {
                flex_fields()
            } else {
                serde_json::json!({})
            };
            let context = client
                .request_capture_context(&auth, endpoint, &body)
                .await
                .unwrap();
            client
                .tokenize_and_verify(&context, &card_data())
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let verified = t.await.unwrap();
        assert_eq!(
            verified.claims().masked_card_number(),
            Some("XXXXXXXXXXXX1111")
        );
    }
    let stats = sim.stats();
    assert_eq!(
        (
            stats.session_requests,
            stats.auth_failures,
            stats.tokens_issued
        ),
        (3, 0, 3)
    );
}

/// The PSP's EPC decryption key inside the token: the content key of a Click to Pay EPC (RSA-OAEP-256) is
/// unwrapped by the token. A token without OAEP-SHA256 (Debian's SoftHSM 2.6) answers "not supported by this
/// token" (`JoseError::Key`, which the CLI maps to exit 2), never "decryption failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epc_opens_with_the_psp_key_in_softhsm() {
    let Some(token) = TestToken::shared("flex-client epc_opens_with_the_psp_key_in_softhsm") else {
        return;
    };
    let label = format!("flex-psp-{}", std::process::id());
    let generated = key_provider::pkcs11::generate_with_usage(
        &token.uri(&label),
        KeySpec::Rsa(2048),
        key_provider::KeyUsage::Decrypt,
        &OpenOptions::new(),
    )
    .unwrap();
    let psp_pem = generated.public_key().to_spki_pem();
    drop(generated);
    let key =
        key_provider::open(&token.key_ref(&label).parse().unwrap(), &OpenOptions::new()).unwrap();
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let context_text = sim.issue_capture_context(
        flex_simulator::SessionKind::UnifiedCheckout,
        &serde_json::json!({}),
    );
    let context = client.verify_capture_context(&context_text).await.unwrap();
    let mut c2p = flex_simulator::ClickToPay::default();
    c2p.credentials
        .insert("marker".into(), serde_json::json!("epc-in-hsm"));
    let session = sim.click_to_pay(&context_text, &psp_pem, &c2p).unwrap();
    let verified = client
        .verify_transient_token(&context, &session.transient_token)
        .await
        .unwrap();
    match flex_client::open_credentials_async(
        &session.epc,
        key.as_ref(),
        &verified,
        &flex_client::OpenOptions::new(),
    )
    .await
    {
        Ok(opened) => assert_eq!(opened.raw_claims()["marker"], "epc-in-hsm"),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    flex_client::FlexError::Jose(flex_client::jose_core::JoseError::Key(
                        key_provider::KeyError::NotSupported { .. }
                    ))
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("not supported by this token"), "{e}");
        }
    }
}

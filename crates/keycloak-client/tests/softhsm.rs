//! A lender whose private key lives in a PKCS#11 token (SoftHSM) gets tokens from the real OpenID Connect
//! test server: the key is generated inside the token, only its public JWKS goes to the server, and every
//! client assertion is signed by the token.
//!
//! Runs with `cargo xtask softhsm-test` (which creates the token and exports `KEYBOUND_TEST_PKCS11_*`);
//! without those variables it prints a loud SKIPPED line.

#![cfg(feature = "pkcs11")]

use std::sync::Arc;
use std::time::Duration;

use key_provider::{KeySpec, OpenOptions};
use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
use keybound_test_support::pkcs11::TestToken;
use keycloak_client::{
    AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, JwsAlgorithm, KeycloakClient,
    TokenEndpoint, TokenSource,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

const REALM: &str = "loan-partner";
const LENDER: &str = "example-bank";
const USER: &str = "exampleuser@bank.example.com";
const PASSWORD: &str = "SecÜre!P4ssw0rd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lender_key_in_softhsm_gets_tokens_from_the_oidc_server() {
    const TEST: &str = "lender_key_in_softhsm_gets_tokens_from_the_oidc_server";
    let Some(token) = TestToken::shared(TEST) else {
        return;
    };
    let object = format!("keycloak-lender-{}", std::process::id());
    let key_ref = token.key_ref(&object);
    key_provider::pkcs11::generate(&token.uri(&object), KeySpec::Rsa(2048), &OpenOptions::new())
        .expect("generate the lender key inside the token");
    // Opened as an application would: by its key reference.
    let key = key_provider::open(&key_ref.parse().unwrap(), &OpenOptions::new()).unwrap();
    assert_eq!(key.backend_name(), "pkcs11");

    let config = ServerConfig::default().access_token_ttl(2).realm(
        REALM,
        Realm::default()
            .key_client(
                LENDER,
                &jwks_of(key.public_key()),
                &["password", "refresh_token"],
            )
            .user(USER, PASSWORD),
    );
    let Some(server) = OidcServer::start(TEST, &config) else {
        return;
    };
    let endpoint = TokenEndpoint::from_token_url(&server.token_url(REALM)).unwrap();

    // RS256 (default) and PS256 assertions, both signed in the token.
    for alg in [JwsAlgorithm::RS256, JwsAlgorithm::PS256] {
        let signer = ClientAssertionSigner::new(
            key.clone(),
            &AssertionConfig::new(LENDER).alg(alg),
            &endpoint,
        )
        .unwrap();
        let client = KeycloakClient::builder(endpoint.clone(), ClientAuth::PrivateKeyJwt(signer))
            .build()
            .unwrap();
        let r = client
            .password_grant(USER, &SecretString::from(PASSWORD), None)
            .await
            .unwrap();
        let r2 = client
            .refresh(r.refresh_token.as_ref().unwrap(), None)
            .await
            .unwrap();
        assert_ne!(
            r.access_token.expose_secret(),
            r2.access_token.expose_secret()
        );
    }

    // The token source: cached, then one refresh for 20 concurrent callers.
    let signer =
        ClientAssertionSigner::new(key.clone(), &AssertionConfig::new(LENDER), &endpoint).unwrap();
    let client = Arc::new(
        KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer))
            .build()
            .unwrap(),
    );
    let source = Arc::new(TokenSource::new(
        client,
        FullGrant::password(USER, SecretString::from(PASSWORD)),
    ));
    let first = source.access_token().await.unwrap();
    assert_eq!(
        first.expose_secret(),
        source.access_token().await.unwrap().expose_secret()
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.admin(REALM, "delay-token?ms=200").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.access_token().await.unwrap().expose_secret().to_owned() })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(seen.len(), 1);
    let stats = server.stats().await;
    assert_eq!(
        stats[REALM]["requests"],
        json!({"password": 3, "refresh_token": 3}),
        "{stats}"
    );
}

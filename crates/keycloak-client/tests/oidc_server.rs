//! keycloak-client against a real OpenID Connect server: the npm package `oidc-provider`, mounted at
//! `/realms/<realm>` like Keycloak, with a `password` grant and Keycloak's client-assertion rules (one `aud`,
//! 60 s lifetime, single-use `jti`, 15 s skew). Request counts are read on the server side.
//!
//! Each test starts its own server on a free loopback port, or skips loudly when `node` or
//! `tests/oidc-provider/node_modules` is missing (`npm ci --prefix tests/oidc-provider`).

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server;
use jose_core::{JwsAlgorithm, JwsHeader};
use key_provider::{EcCurve, KeyBackend, KeySpec};
use keybound_test_support::capture::capture;
use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
use keycloak_client::{
    ASSERTION_TYPE, AssertionConfig, Audience, ClientAssertionSigner, ClientAuth, FullGrant, KeyId,
    KeycloakClient, KeycloakError, OAuthErrorCode, OffsetClock, RetryPolicy, TokenEndpoint,
    TokenSource,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

const LENDER_REALM: &str = "loan-partner";
const PARTNER_REALM: &str = "partner";
const LENDER: &str = "example-bank";
const SERVICE: &str = "example-service";
const EC_LENDER: &str = "example-bank-ec";
const PARTNER: &str = "example-partner";
const PARTNER_SECRET: &str = "example-partner-dummysecret";
const USER: &str = "exampleuser@bank.example.com";
const PARTNER_USER: &str = "exampleuser@partner.example.com";
const PASSWORD: &str = "SecÜre!P4ssw0rd";

struct Keys {
    _dir: tempfile::TempDir,
    rsa: Arc<dyn KeyBackend>,
    ec: Arc<dyn KeyBackend>,
    other_rsa: Arc<dyn KeyBackend>,
}

fn open(path: &std::path::Path, spec: KeySpec) -> Arc<dyn KeyBackend> {
    key_provider::file::generate(path, spec).unwrap();
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap()
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    Keys {
        rsa: open(&dir.path().join("rsa.pem"), KeySpec::Rsa(2048)),
        ec: open(&dir.path().join("ec.pem"), KeySpec::Ec(EcCurve::P256)),
        other_rsa: open(&dir.path().join("other.pem"), KeySpec::Rsa(2048)),
        _dir: dir,
    }
}

fn config(keys: &Keys) -> ServerConfig {
    let jwks = jwks_of(keys.rsa.public_key());
    ServerConfig::default()
        .realm(
            LENDER_REALM,
            Realm::default()
                .key_client(LENDER, &jwks, &["password", "refresh_token"])
                .key_client(
                    EC_LENDER,
                    &jwks_of(keys.ec.public_key()),
                    &["password", "refresh_token"],
                )
                .key_client(SERVICE, &jwks, &["client_credentials"])
                .user(USER, PASSWORD),
        )
        .realm(
            PARTNER_REALM,
            Realm::default()
                .secret_client(PARTNER, PARTNER_SECRET, &["password", "refresh_token"])
                .user(PARTNER_USER, PASSWORD),
        )
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new(3, Duration::from_millis(20), Duration::from_millis(100))
}

fn key_client_with(
    server: &OidcServer,
    key: &Arc<dyn KeyBackend>,
    cfg: &AssertionConfig,
    customize: impl FnOnce(
        keycloak_client::KeycloakClientBuilder,
    ) -> keycloak_client::KeycloakClientBuilder,
) -> KeycloakClient {
    let endpoint = TokenEndpoint::from_token_url(&server.token_url(LENDER_REALM)).unwrap();
    let signer = ClientAssertionSigner::new(key.clone(), cfg, &endpoint).unwrap();
    customize(
        KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer)).retry(fast_retries()),
    )
    .build()
    .unwrap()
}

fn lender(server: &OidcServer, key: &Arc<dyn KeyBackend>, cfg: &AssertionConfig) -> KeycloakClient {
    key_client_with(server, key, cfg, |b| b)
}

fn password() -> SecretString {
    SecretString::from(PASSWORD)
}

fn oauth_code(e: &KeycloakError) -> OAuthErrorCode {
    e.oauth()
        .unwrap_or_else(|| panic!("expected an OAuth error, got {e}"))
        .code
        .clone()
}

#[tokio::test]
async fn lender_password_grant_with_private_key_jwt() {
    let keys = keys();
    let server = server!("lender_password_grant_with_private_key_jwt", config(&keys));
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    let r = client
        .password_grant(USER, &password(), Some("openid profile"))
        .await
        .unwrap();
    assert!(!r.access_token.expose_secret().is_empty());
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, Some(300));
    assert_eq!(r.refresh_expires_in, Some(1800));
    assert!(r.refresh_token.is_some());
    assert!(r.id_token.is_some(), "scope openid gives an id_token");
    assert_eq!(r.scope.as_deref(), Some("openid profile"));
    assert_eq!(r.not_before_policy, Some(0));
    assert!(r.session_state.is_some());
    assert_eq!(
        r.extra["x-test-unknown-member"]["nested"], true,
        "unknown members are kept, not refused"
    );
    assert_eq!(server.count(LENDER_REALM, "success", "password").await, 1);
}

#[tokio::test]
async fn lender_assertions_with_ps256_and_es256_are_accepted() {
    let keys = keys();
    let server = server!(
        "lender_assertions_with_ps256_and_es256_are_accepted",
        config(&keys)
    );
    let ps = lender(
        &server,
        &keys.rsa,
        &AssertionConfig::new(LENDER).alg(JwsAlgorithm::PS256),
    );
    assert_eq!(
        ps.assertion()
            .await
            .unwrap()
            .jwt
            .expose_secret()
            .split('.')
            .count(),
        3
    );
    ps.password_grant(USER, &password(), None).await.unwrap();
    let es = lender(
        &server,
        &keys.ec,
        &AssertionConfig::new(EC_LENDER).alg(JwsAlgorithm::ES256),
    );
    es.password_grant(USER, &password(), None).await.unwrap();
    assert_eq!(server.count(LENDER_REALM, "success", "password").await, 2);
}

#[tokio::test]
async fn kid_thumbprint_fixed_and_omitted() {
    let keys = keys();
    let server = server!("kid_thumbprint_fixed_and_omitted", config(&keys));
    // The registered JWK's kid is the thumbprint: the default matches it.
    lender(&server, &keys.rsa, &AssertionConfig::new(LENDER))
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    // Without kid the server tries the client's (single) key.
    lender(
        &server,
        &keys.rsa,
        &AssertionConfig::new(LENDER).kid(KeyId::Omit),
    )
    .password_grant(USER, &password(), None)
    .await
    .unwrap();
    // A kid the server does not know: refused, which shows the header's kid is what we configured.
    let e = lender(
        &server,
        &keys.rsa,
        &AssertionConfig::new(LENDER).kid(KeyId::Fixed("not-registered".into())),
    )
    .password_grant(USER, &password(), None)
    .await
    .unwrap_err();
    assert_eq!(oauth_code(&e), OAuthErrorCode::InvalidClient);
}

#[tokio::test]
async fn issuer_audience_is_accepted() {
    let keys = keys();
    let server = server!("issuer_audience_is_accepted", config(&keys));
    let client = lender(
        &server,
        &keys.rsa,
        &AssertionConfig::new(LENDER).audience(Audience::Issuer),
    );
    let a = client.assertion().await.unwrap();
    let (_, claims) = jose_core::jwt::decode_unverified(a.jwt.expose_secret()).unwrap();
    assert_eq!(claims["aud"], server.issuer(LENDER_REALM).as_str());
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    let wrong = lender(
        &server,
        &keys.rsa,
        &AssertionConfig::new(LENDER).audience(Audience::Custom("https://elsewhere".into())),
    );
    assert_eq!(
        oauth_code(
            &wrong
                .password_grant(USER, &password(), None)
                .await
                .unwrap_err()
        ),
        OAuthErrorCode::InvalidClient
    );
}

/// Posts a password grant with a hand-made assertion (claims as given) and returns (status, body).
async fn raw_assertion_request(
    server: &OidcServer,
    key: &Arc<dyn KeyBackend>,
    claims: &Value,
) -> (u16, Value) {
    let header = JwsHeader::new(JwsAlgorithm::RS256)
        .typ("JWT")
        .kid(jose_core::thumbprint(key.public_key()));
    let jwt = jose_core::jwt::sign_async(key.as_ref(), &header, claims)
        .await
        .unwrap();
    raw_request(server, &jwt).await
}

async fn raw_request(server: &OidcServer, jwt: &str) -> (u16, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(server.token_url(LENDER_REALM))
        .form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", PASSWORD),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn server_enforces_keycloak_assertion_rules() {
    let keys = keys();
    let server = server!("server_enforces_keycloak_assertion_rules", config(&keys));
    let now = jose_core::jwt::now();
    let aud = server.token_url(LENDER_REALM);
    let base = |jti: &str| json!({"iss": LENDER, "sub": LENDER, "aud": aud, "jti": jti, "iat": now, "exp": now + 60});
    // The control: a well-formed assertion passes.
    assert_eq!(
        raw_assertion_request(&server, &keys.rsa, &base("ok-1"))
            .await
            .0,
        200
    );
    // Two audiences (both acceptable on their own): refused, as Keycloak >= 26.2 does.
    let mut two = base("aud-2");
    two["aud"] = json!([aud, server.issuer(LENDER_REALM)]);
    let (status, body) = raw_assertion_request(&server, &keys.rsa, &two).await;
    // Keycloak answers a refused assertion with 400 invalid_client.
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Multiple audiences"),
        "{body}"
    );
    // Without iat, exp more than 60 s ahead: refused.
    let long = json!({"iss": LENDER, "sub": LENDER, "aud": aud, "jti": "long-1", "exp": now + 120});
    let (status, body) = raw_assertion_request(&server, &keys.rsa, &long).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    // Issued 40 s in the future (beyond the 15 s skew): refused.
    let mut future = base("future-1");
    future["iat"] = json!(now + 40);
    future["exp"] = json!(now + 90);
    let (status, body) = raw_assertion_request(&server, &keys.rsa, &future).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    // Issued 10 s in the future (within the skew): accepted.
    let mut near = base("near-1");
    near["iat"] = json!(now + 10);
    near["exp"] = json!(now + 60);
    assert_eq!(
        raw_assertion_request(&server, &keys.rsa, &near).await.0,
        200
    );
    // Without jti: refused.
    let no_jti = json!({"iss": LENDER, "sub": LENDER, "aud": aud, "iat": now, "exp": now + 60});
    let (status, body) = raw_assertion_request(&server, &keys.rsa, &no_jti).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    // No client authenticated: an issuer that is not the subject (Keycloak ignores such an assertion), or
    // an unknown client. 401, as Keycloak answers.
    let mut other_iss = base("iss-1");
    other_iss["iss"] = json!("someone-else");
    let mut unknown = base("unknown-1");
    unknown["iss"] = json!("nobody");
    unknown["sub"] = json!("nobody");
    for claims in [other_iss, unknown] {
        let (status, body) = raw_assertion_request(&server, &keys.rsa, &claims).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{body}"
        );
        assert_eq!(
            body["error_description"], "Invalid client or Invalid client credentials",
            "{body}"
        );
    }
}

#[tokio::test]
async fn assertion_replay_is_rejected() {
    let keys = keys();
    let server = server!("assertion_replay_is_rejected", config(&keys));
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    let a = client.assertion().await.unwrap();
    let (first, _) = raw_request(&server, a.jwt.expose_secret()).await;
    assert_eq!(first, 200);
    let (second, body) = raw_request(&server, a.jwt.expose_secret()).await;
    assert_eq!(second, 400, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "Token reuse detected");
    // The library itself never reuses one: many requests in a row all pass.
    for _ in 0..5 {
        client
            .password_grant(USER, &password(), None)
            .await
            .unwrap();
    }
    assert_eq!(server.count(LENDER_REALM, "success", "password").await, 6);
}

#[tokio::test]
async fn wrong_key_is_rejected_and_not_retried() {
    let keys = keys();
    let server = server!("wrong_key_is_rejected_and_not_retried", config(&keys));
    // Same kid as the registered key (so the server looks at it), signed by another key.
    let cfg = AssertionConfig::new(LENDER)
        .kid(KeyId::Fixed(jose_core::thumbprint(keys.rsa.public_key())));
    let e = lender(&server, &keys.other_rsa, &cfg)
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), OAuthErrorCode::InvalidClient);
    assert!(e.is_rejection());
    let msg = e.to_string();
    assert!(
        msg.contains("invalid_client") && msg.contains("public key"),
        "{msg}"
    );
    assert!(
        msg.contains("Signature"),
        "server's description is carried: {msg}"
    );
    assert_eq!(
        server.count(LENDER_REALM, "requests", "password").await,
        1,
        "4xx is never retried"
    );
}

#[tokio::test]
async fn wrong_user_password_is_invalid_grant_and_not_retried() {
    let keys = keys();
    let server = server!(
        "wrong_user_password_is_invalid_grant_and_not_retried",
        config(&keys)
    );
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    let secret = "definitely-wrong-Pa55";
    let e = client
        .password_grant(USER, &SecretString::from(secret), None)
        .await
        .unwrap_err();
    let oauth = e.oauth().unwrap();
    assert_eq!(
        (oauth.status, oauth.code.clone()),
        (401, OAuthErrorCode::InvalidGrant)
    );
    assert_eq!(
        oauth.description.as_deref(),
        Some("Invalid user credentials")
    );
    assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));
    assert_eq!(server.count(LENDER_REALM, "requests", "password").await, 1);
}

#[tokio::test]
async fn partner_password_grant_with_client_secret_post_and_basic() {
    let keys = keys();
    let server = server!(
        "partner_password_grant_with_client_secret_post_and_basic",
        config(&keys)
    );
    let endpoint = TokenEndpoint::from_token_url(&server.token_url(PARTNER_REALM)).unwrap();
    let secret = SecretString::from(PARTNER_SECRET);
    for auth in [
        ClientAuth::ClientSecretPost {
            client_id: PARTNER.into(),
            secret: secret.clone(),
        },
        ClientAuth::ClientSecretBasic {
            client_id: PARTNER.into(),
            secret: secret.clone(),
        },
    ] {
        let client = KeycloakClient::builder(endpoint.clone(), auth)
            .build()
            .unwrap();
        let r = client
            .password_grant(PARTNER_USER, &password(), None)
            .await
            .unwrap();
        assert!(r.refresh_token.is_some());
        let r2 = client
            .refresh(r.refresh_token.as_ref().unwrap(), None)
            .await
            .unwrap();
        assert_ne!(
            r2.access_token.expose_secret(),
            r.access_token.expose_secret()
        );
    }
    let bad = KeycloakClient::builder(
        endpoint,
        ClientAuth::ClientSecretBasic {
            client_id: PARTNER.into(),
            secret: SecretString::from("wrong-secret"),
        },
    )
    .build()
    .unwrap();
    let e = bad
        .password_grant(PARTNER_USER, &password(), None)
        .await
        .unwrap_err();
    assert_eq!(oauth_code(&e), OAuthErrorCode::InvalidClient);
    assert!(!e.to_string().contains("wrong-secret"));
    let stats = server.stats().await;
    assert_eq!(
        stats[PARTNER_REALM]["success"],
        json!({"password": 2, "refresh_token": 2}),
        "{stats}"
    );
}

#[tokio::test]
async fn refresh_grant_reauthenticates_and_rotates() {
    let keys = keys();
    let server = server!("refresh_grant_reauthenticates_and_rotates", config(&keys));
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    let first = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    let rt1 = first.refresh_token.unwrap();
    let second = client.refresh(&rt1, None).await.unwrap();
    let rt2 = second.refresh_token.unwrap();
    assert_ne!(
        rt1.expose_secret(),
        rt2.expose_secret(),
        "Keycloak-style rotation"
    );
    assert_ne!(
        first.access_token.expose_secret(),
        second.access_token.expose_secret()
    );
    // A used refresh token is refused with invalid_grant (never retried).
    let e = client.refresh(&rt1, None).await.unwrap_err();
    assert_eq!(oauth_code(&e), OAuthErrorCode::InvalidGrant);
    let stats = server.stats().await;
    assert_eq!(
        stats[LENDER_REALM]["requests"]["refresh_token"], 2,
        "{stats}"
    );
    assert_eq!(
        stats[LENDER_REALM]["success"]["refresh_token"], 1,
        "{stats}"
    );
}

#[tokio::test]
async fn client_credentials_grant() {
    let keys = keys();
    let server = server!("client_credentials_grant", config(&keys));
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(SERVICE));
    let r = client.client_credentials(None).await.unwrap();
    assert!(
        r.refresh_token.is_none(),
        "no refresh token for client credentials"
    );
    assert_eq!(r.refresh_expires_in, Some(0));
    assert_eq!(r.expires_in, Some(300));
    // The lender client has no client_credentials grant: refused.
    let e = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER))
        .client_credentials(None)
        .await
        .unwrap_err();
    assert!(e.is_rejection(), "{e}");
    assert_eq!(
        server
            .count(LENDER_REALM, "success", "client_credentials")
            .await,
        1
    );
}

#[tokio::test]
async fn expired_assertion_is_rejected_and_clock_skew_is_reported() {
    let keys = keys();
    let server = server!(
        "expired_assertion_is_rejected_and_clock_skew_is_reported",
        config(&keys)
    );
    // Our clock is 2 minutes behind: the assertion expired (by the server's clock) before it was sent.
    let client = key_client_with(&server, &keys.rsa, &AssertionConfig::new(LENDER), |b| {
        b.clock(Arc::new(OffsetClock { offset_secs: -120 }))
    });
    let e = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    let KeycloakError::ClockSkew { skew_secs, error } = &e else {
        panic!("expected ClockSkew, got {e}")
    };
    assert!(
        (118..=122).contains(skew_secs),
        "estimated skew {skew_secs}"
    );
    assert_eq!(error.code, OAuthErrorCode::InvalidClient);
    assert!(
        error.description.as_deref().unwrap().contains("not active"),
        "{error}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("ahead of ours") && msg.contains("NTP"),
        "{msg}"
    );
    assert_eq!(
        server.count(LENDER_REALM, "requests", "password").await,
        1,
        "not retried"
    );
    // A correct clock with a refused assertion for another reason is not blamed on skew.
    let ok_clock = lender(&server, &keys.other_rsa, &AssertionConfig::new(LENDER));
    assert!(matches!(
        ok_clock.password_grant(USER, &password(), None).await,
        Err(KeycloakError::OAuth(_))
    ));
}

#[tokio::test]
async fn clock_skew_compensation_retries_with_corrected_times() {
    let keys = keys();
    let server = server!(
        "clock_skew_compensation_retries_with_corrected_times",
        config(&keys)
    );
    let client = key_client_with(&server, &keys.rsa, &AssertionConfig::new(LENDER), |b| {
        b.clock(Arc::new(OffsetClock { offset_secs: -120 }))
            .compensate_clock_skew(true)
    });
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    assert!(
        (118..=122).contains(&client.clock_skew_correction()),
        "{}",
        client.clock_skew_correction()
    );
    // The correction sticks: the next request needs no second try.
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    let stats = server.stats().await;
    assert_eq!(stats[LENDER_REALM]["requests"]["password"], 3, "{stats}");
    assert_eq!(stats[LENDER_REALM]["success"]["password"], 2, "{stats}");
}

#[tokio::test]
async fn server_errors_are_retried_with_a_fresh_assertion_client_errors_are_not() {
    let keys = keys();
    let server = server!(
        "server_errors_are_retried_with_a_fresh_assertion_client_errors_are_not",
        config(&keys)
    );
    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    // Two 503s AFTER the server processed (and used up the jti of) each assertion: only a fresh assertion on
    // every retry can succeed.
    server
        .admin(LENDER_REALM, "fail-token?count=2&status=503&after=1")
        .await;
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    let stats = server.stats().await;
    assert_eq!(stats[LENDER_REALM]["requests"]["password"], 3, "{stats}");
    assert_eq!(
        stats[LENDER_REALM]["requests"]["failed-by-admin"], 2,
        "{stats}"
    );
    // Three 502s exhaust the 3 attempts.
    server
        .admin(LENDER_REALM, "fail-token?count=3&status=502")
        .await;
    let e = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KeycloakError::Server {
                status: 502,
                attempts: 3
            }
        ),
        "{e}"
    );
    // A 4xx (here 429) is never retried.
    server
        .admin(LENDER_REALM, "fail-token?count=5&status=429")
        .await;
    let e = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    assert_eq!(e.oauth().map(|o| o.status), Some(429), "{e}");
    assert_eq!(
        server
            .count(LENDER_REALM, "requests", "failed-by-admin")
            .await,
        2 + 3 + 1
    );
}

#[tokio::test]
async fn network_errors_are_retried_then_reported() {
    let keys = keys();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = TokenEndpoint::from_token_url(&format!(
        "http://127.0.0.1:{port}/realms/x/protocol/openid-connect/token"
    ))
    .unwrap();
    let signer =
        ClientAssertionSigner::new(keys.rsa.clone(), &AssertionConfig::new(LENDER), &endpoint)
            .unwrap();
    let client = KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer))
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(50),
            Duration::from_millis(100),
        ))
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, KeycloakError::Network { attempts: 3, .. }),
        "{e}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(75),
        "backed off between attempts: {:?}",
        started.elapsed()
    );
    assert!(!e.is_rejection());
    assert!(e.to_string().contains("check the URL"), "{e}");
}

fn lender_source(server: &OidcServer, keys: &Keys) -> TokenSource {
    let client = Arc::new(lender(server, &keys.rsa, &AssertionConfig::new(LENDER)));
    TokenSource::new(client, FullGrant::password(USER, password()))
}

#[tokio::test]
async fn token_source_caches_a_fresh_token() {
    let keys = keys();
    let server = server!("token_source_caches_a_fresh_token", config(&keys));
    let source = lender_source(&server, &keys);
    let a = source.access_token().await.unwrap();
    let b = source.access_token().await.unwrap();
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(server.count(LENDER_REALM, "requests", "password").await, 1);
    // After invalidate(), the refresh token is used (no new password grant).
    source.invalidate();
    let c = source.access_token().await.unwrap();
    assert_ne!(a.expose_secret(), c.expose_secret());
    let stats = server.stats().await;
    assert_eq!(
        stats[LENDER_REALM]["requests"],
        json!({"password": 1, "refresh_token": 1}),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_source_is_single_flight_for_100_concurrent_callers() {
    let keys = keys();
    let server = server!(
        "token_source_is_single_flight_for_100_concurrent_callers",
        config(&keys).access_token_ttl(2)
    );
    let source = Arc::new(lender_source(&server, &keys));
    let mut previous = source
        .access_token()
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    // Slow the server down so that every caller arrives while the one request is in flight.
    server.admin(LENDER_REALM, "delay-token?ms=300").await;
    // 2 s tokens: the 30 s margin is capped at half the lifetime, so the token is stale (refreshed ahead of
    // expiry) after 1 s, and expired after 2 s. 100 callers at once, in both states.
    for (round, (state, wait_ms)) in [("stale", 1200), ("expired", 2300)].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (source, barrier) = (source.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    source
                        .access_token()
                        .await
                        .unwrap()
                        .expose_secret()
                        .to_owned()
                })
            })
            .collect();
        let mut tokens = std::collections::HashSet::new();
        for t in tasks {
            tokens.insert(t.await.unwrap());
        }
        assert_eq!(
            tokens.len(),
            1,
            "{state}: all 100 callers got the same token"
        );
        assert!(!tokens.contains(&previous), "{state}: and it is a new one");
        previous = tokens.into_iter().next().unwrap();
        let stats = server.stats().await;
        assert_eq!(
            stats[LENDER_REALM]["requests"],
            json!({"password": 1, "refresh_token": round + 1}),
            "{state}: exactly one token request for 100 concurrent callers: {stats}"
        );
    }
}

#[tokio::test]
async fn token_source_falls_back_to_the_full_grant_when_refresh_fails() {
    let keys = keys();
    let server = server!(
        "token_source_falls_back_to_the_full_grant_when_refresh_fails",
        config(&keys).access_token_ttl(2)
    );
    let source = lender_source(&server, &keys);
    let first = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = source.access_token().await.unwrap(); // via refresh
    assert_ne!(first.expose_secret(), second.expose_secret());
    let revoked = server.admin(LENDER_REALM, "revoke-refresh-tokens").await;
    assert!(
        revoked["revoked_grants"].as_u64().unwrap() >= 1,
        "{revoked}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = source.access_token().await.unwrap(); // refresh refused -> password grant
    assert_ne!(second.expose_secret(), third.expose_secret());
    let stats = server.stats().await;
    assert_eq!(
        stats[LENDER_REALM]["requests"],
        json!({"password": 2, "refresh_token": 2}),
        "{stats}"
    );
    assert_eq!(
        stats[LENDER_REALM]["errors"],
        json!({"refresh_token:invalid_grant": 1}),
        "{stats}"
    );
}

#[tokio::test]
async fn token_source_with_client_credentials_runs_the_full_grant_each_time() {
    let keys = keys();
    let server = server!(
        "token_source_with_client_credentials_runs_the_full_grant_each_time",
        config(&keys).access_token_ttl(2)
    );
    let client = Arc::new(lender(&server, &keys.rsa, &AssertionConfig::new(SERVICE)));
    let source = TokenSource::new(client, FullGrant::ClientCredentials);
    let a = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = source.access_token().await.unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(
        server.stats().await[LENDER_REALM]["requests"],
        json!({"client_credentials": 2})
    );
}

#[tokio::test]
async fn token_source_keeps_the_cached_token_when_renewal_fails_before_expiry() {
    let keys = keys();
    let server = server!(
        "token_source_keeps_the_cached_token_when_renewal_fails_before_expiry",
        config(&keys).access_token_ttl(8)
    );
    let source = lender_source(&server, &keys);
    let a = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(4100)).await; // stale (half of 8 s), ~4 s from expiry
    server
        .admin(LENDER_REALM, "fail-token?count=3&status=503")
        .await;
    let b = source.access_token().await.unwrap();
    assert_eq!(
        a.expose_secret(),
        b.expose_secret(),
        "still valid: used while the server is down"
    );
    assert_eq!(
        server
            .count(LENDER_REALM, "requests", "failed-by-admin")
            .await,
        3,
        "one renewal, its 3 attempts refused"
    );
    // The server is back, but the next renewal waits a backoff (0.5..1 s after the first failure): the
    // cached token meanwhile, without a request.
    let c = source.access_token().await.unwrap();
    assert_eq!(a.expose_secret(), c.expose_secret());
    let stats = server.stats().await;
    assert!(
        stats[LENDER_REALM]["requests"]
            .get("refresh_token")
            .is_none(),
        "{stats}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let d = source.access_token().await.unwrap(); // backoff over: renewed
    assert_ne!(a.expose_secret(), d.expose_secret());
    assert_eq!(
        server.count(LENDER_REALM, "success", "refresh_token").await,
        1
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_assertions_passwords_and_secrets_are_never_logged() {
    let keys = keys();
    let server = server!(
        "tokens_assertions_passwords_and_secrets_are_never_logged",
        config(&keys)
    );
    let (captured, _guard) = capture();

    let client = lender(&server, &keys.rsa, &AssertionConfig::new(LENDER));
    let assertion = client.assertion().await.unwrap();
    let r = client
        .password_grant(USER, &password(), Some("openid"))
        .await
        .unwrap();
    let rt = r.refresh_token.clone().unwrap();
    let r2 = client.refresh(&rt, None).await.unwrap();
    let _ = client
        .password_grant(USER, &SecretString::from("wrong-password-XYZ"), None)
        .await
        .unwrap_err();
    let partner = KeycloakClient::builder(
        TokenEndpoint::from_token_url(&server.token_url(PARTNER_REALM)).unwrap(),
        ClientAuth::ClientSecretBasic {
            client_id: PARTNER.into(),
            secret: SecretString::from(PARTNER_SECRET),
        },
    )
    .build()
    .unwrap();
    let r3 = partner
        .password_grant(PARTNER_USER, &password(), None)
        .await
        .unwrap();
    let source = TokenSource::new(Arc::new(client), FullGrant::password(USER, password()));
    let t = source.access_token().await.unwrap();

    let log = captured.text();
    let secrets = [
        r.access_token.expose_secret(),
        rt.expose_secret(),
        r.id_token.as_ref().unwrap().expose_secret(),
        r2.access_token.expose_secret(),
        r3.access_token.expose_secret(),
        t.expose_secret(),
        assertion.jwt.expose_secret(),
        PASSWORD,
        "wrong-password-XYZ",
        PARTNER_SECRET,
    ];
    for s in secrets {
        assert!(!log.contains(s), "a secret leaked into the log:\n{log}");
    }
    // Assertions' signing input (header.payload) must not appear either.
    let signing_input = assertion.jwt.expose_secret().rsplit_once('.').unwrap().0;
    assert!(!log.contains(signing_input));
    // …while the log does say who asked for what, and how it went.
    assert!(
        log.contains("client_id=\"example-bank\"") || log.contains("client_id=example-bank"),
        "{log}"
    );
    assert!(
        log.contains("grant=\"password\"") || log.contains("grant=password"),
        "{log}"
    );
    assert!(log.contains("latency_ms="), "{log}");
    assert!(
        log.contains("outcome=\"error\"") || log.contains("outcome=error"),
        "{log}"
    );
    let _ = std::io::stderr().flush();
}

//! Identity-provider faults against the real OpenID Connect test server (`tests/oidc-provider/server.mjs`),
//! using its `answer-token`, `fail-token` and `delay-token` switches: HTML error pages (200, 403, 502),
//! malformed JSON, a 200 without `access_token`, a JSON array, `expires_in` huge, overflowing or negative,
//! 5xx, responses slower than the client's timeout, and a port nobody listens on. Each gives a typed error
//! with a clear reason after a bounded number of attempts (retries only for 5xx and network errors), and no
//! password, client secret, assertion or token appears in any error or log line.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server;
use keybound_test_support::capture::capture;
use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
use keycloak_client::key_provider::{self, KeyBackend, KeySpec};
use keycloak_client::secrecy::{ExposeSecret as _, SecretString};
use keycloak_client::{
    AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient, KeycloakError,
    RetryPolicy, TokenEndpoint, TokenSource,
};

const REALM: &str = "loan-partner";
const LENDER: &str = "example-bank";
const PARTNER: &str = "example-partner";
const PARTNER_SECRET: &str = "example-partner-dummysecret-7Qx";
const USER: &str = "exampleuser@bank.example.com";
const PASSWORD: &str = "SecÜre!P4ssw0rd-faults";

fn key(dir: &tempfile::TempDir) -> Arc<dyn KeyBackend> {
    let path = dir.path().join("lender.pem");
    key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap()
}

fn config(key: &Arc<dyn KeyBackend>) -> ServerConfig {
    ServerConfig::default().realm(
        REALM,
        Realm::default()
            .key_client(
                LENDER,
                &jwks_of(key.public_key()),
                &["password", "refresh_token"],
            )
            .secret_client(PARTNER, PARTNER_SECRET, &["password", "refresh_token"])
            .user(USER, PASSWORD),
    )
}

fn lender_client(
    server: &OidcServer,
    key: &Arc<dyn KeyBackend>,
    timeout: Duration,
) -> KeycloakClient {
    let endpoint = TokenEndpoint::from_token_url(&server.token_url(REALM)).unwrap();
    let signer =
        ClientAssertionSigner::new(key.clone(), &AssertionConfig::new(LENDER), &endpoint).unwrap();
    KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer))
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
        .timeout(timeout)
        .build()
        .unwrap()
}

fn partner(server: &OidcServer) -> KeycloakClient {
    KeycloakClient::builder(
        TokenEndpoint::from_token_url(&server.token_url(REALM)).unwrap(),
        ClientAuth::ClientSecretPost {
            client_id: PARTNER.into(),
            secret: SecretString::from(PARTNER_SECRET),
        },
    )
    .retry(RetryPolicy::new(
        3,
        Duration::from_millis(20),
        Duration::from_millis(100),
    ))
    .build()
    .unwrap()
}

fn password() -> SecretString {
    SecretString::from(PASSWORD)
}

/// No secret of this test, and no JWT at all, in `text`.
fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, PARTNER_SECRET, "eyJ"] {
        assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
    }
}

/// Makes the next `count` token answers of the realm wrong in the `kind` way.
async fn answer(server: &OidcServer, count: u32, kind: &str, status: u16, value: &str) {
    server
        .admin(
            REALM,
            &format!("answer-token?count={count}&kind={kind}&status={status}&value={value}"),
        )
        .await;
}

fn invalid_response(e: &KeycloakError) -> (u16, &str) {
    match e {
        KeycloakError::InvalidResponse { status, reason } => (*status, reason.as_str()),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn broken_token_answers_are_clear_errors_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    let server = server!(
        "broken_token_answers_are_clear_errors_without_secrets",
        config(&key)
    );
    let (captured, _guard) = capture();
    let lender = lender_client(&server, &key, Duration::from_secs(30));
    let partner = partner(&server);
    // (kind, status, value, what the error must say, attempts the client should make)
    let cases: [(&str, u16, &str, &str, u64); 10] = [
        ("html", 200, "", "HTML page", 1),
        ("html", 403, "", "HTML page", 1),
        ("malformed-json", 200, "", "not valid JSON", 1),
        ("no-access-token", 200, "", "no access_token", 1),
        ("not-an-object", 200, "", "not an object", 1),
        ("expires-in", 200, "-1", "expires_in is negative", 1),
        (
            "expires-in",
            200,
            "-9007199254740993",
            "expires_in is negative",
            1,
        ),
        (
            "expires-in",
            200,
            "1e30",
            "expires_in is not a whole number",
            1,
        ),
        (
            "expires-in",
            200,
            "18446744073709551616",
            "expires_in is not a whole number",
            1,
        ),
        (
            "expires-in",
            200,
            "300.5",
            "expires_in is not a whole number",
            1,
        ),
    ];
    let mut errors = String::new();
    for (client_name, client) in [("lender", &lender), ("partner", &partner)] {
        for (kind, status, value, says, attempts) in cases {
            let before = server.count(REALM, "requests", "password").await;
            answer(&server, 1, kind, status, value).await;
            let e = client
                .password_grant(USER, &password(), None)
                .await
                .unwrap_err();
            let (got_status, reason) = invalid_response(&e);
            assert_eq!(got_status, status, "{client_name} {kind} {value}: {e}");
            assert!(
                e.to_string().contains(says),
                "{client_name} {kind} {value}: {e}"
            );
            assert!(!e.is_rejection(), "{client_name} {kind}: {e}");
            assert!(reason.len() < 200, "{reason}");
            assert_eq!(
                server.count(REALM, "requests", "password").await - before,
                attempts,
                "{client_name} {kind} {value}: attempts"
            );
            errors.push_str(&format!("{e}\n{e:?}\n"));
        }
    }
    // A huge expires_in that fits is believed only up to 30 days by the token cache, and works.
    answer(&server, 1, "expires-in", 200, "4102444800000").await;
    let r = lender
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    assert_eq!(r.expires_in, Some(4_102_444_800_000));
    answer(&server, 1, "expires-in", 200, "18446744073709551615").await;
    let source = TokenSource::new(
        Arc::new(lender_client(&server, &key, Duration::from_secs(30))),
        FullGrant::password(USER, password()),
    );
    let token = source.access_token().await.unwrap();
    assert!(!token.expose_secret().is_empty());
    let again = source.access_token().await.unwrap();
    assert_eq!(token.expose_secret(), again.expose_secret(), "cached");

    // HTML error pages with a 5xx are server failures: retried, then reported.
    answer(&server, 3, "html", 502, "").await;
    let before = server.count(REALM, "requests", "password").await;
    let e = lender
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
    assert_eq!(
        server.count(REALM, "requests", "password").await - before,
        3
    );
    errors.push_str(&format!("{e}\n{e:?}\n"));

    assert_clean("an error", &errors);
    let log = captured.text();
    assert_clean("the log", &log);
    assert!(!log.contains(token.expose_secret()));
    assert!(
        log.contains("outcome=\"error\"") || log.contains("outcome=error"),
        "{log}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn slow_answers_time_out_after_bounded_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    let server = server!("slow_answers_time_out_after_bounded_attempts", config(&key));
    let (captured, _guard) = capture();
    let client = lender_client(&server, &key, Duration::from_millis(300));
    server.admin(REALM, "delay-token?ms=1500").await;
    let started = Instant::now();
    let e = client
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(e, KeycloakError::Network { attempts: 3, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("timed out"), "{e}");
    // 3 attempts of 300 ms plus two short backoffs (about 1 s, with slack for a loaded machine): bounded,
    // where waiting for the server would take 3 x 1.5 s.
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    server.admin(REALM, "delay-token?ms=0").await;
    // The server is fast again: the same client works.
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();
    assert_clean("the error", &format!("{e} {e:?}"));
    let log = captured.text();
    assert_clean("the log", &log);
}

#[tokio::test(flavor = "current_thread")]
async fn refused_connections_and_5xx_are_retried_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    let server = server!(
        "refused_connections_and_5xx_are_retried_a_bounded_number_of_times",
        config(&key)
    );
    let (captured, _guard) = capture();
    let client = lender_client(&server, &key, Duration::from_secs(30));
    for status in [500, 503, 504] {
        server
            .admin(REALM, &format!("fail-token?count=3&status={status}"))
            .await;
        let e = client
            .password_grant(USER, &password(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, KeycloakError::Server { status: s, attempts: 3 } if s == status),
            "{e}"
        );
        assert!(e.to_string().contains("try again later"), "{e}");
    }
    // Two failures, then success: retries recover.
    server.admin(REALM, "fail-token?count=2&status=503").await;
    client
        .password_grant(USER, &password(), None)
        .await
        .unwrap();

    // A port nobody listens on: connection refused, 3 attempts, then a clear error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = TokenEndpoint::from_token_url(&format!(
        "http://127.0.0.1:{port}/realms/{REALM}/protocol/openid-connect/token"
    ))
    .unwrap();
    let refused = KeycloakClient::builder(
        endpoint,
        ClientAuth::ClientSecretBasic {
            client_id: PARTNER.into(),
            secret: SecretString::from(PARTNER_SECRET),
        },
    )
    .retry(RetryPolicy::new(
        3,
        Duration::from_millis(20),
        Duration::from_millis(50),
    ))
    .build()
    .unwrap();
    let e = refused
        .password_grant(USER, &password(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, KeycloakError::Network { attempts: 3, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("check the URL"), "{e}");
    assert_clean("the error", &format!("{e} {e:?}"));
    let log = captured.text();
    assert_clean("the log", &log);
}

//! `TokenSource` during an identity-provider outage, against the real OpenID Connect test server
//! (`tests/oidc-provider/server.mjs`) made to hang with its `hang-token` switch: it accepts token requests,
//! counts them on arrival (with their arrival times) and never answers.
//!
//! - With a valid cached token, 100 concurrent callers all get it within a couple of seconds, while ONE
//!   renewal hangs (the client's default 30 s timeout × 3 attempts).
//! - Renewals that fail are retried once per backoff window however many callers keep asking: the server
//!   sees one request per window.
//! - Once the token has expired, every waiting caller gets the one renewal's error (the same `Arc`), and
//!   callers during the backoff get it again without a request; when the server is back, a token comes.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server;
use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
use keycloak_client::key_provider::{self, KeyBackend, KeySpec};
use keycloak_client::secrecy::{ExposeSecret as _, SecretString};
use keycloak_client::{
    AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient, KeycloakError,
    RetryPolicy, TokenEndpoint, TokenSource,
};

const REALM: &str = "loan-partner";
const LENDER: &str = "example-bank";
const USER: &str = "exampleuser@bank.example.com";
const PASSWORD: &str = "SecÜre!P4ssw0rd-outage";
/// "Within a couple of seconds": generous against a loaded machine, where today's code takes k × 90 s.
const PROMPT: Duration = Duration::from_secs(3);
/// How long a whole wave of callers may take before the test gives up on it (instead of waiting minutes).
const GIVE_UP: Duration = Duration::from_secs(20);

fn key(dir: &tempfile::TempDir) -> Arc<dyn KeyBackend> {
    let path = dir.path().join("lender.pem");
    key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap()
}

fn config(key: &Arc<dyn KeyBackend>, access_token_ttl: u64) -> ServerConfig {
    ServerConfig::default()
        .access_token_ttl(access_token_ttl)
        .realm(
            REALM,
            Realm::default()
                .key_client(
                    LENDER,
                    &jwks_of(key.public_key()),
                    &["password", "refresh_token"],
                )
                .user(USER, PASSWORD),
        )
}

/// A token source for the lender; `short` clients give up on an attempt after 500 ms and do not retry,
/// the others have the library's defaults (30 s per attempt, 3 attempts).
fn source(server: &OidcServer, key: &Arc<dyn KeyBackend>, short: bool) -> TokenSource {
    let endpoint = TokenEndpoint::from_token_url(&server.token_url(REALM)).unwrap();
    let signer =
        ClientAssertionSigner::new(key.clone(), &AssertionConfig::new(LENDER), &endpoint).unwrap();
    let mut builder = KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer));
    if short {
        builder = builder
            .timeout(Duration::from_millis(500))
            .retry(RetryPolicy::no_retries());
    }
    TokenSource::new(
        Arc::new(builder.build().unwrap()),
        FullGrant::password(USER, SecretString::from(PASSWORD)),
    )
}

async fn hung(server: &OidcServer) -> u64 {
    server.count(REALM, "requests", "hung-by-admin").await
}

/// The server's arrival times (ms) of the token requests it held.
async fn hung_at(server: &OidcServer) -> Vec<u64> {
    server.stats().await[REALM]["hungAt"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// `n` callers at once; each result with how long that caller waited. Fails the test if the wave is not
/// over within [`GIVE_UP`].
async fn wave(
    source: &Arc<TokenSource>,
    n: usize,
) -> Vec<(Result<String, KeycloakError>, Duration)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (source, barrier) = (source.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let r = source
                    .access_token()
                    .await
                    .map(|t| t.expose_secret().to_owned());
                (r, started.elapsed())
            })
        })
        .collect();
    let all = async {
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    };
    tokio::time::timeout(GIVE_UP, all)
        .await
        .unwrap_or_else(|_| panic!("{n} callers were still waiting for a token after {GIVE_UP:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_idp_callers_with_a_valid_token_get_it_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    // 10 s tokens: stale (renewed ahead of expiry) after 5 s, expired after 10 s.
    let server = server!(
        "hanging_idp_callers_with_a_valid_token_get_it_within_seconds",
        config(&key, 10)
    );
    let source = Arc::new(source(&server, &key, false));
    let cached = source
        .access_token()
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    server.admin(REALM, "hang-token?on=1").await;
    tokio::time::sleep(Duration::from_millis(5200)).await;

    // The first wave starts the renewal, which hangs (30 s per attempt); the second comes after it began.
    for round in ["while the renewal starts", "while it hangs"] {
        let results = wave(&source, 100).await;
        let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
        for (r, _) in &results {
            let token = r.as_ref().unwrap_or_else(|e| panic!("{round}: {e}"));
            assert_eq!(token, &cached, "{round}: the cached token, still valid");
        }
        assert!(
            slowest <= PROMPT,
            "{round}: the slowest of 100 callers waited {slowest:?}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "{round}: slowest of 100 callers {slowest:?}"
        );
        assert_eq!(
            hung(&server).await,
            1,
            "{round}: one renewal for all callers"
        );
    }
    let stats = server.stats().await;
    assert_eq!(stats[REALM]["requests"]["password"], 1, "{stats}");
    assert!(
        stats[REALM]["requests"].get("refresh_token").is_none(),
        "{stats}"
    );

    // The server answers again: the held request gets 503, the client retries, and the renewed token
    // reaches the callers.
    server.admin(REALM, "hang-token?on=0").await;
    let deadline = Instant::now() + GIVE_UP;
    let renewed = loop {
        let t = source.access_token().await.unwrap();
        if t.expose_secret() != cached {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no renewed token after the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!renewed.expose_secret().is_empty());
    let stats = server.stats().await;
    assert_eq!(stats[REALM]["success"]["refresh_token"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_idp_sees_one_renewal_per_backoff_window() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    // 12 s tokens: stale after 6 s, expired after 12 s.
    let server = server!(
        "hanging_idp_sees_one_renewal_per_backoff_window",
        config(&key, 12)
    );
    // Each renewal gives up after 500 ms; the next waits 500..1000 ms after that.
    let backoff = Duration::from_secs(1);
    let source = Arc::new(source(&server, &key, true).renewal_backoff(backoff, backoff));
    let cached = source
        .access_token()
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    server.admin(REALM, "hang-token?on=1").await;
    tokio::time::sleep(Duration::from_millis(6200)).await;

    // 50 callers keep asking, every 20 ms, for 4 s.
    let until = Instant::now() + Duration::from_secs(4);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move {
                let (mut calls, mut slowest) = (0u32, Duration::ZERO);
                let mut tokens = std::collections::HashSet::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let t = source.access_token().await.unwrap();
                    slowest = slowest.max(started.elapsed());
                    tokens.insert(t.expose_secret().to_owned());
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (calls, slowest, tokens)
            })
        })
        .collect();
    let all = async {
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    };
    let results = tokio::time::timeout(GIVE_UP, all)
        .await
        .expect("callers still waiting");
    let calls: u32 = results.iter().map(|r| r.0).sum();
    let slowest = results.iter().map(|r| r.1).max().unwrap();
    for (_, _, tokens) in &results {
        assert_eq!(tokens.len(), 1);
        assert!(tokens.contains(&cached), "the cached token, still valid");
    }
    assert!(slowest <= PROMPT, "the slowest call took {slowest:?}");

    // Server side: the held requests, at least one backoff window apart (500 ms timeout + at least 500 ms
    // backoff = 1 s from send to send; 250 ms of slack for how late a request may arrive on a loaded
    // machine), where callers queueing for their own renewal would send one every 500 ms; and more than
    // one (the source keeps trying).
    let arrivals = hung_at(&server).await;
    let gaps: Vec<u64> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let _ = writeln!(
        std::io::stderr(),
        "{calls} calls, slowest {slowest:?}; {} token requests, gaps {gaps:?} ms",
        arrivals.len()
    );
    assert_eq!(arrivals.len() as u64, hung(&server).await);
    assert!(
        (2..=5).contains(&arrivals.len()),
        "{} requests in 4 s for {calls} calls",
        arrivals.len()
    );
    assert!(
        gaps.iter().all(|g| *g >= 750),
        "one request per backoff window: gaps {gaps:?} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_token_has_expired_callers_share_the_renewal_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(&dir);
    // 2 s tokens.
    let server = server!(
        "once_the_token_has_expired_callers_share_the_renewal_error",
        config(&key, 2)
    );
    let backoff = Duration::from_secs(2);
    let source = Arc::new(source(&server, &key, true).renewal_backoff(backoff, backoff));
    let first = source
        .access_token()
        .await
        .unwrap()
        .expose_secret()
        .to_owned();
    server.admin(REALM, "hang-token?on=1").await;
    tokio::time::sleep(Duration::from_millis(2300)).await;

    let results = wave(&source, 100).await;
    let shared = |r: &Result<String, KeycloakError>| match r {
        Err(KeycloakError::Shared(e)) => e.clone(),
        other => panic!("expected the shared renewal error, got {other:?}"),
    };
    let one = shared(&results[0].0);
    for (r, _) in &results {
        assert!(
            Arc::ptr_eq(&shared(r), &one),
            "every caller gets the same error"
        );
    }
    assert!(
        matches!(one.as_ref(), KeycloakError::Network { attempts: 1, .. }),
        "{one:?}"
    );
    let e = results[0].0.as_ref().unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(!e.is_rejection());
    assert_eq!(hung(&server).await, 1, "one token request for 100 callers");

    // During the backoff, callers get the same error at once, without a request.
    let started = Instant::now();
    let again = source
        .access_token()
        .await
        .map(|t| t.expose_secret().to_owned());
    assert!(Arc::ptr_eq(&shared(&again), &one));
    assert!(started.elapsed() <= PROMPT);
    assert_eq!(hung(&server).await, 1);

    // The server is back and the backoff over: a new token.
    server.admin(REALM, "hang-token?on=0").await;
    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    let renewed = source.access_token().await.unwrap();
    assert_ne!(renewed.expose_secret(), first);
    let stats = server.stats().await;
    assert_eq!(stats[REALM]["success"]["refresh_token"], 1, "{stats}");
    assert_eq!(hung(&server).await, 1);
}

//! Flex's key endpoint (`/flex/v2/public-keys/{kid}`) and the key cache under attack, against the simulator,
//! counting the requests it receives: forged capture contexts (the real kid, a bad signature) cost at most one
//! fetch per cooldown and never evict the good key, a rotated key replaces the old one only once it verifies,
//! unknown kids are remembered, a `kid` that would change the URL path never reaches the endpoint, and a key
//! served without the `kid` asked for is refused.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flex_client::jose_core::JwsAlgorithm;
use flex_client::jose_core::jws::sign_with_raw_header;
use flex_client::key_provider::SoftwareKey;
use flex_client::{FlexClient, FlexError, KeyCache};
use flex_simulator::{FlexSimulator, Misbehavior, SessionKind};
use serde_json::{Value, json};

/// The attacker key of the hostile corpus.
fn attacker() -> SoftwareKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/vectors/hostile_attacker.pem"),
    )
    .unwrap();
    SoftwareKey::from_bytes("file", "attacker".into(), &pem).unwrap()
}

/// `genuine`'s claims under `header`, signed by `key`.
fn resign(key: &SoftwareKey, header: &Value, genuine: &str) -> String {
    let claims = B64.decode(genuine.split('.').nth(1).unwrap()).unwrap();
    sign_with_raw_header(
        key,
        JwsAlgorithm::RS256,
        header.to_string().as_bytes(),
        &claims,
    )
    .unwrap()
}

/// A client of `sim` whose key cache refetches a kid at most once per `cooldown`.
fn client_with_cooldown(sim: &FlexSimulator, cooldown: Duration) -> FlexClient {
    support::builder(sim)
        .key_cache(Arc::new(KeyCache::with_refetch_cooldown(cooldown)))
        .build()
        .unwrap()
}

/// `n` forged capture contexts: `genuine`'s claims with their own `jti`, under the real kid, signed by the
/// attacker.
fn forgeries(genuine: &str, kid: &str, n: usize) -> Vec<String> {
    let attacker = attacker();
    let mut claims: Value =
        serde_json::from_slice(&B64.decode(genuine.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let header = json!({"kid": kid, "alg": "RS256"}).to_string();
    (0..n)
        .map(|i| {
            claims["jti"] = json!(format!("forged{i:05}"));
            sign_with_raw_header(
                &attacker,
                JwsAlgorithm::RS256,
                header.as_bytes(),
                claims.to_string().as_bytes(),
            )
            .unwrap()
        })
        .collect()
}

/// Verifies `forged` (each must be refused as a bad signature) and `genuine` (each must verify) all at once.
async fn verify_all(client: &FlexClient, forged: &[String], genuine: &[&str]) {
    let mut tasks = Vec::new();
    for jwt in forged {
        let (client, jwt) = (client.clone(), jwt.clone());
        tasks.push(tokio::spawn(async move {
            let e = client.verify_capture_context(&jwt).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    FlexError::InvalidSignature {
                        what: "capture context",
                        ..
                    }
                ),
                "a forged context: {e:?}"
            );
        }));
    }
    for jwt in genuine {
        let (client, jwt) = (client.clone(), (*jwt).to_owned());
        tasks.push(tokio::spawn(async move {
            client
                .verify_capture_context(&jwt)
                .await
                .expect("a genuine context verifies");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_forged_contexts_cost_no_fetch_within_the_cooldown() {
    let sim = FlexSimulator::start().await.unwrap();
    let kid = sim.signing_kid();
    let client = client_with_cooldown(&sim, Duration::from_secs(3600));
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    client.verify_capture_context(&genuine).await.unwrap();
    let forged = forgeries(&genuine, &kid, 1000);
    // Ten waves of 100 forgeries, each with a genuine context among them and one after them.
    for wave in forged.chunks(100) {
        verify_all(&client, wave, &[&genuine]).await;
        client.verify_capture_context(&genuine).await.unwrap();
    }
    assert_eq!(
        sim.stats().public_key_fetches.get(&kid),
        Some(&1),
        "only the first verification fetched the key"
    );
    assert_eq!(client.key_cache().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_contexts_cost_at_most_one_fetch_per_cooldown_window() {
    const COOLDOWN: Duration = Duration::from_millis(300);
    let sim = FlexSimulator::start().await.unwrap();
    let kid = sim.signing_kid();
    let client = client_with_cooldown(&sim, COOLDOWN);
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let forged = forgeries(&genuine, &kid, 1000);
    let started = Instant::now();
    // 1,000 forgeries in 20 waves of 50, 100 ms apart: they span several cooldown windows.
    for wave in forged.chunks(50) {
        verify_all(&client, wave, &[&genuine, &genuine]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let fetches = sim.stats().public_key_fetches[&kid];
    // A fetch starts only a whole cooldown after the previous one finished.
    let windows = u64::try_from(elapsed.as_millis() / COOLDOWN.as_millis()).unwrap();
    assert!(
        fetches <= 1 + windows,
        "{fetches} fetches in {elapsed:?} with a {COOLDOWN:?} cooldown"
    );
    // And the key is still looked at again once a window has passed (a rotation would be picked up).
    assert!(fetches >= 2, "{fetches} fetches in {elapsed:?}");
    client.verify_capture_context(&genuine).await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_replaces_the_good_one_only_once_it_verifies() {
    const COOLDOWN: Duration = Duration::from_millis(200);
    let sim = FlexSimulator::start().await.unwrap();
    let kid = sim.signing_kid();
    let client = client_with_cooldown(&sim, COOLDOWN);
    let old = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    client.verify_capture_context(&old).await.unwrap();
    sim.rotate_signing_key();
    let new = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let forged = forgeries(&old, &kid, 1).remove(0);
    let fetches = || sim.stats().public_key_fetches[&kid];

    // Past the cooldown, a forged context makes the client look again: it finds the new key, which does not
    // verify the forgery either. The old key stays the one held: contexts it signed still verify.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    let e = client.verify_capture_context(&forged).await.unwrap_err();
    assert!(matches!(e, FlexError::InvalidSignature { .. }), "{e:?}");
    assert_eq!(fetches(), 2);
    client.verify_capture_context(&old).await.unwrap();
    // The new key, fetched already, verifies the new context without another fetch, and is then the key held.
    client.verify_capture_context(&new).await.unwrap();
    client.verify_capture_context(&new).await.unwrap();
    assert_eq!(fetches(), 2);
    let e = client.verify_capture_context(&old).await.unwrap_err();
    assert!(matches!(e, FlexError::InvalidSignature { .. }), "{e:?}");
    assert_eq!(client.key_cache().len(), 1);

    // A refetch that fails leaves the key held in place.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    sim.misbehave(Misbehavior::ServerErrors(100));
    let before = fetches();
    let e = client.verify_capture_context(&forged).await.unwrap_err();
    assert!(
        matches!(&e, FlexError::KeyFetch { reason, .. } if reason.contains("503")),
        "{e:?}"
    );
    assert!(fetches() > before, "the refetch was tried");
    sim.behave();
    let after = fetches();
    client.verify_capture_context(&new).await.unwrap();
    assert_eq!(fetches(), after, "the key held was still there");
}

#[tokio::test]
async fn an_unknown_kid_is_asked_for_once_per_cooldown() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client_with_cooldown(&sim, Duration::from_secs(3600));
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    for kid in ["unknown1", "unknown2"] {
        for forged in forgeries(&genuine, kid, 50) {
            let e = client.verify_capture_context(&forged).await.unwrap_err();
            assert!(
                matches!(&e, FlexError::KeyFetch { kid: k, reason, .. } if k == kid && reason.contains("HTTP 404")),
                "{e:?}"
            );
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.public_key_fetches.get("unknown1"), Some(&1));
    assert_eq!(stats.public_key_fetches.get("unknown2"), Some(&1));
    // The genuine kid is unaffected.
    client.verify_capture_context(&genuine).await.unwrap();
}

#[tokio::test]
async fn a_kid_that_would_change_the_key_url_never_reaches_the_server() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = support::client(&sim);
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let attacker = attacker();
    for kid in [
        ".", "..", "...", "../..", "..%2f", "%2e%2e", "a/../..", "3g?x=", "3g#",
    ] {
        let forged = resign(&attacker, &json!({"alg": "RS256", "kid": kid}), &genuine);
        let e = client.verify_capture_context(&forged).await.unwrap_err();
        assert!(
            matches!(&e, FlexError::Malformed { what: "capture context", reason } if reason.contains("not a plain key id")),
            "kid {kid:?}: {e:?}"
        );
    }
    let stats = sim.stats();
    assert_eq!(stats.unrouted_requests, Vec::<String>::new());
    assert_eq!(stats.total_public_key_fetches(), 0);

    // Control: a genuine context is fetched for, under its own kid, at the key URL.
    client.verify_capture_context(&genuine).await.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.public_key_fetches.get(&sim.signing_kid()), Some(&1));
    assert!(stats.unrouted_requests.is_empty());
}

#[tokio::test]
async fn a_fetched_key_must_carry_the_kid_asked_for() {
    let sim = FlexSimulator::start().await.unwrap();
    let kid = sim.signing_kid();
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));

    // Flex serves its signing keys marked "use":"enc"; that must keep working (checked on the wire here).
    let raw = fetch_raw(&sim, &kid).await;
    assert_eq!(raw["use"], "enc");
    assert_eq!(raw["kid"], kid.as_str());

    sim.misbehave(Misbehavior::PublicKeyWithoutKid);
    let raw = fetch_raw(&sim, &kid).await;
    assert!(raw.get("kid").is_none(), "the misbehaviour is on: {raw}");
    let e = support::client(&sim)
        .verify_capture_context(&genuine)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FlexError::KeyFetch { kid: k, reason, .. } if *k == kid && reason.contains("has no kid")),
        "{e:?}"
    );
    sim.behave();

    sim.misbehave(Misbehavior::PublicKeyWithOtherKid);
    let e = support::client(&sim)
        .verify_capture_context(&genuine)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FlexError::KeyFetch { reason, .. } if reason.contains("another kid")),
        "{e:?}"
    );
    sim.behave();

    // Control: the same context, with the key served as Flex serves it ("use":"enc", its kid), verifies.
    support::client(&sim)
        .verify_capture_context(&genuine)
        .await
        .unwrap();
}

/// The key endpoint's answer, fetched without flex-client.
async fn fetch_raw(sim: &FlexSimulator, kid: &str) -> Value {
    use std::io::{Read, Write};
    let host = sim.addr().to_string();
    let request = format!(
        "GET /flex/v2/public-keys/{kid} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

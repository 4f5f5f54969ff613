//! Flex's key endpoint (`/flex/v2/public-keys/{kid}`) under attack, against the simulator, counting the
//! requests it receives: a `kid` that would change the URL path never reaches it, and a key served without
//! the `kid` asked for is refused.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flex_client::FlexError;
use flex_client::jose_core::JwsAlgorithm;
use flex_client::jose_core::jws::sign_with_raw_header;
use flex_client::key_provider::SoftwareKey;
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

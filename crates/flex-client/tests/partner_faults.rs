//! Partner faults against the Flex simulator's misbehaviour switches: answers slower than the client's timeout,
//! HTML pages and truncated JSON where JSON or a JWT belongs (on the public-key, sessions and tokens
//! endpoints), and a capture context signed under a kid Flex does not know. Each is a typed error with a
//! clear reason after a bounded number of attempts (retries for network errors and 5xx only), and no card
//! number, security code, capture context, transient token or shared secret reaches an error or a log line.
//! (5xx and refused connections: `simulator.rs`, `server_errors_are_retried_a_bounded_number_of_times` and
//! `unreachable_server_is_a_network_error_after_retries`.)

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flex_client::key_provider::SoftwareKey;
use flex_client::{
    Card, FlexClient, FlexError, HttpConfig, HttpSignatureAuth, MerchantAuth, SessionEndpoint,
    TokenizeData,
};
use flex_simulator::{FlexSimulator, Misbehavior, SessionKind};
use keybound_test_support::capture::capture;
use serde_json::json;

const PAN: &str = "4111111111111111";
/// A security code with a leading zero: no number the logs print (ports, latencies) can look like it.
const CVV: &str = "0457";
const SECRET_B64: &str = "c2VjcmV0LWZsZXgtc2hhcmVkLWtleS0wMTIzNDU2Nzg5";

fn card() -> TokenizeData {
    TokenizeData::new().card(Card::new(PAN).expiration("12", "2031").security_code(CVV))
}

/// A client that gives up after 300 ms per attempt and retries once.
fn impatient(sim: &FlexSimulator) -> FlexClient {
    let mut http = HttpConfig::default()
        .timeout(Duration::from_millis(300))
        .max_retries(1)
        .retry_backoff(Duration::from_millis(10));
    http.connect_timeout = Duration::from_millis(300);
    support::builder(sim).http(http).build().unwrap()
}

/// Whether `needle` occurs in `text` as a whole word (no letter or digit on either side).
fn has_word(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn assert_clean(what: &str, text: &str, tokens: &[&str]) {
    assert!(!text.contains(PAN), "{what} shows the card number: {text}");
    assert!(
        !has_word(text, CVV),
        "{what} shows the security code: {text}"
    );
    assert!(!text.contains(SECRET_B64), "{what} shows the shared secret");
    for t in tokens {
        let (signing_input, _) = t.rsplit_once('.').unwrap();
        assert!(!text.contains(signing_input), "{what} shows a token");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn partner_faults_are_clear_bounded_and_leak_nothing() {
    let (captured, _guard) = capture();

    let sim = FlexSimulator::start().await.unwrap();
    sim.add_merchant_shared_secret(support::MERCHANT, support::KEY_ID, SECRET_B64);
    let auth = MerchantAuth::HttpSignature(
        HttpSignatureAuth::new(support::MERCHANT, support::KEY_ID, SECRET_B64).unwrap(),
    );
    let client = impatient(&sim);
    let mut errors = String::new();
    let mut tokens: Vec<String> = Vec::new();

    // Slow answers: each attempt times out after 300 ms, one retry, then a network error.
    let genuine = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    tokens.push(genuine.clone());
    sim.misbehave(Misbehavior::SlowResponses(1_500));
    let started = Instant::now();
    let e = client.verify_capture_context(&genuine).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&e, FlexError::KeyFetch { reason, .. } if reason.contains("timed out") && reason.contains("2 attempt")),
        "{e}"
    );
    // Two attempts of 300 ms: bounded, where waiting for the server would take 1.5 s.
    assert!(elapsed < Duration::from_millis(1_450), "{elapsed:?}");
    let e2 = client
        .request_capture_context(&auth, SessionEndpoint::Flex, &support::flex_fields())
        .await
        .unwrap_err();
    assert!(
        matches!(&e2, FlexError::Network { reason, attempts: 2, .. } if reason.contains("timed out")),
        "{e2}"
    );
    errors.push_str(&format!("{e}\n{e:?}\n{e2}\n{e2:?}\n"));
    sim.behave();

    // The server is fast again: a context and a transient token for the next cases.
    let context = client.verify_capture_context(&genuine).await.unwrap();
    let token = client.tokenize(&context, &card()).await.unwrap();
    tokens.push(token.as_str().to_owned());
    let before = sim.stats();

    // HTML pages and truncated JSON, where a key, a capture context or a transient token belongs.
    for (fault, says) in [
        (Misbehavior::HtmlPages(1), "HTML page"),
        (Misbehavior::MalformedJson(1), ""),
    ] {
        let fresh = impatient(&sim); // an empty key cache: the key must be fetched
        sim.misbehave(fault);
        let e = fresh.verify_capture_context(&genuine).await.unwrap_err();
        assert!(
            matches!(&e, FlexError::KeyFetch { reason, .. } if reason.contains(says) && (!says.is_empty() || reason.contains("not a JSON object"))),
            "{fault:?} key fetch: {e}"
        );
        errors.push_str(&format!("{e}\n{e:?}\n"));

        sim.misbehave(fault);
        let e = client
            .request_capture_context(&auth, SessionEndpoint::Flex, &support::flex_fields())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, FlexError::Malformed { what: "capture context", reason } if reason.contains(says)),
            "{fault:?} sessions: {e}"
        );
        assert!(e.is_rejection());
        errors.push_str(&format!("{e}\n{e:?}\n"));

        sim.misbehave(fault);
        let e = client.tokenize(&context, &card()).await.unwrap_err();
        assert!(
            matches!(&e, FlexError::Malformed { what: "transient token", reason } if reason.contains(says)),
            "{fault:?} tokens: {e}"
        );
        errors.push_str(&format!("{e}\n{e:?}\n"));
        sim.behave();
    }
    // Each wrong answer was a single request: none of them was retried.
    let after = sim.stats();
    assert_eq!(after.injected_errors - before.injected_errors, 6);
    assert_eq!(after.session_requests - before.session_requests, 2);
    assert_eq!(after.token_requests - before.token_requests, 2);

    // A capture context signed under a kid Flex does not know: the key fetch answers 404, which is reported
    // (not retried), and the context is never trusted. The 404 is remembered for the refetch cooldown: the
    // second verification gets the same error without asking again.
    let attacker = SoftwareKey::from_bytes(
        "file",
        "attacker".into(),
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/vectors/hostile_attacker.pem"),
        )
        .unwrap(),
    )
    .unwrap();
    let claims = B64.decode(genuine.split('.').nth(1).unwrap()).unwrap();
    let forged = flex_client::jose_core::jws::sign_with_raw_header(
        &attacker,
        flex_client::jose_core::JwsAlgorithm::RS256,
        br#"{"kid":"unknownkid7","alg":"RS256"}"#,
        &claims,
    )
    .unwrap();
    tokens.push(forged.clone());
    for _ in 0..2 {
        let e = client.verify_capture_context(&forged).await.unwrap_err();
        assert!(
            matches!(&e, FlexError::KeyFetch { kid, reason, .. } if kid == "unknownkid7" && reason.contains("HTTP 404")),
            "{e}"
        );
        errors.push_str(&format!("{e}\n{e:?}\n"));
    }
    assert_eq!(
        sim.stats().public_key_fetches.get("unknownkid7"),
        Some(&1),
        "a 404 is not retried, and remembered for the cooldown"
    );

    assert_clean(
        "an error",
        &errors,
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let log = captured.text();
    assert_clean(
        "the log",
        &log,
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(log.contains("environment="), "{log}");
}

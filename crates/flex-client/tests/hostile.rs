//! Hostile tokens against flex-client's two verifiers, `verify_capture_context` and `verify_transient_token`:
//!
//! 1. the shared corpus (`tests/hostile/jws.tsv`, made by `tests/hostile/generate.py`), with its RSA victim
//!    served as Flex's signing key: every row gets exactly the answer it names — a bad signature is an
//!    `InvalidSignature`, an expired token `Expired`, a mistyped `exp` `Malformed` … — in both verifiers, and
//!    the positive control `valid-rs256` is accepted as a capture context and as a transient token;
//! 2. forgeries of a genuine capture context and a genuine transient token, built here the way the corpus
//!    builds its rows (alg none/None/NONE, HS256 with the verification key's PEM or DER as the secret,
//!    re-signed by an attacker with or without `jwk`/`jku`/`x5u` headers, `crit`, `b64: false`, signatures
//!    of the wrong length, swapped payloads and kids, part counts, padding, duplicate members): each refused
//!    with its own [`FlexError`] variant, and nothing named by a `jku`/`x5u` ever fetched.
//!
//! Whitespace is not hostile here: `verify_capture_context` removes it on purpose (line-wrapped copies of
//! a capture context are normal), so a genuine token with a space in it still verifies.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use flex_client::jose_core::{Jwk, JwsAlgorithm};
use flex_client::key_provider::{KeyBackend, PublicKey, SoftwareKey};
use flex_client::{CaptureContext, FlexClient, FlexError};
use flex_simulator::{FlexSimulator, SessionKind};
use serde_json::{Map, Value, json};

/// (name, expected kind, token) rows of a corpus file, plus a 1 MiB token.
fn corpus(file: &str) -> Vec<(String, String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/hostile")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            (
                it.next().unwrap().into(),
                it.next().unwrap().into(),
                it.next().unwrap_or("").into(),
            )
        })
        .collect();
    rows.push((
        "oversize-1MiB".into(),
        "too-large".into(),
        "A".repeat(1 << 20),
    ));
    rows
}

/// A stand-in for Flex's `GET /flex/v2/public-keys/{kid}`: serves fixed JWKs by kid (HTTP/1.1, one request
/// per connection) and counts what was asked for. Used where the simulator's own keys will not do: keys
/// whose JWK members (`use`, `key_ops`) a test chooses.
struct KeyServer {
    url: String,
    fetches: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl KeyServer {
    fn start(keys: Vec<(String, Value)>) -> Self {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fetches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = fetches.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let kid = path.strip_prefix("/flex/v2/public-keys/").unwrap_or("");
                seen.lock().unwrap().push(kid.to_owned());
                let (status, body) = match keys.iter().find(|(k, _)| k == kid) {
                    Some((_, jwk)) => ("200 OK", jwk.to_string()),
                    None => ("404 Not Found", "{}".to_owned()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, fetches }
    }

    fn client(&self) -> FlexClient {
        FlexClient::builder(flex_client::Environment::custom(&self.url).unwrap())
            .build()
            .unwrap()
    }

    fn fetches(&self) -> Vec<String> {
        self.fetches.lock().unwrap().clone()
    }
}

fn vector_key(name: &str) -> SoftwareKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/vectors")
            .join(name),
    )
    .unwrap();
    SoftwareKey::from_bytes("file", name.into(), &pem).unwrap()
}

/// `key`'s public JWK with `members` added.
fn jwk_with(key: &PublicKey, members: &Value) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_public_key(key)).unwrap();
    for (k, v) in members.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

#[tokio::test]
async fn flex_signing_keys_marked_use_enc_verify_but_key_ops_must_allow_verify() {
    // Cybersource's key endpoint marks the key that signs capture contexts "use":"enc"; flex-client accepts
    // that for this key (a narrow exception to jose-core's rule), but not key_ops that rule out "verify".
    let signer = vector_key("rfc7515_a2.pem");
    let public = signer.public_key();
    let server = KeyServer::start(vec![
        (
            "enc-marked".into(),
            jwk_with(public, &json!({"kid": "enc-marked", "use": "enc"})),
        ),
        (
            "ops-verify".into(),
            jwk_with(public, &json!({"kid": "ops-verify", "key_ops": ["verify"]})),
        ),
        (
            "ops-encrypt".into(),
            jwk_with(
                public,
                &json!({"kid": "ops-encrypt", "use": "enc", "key_ops": ["encrypt"]}),
            ),
        ),
    ]);
    let client = server.client();
    let now = flex_client::jose_core::jwt::now();
    let claims = json!({
        "flx": {"path": "/flex/v2/tokens", "origin": server.url,
                "jwk": jwk_with(public, &json!({"kid": "one-time-key-0123456789abcdef01", "use": "enc"}))},
        "ctx": [{"data": {"targetOrigins": ["https://shop.example"]}, "type": "mf-2.0.0"}],
        "iss": "Flex API", "iat": now, "exp": now + 900, "jti": "context-1",
    });
    let context = |kid: &str| {
        flex_client::jose_core::jwt::sign(
            &signer,
            &flex_client::jose_core::JwsHeader::new(JwsAlgorithm::RS256).kid(kid),
            &claims,
        )
        .unwrap()
    };
    for kid in ["enc-marked", "ops-verify"] {
        client
            .verify_capture_context(&context(kid))
            .await
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    let e = client
        .verify_capture_context(&context("ops-encrypt"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, FlexError::KeyFetch { reason, .. } if reason.contains("key_ops")),
        "{e:?}"
    );
    assert!(server.fetches().contains(&"ops-encrypt".to_owned()));
}

/// Messages are short and never echo the token.
fn check_message(name: &str, token: &str, e: &FlexError) {
    let msg = format!("{e} {e:?}");
    assert!(msg.len() < 800, "{name}: message of {} bytes", msg.len());
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(
            !msg.contains(&part[..16]),
            "{name}: error echoes the token: {msg}"
        );
    }
}

async fn verify(
    client: &FlexClient,
    context: &CaptureContext,
    transient: bool,
    token: &str,
) -> Result<(), FlexError> {
    if transient {
        client
            .verify_transient_token(context, token)
            .await
            .map(|_| ())
    } else {
        client.verify_capture_context(token).await.map(|_| ())
    }
}

/// The exact answer for a corpus row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accepted,
    Algorithm,
    /// Over the size limit (a `Malformed` that says so).
    Limit,
    Malformed,
    MissingKid,
    KidMismatch,
    Signature,
    Expired,
}

impl Answer {
    fn of(result: &Result<(), FlexError>) -> Self {
        match result {
            Ok(()) => Self::Accepted,
            Err(FlexError::UnsupportedAlgorithm { .. }) => Self::Algorithm,
            Err(FlexError::Malformed { reason, .. }) if reason.contains("-byte limit") => {
                Self::Limit
            }
            Err(FlexError::Malformed { .. }) => Self::Malformed,
            Err(FlexError::MissingKid { .. }) => Self::MissingKid,
            Err(FlexError::KidMismatch { .. }) => Self::KidMismatch,
            Err(FlexError::InvalidSignature { .. }) => Self::Signature,
            Err(FlexError::Expired { .. }) => Self::Expired,
            Err(other) => panic!("an answer no corpus row should get: {other:?}"),
        }
    }
}

/// What flex-client must answer for corpus row `name` of kind `kind` (header `alg` `alg`), as a capture
/// context (`transient` false) or as a transient token of the context made from `valid-rs256`.
fn expected(name: &str, kind: &str, alg: Option<&str>, transient: bool) -> Answer {
    match kind {
        _ if alg.is_some_and(|a| a.starts_with("ES")) && kind != "malformed" => Answer::Algorithm,
        "valid" => Answer::Accepted,
        // Whitespace is removed before parsing (see the module docs): what is left is `valid-rs256`.
        "malformed" if name == "whitespace-in-payload" || name == "leading-space" => {
            Answer::Accepted
        }
        "forbidden-alg" | "unsupported-alg" => Answer::Algorithm,
        "too-large" => Answer::Limit,
        // Claims are typed before any key is used: an `exp` that is no u64 is malformed.
        "malformed" | "unsupported-header" | "invalid-claim" => Answer::Malformed,
        // A kid that is no plain key id never reaches a URL; a transient token must carry the context's kid.
        "no-key" if transient => Answer::KidMismatch,
        "no-key" => Answer::Malformed,
        "bad-signature" => Answer::Signature,
        "expired" => Answer::Expired,
        // flex-client checks no `nbf` (Flex tokens carry none): the row has no kid, and stops there.
        "not-yet-valid" => Answer::MissingKid,
        other => panic!("{name}: corpus kind {other} has no expectation"),
    }
}

#[tokio::test]
async fn every_corpus_token_gets_its_exact_answer_from_both_verifiers() {
    // Flex's key endpoint, serving the corpus's RSA victim under its kid as Cybersource serves its keys
    // ("use":"enc"): the corpus's RSA rows are capture contexts signed by that key (their `flx` carries the
    // same key, so `valid-rs256` verified as a context makes a context whose transient tokens are the same
    // rows), and each reaches the check it names.
    let victim = vector_key("rfc7515_a2.pem");
    let server = KeyServer::start(vec![(
        "rsa-victim".into(),
        jwk_with(
            victim.public_key(),
            &json!({"kid": "rsa-victim", "use": "enc"}),
        ),
    )]);
    let client = server.client();
    let rows = corpus("jws.tsv");
    assert_eq!(rows.len(), 64 + 1, "jws.tsv rows (+ the 1 MiB token)");
    let valid = &rows.iter().find(|r| r.0 == "valid-rs256").unwrap().2;
    let context = client
        .verify_capture_context(valid)
        .await
        .expect("the positive control verifies as a capture context");
    assert_eq!(context.encryption_kid(), "rsa-victim");
    assert_eq!(context.encryption_key(), victim.public_key());

    let mut answers: std::collections::BTreeMap<String, usize> = Default::default();
    for (name, kind, token) in &rows {
        let header_alg = token
            .split('.')
            .next()
            .and_then(|h| B64.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        for transient in [false, true] {
            let what = if transient {
                "transient token"
            } else {
                "capture context"
            };
            let result = verify(&client, &context, transient, token).await;
            let answer = Answer::of(&result);
            assert_eq!(
                answer,
                expected(name, kind, header_alg.as_deref(), transient),
                "{name} ({what}, corpus kind {kind}): {result:?}"
            );
            if let Err(e) = &result {
                assert!(e.is_rejection(), "{name} ({what}): not a rejection: {e:?}");
                check_message(name, token, e);
            }
            *answers.entry(format!("{what}: {answer:?}")).or_default() += 1;
        }
    }
    // Every row that names a signature or an expiry reached that check, in both verifiers: the 9 RSA
    // bad-signature rows and `expired`.
    for what in ["capture context", "transient token"] {
        assert_eq!(answers[&format!("{what}: Signature")], 9, "{answers:?}");
        assert_eq!(answers[&format!("{what}: Expired")], 1, "{answers:?}");
        assert_eq!(answers[&format!("{what}: Accepted")], 3, "{answers:?}");
    }
    // Only the victim's kid was ever looked up: never a kid-* row's kid, never a jku/x5u target.
    let mut fetched = server.fetches();
    fetched.dedup();
    assert_eq!(fetched, ["rsa-victim"]);
}

/// What a forgery must be refused as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Algorithm,
    Signature,
    Malformed,
    KidMismatch,
}

impl Expect {
    fn holds(self, e: &FlexError) -> bool {
        match self {
            Self::Algorithm => matches!(e, FlexError::UnsupportedAlgorithm { .. }),
            Self::Signature => matches!(e, FlexError::InvalidSignature { .. }),
            Self::Malformed => matches!(e, FlexError::Malformed { .. }),
            Self::KidMismatch => matches!(e, FlexError::KidMismatch { .. }),
        }
    }
}

fn attacker() -> SoftwareKey {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/vectors/hostile_attacker.pem"),
    )
    .unwrap();
    SoftwareKey::from_bytes("file", "attacker".into(), &pem).unwrap()
}

fn enc(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn hs256(secret: &[u8], signing_input: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    B64.encode(aws_lc_rs::hmac::sign(&key, signing_input.as_bytes()))
}

fn signed_by(key: &dyn KeyBackend, header: &Value, payload: &str) -> String {
    let alg: JwsAlgorithm = header["alg"].as_str().unwrap().parse().unwrap();
    flex_client::jose_core::jws::sign_with_raw_header(
        key,
        alg,
        header.to_string().as_bytes(),
        &B64.decode(payload).unwrap(),
    )
    .unwrap()
}

/// Forgeries of `genuine` (a compact JWS whose verification key is `public`), each with what it must be
/// refused as. `base` is the simulator's URL, used for `jku`/`x5u` values that a careless client would fetch;
/// `other_kid` names another key the simulator serves.
fn forgeries(
    genuine: &str,
    public: &PublicKey,
    base: &str,
    transient: bool,
    other_kid: &str,
) -> Vec<(String, String, Expect)> {
    let parts: Vec<&str> = genuine.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let header: Map<String, Value> = serde_json::from_slice(&B64.decode(h).unwrap()).unwrap();
    let with = |changes: &[(&str, Value)]| {
        let mut m = header.clone();
        for (k, v) in changes {
            m.insert((*k).to_owned(), v.clone());
        }
        Value::Object(m)
    };
    let sig = B64.decode(s).unwrap();
    let attacker = attacker();
    let attacker_jwk = serde_json::to_value(Jwk::from_public_key(attacker.public_key())).unwrap();
    let mut claims: Map<String, Value> = serde_json::from_slice(&B64.decode(p).unwrap()).unwrap();
    if transient {
        claims.insert("jti".into(), json!("attacker-chosen"));
    } else {
        claims["flx"]["origin"] = json!("https://attacker.example");
    }
    let swapped = B64.encode(Value::Object(claims).to_string());
    let claims_text = String::from_utf8(B64.decode(p).unwrap()).unwrap();
    let duplicate_exp = B64.encode(claims_text.replacen('{', "{\"exp\":1,", 1));
    let duplicate_nested = B64.encode(claims_text.replacen('{', "{\"x\":{\"a\":1,\"a\":2},", 1));
    let nested = B64.encode(format!(
        "{{\"a\":{}{},{}",
        "[".repeat(4000),
        "]".repeat(4000),
        &claims_text[1..]
    ));

    let mut rows: Vec<(String, String, Expect)> = Vec::new();
    let mut add = |name: &str, token: String, expect: Expect| {
        rows.push((name.to_owned(), token, expect));
    };
    for alg in ["none", "None", "NONE"] {
        let hh = enc(&with(&[("alg", json!(alg))]));
        add(
            &format!("alg-{alg}"),
            format!("{hh}.{p}."),
            Expect::Algorithm,
        );
        add(
            &format!("alg-{alg}-with-signature"),
            format!("{hh}.{p}.{s}"),
            Expect::Algorithm,
        );
    }
    for (name, secret) in [
        ("pem", public.to_spki_pem().into_bytes()),
        ("der", public.to_spki_der()),
    ] {
        let hh = enc(&with(&[("alg", json!("HS256"))]));
        let input = format!("{hh}.{p}");
        let mac = hs256(&secret, &input);
        add(
            &format!("hs256-public-key-{name}-as-secret"),
            format!("{input}.{mac}"),
            Expect::Algorithm,
        );
    }
    add(
        "ps256-header-on-an-rs256-signature",
        format!("{}.{p}.{s}", enc(&with(&[("alg", json!("PS256"))]))),
        Expect::Algorithm,
    );
    add(
        "rs512-header-on-an-rs256-signature",
        format!("{}.{p}.{s}", enc(&with(&[("alg", json!("RS512"))]))),
        Expect::Signature,
    );
    add(
        "signed-by-attacker",
        signed_by(&attacker, &with(&[]), p),
        Expect::Signature,
    );
    add(
        "attacker-key-in-jwk-header",
        signed_by(&attacker, &with(&[("jwk", attacker_jwk)]), p),
        Expect::Signature,
    );
    add(
        "attacker-url-in-jku-header",
        signed_by(
            &attacker,
            &with(&[(
                "jku",
                json!(format!("{base}/flex/v2/public-keys/jku-attacker")),
            )]),
            p,
        ),
        Expect::Signature,
    );
    add(
        "attacker-url-in-x5u-header",
        signed_by(
            &attacker,
            &with(&[(
                "x5u",
                json!(format!("{base}/flex/v2/public-keys/x5u-attacker")),
            )]),
            p,
        ),
        Expect::Signature,
    );
    add(
        "crit-unknown",
        signed_by(
            &attacker,
            &with(&[("crit", json!(["urn:x"])), ("urn:x", json!(1))]),
            p,
        ),
        Expect::Malformed,
    );
    add(
        "b64-false",
        signed_by(
            &attacker,
            &with(&[("b64", json!(false)), ("crit", json!(["b64"]))]),
            p,
        ),
        Expect::Malformed,
    );
    add(
        "signature-one-byte-short",
        format!("{h}.{p}.{}", B64.encode(&sig[..sig.len() - 1])),
        Expect::Signature,
    );
    add(
        "signature-one-byte-long",
        format!("{h}.{p}.{}", B64.encode([&sig[..], &[0]].concat())),
        Expect::Signature,
    );
    add("signature-empty", format!("{h}.{p}."), Expect::Signature);
    add(
        "payload-swapped",
        format!("{h}.{swapped}.{s}"),
        Expect::Signature,
    );
    add(
        "kid-swapped",
        format!("{}.{p}.{s}", enc(&with(&[("kid", json!(other_kid))]))),
        if transient {
            Expect::KidMismatch
        } else {
            Expect::Signature
        },
    );
    add("two-parts", format!("{h}.{p}"), Expect::Malformed);
    add("four-parts", format!("{genuine}.{s}"), Expect::Malformed);
    add(
        "padding-on-signature",
        format!("{genuine}="),
        Expect::Malformed,
    );
    add(
        "standard-base64",
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "+"),
        Expect::Malformed,
    );
    add(
        "header-duplicate-alg",
        format!(
            "{}.{p}.{s}",
            B64.encode(String::from_utf8(B64.decode(h).unwrap()).unwrap().replacen(
                '{',
                "{\"alg\":\"none\",",
                1
            ))
        ),
        Expect::Malformed,
    );
    add(
        "claims-duplicate-exp",
        format!("{h}.{duplicate_exp}.{s}"),
        Expect::Malformed,
    );
    add(
        "claims-duplicate-nested-member",
        format!("{h}.{duplicate_nested}.{s}"),
        Expect::Malformed,
    );
    add(
        "claims-deeply-nested",
        format!("{h}.{nested}.{s}"),
        Expect::Malformed,
    );
    add(
        "oversize",
        format!("{genuine}{}", "A".repeat(70_000)),
        Expect::Malformed,
    );
    // Whitespace is removed from what is left (line-wrapped copies), but only after the size check: a genuine
    // token padded to 1 MiB is refused before any work is done on it.
    add(
        "genuine-padded-with-1MiB-of-whitespace",
        format!("{}{genuine}", " \n".repeat(1 << 19)),
        Expect::Malformed,
    );
    rows
}

#[tokio::test]
async fn forged_capture_contexts_and_transient_tokens_are_refused_with_typed_errors() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = support::client(&sim);
    let genuine_context = sim.issue_capture_context(SessionKind::Flex, &support::flex_fields());
    let context = client
        .verify_capture_context(&genuine_context)
        .await
        .unwrap();
    let genuine_token = client
        .tokenize(&context, &support::card_data())
        .await
        .unwrap()
        .into_string();
    // Controls: the genuine tokens verify, also line-wrapped.
    client
        .verify_transient_token(&context, &genuine_token)
        .await
        .unwrap();
    let wrapped = format!("{}\n {}", &genuine_context[..40], &genuine_context[40..]);
    client.verify_capture_context(&wrapped).await.unwrap();

    let signing_key = PublicKey::from_pem(&sim.signing_public_key_pem()).unwrap();
    let mut total = 0;
    let signing_kid = sim.signing_kid();
    for (transient, genuine, public, other_kid) in [
        (
            false,
            genuine_context.as_str(),
            &signing_key,
            context.encryption_kid(),
        ),
        (
            true,
            genuine_token.as_str(),
            context.encryption_key(),
            signing_kid.as_str(),
        ),
    ] {
        let what = if transient {
            "transient token"
        } else {
            "capture context"
        };
        let rows = forgeries(genuine, public, sim.base_url(), transient, other_kid);
        assert_eq!(rows.len(), 31, "{what}: forgeries");
        for (name, token, expect) in rows {
            let e = verify(&client, &context, transient, &token)
                .await
                .err()
                .unwrap_or_else(|| panic!("{what} {name}: a forgery was ACCEPTED"));
            assert!(
                expect.holds(&e),
                "{what} {name}: expected {expect:?}, got {e:?}"
            );
            assert!(e.is_rejection(), "{what} {name}: {e:?}");
            check_message(&format!("{what} {name}"), &token, &e);
            total += 1;
        }
    }
    assert_eq!(total, 62);
    // Only the kids in the headers were ever looked up (the signing kid, and the one-time kid a forged
    // context named): never a jku/x5u target.
    let mut fetched: Vec<String> = sim.stats().public_key_fetches.into_keys().collect();
    fetched.sort();
    let mut expected = vec![signing_kid, context.encryption_kid().to_owned()];
    expected.sort();
    assert_eq!(fetched, expected);
    assert_eq!(sim.stats().token_requests, 1);
}

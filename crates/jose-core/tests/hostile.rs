//! The hostile-token corpus (`tests/hostile/*.tsv`, made by `tests/hostile/generate.py`): every hostile row
//! must be rejected by every verify/decrypt entry point with the typed error the row names — never accepted,
//! never a panic, and never with a message that echoes the token — and every `valid-*` row (the positive
//! controls: an RS256 and an ES256 token of the victim keys, two JWEs to the victim key, one of them the JWE
//! the tampered rows are cut from) must be accepted, so wrong victim keys cannot make the corpus "pass".

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use jose_core::jwe::DecryptOptions;
use jose_core::jws::VerifyOptions;
use jose_core::{JoseError, Jwk, Jwks, KeySet, Validation};
use key_provider::PublicKey;

fn kind(e: &JoseError) -> &'static str {
    match e {
        JoseError::TooLarge { .. } => "too-large",
        JoseError::Malformed { .. } => "malformed",
        JoseError::ForbiddenAlgorithm { .. } => "forbidden-alg",
        JoseError::UnsupportedAlgorithm { .. } => "unsupported-alg",
        JoseError::UnsupportedHeader { .. } => "unsupported-header",
        JoseError::NoKey { .. } => "no-key",
        JoseError::InvalidSignature => "bad-signature",
        JoseError::Expired => "expired",
        JoseError::NotYetValid { .. } => "not-yet-valid",
        JoseError::InvalidClaim { .. } => "invalid-claim",
        JoseError::MissingClaim(_) => "missing-claim",
        JoseError::DecryptionFailed => "decryption-failed",
        _ => "other",
    }
}

/// Rows of `jws.tsv`: 2 valid + 62 hostile (docs/security.md cites these numbers).
const JWS_ROWS: usize = 64;
/// Rows of `jwe.tsv`: 2 valid + 30 hostile.
const JWE_ROWS: usize = 32;
/// The plaintext of the corpus's JWEs.
const JWE_PLAINTEXT: &[u8] = br#"{"data":"x"}"#;

/// (name, expected kind, token) rows of a corpus file.
pub fn corpus(file: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(common::vectors().join("../hostile").join(file)).unwrap();
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

fn victim_keys() -> KeySet {
    let pem = |n: &str| {
        PublicKey::from_pem(&std::fs::read_to_string(common::vectors().join(n)).unwrap()).unwrap()
    };
    let mut rsa = Jwk::from_public_key(&pem("rfc7515_a2.pub.pem"));
    rsa.kid = Some("rsa-victim".into());
    let mut ec = Jwk::from_public_key(&pem("hostile_p256.pub.pem"));
    ec.kid = Some("ec-victim".into());
    KeySet::from_jwks(&Jwks {
        keys: vec![rsa, ec],
    })
    .unwrap()
}

fn check_message(name: &str, token: &str, e: &JoseError) {
    let msg = format!("{e} {e:?}");
    assert!(
        msg.len() < 400,
        "{name}: error message too long ({} bytes)",
        msg.len()
    );
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(
            !msg.contains(&part[..16]),
            "{name}: error echoes the token: {msg}"
        );
    }
}

const CLAIM_LEVEL: [&str; 4] = ["expired", "invalid-claim", "not-yet-valid", "missing-claim"];

#[test]
fn every_hostile_jws_is_rejected_with_its_typed_error() {
    let keys = victim_keys();
    let validation = Validation::new().leeway(0);
    let rows = corpus("jws.tsv");
    assert_eq!(rows.len(), JWS_ROWS + 1, "jws.tsv rows (+ the 1 MiB token)");
    let mut accepted = Vec::new();
    for (name, expected, token) in &rows {
        if expected == "valid" {
            let verified = jose_core::jwt::verify(token, &keys, &validation)
                .unwrap_or_else(|e| panic!("{name}: a valid token was refused: {e}"));
            assert_eq!(verified.claims["iss"], "hostile-corpus", "{name}");
            let (_, payload) = jose_core::jws::verify(token, &keys, &VerifyOptions::default())
                .unwrap_or_else(|e| panic!("{name}: jws::verify refused a valid token: {e}"));
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["sub"],
                "victim"
            );
            accepted.push(format!("{name} {}", verified.alg));
            continue;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            jose_core::jwt::verify(token, &keys, &validation)
        }))
        .unwrap_or_else(|_| panic!("{name}: jwt::verify panicked"));
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{name}: jwt::verify ACCEPTED a hostile token"));
        assert_eq!(kind(&e), expected, "{name}: {e}");
        check_message(name, token, &e);

        // The generic JWS verifier does not read claims; everything else must still be refused.
        let claims_shaped = name.starts_with("claims-")
            || name.starts_with("exp-")
            || CLAIM_LEVEL.contains(&expected.as_str());
        let r = catch_unwind(AssertUnwindSafe(|| {
            jose_core::jws::verify(token, &keys, &VerifyOptions::default())
        }))
        .unwrap_or_else(|_| panic!("{name}: jws::verify panicked"));
        if !claims_shaped {
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{name}: jws::verify ACCEPTED a hostile token"));
            assert_eq!(kind(&e), expected, "{name} (jws::verify): {e}");
        }
        // Decoding for display never panics either.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            jose_core::jwt::decode_unverified(token)
        }))
        .unwrap_or_else(|_| panic!("{name}: decode_unverified panicked"));
    }
    // Both victims, by their kids.
    assert_eq!(accepted, ["valid-rs256 RS256", "valid-es256 ES256"]);
}

#[test]
fn every_hostile_jwe_is_rejected_with_its_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::vector_key(&dir, "rfc7516_a1.pem");
    let rows = corpus("jwe.tsv");
    assert_eq!(rows.len(), JWE_ROWS + 1, "jwe.tsv rows (+ the 1 MiB token)");
    let mut accepted = 0;
    for (name, expected, token) in &rows {
        if expected == "valid" {
            let out = jose_core::jwe::decrypt(token, key.as_ref(), &DecryptOptions::default())
                .unwrap_or_else(|e| panic!("{name}: a valid JWE was refused: {e}"));
            assert_eq!(out.plaintext.as_slice(), JWE_PLAINTEXT, "{name}");
            accepted += 1;
            continue;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            jose_core::jwe::decrypt(token, key.as_ref(), &DecryptOptions::default())
        }))
        .unwrap_or_else(|_| panic!("{name}: jwe::decrypt panicked"));
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{name}: jwe::decrypt ACCEPTED a hostile token"));
        assert_eq!(kind(&e), expected, "{name}: {e}");
        check_message(name, token, &e);
    }
    assert_eq!(accepted, 2);
}

#[test]
fn the_corpus_victims_accept_honest_tokens() {
    // Guards against a corpus that "passes" only because the keys are wrong.
    let dir = tempfile::tempdir().unwrap();
    let a2 = common::vector_json("rfc7515_a2.json");
    let (_, payload) = jose_core::jws::verify(
        a2["jws"].as_str().unwrap(),
        &victim_keys(),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert!(!payload.is_empty());
    let key = common::vector_key(&dir, "rfc7516_a1.pem");
    let a1 = common::vector_json("rfc7516_a1.json");
    jose_core::jwe::decrypt(
        a1["jwe"].as_str().unwrap(),
        key.as_ref(),
        &DecryptOptions::default(),
    )
    .unwrap();
}

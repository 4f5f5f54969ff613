//! Hostile tokens against [`AuthCodeVerifier`]:
//!
//! 1. the shared corpus (`tests/hostile/jws.tsv`), verified with its RSA victim key (RFC 7515 A.2) and its kid
//!    as the agreed one: every row is a [`ProvisioningError::Rejected`] with exactly the error the row names
//!    (signature, expiry, nbf, claim types… the corpus's claims are complete enough to reach each check), or,
//!    where authorization codes are stricter than JWTs, the rule that refuses it — never accepted, never a
//!    panic, never a message that echoes the token. The positive control `valid-rs256` passes the signature,
//!    the times and the header rules and is refused only for a claim authorization codes do not have (the
//!    corpus's claims carry Flex's `flx` too); no fixed token can be a valid code, whose lifetime is at most
//!    300 s;
//! 2. forgeries of a genuine authorization code (alg none, HS256 with the issuer's public key as the secret,
//!    an attacker's signature with or without `jwk`/`jku`/`x5u`, signatures of the wrong length, swapped
//!    claims), and codes the real issuer key signed but with headers or claims the verifier must refuse.

mod common;

use jose_core::JoseError;
use jose_core::b64;
use key_provider::{KeyBackend, KeySpec, PublicKey, SoftwareKey};
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, ProvisioningError, Subject,
};
use serde_json::{Map, Value, json};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn corpus(file: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo("tests/hostile").join(file)).unwrap();
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

fn kind(e: &JoseError) -> &'static str {
    match e {
        JoseError::TooLarge { .. } => "too-large",
        JoseError::Malformed { .. } => "malformed",
        JoseError::ForbiddenAlgorithm { .. } => "forbidden-alg",
        JoseError::UnsupportedAlgorithm { .. } => "unsupported-alg",
        JoseError::UnsupportedHeader { .. } => "unsupported-header",
        JoseError::InvalidSignature => "bad-signature",
        JoseError::NoKey { .. } => "no-key",
        JoseError::Expired => "expired",
        JoseError::NotYetValid { .. } => "not-yet-valid",
        JoseError::InvalidClaim { .. } => "invalid-claim",
        JoseError::MissingClaim(_) => "missing-claim",
        _ => "other",
    }
}

fn check_message(name: &str, token: &str, e: &ProvisioningError) {
    let msg = format!("{e} {e:?}");
    assert!(msg.len() < 800, "{name}: message of {} bytes", msg.len());
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(
            !msg.contains(&part[..16]),
            "{name}: error echoes the token: {msg}"
        );
    }
}

/// The rejection of `token`: its JOSE source, if any, and its reason.
fn rejected(name: &str, token: &str, verifier: &AuthCodeVerifier) -> (Option<JoseError>, String) {
    let result = std::panic::catch_unwind(|| verifier.verify(token))
        .unwrap_or_else(|_| panic!("{name}: verify panicked"));
    let e = result
        .err()
        .unwrap_or_else(|| panic!("{name}: a hostile authorization code was ACCEPTED"));
    check_message(name, token, &e);
    match e {
        ProvisioningError::Rejected { source, reason } => (source, reason),
        other => panic!("{name}: not a rejection: {other:?}"),
    }
}

/// What the verifier must answer for a corpus row: a JOSE error of a kind, or one of its own rules.
#[derive(Debug, PartialEq)]
enum Outcome {
    Jose(String),
    Rule(&'static str),
}

/// The exact outcome for corpus row `name` of kind `kind`, whose header algorithm is `alg`.
fn expected(name: &str, kind: &str, alg: Option<&str>) -> Outcome {
    match (name, kind) {
        // Authorization codes are RS256 only: an ES256 token is refused before its signature is looked at.
        _ if alg.is_some_and(|a| a.starts_with("ES")) && kind != "malformed" => {
            Outcome::Jose("unsupported-alg".into())
        }
        // Signed by the victim key; with a single key the kid selects nothing, and the agreed kid refuses it.
        (n, "no-key") if n.starts_with("kid-") => Outcome::Rule("header kid is not the agreed kid"),
        // The positive control: signature, times and header pass; its claims carry Flex's `flx` too.
        (_, "valid") => Outcome::Rule("unexpected claim \"flx\""),
        (_, kind) => Outcome::Jose(kind.into()),
    }
}

#[test]
fn every_corpus_token_is_rejected_by_the_auth_code_verifier() {
    let victim = PublicKey::from_pem(
        &std::fs::read_to_string(repo("tests/vectors/rfc7515_a2.pub.pem")).unwrap(),
    )
    .unwrap();
    let verifier = AuthCodeVerifier::new(victim)
        .unwrap()
        .leeway(0)
        .kid("rsa-victim");
    let rows = corpus("jws.tsv");
    assert_eq!(rows.len(), 64 + 1, "jws.tsv rows (+ the 1 MiB token)");
    let mut reached: Vec<String> = Vec::new();
    for (name, kind, token) in &rows {
        let alg = token
            .split('.')
            .next()
            .and_then(|h| b64::decode("h", h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        let result = std::panic::catch_unwind(|| verifier.verify(token))
            .unwrap_or_else(|_| panic!("{name}: verify panicked"));
        let e = result.err().unwrap_or_else(|| {
            panic!("{name}: a corpus token was ACCEPTED as an authorization code")
        });
        check_message(name, token, &e);
        let ProvisioningError::Rejected { reason, source } = &e else {
            panic!("{name}: not a rejection: {e:?}")
        };
        let got = match source {
            Some(source) => Outcome::Jose(kind_of(source)),
            None => Outcome::Rule(
                [
                    "header kid is not the agreed kid",
                    "unexpected claim \"flx\"",
                ]
                .into_iter()
                .find(|r| reason.starts_with(r))
                .unwrap_or_else(|| panic!("{name}: unexpected rule: {reason}")),
            ),
        };
        assert_eq!(
            got,
            expected(name, kind, alg.as_deref()),
            "{name} (corpus kind {kind}): {e}"
        );
        if matches!(
            got,
            Outcome::Jose(ref k) if ["bad-signature", "expired", "not-yet-valid", "invalid-claim"].contains(&k.as_str())
        ) {
            reached.push(name.clone());
        }
    }
    // The rows that name a signature or claim failure got that far (counted, so none can silently stop at an
    // earlier check): 9 RSA bad-signature rows, expired, nbf, 4 invalid-claim.
    assert_eq!(reached.len(), 15, "{reached:?}");
}

fn kind_of(e: &JoseError) -> String {
    kind(e).to_owned()
}

fn attacker() -> SoftwareKey {
    SoftwareKey::from_bytes(
        "file",
        "attacker".into(),
        &std::fs::read(repo("tests/vectors/hostile_attacker.pem")).unwrap(),
    )
    .unwrap()
}

fn signed(key: &dyn KeyBackend, header: &Value, claims: &Value) -> String {
    jose_core::jws::sign_with_raw_header(
        key,
        jose_core::JwsAlgorithm::RS256,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
    .unwrap()
}

fn hs256(secret: &[u8], header: &Map<String, Value>, claims: &Value) -> String {
    jose_core::jwt::install_crypto_provider();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

#[test]
fn forged_authorization_codes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = common::new_key(&dir, "issuer.pem", KeySpec::Rsa(2048));
    let signer = AuthCodeSigner::new(issuer.clone(), "acmebank").unwrap();
    let request = AuthCodeRequest::new(
        Subject::IssuerCardRefId("card-123".into()),
        Audience::ApplePay,
    );
    let genuine = signer.sign(&request).unwrap().into_string();
    let verifier = AuthCodeVerifier::new(issuer.public_key().clone())
        .unwrap()
        .issuer_id("acmebank");
    verifier
        .verify(&genuine)
        .expect("the genuine code verifies");

    let parts: Vec<&str> = genuine.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let header: Map<String, Value> = serde_json::from_slice(&b64::decode("h", h).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64::decode("p", p).unwrap()).unwrap();
    let sig = b64::decode("s", s).unwrap();
    let with = |changes: &[(&str, Value)]| {
        let mut m = header.clone();
        for (k, v) in changes {
            m.insert((*k).to_owned(), v.clone());
        }
        Value::Object(m)
    };
    let attacker = attacker();
    let attacker_jwk =
        serde_json::to_value(jose_core::Jwk::from_public_key(attacker.public_key())).unwrap();
    let mut richer = claims.clone();
    richer["sub"] = json!("someone-elses-card");
    let mut extra_claim = claims.clone();
    extra_claim["pan"] = json!("4111111111111111");

    let public = issuer.public_key();
    let none_header = b64::encode(with(&[("alg", json!("none"))]).to_string());
    let forgeries: Vec<(&str, String)> = vec![
        ("alg-none", format!("{none_header}.{p}.")),
        ("alg-none-with-signature", format!("{none_header}.{p}.{s}")),
        (
            "alg-None",
            format!(
                "{}.{p}.",
                b64::encode(with(&[("alg", json!("None"))]).to_string())
            ),
        ),
        (
            "hs256-public-key-pem-as-secret",
            hs256(public.to_spki_pem().as_bytes(), &header, &claims),
        ),
        (
            "hs256-public-key-der-as-secret",
            hs256(&public.to_spki_der(), &header, &claims),
        ),
        ("signed-by-attacker", signed(&attacker, &with(&[]), &claims)),
        (
            "attacker-key-in-jwk-header",
            signed(&attacker, &with(&[("jwk", attacker_jwk.clone())]), &claims),
        ),
        (
            "attacker-url-in-jku-header",
            signed(
                &attacker,
                &with(&[("jku", json!("https://attacker.invalid/jwks.json"))]),
                &claims,
            ),
        ),
        (
            "attacker-url-in-x5u-header",
            signed(
                &attacker,
                &with(&[("x5u", json!("https://attacker.invalid/cert.pem"))]),
                &claims,
            ),
        ),
        (
            "signature-one-byte-short",
            format!("{h}.{p}.{}", b64::encode(&sig[..sig.len() - 1])),
        ),
        (
            "signature-one-byte-long",
            format!("{h}.{p}.{}", b64::encode([&sig[..], &[0]].concat())),
        ),
        ("signature-empty", format!("{h}.{p}.")),
        (
            "claims-swapped",
            format!("{h}.{}.{s}", b64::encode(richer.to_string())),
        ),
        ("two-parts", format!("{h}.{p}")),
        ("four-parts", format!("{genuine}.{s}")),
        ("padding", format!("{genuine}=")),
        (
            "claims-duplicate-sub",
            format!(
                "{h}.{}.{s}",
                b64::encode(claims.to_string().replacen('{', "{\"sub\":\"x\",", 1))
            ),
        ),
        // Signed by the real issuer key, but with what the verifier must refuse anyway.
        (
            "issuer-signed-with-jku-header",
            signed(
                issuer.as_ref(),
                &with(&[("jku", json!("https://attacker.invalid/jwks.json"))]),
                &claims,
            ),
        ),
        (
            "issuer-signed-with-jwk-header",
            signed(issuer.as_ref(), &with(&[("jwk", attacker_jwk)]), &claims),
        ),
        (
            "issuer-signed-with-crit",
            signed(issuer.as_ref(), &with(&[("crit", json!(["exp"]))]), &claims),
        ),
        (
            "issuer-signed-with-an-extra-claim",
            signed(issuer.as_ref(), &with(&[]), &extra_claim),
        ),
    ];
    assert_eq!(forgeries.len(), 21);
    for (name, token) in &forgeries {
        let (source, reason) = rejected(name, token, &verifier);
        let k = source.as_ref().map(kind);
        // (the JOSE error's kind, or None and the verifier's own rule)
        let (want_kind, want_rule) = match *name {
            n if n.starts_with("alg-") || n.starts_with("hs256") => (Some("forbidden-alg"), ""),
            n if n.starts_with("signed-by")
                || n.starts_with("attacker")
                || n.starts_with("signature")
                || n == "claims-swapped" =>
            {
                (Some("bad-signature"), "")
            }
            "two-parts" | "four-parts" | "padding" | "claims-duplicate-sub" => {
                (Some("malformed"), "")
            }
            "issuer-signed-with-crit" => (Some("unsupported-header"), ""),
            // Header members and claims beyond the agreed ones: refused after the signature checked out.
            "issuer-signed-with-jku-header" => (None, "unexpected header member \"jku\""),
            "issuer-signed-with-jwk-header" => (None, "unexpected header member \"jwk\""),
            "issuer-signed-with-an-extra-claim" => (None, "unexpected claim \"pan\""),
            other => panic!("{other}: no expectation"),
        };
        assert_eq!(k, want_kind, "{name}: {reason}");
        assert!(reason.starts_with(want_rule), "{name}: {reason}");
    }
}

//! Hostile tokens against [`AuthCodeVerifier`]:
//!
//! 1. the shared corpus (`tests/hostile/jws.tsv`), verified with its RSA victim key (RFC 7515 A.2): every
//!    row is a [`ProvisioningError::Rejected`], whose JOSE source has the kind the corpus names for the
//!    structural rows — never accepted, never a panic, never a message that echoes the token;
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

fn rejected(name: &str, token: &str, verifier: &AuthCodeVerifier) -> Option<JoseError> {
    let result = std::panic::catch_unwind(|| verifier.verify(token))
        .unwrap_or_else(|_| panic!("{name}: verify panicked"));
    let e = result
        .err()
        .unwrap_or_else(|| panic!("{name}: a hostile authorization code was ACCEPTED"));
    check_message(name, token, &e);
    match e {
        ProvisioningError::Rejected { source, .. } => source,
        other => panic!("{name}: not a rejection: {other:?}"),
    }
}

#[test]
fn every_corpus_token_is_rejected_by_the_auth_code_verifier() {
    let victim = PublicKey::from_pem(
        &std::fs::read_to_string(repo("tests/vectors/rfc7515_a2.pub.pem")).unwrap(),
    )
    .unwrap();
    let verifier = AuthCodeVerifier::new(victim).unwrap().leeway(0);
    let rows = corpus("jws.tsv");
    assert!(rows.len() >= 60, "corpus shrank");
    for (name, expected, token) in &rows {
        let source = rejected(name, token, &verifier);
        let is_ec = token
            .split('.')
            .next()
            .and_then(|h| b64::decode("h", h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| {
                h.get("alg")
                    .and_then(Value::as_str)
                    .map(|a| a.starts_with("ES"))
            })
            .unwrap_or(false);
        let structural = ["too-large", "forbidden-alg", "unsupported-header"]
            .contains(&expected.as_str())
            || (expected == "malformed"
                && !name.starts_with("claims-")
                && !name.starts_with("exp-"));
        if is_ec {
            // Authorization codes are RS256 only: ES256 is refused before its signature is looked at.
            let k = source.as_ref().map(kind);
            assert!(
                matches!(k, Some("unsupported-alg" | "malformed")),
                "{name}: {k:?}"
            );
        } else if structural {
            let source = source.unwrap_or_else(|| panic!("{name}: no JOSE error"));
            assert_eq!(kind(&source), expected, "{name}: {source}");
        } else if expected == "bad-signature" && !name.starts_with("kid-") {
            let source = source.unwrap_or_else(|| panic!("{name}: no JOSE error"));
            assert_eq!(kind(&source), "bad-signature", "{name}: {source}");
        }
    }
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
    assert!(forgeries.len() >= 20);
    for (name, token) in &forgeries {
        let source = rejected(name, token, &verifier);
        let k = source.as_ref().map(kind);
        let ok = match *name {
            n if n.starts_with("alg-") || n.starts_with("hs256") => {
                matches!(k, Some("forbidden-alg" | "unsupported-alg"))
            }
            n if n.starts_with("signed-by")
                || n.starts_with("attacker")
                || n.starts_with("signature")
                || n == "claims-swapped" =>
            {
                k == Some("bad-signature")
            }
            "two-parts" | "four-parts" | "padding" | "claims-duplicate-sub" => {
                k == Some("malformed")
            }
            "issuer-signed-with-crit" => k == Some("unsupported-header"),
            // Header members and claims beyond the agreed ones: refused after the signature checked out.
            _ => k.is_none(),
        };
        assert!(ok, "{name}: {k:?}");
    }
}

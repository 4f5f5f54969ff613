//! Tokens that must be rejected, each with the typed error that says why: tampered signature, wrong key,
//! expired, wrong aud/iss, `alg: none`, RS256→HS256 with the public key as HMAC secret, bad base64, truncated
//! input, unknown `crit`, `b64: false`, oversize tokens; and that no error message echoes the token.

mod common;

use aws_lc_rs::hmac;
use jose_core::{JoseError, JwsAlgorithm, JwsHeader, KeySet, Validation, VerifyingKey};
use key_provider::{EcCurve, KeySpec};
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    key: std::sync::Arc<dyn key_provider::KeyBackend>,
    keys: KeySet,
    other: KeySet,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_key(&dir, "a.pem", KeySpec::Rsa(2048));
    let (other, _) = common::new_key(&dir, "b.pem", KeySpec::Rsa(2048));
    let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
    let other = KeySet::single(VerifyingKey::new(other.public_key().clone()));
    Fixture {
        _dir: dir,
        key,
        keys,
        other,
    }
}

fn token(f: &Fixture, claims: &serde_json::Value) -> String {
    jose_core::jwt::sign(
        f.key.as_ref(),
        &JwsHeader::new(JwsAlgorithm::RS256).typ("JWT"),
        claims,
    )
    .unwrap()
}

fn valid_claims() -> serde_json::Value {
    json!({"iss": "https://issuer.example", "aud": "https://api.example", "sub": "s", "exp": jose_core::jwt::now() + 300, "iat": jose_core::jwt::now()})
}

fn forge(header: &serde_json::Value, claims: &serde_json::Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        jose_core::b64::encode(header.to_string()),
        jose_core::b64::encode(claims.to_string()),
        jose_core::b64::encode(sig)
    )
}

fn verify(t: &str, keys: &KeySet) -> Result<jose_core::VerifiedJwt, JoseError> {
    let v = Validation::new()
        .issuer("https://issuer.example")
        .audience("https://api.example")
        .leeway(0);
    let r = jose_core::jwt::verify(t, keys, &v);
    if let Err(e) = &r {
        // Messages never echo the token or its signature.
        let msg = format!("{e} {e:?}");
        for part in t.split('.').filter(|p| p.len() > 8) {
            assert!(!msg.contains(part), "error echoes token input: {msg}");
        }
    }
    r
}

#[test]
fn valid_token_verifies() {
    let f = fixture();
    let out = verify(&token(&f, &valid_claims()), &f.keys).unwrap();
    assert_eq!(out.claims["sub"], "s");
}

#[test]
fn tampered_signature_and_payload() {
    let f = fixture();
    let t = token(&f, &valid_claims());
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut raw = jose_core::b64::decode("s", sig).unwrap();
    raw[0] ^= 0x80;
    assert!(matches!(
        verify(&format!("{head}.{}", jose_core::b64::encode(&raw)), &f.keys),
        Err(JoseError::InvalidSignature)
    ));
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims = valid_claims();
    claims["sub"] = json!("admin");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        jose_core::b64::encode(claims.to_string()),
        parts[2]
    );
    assert!(matches!(
        verify(&swapped, &f.keys),
        Err(JoseError::InvalidSignature)
    ));
    // Signature of the wrong length.
    assert!(matches!(
        verify(
            &format!("{head}.{}", jose_core::b64::encode(&raw[..100])),
            &f.keys
        ),
        Err(JoseError::InvalidSignature)
    ));
}

#[test]
fn wrong_key() {
    let f = fixture();
    assert!(matches!(
        verify(&token(&f, &valid_claims()), &f.other),
        Err(JoseError::InvalidSignature)
    ));
}

#[test]
fn expired_and_not_yet_valid() {
    let f = fixture();
    let mut c = valid_claims();
    c["exp"] = json!(jose_core::jwt::now() - 10);
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::Expired)
    ));
    let mut c = valid_claims();
    c["nbf"] = json!(jose_core::jwt::now() + 100);
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::NotYetValid { claim: "nbf" })
    ));
    let mut c = valid_claims();
    c["iat"] = json!(jose_core::jwt::now() + 100);
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::NotYetValid { claim: "iat" })
    ));
    let mut c = valid_claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::MissingClaim(_))
    ));
    let mut c = valid_claims();
    c["exp"] = json!(1e300);
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::InvalidClaim { .. })
    ));
    let mut c = valid_claims();
    c["exp"] = json!("tomorrow");
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::InvalidClaim { .. })
    ));
}

#[test]
fn wrong_audience_and_issuer() {
    let f = fixture();
    let mut c = valid_claims();
    c["aud"] = json!("https://elsewhere.example");
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::InvalidAudience)
    ));
    let mut c = valid_claims();
    c["iss"] = json!("https://evil.example");
    assert!(matches!(
        verify(&token(&f, &c), &f.keys),
        Err(JoseError::InvalidIssuer)
    ));
}

/// An expected audience, issuer or subject is not satisfied by a token that lacks the claim, or carries it
/// with the wrong JSON type (jsonwebtoken alone skips the comparison in both cases).
#[test]
fn missing_or_mistyped_audience_issuer_subject() {
    let f = fixture();
    for claim in ["aud", "iss"] {
        let mut c = valid_claims();
        c.as_object_mut().unwrap().remove(claim);
        let r = verify(&token(&f, &c), &f.keys);
        assert!(
            matches!(&r, Err(JoseError::MissingClaim(name)) if name == claim),
            "{claim}: {r:?}"
        );
    }
    let with_subject = Validation::new().subject("s").leeway(0);
    let mut c = valid_claims();
    c.as_object_mut().unwrap().remove("sub");
    let r = jose_core::jwt::verify(&token(&f, &c), &f.keys, &with_subject);
    assert!(
        matches!(&r, Err(JoseError::MissingClaim(name)) if name == "sub"),
        "{r:?}"
    );
    assert!(jose_core::jwt::verify(&token(&f, &valid_claims()), &f.keys, &with_subject).is_ok());

    for (claim, value) in [
        ("aud", json!(17)),
        ("aud", json!({"a": "https://api.example"})),
        ("aud", json!(["https://api.example", 3])),
        ("aud", json!(null)),
        ("iss", json!(["https://issuer.example"])),
        ("iss", json!(null)),
        ("sub", json!(1)),
    ] {
        let mut c = valid_claims();
        c[claim] = value.clone();
        let r = verify(&token(&f, &c), &f.keys);
        assert!(
            matches!(&r, Err(JoseError::InvalidClaim { claim: name, .. }) if name == claim),
            "{claim}={value}: {r:?}"
        );
    }
    // Arrays of audiences stay accepted when one of them is expected.
    let mut c = valid_claims();
    c["aud"] = json!(["https://other.example", "https://api.example"]);
    assert!(verify(&token(&f, &c), &f.keys).is_ok());
}

#[test]
fn alg_none_in_any_spelling() {
    let f = fixture();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = forge(&json!({"alg": alg, "typ": "JWT"}), &valid_claims(), b"");
        assert!(
            matches!(
                verify(&t, &f.keys),
                Err(JoseError::ForbiddenAlgorithm { .. })
            ),
            "{alg}"
        );
        let t = format!("{}.", &t[..t.len() - 1]);
        assert!(verify(&t, &f.keys).is_err());
    }
}

#[test]
fn rs256_resigned_as_hs256_with_public_key_as_secret() {
    let f = fixture();
    let pem = f.key.public_key().to_spki_pem();
    let der = f.key.public_key().to_spki_der();
    for secret in [pem.as_bytes(), &der[..]] {
        let header = jose_core::b64::encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
        let claims = jose_core::b64::encode(valid_claims().to_string());
        let input = format!("{header}.{claims}");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        let t = format!("{input}.{}", jose_core::b64::encode(tag.as_ref()));
        assert!(matches!(
            verify(&t, &f.keys),
            Err(JoseError::ForbiddenAlgorithm { .. })
        ));
    }
}

#[test]
fn algorithm_must_match_key_and_allow_list() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (ec, _) = common::new_key(&dir, "ec.pem", KeySpec::Ec(EcCurve::P256));
    let t = jose_core::jwt::sign(
        ec.as_ref(),
        &JwsHeader::new(JwsAlgorithm::ES256),
        &valid_claims(),
    )
    .unwrap();
    assert!(matches!(verify(&t, &f.keys), Err(JoseError::NoKey { .. })));
    let t = token(&f, &valid_claims());
    let v = Validation::new().algorithms(&[JwsAlgorithm::PS256]);
    assert!(matches!(
        jose_core::jwt::verify(&t, &f.keys, &v),
        Err(JoseError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn structural_garbage() {
    let f = fixture();
    let t = token(&f, &valid_claims());
    let cases: Vec<String> = vec![
        String::new(),
        "a".into(),
        "a.b".into(),
        format!("{t}.extra"),
        t[..t.len() - 10].to_string(),
        t.replacen('.', "..", 1),
        format!("{t}="),
        format!(" {t}"),
        // The standard base64 alphabet's '+' where base64url is required (always there, unlike a
        // replacement of whatever '-' the token happens to contain).
        {
            let (head, sig) = t.rsplit_once('.').unwrap();
            format!("{head}.+{}", &sig[1..])
        },
        format!(
            "{}.{}",
            jose_core::b64::encode("[1,2]"),
            t.split_once('.').unwrap().1
        ),
        forge(
            &json!({"alg": "RS256", "crit": ["exp"], "exp": 1}),
            &valid_claims(),
            &[0u8; 256],
        ),
        forge(
            &json!({"alg": "RS256", "b64": false, "crit": ["b64"]}),
            &valid_claims(),
            &[0u8; 256],
        ),
        forge(
            &json!({"alg": "RS256", "b64": false}),
            &valid_claims(),
            &[0u8; 256],
        ),
        format!(
            "{}.{}.{}",
            jose_core::b64::encode(r#"{"alg":"RS256","alg":"none"}"#),
            jose_core::b64::encode("{}"),
            "AA"
        ),
    ];
    for c in &cases {
        let r = verify(c, &f.keys);
        assert!(r.is_err(), "accepted: {c}");
        // Structural problems are reported as such, never as a signature failure.
        let truncated_signature = c.len() == t.len() - 10;
        assert!(
            truncated_signature || !matches!(r, Err(JoseError::InvalidSignature)),
            "{c}: {r:?}"
        );
    }
}

#[test]
fn oversize_token_rejected_before_decoding() {
    let f = fixture();
    let big = "A".repeat(64 * 1024 + 1);
    assert!(matches!(
        verify(&big, &f.keys),
        Err(JoseError::TooLarge { .. })
    ));
    let v = Validation::new().leeway(0);
    let mut small = v.clone();
    small.max_token_size = 100;
    assert!(matches!(
        jose_core::jwt::verify(&token(&f, &valid_claims()), &f.keys, &small),
        Err(JoseError::TooLarge { .. })
    ));
}

#[test]
fn jwks_selection_by_kid() {
    let f = fixture();
    let jwks = json!({"keys": [
        jose_core::Jwk::from_public_key(&f.other.keys()[0].key).with_thumbprint_kid().unwrap(),
        jose_core::Jwk::from_public_key(f.key.public_key()).with_thumbprint_kid().unwrap(),
    ]});
    let keys = KeySet::from_text(&jwks.to_string()).unwrap();
    let kid = jose_core::thumbprint(f.key.public_key());
    let t = jose_core::jwt::sign(
        f.key.as_ref(),
        &JwsHeader::new(JwsAlgorithm::RS256).kid(&kid),
        &valid_claims(),
    )
    .unwrap();
    verify(&t, &keys).unwrap();
    let t = jose_core::jwt::sign(
        f.key.as_ref(),
        &JwsHeader::new(JwsAlgorithm::RS256).kid("../../etc/passwd"),
        &valid_claims(),
    )
    .unwrap();
    assert!(matches!(verify(&t, &keys), Err(JoseError::NoKey { .. })));
    let t = jose_core::jwt::sign(
        f.key.as_ref(),
        &JwsHeader::new(JwsAlgorithm::RS256),
        &valid_claims(),
    )
    .unwrap();
    assert!(
        matches!(verify(&t, &keys), Err(JoseError::NoKey { .. })),
        "no kid and two keys must be ambiguous"
    );
}

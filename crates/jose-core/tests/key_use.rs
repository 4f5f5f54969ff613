//! JWK `use` and `key_ops` (RFC 7517 §4.2–4.3) in key selection, both ways: a key marked for encryption
//! never verifies a signature, a key marked for signatures is never encrypted to, and a JWK whose `use` and
//! `key_ops` contradict each other is refused when parsed.

mod common;

use std::sync::Arc;

use jose_core::jwe::{DecryptOptions, EncryptOptions};
use jose_core::{
    ContentEncryption, JoseError, Jwk, Jwks, JwsAlgorithm, JwsHeader, KeyManagementAlgorithm,
    KeyPurpose, KeySet, Validation,
};
use key_provider::{KeyBackend, KeySpec};
use serde_json::{Value, json};

struct Keys {
    _dir: tempfile::TempDir,
    a: Arc<dyn KeyBackend>,
    b: Arc<dyn KeyBackend>,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = common::new_key(&dir, "a.pem", KeySpec::Rsa(2048));
    let (b, _) = common::new_key(&dir, "b.pem", KeySpec::Rsa(2048));
    Keys { _dir: dir, a, b }
}

/// The public JWK of `key` with extra members (`kid`, `use`, `key_ops`…).
fn jwk(key: &dyn KeyBackend, members: &Value) -> Value {
    let mut v = serde_json::to_value(Jwk::from_public_key(key.public_key())).unwrap();
    for (k, m) in members.as_object().unwrap() {
        v[k] = m.clone();
    }
    v
}

fn jwks(keys: &[Value]) -> KeySet {
    KeySet::from_text(&json!({ "keys": keys }).to_string()).unwrap()
}

fn jwt(key: &dyn KeyBackend, kid: Option<&str>) -> String {
    let mut header = JwsHeader::new(JwsAlgorithm::RS256).typ("JWT");
    if let Some(kid) = kid {
        header = header.kid(kid);
    }
    let claims = json!({"sub": "s", "exp": jose_core::jwt::now() + 300});
    jose_core::jwt::sign(key, &header, &claims).unwrap()
}

fn verify(token: &str, keys: &KeySet) -> Result<jose_core::VerifiedJwt, JoseError> {
    jose_core::jwt::verify(token, keys, &Validation::new())
}

#[test]
fn a_key_marked_for_encryption_does_not_verify_a_jwt() {
    let k = keys();
    let token = jwt(k.a.as_ref(), Some("a"));
    for (members, why) in [
        (json!({"kid": "a", "use": "enc"}), "`use` \"enc\""),
        (json!({"kid": "a", "key_ops": ["encrypt"]}), "`key_ops`"),
        (
            json!({"kid": "a", "key_ops": ["wrapKey", "encrypt"]}),
            "`key_ops`",
        ),
        // `sign` is the private half's operation: a public key to verify with needs `verify`.
        (json!({"kid": "a", "key_ops": ["sign"]}), "`key_ops`"),
        (
            json!({"kid": "a", "use": "enc", "key_ops": ["encrypt"]}),
            "`use` \"enc\"",
        ),
    ] {
        let set = jwks(&[jwk(k.a.as_ref(), &members)]);
        let e = verify(&token, &set).unwrap_err();
        assert!(
            matches!(&e, JoseError::NoKey { reason } if reason.contains(why) && reason.contains("not for verifying signatures")),
            "{members}: {e:?}"
        );
        // The generic JWS verifier selects the same way.
        let e = jose_core::jws::verify(&token, &set, &Default::default()).unwrap_err();
        assert!(matches!(e, JoseError::NoKey { .. }), "{members}: {e:?}");
        // As a single JWK (not a set) too.
        let single = KeySet::from_text(&jwk(k.a.as_ref(), &members).to_string()).unwrap();
        assert!(
            matches!(verify(&token, &single), Err(JoseError::NoKey { .. })),
            "{members}"
        );
    }
    // The same key without the marking, or marked for signatures, verifies.
    for members in [
        json!({"kid": "a"}),
        json!({"kid": "a", "use": "sig"}),
        json!({"kid": "a", "key_ops": ["verify"]}),
        json!({"kid": "a", "use": "sig", "key_ops": ["sign", "verify"]}),
    ] {
        let set = jwks(&[jwk(k.a.as_ref(), &members)]);
        verify(&token, &set).unwrap_or_else(|e| panic!("{members}: {e}"));
    }
}

#[test]
fn without_a_kid_the_signature_key_is_chosen_and_the_encryption_key_never() {
    let k = keys();
    let set = jwks(&[
        jwk(k.a.as_ref(), &json!({"use": "sig"})),
        jwk(k.b.as_ref(), &json!({"use": "enc"})),
    ]);
    // Two RSA keys fit RS256; only one may verify, so a token without kid is verified with it.
    verify(&jwt(k.a.as_ref(), None), &set).unwrap();
    // A token signed by the encryption key's private half is not verified with that key.
    assert!(matches!(
        verify(&jwt(k.b.as_ref(), None), &set),
        Err(JoseError::InvalidSignature)
    ));
}

#[test]
fn a_key_marked_for_signatures_is_not_encrypted_to() {
    let k = keys();
    for (members, why) in [
        (json!({"kid": "a", "use": "sig"}), "`use` \"sig\""),
        (json!({"kid": "a", "key_ops": ["verify"]}), "`key_ops`"),
        (json!({"kid": "a", "key_ops": ["decrypt"]}), "`key_ops`"),
    ] {
        let set = jwks(&[jwk(k.a.as_ref(), &members)]);
        let e = set.select_for_encryption(None).unwrap_err();
        assert!(
            matches!(&e, JoseError::NoKey { reason } if reason.contains(why) && reason.contains("not for encryption")),
            "{members}: {e:?}"
        );
        let e = set.select_for_encryption(Some("a")).unwrap_err();
        assert!(matches!(e, JoseError::NoKey { .. }), "{members}: {e:?}");
    }
    for members in [
        json!({"kid": "a"}),
        json!({"kid": "a", "use": "enc"}),
        json!({"kid": "a", "key_ops": ["encrypt"]}),
        json!({"kid": "a", "use": "enc", "key_ops": ["wrapKey"]}),
    ] {
        let set = jwks(&[jwk(k.a.as_ref(), &members)]);
        let chosen = set
            .select_for_encryption(Some("a"))
            .unwrap_or_else(|e| panic!("{members}: {e}"));
        // The chosen key is the one whose private half decrypts.
        let jwe = jose_core::jwe::encrypt(
            &chosen.key,
            KeyManagementAlgorithm::RsaOaep256,
            ContentEncryption::A256GCM,
            b"x",
            &EncryptOptions::new(),
        )
        .unwrap();
        jose_core::jwe::decrypt(&jwe, k.a.as_ref(), &DecryptOptions::default()).unwrap();
    }
}

#[test]
fn encryption_picks_the_encryption_key_of_a_mixed_set() {
    let k = keys();
    let set = jwks(&[
        jwk(k.a.as_ref(), &json!({"kid": "s", "use": "sig"})),
        jwk(k.b.as_ref(), &json!({"kid": "e", "use": "enc"})),
    ]);
    assert_eq!(
        set.select_for_encryption(None).unwrap().kid.as_deref(),
        Some("e")
    );
    assert_eq!(
        set.select_for_encryption(Some("e")).unwrap().kid.as_deref(),
        Some("e")
    );
    assert!(matches!(
        set.select_for_encryption(Some("s")),
        Err(JoseError::NoKey { reason }) if reason.contains("not for encryption")
    ));
    assert!(matches!(
        set.select_for_encryption(Some("nope")),
        Err(JoseError::NoKey { reason }) if reason.contains("no RSA key with kid")
    ));
    // And verification picks the other one.
    verify(&jwt(k.a.as_ref(), Some("s")), &set).unwrap();
    assert!(matches!(
        verify(&jwt(k.b.as_ref(), Some("e")), &set),
        Err(JoseError::NoKey { .. })
    ));
}

#[test]
fn use_and_key_ops_that_contradict_each_other_are_refused_at_parse() {
    let k = keys();
    for members in [
        json!({"use": "sig", "key_ops": ["encrypt"]}),
        json!({"use": "sig", "key_ops": ["verify", "wrapKey"]}),
        json!({"use": "enc", "key_ops": ["verify"]}),
        json!({"use": "enc", "key_ops": ["encrypt", "sign"]}),
    ] {
        let text = jwk(k.a.as_ref(), &members).to_string();
        let e = Jwk::from_json(&text).unwrap_err();
        assert!(
            matches!(&e, JoseError::Malformed { reason, .. } if reason.contains("contradict")),
            "{members}: {e:?}"
        );
        assert!(Jwks::from_json(&format!(r#"{{"keys":[{text}]}}"#)).is_err());
        assert!(KeySet::from_text(&text).is_err());
        // A key set built from JWKs in code checks them too.
        let built: Jwk = serde_json::from_str(&text).unwrap();
        assert!(KeySet::from_jwks(&Jwks { keys: vec![built] }).is_err());
    }
    // A repeated operation, and members of the wrong type.
    for members in [
        json!({"key_ops": ["verify", "verify"]}),
        json!({"key_ops": "verify"}),
        json!({"use": ["sig"]}),
    ] {
        let text = jwk(k.a.as_ref(), &members).to_string();
        assert!(
            matches!(Jwk::from_json(&text), Err(JoseError::Malformed { .. })),
            "{members}"
        );
    }
    // Consistent pairs, and values RFC 7517 leaves open, parse.
    for members in [
        json!({"use": "sig", "key_ops": ["sign", "verify"]}),
        json!({"use": "enc", "key_ops": ["encrypt", "wrapKey"]}),
        json!({"use": "tls", "key_ops": ["verify"]}),
    ] {
        let jwk = Jwk::from_json(&jwk(k.a.as_ref(), &members).to_string())
            .unwrap_or_else(|e| panic!("{members}: {e}"));
        // A use other than sig/enc permits neither.
        assert_eq!(
            jwk.permits(KeyPurpose::Verify),
            members["use"] == "sig",
            "{members}"
        );
    }
}

#[test]
fn key_ops_survive_a_round_trip() {
    let k = keys();
    let text = jwk(k.a.as_ref(), &json!({"use": "enc", "key_ops": ["wrapKey"]})).to_string();
    let parsed = Jwk::from_json(&text).unwrap();
    assert_eq!(parsed.key_ops.as_deref(), Some(&["wrapKey".to_owned()][..]));
    let again = Jwk::from_json(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(again, parsed);
    assert!(again.permits(KeyPurpose::Encrypt) && !again.permits(KeyPurpose::Verify));
}

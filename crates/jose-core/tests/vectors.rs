//! Published RFC vectors: RFC 7515 A.2 reproduced byte for byte through the file backend, RFC 7638 §3.1,
//! RFC 7516 A.1 and RFC 7520 §5.2 decrypted, RFC 7520 §5.1 (RSA1_5) refused.

mod common;

use jose_core::jwe::DecryptOptions;
use jose_core::{JoseError, Jwk, JwsAlgorithm, KeySet};

#[test]
fn rfc7515_a2_rs256_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::vector_json("rfc7515_a2.json");
    let key = common::vector_key(&dir, "rfc7515_a2.pem");
    let header = jose_core::b64::decode("h", v["protected_b64"].as_str().unwrap()).unwrap();
    let payload = jose_core::b64::decode("p", v["payload_b64"].as_str().unwrap()).unwrap();
    let jws =
        jose_core::jws::sign_with_raw_header(key.as_ref(), JwsAlgorithm::RS256, &header, &payload)
            .unwrap();
    assert_eq!(jws, v["jws"].as_str().unwrap());

    // And the published JWS verifies with the published public JWK.
    let keys = KeySet::from_text(&v["public_jwk"].to_string()).unwrap();
    let (_, verified_payload) = jose_core::jws::verify(&jws, &keys, &Default::default()).unwrap();
    assert_eq!(verified_payload, payload);
}

#[test]
fn rfc7638_thumbprint() {
    let v = common::vector_json("rfc7638_3_1.json");
    let jwk = Jwk::from_json(&v["jwk"].to_string()).unwrap();
    assert_eq!(jwk.thumbprint().unwrap(), v["thumbprint"].as_str().unwrap());
    assert_eq!(
        jose_core::thumbprint(&jwk.to_public_key().unwrap()),
        v["thumbprint"].as_str().unwrap()
    );
}

#[test]
fn rfc7516_a1_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::vector_json("rfc7516_a1.json");
    let key = common::vector_key(&dir, "rfc7516_a1.pem");
    let out = jose_core::jwe::decrypt(
        v["jwe"].as_str().unwrap(),
        key.as_ref(),
        &DecryptOptions::default(),
    )
    .unwrap();
    let expected = jose_core::b64::decode("p", v["plaintext_b64"].as_str().unwrap()).unwrap();
    assert_eq!(&out.plaintext[..], &expected[..]);
    assert_eq!(out.header["enc"], "A256GCM");
}

#[test]
fn rfc7520_5_2_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::vector_json("rfc7520_5_2.json");
    let key = common::vector_key(&dir, "rfc7520_5_2.pem");
    let out = jose_core::jwe::decrypt(
        v["jwe"].as_str().unwrap(),
        key.as_ref(),
        &DecryptOptions::default(),
    )
    .unwrap();
    assert_eq!(
        &out.plaintext[..],
        v["plaintext"].as_str().unwrap().as_bytes()
    );
    assert_eq!(out.header["kid"], v["kid"]);
}

#[test]
fn rfc7520_5_1_rsa1_5_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::vector_json("rfc7520_5_1.json");
    let key = common::vector_key(&dir, "rfc7520_5_1.pem");
    let err = jose_core::jwe::decrypt(
        v["jwe"].as_str().unwrap(),
        key.as_ref(),
        &DecryptOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, JoseError::ForbiddenAlgorithm { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("RSA1_5"));
}

#[test]
fn tampered_rfc_jwe_fails_opaquely() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::vector_json("rfc7516_a1.json");
    let key = common::vector_key(&dir, "rfc7516_a1.pem");
    let jwe = v["jwe"].as_str().unwrap();
    let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    // Flip one ciphertext byte.
    let mut ct = jose_core::b64::decode("c", &parts[3]).unwrap();
    ct[0] ^= 1;
    parts[3] = jose_core::b64::encode(&ct);
    let err = jose_core::jwe::decrypt(&parts.join("."), key.as_ref(), &DecryptOptions::default())
        .unwrap_err();
    assert!(matches!(err, JoseError::DecryptionFailed), "{err:?}");
    // A corrupted encrypted key fails the same way (no distinguishable oracle).
    let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    let mut ek = jose_core::b64::decode("k", &parts[1]).unwrap();
    ek[10] ^= 0x40;
    parts[1] = jose_core::b64::encode(&ek);
    let err = jose_core::jwe::decrypt(&parts.join("."), key.as_ref(), &DecryptOptions::default())
        .unwrap_err();
    assert!(matches!(err, JoseError::DecryptionFailed), "{err:?}");
}

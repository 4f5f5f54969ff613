//! Interoperability with independent implementations: our JWEs decrypted by `josekit` (OpenSSL) and
//! josekit's decrypted by ours; every JWS algorithm we sign verified by `jsonwebtoken` directly.

mod common;

use jose_core::jwe::{DecryptOptions, EncryptOptions};
use jose_core::{ContentEncryption, JwsAlgorithm, JwsHeader, KeyManagementAlgorithm};
use key_provider::{EcCurve, KeySpec};

const ALGS: [(
    KeyManagementAlgorithm,
    josekit::jwe::alg::rsaes::RsaesJweAlgorithm,
); 2] = [
    (KeyManagementAlgorithm::RsaOaep, josekit::jwe::RSA_OAEP),
    (
        KeyManagementAlgorithm::RsaOaep256,
        josekit::jwe::RSA_OAEP_256,
    ),
];
const ENCS: [ContentEncryption; 2] = [ContentEncryption::A128GCM, ContentEncryption::A256GCM];

#[test]
fn our_jwe_decrypts_with_josekit() {
    let dir = tempfile::tempdir().unwrap();
    let (key, path) = common::new_key(&dir, "rsa.pem", KeySpec::Rsa(2048));
    let private_pem = std::fs::read(&path).unwrap();
    let plaintext =
        br#"{"data":{"paymentInformation":{"card":{"number":"4111111111111111"}}},"index":0}"#;
    for (ours, theirs) in ALGS {
        for enc in ENCS {
            let jwe = jose_core::jwe::encrypt(
                key.public_key(),
                ours,
                enc,
                plaintext,
                &EncryptOptions::new().kid("k-1"),
            )
            .unwrap();
            let decrypter = theirs.decrypter_from_pem(&private_pem).unwrap();
            let (out, header) = josekit::jwe::deserialize_compact(&jwe, &decrypter).unwrap();
            assert_eq!(out, plaintext, "{ours} {enc}");
            assert_eq!(header.content_encryption(), Some(enc.as_str()));
            assert_eq!(header.key_id(), Some("k-1"));
        }
    }
}

#[test]
fn josekit_jwe_decrypts_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_key(&dir, "rsa.pem", KeySpec::Rsa(3072));
    let public_pem = key.public_key().to_spki_pem();
    let plaintext = b"the true sign of intelligence is not knowledge but imagination";
    for (ours, theirs) in ALGS {
        for enc in ENCS {
            let mut header = josekit::jwe::JweHeader::new();
            header.set_content_encryption(enc.as_str());
            let encrypter = theirs.encrypter_from_pem(public_pem.as_bytes()).unwrap();
            let jwe = josekit::jwe::serialize_compact(plaintext, &header, &encrypter).unwrap();
            let out =
                jose_core::jwe::decrypt(&jwe, key.as_ref(), &DecryptOptions::default()).unwrap();
            assert_eq!(&out.plaintext[..], plaintext, "{ours} {enc}");
            assert_eq!(out.header["alg"], ours.as_str());
        }
    }
}

#[test]
fn every_jws_algorithm_verifies_with_jsonwebtoken() {
    jose_core::jwt::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (rsa, _) = common::new_key(&dir, "rsa.pem", KeySpec::Rsa(2048));
    let (p256, _) = common::new_key(&dir, "p256.pem", KeySpec::Ec(EcCurve::P256));
    let (p384, _) = common::new_key(&dir, "p384.pem", KeySpec::Ec(EcCurve::P384));
    let claims =
        serde_json::json!({"sub": "s", "exp": jose_core::jwt::now() + 300, "iss": "keybound"});
    for alg in JwsAlgorithm::ALL {
        let key = match alg {
            JwsAlgorithm::ES256 => &p256,
            JwsAlgorithm::ES384 => &p384,
            _ => &rsa,
        };
        let token = jose_core::jwt::sign(
            key.as_ref(),
            &JwsHeader::new(alg).typ("JWT").kid("kid-1"),
            &claims,
        )
        .unwrap();
        let pem = key.public_key().to_spki_pem();
        let decoding = match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
                jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes())
            }
            _ => jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(alg.to_jsonwebtoken());
        v.set_issuer(&["keybound"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims, claims);
        assert_eq!(data.header.kid.as_deref(), Some("kid-1"));

        // Flip a signature bit: jsonwebtoken must reject it.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut raw = jose_core::b64::decode("s", sig).unwrap();
        raw[5] ^= 1;
        let bad = format!("{head}.{}", jose_core::b64::encode(&raw));
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&bad, &decoding, &v).is_err(),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn async_sign_and_decrypt_paths_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_key(&dir, "rsa.pem", KeySpec::Rsa(2048));
    let header = JwsHeader::new(JwsAlgorithm::PS256);
    let token = jose_core::jwt::sign_async(
        key.as_ref(),
        &header,
        &serde_json::json!({"exp": jose_core::jwt::now() + 60}),
    )
    .await
    .unwrap();
    let keys = jose_core::KeySet::single(jose_core::VerifyingKey::new(key.public_key().clone()));
    jose_core::jwt::verify(&token, &keys, &jose_core::Validation::new()).unwrap();
    let jwe = jose_core::jwe::encrypt(
        key.public_key(),
        KeyManagementAlgorithm::RsaOaep256,
        ContentEncryption::A256GCM,
        b"x",
        &EncryptOptions::new(),
    )
    .unwrap();
    let out = jose_core::jwe::decrypt_async(&jwe, key.as_ref(), &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(&out.plaintext[..], b"x");
}

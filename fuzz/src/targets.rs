//! The fuzz targets' bodies. Each takes arbitrary bytes, drives one family of keybound's parsers and
//! verifiers with them, and checks invariants that must hold for every input; a panic (or an abort under
//! libFuzzer) is a finding.
//!
//! This file is compiled twice: by the fuzz crate (`fuzz/`, through `cargo xtask fuzz`) and, with `#[path]`,
//! by `crates/cli/tests/fuzz_regressions.rs`, which replays every saved crash input under
//! `tests/fuzz-regressions/<target>/` in the normal test suite. It may use only crates both have:
//! `jose_core`, `key_provider` (with the `file` feature), `flex_client`, `provisioning_signer` and `serde_json`.

use std::fmt::Display;
use std::sync::OnceLock;

use jose_core::jwe::DecryptOptions;
use jose_core::jws::VerifyOptions;
use jose_core::{Jwk, Jwks, KeySet, Validation};
use key_provider::{
    KeyBackend, KeyRef, PinSource, Pkcs11Uri, PublicKey, PublicKeyFile, SoftwareKey,
};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name (what `cargo xtask fuzz` and the regression test iterate over).
pub const TARGETS: [(&str, Target); 6] = [
    ("jws_verify", jws_verify),
    ("jwe_decrypt", jwe_decrypt),
    ("jwk_parse", jwk_parse),
    ("pkcs11_uri", pkcs11_uri),
    ("flex_claims", flex_claims),
    ("cms_decrypt", cms_decrypt),
];

/// Longest error message accepted: messages describe, they never carry the input.
const MAX_MESSAGE: usize = 600;

fn check_message(what: &str, e: &impl Display) {
    let text = e.to_string();
    assert!(
        text.len() <= MAX_MESSAGE,
        "{what}: error message of {} bytes",
        text.len()
    );
}

/// The corpus victims (tests/hostile): the RFC 7515 A.2 RSA key (kid `rsa-victim`) and the hostile P-256 key
/// (kid `ec-victim`). Public so the regression test can check that the corpus's valid rows verify with them.
pub fn victim_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pem = |text: &str| PublicKey::from_pem(text).expect("vector public key");
        let mut rsa =
            Jwk::from_public_key(&pem(include_str!("../../tests/vectors/rfc7515_a2.pub.pem")));
        rsa.kid = Some("rsa-victim".into());
        let mut ec = Jwk::from_public_key(&pem(include_str!(
            "../../tests/vectors/hostile_p256.pub.pem"
        )));
        ec.kid = Some("ec-victim".into());
        KeySet::from_jwks(&Jwks {
            keys: vec![rsa, ec],
        })
        .expect("victim key set")
    })
}

/// The RFC 7516 A.1 RSA private key, the JWE corpus's victim. Public for the same reason as [`victim_keys`].
pub fn jwe_key() -> &'static SoftwareKey {
    static KEY: OnceLock<SoftwareKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SoftwareKey::from_bytes(
            "file",
            "fuzz:rfc7516_a1".into(),
            include_bytes!("../../tests/vectors/rfc7516_a1.pem"),
        )
        .expect("vector private key")
    })
}

/// Compact JWS: `jws::parse`, `jws::verify`, `jwt::verify` (claims validated) and `jwt::decode_unverified`
/// against the corpus victims. Nothing may panic; errors stay short.
pub fn jws_verify(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let keys = victim_keys();
    let options = VerifyOptions::default();
    match jose_core::jws::parse(token, &options) {
        Ok(jws) => {
            let _ = jws.kid();
        }
        Err(e) => check_message("jws::parse", &e),
    }
    if let Err(e) = jose_core::jws::verify(token, keys, &options) {
        check_message("jws::verify", &e);
    }
    if let Err(e) = jose_core::jwt::verify(token, keys, &Validation::new()) {
        check_message("jwt::verify", &e);
    }
    if let Err(e) = jose_core::jwt::decode_unverified(token) {
        check_message("jwt::decode_unverified", &e);
    }
}

/// Compact JWE: `jwe::parse` and `jwe::decrypt` with the RFC 7516 A.1 key. Nothing may panic; errors stay
/// short; a token that `parse` refuses is refused by `decrypt` too.
pub fn jwe_decrypt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let options = DecryptOptions::default();
    let parsed = jose_core::jwe::parse(token, &options);
    if let Err(e) = &parsed {
        check_message("jwe::parse", e);
    }
    let key: &dyn KeyBackend = jwe_key();
    match jose_core::jwe::decrypt(token, key, &options) {
        Ok(_) => assert!(parsed.is_ok(), "decrypt accepted what parse refused"),
        Err(e) => check_message("jwe::decrypt", &e),
    }
}

/// CMS EnvelopedData (Thales' PKCS#7 card data and TSH PCI fields): `cms::decrypt` with the RFC 7516 A.1 key,
/// on the bytes as DER/BER and after `Encoding::Hex` / `Encoding::Base64` decoding. Nothing may panic; errors
/// stay short; every failure is one of the two documented ones (refused from the structure, or the one
/// `DecryptionFailed`), never another error from the key. The seeds in `fuzz/seeds/cms_decrypt/` are
/// envelopes to a certificate made for that key (`openssl x509 -req -force_pubkey
/// tests/vectors/rfc7516_a1.pub.pem`): ours with OAEP-SHA256 and PKCS#1 v1.5 transport, OpenSSL's BER
/// (`-stream`) with AES-128 and SHA-1 OAEP, a KEKRecipientInfo and 3DES content.
pub fn cms_decrypt(data: &[u8]) {
    use provisioning_signer::ProvisioningError;
    use provisioning_signer::cms::{self, Encoding};
    let key: &dyn KeyBackend = jwe_key();
    let mut inputs = vec![data.to_vec()];
    for encoding in [Encoding::Hex, Encoding::Base64] {
        match encoding.decode(data) {
            Ok(der) => inputs.push(der),
            Err(e) => check_message("cms::Encoding::decode", &e),
        }
    }
    for input in inputs {
        match cms::decrypt(&input, key) {
            Ok(_) => {}
            Err(
                e @ (ProvisioningError::CmsRefused { .. } | ProvisioningError::DecryptionFailed),
            ) => {
                check_message("cms::decrypt", &e);
            }
            Err(e) => {
                panic!("cms::decrypt: an error that is neither refusal nor DecryptionFailed: {e}")
            }
        }
    }
}

/// JWK, JWKS, public keys and certificates: `Jwk::from_json`, `Jwks::from_json`, `KeySet::from_text` (PEM,
/// JWK or JWKS), `KeySet::from_bytes` and `PublicKeyFile::parse` (also X.509 certificates, PEM or DER),
/// `PublicKey::from_spki_der` / `from_pem`. A key that parses survives a round trip, and its JWK thumbprint
/// is the thumbprint of the key it denotes.
pub fn jwk_parse(data: &[u8]) {
    if let Ok(key) = PublicKey::from_spki_der(data) {
        let again = PublicKey::from_spki_der(&key.to_spki_der()).expect("SPKI round trip");
        assert_eq!(again, key, "SPKI DER round trip changed the key");
    }
    match PublicKeyFile::parse(data) {
        Ok(file) => {
            let again = PublicKey::from_spki_der(&file.key.to_spki_der()).expect("SPKI round trip");
            assert_eq!(
                again, file.key,
                "a parsed public key file's key does not round-trip"
            );
            if let Some(cert) = &file.certificate {
                assert_eq!(
                    cert.public_key, file.key,
                    "the certificate's key is not the key"
                );
            }
        }
        Err(e) => check_message("PublicKeyFile::parse", &e),
    }
    if let Err(e) = KeySet::from_bytes(data) {
        check_message("KeySet::from_bytes", &e);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = PublicKey::from_pem(text) {
        let again = PublicKey::from_pem(&key.to_spki_pem()).expect("SPKI PEM round trip");
        assert_eq!(again, key, "SPKI PEM round trip changed the key");
    }
    match Jwk::from_json(text) {
        Ok(jwk) => {
            if let Ok(key) = jwk.to_public_key() {
                let exported = Jwk::from_public_key(&key);
                assert_eq!(
                    exported.to_public_key().expect("exported JWK converts"),
                    key,
                    "JWK round trip changed the key"
                );
                assert_eq!(
                    jwk.thumbprint().expect("a usable JWK has a thumbprint"),
                    jose_core::thumbprint(&key),
                    "a JWK's thumbprint differs from its key's"
                );
            }
            let text = serde_json::to_string(&jwk).expect("serialise a parsed JWK");
            Jwk::from_json(&text).expect("a serialised JWK parses again");
        }
        Err(e) => check_message("Jwk::from_json", &e),
    }
    match Jwks::from_json(text) {
        Ok(jwks) => {
            if let Err(e) = KeySet::from_jwks(&jwks) {
                check_message("KeySet::from_jwks", &e);
            }
        }
        Err(e) => check_message("Jwks::from_json", &e),
    }
    if let Err(e) = KeySet::from_text(text) {
        check_message("KeySet::from_text", &e);
    }
}

/// Key references and RFC 7512 PKCS#11 URIs. What parses prints (without `pin-value`) to a reference that
/// parses to the same thing, and no printed form ever shows the `pin-value`.
pub fn pkcs11_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<KeyRef>() {
        Ok(KeyRef::Pkcs11(_)) | Err(_) => {}
        Ok(other) => {
            let printed = other.to_string();
            let again: KeyRef = printed
                .parse()
                .unwrap_or_else(|e| panic!("printed key reference does not parse: {e}"));
            assert_eq!(
                format!("{again:?}"),
                format!("{other:?}"),
                "key reference round trip"
            );
        }
    }
    let uri = match text.parse::<Pkcs11Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            check_message("Pkcs11Uri::from_str", &e);
            return;
        }
    };
    let printed = uri.to_string();
    let again: Pkcs11Uri = printed
        .parse()
        .unwrap_or_else(|e| panic!("printed PKCS#11 URI does not parse: {e}"));
    assert_eq!(again.token, uri.token, "token");
    assert_eq!(again.manufacturer, uri.manufacturer, "manufacturer");
    assert_eq!(again.model, uri.model, "model");
    assert_eq!(again.serial, uri.serial, "serial");
    assert_eq!(again.slot_id, uri.slot_id, "slot-id");
    assert_eq!(again.object, uri.object, "object");
    assert_eq!(again.id, uri.id, "id");
    assert_eq!(again.object_type, uri.object_type, "type");
    assert_eq!(again.module_path, uri.module_path, "module-path");
    assert_eq!(again.module_name, uri.module_name, "module-name");
    assert_eq!(again.pin_source, uri.pin_source, "pin-source");
    assert!(
        again.pin_value.is_none(),
        "the printed URI has no pin-value"
    );
    if let Some(pin) = uri.pin_value().filter(|p| p.len() >= 8) {
        let mut without = uri.clone();
        without.pin_value = None;
        // Only meaningful when the PIN is not also spelled by another attribute.
        let innocent = format!("{without} {without:?}");
        if !innocent.contains(pin) {
            let shown = format!("{uri} {uri:?} {}", KeyRef::Pkcs11(uri.clone()));
            assert!(!shown.contains(pin), "a printed form shows the pin-value");
        }
    }
    if let Some(PinSource::File(path)) = &uri.pin_source {
        assert!(
            !path.as_os_str().is_empty(),
            "pin-source file path is empty"
        );
    }
}

/// Flex claims: `TransientTokenClaims::from_json` and `CaptureContextClaims::from_json` with their
/// accessors. What parses serialises and parses again.
pub fn flex_claims(data: &[u8]) {
    use flex_client::{CaptureContextClaims, TransientTokenClaims};
    match TransientTokenClaims::from_json(data) {
        Ok(claims) => {
            let _ = claims.captured_fields();
            let _ = claims.masked_card_number();
            let _ = claims.card_bin();
            let _ = claims.card_suffix();
            let _ = claims.cardholder_authenticated();
            for path in claims.captured_fields() {
                assert!(
                    claims.content.is_captured(&path),
                    "a captured field is not captured"
                );
                let _ = claims.content.value(&path);
            }
            let text = serde_json::to_vec(&claims).expect("serialise transient token claims");
            TransientTokenClaims::from_json(&text).expect("serialised claims parse again");
        }
        Err(e) => check_message("TransientTokenClaims::from_json", &e),
    }
    match CaptureContextClaims::from_json(data) {
        Ok(claims) => {
            let _ = claims.client_library();
            let _ = claims.required_fields();
            let _ = claims.flx.jwk.to_public_key();
            let text = serde_json::to_vec(&claims).expect("serialise capture context claims");
            CaptureContextClaims::from_json(&text).expect("serialised claims parse again");
        }
        Err(e) => check_message("CaptureContextClaims::from_json", &e),
    }
}

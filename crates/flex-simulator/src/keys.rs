//! RSA keys of the simulator (OpenSSL): generation, public JWKs, RS256 compact JWS signing, and the PKCS#8 DER
//! josekit takes for decryption. Signing goes through OpenSSL directly so that the simulator can also sign
//! with keys that josekit (rightly) refuses, such as the 1024-bit key of [`crate::Misbehavior::WeakSigningKey`].
//!
//! These OpenSSL calls fail only when OpenSSL itself is broken or out of memory; the simulator is test
//! support, so it panics (`expect`) then rather than threading impossible errors through every handler.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Value, json};

/// An RSA key pair.
#[derive(Clone)]
pub(crate) struct RsaKey {
    key: PKey<Private>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits)", self.key.bits())
    }
}

impl RsaKey {
    /// A new key of `bits` bits.
    pub(crate) fn generate(bits: u32) -> Self {
        // Key generation fails only if OpenSSL is broken or out of memory; the simulator cannot go on then.
        let rsa = Rsa::generate(bits).expect("OpenSSL RSA key generation");
        // Wrapping a valid RSA key fails only on allocation failure.
        let key = PKey::from_rsa(rsa).expect("OpenSSL PKey from RSA");
        Self { key }
    }

    /// The public JWK `{"kty":"RSA","e":…,"use":"enc","n":…,"kid":…}` (member order as Flex sends it).
    pub(crate) fn public_jwk(&self, kid: &str) -> Value {
        // `generate` made this PKey from an RSA key, so it has RSA parameters.
        let rsa = self.key.rsa().expect("an RSA PKey has RSA parameters");
        json!({
            "kty": "RSA",
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
            "use": "enc",
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "kid": kid,
        })
    }

    /// The public key as SPKI PEM.
    pub(crate) fn public_pem(&self) -> String {
        // Exporting a valid public key fails only on allocation failure, and PEM is ASCII.
        String::from_utf8(self.key.public_key_to_pem().expect("PEM export")).expect("PEM is ASCII")
    }

    /// PKCS#8 DER of the private key (for josekit).
    pub(crate) fn pkcs8_der(&self) -> Vec<u8> {
        // Encoding a valid private key fails only on allocation failure.
        self.key.private_key_to_pkcs8().expect("PKCS#8 export")
    }

    /// A compact RS256 JWS of `payload` with header `{"kid":kid,"alg":"RS256"}`.
    pub(crate) fn sign_rs256(&self, kid: &str, payload: &Value) -> String {
        let header = json!({ "kid": kid, "alg": "RS256" });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        // SHA-256 with an RSA key is always supported; these fail only if OpenSSL is out of memory.
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).expect("RS256 signer");
        signer.update(input.as_bytes()).expect("signer update"); // as above
        let signature = signer.sign_to_vec().expect("RS256 signature"); // as above
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// `len` random characters from `[A-Za-z0-9]` (or `[A-Z0-9]` when `upper`).
pub(crate) fn random_id(len: usize, upper: bool) -> String {
    const ALL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let set = if upper { UPPER } else { ALL };
    let mut bytes = vec![0u8; len];
    // OpenSSL's RNG is seeded from the OS at start-up; failing here means the process cannot do crypto.
    openssl::rand::rand_bytes(&mut bytes).expect("OpenSSL random bytes");
    bytes
        .iter()
        .map(|b| char::from(set[usize::from(*b) % set.len()]))
        .collect()
}

/// A short long-term kid like Flex's (`3g`, `zu`).
pub(crate) fn short_kid() -> String {
    random_id(2, false).to_ascii_lowercase()
}

//! What the benchmarks sign, verify and encrypt: file keys, JWT claims and headers, a Flex-style payload.

use std::path::Path;
use std::sync::Arc;

use jose_core::{JwsAlgorithm, JwsHeader, KeySet, Validation, VerifyingKey};
use key_provider::{EcCurve, KeyBackend, KeySpec, OpenOptions};
use serde::Serialize;

/// Issuer of the benchmark JWTs.
pub const ISSUER: &str = "https://sso.example.com/realms/loan-partner";
/// Audience of the benchmark JWTs.
pub const AUDIENCE: &str = "https://api.example.com";
/// Header `kid` of the benchmark JWTs.
pub const KID: &str = "bench-key-1";
/// Size of the JWE plaintext: 1 KiB, about a Flex tokens request.
pub const JWE_PAYLOAD_LEN: usize = 1024;

/// A key of each kind in files (PKCS#8 PEM, mode 0600), opened through the `file` backend, and the same PEM
/// for the references.
pub struct FileKeys {
    _dir: tempfile::TempDir,
    /// RSA-2048 through the file backend.
    pub rsa: Arc<dyn KeyBackend>,
    /// EC P-256 through the file backend.
    pub ec: Arc<dyn KeyBackend>,
    /// The RSA key's PKCS#8 PEM (for `jsonwebtoken::EncodingKey::from_rsa_pem`).
    pub rsa_pem: Vec<u8>,
    /// The EC key's PKCS#8 PEM.
    pub ec_pem: Vec<u8>,
}

impl FileKeys {
    /// Generates both keys in a temporary directory.
    #[must_use]
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rsa_path = dir.path().join("rsa.pem");
        let ec_path = dir.path().join("ec.pem");
        key_provider::file::generate(&rsa_path, KeySpec::Rsa(2048)).expect("generate RSA key");
        key_provider::file::generate(&ec_path, KeySpec::Ec(EcCurve::P256))
            .expect("generate EC key");
        Self {
            rsa: open_file(&rsa_path),
            ec: open_file(&ec_path),
            rsa_pem: std::fs::read(&rsa_path).expect("read RSA key"),
            ec_pem: std::fs::read(&ec_path).expect("read EC key"),
            _dir: dir,
        }
    }
}

fn open_file(path: &Path) -> Arc<dyn KeyBackend> {
    let key_ref = format!("file:{}", path.display())
        .parse()
        .expect("key reference");
    key_provider::open(&key_ref, &OpenOptions::new()).expect("open file key")
}

/// The claims of a typical client assertion / authorization code.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    /// Issuer.
    pub iss: &'static str,
    /// Subject.
    pub sub: &'static str,
    /// Audience.
    pub aud: &'static str,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// Token id.
    pub jti: &'static str,
}

impl Claims {
    /// Valid for the next hour.
    #[must_use]
    pub fn now() -> Self {
        let now = jose_core::jwt::now();
        Self {
            iss: ISSUER,
            sub: "lender-example-bank",
            aud: AUDIENCE,
            iat: now,
            exp: now + 3600,
            jti: "5c1d3f6e-8a59-4f4c-9a55-0b6f2f1a7e01",
        }
    }
}

/// keybound's header: `{"alg":…,"typ":"JWT","kid":…}`.
#[must_use]
pub fn header(alg: JwsAlgorithm) -> JwsHeader {
    JwsHeader::new(alg).typ("JWT").kid(KID)
}

/// jsonwebtoken's header with the same members.
#[must_use]
pub fn jsonwebtoken_header(alg: jsonwebtoken::Algorithm) -> jsonwebtoken::Header {
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(KID.to_owned());
    h
}

/// The key set and validation a resource server would use: this key, `iss`, `aud`, `exp` required.
#[must_use]
pub fn verification(key: &dyn KeyBackend, alg: JwsAlgorithm) -> (KeySet, Validation) {
    let mut verifying = VerifyingKey::new(key.public_key().clone());
    verifying.kid = Some(KID.to_owned());
    let keys = KeySet::single(verifying);
    let validation = Validation::new()
        .algorithms(&[alg])
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .required_claims(&["exp", "iat", "sub"]);
    (keys, validation)
}

/// A Flex tokens request of [`JWE_PAYLOAD_LEN`] bytes.
#[must_use]
pub fn jwe_payload() -> Vec<u8> {
    let mut payload = br#"{"data":{"number":"4111111111111111","securityCode":"123","expirationMonth":"12","expirationYear":"2031","type":"001"},"context":""#.to_vec();
    let tail = br#"","index":0}"#;
    payload.resize(JWE_PAYLOAD_LEN - tail.len(), b'x');
    payload.extend_from_slice(tail);
    assert_eq!(payload.len(), JWE_PAYLOAD_LEN);
    payload
}

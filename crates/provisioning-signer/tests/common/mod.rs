//! Shared helpers for provisioning-signer's integration tests: fresh file keys, the fixtures in
//! `tests/fixtures/`, a backend with any public key (to test refusals aws-lc would not even load), and a
//! backend that delays signatures (to make concurrent completion order differ from input order).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use key_provider::{KeyBackend, KeyError, KeySpec, OpenOptions, PublicKey, SignatureScheme};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

pub fn open_file(path: &Path) -> Arc<dyn KeyBackend> {
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap()
}

/// A new key in `dir`.
pub fn new_key(dir: &tempfile::TempDir, name: &str, spec: KeySpec) -> Arc<dyn KeyBackend> {
    let path = dir.path().join(name);
    key_provider::file::generate(&path, spec).unwrap();
    open_file(&path)
}

/// The fixture's private key, copied to a 0600 file (git does not keep modes) and opened.
pub fn thales_private_key(dir: &tempfile::TempDir) -> Arc<dyn KeyBackend> {
    let dst = dir.path().join("thales_test.key.pem");
    std::fs::copy(fixture("thales_test.key.pem"), &dst).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    open_file(&dst)
}

/// A backend whose public key is whatever the test says and whose signatures are dummies: for refusals
/// that must happen before any signing.
#[derive(Debug)]
pub struct FakeKey(pub PublicKey);

impl KeyBackend for FakeKey {
    fn backend_name(&self) -> &'static str {
        "fake"
    }
    fn key_label(&self) -> &str {
        "fake:test"
    }
    fn public_key(&self) -> &PublicKey {
        &self.0
    }
    fn sign(&self, _: SignatureScheme, _: &[u8]) -> Result<Vec<u8>, KeyError> {
        panic!("a refused key must never be asked to sign")
    }
}

/// An RSA-1024 public key (odd modulus with the top bit set; never used to verify anything).
pub fn rsa_1024_public() -> PublicKey {
    let mut n = vec![0xc5u8; 128];
    n[127] = 0x01;
    PublicKey::rsa(&n, &[1, 0, 1]).unwrap()
}

/// Wraps a real key and sleeps before each signature, longer for some messages than others, so that
/// concurrent signatures finish out of order.
#[derive(Debug)]
pub struct SlowKey(pub Arc<dyn KeyBackend>);

impl KeyBackend for SlowKey {
    fn backend_name(&self) -> &'static str {
        "slow"
    }
    fn key_label(&self) -> &str {
        self.0.key_label()
    }
    fn public_key(&self) -> &PublicKey {
        self.0.public_key()
    }
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let jitter = message
            .iter()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)))
            % 7;
        std::thread::sleep(Duration::from_millis(jitter));
        self.0.sign(scheme, message)
    }
}

/// Decodes one base64url JWT part into a JSON object.
pub fn decode_part(part: &str) -> serde_json::Map<String, serde_json::Value> {
    let bytes = jose_core::b64::decode("part", part).unwrap();
    match serde_json::from_slice(&bytes).unwrap() {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A JSON object (a JOSE header or a claim set).
pub type Object = serde_json::Map<String, serde_json::Value>;

/// Verifies an authorization code with josekit (OpenSSL: neither keybound's code nor aws-lc) and the SPKI PEM
/// of `public`, validating `iss`, `aud` and the lifetime against now; returns (header, claims). Panics with
/// josekit's reason when it refuses the code.
pub fn josekit_verify(public: &PublicKey, jwt: &str, iss: &str, aud: &str) -> (Object, Object) {
    josekit_try_verify(public, jwt, iss, aud).unwrap_or_else(|e| panic!("josekit refuses: {e}"))
}

/// [`josekit_verify`], returning josekit's refusal instead of panicking.
pub fn josekit_try_verify(
    public: &PublicKey,
    jwt: &str,
    iss: &str,
    aud: &str,
) -> Result<(Object, Object), String> {
    let verifier = josekit::jws::RS256
        .verifier_from_pem(public.to_spki_pem().as_bytes())
        .map_err(|e| e.to_string())?;
    let (payload, header) =
        josekit::jwt::decode_with_verifier(jwt, &verifier).map_err(|e| e.to_string())?;
    let mut validator = josekit::jwt::JwtPayloadValidator::new();
    validator.set_base_time(std::time::SystemTime::now());
    validator.set_issuer(iss);
    validator.set_audience(aud);
    validator.validate(&payload).map_err(|e| e.to_string())?;
    Ok((header.claims_set().clone(), payload.claims_set().clone()))
}

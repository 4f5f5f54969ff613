//! Helpers shared by the key-provider integration tests: the RFC 7515 A.2 fixture, two independent
//! verifiers (the `jsonwebtoken` crate and the `openssl` command line), OAEP encryption with aws-lc-rs, and
//! the DER odds and ends they need, and the audit lines of a log capture.

#![allow(dead_code, clippy::print_stderr)] // each test binary uses a different part of this module

#[cfg(feature = "vault")]
pub mod vault;

use std::io::Write as _;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use key_provider::{DecryptionScheme, PublicKey, SignatureScheme};
use zeroize::Zeroizing;

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .expect("valid base64url in fixture")
}

/// RFC 7515 appendix A.2 (RS256): the key, the JWS signing input and the signature, as published.
pub struct Rfc7515A2 {
    /// The JWK's members, base64url-decoded: n, e, d, p, q, dp, dq, qi.
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qi: Zeroizing<Vec<u8>>,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Loads `tests/fixtures/rfc7515-a2.json`.
pub fn rfc7515_a2() -> Rfc7515A2 {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/rfc7515-a2.json")).expect("fixture is JSON");
    let member = |name: &str| {
        b64url_decode(
            fixture["jwk"][name]
                .as_str()
                .unwrap_or_else(|| panic!("jwk.{name} missing")),
        )
    };
    let secret = |name: &str| Zeroizing::new(member(name));
    Rfc7515A2 {
        n: member("n"),
        e: member("e"),
        d: secret("d"),
        p: secret("p"),
        q: secret("q"),
        dp: secret("dp"),
        dq: secret("dq"),
        qi: secret("qi"),
        signing_input: fixture["signing_input"]
            .as_str()
            .expect("signing_input")
            .to_owned(),
        signature: b64url_decode(fixture["signature"].as_str().expect("signature")),
    }
}

impl Rfc7515A2 {
    /// The key as PKCS#1 `RSAPrivateKey` DER (what the file and env backends read).
    pub fn pkcs1_der(&self) -> Zeroizing<Vec<u8>> {
        let mut body = Zeroizing::new(Vec::new());
        for part in [
            &[0u8][..],
            &self.n,
            &self.e,
            &self.d,
            &self.p,
            &self.q,
            &self.dp,
            &self.dq,
            &self.qi,
        ] {
            write_unsigned_integer(&mut body, part);
        }
        let mut out = Zeroizing::new(Vec::new());
        write_tlv(&mut out, 0x30, &body);
        out
    }

    /// The key's components for [`key_provider::pkcs11::import_private_key`].
    #[cfg(feature = "pkcs11")]
    pub fn components(&self) -> key_provider::pkcs11::RsaPrivateComponents {
        let mut c = key_provider::pkcs11::RsaPrivateComponents::default();
        c.n = Zeroizing::new(self.n.clone());
        c.e = Zeroizing::new(self.e.clone());
        c.d = self.d.clone();
        c.p = self.p.clone();
        c.q = self.q.clone();
        c.dp = self.dp.clone();
        c.dq = self.dq.clone();
        c.qi = self.qi.clone();
        c
    }
}

pub fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

pub fn write_unsigned_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip..];
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed[0] & 0x80 != 0 {
        v.push(0);
    }
    v.extend_from_slice(trimmed);
    write_tlv(out, 0x02, &v);
}

/// A fixed-width `r || s` ECDSA signature as the DER `ECDSA-Sig-Value` OpenSSL reads.
pub fn ecdsa_raw_to_der(sig: &[u8]) -> Vec<u8> {
    let (r, s) = sig.split_at(sig.len() / 2);
    let mut body = Vec::new();
    write_unsigned_integer(&mut body, r);
    write_unsigned_integer(&mut body, s);
    let mut out = Vec::new();
    write_tlv(&mut out, 0x30, &body);
    out
}

/// The JOSE algorithm of a scheme.
pub fn jwt_algorithm(scheme: SignatureScheme) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm;
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => Algorithm::RS256,
        SignatureScheme::RsaPkcs1Sha384 => Algorithm::RS384,
        SignatureScheme::RsaPkcs1Sha512 => Algorithm::RS512,
        SignatureScheme::RsaPssSha256 => Algorithm::PS256,
        SignatureScheme::RsaPssSha384 => Algorithm::PS384,
        SignatureScheme::RsaPssSha512 => Algorithm::PS512,
        SignatureScheme::EcdsaP256Sha256 => Algorithm::ES256,
        SignatureScheme::EcdsaP384Sha384 => Algorithm::ES384,
        other => panic!("no JOSE algorithm for {other}"),
    }
}

/// Whether `jsonwebtoken` (on aws-lc-rs) accepts `sig` over `message` with `public`.
pub fn jsonwebtoken_verifies(
    public: &PublicKey,
    scheme: SignatureScheme,
    message: &[u8],
    sig: &[u8],
) -> bool {
    // Installing twice fails harmlessly: every test installs the same provider.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let key = match public {
        PublicKey::Rsa { n, e } => jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e),
        PublicKey::Ec { x, y, .. } => {
            jsonwebtoken::DecodingKey::from_ec_components(&b64url(x), &b64url(y))
                .expect("EC components")
        }
        other => panic!("unexpected key {other:?}"),
    };
    jsonwebtoken::crypto::verify(&b64url(sig), message, &key, jwt_algorithm(scheme))
        .unwrap_or(false)
}

/// Asserts that `jsonwebtoken` accepts the signature, and rejects it with one bit flipped.
pub fn assert_jsonwebtoken_verifies(
    public: &PublicKey,
    scheme: SignatureScheme,
    message: &[u8],
    sig: &[u8],
) {
    assert!(
        jsonwebtoken_verifies(public, scheme, message, sig),
        "jsonwebtoken rejects a {scheme} signature"
    );
    let mut tampered = sig.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        !jsonwebtoken_verifies(public, scheme, message, &tampered),
        "jsonwebtoken accepts a tampered signature"
    );
}

fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Asserts that `openssl dgst -verify` accepts the signature (PSS with salt length = digest length; ECDSA
/// converted to DER). Skips loudly when there is no `openssl` command.
pub fn assert_openssl_verifies(
    public: &PublicKey,
    scheme: SignatureScheme,
    message: &[u8],
    sig: &[u8],
) {
    if !have_openssl() {
        let _ = writeln!(
            std::io::stderr(),
            "*** SKIPPED openssl cross-check of {scheme}: no `openssl` command ***"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let public_pem = write("pub.pem", public.to_spki_pem().as_bytes());
    let message_file = write("message.bin", message);
    let signature = match scheme {
        SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => {
            ecdsa_raw_to_der(sig)
        }
        _ => sig.to_vec(),
    };
    let signature_file = write("sig.bin", &signature);
    let digest = match scheme {
        SignatureScheme::RsaPkcs1Sha256
        | SignatureScheme::RsaPssSha256
        | SignatureScheme::EcdsaP256Sha256 => "-sha256",
        SignatureScheme::RsaPkcs1Sha384
        | SignatureScheme::RsaPssSha384
        | SignatureScheme::EcdsaP384Sha384 => "-sha384",
        _ => "-sha512",
    };
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", digest, "-verify"])
        .arg(&public_pem)
        .arg("-signature")
        .arg(&signature_file);
    if matches!(
        scheme,
        SignatureScheme::RsaPssSha256
            | SignatureScheme::RsaPssSha384
            | SignatureScheme::RsaPssSha512
    ) {
        // Salt length -1: exactly the digest length (RFC 7518 section 3.5).
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:-1",
        ]);
    }
    let out = cmd.arg(&message_file).output().expect("run openssl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Verified OK"),
        "openssl rejects a {scheme} signature: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encrypts `plaintext` to `public` with RSA-OAEP (aws-lc-rs), as a JWE sender would.
pub fn oaep_encrypt(public: &PublicKey, scheme: DecryptionScheme, plaintext: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{
        OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
    };
    let key = OaepPublicEncryptingKey::new(
        PublicEncryptingKey::from_der(&public.to_spki_der()).expect("RSA SPKI"),
    )
    .expect("OAEP key");
    let alg = match scheme {
        DecryptionScheme::RsaOaepSha1 => &OAEP_SHA1_MGF1SHA1,
        DecryptionScheme::RsaOaepSha256 => &OAEP_SHA256_MGF1SHA256,
        other => panic!("unexpected {other}"),
    };
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(alg, plaintext, &mut out, None)
        .expect("encrypt")
        .len();
    out.truncate(len);
    out
}

/// 32 random bytes (a content-encryption key).
pub fn random_cek() -> Vec<u8> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut cek = vec![0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut cek)
        .expect("random");
    cek
}

/// Calls `C_CloseAllSessions` on `slot`, as an HSM restart would. cryptoki 0.12 has no safe wrapper for it,
/// so the raw function is used.
#[cfg(feature = "pkcs11")]
#[allow(unsafe_code)]
pub fn close_all_sessions(module: &std::path::Path, slot: u64) {
    // SAFETY: loading the module again hands back the instance already loaded in this process (dlopen is
    // reference counted), so this acts on the same library state as the backend's context: the application's
    // sessions on `slot`. C_CloseAllSessions takes only a slot id; no pointers are involved.
    let rv = unsafe {
        let module = cryptoki_sys::Pkcs11::new(module).expect("load module");
        module.C_CloseAllSessions(slot)
    };
    assert_eq!(rv, cryptoki_sys::CKR_OK, "C_CloseAllSessions");
}

/// Drives `future` to completion on this thread without any async runtime (a thread-parking waker).
pub fn block_on_without_runtime<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The `keybound::audit` lines of `log` (a capture's text) about the key `key` (as the event prints it)
/// and `operation` (`generate`, `rotate`), in order.
pub fn audit_events(log: &str, key: &str, operation: &str) -> Vec<String> {
    let key = format!("key={key} ");
    let operation = format!("operation=\"{operation}\"");
    log.lines()
        .filter(|l| l.contains("keybound::audit") && l.contains(&key) && l.contains(&operation))
        .map(str::to_owned)
        .collect()
}

/// Asserts `event` carries every one of `fields` (e.g. `outcome="success"`).
pub fn assert_fields(event: &str, fields: &[&str]) {
    for field in fields {
        assert!(event.contains(field), "{field} in {event}");
    }
}

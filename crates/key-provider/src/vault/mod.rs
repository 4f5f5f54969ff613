//! OpenBao / HashiCorp Vault **Transit** keys (`vault:NAME[?mount=…&addr=…&namespace=…&token-source=…]`):
//! the private key never leaves the service; keybound sends the message and gets the signature back, JOSE-exact.
//!
//! **Opening** ([`open`]) resolves the server, token and namespace (`config`: `addr=`, else `VAULT_ADDR`,
//! else `BAO_ADDR`; `token-source=`, else `VAULT_TOKEN`, else `BAO_TOKEN`; `namespace=`, else
//! `VAULT_NAMESPACE`, else `BAO_NAMESPACE`), reads `GET /v1/{mount}/keys/{name}` once and **pins the latest
//! version**: its public key is [`KeyBackend::public_key`], and every signature request sends
//! `key_version` = that version, so the default `kid` (the RFC 7638 thumbprint of the public key) always
//! names the version that signed, even while the key is rotated elsewhere. A process that should pick up a
//! rotation opens the key again. [`version`] tells which version a key handle signs with.
//!
//! Key types: `rsa-2048`, `rsa-3072`, `rsa-4096`, `ecdsa-p256`, `ecdsa-p384`. Any other Transit type
//! (`aes256-gcm96`, `ed25519`, `ecdsa-p521`, `hmac`…) is refused when the key is opened
//! ([`KeyError::WrongKeyType`]).
//!
//! **Signing**: `POST /v1/{mount}/sign/{name}/{sha2-256|sha2-384|sha2-512}` with the message as base64
//! `input` (Transit hashes it: messages of any size, no prehashing), `key_version`, and for RSA
//! `signature_algorithm` `pkcs1v15` or `pss` with **`salt_length: "hash"`** (Transit's default, `auto`, is
//! not what JOSE verifiers accept), for ECDSA `marshaling_algorithm: "jws"` (fixed-width `r || s`,
//! base64url). The answer `vault:vN:…` must name the pinned version. Every signature is verified against the
//! pinned public key before it is returned (`remote`).
//!
//! **Decrypting** a JWE content-encryption key: Transit's RSA keys decrypt RSA-OAEP with SHA-256 (and
//! MGF1-SHA-256) only, so `RSA-OAEP-256` JWEs open and [`DecryptionScheme::RsaOaepSha1`] is
//! [`KeyError::NotSupported`]. The request is `POST /v1/{mount}/decrypt/{name}` with
//! `ciphertext: "vault:vN:" + base64(ciphertext)`. A raw OAEP ciphertext does not say which version's public
//! key it was encrypted to, so the pinned version is tried first and, when Transit says the decryption
//! failed, every other version it still decrypts with (`min_decryption_version` up to the latest when the
//! key was opened), newest first: a JWE made for the previous version still opens after a rotation. When
//! none decrypts, the error is the one opaque [`KeyError::Crypto`].
//!
//! **Key management**: [`generate`] creates a key (`exportable: false`, `allow_plaintext_backup: false`) after
//! checking the name is free; Transit keys carry no usage flags, so `--usage` is only checked against the key
//! type (an EC key cannot decrypt) and [`KeyBackend::usage`] is `None`. [`rotate`] adds a version and opens
//! the key at it.
//!
//! **Requests** (`client`): one HTTP client per process, pooled kept-alive connections, on the shared
//! key-service runtime; 429, 5xx and connection failures are retried with jittered backoff
//! ([`crate::RetryPolicy::default`]); refused tokens (401/403), missing keys and wrong key types fail at once
//! with one-line errors. The token is sent only as `X-Vault-Token`, is held in a `SecretString`, and appears in
//! no error, log or `Debug` output.

mod client;
mod config;
mod keys;

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit;
use crate::remote::{
    self, Decrypted, Failure, RemoteKey, RemoteOps, RetryPolicy, Signed, with_retries,
};
use crate::{
    DecryptionScheme, KeyBackend, KeyError, KeySpec, KeyUsage, OpenOptions, PublicKey,
    SignatureScheme, VaultRef,
};
use client::{Conn, Op};
use keys::KeyInfo;

/// The backend's name in errors and audit events.
pub(crate) const BACKEND: &str = "vault";

/// Opens the Transit key `r` names, pinned at its latest version (see the module docs).
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] (no or refused server address), [`KeyError::TokenUnavailable`],
/// [`KeyError::NotFound`], [`KeyError::AccessDenied`], [`KeyError::WrongKeyType`] (a Transit type keybound
/// does not use), [`KeyError::ServiceUnavailable`] (the server kept failing through every retry).
pub fn open(r: &VaultRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let conn = connect(r, options)?;
    let label = r.to_string();
    let key = remote::block_on(BACKEND, async move {
        let info = keys::read(&conn).await?;
        VaultKey::new(label, conn, info)
    })?;
    Ok(Arc::new(RemoteKey::new(key)))
}

/// Creates a non-exportable Transit key of `spec` named by `r` and opens it. `usage` is checked against the
/// type only (an EC key cannot decrypt): Transit records no usage.
///
/// # Errors
/// [`KeyError::KeyExists`] when the name is taken (whatever its type), [`KeyError::WrongKeyType`] for a
/// `decrypt` usage on an EC key, [`KeyError::NotSupported`] for a spec Transit has no type for, or as
/// [`open`].
pub fn generate(
    r: &VaultRef,
    spec: KeySpec,
    usage: KeyUsage,
    options: &OpenOptions,
) -> Result<Arc<dyn KeyBackend>, KeyError> {
    usage.check(spec)?;
    let key_type = keys::transit_type(spec)?;
    change(r, options, Change::Create(key_type), usage.name())
}

/// Rotates the Transit key `r` names (`POST keys/NAME/rotate`: a new version becomes the latest) and opens it
/// at the new version. Its [`version`] and the thumbprint of its new public key are what to announce;
/// ciphertexts made for older versions still decrypt (see the module docs). Audited, also when it fails.
///
/// # Errors
/// As [`open`]; a rotation whose answer was lost on the way is not repeated (it may have happened) and is
/// reported as [`KeyError::Backend`].
pub fn rotate(r: &VaultRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    change(r, options, Change::Rotate, "-")
}

/// A change to a Transit key: [`generate`] (of this Transit type) or [`rotate`].
#[derive(Clone, Copy)]
enum Change {
    Create(&'static str),
    Rotate,
}

/// Makes the change `what` to the key `r` names, opens the key at its latest version, and writes the audit
/// event (also when the change failed; `usage` as asked, `-` for none).
fn change(
    r: &VaultRef,
    options: &OpenOptions,
    what: Change,
    usage: &str,
) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let conn = connect(r, options)?;
    let label = r.to_string();
    let service = conn.service(None);
    let started = Instant::now();
    let key = label.clone();
    let changed = remote::block_on(BACKEND, async move {
        match what {
            Change::Create(key_type) => keys::create(&conn, key_type).await?,
            Change::Rotate => keys::rotate(&conn).await?,
        }
        let info = keys::read(&conn).await?;
        VaultKey::new(key, conn, info)
    });
    let (operation, asked_type) = match what {
        Change::Create(key_type) => ("generate", key_type),
        Change::Rotate => ("rotate", "-"),
    };
    audit::management(
        audit::Management {
            backend: BACKEND,
            service: &service,
            key: &label,
            operation,
            key_type: changed.as_ref().map_or(asked_type, |k| k.key_type),
            usage,
        },
        started,
        match &changed {
            Ok(k) => Ok(Some(k.version)),
            Err(e) => Err(e),
        },
    );
    Ok(Arc::new(RemoteKey::new(changed?)))
}

/// The Transit key version a `vault:` key handle signs with (its latest version when it was opened or
/// rotated); `None` for a key of another backend. Same as [`KeyBackend::key_version`].
#[must_use]
pub fn version(key: &dyn KeyBackend) -> Option<u32> {
    if key.backend_name() == BACKEND {
        key.key_version()
    } else {
        None
    }
}

fn connect(r: &VaultRef, options: &OpenOptions) -> Result<Conn, KeyError> {
    Ok(Conn {
        settings: config::resolve(r, options)?,
        mount: r.mount.clone(),
        name: r.name.clone(),
    })
}

/// A Transit key pinned at one version.
#[derive(Debug)]
struct VaultKey {
    conn: Conn,
    /// The key reference (`vault:issuer`; it holds no secret: a token is never in it).
    label: String,
    /// For audit events: `ADDR (mount M, version N)`.
    service: String,
    key_type: &'static str,
    /// The version that signs, and its public key.
    version: u32,
    public: PublicKey,
    /// The other versions Transit decrypts with, newest first.
    older: Vec<u32>,
}

impl VaultKey {
    fn new(label: String, conn: Conn, mut info: KeyInfo) -> Result<Self, KeyError> {
        let version = info.latest;
        let Some(public) = info.versions.remove(&version) else {
            return Err(KeyError::Backend {
                backend: BACKEND,
                message: format!("{}: no public key for version {version}", conn.describe()),
                source: None,
            });
        };
        let older: Vec<u32> = info.versions.keys().rev().copied().collect();
        let service = conn.service(Some(version));
        Ok(Self {
            conn,
            label,
            service,
            key_type: info.key_type,
            version,
            public,
            older,
        })
    }

    /// Transit's hash name and, for RSA, signature algorithm.
    fn algorithm(scheme: SignatureScheme) -> (&'static str, Option<&'static str>) {
        match scheme {
            SignatureScheme::RsaPkcs1Sha256 => ("sha2-256", Some("pkcs1v15")),
            SignatureScheme::RsaPkcs1Sha384 => ("sha2-384", Some("pkcs1v15")),
            SignatureScheme::RsaPkcs1Sha512 => ("sha2-512", Some("pkcs1v15")),
            SignatureScheme::RsaPssSha256 => ("sha2-256", Some("pss")),
            SignatureScheme::RsaPssSha384 => ("sha2-384", Some("pss")),
            SignatureScheme::RsaPssSha512 => ("sha2-512", Some("pss")),
            SignatureScheme::EcdsaP256Sha256 => ("sha2-256", None),
            SignatureScheme::EcdsaP384Sha384 => ("sha2-384", None),
        }
    }

    /// `vault:vN:PAYLOAD` → PAYLOAD, checking N is `expected`.
    fn strip_version<'a>(&self, value: &'a str, expected: u32) -> Result<&'a str, Failure> {
        let rest = value
            .strip_prefix("vault:v")
            .ok_or_else(|| keys::malformed_answer(&self.conn, "`vault:vN:` prefix"))?;
        let (n, payload) = rest
            .split_once(':')
            .ok_or_else(|| keys::malformed_answer(&self.conn, "`vault:vN:` prefix"))?;
        if n.parse::<u32>().ok() != Some(expected) {
            return Err(Failure::Fatal(KeyError::Backend {
                backend: BACKEND,
                message: format!(
                    "{}: asked for version {expected}, the answer is from version {}",
                    self.conn.describe(),
                    client::sanitise(n)
                ),
                source: None,
            }));
        }
        Ok(payload)
    }

    async fn sign_once(
        &self,
        scheme: SignatureScheme,
        body: &Value,
        path: &str,
    ) -> Result<Vec<u8>, Failure> {
        let answer = self
            .conn
            .request(Op::Sign, Method::POST, path, Some(body))
            .await?;
        let signature = answer
            .pointer("/data/signature")
            .and_then(Value::as_str)
            .ok_or_else(|| keys::malformed_answer(&self.conn, "`data.signature`"))?;
        let payload = self.strip_version(signature, self.version)?;
        let decoded = if matches!(
            scheme,
            SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384
        ) {
            URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
        } else {
            STANDARD.decode(payload)
        };
        decoded.map_err(|_| keys::malformed_answer(&self.conn, "base64 signature"))
    }

    /// One decryption with `version`: `Ok(None)` when Transit could not decrypt with it.
    async fn decrypt_with(
        &self,
        version: u32,
        ciphertext: &[u8],
    ) -> Result<(Option<Zeroizing<Vec<u8>>>, u32), KeyError> {
        let path = format!("decrypt/{}", self.conn.name);
        let body =
            json!({ "ciphertext": format!("vault:v{version}:{}", STANDARD.encode(ciphertext)) });
        let result = with_retries(
            BACKEND,
            &format!("decrypting with {} (version {version})", self.label),
            RetryPolicy::default(),
            || async {
                let answer = self
                    .conn
                    .request(Op::Decrypt, Method::POST, &path, Some(&body))
                    .await?;
                let Some(Value::String(text)) = answer.pointer("/data/plaintext").cloned() else {
                    return Err(keys::malformed_answer(&self.conn, "`data.plaintext`"));
                };
                let text = Zeroizing::new(text);
                STANDARD
                    .decode(text.as_bytes())
                    .map(Zeroizing::new)
                    .map_err(|_| keys::malformed_answer(&self.conn, "base64 plaintext"))
            },
        )
        .await;
        match result {
            Ok((plaintext, retries)) => Ok((Some(plaintext), retries)),
            Err(KeyError::Crypto) => Ok((None, 0)),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl RemoteOps for VaultKey {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn key_version(&self) -> Option<u32> {
        Some(self.version)
    }

    fn mechanism(&self, scheme: SignatureScheme) -> String {
        match Self::algorithm(scheme) {
            (hash, Some("pss")) => format!("{} {hash} pss salt_length=hash", self.key_type),
            (hash, Some(alg)) => format!("{} {hash} {alg}", self.key_type),
            (hash, None) => format!("{} {hash} jws", self.key_type),
        }
    }

    fn decrypt_mechanism(&self, scheme: DecryptionScheme) -> String {
        format!("{} decrypt ({scheme})", self.key_type)
    }

    async fn sign(&self, scheme: SignatureScheme, message: Vec<u8>) -> Result<Signed, KeyError> {
        let (hash, algorithm) = Self::algorithm(scheme);
        let mut body = json!({
            "input": STANDARD.encode(&message),
            "key_version": self.version,
        });
        match algorithm {
            Some(alg) => {
                body["signature_algorithm"] = json!(alg);
                if alg == "pss" {
                    body["salt_length"] = json!("hash");
                }
            }
            None => body["marshaling_algorithm"] = json!("jws"),
        }
        let path = format!("sign/{}/{hash}", self.conn.name);
        let (signature, retries) = with_retries(
            BACKEND,
            &format!("signing with {}", self.label),
            RetryPolicy::default(),
            || self.sign_once(scheme, &body, &path),
        )
        .await?;
        Ok(Signed { signature, retries })
    }

    async fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: Vec<u8>,
    ) -> Result<Decrypted, KeyError> {
        if scheme != DecryptionScheme::RsaOaepSha256 {
            return Err(KeyError::NotSupported {
                operation: scheme.to_string(),
                backend: BACKEND,
                reason: "Transit decrypts RSA-OAEP with SHA-256 only (RSA-OAEP-256 JWEs)".into(),
            });
        }
        let mut retries = 0;
        for version in std::iter::once(self.version).chain(self.older.iter().copied()) {
            let (plaintext, r) = self.decrypt_with(version, &ciphertext).await?;
            retries += r;
            if let Some(plaintext) = plaintext {
                return Ok(Decrypted { plaintext, retries });
            }
        }
        Err(KeyError::Crypto)
    }
}

//! Compact JWE (RFC 7516): `alg` RSA-OAEP / RSA-OAEP-256 with `enc` A128GCM / A256GCM. Encryption uses the
//! recipient's public key in software; decryption unwraps the content-encryption key (CEK) through a
//! [`KeyBackend`], so the private key stays in its backend. CEKs live in `Zeroizing` buffers.
//!
//! Refused before any cryptography: oversize tokens, a part count other than 5, non-canonical base64url,
//! `alg` none / RSA1_5 / dir / anything not allowed, `zip`, any `crit`, an IV that is not 96 bits, a tag that
//! is not 128 bits, an encrypted key whose length is not the key's modulus length. A CEK that fails to decrypt
//! is replaced by a random one so that every cryptographic failure looks the same (RFC 7516 §11.5).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use key_provider::{KeyBackend, KeyError, PublicKey};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::alg::{ContentEncryption, KeyManagementAlgorithm};
use crate::b64;
use crate::error::{JoseError, sanitize};

/// Extra protected-header members for [`encrypt`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EncryptOptions {
    /// `kid` of the recipient key.
    pub kid: Option<String>,
    /// `typ`.
    pub typ: Option<String>,
    /// `cty`.
    pub cty: Option<String>,
    /// Further members (e.g. partner-specific ones). `alg`, `enc`, `zip` and `crit` are not allowed here.
    pub extra: Map<String, Value>,
}

impl EncryptOptions {
    /// No extra members.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `kid`.
    #[must_use]
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Adds a custom member.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }
}

/// Encrypts `plaintext` to `recipient` as a compact JWE.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::jwe::{DecryptOptions, EncryptOptions};
/// use jose_core::{ContentEncryption, KeyManagementAlgorithm};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// // Encrypt to a public key (here the public half of `key`; usually the partner's).
/// let jwe = jose_core::jwe::encrypt(
///     key.public_key(),
///     KeyManagementAlgorithm::RsaOaep256,
///     ContentEncryption::A256GCM,
///     br#"{"number":"4111111111111111"}"#,
///     &EncryptOptions::new().kid("partner-key-1"),
/// )?;
/// assert_eq!(jwe.split('.').count(), 5);
/// // Decrypt through the backend: the CEK is unwrapped where the private key lives.
/// let decrypted = jose_core::jwe::decrypt(&jwe, key.as_ref(), &DecryptOptions::default())?;
/// assert_eq!(decrypted.header["kid"], "partner-key-1");
/// assert_eq!(decrypted.plaintext.as_slice(), br#"{"number":"4111111111111111"}"#);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`JoseError::NoKey`] for a non-RSA or sub-2048-bit key, [`JoseError::InvalidInput`] for forbidden extra
/// members.
pub fn encrypt(
    recipient: &PublicKey,
    alg: KeyManagementAlgorithm,
    enc: ContentEncryption,
    plaintext: &[u8],
    options: &EncryptOptions,
) -> Result<String, JoseError> {
    let PublicKey::Rsa { .. } = recipient else {
        return Err(JoseError::NoKey {
            reason: format!("{alg} needs an RSA key, not {}", recipient.describe()),
        });
    };
    if recipient.bits() < 2048 {
        return Err(JoseError::NoKey {
            reason: format!(
                "RSA key of {} bits is too small (minimum 2048)",
                recipient.bits()
            ),
        });
    }
    let mut header = Map::new();
    header.insert("alg".into(), alg.as_str().into());
    header.insert("enc".into(), enc.as_str().into());
    if let Some(kid) = &options.kid {
        header.insert("kid".into(), kid.clone().into());
    }
    if let Some(typ) = &options.typ {
        header.insert("typ".into(), typ.clone().into());
    }
    if let Some(cty) = &options.cty {
        header.insert("cty".into(), cty.clone().into());
    }
    for (k, v) in &options.extra {
        if matches!(k.as_str(), "alg" | "enc" | "zip" | "crit") {
            return Err(JoseError::InvalidInput(format!(
                "header member `{k}` cannot be set here"
            )));
        }
        header.insert(k.clone(), v.clone());
    }
    let header_b64 = b64::encode(
        serde_json::to_vec(&header).map_err(|e| JoseError::InvalidInput(e.to_string()))?,
    );

    let rng = SystemRandom::new();
    let mut cek = Zeroizing::new(vec![0u8; enc.key_len()]);
    rng.fill(&mut cek)
        .map_err(|_| JoseError::Key(KeyError::Crypto))?;
    let mut iv = [0u8; 12];
    rng.fill(&mut iv)
        .map_err(|_| JoseError::Key(KeyError::Crypto))?;

    let rejected = || JoseError::NoKey {
        reason: "RSA key rejected for encryption".into(),
    };
    let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&recipient.to_spki_der())
        .map_err(|_| rejected())?;
    let public = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(public).map_err(|_| rejected())?;
    let mut encrypted_key = vec![0u8; public.ciphertext_size()];
    let ek_len = public
        .encrypt(alg.oaep(), &cek, &mut encrypted_key, None)
        .map_err(|_| JoseError::Key(KeyError::Crypto))?
        .len();
    encrypted_key.truncate(ek_len);

    let key = LessSafeKey::new(
        UnboundKey::new(enc.aead(), &cek).map_err(|_| JoseError::Key(KeyError::Crypto))?,
    );
    let mut buffer = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut buffer,
        )
        .map_err(|_| JoseError::Key(KeyError::Crypto))?;
    tracing::debug!(alg = alg.as_str(), enc = enc.as_str(), kid = ?options.kid, bytes = plaintext.len(), "JWE encrypted");
    Ok([
        header_b64,
        b64::encode(&encrypted_key),
        b64::encode(iv),
        b64::encode(&buffer),
        b64::encode(tag.as_ref()),
    ]
    .join("."))
}

/// Limits and allowances for decryption.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DecryptOptions {
    /// Accepted `alg` values (default both RSA-OAEP variants).
    pub algorithms: Vec<KeyManagementAlgorithm>,
    /// Accepted `enc` values (default both GCM sizes).
    pub encryptions: Vec<ContentEncryption>,
    /// Maximum token size (default 64 KiB).
    pub max_token_size: usize,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        Self {
            algorithms: vec![
                KeyManagementAlgorithm::RsaOaep,
                KeyManagementAlgorithm::RsaOaep256,
            ],
            encryptions: vec![ContentEncryption::A128GCM, ContentEncryption::A256GCM],
            max_token_size: crate::jws::DEFAULT_MAX_TOKEN_SIZE,
        }
    }
}

impl DecryptOptions {
    /// Sets the size limit.
    #[must_use]
    pub fn max_token_size(mut self, limit: usize) -> Self {
        self.max_token_size = limit;
        self
    }
}

/// A decrypted JWE.
#[derive(Debug)]
pub struct Decrypted {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The plaintext, wiped on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// A compact JWE split and checked, not yet decrypted.
#[derive(Debug)]
pub struct ParsedJwe<'a> {
    /// Protected header.
    pub header: Map<String, Value>,
    /// `alg`.
    pub alg: KeyManagementAlgorithm,
    /// `enc`.
    pub enc: ContentEncryption,
    header_b64: &'a str,
    encrypted_key: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

/// Splits and checks a compact JWE.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::jwe::{self, DecryptOptions, EncryptOptions};
/// use jose_core::{ContentEncryption, KeyManagementAlgorithm};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("k.pem");
/// key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let token = jwe::encrypt(
///     key.public_key(),
///     KeyManagementAlgorithm::RsaOaep256,
///     ContentEncryption::A256GCM,
///     b"card data",
///     &EncryptOptions::new(),
/// )?;
/// let parsed = jwe::parse(&token, &DecryptOptions::default())?;
/// assert_eq!((parsed.alg, parsed.enc), (KeyManagementAlgorithm::RsaOaep256, ContentEncryption::A256GCM));
/// // Four parts are not a JWE:
/// assert!(jwe::parse("a.b.c.d", &DecryptOptions::default()).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`JoseError::TooLarge`], [`JoseError::Malformed`], [`JoseError::ForbiddenAlgorithm`],
/// [`JoseError::UnsupportedAlgorithm`], [`JoseError::UnsupportedHeader`].
pub fn parse<'a>(token: &'a str, options: &DecryptOptions) -> Result<ParsedJwe<'a>, JoseError> {
    if token.len() > options.max_token_size {
        return Err(JoseError::TooLarge {
            size: token.len(),
            limit: options.max_token_size,
        });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, ek, iv, ct, tag] = parts.as_slice() else {
        return Err(JoseError::malformed(
            "JWE",
            format!("expected 5 dot-separated parts, found {}", parts.len()),
        ));
    };
    let header = crate::json::parse_object("JWE header", &b64::decode("JWE header", h)?)?;
    let alg: KeyManagementAlgorithm = match header.get("alg") {
        Some(Value::String(a)) => a.parse()?,
        Some(_) => return Err(JoseError::malformed("JWE header", "`alg` is not a string")),
        None => return Err(JoseError::malformed("JWE header", "missing `alg`")),
    };
    let enc: ContentEncryption = match header.get("enc") {
        Some(Value::String(e)) => e.parse()?,
        Some(_) => return Err(JoseError::malformed("JWE header", "`enc` is not a string")),
        None => return Err(JoseError::malformed("JWE header", "missing `enc`")),
    };
    if !options.algorithms.contains(&alg) {
        return Err(JoseError::UnsupportedAlgorithm {
            alg: alg.as_str().into(),
        });
    }
    if !options.encryptions.contains(&enc) {
        return Err(JoseError::UnsupportedAlgorithm {
            alg: enc.as_str().into(),
        });
    }
    if header.contains_key("zip") {
        return Err(JoseError::UnsupportedHeader {
            name: "zip".into(),
            reason: "compressed JWE payloads are refused",
        });
    }
    if let Some(crit) = header.get("crit") {
        let names = crit.as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().map(sanitize).unwrap_or_else(|| "?".into()))
                .collect::<Vec<_>>()
                .join(",")
        });
        return Err(JoseError::UnsupportedHeader {
            name: format!("crit[{}]", names.unwrap_or_default()),
            reason: "no critical extensions are understood",
        });
    }
    let encrypted_key = b64::decode("JWE encrypted key", ek)?;
    let iv = b64::decode("JWE IV", iv)?;
    if iv.len() != 12 {
        return Err(JoseError::malformed(
            "JWE",
            format!("IV must be 96 bits, got {} bits", iv.len() * 8),
        ));
    }
    let ciphertext = b64::decode("JWE ciphertext", ct)?;
    let tag = b64::decode("JWE tag", tag)?;
    if tag.len() != 16 {
        return Err(JoseError::malformed(
            "JWE",
            format!("tag must be 128 bits, got {} bits", tag.len() * 8),
        ));
    }
    Ok(ParsedJwe {
        header,
        alg,
        enc,
        header_b64: h,
        encrypted_key,
        iv,
        ciphertext,
        tag,
    })
}

impl ParsedJwe<'_> {
    /// The header `kid`, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    fn check_key(&self, key: &dyn KeyBackend) -> Result<(), JoseError> {
        let public = key.public_key();
        let PublicKey::Rsa { n, .. } = public else {
            return Err(JoseError::NoKey {
                reason: format!("{} needs an RSA key, not {}", self.alg, public.describe()),
            });
        };
        if self.encrypted_key.len() != n.len() {
            return Err(JoseError::malformed(
                "JWE",
                format!(
                    "encrypted key is {} bytes; the key's modulus is {} bytes",
                    self.encrypted_key.len(),
                    n.len()
                ),
            ));
        }
        Ok(())
    }

    fn finish(self, cek: Result<Zeroizing<Vec<u8>>, KeyError>) -> Result<Decrypted, JoseError> {
        let cek = match cek {
            Ok(cek) if cek.len() == self.enc.key_len() => cek,
            // Same path for a failed unwrap and a CEK of the wrong length: continue with a random CEK so the
            // failure surfaces only as a tag mismatch.
            Ok(_) | Err(KeyError::Crypto) => {
                let mut random = Zeroizing::new(vec![0u8; self.enc.key_len()]);
                SystemRandom::new()
                    .fill(&mut random)
                    .map_err(|_| JoseError::DecryptionFailed)?;
                random
            }
            Err(other) => return Err(JoseError::Key(other)),
        };
        let key = LessSafeKey::new(
            UnboundKey::new(self.enc.aead(), &cek).map_err(|_| JoseError::DecryptionFailed)?,
        );
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&self.iv);
        let mut buffer = Zeroizing::new(self.ciphertext);
        buffer.extend_from_slice(&self.tag);
        let len = key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(self.header_b64.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| JoseError::DecryptionFailed)?
            .len();
        buffer.truncate(len);
        Ok(Decrypted {
            header: self.header,
            plaintext: buffer,
        })
    }
}

/// Decrypts a compact JWE with `key` (the CEK is unwrapped inside the key's backend).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::jwe::{DecryptOptions, EncryptOptions};
/// use jose_core::{ContentEncryption, JoseError, KeyManagementAlgorithm};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// # let jwe = jose_core::jwe::encrypt(key.public_key(), KeyManagementAlgorithm::RsaOaep,
/// #     ContentEncryption::A128GCM, b"secret", &EncryptOptions::new())?;
/// let decrypted = jose_core::jwe::decrypt(&jwe, key.as_ref(), &DecryptOptions::default())?;
/// assert_eq!(decrypted.plaintext.as_slice(), b"secret");
/// // Every cryptographic failure looks the same (no padding oracle):
/// let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
/// parts[4] = "AAAAAAAAAAAAAAAAAAAAAA".into(); // another tag
/// assert!(matches!(
///     jose_core::jwe::decrypt(&parts.join("."), key.as_ref(), &DecryptOptions::default()),
///     Err(JoseError::DecryptionFailed)
/// ));
/// # Ok(()) }
/// ```
///
/// # Errors
/// Structural errors of [`parse`], [`JoseError::NoKey`], [`JoseError::Key`] for backend failures (e.g.
/// RSA-OAEP-256 on a token that does not support it), [`JoseError::DecryptionFailed`].
pub fn decrypt(
    token: &str,
    key: &dyn KeyBackend,
    options: &DecryptOptions,
) -> Result<Decrypted, JoseError> {
    let jwe = parse(token, options)?;
    jwe.check_key(key)?;
    let cek = key.decrypt(jwe.alg.scheme(), &jwe.encrypted_key);
    let result = jwe.finish(cek);
    tracing::debug!(key = key.key_label(), ok = result.is_ok(), "JWE decrypt");
    result
}

/// Async variant of [`decrypt`]: the backend's blocking work runs off the async worker threads.
///
/// # Errors
/// As [`decrypt`].
pub async fn decrypt_async(
    token: &str,
    key: &dyn KeyBackend,
    options: &DecryptOptions,
) -> Result<Decrypted, JoseError> {
    let jwe = parse(token, options)?;
    jwe.check_key(key)?;
    let cek = key
        .decrypt_async(jwe.alg.scheme(), &jwe.encrypted_key)
        .await;
    jwe.finish(cek)
}

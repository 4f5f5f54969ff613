//! The in-memory software key shared by the `file` and `env` backends, on `aws-lc-rs`.
//!
//! Key bytes arrive in `Zeroizing` buffers, are parsed once into aws-lc key objects (which free and wipe their
//! own memory), and the buffers are wiped on drop. Nothing here prints key material: `Debug` shows the label
//! and key type only.

use std::fmt;
use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::audit;
use crate::der::{self, Reader};
use crate::error::KeyError;
use crate::{DecryptionScheme, EcCurve, KeyBackend, PublicKey, SignatureScheme};

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

enum Inner {
    Rsa {
        signing: RsaKeyPair,
        decrypting: OaepPrivateDecryptingKey,
    },
    /// An RSA key under [`MIN_RSA_BITS`](crate::MIN_RSA_BITS) (aws-lc-rs does not load those): only its
    /// public half is kept, so that signing and decrypting fail with the same [`KeyError::KeyTooSmall`] as
    /// in every other backend.
    RsaTooSmall,
    Ec {
        key: EcdsaKeyPair,
    },
}

/// A private key held in process memory (file and env backends).
pub struct SoftwareKey {
    backend: &'static str,
    label: String,
    public: PublicKey,
    inner: Inner,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("backend", &self.backend)
            .field("label", &self.label)
            .field("key", &self.public.describe())
            .finish_non_exhaustive()
    }
}

/// The private-key encodings keybound reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Pkcs8,
    Pkcs1,
    Sec1,
}

impl SoftwareKey {
    /// Parses a private key from PEM text or raw DER bytes (PKCS#8, PKCS#1 RSA, SEC1 EC).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] with a message that names the problem but never the bytes.
    pub fn from_bytes(
        backend: &'static str,
        label: String,
        bytes: &[u8],
    ) -> Result<Self, KeyError> {
        let (encoding, der) = decode_private_key(bytes)?;
        Self::from_der(backend, label, encoding, &der)
    }

    fn from_der(
        backend: &'static str,
        label: String,
        encoding: Encoding,
        der: &[u8],
    ) -> Result<Self, KeyError> {
        match encoding {
            Encoding::Pkcs8 => {
                let (oid, curve) = pkcs8_algorithm(der)?;
                if oid == OID_RSA_ENCRYPTION {
                    Self::rsa_from_pkcs8(backend, label, der)
                } else if oid == OID_EC_PUBLIC_KEY {
                    let curve = curve
                        .ok_or_else(|| KeyError::invalid_key("EC key without a named curve"))?;
                    Self::ec(backend, label, curve, der, true)
                } else {
                    Err(KeyError::invalid_key(
                        "unsupported private key algorithm (RSA and EC P-256/P-384 are supported)",
                    ))
                }
            }
            Encoding::Pkcs1 => {
                let pkcs8 = wrap_pkcs1_in_pkcs8(der);
                Self::rsa_from_pkcs8(backend, label, &pkcs8)
            }
            Encoding::Sec1 => {
                let curve = sec1_curve(der)?;
                Self::ec(backend, label, curve, der, false)
            }
        }
    }

    fn rsa_from_pkcs8(
        backend: &'static str,
        label: String,
        pkcs8: &[u8],
    ) -> Result<Self, KeyError> {
        let signing = match RsaKeyPair::from_pkcs8(pkcs8) {
            Ok(signing) => signing,
            Err(e) => {
                // A key under 2048 bits is kept (public half only) so that using it fails with the one
                // size rule's message, as in the PKCS#11 backend; anything else is not a usable key.
                if let Some(public) = rsa_public_from_pkcs8(pkcs8) {
                    if public.bits() < crate::MIN_RSA_BITS {
                        return Ok(Self {
                            backend,
                            label,
                            public,
                            inner: Inner::RsaTooSmall,
                        });
                    }
                }
                return Err(KeyError::invalid_key(format!(
                    "RSA key rejected ({e}); keys of 2048 to 8192 bits are supported"
                )));
            }
        };
        let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8)
            .map_err(|e| KeyError::invalid_key(format!("RSA key rejected ({e})")))
            .and_then(|k| {
                OaepPrivateDecryptingKey::new(k)
                    .map_err(|_| KeyError::invalid_key("RSA key rejected for OAEP"))
            })?;
        let public = PublicKey::from_pkcs1_der(signing.public_key().as_ref())?;
        Ok(Self {
            backend,
            label,
            public,
            inner: Inner::Rsa {
                signing,
                decrypting,
            },
        })
    }

    fn ec(
        backend: &'static str,
        label: String,
        curve: EcCurve,
        der: &[u8],
        pkcs8: bool,
    ) -> Result<Self, KeyError> {
        let alg = match curve {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let key = if pkcs8 {
            EcdsaKeyPair::from_pkcs8(alg, der)
        } else {
            EcdsaKeyPair::from_private_key_der(alg, der)
        }
        .map_err(|e| KeyError::invalid_key(format!("EC key rejected ({e})")))?;
        let public = PublicKey::ec_from_point(curve, key.public_key().as_ref())?;
        Ok(Self {
            backend,
            label,
            public,
            inner: Inner::Ec { key },
        })
    }
}

impl KeyBackend for SoftwareKey {
    fn backend_name(&self) -> &'static str {
        self.backend
    }

    fn key_label(&self) -> &str {
        &self.label
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let started = Instant::now();
        let result = self.sign_unaudited(scheme, message);
        self.audit("sign", scheme.name(), started, result.as_ref().map(|_| ()));
        result
    }

    fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let started = Instant::now();
        let result = self.decrypt_unaudited(scheme, ciphertext);
        self.audit(
            "decrypt",
            scheme.name(),
            started,
            result.as_ref().map(|_| ()),
        );
        result
    }
}

impl SoftwareKey {
    /// The audit event of one operation (see the `audit` module): never the data.
    fn audit(
        &self,
        operation: &str,
        scheme: &str,
        started: Instant,
        result: Result<(), &KeyError>,
    ) {
        audit::operation(
            audit::Operation {
                backend: self.backend,
                token: None,
                key: &self.label,
                operation,
                scheme,
                mechanism: None,
            },
            started,
            false,
            result.map_err(|e| (e as &dyn fmt::Display, None)),
        );
    }

    fn sign_unaudited(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        scheme.check_key(&self.public)?;
        match (&self.inner, scheme) {
            (Inner::Rsa { signing, .. }, _) => {
                let padding: &'static dyn signature::RsaEncoding = match scheme {
                    SignatureScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    SignatureScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
                    SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    SignatureScheme::RsaPssSha512 => &signature::RSA_PSS_SHA512,
                    SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => {
                        return Err(scheme.wrong_key(&self.public));
                    }
                };
                let mut sig = vec![0u8; signing.public_modulus_len()];
                signing
                    .sign(padding, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(sig)
            }
            (
                Inner::Ec { key },
                SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384,
            ) => {
                let sig = key
                    .sign(&SystemRandom::new(), message)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(sig.as_ref().to_vec())
            }
            (Inner::Ec { .. }, _) => Err(scheme.wrong_key(&self.public)),
            // check_key refused it above; kept for the match to be complete.
            (Inner::RsaTooSmall, _) => {
                crate::check_rsa_size(&self.public, crate::KeyOperation::Sign)?;
                Err(KeyError::Crypto)
            }
        }
    }

    fn decrypt_unaudited(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if matches!(self.public, PublicKey::Rsa { .. }) {
            crate::check_rsa_size(&self.public, crate::KeyOperation::Decrypt)?;
        }
        let Inner::Rsa { decrypting, .. } = &self.inner else {
            return Err(KeyError::WrongKeyType {
                operation: scheme.to_string(),
                key: self.public.describe(),
            });
        };
        let alg = match scheme {
            DecryptionScheme::RsaOaepSha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
            DecryptionScheme::RsaOaepSha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        };
        if ciphertext.len() != decrypting.key_size_bytes() {
            return Err(KeyError::Crypto);
        }
        let mut out = Zeroizing::new(vec![0u8; decrypting.min_output_size()]);
        let len = decrypting
            .decrypt(alg, ciphertext, &mut out, None)
            .map_err(|_| KeyError::Crypto)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

pub use crate::KeySpec;

/// Generates a new private key in memory and returns it as PKCS#8 DER (wiped on drop).
///
/// # Errors
/// [`KeyError::InvalidKeyMaterial`] for an unsupported size; [`KeyError::Crypto`] if generation fails.
pub fn generate_pkcs8(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match spec {
        KeySpec::Rsa(bits) => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => {
                    return Err(KeyError::invalid_key(
                        "RSA key size must be 2048, 3072 or 4096 bits",
                    ));
                }
            };
            let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| KeyError::Crypto)?;
            let der = pair.as_der().map_err(|_| KeyError::Crypto)?;
            Ok(Zeroizing::new(der.as_ref().to_vec()))
        }
        KeySpec::Ec(curve) => {
            let alg = match curve {
                EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            };
            let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
                .map_err(|_| KeyError::Crypto)?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        }
    }
}

/// Encodes PKCS#8 DER as `-----BEGIN PRIVATE KEY-----` PEM (wiped on drop).
#[must_use]
pub fn pkcs8_to_pem(der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Finds the one private-key block in PEM text (or takes the bytes as DER) and decodes it into a wiped
/// buffer. PEM text with more than one private key block is refused.
fn decode_private_key(bytes: &[u8]) -> Result<(Encoding, Zeroizing<Vec<u8>>), KeyError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return der_encoding(bytes).map(|e| (e, Zeroizing::new(bytes.to_vec())));
    };
    if !text.contains("-----BEGIN ") {
        return Err(KeyError::invalid_key(
            "no PEM private key found (expected -----BEGIN PRIVATE KEY-----)",
        ));
    }
    // A file with two private keys is a mistake keybound must not resolve by taking the first one.
    let private_keys = text
        .lines()
        .filter_map(|l| pem_begin_label(l.trim()))
        .filter(|label| label.ends_with("PRIVATE KEY"))
        .count();
    if private_keys > 1 {
        return Err(KeyError::invalid_key(format!(
            "the PEM holds more than one private key ({private_keys} private key blocks); keybound does not \
             pick one: keep exactly one private key per file or variable"
        )));
    }
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = pem_begin_label(line) else {
            continue;
        };
        let encoding = match label {
            "PRIVATE KEY" => Encoding::Pkcs8,
            "RSA PRIVATE KEY" => Encoding::Pkcs1,
            "EC PRIVATE KEY" => Encoding::Sec1,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::invalid_key(
                    "encrypted private keys are not supported; store the key in an HSM, or decrypt it with `openssl pkcs8`",
                ));
            }
            "PUBLIC KEY" | "CERTIFICATE" | "EC PARAMETERS" => continue,
            _ => continue,
        };
        let end = format!("-----END {label}-----");
        let mut b64 = Zeroizing::new(String::with_capacity(text.len()));
        let mut closed = false;
        for body in lines.by_ref() {
            let body = body.trim();
            if body == end {
                closed = true;
                break;
            }
            if body.contains(':') {
                return Err(KeyError::invalid_key(
                    "PEM headers (Proc-Type/DEK-Info) mean an encrypted key; decrypt it first or use an HSM",
                ));
            }
            b64.push_str(body);
        }
        if !closed {
            return Err(KeyError::invalid_key(format!(
                "PEM block `{label}` has no END line"
            )));
        }
        let mut der = Zeroizing::new(Vec::with_capacity(b64.len()));
        base64::engine::general_purpose::STANDARD
            .decode_vec(b64.as_bytes(), &mut der)
            .map_err(|_| KeyError::invalid_key("PEM body is not valid base64"))?;
        return Ok((encoding, der));
    }
    Err(KeyError::invalid_key(
        "no private key PEM block found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
    ))
}

/// The label of a `-----BEGIN LABEL-----` line.
fn pem_begin_label(line: &str) -> Option<&str> {
    line.strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
}

/// Guesses the encoding of raw DER private key bytes from their structure.
fn der_encoding(der: &[u8]) -> Result<Encoding, KeyError> {
    let bad = || KeyError::invalid_key("not a PEM or DER private key");
    let mut outer = Reader::new(der);
    let seq = outer.read(der::TAG_SEQUENCE).map_err(|_| bad())?;
    let mut seq = Reader::new(seq);
    let _version = seq.read(der::TAG_INTEGER).map_err(|_| bad())?;
    match seq.read_any().map_err(|_| bad())? {
        (der::TAG_SEQUENCE, _) => Ok(Encoding::Pkcs8),
        (der::TAG_INTEGER, _) => Ok(Encoding::Pkcs1),
        (der::TAG_OCTET_STRING, _) => Ok(Encoding::Sec1),
        _ => Err(bad()),
    }
}

/// Parses raw DER bytes (PKCS#8, PKCS#1, SEC1) into a key (the `env` backend's base64 DER form).
#[cfg(feature = "env")]
pub(crate) fn from_der_bytes(
    backend: &'static str,
    label: String,
    der: &[u8],
) -> Result<SoftwareKey, KeyError> {
    let encoding = der_encoding(der)?;
    SoftwareKey::from_der(backend, label, encoding, der)
}

/// Reads the algorithm OID (and the named curve, for EC) of a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_algorithm(der: &[u8]) -> Result<(&[u8], Option<EcCurve>), KeyError> {
    let bad = |_| KeyError::invalid_key("malformed PKCS#8 private key");
    let mut outer = Reader::new(der);
    let seq = outer.read(der::TAG_SEQUENCE).map_err(bad)?;
    let mut seq = Reader::new(seq);
    seq.read(der::TAG_INTEGER).map_err(bad)?;
    let mut alg = Reader::new(seq.read(der::TAG_SEQUENCE).map_err(bad)?);
    let oid = alg.read(der::TAG_OID).map_err(bad)?;
    let curve = if oid == OID_EC_PUBLIC_KEY {
        let c = alg.read(der::TAG_OID).map_err(bad)?;
        Some(curve_from_oid(c)?)
    } else {
        None
    };
    Ok((oid, curve))
}

/// Reads the named curve of a SEC1 `ECPrivateKey` (the `[0] parameters` field).
fn sec1_curve(der: &[u8]) -> Result<EcCurve, KeyError> {
    let bad = |_| KeyError::invalid_key("malformed EC private key");
    let mut outer = Reader::new(der);
    let seq = outer.read(der::TAG_SEQUENCE).map_err(bad)?;
    let mut seq = Reader::new(seq);
    seq.read(der::TAG_INTEGER).map_err(bad)?;
    seq.read(der::TAG_OCTET_STRING).map_err(bad)?;
    while !seq.is_empty() {
        let (tag, value) = seq.read_any().map_err(bad)?;
        if tag == 0xa0 {
            let oid = Reader::new(value).read(der::TAG_OID).map_err(bad)?;
            return curve_from_oid(oid);
        }
    }
    Err(KeyError::invalid_key(
        "EC private key does not name its curve",
    ))
}

fn curve_from_oid(oid: &[u8]) -> Result<EcCurve, KeyError> {
    [EcCurve::P256, EcCurve::P384]
        .into_iter()
        .find(|c| c.oid() == oid)
        .ok_or_else(|| {
            KeyError::invalid_key("unsupported EC curve (P-256 and P-384 are supported)")
        })
}

/// The public half (modulus, public exponent) of the RSA key in PKCS#8 `PrivateKeyInfo` DER, read without
/// aws-lc-rs (which refuses keys under 2048 bits); `None` when the DER is not an RSA private key.
fn rsa_public_from_pkcs8(pkcs8: &[u8]) -> Option<PublicKey> {
    let mut outer = Reader::new(pkcs8);
    let mut info = Reader::new(outer.read(der::TAG_SEQUENCE).ok()?);
    info.read(der::TAG_INTEGER).ok()?;
    info.read(der::TAG_SEQUENCE).ok()?;
    let mut outer = Reader::new(info.read(der::TAG_OCTET_STRING).ok()?);
    let mut key = Reader::new(outer.read(der::TAG_SEQUENCE).ok()?);
    key.read(der::TAG_INTEGER).ok()?;
    let n = key.read_unsigned_integer().ok()?;
    let e = key.read_unsigned_integer().ok()?;
    PublicKey::rsa(n, e).ok()
}

/// PKCS#8 `PrivateKeyInfo` around a PKCS#1 `RSAPrivateKey` (wiped on drop).
fn wrap_pkcs1_in_pkcs8(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(pkcs1.len() + 32));
    der::write_tlv(&mut body, der::TAG_INTEGER, &[0]);
    let mut alg = Vec::new();
    der::write_tlv(&mut alg, der::TAG_OID, OID_RSA_ENCRYPTION);
    der::write_tlv(&mut alg, der::TAG_NULL, &[]);
    der::write_tlv(&mut body, der::TAG_SEQUENCE, &alg);
    der::write_tlv(&mut body, der::TAG_OCTET_STRING, pkcs1);
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 4));
    der::write_tlv(&mut out, der::TAG_SEQUENCE, &body);
    out
}

/// A private key in any form keybound reads (PEM or DER; PKCS#8, PKCS#1, SEC1) as PKCS#8 DER, with its
/// public key; the key is checked by loading it (aws-lc-rs), and an RSA key under [`crate::MIN_RSA_BITS`] is
/// refused. For [`crate::ImportKey`].
pub(crate) fn to_pkcs8(bytes: &[u8]) -> Result<(Zeroizing<Vec<u8>>, PublicKey), KeyError> {
    let (encoding, der) = decode_private_key(bytes)?;
    der_to_pkcs8(encoding, der)
}

/// As [`to_pkcs8`] for DER bytes (never taken for PEM text, whatever bytes they hold).
pub(crate) fn der_to_pkcs8_any(der: &[u8]) -> Result<(Zeroizing<Vec<u8>>, PublicKey), KeyError> {
    der_to_pkcs8(der_encoding(der)?, Zeroizing::new(der.to_vec()))
}

fn der_to_pkcs8(
    encoding: Encoding,
    der: Zeroizing<Vec<u8>>,
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), KeyError> {
    let pkcs8 = match encoding {
        Encoding::Pkcs8 => der,
        Encoding::Pkcs1 => wrap_pkcs1_in_pkcs8(&der),
        Encoding::Sec1 => {
            let alg = match sec1_curve(&der)? {
                EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            };
            let key = EcdsaKeyPair::from_private_key_der(alg, &der)
                .map_err(|e| KeyError::invalid_key(format!("EC key rejected ({e})")))?;
            let doc = key.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
            Zeroizing::new(doc.as_ref().to_vec())
        }
    };
    let key = SoftwareKey::from_der("import", String::new(), Encoding::Pkcs8, &pkcs8)?;
    crate::check_rsa_size(&key.public, crate::KeyOperation::Sign)?;
    Ok((pkcs8, key.public))
}

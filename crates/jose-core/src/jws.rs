//! Compact JWS (RFC 7515): signing through a [`KeyBackend`] and verification against public keys.
//!
//! Parsing is strict and happens before any cryptography: size limit first, then exactly three parts,
//! canonical base64url, a header that is a JSON object without duplicate members, an allowed asymmetric `alg`,
//! no `crit` (none is understood), no `b64: false`. `jku`, `x5u`, `jwk` and `x5c` headers are never fetched
//! or trusted: keys come only from the caller.

use key_provider::{KeyBackend, PublicKey};
use serde_json::{Map, Value};

use crate::alg::JwsAlgorithm;
use crate::b64;
use crate::error::{JoseError, sanitize};
use crate::json::JsonObject;
use crate::keys::KeySet;

/// Default maximum token size: 64 KiB.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 64 * 1024;

/// A JWS protected header to sign with.
#[derive(Debug, Clone, PartialEq)]
pub struct JwsHeader {
    /// The algorithm.
    pub alg: JwsAlgorithm,
    /// `typ`, e.g. `JWT`.
    pub typ: Option<String>,
    /// `kid`.
    pub kid: Option<String>,
    /// `cty`.
    pub cty: Option<String>,
    /// Further members (must not repeat the above).
    pub extra: Map<String, Value>,
}

impl JwsHeader {
    /// A header with only `alg`.
    #[must_use]
    pub fn new(alg: JwsAlgorithm) -> Self {
        Self {
            alg,
            typ: None,
            kid: None,
            cty: None,
            extra: Map::new(),
        }
    }

    /// Sets `typ`.
    #[must_use]
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Sets `kid`.
    #[must_use]
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The header as a JSON object, members in the order alg, typ, kid, cty, extra.
    #[must_use]
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("alg".into(), Value::String(self.alg.as_str().into()));
        if let Some(t) = &self.typ {
            m.insert("typ".into(), Value::String(t.clone()));
        }
        if let Some(k) = &self.kid {
            m.insert("kid".into(), Value::String(k.clone()));
        }
        if let Some(c) = &self.cty {
            m.insert("cty".into(), Value::String(c.clone()));
        }
        for (k, v) in &self.extra {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }

    /// The header's JSON text: the bytes of [`JwsHeader::to_json`], written without building the map when
    /// there are no extra members (the common case, and the same bytes: same members, order and escaping).
    fn to_json_bytes(&self) -> Result<Vec<u8>, JoseError> {
        #[derive(serde::Serialize)]
        struct Members<'a> {
            alg: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            typ: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            cty: Option<&'a str>,
        }
        let bytes = if self.extra.is_empty() {
            serde_json::to_vec(&Members {
                alg: self.alg.as_str(),
                typ: self.typ.as_deref(),
                kid: self.kid.as_deref(),
                cty: self.cty.as_deref(),
            })
        } else {
            serde_json::to_vec(&self.to_json())
        };
        bytes.map_err(|e| JoseError::InvalidInput(e.to_string()))
    }
}

/// Signs `payload` into a compact JWS with `key`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::{JwsAlgorithm, JwsHeader, KeySet, VerifyingKey};
/// use jose_core::jws::VerifyOptions;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// // `key` is any Arc<dyn KeyBackend>: a file, an environment variable, an HSM.
/// let header = JwsHeader::new(JwsAlgorithm::PS256).kid("k1");
/// let jws = jose_core::jws::sign(key.as_ref(), &header, b"any bytes")?;
/// let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
/// let (_header, payload) = jose_core::jws::verify(&jws, &keys, &VerifyOptions::default())?;
/// assert_eq!(payload, b"any bytes");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`JoseError::Key`] when the algorithm does not fit the key or the backend fails.
pub fn sign(key: &dyn KeyBackend, header: &JwsHeader, payload: &[u8]) -> Result<String, JoseError> {
    let header_json = header.to_json_bytes()?;
    // `to_json` writes a JSON object whose `alg` is `header.alg`: no need to parse it back.
    let signing_input = encode_signing_input(key, header.alg, &header_json, payload)?;
    sign_input(key, header.alg, signing_input)
}

/// Async variant of [`sign`]: never blocks an async worker thread (PKCS#11 runs on the blocking pool).
///
/// # Errors
/// As [`sign`].
pub async fn sign_async(
    key: &dyn KeyBackend,
    header: &JwsHeader,
    payload: &[u8],
) -> Result<String, JoseError> {
    let header_json = header.to_json_bytes()?;
    let signing_input = encode_signing_input(key, header.alg, &header_json, payload)?;
    let sig = key
        .sign_async(header.alg.scheme(), signing_input.as_bytes())
        .await?;
    Ok(finish(signing_input, &sig))
}

/// Signs with exactly these header bytes (for byte-exact reproduction of published examples). The header
/// must be a JSON object whose `alg` equals `alg`.
///
/// # Errors
/// [`JoseError::InvalidInput`] when the header does not match `alg`; else as [`sign`].
pub fn sign_with_raw_header(
    key: &dyn KeyBackend,
    alg: JwsAlgorithm,
    header_json: &[u8],
    payload: &[u8],
) -> Result<String, JoseError> {
    let signing_input = signing_input(key, alg, header_json, payload)?;
    sign_input(key, alg, signing_input)
}

fn sign_input(
    key: &dyn KeyBackend,
    alg: JwsAlgorithm,
    signing_input: String,
) -> Result<String, JoseError> {
    let started = std::time::Instant::now();
    let sig = key.sign(alg.scheme(), signing_input.as_bytes())?;
    tracing::debug!(
        key = key.key_label(),
        alg = alg.as_str(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "JWS signed"
    );
    Ok(finish(signing_input, &sig))
}

/// The signing input of a caller-supplied header, which must be a JSON object naming `alg`.
fn signing_input(
    key: &dyn KeyBackend,
    alg: JwsAlgorithm,
    header_json: &[u8],
    payload: &[u8],
) -> Result<String, JoseError> {
    let header = crate::json::parse_object("header", header_json)?;
    if header.get("alg").and_then(Value::as_str) != Some(alg.as_str()) {
        return Err(JoseError::InvalidInput(
            "header `alg` does not match the signing algorithm".into(),
        ));
    }
    encode_signing_input(key, alg, header_json, payload)
}

/// `BASE64URL(header) '.' BASE64URL(payload)`, in a string with room for the signature.
fn encode_signing_input(
    key: &dyn KeyBackend,
    alg: JwsAlgorithm,
    header_json: &[u8],
    payload: &[u8],
) -> Result<String, JoseError> {
    alg.scheme().check_key(key.public_key())?;
    let signature_len = match key.public_key() {
        PublicKey::Rsa { n, .. } => n.len(),
        PublicKey::Ec { curve, .. } => 2 * curve.coordinate_len(),
        _ => 0,
    };
    let mut s = String::with_capacity(
        b64::encoded_len(header_json.len())
            + b64::encoded_len(payload.len())
            + b64::encoded_len(signature_len)
            + 2,
    );
    b64::encode_into(header_json, &mut s);
    s.push('.');
    b64::encode_into(payload, &mut s);
    Ok(s)
}

fn finish(mut signing_input: String, sig: &[u8]) -> String {
    signing_input.push('.');
    b64::encode_into(sig, &mut signing_input);
    signing_input
}

/// Limits and allowances for verification.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Algorithms accepted (default: every supported asymmetric algorithm).
    pub algorithms: Vec<JwsAlgorithm>,
    /// Maximum token size in bytes, checked before any decoding (default 64 KiB).
    pub max_token_size: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            algorithms: JwsAlgorithm::ALL.to_vec(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
        }
    }
}

impl VerifyOptions {
    /// Accept only `algs`.
    #[must_use]
    pub fn algorithms(mut self, algs: &[JwsAlgorithm]) -> Self {
        self.algorithms = algs.to_vec();
        self
    }

    /// Sets the size limit.
    #[must_use]
    pub fn max_token_size(mut self, limit: usize) -> Self {
        self.max_token_size = limit;
        self
    }
}

/// A compact JWS split and checked structurally; the signature is not yet verified.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The algorithm from the header.
    pub alg: JwsAlgorithm,
    /// The decoded payload (untrusted until verified).
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl UnverifiedJws<'_> {
    /// The header `kid`, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Verifies the signature with `key`.
    ///
    /// # Errors
    /// [`JoseError::InvalidSignature`], or [`JoseError::NoKey`] when the key does not fit the algorithm.
    pub fn verify_with(&self, key: &PublicKey) -> Result<(), JoseError> {
        verify_signature(
            self.alg,
            key,
            self.signing_input.as_bytes(),
            &self.signature,
        )
    }
}

/// Splits and checks a compact JWS without verifying it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::{JwsAlgorithm, JwsHeader, jws};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("k.pem");
/// key_provider::file::generate(&path, key_provider::KeySpec::Ec(key_provider::EcCurve::P256))?;
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let token = jws::sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::ES256).kid("k1"), b"hello")?;
/// let parsed = jws::parse(&token, &jws::VerifyOptions::default())?;
/// assert_eq!((parsed.alg, parsed.kid(), &parsed.payload[..]), (JwsAlgorithm::ES256, Some("k1"), &b"hello"[..]));
/// parsed.verify_with(key.public_key())?;
/// // Structure is checked before any key is involved:
/// assert!(jws::parse("a.b", &jws::VerifyOptions::default()).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`JoseError::TooLarge`], [`JoseError::Malformed`], [`JoseError::ForbiddenAlgorithm`],
/// [`JoseError::UnsupportedAlgorithm`], [`JoseError::UnsupportedHeader`].
pub fn parse<'a>(token: &'a str, options: &VerifyOptions) -> Result<UnverifiedJws<'a>, JoseError> {
    if token.len() > options.max_token_size {
        return Err(JoseError::TooLarge {
            size: token.len(),
            limit: options.max_token_size,
        });
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let n = token.split('.').count();
        return Err(JoseError::malformed(
            "JWS",
            format!("expected 3 dot-separated parts, found {n}"),
        ));
    };
    if h.is_empty() {
        return Err(JoseError::malformed("JWS", "empty header"));
    }
    let header = crate::json::parse_object("JWS header", &b64::decode("JWS header", h)?)?;
    let alg = check_header(&header, &options.algorithms)?;
    let payload = b64::decode("JWS payload", p)?;
    let signature = b64::decode("JWS signature", s)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(UnverifiedJws {
        header,
        alg,
        payload,
        signing_input,
        signature,
    })
}

pub(crate) fn check_header(
    header: &Map<String, Value>,
    allowed: &[JwsAlgorithm],
) -> Result<JwsAlgorithm, JoseError> {
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.parse::<JwsAlgorithm>()?,
        Some(_) => return Err(JoseError::malformed("JWS header", "`alg` is not a string")),
        None => return Err(JoseError::malformed("JWS header", "missing `alg`")),
    };
    if !allowed.contains(&alg) {
        return Err(JoseError::UnsupportedAlgorithm {
            alg: alg.as_str().into(),
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
    if let Some(b) = header.get("b64") {
        if b != &Value::Bool(true) {
            return Err(JoseError::UnsupportedHeader {
                name: "b64".into(),
                reason: "unencoded payloads are not supported",
            });
        }
    }
    if let Some(kid) = header.get("kid") {
        if !kid.is_string() {
            return Err(JoseError::malformed("JWS header", "`kid` is not a string"));
        }
    }
    Ok(alg)
}

/// Verifies a compact JWS against `keys` and returns its header and payload.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::jws::VerifyOptions;
/// use jose_core::{JwsAlgorithm, JwsHeader, KeySet};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// # let jws = jose_core::jws::sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::RS256), b"hello")?;
/// // The partner's public key as SPKI PEM, a JWK or a JWKS:
/// let keys = KeySet::from_text(&key.public_key().to_spki_pem())?;
/// let options = VerifyOptions::default().algorithms(&[JwsAlgorithm::RS256]);
/// let (header, payload) = jose_core::jws::verify(&jws, &keys, &options)?;
/// assert_eq!((header["alg"].as_str(), payload.as_slice()), (Some("RS256"), &b"hello"[..]));
/// // A changed byte fails, with nothing but "invalid signature".
/// let mut tampered = jws.clone();
/// tampered.insert(jws.find('.').unwrap_or(0) + 1, 'x');
/// assert!(jose_core::jws::verify(&tampered, &keys, &options).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// Every structural error of [`parse`], [`JoseError::NoKey`], [`JoseError::InvalidSignature`].
pub fn verify(
    token: &str,
    keys: &KeySet,
    options: &VerifyOptions,
) -> Result<(JsonObject, Vec<u8>), JoseError> {
    let jws = parse(token, options)?;
    let key = keys.select(jws.kid(), jws.alg)?;
    jws.verify_with(&key.key)?;
    Ok((jws.header, jws.payload))
}

/// Verifies `signature` over `message` with `key` under `alg` (JOSE signature encodings: raw RSA bytes,
/// fixed-width ECDSA r || s).
///
/// An RSA key under [`key_provider::MIN_RSA_BITS`] is refused before the signature is looked at, with
/// the key-size error every backend gives ("RSA-1024 key too small: …"), never "signature verification
/// failed".
///
/// # Errors
/// [`JoseError::InvalidSignature`], [`JoseError::NoKey`], or [`JoseError::Key`] with
/// [`KeyError::KeyTooSmall`](key_provider::KeyError::KeyTooSmall).
pub fn verify_signature(
    alg: JwsAlgorithm,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), JoseError> {
    use aws_lc_rs::signature as sig;
    if !alg.fits(key) {
        return Err(JoseError::NoKey {
            reason: format!("key ({}) does not fit algorithm {alg}", key.describe()),
        });
    }
    key_provider::check_rsa_size(key, key_provider::KeyOperation::Verify)?;
    // `fits` above: an RSA algorithm has an RSA key here, an ECDSA one an EC key.
    let (expected_len, key_bytes) = match key {
        PublicKey::Rsa { n, .. } => (n.len(), key.rsa_public_key_der().unwrap_or_default()),
        PublicKey::Ec { curve, .. } => (
            2 * curve.coordinate_len(),
            key.ec_point().unwrap_or_default(),
        ),
        _ => {
            return Err(JoseError::NoKey {
                reason: "unsupported key type".into(),
            });
        }
    };
    if signature.len() != expected_len {
        return Err(JoseError::InvalidSignature);
    }
    sig::UnparsedPublicKey::new(alg.aws_lc_verification(), &key_bytes)
        .verify(message, signature)
        .map_err(|_| JoseError::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_are_those_of_the_header_map() {
        let plain = JwsHeader::new(JwsAlgorithm::ES256);
        let full = JwsHeader::new(JwsAlgorithm::PS256)
            .typ("JWT")
            .kid("k \"1\" \\ é \u{1}");
        let mut cty = JwsHeader::new(JwsAlgorithm::RS256).kid("k");
        cty.cty = Some("JWT".into());
        let mut extra = full.clone();
        extra.extra.insert("x5t#S256".into(), Value::from("abc"));
        extra.extra.insert("kid".into(), Value::from("ignored"));
        for header in [plain, full, cty, extra] {
            assert_eq!(
                header.to_json_bytes().unwrap(),
                serde_json::to_vec(&header.to_json()).unwrap(),
                "{header:?}"
            );
        }
    }
}

//! JWT (RFC 7519): claims signed through a [`KeyBackend`], and verification with claim validation (`exp`,
//! `nbf`, `iat`, `iss`, `aud`, `sub`, leeway, required claims) by `jsonwebtoken`, after keybound's own strict
//! structural checks (see [`crate::jws`]).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use key_provider::{KeyBackend, PublicKey};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::alg::JwsAlgorithm;
use crate::b64;
use crate::error::JoseError;
use crate::json::JsonObject;
use crate::jws::{self, JwsHeader, VerifyOptions};
use crate::keys::KeySet;

/// Largest clock leeway [`verify`] accepts: 300 s (5 minutes, as flex-client). A larger leeway would make
/// `exp` meaningless (and `now - leeway` would leave the range of a timestamp); fix the clock instead.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Seconds since the Unix epoch.
#[must_use]
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `claims` (any serializable JSON object) as a compact JWT.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::{JwsAlgorithm, JwsHeader};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let now = jose_core::jwt::now();
/// let claims = serde_json::json!({"iss": "example-bank", "sub": "example-bank", "iat": now, "exp": now + 60});
/// let jwt = jose_core::jwt::sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::RS256).typ("JWT"), &claims)?;
/// let (header, decoded) = jose_core::jwt::decode_unverified(&jwt)?; // for display only
/// assert_eq!((header["typ"].as_str(), decoded["sub"].as_str()), (Some("JWT"), Some("example-bank")));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`JoseError::InvalidInput`] if the claims are not a JSON object; else as [`jws::sign`].
pub fn sign(
    key: &dyn KeyBackend,
    header: &JwsHeader,
    claims: &impl Serialize,
) -> Result<String, JoseError> {
    jws::sign(key, header, &claims_bytes(claims)?)
}

/// Async variant of [`sign`].
///
/// # Errors
/// As [`sign`].
pub async fn sign_async(
    key: &dyn KeyBackend,
    header: &JwsHeader,
    claims: &(impl Serialize + Sync),
) -> Result<String, JoseError> {
    let bytes = claims_bytes(claims)?;
    jws::sign_async(key, header, &bytes).await
}

fn claims_bytes(claims: &impl Serialize) -> Result<Vec<u8>, JoseError> {
    let value = serde_json::to_value(claims)
        .map_err(|e| JoseError::InvalidInput(format!("claims: {e}")))?;
    if !value.is_object() {
        return Err(JoseError::InvalidInput(
            "JWT claims must be a JSON object".into(),
        ));
    }
    serde_json::to_vec(&value).map_err(|e| JoseError::InvalidInput(format!("claims: {e}")))
}

/// What a verified JWT must satisfy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Validation {
    /// Accepted algorithms (default: all supported asymmetric ones).
    pub algorithms: Vec<JwsAlgorithm>,
    /// Accepted issuers: `iss` must be present and one of them; `None` skips the check.
    pub issuer: Option<Vec<String>>,
    /// Accepted audiences: `aud` must be present and contain one of them; `None` skips the check.
    pub audience: Option<Vec<String>>,
    /// Required subject; `None` skips the check.
    pub subject: Option<String>,
    /// Clock leeway in seconds for `exp`, `nbf` and `iat` (default 60, at most [`MAX_LEEWAY_SECS`]).
    pub leeway: u64,
    /// Claims that must be present (default `exp`).
    pub required_claims: Vec<String>,
    /// Check `exp` (default true).
    pub validate_exp: bool,
    /// Check `nbf` when present (default true).
    pub validate_nbf: bool,
    /// Reject `iat` more than `leeway` in the future (default true).
    pub validate_iat: bool,
    /// Maximum token size (default 64 KiB).
    pub max_token_size: usize,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            algorithms: JwsAlgorithm::ALL.to_vec(),
            issuer: None,
            audience: None,
            subject: None,
            leeway: 60,
            required_claims: vec!["exp".into()],
            validate_exp: true,
            validate_nbf: true,
            validate_iat: true,
            max_token_size: jws::DEFAULT_MAX_TOKEN_SIZE,
        }
    }
}

impl Validation {
    /// Defaults: all algorithms, `exp` required, 60 s leeway.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept only these algorithms.
    #[must_use]
    pub fn algorithms(mut self, algs: &[JwsAlgorithm]) -> Self {
        self.algorithms = algs.to_vec();
        self
    }

    /// Require this issuer.
    #[must_use]
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(vec![iss.into()]);
        self
    }

    /// Require this audience.
    #[must_use]
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(vec![aud.into()]);
        self
    }

    /// Require this subject.
    #[must_use]
    pub fn subject(mut self, sub: impl Into<String>) -> Self {
        self.subject = Some(sub.into());
        self
    }

    /// Set the leeway in seconds (at most [`MAX_LEEWAY_SECS`]; [`verify`] refuses more).
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Require these claims to be present.
    #[must_use]
    pub fn required_claims(mut self, claims: &[&str]) -> Self {
        self.required_claims = claims.iter().map(|c| (*c).to_owned()).collect();
        self
    }
}

/// A verified JWT.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The algorithm it was signed with.
    pub alg: JwsAlgorithm,
}

/// Installs keybound's `jsonwebtoken` crypto provider for this process, once: jsonwebtoken's aws-lc-rs
/// provider, with RSA verification keys parsed once per thread instead of on every verification (same
/// aws-lc parameters, same verdicts; see `docs/benchmarks.md`). Called by [`verify`]; call it yourself
/// before using `jsonwebtoken` directly. An already-installed provider is left in place and used; note
/// that jsonwebtoken fixes its stock provider on its first use, so an application that also calls
/// `jsonwebtoken` itself should call this first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; it is then used (still an explicit choice).
        let _ = crate::jwt_provider::PROVIDER.install_default();
    });
}

/// Verifies a compact JWT against `keys` and validates its claims.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::{JoseError, JwsAlgorithm, JwsHeader, KeySet, Validation, VerifyingKey};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// # let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let claims = serde_json::json!({"iss": "idp", "aud": "api", "exp": jose_core::jwt::now() + 60});
/// let jwt = jose_core::jwt::sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::RS256), &claims)?;
/// let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
/// let validation = Validation::new().issuer("idp").audience("api").algorithms(&[JwsAlgorithm::RS256]);
/// let verified = jose_core::jwt::verify(&jwt, &keys, &validation)?;
/// assert_eq!(verified.claims["aud"], "api");
/// let wrong_audience = Validation::new().audience("another-api");
/// assert!(matches!(
///     jose_core::jwt::verify(&jwt, &keys, &wrong_audience),
///     Err(JoseError::InvalidAudience)
/// ));
/// # Ok(()) }
/// ```
///
/// # Errors
/// Structural errors (see [`jws::parse`]), [`JoseError::NoKey`], [`JoseError::Key`] for an RSA key under
/// 2048 bits ([`key_provider::check_rsa_size`]), [`JoseError::InvalidSignature`],
/// [`JoseError::Expired`], [`JoseError::NotYetValid`], [`JoseError::InvalidAudience`],
/// [`JoseError::InvalidIssuer`], [`JoseError::MissingClaim`], [`JoseError::InvalidClaim`];
/// [`JoseError::InvalidInput`] for a leeway over [`MAX_LEEWAY_SECS`] (before the token is looked at).
pub fn verify(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
) -> Result<VerifiedJwt, JoseError> {
    if validation.leeway > MAX_LEEWAY_SECS {
        return Err(JoseError::InvalidInput(format!(
            "a clock leeway of {} s is over the {MAX_LEEWAY_SECS} s maximum; fix the clock instead",
            validation.leeway
        )));
    }
    install_crypto_provider();
    let options = VerifyOptions::default()
        .algorithms(&validation.algorithms)
        .max_token_size(validation.max_token_size);
    let jws = jws::parse(token, &options)?;
    let claims = crate::json::parse_object("JWT claims", &jws.payload)?;
    check_time_claim_types(&claims)?;
    check_principal_claim_types(&claims)?;
    let key = keys.select(jws.kid(), jws.alg)?;
    // The one RSA size rule: "key too small", not a signature failure (aws-lc refuses small keys).
    key_provider::check_rsa_size(&key.key, key_provider::KeyOperation::Verify)?;

    let decoding_key = decoding_key(&key.key)?;
    let mut v = jsonwebtoken::Validation::new(jws.alg.to_jsonwebtoken());
    v.algorithms = vec![jws.alg.to_jsonwebtoken()];
    v.leeway = validation.leeway;
    v.validate_exp = validation.validate_exp;
    v.validate_nbf = validation.validate_nbf;
    v.required_spec_claims = validation
        .required_claims
        .iter()
        .cloned()
        .collect::<HashSet<_>>();
    // An expected issuer, audience or subject makes the claim required: jsonwebtoken compares a value only
    // when the claim is there, and a token without `aud` must not pass a check for one.
    for (claim, expected) in [
        ("iss", validation.issuer.is_some()),
        ("aud", validation.audience.is_some()),
        ("sub", validation.subject.is_some()),
    ] {
        if expected {
            v.required_spec_claims.insert(claim.to_owned());
        }
    }
    match &validation.audience {
        Some(aud) => v.set_audience(aud),
        None => v.validate_aud = false,
    }
    if let Some(iss) = &validation.issuer {
        v.set_issuer(iss);
    }
    v.sub.clone_from(&validation.subject);
    // The claims were parsed strictly above; jsonwebtoken only checks the signature and validates them, so
    // its own copy of the claims is not kept.
    jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &decoding_key, &v)
        .map_err(map_jwt_error)?;

    // Custom required claims beyond the registered ones.
    for c in &validation.required_claims {
        if !claims.contains_key(c) {
            return Err(JoseError::MissingClaim(crate::error::sanitize(c)));
        }
    }
    if validation.validate_iat {
        if let Some(iat) = claims.get("iat").and_then(Value::as_f64) {
            if iat > now().saturating_add(validation.leeway) as f64 {
                return Err(JoseError::NotYetValid { claim: "iat" });
            }
        }
    }
    Ok(VerifiedJwt {
        header: jws.header,
        claims,
        alg: jws.alg,
    })
}

/// `iss` and `sub` must be strings and `aud` a string or an array of strings (RFC 7519 §4.1.1-3), whether or
/// not the validation looks at them: a claim of another type is an error, never "absent".
fn check_principal_claim_types(claims: &Map<String, Value>) -> Result<(), JoseError> {
    for name in ["iss", "sub"] {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return Err(JoseError::InvalidClaim {
                claim: name.into(),
                reason: "must be a string".into(),
            });
        }
    }
    match claims.get("aud") {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(JoseError::InvalidClaim {
            claim: "aud".into(),
            reason: "must be a string or an array of strings".into(),
        }),
    }
}

/// `exp`, `nbf` and `iat` must be non-negative numbers within the range of a 64-bit timestamp.
fn check_time_claim_types(claims: &Map<String, Value>) -> Result<(), JoseError> {
    for name in ["exp", "nbf", "iat"] {
        if let Some(v) = claims.get(name) {
            let ok = match v {
                Value::Number(n) => {
                    n.as_u64().is_some()
                        || n.as_f64()
                            .is_some_and(|f| f.is_finite() && (0.0..9.2e18).contains(&f))
                }
                _ => false,
            };
            if !ok {
                return Err(JoseError::InvalidClaim {
                    claim: name.into(),
                    reason: "must be a non-negative NumericDate within range".into(),
                });
            }
        }
    }
    Ok(())
}

fn decoding_key(key: &PublicKey) -> Result<jsonwebtoken::DecodingKey, JoseError> {
    match key {
        PublicKey::Rsa { n, e } => Ok(jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e)),
        PublicKey::Ec { x, y, .. } => {
            jsonwebtoken::DecodingKey::from_ec_components(&b64::encode(x), &b64::encode(y)).map_err(
                |_| JoseError::NoKey {
                    reason: "EC key rejected by jsonwebtoken".into(),
                },
            )
        }
        _ => Err(JoseError::NoKey {
            reason: "unsupported key type".into(),
        }),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> JoseError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => JoseError::InvalidSignature,
        K::ExpiredSignature => JoseError::Expired,
        K::ImmatureSignature => JoseError::NotYetValid { claim: "nbf" },
        K::InvalidAudience => JoseError::InvalidAudience,
        K::InvalidIssuer => JoseError::InvalidIssuer,
        K::InvalidSubject => JoseError::InvalidSubject,
        K::MissingRequiredClaim(c) => JoseError::MissingClaim(crate::error::sanitize(c)),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            JoseError::UnsupportedAlgorithm { alg: "?".into() }
        }
        K::Json(_) | K::Utf8(_) | K::Base64(_) | K::InvalidToken => {
            JoseError::malformed("JWT", "rejected by the JWT parser")
        }
        _ => JoseError::InvalidSignature,
    }
}

/// Decodes a JWT's header and claims WITHOUT verifying anything. For display only.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
/// let (header, claims) = jose_core::jwt::decode_unverified(token)?;
/// assert_eq!((header["alg"].as_str(), claims["sub"].as_str()), (Some("RS256"), Some("alice")));
/// # Ok(()) }
/// ```
///
/// # Errors
/// Structural errors only.
pub fn decode_unverified(token: &str) -> Result<(JsonObject, JsonObject), JoseError> {
    let options = VerifyOptions::default();
    if token.len() > options.max_token_size {
        return Err(JoseError::TooLarge {
            size: token.len(),
            limit: options.max_token_size,
        });
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JoseError::malformed(
            "JWT",
            format!("expected 3 dot-separated parts, found {}", parts.len()),
        ));
    }
    let header = crate::json::parse_object("JWT header", &b64::decode("JWT header", parts[0])?)?;
    let claims = crate::json::parse_object("JWT claims", &b64::decode("JWT claims", parts[1])?)?;
    Ok((header, claims))
}

// The tests sign with file keys.
#[cfg(all(test, feature = "file"))]
mod tests {
    use super::*;
    use crate::keys::VerifyingKey;

    fn key() -> (tempfile::TempDir, std::sync::Arc<dyn KeyBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        key_provider::file::generate(
            &path,
            key_provider::KeySpec::Ec(key_provider::EcCurve::P256),
        )
        .unwrap();
        let key = key_provider::open(
            &format!("file:{}", path.display()).parse().unwrap(),
            &key_provider::OpenOptions::new(),
        )
        .unwrap();
        (dir, key)
    }

    /// A leeway beyond the cap is refused before anything else (it used to overflow `now - leeway` inside
    /// jsonwebtoken and `now + leeway` here: a panic, or in release builds a valid token called expired);
    /// the cap itself verifies, and stretches `exp`, `nbf` and `iat` by exactly that much.
    #[test]
    fn leeway_is_capped_and_the_cap_works() {
        let (_dir, key) = key();
        let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
        let sign = |claims: serde_json::Value| {
            sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::ES256), &claims).unwrap()
        };
        let now = now();
        let valid = sign(serde_json::json!({"exp": now + 600, "iat": now}));
        for leeway in [MAX_LEEWAY_SECS + 1, 1_000_000_000_000, u64::MAX] {
            let e = verify(&valid, &keys, &Validation::new().leeway(leeway)).unwrap_err();
            assert!(
                matches!(&e, JoseError::InvalidInput(m) if m.contains("300 s maximum")),
                "{leeway}: {e:?}"
            );
        }
        verify(&valid, &keys, &Validation::new().leeway(MAX_LEEWAY_SECS)).unwrap();
        // Just inside and just outside the cap, for each time claim (10 s of margin for a slow test).
        let cap = MAX_LEEWAY_SECS;
        for (claims, inside) in [
            (serde_json::json!({"exp": now - cap + 10}), true),
            (serde_json::json!({"exp": now - cap - 10}), false),
            (
                serde_json::json!({"exp": now + 60, "nbf": now + cap - 10}),
                true,
            ),
            (
                serde_json::json!({"exp": now + 60, "nbf": now + cap + 10}),
                false,
            ),
            (
                serde_json::json!({"exp": now + 60, "iat": now + cap - 10}),
                true,
            ),
            (
                serde_json::json!({"exp": now + 60, "iat": now + cap + 10}),
                false,
            ),
        ] {
            let result = verify(&sign(claims.clone()), &keys, &Validation::new().leeway(cap));
            assert_eq!(result.is_ok(), inside, "{claims}: {result:?}");
        }
    }
}

//! Capture contexts: the RS256 JWT a merchant server obtains from Flex, carrying the one-time encryption key
//! (`flx.jwk`), the tokens endpoint (`flx.origin` + `flx.path`) and the client-side settings (`ctx[]`).
//!
//! [`CaptureContextClaims`] is the typed claim set; every level keeps members it does not know in `extra`,
//! because Cybersource says the JWT may grow. A [`CaptureContext`] exists only once verified (see
//! [`crate::FlexClient::verify_capture_context`]); [`decode_unverified`] is for display and diagnostics.

use std::fmt;

use jose_core::{Jwk, JwsAlgorithm};
use key_provider::PublicKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::environment::Environment;
use crate::error::{FlexError, sanitize};

/// The claims of a capture context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureContextClaims {
    /// Flex settings: the tokens endpoint and the one-time encryption key.
    pub flx: Flx,
    /// Client-side settings, one entry per client library.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ctx: Vec<CtxEntry>,
    /// Issuer (`Flex API`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expiry (seconds since the epoch; `iat` + 900 in practice).
    pub exp: u64,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Claims this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `flx` claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flx {
    /// Path of the tokens endpoint on `origin` (`/flex/v2/tokens`).
    pub path: String,
    /// Opaque data for Flex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Origin of the tokens endpoint (`https://testflex.cybersource.com`).
    pub origin: String,
    /// The one-time RSA key card data is encrypted to; its `kid` is the transient token's `kid`.
    pub jwk: Jwk,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of the `ctx` claim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CtxEntry {
    /// Settings for the client library.
    #[serde(default)]
    pub data: CtxData,
    /// The entry type, e.g. `mf-0.11.0`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ctx[].data`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CtxData {
    /// Origins of the pages allowed to use the context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_origins: Vec<String>,
    /// Origin of the Microform iframe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mf_origin: Option<String>,
    /// URL of the client library to load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_library: Option<String>,
    /// Subresource-integrity hash of the client library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_library_integrity: Option<String>,
    /// Fields the tokens request must contain (dotted paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_fields: Vec<String>,
    /// Fields the tokens request may contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_fields: Vec<String>,
    /// Members this crate does not know (allowed card networks, locale…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CaptureContextClaims {
    /// Parses claims from JSON bytes (the JWT payload).
    ///
    /// # Errors
    /// [`FlexError::Malformed`] naming the first problem.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FlexError> {
        let claims = strict_object("capture context", bytes)?;
        serde_json::from_value(claims)
            .map_err(|e| FlexError::malformed("capture context", claim_error(&e)))
    }

    /// The client library URL of the first `ctx` entry, if any.
    #[must_use]
    pub fn client_library(&self) -> Option<&str> {
        self.ctx
            .iter()
            .find_map(|c| c.data.client_library.as_deref())
    }

    /// Required fields over all `ctx` entries.
    #[must_use]
    pub fn required_fields(&self) -> Vec<&str> {
        self.ctx
            .iter()
            .flat_map(|c| c.data.required_fields.iter().map(String::as_str))
            .collect()
    }
}

/// serde's message without the offending input (it could hold token content).
/// Parses claims as jose-core parses JOSE headers and claims: a JSON object, with duplicate member names at
/// any depth refused (so no two parsers can read different claims from one signed payload).
pub(crate) fn strict_object(what: &'static str, bytes: &[u8]) -> Result<Value, FlexError> {
    jose_core::json::parse_object("claims", bytes)
        .map(Value::Object)
        .map_err(|e| FlexError::malformed(what, e.to_string()))
}

pub(crate) fn claim_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json messages look like "invalid type: string \"…\", expected u64 at line 1 column 9": keep the
    // category and the expectation, drop any quoted value.
    let cut = match text.find('"') {
        Some(i) => {
            let tail = text.rfind(", expected").map(|j| &text[j..]).unwrap_or("");
            format!("{}…{}", &text[..i], tail)
        }
        None => text,
    };
    sanitize_long(&cut)
}

fn sanitize_long(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ' || *c == '…')
        .take(160)
        .collect()
}

/// Removes all ASCII whitespace: compact JWS/JWE never contain any, and tokens copied from documentation or
/// e-mail come line-wrapped.
#[must_use]
pub fn normalize_compact(token: &str) -> String {
    token.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Decodes a capture context's header and claims WITHOUT verifying anything (whitespace is removed first).
/// For display and diagnostics; never act on the result.
///
/// # Errors
/// [`FlexError::Malformed`].
pub fn decode_unverified(
    jwt: &str,
) -> Result<(Map<String, Value>, CaptureContextClaims), FlexError> {
    let jwt = normalize_compact(jwt);
    let (header, claims) = jose_core::jwt::decode_unverified(&jwt)
        .map_err(|e| FlexError::malformed("capture context", e.to_string()))?;
    let claims = serde_json::from_value(Value::Object(claims))
        .map_err(|e| FlexError::malformed("capture context", claim_error(&e)))?;
    Ok((header, claims))
}

/// A verified capture context: signature checked against Flex's key for its `kid`, `exp`/`iat` checked,
/// `flx.jwk` an RSA key of at least 2048 bits with a `kid`. Only [`crate::FlexClient`] makes these.
#[derive(Clone)]
pub struct CaptureContext {
    pub(crate) jwt: String,
    pub(crate) kid: String,
    pub(crate) alg: JwsAlgorithm,
    pub(crate) claims: CaptureContextClaims,
    pub(crate) encryption_key: PublicKey,
    pub(crate) encryption_kid: String,
    pub(crate) environment: Environment,
}

impl CaptureContext {
    /// The compact JWT, as sent in the tokens request (`context`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.jwt
    }

    /// The `kid` of Flex's signing key.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signature algorithm.
    #[must_use]
    pub fn alg(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The typed claims.
    #[must_use]
    pub fn claims(&self) -> &CaptureContextClaims {
        &self.claims
    }

    /// The one-time encryption key (`flx.jwk`).
    #[must_use]
    pub fn encryption_key(&self) -> &PublicKey {
        &self.encryption_key
    }

    /// `flx.jwk.kid`: the JWE `kid`, and the `kid` the transient token must carry.
    #[must_use]
    pub fn encryption_kid(&self) -> &str {
        &self.encryption_kid
    }

    /// `exp`.
    #[must_use]
    pub fn expires_at(&self) -> u64 {
        self.claims.exp
    }

    /// The environment it was verified against.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.environment
    }
}

impl fmt::Debug for CaptureContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureContext")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("encryption_kid", &self.encryption_kid)
            .field("origin", &sanitize(&self.claims.flx.origin))
            .field("exp", &self.claims.exp)
            .field("environment", &self.environment.name())
            .finish_non_exhaustive()
    }
}

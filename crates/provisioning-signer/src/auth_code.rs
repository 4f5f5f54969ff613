//! The Thales authorization code: an RS256 JWT the issuer signs through a [`KeyBackend`] and hands to the
//! wallet flow, and the matching verification for issuers who want to check what they send.
//!
//! Shape (Thales push-provisioning developer guide, "Authorization code (JWT format)"):
//!
//! - header, exactly: `{"alg":"RS256","typ":"JWT","kid":…}` — `kid` is the value agreed at onboarding,
//!   by default the RFC 7638 thumbprint of the signing key;
//! - claims: `iss` (issuerId), `sub` (issuerCardRefId, or tokenId for lifecycle operations), `aud`
//!   (`GOOGLE_PAY` / `APPLE_PAY` / `SAMSUNG_PAY`), `jti` (UUID v4, on by default), `exp` = `iat` + ttl
//!   (default 120 s, at most 300 s), `iat` = now — in the order of the guide's example.
//!
//! Invariants: the signer refuses any key that is not RSA of at least 2048 bits before it signs anything;
//! tracing events carry issuer id, audience, kid, outcome and latency, never `sub` or the token.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use jose_core::{JoseError, JwsAlgorithm, JwsHeader, KeySet, Validation, VerifyingKey};
use key_provider::{KeyBackend, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ProvisioningError, check_identifier, sanitize};

/// Default lifetime of an authorization code: 120 seconds (the guide's example).
pub const DEFAULT_TTL_SECS: u64 = 120;
/// Longest lifetime the signer accepts: 300 seconds (Thales' recommended maximum, "now + 5 minutes").
pub const MAX_TTL_SECS: u64 = 300;
/// Smallest RSA modulus the signer and verifier accept: keybound's one rule, [`key_provider::MIN_RSA_BITS`].
pub const MIN_RSA_BITS: usize = key_provider::MIN_RSA_BITS;
/// Longest `iss`, tokenId `sub` or `kid` accepted. An issuerCardRefId `sub` is held to the card data's
/// rule instead: at most [`crate::card::MAX_ISSUER_CARD_REF_ID_LEN`] (48) characters.
pub const MAX_IDENTIFIER_LEN: usize = 128;

/// The token requestor an authorization code is for (`aud`). Anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Audience {
    /// Google Pay.
    #[serde(rename = "GOOGLE_PAY")]
    GooglePay,
    /// Apple Pay.
    #[serde(rename = "APPLE_PAY")]
    ApplePay,
    /// Samsung Pay.
    #[serde(rename = "SAMSUNG_PAY")]
    SamsungPay,
}

impl Audience {
    /// Every audience, in a stable order.
    pub const ALL: [Self; 3] = [Self::GooglePay, Self::ApplePay, Self::SamsungPay];

    /// The value Thales expects in `aud`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GooglePay => "GOOGLE_PAY",
            Self::ApplePay => "APPLE_PAY",
            Self::SamsungPay => "SAMSUNG_PAY",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Audience {
    type Err = ProvisioningError;

    /// Exact, case-sensitive match on `GOOGLE_PAY`, `APPLE_PAY`, `SAMSUNG_PAY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ProvisioningError::UnknownAudience { value: sanitize(s) })
    }
}

/// What `sub` names: the card (push provisioning) or a token (lifecycle management). The caller says
/// which, so a tokenId is never mistaken for an issuerCardRefId.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// The issuer's reference of the card (`issuerCardRefId`; never the PAN), for push provisioning.
    IssuerCardRefId(String),
    /// The token's id (`tokenId`), for lifecycle operations.
    TokenId(String),
}

impl Subject {
    /// The `sub` claim value.
    #[must_use]
    pub fn value(&self) -> &str {
        match self {
            Self::IssuerCardRefId(v) | Self::TokenId(v) => v,
        }
    }

    /// `issuerCardRefId` or `tokenId`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IssuerCardRefId(_) => "issuerCardRefId",
            Self::TokenId(_) => "tokenId",
        }
    }
}

impl fmt::Debug for Subject {
    /// Shows which kind of subject, not its value (logs stay free of card and token references).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject::{}(…)", self.kind())
    }
}

/// One authorization code to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthCodeRequest {
    /// `sub`.
    pub subject: Subject,
    /// `aud`.
    pub audience: Audience,
    /// Lifetime in seconds; `None` uses the signer's default (120 s unless changed).
    pub ttl_secs: Option<u64>,
}

impl AuthCodeRequest {
    /// A request with the signer's default lifetime.
    #[must_use]
    pub fn new(subject: Subject, audience: Audience) -> Self {
        Self {
            subject,
            audience,
            ttl_secs: None,
        }
    }

    /// Sets the lifetime in seconds (1 to 300).
    #[must_use]
    pub fn ttl_secs(mut self, ttl: u64) -> Self {
        self.ttl_secs = Some(ttl);
        self
    }
}

/// The claims of an authorization code, serialized in the order of the Thales guide's example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuthCodeClaims {
    /// issuerId.
    pub iss: String,
    /// issuerCardRefId or tokenId.
    pub sub: String,
    /// The token requestor.
    pub aud: Audience,
    /// Unique id (UUID v4) when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
}

/// A signed authorization code. `Debug` hides the token: it is a bearer credential until it expires.
#[derive(Clone)]
pub struct AuthCode {
    token: String,
    claims: AuthCodeClaims,
    kid: String,
    subject_kind: &'static str,
}

impl AuthCode {
    /// The compact JWT.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The compact JWT, by value.
    #[must_use]
    pub fn into_string(self) -> String {
        self.token
    }

    /// The claims that were signed.
    #[must_use]
    pub fn claims(&self) -> &AuthCodeClaims {
        &self.claims
    }

    /// The header `kid`.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether `sub` is a tokenId (lifecycle operation) rather than an issuerCardRefId.
    #[must_use]
    pub fn is_for_token_id(&self) -> bool {
        self.subject_kind == "tokenId"
    }
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCode")
            .field("token", &"<redacted>")
            .field("iss", &self.claims.iss)
            .field("aud", &self.claims.aud)
            .field("kid", &self.kid)
            .field("sub", &self.subject_kind)
            .field("exp", &self.claims.exp)
            .finish()
    }
}

/// Checks that `key` is RSA of at least 2048 bits, for signing.
///
/// # Errors
/// [`ProvisioningError::UnsuitableKey`] for a key that is not RSA; [`ProvisioningError::Key`] with
/// [`KeyError::KeyTooSmall`](key_provider::KeyError::KeyTooSmall) for an RSA key under 2048 bits (the
/// message every keybound command and backend gives).
pub fn check_signing_key(key: &PublicKey) -> Result<(), ProvisioningError> {
    check_rs256_key(key, key_provider::KeyOperation::Sign)
}

fn check_rs256_key(
    key: &PublicKey,
    operation: key_provider::KeyOperation,
) -> Result<(), ProvisioningError> {
    match key {
        PublicKey::Rsa { .. } => Ok(key_provider::check_rsa_size(key, operation)?),
        _ => Err(ProvisioningError::UnsuitableKey {
            key: key.describe(),
            reason: "RS256 needs an RSA key",
        }),
    }
}

fn check_ttl(ttl: u64) -> Result<(), ProvisioningError> {
    match ttl {
        0 => Err(ProvisioningError::TtlZero),
        t if t > MAX_TTL_SECS => Err(ProvisioningError::TtlTooLong {
            ttl: t,
            max: MAX_TTL_SECS,
        }),
        _ => Ok(()),
    }
}

/// Signs authorization codes for one issuer with one key. Cheap to share across threads (`&self` methods,
/// the key is an `Arc`).
#[derive(Debug, Clone)]
pub struct AuthCodeSigner {
    key: Arc<dyn KeyBackend>,
    issuer_id: String,
    kid: String,
    default_ttl: u64,
    jti: bool,
}

impl AuthCodeSigner {
    /// A signer for `issuer_id` with `key`: `kid` defaults to the key's RFC 7638 thumbprint, ttl to 120 s,
    /// `jti` on.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use provisioning_signer::{Audience, AuthCodeRequest, AuthCodeSigner, Subject};
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("issuer.pem");
    /// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
    /// // The issuer key: a file here; `pkcs11:token=…;object=…?module-path=…&pin-source=file:…` in production.
    /// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
    /// let signer = AuthCodeSigner::new(key, "ACMEBANK01")?.with_kid("kid-agreed-at-onboarding")?;
    /// let request = AuthCodeRequest::new(Subject::IssuerCardRefId("card-ref-000123".into()), Audience::GooglePay);
    /// let code = signer.sign(&request)?;
    /// assert_eq!(code.kid(), "kid-agreed-at-onboarding");
    /// assert_eq!(code.claims().iss, "ACMEBANK01");
    /// assert_eq!(code.claims().exp - code.claims().iat, 120);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitableKey`] unless the key is RSA, [`ProvisioningError::Key`] for an RSA key
    /// under 2048 bits ([`check_signing_key`]); [`ProvisioningError::InvalidField`] for an empty or malformed issuer id.
    pub fn new(
        key: Arc<dyn KeyBackend>,
        issuer_id: impl Into<String>,
    ) -> Result<Self, ProvisioningError> {
        check_signing_key(key.public_key())?;
        let issuer_id = issuer_id.into();
        check_identifier("iss", &issuer_id, MAX_IDENTIFIER_LEN)?;
        let kid = jose_core::thumbprint(key.public_key());
        Ok(Self {
            key,
            issuer_id,
            kid,
            default_ttl: DEFAULT_TTL_SECS,
            jti: true,
        })
    }

    /// Uses `kid` (the value agreed with Thales at onboarding) instead of the thumbprint.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] for an empty or malformed kid.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, ProvisioningError> {
        let kid = kid.into();
        check_identifier("kid", &kid, MAX_IDENTIFIER_LEN)?;
        self.kid = kid;
        Ok(self)
    }

    /// Changes the default lifetime (1 to 300 s).
    ///
    /// # Errors
    /// [`ProvisioningError::TtlTooLong`] or [`ProvisioningError::TtlZero`].
    pub fn with_default_ttl(mut self, ttl_secs: u64) -> Result<Self, ProvisioningError> {
        check_ttl(ttl_secs)?;
        self.default_ttl = ttl_secs;
        Ok(self)
    }

    /// Turns the `jti` claim on (default) or off.
    #[must_use]
    pub fn with_jti(mut self, on: bool) -> Self {
        self.jti = on;
        self
    }

    /// The issuer id (`iss`).
    #[must_use]
    pub fn issuer_id(&self) -> &str {
        &self.issuer_id
    }

    /// The header `kid`.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing key.
    #[must_use]
    pub fn key(&self) -> &Arc<dyn KeyBackend> {
        &self.key
    }

    /// The JWS header every code carries.
    fn header(&self) -> JwsHeader {
        JwsHeader::new(JwsAlgorithm::RS256)
            .typ("JWT")
            .kid(self.kid.clone())
    }

    /// Checks the request and builds the claims for issue time `now`.
    ///
    /// # Errors
    /// As [`AuthCodeSigner::sign`], before any signing.
    pub fn claims_at(
        &self,
        request: &AuthCodeRequest,
        now: u64,
    ) -> Result<AuthCodeClaims, ProvisioningError> {
        match &request.subject {
            // The same rule as the card data's issuerCardRefId, which must equal this `sub`.
            Subject::IssuerCardRefId(v) => {
                crate::card::check_issuer_card_ref_id(v).map_err(|e| match e {
                    ProvisioningError::InvalidField { reason, .. } => {
                        ProvisioningError::InvalidField {
                            field: "sub",
                            reason: format!("{reason} (the issuerCardRefId rule of the card data)"),
                        }
                    }
                    other => other,
                })?;
            }
            Subject::TokenId(v) => check_identifier("sub", v, MAX_IDENTIFIER_LEN)?,
        }
        // An authorization code is a bearer token that travels through the wallet flow: a card number in it
        // would leak the PAN to everyone who sees the code.
        if crate::card::looks_like_pan(request.subject.value()) {
            return Err(ProvisioningError::field(
                "sub",
                match request.subject {
                    Subject::IssuerCardRefId(_) => {
                        "looks like a card number (13 to 19 digits passing the Luhn check); `sub` is the \
                         issuerCardRefId, the issuer's own reference of the card, never the PAN"
                    }
                    Subject::TokenId(_) => {
                        "looks like a card number (13 to 19 digits passing the Luhn check); for lifecycle \
                         operations `sub` is the Thales tokenId, never a card number"
                    }
                },
            ));
        }
        let ttl = request.ttl_secs.unwrap_or(self.default_ttl);
        check_ttl(ttl)?;
        Ok(AuthCodeClaims {
            iss: self.issuer_id.clone(),
            sub: request.subject.value().to_owned(),
            aud: request.audience,
            jti: self.jti.then(|| uuid::Uuid::new_v4().to_string()),
            exp: now + ttl,
            iat: now,
        })
    }

    /// Signs one authorization code, issued now. Blocking: with a PKCS#11 key this waits for the token; call
    /// it from a plain thread, or use [`AuthCodeSigner::sign_async`] from async code.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] for an empty or malformed `sub`, an issuerCardRefId over 48
    /// characters ([`crate::card::check_issuer_card_ref_id`], the card data's rule), or a `sub` that looks like
    /// a card number (13 to 19 digits passing the Luhn check: `sub` is the issuerCardRefId or tokenId, never a
    /// PAN),
    /// [`ProvisioningError::TtlTooLong`],
    /// [`ProvisioningError::TtlZero`], or the backend's failure as [`ProvisioningError::Jose`].
    pub fn sign(&self, request: &AuthCodeRequest) -> Result<AuthCode, ProvisioningError> {
        self.sign_at(request, jose_core::jwt::now())
    }

    /// Signs one authorization code with issue time `now` (seconds since the epoch), for tests and for
    /// callers with their own clock.
    ///
    /// # Errors
    /// As [`AuthCodeSigner::sign`].
    pub fn sign_at(
        &self,
        request: &AuthCodeRequest,
        now: u64,
    ) -> Result<AuthCode, ProvisioningError> {
        let started = Instant::now();
        let result = self.claims_at(request, now).and_then(|claims| {
            Ok((
                jose_core::jwt::sign(self.key.as_ref(), &self.header(), &claims)?,
                claims,
            ))
        });
        self.finish(request, result, started)
    }

    /// Async variant of [`AuthCodeSigner::sign`]: a PKCS#11 key signs on tokio's blocking pool, never on an
    /// async worker thread.
    ///
    /// # Errors
    /// As [`AuthCodeSigner::sign`].
    pub async fn sign_async(
        &self,
        request: &AuthCodeRequest,
    ) -> Result<AuthCode, ProvisioningError> {
        let started = Instant::now();
        let result = match self.claims_at(request, jose_core::jwt::now()) {
            Ok(claims) => {
                match jose_core::jwt::sign_async(self.key.as_ref(), &self.header(), &claims).await {
                    Ok(token) => Ok((token, claims)),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        };
        self.finish(request, result, started)
    }

    fn finish(
        &self,
        request: &AuthCodeRequest,
        result: Result<(String, AuthCodeClaims), ProvisioningError>,
        started: Instant,
    ) -> Result<AuthCode, ProvisioningError> {
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok((token, claims)) => {
                tracing::debug!(
                    issuer_id = %self.issuer_id,
                    aud = request.audience.as_str(),
                    kid = %self.kid,
                    subject_kind = request.subject.kind(),
                    outcome = "signed",
                    latency_us,
                    "authorization code signed"
                );
                Ok(AuthCode {
                    token,
                    claims,
                    kid: self.kid.clone(),
                    subject_kind: request.subject.kind(),
                })
            }
            // The backend failing (token gone, session timeout) is an operational event; a request the
            // rules refuse is the caller's to report, and batch mode reports it in its output line.
            Err(e @ (ProvisioningError::Jose(_) | ProvisioningError::Key(_))) => {
                tracing::warn!(
                    issuer_id = %self.issuer_id,
                    aud = request.audience.as_str(),
                    kid = %self.kid,
                    subject_kind = request.subject.kind(),
                    outcome = "failed",
                    latency_us,
                    error = %e,
                    "authorization code not signed"
                );
                Err(e)
            }
            Err(e) => {
                tracing::debug!(
                    issuer_id = %self.issuer_id,
                    aud = request.audience.as_str(),
                    kid = %self.kid,
                    subject_kind = request.subject.kind(),
                    outcome = "refused",
                    latency_us,
                    error = %e,
                    "authorization code refused"
                );
                Err(e)
            }
        }
    }
}

/// A verified authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedAuthCode {
    /// The header `kid`.
    pub kid: String,
    /// The claims.
    pub claims: AuthCodeClaims,
}

/// Checks an authorization code against the issuer's public key (or certificate) and the rules the signer
/// follows: signature (RS256 only), header exactly `typ`/`alg`/`kid`, claims exactly
/// `iss`/`sub`/`aud`/`iat`/`exp` and optional `jti`, a known audience, `exp` − `iat` between 1 and 300 s,
/// not expired, not issued in the future (both with leeway).
#[derive(Debug, Clone)]
pub struct AuthCodeVerifier {
    key: PublicKey,
    issuer_id: Option<String>,
    kid: Option<String>,
    audience: Option<Audience>,
    subject: Option<String>,
    leeway: u64,
}

impl AuthCodeVerifier {
    /// A verifier for codes signed by the private half of `key`, with 60 s clock leeway.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use provisioning_signer::{Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, Subject};
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("issuer.pem");
    /// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
    /// // The issuer key: a file here; `pkcs11:token=…;object=…?module-path=…&pin-source=file:…` in production.
    /// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
    /// # let signer = AuthCodeSigner::new(key.clone(), "ACMEBANK01")?;
    /// # let code = signer.sign(&AuthCodeRequest::new(Subject::TokenId("DNITHE000001".into()), Audience::ApplePay))?;
    /// // What Thales does with a code: the issuer's public key (or certificate), then every rule.
    /// let verifier = AuthCodeVerifier::new(key.public_key().clone())?
    ///     .issuer_id("ACMEBANK01")
    ///     .audience(Audience::ApplePay);
    /// let verified = verifier.verify(code.as_str())?;
    /// assert_eq!(verified.claims.sub, "DNITHE000001");
    /// assert!(verifier.clone().audience(Audience::SamsungPay).verify(code.as_str()).is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitableKey`] unless the key is RSA, [`ProvisioningError::Key`] for an RSA key
    /// under 2048 bits.
    pub fn new(key: PublicKey) -> Result<Self, ProvisioningError> {
        check_rs256_key(&key, key_provider::KeyOperation::Verify)?;
        Ok(Self {
            key,
            issuer_id: None,
            kid: None,
            audience: None,
            subject: None,
            leeway: 60,
        })
    }

    /// Requires `iss` to equal `issuer_id`.
    #[must_use]
    pub fn issuer_id(mut self, issuer_id: impl Into<String>) -> Self {
        self.issuer_id = Some(issuer_id.into());
        self
    }

    /// Requires the header `kid` to equal `kid`.
    #[must_use]
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Requires `aud` to be `audience`.
    #[must_use]
    pub fn audience(mut self, audience: Audience) -> Self {
        self.audience = Some(audience);
        self
    }

    /// Requires `sub` to equal `sub`.
    #[must_use]
    pub fn subject(mut self, sub: impl Into<String>) -> Self {
        self.subject = Some(sub.into());
        self
    }

    /// Sets the clock leeway in seconds (default 60).
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Verifies `token`.
    ///
    /// # Errors
    /// [`ProvisioningError::Rejected`] saying which rule failed (the token itself is never quoted).
    pub fn verify(&self, token: &str) -> Result<VerifiedAuthCode, ProvisioningError> {
        let keys = KeySet::single(VerifyingKey::new(self.key.clone()));
        let mut validation = Validation::new()
            .algorithms(&[JwsAlgorithm::RS256])
            .required_claims(&["iss", "sub", "aud", "exp", "iat"])
            .leeway(self.leeway);
        if let Some(iss) = &self.issuer_id {
            validation = validation.issuer(iss.clone());
        }
        if let Some(aud) = self.audience {
            validation = validation.audience(aud.as_str());
        }
        if let Some(sub) = &self.subject {
            validation = validation.subject(sub.clone());
        }
        let verified =
            jose_core::jwt::verify(token, &keys, &validation).map_err(|e: JoseError| {
                ProvisioningError::Rejected {
                    reason: e.to_string(),
                    source: Some(e),
                }
            })?;

        // Header: exactly typ, alg, kid.
        for name in verified.header.keys() {
            if !matches!(name.as_str(), "typ" | "alg" | "kid") {
                return Err(ProvisioningError::rejected(format!(
                    "unexpected header member {:?} (only typ, alg and kid are allowed)",
                    sanitize(name)
                )));
            }
        }
        if verified.header.get("typ").and_then(Value::as_str) != Some("JWT") {
            return Err(ProvisioningError::rejected("header typ must be \"JWT\""));
        }
        let kid = match verified.header.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            _ => {
                return Err(ProvisioningError::rejected(
                    "header kid is missing (it is agreed at onboarding)",
                ));
            }
        };
        if let Some(expected) = &self.kid {
            if &kid != expected {
                return Err(ProvisioningError::rejected(
                    "header kid is not the agreed kid",
                ));
            }
        }

        // Claims: exactly iss, sub, aud, iat, exp and optionally jti, with the right types.
        for name in verified.claims.keys() {
            if !matches!(name.as_str(), "iss" | "sub" | "aud" | "iat" | "exp" | "jti") {
                return Err(ProvisioningError::rejected(format!(
                    "unexpected claim {:?} (only iss, sub, aud, iat, exp and jti are allowed)",
                    sanitize(name)
                )));
            }
        }
        let string_claim = |name: &'static str| -> Result<String, ProvisioningError> {
            match verified.claims.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(ProvisioningError::rejected(format!(
                    "claim {name} must be a non-empty string"
                ))),
            }
        };
        let int_claim = |name: &'static str| -> Result<u64, ProvisioningError> {
            verified
                .claims
                .get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    ProvisioningError::rejected(format!(
                        "claim {name} must be an integer NumericDate"
                    ))
                })
        };
        let iss = string_claim("iss")?;
        let sub = string_claim("sub")?;
        let aud: Audience = match verified.claims.get("aud") {
            Some(Value::String(s)) => s.parse().map_err(|_| {
                ProvisioningError::rejected(
                    "claim aud must be GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY",
                )
            })?,
            _ => {
                return Err(ProvisioningError::rejected(
                    "claim aud must be a single string",
                ));
            }
        };
        let jti = match verified.claims.get("jti") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(ProvisioningError::rejected(
                    "claim jti must be a non-empty string",
                ));
            }
        };
        let iat = int_claim("iat")?;
        let exp = int_claim("exp")?;
        let ttl = exp.saturating_sub(iat);
        if ttl == 0 {
            return Err(ProvisioningError::rejected("exp must be after iat"));
        }
        if ttl > MAX_TTL_SECS {
            return Err(ProvisioningError::rejected(format!(
                "lifetime exp - iat is {ttl} s, over the {MAX_TTL_SECS} s maximum"
            )));
        }
        Ok(VerifiedAuthCode {
            kid,
            claims: AuthCodeClaims {
                iss,
                sub,
                aud,
                jti,
                exp,
                iat,
            },
        })
    }
}

//! Unified Checkout encrypted payment credentials (EPC): for Click to Pay and similar payment types the
//! transient token's `paymentCredentialsReference` maps a portfolio (`{"uc_agnostic_portfolio_valid":
//! "Wie23cAKtFnQeIzjx4EQx"}`) to the `jti` of a compact JWE encrypted to the PSP's own key. Its protected header
//! (the "EPC Token Payload" of Cybersource's transient-token document) is
//! `{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":"20230514-draft-psp-encrypt","aud":<portfolio>,
//! "sub":…,"exp":…,"jti":…}`; its plaintext is a nested JWT carrying the credentials.
//!
//! [`open_credentials`] checks, in this order and before anything is decrypted: the header shape (`alg`
//! RSA-OAEP-256, `enc` A256GCM, `cty` JWT, no `zip`/`crit`), `exp` (required, not passed beyond the leeway),
//! `aud` = the expected portfolio, and the binding to a **verified** transient token (the header `jti` must be
//! the token's `paymentCredentialsReference` entry for that portfolio). Only then is the content key
//! unwrapped by [`KeyBackend::decrypt`] (the PSP key may be in an HSM) and the content opened. The nested JWT
//! is verified when the caller gives its issuer's keys ([`OpenOptions::issuer_keys`]); otherwise it is
//! returned marked [`CredentialsSignature::Unverified`]. The documents show no claims of the nested JWT, so
//! only the registered JWT claims are typed ([`CredentialsClaims`]); every other member is kept.
//!
//! The credentials are secret: [`PaymentCredentials`] redacts them in `Debug`, keeps the nested JWT in a
//! [`Sensitive`] buffer, and no error or log line carries them (logs: portfolio, kid, outcome).

use std::fmt;
use std::time::Duration;

use jose_core::jwe::{self, DecryptOptions};
use jose_core::{ContentEncryption, JwsAlgorithm, KeyManagementAlgorithm, KeySet, Validation};
use key_provider::KeyBackend;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{FlexError, sanitize};
use crate::sensitive::Sensitive;
use crate::transient_token::VerifiedTransientToken;

const WHAT: &str = "encrypted payment credentials";

/// The key-management algorithm of EPC tokens.
pub const EPC_ALG: KeyManagementAlgorithm = KeyManagementAlgorithm::RsaOaep256;
/// The content encryption of EPC tokens.
pub const EPC_ENC: ContentEncryption = ContentEncryption::A256GCM;

/// How to open an EPC token.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The portfolio the credentials must be for (the header `aud`). `None`: the transient token's only
    /// `paymentCredentialsReference` entry (an error if it has several).
    pub portfolio: Option<String>,
    /// Clock leeway for the header `exp` and the nested JWT's `exp`/`nbf`/`iat` (default 0; at most 300 s).
    pub leeway: Duration,
    /// The nested JWT issuer's keys (a JWKS, a JWK or a public key). `None`: the nested JWT is returned
    /// unverified, and marked so.
    pub issuer_keys: Option<KeySet>,
}

impl OpenOptions {
    /// No portfolio, no leeway, no issuer keys.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Expect this portfolio.
    #[must_use]
    pub fn portfolio(mut self, portfolio: impl Into<String>) -> Self {
        self.portfolio = Some(portfolio.into());
        self
    }

    /// Clock leeway.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Verify the nested JWT with these keys.
    #[must_use]
    pub fn issuer_keys(mut self, keys: KeySet) -> Self {
        self.issuer_keys = Some(keys);
        self
    }
}

/// The protected header of an EPC JWE (checked before decryption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpcHeader {
    /// `RSA-OAEP-256`.
    pub alg: String,
    /// `A256GCM`.
    pub enc: String,
    /// `JWT`.
    pub cty: String,
    /// The PSP's key (`20230514-draft-psp-encrypt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The portfolio (`uc_agnostic_portfolio_valid`).
    pub aud: String,
    /// Subject (`uc_agnostic_valid001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry.
    pub exp: u64,
    /// The id the transient token's `paymentCredentialsReference` names.
    pub jti: String,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The registered claims of the nested JWT; every other member is kept in `extra`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CredentialsClaims {
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience (a string or a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Everything else: the credentials themselves (secret).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for CredentialsClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsClaims")
            .field("iss", &self.iss)
            .field("exp", &self.exp)
            .field("members", &self.extra.len())
            .finish_non_exhaustive()
    }
}

/// Whether the nested JWT's signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsSignature {
    /// Verified with one of [`OpenOptions::issuer_keys`].
    Verified {
        /// The algorithm.
        alg: JwsAlgorithm,
        /// The header `kid`, if any.
        kid: Option<String>,
    },
    /// Not checked (no issuer keys were given): the credentials are only as trustworthy as the channel.
    Unverified,
}

impl CredentialsSignature {
    /// Whether the signature was verified.
    #[must_use]
    pub fn is_verified(&self) -> bool {
        matches!(self, Self::Verified { .. })
    }
}

/// Opened payment credentials.
#[derive(Clone)]
pub struct PaymentCredentials {
    header: EpcHeader,
    jwt: Sensitive,
    jwt_header: Map<String, Value>,
    claims: CredentialsClaims,
    raw_claims: Map<String, Value>,
    signature: CredentialsSignature,
}

impl fmt::Debug for PaymentCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentCredentials")
            .field("header", &self.header)
            .field("signature", &self.signature)
            .field("claims", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl PaymentCredentials {
    /// The EPC JWE's protected header.
    #[must_use]
    pub fn header(&self) -> &EpcHeader {
        &self.header
    }

    /// The nested JWT (secret).
    #[must_use]
    pub fn jwt(&self) -> &Sensitive {
        &self.jwt
    }

    /// The nested JWT's header.
    #[must_use]
    pub fn jwt_header(&self) -> &Map<String, Value> {
        &self.jwt_header
    }

    /// The typed claims (secret).
    #[must_use]
    pub fn claims(&self) -> &CredentialsClaims {
        &self.claims
    }

    /// The claims exactly as in the nested JWT (secret).
    #[must_use]
    pub fn raw_claims(&self) -> &Map<String, Value> {
        &self.raw_claims
    }

    /// Whether the nested JWT was verified.
    #[must_use]
    pub fn signature(&self) -> &CredentialsSignature {
        &self.signature
    }
}

fn rejected(reason: impl Into<String>) -> FlexError {
    FlexError::Credentials(reason.into())
}

fn header_str<'a>(header: &'a Map<String, Value>, name: &str) -> Result<&'a str, FlexError> {
    match header.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FlexError::malformed(
            WHAT,
            format!("header `{name}` is not a string"),
        )),
        None => Err(FlexError::malformed(
            WHAT,
            format!("header has no `{name}`"),
        )),
    }
}

/// Checks the protected header (shape, `exp`, `aud`, binding to the transient token). Nothing is decrypted.
fn check_header(
    header: &Map<String, Value>,
    token: &VerifiedTransientToken,
    options: &OpenOptions,
    now: u64,
) -> Result<EpcHeader, FlexError> {
    let alg = header_str(header, "alg")?;
    if alg != EPC_ALG.as_str() {
        return Err(FlexError::malformed(
            WHAT,
            format!(
                "`alg` is {:?}; EPC tokens use {}",
                sanitize(alg),
                EPC_ALG.as_str()
            ),
        ));
    }
    let enc = header_str(header, "enc")?;
    if enc != EPC_ENC.as_str() {
        return Err(FlexError::malformed(
            WHAT,
            format!(
                "`enc` is {:?}; EPC tokens use {}",
                sanitize(enc),
                EPC_ENC.as_str()
            ),
        ));
    }
    let cty = header_str(header, "cty")?;
    if !cty.eq_ignore_ascii_case("JWT") {
        return Err(FlexError::malformed(
            WHAT,
            format!(
                "`cty` is {:?}; EPC tokens carry a nested JWT (`cty` JWT)",
                sanitize(cty)
            ),
        ));
    }
    let parsed: EpcHeader = serde_json::from_value(Value::Object(header.clone())).map_err(|e| {
        FlexError::malformed(
            WHAT,
            format!("header: {}", crate::capture_context::claim_error(&e)),
        )
    })?;
    let leeway = options.leeway.as_secs();
    if now > parsed.exp.saturating_add(leeway) {
        return Err(FlexError::Expired {
            what: WHAT,
            ago_secs: now - parsed.exp,
            leeway_secs: leeway,
        });
    }
    let references = token
        .claims()
        .payment_credentials_reference
        .as_ref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            rejected(
                "the transient token has no paymentCredentialsReference, so no EPC token belongs to it",
            )
        })?;
    let portfolio = match &options.portfolio {
        Some(p) => p.clone(),
        None => {
            let mut names = references.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => only.clone(),
                _ => {
                    return Err(rejected(format!(
                        "the transient token references {} portfolios; name the expected one",
                        references.len()
                    )));
                }
            }
        }
    };
    if parsed.aud != portfolio {
        return Err(rejected(format!(
            "`aud` is {:?}, not the expected portfolio {:?}",
            sanitize(&parsed.aud),
            sanitize(&portfolio)
        )));
    }
    let Some(reference) = references.get(&portfolio) else {
        return Err(rejected(format!(
            "the transient token's paymentCredentialsReference has no entry for portfolio {:?}",
            sanitize(&portfolio)
        )));
    };
    if reference.as_str() != Some(parsed.jti.as_str()) {
        return Err(rejected(format!(
            "`jti` {:?} is not the transient token's paymentCredentialsReference for {:?}; these credentials \
             belong to another payment",
            sanitize(&parsed.jti),
            sanitize(&portfolio)
        )));
    }
    Ok(parsed)
}

/// Opens an EPC JWE for a verified transient token: header checks, binding, decryption through `key`, and the
/// nested JWT (verified with [`OpenOptions::issuer_keys`] when given).
///
/// # Errors
/// [`FlexError::Malformed`] (structure, `alg`/`enc`/`cty`), [`FlexError::Expired`],
/// [`FlexError::Credentials`] (wrong portfolio, not bound to the token), [`FlexError::Jose`] (decryption
/// failed, the nested JWT's signature or claims; [`jose_core::JoseError::Key`] for a backend failure).
pub fn open_credentials(
    epc: &str,
    key: &dyn KeyBackend,
    token: &VerifiedTransientToken,
    options: &OpenOptions,
) -> Result<PaymentCredentials, FlexError> {
    let epc = crate::capture_context::normalize_compact(epc);
    let header = precheck(&epc, token, options)?;
    let decrypted = jwe::decrypt(&epc, key, &decrypt_options());
    finish(header, decrypted, options)
}

/// Async variant of [`open_credentials`]: the backend's blocking work runs off the async worker threads.
///
/// # Errors
/// As [`open_credentials`].
pub async fn open_credentials_async(
    epc: &str,
    key: &dyn KeyBackend,
    token: &VerifiedTransientToken,
    options: &OpenOptions,
) -> Result<PaymentCredentials, FlexError> {
    let epc = crate::capture_context::normalize_compact(epc);
    let header = precheck(&epc, token, options)?;
    let decrypted = jwe::decrypt_async(&epc, key, &decrypt_options()).await;
    finish(header, decrypted, options)
}

fn decrypt_options() -> DecryptOptions {
    let mut options = DecryptOptions::default();
    options.algorithms = vec![EPC_ALG];
    options.encryptions = vec![EPC_ENC];
    options
}

fn precheck(
    epc: &str,
    token: &VerifiedTransientToken,
    options: &OpenOptions,
) -> Result<EpcHeader, FlexError> {
    if options.leeway.as_secs() > jose_core::jwt::MAX_LEEWAY_SECS {
        return Err(FlexError::Config(format!(
            "a clock leeway of {} s is over the {} s maximum",
            options.leeway.as_secs(),
            jose_core::jwt::MAX_LEEWAY_SECS
        )));
    }
    // The protected header is read first, so that a JWE of the wrong shape never reaches the key.
    let parts: Vec<&str> = epc.split('.').collect();
    if parts.len() != 5 {
        return Err(FlexError::malformed(
            WHAT,
            format!(
                "expected a compact JWE (5 dot-separated parts), found {} parts",
                parts.len()
            ),
        ));
    }
    let header_bytes = jose_core::b64::decode("EPC header", parts[0])?;
    let header = jose_core::json::parse_object("EPC header", &header_bytes)?;
    let checked = check_header(&header, token, options, jose_core::jwt::now());
    match &checked {
        Ok(h) => {
            tracing::debug!(portfolio = %sanitize(&h.aud), kid = ?h.kid.as_deref().map(sanitize), "EPC header accepted");
        }
        Err(e) => tracing::warn!(outcome = %e, "EPC token rejected before decryption"),
    }
    // The structural checks of jose-core (part sizes, zip, crit) run here too, still before any decryption.
    jwe::parse(epc, &decrypt_options())?;
    checked
}

fn finish(
    header: EpcHeader,
    decrypted: Result<jwe::Decrypted, jose_core::JoseError>,
    options: &OpenOptions,
) -> Result<PaymentCredentials, FlexError> {
    let decrypted = decrypted.inspect_err(|e| {
        tracing::warn!(portfolio = %sanitize(&header.aud), outcome = %e, "EPC token not decrypted");
    })?;
    let text = std::str::from_utf8(&decrypted.plaintext)
        .map_err(|_| FlexError::malformed(WHAT, "the decrypted content is not text"))?;
    let jwt = Sensitive::from(text.trim());
    let (jwt_header, raw_claims, signature) = match &options.issuer_keys {
        Some(keys) => {
            let mut validation = Validation::new()
                .algorithms(&JwsAlgorithm::ALL)
                .leeway(options.leeway.as_secs());
            validation.required_claims = Vec::new();
            let verified = jose_core::jwt::verify(jwt.expose(), keys, &validation)?;
            let kid = verified
                .header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let signature = CredentialsSignature::Verified {
                alg: verified.alg,
                kid,
            };
            (verified.header, verified.claims, signature)
        }
        None => {
            let (h, c) = jose_core::jwt::decode_unverified(jwt.expose())?;
            (h, c, CredentialsSignature::Unverified)
        }
    };
    let claims: CredentialsClaims = serde_json::from_value(Value::Object(raw_claims.clone()))
        // serde's message could quote a value: this one names the claims only.
        .map_err(|_| {
            FlexError::malformed(
                WHAT,
                "a registered claim of the nested JWT (iss, sub, aud, iat, nbf, exp, jti) has the wrong type",
            )
        })?;
    if !signature.is_verified() {
        // Even unverified, expired credentials are not handed out.
        let leeway = options.leeway.as_secs();
        let now = jose_core::jwt::now();
        if let Some(exp) = claims.exp.filter(|exp| now > exp.saturating_add(leeway)) {
            return Err(FlexError::Expired {
                what: "nested credentials JWT",
                ago_secs: now - exp,
                leeway_secs: leeway,
            });
        }
    }
    tracing::info!(portfolio = %sanitize(&header.aud), kid = ?header.kid.as_deref().map(sanitize), verified = signature.is_verified(), "EPC token opened");
    Ok(PaymentCredentials {
        header,
        jwt,
        jwt_header,
        claims,
        raw_claims,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transient_token::{TransientToken, TransientTokenClaims};

    const SEED_EPC: &str = include_str!("../tests/fixtures/seed001_epc.jwe");
    const SEED_TOKEN: &str = include_str!("../tests/fixtures/seed001_transient_token.jwt");

    fn seed_token() -> VerifiedTransientToken {
        let token = crate::capture_context::normalize_compact(SEED_TOKEN);
        let payload = jose_core::b64::decode("claims", token.split('.').nth(1).unwrap()).unwrap();
        let claims = TransientTokenClaims::from_json(&payload).unwrap();
        VerifiedTransientToken {
            token: TransientToken::new(&token),
            kid: "seed".into(),
            alg: JwsAlgorithm::RS256,
            claims,
            raw_claims: Map::new(),
        }
    }

    fn seed_header() -> Map<String, Value> {
        let epc = crate::capture_context::normalize_compact(SEED_EPC);
        let bytes = jose_core::b64::decode("header", epc.split('.').next().unwrap()).unwrap();
        jose_core::json::parse_object("header", &bytes).unwrap()
    }

    /// The seed document's own EPC token and transient token: the header is accepted and bound while it was
    /// valid, expired after its `exp`, and refused for another portfolio or another token.
    #[test]
    fn seed_epc_header_is_bound_to_the_seed_transient_token() {
        let token = seed_token();
        let header = seed_header();
        let issued = token.claims().iat;
        let checked = check_header(&header, &token, &OpenOptions::new(), issued + 60).unwrap();
        assert_eq!(checked.aud, "uc_agnostic_portfolio_valid");
        assert_eq!(checked.jti, "Wie23cAKtFnQeIzjx4EQx");
        assert_eq!(checked.kid.as_deref(), Some("20230514-draft-psp-encrypt"));
        assert_eq!(checked.sub.as_deref(), Some("uc_agnostic_valid001"));
        assert!(matches!(
            check_header(&header, &token, &OpenOptions::new(), checked.exp + 1),
            Err(FlexError::Expired { .. })
        ));
        let other = OpenOptions::new().portfolio("another_portfolio");
        assert!(matches!(
            check_header(&header, &token, &other, issued),
            Err(FlexError::Credentials(_))
        ));
        let mut moved = header.clone();
        moved.insert("jti".into(), Value::from("AnotherReference0000"));
        assert!(matches!(
            check_header(&moved, &token, &OpenOptions::new(), issued),
            Err(FlexError::Credentials(_))
        ));
        for (name, value) in [("alg", "RSA-OAEP"), ("enc", "A128GCM"), ("cty", "JSON")] {
            let mut bent = header.clone();
            bent.insert(name.into(), Value::from(value));
            assert!(
                matches!(
                    check_header(&bent, &token, &OpenOptions::new(), issued),
                    Err(FlexError::Malformed { .. })
                ),
                "{name}"
            );
        }
        let mut no_exp = header;
        no_exp.remove("exp");
        assert!(check_header(&no_exp, &token, &OpenOptions::new(), issued).is_err());
    }
}

//! [`FlexClient`]: the four steps of a Flex integration against one [`Environment`].
//!
//! 1. [`FlexClient::request_capture_context`]: merchant-authenticated POST to a sessions endpoint; the answer
//!    is verified before it is returned.
//! 2. [`FlexClient::verify_capture_context`]: `kid` required, RS256/384/512 only, Flex's key fetched from
//!    `/flex/v2/public-keys/{kid}` (cached per environment + kid, single-flight; when the key held fails, a
//!    newer one is looked for — at most one fetch per kid per cooldown — and replaces it only once it
//!    verifies: see [`KeyCache`]), moduli under 2048 bits refused, `exp`/`iat` checked with a small leeway (which the
//!    official server SDKs do not do).
//! 3. [`FlexClient::tokenize`]: the context is re-checked for expiry and its tokens origin against the
//!    [`OriginPolicy`] *before* any card data is encrypted; then `{"data","context","index":0}` is encrypted
//!    (RSA-OAEP + A256GCM, `kid` = `flx.jwk.kid`) to `flx.jwk` and POSTed as `{"keyId":"<JWE>"}`; a `Digest`
//!    response header, when present, must match the body.
//! 4. [`FlexClient::verify_transient_token`]: `kid` must equal `flx.jwk.kid`, the signature must verify with
//!    `flx.jwk` (or, only if configured, with `/flex/v2/public-keys/{kid}`), `exp`/`iat` are checked.
//!
//! Logs carry kid, environment, outcome and latency only.

use std::sync::Arc;
use std::time::SystemTime;
use std::time::{Duration, Instant};

use jose_core::jwe::EncryptOptions;
use jose_core::jws::{self, UnverifiedJws, VerifyOptions};
use jose_core::{ContentEncryption, JoseError, Jwk, JwsAlgorithm, KeyManagementAlgorithm};
use key_provider::PublicKey;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::capture_context::{CaptureContext, CaptureContextClaims, normalize_compact};
use crate::data::TokenizeData;
use crate::environment::Environment;
use crate::error::{FlexError, sanitize};
use crate::http::{Http, HttpConfig, status_hint};
use crate::key_cache::{Failure, FetchFailure, KeyCache};
use crate::merchant_auth::{MerchantAuth, body_digest};
use crate::mle::{Mle, ResponseMle};
use crate::origin::OriginPolicy;
use crate::transient_token::{TransientToken, TransientTokenClaims, VerifiedTransientToken};

/// The signature algorithms Flex tokens may use.
pub const FLEX_ALGORITHMS: [JwsAlgorithm; 3] = [
    JwsAlgorithm::RS256,
    JwsAlgorithm::RS384,
    JwsAlgorithm::RS512,
];

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Default clock leeway for `exp` / `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

const CC: &str = "capture context";
const TT: &str = "transient token";

/// Where the tokens request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokensEndpoint {
    /// `flx.origin` + `flx.path` of the capture context, as the official iOS client does (default). The origin
    /// must pass the [`OriginPolicy`].
    #[default]
    CaptureContextOrigin,
    /// `/flex/v2/token` on the API host of the environment, as one page of Cybersource's documentation shows.
    ApiHost,
}

/// A sessions endpoint that issues capture contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEndpoint {
    /// `POST /microform/v2/sessions` (Microform Integration v2).
    Microform,
    /// `POST /flex/v2/sessions` (Flex API; body `{"fields": …}`).
    Flex,
    /// `POST /up/v1/capture-contexts` (Unified Checkout).
    UnifiedPayments,
    /// `POST /uc/v1/sessions` (Unified Checkout sessions).
    UnifiedCheckout,
}

impl SessionEndpoint {
    /// Every endpoint.
    pub const ALL: [Self; 4] = [
        Self::Microform,
        Self::Flex,
        Self::UnifiedPayments,
        Self::UnifiedCheckout,
    ];

    /// The request path.
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            Self::Microform => "/microform/v2/sessions",
            Self::Flex => "/flex/v2/sessions",
            Self::UnifiedPayments => "/up/v1/capture-contexts",
            Self::UnifiedCheckout => "/uc/v1/sessions",
        }
    }

    /// A short name (`microform`, `flex`, `up`, `uc`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Microform => "microform",
            Self::Flex => "flex",
            Self::UnifiedPayments => "up",
            Self::UnifiedCheckout => "uc",
        }
    }

    /// Parses [`SessionEndpoint::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// The encrypted tokens-request payload (compact JWE). It holds card data, encrypted; `Debug` shows its length.
#[derive(Clone)]
pub struct EncryptedPayload(String);

impl EncryptedPayload {
    /// The compact JWE.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EncryptedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptedPayload({} bytes)", self.0.len())
    }
}

/// Builds a [`FlexClient`].
#[derive(Debug, Clone)]
pub struct FlexClientBuilder {
    environment: Environment,
    leeway: Duration,
    origins: OriginPolicy,
    tokens_endpoint: TokensEndpoint,
    transient_key_fallback: bool,
    http: HttpConfig,
    key_cache: Option<Arc<KeyCache>>,
}

impl FlexClientBuilder {
    /// Clock leeway for `exp` and `iat` of capture contexts and transient tokens (default 30 s, at most 5 min).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Allows one more tokens origin (`https://…`, or `http://` on loopback for a simulator).
    ///
    /// # Errors
    /// As [`OriginPolicy::allow`].
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, FlexError> {
        self.origins.allow(origin)?;
        Ok(self)
    }

    /// Replaces the origin policy.
    #[must_use]
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origins = policy;
        self
    }

    /// Where the tokens request goes (default [`TokensEndpoint::CaptureContextOrigin`]).
    #[must_use]
    pub fn tokens_endpoint(mut self, endpoint: TokensEndpoint) -> Self {
        self.tokens_endpoint = endpoint;
        self
    }

    /// When a transient token does not verify with `flx.jwk`, also try the key from
    /// `/flex/v2/public-keys/{kid}` (as Cybersource's Java sample does). Off by default.
    #[must_use]
    pub fn transient_token_key_fallback(mut self, enabled: bool) -> Self {
        self.transient_key_fallback = enabled;
        self
    }

    /// HTTP timeouts and retries.
    #[must_use]
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// Shares a key cache with other clients (keys are cached per environment, so clients of different
    /// environments can share one safely), or sets its refetch cooldown
    /// ([`KeyCache::with_refetch_cooldown`]).
    #[must_use]
    pub fn key_cache(mut self, cache: Arc<KeyCache>) -> Self {
        self.key_cache = Some(cache);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`FlexError::Config`] for a leeway over 5 minutes or an HTTP client that cannot be built.
    pub fn build(self) -> Result<FlexClient, FlexError> {
        if self.leeway > Duration::from_secs(300) {
            return Err(FlexError::Config(
                "leeway over 5 minutes defeats expiry checks; fix the clock instead".into(),
            ));
        }
        Ok(FlexClient {
            inner: Arc::new(Inner {
                http: Http::new(self.http)?,
                environment: self.environment,
                leeway: self.leeway.as_secs(),
                origins: self.origins,
                tokens_endpoint: self.tokens_endpoint,
                transient_key_fallback: self.transient_key_fallback,
                keys: self.key_cache.unwrap_or_default(),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    environment: Environment,
    leeway: u64,
    origins: OriginPolicy,
    tokens_endpoint: TokensEndpoint,
    transient_key_fallback: bool,
    http: Http,
    keys: Arc<KeyCache>,
}

/// A Flex client for one environment. Cheap to clone; share it.
#[derive(Debug, Clone)]
pub struct FlexClient {
    inner: Arc<Inner>,
}

fn ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Checks `exp` and `iat` against now with `leeway` seconds.
pub(crate) fn check_times(
    what: &'static str,
    iat: u64,
    exp: u64,
    now: u64,
    leeway: u64,
) -> Result<(), FlexError> {
    if now > exp.saturating_add(leeway) {
        return Err(FlexError::Expired {
            what,
            ago_secs: now - exp,
            leeway_secs: leeway,
        });
    }
    if iat > now.saturating_add(leeway) {
        return Err(FlexError::NotYetValid {
            what,
            ahead_secs: iat - now,
            leeway_secs: leeway,
        });
    }
    Ok(())
}

/// Longest capture context or transient token accepted as given, whitespace included: twice jose-core's limit
/// for the compact token, which leaves room for line-wrapped copies. Longer input is refused before anything
/// is done with it (not even the whitespace removal).
const MAX_RAW_TOKEN: usize = 2 * jose_core::jws::DEFAULT_MAX_TOKEN_SIZE;

fn check_raw_size(what: &'static str, token: &str) -> Result<(), FlexError> {
    if token.len() > MAX_RAW_TOKEN {
        return Err(FlexError::malformed(
            what,
            format!(
                "token is {} bytes, over the {MAX_RAW_TOKEN}-byte limit",
                token.len()
            ),
        ));
    }
    Ok(())
}

/// Whether `kid` is fit to be the last segment of a URL path as it is: 1–64 of `[A-Za-z0-9_.-]`, and not a dot
/// segment (`.`, `..`, or only dots), which URL parsers resolve against the path (`/flex/v2/public-keys/..` is
/// `/flex/v2/`). Nothing else in that set can change a path: no `/`, `\`, `%`, `?`, `#` or whitespace.
pub(crate) fn is_plain_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !kid.bytes().all(|b| b == b'.')
}

/// A key id fit to appear in a URL path (see [`is_plain_kid`]).
fn check_kid(what: &'static str, kid: &str) -> Result<(), FlexError> {
    if !is_plain_kid(kid) {
        return Err(FlexError::malformed(
            what,
            "the `kid` header is not a plain key id",
        ));
    }
    Ok(())
}

fn check_rsa(role: impl FnOnce() -> String, key: &PublicKey) -> Result<(), FlexError> {
    match key {
        PublicKey::Rsa { .. } if key.bits() >= MIN_RSA_BITS => Ok(()),
        other => Err(FlexError::WeakKey {
            role: role(),
            found: other.describe(),
        }),
    }
}

fn parse_jws<'a>(what: &'static str, token: &'a str) -> Result<UnverifiedJws<'a>, FlexError> {
    jws::parse(
        token,
        &VerifyOptions::default().algorithms(&FLEX_ALGORITHMS),
    )
    .map_err(|e| match e {
        JoseError::UnsupportedAlgorithm { alg } | JoseError::ForbiddenAlgorithm { alg, .. } => {
            FlexError::UnsupportedAlgorithm { what, alg }
        }
        other => FlexError::malformed(what, other.to_string()),
    })
}

impl FlexClient {
    /// A builder for `environment` with the defaults: 30 s leeway, Flex origins only, tokens sent to
    /// `flx.origin` + `flx.path`, no transient-token key fallback, 15 s timeout, 2 retries.
    #[must_use]
    pub fn builder(environment: Environment) -> FlexClientBuilder {
        FlexClientBuilder {
            environment,
            leeway: DEFAULT_LEEWAY,
            origins: OriginPolicy::default(),
            tokens_endpoint: TokensEndpoint::default(),
            transient_key_fallback: false,
            http: HttpConfig::default(),
            key_cache: None,
        }
    }

    /// A client with the defaults.
    ///
    /// # Errors
    /// As [`FlexClientBuilder::build`].
    pub fn new(environment: Environment) -> Result<Self, FlexError> {
        Self::builder(environment).build()
    }

    /// The environment.
    #[must_use]
    pub fn environment(&self) -> &Environment {
        &self.inner.environment
    }

    /// The public-key cache.
    #[must_use]
    pub fn key_cache(&self) -> &Arc<KeyCache> {
        &self.inner.keys
    }

    /// Fetches Flex's key for `kid`, for the [`KeyCache`].
    async fn fetch_key(&self, kid: &str) -> Result<PublicKey, FetchFailure> {
        let mut unknown_kid = false;
        self.fetch_key_from_endpoint(kid, &mut unknown_kid)
            .await
            .map_err(|e| FetchFailure {
                failure: Failure::from_error(e, kid, &self.inner.environment.name()),
                unknown_kid,
            })
    }

    /// `GET /flex/v2/public-keys/{kid}`; sets `unknown_kid` when the endpoint answers that it has no such key
    /// (HTTP 400, 404 or 410).
    async fn fetch_key_from_endpoint(
        &self,
        kid: &str,
        unknown_kid: &mut bool,
    ) -> Result<PublicKey, FlexError> {
        let env = &self.inner.environment;
        let started = Instant::now();
        let fail = |reason: String| FlexError::KeyFetch {
            kid: sanitize(kid),
            environment: env.name(),
            reason,
        };
        // The kid becomes a path segment: only a plain key id, and the URL must still end in exactly that
        // segment once parsed (checked again here whatever the callers checked).
        let path = format!("/flex/v2/public-keys/{kid}");
        let url = env.url(&path);
        let url_path_ok = url::Url::parse(&url).is_ok_and(|u| u.path().ends_with(&path));
        if !is_plain_kid(kid) || !url_path_ok {
            return Err(fail(
                "the kid is not a plain key id; it is never put into a URL".into(),
            ));
        }
        let response = self
            .inner
            .http
            .send("/flex/v2/public-keys", |client| {
                let url = url.clone();
                async move { Ok(client.get(url).header("accept", "application/json")) }
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
        if response.status != 200 {
            *unknown_kid = matches!(response.status, 400 | 404 | 410);
            tracing::warn!(kid, environment = %env, outcome = %format_args!("key fetch failed: HTTP {}", response.status), latency_ms = ms(started), "Flex public key");
            return Err(fail(format!(
                "HTTP {}{}",
                response.status,
                status_hint(response.status)
            )));
        }
        if is_html(&response) {
            return Err(fail(HTML_ANSWER.into()));
        }
        let text = std::str::from_utf8(&response.body)
            .map_err(|_| fail("the answer is not UTF-8".into()))?;
        let map: Map<String, Value> = serde_json::from_str(text)
            .map_err(|_| fail("the answer is not a JSON object".into()))?;
        let jwk = match map.get("keys") {
            Some(Value::Array(keys)) => {
                let found = keys
                    .iter()
                    .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid));
                let found =
                    found.ok_or_else(|| fail("the key set has no key with this kid".into()))?;
                Jwk::from_json(&found.to_string())
            }
            _ => Jwk::from_json(text),
        }
        .map_err(|e| fail(format!("not a usable JWK: {e}")))?;
        // The answer must say it is the key asked for: a JWK without `kid` is not taken on trust. (Its `use` is
        // "enc" although it verifies signatures: that is what Flex serves, so `use` is not checked here.)
        match jwk.kid.as_deref() {
            Some(k) if k == kid => {}
            Some(_) => return Err(fail("the answer is the key of another kid".into())),
            None => {
                return Err(fail(
                    "the answer has no kid, so it does not say it is the key asked for".into(),
                ));
            }
        }
        // RFC 7517 `use`, which jose-core's key selection honours, is deliberately not required to be "sig"
        // here, for this key only: Cybersource's public-keys endpoint marks the key that signs capture
        // contexts `"use":"enc"` (docs/flex.md). `key_ops`, which Flex does not send, must still allow
        // "verify" if present.
        if jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err(fail("the JWK's key_ops do not allow \"verify\"".into()));
        }
        let key = jwk
            .to_public_key()
            .map_err(|e| fail(format!("not a usable JWK: {e}")))?;
        check_rsa(|| format!("signing key {} of {env}", sanitize(kid)), &key)?;
        tracing::info!(kid, environment = %env, outcome = "key fetched", latency_ms = ms(started), "Flex public key");
        Ok(key)
    }

    /// Verifies a capture context (whitespace in it is ignored, so line-wrapped copies work).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flex_client::{Environment, FlexClient};
    /// let sim = flex_simulator::FlexSimulator::start().await?;
    /// // Against the in-process simulator; in production `FlexClient::new(Environment::CybersourceProduction)?`.
    /// let client = FlexClient::builder(Environment::custom(sim.base_url())?)
    ///     .allow_origin(sim.base_url())?
    ///     .build()?;
    /// # let jwt = sim.issue_capture_context(flex_simulator::SessionKind::Flex, &serde_json::json!({}));
    /// // `jwt`: a capture context, e.g. as the merchant's front end received it.
    /// let context = client.verify_capture_context(&jwt).await?;
    /// println!("one-time key {} valid until {}", context.encryption_kid(), context.expires_at());
    /// assert!(client.verify_capture_context(&jwt.replace('.', ".x")).await.is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`FlexError::Malformed`], [`FlexError::MissingKid`], [`FlexError::UnsupportedAlgorithm`],
    /// [`FlexError::KeyFetch`], [`FlexError::WeakKey`], [`FlexError::InvalidSignature`],
    /// [`FlexError::Expired`], [`FlexError::NotYetValid`].
    pub async fn verify_capture_context(&self, jwt: &str) -> Result<CaptureContext, FlexError> {
        let started = Instant::now();
        let env = &self.inner.environment;
        if let Err(e) = check_raw_size(CC, jwt) {
            tracing::warn!(kid = "", environment = %env, outcome = %e, latency_ms = ms(started), "capture context rejected");
            return Err(e);
        }
        let jwt = normalize_compact(jwt);
        let result = self.verify_capture_context_inner(&jwt).await;
        let kid = jose_core::jwt::decode_unverified(&jwt)
            .ok()
            .and_then(|(h, _)| h.get("kid").and_then(Value::as_str).map(sanitize))
            .unwrap_or_default();
        match &result {
            Ok(_) => {
                tracing::info!(kid, environment = %env, outcome = "verified", latency_ms = ms(started), "capture context")
            }
            Err(e) => {
                tracing::warn!(kid, environment = %env, outcome = %e, latency_ms = ms(started), "capture context rejected")
            }
        }
        result
    }

    async fn verify_capture_context_inner(&self, jwt: &str) -> Result<CaptureContext, FlexError> {
        let env = &self.inner.environment;
        let env_name = env.name();
        let jws = parse_jws(CC, jwt)?;
        let kid = jws
            .kid()
            .ok_or(FlexError::MissingKid { what: CC })?
            .to_owned();
        check_kid(CC, &kid)?;
        // Shape first: garbage is refused without a network round trip.
        let claims = CaptureContextClaims::from_json(&jws.payload)?;

        let keys = &self.inner.keys;
        let key = keys.get(&env_name, &kid, || self.fetch_key(&kid)).await?;
        let invalid = || FlexError::InvalidSignature {
            what: CC,
            kid: sanitize(&kid),
            environment: env_name.clone(),
        };
        match jws.verify_with(&key) {
            Ok(()) => {}
            Err(JoseError::InvalidSignature) => {
                // The key may have been rotated under the same kid. The key held stays until another verifies:
                // try a candidate fetched earlier, or fetch once more if the last fetch of this kid is older than
                // the cooldown; otherwise (a forged token, most likely) the answer is the key held.
                tracing::info!(kid, environment = %env, outcome = "the key held does not verify; looking for a newer one", "capture context");
                let mut tried = vec![key];
                loop {
                    let next = if tried.len() > 3 {
                        None
                    } else {
                        keys.another(&env_name, &kid, &tried, || self.fetch_key(&kid))
                            .await?
                    };
                    let Some(next) = next else {
                        return Err(invalid());
                    };
                    if jws.verify_with(&next).is_ok() {
                        tracing::info!(kid, environment = %env, outcome = "a newer key verifies; it replaces the key held", "capture context");
                        keys.confirm(&env_name, &kid, &next);
                        break;
                    }
                    tried.push(next);
                }
            }
            Err(other) => return Err(other.into()),
        }

        check_times(
            CC,
            claims.iat,
            claims.exp,
            jose_core::jwt::now(),
            self.inner.leeway,
        )?;
        let encryption_kid = claims
            .flx
            .jwk
            .kid
            .clone()
            .ok_or_else(|| FlexError::malformed(CC, "flx.jwk has no kid"))?;
        check_kid(CC, &encryption_kid)?;
        // `flx.jwk` (`"use":"enc"`) is both the key the tokens request is encrypted to and, by Flex's design,
        // the key the transient token is verified with; it is used as a raw key, outside jose-core's selection.
        let encryption_key = claims
            .flx
            .jwk
            .to_public_key()
            .map_err(|e| FlexError::malformed(CC, format!("flx.jwk: {e}")))?;
        check_rsa(|| "flx.jwk encryption key".into(), &encryption_key)?;
        Ok(CaptureContext {
            jwt: jwt.to_owned(),
            kid,
            alg: jws.alg,
            claims,
            encryption_key,
            encryption_kid,
            environment: env.clone(),
        })
    }

    /// The URL the tokens request for `context` goes to, after the origin policy.
    ///
    /// # Errors
    /// [`FlexError::OriginNotAllowed`], [`FlexError::Malformed`].
    pub fn tokens_url(&self, context: &CaptureContext) -> Result<String, FlexError> {
        match self.inner.tokens_endpoint {
            TokensEndpoint::CaptureContextOrigin => {
                let flx = &context.claims.flx;
                Ok(self
                    .inner
                    .origins
                    .tokens_url(&flx.origin, &flx.path)?
                    .to_string())
            }
            TokensEndpoint::ApiHost => Ok(self.inner.environment.url("/flex/v2/token")),
        }
    }

    /// Checks that `context` is still usable: unexpired, from this client's environment, and its tokens
    /// endpoint allowed. [`FlexClient::encrypt_payload`] calls this before touching card data.
    ///
    /// # Errors
    /// [`FlexError::Expired`], [`FlexError::Config`] (environment), [`FlexError::OriginNotAllowed`].
    pub fn check_context(&self, context: &CaptureContext) -> Result<String, FlexError> {
        if context.environment != self.inner.environment {
            return Err(FlexError::Config(format!(
                "this capture context was verified for {}, not {}",
                context.environment, self.inner.environment
            )));
        }
        let c = &context.claims;
        check_times(CC, c.iat, c.exp, jose_core::jwt::now(), self.inner.leeway)?;
        self.tokens_url(context)
    }

    /// Encrypts the tokens request for `context`: `{"data":…,"context":…,"index":0}` as a compact JWE
    /// (RSA-OAEP, A256GCM, `kid` = `flx.jwk.kid`) to `flx.jwk`. The context is checked first
    /// ([`FlexClient::check_context`]), then the data ([`TokenizeData::validate`]).
    ///
    /// # Errors
    /// As [`FlexClient::check_context`] and [`TokenizeData::validate`], or [`FlexError::Jose`].
    pub fn encrypt_payload(
        &self,
        context: &CaptureContext,
        data: &TokenizeData,
    ) -> Result<EncryptedPayload, FlexError> {
        self.check_context(context)?;
        data.validate()?;
        let plaintext = data.tokens_plaintext(context.as_str())?;
        let jwe = jose_core::jwe::encrypt(
            context.encryption_key(),
            KeyManagementAlgorithm::RsaOaep,
            ContentEncryption::A256GCM,
            &plaintext,
            &EncryptOptions::new().kid(context.encryption_kid()),
        )?;
        Ok(EncryptedPayload(jwe))
    }

    /// Sends an encrypted payload to the tokens endpoint and returns the transient token (not yet verified;
    /// see [`FlexClient::verify_transient_token`]).
    ///
    /// # Errors
    /// [`FlexError::OriginNotAllowed`], [`FlexError::Network`], [`FlexError::Http`],
    /// [`FlexError::DigestMismatch`], [`FlexError::Malformed`].
    pub async fn send_token_request(
        &self,
        context: &CaptureContext,
        payload: &EncryptedPayload,
    ) -> Result<TransientToken, FlexError> {
        let started = Instant::now();
        let url = self.tokens_url(context)?;
        let body =
            serde_json::to_vec(&serde_json::json!({ "keyId": payload.as_str() })).map_err(|e| {
                FlexError::InvalidData(format!("cannot encode the tokens request: {e}"))
            })?;
        let endpoint = match self.inner.tokens_endpoint {
            TokensEndpoint::CaptureContextOrigin => "tokens endpoint (flx.origin + flx.path)",
            TokensEndpoint::ApiHost => "/flex/v2/token",
        };
        let response = self
            .inner
            .http
            .send(endpoint, |client| {
                let (url, body) = (url.clone(), body.clone());
                async move {
                    Ok(client
                        .post(url)
                        .header("content-type", "application/json; charset=utf-8")
                        .header("accept", "application/jwt, application/json")
                        .body(body))
                }
            })
            .await?;
        let kid = context.encryption_kid();
        let env = &self.inner.environment;
        if !(200..300).contains(&response.status) {
            tracing::warn!(kid, environment = %env, outcome = %format_args!("tokens request refused: HTTP {}", response.status), latency_ms = ms(started), "tokenize");
            return Err(FlexError::Http {
                endpoint: endpoint.into(),
                status: response.status,
                hint: status_hint(response.status),
            });
        }
        check_digest(&response.headers, &response.body)?;
        if is_html(&response) {
            return Err(FlexError::malformed(TT, HTML_ANSWER));
        }
        let text = std::str::from_utf8(&response.body)
            .map_err(|_| FlexError::malformed(TT, "the response is not UTF-8"))?;
        let token = TransientToken::new(text.trim().trim_matches('"'));
        if token.as_str().split('.').count() != 3 {
            return Err(FlexError::malformed(
                TT,
                "the tokens response is not a compact JWT",
            ));
        }
        tracing::info!(kid, environment = %env, outcome = "transient token received", latency_ms = ms(started), "tokenize");
        Ok(token)
    }

    /// Encrypts `data` for `context` and sends it: [`FlexClient::encrypt_payload`] then
    /// [`FlexClient::send_token_request`]. Nothing is encrypted or sent for an expired context or a
    /// disallowed tokens origin.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flex_client::{Environment, FlexClient};
    /// let sim = flex_simulator::FlexSimulator::start().await?;
    /// // Against the in-process simulator; in production `FlexClient::new(Environment::CybersourceProduction)?`.
    /// let client = FlexClient::builder(Environment::custom(sim.base_url())?)
    ///     .allow_origin(sim.base_url())?
    ///     .build()?;
    /// use flex_client::{Card, TokenizeData};
    /// # let jwt = sim.issue_capture_context(flex_simulator::SessionKind::Flex, &serde_json::json!({}));
    /// let context = client.verify_capture_context(&jwt).await?;
    /// let data = TokenizeData::new()
    ///     .card(Card::new("4111111111111111").expiration("12", "2031").security_code("123"))
    ///     .amount("102.21", "USD");
    /// let token = client.tokenize(&context, &data).await?; // card data encrypted to the context's one-time key
    /// let verified = client.verify_transient_token(&context, token.as_str()).await?;
    /// assert_eq!(verified.claims().masked_card_number(), Some("XXXXXXXXXXXX1111"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As the two steps.
    pub async fn tokenize(
        &self,
        context: &CaptureContext,
        data: &TokenizeData,
    ) -> Result<TransientToken, FlexError> {
        let payload = self.encrypt_payload(context, data)?;
        self.send_token_request(context, &payload).await
    }

    /// [`FlexClient::tokenize`] then [`FlexClient::verify_transient_token`].
    ///
    /// # Errors
    /// As the two steps.
    pub async fn tokenize_and_verify(
        &self,
        context: &CaptureContext,
        data: &TokenizeData,
    ) -> Result<VerifiedTransientToken, FlexError> {
        let token = self.tokenize(context, data).await?;
        self.verify_transient_token(context, token.as_str()).await
    }

    /// Verifies a transient token against the capture context it was issued for.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flex_client::{Environment, FlexClient};
    /// let sim = flex_simulator::FlexSimulator::start().await?;
    /// // Against the in-process simulator; in production `FlexClient::new(Environment::CybersourceProduction)?`.
    /// let client = FlexClient::builder(Environment::custom(sim.base_url())?)
    ///     .allow_origin(sim.base_url())?
    ///     .build()?;
    /// use flex_client::{Card, TokenizeData};
    /// # let jwt = sim.issue_capture_context(flex_simulator::SessionKind::Flex, &serde_json::json!({}));
    /// # let context = client.verify_capture_context(&jwt).await?;
    /// # let data = TokenizeData::new().card(Card::new("4111111111111111").expiration("12", "2031"));
    /// # let token = client.tokenize(&context, &data).await?.into_string();
    /// // `token`: the transient token the front end got back for `context`.
    /// let verified = client.verify_transient_token(&context, &token).await?;
    /// let claims = verified.claims();
    /// assert!(claims.content.is_captured("paymentInformation.card.number"));
    /// assert_eq!(claims.card_bin(), Some("411111"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`FlexError::Malformed`], [`FlexError::MissingKid`], [`FlexError::KidMismatch`],
    /// [`FlexError::UnsupportedAlgorithm`], [`FlexError::InvalidSignature`], [`FlexError::Expired`],
    /// [`FlexError::NotYetValid`] (and [`FlexError::KeyFetch`] with the fallback on).
    pub async fn verify_transient_token(
        &self,
        context: &CaptureContext,
        token: &str,
    ) -> Result<VerifiedTransientToken, FlexError> {
        let started = Instant::now();
        let env = &self.inner.environment;
        if let Err(e) = check_raw_size(TT, token) {
            tracing::warn!(kid = context.encryption_kid(), environment = %env, outcome = %e, latency_ms = ms(started), "transient token rejected");
            return Err(e);
        }
        let token = TransientToken::new(token);
        let result = self.verify_transient_token_inner(context, token).await;
        let kid = context.encryption_kid();
        match &result {
            Ok(_) => {
                tracing::info!(kid, environment = %env, outcome = "verified", latency_ms = ms(started), "transient token")
            }
            Err(e) => {
                tracing::warn!(kid, environment = %env, outcome = %e, latency_ms = ms(started), "transient token rejected")
            }
        }
        result
    }

    async fn verify_transient_token_inner(
        &self,
        context: &CaptureContext,
        token: TransientToken,
    ) -> Result<VerifiedTransientToken, FlexError> {
        let env_name = self.inner.environment.name();
        let jws = parse_jws(TT, token.as_str())?;
        let kid = jws
            .kid()
            .ok_or(FlexError::MissingKid { what: TT })?
            .to_owned();
        if kid != context.encryption_kid() {
            return Err(FlexError::KidMismatch {
                token_kid: sanitize(&kid),
                context_kid: sanitize(context.encryption_kid()),
            });
        }
        let claims = TransientTokenClaims::from_json(&jws.payload)?;
        let invalid = || FlexError::InvalidSignature {
            what: TT,
            kid: sanitize(&kid),
            environment: env_name.clone(),
        };
        match jws.verify_with(context.encryption_key()) {
            Ok(()) => {}
            Err(JoseError::InvalidSignature) if self.inner.transient_key_fallback => {
                check_kid(TT, &kid)?;
                let key = self
                    .inner
                    .keys
                    .get(&env_name, &kid, || self.fetch_key(&kid))
                    .await?;
                jws.verify_with(&key).map_err(|_| invalid())?;
            }
            Err(JoseError::InvalidSignature) => return Err(invalid()),
            Err(other) => return Err(other.into()),
        }
        check_times(
            TT,
            claims.iat,
            claims.exp,
            jose_core::jwt::now(),
            self.inner.leeway,
        )?;
        let raw_claims: Map<String, Value> = serde_json::from_slice(&jws.payload)
            .map_err(|_| FlexError::malformed(TT, "claims are not a JSON object"))?;
        let alg = jws.alg;
        drop(jws);
        Ok(VerifiedTransientToken {
            token,
            kid,
            alg,
            claims,
            raw_claims,
        })
    }

    /// Requests a capture context from a sessions endpoint with merchant authentication, and verifies it.
    /// `body` is the endpoint's JSON request (e.g. `{"targetOrigins":[…]}` for Microform,
    /// `{"fields":{…}}` for the Flex API).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flex_client::{Environment, FlexClient};
    /// let sim = flex_simulator::FlexSimulator::start().await?;
    /// // Against the in-process simulator; in production `FlexClient::new(Environment::CybersourceProduction)?`.
    /// let client = FlexClient::builder(Environment::custom(sim.base_url())?)
    ///     .allow_origin(sim.base_url())?
    ///     .build()?;
    /// use flex_client::{JwtAuth, MerchantAuth, SessionEndpoint};
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("merchant.pem");
    /// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
    /// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
    /// # sim.add_merchant_jwt_key("my_merchant", "0a1b2c3d4e5f", &key.public_key().to_spki_pem());
    /// let auth = MerchantAuth::Jwt(JwtAuth::new("my_merchant", "0a1b2c3d4e5f", key)?);
    /// let body = serde_json::json!({"fields": {"paymentInformation": {"card": {"number": {"required": true}}}}});
    /// let context = client.request_capture_context(&auth, SessionEndpoint::Flex, &body).await?;
    /// assert_eq!(context.claims().required_fields(), ["paymentInformation.card.number"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`FlexError::Http`] (401: check the credentials), [`FlexError::Network`], [`FlexError::MerchantAuth`],
    /// [`FlexError::Key`], then everything [`FlexClient::verify_capture_context`] returns.
    pub async fn request_capture_context(
        &self,
        auth: &MerchantAuth,
        endpoint: SessionEndpoint,
        body: &Value,
    ) -> Result<CaptureContext, FlexError> {
        self.request_capture_context_inner(auth, endpoint, body, None)
            .await
    }

    /// [`FlexClient::request_capture_context`] with message-level encryption ([`crate::mle`]): the body is
    /// sent as `{"encryptedRequest":…}` to `mle`'s certificate (the JWT `digest` over that encrypted body),
    /// and with [`Mle::with_response`] the JWT carries `v-c-response-mle-kid` and the answer must be an
    /// `{"encryptedResponse":…}`, decrypted through the response key's backend.
    ///
    /// # Errors
    /// As [`FlexClient::request_capture_context`]; [`FlexError::MerchantAuth`] with HTTP Signature
    /// authentication; [`FlexError::Malformed`] when response MLE was asked for and the answer is not
    /// encrypted; [`FlexError::Jose`] when it does not decrypt.
    pub async fn request_capture_context_with_mle(
        &self,
        auth: &MerchantAuth,
        endpoint: SessionEndpoint,
        body: &Value,
        mle: &Mle,
    ) -> Result<CaptureContext, FlexError> {
        self.request_capture_context_inner(auth, endpoint, body, Some(mle))
            .await
    }

    async fn request_capture_context_inner(
        &self,
        auth: &MerchantAuth,
        endpoint: SessionEndpoint,
        body: &Value,
        mle: Option<&Mle>,
    ) -> Result<CaptureContext, FlexError> {
        let started = Instant::now();
        let env = &self.inner.environment;
        let path = endpoint.path();
        let url = env.url(path);
        let host = env.host();
        if mle.is_some() && matches!(auth, MerchantAuth::HttpSignature(_)) {
            return Err(FlexError::MerchantAuth(
                "message-level encryption needs JWT authentication (--key), not HTTP Signature"
                    .into(),
            ));
        }
        let plain = Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|e| FlexError::InvalidData(format!("cannot encode the request: {e}")))?,
        );
        let response_mle_kid = mle.and_then(Mle::response).map(ResponseMle::kid);
        let response = self
            .inner
            .http
            .send(path, |client| {
                let (url, host, plain) = (url.clone(), host.clone(), &plain);
                async move {
                    // A fresh JWE (and `iat`) per attempt, like the authentication headers.
                    let body = match mle {
                        Some(mle) => {
                            crate::mle::encrypt_request(mle.request(), plain, SystemTime::now())?
                        }
                        None => plain.to_vec(),
                    };
                    let headers = auth
                        .headers_with_response_mle(
                            "POST",
                            &host,
                            path,
                            &body,
                            SystemTime::now(),
                            response_mle_kid,
                        )
                        .await?;
                    let mut request = client
                        .post(url)
                        .header("content-type", "application/json;charset=utf-8")
                        .header("accept", "application/jwt, application/json");
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                    Ok(request.body(body))
                }
            })
            .await?;
        if !(200..300).contains(&response.status) {
            tracing::warn!(environment = %env, outcome = %format_args!("capture context request refused: HTTP {}", response.status), latency_ms = ms(started), "capture context");
            return Err(FlexError::Http {
                endpoint: path.into(),
                status: response.status,
                hint: status_hint(response.status),
            });
        }
        if is_html(&response) {
            return Err(FlexError::malformed(CC, HTML_ANSWER));
        }
        let decrypted;
        let answer: &[u8] = match mle.and_then(Mle::response) {
            Some(response_mle) => {
                decrypted = crate::mle::decrypt_response(response_mle, &response.body).await?;
                &decrypted
            }
            None => &response.body,
        };
        let text = std::str::from_utf8(answer)
            .map_err(|_| FlexError::malformed(CC, "the response is not UTF-8"))?;
        let text = text.trim();
        let jwt = if text.starts_with('{') {
            let v: Value = serde_json::from_str(text)
                .map_err(|_| FlexError::malformed(CC, "the response is not a JWT"))?;
            ["keyId", "captureContext"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
                .ok_or_else(|| {
                    FlexError::malformed(CC, "the JSON response holds no capture context")
                })?
                .to_owned()
        } else {
            text.trim_matches('"').to_owned()
        };
        self.verify_capture_context(&jwt).await
    }
}

const HTML_ANSWER: &str =
    "the answer is an HTML page, not what Flex sends (a proxy, gateway or login page answered)";

/// Whether an answer is an HTML page (by its content type or its first character).
fn is_html(response: &crate::http::Response) -> bool {
    response
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().contains("html"))
        || response.body.trim_ascii_start().starts_with(b"<")
}

/// Checks a `Digest: SHA-256=<b64>` header against `body` when the header is present.
fn check_digest(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<(), FlexError> {
    let values: Vec<&str> = headers
        .get_all("digest")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let expected = body_digest(body);
    let sha256: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let (alg, value) = item.trim().split_once('=')?;
            alg.eq_ignore_ascii_case("SHA-256").then_some(value.trim())
        })
        .collect();
    if sha256.is_empty() || sha256.iter().any(|v| *v != expected) {
        return Err(FlexError::DigestMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_leeway() {
        assert!(check_times(CC, 100, 1000, 1000, 0).is_ok());
        assert!(check_times(CC, 100, 1000, 1030, 30).is_ok());
        assert!(matches!(
            check_times(CC, 100, 1000, 1031, 30),
            Err(FlexError::Expired { ago_secs: 31, .. })
        ));
        assert!(check_times(CC, 1030, 2000, 1000, 30).is_ok());
        assert!(matches!(
            check_times(CC, 1031, 2000, 1000, 30),
            Err(FlexError::NotYetValid { ahead_secs: 31, .. })
        ));
    }

    #[test]
    fn digest_header() {
        let mut h = reqwest::header::HeaderMap::new();
        assert!(check_digest(&h, b"abc").is_ok());
        h.insert(
            "digest",
            format!("SHA-256={}", body_digest(b"abc")).parse().unwrap(),
        );
        assert!(check_digest(&h, b"abc").is_ok());
        assert!(matches!(
            check_digest(&h, b"abd"),
            Err(FlexError::DigestMismatch)
        ));
        h.insert("digest", "MD5=xyz".parse().unwrap());
        assert!(matches!(
            check_digest(&h, b"abc"),
            Err(FlexError::DigestMismatch)
        ));
    }

    #[test]
    fn kid_charset() {
        assert!(check_kid(CC, "3g").is_ok());
        assert!(check_kid(CC, "08iGdCvgiBXC8awzSK3Z4hRoalIJO5o1").is_ok());
        assert!(check_kid(CC, "a.b").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "...",
            "../x",
            "a/b",
            "a\\b",
            "a?b",
            "a#b",
            "%2e%2e",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_kid(CC, bad).is_err(), "{bad}");
        }
    }
}

//! The token endpoint client: one form POST per grant, client authentication by a fresh `private_key_jwt`
//! assertion or a client secret (post or Basic), retries with backoff on network errors and HTTP 5xx only,
//! typed OAuth errors, and clock-skew detection from the server's `Date` header.
//!
//! Tracing: one event per attempt (`debug` for retries, `info` for success, `warn` for the final failure)
//! with `client_id`, `grant`, `status`, `attempt`, `latency_ms` and `outcome`. Tokens, assertions, passwords
//! and secrets are never logged.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::assertion::{ASSERTION_TYPE, ClientAssertion, ClientAssertionSigner};
use crate::clock::{Clock, SystemClock, shift, skew_from_date_header};
use crate::endpoint::TokenEndpoint;
use crate::error::{KeycloakError, OAuthError, OAuthErrorCode};
use crate::response::TokenResponse;

/// Smallest estimated skew (seconds) reported as [`KeycloakError::ClockSkew`]: the `Date` header has 1 s
/// resolution, so smaller estimates are noise.
pub const SKEW_REPORT_THRESHOLD_SECS: i64 = 5;

/// Largest clock-skew correction applied, in all: 24 h. A larger estimate (a host clock off by days, or a
/// server's absurd `Date` header) is reported as [`KeycloakError::ClockSkew`] instead of being compensated.
pub const MAX_SKEW_CORRECTION_SECS: u64 = 24 * 3600;

/// Longest wait between two attempts of one request, whatever the policy says: 1 h.
const LONGEST_BACKOFF: Duration = Duration::from_secs(3600);

/// Largest token endpoint answer read: 1 MiB (Keycloak's are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How the client authenticates to the token endpoint.
#[non_exhaustive]
pub enum ClientAuth {
    /// RFC 7523 `private_key_jwt`: a new signed assertion per request ("lender").
    PrivateKeyJwt(ClientAssertionSigner),
    /// `client_id` + `client_secret` in the form body ("partner").
    ClientSecretPost {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: SecretString,
    },
    /// HTTP Basic with the form-urlencoded client id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: SecretString,
    },
}

impl ClientAuth {
    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        match self {
            Self::PrivateKeyJwt(s) => s.client_id(),
            Self::ClientSecretPost { client_id, .. }
            | Self::ClientSecretBasic { client_id, .. } => client_id,
        }
    }

    /// The RFC 7591 name of the method.
    #[must_use]
    pub fn method(&self) -> &'static str {
        match self {
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::ClientSecretPost { .. } => "client_secret_post",
            Self::ClientSecretBasic { .. } => "client_secret_basic",
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PrivateKeyJwt(s) => f.debug_tuple("PrivateKeyJwt").field(s).finish(),
            Self::ClientSecretPost { client_id, .. }
            | Self::ClientSecretBasic { client_id, .. } => f
                .debug_struct(self.method())
                .field("client_id", client_id)
                .field("secret", &"[REDACTED]")
                .finish(),
        }
    }
}

/// Retries of one token request: only network errors and HTTP 5xx are retried, each time with a new
/// assertion; OAuth errors (4xx) never are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, at least 1 (default 3).
    pub max_attempts: u32,
    /// Wait before the second attempt (default 250 ms); doubled each time, with ±25 % jitter.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (default 4 s; at most 1 h is waited, whatever this says).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// A policy with these values (`max_attempts` at least 1).
    #[must_use]
    pub fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_backoff,
            max_backoff,
        }
    }

    /// One attempt, no retries.
    #[must_use]
    pub fn no_retries() -> Self {
        Self::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// The wait after failed attempt number `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff)
            // Capped, so that the jitter below (at most ×1.25) cannot overflow a Duration.
            .min(LONGEST_BACKOFF);
        // ±25 % jitter from a random UUID's bits (no extra RNG dependency).
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32; // 0..1000
        base.mul_f64(0.75 + f64::from(r) / 2000.0)
    }
}

/// The grant of one token request.
#[derive(Clone, Copy)]
enum Grant<'a> {
    Password {
        username: &'a str,
        password: &'a SecretString,
    },
    Refresh(&'a SecretString),
    ClientCredentials,
}

impl Grant<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::Password { .. } => "password",
            Self::Refresh(_) => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// A client of one Keycloak token endpoint, for one client id. Cheap to share (`Arc`); every method takes
/// `&self`.
pub struct KeycloakClient {
    http: reqwest::Client,
    endpoint: TokenEndpoint,
    auth: ClientAuth,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    compensate_skew: bool,
    /// Seconds added to `clock` for assertion times (only with clock-skew compensation).
    skew_offset: AtomicI64,
}

impl fmt::Debug for KeycloakClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeycloakClient")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .field("compensate_skew", &self.compensate_skew)
            .field("skew_offset", &self.skew_offset.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeycloakClient`].
#[derive(Debug)]
#[must_use]
pub struct KeycloakClientBuilder {
    endpoint: TokenEndpoint,
    auth: ClientAuth,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    compensate_skew: bool,
}

impl KeycloakClientBuilder {
    /// Use this HTTP client (its proxy, TLS roots and timeouts) instead of the default one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Wall clock for assertion times (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Timeout of one HTTP attempt with the default HTTP client (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When the server refuses an assertion for its time claims and its `Date` header shows our clock is off
    /// by [`SKEW_REPORT_THRESHOLD_SECS`] or more, shift assertion times by the estimate and try once more
    /// (corrections add up to at most [`MAX_SKEW_CORRECTION_SECS`], 24 h; beyond that the skew is reported)
    /// (off by default: the error then says to fix the clock).
    pub fn compensate_clock_skew(mut self, on: bool) -> Self {
        self.compensate_skew = on;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`KeycloakError::Config`] when the default HTTP client cannot be built (TLS roots unavailable).
    pub fn build(self) -> Result<KeycloakClient, KeycloakError> {
        let http = match self.http {
            Some(h) => h,
            None => {
                let mut b = reqwest::Client::builder()
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                    // A redirected token request would carry credentials elsewhere: refuse instead.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!(
                        "keybound-keycloak-client/",
                        env!("CARGO_PKG_VERSION")
                    ));
                if is_loopback(&self.endpoint) {
                    b = b.no_proxy();
                }
                b.build().map_err(|e| {
                    KeycloakError::config(format!("cannot build the HTTP client: {e}"))
                })?
            }
        };
        Ok(KeycloakClient {
            http,
            endpoint: self.endpoint,
            auth: self.auth,
            retry: self.retry,
            clock: self.clock,
            compensate_skew: self.compensate_skew,
            skew_offset: AtomicI64::new(0),
        })
    }
}

fn is_loopback(endpoint: &TokenEndpoint) -> bool {
    match endpoint.url().host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl KeycloakClient {
    /// A builder for a client of `endpoint` authenticating with `auth`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use keycloak_client::{AssertionConfig, ClientAssertionSigner, ClientAuth, KeycloakClient, TokenEndpoint};
    /// let endpoint = TokenEndpoint::from_token_url(
    ///     "https://sso.example.com/realms/loan-partner/protocol/openid-connect/token",
    /// )?;
    /// // The key may as well be `pkcs11:token=…;object=…?module-path=…&pin-source=file:…`.
    /// let key = key_provider::open(&"file:/etc/keybound/lender.pem".parse()?, &Default::default())?;
    /// let signer = ClientAssertionSigner::new(key, &AssertionConfig::new("example-bank"), &endpoint)?;
    /// let client = KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer))
    ///     .timeout(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// let service_account_token = client.client_credentials(None).await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(endpoint: TokenEndpoint, auth: ClientAuth) -> KeycloakClientBuilder {
        KeycloakClientBuilder {
            endpoint,
            auth,
            http: None,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            timeout: Duration::from_secs(30),
            compensate_skew: false,
        }
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        self.auth.client_id()
    }

    /// The token endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// How the client authenticates.
    #[must_use]
    pub fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// The current clock-skew correction in seconds (non-zero only with compensation on).
    #[must_use]
    pub fn clock_skew_correction(&self) -> i64 {
        self.skew_offset.load(Ordering::Relaxed)
    }

    /// The time used for assertion claims: the clock plus any skew correction (saturating at the epoch and
    /// at the year 10000, which assertions refuse with a clear error).
    #[must_use]
    pub fn now(&self) -> SystemTime {
        shift(self.clock.now(), self.skew_offset.load(Ordering::Relaxed))
    }

    /// Adds `skew_secs` to the skew correction unless the total would exceed [`MAX_SKEW_CORRECTION_SECS`];
    /// returns the new total, or `None` (correction unchanged).
    fn correct_skew(&self, skew_secs: i64) -> Option<i64> {
        let total = |current: i64| {
            current
                .checked_add(skew_secs)
                .filter(|t| t.unsigned_abs() <= MAX_SKEW_CORRECTION_SECS)
        };
        self.skew_offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, total)
            .ok()
            .and_then(total)
    }

    /// Signs one client assertion as the next request would send it (for `keybound keycloak assertion` and
    /// for debugging a server's refusal).
    ///
    /// # Errors
    /// [`KeycloakError::Config`] when the client authenticates with a secret; else as
    /// [`ClientAssertionSigner::sign`].
    pub async fn assertion(&self) -> Result<ClientAssertion, KeycloakError> {
        match &self.auth {
            ClientAuth::PrivateKeyJwt(s) => s.sign(self.now()).await,
            _ => Err(KeycloakError::config(
                "this client authenticates with a client secret, not a key",
            )),
        }
    }

    /// Resource-owner password grant (Keycloak's direct access grant) for `username`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use keycloak_client::secrecy::SecretString;
    /// use keycloak_client::{AssertionConfig, ClientAssertionSigner, ClientAuth, KeycloakClient, TokenEndpoint};
    /// let endpoint = TokenEndpoint::from_token_url(
    ///     "https://sso.example.com/realms/loan-partner/protocol/openid-connect/token",
    /// )?;
    /// // The key may as well be `pkcs11:token=…;object=…?module-path=…&pin-source=file:…`.
    /// let key = key_provider::open(&"file:/etc/keybound/lender.pem".parse()?, &Default::default())?;
    /// let signer = ClientAssertionSigner::new(key, &AssertionConfig::new("example-bank"), &endpoint)?;
    /// let client = KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer)).build()?;
    /// let password = SecretString::from(std::env::var("LENDER_PASSWORD")?);
    /// let tokens = client.password_grant("exampleuser@bank.example.com", &password, None).await?;
    /// // The refresh token, when needed, with a new assertion:
    /// if let Some(refresh_token) = &tokens.refresh_token {
    ///     let renewed = client.refresh(refresh_token, None).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`KeycloakError::OAuth`] (`invalid_grant` for bad user credentials, `invalid_client`,
    /// `unauthorized_client`…), [`KeycloakError::ClockSkew`], [`KeycloakError::Network`],
    /// [`KeycloakError::Server`], [`KeycloakError::InvalidResponse`], or signing errors.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &SecretString,
        scope: Option<&str>,
    ) -> Result<TokenResponse, KeycloakError> {
        self.request(Grant::Password { username, password }, scope)
            .await
    }

    /// Refresh-token grant; the client authenticates again (a new assertion).
    ///
    /// # Errors
    /// As [`KeycloakClient::password_grant`]; `invalid_grant` when the refresh token is expired, used or
    /// revoked.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        scope: Option<&str>,
    ) -> Result<TokenResponse, KeycloakError> {
        self.request(Grant::Refresh(refresh_token), scope).await
    }

    /// Client-credentials grant (the client's service account).
    ///
    /// # Errors
    /// As [`KeycloakClient::password_grant`].
    pub async fn client_credentials(
        &self,
        scope: Option<&str>,
    ) -> Result<TokenResponse, KeycloakError> {
        self.request(Grant::ClientCredentials, scope).await
    }

    async fn request(
        &self,
        grant: Grant<'_>,
        scope: Option<&str>,
    ) -> Result<TokenResponse, KeycloakError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut skew_retried = false;
        loop {
            attempt = attempt.saturating_add(1);
            let attempt_started = Instant::now();
            let result = self.attempt(grant, scope, attempt).await;
            let latency_ms = attempt_started.elapsed().as_millis() as u64;
            match result {
                Ok(r) => {
                    tracing::info!(
                        client_id = self.client_id(),
                        grant = grant.name(),
                        realm = self.endpoint.realm(),
                        attempt,
                        latency_ms,
                        total_ms = started.elapsed().as_millis() as u64,
                        expires_in = r.expires_in,
                        refresh_token = r.refresh_token.is_some(),
                        outcome = "ok",
                        "token request succeeded"
                    );
                    return Ok(r);
                }
                Err(e @ (KeycloakError::Network { .. } | KeycloakError::Server { .. }))
                    if attempt < self.retry.max_attempts =>
                {
                    let wait = self.retry.backoff(attempt);
                    tracing::debug!(
                        client_id = self.client_id(),
                        grant = grant.name(),
                        attempt,
                        latency_ms,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %e,
                        outcome = "retry",
                        "token request failed; retrying with a new request"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(KeycloakError::ClockSkew { skew_secs, error })
                    if self.compensate_skew && !skew_retried =>
                {
                    skew_retried = true;
                    let Some(total) = self.correct_skew(skew_secs) else {
                        tracing::warn!(
                            client_id = self.client_id(),
                            grant = grant.name(),
                            skew_secs,
                            correction_secs = self.clock_skew_correction(),
                            max_correction_secs = MAX_SKEW_CORRECTION_SECS,
                            error = %error,
                            outcome = "error",
                            "the server's Date header shows a clock skew too large to compensate; fix this \
                             host's clock"
                        );
                        return Err(KeycloakError::ClockSkew { skew_secs, error });
                    };
                    tracing::warn!(
                        client_id = self.client_id(),
                        grant = grant.name(),
                        skew_secs,
                        correction_secs = total,
                        error = %error,
                        outcome = "clock_skew_compensated",
                        "the server refused the client assertion's time claims and its Date header shows a clock \
                         skew; shifting assertion times and trying again (fix this host's clock)"
                    );
                }
                Err(e) => {
                    tracing::warn!(
                        client_id = self.client_id(),
                        grant = grant.name(),
                        realm = self.endpoint.realm(),
                        attempt,
                        latency_ms,
                        total_ms = started.elapsed().as_millis() as u64,
                        skew_secs = match &e {
                            KeycloakError::ClockSkew { skew_secs, .. } => Some(*skew_secs),
                            _ => None,
                        },
                        error = %e,
                        outcome = "error",
                        "token request failed"
                    );
                    return Err(e);
                }
            }
        }
    }

    async fn attempt(
        &self,
        grant: Grant<'_>,
        scope: Option<&str>,
        attempt: u32,
    ) -> Result<TokenResponse, KeycloakError> {
        let assertion = match &self.auth {
            ClientAuth::PrivateKeyJwt(s) => Some(s.sign(self.now()).await?),
            _ => None,
        };
        let mut form: Vec<(&str, &str)> = vec![("grant_type", grant.name())];
        match grant {
            Grant::Password { username, password } => {
                form.push(("username", username));
                form.push(("password", password.expose_secret()));
            }
            Grant::Refresh(rt) => form.push(("refresh_token", rt.expose_secret())),
            Grant::ClientCredentials => {}
        }
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            form.push(("scope", s));
        }
        let mut req = self
            .http
            .post(self.endpoint.url().clone())
            .header(ACCEPT, "application/json");
        match (&self.auth, &assertion) {
            (ClientAuth::PrivateKeyJwt(s), Some(a)) => {
                form.push(("client_id", s.client_id()));
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", a.jwt.expose_secret()));
            }
            (ClientAuth::ClientSecretPost { client_id, secret }, _) => {
                form.push(("client_id", client_id));
                form.push(("client_secret", secret.expose_secret()));
            }
            (ClientAuth::ClientSecretBasic { client_id, secret }, _) => {
                req = req.header(AUTHORIZATION, basic_auth(client_id, secret)?);
            }
            (ClientAuth::PrivateKeyJwt(_), None) => {
                return Err(KeycloakError::config("internal: no assertion was signed"));
            }
        }
        let network = |source: reqwest::Error| KeycloakError::Network {
            url: self.endpoint.token_url().to_owned(),
            attempts: attempt,
            source: source.without_url(),
        };
        let resp = req.form(&form).send().await.map_err(network)?;
        let status = resp.status().as_u16();
        let date = resp
            .headers()
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(KeycloakError::InvalidResponse {
                    status,
                    reason: format!(
                        "the answer is larger than {} KiB",
                        MAX_RESPONSE_BYTES / 1024
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        match status {
            200 => serde_json::from_slice::<TokenResponse>(&body).map_err(|e| {
                KeycloakError::InvalidResponse {
                    status,
                    reason: token_response_problem(&body, content_type.as_deref(), &e),
                }
            }),
            500..=599 => Err(KeycloakError::Server {
                status,
                attempts: attempt,
            }),
            400..=499 => {
                let parsed: ErrorBody =
                    serde_json::from_slice(&body).map_err(|_| KeycloakError::InvalidResponse {
                        status,
                        reason: if looks_like_html(content_type.as_deref(), &body) {
                            "a 4xx answer that is an HTML page, not an OAuth error object (a proxy, gateway or \
                             login page answered)"
                                .into()
                        } else {
                            "a 4xx answer without an OAuth error object".into()
                        },
                    })?;
                let error =
                    OAuthError::new(status, &parsed.error, parsed.error_description.as_deref());
                Err(self.classify_refusal(error, date.as_deref()))
            }
            _ => Err(KeycloakError::InvalidResponse {
                status,
                reason: "unexpected HTTP status".into(),
            }),
        }
    }

    /// A refusal of our assertion's time claims with a `Date` header that shows skew becomes
    /// [`KeycloakError::ClockSkew`].
    fn classify_refusal(&self, error: OAuthError, date: Option<&str>) -> KeycloakError {
        if error.code != OAuthErrorCode::InvalidClient
            || !matches!(self.auth, ClientAuth::PrivateKeyJwt(_))
            || !error.is_time_related()
        {
            return KeycloakError::OAuth(error);
        }
        match date.and_then(|d| skew_from_date_header(d, self.now())) {
            Some(skew_secs) if skew_secs.abs() >= SKEW_REPORT_THRESHOLD_SECS => {
                KeycloakError::ClockSkew { skew_secs, error }
            }
            skew => {
                tracing::info!(
                    client_id = self.client_id(),
                    skew_secs = skew,
                    "the server refused the assertion's time claims, but its Date header shows no clock skew \
                     of 5 s or more"
                );
                KeycloakError::OAuth(error)
            }
        }
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive so that it is never logged.
/// Whether an answer is an HTML page (a proxy's error page, a login portal) rather than JSON.
fn looks_like_html(content_type: Option<&str>, body: &[u8]) -> bool {
    content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html"))
        || body.trim_ascii_start().starts_with(b"<")
}

/// Why a 200 answer is not a usable token response, naming the member at fault but never a value (serde's
/// own messages may quote them, and the body holds tokens).
fn token_response_problem(
    body: &[u8],
    content_type: Option<&str>,
    error: &serde_json::Error,
) -> String {
    use serde_json::Value;
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if looks_like_html(content_type, body) => {
            return "it is an HTML page, not JSON (a proxy, gateway or login page answered)".into();
        }
        Err(e) => {
            return format!(
                "it is not valid JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            );
        }
    };
    let Some(members) = value.as_object() else {
        return "it is JSON but not an object".into();
    };
    match members.get("access_token") {
        None => return "it has no access_token".into(),
        Some(Value::String(t)) if !t.is_empty() => {}
        Some(_) => return "its access_token is not a non-empty string".into(),
    }
    for member in ["expires_in", "refresh_expires_in"] {
        match members.get(member) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.is_u64() => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f < 0.0) => {
                return format!("its {member} is negative");
            }
            Some(_) => {
                return format!("its {member} is not a whole number of seconds below 2^64");
            }
        }
    }
    // Only where it broke: never serde's message, which may quote a value.
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

fn basic_auth(client_id: &str, secret: &SecretString) -> Result<HeaderValue, KeycloakError> {
    let raw = secrecy::zeroize::Zeroizing::new(format!(
        "{}:{}",
        utf8_percent_encode(client_id, NON_ALPHANUMERIC),
        utf8_percent_encode(secret.expose_secret(), NON_ALPHANUMERIC)
    ));
    let encoded = secrecy::zeroize::Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    ));
    let mut value = HeaderValue::from_str(&encoded).map_err(|_| {
        KeycloakError::config("the client id or secret cannot be sent in a Basic header")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_millis(300));
        for _ in 0..20 {
            let b1 = p.backoff(1);
            assert!(
                b1 >= Duration::from_millis(75) && b1 <= Duration::from_millis(125),
                "{b1:?}"
            );
            let b3 = p.backoff(3);
            assert!(
                b3 >= Duration::from_millis(225) && b3 <= Duration::from_millis(375),
                "{b3:?}"
            );
        }
        assert_eq!(
            RetryPolicy::new(0, Duration::ZERO, Duration::ZERO).max_attempts,
            1
        );
    }

    #[test]
    fn backoff_of_out_of_range_policies_is_capped_not_a_panic() {
        for p in [
            RetryPolicy::new(u32::MAX, Duration::MAX, Duration::MAX),
            RetryPolicy::new(
                3,
                Duration::from_secs(u64::MAX),
                Duration::from_secs(u64::MAX),
            ),
        ] {
            for attempt in [1, 2, 17, u32::MAX] {
                let b = p.backoff(attempt);
                assert!(b >= LONGEST_BACKOFF.mul_f64(0.75), "{b:?}");
                assert!(b <= LONGEST_BACKOFF.mul_f64(1.25), "{b:?}");
            }
        }
    }

    fn unreachable_endpoint() -> TokenEndpoint {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        TokenEndpoint::from_token_url(&format!(
            "http://127.0.0.1:{port}/realms/r/protocol/openid-connect/token"
        ))
        .unwrap()
    }

    fn key_client(clock_offset_secs: i64) -> KeycloakClient {
        let der = key_provider::software::generate_pkcs8(key_provider::KeySpec::Ec(
            key_provider::EcCurve::P256,
        ))
        .unwrap();
        let key: Arc<dyn key_provider::KeyBackend> =
            Arc::new(key_provider::SoftwareKey::from_bytes("memory", "test".into(), &der).unwrap());
        let endpoint = unreachable_endpoint();
        let signer = ClientAssertionSigner::new(
            key,
            &crate::AssertionConfig::new("example-bank"),
            &endpoint,
        )
        .unwrap();
        KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer))
            .clock(Arc::new(crate::OffsetClock {
                offset_secs: clock_offset_secs,
            }))
            .retry(RetryPolicy::no_retries())
            .compensate_clock_skew(true)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn out_of_range_clock_offsets_are_clear_errors_not_panics() {
        for offset in [i64::MAX, i64::MIN, i64::MAX / 2, 300_000_000_000] {
            let client = key_client(offset);
            let e = client.assertion().await.unwrap_err();
            assert!(matches!(e, KeycloakError::Config(_)), "{offset}: {e:?}");
            assert!(e.to_string().contains("clock"), "{offset}: {e}");
            // A grant fails the same way, before anything is sent.
            let e = client.client_credentials(None).await.unwrap_err();
            assert!(matches!(e, KeycloakError::Config(_)), "{offset}: {e:?}");
        }
        assert!(key_client(-120).assertion().await.is_ok());
    }

    #[test]
    fn skew_corrections_are_checked_and_bounded() {
        let client = key_client(0);
        let max = MAX_SKEW_CORRECTION_SECS as i64;
        assert_eq!(client.correct_skew(100), Some(100));
        for huge in [i64::MAX, i64::MIN, i64::MAX - 50, max - 99, -2 * max - 1] {
            assert_eq!(client.correct_skew(huge), None, "{huge}");
            assert_eq!(
                client.clock_skew_correction(),
                100,
                "unchanged after {huge}"
            );
        }
        assert_eq!(client.correct_skew(max - 100), Some(max));
        assert_eq!(client.correct_skew(1), None);
        assert_eq!(client.correct_skew(-2 * max), Some(-max));
        assert_eq!(client.clock_skew_correction(), -max);
    }

    #[tokio::test]
    async fn a_huge_timeout_is_no_panic() {
        let client = KeycloakClient::builder(
            unreachable_endpoint(),
            ClientAuth::ClientSecretPost {
                client_id: "c".into(),
                secret: SecretString::from("s"),
            },
        )
        .timeout(Duration::MAX)
        .retry(RetryPolicy::new(
            2,
            Duration::MAX,
            Duration::from_millis(10),
        ))
        .build()
        .unwrap();
        let e = client.client_credentials(None).await.unwrap_err();
        assert!(
            matches!(e, KeycloakError::Network { attempts: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn broken_token_responses_are_described_without_their_values() {
        let problem = |body: &str, ct: Option<&str>| {
            let e = serde_json::from_str::<TokenResponse>(body)
                .map(|_| ())
                .unwrap_err();
            token_response_problem(body.as_bytes(), ct, &e)
        };
        let html = "<!DOCTYPE html><html><body>Gateway error</body></html>";
        assert!(problem(html, Some("text/html")).contains("HTML page"));
        assert!(problem(html, None).contains("HTML page"));
        let truncated = r#"{"access_token":"AT-secret","expires_in":30"#;
        let p = problem(truncated, Some("application/json"));
        assert!(
            p.contains("not valid JSON") && !p.contains("AT-secret"),
            "{p}"
        );
        assert_eq!(problem("[1]", None), "it is JSON but not an object");
        assert_eq!(
            problem(r#"{"token_type":"Bearer"}"#, None),
            "it has no access_token"
        );
        assert!(problem(r#"{"access_token":7}"#, None).contains("not a non-empty string"));
        for (value, says) in [
            ("-1", "negative"),
            ("-0.5", "negative"),
            ("1e30", "below 2^64"),
            ("18446744073709551616", "below 2^64"),
            ("300.5", "below 2^64"),
            ("\"300\"", "below 2^64"),
        ] {
            let body = format!(r#"{{"access_token":"AT-secret","expires_in":{value}}}"#);
            let p = problem(&body, None);
            assert!(p.contains("expires_in") && p.contains(says), "{value}: {p}");
            assert!(!p.contains("AT-secret"));
        }
    }

    #[test]
    fn basic_auth_form_encodes_and_is_sensitive() {
        let v = basic_auth("my client", &SecretString::from("p@ss:wörd")).unwrap();
        assert!(v.is_sensitive());
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "my%20client:p%40ss%3Aw%C3%B6rd"
        );
    }

    #[test]
    fn oauth_error_time_detection_and_sanitising() {
        assert!(
            OAuthError::new(400, "invalid_client", Some("Token is not active")).is_time_related()
        );
        assert!(
            OAuthError::new(
                400,
                "invalid_client",
                Some("Token was issued in the future")
            )
            .is_time_related()
        );
        assert!(
            !OAuthError::new(400, "invalid_client", Some("Token reuse detected")).is_time_related()
        );
        let e = OAuthError::new(
            401,
            "invalid_grant",
            Some("bad\u{7}\n".repeat(100).as_str()),
        );
        let d = e.description.unwrap();
        assert!(d.chars().count() <= 201 && !d.contains('\n') && !d.contains('\u{7}'));
    }
}

//! # flex-simulator
//!
//! A faithful, in-process simulator of Cybersource Flex v2 for tests and demos. It binds `127.0.0.1:0` and
//! serves, on one origin (which is both the API host and the `flx.origin` of its capture contexts):
//!
//! | request | what it does |
//! |---|---|
//! | `POST /microform/v2/sessions`, `/flex/v2/sessions`, `/up/v1/capture-contexts`, `/uc/v1/sessions` | checks merchant authentication (JWT v2 or HTTP Signature), answers a capture context (`application/jwt`) |
//! | `GET /flex/v2/public-keys/{kid}` | the bare JWK of the long-term signing key, or of a one-time key |
//! | `POST /flex/v2/tokens` (and `/flex/v2/token`) | decrypts the JWE, checks it, answers a transient token with a `Digest` header |
//!
//! The sessions endpoints also speak Cybersource message-level encryption (MLE): a body
//! `{"encryptedRequest":"<JWE>"}` (RSA-OAEP-256 + A256GCM to [the simulator's MLE
//! certificate](FlexSimulator::mle_certificate_pem), `kid` its subject serialNumber, `iat`) is decrypted
//! with josekit; [`FlexSimulator::require_request_mle`] refuses plaintext bodies; a JWT carrying
//! `v-c-response-mle-kid` gets its answer as `{"encryptedResponse":"<JWE>"}` encrypted to the merchant's
//! [registered response key](FlexSimulator::add_merchant_response_mle_key).
//! | anything else | 404, recorded in [`Stats::unrouted_requests`] |
//!
//! Capture contexts are RS256 JWTs signed with the simulator's long-term key (a short kid like Flex's `3g`)
//! and embed a fresh one-time RSA-2048 encryption key in `flx.jwk` (32-character kid), `iat`/`exp` = now and
//! now + 900. The tokens request is decrypted with josekit (OpenSSL) — independent of keybound's own JOSE
//! code — and must be `alg` RSA-OAEP / `enc` A256GCM with the one-time kid; its plaintext must be
//! `{"data":{…},"context":"<the capture context issued with that key>","index":0}` with the context
//! unexpired and its required fields present. The transient token is RS256 with `kid` = `flx.jwk.kid`, signed
//! by the one-time key, with `content`/`metadata` as in Cybersource's published examples.
//!
//! For Click to Pay, [`FlexSimulator::click_to_pay`] issues a transient token with a
//! `paymentCredentialsReference` and the encrypted payment credentials (EPC) JWE it names, encrypted to the
//! PSP's public key with josekit (see the `epc` module).
//!
//! Tests can [rotate the signing key](FlexSimulator::rotate_signing_key), read [`Stats`], and make the
//! simulator [misbehave](Misbehavior). No card data is kept: the simulator remembers only which fields a
//! tokens request had.

mod auth;
mod epc;
mod keys;
mod mle;

pub use epc::{CREDENTIALS_ISSUER, CREDENTIALS_ISSUER_KID, ClickToPay, ClickToPaySession};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::hash::{MessageDigest, hash};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::keys::{RsaKey, random_id, short_kid};

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Simulator settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimulatorConfig {
    /// Capture-context lifetime in seconds (Flex: 900).
    pub context_ttl_secs: u64,
    /// Transient-token lifetime in seconds (Flex: 900).
    pub token_ttl_secs: u64,
    /// Port to bind on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            context_ttl_secs: 900,
            token_ttl_secs: 900,
            port: 0,
        }
    }
}

impl SimulatorConfig {
    /// Sets [`SimulatorConfig::context_ttl_secs`].
    #[must_use]
    pub fn context_ttl_secs(mut self, secs: u64) -> Self {
        self.context_ttl_secs = secs;
        self
    }

    /// Sets [`SimulatorConfig::port`].
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

/// Ways the simulator can be told to misbehave (they add up; [`FlexSimulator::behave`] clears them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehavior {
    /// Issue capture contexts that expired 100 s ago.
    ExpiredContext,
    /// Sign capture contexts with an unrelated key (the header still names the real kid).
    ForgedContext,
    /// Use (and publish) a 1024-bit signing key.
    WeakSigningKey,
    /// Answer the next `n` requests, whatever they are, with HTTP 503.
    ServerErrors(u32),
    /// Send a wrong `Digest` header with transient tokens.
    BadDigest,
    /// Issue transient tokens that expired 100 s ago.
    ExpiredTransientToken,
    /// Sign transient tokens with an unrelated key.
    ForgedTransientToken,
    /// Wait this many milliseconds before answering any request (a slow or overloaded server).
    SlowResponses(u64),
    /// Answer the next `n` requests, whatever they are, with HTTP 200 and an HTML page (a proxy's or a login
    /// portal's page).
    HtmlPages(u32),
    /// Answer the next `n` requests, whatever they are, with HTTP 200 and truncated JSON.
    MalformedJson(u32),
    /// Serve public keys (`/flex/v2/public-keys/{kid}`) without their `kid` member.
    PublicKeyWithoutKid,
    /// Serve public keys under another `kid` than the one asked for.
    PublicKeyWithOtherKid,
}

#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    expired_context: bool,
    forged_context: bool,
    weak_key: bool,
    server_errors: u32,
    bad_digest: bool,
    expired_token: bool,
    forged_token: bool,
    delay_ms: u64,
    html_pages: u32,
    malformed_json: u32,
    key_without_kid: bool,
    key_with_other_kid: bool,
}

/// What the simulator has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `GET /flex/v2/public-keys/{kid}` requests, by kid.
    pub public_key_fetches: HashMap<String, u64>,
    /// Capture-context requests received.
    pub session_requests: u64,
    /// Capture-context requests refused for authentication.
    pub auth_failures: u64,
    /// Capture contexts issued.
    pub contexts_issued: u64,
    /// Tokens requests received.
    pub token_requests: u64,
    /// Tokens requests refused.
    pub token_rejections: u64,
    /// Transient tokens issued.
    pub tokens_issued: u64,
    /// Sessions requests whose body was an MLE `encryptedRequest` that decrypted.
    pub encrypted_requests: u64,
    /// Answers sent as an MLE `encryptedResponse`.
    pub encrypted_responses: u64,
    /// Requests answered wrongly on purpose (503, HTML page, truncated JSON).
    pub injected_errors: u64,
    /// Method and path of every request that matched no endpoint (answered 404), e.g. a key URL whose path a
    /// `kid` of `..` changed.
    pub unrouted_requests: Vec<String>,
}

impl Stats {
    /// Public-key fetches of every kid together.
    #[must_use]
    pub fn total_public_key_fetches(&self) -> u64 {
        self.public_key_fetches.values().sum()
    }
}

/// The kind of sessions endpoint a capture context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionKind {
    /// `/microform/v2/sessions`
    Microform,
    /// `/flex/v2/sessions`
    Flex,
    /// `/up/v1/capture-contexts`
    UnifiedPayments,
    /// `/uc/v1/sessions`
    UnifiedCheckout,
}

impl SessionKind {
    fn ctx_type(self) -> &'static str {
        match self {
            Self::Microform => "mf-2.0.0",
            Self::Flex => "mf-0.11.0",
            Self::UnifiedPayments | Self::UnifiedCheckout => "uc-1.0.0",
        }
    }

    fn token_type(self) -> &'static str {
        match self {
            Self::Microform | Self::Flex => "api-0.1.0",
            Self::UnifiedPayments | Self::UnifiedCheckout => "gda-0.10.0",
        }
    }
}

struct Issued {
    jwt: String,
    key: RsaKey,
    exp: u64,
    kind: SessionKind,
    required_fields: Vec<String>,
}

/// A summary of the last accepted tokens request (field names only, never values).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequestSummary {
    /// The JWE `kid`.
    pub kid: String,
    /// The JWE `alg` and `enc`.
    pub alg_enc: (String, String),
    /// Dotted paths of the non-empty fields of `data`.
    pub fields: Vec<String>,
}

struct Inner {
    config: SimulatorConfig,
    origin: String,
    signing_kid: Mutex<String>,
    signing_key: Mutex<RsaKey>,
    weak_key: RsaKey,
    forger: RsaKey,
    contexts: Mutex<HashMap<String, Issued>>,
    merchants: Mutex<auth::Merchants>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    last_rejection: Mutex<Option<String>>,
    last_token_request: Mutex<Option<TokenRequestSummary>>,
    counter: AtomicU64,
    mle: mle::MleIdentity,
    require_mle: std::sync::atomic::AtomicBool,
    response_mle_sha1: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Dropping it stops the server.
pub struct FlexSimulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for FlexSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlexSimulator")
            .field("base_url", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl Drop for FlexSimulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl FlexSimulator {
    /// Starts a simulator on `127.0.0.1:0` in the current tokio runtime.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SimulatorConfig::default()).await
    }

    /// Starts a simulator with `config` in the current tokio runtime.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start_with(config: SimulatorConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let (signing_key, weak_key, forger, mle) = tokio::task::spawn_blocking(|| {
            (
                RsaKey::generate(2048),
                RsaKey::generate(1024),
                RsaKey::generate(2048),
                mle::MleIdentity::generate(),
            )
        })
        .await
        .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            config,
            origin: format!("http://{addr}"),
            signing_kid: Mutex::new(short_kid()),
            signing_key: Mutex::new(signing_key),
            weak_key,
            forger,
            contexts: Mutex::default(),
            merchants: Mutex::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            last_rejection: Mutex::default(),
            last_token_request: Mutex::default(),
            counter: AtomicU64::new(0),
            mle,
            require_mle: std::sync::atomic::AtomicBool::new(false),
            response_mle_sha1: std::sync::atomic::AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/flex/v2/public-keys/{kid}", get(public_key))
            .route("/microform/v2/sessions", post(sessions))
            .route("/flex/v2/sessions", post(sessions))
            .route("/up/v1/capture-contexts", post(sessions))
            .route("/uc/v1/sessions", post(sessions))
            .route("/flex/v2/tokens", post(tokens))
            .route("/flex/v2/token", post(tokens))
            .fallback(unrouted)
            .with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "flex simulator stopped");
            }
        });
        Ok(Self {
            inner,
            addr,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT`: the API base URL, and the `flx.origin` of its capture contexts.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.inner.origin
    }

    /// The socket address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kid of the current long-term signing key.
    #[must_use]
    pub fn signing_kid(&self) -> String {
        lock(&self.inner.signing_kid).clone()
    }

    /// Replaces the signing key under the same kid (what breaks a cached key).
    pub fn rotate_signing_key(&self) {
        *lock(&self.inner.signing_key) = RsaKey::generate(2048);
    }

    /// Replaces the signing key and its kid; returns the new kid. The old kid is no longer served.
    pub fn rotate_signing_key_with_new_kid(&self) -> String {
        let key = RsaKey::generate(2048);
        let mut kid = lock(&self.inner.signing_kid);
        let mut new = short_kid();
        while new == *kid {
            new = short_kid();
        }
        *kid = new.clone();
        *lock(&self.inner.signing_key) = key;
        new
    }

    /// Adds a misbehaviour.
    pub fn misbehave(&self, m: Misbehavior) {
        let mut f = lock(&self.inner.faults);
        match m {
            Misbehavior::ExpiredContext => f.expired_context = true,
            Misbehavior::ForgedContext => f.forged_context = true,
            Misbehavior::WeakSigningKey => f.weak_key = true,
            Misbehavior::ServerErrors(n) => f.server_errors = n,
            Misbehavior::BadDigest => f.bad_digest = true,
            Misbehavior::ExpiredTransientToken => f.expired_token = true,
            Misbehavior::ForgedTransientToken => f.forged_token = true,
            Misbehavior::SlowResponses(ms) => f.delay_ms = ms,
            Misbehavior::HtmlPages(n) => f.html_pages = n,
            Misbehavior::MalformedJson(n) => f.malformed_json = n,
            Misbehavior::PublicKeyWithoutKid => f.key_without_kid = true,
            Misbehavior::PublicKeyWithOtherKid => f.key_with_other_kid = true,
        }
    }

    /// Clears every misbehaviour.
    pub fn behave(&self) {
        *lock(&self.inner.faults) = Faults::default();
    }

    /// Registers a merchant's RSA public key (SPKI PEM) for JWT authentication under `key_id`.
    pub fn add_merchant_jwt_key(&self, merchant_id: &str, key_id: &str, public_key_pem: &str) {
        lock(&self.inner.merchants)
            .jwt_keys
            .entry(merchant_id.to_owned())
            .or_default()
            .insert(key_id.to_owned(), public_key_pem.to_owned());
    }

    /// Registers a merchant's shared secret (base64) for HTTP Signature authentication under `key_id`.
    ///
    /// # Panics
    /// When `secret_b64` is not base64.
    pub fn add_merchant_shared_secret(&self, merchant_id: &str, key_id: &str, secret_b64: &str) {
        let secret = STANDARD
            .decode(secret_b64)
            // Documented panic (see # Panics): a test passing a non-base64 secret is a bug in the test.
            .expect("the shared secret must be base64");
        lock(&self.inner.merchants)
            .secrets
            .entry(merchant_id.to_owned())
            .or_default()
            .insert(key_id.to_owned(), secret);
    }

    /// The simulator's MLE certificate (PEM): what a merchant encrypts requests to, like Cybersource's
    /// `CyberSource_SJC_US` certificate. Its subject `serialNumber` is [`FlexSimulator::mle_kid`].
    #[must_use]
    pub fn mle_certificate_pem(&self) -> String {
        self.inner.mle.certificate_pem.clone()
    }

    /// The `kid` request JWEs must carry: the MLE certificate's subject serialNumber.
    #[must_use]
    pub fn mle_kid(&self) -> String {
        self.inner.mle.kid.clone()
    }

    /// Whether the sessions endpoints refuse a plaintext body (HTTP 400), as an MLE-required Cybersource
    /// API does (default: both accepted).
    pub fn require_request_mle(&self, required: bool) {
        self.inner.require_mle.store(required, Ordering::SeqCst);
    }

    /// Encrypts MLE responses with RSA-OAEP (SHA-1) instead of RSA-OAEP-256 (Cybersource uses either; a
    /// PKCS#11 token without OAEP-SHA256, such as Debian's SoftHSM 2.6, can unwrap only the former).
    pub fn response_mle_sha1(&self, sha1: bool) {
        self.inner.response_mle_sha1.store(sha1, Ordering::SeqCst);
    }

    /// Registers a merchant's response MLE public key (SPKI PEM) under `kid`: a JWT whose
    /// `v-c-response-mle-kid` is `kid` gets its answer encrypted to this key. A JWT naming a kid not
    /// registered here is refused (401).
    pub fn add_merchant_response_mle_key(
        &self,
        merchant_id: &str,
        kid: &str,
        public_key_pem: &str,
    ) {
        lock(&self.inner.merchants)
            .response_mle_keys
            .entry(merchant_id.to_owned())
            .or_default()
            .insert(kid.to_owned(), public_key_pem.to_owned());
    }

    /// Issues a capture context directly, without a merchant request (for tests and demos). `request` is
    /// the body a sessions endpoint would get.
    #[must_use]
    pub fn issue_capture_context(&self, kind: SessionKind, request: &Value) -> String {
        issue(&self.inner, kind, request)
    }

    /// The public key of the current signing key as SPKI PEM.
    #[must_use]
    pub fn signing_public_key_pem(&self) -> String {
        lock(&self.inner.signing_key).public_pem()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }

    /// Why the last refused request was refused.
    #[must_use]
    pub fn last_rejection(&self) -> Option<String> {
        lock(&self.inner.last_rejection).clone()
    }

    /// The last accepted tokens request (field names only).
    #[must_use]
    pub fn last_token_request(&self) -> Option<TokenRequestSummary> {
        lock(&self.inner.last_token_request).clone()
    }
}

/// A simulator running on its own thread and tokio runtime, for synchronous code (CLI tests, demos).
/// Dereferences to [`FlexSimulator`].
pub struct ThreadedSimulator {
    simulator: Option<FlexSimulator>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ThreadedSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThreadedSimulator")
            .field(&self.simulator)
            .finish()
    }
}

impl ThreadedSimulator {
    /// Starts a simulator on a runtime of its own.
    ///
    /// # Errors
    /// When the runtime cannot be built or the port bound.
    pub fn start(config: SimulatorConfig) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flex-simulator")
            .enable_all()
            .build()?;
        let simulator = runtime.block_on(FlexSimulator::start_with(config))?;
        Ok(Self {
            simulator: Some(simulator),
            runtime: Some(runtime),
        })
    }
}

impl std::ops::Deref for ThreadedSimulator {
    type Target = FlexSimulator;

    fn deref(&self) -> &FlexSimulator {
        // Both options are Some from construction until drop.
        self.simulator.as_ref().expect("simulator is running")
    }
}

impl Drop for ThreadedSimulator {
    fn drop(&mut self) {
        drop(self.simulator.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn reject(inner: &Inner, status: StatusCode, reason: impl Into<String>) -> Response {
    let reason = reason.into();
    tracing::debug!(%status, reason, "flex simulator refused a request");
    *lock(&inner.last_rejection) = Some(reason.clone());
    let body = json!({ "responseStatus": { "status": status.as_u16(), "reason": "SIMULATOR_REJECTED", "message": reason } });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Consumes one injected fault, if any: a 503, an HTML page or truncated JSON.
fn injected_error(inner: &Inner) -> Option<Response> {
    let mut f = lock(&inner.faults);
    let response = if f.server_errors > 0 {
        f.server_errors -= 1;
        (StatusCode::SERVICE_UNAVAILABLE, "simulated outage").into_response()
    } else if f.html_pages > 0 {
        f.html_pages -= 1;
        (
            StatusCode::OK,
            [("content-type", "text/html; charset=utf-8")],
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>Proxy login</form></body></html>\n",
        )
            .into_response()
    } else if f.malformed_json > 0 {
        f.malformed_json -= 1;
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"kty":"RSA","use":"sig","n":"#,
        )
            .into_response()
    } else {
        return None;
    };
    drop(f);
    lock(&inner.stats).injected_errors += 1;
    Some(response)
}

/// Waits as [`Misbehavior::SlowResponses`] says.
async fn delay(inner: &Inner) {
    let ms = lock(&inner.faults).delay_ms;
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

async fn public_key(State(inner): State<Arc<Inner>>, Path(kid): Path<String>) -> Response {
    delay(&inner).await;
    *lock(&inner.stats)
        .public_key_fetches
        .entry(kid.clone())
        .or_default() += 1;
    if let Some(r) = injected_error(&inner) {
        return r;
    }
    let mut jwk = if *lock(&inner.signing_kid) == kid {
        if lock(&inner.faults).weak_key {
            inner.weak_key.public_jwk(&kid)
        } else {
            lock(&inner.signing_key).public_jwk(&kid)
        }
    } else if let Some(issued) = lock(&inner.contexts).get(&kid) {
        issued.key.public_jwk(&kid)
    } else {
        return reject(&inner, StatusCode::NOT_FOUND, format!("no key {kid:?}"));
    };
    let faults = *lock(&inner.faults);
    if let Value::Object(members) = &mut jwk {
        if faults.key_without_kid {
            members.remove("kid");
        } else if faults.key_with_other_kid {
            members.insert("kid".into(), json!(format!("{kid}x")));
        }
    }
    ([("content-type", "application/json")], jwk.to_string()).into_response()
}

/// Any request no endpoint matches: recorded, answered 404.
async fn unrouted(State(inner): State<Arc<Inner>>, method: Method, uri: Uri) -> Response {
    lock(&inner.stats)
        .unrouted_requests
        .push(format!("{method} {}", uri.path()));
    reject(
        &inner,
        StatusCode::NOT_FOUND,
        format!("no endpoint {method} {}", uri.path()),
    )
}

fn kind_of(path: &str) -> SessionKind {
    match path {
        "/microform/v2/sessions" => SessionKind::Microform,
        "/flex/v2/sessions" => SessionKind::Flex,
        "/up/v1/capture-contexts" => SessionKind::UnifiedPayments,
        _ => SessionKind::UnifiedCheckout,
    }
}

async fn sessions(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&inner.stats).session_requests += 1;
    delay(&inner).await;
    if let Some(r) = injected_error(&inner) {
        return r;
    }
    let request = auth::Request {
        method: &method,
        path: uri.path(),
        target: uri.path_and_query().map_or(uri.path(), |p| p.as_str()),
        headers: &headers,
        body: &body,
    };
    let authenticated = auth::authenticate(&mut lock(&inner.merchants), &request);
    let authenticated = match authenticated {
        Ok(a) => a,
        Err(reason) => {
            lock(&inner.stats).auth_failures += 1;
            return reject(
                &inner,
                StatusCode::UNAUTHORIZED,
                format!("authentication failed: {reason}"),
            );
        }
    };
    let Ok(mut request_body) = serde_json::from_slice::<Value>(&body) else {
        return reject(
            &inner,
            StatusCode::BAD_REQUEST,
            "the request body is not JSON",
        );
    };
    // Message-level encryption: authentication (the JWT digest) covered the body as sent; the request is
    // its decrypted plaintext.
    if request_body.get("encryptedRequest").is_some() {
        let plaintext = match inner.mle.decrypt_request(&request_body) {
            Ok(p) => p,
            Err(reason) => return reject(&inner, StatusCode::BAD_REQUEST, reason),
        };
        request_body = match serde_json::from_slice::<Value>(&plaintext) {
            Ok(v) => v,
            Err(_) => {
                return reject(
                    &inner,
                    StatusCode::BAD_REQUEST,
                    "the decrypted MLE request is not JSON",
                );
            }
        };
        lock(&inner.stats).encrypted_requests += 1;
    } else if inner.require_mle.load(Ordering::SeqCst) {
        return reject(
            &inner,
            StatusCode::BAD_REQUEST,
            "message-level encryption is required: the body must be {\"encryptedRequest\": <JWE>}",
        );
    }
    let kind = kind_of(uri.path());
    let inner2 = inner.clone();
    let jwt = match tokio::task::spawn_blocking(move || issue(&inner2, kind, &request_body)).await {
        Ok(jwt) => jwt,
        Err(_) => {
            return reject(
                &inner,
                StatusCode::INTERNAL_SERVER_ERROR,
                "key generation failed",
            );
        }
    };
    if let Some(kid) = &authenticated.response_mle_kid {
        let pem = lock(&inner.merchants)
            .response_mle_keys
            .get(&authenticated.merchant)
            .and_then(|keys| keys.get(kid))
            .cloned();
        let encrypted = pem
            .ok_or_else(|| "no response MLE key".to_owned())
            .and_then(|pem| {
                let sha1 = inner.response_mle_sha1.load(Ordering::SeqCst);
                mle::encrypt_response(&pem, kid, jwt.as_bytes(), sha1)
            });
        return match encrypted {
            Ok(body) => {
                lock(&inner.stats).encrypted_responses += 1;
                (
                    StatusCode::CREATED,
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response()
            }
            Err(reason) => reject(&inner, StatusCode::INTERNAL_SERVER_ERROR, reason),
        };
    }
    (
        StatusCode::CREATED,
        [("content-type", "application/jwt")],
        jwt,
    )
        .into_response()
}

/// Dotted paths of fields marked `{"required": true}` in a Flex `fields` request.
fn required_paths(
    prefix: &str,
    fields: &Map<String, Value>,
    required: &mut Vec<String>,
    optional: &mut Vec<String>,
) {
    for (k, v) in fields {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Value::Object(m) = v else { continue };
        match m.get("required") {
            Some(Value::Bool(true)) => required.push(path),
            Some(Value::Bool(false)) => optional.push(path),
            _ => required_paths(&path, m, required, optional),
        }
    }
}

fn issue(inner: &Inner, kind: SessionKind, request: &Value) -> String {
    let faults = *lock(&inner.faults);
    let one_time = RsaKey::generate(2048);
    let one_time_kid = random_id(32, false);
    let t = now();
    let (iat, exp) = if faults.expired_context {
        (t - 1000, t - 100)
    } else {
        (t, t + inner.config.context_ttl_secs)
    };
    let (mut required, mut optional) = (Vec::new(), Vec::new());
    if let Some(Value::Object(fields)) = request.get("fields") {
        required_paths("", fields, &mut required, &mut optional);
    }
    if required.is_empty() {
        required.push("paymentInformation.card.number".to_owned());
    }
    let target_origins = request
        .get("targetOrigins")
        .cloned()
        .unwrap_or_else(|| json!(["http://localhost:3000"]));
    let origin = &inner.origin;
    let mut data = json!({ "targetOrigins": target_origins, "mfOrigin": origin });
    if matches!(
        kind,
        SessionKind::Microform | SessionKind::UnifiedPayments | SessionKind::UnifiedCheckout
    ) {
        data["clientLibrary"] = json!(format!(
            "{origin}/microform/bundle/v2/flex-microform.min.js"
        ));
        data["clientLibraryIntegrity"] = json!("sha256-c2ltdWxhdG9yLW5vdC1hLXJlYWwtbGlicmFyeQ==");
    }
    data["requiredFields"] = json!(required);
    if !optional.is_empty() {
        data["optionalFields"] = json!(optional);
    }
    let mut flx_data = vec![0u8; 48];
    // OpenSSL's RNG is seeded from the OS at start-up; failing here means the process cannot do crypto.
    openssl::rand::rand_bytes(&mut flx_data).expect("OpenSSL random bytes");
    let claims = json!({
        "flx": {
            "path": "/flex/v2/tokens",
            "data": STANDARD.encode(flx_data),
            "origin": origin,
            "jwk": one_time.public_jwk(&one_time_kid),
        },
        "ctx": [ { "data": data, "type": kind.ctx_type() } ],
        "iss": "Flex API",
        "exp": exp,
        "iat": iat,
        "jti": random_id(16, false),
    });
    let kid = lock(&inner.signing_kid).clone();
    let jwt = if faults.forged_context {
        inner.forger.sign_rs256(&kid, &claims)
    } else if faults.weak_key {
        inner.weak_key.sign_rs256(&kid, &claims)
    } else {
        lock(&inner.signing_key).sign_rs256(&kid, &claims)
    };
    lock(&inner.contexts).insert(
        one_time_kid,
        Issued {
            jwt: jwt.clone(),
            key: one_time,
            exp,
            kind,
            required_fields: required,
        },
    );
    lock(&inner.stats).contexts_issued += 1;
    jwt
}

async fn tokens(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    delay(&inner).await;
    lock(&inner.stats).token_requests += 1;
    if let Some(r) = injected_error(&inner) {
        return r;
    }
    let inner2 = inner.clone();
    let result = tokio::task::spawn_blocking(move || tokenize(&inner2, &body)).await;
    match result {
        Ok(Ok(token)) => {
            lock(&inner.stats).tokens_issued += 1;
            let digest = if lock(&inner.faults).bad_digest {
                format!("SHA-256={}", sha256_b64(b"something else"))
            } else {
                format!("SHA-256={}", sha256_b64(token.as_bytes()))
            };
            let mut response =
                (StatusCode::OK, [("content-type", "application/jwt")], token).into_response();
            if let Ok(v) = HeaderValue::from_str(&digest) {
                response.headers_mut().insert("digest", v);
            }
            response
        }
        Ok(Err((status, reason))) => {
            lock(&inner.stats).token_rejections += 1;
            reject(&inner, status, reason)
        }
        Err(_) => reject(
            &inner,
            StatusCode::INTERNAL_SERVER_ERROR,
            "tokenization task failed",
        ),
    }
}

fn sha256_b64(bytes: &[u8]) -> String {
    // SHA-256 is always available in OpenSSL; hashing fails only on allocation failure.
    STANDARD.encode(hash(MessageDigest::sha256(), bytes).expect("SHA-256"))
}

type Refusal = (StatusCode, String);

fn bad(reason: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, reason.into())
}

/// Non-empty leaf paths of `data`.
fn leaf_paths(prefix: &str, map: &Map<String, Value>, out: &mut Vec<String>) {
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(m) => leaf_paths(&path, m, out),
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            _ => out.push(path),
        }
    }
}

fn tokenize(inner: &Inner, body: &[u8]) -> Result<String, Refusal> {
    // Body: {"keyId":"<JWE>"} (as the iOS SDK sends it) or the bare JWE.
    let text = std::str::from_utf8(body)
        .map_err(|_| bad("the body is not UTF-8"))?
        .trim();
    let jwe = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|_| bad("the body is not JSON"))?;
        v.get("keyId")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the body has no keyId"))?
            .to_owned()
    } else {
        text.to_owned()
    };
    let header_b64 = jwe.split('.').next().unwrap_or_default();
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("the JWE header is not base64url JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let enc = header
        .get("enc")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if alg != "RSA-OAEP" || enc != "A256GCM" {
        return Err(bad(format!(
            "the JWE must be RSA-OAEP / A256GCM, not {alg} / {enc}"
        )));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the JWE has no kid"))?
        .to_owned();
    let contexts = lock(&inner.contexts);
    let issued = contexts
        .get(&kid)
        .ok_or_else(|| bad("the JWE kid is not the key of any capture context issued here"))?;
    let decrypter = josekit::jwe::RSA_OAEP
        .decrypter_from_der(issued.key.pkcs8_der())
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "decrypter".to_owned()))?;
    let (plaintext, _) = josekit::jwe::deserialize_compact(&jwe, &decrypter)
        .map_err(|_| bad("the JWE does not decrypt (tampered or wrong key)"))?;
    let payload: Map<String, Value> = serde_json::from_slice(&plaintext)
        .map_err(|_| bad("the decrypted payload is not a JSON object"))?;
    let context = payload
        .get("context")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the payload has no context"))?;
    if context != issued.jwt {
        return Err(bad(
            "the payload's context is not the capture context issued with this key",
        ));
    }
    if now() > issued.exp {
        return Err((StatusCode::GONE, "the capture context has expired".into()));
    }
    if payload.get("index") != Some(&json!(0)) {
        return Err(bad("index must be 0"));
    }
    let Some(Value::Object(data)) = payload.get("data") else {
        return Err(bad("the payload has no data object"));
    };
    let mut fields = Vec::new();
    leaf_paths("", data, &mut fields);
    if let Some(missing) = issued.required_fields.iter().find(|f| !fields.contains(f)) {
        return Err(bad(format!("required field {missing} is missing")));
    }
    let token = transient_token(inner, &kid, issued, data);
    *lock(&inner.last_token_request) = Some(TokenRequestSummary {
        kid,
        alg_enc: (alg, enc),
        fields,
    });
    Ok(token)
}

fn card_type(number: &str) -> &'static str {
    match number.as_bytes().first() {
        Some(b'4') => "001",
        Some(b'5' | b'2') => "002",
        Some(b'3') => "003",
        Some(b'6') => "004",
        _ => "000",
    }
}

/// `content` for `data`: `{}` per captured field, `{"value":…}` for expiry and type, the card number masked.
fn content(map: &Map<String, Value>, in_card: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        match v {
            Value::Object(m) => {
                let inner = content(m, k == "card");
                if !inner.is_empty() {
                    out.insert(k.clone(), Value::Object(inner));
                }
            }
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::String(s) if in_card && k == "number" => {
                let digits = s.len();
                let masked = format!(
                    "{}{}",
                    "X".repeat(digits.saturating_sub(4)),
                    &s[digits.saturating_sub(4)..]
                );
                out.insert(
                    k.clone(),
                    json!({ "maskedValue": masked, "bin": &s[..digits.min(6)] }),
                );
            }
            Value::String(s)
                if in_card
                    && matches!(k.as_str(), "expirationMonth" | "expirationYear" | "type") =>
            {
                out.insert(k.clone(), json!({ "value": s }));
            }
            _ => {
                out.insert(k.clone(), json!({}));
            }
        }
    }
    out
}

fn transient_token(inner: &Inner, kid: &str, issued: &Issued, data: &Map<String, Value>) -> String {
    let faults = *lock(&inner.faults);
    let mut content = content(data, false);
    let number = data
        .get("paymentInformation")
        .and_then(|p| p.get("card"))
        .and_then(|c| c.get("number"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(Value::Object(card)) = content
        .get_mut("paymentInformation")
        .and_then(|p| p.get_mut("card"))
    {
        if !card.contains_key("type") && !number.is_empty() {
            card.insert("type".into(), json!({ "value": card_type(&number) }));
        }
    }
    let t = now();
    let (iat, exp) = if faults.expired_token {
        (t - 1000, t - 100)
    } else {
        (t, t + inner.config.token_ttl_secs)
    };
    let seq = inner.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let mut claims = json!({
        "metadata": {
            "sequenceNumber": seq.to_string(),
            "cardholderAuthenticationStatus": false,
            "paymentType": "PANENTRY",
        },
        "iss": "Flex/00",
        "exp": exp,
        "type": issued.kind.token_type(),
        "iat": iat,
        "jti": random_id(64, true),
        "content": content,
    });
    // Cartes Bancaires co-badged BINs match two card types.
    if number.starts_with("403550") || number.starts_with("497010") {
        claims["detectedCardTypes"] = json!(["001", "036"]);
    }
    if faults.forged_token {
        inner.forger.sign_rs256(kid, &claims)
    } else {
        issued.key.sign_rs256(kid, &claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_masks_the_number_and_discloses_only_expiry_and_type() {
        let data = json!({
            "paymentInformation": {"card": {"number": "4111111111111111", "expirationMonth": "12",
                "expirationYear": "2031", "securityCode": "123", "type": ""}},
            "orderInformation": {"billTo": {"firstName": "John", "email": ""}, "amountDetails": {"totalAmount": "1.00"}}
        });
        let c = Value::Object(content(data.as_object().unwrap(), false));
        assert_eq!(
            c,
            json!({
                "paymentInformation": {"card": {
                    "number": {"maskedValue": "XXXXXXXXXXXX1111", "bin": "411111"},
                    "expirationMonth": {"value": "12"}, "expirationYear": {"value": "2031"}, "securityCode": {}}},
                "orderInformation": {"billTo": {"firstName": {}}, "amountDetails": {"totalAmount": {}}}
            })
        );
        assert!(
            !c.to_string().contains("123\""),
            "the security code is not disclosed"
        );
        let mut required = Vec::new();
        let mut optional = Vec::new();
        let fields = json!({"paymentInformation": {"card": {"number": {"required": true}, "securityCode": {"required": false}}}});
        required_paths(
            "",
            fields.as_object().unwrap(),
            &mut required,
            &mut optional,
        );
        assert_eq!(
            (required, optional),
            (
                vec!["paymentInformation.card.number".to_owned()],
                vec!["paymentInformation.card.securityCode".to_owned()]
            )
        );
    }
}

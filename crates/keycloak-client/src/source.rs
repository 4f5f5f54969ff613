//! [`TokenSource`]: an access token for services, cached, refreshed ahead of expiry, single-flight, and
//! calm during an identity-provider outage.
//!
//! - `access_token().await` returns the cached token while it is fresh: until `expires_in - margin` after it
//!   was requested, where the margin (default 30 s) is capped at half the token's lifetime, so a short-lived
//!   token is still used for at least half its life.
//! - When it is stale, ONE renewal runs (as its own task, so that no caller's cancellation decides its
//!   fate) and its result, the new token or the error, is shared with every caller waiting for it: any
//!   number of concurrent callers cause exactly one renewal.
//! - A caller that holds a still-valid cached token waits for a renewal only in the renewal's first
//!   `stale_wait` (default 1 s), then takes the cached token: a renewal that hangs (an identity provider
//!   that accepts connections but does not answer, up to the client's timeout × attempts) delays no one
//!   for long.
//! - After a failed renewal, the next one waits a backoff (`renewal_backoff`: 1 s, doubled per consecutive
//!   failure up to 30 s, each drawn at random from its upper half). Meanwhile callers get the cached token
//!   at once while it is valid, and the failed renewal's error (the same [`KeycloakError::Shared`]) once it
//!   has expired or when there is none, without a request: the server sees at most one renewal per
//!   backoff window however many callers there are.
//! - A renewal uses the refresh token while that is valid (the client re-authenticates every time), and
//!   runs the full grant (password or client credentials) when there is none or the server refuses it with
//!   `invalid_grant`.
//!
//! Deadlines use the monotonic clock, with checked arithmetic (durations from settings are capped at 1 h,
//! lifetimes from the server at 30 days). Tokens and passwords are never logged.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::watch;

use crate::client::KeycloakClient;
use crate::error::{KeycloakError, OAuthErrorCode};
use crate::response::TokenResponse;

/// Default refresh margin: 30 s before expiry.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Default wait before the renewal that follows a failed one: 1 s (doubled per consecutive failure).
pub const DEFAULT_RENEWAL_BACKOFF: Duration = Duration::from_secs(1);

/// Default longest wait between failed renewals: 30 s.
pub const DEFAULT_MAX_RENEWAL_BACKOFF: Duration = Duration::from_secs(30);

/// Default time a caller holding a still-valid token waits for a renewal in flight: 1 s from its start.
pub const DEFAULT_STALE_WAIT: Duration = Duration::from_secs(1);

/// Longest backoff or stale wait taken from settings (1 h); longer values are taken as 1 h.
pub const MAX_SETTING: Duration = Duration::from_secs(3600);

/// A cached token is handed out in its stale window only while it has more than this left.
const VALID_AT_LEAST: Duration = Duration::from_secs(1);

/// Lifetime assumed when a response has no `expires_in`: 60 s.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);

/// Longest lifetime believed (30 days): a server's absurd `expires_in` must not overflow a deadline.
const MAX_BELIEVED_SECS: u64 = 30 * 24 * 3600;

fn believed(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_BELIEVED_SECS))
}

/// `at + d`, or `at` itself on overflow (which the capped durations used here cannot reach).
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

/// `at - d`, or `at` itself when that would be before the monotonic clock's origin.
fn before(at: Instant, d: Duration) -> Instant {
    at.checked_sub(d).unwrap_or(at)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The grant a [`TokenSource`] runs when it has no usable refresh token.
#[non_exhaustive]
pub enum FullGrant {
    /// Resource-owner password grant for a technical user.
    Password {
        /// Username.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// Client-credentials grant.
    ClientCredentials,
}

impl FullGrant {
    /// A password grant.
    #[must_use]
    pub fn password(username: impl Into<String>, password: SecretString) -> Self {
        Self::Password {
            username: username.into(),
            password,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Password { .. } => "password",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Debug for FullGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            Self::ClientCredentials => f.write_str("ClientCredentials"),
        }
    }
}

/// A cached access token.
struct Cached {
    access_token: SecretString,
    expires_at: Instant,
    refresh_at: Instant,
    refresh_token: Option<SecretString>,
    /// `None`: no known expiry (offline token, or the server did not say).
    refresh_expires_at: Option<Instant>,
}

impl Cached {
    fn from_response(
        r: TokenResponse,
        requested_at: Instant,
        margin: Duration,
        previous_rt: Option<SecretString>,
    ) -> Self {
        let lifetime = r.expires_in.map_or(ASSUMED_LIFETIME, believed);
        let expires_at = after(requested_at, lifetime);
        let refresh_at = before(expires_at, margin.min(lifetime / 2));
        let refresh_expires_at = match r.refresh_expires_in {
            Some(0) | None => None,
            // A little early, so a refresh is not sent with a token about to expire in flight.
            Some(s) => {
                let d = believed(s);
                Some(before(
                    after(requested_at, d),
                    Duration::from_secs(5).min(d / 2),
                ))
            }
        };
        Self {
            access_token: r.access_token,
            expires_at,
            refresh_at,
            // Keycloak rotates refresh tokens; keep the old one only if the server sent none.
            refresh_token: r.refresh_token.or(previous_rt),
            refresh_expires_at,
        }
    }
}

/// The result of one renewal, shared with every caller that waited for it.
type Outcome = Result<Arc<Cached>, Arc<KeycloakError>>;

/// A renewal in flight.
struct Flight {
    started: Instant,
    /// `None` until the renewal ends; closed without a value if it was abandoned (runtime shut down).
    result: watch::Receiver<Option<Outcome>>,
}

/// Everything callers share, behind one lock held only for bookkeeping (never across an `await`).
#[derive(Default)]
struct State {
    cached: Option<Arc<Cached>>,
    flight: Option<Flight>,
    /// Consecutive failed renewals.
    failures: u32,
    /// After a failed renewal: no new one before this instant, and the error callers without a valid
    /// token get meanwhile.
    backoff: Option<(Instant, Arc<KeycloakError>)>,
}

/// A cached, single-flight source of access tokens for one client and grant. Share it as `Arc<TokenSource>`.
pub struct TokenSource {
    client: Arc<KeycloakClient>,
    grant: Arc<FullGrant>,
    scope: Option<Arc<str>>,
    margin: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    stale_wait: Duration,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client", &self.client)
            .field("grant", &self.grant)
            .field("scope", &self.scope)
            .field("margin", &self.margin)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("stale_wait", &self.stale_wait)
            .finish_non_exhaustive()
    }
}

/// What `access_token` does after looking at the state.
enum Step {
    /// Return this token.
    Ready(SecretString),
    /// Return this (shared) error.
    Fail(Arc<KeycloakError>),
    /// Wait for the renewal in flight; with a still-valid token to return instead when `deadline` comes
    /// first or the renewal fails.
    Wait {
        result: watch::Receiver<Option<Outcome>>,
        fallback: Option<(SecretString, Instant)>,
    },
}

impl TokenSource {
    /// A token source running `grant` with `client`.
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
    /// use std::sync::Arc;
    /// use keycloak_client::{FullGrant, TokenSource};
    /// use keycloak_client::secrecy::ExposeSecret as _;
    /// let client = Arc::new(KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer)).build()?);
    /// let password = SecretString::from(std::env::var("LENDER_PASSWORD")?);
    /// let tokens = Arc::new(TokenSource::new(client, FullGrant::password("exampleuser@bank.example.com", password)));
    /// // Share `tokens`; every caller gets a valid token, and concurrent callers cause one request.
    /// let token = tokens.access_token().await?;
    /// let authorization = format!("Bearer {}", token.expose_secret());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new(client: Arc<KeycloakClient>, grant: FullGrant) -> Self {
        Self {
            client,
            grant: Arc::new(grant),
            scope: None,
            margin: DEFAULT_REFRESH_MARGIN,
            initial_backoff: DEFAULT_RENEWAL_BACKOFF,
            max_backoff: DEFAULT_MAX_RENEWAL_BACKOFF,
            stale_wait: DEFAULT_STALE_WAIT,
            state: Arc::default(),
        }
    }

    /// Refresh this long before expiry (default 30 s; capped at half the token lifetime).
    #[must_use]
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Backoff after failed renewals: `initial` after the first (default 1 s), doubled per consecutive
    /// failure up to `max` (default 30 s); each wait is drawn at random between half and all of that.
    /// Values above [`MAX_SETTING`] (1 h) are taken as 1 h, and `initial` as at most `max`.
    #[must_use]
    pub fn renewal_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.max_backoff = max.min(MAX_SETTING);
        self.initial_backoff = initial.min(self.max_backoff);
        self
    }

    /// How long, from the start of a renewal, a caller that holds a still-valid cached token waits for the
    /// renewal's result before taking the cached token (default 1 s; at most [`MAX_SETTING`]). Zero: such
    /// callers never wait, the renewal runs in the background.
    #[must_use]
    pub fn stale_wait(mut self, wait: Duration) -> Self {
        self.stale_wait = wait.min(MAX_SETTING);
        self
    }

    /// Request this scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(Arc::from(scope.into()));
        self
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &Arc<KeycloakClient> {
        &self.client
    }

    /// A valid access token: the cached one while it is fresh, else the result of the one renewal in
    /// flight (started by this call if there is none and no backoff holds it back). While the cached token
    /// is still valid, it is returned as soon as the renewal fails, is held back by a backoff, or has run
    /// longer than `stale_wait`.
    ///
    /// Must be called within a Tokio runtime (the renewal runs as a task of it).
    ///
    /// # Errors
    /// Only when there is no valid token: [`KeycloakError::Shared`] holding the error of the failed
    /// renewal (as [`KeycloakClient::password_grant`] / [`KeycloakClient::client_credentials`]), the same
    /// for every caller until the backoff has passed; [`KeycloakError::Config`] outside a Tokio runtime.
    pub async fn access_token(&self) -> Result<SecretString, KeycloakError> {
        loop {
            let step = self.step(Instant::now())?;
            let (result, fallback) = match step {
                Step::Ready(token) => return Ok(token),
                Step::Fail(e) => return Err(KeycloakError::Shared(e)),
                Step::Wait { result, fallback } => (result, fallback),
            };
            let outcome = match &fallback {
                Some((token, deadline)) => {
                    match tokio::time::timeout_at((*deadline).into(), outcome_of(result)).await {
                        Ok(outcome) => outcome,
                        // The renewal is slow (a hanging server?): the cached token is still valid.
                        Err(_) => return Ok(token.clone()),
                    }
                }
                None => outcome_of(result).await,
            };
            match (outcome, fallback) {
                (Some(Ok(cached)), _) => return Ok(cached.access_token.clone()),
                (Some(Err(_)), Some((token, _))) => return Ok(token),
                (Some(Err(e)), None) => return Err(KeycloakError::Shared(e)),
                // The renewal was abandoned without a result (its runtime is shutting down): look again.
                (None, _) => {}
            }
        }
    }

    /// Decides what a caller does now, starting a renewal if one is due.
    fn step(&self, now: Instant) -> Result<Step, KeycloakError> {
        let mut state = lock(&self.state);
        let cached = state.cached.clone();
        if let Some(c) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(Step::Ready(c.access_token.clone()));
        }
        let valid = cached
            .as_ref()
            .filter(|c| c.expires_at.saturating_duration_since(now) > VALID_AT_LEAST);
        let (result, started) = match &state.flight {
            Some(f) => (f.result.clone(), f.started),
            None => {
                if let Some((until, error)) = &state.backoff {
                    if now < *until {
                        return Ok(match valid {
                            Some(c) => Step::Ready(c.access_token.clone()),
                            None => Step::Fail(error.clone()),
                        });
                    }
                }
                (self.start(&mut state, now)?, now)
            }
        };
        drop(state);
        let fallback = match valid {
            Some(c) => {
                let deadline =
                    after(started, self.stale_wait).min(before(c.expires_at, VALID_AT_LEAST));
                if deadline <= now {
                    return Ok(Step::Ready(c.access_token.clone()));
                }
                Some((c.access_token.clone(), deadline))
            }
            None => None,
        };
        Ok(Step::Wait { result, fallback })
    }

    /// Starts the renewal task; the caller holds the state lock.
    fn start(
        &self,
        state: &mut State,
        now: Instant,
    ) -> Result<watch::Receiver<Option<Outcome>>, KeycloakError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            KeycloakError::config("TokenSource::access_token must be called within a Tokio runtime")
        })?;
        let (tx, rx) = watch::channel(None);
        state.flight = Some(Flight {
            started: now,
            result: rx.clone(),
        });
        let renewal = Renewal {
            client: self.client.clone(),
            grant: self.grant.clone(),
            scope: self.scope.clone(),
            margin: self.margin,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            previous: state.cached.clone(),
        };
        let guard = FlightGuard {
            state: self.state.clone(),
            tx: Some(tx),
        };
        runtime.spawn(renewal.run(guard));
        Ok(rx)
    }

    /// Forgets the cached access token (e.g. after an API answered 401), keeping the refresh token.
    pub fn invalidate(&self) {
        let mut state = lock(&self.state);
        if let Some(c) = state.cached.as_ref() {
            let now = Instant::now();
            state.cached = Some(Arc::new(Cached {
                access_token: c.access_token.clone(),
                expires_at: now,
                refresh_at: now,
                refresh_token: c.refresh_token.clone(),
                refresh_expires_at: c.refresh_expires_at,
            }));
        }
    }
}

/// The renewal's result once it has one; `None` if the renewal was abandoned.
async fn outcome_of(mut result: watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    result
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|r| r.clone())
}

/// The wait before the renewal after `failures` consecutive failed ones: `initial` doubled per failure,
/// capped at `max`, drawn at random from its upper half (so that many processes do not retry in step).
fn renewal_backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max);
    // 0..1000 from a random UUID's bits (no extra RNG dependency).
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    base / 2 + (base / 2).mul_f64(f64::from(r) / 1000.0)
}

/// Publishes a renewal's outcome; if the renewal is dropped before it has one (its runtime shut down),
/// frees the slot so that the next caller starts another, and closes the channel so that waiters look
/// again.
struct FlightGuard {
    state: Arc<Mutex<State>>,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl FlightGuard {
    fn finish(mut self, outcome: Outcome, client: &KeycloakClient, backoff: (Duration, Duration)) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.flight = None;
        match &outcome {
            Ok(cached) => {
                state.cached = Some(cached.clone());
                state.failures = 0;
                state.backoff = None;
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = renewal_backoff(backoff.0, backoff.1, state.failures);
                state.backoff = Some((after(now, wait), error.clone()));
                let valid_for = state
                    .cached
                    .as_ref()
                    .map(|c| c.expires_at.saturating_duration_since(now))
                    .filter(|d| *d > VALID_AT_LEAST);
                match valid_for {
                    Some(valid_for) => tracing::warn!(
                        client_id = client.client_id(),
                        error = %error,
                        failures = state.failures,
                        retry_in_ms = wait.as_millis() as u64,
                        valid_for_secs = valid_for.as_secs(),
                        "could not renew the access token; callers get the cached one until it expires"
                    ),
                    None => tracing::warn!(
                        client_id = client.client_id(),
                        error = %error,
                        failures = state.failures,
                        retry_in_ms = wait.as_millis() as u64,
                        "could not renew the access token and there is no valid one; callers get this error \
                         until the next attempt"
                    ),
                }
            }
        }
        drop(state);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(outcome));
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Abandoned: free the slot before the channel closes (waiters then look again).
            lock(&self.state).flight = None;
        }
    }
}

/// One renewal, owning what it needs (it runs as its own task).
struct Renewal {
    client: Arc<KeycloakClient>,
    grant: Arc<FullGrant>,
    scope: Option<Arc<str>>,
    margin: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    previous: Option<Arc<Cached>>,
}

impl Renewal {
    async fn run(self, guard: FlightGuard) {
        let outcome = self.obtain().await.map(Arc::new).map_err(Arc::new);
        guard.finish(
            outcome,
            &self.client,
            (self.initial_backoff, self.max_backoff),
        );
    }

    async fn obtain(&self) -> Result<Cached, KeycloakError> {
        let scope = self.scope.as_deref();
        let usable_rt = self
            .previous
            .as_deref()
            .and_then(|p| {
                p.refresh_token
                    .as_ref()
                    .map(|rt| (rt, p.refresh_expires_at))
            })
            .filter(|(_, exp)| exp.is_none_or(|e| Instant::now() < e))
            .map(|(rt, _)| rt);
        if let Some(rt) = usable_rt {
            let requested_at = Instant::now();
            match self.client.refresh(rt, scope).await {
                Ok(r) => {
                    return Ok(Cached::from_response(
                        r,
                        requested_at,
                        self.margin,
                        Some(rt.clone()),
                    ));
                }
                Err(KeycloakError::OAuth(e)) if e.code == OAuthErrorCode::InvalidGrant => {
                    tracing::info!(
                        client_id = self.client.client_id(),
                        grant = self.grant.name(),
                        error = %e,
                        "the refresh token was refused (invalid_grant); running the full grant"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let requested_at = Instant::now();
        let r = match self.grant.as_ref() {
            FullGrant::Password { username, password } => {
                self.client
                    .password_grant(username, password, scope)
                    .await?
            }
            FullGrant::ClientCredentials => self.client.client_credentials(scope).await?,
        };
        Ok(Cached::from_response(r, requested_at, self.margin, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(expires_in: u64, refresh_expires_in: Option<u64>) -> TokenResponse {
        serde_json::from_value(serde_json::json!({
            "access_token": "a", "token_type": "Bearer", "expires_in": expires_in,
            "refresh_token": "r", "refresh_expires_in": refresh_expires_in,
        }))
        .unwrap()
    }

    #[test]
    fn refresh_point_is_margin_before_expiry_capped_at_half_lifetime() {
        let t0 = Instant::now();
        let c = Cached::from_response(response(300, Some(1800)), t0, DEFAULT_REFRESH_MARGIN, None);
        assert_eq!(c.expires_at - t0, Duration::from_secs(300));
        assert_eq!(c.refresh_at - t0, Duration::from_secs(270));
        assert_eq!(
            c.refresh_expires_at.unwrap() - t0,
            Duration::from_secs(1795)
        );
        // A 40 s token: 30 s margin is capped at 20 s (half the lifetime).
        let c = Cached::from_response(response(40, Some(0)), t0, DEFAULT_REFRESH_MARGIN, None);
        assert_eq!(c.refresh_at - t0, Duration::from_secs(20));
        assert!(
            c.refresh_expires_at.is_none(),
            "0 means no known expiry (offline token)"
        );
        let c = Cached::from_response(response(300, None), t0, Duration::from_secs(10), None);
        assert_eq!(c.refresh_at - t0, Duration::from_secs(290));
        // An absurd lifetime is capped instead of overflowing the deadline.
        let c = Cached::from_response(
            response(u64::MAX, Some(u64::MAX)),
            t0,
            DEFAULT_REFRESH_MARGIN,
            None,
        );
        assert_eq!(c.expires_at - t0, Duration::from_secs(MAX_BELIEVED_SECS));
    }

    #[test]
    fn renewal_backoff_doubles_is_jittered_and_bounded() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            for (failures, base) in [
                (1, 1),
                (2, 2),
                (3, 4),
                (5, 16),
                (6, 30),
                (40, 30),
                (u32::MAX, 30),
            ] {
                let b = renewal_backoff(initial, max, failures);
                let base = Duration::from_secs(base);
                assert!(b >= base / 2 && b <= base, "{failures}: {b:?}");
                seen.insert(b);
            }
        }
        assert!(seen.len() > 50, "jittered");
        assert_eq!(
            renewal_backoff(Duration::ZERO, Duration::ZERO, 3),
            Duration::ZERO
        );
        // The largest settings cannot overflow a deadline.
        let b = renewal_backoff(MAX_SETTING, MAX_SETTING, u32::MAX);
        assert!(b <= MAX_SETTING);
        assert!(Instant::now().checked_add(b).is_some());
    }

    fn unreachable_client() -> Arc<KeycloakClient> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = crate::TokenEndpoint::from_token_url(&format!(
            "http://127.0.0.1:{port}/realms/r/protocol/openid-connect/token"
        ))
        .unwrap();
        Arc::new(
            KeycloakClient::builder(
                endpoint,
                crate::ClientAuth::ClientSecretPost {
                    client_id: "c".into(),
                    secret: SecretString::from("s"),
                },
            )
            .retry(crate::RetryPolicy::no_retries())
            .build()
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn out_of_range_settings_are_capped_not_overflowed() {
        let source = TokenSource::new(unreachable_client(), FullGrant::ClientCredentials)
            .renewal_backoff(Duration::MAX, Duration::MAX)
            .stale_wait(Duration::MAX)
            .refresh_margin(Duration::MAX);
        assert_eq!(source.max_backoff, MAX_SETTING);
        assert_eq!(source.initial_backoff, MAX_SETTING);
        assert_eq!(source.stale_wait, MAX_SETTING);
        let source = source.renewal_backoff(Duration::from_secs(90), Duration::from_secs(10));
        assert_eq!(
            source.initial_backoff,
            Duration::from_secs(10),
            "at most max"
        );
        let source = source.renewal_backoff(Duration::MAX, Duration::MAX);
        // Nothing listens: the renewal fails, its error is shared, and the (1 h) backoff holds the next
        // attempt back; no deadline overflows on the way.
        let e1 = source.access_token().await.unwrap_err();
        let e2 = source.access_token().await.unwrap_err();
        let (KeycloakError::Shared(a), KeycloakError::Shared(b)) = (&e1, &e2) else {
            panic!("{e1:?} {e2:?}");
        };
        assert!(Arc::ptr_eq(a, b), "the same error, no second request");
        assert!(
            matches!(e1.original(), KeycloakError::Network { .. }),
            "{e1:?}"
        );
        let state = lock(&source.state);
        assert_eq!(state.failures, 1);
        let until = state.backoff.as_ref().unwrap().0;
        assert!(until > Instant::now() + MAX_SETTING / 2 - Duration::from_secs(5));
    }
}

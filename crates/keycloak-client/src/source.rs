//! [`TokenSource`]: an access token for services, cached, refreshed ahead of expiry, and single-flight.
//!
//! - `access_token().await` returns the cached token while it is fresh: until `expires_in - margin` after it
//!   was requested, where the margin (default 30 s) is capped at half the token's lifetime, so a short-lived
//!   token is still used for at least half its life.
//! - When it is stale, ONE caller obtains a new one while every other caller waits for that result
//!   (single-flight): any number of concurrent callers cause exactly one token request.
//! - It uses the refresh token while that is valid (the client re-authenticates every time), and runs the
//!   full grant (password or client credentials) when there is none or the server refuses it with
//!   `invalid_grant`.
//! - If a refresh fails for another reason while the cached token has not yet expired, the cached token is
//!   returned (with a warning) and the next call tries again.
//!
//! Deadlines use the monotonic clock. Tokens and passwords are never logged.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::client::KeycloakClient;
use crate::error::{KeycloakError, OAuthErrorCode};
use crate::response::TokenResponse;

/// Default refresh margin: 30 s before expiry.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Lifetime assumed when a response has no `expires_in`: 60 s.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);

/// Longest lifetime believed (30 days): a server's absurd `expires_in` must not overflow a deadline.
const MAX_BELIEVED_SECS: u64 = 30 * 24 * 3600;

fn believed(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_BELIEVED_SECS))
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
        let expires_at = requested_at + lifetime;
        let refresh_at = expires_at - margin.min(lifetime / 2);
        let refresh_expires_at = match r.refresh_expires_in {
            Some(0) | None => None,
            // A little early, so a refresh is not sent with a token about to expire in flight.
            Some(s) => {
                let d = believed(s);
                Some(requested_at + d - Duration::from_secs(5).min(d / 2))
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

/// A cached, single-flight source of access tokens for one client and grant. Share it as `Arc<TokenSource>`.
pub struct TokenSource {
    client: Arc<KeycloakClient>,
    grant: FullGrant,
    scope: Option<String>,
    margin: Duration,
    cache: RwLock<Option<Arc<Cached>>>,
    /// Held by the one caller that obtains a new token.
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client", &self.client)
            .field("grant", &self.grant)
            .field("scope", &self.scope)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
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
            grant,
            scope: None,
            margin: DEFAULT_REFRESH_MARGIN,
            cache: RwLock::new(None),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// Refresh this long before expiry (default 30 s; capped at half the token lifetime).
    #[must_use]
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Request this scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &Arc<KeycloakClient> {
        &self.client
    }

    /// A fresh access token: the cached one, or a new one obtained by exactly one caller.
    ///
    /// # Errors
    /// As [`KeycloakClient::password_grant`] / [`KeycloakClient::client_credentials`], when no valid token
    /// can be had.
    pub async fn access_token(&self) -> Result<SecretString, KeycloakError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        // Whoever held the lock before us may have just refreshed.
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let previous = self.cached();
        match self.obtain(previous.as_deref()).await {
            Ok(cached) => {
                let token = cached.access_token.clone();
                *self.cache.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(cached));
                Ok(token)
            }
            Err(e) => match previous {
                Some(p) if p.expires_at > Instant::now() + Duration::from_secs(1) => {
                    tracing::warn!(
                        client_id = self.client.client_id(),
                        error = %e,
                        valid_for_secs = p.expires_at.saturating_duration_since(Instant::now()).as_secs(),
                        "could not renew the access token; using the cached one until it expires"
                    );
                    Ok(p.access_token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the cached access token (e.g. after an API answered 401), keeping the refresh token.
    pub fn invalidate(&self) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.as_ref() {
            let now = Instant::now();
            *cache = Some(Arc::new(Cached {
                access_token: c.access_token.clone(),
                expires_at: now,
                refresh_at: now,
                refresh_token: c.refresh_token.clone(),
                refresh_expires_at: c.refresh_expires_at,
            }));
        }
    }

    fn cached(&self) -> Option<Arc<Cached>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh(&self) -> Option<SecretString> {
        self.cached()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.access_token.clone())
    }

    async fn obtain(&self, previous: Option<&Cached>) -> Result<Cached, KeycloakError> {
        let scope = self.scope.as_deref();
        let usable_rt = previous
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
        let r = match &self.grant {
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
}

//! A Keycloak-shaped token endpoint, in process (axum on `127.0.0.1:0`), enforcing the rules of Keycloak's
//! `private_key_jwt` client authentication that matter for the demo, so that keybound's real client
//! ([`keycloak_client::KeycloakClient`], [`keycloak_client::TokenSource`]) talks to something that says no
//! for the right reasons. Not a Keycloak: one realm, registered clients, demo users, no admin API.
//!
//! `POST /realms/{realm}/protocol/openid-connect/token` (form-encoded) accepts the client only with
//! `client_assertion_type = urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a `client_assertion`
//! JWT that
//!
//! - is signed by a public key registered for the client (`kid`-selected; RS/PS/ES algorithms),
//! - has `iss` = `sub` = the client id (and the form's `client_id`, if sent, is the same),
//! - has exactly one `aud`: the token endpoint URL or the realm issuer,
//! - has `exp` (required), not expired and `nbf` (if any) reached, with Keycloak's 15 s clock skew; `iat`
//!   (optional) at most 15 s in the future,
//! - is at most 60 s old (Keycloak's "max expiration" client setting, default 60 s): with `iat`, refused
//!   when now > iat + 60; without `iat`, refused when exp − now > 60,
//! - has a `jti` never seen before (each assertion is single use).
//!
//! Grants: `password` (demo users), `refresh_token` (tokens this server issued to the same client, not
//! expired), `client_credentials`. Answers are Keycloak-shaped: `access_token` (an RS256 JWT with
//! Keycloak's claims, verifiable with `GET /realms/{realm}/protocol/openid-connect/certs`), `expires_in`
//! 300, `refresh_token`, `refresh_expires_in` 1800, `token_type` `Bearer`, `not-before-policy`,
//! `session_state`, `scope`; refusals are `{"error": …, "error_description": …}` with Keycloak's status
//! codes: 400 `invalid_client` for a refused assertion ("Client authentication with signed JWT failed: …",
//! e.g. "Token reuse detected"), 401 `invalid_client` when no client authenticated (no assertion, unknown
//! client, `iss` ≠ `sub`), 401 `invalid_grant` for user credentials, 400 otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jose_core::{JwsAlgorithm, JwsHeader, KeySet, Validation};
use key_provider::{KeyBackend, KeySpec};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The `client_assertion_type` of RFC 7523.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest accepted age of a client assertion: Keycloak's "max expiration" client setting (default 60 s);
/// with `iat`, refused when now > iat + 60, without it when exp − now > 60.
pub const MAX_ASSERTION_LIFETIME: u64 = 60;
/// Keycloak's allowed clock skew for `exp`, `nbf` and `iat`: 15 s.
pub const CLOCK_SKEW: u64 = 15;
/// Access token lifetime (Keycloak's default).
pub const ACCESS_TOKEN_TTL: u64 = 300;
/// Refresh token lifetime (Keycloak's default SSO session idle).
pub const REFRESH_TOKEN_TTL: u64 = 1800;

/// What the endpoint has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Token requests received.
    pub requests: u64,
    /// Token responses issued.
    pub issued: u64,
    /// Requests refused.
    pub refused: u64,
    /// `error: error_description` of the last refusal.
    pub last_refusal: Option<String>,
}

struct Client {
    keys: KeySet,
    /// The `sub` of the client's service account.
    service_account: String,
}

struct User {
    password: SecretString,
    /// The user's `sub`.
    id: String,
}

struct RefreshToken {
    client_id: String,
    username: Option<String>,
    session: String,
    exp: u64,
}

struct Inner {
    realm: String,
    issuer: String,
    token_url: String,
    realm_key: Arc<dyn KeyBackend>,
    realm_kid: String,
    clients: Mutex<HashMap<String, Client>>,
    users: Mutex<HashMap<String, User>>,
    /// `jti` of every accepted assertion, with its `exp` (forgotten once expired).
    seen_jti: Mutex<HashMap<String, u64>>,
    refresh_tokens: Mutex<HashMap<String, RefreshToken>>,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running token endpoint; dropping it stops the server.
pub struct TokenEndpointServer {
    inner: Arc<Inner>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TokenEndpointServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Why the server could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

impl TokenEndpointServer {
    /// Starts a server for `realm` on `127.0.0.1:0` in the current tokio runtime, with a new RSA-2048 realm
    /// key (in memory: it is the identity provider's key, not one of keybound's).
    ///
    /// # Errors
    /// When the port cannot be bound or the realm key cannot be made.
    pub async fn start(realm: &str) -> Result<Self, StartError> {
        let der = key_provider::software::generate_pkcs8(KeySpec::Rsa(2048))?;
        let realm_key: Arc<dyn KeyBackend> = Arc::new(key_provider::SoftwareKey::from_bytes(
            "memory",
            format!("realm {realm} signing key"),
            &der,
        )?);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}/realms/{realm}");
        let inner = Arc::new(Inner {
            realm: realm.to_owned(),
            token_url: format!("{issuer}/protocol/openid-connect/token"),
            issuer,
            realm_kid: jose_core::thumbprint(realm_key.public_key()),
            realm_key,
            clients: Mutex::default(),
            users: Mutex::default(),
            seen_jti: Mutex::default(),
            refresh_tokens: Mutex::default(),
            stats: Mutex::default(),
        });
        let router = Router::new()
            .route("/realms/{realm}/protocol/openid-connect/token", post(token))
            .route("/realms/{realm}/protocol/openid-connect/certs", get(certs))
            .with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            inner,
            shutdown: Some(tx),
        })
    }

    /// Registers a `private_key_jwt` client with the public JWKS it authenticates with (what a partner does
    /// with the JWKS it gets at onboarding).
    ///
    /// # Errors
    /// When `jwks` is not a JWKS of public keys.
    pub fn register_client(
        &self,
        client_id: &str,
        jwks: &Value,
    ) -> Result<(), jose_core::JoseError> {
        let keys = KeySet::from_text(&jwks.to_string())?;
        let service_account = uuid::Uuid::new_v4().to_string();
        lock(&self.inner.clients).insert(
            client_id.to_owned(),
            Client {
                keys,
                service_account,
            },
        );
        Ok(())
    }

    /// Adds a user for the password grant.
    pub fn add_user(&self, username: &str, password: SecretString) {
        let id = uuid::Uuid::new_v4().to_string();
        lock(&self.inner.users).insert(username.to_owned(), User { password, id });
    }

    /// The token endpoint URL.
    pub fn token_url(&self) -> &str {
        &self.inner.token_url
    }

    /// The realm issuer, `http://127.0.0.1:PORT/realms/REALM`.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The realm's JWKS URL.
    pub fn certs_url(&self) -> String {
        format!("{}/protocol/openid-connect/certs", self.inner.issuer)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }
}

/// A refusal: status, OAuth error code, description.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    /// A refused client assertion: Keycloak answers 400 `invalid_client`.
    fn client(description: impl Into<String>) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            description.into(),
        )
    }

    /// No client authenticated (no credentials, unknown client, an assertion that is not the client's):
    /// 401 `invalid_client`.
    fn unknown_client(description: impl Into<String>) -> Self {
        Self(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            description.into(),
        )
    }

    fn request(description: impl Into<String>) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            description.into(),
        )
    }
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn certs(State(inner): State<Arc<Inner>>, Path(realm): Path<String>) -> Response {
    if realm != inner.realm {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Realm does not exist"})),
        )
            .into_response();
    }
    let mut jwk = serde_json::to_value(jose_core::Jwk::from_public_key(
        inner.realm_key.public_key(),
    ))
    .unwrap_or_default();
    jwk["kid"] = json!(inner.realm_kid);
    jwk["alg"] = json!("RS256");
    jwk["use"] = json!("sig");
    axum::Json(json!({ "keys": [jwk] })).into_response()
}

async fn token(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    lock(&inner.stats).requests += 1;
    if realm != inner.realm {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Realm does not exist"})),
        )
            .into_response();
    }
    let result = handle(&inner, &form);
    let response = match result {
        Ok(body) => {
            lock(&inner.stats).issued += 1;
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(Refusal(status, error, description)) => {
            let mut stats = lock(&inner.stats);
            stats.refused += 1;
            stats.last_refusal = Some(format!("{error}: {description}"));
            drop(stats);
            (
                status,
                axum::Json(json!({"error": error, "error_description": description})),
            )
                .into_response()
        }
    };
    no_store(response)
}

/// The form's single value of `name`: `None` when absent, a refusal when repeated.
fn param<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, Refusal> {
    let mut values = form.iter().filter(|(k, _)| k == name);
    let first = values.next().map(|(_, v)| v.as_str());
    if values.next().is_some() {
        return Err(Refusal::request(format!("duplicated parameter: {name}")));
    }
    Ok(first)
}

fn handle(inner: &Inner, form: &[(String, String)]) -> Result<Value, Refusal> {
    let grant = param(form, "grant_type")?
        .ok_or_else(|| Refusal::request("Missing form parameter: grant_type"))?;
    let client_id = authenticate_client(inner, form)?;
    let now = jose_core::jwt::now();
    match grant {
        "password" => {
            let username = param(form, "username")?.unwrap_or_default();
            let password = param(form, "password")?.unwrap_or_default();
            let known = lock(&inner.users)
                .get(username)
                .is_some_and(|u| constant_time_eq(u.password.expose_secret(), password));
            if !known {
                return Err(Refusal(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "Invalid user credentials".into(),
                ));
            }
            issue(inner, &client_id, Some(username), None, now)
        }
        "refresh_token" => {
            let presented = param(form, "refresh_token")?.unwrap_or_default();
            let (_, claims) = jose_core::jwt::decode_unverified(presented).map_err(|_| {
                Refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid refresh token".into(),
                )
            })?;
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let stored = lock(&inner.refresh_tokens).remove(jti);
            let (username, session) = match stored {
                Some(t) if t.client_id == client_id && t.exp > now => (t.username, t.session),
                Some(t) if t.client_id != client_id => {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token. Token client and authorized client don't match"
                            .into(),
                    ));
                }
                _ => {
                    return Err(Refusal(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token".into(),
                    ));
                }
            };
            issue(inner, &client_id, username.as_deref(), Some(session), now)
        }
        "client_credentials" => issue(inner, &client_id, None, None, now),
        other => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Unsupported grant_type {}", other.escape_default()),
        )),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks the client assertion; returns the authenticated client id.
fn authenticate_client(inner: &Inner, form: &[(String, String)]) -> Result<String, Refusal> {
    let assertion_type = param(form, "client_assertion_type")?;
    let assertion = param(form, "client_assertion")?;
    let (Some(assertion_type), Some(assertion)) = (assertion_type, assertion) else {
        return Err(Refusal::unknown_client(
            "Invalid client or Invalid client credentials (this endpoint accepts only private_key_jwt)",
        ));
    };
    if assertion_type != ASSERTION_TYPE {
        return Err(Refusal::client(format!(
            "Parameter client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    let failed = |why: &str| {
        Refusal::client(format!(
            "Client authentication with signed JWT failed: {why}"
        ))
    };
    // Keycloak finds the client by the assertion's subject, then checks everything else.
    let (_, unverified) =
        jose_core::jwt::decode_unverified(assertion).map_err(|_| failed("malformed JWT"))?;
    let client_id = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| failed("Can't identify client. Subject missing on JWT token"))?
        .to_owned();
    if let Some(form_id) = param(form, "client_id")? {
        if form_id != client_id {
            return Err(failed("client_id parameter does not match sub claim"));
        }
    }
    // An assertion whose issuer is not its subject is not this client's: ignored, so the client is not
    // authenticated at all.
    if unverified.get("iss").and_then(Value::as_str) != Some(client_id.as_str()) {
        return Err(Refusal::unknown_client(
            "Invalid client or Invalid client credentials",
        ));
    }
    let clients = lock(&inner.clients);
    let client = clients
        .get(&client_id)
        .ok_or_else(|| Refusal::unknown_client("Invalid client or Invalid client credentials"))?;
    // The signature (and the claims' types) here; the time rules below, as Keycloak has them.
    let mut validation = Validation::new()
        .algorithms(&[
            JwsAlgorithm::RS256,
            JwsAlgorithm::RS384,
            JwsAlgorithm::RS512,
            JwsAlgorithm::PS256,
            JwsAlgorithm::PS384,
            JwsAlgorithm::PS512,
            JwsAlgorithm::ES256,
            JwsAlgorithm::ES384,
        ])
        .issuer(client_id.clone())
        .subject(client_id.clone())
        .required_claims(&[]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_iat = false;
    let verified = jose_core::jwt::verify(assertion, &client.keys, &validation).map_err(|e| {
        failed(&match e {
            jose_core::JoseError::InvalidSignature | jose_core::JoseError::NoKey { .. } => {
                format!("Signature on JWT token by client {client_id} failed validation")
            }
            other => other.to_string(),
        })
    })?;
    drop(clients);
    let claims = verified.claims;
    let audience: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match audience.as_slice() {
        [one] if *one == inner.token_url || *one == inner.issuer => {}
        [] => return Err(failed("Token audience is missing")),
        [_] => return Err(failed("Token audience doesn't match domain")),
        _ => return Err(failed("Multiple audiences not allowed")),
    }
    let now = jose_core::jwt::now();
    let forget_at = check_times(&claims, now).map_err(|why| failed(&why))?;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| failed("Missing ID on the token"))?;
    let mut seen = lock(&inner.seen_jti);
    seen.retain(|_, forget| *forget >= now);
    if seen.contains_key(jti) {
        return Err(failed("Token reuse detected"));
    }
    seen.insert(jti.to_owned(), forget_at);
    Ok(client_id)
}

/// Keycloak's time rules for a client assertion at `now`: `exp` required; `exp` and `nbf` with
/// [`CLOCK_SKEW`]; `iat` at most [`CLOCK_SKEW`] in the future; at most [`MAX_ASSERTION_LIFETIME`] old: with
/// `iat`, refused when now > iat + 60, without it, refused when exp − now > 60. Returns when the assertion
/// can no longer be accepted (until then its `jti` is remembered). Arithmetic saturates: claims near
/// `u64::MAX` are refused, never wrapped.
fn check_times(claims: &serde_json::Map<String, Value>, now: u64) -> Result<u64, String> {
    // jose-core checked that time claims are non-negative numbers within range.
    let time = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
    };
    let exp = time("exp").ok_or("Token exp claim is required")?;
    if now > exp.saturating_add(CLOCK_SKEW) {
        return Err("Token is not active (expired)".into());
    }
    if time("nbf").is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW)) {
        return Err("Token is not active (nbf is in the future)".into());
    }
    let last_accepted = match time("iat") {
        Some(iat) => {
            if iat > now.saturating_add(CLOCK_SKEW) {
                return Err("Token was issued in the future".into());
            }
            let too_old = iat.saturating_add(MAX_ASSERTION_LIFETIME);
            if now > too_old {
                return Err(format!(
                    "Token is not active (issued more than {MAX_ASSERTION_LIFETIME} s ago)"
                ));
            }
            too_old
        }
        None => {
            if exp.saturating_sub(now) > MAX_ASSERTION_LIFETIME {
                return Err(format!(
                    "Token exp is more than {MAX_ASSERTION_LIFETIME} s in the future and there is no iat"
                ));
            }
            exp
        }
    };
    Ok(exp.min(last_accepted).saturating_add(CLOCK_SKEW))
}

/// Signs an access token and a refresh token and answers them Keycloak-style; a refresh keeps its session.
fn issue(
    inner: &Inner,
    client_id: &str,
    username: Option<&str>,
    session: Option<String>,
    now: u64,
) -> Result<Value, Refusal> {
    let session = session.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let subject = match username {
        Some(u) => lock(&inner.users).get(u).map(|u| u.id.clone()),
        None => lock(&inner.clients)
            .get(client_id)
            .map(|c| c.service_account.clone()),
    }
    .unwrap_or_default();
    let preferred_username =
        username.map_or_else(|| format!("service-account-{client_id}"), str::to_owned);
    let scope = "profile email";
    let access_claims = json!({
        "exp": now + ACCESS_TOKEN_TTL,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": inner.issuer,
        "aud": "account",
        "sub": subject,
        "typ": "Bearer",
        "azp": client_id,
        "sid": session,
        "scope": scope,
        "preferred_username": preferred_username,
    });
    let refresh_jti = uuid::Uuid::new_v4().to_string();
    let refresh_claims = json!({
        "exp": now + REFRESH_TOKEN_TTL,
        "iat": now,
        "jti": refresh_jti,
        "iss": inner.issuer,
        "aud": inner.issuer,
        "sub": subject,
        "typ": "Refresh",
        "azp": client_id,
        "sid": session,
        "scope": scope,
    });
    let header = JwsHeader::new(JwsAlgorithm::RS256)
        .typ("JWT")
        .kid(inner.realm_kid.clone());
    let sign = |claims: &Value| {
        jose_core::jwt::sign(inner.realm_key.as_ref(), &header, claims).map_err(|e| {
            Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("cannot sign the token: {e}"),
            )
        })
    };
    let access_token = sign(&access_claims)?;
    let refresh_token = sign(&refresh_claims)?;
    lock(&inner.refresh_tokens).insert(
        refresh_jti,
        RefreshToken {
            client_id: client_id.to_owned(),
            username: username.map(str::to_owned),
            session: session.clone(),
            exp: now + REFRESH_TOKEN_TTL,
        },
    );
    Ok(json!({
        "access_token": access_token,
        "expires_in": ACCESS_TOKEN_TTL,
        "refresh_expires_in": REFRESH_TOKEN_TTL,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": session,
        "scope": scope,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keycloak_client::{
        AssertionConfig, Audience, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient,
        KeycloakError, OAuthErrorCode, RetryPolicy, TokenEndpoint, TokenSource,
    };

    use super::*;

    const CLIENT: &str = "example-bank";
    const USER: &str = "exampleuser@bank.example.com";

    fn key() -> Arc<dyn KeyBackend> {
        let der = key_provider::software::generate_pkcs8(KeySpec::Rsa(2048)).unwrap();
        Arc::new(key_provider::SoftwareKey::from_bytes("memory", "test".into(), &der).unwrap())
    }

    struct Setup {
        server: TokenEndpointServer,
        key: Arc<dyn KeyBackend>,
        endpoint: TokenEndpoint,
    }

    async fn setup() -> Setup {
        let server = TokenEndpointServer::start("loan-partner").await.unwrap();
        let key = key();
        let jwk = jose_core::Jwk::from_public_key(key.public_key())
            .with_thumbprint_kid()
            .unwrap();
        server
            .register_client(CLIENT, &json!({ "keys": [jwk] }))
            .unwrap();
        server.add_user(USER, SecretString::from("correct horse"));
        let endpoint = TokenEndpoint::from_token_url(server.token_url()).unwrap();
        Setup {
            server,
            key,
            endpoint,
        }
    }

    fn client(s: &Setup, config: &AssertionConfig, key: Arc<dyn KeyBackend>) -> KeycloakClient {
        let signer = ClientAssertionSigner::new(key, config, &s.endpoint).unwrap();
        KeycloakClient::builder(s.endpoint.clone(), ClientAuth::PrivateKeyJwt(signer))
            .retry(RetryPolicy::no_retries())
            .build()
            .unwrap()
    }

    fn refusal(e: &KeycloakError) -> (OAuthErrorCode, String) {
        let o = e
            .oauth()
            .unwrap_or_else(|| panic!("not an OAuth error: {e}"));
        (o.code.clone(), o.description.clone().unwrap_or_default())
    }

    async fn post(s: &Setup, assertion: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(s.server.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn password_grant_then_refresh_through_the_real_client() {
        let s = setup().await;
        let client = Arc::new(client(&s, &AssertionConfig::new(CLIENT), s.key.clone()));
        let r = client
            .password_grant(USER, &SecretString::from("correct horse"), None)
            .await
            .unwrap();
        assert_eq!(r.expires_in, Some(ACCESS_TOKEN_TTL));
        let keys = KeySet::single(jose_core::VerifyingKey::new(
            s.server.inner.realm_key.public_key().clone(),
        ));
        let verified = jose_core::jwt::verify(
            r.access_token.expose_secret(),
            &keys,
            &Validation::new().issuer(s.server.issuer()),
        )
        .unwrap();
        assert_eq!(verified.claims["preferred_username"], USER);
        assert_eq!(verified.claims["azp"], CLIENT);
        let refreshed = client
            .refresh(r.refresh_token.as_ref().unwrap(), None)
            .await
            .unwrap();
        assert!(refreshed.refresh_token.is_some());
        // A refresh token is used once here (rotation).
        let e = client
            .refresh(r.refresh_token.as_ref().unwrap(), None)
            .await
            .unwrap_err();
        assert_eq!(refusal(&e).0, OAuthErrorCode::InvalidGrant);

        let source = TokenSource::new(
            client.clone(),
            FullGrant::password(USER, SecretString::from("correct horse")),
        );
        let a = source.access_token().await.unwrap();
        let b = source.access_token().await.unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_eq!(s.server.stats().issued, 3);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_grant() {
        let s = setup().await;
        let client = client(&s, &AssertionConfig::new(CLIENT), s.key.clone());
        let e = client
            .password_grant(USER, &SecretString::from("wrong"), None)
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&e),
            (
                OAuthErrorCode::InvalidGrant,
                "Invalid user credentials".into()
            )
        );
        assert!(client.client_credentials(None).await.is_ok());
    }

    #[tokio::test]
    async fn an_assertion_is_single_use() {
        let s = setup().await;
        let client = client(&s, &AssertionConfig::new(CLIENT), s.key.clone());
        let a = client.assertion().await.unwrap();
        assert_eq!(post(&s, a.jwt.expose_secret()).await.status(), 200);
        let second = post(&s, a.jwt.expose_secret()).await;
        // Keycloak: 400 invalid_client "Token reuse detected".
        assert_eq!(second.status(), 400);
        let body: Value = second.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(
            body["error_description"],
            "Client authentication with signed JWT failed: Token reuse detected"
        );
    }

    /// Signs `claims` with `key` (header kid = its thumbprint) and posts them; (status, error, description).
    async fn post_claims(
        s: &Setup,
        key: &Arc<dyn KeyBackend>,
        claims: &Value,
    ) -> (u16, String, String) {
        let header = JwsHeader::new(JwsAlgorithm::RS256)
            .typ("JWT")
            .kid(jose_core::thumbprint(key.public_key()));
        let jwt = jose_core::jwt::sign(key.as_ref(), &header, claims).unwrap();
        let r = post(s, &jwt).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (
            status,
            text(&body["error"]),
            text(&body["error_description"]),
        )
    }

    #[tokio::test]
    async fn keycloak_time_rules_with_15_s_skew_and_60_s_max_age() {
        let s = setup().await;
        let now = jose_core::jwt::now();
        let mut n = 0;
        let mut claims = |iat: Option<u64>, exp: Option<u64>, nbf: Option<u64>| {
            n += 1;
            let mut c = json!({"iss": CLIENT, "sub": CLIENT, "aud": s.server.token_url(),
                "jti": format!("time-{n}")});
            for (name, value) in [("iat", iat), ("exp", exp), ("nbf", nbf)] {
                if let Some(v) = value {
                    c[name] = json!(v);
                }
            }
            c
        };
        // (what, claims, refused with this description or accepted)
        let rows: Vec<(&str, Value, Option<&str>)> = vec![
            (
                "the usual 60 s",
                claims(Some(now), Some(now + 60), None),
                None,
            ),
            // Keycloak looks at the assertion's age, not at exp - iat.
            (
                "exp - iat = 120 s, issued now",
                claims(Some(now), Some(now + 120), None),
                None,
            ),
            (
                "issued 50 s ago",
                claims(Some(now - 50), Some(now + 10), None),
                None,
            ),
            (
                "issued 61 s ago",
                claims(Some(now - 61), Some(now + 30), None),
                Some("issued more than 60 s ago"),
            ),
            (
                "issued 10 s ahead (within the skew)",
                claims(Some(now + 10), Some(now + 60), None),
                None,
            ),
            (
                "issued 20 s ahead",
                claims(Some(now + 20), Some(now + 60), None),
                Some("issued in the future"),
            ),
            (
                "expired 10 s ago (within the skew)",
                claims(Some(now - 40), Some(now - 10), None),
                None,
            ),
            (
                "expired 20 s ago",
                claims(Some(now - 40), Some(now - 20), None),
                Some("not active (expired)"),
            ),
            (
                "nbf 10 s ahead (within the skew)",
                claims(Some(now), Some(now + 60), Some(now + 10)),
                None,
            ),
            (
                "nbf 20 s ahead",
                claims(Some(now), Some(now + 60), Some(now + 20)),
                Some("nbf is in the future"),
            ),
            (
                "no iat, exp in 50 s",
                claims(None, Some(now + 50), None),
                None,
            ),
            (
                "no iat, exp in 70 s",
                claims(None, Some(now + 70), None),
                Some("no iat"),
            ),
            (
                "no exp",
                claims(Some(now), None, None),
                Some("exp claim is required"),
            ),
            (
                "exp near u64::MAX",
                claims(Some(now), Some(u64::MAX - 1), None),
                None,
            ),
            (
                "no iat, exp near u64::MAX",
                claims(None, Some(u64::MAX - 1), None),
                Some("no iat"),
            ),
            (
                "iat near u64::MAX",
                claims(Some(u64::MAX - 1), Some(u64::MAX), None),
                Some("issued in the future"),
            ),
            (
                "iat 0",
                claims(Some(0), Some(now + 30), None),
                Some("issued more than 60 s ago"),
            ),
        ];
        for (what, c, refused) in rows {
            let (status, error, description) = post_claims(&s, &s.key, &c).await;
            match refused {
                None => assert_eq!(status, 200, "{what}: {error} {description}"),
                Some(says) => {
                    assert_eq!((status, error.as_str()), (400, "invalid_client"), "{what}");
                    assert!(
                        description.starts_with("Client authentication with signed JWT failed: ")
                            && description.contains(says),
                        "{what}: {description}"
                    );
                }
            }
        }
        // An assertion accepted with an exp far away is still single use.
        let far = json!({"iss": CLIENT, "sub": CLIENT, "aud": s.server.token_url(), "jti": "far-exp",
            "iat": now, "exp": u64::MAX - 1});
        assert_eq!(post_claims(&s, &s.key, &far).await.0, 200);
        let (status, _, description) = post_claims(&s, &s.key, &far).await;
        assert_eq!(status, 400);
        assert!(
            description.contains("Token reuse detected"),
            "{description}"
        );
    }

    #[tokio::test]
    async fn refusals_for_key_audience_issuer_and_jti() {
        let s = setup().await;
        // A key that was never registered: 400, Keycloak's signature message.
        let e = client(&s, &AssertionConfig::new(CLIENT), key())
            .client_credentials(None)
            .await
            .unwrap_err();
        assert_eq!(refusal(&e).0, OAuthErrorCode::InvalidClient);
        assert_eq!(e.oauth().unwrap().status, 400);
        assert!(refusal(&e).1.contains("failed validation"), "{e}");
        // keycloak-client's 120 s assertions carry iat: accepted, as Keycloak does.
        let long = AssertionConfig::new(CLIENT).lifetime(Duration::from_secs(120));
        assert!(
            client(&s, &long, s.key.clone())
                .client_credentials(None)
                .await
                .is_ok()
        );
        // Another audience.
        let other =
            AssertionConfig::new(CLIENT).audience(Audience::Custom("https://elsewhere".into()));
        let e = client(&s, &other, s.key.clone())
            .client_credentials(None)
            .await
            .unwrap_err();
        assert_eq!(e.oauth().unwrap().status, 400);
        assert!(refusal(&e).1.contains("audience"), "{e}");
        // The issuer audience is accepted.
        let issuer = AssertionConfig::new(CLIENT).audience(Audience::Issuer);
        assert!(
            client(&s, &issuer, s.key.clone())
                .client_credentials(None)
                .await
                .is_ok()
        );
        // Hand-made assertions.
        let now = jose_core::jwt::now();
        let base = json!({"iss": CLIENT, "sub": CLIENT, "aud": s.server.token_url(), "jti": "j1",
            "iat": now, "exp": now + 30});
        let cases = [
            (
                "aud",
                json!([s.server.token_url(), s.server.issuer()]),
                400,
                "Multiple audiences",
            ),
            ("aud", Value::Null, 400, "audience is missing"),
            ("jti", Value::Null, 400, "Missing ID"),
            ("sub", Value::Null, 400, "Subject missing"),
            // An assertion whose issuer is not its subject is ignored: no client authenticated.
            ("iss", json!("someone-else"), 401, "Invalid client"),
            // An unknown client.
            ("sub", json!("nobody"), 401, "Invalid client"),
        ];
        for (claim, value, status, expected) in cases {
            let mut claims = base.clone();
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(claim);
            } else {
                claims[claim] = value.clone();
                if claim == "sub" {
                    claims["iss"] = value;
                }
            }
            let (got, error, description) = post_claims(&s, &s.key, &claims).await;
            assert_eq!((got, error.as_str()), (status, "invalid_client"), "{claim}");
            assert!(
                description
                    .to_lowercase()
                    .contains(&expected.to_lowercase()),
                "{claim}: {description}"
            );
        }
        assert!(s.server.stats().refused >= 8);
    }
}

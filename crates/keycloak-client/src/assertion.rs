//! RFC 7523 client assertions (`private_key_jwt`) signed through any key-provider backend.
//!
//! Every assertion is a compact JWS with header `alg` (RS256 by default; PS256, ES256… selectable), `typ:
//! JWT` and `kid` (by default the key's RFC 7638 thumbprint; configurable or omitted), and claims
//! `iss` = `sub` = the client id, `aud` = ONE value (the token endpoint by default, or the realm issuer),
//! `jti` = a new random UUID, `iat` = now, `exp` = now + lifetime (60 s by default; more than 300 s is refused
//! unless explicitly allowed, more than 24 h always), and optionally `nbf` = now. Claim times are computed
//! with checked arithmetic: a time outside 1970 to 9999 (a broken clock or skew correction) is an error,
//! never a wrapped number.
//!
//! A new assertion (new `jti`) is signed for every token request, retries and refreshes included: Keycloak
//! accepts each `jti` once.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jose_core::{JwsAlgorithm, JwsHeader};
use key_provider::KeyBackend;
use secrecy::SecretString;
use serde::Serialize;

use crate::clock::{MAX_CLAIM_SECS, unix_secs};
use crate::endpoint::TokenEndpoint;
use crate::error::KeycloakError;

/// `client_assertion_type` for JWT client assertions (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Default assertion lifetime: 60 s, Keycloak's maximum.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Longest lifetime accepted without [`AssertionConfig::allow_long_lifetime`]: 300 s.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Longest lifetime accepted at all, even with [`AssertionConfig::allow_long_lifetime`]: 24 h.
pub const LIFETIME_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The assertion's single `aud` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Audience {
    /// The token endpoint URL (default; what Spring Security and the Interhyp example send).
    #[default]
    TokenEndpoint,
    /// The realm issuer, `…/realms/{realm}` (what Node's openid-client sends).
    Issuer,
    /// This exact value.
    Custom(String),
}

/// The assertion header's `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyId {
    /// The RFC 7638 thumbprint of the public key (default; what `keybound keys public --format jwk` shows).
    #[default]
    Thumbprint,
    /// This value (the kid the partner registered).
    Fixed(String),
    /// No `kid` (the server must then hold a single key for the client, or try them all).
    Omit,
}

/// How client assertions are built.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AssertionConfig {
    /// The client id (`iss` and `sub`).
    pub client_id: String,
    /// Signature algorithm; `None`: RS256 for RSA keys, ES256/ES384 for EC keys.
    pub alg: Option<JwsAlgorithm>,
    /// Header `kid`.
    pub kid: KeyId,
    /// Claim `aud`.
    pub audience: Audience,
    /// `exp` - `iat` (default 60 s).
    pub lifetime: Duration,
    /// Also send `nbf` = `iat` (off by default).
    pub not_before: bool,
    /// Accept a lifetime above [`MAX_LIFETIME`], up to [`LIFETIME_LIMIT`] (off by default; Keycloak
    /// refuses more than 60 s anyway unless `iat` is present).
    pub allow_long_lifetime: bool,
}

impl AssertionConfig {
    /// Defaults for `client_id`: RS256 (for RSA keys), thumbprint kid, token-endpoint audience, 60 s.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            alg: None,
            kid: KeyId::Thumbprint,
            audience: Audience::TokenEndpoint,
            lifetime: DEFAULT_LIFETIME,
            not_before: false,
            allow_long_lifetime: false,
        }
    }

    /// Sets [`AssertionConfig::alg`].
    #[must_use]
    pub fn alg(mut self, alg: JwsAlgorithm) -> Self {
        self.alg = Some(alg);
        self
    }

    /// Sets [`AssertionConfig::kid`].
    #[must_use]
    pub fn kid(mut self, kid: KeyId) -> Self {
        self.kid = kid;
        self
    }

    /// Sets [`AssertionConfig::audience`].
    #[must_use]
    pub fn audience(mut self, audience: Audience) -> Self {
        self.audience = audience;
        self
    }

    /// Sets [`AssertionConfig::lifetime`].
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets [`AssertionConfig::not_before`].
    #[must_use]
    pub fn not_before(mut self, nbf: bool) -> Self {
        self.not_before = nbf;
        self
    }

    /// Sets [`AssertionConfig::allow_long_lifetime`].
    #[must_use]
    pub fn allow_long_lifetime(mut self, allow: bool) -> Self {
        self.allow_long_lifetime = allow;
        self
    }
}

/// Signs client assertions with one key for one client and token endpoint.
#[derive(Clone)]
pub struct ClientAssertionSigner {
    key: Arc<dyn KeyBackend>,
    client_id: String,
    alg: JwsAlgorithm,
    kid: Option<String>,
    audience: String,
    lifetime: Duration,
    not_before: bool,
}

impl fmt::Debug for ClientAssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertionSigner")
            .field("key", &self.key.key_label())
            .field("client_id", &self.client_id)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// One signed client assertion. Its `Debug` shows the claims that matter, never the JWT.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientAssertion {
    /// The compact JWT (a bearer credential until it expires: never log it).
    pub jwt: SecretString,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`.
    pub issued_at: u64,
    /// Its `exp`.
    pub expires_at: u64,
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

impl ClientAssertionSigner {
    /// A signer for `config` with `key`, for assertions sent to `endpoint`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::SystemTime;
    /// use keycloak_client::secrecy::ExposeSecret as _;
    /// use keycloak_client::{AssertionConfig, Audience, ClientAssertionSigner, TokenEndpoint};
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("lender.pem");
    /// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
    /// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
    /// let endpoint = TokenEndpoint::from_token_url(
    ///     "https://sso.example.com/realms/loan-partner/protocol/openid-connect/token",
    /// )?;
    /// let config = AssertionConfig::new("example-bank").audience(Audience::Issuer);
    /// let signer = ClientAssertionSigner::new(key, &config, &endpoint)?;
    /// let assertion = signer.sign(SystemTime::now()).await?;
    /// let (header, claims) = jose_core::jwt::decode_unverified(assertion.jwt.expose_secret())?;
    /// assert_eq!(header["alg"], "RS256");
    /// assert_eq!(claims["iss"], "example-bank");
    /// assert_eq!(claims["sub"], "example-bank");
    /// assert_eq!(claims["aud"], "https://sso.example.com/realms/loan-partner");
    /// assert_eq!(assertion.expires_at - assertion.issued_at, 60);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`KeycloakError::Config`] when the client id is empty, the lifetime is zero, above 300 s (without
    /// `allow_long_lifetime`) or above 24 h, the algorithm does not fit the key, or the issuer audience is
    /// asked for a URL that is not Keycloak-shaped.
    pub fn new(
        key: Arc<dyn KeyBackend>,
        config: &AssertionConfig,
        endpoint: &TokenEndpoint,
    ) -> Result<Self, KeycloakError> {
        if config.client_id.trim().is_empty() {
            return Err(KeycloakError::config("the client id is empty"));
        }
        if config.lifetime < Duration::from_secs(1) {
            return Err(KeycloakError::config(
                "the assertion lifetime must be at least 1 s",
            ));
        }
        if config.lifetime > LIFETIME_LIMIT {
            return Err(KeycloakError::config(format!(
                "an assertion lifetime of {} s is out of range: at most {} s, even with long lifetimes allowed \
                 (Keycloak allows 60 s; use the default)",
                config.lifetime.as_secs(),
                LIFETIME_LIMIT.as_secs()
            )));
        }
        if config.lifetime > MAX_LIFETIME && !config.allow_long_lifetime {
            return Err(KeycloakError::config(format!(
                "an assertion lifetime of {} s is above the {} s limit; Keycloak allows 60 s (use the default), \
                 or allow long lifetimes explicitly",
                config.lifetime.as_secs(),
                MAX_LIFETIME.as_secs()
            )));
        }
        let public = key.public_key();
        let alg = config
            .alg
            .unwrap_or_else(|| JwsAlgorithm::default_for(public));
        if !alg.fits(public) {
            return Err(KeycloakError::config(format!(
                "algorithm {alg} does not fit the key {} ({}); use RS256/PS256 for RSA keys, ES256 for P-256 keys",
                key.key_label(),
                public.describe()
            )));
        }
        let kid = match &config.kid {
            KeyId::Thumbprint => Some(jose_core::thumbprint(public)),
            KeyId::Fixed(k) => Some(k.clone()),
            KeyId::Omit => None,
        };
        let audience = match &config.audience {
            Audience::TokenEndpoint => endpoint.token_url().to_owned(),
            Audience::Issuer => endpoint
                .issuer()
                .ok_or_else(|| {
                    KeycloakError::config(
                        "the issuer audience needs a Keycloak token URL (…/realms/REALM/protocol/openid-connect/token); \
                         give the audience explicitly",
                    )
                })?
                .to_owned(),
            Audience::Custom(a) => a.clone(),
        };
        Ok(Self {
            key,
            client_id: config.client_id.clone(),
            alg,
            kid,
            audience,
            lifetime: config.lifetime,
            not_before: config.not_before,
        })
    }

    /// The client id (`iss`, `sub`).
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The algorithm.
    #[must_use]
    pub fn alg(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The header `kid`, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `aud` value.
    #[must_use]
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The lifetime.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &Arc<dyn KeyBackend> {
        &self.key
    }

    /// Signs a new assertion (new `jti`) issued at `now`. Runs PKCS#11 signing off the async worker threads.
    ///
    /// # Errors
    /// [`KeycloakError::Assertion`] when the backend cannot sign; [`KeycloakError::Config`] when `now` is at
    /// or before the Unix epoch, or `now` + lifetime is after the year 9999 (a broken clock or clock-skew
    /// correction).
    pub async fn sign(&self, now: SystemTime) -> Result<ClientAssertion, KeycloakError> {
        let jti = uuid::Uuid::new_v4().to_string();
        let (iat, exp) = claim_times(now, self.lifetime)?;
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.audience,
            jti: &jti,
            iat,
            exp,
            nbf: self.not_before.then_some(iat),
        };
        let mut header = JwsHeader::new(self.alg).typ("JWT");
        if let Some(kid) = &self.kid {
            header = header.kid(kid.clone());
        }
        let jwt = jose_core::jwt::sign_async(self.key.as_ref(), &header, &claims)
            .await
            .map_err(KeycloakError::Assertion)?;
        Ok(ClientAssertion {
            jwt: SecretString::from(jwt),
            jti,
            issued_at: iat,
            expires_at: exp,
        })
    }
}

/// `iat` and `exp` for an assertion issued at `now` with `lifetime`, both within 1970 to 9999.
fn claim_times(now: SystemTime, lifetime: Duration) -> Result<(u64, u64), KeycloakError> {
    let iat = unix_secs(now);
    if iat == 0 {
        return Err(KeycloakError::config(
            "the clock used for assertion times (with any clock-skew correction) is at or before 1970; \
             fix this host's clock",
        ));
    }
    match iat.checked_add(lifetime.as_secs()) {
        Some(exp) if exp <= MAX_CLAIM_SECS => Ok((iat, exp)),
        _ => Err(KeycloakError::config(format!(
            "assertion times out of range: issued at {iat} s after the epoch with a lifetime of {} s ends \
             after the year 9999; fix this host's clock (or its clock offset) and the lifetime",
            lifetime.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_core::{KeySet, Validation, VerifyingKey};
    use key_provider::{EcCurve, KeySpec};
    use secrecy::ExposeSecret as _;

    fn key(dir: &tempfile::TempDir, spec: KeySpec) -> Arc<dyn KeyBackend> {
        let path = dir.path().join("k.pem");
        key_provider::file::generate(&path, spec).unwrap();
        key_provider::open(
            &format!("file:{}", path.display()).parse().unwrap(),
            &Default::default(),
        )
        .unwrap()
    }

    fn endpoint() -> TokenEndpoint {
        TokenEndpoint::from_token_url(
            "https://sso.example.com/realms/loan-partner/protocol/openid-connect/token",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn default_assertion_has_every_claim_keycloak_needs() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(&dir, KeySpec::Rsa(2048));
        let signer = ClientAssertionSigner::new(
            key.clone(),
            &AssertionConfig::new("example-bank"),
            &endpoint(),
        )
        .unwrap();
        let now = SystemTime::now();
        let a = signer.sign(now).await.unwrap();
        let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
        let v = jose_core::jwt::verify(a.jwt.expose_secret(), &keys, &Validation::new()).unwrap();
        assert_eq!(v.alg, JwsAlgorithm::RS256);
        assert_eq!(v.header["typ"], "JWT");
        assert_eq!(
            v.header["kid"],
            jose_core::thumbprint(key.public_key()).as_str()
        );
        assert_eq!(v.claims["iss"], "example-bank");
        assert_eq!(v.claims["sub"], "example-bank");
        assert_eq!(
            v.claims["aud"],
            endpoint().token_url(),
            "aud must be ONE string, not an array"
        );
        assert_eq!(v.claims["jti"], a.jti.as_str());
        assert!(uuid::Uuid::parse_str(&a.jti).is_ok());
        let iat = v.claims["iat"].as_u64().unwrap();
        assert_eq!(iat, unix_secs(now));
        assert_eq!(v.claims["exp"].as_u64().unwrap(), iat + 60);
        assert!(!v.claims.contains_key("nbf"));
        assert!(!format!("{a:?}").contains(a.jwt.expose_secret()));
    }

    #[tokio::test]
    async fn every_assertion_gets_a_new_jti() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ClientAssertionSigner::new(
            key(&dir, KeySpec::Ec(EcCurve::P256)),
            &AssertionConfig::new("c"),
            &endpoint(),
        )
        .unwrap();
        assert_eq!(signer.alg(), JwsAlgorithm::ES256);
        let now = SystemTime::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            assert!(seen.insert(signer.sign(now).await.unwrap().jti));
        }
    }

    #[tokio::test]
    async fn options_kid_audience_nbf_lifetime_alg() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(&dir, KeySpec::Rsa(2048));
        let cfg = AssertionConfig::new("c")
            .alg(JwsAlgorithm::PS256)
            .kid(KeyId::Omit)
            .audience(Audience::Issuer)
            .not_before(true)
            .lifetime(Duration::from_secs(30));
        let a = ClientAssertionSigner::new(key.clone(), &cfg, &endpoint())
            .unwrap()
            .sign(SystemTime::now())
            .await
            .unwrap();
        let (h, c) = jose_core::jwt::decode_unverified(a.jwt.expose_secret()).unwrap();
        assert_eq!(h["alg"], "PS256");
        assert!(!h.contains_key("kid"));
        assert_eq!(c["aud"], "https://sso.example.com/realms/loan-partner");
        assert_eq!(c["nbf"], c["iat"]);
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 30);

        let cfg = AssertionConfig::new("c").kid(KeyId::Fixed("partner-kid-1".into()));
        let a = ClientAssertionSigner::new(key.clone(), &cfg, &endpoint())
            .unwrap()
            .sign(SystemTime::now())
            .await
            .unwrap();
        assert_eq!(
            jose_core::jwt::decode_unverified(a.jwt.expose_secret())
                .unwrap()
                .0["kid"],
            "partner-kid-1"
        );
    }

    #[tokio::test]
    async fn out_of_range_lifetimes_and_times_are_clear_errors_not_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(&dir, KeySpec::Ec(EcCurve::P256));
        for lifetime in [
            Duration::from_secs(u64::MAX),
            Duration::MAX,
            Duration::from_secs(u64::MAX - 59),
            LIFETIME_LIMIT + Duration::from_secs(1),
        ] {
            let cfg = AssertionConfig::new("c")
                .lifetime(lifetime)
                .allow_long_lifetime(true);
            let e = ClientAssertionSigner::new(key.clone(), &cfg, &endpoint()).unwrap_err();
            assert!(matches!(e, KeycloakError::Config(_)), "{e:?}");
            assert!(e.to_string().contains("out of range"), "{e}");
        }
        // The longest lifetime allowed signs, with exp = iat + lifetime exactly.
        let cfg = AssertionConfig::new("c")
            .lifetime(LIFETIME_LIMIT)
            .allow_long_lifetime(true);
        let signer = ClientAssertionSigner::new(key.clone(), &cfg, &endpoint()).unwrap();
        let a = signer.sign(SystemTime::now()).await.unwrap();
        assert_eq!(a.expires_at - a.issued_at, LIFETIME_LIMIT.as_secs());
        // Times a broken clock gives: refused, not signed with a wrapped or absurd exp.
        let signer =
            ClientAssertionSigner::new(key, &AssertionConfig::new("c"), &endpoint()).unwrap();
        let last = std::time::UNIX_EPOCH + Duration::from_secs(MAX_CLAIM_SECS);
        for now in [
            std::time::UNIX_EPOCH,
            last,
            last - Duration::from_secs(59),
            crate::clock::shift(SystemTime::now(), i64::MAX),
        ] {
            let e = signer.sign(now).await.unwrap_err();
            assert!(matches!(e, KeycloakError::Config(_)), "{now:?}: {e:?}");
            assert!(e.to_string().contains("clock"), "{e}");
        }
        let a = signer.sign(last - Duration::from_secs(60)).await.unwrap();
        assert_eq!(a.expires_at, MAX_CLAIM_SECS);
    }

    #[tokio::test]
    async fn refuses_long_lifetimes_wrong_alg_and_issuer_without_realm() {
        let dir = tempfile::tempdir().unwrap();
        let key = key(&dir, KeySpec::Rsa(2048));
        let long = AssertionConfig::new("c").lifetime(Duration::from_secs(301));
        let e = ClientAssertionSigner::new(key.clone(), &long, &endpoint()).unwrap_err();
        assert!(
            e.to_string().contains("301 s is above the 300 s limit"),
            "{e}"
        );
        assert!(
            ClientAssertionSigner::new(
                key.clone(),
                &long.clone().allow_long_lifetime(true),
                &endpoint()
            )
            .is_ok()
        );
        assert!(
            ClientAssertionSigner::new(
                key.clone(),
                &AssertionConfig::new("c").lifetime(Duration::ZERO),
                &endpoint()
            )
            .is_err()
        );
        let e = ClientAssertionSigner::new(
            key.clone(),
            &AssertionConfig::new("c").alg(JwsAlgorithm::ES256),
            &endpoint(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let other = TokenEndpoint::from_token_url("https://idp.example.com/token").unwrap();
        assert!(
            ClientAssertionSigner::new(
                key.clone(),
                &AssertionConfig::new("c").audience(Audience::Issuer),
                &other
            )
            .is_err()
        );
        assert!(ClientAssertionSigner::new(key, &AssertionConfig::new(" "), &endpoint()).is_err());
    }
}

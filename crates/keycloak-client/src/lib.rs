//! # keycloak-client
//!
//! Tokens from Keycloak's token endpoint (`…/realms/{realm}/protocol/openid-connect/token`) for partner APIs,
//! with the client authenticated by an RFC 7523 client assertion (`private_key_jwt`) signed through any
//! key-provider backend (a PEM file, an environment variable, or a PKCS#11 HSM whose key never leaves it),
//! or by a client secret.
//!
//! - [`ClientAssertionSigner`]: the assertion (`iss` = `sub` = client id, one `aud`, fresh `jti`, `iat`,
//!   `exp` ≤ 60 s by default), header `alg`/`kid`/`typ`.
//! - [`KeycloakClient`]: password, refresh-token and client-credentials grants; retries on network errors
//!   and 5xx only; typed [`OAuthError`]s; clock-skew detection from the server's `Date` header.
//! - [`TokenSource`]: a cached, single-flight access token for services, refreshed ahead of expiry; during
//!   an outage it serves the cached token while valid and renews once per backoff window.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keycloak_client::{AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient,
//!     TokenEndpoint, TokenSource};
//! use secrecy::{ExposeSecret as _, SecretString};
//!
//! let endpoint = TokenEndpoint::from_token_url(
//!     "https://sso.example.com/auth/realms/loan-partner/protocol/openid-connect/token")?;
//! let key = key_provider::open(&"file:/etc/keybound/private_key.pem".parse()?, &Default::default())?;
//! let signer = ClientAssertionSigner::new(key, &AssertionConfig::new("example-bank"), &endpoint)?;
//! let client = Arc::new(KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer)).build()?);
//! let password = SecretString::from(std::env::var("LENDER_PASSWORD")?);
//! let tokens = TokenSource::new(client, FullGrant::password("exampleuser@bank.example.com", password));
//! let token = tokens.access_token().await?; // cached; one request however many callers
//! # let _ = token.expose_secret();
//! # Ok(()) }
//! ```
//!
//! **Invariant: tokens, assertions, passwords and client secrets are never logged nor put in errors.** They
//! are held in `secrecy` types; `Debug` redacts them.

pub mod assertion;
pub mod client;
pub mod clock;
pub mod endpoint;
mod error;
pub mod response;
pub mod source;

pub use assertion::{
    ASSERTION_TYPE, AssertionConfig, Audience, ClientAssertion, ClientAssertionSigner, KeyId,
};
pub use client::{ClientAuth, KeycloakClient, KeycloakClientBuilder, RetryPolicy};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use endpoint::TokenEndpoint;
pub use error::{KeycloakError, OAuthError, OAuthErrorCode};
pub use jose_core::JwsAlgorithm;
pub use key_provider;
pub use response::TokenResponse;
pub use secrecy;
pub use source::{FullGrant, TokenSource};

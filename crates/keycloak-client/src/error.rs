//! The error type of keycloak-client. Messages say what to do next and never contain tokens, assertions,
//! passwords or client secrets; server-supplied text (`error_description`) is shortened and stripped to
//! printable characters first.

use std::fmt;
use std::sync::Arc;

use key_provider::KeyError;

/// The OAuth 2.0 `error` code of a refused token request (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`: a parameter is missing or malformed.
    InvalidRequest,
    /// `invalid_client`: the client's authentication (assertion or secret) was refused.
    InvalidClient,
    /// `invalid_grant`: user credentials, refresh token or code refused.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// Any other code (sanitised).
    Other(String),
}

impl OAuthErrorCode {
    /// Parses the `error` member.
    #[must_use]
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            other => Self::Other(sanitize(other, 64)),
        }
    }

    /// The wire spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Other(s) => s,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Self::InvalidClient => {
                "the server refused the client's authentication: check the client id, that the realm holds this \
                 key's public key (and kid) or this client secret, and this host's clock"
            }
            Self::InvalidGrant => {
                "the server refused the grant: check the username and password (a refresh token may have \
                 expired or been revoked)"
            }
            Self::UnauthorizedClient => {
                "this client may not use this grant type: ask the realm administrator to enable it (e.g. \
                 Direct Access Grants for the password grant, service accounts for client credentials)"
            }
            Self::UnsupportedGrantType => "the server does not support this grant type",
            Self::InvalidScope => {
                "the requested scope is not allowed for this client: check --scope"
            }
            Self::InvalidRequest => "the server found the request malformed: check the settings",
            Self::Other(_) => "see the server's description",
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token request the server refused with an OAuth error response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// HTTP status (400 or 401 from Keycloak).
    pub status: u16,
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// The server's `error_description`, sanitised (at most 200 printable characters).
    pub description: Option<String>,
}

impl OAuthError {
    /// An error from its parts; `description` is sanitised.
    #[must_use]
    pub fn new(status: u16, code: &str, description: Option<&str>) -> Self {
        Self {
            status,
            code: OAuthErrorCode::parse(code),
            description: description.map(|d| sanitize(d, 200)),
        }
    }

    /// Whether the description says the client assertion was refused for its time claims (expired, not
    /// yet valid, issued in the future, too old).
    #[must_use]
    pub fn is_time_related(&self) -> bool {
        let Some(d) = &self.description else {
            return false;
        };
        let d = d.to_ascii_lowercase();
        [
            "not active",
            "expired",
            "future",
            "not yet valid",
            "too old",
            "issued more than",
            "clock",
        ]
        .iter()
        .any(|w| d.contains(w))
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token request refused: HTTP {} {}",
            self.status, self.code
        )?;
        if let Some(d) = &self.description {
            write!(f, " ({d})")?;
        }
        write!(f, "; {}", self.code.hint())
    }
}

impl std::error::Error for OAuthError {}

/// Why a token could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeycloakError {
    /// The client's settings are inconsistent or out of range.
    #[error("keycloak client configuration: {0}")]
    Config(String),
    /// The key could not be opened or used. (An RSA key under 2048 bits reads as keybound's one size rule
    /// says it, the same in every command.)
    #[error("{}", key_message(.0))]
    Key(#[from] KeyError),
    /// The client assertion could not be signed. (An RSA key under 2048 bits reads as keybound's one size
    /// rule says it, the same in every command.)
    #[error("{}", assertion_message(.0))]
    Assertion(#[source] jose_core::JoseError),
    /// The token endpoint could not be reached (after retries).
    #[error(
        "cannot reach the token endpoint {url} (after {attempts} attempt(s)): {}; check the URL, DNS, \
         proxy settings and firewall",
        describe_network(source)
    )]
    Network {
        /// The token endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server failed (HTTP 5xx, after retries).
    #[error(
        "the token endpoint answered HTTP {status} (after {attempts} attempt(s)); the server is failing, try \
         again later"
    )]
    Server {
        /// HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused the request (HTTP 4xx with an OAuth error). Never retried.
    #[error("{0}")]
    OAuth(OAuthError),
    /// The server refused the client assertion for its time claims, and its `Date` header shows the clocks
    /// differ.
    #[error(
        "{error}. The server's Date header shows its clock is {} s {} ours: synchronise this host's clock \
         (NTP), or enable clock-skew compensation",
        skew_secs.unsigned_abs(),
        if *skew_secs > 0 { "ahead of" } else { "behind" }
    )]
    ClockSkew {
        /// Server clock minus local clock, in seconds (estimated from the `Date` header, ±1 s).
        skew_secs: i64,
        /// The refusal.
        error: OAuthError,
    },
    /// The server's answer is not a token response nor an OAuth error.
    #[error(
        "the token endpoint's answer (HTTP {status}) is not a token response: {reason}; is the token URL \
         really Keycloak's …/protocol/openid-connect/token?"
    )]
    InvalidResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong (never the body itself).
        reason: String,
    },
    /// The error of a [`TokenSource`](crate::TokenSource) renewal, shared: every caller that waited for
    /// that renewal, and every caller without a valid token until the backoff after it has passed, gets
    /// this same `Arc` (one request failed, not one per caller). `Display`, `source`,
    /// [`KeycloakError::oauth`] and [`KeycloakError::is_rejection`] see through it;
    /// [`KeycloakError::original`] gives the error itself.
    #[error(transparent)]
    Shared(Arc<KeycloakError>),
}

impl KeycloakError {
    /// The OAuth error, if the server refused the request.
    #[must_use]
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self.original() {
            Self::OAuth(e) | Self::ClockSkew { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// The error itself: for [`KeycloakError::Shared`], the shared error; otherwise `self`.
    #[must_use]
    pub fn original(&self) -> &Self {
        match self {
            Self::Shared(e) => e.original(),
            other => other,
        }
    }

    /// Whether the server understood and refused the request (bad credentials, key, grant…), as opposed to
    /// configuration, network or server failures.
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        self.oauth().is_some()
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }
}

/// `client assertion key: …`, except for the size rule's own message.
fn key_message(e: &KeyError) -> String {
    match e {
        KeyError::KeyTooSmall { .. } => e.to_string(),
        _ => format!("client assertion key: {e}"),
    }
}

/// `cannot sign the client assertion: …`, except for the size rule's own message.
fn assertion_message(e: &jose_core::JoseError) -> String {
    match e {
        jose_core::JoseError::Key(key @ KeyError::KeyTooSmall { .. }) => key.to_string(),
        _ => format!("cannot sign the client assertion: {e}"),
    }
}

/// What went wrong on the wire: a timeout, a refused or failed connection, or another transport failure, with
/// the innermost cause (which names no URL; the client strips it from reqwest's errors).
fn describe_network(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out (no complete answer within the client's timeout)".into();
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", sanitize(&detail, 160))
    }
}

/// Shortens a server-controlled string to `max` printable characters.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

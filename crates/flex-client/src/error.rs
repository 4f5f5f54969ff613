//! The error type of flex-client. Every message says what was wrong and what to do about it; none carries card
//! data, a capture context, a transient token, a key or a shared secret. Names that come from the other side
//! (a `kid`, an `alg`, an origin) are shortened to printable ASCII first.

use jose_core::JoseError;
use key_provider::KeyError;

/// Why a Flex operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlexError {
    /// The client configuration is unusable (bad base URL, origin, leeway…).
    #[error("invalid Flex configuration: {0}")]
    Config(String),

    /// A capture context or transient token is structurally broken (not a JWS, claims of the wrong shape…).
    #[error("malformed {what}: {reason}; obtain a fresh one from Cybersource")]
    Malformed {
        /// `capture context` or `transient token`.
        what: &'static str,
        /// What was wrong (no token content).
        reason: String,
    },

    /// The JWS header has no `kid`, so the verification key cannot be found.
    #[error("{what} has no `kid` header; it was not issued by Flex — request a new one")]
    MissingKid {
        /// `capture context` or `transient token`.
        what: &'static str,
    },

    /// The signature algorithm is not RS256/RS384/RS512.
    #[error(
        "{what} is signed with {alg:?}; Flex tokens are accepted only with RS256, RS384 or RS512"
    )]
    UnsupportedAlgorithm {
        /// `capture context` or `transient token`.
        what: &'static str,
        /// The (sanitised) algorithm name.
        alg: String,
    },

    /// An RSA key is shorter than 2048 bits (or not RSA at all).
    #[error(
        "the {role} is {found}; Flex keys must be RSA of at least 2048 bits — refusing to use it"
    )]
    WeakKey {
        /// Which key (`signing key 3g`, `flx.jwk encryption key`…).
        role: String,
        /// What it is, e.g. `RSA-1024`.
        found: String,
    },

    /// The public key for `kid` could not be fetched from `/flex/v2/public-keys/{kid}`.
    #[error("cannot fetch Flex public key {kid:?} from {environment}: {reason}")]
    KeyFetch {
        /// The (sanitised) key id.
        kid: String,
        /// The environment name.
        environment: String,
        /// What went wrong.
        reason: String,
    },

    /// The signature does not verify, even after refetching the key once.
    #[error(
        "{what} signature does not verify with key {kid:?} of {environment}; it was forged, altered, or issued \
         by another environment (check the --api/environment setting) — do not use it"
    )]
    InvalidSignature {
        /// `capture context` or `transient token`.
        what: &'static str,
        /// The (sanitised) key id.
        kid: String,
        /// The environment name.
        environment: String,
    },

    /// `exp` has passed (beyond the leeway).
    #[error(
        "{what} expired {ago_secs} s ago (leeway {leeway_secs} s); request a new capture context"
    )]
    Expired {
        /// `capture context` or `transient token`.
        what: &'static str,
        /// Seconds past `exp`.
        ago_secs: u64,
        /// The configured leeway.
        leeway_secs: u64,
    },

    /// `iat` lies in the future (beyond the leeway): clocks disagree or the token is forged.
    #[error(
        "{what} was issued {ahead_secs} s in the future (leeway {leeway_secs} s); check this machine's clock"
    )]
    NotYetValid {
        /// `capture context` or `transient token`.
        what: &'static str,
        /// Seconds ahead.
        ahead_secs: u64,
        /// The configured leeway.
        leeway_secs: u64,
    },

    /// The transient token's `kid` is not the capture context's `flx.jwk.kid`.
    #[error(
        "transient token kid {token_kid:?} does not match the capture context's flx.jwk kid {context_kid:?}; \
         it belongs to another capture context"
    )]
    KidMismatch {
        /// The token's (sanitised) kid.
        token_kid: String,
        /// The capture context's (sanitised) kid.
        context_kid: String,
    },

    /// The tokens endpoint (`flx.origin`) is not an allowed origin.
    #[error(
        "capture context points the tokens request at {origin:?}, which is not an allowed origin; only https \
         Cybersource/Visa Acceptance hosts are allowed by default (configure allowed origins for a test server)"
    )]
    OriginNotAllowed {
        /// The (sanitised) origin.
        origin: String,
    },

    /// Card or order data is unusable (message names the field, never its value).
    #[error("invalid card data: {0}")]
    InvalidData(String),

    /// A network error (connect, timeout, TLS) after all retries.
    #[error(
        "cannot reach {endpoint}: {reason} (after {attempts} attempt(s)); check connectivity and the base URL"
    )]
    Network {
        /// Which endpoint (`/flex/v2/tokens`…).
        endpoint: String,
        /// What went wrong.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },

    /// The server answered with an error status.
    #[error("{endpoint} answered HTTP {status}{hint}")]
    Http {
        /// Which endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
        /// What it probably means.
        hint: &'static str,
    },

    /// The tokens response's `Digest` header does not match its body: it was altered in transit.
    #[error(
        "the tokens response body does not match its Digest header; the response was altered — discard it and retry"
    )]
    DigestMismatch,

    /// Merchant authentication could not be produced (bad shared secret, key failure).
    #[error("merchant authentication: {0}")]
    MerchantAuth(String),

    /// Encrypted payment credentials (EPC) do not belong to this payment: wrong portfolio, or not the
    /// transient token's `paymentCredentialsReference` (the message never carries the credentials).
    #[error("encrypted payment credentials rejected: {0}")]
    Credentials(String),

    /// A JOSE operation failed.
    #[error("{0}")]
    Jose(#[from] JoseError),

    /// A key-provider operation failed (e.g. the HSM holding the merchant key).
    #[error("{0}")]
    Key(#[from] KeyError),
}

impl FlexError {
    /// True when a token, signature or response was understood and rejected (as opposed to a configuration,
    /// input or network problem). The CLI maps this to exit code 1.
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Self::Malformed { .. }
                | Self::MissingKid { .. }
                | Self::UnsupportedAlgorithm { .. }
                | Self::WeakKey { .. }
                | Self::InvalidSignature { .. }
                | Self::Expired { .. }
                | Self::NotYetValid { .. }
                | Self::KidMismatch { .. }
                | Self::OriginNotAllowed { .. }
                | Self::DigestMismatch
                | Self::Credentials(_)
                | Self::Jose(_)
        )
    }

    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

/// Shortens an untrusted string to at most 40 printable ASCII characters.
pub(crate) fn sanitize(s: &str) -> String {
    jose_core::sanitize_for_message(s, 40)
}

/// Result alias.
pub type FlexResult<T> = Result<T, FlexError>;

//! The error type of jose-core. Messages say what was wrong with a token or key without echoing the token,
//! its claims or any key material; attacker-controlled names (an `alg` value, a claim name) are shortened and
//! stripped to printable ASCII first.

use key_provider::KeyError;

/// Why a JOSE object was rejected or could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The token is larger than the configured limit; nothing was decoded.
    #[error("token is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Token size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The token's structure is wrong (part count, base64url, JSON).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which part (`JWS`, `JWE`, `header`, `claims`…).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The algorithm is refused outright (`none`, HMAC, RSA1_5…).
    #[error("algorithm {alg:?} is not allowed: {reason}")]
    ForbiddenAlgorithm {
        /// The (sanitised) algorithm name.
        alg: String,
        /// Why.
        reason: &'static str,
    },
    /// The algorithm is valid but not among those the caller allowed, or is unknown.
    #[error("algorithm {alg:?} is not accepted here")]
    UnsupportedAlgorithm {
        /// The (sanitised) algorithm name.
        alg: String,
    },
    /// A header parameter keybound refuses (`crit`, `zip`, `b64`…).
    #[error("header parameter {name:?} is not supported: {reason}")]
    UnsupportedHeader {
        /// Parameter name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// No key fits the token (kid not found, key type does not fit the algorithm…).
    #[error("no suitable key: {reason}")]
    NoKey {
        /// Why.
        reason: String,
    },
    /// The signature does not verify.
    #[error("signature verification failed")]
    InvalidSignature,
    /// The token has expired (`exp`).
    #[error("token has expired")]
    Expired,
    /// The token is not yet valid (`nbf`, or `iat` in the future).
    #[error("token is not yet valid ({claim} is in the future)")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
    },
    /// The audience does not match.
    #[error("audience (aud) does not match")]
    InvalidAudience,
    /// The issuer does not match.
    #[error("issuer (iss) does not match")]
    InvalidIssuer,
    /// The subject does not match.
    #[error("subject (sub) does not match")]
    InvalidSubject,
    /// A required claim is missing.
    #[error("required claim {0:?} is missing")]
    MissingClaim(String),
    /// A claim has the wrong type or an out-of-range value.
    #[error("claim {claim:?} is invalid: {reason}")]
    InvalidClaim {
        /// Claim name.
        claim: String,
        /// Why.
        reason: String,
    },
    /// JWE decryption failed (wrong key, tampered ciphertext, tag mismatch). Deliberately opaque.
    #[error("JWE decryption failed")]
    DecryptionFailed,
    /// A key could not be parsed or used.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The caller's input is inconsistent (e.g. a claim helper on a non-object payload).
    #[error("{0}")]
    InvalidInput(String),
}

impl JoseError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

/// Shortens an attacker-controlled string to at most 32 printable ASCII characters.
pub(crate) fn sanitize(s: &str) -> String {
    sanitize_for_message(s, 32)
}

/// Makes an untrusted string safe to put in an error message: printable ASCII and spaces only, at most `max`
/// characters, with `…` when it was cut. For names and short non-secret values only (an `alg`, a claim name,
/// a field name) — never for tokens or secrets, which do not belong in messages at all.
///
/// ```
/// assert_eq!(jose_core::sanitize_for_message("RS256\n\u{1b}[31m", 32), "RS256[31m");
/// assert_eq!(jose_core::sanitize_for_message("abcdef", 3), "abc…");
/// ```
#[must_use]
pub fn sanitize_for_message(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

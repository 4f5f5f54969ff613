//! The one error type of provisioning-signer. Every message says what was wrong and what to do about it,
//! and none carries card data (PAN, expiry, name, address, phone, email), a signed token or key material:
//! values an issuer passed in are named by their field, never echoed.

use jose_core::JoseError;
use key_provider::KeyError;

/// Why an authorization code or an enrollment payload could not be produced or was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// The signing key is not one Thales accepts for authorization codes.
    #[error(
        "the signing key is {key}, but Thales authorization codes are RS256 and need an RSA key of at least 2048 bits \
         ({reason}); generate one with `keybound keys generate --kty RSA --bits 2048`"
    )]
    UnsuitableKey {
        /// What the key is, e.g. `EC P-256` or `RSA-1024`.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A recipient or verification public key cannot be used.
    #[error("unusable public key: {reason}")]
    UnsuitablePublicKey {
        /// Why (never key bytes).
        reason: String,
    },
    /// The requested lifetime is longer than Thales allows.
    #[error(
        "ttl of {ttl} s is over the {max} s maximum Thales recommends; use a ttl of at most {max} s (default 120)"
    )]
    TtlTooLong {
        /// The requested ttl in seconds.
        ttl: u64,
        /// The maximum in seconds.
        max: u64,
    },
    /// A zero lifetime would produce an already-expired code.
    #[error("ttl must be at least 1 second (default 120, at most 300)")]
    TtlZero,
    /// `aud` is not one of the token requestors Thales knows.
    #[error("audience {value:?} is not supported; use GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY")]
    UnknownAudience {
        /// The refused value, shortened to printable ASCII.
        value: String,
    },
    /// A field is missing or has a value that cannot be used. The value itself is never included.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, as Thales spells it (`issuerCardRefId`, `fpan`, `iss`…).
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// Card data and authorization code were produced together but name different cards.
    #[error(
        "the card data's issuerCardRefId differs from the authorization code's sub; both must name the same card \
         (sign the code with the card's issuerCardRefId)"
    )]
    SubjectMismatch,
    /// Card data was paired with an authorization code for a lifecycle operation.
    #[error(
        "this authorization code was signed for a tokenId (lifecycle operation); push provisioning needs one signed \
         for the card's issuerCardRefId"
    )]
    SubjectIsTokenId,
    /// An authorization code failed verification.
    #[error("authorization code rejected: {reason}")]
    Rejected {
        /// Why (never the token or its signature).
        reason: String,
        /// The JOSE-level failure, when there is one.
        #[source]
        source: Option<JoseError>,
    },
    /// CMS data that keybound does not decrypt: not `EnvelopedData`, malformed, or using a recipient type
    /// or algorithm it refuses (judged from the structure alone, before any key is used).
    #[error("CMS data refused: {reason}")]
    CmsRefused {
        /// What was found and what is supported (never content bytes).
        reason: String,
    },
    /// CMS decryption failed after the structure was accepted. Deliberately the same for every cause
    /// (another recipient's key, altered ciphertext, bad padding): distinct answers would make an oracle.
    #[error(
        "decryption failed: the data was not encrypted to this key, or was altered (by design no further detail          is given)"
    )]
    DecryptionFailed,
    /// A JOSE operation failed (signing, encryption).
    #[error("{0}")]
    Jose(#[from] JoseError),
    /// The key backend failed.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Reading batch input or writing batch output failed.
    #[error("batch {what} failed: {source}")]
    Io {
        /// `input` or `output`.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ProvisioningError {
    pub(crate) fn field(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected {
            reason: reason.into(),
            source: None,
        }
    }
}

/// Shortens a caller-supplied string to at most 32 printable ASCII characters, for error messages about
/// values that are not secret (an audience name, a JSON member name).
pub(crate) fn sanitize(s: &str) -> String {
    jose_core::sanitize_for_message(s, 32)
}

/// Checks a non-secret identifier (issuer id, kid, sub): present, at most `max` characters, no control
/// characters. The value is never put into the error.
pub(crate) fn check_identifier(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ProvisioningError> {
    if value.trim().is_empty() {
        return Err(ProvisioningError::field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ProvisioningError::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ProvisioningError::field(
            field,
            "must not contain control characters",
        ));
    }
    if value != value.trim() {
        return Err(ProvisioningError::field(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(())
}

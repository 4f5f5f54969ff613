//! The error of keybound-pki: what was wrong with a name, an alternative name, the algorithm or the key.
//! Never key bytes.

use key_provider::KeyError;

/// What can go wrong while building a request or certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A distinguished name that cannot be parsed (`--subject`).
    #[error("invalid subject name: {reason}")]
    InvalidName {
        /// What was wrong.
        reason: String,
    },
    /// A subject alternative name that cannot be parsed (`--san`).
    #[error("invalid subject alternative name: {reason}")]
    InvalidSan {
        /// What was wrong.
        reason: String,
    },
    /// A validity period keybound does not make (`--days`).
    #[error("invalid validity: {reason}")]
    InvalidValidity {
        /// What was wrong.
        reason: String,
    },
    /// The key backend failed or refused (wrong key type for the algorithm, RSA key too small, a token
    /// error…).
    #[error(transparent)]
    Key(#[from] KeyError),
}

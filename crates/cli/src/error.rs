//! The CLI's error: a message for stderr and the exit code (1 judged and rejected; 2 usage, configuration,
//! I/O, network, key backend).

use std::fmt::Display;

/// A failure with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// One line for stderr.
    pub message: String,
}

impl CliError {
    /// Exit code 1: the input (a token, JWE, capture context, partner answer, batch line) was judged and
    /// rejected (bad signature, expired, wrong audience, unknown kid, refused by the partner…).
    pub fn rejected(message: impl Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Exit code 2: nothing was judged — usage, configuration, invalid request, I/O, network, or the key
    /// backend failing (an HSM error while signing or decrypting).
    pub fn usage(message: impl Display) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }
}

impl From<key_provider::KeyError> for CliError {
    fn from(e: key_provider::KeyError) -> Self {
        Self::usage(e)
    }
}

/// Result alias for commands.
pub type CliResult<T = ()> = Result<T, CliError>;

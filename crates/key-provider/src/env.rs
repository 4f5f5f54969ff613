//! The `env` backend: a private key in an environment variable, as PEM text or as base64 of the DER bytes
//! (PKCS#8, PKCS#1 RSA or SEC1 EC). The value is copied into a wiped buffer, and every buffer it passes
//! through on the way (whitespace removed, base64 decoded) is allocated once at its final size and wiped on
//! drop, so no reallocation leaves a copy behind; the process environment itself is not modified.

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::software::{self, SoftwareKey};

/// Loads the private key held in environment variable `var`.
///
/// ```no_run
/// # fn main() -> Result<(), key_provider::KeyError> {
/// use key_provider::KeyBackend as _;
/// // LENDER_KEY holds a PEM private key, or base64 of its DER bytes.
/// let key = key_provider::env::load("LENDER_KEY")?;
/// println!("{} ({})", key.key_label(), key.public_key().describe());
/// # Ok(()) }
/// ```
/// (Usually through [`open`](crate::open) with `env:LENDER_KEY`.)
///
/// # Errors
/// [`KeyError::EnvVarMissing`] or [`KeyError::InvalidKeyMaterial`].
pub fn load(var: &str) -> Result<SoftwareKey, KeyError> {
    let value = Zeroizing::new(std::env::var(var).map_err(|_| KeyError::EnvVarMissing {
        var: var.to_owned(),
    })?);
    let label = format!("env:{var}");
    if value.contains("-----BEGIN ") {
        return SoftwareKey::from_bytes("env", label, value.as_bytes());
    }
    // Allocated once, as large as the value: `collect()` would grow the string by reallocation, and every
    // buffer it outgrew would go back to the allocator holding part of the key, unwiped.
    let mut compact = Zeroizing::new(String::with_capacity(value.len()));
    compact.extend(value.chars().filter(|c| !c.is_ascii_whitespace()));
    // Large enough for base64's conservative estimate (3 bytes per 4 characters, rounded up), so decoding
    // into it never reallocates either.
    let mut der = Zeroizing::new(Vec::with_capacity(compact.len().div_ceil(4) * 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(compact.as_bytes(), &mut der)
        .map_err(|_| KeyError::invalid_key(format!("{var} holds neither PEM nor base64 DER")))?;
    software::from_der_bytes("env", label, &der)
}

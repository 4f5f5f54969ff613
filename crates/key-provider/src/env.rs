//! The `env` backend: a private key in an environment variable, as PEM text or as base64 of the DER bytes
//! (PKCS#8, PKCS#1 RSA or SEC1 EC). The value is copied into a wiped buffer; the process environment itself
//! is not modified.

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
    let compact: Zeroizing<String> =
        Zeroizing::new(value.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let mut der = Zeroizing::new(Vec::with_capacity(compact.len()));
    base64::engine::general_purpose::STANDARD
        .decode_vec(compact.as_bytes(), &mut der)
        .map_err(|_| KeyError::invalid_key(format!("{var} holds neither PEM nor base64 DER")))?;
    software::from_der_bytes("env", label, &der)
}

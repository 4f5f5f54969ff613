//! The `pkcs11` backend: private keys inside a PKCS#11 token (an HSM, a smart card, SoftHSM). Keys are used
//! through the token's mechanisms and never leave it; only public attributes are ever read.
//!
//! ## Naming a key
//! Keys are named by RFC 7512 URIs:
//!
//! ```text
//! pkcs11:token=keybound;object=signing;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin
//! ```
//!
//! - the **token** by `token=` (label) and/or `serial=` (also `manufacturer=`, `model=`, `slot-id=`); the slot
//!   is always found by these, never assumed. No match, or more than one, is an error that lists the tokens
//!   present.
//! - the **key** by `object=` (`CKA_LABEL`) and/or `id=` (`CKA_ID`). Exactly one private key must match;
//!   two matches are an error, not a guess, and "not found" names the token and the label/id searched.
//! - the **module** by `module-path=`, else [`OpenOptions::pkcs11_module`], else the environment variable
//!   [`MODULE_ENV`] (`KEYBOUND_PKCS11_MODULE`). A `module-path=` must name that configured module or one of
//!   [`OpenOptions::pkcs11_allowed_modules`]; any other library is refused before it is loaded
//!   ([`KeyError::ModuleNotAllowed`]), since loading a library runs its code.
//! - the **PIN** by `pin-source=file:PATH` (the file must be mode 0600 or stricter; its first line is the
//!   PIN), `pin-source=env:VAR`, or `pin-source=prompt` (typed at the terminal, without echo; only when
//!   standard input is a terminal). `pin-value=` is refused unless [`OpenOptions::allow_pin_value`] is set.
//!
//! A private key whose value can leave the token (`CKA_EXTRACTABLE` true, or `CKA_SENSITIVE` false) is
//! opened with a warning ([`KeyBackend::warnings`], and a `tracing` WARN event), or refused with
//! [`KeyError::KeyExtractable`] when [`OpenOptions::require_non_extractable`] is set.
//!
//! ## Managing keys
//! [`generate`] / [`generate_with_usage`] make a key pair in the token; [`list_keys`] lists the token's key
//! pairs (label, id, type and size, usage, sensitive/extractable, certificates) and [`delete_key`] deletes
//! one (private key, public key objects and certificates with its `CKA_ID`); module `inventory` documents
//! both.
//!
//! ## What happens inside
//! Module `key` documents the mechanisms and the audit events, module `token` the sessions, login, and
//! recovery when the HSM drops sessions. In short: one initialised context per module per process (never finalised),
//! one logged-in keep-alive session plus a bounded pool per token, and on a lost session or login: drop the
//! sessions, log in again, look the key up again, retry once.
//!
//! The blocking PKCS#11 calls of [`KeyBackend::sign_async`] and [`KeyBackend::decrypt_async`] run on tokio's
//! blocking pool (`spawn_blocking`), never on an async worker thread; without a tokio runtime they run inline.

mod certificate;
mod errors;
mod generate;
mod import;
mod inventory;
mod key;
mod module;
mod pin;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod test_hooks;
mod token;

use std::sync::Arc;

use crate::{KeyBackend, KeyError, OpenOptions, Pkcs11Uri};

pub use certificate::{read_certificate, store_certificate};
#[doc(hidden)]
pub use generate::{RsaPrivateComponents, import_private_key};
pub use generate::{generate, generate_with_usage};
pub use import::{ImportOptions, import};
pub use inventory::{
    CertificateInfo, DeletedKey, KeyKind, KeyPairInfo, TokenKeys, delete_key, list_keys,
};

/// The environment variable naming the PKCS#11 module when neither the URI nor the options do.
pub const MODULE_ENV: &str = "KEYBOUND_PKCS11_MODULE";

/// The `tracing` target of the audit events (one per sign, decrypt, login attempt, generate, import or
/// delete): [`crate::AUDIT_TARGET`], the same for every backend, re-exported here.
pub use crate::audit::AUDIT_TARGET;

/// The backend name, as [`KeyBackend::backend_name`] reports it.
pub(crate) const BACKEND: &str = "pkcs11";

/// Opens the private key named by `uri` in its token.
///
/// ```no_run
/// # fn main() -> Result<(), key_provider::KeyError> {
/// use key_provider::{OpenOptions, Pkcs11Uri, SignatureScheme};
/// let uri: Pkcs11Uri = "pkcs11:token=keybound-prod;object=lender-signing\
///     ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin"
///     .parse()?;
/// let key = key_provider::pkcs11::open(&uri, &OpenOptions::new())?;
/// let signature = key.sign(SignatureScheme::RsaPkcs1Sha256, b"message")?; // C_Sign in the token
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::NotFound`] or [`KeyError::Ambiguous`] for the token or the key, [`KeyError::ModuleNotAllowed`]
/// for a `module-path=` that is neither configured nor allowed, [`KeyError::LoginFailed`] for a rejected PIN, [`KeyError::PinUnavailable`] / [`KeyError::InsecurePinFile`] for PIN sources,
/// [`KeyError::Backend`] for module and device failures.
pub fn open(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    Ok(Arc::new(key::Pkcs11Key::open(uri, options)?))
}

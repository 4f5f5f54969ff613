//! The one error type of key-provider. Messages say what was wrong and what to do; they never carry key
//! bytes, PINs or the data being signed. Backend failures that are not cryptographic keep their cause as an
//! optional boxed source; cryptographic failures stay opaque.

use std::path::PathBuf;

/// Everything that can go wrong while naming, loading or using a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key reference string could not be parsed.
    #[error("invalid key reference: {reason}")]
    InvalidKeyRef {
        /// What was wrong (never includes a PIN value).
        reason: String,
    },
    /// The key reference names a backend this build does not contain.
    #[error(
        "the {backend} key backend is not compiled in (enable the `{feature}` feature of key-provider)"
    )]
    BackendNotCompiled {
        /// Backend name (`file`, `env`, `pkcs11`).
        backend: &'static str,
        /// Cargo feature that provides it.
        feature: &'static str,
    },
    /// A key file could not be read.
    #[error("cannot read key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is readable by group or others.
    #[error(
        "key file {} is readable by group or others (mode {mode:03o}); run `chmod 600` on it, or allow it \
         explicitly: `allow_insecure_key_file = true` in the configuration file or \
         KEYBOUND_ALLOW_INSECURE_KEY_FILE=true (library: OpenOptions::allow_insecure_permissions)",
        path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An environment variable named by `env:VAR` is not set or not valid UTF-8.
    #[error("environment variable {var} is not set (or is not valid UTF-8)")]
    EnvVarMissing {
        /// Variable name.
        var: String,
    },
    /// The key bytes are not a key keybound can use.
    #[error("invalid key material: {reason}")]
    InvalidKeyMaterial {
        /// What was wrong (no key bytes).
        reason: String,
    },
    /// A new key file could not be written (its directory is missing, is not writable, …).
    #[error("cannot write key file {}: {reason}", path.display())]
    WriteFailed {
        /// The file.
        path: PathBuf,
        /// What was wrong and what to do, e.g. the directory is missing.
        reason: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An RSA key is shorter than [`MIN_RSA_BITS`](crate::MIN_RSA_BITS) (2048 bits). Every backend refuses to
    /// sign or decrypt with it, and jose-core refuses to verify with it; no setting lowers the limit.
    #[error(
        "{key} key too small: keybound {operation} only with RSA keys of {min_bits} bits or more; {advice}"
    )]
    KeyTooSmall {
        /// What the key is, e.g. `RSA-1024`.
        key: String,
        /// What was refused: `signs`, `decrypts` or `verifies`.
        operation: &'static str,
        /// The smallest RSA key accepted ([`MIN_RSA_BITS`](crate::MIN_RSA_BITS)).
        min_bits: usize,
        /// What to do.
        advice: &'static str,
    },
    /// A PKCS#11 private key whose value can leave the token (`CKA_EXTRACTABLE` true or `CKA_SENSITIVE`
    /// false), refused because [`OpenOptions::require_non_extractable`](crate::OpenOptions) is set.
    #[error(
        "{key} is {weakness}: its value can leave the token, and `require_non_extractable` refuses such keys; \
         generate a new key in the token (`keybound keys generate --key 'pkcs11:…'` makes it sensitive and \
         never extractable)"
    )]
    KeyExtractable {
        /// Which key, e.g. `label 'signing' in token 'keybound' (serial 1a2b)`.
        key: String,
        /// `extractable (CKA_EXTRACTABLE true)`, `not sensitive (CKA_SENSITIVE false)`, or both.
        weakness: String,
    },
    /// A file that should not be overwritten already exists.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The operation is not possible with this key (e.g. ECDSA with an RSA key).
    #[error("{operation} is not possible with this key ({key})")]
    WrongKeyType {
        /// What was asked.
        operation: String,
        /// What the key is, e.g. `RSA-2048`.
        key: String,
    },
    /// The key may not be used for this operation: its token marks it for other uses only (`CKA_SIGN` or
    /// `CKA_DECRYPT` false, as for a key generated with `--usage decrypt` or `--usage sign`), or refused it
    /// with `CKR_KEY_FUNCTION_NOT_PERMITTED`.
    #[error("{operation} is not permitted with {key}: {reason}")]
    UsageNotPermitted {
        /// What was asked, e.g. `signing with RSA-PSS-SHA256`.
        operation: String,
        /// Which key, e.g. `label 'jwe-key' in token 'keybound' (serial 1a2b)`.
        key: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The backend cannot perform this operation at all (e.g. a token without the mechanism).
    #[error("{operation} is not supported by this backend ({backend}): {reason}")]
    NotSupported {
        /// What was asked.
        operation: String,
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// A PIN file is readable or writable by group or others.
    #[error(
        "PIN file {} is accessible by group or others (mode {mode:03o}); run `chmod 600` on it, or allow it \
         explicitly: `allow_insecure_key_file = true` in the configuration file or \
         KEYBOUND_ALLOW_INSECURE_KEY_FILE=true (library: OpenOptions::allow_insecure_permissions)",
        path.display()
    )]
    InsecurePinFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN could not be obtained (no PIN source, unreadable file, unset variable, refused `pin-value`).
    #[error("no usable PIN: {reason}")]
    PinUnavailable {
        /// What was wrong (never the PIN).
        reason: String,
    },
    /// The token refused the PIN (or the PIN is locked). Only the key opened with this PIN is affected.
    #[error("{backend}: login to {token} failed: {reason}")]
    LoginFailed {
        /// Backend name.
        backend: &'static str,
        /// Which token, e.g. `token 'keybound' (serial 1a2b)`.
        token: String,
        /// Why, with the token's return code (never the PIN).
        reason: String,
    },
    /// No token or key matches the reference.
    #[error("{backend}: no {what} found for {searched}")]
    NotFound {
        /// Backend name.
        backend: &'static str,
        /// What was looked for (`token`, `private key`).
        what: &'static str,
        /// The search criteria, e.g. `label 'signing', id 01 in token 'keybound' (serial 1a2b)`.
        searched: String,
    },
    /// More than one token or key matches the reference; keybound never picks one at random. The message
    /// says what tells them apart: `id=` (`CKA_ID`) for keys in one token, `serial=` for tokens.
    #[error(
        "{backend}: {count} {what}s match {searched}; make the reference unique ({})",
        if *what == "token" {
            "add `serial=` with the serial number of the token meant"
        } else {
            "add `id=` with the CKA_ID of the key meant: keys in one token may share a label, never an id"
        }
    )]
    Ambiguous {
        /// Backend name.
        backend: &'static str,
        /// What was looked for (`token`, `private key`).
        what: &'static str,
        /// The search criteria.
        searched: String,
        /// How many matched.
        count: usize,
    },
    /// A key with this name already exists where a new one was to be created.
    #[error(
        "{backend}: {what} already exists; refusing to create another one with the same label or id"
    )]
    KeyExists {
        /// Backend name.
        backend: &'static str,
        /// Which key, e.g. `a key with label 'signing' in token 'keybound'`.
        what: String,
    },
    /// Waited too long for a resource (e.g. a free PKCS#11 session).
    #[error("{backend}: timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// What was waited for.
        what: String,
        /// How long, in milliseconds.
        waited_ms: u64,
    },
    /// The PKCS#11 module (library) cannot be used: the file is missing, is not a loadable library, is a
    /// library without the PKCS#11 entry points, or its `C_Initialize` failed.
    #[error("PKCS#11 module {} cannot be used: {reason}", path.display())]
    ModuleUnavailable {
        /// The module path as given (or as resolved, once it exists).
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A key reference's `module-path=` names a library that is neither the configured PKCS#11 module nor
    /// one of the allowed modules. It was not loaded.
    #[error(
        "PKCS#11 module {} (from `module-path=`) was not loaded: it is not the configured module ({configured}) \
         and not in the allowed modules. To allow it, add it to `pkcs11_allowed_modules` in the configuration \
         file or to KEYBOUND_PKCS11_ALLOWED_MODULES (library: OpenOptions::pkcs11_allowed_modules), or make it \
         the configured module (`pkcs11_module`, KEYBOUND_PKCS11_MODULE)",
        path.display()
    )]
    ModuleNotAllowed {
        /// The module path as the key reference gave it.
        path: PathBuf,
        /// The configured module, or `none configured`.
        configured: String,
    },
    /// No usable credential for a key service: no Vault token set (`VAULT_TOKEN`, `BAO_TOKEN`,
    /// `token-source=`), an unreadable or empty token file, or one readable by group or others.
    #[error("{backend}: no usable token: {reason}")]
    TokenUnavailable {
        /// Backend name.
        backend: &'static str,
        /// What was wrong and what to do (never the token).
        reason: String,
    },
    /// A key service refused the credentials: a wrong, expired or revoked token, or a policy that does not
    /// allow the operation (HTTP 401/403, KMS `AccessDeniedException`). Not retried.
    #[error("{backend}: access denied{}: {reason}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    AccessDenied {
        /// Backend name.
        backend: &'static str,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What the service said and what to check (never the token).
        reason: String,
    },
    /// A key service kept failing (throttling, 5xx, connection refused or reset) through every retry.
    #[error("{backend}: {what} failed after {attempts} attempts: {reason}")]
    ServiceUnavailable {
        /// Backend name.
        backend: &'static str,
        /// The request, e.g. `sign with vault:issuer`.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// A signature from a remote key service did not verify against the key's public key: it was not
    /// returned (never a bad token handed to a partner).
    #[error(
        "{backend}: the {scheme} signature returned for {key} does not verify against the key's public key; \
         it was discarded{}",
        if hint.is_empty() { String::new() } else { format!(" ({hint})") }
    )]
    SignatureMismatch {
        /// Backend name.
        backend: &'static str,
        /// The key label.
        key: String,
        /// The scheme asked for.
        scheme: String,
        /// What may explain it, or empty.
        hint: String,
    },
    /// A cryptographic operation failed. Deliberately opaque.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The backend failed for a non-cryptographic reason (device, session, login…).
    #[error("{backend} backend error: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl KeyError {
    pub(crate) fn invalid_key(reason: impl Into<String>) -> Self {
        Self::InvalidKeyMaterial {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_ref(reason: impl Into<String>) -> Self {
        Self::InvalidKeyRef {
            reason: reason.into(),
        }
    }
}

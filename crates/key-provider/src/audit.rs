//! Audit events: one `tracing` event under target [`AUDIT_TARGET`] (`keybound::audit`) per private-key
//! operation (sign, decrypt) of every backend, per PKCS#11 login attempt, per key created in or deleted
//! from a token, and per key created or rotated in a key service.
//! INFO on success, WARN on failure.
//!
//! Every operation event carries the same fields, whatever the backend, so one parser reads them all:
//! `backend`, `token` (`-` for file and env keys), `key`, `operation`, `scheme`, `mechanism` (`-` for file
//! and env keys, whose operations run in aws-lc-rs), `outcome` (`success`/`failure`), `latency_us`,
//! `retried`, and on failure `ckr` (`-` when no token call failed) and `error`. Login events carry
//! `backend`, `token`, `operation` (`login`), `outcome`, `latency_us` and on failure `ckr` and `error`.
//! Key-service management events (`vault`, `aws-kms`) carry `backend`, `token` (the service), `key`,
//! `operation` (`generate`, `rotate`), `key_type`, `usage`, `version` (`-` where the service has none or it
//! is unknown), `outcome`, `latency_us` and on failure `error`: a failed rotation is recorded too, since it
//! may have happened on the service although its answer was lost.
//! Never the PIN, the data signed, the ciphertext or the plaintext.

#[cfg(any(feature = "software", feature = "pkcs11", feature = "remote"))]
use std::time::Instant;

/// The `tracing` target of the audit events.
pub const AUDIT_TARGET: &str = "keybound::audit";

/// One private-key operation, for [`operation`].
#[cfg(any(feature = "software", feature = "pkcs11", feature = "remote"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation<'a> {
    /// `file`, `env` or `pkcs11`.
    pub(crate) backend: &'a str,
    /// The token (`token 'a' (serial 1)`), for PKCS#11 keys.
    pub(crate) token: Option<&'a str>,
    /// Which key: the key label (`file:/path`, `env:VAR`) or the PKCS#11 label/id searched.
    pub(crate) key: &'a str,
    /// `sign` or `decrypt`.
    pub(crate) operation: &'a str,
    /// The scheme, e.g. `RSA-PSS-SHA256`.
    pub(crate) scheme: &'a str,
    /// The PKCS#11 mechanism, e.g. `CKM_SHA256_RSA_PKCS_PSS`.
    pub(crate) mechanism: Option<&'a str>,
}

/// How an operation (or a login) ended: success, or the error with the `CKR_…` code of the token call
/// that failed, if one did.
#[cfg(any(feature = "software", feature = "pkcs11", feature = "remote"))]
pub(crate) type Outcome<'a> = Result<(), (&'a dyn std::fmt::Display, Option<&'a str>)>;

#[cfg(any(feature = "software", feature = "pkcs11", feature = "remote"))]
fn latency_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Emits the audit event of one sign or decrypt.
#[cfg(any(feature = "software", feature = "pkcs11", feature = "remote"))]
pub(crate) fn operation(op: Operation<'_>, started: Instant, retried: bool, outcome: Outcome<'_>) {
    let latency_us = latency_us(started);
    let token = op.token.unwrap_or("-");
    let mechanism = op.mechanism.unwrap_or("-");
    match outcome {
        Ok(()) => tracing::info!(
            target: AUDIT_TARGET,
            backend = op.backend,
            token = %token,
            key = %op.key,
            operation = op.operation,
            scheme = op.scheme,
            mechanism,
            outcome = "success",
            latency_us,
            retried,
        ),
        Err((error, ckr)) => tracing::warn!(
            target: AUDIT_TARGET,
            backend = op.backend,
            token = %token,
            key = %op.key,
            operation = op.operation,
            scheme = op.scheme,
            mechanism,
            outcome = "failure",
            latency_us,
            retried,
            ckr = ckr.unwrap_or("-"),
            error = %error,
        ),
    }
}

/// Emits the audit event of one login attempt on a token.
#[cfg(feature = "pkcs11")]
pub(crate) fn login(backend: &str, token: &str, started: Instant, outcome: Outcome<'_>) {
    let latency_us = latency_us(started);
    match outcome {
        Ok(()) => tracing::info!(
            target: AUDIT_TARGET,
            backend,
            token = %token,
            operation = "login",
            outcome = "success",
            latency_us,
        ),
        Err((error, ckr)) => tracing::warn!(
            target: AUDIT_TARGET,
            backend,
            token = %token,
            operation = "login",
            outcome = "failure",
            latency_us,
            ckr = ckr.unwrap_or("-"),
            error = %error,
        ),
    }
}

/// One key created or rotated in a key service, for [`management`].
#[cfg(feature = "remote")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Management<'a> {
    /// `vault` or `aws-kms`.
    pub(crate) backend: &'a str,
    /// The service: Transit's address and mount, or `kms REGION`.
    pub(crate) service: &'a str,
    /// The key reference (`vault:issuer`, `aws-kms:alias/issuer`).
    pub(crate) key: &'a str,
    /// `generate` or `rotate`.
    pub(crate) operation: &'a str,
    /// The service's key type (`rsa-2048`, `RSA_2048`), `-` when not known.
    pub(crate) key_type: &'a str,
    /// The usage asked for (`sign`, `decrypt`, `sign,decrypt`), `-` when none was.
    pub(crate) usage: &'a str,
}

/// Emits the audit event of one key created or rotated in a key service: the version it has now on success.
#[cfg(feature = "remote")]
pub(crate) fn management(
    m: Management<'_>,
    started: Instant,
    outcome: Result<Option<u32>, &dyn std::fmt::Display>,
) {
    let latency_us = latency_us(started);
    match outcome {
        Ok(version) => tracing::info!(
            target: AUDIT_TARGET,
            backend = m.backend,
            token = %m.service,
            key = %m.key,
            operation = m.operation,
            key_type = m.key_type,
            usage = m.usage,
            version = %version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            outcome = "success",
            latency_us,
        ),
        Err(error) => tracing::warn!(
            target: AUDIT_TARGET,
            backend = m.backend,
            token = %m.service,
            key = %m.key,
            operation = m.operation,
            key_type = m.key_type,
            usage = m.usage,
            version = "-",
            outcome = "failure",
            latency_us,
            error = %error,
        ),
    }
}

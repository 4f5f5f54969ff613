//! What the key-service backends (`vault`, `aws-kms`) share, so that both behave the same under load and faults:
//!
//! - **One runtime.** Every request to a key service runs on one private multi-thread tokio runtime
//!   ([`runtime`], two worker threads, named `keybound-remote`), created on first use and kept for the life of
//!   the process, with each backend's one HTTP client and its connection pool on it. Blocking
//!   [`KeyBackend::sign`] / [`KeyBackend::decrypt`] spawn the request there and wait on a channel, so they
//!   work from any thread (also inside another runtime, where they block only the calling thread, as every
//!   blocking call does); the `_async` variants spawn it there and await it, so they never block an async
//!   worker thread and never depend on the caller's runtime flavour. Many callers overlap their requests:
//!   nothing serialises them.
//! - **Bounded retries** ([`with_retries`]): throttling (HTTP 429, KMS `ThrottlingException`), server errors
//!   (5xx) and connection failures are retried with jittered exponential backoff ([`RetryPolicy`]); refused
//!   credentials, a missing key or a wrong key type fail at once ([`Failure::Fatal`]).
//! - **Verify after sign** ([`RemoteKey`]): every signature a service returns is checked against the key's
//!   cached public key (aws-lc-rs, microseconds) before it is returned; a signature that does not verify is
//!   [`KeyError::SignatureMismatch`], never a bad token handed to a partner.
//! - **Audit** as for the other backends: one event per operation, with the service as `token` and the
//!   service's algorithm name as `mechanism`, `retried` when a retry was needed.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature;
use zeroize::Zeroizing;

use crate::audit;
use crate::der::{Reader, TAG_SEQUENCE};
use crate::{
    DecryptionScheme, KeyBackend, KeyError, KeyOperation, KeyUsage, PublicKey, SignatureScheme,
    check_rsa_size,
};

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

thread_local! {
    /// Whether this thread is one of the key-service runtime's workers.
    static ON_REMOTE_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The runtime every key-service request runs on (created on first use).
///
/// # Errors
/// [`KeyError::Backend`] when the runtime cannot be created (no threads available).
pub(crate) fn runtime(backend: &'static str) -> Result<&'static tokio::runtime::Runtime, KeyError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("keybound-remote")
                .on_thread_start(|| ON_REMOTE_RUNTIME.with(|on| on.set(true)))
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| KeyError::Backend {
            backend,
            message: format!("cannot start the runtime for key-service requests: {e}"),
            source: None,
        })
}

fn task_failed(backend: &'static str) -> KeyError {
    KeyError::Backend {
        backend,
        message: "the request task stopped without an answer (it panicked)".into(),
        source: None,
    }
}

/// Runs `fut` on the key-service runtime and waits for it on the calling thread.
///
/// # Errors
/// `fut`'s error, or [`KeyError::Backend`] when the runtime is unavailable or the task panicked.
pub(crate) fn block_on<T, F>(backend: &'static str, fut: F) -> Result<T, KeyError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, KeyError>> + Send + 'static,
{
    if ON_REMOTE_RUNTIME.with(std::cell::Cell::get) {
        // Waiting here would hold one of the runtime's two workers until a request it may itself have to
        // drive completes: refuse instead of risking a deadlock.
        return Err(KeyError::Backend {
            backend,
            message: "a blocking sign or decrypt was called on the key-service runtime (a task spawned on \
                      KeyBackend::runtime); call sign_async / decrypt_async there"
                .into(),
            source: None,
        });
    }
    let rt = runtime(backend)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        // The receiver waits for exactly this one message; a send can fail only if it is gone.
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| task_failed(backend))?
}

/// Runs `fut` on the key-service runtime and awaits it from any async context. A caller that already runs
/// on that runtime (a task spawned on [`KeyBackend::runtime`], as batch signing does) runs it inline: no
/// hand-over to another task, so the request, its connection and the caller stay on one worker thread.
///
/// # Errors
/// As [`block_on`].
pub(crate) async fn spawn<T, F>(backend: &'static str, fut: F) -> Result<T, KeyError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, KeyError>> + Send + 'static,
{
    if ON_REMOTE_RUNTIME.with(std::cell::Cell::get) {
        return fut.await;
    }
    runtime(backend)?
        .spawn(fut)
        .await
        .map_err(|_| task_failed(backend))?
}

/// How often and how patiently a key-service request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before the first retry; it doubles for each further one, up to `max_delay`. Each delay is
    /// jittered: a random point between half of it and all of it.
    pub first_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 200 ms doubling to at most 3 s: a failure is given up after 3 to 6 s of retries (long
    /// enough for a restarting server or a throttled burst, short enough for a caller's own timeout).
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    /// A policy with this many attempts and delays.
    #[must_use]
    pub fn new(attempts: u32, first_delay: Duration, max_delay: Duration) -> Self {
        Self {
            attempts: attempts.max(1),
            first_delay,
            max_delay,
        }
    }

    /// The jittered delay after failed attempt `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .first_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let mut random = [0u8; 4];
        // Without randomness the delay is simply not jittered.
        let _ = aws_lc_rs::rand::fill(&mut random);
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        base.mul_f64(0.5 + fraction / 2.0)
    }
}

/// How one attempt of a key-service request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another attempt: throttling, a 5xx, a connection refused, reset or timed out. The text says
    /// which (never a token).
    Retryable(String),
    /// Final: refused credentials, a missing key, a wrong key type, a malformed answer.
    Fatal(KeyError),
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Self::Fatal(e)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `policy.attempts` are used up. Returns the result and
/// how many retries it took.
///
/// # Errors
/// The [`Failure::Fatal`] error, or [`KeyError::ServiceUnavailable`] naming `what` and the last failure.
pub(crate) async fn with_retries<T, F, Fut>(
    backend: &'static str,
    what: &str,
    policy: RetryPolicy,
    mut attempt: F,
) -> Result<(T, u32), KeyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let attempts = policy.attempts.max(1);
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok((value, n - 1)),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retryable(reason)) if n >= attempts => {
                return Err(KeyError::ServiceUnavailable {
                    backend,
                    what: what.to_owned(),
                    attempts: n,
                    reason,
                });
            }
            Err(Failure::Retryable(reason)) => {
                let delay = policy.delay(n);
                tracing::debug!(
                    backend,
                    what,
                    attempt = n,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason = %reason,
                    "key service request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                n += 1;
            }
        }
    }
}

/// aws-lc-rs's verification algorithm for `scheme` (RSA-PSS with a salt as long as the hash, as JOSE
/// requires; ECDSA in the fixed-width `r || s` form).
fn verification_algorithm(
    scheme: SignatureScheme,
) -> &'static dyn signature::VerificationAlgorithm {
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        SignatureScheme::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
        SignatureScheme::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_FIXED,
    }
}

/// `public` parsed for verifying `scheme` signatures; `None` when it is not a key of that kind.
fn parse_for(public: &PublicKey, scheme: SignatureScheme) -> Option<signature::ParsedPublicKey> {
    let key = match scheme {
        SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => public.ec_point(),
        _ => public.rsa_public_key_der(),
    }
    .unwrap_or_default();
    if key.is_empty() {
        return None;
    }
    signature::ParsedPublicKey::new(verification_algorithm(scheme), key).ok()
}

/// One key's public key, parsed once per scheme for verify-after-sign: parsing an RSA key and setting up
/// its Montgomery context cost more than the verification itself, and aws-lc keeps that context with the
/// parsed key.
#[derive(Default)]
struct Verifiers([OnceLock<Option<signature::ParsedPublicKey>>; SignatureScheme::ALL.len()]);

impl Verifiers {
    /// Whether `signature` of `message` verifies under `public` (the key these verifiers are for).
    fn verifies(
        &self,
        public: &PublicKey,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let Some(slot) = SignatureScheme::ALL.iter().position(|s| *s == scheme) else {
            return false;
        };
        self.0[slot]
            .get_or_init(|| parse_for(public, scheme))
            .as_ref()
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

impl fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parsed: Vec<SignatureScheme> = SignatureScheme::ALL
            .iter()
            .zip(&self.0)
            .filter(|(_, slot)| slot.get().is_some())
            .map(|(scheme, _)| *scheme)
            .collect();
        f.debug_tuple("Verifiers").field(&parsed).finish()
    }
}

/// Converts a DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`, as KMS returns it) to JOSE's
/// fixed-width `r || s` with `coordinate_len` bytes each.
///
/// # Errors
/// [`KeyError::Backend`] when the input is not such a DER value or an integer is too long.
// Only KMS answers in DER (Transit answers r || s with `marshaling_algorithm=jws`).
#[cfg_attr(not(feature = "aws-kms"), allow(dead_code))]
pub(crate) fn ecdsa_der_to_fixed(
    backend: &'static str,
    der: &[u8],
    coordinate_len: usize,
) -> Result<Vec<u8>, KeyError> {
    let malformed = |why: &str| KeyError::Backend {
        backend,
        message: format!("the service returned a malformed ECDSA signature ({why})"),
        source: None,
    };
    let mut outer = Reader::new(der);
    let body = outer.read(TAG_SEQUENCE).map_err(|e| malformed(e.0))?;
    outer.finish().map_err(|e| malformed(e.0))?;
    let mut inner = Reader::new(body);
    let r = inner.read_unsigned_integer().map_err(|e| malformed(e.0))?;
    let s = inner.read_unsigned_integer().map_err(|e| malformed(e.0))?;
    inner.finish().map_err(|e| malformed(e.0))?;
    let mut out = vec![0u8; 2 * coordinate_len];
    for (i, v) in [r, s].into_iter().enumerate() {
        let v = if v == [0] { &[][..] } else { v };
        if v.len() > coordinate_len {
            return Err(malformed("an integer is longer than the curve's"));
        }
        let end = (i + 1) * coordinate_len;
        out[end - v.len()..end].copy_from_slice(v);
    }
    Ok(out)
}

/// One signature from a key service, before verify-after-sign.
#[derive(Debug)]
pub(crate) struct Signed {
    /// JOSE form: RSA modulus-wide, ECDSA fixed-width `r || s`.
    pub(crate) signature: Vec<u8>,
    /// Retries the request needed.
    pub(crate) retries: u32,
}

/// One decrypted content-encryption key from a key service.
pub(crate) struct Decrypted {
    pub(crate) plaintext: Zeroizing<Vec<u8>>,
    pub(crate) retries: u32,
}

/// What a key-service backend implements; [`RemoteKey`] turns it into a [`KeyBackend`] with the shared
/// runtime, verify-after-sign and audit. Implementations run on the key-service runtime only.
#[async_trait::async_trait]
pub(crate) trait RemoteOps: fmt::Debug + Send + Sync + 'static {
    /// `vault` or `aws-kms`.
    fn backend(&self) -> &'static str;
    /// The key label for logs and errors (the key reference, no secret).
    fn label(&self) -> &str;
    /// The service, for the audit event's `token` field: its address (and mount).
    fn service(&self) -> &str;
    /// The key's public key (the version that signs).
    fn public_key(&self) -> &PublicKey;
    /// The service's own name for the algorithm, for the audit event's `mechanism` field.
    fn mechanism(&self, scheme: SignatureScheme) -> String;
    /// The service's own name for a decryption algorithm.
    fn decrypt_mechanism(&self, scheme: DecryptionScheme) -> String;
    /// What the service records the key may do.
    fn usage(&self) -> Option<KeyUsage> {
        None
    }
    /// The key version that signs, for services with key versions (Transit).
    fn key_version(&self) -> Option<u32> {
        None
    }
    /// What may explain a signature that does not verify (e.g. a service known to sign PSS with another
    /// salt length), or empty.
    fn mismatch_hint(&self, _scheme: SignatureScheme, _message_len: usize) -> String {
        String::new()
    }
    /// Signs `message` with `scheme` (the scheme was checked against the key). Returns the JOSE form.
    async fn sign(&self, scheme: SignatureScheme, message: Vec<u8>) -> Result<Signed, KeyError>;
    /// Decrypts an RSA-OAEP ciphertext (the key was checked to be an RSA key of a usable size).
    async fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: Vec<u8>,
    ) -> Result<Decrypted, KeyError>;
}

/// A key in a key service, as a [`KeyBackend`].
#[derive(Debug)]
pub(crate) struct RemoteKey<O: RemoteOps> {
    ops: Arc<O>,
    /// The public key parsed for verify-after-sign, once per scheme.
    verifiers: Verifiers,
}

impl<O: RemoteOps> RemoteKey<O> {
    pub(crate) fn new(ops: O) -> Self {
        Self {
            ops: Arc::new(ops),
            verifiers: Verifiers::default(),
        }
    }

    fn finish_sign(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        started: Instant,
        result: Result<Signed, KeyError>,
    ) -> Result<Vec<u8>, KeyError> {
        let mut retried = false;
        let result = result.and_then(|signed| {
            retried = signed.retries > 0;
            if self
                .verifiers
                .verifies(self.ops.public_key(), scheme, message, &signed.signature)
            {
                Ok(signed.signature)
            } else {
                Err(KeyError::SignatureMismatch {
                    backend: self.ops.backend(),
                    key: self.ops.label().to_owned(),
                    scheme: scheme.to_string(),
                    hint: self.ops.mismatch_hint(scheme, message.len()),
                })
            }
        });
        self.audit(
            "sign",
            scheme.name(),
            &self.ops.mechanism(scheme),
            started,
            retried,
            result.as_ref().map(|_| ()),
        );
        result
    }

    fn check_decrypt(&self, scheme: DecryptionScheme) -> Result<(), KeyError> {
        let public = self.ops.public_key();
        if !matches!(public, PublicKey::Rsa { .. }) {
            return Err(KeyError::WrongKeyType {
                operation: format!("decrypting with {scheme}"),
                key: public.describe(),
            });
        }
        check_rsa_size(public, KeyOperation::Decrypt)
    }

    fn finish_decrypt(
        &self,
        scheme: DecryptionScheme,
        started: Instant,
        result: Result<Decrypted, KeyError>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let retried = result.as_ref().is_ok_and(|d| d.retries > 0);
        let result = result.map(|d| d.plaintext);
        self.audit(
            "decrypt",
            scheme.name(),
            &self.ops.decrypt_mechanism(scheme),
            started,
            retried,
            result.as_ref().map(|_| ()),
        );
        result
    }

    fn audit(
        &self,
        operation: &str,
        scheme: &str,
        mechanism: &str,
        started: Instant,
        retried: bool,
        result: Result<(), &KeyError>,
    ) {
        audit::operation(
            audit::Operation {
                backend: self.ops.backend(),
                token: Some(self.ops.service()),
                key: self.ops.label(),
                operation,
                scheme,
                mechanism: Some(mechanism),
            },
            started,
            retried,
            result.map_err(|e| (e as &dyn fmt::Display, None)),
        );
    }
}

#[async_trait::async_trait]
impl<O: RemoteOps> KeyBackend for RemoteKey<O> {
    fn backend_name(&self) -> &'static str {
        self.ops.backend()
    }

    fn key_label(&self) -> &str {
        self.ops.label()
    }

    fn public_key(&self) -> &PublicKey {
        self.ops.public_key()
    }

    fn usage(&self) -> Option<KeyUsage> {
        self.ops.usage()
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        runtime(self.ops.backend())
            .ok()
            .map(|rt| rt.handle().clone())
    }

    fn key_version(&self) -> Option<u32> {
        self.ops.key_version()
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let started = Instant::now();
        let result = scheme.check_key(self.ops.public_key()).and_then(|()| {
            let ops = Arc::clone(&self.ops);
            let owned = message.to_vec();
            block_on(
                self.ops.backend(),
                async move { ops.sign(scheme, owned).await },
            )
        });
        self.finish_sign(scheme, message, started, result)
    }

    fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let started = Instant::now();
        let result = self.check_decrypt(scheme).and_then(|()| {
            let ops = Arc::clone(&self.ops);
            let owned = ciphertext.to_vec();
            block_on(self.ops.backend(), async move {
                ops.decrypt(scheme, owned).await
            })
        });
        self.finish_decrypt(scheme, started, result)
    }

    async fn sign_async(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let started = Instant::now();
        let result = match scheme.check_key(self.ops.public_key()) {
            Ok(()) => {
                let ops = Arc::clone(&self.ops);
                let owned = message.to_vec();
                spawn(
                    self.ops.backend(),
                    async move { ops.sign(scheme, owned).await },
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.finish_sign(scheme, message, started, result)
    }

    async fn decrypt_async(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let started = Instant::now();
        let result = match self.check_decrypt(scheme) {
            Ok(()) => {
                let ops = Arc::clone(&self.ops);
                let owned = ciphertext.to_vec();
                spawn(self.ops.backend(), async move {
                    ops.decrypt(scheme, owned).await
                })
                .await
            }
            Err(e) => Err(e),
        };
        self.finish_decrypt(scheme, started, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached verifiers accept the key's signatures under each scheme, again and again, and refuse a
    /// changed message, a signature of another scheme and a scheme of another key type.
    #[test]
    fn verifiers_parse_once_and_check_every_signature() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = PublicKey::from_pkcs1_der(pair.public_key().as_ref()).unwrap();
        let sign = |padding: &'static dyn signature::RsaEncoding, message: &[u8]| {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(padding, &SystemRandom::new(), message, &mut sig)
                .unwrap();
            sig
        };
        let verifiers = Verifiers::default();
        let pss = sign(&signature::RSA_PSS_SHA256, b"message");
        let pkcs1 = sign(&signature::RSA_PKCS1_SHA256, b"message");
        for _ in 0..2 {
            assert!(verifiers.verifies(&public, SignatureScheme::RsaPssSha256, b"message", &pss));
            assert!(verifiers.verifies(
                &public,
                SignatureScheme::RsaPkcs1Sha256,
                b"message",
                &pkcs1
            ));
        }
        assert!(!verifiers.verifies(&public, SignatureScheme::RsaPssSha256, b"messagE", &pss));
        assert!(!verifiers.verifies(&public, SignatureScheme::RsaPkcs1Sha256, b"message", &pss));
        assert!(!verifiers.verifies(&public, SignatureScheme::RsaPssSha384, b"message", &pss));
        assert!(!verifiers.verifies(&public, SignatureScheme::EcdsaP256Sha256, b"message", &pss));
        assert_eq!(
            format!("{verifiers:?}"),
            "Verifiers([RsaPkcs1Sha256, RsaPssSha256, RsaPssSha384, EcdsaP256Sha256])"
        );
    }

    #[test]
    fn der_ecdsa_signatures_become_fixed_width() {
        // r = 0x00ff… (needs a leading zero in DER), s = 0x01 (short).
        let mut r = vec![0x00];
        r.extend([0xff; 32]);
        let der = [&[0x30, 2 + 33 + 3][..], &[0x02, 33], &r, &[0x02, 1, 0x01]].concat();
        let fixed = ecdsa_der_to_fixed("test", &der, 32).unwrap();
        assert_eq!(fixed.len(), 64);
        assert_eq!(&fixed[..32], &[0xff; 32]);
        assert_eq!(&fixed[32..63], &[0; 31]);
        assert_eq!(fixed[63], 1);
        // Too long for P-256, trailing bytes, not a sequence.
        assert!(ecdsa_der_to_fixed("test", &der, 31).is_err());
        assert!(ecdsa_der_to_fixed("test", &[der.clone(), vec![0]].concat(), 32).is_err());
        assert!(ecdsa_der_to_fixed("test", &der[2..], 32).is_err());
    }

    #[test]
    fn retries_are_bounded_and_fatal_errors_are_not_retried() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let policy = RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2));
        let mut calls = 0;
        let err = rt
            .block_on(with_retries::<(), _, _>("test", "sign", policy, || {
                calls += 1;
                async { Err(Failure::Retryable("HTTP 503".into())) }
            }))
            .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(
            err.to_string(),
            "test: sign failed after 3 attempts: HTTP 503"
        );
        let mut calls = 0;
        let err = rt
            .block_on(with_retries::<(), _, _>("test", "sign", policy, || {
                calls += 1;
                async {
                    Err(Failure::Fatal(KeyError::AccessDenied {
                        backend: "test",
                        status: Some(403),
                        reason: "permission denied".into(),
                    }))
                }
            }))
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(
            err.to_string(),
            "test: access denied (HTTP 403): permission denied"
        );
        let mut calls = 0;
        let (value, retries) = rt
            .block_on(with_retries("test", "sign", policy, || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Failure::Retryable("reset".into()))
                    } else {
                        Ok(n)
                    }
                }
            }))
            .unwrap();
        assert_eq!((value, retries), (3, 2));
    }

    #[test]
    fn jittered_delays_stay_within_half_and_all_of_the_base() {
        let policy = RetryPolicy::new(6, Duration::from_millis(200), Duration::from_secs(3));
        for (attempt, base_ms) in [
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1600),
            (5, 3000),
            (9, 3000),
        ] {
            for _ in 0..20 {
                let d = policy.delay(attempt).as_millis();
                assert!(
                    d >= base_ms / 2 && d <= base_ms,
                    "attempt {attempt}: {d} ms"
                );
            }
        }
    }
}

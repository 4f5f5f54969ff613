//! # key-provider
//!
//! The key backends of keybound, and the one trait, [`KeyBackend`], through which every private-key operation
//! goes: signing with a named [`SignatureScheme`], decrypting a content-encryption key with a
//! [`DecryptionScheme`], and handing out the [`PublicKey`]. This crate knows nothing of JOSE; `jose-core` maps
//! JOSE algorithms onto these schemes.
//!
//! **Invariant: private key bytes never leave this crate.** Backends expose operations, never keys. Software
//! keys (`file`, `env`) live in aws-lc key objects and `Zeroizing` buffers; PKCS#11 keys never leave the token.
//!
//! Backends are compiled in with cargo features and chosen at run time by a [`KeyRef`] string:
//!
//! | feature | key reference | where the key lives |
//! |---|---|---|
//! | `file` | `file:PATH` | PKCS#8 / PKCS#1 / SEC1 PEM (or DER) file, mode 0600, one private key |
//! | `env` | `env:VAR` | PEM or base64 DER in an environment variable, one private key |
//! | `pkcs11` | `pkcs11:…` (RFC 7512) | inside a PKCS#11 token (HSM) |
//! | `vault` | `vault:NAME[?…]` | an OpenBao / HashiCorp Vault Transit key (module [`vault`]) |
//! | `aws-kms` | `aws-kms:KEY[?…]` | an AWS KMS key (module [`aws_kms`]) |
//!
//! ## Blocking and async
//! [`KeyBackend::sign`] and [`KeyBackend::decrypt`] are synchronous. Software keys finish in well under a
//! millisecond, so their async variants run inline. The PKCS#11 backend overrides
//! [`KeyBackend::sign_async`] / [`KeyBackend::decrypt_async`] to run the blocking C calls on tokio's blocking
//! thread pool (`spawn_blocking`), never on an async worker thread. From async code, call the `_async`
//! variants. The key-service backends (`vault`, `aws-kms`) run their requests on one private tokio runtime
//! of their own: their blocking calls wait for it, their async variants await it (see `remote`).
//!
//! ```
//! # fn main() -> Result<(), key_provider::KeyError> {
//! use key_provider::{KeySpec, SignatureScheme};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("key.pem");
//! key_provider::file::generate(&path, KeySpec::Ec(key_provider::EcCurve::P256))?;
//! let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
//! let sig = key.sign(SignatureScheme::EcdsaP256Sha256, b"hello")?;
//! assert_eq!(sig.len(), 64); // fixed-width r || s
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

mod audit;
mod der;
mod dn;
mod error;
#[cfg(feature = "software")]
mod import;
mod keyref;
mod public_key;
#[cfg(feature = "remote")]
mod remote;
mod service_ref;
mod stored_certificate;

#[cfg(feature = "aws-kms")]
pub mod aws_kms;
#[cfg(feature = "vault")]
pub mod vault;

#[cfg(feature = "env")]
pub mod env;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(feature = "software")]
pub mod software;

pub use audit::AUDIT_TARGET;
pub use error::KeyError;
#[cfg(feature = "software")]
pub use import::ImportKey;
pub use keyref::{KeyRef, ObjectType, PinSource, Pkcs11Uri};
pub use public_key::{Certificate, EcCurve, PublicKey, PublicKeyFile};
#[cfg(feature = "remote")]
pub use remote::RetryPolicy;
pub use service_ref::{AwsKmsRef, TokenSource, VaultRef, check_service_url};
#[cfg(feature = "software")]
pub use software::SoftwareKey;
#[cfg(feature = "file")]
pub use stored_certificate::certificate_path;
pub use stored_certificate::{certificate_der, read_certificate, store_certificate};

/// The smallest RSA key keybound signs or decrypts with, in every backend, and verifies with (jose-core):
/// 2048 bits. A smaller key is refused with [`KeyError::KeyTooSmall`] naming its size; no option lowers
/// the limit. See [`check_rsa_size`].
pub const MIN_RSA_BITS: usize = 2048;

/// What a key is being used for, as [`check_rsa_size`] names it in its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyOperation {
    /// Signing (a private-key operation).
    Sign,
    /// Decrypting (a private-key operation).
    Decrypt,
    /// Verifying a signature (a public-key operation, in jose-core).
    Verify,
}

/// The one size rule for RSA keys: errors when `key` is RSA with fewer than [`MIN_RSA_BITS`] bits (EC keys
/// always pass). Every backend applies it before it signs or decrypts, jose-core before it verifies, so the
/// message is the same whatever the backend or command.
///
/// ```
/// use key_provider::{KeyOperation, PublicKey, check_rsa_size};
/// let small = PublicKey::rsa(&[0xc5; 128], &[1, 0, 1]).unwrap(); // 1024 bits
/// let err = check_rsa_size(&small, KeyOperation::Sign).unwrap_err();
/// assert!(err.to_string().starts_with("RSA-1024 key too small: keybound signs only with RSA keys of 2048 bits or more"));
/// assert!(check_rsa_size(&PublicKey::rsa(&[0xc5; 256], &[1, 0, 1]).unwrap(), KeyOperation::Sign).is_ok());
/// ```
///
/// # Errors
/// [`KeyError::KeyTooSmall`].
pub fn check_rsa_size(key: &PublicKey, operation: KeyOperation) -> Result<(), KeyError> {
    match key {
        PublicKey::Rsa { .. } if key.bits() < MIN_RSA_BITS => Err(KeyError::KeyTooSmall {
            key: key.describe(),
            operation: match operation {
                KeyOperation::Sign => "signs",
                KeyOperation::Decrypt => "decrypts",
                KeyOperation::Verify => "verifies",
            },
            min_bits: MIN_RSA_BITS,
            advice: match operation {
                KeyOperation::Sign | KeyOperation::Decrypt => {
                    "make a new key of 2048, 3072 or 4096 bits, e.g. `keybound keys generate --key KEYREF --kty RSA \
                     --bits 3072` (a file: or pkcs11: key reference), and give its public key to the partner"
                }
                KeyOperation::Verify => {
                    "the signer must sign with an RSA key of 2048 bits or more (the signature was not checked)"
                }
            },
        }),
        _ => Ok(()),
    }
}

/// Which key to generate (software or in a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySpec {
    /// RSA with this many bits (2048, 3072 or 4096).
    Rsa(usize),
    /// EC on this curve.
    Ec(EcCurve),
}

/// What a new key may be used for: `sign`, `decrypt` or `sign,decrypt` (its [`FromStr`](std::str::FromStr)
/// and [`Display`](fmt::Display) form, as `keybound keys generate --usage` spells it). The default is
/// [`KeyUsage::Sign`].
///
/// A PKCS#11 token records it in the private key (`CKA_SIGN`, `CKA_DECRYPT`, and `CKA_ALLOWED_MECHANISMS`
/// where the token supports it) and refuses other uses. A key file or environment variable records nothing:
/// a software key can do whatever its type allows, whatever usage it was generated for. Either way, only RSA
/// keys decrypt (RSA-OAEP): an EC key is for signing only.
///
/// ```
/// use key_provider::KeyUsage;
/// let usage: KeyUsage = "sign,decrypt".parse().unwrap();
/// assert!(usage.signs() && usage.decrypts());
/// assert_eq!(KeyUsage::default().to_string(), "sign");
/// assert!("encrypt".parse::<KeyUsage>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyUsage {
    /// Signing only (JWS, JWT, client assertions, authorization codes).
    #[default]
    Sign,
    /// Decryption only (unwrapping JWE content-encryption keys).
    Decrypt,
    /// Both. Prefer one key per use.
    SignAndDecrypt,
}

impl KeyUsage {
    /// The three usages, as `--usage` accepts them.
    pub const ALL: [Self; 3] = [Self::Sign, Self::Decrypt, Self::SignAndDecrypt];

    /// Whether the key may sign.
    #[must_use]
    pub const fn signs(self) -> bool {
        matches!(self, Self::Sign | Self::SignAndDecrypt)
    }

    /// Whether the key may decrypt.
    #[must_use]
    pub const fn decrypts(self) -> bool {
        matches!(self, Self::Decrypt | Self::SignAndDecrypt)
    }

    /// `sign`, `decrypt` or `sign,decrypt`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sign => "sign",
            Self::Decrypt => "decrypt",
            Self::SignAndDecrypt => "sign,decrypt",
        }
    }

    /// Errors unless a key of `spec` can be used this way (only RSA keys decrypt).
    ///
    /// # Errors
    /// [`KeyError::WrongKeyType`] for decryption with an EC key.
    pub fn check(self, spec: KeySpec) -> Result<(), KeyError> {
        match spec {
            KeySpec::Ec(curve) if self.decrypts() => Err(KeyError::WrongKeyType {
                operation: format!(
                    "usage `{self}` (keybound decrypts with RSA keys only, RSA-OAEP; an EC key can only sign)"
                ),
                key: format!("EC {curve}"),
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyUsage {
    type Err = UnknownKeyUsage;

    fn from_str(s: &str) -> Result<Self, UnknownKeyUsage> {
        Self::ALL
            .into_iter()
            .find(|u| u.name() == s)
            .ok_or_else(|| UnknownKeyUsage(s.to_owned()))
    }
}

/// A key usage that is not `sign`, `decrypt` or `sign,decrypt`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key usage `{0}`: use sign, decrypt or sign,decrypt")]
pub struct UnknownKeyUsage(String);

/// A signature scheme: padding/curve plus hash. Signatures are returned in the form JOSE uses: RSA
/// signatures as big-endian bytes of the modulus length, ECDSA as fixed-width `r || s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, salt length 48.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, salt length 64.
    RsaPssSha512,
    /// ECDSA on P-256 with SHA-256, fixed-width `r || s` (64 bytes).
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384, fixed-width `r || s` (96 bytes).
    EcdsaP384Sha384,
}

impl SignatureScheme {
    /// Every scheme, in a stable order.
    pub const ALL: [Self; 8] = [
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPkcs1Sha512,
        Self::RsaPssSha256,
        Self::RsaPssSha384,
        Self::RsaPssSha512,
        Self::EcdsaP256Sha256,
        Self::EcdsaP384Sha384,
    ];

    /// Whether this scheme can be used with `key`.
    #[must_use]
    pub fn fits(self, key: &PublicKey) -> bool {
        match (self, key) {
            (
                Self::EcdsaP256Sha256,
                PublicKey::Ec {
                    curve: EcCurve::P256,
                    ..
                },
            )
            | (
                Self::EcdsaP384Sha384,
                PublicKey::Ec {
                    curve: EcCurve::P384,
                    ..
                },
            ) => true,
            (Self::EcdsaP256Sha256 | Self::EcdsaP384Sha384, _) | (_, PublicKey::Ec { .. }) => false,
            (_, PublicKey::Rsa { .. }) => true,
        }
    }

    /// Errors unless the scheme fits `key` and the key may sign: an RSA key needs [`MIN_RSA_BITS`] bits
    /// ([`check_rsa_size`]). Every backend calls it before it signs.
    ///
    /// # Errors
    /// [`KeyError::WrongKeyType`] or [`KeyError::KeyTooSmall`].
    pub fn check_key(self, key: &PublicKey) -> Result<(), KeyError> {
        if self.fits(key) {
            check_rsa_size(key, KeyOperation::Sign)
        } else {
            Err(self.wrong_key(key))
        }
    }

    pub(crate) fn wrong_key(self, key: &PublicKey) -> KeyError {
        KeyError::WrongKeyType {
            operation: format!("signing with {self}"),
            key: key.describe(),
        }
    }
}

impl SignatureScheme {
    /// The scheme's name, as [`Display`](fmt::Display) writes it: `RSA-PSS-SHA256`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RsaPkcs1Sha256 => "RSA-PKCS1-SHA256",
            Self::RsaPkcs1Sha384 => "RSA-PKCS1-SHA384",
            Self::RsaPkcs1Sha512 => "RSA-PKCS1-SHA512",
            Self::RsaPssSha256 => "RSA-PSS-SHA256",
            Self::RsaPssSha384 => "RSA-PSS-SHA384",
            Self::RsaPssSha512 => "RSA-PSS-SHA512",
            Self::EcdsaP256Sha256 => "ECDSA-P256-SHA256",
            Self::EcdsaP384Sha384 => "ECDSA-P384-SHA384",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key-decryption scheme for content-encryption keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecryptionScheme {
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
    RsaOaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaepSha256,
}

impl DecryptionScheme {
    /// The scheme's name, as [`Display`](fmt::Display) writes it: `RSA-OAEP-SHA1`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RsaOaepSha1 => "RSA-OAEP-SHA1",
            Self::RsaOaepSha256 => "RSA-OAEP-SHA256",
        }
    }
}

impl fmt::Display for DecryptionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private key behind some backend. Object-safe; share it as `Arc<dyn KeyBackend>`.
///
/// Implementations must never expose private key bytes, and their `Debug` must not print secrets.
#[async_trait::async_trait]
pub trait KeyBackend: fmt::Debug + Send + Sync {
    /// The backend's name (`file`, `env`, `pkcs11`).
    fn backend_name(&self) -> &'static str;

    /// A label for logs and errors, e.g. `file:/etc/keys/a.pem` or the PKCS#11 URI without PIN.
    fn key_label(&self) -> &str;

    /// The public half of the key.
    fn public_key(&self) -> &PublicKey;

    /// What the key's user should know about it although it works, in sentences; empty by default. The
    /// PKCS#11 backend warns about a private key the token lets leave it (`CKA_EXTRACTABLE` true or
    /// `CKA_SENSITIVE` false); the CLI prints each warning on stderr.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the backend records the key may do, when it records it: a PKCS#11 token's `CKA_SIGN` and
    /// `CKA_DECRYPT` (as `keybound keys generate --usage` set them). `None` by default: a key file or
    /// variable records no usage (the key can do whatever its type allows).
    fn usage(&self) -> Option<KeyUsage> {
        None
    }

    /// The version of the key this handle signs with, for backends that keep versions of a key (a Transit
    /// key's latest version when it was opened, see the `vault` module); `None` by default.
    fn key_version(&self) -> Option<u32> {
        None
    }

    /// The tokio runtime this key's requests run on, for a key service (`vault`, `aws-kms`); `None` (the
    /// default) for keys that sign in this process or in a token. A caller with many concurrent operations
    /// (batch signing) can run its tasks there and call the `_async` variants, which then run inline on the
    /// same worker thread as the request's connection instead of handing over to another thread.
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }

    /// Signs `message` (the scheme hashes it). Blocking; see the crate docs.
    ///
    /// # Errors
    /// [`KeyError::WrongKeyType`] when the scheme does not fit the key, or a backend error.
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Decrypts a content-encryption key. Blocking; see the crate docs.
    ///
    /// # Errors
    /// [`KeyError::NotSupported`] by default; [`KeyError::Crypto`] when decryption fails.
    fn decrypt(
        &self,
        scheme: DecryptionScheme,
        _ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Err(KeyError::NotSupported {
            operation: scheme.to_string(),
            backend: self.backend_name(),
            reason: "this backend cannot decrypt".into(),
        })
    }

    /// Signs from async code without blocking a worker thread.
    ///
    /// # Errors
    /// As [`KeyBackend::sign`].
    async fn sign_async(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.sign(scheme, message)
    }

    /// Decrypts from async code without blocking a worker thread.
    ///
    /// # Errors
    /// As [`KeyBackend::decrypt`].
    async fn decrypt_async(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt(scheme, ciphertext)
    }
}

/// Options for [`open`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Accept a key file, or a PKCS#11 PIN file, readable by group or others (off by default).
    pub allow_insecure_permissions: bool,
    /// Accept a `pin-value=` attribute in a PKCS#11 URI (off by default: prefer `pin-source`).
    pub allow_pin_value: bool,
    /// PKCS#11 module to use when the URI names none (also `KEYBOUND_PKCS11_MODULE`): the configured module.
    pub pkcs11_module: Option<PathBuf>,
    /// PKCS#11 modules that a key reference's `module-path=` may name besides the configured module
    /// ([`OpenOptions::pkcs11_module`], else `KEYBOUND_PKCS11_MODULE`). A `module-path=` naming any other
    /// library is refused with [`KeyError::ModuleNotAllowed`] before the library is loaded (loading runs its
    /// code). Paths are compared after resolving symbolic links, without loading anything.
    pub pkcs11_allowed_modules: Vec<PathBuf>,
    /// How long a PKCS#11 operation waits for a free session before failing with [`KeyError::Timeout`]
    /// (default [`OpenOptions::DEFAULT_PKCS11_SESSION_WAIT`]).
    pub pkcs11_session_wait: Option<Duration>,
    /// Most sessions the pool of one PKCS#11 token opens for operations, besides its logged-in keep-alive
    /// session (default [`OpenOptions::DEFAULT_PKCS11_MAX_SESSIONS`]). The first key opened on a token sets
    /// its pool size for the life of the process.
    pub pkcs11_max_sessions: Option<usize>,
    /// Refuse a PKCS#11 private key whose value can leave the token (`CKA_EXTRACTABLE` true or
    /// `CKA_SENSITIVE` false) with [`KeyError::KeyExtractable`] (off by default: such a key is opened with
    /// a warning, see [`KeyBackend::warnings`]). The CLI's `require_non_extractable` setting.
    pub require_non_extractable: bool,
}

impl OpenOptions {
    /// Default wait for a free PKCS#11 session: 5 seconds.
    pub const DEFAULT_PKCS11_SESSION_WAIT: Duration = Duration::from_secs(5);
    /// Default size of a PKCS#11 token's session pool: 8 sessions.
    pub const DEFAULT_PKCS11_MAX_SESSIONS: usize = 8;

    /// Default options: strict permissions, no inline PINs.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`OpenOptions::pkcs11_session_wait`].
    #[must_use]
    pub fn pkcs11_session_wait(mut self, wait: Duration) -> Self {
        self.pkcs11_session_wait = Some(wait);
        self
    }

    /// Sets [`OpenOptions::pkcs11_max_sessions`] (at least 1).
    #[must_use]
    pub fn pkcs11_max_sessions(mut self, max: usize) -> Self {
        self.pkcs11_max_sessions = Some(max.max(1));
        self
    }

    /// Sets [`OpenOptions::allow_insecure_permissions`].
    #[must_use]
    pub fn allow_insecure_permissions(mut self, allow: bool) -> Self {
        self.allow_insecure_permissions = allow;
        self
    }

    /// Sets [`OpenOptions::require_non_extractable`].
    #[must_use]
    pub fn require_non_extractable(mut self, require: bool) -> Self {
        self.require_non_extractable = require;
        self
    }

    /// Sets [`OpenOptions::allow_pin_value`].
    #[must_use]
    pub fn allow_pin_value(mut self, allow: bool) -> Self {
        self.allow_pin_value = allow;
        self
    }

    /// Sets [`OpenOptions::pkcs11_module`].
    #[must_use]
    pub fn pkcs11_module(mut self, module: Option<PathBuf>) -> Self {
        self.pkcs11_module = module;
        self
    }

    /// Sets [`OpenOptions::pkcs11_allowed_modules`].
    #[must_use]
    pub fn pkcs11_allowed_modules<P: Into<PathBuf>>(
        mut self,
        modules: impl IntoIterator<Item = P>,
    ) -> Self {
        self.pkcs11_allowed_modules = modules.into_iter().map(Into::into).collect();
        self
    }
}

/// Opens the key named by `key_ref` with the backend it names.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use key_provider::{KeyRef, OpenOptions, SignatureScheme};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("lender.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// // One string names the key: file:PATH, env:VAR, or an RFC 7512 pkcs11: URI.
/// let key_ref: KeyRef = format!("file:{}", path.display()).parse()?;
/// let key = key_provider::open(&key_ref, &OpenOptions::new())?;
/// let signature = key.sign(SignatureScheme::RsaPssSha256, b"message")?;
/// assert_eq!(signature.len(), 256);
/// assert_eq!(key.backend_name(), "file");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::BackendNotCompiled`] when that backend's feature is off, or the backend's own errors.
pub fn open(key_ref: &KeyRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let started = std::time::Instant::now();
    let result = open_inner(key_ref, options);
    match &result {
        Ok(k) => tracing::debug!(
            key = %key_ref,
            backend = key_ref.backend(),
            key_type = %k.public_key().describe(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "key opened"
        ),
        Err(e) => {
            tracing::warn!(key = %key_ref, backend = key_ref.backend(), error = %e, "key open failed")
        }
    }
    result
}

fn open_inner(key_ref: &KeyRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let _ = options;
    match key_ref {
        #[cfg(feature = "file")]
        KeyRef::File(path) => Ok(Arc::new(file::load(
            path,
            options.allow_insecure_permissions,
        )?)),
        #[cfg(not(feature = "file"))]
        KeyRef::File(_) => Err(KeyError::BackendNotCompiled {
            backend: "file",
            feature: "file",
        }),
        #[cfg(feature = "env")]
        KeyRef::Env(var) => Ok(Arc::new(env::load(var)?)),
        #[cfg(not(feature = "env"))]
        KeyRef::Env(_) => Err(KeyError::BackendNotCompiled {
            backend: "env",
            feature: "env",
        }),
        #[cfg(feature = "pkcs11")]
        KeyRef::Pkcs11(uri) => pkcs11::open(uri, options),
        #[cfg(not(feature = "pkcs11"))]
        KeyRef::Pkcs11(_) => Err(KeyError::BackendNotCompiled {
            backend: "pkcs11",
            feature: "pkcs11",
        }),
        #[cfg(feature = "vault")]
        KeyRef::Vault(r) => vault::open(r, options),
        #[cfg(not(feature = "vault"))]
        KeyRef::Vault(_) => Err(KeyError::BackendNotCompiled {
            backend: "vault",
            feature: "vault",
        }),
        #[cfg(feature = "aws-kms")]
        KeyRef::AwsKms(r) => aws_kms::open(r, options),
        #[cfg(not(feature = "aws-kms"))]
        KeyRef::AwsKms(_) => Err(KeyError::BackendNotCompiled {
            backend: "aws-kms",
            feature: "aws-kms",
        }),
    }
}

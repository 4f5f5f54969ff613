//! Cybersource message-level encryption (MLE) of merchant requests and responses, opt-in per request.
//!
//! - **Request MLE**: the JSON body is replaced by `{"encryptedRequest":"<compact JWE>"}`, the JWE
//!   RSA-OAEP-256 + A256GCM to Cybersource's MLE certificate (the `CyberSource_SJC_US` entry of the
//!   merchant's P12, or a certificate file) with protected header `kid` = that certificate's subject
//!   `serialNumber` attribute and `iat` = now ([`MleCertificate`], [`encrypt_request`]). Merchant
//!   authentication then signs the body **as sent**: the JWT `digest` is over the encrypted body.
//! - **Response MLE**: the JWT v2 merchant authentication carries `v-c-response-mle-kid` (the kid under which
//!   Cybersource knows the merchant's response key), and Cybersource answers
//!   `{"encryptedResponse":"<compact JWE>"}` encrypted to that key ([`ResponseMle`]). The JWE is decrypted
//!   through a [`KeyBackend`] ([`decrypt_response`]): the merchant's private key may stay in an HSM (the
//!   Cybersource SDKs read it from a file). RSA-OAEP-256 or RSA-OAEP with A256GCM or A128GCM are accepted, as
//!   the SDKs do; a 2xx answer that is not encrypted while response MLE was asked for is refused, never read
//!   as plaintext.
//!
//! MLE is supported with JWT authentication only (as in Cybersource's SDKs). Neither the plaintext body,
//! the decrypted response nor a content-encryption key is logged; logs carry the MLE `kid`s and sizes.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use jose_core::jwe::{DecryptOptions, EncryptOptions};
use jose_core::{ContentEncryption, KeyManagementAlgorithm};
use key_provider::{Certificate, KeyBackend, PublicKey, PublicKeyFile};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::FlexError;

/// The body member that carries an encrypted request.
pub const ENCRYPTED_REQUEST: &str = "encryptedRequest";
/// The body member that carries an encrypted response.
pub const ENCRYPTED_RESPONSE: &str = "encryptedResponse";
/// How many days before the MLE certificate's `notAfter` a warning is logged (as Cybersource's SDKs do).
pub const EXPIRY_WARNING_DAYS: i64 = 90;
/// The JWT v2 claim naming the merchant's response MLE key.
pub const RESPONSE_MLE_KID_CLAIM: &str = "v-c-response-mle-kid";

/// Cybersource's MLE certificate, reduced to what request encryption needs: its RSA key and its `kid`
/// (the certificate subject's `serialNumber` attribute).
#[derive(Clone, PartialEq, Eq)]
pub struct MleCertificate {
    key: PublicKey,
    kid: String,
    not_after: Option<i64>,
}

impl fmt::Debug for MleCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MleCertificate")
            .field("kid", &self.kid)
            .field("key", &self.key.describe())
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl MleCertificate {
    /// From a parsed certificate: its key, and its subject `serialNumber` as `kid`. A certificate that
    /// expires within [`EXPIRY_WARNING_DAYS`] days (or has expired) is used with a `warn` event.
    ///
    /// # Errors
    /// [`FlexError::Config`] when the subject has no `serialNumber` attribute (not a Cybersource MLE
    /// certificate) or the key is not RSA of at least 2048 bits.
    pub fn from_certificate(certificate: &Certificate) -> Result<Self, FlexError> {
        let kid = certificate.subject_serial_number().ok_or_else(|| {
            FlexError::Config(
                "the MLE certificate's subject has no serialNumber attribute, which Cybersource's MLE \
                 certificate carries as its key id; give the CyberSource_SJC_US certificate"
                    .into(),
            )
        })?;
        let mut mle = Self::new(certificate.public_key.clone(), kid)?;
        mle.not_after = Some(certificate.not_after);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let days_left = (certificate.not_after - now).div_euclid(86_400);
        if days_left < EXPIRY_WARNING_DAYS {
            // As Cybersource's SDKs do: a warning, not a refusal (Cybersource decides what it accepts).
            tracing::warn!(
                mle_kid = %mle.kid,
                days_left,
                "the Cybersource MLE certificate expires within {EXPIRY_WARNING_DAYS} days (or has expired); get its successor from the Business Center"
            );
        }
        Ok(mle)
    }

    /// Reads a certificate file (PEM or DER; a PEM chain: its leaf).
    ///
    /// # Errors
    /// [`FlexError::Key`] when the file cannot be read or parsed, [`FlexError::Config`] when it is a bare
    /// public key (no subject, so no `kid`) or as [`MleCertificate::from_certificate`].
    pub fn from_file(path: &Path) -> Result<Self, FlexError> {
        let file = PublicKeyFile::read(path)?;
        let certificate = file.certificate.ok_or_else(|| {
            FlexError::Config(format!(
                "{} is a bare public key; MLE needs Cybersource's MLE certificate (its subject names the key)",
                path.display()
            ))
        })?;
        Self::from_certificate(&certificate)
    }

    /// An RSA key with an explicit `kid` (when the certificate is not at hand).
    ///
    /// # Errors
    /// [`FlexError::Config`] for a key that is not RSA of at least 2048 bits, or an empty or non-printable
    /// `kid`.
    pub fn new(key: PublicKey, kid: impl Into<String>) -> Result<Self, FlexError> {
        let kid = kid.into();
        if !printable_id(&kid) {
            return Err(FlexError::Config(
                "the MLE key id must be non-empty printable ASCII".into(),
            ));
        }
        if !matches!(key, PublicKey::Rsa { .. }) {
            return Err(FlexError::Config(format!(
                "MLE encrypts with RSA-OAEP-256; the MLE key is {}",
                key.describe()
            )));
        }
        if key.bits() < key_provider::MIN_RSA_BITS {
            return Err(FlexError::Config(format!(
                "the MLE key is {}; Cybersource's MLE certificates are RSA of at least {} bits",
                key.describe(),
                key_provider::MIN_RSA_BITS
            )));
        }
        Ok(Self {
            key,
            kid,
            not_after: None,
        })
    }

    /// The `kid` put in the request JWE header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The certificate's `notAfter` (seconds since the epoch), when it came from a certificate.
    #[must_use]
    pub fn not_after(&self) -> Option<i64> {
        self.not_after
    }
}

/// The merchant's response MLE key: the private key Cybersource encrypts responses to (in any backend)
/// and the `kid` Cybersource knows it by (sent as `v-c-response-mle-kid`).
#[derive(Clone)]
pub struct ResponseMle {
    key: Arc<dyn KeyBackend>,
    kid: String,
}

impl fmt::Debug for ResponseMle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseMle")
            .field("kid", &self.kid)
            .field("key", &self.key.key_label())
            .finish()
    }
}

impl ResponseMle {
    /// `key` decrypts responses (RSA, at least 2048 bits); `kid` is the id registered with Cybersource.
    ///
    /// # Errors
    /// [`FlexError::Config`] for a non-RSA key or a bad `kid`, [`FlexError::Key`] for a short RSA key.
    pub fn new(key: Arc<dyn KeyBackend>, kid: impl Into<String>) -> Result<Self, FlexError> {
        let kid = kid.into();
        if !printable_id(&kid) || kid.contains('"') {
            return Err(FlexError::Config(
                "the response MLE key id must be non-empty printable ASCII without quotes".into(),
            ));
        }
        let public = key.public_key();
        if !matches!(public, PublicKey::Rsa { .. }) {
            return Err(FlexError::Config(format!(
                "response MLE decrypts RSA-OAEP; {} is {}",
                key.key_label(),
                public.describe()
            )));
        }
        key_provider::check_rsa_size(public, key_provider::KeyOperation::Decrypt)?;
        Ok(Self { key, kid })
    }

    /// The `v-c-response-mle-kid`.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The decryption key.
    #[must_use]
    pub fn key(&self) -> &Arc<dyn KeyBackend> {
        &self.key
    }
}

/// Message-level encryption for one request: the request encrypted to `request`, and, when `response` is
/// given, the response asked for encrypted to the merchant's key.
#[derive(Clone, Debug)]
pub struct Mle {
    request: MleCertificate,
    response: Option<ResponseMle>,
}

impl Mle {
    /// Request MLE only.
    #[must_use]
    pub fn new(request: MleCertificate) -> Self {
        Self {
            request,
            response: None,
        }
    }

    /// Also asks for the response encrypted to `response`.
    #[must_use]
    pub fn with_response(mut self, response: ResponseMle) -> Self {
        self.response = Some(response);
        self
    }

    /// The certificate requests are encrypted to.
    #[must_use]
    pub fn request(&self) -> &MleCertificate {
        &self.request
    }

    /// The response key, when response MLE is on.
    #[must_use]
    pub fn response(&self) -> Option<&ResponseMle> {
        self.response.as_ref()
    }
}

fn printable_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Encrypts a request body for `certificate`: returns `{"encryptedRequest":"<JWE>"}`, the body to send
/// (and to digest for authentication). The JWE header is `{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":…,
/// "iat":…}` with `iat` from `at`.
///
/// # Errors
/// [`FlexError::Jose`] when encryption fails.
pub fn encrypt_request(
    certificate: &MleCertificate,
    body: &[u8],
    at: SystemTime,
) -> Result<Vec<u8>, FlexError> {
    let iat = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jwe = jose_core::jwe::encrypt(
        &certificate.key,
        KeyManagementAlgorithm::RsaOaep256,
        ContentEncryption::A256GCM,
        body,
        &EncryptOptions::new()
            .kid(certificate.kid.clone())
            .header("iat", iat),
    )?;
    let mut out = serde_json::Map::new();
    out.insert(ENCRYPTED_REQUEST.into(), jwe.into());
    let sent = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| FlexError::InvalidData(format!("cannot encode the request: {e}")))?;
    tracing::debug!(
        mle_kid = %certificate.kid,
        plaintext_bytes = body.len(),
        sent_bytes = sent.len(),
        "MLE request encrypted"
    );
    Ok(sent)
}

/// Whether a response body is `{"encryptedResponse": …}`.
#[must_use]
pub fn is_encrypted_response(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get(ENCRYPTED_RESPONSE).is_some_and(Value::is_string))
}

/// Decrypts `{"encryptedResponse":"<JWE>"}` with the merchant's response key (through its backend) and
/// returns the plaintext, wiped on drop.
///
/// # Errors
/// [`FlexError::Malformed`] when the body is not an encrypted response; [`FlexError::Jose`] when the JWE
/// is malformed, uses other algorithms, or does not decrypt with the key (one error for every
/// cryptographic failure); [`FlexError::Key`] for a backend failure.
pub async fn decrypt_response(
    response: &ResponseMle,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, FlexError> {
    const WHAT: &str = "MLE response";
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        FlexError::malformed(
            WHAT,
            "response MLE was asked for but the answer is not JSON",
        )
    })?;
    let jwe = value
        .get(ENCRYPTED_RESPONSE)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            FlexError::malformed(
                WHAT,
                "response MLE was asked for but the answer has no encryptedResponse; it is not read as plaintext",
            )
        })?;
    let options = DecryptOptions::default();
    let decrypted = jose_core::jwe::decrypt_async(jwe, response.key.as_ref(), &options).await;
    tracing::debug!(
        response_mle_kid = %response.kid,
        ok = decrypted.is_ok(),
        "MLE response decrypt"
    );
    Ok(decrypted?.plaintext)
}

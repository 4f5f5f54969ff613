//! Self-signed X.509 v3 certificates (RFC 5280) signed through a [`KeyBackend`], for partners who take a
//! certificate instead of a bare public key (Thales at onboarding, a Keycloak client).
//!
//! What the certificate holds:
//! - version 3, a random positive 128-bit serial number, issuer = subject;
//! - validity from now minus five minutes (clock skew between machines) for the number of days asked
//!   (times as UTCTime up to 2049, GeneralizedTime from 2050, as RFC 5280 requires);
//! - the key's SubjectPublicKeyInfo as the backend reports it;
//! - extensions: basicConstraints `CA:FALSE` (critical: an end-entity certificate, never an issuer),
//!   keyUsage (critical) `digitalSignature` for a signing key, plus `keyEncipherment` for
//!   [`KeyUsage::SignAndDecrypt`] (`keyEncipherment` alone for [`KeyUsage::Decrypt`]) — the usage asked for,
//!   else the one the backend records ([`KeyBackend::usage`]: a token key made with `--usage sign,decrypt`
//!   gets both), else signing only —, subjectKeyIdentifier
//!   (SHA-1 of the subjectPublicKey bits, RFC 5280 §4.2.1.2 method 1), authorityKeyIdentifier with the same
//!   identifier (self-signed), and subjectAltName when names are given.
//!
//! OpenSSL accepts such a certificate as its own trust anchor: `openssl verify -CAfile cert.pem cert.pem`.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SecureRandom as _;
use key_provider::{KeyBackend, KeyUsage, PublicKey, SignatureScheme};

use crate::der_write as der;
use crate::error::PkiError;
use crate::name::{DistinguishedName, SubjectAltName};
use crate::signature;

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];
const AUTHORITY_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 35];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];

/// How far `notBefore` lies before now: five minutes, for clocks that run behind.
pub const BACKDATE_SECS: i64 = 300;
/// The default validity in days (`keys certificate --days`).
pub const DEFAULT_DAYS: u32 = 365;
/// The longest validity keybound writes, in days (100 years).
pub const MAX_DAYS: u32 = 36_525;

/// One Extension: `SEQUENCE { extnID, critical (only when true), extnValue OCTET STRING }`.
fn extension(oid: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    if critical {
        der::sequence(&[
            &der::oid(oid),
            &der::boolean(true),
            &der::octet_string(value),
        ])
    } else {
        der::sequence(&[&der::oid(oid), &der::octet_string(value)])
    }
}

/// The subjectAltName extension (not critical: the subject name is never empty here).
pub(crate) fn san_extension(sans: &[SubjectAltName]) -> Vec<u8> {
    let names: Vec<Vec<u8>> = sans.iter().map(SubjectAltName::to_der).collect();
    extension(
        SUBJECT_ALT_NAME,
        false,
        &der::tlv(der::SEQUENCE, &names.concat()),
    )
}

/// RFC 5280 §4.2.1.2 method 1: the SHA-1 of the BIT STRING subjectPublicKey (without tag, length and
/// unused-bits count).
#[must_use]
pub fn key_identifier(key: &PublicKey) -> Vec<u8> {
    let bits = match key {
        PublicKey::Ec { .. } => key.ec_point().unwrap_or_default(),
        _ => key.rsa_public_key_der().unwrap_or_default(),
    };
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &bits)
        .as_ref()
        .to_vec()
}

/// A self-signed certificate to be signed by a key.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keybound_pki::CertificateBuilder;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("issuer.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Ec(key_provider::EcCurve::P256))?;
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let der = CertificateBuilder::new("CN=acmebank,O=Acme Bank,C=FR".parse()?)
///     .days(730)
///     .sign(key.as_ref())?; // ecdsa-with-SHA256, made by the backend
/// let certificate = key_provider::Certificate::from_der(&der)?;
/// assert_eq!(&certificate.public_key, key.public_key());
/// assert_eq!(certificate.not_after - certificate.not_before, 730 * 86_400 + 300);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CertificateBuilder {
    /// The subject (and issuer).
    pub subject: DistinguishedName,
    /// Subject alternative names, in order.
    pub sans: Vec<SubjectAltName>,
    /// The signature scheme; `None`: [`default_scheme`](crate::default_scheme) for the key.
    pub scheme: Option<SignatureScheme>,
    /// Validity in days from now (default [`DEFAULT_DAYS`]).
    pub days: u32,
    /// What the key is for: sets keyUsage (module docs). `None`: what the backend records
    /// ([`KeyBackend::usage`]), else [`KeyUsage::Sign`].
    pub usage: Option<KeyUsage>,
    /// The moment the validity is counted from (default: now), in seconds since the epoch.
    pub now: Option<i64>,
}

impl CertificateBuilder {
    /// A certificate for `subject`, valid [`DEFAULT_DAYS`] days, for a signing key.
    #[must_use]
    pub fn new(subject: DistinguishedName) -> Self {
        Self {
            subject,
            sans: Vec::new(),
            scheme: None,
            days: DEFAULT_DAYS,
            usage: None,
            now: None,
        }
    }

    /// Adds a subject alternative name.
    #[must_use]
    pub fn san(mut self, san: SubjectAltName) -> Self {
        self.sans.push(san);
        self
    }

    /// Sets the signature scheme (`None`: the key's default).
    #[must_use]
    pub fn scheme(mut self, scheme: Option<SignatureScheme>) -> Self {
        self.scheme = scheme;
        self
    }

    /// Sets the validity in days (1 to [`MAX_DAYS`]).
    #[must_use]
    pub fn days(mut self, days: u32) -> Self {
        self.days = days;
        self
    }

    /// Sets the key usage (`None`: what the backend records, else signing only).
    #[must_use]
    pub fn usage(mut self, usage: impl Into<Option<KeyUsage>>) -> Self {
        self.usage = usage.into();
        self
    }

    /// Counts the validity from `now` (seconds since the epoch) instead of the clock.
    #[must_use]
    pub fn now(mut self, now: i64) -> Self {
        self.now = Some(now);
        self
    }

    /// The scheme and the DER TBSCertificate.
    fn to_be_signed(&self, key: &dyn KeyBackend) -> Result<(SignatureScheme, Vec<u8>), PkiError> {
        let public = key.public_key();
        let scheme = self
            .scheme
            .unwrap_or_else(|| signature::default_scheme(public));
        signature::check_scheme(scheme, public)?;
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(PkiError::InvalidValidity {
                reason: format!("{} days: give 1 to {MAX_DAYS}", self.days),
            });
        }
        let usage = self.usage.or_else(|| key.usage()).unwrap_or_default();
        if usage.decrypts() && !matches!(public, PublicKey::Rsa { .. }) {
            return Err(PkiError::Key(key_provider::KeyError::WrongKeyType {
                operation: format!(
                    "a certificate for usage `{usage}` (keyEncipherment needs an RSA key)"
                ),
                key: public.describe(),
            }));
        }
        let now = match self.now {
            Some(now) => now,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        };
        let not_before = now - BACKDATE_SECS;
        let not_after = now + i64::from(self.days) * 86_400;

        let mut serial = [0u8; 16];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut serial)
            .map_err(|_| PkiError::InvalidValidity {
                reason: "cannot draw a random serial number".into(),
            })?;
        // Positive (top bit clear) and 16 bytes long (second bit set), as CAs make them.
        serial[0] = (serial[0] & 0x7f) | 0x40;

        let mut bits = Vec::new();
        if usage.signs() {
            bits.push(0); // digitalSignature
        }
        if usage.decrypts() {
            bits.push(2); // keyEncipherment
        }
        let ski = key_identifier(public);
        let mut extensions = vec![
            extension(BASIC_CONSTRAINTS, true, &der::sequence(&[])),
            extension(KEY_USAGE, true, &der::named_bits(&bits)),
            extension(SUBJECT_KEY_IDENTIFIER, false, &der::octet_string(&ski)),
            extension(
                AUTHORITY_KEY_IDENTIFIER,
                false,
                &der::sequence(&[&der::context_primitive(0, &ski)]),
            ),
        ];
        if !self.sans.is_empty() {
            extensions.push(san_extension(&self.sans));
        }
        let extensions: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
        let name = self.subject.to_der();
        let tbs = der::sequence(&[
            &der::context(0, &der::small_integer(2)),
            &der::unsigned_integer(&serial),
            &signature::algorithm_identifier(scheme),
            &name,
            &der::sequence(&[&der::time(not_before), &der::time(not_after)]),
            &name,
            &public.to_spki_der(),
            &der::context(3, &der::sequence(&extensions)),
        ]);
        Ok((scheme, tbs))
    }

    /// Builds the certificate and has `key` sign it; returns the DER certificate.
    ///
    /// # Errors
    /// [`PkiError::InvalidValidity`] for `days` out of range; [`PkiError::Key`] when the scheme or usage
    /// does not fit the key, or the backend fails or refuses.
    pub fn sign(&self, key: &dyn KeyBackend) -> Result<Vec<u8>, PkiError> {
        let (scheme, tbs) = self.to_be_signed(key)?;
        signature::sign(key, scheme, &tbs)
    }

    /// As [`CertificateBuilder::sign`], from async code (the backend's [`KeyBackend::sign_async`]).
    ///
    /// # Errors
    /// As [`CertificateBuilder::sign`].
    pub async fn sign_async(&self, key: &dyn KeyBackend) -> Result<Vec<u8>, PkiError> {
        let (scheme, tbs) = self.to_be_signed(key)?;
        signature::sign_async(key, scheme, &tbs).await
    }
}

/// PEM (`CERTIFICATE`, 64-column lines, LF) of a DER certificate.
#[must_use]
pub fn certificate_pem(der: &[u8]) -> String {
    crate::pem_encode("CERTIFICATE", der)
}

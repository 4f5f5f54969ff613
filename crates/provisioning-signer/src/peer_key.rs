//! Public keys from the other side of onboarding: the Thales public key that enrollment data is encrypted
//! to, and the issuer certificate authorization codes are checked against. Accepted as SPKI PEM
//! (`PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`), a JWK (or a JWKS of one key), or an X.509 certificate in PEM
//! or DER, from which the SubjectPublicKeyInfo is taken by a small, strict DER walk (no certificate path is
//! validated: the certificate is only a carrier for the key exchanged at onboarding). A certificate outside
//! its validity period is still used, with a warning event.
//!
//! A JWK's `use` and `key_ops` (RFC 7517) are kept: [`PeerKey::for_encryption`] and
//! [`PeerKey::for_verification`] refuse a key marked for the other purpose (a Thales key marked `"sig"` is
//! not encrypted to; an issuer key marked `"enc"` does not verify authorization codes).

use jose_core::KeyPurpose;
use key_provider::PublicKey;

use crate::error::ProvisioningError;

/// Where a [`PeerKey`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerKeySource {
    /// SPKI or PKCS#1 public key (PEM or DER).
    PublicKey,
    /// A JWK (or a JWKS holding exactly one key).
    Jwk,
    /// An X.509 certificate (PEM or DER).
    Certificate,
}

/// A public key loaded from a file exchanged at onboarding.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerKey {
    /// The key.
    pub key: PublicKey,
    /// The JWK's `kid`, when the key came as a JWK that has one.
    pub kid: Option<String>,
    /// What the input was.
    pub source: PeerKeySource,
    /// The certificate's validity period (notBefore, notAfter) in seconds since the epoch.
    pub validity: Option<(i64, i64)>,
    /// The JWK's `use`, when the key came as a JWK that has one.
    pub key_use: Option<String>,
    /// The JWK's `key_ops`, when the key came as a JWK that has them.
    pub key_ops: Option<Vec<String>>,
}

impl PeerKey {
    fn without_jwk_members(key: PublicKey, source: PeerKeySource) -> Self {
        Self {
            key,
            kid: None,
            source,
            validity: None,
            key_use: None,
            key_ops: None,
        }
    }

    fn for_purpose(&self, purpose: KeyPurpose) -> Result<PublicKey, ProvisioningError> {
        if purpose.permitted_by(self.key_use.as_deref(), self.key_ops.as_deref()) {
            return Ok(self.key.clone());
        }
        let marking = match &self.key_use {
            Some(u) if !purpose.permitted_by(Some(u), None) => {
                format!("`use` {:?}", crate::error::sanitize(u))
            }
            _ => "`key_ops`".to_owned(),
        };
        Err(bad(format!(
            "the JWK is marked for another purpose ({marking}), not for {} (RFC 7517); ask for the right key",
            purpose.describe()
        )))
    }

    /// The key, to encrypt to (enrollment data to the Thales key): refused when its JWK `use` or `key_ops`
    /// rule out encryption.
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitablePublicKey`] naming the marking.
    pub fn for_encryption(&self) -> Result<PublicKey, ProvisioningError> {
        self.for_purpose(KeyPurpose::Encrypt)
    }

    /// The key, to verify signatures with (authorization codes, with the issuer's key): refused when its JWK
    /// `use` or `key_ops` rule out verification.
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitablePublicKey`] naming the marking.
    pub fn for_verification(&self) -> Result<PublicKey, ProvisioningError> {
        self.for_purpose(KeyPurpose::Verify)
    }
}

fn bad(reason: impl Into<String>) -> ProvisioningError {
    ProvisioningError::UnsuitablePublicKey {
        reason: reason.into(),
    }
}

/// Loads a public key from SPKI/PKCS#1 PEM, an X.509 certificate (PEM or DER, the first certificate of a
/// chain), a JWK, a JWKS of one key, or SPKI DER.
///
/// # Errors
/// [`ProvisioningError::UnsuitablePublicKey`] saying what was found instead (private keys are refused by
/// name).
pub fn load_public_key(input: &[u8]) -> Result<PeerKey, ProvisioningError> {
    let text = std::str::from_utf8(input).ok().map(str::trim_start);
    match text {
        Some(t) if t.starts_with("-----BEGIN") => from_pem(t),
        Some(t) if t.starts_with('{') => from_jwk(t),
        _ if input.first() == Some(&0x30) => from_der(input),
        _ => Err(bad(
            "expected an SPKI PEM public key, an X.509 certificate (PEM or DER), or a JWK; got something else",
        )),
    }
}

fn from_pem(text: &str) -> Result<PeerKey, ProvisioningError> {
    let blocks = pem::parse_many(text).map_err(|_| bad("not valid PEM"))?;
    let Some(first) = blocks.first() else {
        return Err(bad("no PEM block found"));
    };
    if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
        return Err(bad(
            "this file holds a private key; give the public key or the certificate",
        ));
    }
    match first.tag() {
        // A chain: the first certificate is the leaf, the one that carries the key.
        "CERTIFICATE" if blocks.iter().all(|b| b.tag() == "CERTIFICATE") => {
            from_certificate_der(first.contents())
        }
        "CERTIFICATE" => Err(bad(
            "a certificate followed by other PEM blocks; give the certificate alone",
        )),
        _ => Ok(PeerKey::without_jwk_members(
            PublicKey::from_pem(text).map_err(|e| bad(e.to_string()))?,
            PeerKeySource::PublicKey,
        )),
    }
}

fn from_jwk(text: &str) -> Result<PeerKey, ProvisioningError> {
    let set = jose_core::KeySet::from_text(text).map_err(|e| bad(e.to_string()))?;
    match set.keys() {
        [one] => Ok(PeerKey {
            key: one.key.clone(),
            kid: one.kid.clone(),
            source: PeerKeySource::Jwk,
            validity: None,
            key_use: one.use_.clone(),
            key_ops: one.key_ops.clone(),
        }),
        [] => Err(bad("the JWKS holds no key")),
        _ => Err(bad("the JWKS holds several keys; give the one JWK to use")),
    }
}

fn from_der(der: &[u8]) -> Result<PeerKey, ProvisioningError> {
    // A certificate's first element is itself a SEQUENCE (tbsCertificate); an SPKI's is the
    // AlgorithmIdentifier SEQUENCE followed by a BIT STRING. Try the certificate layout first.
    match from_certificate_der(der) {
        Ok(k) => Ok(k),
        Err(cert_err) => match PublicKey::from_spki_der(der) {
            Ok(key) => Ok(PeerKey::without_jwk_members(key, PeerKeySource::PublicKey)),
            Err(_) => Err(cert_err),
        },
    }
}

/// Takes the SubjectPublicKeyInfo out of a DER X.509 certificate (RFC 5280 §4.1).
fn from_certificate_der(der: &[u8]) -> Result<PeerKey, ProvisioningError> {
    let cert_err = |e: DerError| bad(format!("malformed X.509 certificate: {}", e.0));
    let mut outer = Der::new(der);
    let certificate = outer.read(TAG_SEQUENCE).map_err(cert_err)?;
    outer.finish().map_err(cert_err)?;
    let mut certificate = Der::new(certificate);
    let tbs = certificate.read(TAG_SEQUENCE).map_err(cert_err)?;
    certificate.read(TAG_SEQUENCE).map_err(cert_err)?; // signatureAlgorithm
    certificate.read(TAG_BIT_STRING).map_err(cert_err)?; // signatureValue
    certificate.finish().map_err(cert_err)?;

    let mut tbs = Der::new(tbs);
    if tbs.peek() == Some(TAG_VERSION) {
        tbs.read(TAG_VERSION).map_err(cert_err)?;
    }
    tbs.read(TAG_INTEGER).map_err(cert_err)?; // serialNumber
    tbs.read(TAG_SEQUENCE).map_err(cert_err)?; // signature
    tbs.read(TAG_SEQUENCE).map_err(cert_err)?; // issuer
    let validity = tbs.read(TAG_SEQUENCE).map_err(cert_err)?;
    tbs.read(TAG_SEQUENCE).map_err(cert_err)?; // subject
    let spki = tbs.read_raw(TAG_SEQUENCE).map_err(cert_err)?;
    // The rest (unique ids, extensions) is not needed.

    let key = PublicKey::from_spki_der(spki)
        .map_err(|e| bad(format!("certificate's public key: {e}")))?;
    let validity = parse_validity(validity).map_err(cert_err)?;
    let now = i64::try_from(jose_core::jwt::now()).unwrap_or(i64::MAX);
    if now < validity.0 || now > validity.1 {
        tracing::warn!(
            not_before = validity.0,
            not_after = validity.1,
            "the certificate is outside its validity period; its key is used anyway — ask for a current one"
        );
    }
    Ok(PeerKey {
        validity: Some(validity),
        ..PeerKey::without_jwk_members(key, PeerKeySource::Certificate)
    })
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_VERSION: u8 = 0xa0;

#[derive(Debug)]
struct DerError(&'static str);

/// A forward-only reader of definite-length DER TLVs with single-byte tags.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one TLV with tag `tag`; returns (header length, whole TLV).
    fn read_tlv(&mut self, tag: u8) -> Result<(usize, &'a [u8]), DerError> {
        let (&t, after_tag) = self
            .rest
            .split_first()
            .ok_or(DerError("unexpected end of data"))?;
        if t != tag {
            return Err(DerError("unexpected element"));
        }
        let (&first, after_len) = after_tag
            .split_first()
            .ok_or(DerError("unexpected end of data"))?;
        let (len, len_bytes) = match first {
            0..=0x7f => (usize::from(first), 1),
            0x80 => return Err(DerError("indefinite length is not DER")),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                let bytes = after_len
                    .get(..n)
                    .ok_or(DerError("unexpected end of data"))?;
                if bytes[0] == 0 {
                    return Err(DerError("non-minimal length"));
                }
                let len = bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                if len < 0x80 {
                    return Err(DerError("non-minimal length"));
                }
                (len, 1 + n)
            }
            _ => return Err(DerError("length too large")),
        };
        let header = 1 + len_bytes;
        let total = header
            .checked_add(len)
            .ok_or(DerError("length too large"))?;
        let tlv = self
            .rest
            .get(..total)
            .ok_or(DerError("element runs past the end of the data"))?;
        self.rest = &self.rest[total..];
        Ok((header, tlv))
    }

    /// Reads one element with tag `tag` and returns its contents.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (header, tlv) = self.read_tlv(tag)?;
        Ok(&tlv[header..])
    }

    /// Reads one element with tag `tag` and returns it whole, tag and length included.
    fn read_raw(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        self.read_tlv(tag).map(|(_, tlv)| tlv)
    }

    fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError("trailing data"))
        }
    }
}

fn parse_validity(validity: &[u8]) -> Result<(i64, i64), DerError> {
    let mut v = Der::new(validity);
    let not_before = read_time(&mut v)?;
    let not_after = read_time(&mut v)?;
    v.finish()?;
    Ok((not_before, not_after))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`, as RFC 5280 requires.
fn read_time(v: &mut Der<'_>) -> Result<i64, DerError> {
    let (digits, year) = match v.peek() {
        Some(TAG_UTC_TIME) => {
            let t = v.read(TAG_UTC_TIME)?;
            let d = time_digits(t, 12)?;
            let yy = d[0] * 10 + d[1];
            (d[2..].to_vec(), if yy < 50 { 2000 + yy } else { 1900 + yy })
        }
        Some(TAG_GENERALIZED_TIME) => {
            let t = v.read(TAG_GENERALIZED_TIME)?;
            let d = time_digits(t, 14)?;
            (d[4..].to_vec(), d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3])
        }
        _ => {
            return Err(DerError(
                "validity time is neither UTCTime nor GeneralizedTime",
            ));
        }
    };
    let field = |i: usize| digits[i] * 10 + digits[i + 1];
    let (month, day, hour, minute, second) = (field(0), field(2), field(4), field(6), field(8));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DerError("validity time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The `n` digits of a `…Z` time string.
fn time_digits(t: &[u8], n: usize) -> Result<Vec<i64>, DerError> {
    match t.split_last() {
        Some((b'Z', digits)) if digits.len() == n && digits.iter().all(u8::is_ascii_digit) => {
            Ok(digits.iter().map(|b| i64::from(b - b'0')).collect())
        }
        _ => Err(DerError(
            "validity time is not in the YYMMDDHHMMSSZ form RFC 5280 requires",
        )),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29) * 86_400, 1_709_164_800);
    }

    #[test]
    fn der_refuses_truncation_and_long_forms() {
        assert!(Der::new(&[0x30, 0x05, 0x00]).read(TAG_SEQUENCE).is_err());
        assert!(
            Der::new(&[0x30, 0x80, 0x00, 0x00])
                .read(TAG_SEQUENCE)
                .is_err()
        );
        assert!(
            Der::new(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0])
                .read(TAG_SEQUENCE)
                .is_err()
        );
        assert!(
            Der::new(&[0x30, 0x85, 1, 1, 1, 1, 1])
                .read(TAG_SEQUENCE)
                .is_err()
        );
        assert_eq!(
            Der::new(&[0x30, 0x01, 0x07]).read(TAG_SEQUENCE).unwrap(),
            &[0x07]
        );
    }

    #[test]
    fn refuses_private_key_pem() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        let err = load_public_key(pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}

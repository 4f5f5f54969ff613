//! X.509 certificates (RFC 5280 §4.1) as carriers of a public key: the one certificate parser of keybound,
//! used by every `--pubkey` and by provisioning-signer's peer keys. A small, strict DER walk takes out the
//! issuer and subject names, the validity period and the SubjectPublicKeyInfo; nothing else is interpreted.
//!
//! Invariant: **no certificate path is validated** — no signature is checked and no trust anchor consulted.
//! A certificate here only carries a key exchanged out of band (at onboarding). What is checked: the DER
//! structure, the key (RSA, EC P-256/P-384), and, for a PEM chain, that the certificates are in leaf-first
//! order by name (each certificate's issuer is the next one's subject), so that a chain pasted root-first
//! can never hand out the CA's key instead of the leaf's.

use std::fmt;

use super::PublicKey;
use crate::der::{self, DerError, Reader};
use crate::error::KeyError;

const TAG_VERSION: u8 = 0xa0;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
use crate::dn::TAG_SET;

/// An X.509 certificate, reduced to what keybound uses: its public key and validity period (and, privately,
/// its issuer and subject names, to check the order of a chain).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Certificate {
    /// The subject's public key.
    pub public_key: PublicKey,
    /// `notBefore`, in seconds since the epoch.
    pub not_before: i64,
    /// `notAfter`, in seconds since the epoch.
    pub not_after: i64,
    /// The DER contents of the issuer `Name`.
    issuer: Vec<u8>,
    /// The contents of the `serialNumber` INTEGER (two's complement, as encoded).
    serial: Vec<u8>,
    /// The DER contents of the subject `Name`.
    subject: Vec<u8>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("public_key", &self.public_key)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Parses one DER certificate (no trailing data).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for malformed DER (`malformed X.509 certificate: …`) or a public key
    /// keybound does not support.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, KeyError> {
        let bad =
            |e: DerError| KeyError::invalid_key(format!("malformed X.509 certificate: {}", e.0));
        let mut outer = Reader::new(der_bytes);
        let certificate = outer.read(der::TAG_SEQUENCE).map_err(bad)?;
        outer.finish().map_err(bad)?;
        let mut certificate = Reader::new(certificate);
        let tbs = certificate.read(der::TAG_SEQUENCE).map_err(bad)?;
        certificate.read(der::TAG_SEQUENCE).map_err(bad)?; // signatureAlgorithm
        certificate.read(der::TAG_BIT_STRING).map_err(bad)?; // signatureValue
        certificate.finish().map_err(bad)?;

        let mut tbs = Reader::new(tbs);
        if tbs.peek_tag() == Some(TAG_VERSION) {
            tbs.read(TAG_VERSION).map_err(bad)?;
        }
        let serial = tbs.read(der::TAG_INTEGER).map_err(bad)?;
        tbs.read(der::TAG_SEQUENCE).map_err(bad)?; // signature
        let issuer = tbs.read(der::TAG_SEQUENCE).map_err(bad)?;
        let validity = tbs.read(der::TAG_SEQUENCE).map_err(bad)?;
        let subject = tbs.read(der::TAG_SEQUENCE).map_err(bad)?;
        let spki = tbs.read_raw(der::TAG_SEQUENCE).map_err(bad)?;
        // The rest (unique ids, extensions) is not needed.

        let public_key = PublicKey::from_spki_der(spki).map_err(|e| match e {
            KeyError::InvalidKeyMaterial { reason } => {
                KeyError::invalid_key(format!("the certificate's public key: {reason}"))
            }
            other => other,
        })?;
        let (not_before, not_after) = parse_validity(validity).map_err(bad)?;
        Ok(Self {
            public_key,
            not_before,
            not_after,
            issuer: issuer.to_vec(),
            serial: serial.to_vec(),
            subject: subject.to_vec(),
        })
    }

    /// Whether `now` (seconds since the epoch) lies within the validity period.
    #[must_use]
    pub fn is_valid_at(&self, now: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }

    /// The DER encoding of the subject `Name` (as PKCS#11's `CKA_SUBJECT` holds it).
    #[must_use]
    pub fn subject_der(&self) -> Vec<u8> {
        der::tlv(der::TAG_SEQUENCE, &self.subject)
    }

    /// The DER encoding of the issuer `Name`, tag and length included: PKCS#11's `CKA_ISSUER`, and how CMS
    /// `IssuerAndSerialNumber` (RFC 5652 §10.2.4) names the certificate.
    #[must_use]
    pub fn issuer_der(&self) -> Vec<u8> {
        der::tlv(der::TAG_SEQUENCE, &self.issuer)
    }

    /// The DER encoding of the serial number INTEGER, tag and length included (`CKA_SERIAL_NUMBER`).
    #[must_use]
    pub fn serial_der(&self) -> Vec<u8> {
        der::tlv(der::TAG_INTEGER, &self.serial)
    }

    /// The contents of the `serialNumber` INTEGER as encoded in the certificate (two's complement, big
    /// endian; a positive serial with its high bit set keeps its leading zero byte).
    #[must_use]
    pub fn serial_number(&self) -> &[u8] {
        &self.serial
    }

    /// The subject's `serialNumber` attribute (OID 2.5.4.5, RFC 5280 / X.520), when the subject name has
    /// one: a text attribute of the distinguished name, **not** the certificate's serial number
    /// ([`Certificate::serial_number`]). Cybersource names its keys by it (the JWT `kid` of merchant
    /// authentication, the `kid` of a message-level-encryption JWE). `None` when the subject has no such
    /// attribute or its value is not a PrintableString, UTF8String or IA5String.
    #[must_use]
    pub fn subject_serial_number(&self) -> Option<String> {
        const OID_SERIAL_NUMBER: &[u8] = &[0x55, 0x04, 0x05];
        let mut rdns = Reader::new(&self.subject);
        while !rdns.is_empty() {
            let set = rdns.read(TAG_SET).ok()?;
            let mut attributes = Reader::new(set);
            while !attributes.is_empty() {
                let attribute = attributes.read(der::TAG_SEQUENCE).ok()?;
                let mut a = Reader::new(attribute);
                let oid = a.read(der::TAG_OID).ok()?;
                let (tag, value) = a.read_any().ok()?;
                if oid == OID_SERIAL_NUMBER {
                    // PrintableString, UTF8String, IA5String.
                    return matches!(tag, 0x13 | 0x0c | 0x16)
                        .then(|| String::from_utf8(value.to_vec()).ok())
                        .flatten();
                }
            }
        }
        None
    }

    /// Whether `next` issued this certificate, by name: this certificate's issuer is `next`'s subject
    /// (byte for byte; no signature is checked).
    #[must_use]
    pub fn is_issued_by(&self, next: &Self) -> bool {
        self.issuer == next.subject
    }
}

/// The names and serial number of a certificate as people read them, for `keybound keys import` (its JSON
/// output).
impl Certificate {
    /// The serial number in lower-case hex, without a sign byte (as `openssl x509 -serial` prints it,
    /// lower-cased).
    #[must_use]
    pub fn serial_hex(&self) -> String {
        let bytes = match self.serial.as_slice() {
            [0, rest @ ..] if !rest.is_empty() => rest,
            s => s,
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The subject in RFC 4514 form, most specific first (`CN=acme,O=Acme Bank,C=FR`), as
    /// `openssl x509 -noout -subject -nameopt RFC2253` prints it.
    #[must_use]
    pub fn subject_name(&self) -> String {
        crate::dn::distinguished_name(&self.subject_der()).unwrap_or_default()
    }

    /// The issuer in RFC 4514 form.
    #[must_use]
    pub fn issuer_name(&self) -> String {
        crate::dn::distinguished_name(&self.issuer_der()).unwrap_or_default()
    }
}

/// The leaf of a chain given leaf first: refuses a chain whose certificates are not in that order.
pub(super) fn leaf_of_chain(chain: Vec<Certificate>) -> Result<Certificate, KeyError> {
    if let Some(i) = chain.windows(2).position(|w| !w[0].is_issued_by(&w[1])) {
        return Err(KeyError::invalid_key(format!(
            "the certificates are not in chain order: certificate {} was not issued by certificate {} (its \
             issuer is not that certificate's subject); put the certificate that holds the key first, each \
             followed by its issuer, or give that certificate alone",
            i + 1,
            i + 2
        )));
    }
    chain
        .into_iter()
        .next()
        .ok_or_else(|| KeyError::invalid_key("no certificate found"))
}

fn parse_validity(validity: &[u8]) -> Result<(i64, i64), DerError> {
    let mut v = Reader::new(validity);
    let not_before = read_time(&mut v)?;
    let not_after = read_time(&mut v)?;
    v.finish()?;
    Ok((not_before, not_after))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`, as RFC 5280 requires.
fn read_time(v: &mut Reader<'_>) -> Result<i64, DerError> {
    let (digits, year) = match v.peek_tag() {
        Some(TAG_UTC_TIME) => {
            let d = time_digits(v.read(TAG_UTC_TIME)?, 12)?;
            let yy = d[0] * 10 + d[1];
            (d[2..].to_vec(), if yy < 50 { 2000 + yy } else { 1900 + yy })
        }
        Some(TAG_GENERALIZED_TIME) => {
            let d = time_digits(v.read(TAG_GENERALIZED_TIME)?, 14)?;
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
    fn times_in_both_forms() {
        let utc = der::tlv(TAG_UTC_TIME, b"491231235959Z");
        assert_eq!(
            read_time(&mut Reader::new(&utc)).unwrap(),
            2_524_607_999,
            "UTCTime 49 is 2049"
        );
        let generalized = der::tlv(TAG_GENERALIZED_TIME, b"19500101000000Z");
        assert_eq!(
            read_time(&mut Reader::new(&generalized)).unwrap(),
            -631_152_000
        );
        for bad in [&b"4912312359Z"[..], b"491331235959Z", b"491231235959+0100"] {
            let t = der::tlv(TAG_UTC_TIME, bad);
            assert!(read_time(&mut Reader::new(&t)).is_err());
        }
    }

    #[test]
    fn truncated_and_empty_inputs_are_malformed() {
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x00],
            &[0x30, 0x03, 0x30, 0x01, 0x00],
        ] {
            let err = Certificate::from_der(input).unwrap_err();
            assert!(
                err.to_string().contains("malformed X.509 certificate"),
                "{err}"
            );
        }
    }
}

//! Public keys from the other side of onboarding: the Thales public key that enrollment data is encrypted
//! to, and the issuer certificate authorization codes are checked against. Accepted as SPKI PEM
//! (`PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`), a JWK (or a JWKS of one key), or an X.509 certificate in PEM
//! or DER, read by key-provider's [`PublicKeyFile`] (the one certificate parser of keybound: no certificate
//! path is validated, the certificate is only a carrier for the key exchanged at onboarding; a PEM chain must
//! be given leaf first). A certificate outside its validity period is still used, with a warning event.
//!
//! A JWK's `use` and `key_ops` (RFC 7517) are kept: [`PeerKey::for_encryption`] and
//! [`PeerKey::for_verification`] refuse a key marked for the other purpose (a Thales key marked `"sig"` is
//! not encrypted to; an issuer key marked `"enc"` does not verify authorization codes).

use jose_core::KeyPurpose;
use key_provider::{Certificate, PublicKey, PublicKeyFile};

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
    /// The certificate that carried the key (the leaf of a chain), when it came as one: CMS names its
    /// recipient by the certificate's issuer and serial number.
    pub certificate: Option<Certificate>,
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
            certificate: None,
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

/// Loads a public key from SPKI/PKCS#1 PEM, an X.509 certificate (PEM or DER; a PEM chain given leaf first,
/// whose leaf is used), a JWK, a JWKS of one key, or SPKI DER. PEM and DER are read by key-provider's
/// [`PublicKeyFile`], the one certificate parser of keybound.
///
/// # Errors
/// [`ProvisioningError::UnsuitablePublicKey`] saying what was found instead (private keys are refused by
/// name).
pub fn load_public_key(input: &[u8]) -> Result<PeerKey, ProvisioningError> {
    let text = std::str::from_utf8(input).ok().map(str::trim_start);
    match text {
        Some(t) if t.starts_with('{') => from_jwk(t),
        Some(t) if t.starts_with("-----BEGIN") => from_file(input),
        _ if input.first() == Some(&0x30) => from_file(input),
        _ => Err(bad(
            "expected an SPKI PEM public key, an X.509 certificate (PEM or DER), or a JWK; got something else",
        )),
    }
}

fn from_file(input: &[u8]) -> Result<PeerKey, ProvisioningError> {
    let file = PublicKeyFile::parse(input).map_err(|e| match e {
        key_provider::KeyError::InvalidKeyMaterial { reason } => bad(reason),
        other => bad(other.to_string()),
    })?;
    let (source, validity) = match &file.certificate {
        Some(cert) => (
            PeerKeySource::Certificate,
            Some((cert.not_before, cert.not_after)),
        ),
        None => (PeerKeySource::PublicKey, None),
    };
    Ok(PeerKey {
        validity,
        certificate: file.certificate,
        ..PeerKey::without_jwk_members(file.key, source)
    })
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
            certificate: None,
        }),
        [] => Err(bad("the JWKS holds no key")),
        _ => Err(bad("the JWKS holds several keys; give the one JWK to use")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_key_pem() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        let err = load_public_key(pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}

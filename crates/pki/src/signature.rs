//! Signing a to-be-signed structure through a [`KeyBackend`]: the X.509 AlgorithmIdentifier of each
//! [`SignatureScheme`], and the signature in X.509's encoding.
//!
//! | scheme | AlgorithmIdentifier |
//! |---|---|
//! | RSA PKCS#1 v1.5 SHA-256/384/512 | `sha256WithRSAEncryption` … (parameters NULL) |
//! | RSA-PSS SHA-256/384/512 | `id-RSASSA-PSS` with explicit parameters: the hash, MGF1 with the same hash, salt length = hash length (trailerField 1, the DER default, so not written) |
//! | ECDSA P-256 / P-384 | `ecdsa-with-SHA256` / `ecdsa-with-SHA384` (no parameters) |
//!
//! The backend returns signatures in JOSE's form; X.509 wants an ECDSA signature as DER
//! `SEQUENCE { r INTEGER, s INTEGER }` instead of fixed-width `r || s`, so it is converted here. RSA
//! signatures are the same bytes in both.

use key_provider::{EcCurve, KeyBackend, PublicKey, SignatureScheme};

use crate::der_write as der;
use crate::error::PkiError;

const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const SHA384: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 2];
const SHA512: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 3];
const MGF1: &[u64] = &[1, 2, 840, 113_549, 1, 1, 8];
const RSASSA_PSS: &[u64] = &[1, 2, 840, 113_549, 1, 1, 10];

/// The scheme used when none is asked for: RSA PKCS#1 v1.5 with SHA-256 (`sha256WithRSAEncryption`, as RS256
/// signs) for RSA keys, ECDSA with SHA-256 for P-256 and with SHA-384 for P-384.
#[must_use]
pub fn default_scheme(key: &PublicKey) -> SignatureScheme {
    match key {
        PublicKey::Ec {
            curve: EcCurve::P384,
            ..
        } => SignatureScheme::EcdsaP384Sha384,
        PublicKey::Ec { .. } => SignatureScheme::EcdsaP256Sha256,
        _ => SignatureScheme::RsaPkcs1Sha256,
    }
}

/// The DER AlgorithmIdentifier of a signature made with `scheme`.
#[must_use]
pub fn algorithm_identifier(scheme: SignatureScheme) -> Vec<u8> {
    let rsa =
        |last: u64| der::sequence(&[&der::oid(&[1, 2, 840, 113_549, 1, 1, last]), &der::null()]);
    let ecdsa = |last: u64| der::sequence(&[&der::oid(&[1, 2, 840, 10_045, 4, 3, last])]);
    let pss = |hash: &[u64], salt: u64| {
        let hash_alg = der::sequence(&[&der::oid(hash), &der::null()]);
        let mgf = der::sequence(&[&der::oid(MGF1), &hash_alg]);
        let params = der::sequence(&[
            &der::context(0, &hash_alg),
            &der::context(1, &mgf),
            &der::context(2, &der::small_integer(salt)),
        ]);
        der::sequence(&[&der::oid(RSASSA_PSS), &params])
    };
    match scheme {
        SignatureScheme::RsaPkcs1Sha384 => rsa(12),
        SignatureScheme::RsaPkcs1Sha512 => rsa(13),
        SignatureScheme::RsaPssSha256 => pss(SHA256, 32),
        SignatureScheme::RsaPssSha384 => pss(SHA384, 48),
        SignatureScheme::RsaPssSha512 => pss(SHA512, 64),
        SignatureScheme::EcdsaP256Sha256 => ecdsa(2),
        SignatureScheme::EcdsaP384Sha384 => ecdsa(3),
        // RsaPkcs1Sha256, and any scheme added later to the non-exhaustive enum is refused by `check`.
        _ => rsa(11),
    }
}

/// Errors unless keybound-pki knows how to name `scheme` in X.509 and the scheme fits the key.
fn check(scheme: SignatureScheme, key: &PublicKey) -> Result<(), PkiError> {
    if !SignatureScheme::ALL.contains(&scheme) {
        return Err(PkiError::Key(key_provider::KeyError::NotSupported {
            operation: format!("an X.509 signature with {scheme}"),
            backend: "keybound-pki",
            reason: "no X.509 algorithm identifier for it".into(),
        }));
    }
    scheme.check_key(key)?;
    Ok(())
}

/// The backend's signature in X.509's encoding: ECDSA `r || s` becomes DER `SEQUENCE { r, s }`.
fn to_x509_signature(scheme: SignatureScheme, signature: Vec<u8>) -> Vec<u8> {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => {
            let (r, s) = signature.split_at(signature.len() / 2);
            der::sequence(&[&der::unsigned_integer(r), &der::unsigned_integer(s)])
        }
        _ => signature,
    }
}

/// `SEQUENCE { tbs, algorithm, BIT STRING signature }`, the shape of both a PKCS#10 request and a
/// certificate.
fn signed(tbs: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    der::sequence(&[tbs, algorithm, &der::bit_string(signature)])
}

/// Signs the DER `tbs` (built with `algorithm_identifier(scheme)` inside) with `key`; returns the whole
/// signed structure.
pub(crate) fn sign(
    key: &dyn KeyBackend,
    scheme: SignatureScheme,
    tbs: &[u8],
) -> Result<Vec<u8>, PkiError> {
    check(scheme, key.public_key())?;
    let signature = key.sign(scheme, tbs)?;
    Ok(signed(
        tbs,
        &algorithm_identifier(scheme),
        &to_x509_signature(scheme, signature),
    ))
}

/// As [`sign`], from async code ([`KeyBackend::sign_async`]: a PKCS#11 token is called on tokio's blocking
/// pool).
pub(crate) async fn sign_async(
    key: &dyn KeyBackend,
    scheme: SignatureScheme,
    tbs: &[u8],
) -> Result<Vec<u8>, PkiError> {
    check(scheme, key.public_key())?;
    let signature = key.sign_async(scheme, tbs).await?;
    Ok(signed(
        tbs,
        &algorithm_identifier(scheme),
        &to_x509_signature(scheme, signature),
    ))
}

/// Checks the scheme before a structure that names it is built.
pub(crate) fn check_scheme(scheme: SignatureScheme, key: &PublicKey) -> Result<(), PkiError> {
    check(scheme, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der_sequences() {
        let mut rs = vec![0u8; 64];
        rs[0] = 0x80; // r needs a sign byte
        rs[32] = 0x00; // s has a leading zero to drop
        rs[33] = 0x01;
        let der = to_x509_signature(SignatureScheme::EcdsaP256Sha256, rs);
        assert_eq!(&der[..5], &[0x30, 0x44, 0x02, 0x21, 0x00]);
        assert_eq!(&der[37..40], &[0x02, 0x1f, 0x01]);
    }

    #[test]
    fn pss_parameters_are_explicit() {
        // As `openssl req -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sha256` writes them.
        let expected = "3041\
            06092a864886f70d01010a\
            3034\
            a00f300d06096086480165030402010500\
            a11c301a06092a864886f70d010108300d06096086480165030402010500\
            a203020120";
        let hex: String = algorithm_identifier(SignatureScheme::RsaPssSha256)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }
}

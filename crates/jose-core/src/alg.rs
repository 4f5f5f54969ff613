//! JOSE algorithm names and their mapping onto key-provider schemes. Only asymmetric signature algorithms
//! and RSA-OAEP key management with AES-GCM are supported; `none`, HMAC and RSA1_5 are refused by name.

use std::fmt;
use std::str::FromStr;

use key_provider::{DecryptionScheme, EcCurve, PublicKey, SignatureScheme};

use crate::error::{JoseError, sanitize};

/// A JWS signature algorithm (RFC 7518 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

impl JwsAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [Self; 8] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
    ];

    /// The JOSE name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    /// The key-provider scheme that implements it.
    #[must_use]
    pub fn scheme(self) -> SignatureScheme {
        match self {
            Self::RS256 => SignatureScheme::RsaPkcs1Sha256,
            Self::RS384 => SignatureScheme::RsaPkcs1Sha384,
            Self::RS512 => SignatureScheme::RsaPkcs1Sha512,
            Self::PS256 => SignatureScheme::RsaPssSha256,
            Self::PS384 => SignatureScheme::RsaPssSha384,
            Self::PS512 => SignatureScheme::RsaPssSha512,
            Self::ES256 => SignatureScheme::EcdsaP256Sha256,
            Self::ES384 => SignatureScheme::EcdsaP384Sha384,
        }
    }

    /// The algorithm for `jsonwebtoken`.
    #[must_use]
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::RS256 => A::RS256,
            Self::RS384 => A::RS384,
            Self::RS512 => A::RS512,
            Self::PS256 => A::PS256,
            Self::PS384 => A::PS384,
            Self::PS512 => A::PS512,
            Self::ES256 => A::ES256,
            Self::ES384 => A::ES384,
        }
    }

    /// The algorithm for a `jsonwebtoken` one; `None` for those keybound does not use (HMAC, EdDSA).
    #[must_use]
    pub fn from_jsonwebtoken(alg: jsonwebtoken::Algorithm) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.to_jsonwebtoken() == alg)
    }

    /// The aws-lc-rs verification algorithm: RSA keys of 2048 to 8192 bits (as jsonwebtoken's aws-lc
    /// provider), fixed-width `r || s` for ECDSA.
    pub(crate) fn aws_lc_verification(
        self,
    ) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        use aws_lc_rs::signature as sig;
        match self {
            Self::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Self::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        }
    }

    /// Whether the algorithm can be used with `key`.
    #[must_use]
    pub fn fits(self, key: &PublicKey) -> bool {
        self.scheme().fits(key)
    }

    /// The natural default algorithm for a key: RS256 for RSA, ES256/ES384 for EC.
    #[must_use]
    pub fn default_for(key: &PublicKey) -> Self {
        match key {
            PublicKey::Ec {
                curve: EcCurve::P384,
                ..
            } => Self::ES384,
            PublicKey::Ec { .. } => Self::ES256,
            _ => Self::RS256,
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwsAlgorithm {
    type Err = JoseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(a) = Self::ALL.into_iter().find(|a| a.as_str() == s) {
            return Ok(a);
        }
        let upper = s.to_ascii_uppercase();
        if upper == "NONE" {
            return Err(JoseError::ForbiddenAlgorithm {
                alg: sanitize(s),
                reason: "unsigned tokens are never accepted",
            });
        }
        if upper.starts_with("HS") {
            return Err(JoseError::ForbiddenAlgorithm {
                alg: sanitize(s),
                reason: "symmetric (HMAC) algorithms are not accepted; keybound verifies with public keys only",
            });
        }
        Err(JoseError::UnsupportedAlgorithm { alg: sanitize(s) })
    }
}

/// A JWE key-management algorithm (RFC 7518 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyManagementAlgorithm {
    /// RSAES-OAEP with SHA-1 (`RSA-OAEP`).
    RsaOaep,
    /// RSAES-OAEP with SHA-256 (`RSA-OAEP-256`).
    RsaOaep256,
}

impl KeyManagementAlgorithm {
    /// The JOSE name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaOaep => "RSA-OAEP",
            Self::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    /// The key-provider scheme that implements it.
    #[must_use]
    pub fn scheme(self) -> DecryptionScheme {
        match self {
            Self::RsaOaep => DecryptionScheme::RsaOaepSha1,
            Self::RsaOaep256 => DecryptionScheme::RsaOaepSha256,
        }
    }

    pub(crate) fn oaep(self) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
        match self {
            Self::RsaOaep => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
            Self::RsaOaep256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        }
    }
}

impl fmt::Display for KeyManagementAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyManagementAlgorithm {
    type Err = JoseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RSA-OAEP" => Ok(Self::RsaOaep),
            "RSA-OAEP-256" => Ok(Self::RsaOaep256),
            "RSA1_5" => Err(JoseError::ForbiddenAlgorithm {
                alg: s.into(),
                reason: "RSA1_5 (PKCS#1 v1.5 key transport) is vulnerable to padding-oracle attacks",
            }),
            "dir" => Err(JoseError::ForbiddenAlgorithm {
                alg: s.into(),
                reason: "direct symmetric encryption is not supported",
            }),
            _ if s.eq_ignore_ascii_case("none") => Err(JoseError::ForbiddenAlgorithm {
                alg: sanitize(s),
                reason: "`none` is never accepted",
            }),
            _ => Err(JoseError::UnsupportedAlgorithm { alg: sanitize(s) }),
        }
    }
}

/// A JWE content-encryption algorithm (RFC 7518 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentEncryption {
    /// AES-128-GCM.
    A128GCM,
    /// AES-256-GCM.
    A256GCM,
}

impl ContentEncryption {
    /// The JOSE name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A128GCM => "A128GCM",
            Self::A256GCM => "A256GCM",
        }
    }

    /// Content-encryption key length in bytes.
    #[must_use]
    pub fn key_len(self) -> usize {
        match self {
            Self::A128GCM => 16,
            Self::A256GCM => 32,
        }
    }

    pub(crate) fn aead(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            Self::A128GCM => &aws_lc_rs::aead::AES_128_GCM,
            Self::A256GCM => &aws_lc_rs::aead::AES_256_GCM,
        }
    }
}

impl fmt::Display for ContentEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentEncryption {
    type Err = JoseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A128GCM" => Ok(Self::A128GCM),
            "A256GCM" => Ok(Self::A256GCM),
            _ => Err(JoseError::UnsupportedAlgorithm { alg: sanitize(s) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_none_and_hmac_in_any_case() {
        for s in ["none", "None", "NONE", "nOnE", "HS256", "hs512"] {
            assert!(
                matches!(
                    s.parse::<JwsAlgorithm>(),
                    Err(JoseError::ForbiddenAlgorithm { .. })
                ),
                "{s}"
            );
        }
        assert!(matches!(
            "RS1".parse::<JwsAlgorithm>(),
            Err(JoseError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            "RSA1_5".parse::<KeyManagementAlgorithm>(),
            Err(JoseError::ForbiddenAlgorithm { .. })
        ));
        assert_eq!(
            "PS384".parse::<JwsAlgorithm>().unwrap(),
            JwsAlgorithm::PS384
        );
    }
}

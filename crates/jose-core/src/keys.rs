//! Verification and encryption keys on the public side: a single key or a JWKS, loaded from SPKI PEM, a JWK
//! or a JWKS, and selected for a token by `kid` and algorithm.

use key_provider::PublicKey;

use crate::alg::JwsAlgorithm;
use crate::error::{JoseError, sanitize};
use crate::jwk::{Jwk, Jwks};

/// One public key with the JWK metadata that constrains its use.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyingKey {
    /// The key.
    pub key: PublicKey,
    /// Its `kid`, if known.
    pub kid: Option<String>,
    /// Its `alg`, if the JWK pinned one.
    pub alg: Option<String>,
}

impl VerifyingKey {
    /// A key without metadata.
    #[must_use]
    pub fn new(key: PublicKey) -> Self {
        Self {
            key,
            kid: None,
            alg: None,
        }
    }

    /// From a JWK (keeps `kid` and `alg`).
    ///
    /// # Errors
    /// As [`Jwk::to_public_key`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        Ok(Self {
            key: jwk.to_public_key()?,
            kid: jwk.kid.clone(),
            alg: jwk.alg.clone(),
        })
    }
}

/// The keys a token may be verified with (or encrypted to).
#[derive(Debug, Clone, PartialEq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// True when loaded from a JWKS: then a token must say which key by `kid` unless the set has one key.
    from_jwks: bool,
}

impl KeySet {
    /// A set of one key.
    #[must_use]
    pub fn single(key: VerifyingKey) -> Self {
        Self {
            keys: vec![key],
            from_jwks: false,
        }
    }

    /// A set from a JWKS.
    ///
    /// # Errors
    /// As [`VerifyingKey::from_jwk`].
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, JoseError> {
        let keys = jwks
            .keys
            .iter()
            .map(VerifyingKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            from_jwks: true,
        })
    }

    /// Loads SPKI PEM (`-----BEGIN PUBLIC KEY-----`), a JWK, or a JWKS from text.
    ///
    /// ```
    /// use jose_core::KeySet;
    /// let jwk = r#"{"kty":"EC","crv":"P-256","kid":"a",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    /// assert!(KeySet::from_text(jwk).is_ok());
    /// assert!(KeySet::from_text(&format!(r#"{{"keys":[{jwk}]}}"#)).is_ok());
    /// assert!(KeySet::from_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    /// ```
    ///
    /// # Errors
    /// [`JoseError::Key`] / [`JoseError::Malformed`] describing what was found instead.
    pub fn from_text(text: &str) -> Result<Self, JoseError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with("-----BEGIN") {
            return Ok(Self::single(VerifyingKey::new(PublicKey::from_pem(text)?)));
        }
        if !trimmed.starts_with('{') {
            return Err(JoseError::InvalidInput(
                "public key must be SPKI PEM (-----BEGIN PUBLIC KEY-----), a JWK or a JWKS".into(),
            ));
        }
        let map = crate::json::parse_object("JWK", text.as_bytes())?;
        if map.contains_key("keys") {
            Self::from_jwks(&Jwks::from_json(text)?)
        } else {
            Ok(Self::single(VerifyingKey::from_jwk(&Jwk::from_json(
                text,
            )?)?))
        }
    }

    /// The keys.
    #[must_use]
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// Picks the key for a token with header `kid` and algorithm `alg`.
    ///
    /// # Errors
    /// [`JoseError::NoKey`] when no key, or more than one, fits.
    pub fn select(&self, kid: Option<&str>, alg: JwsAlgorithm) -> Result<&VerifyingKey, JoseError> {
        let candidates: Vec<&VerifyingKey> = match kid {
            Some(kid) if self.from_jwks || self.keys.iter().any(|k| k.kid.is_some()) => {
                let found: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if found.is_empty() {
                    return Err(JoseError::NoKey {
                        reason: format!("no key with kid {:?}", sanitize(kid)),
                    });
                }
                found
            }
            _ => self.keys.iter().collect(),
        };
        let fitting: Vec<_> = candidates
            .into_iter()
            .filter(|k| alg.fits(&k.key) && k.alg.as_deref().is_none_or(|a| a == alg.as_str()))
            .collect();
        match fitting.as_slice() {
            [one] => Ok(one),
            [] => Err(JoseError::NoKey {
                reason: format!("no key fits algorithm {alg}"),
            }),
            _ => Err(JoseError::NoKey {
                reason: "several keys fit and the token names none by kid".into(),
            }),
        }
    }
}

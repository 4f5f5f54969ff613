//! Verification and encryption keys on the public side: a single key or a JWKS, loaded from SPKI PEM or DER,
//! an X.509 certificate (PEM or DER, through key-provider's parser), a JWK or a JWKS, and selected for a token
//! by `kid`, algorithm and purpose: a key whose JWK `use` or `key_ops` (RFC 7517 §4.2–4.3) rules out verifying
//! signatures never verifies one, and a key that rules out encryption is never encrypted to. A key from SPKI
//! or a certificate carries no such members and may do both.

use key_provider::{PublicKey, PublicKeyFile};

use crate::alg::JwsAlgorithm;
use crate::error::{JoseError, sanitize};
use crate::jwk::{Jwk, Jwks, KeyPurpose};

/// One public key with the JWK metadata that constrains its use.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyingKey {
    /// The key.
    pub key: PublicKey,
    /// Its `kid`, if known.
    pub kid: Option<String>,
    /// Its `alg`, if the JWK pinned one.
    pub alg: Option<String>,
    /// Its JWK `use`, if any.
    pub use_: Option<String>,
    /// Its JWK `key_ops`, if any.
    pub key_ops: Option<Vec<String>>,
}

impl VerifyingKey {
    /// A key without metadata.
    #[must_use]
    pub fn new(key: PublicKey) -> Self {
        Self {
            key,
            kid: None,
            alg: None,
            use_: None,
            key_ops: None,
        }
    }

    /// From a JWK (keeps `kid`, `alg`, `use` and `key_ops`).
    ///
    /// # Errors
    /// As [`Jwk::check_use`] and [`Jwk::to_public_key`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        jwk.check_use()?;
        Ok(Self {
            key: jwk.to_public_key()?,
            kid: jwk.kid.clone(),
            alg: jwk.alg.clone(),
            use_: jwk.use_.clone(),
            key_ops: jwk.key_ops.clone(),
        })
    }

    /// Whether the key's `use` and `key_ops` allow `purpose` (see [`Jwk::permits`]).
    #[must_use]
    pub fn permits(&self, purpose: KeyPurpose) -> bool {
        purpose.permitted_by(self.use_.as_deref(), self.key_ops.as_deref())
    }
}

fn not_a_public_key() -> JoseError {
    JoseError::InvalidInput(
        "public key must be SPKI PEM (-----BEGIN PUBLIC KEY-----), an X.509 certificate (PEM or DER), SPKI DER, \
         a JWK or a JWKS"
            .into(),
    )
}

/// Why the keys in `refused` may not be used for `purpose`, for an error message.
fn refused_for(purpose: KeyPurpose, refused: &[&VerifyingKey]) -> String {
    let marks = refused
        .first()
        .map(|k| match (&k.use_, &k.key_ops) {
            (Some(u), _) if !purpose.permitted_by(Some(u.as_str()), None) => {
                format!("`use` {:?}", sanitize(u))
            }
            _ => "`key_ops`".to_owned(),
        })
        .unwrap_or_default();
    format!(
        "the key is marked for another purpose ({marks}), not for {} (RFC 7517)",
        purpose.describe()
    )
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

    /// Loads a public key file: SPKI or PKCS#1 PEM, an X.509 certificate (PEM — a chain given leaf first — or
    /// DER), SPKI DER, a JWK, or a JWKS. PEM and DER go through [`PublicKeyFile::parse`] (key-provider's one
    /// public-key and certificate parser), JSON through the strict JWK/JWKS parsers.
    ///
    /// ```
    /// use jose_core::KeySet;
    /// let jwk = r#"{"kty":"EC","crv":"P-256","kid":"a",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    /// let keys = KeySet::from_bytes(jwk.as_bytes()).unwrap();
    /// let der = keys.keys()[0].key.to_spki_der();
    /// assert_eq!(KeySet::from_bytes(&der).unwrap().keys()[0].key, keys.keys()[0].key);
    /// assert!(KeySet::from_bytes(b"\x01\x02").is_err());
    /// ```
    ///
    /// # Errors
    /// [`JoseError::Key`] / [`JoseError::Malformed`] / [`JoseError::InvalidInput`] describing what was found
    /// instead.
    pub fn from_bytes(input: &[u8]) -> Result<Self, JoseError> {
        match std::str::from_utf8(input) {
            Ok(text) if text.trim_start().starts_with('{') => Self::from_text(text),
            _ if input.trim_ascii_start().starts_with(b"-----BEGIN")
                || input.first() == Some(&0x30) =>
            {
                Ok(Self::single(VerifyingKey::new(
                    PublicKeyFile::parse(input)?.key,
                )))
            }
            _ => Err(not_a_public_key()),
        }
    }

    /// Loads SPKI or PKCS#1 PEM, an X.509 certificate in PEM (a chain: its leaf), a JWK, or a JWKS from text
    /// (DER is not text: see [`KeySet::from_bytes`]).
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
            return Ok(Self::single(VerifyingKey::new(
                PublicKeyFile::parse(text.as_bytes())?.key,
            )));
        }
        if !trimmed.starts_with('{') {
            return Err(not_a_public_key());
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

    /// Picks the key for a token with header `kid` and algorithm `alg`: among the keys that may verify
    /// signatures (JWK `use` absent or `sig`, `key_ops` absent or with `verify`), the one with that `kid`
    /// (when the set has kids) whose type, and pinned `alg` if any, fit the algorithm.
    ///
    /// ```
    /// use jose_core::{JwsAlgorithm, KeySet};
    /// let ec = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    /// let signing = KeySet::from_text(&format!(r#"{{"keys":[{{{ec},"kid":"a","use":"sig"}}]}}"#)).unwrap();
    /// assert!(signing.select(Some("a"), JwsAlgorithm::ES256).is_ok());
    /// let encryption = KeySet::from_text(&format!(r#"{{"keys":[{{{ec},"kid":"a","use":"enc"}}]}}"#)).unwrap();
    /// let err = encryption.select(Some("a"), JwsAlgorithm::ES256).unwrap_err();
    /// assert!(err.to_string().contains("not for verifying signatures"), "{err}");
    /// ```
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
        let candidates = Self::for_purpose(candidates, KeyPurpose::Verify)?;
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

    /// Picks the RSA key to encrypt a JWE to: among the keys that may be encrypted to (JWK `use` absent or
    /// `enc`, `key_ops` absent or with `encrypt` or `wrapKey`), the one with `kid` when given and the keys
    /// carry kids. A `kid` given for keys without kids (SPKI PEM, a JWK without `kid`) selects nothing: it is
    /// only the value the caller will put in the JWE header.
    ///
    /// ```
    /// use jose_core::KeySet;
    /// # let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    /// let keys = KeySet::from_text(&format!(r#"{{"keys":[
    ///     {{"kty":"RSA","kid":"s","use":"sig","e":"AQAB","n":"{n}"}},
    ///     {{"kty":"RSA","kid":"e","use":"enc","e":"AQAB","n":"{n}"}}]}}"#)).unwrap();
    /// assert_eq!(keys.select_for_encryption(None).unwrap().kid.as_deref(), Some("e"));
    /// assert!(keys.select_for_encryption(Some("s")).is_err());
    /// ```
    ///
    /// # Errors
    /// [`JoseError::NoKey`] when no key, or more than one, fits.
    pub fn select_for_encryption(&self, kid: Option<&str>) -> Result<&VerifyingKey, JoseError> {
        let rsa: Vec<&VerifyingKey> = self
            .keys
            .iter()
            .filter(|k| matches!(k.key, PublicKey::Rsa { .. }))
            .collect();
        if rsa.is_empty() {
            return Err(JoseError::NoKey {
                reason: "no RSA public key (JWE key management here is RSA-OAEP)".into(),
            });
        }
        let candidates = match kid {
            Some(kid) if rsa.iter().any(|k| k.kid.is_some()) => {
                let found: Vec<_> = rsa
                    .into_iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if found.is_empty() {
                    return Err(JoseError::NoKey {
                        reason: format!("no RSA key with kid {:?}", sanitize(kid)),
                    });
                }
                found
            }
            _ => rsa,
        };
        match Self::for_purpose(candidates, KeyPurpose::Encrypt)?.as_slice() {
            [one] => Ok(one),
            _ => Err(JoseError::NoKey {
                reason: "several RSA keys may be encrypted to; choose one by kid".into(),
            }),
        }
    }

    /// The candidates that may be used for `purpose`; an error naming the marking when there were
    /// candidates but none may.
    fn for_purpose(
        candidates: Vec<&VerifyingKey>,
        purpose: KeyPurpose,
    ) -> Result<Vec<&VerifyingKey>, JoseError> {
        let (allowed, refused): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|k| k.permits(purpose));
        if allowed.is_empty() && !refused.is_empty() {
            return Err(JoseError::NoKey {
                reason: refused_for(purpose, &refused),
            });
        }
        Ok(allowed)
    }
}

//! JWK and JWKS (RFC 7517) for RSA and EC public keys, and RFC 7638 thumbprints.
//!
//! Only public keys cross this module: a JWK carrying private members (`d`, `p`, `q`…) is refused on import,
//! because keybound takes private keys only through a key reference.
//!
//! `use` and `key_ops` (RFC 7517 §4.2–4.3) say what a key is for: [`Jwk::permits`] answers whether a key may
//! verify signatures or be encrypted to, and [`crate::KeySet`] selects only keys that may. A JWK whose `use`
//! and `key_ops` contradict each other, or whose `key_ops` repeats an operation, is refused when parsed.

use key_provider::{EcCurve, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::b64;
use crate::error::JoseError;

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The `key_ops` values of signature keys (RFC 7517 §4.3).
const SIGNATURE_OPS: [&str; 2] = ["sign", "verify"];
/// The `key_ops` values of encryption keys (RFC 7517 §4.3).
const ENCRYPTION_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "deriveKey",
    "deriveBits",
];

/// What a public key is about to be used for, checked against its JWK `use` and `key_ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Verifying a signature (JWS, JWT).
    Verify,
    /// Encrypting to the key (JWE key management).
    Encrypt,
}

impl KeyPurpose {
    /// Whether a key with these `use` and `key_ops` members may be used for this purpose.
    #[must_use]
    pub fn permitted_by(self, use_: Option<&str>, key_ops: Option<&[String]>) -> bool {
        let (wanted_use, wanted_ops): (&str, &[&str]) = match self {
            Self::Verify => ("sig", &["verify"]),
            Self::Encrypt => ("enc", &["encrypt", "wrapKey"]),
        };
        use_.is_none_or(|u| u == wanted_use)
            && key_ops.is_none_or(|ops| ops.iter().any(|op| wanted_ops.contains(&op.as_str())))
    }

    /// `verifying signatures` / `encryption`, for messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Verify => "verifying signatures",
            Self::Encrypt => "encryption",
        }
    }
}

/// A public JWK. Unknown members are kept in `extra` and written back out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use (`sig`, `enc`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations (`verify`, `encrypt`, `wrapKey`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Intended algorithm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Other members.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Jwk {
    /// The JWK of `key`, with no `kid`, `use` or `alg`.
    #[must_use]
    pub fn from_public_key(key: &PublicKey) -> Self {
        let mut jwk = Self {
            kty: String::new(),
            kid: None,
            use_: None,
            key_ops: None,
            alg: None,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
            extra: Map::new(),
        };
        match key {
            PublicKey::Rsa { n, e } => {
                jwk.kty = "RSA".into();
                jwk.n = Some(b64::encode(n));
                jwk.e = Some(b64::encode(e));
            }
            PublicKey::Ec { curve, x, y } => {
                jwk.kty = "EC".into();
                jwk.crv = Some(curve.name().into());
                jwk.x = Some(b64::encode(x));
                jwk.y = Some(b64::encode(y));
            }
            _ => {}
        }
        jwk
    }

    /// Sets `kid` to the RFC 7638 thumbprint and returns self.
    ///
    /// # Errors
    /// As [`Jwk::thumbprint`].
    pub fn with_thumbprint_kid(mut self) -> Result<Self, JoseError> {
        self.kid = Some(self.thumbprint()?);
        Ok(self)
    }

    /// Parses a JWK from JSON text, refusing private members.
    ///
    /// ```
    /// use jose_core::Jwk;
    /// let jwk = Jwk::from_json(r#"{"kty":"EC","crv":"P-256","kid":"k1",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#)
    ///     .unwrap();
    /// assert_eq!(jwk.kid.as_deref(), Some("k1"));
    /// // A private member is refused, whatever else is right:
    /// assert!(Jwk::from_json(r#"{"kty":"EC","crv":"P-256","d":"AAAA",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#)
    ///     .is_err());
    /// ```
    ///
    /// # Errors
    /// [`JoseError::Malformed`] or [`JoseError::Key`].
    pub fn from_json(text: &str) -> Result<Self, JoseError> {
        let map = crate::json::parse_object("JWK", text.as_bytes())?;
        Self::from_map(map)
    }

    fn from_map(map: Map<String, Value>) -> Result<Self, JoseError> {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
            return Err(JoseError::InvalidInput(format!(
                "this JWK contains the private member `{m}`; give a public key (keybound takes private keys only through a key reference)"
            )));
        }
        let jwk: Self = serde_json::from_value(Value::Object(map))
            .map_err(|_| JoseError::malformed("JWK", "members have the wrong types"))?;
        // Validate now so a bad key fails at load time.
        jwk.check_use()?;
        jwk.to_public_key()?;
        Ok(jwk)
    }

    /// Checks that `key_ops` names no operation twice and that `use` and `key_ops`, when both are present,
    /// agree (RFC 7517 §4.3: `"use":"sig"` with `key_ops` for encryption, or the reverse, is refused).
    ///
    /// ```
    /// use jose_core::Jwk;
    /// let ec = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    /// assert!(Jwk::from_json(&format!(r#"{{{ec},"use":"sig","key_ops":["verify"]}}"#)).is_ok());
    /// let err = Jwk::from_json(&format!(r#"{{{ec},"use":"sig","key_ops":["encrypt"]}}"#)).unwrap_err();
    /// assert!(err.to_string().contains("contradict"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`JoseError::Malformed`] saying which members disagree.
    pub fn check_use(&self) -> Result<(), JoseError> {
        let Some(ops) = &self.key_ops else {
            return Ok(());
        };
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].contains(op) {
                return Err(JoseError::malformed(
                    "JWK",
                    format!(
                        "`key_ops` names {:?} twice (RFC 7517 §4.3)",
                        crate::error::sanitize(op)
                    ),
                ));
            }
        }
        let (other_family, what): (&[&str], &str) = match self.use_.as_deref() {
            Some("sig") => (&ENCRYPTION_OPS, "encryption"),
            Some("enc") => (&SIGNATURE_OPS, "signatures"),
            _ => return Ok(()),
        };
        if let Some(op) = ops.iter().find(|op| other_family.contains(&op.as_str())) {
            return Err(JoseError::malformed(
                "JWK",
                format!(
                    "`use` {:?} and `key_ops` contradict each other: {:?} is an operation for {what} (RFC 7517 §4.3)",
                    self.use_.as_deref().unwrap_or_default(),
                    crate::error::sanitize(op),
                ),
            ));
        }
        Ok(())
    }

    /// Whether this key may be used for `purpose` according to its `use` and `key_ops` (RFC 7517 §4.2–4.3);
    /// a key with neither may be used for anything.
    ///
    /// - [`KeyPurpose::Verify`]: `use` absent or `sig`, and `key_ops` absent or containing `verify`;
    /// - [`KeyPurpose::Encrypt`]: `use` absent or `enc`, and `key_ops` absent or containing `encrypt` or
    ///   `wrapKey` (RSA-OAEP wraps the content-encryption key).
    ///
    /// ```
    /// use jose_core::jwk::{Jwk, KeyPurpose};
    /// let jwk = Jwk::from_json(r#"{"kty":"EC","crv":"P-256","use":"enc",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#)
    ///     .unwrap();
    /// assert!(jwk.permits(KeyPurpose::Encrypt));
    /// assert!(!jwk.permits(KeyPurpose::Verify));
    /// ```
    #[must_use]
    pub fn permits(&self, purpose: KeyPurpose) -> bool {
        purpose.permitted_by(self.use_.as_deref(), self.key_ops.as_deref())
    }

    /// The public key this JWK describes.
    ///
    /// # Errors
    /// [`JoseError::Malformed`] for missing members, [`JoseError::Key`] for invalid key values.
    pub fn to_public_key(&self) -> Result<PublicKey, JoseError> {
        let member = |v: &Option<String>, name: &'static str| -> Result<Vec<u8>, JoseError> {
            let s = v
                .as_deref()
                .ok_or_else(|| JoseError::malformed("JWK", format!("missing `{name}`")))?;
            b64::decode("JWK", s)
        };
        match self.kty.as_str() {
            "RSA" => {
                let n = member(&self.n, "n")?;
                let e = member(&self.e, "e")?;
                if n.first() == Some(&0) || e.first() == Some(&0) {
                    return Err(JoseError::malformed(
                        "JWK",
                        "RSA values must not have leading zero bytes",
                    ));
                }
                Ok(PublicKey::rsa(&n, &e)?)
            }
            "EC" => {
                let crv = self
                    .crv
                    .as_deref()
                    .ok_or_else(|| JoseError::malformed("JWK", "missing `crv`"))?;
                let curve = EcCurve::from_name(crv)?;
                let x = member(&self.x, "x")?;
                let y = member(&self.y, "y")?;
                if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                    return Err(JoseError::malformed(
                        "JWK",
                        "EC coordinates must be the curve's full length",
                    ));
                }
                Ok(PublicKey::ec(curve, &x, &y)?)
            }
            other => Err(JoseError::malformed(
                "JWK",
                format!(
                    "unsupported kty {:?} (RSA and EC are supported)",
                    crate::error::sanitize(other)
                ),
            )),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    ///
    /// # Errors
    /// [`JoseError::Malformed`] when required members are missing.
    pub fn thumbprint(&self) -> Result<String, JoseError> {
        // Lexicographic member order, no whitespace (RFC 7638 §3.2); serde_json escapes as JSON requires.
        let canonical = match self.kty.as_str() {
            "RSA" => serde_json::json!({"e": self.e, "kty": "RSA", "n": self.n}),
            "EC" => serde_json::json!({"crv": self.crv, "kty": "EC", "x": self.x, "y": self.y}),
            _ => {
                return Err(JoseError::malformed(
                    "JWK",
                    "thumbprints need kty RSA or EC",
                ));
            }
        };
        if canonical
            .as_object()
            .is_some_and(|o| o.values().any(Value::is_null))
        {
            return Err(JoseError::malformed(
                "JWK",
                "missing required members for a thumbprint",
            ));
        }
        let mut members: Vec<(&String, &Value)> = canonical
            .as_object()
            .map(|o| o.iter().collect())
            .unwrap_or_default();
        members.sort_by(|a, b| a.0.cmp(b.0));
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::String((*k).clone()), v))
            .collect();
        let json = format!("{{{}}}", body.join(","));
        Ok(b64::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            json.as_bytes(),
        )))
    }
}

/// The RFC 7638 thumbprint of a public key.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use jose_core::Jwk;
/// // RFC 7638 section 3.1's example key:
/// let jwk = Jwk::from_json(r#"{"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#)?;
/// let kid = jose_core::thumbprint(&jwk.to_public_key()?);
/// assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
/// assert_eq!(jwk.thumbprint()?, kid);
/// // The public JWK of a key, with the thumbprint as its kid:
/// let jwk = Jwk::from_public_key(&jwk.to_public_key()?).with_thumbprint_kid()?;
/// assert_eq!(jwk.kid.as_deref(), Some(kid.as_str()));
/// # Ok(()) }
/// ```
#[must_use]
pub fn thumbprint(key: &PublicKey) -> String {
    // A JWK built from a valid PublicKey always has every member a thumbprint needs.
    Jwk::from_public_key(key).thumbprint().unwrap_or_default()
}

/// A JWK Set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS from JSON text, refusing private members and invalid keys.
    ///
    /// ```
    /// use jose_core::Jwks;
    /// let jwks = Jwks::from_json(r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a",
    ///     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#)
    ///     .unwrap();
    /// assert_eq!(jwks.keys.len(), 1);
    /// assert!(Jwks::from_json(r#"{"keys":"not a list"}"#).is_err());
    /// ```
    ///
    /// # Errors
    /// [`JoseError::Malformed`] or [`JoseError::Key`].
    pub fn from_json(text: &str) -> Result<Self, JoseError> {
        let mut map = crate::json::parse_object("JWKS", text.as_bytes())?;
        let Some(Value::Array(keys)) = map.remove("keys") else {
            return Err(JoseError::malformed("JWKS", "missing `keys` array"));
        };
        let keys = keys
            .into_iter()
            .map(|k| match k {
                Value::Object(m) => Jwk::from_map(m),
                _ => Err(JoseError::malformed("JWKS", "`keys` must hold JWK objects")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_jwk() {
        let e =
            Jwk::from_json(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#).unwrap_err();
        assert!(e.to_string().contains("private member `d`"));
    }
}

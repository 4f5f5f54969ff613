//! Merchant request authentication for the Cybersource REST API, needed to request capture contexts.
//!
//! - [`MerchantAuth::Jwt`] (JWT v2): `Authorization: Bearer <jwt>`, the JWT signed RS256 through a
//!   [`KeyBackend`] — so the merchant key can stay in an HSM. Header `{kid, alg: RS256, typ: JWT}`; claims
//!   `iat`, `exp` = `iat` + 120, `iss` (merchant id), `jti` (UUID), `v-c-jwt-version` `"2"`, `request-host`,
//!   `request-resource-path`, `request-method` (lowercase), `v-c-merchant-id`, and for requests with a body
//!   `digest` = base64(SHA-256(body)) with `digest-algorithm` `SHA-256`.
//! - [`MerchantAuth::HttpSignature`]: headers `v-c-merchant-id`, `date`, `digest: SHA-256=<b64>` and
//!   `signature: keyid="…", algorithm="HmacSHA256", headers="host date request-target digest v-c-merchant-id",
//!   signature="<b64>"`, an HMAC-SHA256 with the base64-decoded shared secret over
//!   `host: …\ndate: …\nrequest-target: post /path\ndigest: …\nv-c-merchant-id: …`.
//!
//! Headers are made per attempt (fresh `jti` and `date` on every retry).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jose_core::{JwsAlgorithm, JwsHeader};
use key_provider::{KeyBackend, PublicKey};
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::FlexError;

/// How merchant requests are authenticated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MerchantAuth {
    /// JWT v2 signed with the merchant's RSA key.
    Jwt(JwtAuth),
    /// HTTP Signature with an HMAC-SHA256 shared secret.
    HttpSignature(HttpSignatureAuth),
}

/// JWT v2 merchant authentication.
#[derive(Clone)]
pub struct JwtAuth {
    merchant_id: String,
    key_id: String,
    key: Arc<dyn KeyBackend>,
}

impl JwtAuth {
    /// `key_id` is the serial number of the merchant certificate (or the key id Cybersource assigned).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use flex_client::{JwtAuth, MerchantAuth};
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("merchant.pem");
    /// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
    /// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
    /// // The key may live in an HSM: `pkcs11:token=…;object=merchant?module-path=…&pin-source=file:…`.
    /// let auth = MerchantAuth::Jwt(JwtAuth::new("my_merchant", "0a1b2c3d4e5f", key)?);
    /// assert_eq!(auth.merchant_id(), "my_merchant");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`FlexError::MerchantAuth`] when the key is not RSA of at least 2048 bits or an id is empty.
    pub fn new(
        merchant_id: impl Into<String>,
        key_id: impl Into<String>,
        key: Arc<dyn KeyBackend>,
    ) -> Result<Self, FlexError> {
        let (merchant_id, key_id) = (merchant_id.into(), key_id.into());
        check_ids(&merchant_id, &key_id)?;
        match key.public_key() {
            k @ PublicKey::Rsa { .. } if k.bits() >= 2048 => {}
            other => {
                return Err(FlexError::MerchantAuth(format!(
                    "JWT authentication needs an RSA key of at least 2048 bits (RS256); {} is {}",
                    key.key_label(),
                    other.describe()
                )));
            }
        }
        Ok(Self {
            merchant_id,
            key_id,
            key,
        })
    }

    /// The merchant id.
    #[must_use]
    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("merchant_id", &self.merchant_id)
            .field("key_id", &self.key_id)
            .field("key", &self.key.key_label())
            .finish()
    }
}

/// HTTP Signature merchant authentication (HMAC-SHA256).
#[derive(Clone)]
pub struct HttpSignatureAuth {
    merchant_id: String,
    key_id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl HttpSignatureAuth {
    /// `shared_secret_b64` is the shared secret as Cybersource shows it (base64).
    ///
    /// # Errors
    /// [`FlexError::MerchantAuth`] when the secret is not base64 or too short, or an id is empty.
    pub fn new(
        merchant_id: impl Into<String>,
        key_id: impl Into<String>,
        shared_secret_b64: &str,
    ) -> Result<Self, FlexError> {
        let (merchant_id, key_id) = (merchant_id.into(), key_id.into());
        check_ids(&merchant_id, &key_id)?;
        let secret = Zeroizing::new(STANDARD.decode(shared_secret_b64.trim()).map_err(|_| {
            FlexError::MerchantAuth(
                "the shared secret is not base64; paste it exactly as the Business Center shows it"
                    .into(),
            )
        })?);
        if secret.len() < 16 {
            return Err(FlexError::MerchantAuth(
                "the shared secret is shorter than 16 bytes; check that it is complete".into(),
            ));
        }
        Ok(Self {
            merchant_id,
            key_id,
            secret,
        })
    }

    /// The merchant id.
    #[must_use]
    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }
}

impl fmt::Debug for HttpSignatureAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSignatureAuth")
            .field("merchant_id", &self.merchant_id)
            .field("key_id", &self.key_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn check_ids(merchant_id: &str, key_id: &str) -> Result<(), FlexError> {
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
    };
    if !ok(merchant_id) || !ok(key_id) {
        return Err(FlexError::MerchantAuth(
            "merchant id and key id must be non-empty printable ASCII without quotes".into(),
        ));
    }
    Ok(())
}

/// base64(SHA-256(body)).
#[must_use]
pub fn body_digest(body: &[u8]) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, body))
}

impl MerchantAuth {
    /// The merchant id.
    #[must_use]
    pub fn merchant_id(&self) -> &str {
        match self {
            Self::Jwt(a) => &a.merchant_id,
            Self::HttpSignature(a) => &a.merchant_id,
        }
    }

    /// The authentication headers for one request: `method` (e.g. `POST`), `host` (`host[:port]`), `path`
    /// (without query), and the exact body bytes.
    ///
    /// # Errors
    /// [`FlexError::Key`] / [`FlexError::Jose`] when the key backend fails to sign.
    pub async fn headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, FlexError> {
        match self {
            Self::Jwt(a) => {
                let now = jose_core::jwt::now();
                let mut claims = json!({
                    "iat": now,
                    "exp": now + 120,
                    "iss": a.merchant_id,
                    "jti": uuid::Uuid::new_v4().to_string(),
                    "v-c-jwt-version": "2",
                    "request-host": host,
                    "request-resource-path": path,
                    "request-method": method.to_ascii_lowercase(),
                    "v-c-merchant-id": a.merchant_id,
                });
                if !body.is_empty()
                    || matches!(
                        method.to_ascii_uppercase().as_str(),
                        "POST" | "PUT" | "PATCH"
                    )
                {
                    claims["digest"] = body_digest(body).into();
                    claims["digest-algorithm"] = "SHA-256".into();
                }
                let header = JwsHeader::new(JwsAlgorithm::RS256)
                    .kid(a.key_id.clone())
                    .typ("JWT");
                let jwt = jose_core::jwt::sign_async(a.key.as_ref(), &header, &claims).await?;
                Ok(vec![("authorization", format!("Bearer {jwt}"))])
            }
            Self::HttpSignature(a) => {
                let date = httpdate::fmt_http_date(SystemTime::now());
                let with_digest = !body.is_empty() || method.eq_ignore_ascii_case("POST");
                let digest = format!("SHA-256={}", body_digest(body));
                let target = format!("{} {path}", method.to_ascii_lowercase());
                let (names, signing_string) = if with_digest {
                    (
                        "host date request-target digest v-c-merchant-id",
                        format!(
                            "host: {host}\ndate: {date}\nrequest-target: {target}\ndigest: {digest}\nv-c-merchant-id: {}",
                            a.merchant_id
                        ),
                    )
                } else {
                    (
                        "host date request-target v-c-merchant-id",
                        format!(
                            "host: {host}\ndate: {date}\nrequest-target: {target}\nv-c-merchant-id: {}",
                            a.merchant_id
                        ),
                    )
                };
                let key = hmac::Key::new(hmac::HMAC_SHA256, &a.secret);
                let tag = hmac::sign(&key, signing_string.as_bytes());
                let signature = format!(
                    "keyid=\"{}\", algorithm=\"HmacSHA256\", headers=\"{names}\", signature=\"{}\"",
                    a.key_id,
                    STANDARD.encode(tag.as_ref())
                );
                let mut headers = vec![("v-c-merchant-id", a.merchant_id.clone()), ("date", date)];
                if with_digest {
                    headers.push(("digest", digest));
                }
                headers.push(("signature", signature));
                Ok(headers)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_body() {
        assert_eq!(
            body_digest(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[tokio::test]
    async fn http_signature_headers_verify_with_the_secret() {
        let secret = STANDARD.encode([7u8; 32]);
        let auth =
            MerchantAuth::HttpSignature(HttpSignatureAuth::new("m1", "k1", &secret).unwrap());
        let h = auth
            .headers(
                "POST",
                "apitest.cybersource.com",
                "/flex/v2/sessions",
                b"{}",
            )
            .await
            .unwrap();
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("digest"), format!("SHA-256={}", body_digest(b"{}")));
        let sig = get("signature");
        assert!(sig.starts_with("keyid=\"k1\", algorithm=\"HmacSHA256\", headers=\"host date request-target digest v-c-merchant-id\""));
        let b64 = sig
            .rsplit("signature=\"")
            .next()
            .unwrap()
            .trim_end_matches('"');
        let signing = format!(
            "host: apitest.cybersource.com\ndate: {}\nrequest-target: post /flex/v2/sessions\ndigest: {}\nv-c-merchant-id: m1",
            get("date"),
            get("digest")
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        hmac::verify(&key, signing.as_bytes(), &STANDARD.decode(b64).unwrap()).unwrap();
        assert!(!format!("{auth:?}").contains(&secret));
        assert!(HttpSignatureAuth::new("m1", "k1", "not base64!").is_err());
        assert!(HttpSignatureAuth::new("m1", "k\"1", &secret).is_err());
    }
}

//! Merchant request authentication for the Cybersource REST API, needed to request capture contexts.
//!
//! - [`MerchantAuth::Jwt`] (JWT v2): `Authorization: Bearer <jwt>`, the JWT signed RS256 through a
//!   [`KeyBackend`] — so the merchant key can stay in an HSM. Header `{kid, alg: RS256, typ: JWT}`; claims
//!   `iat`, `exp` = `iat` + 120, `iss` (merchant id), `jti` (UUID), `v-c-jwt-version` `"2"`, `request-host`,
//!   `request-resource-path` (the path, never a query string), `request-method` (lowercase),
//!   `v-c-merchant-id`, and only for requests with a body `digest` = base64(SHA-256(body)) with
//!   `digestAlgorithm` `SHA-256` (the names of Cybersource's "Construct messages using JSON Web Tokens"
//!   page; see [`JWT_CLAIMS`]), and `v-c-response-mle-kid` when response message-level encryption is on
//!   ([`crate::mle`]; the `digest` is then over the encrypted body, the body as sent).
//! - [`MerchantAuth::HttpSignature`]: headers `v-c-merchant-id`, `date`, `digest: SHA-256=<b64>` and
//!   `signature: keyid="…", algorithm="HmacSHA256", headers="host date request-target digest v-c-merchant-id",
//!   signature="<b64>"`, an HMAC-SHA256 with the base64-decoded shared secret over
//!   `host: …\ndate: …\nrequest-target: post /path\ndigest: …\nv-c-merchant-id: …`. POST, PUT and PATCH
//!   (and any request with a body) carry the digest; GET and DELETE sign `host date request-target
//!   v-c-merchant-id`.
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

/// The claims flex-client puts in a JWT v2 merchant-authentication token: always the first nine,
/// `digest` + `digestAlgorithm` only when the request has a body, and `v-c-response-mle-kid` only with
/// response message-level encryption ([`crate::mle`]).
pub const JWT_CLAIMS: [&str; 12] = [
    "iat",
    "exp",
    "iss",
    "jti",
    "request-host",
    "request-method",
    "request-resource-path",
    "v-c-jwt-version",
    "v-c-merchant-id",
    "digest",
    "digestAlgorithm",
    "v-c-response-mle-kid",
];

/// Lifetime of a JWT v2 merchant-authentication token: Cybersource refuses `exp` later than `iat` + 120.
pub const JWT_LIFETIME_SECS: u64 = 120;

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
    /// [`FlexError::MerchantAuth`] when the key is not RSA or an id is empty; [`FlexError::Key`] for an RSA
    /// key under 2048 bits.
    pub fn new(
        merchant_id: impl Into<String>,
        key_id: impl Into<String>,
        key: Arc<dyn KeyBackend>,
    ) -> Result<Self, FlexError> {
        let (merchant_id, key_id) = (merchant_id.into(), key_id.into());
        check_ids(&merchant_id, &key_id)?;
        match key.public_key() {
            // keybound's one size rule, with the message every backend and command gives.
            k @ PublicKey::Rsa { .. } => {
                key_provider::check_rsa_size(k, key_provider::KeyOperation::Sign)?;
            }
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
    /// (with its query string, if any: the JWT's `request-resource-path` leaves the query out, the HTTP
    /// Signature's `request-target` keeps it), and the exact body bytes.
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
        self.headers_at(method, host, path, body, SystemTime::now())
            .await
    }

    /// [`MerchantAuth::headers`] as made at the time `at` (`iat` of the JWT, `date` of the HTTP Signature):
    /// for known-answer tests and for reproducing a request that was refused.
    ///
    /// # Errors
    /// As [`MerchantAuth::headers`].
    pub async fn headers_at(
        &self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
        at: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, FlexError> {
        self.headers_with_response_mle(method, host, path, body, at, None)
            .await
    }

    /// [`MerchantAuth::headers_at`] for a request with response message-level encryption on: the JWT also
    /// carries `v-c-response-mle-kid` = `response_mle_kid` (see [`crate::mle`]). `body` is the body as sent
    /// (with request MLE, the `{"encryptedRequest":…}` body), since the `digest` covers what goes on the
    /// wire.
    ///
    /// # Errors
    /// As [`MerchantAuth::headers`]; [`FlexError::MerchantAuth`] when response MLE is asked of HTTP
    /// Signature authentication (Cybersource supports MLE with JWT authentication only).
    pub async fn headers_with_response_mle(
        &self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
        at: SystemTime,
        response_mle_kid: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, FlexError> {
        if response_mle_kid.is_some() && matches!(self, Self::HttpSignature(_)) {
            return Err(FlexError::MerchantAuth(
                "message-level encryption needs JWT authentication (--key), not HTTP Signature"
                    .into(),
            ));
        }
        match self {
            Self::Jwt(a) => {
                let resource_path = path.split_once('?').map_or(path, |(p, _)| p);
                let now = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut claims = json!({
                    "iat": now,
                    "exp": now.saturating_add(JWT_LIFETIME_SECS),
                    "iss": a.merchant_id,
                    "jti": uuid::Uuid::new_v4().to_string(),
                    "v-c-jwt-version": "2",
                    "request-host": host,
                    "request-resource-path": resource_path,
                    "request-method": method.to_ascii_lowercase(),
                    "v-c-merchant-id": a.merchant_id,
                });
                if !body.is_empty() {
                    claims["digest"] = body_digest(body).into();
                    claims["digestAlgorithm"] = "SHA-256".into();
                }
                if let Some(kid) = response_mle_kid {
                    claims[crate::mle::RESPONSE_MLE_KID_CLAIM] = kid.into();
                }
                let header = JwsHeader::new(JwsAlgorithm::RS256)
                    .kid(a.key_id.clone())
                    .typ("JWT");
                let jwt = jose_core::jwt::sign_async(a.key.as_ref(), &header, &claims).await?;
                Ok(vec![("authorization", format!("Bearer {jwt}"))])
            }
            Self::HttpSignature(a) => {
                let date = httpdate::fmt_http_date(at);
                let with_digest = !body.is_empty()
                    || ["POST", "PUT", "PATCH"]
                        .iter()
                        .any(|m| method.eq_ignore_ascii_case(m));
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

    /// The claim names are written out here from Cybersource's page, not taken from [`JWT_CLAIMS`].
    #[tokio::test]
    async fn jwt_claims_are_the_documented_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merchant.pem");
        key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048)).unwrap();
        let key = key_provider::open(
            &format!("file:{}", path.display()).parse().unwrap(),
            &key_provider::OpenOptions::default(),
        )
        .unwrap();
        let auth = MerchantAuth::Jwt(JwtAuth::new("m1", "serial-1", key).unwrap());
        let decode = |headers: Vec<(&'static str, String)>| {
            assert_eq!(headers.len(), 1);
            let (name, value) = &headers[0];
            assert_eq!(*name, "authorization");
            let jwt = value.strip_prefix("Bearer ").unwrap();
            jose_core::jwt::decode_unverified(jwt).unwrap()
        };
        let always = [
            "iat",
            "exp",
            "iss",
            "jti",
            "request-host",
            "request-method",
            "request-resource-path",
            "v-c-jwt-version",
            "v-c-merchant-id",
        ];
        let names = |claims: &serde_json::Map<String, serde_json::Value>| {
            let mut names: Vec<String> = claims.keys().cloned().collect();
            names.sort();
            names
        };
        let sorted = |list: &[&str]| {
            let mut list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
            list.sort();
            list
        };

        let (header, claims) = decode(
            auth.headers(
                "POST",
                "apitest.cybersource.com",
                "/flex/v2/sessions",
                b"{}",
            )
            .await
            .unwrap(),
        );
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "serial-1");
        assert_eq!(header["typ"], "JWT");
        let with_body: Vec<&str> = always
            .iter()
            .copied()
            .chain(["digest", "digestAlgorithm"])
            .collect();
        assert_eq!(names(&claims), sorted(&with_body));
        assert_eq!(claims["digestAlgorithm"], "SHA-256");
        assert_eq!(
            claims["digest"],
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        assert_eq!(claims["v-c-jwt-version"], "2");
        assert_eq!(claims["request-method"], "post");
        assert_eq!(claims["iss"], "m1");
        assert_eq!(claims["v-c-merchant-id"], "m1");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 120, "iat {iat} exp {exp}");
        let jti = uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
        assert_eq!(jti.get_version(), Some(uuid::Version::Random));

        // No body: no digest; the query string stays out of request-resource-path.
        let (_, claims) = decode(
            auth.headers(
                "GET",
                "apitest.cybersource.com",
                "/reporting/v3/reports?startTime=2026-01-01",
                b"",
            )
            .await
            .unwrap(),
        );
        assert_eq!(names(&claims), sorted(&always));
        assert_eq!(claims["request-resource-path"], "/reporting/v3/reports");
        assert_eq!(claims["request-method"], "get");
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

//! Merchant authentication as the simulator checks it, written from the protocol description and independent
//! of flex-client: JWT v2 verified by josekit (RS256, the merchant's registered public key by `kid`), and HTTP
//! Signature HMAC-SHA256 recomputed with OpenSSL.
//!
//! JWT: `Authorization: Bearer`; `kid` names a registered key of the merchant in `v-c-merchant-id`; `iss` and
//! `v-c-merchant-id` equal that merchant; `v-c-jwt-version` is `"2"`; `iat` within 5 minutes of now and
//! `exp` in the future but at most 5 minutes after `iat`; `jti` never seen before; `request-host`,
//! `request-resource-path` and `request-method` (any case) match the request; for a body, `digest` is
//! base64(SHA-256(body)) with `digest-algorithm` `SHA-256`.
//!
//! HTTP Signature: `v-c-merchant-id`, `date` (within 5 minutes), `digest: SHA-256=…` matching the body, and
//! `signature` with `algorithm="HmacSHA256"`, a registered `keyid`, and `headers` naming exactly
//! `host date request-target digest v-c-merchant-id`, the HMAC verifying over the request's own values.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::{Map, Value};

use crate::now;

/// Credentials registered for merchants.
#[derive(Debug, Default)]
pub(crate) struct Merchants {
    /// merchant id → key id → SPKI PEM.
    pub jwt_keys: HashMap<String, HashMap<String, String>>,
    /// merchant id → key id → shared secret bytes.
    pub secrets: HashMap<String, HashMap<String, Vec<u8>>>,
    /// JWT ids already used.
    pub seen_jti: HashSet<String>,
}

/// The request as authentication sees it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn sha256_b64(body: &[u8]) -> String {
    // SHA-256 is always available in OpenSSL; hashing fails only on allocation failure.
    STANDARD.encode(hash(MessageDigest::sha256(), body).expect("SHA-256"))
}

/// Checks the request's merchant authentication; returns the merchant id or why it was refused.
pub(crate) fn authenticate(
    merchants: &mut Merchants,
    request: &Request<'_>,
) -> Result<String, String> {
    let host = header(request.headers, "host").ok_or("no Host header")?;
    if let Some(auth) = header(request.headers, "authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .ok_or("Authorization is not a Bearer token")?;
        return check_jwt(merchants, request, host, token.trim());
    }
    if header(request.headers, "signature").is_some() {
        return check_http_signature(merchants, request, host);
    }
    Err("no merchant authentication (neither Authorization: Bearer nor Signature)".into())
}

fn check_jwt(
    merchants: &mut Merchants,
    request: &Request<'_>,
    host: &str,
    token: &str,
) -> Result<String, String> {
    // Find the key from the unverified header and claims, then verify with it.
    let header = josekit::jwt::decode_header(token).map_err(|e| format!("JWT header: {e}"))?;
    let kid = header
        .claim("kid")
        .and_then(Value::as_str)
        .ok_or("JWT has no kid")?
        .to_owned();
    let unverified = unverified_claims(token)?;
    let merchant = unverified
        .get("v-c-merchant-id")
        .and_then(Value::as_str)
        .ok_or("JWT has no v-c-merchant-id")?
        .to_owned();
    let pem = merchants
        .jwt_keys
        .get(&merchant)
        .and_then(|keys| keys.get(&kid))
        .ok_or_else(|| format!("no key {kid:?} registered for merchant {merchant:?}"))?;
    let verifier = josekit::jws::RS256
        .verifier_from_pem(pem)
        .map_err(|e| format!("merchant key: {e}"))?;
    let (payload, verified_header) = josekit::jwt::decode_with_verifier(token, &verifier)
        .map_err(|e| format!("JWT signature: {e}"))?;
    if verified_header.algorithm() != Some("RS256") {
        return Err("JWT alg is not RS256".into());
    }
    let claims = payload.claims_set();
    let s = |name: &str| claims.get(name).and_then(Value::as_str);
    let n = |name: &str| claims.get(name).and_then(Value::as_u64);
    if s("iss") != Some(&merchant) {
        return Err("JWT iss is not the merchant id".into());
    }
    if s("v-c-jwt-version") != Some("2") {
        return Err("JWT v-c-jwt-version is not \"2\"".into());
    }
    let (iat, exp) = (
        n("iat").ok_or("JWT has no iat")?,
        n("exp").ok_or("JWT has no exp")?,
    );
    let t = now();
    if iat > t + 300 || iat + 300 < t {
        return Err("JWT iat is more than 5 minutes off".into());
    }
    if exp < t || exp > iat + 300 {
        return Err("JWT exp is past or too far after iat".into());
    }
    if s("request-host") != Some(host) {
        return Err(format!(
            "JWT request-host {:?} is not {host:?}",
            s("request-host")
        ));
    }
    if s("request-resource-path") != Some(request.path) {
        return Err("JWT request-resource-path does not match".into());
    }
    if !s("request-method").is_some_and(|m| m.eq_ignore_ascii_case(request.method.as_str())) {
        return Err("JWT request-method does not match".into());
    }
    if !request.body.is_empty() || request.method == Method::POST {
        if s("digest") != Some(&sha256_b64(request.body)) {
            return Err("JWT digest does not match the body".into());
        }
        if s("digest-algorithm") != Some("SHA-256") {
            return Err("JWT digest-algorithm is not SHA-256".into());
        }
    }
    let jti = s("jti").ok_or("JWT has no jti")?.to_owned();
    if !merchants.seen_jti.insert(jti) {
        return Err("JWT jti was already used (replay)".into());
    }
    Ok(merchant)
}

/// `key="value", …` parameters of a Signature header.
fn signature_params(value: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for part in value.split("\",") {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(
                k.trim().to_owned(),
                Value::String(v.trim().trim_matches('"').to_owned()),
            );
        }
    }
    out
}

fn check_http_signature(
    merchants: &Merchants,
    request: &Request<'_>,
    host: &str,
) -> Result<String, String> {
    let h = |name: &str| header(request.headers, name).ok_or_else(|| format!("no {name} header"));
    let merchant = h("v-c-merchant-id")?;
    let date = h("date")?;
    let digest = h("digest")?;
    let params = signature_params(h("signature")?);
    let p = |name: &str| {
        params
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("signature has no {name}"))
    };
    if p("algorithm")? != "HmacSHA256" {
        return Err("signature algorithm is not HmacSHA256".into());
    }
    if p("headers")? != "host date request-target digest v-c-merchant-id" {
        return Err(
            "signature headers are not `host date request-target digest v-c-merchant-id`".into(),
        );
    }
    let key_id = p("keyid")?;
    let secret = merchants
        .secrets
        .get(merchant)
        .and_then(|keys| keys.get(key_id))
        .ok_or_else(|| {
            format!("no shared secret registered for merchant {merchant:?} and that keyid")
        })?;
    let sent = httpdate::parse_http_date(date).map_err(|_| "date is not an HTTP date")?;
    let skew = match SystemTime::now().duration_since(sent) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > Duration::from_secs(300) {
        return Err("date is more than 5 minutes off".into());
    }
    if digest != format!("SHA-256={}", sha256_b64(request.body)) {
        return Err("digest does not match the body".into());
    }
    let signing = format!(
        "host: {host}\ndate: {date}\nrequest-target: {} {}\ndigest: {digest}\nv-c-merchant-id: {merchant}",
        request.method.as_str().to_ascii_lowercase(),
        request.path
    );
    let key = PKey::hmac(secret).map_err(|e| format!("HMAC key: {e}"))?;
    let mut signer =
        Signer::new(MessageDigest::sha256(), &key).map_err(|e| format!("HMAC: {e}"))?;
    signer
        .update(signing.as_bytes())
        .map_err(|e| format!("HMAC: {e}"))?;
    let expected = signer.sign_to_vec().map_err(|e| format!("HMAC: {e}"))?;
    let given = STANDARD
        .decode(p("signature")?)
        .map_err(|_| "signature is not base64")?;
    if given.len() != expected.len() || !openssl::memcmp::eq(&given, &expected) {
        return Err("HTTP signature does not verify".into());
    }
    Ok(merchant.to_owned())
}

/// The claims of a JWT, unverified (only to find which merchant's key to verify with).
fn unverified_claims(token: &str) -> Result<Map<String, Value>, String> {
    let payload = token.split('.').nth(1).ok_or("JWT is not three parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "JWT payload is not base64url")?;
    serde_json::from_slice(&bytes).map_err(|_| "JWT payload is not a JSON object".into())
}

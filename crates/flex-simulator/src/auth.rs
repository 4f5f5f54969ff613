//! Merchant authentication as the simulator checks it, written from the protocol description and independent
//! of flex-client: JWT v2 verified by josekit (RS256, the merchant's registered public key by `kid`), and HTTP
//! Signature HMAC-SHA256 recomputed with OpenSSL.
//!
//! JWT (v2, as Cybersource's "Construct messages using JSON Web Tokens" page documents it, kept in this
//! file's own tables): `Authorization: Bearer`; header `alg` RS256/RS384/RS512/PS256/PS384/PS512, `typ`
//! `JWT`, `kid` a registered key of the merchant in `v-c-merchant-id`; exactly the documented claims, no other
//! (`iat`, `exp`, `iss`, `jti`, `request-host`, `request-method`, `request-resource-path`, `v-c-jwt-version`,
//! `v-c-merchant-id`; `digest` + `digestAlgorithm` exactly when there is a body; `v-c-response-mle-kid` only
//! with response MLE, which the simulator does not offer); `iss` and `v-c-merchant-id` equal that merchant;
//! `v-c-jwt-version` is `"2"`; `iat` within 5 minutes of now, `exp` after `iat` by at most 120 s and not past;
//! `jti` a UUID v4 never seen before; `request-host` the Host, `request-resource-path` the path (no query
//! string), `request-method` the method in lowercase; `digest` base64(SHA-256(body)) with `digestAlgorithm`
//! `SHA-256`. Any failure is a 401.
//!
//! HTTP Signature: `v-c-merchant-id`, `date` (within 5 minutes), and `signature` with
//! `algorithm="HmacSHA256"`, a registered `keyid`, and `headers` naming exactly
//! `host date request-target digest v-c-merchant-id` (with `digest: SHA-256=…` matching the body) for POST,
//! PUT and PATCH, or `host date request-target v-c-merchant-id` for GET and DELETE, the HMAC verifying over
//! the request's own values.

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
    /// merchant id → response MLE kid → SPKI PEM of the merchant's response MLE key.
    pub response_mle_keys: HashMap<String, HashMap<String, String>>,
}

/// Who a request authenticated as.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// The merchant id.
    pub merchant: String,
    /// The JWT's `v-c-response-mle-kid` (checked to be registered for the merchant), when present.
    pub response_mle_kid: Option<String>,
}

/// The HTTP Signature `headers` of a request with a body (POST, PUT, PATCH).
const HTTP_SIGNATURE_HEADERS_WITH_DIGEST: &str = "host date request-target digest v-c-merchant-id";
/// The HTTP Signature `headers` of a request without a body (GET, DELETE).
const HTTP_SIGNATURE_HEADERS: &str = "host date request-target v-c-merchant-id";

/// The request as authentication sees it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    /// The path, without the query string.
    pub path: &'a str,
    /// The path with the query string, if any (the HTTP Signature `request-target`).
    pub target: &'a str,
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
) -> Result<Authenticated, String> {
    let host = header(request.headers, "host").ok_or("no Host header")?;
    if let Some(auth) = header(request.headers, "authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .ok_or("Authorization is not a Bearer token")?;
        return check_jwt(merchants, request, host, token.trim());
    }
    if header(request.headers, "signature").is_some() {
        return check_http_signature(merchants, request, host).map(|merchant| Authenticated {
            merchant,
            response_mle_kid: None,
        });
    }
    Err("no merchant authentication (neither Authorization: Bearer nor Signature)".into())
}

/// The JWT v2 header as Cybersource's "Construct messages using JSON Web Tokens" page documents it: `alg`
/// RS256 by default, RS384/RS512 and PS256/PS384/PS512 allowed; `kid` the key id of the merchant's P12; `typ`
/// `JWT`.
const JWT_ALGORITHMS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// Which claims a JWT v2 may carry, and when (from the same page; written here, not taken from flex-client).
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// In every token.
    Always,
    /// Exactly when the request has a body.
    WithBody,
    /// Only when the merchant has response message-level encryption on: the kid must name a response MLE
    /// key registered for the merchant.
    ResponseMle,
}

/// Claim name, JSON type (`true`: a string, `false`: a non-negative integer), when it is present.
const JWT_CLAIM_TABLE: [(&str, bool, When); 12] = [
    ("iat", false, When::Always),
    ("exp", false, When::Always),
    ("iss", true, When::Always),
    ("jti", true, When::Always),
    ("request-host", true, When::Always),
    ("request-method", true, When::Always),
    ("request-resource-path", true, When::Always),
    ("v-c-jwt-version", true, When::Always),
    ("v-c-merchant-id", true, When::Always),
    ("digest", true, When::WithBody),
    ("digestAlgorithm", true, When::WithBody),
    ("v-c-response-mle-kid", true, When::ResponseMle),
];

/// Longest lifetime Cybersource accepts: `exp` at most `iat` + 120.
const JWT_MAX_LIFETIME: u64 = 120;

fn boxed<V: josekit::jws::JwsVerifier + 'static>(
    verifier: Result<V, josekit::JoseError>,
) -> Result<Box<dyn josekit::jws::JwsVerifier>, String> {
    verifier
        .map(|v| Box::new(v) as Box<dyn josekit::jws::JwsVerifier>)
        .map_err(|e| format!("merchant key: {e}"))
}

/// A josekit verifier for `alg` (one of [`JWT_ALGORITHMS`]) and the merchant's SPKI PEM.
fn verifier_for(alg: &str, pem: &str) -> Result<Box<dyn josekit::jws::JwsVerifier>, String> {
    use josekit::jws::{PS256, PS384, PS512, RS256, RS384, RS512};
    // josekit takes a plain rsaEncryption SPKI only for RSxxx; for PSxxx it wants the PKCS#1 form.
    let pkcs1 = || -> Result<Vec<u8>, String> {
        openssl::rsa::Rsa::public_key_from_pem(pem.as_bytes())
            .and_then(|rsa| rsa.public_key_to_pem_pkcs1())
            .map_err(|e| format!("merchant key: {e}"))
    };
    match alg {
        "RS256" => boxed(RS256.verifier_from_pem(pem)),
        "RS384" => boxed(RS384.verifier_from_pem(pem)),
        "RS512" => boxed(RS512.verifier_from_pem(pem)),
        "PS256" => boxed(PS256.verifier_from_pem(pkcs1()?)),
        "PS384" => boxed(PS384.verifier_from_pem(pkcs1()?)),
        "PS512" => boxed(PS512.verifier_from_pem(pkcs1()?)),
        other => Err(format!(
            "JWT alg {other:?} is not one of {JWT_ALGORITHMS:?}"
        )),
    }
}

fn check_jwt(
    merchants: &mut Merchants,
    request: &Request<'_>,
    host: &str,
    token: &str,
) -> Result<Authenticated, String> {
    // Find the key from the unverified header and claims, then verify with it.
    let header = josekit::jwt::decode_header(token).map_err(|e| format!("JWT header: {e}"))?;
    let alg = header
        .claim("alg")
        .and_then(Value::as_str)
        .ok_or("JWT has no alg")?
        .to_owned();
    if !JWT_ALGORITHMS.contains(&alg.as_str()) {
        return Err(format!("JWT alg {alg:?} is not one of {JWT_ALGORITHMS:?}"));
    }
    if header.claim("typ").and_then(Value::as_str) != Some("JWT") {
        return Err("JWT typ is not \"JWT\"".into());
    }
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
    let verifier = verifier_for(&alg, pem)?;
    let (payload, _) = josekit::jwt::decode_with_verifier(token, verifier.as_ref())
        .map_err(|e| format!("JWT signature: {e}"))?;
    let claims = payload.claims_set();

    // The claim set, against the table: nothing unknown, nothing missing, each of its type.
    let has_body = !request.body.is_empty();
    for name in claims.keys() {
        if !JWT_CLAIM_TABLE.iter().any(|(n, _, _)| n == name) {
            return Err(format!("JWT claim {name:?} is not a JWT v2 claim"));
        }
    }
    for (name, is_string, when) in JWT_CLAIM_TABLE {
        let value = claims.get(name);
        let wanted = match when {
            When::Always => true,
            When::WithBody => has_body,
            When::ResponseMle => value.and_then(Value::as_str).is_some_and(|kid| {
                merchants
                    .response_mle_keys
                    .get(&merchant)
                    .is_some_and(|keys| keys.contains_key(kid))
            }),
        };
        match (value, wanted) {
            (None, true) => return Err(format!("JWT has no {name}")),
            (Some(_), false) if when == When::ResponseMle => {
                return Err(format!(
                    "JWT {name} names no response MLE key registered for this merchant"
                ));
            }
            (Some(_), false) => return Err(format!("JWT {name} without a request body")),
            (Some(v), true) if is_string && !v.is_string() => {
                return Err(format!("JWT {name} is not a string"));
            }
            (Some(v), true) if !is_string && !v.is_u64() => {
                return Err(format!("JWT {name} is not a number of seconds"));
            }
            _ => {}
        }
    }
    let s = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    let n = |name: &str| claims.get(name).and_then(Value::as_u64).unwrap_or_default();
    if s("iss") != merchant {
        return Err("JWT iss is not the merchant id".into());
    }
    if s("v-c-jwt-version") != "2" {
        return Err("JWT v-c-jwt-version is not \"2\"".into());
    }
    let (iat, exp) = (n("iat"), n("exp"));
    let t = now();
    if iat > t + 300 || iat + 300 < t {
        return Err("JWT iat is more than 5 minutes off".into());
    }
    if exp <= iat || exp > iat + JWT_MAX_LIFETIME {
        return Err(format!(
            "JWT exp is not within {JWT_MAX_LIFETIME} s after iat"
        ));
    }
    if exp < t {
        return Err("JWT has expired".into());
    }
    let jti = s("jti");
    if uuid::Uuid::parse_str(jti)
        .ok()
        .and_then(|u| u.get_version())
        != Some(uuid::Version::Random)
        || jti.len() != 36
    {
        return Err("JWT jti is not a UUID v4".into());
    }
    if s("request-host") != host {
        return Err(format!(
            "JWT request-host {:?} is not {host:?}",
            s("request-host")
        ));
    }
    if s("request-resource-path").contains('?') {
        return Err("JWT request-resource-path carries a query string".into());
    }
    if s("request-resource-path") != request.path {
        return Err("JWT request-resource-path does not match".into());
    }
    if s("request-method") != request.method.as_str().to_ascii_lowercase() {
        return Err("JWT request-method is not the request's method in lowercase".into());
    }
    if has_body {
        if s("digestAlgorithm") != "SHA-256" {
            return Err("JWT digestAlgorithm is not SHA-256".into());
        }
        if s("digest") != sha256_b64(request.body) {
            return Err("JWT digest does not match the body".into());
        }
    }
    if !merchants.seen_jti.insert(jti.to_owned()) {
        return Err("JWT jti was already used (replay)".into());
    }
    let response_mle_kid = claims
        .get("v-c-response-mle-kid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Authenticated {
        merchant,
        response_mle_kid,
    })
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
    // Cybersource's two header sets: with a digest for POST, PUT and PATCH (and any body), without for GET
    // and DELETE.
    let with_digest = !request.body.is_empty()
        || [Method::POST, Method::PUT, Method::PATCH].contains(request.method);
    let names = if with_digest {
        HTTP_SIGNATURE_HEADERS_WITH_DIGEST
    } else {
        HTTP_SIGNATURE_HEADERS
    };
    if p("headers")? != names {
        return Err(format!("signature headers are not `{names}`"));
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
    let target = format!(
        "{} {}",
        request.method.as_str().to_ascii_lowercase(),
        request.target
    );
    let signing = if with_digest {
        let digest = h("digest")?;
        if digest != format!("SHA-256={}", sha256_b64(request.body)) {
            return Err("digest does not match the body".into());
        }
        format!(
            "host: {host}\ndate: {date}\nrequest-target: {target}\ndigest: {digest}\nv-c-merchant-id: {merchant}"
        )
    } else {
        format!("host: {host}\ndate: {date}\nrequest-target: {target}\nv-c-merchant-id: {merchant}")
    };
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

//! The simulator's JWT v2 merchant authentication against hand-built tokens (header and claims written here,
//! signed with OpenSSL; no flex-client involved): the documented claim set is accepted with each allowed
//! `alg`, and each departure from it is a 401 that names the reason — `digest-algorithm` for
//! `digestAlgorithm`, a missing `jti`, `exp` later than `iat` + 120, a wrong `request-resource-path`, and more.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use flex_simulator::FlexSimulator;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use serde_json::{Value, json};

const MERCHANT: &str = "sim_test_merchant";
const KID: &str = "1234567890123456";
const PATH: &str = "/flex/v2/sessions";
const BODY: &str = r#"{"fields":{"paymentInformation":{"card":{"number":{"required":true}}}}}"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A compact JWS of `header` and `claims`, signed with OpenSSL as `alg` (RSxxx or PSxxx) says.
fn sign(key: &PKey<Private>, header: &Value, claims: &Value) -> String {
    let alg = header["alg"].as_str().unwrap_or("RS256");
    let md = match &alg[2..] {
        "384" => MessageDigest::sha384(),
        "512" => MessageDigest::sha512(),
        _ => MessageDigest::sha256(),
    };
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut signer = Signer::new(md, key).unwrap();
    if alg.starts_with("PS") {
        signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        signer
            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .unwrap();
        signer.set_rsa_mgf1_md(md).unwrap();
    }
    signer.update(input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(signer.sign_to_vec().unwrap()))
}

/// The documented header and claims for a POST of `body` to `path` on `host`.
fn documented(host: &str, path: &str, body: &str) -> (Value, Value) {
    let iat = now();
    let mut claims = json!({
        "iat": iat,
        "exp": iat + 120,
        "iss": MERCHANT,
        "jti": uuid::Uuid::new_v4().to_string(),
        "request-host": host,
        "request-method": "post",
        "request-resource-path": path,
        "v-c-jwt-version": "2",
        "v-c-merchant-id": MERCHANT,
    });
    if !body.is_empty() {
        claims["digest"] =
            json!(STANDARD.encode(hash(MessageDigest::sha256(), body.as_bytes()).unwrap()));
        claims["digestAlgorithm"] = json!("SHA-256");
    }
    (json!({"alg": "RS256", "kid": KID, "typ": "JWT"}), claims)
}

/// POSTs `body` to `target` (path and query) with `Authorization: Bearer <token>`; returns the status.
async fn post(sim: &FlexSimulator, target: &str, token: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let host = sim.addr().to_string();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Plain blocking I/O on a blocking thread: the simulator answers on the runtime's worker.
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn jwt_v2_claim_set_is_checked_against_the_documented_table() {
    let sim = FlexSimulator::start().await.unwrap();
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let pem = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
    sim.add_merchant_jwt_key(MERCHANT, KID, &pem);
    let host = sim.addr().to_string();

    // Positive controls: the documented set with each allowed alg; exp at exactly iat + 120; a query string on
    // the request that request-resource-path leaves out.
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let (mut header, claims) = documented(&host, PATH, BODY);
        header["alg"] = json!(alg);
        let status = post(&sim, PATH, &sign(&key, &header, &claims), BODY).await;
        assert_eq!(status, 201, "{alg}: {:?}", sim.last_rejection());
    }
    let (header, claims) = documented(&host, PATH, BODY);
    let status = post(
        &sim,
        &format!("{PATH}?trace=1"),
        &sign(&key, &header, &claims),
        BODY,
    )
    .await;
    assert_eq!(status, 201, "{:?}", sim.last_rejection());
    assert_eq!(sim.stats().auth_failures, 0);

    type Mutation = fn(&mut Value, &mut Value);
    let cases: [(&str, Mutation, &str, &str); 16] = [
        (
            "digest-algorithm instead of digestAlgorithm",
            |_, c| {
                let v = c
                    .as_object_mut()
                    .unwrap()
                    .remove("digestAlgorithm")
                    .unwrap();
                c["digest-algorithm"] = v;
            },
            PATH,
            "\"digest-algorithm\" is not a JWT v2 claim",
        ),
        (
            "digest-algorithm as well as digestAlgorithm",
            |_, c| c["digest-algorithm"] = json!("SHA-256"),
            PATH,
            "\"digest-algorithm\" is not a JWT v2 claim",
        ),
        (
            "no digestAlgorithm",
            |_, c| {
                c.as_object_mut().unwrap().remove("digestAlgorithm");
            },
            PATH,
            "no digestAlgorithm",
        ),
        (
            "no jti",
            |_, c| {
                c.as_object_mut().unwrap().remove("jti");
            },
            PATH,
            "no jti",
        ),
        (
            "jti not a UUID v4",
            |_, c| c["jti"] = json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            PATH,
            "not a UUID v4",
        ),
        (
            "exp = iat + 121",
            |_, c| c["exp"] = json!(c["iat"].as_u64().unwrap() + 121),
            PATH,
            "exp is not within 120 s",
        ),
        (
            "request-resource-path of another endpoint",
            |_, c| c["request-resource-path"] = json!("/microform/v2/sessions"),
            PATH,
            "request-resource-path does not match",
        ),
        (
            "request-resource-path with the query string",
            |_, c| c["request-resource-path"] = json!("/flex/v2/sessions?trace=1"),
            "/flex/v2/sessions?trace=1",
            "request-resource-path carries a query string",
        ),
        (
            "request-method in uppercase",
            |_, c| c["request-method"] = json!("POST"),
            PATH,
            "request-method is not the request's method in lowercase",
        ),
        (
            "v-c-jwt-version as a number",
            |_, c| c["v-c-jwt-version"] = json!(2),
            PATH,
            "v-c-jwt-version is not a string",
        ),
        (
            "v-c-response-mle-kid without response MLE",
            |_, c| c["v-c-response-mle-kid"] = json!("mle-1"),
            PATH,
            "names no response MLE key registered for this merchant",
        ),
        (
            "iss another merchant",
            |_, c| c["iss"] = json!("someone_else"),
            PATH,
            "iss is not the merchant id",
        ),
        (
            "digest of another body",
            |_, c| c["digest"] = json!(STANDARD.encode([0u8; 32])),
            PATH,
            "digest does not match the body",
        ),
        (
            "no typ",
            |h, _| {
                h.as_object_mut().unwrap().remove("typ");
            },
            PATH,
            "typ is not \"JWT\"",
        ),
        (
            "alg HS256",
            |h, _| h["alg"] = json!("HS256"),
            PATH,
            "alg \"HS256\" is not one of",
        ),
        (
            "a claim the page does not name",
            |_, c| c["aud"] = json!("apitest.cybersource.com"),
            PATH,
            "\"aud\" is not a JWT v2 claim",
        ),
    ];
    for (i, (name, mutate, target, reason)) in cases.into_iter().enumerate() {
        let (mut header, mut claims) = documented(&host, PATH, BODY);
        mutate(&mut header, &mut claims);
        // HS256 cannot be made with an RSA key: sign as RS256 under the HS256 header.
        let token = sign(&key, &header, &claims);
        let status = post(&sim, target, &token, BODY).await;
        assert_eq!(status, 401, "{name}: accepted");
        let rejection = sim.last_rejection().unwrap();
        assert!(rejection.contains(reason), "{name}: {rejection}");
        assert_eq!(sim.stats().auth_failures, i as u64 + 1, "{name}");
    }

    // No body: no digest either. A POST without a body and without digest passes authentication (and is then
    // refused for its empty body); with a digest it is refused as a 401.
    let (header, claims) = documented(&host, PATH, "");
    assert!(claims.get("digest").is_none());
    assert_eq!(
        post(&sim, PATH, &sign(&key, &header, &claims), "").await,
        400
    );
    assert!(sim.last_rejection().unwrap().contains("not JSON"));
    let (header, mut claims) = documented(&host, PATH, "");
    claims["digest"] = json!(STANDARD.encode(hash(MessageDigest::sha256(), b"").unwrap()));
    claims["digestAlgorithm"] = json!("SHA-256");
    assert_eq!(
        post(&sim, PATH, &sign(&key, &header, &claims), "").await,
        401
    );
    assert!(
        sim.last_rejection()
            .unwrap()
            .contains("digest without a request body"),
        "{:?}",
        sim.last_rejection()
    );

    // A replayed token (same jti) is refused the second time.
    let (header, claims) = documented(&host, PATH, BODY);
    let token = sign(&key, &header, &claims);
    assert_eq!(post(&sim, PATH, &token, BODY).await, 201);
    assert_eq!(post(&sim, PATH, &token, BODY).await, 401);
    assert!(sim.last_rejection().unwrap().contains("replay"));
}

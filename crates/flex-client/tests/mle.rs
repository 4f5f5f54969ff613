//! Cybersource message-level encryption (issue 15 items 3 and 4), checked against an independent stack:
//!
//! - request JWEs made by flex-client are decrypted by josekit (OpenSSL) with the MLE certificate's private
//!   key: `alg` RSA-OAEP-256, `enc` A256GCM, `kid` = the certificate's subject serialNumber, `iat` now;
//! - response JWEs made by josekit (RSA-OAEP-256 and RSA-OAEP, A256GCM and A128GCM) are decrypted by
//!   flex-client through the file backend; tampered or unencrypted answers are refused;
//! - the JWT `digest` covers the encrypted body, and `v-c-response-mle-kid` is sent with response MLE;
//! - end to end against the simulator (which decrypts and encrypts with josekit): request MLE, request and
//!   response MLE, a plaintext body refused where MLE is required, an unregistered response kid refused —
//!   with no plaintext request, decrypted response or key material in the logs.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use flex_client::key_provider::{self, KeyBackend, KeySpec};
use flex_client::mle::{self, RESPONSE_MLE_KID_CLAIM};
use flex_client::{
    FlexError, JwtAuth, MerchantAuth, Mle, MleCertificate, ResponseMle, SessionEndpoint,
    body_digest,
};
use flex_simulator::FlexSimulator;
use josekit::jwe::{JweHeader, RSA_OAEP, RSA_OAEP_256};
use serde_json::{Value, json};
use support::{KEY_ID, MERCHANT, client, merchant_file_key};

#[track_caller]
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An RSA-2048 key and a self-signed certificate whose subject carries `serialNumber`, made by openssl.
fn mle_certificate(dir: &Path, serial_number: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join("mle.key");
    let cert = dir.join("mle.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        s(&key),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-key",
        s(&key),
        "-subj",
        &format!("/C=US/O=CyberSource/CN=CyberSource_SJC_US/serialNumber={serial_number}"),
        "-days",
        "30",
        "-out",
        s(&cert),
    ]);
    (key, cert)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn file_key(path: &Path) -> Arc<dyn KeyBackend> {
    key_provider::file::generate(path, KeySpec::Rsa(2048)).unwrap();
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap()
}

#[test]
fn request_jwes_are_decrypted_by_josekit() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = mle_certificate(dir.path(), "SJC0123456789abcdef");
    let certificate = MleCertificate::from_file(&cert).unwrap();
    assert_eq!(certificate.kid(), "SJC0123456789abcdef");

    let plaintext = br#"{"targetOrigins":["https://shop.example"],"clientVersion":"v2"}"#;
    let sent = mle::encrypt_request(&certificate, plaintext, SystemTime::now()).unwrap();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    let object = sent.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["encryptedRequest"],
        "the body is replaced, not extended"
    );
    let jwe = sent["encryptedRequest"].as_str().unwrap();
    assert!(!jwe.contains("shop.example"));

    let decrypter = RSA_OAEP_256
        .decrypter_from_pem(std::fs::read(&key).unwrap())
        .unwrap();
    let (decrypted, header) = josekit::jwe::deserialize_compact(jwe, &decrypter).unwrap();
    assert_eq!(decrypted, plaintext);
    assert_eq!(header.algorithm(), Some("RSA-OAEP-256"));
    assert_eq!(header.content_encryption(), Some("A256GCM"));
    assert_eq!(header.key_id(), Some("SJC0123456789abcdef"));
    let iat = header.claim("iat").and_then(Value::as_u64).unwrap();
    assert!(iat.abs_diff(now()) < 60, "iat {iat}");

    // Each request gets its own CEK and IV.
    let again = mle::encrypt_request(&certificate, plaintext, SystemTime::now()).unwrap();
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_ne!(again["encryptedRequest"], sent["encryptedRequest"]);
}

/// Cybersource's SDKs warn 90 days before the MLE certificate expires; so does flex-client (a 30-day
/// certificate here), and not for a certificate valid for a year.
#[test]
fn a_certificate_near_its_expiry_is_used_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert) = mle_certificate(dir.path(), "SJC-soon");
    let (logs, guard) = keybound_test_support::capture::capture();
    MleCertificate::from_file(&cert).unwrap();
    drop(guard);
    assert!(
        logs.text().contains("expires within 90 days"),
        "{}",
        logs.text()
    );

    let key = dir.path().join("long.key");
    let long = dir.path().join("long.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        s(&key),
        "-subj",
        "/CN=CyberSource_SJC_US/serialNumber=SJC-later",
        "-days",
        "365",
        "-out",
        s(&long),
    ]);
    let (logs, guard) = keybound_test_support::capture::capture();
    MleCertificate::from_file(&long).unwrap();
    drop(guard);
    assert!(!logs.text().contains("expires within"), "{}", logs.text());
}

#[test]
fn a_certificate_without_a_subject_serial_number_or_a_bare_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let cert = dir.path().join("c.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        s(&key),
        "-subj",
        "/CN=CyberSource_SJC_US",
        "-days",
        "1",
        "-out",
        s(&cert),
    ]);
    let e = MleCertificate::from_file(&cert).unwrap_err();
    assert!(matches!(e, FlexError::Config(_)), "{e}");
    assert!(e.to_string().contains("serialNumber"), "{e}");

    let spki = dir.path().join("spki.pem");
    openssl(&["pkey", "-in", s(&key), "-pubout", "-out", s(&spki)]);
    let e = MleCertificate::from_file(&spki).unwrap_err();
    assert!(e.to_string().contains("bare public key"), "{e}");
}

#[tokio::test]
async fn josekit_responses_are_decrypted_through_the_file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let key = file_key(&dir.path().join("response.pem"));
    let pem = key.public_key().to_spki_pem();
    let response = ResponseMle::new(key, "merchant-response-kid-1").unwrap();
    let plaintext = b"eyJraWQiOiIzZyIsImFsZyI6IlJTMjU2In0.response.plaintext";

    let combos: [(&dyn josekit::jwe::JweAlgorithm, &str); 4] = [
        (&RSA_OAEP_256, "A256GCM"),
        (&RSA_OAEP_256, "A128GCM"),
        (&RSA_OAEP, "A256GCM"),
        (&RSA_OAEP, "A128GCM"),
    ];
    for (alg, enc) in combos {
        let mut header = JweHeader::new();
        header.set_content_encryption(enc);
        header.set_key_id("merchant-response-kid-1");
        let encrypter: Box<dyn josekit::jwe::JweEncrypter> = if alg.name() == "RSA-OAEP" {
            Box::new(RSA_OAEP.encrypter_from_pem(&pem).unwrap())
        } else {
            Box::new(RSA_OAEP_256.encrypter_from_pem(&pem).unwrap())
        };
        let jwe = josekit::jwe::serialize_compact(plaintext, &header, encrypter.as_ref()).unwrap();
        let body = json!({ "encryptedResponse": jwe }).to_string();
        assert!(mle::is_encrypted_response(body.as_bytes()));
        let decrypted = mle::decrypt_response(&response, body.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{} / {enc}: {e}", alg.name()));
        assert_eq!(decrypted.as_slice(), plaintext, "{} / {enc}", alg.name());

        // Tampered: one decryption failure, whatever part was changed.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        parts[3] = parts[3].chars().rev().collect();
        let body = json!({ "encryptedResponse": parts.join(".") }).to_string();
        let e = mle::decrypt_response(&response, body.as_bytes())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                FlexError::Jose(flex_client::jose_core::JoseError::DecryptionFailed)
            ),
            "{e}"
        );
        assert!(e.is_rejection());
    }

    // Response MLE on, plaintext answer: refused, never read as plaintext.
    let e = mle::decrypt_response(&response, b"eyJhbGciOiJSUzI1NiJ9.e30.sig")
        .await
        .unwrap_err();
    assert!(matches!(e, FlexError::Malformed { .. }), "{e}");
    let e = mle::decrypt_response(&response, br#"{"captureContext":"x.y.z"}"#)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("encryptedResponse"), "{e}");

    // Encrypted to another key: the same decryption failure.
    let other = file_key(&dir.path().join("other.pem"));
    let encrypter = RSA_OAEP_256
        .encrypter_from_pem(other.public_key().to_spki_pem())
        .unwrap();
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    let jwe = josekit::jwe::serialize_compact(plaintext, &header, &encrypter).unwrap();
    let body = json!({ "encryptedResponse": jwe }).to_string();
    let e = mle::decrypt_response(&response, body.as_bytes())
        .await
        .unwrap_err();
    assert!(e.is_rejection(), "{e}");
}

#[tokio::test]
async fn the_jwt_digest_covers_the_encrypted_body_and_names_the_response_kid() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert) = mle_certificate(dir.path(), "SJC42");
    let certificate = MleCertificate::from_file(&cert).unwrap();
    let auth = MerchantAuth::Jwt(
        JwtAuth::new(MERCHANT, KEY_ID, file_key(&dir.path().join("m.pem"))).unwrap(),
    );
    let plain = br#"{"fields":{}}"#;
    let sent = mle::encrypt_request(&certificate, plain, SystemTime::now()).unwrap();
    let headers = auth
        .headers_with_response_mle(
            "POST",
            "apitest.cybersource.com",
            "/flex/v2/sessions",
            &sent,
            SystemTime::now(),
            Some("resp-kid-7"),
        )
        .await
        .unwrap();
    let jwt = headers[0].1.strip_prefix("Bearer ").unwrap();
    let (_, claims) = flex_client::jose_core::jwt::decode_unverified(jwt).unwrap();
    assert_eq!(claims["digest"], body_digest(&sent));
    assert_ne!(claims["digest"], body_digest(plain));
    assert_eq!(claims[RESPONSE_MLE_KID_CLAIM], "resp-kid-7");

    // Without response MLE the claim is absent; HTTP Signature cannot do MLE.
    let headers = auth
        .headers(
            "POST",
            "apitest.cybersource.com",
            "/flex/v2/sessions",
            &sent,
        )
        .await
        .unwrap();
    let jwt = headers[0].1.strip_prefix("Bearer ").unwrap();
    let (_, claims) = flex_client::jose_core::jwt::decode_unverified(jwt).unwrap();
    assert!(claims.get(RESPONSE_MLE_KID_CLAIM).is_none());
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
    let hs = MerchantAuth::HttpSignature(
        flex_client::HttpSignatureAuth::new(MERCHANT, KEY_ID, secret).unwrap(),
    );
    let e = hs
        .headers_with_response_mle("POST", "h", "/p", &sent, SystemTime::now(), Some("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, FlexError::MerchantAuth(_)), "{e}");
}

/// The simulator's MLE certificate in a file, read back as flex-client reads it.
fn simulator_certificate(sim: &FlexSimulator, dir: &Path) -> MleCertificate {
    let path = dir.join("cybersource-mle.pem");
    std::fs::write(&path, sim.mle_certificate_pem()).unwrap();
    let certificate = MleCertificate::from_file(&path).unwrap();
    assert_eq!(certificate.kid(), sim.mle_kid());
    certificate
}

const MARKER: &str = "https://mle-plaintext-marker.example";

#[tokio::test(flavor = "current_thread")]
async fn capture_context_with_request_and_response_mle_against_the_simulator() {
    let (logs, _guard) = keybound_test_support::capture::capture();
    let sim = FlexSimulator::start().await.unwrap();
    sim.require_request_mle(true);
    let dir = tempfile::tempdir().unwrap();
    let auth =
        MerchantAuth::Jwt(JwtAuth::new(MERCHANT, KEY_ID, merchant_file_key(&sim, &dir)).unwrap());
    let client = client(&sim);
    let body = json!({"targetOrigins": [MARKER], "fields": {"paymentInformation": {"card": {"number": {"required": true}}}}});

    // MLE required: a plaintext body is refused.
    let e = client
        .request_capture_context(&auth, SessionEndpoint::Flex, &body)
        .await
        .unwrap_err();
    assert!(matches!(e, FlexError::Http { status: 400, .. }), "{e}");
    assert!(
        sim.last_rejection()
            .unwrap()
            .contains("message-level encryption is required"),
        "{:?}",
        sim.last_rejection()
    );

    // Request MLE: the simulator decrypts the request (and its digest check passed on the encrypted body).
    let certificate = simulator_certificate(&sim, dir.path());
    let context = client
        .request_capture_context_with_mle(
            &auth,
            SessionEndpoint::Flex,
            &body,
            &Mle::new(certificate.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        context.claims().required_fields(),
        ["paymentInformation.card.number"]
    );
    assert_eq!(sim.stats().encrypted_requests, 1);
    assert_eq!(sim.stats().encrypted_responses, 0);

    // Request and response MLE: the answer comes encrypted to the merchant's response key, which decrypts it
    // through its backend.
    let response_key = file_key(&dir.path().join("response.pem"));
    sim.add_merchant_response_mle_key(
        MERCHANT,
        "resp-kid-1",
        &response_key.public_key().to_spki_pem(),
    );
    let mle = Mle::new(certificate.clone())
        .with_response(ResponseMle::new(response_key, "resp-kid-1").unwrap());
    let context = client
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &body, &mle)
        .await
        .unwrap();
    assert_eq!(sim.stats().encrypted_requests, 2);
    assert_eq!(sim.stats().encrypted_responses, 1);
    let jwt = context.as_str().to_owned();

    // A response kid Cybersource does not know: refused by the server.
    let unknown = Mle::new(certificate.clone()).with_response(
        ResponseMle::new(file_key(&dir.path().join("r2.pem")), "resp-kid-unknown").unwrap(),
    );
    let e = client
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &body, &unknown)
        .await
        .unwrap_err();
    assert!(matches!(e, FlexError::Http { status: 401, .. }), "{e}");

    // The response encrypted to another key than ours: one decryption failure.
    let wrong = file_key(&dir.path().join("r3.pem"));
    sim.add_merchant_response_mle_key(MERCHANT, "resp-kid-3", &wrong.public_key().to_spki_pem());
    let mismatched = Mle::new(certificate).with_response(
        ResponseMle::new(file_key(&dir.path().join("r4.pem")), "resp-kid-3").unwrap(),
    );
    let e = client
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &body, &mismatched)
        .await
        .unwrap_err();
    assert!(e.is_rejection(), "{e}");

    // Nothing of the plaintext request or the decrypted answer in the logs (TRACE level).
    let text = logs.text();
    assert!(
        text.contains("MLE request encrypted"),
        "the MLE path logged nothing:\n{text}"
    );
    assert!(
        !text.contains("mle-plaintext-marker"),
        "plaintext request in the logs:\n{text}"
    );
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(
        !text.contains(signature),
        "decrypted answer in the logs:\n{text}"
    );
}

#[tokio::test]
async fn http_signature_with_mle_is_refused_before_sending() {
    let sim = FlexSimulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
    sim.add_merchant_shared_secret(MERCHANT, KEY_ID, secret);
    let auth = MerchantAuth::HttpSignature(
        flex_client::HttpSignatureAuth::new(MERCHANT, KEY_ID, secret).unwrap(),
    );
    let mle = Mle::new(simulator_certificate(&sim, dir.path()));
    let e = client(&sim)
        .request_capture_context_with_mle(&auth, SessionEndpoint::Flex, &json!({}), &mle)
        .await
        .unwrap_err();
    assert!(matches!(e, FlexError::MerchantAuth(_)), "{e}");
    assert_eq!(sim.stats().session_requests, 0);
}

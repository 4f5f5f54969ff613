//! flex-client against the Flex simulator: the whole flow with both merchant authentication methods and every
//! sessions endpoint, key caching and rotation, and every way the server (or an attacker) can misbehave.

mod support;

use std::time::Duration;

use base64::Engine as _;
use flex_client::{
    Environment, FlexClient, FlexError, HttpConfig, HttpSignatureAuth, JwtAuth, KeyCache,
    MerchantAuth, SessionEndpoint, TokensEndpoint,
};
use flex_simulator::{FlexSimulator, Misbehavior, SessionKind, SimulatorConfig};
use serde_json::json;
use support::{KEY_ID, MERCHANT, builder, card_data, client, flex_fields, merchant_file_key};

#[tokio::test]
async fn full_flow_with_jwt_merchant_auth_on_every_sessions_endpoint() {
    let sim = FlexSimulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth =
        MerchantAuth::Jwt(JwtAuth::new(MERCHANT, KEY_ID, merchant_file_key(&sim, &dir)).unwrap());
    let client = client(&sim);
    for endpoint in SessionEndpoint::ALL {
        let body = match endpoint {
            SessionEndpoint::Flex => flex_fields(),
            _ => json!({"targetOrigins": ["https://shop.example"], "clientVersion": "v2.0"}),
        };
        let context = client
            .request_capture_context(&auth, endpoint, &body)
            .await
            .unwrap();
        assert_eq!(context.kid(), sim.signing_kid());
        assert_eq!(context.encryption_kid().len(), 32);
        assert_eq!(context.claims().flx.origin, sim.base_url());
        assert_eq!(context.claims().exp - context.claims().iat, 900);
        if endpoint == SessionEndpoint::Flex {
            assert_eq!(
                context.claims().required_fields(),
                [
                    "paymentInformation.card.number",
                    "paymentInformation.card.expirationMonth",
                    "paymentInformation.card.expirationYear"
                ]
            );
        } else {
            assert_eq!(
                context.claims().ctx[0].data.target_origins,
                ["https://shop.example"]
            );
        }

        let token = client.tokenize(&context, &card_data()).await.unwrap();
        let seen = sim.last_token_request().unwrap();
        assert_eq!(seen.kid, context.encryption_kid());
        assert_eq!(seen.alg_enc, ("RSA-OAEP".to_owned(), "A256GCM".to_owned()));
        assert!(
            seen.fields
                .contains(&"paymentInformation.card.number".to_owned())
        );
        assert!(
            seen.fields
                .contains(&"orderInformation.amountDetails.totalAmount".to_owned())
        );

        let verified = client
            .verify_transient_token(&context, token.as_str())
            .await
            .unwrap();
        assert_eq!(verified.kid(), context.encryption_kid());
        let claims = verified.claims();
        assert_eq!(claims.masked_card_number(), Some("XXXXXXXXXXXX1111"));
        assert_eq!(claims.card_bin(), Some("411111"));
        assert_eq!(
            claims
                .content
                .value("paymentInformation.card.expirationYear"),
            Some("2031")
        );
        assert_eq!(
            claims.content.value("paymentInformation.card.type"),
            Some("001")
        );
        assert!(
            claims
                .content
                .is_captured("paymentInformation.card.securityCode")
        );
        assert_eq!(claims.cardholder_authenticated(), Some(false));
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(verified.raw_claims()["iss"], "Flex/00");
    }
    let stats = sim.stats();
    assert_eq!(stats.session_requests, 4);
    assert_eq!(stats.auth_failures, 0);
    assert_eq!(stats.tokens_issued, 4);
    // One fetch of the signing key for four contexts: the cache works.
    assert_eq!(stats.total_public_key_fetches(), 1);
}

#[tokio::test]
async fn full_flow_with_http_signature_auth_and_seed_data() {
    let sim = FlexSimulator::start().await.unwrap();
    let secret =
        base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
    sim.add_merchant_shared_secret(MERCHANT, "shared-key-1", &secret);
    let auth = MerchantAuth::HttpSignature(
        HttpSignatureAuth::new(MERCHANT, "shared-key-1", &secret).unwrap(),
    );
    let client = client(&sim);
    let context = client
        .request_capture_context(&auth, SessionEndpoint::Microform, &json!({}))
        .await
        .unwrap();
    let data =
        flex_client::TokenizeData::from_json(include_bytes!("fixtures/seed000_data.json")).unwrap();
    let verified = client.tokenize_and_verify(&context, &data).await.unwrap();
    let fields = verified.claims().captured_fields();
    // Empty strings in the example (type, securityCode, email) are not captured.
    assert!(
        fields.contains(&"orderInformation.billTo.phoneNumber".to_owned()),
        "{fields:?}"
    );
    assert!(
        !fields.contains(&"orderInformation.billTo.email".to_owned()),
        "{fields:?}"
    );
    assert!(
        !fields.contains(&"paymentInformation.card.securityCode".to_owned()),
        "{fields:?}"
    );
    assert_eq!(
        verified.claims().masked_card_number(),
        Some("XXXXXXXXXXXX1111")
    );
}

#[tokio::test]
async fn merchant_authentication_failures_are_401_and_not_retried() {
    let sim = FlexSimulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _registered = merchant_file_key(&sim, &dir);
    // Another key under the registered key id: the signature does not verify.
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("other.pem");
    flex_client::key_provider::file::generate(&path, flex_client::key_provider::KeySpec::Rsa(2048))
        .unwrap();
    let wrong = flex_client::key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let client = client(&sim);
    let auth = MerchantAuth::Jwt(JwtAuth::new(MERCHANT, KEY_ID, wrong).unwrap());
    let err = client
        .request_capture_context(&auth, SessionEndpoint::Flex, &flex_fields())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlexError::Http { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("merchant id"),
        "the message says what to check: {err}"
    );
    assert!(sim.last_rejection().unwrap().contains("JWT signature"));

    let secret = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let wrong_secret = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
    sim.add_merchant_shared_secret(MERCHANT, "s1", &secret);
    let auth =
        MerchantAuth::HttpSignature(HttpSignatureAuth::new(MERCHANT, "s1", &wrong_secret).unwrap());
    let err = client
        .request_capture_context(&auth, SessionEndpoint::Flex, &flex_fields())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlexError::Http { status: 401, .. }),
        "{err:?}"
    );
    assert!(sim.last_rejection().unwrap().contains("does not verify"));
    let stats = sim.stats();
    assert_eq!(
        (
            stats.session_requests,
            stats.auth_failures,
            stats.contexts_issued
        ),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn concurrent_verifications_share_one_key_fetch() {
    let sim = FlexSimulator::start().await.unwrap();
    let contexts: Vec<String> = (0..6)
        .map(|_| sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .collect();
    let client = client(&sim);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let jwt = contexts[i % contexts.len()].clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.verify_capture_context(&jwt).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        sim.stats().public_key_fetches.get(&sim.signing_kid()),
        Some(&1)
    );
    assert_eq!(client.key_cache().len(), 1);
}

#[tokio::test]
async fn key_rotation_under_the_same_kid_refetches_once() {
    let sim = FlexSimulator::start().await.unwrap();
    let kid = sim.signing_kid();
    // No refetch cooldown: a rotation is picked up at the first failure, however soon after the last fetch.
    let client = builder(&sim)
        .key_cache(std::sync::Arc::new(KeyCache::with_refetch_cooldown(
            Duration::ZERO,
        )))
        .build()
        .unwrap();
    // With the default cooldown (30 s), a key rotated right after it was fetched is not fetched again yet.
    let default = support::client(&sim);
    assert_eq!(
        default.key_cache().refetch_cooldown(),
        KeyCache::DEFAULT_REFETCH_COOLDOWN
    );
    let before = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    client.verify_capture_context(&before).await.unwrap();
    default.verify_capture_context(&before).await.unwrap();
    assert_eq!(sim.stats().public_key_fetches[&kid], 2);
    sim.rotate_signing_key();
    let after = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let err = default.verify_capture_context(&after).await.unwrap_err();
    assert!(matches!(err, FlexError::InvalidSignature { .. }), "{err:?}");
    assert_eq!(
        sim.stats().public_key_fetches[&kid],
        2,
        "inside the cooldown"
    );
    // The cached key fails; one refetch gets the new key.
    let context = client.verify_capture_context(&after).await.unwrap();
    assert_eq!(context.kid(), kid);
    assert_eq!(sim.stats().public_key_fetches[&kid], 3);
    // Verified again: the cache now holds the new key.
    client.verify_capture_context(&after).await.unwrap();
    assert_eq!(sim.stats().public_key_fetches[&kid], 3);
    // A context signed by the retired key fails after exactly one more refetch.
    let err = client.verify_capture_context(&before).await.unwrap_err();
    assert!(matches!(err, FlexError::InvalidSignature { .. }), "{err:?}");
    assert_eq!(sim.stats().public_key_fetches[&kid], 4);
}

#[tokio::test]
async fn key_rotation_to_a_new_kid_fetches_the_new_key() {
    let sim = FlexSimulator::start().await.unwrap();
    let old = sim.signing_kid();
    let client = client(&sim);
    client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let new = sim.rotate_signing_key_with_new_kid();
    client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let fetches = sim.stats().public_key_fetches;
    assert_eq!((fetches[&old], fetches[&new]), (1, 1));
    assert_eq!(client.key_cache().len(), 2);
}

#[tokio::test]
async fn weak_signing_keys_are_refused() {
    let sim = FlexSimulator::start().await.unwrap();
    sim.misbehave(Misbehavior::WeakSigningKey);
    let jwt = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let err = client(&sim).verify_capture_context(&jwt).await.unwrap_err();
    assert!(
        matches!(&err, FlexError::WeakKey { found, .. } if found == "RSA-1024"),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_and_forged_contexts_are_rejected_before_any_card_data_is_encrypted() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);

    sim.misbehave(Misbehavior::ExpiredContext);
    let expired = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let err = client.verify_capture_context(&expired).await.unwrap_err();
    assert!(
        matches!(
            err,
            FlexError::Expired {
                what: "capture context",
                ago_secs: 100..,
                ..
            }
        ),
        "{err:?}"
    );
    sim.behave();

    sim.misbehave(Misbehavior::ForgedContext);
    let forged = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let err = client.verify_capture_context(&forged).await.unwrap_err();
    assert!(
        matches!(
            err,
            FlexError::InvalidSignature {
                what: "capture context",
                ..
            }
        ),
        "{err:?}"
    );
    sim.behave();

    // Tampered claims (flx.origin swapped) break the signature as well.
    let good = sim.issue_capture_context(SessionKind::Flex, &json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["flx"]["origin"] = json!("https://attacker.example");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert!(matches!(
        client.verify_capture_context(&tampered).await.unwrap_err(),
        FlexError::InvalidSignature { .. }
    ));

    // alg none / HS256 headers are refused outright.
    for header in [
        r#"{"kid":"3g","alg":"none"}"#,
        r#"{"kid":"3g","alg":"HS256"}"#,
        r#"{"kid":"3g","alg":"ES256"}"#,
    ] {
        let forged = format!("{}.{}.{}", b64.encode(header), parts[1], parts[2]);
        let err = client.verify_capture_context(&forged).await.unwrap_err();
        assert!(
            matches!(err, FlexError::UnsupportedAlgorithm { .. }),
            "{header}: {err:?}"
        );
    }
    let no_kid = format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"RS256"}"#),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        client.verify_capture_context(&no_kid).await.unwrap_err(),
        FlexError::MissingKid { .. }
    ));
    let bad_kid = format!(
        "{}.{}.{}",
        b64.encode(r#"{"alg":"RS256","kid":"../../x"}"#),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        client.verify_capture_context(&bad_kid).await.unwrap_err(),
        FlexError::Malformed { .. }
    ));

    // None of these ever reached the tokens endpoint.
    assert_eq!(sim.stats().token_requests, 0);
}

#[tokio::test]
async fn a_context_that_expires_after_verification_is_refused_before_encryption() {
    let sim = FlexSimulator::start_with(SimulatorConfig::default().context_ttl_secs(1))
        .await
        .unwrap();
    let client = builder(&sim).leeway(Duration::ZERO).build().unwrap();
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = client.encrypt_payload(&context, &card_data()).unwrap_err();
    assert!(matches!(err, FlexError::Expired { .. }), "{err:?}");
    let err = client.tokenize(&context, &card_data()).await.unwrap_err();
    assert!(matches!(err, FlexError::Expired { .. }), "{err:?}");
    assert_eq!(sim.stats().token_requests, 0);
}

#[tokio::test]
async fn tokens_origin_must_be_allowed() {
    let sim = FlexSimulator::start().await.unwrap();
    // The default policy: Cybersource / Visa Acceptance https hosts only; the simulator's http origin is not.
    let strict = FlexClient::new(Environment::custom(sim.base_url()).unwrap()).unwrap();
    let context = strict
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let err = strict.tokenize(&context, &card_data()).await.unwrap_err();
    assert!(matches!(err, FlexError::OriginNotAllowed { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"));
    assert_eq!(sim.stats().token_requests, 0);
    // A context verified by one client is not usable by a client of another environment.
    let other = FlexClient::new(Environment::CybersourceTest).unwrap();
    assert!(matches!(
        other.encrypt_payload(&context, &card_data()),
        Err(FlexError::Config(_))
    ));
}

#[tokio::test]
async fn tampered_jwe_is_rejected_by_the_simulator() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let payload = client.encrypt_payload(&context, &card_data()).unwrap();
    assert!(format!("{payload:?}").starts_with("EncryptedPayload("));
    let mut parts: Vec<String> = payload.as_str().split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 5);
    // Flip one character of the ciphertext.
    let ct = &mut parts[3];
    let flipped = if ct.starts_with('A') { "B" } else { "A" };
    ct.replace_range(0..1, flipped);
    let tampered = parts.join(".");
    let err = send_raw(&sim, &tampered).await;
    assert_eq!(err, 400);
    assert!(
        sim.last_rejection().unwrap().contains("does not decrypt"),
        "{:?}",
        sim.last_rejection()
    );

    // The untampered payload is accepted, and a payload for a context the simulator never issued is not.
    assert_eq!(send_raw(&sim, payload.as_str()).await, 200);
    let stranger = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let jwe = flex_client::jose_core::jwe::encrypt(
        stranger.encryption_key(),
        flex_client::jose_core::KeyManagementAlgorithm::RsaOaep,
        flex_client::jose_core::ContentEncryption::A256GCM,
        format!(r#"{{"data":{{"paymentInformation":{{"card":{{"number":"4111111111111111"}}}}}},"context":"{}","index":0}}"#, context.as_str())
            .as_bytes(),
        &flex_client::jose_core::jwe::EncryptOptions::new().kid(stranger.encryption_kid()),
    )
    .unwrap();
    assert_eq!(send_raw(&sim, &jwe).await, 400);
    assert!(
        sim.last_rejection()
            .unwrap()
            .contains("not the capture context issued with this key")
    );
    // index other than 0
    let jwe = flex_client::jose_core::jwe::encrypt(
        stranger.encryption_key(),
        flex_client::jose_core::KeyManagementAlgorithm::RsaOaep,
        flex_client::jose_core::ContentEncryption::A256GCM,
        format!(r#"{{"data":{{"paymentInformation":{{"card":{{"number":"4111111111111111"}}}}}},"context":"{}","index":1}}"#, stranger.as_str())
            .as_bytes(),
        &flex_client::jose_core::jwe::EncryptOptions::new().kid(stranger.encryption_kid()),
    )
    .unwrap();
    assert_eq!(send_raw(&sim, &jwe).await, 400);
    assert_eq!(sim.last_rejection().as_deref(), Some("index must be 0"));
    let stats = sim.stats();
    assert_eq!(
        (
            stats.token_requests,
            stats.token_rejections,
            stats.tokens_issued
        ),
        (4, 3, 1)
    );
}

async fn send_raw(sim: &FlexSimulator, jwe: &str) -> u16 {
    reqwest_post(
        &format!("{}/flex/v2/tokens", sim.base_url()),
        &json!({ "keyId": jwe }).to_string(),
    )
    .await
}

/// A bare POST (through a one-off flex-client-free HTTP call).
async fn reqwest_post(url: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim); // 2 retries
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    sim.misbehave(Misbehavior::ServerErrors(2));
    client
        .tokenize_and_verify(&context, &card_data())
        .await
        .unwrap();
    assert_eq!(sim.stats().injected_errors, 2);

    sim.misbehave(Misbehavior::ServerErrors(10));
    let impatient = builder(&sim)
        .http(
            HttpConfig::default()
                .max_retries(1)
                .retry_backoff(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let context2 = impatient
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await;
    assert!(
        matches!(context2, Err(FlexError::KeyFetch { .. })),
        "{context2:?}"
    );
    let err = impatient
        .tokenize(&context, &card_data())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FlexError::Http { status: 503, .. }),
        "{err:?}"
    );
    // 2 + (1 + 1 retry) for the key + (1 + 1 retry) for the tokens request.
    assert_eq!(sim.stats().injected_errors, 6);
    sim.behave();

    // A 4xx is not retried.
    let before = sim.stats().token_requests;
    let mut broken = client
        .encrypt_payload(&context, &card_data())
        .unwrap()
        .as_str()
        .to_owned();
    broken.insert(3, '!');
    assert_eq!(send_raw(&sim, &broken).await, 400);
    assert_eq!(sim.stats().token_requests, before + 1);
}

#[tokio::test]
async fn unreachable_server_is_a_network_error_after_retries() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client =
        FlexClient::builder(Environment::custom(&format!("http://127.0.0.1:{port}")).unwrap())
            .http(
                HttpConfig::default()
                    .max_retries(2)
                    .retry_backoff(Duration::from_millis(5)),
            )
            .build()
            .unwrap();
    let sim = FlexSimulator::start().await.unwrap();
    let err = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap_err();
    match err {
        FlexError::KeyFetch { reason, .. } => {
            assert!(reason.contains("after 3 attempt"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bad_response_digest_is_detected() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    sim.misbehave(Misbehavior::BadDigest);
    let err = client.tokenize(&context, &card_data()).await.unwrap_err();
    assert!(matches!(err, FlexError::DigestMismatch), "{err:?}");
}

#[tokio::test]
async fn transient_token_checks() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let a = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let b = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    let token_a = client.tokenize(&a, &card_data()).await.unwrap();
    assert!(
        !format!("{token_a:?}").contains("eyJ"),
        "Debug shows no token"
    );

    // A token is bound to its capture context.
    let err = client
        .verify_transient_token(&b, token_a.as_str())
        .await
        .unwrap_err();
    assert!(matches!(err, FlexError::KidMismatch { .. }), "{err:?}");

    sim.misbehave(Misbehavior::ExpiredTransientToken);
    let expired = client.tokenize(&a, &card_data()).await.unwrap();
    let err = client
        .verify_transient_token(&a, expired.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlexError::Expired {
                what: "transient token",
                ..
            }
        ),
        "{err:?}"
    );
    sim.behave();

    sim.misbehave(Misbehavior::ForgedTransientToken);
    let forged = client.tokenize(&a, &card_data()).await.unwrap();
    let err = client
        .verify_transient_token(&a, forged.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlexError::InvalidSignature {
                what: "transient token",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        sim.stats().public_key_fetches.get(a.encryption_kid()),
        None,
        "no fallback unless configured"
    );

    // With the fallback, the key from /flex/v2/public-keys/{kid} is tried too (and still refuses a forgery).
    let with_fallback = builder(&sim)
        .transient_token_key_fallback(true)
        .build()
        .unwrap();
    let err = with_fallback
        .verify_transient_token(&a, forged.as_str())
        .await
        .unwrap_err();
    assert!(matches!(err, FlexError::InvalidSignature { .. }), "{err:?}");
    assert_eq!(
        sim.stats().public_key_fetches.get(a.encryption_kid()),
        Some(&1)
    );
    sim.behave();

    // Structural garbage.
    for junk in ["", "a.b", "not a token", &format!("{}x", token_a.as_str())] {
        let err = client.verify_transient_token(&a, junk).await.unwrap_err();
        assert!(err.is_rejection(), "{junk:?}: {err:?}");
    }
}

#[tokio::test]
async fn tokens_endpoint_on_the_api_host() {
    let sim = FlexSimulator::start().await.unwrap();
    // No origin allowed at all: the API host mode does not use flx.origin.
    let client = FlexClient::builder(Environment::custom(sim.base_url()).unwrap())
        .tokens_endpoint(TokensEndpoint::ApiHost)
        .build()
        .unwrap();
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &json!({})))
        .await
        .unwrap();
    assert_eq!(
        client.tokens_url(&context).unwrap(),
        format!("{}/flex/v2/token", sim.base_url())
    );
    let verified = client
        .tokenize_and_verify(&context, &card_data())
        .await
        .unwrap();
    assert_eq!(verified.claims().card_suffix(), Some("1111"));
}

#[tokio::test]
async fn required_fields_are_enforced_by_the_simulator_and_invalid_cards_never_leave() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let jwt = sim.issue_capture_context(SessionKind::Flex, &flex_fields());
    let context = client.verify_capture_context(&jwt).await.unwrap();
    let no_expiry =
        flex_client::TokenizeData::new().card(flex_client::Card::new("4111111111111111"));
    let err = client.tokenize(&context, &no_expiry).await.unwrap_err();
    assert!(
        matches!(err, FlexError::Http { status: 400, .. }),
        "{err:?}"
    );
    assert!(sim.last_rejection().unwrap().contains("expirationMonth"));
    // A mistyped number is refused locally, before encryption.
    let before = sim.stats().token_requests;
    let typo = flex_client::TokenizeData::new()
        .card(flex_client::Card::new("4111111111111112").expiration("12", "2031"));
    let err = client.tokenize(&context, &typo).await.unwrap_err();
    assert!(matches!(err, FlexError::InvalidData(_)));
    assert!(!err.to_string().contains("4111"));
    assert_eq!(sim.stats().token_requests, before);
}

#[tokio::test]
async fn dual_branded_cards_report_detected_card_types() {
    let sim = FlexSimulator::start().await.unwrap();
    let client = client(&sim);
    let context = client
        .verify_capture_context(
            &sim.issue_capture_context(SessionKind::UnifiedPayments, &json!({})),
        )
        .await
        .unwrap();
    let data = flex_client::TokenizeData::new()
        .card(flex_client::Card::new("4035501000000008").expiration("01", "2030"));
    let verified = client.tokenize_and_verify(&context, &data).await.unwrap();
    assert_eq!(
        verified.claims().detected_card_types.as_deref(),
        Some(&["001".to_owned(), "036".to_owned()][..])
    );
    assert_eq!(verified.claims().token_type.as_deref(), Some("gda-0.10.0"));
}

/// Logs at TRACE level over a whole flow contain no card data, no token, no capture context and no secret.
#[tokio::test(flavor = "current_thread")]
async fn logs_carry_no_card_data_or_tokens() {
    let (buffer, _guard) = keybound_test_support::capture::capture();

    let sim = FlexSimulator::start().await.unwrap();
    let secret =
        base64::engine::general_purpose::STANDARD.encode(b"super-secret-shared-key-material");
    sim.add_merchant_shared_secret(MERCHANT, "s1", &secret);
    let auth =
        MerchantAuth::HttpSignature(HttpSignatureAuth::new(MERCHANT, "s1", &secret).unwrap());
    let client = client(&sim);
    let context = client
        .request_capture_context(&auth, SessionEndpoint::Flex, &flex_fields())
        .await
        .unwrap();
    let verified = client
        .tokenize_and_verify(&context, &card_data())
        .await
        .unwrap();
    sim.misbehave(Misbehavior::BadDigest);
    let _ = client.tokenize(&context, &card_data()).await;

    let logs = buffer.text();
    assert!(
        logs.contains("verified"),
        "the flow logged something: {logs}"
    );
    assert!(logs.contains(context.encryption_kid()), "kids are logged");
    // Short card values (BIN, expiry year) can occur by chance inside ports, timings and random ids, so they
    // count only as standalone words; the long ones are searched as plain substrings.
    let standalone = |needle: &str| {
        logs.match_indices(needle).any(|(i, _)| {
            let before = logs[..i].chars().next_back();
            let after = logs[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    for short in ["411111", "2031"] {
        assert!(!standalone(short), "logs contain the card value {short}");
    }
    for secret_text in [
        "4111111111111111",
        &secret,
        context.as_str(),
        verified.token().as_str(),
        &context.as_str()[..40],
        &verified.token().as_str()[..40],
    ] {
        assert!(
            !logs.contains(secret_text),
            "logs contain {secret_text:.20}…"
        );
    }
}

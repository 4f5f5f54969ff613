//! The published examples parse: the line-wrapped capture context of Cybersource's "Flex API" page (claims
//! only: its signing key is not available, so verifying it must fail cleanly), its example `data` object, and
//! the transient-token payloads of the Cybersource and Visa Acceptance Unified Checkout pages.

use flex_client::{
    CardholderAuthenticationStatus, ContentNode, Environment, FlexClient, FlexError, TokenizeData,
    TransientTokenClaims, decode_unverified, normalize_compact,
};
use flex_simulator::FlexSimulator;
use serde_json::Value;

const SEED_CONTEXT_WRAPPED: &str = include_str!("fixtures/seed000_capture_context_wrapped.txt");
const SEED_DATA: &str = include_str!("fixtures/seed000_data.json");
const SEED_TOKEN_JWT: &str = include_str!("fixtures/seed001_transient_token.jwt");
const SEED_001_PAYLOAD: &str = include_str!("fixtures/seed001_transient_token_payload.json");
const SEED_003_PAYLOAD: &str = include_str!("fixtures/seed003_transient_token_payload.json");

#[test]
fn seed_capture_context_is_line_wrapped_and_reassembles() {
    assert!(
        SEED_CONTEXT_WRAPPED.trim().contains(' '),
        "the fixture keeps the document's wrapping"
    );
    let jwt = normalize_compact(SEED_CONTEXT_WRAPPED);
    assert_eq!(jwt.split('.').count(), 3);
    assert!(!jwt.contains(char::is_whitespace));
}

#[test]
fn seed_capture_context_claims_parse() {
    let (header, claims) = decode_unverified(SEED_CONTEXT_WRAPPED).unwrap();
    assert_eq!(header["kid"], "3g");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims.flx.path, "/flex/v2/tokens");
    assert_eq!(claims.flx.origin, "https://testflex.cybersource.com");
    assert!(
        claims
            .flx
            .data
            .as_deref()
            .is_some_and(|d| d.starts_with("r2Xyod1ROR"))
    );
    assert_eq!(claims.flx.jwk.kty, "RSA");
    assert_eq!(claims.flx.jwk.use_.as_deref(), Some("enc"));
    assert_eq!(
        claims.flx.jwk.kid.as_deref(),
        Some("08iGdCvgiBXC8awzSK3Z4hRoalIJO5o1")
    );
    let key = claims.flx.jwk.to_public_key().unwrap();
    assert_eq!(key.bits(), 2048);
    assert_eq!(claims.ctx.len(), 1);
    assert_eq!(claims.ctx[0].kind.as_deref(), Some("mf-0.11.0"));
    assert_eq!(
        claims.ctx[0].data.target_origins,
        ["http://localhost:3000", "http://localhost:5000"]
    );
    assert_eq!(
        claims.ctx[0].data.mf_origin.as_deref(),
        Some("https://testflex.cybersource.com")
    );
    assert_eq!(claims.iss.as_deref(), Some("Flex API"));
    assert_eq!((claims.iat, claims.exp), (1_604_616_928, 1_604_617_828));
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.jti.as_deref(), Some("GZ1oWBm5Aly3zwp8"));
    assert!(claims.extra.is_empty() && claims.flx.extra.is_empty());
}

#[test]
fn unknown_capture_context_fields_are_kept() {
    let claims: flex_client::CaptureContextClaims = serde_json::from_value(serde_json::json!({
        "flx": {"path": "/flex/v2/tokens", "origin": "https://testflex.cybersource.com",
                "jwk": {"kty": "RSA", "e": "AQAB", "n": "AQAB", "kid": "k"}, "newFlx": 1},
        "ctx": [{"data": {"clientLibrary": "https://x/lib.js", "allowedCardNetworks": ["VISA"]}, "type": "uc-1.0.0", "v": 2}],
        "iat": 1, "exp": 2, "brandNew": {"a": true}
    }))
    .unwrap();
    assert_eq!(claims.extra["brandNew"]["a"], true);
    assert_eq!(claims.flx.extra["newFlx"], 1);
    assert_eq!(claims.ctx[0].extra["v"], 2);
    assert_eq!(claims.ctx[0].data.extra["allowedCardNetworks"][0], "VISA");
    assert_eq!(claims.client_library(), Some("https://x/lib.js"));
}

#[tokio::test]
async fn seed_capture_context_does_not_verify_without_its_key() {
    // The simulator has its own signing key (and most likely another kid than "3g"): verification must fail
    // with a clean error — key not found, or signature invalid — and never echo the token.
    let sim = FlexSimulator::start().await.unwrap();
    let client = FlexClient::new(Environment::custom(sim.base_url()).unwrap()).unwrap();
    let err = client
        .verify_capture_context(SEED_CONTEXT_WRAPPED)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlexError::KeyFetch { .. } | FlexError::InvalidSignature { .. }
        ),
        "{err:?}"
    );
    assert!(err.is_rejection() || matches!(err, FlexError::KeyFetch { .. }));
    let message = err.to_string();
    assert!(message.contains("3g"), "{message}");
    assert!(
        !message.contains("eyJ"),
        "the error echoes the token: {message}"
    );
    assert_eq!(sim.stats().public_key_fetches.get("3g"), Some(&1));
}

#[test]
fn seed_data_object_parses_and_validates() {
    let data = TokenizeData::from_json(SEED_DATA.as_bytes()).unwrap();
    data.validate().unwrap();
    let card = data
        .payment_information
        .as_ref()
        .unwrap()
        .card
        .as_ref()
        .unwrap();
    assert_eq!(card.number.expose(), "4111111111111111");
    assert_eq!(card.card_type.as_deref(), Some(""));
    let bill_to = data
        .order_information
        .as_ref()
        .unwrap()
        .bill_to
        .as_ref()
        .unwrap();
    assert_eq!(bill_to.locality.as_deref(), Some("san francisco"));
    assert!(!format!("{data:?}").contains("4111"));
}

fn payload_of(jwt: &str) -> Vec<u8> {
    let (_, claims) = jose_core_decode(jwt);
    serde_json::to_vec(&claims).unwrap()
}

fn jose_core_decode(
    jwt: &str,
) -> (
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
) {
    flex_client::jose_core::jwt::decode_unverified(jwt.trim()).unwrap()
}

#[test]
fn seed_001_transient_token_jwt_parses() {
    let (header, _) = jose_core_decode(SEED_TOKEN_JWT);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        header["kid"].as_str().unwrap().len(),
        32,
        "the kid of a transient token is a flx.jwk kid"
    );
    let claims = TransientTokenClaims::from_json(&payload_of(SEED_TOKEN_JWT)).unwrap();
    assert_eq!(claims.iss.as_deref(), Some("Flex/00"));
    assert_eq!(claims.token_type.as_deref(), Some("gda-0.10.0"));
    assert_eq!(claims.jti.as_deref().map(str::len), Some(64));
    let metadata = claims.metadata.as_ref().unwrap();
    assert_eq!(
        metadata.cardholder_authentication_status,
        Some(CardholderAuthenticationStatus::Bool(false))
    );
    assert_eq!(metadata.payment_type.as_deref(), Some("SRCMASTERCARD"));
    assert_eq!(metadata.sequence_number.as_deref(), Some("1"));
    assert_eq!(claims.cardholder_authenticated(), Some(false));
    assert_eq!(claims.masked_card_number(), Some("XXXXXXXXXXXX9908"));
    assert_eq!(claims.card_bin(), Some("518600"));
    assert_eq!(claims.card_suffix(), Some("9908"));
    assert_eq!(
        claims.content.value("paymentInformation.card.type"),
        Some("002")
    );
    assert_eq!(
        claims
            .content
            .value("processingInformation.paymentSolution"),
        Some("027")
    );
    assert!(
        claims
            .payment_credentials_reference
            .as_ref()
            .unwrap()
            .contains_key("uc_agnostic_portfolio_valid")
    );
    // An undocumented member ("_") is tolerated and kept.
    assert!(claims.extra.contains_key("_"));
    assert_eq!(claims.exp - claims.iat, 899);
}

#[test]
fn seed_transient_token_payloads_parse() {
    for (name, text, month) in [
        ("001", SEED_001_PAYLOAD, None),
        ("003", SEED_003_PAYLOAD, Some("03")),
    ] {
        let claims = TransientTokenClaims::from_json(text.as_bytes()).unwrap();
        assert_eq!(claims.exp - claims.iat, 900, "{name}");
        assert_eq!(
            claims.masked_card_number(),
            Some("XXXXXXXXXXXX1111"),
            "{name}"
        );
        assert_eq!(claims.card_bin(), Some("411111"), "{name}");
        assert_eq!(claims.card_suffix(), Some("1111"), "{name}");
        assert_eq!(
            claims
                .content
                .value("paymentInformation.card.expirationYear"),
            Some("2027"),
            "{name}"
        );
        assert_eq!(
            claims
                .content
                .value("paymentInformation.card.expirationMonth"),
            month,
            "{name}"
        );
        assert_eq!(claims.cardholder_authenticated(), Some(false), "{name}");
        let fields = claims.captured_fields();
        for f in [
            "deviceInformation.fingerprintSessionId",
            "orderInformation.billTo.company.name",
            "orderInformation.amountDetails.totalAmount",
            "orderInformation.shipTo.administrativeArea",
            "paymentInformation.card.number",
            "paymentInformation.card.securityCode",
        ] {
            assert!(
                fields.iter().any(|x| x == f),
                "{name}: {f} not in {fields:?}"
            );
        }
        assert_eq!(
            fields.first().map(String::as_str),
            Some("deviceInformation.fingerprintSessionId")
        );
        assert!(claims.content.is_captured("orderInformation.billTo.email"));
        assert!(
            !claims.content.is_captured("orderInformation.billTo"),
            "a group is not a captured field"
        );
        assert!(
            !claims
                .content
                .is_captured("orderInformation.billTo.address2")
        );
        assert_eq!(
            claims.content.get("paymentInformation.card.securityCode"),
            Some(&ContentNode::Captured)
        );
        // Round trip: serializing the typed claims gives the document's JSON back.
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&claims).unwrap(), original, "{name}");
    }
}

#[test]
fn metadata_variants_of_the_documents_parse() {
    let string_status: TransientTokenClaims = serde_json::from_str(
        r#"{"iat":1,"exp":2,"content":{},"metadata":{"cardholderAuthenticationStatus":"true"}}"#,
    )
    .unwrap();
    assert_eq!(string_status.cardholder_authenticated(), Some(true));
    let click_to_pay: TransientTokenClaims = serde_json::from_str(
        r#"{"iat":1,"exp":2,"metadata":{"cardDetails":{"suffix":"9876","prefix":"123456","expirationMonth":"MM","expirationYear":"YYYY"}},
            "detectedCardTypes":["001","036"]}"#,
    )
    .unwrap();
    assert_eq!(click_to_pay.card_bin(), Some("123456"));
    assert_eq!(click_to_pay.card_suffix(), Some("9876"));
    assert_eq!(click_to_pay.masked_card_number(), None);
    assert_eq!(
        click_to_pay.detected_card_types.as_deref(),
        Some(&["001".to_owned(), "036".to_owned()][..])
    );
    let other: TransientTokenClaims =
        serde_json::from_str(r#"{"iat":1,"exp":2,"metadata":{"cardholderAuthenticationStatus":"maybe","sequenceNumber":7}}"#)
            .unwrap();
    assert_eq!(other.cardholder_authenticated(), Some(false));
    assert_eq!(
        other.metadata.unwrap().sequence_number.as_deref(),
        Some("7")
    );
    let err = TransientTokenClaims::from_json(br#"{"iat":"soon","exp":2}"#).unwrap_err();
    assert!(matches!(err, FlexError::Malformed { .. }));
    assert!(!err.to_string().contains("soon"), "{err}");
}

//! Flow 2, Cybersource / Visa Acceptance Flex v2: the merchant's key arrives as a P12 file (as the Business
//! Center issues it) and is imported into the key store; it authenticates a capture-context request
//! (a JWT per request), flex-client verifies the context with Flex's key, encrypts a test card to the
//! context's one-time key, and verifies the transient token Flex answers; all against the in-process
//! [`FlexSimulator`], which decrypts and signs with OpenSSL, independently of keybound's JOSE code.

use flex_client::{
    Card, Environment, FlexClient, JwtAuth, MerchantAuth, SessionEndpoint, TokenizeData,
};
use flex_simulator::FlexSimulator;
use key_provider::KeyUsage;
use serde_json::{Value, json};

use crate::keys::KeyStore;
use crate::out::{Out, mask_pan};

const MERCHANT_ID: &str = "keybound_demo_merchant";
/// The merchant's P12, as Cybersource's Business Center issues it: an RSA-2048 key and its certificate, whose
/// subject `serialNumber` (`7f4d5c2a-demo-0001`) is the key id. Written once by
/// `openssl pkcs12 -export -legacy` (3DES key bag, RC2 certificate bag, SHA-1 MAC, as older P12 files are),
/// password [`P12_PASSWORD`]; a demo key, used nowhere else.
const MERCHANT_P12: &[u8] = include_bytes!("../fixtures/merchant.p12");
/// The P12's password (a demo's; a real one comes from `--password-source env:VAR|file:PATH`).
const P12_PASSWORD: &str = "keybound-demo";
/// Visa's test card.
const TEST_PAN: &str = "4111111111111111";

/// Runs the flow.
pub async fn run(out: &Out, keys: &KeyStore) -> Result<(), crate::Error> {
    out.section(
        "2. Cybersource / Visa Acceptance Flex v2: a merchant tokenizes a card (simulator)",
    );
    let sim = out
        .step(
            "start the Flex simulator (in process, OpenSSL inside)",
            FlexSimulator::start(),
        )
        .await?;
    out.field("Flex API", sim.base_url());

    let (merchant, certificate) = out
        .step(
            "import the merchant's P12 from the Business Center into the key store (keybound keys import)",
            async { keys.import("merchant-auth", MERCHANT_P12, P12_PASSWORD, KeyUsage::Sign) },
        )
        .await?;
    // The key id is the certificate subject's serialNumber, as the import reports it.
    let key_id = certificate
        .as_ref()
        .and_then(key_provider::Certificate::subject_serial_number)
        .ok_or("the merchant P12 has no certificate with a subject serialNumber (the key id)")?;
    // Cybersource knows the key from its own records; the simulator is told.
    sim.add_merchant_jwt_key(
        MERCHANT_ID,
        &key_id,
        &merchant.key.public_key().to_spki_pem(),
    );
    out.field("key", &merchant.reference);
    if let Some(certificate) = &certificate {
        out.field("certificate", certificate.subject_name());
    }
    out.field(
        "merchant",
        format!("{MERCHANT_ID} (key id {key_id}, from the certificate)"),
    );

    let auth = MerchantAuth::Jwt(JwtAuth::new(MERCHANT_ID, &key_id, merchant.key.clone())?);
    let client = FlexClient::builder(Environment::custom(sim.base_url())?)
        // The simulator's tokens origin is http://127.0.0.1:PORT; real Flex origins are built in.
        .allow_origin(sim.base_url())?
        .build()?;
    let body = json!({"fields": {"paymentInformation": {"card": {
        "number": {"required": true},
        "expirationMonth": {"required": true},
        "expirationYear": {"required": true},
        "securityCode": {"required": false}
    }}}});

    let sample = out
        .step(
            "sign a merchant authentication JWT, as flex-client does for each request",
            async {
                let bytes = serde_json::to_vec(&body)?;
                let host = sim.base_url().trim_start_matches("http://").to_owned();
                let headers = auth
                    .headers("POST", &host, SessionEndpoint::Flex.path(), &bytes)
                    .await?;
                Ok::<_, crate::Error>(headers)
            },
        )
        .await?;
    if let Some((_, value)) = sample.iter().find(|(name, _)| *name == "authorization") {
        out.jwt(
            "Authorization",
            value.strip_prefix("Bearer ").unwrap_or(value),
        );
    }

    let context = out
        .step(
            "request a capture context (POST /flex/v2/sessions) and verify it with Flex's key",
            client.request_capture_context(&auth, SessionEndpoint::Flex, &body),
        )
        .await?;
    out.jwt("capture context", context.as_str());
    out.field(
        "required fields",
        context.claims().required_fields().join(", "),
    );
    out.field("one-time key", format!("kid {}", context.encryption_kid()));

    let data = TokenizeData::new()
        .card(
            Card::new(TEST_PAN)
                .expiration("12", "2031")
                .security_code("123"),
        )
        .amount("102.21", "USD");
    out.field(
        "test card",
        format!("{} exp 12/2031, CVV •••", mask_pan(TEST_PAN)),
    );
    let token = out
        .step(
            "tokenize: encrypt the card to the one-time key (JWE RSA-OAEP + A256GCM), POST it to Flex",
            client.tokenize(&context, &data),
        )
        .await?;
    if let Some(seen) = sim.last_token_request() {
        out.field(
            "Flex received",
            format!(
                "JWE {}/{} for kid {}; fields {}",
                seen.alg_enc.0,
                seen.alg_enc.1,
                seen.kid,
                seen.fields.join(", ")
            ),
        );
    }

    let verified = out
        .step(
            "verify the transient token with the context's flx.jwk",
            client.verify_transient_token(&context, token.as_str()),
        )
        .await?;
    out.jwt("transient token", token.as_str());
    let claims = verified.claims();
    out.field("captured fields", claims.captured_fields().join(", "));
    out.field(
        "masked card",
        claims.masked_card_number().unwrap_or("(none)"),
    );
    out.field(
        "card type",
        claims
            .content
            .value("paymentInformation.card.type")
            .unwrap_or("(none)"),
    );
    let expires = verified.raw_claims().get("exp").and_then(Value::as_u64);
    if let Some(exp) = expires {
        out.field(
            "valid for",
            format!("{} s", exp.saturating_sub(jose_core::jwt::now())),
        );
    }
    Ok(())
}

//! Shared set-up for the simulator tests: a simulator, a client allowed to send tokens requests to it, a
//! merchant RSA key in a file, and the card data of Cybersource's example.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use flex_client::key_provider::{self, KeyBackend, KeySpec};
use flex_client::{Card, Environment, FlexClient, FlexClientBuilder, HttpConfig, TokenizeData};
use flex_simulator::FlexSimulator;

pub const MERCHANT: &str = "keybound_test_merchant";
pub const KEY_ID: &str = "8c3b4f1a-serial-0001";

/// A client builder for `sim`: its base URL as the environment, its origin allowed for tokens requests,
/// quick retries.
pub fn builder(sim: &FlexSimulator) -> FlexClientBuilder {
    FlexClient::builder(Environment::custom(sim.base_url()).unwrap())
        .allow_origin(sim.base_url())
        .unwrap()
        .http(
            HttpConfig::default()
                .retry_backoff(Duration::from_millis(10))
                .timeout(Duration::from_secs(20)),
        )
}

pub fn client(sim: &FlexSimulator) -> FlexClient {
    builder(sim).build().unwrap()
}

/// A 2048-bit merchant key in a file (mode 0600), registered with the simulator for JWT authentication.
pub fn merchant_file_key(sim: &FlexSimulator, dir: &tempfile::TempDir) -> Arc<dyn KeyBackend> {
    let path = dir.path().join("merchant.pem");
    key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
    let key = key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap();
    sim.add_merchant_jwt_key(MERCHANT, KEY_ID, &key.public_key().to_spki_pem());
    key
}

/// The card of Cybersource's example.
pub fn card_data() -> TokenizeData {
    TokenizeData::new()
        .card(
            Card::new("4111111111111111")
                .expiration("12", "2031")
                .security_code("123"),
        )
        .amount("102.21", "USD")
}

/// The `fields` request of a Flex API session.
pub fn flex_fields() -> serde_json::Value {
    serde_json::json!({
        "fields": {
            "paymentInformation": {
                "card": {
                    "number": {"required": true},
                    "expirationMonth": {"required": true},
                    "expirationYear": {"required": true},
                    "securityCode": {"required": false}
                }
            }
        }
    })
}

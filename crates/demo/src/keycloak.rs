//! Flow 1, Keycloak `private_key_jwt` (the Interhyp lender case): the lender's key signs RFC 7523 client
//! assertions; keycloak-client's [`TokenSource`] gets an access token with the password grant from the
//! in-process Keycloak-shaped endpoint, caches it, and a replayed assertion is refused.

use std::sync::Arc;

use key_provider::{KeySpec, KeyUsage};
use keycloak_client::{
    ASSERTION_TYPE, AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient,
    TokenEndpoint, TokenSource,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::keys::KeyStore;
use crate::out::Out;
use crate::token_endpoint::TokenEndpointServer;

const REALM: &str = "loan-partner";
const CLIENT_ID: &str = "example-bank";
const USERNAME: &str = "exampleuser@bank.example.com";

/// Runs the flow.
pub async fn run(out: &Out, keys: &KeyStore) -> Result<(), crate::Error> {
    out.section("1. Keycloak private_key_jwt: a lender gets tokens for a partner API (Interhyp)");
    let lender = out
        .step("generate the lender's signing key (RSA-2048)", async {
            keys.generate("lender-signing", KeySpec::Rsa(2048), KeyUsage::Sign)
        })
        .await?;
    let public = lender.key.public_key().clone();
    out.field("key", &lender.reference);
    out.field("public key", public.describe());
    out.field("kid (thumbprint)", jose_core::thumbprint(&public));

    let server = out
        .step(
            "start a Keycloak-shaped token endpoint and register the lender's public JWKS",
            async {
                let server = TokenEndpointServer::start(REALM).await?;
                let jwk = jose_core::Jwk::from_public_key(&public).with_thumbprint_kid()?;
                server.register_client(CLIENT_ID, &json!({ "keys": [jwk] }))?;
                Ok::<_, crate::Error>(server)
            },
        )
        .await?;
    // The technical user's password: generated, held in a SecretString, never printed.
    let password = SecretString::from(uuid::Uuid::new_v4().simple().to_string());
    server.add_user(USERNAME, password.clone());
    out.field("token endpoint", server.token_url());
    out.field(
        "client",
        format!("{CLIENT_ID} (private_key_jwt; assertions: one aud, ≤ 60 s old, single-use jti)"),
    );
    out.field("user", format!("{USERNAME} (password never shown)"));

    let endpoint = TokenEndpoint::from_token_url(server.token_url())?;
    let signer = ClientAssertionSigner::new(
        lender.key.clone(),
        &AssertionConfig::new(CLIENT_ID),
        &endpoint,
    )?;
    let client =
        Arc::new(KeycloakClient::builder(endpoint, ClientAuth::PrivateKeyJwt(signer)).build()?);

    let assertion = out
        .step(
            "sign one client assertion, as every token request does (RFC 7523)",
            client.assertion(),
        )
        .await?;
    out.jwt("client assertion", assertion.jwt.expose_secret());

    let tokens = TokenSource::new(
        client.clone(),
        FullGrant::password(USERNAME, password.clone()),
    );
    let access_token = out
        .step(
            "TokenSource::access_token(): password grant, authenticated by a fresh assertion",
            tokens.access_token(),
        )
        .await?;
    out.jwt("access token", access_token.expose_secret());

    out.step(
        "verify the access token with the realm's published keys (what the partner API does)",
        async {
            let jwks = http()?.get(server.certs_url()).send().await?.text().await?;
            let keys = jose_core::KeySet::from_text(&jwks)?;
            let verified = jose_core::jwt::verify(
                access_token.expose_secret(),
                &keys,
                &jose_core::Validation::new().issuer(server.issuer()),
            )?;
            Ok::<_, crate::Error>(verified)
        },
    )
    .await?;

    let again = out
        .step(
            "access_token() again: served from the cache, no request",
            tokens.access_token(),
        )
        .await?;
    if again.expose_secret() != access_token.expose_secret() {
        return Err("the second access_token() call did not come from the cache".into());
    }
    out.field(
        "token requests",
        format!("{} (for two access_token() calls)", server.stats().requests),
    );

    let replay = client.assertion().await?;
    let (first, second) = out
        .step(
            "send one assertion twice (client_credentials): the endpoint accepts each jti once",
            async {
                let first = send_assertion(server.token_url(), replay.jwt.expose_secret()).await?;
                let second = send_assertion(server.token_url(), replay.jwt.expose_secret()).await?;
                Ok::<_, crate::Error>((first, second))
            },
        )
        .await?;
    out.field("first use", &first);
    out.field("second use", &second);
    if !second.starts_with("400 invalid_client") {
        return Err(format!("the replayed assertion was not refused: {second}").into());
    }
    Ok(())
}

fn http() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().no_proxy().build()
}

/// Posts a client-credentials request authenticated by `assertion`; returns `STATUS outcome`.
async fn send_assertion(token_url: &str, assertion: &str) -> Result<String, crate::Error> {
    let response = http()?
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ])
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    Ok(match body.get("error").and_then(Value::as_str) {
        Some(error) => format!(
            "{status} {error}: {}",
            body["error_description"].as_str().unwrap_or_default()
        ),
        None => format!("{status}: tokens issued"),
    })
}

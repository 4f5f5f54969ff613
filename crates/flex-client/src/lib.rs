//! # flex-client
//!
//! Cybersource / Visa Acceptance Flex v2 from a merchant server, end to end:
//!
//! 1. **Request a capture context** ([`FlexClient::request_capture_context`]) from `/microform/v2/sessions`,
//!    `/flex/v2/sessions`, `/up/v1/capture-contexts` or `/uc/v1/sessions`, authenticated by a JWT signed
//!    through a [`key_provider::KeyBackend`] (so the merchant key can live in a PKCS#11 HSM) or by an HTTP
//!    Signature with a shared secret ([`MerchantAuth`]).
//! 2. **Verify it** ([`FlexClient::verify_capture_context`]) with Flex's key from
//!    `/flex/v2/public-keys/{kid}`: cached per environment + kid, fetched once for concurrent callers,
//!    fetched again on a signature failure at most once per cooldown, the good key kept until a rotated one
//!    verifies ([`KeyCache`]); RS256/384/512 only; RSA keys of at least 2048 bits; `exp`/`iat` checked.
//! 3. **Tokenize** card data ([`FlexClient::tokenize`]): [`TokenizeData`] encrypted as a compact JWE
//!    (RSA-OAEP + A256GCM) to the context's one-time key and posted to the context's tokens endpoint, if
//!    that origin is allowed ([`OriginPolicy`]); the response `Digest` is checked.
//! 4. **Verify the transient token** ([`FlexClient::verify_transient_token`]) with the context's `flx.jwk`,
//!    and read it through typed claims ([`TransientTokenClaims`]: captured fields, masked card number…).
//! 5. **Open encrypted payment credentials** ([`open_credentials`]): the Click to Pay EPC JWE named by the
//!    transient token's `paymentCredentialsReference`, decrypted through the PSP's [`key_provider::KeyBackend`]
//!    after its header and binding are checked.
//!
//! 5. **Message-level encryption** ([`mle`], opt-in per request:
//!    [`FlexClient::request_capture_context_with_mle`]): the request body sent as
//!    `{"encryptedRequest":<JWE>}` to Cybersource's MLE certificate, and the `{"encryptedResponse":…}`
//!    answer decrypted with the merchant's response key through its backend.
//!
//! Card data is held in [`Sensitive`] buffers (wiped on drop, redacted in `Debug`) and never logged; logs
//! carry kid, environment, outcome and latency only. The HTTP client is reqwest over rustls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flex_client::FlexError> {
//! use flex_client::{Card, Environment, FlexClient, MerchantAuth, JwtAuth, SessionEndpoint, TokenizeData};
//! let client = FlexClient::new(Environment::CybersourceTest)?;
//! let key = key_provider::open(&"file:/etc/keybound/merchant.pem".parse()?, &Default::default())?;
//! let auth = MerchantAuth::Jwt(JwtAuth::new("my_merchant", "1234567890", key)?);
//! let body = serde_json::json!({"fields": {"paymentInformation": {"card": {"number": {"required": true}}}}});
//! let context = client.request_capture_context(&auth, SessionEndpoint::Flex, &body).await?;
//! let data = TokenizeData::new().card(Card::new("4111111111111111").expiration("12", "2031"));
//! let token = client.tokenize_and_verify(&context, &data).await?;
//! assert_eq!(token.claims().masked_card_number(), Some("XXXXXXXXXXXX1111"));
//! # Ok(()) }
//! ```

mod capture_context;
mod client;
mod data;
mod environment;
mod epc;
mod error;
mod http;
mod key_cache;
mod merchant_auth;
pub mod mle;
mod origin;
mod sensitive;
mod transient_token;

pub use capture_context::{
    CaptureContext, CaptureContextClaims, CtxData, CtxEntry, Flx, decode_unverified,
    normalize_compact,
};
pub use client::{
    DEFAULT_LEEWAY, EncryptedPayload, FLEX_ALGORITHMS, FlexClient, FlexClientBuilder, MIN_RSA_BITS,
    SessionEndpoint, TokensEndpoint,
};
pub use data::{Address, AmountDetails, Card, OrderInformation, PaymentInformation, TokenizeData};
pub use environment::Environment;
pub use epc::{
    CredentialsClaims, CredentialsSignature, EPC_ALG, EPC_ENC, EpcHeader, OpenOptions,
    PaymentCredentials, open_credentials, open_credentials_async,
};
pub use error::{FlexError, FlexResult};
pub use http::HttpConfig;
pub use key_cache::KeyCache;
pub use merchant_auth::{
    HttpSignatureAuth, JWT_CLAIMS, JWT_LIFETIME_SECS, JwtAuth, MerchantAuth, body_digest,
};
pub use mle::{Mle, MleCertificate, ResponseMle};
pub use origin::{FLEX_DOMAINS, OriginPolicy};
pub use sensitive::Sensitive;
pub use transient_token::{
    CardDetails, CardholderAuthenticationStatus, Content, ContentNode, Metadata, TransientToken,
    TransientTokenClaims, VerifiedTransientToken,
};

pub use jose_core;
pub use key_provider;

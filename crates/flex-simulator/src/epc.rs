//! Click to Pay sessions with encrypted payment credentials (EPC), as Unified Checkout shows them in its
//! transient-token document ("EPC Token Payload"): a transient token whose `paymentCredentialsReference` maps a
//! portfolio to an id, and a compact JWE encrypted with josekit (OpenSSL) to the PSP's public key, protected
//! header `{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","kid":…,"aud":<portfolio>,"sub":…,"exp":…,
//! "jti":<that id>}`, whose plaintext is a nested RS256 JWT signed by the simulator's credentials-issuer key
//! (published by [`FlexSimulator::credentials_issuer_jwks`]).
//!
//! Cybersource's documents do not show the nested JWT's claims; the simulator's are the registered claims
//! (`iss`, `sub`, `aud`, `iat`, `exp`, `jti`) plus whatever the test passes in [`ClickToPay::credentials`].
//! Tests can bend the EPC (expired, another `aud` or `jti`, no `cty`) through [`ClickToPay`]'s fields.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::keys::{RsaKey, random_id};
use crate::{FlexSimulator, lock, now};

/// The kid of the simulator's credentials-issuer key.
pub const CREDENTIALS_ISSUER_KID: &str = "simulator-epc-issuer";
/// The `iss` of the nested credentials JWT.
pub const CREDENTIALS_ISSUER: &str = "flex-simulator/epc";

fn issuer_key() -> &'static RsaKey {
    static KEY: OnceLock<RsaKey> = OnceLock::new();
    KEY.get_or_init(|| RsaKey::generate(2048))
}

/// What a simulated Click to Pay session carries. Defaults: the seed document's values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClickToPay {
    /// The portfolio (`uc_agnostic_portfolio_valid`).
    pub portfolio: String,
    /// The header `sub` (`uc_agnostic_valid001`).
    pub sub: String,
    /// The PSP key's kid (`20230514-draft-psp-encrypt`).
    pub psp_kid: String,
    /// `metadata.paymentType` (`SRCMASTERCARD`).
    pub payment_type: String,
    /// EPC lifetime in seconds from now (negative: already expired).
    pub epc_ttl_secs: i64,
    /// The header `cty` (`Some("JWT")`; `None` leaves it out).
    pub cty: Option<String>,
    /// Header `aud` other than the portfolio (the transient token still names the portfolio).
    pub header_aud: Option<String>,
    /// Header `jti` other than the transient token's reference.
    pub header_jti: Option<String>,
    /// Claims of the nested JWT besides the registered ones (the credentials).
    pub credentials: Map<String, Value>,
}

impl Default for ClickToPay {
    fn default() -> Self {
        Self {
            portfolio: "uc_agnostic_portfolio_valid".into(),
            sub: "uc_agnostic_valid001".into(),
            psp_kid: "20230514-draft-psp-encrypt".into(),
            payment_type: "SRCMASTERCARD".into(),
            epc_ttl_secs: 600,
            cty: Some("JWT".into()),
            header_aud: None,
            header_jti: None,
            credentials: Map::new(),
        }
    }
}

/// A Click to Pay transient token and the EPC JWE it references.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClickToPaySession {
    /// The transient token (RS256, signed with the capture context's one-time key).
    pub transient_token: String,
    /// The EPC compact JWE.
    pub epc: String,
    /// The `paymentCredentialsReference` value (= the EPC `jti` unless overridden).
    pub reference: String,
}

impl FlexSimulator {
    /// Issues a Click to Pay transient token for `capture_context` (one this simulator issued) and an EPC JWE
    /// encrypted to `psp_public_key_pem` (SPKI PEM of an RSA key).
    ///
    /// # Errors
    /// A message when the capture context is not one of this simulator's or the PEM is not an RSA key.
    pub fn click_to_pay(
        &self,
        capture_context: &str,
        psp_public_key_pem: &str,
        session: &ClickToPay,
    ) -> Result<ClickToPaySession, String> {
        let claims: Value = capture_context
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("the capture context is not a JWT")?;
        let kid = claims["flx"]["jwk"]["kid"]
            .as_str()
            .ok_or("the capture context has no flx.jwk.kid")?
            .to_owned();
        let contexts = lock(&self.inner.contexts);
        let issued = contexts
            .get(&kid)
            .ok_or("the capture context was not issued by this simulator")?;
        let reference = random_id(21, false);
        let t = now();
        let seq = self
            .inner
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let token_claims = json!({
            "metadata": {
                "sequenceNumber": seq.to_string(),
                "cardholderAuthenticationStatus": false,
                "paymentType": session.payment_type,
            },
            "iss": "Flex/00",
            "paymentCredentialsReference": { session.portfolio.clone(): reference },
            "exp": t + self.inner.config.token_ttl_secs,
            "type": issued.kind.token_type(),
            "iat": t,
            "jti": random_id(64, true),
            "content": {
                "paymentInformation": { "card": { "type": { "value": "002" } } },
            },
        });
        let transient_token = issued.key.sign_rs256(&kid, &token_claims);
        drop(contexts);

        let exp = t.saturating_add_signed(session.epc_ttl_secs);
        let mut inner_claims = Map::new();
        inner_claims.insert("iss".into(), json!(CREDENTIALS_ISSUER));
        inner_claims.insert("sub".into(), json!(session.sub));
        inner_claims.insert("aud".into(), json!(session.portfolio));
        inner_claims.insert("iat".into(), json!(t));
        inner_claims.insert("exp".into(), json!(exp));
        inner_claims.insert("jti".into(), json!(random_id(21, false)));
        inner_claims.extend(session.credentials.clone());
        let nested = issuer_key().sign_rs256(CREDENTIALS_ISSUER_KID, &Value::Object(inner_claims));

        let mut header = josekit::jwe::JweHeader::new();
        header.set_content_encryption("A256GCM");
        header.set_key_id(session.psp_kid.clone());
        if let Some(cty) = &session.cty {
            header.set_content_type(cty.clone());
        }
        let aud = session
            .header_aud
            .clone()
            .unwrap_or(session.portfolio.clone());
        let jti = session.header_jti.clone().unwrap_or(reference.clone());
        for (name, value) in [
            ("aud", json!(aud)),
            ("sub", json!(session.sub)),
            ("exp", json!(exp)),
            ("jti", json!(jti)),
        ] {
            header
                .set_claim(name, Some(value))
                .map_err(|e| format!("EPC header: {e}"))?;
        }
        let encrypter = josekit::jwe::RSA_OAEP_256
            .encrypter_from_pem(psp_public_key_pem)
            .map_err(|e| format!("the PSP key is not an RSA public key: {e}"))?;
        let epc = josekit::jwe::serialize_compact(nested.as_bytes(), &header, &encrypter)
            .map_err(|e| format!("EPC encryption: {e}"))?;
        Ok(ClickToPaySession {
            transient_token,
            epc,
            reference,
        })
    }

    /// The credentials issuer's public key as a JWKS (`{"keys":[…]}`, kid [`CREDENTIALS_ISSUER_KID`]).
    #[must_use]
    pub fn credentials_issuer_jwks(&self) -> Value {
        let mut jwk = issuer_key().public_jwk(CREDENTIALS_ISSUER_KID);
        jwk["use"] = json!("sig");
        json!({ "keys": [jwk] })
    }
}

//! Encrypted payment credentials (EPC): JWEs made by the simulator with josekit (OpenSSL), in the header shape
//! of the seed document, opened through a file key; every rejection (expired, wrong `aud`, `jti` not bound to
//! the transient token, `cty` missing, tampered, another payment's token) happens without credentials in the
//! error or the logs; the nested JWT is verified with the issuer's JWKS or marked unverified.

use std::sync::Arc;

use flex_client::key_provider::{self, KeyBackend, KeySpec};
use flex_client::{
    CredentialsSignature, Environment, FlexClient, FlexError, OpenOptions, VerifiedTransientToken,
    jose_core::{JoseError, KeySet},
    open_credentials,
};
use flex_simulator::{ClickToPay, FlexSimulator, SessionKind};
use keybound_test_support::capture::capture;
use serde_json::{Map, Value, json};

const PAN: &str = "5186001700009908";
const CRYPTOGRAM: &str = "AgAAAAAABk4DWZ4C28yUQAAAAAA=";

fn credentials() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "paymentInformation": {"tokenizedCard": {
            "number": PAN, "expirationMonth": "03", "expirationYear": "2027", "cryptogram": CRYPTOGRAM,
            "type": "002"
        }},
        "futureMember": {"kept": true}
    }) else {
        unreachable!()
    };
    map
}

struct Setup {
    sim: FlexSimulator,
    client: FlexClient,
    context: String,
    psp: Arc<dyn KeyBackend>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let sim = FlexSimulator::start().await.unwrap();
    let client = FlexClient::new(Environment::custom(sim.base_url()).unwrap()).unwrap();
    let context = sim.issue_capture_context(SessionKind::UnifiedCheckout, &json!({}));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psp.pem");
    key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
    let psp: Arc<dyn KeyBackend> = key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap();
    Setup {
        sim,
        client,
        context,
        psp,
        _dir: dir,
    }
}

impl Setup {
    async fn session(&self, c2p: &ClickToPay) -> (VerifiedTransientToken, String) {
        let s = self
            .sim
            .click_to_pay(&self.context, &self.psp.public_key().to_spki_pem(), c2p)
            .unwrap();
        let ctx = self
            .client
            .verify_capture_context(&self.context)
            .await
            .unwrap();
        let token = self
            .client
            .verify_transient_token(&ctx, &s.transient_token)
            .await
            .unwrap();
        (token, s.epc)
    }

    fn jwks(&self) -> KeySet {
        KeySet::from_text(&self.sim.credentials_issuer_jwks().to_string()).unwrap()
    }
}

fn c2p() -> ClickToPay {
    let mut c = ClickToPay::default();
    c.credentials = credentials();
    c
}

fn no_secrets(text: &str) {
    assert!(
        !text.contains(PAN) && !text.contains(CRYPTOGRAM),
        "credentials leaked: {text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn simulator_epc_opens_through_the_file_key_and_verifies_with_the_jwks() {
    let s = setup().await;
    let (token, epc) = s.session(&c2p()).await;
    // The seed's header shape.
    let header: Value = serde_json::from_slice(
        &flex_client::jose_core::b64::decode("header", epc.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RSA-OAEP-256");
    assert_eq!(header["enc"], "A256GCM");
    assert_eq!(header["cty"], "JWT");
    assert_eq!(header["kid"], "20230514-draft-psp-encrypt");
    for member in ["aud", "sub", "exp", "jti"] {
        assert!(header.get(member).is_some(), "{member} in {header}");
    }
    let (logs, _guard) = capture();
    let opened = open_credentials(
        &epc,
        s.psp.as_ref(),
        &token,
        &OpenOptions::new().issuer_keys(s.jwks()),
    )
    .unwrap();
    assert!(matches!(
        opened.signature(),
        CredentialsSignature::Verified { kid: Some(k), .. } if k == flex_simulator::CREDENTIALS_ISSUER_KID
    ));
    assert_eq!(opened.header().aud, "uc_agnostic_portfolio_valid");
    assert_eq!(opened.header().cty, "JWT");
    assert_eq!(
        token
            .claims()
            .payment_credentials_reference
            .as_ref()
            .unwrap()["uc_agnostic_portfolio_valid"],
        opened.header().jti.as_str()
    );
    let claims = opened.claims();
    assert_eq!(
        claims.iss.as_deref(),
        Some(flex_simulator::CREDENTIALS_ISSUER)
    );
    assert_eq!(
        claims.extra["paymentInformation"]["tokenizedCard"]["number"],
        PAN
    );
    assert_eq!(claims.extra["futureMember"], json!({"kept": true}));
    no_secrets(&format!("{opened:?}"));
    no_secrets(&logs.text());
    assert!(logs.text().contains("EPC token opened"), "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn without_issuer_keys_the_nested_jwt_is_marked_unverified_and_a_wrong_jwks_is_refused() {
    let s = setup().await;
    let (token, epc) = s.session(&c2p()).await;
    let opened = open_credentials(&epc, s.psp.as_ref(), &token, &OpenOptions::new()).unwrap();
    assert_eq!(opened.signature(), &CredentialsSignature::Unverified);
    assert_eq!(
        opened.raw_claims()["paymentInformation"]["tokenizedCard"]["cryptogram"],
        CRYPTOGRAM
    );
    // The PSP's own key is no issuer key: the nested signature does not verify.
    let wrong = KeySet::from_text(&s.psp.public_key().to_spki_pem()).unwrap();
    let err = open_credentials(
        &epc,
        s.psp.as_ref(),
        &token,
        &OpenOptions::new().issuer_keys(wrong),
    )
    .unwrap_err();
    assert!(err.is_rejection(), "{err:?}");
    no_secrets(&err.to_string());
}

async fn rejected(s: &Setup, c2p: &ClickToPay, options: &OpenOptions) -> FlexError {
    let (token, epc) = s.session(c2p).await;
    let (logs, _guard) = capture();
    let err = open_credentials(&epc, s.psp.as_ref(), &token, options).unwrap_err();
    assert!(err.is_rejection(), "{err:?}");
    no_secrets(&err.to_string());
    no_secrets(&logs.text());
    err
}

#[tokio::test(flavor = "current_thread")]
async fn header_and_binding_are_checked_before_decryption() {
    let s = setup().await;
    let none = OpenOptions::new();

    let mut expired = c2p();
    expired.epc_ttl_secs = -120;
    let err = rejected(&s, &expired, &none).await;
    assert!(matches!(err, FlexError::Expired { .. }), "{err:?}");

    let mut other_aud = c2p();
    other_aud.header_aud = Some("another_portfolio".into());
    let err = rejected(&s, &other_aud, &none).await;
    assert!(
        matches!(err, FlexError::Credentials(ref m) if m.contains("aud")),
        "{err:?}"
    );

    // The expected portfolio is named and the token's one differs.
    let err = rejected(
        &s,
        &c2p(),
        &OpenOptions::new().portfolio("merchant_portfolio"),
    )
    .await;
    assert!(matches!(err, FlexError::Credentials(_)), "{err:?}");

    let mut unbound = c2p();
    unbound.header_jti = Some("NotTheReference00000".into());
    let err = rejected(&s, &unbound, &none).await;
    assert!(
        matches!(err, FlexError::Credentials(ref m) if m.contains("jti")),
        "{err:?}"
    );

    let mut no_cty = c2p();
    no_cty.cty = None;
    let err = rejected(&s, &no_cty, &none).await;
    assert!(
        matches!(err, FlexError::Malformed { ref reason, .. } if reason.contains("cty")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tampered_or_foreign_epc_is_refused() {
    let s = setup().await;
    let (token, epc) = s.session(&c2p()).await;
    // Another bit of ciphertext: the tag does not match.
    let mut parts: Vec<String> = epc.split('.').map(str::to_owned).collect();
    let ct = &mut parts[3];
    let flipped = if ct.starts_with('A') { "B" } else { "A" };
    ct.replace_range(0..1, flipped);
    let err = open_credentials(
        &parts.join("."),
        s.psp.as_ref(),
        &token,
        &OpenOptions::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, FlexError::Jose(JoseError::DecryptionFailed)),
        "{err:?}"
    );
    // The EPC of another payment, with this payment's transient token: not bound.
    let (_, other_epc) = s.session(&c2p()).await;
    let err =
        open_credentials(&other_epc, s.psp.as_ref(), &token, &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, FlexError::Credentials(_)), "{err:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_key_is_not_used_before_the_header_and_binding_pass() {
    // An EC key cannot unwrap an RSA-OAEP-256 key: whenever the key is used, the answer is `NoKey`. The
    // header and binding rejections come first, so they are what a bad EPC token gets.
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ec.pem");
    key_provider::file::generate(&path, KeySpec::Ec(key_provider::EcCurve::P256)).unwrap();
    let ec = key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let (token, epc) = s.session(&c2p()).await;
    let err = open_credentials(&epc, ec.as_ref(), &token, &OpenOptions::new()).unwrap_err();
    assert!(
        matches!(err, FlexError::Jose(JoseError::NoKey { .. })),
        "{err:?}"
    );
    let mut expired = c2p();
    expired.epc_ttl_secs = -120;
    let (token, epc) = s.session(&expired).await;
    let err = open_credentials(&epc, ec.as_ref(), &token, &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, FlexError::Expired { .. }), "{err:?}");
    let mut unbound = c2p();
    unbound.header_jti = Some("NotTheReference00000".into());
    let (token, epc) = s.session(&unbound).await;
    let err = open_credentials(&epc, ec.as_ref(), &token, &OpenOptions::new()).unwrap_err();
    assert!(matches!(err, FlexError::Credentials(_)), "{err:?}");
}

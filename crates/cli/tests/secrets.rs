//! No secret in any log line or error message, across every flow.
//!
//! `every_flow_in_process`: one run of every library flow — file keys (JWS, JWT, JWE), the Keycloak grants
//! against the real OpenID Connect test server, Flex against the simulator (both merchant authentications,
//! tokenization of a card with its security code, transient-token verification), Thales push provisioning,
//! and a PKCS#11 key in SoftHSM when `cargo xtask softhsm-test` set it up — with every `tracing` event
//! captured at TRACE (keybound's and its dependencies'), the `Debug` text of the values that hold secrets
//! (token responses, clients, token sources, merchant authentications, capture contexts, transient tokens and
//! their claims, authorization codes, card data, HSM keys), and the `Display` and `Debug` text of every error
//! the flows provoke (wrong password, wrong client secret, wrong PIN, forged and expired tokens, tampered JWEs,
//! invalid cards, loose key-file permissions…). None of them may contain a PIN, a password, a client secret,
//! a window of a private key (PEM base64, DER hex), an access/refresh/ID token, a capture context, a
//! transient token, an authorization code, a PAN, a security code, a card holder's name, or a JWE plaintext;
//! nor anything that looks like a JWT (`eyJ` followed by 20 base64url characters).
//!
//! `every_flow_through_the_cli`: the same for the `keybound` binary at `--log trace`: its stderr (logs and
//! error lines) never shows a secret, and its stdout only the tokens a command is asked to print.

// The flows generate and use file keys.
#![cfg(feature = "file")]

use std::fmt::{Debug, Display, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flex_client::{
    Card, Environment, FlexClient, HttpConfig, HttpSignatureAuth, JwtAuth, MerchantAuth,
    SessionEndpoint, TokenizeData,
};
use flex_simulator::{FlexSimulator, Misbehavior, SessionKind};
use jose_core::jwe::DecryptOptions;
use jose_core::{
    ContentEncryption, JwsAlgorithm, JwsHeader, KeyManagementAlgorithm, KeySet, Validation,
    VerifyingKey,
};
use key_provider::{EcCurve, KeyBackend, KeySpec, OpenOptions};
use keybound_test_support::capture::capture_global;
use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
use keycloak_client::secrecy::{ExposeSecret as _, SecretString};
use keycloak_client::{
    AssertionConfig, ClientAssertionSigner, ClientAuth, FullGrant, KeycloakClient, RetryPolicy,
    TokenEndpoint, TokenSource,
};
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, CardData, EnrollmentEncryptor,
    Subject,
};

const PASSWORD: &str = "Pa55-w0rd-of-the-technical-user!";
const CLIENT_SECRET: &str = "client-secret-3b9f7e1d5a";
const FLEX_SECRET_B64: &str = "ZmxleC1zaGFyZWQtc2VjcmV0LTc3MjEtYWJjZGVmZ2hpams=";
const PAN: &str = "4111111111111111";
const BAD_PAN: &str = "4111111111111112";
/// A security code with a leading zero: no number a log prints (ports, latencies) can look like it.
const CVV: &str = "0457";
const THALES_PAN: &str = "5555555555554444";
const HOLDER: &str = "JANE Q SECRETHOLDER";
const PLAINTEXT: &str = "jwe-plaintext-marker-9f3a7c";
/// Click to Pay credentials inside an EPC token.
const EPC_PAN: &str = "5186001700009908";
const EPC_CRYPTOGRAM: &str = "AgAAAAAABk4DWZ4C28yUQAAAAAA=";
const WRONG_PIN: &str = "wrong-pin-31415926";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The secrets of a run, each with what it is.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 4, "{what}: too short to search for");
        self.0.push((what.to_owned(), value.to_owned()));
    }

    /// A JWT-like token: the whole of it and its signing input (header.payload).
    fn token(&mut self, what: &str, token: &str) {
        self.add(what, token);
        if let Some((input, _)) = token.rsplit_once('.') {
            self.add(&format!("{what} (signing input)"), input);
        }
    }

    /// A private key: 24-character windows of its PEM base64 body, and 16-byte windows of its DER in hex.
    fn private_key(&mut self, what: &str, pem_text: &str) {
        let body: String = pem_text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for (i, start) in (0..body.len().saturating_sub(24)).step_by(20).enumerate() {
            self.add(
                &format!("{what} (PEM window {i})"),
                &body[start..start + 24],
            );
        }
        let der = pem_der(pem_text);
        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
        for (i, start) in (0..hex.len().saturating_sub(32)).step_by(40).enumerate() {
            self.add(
                &format!("{what} (DER hex window {i})"),
                &hex[start..start + 32],
            );
        }
        // A Debug dump of the key bytes, from the middle of the key (the secret part, not the common header).
        let debug_bytes = format!("{:?}", &der[der.len() / 2..der.len() / 2 + 12]);
        self.add(
            &format!("{what} (DER as a byte list)"),
            &debug_bytes[1..debug_bytes.len() - 1],
        );
    }

    /// Panics if `text` (named `what`) shows any secret, or anything JWT-shaped.
    fn assert_absent(&self, what: &str, text: &str) {
        for (name, value) in &self.0 {
            let found = if value == CVV {
                has_word(text, value)
            } else {
                text.contains(value.as_str())
            };
            assert!(!found, "{what} shows {name}");
        }
        if let Some(i) = jwt_like(text) {
            let end = (i + 60).min(text.len());
            panic!("{what} shows something JWT-shaped: {}", &text[i..end]);
        }
    }
}

/// The DER bytes of a PEM text.
fn pem_der(pem_text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Whether `needle` occurs in `text` with no letter or digit on either side.
fn has_word(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The position of `eyJ` followed by at least 20 base64url characters, if any.
fn jwt_like(text: &str) -> Option<usize> {
    text.match_indices("eyJ").map(|(i, _)| i).find(|&i| {
        text[i + 3..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count()
            >= 20
    })
}

/// Error texts collected along the way, and the `Debug` text of values that hold secrets.
#[derive(Default)]
struct Errors(String, Vec<(String, String)>);

impl Errors {
    /// Keeps the `Debug` text of `value` (a token response, a client, card data…), to be searched for
    /// every secret at the end, when all of them are known.
    fn debug(&mut self, what: &str, value: &impl Debug) {
        let text = format!("{value:?}");
        assert!(text.len() > 8, "{what}: Debug says nothing: {text:?}");
        self.1.push((what.to_owned(), text));
    }

    fn push(&mut self, e: &(impl Display + Debug)) {
        let _ = writeln!(self.0, "{e}\n{e:?}");
    }

    fn expect_err<T, E: Display + Debug>(&mut self, what: &str, r: Result<T, E>) {
        match r {
            Ok(_) => panic!("{what}: expected an error"),
            Err(e) => self.push(&e),
        }
    }
}

fn file_key(dir: &Path, name: &str, spec: KeySpec, secrets: &mut Secrets) -> Arc<dyn KeyBackend> {
    let path = dir.join(name);
    key_provider::file::generate(&path, spec).unwrap();
    secrets.private_key(name, &std::fs::read_to_string(&path).unwrap());
    key_provider::open(
        &format!("file:{}", path.display()).parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap()
}

fn jose_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    let rsa = file_key(dir, "jose-rsa.pem", KeySpec::Rsa(2048), secrets);
    let ec = file_key(dir, "jose-ec.pem", KeySpec::Ec(EcCurve::P256), secrets);
    let claims = serde_json::json!({"sub": "secrets-test", "exp": jose_core::jwt::now() + 60});
    for (key, alg) in [(&rsa, JwsAlgorithm::PS256), (&ec, JwsAlgorithm::ES256)] {
        let jwt =
            jose_core::jwt::sign(key.as_ref(), &JwsHeader::new(alg).typ("JWT"), &claims).unwrap();
        secrets.token("a signed JWT", &jwt);
        let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
        jose_core::jwt::verify(&jwt, &keys, &Validation::new()).unwrap();
        let other = KeySet::single(VerifyingKey::new(
            if alg == JwsAlgorithm::PS256 {
                ec.public_key()
            } else {
                rsa.public_key()
            }
            .clone(),
        ));
        errors.expect_err(
            "wrong key",
            jose_core::jwt::verify(&jwt, &other, &Validation::new()),
        );
        let expired = jose_core::jwt::sign(
            key.as_ref(),
            &JwsHeader::new(alg),
            &serde_json::json!({"exp": 1_000_000_000}),
        )
        .unwrap();
        secrets.token("an expired JWT", &expired);
        errors.expect_err(
            "expired",
            jose_core::jwt::verify(&expired, &keys, &Validation::new()),
        );
    }
    let jwe = jose_core::jwe::encrypt(
        rsa.public_key(),
        KeyManagementAlgorithm::RsaOaep,
        ContentEncryption::A256GCM,
        PLAINTEXT.as_bytes(),
        &Default::default(),
    )
    .unwrap();
    secrets.token("a JWE", &jwe);
    let plain = jose_core::jwe::decrypt(&jwe, rsa.as_ref(), &DecryptOptions::default()).unwrap();
    assert_eq!(plain.plaintext.as_slice(), PLAINTEXT.as_bytes());
    let mut tampered = jwe.clone();
    tampered.pop();
    tampered.push(if jwe.ends_with('A') { 'B' } else { 'A' });
    errors.expect_err(
        "tampered JWE",
        jose_core::jwe::decrypt(&tampered, rsa.as_ref(), &DecryptOptions::default()),
    );
    errors.expect_err(
        "JWE for an EC key",
        jose_core::jwe::decrypt(&jwe, ec.as_ref(), &DecryptOptions::default()),
    );
    // A key file others can read, and one that is not there.
    let loose = dir.join("loose.pem");
    std::fs::copy(dir.join("jose-rsa.pem"), &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    errors.expect_err(
        "loose key file",
        key_provider::open(
            &format!("file:{}", loose.display()).parse().unwrap(),
            &OpenOptions::new(),
        ),
    );
    errors.expect_err(
        "missing key file",
        key_provider::open(
            &format!("file:{}", dir.join("none.pem").display())
                .parse()
                .unwrap(),
            &OpenOptions::new(),
        ),
    );
    errors.expect_err(
        "pin-value refused",
        key_provider::open(
            &format!("pkcs11:object=k?pin-value={WRONG_PIN}")
                .parse()
                .unwrap(),
            &OpenOptions::new(),
        ),
    );
    secrets.add("a PIN in a key reference", WRONG_PIN);
}

async fn keycloak_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    let key = file_key(dir, "lender.pem", KeySpec::Rsa(2048), secrets);
    let config = ServerConfig::default().realm(
        "loan-partner",
        Realm::default()
            .key_client(
                "example-bank",
                &jwks_of(key.public_key()),
                &["password", "refresh_token"],
            )
            .secret_client(
                "example-partner",
                CLIENT_SECRET,
                &["password", "refresh_token"],
            )
            .user("user@bank.example.com", PASSWORD),
    );
    let Some(server) = OidcServer::start("secrets: keycloak flows", &config) else {
        return;
    };
    let endpoint = TokenEndpoint::from_token_url(&server.token_url("loan-partner")).unwrap();
    let retry = RetryPolicy::new(2, Duration::from_millis(10), Duration::from_millis(20));
    let signer =
        ClientAssertionSigner::new(key, &AssertionConfig::new("example-bank"), &endpoint).unwrap();
    let lender = Arc::new(
        KeycloakClient::builder(endpoint.clone(), ClientAuth::PrivateKeyJwt(signer))
            .retry(retry.clone())
            .build()
            .unwrap(),
    );
    let password = SecretString::from(PASSWORD);
    let assertion = lender.assertion().await.unwrap();
    secrets.token("a client assertion", assertion.jwt.expose_secret());
    let r = lender
        .password_grant("user@bank.example.com", &password, Some("openid"))
        .await
        .unwrap();
    secrets.token("an access token", r.access_token.expose_secret());
    let refresh = r.refresh_token.clone().unwrap();
    secrets.add("a refresh token", refresh.expose_secret());
    secrets.token("an ID token", r.id_token.as_ref().unwrap().expose_secret());
    errors.debug("a token response", &r);
    let r2 = lender.refresh(&refresh, None).await.unwrap();
    secrets.token("a refreshed access token", r2.access_token.expose_secret());
    secrets.add(
        "a rotated refresh token",
        r2.refresh_token.as_ref().unwrap().expose_secret(),
    );
    errors.expect_err(
        "wrong password",
        lender
            .password_grant(
                "user@bank.example.com",
                &SecretString::from("not-the-Pa55w0rd"),
                None,
            )
            .await,
    );
    secrets.add("a wrong password", "not-the-Pa55w0rd");
    errors.expect_err(
        "revoked refresh token",
        lender
            .refresh(&SecretString::from("made-up-refresh-token-123"), None)
            .await,
    );
    for auth in [
        ClientAuth::ClientSecretPost {
            client_id: "example-partner".into(),
            secret: SecretString::from(CLIENT_SECRET),
        },
        ClientAuth::ClientSecretBasic {
            client_id: "example-partner".into(),
            secret: SecretString::from(CLIENT_SECRET),
        },
    ] {
        let client = KeycloakClient::builder(endpoint.clone(), auth)
            .retry(retry.clone())
            .build()
            .unwrap();
        errors.debug("a client with a client secret", &client);
        let r = client
            .password_grant("user@bank.example.com", &password, None)
            .await
            .unwrap();
        secrets.token("a partner access token", r.access_token.expose_secret());
        secrets.add(
            "a partner refresh token",
            r.refresh_token.as_ref().unwrap().expose_secret(),
        );
    }
    let wrong = KeycloakClient::builder(
        endpoint.clone(),
        ClientAuth::ClientSecretPost {
            client_id: "example-partner".into(),
            secret: SecretString::from("wrong-client-secret-8c1"),
        },
    )
    .retry(retry)
    .build()
    .unwrap();
    secrets.add("a wrong client secret", "wrong-client-secret-8c1");
    errors.expect_err(
        "wrong client secret",
        wrong
            .password_grant("user@bank.example.com", &password, None)
            .await,
    );
    let source = TokenSource::new(
        lender,
        FullGrant::password("user@bank.example.com", password),
    );
    let t = source.access_token().await.unwrap();
    secrets.token("a cached access token", t.expose_secret());
    errors.debug("a token source holding a token", &source);
}

async fn flex_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    let sim = FlexSimulator::start().await.unwrap();
    let merchant = file_key(dir, "merchant.pem", KeySpec::Rsa(2048), secrets);
    sim.add_merchant_jwt_key("merchant", "serial-1", &merchant.public_key().to_spki_pem());
    sim.add_merchant_shared_secret("merchant", "secret-1", FLEX_SECRET_B64);
    secrets.add("the Flex shared secret", FLEX_SECRET_B64);
    let client = FlexClient::builder(Environment::custom(sim.base_url()).unwrap())
        .allow_origin(sim.base_url())
        .unwrap()
        .http(HttpConfig::default().retry_backoff(Duration::from_millis(10)))
        .build()
        .unwrap();
    let fields = serde_json::json!({"fields": {"paymentInformation": {"card": {
        "number": {"required": true}, "securityCode": {"required": true}}}}});
    let card =
        || TokenizeData::new().card(Card::new(PAN).expiration("12", "2031").security_code(CVV));
    for auth in [
        MerchantAuth::Jwt(JwtAuth::new("merchant", "serial-1", merchant.clone()).unwrap()),
        MerchantAuth::HttpSignature(
            HttpSignatureAuth::new("merchant", "secret-1", FLEX_SECRET_B64).unwrap(),
        ),
    ] {
        errors.debug("a merchant authentication", &auth);
        let context = client
            .request_capture_context(&auth, SessionEndpoint::Flex, &fields)
            .await
            .unwrap();
        secrets.token("a capture context", context.as_str());
        let token = client.tokenize_and_verify(&context, &card()).await.unwrap();
        secrets.token("a transient token", token.token().as_str());
        errors.debug("a verified transient token", &token);
        errors.debug("transient token claims", token.claims());
        errors.debug("a capture context", &context);
        errors.expect_err(
            "invalid card",
            client
                .tokenize(
                    &context,
                    &TokenizeData::new().card(Card::new(BAD_PAN).security_code(CVV)),
                )
                .await,
        );
    }
    secrets.add("an invalid PAN", BAD_PAN);
    let auth = MerchantAuth::HttpSignature(
        HttpSignatureAuth::new("merchant", "wrong-key-id", FLEX_SECRET_B64).unwrap(),
    );
    errors.expect_err(
        "wrong merchant key id",
        client
            .request_capture_context(&auth, SessionEndpoint::Flex, &fields)
            .await,
    );
    for fault in [Misbehavior::ForgedContext, Misbehavior::ExpiredContext] {
        sim.misbehave(fault);
        let forged = sim.issue_capture_context(SessionKind::Flex, &fields);
        secrets.token("a bad capture context", &forged);
        errors.expect_err(
            "bad capture context",
            client.verify_capture_context(&forged).await,
        );
        sim.behave();
    }
    let context = client
        .verify_capture_context(&sim.issue_capture_context(SessionKind::Flex, &fields))
        .await
        .unwrap();
    for fault in [
        Misbehavior::ForgedTransientToken,
        Misbehavior::ExpiredTransientToken,
    ] {
        sim.misbehave(fault);
        let token = client.tokenize(&context, &card()).await.unwrap();
        secrets.token("a bad transient token", token.as_str());
        errors.expect_err(
            "bad transient token",
            client
                .verify_transient_token(&context, token.as_str())
                .await,
        );
        sim.behave();
    }
}

/// Click to Pay credentials (EPC) opened through the library: the opened value's Debug, the logs and the
/// errors of rejected copies never show the credentials.
async fn epc_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    let sim = FlexSimulator::start().await.unwrap();
    let psp = file_key(dir, "psp.pem", KeySpec::Rsa(2048), secrets);
    let client = FlexClient::new(Environment::custom(sim.base_url()).unwrap()).unwrap();
    let context_text =
        sim.issue_capture_context(SessionKind::UnifiedCheckout, &serde_json::json!({}));
    secrets.token("a Unified Checkout capture context", &context_text);
    let context = client.verify_capture_context(&context_text).await.unwrap();
    let mut c2p = flex_simulator::ClickToPay::default();
    c2p.credentials.insert(
        "paymentInformation".into(),
        serde_json::json!({"tokenizedCard": {"number": EPC_PAN, "cryptogram": EPC_CRYPTOGRAM}}),
    );
    let psp_pem = psp.public_key().to_spki_pem();
    let jwks = KeySet::from_text(&sim.credentials_issuer_jwks().to_string()).unwrap();
    let good = sim.click_to_pay(&context_text, &psp_pem, &c2p).unwrap();
    secrets.token("a Click to Pay transient token", &good.transient_token);
    secrets.add("an EPC token", &good.epc);
    let token = client
        .verify_transient_token(&context, &good.transient_token)
        .await
        .unwrap();
    let options = flex_client::OpenOptions::new().issuer_keys(jwks);
    let opened = flex_client::open_credentials_async(&good.epc, psp.as_ref(), &token, &options)
        .await
        .unwrap();
    assert_eq!(
        opened.raw_claims()["paymentInformation"]["tokenizedCard"]["number"],
        EPC_PAN
    );
    secrets.token("the nested credentials JWT", opened.jwt().expose());
    errors.debug("opened payment credentials", &opened);
    errors.debug("credentials claims", opened.claims());
    let mut tampered: Vec<String> = good.epc.split('.').map(str::to_owned).collect();
    let first = if tampered[3].starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered[3].replace_range(0..1, first);
    errors.expect_err(
        "tampered EPC",
        flex_client::open_credentials_async(&tampered.join("."), psp.as_ref(), &token, &options)
            .await,
    );
    for bend in [
        (|c: &mut flex_simulator::ClickToPay| c.epc_ttl_secs = -100) as fn(&mut _),
        |c| c.header_jti = Some("NotTheReference00000".into()),
        |c| c.header_aud = Some("another_portfolio".into()),
        |c| c.cty = None,
    ] {
        let mut bent = c2p.clone();
        bend(&mut bent);
        let session = sim.click_to_pay(&context_text, &psp_pem, &bent).unwrap();
        secrets.add("a bad EPC token", &session.epc);
        let token = client
            .verify_transient_token(&context, &session.transient_token)
            .await
            .unwrap();
        errors.expect_err(
            "bad EPC token",
            flex_client::open_credentials_async(&session.epc, psp.as_ref(), &token, &options).await,
        );
    }
}

fn provisioning_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    let issuer = file_key(dir, "issuer.pem", KeySpec::Rsa(2048), secrets);
    let signer = AuthCodeSigner::new(issuer.clone(), "acmebank").unwrap();
    let code = signer
        .sign(&AuthCodeRequest::new(
            Subject::IssuerCardRefId("card-ref-0001".into()),
            Audience::GooglePay,
        ))
        .unwrap();
    secrets.token("an authorization code", code.as_str());
    errors.debug("an authorization code", &code);
    let verifier = AuthCodeVerifier::new(issuer.public_key().clone()).unwrap();
    verifier.verify(code.as_str()).unwrap();
    errors.expect_err(
        "wrong issuer",
        verifier
            .clone()
            .issuer_id("otherbank")
            .verify(code.as_str()),
    );
    let thales = provisioning_signer::load_public_key(
        &std::fs::read(
            repo().join("crates/provisioning-signer/tests/fixtures/thales_test.pub.pem"),
        )
        .unwrap(),
    )
    .unwrap();
    let encryptor = EnrollmentEncryptor::new(thales.key, "acmebank").unwrap();
    let card = CardData::new(
        "card-ref-0001",
        SecretString::from(THALES_PAN),
        SecretString::from("0829"),
        SecretString::from(HOLDER),
    );
    secrets.add("a provisioning PAN", THALES_PAN);
    secrets.add("a card holder's name", HOLDER);
    errors.debug("card data", &card);
    let data = provisioning_signer::push_provisioning(
        &signer,
        &encryptor,
        &card,
        Audience::ApplePay,
        None,
    )
    .unwrap();
    secrets.token("an enrollment JWE", &data.enrollment_data);
    secrets.token("a push authorization code", data.auth_code.as_str());
    let bad = CardData::new(
        "card-ref-0002",
        SecretString::from(BAD_PAN),
        SecretString::from("1399"),
        SecretString::from(HOLDER),
    );
    errors.expect_err("invalid card", encryptor.encrypt(&bad));
    errors.expect_err(
        "invalid card (push)",
        provisioning_signer::push_provisioning(&signer, &encryptor, &bad, Audience::ApplePay, None),
    );

    // Classic push: the card data as CMS EnvelopedData to the TSH certificate, decrypted back through the
    // key; the content key (CEK), taken out here through the key itself, must show nowhere.
    use provisioning_signer::cms;
    let fixtures = repo().join("crates/provisioning-signer/tests/fixtures");
    let cert = key_provider::PublicKeyFile::parse(
        &std::fs::read(fixtures.join("thales_test.cert.pem")).unwrap(),
    )
    .unwrap();
    let envelope = cms::EnvelopeEncryptor::new(cert.certificate.as_ref().unwrap()).unwrap();
    errors.debug("a CMS encryptor", &envelope);
    let pushed =
        cms::push_provisioning(&signer, &envelope, &card, Audience::ApplePay, None).unwrap();
    secrets.token(
        "a classic-push authorization code",
        pushed.auth_code.as_str(),
    );
    errors.debug("a classic-push envelope", &pushed);
    let tsh_path = dir.join("tsh.key.pem");
    std::fs::copy(fixtures.join("thales_test.key.pem"), &tsh_path).unwrap();
    std::fs::set_permissions(
        &tsh_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tsh = key_provider::open(
        &format!("file:{}", tsh_path.display()).parse().unwrap(),
        &OpenOptions::new(),
    )
    .unwrap();
    let der = &pushed.card_data;
    let ek = der
        .windows(4)
        .position(|w| w == [0x04, 0x82, 0x01, 0x00])
        .expect("the encryptedKey of an RSA-2048 recipient")
        + 4;
    let cek = tsh
        .decrypt(
            key_provider::DecryptionScheme::RsaOaepSha256,
            &der[ek..ek + 256],
        )
        .unwrap();
    assert_eq!(cek.len(), 32);
    let cek_hex: String = cek.iter().map(|b| format!("{b:02x}")).collect();
    use base64::Engine as _;
    secrets.add("a CMS content key (hex)", &cek_hex);
    secrets.add("a CMS content key (HEX)", &cek_hex.to_uppercase());
    secrets.add(
        "a CMS content key (base64)",
        &base64::engine::general_purpose::STANDARD.encode(&*cek)[..40],
    );
    let debug_bytes = format!("{:?}", &cek[..12]);
    secrets.add(
        "a CMS content key (byte list)",
        &debug_bytes[1..debug_bytes.len() - 1],
    );
    let plain = cms::decrypt(der, tsh.as_ref()).unwrap();
    let fields: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(fields["fpan"], THALES_PAN);
    let mut tampered = der.clone();
    let n = tampered.len();
    tampered[n - 17] ^= 0x80;
    errors.expect_err("tampered CMS", cms::decrypt(&tampered, tsh.as_ref()));
    errors.expect_err("CMS for another key", cms::decrypt(der, issuer.as_ref()));
    errors.expect_err("truncated CMS", cms::decrypt(&der[..n - 3], tsh.as_ref()));
    errors.expect_err("invalid card (CMS)", envelope.encrypt(&bad));
    errors.expect_err(
        "invalid card (CMS push)",
        cms::push_provisioning(&signer, &envelope, &bad, Audience::ApplePay, None),
    );
}

#[cfg(feature = "pkcs11")]
fn pkcs11_flows(dir: &Path, secrets: &mut Secrets, errors: &mut Errors) {
    use key_provider::SignatureScheme;
    use keybound_test_support::pkcs11::TestToken;
    let Some(token) = TestToken::fresh("secrets: PKCS#11 flows", "secrets-flows") else {
        return;
    };
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    secrets.add("the user PIN", pin.trim_end());
    let label = format!("secrets-{}", std::process::id());
    let key = key_provider::pkcs11::generate(
        &token.uri(&label),
        KeySpec::Ec(EcCurve::P256),
        &OpenOptions::new(),
    )
    .unwrap();
    errors.debug("an HSM key", &key);
    errors.debug("an HSM key's label", &key.key_label());
    let jwt = jose_core::jwt::sign(
        key.as_ref(),
        &JwsHeader::new(JwsAlgorithm::ES256),
        &serde_json::json!({"sub": "hsm"}),
    )
    .unwrap();
    secrets.token("an HSM-signed JWT", &jwt);
    key.sign(SignatureScheme::EcdsaP256Sha256, b"data").unwrap();
    let wrong = dir.join("wrong.pin");
    std::fs::write(&wrong, format!("{WRONG_PIN}\n")).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = token.key_ref(&label);
    let (base, _) = text.split_once("&pin-source=").unwrap();
    errors.expect_err(
        "wrong PIN",
        key_provider::open(
            &format!("{base}&pin-source=file:{}", wrong.display())
                .parse()
                .unwrap(),
            &OpenOptions::new(),
        ),
    );
    errors.expect_err(
        "missing key",
        key_provider::open(
            &token.key_ref("no-such-key").parse().unwrap(),
            &OpenOptions::new(),
        ),
    );
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_flows(_: &Path, _: &mut Secrets, _: &mut Errors) {}

#[test]
fn every_flow_in_process() {
    // Everything every thread logs, from here on (the only subscriber of this test binary).
    let captured = capture_global(tracing::Level::TRACE);
    jose_core::jwt::install_crypto_provider();

    let dir = tempfile::tempdir().unwrap();
    let mut secrets = Secrets::default();
    for (what, value) in [
        ("the password", PASSWORD),
        ("the client secret", CLIENT_SECRET),
        ("the PAN", PAN),
        ("the security code", CVV),
        ("the JWE plaintext", PLAINTEXT),
        ("the EPC PAN", EPC_PAN),
        ("the EPC cryptogram", EPC_CRYPTOGRAM),
    ] {
        secrets.add(what, value);
    }
    let mut errors = Errors::default();
    jose_flows(dir.path(), &mut secrets, &mut errors);
    provisioning_flows(dir.path(), &mut secrets, &mut errors);
    pkcs11_flows(dir.path(), &mut secrets, &mut errors);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        keycloak_flows(dir.path(), &mut secrets, &mut errors).await;
        flex_flows(dir.path(), &mut secrets, &mut errors).await;
        epc_flows(dir.path(), &mut secrets, &mut errors).await;
    });
    drop(runtime);

    let log = captured.text();
    assert!(log.lines().count() > 50, "the flows logged: {log}");
    assert!(
        errors.0.lines().count() > 40,
        "the flows failed often enough"
    );
    secrets.assert_absent("the log", &log);
    secrets.assert_absent("an error message", &errors.0);
    assert!(errors.1.len() >= 10, "Debug texts: {}", errors.1.len());
    for (what, text) in &errors.1 {
        secrets.assert_absent(&format!("the Debug text of {what}"), text);
    }
    let _ = writeln!(
        std::io::stderr(),
        "checked {} log lines and {} error lines for {} secrets",
        log.lines().count(),
        errors.0.lines().count(),
        secrets.0.len()
    );
}

use std::io::Write as _;

fn keybound(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keybound"));
    cmd.args(["--log", "trace"])
        .args(args)
        .env_remove("KEYBOUND_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(text.as_bytes());
    }
    child.wait_with_output().unwrap()
}

#[test]
fn every_flow_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let mut secrets = Secrets::default();
    let mut outputs: Vec<(String, Output, bool)> = Vec::new();
    let mut run =
        |what: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>, ok: bool| {
            let out = keybound(args, env, stdin);
            assert_eq!(
                out.status.success(),
                ok,
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            outputs.push((what.to_owned(), out, ok));
        };

    // Keys: a file key and an environment key (base64 DER of a generated PKCS#8 key).
    let key = p("cli.pem");
    run(
        "keys generate",
        &["keys", "generate", "--key", &format!("file:{key}")],
        &[],
        None,
        true,
    );
    let pem_text = std::fs::read_to_string(&key).unwrap();
    secrets.private_key("the CLI's file key", &pem_text);
    let der = pem_der(&pem_text);
    use base64::Engine as _;
    let env_key = base64::engine::general_purpose::STANDARD.encode(&der);
    secrets.add("the env key", &env_key[40..80]);
    let claims = r#"{"sub":"cli","exp":4102444800}"#;
    run(
        "jwt sign (env key)",
        &[
            "jwt",
            "sign",
            "--key",
            "env:KB_SECRETS_KEY",
            "--alg",
            "PS256",
            "--claims",
            "-",
        ],
        &[("KB_SECRETS_KEY", &env_key)],
        Some(claims),
        true,
    );
    run(
        "jwe decrypt (garbage)",
        &["jwe", "decrypt", "--key", &format!("file:{key}")],
        &[],
        Some("a.b.c.d.e"),
        false,
    );
    // The Flex simulator, with a card and its security code in the data file.
    let sim = flex_simulator::ThreadedSimulator::start(Default::default()).unwrap();
    sim.add_merchant_shared_secret("merchant", "secret-1", FLEX_SECRET_B64);
    secrets.add("the Flex shared secret", FLEX_SECRET_B64);
    let context = p("ctx.jwt");
    run(
        "flex capture-context",
        &[
            "flex",
            "capture-context",
            "--api",
            sim.base_url(),
            "--merchant-id",
            "merchant",
            "--key-id",
            "secret-1",
            "--shared-secret-env",
            "KB_FLEX_SECRET",
            "--out",
            &context,
        ],
        &[("KB_FLEX_SECRET", FLEX_SECRET_B64)],
        None,
        true,
    );
    let data = p("card.json");
    std::fs::write(
        &data,
        format!(
            r#"{{"paymentInformation":{{"card":{{"number":"{PAN}","expirationMonth":"12","expirationYear":"2031","securityCode":"{CVV}"}}}}}}"#
        ),
    )
    .unwrap();
    run(
        "flex tokenize",
        &[
            "flex",
            "tokenize",
            "--api",
            sim.base_url(),
            "--allow-origin",
            sim.base_url(),
            "--capture-context",
            &context,
            "--data",
            &data,
        ],
        &[],
        None,
        true,
    );
    std::fs::write(
        &data,
        format!(
            r#"{{"paymentInformation":{{"card":{{"number":"{BAD_PAN}","securityCode":"{CVV}"}}}}}}"#
        ),
    )
    .unwrap();
    run(
        "flex tokenize (invalid card)",
        &[
            "flex",
            "tokenize",
            "--api",
            sim.base_url(),
            "--allow-origin",
            sim.base_url(),
            "--capture-context",
            &context,
            "--data",
            &data,
        ],
        &[],
        None,
        false,
    );
    // Provisioning: card data with a PAN and a holder's name.
    let card = p("thales-card.json");
    std::fs::write(
        &card,
        format!(
            r#"{{"issuerCardRefId":"card-ref-1","fpan":"{THALES_PAN}","exp":"0829","cardHolderName":"{HOLDER}"}}"#
        ),
    )
    .unwrap();
    let thales = repo().join("crates/provisioning-signer/tests/fixtures/thales_test.pub.pem");
    run(
        "provisioning push",
        &[
            "provisioning",
            "push",
            "--format",
            "jwe",
            "--key",
            &format!("file:{key}"),
            "--issuer-id",
            "acmebank",
            "--pubkey",
            thales.to_str().unwrap(),
            "--card",
            &card,
            "--aud",
            "APPLE_PAY",
        ],
        &[],
        None,
        true,
    );
    // The OpenID Connect server: a password grant with a client secret, then a wrong password.
    let config = ServerConfig::default().realm(
        "partner",
        Realm::default()
            .secret_client(
                "example-partner",
                CLIENT_SECRET,
                &["password", "refresh_token"],
            )
            .user("user@partner.example.com", PASSWORD),
    );
    let server = OidcServer::start("secrets: CLI keycloak", &config);
    if let Some(server) = &server {
        let url = server.token_url("partner");
        for (password, ok) in [(PASSWORD, true), ("not-the-Pa55w0rd", false)] {
            run(
                "keycloak token",
                &[
                    "keycloak",
                    "token",
                    "--token-url",
                    &url,
                    "--client-id",
                    "example-partner",
                    "--client-secret-env",
                    "KB_SECRET",
                    "--username",
                    "user@partner.example.com",
                    "--password-env",
                    "KB_PASSWORD",
                ],
                &[("KB_SECRET", CLIENT_SECRET), ("KB_PASSWORD", password)],
                None,
                ok,
            );
        }
        secrets.add("a wrong password", "not-the-Pa55w0rd");
    }
    // A key in SoftHSM, with the right PIN and a wrong one.
    #[cfg(feature = "pkcs11")]
    if let Some(token) =
        keybound_test_support::pkcs11::TestToken::fresh("secrets: CLI PKCS#11", "secrets-cli")
    {
        let pin = std::fs::read_to_string(&token.pin_file).unwrap();
        secrets.add("the user PIN", pin.trim_end());
        let label = format!("cli-secrets-{}", std::process::id());
        let reference = token.key_ref(&label);
        run(
            "keys generate (pkcs11)",
            &[
                "keys", "generate", "--key", &reference, "--kty", "EC", "--crv", "P-256",
            ],
            &[],
            None,
            true,
        );
        run(
            "jwt sign (pkcs11)",
            &[
                "jwt", "sign", "--key", &reference, "--alg", "ES256", "--claims", "-",
            ],
            &[],
            Some(claims),
            true,
        );
        let wrong = p("wrong.pin");
        std::fs::write(&wrong, format!("{WRONG_PIN}\n")).unwrap();
        std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let (base, _) = reference.split_once("&pin-source=").unwrap();
        run(
            "jwt sign (pkcs11, wrong PIN)",
            &[
                "jwt",
                "sign",
                "--key",
                &format!("{base}&pin-source=file:{wrong}"),
                "--alg",
                "ES256",
                "--claims",
                "-",
            ],
            &[],
            Some(claims),
            false,
        );
        secrets.add("a wrong PIN", WRONG_PIN);
    }
    // Classic push through the CLI: push and encrypt-card as PKCS#7 to the TSH certificate, then decrypt
    // with the TSH key (its stdout is the card data by purpose, so only its stderr is kept for the checks),
    // and a tampered copy (exit 1).
    let fixtures = repo().join("crates/provisioning-signer/tests/fixtures");
    let tsh_cert = fixtures.join("thales_test.cert.pem");
    let tsh_key = p("tsh.key.pem");
    std::fs::copy(fixtures.join("thales_test.key.pem"), &tsh_key).unwrap();
    std::fs::set_permissions(
        &tsh_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tsh_key = format!("file:{tsh_key}");
    let card_json = std::fs::read_to_string(&card).unwrap();
    let pushed = keybound(
        &[
            "provisioning",
            "push",
            "--key",
            &format!("file:{key}"),
            "--issuer-id",
            "acmebank",
            "--cert",
            tsh_cert.to_str().unwrap(),
            "--card",
            &card,
            "--aud",
            "APPLE_PAY",
        ],
        &[],
        None,
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let both: serde_json::Value = serde_json::from_slice(&pushed.stdout).unwrap();
    let card_data = both["cardData"].as_str().unwrap().to_owned();
    outputs.push(("provisioning push (pkcs7)".into(), pushed, true));
    for encoding in ["hex", "base64"] {
        let out = keybound(
            &[
                "provisioning",
                "encrypt-card",
                "--cert",
                tsh_cert.to_str().unwrap(),
                "--encoding",
                encoding,
                "--card",
                "-",
            ],
            &[],
            Some(&card_json),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((format!("provisioning encrypt-card ({encoding})"), out, true));
    }
    let mut opened = keybound(
        &["provisioning", "decrypt", "--key", &tsh_key],
        &[],
        Some(&card_data),
    );
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(String::from_utf8_lossy(&opened.stdout).contains(THALES_PAN));
    opened.stdout.clear();
    outputs.push(("provisioning decrypt".into(), opened, true));
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(&card_data)
        .unwrap();
    let n = der.len();
    der[n - 17] ^= 0x80;
    let tampered = keybound(
        &[
            "provisioning",
            "decrypt",
            "--key",
            &tsh_key,
            "--encoding",
            "hex",
        ],
        &[],
        Some(&der.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    );
    assert_eq!(tampered.status.code(), Some(1));
    assert!(tampered.stdout.is_empty());
    outputs.push(("provisioning decrypt (tampered)".into(), tampered, false));

    // Click to Pay credentials (EPC) through `flex open-credentials` with the CLI's file key: its stdout is
    // the credentials by purpose (cleared, like `provisioning decrypt`); a copy not bound to its transient
    // token exits 1. Neither stderr (trace logs) shows the credentials.
    let uc_context =
        sim.issue_capture_context(SessionKind::UnifiedCheckout, &serde_json::json!({}));
    let uc_context_file = p("uc-ctx.jwt");
    std::fs::write(&uc_context_file, &uc_context).unwrap();
    let psp_pem = key_provider::open(
        &format!("file:{key}").parse().unwrap(),
        &OpenOptions::default(),
    )
    .unwrap()
    .public_key()
    .to_spki_pem();
    let mut c2p = flex_simulator::ClickToPay::default();
    c2p.credentials.insert(
        "paymentInformation".into(),
        serde_json::json!({"tokenizedCard": {"number": EPC_PAN, "cryptogram": EPC_CRYPTOGRAM}}),
    );
    let session = sim.click_to_pay(&uc_context, &psp_pem, &c2p).unwrap();
    secrets.token("a Click to Pay transient token", &session.transient_token);
    secrets.add("an EPC token", &session.epc);
    let tt_file = p("c2p-tt.jwt");
    std::fs::write(&tt_file, &session.transient_token).unwrap();
    let open_args = [
        "flex",
        "open-credentials",
        "--key",
        &format!("file:{key}"),
        "--token",
        &tt_file,
        "--capture-context",
        &uc_context_file,
        "--api",
        sim.base_url(),
    ];
    let mut opened = keybound(&open_args, &[], Some(&session.epc));
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(String::from_utf8_lossy(&opened.stdout).contains(EPC_PAN));
    opened.stdout.clear();
    outputs.push(("flex open-credentials".into(), opened, true));
    c2p.header_jti = Some("NotTheReference00000".into());
    let unbound = sim.click_to_pay(&uc_context, &psp_pem, &c2p).unwrap();
    secrets.add("an unbound EPC token", &unbound.epc);
    let refused = keybound(&open_args, &[], Some(&unbound.epc));
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    outputs.push(("flex open-credentials (unbound)".into(), refused, false));

    for (what, value) in [
        ("the password", PASSWORD),
        ("the client secret", CLIENT_SECRET),
        ("the PAN", PAN),
        ("the invalid PAN", BAD_PAN),
        ("the security code", CVV),
        ("the provisioning PAN", THALES_PAN),
        ("the card holder's name", HOLDER),
        ("the EPC PAN", EPC_PAN),
        ("the EPC cryptogram", EPC_CRYPTOGRAM),
    ] {
        secrets.add(what, value);
    }

    // Tokens a command was asked for go to stdout; nothing else does, and stderr shows nothing secret.
    let mut printed_tokens = Vec::new();
    for (what, out, _) in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        for word in stdout.split(|c: char| c == '"' || c.is_whitespace()) {
            if jwt_like(word) == Some(0) || word.len() > 30 && what.starts_with("keycloak") {
                printed_tokens.push((what.clone(), word.to_owned()));
            }
        }
    }
    assert!(printed_tokens.len() >= 3, "{printed_tokens:?}");
    for (what, token) in &printed_tokens {
        secrets.add(&format!("the token `{what}` printed"), token);
    }
    for (what, out, _) in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        secrets.assert_absent(&format!("stderr of {what}"), &stderr);
    }
    // stdout: no password, secret, PIN, key, PAN or security code (the masked number is fine).
    let stdout_secrets = Secrets(
        secrets
            .0
            .iter()
            .filter(|(name, _)| !name.starts_with("the token"))
            .cloned()
            .collect(),
    );
    for (what, out, _) in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        for (name, value) in &stdout_secrets.0 {
            let found = if value == CVV {
                has_word(&stdout, value)
            } else {
                stdout.contains(value.as_str())
            };
            assert!(!found, "stdout of {what} shows {name}");
        }
    }
}

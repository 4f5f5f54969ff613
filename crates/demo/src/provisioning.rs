//! Flow 3, Thales push provisioning: at onboarding the issuer's key signs its own X.509 certificate (through
//! its backend, kept with the key) for Thales; then the key signs the authorization code for a card, the card
//! data is encrypted to the Thales key as the App2App enrollment JWE, Thales's side checks both (the code with
//! the key of the issuer's certificate, the JWE with its own private key), and a batch of codes is signed
//! through the same key.

use std::io::Cursor;
use std::sync::Arc;

use key_provider::{KeyBackend, KeySpec, KeyUsage};
use provisioning_signer::{
    Audience, AuthCodeSigner, AuthCodeVerifier, BatchOptions, CardData, EnrollmentEncryptor,
    SecretString, push_provisioning,
};
use serde_json::{Map, Value};

use crate::keys::KeyStore;
use crate::out::{Out, mask_pan};

const ISSUER_ID: &str = "DEMOBANK01";
const PRODUCT_ID: &str = "DEMO-DEBIT";
const CARD_REF: &str = "card-ref-000123";
const PAN: &str = "5204731600014792";
/// Codes signed in the batch step.
const BATCH_SIZE: u64 = 200;

/// Runs the flow.
pub async fn run(out: &Out, keys: &KeyStore) -> Result<(), crate::Error> {
    out.section("3. Thales push provisioning: an issuer pushes a card to a wallet");
    let issuer = out
        .step("generate the issuer's signing key (RSA-2048)", async {
            keys.generate("issuer-signing", KeySpec::Rsa(2048), KeyUsage::Sign)
        })
        .await?;
    out.field("key", &issuer.reference);
    let certificate = out
        .step(
            "onboarding: the issuer's key signs its certificate for Thales (X.509, kept with the key)",
            async {
                let der = keybound_pki::CertificateBuilder::new(
                    "CN=DEMOBANK01,O=Demo Bank,C=FR".parse()?,
                )
                .days(730)
                .sign_async(issuer.key.as_ref())
                .await?;
                key_provider::store_certificate(
                    &issuer.reference.parse()?,
                    &der,
                    false,
                    &keys.open_options(),
                )?;
                // What Thales takes from it: the key, read back from the stored certificate.
                let stored = key_provider::read_certificate(
                    &issuer.reference.parse()?,
                    &keys.open_options(),
                )?
                .ok_or("the certificate was not kept with the key")?;
                Ok::<_, crate::Error>(key_provider::Certificate::from_der(&stored)?)
            },
        )
        .await?;
    out.field(
        "certificate",
        format!(
            "CN=DEMOBANK01,O=Demo Bank,C=FR, self-signed ({}), valid {} days; {}",
            certificate.public_key.describe(),
            (certificate.not_after - certificate.not_before) / 86_400,
            match keys {
                crate::keys::KeyStore::Files(_) => "kept beside the key file as PATH.crt",
                crate::keys::KeyStore::Token { .. } =>
                    "kept in the token (CKO_CERTIFICATE, the key's CKA_ID and label)",
            }
        ),
    );
    let thales = out
        .step(
            "stand in for Thales: an RSA-2048 key whose public half the issuer got at onboarding",
            async {
                let der = key_provider::software::generate_pkcs8(KeySpec::Rsa(2048))?;
                let key: Arc<dyn KeyBackend> = Arc::new(key_provider::SoftwareKey::from_bytes(
                    "memory",
                    "Thales (partner) key".into(),
                    &der,
                )?);
                Ok::<_, crate::Error>(key)
            },
        )
        .await?;
    out.field(
        "Thales key",
        "in memory: the partner's key, not one of keybound's (and RSA-OAEP-256, which SoftHSM 2.6 refuses)",
    );

    let signer = AuthCodeSigner::new(issuer.key.clone(), ISSUER_ID)?;
    let thales_kid = jose_core::thumbprint(thales.public_key());
    let encryptor = EnrollmentEncryptor::new(thales.public_key().clone(), ISSUER_ID)?
        .with_product_id(PRODUCT_ID)?
        .with_kid(thales_kid)?;
    let card = CardData::new(
        CARD_REF,
        SecretString::from(PAN),
        SecretString::from("1229"),
        SecretString::from("JANE DOE"),
    );
    out.field(
        "card",
        format!("{CARD_REF}: {} exp ••••, holder ••••", mask_pan(PAN)),
    );
    let data = out
        .step(
            "sign the authorization code and encrypt the enrollment data for that card",
            async { push_provisioning(&signer, &encryptor, &card, Audience::ApplePay, None) },
        )
        .await?;
    out.jwt("authorization code", data.auth_code.as_str());
    out.jwe("enrollment data", &data.enrollment_data);

    let verified = out
        .step(
            "Thales checks the code with the key of the issuer's certificate (RS256, iss, aud, ≤ 300 s)",
            async {
                AuthCodeVerifier::new(certificate.public_key.clone())?
                    .issuer_id(ISSUER_ID)
                    .audience(Audience::ApplePay)
                    .verify(data.auth_code.as_str())
            },
        )
        .await?;
    out.field(
        "code",
        format!(
            "sub {} for {}, valid {} s",
            verified.claims.sub,
            verified.claims.aud.as_str(),
            verified.claims.exp - verified.claims.iat
        ),
    );

    let decrypted = out
        .step(
            "Thales decrypts the enrollment data with its private key",
            async {
                jose_core::jwe::decrypt(
                    &data.enrollment_data,
                    thales.as_ref(),
                    &jose_core::jwe::DecryptOptions::default(),
                )
            },
        )
        .await?;
    let fields: Map<String, Value> = serde_json::from_slice(&decrypted.plaintext)?;
    out.json("card data", &Value::Object(mask_card(fields)));

    let input: String = (0..BATCH_SIZE)
        .map(|i| format!("{{\"sub\":\"card-ref-{i:06}\",\"aud\":\"GOOGLE_PAY\"}}\n"))
        .collect();
    let options = BatchOptions::for_signer(&signer);
    let summary = out
        .step(
            &format!(
                "batch: sign {BATCH_SIZE} codes from JSON lines on {} threads",
                options.concurrency
            ),
            async {
                let mut output = Vec::new();
                let summary = provisioning_signer::batch::run(
                    &signer,
                    Cursor::new(input.as_bytes()),
                    &mut output,
                    &options,
                    &mut |p| out.progress(p.lines, BATCH_SIZE),
                );
                summary.map(|s| (s, output))
            },
        )
        .await?;
    let (summary, output) = summary;
    out.field("result", summary);
    if let Some(first) = output.split(|b| *b == b'\n').next() {
        let line: Value = serde_json::from_slice(first)?;
        if let Some(jwt) = line["jwt"].as_str() {
            out.field(
                "first line",
                format!(
                    "{{\"sub\":{},\"jwt\":\"{}\"}}",
                    line["sub"],
                    crate::out::mask_token(jwt)
                ),
            );
        }
    }
    if summary.errors != 0 {
        return Err(format!("{} batch lines failed", summary.errors).into());
    }
    Ok(())
}

/// The decrypted card data with every secret masked: the card number to its last four digits, the rest
/// to `••••`.
fn mask_card(mut fields: Map<String, Value>) -> Map<String, Value> {
    for (name, value) in &mut fields {
        let masked = match (name.as_str(), value.as_str()) {
            ("issuerCardRefId", _) => continue,
            ("fpan", Some(pan)) => mask_pan(pan),
            _ => "••••".to_owned(),
        };
        *value = Value::String(masked);
    }
    fields
}

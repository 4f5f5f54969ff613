//! Cybersource message-level encryption (MLE) as the simulator does it, with josekit and OpenSSL —
//! independent of flex-client's own JOSE code.
//!
//! - The simulator has its own MLE key and a self-signed certificate for it, named like Cybersource's
//!   (`CN=CyberSource_SJC_US`) with a subject `serialNumber` attribute that is the `kid` request JWEs must
//!   carry ([`crate::FlexSimulator::mle_certificate_pem`]).
//! - A request body `{"encryptedRequest":"<JWE>"}` is decrypted: `alg` RSA-OAEP-256, `enc` A256GCM, `kid` the
//!   certificate's serialNumber, `iat` a number within 5 minutes of now; its plaintext is the request.
//! - A response is encrypted (RSA-OAEP-256, or RSA-OAEP when told so, + A256GCM, `kid` = the merchant's response kid) to the merchant's
//!   response MLE public key registered under the `v-c-response-mle-kid` of the request's JWT, and sent as
//!   `{"encryptedResponse":"<JWE>"}`.

use josekit::jwe::{JweHeader, RSA_OAEP, RSA_OAEP_256};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use serde_json::Value;

use crate::keys::random_id;
use crate::now;

/// The simulator's MLE key and certificate.
pub(crate) struct MleIdentity {
    /// PKCS#8 DER of the private key.
    pkcs8: Vec<u8>,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The subject serialNumber (the request JWE `kid`).
    pub kid: String,
}

impl std::fmt::Debug for MleIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MleIdentity")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl MleIdentity {
    /// A new RSA-2048 key and a self-signed certificate valid for a year.
    pub(crate) fn generate() -> Self {
        // Fails only when OpenSSL is broken or out of memory (see crate::keys).
        Self::try_generate().expect("OpenSSL key and certificate generation")
    }

    fn try_generate() -> Result<Self, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let kid = format!("SJC{}", random_id(16, true));
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("C", "US")?;
        name.append_entry_by_text("O", "CyberSource Corporation")?;
        name.append_entry_by_text("CN", "CyberSource_SJC_US")?;
        name.append_entry_by_text("serialNumber", &kid)?;
        let name = name.build();
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&key, MessageDigest::sha256())?;
        // PEM is ASCII.
        let certificate_pem = String::from_utf8_lossy(&builder.build().to_pem()?).into_owned();
        Ok(Self {
            pkcs8: key.private_key_to_pkcs8()?,
            certificate_pem,
            kid,
        })
    }

    /// Decrypts `{"encryptedRequest":"<JWE>"}`; returns the plaintext request, or why it was refused.
    pub(crate) fn decrypt_request(&self, body: &Value) -> Result<Vec<u8>, String> {
        let jwe = body
            .get("encryptedRequest")
            .and_then(Value::as_str)
            .ok_or("encryptedRequest is not a string")?;
        if body.as_object().map_or(0, serde_json::Map::len) != 1 {
            return Err("an MLE body has encryptedRequest only".into());
        }
        let decrypter = RSA_OAEP_256
            .decrypter_from_der(&self.pkcs8)
            .map_err(|_| "MLE decrypter".to_owned())?;
        let (plaintext, header) = josekit::jwe::deserialize_compact(jwe, &decrypter).map_err(
            |_| "the MLE request does not decrypt (tampered, wrong key or not RSA-OAEP-256)",
        )?;
        if header.content_encryption() != Some("A256GCM") {
            return Err("the MLE request JWE enc is not A256GCM".into());
        }
        if header.key_id() != Some(self.kid.as_str()) {
            return Err(
                "the MLE request JWE kid is not the MLE certificate's subject serialNumber".into(),
            );
        }
        let iat = header
            .claim("iat")
            .and_then(Value::as_u64)
            .ok_or("the MLE request JWE has no numeric iat")?;
        let t = now();
        if iat > t + 300 || iat + 300 < t {
            return Err("the MLE request JWE iat is more than 5 minutes off".into());
        }
        Ok(plaintext)
    }
}

/// Encrypts `plaintext` to the merchant's response key (SPKI PEM) as `{"encryptedResponse":"<JWE>"}`.
/// `sha1`: RSA-OAEP (SHA-1) instead of RSA-OAEP-256 (Cybersource answers with either).
pub(crate) fn encrypt_response(
    public_key_pem: &str,
    kid: &str,
    plaintext: &[u8],
    sha1: bool,
) -> Result<String, String> {
    let unusable = |e: josekit::JoseError| format!("the response MLE key is unusable: {e}");
    let encrypter: Box<dyn josekit::jwe::JweEncrypter> = if sha1 {
        Box::new(
            RSA_OAEP
                .encrypter_from_pem(public_key_pem)
                .map_err(unusable)?,
        )
    } else {
        Box::new(
            RSA_OAEP_256
                .encrypter_from_pem(public_key_pem)
                .map_err(unusable)?,
        )
    };
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_key_id(kid);
    header
        .set_claim("iat", Some(now().into()))
        .map_err(|e| e.to_string())?;
    let jwe = josekit::jwe::serialize_compact(plaintext, &header, encrypter.as_ref())
        .map_err(|e| format!("response encryption: {e}"))?;
    Ok(serde_json::json!({ "encryptedResponse": jwe }).to_string())
}

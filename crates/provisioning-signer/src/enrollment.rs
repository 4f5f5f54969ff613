//! The App2App enrollment data: the card data as a compact JWE, `alg` RSA-OAEP-256 and `enc` A256GCM,
//! encrypted to the Thales public key (or certificate) received at onboarding. Protected header:
//! `alg`, `enc`, optional `kid`, mandatory `x-gto-issuerid`, optional `x-gto-productid`.
//!
//! [`push_provisioning`] produces the authorization code and the enrollment data together, with the code's
//! `sub` taken from the card's `issuerCardRefId` so the two always name the same card;
//! [`EnrollmentEncryptor::encrypt_for`] checks that pairing when the code was signed separately.
//!
//! Invariant: the plaintext exists only in a `Zeroizing` buffer (jose-core encrypts a copy in place), and
//! nothing here logs card data.

use jose_core::jwe::EncryptOptions;
use jose_core::{ContentEncryption, KeyManagementAlgorithm};
use key_provider::PublicKey;

use crate::auth_code::{
    Audience, AuthCode, AuthCodeRequest, AuthCodeSigner, MAX_IDENTIFIER_LEN, Subject,
};
use crate::card::CardData;
use crate::error::{ProvisioningError, check_identifier};

/// The JWE key-management algorithm Thales expects (RSA1_5 is deprecated there and refused here).
pub const ALG: KeyManagementAlgorithm = KeyManagementAlgorithm::RsaOaep256;
/// The JWE content encryption Thales expects.
pub const ENC: ContentEncryption = ContentEncryption::A256GCM;
/// The mandatory custom header carrying the issuer id.
pub const HEADER_ISSUER_ID: &str = "x-gto-issuerid";
/// The optional custom header carrying the product id.
pub const HEADER_PRODUCT_ID: &str = "x-gto-productid";

/// Encrypts card data to the Thales public key for one issuer.
#[derive(Debug, Clone)]
pub struct EnrollmentEncryptor {
    recipient: PublicKey,
    issuer_id: String,
    product_id: Option<String>,
    kid: Option<String>,
}

impl EnrollmentEncryptor {
    /// An encryptor to `recipient` (RSA, 2048 bits or more; Thales uses 2048 or 4096) for `issuer_id`.
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitablePublicKey`] for a non-RSA or short key, [`ProvisioningError::InvalidField`]
    /// for a malformed issuer id.
    pub fn new(
        recipient: PublicKey,
        issuer_id: impl Into<String>,
    ) -> Result<Self, ProvisioningError> {
        match &recipient {
            PublicKey::Rsa { .. } if recipient.bits() >= 2048 => {}
            _ => {
                return Err(ProvisioningError::UnsuitablePublicKey {
                    reason: format!(
                        "enrollment data is encrypted with RSA-OAEP-256 to an RSA key of at least 2048 bits; \
                         this key is {}; check the Thales key or certificate you were given",
                        recipient.describe()
                    ),
                });
            }
        }
        let issuer_id = issuer_id.into();
        check_identifier(HEADER_ISSUER_ID, &issuer_id, MAX_IDENTIFIER_LEN)?;
        Ok(Self {
            recipient,
            issuer_id,
            product_id: None,
            kid: None,
        })
    }

    /// Sets `x-gto-productid`.
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] for an empty or malformed value.
    pub fn with_product_id(
        mut self,
        product_id: impl Into<String>,
    ) -> Result<Self, ProvisioningError> {
        let product_id = product_id.into();
        check_identifier(HEADER_PRODUCT_ID, &product_id, MAX_IDENTIFIER_LEN)?;
        self.product_id = Some(product_id);
        Ok(self)
    }

    /// Sets the header `kid` (of the Thales key).
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] for an empty or malformed value.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, ProvisioningError> {
        let kid = kid.into();
        check_identifier("kid", &kid, MAX_IDENTIFIER_LEN)?;
        self.kid = Some(kid);
        Ok(self)
    }

    /// The issuer id sent in `x-gto-issuerid`.
    #[must_use]
    pub fn issuer_id(&self) -> &str {
        &self.issuer_id
    }

    /// Encrypts `card` as a compact JWE.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use provisioning_signer::{CardData, EnrollmentEncryptor, SecretString, load_public_key};
    /// # let thales_dir = tempfile::tempdir()?;
    /// # let thales_path = thales_dir.path().join("thales.pem");
    /// # key_provider::file::generate(&thales_path, key_provider::KeySpec::Rsa(2048))?;
    /// # let thales = key_provider::open(&format!("file:{}", thales_path.display()).parse()?, &Default::default())?;
    /// # let thales_pem = thales.public_key().to_spki_pem();
    /// // The Thales key as given at onboarding: SPKI PEM, an X.509 certificate or a JWK.
    /// let thales_key = load_public_key(thales_pem.as_bytes())?;
    /// let encryptor = EnrollmentEncryptor::new(thales_key.key, "ACMEBANK01")?.with_product_id("ACME-DEBIT")?;
    /// let card = CardData::new(
    ///     "card-ref-000123",
    ///     SecretString::from("5204731600014792"),
    ///     SecretString::from("1229"),
    ///     SecretString::from("JANE DOE"),
    /// );
    /// let jwe = encryptor.encrypt(&card)?;
    /// // Thales decrypts it with its private key:
    /// let plain = jose_core::jwe::decrypt(&jwe, thales.as_ref(), &Default::default())?;
    /// assert_eq!(plain.header["alg"], "RSA-OAEP-256");
    /// assert_eq!(plain.header["x-gto-issuerid"], "ACMEBANK01");
    /// let fields: serde_json::Value = serde_json::from_slice(&plain.plaintext)?;
    /// assert_eq!(fields["fpan"], "5204731600014792");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] when the card data breaks a rule (see [`CardData::validate`]), or
    /// the encryption failure as [`ProvisioningError::Jose`].
    pub fn encrypt(&self, card: &CardData) -> Result<String, ProvisioningError> {
        let started = std::time::Instant::now();
        let plaintext = card.to_json()?;
        let mut options = EncryptOptions::new().header(HEADER_ISSUER_ID, self.issuer_id.clone());
        if let Some(p) = &self.product_id {
            options = options.header(HEADER_PRODUCT_ID, p.clone());
        }
        options.kid.clone_from(&self.kid);
        let jwe = jose_core::jwe::encrypt(&self.recipient, ALG, ENC, &plaintext, &options)?;
        tracing::debug!(
            issuer_id = %self.issuer_id,
            product_id = self.product_id.as_deref(),
            kid = self.kid.as_deref(),
            outcome = "encrypted",
            latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "enrollment data encrypted"
        );
        Ok(jwe)
    }

    /// Encrypts `card` for use with `auth_code`, refusing a pair that names different cards.
    ///
    /// # Errors
    /// [`ProvisioningError::SubjectIsTokenId`] when the code was signed for a tokenId,
    /// [`ProvisioningError::SubjectMismatch`] when its `sub` is not the card's issuerCardRefId; else as
    /// [`EnrollmentEncryptor::encrypt`].
    pub fn encrypt_for(
        &self,
        card: &CardData,
        auth_code: &AuthCode,
    ) -> Result<String, ProvisioningError> {
        if auth_code.is_for_token_id() {
            return Err(ProvisioningError::SubjectIsTokenId);
        }
        if auth_code.claims().sub != card.issuer_card_ref_id {
            return Err(ProvisioningError::SubjectMismatch);
        }
        self.encrypt(card)
    }
}

/// An authorization code and the enrollment data for the same card.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushProvisioningData {
    /// The signed authorization code (`sub` = the card's issuerCardRefId).
    pub auth_code: AuthCode,
    /// The compact JWE of the card data.
    pub enrollment_data: String,
}

/// Signs an authorization code for `card` (its issuerCardRefId as `sub`) and encrypts the card data, so the
/// two always agree.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use provisioning_signer::{Audience, AuthCodeSigner, CardData, EnrollmentEncryptor, SecretString, push_provisioning};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("issuer.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// // The issuer key: a file here; `pkcs11:token=…;object=…?module-path=…&pin-source=file:…` in production.
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// # let thales_dir = tempfile::tempdir()?;
/// # let thales_path = thales_dir.path().join("thales.pem");
/// # key_provider::file::generate(&thales_path, key_provider::KeySpec::Rsa(2048))?;
/// # let thales = key_provider::open(&format!("file:{}", thales_path.display()).parse()?, &Default::default())?;
/// # let thales_pem = thales.public_key().to_spki_pem();
/// let signer = AuthCodeSigner::new(key, "ACMEBANK01")?;
/// let encryptor = EnrollmentEncryptor::new(thales.public_key().clone(), "ACMEBANK01")?;
/// let card = CardData::new(
///     "card-ref-000123",
///     SecretString::from("5204731600014792"),
///     SecretString::from("1229"),
///     SecretString::from("JANE DOE"),
/// );
/// let data = push_provisioning(&signer, &encryptor, &card, Audience::ApplePay, None)?;
/// assert_eq!(data.auth_code.claims().sub, "card-ref-000123"); // the same card in both
/// assert_eq!(data.enrollment_data.split('.').count(), 5);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ProvisioningError::InvalidField`] for invalid card data (checked before anything is signed), and the
/// errors of [`AuthCodeSigner::sign`] and [`EnrollmentEncryptor::encrypt`].
pub fn push_provisioning(
    signer: &AuthCodeSigner,
    encryptor: &EnrollmentEncryptor,
    card: &CardData,
    audience: Audience,
    ttl_secs: Option<u64>,
) -> Result<PushProvisioningData, ProvisioningError> {
    let auth_code = sign_for_card(signer, card, audience, ttl_secs)?;
    let enrollment_data = encryptor.encrypt_for(card, &auth_code)?;
    Ok(PushProvisioningData {
        auth_code,
        enrollment_data,
    })
}

/// Validates `card`, then signs an authorization code whose `sub` is its issuerCardRefId.
pub(crate) fn sign_for_card(
    signer: &AuthCodeSigner,
    card: &CardData,
    audience: Audience,
    ttl_secs: Option<u64>,
) -> Result<AuthCode, ProvisioningError> {
    card.validate()?;
    let mut request = AuthCodeRequest::new(
        Subject::IssuerCardRefId(card.issuer_card_ref_id.clone()),
        audience,
    );
    request.ttl_secs = ttl_secs;
    signer.sign(&request)
}

//! PKCS#10 certificate signing requests (RFC 2986) signed through a [`KeyBackend`]: the private key stays in
//! its file, token or service; only the request's to-be-signed bytes go to [`KeyBackend::sign`].
//!
//! The request carries the subject name, the key's SubjectPublicKeyInfo (exactly as
//! [`PublicKey::to_spki_der`](key_provider::PublicKey::to_spki_der) writes it) and, when alternative names
//! are given, an `extensionRequest` attribute with a subjectAltName extension.

use key_provider::{KeyBackend, SignatureScheme};

use crate::der_write as der;
use crate::error::PkiError;
use crate::name::{DistinguishedName, SubjectAltName};
use crate::signature;

/// 1.2.840.113549.1.9.14, the PKCS#9 extensionRequest attribute.
const EXTENSION_REQUEST: &[u64] = &[1, 2, 840, 113_549, 1, 9, 14];

/// A certificate signing request to be signed by a key.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keybound_pki::CsrBuilder;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("issuer.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let der = CsrBuilder::new("CN=acmebank,O=Acme Bank,C=FR".parse()?)
///     .san("DNS:issuer.acme.example".parse()?)
///     .sign(key.as_ref())?; // sha256WithRSAEncryption, made by the backend
/// let pem = keybound_pki::csr_pem(&der);
/// assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CsrBuilder {
    /// The subject.
    pub subject: DistinguishedName,
    /// Subject alternative names, in order.
    pub sans: Vec<SubjectAltName>,
    /// The signature scheme; `None`: [`default_scheme`](crate::default_scheme) for the key.
    pub scheme: Option<SignatureScheme>,
}

impl CsrBuilder {
    /// A request for `subject`, with no alternative names and the key's default scheme.
    #[must_use]
    pub fn new(subject: DistinguishedName) -> Self {
        Self {
            subject,
            sans: Vec::new(),
            scheme: None,
        }
    }

    /// Adds a subject alternative name.
    #[must_use]
    pub fn san(mut self, san: SubjectAltName) -> Self {
        self.sans.push(san);
        self
    }

    /// Sets the signature scheme (`None`: the key's default).
    #[must_use]
    pub fn scheme(mut self, scheme: Option<SignatureScheme>) -> Self {
        self.scheme = scheme;
        self
    }

    /// The scheme and the DER CertificationRequestInfo to sign.
    fn to_be_signed(&self, key: &dyn KeyBackend) -> Result<(SignatureScheme, Vec<u8>), PkiError> {
        let public = key.public_key();
        let scheme = self
            .scheme
            .unwrap_or_else(|| signature::default_scheme(public));
        signature::check_scheme(scheme, public)?;
        let attributes = if self.sans.is_empty() {
            Vec::new()
        } else {
            let extensions = der::sequence(&[&crate::certificate::san_extension(&self.sans)]);
            vec![der::sequence(&[
                &der::oid(EXTENSION_REQUEST),
                &der::set_of(&[&extensions]),
            ])]
        };
        let attributes: Vec<&[u8]> = attributes.iter().map(Vec::as_slice).collect();
        let info = der::sequence(&[
            &der::small_integer(0),
            &self.subject.to_der(),
            &public.to_spki_der(),
            &der::context(0, &attributes.concat()),
        ]);
        Ok((scheme, info))
    }

    /// Builds the request and has `key` sign it; returns the DER CertificationRequest.
    ///
    /// # Errors
    /// [`PkiError::Key`] when the scheme does not fit the key, or the backend fails or refuses.
    pub fn sign(&self, key: &dyn KeyBackend) -> Result<Vec<u8>, PkiError> {
        let (scheme, info) = self.to_be_signed(key)?;
        signature::sign(key, scheme, &info)
    }

    /// As [`CsrBuilder::sign`], from async code (the backend's [`KeyBackend::sign_async`]).
    ///
    /// # Errors
    /// As [`CsrBuilder::sign`].
    pub async fn sign_async(&self, key: &dyn KeyBackend) -> Result<Vec<u8>, PkiError> {
        let (scheme, info) = self.to_be_signed(key)?;
        signature::sign_async(key, scheme, &info).await
    }
}

/// PEM (`CERTIFICATE REQUEST`, 64-column lines, LF) of a DER request.
#[must_use]
pub fn csr_pem(der: &[u8]) -> String {
    crate::pem_encode("CERTIFICATE REQUEST", der)
}

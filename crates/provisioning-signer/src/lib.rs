//! # provisioning-signer
//!
//! Thales push provisioning for card issuers, with the issuer's private key kept in its backend (PEM file,
//! environment variable or PKCS#11 HSM) behind [`key_provider::KeyBackend`]:
//!
//! - [`auth_code`]: the authorization code, an RS256 JWT (`typ`/`alg`/`kid` header; `iss`, `sub`, `aud`,
//!   `jti`, `exp`, `iat` claims) signed by [`AuthCodeSigner`], checked by [`AuthCodeVerifier`];
//! - [`card`] and [`enrollment`]: the App2App enrollment data, typed [`CardData`] encrypted as a JWE
//!   (RSA-OAEP-256 + A256GCM, `x-gto-issuerid`, optional `x-gto-productid` and `kid`) to the Thales key by
//!   [`EnrollmentEncryptor`]; [`push_provisioning`] produces code and payload for the same card;
//! - [`cms`]: the classic push card data, CMS `EnvelopedData` (AES-256-CBC, RSAES-OAEP-SHA256 key
//!   transport) to the TSH Issuer Gateway certificate by [`cms::EnvelopeEncryptor`], and
//!   [`cms::decrypt`] of the same format sent by the TSH, its content key unwrapped in the key's backend;
//! - [`peer_key`]: the Thales key or the issuer certificate as SPKI PEM, JWK or X.509 certificate;
//! - [`batch`]: many codes from JSON lines, signed concurrently through one key, streamed in input order.
//!
//! Invariants: signing refuses anything but RSA of at least 2048 bits; card data lives in
//! `SecretString`/`Zeroizing` buffers with redacting `Debug`; errors and tracing events never carry card
//! data, signed tokens or key material.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use provisioning_signer::{Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, Subject};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("issuer.pem");
//! key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
//! let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
//!
//! let signer = AuthCodeSigner::new(key.clone(), "acmebank")?;
//! let request = AuthCodeRequest::new(Subject::IssuerCardRefId("card-123".into()), Audience::ApplePay);
//! let code = signer.sign(&request)?;
//!
//! let verified = AuthCodeVerifier::new(key.public_key().clone())?.issuer_id("acmebank").verify(code.as_str())?;
//! assert_eq!(verified.claims.sub, "card-123");
//! assert_eq!(verified.claims.exp - verified.claims.iat, 120);
//! # Ok(()) }
//! ```

pub mod auth_code;
pub mod batch;
pub mod card;
pub mod cms;
pub mod enrollment;
mod error;
pub mod peer_key;

pub use auth_code::{
    Audience, AuthCode, AuthCodeClaims, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, Subject,
    VerifiedAuthCode,
};
pub use batch::{BatchOptions, BatchProgress, BatchSummary};
pub use card::{CardData, PostalAddress};
pub use enrollment::{EnrollmentEncryptor, PushProvisioningData, push_provisioning};
pub use error::ProvisioningError;
pub use peer_key::{PeerKey, PeerKeySource, load_public_key};
pub use secrecy::SecretString;

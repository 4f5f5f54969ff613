//! # jose-core
//!
//! JOSE formats over key-provider backends: compact JWS and JWT signing through any
//! [`KeyBackend`](key_provider::KeyBackend) and verification with claim validation (by `jsonwebtoken`),
//! compact JWE (RSA-OAEP / RSA-OAEP-256 with A128GCM / A256GCM) encrypted to public keys and decrypted
//! through a backend, JWK/JWKS import and export, and RFC 7638 thumbprints.
//!
//! Private keys never appear here: signing and CEK unwrapping are calls on the backend trait.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use jose_core::{JwsAlgorithm, JwsHeader, KeySet, Validation, VerifyingKey};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("k.pem");
//! key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
//! let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
//! let claims = serde_json::json!({"sub": "alice", "exp": jose_core::jwt::now() + 60});
//! let token = jose_core::jwt::sign(key.as_ref(), &JwsHeader::new(JwsAlgorithm::RS256).typ("JWT"), &claims)?;
//! let keys = KeySet::single(VerifyingKey::new(key.public_key().clone()));
//! let verified = jose_core::jwt::verify(&token, &keys, &Validation::new())?;
//! assert_eq!(verified.claims["sub"], "alice");
//! # Ok(()) }
//! ```

pub mod alg;
pub mod b64;
mod error;
pub mod json;
pub mod jwe;
pub mod jwk;
pub mod jws;
pub mod jwt;
mod jwt_provider;
pub mod keys;

pub use alg::{ContentEncryption, JwsAlgorithm, KeyManagementAlgorithm};
pub use error::{JoseError, sanitize_for_message};
pub use jwk::{Jwk, Jwks, KeyPurpose, thumbprint};
pub use jws::JwsHeader;
pub use jwt::{Validation, VerifiedJwt};
pub use key_provider;
pub use keys::{KeySet, VerifyingKey};

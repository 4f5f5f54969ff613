//! # keybound-pki
//!
//! Onboarding without taking keys out. Partners ask for a certificate signing request or a certificate for
//! the key keybound signs with (Thales, Keycloak), or hand over a key inside a PKCS#12 file (Cybersource).
//! This crate builds PKCS#10 requests and X.509 certificates whose signatures are made through a
//! [`key_provider::KeyBackend`] (so the private key stays in its file, token or service), and reads PKCS#12
//! and PEM private-key files so the CLI can import them into a backend.
//!
//! It sits beside jose-core (it is neither JOSE nor a partner protocol): key-provider ← keybound-pki ← cli.
//!
//! - [`CsrBuilder`]: PKCS#10 requests; [`CertificateBuilder`]: self-signed X.509 v3 certificates. Both sign
//!   through the trait (`sign`, or `sign_async` from async code) and return DER; [`csr_pem`] and
//!   [`certificate_pem`] write PEM.
//! - [`DistinguishedName`] (`CN=acmebank,O=Acme Bank,C=FR`) and [`SubjectAltName`] (`DNS:…`, `IP:…`,
//!   `URI:…`, `email:…`) parse what people type.
//! - Keeping a certificate with its key (a `pkcs11:` token's certificate object, `PATH.crt` beside a key
//!   file) is key-provider's: [`key_provider::store_certificate`], [`key_provider::read_certificate`].
//! - [`pkcs12`]: PKCS#12 (modern PBES2 and legacy 3DES/RC2) and PEM private-key files, read into wiped
//!   buffers for `keys import` ([`KeyFile`]); [`write_pkcs12`] for tests and the demo.

mod certificate;
mod csr;
mod der_write;
mod error;
mod name;
pub mod pkcs12;
mod signature;

pub use certificate::{
    BACKDATE_SECS, CertificateBuilder, DEFAULT_DAYS, MAX_DAYS, certificate_pem, key_identifier,
};
pub use csr::{CsrBuilder, csr_pem};
pub use error::PkiError;
pub use name::{DistinguishedName, SubjectAltName};
pub use pkcs12::{KeyFile, Pkcs12Error, write_pkcs12};
pub use signature::{algorithm_identifier, default_scheme};

/// PEM with 64-column lines and LF, as openssl writes it.
fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

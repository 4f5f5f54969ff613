//! # keybound-pki
//!
//! Onboarding without taking keys out. Partners ask for a certificate signing request or a certificate for
//! the key keybound signs with (Thales, Keycloak), or hand over a key inside a PKCS#12 file (Cybersource).
//! This crate builds PKCS#10 requests and X.509 certificates whose signatures are made through a
//! [`key_provider::KeyBackend`] (so the private key stays in its file, token or service), and reads PKCS#12
//! and PEM private-key files so the CLI can import them into a backend.
//!
//! It sits beside jose-core (it is neither JOSE nor a partner protocol): key-provider ← keybound-pki ← cli.

pub mod pkcs12;

pub use pkcs12::{KeyFile, Pkcs12Error, write_pkcs12};

//! Where the demo's own private keys are made: PEM files in a temporary directory (the default), or a
//! PKCS#11 token (`--pkcs11-token`, a fresh SoftHSM token from `cargo xtask demo --hsm`). Either way the flows
//! get an `Arc<dyn KeyBackend>` opened from a key reference string, and never see key bytes. A key a partner
//! issues (the merchant's P12) is imported into the same store ([`KeyStore::import`]).

use std::path::PathBuf;
use std::sync::Arc;

use key_provider::{Certificate, ImportKey, KeyBackend, KeyRef, KeySpec, KeyUsage, OpenOptions};

/// A place to generate keys in.
pub enum KeyStore {
    /// PEM files (PKCS#8, mode 0600) in this directory.
    Files(PathBuf),
    /// A PKCS#11 token.
    Token {
        /// The token label (`token=`).
        label: String,
        /// The PKCS#11 module (`module-path=`).
        module: PathBuf,
        /// The user PIN file, mode 0600 (`pin-source=file:`).
        pin_file: PathBuf,
    },
}

/// A generated key and the reference it was opened by.
pub struct Generated {
    /// The key.
    pub key: Arc<dyn KeyBackend>,
    /// The reference (`file:…` or the `pkcs11:` URI with its PIN source; never a PIN).
    pub reference: String,
}

impl KeyStore {
    /// One line saying where keys live.
    pub fn describe(&self) -> String {
        match self {
            Self::Files(dir) => format!("PEM files in {} (removed at the end)", dir.display()),
            Self::Token { label, module, .. } => format!(
                "PKCS#11 token '{label}' via {} (sensitive, never extractable)",
                module.display()
            ),
        }
    }

    /// Options for the store's keys: with a token, its module is the configured module (the references'
    /// `module-path=` names it, and key-provider loads no other).
    pub fn open_options(&self) -> OpenOptions {
        match self {
            Self::Files(_) => OpenOptions::new(),
            Self::Token { module, .. } => OpenOptions::new().pkcs11_module(Some(module.clone())),
        }
    }

    /// The key reference for key `name`.
    pub fn reference(&self, name: &str) -> String {
        match self {
            Self::Files(dir) => format!("file:{}", dir.join(format!("{name}.pem")).display()),
            Self::Token {
                label,
                module,
                pin_file,
            } => format!(
                "pkcs11:token={label};object={name}?module-path={}&pin-source=file:{}",
                module.display(),
                pin_file.display()
            ),
        }
    }

    /// Generates key `name` of `spec` for `usage` in the store and opens it through its key reference.
    /// Blocking (a token may take a moment for RSA). Every demo key of keybound's is a signing key
    /// ([`KeyUsage::Sign`]); a JWE decryption key would be made with [`KeyUsage::Decrypt`], as
    /// `keybound keys generate --usage decrypt` does. A token records the usage and refuses other uses; a
    /// PEM file records nothing.
    ///
    /// # Errors
    /// The backend's error (for example, a key with this name already exists).
    pub fn generate(
        &self,
        name: &str,
        spec: KeySpec,
        usage: KeyUsage,
    ) -> Result<Generated, crate::Error> {
        usage.check(spec)?;
        let reference = self.reference(name);
        let key_ref: KeyRef = reference.parse()?;
        let key = match &key_ref {
            KeyRef::File(path) => {
                key_provider::file::generate(path, spec)?;
                key_provider::open(&key_ref, &self.open_options())?
            }
            KeyRef::Pkcs11(uri) => {
                key_provider::pkcs11::generate_with_usage(uri, spec, usage, &self.open_options())?
            }
            other => {
                return Err(format!(
                    "the demo generates keys in files or tokens, not {}",
                    other.backend()
                )
                .into());
            }
        };
        Ok(Generated {
            reference: key.key_label().to_owned(),
            key,
        })
    }

    /// Imports the key of a PKCS#12 (or PEM) file into the store as key `name`, with its certificate (kept
    /// in a token beside the key), as `keybound keys import` does; returns the key and the certificate.
    /// The decrypted key stays in wiped buffers until the backend has it.
    ///
    /// # Errors
    /// A wrong password, a damaged file, or the backend's error.
    pub fn import(
        &self,
        name: &str,
        file: &[u8],
        password: &str,
        usage: KeyUsage,
    ) -> Result<(Generated, Option<Certificate>), crate::Error> {
        let file = keybound_pki::KeyFile::read(file, password)?;
        let import = ImportKey::from_der(file.private_key())?;
        let certificate = file.key_certificate();
        let parsed = certificate.map(Certificate::from_der).transpose()?;
        let reference = self.reference(name);
        let key_ref: KeyRef = reference.parse()?;
        let key = match &key_ref {
            KeyRef::File(path) => {
                key_provider::file::import(path, &import)?;
                key_provider::open(&key_ref, &self.open_options())?
            }
            KeyRef::Pkcs11(uri) => key_provider::pkcs11::import(
                uri,
                &import,
                certificate,
                &key_provider::pkcs11::ImportOptions::new(usage),
                &self.open_options(),
            )?,
            other => {
                return Err(format!(
                    "the demo imports keys into files or tokens, not {}",
                    other.backend()
                )
                .into());
            }
        };
        Ok((
            Generated {
                reference: key.key_label().to_owned(),
                key,
            },
            parsed,
        ))
    }
}

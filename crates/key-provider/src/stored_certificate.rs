//! A key's certificate, kept with the key so the onboarding flows look the same whatever the backend:
//!
//! | backend | where the certificate is kept |
//! |---|---|
//! | `pkcs11` | in the token: a `CKO_CERTIFICATE` object with the private key's `CKA_ID` and label ([`pkcs11::store_certificate`](crate::pkcs11::store_certificate)) |
//! | `file` | beside the key file: `PATH.crt` (PEM) for the key `file:PATH` |
//! | `env` | nowhere: an environment variable has no place for it (storing is refused; reading finds none) |
//! | `vault`, `aws-kms` | nowhere: a key service keeps keys, not certificates (storing is refused; reading finds none) |
//!
//! The same rules everywhere: a certificate is kept only for its own key (its SubjectPublicKeyInfo must be
//! the key's public key), and one that is there already is replaced only when the caller asks. A `PATH.crt`
//! is written like every file keybound writes: to a temporary file first, then linked into place (never
//! over an existing file unless replacing), so it appears whole or not at all.
//!
//! Both functions block (file I/O, token calls); from async code run them with `tokio::task::spawn_blocking`,
//! as the signatures themselves are made with `KeyBackend::sign_async`.

#[cfg(feature = "file")]
use std::path::{Path, PathBuf};

use crate::{Certificate, KeyError, KeyRef, OpenOptions};

/// Where the certificate of the key file `key_path` is kept: the same path with `.crt` appended
/// (`issuer.pem` → `issuer.pem.crt`).
#[cfg(feature = "file")]
#[must_use]
pub fn certificate_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".crt");
    PathBuf::from(name)
}

/// Stores `der`, an X.509 certificate of the key `key_ref` names, with the key (module docs).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("issuer.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// use key_provider::KeyRef;
/// let key_ref: KeyRef = format!("file:{}", path.display()).parse()?;
/// assert_eq!(key_provider::read_certificate(&key_ref, &Default::default())?, None);
/// // keybound-pki's CertificateBuilder makes one through the key; storing checks it is this key's:
/// let not_a_certificate = b"\x30\x00";
/// assert!(key_provider::store_certificate(&key_ref, not_a_certificate, false, &Default::default()).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::InvalidKeyMaterial`] when `der` is not a certificate or not of this key;
/// [`KeyError::AlreadyExists`] / [`KeyError::KeyExists`] when the key has a certificate and `replace` is
/// false; [`KeyError::NotSupported`] for `env:` keys and key-service keys; the errors of opening the key.
pub fn store_certificate(
    key_ref: &KeyRef,
    der: &[u8],
    replace: bool,
    options: &OpenOptions,
) -> Result<(), KeyError> {
    let _ = (der, replace, options);
    match key_ref {
        #[cfg(feature = "file")]
        KeyRef::File(path) => {
            let started = std::time::Instant::now();
            let crt = certificate_path(path);
            let result = (|| {
                let certificate = Certificate::from_der(der)?;
                let key = crate::file::load(path, options.allow_insecure_permissions)?;
                check_key(&certificate, crate::KeyBackend::public_key(&key), key_ref)?;
                write_new(&crt, &pem_of(der), replace)
            })();
            // The same audit event as a token's (module `pkcs11::certificate`), with the file written.
            let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            match &result {
                Ok(()) => tracing::info!(
                    target: crate::AUDIT_TARGET,
                    backend = "file",
                    token = "-",
                    key = %key_ref,
                    operation = "store certificate",
                    file = %crt.display(),
                    outcome = "success",
                    latency_us,
                ),
                Err(error) => tracing::warn!(
                    target: crate::AUDIT_TARGET,
                    backend = "file",
                    token = "-",
                    key = %key_ref,
                    operation = "store certificate",
                    file = %crt.display(),
                    outcome = "failure",
                    latency_us,
                    ckr = "-",
                    error = %error,
                ),
            }
            result
        }
        #[cfg(feature = "pkcs11")]
        KeyRef::Pkcs11(uri) => crate::pkcs11::store_certificate(uri, der, replace, options),
        KeyRef::Env(_) => Err(KeyError::NotSupported {
            operation: "keeping a certificate with the key".into(),
            backend: "env",
            reason: "an environment variable has no place for it; write the certificate to a file (--out) \
                     and give that file to whoever needs it"
                .into(),
        }),
        KeyRef::Vault(_) | KeyRef::AwsKms(_) => Err(KeyError::NotSupported {
            operation: "keeping a certificate with the key".into(),
            backend: key_ref.backend(),
            reason: "a key service keeps keys, not certificates; write the certificate to a file (--out) and \
                     give that file to whoever needs it"
                .into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(KeyError::BackendNotCompiled {
            backend: other.backend(),
            feature: other.backend(),
        }),
    }
}

/// The DER certificate kept with the key `key_ref` names (module docs), or `None`. A kept certificate
/// whose public key is not the key's is an error, not an answer.
///
/// # Errors
/// [`KeyError::InvalidKeyMaterial`] for a `PATH.crt` that is not one certificate of the key; the errors of
/// opening the key.
pub fn read_certificate(
    key_ref: &KeyRef,
    options: &OpenOptions,
) -> Result<Option<Vec<u8>>, KeyError> {
    let _ = options;
    match key_ref {
        #[cfg(feature = "file")]
        KeyRef::File(path) => {
            let crt = certificate_path(path);
            let bytes = match std::fs::read(&crt) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(KeyError::Io { path: crt, source }),
            };
            let der = certificate_der(&bytes).map_err(|e| match e {
                KeyError::InvalidKeyMaterial { reason } => {
                    KeyError::invalid_key(format!("{}: {reason}", crt.display()))
                }
                other => other,
            })?;
            let key = crate::file::load(path, options.allow_insecure_permissions)?;
            check_key(
                &Certificate::from_der(&der)?,
                crate::KeyBackend::public_key(&key),
                key_ref,
            )
            .map_err(|e| KeyError::invalid_key(format!("{}: {e}", crt.display())))?;
            Ok(Some(der))
        }
        #[cfg(feature = "pkcs11")]
        KeyRef::Pkcs11(uri) => crate::pkcs11::read_certificate(uri, options),
        // An environment variable or a key service has no place for a certificate: none is kept.
        KeyRef::Env(_) | KeyRef::Vault(_) | KeyRef::AwsKms(_) => Ok(None),
        #[allow(unreachable_patterns)]
        other => Err(KeyError::BackendNotCompiled {
            backend: other.backend(),
            feature: other.backend(),
        }),
    }
}

/// The DER of the one certificate in `bytes` (PEM `CERTIFICATE` or DER). A chain is refused: a key keeps
/// its own certificate.
///
/// # Errors
/// [`KeyError::InvalidKeyMaterial`] saying what was found instead.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::from_der(bytes)?;
        return Ok(bytes.to_vec());
    }
    let blocks = pem::parse_many(bytes).map_err(|_| KeyError::invalid_key("not valid PEM"))?;
    if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
        return Err(KeyError::invalid_key(
            "this file holds a private key; give the certificate alone",
        ));
    }
    match blocks.as_slice() {
        [one] if one.tag() == "CERTIFICATE" => {
            Certificate::from_der(one.contents())?;
            Ok(one.contents().to_vec())
        }
        [] | [_] => Err(KeyError::invalid_key("no CERTIFICATE PEM block found")),
        _ => Err(KeyError::invalid_key(
            "more than one PEM block: give the key's own certificate alone (not its chain)",
        )),
    }
}

#[cfg_attr(not(feature = "file"), allow(dead_code))]
fn check_key(
    certificate: &Certificate,
    public: &crate::PublicKey,
    key_ref: &KeyRef,
) -> Result<(), KeyError> {
    if &certificate.public_key == public {
        Ok(())
    } else {
        Err(KeyError::invalid_key(format!(
            "the certificate's public key ({}) is not the public key of {key_ref} ({}); give the certificate \
             issued for this key",
            certificate.public_key.describe(),
            public.describe()
        )))
    }
}

#[cfg(feature = "file")]
fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Writes `contents` to `path` through a temporary file in the same directory: hard-linked into place
/// (failing if anything is there) or, when `replace`, renamed over it.
#[cfg(feature = "file")]
fn write_new(path: &Path, contents: &str, replace: bool) -> Result<(), KeyError> {
    use std::io::Write as _;
    let failed = |source: std::io::Error| KeyError::WriteFailed {
        path: path.to_owned(),
        reason: source.to_string(),
        source,
    };
    let exists = || KeyError::AlreadyExists {
        path: path.to_owned(),
    };
    if !replace && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| failed(std::io::Error::other("no randomness")))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(".{suffix}.tmp"));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        if replace {
            std::fs::rename(&temp, path)
        } else {
            std::fs::hard_link(&temp, path)
        }
    })();
    let _ = std::fs::remove_file(&temp);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(all(test, feature = "file"))]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_sits_beside_the_key() {
        assert_eq!(
            certificate_path(Path::new("/k/issuer.pem")),
            Path::new("/k/issuer.pem.crt")
        );
    }

    #[test]
    fn chains_and_private_keys_are_not_a_certificate() {
        let block = |tag: &str| pem::encode(&pem::Pem::new(tag, vec![0x30, 0x00]));
        let chain = format!("{}{}", block("CERTIFICATE"), block("CERTIFICATE"));
        assert!(
            certificate_der(chain.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("not its chain")
        );
        let key = block("PRIVATE KEY");
        assert!(
            certificate_der(key.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("private key")
        );
        assert!(certificate_der(b"\x30\x00").is_err());
    }
}

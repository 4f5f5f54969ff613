//! The `file` backend: a private key in a PEM (or DER) file on disk.
//!
//! The file must not be readable by group or others unless the caller allows it
//! ([`OpenOptions::allow_insecure_permissions`](crate::OpenOptions)); keys are written PKCS#8 PEM with mode 0600
//! and never over an existing file.

use std::io::Write as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::software::{self, KeySpec, SoftwareKey};

/// Loads the private key at `path`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use key_provider::{KeyBackend as _, KeySpec};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("key.pem");
/// # key_provider::file::generate(&path, KeySpec::Rsa(2048))?;
/// let key = key_provider::file::load(&path, false)?; // false: refuse a group/world-readable file
/// assert_eq!(key.key_label(), format!("file:{}", path.display()));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::Io`], [`KeyError::InsecurePermissions`] or [`KeyError::InvalidKeyMaterial`].
pub fn load(path: &Path, allow_insecure_permissions: bool) -> Result<SoftwareKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    check_permissions(path, &meta, allow_insecure_permissions)?;
    let bytes = Zeroizing::new(std::fs::read(path).map_err(io)?);
    SoftwareKey::from_bytes("file", format!("file:{}", path.display()), &bytes)
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata, allow: bool) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path, _: &std::fs::Metadata, _: bool) -> Result<(), KeyError> {
    Ok(())
}

/// Generates a key and writes it to `path` as PKCS#8 PEM with mode 0600; refuses to overwrite.
/// Returns the loaded key.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use key_provider::{EcCurve, KeyBackend as _, KeySpec};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("signing.pem");
/// let key = key_provider::file::generate(&path, KeySpec::Ec(EcCurve::P256))?;
/// assert_eq!(key.public_key().describe(), "EC P-256");
/// // Never over an existing file:
/// assert!(key_provider::file::generate(&path, KeySpec::Rsa(2048)).is_err());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::AlreadyExists`] when the file exists; [`KeyError::Io`] on write failure.
pub fn generate(path: &Path, spec: KeySpec) -> Result<SoftwareKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let der = software::generate_pkcs8(spec)?;
    let pem = software::pkcs8_to_pem(&der);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            io(e)
        }
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    SoftwareKey::from_bytes("file", format!("file:{}", path.display()), pem.as_bytes())
}

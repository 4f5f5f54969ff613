//! The `file` backend: a private key in a PEM (or DER) file on disk.
//!
//! The file must not be readable by group or others unless the caller allows it
//! ([`OpenOptions::allow_insecure_permissions`](crate::OpenOptions)); the mode checked is that of the file
//! opened and read (`fstat` on the open handle), never a second lookup of the path. Keys are written PKCS#8
//! PEM with mode 0600 and never over an existing file.

use std::io::{Read as _, Write as _};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::software::{self, KeySpec, SoftwareKey};

/// Largest key file read (a PEM private key with a certificate chain is a few KiB).
const MAX_KEY_FILE: u64 = 1024 * 1024;

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
    let not_a_file = || io(std::io::Error::other("not a regular file"));
    // Only to avoid opening a FIFO or a device (which may block): the checks that count are made below, on
    // the file actually opened.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_a_file());
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // The mode of the file we opened and will read (fstat), not of whatever the path names a moment later:
    // the path may be replaced between a check by path and the read.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    check_permissions(path, &meta, allow_insecure_permissions)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyError::invalid_key(format!(
            "{} is larger than {} KiB; a key file holds one private key",
            path.display(),
            MAX_KEY_FILE / 1024
        )));
    }
    // Allocated once for the whole file (bounded by its size at open), so no reallocation leaves an unwiped
    // copy of the key bytes behind.
    let size = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(size));
    file.take(meta.len()).read_to_end(&mut bytes).map_err(io)?;
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
/// [`KeyError::AlreadyExists`] when the file exists; [`KeyError::WriteFailed`] when it cannot be written
/// (naming a missing directory as such).
pub fn generate(path: &Path, spec: KeySpec) -> Result<SoftwareKey, KeyError> {
    let der = software::generate_pkcs8(spec)?;
    let pem = software::pkcs8_to_pem(&der);
    write_new(path, pem.as_bytes())?;
    SoftwareKey::from_bytes("file", format!("file:{}", path.display()), pem.as_bytes())
}

/// Writes `contents` to a new file of mode 0600, never over an existing one.
fn write_new(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
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
            write_failed(path, e)
        }
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| write_failed(path, e))
}

/// [`KeyError::WriteFailed`], saying so when the cause is a directory that does not exist.
fn write_failed(path: &Path, source: std::io::Error) -> KeyError {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let reason = if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
        format!(
            "directory {} does not exist; create it first (e.g. `mkdir -p -m 700 {}`)",
            dir.display(),
            dir.display()
        )
    } else {
        source.to_string()
    };
    KeyError::WriteFailed {
        path: path.to_owned(),
        reason,
        source,
    }
}

/// Writes an imported key to a new file (PKCS#8 PEM, mode 0600; never over an existing file) and opens it:
/// `keybound keys import --key file:PATH`, for development (a production key belongs in an HSM).
///
/// # Errors
/// As [`generate`].
pub fn import(path: &Path, key: &crate::ImportKey) -> Result<SoftwareKey, KeyError> {
    let pem = software::pkcs8_to_pem(key.pkcs8());
    write_new(path, pem.as_bytes())?;
    SoftwareKey::from_bytes("file", format!("file:{}", path.display()), pem.as_bytes())
}

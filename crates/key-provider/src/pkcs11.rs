//! The `pkcs11` backend: keys inside a PKCS#11 token. Not yet available in this build.

use std::sync::Arc;

use crate::{KeyBackend, KeyError, OpenOptions, Pkcs11Uri};

/// Opens a key in a PKCS#11 token.
///
/// # Errors
/// Always [`KeyError::NotSupported`] until the PKCS#11 backend lands.
pub fn open(_uri: &Pkcs11Uri, _options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    Err(KeyError::NotSupported {
        operation: "opening a PKCS#11 key".into(),
        backend: "pkcs11",
        reason: "the PKCS#11 backend is not yet available".into(),
    })
}

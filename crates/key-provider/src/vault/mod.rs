//! Placeholder: the vault backend (issue 16), written on its own branch.

use std::sync::Arc;

use crate::{KeyBackend, KeyError, OpenOptions};

/// Opens a key (not written yet).
///
/// # Errors
/// Always, for now.
pub fn open(r: &crate::VaultRef, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let _ = (r, options);
    Err(KeyError::NotSupported {
        operation: "open".into(),
        backend: "vault",
        reason: "not written yet".into(),
    })
}

//! Hooks into the process-wide PKCS#11 state for keybound's own tests, compiled only with the `test-hooks`
//! feature, which only the `keybound-test-support` crate (a dev-dependency, never published) switches on.
//! **Never enable it in production**: it hands out the logged-in context of a module and sessions of a
//! token's pool outside any key's control. Not a stable API.
//!
//! The tests reach these through `keybound_test_support::pkcs11`, which also owns the SoftHSM test tokens.

use std::path::Path;
use std::sync::{MutexGuard, PoisonError};

use super::token::Lease;
use crate::{KeyError, OpenOptions, Pkcs11Uri};

/// The process-wide context of `module`, the very one keys opened on it use.
///
/// # Errors
/// As opening a key: the module cannot be found, loaded or initialised.
pub fn context(module: &Path) -> Result<cryptoki::context::Pkcs11, KeyError> {
    super::module::context(module).map(|(_, ctx)| ctx)
}

/// The slot the token of `uri` is in now (without listing the slots again, which must not race with
/// the backend's own listing: see [`lock_slot_listing`]).
///
/// # Errors
/// As opening a key on that token.
pub fn slot(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<cryptoki::slot::Slot, KeyError> {
    super::key::reach(uri, options)?.token.slot()
}

/// Holds the process-wide lock the backend takes around every slot listing. SoftHSM 2.6 adds its free slot
/// inside `C_GetSlotList` without a lock of its own, so a test that lists slots or initialises a token must
/// hold this meanwhile, or a concurrent listing in the backend may abort the process.
pub fn lock_slot_listing() -> MutexGuard<'static, ()> {
    super::token::SLOT_LISTING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Sessions of a token's pool kept busy until dropped.
#[derive(Debug)]
pub struct HeldSessions {
    _leases: Vec<Lease>,
}

/// Takes `count` sessions from the pool of the token of `uri` (logging in with the URI's PIN) and holds them.
///
/// # Errors
/// As opening a key on that token.
pub fn hold_sessions(
    uri: &Pkcs11Uri,
    options: &OpenOptions,
    count: usize,
) -> Result<HeldSessions, KeyError> {
    let reached = super::key::reach(uri, options)?;
    Ok(HeldSessions {
        _leases: reached.token.hold(reached.pin.as_ref(), count)?,
    })
}

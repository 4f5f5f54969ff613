//! SoftHSM tokens for test binaries, and key-provider's hooks into the process-wide PKCS#11 state
//! (re-exported from `key_provider::pkcs11::test_hooks`, compiled only with key-provider's `test-hooks`
//! feature, which this crate alone switches on).
//!
//! `cargo xtask softhsm-test` and `cargo xtask test` create a SoftHSM token directory and export:
//!
//! | variable | meaning |
//! |---|---|
//! | `SOFTHSM2_CONF` | the run's `softhsm2.conf` (read by SoftHSM itself) |
//! | `KEYBOUND_PKCS11_MODULE` ([`MODULE_ENV`]) | the module path |
//! | `KEYBOUND_TEST_PKCS11_TOKEN` ([`TOKEN_ENV`]) | label of the token the run initialised |
//! | `KEYBOUND_TEST_PKCS11_PIN_FILE` ([`PIN_FILE_ENV`]) | user PIN file (mode 0600) |
//! | `KEYBOUND_TEST_PKCS11_SO_PIN_FILE` ([`SO_PIN_FILE_ENV`]) | security officer PIN file (mode 0600) |
//! | `KEYBOUND_TEST_PKCS11_REQUIRED` ([`REQUIRED_ENV`]) | `1`: a missing variable fails the test instead of skipping it |
//!
//! Without them, [`TestToken::shared`] and [`TestToken::fresh`] print a loud "SKIPPED" line and return `None`,
//! so `cargo test` passes on machines without SoftHSM.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use key_provider::{PinSource, Pkcs11Uri};
use zeroize::Zeroizing;

pub use key_provider::pkcs11::MODULE_ENV;
pub use key_provider::pkcs11::test_hooks::{
    HeldSessions, context, hold_sessions, lock_slot_listing, slot,
};

/// Label of the token `cargo xtask softhsm-test` initialised.
pub const TOKEN_ENV: &str = "KEYBOUND_TEST_PKCS11_TOKEN";
/// Path of the user PIN file.
pub const PIN_FILE_ENV: &str = "KEYBOUND_TEST_PKCS11_PIN_FILE";
/// Path of the security officer PIN file (lets tests initialise their own tokens).
pub const SO_PIN_FILE_ENV: &str = "KEYBOUND_TEST_PKCS11_SO_PIN_FILE";
/// `1` makes missing PKCS#11 test variables a test failure (set by `cargo xtask softhsm-test`).
pub const REQUIRED_ENV: &str = "KEYBOUND_TEST_PKCS11_REQUIRED";

/// A token tests can create keys in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestToken {
    /// PKCS#11 module.
    pub module: PathBuf,
    /// Token label.
    pub label: String,
    /// User PIN file (mode 0600).
    pub pin_file: PathBuf,
}

fn skipped(test: &str, missing: &str) -> Option<TestToken> {
    assert!(
        std::env::var(REQUIRED_ENV).map_or(true, |v| v != "1"),
        "{test}: {missing} is not set, but {REQUIRED_ENV}=1 requires the PKCS#11 tests to run"
    );
    // Written straight to the process's stderr, past the test harness's output capture, so that it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: this PKCS#11 test needs a SoftHSM token ({missing} is not set); \
         run it with `cargo xtask softhsm-test` ***"
    );
    None
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The PIN in the first line of a PIN file (as the backend reads `pin-source=file:`; the backend itself
/// checks the file's mode when a key is opened with it).
fn read_pin(path: &Path) -> AuthPin {
    let text = Zeroizing::new(std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read PIN file {} for PKCS#11 tests: {e}",
            path.display()
        )
    }));
    let line = text.lines().next().unwrap_or_default();
    assert!(!line.is_empty(), "PIN file {} is empty", path.display());
    AuthPin::from(line.to_owned())
}

impl TestToken {
    /// The token `cargo xtask softhsm-test` initialised, or `None` (after a loud SKIPPED line) without it.
    #[must_use]
    pub fn shared(test: &str) -> Option<Self> {
        let Some(module) = env_path(MODULE_ENV) else {
            return skipped(test, MODULE_ENV);
        };
        let Ok(label) = std::env::var(TOKEN_ENV) else {
            return skipped(test, TOKEN_ENV);
        };
        let Some(pin_file) = env_path(PIN_FILE_ENV) else {
            return skipped(test, PIN_FILE_ENV);
        };
        Some(Self {
            module,
            label,
            pin_file,
        })
    }

    /// A token of this process's own, `name`d (one per name per process), initialised on the token
    /// directory's free slot with the shared PINs. Token creation is serialised within the process.
    ///
    /// # Panics
    /// When the token cannot be created.
    #[must_use]
    pub fn fresh(test: &str, name: &str) -> Option<Self> {
        let shared = Self::shared(test)?;
        let Some(so_pin_file) = env_path(SO_PIN_FILE_ENV) else {
            return skipped(test, SO_PIN_FILE_ENV);
        };
        static FRESH: OnceLock<Mutex<HashMap<String, TestToken>>> = OnceLock::new();
        let mut tokens = FRESH
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = tokens.get(name) {
            return Some(token.clone());
        }
        let mut label = format!("kb{:x}-{name}", std::process::id());
        label.truncate(32);
        init_token(
            &shared.module,
            &label,
            &read_pin(&so_pin_file),
            &read_pin(&shared.pin_file),
        )
        .unwrap_or_else(|e| panic!("cannot create test token {label}: {e}"));
        let token = Self { label, ..shared };
        tokens.insert(name.to_owned(), token.clone());
        Some(token)
    }

    /// `pkcs11:token=…;object=OBJECT?module-path=…&pin-source=file:…`
    #[must_use]
    pub fn key_ref(&self, object: &str) -> String {
        // `Pkcs11Uri` is non-exhaustive outside key-provider: a default one, filled in.
        let mut uri = Pkcs11Uri::default();
        uri.token = Some(self.label.clone());
        uri.object = Some(object.to_owned());
        uri.module_path = Some(self.module.clone());
        uri.pin_source = Some(PinSource::File(self.pin_file.clone()));
        uri.to_string()
    }

    /// As [`TestToken::key_ref`], parsed.
    ///
    /// # Panics
    /// Never for the URIs [`TestToken::key_ref`] writes.
    #[must_use]
    pub fn uri(&self, object: &str) -> Pkcs11Uri {
        self.key_ref(object)
            .parse()
            .unwrap_or_else(|e| panic!("test URI does not parse: {e}"))
    }
}

/// Initialises a token on the module's free (uninitialised) slot, and its user PIN.
fn init_token(
    module: &Path,
    label: &str,
    so_pin: &AuthPin,
    user_pin: &AuthPin,
) -> Result<(), String> {
    let ctx = context(module).map_err(|e| e.to_string())?;
    // No slot listing may run in another thread meanwhile (SoftHSM adds its free slot without a lock).
    let _listing = lock_slot_listing();
    let slots = ctx.get_slots_with_token().map_err(|e| e.to_string())?;
    let free = slots
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .is_ok_and(|info| !info.token_initialized())
        })
        .ok_or("no free slot (SoftHSM always has one; is this SoftHSM?)")?;
    ctx.init_token(free, so_pin, label)
        .map_err(|e| format!("C_InitToken: {e}"))?;
    let session = ctx
        .open_rw_session(free)
        .map_err(|e| format!("C_OpenSession: {e}"))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(|e| format!("C_Login(SO): {e}"))?;
    session
        .init_pin(user_pin)
        .map_err(|e| format!("C_InitPIN: {e}"))?;
    session.logout().map_err(|e| format!("C_Logout: {e}"))?;
    Ok(())
}

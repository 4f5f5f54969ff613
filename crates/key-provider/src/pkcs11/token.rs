//! Tokens, sessions and login: the part of the PKCS#11 backend that keeps working when the HSM drops its
//! sessions.
//!
//! One [`Token`] per (module, token) per process, shared by every key opened on it, found by token label
//! and/or serial (never by slot index: SoftHSM gives random slot ids, and slots move when tokens come and
//! go). Each token keeps:
//!
//! - one **keep-alive session**, logged in as the user. Login state belongs to the application, not the
//!   session, and most tokens log the application out when its last session closes: the keep-alive session
//!   keeps the login across idle periods. `CKR_USER_ALREADY_LOGGED_IN` counts as success once a PIN was
//!   verified by the token in this process (and the key's PIN is that one); before that, it means other code
//!   logged the token in, the token does not look at the PIN, and so the key is refused (see below).
//! - a **bounded pool** of operation sessions (read-only; `pkcs11_max_sessions`, default 8). A caller that
//!   finds every session busy waits up to `pkcs11_session_wait` (default 5 s) and then fails with
//!   [`KeyError::Timeout`].
//! - a **generation** number. Object handles are cached per generation. When an operation fails with
//!   `SESSION_HANDLE_INVALID`, `SESSION_CLOSED`, `USER_NOT_LOGGED_IN`, `OBJECT_HANDLE_INVALID`,
//!   `KEY_HANDLE_INVALID`, `TOKEN_NOT_PRESENT` or `DEVICE_REMOVED`, the generation moves on: every session is
//!   dropped, the token logs in again, keys are looked up again (object handles are never reused across a
//!   re-login), and the operation is retried once. A second failure is reported, naming both codes.
//!
//! Session handles that the module says are gone are forgotten, never closed: the module may already have
//! handed the same numbers out again (SoftHSM does), and closing them would close someone else's session.
//!
//! A PIN that the token rejected fails the key opened with it, and only that key: nothing is finalised, other
//! keys on the same module keep working. Once a PIN has logged in, a key that brings a different PIN for the
//! same token is refused without asking the token (which would answer `CKR_USER_ALREADY_LOGGED_IN` whatever
//! the PIN). When other code in the process logged the token in before keybound's first login, no PIN can be
//! checked (PKCS#11 has no "verify PIN" call; `C_Logout` + `C_Login` would log the other code out, for good
//! if the PIN is wrong; `C_SetPIN` writes to the token): every key on that token is refused with
//! [`KeyError::LoginFailed`] until keybound can log in itself.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use crate::audit;
use crate::error::KeyError;
use crate::{OpenOptions, Pkcs11Uri};

use super::BACKEND;
use super::errors::{Failed, Failure, Recovery, ckr_name};
use super::pin::pins_equal;

/// Which token a key reference selects: every criterion given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) label: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) slot_id: Option<u64>,
}

impl Selector {
    pub(crate) fn from_uri(uri: &Pkcs11Uri) -> Self {
        Self {
            label: uri.token.clone(),
            serial: uri.serial.clone(),
            manufacturer: uri.manufacturer.clone(),
            model: uri.model.clone(),
            slot_id: uri.slot_id,
        }
    }

    fn matches(&self, slot: Slot, info: &TokenFacts) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.label, &info.label)
            && eq(&self.serial, &info.serial)
            && eq(&self.manufacturer, &info.manufacturer)
            && eq(&self.model, &info.model)
            && self.slot_id.is_none_or(|id| id == slot.id())
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.label {
            parts.push(format!("label '{l}'"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial '{s}'"));
        }
        if let Some(m) = &self.manufacturer {
            parts.push(format!("manufacturer '{m}'"));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model '{m}'"));
        }
        if let Some(s) = self.slot_id {
            parts.push(format!("slot-id {s}"));
        }
        if parts.is_empty() {
            "any initialised token".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The token fields keybound looks at, trimmed of their blank padding.
#[derive(Debug, Clone)]
pub(crate) struct TokenFacts {
    pub(crate) label: String,
    pub(crate) serial: String,
    manufacturer: String,
    model: String,
    initialized: bool,
    login_required: bool,
}

fn facts(ctx: &Pkcs11, slot: Slot) -> Result<TokenFacts, CkError> {
    let info = ctx.get_token_info(slot)?;
    Ok(TokenFacts {
        label: info.label().trim_end().to_owned(),
        serial: info.serial_number().trim_end().to_owned(),
        manufacturer: info.manufacturer_id().trim_end().to_owned(),
        model: info.model().trim_end().to_owned(),
        initialized: info.token_initialized(),
        login_required: info.login_required(),
    })
}

/// Finds the one slot whose (initialised) token matches `selector`.
///
/// # Errors
/// [`KeyError::NotFound`] listing the tokens present, [`KeyError::Ambiguous`], or [`KeyError::Backend`].
pub(crate) fn find_slot(
    ctx: &Pkcs11,
    selector: &Selector,
    module: &Path,
) -> Result<(Slot, TokenFacts), KeyError> {
    let _listing = lock(&SLOT_LISTING);
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| Failure::Ck(e).into_key_error(&module.display().to_string()))?;
    let mut present = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        let info = match facts(ctx, slot) {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(slot = slot.id(), error = %e, "skipping a slot whose token cannot be read");
                continue;
            }
        };
        if !info.initialized {
            continue;
        }
        present.push(format!("'{}' (serial {})", info.label, info.serial));
        if selector.matches(slot, &info) {
            found.push((slot, info));
        }
    }
    let searched = || format!("{} in module {}", selector.describe(), module.display());
    match found.len() {
        1 => found.pop().ok_or_else(|| KeyError::NotFound {
            backend: BACKEND,
            what: "token",
            searched: searched(),
        }),
        0 => Err(KeyError::NotFound {
            backend: BACKEND,
            what: "token",
            searched: format!(
                "{} (tokens present: {})",
                searched(),
                if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(", ")
                }
            ),
        }),
        count => Err(KeyError::Ambiguous {
            backend: BACKEND,
            what: "token",
            searched: searched(),
            count,
        }),
    }
}

/// Serialises slot enumeration (and token initialisation in tests, through `test_hooks::lock_slot_listing`): SoftHSM 2.6 adds its "free slot" inside
/// `C_GetSlotList` without a lock, and two threads listing at once after a token was initialised abort the
/// process (`SlotManager::insertToken: Assertion 'result.second' failed`). Listing is rare (opening a key,
/// finding a token again), so one process-wide lock costs nothing.
pub(crate) static SLOT_LISTING: Mutex<()> = Mutex::new(());

type TokenKey = (PathBuf, String, String);

static TOKENS: OnceLock<Mutex<HashMap<TokenKey, Arc<Token>>>> = OnceLock::new();

/// Locks a mutex whose data stays consistent even if a holder panicked (every update is a single step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One token of one module, shared by every key on it in this process.
pub(crate) struct Token {
    ctx: Pkcs11,
    module: PathBuf,
    label: String,
    serial: String,
    description: String,
    login_required: bool,
    max_sessions: usize,
    pool: Mutex<Pool>,
    available: Condvar,
    /// Held while an object is created in the token (see [`Token::creating`]).
    creating: Mutex<()>,
}

struct Pool {
    slot: Option<Slot>,
    generation: u64,
    keepalive: Option<Session>,
    logged_in: bool,
    /// A PIN the token itself accepted (`C_Login` returned `CKR_OK`) in this process.
    verified_pin: Option<SecretString>,
    idle: Vec<Session>,
    /// Pooled sessions of this generation, idle or leased.
    open: usize,
    /// A dropped generation whose sessions are still valid and so may be closed when they come back.
    closable_generation: Option<u64>,
    /// Callers blocked in `checkout` until a session comes back (no wake-up call is made without one).
    waiting: usize,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module)
            .field("label", &self.label)
            .field("serial", &self.serial)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// What becomes of a leased session when the lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Back into the pool.
    Reuse,
    /// Closed (after a failed operation, whose state on the session is unknown).
    Close,
}

/// A session borrowed from a token; returned (or closed) when dropped.
pub(crate) struct Lease {
    token: Arc<Token>,
    session: Option<Session>,
    generation: u64,
    pooled: bool,
    fate: Fate,
}

impl Lease {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.token
                .give_back(session, self.generation, self.pooled, self.fate);
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("token", &self.token.description)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A successful operation, and whether it needed a reconnect.
#[derive(Debug)]
pub(crate) struct Ran<T> {
    pub(crate) value: T,
    pub(crate) retried: bool,
}

impl Token {
    /// The token a key reference names, from the process-wide registry (created on first use).
    ///
    /// # Errors
    /// See [`find_slot`].
    pub(crate) fn get(
        ctx: &Pkcs11,
        module: &Path,
        uri: &Pkcs11Uri,
        options: &OpenOptions,
    ) -> Result<Arc<Self>, KeyError> {
        let (slot, info) = find_slot(ctx, &Selector::from_uri(uri), module)?;
        let key = (module.to_owned(), info.serial.clone(), info.label.clone());
        let mut tokens = lock(TOKENS.get_or_init(Default::default));
        if let Some(token) = tokens.get(&key) {
            return Ok(Arc::clone(token));
        }
        let token = Arc::new(Self {
            ctx: ctx.clone(),
            module: module.to_owned(),
            description: format!("token '{}' (serial {})", info.label, info.serial),
            label: info.label,
            serial: info.serial,
            login_required: info.login_required,
            max_sessions: options
                .pkcs11_max_sessions
                .unwrap_or(OpenOptions::DEFAULT_PKCS11_MAX_SESSIONS)
                .max(1),
            pool: Mutex::new(Pool {
                slot: Some(slot),
                generation: 0,
                keepalive: None,
                logged_in: false,
                verified_pin: None,
                idle: Vec::new(),
                open: 0,
                closable_generation: None,
                waiting: 0,
            }),
            available: Condvar::new(),
            creating: Mutex::new(()),
        });
        tokens.insert(key, Arc::clone(&token));
        Ok(token)
    }

    /// `token 'LABEL' (serial SERIAL)`, for messages.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// The token's label.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The token's serial number.
    pub(crate) fn serial(&self) -> &str {
        &self.serial
    }

    /// One object creation at a time in this token, within this process. It makes "label and id are free"
    /// and the creation one step for the callers of this process, and works around SoftHSM's file object
    /// store, which fails concurrent `C_GenerateKeyPair` / `C_CreateObject` calls on one token with
    /// `CKR_GENERAL_ERROR` (SoftHSMv2 issue 573). Signing and decryption never take it.
    pub(crate) fn creating(&self) -> MutexGuard<'_, ()> {
        lock(&self.creating)
    }

    /// The slot the token is in now (found again if it was lost); for the test hooks.
    ///
    /// # Errors
    /// See [`find_slot`].
    #[cfg(feature = "test-hooks")]
    pub(crate) fn slot(&self) -> Result<Slot, KeyError> {
        let mut pool = lock(&self.pool);
        self.current_slot(&mut pool)
    }

    fn selector(&self) -> Selector {
        Selector {
            label: Some(self.label.clone()),
            serial: Some(self.serial.clone()),
            ..Selector::default()
        }
    }

    fn current_slot(&self, pool: &mut Pool) -> Result<Slot, KeyError> {
        if let Some(slot) = pool.slot {
            return Ok(slot);
        }
        let (slot, _) = find_slot(&self.ctx, &self.selector(), &self.module)?;
        pool.slot = Some(slot);
        Ok(slot)
    }

    fn login_failed(&self, reason: String) -> Failure {
        Failure::Key(KeyError::LoginFailed {
            backend: BACKEND,
            token: self.description.clone(),
            reason,
        })
    }

    /// Makes sure the keep-alive session is open and logged in; returns the slot.
    fn ensure_login(&self, pool: &mut Pool, pin: Option<&SecretString>) -> Result<Slot, Failure> {
        if self.login_required {
            let Some(pin) = pin else {
                return Err(Failure::Key(KeyError::PinUnavailable {
                    reason: format!(
                        "{} requires a PIN: add `pin-source=file:/path/to/pin`, `pin-source=env:VAR` or `pin-source=prompt` to the key reference",
                        self.description
                    ),
                }));
            };
            if let Some(verified) = &pool.verified_pin {
                if !pins_equal(verified, pin) {
                    let failure = self.login_failed(
                        "wrong PIN (it is not the PIN this process logged in to the token with)"
                            .into(),
                    );
                    let error = failure.describe();
                    audit::login(
                        BACKEND,
                        &self.description,
                        Instant::now(),
                        Err((&error, None)),
                    );
                    return Err(failure);
                }
            }
        }
        let slot = self.current_slot(pool)?;
        if pool.logged_in && pool.keepalive.is_some() {
            return Ok(slot);
        }
        if pool.keepalive.is_none() {
            pool.keepalive = Some(self.ctx.open_ro_session_no_drop(slot)?);
        }
        if self.login_required {
            let Some(keepalive) = pool.keepalive.as_ref() else {
                return Err(Failure::Key(KeyError::Backend {
                    backend: BACKEND,
                    message: format!("{}: no keep-alive session", self.description),
                    source: None,
                }));
            };
            let started = Instant::now();
            match self.login(keepalive, pin, pool.verified_pin.is_some()) {
                Ok(()) => audit::login(BACKEND, &self.description, started, Ok(())),
                Err((failure, ckr)) => {
                    let error = failure.describe();
                    audit::login(
                        BACKEND,
                        &self.description,
                        started,
                        Err((&error, ckr.as_deref())),
                    );
                    return Err(failure);
                }
            }
            if pool.verified_pin.is_none() {
                pool.verified_pin = pin.cloned();
            }
        }
        pool.logged_in = true;
        Ok(slot)
    }

    /// `C_Login` as the user on the keep-alive session. `verified`: a PIN the token accepted before (and the
    /// same as `pin`, compared by the caller).
    /// On failure, the failure and the `CKR_…` name of `C_Login`'s answer.
    fn login(
        &self,
        keepalive: &Session,
        pin: Option<&SecretString>,
        verified: bool,
    ) -> Result<(), (Failure, Option<String>)> {
        match keepalive.login(UserType::User, pin) {
            Ok(()) => {
                tracing::debug!(token = %self.description, "logged in");
                Ok(())
            }
            // Login state belongs to the application: other code in this process logged the token in,
            // and the token answers this to any PIN. With a PIN keybound verified before (compared
            // by the caller), that is success. Without one, the PIN cannot be checked: logging out to check
            // it would log the other code out too (for good, if the PIN is wrong), so it is refused.
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if !verified {
                    return Err((
                        self.login_failed(
                            "the token is already logged in by other code in this process \
                             (C_Login answered CKR_USER_ALREADY_LOGGED_IN), so the token cannot check this \
                             key's PIN and keybound refuses it; open keybound's keys on this token before \
                             other code logs in to it"
                                .into(),
                        ),
                        Some("CKR_USER_ALREADY_LOGGED_IN".to_owned()),
                    ));
                }
                tracing::debug!(token = %self.description, "already logged in");
                Ok(())
            }
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange),
                _,
            )) => Err((
                self.login_failed(format!("the token rejected the PIN ({})", ckr_name(rv))),
                Some(ckr_name(rv)),
            )),
            Err(CkError::Pkcs11(rv @ (RvError::PinLocked | RvError::PinExpired), _)) => Err((
                self.login_failed(format!(
                    "the PIN is locked or expired ({}); ask the token's security officer to reset it",
                    ckr_name(rv)
                )),
                Some(ckr_name(rv)),
            )),
            Err(e) => {
                let failure = Failure::Ck(e);
                let ckr = failure.ckr();
                Err((failure, ckr))
            }
        }
    }

    /// Borrows a logged-in session: a pooled read-only one, or (`read_write`) a fresh read-write one.
    fn checkout(
        self: &Arc<Self>,
        pin: Option<&SecretString>,
        wait: Duration,
        read_write: bool,
    ) -> Result<Lease, (Failure, u64)> {
        let deadline = Instant::now() + wait;
        let mut pool = lock(&self.pool);
        loop {
            let generation = pool.generation;
            let slot = self
                .ensure_login(&mut pool, pin)
                .map_err(|f| (f, generation))?;
            let lease = |session, pooled| Lease {
                token: Arc::clone(self),
                session: Some(session),
                generation,
                pooled,
                fate: Fate::Reuse,
            };
            if read_write {
                let session = self
                    .ctx
                    .open_rw_session_no_drop(slot)
                    .map_err(|e| (Failure::Ck(e), generation))?;
                return Ok(lease(session, false));
            }
            if let Some(session) = pool.idle.pop() {
                return Ok(lease(session, true));
            }
            if pool.open < self.max_sessions {
                let session = self
                    .ctx
                    .open_ro_session_no_drop(slot)
                    .map_err(|e| (Failure::Ck(e), generation))?;
                pool.open += 1;
                return Ok(lease(session, true));
            }
            let now = Instant::now();
            if now >= deadline {
                let waited_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                return Err((
                    Failure::Key(KeyError::Timeout {
                        backend: BACKEND,
                        what: format!(
                            "a free session on {} (all {} are busy; raise the pool size or the wait)",
                            self.description, self.max_sessions
                        ),
                        waited_ms,
                    }),
                    generation,
                ));
            }
            pool.waiting += 1;
            pool = match self.available.wait_timeout(pool, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
            pool.waiting -= 1;
        }
    }

    fn give_back(&self, session: Session, generation: u64, pooled: bool, fate: Fate) {
        let mut pool = lock(&self.pool);
        if generation != pool.generation {
            // A session of a dropped generation: close it only if its handle is known to be valid still.
            let closable = pool.closable_generation == Some(generation);
            drop(pool);
            if closable {
                close(session);
            }
            return;
        }
        // Waiters count under the lock before they wait, so none can be missed here.
        let wake = pool.waiting > 0;
        match (fate, pooled) {
            (Fate::Reuse, true) => {
                pool.idle.push(session);
                drop(pool);
            }
            (Fate::Reuse | Fate::Close, _) => {
                if pooled {
                    pool.open = pool.open.saturating_sub(1);
                }
                drop(pool);
                close(session);
            }
        }
        // A futex wake-up is a system call: make it only for a caller that waits.
        if wake {
            self.available.notify_one();
        }
    }

    /// Drops every session of `generation` (if it is still the current one) and forces a new login.
    pub(crate) fn invalidate(&self, generation: u64, recovery: Recovery, cause: &Failure) {
        let mut pool = lock(&self.pool);
        if pool.generation != generation {
            return; // someone else already reconnected
        }
        pool.generation += 1;
        pool.logged_in = false;
        pool.open = 0;
        let idle = std::mem::take(&mut pool.idle);
        let keepalive = pool.keepalive.take();
        let closable = recovery == Recovery::Login;
        pool.closable_generation = closable.then_some(generation);
        if recovery == Recovery::Token {
            pool.slot = None;
        }
        if closable {
            idle.into_iter().chain(keepalive).for_each(close);
        }
        // Otherwise the handles are gone and may already belong to new sessions: forget them, never close.
        drop(pool);
        self.available.notify_all();
        tracing::warn!(
            token = %self.description,
            ?recovery,
            cause = %cause.describe(),
            "PKCS#11 sessions dropped; logging in again and looking keys up again"
        );
    }

    /// Runs `op` on a logged-in session; on a session/login loss, reconnects and runs it once more.
    ///
    /// `op` gets the session and the generation (for caching object handles).
    pub(crate) fn run<T>(
        self: &Arc<Self>,
        pin: Option<&SecretString>,
        wait: Duration,
        read_write: bool,
        mut op: impl FnMut(&Session, u64) -> Result<T, Failure>,
    ) -> Result<Ran<T>, Failed> {
        let mut first_ckr: Option<String> = None;
        let mut retried = false;
        loop {
            let failure = match self.checkout(pin, wait, read_write) {
                Err((failure, generation)) => match failure.recovery() {
                    Some(recovery) => {
                        self.invalidate(generation, recovery, &failure);
                        failure
                    }
                    None => {
                        return Err(Failed {
                            failure,
                            retried,
                            first_ckr,
                        });
                    }
                },
                Ok(mut lease) => {
                    let outcome = match lease.session() {
                        Some(session) => op(session, lease.generation()),
                        None => Err(Failure::Key(KeyError::Backend {
                            backend: BACKEND,
                            message: "internal error: lease without a session".into(),
                            source: None,
                        })),
                    };
                    match outcome {
                        Ok(value) => return Ok(Ran { value, retried }),
                        Err(failure) => match failure.recovery() {
                            Some(recovery) => {
                                self.invalidate(lease.generation(), recovery, &failure);
                                drop(lease);
                                failure
                            }
                            None => {
                                if matches!(failure, Failure::Ck(_)) {
                                    lease.fate = Fate::Close;
                                }
                                return Err(Failed {
                                    failure,
                                    retried,
                                    first_ckr,
                                });
                            }
                        },
                    }
                }
            };
            if retried {
                return Err(Failed {
                    failure,
                    retried,
                    first_ckr,
                });
            }
            tracing::debug!(token = %self.description, failure = %failure.describe(), "retrying after reconnect");
            if failure.recovery() == Some(Recovery::Token) {
                std::thread::sleep(Duration::from_millis(100));
            }
            first_ckr = failure.ckr();
            retried = true;
        }
    }

    /// Leases `count` pooled sessions and keeps them (test hooks: to exhaust the pool).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn hold(
        self: &Arc<Self>,
        pin: Option<&SecretString>,
        count: usize,
    ) -> Result<Vec<Lease>, KeyError> {
        let mut leases = Vec::with_capacity(count);
        for _ in 0..count {
            let lease = self
                .checkout(pin, Duration::from_secs(5), false)
                .map_err(|(f, _)| f.into_key_error(&self.description))?;
            leases.push(lease);
        }
        Ok(leases)
    }
}

fn close(session: Session) {
    if let Err(e) = session.close() {
        tracing::debug!(error = %e, "closing a PKCS#11 session failed");
    }
}

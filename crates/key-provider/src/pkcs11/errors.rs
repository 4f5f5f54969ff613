//! PKCS#11 return codes: their `CKR_…` names (for messages and audit events), which of them mean "the
//! sessions or the login are gone" (and so call for a reconnect and one retry), and how a failed call becomes
//! a [`KeyError`].

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

use crate::error::KeyError;

use super::BACKEND;

/// The `CKR_…` name of a return code, e.g. `CKR_SESSION_HANDLE_INVALID`.
pub(crate) fn ckr_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED(0x{code:08x})"),
        RvError::UnknownErrorCode(code) => format!("CKR_UNKNOWN(0x{code:08x})"),
        // cryptoki names its variants after the CKR constants in CamelCase.
        other => camel_to_upper_snake("CKR_", &format!("{other:?}")),
    }
}

/// The C name of a PKCS#11 function, e.g. `C_Sign`.
pub(crate) fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

fn camel_to_upper_snake(prefix: &str, camel: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + camel.len() + 8);
    out.push_str(prefix);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// What a failure says was lost, and so how to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The session handles are gone (`SESSION_HANDLE_INVALID`, `SESSION_CLOSED`). They may be handed out
    /// again by the module, so they are forgotten, never closed.
    Sessions,
    /// The sessions are open but the login or an object handle is gone (`USER_NOT_LOGGED_IN`,
    /// `OBJECT_HANDLE_INVALID`, `KEY_HANDLE_INVALID`): close them, log in again, look the key up again.
    Login,
    /// The token went away (`TOKEN_NOT_PRESENT`, `DEVICE_REMOVED`): as [`Recovery::Sessions`], and find
    /// the token's slot again.
    Token,
}

/// Whether `rv` calls for dropping the sessions, logging in again and retrying once.
pub(crate) fn recovery(rv: RvError) -> Option<Recovery> {
    match rv {
        RvError::SessionHandleInvalid | RvError::SessionClosed => Some(Recovery::Sessions),
        RvError::UserNotLoggedIn | RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => {
            Some(Recovery::Login)
        }
        RvError::TokenNotPresent | RvError::DeviceRemoved => Some(Recovery::Token),
        _ => None,
    }
}

/// A failure inside a PKCS#11 operation, before it is turned into a [`KeyError`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// A PKCS#11 call failed.
    Ck(CkError),
    /// Anything else (key not found, wrong PIN, timeout…), already a [`KeyError`].
    Key(KeyError),
}

impl From<CkError> for Failure {
    fn from(e: CkError) -> Self {
        Self::Ck(e)
    }
}

impl From<KeyError> for Failure {
    fn from(e: KeyError) -> Self {
        Self::Key(e)
    }
}

impl Failure {
    /// The return code, when a PKCS#11 function returned one.
    pub(crate) fn rv(&self) -> Option<RvError> {
        match self {
            Self::Ck(CkError::Pkcs11(rv, _)) => Some(*rv),
            _ => None,
        }
    }

    /// The `CKR_…` name of the return code, for audit events.
    pub(crate) fn ckr(&self) -> Option<String> {
        self.rv().map(ckr_name)
    }

    /// Whether this failure calls for a reconnect.
    pub(crate) fn recovery(&self) -> Option<Recovery> {
        self.rv().and_then(recovery)
    }

    /// `C_Sign returned CKR_…`, or the error's own text for failures that are not return codes.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Ck(e) => describe_ck(e),
            Self::Key(e) => e.to_string(),
        }
    }

    /// The [`KeyError`] for this failure on `token` (a description such as `token 'a' (serial 1)`).
    pub(crate) fn into_key_error(self, token: &str) -> KeyError {
        match self {
            Self::Key(e) => e,
            Self::Ck(e) => {
                let message = format!("{token}: {}", describe_ck(&e));
                KeyError::Backend {
                    backend: BACKEND,
                    message,
                    source: Some(Box::new(e)),
                }
            }
        }
    }
}

/// `C_Sign returned CKR_…`, or the error's own text for errors that are not return codes.
fn describe_ck(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => {
            format!("{} returned {}", function_name(*function), ckr_name(*rv))
        }
        other => other.to_string(),
    }
}

/// The final failure of an operation, with what happened on the way.
#[derive(Debug)]
pub(crate) struct Failed {
    /// The last failure.
    pub(crate) failure: Failure,
    /// Whether the operation was retried after a reconnect.
    pub(crate) retried: bool,
    /// The return code of the first attempt, when it was retried.
    pub(crate) first_ckr: Option<String>,
}

impl Failed {
    /// The `CKR_…` code to report in audit events.
    pub(crate) fn ckr(&self) -> Option<String> {
        self.failure.ckr()
    }

    /// The [`KeyError`] to return, saying so when a retry after a reconnect failed too.
    pub(crate) fn into_key_error(self, token: &str) -> KeyError {
        let retried_too = self.retried && self.failure.recovery().is_some();
        match (self.failure, retried_too) {
            (Failure::Ck(e), true) => {
                let first = self.first_ckr.unwrap_or_else(|| "a lost session".into());
                let message = format!(
                    "{token}: {} even after dropping the sessions and logging in again (first attempt: {first}); \
                     check that the token is present and the HSM reachable",
                    describe_ck(&e)
                );
                KeyError::Backend {
                    backend: BACKEND,
                    message,
                    source: Some(Box::new(e)),
                }
            }
            (failure, _) => failure.into_key_error(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(
            ckr_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(ckr_name(RvError::ArgumentsBad), "CKR_ARGUMENTS_BAD");
        assert_eq!(
            ckr_name(RvError::MechanismParamInvalid),
            "CKR_MECHANISM_PARAM_INVALID"
        );
        assert_eq!(
            ckr_name(RvError::UserAlreadyLoggedIn),
            "CKR_USER_ALREADY_LOGGED_IN"
        );
        assert_eq!(
            ckr_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
        assert_eq!(function_name(Function::Sign), "C_Sign");
        assert_eq!(
            function_name(Function::CloseAllSessions),
            "C_CloseAllSessions"
        );
    }

    #[test]
    fn session_loss_codes_are_recoverable() {
        for rv in [
            RvError::SessionHandleInvalid,
            RvError::SessionClosed,
            RvError::UserNotLoggedIn,
            RvError::ObjectHandleInvalid,
            RvError::KeyHandleInvalid,
            RvError::TokenNotPresent,
            RvError::DeviceRemoved,
        ] {
            assert!(recovery(rv).is_some(), "{rv:?}");
        }
        for rv in [
            RvError::PinIncorrect,
            RvError::ArgumentsBad,
            RvError::GeneralError,
            RvError::UserAlreadyLoggedIn,
        ] {
            assert!(recovery(rv).is_none(), "{rv:?}");
        }
    }

    #[test]
    fn messages_name_function_and_code() {
        let f = Failure::Ck(CkError::Pkcs11(RvError::DeviceError, Function::Sign));
        let e = f.into_key_error("token 't' (serial 1)");
        assert_eq!(
            e.to_string(),
            "pkcs11 backend error: token 't' (serial 1): C_Sign returned CKR_DEVICE_ERROR"
        );
    }
}

//! PKCS#11 modules: which library a key reference means, and one initialised context per library per
//! process.
//!
//! The module is the `module-path=` of the URI, else [`OpenOptions::pkcs11_module`], else the environment
//! variable [`MODULE_ENV`](super::MODULE_ENV). A `module-path=` must name the configured module (those two)
//! or one of [`OpenOptions::pkcs11_allowed_modules`]: loading a library runs its code (constructors), so any
//! other is refused before it is loaded. Each library is loaded and `C_Initialize`d once (with
//! `CKF_OS_LOCKING_OK`), under a lock, and kept for the life of the process in a registry keyed by its
//! canonical path. keybound never calls `C_Finalize`: another key, or another part of the process, may still
//! use the library, and initialising one library from several threads at once crashes some modules
//! (SoftHSM; cryptoki issue #260).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::error::KeyError;
use crate::{OpenOptions, Pkcs11Uri};

use super::errors::ckr_name;
use super::{BACKEND, MODULE_ENV};

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The module (library path) a key reference uses: the URI's `module-path=` if it is the configured module
/// or an allowed one, else the configured module.
///
/// # Errors
/// [`KeyError::ModuleNotAllowed`] for a `module-path=` that is neither (nothing is loaded);
/// [`KeyError::InvalidKeyRef`] for `module-name=` (not supported); [`KeyError::Backend`] when no module is
/// named anywhere.
pub(crate) fn module_path(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<PathBuf, KeyError> {
    let configured = options.pkcs11_module.clone().or_else(|| {
        std::env::var_os(MODULE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = &uri.module_path {
        return allowed(path, configured.as_deref(), &options.pkcs11_allowed_modules);
    }
    if uri.module_name.is_some() {
        return Err(KeyError::invalid_ref(
            "`module-name=` is not supported; name the PKCS#11 library with `module-path=/path/to/module.so`",
        ));
    }
    configured.ok_or_else(|| KeyError::Backend {
        backend: BACKEND,
        message: format!(
            "no PKCS#11 module given: add `module-path=/path/to/module.so` to the key reference \
             (SoftHSM: /usr/lib/softhsm/libsofthsm2.so), pass the module path option, or set {MODULE_ENV}"
        ),
        source: None,
    })
}

/// The configured or allowed module that `requested` (a URI's `module-path=`) names: the same path, or the
/// same file once symbolic links are resolved. Nothing is loaded here; a module that is neither is refused.
fn allowed(
    requested: &Path,
    configured: Option<&Path>,
    allowed: &[PathBuf],
) -> Result<PathBuf, KeyError> {
    let wanted = std::fs::canonicalize(requested).ok();
    let candidates = configured
        .into_iter()
        .chain(allowed.iter().map(PathBuf::as_path));
    for candidate in candidates {
        let same_file = || wanted.is_some() && std::fs::canonicalize(candidate).ok() == wanted;
        if candidate == requested || same_file() {
            // The configured spelling is what gets loaded (resolved again by `context`).
            return Ok(candidate.to_owned());
        }
    }
    Err(KeyError::ModuleNotAllowed {
        path: requested.to_owned(),
        configured: configured
            .map_or_else(|| "none configured".to_owned(), |c| c.display().to_string()),
    })
}

/// The process-wide context of the module at `path`, loaded and initialised on first use.
///
/// Returns the canonical module path with it.
///
/// # Errors
/// [`KeyError::ModuleUnavailable`] when the library cannot be found, loaded or initialised. A failure is not
/// cached: the next call tries again.
pub(crate) fn context(path: &Path) -> Result<(PathBuf, Pkcs11), KeyError> {
    let canonical = std::fs::canonicalize(path).map_err(|e| KeyError::ModuleUnavailable {
        path: path.to_owned(),
        reason: format!(
            "not found ({e}); install it (SoftHSM: `apt-get install softhsm2`) or fix the module path"
        ),
    })?;
    let registry = MODULES.get_or_init(Default::default);
    // A panic while holding this lock cannot leave the map half-updated (insert is the last step).
    let mut modules = registry.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(&canonical) {
        return Ok((canonical, ctx.clone()));
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| KeyError::ModuleUnavailable {
        path: canonical.clone(),
        reason: format!(
            "it is not a PKCS#11 library ({}); module-path must name the vendor's PKCS#11 module (.so)",
            load_error(&e)
        ),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {
            tracing::debug!(module = %canonical.display(), "PKCS#11 module initialised");
        }
        // Something else in this process initialised it: that is fine, the library state is shared.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            tracing::debug!(module = %canonical.display(), "PKCS#11 module was already initialised");
        }
        Err(e) => {
            let code = match &e {
                CkError::Pkcs11(rv, _) => ckr_name(*rv),
                other => other.to_string(),
            };
            return Err(KeyError::ModuleUnavailable {
                path: canonical.clone(),
                reason: format!(
                    "C_Initialize failed ({code}); for SoftHSM check that SOFTHSM2_CONF names a readable \
                     softhsm2.conf whose token directory exists"
                ),
            });
        }
    }
    modules.insert(canonical.clone(), ctx.clone());
    Ok((canonical, ctx))
}

/// The loader's reason, shortened (dlerror text names the file and what was wrong with it).
fn load_error(e: &CkError) -> String {
    let text = e.to_string();
    let mut short: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.chars().count() > 200 {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_from_uri_must_be_configured_or_allowed_and_module_name_is_refused() {
        let uri: Pkcs11Uri = "pkcs11:object=k?module-path=/opt/a.so".parse().unwrap();
        let opts = OpenOptions::new().pkcs11_module(Some("/opt/b.so".into()));
        let err = module_path(&uri, &opts).unwrap_err();
        assert!(
            matches!(&err, KeyError::ModuleNotAllowed { path, configured }
                if path == Path::new("/opt/a.so") && configured == "/opt/b.so"),
            "{err}"
        );
        let allowing = opts
            .clone()
            .pkcs11_allowed_modules(["/opt/c.so", "/opt/a.so"]);
        assert_eq!(
            module_path(&uri, &allowing).unwrap(),
            PathBuf::from("/opt/a.so")
        );
        let same: Pkcs11Uri = "pkcs11:object=k?module-path=/opt/b.so".parse().unwrap();
        assert_eq!(
            module_path(&same, &opts).unwrap(),
            PathBuf::from("/opt/b.so")
        );
        let uri: Pkcs11Uri = "pkcs11:object=k".parse().unwrap();
        assert_eq!(
            module_path(&uri, &opts).unwrap(),
            PathBuf::from("/opt/b.so")
        );
        let uri: Pkcs11Uri = "pkcs11:object=k?module-name=softhsm2".parse().unwrap();
        assert!(matches!(
            module_path(&uri, &opts),
            Err(KeyError::InvalidKeyRef { .. })
        ));
    }

    #[test]
    fn missing_module_says_what_to_do() {
        let err = context(Path::new("/nonexistent/libnothing.so"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/libnothing.so"), "{err}");
        assert!(err.contains("not found"), "{err}");
        assert!(matches!(
            context(Path::new("/nonexistent/libnothing.so")),
            Err(KeyError::ModuleUnavailable { .. })
        ));
    }

    #[test]
    fn a_file_that_is_no_pkcs11_library_is_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("kb-module-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("libnotpkcs11.so");
        std::fs::write(&text, "this is not a shared library\n").unwrap();
        let err = context(&text).map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, KeyError::ModuleUnavailable { reason, .. } if reason.contains("not a PKCS#11 library")),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

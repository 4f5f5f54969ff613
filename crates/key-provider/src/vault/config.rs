//! Where a `vault:` key's server, token and namespace come from, resolved once when the key is opened:
//!
//! - **address**: `addr=` of the reference, else `VAULT_ADDR`, else `BAO_ADDR` (an empty variable counts as
//!   unset), checked by [`check_service_url`] (https, or plain http to loopback only) with the name of where
//!   it came from in the error;
//! - **token**: `token-source=env:VAR` or `token-source=file:PATH` (the file's first line; a file that group
//!   or others may read is refused, as a PIN file is, unless [`OpenOptions::allow_insecure_permissions`]),
//!   else `VAULT_TOKEN`, else `BAO_TOKEN`. Kept in a [`SecretString`]; it never appears in errors, logs or
//!   `Debug` output;
//! - **namespace**: `namespace=`, else `VAULT_NAMESPACE`, else `BAO_NAMESPACE`.
//!
//! The environment is read through a lookup function, so the rules are unit-tested without touching the
//! process environment.

use std::io::Read as _;
use std::path::Path;

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::BACKEND;
use crate::{KeyError, OpenOptions, TokenSource, VaultRef, check_service_url};

/// Longest token file accepted: a token is one short line (Vault service tokens are ~100 bytes, batch
/// tokens a few hundred).
const MAX_TOKEN_FILE: usize = 16 * 1024;

/// What a `vault:` key reference resolves to: where to send requests and with which token.
pub(crate) struct Settings {
    /// `https://host:8200` (no trailing slash).
    pub(crate) addr: String,
    /// The token (`X-Vault-Token`).
    pub(crate) token: SecretString,
    /// `X-Vault-Namespace`, if any.
    pub(crate) namespace: Option<String>,
}

/// The token stays hidden.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("token", &"[hidden]")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Resolves `r` with the process environment.
///
/// # Errors
/// As [`resolve_with`].
pub(crate) fn resolve(r: &VaultRef, options: &OpenOptions) -> Result<Settings, KeyError> {
    resolve_with(r, options, &|var| std::env::var(var).ok())
}

/// Resolves `r`, reading variables through `env`.
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] for a missing or refused address, [`KeyError::TokenUnavailable`] for a missing,
/// unreadable, empty or too widely readable token.
pub(crate) fn resolve_with(
    r: &VaultRef,
    options: &OpenOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, KeyError> {
    let env = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let addr = match &r.addr {
        // Checked when the reference was parsed.
        Some(addr) => addr.clone(),
        None => {
            let (var, addr) = ["VAULT_ADDR", "BAO_ADDR"]
                .into_iter()
                .find_map(|var| env(var).map(|v| (var, v)))
                .ok_or_else(|| {
                    KeyError::invalid_ref(format!(
                        "{r} names no server: add `addr=https://HOST:8200` to the key reference, or set \
                         VAULT_ADDR or BAO_ADDR"
                    ))
                })?;
            let addr = addr.trim().trim_end_matches('/').to_owned();
            check_service_url(&addr, var)?;
            addr
        }
    };
    let token = match &r.token_source {
        Some(TokenSource::Env(var)) => {
            let value = Zeroizing::new(env(var).ok_or_else(|| KeyError::TokenUnavailable {
                backend: BACKEND,
                reason: format!(
                    "environment variable {var} (from `token-source=env:{var}`) is not set or empty"
                ),
            })?);
            token_from(value.as_bytes(), &format!("environment variable {var}"))?
        }
        Some(TokenSource::File(path)) => read_token_file(path, options.allow_insecure_permissions)?,
        None => {
            let (var, value) = ["VAULT_TOKEN", "BAO_TOKEN"]
                .into_iter()
                .find_map(|var| env(var).map(|v| (var, Zeroizing::new(v))))
                .ok_or_else(|| KeyError::TokenUnavailable {
                    backend: BACKEND,
                    reason: format!(
                        "{r}: set VAULT_TOKEN (or BAO_TOKEN), or name the token in the key reference with \
                         `token-source=file:PATH` (mode 0600) or `token-source=env:VAR`"
                    ),
                })?;
            token_from(value.as_bytes(), &format!("environment variable {var}"))?
        }
    };
    let namespace = r.namespace.clone().or_else(|| {
        ["VAULT_NAMESPACE", "BAO_NAMESPACE"]
            .into_iter()
            .find_map(env)
            .map(|v| v.trim().to_owned())
    });
    if let Some(ns) = &namespace {
        if reqwest::header::HeaderValue::from_str(ns).is_err() {
            return Err(KeyError::invalid_ref(format!(
                "{r}: the namespace `{}` cannot be sent in an HTTP header (control characters or non-ASCII)",
                ns.escape_debug()
            )));
        }
    }
    Ok(Settings {
        addr,
        token,
        namespace,
    })
}

/// The token in a `token-source=file:` file: its first line.
fn read_token_file(path: &Path, allow_insecure: bool) -> Result<SecretString, KeyError> {
    let unreadable = |e: std::io::Error| KeyError::TokenUnavailable {
        backend: BACKEND,
        reason: format!("cannot read token file {}: {e}", path.display()),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // The permissions of the file opened, not of whatever the path names a moment later.
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(KeyError::TokenUnavailable {
            backend: BACKEND,
            reason: format!("token file {} is not a regular file", path.display()),
        });
    }
    check_permissions(path, &meta, allow_insecure)?;
    // Allocated once, large enough for the whole read: no reallocation leaves a copy of the token behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_TOKEN_FILE + 2));
    file.take(MAX_TOKEN_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > MAX_TOKEN_FILE {
        return Err(KeyError::TokenUnavailable {
            backend: BACKEND,
            reason: format!(
                "token file {} is larger than {MAX_TOKEN_FILE} bytes; it should hold only the token",
                path.display()
            ),
        });
    }
    token_from(&bytes, &format!("token file {}", path.display()))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &std::fs::Metadata, allow: bool) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow {
        return Err(KeyError::TokenUnavailable {
            backend: BACKEND,
            reason: format!(
                "token file {} is accessible by group or others (mode {mode:03o}); run `chmod 600` on it, or \
                 allow it explicitly: `allow_insecure_key_file = true` in the configuration file or \
                 KEYBOUND_ALLOW_INSECURE_KEY_FILE=true (library: OpenOptions::allow_insecure_permissions)",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path, _: &std::fs::Metadata, _: bool) -> Result<(), KeyError> {
    Ok(())
}

/// The first line of `bytes` (without `\n` or `\r\n`, surrounding blanks trimmed) as a token that can be sent
/// in an HTTP header.
fn token_from(bytes: &[u8], what: &str) -> Result<SecretString, KeyError> {
    let line = match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => &bytes[..end],
        None => bytes,
    };
    let line = line.trim_ascii();
    if line.is_empty() {
        return Err(KeyError::TokenUnavailable {
            backend: BACKEND,
            reason: format!("{what} is empty"),
        });
    }
    // Visible ASCII only, as an HTTP header value must be (checked without echoing any of it).
    if !line.iter().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::TokenUnavailable {
            backend: BACKEND,
            reason: format!(
                "{what} holds characters a Vault token never has (spaces, control characters or non-ASCII)"
            ),
        });
    }
    let text = Zeroizing::new(String::from_utf8_lossy(line).into_owned());
    Ok(SecretString::from(text.as_str()))
}

/// The token as a header value, marked sensitive (hyper neither logs nor HPACK-indexes it).
///
/// # Errors
/// [`KeyError::TokenUnavailable`] when it is no valid header value (checked when read, so not expected).
pub(crate) fn token_header(token: &SecretString) -> Result<reqwest::header::HeaderValue, KeyError> {
    let mut value =
        reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
            KeyError::TokenUnavailable {
                backend: BACKEND,
                reason: "the token cannot be sent in an HTTP header".into(),
            }
        })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;

    use super::*;

    const TOKEN: &str = "s.SECRETtoken123";

    fn resolve_env(reference: &str, vars: &[(&str, &str)]) -> Result<Settings, KeyError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve_with(&reference.parse().unwrap(), &OpenOptions::new(), &|var| {
            vars.get(var).cloned()
        })
    }

    #[test]
    fn address_token_and_namespace_follow_the_vault_variables_in_order() {
        let s = resolve_env(
            "vault:k",
            &[
                ("VAULT_ADDR", "https://vault.example:8200/"),
                ("BAO_ADDR", "https://bao.example"),
                ("VAULT_TOKEN", TOKEN),
                ("BAO_TOKEN", "other"),
                ("BAO_NAMESPACE", "team/a"),
            ],
        )
        .unwrap();
        assert_eq!(s.addr, "https://vault.example:8200");
        assert_eq!(s.token.expose_secret(), TOKEN);
        assert_eq!(s.namespace.as_deref(), Some("team/a"));
        assert!(!format!("{s:?}").contains(TOKEN), "Debug hides the token");
        let s = resolve_env(
            "vault:k",
            &[
                ("VAULT_ADDR", ""),
                ("BAO_ADDR", "http://127.0.0.1:8200"),
                ("BAO_TOKEN", "b.tok\n"),
            ],
        )
        .unwrap();
        assert_eq!(s.addr, "http://127.0.0.1:8200");
        assert_eq!(s.token.expose_secret(), "b.tok");
        assert_eq!(s.namespace, None);
        let s = resolve_env(
            "vault:k?addr=https://a.example&namespace=ns1&token-source=env:MY_TOKEN",
            &[
                ("VAULT_ADDR", "http://10.1.1.1"),
                ("MY_TOKEN", TOKEN),
                ("VAULT_NAMESPACE", "other"),
            ],
        )
        .unwrap();
        assert_eq!(
            (s.addr.as_str(), s.namespace.as_deref()),
            ("https://a.example", Some("ns1"))
        );
    }

    #[test]
    fn missing_or_refused_settings_are_one_line_errors_without_the_token() {
        for (reference, vars, needle) in [
            (
                "vault:k",
                &[("VAULT_TOKEN", TOKEN)][..],
                "set VAULT_ADDR or BAO_ADDR",
            ),
            (
                "vault:k",
                &[
                    ("VAULT_ADDR", "http://10.0.0.5:8200"),
                    ("VAULT_TOKEN", TOKEN),
                ][..],
                "VAULT_ADDR `http://10.0.0.5:8200`: plain http:// is accepted only to a loopback address",
            ),
            (
                "vault:k",
                &[("BAO_ADDR", "vault.example"), ("VAULT_TOKEN", TOKEN)][..],
                "BAO_ADDR `vault.example` is not a URL",
            ),
            (
                "vault:k",
                &[("VAULT_ADDR", "https://v.example")][..],
                "set VAULT_TOKEN (or BAO_TOKEN)",
            ),
            (
                "vault:k?token-source=env:MISSING",
                &[("VAULT_ADDR", "https://v.example"), ("VAULT_TOKEN", TOKEN)][..],
                "environment variable MISSING (from `token-source=env:MISSING`) is not set",
            ),
            (
                "vault:k",
                &[
                    ("VAULT_ADDR", "https://v.example"),
                    ("VAULT_TOKEN", "s.a b\u{7f}"),
                ][..],
                "characters a Vault token never has",
            ),
        ] {
            let err = resolve_env(reference, vars).unwrap_err().to_string();
            assert!(err.contains(needle), "{reference}: {err}");
            assert!(!err.contains(TOKEN) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn token_files_are_read_like_pin_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{TOKEN}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let reference = format!(
            "vault:k?addr=https://v.example&token-source=file:{}",
            path.display()
        );
        let s = resolve_env(&reference, &[]).unwrap();
        assert_eq!(s.token.expose_secret(), TOKEN);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = resolve_env(&reference, &[]).unwrap_err().to_string();
        assert!(
            err.contains("is accessible by group or others (mode 640); run `chmod 600`"),
            "{err}"
        );
        assert!(!err.contains(TOKEN));
        let allowed = resolve_with(
            &reference.parse().unwrap(),
            &OpenOptions::new().allow_insecure_permissions(true),
            &|_| None,
        )
        .unwrap();
        assert_eq!(allowed.token.expose_secret(), TOKEN);
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = resolve_env(&reference, &[]).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let missing = format!(
            "vault:k?addr=https://v.example&token-source=file:{}",
            dir.path().join("nope").display()
        );
        let err = resolve_env(&missing, &[]).unwrap_err().to_string();
        assert!(err.contains("cannot read token file"), "{err}");
    }
}

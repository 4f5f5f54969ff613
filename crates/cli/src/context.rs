//! Configuration and shared services for commands: settings from a TOML file (`--config`) and `KEYBOUND_…`
//! environment variables (the `config` crate), key-reference resolution, and opening keys.
//!
//! Top-level settings: `key` (default key reference), `keys.<name>` (named key references, used as
//! `--key <name>`), `allow_insecure_key_file`, `allow_pin_value`, `pkcs11_module`, `pkcs11_allowed_modules`,
//! `require_non_extractable`.
//! Partner commands read their own sections (`[keycloak]`, `[flex]`, `[provisioning]`). Environment:
//! `KEYBOUND_KEY`, `KEYBOUND_PKCS11_MODULE`, `KEYBOUND_PKCS11_ALLOWED_MODULES` (paths separated by `:`),
//! `KEYBOUND_KEYCLOAK__TOKEN_URL` (double underscore = nesting).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use key_provider::{KeyBackend, KeyRef, OpenOptions};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{CliError, CliResult};

/// Top-level settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Default key reference.
    pub key: Option<String>,
    /// Named key references.
    pub keys: BTreeMap<String, String>,
    /// Accept key files readable by group/others.
    pub allow_insecure_key_file: bool,
    /// Accept `pin-value=` in PKCS#11 URIs.
    pub allow_pin_value: bool,
    /// Default PKCS#11 module.
    pub pkcs11_module: Option<PathBuf>,
    /// Other PKCS#11 modules a key reference's `module-path=` may name.
    pub pkcs11_allowed_modules: Vec<PathBuf>,
    /// Refuse HSM private keys whose value can leave the token (extractable, or not sensitive) instead of
    /// warning about them.
    pub require_non_extractable: bool,
}

/// What every command gets.
pub struct Context {
    config: config::Config,
    /// Parsed top-level settings.
    pub settings: Settings,
}

impl Context {
    /// Loads settings from `file` (if given) and the environment.
    pub fn load(file: Option<&Path>) -> CliResult<Self> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                return Err(CliError::usage(format!(
                    "config file {} not found",
                    f.display()
                )));
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("KEYBOUND")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(":")
                .with_list_parse_key("pkcs11_allowed_modules"),
        );
        let config = builder
            .build()
            .map_err(|e| CliError::usage(format!("configuration: {e}")))?;
        let settings: Settings = config
            .clone()
            .try_deserialize()
            .map_err(|e| CliError::usage(format!("configuration: {e}")))?;
        Ok(Self { config, settings })
    }

    /// A partner section (`[keycloak]`, …) deserialized into `T`; `None` when absent.
    #[allow(dead_code)]
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> CliResult<Option<T>> {
        match self.config.get::<T>(name) {
            Ok(v) => Ok(Some(v)),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(CliError::usage(format!("configuration [{name}]: {e}"))),
        }
    }

    /// Resolves `--key` (or the configured default) to a key reference: a `file:`/`env:`/`pkcs11:` string, or
    /// the name of a configured key.
    pub fn key_ref(&self, arg: Option<&str>) -> CliResult<KeyRef> {
        let raw = match arg {
            Some(a) => a,
            None => self.settings.key.as_deref().ok_or_else(|| {
                CliError::usage("no key given: pass --key KEYREF or set `key` in the configuration")
            })?,
        };
        let resolved = if raw.starts_with("file:")
            || raw.starts_with("env:")
            || raw.starts_with("pkcs11:")
        {
            raw
        } else {
            self.settings.keys.get(raw).map(String::as_str).ok_or_else(|| {
                CliError::usage("--key must be file:PATH, env:VAR, a pkcs11: URI, or the name of a configured key")
            })?
        };
        resolved.parse::<KeyRef>().map_err(CliError::from)
    }

    /// Options for opening keys, from the settings.
    pub fn open_options(&self) -> OpenOptions {
        let module = self
            .settings
            .pkcs11_module
            .clone()
            .or_else(|| std::env::var_os("KEYBOUND_PKCS11_MODULE").map(PathBuf::from));
        OpenOptions::new()
            .allow_insecure_permissions(self.settings.allow_insecure_key_file)
            .allow_pin_value(self.settings.allow_pin_value)
            .pkcs11_module(module)
            .pkcs11_allowed_modules(self.settings.pkcs11_allowed_modules.iter().cloned())
            .require_non_extractable(self.settings.require_non_extractable)
    }

    /// Opens the key named by `--key` (or the configured default). What the backend warns about (an HSM
    /// key whose value can leave the token) is printed on stderr as `keybound: warning: …`, whatever the
    /// `--log` level: it concerns the key the user chose, not diagnostics.
    pub fn open_key(&self, arg: Option<&str>) -> CliResult<Arc<dyn KeyBackend>> {
        let key_ref = self.key_ref(arg)?;
        let key = key_provider::open(&key_ref, &self.open_options())?;
        for warning in key.warnings() {
            eprintln!("keybound: warning: {warning}");
        }
        Ok(key)
    }
}

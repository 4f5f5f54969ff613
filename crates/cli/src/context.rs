//! Configuration and shared services for commands: settings from a TOML file (`--config`) and `KEYBOUND_…`
//! environment variables (loaded by `settings.rs`: identifiers stay strings, unknown keys are refused),
//! key-reference resolution, and opening keys.
//!
//! Top-level settings: `key` (default key reference), `keys.<name>` (named key references, used as
//! `--key <name>`), `allow_insecure_key_file`, `allow_pin_value`, `pkcs11_module`, `pkcs11_allowed_modules`,
//! `require_non_extractable`; the partner sections `[keycloak]`, `[flex]`, `[provisioning]` (their structs
//! live with their commands). Environment: `KEYBOUND_KEY`, `KEYBOUND_PKCS11_MODULE`,
//! `KEYBOUND_PKCS11_ALLOWED_MODULES` (paths separated by `:`), `KEYBOUND_KEYCLOAK__TOKEN_URL` (double
//! underscore = nesting). The PKCS#11 module: `--pkcs11-module`, else `KEYBOUND_PKCS11_MODULE`, else
//! `pkcs11_module` in the file.
//!
//! Key-service references (`vault:NAME…`, `aws-kms:KEY…`) need no setting of their own: the reference and the
//! services' standard variables (`VAULT_ADDR`, `VAULT_TOKEN`…, the AWS chain) carry everything, read by
//! key-provider when the key is opened; no PIN prompt or module applies to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use key_provider::{KeyBackend, KeyRef, OpenOptions};
use serde::Deserialize;

use crate::error::{CliError, CliResult};

/// The schemes of key references; any other `--key` value is the name of a configured key.
const KEY_REF_SCHEMES: [&str; 5] = ["file:", "env:", "pkcs11:", "vault:", "aws-kms:"];

/// Top-level settings (unknown keys refused, here and in every section).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// `[keycloak]`.
    pub keycloak: crate::keycloak::Settings,
    /// `[flex]`.
    pub flex: crate::flex::FlexSettings,
    /// `[provisioning]`.
    pub provisioning: crate::provisioning::Settings,
}

/// What every command gets.
pub struct Context {
    /// Parsed settings.
    pub settings: Settings,
}

impl Context {
    /// Loads settings from `file` (if given) and the environment; `pkcs11_module` (the `--pkcs11-module`
    /// flag) wins over `KEYBOUND_PKCS11_MODULE`, which wins over the file's `pkcs11_module`.
    pub fn load(file: Option<&Path>, pkcs11_module: Option<PathBuf>) -> CliResult<Self> {
        let text = match file {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    CliError::usage(format!("config file {} not found", f.display()))
                } else {
                    CliError::usage(format!("cannot read config file {}: {e}", f.display()))
                }
            })?),
            None => None,
        };
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let mut settings: Settings = crate::settings::load(file.zip(text.as_deref()), env)
            .map_err(|e| {
                let mut message = e.to_string();
                if !message.starts_with("configuration file") {
                    message.insert_str(0, "configuration: ");
                }
                if let Some(hint) = e.hint() {
                    message.push_str("\n  hint: ");
                    message.push_str(hint);
                }
                CliError::usage(message)
            })?;
        if pkcs11_module.is_some() {
            settings.pkcs11_module = pkcs11_module;
        }
        Ok(Self { settings })
    }

    /// Resolves `--key` (or the configured default) to a key reference: a `file:`/`env:`/`pkcs11:`/`vault:`/
    /// `aws-kms:` string, or the name of a configured key.
    pub fn key_ref(&self, arg: Option<&str>) -> CliResult<KeyRef> {
        let raw = match arg {
            Some(a) => a,
            None => self.settings.key.as_deref().ok_or_else(|| {
                CliError::usage("no key given: pass --key KEYREF or set `key` in the configuration")
            })?,
        };
        let resolved = if KEY_REF_SCHEMES.iter().any(|s| raw.starts_with(s)) {
            raw
        } else {
            self.settings.keys.get(raw).map(String::as_str).ok_or_else(|| {
                CliError::usage(
                    "--key must be file:PATH, env:VAR, a pkcs11: URI, vault:NAME, aws-kms:KEY, or the name of a \
                     configured key",
                )
            })?
        };
        let key_ref = resolved.parse::<KeyRef>().map_err(CliError::from)?;
        if let KeyRef::Pkcs11(uri) = &key_ref {
            // (Without the pkcs11 feature, opening says the backend is not compiled in.)
            if cfg!(feature = "pkcs11")
                && uri.module_path.is_none()
                && uri.module_name.is_none()
                && self.settings.pkcs11_module.is_none()
            {
                return Err(CliError::usage(
                    "no PKCS#11 module given: pass --pkcs11-module PATH, set KEYBOUND_PKCS11_MODULE, set \
                     `pkcs11_module` in the configuration file, or add `module-path=` to the key reference\n  \
                     hint: SoftHSM's module is /usr/lib/softhsm/libsofthsm2.so",
                ));
            }
        }
        Ok(key_ref)
    }

    /// Options for opening keys, from the settings.
    pub fn open_options(&self) -> OpenOptions {
        // The variable is already in the settings (read by the loader, below the flag): the library's own
        // fallback to it changes nothing.
        let module = self.settings.pkcs11_module.clone();
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

#[cfg(test)]
mod tests {
    use super::Settings;
    use crate::settings::{load, struct_fields};

    /// Issue 13, item 1: every setting of every section that accepts `00012345` and `1.50` from the
    /// environment keeps them exactly (the identifiers: issuer_id, kid, product_id, client_id, merchant_id,
    /// key_id…); the others (numbers, booleans, enums) refuse them naming the variable.
    #[test]
    fn every_string_setting_from_the_environment_is_kept_as_written() {
        let sections = [
            ("", struct_fields::<Settings>()),
            ("keycloak", struct_fields::<crate::keycloak::Settings>()),
            ("flex", struct_fields::<crate::flex::FlexSettings>()),
            (
                "provisioning",
                struct_fields::<crate::provisioning::Settings>(),
            ),
        ];
        let mut kept = Vec::new();
        for (section, fields) in sections {
            assert!(!fields.is_empty(), "[{section}]");
            for field in fields {
                if section.is_empty() && sections.iter().any(|(s, _)| s == field) {
                    continue;
                }
                let var = if section.is_empty() {
                    format!("KEYBOUND_{}", field.to_ascii_uppercase())
                } else {
                    format!(
                        "KEYBOUND_{}__{}",
                        section.to_ascii_uppercase(),
                        field.to_ascii_uppercase()
                    )
                };
                let results: Vec<_> = ["00012345", "12345678901234567890123", "1.50"]
                    .into_iter()
                    .map(|value| {
                        (
                            value,
                            load::<Settings>(None, [(var.clone(), value.to_owned())]),
                        )
                    })
                    .collect();
                if results.iter().all(|(_, r)| r.is_ok()) {
                    for (value, settings) in results {
                        let debug = format!("{:?}", settings.unwrap());
                        assert!(
                            debug.contains(&format!("{value:?}")),
                            "{var}={value}: {debug}"
                        );
                    }
                    kept.push(var);
                } else {
                    for (_, r) in results {
                        if let Err(e) = r {
                            assert!(e.to_string().starts_with(&format!("{var}: ")), "{e}");
                        }
                    }
                }
            }
        }
        for identifier in [
            "KEYBOUND_KEY",
            "KEYBOUND_PKCS11_MODULE",
            "KEYBOUND_KEYCLOAK__CLIENT_ID",
            "KEYBOUND_KEYCLOAK__KID",
            "KEYBOUND_FLEX__MERCHANT_ID",
            "KEYBOUND_FLEX__KEY_ID",
            "KEYBOUND_PROVISIONING__ISSUER_ID",
            "KEYBOUND_PROVISIONING__KID",
            "KEYBOUND_PROVISIONING__PRODUCT_ID",
            "KEYBOUND_PROVISIONING__THALES_KID",
        ] {
            assert!(
                kept.iter().any(|k| k == identifier),
                "{identifier}: {kept:?}"
            );
        }
    }
}

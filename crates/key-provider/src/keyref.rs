//! Key references: the one string that names a key, whichever backend holds it.
//!
//! - `file:PATH` — a PEM (or DER) private key file;
//! - `env:VAR` — PEM or base64 DER in an environment variable;
//! - `pkcs11:…` — an RFC 7512 PKCS#11 URI, e.g.
//!   `pkcs11:token=keybound;object=signing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`;
//! - `vault:NAME[?…]` — an OpenBao / Vault Transit key ([`VaultRef`]);
//! - `aws-kms:KEY[?…]` — an AWS KMS key ([`AwsKmsRef`]).
//!
//! Parsing is strict: unknown or duplicated URI attributes are errors, so a typo never widens a key search.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::error::KeyError;
pub use crate::service_ref::{AwsKmsRef, VaultRef};

/// A parsed key reference.
#[derive(Debug, Clone)]
#[non_exhaustive]
// A KeyRef is parsed once per key open; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum KeyRef {
    /// `file:PATH`.
    File(PathBuf),
    /// `env:VAR`.
    Env(String),
    /// `pkcs11:…` (RFC 7512).
    Pkcs11(Pkcs11Uri),
    /// `vault:NAME[?…]`: an OpenBao / HashiCorp Vault Transit key.
    Vault(VaultRef),
    /// `aws-kms:KEY[?…]`: an AWS KMS key.
    AwsKms(AwsKmsRef),
}

impl KeyRef {
    /// The backend this reference needs (`file`, `env`, `pkcs11`, `vault`, `aws-kms`).
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Env(_) => "env",
            Self::Pkcs11(_) => "pkcs11",
            Self::Vault(_) => "vault",
            Self::AwsKms(_) => "aws-kms",
        }
    }
}

impl FromStr for KeyRef {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("file:") {
            // Accept `file:///abs/path` as well as `file:/abs/path` and `file:relative`.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(KeyError::invalid_ref(
                    "`file:` needs a path, e.g. file:/etc/keybound/key.pem",
                ));
            }
            Ok(Self::File(PathBuf::from(path)))
        } else if let Some(var) = s.strip_prefix("env:") {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(KeyError::invalid_ref(
                    "`env:` needs an environment variable name (letters, digits, underscore)",
                ));
            }
            Ok(Self::Env(var.to_owned()))
        } else if s.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(s.parse()?))
        } else if s.starts_with("vault:") {
            Ok(Self::Vault(s.parse()?))
        } else if s.starts_with("aws-kms:") {
            Ok(Self::AwsKms(s.parse()?))
        } else {
            Err(KeyError::invalid_ref(
                "expected `file:PATH`, `env:VAR`, a `pkcs11:` URI, `vault:NAME` or `aws-kms:KEY`",
            ))
        }
    }
}

impl fmt::Display for KeyRef {
    /// Prints the reference with any `pin-value` removed, safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The parser strips one leading `//` (`file:///abs`): keep a path's own `//` behind another.
            Self::File(p) if p.as_os_str().as_encoded_bytes().starts_with(b"//") => {
                write!(f, "file://{}", p.display())
            }
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Env(v) => write!(f, "env:{v}"),
            Self::Pkcs11(u) => fmt::Display::fmt(u, f),
            Self::Vault(v) => fmt::Display::fmt(v, f),
            Self::AwsKms(k) => fmt::Display::fmt(k, f),
        }
    }
}

/// Where the PIN of a PKCS#11 token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinSource {
    /// Read from a file (first line, trailing newline removed).
    File(PathBuf),
    /// Read from an environment variable.
    Env(String),
    /// Typed at the terminal (standard input), without echo: `pin-source=prompt`.
    Prompt,
}

/// The object class selected by the `type=` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectType {
    /// `type=private`.
    Private,
    /// `type=public`.
    Public,
    /// `type=cert`.
    Cert,
    /// `type=secret-key`.
    SecretKey,
    /// `type=data`.
    Data,
}

impl ObjectType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

/// An RFC 7512 PKCS#11 URI. `Debug` and `Display` never show `pin-value`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct Pkcs11Uri {
    /// `token=`: token label.
    pub token: Option<String>,
    /// `manufacturer=`: token manufacturer.
    pub manufacturer: Option<String>,
    /// `model=`: token model.
    pub model: Option<String>,
    /// `serial=`: token serial number.
    pub serial: Option<String>,
    /// `slot-id=`: slot number (discouraged: slot ids change; prefer token label or serial).
    pub slot_id: Option<u64>,
    /// `object=`: object label (CKA_LABEL).
    pub object: Option<String>,
    /// `id=`: object id (CKA_ID), raw bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`: object class.
    pub object_type: Option<ObjectType>,
    /// `module-path=`: the PKCS#11 library.
    pub module_path: Option<PathBuf>,
    /// `module-name=`: the PKCS#11 library by name.
    pub module_name: Option<String>,
    /// `pin-source=`.
    pub pin_source: Option<PinSource>,
    /// `pin-value=` (only honoured where the user explicitly allows it).
    pub pin_value: Option<SecretString>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("token", &self.token)
            .field("serial", &self.serial)
            .field("slot_id", &self.slot_id)
            .field("object", &self.object)
            .field("id", &self.id.as_ref().map(|i| hex(i)))
            .field("object_type", &self.object_type)
            .field("module_path", &self.module_path)
            .field("pin_source", &self.pin_source)
            .field("pin_value", &self.pin_value.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b':')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'|');

impl fmt::Display for Pkcs11Uri {
    /// The URI without `pin-value` (`pin-source` is kept: it names a place, not a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s: &[u8]| percent_encoding::percent_encode(s, PATH_SET).to_string();
        let mut path: Vec<String> = Vec::new();
        let mut push = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                path.push(format!("{k}={}", enc(v.as_bytes())));
            }
        };
        push("token", &self.token);
        push("manufacturer", &self.manufacturer);
        push("model", &self.model);
        push("serial", &self.serial);
        push("object", &self.object);
        if let Some(s) = self.slot_id {
            path.push(format!("slot-id={s}"));
        }
        if let Some(id) = &self.id {
            path.push(format!(
                "id={}",
                id.iter().map(|b| format!("%{b:02X}")).collect::<String>()
            ));
        }
        if let Some(t) = self.object_type {
            path.push(format!("type={}", t.as_str()));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        let mut query: Vec<String> = Vec::new();
        if let Some(m) = &self.module_path {
            query.push(format!(
                "module-path={}",
                enc(m.as_os_str().as_encoded_bytes())
            ));
        }
        if let Some(m) = &self.module_name {
            query.push(format!("module-name={}", enc(m.as_bytes())));
        }
        match &self.pin_source {
            Some(PinSource::File(p)) => {
                // The parser strips one leading `//` (`file:///abs`): a path that itself starts with `//`
                // keeps it only behind an explicit `//`.
                let slashes = if p.as_os_str().as_encoded_bytes().starts_with(b"//") {
                    "//"
                } else {
                    ""
                };
                query.push(format!(
                    "pin-source=file:{slashes}{}",
                    enc(p.as_os_str().as_encoded_bytes())
                ));
            }
            Some(PinSource::Env(v)) => {
                query.push(format!("pin-source=env:{}", enc(v.as_bytes())));
            }
            Some(PinSource::Prompt) => query.push("pin-source=prompt".to_owned()),
            None => {}
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

impl Pkcs11Uri {
    /// Returns the `pin-value` secret, if the URI carries one.
    #[must_use]
    pub fn pin_value(&self) -> Option<&str> {
        self.pin_value.as_ref().map(|p| p.expose_secret())
    }
}

fn decode_value(attr: &str, raw: &str) -> Result<Vec<u8>, KeyError> {
    percent_decode_strict(&format!("pkcs11 attribute `{attr}`"), raw)
}

/// Percent-decodes `raw`, refusing a malformed escape with "bad percent-encoding in {what}" (percent_decode
/// passes malformed ones through). Shared by the PKCS#11 URI and the key-service references.
pub(crate) fn percent_decode_strict(what: &str, raw: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(KeyError::invalid_ref(format!(
                    "bad percent-encoding in {what}"
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(percent_encoding::percent_decode(bytes).collect())
}

fn decode_string(attr: &str, raw: &str) -> Result<String, KeyError> {
    String::from_utf8(decode_value(attr, raw)?)
        .map_err(|_| KeyError::invalid_ref(format!("pkcs11 attribute `{attr}` is not valid UTF-8")))
}

fn set_once<T>(slot: &mut Option<T>, attr: &str, value: T) -> Result<(), KeyError> {
    if slot.is_some() {
        return Err(KeyError::invalid_ref(format!(
            "pkcs11 attribute `{attr}` appears more than once"
        )));
    }
    *slot = Some(value);
    Ok(())
}

impl FromStr for Pkcs11Uri {
    type Err = KeyError;

    /// Parses a key reference: `object=` and/or `id=` must name the key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri = Self::parse_token(s)?;
        if uri.object.is_none() && uri.id.is_none() {
            return Err(KeyError::invalid_ref(
                "a pkcs11 key reference needs `object=` (label) and/or `id=`",
            ));
        }
        Ok(uri)
    }
}

impl Pkcs11Uri {
    /// Parses a URI that names a token, with or without `object=` / `id=` (as strictly as a key reference
    /// otherwise): what `keybound keys list` takes, e.g. `pkcs11:token=keybound?pin-source=file:/run/pin`.
    /// Opening a key needs a key reference ([`FromStr`]).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyRef`] as for a key reference, except for a missing `object=` / `id=`.
    pub fn parse_token(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| KeyError::invalid_ref("a PKCS#11 URI starts with `pkcs11:`"))?;
        if rest.contains('#') {
            return Err(KeyError::invalid_ref("a PKCS#11 URI has no fragment (`#`)"));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Self::default();
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (attr, raw) = part.split_once('=').ok_or_else(|| {
                KeyError::invalid_ref("pkcs11 path attributes are written `name=value`")
            })?;
            match attr {
                "token" => set_once(&mut uri.token, attr, decode_string(attr, raw)?)?,
                "manufacturer" => set_once(&mut uri.manufacturer, attr, decode_string(attr, raw)?)?,
                "model" => set_once(&mut uri.model, attr, decode_string(attr, raw)?)?,
                "serial" => set_once(&mut uri.serial, attr, decode_string(attr, raw)?)?,
                "object" => set_once(&mut uri.object, attr, decode_string(attr, raw)?)?,
                "id" => {
                    let id = decode_value(attr, raw)?;
                    if id.is_empty() {
                        return Err(KeyError::invalid_ref("pkcs11 attribute `id` is empty"));
                    }
                    set_once(&mut uri.id, attr, id)?;
                }
                "slot-id" => {
                    let v = decode_string(attr, raw)?.parse::<u64>().map_err(|_| {
                        KeyError::invalid_ref("pkcs11 attribute `slot-id` must be a number")
                    })?;
                    set_once(&mut uri.slot_id, attr, v)?;
                }
                "type" => {
                    let t = match decode_string(attr, raw)?.as_str() {
                        "private" => ObjectType::Private,
                        "public" => ObjectType::Public,
                        "cert" => ObjectType::Cert,
                        "secret-key" => ObjectType::SecretKey,
                        "data" => ObjectType::Data,
                        _ => {
                            return Err(KeyError::invalid_ref(
                                "pkcs11 attribute `type` must be private, public, cert, secret-key or data",
                            ));
                        }
                    };
                    set_once(&mut uri.object_type, attr, t)?;
                }
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-manufacturer"
                | "slot-description" => {
                    return Err(KeyError::invalid_ref(format!(
                        "pkcs11 attribute `{attr}` is not supported; select the token by `token=` or `serial=`"
                    )));
                }
                other => {
                    return Err(KeyError::invalid_ref(format!(
                        "unknown pkcs11 path attribute `{}`",
                        sanitize(other)
                    )));
                }
            }
        }
        if let Some(query) = query {
            for part in query.split('&').filter(|p| !p.is_empty()) {
                let (attr, raw) = part.split_once('=').ok_or_else(|| {
                    KeyError::invalid_ref("pkcs11 query attributes are written `name=value`")
                })?;
                match attr {
                    "module-path" => {
                        set_once(
                            &mut uri.module_path,
                            attr,
                            PathBuf::from(decode_string(attr, raw)?),
                        )?;
                    }
                    "module-name" => {
                        set_once(&mut uri.module_name, attr, decode_string(attr, raw)?)?
                    }
                    "pin-source" => {
                        let v = decode_string(attr, raw)?;
                        let src = if let Some(p) = v.strip_prefix("file:") {
                            let p = p.strip_prefix("//").unwrap_or(p);
                            if p.is_empty() {
                                return Err(KeyError::invalid_ref(
                                    "`pin-source=file:` needs a path",
                                ));
                            }
                            PinSource::File(PathBuf::from(p))
                        } else if let Some(var) = v.strip_prefix("env:") {
                            if var.is_empty() {
                                return Err(KeyError::invalid_ref(
                                    "`pin-source=env:` needs a variable name",
                                ));
                            }
                            PinSource::Env(var.to_owned())
                        } else if v.starts_with('/') {
                            PinSource::File(PathBuf::from(v))
                        } else if v == "prompt" {
                            PinSource::Prompt
                        } else {
                            return Err(KeyError::invalid_ref(
                                "`pin-source` must be `file:PATH`, an absolute path, `env:VAR` or `prompt`",
                            ));
                        };
                        set_once(&mut uri.pin_source, attr, src)?;
                    }
                    "pin-value" => {
                        let v = decode_string(attr, raw)?;
                        set_once(&mut uri.pin_value, attr, SecretString::from(v))?;
                    }
                    other => {
                        return Err(KeyError::invalid_ref(format!(
                            "unknown pkcs11 query attribute `{}`",
                            sanitize(other)
                        )));
                    }
                }
            }
        }
        if uri.pin_source.is_some() && uri.pin_value.is_some() {
            return Err(KeyError::invalid_ref(
                "give either `pin-source` or `pin-value`, not both",
            ));
        }
        Ok(uri)
    }
}

/// Keeps attacker-supplied names short and printable in error messages.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let u: Pkcs11Uri = "pkcs11:token=LABEL;object=LABEL;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path"
            .parse()
            .unwrap();
        assert_eq!(u.token.as_deref(), Some("LABEL"));
        assert_eq!(u.object.as_deref(), Some("LABEL"));
        assert_eq!(u.id.as_deref(), Some(&[1u8][..]));
        assert_eq!(
            u.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(u.pin_source, Some(PinSource::File(PathBuf::from("/path"))));
    }

    #[test]
    fn percent_decodes_and_round_trips() {
        let u: Pkcs11Uri = "pkcs11:token=My%20Token;object=a%3Bb;serial=42"
            .parse()
            .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("a;b"));
        let again: Pkcs11Uri = u.to_string().parse().unwrap();
        assert_eq!(again.token, u.token);
        assert_eq!(again.object, u.object);
        assert_eq!(again.serial.as_deref(), Some("42"));
    }

    #[test]
    fn printed_references_parse_back_to_the_same_places() {
        // Found by the pkcs11_uri fuzz target: `//x` printed as `file://x` came back as the relative `x`, and
        // an env variable name with `&` or `%` broke the query.
        for text in [
            "pkcs11:object=k?pin-source=//run/pin",
            "pkcs11:object=k?pin-source=file:////run/pin",
            "pkcs11:object=k?pin-source=env:A%26B%25",
        ] {
            let u: Pkcs11Uri = text.parse().unwrap();
            let again: Pkcs11Uri = u.to_string().parse().unwrap();
            assert_eq!(again.pin_source, u.pin_source, "{text} -> {u}");
        }
        for text in ["file:////etc/k.pem", "file://k.pem", "file:/k.pem"] {
            let r: KeyRef = text.parse().unwrap();
            let again: KeyRef = r.to_string().parse().unwrap();
            assert_eq!(format!("{again:?}"), format!("{r:?}"), "{text} -> {r}");
        }
    }

    #[test]
    fn pin_value_never_printed() {
        let u: Pkcs11Uri = "pkcs11:object=k?pin-value=s3cr3t-1234".parse().unwrap();
        assert_eq!(u.pin_value(), Some("s3cr3t-1234"));
        assert!(!format!("{u:?}").contains("s3cr3t"));
        assert!(!u.to_string().contains("s3cr3t"));
        let r: KeyRef = "pkcs11:object=k?pin-value=s3cr3t-1234".parse().unwrap();
        assert!(!format!("{r:?} {r}").contains("s3cr3t"));
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "pkcs11:",
            "pkcs11:token=a",
            "pkcs11:object=a;object=b",
            "pkcs11:objekt=a",
            "pkcs11:object=a%zz",
            "pkcs11:object=a%4",
            "pkcs11:object=a?pin-source=relative",
            "pkcs11:object=a?pin-source=file:/x&pin-value=1",
            "pkcs11:object=a?foo=bar",
            "pkcs11:object=a;slot-id=x",
            "pkcs11:object=a#frag",
            "pkcs11:object=a;id=",
        ] {
            assert!(bad.parse::<Pkcs11Uri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_uris_for_listing() {
        let u = Pkcs11Uri::parse_token("pkcs11:token=a?pin-source=env:PIN").unwrap();
        assert_eq!((u.token.as_deref(), u.object.as_deref()), (Some("a"), None));
        assert_eq!(u.pin_source, Some(PinSource::Env("PIN".into())));
        assert_eq!(u.to_string(), "pkcs11:token=a?pin-source=env:PIN");
        let narrowed = Pkcs11Uri::parse_token("pkcs11:token=a;id=%01").unwrap();
        assert_eq!(narrowed.id, Some(vec![1]));
        for bad in [
            "pkcs11:objekt=a",
            "pkcs11:token=a;token=b",
            "pkcs11:token=a?foo=bar",
        ] {
            assert!(Pkcs11Uri::parse_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_refs() {
        assert!(
            matches!("file:/a/b.pem".parse::<KeyRef>().unwrap(), KeyRef::File(p) if p == std::path::Path::new("/a/b.pem"))
        );
        assert!(
            matches!("file:///a/b.pem".parse::<KeyRef>().unwrap(), KeyRef::File(p) if p == std::path::Path::new("/a/b.pem"))
        );
        assert!(matches!("env:MY_KEY".parse::<KeyRef>().unwrap(), KeyRef::Env(v) if v == "MY_KEY"));
        for bad in [
            "", "file:", "env:", "env:1A", "env:A-B", "/a/b.pem", "http://x",
        ] {
            assert!(bad.parse::<KeyRef>().is_err(), "{bad}");
        }
    }
}

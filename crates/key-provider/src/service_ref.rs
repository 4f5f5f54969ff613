//! Key references to key services: `vault:NAME[?…]` (an OpenBao / HashiCorp Vault Transit key) and
//! `aws-kms:KEY[?…]` (an AWS KMS key). Parsed whether or not their backend is compiled in, so a reference to a
//! missing backend is told "not compiled in" rather than "invalid".
//!
//! - `vault:NAME[?mount=transit&addr=URL&namespace=NS&token-source=env:VAR|file:PATH]`. Unset parts follow the
//!   Vault ecosystem when the key is opened: the address from `VAULT_ADDR` (then `BAO_ADDR`), the token from
//!   `VAULT_TOKEN` (then `BAO_TOKEN`), the namespace from `VAULT_NAMESPACE` (then `BAO_NAMESPACE`), mount
//!   `transit`. The token is a secret: never accepted inline (`token=` is refused), never printed.
//! - `aws-kms:KEY[?region=REGION&endpoint=URL]`, KEY a key id, a key ARN or `alias/NAME` (or an alias ARN).
//!   Credentials, region and endpoint otherwise come from the standard AWS chain (`AWS_ACCESS_KEY_ID`…,
//!   profiles, SSO, web identity, ECS and EC2 roles; `AWS_REGION`; `AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`).
//!
//! Plain `http://` is accepted only to a loopback address (`127.0.0.0/8`, `::1`, `localhost`): a token or a
//! signed request never crosses a network in clear text. Parsing is strict: an unknown or repeated query
//! attribute is an error, so a typo never silently falls back to a default.

use std::fmt;
use std::path::PathBuf;

use crate::error::KeyError;

/// Where a Vault token comes from, when not from `VAULT_TOKEN` / `BAO_TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `token-source=env:VAR`.
    Env(String),
    /// `token-source=file:PATH`: the first line of the file (a trailing newline removed), like a PIN file.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(v) => write!(f, "env:{v}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A `vault:` key reference: a Transit key. Holds no secret (the token is read when the key is opened).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VaultRef {
    /// The Transit key name.
    pub name: String,
    /// The Transit mount path (default `transit`).
    pub mount: String,
    /// `addr=`: the server address; `None` means `VAULT_ADDR`, then `BAO_ADDR`.
    pub addr: Option<String>,
    /// `namespace=`: the Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// `token-source=`; `None` means `VAULT_TOKEN`, then `BAO_TOKEN`.
    pub token_source: Option<TokenSource>,
}

impl VaultRef {
    /// The default Transit mount.
    pub const DEFAULT_MOUNT: &'static str = "transit";
}

/// An `aws-kms:` key reference.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsKmsRef {
    /// The key id, key ARN, `alias/NAME` or alias ARN, as KMS takes it in `KeyId`.
    pub key: String,
    /// `region=`; `None` means the standard chain (`AWS_REGION`, the profile; a key ARN's own region wins
    /// over both).
    pub region: Option<String>,
    /// `endpoint=`; `None` means `AWS_ENDPOINT_URL_KMS`, then `AWS_ENDPOINT_URL`, then the region's endpoint.
    pub endpoint: Option<String>,
}

impl AwsKmsRef {
    /// Whether the key is named by an alias (`alias/NAME` or an alias ARN).
    #[must_use]
    pub fn is_alias(&self) -> bool {
        self.key.starts_with("alias/")
            || self.arn_resource().is_some_and(|r| r.starts_with("alias/"))
    }

    /// The region of a key or alias ARN (`arn:aws:kms:REGION:ACCOUNT:…`).
    #[must_use]
    pub fn arn_region(&self) -> Option<&str> {
        let rest = self.key.strip_prefix("arn:")?;
        let mut parts = rest.splitn(5, ':');
        let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
        (service == "kms" && !region.is_empty()).then_some(region)
    }

    fn arn_resource(&self) -> Option<&str> {
        let rest = self.key.strip_prefix("arn:")?;
        rest.splitn(5, ':').nth(4)
    }
}

/// The query of a reference: `k=v` pairs, percent-decoded, each attribute at most once.
fn query_pairs(scheme: &str, query: Option<&str>) -> Result<Vec<(String, String)>, KeyError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            KeyError::invalid_ref(format!(
                "`{scheme}:` query attribute `{part}` has no value (expected name=value)"
            ))
        })?;
        let value = decode(scheme, k, v)?;
        if pairs.iter().any(|(seen, _)| seen == k) {
            return Err(KeyError::invalid_ref(format!(
                "`{scheme}:` query attribute `{k}` appears more than once"
            )));
        }
        if value.is_empty() {
            return Err(KeyError::invalid_ref(format!(
                "`{scheme}:` query attribute `{k}` is empty"
            )));
        }
        pairs.push((k.to_owned(), value));
    }
    Ok(pairs)
}

fn decode(scheme: &str, attr: &str, raw: &str) -> Result<String, KeyError> {
    let bytes =
        crate::keyref::percent_decode_strict(&format!("`{scheme}:` attribute `{attr}`"), raw)?;
    String::from_utf8(bytes).map_err(|_| {
        KeyError::invalid_ref(format!("`{scheme}:` attribute `{attr}` is not valid UTF-8"))
    })
}

const QUERY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b':');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_SET).to_string()
}

/// Checks a service URL: `https://HOST[:PORT][/…]`, or `http://` to a loopback host only. `what` names where
/// the URL came from in the error (`addr=`, `VAULT_ADDR`…).
///
/// # Errors
/// [`KeyError::InvalidKeyRef`].
pub fn check_service_url(url: &str, what: &str) -> Result<(), KeyError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        KeyError::invalid_ref(format!(
            "{what} `{url}` is not a URL (expected https://HOST[:PORT])"
        ))
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(KeyError::invalid_ref(format!(
            "{what} `{url}` needs a host (and no user information)"
        )));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(KeyError::invalid_ref(format!(
            "{what} `{url}`: plain http:// is accepted only to a loopback address (127.0.0.1, ::1, localhost); \
             use https:// so the token and the requests are encrypted"
        ))),
        _ => Err(KeyError::invalid_ref(format!(
            "{what} `{url}`: expected an https:// URL"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_name(scheme: &str, what: &str, name: &str, extra: &[char]) -> Result<(), KeyError> {
    let valid = !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c)
        })
        && !name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if valid {
        Ok(())
    } else {
        Err(KeyError::invalid_ref(format!(
            "`{scheme}:` needs a {what} of letters, digits, `-`, `_`, `.`{}, got `{name}`",
            if extra.is_empty() {
                String::new()
            } else {
                format!(
                    " and {}",
                    extra
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )))
    }
}

impl std::str::FromStr for VaultRef {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .strip_prefix("vault:")
            .ok_or_else(|| KeyError::invalid_ref("a Vault key reference starts with `vault:`"))?;
        let (name, query) = match rest.split_once('?') {
            Some((n, q)) => (n, Some(q)),
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(KeyError::invalid_ref(
                "`vault:` needs a Transit key name, e.g. vault:issuer",
            ));
        }
        check_name("vault", "Transit key name", name, &[])?;
        let mut r = Self {
            name: name.to_owned(),
            mount: Self::DEFAULT_MOUNT.to_owned(),
            addr: None,
            namespace: None,
            token_source: None,
        };
        for (k, v) in query_pairs("vault", query)? {
            match k.as_str() {
                "mount" => {
                    check_name("vault", "mount path", &v, &['/'])?;
                    r.mount = v;
                }
                "addr" => {
                    check_service_url(&v, "vault: `addr=`")?;
                    r.addr = Some(v.trim_end_matches('/').to_owned());
                }
                "namespace" => {
                    check_name("vault", "namespace", v.trim_matches('/'), &['/'])?;
                    r.namespace = Some(v);
                }
                "token-source" => {
                    r.token_source = Some(if let Some(var) = v.strip_prefix("env:") {
                        let valid = !var.is_empty()
                            && !var.starts_with(|c: char| c.is_ascii_digit())
                            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid {
                            return Err(KeyError::invalid_ref(
                                "vault: `token-source=env:` needs an environment variable name",
                            ));
                        }
                        TokenSource::Env(var.to_owned())
                    } else if let Some(path) = v.strip_prefix("file:") {
                        let path = path.strip_prefix("//").unwrap_or(path);
                        if path.is_empty() {
                            return Err(KeyError::invalid_ref(
                                "vault: `token-source=file:` needs a path",
                            ));
                        }
                        TokenSource::File(PathBuf::from(path))
                    } else {
                        return Err(KeyError::invalid_ref(
                            "vault: `token-source=` must be env:VAR or file:PATH",
                        ));
                    });
                }
                "token" | "token-value" => {
                    return Err(KeyError::invalid_ref(
                        "vault: a token is never accepted in the key reference (it would end up in \
                         configuration files, shell history and logs); use token-source=env:VAR or \
                         token-source=file:PATH, or VAULT_TOKEN",
                    ));
                }
                other => {
                    return Err(KeyError::invalid_ref(format!(
                        "unknown `vault:` attribute `{other}` (known: mount, addr, namespace, token-source)"
                    )));
                }
            }
        }
        Ok(r)
    }
}

impl fmt::Display for VaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault:{}", self.name)?;
        let mut query = Vec::new();
        if self.mount != Self::DEFAULT_MOUNT {
            query.push(format!("mount={}", enc(&self.mount)));
        }
        if let Some(a) = &self.addr {
            query.push(format!("addr={}", enc(a)));
        }
        if let Some(n) = &self.namespace {
            query.push(format!("namespace={}", enc(n)));
        }
        if let Some(t) = &self.token_source {
            query.push(format!("token-source={}", enc(&t.to_string())));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for AwsKmsRef {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let rest = s.strip_prefix("aws-kms:").ok_or_else(|| {
            KeyError::invalid_ref("an AWS KMS key reference starts with `aws-kms:`")
        })?;
        let (key, query) = match rest.split_once('?') {
            Some((k, q)) => (k, Some(q)),
            None => (rest, None),
        };
        if key.is_empty() {
            return Err(KeyError::invalid_ref(
                "`aws-kms:` needs a key id, key ARN or alias/NAME, e.g. aws-kms:alias/issuer",
            ));
        }
        let valid = key.len() <= 2048
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | ':'));
        if !valid {
            return Err(KeyError::invalid_ref(format!(
                "`aws-kms:` key `{key}` is not a key id, key ARN or alias/NAME"
            )));
        }
        let mut r = Self {
            key: key.to_owned(),
            region: None,
            endpoint: None,
        };
        if key.starts_with("arn:") && r.arn_region().is_none() {
            return Err(KeyError::invalid_ref(format!(
                "`aws-kms:` ARN `{key}` is not a KMS key or alias ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
            )));
        }
        if key == "alias/" || key.starts_with("alias/aws/") {
            return Err(KeyError::invalid_ref(format!(
                "`aws-kms:` alias `{key}`: alias/NAME with a name of your own (alias/aws/… are AWS managed \
                 keys, which cannot sign)"
            )));
        }
        for (k, v) in query_pairs("aws-kms", query)? {
            match k.as_str() {
                "region" => {
                    let valid = v
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    if !valid {
                        return Err(KeyError::invalid_ref(format!(
                            "aws-kms: `region={v}` is not an AWS region name (e.g. eu-central-1)"
                        )));
                    }
                    if let Some(arn) = r.arn_region()
                        && arn != v
                    {
                        return Err(KeyError::invalid_ref(format!(
                            "aws-kms: `region={v}` contradicts the key ARN's region {arn}"
                        )));
                    }
                    r.region = Some(v);
                }
                "endpoint" => {
                    check_service_url(&v, "aws-kms: `endpoint=`")?;
                    r.endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                other => {
                    return Err(KeyError::invalid_ref(format!(
                        "unknown `aws-kms:` attribute `{other}` (known: region, endpoint; credentials come \
                         from the AWS credential chain, never from the reference)"
                    )));
                }
            }
        }
        Ok(r)
    }
}

impl fmt::Display for AwsKmsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws-kms:{}", self.key)?;
        let mut query = Vec::new();
        if let Some(r) = &self.region {
            query.push(format!("region={}", enc(r)));
        }
        if let Some(e) = &self.endpoint {
            query.push(format!("endpoint={}", enc(e)));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_references_parse_and_print_back() {
        let r: VaultRef = "vault:issuer".parse().unwrap();
        assert_eq!((r.name.as_str(), r.mount.as_str()), ("issuer", "transit"));
        assert_eq!((r.addr, r.namespace, r.token_source), (None, None, None));
        let s = "vault:issuer?mount=keys%2Feu&addr=https://bao.internal:8200&namespace=payments&token-source=file:/run/bao-token";
        let r: VaultRef = s.parse().unwrap();
        assert_eq!(r.mount, "keys/eu");
        assert_eq!(r.addr.as_deref(), Some("https://bao.internal:8200"));
        assert_eq!(r.namespace.as_deref(), Some("payments"));
        assert_eq!(
            r.token_source,
            Some(TokenSource::File("/run/bao-token".into()))
        );
        assert_eq!(r.to_string().parse::<VaultRef>().unwrap(), r);
        let r: VaultRef = "vault:k?token-source=env:BAO_TOKEN_PAYMENTS"
            .parse()
            .unwrap();
        assert_eq!(
            r.token_source,
            Some(TokenSource::Env("BAO_TOKEN_PAYMENTS".into()))
        );
    }

    #[test]
    fn bad_vault_references_are_refused_clearly() {
        for (input, needle) in [
            ("vault:", "needs a Transit key name"),
            ("vault:a/b", "Transit key name"),
            ("vault:k?token=s.abc", "never accepted in the key reference"),
            ("vault:k?mount=a&mount=b", "more than once"),
            ("vault:k?mnt=a", "unknown `vault:` attribute `mnt`"),
            ("vault:k?addr=http://10.0.0.5:8200", "only to a loopback"),
            ("vault:k?addr=ftp://x", "expected an https:// URL"),
            ("vault:k?addr=https://user:pw@host", "no user information"),
            ("vault:k?token-source=prompt", "env:VAR or file:PATH"),
            ("vault:k?mount=../sys", "mount path"),
            ("vault:k?addr=", "is empty"),
            ("vault:k?addr=%zz", "percent-encoding"),
        ] {
            let err = input.parse::<VaultRef>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(!err.contains("s.abc"), "the token is never repeated: {err}");
        }
        for ok in [
            "http://127.0.0.1:8200",
            "http://[::1]:8200",
            "http://localhost:8200",
            "https://10.0.0.5",
        ] {
            check_service_url(ok, "addr").unwrap();
        }
    }

    #[test]
    fn key_services_keep_no_certificate() {
        let options = crate::OpenOptions::new();
        for r in ["vault:issuer", "aws-kms:alias/issuer"] {
            let key_ref: crate::KeyRef = r.parse().unwrap();
            // Nothing is contacted: a key service has no place for a certificate.
            assert_eq!(crate::read_certificate(&key_ref, &options).unwrap(), None);
            let err = crate::store_certificate(&key_ref, b"\x30\x00", false, &options).unwrap_err();
            assert!(
                matches!(err, KeyError::NotSupported { .. })
                    && err.to_string().contains("keeps keys, not certificates"),
                "{r}: {err}"
            );
        }
    }

    /// Without its feature, a key-service reference still parses and opening it says what to enable.
    #[test]
    fn a_key_service_without_its_feature_is_not_compiled_in() {
        for (r, compiled, feature) in [
            ("vault:issuer", cfg!(feature = "vault"), "vault"),
            ("aws-kms:alias/issuer", cfg!(feature = "aws-kms"), "aws-kms"),
        ] {
            if compiled {
                continue;
            }
            let err = crate::open(&r.parse().unwrap(), &crate::OpenOptions::new()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "the {feature} key backend is not compiled in (enable the `{feature}` feature of key-provider)"
                )
            );
        }
    }

    #[test]
    fn aws_kms_references_parse_and_print_back() {
        let r: AwsKmsRef = "aws-kms:alias/issuer".parse().unwrap();
        assert!(r.is_alias());
        assert_eq!(r.arn_region(), None);
        let r: AwsKmsRef = "aws-kms:1234abcd-12ab-34cd-56ef-1234567890ab?region=eu-central-1&endpoint=http://127.0.0.1:5000"
            .parse()
            .unwrap();
        assert!(!r.is_alias());
        assert_eq!(r.region.as_deref(), Some("eu-central-1"));
        assert_eq!(r.to_string().parse::<AwsKmsRef>().unwrap(), r);
        let arn =
            "aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let r: AwsKmsRef = arn.parse().unwrap();
        assert_eq!(r.arn_region(), Some("eu-west-1"));
        let r: AwsKmsRef = "aws-kms:arn:aws:kms:eu-west-1:111122223333:alias/issuer"
            .parse()
            .unwrap();
        assert!(r.is_alias());
        for (input, needle) in [
            ("aws-kms:", "needs a key id"),
            ("aws-kms:alias/aws/ebs", "AWS managed"),
            ("aws-kms:arn:aws:s3:::bucket", "not a KMS key"),
            (&format!("{arn}?region=us-east-1"), "contradicts"),
            ("aws-kms:k?profile=x", "unknown `aws-kms:` attribute"),
            (
                "aws-kms:k?endpoint=http://kms.example.com",
                "only to a loopback",
            ),
            ("aws-kms:k y", "not a key id"),
        ] {
            let err = input.parse::<AwsKmsRef>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}

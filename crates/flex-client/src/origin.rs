//! Which hosts may receive the tokens request. The capture context names the tokens endpoint (`flx.origin`
//! plus `flx.path`) and the encrypted card data goes there, so even a verified context is not trusted to send
//! it just anywhere: by default only `https` origins on Cybersource and Visa Acceptance hosts (the domains
//! `cybersource.com` and `visaacceptance.com` and their subdomains, default port) are allowed. Further
//! origins can be allowed explicitly; plain `http` only on loopback addresses (simulators).

use url::Url;

use crate::environment::is_loopback_host;
use crate::error::{FlexError, sanitize};

/// The domains whose https origins are allowed by default.
pub const FLEX_DOMAINS: [&str; 2] = ["cybersource.com", "visaacceptance.com"];

/// Allowed origins for the tokens request.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allow_flex_domains: bool,
    explicit: Vec<(String, String, u16)>,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self {
            allow_flex_domains: true,
            explicit: Vec::new(),
        }
    }
}

impl OriginPolicy {
    /// The default: https Cybersource / Visa Acceptance hosts only.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing allowed until [`OriginPolicy::allow`] is called.
    #[must_use]
    pub fn none() -> Self {
        Self {
            allow_flex_domains: false,
            explicit: Vec::new(),
        }
    }

    /// Allows one origin exactly (`https://flex.example.net`, `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`FlexError::Config`] for anything but a bare origin, or plain http off loopback.
    pub fn allow(&mut self, origin: &str) -> Result<(), FlexError> {
        let url = Url::parse(origin.trim()).map_err(|e| {
            FlexError::Config(format!("allowed origin {:?}: {e}", sanitize(origin)))
        })?;
        if !(url.path().is_empty() || url.path() == "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(FlexError::Config(format!(
                "allowed origin {:?} must be scheme://host[:port] with no path, query or credentials",
                sanitize(origin)
            )));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => {
                return Err(FlexError::Config(
                    "plain http origins are allowed only on loopback (127.0.0.1, [::1], localhost)"
                        .into(),
                ));
            }
            other => {
                return Err(FlexError::Config(format!(
                    "origin scheme {:?} is not supported",
                    sanitize(other)
                )));
            }
        }
        self.explicit
            .push(key(&url).ok_or_else(|| FlexError::Config("allowed origin has no host".into()))?);
        Ok(())
    }

    /// Whether the default Cybersource / Visa Acceptance domains are allowed (default true).
    pub fn allow_flex_domains(&mut self, allow: bool) {
        self.allow_flex_domains = allow;
    }

    /// Whether `url`'s origin is allowed.
    #[must_use]
    pub fn permits(&self, url: &Url) -> bool {
        let Some(k) = key(url) else { return false };
        if self.explicit.contains(&k) {
            return true;
        }
        self.allow_flex_domains
            && url.scheme() == "https"
            && url.port().is_none()
            && url.host_str().is_some_and(|h| {
                let h = h.to_ascii_lowercase();
                FLEX_DOMAINS
                    .iter()
                    .any(|d| h == *d || h.ends_with(&format!(".{d}")))
            })
    }

    /// The tokens URL `origin` + `path` of a capture context, once both are checked: the origin must be
    /// allowed and bare, the path absolute, made of `[A-Za-z0-9/._-]`, without `..` or `//`.
    ///
    /// # Errors
    /// [`FlexError::OriginNotAllowed`] or [`FlexError::Malformed`].
    pub fn tokens_url(&self, origin: &str, path: &str) -> Result<Url, FlexError> {
        let not_allowed = || FlexError::OriginNotAllowed {
            origin: sanitize(origin),
        };
        let base = Url::parse(origin).map_err(|_| not_allowed())?;
        if !(base.path().is_empty() || base.path() == "/")
            || base.query().is_some()
            || base.fragment().is_some()
            || !base.username().is_empty()
            || base.password().is_some()
            || !self.permits(&base)
        {
            return Err(not_allowed());
        }
        let path_ok = path.starts_with('/')
            && !path.starts_with("//")
            && !path.contains("..")
            && path.len() <= 256
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
        if !path_ok {
            return Err(FlexError::malformed(
                "capture context",
                "flx.path is not a plain absolute path",
            ));
        }
        let url = base
            .join(path)
            .map_err(|_| FlexError::malformed("capture context", "flx.path does not join"))?;
        if key(&url) != key(&base) {
            return Err(not_allowed());
        }
        Ok(url)
    }
}

fn key(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_allows_flex_https_hosts_only() {
        let p = OriginPolicy::new();
        let ok = p
            .tokens_url("https://testflex.cybersource.com", "/flex/v2/tokens")
            .unwrap();
        assert_eq!(
            ok.as_str(),
            "https://testflex.cybersource.com/flex/v2/tokens"
        );
        assert!(
            p.tokens_url("https://flex.visaacceptance.com", "/flex/v2/tokens")
                .is_ok()
        );
        for bad in [
            "http://testflex.cybersource.com",
            "https://testflex.cybersource.com.evil.example",
            "https://evilcybersource.com",
            "https://testflex.cybersource.com:8443",
            "https://user@testflex.cybersource.com",
            "https://testflex.cybersource.com/x",
            "http://127.0.0.1:9000",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(
                    p.tokens_url(bad, "/flex/v2/tokens"),
                    Err(FlexError::OriginNotAllowed { .. })
                ),
                "{bad}"
            );
        }
        for path in [
            "flex/v2/tokens",
            "//evil.example/x",
            "/../x",
            "/flex?x=1",
            "/a@b",
            "/flex/v2/tokens#f",
        ] {
            assert!(
                p.tokens_url("https://testflex.cybersource.com", path)
                    .is_err(),
                "{path}"
            );
        }
    }

    #[test]
    fn explicit_loopback_origin() {
        let mut p = OriginPolicy::none();
        assert!(p.allow("http://10.0.0.1:80").is_err());
        assert!(p.allow("http://127.0.0.1:9000/path").is_err());
        p.allow("http://127.0.0.1:9000").unwrap();
        assert!(
            p.tokens_url("http://127.0.0.1:9000", "/flex/v2/tokens")
                .is_ok()
        );
        assert!(
            p.tokens_url("http://127.0.0.1:9001", "/flex/v2/tokens")
                .is_err()
        );
        assert!(
            p.tokens_url("https://testflex.cybersource.com", "/flex/v2/tokens")
                .is_err()
        );
    }
}

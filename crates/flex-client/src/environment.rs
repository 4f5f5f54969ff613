//! Where the Flex API lives: the four public environments (Cybersource and Visa Acceptance, test and
//! production) or a custom base URL (a simulator, a proxy). The environment is part of the public-key cache
//! key, so a `kid` of the test environment is never confused with the same `kid` in production.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::error::{FlexError, sanitize};

/// A Flex API environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// `https://apitest.cybersource.com`
    CybersourceTest,
    /// `https://api.cybersource.com`
    CybersourceProduction,
    /// `https://apitest.visaacceptance.com`
    VisaAcceptanceTest,
    /// `https://api.visaacceptance.com`
    VisaAcceptanceProduction,
    /// Any other base URL (https, or http on a loopback address only).
    Custom(Url),
}

impl Environment {
    /// The names accepted by [`Environment::from_str`] besides URLs.
    pub const NAMES: [&'static str; 4] = [
        "cybersource-test",
        "cybersource-production",
        "visa-acceptance-test",
        "visa-acceptance-production",
    ];

    /// A custom base URL: `https://…`, or `http://` on 127.0.0.0/8, `[::1]` or `localhost` (simulators).
    ///
    /// # Errors
    /// [`FlexError::Config`] for other schemes, non-loopback http, or URLs with credentials, query or fragment.
    pub fn custom(url: &str) -> Result<Self, FlexError> {
        let url = Url::parse(url.trim())
            .map_err(|e| FlexError::Config(format!("base URL {:?}: {e}", sanitize(url))))?;
        check_base_url(&url)?;
        Ok(Self::Custom(url))
    }

    /// The API base URL, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        match self {
            Self::CybersourceTest => "https://apitest.cybersource.com".into(),
            Self::CybersourceProduction => "https://api.cybersource.com".into(),
            Self::VisaAcceptanceTest => "https://apitest.visaacceptance.com".into(),
            Self::VisaAcceptanceProduction => "https://api.visaacceptance.com".into(),
            Self::Custom(url) => url.as_str().trim_end_matches('/').to_owned(),
        }
    }

    /// A short name for logs and errors (`cybersource-test`, or the custom URL).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::CybersourceTest => Self::NAMES[0].into(),
            Self::CybersourceProduction => Self::NAMES[1].into(),
            Self::VisaAcceptanceTest => Self::NAMES[2].into(),
            Self::VisaAcceptanceProduction => Self::NAMES[3].into(),
            Self::Custom(_) => self.base_url(),
        }
    }

    /// The `host[:port]` merchant authentication signs (`request-host`, HTTP Signature `host`).
    #[must_use]
    pub fn host(&self) -> String {
        let base = self.base_url();
        // The base URLs above and checked custom URLs always parse and have a host.
        let url = Url::parse(&base).ok();
        match url
            .as_ref()
            .and_then(|u| u.host_str().map(|h| (h.to_owned(), u.port())))
        {
            Some((h, Some(p))) => format!("{h}:{p}"),
            Some((h, None)) => h,
            None => String::new(),
        }
    }

    /// The URL of `path` (which starts with `/`) on this environment.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Environment {
    type Err = FlexError;

    /// `cybersource-test`, `cybersource-production`, `visa-acceptance-test`, `visa-acceptance-production`
    /// (also `test`/`production` for Cybersource), or a base URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "cybersource-test" | "test" => Ok(Self::CybersourceTest),
            "cybersource-production" | "production" => Ok(Self::CybersourceProduction),
            "visa-acceptance-test" => Ok(Self::VisaAcceptanceTest),
            "visa-acceptance-production" => Ok(Self::VisaAcceptanceProduction),
            other if other.contains("://") => Self::custom(other),
            other => Err(FlexError::Config(format!(
                "unknown environment {:?}: use one of {} or a base URL",
                sanitize(other),
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// Whether `host` is a loopback name or address.
pub(crate) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn check_base_url(url: &Url) -> Result<(), FlexError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FlexError::Config(
            "base URL must not contain credentials".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(FlexError::Config(
            "base URL must not have a query or fragment".into(),
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => Ok(()),
        "http" => Err(FlexError::Config(
            "plain http is allowed only for loopback test servers (127.0.0.1, [::1], localhost); use https".into(),
        )),
        other => Err(FlexError::Config(format!("base URL scheme {:?} is not supported; use https", sanitize(other)))),
    }
}

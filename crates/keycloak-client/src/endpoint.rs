//! Keycloak's token endpoint URL, `{server}/realms/{realm}/protocol/openid-connect/token`, and the realm
//! issuer derived from it (`{server}/realms/{realm}`), the two audiences Keycloak accepts for a client
//! assertion.
//!
//! Plain `http` is accepted only for loopback hosts (tests, sidecars): credentials never travel in clear text.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use crate::error::KeycloakError;

/// The path Keycloak's token endpoint has below the realm issuer.
pub const TOKEN_PATH: &str = "/protocol/openid-connect/token";

/// A Keycloak token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEndpoint {
    url: Url,
    issuer: Option<String>,
    realm: Option<String>,
}

impl TokenEndpoint {
    /// From the token URL, e.g. `https://sso.example.com/auth/realms/loan-partner/protocol/openid-connect/token`.
    /// Other URLs are accepted too (then there is no realm issuer to use as audience).
    ///
    /// ```
    /// # fn main() -> Result<(), keycloak_client::KeycloakError> {
    /// use keycloak_client::TokenEndpoint;
    /// let endpoint = TokenEndpoint::from_token_url(
    ///     "https://sso.example.com/auth/realms/loan-partner/protocol/openid-connect/token",
    /// )?;
    /// assert_eq!(endpoint.realm(), Some("loan-partner"));
    /// assert_eq!(endpoint.issuer(), Some("https://sso.example.com/auth/realms/loan-partner"));
    /// assert!(TokenEndpoint::from_token_url("http://sso.example.com/token").is_err()); // https only
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`KeycloakError::Config`] for a URL that does not parse, is not https (except on loopback), or carries
    /// credentials, a query or a fragment.
    pub fn from_token_url(token_url: &str) -> Result<Self, KeycloakError> {
        let url = Url::parse(token_url.trim()).map_err(|e| {
            KeycloakError::config(format!(
                "token URL does not parse ({e}); give the full https URL"
            ))
        })?;
        check_url(&url)?;
        let path = url.path().trim_end_matches('/');
        let (issuer, realm) = match path.strip_suffix(TOKEN_PATH) {
            Some(realm_path) => match realm_path.rsplit_once("/realms/") {
                Some((_, realm)) if !realm.is_empty() && !realm.contains('/') => {
                    let mut issuer = url.clone();
                    issuer.set_path(realm_path);
                    (
                        Some(issuer.as_str().trim_end_matches('/').to_owned()),
                        Some(realm.to_owned()),
                    )
                }
                _ => (None, None),
            },
            None => (None, None),
        };
        Ok(Self { url, issuer, realm })
    }

    /// From the server's base URL (`https://sso.example.com` or `…/auth` for older Keycloak) and the realm.
    ///
    /// ```
    /// # fn main() -> Result<(), keycloak_client::KeycloakError> {
    /// let endpoint = keycloak_client::TokenEndpoint::for_realm("https://sso.example.com", "loan-partner")?;
    /// assert_eq!(
    ///     endpoint.token_url(),
    ///     "https://sso.example.com/realms/loan-partner/protocol/openid-connect/token"
    /// );
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`TokenEndpoint::from_token_url`]; [`KeycloakError::Config`] for an empty realm or one with `/`.
    pub fn for_realm(server_url: &str, realm: &str) -> Result<Self, KeycloakError> {
        if realm.is_empty() || realm.contains('/') {
            return Err(KeycloakError::config(
                "realm must be a non-empty name without `/`",
            ));
        }
        let base = server_url.trim().trim_end_matches('/');
        // RFC 3986 unreserved characters stay as they are.
        const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let realm_enc = percent_encoding::utf8_percent_encode(realm, PATH_SEGMENT);
        Self::from_token_url(&format!("{base}/realms/{realm_enc}{TOKEN_PATH}"))
    }

    /// The token URL.
    #[must_use]
    pub fn token_url(&self) -> &str {
        self.url.as_str()
    }

    /// The realm issuer (`…/realms/{realm}`), when the URL has Keycloak's shape.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The realm name (as it appears in the URL), when the URL has Keycloak's shape.
    #[must_use]
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenEndpoint")
            .field(&self.url.as_str())
            .finish()
    }
}

impl fmt::Display for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

fn check_url(url: &Url) -> Result<(), KeycloakError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(KeycloakError::config(
            "the token URL must not carry credentials; give the client secret through its own setting",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(KeycloakError::config(
            "the token URL must not have a query or fragment",
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(KeycloakError::config(
            "the token URL must use https (plain http is accepted only for loopback addresses)",
        )),
        other => Err(KeycloakError::config(format!(
            "the token URL must be https, not {other}:"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_issuer_and_realm() {
        let e = TokenEndpoint::from_token_url(
            "https://api-test.interhyp.de/user-service/auth/realms/loan-partner/protocol/openid-connect/token",
        )
        .unwrap();
        assert_eq!(
            e.issuer(),
            Some("https://api-test.interhyp.de/user-service/auth/realms/loan-partner")
        );
        assert_eq!(e.realm(), Some("loan-partner"));
        let f = TokenEndpoint::for_realm(
            "https://api-test.interhyp.de/user-service/auth/",
            "loan-partner",
        )
        .unwrap();
        assert_eq!(e, f);
    }

    #[test]
    fn non_keycloak_url_has_no_issuer() {
        let e = TokenEndpoint::from_token_url("https://idp.example.com/oauth2/token").unwrap();
        assert_eq!(e.issuer(), None);
        assert_eq!(e.token_url(), "https://idp.example.com/oauth2/token");
    }

    #[test]
    fn refuses_plain_http_except_loopback_and_credentials() {
        assert!(
            TokenEndpoint::from_token_url(
                "http://127.0.0.1:8080/realms/a/protocol/openid-connect/token"
            )
            .is_ok()
        );
        assert!(
            TokenEndpoint::from_token_url(
                "http://localhost/realms/a/protocol/openid-connect/token"
            )
            .is_ok()
        );
        assert!(
            TokenEndpoint::from_token_url("http://[::1]/realms/a/protocol/openid-connect/token")
                .is_ok()
        );
        let e = TokenEndpoint::from_token_url(
            "http://sso.example.com/realms/a/protocol/openid-connect/token",
        );
        assert!(e.unwrap_err().to_string().contains("https"));
        let e = TokenEndpoint::from_token_url(
            "https://u:p@sso.example.com/realms/a/protocol/openid-connect/token",
        );
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("credentials") && !msg.contains("u:p"), "{msg}");
        assert!(TokenEndpoint::from_token_url("ftp://x/y").is_err());
        assert!(TokenEndpoint::from_token_url("not a url").is_err());
    }
}

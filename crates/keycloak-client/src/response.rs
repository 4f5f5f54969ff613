//! The token endpoint's success response (RFC 6749 §5.1 plus Keycloak's members), tolerant of unknown
//! members. Tokens are held as `SecretString`: `Debug` redacts them and nothing here logs them.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A successful token response.
#[derive(Deserialize)]
#[non_exhaustive]
pub struct TokenResponse {
    /// The access token.
    pub access_token: SecretString,
    /// Access token lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Refresh token lifetime in seconds (Keycloak; 0 for offline tokens).
    #[serde(default)]
    pub refresh_expires_in: Option<u64>,
    /// The refresh token (absent for client credentials by default).
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    /// `Bearer` (Keycloak may spell it `bearer`).
    #[serde(default)]
    pub token_type: String,
    /// Keycloak's `not-before-policy`.
    #[serde(rename = "not-before-policy", default)]
    pub not_before_policy: Option<i64>,
    /// Keycloak's `session_state`.
    #[serde(default)]
    pub session_state: Option<String>,
    /// Granted scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// The ID token (scope `openid`).
    #[serde(default)]
    pub id_token: Option<SecretString>,
    /// Members this crate does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TokenResponse {
    /// The whole response as JSON, tokens included, for printing to a caller who asked for it (the CLI's
    /// `keycloak token`). Never log this.
    #[must_use]
    pub fn to_json_exposing_tokens(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "access_token".into(),
            Value::String(self.access_token.expose_secret().to_owned()),
        );
        if let Some(v) = self.expires_in {
            m.insert("expires_in".into(), v.into());
        }
        if let Some(v) = self.refresh_expires_in {
            m.insert("refresh_expires_in".into(), v.into());
        }
        if let Some(t) = &self.refresh_token {
            m.insert(
                "refresh_token".into(),
                Value::String(t.expose_secret().to_owned()),
            );
        }
        m.insert("token_type".into(), Value::String(self.token_type.clone()));
        if let Some(v) = self.not_before_policy {
            m.insert("not-before-policy".into(), v.into());
        }
        if let Some(v) = &self.session_state {
            m.insert("session_state".into(), Value::String(v.clone()));
        }
        if let Some(v) = &self.scope {
            m.insert("scope".into(), Value::String(v.clone()));
        }
        if let Some(t) = &self.id_token {
            m.insert(
                "id_token".into(),
                Value::String(t.expose_secret().to_owned()),
            );
        }
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(m)
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("token_type", &self.token_type)
            .field("not_before_policy", &self.not_before_policy)
            .field("session_state", &self.session_state)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token.as_ref().map(|_| "[REDACTED]"))
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keycloak_response_with_unknown_members_and_redacts_debug() {
        let body = r#"{"access_token":"AT-secret","expires_in":300,"refresh_expires_in":900,
            "refresh_token":"RT-secret","token_type":"bearer","not-before-policy":0,
            "session_state":"0c96da59-20c7-4490-9b47-268d989383d5","scope":"profile email",
            "id_token":"ID-secret","upgraded":true,"nested":{"a":[1,2]}}"#;
        let r: TokenResponse = serde_json::from_str(body).unwrap();
        assert_eq!(r.access_token.expose_secret(), "AT-secret");
        assert_eq!(r.expires_in, Some(300));
        assert_eq!(r.refresh_expires_in, Some(900));
        assert_eq!(r.not_before_policy, Some(0));
        assert_eq!(r.extra["upgraded"], true);
        let dbg = format!("{r:?}");
        assert!(
            !dbg.contains("AT-secret") && !dbg.contains("RT-secret") && !dbg.contains("ID-secret"),
            "{dbg}"
        );
        let json = r.to_json_exposing_tokens();
        assert_eq!(json["refresh_token"], "RT-secret");
        assert_eq!(json["not-before-policy"], 0);
        assert_eq!(json["nested"]["a"][1], 2);
    }

    #[test]
    fn minimal_response_parses() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","token_type":"Bearer"}"#).unwrap();
        assert!(r.refresh_token.is_none() && r.expires_in.is_none());
        assert!(serde_json::from_str::<TokenResponse>(r#"{"token_type":"Bearer"}"#).is_err());
    }
}

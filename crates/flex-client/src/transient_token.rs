//! Transient tokens: the RS256 JWT Flex returns for captured card data (valid 15 minutes), signed with the key
//! whose public half is the capture context's `flx.jwk`.
//!
//! [`TransientTokenClaims`] types the payloads of the published examples: `metadata` (with
//! `cardholderAuthenticationStatus` as a boolean or a string, `cardDetails`, `paymentType`…), `content`
//! (whose leaves are `{}` for "captured", `{"value":…}` or `{"maskedValue":…,"bin":…}`), `detectedCardTypes`,
//! `paymentCredentialsReference`; unknown members are kept. Verification is
//! [`crate::FlexClient::verify_transient_token`].

use std::fmt;

use jose_core::JwsAlgorithm;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::FlexError;

/// A transient token as received (a bearer credential for the payment: `Debug` shows only its length).
#[derive(Clone, PartialEq, Eq)]
pub struct TransientToken(String);

impl TransientToken {
    /// Wraps a compact JWT (whitespace is removed).
    #[must_use]
    pub fn new(jwt: &str) -> Self {
        Self(crate::capture_context::normalize_compact(jwt))
    }

    /// The compact JWT, e.g. for `tokenInformation.transientTokenJwt` in a payments request.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The compact JWT.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for TransientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransientToken({} bytes)", self.0.len())
    }
}

/// The claims of a transient token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransientTokenClaims {
    /// Issuer (`Flex/00`, `Flex/08`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Expiry (`iat` + 900).
    pub exp: u64,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Token type (`api-0.1.0`, `gda-0.10.0`, `uc-1.0.0`…).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Which fields were captured, with masked or public values.
    #[serde(default)]
    pub content: Content,
    /// Payment metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// References to stored payment credentials (Click to Pay, wallets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_credentials_reference: Option<Map<String, Value>>,
    /// All card types the number matched, when more than one did (dual-branded cards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_card_types: Option<Vec<String>>,
    /// Claims this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TransientTokenClaims {
    /// Parses claims from JSON bytes (the JWT payload).
    ///
    /// # Errors
    /// [`FlexError::Malformed`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, FlexError> {
        let claims = crate::capture_context::strict_object("transient token", bytes)?;
        serde_json::from_value(claims).map_err(|e| {
            FlexError::malformed("transient token", crate::capture_context::claim_error(&e))
        })
    }

    /// Dotted paths of every captured field (`paymentInformation.card.number`, …), in token order.
    #[must_use]
    pub fn captured_fields(&self) -> Vec<String> {
        self.content.captured_fields()
    }

    /// The masked card number (`XXXXXXXXXXXX1111`), if the card number was captured.
    #[must_use]
    pub fn masked_card_number(&self) -> Option<&str> {
        match self.content.get("paymentInformation.card.number")? {
            ContentNode::Masked { masked_value, .. } => Some(masked_value),
            _ => None,
        }
    }

    /// The card BIN from `content`, else the `metadata.cardDetails.prefix` (Click to Pay).
    #[must_use]
    pub fn card_bin(&self) -> Option<&str> {
        match self.content.get("paymentInformation.card.number") {
            Some(ContentNode::Masked { bin: Some(bin), .. }) => Some(bin),
            _ => self
                .metadata
                .as_ref()?
                .card_details
                .as_ref()?
                .prefix
                .as_deref(),
        }
    }

    /// The last four digits of the card, from the masked number or `metadata.cardDetails.suffix`.
    #[must_use]
    pub fn card_suffix(&self) -> Option<&str> {
        if let Some(m) = self.masked_card_number() {
            return m.get(m.len().saturating_sub(4)..);
        }
        self.metadata
            .as_ref()?
            .card_details
            .as_ref()?
            .suffix
            .as_deref()
    }

    /// Whether the cardholder was authenticated (`metadata.cardholderAuthenticationStatus`), if stated.
    #[must_use]
    pub fn cardholder_authenticated(&self) -> Option<bool> {
        self.metadata
            .as_ref()?
            .cardholder_authentication_status
            .as_ref()
            .map(CardholderAuthenticationStatus::is_authenticated)
    }
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Sequence number (a string in the examples; numbers are accepted).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<String>,
    /// Whether the payload is fully authenticated: seen both as `false` and as `"true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cardholder_authentication_status: Option<CardholderAuthenticationStatus>,
    /// `PANENTRY`, `SRCVISA`, `SRCMASTERCARD`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_type: Option<String>,
    /// Card-capture token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_jti: Option<String>,
    /// Network-token details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenized_card: Option<Value>,
    /// Card details for Click to Pay network tokens (BIN prefix, suffix, expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_details: Option<CardDetails>,
    /// Consumer preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_preference: Option<Value>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata.cardDetails`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardDetails {
    /// Last digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// BIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Expiry month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_month: Option<String>,
    /// Expiry year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_year: Option<String>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cardholderAuthenticationStatus`: a boolean in some payloads, a string in others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum CardholderAuthenticationStatus {
    /// `true` / `false`.
    Bool(bool),
    /// `"true"` / `"false"` (or anything else, which counts as not authenticated).
    Text(String),
}

impl CardholderAuthenticationStatus {
    /// True only for `true` or a case-insensitive `"true"`.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Text(s) => s.trim().eq_ignore_ascii_case("true"),
        }
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(D::Error::custom("expected a string or a number")),
    }
}

/// A node of `content`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ContentNode {
    /// `{}`: the field was captured; its value is not disclosed.
    Captured,
    /// `{"value": …}`: captured, with a value that may be disclosed (expiry, card type…).
    Value(String),
    /// `{"maskedValue": …, "bin": …}`: the card number, masked.
    Masked {
        /// `XXXXXXXXXXXX1111`.
        masked_value: String,
        /// The BIN, when given.
        bin: Option<String>,
    },
    /// A group of fields (`paymentInformation`, `card`, `billTo`…), in token order.
    Group(Vec<(String, ContentNode)>),
    /// A leaf of a shape this crate does not know, kept as is.
    Other(Value),
}

impl ContentNode {
    fn from_value(v: Value) -> Self {
        let Value::Object(map) = v else {
            return Self::Other(v);
        };
        if map.is_empty() {
            return Self::Captured;
        }
        if let Some(masked) = map.get("maskedValue").and_then(Value::as_str) {
            let bin = map.get("bin").and_then(Value::as_str).map(str::to_owned);
            return Self::Masked {
                masked_value: masked.to_owned(),
                bin,
            };
        }
        if map.len() == 1 {
            match map.get("value") {
                Some(Value::String(s)) => return Self::Value(s.clone()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => return Self::Value(v.to_string()),
                _ => {}
            }
        }
        if map.values().all(Value::is_object) {
            return Self::Group(
                map.into_iter()
                    .map(|(k, v)| (k, Self::from_value(v)))
                    .collect(),
            );
        }
        Self::Other(Value::Object(map))
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Captured => Value::Object(Map::new()),
            Self::Value(s) => serde_json::json!({ "value": s }),
            Self::Masked { masked_value, bin } => {
                let mut m = Map::new();
                m.insert("maskedValue".into(), masked_value.clone().into());
                if let Some(b) = bin {
                    m.insert("bin".into(), b.clone().into());
                }
                Value::Object(m)
            }
            Self::Group(children) => Value::Object(
                children
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
            Self::Other(v) => v.clone(),
        }
    }

    /// Whether this is a leaf (not a group).
    #[must_use]
    pub fn is_leaf(&self) -> bool {
        !matches!(self, Self::Group(_))
    }
}

/// `content`: the captured fields, as a tree.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content(pub Vec<(String, ContentNode)>);

impl Content {
    /// The node at a dotted path (`paymentInformation.card.number`).
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&ContentNode> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut node = self.0.iter().find(|(k, _)| k == first).map(|(_, n)| n)?;
        for part in parts {
            let ContentNode::Group(children) = node else {
                return None;
            };
            node = children.iter().find(|(k, _)| k == part).map(|(_, n)| n)?;
        }
        Some(node)
    }

    /// Whether the field at `path` was captured (a leaf is present there).
    #[must_use]
    pub fn is_captured(&self, path: &str) -> bool {
        self.get(path).is_some_and(ContentNode::is_leaf)
    }

    /// The disclosed value at `path` (`{"value": …}` leaves only).
    #[must_use]
    pub fn value(&self, path: &str) -> Option<&str> {
        match self.get(path)? {
            ContentNode::Value(s) => Some(s),
            _ => None,
        }
    }

    /// Dotted paths of every leaf, in token order.
    #[must_use]
    pub fn captured_fields(&self) -> Vec<String> {
        fn walk(prefix: &str, nodes: &[(String, ContentNode)], out: &mut Vec<String>) {
            for (k, n) in nodes {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match n {
                    ContentNode::Group(children) => walk(&path, children, out),
                    _ => out.push(path),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.0, &mut out);
        out
    }
}

/// Whether no member name of the `content` tree contains a `.`: field paths are dotted, so such a name would
/// make [`Content::captured_fields`] list a path that [`Content::get`] cannot find (found by fuzzing).
fn plain_names(nodes: &[(String, ContentNode)]) -> bool {
    nodes.iter().all(|(k, n)| {
        !k.contains('.')
            && match n {
                ContentNode::Group(children) => plain_names(children),
                _ => true,
            }
    })
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(map) => {
                let nodes: Vec<(String, ContentNode)> = map
                    .into_iter()
                    .map(|(k, v)| (k, ContentNode::from_value(v)))
                    .collect();
                if !plain_names(&nodes) {
                    return Err(D::Error::custom(
                        "`content` field names must not contain `.`",
                    ));
                }
                Ok(Self(nodes))
            }
            Value::Null => Ok(Self::default()),
            _ => Err(D::Error::custom("`content` must be an object")),
        }
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
        )
        .serialize(s)
    }
}

/// A verified transient token.
#[derive(Debug, Clone)]
pub struct VerifiedTransientToken {
    pub(crate) token: TransientToken,
    pub(crate) kid: String,
    pub(crate) alg: JwsAlgorithm,
    pub(crate) claims: TransientTokenClaims,
    pub(crate) raw_claims: Map<String, Value>,
}

impl VerifiedTransientToken {
    /// The token itself, to send with the payment request.
    #[must_use]
    pub fn token(&self) -> &TransientToken {
        &self.token
    }

    /// Its `kid` (= the capture context's `flx.jwk.kid`).
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signature algorithm.
    #[must_use]
    pub fn alg(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The typed claims.
    #[must_use]
    pub fn claims(&self) -> &TransientTokenClaims {
        &self.claims
    }

    /// The claims exactly as signed.
    #[must_use]
    pub fn raw_claims(&self) -> &Map<String, Value> {
        &self.raw_claims
    }
}

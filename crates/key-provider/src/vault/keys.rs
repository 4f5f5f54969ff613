//! A Transit key's description (`GET keys/NAME`: type, versions, each version's public key) and the key
//! management requests: create (`POST keys/NAME`) and rotate (`POST keys/NAME/rotate`).

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use super::BACKEND;
use super::client::{Conn, Op, sanitise};
use crate::remote::{Failure, RetryPolicy, with_retries};
use crate::{EcCurve, KeyError, KeySpec, PublicKey};

/// The Transit key types keybound uses, and what they are.
const TYPES: [(&str, KeySpec); 5] = [
    ("rsa-2048", KeySpec::Rsa(2048)),
    ("rsa-3072", KeySpec::Rsa(3072)),
    ("rsa-4096", KeySpec::Rsa(4096)),
    ("ecdsa-p256", KeySpec::Ec(EcCurve::P256)),
    ("ecdsa-p384", KeySpec::Ec(EcCurve::P384)),
];

/// The Transit type for a key spec.
///
/// # Errors
/// [`KeyError::NotSupported`] for a spec Transit has no type for (e.g. RSA-1024).
pub(crate) fn transit_type(spec: KeySpec) -> Result<&'static str, KeyError> {
    TYPES
        .iter()
        .find(|(_, s)| *s == spec)
        .map(|(t, _)| *t)
        .ok_or_else(|| KeyError::NotSupported {
            operation: format!("generating {spec:?}"),
            backend: BACKEND,
            reason: "keybound makes Transit keys of types rsa-2048, rsa-3072, rsa-4096 (--kty RSA --bits \
                     2048|3072|4096), ecdsa-p256 and ecdsa-p384 (--kty EC --crv P-256|P-384)"
                .into(),
        })
}

/// What `GET keys/NAME` says about a key keybound can use.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    /// The Transit type, e.g. `rsa-2048`.
    pub(crate) key_type: &'static str,
    /// `latest_version`: the version that signs.
    pub(crate) latest: u32,
    /// The public key of every version from `min_decryption_version` (or the oldest kept) to `latest`.
    pub(crate) versions: BTreeMap<u32, PublicKey>,
}

impl KeyInfo {
    /// Parses the answer to `GET keys/NAME` for the key `conn` names.
    ///
    /// # Errors
    /// [`KeyError::WrongKeyType`] for a type keybound does not use, [`KeyError::Backend`] for an answer
    /// that is not what Transit sends.
    pub(crate) fn parse(conn: &Conn, answer: &Value) -> Result<Self, KeyError> {
        let malformed = |why: &str| KeyError::Backend {
            backend: BACKEND,
            message: format!(
                "{}: the key description is not what Transit sends ({why})",
                conn.describe()
            ),
            source: None,
        };
        let data = answer.get("data").ok_or_else(|| malformed("no `data`"))?;
        let raw_type = data
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no `type`"))?;
        let (key_type, spec) = TYPES
            .iter()
            .find(|(t, _)| *t == raw_type)
            .copied()
            .ok_or_else(|| KeyError::WrongKeyType {
                operation: format!(
                    "using {} for JOSE signing and decryption (keybound uses Transit keys of types rsa-2048, \
                     rsa-3072, rsa-4096, ecdsa-p256 and ecdsa-p384)",
                    conn.describe()
                ),
                key: format!("Transit type {}", sanitise(raw_type)),
            })?;
        let number = |field: &str| {
            data.get(field)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let latest = number("latest_version")
            .filter(|v| *v >= 1)
            .ok_or_else(|| malformed("no `latest_version`"))?;
        let min_decryption = number("min_decryption_version").unwrap_or(1).max(1);
        let keys = data
            .get("keys")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("no `keys`"))?;
        let mut versions = BTreeMap::new();
        for (version, entry) in keys {
            let Ok(version) = version.parse::<u32>() else {
                return Err(malformed("a version that is not a number"));
            };
            if version < min_decryption && version != latest {
                continue;
            }
            let pem = entry
                .get("public_key")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("a version without `public_key`"))?;
            let public = PublicKey::from_pem(pem)
                .map_err(|e| malformed(&format!("version {version}'s public key: {e}")))?;
            let fits = match (spec, &public) {
                (KeySpec::Rsa(bits), PublicKey::Rsa { .. }) => public.bits() == bits,
                (KeySpec::Ec(curve), PublicKey::Ec { curve: c, .. }) => *c == curve,
                _ => false,
            };
            if !fits {
                return Err(malformed(&format!(
                    "version {version}'s public key is {}, not {key_type}",
                    public.describe()
                )));
            }
            versions.insert(version, public);
        }
        if !versions.contains_key(&latest) {
            return Err(malformed(&format!(
                "no public key for the latest version {latest}"
            )));
        }
        Ok(Self {
            key_type,
            latest,
            versions,
        })
    }
}

/// `GET keys/NAME`, with retries.
///
/// # Errors
/// [`KeyError::NotFound`], [`KeyError::AccessDenied`], [`KeyError::ServiceUnavailable`]…, or as
/// [`KeyInfo::parse`].
pub(crate) async fn read(conn: &Conn) -> Result<KeyInfo, KeyError> {
    let path = format!("keys/{}", conn.name);
    let (answer, _) = with_retries(
        BACKEND,
        &format!("reading {}", conn.describe()),
        RetryPolicy::default(),
        || conn.request(Op::Read, Method::GET, &path, None),
    )
    .await?;
    KeyInfo::parse(conn, &answer)
}

/// Creates the key: refuses an existing name, then `POST keys/NAME` (not exportable, no plaintext backup).
///
/// # Errors
/// [`KeyError::KeyExists`], or the request's errors.
pub(crate) async fn create(conn: &Conn, key_type: &str) -> Result<(), KeyError> {
    match read(conn).await {
        Ok(_) | Err(KeyError::WrongKeyType { .. }) => {
            return Err(KeyError::KeyExists {
                backend: BACKEND,
                what: conn.describe(),
            });
        }
        Err(KeyError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let path = format!("keys/{}", conn.name);
    let body = json!({
        "type": key_type,
        "exportable": false,
        "allow_plaintext_backup": false,
    });
    // Creating an existing key changes nothing on Transit, so a repeated request is harmless.
    with_retries(
        BACKEND,
        &format!("creating {}", conn.describe()),
        RetryPolicy::default(),
        || conn.request(Op::Create, Method::POST, &path, Some(&body)),
    )
    .await?;
    Ok(())
}

/// `POST keys/NAME/rotate` (retried only when it surely did not arrive, see the client).
///
/// # Errors
/// The request's errors.
pub(crate) async fn rotate(conn: &Conn) -> Result<(), KeyError> {
    let path = format!("keys/{}/rotate", conn.name);
    with_retries(
        BACKEND,
        &format!("rotating {}", conn.describe()),
        RetryPolicy::default(),
        || async {
            conn.request(Op::Rotate, Method::POST, &path, Some(&json!({})))
                .await
                .map(|_| ())
        },
    )
    .await?;
    Ok(())
}

/// A failure reading an answer's field.
pub(crate) fn malformed_answer(conn: &Conn, what: &str) -> Failure {
    Failure::Fatal(KeyError::Backend {
        backend: BACKEND,
        message: format!("{}: the answer has no {what}", conn.describe()),
        source: None,
    })
}

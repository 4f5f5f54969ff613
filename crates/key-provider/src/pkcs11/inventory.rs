//! Key management inside a token: listing its key pairs ([`list_keys`]) and deleting one ([`delete_key`]),
//! as `keybound keys list` and `keybound keys delete` do.
//!
//! A **key pair** is a private key object (`CKO_PRIVATE_KEY`) with the objects that belong to it: the public
//! key object(s) and certificate(s) with the same `CKA_ID` (with the same `CKA_LABEL` when the private key
//! has no `CKA_ID`). A public key or certificate without a private key is not a key pair and is not listed.
//! Private keys are visible only after login, so both functions log in with the key reference's PIN (from
//! its `pin-source=`, as for every key); only public attributes are read, never `CKA_VALUE` of a key.
//!
//! For each key pair [`list_keys`] reports: label, `CKA_ID`, type and size ([`KeyKind`]), `CKA_SIGN` /
//! `CKA_DECRYPT`, `CKA_SENSITIVE` / `CKA_EXTRACTABLE` (and `CKA_ALWAYS_SENSITIVE` / `CKA_NEVER_EXTRACTABLE`,
//! which say whether the key was ever outside the token), the public key when keybound can read it (RSA,
//! EC P-256/P-384; its RFC 7638 thumbprint is jose-core's business), whether a public key object exists, and
//! the subject of each certificate, written as RFC 4514 writes a distinguished name (`CN=signing,O=Bank,C=DE`:
//! the last RDN first, as `pkcs11-tool` and `openssl x509 -nameopt RFC2253` print it). Attributes the token
//! does not show are `None`, never guessed.
//!
//! [`delete_key`] needs a reference that names exactly one key pair (`object=` and/or `id=`): a token URI
//! alone, no match, or several matches are errors, and so is a `CKA_ID` shared by two private keys (the
//! public key and certificate could not be told apart). It destroys the private key first (if that fails,
//! nothing was deleted), then the public key objects and certificates (if one of these fails, the error says
//! the private key is gone and which object is left), in one read-write session, and emits one audit event
//! (target [`AUDIT_TARGET`](super::AUDIT_TARGET), operation `delete`).

use std::fmt;
use std::time::Instant;

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::der::{self, Reader};
use crate::dn::{distinguished_name, dotted_oid};
use crate::error::KeyError;
use crate::{OpenOptions, Pkcs11Uri, PublicKey};

use super::errors::Failure;
use super::key::{ObjectSelector, Reached, curve_from_ec_params, hex, reach, read_public_key};
use super::token::Token;
use super::{AUDIT_TARGET, BACKEND};

/// The key pairs of one token, as [`list_keys`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenKeys {
    /// The token's label (`CKA_LABEL` of the token info, blank padding removed).
    pub token_label: String,
    /// The token's serial number.
    pub token_serial: String,
    /// The key pairs, sorted by label, then id.
    pub keys: Vec<KeyPairInfo>,
}

/// One key pair in a token: what its objects say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPairInfo {
    /// The private key's `CKA_LABEL` (`None` when empty).
    pub label: Option<String>,
    /// The private key's `CKA_ID` (empty when it has none).
    pub id: Vec<u8>,
    /// Type and size.
    pub kind: KeyKind,
    /// The public key, when keybound can use this kind of key (RSA, EC P-256 and P-384).
    pub public_key: Option<PublicKey>,
    /// `CKA_SIGN` of the private key.
    pub sign: Option<bool>,
    /// `CKA_DECRYPT` of the private key.
    pub decrypt: Option<bool>,
    /// `CKA_SENSITIVE`: the key's value can never be read in plain.
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE`: the key may be wrapped out of the token.
    pub extractable: Option<bool>,
    /// `CKA_ALWAYS_SENSITIVE`: the key has been sensitive since it was made.
    pub always_sensitive: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE`: the key has never been extractable.
    pub never_extractable: Option<bool>,
    /// Whether a public key object belongs to the pair.
    pub public_key_object: bool,
    /// The certificates that belong to the pair.
    pub certificates: Vec<CertificateInfo>,
}

impl KeyPairInfo {
    /// `label 'signing', id 01` (label and id as the token has them), for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.label {
            parts.push(format!("label '{label}'"));
        }
        if !self.id.is_empty() {
            parts.push(format!("id {}", hex(&self.id)));
        }
        if parts.is_empty() {
            "a key with neither label nor id".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A key's type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// RSA; `bits` when the token shows the modulus.
    Rsa {
        /// The modulus size in bits.
        bits: Option<usize>,
    },
    /// EC on a named curve: `P-256`, `P-384`, `P-521`, `secp256k1`, or the curve's OID in dotted form
    /// (`unknown` when the token shows no parameters).
    Ec {
        /// The curve.
        curve: String,
    },
    /// Any other key type, by its PKCS#11 name (`CKK_EC_EDWARDS`, `CKK_DSA`…).
    Other {
        /// The `CKK_…` name.
        key_type: String,
    },
}

impl fmt::Display for KeyKind {
    /// `RSA-2048`, `EC P-256`, `CKK_EC_EDWARDS` (`RSA` when the size is not shown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits: Some(bits) } => write!(f, "RSA-{bits}"),
            Self::Rsa { bits: None } => f.write_str("RSA"),
            Self::Ec { curve } => write!(f, "EC {curve}"),
            Self::Other { key_type } => f.write_str(key_type),
        }
    }
}

/// A certificate object of a key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The certificate object's `CKA_LABEL` (`None` when empty).
    pub label: Option<String>,
    /// The subject, RFC 4514 (from `CKA_SUBJECT`, else from the certificate in `CKA_VALUE`); `None` when
    /// neither can be read.
    pub subject: Option<String>,
}

/// What [`delete_key`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeletedKey {
    /// The token, `token 'LABEL' (serial SERIAL)`.
    pub token: String,
    /// The key pair, as it was before deletion.
    pub key: KeyPairInfo,
    /// How many public key objects were destroyed.
    pub public_key_objects: usize,
    /// How many certificate objects were destroyed.
    pub certificates: usize,
}

/// Lists the key pairs in the token named by `uri`: every private key, or with `object=` and/or `id=`, the
/// ones with that label and/or id. Logs in with the URI's PIN (private keys are visible only then).
///
/// ```no_run
/// # fn main() -> Result<(), key_provider::KeyError> {
/// use key_provider::{OpenOptions, Pkcs11Uri};
/// let uri: Pkcs11Uri = "pkcs11:token=keybound-prod\
///     ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin"
///     .parse()?;
/// let listed = key_provider::pkcs11::list_keys(&uri, &OpenOptions::new())?;
/// for key in &listed.keys {
///     println!("{} {}", key.describe(), key.kind); // label 'signing', id 01 RSA-2048
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] for a `type=` other than `private`; module, token, PIN and PKCS#11 errors as
/// for opening a key. No match is not an error: the list is empty.
pub fn list_keys(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<TokenKeys, KeyError> {
    refuse_other_types(uri)?;
    let Reached { token, pin, wait } = reach(uri, options)?;
    let selector = ObjectSelector::from_uri(uri);
    let keys = token
        .run(pin.as_ref(), wait, false, |session, _| {
            key_pairs(session, &selector, &token)
        })
        .map(|ran| ran.value)
        .map_err(|failed| failed.into_key_error(token.description()))?;
    Ok(TokenKeys {
        token_label: token.label().to_owned(),
        token_serial: token.serial().to_owned(),
        keys,
    })
}

/// Deletes the key pair named by `uri` (`object=` and/or `id=`): its private key, public key objects and
/// certificates (see the module docs). Asks nobody: confirming is the caller's business.
///
/// # Errors
/// [`KeyError::InvalidKeyRef`] for a reference without `object=` and `id=`; [`KeyError::NotFound`];
/// [`KeyError::Ambiguous`] naming the key pairs that match; [`KeyError::Backend`] naming the private keys
/// that share the key's id; module, token, PIN and PKCS#11 errors (the token refusing `C_DestroyObject`, for
/// example).
pub fn delete_key(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<DeletedKey, KeyError> {
    refuse_other_types(uri)?;
    if uri.object.is_none() && uri.id.is_none() {
        return Err(KeyError::invalid_ref(
            "name the key to delete with `object=` (label) and/or `id=`; a token alone names all its keys",
        ));
    }
    let started = Instant::now();
    let selector = ObjectSelector::from_uri(uri);
    let Reached { token, pin, wait } = reach(uri, options)?;
    let creating = token.creating();
    let result = token.run(pin.as_ref(), wait, true, |session, _| {
        delete_pair(session, &selector, &token)
    });
    drop(creating);
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(ran) => {
            let deleted = ran.value;
            tracing::info!(
                target: AUDIT_TARGET,
                backend = BACKEND,
                token = %token.description(),
                key = %deleted.key.describe(),
                operation = "delete",
                public_key_objects = deleted.public_key_objects,
                certificates = deleted.certificates,
                outcome = "success",
                latency_us,
                retried = ran.retried,
            );
            Ok(deleted)
        }
        Err(failed) => {
            let ckr = failed.ckr();
            let retried = failed.retried;
            let error = failed.into_key_error(token.description());
            tracing::warn!(
                target: AUDIT_TARGET,
                backend = BACKEND,
                token = %token.description(),
                key = %selector.describe(),
                operation = "delete",
                outcome = "failure",
                latency_us,
                retried,
                ckr = ckr.as_deref().unwrap_or("-"),
                error = %error,
            );
            Err(error)
        }
    }
}

fn refuse_other_types(uri: &Pkcs11Uri) -> Result<(), KeyError> {
    if uri
        .object_type
        .is_some_and(|t| t != crate::ObjectType::Private)
    {
        return Err(KeyError::invalid_ref(
            "`type=` must be `private` (or left out): keys are listed and deleted by their private key",
        ));
    }
    Ok(())
}

fn delete_pair(
    session: &Session,
    selector: &ObjectSelector,
    token: &Token,
) -> Result<DeletedKey, Failure> {
    let searched = || format!("{} in {}", selector.describe(), token.description());
    let private = match session
        .find_objects(&selector.template(ObjectClass::PRIVATE_KEY))?
        .as_slice()
    {
        [one] => *one,
        [] => {
            return Err(Failure::Key(KeyError::NotFound {
                backend: BACKEND,
                what: "private key",
                searched: searched(),
            }));
        }
        many => {
            let mut names = Vec::with_capacity(many.len());
            for handle in many {
                names.push(describe_private(session, *handle)?);
            }
            return Err(Failure::Key(KeyError::Ambiguous {
                backend: BACKEND,
                what: "key pair",
                searched: format!("{} ({})", searched(), names.join("; ")),
                count: many.len(),
            }));
        }
    };
    let info = key_pair(session, private, token)?;
    let Some(pairing) = pairing(&info) else {
        session.destroy_object(private)?;
        return Ok(DeletedKey {
            token: token.description().to_owned(),
            key: info,
            public_key_objects: 0,
            certificates: 0,
        });
    };
    let sharing =
        session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), pairing.clone()])?;
    if sharing.len() > 1 {
        let mut names = Vec::with_capacity(sharing.len());
        for handle in &sharing {
            names.push(describe_private(session, *handle)?);
        }
        return Err(Failure::Key(KeyError::Backend {
            backend: BACKEND,
            message: format!(
                "not deleted: {} shares its {} with another private key in {} ({}), so its public key and \
                 certificates cannot be told apart; give the keys distinct ids first (`pkcs11-tool --set-id`)",
                info.describe(),
                if info.id.is_empty() {
                    "label (and has no id)"
                } else {
                    "id"
                },
                token.description(),
                names.join("; ")
            ),
            source: None,
        }));
    }
    let publics =
        session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), pairing.clone()])?;
    let certificates =
        session.find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), pairing])?;
    // The private key first: if the token refuses, nothing is gone.
    session.destroy_object(private)?;
    let rest = publics
        .iter()
        .map(|o| (*o, "public key"))
        .chain(certificates.iter().map(|o| (*o, "certificate")));
    for (object, what) in rest {
        if let Err(e) = session.destroy_object(object) {
            // Not retried: the private key is gone, and a second attempt would not find it.
            return Err(Failure::Key(KeyError::Backend {
                backend: BACKEND,
                message: format!(
                    "the private key of {} in {} was deleted, but a {what} object with its {} was not ({}); \
                     delete it with the token's own tools",
                    info.describe(),
                    token.description(),
                    if info.id.is_empty() { "label" } else { "id" },
                    Failure::Ck(e).describe()
                ),
                source: None,
            }));
        }
    }
    Ok(DeletedKey {
        token: token.description().to_owned(),
        key: info,
        public_key_objects: publics.len(),
        certificates: certificates.len(),
    })
}

/// `label 'x', id 01` of a private key object.
fn describe_private(session: &Session, object: ObjectHandle) -> Result<String, Failure> {
    let (label, id) = label_and_id(session, object)?;
    Ok(ObjectSelector {
        label,
        id: (!id.is_empty()).then_some(id),
    }
    .describe())
}

fn label_and_id(
    session: &Session,
    object: ObjectHandle,
) -> Result<(Option<String>, Vec<u8>), Failure> {
    let mut label = None;
    let mut id = Vec::new();
    for attribute in session.get_attributes(object, &[AttributeType::Label, AttributeType::Id])? {
        match attribute {
            Attribute::Label(v) if !v.is_empty() => {
                label = Some(String::from_utf8_lossy(&v).into_owned());
            }
            Attribute::Id(v) => id = v,
            _ => {}
        }
    }
    Ok((label, id))
}

/// The attribute that ties a key pair's objects together: its `CKA_ID`, else its `CKA_LABEL`.
fn pairing(info: &KeyPairInfo) -> Option<Attribute> {
    if !info.id.is_empty() {
        Some(Attribute::Id(info.id.clone()))
    } else {
        info.label
            .as_ref()
            .map(|l| Attribute::Label(l.as_bytes().to_vec()))
    }
}

/// Every key pair whose private key matches `selector`, sorted by label, then id.
fn key_pairs(
    session: &Session,
    selector: &ObjectSelector,
    token: &Token,
) -> Result<Vec<KeyPairInfo>, Failure> {
    let mut keys = Vec::new();
    for private in session.find_objects(&selector.template(ObjectClass::PRIVATE_KEY))? {
        keys.push(key_pair(session, private, token)?);
    }
    keys.sort_by(|a, b| (&a.label, &a.id).cmp(&(&b.label, &b.id)));
    Ok(keys)
}

/// The private key's attributes that [`key_pair`] reads (all public; never `CKA_VALUE` or the primes).
const PRIVATE_ATTRIBUTES: [AttributeType; 11] = [
    AttributeType::Label,
    AttributeType::Id,
    AttributeType::KeyType,
    AttributeType::Sign,
    AttributeType::Decrypt,
    AttributeType::Sensitive,
    AttributeType::Extractable,
    AttributeType::AlwaysSensitive,
    AttributeType::NeverExtractable,
    AttributeType::Modulus,
    AttributeType::EcParams,
];

fn key_pair(
    session: &Session,
    private: ObjectHandle,
    token: &Token,
) -> Result<KeyPairInfo, Failure> {
    let mut info = KeyPairInfo {
        label: None,
        id: Vec::new(),
        kind: KeyKind::Other {
            key_type: "unknown".into(),
        },
        public_key: None,
        sign: None,
        decrypt: None,
        sensitive: None,
        extractable: None,
        always_sensitive: None,
        never_extractable: None,
        public_key_object: false,
        certificates: Vec::new(),
    };
    let mut key_type = None;
    let mut modulus = None;
    let mut ec_params = None;
    for attribute in session.get_attributes(private, &PRIVATE_ATTRIBUTES)? {
        match attribute {
            Attribute::Label(v) if !v.is_empty() => {
                info.label = Some(String::from_utf8_lossy(&v).into_owned());
            }
            Attribute::Id(v) => info.id = v,
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Sign(v) => info.sign = Some(v),
            Attribute::Decrypt(v) => info.decrypt = Some(v),
            Attribute::Sensitive(v) => info.sensitive = Some(v),
            Attribute::Extractable(v) => info.extractable = Some(v),
            Attribute::AlwaysSensitive(v) => info.always_sensitive = Some(v),
            Attribute::NeverExtractable(v) => info.never_extractable = Some(v),
            Attribute::Modulus(v) if !v.is_empty() => modulus = Some(v),
            Attribute::EcParams(v) if !v.is_empty() => ec_params = Some(v),
            _ => {}
        }
    }
    let paired_by = pairing(&info);
    let publics = match &paired_by {
        Some(p) => session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), p.clone()])?,
        None => Vec::new(),
    };
    info.public_key_object = !publics.is_empty();
    // The public key as keybound reads it for signing (own attributes, else the public key object).
    let own = ObjectSelector {
        label: info.label.clone(),
        id: (!info.id.is_empty()).then(|| info.id.clone()),
    };
    info.public_key = match read_public_key(session, private, &own, token) {
        Ok(public) => Some(public),
        // Not a kind of key keybound uses, or its public half cannot be found: listed all the same.
        Err(Failure::Key(e)) => {
            tracing::debug!(key = %info.describe(), error = %e, "no public key for a listed key");
            None
        }
        Err(e) => return Err(e),
    };
    // Type and size: from the public key, else from what the objects show.
    if ec_params.is_none() || modulus.is_none() {
        if let [public, ..] = publics.as_slice() {
            for attribute in session
                .get_attributes(*public, &[AttributeType::Modulus, AttributeType::EcParams])?
            {
                match attribute {
                    Attribute::Modulus(v) if !v.is_empty() && modulus.is_none() => {
                        modulus = Some(v);
                    }
                    Attribute::EcParams(v) if !v.is_empty() && ec_params.is_none() => {
                        ec_params = Some(v);
                    }
                    _ => {}
                }
            }
        }
    }
    info.kind = match (&info.public_key, key_type) {
        (Some(public @ PublicKey::Rsa { .. }), _) => KeyKind::Rsa {
            bits: Some(public.bits()),
        },
        (Some(PublicKey::Ec { curve, .. }), _) => KeyKind::Ec {
            curve: curve.name().to_owned(),
        },
        (_, Some(KeyType::RSA)) => KeyKind::Rsa {
            bits: modulus.as_deref().map(|n| {
                let n = trim_leading_zeros(n);
                n.first()
                    .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize)
            }),
        },
        (_, Some(KeyType::EC)) => KeyKind::Ec {
            curve: ec_params
                .as_deref()
                .map_or_else(|| "unknown".to_owned(), curve_name),
        },
        (_, Some(other)) => KeyKind::Other {
            key_type: other.to_string(),
        },
        (_, None) => KeyKind::Other {
            key_type: "unknown".into(),
        },
    };
    if let Some(p) = paired_by {
        for certificate in session.find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), p])? {
            info.certificates
                .push(certificate_info(session, certificate)?);
        }
    }
    Ok(info)
}

fn trim_leading_zeros(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    &v[start..]
}

fn certificate_info(session: &Session, object: ObjectHandle) -> Result<CertificateInfo, Failure> {
    let mut label = None;
    let mut subject = None;
    let mut value = None;
    for attribute in session.get_attributes(
        object,
        &[
            AttributeType::Label,
            AttributeType::Subject,
            AttributeType::Value,
        ],
    )? {
        match attribute {
            Attribute::Label(v) if !v.is_empty() => {
                label = Some(String::from_utf8_lossy(&v).into_owned());
            }
            Attribute::Subject(v) if !v.is_empty() => subject = Some(v),
            Attribute::Value(v) if !v.is_empty() => value = Some(v),
            _ => {}
        }
    }
    let subject = subject.as_deref().and_then(distinguished_name).or_else(|| {
        value
            .as_deref()
            .and_then(certificate_subject)
            .and_then(|name| distinguished_name(&name))
    });
    Ok(CertificateInfo { label, subject })
}

/// The subject Name of an X.509 certificate, as a whole DER SEQUENCE (as `CKA_SUBJECT` holds it).
fn certificate_subject(certificate: &[u8]) -> Option<Vec<u8>> {
    let mut outer = Reader::new(certificate);
    let mut cert = Reader::new(outer.read(der::TAG_SEQUENCE).ok()?);
    let mut tbs = Reader::new(cert.read(der::TAG_SEQUENCE).ok()?);
    let (mut tag, _) = tbs.read_any().ok()?;
    if tag == 0xa0 {
        // [0] version, then the serial number
        (tag, _) = tbs.read_any().ok()?;
    }
    if tag != der::TAG_INTEGER {
        return None;
    }
    let _signature = tbs.read(der::TAG_SEQUENCE).ok()?;
    let _issuer = tbs.read(der::TAG_SEQUENCE).ok()?;
    let _validity = tbs.read(der::TAG_SEQUENCE).ok()?;
    // The reader accepts minimal lengths only, so writing the TLV again gives the very bytes.
    Some(der::tlv(
        der::TAG_SEQUENCE,
        tbs.read(der::TAG_SEQUENCE).ok()?,
    ))
}

/// The curve named by DER `CKA_EC_PARAMS`: `P-256`/`P-384` (which keybound uses), `P-521`, `secp256k1`,
/// else the OID (or, for the Edwards and Montgomery curves, the printable name some tokens store).
fn curve_name(params: &[u8]) -> String {
    if let Some(curve) = curve_from_ec_params(params) {
        return curve.name().to_owned();
    }
    let mut r = Reader::new(params);
    match r.read_any() {
        Ok((der::TAG_OID, [0x2b, 0x81, 0x04, 0x00, 0x23])) => "P-521".into(),
        Ok((der::TAG_OID, [0x2b, 0x81, 0x04, 0x00, 0x0a])) => "secp256k1".into(),
        Ok((der::TAG_OID, oid)) => dotted_oid(oid),
        Ok((0x13, name)) => String::from_utf8_lossy(name).into_owned(),
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_and_oids_are_named() {
        assert_eq!(
            curve_name(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
            "P-521"
        );
        assert_eq!(
            curve_name(&der::tlv(der::TAG_OID, crate::EcCurve::P384.oid())),
            "P-384"
        );
        assert_eq!(
            dotted_oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            "1.2.840.10045.3.1.7"
        );
        assert_eq!(
            curve_name(&[
                0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9'
            ]),
            "edwards25519"
        );
    }
}

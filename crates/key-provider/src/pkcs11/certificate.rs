//! The certificate of a key, kept in the token beside it: a `CKO_CERTIFICATE` object of type `CKC_X_509`
//! with the private key's `CKA_ID` and `CKA_LABEL`, `CKA_TOKEN` true and `CKA_PRIVATE` false (a certificate
//! is public), and `CKA_VALUE` (the DER), `CKA_SUBJECT`, `CKA_ISSUER`, `CKA_SERIAL_NUMBER` from the
//! certificate, as `pkcs11-tool --write-object --type cert` and most HSM tools write it.
//!
//! A certificate is stored only for its own key: its SubjectPublicKeyInfo must be the private key's public
//! key. A key has at most one certificate here: storing another is refused unless the caller asks to
//! replace it (then the new object is created first and the old ones destroyed after, so a failure never
//! leaves the key without its certificate).

use std::time::Instant;

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::KeyError;
use crate::{Certificate, OpenOptions, Pkcs11Uri};

use super::errors::Failure;
use super::key::{ObjectSelector, Reached, find_private_key, hex, reach, read_public_key};
use super::{AUDIT_TARGET, BACKEND};

/// An attribute's bytes, when the object has it (non-empty).
type Bytes = Option<Vec<u8>>;

/// The private key's `CKA_ID` and `CKA_LABEL`: the certificate's names.
fn names_of(session: &Session, key: ObjectHandle) -> Result<(Bytes, Bytes), Failure> {
    let mut id = None;
    let mut label = None;
    for attribute in session.get_attributes(key, &[AttributeType::Id, AttributeType::Label])? {
        match attribute {
            Attribute::Id(v) if !v.is_empty() => id = Some(v),
            Attribute::Label(v) if !v.is_empty() => label = Some(v),
            _ => {}
        }
    }
    Ok((id, label))
}

/// The certificate objects of the key with `id` (else `label`).
fn certificates_of(
    session: &Session,
    id: Option<&Vec<u8>>,
    label: Option<&Vec<u8>>,
) -> Result<Vec<ObjectHandle>, Failure> {
    let mut template = vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
    ];
    match (id, label) {
        (Some(id), _) => template.push(Attribute::Id(id.clone())),
        (None, Some(label)) => template.push(Attribute::Label(label.clone())),
        (None, None) => return Ok(Vec::new()),
    }
    Ok(session.find_objects(&template)?)
}

/// Stores `der`, the X.509 certificate of the private key `uri` names, in its token (module docs).
///
/// # Errors
/// [`KeyError::InvalidKeyMaterial`] when `der` is not a certificate or its public key is not the key's;
/// [`KeyError::KeyExists`] when the key has a certificate already and `replace` is false; the errors of
/// [`open`](super::open).
pub fn store_certificate(
    uri: &Pkcs11Uri,
    der: &[u8],
    replace: bool,
    options: &OpenOptions,
) -> Result<(), KeyError> {
    let certificate = Certificate::from_der(der)?;
    let started = Instant::now();
    let selector = ObjectSelector::from_uri(uri);
    let Reached { token, pin, wait } = reach(uri, options)?;
    let creating = token.creating();
    let result = token.run(pin.as_ref(), wait, true, |session, _| {
        let key = find_private_key(session, &selector, &token)?;
        let public = read_public_key(session, key, &selector, &token)?;
        if public != certificate.public_key {
            return Err(Failure::Key(KeyError::invalid_key(format!(
                "the certificate's public key ({}) is not the public key of the key with {} in {} ({}); \
                 give the certificate issued for this key",
                certificate.public_key.describe(),
                selector.describe(),
                token.description(),
                public.describe()
            ))));
        }
        let (id, label) = names_of(session, key)?;
        let existing = certificates_of(session, id.as_ref(), label.as_ref())?;
        if !existing.is_empty() && !replace {
            return Err(Failure::Key(KeyError::KeyExists {
                backend: BACKEND,
                what: format!(
                    "a certificate of the key with {} in {}",
                    selector.describe(),
                    token.description()
                ),
            }));
        }
        let mut template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Value(der.to_vec()),
            Attribute::Subject(certificate.subject_der()),
            Attribute::Issuer(certificate.issuer_der()),
            Attribute::SerialNumber(certificate.serial_der()),
        ];
        template.extend(id.iter().cloned().map(Attribute::Id));
        template.extend(label.iter().cloned().map(Attribute::Label));
        session.create_object(&template)?;
        for old in &existing {
            session.destroy_object(*old)?;
        }
        Ok((id, existing.len()))
    });
    drop(creating);
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(ran) => {
            tracing::info!(
                target: AUDIT_TARGET,
                backend = BACKEND,
                token = %token.description(),
                key = %selector.describe(),
                operation = "store certificate",
                id = %ran.value.0.as_deref().map(hex).unwrap_or_default(),
                replaced = ran.value.1,
                outcome = "success",
                latency_us,
                retried = ran.retried,
            );
            Ok(())
        }
        Err(failed) => {
            let ckr = failed.ckr();
            let error = failed.into_key_error(token.description());
            tracing::warn!(
                target: AUDIT_TARGET,
                backend = BACKEND,
                token = %token.description(),
                key = %selector.describe(),
                operation = "store certificate",
                outcome = "failure",
                latency_us,
                ckr = ckr.as_deref().unwrap_or("-"),
                error = %error,
            );
            Err(error)
        }
    }
}

/// The DER X.509 certificate stored for the private key `uri` names (module docs), or `None`.
///
/// # Errors
/// [`KeyError::Ambiguous`] when the token holds several certificates for the key; the errors of
/// [`open`](super::open).
pub fn read_certificate(
    uri: &Pkcs11Uri,
    options: &OpenOptions,
) -> Result<Option<Vec<u8>>, KeyError> {
    let selector = ObjectSelector::from_uri(uri);
    let Reached { token, pin, wait } = reach(uri, options)?;
    let result = token.run(pin.as_ref(), wait, false, |session, _| {
        let key = find_private_key(session, &selector, &token)?;
        let (id, label) = names_of(session, key)?;
        match certificates_of(session, id.as_ref(), label.as_ref())?.as_slice() {
            [] => Ok(None),
            [one] => {
                let value = session
                    .get_attributes(*one, &[AttributeType::Value])?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::Value(v) => Some(v),
                        _ => None,
                    });
                Ok(value)
            }
            many => Err(Failure::Key(KeyError::Ambiguous {
                backend: BACKEND,
                what: "certificate",
                searched: format!(
                    "the key with {} in {}",
                    selector.describe(),
                    token.description()
                ),
                count: many.len(),
            })),
        }
    });
    result
        .map(|ran| ran.value)
        .map_err(|failed| failed.into_key_error(token.description()))
}

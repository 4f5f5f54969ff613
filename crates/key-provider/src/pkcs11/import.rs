//! Importing a private key from outside (a partner's PKCS#12 file, a PEM key) into a token, with its public
//! key and certificate: [`import`], behind `keybound keys import`.
//!
//! All objects get the URI's label and one `CKA_ID` (the URI's `id=`, else 8 fresh random bytes); a label or
//! id already in the token is refused before anything is created. The private key is created as every key
//! keybound makes (`CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`; `CKA_SIGN` and, only
//! for [`KeyUsage::SignAndDecrypt`]/[`KeyUsage::Decrypt`], `CKA_DECRYPT`). As it was not generated in the
//! token, the token reports it as neither "always sensitive" nor "never extractable".
//!
//! Two ways in, tried in this order:
//! 1. `C_CreateObject` with the key's components (the usual way; SoftHSM and most HSMs accept it);
//! 2. when the token refuses a sensitive private key given in plaintext (`CKR_ATTRIBUTE_VALUE_INVALID`,
//!    `CKR_TEMPLATE_INCONSISTENT`, as FIPS-mode HSMs do): a session AES-256 key created from 32 random bytes,
//!    the PKCS#8 key wrapped in software with AES key wrap with padding (RFC 5649, aws-lc-rs), `C_UnwrapKey`
//!    with `CKM_AES_KEY_WRAP_PAD`, and the session key destroyed. A token that refuses both is named as such.
//!
//! **Nothing half-imported**: when any step fails (the public key, the certificate), every object created so
//! far is destroyed before the error is returned.

use std::sync::Arc;

use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded as _};
use aws_lc_rs::rand::SecureRandom as _;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::der::{self, Reader};
use crate::{
    Certificate, ImportKey, KeyBackend, KeyError, KeyUsage, OpenOptions, Pkcs11Uri, PublicKey,
};

use super::BACKEND;
use super::errors::Failure;
use super::generate::{
    allowed_mechanisms, create, private_key_attributes, public_key_attributes, wipe, with_id,
};
use super::key::{ObjectSelector, ec_params};

/// How [`import`] imports.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// What the key may do (default [`KeyUsage::Sign`]); only RSA keys decrypt.
    pub usage: KeyUsage,
    /// Test hook: skip `C_CreateObject` and import by unwrapping (the way for tokens that refuse plaintext
    /// keys), so that path is tested on SoftHSM.
    #[doc(hidden)]
    pub force_unwrap: bool,
    /// Test hook: make the certificate's `C_CreateObject` fail (a certificate type the token does not
    /// make), to test that nothing is left behind.
    #[doc(hidden)]
    pub fail_certificate: bool,
}

impl ImportOptions {
    /// Import options for a key of `usage`.
    #[must_use]
    pub fn new(usage: KeyUsage) -> Self {
        Self {
            usage,
            ..Self::default()
        }
    }
}

/// Imports `key` (and its `certificate`, DER, if given) into the token named by `uri` and opens the key.
///
/// `uri` must carry `object=` (the label) and may carry `id=`; see the module docs for the objects made.
///
/// # Errors
/// [`KeyError::KeyExists`] when the label or id is taken; [`KeyError::InvalidKeyMaterial`] when the
/// certificate's public key is not the key's; [`KeyError::WrongKeyType`] for an EC key that should decrypt;
/// [`KeyError::NotSupported`] when the token accepts neither a plaintext nor a wrapped private key; module,
/// token, PIN and PKCS#11 errors. Nothing is left in the token on error.
pub fn import(
    uri: &Pkcs11Uri,
    key: &ImportKey,
    certificate: Option<&[u8]>,
    options: &ImportOptions,
    open: &OpenOptions,
) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let spec = key.spec();
    options.usage.check(spec)?;
    let certificate = match certificate {
        Some(der_bytes) => {
            let parsed = Certificate::from_der(der_bytes)?;
            if parsed.public_key != *key.public_key() {
                return Err(KeyError::invalid_key(
                    "the certificate's public key is not the private key's (the file pairs the key with another certificate)",
                ));
            }
            Some((parsed, der_bytes))
        }
        None => None,
    };
    let uri = with_id(uri)?;
    let operation = format!("import {}", key.public_key().describe());
    create(
        &uri,
        open,
        &operation,
        options.usage,
        |session, selector| {
            let mut created = Vec::new();
            let result = import_objects(
                session,
                selector,
                key,
                certificate.as_ref(),
                options,
                &mut created,
            );
            if result.is_err() {
                for handle in created.into_iter().rev() {
                    let _ = session.destroy_object(handle);
                }
            }
            result
        },
    )
}

/// Creates the objects, recording each handle in `created` (for the caller to destroy on failure).
fn import_objects(
    session: &Session,
    selector: &ObjectSelector,
    key: &ImportKey,
    certificate: Option<&(Certificate, &[u8])>,
    options: &ImportOptions,
    created: &mut Vec<ObjectHandle>,
) -> Result<bool, Failure> {
    let mut names = Vec::new();
    if let Some(label) = &selector.label {
        names.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &selector.id {
        names.push(Attribute::Id(id.clone()));
    }
    let usage = options.usage;
    let public_key = key.public_key();
    let (key_type, curve) = match public_key {
        PublicKey::Rsa { .. } => (KeyType::RSA, None),
        PublicKey::Ec { curve, .. } => (KeyType::EC, Some(*curve)),
    };
    // The private key's attributes without its value: for C_UnwrapKey, and the start of C_CreateObject's.
    let mut common = private_key_attributes();
    common.extend([
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Sign(usage.signs()),
        Attribute::Decrypt(usage.decrypts()),
        Attribute::Derive(false),
    ]);
    common.extend(names.iter().cloned());
    let restriction = Attribute::AllowedMechanisms(allowed_mechanisms(key.spec(), usage));

    let (private, restricted) = if options.force_unwrap {
        unwrap_private(session, key, &common, &restriction)?
    } else {
        let mut template = common.clone();
        template.extend(private_values(key)?);
        match create_restricted(session, &mut template, &restriction) {
            Ok(made) => made,
            Err(CkError::Pkcs11(
                rv @ (RvError::AttributeValueInvalid | RvError::TemplateInconsistent),
                _,
            )) => {
                tracing::info!(
                    target: super::AUDIT_TARGET,
                    ckr = %rv,
                    "the token refuses a plaintext private key; importing by AES key wrap instead"
                );
                unwrap_private(session, key, &common, &restriction)?
            }
            Err(e) => return Err(e.into()),
        }
    };
    created.push(private);

    let mut public = public_key_attributes();
    public.extend([
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(key_type),
        Attribute::Verify(usage.signs()),
        Attribute::Encrypt(usage.decrypts()),
    ]);
    match (public_key, curve) {
        (PublicKey::Rsa { n, e }, _) => {
            public.extend([
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
            ]);
        }
        (PublicKey::Ec { .. }, Some(curve)) => {
            let point = public_key.ec_point().unwrap_or_default();
            public.extend([
                Attribute::EcParams(ec_params(curve)),
                Attribute::EcPoint(der::tlv(der::TAG_OCTET_STRING, &point)),
            ]);
        }
        _ => {}
    }
    public.extend(names.iter().cloned());
    created.push(session.create_object(&public)?);

    if let Some((parsed, der_bytes)) = certificate {
        let mut template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Subject(parsed.subject_der()),
            Attribute::Issuer(parsed.issuer_der()),
            Attribute::SerialNumber(parsed.serial_der()),
            Attribute::Value(der_bytes.to_vec()),
        ];
        template.extend(names.iter().cloned());
        if options.fail_certificate {
            // A certificate type the token does not make (SoftHSM checks it before creating anything).
            template[1] = Attribute::CertificateType(CertificateType::X_509_ATTR);
        }
        created.push(session.create_object(&template)?);
    }
    Ok(restricted)
}

/// `C_CreateObject` with `CKA_ALLOWED_MECHANISMS`, again without it when the token does not know it; the
/// template's secret values are wiped either way. Returns the handle and whether the restriction was kept.
fn create_restricted(
    session: &Session,
    template: &mut Vec<Attribute>,
    restriction: &Attribute,
) -> Result<(ObjectHandle, bool), CkError> {
    template.push(restriction.clone());
    let first = session.create_object(template);
    template.pop();
    let result = match first {
        Ok(handle) => Ok((handle, true)),
        Err(CkError::Pkcs11(RvError::AttributeTypeInvalid, _)) => {
            session.create_object(template).map(|h| (h, false))
        }
        Err(e) => Err(e),
    };
    wipe(template);
    result
}

/// The private key's secret attributes (wiped by the caller through [`wipe`]).
fn private_values(key: &ImportKey) -> Result<Vec<Attribute>, Failure> {
    let bad = |_| Failure::Key(KeyError::invalid_key("malformed PKCS#8 private key"));
    let mut outer = Reader::new(key.pkcs8());
    let mut info = Reader::new(outer.read(der::TAG_SEQUENCE).map_err(bad)?);
    info.read(der::TAG_INTEGER).map_err(bad)?;
    info.read(der::TAG_SEQUENCE).map_err(bad)?;
    let inner = info.read(der::TAG_OCTET_STRING).map_err(bad)?;
    let mut inner = Reader::new(inner);
    let mut fields = Reader::new(inner.read(der::TAG_SEQUENCE).map_err(bad)?);
    fields.read(der::TAG_INTEGER).map_err(bad)?; // version
    match key.public_key() {
        PublicKey::Rsa { .. } => {
            let mut values = Vec::with_capacity(8);
            for make in [
                Attribute::Modulus as fn(Vec<u8>) -> Attribute,
                Attribute::PublicExponent,
                Attribute::PrivateExponent,
                Attribute::Prime1,
                Attribute::Prime2,
                Attribute::Exponent1,
                Attribute::Exponent2,
                Attribute::Coefficient,
            ] {
                values.push(make(fields.read_unsigned_integer().map_err(bad)?.to_vec()));
            }
            Ok(values)
        }
        PublicKey::Ec { curve, .. } => {
            let d = fields.read(der::TAG_OCTET_STRING).map_err(bad)?;
            Ok(vec![
                Attribute::EcParams(ec_params(*curve)),
                Attribute::Value(d.to_vec()),
            ])
        }
    }
}

/// Imports the private key by unwrapping (see the module docs). Returns the handle and whether
/// `CKA_ALLOWED_MECHANISMS` was kept.
fn unwrap_private(
    session: &Session,
    key: &ImportKey,
    common: &[Attribute],
    restriction: &Attribute,
) -> Result<(ObjectHandle, bool), Failure> {
    let mut kek = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(kek.as_mut())
        .map_err(|_| KeyError::invalid_key("cannot draw a random wrapping key"))?;
    let mut wrapped = vec![0u8; key.pkcs8().len() + 16];
    let wrapped_len = KeyEncryptionKey::new(&AES_256, kek.as_ref())
        .and_then(|k| {
            k.wrap_with_padding(key.pkcs8(), &mut wrapped)
                .map(|w| w.len())
        })
        .map_err(|_| KeyError::Crypto)?;
    wrapped.truncate(wrapped_len);
    let mut kek_template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Wrap(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Value(kek.to_vec()),
    ];
    let kek_handle = session.create_object(&kek_template);
    if let Some(Attribute::Value(v)) = kek_template.last_mut() {
        zeroize::Zeroize::zeroize(v);
    }
    let kek_handle = kek_handle.map_err(|e| not_importable(&e))?;
    let mechanism = Mechanism::AesKeyWrapPad;
    let mut template = common.to_vec();
    template.push(restriction.clone());
    let result = match session.unwrap_key(&mechanism, kek_handle, &wrapped, &template) {
        Ok(handle) => Ok((handle, true)),
        Err(CkError::Pkcs11(RvError::AttributeTypeInvalid, _)) => session
            .unwrap_key(&mechanism, kek_handle, &wrapped, common)
            .map(|h| (h, false)),
        Err(e) => Err(e),
    };
    let _ = session.destroy_object(kek_handle);
    result.map_err(|e| not_importable(&e))
}

/// The token took neither a plaintext key nor a wrapped one.
fn not_importable(e: &CkError) -> Failure {
    Failure::Key(KeyError::NotSupported {
        operation: "importing a private key".into(),
        backend: BACKEND,
        reason: format!(
            "the token refuses a plaintext private key, and importing it wrapped (CKM_AES_KEY_WRAP_PAD into \
             C_UnwrapKey) failed too ({e}); generate the key in the token instead (`keybound keys generate`)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded as _};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `openssl enc -id-aesN-wrap-pad` (RFC 5649 with the default IV A65959A6).
    fn openssl_wrap_pad(kek: &[u8], key: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args([
                "enc",
                &format!("-id-aes{}-wrap-pad", kek.len() * 8),
                "-K",
                &hex(kek),
                "-iv",
                "A65959A6",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child.stdin.take().unwrap().write_all(key).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// The wrap path's RFC 5649 implementation (aws-lc-rs, AES-256 only) against RFC 5649 section 6: the
    /// published vectors use a 192-bit KEK, which aws-lc-rs does not offer, so they pin openssl's
    /// implementation first, and openssl then checks aws-lc-rs's AES-256 output byte for byte.
    #[test]
    fn aes_key_wrap_with_padding_matches_rfc_5649() {
        let kek192 = unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        for (key, wrapped) in [
            (
                "c37b7e6492584340bed12207808941155068f738",
                "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
            ),
            ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
        ] {
            assert_eq!(hex(&openssl_wrap_pad(&kek192, &unhex(key))), wrapped);
        }
        let kek256: Vec<u8> = (0u8..32).collect();
        for len in [7usize, 20, 121, 138, 1217] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut out = vec![0u8; len + 16];
            let ours = KeyEncryptionKey::new(&AES_256, &kek256)
                .unwrap()
                .wrap_with_padding(&key, &mut out)
                .unwrap()
                .to_vec();
            assert_eq!(ours, openssl_wrap_pad(&kek256, &key), "{len}-byte key");
        }
    }
}

//! A private key inside a token, behind [`KeyBackend`]: lookup by label and/or id, the public key read from
//! the token, and signing and decryption with the token's own mechanisms.
//!
//! | scheme | mechanism |
//! |---|---|
//! | RS256/384/512 | `CKM_SHA256_RSA_PKCS`, `CKM_SHA384_RSA_PKCS`, `CKM_SHA512_RSA_PKCS` |
//! | PS256/384/512 | `CKM_SHA256_RSA_PKCS_PSS` … with MGF1 of the same hash, salt length = hash length |
//! | ES256/384 | hash locally (aws-lc-rs), `CKM_ECDSA` on the digest; raw `r \|\| s`, fixed width |
//! | RSA-OAEP / RSA-OAEP-256 | `CKM_RSA_PKCS_OAEP` with SHA-1/MGF1-SHA-1 or SHA-256/MGF1-SHA-256 |
//!
//! A token that refuses OAEP with SHA-256 (SoftHSM 2.6.1 answers `CKR_ARGUMENTS_BAD`) gets
//! [`KeyError::NotSupported`] "not supported by this token"; OAEP is never rebuilt on raw RSA.
//!
//! Only public attributes are ever read: `CKA_MODULUS`/`CKA_PUBLIC_EXPONENT` (of the private key when the
//! token shows them there, else of the public key object with the same id or label) and
//! `CKA_EC_PARAMS`/`CKA_EC_POINT` (the point arrives DER-wrapped as an OCTET STRING and is unwrapped).
//!
//! The private key's `CKA_SIGN` and `CKA_DECRYPT` (public attributes) are read when the key is opened: a
//! key the token marks for decryption only is not asked to sign, nor one marked for signing only to decrypt;
//! either fails at once with [`KeyError::UsageNotPermitted`], as does a token's own
//! `CKR_KEY_FUNCTION_NOT_PERMITTED`.
//!
//! Every sign and decrypt emits one audit event (target [`AUDIT_TARGET`](super::AUDIT_TARGET), fields as
//! for every backend: see module `audit`) with the key, mechanism, outcome, latency in microseconds and, on
//! failure, the `CKR_…` code; never the PIN or data.
//!
//! RSA keys under [`MIN_RSA_BITS`](crate::MIN_RSA_BITS) are refused before the token is asked to sign or
//! decrypt ([`crate::check_rsa_size`]). `CKA_EXTRACTABLE` and `CKA_SENSITIVE` are read when the key is
//! opened: a key whose value can leave the token gets a warning, or is refused under
//! [`OpenOptions::require_non_extractable`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::der::{self, Reader};
use crate::error::KeyError;
use crate::{
    DecryptionScheme, EcCurve, KeyBackend, OpenOptions, Pkcs11Uri, PublicKey, SignatureScheme,
};

use super::errors::{Failed, Failure, recovery};
use super::token::Token;
use super::{BACKEND, module, pin};
use crate::audit;

/// Which object a key reference selects inside its token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ObjectSelector {
    pub(crate) label: Option<String>,
    pub(crate) id: Option<Vec<u8>>,
}

impl ObjectSelector {
    pub(crate) fn from_uri(uri: &Pkcs11Uri) -> Self {
        Self {
            label: uri.object.clone(),
            id: uri.id.clone(),
        }
    }

    /// `label 'signing', id 01` (what was searched for).
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.label {
            parts.push(format!("label '{l}'"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id {}", hex(id)));
        }
        parts.join(", ")
    }

    /// A search template for objects of `class` with this label and/or id.
    pub(crate) fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(l) = &self.label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }
}

impl fmt::Debug for ObjectSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key in a PKCS#11 token. Cheap to share; the blocking work happens in [`KeyInner`].
pub(crate) struct Pkcs11Key {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    token: Arc<Token>,
    pin: Option<SecretString>,
    /// The key reference without any `pin-value`.
    reference: String,
    selector: ObjectSelector,
    /// `selector.describe()`, for the audit event of every operation.
    described: String,
    public: PublicKey,
    /// What the token lets the key do (`None`: the token does not say; then it decides on each call).
    usage: Usage,
    /// Why the key's value can leave the token, when it can (see [`Protection::weakness`]).
    weakness: Option<String>,
    wait: Duration,
    /// The private key's object handle and the session generation it was found in.
    handle: Mutex<Option<(u64, ObjectHandle)>>,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("reference", &self.inner.reference)
            .field("token", &self.inner.token.description())
            .field("key", &self.inner.public.describe())
            .finish_non_exhaustive()
    }
}

/// The private key's `CKA_SIGN` and `CKA_DECRYPT`, when the token shows them.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    sign: Option<bool>,
    decrypt: Option<bool>,
}

/// The private key's `CKA_EXTRACTABLE` and `CKA_SENSITIVE`, when the token shows them.
#[derive(Debug, Clone, Copy, Default)]
struct Protection {
    extractable: Option<bool>,
    sensitive: Option<bool>,
}

impl Protection {
    /// `extractable (CKA_EXTRACTABLE true)` and/or `not sensitive (CKA_SENSITIVE false)`, or `None` for a
    /// key whose value stays in the token (or a token that does not say).
    fn weakness(self) -> Option<String> {
        let mut found = Vec::new();
        if self.extractable == Some(true) {
            found.push("extractable (CKA_EXTRACTABLE true)");
        }
        if self.sensitive == Some(false) {
            found.push("not sensitive (CKA_SENSITIVE false)");
        }
        (!found.is_empty()).then(|| found.join(" and "))
    }
}

fn read_protection(session: &Session, object: ObjectHandle) -> Result<Protection, Failure> {
    let mut protection = Protection::default();
    for attribute in session.get_attributes(
        object,
        &[AttributeType::Extractable, AttributeType::Sensitive],
    )? {
        match attribute {
            Attribute::Extractable(v) => protection.extractable = Some(v),
            Attribute::Sensitive(v) => protection.sensitive = Some(v),
            _ => {}
        }
    }
    Ok(protection)
}

fn read_usage(session: &Session, object: ObjectHandle) -> Result<Usage, Failure> {
    let mut usage = Usage::default();
    // Attributes the token does not show are left out by get_attributes.
    for attribute in
        session.get_attributes(object, &[AttributeType::Sign, AttributeType::Decrypt])?
    {
        match attribute {
            Attribute::Sign(v) => usage.sign = Some(v),
            Attribute::Decrypt(v) => usage.decrypt = Some(v),
            _ => {}
        }
    }
    Ok(usage)
}

/// Everything needed to reach a token: its shared state, the PIN, and how long to wait for a session.
pub(crate) struct Reached {
    pub(crate) token: Arc<Token>,
    pub(crate) pin: Option<SecretString>,
    pub(crate) wait: Duration,
}

/// Resolves module, PIN and token of a key reference.
///
/// # Errors
/// Module, PIN and token lookup errors.
pub(crate) fn reach(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<Reached, KeyError> {
    let module = module::module_path(uri, options)?;
    let pin = pin::resolve(uri, options)?;
    let (module, ctx) = module::context(&module)?;
    let token = Token::get(&ctx, &module, uri, options)?;
    Ok(Reached {
        token,
        pin,
        wait: options
            .pkcs11_session_wait
            .unwrap_or(OpenOptions::DEFAULT_PKCS11_SESSION_WAIT),
    })
}

impl Pkcs11Key {
    /// Opens the private key named by `uri`.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] / [`KeyError::Ambiguous`] naming the token and label/id searched; login, PIN
    /// and module errors.
    pub(crate) fn open(uri: &Pkcs11Uri, options: &OpenOptions) -> Result<Self, KeyError> {
        if uri
            .object_type
            .is_some_and(|t| t != crate::ObjectType::Private)
        {
            return Err(KeyError::invalid_ref(
                "`type=` must be `private` (or left out): keybound opens private keys",
            ));
        }
        let Reached { token, pin, wait } = reach(uri, options)?;
        let selector = ObjectSelector::from_uri(uri);
        let found = token.run(pin.as_ref(), wait, false, |session, generation| {
            let handle = find_private_key(session, &selector, &token)?;
            let public = read_public_key(session, handle, &selector, &token)?;
            let usage = read_usage(session, handle)?;
            let protection = read_protection(session, handle)?;
            Ok((generation, handle, public, usage, protection))
        });
        let (generation, handle, public, usage, protection) = found
            .map(|ran| ran.value)
            .map_err(|failed| failed.into_key_error(token.description()))?;
        let weakness = protection.weakness();
        if let Some(weakness) = &weakness {
            let key = format!(
                "the private key with {} in {}",
                selector.describe(),
                token.description()
            );
            if options.require_non_extractable {
                return Err(KeyError::KeyExtractable {
                    key,
                    weakness: weakness.clone(),
                });
            }
            tracing::warn!(key = %key, weakness = %weakness, "the private key's value can leave the token");
        }
        Ok(Self {
            inner: Arc::new(KeyInner {
                token,
                pin,
                reference: uri.to_string(),
                described: selector.describe(),
                selector,
                public,
                usage,
                weakness,
                wait,
                handle: Mutex::new(Some((generation, handle))),
            }),
        })
    }
}

/// Finds exactly one private key object matching `selector`.
pub(crate) fn find_private_key(
    session: &Session,
    selector: &ObjectSelector,
    token: &Token,
) -> Result<ObjectHandle, Failure> {
    let found = session.find_objects(&selector.template(ObjectClass::PRIVATE_KEY))?;
    let searched = || format!("{} in {}", selector.describe(), token.description());
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::Key(KeyError::NotFound {
            backend: BACKEND,
            what: "private key",
            searched: searched(),
        })),
        many => Err(Failure::Key(KeyError::Ambiguous {
            backend: BACKEND,
            what: "private key",
            searched: searched(),
            count: many.len(),
        })),
    }
}

/// The public attributes keybound reads; never `CKA_VALUE`, `CKA_PRIVATE_EXPONENT` or the primes.
const PUBLIC_ATTRIBUTES: [AttributeType; 7] = [
    AttributeType::KeyType,
    AttributeType::Id,
    AttributeType::Label,
    AttributeType::Modulus,
    AttributeType::PublicExponent,
    AttributeType::EcParams,
    AttributeType::EcPoint,
];

#[derive(Default)]
struct PublicParts {
    key_type: Option<KeyType>,
    id: Option<Vec<u8>>,
    label: Option<Vec<u8>>,
    n: Option<Vec<u8>>,
    e: Option<Vec<u8>>,
    ec_params: Option<Vec<u8>>,
    ec_point: Option<Vec<u8>>,
}

fn public_parts(session: &Session, object: ObjectHandle) -> Result<PublicParts, Failure> {
    let mut parts = PublicParts::default();
    let nonempty = |v: Vec<u8>| (!v.is_empty()).then_some(v);
    // Attributes the object does not have (or would not show) are left out by get_attributes.
    for attribute in session.get_attributes(object, &PUBLIC_ATTRIBUTES)? {
        match attribute {
            Attribute::KeyType(t) => parts.key_type = Some(t),
            Attribute::Id(v) => parts.id = nonempty(v),
            Attribute::Label(v) => parts.label = nonempty(v),
            Attribute::Modulus(v) => parts.n = nonempty(v),
            Attribute::PublicExponent(v) => parts.e = nonempty(v),
            Attribute::EcParams(v) => parts.ec_params = nonempty(v),
            Attribute::EcPoint(v) => parts.ec_point = nonempty(v),
            _ => {}
        }
    }
    Ok(parts)
}

/// Reads the public key of the private key `private`: from its own public attributes, or from the public
/// key object with the same id (or label) when the token keeps them there.
pub(crate) fn read_public_key(
    session: &Session,
    private: ObjectHandle,
    selector: &ObjectSelector,
    token: &Token,
) -> Result<PublicKey, Failure> {
    let own = public_parts(session, private)?;
    let complete = match own.key_type {
        Some(KeyType::RSA) => own.n.is_some() && own.e.is_some(),
        Some(KeyType::EC) => own.ec_params.is_some() && own.ec_point.is_some(),
        _ => true,
    };
    let parts = if complete {
        own
    } else {
        // Look for the public half under the private key's own id (or label), which may be more precise
        // than the reference (a reference by label alone).
        let twin = match &own.id {
            Some(id) => ObjectSelector {
                label: None,
                id: Some(id.clone()),
            },
            None => ObjectSelector {
                label: own
                    .label
                    .as_deref()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .or_else(|| selector.label.clone()),
                id: selector.id.clone(),
            },
        };
        let found = session.find_objects(&twin.template(ObjectClass::PUBLIC_KEY))?;
        let object = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Failure::Key(KeyError::NotFound {
                    backend: BACKEND,
                    what: "public key object (the private key does not show its public part)",
                    searched: format!("{} in {}", twin.describe(), token.description()),
                }));
            }
            many => {
                return Err(Failure::Key(KeyError::Ambiguous {
                    backend: BACKEND,
                    what: "public key object",
                    searched: format!("{} in {}", twin.describe(), token.description()),
                    count: many.len(),
                }));
            }
        };
        let public = public_parts(session, object)?;
        PublicParts {
            key_type: own.key_type.or(public.key_type),
            n: own.n.or(public.n),
            e: own.e.or(public.e),
            ec_params: own.ec_params.or(public.ec_params),
            ec_point: own.ec_point.or(public.ec_point),
            ..PublicParts::default()
        }
    };
    let unusable = |what: &str| {
        Failure::Key(KeyError::invalid_key(format!(
            "key in {}: {what}",
            token.description()
        )))
    };
    match parts.key_type {
        Some(KeyType::RSA) => match (parts.n, parts.e) {
            (Some(n), Some(e)) => Ok(PublicKey::rsa(&n, &e)?),
            _ => Err(unusable(
                "the token shows no RSA modulus or public exponent",
            )),
        },
        Some(KeyType::EC) => match (parts.ec_params, parts.ec_point) {
            (Some(params), Some(point)) => {
                let curve = curve_from_ec_params(&params).ok_or_else(|| {
                    unusable("unsupported EC curve (P-256 and P-384 are supported)")
                })?;
                let point = unwrap_ec_point(&point, curve)
                    .ok_or_else(|| unusable("malformed CKA_EC_POINT"))?;
                Ok(PublicKey::ec_from_point(curve, point)?)
            }
            _ => Err(unusable("the token shows no EC parameters or point")),
        },
        _ => Err(unusable(
            "neither RSA nor EC; keybound supports RSA and EC P-256/P-384",
        )),
    }
}

/// The named curve of DER `CKA_EC_PARAMS` (an OID).
pub(crate) fn curve_from_ec_params(params: &[u8]) -> Option<EcCurve> {
    let mut r = Reader::new(params);
    let oid = r.read(der::TAG_OID).ok()?;
    r.finish().ok()?;
    [EcCurve::P256, EcCurve::P384]
        .into_iter()
        .find(|c| c.oid() == oid)
}

/// DER `CKA_EC_PARAMS` of a named curve.
pub(crate) fn ec_params(curve: EcCurve) -> Vec<u8> {
    der::tlv(der::TAG_OID, curve.oid())
}

/// The uncompressed point inside `CKA_EC_POINT`, which PKCS#11 wraps in a DER OCTET STRING (some tokens
/// give the bare point).
pub(crate) fn unwrap_ec_point(value: &[u8], curve: EcCurve) -> Option<&[u8]> {
    let want = 1 + 2 * curve.coordinate_len();
    let mut r = Reader::new(value);
    if let Ok(inner) = r.read(der::TAG_OCTET_STRING) {
        if r.finish().is_ok() && inner.len() == want && inner[0] == 0x04 {
            return Some(inner);
        }
    }
    (value.len() == want && value[0] == 0x04).then_some(value)
}

/// The mechanism for a signature scheme, the digest to compute locally first (for ECDSA), and its name.
fn sign_mechanism(
    scheme: SignatureScheme,
) -> (
    Mechanism<'static>,
    Option<&'static aws_lc_rs::digest::Algorithm>,
    &'static str,
) {
    let pss = |hash_alg, mgf, len: u64| PkcsPssParams {
        hash_alg,
        mgf,
        s_len: Ulong::from(len),
    };
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => (Mechanism::Sha256RsaPkcs, None, "CKM_SHA256_RSA_PKCS"),
        SignatureScheme::RsaPkcs1Sha384 => (Mechanism::Sha384RsaPkcs, None, "CKM_SHA384_RSA_PKCS"),
        SignatureScheme::RsaPkcs1Sha512 => (Mechanism::Sha512RsaPkcs, None, "CKM_SHA512_RSA_PKCS"),
        SignatureScheme::RsaPssSha256 => (
            Mechanism::Sha256RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32)),
            None,
            "CKM_SHA256_RSA_PKCS_PSS",
        ),
        SignatureScheme::RsaPssSha384 => (
            Mechanism::Sha384RsaPkcsPss(pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48)),
            None,
            "CKM_SHA384_RSA_PKCS_PSS",
        ),
        SignatureScheme::RsaPssSha512 => (
            Mechanism::Sha512RsaPkcsPss(pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64)),
            None,
            "CKM_SHA512_RSA_PKCS_PSS",
        ),
        SignatureScheme::EcdsaP256Sha256 => (
            Mechanism::Ecdsa,
            Some(&aws_lc_rs::digest::SHA256),
            "CKM_ECDSA",
        ),
        SignatureScheme::EcdsaP384Sha384 => (
            Mechanism::Ecdsa,
            Some(&aws_lc_rs::digest::SHA384),
            "CKM_ECDSA",
        ),
    }
}

/// Left-pads `v` with zeros to `len` bytes.
fn left_pad(v: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(v.len())];
    out.extend_from_slice(v);
    out
}

impl KeyInner {
    /// Runs `op` with the private key's handle, looking the key up again in a new session generation.
    fn with_key<T>(
        &self,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, Failure>,
    ) -> Result<super::token::Ran<T>, Failed> {
        self.token.run(self.pin.as_ref(), self.wait, false, |session, generation| {
            let cached = *self.handle.lock().unwrap_or_else(PoisonError::into_inner);
            let handle = match cached {
                Some((g, handle)) if g == generation => handle,
                _ => {
                    let handle = find_private_key(session, &self.selector, &self.token)?;
                    let public = read_public_key(session, handle, &self.selector, &self.token)?;
                    if public != self.public {
                        return Err(Failure::Key(KeyError::Backend {
                            backend: BACKEND,
                            message: format!(
                                "the key with {} in {} was replaced by a different key; open it again",
                                self.selector.describe(),
                                self.token.description()
                            ),
                            source: None,
                        }));
                    }
                    *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, handle));
                    handle
                }
            };
            op(session, handle)
        })
    }

    /// [`KeyError::UsageNotPermitted`] for `operation`, because of `attribute` (`CKA_SIGN`/`CKA_DECRYPT`).
    fn not_permitted(&self, operation: String, attribute: &str) -> KeyError {
        let (marked, generated, wanted) = if attribute == "CKA_SIGN" {
            ("decryption", "`--usage decrypt`", "sign")
        } else {
            ("signing", "`--usage sign`, the default", "decrypt")
        };
        KeyError::UsageNotPermitted {
            operation,
            key: format!("{} in {}", self.described, self.token.description()),
            reason: format!(
                "the token marks the key for {marked} only ({attribute} is false, as for a key generated with \
                 {generated}); use a key generated with `keybound keys generate --usage {wanted}`"
            ),
        }
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let started = Instant::now();
        let (mechanism, prehash, mechanism_name) = sign_mechanism(scheme);
        // Refused before the token is asked (a scheme that does not fit, an RSA key under 2048 bits): still
        // one audit event, as in every backend.
        if let Err(e) = scheme.check_key(&self.public) {
            let refused: Result<(Vec<u8>, bool), _> = Err((e, None, false));
            self.audit("sign", scheme.name(), mechanism_name, started, &refused);
            return refused.map(|(sig, _)| sig).map_err(|(e, _, _)| e);
        }
        let operation = || format!("signing with {scheme}");
        let result = if self.usage.sign == Some(false) {
            Err((self.not_permitted(operation(), "CKA_SIGN"), None, false))
        } else {
            let digest = prehash.map(|alg| aws_lc_rs::digest::digest(alg, message));
            let data = digest.as_ref().map_or(message, |d| d.as_ref());
            match self.with_key(|session, key| Ok(session.sign(&mechanism, key, data)?)) {
                Ok(ran) => self
                    .shape_signature(ran.value)
                    .map(|sig| (sig, ran.retried))
                    .map_err(|e| (e, None, ran.retried)),
                Err(failed) => {
                    let (ckr, retried) = (failed.ckr(), failed.retried);
                    let error = if failed.failure.rv() == Some(RvError::KeyFunctionNotPermitted) {
                        self.not_permitted(operation(), "CKA_SIGN")
                    } else {
                        failed.into_key_error(self.token.description())
                    };
                    Err((error, ckr, retried))
                }
            }
        };
        self.audit("sign", scheme.name(), mechanism_name, started, &result);
        result.map(|(sig, _)| sig).map_err(|(e, _, _)| e)
    }

    /// Brings a token's signature into the JOSE form: RSA as wide as the modulus, ECDSA as fixed-width
    /// `r || s`.
    fn shape_signature(&self, sig: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        match &self.public {
            PublicKey::Rsa { n, .. } if sig.len() <= n.len() => Ok(left_pad(&sig, n.len())),
            PublicKey::Ec { curve, .. }
                if sig.len() % 2 == 0 && sig.len() <= 2 * curve.coordinate_len() =>
            {
                let (r, s) = sig.split_at(sig.len() / 2);
                let width = curve.coordinate_len();
                let mut out = left_pad(r, width);
                out.extend_from_slice(&left_pad(s, width));
                Ok(out)
            }
            _ => Err(KeyError::Backend {
                backend: BACKEND,
                message: format!(
                    "{} returned a signature of unexpected length {}",
                    self.token.description(),
                    sig.len()
                ),
                source: None,
            }),
        }
    }

    fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let started = Instant::now();
        let refused = if matches!(self.public, PublicKey::Rsa { .. }) {
            crate::check_rsa_size(&self.public, crate::KeyOperation::Decrypt)
        } else {
            Err(KeyError::WrongKeyType {
                operation: scheme.to_string(),
                key: self.public.describe(),
            })
        };
        if let Err(e) = refused {
            let refused: Result<(Zeroizing<Vec<u8>>, bool), _> = Err((e, None, false));
            self.audit(
                "decrypt",
                scheme.name(),
                "CKM_RSA_PKCS_OAEP",
                started,
                &refused,
            );
            return refused.map(|(plain, _)| plain).map_err(|(e, _, _)| e);
        }
        let params = match scheme {
            DecryptionScheme::RsaOaepSha1 => PkcsOaepParams::new(
                MechanismType::SHA1,
                PkcsMgfType::MGF1_SHA1,
                PkcsOaepSource::empty(),
            ),
            DecryptionScheme::RsaOaepSha256 => PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            ),
        };
        let mechanism = Mechanism::RsaPkcsOaep(params);
        let operation = || format!("decryption with {scheme}");
        let result = if self.usage.decrypt == Some(false) {
            Err(Failed {
                failure: Failure::Key(self.not_permitted(operation(), "CKA_DECRYPT")),
                retried: false,
                first_ckr: None,
            })
        } else {
            self.with_key(|session, key| {
                Ok(Zeroizing::new(
                    session.decrypt(&mechanism, key, ciphertext)?,
                ))
            })
        };
        let result = match result {
            Ok(ran) => Ok((ran.value, ran.retried)),
            Err(failed) => {
                let (ckr, retried) = (failed.ckr(), failed.retried);
                let error = match &failed.failure {
                    // Not about the ciphertext: the key may not decrypt at all.
                    Failure::Ck(CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _)) => {
                        Some(self.not_permitted(operation(), "CKA_DECRYPT"))
                    }
                    Failure::Ck(CkError::Pkcs11(
                        RvError::MechanismInvalid | RvError::MechanismParamInvalid,
                        _,
                    )) => None,
                    // SoftHSM 2.6.1 answers OAEP with SHA-256 with CKR_ARGUMENTS_BAD.
                    Failure::Ck(CkError::Pkcs11(RvError::ArgumentsBad, _))
                        if scheme == DecryptionScheme::RsaOaepSha256 =>
                    {
                        None
                    }
                    // Whatever C_Decrypt itself answers (bad padding is CKR_ENCRYPTED_DATA_INVALID, or
                    // CKR_GENERAL_ERROR on SoftHSM), the caller learns only that decryption failed:
                    // distinct answers would make a padding oracle. The audit event keeps the code.
                    Failure::Ck(CkError::Pkcs11(rv, Function::Decrypt))
                        if recovery(*rv).is_none() =>
                    {
                        Some(KeyError::Crypto)
                    }
                    _ => Some(failed.into_key_error(self.token.description())),
                };
                let error = error.unwrap_or_else(|| KeyError::NotSupported {
                    operation: scheme.to_string(),
                    backend: BACKEND,
                    reason: format!(
                        "not supported by this token ({}: CKM_RSA_PKCS_OAEP refused with {})",
                        self.token.description(),
                        ckr.as_deref().unwrap_or("an error")
                    ),
                });
                Err((error, ckr, retried))
            }
        };
        self.audit(
            "decrypt",
            scheme.name(),
            "CKM_RSA_PKCS_OAEP",
            started,
            &result,
        );
        result.map(|(plain, _)| plain).map_err(|(e, _, _)| e)
    }

    /// The audit event of one operation: who, what, how it went; never the PIN or the data.
    fn audit<T>(
        &self,
        operation: &str,
        scheme: &str,
        mechanism: &str,
        started: Instant,
        result: &Result<(T, bool), (KeyError, Option<String>, bool)>,
    ) {
        let op = audit::Operation {
            backend: BACKEND,
            token: Some(self.token.description()),
            key: &self.described,
            operation,
            scheme,
            mechanism: Some(mechanism),
        };
        match result {
            Ok((_, retried)) => audit::operation(op, started, *retried, Ok(())),
            Err((error, ckr, retried)) => {
                audit::operation(op, started, *retried, Err((error, ckr.as_deref())));
            }
        }
    }
}

#[async_trait::async_trait]
impl KeyBackend for Pkcs11Key {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn key_label(&self) -> &str {
        &self.inner.reference
    }

    fn public_key(&self) -> &PublicKey {
        &self.inner.public
    }

    fn warnings(&self) -> Vec<String> {
        self.inner
            .weakness
            .iter()
            .map(|weakness| {
                format!(
                    "the private key with {} in {} is {weakness}: its value can leave the token. Generate a \
                     new key in the token (`keybound keys generate` makes it sensitive and never extractable), \
                     or refuse such keys with `require_non_extractable = true` in the configuration",
                    self.inner.described,
                    self.inner.token.description()
                )
            })
            .collect()
    }

    fn usage(&self) -> Option<crate::KeyUsage> {
        match (self.inner.usage.sign, self.inner.usage.decrypt) {
            (Some(true), Some(true)) => Some(crate::KeyUsage::SignAndDecrypt),
            (Some(true), Some(false)) => Some(crate::KeyUsage::Sign),
            (Some(false), Some(true)) => Some(crate::KeyUsage::Decrypt),
            _ => None,
        }
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.inner.sign(scheme, message)
    }

    fn decrypt(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.inner.decrypt(scheme, ciphertext)
    }

    async fn sign_async(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.inner.sign(scheme, message);
        };
        let inner = Arc::clone(&self.inner);
        let message = Zeroizing::new(message.to_vec());
        runtime
            .spawn_blocking(move || inner.sign(scheme, &message))
            .await
            .map_err(blocking_task_failed)?
    }

    async fn decrypt_async(
        &self,
        scheme: DecryptionScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.inner.decrypt(scheme, ciphertext);
        };
        let inner = Arc::clone(&self.inner);
        let ciphertext = ciphertext.to_vec();
        runtime
            .spawn_blocking(move || inner.decrypt(scheme, &ciphertext))
            .await
            .map_err(blocking_task_failed)?
    }
}

fn blocking_task_failed(e: tokio::task::JoinError) -> KeyError {
    KeyError::Backend {
        backend: BACKEND,
        message: "the blocking PKCS#11 task failed".into(),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_is_unwrapped_from_its_octet_string() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[0x41; 64]);
        let wrapped = der::tlv(der::TAG_OCTET_STRING, &point);
        assert_eq!(unwrap_ec_point(&wrapped, EcCurve::P256), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point, EcCurve::P256), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point[..64], EcCurve::P256), None);
        let mut p384 = vec![0x04, 0x5f];
        p384.extend_from_slice(&[7; 95]);
        assert_eq!(unwrap_ec_point(&p384, EcCurve::P384), Some(&p384[..]));
    }

    #[test]
    fn ec_params_round_trip() {
        for curve in [EcCurve::P256, EcCurve::P384] {
            assert_eq!(curve_from_ec_params(&ec_params(curve)), Some(curve));
        }
        assert_eq!(
            ec_params(EcCurve::P256),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        assert_eq!(curve_from_ec_params(&[0x13, 0x02, b'h', b'i']), None);
    }

    #[test]
    fn pss_uses_same_hash_mgf_and_hash_length_salt() {
        for (scheme, len) in [
            (SignatureScheme::RsaPssSha256, 32u64),
            (SignatureScheme::RsaPssSha384, 48),
            (SignatureScheme::RsaPssSha512, 64),
        ] {
            let (mech, prehash, _) = sign_mechanism(scheme);
            assert!(prehash.is_none());
            let params = match mech {
                Mechanism::Sha256RsaPkcsPss(p)
                | Mechanism::Sha384RsaPkcsPss(p)
                | Mechanism::Sha512RsaPkcsPss(p) => p,
                other => panic!("{other:?}"),
            };
            assert_eq!(u64::from(params.s_len), len);
        }
        assert!(sign_mechanism(SignatureScheme::EcdsaP384Sha384).1.is_some());
    }

    #[test]
    fn selector_describes_label_and_id() {
        let s = ObjectSelector {
            label: Some("sig".into()),
            id: Some(vec![1, 0xab]),
        };
        assert_eq!(s.describe(), "label 'sig', id 01ab");
    }
}

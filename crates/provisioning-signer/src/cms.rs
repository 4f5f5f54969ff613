//! Thales classic push provisioning's card-data format: CMS `EnvelopedData` (RFC 5652, the successor of
//! PKCS#7 RFC 2315), and the decryption of the same format sent back by the TSH.
//!
//! **Encrypt** ([`EnvelopeEncryptor`]): the card data JSON (or any bytes) under a fresh random AES-256 key
//! and IV, AES-256-CBC with PKCS#7 padding (RFC 3565); the content key transported to the RSA key of the TSH
//! Issuer Gateway certificate with RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label; RFC 4055 parameters) by
//! default, RSAES-PKCS1-v1_5 only when asked for ([`KeyTransport::RsaPkcs1v15`]); one
//! `KeyTransRecipientInfo` naming the certificate by `issuerAndSerialNumber`; the whole wrapped in a
//! `ContentInfo` (`id-envelopedData`), DER-encoded. [`Encoding`] turns the DER into the text the partner
//! APIs carry (base64 for the SDK, hex for the TSH server APIs).
//!
//! **Decrypt** ([`decrypt`]): parses DER (or the BER with indefinite lengths that streaming encoders such as
//! Bouncy Castle write), refuses clearly what it does not handle (no `KeyTransRecipientInfo`, PKCS#1 v1.5
//! key transport, a content cipher other than AES-CBC), then unwraps the content key through
//! [`KeyBackend::decrypt`] (RSA-OAEP with SHA-1 or SHA-256 as the `RecipientInfo` says; the key may be in an
//! HSM) and decrypts AES-CBC in software.
//!
//! Invariants: the content key and the plaintext live in `Zeroizing` buffers; **every failure after the
//! structure has been accepted — the key unwrap, a content key of the wrong length, the CBC padding, a
//! `RecipientInfo` for another key — is the one [`ProvisioningError::DecryptionFailed`]**, so that the
//! answer says nothing about which step failed (no padding or unwrap oracle; see docs/security.md for what
//! unauthenticated CBC still implies); PKCS#1 v1.5 is never decrypted (a Bleichenbacher oracle); errors and
//! events never carry card data, content keys or plaintext.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, Algorithm, DecryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use key_provider::{Certificate, DecryptionScheme, KeyBackend, KeyError, PublicKey};
use zeroize::Zeroizing;

use crate::auth_code::{Audience, AuthCode, AuthCodeSigner};
use crate::card::CardData;
use crate::error::ProvisioningError;

/// How the content-encryption key is transported to the recipient's RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyTransport {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055): Thales' documented default.
    #[default]
    RsaOaepSha256,
    /// RSAES-PKCS1-v1_5, which some Thales programmes still configure. Only ever used to encrypt to a
    /// partner; keybound never decrypts it.
    RsaPkcs1v15,
}

impl KeyTransport {
    /// `rsa-oaep-sha256` or `rsa-pkcs1`, as the CLI spells it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => "rsa-oaep-sha256",
            Self::RsaPkcs1v15 => "rsa-pkcs1",
        }
    }
}

impl fmt::Display for KeyTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyTransport {
    type Err = ProvisioningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rsa-oaep-sha256" => Ok(Self::RsaOaepSha256),
            "rsa-pkcs1" => Ok(Self::RsaPkcs1v15),
            _ => Err(ProvisioningError::field(
                "key transport",
                "use rsa-oaep-sha256 (default) or rsa-pkcs1",
            )),
        }
    }
}

/// How the DER bytes of an `EnvelopedData` travel as text (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// Standard base64 with padding (the Push Provisioning SDK's form); on input, line breaks and a PEM
    /// armor (`-----BEGIN PKCS7-----`, `CMS`) are accepted.
    #[default]
    Base64,
    /// Hexadecimal, upper case on output (the TSH server APIs' form); either case and whitespace on input.
    Hex,
    /// The raw DER bytes.
    Der,
}

impl Encoding {
    /// `base64`, `hex` or `der`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::Hex => "hex",
            Self::Der => "der",
        }
    }

    /// Encodes DER bytes (text encodings get no line breaks and no trailing newline).
    #[must_use]
    pub fn encode(self, der: &[u8]) -> Vec<u8> {
        match self {
            Self::Base64 => base64::engine::general_purpose::STANDARD
                .encode(der)
                .into_bytes(),
            Self::Hex => {
                const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
                der.iter()
                    .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
                    .collect()
            }
            Self::Der => der.to_vec(),
        }
    }

    /// Decodes input in this encoding to DER bytes.
    ///
    /// # Errors
    /// [`ProvisioningError::CmsRefused`] when the input is not in this encoding.
    pub fn decode(self, input: &[u8]) -> Result<Vec<u8>, ProvisioningError> {
        let text =
            || std::str::from_utf8(input).map_err(|_| refused(format!("not {} text", self.name())));
        match self {
            Self::Der => Ok(input.to_vec()),
            Self::Base64 => {
                let text = text()?;
                if text.trim_start().starts_with("-----BEGIN") {
                    let block =
                        pem::parse(text).map_err(|_| refused("the PEM armor is not valid PEM"))?;
                    if !matches!(block.tag(), "PKCS7" | "CMS") {
                        return Err(refused(format!(
                            "a PEM {:?} block, not PKCS7 or CMS",
                            crate::error::sanitize(block.tag())
                        )));
                    }
                    return Ok(block.into_contents());
                }
                let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|_| refused("not valid base64 (standard alphabet, with padding)"))
            }
            Self::Hex => {
                let digits: Vec<u8> = text()?
                    .bytes()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                if digits.len() % 2 != 0 {
                    return Err(refused("not valid hex: an odd number of digits"));
                }
                digits
                    .chunks(2)
                    .map(|pair| {
                        let nibble = |c: u8| char::from(c).to_digit(16);
                        match (nibble(pair[0]), nibble(pair[1])) {
                            // Two hex digits make one byte.
                            (Some(h), Some(l)) => Ok(u8::try_from(h * 16 + l).unwrap_or(0)),
                            _ => Err(refused(
                                "not valid hex: a character that is not a hex digit",
                            )),
                        }
                    })
                    .collect()
            }
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Encoding {
    type Err = ProvisioningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "base64" => Ok(Self::Base64),
            "hex" => Ok(Self::Hex),
            "der" => Ok(Self::Der),
            _ => Err(ProvisioningError::field(
                "encoding",
                "use base64 (default), hex or der",
            )),
        }
    }
}

fn refused(reason: impl Into<String>) -> ProvisioningError {
    ProvisioningError::CmsRefused {
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Object identifiers (DER contents).

const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_P_SPECIFIED: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09];
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const OID_AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OCTET_STRING_CONSTRUCTED: u8 = 0x24;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0_PRIMITIVE: u8 = 0x80;
const TAG_CONTEXT_0: u8 = 0xa0;
const TAG_CONTEXT_1: u8 = 0xa1;
const TAG_CONTEXT_2: u8 = 0xa2;

// ---------------------------------------------------------------------------------------------------------
// A small DER writer.

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or(0));
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

fn algorithm_identifier(oid: &[u8], parameters: Option<&[u8]>) -> Vec<u8> {
    let oid = tlv(TAG_OID, oid);
    match parameters {
        Some(p) => seq(&[&oid, p]),
        None => seq(&[&oid]),
    }
}

/// RSAES-OAEP-params for SHA-256 / MGF1-SHA-256 / empty label (RFC 4055 §4.1; `pSourceFunc` is the default
/// and so left out). The SHA-256 identifiers carry no parameters, as OpenSSL writes them (RFC 4055 §2.1
/// requires readers to accept both forms).
fn oaep_sha256_parameters() -> Vec<u8> {
    let sha256 = algorithm_identifier(OID_SHA256, None);
    let mgf1 = algorithm_identifier(OID_MGF1, Some(&sha256));
    seq(&[&tlv(TAG_CONTEXT_0, &sha256), &tlv(TAG_CONTEXT_1, &mgf1)])
}

// ---------------------------------------------------------------------------------------------------------
// Encryption.

/// Encrypts card data (or any bytes) as CMS `EnvelopedData` to the RSA key of one certificate — the TSH
/// Issuer Gateway certificate received at onboarding.
#[derive(Debug, Clone)]
pub struct EnvelopeEncryptor {
    key: PublicKey,
    issuer_and_serial: Vec<u8>,
    transport: KeyTransport,
}

impl EnvelopeEncryptor {
    /// An encryptor to `certificate`'s key (RSA, at least 2048 bits; Thales uses 2048 or 4096), with
    /// RSAES-OAEP-SHA256 key transport.
    ///
    /// # Errors
    /// [`ProvisioningError::UnsuitablePublicKey`] for a non-RSA or short key.
    pub fn new(certificate: &Certificate) -> Result<Self, ProvisioningError> {
        let key = certificate.public_key.clone();
        match &key {
            PublicKey::Rsa { .. } if key.bits() >= key_provider::MIN_RSA_BITS => {}
            _ => {
                return Err(ProvisioningError::UnsuitablePublicKey {
                    reason: format!(
                        "CMS card data is encrypted to an RSA key of at least {} bits; this certificate's key \
                         is {}; check the TSH Issuer Gateway certificate you were given",
                        key_provider::MIN_RSA_BITS,
                        key.describe()
                    ),
                });
            }
        }
        let issuer_and_serial = seq(&[
            &certificate.issuer_der(),
            &tlv(TAG_INTEGER, certificate.serial_number()),
        ]);
        Ok(Self {
            key,
            issuer_and_serial,
            transport: KeyTransport::default(),
        })
    }

    /// Chooses the key transport (RSAES-OAEP-SHA256 unless the Thales programme says otherwise).
    #[must_use]
    pub fn with_key_transport(mut self, transport: KeyTransport) -> Self {
        self.transport = transport;
        self
    }

    /// The key transport in use.
    #[must_use]
    pub fn key_transport(&self) -> KeyTransport {
        self.transport
    }

    /// Encrypts `plaintext`; returns the DER `ContentInfo`.
    ///
    /// # Errors
    /// [`ProvisioningError::Key`] with [`KeyError::Crypto`] when the cryptographic library fails (no
    /// plaintext or key in it).
    pub fn encrypt_bytes(&self, plaintext: &[u8]) -> Result<Vec<u8>, ProvisioningError> {
        let crypto = |_| ProvisioningError::Key(KeyError::Crypto);
        let rng = SystemRandom::new();
        let mut cek = Zeroizing::new([0u8; 32]);
        rng.fill(cek.as_mut()).map_err(crypto)?;

        // Content: AES-256-CBC, PKCS#7 padding, a fresh random IV (aws-lc-rs draws it).
        let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(
            UnboundCipherKey::new(&AES_256, cek.as_ref()).map_err(crypto)?,
        )
        .map_err(crypto)?;
        let mut content = Zeroizing::new(plaintext.to_vec());
        let context = cipher.encrypt(&mut *content).map_err(crypto)?;
        let iv: &[u8] = (&context).try_into().map_err(crypto)?;
        let encrypted_content = content.to_vec();

        // Key transport to the certificate's key.
        let public = PublicEncryptingKey::from_der(&self.key.to_spki_der()).map_err(|_| {
            ProvisioningError::UnsuitablePublicKey {
                reason: "the RSA key was rejected for encryption".into(),
            }
        })?;
        let (algorithm, encrypted_key) = match self.transport {
            KeyTransport::RsaOaepSha256 => {
                let public = OaepPublicEncryptingKey::new(public).map_err(crypto)?;
                let mut out = vec![0u8; public.ciphertext_size()];
                let n = public
                    .encrypt(&OAEP_SHA256_MGF1SHA256, cek.as_ref(), &mut out, None)
                    .map_err(crypto)?
                    .len();
                out.truncate(n);
                (
                    algorithm_identifier(OID_RSAES_OAEP, Some(&oaep_sha256_parameters())),
                    out,
                )
            }
            KeyTransport::RsaPkcs1v15 => {
                let public = Pkcs1PublicEncryptingKey::new(public).map_err(crypto)?;
                let mut out = vec![0u8; public.ciphertext_size()];
                let n = public
                    .encrypt(cek.as_ref(), &mut out)
                    .map_err(crypto)?
                    .len();
                out.truncate(n);
                (
                    algorithm_identifier(OID_RSA_ENCRYPTION, Some(&tlv(TAG_NULL, &[]))),
                    out,
                )
            }
        };

        let version_0 = tlv(TAG_INTEGER, &[0]);
        let recipient = seq(&[
            &version_0,
            &self.issuer_and_serial,
            &algorithm,
            &tlv(TAG_OCTET_STRING, &encrypted_key),
        ]);
        let encrypted_content_info = seq(&[
            &tlv(TAG_OID, OID_DATA),
            &algorithm_identifier(OID_AES256_CBC, Some(&tlv(TAG_OCTET_STRING, iv))),
            &tlv(TAG_CONTEXT_0_PRIMITIVE, &encrypted_content),
        ]);
        // Version 0: no originatorInfo, no unprotectedAttrs, one version-0 KeyTransRecipientInfo
        // (RFC 5652 §6.1).
        let enveloped = seq(&[
            &version_0,
            &tlv(TAG_SET, &recipient),
            &encrypted_content_info,
        ]);
        Ok(seq(&[
            &tlv(TAG_OID, OID_ENVELOPED_DATA),
            &tlv(TAG_CONTEXT_0, &enveloped),
        ]))
    }

    /// Encrypts `card`'s JSON (validated first); returns the DER `ContentInfo`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use provisioning_signer::cms::{EnvelopeEncryptor, Encoding};
    /// use provisioning_signer::{CardData, SecretString};
    /// # let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/thales_test.cert.pem"))?;
    /// // The TSH Issuer Gateway certificate received at onboarding.
    /// let file = key_provider::PublicKeyFile::parse(&pem)?;
    /// let encryptor = EnvelopeEncryptor::new(file.certificate.as_ref().expect("a certificate"))?;
    /// let card = CardData::new(
    ///     "card-ref-000123",
    ///     SecretString::from("5204731600014792"),
    ///     SecretString::from("1229"),
    ///     SecretString::from("JANE DOE"),
    /// );
    /// let der = encryptor.encrypt(&card)?;
    /// let for_the_sdk = Encoding::Base64.encode(&der); // hex for the TSH server APIs
    /// assert_eq!(Encoding::Base64.decode(&for_the_sdk)?, der);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProvisioningError::InvalidField`] when the card data breaks a rule (see [`CardData::validate`]),
    /// else as [`EnvelopeEncryptor::encrypt_bytes`].
    pub fn encrypt(&self, card: &CardData) -> Result<Vec<u8>, ProvisioningError> {
        let started = std::time::Instant::now();
        let plaintext = card.to_json()?;
        let der = self.encrypt_bytes(&plaintext)?;
        tracing::debug!(
            key_transport = %self.transport,
            content_encryption = "aes256-CBC",
            recipient_bits = self.key.bits(),
            outcome = "encrypted",
            latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "card data encrypted as CMS EnvelopedData"
        );
        Ok(der)
    }

    /// Encrypts `card` for use with `auth_code`, refusing a pair that names different cards.
    ///
    /// # Errors
    /// [`ProvisioningError::SubjectIsTokenId`] when the code was signed for a tokenId,
    /// [`ProvisioningError::SubjectMismatch`] when its `sub` is not the card's issuerCardRefId; else as
    /// [`EnvelopeEncryptor::encrypt`].
    pub fn encrypt_for(
        &self,
        card: &CardData,
        auth_code: &AuthCode,
    ) -> Result<Vec<u8>, ProvisioningError> {
        if auth_code.is_for_token_id() {
            return Err(ProvisioningError::SubjectIsTokenId);
        }
        if auth_code.claims().sub != card.issuer_card_ref_id {
            return Err(ProvisioningError::SubjectMismatch);
        }
        self.encrypt(card)
    }
}

/// An authorization code and the CMS card data for the same card (classic push).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushProvisioningEnvelope {
    /// The signed authorization code (`sub` = the card's issuerCardRefId).
    pub auth_code: AuthCode,
    /// The DER `ContentInfo` of the card data.
    pub card_data: Vec<u8>,
}

/// Signs an authorization code for `card` (its issuerCardRefId as `sub`) and encrypts the card data as CMS
/// `EnvelopedData`, so the two always agree (the classic-push counterpart of
/// [`push_provisioning`](crate::push_provisioning)).
///
/// # Errors
/// As [`push_provisioning`](crate::push_provisioning) and [`EnvelopeEncryptor::encrypt`].
pub fn push_provisioning(
    signer: &AuthCodeSigner,
    encryptor: &EnvelopeEncryptor,
    card: &CardData,
    audience: Audience,
    ttl_secs: Option<u64>,
) -> Result<PushProvisioningEnvelope, ProvisioningError> {
    let auth_code = crate::enrollment::sign_for_card(signer, card, audience, ttl_secs)?;
    let card_data = encryptor.encrypt_for(card, &auth_code)?;
    Ok(PushProvisioningEnvelope {
        auth_code,
        card_data,
    })
}

// ---------------------------------------------------------------------------------------------------------
// A small DER/BER reader: definite lengths, and indefinite lengths of constructed values (BER, as streaming
// encoders write). Every read is bounds-checked; the input is untrusted.

const MAX_DEPTH: usize = 32;

#[derive(Clone, Copy)]
struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// Reads one TLV; returns (tag, contents). For an indefinite length the contents exclude the
    /// end-of-contents octets.
    fn read_any(&mut self) -> Result<(u8, &'a [u8]), &'static str> {
        self.read_any_at(0)
    }

    fn read_any_at(&mut self, depth: usize) -> Result<(u8, &'a [u8]), &'static str> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        let (&tag, rest) = self.input.split_first().ok_or("unexpected end of input")?;
        if tag & 0x1f == 0x1f {
            return Err("high-tag-number form");
        }
        let (&first, rest) = rest.split_first().ok_or("missing length")?;
        if first == 0x80 {
            if tag & 0x20 == 0 {
                return Err("indefinite length on a primitive value");
            }
            let mut inner = Reader::new(rest);
            loop {
                if inner.input.starts_with(&[0, 0]) {
                    let contents = &rest[..rest.len() - inner.input.len()];
                    self.input = &inner.input[2..];
                    return Ok((tag, contents));
                }
                inner.read_any_at(depth + 1)?;
            }
        }
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n > 4 || rest.len() < n {
                return Err("bad length");
            }
            let (len_bytes, rest) = rest.split_at(n);
            (
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                rest,
            )
        };
        if rest.len() < len {
            return Err("truncated");
        }
        let (value, rest) = rest.split_at(len);
        self.input = rest;
        Ok((tag, value))
    }

    fn read(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        match self.read_any()? {
            (t, v) if t == tag => Ok(v),
            _ => Err("unexpected tag"),
        }
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err("trailing data")
        }
    }
}

/// An `AlgorithmIdentifier`: the OID contents and the parameters TLV (tag, contents), if any.
struct AlgorithmId<'a> {
    oid: &'a [u8],
    parameters: Option<(u8, &'a [u8])>,
}

fn read_algorithm<'a>(r: &mut Reader<'a>) -> Result<AlgorithmId<'a>, &'static str> {
    algorithm_from_contents(r.read(TAG_SEQUENCE)?)
}

/// An `AlgorithmIdentifier` from the contents of its SEQUENCE.
fn algorithm_from_contents(contents: &[u8]) -> Result<AlgorithmId<'_>, &'static str> {
    let mut a = Reader::new(contents);
    let oid = a.read(TAG_OID)?;
    let parameters = if a.is_empty() {
        None
    } else {
        Some(a.read_any()?)
    };
    a.finish()?;
    Ok(AlgorithmId { oid, parameters })
}

/// A hash AlgorithmIdentifier with NULL or absent parameters: SHA-1 or SHA-256.
fn hash_of(id: &AlgorithmId<'_>) -> Option<&'static str> {
    if !matches!(id.parameters, None | Some((TAG_NULL, []))) {
        return None;
    }
    match id.oid {
        OID_SHA1 => Some("sha1"),
        OID_SHA256 => Some("sha256"),
        _ => None,
    }
}

/// What a `KeyTransRecipientInfo`'s key-encryption algorithm asks for.
enum Transport {
    Oaep(DecryptionScheme),
    Pkcs1v15,
    Unsupported(&'static str),
}

fn transport_of(id: &AlgorithmId<'_>) -> Transport {
    match id.oid {
        OID_RSA_ENCRYPTION => Transport::Pkcs1v15,
        OID_RSAES_OAEP => match id.parameters {
            None => Transport::Oaep(DecryptionScheme::RsaOaepSha1),
            Some((TAG_SEQUENCE, params)) => oaep_scheme(params)
                .unwrap_or(Transport::Unsupported("RSAES-OAEP with other parameters")),
            Some(_) => Transport::Unsupported("RSAES-OAEP with malformed parameters"),
        },
        _ => Transport::Unsupported("an unknown key-encryption algorithm"),
    }
}

/// RSAES-OAEP-params (RFC 4055 §4.1): SHA-1 with MGF1-SHA-1 or SHA-256 with MGF1-SHA-256, empty label.
fn oaep_scheme(params: &[u8]) -> Option<Transport> {
    let mut p = Reader::new(params);
    let mut hash = "sha1";
    let mut mgf_hash = "sha1";
    if p.peek_tag() == Some(TAG_CONTEXT_0) {
        let mut h = Reader::new(p.read(TAG_CONTEXT_0).ok()?);
        hash = hash_of(&read_algorithm(&mut h).ok()?)?;
        h.finish().ok()?;
    }
    if p.peek_tag() == Some(TAG_CONTEXT_1) {
        let mut m = Reader::new(p.read(TAG_CONTEXT_1).ok()?);
        let mgf = read_algorithm(&mut m).ok()?;
        m.finish().ok()?;
        match (mgf.oid, mgf.parameters) {
            (OID_MGF1, Some((TAG_SEQUENCE, inner))) => {
                mgf_hash = hash_of(&algorithm_from_contents(inner).ok()?)?;
            }
            _ => return None,
        }
    }
    if p.peek_tag() == Some(TAG_CONTEXT_2) {
        let mut s = Reader::new(p.read(TAG_CONTEXT_2).ok()?);
        let source = read_algorithm(&mut s).ok()?;
        s.finish().ok()?;
        // Only the empty label (the default) is supported.
        if source.oid != OID_P_SPECIFIED
            || !matches!(source.parameters, Some((TAG_OCTET_STRING, [])))
        {
            return None;
        }
    }
    p.finish().ok()?;
    match (hash, mgf_hash) {
        ("sha1", "sha1") => Some(Transport::Oaep(DecryptionScheme::RsaOaepSha1)),
        ("sha256", "sha256") => Some(Transport::Oaep(DecryptionScheme::RsaOaepSha256)),
        _ => None,
    }
}

/// A parsed `EnvelopedData`, reduced to what decryption needs.
struct Envelope<'a> {
    /// (scheme, encryptedKey) of every KeyTransRecipientInfo keybound can unwrap.
    candidates: Vec<(DecryptionScheme, &'a [u8])>,
    cipher: &'static Algorithm,
    key_len: usize,
    iv: [u8; 16],
    encrypted_content: Vec<u8>,
}

fn malformed(what: &'static str) -> impl Fn(&'static str) -> ProvisioningError {
    move |e| refused(format!("malformed CMS data ({what}: {e})"))
}

/// The contents of `encryptedContent` `[0] IMPLICIT OCTET STRING`: primitive, or constructed from segments
/// (BER).
fn octet_string_contents(
    tag: u8,
    value: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), &'static str> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply");
    }
    if tag & 0x20 == 0 {
        out.extend_from_slice(value);
        return Ok(());
    }
    let mut r = Reader::new(value);
    while !r.is_empty() {
        let (t, v) = r.read_any()?;
        if t != TAG_OCTET_STRING && t != TAG_OCTET_STRING_CONSTRUCTED {
            return Err("a segment that is not an OCTET STRING");
        }
        octet_string_contents(t, v, out, depth + 1)?;
    }
    Ok(())
}

fn parse(der: &[u8]) -> Result<Envelope<'_>, ProvisioningError> {
    let mut outer = Reader::new(der);
    let content_info = outer.read(TAG_SEQUENCE).map_err(malformed("ContentInfo"))?;
    outer.finish().map_err(malformed("ContentInfo"))?;
    let mut ci = Reader::new(content_info);
    let content_type = ci.read(TAG_OID).map_err(malformed("contentType"))?;
    if content_type != OID_ENVELOPED_DATA {
        return Err(refused(
            "not CMS EnvelopedData (the ContentInfo's contentType is another type); give the encrypted data \
             as received",
        ));
    }
    let explicit = ci.read(TAG_CONTEXT_0).map_err(malformed("content"))?;
    ci.finish().map_err(malformed("ContentInfo"))?;
    let mut explicit = Reader::new(explicit);
    let enveloped = explicit
        .read(TAG_SEQUENCE)
        .map_err(malformed("EnvelopedData"))?;
    explicit.finish().map_err(malformed("content"))?;

    let mut ed = Reader::new(enveloped);
    ed.read(TAG_INTEGER).map_err(malformed("version"))?;
    if ed.peek_tag() == Some(TAG_CONTEXT_0) {
        ed.read(TAG_CONTEXT_0)
            .map_err(malformed("originatorInfo"))?;
    }
    let recipient_infos = ed.read(TAG_SET).map_err(malformed("recipientInfos"))?;
    let eci = ed
        .read(TAG_SEQUENCE)
        .map_err(malformed("encryptedContentInfo"))?;
    if ed.peek_tag() == Some(TAG_CONTEXT_1) {
        ed.read(TAG_CONTEXT_1)
            .map_err(malformed("unprotectedAttrs"))?;
    }
    ed.finish().map_err(malformed("EnvelopedData"))?;

    // Recipients: only KeyTransRecipientInfo (a SEQUENCE) is for an RSA key.
    let mut candidates = Vec::new();
    let (mut ktri, mut pkcs1, mut unsupported, mut others) = (0, 0, None, Vec::new());
    let mut ris = Reader::new(recipient_infos);
    while !ris.is_empty() {
        let (tag, value) = ris.read_any().map_err(malformed("RecipientInfo"))?;
        match tag {
            TAG_SEQUENCE => {
                ktri += 1;
                let mut k = Reader::new(value);
                k.read(TAG_INTEGER)
                    .map_err(malformed("KeyTransRecipientInfo version"))?;
                k.read_any()
                    .map_err(malformed("KeyTransRecipientInfo rid"))?;
                let algorithm =
                    read_algorithm(&mut k).map_err(malformed("keyEncryptionAlgorithm"))?;
                let encrypted_key = k
                    .read(TAG_OCTET_STRING)
                    .map_err(malformed("encryptedKey"))?;
                k.finish().map_err(malformed("KeyTransRecipientInfo"))?;
                match transport_of(&algorithm) {
                    Transport::Oaep(scheme) => candidates.push((scheme, encrypted_key)),
                    Transport::Pkcs1v15 => pkcs1 += 1,
                    Transport::Unsupported(what) => unsupported = Some(what),
                }
            }
            0xa1 => others.push("KeyAgreeRecipientInfo"),
            0xa2 => others.push("KEKRecipientInfo"),
            0xa3 => others.push("PasswordRecipientInfo"),
            _ => others.push("OtherRecipientInfo"),
        }
    }
    if ktri == 0 {
        let found = if others.is_empty() {
            "none".to_owned()
        } else {
            others.join(", ")
        };
        return Err(refused(format!(
            "no key-transport recipient (KeyTransRecipientInfo) to decrypt with an RSA key; found: {found}. \
             keybound decrypts data encrypted to an RSA certificate only"
        )));
    }
    if candidates.is_empty() {
        return Err(refused(if pkcs1 > 0 {
            "the content key is transported with RSAES-PKCS1-v1_5, which keybound never decrypts (it would \
             make the key a Bleichenbacher padding oracle); ask the sender to use RSAES-OAEP (SHA-256)"
                .to_owned()
        } else {
            format!(
                "the content key is transported with {}; keybound decrypts RSAES-OAEP with SHA-256 (or SHA-1) \
                 and the matching MGF1 only",
                unsupported.unwrap_or("an unsupported algorithm")
            )
        }));
    }

    // Content: AES-CBC with a 16-byte IV.
    let mut e = Reader::new(eci);
    e.read(TAG_OID)
        .map_err(malformed("encryptedContentInfo contentType"))?;
    let algorithm = read_algorithm(&mut e).map_err(malformed("contentEncryptionAlgorithm"))?;
    let (cipher, key_len) = match algorithm.oid {
        OID_AES128_CBC => (&AES_128, 16),
        OID_AES192_CBC => (&AES_192, 24),
        OID_AES256_CBC => (&AES_256, 32),
        _ => {
            return Err(refused(
                "the content encryption is not AES-CBC; keybound decrypts AES-256-CBC (and AES-128/192-CBC) \
                 only (RFC 3565)",
            ));
        }
    };
    let iv = match algorithm.parameters {
        Some((TAG_OCTET_STRING, iv)) => <[u8; 16]>::try_from(iv).ok(),
        _ => None,
    }
    .ok_or_else(|| refused("malformed CMS data (the AES-CBC IV is not a 16-byte OCTET STRING)"))?;
    let mut encrypted_content = Vec::new();
    match e.read_any() {
        Ok((tag @ (TAG_CONTEXT_0_PRIMITIVE | TAG_CONTEXT_0), value)) => {
            octet_string_contents(tag, value, &mut encrypted_content, 0)
                .map_err(malformed("encryptedContent"))?;
        }
        Ok(_) => return Err(refused("malformed CMS data (encryptedContent)")),
        Err(_) => {
            return Err(refused(
                "the encrypted content is not included (detached content is not supported)",
            ));
        }
    }
    e.finish().map_err(malformed("encryptedContentInfo"))?;
    Ok(Envelope {
        candidates,
        cipher,
        key_len,
        iv,
        encrypted_content,
    })
}

/// Decrypts CMS `EnvelopedData` (DER, or BER with indefinite lengths) with `key`: the content key is
/// unwrapped inside the key's backend, the content decrypted in software.
///
/// # Errors
/// [`ProvisioningError::CmsRefused`] for input that is not `EnvelopedData`, or uses what keybound does not
/// decrypt (no `KeyTransRecipientInfo`, PKCS#1 v1.5 key transport, a content cipher other than AES-CBC);
/// [`ProvisioningError::DecryptionFailed`] for every failure after that (wrong key, altered data, bad
/// padding), always the same; [`ProvisioningError::Key`] when the backend cannot decrypt at all (not
/// supported by the token, a PIN or session failure).
pub fn decrypt(der: &[u8], key: &dyn KeyBackend) -> Result<Zeroizing<Vec<u8>>, ProvisioningError> {
    let started = std::time::Instant::now();
    let envelope = parse(der)?;
    if !matches!(key.public_key(), PublicKey::Rsa { .. }) {
        return Err(ProvisioningError::Key(KeyError::WrongKeyType {
            operation: "CMS decryption (RSA key transport)".into(),
            key: key.public_key().describe(),
        }));
    }
    let modulus_len = key.public_key().bits().div_ceil(8);
    let mut result = Err(ProvisioningError::DecryptionFailed);
    let mut unwrapped = false;
    for (scheme, encrypted_key) in &envelope.candidates {
        // A RecipientInfo for a key of another size is for another key.
        if encrypted_key.len() != modulus_len {
            continue;
        }
        let cek = match key.decrypt(*scheme, encrypted_key) {
            Ok(cek) => cek,
            Err(KeyError::Crypto) => continue,
            Err(other) => {
                result = Err(ProvisioningError::Key(other));
                break;
            }
        };
        unwrapped = true;
        if let Some(plaintext) = decrypt_content(&envelope, &cek) {
            result = Ok(plaintext);
            break;
        }
    }
    if !unwrapped && matches!(result, Err(ProvisioningError::DecryptionFailed)) {
        // No content key came out: go through the content decryption anyway with a random key (as OpenSSL
        // does against Bleichenbacher-style attacks), so a failed unwrap costs what a failed padding check
        // costs. Whatever it yields, the answer stays DecryptionFailed.
        let mut random = Zeroizing::new(vec![0u8; envelope.key_len]);
        if SystemRandom::new().fill(&mut random).is_ok() {
            let _ = decrypt_content(&envelope, &random);
        }
    }
    tracing::debug!(
        recipients = envelope.candidates.len(),
        outcome = match &result {
            Ok(_) => "decrypted",
            Err(ProvisioningError::DecryptionFailed) => "failed",
            Err(_) => "error",
        },
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "CMS EnvelopedData decryption"
    );
    result
}

/// AES-CBC with PKCS#7 padding; `None` for any failure (wrong key length, bad padding), never saying which.
fn decrypt_content(envelope: &Envelope<'_>, cek: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if cek.len() != envelope.key_len {
        return None;
    }
    let block = envelope.cipher.block_len();
    if envelope.encrypted_content.is_empty() || envelope.encrypted_content.len() % block != 0 {
        return None;
    }
    let cipher =
        PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(envelope.cipher, cek).ok()?)
            .ok()?;
    let mut buffer = Zeroizing::new(envelope.encrypted_content.clone());
    let context = DecryptionContext::Iv128(envelope.iv.into());
    let n = cipher.decrypt(&mut buffer, context).ok()?.len();
    buffer.truncate(n);
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let der = [0x30, 0x03, 0x02, 0x01, 0xff];
        for e in [Encoding::Base64, Encoding::Hex, Encoding::Der] {
            assert_eq!(e.decode(&e.encode(&der)).unwrap(), der, "{e}");
        }
        assert_eq!(Encoding::Hex.encode(&der), b"30030201FF");
        assert_eq!(Encoding::Hex.decode(b"30 03\n0201ff").unwrap(), der);
        assert!(Encoding::Hex.decode(b"3g").is_err());
        assert!(Encoding::Hex.decode(b"303").is_err());
        assert!(Encoding::Base64.decode(b"MAMC\nAf8=").is_ok());
        assert!(Encoding::Base64.decode(b"not base64!").is_err());
    }

    #[test]
    fn indefinite_lengths_are_read() {
        // SEQUENCE (indefinite) { INTEGER 1 } EOC
        let ber = [0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00];
        let mut r = Reader::new(&ber);
        let (tag, contents) = r.read_any().unwrap();
        assert_eq!((tag, contents), (TAG_SEQUENCE, &[0x02, 0x01, 0x01][..]));
        assert!(r.finish().is_ok());
        // A primitive value cannot be indefinite; a missing EOC is truncation.
        assert!(Reader::new(&[0x04, 0x80, 0x00, 0x00]).read_any().is_err());
        assert!(
            Reader::new(&[0x30, 0x80, 0x02, 0x01, 0x01])
                .read_any()
                .is_err()
        );
    }

    #[test]
    fn oaep_parameters_round_trip() {
        let params = oaep_sha256_parameters();
        let mut r = Reader::new(&params);
        let inner = r.read(TAG_SEQUENCE).unwrap();
        assert!(matches!(
            oaep_scheme(inner),
            Some(Transport::Oaep(DecryptionScheme::RsaOaepSha256))
        ));
        assert!(matches!(
            oaep_scheme(&[]),
            Some(Transport::Oaep(DecryptionScheme::RsaOaepSha1))
        ));
    }
}

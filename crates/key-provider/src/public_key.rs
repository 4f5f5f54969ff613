//! Public keys: the one thing a backend hands out. Parsed from and written to SubjectPublicKeyInfo (SPKI) DER
//! and PEM; JOSE-agnostic (the JWK mapping lives in jose-core). [`PublicKeyFile`] reads what people hand over
//! as a public key — SPKI or PKCS#1 PEM, SPKI DER, or an X.509 certificate in PEM (a chain: its leaf) or DER
//! ([`x509`]) — and is the one parser behind every `--pubkey` and provisioning-signer's peer keys.

use std::fmt;
use std::path::Path;

use crate::der::{self, Reader};
use crate::error::KeyError;

mod x509;

pub use x509::Certificate;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The elliptic curves keybound supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

impl EcCurve {
    /// Size in bytes of one coordinate (and of each of r and s in a fixed-width signature).
    #[must_use]
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    /// The curve's name as JOSE and most tools spell it (`P-256`, `P-384`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// Parses `P-256` / `P-384` (also `prime256v1`, `secp384r1`).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for any other curve.
    pub fn from_name(name: &str) -> Result<Self, KeyError> {
        match name {
            "P-256" | "prime256v1" | "secp256r1" => Ok(Self::P256),
            "P-384" | "secp384r1" => Ok(Self::P384),
            _ => Err(KeyError::invalid_key(
                "unsupported curve (P-256 and P-384 are supported)",
            )),
        }
    }

    /// DER object identifier of the named curve (without tag).
    pub(crate) fn oid(self) -> &'static [u8] {
        match self {
            Self::P256 => OID_P256,
            Self::P384 => OID_P384,
        }
    }
}

impl fmt::Display for EcCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key, RSA or EC. Big-endian magnitudes without leading zero bytes for RSA; fixed-width
/// coordinates for EC.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublicKey {
    /// An RSA public key.
    Rsa {
        /// Modulus, big-endian, no leading zero.
        n: Vec<u8>,
        /// Public exponent, big-endian, no leading zero.
        e: Vec<u8>,
    },
    /// An EC public key on a named curve.
    Ec {
        /// The curve.
        curve: EcCurve,
        /// X coordinate, exactly `curve.coordinate_len()` bytes.
        x: Vec<u8>,
        /// Y coordinate, exactly `curve.coordinate_len()` bytes.
        y: Vec<u8>,
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { .. } => write!(f, "PublicKey::Rsa({} bits)", self.bits()),
            Self::Ec { curve, .. } => write!(f, "PublicKey::Ec({curve})"),
        }
    }
}

impl PublicKey {
    /// Builds an RSA public key from big-endian modulus and exponent (leading zeros are stripped).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] when either is zero or the exponent is even or 1.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() || e.is_empty() {
            return Err(KeyError::invalid_key("RSA modulus or exponent is zero"));
        }
        if n[n.len() - 1] & 1 == 0 {
            return Err(KeyError::invalid_key("RSA modulus is even"));
        }
        if e.len() > 8 || e == [1] || e[e.len() - 1] & 1 == 0 {
            return Err(KeyError::invalid_key(
                "RSA public exponent is not acceptable",
            ));
        }
        Ok(Self::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    /// Builds an EC public key from its coordinates (shorter coordinates are left-padded) and checks that
    /// the point is on the curve.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] when a coordinate is too long or the point is not on the curve.
    pub fn ec(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        let len = curve.coordinate_len();
        let pad = |c: &[u8]| -> Result<Vec<u8>, KeyError> {
            let c = strip_zeros(c);
            if c.len() > len {
                return Err(KeyError::invalid_key(
                    "EC coordinate longer than the curve allows",
                ));
            }
            let mut v = vec![0u8; len - c.len()];
            v.extend_from_slice(c);
            Ok(v)
        };
        let key = Self::Ec {
            curve,
            x: pad(x)?,
            y: pad(y)?,
        };
        key.check_ec_point()?;
        Ok(key)
    }

    /// Builds an EC public key from an uncompressed SEC1 point (`04 || X || Y`).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for a compressed, malformed or off-curve point.
    pub fn ec_from_point(curve: EcCurve, point: &[u8]) -> Result<Self, KeyError> {
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point[0] != 0x04 {
            return Err(KeyError::invalid_key(
                "EC point is not an uncompressed point of the curve's size",
            ));
        }
        Self::ec(curve, &point[1..=len], &point[1 + len..])
    }

    fn check_ec_point(&self) -> Result<(), KeyError> {
        // aws-lc validates the point when the key is parsed.
        let spki = self.to_spki_der();
        let alg: &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm = match self {
            Self::Ec {
                curve: EcCurve::P256,
                ..
            } => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            Self::Ec {
                curve: EcCurve::P384,
                ..
            } => &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
            Self::Rsa { .. } => return Ok(()),
        };
        aws_lc_rs::signature::ParsedPublicKey::new(alg, &spki)
            .map(|_| ())
            .map_err(|_| KeyError::invalid_key("EC point is not on the curve"))
    }

    /// The key size in bits (RSA modulus length; EC field size).
    #[must_use]
    pub fn bits(&self) -> usize {
        match self {
            Self::Rsa { n, .. } => match n.first() {
                Some(first) => n.len() * 8 - first.leading_zeros() as usize,
                None => 0,
            },
            Self::Ec { curve, .. } => curve.coordinate_len() * 8,
        }
    }

    /// A short description such as `RSA-2048` or `EC P-256`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Rsa { .. } => format!("RSA-{}", self.bits()),
            Self::Ec { curve, .. } => format!("EC {curve}"),
        }
    }

    /// The uncompressed SEC1 point (`04 || X || Y`) of an EC key; `None` for RSA.
    #[must_use]
    pub fn ec_point(&self) -> Option<Vec<u8>> {
        match self {
            Self::Ec { x, y, .. } => {
                let mut p = Vec::with_capacity(1 + x.len() + y.len());
                p.push(0x04);
                p.extend_from_slice(x);
                p.extend_from_slice(y);
                Some(p)
            }
            Self::Rsa { .. } => None,
        }
    }

    /// PKCS#1 `RSAPublicKey` DER of an RSA key; `None` for EC.
    #[must_use]
    pub fn rsa_public_key_der(&self) -> Option<Vec<u8>> {
        match self {
            Self::Rsa { n, e } => {
                let mut body = Vec::with_capacity(n.len() + e.len() + 8);
                der::write_unsigned_integer(&mut body, n);
                der::write_unsigned_integer(&mut body, e);
                Some(der::tlv(der::TAG_SEQUENCE, &body))
            }
            Self::Ec { .. } => None,
        }
    }

    /// SubjectPublicKeyInfo DER.
    #[must_use]
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut alg = Vec::new();
        let key_bits = match self {
            Self::Rsa { .. } => {
                der::write_tlv(&mut alg, der::TAG_OID, OID_RSA_ENCRYPTION);
                der::write_tlv(&mut alg, der::TAG_NULL, &[]);
                self.rsa_public_key_der().unwrap_or_default()
            }
            Self::Ec { curve, .. } => {
                der::write_tlv(&mut alg, der::TAG_OID, OID_EC_PUBLIC_KEY);
                der::write_tlv(&mut alg, der::TAG_OID, curve.oid());
                self.ec_point().unwrap_or_default()
            }
        };
        let mut bit_string = Vec::with_capacity(key_bits.len() + 1);
        bit_string.push(0);
        bit_string.extend_from_slice(&key_bits);
        let mut body = der::tlv(der::TAG_SEQUENCE, &alg);
        der::write_tlv(&mut body, der::TAG_BIT_STRING, &bit_string);
        der::tlv(der::TAG_SEQUENCE, &body)
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), 64-column lines and a final newline, as
    /// `openssl pkey -pubout` writes it.
    #[must_use]
    pub fn to_spki_pem(&self) -> String {
        let p = pem::Pem::new("PUBLIC KEY", self.to_spki_der());
        pem::encode_config(
            &p,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// Parses SubjectPublicKeyInfo DER (RSA, EC P-256, EC P-384).
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for malformed input or unsupported key types.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, KeyError> {
        let bad = |e: der::DerError| {
            KeyError::invalid_key(format!("malformed SubjectPublicKeyInfo: {}", e.0))
        };
        let mut outer = Reader::new(spki);
        let seq = outer.read(der::TAG_SEQUENCE).map_err(bad)?;
        outer.finish().map_err(bad)?;
        let mut seq = Reader::new(seq);
        let alg = seq.read(der::TAG_SEQUENCE).map_err(bad)?;
        let bits = seq.read(der::TAG_BIT_STRING).map_err(bad)?;
        seq.finish().map_err(bad)?;
        let key_bytes = match bits.split_first() {
            Some((0, rest)) => rest,
            _ => {
                return Err(KeyError::invalid_key(
                    "malformed SubjectPublicKeyInfo: bit string has unused bits",
                ));
            }
        };
        let mut alg = Reader::new(alg);
        let oid = alg.read(der::TAG_OID).map_err(bad)?;
        if oid == OID_RSA_ENCRYPTION {
            if !alg.is_empty() {
                alg.read(der::TAG_NULL).map_err(bad)?;
            }
            alg.finish().map_err(bad)?;
            Self::from_pkcs1_der(key_bytes)
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve_oid = alg.read(der::TAG_OID).map_err(bad)?;
            alg.finish().map_err(bad)?;
            let curve = if curve_oid == OID_P256 {
                EcCurve::P256
            } else if curve_oid == OID_P384 {
                EcCurve::P384
            } else {
                return Err(KeyError::invalid_key(
                    "unsupported EC curve (P-256 and P-384 are supported)",
                ));
            };
            Self::ec_from_point(curve, key_bytes)
        } else {
            Err(KeyError::invalid_key(
                "unsupported public key algorithm (RSA and EC are supported)",
            ))
        }
    }

    /// Parses PKCS#1 `RSAPublicKey` DER.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for malformed input.
    pub fn from_pkcs1_der(der_bytes: &[u8]) -> Result<Self, KeyError> {
        let bad =
            |e: der::DerError| KeyError::invalid_key(format!("malformed RSAPublicKey: {}", e.0));
        let mut outer = Reader::new(der_bytes);
        let seq = outer.read(der::TAG_SEQUENCE).map_err(bad)?;
        outer.finish().map_err(bad)?;
        let mut seq = Reader::new(seq);
        let n = seq.read_unsigned_integer().map_err(bad)?;
        let e = seq.read_unsigned_integer().map_err(bad)?;
        seq.finish().map_err(bad)?;
        Self::rsa(n, e)
    }

    /// Parses a PEM public key: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1). A certificate or private key
    /// is refused with a message saying so.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] for anything else.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).map_err(|_| KeyError::invalid_key("not valid PEM"))?;
        let block = match blocks.as_slice() {
            [one] => one,
            [] => return Err(KeyError::invalid_key("no PEM block found")),
            _ => {
                return Err(KeyError::invalid_key(
                    "more than one PEM block: give exactly one public key",
                ));
            }
        };
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(block.contents()),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(block.contents()),
            tag if tag.contains("PRIVATE KEY") => Err(KeyError::invalid_key(
                "this is a private key; give the public key (keybound keys public --key …)",
            )),
            "CERTIFICATE" => Err(KeyError::invalid_key(
                "a certificate, not a bare public key: read it with PublicKeyFile::parse",
            )),
            _ => Err(KeyError::invalid_key(
                "unsupported PEM block (expected PUBLIC KEY)",
            )),
        }
    }

    /// Takes the public key out of a DER X.509 certificate (see [`Certificate::from_der`]; no path is
    /// validated).
    ///
    /// # Errors
    /// As [`Certificate::from_der`].
    pub fn from_certificate_der(der_bytes: &[u8]) -> Result<Self, KeyError> {
        Certificate::from_der(der_bytes).map(|c| c.public_key)
    }

    /// Reads a public key file in any form [`PublicKeyFile::parse`] accepts, certificates included.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read, else as [`PublicKeyFile::parse`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        PublicKeyFile::read(path).map(|f| f.key)
    }
}

/// A public key as handed over in a file, and the certificate it came in, if it came in one.
///
/// Accepted: SPKI PEM (`PUBLIC KEY`), PKCS#1 PEM (`RSA PUBLIC KEY`), SPKI DER, and an X.509 certificate in
/// PEM (`CERTIFICATE`) or DER. A PEM with several certificates is a chain given leaf first, each followed by
/// its issuer: the first certificate's key is taken, after checking that order by name (a chain in another
/// order is refused, so a CA's key is never taken for the leaf's); no signature is verified and no trust
/// anchor consulted. A certificate outside its validity period is still used, with a `warn` event. A private
/// key anywhere in the input is refused by name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublicKeyFile {
    /// The key.
    pub key: PublicKey,
    /// The certificate that carried the key (the leaf of a chain), when it came as one.
    pub certificate: Option<Certificate>,
}

impl PublicKeyFile {
    /// Parses a public key file's contents.
    ///
    /// ```
    /// use key_provider::{PublicKey, PublicKeyFile};
    /// let spki = "-----BEGIN PUBLIC KEY-----\n\
    ///     MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEXH8UTNG72bfocs\n\
    ///     3+257rn0s2ldbqkLJK2KRiMohYjlrQ==\n-----END PUBLIC KEY-----\n";
    /// let file = PublicKeyFile::parse(spki.as_bytes()).unwrap();
    /// assert_eq!(file.key.describe(), "EC P-256");
    /// assert!(file.certificate.is_none());
    /// assert_eq!(PublicKeyFile::parse(&file.key.to_spki_der()).unwrap().key, file.key);
    /// ```
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyMaterial`] saying what was found instead.
    pub fn parse(input: &[u8]) -> Result<Self, KeyError> {
        let file = if input.trim_ascii_start().starts_with(b"-----BEGIN") {
            Self::from_pem(input)?
        } else if input.first() == Some(&der::TAG_SEQUENCE) {
            Self::from_der(input)?
        } else {
            return Err(KeyError::invalid_key(
                "expected a public key (SPKI PEM or DER, PKCS#1 PEM) or an X.509 certificate (PEM or DER)",
            ));
        };
        if let Some(cert) = &file.certificate {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            if !cert.is_valid_at(now) {
                tracing::warn!(
                    not_before = cert.not_before,
                    not_after = cert.not_after,
                    "the certificate is outside its validity period; its key is used anyway — ask for a current one"
                );
            }
        }
        Ok(file)
    }

    /// Reads and parses a public key file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read, else as [`PublicKeyFile::parse`].
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    fn from_pem(input: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(input).map_err(|_| KeyError::invalid_key("not valid PEM"))?;
        if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
            return Err(KeyError::invalid_key(
                "this file holds a private key; give the public key (keybound keys public --key …) or the \
                 certificate",
            ));
        }
        match blocks.as_slice() {
            [] => Err(KeyError::invalid_key("no PEM block found")),
            [first, ..] if first.tag() == "CERTIFICATE" => {
                if blocks.iter().any(|b| b.tag() != "CERTIFICATE") {
                    return Err(KeyError::invalid_key(
                        "certificates mixed with other PEM blocks; give the certificate (or its chain) alone",
                    ));
                }
                let chain = blocks
                    .iter()
                    .map(|b| Certificate::from_der(b.contents()))
                    .collect::<Result<Vec<_>, _>>()?;
                let leaf = x509::leaf_of_chain(chain)?;
                Ok(Self {
                    key: leaf.public_key.clone(),
                    certificate: Some(leaf),
                })
            }
            [one] => Ok(Self {
                key: match one.tag() {
                    "PUBLIC KEY" => PublicKey::from_spki_der(one.contents())?,
                    "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(one.contents())?,
                    _ => {
                        return Err(KeyError::invalid_key(
                            "unsupported PEM block (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)",
                        ));
                    }
                },
                certificate: None,
            }),
            _ => Err(KeyError::invalid_key(
                "more than one PEM block: give exactly one public key, or one certificate chain",
            )),
        }
    }

    fn from_der(input: &[u8]) -> Result<Self, KeyError> {
        // An SPKI is SEQUENCE { AlgorithmIdentifier SEQUENCE, BIT STRING }; a certificate is
        // SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE, BIT STRING }.
        let second_tag = Reader::new(input)
            .read(der::TAG_SEQUENCE)
            .ok()
            .and_then(|body| {
                let mut body = Reader::new(body);
                body.read_any().ok()?;
                body.peek_tag()
            });
        if second_tag == Some(der::TAG_BIT_STRING) {
            return Ok(Self {
                key: PublicKey::from_spki_der(input)?,
                certificate: None,
            });
        }
        let certificate = Certificate::from_der(input)?;
        Ok(Self {
            key: certificate.public_key.clone(),
            certificate: Some(certificate),
        })
    }
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let skip = v.iter().take_while(|b| **b == 0).count();
    &v[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_degenerate_rsa() {
        assert!(PublicKey::rsa(&[0], &[1, 0, 1]).is_err());
        assert!(PublicKey::rsa(&[0xff, 0xfe], &[1, 0, 1]).is_err());
        assert!(PublicKey::rsa(&[0xff, 0xff], &[1]).is_err());
    }

    #[test]
    fn rejects_off_curve_point() {
        let mut point = vec![4u8];
        point.extend_from_slice(&[1u8; 64]);
        assert!(PublicKey::ec_from_point(EcCurve::P256, &point).is_err());
    }
}

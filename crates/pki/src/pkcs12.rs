//! Reading the private key and certificates out of a PKCS#12 (`.p12`/`.pfx`) file, as partners issue keys
//! (Cybersource's merchant key, most CAs), so the CLI can import the key into a backend
//! (`keybound keys import`) without a plaintext key file on disk.
//!
//! Both kinds of file `openssl pkcs12 -export` writes are read: the modern default (PBES2 with PBKDF2 and
//! AES-256-CBC, MAC HMAC-SHA256) and `-legacy` (3DES key bag, RC2-40 certificate bag, MAC HMAC-SHA1); see
//! module `pbe`. The MAC is checked before anything is decrypted, so a wrong password is reported as such.
//! A file must hold exactly one private key; certificates are optional.
//!
//! **The decrypted key stays in `Zeroizing` buffers**: [`KeyFile::private_key`] hands out its PKCS#8 DER
//! (wiped on drop) for the backend's import function, nothing else.

mod der;
mod pbe;
mod write;

pub use write::write_pkcs12;
#[doc(hidden)]
pub use write::write_pkcs12_keys;

use zeroize::Zeroizing;

use der::Reader;

use crate::der_write::tlv;

/// Why a key file could not be read. Messages are one line and never carry key bytes or the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs12Error {
    /// The MAC does not verify with the password given.
    #[error(
        "the PKCS#12 file's integrity check failed: wrong password (give it with --password-source env:VAR or file:PATH), or the file was altered"
    )]
    WrongPassword,
    /// The file holds no private key.
    #[error("the key file holds no private key (a certificate alone cannot be imported)")]
    NoKey,
    /// The file holds more than one private key.
    #[error(
        "the key file holds {0} private keys; keybound imports exactly one (split the file with openssl first)"
    )]
    SeveralKeys(usize),
    /// The file is not well-formed.
    #[error("the key file is damaged or not PKCS#12/PEM: {0}")]
    Corrupt(String),
    /// A well-formed file that uses an algorithm keybound does not read.
    #[error("the PKCS#12 file uses an unsupported {0}")]
    Unsupported(String),
}

/// A private key (PKCS#8 DER or another DER form, see [`KeyFile::private_key`]) with the certificates that
/// came with it.
pub struct KeyFile {
    key: Zeroizing<Vec<u8>>,
    key_local_id: Option<Vec<u8>>,
    certificates: Vec<WithLocalId<Vec<u8>>>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("key", &"[redacted]")
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl KeyFile {
    /// Reads a key file: PEM text (a `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY` or `ENCRYPTED
    /// PRIVATE KEY` block, plus any `CERTIFICATE` blocks) or a DER PKCS#12 file; `password` decrypts the
    /// PKCS#12 file or the encrypted PKCS#8 block (legacy `Proc-Type`/`DEK-Info` PEM encryption is refused).
    ///
    /// # Errors
    /// [`Pkcs12Error`]: a wrong password, no key, several keys, damaged data, an unsupported algorithm.
    pub fn read(bytes: &[u8], password: &str) -> Result<Self, Pkcs12Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN ") => Self::from_pem(text, password),
            _ => Self::from_pkcs12(bytes, password),
        }
    }

    /// The private key's DER bytes, wiped on drop: PKCS#8 from a PKCS#12 file or a `PRIVATE KEY` block,
    /// PKCS#1 or SEC1 from the other PEM blocks.
    #[must_use]
    pub fn private_key(&self) -> &Zeroizing<Vec<u8>> {
        &self.key
    }

    /// The private key as PEM text (for the backends that parse PEM), wiped on drop.
    #[must_use]
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        let label = if is_pkcs8(&self.key) {
            "PRIVATE KEY"
        } else if is_sec1(&self.key) {
            "EC PRIVATE KEY"
        } else {
            "RSA PRIVATE KEY"
        };
        let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
        let b64 =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.key.as_slice()));
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    /// Every certificate in the file (DER), in file order.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.certificates.iter().map(|(c, _)| c.as_slice())
    }

    /// The certificate the file ties to the key by its `localKeyId` attribute, if any. (A caller should
    /// still check that its public key is the key's.)
    #[must_use]
    pub fn key_certificate(&self) -> Option<&[u8]> {
        let id = self.key_local_id.as_ref()?;
        self.certificates
            .iter()
            .find(|(_, cid)| cid.as_ref() == Some(id))
            .map(|(c, _)| c.as_slice())
    }

    fn from_pem(text: &str, password: &str) -> Result<Self, Pkcs12Error> {
        let mut keys: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut certificates = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(label) = line
                .trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
            else {
                continue;
            };
            let label = label.to_owned();
            let end = format!("-----END {label}-----");
            let mut b64 = Zeroizing::new(String::new());
            let mut closed = false;
            for body in lines.by_ref() {
                let body = body.trim();
                if body == end {
                    closed = true;
                    break;
                }
                if body.contains(':') {
                    return Err(Pkcs12Error::Corrupt(
                        "an encrypted PEM key (Proc-Type/DEK-Info headers); give the PKCS#12 file instead"
                            .into(),
                    ));
                }
                b64.push_str(body);
            }
            if !closed {
                return Err(Pkcs12Error::Corrupt(format!(
                    "PEM block `{label}` has no END line"
                )));
            }
            match label.as_str() {
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    keys.push(base64_decode(&b64)?)
                }
                "ENCRYPTED PRIVATE KEY" => {
                    keys.push(decrypt_pkcs8(&base64_decode(&b64)?, password)?);
                }
                "CERTIFICATE" => certificates.push((base64_decode(&b64)?.to_vec(), None)),
                _ => {}
            }
        }
        let key = one_key(keys)?;
        Ok(Self {
            key,
            key_local_id: None,
            certificates,
        })
    }

    fn from_pkcs12(bytes: &[u8], password: &str) -> Result<Self, Pkcs12Error> {
        let password = pbe::Password::new(password);
        let mut outer = Reader::new(bytes, "PKCS#12 file");
        let mut pfx = outer.nested(der::SEQUENCE, "PKCS#12 file")?;
        outer.finish()?;
        if pfx.read_small_uint()? != 3 {
            return Err(Pkcs12Error::Corrupt("PKCS#12 version is not 3".into()));
        }
        let mut auth_safe = pfx.nested(der::SEQUENCE, "PKCS#12 content")?;
        if auth_safe.read(der::OID)? != oid_data().as_slice() {
            return Err(Pkcs12Error::Unsupported(
                "integrity mode (public-key signed PKCS#12 files are not read)".into(),
            ));
        }
        let content = auth_safe
            .nested(der::CONTEXT_0, "PKCS#12 content")?
            .read(der::OCTET_STRING)?;
        if pfx.is_empty() {
            return Err(Pkcs12Error::Unsupported(
                "file without a MAC (keybound reads only password-protected files whose integrity it can check)"
                    .into(),
            ));
        }
        let mac_data = pfx.read(der::SEQUENCE)?;
        pfx.finish()?;
        pbe::verify_mac(mac_data, content, &password)?;

        let mut found = Found::default();
        let mut safes = Reader::new(content, "authenticated safe")
            .nested(der::SEQUENCE, "authenticated safe")?;
        while !safes.is_empty() {
            let mut info = safes.nested(der::SEQUENCE, "content info")?;
            let kind = info.read(der::OID)?;
            let mut explicit = info.nested(der::CONTEXT_0, "content info")?;
            if kind == oid_data().as_slice() {
                let safe_contents = explicit.read(der::OCTET_STRING)?;
                found.safe_contents(safe_contents, &password, 0)?;
            } else if kind == der::oid("1.2.840.113549.1.7.6").as_slice() {
                let mut encrypted = explicit.nested(der::SEQUENCE, "encrypted data")?;
                let _version = encrypted.read_small_uint()?;
                let mut eci = encrypted.nested(der::SEQUENCE, "encrypted content info")?;
                let _type = eci.read(der::OID)?;
                let algorithm = eci.read(der::SEQUENCE)?;
                let ciphertext = eci.read(der::CONTEXT_0_PRIMITIVE)?;
                let plain = pbe::decrypt(algorithm, ciphertext, &password)?;
                found.safe_contents(&plain, &password, 0)?;
            } else {
                return Err(Pkcs12Error::Unsupported(
                    "content type (public-key enveloped PKCS#12 content is not read)".into(),
                ));
            }
        }
        let mut ids: Vec<Option<Vec<u8>>> = found.keys.iter().map(|(_, id)| id.clone()).collect();
        let key = one_key(found.keys.into_iter().map(|(k, _)| k).collect())?;
        Ok(Self {
            key,
            key_local_id: ids.pop().flatten(),
            certificates: found.certificates,
        })
    }
}

/// Decrypts an `EncryptedPrivateKeyInfo` (`openssl pkcs8 -topk8`, `openssl genpkey -aes256`). Without a MAC,
/// a wrong password shows only as undecryptable data, and is reported as either.
fn decrypt_pkcs8(der_bytes: &[u8], password: &str) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut outer = Reader::new(der_bytes, "encrypted private key");
    let mut epki = outer.nested(der::SEQUENCE, "encrypted private key")?;
    outer.finish()?;
    let algorithm = epki.read(der::SEQUENCE)?;
    let ciphertext = epki.read(der::OCTET_STRING)?;
    let wrong = || {
        Pkcs12Error::Corrupt(
            "the encrypted private key does not decrypt: wrong password (--password-source), or damaged".into(),
        )
    };
    let key =
        pbe::decrypt(algorithm, ciphertext, &pbe::Password::new(password)).map_err(
            |e| match e {
                Pkcs12Error::Corrupt(_) => wrong(),
                other => other,
            },
        )?;
    if !is_pkcs8(&key) {
        return Err(wrong());
    }
    Ok(key)
}

fn one_key(mut keys: Vec<Zeroizing<Vec<u8>>>) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    match keys.len() {
        0 => Err(Pkcs12Error::NoKey),
        1 => Ok(keys.remove(0)),
        n => Err(Pkcs12Error::SeveralKeys(n)),
    }
}

fn oid_data() -> Vec<u8> {
    der::oid("1.2.840.113549.1.7.1")
}

/// A bag's contents (a decrypted key, wiped on drop, or a certificate) with its `localKeyId`.
type WithLocalId<T> = (T, Option<Vec<u8>>);

/// Keys and certificates collected from the safe bags.
#[derive(Default)]
struct Found {
    keys: Vec<WithLocalId<Zeroizing<Vec<u8>>>>,
    certificates: Vec<WithLocalId<Vec<u8>>>,
}

impl Found {
    fn safe_contents(
        &mut self,
        der_bytes: &[u8],
        password: &pbe::Password,
        depth: usize,
    ) -> Result<(), Pkcs12Error> {
        if depth > 4 {
            return Err(Pkcs12Error::Corrupt("safe contents nested too deep".into()));
        }
        let mut outer = Reader::new(der_bytes, "safe contents");
        let mut bags = outer.nested(der::SEQUENCE, "safe contents")?;
        outer.finish()?;
        let bag_oid = |n: u8| der::oid(&format!("1.2.840.113549.1.12.10.1.{n}"));
        while !bags.is_empty() {
            let mut bag = bags.nested(der::SEQUENCE, "safe bag")?;
            let kind = bag.read(der::OID)?;
            let mut value = bag.nested(der::CONTEXT_0, "safe bag value")?;
            let local_id = if bag.is_empty() {
                None
            } else {
                local_key_id(bag.read(der::SET)?)?
            };
            if kind == bag_oid(1).as_slice() {
                // keyBag: a plain PrivateKeyInfo.
                let key = value.read(der::SEQUENCE)?;
                self.keys
                    .push((Zeroizing::new(tlv(der::SEQUENCE, key)), local_id));
            } else if kind == bag_oid(2).as_slice() {
                // pkcs8ShroudedKeyBag: EncryptedPrivateKeyInfo.
                let mut epki = value.nested(der::SEQUENCE, "encrypted private key")?;
                let algorithm = epki.read(der::SEQUENCE)?;
                let ciphertext = epki.read(der::OCTET_STRING)?;
                let key = pbe::decrypt(algorithm, ciphertext, password)?;
                if !is_pkcs8(&key) {
                    return Err(Pkcs12Error::Corrupt(
                        "decrypted private key is not PKCS#8".into(),
                    ));
                }
                self.keys.push((key, local_id));
            } else if kind == bag_oid(3).as_slice() {
                let mut cert_bag = value.nested(der::SEQUENCE, "certificate bag")?;
                let cert_type = cert_bag.read(der::OID)?;
                if cert_type == der::oid("1.2.840.113549.1.9.22.1").as_slice() {
                    let cert = cert_bag
                        .nested(der::CONTEXT_0, "certificate bag")?
                        .read(der::OCTET_STRING)?;
                    self.certificates.push((cert.to_vec(), local_id));
                }
            } else if kind == bag_oid(6).as_slice() {
                let nested = value.read(der::SEQUENCE)?;
                self.safe_contents(&tlv(der::SEQUENCE, nested), password, depth + 1)?;
            }
            // CRL and secret bags carry nothing keybound imports.
        }
        Ok(())
    }
}

/// The `localKeyId` among a bag's attributes.
fn local_key_id(attributes: &[u8]) -> Result<Option<Vec<u8>>, Pkcs12Error> {
    let mut set = Reader::new(attributes, "bag attributes");
    while !set.is_empty() {
        let mut attribute = set.nested(der::SEQUENCE, "bag attribute")?;
        let oid = attribute.read(der::OID)?;
        let mut values = attribute.nested(der::SET, "bag attribute values")?;
        if oid == der::oid("1.2.840.113549.1.9.21").as_slice() {
            return Ok(Some(values.read(der::OCTET_STRING)?.to_vec()));
        }
    }
    Ok(None)
}

/// A PrivateKeyInfo: SEQUENCE { INTEGER, SEQUENCE (algorithm), OCTET STRING, … }.
fn is_pkcs8(key: &[u8]) -> bool {
    let mut outer = Reader::new(key, "private key");
    let Ok(mut seq) = outer.nested(der::SEQUENCE, "private key") else {
        return false;
    };
    seq.read(der::INTEGER).is_ok() && seq.peek_tag() == Some(der::SEQUENCE)
}

/// An ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING, … }.
fn is_sec1(key: &[u8]) -> bool {
    let mut outer = Reader::new(key, "private key");
    let Ok(mut seq) = outer.nested(der::SEQUENCE, "private key") else {
        return false;
    };
    seq.read(der::INTEGER).is_ok() && seq.peek_tag() == Some(der::OCTET_STRING)
}

fn base64_decode(text: &str) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    use base64::Engine as _;
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    base64::engine::general_purpose::STANDARD
        .decode_vec(text.as_bytes(), &mut out)
        .map_err(|_| Pkcs12Error::Corrupt("PEM body is not valid base64".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncation_are_one_line_errors() {
        for bytes in [&b"\x30\x03\x02\x01"[..], b"not a key", b"\x30\x80\x00\x00"] {
            let e = KeyFile::read(bytes, "x").unwrap_err();
            assert!(matches!(e, Pkcs12Error::Corrupt(_)), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn pem_needs_exactly_one_key() {
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            KeyFile::read(cert.as_bytes(), ""),
            Err(Pkcs12Error::NoKey)
        ));
        let key = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        let two = format!("{key}{key}");
        assert!(matches!(
            KeyFile::read(two.as_bytes(), ""),
            Err(Pkcs12Error::SeveralKeys(2))
        ));
    }
}

//! Writing a PKCS#12 file the way `openssl pkcs12 -export` does by default (PBES2 with PBKDF2-HMAC-SHA256
//! and AES-256-CBC for the key and the certificates, MAC HMAC-SHA256 through the PKCS#12 KDF, 2048
//! iterations). keybound never exports its own keys: this is for the demo, which plays the partner handing
//! a merchant key over, and for tests (a file with several keys, which openssl cannot write).

use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::{cipher, hmac, pbkdf2};
use zeroize::Zeroizing;

use super::pbe::{self, Hash, Password};
use super::{Pkcs12Error, der, tlv};

const ITERATIONS: u32 = 2048;

fn random<const N: usize>() -> Result<[u8; N], Pkcs12Error> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Pkcs12Error::Corrupt("no randomness".into()))?;
    Ok(out)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn oid(dotted: &str) -> Vec<u8> {
    tlv(der::OID, &der::oid(dotted))
}

fn integer(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    let mut value = bytes[skip..].to_vec();
    if value[0] & 0x80 != 0 {
        value.insert(0, 0);
    }
    tlv(der::INTEGER, &value)
}

/// PBES2 encryption: (AlgorithmIdentifier DER, ciphertext).
fn pbes2_encrypt(plain: &[u8], password: &str) -> Result<(Vec<u8>, Vec<u8>), Pkcs12Error> {
    let salt: [u8; 16] = random()?;
    let iv: [u8; 16] = random()?;
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN),
        &salt,
        password.as_bytes(),
        key.as_mut(),
    );
    let failed = |_| Pkcs12Error::Corrupt("AES-CBC encryption failed".into());
    let encrypting = cipher::PaddedBlockEncryptingKey::cbc_pkcs7(
        cipher::UnboundCipherKey::new(&cipher::AES_256, key.as_ref()).map_err(failed)?,
    )
    .map_err(failed)?;
    let mut data = plain.to_vec();
    encrypting
        .less_safe_encrypt(&mut data, cipher::EncryptionContext::Iv128(iv.into()))
        .map_err(failed)?;
    let kdf = tlv(
        der::SEQUENCE,
        &cat(&[
            &oid("1.2.840.113549.1.5.12"),
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &tlv(der::OCTET_STRING, &salt),
                    &integer(ITERATIONS),
                    &tlv(
                        der::SEQUENCE,
                        &cat(&[&oid("1.2.840.113549.2.9"), &[0x05, 0x00]]),
                    ),
                ]),
            ),
        ]),
    );
    let scheme = tlv(
        der::SEQUENCE,
        &cat(&[
            &oid("2.16.840.1.101.3.4.1.42"),
            &tlv(der::OCTET_STRING, &iv),
        ]),
    );
    let algorithm = tlv(
        der::SEQUENCE,
        &cat(&[
            &oid("1.2.840.113549.1.5.13"),
            &tlv(der::SEQUENCE, &cat(&[&kdf, &scheme])),
        ]),
    );
    Ok((algorithm, data))
}

fn bag(kind: u8, value: &[u8], local_key_id: Option<&[u8]>) -> Vec<u8> {
    let mut body = cat(&[
        &oid(&format!("1.2.840.113549.1.12.10.1.{kind}")),
        &tlv(der::CONTEXT_0, value),
    ]);
    if let Some(id) = local_key_id {
        let attribute = tlv(
            der::SEQUENCE,
            &cat(&[
                &oid("1.2.840.113549.1.9.21"),
                &tlv(der::SET, &tlv(der::OCTET_STRING, id)),
            ]),
        );
        body.extend(tlv(der::SET, &attribute));
    }
    tlv(der::SEQUENCE, &body)
}

/// Writes a PKCS#12 file holding `key` (PKCS#8 DER) and `certificates` (DER, the key's own first), all
/// protected by `password`.
///
/// # Errors
/// Only when the system has no randomness.
pub fn write_pkcs12(
    key: &[u8],
    certificates: &[&[u8]],
    password: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    write_pkcs12_keys(&[key], certificates, password)
}

/// [`write_pkcs12`] with any number of keys (for tests: keybound refuses a file with several).
///
/// # Errors
/// As [`write_pkcs12`].
#[doc(hidden)]
pub fn write_pkcs12_keys(
    keys: &[&[u8]],
    certificates: &[&[u8]],
    password: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    let local_id = [1u8];
    let mut cert_bags = Vec::new();
    for (i, cert) in certificates.iter().enumerate() {
        let cert_bag = tlv(
            der::SEQUENCE,
            &cat(&[
                &oid("1.2.840.113549.1.9.22.1"),
                &tlv(der::CONTEXT_0, &tlv(der::OCTET_STRING, cert)),
            ]),
        );
        cert_bags.extend(bag(3, &cert_bag, (i == 0).then_some(&local_id[..])));
    }
    let (cert_alg, cert_cipher) = pbes2_encrypt(&tlv(der::SEQUENCE, &cert_bags), password)?;
    let encrypted_data = tlv(
        der::SEQUENCE,
        &cat(&[
            &integer(0),
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &oid("1.2.840.113549.1.7.1"),
                    &cert_alg,
                    &tlv(der::CONTEXT_0_PRIMITIVE, &cert_cipher),
                ]),
            ),
        ]),
    );
    let mut key_bags = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (alg, ciphertext) = pbes2_encrypt(key, password)?;
        let epki = tlv(
            der::SEQUENCE,
            &cat(&[&alg, &tlv(der::OCTET_STRING, &ciphertext)]),
        );
        key_bags.extend(bag(2, &epki, (i == 0).then_some(&local_id[..])));
    }
    let safes = tlv(
        der::SEQUENCE,
        &cat(&[
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &oid("1.2.840.113549.1.7.6"),
                    &tlv(der::CONTEXT_0, &encrypted_data),
                ]),
            ),
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &oid("1.2.840.113549.1.7.1"),
                    &tlv(
                        der::CONTEXT_0,
                        &tlv(der::OCTET_STRING, &tlv(der::SEQUENCE, &key_bags)),
                    ),
                ]),
            ),
        ]),
    );
    let salt: [u8; 8] = random()?;
    let mac_key = pbe::pkcs12_kdf(
        Hash::Sha256,
        &Password::new(password).bmp,
        &salt,
        3,
        ITERATIONS,
        32,
    );
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key), &safes);
    let mac_data = tlv(
        der::SEQUENCE,
        &cat(&[
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &tlv(
                        der::SEQUENCE,
                        &cat(&[&oid("2.16.840.1.101.3.4.2.1"), &[0x05, 0x00]]),
                    ),
                    &tlv(der::OCTET_STRING, mac.as_ref()),
                ]),
            ),
            &tlv(der::OCTET_STRING, &salt),
            &integer(ITERATIONS),
        ]),
    );
    Ok(tlv(
        der::SEQUENCE,
        &cat(&[
            &integer(3),
            &tlv(
                der::SEQUENCE,
                &cat(&[
                    &oid("1.2.840.113549.1.7.1"),
                    &tlv(der::CONTEXT_0, &tlv(der::OCTET_STRING, &safes)),
                ]),
            ),
            &mac_data,
        ]),
    ))
}

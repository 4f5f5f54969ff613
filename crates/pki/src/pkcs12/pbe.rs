//! The password-based encryption and MAC schemes of PKCS#12 files, as `openssl pkcs12 -export` writes them:
//!
//! - modern (OpenSSL 3 default): PBES2 (RFC 8018) with PBKDF2-HMAC-SHA256 and AES-256-CBC for both bags,
//!   integrity by HMAC-SHA256 keyed through the PKCS#12 KDF;
//! - legacy (`-legacy`, and most files made before 2021): `pbeWithSHAAnd3-KeyTripleDES-CBC` for the key,
//!   `pbeWithSHAAnd40BitRC2-CBC` for the certificates, HMAC-SHA1, all keyed by the PKCS#12 KDF (RFC 7292
//!   appendix B) with SHA-1.
//!
//! AES, PBKDF2, HMAC and the digests come from aws-lc-rs; 3DES and RC2 (which aws-lc-rs does not offer) from
//! the RustCrypto `des` and `rc2` crates. Derived keys and decrypted plaintexts are `Zeroizing`.

use std::num::NonZeroU32;

use aws_lc_rs::{cipher, digest, hmac, pbkdf2};
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, KeyInit};
use zeroize::Zeroizing;

use super::Pkcs12Error;
use super::der::{self, Reader};

/// Most PBKDF2 / PKCS#12 KDF iterations accepted (OpenSSL writes 2048; a hostile file must not spin the CPU).
const MAX_ITERATIONS: u32 = 10_000_000;

/// The file's password: its UTF-8 bytes (PBES2), and as a NUL-terminated big-endian BMPString (PKCS#12 KDF).
pub(crate) struct Password {
    utf8: Zeroizing<Vec<u8>>,
    pub(crate) bmp: Zeroizing<Vec<u8>>,
}

impl Password {
    pub(crate) fn new(password: &str) -> Self {
        let mut bmp = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
        for unit in password.encode_utf16() {
            bmp.extend_from_slice(&unit.to_be_bytes());
        }
        bmp.extend_from_slice(&[0, 0]);
        Self {
            utf8: Zeroizing::new(password.as_bytes().to_vec()),
            bmp,
        }
    }
}

/// The digests the PKCS#12 KDF and MAC run on.
#[derive(Clone, Copy)]
pub(crate) enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &[u8]) -> Option<Self> {
        [
            ("1.3.14.3.2.26", Self::Sha1),
            ("2.16.840.1.101.3.4.2.1", Self::Sha256),
            ("2.16.840.1.101.3.4.2.2", Self::Sha384),
            ("2.16.840.1.101.3.4.2.3", Self::Sha512),
        ]
        .into_iter()
        .find(|(o, _)| der::oid(o) == oid)
        .map(|(_, h)| h)
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Block size `v` of the PKCS#12 KDF, in bytes.
    fn block_len(self) -> usize {
        match self {
            Self::Sha1 | Self::Sha256 => 64,
            Self::Sha384 | Self::Sha512 => 128,
        }
    }
}

/// The PKCS#12 key derivation function (RFC 7292 appendix B.2): `n` bytes for purpose `id` (1 key, 2 IV,
/// 3 MAC key).
pub(crate) fn pkcs12_kdf(
    hash: Hash,
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u32,
    n: usize,
) -> Zeroizing<Vec<u8>> {
    let v = hash.block_len();
    let alg = hash.digest();
    let u = alg.output_len();
    let d = vec![id; v];
    let fill = |src: &[u8]| -> Zeroizing<Vec<u8>> {
        if src.is_empty() {
            return Zeroizing::new(Vec::new());
        }
        let len = v * src.len().div_ceil(v);
        Zeroizing::new(src.iter().copied().cycle().take(len).collect())
    };
    let mut i = fill(salt);
    i.extend_from_slice(&fill(password));
    let mut out = Zeroizing::new(Vec::with_capacity(n + u));
    while out.len() < n {
        let mut ctx = digest::Context::new(alg);
        ctx.update(&d);
        ctx.update(&i);
        let mut a = Zeroizing::new(ctx.finish().as_ref().to_vec());
        for _ in 1..iterations {
            a = Zeroizing::new(digest::digest(alg, &a).as_ref().to_vec());
        }
        out.extend_from_slice(&a);
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), with B = A repeated to v bytes.
        let b: Zeroizing<Vec<u8>> = Zeroizing::new(a.iter().copied().cycle().take(v).collect());
        for block in i.chunks_mut(v) {
            let mut carry = 1u16;
            for k in (0..v).rev() {
                let sum = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

/// Checks the file's MAC (`MacData`) over the authenticated safe's contents.
pub(crate) fn verify_mac(
    mac_data: &[u8],
    auth_safe: &[u8],
    password: &Password,
) -> Result<(), Pkcs12Error> {
    let mut r = Reader::new(mac_data, "MAC data");
    let mut digest_info = r.nested(der::SEQUENCE, "MAC digest")?;
    let mut alg = digest_info.nested(der::SEQUENCE, "MAC algorithm")?;
    let oid = alg.read(der::OID)?;
    let expected = digest_info.read(der::OCTET_STRING)?;
    let salt = r.read(der::OCTET_STRING)?;
    let iterations = if r.is_empty() {
        1
    } else {
        r.read_small_uint()?
    };
    check_iterations(iterations)?;
    if oid == der::oid("1.2.840.113549.1.5.14").as_slice() {
        return Err(Pkcs12Error::Unsupported(
            "PBMAC1 integrity (OpenSSL 3.4 `-pbmac1_pbkdf2`); re-export the file without it".into(),
        ));
    }
    let hash = Hash::from_oid(oid).ok_or_else(|| {
        Pkcs12Error::Unsupported(
            "MAC digest (SHA-1, SHA-256, SHA-384 and SHA-512 are supported)".into(),
        )
    })?;
    let check = |pw: &[u8]| {
        let key = pkcs12_kdf(hash, pw, salt, 3, iterations, hash.digest().output_len());
        hmac::verify(&hmac::Key::new(hash.hmac(), &key), auth_safe, expected).is_ok()
    };
    // An empty password is NUL-terminated by OpenSSL, empty by some other writers: both are tried.
    if check(&password.bmp) || (password.utf8.is_empty() && check(&[])) {
        Ok(())
    } else {
        Err(Pkcs12Error::WrongPassword)
    }
}

fn check_iterations(iterations: u32) -> Result<(), Pkcs12Error> {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(Pkcs12Error::Corrupt(format!(
            "iteration count {iterations} (1 to {MAX_ITERATIONS} accepted)"
        )));
    }
    Ok(())
}

/// Decrypts `ciphertext` encrypted with the algorithm `algorithm` (an `AlgorithmIdentifier`'s contents).
pub(crate) fn decrypt(
    algorithm: &[u8],
    ciphertext: &[u8],
    password: &Password,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut r = Reader::new(algorithm, "encryption algorithm");
    let oid = r.read(der::OID)?;
    let is = |dotted: &str| der::oid(dotted) == oid;
    if is("1.2.840.113549.1.5.13") {
        let params = r.nested(der::SEQUENCE, "PBES2 parameters")?;
        return pbes2(params, ciphertext, password);
    }
    let legacy = if is("1.2.840.113549.1.12.1.3") {
        Legacy::TripleDes3
    } else if is("1.2.840.113549.1.12.1.4") {
        Legacy::TripleDes2
    } else if is("1.2.840.113549.1.12.1.5") {
        Legacy::Rc2(128)
    } else if is("1.2.840.113549.1.12.1.6") {
        Legacy::Rc2(40)
    } else {
        return Err(Pkcs12Error::Unsupported(
            "encryption algorithm (PBES2 with AES-CBC, and the PKCS#12 3DES and RC2 schemes are supported)"
                .into(),
        ));
    };
    let mut params = r.nested(der::SEQUENCE, "PKCS#12 PBE parameters")?;
    let salt = params.read(der::OCTET_STRING)?;
    let iterations = params.read_small_uint()?;
    check_iterations(iterations)?;
    let key_len = match legacy {
        Legacy::TripleDes3 => 24,
        Legacy::TripleDes2 => 16,
        Legacy::Rc2(bits) => bits / 8,
    };
    let key = pkcs12_kdf(Hash::Sha1, &password.bmp, salt, 1, iterations, key_len);
    let iv = pkcs12_kdf(Hash::Sha1, &password.bmp, salt, 2, iterations, 8);
    let mut data = Zeroizing::new(ciphertext.to_vec());
    let bad_key = || Pkcs12Error::Corrupt("PBE key length".into());
    match legacy {
        Legacy::TripleDes3 => cbc8(
            &des::TdesEde3::new_from_slice(&key).map_err(|_| bad_key())?,
            &iv,
            &mut data,
        )?,
        Legacy::TripleDes2 => cbc8(
            &des::TdesEde2::new_from_slice(&key).map_err(|_| bad_key())?,
            &iv,
            &mut data,
        )?,
        Legacy::Rc2(bits) => cbc8(&rc2::Rc2::new_with_eff_key_len(&key, bits), &iv, &mut data)?,
    }
    unpad(data, 8)
}

#[derive(Clone, Copy)]
enum Legacy {
    TripleDes3,
    TripleDes2,
    Rc2(usize),
}

/// CBC decryption with a 64-bit block cipher, in place.
fn cbc8<C: BlockDecrypt<BlockSize = des::cipher::consts::U8>>(
    cipher: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), Pkcs12Error> {
    if data.is_empty() || data.len() % 8 != 0 {
        return Err(Pkcs12Error::Corrupt("encrypted data length".into()));
    }
    let mut previous = [0u8; 8];
    previous.copy_from_slice(iv);
    for block in data.chunks_mut(8) {
        let mut saved = [0u8; 8];
        saved.copy_from_slice(block);
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
        for (b, p) in block.iter_mut().zip(previous) {
            *b ^= p;
        }
        previous = saved;
    }
    Ok(())
}

/// Strips PKCS#7 padding; a bad pad means a wrong password or damaged data.
fn unpad(mut data: Zeroizing<Vec<u8>>, block: usize) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let pad = usize::from(*data.last().unwrap_or(&0));
    if pad == 0
        || pad > block
        || pad > data.len()
        || data[data.len() - pad..]
            .iter()
            .any(|b| usize::from(*b) != pad)
    {
        return Err(Pkcs12Error::Corrupt(
            "decryption failed (bad padding: damaged data)".into(),
        ));
    }
    let len = data.len() - pad;
    data.truncate(len);
    Ok(data)
}

/// PBES2 (RFC 8018 §6.2) with PBKDF2 and AES-CBC.
fn pbes2(
    mut params: Reader<'_>,
    ciphertext: &[u8],
    password: &Password,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut kdf = params.nested(der::SEQUENCE, "PBES2 key derivation")?;
    if kdf.read(der::OID)? != der::oid("1.2.840.113549.1.5.12").as_slice() {
        return Err(Pkcs12Error::Unsupported(
            "PBES2 key derivation (only PBKDF2 is supported)".into(),
        ));
    }
    let mut kdf = kdf.nested(der::SEQUENCE, "PBKDF2 parameters")?;
    let salt = kdf.read(der::OCTET_STRING)?;
    let iterations = kdf.read_small_uint()?;
    check_iterations(iterations)?;
    let mut key_len = None;
    if kdf.peek_tag() == Some(der::INTEGER) {
        key_len = Some(kdf.read_small_uint()? as usize);
    }
    let prf = if kdf.is_empty() {
        pbkdf2::PBKDF2_HMAC_SHA1
    } else {
        let mut prf = kdf.nested(der::SEQUENCE, "PBKDF2 PRF")?;
        let oid = prf.read(der::OID)?;
        [
            ("1.2.840.113549.2.7", pbkdf2::PBKDF2_HMAC_SHA1),
            ("1.2.840.113549.2.9", pbkdf2::PBKDF2_HMAC_SHA256),
            ("1.2.840.113549.2.10", pbkdf2::PBKDF2_HMAC_SHA384),
            ("1.2.840.113549.2.11", pbkdf2::PBKDF2_HMAC_SHA512),
        ]
        .into_iter()
        .find(|(o, _)| der::oid(o) == oid)
        .map(|(_, p)| p)
        .ok_or_else(|| {
            Pkcs12Error::Unsupported("PBKDF2 PRF (HMAC-SHA1/256/384/512 are supported)".into())
        })?
    };
    let mut scheme = params.nested(der::SEQUENCE, "PBES2 encryption scheme")?;
    let oid = scheme.read(der::OID)?;
    let (algorithm, len) = [
        ("2.16.840.1.101.3.4.1.2", &cipher::AES_128, 16),
        ("2.16.840.1.101.3.4.1.22", &cipher::AES_192, 24),
        ("2.16.840.1.101.3.4.1.42", &cipher::AES_256, 32),
    ]
    .into_iter()
    .find(|(o, _, _)| der::oid(o) == oid)
    .map(|(_, a, l)| (a, l))
    .ok_or_else(|| {
        Pkcs12Error::Unsupported("PBES2 cipher (AES-128/192/256-CBC are supported)".into())
    })?;
    if key_len.is_some_and(|l| l != len) {
        return Err(Pkcs12Error::Corrupt(
            "PBKDF2 key length does not fit the cipher".into(),
        ));
    }
    let iv: [u8; 16] = scheme
        .read(der::OCTET_STRING)?
        .try_into()
        .map_err(|_| Pkcs12Error::Corrupt("AES-CBC IV length".into()))?;
    let mut key = Zeroizing::new(vec![0u8; len]);
    let rounds = NonZeroU32::new(iterations)
        .ok_or_else(|| Pkcs12Error::Corrupt("iteration count".into()))?;
    pbkdf2::derive(prf, rounds, salt, &password.utf8, &mut key);
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(Pkcs12Error::Corrupt("encrypted data length".into()));
    }
    let unbound = cipher::UnboundCipherKey::new(algorithm, &key)
        .map_err(|_| Pkcs12Error::Corrupt("AES key".into()))?;
    let decrypting = cipher::PaddedBlockDecryptingKey::cbc_pkcs7(unbound)
        .map_err(|_| Pkcs12Error::Corrupt("AES key".into()))?;
    let mut data = Zeroizing::new(ciphertext.to_vec());
    let len = decrypting
        .decrypt(&mut data, cipher::DecryptionContext::Iv128(iv.into()))
        .map_err(|_| Pkcs12Error::Corrupt("decryption failed (bad padding: damaged data)".into()))?
        .len();
    data.truncate(len);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Vectors of the PKCS#12 KDF as published with BouncyCastle's PKCS12 test suite (also used by
    /// other implementations): SHA-1, password "smeg", salt 0a58cf64530d823f, 1 iteration.
    #[test]
    fn pkcs12_kdf_matches_known_vectors() {
        let pw = Password::new("smeg");
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        assert_eq!(
            hex(&pkcs12_kdf(Hash::Sha1, &pw.bmp, &salt, 1, 1, 24)),
            "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        );
        assert_eq!(
            hex(&pkcs12_kdf(Hash::Sha1, &pw.bmp, &salt, 2, 1, 8)),
            "79993dfe048d3b76"
        );
    }
}

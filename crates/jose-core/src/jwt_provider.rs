//! The `jsonwebtoken` crypto provider keybound installs: jsonwebtoken's own aws-lc-rs provider for every
//! algorithm and key, except that an RSA verification key is parsed once per thread and reused.
//!
//! jsonwebtoken's aws-lc provider builds the RSA public key from its modulus and exponent for every
//! verification (`RsaPublicKeyComponents::verify`): parsing, range checks and a Montgomery context, about
//! 2.5 µs of a 22 µs RS256 verification, work `openssl speed` does once. Here the verifier for RS256/384/512
//! and PS256/384/512 takes an aws-lc `ParsedPublicKey` from a small per-thread cache keyed by the algorithm,
//! the modulus and the exponent (all compared in full), with the same aws-lc parameters jsonwebtoken uses
//! (`RSA_PKCS1_2048_8192_*`, `RSA_PSS_2048_8192_*`). Everything else, and any key the cache cannot parse,
//! goes to jsonwebtoken's provider unchanged, so verdicts are the same; jsonwebtoken still decodes the token
//! and validates the claims.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use aws_lc_rs::signature::{ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, aws_lc};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

use crate::JwsAlgorithm;

/// How many RSA keys each thread keeps parsed (a service verifies with a handful of keys; a key set that
/// rotates through more simply parses again).
const CACHE_SIZE: usize = 16;

/// The provider: jsonwebtoken's aws-lc signer factory and key utilities, this module's verifier factory.
pub(crate) static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: aws_lc::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: new_verifier,
    key_utils: aws_lc::DEFAULT_PROVIDER.key_utils.clone(),
});

struct Entry {
    alg: Algorithm,
    n: Vec<u8>,
    e: Vec<u8>,
    key: Arc<ParsedPublicKey>,
}

thread_local! {
    /// Most recently used first.
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

fn new_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let delegate = || (aws_lc::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    // RS256/384/512 and PS256/384/512 with an RSA key given as components; the parameters are the ones
    // jsonwebtoken's aws-lc provider uses (and jose-core's own `jws::verify_signature`).
    let (AlgorithmFamily::Rsa, AlgorithmFamily::Rsa, Some(jws_alg)) = (
        alg.family(),
        key.family(),
        JwsAlgorithm::from_jsonwebtoken(*alg),
    ) else {
        return delegate();
    };
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return delegate();
    };
    let params = jws_alg.aws_lc_verification();
    match parsed(*alg, params, n, e) {
        Some(key) => Ok(Box::new(CachedRsaVerifier { alg: *alg, key })),
        None => delegate(),
    }
}

/// The parsed key for (`alg`, `n`, `e`), from this thread's cache or parsed now; `None` when aws-lc
/// refuses the key (jsonwebtoken's provider then gives its own verdict).
fn parsed(
    alg: Algorithm,
    params: &'static dyn VerificationAlgorithm,
    n: &[u8],
    e: &[u8],
) -> Option<Arc<ParsedPublicKey>> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(i) = cache
            .iter()
            .position(|entry| entry.alg == alg && entry.n == n && entry.e == e)
        {
            let entry = cache.remove(i);
            let key = Arc::clone(&entry.key);
            cache.insert(0, entry);
            return Some(key);
        }
        let der = key_provider::PublicKey::rsa(n, e)
            .ok()?
            .rsa_public_key_der()?;
        let key = Arc::new(ParsedPublicKey::new(params, der).ok()?);
        cache.truncate(CACHE_SIZE - 1);
        cache.insert(
            0,
            Entry {
                alg,
                n: n.to_vec(),
                e: e.to_vec(),
                key: Arc::clone(&key),
            },
        );
        Some(key)
    })
}

struct CachedRsaVerifier {
    alg: Algorithm,
    key: Arc<ParsedPublicKey>,
}

impl Verifier<Vec<u8>> for CachedRsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        self.key
            .verify_sig(msg, signature)
            .map_err(SignatureError::from_source)
    }
}

impl JwtVerifier for CachedRsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use key_provider::{KeySpec, SignatureScheme};

    fn rsa_key(dir: &std::path::Path, name: &str) -> std::sync::Arc<dyn key_provider::KeyBackend> {
        let path = dir.join(name);
        key_provider::file::generate(&path, KeySpec::Rsa(2048)).unwrap();
        key_provider::open(
            &format!("file:{}", path.display()).parse().unwrap(),
            &key_provider::OpenOptions::new(),
        )
        .unwrap()
    }

    fn components(key: &dyn key_provider::KeyBackend) -> (Vec<u8>, Vec<u8>) {
        match key.public_key() {
            key_provider::PublicKey::Rsa { n, e } => (n.clone(), e.clone()),
            other => panic!("not RSA: {other:?}"),
        }
    }

    /// Verdicts through the cached verifier, for one message and signature, against jsonwebtoken's own
    /// provider: they must agree, and be right.
    fn both(alg: Algorithm, n: &[u8], e: &[u8], msg: &[u8], sig: &[u8]) -> (bool, bool) {
        let key = DecodingKey::from_rsa_raw_components(n, e);
        let ours = new_verifier(&alg, &key)
            .unwrap()
            .verify(msg, &sig.to_vec())
            .is_ok();
        let theirs = (aws_lc::DEFAULT_PROVIDER.verifier_factory)(&alg, &key)
            .unwrap()
            .verify(msg, &sig.to_vec())
            .is_ok();
        (ours, theirs)
    }

    #[test]
    fn same_verdicts_as_jsonwebtokens_provider_and_no_key_or_algorithm_confusion() {
        let dir = tempfile::tempdir().unwrap();
        let a = rsa_key(dir.path(), "a.pem");
        let b = rsa_key(dir.path(), "b.pem");
        let (na, ea) = components(a.as_ref());
        let (nb, eb) = components(b.as_ref());
        let msg = b"header.payload";
        let rs = a.sign(SignatureScheme::RsaPkcs1Sha256, msg).unwrap();
        let ps = a.sign(SignatureScheme::RsaPssSha256, msg).unwrap();
        // Twice each: the second call is served from the cache.
        for _ in 0..2 {
            assert_eq!(both(Algorithm::RS256, &na, &ea, msg, &rs), (true, true));
            assert_eq!(both(Algorithm::PS256, &na, &ea, msg, &ps), (true, true));
            // The other key (cached too) does not verify A's signatures.
            assert_eq!(both(Algorithm::RS256, &nb, &eb, msg, &rs), (false, false));
            // The same key under another algorithm or hash: refused.
            assert_eq!(both(Algorithm::PS256, &na, &ea, msg, &rs), (false, false));
            assert_eq!(both(Algorithm::RS384, &na, &ea, msg, &rs), (false, false));
            assert_eq!(both(Algorithm::RS256, &na, &ea, msg, &ps), (false, false));
            // Another exponent with the same modulus is another key.
            assert_eq!(both(Algorithm::RS256, &na, &[3], msg, &rs), (false, false));
            // Another message, a changed signature.
            assert_eq!(
                both(Algorithm::RS256, &na, &ea, b"header.other", &rs),
                (false, false)
            );
            let mut bad = rs.to_vec();
            bad[10] ^= 1;
            assert_eq!(both(Algorithm::RS256, &na, &ea, msg, &bad), (false, false));
        }
    }

    #[test]
    fn keys_aws_lc_refuses_get_jsonwebtokens_verdict_and_the_cache_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let a = rsa_key(dir.path(), "a.pem");
        let (n, e) = components(a.as_ref());
        let msg = b"m";
        let sig = a.sign(SignatureScheme::RsaPkcs1Sha256, msg).unwrap();
        // A 1024-bit modulus is below aws-lc's 2048-bit floor: both refuse.
        assert_eq!(
            both(Algorithm::RS256, &n[..128], &e, msg, &sig),
            (false, false)
        );
        // An empty modulus: no parse, jsonwebtoken's provider answers (no).
        assert_eq!(both(Algorithm::RS256, &[], &e, msg, &sig), (false, false));
        for i in 0..(CACHE_SIZE as u8 + 8) {
            let mut other = n.clone();
            other[200] ^= i.wrapping_add(1);
            let _ = both(Algorithm::RS256, &other, &e, msg, &sig);
        }
        assert!(CACHE.with(|c| c.borrow().len()) <= CACHE_SIZE);
        assert_eq!(both(Algorithm::RS256, &n, &e, msg, &sig), (true, true));
    }
}

//! One conformance suite, run against every compiled backend (file, env, pkcs11): for every signature
//! scheme the key type allows, the signature verifies with `jsonwebtoken` and with `openssl dgst`; RFC 7515
//! appendix A.2 is reproduced byte for byte; a CEK encrypted with RSA-OAEP (aws-lc-rs) decrypts; schemes
//! that do not fit the key are refused; the async variants work inside and outside a tokio runtime.
//!
//! - **file**: keys written to a temporary directory and opened by `file:` reference.
//! - **env**: keys in environment variables. Setting variables in a running multi-threaded test process
//!   is unsound, so the env suite runs in a child process of this test binary that starts with them set
//!   (`env_backend_suite_in_a_child_process`); in the parent its tests return at once.
//! - **pkcs11**: keys generated in (or, for RFC 7515 A.2, imported into) a SoftHSM token of this process's
//!   own. Skipped with a loud message unless `cargo xtask softhsm-test` set up the token.
//! - **vault**: keys generated in (or, for RFC 7515 A.2, imported into) a real OpenBao Transit (`bao server
//!   -dev`), one server per test (held by the test's thread, killed when the test ends). Skipped with a loud
//!   message when `bao` is not installed, unless `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`.

// With no backend compiled in there is nothing to run the suite against.
#![cfg(any(
    feature = "file",
    feature = "env",
    feature = "pkcs11",
    feature = "vault"
))]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
#[cfg(any(feature = "file", feature = "env", feature = "pkcs11"))]
use std::sync::OnceLock;
#[cfg(any(feature = "file", feature = "env"))]
use std::sync::{Mutex, PoisonError};

use key_provider::{
    DecryptionScheme, EcCurve, KeyBackend, KeyError, KeySpec, PublicKey, SignatureScheme,
};

/// A backend under test: where its keys come from, and what it is expected to support.
trait Backend {
    /// The key of `spec` (one per spec per process), or `None` when the backend cannot run here.
    fn key(spec: KeySpec) -> Option<Arc<dyn KeyBackend>>;
    /// The RFC 7515 A.2 RSA key.
    fn rfc7515_a2() -> Option<Arc<dyn KeyBackend>>;
    /// Whether RSA-OAEP with SHA-256 must decrypt; when `false` it may instead fail with a clear
    /// [`KeyError::NotSupported`] (SoftHSM 2.6.1 refuses it).
    const OAEP_SHA256_REQUIRED: bool;
    /// Whether RSA-OAEP with SHA-1 decrypts; when `false` it must fail with a clear
    /// [`KeyError::NotSupported`] (Transit decrypts with SHA-256 only).
    const OAEP_SHA1_SUPPORTED: bool = true;
    /// Whether `sign_async` completes on its first poll (local keys); a key service's request runs on the
    /// service runtime, so its future is awaited instead.
    const ASYNC_INLINE: bool = true;
}

/// The specs every backend provides keys for.
const SPECS: [KeySpec; 3] = [
    KeySpec::Rsa(2048),
    KeySpec::Ec(EcCurve::P256),
    KeySpec::Ec(EcCurve::P384),
];

fn spec_name(spec: KeySpec) -> String {
    match spec {
        KeySpec::Rsa(bits) => format!("rsa{bits}"),
        KeySpec::Ec(EcCurve::P256) => "p256".into(),
        KeySpec::Ec(EcCurve::P384) => "p384".into(),
        other => panic!("unexpected {other:?}"),
    }
}

/// A per-backend cache of opened keys (file and env; PKCS#11 creates all of its keys up front).
#[cfg(any(feature = "file", feature = "env"))]
type Cache = OnceLock<Mutex<HashMap<String, Option<Arc<dyn KeyBackend>>>>>;

#[cfg(any(feature = "file", feature = "env"))]
fn cached(
    cache: &Cache,
    name: &str,
    make: impl FnOnce() -> Option<Arc<dyn KeyBackend>>,
) -> Option<Arc<dyn KeyBackend>> {
    let mut keys = cache
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    keys.entry(name.to_owned()).or_insert_with(make).clone()
}

fn key_for(scheme: SignatureScheme) -> KeySpec {
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => KeySpec::Ec(EcCurve::P256),
        SignatureScheme::EcdsaP384Sha384 => KeySpec::Ec(EcCurve::P384),
        _ => KeySpec::Rsa(2048),
    }
}

/// Message of a few hundred bytes, different per scheme.
fn message(scheme: SignatureScheme) -> Vec<u8> {
    format!(
        "eyJhbGciOiJ0ZXN0In0.{}",
        "conformance payload for ".repeat(12) + &scheme.to_string()
    )
    .into_bytes()
}

fn sign_and_verify<B: Backend>(scheme: SignatureScheme) {
    let Some(key) = B::key(key_for(scheme)) else {
        return;
    };
    let message = message(scheme);
    let sig = key.sign(scheme, &message).expect("sign");
    match key.public_key() {
        PublicKey::Rsa { n, .. } => {
            assert_eq!(sig.len(), n.len(), "RSA signature as wide as the modulus")
        }
        PublicKey::Ec { curve, .. } => {
            assert_eq!(sig.len(), 2 * curve.coordinate_len(), "fixed-width r || s")
        }
        other => panic!("unexpected {other:?}"),
    }
    support::assert_jsonwebtoken_verifies(key.public_key(), scheme, &message, &sig);
    support::assert_openssl_verifies(key.public_key(), scheme, &message, &sig);
}

fn every_fitting_scheme_verifies<B: Backend>() {
    for spec in SPECS {
        let Some(key) = B::key(spec) else { return };
        let fitting: Vec<_> = SignatureScheme::ALL
            .into_iter()
            .filter(|s| s.fits(key.public_key()))
            .collect();
        assert!(!fitting.is_empty());
        for scheme in fitting {
            let sig = key.sign(scheme, b"every scheme").expect("sign");
            assert!(
                support::jsonwebtoken_verifies(key.public_key(), scheme, b"every scheme", &sig),
                "{scheme}"
            );
        }
    }
}

fn rfc7515_a2_byte_for_byte<B: Backend>() {
    let Some(key) = B::rfc7515_a2() else { return };
    let fixture = support::rfc7515_a2();
    let PublicKey::Rsa { n, e } = key.public_key() else {
        panic!("RSA expected")
    };
    assert_eq!(
        (n, e),
        (&fixture.n, &fixture.e),
        "the backend holds the RFC 7515 A.2 key"
    );
    let sig = key
        .sign(
            SignatureScheme::RsaPkcs1Sha256,
            fixture.signing_input.as_bytes(),
        )
        .expect("sign");
    assert_eq!(
        support::b64url(&sig),
        support::b64url(&fixture.signature),
        "RS256 signature differs from RFC 7515 appendix A.2"
    );
    support::assert_openssl_verifies(
        key.public_key(),
        SignatureScheme::RsaPkcs1Sha256,
        fixture.signing_input.as_bytes(),
        &sig,
    );
}

fn oaep_decrypts<B: Backend>(scheme: DecryptionScheme) {
    let Some(key) = B::key(KeySpec::Rsa(2048)) else {
        return;
    };
    let cek = support::random_cek();
    let ciphertext = support::oaep_encrypt(key.public_key(), scheme, &cek);
    let result = key.decrypt(scheme, &ciphertext);
    if scheme == DecryptionScheme::RsaOaepSha1 && !B::OAEP_SHA1_SUPPORTED {
        let err = result
            .map(|_| ())
            .expect_err("RSA-OAEP-SHA1 must be refused");
        assert!(matches!(err, KeyError::NotSupported { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("RSA-OAEP-SHA1 is not supported by this backend"),
            "{err}"
        );
        return;
    }
    if scheme == DecryptionScheme::RsaOaepSha256 && !B::OAEP_SHA256_REQUIRED {
        if let Err(err) = &result {
            assert!(matches!(err, KeyError::NotSupported { .. }), "{err}");
            assert!(
                err.to_string().contains("not supported by this token"),
                "{err}"
            );
            return;
        }
    }
    assert_eq!(result.expect("decrypt").as_slice(), cek.as_slice());
    // A damaged ciphertext fails opaquely.
    let mut damaged = ciphertext.clone();
    damaged[10] ^= 0x55;
    let damaged = key.decrypt(scheme, &damaged).map(|_| ());
    assert!(
        matches!(damaged, Err(KeyError::Crypto)),
        "damaged ciphertext: {damaged:?}"
    );
}

fn unfitting_schemes_are_refused<B: Backend>() {
    let (Some(rsa), Some(ec)) = (
        B::key(KeySpec::Rsa(2048)),
        B::key(KeySpec::Ec(EcCurve::P256)),
    ) else {
        return;
    };
    assert!(matches!(
        rsa.sign(SignatureScheme::EcdsaP256Sha256, b"x"),
        Err(KeyError::WrongKeyType { .. })
    ));
    assert!(matches!(
        ec.sign(SignatureScheme::RsaPkcs1Sha256, b"x"),
        Err(KeyError::WrongKeyType { .. })
    ));
    assert!(matches!(
        ec.sign(SignatureScheme::EcdsaP384Sha384, b"x"),
        Err(KeyError::WrongKeyType { .. })
    ));
    assert!(matches!(
        ec.decrypt(DecryptionScheme::RsaOaepSha1, &[0; 64]),
        Err(KeyError::WrongKeyType { .. })
    ));
}

fn async_variants<B: Backend>() {
    let Some(key) = B::key(KeySpec::Ec(EcCurve::P256)) else {
        return;
    };
    let scheme = SignatureScheme::EcdsaP256Sha256;
    for multi_thread in [true, false] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread().build()
        }
        .expect("runtime");
        let sig = runtime
            .block_on(key.sign_async(scheme, b"async"))
            .expect("sign_async");
        assert!(support::jsonwebtoken_verifies(
            key.public_key(),
            scheme,
            b"async",
            &sig
        ));
    }
    if B::ASYNC_INLINE {
        // Without a runtime the call completes inline, on the first poll.
        let mut future = key.sign_async(scheme, b"no runtime");
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(sig) => {
                assert!(support::jsonwebtoken_verifies(
                    key.public_key(),
                    scheme,
                    b"no runtime",
                    &sig.expect("sign")
                ));
            }
            std::task::Poll::Pending => panic!("sign_async without a runtime must not wait"),
        }
    } else {
        // Without a runtime, awaited by a plain thread-parking executor.
        let sig = support::block_on_without_runtime(key.sign_async(scheme, b"no runtime"))
            .expect("sign_async without a runtime");
        assert!(support::jsonwebtoken_verifies(
            key.public_key(),
            scheme,
            b"no runtime",
            &sig
        ));
    }
    if let Some(rsa) = B::key(KeySpec::Rsa(2048)) {
        let oaep = if B::OAEP_SHA1_SUPPORTED {
            DecryptionScheme::RsaOaepSha1
        } else {
            DecryptionScheme::RsaOaepSha256
        };
        let cek = support::random_cek();
        let ct = support::oaep_encrypt(rsa.public_key(), oaep, &cek);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let plain = runtime
            .block_on(rsa.decrypt_async(oaep, &ct))
            .expect("decrypt_async");
        assert_eq!(plain.as_slice(), cek.as_slice());
    }
}

/// Instantiates the suite for one backend.
macro_rules! conformance_suite {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            #[test]
            fn rs256() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPkcs1Sha256);
            }
            #[test]
            fn rs384() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPkcs1Sha384);
            }
            #[test]
            fn rs512() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPkcs1Sha512);
            }
            #[test]
            fn ps256() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPssSha256);
            }
            #[test]
            fn ps384() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPssSha384);
            }
            #[test]
            fn ps512() {
                sign_and_verify::<$backend>(SignatureScheme::RsaPssSha512);
            }
            #[test]
            fn es256() {
                sign_and_verify::<$backend>(SignatureScheme::EcdsaP256Sha256);
            }
            #[test]
            fn es384() {
                sign_and_verify::<$backend>(SignatureScheme::EcdsaP384Sha384);
            }
            #[test]
            fn every_fitting_scheme_verifies() {
                super::every_fitting_scheme_verifies::<$backend>();
            }
            #[test]
            fn rfc7515_a2_rs256_byte_for_byte() {
                rfc7515_a2_byte_for_byte::<$backend>();
            }
            #[test]
            fn rsa_oaep_sha1_decrypts_a_cek_or_is_clearly_not_supported() {
                oaep_decrypts::<$backend>(DecryptionScheme::RsaOaepSha1);
            }
            #[test]
            fn rsa_oaep_sha256_decrypts_or_is_clearly_not_supported() {
                oaep_decrypts::<$backend>(DecryptionScheme::RsaOaepSha256);
            }
            #[test]
            fn unfitting_schemes_are_refused() {
                super::unfitting_schemes_are_refused::<$backend>();
            }
            #[test]
            fn async_variants() {
                super::async_variants::<$backend>();
            }
        }
    };
}

#[cfg(feature = "file")]
mod file_backend {
    use super::*;

    pub struct File;

    static KEYS: Cache = OnceLock::new();

    fn open_file(name: &str, write: impl FnOnce(&std::path::Path)) -> Option<Arc<dyn KeyBackend>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(format!("{name}.key"));
        write(&path);
        // The key is read when opened; the directory may go afterwards.
        let reference = format!("file:{}", path.display())
            .parse()
            .expect("file reference");
        Some(
            key_provider::open(&reference, &key_provider::OpenOptions::new())
                .expect("open file key"),
        )
    }

    impl Backend for File {
        fn key(spec: KeySpec) -> Option<Arc<dyn KeyBackend>> {
            cached(&KEYS, &spec_name(spec), || {
                open_file(&spec_name(spec), |path| {
                    key_provider::file::generate(path, spec).expect("generate");
                })
            })
        }

        fn rfc7515_a2() -> Option<Arc<dyn KeyBackend>> {
            cached(&KEYS, "rfc7515-a2", || {
                open_file("rfc7515-a2", |path| {
                    use std::io::Write as _;
                    use std::os::unix::fs::OpenOptionsExt as _;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                        .expect("create");
                    f.write_all(&support::rfc7515_a2().pkcs1_der())
                        .expect("write");
                })
            })
        }

        const OAEP_SHA256_REQUIRED: bool = true;
    }
}

#[cfg(feature = "file")]
conformance_suite!(file, file_backend::File);

#[cfg(feature = "env")]
mod env_backend {
    use super::*;

    /// Set (to `1`) in the child process that runs the env suite.
    pub const CHILD: &str = "KEYBOUND_CONFORMANCE_ENV_CHILD";
    /// Prefix of the variables holding the keys.
    pub const PREFIX: &str = "KEYBOUND_CONFORMANCE_KEY_";

    pub struct Env;

    static KEYS: Cache = OnceLock::new();

    pub fn variable(name: &str) -> String {
        format!("{PREFIX}{}", name.to_uppercase().replace('-', "_"))
    }

    fn open_env(name: &str) -> Option<Arc<dyn KeyBackend>> {
        // Only the child process has the keys; in the parent these tests return at once.
        std::env::var_os(CHILD)?;
        let reference = format!("env:{}", variable(name))
            .parse()
            .expect("env reference");
        Some(
            key_provider::open(&reference, &key_provider::OpenOptions::new())
                .expect("open env key"),
        )
    }

    impl Backend for Env {
        fn key(spec: KeySpec) -> Option<Arc<dyn KeyBackend>> {
            cached(&KEYS, &spec_name(spec), || open_env(&spec_name(spec)))
        }

        fn rfc7515_a2() -> Option<Arc<dyn KeyBackend>> {
            cached(&KEYS, "rfc7515-a2", || open_env("rfc7515-a2"))
        }

        const OAEP_SHA256_REQUIRED: bool = true;
    }
}

#[cfg(feature = "env")]
conformance_suite!(env, env_backend::Env);

/// Runs the `env::` tests of this binary in a child process whose environment holds the keys.
#[cfg(feature = "env")]
#[test]
fn env_backend_suite_in_a_child_process() {
    use base64::Engine as _;
    if std::env::var_os(env_backend::CHILD).is_some() {
        return;
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["env::", "--test-threads=2"])
        .env(env_backend::CHILD, "1");
    for spec in SPECS {
        let der = key_provider::software::generate_pkcs8(spec).expect("generate");
        cmd.env(
            env_backend::variable(&spec_name(spec)),
            key_provider::software::pkcs8_to_pem(&der).as_str(),
        );
    }
    let a2 = support::rfc7515_a2().pkcs1_der();
    cmd.env(
        env_backend::variable("rfc7515-a2"),
        base64::engine::general_purpose::STANDARD.encode(a2.as_slice()),
    );
    let out = cmd.output().expect("run the env suite");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok") && !stdout.contains(" 0 passed"),
        "env backend suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "pkcs11")]
mod pkcs11_backend {
    use super::*;
    use keybound_test_support::pkcs11::TestToken;

    pub struct Pkcs11;

    /// Every key the suite uses, created in the token before any test uses one: SoftHSM's file object store
    /// fails key creation that races other threads' use of the same token (SoftHSMv2 issue 573), so nothing
    /// is created once the tests run in parallel.
    static KEYS: OnceLock<Option<HashMap<String, Arc<dyn KeyBackend>>>> = OnceLock::new();

    fn keys() -> Option<&'static HashMap<String, Arc<dyn KeyBackend>>> {
        KEYS.get_or_init(|| {
            let token = TestToken::fresh("conformance::pkcs11", "conformance")?;
            let options = key_provider::OpenOptions::new();
            let mut keys = HashMap::new();
            for spec in SPECS {
                let uri = token.uri(&format!("conformance-{}", spec_name(spec)));
                // RSA keys sign and decrypt in this suite; EC keys only sign.
                let usage = match spec {
                    KeySpec::Rsa(_) => key_provider::KeyUsage::SignAndDecrypt,
                    _ => key_provider::KeyUsage::Sign,
                };
                let key = key_provider::pkcs11::generate_with_usage(&uri, spec, usage, &options)
                    .expect("generate");
                keys.insert(spec_name(spec), key);
            }
            let components = support::rfc7515_a2().components();
            let a2 = key_provider::pkcs11::import_private_key(
                &token.uri("rfc7515-a2"),
                &components,
                &options,
            )
            .expect("import");
            keys.insert("rfc7515-a2".to_owned(), a2);
            Some(keys)
        })
        .as_ref()
    }

    impl Backend for Pkcs11 {
        fn key(spec: KeySpec) -> Option<Arc<dyn KeyBackend>> {
            keys().map(|keys| Arc::clone(&keys[&spec_name(spec)]))
        }

        fn rfc7515_a2() -> Option<Arc<dyn KeyBackend>> {
            keys().map(|keys| Arc::clone(&keys["rfc7515-a2"]))
        }

        // SoftHSM 2.6.1 refuses OAEP with SHA-256 (CKR_ARGUMENTS_BAD); the backend must say so clearly.
        const OAEP_SHA256_REQUIRED: bool = false;
    }
}

#[cfg(feature = "pkcs11")]
conformance_suite!(pkcs11, pkcs11_backend::Pkcs11);

#[cfg(feature = "vault")]
mod vault_backend {
    use std::cell::RefCell;

    use super::*;
    use support::vault::Bao;

    pub struct Vault;

    /// This test's server and the keys made in it. Held by the test's own thread (libtest runs each test on
    /// a thread of its own), so the server is killed when the test ends.
    struct Fixture {
        keys: HashMap<String, Arc<dyn KeyBackend>>,
        bao: Bao,
    }

    thread_local! {
        /// `None` inside: `bao` is not installed (the SKIPPED line was printed once for this test).
        static FIXTURE: RefCell<Option<Option<Fixture>>> = const { RefCell::new(None) };
    }

    fn test_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or("conformance::vault")
            .to_owned()
    }

    fn with_key(
        name: &str,
        make: impl FnOnce(&Bao) -> Arc<dyn KeyBackend>,
    ) -> Option<Arc<dyn KeyBackend>> {
        FIXTURE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let fixture = cell.get_or_insert_with(|| {
                Bao::start(&test_name()).map(|bao| Fixture {
                    keys: HashMap::new(),
                    bao,
                })
            });
            let fixture = fixture.as_mut()?;
            if !fixture.keys.contains_key(name) {
                let key = make(&fixture.bao);
                fixture.keys.insert(name.to_owned(), key);
            }
            fixture.keys.get(name).cloned()
        })
    }

    impl Backend for Vault {
        fn key(spec: KeySpec) -> Option<Arc<dyn KeyBackend>> {
            let name = format!("conformance-{}", spec_name(spec));
            with_key(&name, |bao| {
                // Transit records no usage; RSA keys sign and decrypt here.
                let usage = match spec {
                    KeySpec::Rsa(_) => key_provider::KeyUsage::SignAndDecrypt,
                    _ => key_provider::KeyUsage::Sign,
                };
                let reference = bao.reference(&name).parse().expect("vault reference");
                key_provider::vault::generate(
                    &reference,
                    spec,
                    usage,
                    &key_provider::OpenOptions::new(),
                )
                .expect("generate in Transit")
            })
        }

        fn rfc7515_a2() -> Option<Arc<dyn KeyBackend>> {
            with_key("rfc7515-a2", |bao| {
                bao.import_rsa_2048("rfc7515-a2", &support::rfc7515_a2().pkcs1_der());
                let reference: key_provider::KeyRef = bao
                    .reference("rfc7515-a2")
                    .parse()
                    .expect("vault reference");
                key_provider::open(&reference, &key_provider::OpenOptions::new())
                    .expect("open the imported key")
            })
        }

        const OAEP_SHA256_REQUIRED: bool = true;
        // Transit decrypts RSA-OAEP with SHA-256 only: SHA-1 is the clear "not supported".
        const OAEP_SHA1_SUPPORTED: bool = false;
        const ASYNC_INLINE: bool = false;
    }
}

#[cfg(feature = "vault")]
conformance_suite!(vault, vault_backend::Vault);

//! The PKCS#11 side: benchmark keys in the token `cargo xtask bench` created, and the raw `cryptoki` loop
//! they are measured against.
//!
//! The token comes from the variables `cargo xtask bench` (like `cargo xtask softhsm-test`) exports
//! ([`TestToken::shared`]). The keys are generated in it on first use (RSA-2048 and EC P-256, sensitive,
//! never extractable) and found again by label afterwards. The raw reference uses the very same key through
//! the process's one PKCS#11 context: its own session, the key handle looked up once, then nothing but
//! `C_Sign` (`C_Decrypt`) calls; for ES256 the SHA-256 keybound computes before `CKM_ECDSA` is included,
//! since a token without `CKM_ECDSA_SHA256` (SoftHSM) needs it for the same signature.

use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use jose_core::JwsAlgorithm;
use key_provider::{EcCurve, KeyBackend, KeyError, KeySpec, KeyUsage, OpenOptions};
use keybound_test_support::pkcs11::{self as testing, TestToken};

/// Label of the RSA-2048 benchmark key.
pub const RSA_LABEL: &str = "bench-rsa2048";
/// Label of the EC P-256 benchmark key.
pub const EC_LABEL: &str = "bench-p256";

/// The benchmark keys in the run's token.
pub struct BenchToken {
    /// The token.
    pub token: TestToken,
    /// RSA-2048 through keybound's PKCS#11 backend.
    pub rsa: Arc<dyn KeyBackend>,
    /// EC P-256 through keybound's PKCS#11 backend.
    pub ec: Arc<dyn KeyBackend>,
    ctx: Pkcs11,
    slot: Slot,
}

impl BenchToken {
    /// The run's token with its benchmark keys, or `None` (after a SKIPPED line) without the variables.
    #[must_use]
    pub fn from_env() -> Option<Self> {
        let token = TestToken::shared("PKCS#11 benchmarks")?;
        let options = OpenOptions::new();
        // The RSA key signs and unwraps JWE keys (the decryption benchmarks).
        let rsa = open_or_generate(
            &token,
            RSA_LABEL,
            KeySpec::Rsa(2048),
            KeyUsage::SignAndDecrypt,
            &options,
        );
        let ec = open_or_generate(
            &token,
            EC_LABEL,
            KeySpec::Ec(EcCurve::P256),
            KeyUsage::Sign,
            &options,
        );
        let ctx = testing::context(&token.module).expect("PKCS#11 context");
        let slot = testing::slot(&token.uri(RSA_LABEL), &options).expect("token slot");
        Some(Self {
            token,
            rsa,
            ec,
            ctx,
            slot,
        })
    }

    /// A session of its own on the token with the handle of the private key `label`: the raw reference.
    #[must_use]
    pub fn raw(&self, label: &str) -> RawKey {
        // The token is logged in already (keybound's keep-alive session): login state is per application.
        let session = self
            .ctx
            .open_ro_session(self.slot)
            .expect("C_OpenSession for the raw loop");
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .expect("C_FindObjects");
        assert_eq!(found.len(), 1, "exactly one private key labelled {label}");
        RawKey {
            session,
            handle: found[0],
        }
    }
}

fn open_or_generate(
    token: &TestToken,
    label: &str,
    spec: KeySpec,
    usage: KeyUsage,
    options: &OpenOptions,
) -> Arc<dyn KeyBackend> {
    match key_provider::open(&token.key_ref(label).parse().expect("key ref"), options) {
        Ok(key) => key,
        Err(KeyError::NotFound { .. }) => {
            key_provider::pkcs11::generate_with_usage(&token.uri(label), spec, usage, options)
                .unwrap_or_else(|e| panic!("generate {label} in the token: {e}"))
        }
        Err(e) => panic!("open {label}: {e}"),
    }
}

/// One session and one key handle, used with nothing in between: the raw `cryptoki` loop.
pub struct RawKey {
    session: Session,
    handle: ObjectHandle,
}

impl RawKey {
    /// One JWS signature of `signing_input` as the token makes it (ES256: SHA-256 here, then `CKM_ECDSA`).
    #[must_use]
    pub fn sign(&self, alg: JwsAlgorithm, signing_input: &[u8]) -> Vec<u8> {
        let pss = |hash_alg, mgf, len: u64| PkcsPssParams {
            hash_alg,
            mgf,
            s_len: len.into(),
        };
        let result = match alg {
            JwsAlgorithm::RS256 => {
                self.session
                    .sign(&Mechanism::Sha256RsaPkcs, self.handle, signing_input)
            }
            JwsAlgorithm::PS256 => self.session.sign(
                &Mechanism::Sha256RsaPkcsPss(pss(
                    MechanismType::SHA256,
                    PkcsMgfType::MGF1_SHA256,
                    32,
                )),
                self.handle,
                signing_input,
            ),
            JwsAlgorithm::ES256 => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signing_input);
                self.session
                    .sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
            }
            other => panic!("no raw loop for {other}"),
        };
        result.expect("C_Sign")
    }

    /// One RSA-OAEP (SHA-1) decryption of `encrypted_key`, as for a JWE with `alg` `RSA-OAEP`.
    #[must_use]
    pub fn decrypt_oaep_sha1(&self, encrypted_key: &[u8]) -> Vec<u8> {
        let params = PkcsOaepParams::new(
            MechanismType::SHA1,
            PkcsMgfType::MGF1_SHA1,
            PkcsOaepSource::empty(),
        );
        self.session
            .decrypt(&Mechanism::RsaPkcsOaep(params), self.handle, encrypted_key)
            .expect("C_Decrypt")
    }
}

/// Runs `op` `iters` times spread over `threads` threads, each given its own state from `setup` (made, and
/// dropped, outside the timed span), and returns the wall-clock time from the moment all threads are ready
/// until the last one finishes.
pub fn run_threads<S: Send>(
    threads: usize,
    iters: u64,
    setup: impl Fn() -> S,
    op: impl Fn(&S) + Sync,
) -> std::time::Duration {
    let states: Vec<S> = (0..threads).map(|_| setup()).collect();
    let threads_u64 = threads as u64;
    let barrier = std::sync::Barrier::new(threads + 1);
    let (elapsed, _states) = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .into_iter()
            .enumerate()
            .map(|(i, state)| {
                let (barrier, op) = (&barrier, &op);
                let n = iters / threads_u64 + u64::from((i as u64) < iters % threads_u64);
                scope.spawn(move || {
                    barrier.wait();
                    for _ in 0..n {
                        op(&state);
                    }
                    state
                })
            })
            .collect();
        barrier.wait();
        let started = std::time::Instant::now();
        let states: Vec<S> = handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread"))
            .collect();
        (started.elapsed(), states)
    });
    elapsed
}

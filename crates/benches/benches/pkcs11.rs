//! PKCS#11 paths (SoftHSM): JWS signing and JWE decryption through keybound's PKCS#11 backend, each next to
//! a raw `cryptoki` loop on one session with the same key in the same token (the limit of that backend),
//! on one thread (the benchmark clock) and on 1, 2 and 4 threads (wall-clock throughput).
//!
//! Needs the variables `cargo xtask bench` exports (see `keybound_benches::pkcs11`); without them it prints a
//! SKIPPED line and measures nothing. Group / function ids are read back by `xtask/src/bench.rs`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::OnceLock;

use criterion::{Criterion, criterion_group, criterion_main};
use jose_core::jwe::{self, DecryptOptions, EncryptOptions};
use jose_core::{ContentEncryption, JwsAlgorithm, KeyManagementAlgorithm};
use key_provider::KeyBackend;
use keybound_benches::fixtures::{self, Claims};
use keybound_benches::pkcs11::{BenchToken, EC_LABEL, RSA_LABEL, run_threads};
use keybound_benches::{Clock, configure};

/// Thread counts of the throughput group.
const THREADS: [usize; 3] = [1, 2, 4];

fn token() -> Option<&'static BenchToken> {
    static TOKEN: OnceLock<Option<BenchToken>> = OnceLock::new();
    TOKEN.get_or_init(BenchToken::from_env).as_ref()
}

const ALGS: [(JwsAlgorithm, &str); 3] = [
    (JwsAlgorithm::RS256, RSA_LABEL),
    (JwsAlgorithm::PS256, RSA_LABEL),
    (JwsAlgorithm::ES256, EC_LABEL),
];

fn key_for<'a>(t: &'a BenchToken, label: &str) -> &'a dyn KeyBackend {
    if label == RSA_LABEL {
        t.rsa.as_ref()
    } else {
        t.ec.as_ref()
    }
}

/// The signing input keybound signs for `alg` with the benchmark claims (for the raw loop).
fn signing_input(key: &dyn KeyBackend, alg: JwsAlgorithm, claims: &Claims) -> Vec<u8> {
    let token = jose_core::jwt::sign(key, &fixtures::header(alg), claims).unwrap();
    token.rsplit_once('.').unwrap().0.as_bytes().to_vec()
}

/// One thread, the benchmark clock: ours (a whole JWT through the backend) and the raw `C_Sign` loop.
fn sign(c: &mut Criterion<Clock>) {
    let Some(t) = token() else { return };
    let claims = Claims::now();
    let mut group = c.benchmark_group("pkcs11-sign");
    configure(&mut group);
    for (alg, label) in ALGS {
        let name = alg.as_str().to_ascii_lowercase();
        let key = key_for(t, label);
        let header = fixtures::header(alg);
        group.bench_function(name.clone(), |b| {
            b.iter(|| jose_core::jwt::sign(key, &header, black_box(&claims)).unwrap());
        });
        let input = signing_input(key, alg, &claims);
        let raw = t.raw(label);
        group.bench_function(format!("{name}-raw"), |b| {
            b.iter(|| raw.sign(alg, black_box(&input)));
        });
    }
    group.finish();
}

/// 1, 2 and 4 threads on one key, wall-clock throughput: ours through the backend's session pool, and the
/// raw loop with one session per thread.
fn threads(c: &mut Criterion<Clock>) {
    let Some(t) = token() else { return };
    let claims = Claims::now();
    let mut group = c.benchmark_group("pkcs11-threads");
    configure(&mut group);
    for (alg, label) in ALGS {
        let name = alg.as_str().to_ascii_lowercase();
        let key = key_for(t, label);
        let header = fixtures::header(alg);
        let input = signing_input(key, alg, &claims);
        for n in THREADS {
            group.bench_function(format!("{name}-t{n}"), |b| {
                b.iter_custom(|iters| {
                    run_threads(
                        n,
                        iters,
                        || (),
                        |()| {
                            black_box(jose_core::jwt::sign(key, &header, &claims).unwrap());
                        },
                    )
                });
            });
            group.bench_function(format!("{name}-raw-t{n}"), |b| {
                b.iter_custom(|iters| {
                    run_threads(
                        n,
                        iters,
                        || t.raw(label),
                        |raw| {
                            black_box(raw.sign(alg, &input));
                        },
                    )
                });
            });
        }
    }
    group.finish();
}

/// Flex-style JWE decryption (RSA-OAEP, A256GCM, 1 KiB) with the CEK unwrapped in the token, and the raw
/// `C_Decrypt` of the same encrypted key.
fn jwe(c: &mut Criterion<Clock>) {
    let Some(t) = token() else { return };
    let payload = fixtures::jwe_payload();
    let token = jwe::encrypt(
        t.rsa.public_key(),
        KeyManagementAlgorithm::RsaOaep,
        ContentEncryption::A256GCM,
        &payload,
        &EncryptOptions::new().kid(fixtures::KID),
    )
    .unwrap();
    let encrypted_key = jose_core::b64::decode("ek", token.split('.').nth(1).unwrap()).unwrap();
    let options = DecryptOptions::default();
    let mut group = c.benchmark_group("pkcs11-jwe");
    configure(&mut group);
    group.bench_function("decrypt", |b| {
        b.iter(|| jwe::decrypt(black_box(&token), t.rsa.as_ref(), &options).unwrap());
    });
    let raw = t.raw(RSA_LABEL);
    group.bench_function("decrypt-raw", |b| {
        b.iter(|| raw.decrypt_oaep_sha1(black_box(&encrypted_key)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = sign, threads, jwe
}
criterion_main!(benches);

//! Software paths: JWS/JWT signing through the file backend, JWT verification with claim validation,
//! Flex-style JWE (RSA-OAEP + A256GCM, 1 KiB) encryption and decryption, the Keycloak cached access token.
//! Each next to its references: `jsonwebtoken` with the same key and claims (for verification in
//! `peers.rs`), and aws-lc-rs called directly (the crypto library's own limit).
//!
//! Group / function ids are what `cargo xtask bench` reads back from `$CRITERION_HOME`; keep them in step
//! with `xtask/src/bench.rs`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use jose_core::jwe::{self, DecryptOptions, EncryptOptions};
use jose_core::{ContentEncryption, JwsAlgorithm, KeyManagementAlgorithm};
use keybound_benches::fixtures::{self, Claims, FileKeys};
use keybound_benches::{Clock, configure, token_endpoint};

fn keys() -> &'static FileKeys {
    static KEYS: OnceLock<FileKeys> = OnceLock::new();
    KEYS.get_or_init(FileKeys::generate)
}

fn pkcs8_der(pem_text: &[u8]) -> Vec<u8> {
    pem::parse(pem_text).expect("PEM").into_contents()
}

/// JWS signing: ours through the file backend, aws-lc-rs signing the same signing input directly, and
/// `jsonwebtoken::encode` with the same key and claims; each algorithm's three run back to back.
fn sign(c: &mut Criterion<Clock>) {
    // jsonwebtoken fixes its process-wide provider on first use (here `jsonwebtoken::encode`): install
    // keybound's first, as an application that verifies with jose-core does. Signing references are
    // unaffected (keybound's provider signs with jsonwebtoken's own aws-lc signers).
    jose_core::jwt::install_crypto_provider();
    let keys = keys();
    let claims = Claims::now();
    let rsa = RsaKeyPair::from_pkcs8(&pkcs8_der(&keys.rsa_pem)).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8_der(&keys.ec_pem),
    )
    .unwrap();
    let rs_key = jsonwebtoken::EncodingKey::from_rsa_pem(&keys.rsa_pem).unwrap();
    let es_key = jsonwebtoken::EncodingKey::from_ec_pem(&keys.ec_pem).unwrap();
    let rng = SystemRandom::new();
    let mut group = c.benchmark_group("sign");
    configure(&mut group);
    for (alg, key, jwt_alg, jwt_key) in [
        (
            JwsAlgorithm::RS256,
            &keys.rsa,
            jsonwebtoken::Algorithm::RS256,
            &rs_key,
        ),
        (
            JwsAlgorithm::PS256,
            &keys.rsa,
            jsonwebtoken::Algorithm::PS256,
            &rs_key,
        ),
        (
            JwsAlgorithm::ES256,
            &keys.ec,
            jsonwebtoken::Algorithm::ES256,
            &es_key,
        ),
    ] {
        let name = alg.as_str().to_ascii_lowercase();
        let header = fixtures::header(alg);
        group.bench_function(format!("{name}-file"), |b| {
            b.iter(|| jose_core::jwt::sign(key.as_ref(), &header, black_box(&claims)).unwrap());
        });

        // The library: aws-lc-rs signing the very signing input, key parsed once.
        let token = jose_core::jwt::sign(key.as_ref(), &header, &claims).unwrap();
        let input = token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
        group.bench_function(format!("{name}-aws-lc"), |b| match alg {
            JwsAlgorithm::ES256 => b.iter(|| ec.sign(&rng, black_box(&input)).unwrap()),
            _ => {
                let padding: &'static dyn signature::RsaEncoding = if alg == JwsAlgorithm::RS256 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut sig = vec![0u8; rsa.public_modulus_len()];
                b.iter(|| {
                    rsa.sign(padding, &rng, black_box(&input), &mut sig)
                        .unwrap()
                });
            }
        });

        // The peer: jsonwebtoken with the same PKCS#8 PEM, header members and claims.
        let jwt_header = fixtures::jsonwebtoken_header(jwt_alg);
        group.bench_function(format!("{name}-jsonwebtoken"), |b| {
            b.iter(|| jsonwebtoken::encode(&jwt_header, black_box(&claims), jwt_key).unwrap());
        });
    }
    group.finish();
}

/// JWT verification with claim validation (`iss`, `aud`, `exp`, `iat`, `sub` required): ours (with
/// keybound's jsonwebtoken provider installed) and aws-lc-rs verifying the bare signature. The reference
/// `jsonwebtoken::decode` runs in `benches/peers.rs`, a process of its own with jsonwebtoken's stock
/// provider (the crypto provider is chosen once per process).
fn verify(c: &mut Criterion<Clock>) {
    let keys = keys();
    let claims = Claims::now();
    let mut group = c.benchmark_group("verify");
    configure(&mut group);
    for (alg, key) in [
        (JwsAlgorithm::RS256, &keys.rsa),
        (JwsAlgorithm::ES256, &keys.ec),
    ] {
        let name = alg.as_str().to_ascii_lowercase();
        let token = jose_core::jwt::sign(key.as_ref(), &fixtures::header(alg), &claims).unwrap();
        let (key_set, validation) = fixtures::verification(key.as_ref(), alg);
        assert!(jose_core::jwt::verify(&token, &key_set, &validation).is_ok());
        group.bench_function(name.clone(), |b| {
            b.iter(|| jose_core::jwt::verify(black_box(&token), &key_set, &validation).unwrap());
        });

        // The library: the bare signature, with the key parsed on every call (as jsonwebtoken's stock
        // provider does), and parsed once (as `openssl speed` and keybound's provider do).
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = jose_core::b64::decode("sig", sig).unwrap();
        group.bench_function(format!("{name}-aws-lc"), |b| {
            b.iter(|| {
                jose_core::jws::verify_signature(alg, key.public_key(), input.as_bytes(), &sig)
                    .unwrap();
            });
        });
        let parsed = match alg {
            JwsAlgorithm::RS256 => signature::ParsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                key.public_key().rsa_public_key_der().unwrap(),
            ),
            _ => signature::ParsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                key.public_key().ec_point().unwrap(),
            ),
        }
        .unwrap();
        group.bench_function(format!("{name}-aws-lc-parsed"), |b| {
            b.iter(|| {
                parsed
                    .verify_sig(black_box(input.as_bytes()), &sig)
                    .unwrap()
            });
        });
    }
    group.finish();
}

/// Flex-style JWE: encryption to an RSA-2048 public key (RSA-OAEP, A256GCM, `kid`, 1 KiB), and decryption
/// through the file backend.
fn jwe(c: &mut Criterion<Clock>) {
    let keys = keys();
    let payload = fixtures::jwe_payload();
    let recipient = keys.rsa.public_key().clone();
    let options = EncryptOptions::new().kid(fixtures::KID);
    let mut group = c.benchmark_group("jwe");
    configure(&mut group);
    group.bench_function("encrypt-flex", |b| {
        b.iter(|| {
            jwe::encrypt(
                &recipient,
                KeyManagementAlgorithm::RsaOaep,
                ContentEncryption::A256GCM,
                black_box(&payload),
                &options,
            )
            .unwrap()
        });
    });
    let token = jwe::encrypt(
        &recipient,
        KeyManagementAlgorithm::RsaOaep,
        ContentEncryption::A256GCM,
        &payload,
        &options,
    )
    .unwrap();
    let decrypt_options = DecryptOptions::default();
    group.bench_function("decrypt-file", |b| {
        b.iter(|| jwe::decrypt(black_box(&token), keys.rsa.as_ref(), &decrypt_options).unwrap());
    });
    group.finish();
}

/// `TokenSource::access_token()` while the cached token is fresh (the path every API call takes).
fn keycloak(c: &mut Criterion<Clock>) {
    use keycloak_client::{ClientAuth, FullGrant, KeycloakClient, TokenEndpoint, TokenSource};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = token_endpoint::start();
    let client = KeycloakClient::builder(
        TokenEndpoint::from_token_url(&url).unwrap(),
        ClientAuth::ClientSecretPost {
            client_id: "bench".into(),
            secret: "bench-secret".to_owned().into(),
        },
    )
    .build()
    .unwrap();
    let source = TokenSource::new(Arc::new(client), FullGrant::ClientCredentials);
    runtime
        .block_on(source.access_token())
        .expect("first token");
    let clock = Clock::from_env();
    let mut group = c.benchmark_group("keycloak");
    configure(&mut group);
    group.bench_function("access-token-cached", |b| {
        b.iter_custom(|iters| {
            let started = clock.now();
            runtime.block_on(async {
                for _ in 0..iters {
                    black_box(source.access_token().await.unwrap());
                }
            });
            clock.now().saturating_sub(started)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = sign, verify, jwe, keycloak
}
criterion_main!(benches);

//! The peer a Rust user would pick for JWT verification, in a process of its own: `jsonwebtoken::decode`
//! with jsonwebtoken's stock aws-lc-rs provider, the same token, key and validation as `verify/*` in
//! `software.rs`. (jsonwebtoken's crypto provider is chosen once per process, and the software benchmarks
//! run with keybound's, which jose-core installs; so the reference cannot share their process.)
//!
//! Group / function ids are what `cargo xtask bench` reads back from `$CRITERION_HOME`; keep them in step
//! with `xtask/src/bench.rs`.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jose_core::JwsAlgorithm;
use keybound_benches::fixtures::{self, Claims, FileKeys};
use keybound_benches::{Clock, configure};

fn verify(c: &mut Criterion<Clock>) {
    // Before anything could install another provider: this process measures jsonwebtoken as shipped.
    assert!(
        jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
            .install_default()
            .is_ok(),
        "the stock provider must be the one in use"
    );
    let keys = FileKeys::generate();
    let claims = Claims::now();
    let mut group = c.benchmark_group("verify");
    configure(&mut group);
    for (alg, key, jwt_alg) in [
        (
            JwsAlgorithm::RS256,
            &keys.rsa,
            jsonwebtoken::Algorithm::RS256,
        ),
        (
            JwsAlgorithm::ES256,
            &keys.ec,
            jsonwebtoken::Algorithm::ES256,
        ),
    ] {
        let name = alg.as_str().to_ascii_lowercase();
        let token = jose_core::jwt::sign(key.as_ref(), &fixtures::header(alg), &claims).unwrap();
        let pem = key.public_key().to_spki_pem();
        let decoding_key = match alg {
            JwsAlgorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jwt_alg);
        v.set_issuer(&[fixtures::ISSUER]);
        v.set_audience(&[fixtures::AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iat", "sub"]);
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding_key, &v).is_ok());
        group.bench_function(format!("{name}-jsonwebtoken"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &decoding_key, &v)
                    .unwrap()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = verify
}
criterion_main!(benches);

//! # keybound-benches
//!
//! Criterion benchmarks of keybound's hot paths, each next to the reference it is judged against, measured
//! in the same process: `jsonwebtoken` (the peer a Rust user would pick), `aws-lc-rs` called directly (the
//! crypto library underneath both), and a raw `cryptoki` `C_Sign` / `C_Decrypt` loop on one session (the
//! limit of a PKCS#11 token). `cargo xtask bench` runs them, adds `openssl speed`, and prints the ratios;
//! see `docs/benchmarks.md`.
//!
//! - `benches/software.rs`: JWS signing through the file backend, JWT verification with claim validation,
//!   Flex-style JWE encryption and decryption, the Keycloak cached `access_token()`.
//! - `benches/pkcs11.rs`: the same signing and decryption through the PKCS#11 backend (SoftHSM), on one
//!   thread and on 1, 2 and 4 threads. Needs the variables `cargo xtask bench` (or `softhsm-test`) exports;
//!   without them it prints a SKIPPED line and measures nothing.
//!
//! ## Clock
//! Single-threaded benchmarks measure **thread CPU time** by default ([`Clock`]), the way `openssl speed`
//! counts (user CPU seconds), so that ratios against it stay meaningful on a machine shared with other work.
//! `KEYBOUND_BENCH_CLOCK=wall` switches them to wall-clock time. Multi-threaded benchmarks always report
//! wall-clock throughput (that is what threads are for).

#![allow(clippy::missing_panics_doc)]

pub mod clock;
pub mod fixtures;
pub mod pkcs11;
pub mod token_endpoint;

pub use clock::{Clock, thread_cpu_time};

use criterion::{BenchmarkGroup, SamplingMode, Throughput};

/// Settings shared by every group: one element per iteration (criterion then also prints a rate), flat
/// sampling (most operations take 20 us to 1 ms; linear sampling would need thousands of iterations per
/// sample).
pub fn configure(group: &mut BenchmarkGroup<'_, Clock>) {
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
}

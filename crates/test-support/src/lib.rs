//! # keybound-test-support
//!
//! Support for keybound's own tests, kept out of the product crates: a dev-dependency of every crate that
//! tests against real parts (a normal dependency of the benchmarks alone), never published (`publish =
//! false`), and never in a product crate's normal dependency graph (xtask's tidy test checks the manifests).
//!
//! - [`capture`]: everything `tracing` writes, kept in memory so a test can search it (for secrets, for
//!   audit fields). Always compiled.
//! - `pkcs11` (feature `pkcs11`): SoftHSM test tokens made by `cargo xtask softhsm-test` / `cargo xtask
//!   test` or by the test process itself, and key-provider's test hooks (the process-wide PKCS#11 context, a
//!   token's slot, held pool sessions), which only this crate switches on (key-provider's `test-hooks`).
//! - `oidc` (feature `oidc`): the Keycloak-shaped OpenID Connect test server (`tests/oidc-provider`, the npm
//!   package `oidc-provider` run by Node.js) on a free loopback port, its admin switches and counters.
//! - `keyservices` (feature `keyservices`): the key-service servers on free loopback ports — OpenBao's
//!   `bao server -dev` with Transit ([`keyservices::BaoServer`]) and moto's KMS
//!   ([`keyservices::MotoServer`]), both from the pinned venv `cargo xtask keyservices` installs under
//!   `target/keyservices/` — and [`keyservices::FaultProxy`], an HTTP/1.1 proxy that refuses connections,
//!   injects statuses, counts and records requests on a test's command. std threads and sockets only.
//!
//! Missing outside parts (no SoftHSM token exported, no `node` or `node_modules`, no `bao` or `moto_server`)
//! make a test print a loud "SKIPPED" line and pass, unless `KEYBOUND_TEST_PKCS11_REQUIRED=1` /
//! `KEYBOUND_TEST_OIDC_REQUIRED=1` / `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1` (set by `cargo xtask test`) turn
//! that into a failure. A panic here is the calling test's failure message.

pub mod capture;
#[cfg(feature = "keyservices")]
pub mod keyservices;
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;

//! `cargo xtask test [CARGO-TEST-ARGS]...`: the README's test command. Creates a fresh SoftHSM token (as
//! `cargo xtask softhsm-test` does), installs the OpenID Connect test server's npm packages and the pinned
//! OpenBao and moto servers (`cargo xtask keyservices`) when missing, then runs the whole workspace's tests
//! once — `cargo test --workspace --all-features` — with the token and the servers' paths exported and
//! `KEYBOUND_TEST_PKCS11_REQUIRED=1` / `KEYBOUND_TEST_OIDC_REQUIRED=1` / `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`,
//! so no PKCS#11, OIDC or key-service test can pass by skipping itself. One build, one run: no crate is rebuilt with other features.

use std::process::Command;
use std::time::Instant;

use crate::Result;

/// Runs the subcommand; `args` go to the workspace `cargo test`.
pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: cargo xtask test [CARGO-TEST-ARGS]...\n\n\
             Creates a SoftHSM token, then runs `cargo test --workspace --all-features [ARGS]` against it."
        );
        return Ok(());
    }
    let started = Instant::now();
    prepare_oidc_provider()?;
    let keyservices = crate::keyservices::ensure_keyservices()?;
    let root = crate::root();
    let token =
        crate::softhsm::create_token(&crate::softhsm::run_dir(&root), crate::softhsm::TOKEN_LABEL)?;
    println!("SoftHSM token directory: {}", token.dir.display());
    println!(
        "==> cargo test --workspace --all-features {}",
        args.join(" ")
    );
    let status = Command::new(crate::cargo())
        .current_dir(crate::root())
        .args(["test", "--workspace", "--all-features"])
        // The OpenID Connect server and PKCS#11 tests must run here, not skip themselves.
        .env("KEYBOUND_TEST_OIDC_REQUIRED", "1")
        .envs(token.test_env())
        // The OpenBao and moto servers, required too (`KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`).
        .envs(keyservices.test_env())
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("workspace tests failed ({status})"));
    }
    println!("\nall tests passed in {:.1?}", started.elapsed());
    Ok(())
}

/// Installs the OpenID Connect test server's npm packages (`npm ci`) when they are missing, so the Keycloak
/// tests run against the real server instead of skipping.
pub(crate) fn prepare_oidc_provider() -> Result<()> {
    let dir = crate::root().join("tests").join("oidc-provider");
    if dir.join("node_modules").is_dir() {
        return Ok(());
    }
    println!("==> npm ci --prefix tests/oidc-provider");
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&dir)
        .status()
        .map_err(|e| {
            format!("cannot run npm ({e}); install Node.js and npm (apt-get install nodejs npm)")
        })?;
    if !status.success() {
        return Err(format!("npm ci failed ({status})"));
    }
    Ok(())
}

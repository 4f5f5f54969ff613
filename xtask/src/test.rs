//! `cargo xtask test [CARGO-TEST-ARGS]...`: the README's test command. Runs the whole workspace's tests
//! (`cargo test --workspace --all-features`; PKCS#11 tests skip themselves there, loudly), then the PKCS#11
//! tests of every crate against a fresh SoftHSM token (`cargo xtask softhsm-test`). Fails if either fails.

use std::process::Command;
use std::time::Instant;

use crate::Result;

/// Runs the subcommand; `args` go to the workspace `cargo test`.
pub fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: cargo xtask test [CARGO-TEST-ARGS]...\n\n\
             Runs `cargo test --workspace --all-features [ARGS]`, then `cargo xtask softhsm-test`."
        );
        return Ok(());
    }
    let started = Instant::now();
    prepare_oidc_provider()?;
    println!(
        "==> cargo test --workspace --all-features {}",
        args.join(" ")
    );
    let status = Command::new(crate::cargo())
        .current_dir(crate::root())
        .args(["test", "--workspace", "--all-features"])
        // The OpenID Connect server tests must run here, not skip themselves.
        .env("KEYBOUND_TEST_OIDC_REQUIRED", "1")
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("workspace tests failed ({status})"));
    }
    println!("<== workspace tests ok in {:.1?}\n", started.elapsed());
    crate::softhsm::run(&[])?;
    println!("\nall tests passed in {:.1?}", started.elapsed());
    Ok(())
}

/// Installs the OpenID Connect test server's npm packages (`npm ci`) when they are missing, so the Keycloak
/// tests run against the real server instead of skipping.
fn prepare_oidc_provider() -> Result<()> {
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

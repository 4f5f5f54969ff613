//! `cargo xtask demo [--hsm] [--plain]`: the README's first command. Builds and runs `crates/demo`
//! (`keybound-demo`), which runs keybound's three partner flows end to end against in-process stand-ins (a
//! Keycloak-shaped token endpoint, the Flex simulator, a Thales key) and prints each step with secrets
//! masked. Needs nothing but the Rust toolchain and a C compiler (and OpenSSL's headers for the Flex
//! simulator, which uses OpenSSL as an independent JOSE implementation): no Node.js, no network.
//!
//! - default: keybound's private keys are PEM files in a temporary directory, removed at the end;
//! - `--hsm`: every one of them is generated in a fresh SoftHSM token instead, created here with
//!   [`softhsm::create_token`](crate::softhsm::create_token) in a temporary directory and removed at the end.
//!   Nothing is installed: without SoftHSM the command fails and says what to install;
//! - `--plain`: no colour and no progress display (also the default when stdout is not a terminal).

use std::process::Command;

use crate::Result;

const HELP: &str = "\
usage: cargo xtask demo [--hsm] [--plain]

Runs keybound's three partner flows (Keycloak private_key_jwt, Cybersource Flex, Thales push
provisioning) end to end on this machine and prints what each step did, secrets masked.
  --hsm     generate every keybound private key in a fresh SoftHSM token (needs softhsm2)
  --plain   no colour, no progress display
";

/// The token label used with `--hsm`.
const TOKEN_LABEL: &str = "keybound-demo";

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<()> {
    let mut hsm = false;
    let mut demo_args: Vec<String> = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            "--hsm" => hsm = true,
            "--plain" => demo_args.push(arg.clone()),
            other => return Err(format!("unknown argument `{other}`\n\n{HELP}")),
        }
    }
    if hsm {
        // Before building: say what to install rather than fail after minutes of compiling.
        crate::softhsm::find_module()?;
        if Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_err()
        {
            return Err(
                "softhsm2-util is not installed. Install SoftHSM with:\n\n    sudo apt-get install softhsm2 opensc\n"
                    .into(),
            );
        }
    }
    build()?;

    let mut command = Command::new(crate::cargo());
    command
        .current_dir(crate::root())
        .args(["run", "--quiet", "-p", "keybound-demo", "--"])
        .args(&demo_args);
    let token_dir = std::env::temp_dir().join(format!("keybound-demo-hsm-{}", std::process::id()));
    if hsm {
        let token = crate::softhsm::create_token(&token_dir, TOKEN_LABEL)?;
        command
            .env("SOFTHSM2_CONF", &token.conf)
            .arg("--pkcs11-token")
            .arg(&token.label)
            .arg("--pkcs11-module")
            .arg(&token.module)
            .arg("--pkcs11-pin-file")
            .arg(&token.pin_file);
    }
    let status = command.status();
    if hsm {
        let _ = std::fs::remove_dir_all(&token_dir);
    }
    let status = status.map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the demo failed ({status})"))
    }
}

/// `cargo build -p keybound-demo`, with cargo's own progress display. The Flex simulator builds OpenSSL from
/// source (the `vendored` feature), which needs a C compiler, `make` and `perl`: on failure, say so.
fn build() -> Result<()> {
    let status = Command::new(crate::cargo())
        .current_dir(crate::root())
        .args(["build", "-p", "keybound-demo"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let missing: Vec<&str> = ["cc", "make", "perl"]
        .into_iter()
        .filter(|tool| Command::new(tool).arg("--version").output().is_err())
        .collect();
    Err(if missing.is_empty() {
        format!("building the demo failed ({status})")
    } else {
        format!(
            "building the demo failed ({status}). The Flex simulator builds OpenSSL from source, which needs \
             {}; install them with:\n\n    sudo apt-get install build-essential perl\n",
            missing.join(", ")
        )
    })
}

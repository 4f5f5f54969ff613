//! # keybound-demo
//!
//! The program behind `cargo xtask demo`: keybound's three partner flows, end to end, on this machine, with
//! the real library APIs against in-process stand-ins for the partners.
//!
//! 1. **Keycloak `private_key_jwt`** ([`keycloak`]): client assertions signed with the lender's key, tokens
//!    from a Keycloak-shaped token endpoint ([`token_endpoint`]) through `TokenSource`, a replay refused.
//! 2. **Cybersource Flex v2** ([`flex`]): the merchant's key imported from the P12 the Business Center
//!    issues (a fixture, `fixtures/merchant.p12`), merchant-authenticated capture context, tokenization,
//!    transient token, against `flex-simulator`.
//! 3. **Thales push provisioning** ([`provisioning`]): authorization code, enrollment JWE, batch signing.
//!
//! Every private key of keybound's side (lender, issuer) is generated for the run, and the merchant's is
//! imported from its P12: by default as PEM files in a temporary directory, or with `--pkcs11-token LABEL --pkcs11-module PATH --pkcs11-pin-file
//! PATH` inside a PKCS#11 token (`cargo xtask demo --hsm` creates a fresh SoftHSM token and passes these).
//! The partners' own keys (the realm's, Flex's, Thales's) are in-memory software keys of the stand-ins.
//! Each step prints what happened — decoded JOSE headers and claims, captured fields, the provisioning
//! code — with secrets masked ([`out`]). Exit code 0 when every flow did what it should, 1 otherwise.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod flex;
mod keycloak;
mod keys;
mod out;
mod provisioning;
mod token_endpoint;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::keys::KeyStore;
use crate::out::Out;

/// The demo's error type: any error, shown as its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

const HELP: &str = "\
usage: keybound-demo [--plain] [--pkcs11-token LABEL --pkcs11-module PATH --pkcs11-pin-file PATH]

Runs keybound's three partner flows against in-process stand-ins. Keys are PEM files in a temporary
directory, or keys generated in the given PKCS#11 token (`cargo xtask demo --hsm` sets one up).
  --plain   no colour and no progress display (the default when stdout is not a terminal)
";

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    plain: bool,
    token: Option<String>,
    module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--plain" => o.plain = true,
            "--pkcs11-token" => o.token = Some(value(arg)?),
            "--pkcs11-module" => o.module = Some(value(arg)?.into()),
            "--pkcs11-pin-file" => o.pin_file = Some(value(arg)?.into()),
            other => return Err(format!("unknown argument `{other}`\n\n{HELP}")),
        }
    }
    let given = [o.token.is_some(), o.module.is_some(), o.pin_file.is_some()];
    if given.contains(&true) && given.contains(&false) {
        return Err("--pkcs11-token, --pkcs11-module and --pkcs11-pin-file go together".to_owned());
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("keybound-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let out = Out::new(options.plain);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keybound-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&out, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nkeybound-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(out: &Out, options: Options) -> Result<(), Error> {
    let started = Instant::now();
    // Dropped (and removed) when the demo ends, however it ends.
    let mut temp_dir = None;
    let store = match (options.token, options.module, options.pin_file) {
        (Some(label), Some(module), Some(pin_file)) => KeyStore::Token {
            label,
            module,
            pin_file,
        },
        _ => {
            let dir = tempfile::Builder::new()
                .prefix("keybound-demo-")
                .tempdir()?;
            let path = dir.path().to_owned();
            temp_dir = Some(dir);
            KeyStore::Files(path)
        }
    };
    out.banner("keybound demo: three partner flows, end to end, on this machine");
    out.field("private keys", store.describe());
    out.field(
        "partners",
        "in-process stand-ins: a Keycloak-shaped token endpoint, the Flex simulator, a Thales key",
    );
    out.field(
        "secrets",
        "tokens shown as their first 12 characters…, card numbers masked, passwords and PINs never",
    );

    keycloak::run(out, &store).await?;
    flex::run(out, &store).await?;
    provisioning::run(out, &store).await?;

    out.line("");
    out.banner(&format!(
        "All three flows worked, in {:.1} s; no private key left its backend.",
        started.elapsed().as_secs_f64()
    ));
    match &store {
        KeyStore::Files(_) => out.line(
            "Next: `cargo xtask demo --hsm` runs the same with every key in a SoftHSM token; docs/hsm.md \
             shows the CLI against a token of your own.",
        ),
        KeyStore::Token { .. } => out.line(
            "Next: docs/hsm.md walks through the same with the keybound CLI and a token of your own.",
        ),
    }
    drop(temp_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&strings(&["--plain"])).unwrap().unwrap();
        assert!(o.plain && o.token.is_none());
        let o = parse(&strings(&[
            "--pkcs11-token",
            "t",
            "--pkcs11-module",
            "/m.so",
            "--pkcs11-pin-file",
            "/p",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.token.as_deref(), Some("t"));
        assert!(parse(&strings(&["--pkcs11-token", "t"])).is_err());
        assert!(parse(&strings(&["--pkcs11-token"])).is_err());
        assert!(parse(&strings(&["--what"])).is_err());
        assert!(parse(&strings(&["-h"])).unwrap().is_none());
    }
}

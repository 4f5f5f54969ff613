//! The command tree as the user sees it: the global options (`--config`, `--log`, `--log-format`,
//! `--pkcs11-module`) listed once, in `keybound --help`; each command's help ending with one example and its
//! exit codes; and clap's usage errors printed in keybound's own style (`keybound: <message>` with
//! `  hint: …` lines, exit 2), `--help` and `--version` exit 0.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap::error::ErrorKind;

use crate::Cli;

/// The global options (clap ids), shown in the top-level help only.
const GLOBALS: [&str; 4] = ["config", "log", "log_format", "pkcs11_module"];

/// The exit codes of commands that sign, encrypt or fetch: nothing is judged, so never 1.
const EXIT_MAKE: &str =
    "Exit codes: 0 done; 2 usage, configuration, I/O or the key backend failing.";
/// The exit codes of commands that judge their input.
const EXIT_JUDGE: &str = "Exit codes: 0 valid; 1 rejected (the input was judged and refused); 2 usage, \
                          configuration, I/O, network or the key backend failing.";

/// One example per command (path below `keybound`) and its exit codes. A command missing here fails the
/// unit test below and `tests/cli.rs`.
const FOOTERS: &[(&str, &str, &str)] = &[
    (
        "keys generate",
        "keybound keys generate --key file:lender.pem --kty RSA --bits 3072",
        EXIT_MAKE,
    ),
    (
        "keys import",
        "keybound keys import --from merchant.p12 --password-source env:P12_PASSWORD --key \
         'pkcs11:token=keybound;object=flex-merchant'",
        EXIT_MAKE,
    ),
    (
        "keys public",
        "keybound keys public --key file:lender.pem --format jwk",
        EXIT_MAKE,
    ),
    (
        "keys export",
        "keybound keys export --key file:lender.pem --out-dir onboarding/",
        EXIT_MAKE,
    ),
    (
        "keys csr",
        "keybound keys csr --key 'pkcs11:token=keybound;object=issuer' --subject 'CN=acmebank,O=Acme Bank,C=FR' \
         --out issuer.csr",
        EXIT_MAKE,
    ),
    (
        "keys certificate",
        "keybound keys certificate --key 'pkcs11:token=keybound;object=issuer' --subject 'CN=acmebank,C=FR' \
         --days 730 --store --out issuer.crt",
        EXIT_MAKE,
    ),
    (
        "keys attach-cert",
        "keybound keys attach-cert --key 'pkcs11:token=keybound;object=issuer' --cert issued-by-thales.pem",
        "Exit codes: 0 stored; 2 usage, I/O, a certificate that is not the key's, one already kept (without \
         --force) or the key backend failing.",
    ),
    (
        "keys list",
        "keybound keys list --key 'pkcs11:token=keybound?pin-source=file:/run/pin'",
        "Exit codes: 0 listed; 2 usage, configuration or token failure.",
    ),
    (
        "keys delete",
        "keybound keys delete --key 'pkcs11:token=keybound;object=old-signing;id=%01?pin-source=file:/run/pin'",
        "Exit codes: 0 deleted; 1 declined at the prompt (nothing deleted); 2 usage, configuration, no \
         terminal to confirm without --yes, no or several matching keys, or token failure.",
    ),
    (
        "keys rotate",
        "keybound keys rotate --key vault:issuer",
        "Exit codes: 0 rotated; 2 usage, configuration, a key that is not a Transit key (vault:), or the key \
         service failing (token refused, no such key, server unreachable).",
    ),
    (
        "jwt sign",
        "echo '{\"sub\":\"example-bank\"}' | keybound jwt sign --key file:lender.pem --alg RS256 --claims - \
         --exp-in 60",
        EXIT_MAKE,
    ),
    (
        "jwt verify",
        "keybound jwt verify --pubkey onboarding/public_key.pem --token t.jwt",
        EXIT_JUDGE,
    ),
    (
        "jwt decode",
        "keybound jwt decode --token t.jwt",
        "Exit codes: 0 decoded (NOT verified); 1 not a JWT; 2 usage or I/O.",
    ),
    (
        "jwe encrypt",
        "echo secret | keybound jwe encrypt --pubkey jwe-public.pem --alg RSA-OAEP-256 --enc A256GCM",
        EXIT_MAKE,
    ),
    (
        "jwe decrypt",
        "keybound jwe decrypt --key file:jwe.pem < message.jwe",
        EXIT_JUDGE,
    ),
    (
        "flex verify-context",
        "keybound flex verify-context --capture-context cc.jwt",
        EXIT_JUDGE,
    ),
    (
        "flex tokenize",
        "keybound flex tokenize --capture-context cc.jwt --data card.json",
        EXIT_JUDGE,
    ),
    (
        "flex verify-token",
        "keybound flex verify-token --capture-context cc.jwt --token tt.jwt",
        EXIT_JUDGE,
    ),
    (
        "flex capture-context",
        "keybound flex capture-context --merchant-id my_merchant --key-id 1234567890 --key file:merchant.pem \
         --body request.json",
        EXIT_JUDGE,
    ),
    (
        "flex open-credentials",
        "keybound flex open-credentials --key file:psp.pem --token tt.jwt --capture-context cc.jwt \
         --jwks epc-issuer.json < epc.jwe",
        EXIT_JUDGE,
    ),
    (
        "keycloak token",
        "LENDER_PASSWORD=… keybound keycloak token --token-url https://sso.example.com/realms/r/protocol/\
         openid-connect/token --client-id example-bank --key file:lender.pem --username user \
         --password-env LENDER_PASSWORD",
        EXIT_JUDGE,
    ),
    (
        "keycloak assertion",
        "keybound keycloak assertion --token-url https://sso.example.com/realms/r/protocol/openid-connect/\
         token --client-id example-bank --key file:lender.pem",
        EXIT_MAKE,
    ),
    (
        "provisioning auth-code",
        "keybound provisioning auth-code --key file:issuer.pem --issuer-id ACMEBANK01 --sub CARDREF1 \
         --aud APPLE_PAY",
        "Exit codes: 0 done; 1 batch lines refused (each output line says why); 2 usage, configuration, I/O \
         or the key backend failing.",
    ),
    (
        "provisioning encrypt-card",
        "keybound provisioning encrypt-card --cert tsh-issuer-gateway.pem --card card.json",
        EXIT_MAKE,
    ),
    (
        "provisioning push",
        "keybound provisioning push --key file:issuer.pem --cert tsh-issuer-gateway.pem --issuer-id \
         ACMEBANK01 --aud GOOGLE_PAY --card card.json",
        EXIT_MAKE,
    ),
    (
        "provisioning decrypt",
        "keybound provisioning decrypt --key file:issuer-pkcs7.pem --encoding hex < pci-fields.hex",
        "Exit codes: 0 decrypted; 1 refused (not EnvelopedData, an unsupported recipient or algorithm) or \
         decryption failed; 2 usage, configuration, I/O or the key backend failing.",
    ),
    (
        "provisioning verify-auth-code",
        "keybound provisioning verify-auth-code --pubkey issuer-public.pem --token code.jwt --issuer-id \
         ACMEBANK01",
        EXIT_JUDGE,
    ),
];

/// The line every subcommand's help ends with.
const GLOBALS_NOTE: &str =
    "Global options (--config, --log, --log-format, --pkcs11-module): see `keybound --help`.";

/// The footer of the command at `path` (below `keybound`), if it has one.
fn footer(path: &str) -> Option<String> {
    FOOTERS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, example, exit)| format!("Example:\n  {example}\n\n{exit}\n\n{GLOBALS_NOTE}"))
}

/// The whole command, built: globals hidden below the top level, footers on every command.
pub fn command() -> clap::Command {
    fn decorate(cmd: &mut clap::Command, path: &str, globals: &[clap::Arg]) {
        for slot in cmd.get_subcommands_mut() {
            let sub_path = format!("{path} {}", slot.get_name());
            let sub_path = sub_path.trim_start();
            let mut sub = std::mem::take(slot);
            // A hidden copy of each global option: clap does not propagate a global option into a command
            // that has one of the same id, and still collects its value for `Cli` (accepted everywhere,
            // listed once).
            for global in globals {
                sub = sub.arg(global.clone());
            }
            sub = match footer(sub_path) {
                Some(text) => sub.after_help(text),
                None if sub.has_subcommands() => sub.after_help(GLOBALS_NOTE),
                None => sub,
            };
            decorate(&mut sub, sub_path, globals);
            *slot = sub;
        }
    }
    let mut cmd = Cli::command().after_help(
        "Exit codes, every command: 0 done or valid; 1 the input (a token, JWE, partner answer, batch line) \
         was judged and rejected; 2 usage, configuration, I/O, network or the key backend failing.",
    );
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().global(false).hide(true))
        .collect();
    debug_assert_eq!(globals.len(), GLOBALS.len());
    decorate(&mut cmd, "", &globals);
    cmd.build();
    cmd
}

/// Prints a clap error: help and version on stdout (exit 0); usage errors as `keybound: <message>` with
/// `  hint: …` lines (exit 2).
pub fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // `keybound` or `keybound jwt` alone: the help, and a usage error.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let (mut text, hints) = restyle(&e.render().to_string());
    for hint in hints {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    crate::fail(&text, 2)
}

/// clap's rendered error (`error: …`, indented details, `  tip: …`, `Usage: …`, `For more information…`)
/// as one message and hint lines.
fn restyle(rendered: &str) -> (String, Vec<String>) {
    let mut message = String::new();
    let mut hints = Vec::new();
    let mut in_message = true;
    for line in rendered.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_message = false;
            continue;
        }
        if let Some(first) = trimmed.strip_prefix("error: ") {
            message.push_str(first);
        } else if let Some(tip) = trimmed.strip_prefix("tip: ") {
            hints.push(tip.to_owned());
        } else if let Some(usage) = trimmed.strip_prefix("Usage: ") {
            hints.push(format!("usage: {usage}"));
        } else if trimmed.starts_with("For more information") {
            hints.push(trimmed.replace("try '--help'", "try `--help`"));
        } else if let Some(values) = trimmed
            .strip_prefix("[possible values: ")
            .and_then(|v| v.strip_suffix(']'))
        {
            hints.push(format!("possible values: {values}"));
        } else if in_message {
            message.push(' ');
            message.push_str(trimmed);
        } else {
            hints.push(trimmed.to_owned());
        }
    }
    (message, hints)
}

#[cfg(test)]
mod tests {
    use super::{FOOTERS, command, restyle};

    /// Every command that runs something has a footer, and every footer names a command.
    #[test]
    fn every_leaf_command_has_an_example_and_exit_codes() {
        fn leaves(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            let subs: Vec<_> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if subs.is_empty() {
                out.push(path.to_owned());
            }
            for s in subs {
                let p = format!("{path} {}", s.get_name());
                leaves(s, p.trim_start(), out);
            }
        }
        let mut found = Vec::new();
        leaves(&command(), "", &mut found);
        for leaf in &found {
            assert!(
                FOOTERS.iter().any(|(p, _, _)| p == leaf),
                "{leaf}: no example"
            );
        }
        for (path, example, _) in FOOTERS {
            assert!(
                found.contains(&(*path).to_owned()),
                "{path}: no such command"
            );
            assert!(
                example.contains(&format!("keybound {path} ")),
                "{path}: {example}"
            );
        }
    }

    #[test]
    fn clap_errors_become_a_message_and_hints() {
        let (message, hints) = restyle(
            "error: the following required arguments were not provided:\n  --key <KEY>\n\nUsage: keybound \
             keys generate --key <KEY>\n\nFor more information, try '--help'.\n",
        );
        assert_eq!(
            message,
            "the following required arguments were not provided: --key <KEY>"
        );
        assert_eq!(
            hints,
            [
                "usage: keybound keys generate --key <KEY>",
                "For more information, try `--help`."
            ]
        );
    }
}

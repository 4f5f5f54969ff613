//! # keybound
//!
//! The command-line tool over keybound's crates: keys (generate, public, export; list and delete in a token), JWT (sign, verify, decode),
//! JWE (encrypt, decrypt), and the partner flows. Every private-key operation goes through a key reference
//! (`file:PATH`, `env:VAR`, `pkcs11:…`, `vault:NAME`, `aws-kms:KEY`), so the same commands work with files,
//! HSMs and key services.
//!
//! Exit codes, one rule for every command (README.md, "Exit codes"; `tests/exit_codes.rs`): 0 success; 1 the
//! input — a token, JWE, capture context, partner answer, batch line — was judged and rejected; 2 usage,
//! configuration, I/O, network and key-backend failures (an HSM failing while signing is 2 everywhere). One
//! line on stderr says why.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod certs;
mod context;
mod error;
mod flex;
mod help;
mod io;
mod jwe;
mod jwt;
mod keycloak;
mod keys;
mod provisioning;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::context::Context;

/// keybound: JOSE signing, verification and encryption with keys that stay in their backend.
#[derive(Debug, Parser)]
#[command(name = "keybound", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (settings can also come from KEYBOUND_… environment variables).
    #[arg(long, global = true, env = "KEYBOUND_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,

    /// Diagnostics on stderr, as a tracing filter (error, warn, info, debug, trace, or e.g.
    /// 'warn,keybound::audit=info'). The default, error, leaves failures to the command's own one-line
    /// message; warn adds retries and the libraries' failure events.
    #[arg(
        long,
        global = true,
        default_value = "error",
        env = "KEYBOUND_LOG",
        hide_env_values = true
    )]
    log: String,

    /// How diagnostics are written: text (one readable line per event) or json (one JSON object per line,
    /// for a SIEM to ingest the audit events).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KEYBOUND_LOG_FORMAT",
        hide_env_values = true
    )]
    log_format: LogFormat,

    /// The PKCS#11 module (vendor library) for pkcs11: key references without module-path=. Wins over
    /// KEYBOUND_PKCS11_MODULE, which wins over `pkcs11_module` in the configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    pkcs11_module: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys, print public keys, export them for partner onboarding, list and delete token keys, rotate
    /// Transit keys.
    #[command(subcommand)]
    Keys(keys::Cmd),
    /// Sign, verify and decode JWTs.
    #[command(subcommand)]
    Jwt(jwt::Cmd),
    /// Encrypt and decrypt compact JWEs.
    #[command(subcommand)]
    Jwe(jwe::Cmd),
    /// Cybersource / Visa Acceptance Flex v2: capture contexts, tokenization, transient tokens.
    #[command(subcommand)]
    Flex(flex::Cmd),
    /// Keycloak tokens with RFC 7523 client assertions (private_key_jwt) or client secrets.
    #[command(subcommand)]
    Keycloak(keycloak::Cmd),
    /// Thales push provisioning: authorization codes (one or in batch), card data (PKCS#7 for classic push, JWE
    /// for App2App), and decryption of PKCS#7 data from the TSH.
    #[command(subcommand)]
    Provisioning(provisioning::Cmd),
}

/// Prints `keybound: MESSAGE` (a message may carry `  hint: …` lines of its own) and returns `code`.
fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("keybound: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let mut command = help::command();
    let cli = match command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return help::usage_error(&e),
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(e) => return fail(&format!("--log / KEYBOUND_LOG: not a log filter ({e})"), 2),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => subscriber
            .with_target(false)
            // Colour codes only for a person at a terminal, not in log files and pipes.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One object per line with the target (`keybound::audit`), the level, a timestamp and the fields
        // flattened to the top level; no colour codes.
        LogFormat::Json => subscriber
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
    }
    let result =
        Context::load(cli.config.as_deref(), cli.pkcs11_module).and_then(|ctx| match cli.command {
            Command::Keys(cmd) => keys::run(cmd, &ctx),
            Command::Jwt(cmd) => jwt::run(cmd, &ctx),
            Command::Jwe(cmd) => jwe::run(cmd, &ctx),
            Command::Flex(cmd) => flex::run(cmd, &ctx),
            Command::Keycloak(cmd) => keycloak::run(cmd, &ctx),
            Command::Provisioning(cmd) => provisioning::run(cmd, &ctx),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.message, e.code),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks, and a description for every command and argument at every depth of
    /// the command tree (`tests/cli.rs` walks the same tree through the binary's help pages).
    #[test]
    fn the_whole_command_tree_is_consistent_and_described() {
        fn walk(cmd: &clap::Command, path: &str, commands: &mut Vec<String>) {
            assert!(
                cmd.get_about().is_some_and(|a| !a.to_string().is_empty()),
                "{path}: no description"
            );
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                assert!(
                    arg.get_help().is_some_and(|h| !h.to_string().is_empty()),
                    "{path} --{}: no description",
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub_path = format!("{path} {}", sub.get_name());
                commands.push(sub_path.clone());
                walk(sub, &sub_path, commands);
            }
        }
        let cmd = crate::help::command();
        cmd.clone().debug_assert();
        let mut commands = Vec::new();
        walk(&cmd, "keybound", &mut commands);
        for deep in [
            "keybound keycloak token",
            "keybound flex capture-context",
            "keybound provisioning verify-auth-code",
        ] {
            assert!(commands.iter().any(|c| c == deep), "{deep}: {commands:?}");
        }
    }
}

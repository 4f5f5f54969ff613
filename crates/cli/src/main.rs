//! # keybound
//!
//! The command-line tool over keybound's crates: keys (generate, public, export; list and delete in a token), JWT (sign, verify, decode),
//! JWE (encrypt, decrypt), and the partner flows. Every private-key operation goes through a key reference
//! (`file:PATH`, `env:VAR`, `pkcs11:…`), so the same commands work with files and HSMs.
//!
//! Exit codes, one rule for every command (README.md, "Exit codes"; `tests/exit_codes.rs`): 0 success; 1 the
//! input — a token, JWE, capture context, partner answer, batch line — was judged and rejected; 2 usage,
//! configuration, I/O, network and key-backend failures (an HSM failing while signing is 2 everywhere). One
//! line on stderr says why.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod context;
mod error;
mod flex;
mod io;
mod jwe;
mod jwt;
mod keycloak;
mod keys;
mod provisioning;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Context;

/// keybound: JOSE signing, verification and encryption with keys that stay in their backend.
#[derive(Debug, Parser)]
#[command(name = "keybound", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (settings can also come from KEYBOUND_… environment variables).
    #[arg(long, global = true, env = "KEYBOUND_CONFIG")]
    config: Option<PathBuf>,

    /// Diagnostics on stderr, as a tracing filter (error, warn, info, debug, trace, or e.g.
    /// 'warn,keybound::audit=info'). The default, error, leaves failures to the command's own one-line
    /// message; warn adds retries and the libraries' failure events.
    #[arg(long, global = true, default_value = "error", env = "KEYBOUND_LOG")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys, print public keys, export them for partner onboarding, list and delete token keys.
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
    /// Thales push provisioning: authorization codes (one or in batch) and enrollment-data JWEs.
    #[command(subcommand)]
    Provisioning(provisioning::Cmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("keybound: --log / KEYBOUND_LOG: not a log filter ({e})");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a person at a terminal, not in log files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = Context::load(cli.config.as_deref()).and_then(|ctx| match cli.command {
        Command::Keys(cmd) => keys::run(cmd, &ctx),
        Command::Jwt(cmd) => jwt::run(cmd, &ctx),
        Command::Jwe(cmd) => jwe::run(cmd, &ctx),
        Command::Flex(cmd) => flex::run(cmd, &ctx),
        Command::Keycloak(cmd) => keycloak::run(cmd, &ctx),
        Command::Provisioning(cmd) => provisioning::run(cmd, &ctx),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keybound: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

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
        let mut cmd = Cli::command();
        cmd.build();
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

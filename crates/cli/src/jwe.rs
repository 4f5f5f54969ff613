//! `keybound jwe …`: encrypt stdin to a public key (SPKI PEM, X.509 certificate, JWK or JWKS) as a compact
//! JWE, and decrypt a compact JWE from stdin through a key reference (the CEK is unwrapped inside the key's
//! backend).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use jose_core::jwe::{DecryptOptions, EncryptOptions};
use jose_core::{ContentEncryption, JoseError, KeyManagementAlgorithm};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Encrypt stdin to --pubkey; print the compact JWE.
    Encrypt(EncryptArgs),
    /// Decrypt a compact JWE from stdin with --key; write the plaintext to stdout. Exit 1 when rejected.
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Recipient public key: SPKI PEM or DER, X.509 certificate (PEM or DER; a PEM chain leaf first), JWK or
    /// JWKS (RSA; a JWK whose `use` or `key_ops` rule out encryption is not used).
    #[arg(long)]
    pubkey: PathBuf,
    /// Key management algorithm.
    #[arg(long, value_parser = ["RSA-OAEP", "RSA-OAEP-256"])]
    alg: String,
    /// Content encryption.
    #[arg(long, value_parser = ["A256GCM", "A128GCM"])]
    enc: String,
    /// Header `kid` (default: the JWK's kid, if it has one). When the --pubkey keys carry kids it also
    /// selects the key with that kid; keys without kids (SPKI PEM, a JWK without `kid`) are not selected by it.
    #[arg(long)]
    kid: Option<String>,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
    #[arg(long)]
    key: Option<String>,
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    match cmd {
        Cmd::Encrypt(a) => encrypt(&a),
        Cmd::Decrypt(a) => decrypt(&a, ctx),
    }
}

fn encrypt(a: &EncryptArgs) -> CliResult {
    let alg: KeyManagementAlgorithm = a.alg.parse().map_err(CliError::usage)?;
    let enc: ContentEncryption = a.enc.parse().map_err(CliError::usage)?;
    let keys = crate::jwt::load_keys(&a.pubkey)?;
    // --kid is the header's kid; it picks a key only among keys that have kids to pick by. Keys whose JWK
    // `use` / `key_ops` rule out encryption are never picked.
    let recipient = keys
        .select_for_encryption(a.kid.as_deref())
        .map_err(|e| CliError::usage(format!("--pubkey: {e}")))?;
    let mut options = EncryptOptions::new();
    options.kid = a.kid.clone().or_else(|| recipient.kid.clone());
    let plaintext = zeroize::Zeroizing::new(io::read_stdin()?);
    let jwe = jose_core::jwe::encrypt(&recipient.key, alg, enc, &plaintext, &options)
        .map_err(CliError::usage)?;
    io::print_line(&jwe)
}

fn decrypt(a: &DecryptArgs, ctx: &Context) -> CliResult {
    let key = ctx.open_key(a.key.as_deref())?;
    let input = io::read_stdin()?;
    let token =
        String::from_utf8(input).map_err(|_| CliError::rejected("JWE rejected: not UTF-8 text"))?;
    let out = jose_core::jwe::decrypt(
        token.trim_end_matches(['\n', '\r']),
        key.as_ref(),
        &DecryptOptions::default(),
    )
    .map_err(|e| match e {
        JoseError::Key(k) => CliError::usage(k),
        other => CliError::rejected(format!("JWE rejected: {other}")),
    })?;
    io::write_stdout(&out.plaintext)
}

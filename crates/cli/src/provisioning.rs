//! `keybound provisioning …`: Thales push provisioning for issuers.
//!
//! - `auth-code`: one authorization code (`--sub`, `--aud`), or many from JSON lines (`--batch FILE|-`),
//!   signed through `--key` (file, env or PKCS#11); batch output is one JSON line per input line, in input
//!   order, with a progress bar when stderr is a terminal and a summary line on stderr at the end;
//! - `encrypt-card`: the App2App enrollment-data JWE of a card-data JSON document, to the Thales key or
//!   certificate;
//! - `push`: authorization code and enrollment data for the same card, as one JSON object;
//! - `verify-auth-code`: checks an authorization code against the issuer's public key or certificate.
//!
//! Settings from the `[provisioning]` configuration section (or `KEYBOUND_PROVISIONING__…`): `issuer_id`,
//! `kid`, `key`, `ttl`, `concurrency`, `thales_public_key`, `thales_kid`, `product_id`; flags win.
//!
//! Exit codes (the rule of every command, README.md): 0 success; 1 a code was rejected by `verify-auth-code`,
//! or batch lines were refused (each output line says why); 2 usage, configuration, input or I/O errors
//! (including requests the Thales rules refuse, such as a ttl over 300 s) and the key failing while signing,
//! also in a batch. Card data is read into wiped buffers and never printed.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use provisioning_signer::batch::{self, BatchOptions};
use provisioning_signer::{
    Audience, AuthCodeRequest, AuthCodeSigner, AuthCodeVerifier, CardData, EnrollmentEncryptor,
    ProvisioningError, Subject,
};
use serde::Deserialize;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

const AUDIENCES: [&str; 3] = ["GOOGLE_PAY", "APPLE_PAY", "SAMSUNG_PAY"];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Sign one authorization code (--sub, --aud), or many from JSON lines (--batch FILE|-).
    AuthCode(AuthCodeArgs),
    /// Encrypt card data (JSON) as the App2App enrollment-data JWE to the Thales key or certificate.
    EncryptCard(EncryptCardArgs),
    /// Sign an authorization code for a card and encrypt its card data, printed together as JSON.
    Push(PushArgs),
    /// Verify an authorization code with the issuer's public key or certificate. Exit 1 when rejected.
    VerifyAuthCode(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuthCodeArgs {
    /// Issuer key reference (file:PATH, env:VAR, pkcs11:…) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// The issuerId agreed at onboarding (`iss`).
    #[arg(long)]
    issuer_id: Option<String>,
    /// Header kid agreed at onboarding (default: the key's RFC 7638 thumbprint).
    #[arg(long)]
    kid: Option<String>,
    /// The subject: the card's issuerCardRefId, or with --token-id a tokenId.
    #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
    sub: Option<String>,
    /// --sub is a tokenId (lifecycle operation), not an issuerCardRefId.
    #[arg(long, conflicts_with = "batch")]
    token_id: bool,
    /// The token requestor.
    #[arg(long, value_parser = AUDIENCES, required_unless_present = "batch", conflicts_with = "batch")]
    aud: Option<String>,
    /// Lifetime in seconds (default 120, at most 300).
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
    /// Leave out the jti claim (on by default).
    #[arg(long)]
    no_jti: bool,
    /// Sign one code per JSON line of FILE (or - for stdin): {"sub": "…", "aud": "APPLE_PAY"}, optionally
    /// "token_id": true and "ttl": N; each member at most once. Prints {"sub": …, "jwt": …} or
    /// {"line": N, "sub": …, "error": …} per line (N: the input line number; no sub when it could not be read).
    #[arg(long, value_name = "FILE|-")]
    batch: Option<PathBuf>,
    /// Signing threads in batch mode (default: CPU count; 8 for PKCS#11 keys).
    #[arg(long)]
    concurrency: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Thales public key: SPKI PEM, X.509 certificate (PEM or DER) or JWK.
    #[arg(long)]
    pubkey: Option<PathBuf>,
    /// The issuerId agreed at onboarding (header x-gto-issuerid).
    #[arg(long)]
    issuer_id: Option<String>,
    /// Header x-gto-productid.
    #[arg(long)]
    product_id: Option<String>,
    /// Header kid of the Thales key (default: the JWK's kid, if --pubkey is a JWK with one).
    #[arg(long)]
    thales_kid: Option<String>,
    /// Card data JSON: a file, or - for stdin. Fields: issuerCardRefId, fpan, exp (MMYY), cardHolderName,
    /// optionally postalAddress, phoneNumber, phoneNumberCountryCode, email.
    #[arg(long, value_name = "FILE|-")]
    card: PathBuf,
}

#[derive(Debug, Args)]
pub struct EncryptCardArgs {
    #[command(flatten)]
    encrypt: EncryptArgs,
    /// Refuse unless the card's issuerCardRefId equals this authorization-code sub.
    #[arg(long)]
    sub: Option<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    encrypt: EncryptArgs,
    /// Issuer key reference (file:PATH, env:VAR, pkcs11:…) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Header kid of the authorization code (default: the key's RFC 7638 thumbprint).
    #[arg(long)]
    kid: Option<String>,
    /// The token requestor.
    #[arg(long, value_parser = AUDIENCES)]
    aud: String,
    /// Lifetime of the authorization code in seconds (default 120, at most 300).
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Issuer public key: SPKI PEM, X.509 certificate (PEM or DER) or JWK.
    #[arg(long)]
    pubkey: PathBuf,
    /// The authorization code: a file, or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    token: PathBuf,
    /// Required issuerId (`iss`).
    #[arg(long)]
    issuer_id: Option<String>,
    /// Required header kid.
    #[arg(long)]
    kid: Option<String>,
    /// Required audience.
    #[arg(long, value_parser = AUDIENCES)]
    aud: Option<String>,
    /// Clock leeway in seconds (0 to 300).
    #[arg(long, default_value_t = 60, value_parser = crate::jwt::parse_leeway)]
    leeway: u64,
}

/// The `[provisioning]` configuration section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    issuer_id: Option<String>,
    kid: Option<String>,
    key: Option<String>,
    ttl: Option<u64>,
    concurrency: Option<usize>,
    thales_public_key: Option<PathBuf>,
    thales_kid: Option<String>,
    product_id: Option<String>,
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    let settings = ctx.settings.provisioning.clone();
    match cmd {
        Cmd::AuthCode(a) => auth_code(a, &settings, ctx),
        Cmd::EncryptCard(a) => encrypt_card(&a, &settings),
        Cmd::Push(a) => push(a, &settings, ctx),
        Cmd::VerifyAuthCode(a) => verify(&a),
    }
}

/// Exit code for a library error: a rejected authorization code is 1; requests the rules refuse are usage
/// errors (2), and so are failures of the key while signing or of the encryption (2: a backend failure).
fn cli_error(e: ProvisioningError) -> CliError {
    match e {
        ProvisioningError::Rejected { .. } => CliError::rejected(e),
        _ => CliError::usage(e),
    }
}

fn audience(s: &str) -> CliResult<Audience> {
    s.parse().map_err(cli_error)
}

fn issuer_id(arg: Option<String>, settings: &Settings) -> CliResult<String> {
    arg.or_else(|| settings.issuer_id.clone()).ok_or_else(|| {
        CliError::usage("no issuer id: pass --issuer-id ID or set `issuer_id` in [provisioning]")
    })
}

fn signer(
    key: Option<&str>,
    issuer_id: String,
    kid: Option<String>,
    settings: &Settings,
    ctx: &Context,
) -> CliResult<AuthCodeSigner> {
    let key = ctx.open_key(key.or(settings.key.as_deref()))?;
    let mut signer = AuthCodeSigner::new(key, issuer_id).map_err(cli_error)?;
    if let Some(kid) = kid.or_else(|| settings.kid.clone()) {
        signer = signer.with_kid(kid).map_err(cli_error)?;
    }
    if let Some(ttl) = settings.ttl {
        signer = signer.with_default_ttl(ttl).map_err(cli_error)?;
    }
    Ok(signer)
}

fn auth_code(a: AuthCodeArgs, settings: &Settings, ctx: &Context) -> CliResult {
    if a.concurrency.is_some() && a.batch.is_none() {
        return Err(CliError::usage("--concurrency applies only with --batch"));
    }
    let issuer_id = issuer_id(a.issuer_id, settings)?;
    let signer = signer(a.key.as_deref(), issuer_id, a.kid, settings, ctx)?.with_jti(!a.no_jti);
    let signer = match a.ttl {
        Some(ttl) => signer.with_default_ttl(ttl).map_err(cli_error)?,
        None => signer,
    };
    if let Some(path) = &a.batch {
        let concurrency = a.concurrency.or(settings.concurrency);
        return run_batch(&signer, path, concurrency);
    }
    // clap guarantees --sub and --aud without --batch.
    let (Some(sub), Some(aud)) = (a.sub, a.aud) else {
        return Err(CliError::usage(
            "--sub and --aud are required without --batch",
        ));
    };
    let subject = if a.token_id {
        Subject::TokenId(sub)
    } else {
        Subject::IssuerCardRefId(sub)
    };
    let code = signer
        .sign(&AuthCodeRequest::new(subject, audience(&aud)?))
        .map_err(cli_error)?;
    io::print_line(code.as_str())
}

fn run_batch(signer: &AuthCodeSigner, path: &Path, concurrency: Option<usize>) -> CliResult {
    let mut options = BatchOptions::for_signer(signer);
    if let Some(n) = concurrency {
        if n == 0 {
            return Err(CliError::usage("--concurrency must be at least 1"));
        }
        options = BatchOptions::with_concurrency(n);
    }
    let (input, total_bytes): (Box<dyn BufRead + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        let size = file
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        (Box::new(BufReader::with_capacity(64 * 1024, file)), size)
    };
    let bar = provisioning_signer::batch::TerminalProgress::stderr(total_bytes);
    let stdout = std::io::stdout().lock();
    let result = batch::run(signer, input, stdout, &options, &mut |p| {
        if let Some(bar) = &bar {
            bar.update(p);
        }
    });
    if let Some(bar) = &bar {
        bar.finish();
    }
    let summary = result.map_err(cli_error)?;
    eprintln!("keybound: {summary}");
    if summary.key_failures > 0 {
        return Err(CliError::usage(format!(
            "the key failed while signing {} of {} lines; check the key's backend (see the output lines)",
            summary.key_failures, summary.total
        )));
    }
    if summary.errors > 0 {
        return Err(CliError::rejected(format!(
            "{} of {} lines failed; their output lines say why",
            summary.errors, summary.total
        )));
    }
    Ok(())
}

fn encryptor(a: &EncryptArgs, settings: &Settings) -> CliResult<EnrollmentEncryptor> {
    let path = a
        .pubkey
        .as_ref()
        .or(settings.thales_public_key.as_ref())
        .ok_or_else(|| {
            CliError::usage(
                "no Thales key: pass --pubkey FILE or set `thales_public_key` in [provisioning]",
            )
        })?;
    let bytes = io::read_input(path)?;
    let peer = provisioning_signer::load_public_key(&bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    let issuer_id = issuer_id(a.issuer_id.clone(), settings)?;
    let recipient = peer
        .for_encryption()
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    let mut encryptor = EnrollmentEncryptor::new(recipient, issuer_id).map_err(cli_error)?;
    if let Some(p) = a.product_id.clone().or_else(|| settings.product_id.clone()) {
        encryptor = encryptor.with_product_id(p).map_err(cli_error)?;
    }
    if let Some(kid) = a
        .thales_kid
        .clone()
        .or_else(|| settings.thales_kid.clone())
        .or(peer.kid)
    {
        encryptor = encryptor.with_kid(kid).map_err(cli_error)?;
    }
    Ok(encryptor)
}

fn read_card(path: &Path) -> CliResult<CardData> {
    let bytes = io::read_secret(path)?;
    CardData::from_json(&bytes).map_err(cli_error)
}

fn encrypt_card(a: &EncryptCardArgs, settings: &Settings) -> CliResult {
    let encryptor = encryptor(&a.encrypt, settings)?;
    let card = read_card(&a.encrypt.card)?;
    if a.sub
        .as_ref()
        .is_some_and(|sub| *sub != card.issuer_card_ref_id)
    {
        return Err(cli_error(ProvisioningError::SubjectMismatch));
    }
    let jwe = encryptor.encrypt(&card).map_err(cli_error)?;
    io::print_line(&jwe)
}

fn push(a: PushArgs, settings: &Settings, ctx: &Context) -> CliResult {
    let encryptor = encryptor(&a.encrypt, settings)?;
    let card = read_card(&a.encrypt.card)?;
    let signer = signer(
        a.key.as_deref(),
        encryptor.issuer_id().to_owned(),
        a.kid,
        settings,
        ctx,
    )?;
    let both = provisioning_signer::push_provisioning(
        &signer,
        &encryptor,
        &card,
        audience(&a.aud)?,
        a.ttl,
    )
    .map_err(cli_error)?;
    let out = serde_json::json!({
        "authorizationCode": both.auth_code.as_str(),
        "enrollmentData": both.enrollment_data,
    });
    let mut line = serde_json::to_vec(&out).map_err(|e| CliError::usage(e.to_string()))?;
    line.push(b'\n');
    io::write_stdout(&line)
}

fn verify(a: &VerifyArgs) -> CliResult {
    let bytes = io::read_input(&a.pubkey)?;
    let peer = provisioning_signer::load_public_key(&bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.pubkey.display())))?;
    let key = peer
        .for_verification()
        .map_err(|e| CliError::usage(format!("{}: {e}", a.pubkey.display())))?;
    let mut verifier = AuthCodeVerifier::new(key)
        .map_err(cli_error)?
        .leeway(a.leeway);
    if let Some(iss) = &a.issuer_id {
        verifier = verifier.issuer_id(iss.clone());
    }
    if let Some(kid) = &a.kid {
        verifier = verifier.kid(kid.clone());
    }
    if let Some(aud) = &a.aud {
        verifier = verifier.audience(audience(aud)?);
    }
    let token = io::read_input(&a.token)?;
    let token = String::from_utf8(token)
        .map_err(|_| CliError::rejected("authorization code rejected: not UTF-8"))?;
    let verified = verifier.verify(token.trim()).map_err(cli_error)?;
    let mut out = std::io::stdout().lock();
    let json = serde_json::to_string_pretty(
        &serde_json::json!({"kid": verified.kid, "claims": verified.claims}),
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    writeln!(out, "{json}").map_err(|e| CliError::usage(format!("cannot write stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        cmd: Cmd,
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("keybound").chain(args.iter().copied()))
            .map(|w| w.cmd)
    }

    #[test]
    fn single_and_batch_forms_parse() {
        let one = parse(&[
            "auth-code",
            "--key",
            "file:k",
            "--issuer-id",
            "i",
            "--sub",
            "s",
            "--aud",
            "APPLE_PAY",
        ]);
        assert!(matches!(
            one,
            Ok(Cmd::AuthCode(AuthCodeArgs { batch: None, .. }))
        ));
        let many = parse(&[
            "auth-code",
            "--key",
            "file:k",
            "--issuer-id",
            "i",
            "--batch",
            "-",
            "--concurrency",
            "4",
        ]);
        assert!(matches!(
            many,
            Ok(Cmd::AuthCode(AuthCodeArgs {
                batch: Some(_),
                concurrency: Some(4),
                ..
            }))
        ));
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        // Unknown audience, missing --aud, --sub together with --batch.
        for args in [
            &[
                "auth-code",
                "--issuer-id",
                "i",
                "--sub",
                "s",
                "--aud",
                "VISA_PAY",
            ][..],
            &["auth-code", "--issuer-id", "i", "--sub", "s"][..],
            &[
                "auth-code",
                "--issuer-id",
                "i",
                "--batch",
                "-",
                "--sub",
                "s",
            ][..],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn library_errors_map_to_exit_codes() {
        assert_eq!(
            cli_error(ProvisioningError::TtlTooLong { ttl: 301, max: 300 }).code,
            2
        );
        assert_eq!(cli_error(ProvisioningError::SubjectMismatch).code, 2);
        assert_eq!(
            cli_error(ProvisioningError::Rejected {
                reason: "x".into(),
                source: None
            })
            .code,
            1
        );
        // The key failing while signing is a backend failure, never a rejection.
        assert_eq!(
            cli_error(ProvisioningError::Key(key_provider::KeyError::Crypto)).code,
            2
        );
        assert_eq!(
            cli_error(ProvisioningError::Jose(jose_core::JoseError::Key(
                key_provider::KeyError::Crypto
            )))
            .code,
            2
        );
    }
}

//! `keybound provisioning …`: Thales push provisioning for issuers.
//!
//! - `auth-code`: one authorization code (`--sub`, `--aud`), or many from JSON lines (`--batch FILE|-`),
//!   signed through `--key` (file, env, PKCS#11 or a key service); batch output is one JSON line per input
//!   line, in input order, with a progress bar when stderr is a terminal and a summary line on stderr at the
//!   end;
//! - `encrypt-card`: a card-data JSON document encrypted for Thales: `--format pkcs7` (default; classic push
//!   provisioning, the Push Provisioning SDK) as CMS EnvelopedData to the TSH Issuer Gateway certificate,
//!   `--format jwe` as the App2App enrollment-data JWE to the Thales key or certificate;
//! - `push`: authorization code and card data (either format) for the same card, as one JSON object;
//! - `decrypt`: CMS EnvelopedData the TSH encrypted to the issuer's certificate, its content key unwrapped
//!   through `--key` (the key may stay in an HSM); exit 1 when refused or when decryption fails;
//! - `verify-auth-code`: checks an authorization code against the issuer's public key or certificate.
//!
//! Settings from the `[provisioning]` configuration section (or `KEYBOUND_PROVISIONING__…`): `issuer_id`,
//! `kid`, `key`, `ttl`, `concurrency`, `thales_public_key`, `thales_kid`, `product_id`, `format`; flags win.
//!
//! Exit codes (the rule of every command, README.md): 0 success; 1 a code was rejected by `verify-auth-code`,
//! CMS data was refused or failed to decrypt (`decrypt`), or batch lines were refused (each output line says why); 2 usage, configuration, input or I/O errors
//! (including requests the Thales rules refuse, such as a ttl over 300 s) and the key failing while signing,
//! also in a batch. Card data is read into wiped buffers and never printed.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use provisioning_signer::batch::{self, BatchOptions};
use provisioning_signer::cms::{Encoding, EnvelopeEncryptor, KeyTransport};
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
    /// Encrypt card data (JSON) for Thales: PKCS#7 to the TSH Issuer Gateway certificate (classic push,
    /// default) or the App2App enrollment-data JWE (--format jwe).
    EncryptCard(EncryptCardArgs),
    /// Sign an authorization code for a card and encrypt its card data, printed together as JSON.
    Push(PushArgs),
    /// Decrypt CMS (PKCS#7) EnvelopedData from stdin, e.g. PCI fields the TSH encrypted to the issuer's
    /// certificate, with --key; write the plaintext to stdout. Exit 1 when refused or decryption fails.
    Decrypt(DecryptArgs),
    /// Verify an authorization code with the issuer's public key or certificate. Exit 1 when rejected.
    VerifyAuthCode(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuthCodeArgs {
    /// Issuer key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
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
    /// Signing threads in batch mode (default: CPU count; 8 for PKCS#11 keys; 16 for vault: and aws-kms:
    /// keys, one request in flight per thread).
    #[arg(long)]
    concurrency: Option<usize>,
}

/// The card-data format, by Thales product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Classic push provisioning (the Push Provisioning SDK): PKCS#7/CMS EnvelopedData, AES-256-CBC, to the
    /// TSH Issuer Gateway certificate (--cert).
    Pkcs7,
    /// App2App enrollment data: compact JWE, RSA-OAEP-256 + A256GCM, x-gto-issuerid header (--issuer-id).
    Jwe,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Card-data format: pkcs7 for classic push provisioning (Push Provisioning SDK), jwe for App2App
    /// enrollment [default: pkcs7, or `format` in [provisioning]].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The TSH Issuer Gateway certificate from onboarding (X.509, PEM or DER); --pubkey naming a certificate
    /// does the same.
    #[arg(long, conflicts_with = "pubkey")]
    cert: Option<PathBuf>,
    /// Thales public key: SPKI PEM, X.509 certificate (PEM or DER) or JWK (--format pkcs7 needs a
    /// certificate).
    #[arg(long)]
    pubkey: Option<PathBuf>,
    /// pkcs7: key transport, rsa-oaep-sha256 (default; MGF1-SHA-256) or rsa-pkcs1 (RSAES-PKCS1-v1_5, only
    /// when the Thales programme is configured for it).
    #[arg(long, value_parser = ["rsa-oaep-sha256", "rsa-pkcs1"])]
    key_transport: Option<String>,
    /// pkcs7: output encoding, base64 (default; the SDK's form), hex (TSH server APIs) or der (encrypt-card
    /// only).
    #[arg(long, value_parser = ["base64", "hex", "der"])]
    encoding: Option<String>,
    /// The issuerId agreed at onboarding (jwe: header x-gto-issuerid; push: the code's iss).
    #[arg(long)]
    issuer_id: Option<String>,
    /// jwe: header x-gto-productid.
    #[arg(long)]
    product_id: Option<String>,
    /// jwe: header kid of the Thales key (default: the JWK's kid, if --pubkey is a JWK with one).
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
    /// Issuer key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
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
pub struct DecryptArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name: the private
    /// key of the certificate the data was encrypted to (ISSUER_PKCS7_CERT).
    #[arg(long)]
    key: String,
    /// Encoding of the input on stdin: base64 (also PEM), hex or der.
    #[arg(long, value_parser = ["base64", "hex", "der"], default_value = "base64")]
    encoding: String,
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
    format: Option<Format>,
}

impl EncryptArgs {
    /// --format, else `format` in [provisioning], else pkcs7 (classic push).
    fn format(&self, settings: &Settings) -> Format {
        self.format.or(settings.format).unwrap_or(Format::Pkcs7)
    }
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    let settings = ctx.settings.provisioning.clone();
    match cmd {
        Cmd::AuthCode(a) => auth_code(a, &settings, ctx),
        Cmd::EncryptCard(a) => encrypt_card(&a, &settings),
        Cmd::Push(a) => push(a, &settings, ctx),
        Cmd::Decrypt(a) => decrypt(&a, ctx),
        Cmd::VerifyAuthCode(a) => verify(&a),
    }
}

/// Exit code for a library error: a rejected authorization code, refused CMS data and a failed decryption
/// are 1; requests the rules refuse are usage
/// errors (2), and so are failures of the key while signing or of the encryption (2: a backend failure).
fn cli_error(e: ProvisioningError) -> CliError {
    match e {
        ProvisioningError::Rejected { .. }
        | ProvisioningError::CmsRefused { .. }
        | ProvisioningError::DecryptionFailed => CliError::rejected(e),
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
        let backend = signer.key().backend_name();
        let what = if matches!(backend, "vault" | "aws-kms") {
            format!("the key service ({backend})")
        } else {
            format!("the key ({backend})")
        };
        return Err(CliError::usage(format!(
            "{what} failed while signing {} of {} lines; all {} lines were written ({} signed), the failed \
             ones as error lines with their line numbers: check the key's backend and re-run them",
            summary.key_failures, summary.total, summary.total, summary.signed
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

/// The recipient file: --cert, --pubkey or `thales_public_key`.
fn recipient_path<'a>(a: &'a EncryptArgs, settings: &'a Settings) -> CliResult<&'a PathBuf> {
    a.cert
        .as_ref()
        .or(a.pubkey.as_ref())
        .or(settings.thales_public_key.as_ref())
        .ok_or_else(|| {
            CliError::usage(match a.format(settings) {
                Format::Pkcs7 => {
                    "no TSH Issuer Gateway certificate: pass --cert FILE or set `thales_public_key` in \
                     [provisioning]"
                }
                Format::Jwe => {
                    "no Thales key: pass --pubkey FILE or set `thales_public_key` in [provisioning]"
                }
            })
        })
}

fn load_peer(path: &Path) -> CliResult<provisioning_signer::PeerKey> {
    let bytes = io::read_input(path)?;
    provisioning_signer::load_public_key(&bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

/// The card-data encryptor of either format.
enum CardEncryptor {
    Pkcs7(EnvelopeEncryptor, Encoding),
    Jwe(EnrollmentEncryptor),
}

impl CardEncryptor {
    /// The encrypted card data as text (base64, hex or the JWE), or DER bytes.
    fn encrypt(&self, card: &CardData) -> CliResult<Vec<u8>> {
        match self {
            Self::Pkcs7(e, encoding) => Ok(encoding.encode(&e.encrypt(card).map_err(cli_error)?)),
            Self::Jwe(e) => Ok(e.encrypt(card).map_err(cli_error)?.into_bytes()),
        }
    }
}

fn cms_encryptor(a: &EncryptArgs, settings: &Settings) -> CliResult<(EnvelopeEncryptor, Encoding)> {
    for (given, flag) in [
        (a.product_id.is_some(), "--product-id"),
        (a.thales_kid.is_some(), "--thales-kid"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} is a JWE header of App2App enrollment data (--format jwe); the PKCS#7 card data of \
                 classic push has no header"
            )));
        }
    }
    let path = recipient_path(a, settings)?;
    let peer = load_peer(path)?;
    let Some(certificate) = &peer.certificate else {
        return Err(CliError::usage(format!(
            "{}: --format pkcs7 needs the TSH Issuer Gateway certificate (X.509, PEM or DER), since CMS names \
             the recipient by the certificate's issuer and serial number; this file holds a bare public key\n  \
             hint: pass --cert with the certificate received at onboarding, or --format jwe for App2App",
            path.display()
        )));
    };
    let mut encryptor = EnvelopeEncryptor::new(certificate)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    if let Some(t) = &a.key_transport {
        let transport: KeyTransport = t.parse().map_err(cli_error)?;
        encryptor = encryptor.with_key_transport(transport);
    }
    let encoding = match &a.encoding {
        Some(e) => e.parse().map_err(cli_error)?,
        None => Encoding::default(),
    };
    Ok((encryptor, encoding))
}

fn jwe_encryptor(a: &EncryptArgs, settings: &Settings) -> CliResult<EnrollmentEncryptor> {
    for (given, flag) in [
        (a.key_transport.is_some(), "--key-transport"),
        (a.encoding.is_some(), "--encoding"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} applies to --format pkcs7 (classic push); a JWE is RSA-OAEP-256 in compact form"
            )));
        }
    }
    let path = recipient_path(a, settings)?;
    let peer = load_peer(path)?;
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

fn card_encryptor(a: &EncryptArgs, settings: &Settings) -> CliResult<CardEncryptor> {
    match a.format(settings) {
        Format::Pkcs7 => {
            let (e, encoding) = cms_encryptor(a, settings)?;
            Ok(CardEncryptor::Pkcs7(e, encoding))
        }
        Format::Jwe => Ok(CardEncryptor::Jwe(jwe_encryptor(a, settings)?)),
    }
}

fn read_card(path: &Path) -> CliResult<CardData> {
    let bytes = io::read_secret(path)?;
    CardData::from_json(&bytes).map_err(cli_error)
}

fn encrypt_card(a: &EncryptCardArgs, settings: &Settings) -> CliResult {
    if a.encrypt.format(settings) == Format::Pkcs7 && a.encrypt.issuer_id.is_some() {
        return Err(CliError::usage(
            "--issuer-id is the x-gto-issuerid header of App2App enrollment data (--format jwe); the PKCS#7 \
             card data of classic push has no header (push uses it for the authorization code)",
        ));
    }
    let encryptor = card_encryptor(&a.encrypt, settings)?;
    let card = read_card(&a.encrypt.card)?;
    if a.sub
        .as_ref()
        .is_some_and(|sub| *sub != card.issuer_card_ref_id)
    {
        return Err(cli_error(ProvisioningError::SubjectMismatch));
    }
    let mut out = encryptor.encrypt(&card)?;
    if !matches!(encryptor, CardEncryptor::Pkcs7(_, Encoding::Der)) {
        out.push(b'\n');
    }
    io::write_stdout(&out)
}

fn push(a: PushArgs, settings: &Settings, ctx: &Context) -> CliResult {
    let encryptor = card_encryptor(&a.encrypt, settings)?;
    if matches!(encryptor, CardEncryptor::Pkcs7(_, Encoding::Der)) {
        return Err(CliError::usage(
            "--encoding der cannot go into push's JSON output; use base64 or hex (or encrypt-card for DER)",
        ));
    }
    let card = read_card(&a.encrypt.card)?;
    let issuer_id = match &encryptor {
        CardEncryptor::Jwe(e) => e.issuer_id().to_owned(),
        CardEncryptor::Pkcs7(..) => issuer_id(a.encrypt.issuer_id.clone(), settings)?,
    };
    let signer = signer(a.key.as_deref(), issuer_id, a.kid, settings, ctx)?;
    let audience = audience(&a.aud)?;
    let out = match &encryptor {
        CardEncryptor::Jwe(e) => {
            let both = provisioning_signer::push_provisioning(&signer, e, &card, audience, a.ttl)
                .map_err(cli_error)?;
            serde_json::json!({
                "authorizationCode": both.auth_code.as_str(),
                "enrollmentData": both.enrollment_data,
            })
        }
        CardEncryptor::Pkcs7(e, encoding) => {
            let both =
                provisioning_signer::cms::push_provisioning(&signer, e, &card, audience, a.ttl)
                    .map_err(cli_error)?;
            let text = String::from_utf8(encoding.encode(&both.card_data))
                .map_err(|_| CliError::usage("internal error: encoded card data is not text"))?;
            serde_json::json!({
                "authorizationCode": both.auth_code.as_str(),
                "cardData": text,
            })
        }
    };
    let mut line = serde_json::to_vec(&out).map_err(|e| CliError::usage(e.to_string()))?;
    line.push(b'\n');
    io::write_stdout(&line)
}

fn decrypt(a: &DecryptArgs, ctx: &Context) -> CliResult {
    let encoding: Encoding = a.encoding.parse().map_err(cli_error)?;
    let key = ctx.open_key(Some(&a.key))?;
    let input = io::read_stdin()?;
    let der = encoding.decode(&input).map_err(cli_error)?;
    let plaintext = provisioning_signer::cms::decrypt(&der, key.as_ref()).map_err(cli_error)?;
    io::write_stdout(&plaintext)
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

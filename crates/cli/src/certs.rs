//! `keybound keys csr`, `keys certificate`, `keys attach-cert`, and the certificate side of `keys public`:
//! onboarding with a CSR or a certificate whose signature the key's backend makes (keybound-pki), and the
//! certificate kept with its key (in the token for `pkcs11:` keys, `PATH.crt` beside a key file).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use jose_core::{Jwk, JwsAlgorithm};
use key_provider::{KeyError, KeyRef, KeyUsage, SignatureScheme};
use keybound_pki::{
    CertificateBuilder, CsrBuilder, DistinguishedName, PkiError, SubjectAltName, certificate_pem,
    csr_pem,
};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Args)]
pub struct CsrArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name; the backend
    /// signs the request.
    #[arg(long)]
    key: Option<String>,
    /// Subject distinguished name, most specific first: 'CN=acmebank,O=Acme Bank,C=FR' (escape a comma in a
    /// value as \,; serialNumber= accepted).
    #[arg(long)]
    subject: String,
    /// Subject alternative name, as openssl spells it: DNS:name, IP:address, URI:uri, email:address
    /// (repeatable).
    #[arg(long = "san", value_name = "VALUE")]
    sans: Vec<String>,
    /// Signature algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384). Default: RS256's
    /// sha256WithRSAEncryption for RSA keys, ES256 for P-256, ES384 for P-384. PS256 writes RSASSA-PSS with
    /// explicit parameters (SHA-256, MGF1-SHA-256, salt 32).
    #[arg(long)]
    alg: Option<String>,
    /// Write the PEM to FILE instead of stdout (atomically; never over an existing file without --force).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace --out FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct CertificateArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name; the backend
    /// signs the certificate.
    #[arg(long)]
    key: Option<String>,
    /// Subject (and issuer) distinguished name, most specific first: 'CN=acmebank,O=Acme Bank,C=FR'.
    #[arg(long)]
    subject: String,
    /// Validity in days from now (notBefore is backdated 5 minutes for clock skew).
    #[arg(long, default_value_t = keybound_pki::DEFAULT_DAYS)]
    days: u32,
    /// Subject alternative name: DNS:name, IP:address, URI:uri, email:address (repeatable).
    #[arg(long = "san", value_name = "VALUE")]
    sans: Vec<String>,
    /// Signature algorithm, as for `keys csr` (default from the key type).
    #[arg(long)]
    alg: Option<String>,
    /// What the key is for, as `keys generate --usage`: sign (keyUsage digitalSignature), sign,decrypt
    /// (digitalSignature and keyEncipherment; RSA only) or decrypt (keyEncipherment). Default: what a token
    /// records for the key (CKA_SIGN, CKA_DECRYPT), else sign.
    #[arg(long, value_parser = parse_usage)]
    usage: Option<KeyUsage>,
    /// Write the PEM to FILE instead of stdout (atomically; never over an existing file without --force).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also keep the certificate with the key: in the token for pkcs11: keys (CKO_CERTIFICATE with the key's
    /// CKA_ID and label), PATH.crt beside a file: key.
    #[arg(long)]
    store: bool,
    /// Replace --out FILE, and with --store the certificate kept with the key, if they exist.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct AttachCertArgs {
    /// Key reference (file:PATH or pkcs11:…) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// The key's certificate, PEM or DER (one certificate, not a chain); refused unless its public key is
    /// the key's.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Replace the certificate kept with the key, if there is one.
    #[arg(long)]
    force: bool,
}

fn parse_usage(s: &str) -> Result<KeyUsage, String> {
    s.parse()
        .map_err(|e: key_provider::UnknownKeyUsage| e.to_string())
}

impl From<PkiError> for CliError {
    fn from(e: PkiError) -> Self {
        Self::usage(e)
    }
}

fn subject_and_sans(
    subject: &str,
    sans: &[String],
) -> CliResult<(DistinguishedName, Vec<SubjectAltName>)> {
    let subject = subject
        .parse()
        .map_err(|e: PkiError| CliError::usage(format!("--subject: {e}")))?;
    let sans = sans
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e: PkiError| CliError::usage(format!("--san: {e}")))
        })
        .collect::<CliResult<_>>()?;
    Ok((subject, sans))
}

fn scheme(alg: Option<&str>) -> CliResult<Option<SignatureScheme>> {
    alg.map(|a| {
        a.parse::<JwsAlgorithm>()
            .map(JwsAlgorithm::scheme)
            .map_err(|e| CliError::usage(format!("--alg: {e}")))
    })
    .transpose()
}

/// Prints the PEM, or writes it to `out` and says so.
fn emit(pem: &str, out: Option<&Path>, force: bool) -> CliResult {
    match out {
        None => io::write_stdout(pem.as_bytes()),
        Some(path) => {
            io::write_file(path, pem.as_bytes(), force)?;
            io::print_line(&format!("wrote {}", path.display()))
        }
    }
}

/// A storing failure with what to do next.
fn storing_failed(e: KeyError) -> CliError {
    match e {
        KeyError::KeyExists { .. } | KeyError::AlreadyExists { .. } => CliError::usage(format!(
            "{e}\n  hint: pass --force to replace the certificate kept with the key"
        )),
        other => other.into(),
    }
}

pub fn csr(a: &CsrArgs, ctx: &Context) -> CliResult {
    let (subject, sans) = subject_and_sans(&a.subject, &a.sans)?;
    let scheme = scheme(a.alg.as_deref())?;
    if let Some(out) = &a.out {
        io::check_writable(out, a.force)?;
    }
    let key = ctx.open_key(a.key.as_deref())?;
    let mut builder = CsrBuilder::new(subject).scheme(scheme);
    builder.sans = sans;
    let der = builder.sign(key.as_ref())?;
    emit(&csr_pem(&der), a.out.as_deref(), a.force)
}

pub fn certificate(a: &CertificateArgs, ctx: &Context) -> CliResult {
    let (subject, sans) = subject_and_sans(&a.subject, &a.sans)?;
    let scheme = scheme(a.alg.as_deref())?;
    if let Some(out) = &a.out {
        io::check_writable(out, a.force)?;
    }
    let key_ref = ctx.key_ref(a.key.as_deref())?;
    if a.store {
        if let Some(refusal) = crate::keys::key_service_refusal(&key_ref, "certificate --store") {
            return Err(refusal);
        }
    }
    if a.store && matches!(key_ref, KeyRef::Env(_)) {
        return Err(CliError::usage(
            "--store keeps the certificate with a file: or pkcs11: key; an env: key has no place for it (use \
             --out FILE)",
        ));
    }
    let key = ctx.open_key(a.key.as_deref())?;
    let mut builder = CertificateBuilder::new(subject)
        .scheme(scheme)
        .days(a.days)
        .usage(a.usage);
    builder.sans = sans;
    let der = builder.sign(key.as_ref())?;
    if a.store {
        key_provider::store_certificate(&key_ref, &der, a.force, &ctx.open_options())
            .map_err(storing_failed)?;
    }
    emit(&certificate_pem(&der), a.out.as_deref(), a.force)
}

pub fn attach_cert(a: &AttachCertArgs, ctx: &Context) -> CliResult {
    let key_ref = ctx.key_ref(a.key.as_deref())?;
    if let Some(refusal) = crate::keys::key_service_refusal(&key_ref, "attach-cert") {
        return Err(refusal);
    }
    let bytes = io::read_input(&a.cert)?;
    let der = key_provider::certificate_der(&bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.cert.display())))?;
    key_provider::store_certificate(&key_ref, &der, a.force, &ctx.open_options())
        .map_err(storing_failed)?;
    let certificate = key_provider::Certificate::from_der(&der)?;
    io::print_line(&format!(
        "stored the certificate of {} ({}) with {key_ref}",
        certificate.public_key.describe(),
        jose_core::thumbprint(&certificate.public_key)
    ))
}

/// The certificate kept with the key `arg` names, if any (a key in a key service has none: keybound keeps
/// certificates with `pkcs11:` and `file:` keys only).
pub fn stored(arg: Option<&str>, ctx: &Context) -> CliResult<Option<Vec<u8>>> {
    let key_ref = ctx.key_ref(arg)?;
    if matches!(key_ref, KeyRef::Vault(_) | KeyRef::AwsKms(_)) {
        return Ok(None);
    }
    Ok(key_provider::read_certificate(
        &key_ref,
        &ctx.open_options(),
    )?)
}

/// `keys public --format cert`: the stored certificate's PEM.
pub fn print_stored(arg: Option<&str>, ctx: &Context) -> CliResult {
    match stored(arg, ctx)? {
        Some(der) => io::write_stdout(certificate_pem(&der).as_bytes()),
        None => Err(CliError::usage(
            "no certificate is kept with this key\n  hint: make one with `keybound keys certificate --store`, \
             or import the one you were issued with `keybound keys attach-cert`",
        )),
    }
}

/// Adds RFC 7517 `x5c` (the DER, standard base64) and `x5t#S256` (base64url SHA-256 of the DER).
pub fn add_x5c(jwk: &mut Jwk, der: &[u8]) {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    jwk.extra.insert(
        "x5c".into(),
        serde_json::json!([base64::engine::general_purpose::STANDARD.encode(der)]),
    );
    jwk.extra.insert(
        "x5t#S256".into(),
        serde_json::Value::String(jose_core::b64::encode(digest.as_ref())),
    );
}

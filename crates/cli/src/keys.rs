//! `keybound keys …`: generate a key in its backend, import a partner's key (PKCS#12 or PEM) into one, print
//! its public key (PEM, JWK, JWKS), export the `public_key.pem` + `public_key_digest.txt` pair partners ask
//! for at onboarding, make CSRs and certificates through the key's backend and keep a certificate with its
//! key (`keys csr`, `keys certificate`, `keys attach-cert`, `keys public --format cert`: module `certs`), and
//! list and delete the key pairs of a PKCS#11 token (`keys list`, `keys delete`; the token work is
//! `key_provider::pkcs11::{list_keys, delete_key}`).
//!
//! `keys list --format json` prints one object with stable field names (documented in docs/hsm.md,
//! "Listing and deleting keys"): `token` {`label`, `serial`} and `keys`, each with `label`, `id` (hex),
//! `type`, `kty`, `bits`, `curve`, `sign`, `decrypt`, `sensitive`, `extractable`, `always_sensitive`,
//! `never_extractable`, `public_key_object`, `thumbprint` (RFC 7638) and `certificates` [{`label`,
//! `subject`}]; `null` where the token does not say.
//!
//! `keys list` and `keys delete` work on `pkcs11:` references only. A `file:` or `env:` reference names one
//! key, not a store of keys: `keys list` refuses it (exit 2) and points to `keys public`, and `keys delete`
//! refuses it (exit 2): files and variables are deleted with the tools that made them. Key services
//! (`vault:`, `aws-kms:`) are managed with their own tools (policies, deletion windows, audit): `keys list`,
//! `keys delete`, `keys import` and `keys attach-cert` refuse their references (exit 2) and say which tool.
//!
//! Key services: `keys generate --key vault:NAME|aws-kms:alias/NAME` creates a non-exportable key in the
//! service (refusing an existing name); `keys rotate --key vault:NAME` adds a version to a Transit key and
//! prints it with the new version's thumbprint (the default `kid` of what the key signs from then on). Other
//! references are refused by `keys rotate` (exit 2): a key file or token key has no versions (generate a new
//! key), and AWS KMS does not rotate asymmetric keys (generate a new key and move the alias).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use jose_core::Jwk;
use key_provider::{EcCurve, KeyRef, KeySpec, KeyUsage, PublicKey};
use serde::Serialize;

use zeroize::Zeroizing;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Generate a new private key in the backend named by --key (file written PKCS#8 PEM, mode 0600).
    Generate(GenerateArgs),
    /// Import a private key from a PKCS#12 file (.p12/.pfx) or PEM into the backend named by --key: for a
    /// pkcs11: URI the key (sensitive, not extractable), its public key and its certificate, one label and id.
    Import(ImportArgs),
    /// Print the public key of --key.
    Public(PublicArgs),
    /// Write public_key.pem and public_key_digest.txt (as `openssl dgst -sha256`) into --out-dir.
    Export(ExportArgs),
    /// Make a PKCS#10 certificate signing request (PEM), signed by the key's backend.
    Csr(crate::certs::CsrArgs),
    /// Make a self-signed X.509 certificate (PEM), signed by the key's backend; --store keeps it with the key.
    Certificate(crate::certs::CertificateArgs),
    /// Keep an existing certificate with its key (in the token for pkcs11:, PATH.crt for file:).
    AttachCert(crate::certs::AttachCertArgs),
    /// List the key pairs in a PKCS#11 token: label, id, type, usage, flags, certificate, thumbprint.
    List(ListArgs),
    /// Delete a key pair from its PKCS#11 token: private key, public key and certificates with its CKA_ID.
    Delete(DeleteArgs),
    /// Rotate an OpenBao/Vault Transit key (vault:NAME): add a version, which signs from then on; older
    /// versions still decrypt what was encrypted to them.
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kty {
    /// RSA.
    #[value(name = "RSA")]
    Rsa,
    /// Elliptic curve.
    #[value(name = "EC")]
    Ec,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Crv {
    /// NIST P-256.
    #[value(name = "P-256")]
    P256,
    /// NIST P-384.
    #[value(name = "P-384")]
    P384,
}

/// `--bits`: the RSA modulus sizes keybound makes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bits {
    /// 2048 bits.
    #[value(name = "2048")]
    B2048,
    /// 3072 bits.
    #[value(name = "3072")]
    B3072,
    /// 4096 bits.
    #[value(name = "4096")]
    B4096,
}

impl Bits {
    fn get(self) -> usize {
        match self {
            Self::B2048 => 2048,
            Self::B3072 => 3072,
            Self::B4096 => 4096,
        }
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Where the key goes: file:PATH (refuses to overwrite), a pkcs11: URI, vault:NAME (a Transit key) or
    /// aws-kms:alias/NAME (a KMS key and its alias); an existing name is refused.
    #[arg(long)]
    key: String,
    /// Key type.
    #[arg(long, value_enum, default_value = "RSA")]
    kty: Kty,
    /// RSA modulus size (RSA only; default 2048).
    #[arg(long, value_enum)]
    bits: Option<Bits>,
    /// EC curve (EC only; default P-256).
    #[arg(long, value_enum)]
    crv: Option<Crv>,
    /// What the key may do: sign, decrypt (JWE decryption keys) or sign,decrypt. A PKCS#11 token records it
    /// (CKA_SIGN, CKA_DECRYPT, CKA_ALLOWED_MECHANISMS) and refuses other uses; AWS KMS records one
    /// (SIGN_VERIFY or ENCRYPT_DECRYPT); a key file or Transit key records nothing (the key can do whatever
    /// its type allows). Only RSA keys decrypt.
    #[arg(long, default_value = "sign", value_parser = parse_usage)]
    usage: KeyUsage,
}

fn parse_usage(s: &str) -> Result<KeyUsage, String> {
    s.parse()
        .map_err(|e: key_provider::UnknownKeyUsage| e.to_string())
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The key file: PKCS#12 (modern or legacy, as `openssl pkcs12 -export [-legacy]` writes) or a PEM
    /// private key (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1, optionally with its certificate).
    #[arg(long)]
    from: PathBuf,
    /// Where the key goes: a pkcs11: URI with object= (refused when the label or id is taken), or file:PATH
    /// (PKCS#8 PEM, mode 0600, never over an existing file; for development).
    #[arg(long)]
    key: String,
    /// Where the password of the PKCS#12 file (or encrypted PEM key) is: env:VAR or file:PATH (its first
    /// line); never the password itself. Without it the password is empty.
    #[arg(long)]
    password_source: Option<String>,
    /// What the key may do: sign, or sign,decrypt (CKA_DECRYPT as well; RSA only). As for keys generate.
    #[arg(long, default_value = "sign", value_parser = parse_usage)]
    usage: KeyUsage,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The Transit key: vault:NAME[?mount=…&addr=…&namespace=…&token-source=…], or a configured key name.
    #[arg(long)]
    key: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PublicFormat {
    /// SubjectPublicKeyInfo PEM.
    Pem,
    /// JWK with kid = RFC 7638 thumbprint.
    Jwk,
    /// JWKS holding that JWK.
    Jwks,
    /// The certificate kept with the key (keys certificate --store, keys attach-cert).
    Cert,
}

#[derive(Debug, Args)]
pub struct PublicArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "pem")]
    format: PublicFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Directory to write public_key.pem and public_key_digest.txt into (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
    /// Replace public_key.pem and public_key_digest.txt if they exist with other contents (default: refuse).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    /// A table for people.
    Table,
    /// One JSON object (field names documented in docs/hsm.md).
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The token: a pkcs11: URI (token=, serial=; object= and/or id= list only the matching keys) with its
    /// pin-source (login is needed to see private keys), or a configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The key pair: a pkcs11: URI naming exactly one key (object= and/or id=) with its pin-source, or a
    /// configured key name.
    #[arg(long)]
    key: String,
    /// Delete without asking (needed when there is no terminal to ask on).
    #[arg(long)]
    yes: bool,
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    match cmd {
        Cmd::Generate(a) => generate(&a, ctx),
        Cmd::Import(a) => import(&a, ctx),
        Cmd::Public(a) => public(&a, ctx),
        Cmd::Export(a) => export(&a, ctx),
        Cmd::Csr(a) => crate::certs::csr(&a, ctx),
        Cmd::Certificate(a) => crate::certs::certificate(&a, ctx),
        Cmd::AttachCert(a) => crate::certs::attach_cert(&a, ctx),
        Cmd::List(a) => list(&a, ctx),
        Cmd::Delete(a) => delete(&a, ctx),
        Cmd::Rotate(a) => rotate(&a, ctx),
    }
}

/// The key to make; a flag that does not apply to the key type is refused, not ignored.
fn spec(a: &GenerateArgs) -> CliResult<KeySpec> {
    match (a.kty, a.bits, a.crv) {
        (Kty::Rsa, _, Some(_)) => Err(CliError::usage(
            "--crv applies to EC keys only (--kty EC); RSA keys take --bits",
        )),
        (Kty::Ec, Some(_), _) => Err(CliError::usage(
            "--bits applies to RSA keys only (--kty RSA); EC keys take --crv P-256 or P-384",
        )),
        (Kty::Rsa, bits, None) => Ok(KeySpec::Rsa(bits.map_or(2048, Bits::get))),
        (Kty::Ec, None, crv) => Ok(KeySpec::Ec(match crv.unwrap_or(Crv::P256) {
            Crv::P256 => EcCurve::P256,
            Crv::P384 => EcCurve::P384,
        })),
    }
}

fn generate(a: &GenerateArgs, ctx: &Context) -> CliResult {
    let spec = spec(a)?;
    let key_ref = ctx.key_ref(Some(&a.key))?;
    // The same rule for every backend, before anything is created.
    a.usage.check(spec)?;
    // The label names the key as the backend stored it (for PKCS#11, with the generated id when none was given).
    let (label, public) = generate_in(&key_ref, spec, a.usage, ctx)?;
    io::print_line(&format!(
        "{label} {} thumbprint={}",
        public.describe(),
        jose_core::thumbprint(&public)
    ))
}

/// Generates the key `key_ref` names in its backend; returns the key's label and public key.
fn generate_in(
    key_ref: &KeyRef,
    spec: KeySpec,
    usage: KeyUsage,
    ctx: &Context,
) -> CliResult<(String, PublicKey)> {
    #[cfg(feature = "file")]
    if let KeyRef::File(path) = key_ref {
        use key_provider::KeyBackend as _;
        let key = key_provider::file::generate(path, spec)?;
        if usage != KeyUsage::Sign {
            // A PEM file has no place for a usage: say so rather than let it look enforced.
            eprintln!(
                "keybound: note: a key file records no usage; this key can sign and decrypt (keep keys for \
                 different uses in different files)"
            );
        }
        return Ok((key.key_label().to_owned(), key.public_key().clone()));
    }
    #[cfg(feature = "pkcs11")]
    if let KeyRef::Pkcs11(uri) = key_ref {
        let key = key_provider::pkcs11::generate_with_usage(uri, spec, usage, &ctx.open_options())?;
        return Ok((key.key_label().to_owned(), key.public_key().clone()));
    }
    #[cfg(feature = "vault")]
    if let KeyRef::Vault(r) = key_ref {
        let key = key_provider::vault::generate(r, spec, usage, &ctx.open_options())?;
        if usage != KeyUsage::Sign {
            // Transit has no usage attribute: say so rather than let it look enforced.
            eprintln!(
                "keybound: note: a Transit key records no usage; an RSA Transit key can sign and decrypt \
                 (restrict each caller with Vault policies on transit/sign/… and transit/decrypt/…)"
            );
        }
        return Ok((key.key_label().to_owned(), key.public_key().clone()));
    }
    #[cfg(feature = "aws-kms")]
    if let KeyRef::AwsKms(r) = key_ref {
        let key = key_provider::aws_kms::generate(r, spec, usage, &ctx.open_options())?;
        return Ok((key.key_label().to_owned(), key.public_key().clone()));
    }
    let _ = (spec, usage, ctx);
    Err(match key_ref {
        KeyRef::File(_) | KeyRef::Pkcs11(_) | KeyRef::Vault(_) | KeyRef::AwsKms(_) => {
            not_compiled(key_ref)
        }
        _ => CliError::usage(format!(
            "keys generate writes to file:PATH, a pkcs11: URI, vault:NAME or aws-kms:alias/NAME, not {}",
            key_ref.backend()
        )),
    })
}

/// `keys rotate`: a new version of a Transit key; every other reference refused (exit 2).
fn rotate(a: &RotateArgs, ctx: &Context) -> CliResult {
    let key_ref = ctx.key_ref(Some(&a.key))?;
    match &key_ref {
        #[cfg(feature = "vault")]
        KeyRef::Vault(r) => {
            let key = key_provider::vault::rotate(r, &ctx.open_options())?;
            let version = transit_version(key.as_ref())?;
            io::print_line(&format!(
                "{key_ref} version={version} {} thumbprint={}",
                key.public_key().describe(),
                jose_core::thumbprint(key.public_key())
            ))
        }
        #[cfg(not(feature = "vault"))]
        KeyRef::Vault(_) => Err(not_compiled(&key_ref)),
        KeyRef::AwsKms(_) => Err(CliError::usage(format!(
            "keys rotate rotates Transit keys (vault:NAME); AWS KMS does not rotate asymmetric keys such as \
             {key_ref}: make a new key (`keybound keys generate --key aws-kms:alias/NEW-NAME`), publish its \
             public key, then point your alias at it (`aws kms update-alias`)"
        ))),
        _ => Err(CliError::usage(format!(
            "keys rotate rotates keys in a key service (vault:NAME), where versions are the service's; a {} key \
             has no versions: generate a new key (`keybound keys generate`), publish its public key and \
             switch --key to it",
            key_ref.backend()
        ))),
    }
}

/// The version of a Transit key as opened (after `rotate`, the new one).
#[cfg(feature = "vault")]
fn transit_version(key: &dyn key_provider::KeyBackend) -> CliResult<u32> {
    key.key_version().ok_or_else(|| {
        CliError::usage(format!(
            "{}: the key service did not say which version the key is at",
            key.key_label()
        ))
    })
}

/// "The backend is not compiled in", for a reference to a backend whose cargo feature is off.
fn not_compiled(key_ref: &KeyRef) -> CliError {
    CliError::usage(format!(
        "the {0} backend is not compiled into this keybound (cargo feature `{0}`)",
        key_ref.backend()
    ))
}

/// The refusal of a key-management command (`keys list`, `delete`, `import`, `attach-cert`, `certificate
/// --store`) for a key in a key service, which is managed with the service's own tools; `None` for other
/// references.
pub fn key_service_refusal(key_ref: &KeyRef, command: &str) -> Option<CliError> {
    let tools = match key_ref {
        KeyRef::Vault(r) => format!(
            "manage Transit keys with `bao`/`vault` (e.g. `vault list {}/keys`) and Vault policies",
            r.mount
        ),
        KeyRef::AwsKms(_) => {
            "manage KMS keys with the AWS console or CLI (e.g. `aws kms list-aliases`) and key policies"
                .to_owned()
        }
        _ => return None,
    };
    Some(CliError::usage(match command {
        "list" => format!(
            "keys list lists the key pairs of a PKCS#11 token, not of a key service ({key_ref}): {tools}\n  \
             hint: see this key with `keybound keys public --key {key_ref} --format jwk`"
        ),
        "delete" => format!(
            "keys delete deletes key pairs from PKCS#11 tokens, not from a key service ({key_ref}): {tools}"
        ),
        "import" => format!(
            "keys import writes to a pkcs11: URI or file:PATH, not to a key service ({key_ref}): make the key \
             in the service with `keybound keys generate`, or import key material with the service's own \
             tools; {tools}"
        ),
        _ => format!(
            "a key service ({key_ref}) keeps no certificates: keybound keeps them with pkcs11: and file: keys \
             only; keep the certificate as a file (`keybound keys certificate --out FILE`) and give it to \
             whoever needs it"
        ),
    }))
}

/// The password of `--password-source`: the variable's value, or the file's first line.
#[cfg_attr(
    not(any(feature = "file", feature = "env", feature = "pkcs11")),
    allow(dead_code)
)]
fn read_password(source: Option<&str>) -> CliResult<Zeroizing<String>> {
    let Some(source) = source else {
        return Ok(Zeroizing::new(String::new()));
    };
    if let Some(var) = source.strip_prefix("env:") {
        return std::env::var(var).map(Zeroizing::new).map_err(|_| {
            CliError::usage(format!(
                "--password-source env:{var}: the environment variable {var} is not set (or not UTF-8)"
            ))
        });
    }
    if let Some(path) = source.strip_prefix("file:") {
        let bytes = io::read_secret(std::path::Path::new(path))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            CliError::usage(format!("--password-source file:{path}: not UTF-8 text"))
        })?;
        return Ok(Zeroizing::new(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('\r')
                .to_owned(),
        ));
    }
    Err(CliError::usage(
        "--password-source must be env:VAR or file:PATH (the password itself is never an argument)",
    ))
}

/// What `keys import` prints about the certificate that came with the key.
#[cfg_attr(
    not(any(feature = "file", feature = "env", feature = "pkcs11")),
    allow(dead_code)
)]
#[derive(serde::Serialize)]
struct ImportedCertificate {
    subject: String,
    /// The subject's serialNumber attribute: Cybersource's key id.
    subject_serial_number: Option<String>,
    issuer: String,
    serial: String,
    not_after: String,
}

/// What `keys import` prints.
#[cfg_attr(
    not(any(feature = "file", feature = "env", feature = "pkcs11")),
    allow(dead_code)
)]
#[derive(serde::Serialize)]
struct Imported {
    key: String,
    key_type: String,
    thumbprint: String,
    certificate: Option<ImportedCertificate>,
}

/// Without any backend there is nowhere to import to (and no key parser).
#[cfg(not(any(feature = "file", feature = "env", feature = "pkcs11")))]
fn import(_: &ImportArgs, _: &Context) -> CliResult {
    Err(CliError::usage(
        "keys import needs the file or pkcs11 backend, and neither is compiled into this keybound",
    ))
}

#[cfg(any(feature = "file", feature = "env", feature = "pkcs11"))]
fn import(a: &ImportArgs, ctx: &Context) -> CliResult {
    let key_ref = ctx.key_ref(Some(&a.key))?;
    if let Some(refusal) = key_service_refusal(&key_ref, "import") {
        return Err(refusal);
    }
    let password = read_password(a.password_source.as_deref())?;
    let bytes = io::read_secret(&a.from)?;
    let file = keybound_pki::KeyFile::read(&bytes, &password)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.from.display())))?;
    let key = key_provider::ImportKey::from_der(file.private_key())
        .map_err(|e| CliError::usage(format!("{}: {e}", a.from.display())))?;
    a.usage.check(key.spec())?;
    // The certificate of the key: the one the file ties to it, else the one holding its public key.
    let certificate = match file.key_certificate() {
        Some(der) => Some(der),
        None => file.certificates().find(|der| {
            key_provider::Certificate::from_der(der)
                .is_ok_and(|c| c.public_key == *key.public_key())
        }),
    };
    let parsed = certificate
        .map(key_provider::Certificate::from_der)
        .transpose()
        .map_err(|e| CliError::usage(format!("{}: {e}", a.from.display())))?;
    if let Some(cert) = &parsed {
        if cert.public_key != *key.public_key() {
            return Err(CliError::usage(format!(
                "{}: the certificate the file pairs with the key holds another public key; nothing was imported",
                a.from.display()
            )));
        }
    } else if file.certificates().next().is_some() {
        eprintln!(
            "keybound: note: no certificate in {} holds this key's public key; importing the key alone",
            a.from.display()
        );
    }
    let label = import_into(&key_ref, &key, certificate, a.usage, ctx)?;
    io::print_json(&Imported {
        key: label,
        key_type: key.public_key().describe(),
        thumbprint: jose_core::thumbprint(key.public_key()),
        certificate: parsed.map(|c| ImportedCertificate {
            subject: c.subject_name(),
            subject_serial_number: c.subject_serial_number(),
            issuer: c.issuer_name(),
            serial: c.serial_hex(),
            not_after: rfc3339(c.not_after),
        }),
    })
}

/// Imports `key` into the backend `key_ref` names; returns the key's label there.
#[cfg(any(feature = "file", feature = "env", feature = "pkcs11"))]
fn import_into(
    key_ref: &KeyRef,
    key: &key_provider::ImportKey,
    certificate: Option<&[u8]>,
    usage: KeyUsage,
    ctx: &Context,
) -> CliResult<String> {
    #[cfg(feature = "file")]
    if let KeyRef::File(path) = key_ref {
        use key_provider::KeyBackend as _;
        let _ = certificate;
        if usage != KeyUsage::Sign {
            eprintln!(
                "keybound: note: a key file records no usage; this key can sign and decrypt (keep keys for \
                 different uses in different files)"
            );
        }
        return Ok(key_provider::file::import(path, key)?
            .key_label()
            .to_owned());
    }
    #[cfg(feature = "pkcs11")]
    if let KeyRef::Pkcs11(uri) = key_ref {
        if uri.object.is_none() {
            return Err(CliError::usage(
                "keys import needs the label of the new objects: add object=LABEL to the pkcs11: URI",
            ));
        }
        let options = key_provider::pkcs11::ImportOptions::new(usage);
        let imported =
            key_provider::pkcs11::import(uri, key, certificate, &options, &ctx.open_options())?;
        return Ok(imported.key_label().to_owned());
    }
    let _ = (key, certificate, usage, ctx);
    Err(match key_ref {
        KeyRef::File(_) | KeyRef::Pkcs11(_) => CliError::usage(format!(
            "the {0} backend is not compiled into this keybound (cargo feature `{0}`)",
            key_ref.backend()
        )),
        _ => CliError::usage(format!(
            "keys import writes to a pkcs11: URI or file:PATH, not {}",
            key_ref.backend()
        )),
    })
}

/// Seconds since the epoch as RFC 3339 UTC (`2027-01-31T23:59:59Z`).
#[cfg_attr(
    not(any(feature = "file", feature = "env", feature = "pkcs11")),
    allow(dead_code)
)]
fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The public JWK of a key with `kid` = RFC 7638 thumbprint.
pub fn public_jwk(public: &PublicKey) -> CliResult<Jwk> {
    Jwk::from_public_key(public)
        .with_thumbprint_kid()
        .map_err(CliError::usage)
}

fn public(a: &PublicArgs, ctx: &Context) -> CliResult {
    if let PublicFormat::Cert = a.format {
        // The certificate kept with the key (a key service keeps none: refused before anything is opened).
        let key_ref = ctx.key_ref(a.key.as_deref())?;
        if let Some(refusal) = key_service_refusal(&key_ref, "public --format cert") {
            return Err(refusal);
        }
    }
    let key = ctx.open_key(a.key.as_deref())?;
    let public = key.public_key();
    // With a certificate kept with the key, the JWK carries it (x5c, x5t#S256).
    let jwk = || -> CliResult<Jwk> {
        let mut jwk = public_jwk(public)?;
        if let Some(der) = crate::certs::stored(a.key.as_deref(), ctx)? {
            crate::certs::add_x5c(&mut jwk, &der);
        }
        Ok(jwk)
    };
    match a.format {
        PublicFormat::Pem => io::write_stdout(public.to_spki_pem().as_bytes()),
        PublicFormat::Jwk => io::print_json(&jwk()?),
        PublicFormat::Jwks => io::print_json(&jose_core::Jwks { keys: vec![jwk()?] }),
        PublicFormat::Cert => crate::certs::print_stored(a.key.as_deref(), ctx),
    }
}

/// The line `openssl dgst -sha256 FILE` prints (OpenSSL 3 spelling: `SHA2-256(FILE)= hex`).
pub fn openssl_digest_line(file_name: &str, contents: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, contents);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA2-256({file_name})= {hex}\n")
}

fn export(a: &ExportArgs, ctx: &Context) -> CliResult {
    let key = ctx.open_key(a.key.as_deref())?;
    let pem = key.public_key().to_spki_pem();
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", a.out_dir.display())))?;
    let pem_path = a.out_dir.join("public_key.pem");
    let digest_path = a.out_dir.join("public_key_digest.txt");
    let digest = openssl_digest_line("public_key.pem", pem.as_bytes());
    let files = [
        (&pem_path, pem.as_bytes()),
        (&digest_path, digest.as_bytes()),
    ];
    // Exporting the same key again changes nothing; otherwise both files are checked before either is
    // written, so a refusal leaves the directory as it was.
    let changed: Vec<_> = files
        .into_iter()
        .filter(|(path, contents)| !io::unchanged(path, contents))
        .collect();
    for (path, _) in &changed {
        io::check_writable(path, a.force)?;
    }
    for (path, contents) in changed {
        io::write_file(path, contents, a.force)?;
    }
    io::print_line(&format!(
        "wrote {} and {}",
        pem_path.display(),
        digest_path.display()
    ))
}

/// The `pkcs11:` URI of a `keys list` / `keys delete` reference; file, env and key-service references refused.
fn token_uri(key_ref: KeyRef, command: &str) -> CliResult<key_provider::Pkcs11Uri> {
    if let Some(refusal) = key_service_refusal(&key_ref, command) {
        return Err(refusal);
    }
    let described = key_ref.to_string();
    match key_ref {
        KeyRef::Pkcs11(uri) => Ok(uri),
        _ if command == "list" => Err(CliError::usage(format!(
            "keys list lists the key pairs of a PKCS#11 token (--key 'pkcs11:token=…'); {described} names a \
             single key, not a token\n  hint: see that key with `keybound keys public --key {described} --format jwk`"
        ))),
        KeyRef::File(path) => Err(CliError::usage(format!(
            "keys delete deletes keys in PKCS#11 tokens; {described} is a key file: delete files yourself \
             (e.g. `shred -u {}`)",
            path.display()
        ))),
        _ => Err(CliError::usage(format!(
            "keys delete deletes keys in PKCS#11 tokens; {described} is an environment variable: delete it \
             yourself, where it is set"
        ))),
    }
}

/// One key pair in `keys list --format json`. The field names are a contract (docs/hsm.md).
#[derive(Debug, Serialize)]
struct ListedKey {
    label: Option<String>,
    id: String,
    #[serde(rename = "type")]
    type_: String,
    kty: String,
    bits: Option<usize>,
    curve: Option<String>,
    sign: Option<bool>,
    decrypt: Option<bool>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    always_sensitive: Option<bool>,
    never_extractable: Option<bool>,
    public_key_object: bool,
    thumbprint: Option<String>,
    certificates: Vec<ListedCertificate>,
}

#[derive(Debug, Serialize)]
struct ListedCertificate {
    label: Option<String>,
    subject: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListedToken {
    label: String,
    serial: String,
}

#[derive(Debug, Serialize)]
struct Listing {
    token: ListedToken,
    keys: Vec<ListedKey>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(feature = "pkcs11")]
fn listed_key(key: &key_provider::pkcs11::KeyPairInfo) -> ListedKey {
    use key_provider::pkcs11::KeyKind;
    let (kty, bits, curve) = match &key.kind {
        KeyKind::Rsa { bits } => ("RSA".to_owned(), *bits, None),
        KeyKind::Ec { curve } => (
            "EC".to_owned(),
            key.public_key
                .as_ref()
                .map(PublicKey::bits)
                .or(match curve.as_str() {
                    "P-256" | "secp256k1" => Some(256),
                    "P-384" => Some(384),
                    "P-521" => Some(521),
                    _ => None,
                }),
            Some(curve.clone()),
        ),
        other => (other.to_string(), None, None),
    };
    ListedKey {
        label: key.label.clone(),
        id: hex(&key.id),
        type_: key.kind.to_string(),
        kty,
        bits,
        curve,
        sign: key.sign,
        decrypt: key.decrypt,
        sensitive: key.sensitive,
        extractable: key.extractable,
        always_sensitive: key.always_sensitive,
        never_extractable: key.never_extractable,
        public_key_object: key.public_key_object,
        thumbprint: key.public_key.as_ref().map(jose_core::thumbprint),
        certificates: key
            .certificates
            .iter()
            .map(|c| ListedCertificate {
                label: c.label.clone(),
                subject: c.subject.clone(),
            })
            .collect(),
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `sign`, `decrypt`, `sign,decrypt`, `none`, or `-` when the token shows neither attribute.
fn usage_text(sign: Option<bool>, decrypt: Option<bool>) -> String {
    if sign.is_none() && decrypt.is_none() {
        return "-".into();
    }
    let mut uses = Vec::new();
    if sign == Some(true) {
        uses.push("sign");
    }
    if decrypt == Some(true) {
        uses.push("decrypt");
    }
    if uses.is_empty() {
        "none".into()
    } else {
        uses.join(",")
    }
}

/// The table `keys list` prints: a heading line, then one row per key pair in aligned columns.
fn table(listing: &Listing) -> String {
    let token = format!(
        "token '{}' (serial {})",
        listing.token.label, listing.token.serial
    );
    if listing.keys.is_empty() {
        return format!("{token}: no key pairs\n");
    }
    let mut rows = vec![
        [
            "LABEL",
            "ID",
            "TYPE",
            "USAGE",
            "SENSITIVE",
            "EXTRACTABLE",
            "THUMBPRINT",
            "CERTIFICATE",
        ]
        .map(str::to_owned),
    ];
    for key in &listing.keys {
        let certificate = match key.certificates.as_slice() {
            [] => "-".to_owned(),
            [one] => one.subject.clone().unwrap_or_else(|| "(no subject)".into()),
            [first, rest @ ..] => format!(
                "{} (+{} more)",
                first.subject.as_deref().unwrap_or("(no subject)"),
                rest.len()
            ),
        };
        rows.push([
            key.label.clone().unwrap_or_else(|| "-".into()),
            if key.id.is_empty() {
                "-".into()
            } else {
                key.id.clone()
            },
            key.type_.clone(),
            usage_text(key.sign, key.decrypt),
            yes_no(key.sensitive).to_owned(),
            yes_no(key.extractable).to_owned(),
            key.thumbprint.clone().unwrap_or_else(|| "-".into()),
            certificate,
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let count = listing.keys.len();
    let mut out = format!(
        "{token}: {count} key pair{}\n",
        if count == 1 { "" } else { "s" }
    );
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The token (and key) `keys list` / `keys delete` work on: a `pkcs11:` URI with or without `object=`/`id=`
/// (given, or a configured key's), else whatever `--key` names, refused unless it is a `pkcs11:` reference.
fn target_uri(
    ctx: &Context,
    arg: Option<&str>,
    command: &str,
) -> CliResult<key_provider::Pkcs11Uri> {
    let raw = arg.or(ctx.settings.key.as_deref());
    let resolved = raw.and_then(|r| {
        if r.starts_with("pkcs11:") {
            Some(r)
        } else {
            ctx.settings.keys.get(r).map(String::as_str)
        }
    });
    match resolved {
        Some(uri) if uri.starts_with("pkcs11:") => Ok(key_provider::Pkcs11Uri::parse_token(uri)?),
        _ => token_uri(ctx.key_ref(arg)?, command),
    }
}

fn list(a: &ListArgs, ctx: &Context) -> CliResult {
    let uri = target_uri(ctx, a.key.as_deref(), "list")?;
    #[cfg(feature = "pkcs11")]
    {
        let found = key_provider::pkcs11::list_keys(&uri, &ctx.open_options())?;
        let listing = Listing {
            token: ListedToken {
                label: found.token_label,
                serial: found.token_serial,
            },
            keys: found.keys.iter().map(listed_key).collect(),
        };
        match a.format {
            ListFormat::Json => io::print_json(&listing),
            ListFormat::Table => io::write_stdout(table(&listing).as_bytes()),
        }
    }
    #[cfg(not(feature = "pkcs11"))]
    {
        let _ = (uri, a.format, ctx, table, hex, yes_no);
        Err(CliError::usage(
            "the pkcs11 backend is not compiled into this keybound (cargo feature `pkcs11`)",
        ))
    }
}

fn delete(a: &DeleteArgs, ctx: &Context) -> CliResult {
    let uri = target_uri(ctx, Some(&a.key), "delete")?;
    if uri.object.is_none() && uri.id.is_none() {
        return Err(CliError::usage(
            "keys delete needs the key named in --key with `object=` (label) and/or `id=`, not a whole token\n  \
             hint: see the token's keys with `keybound keys list --key 'pkcs11:token=…'`",
        ));
    }
    #[cfg(feature = "pkcs11")]
    {
        let options = ctx.open_options();
        let found = key_provider::pkcs11::list_keys(&uri, &options)?;
        let token = format!(
            "token '{}' (serial {})",
            found.token_label, found.token_serial
        );
        let searched = [
            uri.object.as_ref().map(|l| format!("label '{l}'")),
            uri.id.as_ref().map(|id| format!("id {}", hex(id))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let key = match found.keys.as_slice() {
            [one] => one,
            [] => {
                return Err(CliError::usage(format!(
                    "no key pair with {searched} in {token}\n  hint: see the token's keys with \
                     `keybound keys list --key 'pkcs11:token={}'`",
                    found.token_label
                )));
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|k| format!("{} ({})", k.describe(), k.kind))
                    .collect();
                let mut ids: Vec<&[u8]> = many.iter().map(|k| k.id.as_slice()).collect();
                ids.sort_unstable();
                ids.dedup();
                let hint = match ids.as_slice() {
                    [first, ..] if ids.len() == many.len() && !first.is_empty() => {
                        let mut example = uri.clone();
                        example.id = Some(first.to_vec());
                        format!("name one by its id (`id=`), e.g. --key '{example}'")
                    }
                    _ => "these keys have no distinct ids (`CKA_ID`), so no reference can tell them apart: \
                          give them distinct ids first (`pkcs11-tool --set-id`)"
                        .to_owned(),
                };
                return Err(CliError::usage(format!(
                    "{} key pairs match {searched} in {token}: {}; refusing to choose\n  hint: {hint}",
                    many.len(),
                    names.join("; ")
                )));
            }
        };
        let what = format!(
            "{} ({}{}) from {token}",
            key.describe(),
            key.kind,
            key.public_key
                .as_ref()
                .map(|p| format!(", thumbprint {}", jose_core::thumbprint(p)))
                .unwrap_or_default()
        );
        if !a.yes {
            let mut objects = vec!["private key".to_owned()];
            if key.public_key_object {
                objects.push("public key".into());
            }
            match key.certificates.len() {
                0 => {}
                1 => objects.push("certificate".into()),
                n => objects.push(format!("{n} certificates")),
            }
            confirm(&format!("delete key pair {what} ({})?", objects.join(", ")))?;
        }
        // Exactly the key pair shown: its own id (and label), not the reference that found it.
        let mut exact = uri.clone();
        if !key.id.is_empty() {
            exact.id = Some(key.id.clone());
        }
        exact.object.clone_from(&key.label);
        let deleted = key_provider::pkcs11::delete_key(&exact, &options)?;
        io::print_line(&format!(
            "deleted key pair {what}: private key, {} public key object(s), {} certificate(s)",
            deleted.public_key_objects, deleted.certificates
        ))
    }
    #[cfg(not(feature = "pkcs11"))]
    {
        let _ = (a.yes, ctx);
        Err(CliError::usage(
            "the pkcs11 backend is not compiled into this keybound (cargo feature `pkcs11`)",
        ))
    }
}

/// Asks `question` on the terminal; Ok only for `y` or `yes`. Without a terminal on standard input, refuses
/// (exit 2): nothing is deleted unasked.
#[cfg(feature = "pkcs11")]
fn confirm(question: &str) -> CliResult {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "not deleted: standard input is not a terminal, so there is no one to confirm the deletion\n  \
             hint: pass --yes to delete without asking",
        ));
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} [y/N] ")
        .and_then(|()| stderr.flush())
        .map_err(|e| CliError::usage(format!("cannot write to the terminal: {e}")))?;
    drop(stderr);
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::rejected("not deleted (the answer was not `y`)")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_164_800 + 3661), "2024-02-29T01:01:01Z");
        assert_eq!(super::rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}

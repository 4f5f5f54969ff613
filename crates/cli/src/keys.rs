//! `keybound keys …`: generate a key in its backend, print its public key (PEM, JWK, JWKS), and export the
//! `public_key.pem` + `public_key_digest.txt` pair partners ask for at onboarding.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use jose_core::Jwk;
use key_provider::{EcCurve, KeyRef, KeySpec, KeyUsage, PublicKey};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Generate a new private key in the backend named by --key (file written PKCS#8 PEM, mode 0600).
    Generate(GenerateArgs),
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
    /// Where the key goes: file:PATH (refuses to overwrite) or a pkcs11: URI.
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
    /// (CKA_SIGN, CKA_DECRYPT, CKA_ALLOWED_MECHANISMS) and refuses other uses; a key file records nothing
    /// (the key can do whatever its type allows). Only RSA keys decrypt.
    #[arg(long, default_value = "sign", value_parser = parse_usage)]
    usage: KeyUsage,
}

fn parse_usage(s: &str) -> Result<KeyUsage, String> {
    s.parse()
        .map_err(|e: key_provider::UnknownKeyUsage| e.to_string())
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
    /// Key reference (file:PATH, env:VAR, pkcs11:…) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "pem")]
    format: PublicFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Directory to write public_key.pem and public_key_digest.txt into (created if missing).
    #[arg(long)]
    out_dir: PathBuf,
    /// Replace public_key.pem and public_key_digest.txt if they exist with other contents (default: refuse).
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    match cmd {
        Cmd::Generate(a) => generate(&a, ctx),
        Cmd::Public(a) => public(&a, ctx),
        Cmd::Export(a) => export(&a, ctx),
        Cmd::Csr(a) => crate::certs::csr(&a, ctx),
        Cmd::Certificate(a) => crate::certs::certificate(&a, ctx),
        Cmd::AttachCert(a) => crate::certs::attach_cert(&a, ctx),
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
    let _ = (spec, usage, ctx);
    Err(match key_ref {
        KeyRef::File(_) | KeyRef::Pkcs11(_) => CliError::usage(format!(
            "the {0} backend is not compiled into this keybound (cargo feature `{0}`)",
            key_ref.backend()
        )),
        _ => CliError::usage(format!(
            "keys generate writes to file:PATH or a pkcs11: URI, not {}",
            key_ref.backend()
        )),
    })
}

/// The public JWK of a key with `kid` = RFC 7638 thumbprint.
pub fn public_jwk(public: &PublicKey) -> CliResult<Jwk> {
    Jwk::from_public_key(public)
        .with_thumbprint_kid()
        .map_err(CliError::usage)
}

fn public(a: &PublicArgs, ctx: &Context) -> CliResult {
    if let PublicFormat::Cert = a.format {
        return crate::certs::print_stored(a.key.as_deref(), ctx);
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
        PublicFormat::Jwks | PublicFormat::Cert => {
            io::print_json(&jose_core::Jwks { keys: vec![jwk()?] })
        }
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

//! `keybound jwt …`: sign claims through a key reference, verify against SPKI PEM / X.509 certificate / JWK /
//! JWKS with claim validation, and decode without verification (clearly marked).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use jose_core::{JoseError, JwsAlgorithm, JwsHeader, KeySet, Validation};
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Sign a JSON claims object as a compact JWS.
    Sign(SignArgs),
    /// Verify a JWT's signature and claims; print the claims. Exit 0 valid, 1 rejected, 2 usage/I/O.
    Verify(VerifyArgs),
    /// Print a JWT's header and claims WITHOUT verifying it.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Key reference (file:PATH, env:VAR, pkcs11:…, vault:NAME, aws-kms:KEY) or configured key name.
    #[arg(long)]
    key: Option<String>,
    /// Algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384.
    #[arg(long)]
    alg: String,
    /// Header `kid`.
    #[arg(long)]
    kid: Option<String>,
    /// Header `typ`.
    #[arg(long)]
    typ: Option<String>,
    /// Claims JSON object: a file, or - for stdin.
    #[arg(long)]
    claims: PathBuf,
    /// Set `iat` to now.
    #[arg(long)]
    iat: bool,
    /// Set `exp` to now + SECONDS (the result must not pass 9999-12-31T23:59:59Z).
    #[arg(long, value_name = "SECONDS")]
    exp_in: Option<u64>,
    /// Set `jti` to a random UUID.
    #[arg(long)]
    jti: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public key: SPKI PEM or DER, X.509 certificate (PEM or DER; a PEM chain leaf first), JWK or JWKS
    /// (selected by the token's kid).
    #[arg(long)]
    pubkey: PathBuf,
    /// The token: a file, or - for stdin.
    #[arg(long)]
    token: PathBuf,
    /// Accept only this algorithm.
    #[arg(long)]
    alg: Option<String>,
    /// Required issuer.
    #[arg(long)]
    iss: Option<String>,
    /// Required audience.
    #[arg(long)]
    aud: Option<String>,
    /// Clock leeway in seconds for exp, nbf and iat (0 to 300).
    #[arg(long, default_value_t = 60, value_parser = parse_leeway)]
    leeway: u64,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The token: a file, or - for stdin.
    #[arg(long)]
    token: PathBuf,
}

/// The latest `exp` `--exp-in` may produce: 9999-12-31T23:59:59Z, the last second most JWT libraries (and
/// RFC 3339 dates) can represent.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// `--leeway` (of `jwt verify`, `flex …`, `provisioning verify-auth-code`): whole seconds from 0 to
/// [`jose_core::jwt::MAX_LEEWAY_SECS`]. More is a usage error (exit 2), not a silently weaker check.
pub fn parse_leeway(s: &str) -> Result<u64, String> {
    let max = jose_core::jwt::MAX_LEEWAY_SECS;
    match s.parse::<u64>() {
        Ok(secs) if secs <= max => Ok(secs),
        _ => Err(format!(
            "the leeway must be a whole number of seconds from 0 to {max}; a larger one defeats the expiry \
             check (fix the clock instead)"
        )),
    }
}

/// `exp` for `--exp-in SECONDS` issued at `now`: checked, never wrapped around.
fn exp_in(now: u64, secs: u64) -> CliResult<u64> {
    now.checked_add(secs)
        .filter(|exp| *exp <= MAX_NUMERIC_DATE)
        .ok_or_else(|| {
            CliError::usage(format!(
                "--exp-in {secs}: now + SECONDS passes 9999-12-31T23:59:59Z, the latest exp a JWT can carry \
                 everywhere; use a shorter lifetime"
            ))
        })
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    match cmd {
        Cmd::Sign(a) => sign(&a, ctx),
        Cmd::Verify(a) => verify(&a),
        Cmd::Decode(a) => decode(&a),
    }
}

fn sign(a: &SignArgs, ctx: &Context) -> CliResult {
    let alg: JwsAlgorithm = a.alg.parse().map_err(CliError::usage)?;
    let text = io::read_input(&a.claims)?;
    let mut claims: Map<String, Value> = match serde_json::from_slice(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(CliError::usage("claims must be a JSON object")),
        Err(e) => return Err(CliError::usage(format!("claims are not valid JSON: {e}"))),
    };
    let now = jose_core::jwt::now();
    if a.iat {
        claims.insert("iat".into(), now.into());
    }
    if let Some(secs) = a.exp_in {
        claims.insert("exp".into(), exp_in(now, secs)?.into());
    }
    if a.jti {
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    }
    let key = ctx.open_key(a.key.as_deref())?;
    let mut header = JwsHeader::new(alg);
    header.kid.clone_from(&a.kid);
    header.typ.clone_from(&a.typ);
    let token = jose_core::jwt::sign(key.as_ref(), &header, &claims).map_err(CliError::usage)?;
    io::print_line(&token)
}

/// Loads a `--pubkey` file: SPKI PEM or DER, an X.509 certificate (PEM, a chain leaf first, or DER), a JWK
/// or a JWKS (one parser for every `--pubkey`: [`KeySet::from_bytes`]).
pub fn load_keys(path: &std::path::Path) -> CliResult<KeySet> {
    let bytes = io::read_input(path)?;
    KeySet::from_bytes(&bytes).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

fn verify(a: &VerifyArgs) -> CliResult {
    let keys = load_keys(&a.pubkey)?;
    let mut validation = Validation::new().leeway(a.leeway);
    if let Some(alg) = &a.alg {
        let alg: JwsAlgorithm = alg.parse().map_err(CliError::usage)?;
        validation = validation.algorithms(&[alg]);
    }
    if let Some(iss) = &a.iss {
        validation = validation.issuer(iss.clone());
    }
    if let Some(aud) = &a.aud {
        validation = validation.audience(aud.clone());
    }
    let token = io::read_input(&a.token)?;
    let token = String::from_utf8(token)
        .map_err(|_| CliError::rejected("token rejected: not UTF-8 text"))?;
    let verified = jose_core::jwt::verify(token.trim_end_matches(['\n', '\r']), &keys, &validation)
        .map_err(|e| CliError::rejected(format!("token rejected: {e}")))?;
    io::print_json(&verified.claims)
}

fn decode(a: &DecodeArgs) -> CliResult {
    let token = io::read_text(&a.token)?;
    let (header, claims) = jose_core::jwt::decode_unverified(&token)
        .map_err(|e: JoseError| CliError::rejected(format!("cannot decode: {e}")))?;
    eprintln!("keybound: UNVERIFIED — the signature was not checked; do not trust these claims");
    io::print_json(&serde_json::json!({
        "verified": false,
        "warning": "UNVERIFIED: signature not checked",
        "header": header,
        "claims": claims,
    }))
}

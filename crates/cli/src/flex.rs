//! `keybound flex …`: Cybersource / Visa Acceptance Flex v2 from the command line — request a capture context
//! with merchant authentication (JWT through a key reference, or HTTP Signature with a shared secret), verify
//! it, tokenize card data against it, verify the transient token, and open the Click to Pay encrypted payment
//! credentials (EPC) it refers to with the PSP's key (`open-credentials`: the credentials go to stdout only).
//!
//! Every flag can also come from the `[flex]` section of the configuration file or from
//! `KEYBOUND_FLEX__<SETTING>` environment variables; flags win:
//!
//! ```toml
//! [flex]
//! api = "cybersource-test"            # or cybersource-production, visa-acceptance-test/-production, a URL
//! leeway = 30                         # seconds, for exp/iat
//! allow_origins = []                  # extra tokens origins (https, or http on loopback for simulators)
//! tokens_endpoint = "origin"          # or "api" (/flex/v2/token on the API host)
//! transient_token_key_fallback = false
//! merchant_id = "my_merchant"
//! key_id = "1234567890"               # merchant certificate serial / key id
//! key = "pkcs11:token=…;object=…"     # JWT authentication (or a configured key name)
//! shared_secret_env = "FLEX_SECRET"   # HTTP Signature authentication
//! ```
//!
//! Card data is read from a file into a wiped buffer and never printed; the shared secret only ever comes
//! from an environment variable or a file. Exit codes (the rule of every command, README.md): 0 success; 1 a
//! capture context, transient token or Flex answer was judged and rejected (an unknown `kid` included), or
//! Flex refused the request (4xx); 2 usage, configuration, I/O, network and key-backend failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use flex_client::{
    CaptureContext, Environment, FlexClient, FlexError, HttpSignatureAuth, JwtAuth, MerchantAuth,
    SessionEndpoint, TokenizeData, TokensEndpoint,
};
use flex_client::{Mle, MleCertificate, ResponseMle};
use jose_core::JoseError;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Verify a capture context (signature with Flex's key for its kid, exp/iat); print its claims.
    VerifyContext(VerifyContextArgs),
    /// Encrypt card data for a capture context, send it to the tokens endpoint, verify the transient token
    /// and print its claims (or the token itself with --raw).
    Tokenize(TokenizeArgs),
    /// Verify a transient token against the capture context it was issued for; print its claims.
    VerifyToken(VerifyTokenArgs),
    /// Request a capture context with merchant authentication; verify it and print it (or write --out).
    CaptureContext(CaptureContextArgs),
    /// Open Unified Checkout encrypted payment credentials (EPC, Click to Pay): verify the transient token,
    /// check the EPC JWE (on stdin) against it, decrypt it with the PSP key and print the credentials.
    OpenCredentials(OpenCredentialsArgs),
}

/// Where the Flex API is.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// cybersource-test (default), cybersource-production, visa-acceptance-test, visa-acceptance-production,
    /// or a base URL.
    #[arg(long, value_name = "ENV|URL")]
    api: Option<String>,
    /// Clock leeway in seconds for exp/iat (default 30, at most 300).
    #[arg(long, value_name = "SECONDS", value_parser = crate::jwt::parse_leeway)]
    leeway: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyContextArgs {
    /// The capture context (a JWT; line-wrapped copies are fine): a file, or - for stdin.
    #[arg(long, value_name = "FILE")]
    capture_context: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// The capture context: a file, or - for stdin.
    #[arg(long, value_name = "FILE")]
    capture_context: PathBuf,
    /// The `data` object of the tokens request (card and order fields) as JSON.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
    /// Also allow this tokens origin (flx.origin), e.g. http://127.0.0.1:8080 for a simulator. Repeatable.
    #[arg(long, value_name = "URL")]
    allow_origin: Vec<String>,
    /// Send the tokens request to /flex/v2/token on the API host instead of flx.origin + flx.path.
    #[arg(long)]
    api_host_tokens: bool,
    /// Print the transient token (JWT) instead of its claims.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub struct VerifyTokenArgs {
    /// The capture context the token was issued for: a file, or - for stdin.
    #[arg(long, value_name = "FILE")]
    capture_context: PathBuf,
    /// The transient token: a file, or - for stdin.
    #[arg(long, value_name = "FILE")]
    token: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
    /// If flx.jwk does not verify the token, also try /flex/v2/public-keys/{kid}.
    #[arg(long)]
    key_fallback: bool,
}

#[derive(Debug, Args)]
pub struct CaptureContextArgs {
    /// Sessions endpoint: flex (/flex/v2/sessions), microform (/microform/v2/sessions),
    /// up (/up/v1/capture-contexts), uc (/uc/v1/sessions).
    #[arg(long, default_value = "flex", value_name = "ENDPOINT")]
    endpoint: String,
    /// The request body (JSON). Default for flex: card number, expiry month and year required; else {}.
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
    /// Merchant id.
    #[arg(long, value_name = "ID")]
    merchant_id: Option<String>,
    /// Key id: the merchant certificate's serial number (JWT) or the shared secret's key id.
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// JWT authentication with this key: file:PATH, env:VAR, a pkcs11: URI, vault:NAME, aws-kms:KEY, or a
    /// configured key name.
    #[arg(long, value_name = "KEYREF")]
    key: Option<String>,
    /// HTTP Signature authentication with the base64 shared secret in this environment variable.
    #[arg(long, value_name = "VAR")]
    shared_secret_env: Option<String>,
    /// HTTP Signature authentication with the base64 shared secret in this file.
    #[arg(long, value_name = "FILE")]
    shared_secret_file: Option<PathBuf>,
    /// Write the capture context to this file instead of stdout (a new file; see --force).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace the --out file if it exists (default: refuse).
    #[arg(long, requires = "out")]
    force: bool,
    /// Message-level encryption: send the body as {"encryptedRequest": JWE} to Cybersource's MLE
    /// certificate in this file (the CyberSource_SJC_US certificate, PEM or DER; JWT authentication only).
    #[arg(long, value_name = "FILE")]
    mle_cert: Option<PathBuf>,
    /// Response MLE: ask for the answer encrypted to this key (file:PATH, env:VAR, a pkcs11: URI, vault:NAME,
    /// aws-kms:KEY, or a configured key name), which decrypts it in its backend.
    #[arg(long, value_name = "KEYREF", requires_all = ["mle_cert", "response_mle_kid"])]
    response_mle_key: Option<String>,
    /// The key id Cybersource knows the response MLE key by (sent as v-c-response-mle-kid).
    #[arg(long, value_name = "KID", requires = "response_mle_key")]
    response_mle_kid: Option<String>,
}

#[derive(Debug, Args)]
pub struct OpenCredentialsArgs {
    /// The PSP's decryption key (the EPC `kid`): file:PATH, env:VAR, a pkcs11: URI, vault:NAME, aws-kms:KEY, or a
    /// configured key name.
    #[arg(long, value_name = "KEYREF")]
    key: String,
    /// The transient token whose paymentCredentialsReference names the EPC: a file.
    #[arg(long, value_name = "FILE")]
    token: PathBuf,
    /// The capture context the token was issued for: a file.
    #[arg(long, value_name = "FILE")]
    capture_context: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
    /// The portfolio the credentials must be for (the EPC `aud`); default: the token's only
    /// paymentCredentialsReference entry.
    #[arg(long, value_name = "PORTFOLIO")]
    aud: Option<String>,
    /// Verify the nested credentials JWT with these issuer keys (a JWKS, a JWK or a public key PEM);
    /// without it the credentials are printed marked "verified": false.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

/// The `[flex]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlexSettings {
    api: Option<String>,
    leeway: Option<u64>,
    allow_origins: Vec<String>,
    tokens_endpoint: Option<String>,
    transient_token_key_fallback: bool,
    merchant_id: Option<String>,
    key_id: Option<String>,
    key: Option<String>,
    shared_secret_env: Option<String>,
    shared_secret_file: Option<PathBuf>,
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    let settings = ctx.settings.flex.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match cmd {
            Cmd::VerifyContext(a) => verify_context(&a, &settings).await,
            Cmd::Tokenize(a) => tokenize(&a, &settings).await,
            Cmd::VerifyToken(a) => verify_token(&a, &settings).await,
            Cmd::CaptureContext(a) => capture_context(&a, &settings, ctx).await,
            Cmd::OpenCredentials(a) => open_credentials(&a, &settings, ctx).await,
        }
    })
}

/// Exit 1 for rejections (tokens, signatures, unknown kids, 4xx answers), 2 for configuration, input, I/O,
/// network and the merchant key failing while signing.
fn flex_error(e: FlexError) -> CliError {
    let rejected = match &e {
        // The merchant key (an HSM…) failed while signing: a backend failure, whatever wraps it.
        FlexError::Key(_) | FlexError::Jose(JoseError::Key(_)) | FlexError::MerchantAuth(_) => {
            false
        }
        // Flex has no public key for the token's kid: the token was judged, and its kid is unknown. Other
        // failures to fetch a key (network, 5xx, an answer that is no key) are not a judgement.
        FlexError::KeyFetch { reason, .. } => is_unknown_kid(reason),
        FlexError::Http {
            status: 400..=499, ..
        } => true,
        _ => e.is_rejection(),
    };
    if rejected {
        CliError::rejected(e)
    } else {
        CliError::usage(e)
    }
}

/// Whether a [`FlexError::KeyFetch`] reason says Flex has no key for the kid: its key endpoint answered 404,
/// or its key set lacks the kid (flex-client's wording; the exit-code table test in `tests/exit_codes.rs`
/// runs this case).
fn is_unknown_kid(reason: &str) -> bool {
    reason.starts_with("HTTP 404") || reason.starts_with("the key set has no key with this kid")
}

struct ClientOptions {
    allow_origins: Vec<String>,
    api_host_tokens: bool,
    key_fallback: bool,
}

fn client(api: &ApiArgs, settings: &FlexSettings, options: ClientOptions) -> CliResult<FlexClient> {
    let env_text = api
        .api
        .as_deref()
        .or(settings.api.as_deref())
        .unwrap_or("cybersource-test");
    let environment: Environment = env_text.parse().map_err(CliError::usage)?;
    let mut builder = FlexClient::builder(environment);
    if let Some(secs) = api.leeway.or(settings.leeway) {
        builder = builder.leeway(Duration::from_secs(secs));
    }
    for origin in settings.allow_origins.iter().chain(&options.allow_origins) {
        builder = builder.allow_origin(origin).map_err(CliError::usage)?;
    }
    let api_host = options.api_host_tokens
        || match settings.tokens_endpoint.as_deref() {
            None | Some("origin") => false,
            Some("api") => true,
            Some(other) => {
                return Err(CliError::usage(format!(
                    "configuration [flex] tokens_endpoint must be \"origin\" or \"api\", not {other:?}"
                )));
            }
        };
    if api_host {
        builder = builder.tokens_endpoint(TokensEndpoint::ApiHost);
    }
    builder = builder.transient_token_key_fallback(
        options.key_fallback || settings.transient_token_key_fallback,
    );
    builder.build().map_err(CliError::usage)
}

async fn read_context(client: &FlexClient, path: &Path) -> CliResult<CaptureContext> {
    let text = io::read_text(path)?;
    client
        .verify_capture_context(&text)
        .await
        .map_err(flex_error)
}

fn context_json(context: &CaptureContext) -> CliResult<Value> {
    let claims =
        serde_json::to_value(context.claims()).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(json!({
        "verified": true,
        "environment": context.environment().name(),
        "kid": context.kid(),
        "alg": context.alg().as_str(),
        "encryption_kid": context.encryption_kid(),
        "claims": claims,
    }))
}

async fn verify_context(a: &VerifyContextArgs, settings: &FlexSettings) -> CliResult {
    let options = ClientOptions {
        allow_origins: Vec::new(),
        api_host_tokens: false,
        key_fallback: false,
    };
    let client = client(&a.api, settings, options)?;
    let context = read_context(&client, &a.capture_context).await?;
    io::print_json(&context_json(&context)?)
}

async fn tokenize(a: &TokenizeArgs, settings: &FlexSettings) -> CliResult {
    let options = ClientOptions {
        allow_origins: a.allow_origin.clone(),
        api_host_tokens: a.api_host_tokens,
        key_fallback: false,
    };
    let client = client(&a.api, settings, options)?;
    let context = read_context(&client, &a.capture_context).await?;
    // The card data stays in wiped buffers from the file to the encryption.
    let bytes = io::read_secret(&a.data)?;
    let data = TokenizeData::from_json(&bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.data.display())))?;
    drop(bytes);
    let verified = client
        .tokenize_and_verify(&context, &data)
        .await
        .map_err(flex_error)?;
    if a.raw {
        io::print_line(verified.token().as_str())
    } else {
        io::print_json(verified.raw_claims())
    }
}

async fn verify_token(a: &VerifyTokenArgs, settings: &FlexSettings) -> CliResult {
    let options = ClientOptions {
        allow_origins: Vec::new(),
        api_host_tokens: false,
        key_fallback: a.key_fallback,
    };
    let client = client(&a.api, settings, options)?;
    let context = read_context(&client, &a.capture_context).await?;
    let token = io::read_text(&a.token)?;
    let verified = client
        .verify_transient_token(&context, &token)
        .await
        .map_err(flex_error)?;
    io::print_json(verified.raw_claims())
}

fn default_body(endpoint: SessionEndpoint) -> Value {
    match endpoint {
        SessionEndpoint::Flex => json!({
            "fields": {
                "paymentInformation": {
                    "card": {
                        "number": {"required": true},
                        "expirationMonth": {"required": true},
                        "expirationYear": {"required": true},
                        "securityCode": {"required": false}
                    }
                }
            }
        }),
        _ => json!({}),
    }
}

fn read_secret_file(path: &Path) -> CliResult<Zeroizing<String>> {
    let bytes = io::read_secret(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError::usage(format!("{} is not text", path.display())))?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn merchant_auth(
    a: &CaptureContextArgs,
    settings: &FlexSettings,
    ctx: &Context,
) -> CliResult<MerchantAuth> {
    let merchant_id = a
        .merchant_id
        .clone()
        .or_else(|| settings.merchant_id.clone())
        .ok_or_else(|| {
            CliError::usage("no merchant id: pass --merchant-id or set [flex] merchant_id")
        })?;
    let key_id = a
        .key_id
        .clone()
        .or_else(|| settings.key_id.clone())
        .ok_or_else(|| CliError::usage("no key id: pass --key-id or set [flex] key_id"))?;
    let secret_env = a
        .shared_secret_env
        .clone()
        .or_else(|| settings.shared_secret_env.clone());
    let secret_file = a
        .shared_secret_file
        .clone()
        .or_else(|| settings.shared_secret_file.clone());
    let key = a.key.clone().or_else(|| settings.key.clone());
    let choices = usize::from(key.is_some())
        + usize::from(secret_env.is_some())
        + usize::from(secret_file.is_some());
    if choices != 1 {
        return Err(CliError::usage(
            "give exactly one merchant credential: --key KEYREF (JWT), --shared-secret-env VAR or --shared-secret-file FILE (HTTP Signature)",
        ));
    }
    if let Some(keyref) = key {
        let key = ctx.open_key(Some(&keyref))?;
        return JwtAuth::new(merchant_id, key_id, key)
            .map(MerchantAuth::Jwt)
            .map_err(CliError::usage);
    }
    let secret = match (secret_env, secret_file) {
        (Some(var), _) => Zeroizing::new(std::env::var(&var).map_err(|_| {
            CliError::usage(format!(
                "environment variable {var} (the shared secret) is not set"
            ))
        })?),
        (None, Some(path)) => read_secret_file(&path)?,
        (None, None) => return Err(CliError::usage("no merchant credential")),
    };
    HttpSignatureAuth::new(merchant_id, key_id, &secret)
        .map(MerchantAuth::HttpSignature)
        .map_err(CliError::usage)
}

async fn capture_context(
    a: &CaptureContextArgs,
    settings: &FlexSettings,
    ctx: &Context,
) -> CliResult {
    // Refuse an occupied --out before asking the server for anything.
    if let Some(path) = &a.out {
        io::check_writable(path, a.force)?;
    }
    let endpoint = SessionEndpoint::from_name(&a.endpoint).ok_or_else(|| {
        CliError::usage(format!(
            "--endpoint must be flex, microform, up or uc, not {:?}",
            a.endpoint
        ))
    })?;
    let body = match &a.body {
        Some(path) => {
            let bytes = io::read_input(path)?;
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", path.display())))?
        }
        None => default_body(endpoint),
    };
    let auth = merchant_auth(a, settings, ctx)?;
    let options = ClientOptions {
        allow_origins: Vec::new(),
        api_host_tokens: false,
        key_fallback: false,
    };
    let mle = mle_options(a, ctx)?;
    let client = client(&a.api, settings, options)?;
    let context = match &mle {
        Some(mle) => {
            client
                .request_capture_context_with_mle(&auth, endpoint, &body, mle)
                .await
        }
        None => client.request_capture_context(&auth, endpoint, &body).await,
    }
    .map_err(flex_error)?;
    match &a.out {
        Some(path) => io::write_file(path, format!("{}\n", context.as_str()).as_bytes(), a.force),
        None => io::print_line(context.as_str()),
    }
}

/// `--mle-cert` / `--response-mle-key` / `--response-mle-kid`: message-level encryption for this request.
fn mle_options(a: &CaptureContextArgs, ctx: &Context) -> CliResult<Option<Mle>> {
    let Some(path) = &a.mle_cert else {
        return Ok(None);
    };
    let certificate = MleCertificate::from_file(path).map_err(CliError::usage)?;
    let mut mle = Mle::new(certificate);
    if let (Some(keyref), Some(kid)) = (&a.response_mle_key, &a.response_mle_kid) {
        let key = ctx.open_key(Some(keyref))?;
        mle = mle.with_response(ResponseMle::new(key, kid.clone()).map_err(CliError::usage)?);
    }
    Ok(Some(mle))
}

async fn open_credentials(
    a: &OpenCredentialsArgs,
    settings: &FlexSettings,
    ctx: &Context,
) -> CliResult {
    if a.capture_context == Path::new("-") || a.token == Path::new("-") {
        return Err(CliError::usage(
            "the EPC token comes on stdin: give --capture-context and --token as files",
        ));
    }
    let issuer_keys = match &a.jwks {
        Some(path) => Some(
            jose_core::KeySet::from_bytes(&io::read_input(path)?)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let key = ctx.open_key(Some(&a.key))?;
    let epc = io::read_text(Path::new("-"))?;
    // `flex verify-token` first: the capture context, then the transient token.
    let options = ClientOptions {
        allow_origins: Vec::new(),
        api_host_tokens: false,
        key_fallback: false,
    };
    let client = client(&a.api, settings, options)?;
    let context = read_context(&client, &a.capture_context).await?;
    let token = io::read_text(&a.token)?;
    let verified = client
        .verify_transient_token(&context, &token)
        .await
        .map_err(flex_error)?;
    let mut options = flex_client::OpenOptions::new().leeway(Duration::from_secs(
        a.api.leeway.or(settings.leeway).unwrap_or(30),
    ));
    if let Some(portfolio) = &a.aud {
        options = options.portfolio(portfolio.clone());
    }
    if let Some(keys) = issuer_keys {
        options = options.issuer_keys(keys);
    }
    let opened = flex_client::open_credentials_async(&epc, key.as_ref(), &verified, &options)
        .await
        .map_err(flex_error)?;
    let (alg, kid) = match opened.signature() {
        flex_client::CredentialsSignature::Verified { alg, kid } => {
            (Some(alg.as_str()), kid.clone())
        }
        _ => (None, None),
    };
    // The credentials in full: printing them is what this command is for (never logged).
    let out = Zeroizing::new(
        serde_json::to_string_pretty(&json!({
            "verified": opened.signature().is_verified(),
            "verified_alg": alg,
            "verified_kid": kid,
            "epc_header": opened.header(),
            "header": opened.jwt_header(),
            "claims": opened.raw_claims(),
        }))
        .map_err(|e| CliError::usage(e.to_string()))?,
    );
    io::print_line(&out)
}

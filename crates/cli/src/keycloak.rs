//! `keybound keycloak …`: tokens from a Keycloak token endpoint with the client authenticated by an RFC 7523
//! client assertion signed through a key reference (`file:`, `env:`, `pkcs11:`), or by a client secret; and
//! single client assertions for debugging.
//!
//! Every flag can also come from the `[keycloak]` section of the configuration file or from
//! `KEYBOUND_KEYCLOAK__<SETTING>` environment variables (e.g. `KEYBOUND_KEYCLOAK__TOKEN_URL`); flags win.
//! Passwords and client secrets are read from the environment variables that `--password-env` and
//! `--client-secret-env` name, never from the command line, and are never printed.
//!
//! Exit codes (the rule of every command, README.md): 0 success; 1 the server refused the request (an OAuth
//! error: bad key, password, client…) or answered something that is not a token response; 2 usage,
//! configuration, network, server (5xx) and key-backend failures.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use keycloak_client::secrecy::{ExposeSecret as _, SecretString};
use keycloak_client::{
    AssertionConfig, Audience, ClientAssertionSigner, ClientAuth, JwsAlgorithm, KeyId,
    KeycloakClient, KeycloakError, TokenEndpoint, TokenResponse,
};
use serde::Deserialize;

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Get tokens from the token endpoint (password grant by default) and print the token response JSON.
    Token(TokenArgs),
    /// Sign one client assertion (RFC 7523 private_key_jwt) for the token endpoint and print it.
    Assertion(AssertionArgs),
}

/// How a client secret is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretMethod {
    /// `client_id` and `client_secret` in the form body (client_secret_post).
    Post,
    /// HTTP Basic authentication (client_secret_basic).
    Basic,
}

/// Which grant `keycloak token` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantKind {
    /// Resource-owner password grant for a technical user (--username, --password-env).
    Password,
    /// Client-credentials grant (the client's service account).
    ClientCredentials,
}

/// Settings shared by both commands.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Token endpoint: https://HOST/…/realms/REALM/protocol/openid-connect/token.
    #[arg(long, value_name = "URL")]
    token_url: Option<String>,
    /// Client id (the assertion's iss and sub).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Signing key for private_key_jwt: file:PATH, env:VAR, a pkcs11: URI, vault:NAME, aws-kms:KEY, or a configured
    /// key name.
    #[arg(long, value_name = "KEYREF")]
    key: Option<String>,
    /// Assertion algorithm: RS256 (default for RSA keys), PS256, ES256…
    #[arg(long, value_name = "ALG")]
    alg: Option<String>,
    /// Assertion audience: `token-endpoint` (default), `issuer` (the realm URL), or an exact URL.
    #[arg(long, value_name = "URL")]
    audience: Option<String>,
    /// Header kid: `thumbprint` (default, RFC 7638), `none`, or an exact value.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// Assertion lifetime in seconds (default 60; above 300 needs --allow-long-lifetime).
    #[arg(long, value_name = "S")]
    lifetime: Option<u64>,
    /// Accept an assertion lifetime above 300 s.
    #[arg(long)]
    allow_long_lifetime: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Authenticate with the client secret in this environment variable instead of a key.
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// How the client secret is sent.
    #[arg(long, value_enum, value_name = "METHOD")]
    client_auth: Option<SecretMethod>,
    /// Grant to run.
    #[arg(long, value_enum)]
    grant: Option<GrantKind>,
    /// Technical user for the password grant.
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// Environment variable holding the technical user's password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Scope to request, e.g. "openid".
    #[arg(long, value_name = "S")]
    scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct AssertionArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// The `[keycloak]` section (and `KEYBOUND_KEYCLOAK__…`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    token_url: Option<String>,
    client_id: Option<String>,
    key: Option<String>,
    alg: Option<String>,
    audience: Option<String>,
    kid: Option<String>,
    lifetime: Option<u64>,
    allow_long_lifetime: bool,
    client_secret_env: Option<String>,
    client_auth: Option<SecretMethod>,
    grant: Option<GrantKind>,
    username: Option<String>,
    password_env: Option<String>,
    scope: Option<String>,
    /// Attempts per token request on network errors and 5xx (default 3).
    attempts: Option<u32>,
    /// Timeout of one HTTP attempt in seconds (default 30, 1 to [`MAX_TIMEOUT_SECS`]).
    timeout: Option<u64>,
}

/// Longest `[keycloak] timeout` of one HTTP attempt: 5 minutes (0 would time out every attempt at once).
const MAX_TIMEOUT_SECS: u64 = 300;

/// Looks up environment variables (the process environment, or a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn run(cmd: Cmd, ctx: &Context) -> CliResult {
    match cmd {
        Cmd::Token(a) => {
            let response = token(&a, ctx, &process_env)?;
            io::print_json(&response.to_json_exposing_tokens())
        }
        Cmd::Assertion(a) => {
            let jwt = assertion(&a, ctx)?;
            io::print_line(jwt.expose_secret())
        }
    }
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))
}

fn settings(ctx: &Context) -> CliResult<Settings> {
    Ok(ctx.settings.keycloak.clone())
}

fn required(
    flag: Option<&String>,
    setting: Option<&String>,
    name: &str,
    what: &str,
) -> CliResult<String> {
    flag.or(setting).cloned().ok_or_else(|| {
        CliError::usage(format!(
            "{what} is missing: pass --{name} or set `{}` in [keycloak] (or KEYBOUND_KEYCLOAK__{})",
            name.replace('-', "_"),
            name.replace('-', "_").to_ascii_uppercase()
        ))
    })
}

fn read_secret(var: &str, flag: &str, env: EnvLookup<'_>) -> CliResult<SecretString> {
    match env(var) {
        Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
        Some(_) => Err(CliError::usage(format!(
            "environment variable {var} (named by --{flag}) is empty"
        ))),
        None => Err(CliError::usage(format!(
            "environment variable {var} (named by --{flag}) is not set"
        ))),
    }
}

/// Exit 1 when the server refused the request (an OAuth error) or its answer failed keybound's checks (not a
/// token response); 2 for configuration, network, 5xx and the key failing while signing the assertion.
fn keycloak_error(e: KeycloakError) -> CliError {
    if e.is_rejection() || matches!(e, KeycloakError::InvalidResponse { .. }) {
        CliError::rejected(e)
    } else {
        CliError::usage(e)
    }
}

fn endpoint(a: &ClientArgs, s: &Settings) -> CliResult<TokenEndpoint> {
    let url = required(
        a.token_url.as_ref(),
        s.token_url.as_ref(),
        "token-url",
        "the token endpoint URL",
    )?;
    TokenEndpoint::from_token_url(&url).map_err(CliError::usage)
}

fn signer(
    a: &ClientArgs,
    s: &Settings,
    ctx: &Context,
    endpoint: &TokenEndpoint,
) -> CliResult<ClientAssertionSigner> {
    let client_id = required(
        a.client_id.as_ref(),
        s.client_id.as_ref(),
        "client-id",
        "the client id",
    )?;
    let key_arg = a.key.as_ref().or(s.key.as_ref());
    let key = ctx.open_key(key_arg.map(String::as_str))?;
    let mut cfg = AssertionConfig::new(client_id)
        .allow_long_lifetime(a.allow_long_lifetime || s.allow_long_lifetime);
    if let Some(alg) = a.alg.as_ref().or(s.alg.as_ref()) {
        cfg = cfg.alg(
            alg.parse::<JwsAlgorithm>()
                .map_err(|e| CliError::usage(format!("--alg: {e}")))?,
        );
    }
    if let Some(aud) = a.audience.as_ref().or(s.audience.as_ref()) {
        cfg = cfg.audience(audience(aud)?);
    }
    if let Some(kid) = a.kid.as_ref().or(s.kid.as_ref()) {
        cfg = cfg.kid(match kid.as_str() {
            "thumbprint" => KeyId::Thumbprint,
            "none" => KeyId::Omit,
            value => KeyId::Fixed(value.to_owned()),
        });
    }
    if let Some(secs) = a.lifetime.or(s.lifetime) {
        cfg = cfg.lifetime(Duration::from_secs(secs));
    }
    ClientAssertionSigner::new(key, &cfg, endpoint).map_err(CliError::usage)
}

/// `--audience` / `audience`: `token-endpoint`, `issuer`, or an absolute URL (`https://…`); anything else is
/// a usage error, never a literal `aud`.
fn audience(value: &str) -> CliResult<Audience> {
    match value {
        "token-endpoint" => Ok(Audience::TokenEndpoint),
        "issuer" => Ok(Audience::Issuer),
        other => match url::Url::parse(other) {
            Ok(u) if u.has_host() && matches!(u.scheme(), "https" | "http") => {
                Ok(Audience::Custom(other.to_owned()))
            }
            _ => Err(CliError::usage(format!(
                "--audience / [keycloak] audience must be `token-endpoint`, `issuer` or an absolute http(s) \
                 URL, not {other:?}"
            ))),
        },
    }
}

fn client(endpoint: TokenEndpoint, auth: ClientAuth, s: &Settings) -> CliResult<KeycloakClient> {
    let mut b = KeycloakClient::builder(endpoint, auth);
    if let Some(n) = s.attempts {
        b = b.retry(keycloak_client::RetryPolicy::new(
            n,
            Duration::from_millis(250),
            Duration::from_secs(4),
        ));
    }
    if let Some(t) = s.timeout {
        if !(1..=MAX_TIMEOUT_SECS).contains(&t) {
            return Err(CliError::usage(format!(
                "[keycloak] timeout must be 1 to {MAX_TIMEOUT_SECS} seconds, not {t}"
            )));
        }
        b = b.timeout(Duration::from_secs(t));
    }
    b.build().map_err(CliError::usage)
}

/// Whether the client authenticates with a key (private_key_jwt) or a client secret: flags first, then the
/// `[keycloak]` settings, then the top-level default key.
fn use_key(a: &TokenArgs, s: &Settings, ctx: &Context) -> CliResult<bool> {
    match (a.client.key.is_some(), a.client_secret_env.is_some()) {
        (true, true) => Err(CliError::usage(
            "give either --key (private_key_jwt) or --client-secret-env, not both",
        )),
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => match (s.key.is_some(), s.client_secret_env.is_some()) {
            (true, true) => Err(CliError::usage(
                "[keycloak] sets both `key` and `client_secret_env`; keep one, or choose with --key / --client-secret-env",
            )),
            (true, false) => Ok(true),
            (false, true) => Ok(false),
            (false, false) if ctx.settings.key.is_some() => Ok(true),
            (false, false) => Err(CliError::usage(
                "no client authentication: pass --key KEYREF (private_key_jwt) or --client-secret-env VAR",
            )),
        },
    }
}

/// `keycloak token`: runs the grant and returns the response.
pub fn token(a: &TokenArgs, ctx: &Context, env: EnvLookup<'_>) -> CliResult<TokenResponse> {
    let s = settings(ctx)?;
    let endpoint = endpoint(&a.client, &s)?;
    let auth = if use_key(a, &s, ctx)? {
        ClientAuth::PrivateKeyJwt(signer(&a.client, &s, ctx, &endpoint)?)
    } else {
        let client_id = required(
            a.client.client_id.as_ref(),
            s.client_id.as_ref(),
            "client-id",
            "the client id",
        )?;
        let var = required(
            a.client_secret_env.as_ref(),
            s.client_secret_env.as_ref(),
            "client-secret-env",
            "the secret's variable",
        )?;
        let secret = read_secret(&var, "client-secret-env", env)?;
        match a
            .client_auth
            .or(s.client_auth)
            .unwrap_or(SecretMethod::Post)
        {
            SecretMethod::Post => ClientAuth::ClientSecretPost { client_id, secret },
            SecretMethod::Basic => ClientAuth::ClientSecretBasic { client_id, secret },
        }
    };
    let client = client(endpoint, auth, &s)?;
    let scope = a.scope.as_ref().or(s.scope.as_ref()).map(String::as_str);
    let grant = a.grant.or(s.grant).unwrap_or(GrantKind::Password);
    let rt = runtime()?;
    match grant {
        GrantKind::Password => {
            let username = required(
                a.username.as_ref(),
                s.username.as_ref(),
                "username",
                "the technical user",
            )?;
            let var = required(
                a.password_env.as_ref(),
                s.password_env.as_ref(),
                "password-env",
                "the password's variable",
            )?;
            let password = read_secret(&var, "password-env", env)?;
            rt.block_on(client.password_grant(&username, &password, scope))
                .map_err(keycloak_error)
        }
        GrantKind::ClientCredentials => rt
            .block_on(client.client_credentials(scope))
            .map_err(keycloak_error),
    }
}

/// `keycloak assertion`: signs one assertion.
pub fn assertion(a: &AssertionArgs, ctx: &Context) -> CliResult<SecretString> {
    let s = settings(ctx)?;
    let endpoint = endpoint(&a.client, &s)?;
    let signer = signer(&a.client, &s, ctx, &endpoint)?;
    let rt = runtime()?;
    let assertion = rt
        .block_on(signer.sign(std::time::SystemTime::now()))
        .map_err(CliError::usage)?;
    Ok(assertion.jwt)
}

// The tests sign with file keys.
#[cfg(all(test, feature = "file"))]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use clap::Parser;
    use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
    use serde_json::json;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: TestCmd,
    }

    #[derive(Debug, clap::Subcommand)]
    #[allow(clippy::large_enum_variant)] // parsed once per test
    enum TestCmd {
        #[command(subcommand)]
        Keycloak(Cmd),
        #[command(subcommand)]
        Keys(crate::keys::Cmd),
    }

    const USER: &str = "exampleuser@bank.example.com";
    const PASSWORD: &str = "SecÜre!P4ssw0rd";

    fn parse(args: &[&str]) -> TestCmd {
        TestCli::try_parse_from(std::iter::once("keybound").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn token_cmd(args: &[&str], ctx: &Context, env: EnvLookup<'_>) -> CliResult<TokenResponse> {
        let mut full = vec!["keycloak", "token"];
        full.extend_from_slice(args);
        match parse(&full) {
            TestCmd::Keycloak(Cmd::Token(a)) => token(&a, ctx, env),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn config_file(dir: &Path, toml: &str) -> Context {
        let path = dir.join("keybound.toml");
        std::fs::write(&path, toml).unwrap();
        Context::load(Some(&path), None).unwrap()
    }

    fn lender_realm(jwks: &serde_json::Value) -> ServerConfig {
        ServerConfig::default().realm(
            "loan-partner",
            Realm::default()
                .key_client("example-bank", jwks, &["password", "refresh_token"])
                .user(USER, PASSWORD),
        )
    }

    /// The seed's onboarding: `keys generate --kty RSA --bits 4096`, `keys export`, the partner registers the
    /// exported public key, then `keycloak token` gets tokens with the file key.
    #[test]
    fn onboarding_with_a_file_key_then_token_and_assertion() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::load(None, None).unwrap();
        let key_path = dir.path().join("private_key.pem");
        let key_ref = format!("file:{}", key_path.display());
        let TestCmd::Keys(generate) = parse(&[
            "keys", "generate", "--key", &key_ref, "--kty", "RSA", "--bits", "4096",
        ]) else {
            unreachable!()
        };
        crate::keys::run(generate, &ctx).unwrap();
        let out = dir.path().join("to-partner");
        let TestCmd::Keys(export) = parse(&[
            "keys",
            "export",
            "--key",
            &key_ref,
            "--out-dir",
            out.to_str().unwrap(),
        ]) else {
            unreachable!()
        };
        crate::keys::run(export, &ctx).unwrap();
        // The partner side: only the exported public key.
        let pem = std::fs::read_to_string(out.join("public_key.pem")).unwrap();
        let digest = std::fs::read_to_string(out.join("public_key_digest.txt")).unwrap();
        assert!(digest.starts_with("SHA2-256(public_key.pem)= "), "{digest}");
        let public = key_provider::PublicKey::from_pem(&pem).unwrap();
        let Some(server) = OidcServer::start(
            "cli onboarding_with_a_file_key",
            &lender_realm(&jwks_of(&public)),
        ) else {
            return;
        };
        let url = server.token_url("loan-partner");
        let env = env_of(&[("LENDER_PASSWORD", PASSWORD)]);
        let args = [
            "--token-url",
            &url,
            "--client-id",
            "example-bank",
            "--key",
            &key_ref,
            "--username",
            USER,
            "--password-env",
            "LENDER_PASSWORD",
            "--scope",
            "openid",
        ];
        let r = token_cmd(&args, &ctx, &env).unwrap();
        let json = r.to_json_exposing_tokens();
        assert_eq!(json["token_type"], "Bearer");
        assert!(json["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(json["id_token"].is_string() && json["refresh_token"].is_string());

        // `keycloak assertion` prints one assertion with the seed's claims.
        let TestCmd::Keycloak(Cmd::Assertion(a)) = parse(&[
            "keycloak",
            "assertion",
            "--token-url",
            &url,
            "--client-id",
            "example-bank",
            "--key",
            &key_ref,
            "--lifetime",
            "30",
        ]) else {
            unreachable!()
        };
        let jwt = assertion(&a, &ctx).unwrap();
        let (header, claims) = jose_core::jwt::decode_unverified(jwt.expose_secret()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], jose_core::thumbprint(&public).as_str());
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("example-bank"), Some("example-bank"))
        );
        assert_eq!(claims["aud"], url.as_str());
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            30
        );

        // Refusals exit 1; usage errors exit 2; secrets are never in messages.
        let bad_env = env_of(&[("LENDER_PASSWORD", "not-the-password-123")]);
        let e = token_cmd(&args, &ctx, &bad_env).unwrap_err();
        assert_eq!(e.code, 1, "{}", e.message);
        assert!(
            e.message.contains("invalid_grant") && !e.message.contains("not-the-password-123"),
            "{}",
            e.message
        );
        let e = token_cmd(&args, &ctx, &env_of(&[])).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message.contains("LENDER_PASSWORD") && e.message.contains("not set"),
            "{}",
            e.message
        );
        let e = token_cmd(
            &["--token-url", &url, "--client-id", "x", "--username", "u"],
            &ctx,
            &env,
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
    }

    #[test]
    fn settings_from_the_config_file_and_a_client_secret() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::default().realm(
            "partner",
            Realm::default()
                .secret_client(
                    "example-partner",
                    "example-partner-dummysecret",
                    &["password", "refresh_token"],
                )
                .user("exampleuser@partner.example.com", PASSWORD),
        );
        let Some(server) = OidcServer::start("cli settings_from_the_config_file", &config) else {
            return;
        };
        let ctx = config_file(
            dir.path(),
            &format!(
                "[keycloak]\ntoken_url = \"{}\"\nclient_id = \"example-partner\"\nclient_secret_env = \"PARTNER_SECRET\"\n\
                 client_auth = \"basic\"\nusername = \"exampleuser@partner.example.com\"\npassword_env = \"PARTNER_PASSWORD\"\n",
                server.token_url("partner")
            ),
        );
        let env = env_of(&[
            ("PARTNER_SECRET", "example-partner-dummysecret"),
            ("PARTNER_PASSWORD", PASSWORD),
        ]);
        let r = token_cmd(&[], &ctx, &env).unwrap();
        assert!(r.refresh_token.is_some());
        // A wrong secret is a refusal (exit 1) that does not echo it.
        let env = env_of(&[
            ("PARTNER_SECRET", "wrong-secret-456"),
            ("PARTNER_PASSWORD", PASSWORD),
        ]);
        let e = token_cmd(&[], &ctx, &env).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(
            e.message.contains("invalid_client") && !e.message.contains("wrong-secret-456"),
            "{}",
            e.message
        );
        let rt = runtime().unwrap();
        let stats = rt.block_on(server.stats());
        assert_eq!(
            stats["partner"]["requests"],
            json!({"password": 2}),
            "{stats}"
        );
    }

    #[test]
    fn assertion_settings_from_config_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("ec.pem");
        key_provider::file::generate(
            &key_path,
            key_provider::KeySpec::Ec(key_provider::EcCurve::P256),
        )
        .unwrap();
        let ctx = config_file(
            dir.path(),
            &format!(
                "key = \"file:{}\"\n[keycloak]\ntoken_url = \"https://sso.example.com/realms/r/protocol/openid-connect/token\"\n\
                 client_id = \"c\"\naudience = \"issuer\"\nkid = \"none\"\n",
                key_path.display()
            ),
        );
        let TestCmd::Keycloak(Cmd::Assertion(a)) = parse(&["keycloak", "assertion"]) else {
            unreachable!()
        };
        let jwt = assertion(&a, &ctx).unwrap();
        let (h, c) = jose_core::jwt::decode_unverified(jwt.expose_secret()).unwrap();
        assert_eq!(h["alg"], "ES256");
        assert!(!h.contains_key("kid"));
        assert_eq!(c["aud"], "https://sso.example.com/realms/r");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);
        let TestCmd::Keycloak(Cmd::Assertion(a)) =
            parse(&["keycloak", "assertion", "--lifetime", "600"])
        else {
            unreachable!()
        };
        let e = assertion(&a, &ctx).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("300 s limit"), "{}", e.message);
        let TestCmd::Keycloak(Cmd::Assertion(a)) =
            parse(&["keycloak", "assertion", "--alg", "HS256"])
        else {
            unreachable!()
        };
        assert_eq!(assertion(&a, &ctx).unwrap_err().code, 2);
        // Unknown settings are refused when the configuration is loaded, naming the closest known key.
        let path = dir.path().join("keybound.toml");
        std::fs::write(&path, "[keycloak]\ntokenurl = \"x\"\n").unwrap();
        let Err(e) = Context::load(Some(&path), None) else {
            panic!("unknown settings are refused")
        };
        assert!(
            e.message.contains("`tokenurl`") && e.message.contains("did you mean `token_url`?"),
            "{}",
            e.message
        );
    }

    /// The lender of the issue's "done when": key in SoftHSM, tokens through the CLI.
    #[cfg(feature = "pkcs11")]
    #[test]
    fn lender_key_in_softhsm_gets_tokens_through_the_cli() {
        const TEST: &str = "lender_key_in_softhsm_gets_tokens_through_the_cli";
        let Some(token) = keybound_test_support::pkcs11::TestToken::shared(TEST) else {
            return;
        };
        let ctx = Context::load(None, None).unwrap();
        let key_ref = token.key_ref(&format!("cli-keycloak-lender-{}", std::process::id()));
        let TestCmd::Keys(generate) = parse(&[
            "keys", "generate", "--key", &key_ref, "--kty", "RSA", "--bits", "2048",
        ]) else {
            unreachable!()
        };
        crate::keys::run(generate, &ctx).unwrap();
        let key = ctx.open_key(Some(&key_ref)).unwrap();
        let Some(server) = OidcServer::start(TEST, &lender_realm(&jwks_of(key.public_key())))
        else {
            return;
        };
        let url = server.token_url("loan-partner");
        let env = env_of(&[("LENDER_PASSWORD", PASSWORD)]);
        let r = token_cmd(
            &[
                "--token-url",
                &url,
                "--client-id",
                "example-bank",
                "--key",
                &key_ref,
                "--username",
                USER,
                "--password-env",
                "LENDER_PASSWORD",
                "--alg",
                "PS256",
            ],
            &ctx,
            &env,
        )
        .unwrap();
        assert!(r.refresh_token.is_some());
        let rt = runtime().unwrap();
        assert_eq!(
            rt.block_on(server.count("loan-partner", "success", "password")),
            1
        );
    }
}

//! The Keycloak-shaped OpenID Connect test server (`tests/oidc-provider/server.mjs`, the npm package
//! `oidc-provider`), started on a free loopback port: realms and clients ([`ServerConfig`], [`Realm`],
//! [`jwks_of`]), its server-side request counters ([`OidcServer::stats`]) and its test-only admin switches
//! ([`OidcServer::admin`]: revoke refresh tokens, delay, fail or answer the token endpoint oddly, and
//! `hang-token?on=1`, which makes the token endpoint hang until switched off).
//!
//! Without `node` (or the binary named by [`NODE_ENV`]), or without `tests/oidc-provider/node_modules`
//! (install it with `npm ci --prefix tests/oidc-provider`), [`OidcServer::start`] prints a loud "SKIPPED" line
//! and returns `None`, unless `KEYBOUND_TEST_OIDC_REQUIRED=1`, which turns that into a failure. A server that
//! is present but does not start is always a failure.

#![allow(clippy::missing_panics_doc)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// `1`: a missing node or node_modules fails the test instead of skipping it.
pub const REQUIRED_ENV: &str = "KEYBOUND_TEST_OIDC_REQUIRED";
/// Overrides the directory holding `server.mjs` and `node_modules`.
pub const DIR_ENV: &str = "KEYBOUND_OIDC_TEST_SERVER_DIR";
/// The `node` binary to run (default `node` on PATH).
pub const NODE_ENV: &str = "KEYBOUND_TEST_NODE";

/// The directory of the test server.
#[must_use]
pub fn server_dir() -> PathBuf {
    std::env::var_os(DIR_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider"),
        PathBuf::from,
    )
}

fn node() -> String {
    std::env::var(NODE_ENV).unwrap_or_else(|_| "node".to_owned())
}

fn skipped(test: &str, why: &str) -> Option<OidcServer> {
    assert!(
        std::env::var(REQUIRED_ENV).map_or(true, |v| v != "1"),
        "{test}: {why}, but {REQUIRED_ENV}=1 requires the OpenID Connect server tests to run"
    );
    // Straight to the process's stderr, past the test harness's capture, so it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {why}; install it with `npm ci --prefix tests/oidc-provider` (needs node >= 20) ***"
    );
    None
}

/// One realm of the test server.
#[derive(Debug, Clone, Default)]
pub struct Realm {
    /// Client metadata objects as oidc-provider takes them.
    pub clients: Vec<Value>,
    /// `(username, password)` pairs for the password grant.
    pub users: Vec<(String, String)>,
}

impl Realm {
    /// Adds a `private_key_jwt` client with this public JWKS and grant types.
    #[must_use]
    pub fn key_client(mut self, client_id: &str, jwks: &Value, grant_types: &[&str]) -> Self {
        self.clients.push(json!({
            "client_id": client_id,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
            "grant_types": grant_types,
        }));
        self
    }

    /// Adds a client-secret client (`client_secret_post`; oidc-provider also accepts Basic for it).
    #[must_use]
    pub fn secret_client(mut self, client_id: &str, secret: &str, grant_types: &[&str]) -> Self {
        self.clients.push(json!({
            "client_id": client_id,
            "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": grant_types,
        }));
        self
    }

    /// Adds a user.
    #[must_use]
    pub fn user(mut self, username: &str, password: &str) -> Self {
        self.users.push((username.to_owned(), password.to_owned()));
        self
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Access token lifetime in seconds (default 300).
    pub access_token_ttl: u64,
    /// Refresh token lifetime in seconds (default 1800).
    pub refresh_token_ttl: u64,
    /// Realms by name.
    pub realms: Vec<(String, Realm)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            refresh_token_ttl: 1800,
            realms: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Adds a realm.
    #[must_use]
    pub fn realm(mut self, name: &str, realm: Realm) -> Self {
        self.realms.push((name.to_owned(), realm));
        self
    }

    /// Sets the access token lifetime.
    #[must_use]
    pub fn access_token_ttl(mut self, secs: u64) -> Self {
        self.access_token_ttl = secs;
        self
    }

    fn to_json(&self) -> Value {
        let realms: serde_json::Map<String, Value> = self
            .realms
            .iter()
            .map(|(name, r)| {
                let users: Vec<Value> = r
                    .users
                    .iter()
                    .map(|(u, p)| json!({"username": u, "password": p}))
                    .collect();
                (name.clone(), json!({"clients": r.clients, "users": users}))
            })
            .collect();
        json!({
            "host": "127.0.0.1",
            "port": 0,
            "accessTokenTtl": self.access_token_ttl,
            "refreshTokenTtl": self.refresh_token_ttl,
            "realms": realms,
        })
    }
}

/// A running test server; stopped when dropped.
#[derive(Debug)]
pub struct OidcServer {
    child: Child,
    port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    http: reqwest::Client,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl OidcServer {
    /// Starts the server, or returns `None` (after a loud SKIPPED line) when node or its packages are missing.
    ///
    /// # Panics
    /// When the server is installed but does not start and report its port within 30 s.
    #[must_use]
    pub fn start(test: &str, config: &ServerConfig) -> Option<Self> {
        let dir = server_dir();
        if Command::new(node())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return skipped(test, "`node` is not installed");
        }
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            return skipped(
                test,
                &format!("{} has no node_modules/oidc-provider", dir.display()),
            );
        }
        let unique = format!(
            "keybound-oidc-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let config_path = std::env::temp_dir().join(format!("{unique}.json"));
        let log_path = std::env::temp_dir().join(format!("{unique}.log"));
        std::fs::write(&config_path, config.to_json().to_string())
            .expect("write test server config");
        let log = std::fs::File::create(&log_path).expect("create test server log");
        let mut child = Command::new(node())
            .arg(dir.join("server.mjs"))
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot start the OIDC test server: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {} // drain
        });
        let first = rx.recv_timeout(Duration::from_secs(30));
        let port = match first {
            Ok(Some(Ok(ref line))) => line
                .strip_prefix("listening ")
                .and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "{test}: the OIDC test server did not start (first line {first:?}); its log:\n{log}"
            );
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client for the test server");
        Some(Self {
            child,
            port,
            config_path,
            log_path,
            http,
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The realm's issuer.
    #[must_use]
    pub fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.origin())
    }

    /// The realm's token endpoint.
    #[must_use]
    pub fn token_url(&self, realm: &str) -> String {
        format!(
            "{}/realms/{realm}/protocol/openid-connect/token",
            self.origin()
        )
    }

    /// The server's counters: `{realm: {requests: {grant: n}, success: {grant: n}, errors: {"grant:error": n}}}`.
    pub async fn stats(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/__stats", self.origin()))
            .send()
            .await
            .expect("GET /__stats");
        r.json().await.expect("stats JSON")
    }

    /// One counter (0 when absent).
    pub async fn count(&self, realm: &str, kind: &str, key: &str) -> u64 {
        self.stats().await[realm][kind][key].as_u64().unwrap_or(0)
    }

    /// Calls a test-only admin action of a realm, e.g. `revoke-refresh-tokens`, `delay-token?ms=300`,
    /// `fail-token?count=2&status=503`, `hang-token?on=1`.
    pub async fn admin(&self, realm: &str, action: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/__admin/{realm}/{action}", self.origin()))
            .send()
            .await
            .expect("admin request");
        assert!(
            r.status().is_success(),
            "admin {action}: HTTP {}",
            r.status()
        );
        r.json().await.expect("admin JSON")
    }

    /// The server's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- OIDC test server log ---\n{}",
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// The public JWKS of a key, with `kid` = RFC 7638 thumbprint.
#[must_use]
pub fn jwks_of(key: &key_provider::PublicKey) -> Value {
    let jwk = jose_core::Jwk::from_public_key(key)
        .with_thumbprint_kid()
        .expect("thumbprint of a valid key");
    json!({ "keys": [jwk] })
}

//! OpenBao's development server (`bao server -dev`: in memory, unsealed, plain HTTP) with Transit enabled.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::{ServerProcess, binary, http, random_hex, skipped};

/// The `bao` binary to run (default: `target/keyservices/venv/bin/bao`).
pub const BAO_ENV: &str = "KEYBOUND_TEST_BAO";

/// A running `bao server -dev` on a free loopback port, its root token random, Transit mounted at `transit`.
/// Killed when dropped; every key in it is lost then (a dev server keeps nothing on disk).
#[derive(Debug)]
pub struct BaoServer {
    process: ServerProcess,
    token: String,
}

impl BaoServer {
    /// Starts the server and enables Transit, or returns `None` (after a loud SKIPPED line) when `bao` is not
    /// installed and `KEYBOUND_TEST_KEYSERVICES_REQUIRED` is not `1`.
    ///
    /// # Panics
    /// When `bao` is missing and required, or does not answer `GET /v1/sys/health` within 30 s, or Transit
    /// cannot be enabled.
    #[must_use]
    pub fn start(test: &str) -> Option<Self> {
        let bin = match binary(BAO_ENV, "bao") {
            Ok(bin) => bin,
            Err(why) => return skipped(test, &why),
        };
        let token = format!("kb-root-{}", random_hex());
        let process = ServerProcess::start(
            test,
            "bao",
            &bin,
            |port| {
                vec![
                    "server".to_owned(),
                    "-dev".to_owned(),
                    format!("-dev-root-token-id={token}"),
                    format!("-dev-listen-address=127.0.0.1:{port}"),
                    // Not into a token helper file (~/.vault-token), which other tools read.
                    "-dev-no-store-token".to_owned(),
                ]
            },
            |addr| {
                http::request(addr, "GET", "/v1/sys/health", &[], &[])
                    .is_ok_and(|r| r.status == 200)
            },
        );
        let server = Self { process, token };
        let (status, body) = server.admin_request(
            "POST",
            "/v1/sys/mounts/transit",
            Some(&json!({"type": "transit"})),
        );
        assert!(
            (200..300).contains(&status),
            "{test}: enabling Transit answered HTTP {status}: {body}"
        );
        Some(server)
    }

    /// `http://127.0.0.1:PORT` (what `VAULT_ADDR` / `addr=` take).
    #[must_use]
    pub fn addr(&self) -> String {
        format!("http://{}", self.process.addr)
    }

    /// The socket address (for a [`FaultProxy`](super::FaultProxy) in front of it).
    #[must_use]
    pub fn socket_addr(&self) -> SocketAddr {
        self.process.addr
    }

    /// The root token (a test server's: fine to pass around in tests, never in product code).
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `VAULT_ADDR` and `VAULT_TOKEN` for a client (e.g. a `keybound` child process).
    #[must_use]
    pub fn vault_env(&self) -> Vec<(String, String)> {
        vec![
            ("VAULT_ADDR".to_owned(), self.addr()),
            ("VAULT_TOKEN".to_owned(), self.token.clone()),
        ]
    }

    /// One request with the root token (`X-Vault-Token`): `path` is absolute (`/v1/transit/keys/k`) or
    /// relative to `/v1/` (`transit/keys/k`); `body` is sent as JSON. Returns the status and the JSON body
    /// (`Value::Null` when empty).
    ///
    /// # Panics
    /// When the server cannot be reached or answers something that is not JSON.
    #[must_use]
    pub fn admin_request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/v1/{path}")
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut headers = vec![("X-Vault-Token", self.token.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let response = http::request(self.process.addr, method, &path, &headers, body.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path} to OpenBao: {e}"));
        (response.status, response.json())
    }

    /// Creates a Transit key (`key_type`: `rsa-2048`, `rsa-3072`, `rsa-4096`, `ecdsa-p256`, `ecdsa-p384`, …;
    /// not exportable) in mount `transit`.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn create_transit_key(&self, name: &str, key_type: &str) {
        let (status, body) = self.admin_request(
            "POST",
            &format!("transit/keys/{name}"),
            Some(&json!({"type": key_type, "exportable": false})),
        );
        assert!(
            (200..300).contains(&status),
            "creating Transit key {name} ({key_type}) answered HTTP {status}: {body}"
        );
    }

    /// The server's log so far (stdout and stderr).
    #[must_use]
    pub fn log(&self) -> String {
        self.process.log()
    }
}

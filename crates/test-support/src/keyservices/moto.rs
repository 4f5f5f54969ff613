//! moto's server (`moto_server`), whose KMS speaks the AWS JSON 1.1 protocol over plain HTTP. It checks no
//! signature: any `Authorization` header (or none) is accepted, and every request lands in account
//! `123456789012`. moto 5.2.5 deviates from real KMS: it ignores `MessageType` (a DIGEST input is hashed
//! again), signs RSA-PSS with the maximum salt length, accepts RAW inputs over 4096 bytes, and cannot decrypt
//! an RSA-OAEP ciphertext made with the public key outside it (its ciphertexts are its own blobs).

use std::net::SocketAddr;

use serde_json::Value;

use super::{ServerProcess, binary, http, skipped};

/// The `moto_server` binary to run (default: `target/keyservices/venv/bin/moto_server`).
pub const MOTO_ENV: &str = "KEYBOUND_TEST_MOTO_SERVER";

/// A running `moto_server` on a free loopback port; killed when dropped (its keys live in memory only).
#[derive(Debug)]
pub struct MotoServer {
    process: ServerProcess,
}

impl MotoServer {
    /// Starts the server, or returns `None` (after a loud SKIPPED line) when `moto_server` is not installed
    /// and `KEYBOUND_TEST_KEYSERVICES_REQUIRED` is not `1`.
    ///
    /// # Panics
    /// When `moto_server` is missing and required, or does not answer HTTP within 30 s.
    #[must_use]
    pub fn start(test: &str) -> Option<Self> {
        let bin = match binary(MOTO_ENV, "moto_server") {
            Ok(bin) => bin,
            Err(why) => return skipped(test, &why),
        };
        let process = ServerProcess::start(
            test,
            "moto_server",
            &bin,
            |port| {
                vec![
                    "-H".to_owned(),
                    "127.0.0.1".to_owned(),
                    "-p".to_owned(),
                    port.to_string(),
                ]
            },
            |addr| http::request(addr, "GET", "/", &[], &[]).is_ok_and(|r| r.status == 200),
        );
        Some(Self { process })
    }

    /// `http://127.0.0.1:PORT` (what `AWS_ENDPOINT_URL_KMS` / `endpoint=` take).
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.process.addr)
    }

    /// The socket address (for a [`FaultProxy`](super::FaultProxy) in front of it).
    #[must_use]
    pub fn socket_addr(&self) -> SocketAddr {
        self.process.addr
    }

    /// The variables an AWS KMS client needs for this server: see [`MotoServer::kms_env_for`].
    #[must_use]
    pub fn kms_env(&self) -> Vec<(String, String)> {
        Self::kms_env_for(&self.endpoint())
    }

    /// The variables an AWS KMS client needs for a moto server at `endpoint` (or a proxy in front of one):
    /// `AWS_ACCESS_KEY_ID=testing`, `AWS_SECRET_ACCESS_KEY=testing`, `AWS_REGION=us-east-1`,
    /// `AWS_ENDPOINT_URL_KMS=endpoint`, and `AWS_EC2_METADATA_DISABLED=true` (no instance-metadata probe).
    #[must_use]
    pub fn kms_env_for(endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_KMS", endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// One KMS call (`action`: `CreateKey`, `CreateAlias`, `GetPublicKey`, `Sign`, …) with a JSON body, as
    /// the AWS JSON 1.1 protocol sends it (`X-Amz-Target: TrentService.ACTION`, a dummy SigV4
    /// `Authorization` that moto does not check). Returns the status and the JSON body.
    ///
    /// # Panics
    /// When the server cannot be reached or answers something that is not JSON.
    #[must_use]
    pub fn kms_request(&self, action: &str, body: &Value) -> (u16, Value) {
        kms_request(self.process.addr, action, body)
    }

    /// Forgets every key and alias (moto's `POST /moto-api/reset`).
    ///
    /// # Panics
    /// When the server does not answer 200.
    pub fn reset(&self) {
        let response = http::request(self.process.addr, "POST", "/moto-api/reset", &[], &[])
            .unwrap_or_else(|e| panic!("POST /moto-api/reset: {e}"));
        assert_eq!(
            response.status,
            200,
            "moto reset answered {}",
            response.text()
        );
    }

    /// The server's log so far (stdout and stderr: one line per request).
    #[must_use]
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// One KMS call to a moto server (or a proxy in front of one) at `addr`; see [`MotoServer::kms_request`].
///
/// # Panics
/// When the server cannot be reached or answers something that is not JSON.
#[must_use]
pub fn kms_request(addr: SocketAddr, action: &str, body: &Value) -> (u16, Value) {
    let target = format!("TrentService.{action}");
    let headers = [
        ("X-Amz-Target", target.as_str()),
        ("Content-Type", "application/x-amz-json-1.1"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
        ),
        ("X-Amz-Date", "20260101T000000Z"),
    ];
    let response = http::request(addr, "POST", "/", &headers, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("KMS {action} to {addr}: {e}"));
    (response.status, response.json())
}

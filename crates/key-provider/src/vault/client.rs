//! Transit's HTTP API: one [`reqwest::Client`] for the whole process (rustls, kept-alive pooled connections,
//! 5 s connect timeout, 30 s per request, no redirects: a redirect would carry `X-Vault-Token` to wherever it
//! points), requests with `X-Vault-Token` / `X-Vault-Namespace`, and the mapping of answers onto
//! [`Failure`]s:
//!
//! | answer | failure |
//! |---|---|
//! | 2xx | — (the JSON body) |
//! | 401, 403 | [`KeyError::AccessDenied`], not retried |
//! | 404, or `key not found` | [`KeyError::NotFound`], not retried |
//! | 500 from a decryption (`failed to RSA decrypt`) | [`KeyError::Crypto`], not retried |
//! | 429, 500, 502, 503, 504; connection refused, reset, timed out | [`Failure::Retryable`] |
//! | 400 `not supported for key type` / `does not support` | [`KeyError::NotSupported`] |
//! | other statuses | [`KeyError::Backend`] with Transit's message (sanitised, at most 300 characters) |
//!
//! Requests run on the key-service runtime (`remote`), where the client's connections live.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::BACKEND;
use super::config::{Settings, token_header};
use crate::KeyError;
use crate::remote::Failure;

/// Connect timeout of every request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest piece of a server's message kept in an error.
const MAX_MESSAGE: usize = 300;
/// Largest answer read (Transit's answers are a few kilobytes).
const MAX_ANSWER: usize = 1 << 20;

static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();

/// The process's one HTTP client for Transit (built on first use).
fn client() -> Result<&'static reqwest::Client, KeyError> {
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_keepalive(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("keybound/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| error_chain(&e))
        })
        .as_ref()
        .map_err(|e| KeyError::Backend {
            backend: BACKEND,
            message: format!("cannot create the HTTP client: {e}"),
            source: None,
        })
}

/// One Transit key on one server: where requests go and with which token.
pub(crate) struct Conn {
    pub(crate) settings: Settings,
    /// The Transit mount (`transit`).
    pub(crate) mount: String,
    /// The key name.
    pub(crate) name: String,
}

/// The token stays hidden ([`Settings`]' own `Debug`).
impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("settings", &self.settings)
            .field("mount", &self.mount)
            .field("name", &self.name)
            .finish()
    }
}

/// What a request does, for its error messages: the Transit operation and whether sending it twice is
/// harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `GET keys/NAME`.
    Read,
    /// `POST keys/NAME`.
    Create,
    /// `POST keys/NAME/rotate`: not idempotent, so retried only when it surely did not arrive.
    Rotate,
    /// `POST sign/NAME/…`.
    Sign,
    /// `POST decrypt/NAME`.
    Decrypt,
}

impl Op {
    /// What the request does, for messages.
    fn name(self) -> &'static str {
        match self {
            Self::Read => "reading",
            Self::Create => "creating",
            Self::Rotate => "rotating",
            Self::Sign => "signing",
            Self::Decrypt => "decrypting",
        }
    }

    /// The policy path the token needs, relative to the mount, and the capability.
    fn policy(self, name: &str) -> (String, &'static str) {
        match self {
            Self::Read => (format!("keys/{name}"), "read"),
            Self::Create => (format!("keys/{name}"), "create"),
            Self::Rotate => (format!("keys/{name}/rotate"), "update"),
            Self::Sign => (format!("sign/{name}/*"), "update"),
            Self::Decrypt => (format!("decrypt/{name}"), "update"),
        }
    }
}

impl Conn {
    /// `{addr}/v1/{mount}/{path}`.
    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}/{path}", self.settings.addr, self.mount)
    }

    /// The service, for audit events: `ADDR (mount M[, namespace N][, version V])`.
    pub(crate) fn service(&self, version: Option<u32>) -> String {
        let ns = self
            .settings
            .namespace
            .as_ref()
            .map(|n| format!(", namespace {n}"))
            .unwrap_or_default();
        let version = version
            .map(|v| format!(", version {v}"))
            .unwrap_or_default();
        format!("{} (mount {}{ns}{version})", self.settings.addr, self.mount)
    }

    /// Where the key is, for messages: `key `issuer` in mount `transit` at https://…`.
    pub(crate) fn describe(&self) -> String {
        let ns = self
            .settings
            .namespace
            .as_ref()
            .map(|n| format!(", namespace `{n}`"))
            .unwrap_or_default();
        format!(
            "Transit key `{}` in mount `{}` at {}{ns}",
            self.name, self.mount, self.settings.addr
        )
    }

    /// One attempt of `method {mount}/{path}` with a JSON body: the answer's JSON, or how it failed.
    pub(crate) async fn request(
        &self,
        op: Op,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut request = client()?
            .request(method, self.url(path))
            .header("X-Vault-Token", token_header(&self.settings.token)?)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(ns) = &self.settings.namespace {
            request = request.header("X-Vault-Namespace", ns.as_str());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(op, &e))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        let mut response = response;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER {
                        return Err(Failure::Fatal(self.backend_error(format!(
                            "HTTP {status}: the answer is larger than {MAX_ANSWER} bytes"
                        ))));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_failure(op, &e)),
            }
        }
        let bytes = zeroize::Zeroizing::new(bytes);
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|_| {
                Failure::Fatal(self.backend_error(format!(
                    "HTTP {status}: the answer is not JSON; is {} a Vault or OpenBao server?",
                    self.settings.addr
                )))
            });
        }
        Err(self.status_failure(op, status, &server_message(&bytes)))
    }

    fn backend_error(&self, message: String) -> KeyError {
        KeyError::Backend {
            backend: BACKEND,
            message: format!("{}: {message}", self.describe()),
            source: None,
        }
    }

    /// A request that got no answer: worth retrying, except a rotation that may have arrived.
    fn transport_failure(&self, op: Op, e: &reqwest::Error) -> Failure {
        let reason = format!("{} unreachable: {}", self.settings.addr, error_chain(e));
        if e.is_builder() {
            return Failure::Fatal(self.backend_error(reason));
        }
        if op == Op::Rotate && !e.is_connect() {
            return Failure::Fatal(self.backend_error(format!(
                "{reason}; the rotation was not repeated, as it may have happened: check the key's latest \
                 version (`keybound keys public`) before rotating again"
            )));
        }
        Failure::Retryable(reason)
    }

    /// A request answered with a status other than 2xx.
    fn status_failure(&self, op: Op, status: u16, message: &str) -> Failure {
        let said = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {message}")
        };
        let lower = message.to_ascii_lowercase();
        match status {
            401 | 403 => {
                let (path, capability) = op.policy(&self.name);
                Failure::Fatal(KeyError::AccessDenied {
                    backend: BACKEND,
                    status: Some(status),
                    reason: format!(
                        "{} refused the token for {}{}; check the token (VAULT_TOKEN, BAO_TOKEN or \
                         `token-source=`: expired or revoked?) and that its policy grants `{capability}` on \
                         `{}/{path}`",
                        self.settings.addr,
                        self.describe(),
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({message})")
                        },
                        self.mount
                    ),
                })
            }
            _ if status == 404 || lower.contains("key not found") => {
                Failure::Fatal(KeyError::NotFound {
                    backend: BACKEND,
                    what: "Transit key",
                    searched: format!(
                        "`{}` in mount `{}` at {}{}{}",
                        self.name,
                        self.mount,
                        self.settings.addr,
                        self.settings
                            .namespace
                            .as_ref()
                            .map(|n| format!(" (namespace `{n}`)"))
                            .unwrap_or_default(),
                        if message.is_empty() || lower.contains("key not found") {
                            String::new()
                        } else {
                            format!(" ({said})")
                        }
                    ),
                })
            }
            // Transit answers a ciphertext it cannot decrypt with a 500; another attempt would fail alike.
            500 if op == Op::Decrypt && lower.contains("decrypt") => {
                Failure::Fatal(KeyError::Crypto)
            }
            429 | 500 | 502 | 503 | 504 if op != Op::Rotate || matches!(status, 429 | 503) => {
                Failure::Retryable(said)
            }
            400 if lower.contains("not supported for key type")
                || lower.contains("does not support") =>
            {
                Failure::Fatal(KeyError::NotSupported {
                    operation: format!("{} with {}", op.name(), self.describe()),
                    backend: BACKEND,
                    reason: message.to_owned(),
                })
            }
            _ => Failure::Fatal(self.backend_error(said)),
        }
    }
}

/// Transit's `errors` (joined with `; `), or the body's start, made printable and at most
/// [`MAX_MESSAGE`] characters: no control characters, no line breaks.
fn server_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("errors").and_then(Value::as_array) {
            Some(errors) => errors
                .iter()
                .filter_map(Value::as_str)
                .map(tidy_multierror)
                .collect::<Vec<_>>()
                .join("; "),
            None => String::new(),
        },
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]).into_owned(),
    };
    sanitise(&text)
}

/// Go's multierror text (`1 error occurred:\n\t* what\n\n`) as `what`.
fn tidy_multierror(s: &str) -> String {
    let items: Vec<&str> = s
        .lines()
        .filter_map(|l| l.trim().strip_prefix("* "))
        .collect();
    if s.contains("error occurred:") || s.contains("errors occurred:") {
        items.join("; ")
    } else {
        s.to_owned()
    }
}

/// Printable, one line, at most [`MAX_MESSAGE`] characters.
pub(crate) fn sanitise(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if out.chars().count() >= MAX_MESSAGE {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// An error and its sources, `: `-joined (reqwest's own text is only the outermost layer).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    sanitise(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transit_messages_become_one_bounded_line() {
        let body = br#"{"errors":["1 error occurred:\n\t* failed to RSA decrypt the ciphertext: crypto/rsa: decryption error\n\n"]}"#;
        assert_eq!(
            server_message(body),
            "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error"
        );
        assert_eq!(
            server_message(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(server_message(br#"{"errors":[]}"#), "");
        let long = format!("{{\"errors\":[\"{}\\u0007x\"]}}", "a".repeat(1000));
        let m = server_message(long.as_bytes());
        assert!(m.chars().count() <= MAX_MESSAGE + 1 && m.ends_with('…'));
        assert_eq!(
            server_message(b"<html>\n\tproxy error</html>"),
            "<html>  proxy error</html>"
        );
    }
}

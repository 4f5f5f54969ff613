//! HTTP for Flex: reqwest over rustls with a request timeout and a connect timeout, no redirects (a
//! redirected tokens request would carry encrypted card data to a host nobody checked), responses capped in
//! size, and bounded retries with exponential backoff on network errors and 5xx answers only — never on 4xx.
//! Each attempt rebuilds its request, so merchant authentication (a fresh `jti`, `date`) is signed anew.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use crate::error::FlexError;

/// Timeouts, retries and limits for the Flex HTTP client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Whole-request timeout (default 15 s).
    pub timeout: Duration,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Retries after the first attempt, on network errors and 5xx only (default 2).
    pub max_retries: u32,
    /// Backoff before the first retry, doubled for each further one (default 200 ms).
    pub retry_backoff: Duration,
    /// Largest response body accepted (default 256 KiB).
    pub max_response_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            max_response_bytes: 256 * 1024,
        }
    }
}

impl HttpConfig {
    /// Sets [`HttpConfig::timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`HttpConfig::max_retries`].
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`HttpConfig::retry_backoff`].
    #[must_use]
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The shared HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    config: HttpConfig,
}

impl Http {
    pub(crate) fn new(config: HttpConfig) -> Result<Self, FlexError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keybound-flex-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FlexError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, config })
    }

    /// Sends the request `build` makes, retrying on network errors and 5xx. `endpoint` names the request in
    /// errors and logs (a path, never a full URL with data).
    pub(crate) async fn send<F, Fut>(
        &self,
        endpoint: &str,
        mut build: F,
    ) -> Result<Response, FlexError>
    where
        F: FnMut(reqwest::Client) -> Fut,
        Fut: Future<Output = Result<reqwest::RequestBuilder, FlexError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let last = attempt > self.config.max_retries;
            let request = build(self.client.clone()).await?;
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.status().is_server_error() && !last {
                        tracing::debug!(
                            outcome = %format_args!("{endpoint}: HTTP {status} on attempt {attempt}, retrying"),
                            latency_ms = ms(started),
                            "Flex HTTP"
                        );
                        self.backoff(attempt).await;
                        continue;
                    }
                    let headers = response.headers().clone();
                    let body = self.read_body(endpoint, response).await?;
                    tracing::debug!(
                        outcome = %format_args!("{endpoint}: HTTP {status} on attempt {attempt}"),
                        latency_ms = ms(started),
                        "Flex HTTP"
                    );
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) => {
                    let reason = describe(&e);
                    if !last && (e.is_connect() || e.is_timeout() || e.is_request()) {
                        tracing::debug!(
                            outcome = %format_args!("{endpoint}: network error on attempt {attempt}, retrying"),
                            latency_ms = ms(started),
                            "Flex HTTP"
                        );
                        self.backoff(attempt).await;
                        continue;
                    }
                    tracing::warn!(
                        outcome = %format_args!("{endpoint}: network error on attempt {attempt}, giving up"),
                        latency_ms = ms(started),
                        "Flex HTTP"
                    );
                    return Err(FlexError::Network {
                        endpoint: endpoint.to_owned(),
                        reason,
                        attempts: attempt,
                    });
                }
            }
        }
    }

    async fn backoff(&self, attempt: u32) {
        let factor = 1u32 << (attempt - 1).min(6);
        tokio::time::sleep(self.config.retry_backoff.saturating_mul(factor)).await;
    }

    async fn read_body(
        &self,
        endpoint: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, FlexError> {
        let limit = self.config.max_response_bytes;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(FlexError::Network {
                            endpoint: endpoint.to_owned(),
                            reason: format!("response larger than {limit} bytes"),
                            attempts: 1,
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(FlexError::Network {
                        endpoint: endpoint.to_owned(),
                        reason: describe(&e),
                        attempts: 1,
                    });
                }
            }
        }
    }
}

fn ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A description of a reqwest error without its URL (which could carry a path the caller considers private).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// A hint for an error status.
pub(crate) fn status_hint(status: u16) -> &'static str {
    match status {
        400 => {
            " (bad request: the server rejected the payload — check required fields and that the capture context is current)"
        }
        401 => " (unauthorized: check the merchant id, key id and key or shared secret)",
        403 => " (forbidden: the merchant is not enabled for this product)",
        404 => " (not found: check the environment / base URL)",
        409 | 410 => " (the capture context was already used or has expired: request a new one)",
        429 => " (rate limited: slow down and retry later)",
        s if s >= 500 => " (server error: retried; try again later)",
        _ => "",
    }
}

//! `keyservice-raw`: the reference loop of `cargo xtask bench`'s key-service stage. It sends the same sign
//! requests keybound's `vault` and `aws-kms` backends send, with the same client built the same way, and
//! nothing else: no JOSE work, no verify-after-sign, no audit, no batch reader or writer.
//!
//! ```text
//! keyservice-raw transit --addr URL --token-env VAR --key NAME [--mount transit] --requests N --in-flight C
//! keyservice-raw kms --endpoint URL --key alias/NAME --requests N --in-flight C
//! ```
//!
//! - `transit`: `POST /v1/{mount}/sign/{key}/sha2-256` with `{"input": base64, "signature_algorithm":
//!   "pkcs1v15", "key_version": V}` (RS256), `X-Vault-Token` from the variable `VAR`, as the `vault` backend
//!   sends it; the key's latest version is read once before the loop (`GET /v1/{mount}/keys/{key}`), as the
//!   backend reads it when the key is opened. One `reqwest::Client` (rustls, the backend's timeouts).
//! - `kms`: `Sign` with `RSASSA_PKCS1_V1_5_SHA_256`, `MessageType=RAW`, through one `aws_sdk_kms::Client`
//!   configured as the backend's (SDK retries off, its timeouts); the alias is resolved to the key ARN once
//!   (`DescribeKey`), as the backend names the key by its ARN after `GetPublicKey`.
//!
//! The message is a JWT signing input of the size `keybound provisioning auth-code` signs (its header and
//! claims, 301 bytes). `C` tasks on a multi-thread tokio runtime with two worker threads (as the backends'
//! shared runtime, `key_provider::remote`) each keep one request in flight until `N` requests are done; each
//! answer is read and its signature decoded (a failed request stops the run: exit code 2). The last line on
//! stdout is `requests=N in_flight=C seconds=S rate=R` (R = N / S, requests per second, wall clock, timed
//! from the first request to the last answer).
//!
//! `--threads` (a diagnostic, not what `cargo xtask bench` compares with): C plain threads instead of C
//! tasks, each sending its requests as keybound's blocking `sign` does (`key_provider::remote::block_on`:
//! spawn the request on the runtime, wait for the answer on a std channel), to tell that hand-over's cost
//! from the rest of a batch's.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Connection and per-request timeouts: those of the `vault` and `aws-kms` backends.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const HELP: &str = "\
usage: keyservice-raw transit --addr URL --token-env VAR --key NAME [--mount M] --requests N --in-flight C
       keyservice-raw kms --endpoint URL --key alias/NAME --requests N --in-flight C

Sends N RS256 sign requests to an OpenBao/Vault Transit key or an AWS KMS key (moto) with C in flight, the
way keybound's backends send them, and prints `requests=N in_flight=C seconds=S rate=R`.
";

type Result<T> = std::result::Result<T, String>;

#[derive(Debug, PartialEq, Eq)]
enum Service {
    Transit {
        addr: String,
        token_env: String,
        mount: String,
    },
    Kms {
        endpoint: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    service: Service,
    key: String,
    requests: usize,
    in_flight: usize,
    /// `--threads`: C threads each waiting on a channel for its request on the runtime.
    threads: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>> {
    let Some((kind, rest)) = args.split_first() else {
        return Err(format!("missing subcommand\n\n{HELP}"));
    };
    if matches!(kind.as_str(), "-h" | "--help" | "help") {
        return Ok(None);
    }
    let mut addr = None;
    let mut token_env = None;
    let mut mount = None;
    let mut endpoint = None;
    let mut key = None;
    let mut requests = None;
    let mut in_flight = None;
    let mut threads = false;
    let mut iter = rest.iter();
    while let Some(flag) = iter.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        if flag == "--threads" {
            threads = true;
            continue;
        }
        let value = iter
            .next()
            .ok_or_else(|| format!("{flag} takes a value\n\n{HELP}"))?
            .clone();
        let count = |v: &str| -> Result<usize> {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} takes a positive number, not `{v}`"))
        };
        match (kind.as_str(), flag.as_str()) {
            ("transit", "--addr") => addr = Some(value),
            ("transit", "--token-env") => token_env = Some(value),
            ("transit", "--mount") => mount = Some(value),
            ("kms", "--endpoint") => endpoint = Some(value),
            (_, "--key") => key = Some(value),
            (_, "--requests") => requests = Some(count(&value)?),
            (_, "--in-flight") => in_flight = Some(count(&value)?),
            _ => return Err(format!("unknown argument `{flag}` for `{kind}`\n\n{HELP}")),
        }
    }
    let need = |name: &str| format!("{kind} needs {name}\n\n{HELP}");
    let service = match kind.as_str() {
        "transit" => Service::Transit {
            addr: addr
                .ok_or_else(|| need("--addr"))?
                .trim_end_matches('/')
                .to_owned(),
            token_env: token_env.ok_or_else(|| need("--token-env"))?,
            mount: mount.unwrap_or_else(|| "transit".to_owned()),
        },
        "kms" => Service::Kms {
            endpoint: endpoint.ok_or_else(|| need("--endpoint"))?,
        },
        other => return Err(format!("unknown subcommand `{other}`\n\n{HELP}")),
    };
    Ok(Some(Args {
        service,
        key: key.ok_or_else(|| need("--key"))?,
        requests: requests.ok_or_else(|| need("--requests"))?,
        in_flight: in_flight.ok_or_else(|| need("--in-flight"))?,
        threads,
    }))
}

/// A JWT signing input shaped as `keybound provisioning auth-code` makes them (RS256 header with a `kid`,
/// `iss`, `sub`, `aud`, `jti`, `exp`, `iat`).
fn signing_input() -> Vec<u8> {
    let header =
        r#"{"alg":"RS256","typ":"JWT","kid":"7Lhxh9W8Ddhm2_oEzpbU486EE9QCWd9s48C7CPgIDPY"}"#;
    let claims = r#"{"iss":"bench-issuer","sub":"card-ref-00000001","aud":"APPLE_PAY","jti":"c057d797-d983-4362-b304-7a09a57653ee","exp":1796570863,"iat":1796570743}"#;
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    )
    .into_bytes()
}

/// One service's sign request, ready to be sent many times.
enum Sender {
    Transit {
        client: reqwest::Client,
        url: String,
        token: reqwest::header::HeaderValue,
        body: Vec<u8>,
    },
    Kms {
        client: aws_sdk_kms::Client,
        key_arn: String,
        message: aws_sdk_kms::primitives::Blob,
    },
}

/// The reqwest client as the `vault` backend builds it (`key_provider::vault::client`).
fn transit_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("keybound-benches/keyservice-raw")
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The KMS client as the `aws-kms` backend builds it (`key_provider::aws_kms`: SDK retries off, the same
/// timeouts; region and credentials from the standard chain).
async fn kms_client(endpoint: &str) -> aws_sdk_kms::Client {
    use aws_config::BehaviorVersion;
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(REQUEST_TIMEOUT)
                .build(),
        )
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}

impl Sender {
    async fn new(args: &Args) -> Result<Self> {
        let message = signing_input();
        match &args.service {
            Service::Transit {
                addr,
                token_env,
                mount,
            } => {
                let token = std::env::var(token_env).map_err(|_| {
                    format!("the variable {token_env} (the Vault token) is not set")
                })?;
                let mut token = reqwest::header::HeaderValue::from_str(&token)
                    .map_err(|_| format!("the token in {token_env} is not a valid header value"))?;
                token.set_sensitive(true);
                let client = transit_client()?;
                let key_url = format!("{addr}/v1/{mount}/keys/{}", args.key);
                let answer = client
                    .get(&key_url)
                    .header("X-Vault-Token", token.clone())
                    .send()
                    .await
                    .map_err(|e| format!("GET {key_url}: {e}"))?;
                let status = answer.status();
                let text = answer
                    .text()
                    .await
                    .map_err(|e| format!("GET {key_url}: {e}"))?;
                if !status.is_success() {
                    return Err(format!("GET {key_url}: HTTP {status}: {}", text.trim()));
                }
                let json: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("GET {key_url}: {e}"))?;
                let version = json["data"]["latest_version"]
                    .as_u64()
                    .ok_or_else(|| format!("GET {key_url}: no data.latest_version"))?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "input": STANDARD.encode(&message),
                    "signature_algorithm": "pkcs1v15",
                    "key_version": version,
                }))
                .map_err(|e| e.to_string())?;
                Ok(Self::Transit {
                    client,
                    url: format!("{addr}/v1/{mount}/sign/{}/sha2-256", args.key),
                    token,
                    body,
                })
            }
            Service::Kms { endpoint } => {
                let client = kms_client(endpoint).await;
                let described = client
                    .describe_key()
                    .key_id(&args.key)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeKey {}: {}", args.key, error_chain(&e)))?;
                let key_arn = described
                    .key_metadata()
                    .and_then(|m| m.arn())
                    .ok_or_else(|| format!("DescribeKey {}: no key ARN", args.key))?
                    .to_owned();
                Ok(Self::Kms {
                    client,
                    key_arn,
                    message: aws_sdk_kms::primitives::Blob::new(message),
                })
            }
        }
    }

    /// One sign request; returns the signature's length.
    async fn sign(&self) -> Result<usize> {
        match self {
            Self::Transit {
                client,
                url,
                token,
                body,
            } => {
                let answer = client
                    .post(url)
                    .header("X-Vault-Token", token.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                let status = answer.status();
                let bytes = answer
                    .bytes()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                if !status.is_success() {
                    return Err(format!(
                        "POST {url}: HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes).trim()
                    ));
                }
                let json: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("POST {url}: {e}"))?;
                let signature = json["data"]["signature"]
                    .as_str()
                    .and_then(|s| s.splitn(3, ':').nth(2))
                    .ok_or_else(|| format!("POST {url}: no data.signature `vault:vN:…`"))?;
                STANDARD
                    .decode(signature)
                    .map(|s| s.len())
                    .map_err(|e| format!("POST {url}: the signature is not base64: {e}"))
            }
            Self::Kms {
                client,
                key_arn,
                message,
            } => {
                let answer = client
                    .sign()
                    .key_id(key_arn)
                    .message(message.clone())
                    .message_type(aws_sdk_kms::types::MessageType::Raw)
                    .signing_algorithm(
                        aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
                    )
                    .send()
                    .await
                    .map_err(|e| format!("Sign: {}", error_chain(&e)))?;
                answer
                    .signature()
                    .map(|s| s.as_ref().len())
                    .ok_or_else(|| "Sign: no signature in the answer".to_owned())
            }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `--threads`: C threads, each request spawned on the runtime and awaited on a std channel.
fn run_threads(runtime: &tokio::runtime::Runtime, sender: &Arc<Sender>, args: &Args) -> Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.in_flight)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while next.fetch_add(1, Ordering::Relaxed) < args.requests {
                        let (tx, rx) = std::sync::mpsc::sync_channel(1);
                        let sender = Arc::clone(sender);
                        runtime.spawn(async move {
                            let _ = tx.send(sender.sign().await);
                        });
                        let len = rx
                            .recv()
                            .map_err(|_| "a request task stopped".to_owned())??;
                        if len == 0 {
                            return Err("an empty signature".to_owned());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a thread panicked".to_owned())?)
    })
}

/// C tasks, each keeping one request in flight.
async fn run(requests: usize, in_flight: usize, sender: Arc<Sender>) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let sender = Arc::clone(&sender);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let len = sender.sign().await?;
                if len == 0 {
                    return Err("an empty signature".to_owned());
                }
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| format!("a request task failed: {e}"))??;
    }
    Ok(())
}

/// Sets up, runs the loop (tasks, or threads with `--threads`) and prints the rate.
fn measure(runtime: &tokio::runtime::Runtime, args: Args) -> Result<()> {
    let sender = Arc::new(runtime.block_on(Sender::new(&args))?);
    let started = Instant::now();
    if args.threads {
        run_threads(runtime, &sender, &args)?;
    } else {
        runtime.block_on(run(args.requests, args.in_flight, Arc::clone(&sender)))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
    let rate = args.requests as f64 / seconds;
    println!(
        "requests={} in_flight={} seconds={seconds:.3} rate={rate:.1}",
        args.requests, args.in_flight
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("keyservice-raw: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyservice-raw: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match measure(&runtime, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyservice-raw: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_are_parsed() {
        let a = parse(&args(
            "transit --addr http://127.0.0.1:8200/ --token-env T --key k --requests 10 --in-flight 4",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            a,
            Args {
                service: Service::Transit {
                    addr: "http://127.0.0.1:8200".into(),
                    token_env: "T".into(),
                    mount: "transit".into()
                },
                key: "k".into(),
                requests: 10,
                in_flight: 4,
                threads: false,
            }
        );
        let a = parse(&args(
            "kms --endpoint http://127.0.0.1:5000 --key alias/k --requests 3 --in-flight 1",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            a.service,
            Service::Kms {
                endpoint: "http://127.0.0.1:5000".into()
            }
        );
        assert!(!a.threads);
        let a = parse(&args(
            "kms --endpoint x --key k --threads --requests 3 --in-flight 2",
        ))
        .unwrap()
        .unwrap();
        assert!(a.threads && a.in_flight == 2);
        assert!(parse(&args("kms --endpoint x --key k --requests 0 --in-flight 1")).is_err());
        assert!(parse(&args("kms --addr x --key k --requests 1 --in-flight 1")).is_err());
        assert!(parse(&args("transit --addr x --key k --requests 1 --in-flight 1")).is_err());
        assert!(parse(&args("other")).is_err());
        assert!(parse(&args("--help")).unwrap().is_none());
    }

    #[test]
    fn the_signing_input_is_a_jwt_signing_input_of_an_auth_code() {
        let input = String::from_utf8(signing_input()).unwrap();
        // As long as the signing input of the auth code `keybound provisioning auth-code` made for these claims.
        assert_eq!(input.len(), 301);
        let (header, claims) = input.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["iss"], "bench-issuer");
    }
}

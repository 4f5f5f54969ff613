//! The key-service stage of `cargo xtask bench`: `keybound provisioning auth-code --batch` signing through
//! an OpenBao Transit key and an AWS KMS key (moto), against `keyservice-raw` (`crates/benches`), a loop of the
//! same sign requests sent with the same client, at the same number of requests in flight.
//!
//! 1. [`ensure_keyservices`](crate::keyservices::ensure_keyservices) (the pinned `bao` and `moto_server` in
//!    `target/keyservices/venv`); starts `bao server -dev` and `moto_server` as child processes on free
//!    loopback ports (logs in the run directory), waits until they answer, enables Transit with one HTTP
//!    request, and kills both when the stage ends (also on an error);
//! 2. creates an RSA-2048 key in each with `keybound keys generate --key vault:bench-issuer` /
//!    `--key aws-kms:alias/bench-issuer`;
//! 3. times a one-line batch (process start, key open, one request); then for 1, 4 and 16 requests in
//!    flight: a short raw run estimates the rate, which sets the number of lines M (runs of 50 times that
//!    start-up time, within [`Profile::min_seconds`] and [`Profile::max_seconds`]); then `keybound provisioning auth-code --concurrency C --batch`
//!    over M lines and `keyservice-raw --requests M --in-flight C` alternate for [`Profile::passes`] passes
//!    each. ours = M / the keybound process's whole wall-clock time (process start, key open, reading and
//!    writing included); reference = the raw loop's own rate (first request to last answer, set-up
//!    excluded). Each side is the median of its passes.
//!
//! Without `python3-venv` or PyPI (or when a server does not start) the lines say `skipped` and why, as the
//! PKCS#11 lines do without SoftHSM.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Line, median, rate_text};
use crate::Result;

/// How long the stage measures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Profile {
    /// Passes of each side (ours, raw, ours, raw, …).
    pub(super) passes: usize,
    /// How long one measured run signs, at least and at most: within these bounds, 50 times keybound's
    /// start-up (a one-line batch), so that starting the process and opening the key weigh 2 % of a run.
    /// The number of lines follows from the rate a short raw run estimates.
    pub(super) min_seconds: f64,
    pub(super) max_seconds: f64,
}

pub(super) const FULL: Profile = Profile {
    passes: 5,
    min_seconds: 2.0,
    max_seconds: 5.0,
};

pub(super) const QUICK: Profile = Profile {
    passes: 3,
    min_seconds: 0.5,
    max_seconds: 1.5,
};

impl Profile {
    /// Seconds of one measured run for keybound's start-up time `startup` (unknown: the minimum).
    fn run_seconds(&self, startup: Option<Duration>) -> f64 {
        startup.map_or(self.min_seconds, |s| {
            (50.0 * s.as_secs_f64()).clamp(self.min_seconds, self.max_seconds)
        })
    }
}

/// Requests in flight: keybound's `--concurrency`, the raw loop's `--in-flight`.
const IN_FLIGHT: [usize; 3] = [1, 4, 16];

/// The key both services get.
const KEY_NAME: &str = "bench-issuer";

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A key service of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    Transit,
    Kms,
}

impl Service {
    /// The printed lines' names, by in-flight count.
    fn line_name(self, in_flight: usize) -> &'static str {
        match (self, in_flight) {
            (Self::Transit, 1) => "transit-rs256-c1",
            (Self::Transit, 4) => "transit-rs256-c4",
            (Self::Transit, _) => "transit-rs256-c16",
            (Self::Kms, 1) => "kms-moto-rs256-c1",
            (Self::Kms, 4) => "kms-moto-rs256-c4",
            (Self::Kms, _) => "kms-moto-rs256-c16",
        }
    }

    fn what(self, in_flight: usize) -> &'static str {
        match (self, in_flight) {
            (Self::Transit, 1) => {
                "raw loop of the same Transit sign requests, same reqwest client, 1 in flight"
            }
            (Self::Transit, 4) => {
                "raw loop of the same Transit sign requests, same reqwest client, 4 in flight"
            }
            (Self::Transit, _) => {
                "raw loop of the same Transit sign requests, same reqwest client, 16 in flight"
            }
            (Self::Kms, 1) => "raw loop of the same KMS Sign calls, same SDK client, 1 in flight",
            (Self::Kms, 4) => "raw loop of the same KMS Sign calls, same SDK client, 4 in flight",
            (Self::Kms, _) => "raw loop of the same KMS Sign calls, same SDK client, 16 in flight",
        }
    }

    fn key_ref(self) -> String {
        match self {
            Self::Transit => format!("vault:{KEY_NAME}"),
            Self::Kms => format!("aws-kms:alias/{KEY_NAME}"),
        }
    }
}

/// One measured comparison of the stage, with what the table shows beside it.
pub(super) struct Measured {
    pub(super) line: Line,
    pub(super) in_flight: usize,
    /// Lines per keybound run (= requests per raw run); 0 when skipped.
    pub(super) lines: usize,
    /// keybound's time for a one-line batch (process start, key open, one request), against a run's time.
    pub(super) startup_share: Option<f64>,
}

/// What the stage found.
pub(super) struct Outcome {
    pub(super) measured: Vec<Measured>,
    /// `bao version` and moto's version, or why unknown.
    pub(super) versions: Vec<(&'static str, String)>,
}

/// The names of every line the stage prints, in order.
#[cfg(test)]
fn line_names() -> Vec<&'static str> {
    [Service::Transit, Service::Kms]
        .into_iter()
        .flat_map(|s| IN_FLIGHT.map(|c| s.line_name(c)))
        .collect()
}

fn skipped_all(reason: &str) -> Vec<Measured> {
    [Service::Transit, Service::Kms]
        .into_iter()
        .flat_map(|s| IN_FLIGHT.map(|c| skipped(s, c, reason)))
        .collect()
}

fn skipped(service: Service, in_flight: usize, reason: &str) -> Measured {
    Measured {
        line: Line {
            name: service.line_name(in_flight),
            what: service.what(in_flight),
            outcome: Err(reason.to_owned()),
        },
        in_flight,
        lines: 0,
        startup_share: None,
    }
}

/// Runs the stage; `keybound` and `raw` are the release binaries.
pub(super) fn run(keybound: &Path, raw: &Path, run_dir: &Path, profile: Profile) -> Outcome {
    println!("==> key services: keybound provisioning auth-code --batch against raw sign loops");
    let services = match crate::keyservices::ensure_keyservices() {
        Ok(s) => s,
        Err(e) => {
            let reason = one_line(&e);
            println!("key-service benchmarks: skipped ({reason})");
            return Outcome {
                measured: skipped_all(&reason),
                versions: Vec::new(),
            };
        }
    };
    let versions = vec![
        (
            "OpenBao",
            first_line(Command::new(&services.bao).arg("version")),
        ),
        (
            "moto",
            first_line(
                Command::new(services.venv.join("bin/python"))
                    .args(["-c", "import moto; print('moto', moto.__version__)"]),
            ),
        ),
    ];
    let dir = run_dir.join("keyservices");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let reason = format!("cannot create {}: {e}", dir.display());
        return Outcome {
            measured: skipped_all(&reason),
            versions,
        };
    }
    let mut measured = Vec::new();
    for service in [Service::Transit, Service::Kms] {
        let server = match service {
            Service::Transit => start_bao(&services.bao, &dir),
            Service::Kms => start_moto(&services.moto_server, &dir),
        };
        match server.and_then(|server| {
            let env = server.client_env();
            generate_key(keybound, service, &env)?;
            Ok((server, env))
        }) {
            Ok((server, env)) => {
                let bench = Bench {
                    keybound,
                    raw,
                    dir: &dir,
                    service,
                    env: &env,
                    profile,
                };
                let startup = bench.startup();
                for c in IN_FLIGHT {
                    measured.push(bench.measure(c, startup.as_ref().ok().copied()));
                }
                drop(server);
            }
            Err(e) => {
                let reason = one_line(&e);
                println!("{service:?} benchmarks: skipped ({reason})");
                measured.extend(IN_FLIGHT.map(|c| skipped(service, c, &reason)));
            }
        }
    }
    Outcome { measured, versions }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A server child process; killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// Transit's root token (a throwaway dev server's).
    token: Option<String>,
}

impl Server {
    /// The variables the `keybound` and `keyservice-raw` child processes get.
    fn client_env(&self) -> Vec<(&'static str, String)> {
        match &self.token {
            Some(token) => vec![
                ("VAULT_ADDR", format!("http://{}", self.addr)),
                ("VAULT_TOKEN", token.clone()),
            ],
            None => vec![
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ENDPOINT_URL_KMS", format!("http://{}", self.addr)),
                ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ],
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("    stopped {}", self.name);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A random hex string for the dev server's root token (std's randomly keyed hasher and the clock).
fn random_token() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("kb-bench-{:016x}", hasher.finish())
}

/// Starts `bin args` with its output in `dir/NAME.log` and waits until `ready` answers 200.
fn start(
    name: &'static str,
    bin: &Path,
    args: &[String],
    addr: SocketAddr,
    ready: &str,
    dir: &Path,
    token: Option<String>,
) -> Result<Server> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut server = Server {
        name,
        child,
        addr,
        token,
    };
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "{name} exited ({status}) before answering on {addr}; see {}",
                log_path.display()
            ));
        }
        if http(addr, "GET", ready, &[], "").is_ok_and(|(status, _)| status == 200) {
            println!(
                "    {name} answers on {addr} ({:.1?} after start; log: {})",
                started.elapsed(),
                log_path.display()
            );
            return Ok(server);
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{name} did not answer on {addr} within {START_TIMEOUT:?}; see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bao server -dev` with a random root token, Transit enabled at `transit`.
fn start_bao(bao: &Path, dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let token = random_token();
    let args = [
        "server".to_owned(),
        "-dev".to_owned(),
        format!("-dev-root-token-id={token}"),
        format!("-dev-listen-address={addr}"),
        "-dev-no-store-token".to_owned(),
    ];
    let server = start("bao", bao, &args, addr, "/v1/sys/health", dir, Some(token))?;
    let token = server.token.clone().unwrap_or_default();
    let (status, body) = http(
        addr,
        "POST",
        "/v1/sys/mounts/transit",
        &[
            ("X-Vault-Token", token.as_str()),
            ("Content-Type", "application/json"),
        ],
        r#"{"type":"transit"}"#,
    )?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "enabling Transit answered HTTP {status}: {}",
            one_line(&body)
        ));
    }
    Ok(server)
}

/// `moto_server` (its KMS).
fn start_moto(moto: &Path, dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let args = [
        "-H".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
    ];
    start("moto_server", moto, &args, addr, "/", dir, None)
}

/// One HTTP/1.1 request (`Connection: close`): the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status =
        parse_status(&answer).ok_or_else(|| format!("{method} {path}: not an HTTP answer"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The status code of an HTTP/1.x status line.
fn parse_status(answer: &str) -> Option<u16> {
    let line = answer.lines().next()?;
    let mut fields = line.split_whitespace();
    if !fields.next()?.starts_with("HTTP/1.") {
        return None;
    }
    fields.next()?.parse().ok()
}

/// `keybound keys generate --key REF --kty RSA --bits 2048` in the service.
fn generate_key(keybound: &Path, service: Service, env: &[(&str, String)]) -> Result<()> {
    let key_ref = service.key_ref();
    let output = Command::new(keybound)
        .args(["keys", "generate", "--key", &key_ref])
        .args(["--kty", "RSA", "--bits", "2048"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", keybound.display()))?;
    if !output.status.success() {
        return Err(format!(
            "keybound keys generate --key {key_ref} failed ({}): {}",
            output.status,
            one_line(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    println!("    created {key_ref} (RSA-2048)");
    Ok(())
}

/// The measurements of one service.
struct Bench<'a> {
    keybound: &'a Path,
    raw: &'a Path,
    dir: &'a Path,
    service: Service,
    env: &'a [(&'static str, String)],
    profile: Profile,
}

impl Bench<'_> {
    /// The batch input of `lines` lines (written once per size).
    fn input(&self, lines: usize) -> Result<PathBuf> {
        let path = self.dir.join(format!("batch-{lines}.jsonl"));
        if !path.is_file() {
            let mut text = String::with_capacity(lines * 48);
            for i in 0..lines {
                let aud = ["APPLE_PAY", "GOOGLE_PAY", "SAMSUNG_PAY"][i % 3];
                text.push_str(&format!(r#"{{"sub":"card-ref-{i:08}","aud":"{aud}"}}"#));
                text.push('\n');
            }
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(path)
    }

    /// keybound's batch over `lines` lines with `in_flight` threads: lines per second (whole process).
    fn ours(&self, lines: usize, in_flight: usize) -> Result<f64> {
        let input = self.input(lines)?;
        let started = Instant::now();
        let output = Command::new(self.keybound)
            .args([
                "provisioning",
                "auth-code",
                "--key",
                &self.service.key_ref(),
            ])
            .args(["--issuer-id", KEY_NAME, "--concurrency"])
            .arg(in_flight.to_string())
            .arg("--batch")
            .arg(&input)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.keybound.display()))?;
        let elapsed = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let signed = parse_signed(&stderr);
        if !output.status.success() || signed != Some((lines, 0)) {
            return Err(format!(
                "keybound provisioning auth-code --batch ({lines} lines) failed ({}): {}",
                output.status,
                one_line(&stderr)
            ));
        }
        #[allow(clippy::cast_precision_loss)] // line counts are far below 2^52
        Ok(lines as f64 / elapsed)
    }

    /// `keyservice-raw` with `requests` requests, `in_flight` at a time: requests per second.
    fn raw(&self, requests: usize, in_flight: usize) -> Result<f64> {
        let mut command = Command::new(self.raw);
        match self.service {
            Service::Transit => {
                let addr = self
                    .env
                    .iter()
                    .find(|(k, _)| *k == "VAULT_ADDR")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                command.args(["transit", "--addr", &addr, "--token-env", "VAULT_TOKEN"]);
                command.args(["--key", KEY_NAME]);
            }
            Service::Kms => {
                let endpoint = self
                    .env
                    .iter()
                    .find(|(k, _)| *k == "AWS_ENDPOINT_URL_KMS")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                command.args(["kms", "--endpoint", &endpoint]);
                command.args(["--key", &format!("alias/{KEY_NAME}")]);
            }
        }
        let output = command
            .args(["--requests", &requests.to_string()])
            .args(["--in-flight", &in_flight.to_string()])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.raw.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match parse_raw(&stdout) {
            Some(rate) if output.status.success() => Ok(rate),
            _ => Err(format!(
                "keyservice-raw failed ({}): {}",
                output.status,
                one_line(&String::from_utf8_lossy(&output.stderr))
            )),
        }
    }

    /// The time of a one-line batch: process start, key open (the public key read), one request.
    fn startup(&self) -> Result<Duration> {
        let started = Instant::now();
        self.ours(1, 1)?;
        let t = started.elapsed();
        println!(
            "    {:?}: a one-line batch (start, key open, one request) takes {t:.1?}",
            self.service
        );
        Ok(t)
    }

    fn measure(&self, in_flight: usize, startup: Option<Duration>) -> Measured {
        let name = self.service.line_name(in_flight);
        let result = (|| -> Result<(f64, f64, usize)> {
            // A short raw run estimates the rate; M lines then take about `profile.seconds`.
            let estimate = self.raw((20 * in_flight).max(40), in_flight)?;
            let lines = lines_for(estimate, self.profile.run_seconds(startup), in_flight);
            let mut ours = Vec::new();
            let mut raw = Vec::new();
            for _ in 0..self.profile.passes {
                ours.push(self.ours(lines, in_flight)?);
                raw.push(self.raw(lines, in_flight)?);
            }
            println!(
                "    {name}: {lines} lines; ours {} /s, raw {} /s",
                rates(&ours),
                rates(&raw)
            );
            let ours = median(ours).ok_or("no passes")?;
            let raw = median(raw).ok_or("no passes")?;
            Ok((ours, raw, lines))
        })();
        match result {
            Ok((ours, raw, lines)) => {
                #[allow(clippy::cast_precision_loss)] // line counts are far below 2^52
                let run_seconds = lines as f64 / ours;
                Measured {
                    line: Line {
                        name,
                        what: self.service.what(in_flight),
                        outcome: Ok((ours, raw)),
                    },
                    in_flight,
                    lines,
                    startup_share: startup.map(|s| s.as_secs_f64() / run_seconds),
                }
            }
            Err(e) => {
                println!("    {name}: failed ({e})");
                skipped(self.service, in_flight, &e)
            }
        }
    }
}

fn rates(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| rate_text(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lines for a run of about `seconds` at `rate` per second: a multiple of `in_flight`, at least 20 per
/// request in flight (so the ramp-up and the last stragglers weigh little), at most 200,000.
fn lines_for(rate: f64, seconds: f64, in_flight: usize) -> usize {
    let wanted = (rate * seconds).clamp(0.0, 200_000.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped above
    let wanted = wanted as usize;
    let per = in_flight.max(1);
    (wanted.div_ceil(per) * per).max(20 * per)
}

/// `N signed, E errors` of keybound's batch summary on stderr
/// (`keybound: 1000 lines: 1000 signed, 0 errors in 1.20 s (833/s)`).
fn parse_signed(stderr: &str) -> Option<(usize, usize)> {
    stderr.lines().rev().find_map(|line| {
        let (_, rest) = line.split_once(" lines: ")?;
        let (signed, rest) = rest.split_once(" signed, ")?;
        let errors = rest.split_whitespace().next()?;
        Some((signed.trim().parse().ok()?, errors.parse().ok()?))
    })
}

/// `rate=R` of keyservice-raw's last line (`requests=N in_flight=C seconds=S rate=R`).
fn parse_raw(stdout: &str) -> Option<f64> {
    let line = stdout.lines().rev().find(|l| l.starts_with("requests="))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("rate="))?
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r > 0.0)
}

fn first_line(command: &mut Command) -> String {
    command
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The generated "Key services" part of `docs/benchmarks.md`.
pub(super) fn markdown(outcome: &Outcome) -> String {
    let mut s = String::from("\n### Key services\n\n");
    for (name, version) in &outcome.versions {
        s.push_str(&format!("- {name}: {version}\n"));
    }
    s.push_str(
        "\n`keybound provisioning auth-code --concurrency C --batch` over M lines (RS256, an RSA-2048 key \
         in the service) against `keyservice-raw` sending M of the same sign requests with the same client, C \
         in flight (C requests sent and not yet answered at any moment: keybound's C signing threads, the raw \
         loop's C tasks). Ours counts the whole keybound process (start, key open, reading, signing, \
         verify-after-sign, writing); the reference only its loop. The servers run on this machine, beside \
         the clients, so these figures measure keybound's overhead over the same requests, not a production \
         cluster's capacity.\n\n",
    );
    s.push_str(
        "| comparison | in flight | lines (M) | ours | reference | ratio | one-line batch / run |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in &outcome.measured {
        match &m.line.outcome {
            Ok((ours, reference)) => s.push_str(&format!(
                "| `{}` | {} | {} | {}/s | {}/s | {:.2} | {} |\n",
                m.line.name,
                m.in_flight,
                m.lines,
                rate_text(*ours),
                rate_text(*reference),
                ours / reference,
                m.startup_share
                    .map_or_else(|| "?".to_owned(), |f| format!("{:.1} %", f * 100.0))
            )),
            Err(reason) => s.push_str(&format!(
                "| `{}` | {} | | skipped | | | {reason} |\n",
                m.line.name, m.in_flight
            )),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_parsed() {
        assert_eq!(
            parse_signed("keybound: 1000 lines: 1000 signed, 0 errors in 1.20 s (833/s)\n"),
            Some((1000, 0))
        );
        assert_eq!(
            parse_signed("warning\nkeybound: 3 lines: 2 signed, 1 errors in 0.01 s (200/s)"),
            Some((2, 1))
        );
        assert_eq!(parse_signed("keybound: error: no key"), None);
        assert_eq!(
            parse_raw("requests=400 in_flight=4 seconds=0.500 rate=800.0\n"),
            Some(800.0)
        );
        assert_eq!(parse_raw("requests=1 in_flight=1 seconds=0 rate=inf"), None);
        assert_eq!(parse_raw("nothing"), None);
        assert_eq!(parse_status("HTTP/1.1 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(parse_status("SSH-2.0-x\r\n"), None);
    }

    #[test]
    fn line_counts_follow_the_rate() {
        assert_eq!(lines_for(1000.0, 2.5, 4), 2500);
        assert_eq!(lines_for(1000.0, 2.5, 16), 2512);
        // At least 50 per request in flight; at most 200,000.
        assert_eq!(lines_for(10.0, 1.0, 16), 320);
        assert_eq!(lines_for(1e9, 10.0, 1), 200_000);
        assert_eq!(lines_for(f64::NAN, 1.0, 1), 20);
        // Runs of 50 start-up times, within the profile's bounds.
        let p = FULL;
        assert!((p.run_seconds(None) - 2.0).abs() < 1e-9);
        assert!((p.run_seconds(Some(Duration::from_millis(60))) - 3.0).abs() < 1e-9);
        assert!((p.run_seconds(Some(Duration::from_millis(10))) - 2.0).abs() < 1e-9);
        assert!((p.run_seconds(Some(Duration::from_secs(1))) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn every_line_has_its_own_name() {
        let names = line_names();
        assert_eq!(names.len(), 6);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for (s, prefix) in [
            (Service::Transit, "transit-rs256-c"),
            (Service::Kms, "kms-moto-rs256-c"),
        ] {
            for c in IN_FLIGHT {
                assert_eq!(s.line_name(c), format!("{prefix}{c}"));
                assert!(
                    s.what(c).ends_with(&format!("{c} in flight")),
                    "{}",
                    s.what(c)
                );
            }
        }
    }

    #[test]
    fn the_table_shows_measured_and_skipped_lines() {
        let outcome = Outcome {
            measured: vec![
                Measured {
                    line: Line {
                        name: Service::Transit.line_name(4),
                        what: Service::Transit.what(4),
                        outcome: Ok((450.0, 500.0)),
                    },
                    in_flight: 4,
                    lines: 1200,
                    startup_share: Some(0.0123),
                },
                skipped(Service::Kms, 16, "moto_server did not answer"),
            ],
            versions: vec![("OpenBao", "OpenBao v2.7.2".to_owned())],
        };
        let md = markdown(&outcome);
        assert!(md.contains("- OpenBao: OpenBao v2.7.2\n"), "{md}");
        assert!(
            md.contains("| `transit-rs256-c4` | 4 | 1200 | 450/s | 500/s | 0.90 | 1.2 % |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| `kms-moto-rs256-c16` | 16 | | skipped | | | moto_server did not answer |"
            ),
            "{md}"
        );
        assert!(md.contains("not a production"), "{md}");
        assert_eq!(
            outcome.measured[0].line.printed(),
            "transit-rs256-c4: ours=450/s reference=500/s ratio=0.90  (raw loop of the same Transit sign \
             requests, same reqwest client, 4 in flight)"
        );
    }

    #[test]
    fn the_http_client_reads_status_and_body() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n{}") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!")
                .unwrap();
            request
        });
        let (status, body) = http(addr, "POST", "/v1/x", &[("X-A", "b")], "{}").unwrap();
        assert_eq!((status, body.as_str()), (400, "nope!"));
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v1/x HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("X-A: b\r\n") && request.ends_with("\r\n\r\n{}"));
    }
}

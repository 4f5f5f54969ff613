//! Batch mode: many authorization codes from JSON lines, signed concurrently through one key, streamed.
//!
//! Input, one JSON object a line: `{"sub": "…", "aud": "APPLE_PAY"}`, optionally `"token_id": true` (the
//! subject is a tokenId) and `"ttl": N` (seconds), read as strictly as every other JSON keybound judges
//! ([`jose_core::json::parse_strict_object`]: a member given twice is refused, never "last one wins").
//! Output, one line per non-blank input line, in input order: `{"sub":"…","jwt":"…"}`, or an error line
//! `{"line":N,"sub":"…","error":"…"}` where `line` is the 1-based line number in the input (blank lines
//! counted) and `sub` is present only when the line's `sub` could be read as a string and does not look like
//! a card number (such a line is refused, and its output does not repeat it). A bad line becomes an error
//! line; it never stops the batch. Blank lines are skipped.
//!
//! One failure does stop it: a **key service that stays unavailable through every retry**
//! ([`key_provider::KeyError::ServiceUnavailable`]: Transit or KMS throttling, failing or unreachable for
//! longer than the backend's bounded retries). Signing every remaining line into the same outage would only
//! turn a long input into a long wait and a long file of error lines, so the batch stops: no further line is
//! read or signed, the output ends with the error line of the first line (in input order) the service gave up
//! on — every line before it has its code or error line — and [`BatchSummary::stopped_at`] names that input
//! line, so the batch can be resumed from it. Nothing is lost: each input line before it has its output line,
//! and no output line is written for any line after it.
//!
//! Streaming, with memory bounded by the window, not by the input:
//!
//! ```text
//!  reader thread ──jobs (bounded)──▶ N worker threads ──results──▶ writer (calling thread)
//!       ▲                              KeyBackend::sign             reorders by line number,
//!       └────────── permits (window) ◀──────────────────────────── writes, releases permits in bunches
//! ```
//!
//! The reader takes a permit before each line and the writer returns it once that line's output is
//! written, so at most `window` lines are ever held, however slow one signature is. The writer gives
//! permits back a quarter of the window at a time: a reader woken for every single line would cost a
//! context switch a line, and holding back fewer than a quarter of the window never leaves the reader
//! without permits while no line is in flight. Signing is blocking
//! (PKCS#11), so workers are plain threads, never async worker threads — except for a key service's key
//! (`vault:`, `aws-kms:`, [`key_provider::KeyBackend::runtime`]): there each worker is a task on the key
//! service's own runtime, calling [`AuthCodeSigner::sign_async`], so a line's request runs on the worker
//! thread that drives its connection, with no hand-over between threads per line. The writer flushes whenever it
//! would otherwise wait, so output appears as soon as it is in order. Lines longer than
//! [`BatchOptions::max_line_len`] are skipped to their end and reported, never buffered whole.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jose_core::JoseError;
use jose_core::json::StrictJsonError;
use key_provider::KeyError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth_code::{Audience, AuthCodeRequest, AuthCodeSigner, Subject};
use crate::error::{ProvisioningError, sanitize};

/// How a batch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Signing threads — for key-service keys, tasks on the service's runtime: requests in flight (default:
    /// available parallelism; 8 for PKCS#11 keys, whose latency is the token's; 16 for key-service keys,
    /// `vault:` and `aws-kms:`, whose latency is a network round trip).
    pub concurrency: usize,
    /// Most lines read but not yet written (default: 8 × concurrency, at least 64).
    pub window: usize,
    /// Longest input line in bytes (default 64 KiB); longer lines become error lines.
    pub max_line_len: usize,
}

impl BatchOptions {
    /// Default longest input line: 64 KiB.
    pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;
    /// Default signing threads for a key in a key service (`vault`, `aws-kms`): 16. Each thread's blocking
    /// sign waits on one request to the service (the requests overlap on the backend's shared runtime and
    /// connection pool), so 16 threads keep 16 requests in flight: the round trip, not the CPU, is what
    /// limits such a batch.
    pub const DEFAULT_KEY_SERVICE_CONCURRENCY: usize = 16;

    /// Defaults for signing with `signer`'s key.
    #[must_use]
    pub fn for_signer(signer: &AuthCodeSigner) -> Self {
        let concurrency = match signer.key().backend_name() {
            "pkcs11" => key_provider::OpenOptions::DEFAULT_PKCS11_MAX_SESSIONS,
            "vault" | "aws-kms" => Self::DEFAULT_KEY_SERVICE_CONCURRENCY,
            _ => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
        };
        Self::with_concurrency(concurrency)
    }

    /// `concurrency` threads (at least 1) and the matching default window.
    #[must_use]
    pub fn with_concurrency(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            concurrency,
            window: (concurrency * 8).max(64),
            max_line_len: Self::DEFAULT_MAX_LINE_LEN,
        }
    }

    /// Sets the window (at least `concurrency`).
    #[must_use]
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(self.concurrency).max(1);
        self
    }
}

/// Where a running batch stands; handed to the progress callback after each written line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchProgress {
    /// Lines written (codes and errors).
    pub lines: u64,
    /// Of which errors.
    pub errors: u64,
    /// Input bytes consumed by the written lines (including skipped blank lines before them).
    pub bytes: u64,
}

/// The outcome of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BatchSummary {
    /// Lines processed (one output line each).
    pub total: u64,
    /// Codes signed.
    pub signed: u64,
    /// Error lines.
    pub errors: u64,
    /// Of the error lines, those where the key backend failed while signing (an HSM error, a lost token):
    /// an operational failure, not a line the rules refused.
    pub key_failures: u64,
    /// When the batch stopped early because the key service stayed unavailable through every retry: the
    /// 1-based input line where it stopped (that line's error line is the last output line, or, when the
    /// line was never signed, there is none for it). Resume from this line. `None` when every line was
    /// processed.
    pub stopped_at: Option<u64>,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl BatchSummary {
    /// Lines per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines: {} signed, {} errors",
            self.total, self.signed, self.errors
        )?;
        if self.key_failures > 0 {
            write!(f, " ({} of them the key failing)", self.key_failures)?;
        }
        write!(
            f,
            " in {:.2} s ({:.0}/s)",
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        if let Some(line) = self.stopped_at {
            write!(
                f,
                "; stopped at input line {line}: the key service stayed unavailable through every retry, so \
                 no line after it was read or written (resume from line {line})"
            )?;
        }
        Ok(())
    }
}

/// One line handed from the reader to the workers.
struct Job {
    seq: u64,
    /// The 1-based line number in the input (blank lines counted).
    line_no: u64,
    bytes: u64,
    line: Result<Vec<u8>, String>,
}

/// One finished line handed from a worker to the writer.
struct Done {
    bytes: u64,
    line_no: u64,
    output: Vec<u8>,
    outcome: Outcome,
}

/// What became of one line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Signed,
    /// Refused (unreadable line, a request the rules refuse).
    Refused,
    /// The key backend failed while signing.
    KeyFailed,
    /// The key service stayed unavailable through every retry: the batch stops at this line.
    ServiceGaveUp,
    /// Not signed: the batch had already stopped when a worker took the line.
    Skipped,
}

#[derive(Serialize)]
struct OutputLine<'a> {
    /// Error lines only: the input line number.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Runs a batch: reads JSON lines from `input`, signs through `signer` on `options.concurrency` threads,
/// writes one JSON line per input line to `output` in input order, and calls `progress` after each written
/// line. Returns the summary; any error *lines* are counted in it, not returned as `Err`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use provisioning_signer::{AuthCodeSigner, BatchOptions};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("issuer.pem");
/// # key_provider::file::generate(&path, key_provider::KeySpec::Rsa(2048))?;
/// // The issuer key: a file here; `pkcs11:token=…;object=…?module-path=…&pin-source=file:…` in production.
/// let key = key_provider::open(&format!("file:{}", path.display()).parse()?, &Default::default())?;
/// let signer = AuthCodeSigner::new(key, "ACMEBANK01")?;
/// let input = "{\"sub\":\"card-1\",\"aud\":\"APPLE_PAY\"}\n{\"sub\":\"card-2\",\"aud\":\"WALLET\"}\n";
/// let mut output = Vec::new();
/// let summary = provisioning_signer::batch::run(
///     &signer,
///     input.as_bytes(),
///     &mut output,
///     &BatchOptions::for_signer(&signer),
///     &mut |progress| eprintln!("{} lines", progress.lines),
/// )?;
/// assert_eq!((summary.signed, summary.errors), (1, 1)); // WALLET is not a token requestor
/// let lines: Vec<serde_json::Value> =
///     output.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(serde_json::from_slice).collect::<Result<_, _>>()?;
/// assert!(lines[0]["jwt"].is_string());
/// assert!(lines[1]["error"].is_string());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`ProvisioningError::Io`] when reading the input or writing the output fails (what was written stays
/// written, in order).
pub fn run<R, W>(
    signer: &AuthCodeSigner,
    input: R,
    output: W,
    options: &BatchOptions,
    progress: &mut dyn FnMut(&BatchProgress),
) -> Result<BatchSummary, ProvisioningError>
where
    R: BufRead + Send,
    W: Write,
{
    let started = Instant::now();
    let concurrency = options.concurrency.max(1);
    let window = options.window.max(concurrency);
    let max_line_len = options.max_line_len.max(16);

    let permits = Permits::new(window);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Done)>();
    // Set once the key service gave up on a line: nothing more is read or signed.
    let stop = Arc::new(AtomicBool::new(false));
    // A key service's key: the signing workers are tasks on its runtime (see `work_async`); otherwise threads.
    let workers = match signer.key().runtime() {
        Some(runtime) => {
            let (job_tx, job_rx) = tokio::sync::mpsc::channel::<Job>(window);
            let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
            let signer = Arc::new(signer.clone());
            for _ in 0..concurrency {
                runtime.spawn(work_async(
                    Arc::clone(&signer),
                    Arc::clone(&job_rx),
                    done_tx.clone(),
                    Arc::clone(&stop),
                ));
            }
            Workers::Tasks(job_tx)
        }
        None => {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(window);
            Workers::Threads(job_tx, Mutex::new(job_rx))
        }
    };

    tracing::info!(
        issuer_id = signer.issuer_id(),
        kid = signer.kid(),
        concurrency,
        window,
        "batch started"
    );

    let (send_job, job_rx): (Box<dyn FnMut(Job) -> bool + Send>, _) = match workers {
        Workers::Tasks(job_tx) => (Box::new(move |job| job_tx.blocking_send(job).is_ok()), None),
        Workers::Threads(job_tx, job_rx) => {
            (Box::new(move |job| job_tx.send(job).is_ok()), Some(job_rx))
        }
    };
    let (summary, read_result) = std::thread::scope(|scope| {
        let stop = &*stop;
        let permits = &permits;
        let reader = scope.spawn(move || read_lines(input, permits, send_job, max_line_len, stop));
        if let Some(job_rx) = &job_rx {
            for _ in 0..concurrency {
                let done_tx = done_tx.clone();
                scope.spawn(move || work(signer, job_rx, &done_tx, stop));
            }
        }
        drop(done_tx);
        let written = write_in_order(output, &done_rx, permits, window, progress);
        // On a write error, stop the reader (no more permits) and drain the workers.
        permits.close();
        drop(done_rx);
        let read_result = reader.join().unwrap_or_else(|_| {
            Err(ProvisioningError::Io {
                what: "input",
                source: std::io::Error::other("the reader thread panicked"),
            })
        });
        (written, read_result)
    });
    let written = summary?;
    read_result?;
    let summary = BatchSummary {
        total: written.lines,
        signed: written.lines - written.errors,
        errors: written.errors,
        key_failures: written.key_failures,
        stopped_at: written.stopped_at,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        issuer_id = signer.issuer_id(),
        kid = signer.kid(),
        total = summary.total,
        errors = summary.errors,
        key_failures = summary.key_failures,
        elapsed_ms = u64::try_from(summary.elapsed.as_millis()).unwrap_or(u64::MAX),
        rate = summary.rate(),
        stopped_at = summary.stopped_at,
        outcome = if summary.stopped_at.is_some() {
            "stopped"
        } else if summary.errors == 0 {
            "ok"
        } else {
            "with_errors"
        },
        "batch finished"
    );
    Ok(summary)
}

/// The window's permits: a count the reader takes one of per line and the writer gives back (a bunch at a
/// time, with one wake-up); closed when the writer is done.
struct Permits {
    state: Mutex<(usize, bool)>,
    available: Condvar,
}

impl Permits {
    fn new(window: usize) -> Self {
        Self {
            state: Mutex::new((window, false)),
            available: Condvar::new(),
        }
    }

    /// Waits for a permit and takes it; `false` once closed.
    fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match *state {
                (_, true) => return false,
                (0, false) => {
                    state = self
                        .available
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                (ref mut n, false) => {
                    *n -= 1;
                    return true;
                }
            }
        }
    }

    /// Gives `n` permits back (the reader may have ended: permits nobody takes are fine).
    fn give(&self, n: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += n;
        self.available.notify_one();
    }

    /// No more permits (the writer is done, or the batch stopped): a waiting reader ends.
    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.available.notify_one();
    }
}

/// The reader: one permit per line, then the line (or why it could not be taken) to the workers.
fn read_lines<R: BufRead>(
    mut input: R,
    permits: &Permits,
    mut send_job: Box<dyn FnMut(Job) -> bool + Send + '_>,
    max_line_len: usize,
    stop: &AtomicBool,
) -> Result<(), ProvisioningError> {
    let mut seq = 0u64;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let mut pending_bytes = 0u64;
    loop {
        if !permits.take() || stop.load(Ordering::Acquire) {
            // The writer stopped (output failed), or the key service gave up: nothing more to read.
            return Ok(());
        }
        // Read until a non-blank line or the end, reusing this permit for skipped blank lines.
        let job = loop {
            buf.clear();
            let (consumed, too_long) = read_line_limited(&mut input, &mut buf, max_line_len)
                .map_err(|source| ProvisioningError::Io {
                    what: "input",
                    source,
                })?;
            if consumed == 0 {
                return Ok(());
            }
            line_no += 1;
            pending_bytes += consumed as u64;
            if too_long {
                break Job {
                    seq,
                    line_no,
                    bytes: pending_bytes,
                    line: Err(format!("line is longer than {max_line_len} bytes")),
                };
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            break Job {
                seq,
                line_no,
                bytes: pending_bytes,
                line: Ok(std::mem::take(&mut buf)),
            };
        };
        pending_bytes = 0;
        seq += 1;
        if !send_job(job) {
            return Ok(()); // Every worker is gone: the batch is being torn down.
        }
    }
}

/// Reads one line (without its `\n` / `\r\n`) into `buf`, keeping at most `limit` bytes; a longer line is
/// consumed to its end and flagged. Returns the bytes consumed (0 at the end of input).
fn read_line_limited<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let available = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let (chunk, found_newline) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if !too_long {
            if buf.len() + chunk.len() > limit {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(found_newline);
        input.consume(used);
        consumed += used;
        if found_newline {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok((consumed, too_long))
}

/// A worker: takes lines until the reader is done, turns each into an output line.
fn work(
    signer: &AuthCodeSigner,
    jobs: &Mutex<Receiver<Job>>,
    done: &mpsc::Sender<(u64, Done)>,
    stop: &AtomicBool,
) {
    loop {
        let job = {
            // A poisoned lock means another worker panicked while holding it (it never does: the lock only
            // guards `recv`); the receiver inside is still sound, so keep going.
            let rx = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let seq = job.seq;
        let bytes = job.bytes;
        let line_no = job.line_no;
        // A panic in one line must not leave a gap the writer waits on forever: report it as that line's error.
        let (output, outcome) = if stop.load(Ordering::Acquire) {
            (Vec::new(), Outcome::Skipped)
        } else {
            std::panic::catch_unwind(AssertUnwindSafe(|| process(signer, line_no, job.line)))
                .unwrap_or_else(|_| {
                    (
                        render_error(line_no, None, "internal error while signing this line"),
                        Outcome::Refused,
                    )
                })
        };
        if outcome == Outcome::ServiceGaveUp {
            stop.store(true, Ordering::Release);
        }
        if done
            .send((
                seq,
                Done {
                    bytes,
                    line_no,
                    output,
                    outcome,
                },
            ))
            .is_err()
        {
            return;
        }
    }
}

/// Where the signing workers run.
enum Workers {
    /// Tasks on a key service's runtime, fed through an async channel.
    Tasks(tokio::sync::mpsc::Sender<Job>),
    /// Threads (software and PKCS#11 keys), fed through a std channel.
    Threads(SyncSender<Job>, Mutex<Receiver<Job>>),
}

/// A signing worker as a task on a key service's runtime: the same steps as [`work`], with
/// [`AuthCodeSigner::sign_async`], which then runs the request inline on this task's worker thread (no
/// hand-over between threads per line; `cargo xtask bench` compares it with a raw request loop).
async fn work_async(
    signer: Arc<AuthCodeSigner>,
    jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
    done: mpsc::Sender<(u64, Done)>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let job = {
            let mut rx = jobs.lock().await;
            match rx.recv().await {
                Some(job) => job,
                None => return,
            }
        };
        let (output, outcome) = if stop.load(Ordering::Acquire) {
            (Vec::new(), Outcome::Skipped)
        } else {
            match prepare(job.line_no, job.line) {
                Ok((sub, request)) => finish(
                    job.line_no,
                    sub.as_deref(),
                    signer.sign_async(&request).await,
                ),
                Err(refused) => refused,
            }
        };
        if outcome == Outcome::ServiceGaveUp {
            stop.store(true, Ordering::Release);
        }
        let finished = Done {
            bytes: job.bytes,
            line_no: job.line_no,
            output,
            outcome,
        };
        if done.send((job.seq, finished)).is_err() {
            return;
        }
    }
}

/// The request of one input line, with its `sub` for the output line, or the line's error output when the
/// line is refused before signing.
fn prepare(
    line_no: u64,
    line: Result<Vec<u8>, String>,
) -> Result<(Option<String>, AuthCodeRequest), (Vec<u8>, Outcome)> {
    let line = match line {
        Ok(l) => l,
        Err(reason) => return Err((render_error(line_no, None, &reason), Outcome::Refused)),
    };
    let (sub, request) = parse_line(&line);
    // A `sub` that looks like a card number is refused by the signer; the error line must not repeat it.
    let sub = sub.filter(|s| !crate::card::looks_like_pan(s));
    match request {
        Ok(r) => Ok((sub, r)),
        Err(e) => Err((render_error(line_no, sub.as_deref(), &e), Outcome::Refused)),
    }
}

/// One input line (number `line_no`) to one output line (with its trailing newline) and what became of it.
fn process(
    signer: &AuthCodeSigner,
    line_no: u64,
    line: Result<Vec<u8>, String>,
) -> (Vec<u8>, Outcome) {
    match prepare(line_no, line) {
        Ok((sub, request)) => finish(line_no, sub.as_deref(), signer.sign(&request)),
        Err(refused) => refused,
    }
}

/// The output line of one signed (or failed) request.
fn finish(
    line_no: u64,
    sub: Option<&str>,
    signed: Result<crate::auth_code::AuthCode, ProvisioningError>,
) -> (Vec<u8>, Outcome) {
    match signed {
        Ok(code) => (
            render(&OutputLine {
                line: None,
                sub,
                jwt: Some(code.as_str()),
                error: None,
            }),
            Outcome::Signed,
        ),
        // As AuthCodeSigner reports it: the backend failed while signing; a key service through every retry.
        Err(
            e @ (ProvisioningError::Key(KeyError::ServiceUnavailable { .. })
            | ProvisioningError::Jose(JoseError::Key(KeyError::ServiceUnavailable { .. }))),
        ) => (
            render_error(line_no, sub, &e.to_string()),
            Outcome::ServiceGaveUp,
        ),
        Err(e @ (ProvisioningError::Jose(_) | ProvisioningError::Key(_))) => (
            render_error(line_no, sub, &e.to_string()),
            Outcome::KeyFailed,
        ),
        Err(e) => (render_error(line_no, sub, &e.to_string()), Outcome::Refused),
    }
}

/// An error line: `{"line":N,"sub":"…","error":"…"}`, without `sub` when there is none to repeat.
fn render_error(line_no: u64, sub: Option<&str>, error: &str) -> Vec<u8> {
    render(&OutputLine {
        line: Some(line_no),
        sub,
        jwt: None,
        error: Some(error),
    })
}

fn render(line: &OutputLine<'_>) -> Vec<u8> {
    // Serializing a struct of numbers and strings into a Vec cannot fail.
    let mut out = serde_json::to_vec(line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The members an input line may have.
const ALLOWED_MEMBERS: [&str; 4] = ["sub", "aud", "token_id", "ttl"];

/// Parses one input line. Returns the `sub` (when it is a string, so error lines can name it) and the
/// request or a message that quotes no value.
fn parse_line(line: &[u8]) -> (Option<String>, Result<AuthCodeRequest, String>) {
    let object: Map<String, Value> = match jose_core::json::parse_strict_object(line) {
        Ok(m) => m,
        Err(StrictJsonError::NotAnObject) => {
            return (None, Err("line is not a JSON object".into()));
        }
        Err(StrictJsonError::DuplicateMember { name, column, .. }) => {
            // Name the member only when it is one of ours: an unknown name could be anything, a PAN too.
            let which = if ALLOWED_MEMBERS.contains(&name.as_str()) {
                format!("member `{name}` appears more than once")
            } else {
                "a member name appears more than once".to_owned()
            };
            return (
                None,
                Err(format!(
                    "{which} (column {column}); each member may appear once"
                )),
            );
        }
        Err(StrictJsonError::Syntax { reason, column, .. }) => {
            return (
                None,
                Err(format!(
                    "line is not valid JSON: {reason} (column {column})"
                )),
            );
        }
        Err(StrictJsonError::TrailingCharacters { column, .. }) => {
            return (
                None,
                Err(format!(
                    "line is not valid JSON: characters after the object (column {column})"
                )),
            );
        }
        Err(_) => return (None, Err("line is not valid JSON".into())),
    };
    let sub = match object.get("sub") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let request = (|| {
        if let Some(unknown) = object
            .keys()
            .find(|k| !ALLOWED_MEMBERS.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown member {:?} (allowed: sub, aud, token_id, ttl)",
                sanitize(unknown)
            ));
        }
        let sub = match object.get("sub") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("`sub` must be a string".into()),
            None => return Err("`sub` is missing".into()),
        };
        let aud: Audience = match object.get("aud") {
            Some(Value::String(s)) => s.parse().map_err(|e: ProvisioningError| e.to_string())?,
            Some(_) => {
                return Err("`aud` must be a string: GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY".into());
            }
            None => return Err("`aud` is missing (GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY)".into()),
        };
        let token_id = match object.get("token_id") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`token_id` must be true or false".into()),
        };
        let ttl = match object.get("ttl") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or("`ttl` must be a whole number of seconds (1 to 300)")?,
            ),
        };
        let subject = if token_id {
            Subject::TokenId(sub)
        } else {
            Subject::IssuerCardRefId(sub)
        };
        let mut request = AuthCodeRequest::new(subject, aud);
        request.ttl_secs = ttl;
        Ok(request)
    })();
    (sub, request)
}

/// What the writer wrote.
struct Written {
    lines: u64,
    errors: u64,
    key_failures: u64,
    stopped_at: Option<u64>,
}

/// The writer: reorders finished lines by number, writes them, returns a permit per line. After the first
/// line (in order) the key service gave up on, or the first line skipped because of it, nothing more is
/// written (see the module docs).
fn write_in_order<W: Write>(
    output: W,
    done: &Receiver<(u64, Done)>,
    permits: &Permits,
    window: usize,
    progress: &mut dyn FnMut(&BatchProgress),
) -> Result<Written, ProvisioningError> {
    // Permits owed to the reader, returned `bunch` at a time (see the module docs): the reader always has
    // `window - owed` lines read or readable, and `owed < bunch <= window / 4`, so some line is in flight
    // whenever the reader waits.
    let bunch = (window / 4).max(1);
    let mut owed = 0usize;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, output);
    let io_err = |source| ProvisioningError::Io {
        what: "output",
        source,
    };
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut state = BatchProgress::default();
    let mut key_failures = 0u64;
    let mut stopped_at = None;
    let mut last_flush = Instant::now();
    loop {
        let (seq, finished) = match done.try_recv() {
            Ok(d) => d,
            Err(TryRecvError::Empty) => {
                // About to wait: make what is written visible first.
                out.flush().map_err(io_err)?;
                last_flush = Instant::now();
                match done.recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if stopped_at.is_some() {
            continue; // Stopped: the lines still arriving are drained, not written.
        }
        pending.insert(seq, finished);
        while let Some(d) = pending.remove(&next) {
            if d.outcome == Outcome::Skipped {
                stopped_at = Some(d.line_no);
                pending.clear();
                // Nothing more to read: a reader waiting for a permit ends, and so do the workers.
                permits.close();
                break;
            }
            out.write_all(&d.output).map_err(io_err)?;
            next += 1;
            state.lines += 1;
            state.bytes += d.bytes;
            if d.outcome != Outcome::Signed {
                state.errors += 1;
            }
            if matches!(d.outcome, Outcome::KeyFailed | Outcome::ServiceGaveUp) {
                key_failures += 1;
            }
            // The reader may have stopped (end of input); a permit nobody takes is fine.
            owed += 1;
            if owed >= bunch {
                permits.give(owed);
                owed = 0;
            }
            progress(&state);
            if d.outcome == Outcome::ServiceGaveUp {
                stopped_at = Some(d.line_no);
                pending.clear();
                // As for a skipped line (the reader's permits may be among those owed).
                permits.close();
                break;
            }
        }
        if last_flush.elapsed() > Duration::from_millis(200) {
            out.flush().map_err(io_err)?;
            last_flush = Instant::now();
        }
    }
    out.flush().map_err(io_err)?;
    if !pending.is_empty() {
        return Err(io_err(std::io::Error::other(
            "internal error: a batch line was lost",
        )));
    }
    Ok(Written {
        lines: state.lines,
        errors: state.errors,
        key_failures,
        stopped_at,
    })
}

#[cfg(feature = "progress")]
pub use terminal::TerminalProgress;

#[cfg(feature = "progress")]
mod terminal {
    //! A progress bar on stderr for batch mode (only when stderr is a terminal).

    use std::io::IsTerminal as _;

    use super::BatchProgress;

    /// A progress bar on stderr: by input bytes when the input size is known, else a running count.
    #[derive(Debug)]
    pub struct TerminalProgress {
        bar: indicatif::ProgressBar,
    }

    impl TerminalProgress {
        /// A progress bar, or `None` when stderr is not a terminal (pipes and logs get only the summary).
        #[must_use]
        pub fn stderr(total_bytes: Option<u64>) -> Option<Self> {
            if !std::io::stderr().is_terminal() {
                return None;
            }
            let bar = match total_bytes {
                Some(total) => {
                    let bar = indicatif::ProgressBar::new(total);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{elapsed_precise} [{bar:40}] {percent:>3}% {msg} (eta {eta})",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar
                }
                None => {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} {elapsed_precise} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    bar
                }
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(10));
            Some(Self { bar })
        }

        /// Shows `progress`.
        pub fn update(&self, progress: &BatchProgress) {
            if self.bar.length().is_some() {
                self.bar.set_position(progress.bytes);
            } else {
                self.bar.tick();
            }
            if progress.lines % 64 == 1 || progress.lines < 64 {
                let rate = progress.lines as f64 / self.bar.elapsed().as_secs_f64().max(0.001);
                self.bar.set_message(format!(
                    "{} lines, {} errors, {rate:.0}/s",
                    progress.lines, progress.errors
                ));
            }
        }

        /// Removes the bar.
        pub fn finish(&self) {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_not_buffered() {
        let data = b"abc\r\n0123456789abcdef0123\nlast";
        let mut r = std::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_limited(&mut r, &mut buf, 16).unwrap(), (5, false));
        assert_eq!(buf, b"abc");
        buf.clear();
        assert_eq!(read_line_limited(&mut r, &mut buf, 16).unwrap(), (21, true));
        assert!(buf.is_empty());
        assert_eq!(read_line_limited(&mut r, &mut buf, 16).unwrap(), (4, false));
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(read_line_limited(&mut r, &mut buf, 16).unwrap(), (0, false));
    }

    #[test]
    fn parse_errors_quote_no_values() {
        let (sub, r) = parse_line(br#"{"sub":"card-1","aud":"VISA_PAY"}"#);
        assert_eq!(sub.as_deref(), Some("card-1"));
        assert!(
            r.unwrap_err().contains("VISA_PAY"),
            "the audience name is not secret and helps"
        );
        let (sub, r) =
            parse_line(br#"{"sub":"card-1","aud":"APPLE_PAY","ttl":"4111111111111111"}"#);
        assert_eq!(sub.as_deref(), Some("card-1"));
        assert!(!r.unwrap_err().contains("4111"));
        let (sub, r) = parse_line(br#"{"sub": 4111111111111111, "aud":"APPLE_PAY"}"#);
        assert_eq!(sub, None);
        assert!(!r.unwrap_err().contains("4111"));
        let (sub, r) = parse_line(b"{\"sub\":\"4111111111111111");
        assert_eq!(sub, None);
        assert!(!r.unwrap_err().contains("4111"));
    }
}

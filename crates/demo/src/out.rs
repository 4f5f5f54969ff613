//! What the demo prints, and how: numbered steps with their duration, fields, decoded JOSE headers and
//! claims, and the masking of secrets. On a terminal (`std::io::IsTerminal`, and `NO_COLOR` unset) steps
//! get colour and a spinner while they run; otherwise every line is plain text, written once.
//!
//! Masking rules: a token or assertion is shown as its first 12 characters, `…`, and its length; card
//! numbers keep their last four digits; passwords, PINs and other secrets are never printed at all; long
//! strings inside decoded JSON (RSA moduli, nested tokens) are shortened for display.

use std::fmt::Display;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Characters of a token shown before the `…`.
pub const TOKEN_PREFIX: usize = 12;

/// Longest string shown whole inside decoded JSON.
const MAX_JSON_STRING: usize = 72;

/// Colour and progress display on, or plain text.
pub struct Out {
    fancy: bool,
    step: AtomicUsize,
    /// Shown after the running step's title by its spinner (a progress bar).
    suffix: Arc<Mutex<String>>,
}

/// A step failed: what the step was, and why.
#[derive(Debug)]
pub struct StepError(pub String);

impl Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepError {}

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

impl Out {
    /// Fancy output when stdout is a terminal, `NO_COLOR` is unset and `TERM` is not `dumb`, unless `plain`.
    pub fn new(plain: bool) -> Self {
        let terminal = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        Self {
            fancy: terminal && !plain,
            step: AtomicUsize::new(0),
            suffix: Arc::default(),
        }
    }

    fn paint(&self, colour: &str, text: &str) -> String {
        if self.fancy {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// A line of text.
    pub fn line(&self, text: &str) {
        println!("{text}");
    }

    /// The banner at the start.
    pub fn banner(&self, text: &str) {
        println!("{}", self.paint(BOLD, text));
    }

    /// A section heading.
    pub fn section(&self, text: &str) {
        println!(
            "\n{}",
            self.paint(&format!("{BOLD}{CYAN}"), &format!("━━ {text}"))
        );
    }

    /// Runs one step: prints its title (with a spinner on a terminal), awaits `work`, then prints whether
    /// it succeeded and how long it took. An error becomes a [`StepError`] naming the step.
    pub async fn step<T, E: Display>(
        &self,
        title: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StepError> {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        lock(&self.suffix).clear();
        let spinner = self
            .fancy
            .then(|| Spinner::start(format!("[{n:>2}] {title}"), self.suffix.clone()));
        let result = work.await;
        if let Some(s) = spinner {
            s.stop();
        }
        let elapsed = started.elapsed();
        match result {
            Ok(v) => {
                let mark = self.paint(GREEN, if self.fancy { "✔" } else { "ok" });
                let time = self.paint(DIM, &format!("({})", millis(elapsed)));
                println!("[{n:>2}] {mark} {title} {time}");
                Ok(v)
            }
            Err(e) => {
                let mark = self.paint(RED, if self.fancy { "✘" } else { "FAILED" });
                println!("[{n:>2}] {mark} {title}");
                Err(StepError(format!("step {n} ({title}) failed: {e}")))
            }
        }
    }

    /// `name  value`, indented under the step.
    pub fn field(&self, name: &str, value: impl Display) {
        let label = format!("{name:<18}");
        println!("       {} {value}", self.paint(DIM, &label));
    }

    /// A JSON object, one member a line, long strings shortened.
    pub fn json(&self, name: &str, value: &Value) {
        let shown = shorten(value);
        let text = serde_json::to_string_pretty(&shown).unwrap_or_else(|_| shown.to_string());
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            self.field(name, first);
        }
        for l in lines {
            println!("       {:<18} {}", "", self.paint(CYAN, l));
        }
    }

    /// A compact JWS/JWT: masked, then its decoded header and claims.
    pub fn jwt(&self, name: &str, token: &str) {
        self.field(name, mask_token(token));
        match jose_core::jwt::decode_unverified(token) {
            Ok((header, claims)) => {
                self.json("  header", &Value::Object(header));
                self.json("  claims", &Value::Object(claims));
            }
            Err(e) => self.field("  (not a JWT)", e),
        }
    }

    /// A compact JWE: masked, then its decoded protected header (the rest is ciphertext).
    pub fn jwe(&self, name: &str, token: &str) {
        self.field(name, mask_token(token));
        if let Some(header) = jwe_header(token) {
            self.json("  protected header", &Value::Object(header));
        }
    }

    /// Progress of the running step, drawn as a bar after its title by the spinner on a terminal; nothing
    /// otherwise.
    pub fn progress(&self, done: u64, total: u64) {
        if !self.fancy || total == 0 {
            return;
        }
        const WIDTH: u64 = 24;
        let filled = (done.min(total) * WIDTH / total) as usize;
        *lock(&self.suffix) = format!(
            "{}{} {done}/{total}",
            "█".repeat(filled),
            "░".repeat(WIDTH as usize - filled)
        );
    }
}

fn lock(m: &Mutex<String>) -> MutexGuard<'_, String> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A spinner redrawn on its own thread until stopped.
struct Spinner {
    running: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Spinner {
    fn start(text: String, suffix: Arc<Mutex<String>>) -> Self {
        // One terminal line, even on an 80-column terminal: a wrapped line cannot be redrawn in place.
        let text = if text.chars().count() > 44 {
            format!("{}…", text.chars().take(43).collect::<String>())
        } else {
            text
        };
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::spawn(move || {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut i = 0;
            while flag.load(Ordering::Relaxed) {
                let suffix = lock(&suffix).clone();
                let mut stdout = std::io::stdout().lock();
                let _ = write!(
                    stdout,
                    "\r\x1b[2K{CYAN}{}{RESET} {text} {suffix}",
                    FRAMES[i % FRAMES.len()]
                );
                let _ = stdout.flush();
                drop(stdout);
                i += 1;
                std::thread::sleep(Duration::from_millis(80));
            }
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "\r\x1b[2K");
            let _ = stdout.flush();
        });
        Self { running, thread }
    }

    fn stop(self) {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn millis(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A token as `first 12 characters…` plus its length: enough to recognise it, not enough to use it.
pub fn mask_token(token: &str) -> String {
    let prefix: String = token.chars().take(TOKEN_PREFIX).collect();
    format!("{prefix}… ({} chars)", token.chars().count())
}

/// A card number with all but its last four digits replaced by `•`.
pub fn mask_pan(pan: &str) -> String {
    let digits: Vec<char> = pan.chars().filter(char::is_ascii_digit).collect();
    let keep = digits.len().saturating_sub(4);
    digits
        .iter()
        .enumerate()
        .map(|(i, c)| if i < keep { '•' } else { *c })
        .collect()
}

/// The protected header of a compact JWE, decoded for display.
fn jwe_header(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let first = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `value` with long strings shortened to their start, `…`, and their length.
pub fn shorten(value: &Value) -> Value {
    match value {
        Value::String(s) if s.chars().count() > MAX_JSON_STRING => {
            let start: String = s.chars().take(24).collect();
            Value::String(format!("{start}… ({} chars)", s.chars().count()))
        }
        Value::Array(items) => Value::Array(items.iter().map(shorten).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shorten(v))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(
            mask_token("eyJhbGciOiJSUzI1NiJ9.payload.sig"),
            "eyJhbGciOiJS… (32 chars)"
        );
        assert_eq!(mask_pan("4111 1111 1111 1111"), "••••••••••••1111");
        assert_eq!(mask_pan("12"), "12");
        let long = "n".repeat(300);
        let v = shorten(&serde_json::json!({"jwk": {"n": long, "e": "AQAB"}, "a": [1]}));
        assert_eq!(v["jwk"]["n"], format!("{}… (300 chars)", "n".repeat(24)));
        assert_eq!(v["jwk"]["e"], "AQAB");
    }
}

//! Batch mode: one output line per input line in input order even when signatures finish out of order;
//! bad lines become error lines without stopping the batch; every code verifies with josekit (OpenSSL); the
//! input is streamed (the first output is written long before the input is read to its end, and never
//! more than the window of lines is held).

mod common;

use std::io::{BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use key_provider::KeySpec;
use provisioning_signer::batch::{self, BatchOptions};
use provisioning_signer::{AuthCodeSigner, AuthCodeVerifier};
use serde_json::Value;

fn slow_signer(dir: &tempfile::TempDir) -> AuthCodeSigner {
    let key = common::new_key(dir, "issuer.pem", KeySpec::Rsa(2048));
    AuthCodeSigner::new(Arc::new(common::SlowKey(key)), "acmebank").unwrap()
}

#[test]
fn order_and_count_are_preserved_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let auds = ["GOOGLE_PAY", "APPLE_PAY", "SAMSUNG_PAY"];
    let mut input = String::new();
    for i in 0..300 {
        input.push_str(&format!(
            "{{\"sub\":\"card-{i:04}\",\"aud\":\"{}\"}}\n",
            auds[i % 3]
        ));
    }
    let mut out = Vec::new();
    let mut calls = 0u64;
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut out,
        &BatchOptions::with_concurrency(4).window(16),
        &mut |p| {
            calls += 1;
            assert_eq!(p.lines, calls);
        },
    )
    .unwrap();
    assert_eq!(
        (summary.total, summary.signed, summary.errors),
        (300, 300, 0)
    );
    assert_eq!(calls, 300);

    let verifier = AuthCodeVerifier::new(signer.key().public_key().clone())
        .unwrap()
        .issuer_id("acmebank");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    for (i, line) in lines.iter().enumerate() {
        let obj = line.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["sub", "jwt"]);
        assert_eq!(obj["sub"], format!("card-{i:04}"));
        let jwt = obj["jwt"].as_str().unwrap();
        let verified = verifier.verify(jwt).unwrap();
        assert_eq!(verified.claims.sub, format!("card-{i:04}"));
        assert_eq!(verified.claims.aud.as_str(), auds[i % 3]);
        // And an independent implementation (josekit, OpenSSL) accepts it.
        let (_, claims) =
            common::josekit_verify(signer.key().public_key(), jwt, "acmebank", auds[i % 3]);
        assert_eq!(claims["sub"], format!("card-{i:04}"));
    }
}

#[test]
fn bad_lines_become_error_lines_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let long = format!("{{\"sub\":\"{}\",\"aud\":\"APPLE_PAY\"}}", "x".repeat(200));
    let input = [
        r#"{"sub":"ok-1","aud":"APPLE_PAY"}"#,
        r#"{"sub":"bad-aud","aud":"VISA_PAY"}"#,
        "not json at all 4111111111111111",
        "",
        "   ",
        r#"{"sub":"tok-1","aud":"GOOGLE_PAY","token_id":true,"ttl":300}"#,
        r#"{"sub":"ttl-long","aud":"APPLE_PAY","ttl":301}"#,
        r#"{"sub":"extra","aud":"APPLE_PAY","fpan":"4111111111111111"}"#,
        r#"{"aud":"APPLE_PAY"}"#,
        r#"["sub","aud"]"#,
        &long,
        "{\"sub\":\"crlf\",\"aud\":\"SAMSUNG_PAY\"}\r",
        r#"{"sub":"last","aud":"APPLE_PAY"}"#,
    ]
    .join("\n");
    let mut out = Vec::new();
    let mut options = BatchOptions::with_concurrency(3);
    options.max_line_len = 128;
    let summary = batch::run(&signer, input.as_bytes(), &mut out, &options, &mut |_| {}).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    // Two blank lines are skipped; every other line has its output line, in order.
    assert_eq!(lines.len(), 11);
    assert_eq!((summary.total, summary.signed, summary.errors), (11, 4, 7));
    let sub = |i: usize| lines[i]["sub"].clone();
    let error = |i: usize| lines[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(lines[0]["jwt"].is_string());
    assert_eq!(sub(1), "bad-aud");
    assert!(error(1).contains("GOOGLE_PAY, APPLE_PAY or SAMSUNG_PAY"));
    assert_eq!(sub(2), Value::Null);
    assert!(error(2).contains("not valid JSON"));
    assert_eq!(sub(3), "tok-1");
    let tok = AuthCodeVerifier::new(signer.key().public_key().clone())
        .unwrap()
        .verify(lines[3]["jwt"].as_str().unwrap())
        .unwrap();
    assert_eq!(tok.claims.exp - tok.claims.iat, 300);
    assert_eq!(sub(4), "ttl-long");
    assert!(error(4).contains("300"));
    assert_eq!(sub(5), "extra");
    assert!(error(5).contains("unknown member \"fpan\""));
    assert_eq!(sub(6), Value::Null);
    assert!(error(6).contains("`sub` is missing"));
    assert!(error(7).contains("not a JSON object"));
    assert!(error(8).contains("longer than 128 bytes"));
    assert_eq!(sub(9), "crlf");
    assert!(lines[9]["jwt"].is_string());
    assert_eq!(sub(10), "last");
    // No error line quotes the card number that was smuggled into the input.
    assert!(
        !String::from_utf8(out.clone())
            .unwrap()
            .contains("4111111111111111")
    );
    // Codes are {"sub","jwt"}; error lines carry the input line number, and `sub` only when it was read.
    for l in &lines {
        let keys: Vec<_> = l.as_object().unwrap().keys().cloned().collect();
        assert!(
            keys == ["sub", "jwt"] || keys == ["line", "sub", "error"] || keys == ["line", "error"],
            "{keys:?}"
        );
    }
    let error_lines: Vec<(u64, Value)> = lines
        .iter()
        .filter(|l| l.get("error").is_some())
        .map(|l| (l["line"].as_u64().unwrap(), l["sub"].clone()))
        .collect();
    // Input lines 4 and 5 are blank: they are skipped but counted.
    assert_eq!(
        error_lines,
        [
            (2, Value::from("bad-aud")),
            (3, Value::Null),
            (7, "ttl-long".into()),
            (8, "extra".into()),
            (9, Value::Null),
            (10, Value::Null),
            (11, Value::Null),
        ]
    );
}

/// A line that gives a member twice is refused (never "last one wins"), whichever member it is and however
/// it is spaced; every error line names its 1-based input line, and a line that could not be read carries no
/// `sub` at all (no `"sub":null`).
#[test]
fn duplicate_members_are_refused_and_error_lines_carry_their_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let input = [
        r#"{"sub":"a","aud":"APPLE_PAY","sub":"b"}"#,
        r#"{"sub":"c","aud":"APPLE_PAY","aud":"GOOGLE_PAY"}"#,
        "",
        r#"{"sub":"d","aud":"APPLE_PAY","ttl":60,"ttl":300}"#,
        r#"{"sub":"e","aud":"APPLE_PAY","token_id":false,"token_id":true}"#,
        r#"{ "sub" : "f" , "aud" : "APPLE_PAY" , "sub" : "f" }"#,
        r#"{"sub":"g","aud":"APPLE_PAY","4111111111111111":1,"4111111111111111":2}"#,
        r#"{"sub":"ok","aud":"APPLE_PAY"}"#,
        "{oops",
    ]
    .join("\n");
    let mut out = Vec::new();
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut out,
        &BatchOptions::with_concurrency(2),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((summary.total, summary.signed, summary.errors), (8, 1, 7));
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("4111111111111111"), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = [
        (1, "`sub` appears more than once"),
        (2, "`aud` appears more than once"),
        (4, "`ttl` appears more than once"),
        (5, "`token_id` appears more than once"),
        (6, "`sub` appears more than once"),
        (7, "a member name appears more than once"),
    ];
    for (i, (line_no, says)) in expected.iter().enumerate() {
        let line = lines[i].as_object().unwrap();
        assert_eq!(
            line.keys().collect::<Vec<_>>(),
            ["line", "error"],
            "no sub, not even null: {line:?}"
        );
        assert_eq!(line["line"], *line_no);
        let error = line["error"].as_str().unwrap();
        assert!(error.contains(says), "line {line_no}: {error}");
    }
    assert_eq!(lines[6]["sub"], "ok");
    assert!(lines[6]["jwt"].is_string() && lines[6].get("line").is_none());
    assert_eq!(lines[7]["line"], 9);
    assert!(
        lines[7]["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert!(lines[7].get("sub").is_none());
}

/// An endless source of input lines that counts how many it has handed out.
struct Lines {
    produced: Arc<AtomicU64>,
    limit: u64,
    pending: Vec<u8>,
    pos: usize,
}

impl Read for Lines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Lines {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.pending.len() {
            let i = self.produced.load(Ordering::SeqCst);
            if i == self.limit {
                return Ok(&[]);
            }
            self.pending = format!("{{\"sub\":\"c{i}\",\"aud\":\"APPLE_PAY\"}}\n").into_bytes();
            self.pos = 0;
            self.produced.store(i + 1, Ordering::SeqCst);
        }
        Ok(&self.pending[self.pos..])
    }
    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Records, at each write, how far ahead of the output the reader was.
struct Watch {
    produced: Arc<AtomicU64>,
    written_lines: u64,
    max_ahead: u64,
    first_write_at: Option<u64>,
}

impl Write for Watch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let produced = self.produced.load(Ordering::SeqCst);
        self.first_write_at.get_or_insert(produced);
        self.max_ahead = self
            .max_ahead
            .max(produced.saturating_sub(self.written_lines));
        self.written_lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn input_is_streamed_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::new_key(&dir, "issuer.pem", KeySpec::Rsa(2048));
    let signer = AuthCodeSigner::new(key, "acmebank").unwrap();
    let produced = Arc::new(AtomicU64::new(0));
    let input = Lines {
        produced: produced.clone(),
        limit: 3000,
        pending: Vec::new(),
        pos: 0,
    };
    let mut watch = Watch {
        produced: produced.clone(),
        written_lines: 0,
        max_ahead: 0,
        first_write_at: None,
    };
    let options = BatchOptions::with_concurrency(2).window(32);
    let summary = batch::run(&signer, input, &mut watch, &options, &mut |_| {}).unwrap();
    assert_eq!(summary.total, 3000);
    assert_eq!(watch.written_lines, 3000);
    // Output started while the input was still far from its end, and the reader never ran more than the
    // window (plus the output buffer's worth of written-but-unflushed lines) ahead of the output.
    let first = watch.first_write_at.unwrap();
    assert!(first < 1500, "first output only after {first} input lines");
    assert!(
        watch.max_ahead <= 32 + 200,
        "reader ran {} lines ahead",
        watch.max_ahead
    );
}

#[test]
fn empty_input_is_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let mut out = Vec::new();
    let summary = batch::run(
        &signer,
        &b"\n\n"[..],
        &mut out,
        &BatchOptions::with_concurrency(2),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((summary.total, summary.errors), (0, 0));
    assert!(out.is_empty());
}

/// A writer that fails after some bytes, like a closed pipe.
struct Broken(usize);

impl Write for Broken {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "closed",
            ));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_stops_the_batch_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let produced = Arc::new(AtomicU64::new(0));
    let input = Lines {
        produced: produced.clone(),
        limit: 1_000_000,
        pending: Vec::new(),
        pos: 0,
    };
    let err = batch::run(
        &signer,
        input,
        Broken(10_000),
        &BatchOptions::with_concurrency(2).window(8),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("output"), "{err}");
    assert!(
        produced.load(Ordering::SeqCst) < 1000,
        "the reader stopped soon after the output failed"
    );
}

#[test]
fn a_card_number_as_sub_is_an_error_line_that_does_not_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    let signer = slow_signer(&dir);
    let input = [
        r#"{"sub":"card-ref-1","aud":"APPLE_PAY"}"#,
        r#"{"sub":"4111111111111111","aud":"APPLE_PAY"}"#,
        r#"{"sub":"5555555555554444","aud":"GOOGLE_PAY","token_id":true}"#,
        r#"{"sub":"4111111111111112","aud":"APPLE_PAY"}"#,
    ]
    .join("\n");
    let mut out = Vec::new();
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut out,
        &BatchOptions::with_concurrency(2),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((summary.total, summary.signed, summary.errors), (4, 2, 2));
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("4111111111111111") && !text.contains("5555555555554444"));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["sub"], "card-ref-1");
    assert!(lines[0]["jwt"].is_string());
    for (i, kind) in [(1, "issuerCardRefId"), (2, "tokenId")] {
        assert_eq!(lines[i]["sub"], Value::Null, "line {i}");
        assert!(lines[i].get("jwt").is_none(), "line {i}");
        let error = lines[i]["error"].as_str().unwrap();
        assert!(
            error.contains("card number") && error.contains(kind),
            "{error}"
        );
    }
    // Luhn fails: not a card number, signed.
    assert_eq!(lines[3]["sub"], "4111111111111112");
    assert!(lines[3]["jwt"].is_string());
}

/// A key service that signs `ok` lines, then stays unavailable through every retry (as the `vault` and
/// `aws-kms` backends report it), counting the signatures asked of it.
#[derive(Debug)]
struct GivesUpAfter {
    key: Arc<dyn key_provider::KeyBackend>,
    ok: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl key_provider::KeyBackend for GivesUpAfter {
    fn backend_name(&self) -> &'static str {
        "vault"
    }
    fn key_label(&self) -> &str {
        "vault:issuer"
    }
    fn public_key(&self) -> &key_provider::PublicKey {
        self.key.public_key()
    }
    fn sign(
        &self,
        scheme: key_provider::SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, key_provider::KeyError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.ok {
            self.key.sign(scheme, message)
        } else {
            Err(key_provider::KeyError::ServiceUnavailable {
                backend: "vault",
                what: "sign with vault:issuer".into(),
                attempts: 6,
                reason: "connection refused".into(),
            })
        }
    }
}

/// A key service that stays away through every retry stops the batch: the output holds every line before
/// the one it gave up on (in order) and that line's error, nothing after it, and the summary names the line
/// to resume from; the lines after it are never sent to the service.
#[test]
fn a_key_service_that_gives_up_stops_the_batch_where_it_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::new_key(&dir, "issuer.pem", KeySpec::Rsa(2048));
    let service = Arc::new(GivesUpAfter {
        key,
        ok: 20,
        calls: Default::default(),
    });
    let signer = AuthCodeSigner::new(Arc::clone(&service) as _, "acmebank").unwrap();
    let input: String = (1..=500)
        .map(|i| format!("{{\"sub\":\"card-{i:04}\",\"aud\":\"APPLE_PAY\"}}\n"))
        .collect();
    let mut output = Vec::new();
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut output,
        &BatchOptions::with_concurrency(1),
        &mut |_| {},
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = output
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    // One signing thread: lines 1–20 signed, line 21 is where the service gave up.
    assert_eq!(lines.len(), 21);
    assert!(lines[..20].iter().all(|l| l["jwt"].is_string()));
    assert_eq!(lines[20]["line"], 21);
    assert!(
        lines[20]["error"]
            .as_str()
            .unwrap()
            .contains("failed after 6 attempts")
    );
    assert_eq!(summary.stopped_at, Some(21));
    assert_eq!(
        (
            summary.total,
            summary.signed,
            summary.errors,
            summary.key_failures
        ),
        (21, 20, 1, 1)
    );
    let text = summary.to_string();
    assert!(
        text.contains("stopped at input line 21") && text.contains("resume from line 21"),
        "{text}"
    );
    // Nothing after the stop was sent to the service (the read-ahead window was not signed).
    assert_eq!(service.calls.load(std::sync::atomic::Ordering::SeqCst), 21);

    // With many signing threads the lines in flight finish, but the output still ends at the first line
    // the service gave up on, and every line before it is there.
    let service = Arc::new(GivesUpAfter {
        key: Arc::clone(&service.key),
        ok: 100,
        calls: Default::default(),
    });
    let signer = AuthCodeSigner::new(Arc::clone(&service) as _, "acmebank").unwrap();
    let mut output = Vec::new();
    let summary = batch::run(
        &signer,
        input.as_bytes(),
        &mut output,
        &BatchOptions::with_concurrency(8),
        &mut |_| {},
    )
    .unwrap();
    let stopped = summary.stopped_at.expect("stopped");
    let lines: Vec<serde_json::Value> = output
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, summary.total);
    // Every line before the stop is signed; the last one written is either signed too (the stop came at a
    // line skipped after the service gave up) or the error of the line the service gave up on.
    let last = lines.len() - 1;
    assert!(
        lines[..last].iter().all(|l| l["jwt"].is_string()),
        "{summary}"
    );
    if lines[last]["jwt"].is_null() {
        assert_eq!(stopped, summary.total);
        assert_eq!(lines[last]["line"], stopped);
    } else {
        assert_eq!(stopped, summary.total + 1);
    }
    assert!(summary.total >= 50, "{summary}");
    assert!(service.calls.load(std::sync::atomic::Ordering::SeqCst) < 500);
}

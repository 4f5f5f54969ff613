//! The hostile-token corpus (`tests/hostile/jws.tsv`) through the binary's other verifiers:
//! `keybound provisioning verify-auth-code` (with the RSA victim key and its kid as the agreed one) and
//! `keybound flex verify-context` / `verify-token` (against a stand-in for Flex's key endpoint that serves the
//! RSA victim under its kid, so the corpus's RSA rows reach the signature and expiry checks) exit 1 for every
//! hostile row, print nothing on stdout, and one error line on stderr; nothing on stderr (log lines included)
//! echoes the token. The rows that name a bad signature or an expiry are refused for that, and the positive
//! control `valid-rs256` is accepted by both Flex commands and refused by the authorization-code verifier only
//! for a claim codes do not have. (`jwt verify` and `jwe decrypt`: `tests/hostile.rs`.)

mod common;

use common::keybound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (name, expected kind, token) rows of the JWS corpus, plus a 1 MiB token.
fn rows() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/hostile/jws.tsv")).unwrap();
    let mut rows: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let name = it.next().unwrap().to_owned();
            let kind = it.next().unwrap().to_owned();
            (name, kind, it.next().unwrap_or("").to_owned())
        })
        .collect();
    rows.push((
        "oversize-1MiB".into(),
        "too-large".into(),
        "A".repeat(1 << 20),
    ));
    assert_eq!(rows.len(), 64 + 1, "jws.tsv rows (+ the 1 MiB token)");
    rows
}

/// Whether the row is an RS256-family token that names a bad signature (the rows that reach the signature
/// check of an RSA-only verifier).
fn rsa_bad_signature(kind: &str, token: &str) -> bool {
    use base64::Engine as _;
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h["alg"].as_str().map(str::to_owned));
    kind == "bad-signature" && alg.is_some_and(|a| a.starts_with("RS"))
}

/// A stand-in for Flex's `GET /flex/v2/public-keys/{kid}` serving one JWK (HTTP/1.1, one request per
/// connection), recording the kids asked for.
struct KeyServer {
    url: String,
    fetches: Arc<Mutex<Vec<String>>>,
}

impl KeyServer {
    fn start(kid: &'static str, jwk: serde_json::Value) -> Self {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fetches = Arc::new(Mutex::new(Vec::new()));
        let seen = fetches.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let asked = path.strip_prefix("/flex/v2/public-keys/").unwrap_or("");
                seen.lock().unwrap().push(asked.to_owned());
                let (status, body) = if asked == kid {
                    ("200 OK", jwk.to_string())
                } else {
                    ("404 Not Found", "{}".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, fetches }
    }
}

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    keybound(args, Some(stdin))
}

fn assert_rejected(what: &str, name: &str, token: &str, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what} {name}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{what} {name}: printed output for a rejected token"
    );
    // At the default log level (`error`), stderr is the one error line: the WARN events the libraries log
    // for the same failure (kid, environment, outcome) are not repeated there.
    assert!(
        stderr.lines().count() == 1 && stderr.starts_with("keybound: "),
        "{what} {name}: one error line on stderr: {stderr}"
    );
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(
            !stderr.contains(&part[..16]),
            "{what} {name}: the message echoes the token: {stderr}"
        );
    }
}

#[test]
fn provisioning_verify_auth_code_exits_1_for_every_hostile_token() {
    let pubkey = repo().join("tests/vectors/rfc7515_a2.pub.pem");
    let pubkey = pubkey.to_str().unwrap();
    let mut signature_refusals = 0;
    for (name, kind, token) in rows() {
        let out = run(
            &[
                "provisioning",
                "verify-auth-code",
                "--pubkey",
                pubkey,
                "--token",
                "-",
                "--leeway",
                "0",
                "--kid",
                "rsa-victim",
            ],
            token.as_bytes(),
        );
        assert_rejected("provisioning verify-auth-code", &name, &token, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if name == "valid-rs256" {
            // Signature, times and header pass; the corpus's claims carry Flex's `flx` too.
            assert!(
                stderr.contains("unexpected claim \"flx\""),
                "{name}: {stderr}"
            );
        } else if rsa_bad_signature(&kind, &token) {
            assert!(stderr.contains("signature"), "{name}: {stderr}");
            signature_refusals += 1;
        } else if kind == "expired" {
            assert!(stderr.contains("expired"), "{name}: {stderr}");
        } else if name.starts_with("kid-") {
            assert!(stderr.contains("agreed kid"), "{name}: {stderr}");
        }
    }
    assert_eq!(signature_refusals, 9);
}

#[test]
fn flex_verify_context_and_verify_token_answer_every_corpus_token() {
    let victim = key_provider::PublicKey::from_pem(
        &std::fs::read_to_string(repo().join("tests/vectors/rfc7515_a2.pub.pem")).unwrap(),
    )
    .unwrap();
    let mut jwk = serde_json::to_value(jose_core::Jwk::from_public_key(&victim)).unwrap();
    jwk["kid"] = "rsa-victim".into();
    jwk["use"] = "enc".into(); // as Cybersource serves its signing keys
    let server = KeyServer::start("rsa-victim", jwk);
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.jwt");
    std::fs::write(&context, &rows[0].2).unwrap();
    assert_eq!(rows[0].0, "valid-rs256");
    let context = context.to_str().unwrap();
    let url = server.url.as_str();
    let mut signature_refusals = 0;
    for (name, kind, token) in &rows {
        let verify_context = run(
            &[
                "flex",
                "verify-context",
                "--capture-context",
                "-",
                "--api",
                url,
            ],
            token.as_bytes(),
        );
        let verify_token = run(
            &[
                "flex",
                "verify-token",
                "--capture-context",
                context,
                "--token",
                "-",
                "--api",
                url,
            ],
            token.as_bytes(),
        );
        for (what, out) in [
            ("flex verify-context", &verify_context),
            ("flex verify-token", &verify_token),
        ] {
            // Accepted: the positive control, and the two rows that are it with whitespace, which Flex
            // commands remove on purpose (line-wrapped copies).
            if ["valid-rs256", "whitespace-in-payload", "leading-space"].contains(&name.as_str()) {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{what} {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(String::from_utf8_lossy(&out.stdout).contains("hostile-corpus"));
                continue;
            }
            assert_rejected(what, name, token, out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if rsa_bad_signature(kind, token) {
                assert!(
                    stderr.contains("signature does not verify"),
                    "{what} {name}: {stderr}"
                );
                signature_refusals += 1;
            } else if kind == "expired" {
                assert!(stderr.contains("expired"), "{what} {name}: {stderr}");
            }
        }
    }
    assert_eq!(signature_refusals, 2 * 9);
    // Only the victim's kid was ever looked up: never a kid-* row's kid, never a jku/x5u target.
    let mut fetched = server.fetches.lock().unwrap().clone();
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched, ["rsa-victim"]);
}

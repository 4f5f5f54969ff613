//! The hostile-token corpus (`tests/hostile/jws.tsv`) through the binary's other verifiers:
//! `keybound provisioning verify-auth-code`, `keybound flex verify-context` and `keybound flex verify-token`
//! (against the Flex simulator) exit 1 for every row, print nothing on stdout, and one error line on stderr;
//! nothing on stderr (log lines included) echoes the token. (`jwt verify` and `jwe decrypt`: `tests/hostile.rs`.)

mod common;

use common::keybound;
use std::path::{Path, PathBuf};

use flex_simulator::{SessionKind, SimulatorConfig, ThreadedSimulator};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/hostile/jws.tsv")).unwrap();
    let mut rows: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let name = it.next().unwrap().to_owned();
            let _kind = it.next();
            (name, it.next().unwrap_or("").to_owned())
        })
        .collect();
    rows.push(("oversize-1MiB".into(), "A".repeat(1 << 20)));
    rows
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
    for (name, token) in rows() {
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
            ],
            token.as_bytes(),
        );
        assert_rejected("provisioning verify-auth-code", &name, &token, &out);
    }
}

#[test]
fn flex_verify_context_and_verify_token_exit_1_for_every_hostile_token() {
    let sim = ThreadedSimulator::start(SimulatorConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.jwt");
    std::fs::write(
        &context,
        sim.issue_capture_context(SessionKind::Flex, &serde_json::json!({})),
    )
    .unwrap();
    let context = context.to_str().unwrap();
    let url = sim.base_url();
    let fetches = sim.stats().total_public_key_fetches();
    for (name, token) in rows() {
        let out = run(
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
        assert_rejected("flex verify-context", &name, &token, &out);
        let out = run(
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
        assert_rejected("flex verify-token", &name, &token, &out);
    }
    // verify-token verified the capture context first, once per row; no hostile row fetched anything.
    let per_row = sim.stats().total_public_key_fetches() - fetches;
    assert!(
        per_row <= rows().len() as u64,
        "{per_row} key fetches for {} rows",
        rows().len()
    );
    assert!(
        sim.stats()
            .public_key_fetches
            .keys()
            .all(|k| *k == sim.signing_kid()),
        "{:?}",
        sim.stats().public_key_fetches
    );
}

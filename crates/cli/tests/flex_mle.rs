//! `keybound flex capture-context --mle-cert FILE [--response-mle-key KEYREF --response-mle-kid KID]`
//! against the Flex simulator requiring message-level encryption (issue 15 item 3): without `--mle-cert` the
//! plaintext body is refused (exit 1); with it the simulator (josekit) decrypts the request; with the
//! response flags the answer comes encrypted and is decrypted through the key's backend. Nothing of the
//! plaintext request appears in the output at trace level; usage errors exit 2.

#![cfg(feature = "file")]

mod common;

use common::{ok, stderr};
use std::path::Path;
use std::process::Output;

use flex_simulator::{SimulatorConfig, ThreadedSimulator};
use key_provider::{KeyBackend as _, KeySpec};

const MARKER: &str = "https://mle-cli-plaintext-marker.example";

fn keybound(args: &[&str]) -> Output {
    common::keybound_env(args, None, &[("KEYBOUND_LOG", "trace")])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn capture_context_with_request_and_response_mle() {
    let sim = ThreadedSimulator::start(SimulatorConfig::default()).unwrap();
    sim.require_request_mle(true);
    let dir = tempfile::tempdir().unwrap();
    let merchant = dir.path().join("merchant.pem");
    let key = key_provider::file::generate(&merchant, KeySpec::Rsa(2048)).unwrap();
    sim.add_merchant_jwt_key("kb_merchant", "serial-42", &key.public_key().to_spki_pem());
    let response = dir.path().join("response.pem");
    let response_key = key_provider::file::generate(&response, KeySpec::Rsa(2048)).unwrap();
    sim.add_merchant_response_mle_key(
        "kb_merchant",
        "resp-1",
        &response_key.public_key().to_spki_pem(),
    );
    let cert = dir.path().join("cybersource-mle.pem");
    std::fs::write(&cert, sim.mle_certificate_pem()).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(
        &body,
        format!(r#"{{"targetOrigins":["{MARKER}"],"fields":{{"paymentInformation":{{"card":{{"number":{{"required":true}}}}}}}}}}"#),
    )
    .unwrap();
    let merchant_ref = format!("file:{}", merchant.display());
    let response_ref = format!("file:{}", response.display());
    let base = [
        "flex",
        "capture-context",
        "--api",
        sim.base_url(),
        "--merchant-id",
        "kb_merchant",
        "--key-id",
        "serial-42",
        "--key",
        &merchant_ref,
        "--body",
        path(&body),
    ];

    // MLE required, plaintext sent: refused by the server.
    let out = keybound(&base);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // Request MLE.
    let out = keybound(&[&base[..], &["--mle-cert", path(&cert)]].concat());
    let context = ok(&out);
    assert_eq!(context.trim().split('.').count(), 3, "{context}");
    assert_eq!(sim.stats().encrypted_requests, 1);

    // Request and response MLE: the answer was encrypted, and decrypted through the file backend.
    let out = keybound(
        &[
            &base[..],
            &[
                "--mle-cert",
                path(&cert),
                "--response-mle-key",
                &response_ref,
                "--response-mle-kid",
                "resp-1",
            ],
        ]
        .concat(),
    );
    let context = ok(&out);
    assert_eq!(context.trim().split('.').count(), 3, "{context}");
    assert_eq!(sim.stats().encrypted_responses, 1);
    let err = stderr(&out);
    assert!(
        err.contains("MLE request encrypted"),
        "no trace events?\n{err}"
    );
    assert!(
        !err.contains("mle-cli-plaintext-marker"),
        "plaintext in the log:\n{err}"
    );
    let signature = context.trim().rsplit('.').next().unwrap();
    assert!(
        !err.contains(signature),
        "the decrypted answer in the log:\n{err}"
    );

    // The response decrypted with another key than the one it was encrypted to: rejected, exit 1.
    let other = dir.path().join("other.pem");
    key_provider::file::generate(&other, KeySpec::Rsa(2048)).unwrap();
    let other_ref = format!("file:{}", other.display());
    let out = keybound(
        &[
            &base[..],
            &[
                "--mle-cert",
                path(&cert),
                "--response-mle-key",
                &other_ref,
                "--response-mle-kid",
                "resp-1",
            ],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // Usage: a response key without its kid, or without --mle-cert; a certificate without a subject
    // serialNumber (the merchant's own public key here).
    let spki = dir.path().join("merchant.pub.pem");
    std::fs::write(&spki, key.public_key().to_spki_pem()).unwrap();
    for extra in [
        vec![
            "--mle-cert",
            path(&cert),
            "--response-mle-key",
            &response_ref,
        ],
        vec![
            "--response-mle-key",
            &response_ref,
            "--response-mle-kid",
            "resp-1",
        ],
        vec!["--mle-cert", path(&spki)],
    ] {
        let out = keybound(&[&base[..], &extra[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

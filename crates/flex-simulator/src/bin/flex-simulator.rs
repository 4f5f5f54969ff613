//! `flex-simulator`: runs the Flex simulator standalone, for trying the CLI by hand.
//!
//! ```text
//! flex-simulator [--port N] [--capture-context-out FILE]
//!                [--merchant-id ID --merchant-key-id KID (--merchant-public-key PEMFILE | --merchant-shared-secret B64)]
//!                [--mle-cert-out FILE [--response-mle-kid KID --response-mle-public-key PEMFILE]]
//! ```
//!
//! `--mle-cert-out` writes the simulator's message-level-encryption certificate to FILE (for
//! `keybound flex capture-context --mle-cert FILE`) and makes MLE required on the sessions endpoints;
//! `--response-mle-*` registers the merchant's response MLE key.
//!
//! Prints the base URL on the first line of stdout, optionally writes a freshly issued capture context
//! (Flex API kind) to FILE, and serves until killed.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::process::ExitCode;

use flex_simulator::{SessionKind, SimulatorConfig, ThreadedSimulator};

fn usage(message: &str) -> ExitCode {
    eprintln!("flex-simulator: {message}");
    eprintln!(
        "usage: flex-simulator [--port N] [--capture-context-out FILE] [--merchant-id ID --merchant-key-id KID \
         (--merchant-public-key PEMFILE | --merchant-shared-secret B64)] [--mle-cert-out FILE \
         [--response-mle-kid KID --response-mle-public-key PEMFILE]]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut port, mut out, mut merchant, mut key_id, mut pem, mut secret) =
        (0u16, None, None, None, None, None);
    let (mut mle_out, mut response_kid, mut response_pem) = (None, None, None);
    while let Some(arg) = args.next() {
        if matches!(arg.as_str(), "-h" | "--help") {
            return usage("runs a Flex v2 simulator on 127.0.0.1");
        }
        let Some(value) = args.next() else {
            return usage(&format!("{arg} needs a value"));
        };
        match arg.as_str() {
            "--port" => match value.parse() {
                Ok(p) => port = p,
                Err(_) => return usage(&format!("bad port {value:?}")),
            },
            "--capture-context-out" => out = Some(value),
            "--merchant-id" => merchant = Some(value),
            "--merchant-key-id" => key_id = Some(value),
            "--merchant-public-key" => pem = Some(value),
            "--merchant-shared-secret" => secret = Some(value),
            "--mle-cert-out" => mle_out = Some(value),
            "--response-mle-kid" => response_kid = Some(value),
            "--response-mle-public-key" => response_pem = Some(value),
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let sim = match ThreadedSimulator::start(SimulatorConfig::default().port(port)) {
        Ok(s) => s,
        Err(e) => return usage(&format!("cannot start: {e}")),
    };
    if let (Some(m), Some(k)) = (&merchant, &key_id) {
        if let Some(path) = &pem {
            match std::fs::read_to_string(path) {
                Ok(text) => sim.add_merchant_jwt_key(m, k, &text),
                Err(e) => return usage(&format!("cannot read {path}: {e}")),
            }
        }
        if let Some(s) = &secret {
            sim.add_merchant_shared_secret(m, k, s);
        }
    }
    if let Some(path) = &mle_out {
        if let Err(e) = std::fs::write(path, sim.mle_certificate_pem()) {
            return usage(&format!("cannot write {path}: {e}"));
        }
        sim.require_request_mle(true);
    }
    if let (Some(m), Some(kid), Some(path)) = (&merchant, &response_kid, &response_pem) {
        match std::fs::read_to_string(path) {
            Ok(text) => sim.add_merchant_response_mle_key(m, kid, &text),
            Err(e) => return usage(&format!("cannot read {path}: {e}")),
        }
    }
    if let Some(path) = out {
        let jwt = sim.issue_capture_context(SessionKind::Flex, &serde_json::json!({}));
        if let Err(e) = std::fs::write(&path, jwt) {
            return usage(&format!("cannot write {path}: {e}"));
        }
    }
    println!("{}", sim.base_url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

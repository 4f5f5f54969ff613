//! Helpers shared by the integration tests of the `keybound` binary: running it with arguments, standard
//! input and environment variables, and reading what it did.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// Runs `keybound ARGS` with `stdin` written to its standard input (when given) and `env` set.
/// `KEYBOUND_CONFIG` and `KEYBOUND_LOG` are removed first, so the developer's own settings cannot change
/// what a test sees; a test that wants either passes it in `env`.
pub fn keybound_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(args)
        .env_remove("KEYBOUND_CONFIG")
        .env_remove("KEYBOUND_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        // The binary may exit before reading all of stdin (a usage error, a token over the size limit):
        // a broken pipe is then not a failure; its exit code is what the test checks.
        if let Err(e) = pipe.write_all(input) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing stdin: {e}"
            );
        }
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// [`keybound_env`] without extra variables.
pub fn keybound(args: &[&str], stdin: Option<&[u8]>) -> Output {
    keybound_env(args, stdin, &[])
}

/// The standard output of a run that must have succeeded (else the exit code and stderr, at the caller).
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The exit code (a run killed by a signal panics here).
#[track_caller]
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

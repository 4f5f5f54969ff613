//! `cargo xtask`: the project's own build and test chores, in Rust, with no dependencies beyond std.
//!
//! Run `cargo xtask help` for the list. Each subcommand lives in its own module and is one line in
//! [`SUBCOMMANDS`]; add new chores the same way.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod check_features;
mod demo;
mod fuzz;
mod keyservices;
mod softhsm;
mod test;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

/// A subcommand: its name, a one-line summary, and the function that runs it with the remaining arguments.
struct Subcommand {
    name: &'static str,
    summary: &'static str,
    run: fn(&[String]) -> Result<()>,
}

/// A subcommand's result: `Err` carries the message printed before exiting non-zero.
type Result<T> = std::result::Result<T, String>;

const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "demo",
        summary: "run the three partner flows end to end on this machine (--hsm: keys in a SoftHSM token)",
        run: demo::run,
    },
    Subcommand {
        name: "test",
        summary: "the workspace's tests, then the PKCS#11 tests against SoftHSM (what CI runs)",
        run: test::run,
    },
    Subcommand {
        name: "softhsm-test",
        summary: "create a fresh SoftHSM token under target/softhsm-test/ and run the PKCS#11 tests against it",
        run: softhsm::run,
    },
    Subcommand {
        name: "keyservices",
        summary: "install the pinned OpenBao and moto test servers into target/keyservices/venv (when missing)",
        run: keyservices::run,
    },
    Subcommand {
        name: "fuzz",
        summary: "build the cargo-fuzz targets (fuzz/) and run each for --seconds N (default 60), one at a time",
        run: fuzz::run,
    },
    Subcommand {
        name: "bench",
        summary: "benchmarks against openssl speed, jsonwebtoken and raw PKCS#11 (--quick); writes docs/benchmarks.md",
        run: bench::run,
    },
    Subcommand {
        name: "check-features",
        summary: "cargo check every product crate with no default features, each backend alone, and all features",
        run: check_features::run,
    },
];

fn usage() -> String {
    let mut text = String::from("usage: cargo xtask <subcommand> [args]\n\nsubcommands:\n");
    for s in SUBCOMMANDS {
        text.push_str(&format!("  {:<16} {}\n", s.name, s.summary));
    }
    text.push_str(&format!(
        "  {:<16} show this help (also `cargo xtask <subcommand> --help`)\n",
        "help"
    ));
    text
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((first, rest)) = args.split_first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    if matches!(first.as_str(), "help" | "-h" | "--help") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some(subcommand) = SUBCOMMANDS.iter().find(|s| s.name == first) else {
        eprintln!("unknown subcommand `{first}`\n");
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    match (subcommand.run)(rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask {}: {message}", subcommand.name);
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// The `cargo` that runs us (so the same toolchain builds the tests).
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

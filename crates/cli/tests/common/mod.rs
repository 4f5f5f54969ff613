//! Helpers shared by the integration tests of the `keybound` binary: running it with arguments, standard
//! input and environment variables, and reading what it did.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// Runs `keybound ARGS` with `stdin` written to its standard input (when given) and `env` set.
/// `KEYBOUND_CONFIG`, `KEYBOUND_LOG` and `KEYBOUND_LOG_FORMAT` are removed first, so the developer's own settings cannot change
/// what a test sees; a test that wants either passes it in `env`.
pub fn keybound_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(args)
        .env_remove("KEYBOUND_CONFIG")
        .env_remove("KEYBOUND_LOG")
        .env_remove("KEYBOUND_LOG_FORMAT")
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

/// One `keybound PATH --help` page, read into its parts (clap's layout: the about line, `Usage: …`, then
/// `Commands:` and `Options:` sections of `  NAME  description` lines).
#[derive(Debug)]
pub struct Help {
    /// The first line.
    pub about: String,
    /// The `Usage:` line.
    pub usage: String,
    /// Subcommands (clap's own `help` left out), with their descriptions.
    pub commands: Vec<(String, String)>,
    /// Options (`--key <KEY>`, `-h, --help`…), with their descriptions.
    pub options: Vec<(String, String)>,
}

/// `keybound PATH --help`, which must succeed.
#[track_caller]
pub fn help(path: &[&str]) -> Help {
    let mut args = path.to_vec();
    args.push("--help");
    let text = ok(&keybound(&args, None));
    let mut page = Help {
        about: text.lines().next().unwrap_or_default().to_owned(),
        usage: text
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_default()
            .to_owned(),
        commands: Vec::new(),
        options: Vec::new(),
    };
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            if !line.is_empty() {
                section = line;
            }
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let entries = match section {
            "Commands:" => &mut page.commands,
            "Options:" => &mut page.options,
            _ => continue,
        };
        // clap's long layout puts a description on the lines below its entry, indented further.
        if indent >= 10 {
            if let Some((_, description)) = entries.last_mut() {
                description.push_str(line.trim());
            }
            continue;
        }
        // Short layout: a name and its description on one line, two or more spaces apart.
        let entry = line.trim();
        let (name, description) = match entry.split_once("  ") {
            Some((name, description)) => (name.trim(), description.trim()),
            None => (entry, ""),
        };
        entries.push((name.to_owned(), description.to_owned()));
    }
    page.commands.retain(|(name, _)| name != "help");
    page
}

/// Every command path below `keybound`, each subcommand at every depth (`help` left out), parents before
/// their children, found by walking the binary's own `--help` pages.
pub fn command_tree() -> Vec<Vec<String>> {
    fn walk(path: &[String], out: &mut Vec<Vec<String>>) {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for (name, _) in help(&args).commands {
            let mut child = path.to_vec();
            child.push(name);
            out.push(child.clone());
            walk(&child, out);
        }
    }
    let mut out = Vec::new();
    walk(&[], &mut out);
    out
}

/// The leaves of [`command_tree`]: the commands that run something (`jwt verify`, `flex tokenize`…).
pub fn leaf_commands() -> Vec<String> {
    let tree = command_tree();
    tree.iter()
        .filter(|path| {
            !tree
                .iter()
                .any(|other| other.len() > path.len() && other.starts_with(path))
        })
        .map(|path| path.join(" "))
        .collect()
}

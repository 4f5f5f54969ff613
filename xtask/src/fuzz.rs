//! `cargo xtask fuzz [--seconds N] [--build-only] [TARGET]...`
//!
//! Builds the cargo-fuzz targets of `fuzz/` and runs each for N seconds (default 60), one after the other
//! (never two fuzzers at once):
//!
//! 1. checks that `cargo fuzz` is installed (else says `cargo install cargo-fuzz`);
//! 2. `cargo fuzz build -O -a` (release, debug assertions, AddressSanitizer) with `RUSTC_BOOTSTRAP=1`, so
//!    the stable toolchain accepts libFuzzer's nightly-only flags; artifacts under `target/fuzz/`;
//! 3. writes each target's seeds to `target/fuzz/seeds/<target>/`: the hostile-token corpus
//!    (`tests/hostile/*.tsv`), the compact tokens and public keys of `tests/vectors/`, the Flex fixtures,
//!    the hand-written seeds of `fuzz/seeds/<target>/` and the saved crash inputs of
//!    `tests/fuzz-regressions/<target>/`;
//! 4. runs the target with its growing corpus `target/fuzz/corpus/<target>/` plus the seeds for N seconds,
//!    logging to `target/fuzz/logs/<target>.log`, and reports executions, corpus size and outcome (also
//!    appended to `target/fuzz/results.tsv`);
//! 5. on a crash, copies the input libFuzzer saved into `tests/fuzz-regressions/<target>/` (replayed by
//!    `crates/cli/tests/fuzz_regressions.rs`) and fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::Result;

/// The fuzz targets (binaries of `fuzz/Cargo.toml`), each with its libFuzzer `-max_len`.
const TARGETS: &[(&str, usize)] = &[
    ("jws_verify", 20_000),
    ("jwe_decrypt", 20_000),
    ("jwk_parse", 8_192),
    ("pkcs11_uri", 4_096),
    ("flex_claims", 16_384),
    ("cms_decrypt", 8_192),
];

const HELP: &str = "\
usage: cargo xtask fuzz [--seconds N] [--build-only] [TARGET]...

Builds the cargo-fuzz targets in fuzz/ (RUSTC_BOOTSTRAP=1 on the stable toolchain) and runs each for N
seconds (default 60), one at a time, seeded from tests/hostile, tests/vectors, the Flex fixtures, fuzz/seeds
and tests/fuzz-regressions. Reports executions per target; a crash input is copied to
tests/fuzz-regressions/<target>/ and the command fails. Targets: jws_verify, jwe_decrypt, jwk_parse,
pkcs11_uri, flex_claims, cms_decrypt (default: all). Needs `cargo install cargo-fuzz`.
";

struct Options {
    seconds: u64,
    build_only: bool,
    targets: Vec<(&'static str, usize)>,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut seconds = 60;
    let mut build_only = false;
    let mut targets = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--build-only" => {
                build_only = true;
                continue;
            }
            "--seconds" => Some(iter.next().ok_or("--seconds needs a number")?.as_str()),
            other => other.strip_prefix("--seconds="),
        };
        if let Some(v) = value {
            seconds = v
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("--seconds needs a positive number, not {v:?}"))?;
            continue;
        }
        let target = TARGETS
            .iter()
            .find(|(name, _)| name == arg)
            .ok_or_else(|| {
                format!(
                    "unknown fuzz target {arg:?}; targets: {}",
                    TARGETS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                )
            })?;
        targets.push(*target);
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok(Some(Options {
        seconds,
        build_only,
        targets,
    }))
}

/// One target's run.
struct Outcome {
    target: &'static str,
    seconds: f64,
    executions: Option<u64>,
    corpus: usize,
    result: std::result::Result<(), String>,
}

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = parse(args)? else {
        print!("{HELP}");
        return Ok(());
    };
    let root = crate::root();
    let dir = root.join("target").join("fuzz");
    check_cargo_fuzz()?;

    println!("==> cargo fuzz build -O -a (RUSTC_BOOTSTRAP=1)");
    let status = Command::new(crate::cargo())
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "-O", "-a", "--target-dir"])
        .arg(&dir)
        .status()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    if !status.success() {
        return Err(format!("cargo fuzz build failed ({status})"));
    }
    if options.build_only {
        return Ok(());
    }

    let mut outcomes = Vec::new();
    for &(target, max_len) in &options.targets {
        outcomes.push(run_target(&root, &dir, target, max_len, options.seconds)?);
    }

    println!(
        "\n{:<12} {:>9} {:>14} {:>8}  result",
        "target", "seconds", "executions", "corpus"
    );
    let mut failed = Vec::new();
    let mut tsv = String::new();
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for o in &outcomes {
        let execs = o
            .executions
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let result = match &o.result {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.clone(),
        };
        println!(
            "{:<12} {:>9.0} {:>14} {:>8}  {result}",
            o.target, o.seconds, execs, o.corpus
        );
        let _ = writeln!(
            tsv,
            "{stamp}\t{}\t{:.0}\t{execs}\t{}\t{}",
            o.target,
            o.seconds,
            o.corpus,
            if o.result.is_ok() { "ok" } else { "crash" }
        );
        if o.result.is_err() {
            failed.push(o.target);
        }
    }
    append(&dir.join("results.tsv"), &tsv)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets found problems: {}; the inputs are in tests/fuzz-regressions/ — fix the bug, keep the \
             input (cargo test -p keybound-cli --test fuzz_regressions replays it)",
            failed.join(", ")
        ))
    }
}

fn check_cargo_fuzz() -> Result<()> {
    let ok = Command::new(crate::cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz` (a few minutes; stable toolchain is \
             fine, this command sets RUSTC_BOOTSTRAP=1)"
            .into())
    }
}

fn run_target(
    root: &Path,
    dir: &Path,
    target: &'static str,
    max_len: usize,
    seconds: u64,
) -> Result<Outcome> {
    let binary = dir.join(host_triple()).join("release").join(target);
    if !binary.is_file() {
        return Err(format!("{} was not built", binary.display()));
    }
    let seeds = write_seeds(root, dir, target)?;
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    let logs = dir.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let before = files(&artifacts);
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    println!(
        "\n==> {target}: {seconds} s, {seeds_n} seeds, log {log}",
        seeds_n = files(&seeds).len(),
        log = log_path.display()
    );
    let started = Instant::now();
    let status = Command::new(&binary)
        .current_dir(root)
        .arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let executions = executions(&text);
    let result = if status.success() {
        Ok(())
    } else {
        let found: Vec<PathBuf> = files(&artifacts)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        let keep = root.join("tests").join("fuzz-regressions").join(target);
        std::fs::create_dir_all(&keep)
            .map_err(|e| format!("cannot create {}: {e}", keep.display()))?;
        let mut kept = Vec::new();
        for f in &found {
            if let Some(name) = f.file_name() {
                let to = keep.join(name);
                std::fs::copy(f, &to)
                    .map_err(|e| format!("cannot copy {} to {}: {e}", f.display(), to.display()))?;
                kept.push(to.display().to_string());
            }
        }
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        eprintln!("--- {target}: last lines of {}", log_path.display());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        Err(format!("FAILED ({status}); kept {}", kept.join(", ")))
    };
    println!(
        "<== {target}: {} executions in {elapsed:.0} s: {}",
        executions.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        if result.is_ok() { "no crash" } else { "CRASH" }
    );
    Ok(Outcome {
        target,
        seconds: elapsed,
        executions,
        corpus: files(&corpus).len(),
        result,
    })
}

/// The number of executions libFuzzer reported last (`stat::number_of_executed_units`, else `Done N runs`).
fn executions(log: &str) -> Option<u64> {
    let stat = log.lines().rev().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|v| v.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|l| {
            let rest = l.strip_prefix("Done ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
    })
}

fn host_triple() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" => format!("{arch}-unknown-linux-gnu"),
        "macos" => format!("{arch}-apple-darwin"),
        other => format!("{arch}-unknown-{other}"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `target`'s seeds to a fresh `target/fuzz/seeds/<target>/` and returns it.
fn write_seeds(root: &Path, dir: &Path, target: &str) -> Result<PathBuf> {
    let out = dir.join("seeds").join(target);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let vectors = root.join("tests").join("vectors");
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    match target {
        "jws_verify" | "jwe_decrypt" => {
            let (tsv, dots) = if target == "jws_verify" {
                ("jws.tsv", 2)
            } else {
                ("jwe.tsv", 4)
            };
            let text =
                String::from_utf8_lossy(&read(&root.join("tests/hostile").join(tsv))?).into_owned();
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let mut cols = line.splitn(3, '\t');
                if let (Some(name), Some(_), Some(token)) = (cols.next(), cols.next(), cols.next())
                {
                    seeds.push((format!("hostile-{name}"), token.as_bytes().to_vec()));
                }
            }
            for file in files(&vectors).iter().filter(|p| has_ext(p, "json")) {
                let text = String::from_utf8_lossy(&read(file)?).into_owned();
                for (i, s) in quoted_strings(&text).into_iter().enumerate() {
                    if s.matches('.').count() == dots && !s.contains(' ') && s.len() > 20 {
                        seeds.push((format!("{}-{i}", stem(file)), s.into_bytes()));
                    }
                }
            }
        }
        "jwk_parse" => {
            for file in files(&vectors)
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(".pub.pem"))
            {
                seeds.push((stem(file), read(file)?));
            }
        }
        "flex_claims" => {
            let fixtures = root.join("crates/flex-client/tests/fixtures");
            for file in files(&fixtures).iter().filter(|p| has_ext(p, "json")) {
                seeds.push((stem(file), read(file)?));
            }
        }
        _ => {}
    }
    for extra in [
        root.join("fuzz").join("seeds").join(target),
        root.join("tests").join("fuzz-regressions").join(target),
    ] {
        for file in files(&extra) {
            seeds.push((format!("{}-{}", stem(&extra), stem(&file)), read(&file)?));
        }
    }
    for (name, bytes) in seeds {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = out.join(safe);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(out)
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

fn stem(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The string literals of a JSON text (escapes are kept as written; compact tokens have none).
fn quoted_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&strings(&["--seconds", "600", "jwk_parse"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.seconds, 600);
        assert_eq!(o.targets.len(), 1);
        assert_eq!(o.targets[0].0, "jwk_parse");
        let o = parse(&strings(&["--seconds=5"])).unwrap().unwrap();
        assert_eq!(o.targets.len(), TARGETS.len());
        assert!(parse(&strings(&["--seconds", "0"])).is_err());
        assert!(parse(&strings(&["nope"])).is_err());
        assert!(parse(&strings(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn executions_from_libfuzzer_output() {
        assert_eq!(
            executions(
                "#1\tINITED\nDone 12345 runs in 60 second(s)\nstat::number_of_executed_units: 12346\n"
            ),
            Some(12346)
        );
        assert_eq!(executions("Done 77 runs in 1 second(s)\n"), Some(77));
        assert_eq!(
            executions("stat::number_of_executed_units: 5\nstat::number_of_executed_units: 9\n"),
            Some(9)
        );
        assert_eq!(executions("==1== ERROR: libFuzzer: deadly signal\n"), None);
    }

    #[test]
    fn string_literals() {
        assert_eq!(
            quoted_strings(r#"{"a": "x.y.z", "b\"c": "d"}"#),
            vec!["a", "x.y.z", "b\\\"c", "d"]
        );
    }
}

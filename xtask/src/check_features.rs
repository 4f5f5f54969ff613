//! `cargo xtask check-features [-p PACKAGE]...`: builds every product crate the ways a downstream crate may
//! depend on it — with no default features, with each key backend feature alone (`file`, `env`, `pkcs11`),
//! and with all features — so that, for example, `keycloak-client` with only `pkcs11`, or `jose-core` with
//! no backend at all, keeps compiling.
//!
//! Each combination is checked twice in the shared target directory (reruns are incremental):
//! `cargo check -p PACKAGE …` (library and binaries, with normal dependencies only: what a downstream crate
//! compiles; dev-dependencies such as `key-provider` with `file` and `env` for the tests would otherwise
//! switch those features on and hide a crate that does not build without them), then
//! `cargo check -p PACKAGE --all-targets …` (tests, benches and examples too). A combination fails on a compile
//! error and on any warning in the workspace's own code (cargo replays cached warnings, so a warning is seen
//! on every run, not only the first). The backend features of a crate are read from the `[features]`
//! section of its `Cargo.toml`; a crate without, say, `env` simply has no `env` combination.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// The product crates: (package name, directory under the workspace root).
pub(crate) const PACKAGES: &[(&str, &str)] = &[
    ("key-provider", "crates/key-provider"),
    ("jose-core", "crates/jose-core"),
    ("keycloak-client", "crates/keycloak-client"),
    ("flex-client", "crates/flex-client"),
    ("provisioning-signer", "crates/provisioning-signer"),
    ("keybound-pki", "crates/pki"),
    ("keybound-cli", "crates/cli"),
];

/// The target selections every combination is checked with: the library and binaries alone (normal
/// dependencies only, as a downstream crate builds it), then every target (dev-dependencies too).
const TARGETS: &[&[&str]] = &[&[], &["--all-targets"]];

fn targets_text(targets: &[&str]) -> String {
    targets.iter().map(|t| format!(" {t}")).collect()
}

/// The key backend features, each checked alone.
const BACKENDS: &[&str] = &["file", "env", "pkcs11"];

const HELP: &str = "\
usage: cargo xtask check-features [-p PACKAGE]...

Runs `cargo check` (library and binaries, normal dependencies only) and `cargo check --all-targets`
for every product crate (or the ones given with -p) with --no-default-features, with
--no-default-features --features F for each backend feature F it has (file, env, pkcs11), and with
--all-features. Fails on any error or warning.
";

/// One `cargo check` to run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Combination {
    package: String,
    /// The feature arguments, e.g. `["--no-default-features", "--features", "file"]`.
    args: Vec<String>,
}

impl Combination {
    fn describe(&self) -> String {
        format!("-p {} {}", self.package, self.args.join(" "))
    }
}

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<()> {
    let mut only = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            "-p" | "--package" => only.push(iter.next().ok_or("-p needs a package name")?.clone()),
            other => return Err(format!("unexpected argument `{other}`\n\n{HELP}")),
        }
    }
    for p in &only {
        if !PACKAGES.iter().any(|(name, _)| name == p) {
            let known: Vec<&str> = PACKAGES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "`{p}` is not a product crate; choose from {}",
                known.join(", ")
            ));
        }
    }
    let root = crate::root();
    let mut combinations = Vec::new();
    for (package, dir) in PACKAGES {
        if !only.is_empty() && !only.iter().any(|p| p == package) {
            continue;
        }
        let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
            .map_err(|e| format!("cannot read {dir}/Cargo.toml: {e}"))?;
        combinations.extend(combinations_for(package, &features_of(&manifest)));
    }

    let started = Instant::now();
    let mut failed = Vec::new();
    let runs = combinations.len() * TARGETS.len();
    let mut run = 0;
    for combination in &combinations {
        for targets in TARGETS {
            run += 1;
            let one = Instant::now();
            let what = format!(
                "cargo check{} {}",
                targets_text(targets),
                combination.describe()
            );
            println!("==> [{run}/{runs}] {what}");
            let output = Command::new(crate::cargo())
                .current_dir(&root)
                .arg("check")
                .args(*targets)
                .args(["--message-format", "short", "-p"])
                .arg(&combination.package)
                .args(&combination.args)
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let diagnostics = diagnostics(&stderr);
            if !output.status.success() || !diagnostics.is_empty() {
                // Show everything cargo said: the errors and warnings, and what it was building.
                eprint!("{stderr}");
                println!("<== FAILED ({} diagnostics)", diagnostics.len());
                failed.push(what);
            } else {
                println!("<== ok in {:.1?}", one.elapsed());
            }
        }
    }
    println!(
        "\ncheck-features: {} combinations, {runs} checks in {:.1?}",
        combinations.len(),
        started.elapsed()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} combination(s) have errors or warnings:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ))
    }
}

/// The combinations for one package: no default features, each backend alone, all features.
fn combinations_for(package: &str, features: &[String]) -> Vec<Combination> {
    let combination = |args: &[&str]| Combination {
        package: package.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    };
    let mut out = vec![combination(&["--no-default-features"])];
    for backend in BACKENDS {
        if features.iter().any(|f| f == backend) {
            out.push(combination(&[
                "--no-default-features",
                "--features",
                backend,
            ]));
        }
    }
    out.push(combination(&["--all-features"]));
    out
}

/// The feature names declared in a manifest's `[features]` section (`default` included).
fn features_of(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_features = line == "[features]";
            continue;
        }
        if !in_features || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().trim_matches('"');
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// The warning and error lines of `cargo check --message-format short` output: `path:line:col: warning: …`.
/// Cargo's own summary lines (`warning: `x` (lib) generated 1 warning`) start with the level and are not
/// counted; dependencies outside the workspace have their warnings capped by cargo.
fn diagnostics(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let Some((location, _)) = l.split_once(": ") else {
                return false;
            };
            Path::new(location.split(':').next().unwrap_or_default())
                .extension()
                .is_some_and(|e| e == "rs")
                && (l.contains(": warning") || l.contains(": error"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_read_from_the_features_section_only() {
        let manifest = "[package]\nname = \"x\"\n\n[features]\ndefault = [\"file\", \"env\"]\n## docs\nfile = [\"a/file\"]\npkcs11 = [\n    \"a/pkcs11\",\n]\n\"quoted\" = []\n\n[dependencies]\nenv = \"1\"\n";
        assert_eq!(
            features_of(manifest),
            ["default", "file", "pkcs11", "quoted"]
        );
    }

    #[test]
    fn combinations_skip_missing_backends() {
        let c = combinations_for("p", &["default".into(), "pkcs11".into()]);
        let described: Vec<String> = c.iter().map(Combination::describe).collect();
        assert_eq!(
            described,
            [
                "-p p --no-default-features",
                "-p p --no-default-features --features pkcs11",
                "-p p --all-features",
            ]
        );
    }

    #[test]
    fn only_compiler_diagnostics_count() {
        let stderr = "    Checking a v0.1.0\ncrates/a/src/lib.rs:3:5: warning: unused import: `x`\n\
                      warning: `a` (lib) generated 1 warning\ncrates/b/tests/t.rs:1:1: error[E0433]: nope\n\
                      error: could not compile `b`\n    Finished\n";
        assert_eq!(
            diagnostics(stderr),
            [
                "crates/a/src/lib.rs:3:5: warning: unused import: `x`",
                "crates/b/tests/t.rs:1:1: error[E0433]: nope"
            ]
        );
    }

    #[test]
    fn every_product_crate_is_listed_with_its_directory() {
        let root = crate::root();
        for (package, dir) in PACKAGES {
            let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
            assert!(
                manifest.contains(&format!("name = \"{package}\"")),
                "{dir}/Cargo.toml is not package {package}"
            );
        }
    }
}

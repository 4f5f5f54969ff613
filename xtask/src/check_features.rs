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
//!
//! Then the **key-service proof**: the key-service backends (`vault`, `aws-kms`) are off by default in the
//! libraries, and a crate that does not enable them compiles none of their dependencies. For every product
//! crate and every feature selection that leaves a service feature off (its default features, none, each
//! other backend alone, all other features together), `cargo tree -e normal` must not list that feature's
//! crates ([`SERVICE_CRATES`]: the AWS SDK for `aws-kms`; reqwest and hyper for `vault`, in the crates that
//! have no HTTP client of their own). As a control, the same crates must be listed when the feature is on, so
//! the proof cannot pass by looking at the wrong names.

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
const BACKENDS: &[&str] = &["file", "env", "pkcs11", "vault", "aws-kms"];

/// One rule of [`SERVICE_CRATES`]: (feature, crates, the packages the rule applies to).
pub(crate) type ServiceCrates = (
    &'static str,
    &'static [&'static str],
    Option<&'static [&'static str]>,
);

/// The key-service features, and the crates that only they may bring into a product crate's normal
/// dependency tree: (feature, crates, the packages the rule applies to — `None`: every product crate).
/// reqwest and hyper are checked only where nothing else brings them (keycloak-client and flex-client are
/// HTTP clients themselves).
pub(crate) const SERVICE_CRATES: &[ServiceCrates] = &[
    (
        "aws-kms",
        &[
            "aws-sdk-kms",
            "aws-config",
            "aws-smithy-runtime",
            "aws-sigv4",
        ],
        None,
    ),
    (
        "vault",
        &["reqwest", "hyper"],
        Some(&[
            "key-provider",
            "jose-core",
            "provisioning-signer",
            "keybound-pki",
        ]),
    ),
];

const HELP: &str = "\
usage: cargo xtask check-features [-p PACKAGE]...

Runs `cargo check` (library and binaries, normal dependencies only) and `cargo check --all-targets`
for every product crate (or the ones given with -p) with --no-default-features, with
--no-default-features --features F for each backend feature F it has (file, env, pkcs11; vault and
aws-kms where the crate's code names them, not only passes them down), and with --all-features. Then proves with `cargo tree` that no selection leaving `vault` or `aws-kms` off
compiles their dependencies. Fails on any error or warning.
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
        let sources = rust_sources(&root.join(dir));
        combinations.extend(combinations_for(
            package,
            &features_of(&manifest),
            |feature| sources.contains(&format!("feature = \"{feature}\"")),
        ));
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
    let proof_started = Instant::now();
    let mut proofs = 0;
    for (package, dir) in PACKAGES {
        if !only.is_empty() && !only.iter().any(|p| p == package) {
            continue;
        }
        let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml"))
            .map_err(|e| format!("cannot read {dir}/Cargo.toml: {e}"))?;
        let features = features_of(&manifest);
        for (feature, crates, applies) in SERVICE_CRATES {
            if applies.is_some_and(|a| !a.contains(package))
                || !features.iter().any(|f| f == feature)
            {
                continue;
            }
            for selection in service_off_selections(&manifest, &features, feature) {
                proofs += 1;
                let listed = tree(&root, package, &selection)?;
                let found: Vec<&str> = crates
                    .iter()
                    .copied()
                    .filter(|c| listed.contains(*c))
                    .collect();
                if found.is_empty() {
                    println!(
                        "<== ok: -p {package} {} has none of {}",
                        selection.join(" "),
                        crates.join(", ")
                    );
                } else {
                    println!(
                        "<== FAILED: -p {package} {} compiles {} without `{feature}`",
                        selection.join(" "),
                        found.join(", ")
                    );
                    failed.push(format!(
                        "-p {package} {}: {} without `{feature}`",
                        selection.join(" "),
                        found.join(", ")
                    ));
                }
            }
            // The control: with the feature on, its crates are there (the names are right).
            proofs += 1;
            let on = [
                "--no-default-features".to_owned(),
                "--features".to_owned(),
                (*feature).to_owned(),
            ];
            let listed = tree(&root, package, &on)?;
            if !crates.iter().any(|c| listed.contains(*c)) {
                failed.push(format!(
                    "-p {package} --features {feature}: none of {} in its tree; the proof looks for the wrong names",
                    crates.join(", ")
                ));
            }
        }
    }
    println!(
        "check-features: key-service proof, {proofs} dependency trees in {:.1?}",
        proof_started.elapsed()
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

/// The feature selections of a package that leave `service` off: its default features (unless they include
/// it), none, each non-service backend alone, and every feature but the two services together.
fn service_off_selections(manifest: &str, features: &[String], service: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if !default_features(manifest).iter().any(|f| f == service) {
        out.push(Vec::new());
    }
    out.push(vec!["--no-default-features".to_owned()]);
    // Each other backend alone, the other key service excepted (the AWS SDK brings hyper, for one).
    for backend in BACKENDS
        .iter()
        .filter(|b| !matches!(**b, "vault" | "aws-kms") && features.iter().any(|f| f == *b))
    {
        out.push(vec![
            "--no-default-features".to_owned(),
            "--features".to_owned(),
            (*backend).to_owned(),
        ]);
    }
    let others: Vec<&str> = features
        .iter()
        .map(String::as_str)
        .filter(|f| !matches!(*f, "default" | "vault" | "aws-kms" | "remote"))
        .collect();
    if !others.is_empty() {
        out.push(vec![
            "--no-default-features".to_owned(),
            "--features".to_owned(),
            others.join(","),
        ]);
    }
    out
}

/// The `default = [...]` list of a manifest's `[features]` section.
fn default_features(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_features = line == "[features]";
            continue;
        }
        if in_features && let Some(list) = line.strip_prefix("default") {
            return list
                .split(['[', ']', ',', '='])
                .map(|f| f.trim().trim_matches('"'))
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    Vec::new()
}

/// The crate names in `package`'s normal dependency tree with `selection`, one per line.
fn tree(
    root: &Path,
    package: &str,
    selection: &[String],
) -> Result<std::collections::BTreeSet<String>> {
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args([
            "tree", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package,
        ])
        .args(selection)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree -p {package} {} failed: {}",
            selection.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The key-service backends, checked alone only in a crate whose code names them (`feature = "vault"`): in
/// the others they only pass the feature down to key-provider, so alone they build exactly what
/// `--no-default-features` builds plus key-provider's own check (each of these checks costs a rebuild of
/// the crate and its dependents).
const SERVICES: &[&str] = &["vault", "aws-kms"];

/// The text of every `.rs` file under `dir`'s `src/`, `tests/`, `benches/` and `examples/` (for
/// [`SERVICES`]).
fn rust_sources(dir: &Path) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    for sub in ["src", "tests", "benches", "examples"] {
        walk(&dir.join(sub), &mut out);
    }
    out
}

/// The combinations for one package: no default features, each backend alone (a key service only where
/// `names_feature` says the crate's code names it), all features.
fn combinations_for(
    package: &str,
    features: &[String],
    names_feature: impl Fn(&str) -> bool,
) -> Vec<Combination> {
    let combination = |args: &[&str]| Combination {
        package: package.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    };
    let mut out = vec![combination(&["--no-default-features"])];
    for backend in BACKENDS {
        if SERVICES.contains(backend) && !names_feature(backend) {
            continue;
        }
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
        let c = combinations_for("p", &["default".into(), "pkcs11".into()], |_| true);
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
    fn key_services_are_checked_alone_only_where_the_code_names_them() {
        let features: Vec<String> = ["default", "file", "vault", "aws-kms"]
            .map(String::from)
            .to_vec();
        let described = |names: bool| -> Vec<String> {
            combinations_for("p", &features, |_| names)
                .iter()
                .map(Combination::describe)
                .collect()
        };
        assert_eq!(
            described(false),
            [
                "-p p --no-default-features",
                "-p p --no-default-features --features file",
                "-p p --all-features",
            ]
        );
        assert!(
            described(true).contains(&"-p p --no-default-features --features aws-kms".to_owned())
        );
        let root = crate::root();
        assert!(rust_sources(&root.join("crates/key-provider")).contains("feature = \"vault\""));
        assert!(!rust_sources(&root.join("crates/jose-core")).contains("feature = \"vault\""));
    }

    #[test]
    fn service_off_selections_leave_the_service_out() {
        let manifest = "[features]\ndefault = [\"file\", \"env\"]\nfile = []\nenv = []\npkcs11 = []\nvault = []\naws-kms = []\nprogress = []\n";
        let features = features_of(manifest);
        let selections: Vec<String> = service_off_selections(manifest, &features, "vault")
            .iter()
            .map(|s| s.join(" "))
            .collect();
        assert_eq!(
            selections,
            [
                "",
                "--no-default-features",
                "--no-default-features --features file",
                "--no-default-features --features env",
                "--no-default-features --features pkcs11",
                "--no-default-features --features file,env,pkcs11,progress",
            ]
        );
        // A default that includes the service (the CLI's) is not a selection that leaves it off.
        let cli = "[features]\ndefault = [\"file\", \"vault\"]\nfile = []\nvault = []\n";
        assert!(!service_off_selections(cli, &features_of(cli), "vault").contains(&Vec::new()));
        assert_eq!(default_features(cli), ["file", "vault"]);
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

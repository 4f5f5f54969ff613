//! `cargo xtask softhsm-test [-p PACKAGE]... [CARGO-TEST-ARGS]... [-- TEST-BINARY-ARGS]`
//!
//! Runs the PKCS#11 tests against a SoftHSM token made for this run:
//!
//! 1. finds libsofthsm2 (`KEYBOUND_PKCS11_MODULE`, else the usual install paths); without it, says how to
//!    install it and fails;
//! 2. creates `target/softhsm-test/<timestamp>-<pid>/` with `softhsm/setup-token.sh`: a `softhsm2.conf`, a
//!    token directory of its own (never the system's) and one initialised token;
//! 3. writes the user and SO PINs to files of mode 0600 and exports the variables of [`env`];
//! 4. runs `cargo test -p PACKAGE --features FEATURES` for every entry of [`RUNS`] (or for the packages given
//!    with `-p`), passing the other arguments on. For keycloak-client and the CLI it first installs the
//!    OpenID Connect test server's npm packages when missing and exports `KEYBOUND_TEST_OIDC_REQUIRED=1`.
//!    It also installs the pinned OpenBao and moto servers when missing (`cargo xtask keyservices`) and
//!    exports their paths with `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`. Any failure fails the command; since
//!    `KEYBOUND_TEST_PKCS11_REQUIRED=1` is exported, a PKCS#11 test cannot pass by skipping itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The test runs: (package, features). A crate with SoftHSM tests is one more line here.
const RUNS: &[(&str, &str)] = &[
    ("key-provider", "pkcs11"),
    ("keycloak-client", "pkcs11"),
    ("provisioning-signer", "pkcs11"),
    ("flex-client", "pkcs11"),
    ("keybound-pki", "pkcs11"),
    ("keybound-cli", "pkcs11"),
];

/// The packages whose PKCS#11 tests talk to the OpenID Connect test server (`tests/oidc-provider`).
const OIDC_PACKAGES: &[&str] = &["keycloak-client", "keybound-cli"];

/// The features used for a package given with `-p` that is not in [`RUNS`].
const DEFAULT_FEATURES: &str = "pkcs11";

/// Where SoftHSM's module is usually installed (Debian/Ubuntu, multiarch, from source).
const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The variables exported to the tests (read by `keybound_test_support::pkcs11`, which names them the same).
pub mod env {
    /// SoftHSM's own configuration file variable.
    pub const SOFTHSM2_CONF: &str = "SOFTHSM2_CONF";
    /// The PKCS#11 module (also read by keybound itself).
    pub const MODULE: &str = "KEYBOUND_PKCS11_MODULE";
    /// Label of the token this run initialised.
    pub const TOKEN: &str = "KEYBOUND_TEST_PKCS11_TOKEN";
    /// User PIN file.
    pub const PIN_FILE: &str = "KEYBOUND_TEST_PKCS11_PIN_FILE";
    /// Security officer PIN file (tests create tokens of their own with it).
    pub const SO_PIN_FILE: &str = "KEYBOUND_TEST_PKCS11_SO_PIN_FILE";
    /// `1`: PKCS#11 tests must run, not skip.
    pub const REQUIRED: &str = "KEYBOUND_TEST_PKCS11_REQUIRED";
}

pub const TOKEN_LABEL: &str = "keybound-test";

struct Options {
    runs: Vec<(String, String)>,
    cargo_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut packages = Vec::new();
    let mut cargo_args = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-p" | "--package" => {
                packages.push(iter.next().ok_or("-p needs a package name")?.clone());
            }
            "--" => {
                cargo_args.push(arg.clone());
                cargo_args.extend(iter.by_ref().cloned());
            }
            other => match other.strip_prefix("--package=") {
                Some(p) => packages.push(p.to_owned()),
                None => cargo_args.push(other.to_owned()),
            },
        }
    }
    let runs = if packages.is_empty() {
        RUNS.iter()
            .map(|(p, f)| ((*p).to_owned(), (*f).to_owned()))
            .collect()
    } else {
        packages
            .into_iter()
            .map(|p| {
                let features = RUNS
                    .iter()
                    .find(|(name, _)| *name == p)
                    .map_or(DEFAULT_FEATURES, |(_, f)| *f);
                (p, features.to_owned())
            })
            .collect()
    };
    Ok(Some(Options { runs, cargo_args }))
}

const HELP: &str = "\
usage: cargo xtask softhsm-test [-p PACKAGE]... [CARGO-TEST-ARGS]... [-- TEST-BINARY-ARGS]

Creates a fresh SoftHSM token under target/softhsm-test/ and runs `cargo test -p PACKAGE --features pkcs11`
against it (by default for every package listed in xtask/src/softhsm.rs, RUNS). Other arguments go to
`cargo test`, e.g. `cargo xtask softhsm-test --test pkcs11 -- --nocapture`.
";

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    let Some(options) = parse(args)? else {
        print!("{HELP}");
        return Ok(());
    };
    let started = Instant::now();
    let root = crate::root();
    // The Keycloak-side PKCS#11 tests (keycloak-client, the CLI) also need the OpenID Connect test server.
    let needs_oidc = options
        .runs
        .iter()
        .any(|(package, _)| OIDC_PACKAGES.contains(&package.as_str()));
    if needs_oidc {
        crate::test::prepare_oidc_provider()?;
    }
    // The key-service servers (OpenBao, moto), for the `vault`/`aws-kms` tests that run beside PKCS#11 ones.
    let keyservices = crate::keyservices::ensure_keyservices()?;
    let token = create_token(&run_dir(&root), TOKEN_LABEL)?;
    println!("SoftHSM module: {}", token.module.display());
    println!("token directory: {}", token.dir.display());
    let mut vars = token.test_env();
    vars.extend(keyservices.test_env());
    println!("exported for the tests:");
    for (k, v) in &vars {
        println!("  {k}={v}");
    }

    let mut failed = Vec::new();
    for (package, features) in &options.runs {
        let run_started = Instant::now();
        println!(
            "\n==> cargo test -p {package} --features {features} {}",
            options.cargo_args.join(" ")
        );
        let status = Command::new(crate::cargo())
            .current_dir(&root)
            .args(["test", "-p", package, "--features", features])
            // With its npm packages installed, the OpenID Connect server's tests must run, not skip.
            .envs(needs_oidc.then_some(("KEYBOUND_TEST_OIDC_REQUIRED", "1")))
            .args(&options.cargo_args)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        println!(
            "<== {package}: {} in {:.1?}",
            if status.success() { "ok" } else { "FAILED" },
            run_started.elapsed()
        );
        if !status.success() {
            failed.push(package.clone());
        }
    }
    println!(
        "\nsofthsm-test finished in {:.1?} (token directory kept at {})",
        started.elapsed(),
        token.dir.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("PKCS#11 tests failed in: {}", failed.join(", ")))
    }
}

/// A SoftHSM token initialised for one run, in a token directory of its own.
pub struct Token {
    /// The run's directory: `softhsm2.conf`, `tokens/`, the PIN files.
    pub dir: PathBuf,
    /// Its `softhsm2.conf` (export it as `SOFTHSM2_CONF`).
    pub conf: PathBuf,
    /// The SoftHSM module.
    pub module: PathBuf,
    /// The token label.
    pub label: String,
    /// User PIN file (mode 0600).
    pub pin_file: PathBuf,
    /// Security officer PIN file (mode 0600).
    pub so_pin_file: PathBuf,
}

impl Token {
    /// The variables the PKCS#11 tests read, with `KEYBOUND_TEST_PKCS11_REQUIRED=1` so none can skip.
    pub fn test_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (env::SOFTHSM2_CONF, self.conf.display().to_string()),
            (env::MODULE, self.module.display().to_string()),
            (env::TOKEN, self.label.clone()),
            (env::PIN_FILE, self.pin_file.display().to_string()),
            (env::SO_PIN_FILE, self.so_pin_file.display().to_string()),
            (env::REQUIRED, "1".to_owned()),
        ]
    }
}

/// Finds SoftHSM, then initialises a token labelled `label` in `dir` (which must hold no token directory
/// yet) with `softhsm/setup-token.sh`, random PINs written to 0600 files.
pub fn create_token(dir: &Path, label: &str) -> Result<Token, String> {
    let module = find_module()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let user_pin = format!("kb-user-{:08x}", stamp ^ std::process::id());
    let so_pin = format!("kb-so-{:08x}", stamp.rotate_left(7));
    let pin_file = write_secret(&dir.join("user.pin"), &user_pin)?;
    let so_pin_file = write_secret(&dir.join("so.pin"), &so_pin)?;

    let script = crate::root().join("softhsm/setup-token.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .args([label, user_pin.as_str(), so_pin.as_str()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Token {
        conf: dir.join("softhsm2.conf"),
        dir: dir.to_owned(),
        module,
        label: label.to_owned(),
        pin_file,
        so_pin_file,
    })
}

/// The SoftHSM module: `KEYBOUND_PKCS11_MODULE`, else the first usual path that exists.
pub fn find_module() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env::MODULE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} names {}, which does not exist",
                env::MODULE,
                path.display()
            ))
        };
    }
    if let Some(found) = MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    Err(format!(
        "SoftHSM (libsofthsm2.so) is not installed: looked in {}.\n\
         Install it with:\n\n    sudo apt-get install softhsm2 opensc\n\n\
         (opensc provides pkcs11-tool), or point {} at your libsofthsm2.so.",
        MODULE_CANDIDATES.join(", "),
        env::MODULE
    ))
}

/// A fresh directory for this run (created by [`create_token`]): `target/softhsm-test/<unix seconds>-<pid>`.
pub fn run_dir(root: &Path) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    target
        .join("softhsm-test")
        .join(format!("{seconds}-{}", std::process::id()))
}

/// Writes `secret` and a newline to a new file of mode 0600.
fn write_secret(path: &Path, secret: &str) -> Result<PathBuf, String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    writeln!(file, "{secret}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn default_runs_and_forwarded_arguments() {
        let o = parse(&strings(&["--test", "pkcs11", "--", "--nocapture"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            o.runs,
            RUNS.iter()
                .map(|(p, f)| ((*p).to_owned(), (*f).to_owned()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            o.cargo_args,
            strings(&["--test", "pkcs11", "--", "--nocapture"])
        );
    }

    #[test]
    fn packages_replace_the_default_runs() {
        let o = parse(&strings(&["-p", "jose-core", "--package=cli", "--", "-p"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            o.runs,
            vec![
                ("jose-core".to_owned(), "pkcs11".to_owned()),
                ("cli".to_owned(), "pkcs11".to_owned())
            ]
        );
        assert_eq!(o.cargo_args, strings(&["--", "-p"]));
        assert!(parse(&strings(&["--help"])).unwrap().is_none());
        assert!(parse(&strings(&["-p"])).is_err());
    }
}

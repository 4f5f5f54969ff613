//! Runs the `keybound` binary: key generation and export (byte-identical to `openssl dgst`), JWT sign and
//! verify with PEM / JWK / JWKS keys and the documented exit codes, unverified decode, JWE round trips, and
//! configuration from a TOML file and the environment.

// These tests generate and use file keys.
#![cfg(feature = "file")]

mod common;

use common::{code, keybound, keybound_env, ok};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

fn generate(dir: &Path, name: &str, extra: &[&str]) -> String {
    let key = format!("file:{}", dir.join(name).display());
    let mut args = vec!["keys", "generate", "--key", key.as_str()];
    args.extend_from_slice(extra);
    ok(&keybound(&args, None));
    key
}

#[test]
fn keys_generate_public_export() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(
        dir.path(),
        "lender.pem",
        &["--kty", "RSA", "--bits", "3072"],
    );
    let path = dir.path().join("lender.pem");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&path).unwrap();
    let again = keybound(&["keys", "generate", "--key", &key], None);
    assert_eq!(code(&again), 2, "must refuse to overwrite");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        code(&keybound(
            &["keys", "generate", "--key", &key, "--bits", "1024"],
            None
        )),
        2
    );

    // PEM matches what openssl derives from the private key.
    let pem = ok(&keybound(&["keys", "public", "--key", &key], None));
    let openssl = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(pem.as_bytes(), &openssl.stdout[..]);

    let jwk: serde_json::Value = serde_json::from_str(&ok(&keybound(
        &["keys", "public", "--key", &key, "--format", "jwk"],
        None,
    )))
    .unwrap();
    assert_eq!(jwk["kty"], "RSA");
    let jwks: serde_json::Value = serde_json::from_str(&ok(&keybound(
        &["keys", "public", "--key", &key, "--format", "jwks"],
        None,
    )))
    .unwrap();
    assert_eq!(jwks["keys"][0], jwk);
    assert_eq!(jwk["kid"].as_str().unwrap().len(), 43);

    // Export: public_key_digest.txt byte-identical to `openssl dgst -sha256 public_key.pem` run in the dir.
    let out = dir.path().join("export");
    ok(&keybound(
        &[
            "keys",
            "export",
            "--key",
            &key,
            "--out-dir",
            out.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        std::fs::read_to_string(out.join("public_key.pem")).unwrap(),
        pem
    );
    let dgst = Command::new("openssl")
        .args(["dgst", "-sha256", "public_key.pem"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(dgst.status.success());
    assert_eq!(
        std::fs::read(out.join("public_key_digest.txt")).unwrap(),
        dgst.stdout
    );
    // Re-export of the same key is idempotent; another key is refused rather than overwriting.
    ok(&keybound(
        &[
            "keys",
            "export",
            "--key",
            &key,
            "--out-dir",
            out.to_str().unwrap(),
        ],
        None,
    ));
    let other = generate(dir.path(), "other.pem", &["--kty", "EC"]);
    assert_eq!(
        code(&keybound(
            &[
                "keys",
                "export",
                "--key",
                &other,
                "--out-dir",
                out.to_str().unwrap()
            ],
            None
        )),
        2
    );
}

#[test]
fn jwt_sign_verify_decode_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(dir.path(), "k.pem", &["--kty", "EC", "--crv", "P-384"]);
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"iss":"example-bank","sub":"example-bank","aud":"https://idp.example/token"}"#,
    )
    .unwrap();
    let token = ok(&keybound(
        &[
            "jwt",
            "sign",
            "--key",
            &key,
            "--alg",
            "ES384",
            "--kid",
            "k1",
            "--typ",
            "JWT",
            "--claims",
            claims.to_str().unwrap(),
            "--iat",
            "--exp-in",
            "60",
            "--jti",
        ],
        None,
    ));
    let token = token.trim();
    let pem = dir.path().join("pub.pem");
    std::fs::write(
        &pem,
        ok(&keybound(&["keys", "public", "--key", &key], None)),
    )
    .unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        ok(&keybound(
            &["keys", "public", "--key", &key, "--format", "jwks"],
            None,
        )),
    )
    .unwrap();

    let verified = ok(&keybound(
        &[
            "jwt",
            "verify",
            "--pubkey",
            pem.to_str().unwrap(),
            "--token",
            "-",
            "--aud",
            "https://idp.example/token",
            "--iss",
            "example-bank",
        ],
        Some(token.as_bytes()),
    ));
    let claims_out: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(claims_out["sub"], "example-bank");
    assert_eq!(claims_out["jti"].as_str().unwrap().len(), 36);
    assert!(claims_out["exp"].as_u64().unwrap() > claims_out["iat"].as_u64().unwrap());

    // JWKS selects by kid: our token's kid is "k1", the JWKS kid is the thumbprint → rejected (exit 1).
    let out = keybound(
        &[
            "jwt",
            "verify",
            "--pubkey",
            jwks.to_str().unwrap(),
            "--token",
            "-",
        ],
        Some(token.as_bytes()),
    );
    assert_eq!(code(&out), 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "one line on stderr"
    );

    // Wrong audience, tampered token, garbage: exit 1. Missing key file: exit 2.
    assert_eq!(
        code(&keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem.to_str().unwrap(),
                "--token",
                "-",
                "--aud",
                "other"
            ],
            Some(token.as_bytes())
        )),
        1
    );
    let mut tampered = token.to_string();
    tampered.insert(token.find('.').unwrap() + 3, 'A');
    assert_eq!(
        code(&keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem.to_str().unwrap(),
                "--token",
                "-"
            ],
            Some(tampered.as_bytes())
        )),
        1
    );
    assert_eq!(
        code(&keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem.to_str().unwrap(),
                "--token",
                "-"
            ],
            Some(b"not.a.jwt")
        )),
        1
    );
    assert_eq!(
        code(&keybound(
            &["jwt", "verify", "--pubkey", "/nonexistent", "--token", "-"],
            Some(token.as_bytes())
        )),
        2
    );
    assert_eq!(
        code(&keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem.to_str().unwrap(),
                "--token",
                "-",
                "--alg",
                "ES256"
            ],
            Some(token.as_bytes())
        )),
        1
    );

    let decoded = keybound(&["jwt", "decode", "--token", "-"], Some(token.as_bytes()));
    let d: serde_json::Value = serde_json::from_str(&ok(&decoded)).unwrap();
    assert_eq!(d["verified"], false);
    assert_eq!(d["header"]["kid"], "k1");
    assert!(String::from_utf8_lossy(&decoded.stderr).contains("UNVERIFIED"));

    // Usage errors: alg none, HS256, alg not fitting the key → exit 2, nothing on stdout.
    for alg in ["none", "HS256", "RS256"] {
        let out = keybound(
            &[
                "jwt",
                "sign",
                "--key",
                &key,
                "--alg",
                alg,
                "--claims",
                claims.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(code(&out), 2, "{alg}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn jwe_round_trip_and_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(dir.path(), "r.pem", &[]);
    let jwk = dir.path().join("pub.jwk");
    std::fs::write(
        &jwk,
        ok(&keybound(
            &["keys", "public", "--key", &key, "--format", "jwk"],
            None,
        )),
    )
    .unwrap();
    for (alg, enc) in [("RSA-OAEP", "A256GCM"), ("RSA-OAEP-256", "A128GCM")] {
        let jwe = ok(&keybound(
            &[
                "jwe",
                "encrypt",
                "--pubkey",
                jwk.to_str().unwrap(),
                "--alg",
                alg,
                "--enc",
                enc,
            ],
            Some(b"secret payload\n"),
        ));
        let plain = keybound(&["jwe", "decrypt", "--key", &key], Some(jwe.as_bytes()));
        assert_eq!(ok(&plain), "secret payload\n");
        let header: serde_json::Value =
            serde_json::from_slice(&jose_core_b64(jwe.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(
            header["kid"].as_str().unwrap().len(),
            43,
            "kid taken from the JWK"
        );
        let mut bad = jwe.trim().to_string();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        let out = keybound(&["jwe", "decrypt", "--key", &key], Some(bad.as_bytes()));
        assert_eq!(code(&out), 1);
        assert!(out.stdout.is_empty(), "no plaintext on failure");
    }
    let out = keybound(
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            jwk.to_str().unwrap(),
            "--alg",
            "RSA1_5",
            "--enc",
            "A256GCM",
        ],
        Some(b"x"),
    );
    assert_eq!(code(&out), 2);
}

fn jose_core_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn configuration_names_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(dir.path(), "named.pem", &["--kty", "EC"]);
    let config = dir.path().join("keybound.toml");
    std::fs::write(&config, format!("[keys]\nlender = \"{key}\"\n")).unwrap();
    let by_name = ok(&keybound(
        &[
            "--config",
            config.to_str().unwrap(),
            "keys",
            "public",
            "--key",
            "lender",
        ],
        None,
    ));
    let direct = ok(&keybound(&["keys", "public", "--key", &key], None));
    assert_eq!(by_name, direct);
    let by_env = ok(&keybound_env(
        &["keys", "public"],
        None,
        &[("KEYBOUND_KEY", &key)],
    ));
    assert_eq!(by_env, direct);
    assert_eq!(
        code(&keybound(
            &["keys", "public", "--key", "unknown-name"],
            None
        )),
        2
    );
    assert_eq!(
        code(&keybound(
            &["keys", "public", "--key", "pkcs11:object=x?pin-value=1234"],
            None
        )),
        2
    );
    assert_eq!(
        code(&keybound(
            &[
                "--config",
                "/nonexistent.toml",
                "keys",
                "public",
                "--key",
                &key
            ],
            None
        )),
        2
    );
}

/// Every command at every depth — found by walking the binary's own `--help` pages from the top, so a new
/// command cannot be missed — has a help page with its usage line, a description, and a description for
/// each of its subcommands and options.
#[test]
fn every_command_has_help() {
    let top = common::help(&[]);
    assert!(!top.about.is_empty() && top.usage.starts_with("Usage: keybound"));
    let tree = common::command_tree();
    for path in std::iter::once(Vec::new()).chain(tree.iter().cloned()) {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = common::help(&args);
        let name = format!("keybound {}", path.join(" "));
        assert!(!page.about.trim().is_empty(), "{name}: no description");
        assert!(
            page.usage
                .starts_with(&format!("Usage: {}", name.trim_end())),
            "{name}: {}",
            page.usage
        );
        for (what, entries) in [("subcommand", &page.commands), ("option", &page.options)] {
            for (entry, description) in entries {
                assert!(
                    !description.is_empty(),
                    "{name}: {what} {entry} has no description"
                );
            }
        }
        assert!(
            page.options.iter().any(|(o, _)| o.contains("--help")),
            "{name}"
        );
    }
    // The walk reaches every group and every command of each group, not only the first few.
    let leaves = common::leaf_commands();
    for group in ["keys", "jwt", "jwe", "flex", "keycloak", "provisioning"] {
        let top_listed = top.commands.iter().any(|(c, _)| c == group);
        let children = common::help(&[group]).commands;
        assert!(top_listed && !children.is_empty(), "{group}");
        for (child, _) in children {
            assert!(
                leaves.contains(&format!("{group} {child}")),
                "{group} {child} not walked: {leaves:?}"
            );
        }
    }
    assert_eq!(
        leaves.len(),
        tree.len() - top.commands.len(),
        "two levels: groups, then commands: {tree:?}"
    );
}

/// At the default log level a failure is one line on stderr (no WARN event repeating it); `--log warn`
/// adds the event; a filter that does not parse is a usage error, not a silent fallback.
#[test]
fn default_log_level_prints_one_line_per_failure() {
    let missing = ["keys", "public", "--key", "file:/nonexistent/key.pem"];
    let quiet = keybound_env(&missing, None, &[("KEYBOUND_LOG", "error")]);
    // `keybound` runs without KEYBOUND_LOG: the default level.
    let default = keybound(&missing, None);
    for out in [&quiet, &default] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out), 2, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("keybound: cannot read key file"),
            "{stderr}"
        );
    }
    let warn = keybound_env(&missing, None, &[("KEYBOUND_LOG", "warn")]);
    let stderr = String::from_utf8_lossy(&warn.stderr);
    assert_eq!(code(&warn), 2, "{stderr}");
    assert!(stderr.contains("key open failed"), "{stderr}");

    let bad = keybound(
        &["--log", "a=b=c", "keys", "public", "--key", "file:/x"],
        None,
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(code(&bad), 2, "{stderr}");
    assert!(stderr.contains("not a log filter"), "{stderr}");
}

/// Numbers from the command line or the configuration that meet a clock are checked: a lifetime or leeway
/// out of range is a usage error (exit 2, one line saying the range), never a wrapped-around `exp`, a
/// panic, or a valid token called expired. The edges of each range still work.
#[test]
fn out_of_range_times_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(dir.path(), "k.pem", &[]);
    let claims = dir.path().join("claims.json");
    std::fs::write(&claims, r#"{"sub":"s"}"#).unwrap();
    let claims = claims.to_str().unwrap();
    let pem = dir.path().join("pub.pem");
    std::fs::write(
        &pem,
        ok(&keybound(&["keys", "public", "--key", &key], None)),
    )
    .unwrap();
    let pem = pem.to_str().unwrap();
    let sign = |exp_in: &str| {
        keybound(
            &[
                "jwt", "sign", "--key", &key, "--alg", "RS256", "--claims", claims, "--exp-in",
                exp_in,
            ],
            None,
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 9999-12-31T23:59:59Z is the latest exp --exp-in may produce.
    let to_year_9999 = 253_402_300_799 - now;
    let mut usage_errors: Vec<(String, std::process::Output)> = Vec::new();
    for exp_in in [
        u64::MAX.to_string(),
        (u64::MAX - now + 1).to_string(),
        (to_year_9999 + 3600).to_string(),
    ] {
        usage_errors.push((format!("jwt sign --exp-in {exp_in}"), sign(&exp_in)));
    }
    let far = ok(&sign(&(to_year_9999 - 3600).to_string()));
    let (_, far_claims) = decode(far.trim());
    assert!(far_claims["exp"].as_u64().unwrap() > now + to_year_9999 - 7200);

    let token = ok(&sign("60"));
    let verify = |leeway: &str| {
        keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem,
                "--token",
                "-",
                &format!("--leeway={leeway}"),
            ],
            Some(token.as_bytes()),
        )
    };
    for leeway in ["1000000000000", "18446744073709551615", "301", "-1"] {
        usage_errors.push((format!("jwt verify --leeway {leeway}"), verify(leeway)));
    }
    ok(&verify("300"));
    ok(&verify("0"));

    // provisioning: --ttl and --leeway.
    let code_out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--sub",
            "card-ref-1",
            "--aud",
            "APPLE_PAY",
        ],
        None,
    );
    let auth_code = ok(&code_out);
    for ttl in ["18446744073709551615", "0", "301"] {
        usage_errors.push((
            format!("provisioning auth-code --ttl {ttl}"),
            keybound(
                &[
                    "provisioning",
                    "auth-code",
                    "--key",
                    &key,
                    "--issuer-id",
                    "I",
                    "--sub",
                    "card-ref-1",
                    "--aud",
                    "APPLE_PAY",
                    "--ttl",
                    ttl,
                ],
                None,
            ),
        ));
    }
    let verify_code = |leeway: &str| {
        keybound(
            &[
                "provisioning",
                "verify-auth-code",
                "--pubkey",
                pem,
                "--token",
                "-",
                "--leeway",
                leeway,
            ],
            Some(auth_code.as_bytes()),
        )
    };
    usage_errors.push((
        "provisioning verify-auth-code --leeway 1000000000000".into(),
        verify_code("1000000000000"),
    ));
    ok(&verify_code("300"));

    // flex: --leeway and [flex] leeway (refused before any network access).
    let context = dir.path().join("ctx.jwt");
    std::fs::write(&context, token.trim()).unwrap();
    let context = context.to_str().unwrap();
    usage_errors.push((
        "flex verify-context --leeway 1000000000000".into(),
        keybound(
            &[
                "flex",
                "verify-context",
                "--capture-context",
                context,
                "--leeway",
                "1000000000000",
            ],
            None,
        ),
    ));
    let config = dir.path().join("keybound.toml");
    std::fs::write(
        &config,
        "[flex]\nleeway = 1000000000000\n[keycloak]\ntimeout = 0\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    usage_errors.push((
        "[flex] leeway = 1000000000000".into(),
        keybound(
            &[
                "--config",
                config,
                "flex",
                "verify-context",
                "--capture-context",
                context,
            ],
            None,
        ),
    ));
    // keycloak: [keycloak] timeout = 0 would time every attempt out at once.
    usage_errors.push((
        "[keycloak] timeout = 0".into(),
        keybound_env(
            &[
                "--config",
                config,
                "keycloak",
                "token",
                "--token-url",
                "https://sso.invalid/realms/r/protocol/openid-connect/token",
                "--client-id",
                "c",
                "--key",
                &key,
                "--username",
                "u",
                "--password-env",
                "KB_TEST_PASSWORD",
            ],
            None,
            &[("KB_TEST_PASSWORD", "p")],
        ),
    ));

    for (what, out) in &usage_errors {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: nothing signed or printed");
        assert!(
            [
                "9999-12-31",
                "0 to 300",
                "300 s",
                "1 to 300",
                "at most 300",
                "5 minutes"
            ]
            .iter()
            .any(|range| stderr.contains(range)),
            "{what}: the message says the range: {stderr}"
        );
    }
}

/// The header and claims of a compact JWT (no verification).
fn decode(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = token.split('.');
    let mut part = || serde_json::from_slice(&jose_core_b64(parts.next().unwrap())).unwrap();
    (part(), part())
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `keys export` never writes through a symlink (a dangling one used to get its target created), never
/// replaces another key's files without `--force`, writes both files or neither, and leaves no temporary
/// file behind.
#[test]
fn keys_export_never_writes_through_a_symlink_nor_over_files_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate(dir.path(), "k.pem", &["--kty", "EC"]);
    let other = generate(dir.path(), "other.pem", &["--kty", "EC"]);
    let out = dir.path().join("export");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.pem");
    std::os::unix::fs::symlink(&victim, out.join("public_key.pem")).unwrap();
    let export = |key: &str, force: bool| {
        let mut args = vec![
            "keys",
            "export",
            "--key",
            key,
            "--out-dir",
            out.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        keybound(&args, None)
    };
    let refused = export(&key, false);
    assert_eq!(code(&refused), 2, "{}", common::stderr(&refused));
    assert!(
        common::stderr(&refused).contains("--force"),
        "{}",
        common::stderr(&refused)
    );
    assert!(
        !victim.exists(),
        "the dangling symlink's target was created"
    );
    assert_eq!(
        names(&out),
        ["public_key.pem"],
        "neither file written (no digest without its key), no temporary file"
    );

    // --force replaces the link itself; its target is still not created.
    ok(&export(&key, true));
    assert!(!victim.exists());
    assert!(
        std::fs::symlink_metadata(out.join("public_key.pem"))
            .unwrap()
            .is_file()
    );
    let pem = ok(&keybound(&["keys", "public", "--key", &key], None));
    assert_eq!(
        std::fs::read_to_string(out.join("public_key.pem")).unwrap(),
        pem
    );
    assert_eq!(names(&out), ["public_key.pem", "public_key_digest.txt"]);

    // The same key again: nothing to change. Another key: refused, then replaced with --force.
    ok(&export(&key, false));
    assert_eq!(code(&export(&other, false)), 2);
    assert_eq!(
        std::fs::read_to_string(out.join("public_key.pem")).unwrap(),
        pem
    );
    ok(&export(&other, true));
    let other_pem = ok(&keybound(&["keys", "public", "--key", &other], None));
    assert_eq!(
        std::fs::read_to_string(out.join("public_key.pem")).unwrap(),
        other_pem
    );
    let digest = std::fs::read_to_string(out.join("public_key_digest.txt")).unwrap();
    let dgst = Command::new("openssl")
        .args(["dgst", "-sha256", "public_key.pem"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert_eq!(digest.as_bytes(), dgst.stdout, "the digest follows the key");
    assert_eq!(names(&out), ["public_key.pem", "public_key_digest.txt"]);
}

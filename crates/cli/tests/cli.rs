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

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["keys", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["keys", "public", "--help"],
        vec!["keys", "export", "--help"],
        vec!["jwt", "sign", "--help"],
        vec!["jwt", "verify", "--help"],
        vec!["jwt", "decode", "--help"],
        vec!["jwe", "encrypt", "--help"],
        vec!["jwe", "decrypt", "--help"],
    ] {
        let out = ok(&keybound(&args, None));
        assert!(out.contains("Usage:"), "{args:?}");
    }
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

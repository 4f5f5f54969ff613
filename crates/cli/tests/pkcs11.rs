//! Every `keybound` command that takes a key, with the key in SoftHSM: `keys generate --kty RSA --bits 4096`
//! (`--usage sign`, `decrypt`, `sign,decrypt`: what the token records, seen by `pkcs11-tool`, and enforces),
//! `keys public` (PEM and JWK), `keys export`, `jwt sign` (RS256, PS256) checked by `jsonwebtoken` and by
//! `jwt verify`, `jwe decrypt` of JWEs encrypted to the token's public key (RSA-OAEP; RSA-OAEP-256 refused
//! clearly by SoftHSM 2.6), and `provisioning auth-code`. OpenSC's `pkcs11-tool`, an independent PKCS#11
//! client, confirms what the token holds: the private key sensitive and never extractable.
//!
//! Runs under `cargo xtask test` / `cargo xtask softhsm-test -p keybound-cli`; without SoftHSM each test
//! prints a loud SKIPPED line and passes (unless `KEYBOUND_TEST_PKCS11_REQUIRED=1`).

#![cfg(feature = "pkcs11")]
#![allow(clippy::print_stderr)] // the loud SKIPPED line when pkcs11-tool is missing

mod common;

use common::{keybound, ok};
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use keybound_test_support::pkcs11::TestToken;
use serde_json::{Value, json};

fn b64url_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `jsonwebtoken`'s verdict on `jwt` under `alg`, with the public key PEM `keybound` printed.
fn jsonwebtoken_claims(public_pem: &str, jwt: &str, alg: jsonwebtoken::Algorithm) -> Value {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .unwrap_or_else(|e| panic!("jsonwebtoken rejects the {alg:?} JWT: {e}"))
        .claims
}

/// What `pkcs11-tool --list-objects` says about the token's objects, or `None` when OpenSC is absent (then
/// only the cryptoki-based attribute checks of key-provider's own tests stand).
fn pkcs11_tool_listing(token: &TestToken) -> Option<String> {
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    let out = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&token.module)
        .args(["--token-label", &token.label, "--list-objects", "--login"])
        .args(["--pin", pin.trim_end()])
        .output();
    match out {
        Ok(out) => {
            assert!(
                out.status.success(),
                "pkcs11-tool: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8(out.stdout).unwrap())
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
fn every_key_command_works_with_a_softhsm_rsa_4096_key() {
    let Some(token) = TestToken::fresh("cli pkcs11 every key command", "cli-rsa4096") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reference = token.key_ref("cli-issuer");

    // keys generate: the token makes the pair; stdout names the stored key. This one key both signs and
    // decrypts, to run every command with it (keys for real use have one usage each).
    let generated = ok(&keybound(
        &[
            "keys",
            "generate",
            "--key",
            &reference,
            "--kty",
            "RSA",
            "--bits",
            "4096",
            "--usage",
            "sign,decrypt",
        ],
        None,
    ));
    assert!(generated.contains("object=cli-issuer"), "{generated}");
    let again = keybound(
        &[
            "keys", "generate", "--key", &reference, "--kty", "RSA", "--bits", "4096",
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(2), "a taken label is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // An independent PKCS#11 client sees one key pair under the label, the private half sensitive and
    // never extractable.
    if let Some(listing) = pkcs11_tool_listing(&token) {
        let private = listing
            .split("Private Key Object")
            .skip(1)
            .find(|o| o.contains("label:      cli-issuer"))
            .unwrap_or_else(|| panic!("no private key 'cli-issuer' in:\n{listing}"));
        assert!(private.contains("RSA"), "{private}");
        let access = private
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or_else(|| panic!("no Access line:\n{private}"));
        for attr in [
            "sensitive",
            "always sensitive",
            "never extractable",
            "local",
        ] {
            assert!(access.contains(attr), "{attr} missing: {access}");
        }
        assert_eq!(
            listing.matches("label:      cli-issuer\n").count(),
            2,
            "one private and one public object:\n{listing}"
        );
    }

    // keys public (PEM and JWK), keys export.
    let pem = ok(&keybound(&["keys", "public", "--key", &reference], None));
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let jwk: Value = serde_json::from_str(&ok(&keybound(
        &["keys", "public", "--key", &reference, "--format", "jwk"],
        None,
    )))
    .unwrap();
    assert_eq!(jwk["kty"], "RSA");
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap())
        .unwrap();
    assert_eq!(n.len(), 512, "a 4096-bit modulus");
    assert!(jwk.get("d").is_none(), "no private member");
    let out_dir = dir.path().join("export");
    ok(&keybound(
        &[
            "keys",
            "export",
            "--key",
            &reference,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("public_key.pem")).unwrap(),
        pem
    );
    let digest = std::fs::read_to_string(out_dir.join("public_key_digest.txt")).unwrap();
    let openssl = Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(out_dir.join("public_key.pem"))
        .current_dir(&out_dir)
        .output()
        .unwrap();
    let expected_hex = String::from_utf8(openssl.stdout).unwrap();
    let expected_hex = expected_hex.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        digest.trim_end().ends_with(&expected_hex),
        "{digest} vs openssl {expected_hex}"
    );
    let pem_path = dir.path().join("pub.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let jwk_path = dir.path().join("pub.jwk");
    std::fs::write(&jwk_path, jwk.to_string()).unwrap();

    // jwt sign in the token; jsonwebtoken and `jwt verify` accept it.
    for (alg, jalg) in [
        ("RS256", jsonwebtoken::Algorithm::RS256),
        ("PS256", jsonwebtoken::Algorithm::PS256),
    ] {
        let claims = json!({"iss": "keybound-test", "aud": "partner", "sub": alg});
        let jwt = ok(&keybound(
            &[
                "jwt", "sign", "--key", &reference, "--alg", alg, "--claims", "-", "--iat",
                "--exp-in", "120",
            ],
            Some(claims.to_string().as_bytes()),
        ));
        let jwt = jwt.trim();
        assert_eq!(b64url_json(jwt.split('.').next().unwrap())["alg"], alg);
        assert_eq!(jsonwebtoken_claims(&pem, jwt, jalg)["sub"], alg);
        let verified = ok(&keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                pem_path.to_str().unwrap(),
                "--token",
                "-",
                "--alg",
                alg,
                "--aud",
                "partner",
                "--iss",
                "keybound-test",
            ],
            Some(jwt.as_bytes()),
        ));
        assert!(verified.contains(alg), "{verified}");
    }

    // jwe decrypt in the token: RSA-OAEP unwraps; RSA-OAEP-256 is refused by SoftHSM 2.6, clearly.
    let payload = b"card data for the issuer\n";
    for enc in ["A256GCM", "A128GCM"] {
        let jwe = ok(&keybound(
            &[
                "jwe",
                "encrypt",
                "--pubkey",
                jwk_path.to_str().unwrap(),
                "--alg",
                "RSA-OAEP",
                "--enc",
                enc,
            ],
            Some(payload),
        ));
        let plain = keybound(
            &["jwe", "decrypt", "--key", &reference],
            Some(jwe.as_bytes()),
        );
        assert_eq!(ok(&plain).as_bytes(), payload);
        // The same JWE with one ciphertext byte changed: rejected, no plaintext.
        let mut parts: Vec<String> = jwe.trim().split('.').map(str::to_owned).collect();
        let c = parts[3].pop().unwrap();
        parts[3].push(if c == 'A' { 'B' } else { 'A' });
        let bad = keybound(
            &["jwe", "decrypt", "--key", &reference],
            Some(parts.join(".").as_bytes()),
        );
        assert_eq!(bad.status.code(), Some(1));
        assert!(bad.stdout.is_empty());
    }
    let oaep256 = ok(&keybound(
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            jwk_path.to_str().unwrap(),
            "--alg",
            "RSA-OAEP-256",
            "--enc",
            "A256GCM",
        ],
        Some(payload),
    ));
    let refused = keybound(
        &["jwe", "decrypt", "--key", &reference],
        Some(oaep256.as_bytes()),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "{stderr}"
    );
    assert!(stderr.contains("not supported"), "{stderr}");

    // provisioning auth-code signed in the token; jsonwebtoken and verify-auth-code accept it.
    let code = ok(&keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &reference,
            "--issuer-id",
            "ISSUER0001",
            "--sub",
            "tok-hsm",
            "--aud",
            "GOOGLE_PAY",
            "--kid",
            "hsm-1",
        ],
        None,
    ));
    let code = code.trim();
    let claims = jsonwebtoken_claims(&pem, code, jsonwebtoken::Algorithm::RS256);
    assert_eq!(
        (claims["sub"].as_str(), claims["iss"].as_str()),
        (Some("tok-hsm"), Some("ISSUER0001"))
    );
    let code_path = dir.path().join("code.jwt");
    std::fs::write(&code_path, code).unwrap();
    ok(&keybound(
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            pem_path.to_str().unwrap(),
            "--token",
            code_path.to_str().unwrap(),
            "--kid",
            "hsm-1",
        ],
        None,
    ));
    assert_no_secrets(&token, dir.path());
}

/// Nothing `keybound` wrote next to the test holds the PIN.
fn assert_no_secrets(token: &TestToken, dir: &Path) {
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    for entry in walk(dir) {
        let text = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(pin.trim_end()),
            "{} holds the PIN",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `reference` with its `module-path=` replaced by `module`.
fn with_module(reference: &str, module: &str) -> String {
    let (base, query) = reference.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("module-path=") {
                format!("module-path={module}")
            } else {
                kv.to_owned()
            }
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// Issue 12, item 6: `module-path=` naming a library other than the configured module (here libc) is
/// refused before it is loaded, with a message naming the setting that allows it; `pkcs11_allowed_modules`
/// (config file) and `KEYBOUND_PKCS11_ALLOWED_MODULES` allow it (then it is loaded, and refused as no
/// PKCS#11 library); the configured SoftHSM module keeps working.
#[test]
fn a_module_path_that_is_not_the_configured_module_is_refused_unless_allowed() {
    let Some(token) = TestToken::fresh("cli pkcs11 module allow-list", "cli-modules") else {
        return;
    };
    let Some(libc) = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file()) else {
        eprintln!("SKIPPED: no libc.so.6 at the Debian multiarch paths");
        return;
    };
    let reference = token.key_ref("cli-module");
    ok(&keybound(
        &["keys", "generate", "--key", &reference, "--kty", "EC"],
        None,
    ));
    let configured = std::env::var("KEYBOUND_PKCS11_MODULE").unwrap();
    assert_eq!(
        Path::new(&configured),
        token.module,
        "the run's module is the configured one"
    );

    let foreign = with_module(&reference, libc);
    let refused = keybound(&["keys", "public", "--key", &foreign], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    for says in [
        "was not loaded",
        libc,
        "pkcs11_allowed_modules",
        "KEYBOUND_PKCS11_ALLOWED_MODULES",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    assert!(refused.stdout.is_empty());

    // Allowed through the variable (a `:`-separated list) or the config file: loaded, and then refused for
    // what it is.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keybound.toml");
    std::fs::write(&config, format!("pkcs11_allowed_modules = [\"{libc}\"]\n")).unwrap();
    let list = format!("/opt/vendor/lib/libvendorpkcs11.so:{libc}");
    for (how, env) in [
        (
            "variable",
            vec![("KEYBOUND_PKCS11_ALLOWED_MODULES", list.as_str())],
        ),
        (
            "config file",
            vec![("KEYBOUND_CONFIG", config.to_str().unwrap())],
        ),
    ] {
        let out = common::keybound_env(&["keys", "public", "--key", &foreign], None, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{how}: {stderr}");
        assert!(stderr.contains("not a PKCS#11 library"), "{how}: {stderr}");
    }

    // The configured module: by the reference's own module-path, and by a symlink to it.
    let pem = ok(&keybound(&["keys", "public", "--key", &reference], None));
    let alias = dir.path().join("libsofthsm-alias.so");
    std::os::unix::fs::symlink(&token.module, &alias).unwrap();
    let aliased = with_module(&reference, alias.to_str().unwrap());
    assert_eq!(
        ok(&keybound(&["keys", "public", "--key", &aliased], None)),
        pem
    );
}

/// The `Usage:` line of the `kind` object (`Private Key Object` / `Public Key Object`) labelled `label` in a
/// `pkcs11-tool --list-objects` listing.
fn usage_line(listing: &str, kind: &str, label: &str) -> String {
    // Each object: its heading's remainder, then its indented lines up to the next object's heading.
    let object = listing
        .split(kind)
        .skip(1)
        .map(|o| {
            o.lines()
                .take_while(|l| !l.contains(" Object;"))
                .collect::<Vec<_>>()
        })
        .find(|lines| {
            lines
                .iter()
                .any(|l| l.trim() == format!("label:      {label}"))
        })
        .unwrap_or_else(|| panic!("no {kind} '{label}' in:\n{listing}"));
    object
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("Usage:"))
        .unwrap_or_else(|| panic!("no Usage line for {kind} {label}: {object:?}"))
        .trim()
        .to_owned()
}

/// Issue 12, item 5: `keys generate --usage sign|decrypt|sign,decrypt` (default `sign`). An independent
/// PKCS#11 client (`pkcs11-tool --list-objects`) sees exactly the usage asked for; signing with a
/// decrypt-only key and decrypting with a sign-only key fail with a clear error (exit 2), and the usage that
/// was asked for works. An EC key cannot decrypt, for file keys too; a file key accepts the flag, records
/// nothing, and says so.
#[test]
fn keys_generate_usage_is_exactly_what_the_token_records_and_enforces() {
    let Some(token) = TestToken::fresh("cli pkcs11 keys generate --usage", "cli-usage") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        ("usage-default", None, "sign", "verify"),
        ("usage-sign", Some("sign"), "sign", "verify"),
        ("usage-decrypt", Some("decrypt"), "decrypt", "encrypt"),
        (
            "usage-both",
            Some("sign,decrypt"),
            "decrypt, sign",
            "encrypt, verify",
        ),
    ];
    for (label, usage, _, _) in &rows {
        let reference = token.key_ref(label);
        let mut args = vec!["keys", "generate", "--key", &reference, "--kty", "RSA"];
        if let Some(usage) = usage {
            args.extend(["--usage", usage]);
        }
        ok(&keybound(&args, None));
    }
    if let Some(listing) = pkcs11_tool_listing(&token) {
        for (label, _, private, public) in &rows {
            assert_eq!(
                usage_line(&listing, "Private Key Object", label),
                *private,
                "{label}"
            );
            assert_eq!(
                usage_line(&listing, "Public Key Object", label),
                *public,
                "{label}"
            );
        }
    }

    let claims = r#"{"iss":"keybound-test"}"#;
    let sign = |label: &str| {
        keybound(
            &[
                "jwt",
                "sign",
                "--key",
                &token.key_ref(label),
                "--alg",
                "PS256",
                "--claims",
                "-",
                "--exp-in",
                "60",
            ],
            Some(claims.as_bytes()),
        )
    };
    let decrypt = |label: &str| {
        let pem = ok(&keybound(
            &["keys", "public", "--key", &token.key_ref(label)],
            None,
        ));
        let pem_path = dir.path().join(format!("{label}.pem"));
        std::fs::write(&pem_path, pem).unwrap();
        let jwe = ok(&keybound(
            &[
                "jwe",
                "encrypt",
                "--pubkey",
                pem_path.to_str().unwrap(),
                "--alg",
                "RSA-OAEP",
                "--enc",
                "A256GCM",
            ],
            Some(b"card data"),
        ));
        keybound(
            &["jwe", "decrypt", "--key", &token.key_ref(label)],
            Some(jwe.as_bytes()),
        )
    };
    for label in ["usage-default", "usage-sign", "usage-both"] {
        assert_eq!(ok(&sign(label)).trim().split('.').count(), 3, "{label}");
    }
    for label in ["usage-decrypt", "usage-both"] {
        assert_eq!(ok(&decrypt(label)), "card data", "{label}");
    }
    for (label, refused, says) in [
        (
            "usage-decrypt",
            sign("usage-decrypt"),
            ["not permitted", "CKA_SIGN is false", "--usage sign"],
        ),
        (
            "usage-sign",
            decrypt("usage-sign"),
            ["not permitted", "CKA_DECRYPT is false", "--usage decrypt"],
        ),
        (
            "usage-default",
            decrypt("usage-default"),
            ["not permitted", "CKA_DECRYPT is false", "--usage decrypt"],
        ),
    ] {
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{label}: {stderr}");
        assert!(refused.stdout.is_empty(), "{label}");
        for s in says {
            assert!(stderr.contains(s), "{label}: {s}: {stderr}");
        }
    }

    // An EC key can only sign, in a token and in a file; nothing is created.
    let file_ec = format!("file:{}", dir.path().join("ec.pem").display());
    for key in [token.key_ref("usage-ec"), file_ec.clone()] {
        for usage in ["decrypt", "sign,decrypt"] {
            let out = keybound(
                &[
                    "keys", "generate", "--key", &key, "--kty", "EC", "--usage", usage,
                ],
                None,
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{key} {usage}: {stderr}");
            assert!(stderr.contains("RSA keys only"), "{stderr}");
        }
    }
    assert!(!dir.path().join("ec.pem").exists());
    ok(&keybound(
        &[
            "keys",
            "generate",
            "--key",
            &token.key_ref("usage-ec"),
            "--kty",
            "EC",
        ],
        None,
    ));
    // Unknown usages are usage errors.
    let out = keybound(
        &["keys", "generate", "--key", &file_ec, "--usage", "encrypt"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sign,decrypt"));
    // A key file accepts every usage, records none, and says so when it is not the default.
    let file_key = format!("file:{}", dir.path().join("jwe.pem").display());
    let out = keybound(
        &["keys", "generate", "--key", &file_key, "--usage", "decrypt"],
        None,
    );
    assert!(ok(&out).starts_with(&file_key));
    assert!(String::from_utf8_lossy(&out.stderr).contains("records no usage"));
    let quiet = format!("file:{}", dir.path().join("sig.pem").display());
    let out = keybound(
        &["keys", "generate", "--key", &quiet, "--usage", "sign"],
        None,
    );
    ok(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Runs `keybound provisioning …`: one authorization code verified by jsonwebtoken; batch output in input
//! order with error lines and exit code 1; usage errors (ttl 301, EC key, missing issuer id) with exit 2;
//! the enrollment JWE decrypted with `keybound jwe decrypt` and the Thales test key; `push` pairs code and
//! payload; `verify-auth-code` accepts ours (exit 0) and rejects another issuer's (exit 1); settings from
//! the `[provisioning]` section.

// These tests generate and use file keys.
#![cfg(feature = "file")]

mod common;

use common::{code, keybound, ok, stderr};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../provisioning-signer/tests/fixtures")
        .join(name)
}

/// An RSA-2048 issuer key and its public key PEM.
fn issuer(dir: &Path) -> (String, PathBuf) {
    let key = format!("file:{}", dir.join("issuer.pem").display());
    ok(&keybound(&["keys", "generate", "--key", &key], None));
    let public = dir.join("issuer.pub.pem");
    std::fs::write(
        &public,
        ok(&keybound(&["keys", "public", "--key", &key], None)),
    )
    .unwrap();
    (key, public)
}

fn jsonwebtoken_claims(public_pem: &Path, jwt: &str, aud: &str) -> Value {
    let pem = std::fs::read(public_pem).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&pem).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[aud]);
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

#[test]
fn one_code_verifies_with_jsonwebtoken_and_our_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = issuer(dir.path());
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--sub",
            "tok-9",
            "--token-id",
            "--aud",
            "GOOGLE_PAY",
            "--kid",
            "acme-1",
            "--ttl",
            "300",
        ],
        None,
    );
    let jwt = ok(&out).trim().to_owned();
    assert_eq!(jwt.split('.').count(), 3);
    let claims = jsonwebtoken_claims(&public, &jwt, "GOOGLE_PAY");
    assert_eq!(claims["sub"], "tok-9");
    assert_eq!(claims["iss"], "ISSUER0001");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );

    let token = dir.path().join("code.jwt");
    std::fs::write(&token, &jwt).unwrap();
    let pubkey = public.to_str().unwrap();
    let tok = token.to_str().unwrap();
    let verified: Value = serde_json::from_str(&ok(&keybound(
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            pubkey,
            "--token",
            tok,
            "--kid",
            "acme-1",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(verified["kid"], "acme-1");
    assert_eq!(verified["claims"]["aud"], "GOOGLE_PAY");

    // Another issuer's key: rejected, exit 1.
    let other = tempfile::tempdir().unwrap();
    let (_, other_public) = issuer(other.path());
    let out = keybound(
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            other_public.to_str().unwrap(),
            "--token",
            tok,
        ],
        None,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));
}

#[test]
fn refusals_exit_2_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = issuer(dir.path());
    let base = [
        "provisioning",
        "auth-code",
        "--key",
        key.as_str(),
        "--sub",
        "c",
        "--aud",
        "APPLE_PAY",
    ];

    let mut args = base.to_vec();
    args.extend(["--issuer-id", "I", "--ttl", "301"]);
    let out = keybound(&args, None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("300"), "{}", stderr(&out));

    let out = keybound(&base, None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--issuer-id"), "{}", stderr(&out));

    let ec = format!("file:{}", dir.path().join("ec.pem").display());
    ok(&keybound(
        &["keys", "generate", "--key", &ec, "--kty", "EC"],
        None,
    ));
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &ec,
            "--issuer-id",
            "I",
            "--sub",
            "c",
            "--aud",
            "APPLE_PAY",
        ],
        None,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("EC P-256") && stderr(&out).contains("RSA"),
        "{}",
        stderr(&out)
    );

    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--sub",
            "c",
            "--aud",
            "PAYPAL",
        ],
        None,
    );
    assert_eq!(code(&out), 2);
}

#[test]
fn batch_keeps_input_order_and_exits_1_on_failed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = issuer(dir.path());
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!("{{\"sub\":\"card-{i}\",\"aud\":\"APPLE_PAY\"}}\n"));
    }
    let all_good = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--batch",
            "-",
            "--concurrency",
            "3",
        ],
        Some(input.as_bytes()),
    );
    let lines: Vec<Value> = ok(&all_good)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["sub"], format!("card-{i}"));
        assert_eq!(
            jsonwebtoken_claims(&public, l["jwt"].as_str().unwrap(), "APPLE_PAY")["sub"],
            format!("card-{i}")
        );
    }
    let summary = stderr(&all_good);
    assert!(
        summary.contains("50 lines: 50 signed, 0 errors"),
        "{summary}"
    );
    assert!(
        !summary.contains('\r'),
        "no progress bar when stderr is not a terminal: {summary:?}"
    );

    // From a file, with bad lines: each gets its error line in place; exit 1.
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"sub\":\"a\",\"aud\":\"APPLE_PAY\"}\n{\"sub\":\"b\",\"aud\":\"NOPE\"}\n{oops\n{\"sub\":\"d\",\"aud\":\"SAMSUNG_PAY\",\"ttl\":999}\n{\"sub\":\"e\",\"aud\":\"GOOGLE_PAY\",\"token_id\":true}\n",
    )
    .unwrap();
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--batch",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let subs: Vec<Value> = lines.iter().map(|l| l["sub"].clone()).collect();
    assert_eq!(
        subs,
        [
            Value::from("a"),
            "b".into(),
            Value::Null,
            "d".into(),
            "e".into()
        ]
    );
    let kinds: Vec<bool> = lines.iter().map(|l| l.get("jwt").is_some()).collect();
    assert_eq!(kinds, [true, false, false, false, true]);
    assert!(
        stderr(&out).contains("5 lines: 2 signed, 3 errors"),
        "{}",
        stderr(&out)
    );

    // Missing input file: usage error.
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--batch",
            "/nonexistent/in.jsonl",
        ],
        None,
    );
    assert_eq!(code(&out), 2);
}

const CARD: &str = r#"{"issuerCardRefId":"ref-77","fpan":"4111111111111111","exp":"1230","cardHolderName":"JOHN SMITH"}"#;

/// The Thales test private key, in a 0600 copy (git does not keep modes).
fn thales_key(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let dst = dir.join("thales.key.pem");
    std::fs::copy(fixture("thales_test.key.pem"), &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!("file:{}", dst.display())
}

#[test]
fn encrypt_card_and_push() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = issuer(dir.path());
    let cert = fixture("thales_test.cert.pem");
    let cert = cert.to_str().unwrap();
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--format",
            "jwe",
            "--pubkey",
            cert,
            "--issuer-id",
            "ISSUER0001",
            "--product-id",
            "P1",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    let jwe = ok(&out).trim().to_owned();
    assert_eq!(jwe.split('.').count(), 5);
    assert!(!stderr(&out).contains("4111"));
    let header: Value =
        serde_json::from_slice(&base64_url(jwe.split('.').next().unwrap())).unwrap();
    assert_eq!(header["x-gto-issuerid"], "ISSUER0001");
    assert_eq!(header["x-gto-productid"], "P1");
    let plain = ok(&keybound(
        &["jwe", "decrypt", "--key", &thales_key(dir.path())],
        Some(jwe.as_bytes()),
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&plain).unwrap(),
        serde_json::from_str::<Value>(CARD).unwrap()
    );

    // --sub must match the card.
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--format",
            "jwe",
            "--pubkey",
            cert,
            "--issuer-id",
            "I",
            "--card",
            "-",
            "--sub",
            "ref-78",
        ],
        Some(CARD.as_bytes()),
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("issuerCardRefId"), "{}", stderr(&out));
    // A card-data error names the field, never the value.
    let bad = CARD.replace("JOHN SMITH", "JOHN JACOB JINGLEHEIMER SCHMIDT");
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--format",
            "jwe",
            "--pubkey",
            cert,
            "--issuer-id",
            "I",
            "--card",
            "-",
        ],
        Some(bad.as_bytes()),
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cardHolderName") && !stderr(&out).contains("JINGLE"),
        "{}",
        stderr(&out)
    );

    // push: both together, same card.
    let out = keybound(
        &[
            "provisioning",
            "push",
            "--format",
            "jwe",
            "--key",
            &key,
            "--pubkey",
            cert,
            "--issuer-id",
            "ISSUER0001",
            "--aud",
            "SAMSUNG_PAY",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    let both: Value = serde_json::from_str(&ok(&out)).unwrap();
    let claims = jsonwebtoken_claims(
        &public,
        both["authorizationCode"].as_str().unwrap(),
        "SAMSUNG_PAY",
    );
    assert_eq!(claims["sub"], "ref-77");
    let plain = ok(&keybound(
        &["jwe", "decrypt", "--key", &thales_key(dir.path())],
        Some(both["enrollmentData"].as_str().unwrap().as_bytes()),
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&plain).unwrap()["issuerCardRefId"],
        "ref-77"
    );
}

#[test]
fn settings_come_from_the_provisioning_section() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = issuer(dir.path());
    let config = dir.path().join("keybound.toml");
    std::fs::write(
        &config,
        format!("[provisioning]\nkey = \"{key}\"\nissuer_id = \"CONFIGURED01\"\nkid = \"cfg-kid\"\nttl = 60\n"),
    )
    .unwrap();
    let out = keybound(
        &[
            "--config",
            config.to_str().unwrap(),
            "provisioning",
            "auth-code",
            "--sub",
            "c",
            "--aud",
            "APPLE_PAY",
        ],
        None,
    );
    let jwt = ok(&out).trim().to_owned();
    let claims = jsonwebtoken_claims(&public, &jwt, "APPLE_PAY");
    assert_eq!(claims["iss"], "CONFIGURED01");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
    let header: Value =
        serde_json::from_slice(&base64_url(jwt.split('.').next().unwrap())).unwrap();
    assert_eq!(header["kid"], "cfg-kid");
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

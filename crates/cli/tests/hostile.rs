//! The hostile-token corpus through the binary: `keybound jwt verify` and `keybound jwe decrypt` exit 1 for
//! every hostile row, print nothing on stdout, and one line on stderr; they exit 0 for the `valid-*` rows
//! (positive controls: the RSA and EC victims' tokens, the JWEs to the victim key) and print what they hold.

mod common;

use common::keybound;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (name, expected kind, token) rows of a corpus file, plus a 1 MiB token.
fn rows(file: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/hostile").join(file)).unwrap();
    let mut rows: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let name = it.next().unwrap().to_owned();
            let kind = it.next().unwrap().to_owned();
            (name, kind, it.next().unwrap_or("").to_owned())
        })
        .collect();
    rows.push((
        "oversize-1MiB".into(),
        "too-large".into(),
        "A".repeat(1 << 20),
    ));
    rows
}

/// The header `alg` of a token, when it has a readable one.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next()?)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

fn assert_accepted(what: &str, name: &str, out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} {name}: a valid token was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    keybound(args, Some(stdin))
}

fn assert_rejected(what: &str, name: &str, out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{what} {name}: printed output for a rejected token"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1,
        "{what} {name}: one line on stderr"
    );
}

#[test]
fn jwt_verify_exits_1_for_every_hostile_token() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("victims.jwks");
    let pem = |n: &str| {
        key_provider::PublicKey::from_pem(
            &std::fs::read_to_string(repo().join("tests/vectors").join(n)).unwrap(),
        )
        .unwrap()
    };
    let mut rsa = jose_core::Jwk::from_public_key(&pem("rfc7515_a2.pub.pem"));
    rsa.kid = Some("rsa-victim".into());
    let mut ec = jose_core::Jwk::from_public_key(&pem("hostile_p256.pub.pem"));
    ec.kid = Some("ec-victim".into());
    std::fs::write(
        &jwks,
        serde_json::to_string(&jose_core::Jwks {
            keys: vec![rsa, ec],
        })
        .unwrap(),
    )
    .unwrap();
    let jwks = jwks.to_str().unwrap();
    let rsa_pem = repo().join("tests/vectors/rfc7515_a2.pub.pem");
    let ec_pem = repo().join("tests/vectors/hostile_p256.pub.pem");
    let rows = rows("jws.tsv");
    assert_eq!(rows.len(), 64 + 1, "jws.tsv rows (+ the 1 MiB token)");
    let mut accepted = 0;
    for (name, kind, token) in rows {
        // The PEM of the victim the token's algorithm names.
        let pem = if header_alg(&token).is_some_and(|a| a.starts_with("ES")) {
            &ec_pem
        } else {
            &rsa_pem
        };
        let pem = pem.to_str().unwrap();
        let jwks_run = run(
            &[
                "jwt", "verify", "--pubkey", jwks, "--token", "-", "--leeway", "0",
            ],
            token.as_bytes(),
        );
        let pem_run = run(
            &[
                "jwt", "verify", "--pubkey", pem, "--token", "-", "--leeway", "0",
            ],
            token.as_bytes(),
        );
        if kind == "valid" {
            for (what, out) in [
                ("jwt verify (JWKS)", &jwks_run),
                ("jwt verify (PEM)", &pem_run),
            ] {
                let stdout = assert_accepted(what, &name, out);
                assert!(stdout.contains("hostile-corpus"), "{what} {name}: {stdout}");
            }
            accepted += 1;
            continue;
        }
        assert_rejected("jwt verify (JWKS)", &name, &jwks_run);
        if name.starts_with("kid-") {
            // Genuinely signed by the victim key: with a single PEM key the kid is not consulted (nothing is
            // looked up by it), so only the JWKS case, where the kid selects, must reject.
            continue;
        }
        assert_rejected("jwt verify (PEM)", &name, &pem_run);
    }
    assert_eq!(accepted, 2);
}

#[test]
fn jwe_decrypt_exits_1_for_every_hostile_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a1.pem");
    std::fs::copy(repo().join("tests/vectors/rfc7516_a1.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = format!("file:{}", key.display());
    let rows = rows("jwe.tsv");
    assert_eq!(rows.len(), 32 + 1, "jwe.tsv rows (+ the 1 MiB token)");
    let mut accepted = 0;
    for (name, kind, token) in rows {
        let out = run(&["jwe", "decrypt", "--key", &key], token.as_bytes());
        if kind == "valid" {
            assert_eq!(
                assert_accepted("jwe decrypt", &name, &out),
                r#"{"data":"x"}"#
            );
            accepted += 1;
        } else {
            assert_rejected("jwe decrypt", &name, &out);
        }
    }
    assert_eq!(accepted, 2);
}

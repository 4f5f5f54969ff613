//! The hostile-token corpus through the binary: `keybound jwt verify` and `keybound jwe decrypt` exit 1 for
//! every row, print nothing on stdout, and one line on stderr.

mod common;

use common::keybound;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rows(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/hostile").join(file)).unwrap();
    let mut rows: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut it = l.splitn(3, '\t');
            let name = it.next().unwrap().to_owned();
            let _kind = it.next();
            (name, it.next().unwrap_or("").to_owned())
        })
        .collect();
    rows.push(("oversize-1MiB".into(), "A".repeat(1 << 20)));
    rows
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
    for (name, token) in rows("jws.tsv") {
        assert_rejected(
            "jwt verify (JWKS)",
            &name,
            &run(
                &[
                    "jwt", "verify", "--pubkey", jwks, "--token", "-", "--leeway", "0",
                ],
                token.as_bytes(),
            ),
        );
        if name.starts_with("kid-") {
            // Genuinely signed by the victim key: with a single PEM key the kid is not consulted (nothing is
            // looked up by it), so only the JWKS case, where the kid selects, must reject.
            continue;
        }
        assert_rejected(
            "jwt verify (PEM)",
            &name,
            &run(
                &[
                    "jwt",
                    "verify",
                    "--pubkey",
                    rsa_pem.to_str().unwrap(),
                    "--token",
                    "-",
                    "--leeway",
                    "0",
                ],
                token.as_bytes(),
            ),
        );
    }
}

#[test]
fn jwe_decrypt_exits_1_for_every_hostile_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a1.pem");
    std::fs::copy(repo().join("tests/vectors/rfc7516_a1.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = format!("file:{}", key.display());
    for (name, token) in rows("jwe.tsv") {
        assert_rejected(
            "jwe decrypt",
            &name,
            &run(&["jwe", "decrypt", "--key", &key], token.as_bytes()),
        );
    }
}

//! `keybound jwe encrypt`: which key `--pubkey` supplies and what the JWE header says. `--kid` is the header
//! `kid`; it selects a key only when the keys carry kids. The header is read here with base64 + serde_json,
//! not with keybound's own decoder, and every JWE is decrypted by `keybound jwe decrypt` with the private key
//! it was meant for (and not with the other one).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{code, keybound, ok, stderr};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

struct Fixture {
    dir: tempfile::TempDir,
    /// `file:` references of two RSA keys.
    keys: [String; 2],
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = ["one.pem", "two.pem"].map(|name| {
        let key = format!("file:{}", dir.path().join(name).display());
        ok(&keybound(&["keys", "generate", "--key", &key], None));
        key
    });
    Fixture { dir, keys }
}

impl Fixture {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pem(&self, i: usize) -> String {
        ok(&keybound(&["keys", "public", "--key", &self.keys[i]], None))
    }

    /// Key `i`'s public JWK with `members` set (a `null` member is removed).
    fn jwk(&self, i: usize, members: &Value) -> Value {
        let mut jwk: Value = serde_json::from_str(&ok(&keybound(
            &["keys", "public", "--key", &self.keys[i], "--format", "jwk"],
            None,
        )))
        .unwrap();
        for (k, v) in members.as_object().unwrap() {
            if v.is_null() {
                jwk.as_object_mut().unwrap().remove(k);
            } else {
                jwk[k] = v.clone();
            }
        }
        jwk
    }
}

fn encrypt(pubkey: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "jwe",
        "encrypt",
        "--pubkey",
        pubkey.to_str().unwrap(),
        "--alg",
        "RSA-OAEP-256",
        "--enc",
        "A256GCM",
    ];
    args.extend_from_slice(extra);
    keybound(&args, Some(b"the payload"))
}

/// The protected header, decoded independently of keybound.
fn header(jwe: &str) -> Value {
    let first = jwe.trim().split('.').next().unwrap();
    serde_json::from_slice(&B64.decode(first).unwrap()).unwrap()
}

/// Which of the fixture's keys decrypts `jwe` (exactly one must).
fn recipient(f: &Fixture, jwe: &str) -> usize {
    let opened: Vec<usize> = (0..2)
        .filter(|&i| {
            let out = keybound(
                &["jwe", "decrypt", "--key", &f.keys[i]],
                Some(jwe.as_bytes()),
            );
            if code(&out) == 0 {
                assert_eq!(out.stdout, b"the payload");
                true
            } else {
                assert_eq!(code(&out), 1, "{}", stderr(&out));
                false
            }
        })
        .collect();
    assert_eq!(opened.len(), 1, "decrypted by keys {opened:?}");
    opened[0]
}

#[test]
fn kid_is_the_header_kid_for_keys_without_kids() {
    let f = fixture();
    let pem = f.write("one.pub.pem", &f.pem(0));
    let jwk = f.write("one.jwk", &f.jwk(0, &json!({"kid": null})).to_string());
    for pubkey in [&pem, &jwk] {
        let jwe = ok(&encrypt(pubkey, &["--kid", "kx"]));
        let h = header(&jwe);
        assert_eq!(h["kid"], "kx", "{}", pubkey.display());
        assert_eq!(
            (&h["alg"], &h["enc"]),
            (&json!("RSA-OAEP-256"), &json!("A256GCM"))
        );
        assert_eq!(recipient(&f, &jwe), 0);
        // Without --kid: no kid at all (the key has none to offer).
        let jwe = ok(&encrypt(pubkey, &[]));
        assert!(header(&jwe).get("kid").is_none(), "{}", pubkey.display());
    }
}

#[test]
fn kid_selects_among_keys_that_carry_kids() {
    let f = fixture();
    let jwks = f.write(
        "both.jwks",
        &json!({"keys": [f.jwk(0, &json!({"kid": "a"})), f.jwk(1, &json!({"kid": "b"}))]})
            .to_string(),
    );
    for (kid, index) in [("a", 0), ("b", 1)] {
        let jwe = ok(&encrypt(&jwks, &["--kid", kid]));
        assert_eq!(header(&jwe)["kid"], kid);
        assert_eq!(recipient(&f, &jwe), index, "--kid {kid}");
    }
    let out = encrypt(&jwks, &["--kid", "zz"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("kid"), "{}", stderr(&out));
    let out = encrypt(&jwks, &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("several"), "{}", stderr(&out));

    // A single JWK with a kid: its kid is the default header kid, and another --kid selects nothing.
    let single = f.write("one.jwk", &f.jwk(1, &json!({"kid": "b"})).to_string());
    let jwe = ok(&encrypt(&single, &[]));
    assert_eq!(header(&jwe)["kid"], "b");
    assert_eq!(recipient(&f, &jwe), 1);
    assert_eq!(code(&encrypt(&single, &["--kid", "other"])), 2);
}

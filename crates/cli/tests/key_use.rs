//! JWK `use` and `key_ops` (RFC 7517 §4.2–4.3) through the binary, both ways: `jwe encrypt` never encrypts
//! to a key marked for signatures, `jwt verify` never verifies with a key marked for encryption, and the
//! provisioning commands hold the Thales key and the issuer key to the same rule. JWE headers are read here
//! with base64 + serde_json; each JWE is decrypted with the private key it was meant for.

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

    /// Key `i`'s public JWK with `members` added.
    fn jwk(&self, i: usize, members: &Value) -> Value {
        let mut jwk: Value = serde_json::from_str(&ok(&keybound(
            &["keys", "public", "--key", &self.keys[i], "--format", "jwk"],
            None,
        )))
        .unwrap();
        for (k, v) in members.as_object().unwrap() {
            jwk[k] = v.clone();
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
        "RSA-OAEP",
        "--enc",
        "A256GCM",
    ];
    args.extend_from_slice(extra);
    keybound(&args, Some(b"the payload"))
}

#[test]
fn jwe_encrypt_skips_and_refuses_keys_marked_for_signatures() {
    let f = fixture();
    let mixed = f.write(
        "mixed.jwks",
        &json!({"keys": [
            f.jwk(0, &json!({"kid": "s", "use": "sig"})),
            f.jwk(1, &json!({"kid": "e", "use": "enc"})),
        ]})
        .to_string(),
    );
    // Two RSA keys, one of them for encryption: that one is chosen without --kid.
    let jwe = ok(&encrypt(&mixed, &[]));
    let header: Value =
        serde_json::from_slice(&B64.decode(jwe.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], "e");
    let opened = keybound(
        &["jwe", "decrypt", "--key", &f.keys[1]],
        Some(jwe.as_bytes()),
    );
    assert_eq!(ok(&opened), "the payload");
    assert_eq!(
        code(&keybound(
            &["jwe", "decrypt", "--key", &f.keys[0]],
            Some(jwe.as_bytes())
        )),
        1
    );
    // Naming the signature key is refused, saying why.
    let out = encrypt(&mixed, &["--kid", "s"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not for encryption") && stderr(&out).contains("\"sig\""),
        "{}",
        stderr(&out)
    );
    // A lone key marked for signatures, by `use` or by `key_ops`, is refused too.
    for members in [json!({"use": "sig"}), json!({"key_ops": ["verify"]})] {
        let jwk = f.write("sig.jwk", &f.jwk(0, &members).to_string());
        let out = encrypt(&jwk, &[]);
        assert_eq!(code(&out), 2, "{members}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr(&out).contains("not for encryption"),
            "{}",
            stderr(&out)
        );
    }
    // `key_ops` with wrapKey (or encrypt) is fine.
    let jwk = f.write(
        "wrap.jwk",
        &f.jwk(0, &json!({"key_ops": ["wrapKey"]})).to_string(),
    );
    ok(&encrypt(&jwk, &[]));
    // `use` and `key_ops` that contradict each other: refused when loaded.
    let jwk = f.write(
        "bad.jwk",
        &f.jwk(0, &json!({"use": "sig", "key_ops": ["encrypt"]}))
            .to_string(),
    );
    let out = encrypt(&jwk, &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("contradict"), "{}", stderr(&out));
}

#[test]
fn jwt_verify_refuses_a_key_marked_for_encryption() {
    let f = fixture();
    let claims = f.write("claims.json", r#"{"sub":"s"}"#);
    let token = ok(&keybound(
        &[
            "jwt",
            "sign",
            "--key",
            &f.keys[0],
            "--alg",
            "RS256",
            "--kid",
            "k",
            "--claims",
            claims.to_str().unwrap(),
            "--iat",
            "--exp-in",
            "300",
        ],
        None,
    ));
    let verify = |jwk: Value| {
        let jwks = f.write("keys.jwks", &json!({ "keys": [jwk] }).to_string());
        keybound(
            &[
                "jwt",
                "verify",
                "--pubkey",
                jwks.to_str().unwrap(),
                "--token",
                "-",
            ],
            Some(token.as_bytes()),
        )
    };
    for members in [
        json!({"kid": "k", "use": "enc"}),
        json!({"kid": "k", "key_ops": ["encrypt"]}),
    ] {
        let out = verify(f.jwk(0, &members));
        assert_eq!(code(&out), 1, "{members}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not for verifying signatures"),
            "{}",
            stderr(&out)
        );
    }
    for members in [
        json!({"kid": "k"}),
        json!({"kid": "k", "use": "sig"}),
        json!({"kid": "k", "key_ops": ["verify"]}),
    ] {
        let out = verify(f.jwk(0, &members));
        assert_eq!(code(&out), 0, "{members}: {}", stderr(&out));
    }
}

#[test]
fn provisioning_keys_are_held_to_their_use() {
    let f = fixture();
    let code_jwt = ok(&keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &f.keys[0],
            "--issuer-id",
            "ISSUER0001",
            "--sub",
            "card-ref-1",
            "--aud",
            "GOOGLE_PAY",
        ],
        None,
    ));
    let verify = |members: Value| {
        let jwk = f.write("issuer.jwk", &f.jwk(0, &members).to_string());
        keybound(
            &[
                "provisioning",
                "verify-auth-code",
                "--pubkey",
                jwk.to_str().unwrap(),
                "--token",
                "-",
            ],
            Some(code_jwt.trim().as_bytes()),
        )
    };
    let out = verify(json!({"use": "enc"}));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not for verifying signatures"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&verify(json!({"use": "sig"}))), 0);
    assert_eq!(code(&verify(json!({}))), 0);

    let card = f.write(
        "card.json",
        r#"{"issuerCardRefId":"card-ref-1","fpan":"5204731600014792","exp":"1229","cardHolderName":"JANE DOE"}"#,
    );
    let encrypt = |members: Value| {
        let jwk = f.write("thales.jwk", &f.jwk(1, &members).to_string());
        keybound(
            &[
                "provisioning",
                "encrypt-card",
                "--format",
                "jwe",
                "--pubkey",
                jwk.to_str().unwrap(),
                "--issuer-id",
                "ISSUER0001",
                "--card",
                card.to_str().unwrap(),
            ],
            None,
        )
    };
    let out = encrypt(json!({"use": "sig"}));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("not for encryption"),
        "{}",
        stderr(&out)
    );
    let jwe = ok(&encrypt(json!({"use": "enc"})));
    let opened = keybound(
        &["jwe", "decrypt", "--key", &f.keys[1]],
        Some(jwe.trim().as_bytes()),
    );
    let fields: Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!(fields["issuerCardRefId"], "card-ref-1");
}

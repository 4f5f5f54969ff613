//! Issue 14, items 1–3: `keys csr`, `keys certificate [--store]`, `keys attach-cert` and
//! `keys public --format cert|jwk` through the binary, checked by OpenSSL and (with `cargo xtask
//! softhsm-test -p keybound-cli`) `pkcs11-tool`: requests and certificates verify, the key inside is the
//! backend's, a stored certificate is readable by another tool, a certificate of another key is refused.

#![cfg(feature = "file")]

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The whole flow for one key reference: CSR, certificate stored with the key, read back three ways,
/// a second store refused without --force, another key's certificate refused.
fn onboarding_flow(key: &str, other: &str, dir: &Path, name: &str) {
    let public_pem = common::ok(&common::keybound(&["keys", "public", "--key", key], None));

    let csr = common::ok(&common::keybound(
        &[
            "keys",
            "csr",
            "--key",
            key,
            "--subject",
            "CN=acmebank,O=Acme Bank,C=FR",
            "--san",
            "DNS:issuer.acme.example",
            "--alg",
            "PS256",
        ],
        None,
    ));
    assert!(openssl(&["req", "-verify", "-noout"], Some(&csr)).contains("verify OK"));
    assert_eq!(
        openssl(&["req", "-pubkey", "-noout"], Some(&csr)),
        public_pem
    );

    let out = dir.join(format!("{name}.crt"));
    let printed = common::ok(&common::keybound(
        &[
            "keys",
            "certificate",
            "--key",
            key,
            "--subject",
            "CN=acmebank,C=FR",
            "--days",
            "730",
            "--usage",
            "sign,decrypt",
            "--store",
            "--out",
            s(&out),
        ],
        None,
    ));
    assert_eq!(printed.trim(), format!("wrote {}", out.display()));
    let pem = std::fs::read_to_string(&out).unwrap();
    openssl(&["verify", "-CAfile", s(&out), s(&out)], None);
    assert_eq!(
        openssl(&["x509", "-pubkey", "-noout"], Some(&pem)),
        public_pem
    );
    let text = openssl(&["x509", "-noout", "-text"], Some(&pem));
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );

    // Kept with the key: `keys public --format cert` prints it; the JWK carries it.
    let stored = common::ok(&common::keybound(
        &["keys", "public", "--key", key, "--format", "cert"],
        None,
    ));
    assert_eq!(stored, pem);
    let jwk: serde_json::Value = serde_json::from_str(&common::ok(&common::keybound(
        &["keys", "public", "--key", key, "--format", "jwk"],
        None,
    )))
    .unwrap();
    let der = pem::parse(&pem).unwrap().into_contents();
    assert_eq!(
        jwk["x5c"][0],
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    assert_eq!(
        jwk["x5t#S256"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    );
    let jwks: serde_json::Value = serde_json::from_str(&common::ok(&common::keybound(
        &["keys", "public", "--key", key, "--format", "jwks"],
        None,
    )))
    .unwrap();
    assert_eq!(jwks["keys"][0]["x5t#S256"], jwk["x5t#S256"]);

    // A second certificate is refused without --force, replaces the first with it.
    let again = common::keybound(
        &[
            "keys",
            "certificate",
            "--key",
            key,
            "--subject",
            "CN=second",
            "--store",
        ],
        None,
    );
    assert_eq!(common::code(&again), 2, "{}", common::stderr(&again));
    assert!(
        common::stderr(&again).contains("--force"),
        "{}",
        common::stderr(&again)
    );
    common::ok(&common::keybound(
        &[
            "keys",
            "attach-cert",
            "--key",
            key,
            "--cert",
            s(&out),
            "--force",
        ],
        None,
    ));

    // A certificate of another key is refused, and what was kept stays.
    let foreign = dir.join(format!("{name}-foreign.crt"));
    common::ok(&common::keybound(
        &[
            "keys",
            "certificate",
            "--key",
            other,
            "--subject",
            "CN=other",
            "--out",
            s(&foreign),
        ],
        None,
    ));
    let refused = common::keybound(
        &[
            "keys",
            "attach-cert",
            "--key",
            key,
            "--cert",
            s(&foreign),
            "--force",
        ],
        None,
    );
    assert_eq!(common::code(&refused), 2);
    assert!(
        common::stderr(&refused).contains("is not the public key of"),
        "{}",
        common::stderr(&refused)
    );
    assert_eq!(
        common::ok(&common::keybound(
            &["keys", "public", "--key", key, "--format", "cert"],
            None,
        )),
        pem
    );
}

#[test]
fn file_keys_get_csrs_and_certificates_kept_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("issuer.pem");
    let key = format!("file:{}", path.display());
    let other = format!("file:{}", dir.path().join("other.pem").display());
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &key],
        None,
    ));
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &other, "--kty", "EC"],
        None,
    ));
    onboarding_flow(&key, &other, dir.path(), "file");
    assert!(dir.path().join("issuer.pem.crt").is_file());
}

#[test]
fn env_keys_sign_csrs_but_keep_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    common::ok(&common::keybound(
        &[
            "keys",
            "generate",
            "--key",
            &format!("file:{}", path.display()),
            "--kty",
            "EC",
            "--crv",
            "P-384",
        ],
        None,
    ));
    let pem = std::fs::read_to_string(&path).unwrap();
    let env = [("KB_CSR_KEY", pem.as_str())];
    let csr = common::ok(&common::keybound_env(
        &[
            "keys",
            "csr",
            "--key",
            "env:KB_CSR_KEY",
            "--subject",
            "CN=env",
        ],
        None,
        &env,
    ));
    let text = openssl(&["req", "-verify", "-noout", "-text"], Some(&csr));
    assert!(text.contains("ecdsa-with-SHA384"), "{text}");
    let stored = common::keybound_env(
        &[
            "keys",
            "certificate",
            "--key",
            "env:KB_CSR_KEY",
            "--subject",
            "CN=env",
            "--store",
        ],
        None,
        &env,
    );
    assert_eq!(common::code(&stored), 2);
    assert!(
        common::stderr(&stored).contains("env: key has no place"),
        "{}",
        common::stderr(&stored)
    );
}

#[cfg(feature = "pkcs11")]
#[test]
fn token_keys_get_certificates_stored_in_the_token() {
    use keybound_test_support::pkcs11::TestToken;
    let Some(token) = TestToken::fresh("cli: certificates in SoftHSM", "certificates") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut uri = token.uri("issuer");
    uri.id = Some(vec![0xc5, 0x01]);
    let key = uri.to_string();
    let other = token.key_ref("other");
    common::ok(&common::keybound(
        &[
            "keys",
            "generate",
            "--key",
            &key,
            "--usage",
            "sign,decrypt",
            "--bits",
            "3072",
        ],
        None,
    ));
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &other, "--kty", "EC"],
        None,
    ));
    onboarding_flow(&key, &other, dir.path(), "hsm");

    // Without --usage, the certificate says what the token records: this key was made sign,decrypt.
    let unasked = common::ok(&common::keybound(
        &[
            "keys",
            "certificate",
            "--key",
            &key,
            "--subject",
            "CN=unasked",
        ],
        None,
    ));
    let text = openssl(&["x509", "-noout", "-text"], Some(&unasked));
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );

    // `keys list` sees the key's certificate (one object, for the kept certificate: --force replaced).
    let mut whole_token = token.uri("issuer");
    whole_token.object = None;
    let listed: serde_json::Value = serde_json::from_str(&common::ok(&common::keybound(
        &[
            "keys",
            "list",
            "--key",
            &whole_token.to_string(),
            "--format",
            "json",
        ],
        None,
    )))
    .unwrap();
    let issuer = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "issuer")
        .unwrap();
    assert_eq!(
        issuer["certificates"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // Another tool reads the certificate object: the key's id and label, the same DER.
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
    let tool = |args: &[&str]| {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&token.module)
            .args([
                "--token-label",
                &token.label,
                "--login",
                "--pin",
                pin.trim_end(),
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool (Debian package opensc) must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = tool(&["--list-objects", "--type", "cert"]);
    assert!(listed.contains("label:      issuer"), "{listed}");
    assert!(listed.contains("ID:         c501"), "{listed}");
    assert_eq!(listed.matches("Certificate Object").count(), 1, "{listed}");
    let read = dir.path().join("read.der");
    tool(&[
        "--read-object",
        "--type",
        "cert",
        "--id",
        "c501",
        "-o",
        s(&read),
    ]);
    let pem = std::fs::read_to_string(dir.path().join("hsm.crt")).unwrap();
    assert_eq!(
        std::fs::read(&read).unwrap(),
        pem::parse(&pem).unwrap().into_contents()
    );
}

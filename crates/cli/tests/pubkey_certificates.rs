//! Every `--pubkey` takes an X.509 certificate, PEM or DER, as made by `openssl req -x509` (RSA-2048 and EC
//! P-256 keys from `openssl genpkey`): `jwt verify` accepts tokens signed with the certificate's key and
//! refuses tokens signed with another; `jwe encrypt` encrypts to the certificate's key (the JWE decrypts with
//! that private key and with no other). A PEM chain is used by its leaf when given leaf first, and refused
//! in any other order; a private key given as `--pubkey` is refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{code, keybound, ok, stderr};
use serde_json::Value;

#[track_caller]
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private key made by openssl (mode 0600, as keybound's file backend requires) and its certificate.
struct Party {
    /// `file:…` key reference of the private key.
    key: String,
    key_path: PathBuf,
    cert_pem: PathBuf,
    cert_der: PathBuf,
}

fn party(dir: &Path, name: &str, kind: &str) -> Party {
    let key_path = dir.join(format!("{name}.key"));
    let key_s = key_path.to_str().unwrap();
    match kind {
        "rsa" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key_s,
        ]),
        "ec" => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key_s,
        ]),
        other => panic!("unknown key kind {other}"),
    }
    restrict(&key_path);
    let cert_pem = dir.join(format!("{name}.cert.pem"));
    let cert_der = dir.join(format!("{name}.cert.der"));
    openssl(&[
        "req",
        "-x509",
        "-key",
        key_s,
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-out",
        cert_pem.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-in",
        cert_pem.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        cert_der.to_str().unwrap(),
    ]);
    Party {
        key: format!("file:{}", key_path.display()),
        key_path,
        cert_pem,
        cert_der,
    }
}

fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn sign(dir: &Path, key: &str, alg: &str) -> PathBuf {
    let jwt = ok(&keybound(
        &[
            "jwt", "sign", "--key", key, "--alg", alg, "--claims", "-", "--exp-in", "300",
        ],
        Some(br#"{"sub":"cert-user"}"#),
    ));
    let path = dir.join(format!("{alg}.jwt"));
    std::fs::write(&path, jwt.trim()).unwrap();
    path
}

fn verify(pubkey: &Path, token: &Path) -> std::process::Output {
    keybound(
        &[
            "jwt",
            "verify",
            "--pubkey",
            pubkey.to_str().unwrap(),
            "--token",
            token.to_str().unwrap(),
        ],
        None,
    )
}

fn encrypt(pubkey: &Path, plaintext: &[u8]) -> std::process::Output {
    keybound(
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            pubkey.to_str().unwrap(),
            "--alg",
            "RSA-OAEP-256",
            "--enc",
            "A256GCM",
        ],
        Some(plaintext),
    )
}

fn decrypt(key: &str, jwe: &str) -> std::process::Output {
    keybound(&["jwe", "decrypt", "--key", key], Some(jwe.as_bytes()))
}

#[test]
fn jwt_verify_takes_rsa_and_ec_certificates_in_pem_and_der() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = party(dir.path(), "rsa", "rsa");
    let ec = party(dir.path(), "ec", "ec");
    let stranger = party(dir.path(), "stranger", "rsa");
    for (signer, alg) in [(&rsa, "RS256"), (&rsa, "PS256"), (&ec, "ES256")] {
        let token = sign(dir.path(), &signer.key, alg);
        for cert in [&signer.cert_pem, &signer.cert_der] {
            let out = verify(cert, &token);
            let claims: Value = serde_json::from_str(&ok(&out)).unwrap();
            assert_eq!(claims["sub"], "cert-user", "{alg} with {}", cert.display());
        }
        // Another key's certificate does not verify it: exit 1, judged and rejected.
        for cert in [&stranger.cert_pem, &stranger.cert_der] {
            let out = verify(cert, &token);
            assert_eq!(code(&out), 1, "{alg}: {}", stderr(&out));
            assert!(stderr(&out).contains("token rejected"), "{}", stderr(&out));
        }
    }
}

#[test]
fn jwe_encrypt_takes_a_certificate_and_only_its_private_key_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let recipient = party(dir.path(), "recipient", "rsa");
    let stranger = party(dir.path(), "stranger", "rsa");
    for cert in [&recipient.cert_pem, &recipient.cert_der] {
        let jwe = ok(&encrypt(cert, b"card data for the certificate holder"));
        let out = decrypt(&recipient.key, &jwe);
        assert_eq!(
            ok(&out),
            "card data for the certificate holder",
            "{}",
            cert.display()
        );
        let out = decrypt(&stranger.key, &jwe);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
    }
    // An EC certificate carries a key RSA-OAEP cannot encrypt to: a usage error that says so.
    let ec = party(dir.path(), "ec", "ec");
    let out = encrypt(&ec.cert_pem, b"x");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// A PEM chain (leaf signed by a CA): leaf first is used by its leaf; CA first is refused, so the CA's key is
/// never taken for the leaf's.
#[test]
fn a_pem_chain_is_used_by_its_leaf_and_refused_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = party(d, "ca", "rsa");
    let leaf_key = d.join("leaf.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        leaf_key.to_str().unwrap(),
    ]);
    restrict(&leaf_key);
    let csr = d.join("leaf.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        leaf_key.to_str().unwrap(),
        "-subj",
        "/CN=leaf",
        "-out",
        csr.to_str().unwrap(),
    ]);
    let leaf_pem = d.join("leaf.cert.pem");
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.cert_pem.to_str().unwrap(),
        "-CAkey",
        ca.key_path.to_str().unwrap(),
        "-set_serial",
        "2",
        "-days",
        "30",
        "-out",
        leaf_pem.to_str().unwrap(),
    ]);
    let leaf = std::fs::read_to_string(&leaf_pem).unwrap();
    let ca_pem = std::fs::read_to_string(&ca.cert_pem).unwrap();
    let chain = d.join("chain.pem");
    std::fs::write(&chain, format!("{leaf}{ca_pem}")).unwrap();
    let reversed = d.join("reversed.pem");
    std::fs::write(&reversed, format!("{ca_pem}{leaf}")).unwrap();

    let leaf_ref = format!("file:{}", leaf_key.display());
    let jwe = ok(&encrypt(&chain, b"for the leaf"));
    assert_eq!(ok(&decrypt(&leaf_ref, &jwe)), "for the leaf");
    assert_eq!(
        code(&decrypt(&ca.key, &jwe)),
        1,
        "encrypted to the CA's key"
    );
    let token = sign(d, &leaf_ref, "RS256");
    ok(&verify(&chain, &token));

    for out in [encrypt(&reversed, b"x"), verify(&reversed, &token)] {
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(stderr(&out).contains("chain order"), "{}", stderr(&out));
    }
}

#[test]
fn a_private_key_as_pubkey_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = party(dir.path(), "rsa", "rsa");
    let token = sign(dir.path(), &rsa.key, "RS256");
    for out in [encrypt(&rsa.key_path, b"x"), verify(&rsa.key_path, &token)] {
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(stderr(&out).contains("private key"), "{}", stderr(&out));
    }
}

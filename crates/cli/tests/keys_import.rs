//! `keybound keys import`: PKCS#12 files made by `openssl pkcs12 -export` (default and `-legacy`; RSA-2048
//! and P-256) go into a fresh SoftHSM token. OpenSC's `pkcs11-tool` sees the private key sensitive and not
//! extractable, with its public key and certificate under the label; a JWT signed with the imported key
//! (`keybound jwt sign --key pkcs11:…`) verifies with the P12 certificate's public key, as openssl prints it,
//! under the stock `jsonwebtoken` crate (not keybound's verifier); the JSON output carries what openssl says
//! of the certificate. A wrong password, a file without a key, a file with two keys, a truncated file and a
//! taken label exit 2 with one line and leave the token as it was (objects counted with pkcs11-tool).
//! Without SoftHSM, the `file:` target (PKCS#8 PEM, mode 0600, never over a file) runs alone.

#![cfg(feature = "file")]

mod common;

use std::path::Path;
use std::process::Command;

use common::{keybound_env, ok};
use serde_json::Value;

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// key.pem, cert.pem and `out` (a P12 with password `P12_PASSWORD`'s value) made by openssl in `dir`.
fn p12(dir: &Path, alg: &str, legacy: bool, out: &str) {
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        if alg == "rsa" { "rsa:2048" } else { "ec" },
    ];
    if alg == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend([
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "30",
        "-subj",
        "/C=FR/O=Acme Bank/CN=acme merchant/serialNumber=6b0e9bd4-5f0a-4e23",
    ]);
    openssl(dir, &args);
    let mut args = vec![
        "pkcs12",
        "-export",
        "-inkey",
        "key.pem",
        "-in",
        "cert.pem",
        "-out",
        out,
        "-passout",
        "pass:p12 pass",
    ];
    if legacy {
        args.push("-legacy");
    }
    openssl(dir, &args);
}

const PASSWORD: (&str, &str) = ("KB_TEST_P12_PASSWORD", "p12 pass");

fn import(from: &Path, key: &str, password: &str) -> std::process::Output {
    keybound_env(
        &[
            "keys",
            "import",
            "--from",
            from.to_str().unwrap(),
            "--key",
            key,
            "--password-source",
            "env:KB_TEST_P12_PASSWORD",
        ],
        None,
        &[(PASSWORD.0, password)],
    )
}

#[test]
fn a_pem_key_goes_to_a_new_key_file_only() {
    let dir = tempfile::tempdir().unwrap();
    p12(dir.path(), "ec", false, "m.p12");
    let target = dir.path().join("imported.pem");
    let key = format!("file:{}", target.display());
    let out: Value =
        serde_json::from_str(&ok(&import(&dir.path().join("m.p12"), &key, PASSWORD.1))).unwrap();
    assert_eq!(out["key"], key.as_str());
    assert_eq!(
        out["certificate"]["subject_serial_number"],
        "6b0e9bd4-5f0a-4e23"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let written = std::fs::read_to_string(&target).unwrap();
    assert!(
        written.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    // The same key as openssl's.
    let ours = openssl(dir.path(), &["pkey", "-in", "imported.pem", "-pubout"]);
    let theirs = openssl(dir.path(), &["pkey", "-in", "key.pem", "-pubout"]);
    assert_eq!(ours, theirs);
    // Never over a file; a PEM key (SEC1 here) is read as well as a P12.
    openssl(dir.path(), &["ec", "-in", "key.pem", "-out", "sec1.pem"]);
    let again = import(&dir.path().join("sec1.pem"), &key, "");
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), written);
    let other = format!("file:{}", dir.path().join("other.pem").display());
    let out: Value =
        serde_json::from_str(&ok(&import(&dir.path().join("sec1.pem"), &other, ""))).unwrap();
    assert_eq!(out["certificate"], Value::Null);
    // The password is never an argument value.
    let bad = keybound_env(
        &[
            "keys",
            "import",
            "--from",
            "m.p12",
            "--key",
            "file:x.pem",
            "--password-source",
            "p12 pass",
        ],
        None,
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[cfg(feature = "pkcs11")]
mod softhsm {
    use super::*;
    use keybound_test_support::pkcs11::TestToken;

    /// `pkcs11-tool --list-objects` of the token (logged in).
    fn listing(token: &TestToken) -> String {
        let pin = std::fs::read_to_string(&token.pin_file).unwrap();
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&token.module)
            .args(["--token-label", &token.label, "--list-objects", "--login"])
            .args(["--pin", pin.trim_end()])
            .output()
            .expect("pkcs11-tool (Debian package opensc) runs");
        assert!(
            out.status.success(),
            "pkcs11-tool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn object_count(token: &TestToken) -> usize {
        listing(token)
            .lines()
            .filter(|l| l.contains(" Object;"))
            .count()
    }

    /// The part of the listing about the object of `kind` ("Private Key", "Certificate") labelled `label`.
    fn object<'a>(listing: &'a str, kind: &str, label: &str) -> &'a str {
        listing
            .split(&format!("{kind} Object"))
            .skip(1)
            .find(|o| {
                o.lines()
                    .take_while(|l| !l.contains(" Object;"))
                    .any(|l| l.trim() == format!("label:      {label}"))
            })
            .unwrap_or_else(|| panic!("no {kind} object '{label}' in:\n{listing}"))
    }

    fn verify_with_certificate_key(dir: &Path, jwt: &str, alg: &str) {
        let pem = openssl(dir, &["x509", "-in", "cert.pem", "-pubkey", "-noout"]);
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let (key, algorithm) = if alg == "rsa" {
            (
                jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                jsonwebtoken::Algorithm::RS256,
            )
        } else {
            (
                jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
                jsonwebtoken::Algorithm::ES256,
            )
        };
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
            .unwrap_or_else(|e| {
                panic!("jsonwebtoken rejects the JWT signed by the imported key: {e}")
            })
            .claims;
        assert_eq!(claims["sub"], "imported");
    }

    #[test]
    fn openssl_p12_files_import_into_softhsm_and_sign() {
        let Some(token) = TestToken::fresh("cli keys import", "cli-p12-import") else {
            return;
        };
        for (alg, legacy) in [("rsa", false), ("rsa", true), ("ec", false), ("ec", true)] {
            let dir = tempfile::tempdir().unwrap();
            p12(dir.path(), alg, legacy, "m.p12");
            let label = format!(
                "merchant-{alg}-{}",
                if legacy { "legacy" } else { "modern" }
            );
            let reference = token.key_ref(&label);
            let run = import(&dir.path().join("m.p12"), &reference, PASSWORD.1);
            // Neither the key nor the password shows in what the command prints.
            let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            for window in body.as_bytes().chunks(24).filter(|w| w.len() == 24) {
                assert!(
                    !printed.contains(std::str::from_utf8(window).unwrap()),
                    "key material printed"
                );
            }
            assert!(!printed.contains(PASSWORD.1));
            let out: Value = serde_json::from_str(&ok(&run)).unwrap();

            // What openssl says of the certificate.
            let field = |args: &[&str], prefix: &str| {
                let mut full = vec!["x509", "-in", "cert.pem", "-noout"];
                full.extend(args);
                openssl(dir.path(), &full)
                    .trim()
                    .strip_prefix(prefix)
                    .unwrap()
                    .to_owned()
            };
            let cert = &out["certificate"];
            assert_eq!(
                cert["subject"],
                field(&["-subject", "-nameopt", "RFC2253"], "subject=")
            );
            assert_eq!(
                cert["issuer"],
                field(&["-issuer", "-nameopt", "RFC2253"], "issuer=")
            );
            assert_eq!(
                cert["serial"],
                field(&["-serial"], "serial=").to_lowercase()
            );
            assert_eq!(cert["subject_serial_number"], "6b0e9bd4-5f0a-4e23");
            assert!(cert["not_after"].as_str().unwrap().ends_with('Z'), "{cert}");
            let key = out["key"].as_str().unwrap();
            assert!(
                key.contains(&format!("object={label}")) && key.contains(";id=%"),
                "{key}"
            );
            assert!(!out["thumbprint"].as_str().unwrap().is_empty());

            // pkcs11-tool: the private key sensitive and not extractable; public key and certificate beside it.
            let listing = listing(&token);
            let private = object(&listing, "Private Key", &label);
            let access = private
                .lines()
                .find(|l| l.trim_start().starts_with("Access:"))
                .unwrap_or_else(|| panic!("no Access line:\n{private}"));
            let flags: Vec<&str> = access
                .trim_start()
                .trim_start_matches("Access:")
                .split(',')
                .map(str::trim)
                .collect();
            assert!(flags.contains(&"sensitive"), "{access}");
            assert!(!flags.contains(&"extractable"), "{access}");
            object(&listing, "Public Key", &label);
            object(&listing, "Certificate", &label);

            // A JWT signed in the token verifies with the P12 certificate's key.
            let jwt = ok(&keybound_env(
                &[
                    "jwt",
                    "sign",
                    "--key",
                    key,
                    "--alg",
                    if alg == "rsa" { "RS256" } else { "ES256" },
                    "--claims",
                    "-",
                ],
                Some(br#"{"sub":"imported"}"#),
                &[],
            ));
            verify_with_certificate_key(dir.path(), jwt.trim(), alg);
        }
    }

    #[test]
    fn refused_files_leave_the_token_as_it_was() {
        let Some(token) = TestToken::fresh("cli keys import refusals", "cli-refusals") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        p12(dir.path(), "ec", false, "m.p12");
        let good = dir.path().join("m.p12");
        ok(&import(&good, &token.key_ref("taken"), PASSWORD.1));

        openssl(
            dir.path(),
            &[
                "pkcs12",
                "-export",
                "-nokeys",
                "-in",
                "cert.pem",
                "-out",
                "nokey.p12",
                "-passout",
                "pass:p12 pass",
            ],
        );
        let key_der = openssl_der(
            dir.path(),
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER",
            ],
        );
        let cert_der = openssl_der(dir.path(), &["x509", "-in", "cert.pem", "-outform", "DER"]);
        let two = keybound_pki::pkcs12::write_pkcs12_keys(
            &[&key_der, &key_der],
            &[&cert_der],
            PASSWORD.1,
        )
        .unwrap();
        std::fs::write(dir.path().join("two.p12"), two).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(dir.path().join("cut.p12"), &bytes[..bytes.len() - 40]).unwrap();

        let before = object_count(&token);
        assert_eq!(before, 3);
        for (what, file, label, password, expect) in [
            (
                "wrong password",
                "m.p12",
                "new",
                "Tr0ub4dor-guess",
                "wrong password",
            ),
            ("no key", "nokey.p12", "new", PASSWORD.1, "no private key"),
            ("two keys", "two.p12", "new", PASSWORD.1, "2 private keys"),
            ("truncated", "cut.p12", "new", PASSWORD.1, "damaged"),
            (
                "taken label",
                "m.p12",
                "taken",
                PASSWORD.1,
                "already exists",
            ),
        ] {
            let out = import(&dir.path().join(file), &token.key_ref(label), password);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
            assert!(
                !stderr.contains("Tr0ub4dor") && !stderr.contains(PASSWORD.1),
                "{what}: a password in the error: {stderr}"
            );
            assert!(
                stderr.starts_with("keybound: ") && stderr.contains(expect),
                "{what}: {stderr}"
            );
            assert_eq!(object_count(&token), before, "{what}: no object created");
        }
    }

    fn openssl_der(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

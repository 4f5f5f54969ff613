//! Thales classic push card data as CMS EnvelopedData (issue 15, items 1 and 2), checked against OpenSSL:
//! `keybound provisioning encrypt-card` output (RSA-OAEP-SHA256 and PKCS#1 v1.5 key transport, 2048- and
//! 4096-bit keys, base64/hex/DER) opened by `openssl cms -decrypt` to the exact card JSON; `push` pairs the
//! code's `sub` with the card; `openssl cms -encrypt` output (OAEP-SHA256, DER/PEM/hex, BER from `-stream`,
//! AES-128) opened by `keybound provisioning decrypt` through a file key; tampered data, another key,
//! truncated DER, a KEKRecipientInfo, PKCS#1 v1.5 transport and 3DES content refused with exit 1 and nothing on
//! stdout. With SoftHSM: SHA-1 OAEP unwrapped in the token, SHA-256 OAEP "not supported by this token".

#![cfg(feature = "file")]

mod common;

use common::{code, keybound, ok, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;

const CARD: &str = r#"{"issuerCardRefId":"ref-77","fpan":"4111111111111111","exp":"1230","cardHolderName":"JOHN SMITH"}"#;

/// Runs openssl (required, as `.ci/run` checks).
fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        // openssl may exit before reading stdin; its exit status is what counts.
        let _ = pipe.write_all(input);
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[track_caller]
fn openssl_ok(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let out = openssl(args, stdin);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key (PKCS#8 PEM, mode 0600, as a `file:` reference) and a self-signed certificate for it.
struct Recipient {
    key_path: PathBuf,
    cert: PathBuf,
}

impl Recipient {
    fn new(dir: &Path, name: &str, bits: u32) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let key_path = dir.join(format!("{name}.key.pem"));
        let cert = dir.join(format!("{name}.cert.pem"));
        openssl_ok(
            &[
                "req",
                "-x509",
                "-newkey",
                &format!("rsa:{bits}"),
                "-nodes",
                "-keyout",
                key_path.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-subj",
                &format!("/CN=TSH Issuer Gateway test {name}/O=keybound tests"),
                "-days",
                "2",
            ],
            None,
        );
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self { key_path, cert }
    }

    fn key_ref(&self) -> String {
        format!("file:{}", self.key_path.display())
    }

    fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    /// `openssl cms -decrypt` of DER with this recipient's certificate and key.
    fn openssl_decrypt(&self, dir: &Path, der: &[u8]) -> Vec<u8> {
        let input = dir.join("openssl-in.der");
        std::fs::write(&input, der).unwrap();
        openssl_ok(
            &[
                "cms",
                "-decrypt",
                "-inform",
                "DER",
                "-in",
                input.to_str().unwrap(),
                "-recip",
                self.cert(),
                "-inkey",
                self.key_path.to_str().unwrap(),
            ],
            None,
        )
    }

    /// `openssl cms -encrypt` of `plaintext` to this certificate: `options` (cipher, `-stream`) before
    /// `-recip`, `keyopts` (the key transport's `-keyopt`s) after it; DER out.
    fn openssl_encrypt(&self, plaintext: &[u8], options: &[&str], keyopts: &[&str]) -> Vec<u8> {
        let mut args = vec!["cms", "-encrypt", "-binary", "-outform", "DER"];
        args.extend_from_slice(options);
        args.extend(["-recip", self.cert()]);
        args.extend_from_slice(keyopts);
        openssl_ok(&args, Some(plaintext))
    }
}

const OAEP_SHA256: [&str; 6] = [
    "-keyopt",
    "rsa_padding_mode:oaep",
    "-keyopt",
    "rsa_oaep_md:sha256",
    "-keyopt",
    "rsa_mgf1_md:sha256",
];
const OAEP_SHA1: [&str; 2] = ["-keyopt", "rsa_padding_mode:oaep"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The DER bytes of `encrypt-card` output in `encoding`.
fn to_der(out: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "der" => out.to_vec(),
        "base64" => {
            let text = std::str::from_utf8(out).unwrap();
            assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
            base64::engine::general_purpose::STANDARD
                .decode(text.trim_end())
                .unwrap()
        }
        "hex" => {
            let text = std::str::from_utf8(out).unwrap().trim_end();
            assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
            unhex(text)
        }
        other => panic!("{other}"),
    }
}

/// `openssl cms -cmsout -print` of DER.
fn cms_print(dir: &Path, der: &[u8]) -> String {
    let input = dir.join("print.der");
    std::fs::write(&input, der).unwrap();
    let out = openssl_ok(
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            input.to_str().unwrap(),
        ],
        None,
    );
    String::from_utf8(out).unwrap()
}

fn decrypt(key: &str, encoding: &str, input: &[u8]) -> Output {
    keybound(
        &[
            "provisioning",
            "decrypt",
            "--key",
            key,
            "--encoding",
            encoding,
        ],
        Some(input),
    )
}

#[track_caller]
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(code(out), 1, "{}", stderr(out));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(
        stderr(out).contains(needle),
        "{needle:?} in {}",
        stderr(out)
    );
    assert!(!stderr(out).contains("4111"), "{}", stderr(out));
}

#[test]
fn our_card_data_opens_with_openssl_cms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for bits in [2048, 4096] {
        let tsh = Recipient::new(d, &format!("tsh{bits}"), bits);
        for transport in ["rsa-oaep-sha256", "rsa-pkcs1"] {
            for encoding in ["base64", "hex", "der"] {
                let mut args = vec![
                    "provisioning",
                    "encrypt-card",
                    "--cert",
                    tsh.cert(),
                    "--encoding",
                    encoding,
                    "--card",
                    "-",
                ];
                if transport == "rsa-pkcs1" {
                    args.extend(["--key-transport", "rsa-pkcs1"]);
                }
                let out = keybound(&args, Some(CARD.as_bytes()));
                assert!(out.status.success(), "{}", stderr(&out));
                let der = to_der(&out.stdout, encoding);
                let what = format!("RSA-{bits} {transport} {encoding}");
                let plain = tsh.openssl_decrypt(d, &der);
                assert_eq!(String::from_utf8(plain).unwrap(), CARD, "{what}");

                let printed = cms_print(d, &der);
                assert!(printed.contains("aes-256-cbc"), "{what}: {printed}");
                assert!(printed.contains("version: 0"), "{what}: {printed}");
                assert!(
                    printed.contains("TSH Issuer Gateway test"),
                    "issuerAndSerialNumber: {printed}"
                );
                if transport == "rsa-oaep-sha256" {
                    assert!(printed.contains("rsaesOaep"), "{what}: {printed}");
                    assert!(printed.contains("sha256"), "{what}: {printed}");
                    assert!(printed.contains("mgf1"), "{what}: {printed}");
                    // Round trip through our own decryption, with the file key.
                    let ours = decrypt(&tsh.key_ref(), encoding, &out.stdout);
                    assert_eq!(ok(&ours), CARD, "{what}");
                } else {
                    assert!(printed.contains("rsaEncryption"), "{what}: {printed}");
                    // Encrypting with PKCS#1 v1.5 to a partner is allowed; decrypting it never.
                    assert_refused(
                        &decrypt(&tsh.key_ref(), encoding, &out.stdout),
                        "PKCS1-v1_5",
                    );
                }
            }
        }
    }
}

#[test]
fn each_encryption_has_a_fresh_key_and_iv() {
    let dir = tempfile::tempdir().unwrap();
    let tsh = Recipient::new(dir.path(), "tsh", 2048);
    let run = || {
        ok(&keybound(
            &[
                "provisioning",
                "encrypt-card",
                "--cert",
                tsh.cert(),
                "--card",
                "-",
            ],
            Some(CARD.as_bytes()),
        ))
    };
    let (a, b) = (
        to_der(run().as_bytes(), "base64"),
        to_der(run().as_bytes(), "base64"),
    );
    // The last 80 bytes: IV OCTET STRING and the encrypted content (CARD is 5 blocks).
    assert_ne!(a[a.len() - 80..], b[b.len() - 80..]);
}

#[test]
fn push_pairs_the_code_with_pkcs7_card_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tsh = Recipient::new(d, "tsh", 2048);
    let issuer = format!("file:{}", d.join("issuer.pem").display());
    ok(&keybound(&["keys", "generate", "--key", &issuer], None));
    let public = d.join("issuer.pub.pem");
    std::fs::write(
        &public,
        ok(&keybound(&["keys", "public", "--key", &issuer], None)),
    )
    .unwrap();
    for (encoding, extra) in [("base64", None), ("hex", Some("hex"))] {
        let mut args = vec![
            "provisioning",
            "push",
            "--key",
            &issuer,
            "--cert",
            tsh.cert(),
            "--issuer-id",
            "ISSUER0001",
            "--aud",
            "APPLE_PAY",
            "--card",
            "-",
        ];
        if let Some(e) = extra {
            args.extend(["--encoding", e]);
        }
        let both: Value =
            serde_json::from_str(&ok(&keybound(&args, Some(CARD.as_bytes())))).unwrap();
        let code = both["authorizationCode"].as_str().unwrap();
        let token = d.join("code.jwt");
        std::fs::write(&token, code).unwrap();
        let verified: Value = serde_json::from_str(&ok(&keybound(
            &[
                "provisioning",
                "verify-auth-code",
                "--pubkey",
                public.to_str().unwrap(),
                "--token",
                token.to_str().unwrap(),
                "--issuer-id",
                "ISSUER0001",
            ],
            None,
        )))
        .unwrap();
        assert_eq!(verified["claims"]["sub"], "ref-77");
        let card_data = both["cardData"].as_str().unwrap();
        let plain = tsh.openssl_decrypt(d, &to_der(format!("{card_data}\n").as_bytes(), encoding));
        assert_eq!(String::from_utf8(plain).unwrap(), CARD);
    }
    // DER cannot go into JSON.
    let out = keybound(
        &[
            "provisioning",
            "push",
            "--key",
            &issuer,
            "--cert",
            tsh.cert(),
            "--issuer-id",
            "I",
            "--aud",
            "APPLE_PAY",
            "--encoding",
            "der",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    assert_eq!(code(&out), 2);
}

#[test]
fn pkcs7_needs_a_certificate_and_no_jwe_flags() {
    let dir = tempfile::tempdir().unwrap();
    let tsh = Recipient::new(dir.path(), "tsh", 2048);
    let spki = dir.path().join("tsh.pub.pem");
    std::fs::write(
        &spki,
        openssl_ok(
            &["pkey", "-pubout", "-in", tsh.key_path.to_str().unwrap()],
            None,
        ),
    )
    .unwrap();
    // A bare public key: CMS needs the issuer and serial number.
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--pubkey",
            spki.to_str().unwrap(),
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    assert_eq!(code(&out), 2);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // --pubkey naming a certificate works like --cert.
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--pubkey",
            tsh.cert(),
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    let der = to_der(ok(&out).as_bytes(), "base64");
    assert_eq!(tsh.openssl_decrypt(dir.path(), &der), CARD.as_bytes());
    // JWE-only flags with pkcs7, pkcs7-only flags with jwe: usage errors naming the flag.
    for (flags, named) in [
        (&["--product-id", "P1"][..], "--product-id"),
        (&["--thales-kid", "K"][..], "--thales-kid"),
        (&["--issuer-id", "I"][..], "--issuer-id"),
        (
            &["--format", "jwe", "--issuer-id", "I", "--encoding", "hex"][..],
            "--encoding",
        ),
        (
            &[
                "--format",
                "jwe",
                "--issuer-id",
                "I",
                "--key-transport",
                "rsa-pkcs1",
            ][..],
            "--key-transport",
        ),
    ] {
        let mut args = vec![
            "provisioning",
            "encrypt-card",
            "--cert",
            tsh.cert(),
            "--card",
            "-",
        ];
        args.extend_from_slice(flags);
        let out = keybound(&args, Some(CARD.as_bytes()));
        assert_eq!(code(&out), 2, "{flags:?}");
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains(named), "{}", stderr(&out));
    }
    // `format` in [provisioning] (or its variable) chooses the default; a flag wins; a bad value is named.
    let config = dir.path().join("keybound.toml");
    std::fs::write(
        &config,
        format!(
            "[provisioning]\nformat = \"jwe\"\nissuer_id = \"ISSUER0001\"\nthales_public_key = \"{}\"\n",
            tsh.cert()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let jwe = ok(&keybound(
        &[
            "--config",
            cfg,
            "provisioning",
            "encrypt-card",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    ));
    assert_eq!(jwe.trim().split('.').count(), 5, "{jwe}");
    let pkcs7 = ok(&keybound(
        &[
            "--config",
            cfg,
            "provisioning",
            "encrypt-card",
            "--format",
            "pkcs7",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    ));
    let der = to_der(pkcs7.as_bytes(), "base64");
    assert_eq!(tsh.openssl_decrypt(dir.path(), &der), CARD.as_bytes());
    let out = common::keybound_env(
        &[
            "provisioning",
            "encrypt-card",
            "--cert",
            tsh.cert(),
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
        &[("KEYBOUND_PROVISIONING__FORMAT", "pkcs8")],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("KEYBOUND_PROVISIONING__FORMAT"),
        "{}",
        stderr(&out)
    );
    // The help of each format names the Thales product it serves.
    let help = ok(&keybound(&["provisioning", "encrypt-card", "--help"], None));
    assert!(help.contains("classic push provisioning"), "{help}");
    assert!(help.contains("App2App"), "{help}");
}

#[test]
fn openssl_cms_output_opens_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tsh = Recipient::new(d, "tsh", 2048);
    let plaintext = br#"{"fpan":"5204731600014792","exp":"1229","tokenId":"DNITHE0001"}"#;
    let der = tsh.openssl_encrypt(plaintext, &["-aes256"], &OAEP_SHA256);
    let key = tsh.key_ref();
    // DER, hex (either case, with a line break), base64 and openssl's own PEM.
    assert_eq!(ok(&decrypt(&key, "der", &der)).as_bytes(), plaintext);
    let hex_text = format!("{}\n", hex(&der).to_uppercase());
    assert_eq!(
        ok(&decrypt(&key, "hex", hex_text.as_bytes())).as_bytes(),
        plaintext
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    assert_eq!(
        ok(&decrypt(&key, "base64", b64.as_bytes())).as_bytes(),
        plaintext
    );
    let mut pem_options = vec!["cms", "-encrypt", "-binary", "-outform", "PEM", "-aes256"];
    pem_options.extend(["-recip", tsh.cert()]);
    pem_options.extend_from_slice(&OAEP_SHA256);
    let pem = openssl_ok(&pem_options, Some(plaintext));
    assert_eq!(ok(&decrypt(&key, "base64", &pem)).as_bytes(), plaintext);

    // BER with indefinite lengths (streaming encoders), and AES-128-CBC.
    let ber = tsh.openssl_encrypt(plaintext, &["-aes256", "-stream"], &OAEP_SHA256);
    assert!(ber.starts_with(&[0x30, 0x80]), "indefinite length expected");
    assert_eq!(ok(&decrypt(&key, "der", &ber)).as_bytes(), plaintext);
    let der128 = tsh.openssl_encrypt(plaintext, &["-aes128"], &OAEP_SHA256);
    assert_eq!(ok(&decrypt(&key, "der", &der128)).as_bytes(), plaintext);
    // SHA-1 OAEP (RSAES-OAEP with default parameters) through the file backend too.
    let sha1 = tsh.openssl_encrypt(plaintext, &["-aes256"], &OAEP_SHA1);
    assert_eq!(ok(&decrypt(&key, "der", &sha1)).as_bytes(), plaintext);
}

#[test]
fn refusals_and_failures_print_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (tsh, other, big) = (
        Recipient::new(d, "tsh", 2048),
        Recipient::new(d, "other", 2048),
        Recipient::new(d, "big", 4096),
    );
    let key = tsh.key_ref();
    let out = keybound(
        &[
            "provisioning",
            "encrypt-card",
            "--cert",
            tsh.cert(),
            "--encoding",
            "der",
            "--card",
            "-",
        ],
        Some(CARD.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let der = out.stdout;
    assert_eq!(ok(&decrypt(&key, "der", &der)), CARD);
    const FAILED: &str = "decryption failed";

    // The content: flipping the top bit of the second-to-last ciphertext block's last byte flips the
    // same bit of the padding byte (≥ 0x81): the padding check fails, always.
    let mut padding = der.clone();
    let n = padding.len();
    padding[n - 17] ^= 0x80;
    assert_refused(&decrypt(&key, "der", &padding), FAILED);
    // The encrypted key (the OAEP check fails): the same answer. It is the 256-byte OCTET STRING.
    let ek = der
        .windows(4)
        .position(|w| w == [0x04, 0x82, 0x01, 0x00])
        .expect("the encryptedKey of an RSA-2048 recipient");
    let mut unwrap = der.clone();
    unwrap[ek + 4 + 100] ^= 0x01;
    assert_refused(&decrypt(&key, "der", &unwrap), FAILED);
    // Another key of the same size, and one of another size: the same answer.
    assert_refused(&decrypt(&other.key_ref(), "der", &der), FAILED);
    assert_refused(&decrypt(&big.key_ref(), "der", &der), FAILED);
    // An EC key cannot be a key-transport recipient: a usage error (2), not a judgement.
    let ec = format!("file:{}", d.join("ec.pem").display());
    ok(&keybound(
        &["keys", "generate", "--key", &ec, "--kty", "EC"],
        None,
    ));
    let out = decrypt(&ec, "der", &der);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("EC P-256"), "{}", stderr(&out));
    // Truncated DER.
    assert_refused(&decrypt(&key, "der", &der[..n - 5]), "malformed CMS data");
    assert_refused(&decrypt(&key, "base64", b"not base64 at all!"), "base64");
    assert_refused(&decrypt(&key, "der", b"{\"json\":1}"), "malformed CMS data");

    // A KEKRecipientInfo (a shared secret key), no key transport.
    let kek = openssl_ok(
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-aes256",
            "-secretkey",
            "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f",
            "-secretkeyid",
            "01020304",
        ],
        Some(CARD.as_bytes()),
    );
    assert_refused(&decrypt(&key, "der", &kek), "KEKRecipientInfo");
    // Content encryption other than AES-CBC (3DES), PKCS#1 v1.5 key transport (openssl's default).
    let des = tsh.openssl_encrypt(CARD.as_bytes(), &["-des3"], &OAEP_SHA256);
    assert_refused(&decrypt(&key, "der", &des), "not AES-CBC");
    let pkcs1 = tsh.openssl_encrypt(CARD.as_bytes(), &["-aes256"], &[]);
    assert_refused(&decrypt(&key, "der", &pkcs1), "PKCS1-v1_5");
}

#[cfg(feature = "pkcs11")]
#[test]
fn softhsm_unwraps_sha1_oaep_and_refuses_sha256_clearly() {
    use keybound_test_support::pkcs11::TestToken;
    let Some(token) = TestToken::shared("provisioning decrypt in SoftHSM") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let label = format!("cms-{}", std::process::id());
    let reference = token.key_ref(&label);
    ok(&keybound(
        &[
            "keys", "generate", "--key", &reference, "--kty", "RSA", "--bits", "2048", "--usage",
            "decrypt",
        ],
        None,
    ));
    let public = d.join("hsm.pub.pem");
    std::fs::write(
        &public,
        ok(&keybound(&["keys", "public", "--key", &reference], None)),
    )
    .unwrap();
    // A certificate for the token's key, issued by a throw-away software CA (the recipient only needs a
    // certificate to be named by; openssl cannot sign with the token's key).
    let ca = Recipient::new(d, "ca", 2048);
    let csr = openssl_ok(
        &[
            "req",
            "-new",
            "-key",
            ca.key_path.to_str().unwrap(),
            "-subj",
            "/CN=issuer pkcs7",
        ],
        None,
    );
    let cert = d.join("hsm.cert.pem");
    openssl_ok(
        &[
            "x509",
            "-req",
            "-CA",
            ca.cert(),
            "-CAkey",
            ca.key_path.to_str().unwrap(),
            "-force_pubkey",
            public.to_str().unwrap(),
            "-days",
            "2",
            "-out",
            cert.to_str().unwrap(),
        ],
        Some(&csr),
    );
    let hsm = Recipient {
        key_path: PathBuf::new(),
        cert,
    };
    let sha1 = hsm.openssl_encrypt(CARD.as_bytes(), &["-aes256"], &OAEP_SHA1);
    assert_eq!(ok(&decrypt(&reference, "der", &sha1)), CARD);

    let sha256 = hsm.openssl_encrypt(CARD.as_bytes(), &["-aes256"], &OAEP_SHA256);
    let out = decrypt(&reference, "der", &sha256);
    assert_eq!(
        code(&out),
        2,
        "a backend limit, not a judgement: {}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("not supported by this token"),
        "{}",
        stderr(&out)
    );
}

//! `keybound keys list` and `keybound keys delete` against a SoftHSM token, checked by independent tools:
//! key pairs made by `keybound keys generate` and by OpenSC's `pkcs11-tool` (generated in the token, and an
//! OpenSSL key and certificate imported with `--write-object`) are listed, and every field is compared with
//! what `pkcs11-tool --list-objects` says, the certificate subject with `openssl x509 -nameopt RFC2253`, and
//! the RFC 7638 thumbprint with one computed here from the public key `pkcs11-tool` / `openssl` export.
//! Deleting removes exactly one key pair's objects (private, public, certificate), which `pkcs11-tool` then
//! no longer lists, while the other keys stay; an ambiguous reference, a missing `--yes` without a terminal,
//! and file/env keys are refused (exit 2) and delete nothing. With util-linux `script` (a pseudo-terminal),
//! the question on the terminal is answered `n` (exit 1, nothing deleted) and `y` (deleted).
//!
//! Runs under `cargo xtask softhsm-test -p keybound-cli`; without SoftHSM each test prints a loud SKIPPED line
//! and passes (unless `KEYBOUND_TEST_PKCS11_REQUIRED=1`).

#![cfg(feature = "pkcs11")]
#![allow(clippy::print_stderr)] // the loud SKIPPED line when a tool is missing

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::{code, keybound, ok, stderr};
use keybound_test_support::pkcs11::TestToken;
use serde_json::{Value, json};

/// Whether the external tools the checks need are installed (OpenSC's `pkcs11-tool`, `openssl`).
fn tools_present() -> bool {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--help")
            .output()
            .is_ok_and(|_| true)
    };
    if found("pkcs11-tool") && found("openssl") {
        return true;
    }
    assert!(
        std::env::var_os("KEYBOUND_TEST_PKCS11_REQUIRED").is_none(),
        "pkcs11-tool (Debian package opensc) and openssl are required with KEYBOUND_TEST_PKCS11_REQUIRED"
    );
    eprintln!("SKIPPED: pkcs11-tool or openssl not installed (apt-get install opensc openssl)");
    false
}

/// `pkcs11-tool --module … --token-label … --login --pin … ARGS`, which must succeed.
fn pkcs11_tool(token: &TestToken, args: &[&str]) -> String {
    let pin = std::fs::read_to_string(&token.pin_file).unwrap();
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
        .unwrap();
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One object in `pkcs11-tool --list-objects`: its heading (`Private Key Object; RSA`) and `name: value`
/// lines.
#[derive(Debug, Clone)]
struct ToolObject {
    heading: String,
    fields: BTreeMap<String, String>,
}

impl ToolObject {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// The items of a comma-separated field (`Usage`, `Access`).
    fn items(&self, name: &str) -> Vec<&str> {
        self.field(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

fn tool_objects(token: &TestToken) -> Vec<ToolObject> {
    let mut objects: Vec<ToolObject> = Vec::new();
    for line in pkcs11_tool(token, &["--list-objects"]).lines() {
        if line.starts_with(' ') {
            if let (Some(object), Some((name, value))) = (objects.last_mut(), line.split_once(':'))
            {
                object
                    .fields
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        } else if !line.trim().is_empty() {
            objects.push(ToolObject {
                heading: line.trim().to_owned(),
                fields: BTreeMap::new(),
            });
        }
    }
    objects
}

fn of_kind<'a>(objects: &'a [ToolObject], kind: &str, id: &str) -> Vec<&'a ToolObject> {
    objects
        .iter()
        .filter(|o| o.heading.starts_with(kind) && o.field("ID") == id)
        .collect()
}

/// A token-wide reference (no `object=`/`id=`), or one naming `label` and/or `id`.
fn reference(token: &TestToken, label: Option<&str>, id: Option<&[u8]>) -> String {
    let mut uri = token.uri("placeholder");
    uri.object = label.map(str::to_owned);
    uri.id = id.map(<[u8]>::to_vec);
    uri.to_string()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The RFC 7638 thumbprint of a canonical JWK (serde_json writes object members sorted and without
/// whitespace: the RFC 7638 form).
fn thumbprint_of(canonical: &Value) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        serde_json::to_string(canonical).unwrap().as_bytes(),
    );
    b64(digest.as_ref())
}

/// The RFC 7638 thumbprint of an EC key from the `EC_POINT` hex `pkcs11-tool` lists: a DER OCTET STRING
/// around `04 || X || Y`.
fn thumbprint_of_ec_point(hex: &str) -> String {
    let der = unhex(hex);
    let point = &der[2..];
    assert_eq!(
        (der[0], usize::from(der[1]), point[0]),
        (4, point.len(), 4),
        "{hex}"
    );
    let width = (point.len() - 1) / 2;
    let crv = match width {
        32 => "P-256",
        48 => "P-384",
        other => panic!("{other}-byte coordinates"),
    };
    thumbprint_of(
        &json!({"crv": crv, "kty": "EC", "x": b64(&point[1..=width]), "y": b64(&point[1 + width..])}),
    )
}

/// The RFC 7638 thumbprint of an RSA SubjectPublicKeyInfo (DER file), worked out here from the modulus
/// `openssl rsa -modulus` prints (and the exponent, 65537, `openssl pkey -text` shows).
fn thumbprint_of_spki(path: &Path) -> String {
    let path = path.to_str().unwrap();
    let text = String::from_utf8(
        openssl(&[
            "pkey", "-pubin", "-inform", "DER", "-in", path, "-noout", "-text",
        ])
        .stdout,
    )
    .unwrap();
    assert!(text.contains("Exponent: 65537"), "{text}");
    let modulus = String::from_utf8(
        openssl(&[
            "rsa", "-pubin", "-inform", "DER", "-in", path, "-noout", "-modulus",
        ])
        .stdout,
    )
    .unwrap();
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    thumbprint_of(&json!({"e": "AQAB", "kty": "RSA", "n": b64(&unhex(hex))}))
}

/// Keys made three ways: by `keybound keys generate` (RSA-2048 signing, EC P-256, RSA-3072 decryption), by
/// `pkcs11-tool --keypairgen` (EC P-384; RSA-2048 marked extractable), and an OpenSSL RSA key imported with
/// its certificate (same id, no public key object), whose PEM files stay in `dir`.
fn populate(token: &TestToken, dir: &Path) {
    for args in [
        vec!["--key", &token.key_ref("kb-rsa")],
        vec!["--key", &token.key_ref("kb-ec"), "--kty", "EC"],
        vec![
            "--key",
            &token.key_ref("kb-dec"),
            "--bits",
            "3072",
            "--usage",
            "decrypt",
        ],
    ] {
        let mut full = vec!["keys", "generate"];
        full.extend(args.iter().map(|a| &**a));
        ok(&keybound(&full, None));
    }
    pkcs11_tool(
        token,
        &[
            "--keypairgen",
            "--key-type",
            "EC:secp384r1",
            "--label",
            "tool-ec",
            "--id",
            "0a0b",
        ],
    );
    pkcs11_tool(
        token,
        &[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            "tool-rsa",
            "--id",
            "0c",
            "--extractable",
        ],
    );
    let key = dir.join("imported.pem");
    let cert = dir.join("imported.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/C=DE/O=Example Bank, Inc./CN=imported",
        "-days",
        "30",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let key_der = dir.join("imported.der");
    let cert_der = dir.join("imported.crt.der");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        key.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        key_der.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        cert_der.to_str().unwrap(),
    ]);
    pkcs11_tool(
        token,
        &[
            "--write-object",
            key_der.to_str().unwrap(),
            "--type",
            "privkey",
            "--id",
            "0d",
            "--label",
            "imported",
        ],
    );
    pkcs11_tool(
        token,
        &[
            "--write-object",
            cert_der.to_str().unwrap(),
            "--type",
            "cert",
            "--id",
            "0d",
            "--label",
            "imported-cert",
        ],
    );
}

/// The public key of the key pair with `id`, as DER SPKI: read from the token by `pkcs11-tool`, or (the
/// imported key has no public key object) derived from the key file by `openssl`.
fn exported_public_key(token: &TestToken, dir: &Path, id: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{id}.pub.der"));
    if id == "0d" {
        openssl(&[
            "pkey",
            "-in",
            dir.join("imported.pem").to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            out.to_str().unwrap(),
        ]);
    } else {
        pkcs11_tool(
            token,
            &[
                "--read-object",
                "--type",
                "pubkey",
                "--id",
                id,
                "-o",
                out.to_str().unwrap(),
            ],
        );
    }
    out
}

#[test]
#[allow(clippy::too_many_lines)] // one walk through the listing, field by field
fn keys_list_shows_every_key_pair_as_pkcs11_tool_sees_it() {
    let Some(token) = TestToken::fresh("cli keys list", "keys-list") else {
        return;
    };
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    populate(&token, dir.path());
    let whole = reference(&token, None, None);

    let listing: Value = serde_json::from_str(&ok(&keybound(
        &["keys", "list", "--key", &whole, "--format", "json"],
        None,
    )))
    .unwrap();
    assert_eq!(listing["token"]["label"], json!(token.label));
    assert!(
        listing["token"]["serial"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let keys = listing["keys"].as_array().unwrap();
    let labels: Vec<&str> = keys.iter().map(|k| k["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "imported", "kb-dec", "kb-ec", "kb-rsa", "tool-ec", "tool-rsa"
        ],
        "every key pair, sorted by label: {listing:#}"
    );

    // Field by field against pkcs11-tool.
    let objects = tool_objects(&token);
    for key in keys {
        let id = key["id"].as_str().unwrap();
        let label = key["label"].as_str().unwrap();
        let privates = of_kind(&objects, "Private Key Object", id);
        assert_eq!(privates.len(), 1, "{label}: {objects:#?}");
        let private = privates[0];
        assert_eq!(private.field("label"), label);
        let usage = private.items("Usage");
        assert_eq!(
            key["sign"],
            json!(usage.contains(&"sign")),
            "{label}: {usage:?}"
        );
        assert_eq!(
            key["decrypt"],
            json!(usage.contains(&"decrypt")),
            "{label}: {usage:?}"
        );
        let access = private.items("Access");
        for (field, item) in [
            ("sensitive", "sensitive"),
            ("extractable", "extractable"),
            ("always_sensitive", "always sensitive"),
            ("never_extractable", "never extractable"),
        ] {
            assert_eq!(
                key[field],
                json!(access.contains(&item)),
                "{label} {field}: {access:?}"
            );
        }
        let publics = of_kind(&objects, "Public Key Object", id);
        assert_eq!(
            key["public_key_object"],
            json!(!publics.is_empty()),
            "{label}"
        );
        // Type and size: the private key's type, the public key object's size (the imported key: openssl's).
        let kind = if private.heading.ends_with("EC") {
            "EC"
        } else {
            "RSA"
        };
        assert!(private.heading.ends_with(kind));
        assert_eq!(key["kty"], json!(kind), "{label}");
        let bits = match publics.first() {
            Some(public) => public
                .heading
                .split_whitespace()
                .rev()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            None => 2048, // openssl req -newkey rsa:2048
        };
        let expected_type = match (kind, bits) {
            ("EC", 256) => "EC P-256".to_owned(),
            ("EC", 384) => "EC P-384".to_owned(),
            ("RSA", bits) => format!("RSA-{bits}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(key["type"], json!(expected_type), "{label}");
        assert_eq!(key["bits"], json!(bits), "{label}");
        // Thumbprint of the public key as the other tools show it: an EC key's point from the listing
        // (`pkcs11-tool --read-object` cannot export EC keys with OpenSSL 3), an RSA key exported.
        let expected = if kind == "EC" {
            thumbprint_of_ec_point(publics[0].field("EC_POINT"))
        } else {
            thumbprint_of_spki(&exported_public_key(&token, dir.path(), id))
        };
        assert_eq!(key["thumbprint"], json!(expected), "{label}");
        // Certificates with the same CKA_ID.
        let certificates = of_kind(&objects, "Certificate Object", id);
        assert_eq!(
            key["certificates"].as_array().unwrap().len(),
            certificates.len(),
            "{label}"
        );
    }
    let by_label = |label: &str| keys.iter().find(|k| k["label"] == json!(label)).unwrap();
    // What the three ways of making a key leave in the token, spelled out.
    assert_eq!(by_label("kb-rsa")["type"], "RSA-2048");
    assert_eq!(
        (
            by_label("kb-rsa")["sign"].clone(),
            by_label("kb-rsa")["decrypt"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(
        (
            by_label("kb-dec")["sign"].clone(),
            by_label("kb-dec")["decrypt"].clone()
        ),
        (json!(false), json!(true))
    );
    assert_eq!(by_label("kb-ec")["curve"], "P-256");
    assert_eq!(by_label("tool-ec")["curve"], "P-384");
    assert_eq!(by_label("tool-ec")["id"], "0a0b");
    assert_eq!(by_label("tool-rsa")["extractable"], true);
    assert_eq!(by_label("kb-rsa")["extractable"], false);
    assert_eq!(by_label("kb-rsa")["never_extractable"], true);
    let imported = by_label("imported");
    assert_eq!(imported["always_sensitive"], false);
    assert_eq!(imported["public_key_object"], false);
    let expected_subject = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            dir.path().join("imported.crt").to_str().unwrap(),
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
        ])
        .stdout,
    )
    .unwrap();
    let expected_subject = expected_subject.trim().strip_prefix("subject=").unwrap();
    assert_eq!(expected_subject, "CN=imported,O=Example Bank\\, Inc.,C=DE");
    assert_eq!(
        imported["certificates"],
        json!([{"label": "imported-cert", "subject": expected_subject}])
    );
    for key in keys {
        if key["label"] != json!("imported") {
            assert_eq!(key["certificates"], json!([]));
        }
    }

    // The table: a heading and one row per key pair, with the same facts.
    let table = ok(&keybound(&["keys", "list", "--key", &whole], None));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "token '{}' (serial {}): 6 key pairs",
            token.label,
            listing["token"]["serial"].as_str().unwrap()
        )
    );
    for (header, column) in lines[1].split_whitespace().zip([
        "LABEL",
        "ID",
        "TYPE",
        "USAGE",
        "SENSITIVE",
        "EXTRACTABLE",
        "THUMBPRINT",
        "CERTIFICATE",
    ]) {
        assert_eq!(header, column);
    }
    assert_eq!(lines.len(), 8, "{table}");
    let row = |label: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap()
            .split_whitespace()
            .collect()
    };
    let imported_row = row("imported");
    assert_eq!(
        imported_row[..6],
        ["imported", "0d", "RSA-2048", "sign,decrypt", "yes", "no"]
    );
    assert_eq!(imported_row[6], imported["thumbprint"].as_str().unwrap());
    assert_eq!(imported_row[7..].join(" "), expected_subject);
    assert_eq!(row("kb-dec")[2..6], ["RSA-3072", "decrypt", "yes", "no"]);
    assert_eq!(row("tool-rsa")[5], "yes");
    // "EC P-256" is two words here.
    assert_eq!(
        row("kb-ec")[2..],
        [
            "EC",
            "P-256",
            "sign",
            "yes",
            "no",
            by_label("kb-ec")["thumbprint"].as_str().unwrap(),
            "-"
        ]
    );

    // object= and id= filter.
    let only: Value = serde_json::from_str(&ok(&keybound(
        &[
            "keys",
            "list",
            "--key",
            &token.key_ref("kb-ec"),
            "--format",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(only["keys"].as_array().unwrap().len(), 1);
    assert_eq!(only["keys"][0], *by_label("kb-ec"));
    let by_id: Value = serde_json::from_str(&ok(&keybound(
        &[
            "keys",
            "list",
            "--key",
            &reference(&token, None, Some(&[0x0a, 0x0b])),
            "--format",
            "json",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(by_id["keys"], json!([by_label("tool-ec")]));
    let none = ok(&keybound(
        &["keys", "list", "--key", &token.key_ref("no-such-key")],
        None,
    ));
    assert_eq!(
        none.trim_end(),
        format!(
            "token '{}' (serial {}): no key pairs",
            token.label,
            listing["token"]["serial"].as_str().unwrap()
        )
    );

    // No PIN source: the token wants a login to show private keys, and says how to give the PIN.
    let mut no_pin = token.uri("placeholder");
    no_pin.object = None;
    no_pin.pin_source = None;
    let out = keybound(&["keys", "list", "--key", &no_pin.to_string()], None);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("pin-source"), "{}", stderr(&out));
}

/// A key keybound cannot sign with (EC P-521) is listed all the same, with its type and without a
/// thumbprint, and can be deleted.
#[test]
fn keys_list_and_delete_keys_keybound_cannot_use() {
    let Some(token) = TestToken::fresh("cli keys list P-521", "keys-p521") else {
        return;
    };
    if !tools_present() {
        return;
    }
    pkcs11_tool(
        &token,
        &[
            "--keypairgen",
            "--key-type",
            "EC:secp521r1",
            "--label",
            "p521",
            "--id",
            "0e",
        ],
    );
    let whole = reference(&token, None, None);
    let listing: Value = serde_json::from_str(&ok(&keybound(
        &["keys", "list", "--key", &whole, "--format", "json"],
        None,
    )))
    .unwrap();
    let objects = tool_objects(&token);
    let public = of_kind(&objects, "Public Key Object", "0e");
    // secp521r1's OID (pkcs11-tool itself counts 528 bits: 66 bytes a coordinate).
    assert_eq!(public[0].field("EC_PARAMS"), "06052b81040023", "{public:?}");
    let usage = of_kind(&objects, "Private Key Object", "0e")[0].items("Usage");
    let key = &listing["keys"][0];
    assert_eq!(listing["keys"].as_array().unwrap().len(), 1, "{listing:#}");
    for (field, value) in [
        ("label", json!("p521")),
        ("id", json!("0e")),
        ("type", json!("EC P-521")),
        ("kty", json!("EC")),
        ("bits", json!(521)),
        ("curve", json!("P-521")),
        ("thumbprint", Value::Null),
        ("sign", json!(usage.contains(&"sign"))),
        ("public_key_object", json!(true)),
    ] {
        assert_eq!(key[field], value, "{field}: {listing:#}");
    }
    ok(&keybound(
        &["keys", "delete", "--key", &token.key_ref("p521"), "--yes"],
        None,
    ));
    assert!(of_kind(&tool_objects(&token), "", "0e").is_empty());
}

#[test]
#[cfg(feature = "file")]
fn keys_list_refuses_a_key_file_and_an_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("file:{}", dir.path().join("k.pem").display());
    ok(&keybound(
        &["keys", "generate", "--key", &key, "--kty", "EC"],
        None,
    ));
    for reference in [key.as_str(), "env:KB_SOME_KEY"] {
        let out = keybound(&["keys", "list", "--key", reference], None);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("keybound: keys list lists the key pairs of a PKCS#11 token")
                && err.contains("keys public --key"),
            "{err}"
        );
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
fn keys_delete_removes_one_key_pair_and_nothing_else() {
    let Some(token) = TestToken::fresh("cli keys delete", "keys-delete") else {
        return;
    };
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    populate(&token, dir.path());
    // Two key pairs with one label, told apart by their ids.
    for id in ["21", "22"] {
        pkcs11_tool(
            &token,
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "twin",
                "--id",
                id,
            ],
        );
    }
    let count = |objects: &[ToolObject], label: &str| {
        objects.iter().filter(|o| o.field("label") == label).count()
    };
    let before = tool_objects(&token);
    assert_eq!(count(&before, "kb-rsa"), 2); // private + public
    assert_eq!(count(&before, "twin"), 4);

    // No terminal, no --yes: refused, nothing deleted.
    let out = keybound(
        &["keys", "delete", "--key", &token.key_ref("kb-rsa")],
        Some(b"y\n"),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(count(&tool_objects(&token), "kb-rsa"), 2);

    // Ambiguous: both matches named, id= suggested, nothing deleted.
    let out = keybound(
        &["keys", "delete", "--key", &token.key_ref("twin"), "--yes"],
        None,
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("2 key pairs match label 'twin'")
            && err.contains("label 'twin', id 21")
            && err.contains("label 'twin', id 22")
            && err.contains("`id=`")
            && err.contains("id=%21"),
        "{err}"
    );
    assert_eq!(count(&tool_objects(&token), "twin"), 4);

    // Two key pairs with one id (and different labels): by label, one private key matches, but its public
    // key could not be told from the other's, so nothing is deleted.
    for label in ["same-id-a", "same-id-b"] {
        pkcs11_tool(
            &token,
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                label,
                "--id",
                "31",
            ],
        );
    }
    let out = keybound(
        &[
            "keys",
            "delete",
            "--key",
            &token.key_ref("same-id-a"),
            "--yes",
        ],
        None,
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "not deleted: label 'same-id-a', id 31 shares its id with another private key"
        ) && err.contains("label 'same-id-b', id 31"),
        "{err}"
    );
    assert_eq!(of_kind(&tool_objects(&token), "", "31").len(), 4);
    for label in ["same-id-a", "same-id-b"] {
        pkcs11_tool(
            &token,
            &["--delete-object", "--type", "privkey", "--label", label],
        );
        pkcs11_tool(
            &token,
            &["--delete-object", "--type", "pubkey", "--label", label],
        );
    }

    // A whole token is not a key.
    let out = keybound(
        &[
            "keys",
            "delete",
            "--key",
            &reference(&token, None, None),
            "--yes",
        ],
        None,
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("object="), "{}", stderr(&out));
    // Nor is a missing one.
    let out = keybound(
        &[
            "keys",
            "delete",
            "--key",
            &token.key_ref("no-such-key"),
            "--yes",
        ],
        None,
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no key pair with label 'no-such-key'"),
        "{}",
        stderr(&out)
    );

    // Deleting with --yes: the private and public key go, the others stay.
    let out = ok(&keybound(
        &["keys", "delete", "--key", &token.key_ref("kb-rsa"), "--yes"],
        None,
    ));
    assert!(out.starts_with("deleted key pair label 'kb-rsa'"), "{out}");
    let after = tool_objects(&token);
    assert_eq!(count(&after, "kb-rsa"), 0, "{after:#?}");
    for (label, objects) in [
        ("kb-ec", 2),
        ("kb-dec", 2),
        ("tool-ec", 2),
        ("tool-rsa", 2),
        ("imported", 1),
        ("imported-cert", 1),
        ("twin", 4),
    ] {
        assert_eq!(count(&after, label), objects, "{label}: {after:#?}");
    }
    // One of the twins by its id; the imported key by its id, with its certificate.
    ok(&keybound(
        &[
            "keys",
            "delete",
            "--key",
            &reference(&token, Some("twin"), Some(&[0x21])),
            "--yes",
        ],
        None,
    ));
    let out = ok(&keybound(
        &[
            "keys",
            "delete",
            "--key",
            &reference(&token, None, Some(&[0x0d])),
            "--yes",
        ],
        None,
    ));
    assert!(out.contains("1 certificate(s)"), "{out}");
    let after = tool_objects(&token);
    assert!(of_kind(&after, "", "21").is_empty(), "{after:#?}");
    assert_eq!(of_kind(&after, "", "22").len(), 2, "{after:#?}");
    assert!(
        of_kind(&after, "", "0d").is_empty(),
        "certificate left behind: {after:#?}"
    );
    let listed: Value = serde_json::from_str(&ok(&keybound(
        &[
            "keys",
            "list",
            "--key",
            &reference(&token, None, None),
            "--format",
            "json",
        ],
        None,
    )))
    .unwrap();
    let labels: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["kb-dec", "kb-ec", "tool-ec", "tool-rsa", "twin"]);

    // At a terminal (a pseudo-terminal from util-linux `script`): `n` keeps the key (exit 1), `y` deletes it.
    if Command::new("script").arg("--version").output().is_ok() {
        let ask = |answer: &str| {
            let command = format!(
                "'{}' keys delete --key '{}'",
                env!("CARGO_BIN_EXE_keybound"),
                token.key_ref("kb-ec")
            );
            let mut child = Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .env_remove("KEYBOUND_CONFIG")
                .env_remove("KEYBOUND_LOG")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), answer.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        };
        let out = ask("n\n");
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            shown.contains("delete key pair label 'kb-ec'") && shown.contains("[y/N]"),
            "{shown}"
        );
        assert_eq!(code(&out), 1, "{shown}");
        assert_eq!(count(&tool_objects(&token), "kb-ec"), 2);
        let out = ask("y\n");
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(code(&out), 0, "{shown}");
        assert_eq!(count(&tool_objects(&token), "kb-ec"), 0);
    } else {
        assert!(
            std::env::var_os("KEYBOUND_TEST_PKCS11_REQUIRED").is_none(),
            "util-linux `script` is required with KEYBOUND_TEST_PKCS11_REQUIRED"
        );
        eprintln!("SKIPPED (terminal part): util-linux `script` not installed");
    }
}

#[test]
#[cfg(feature = "file")]
fn keys_delete_refuses_files_and_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let key = format!("file:{}", path.display());
    ok(&keybound(
        &["keys", "generate", "--key", &key, "--kty", "EC"],
        None,
    ));
    let out = keybound(&["keys", "delete", "--key", &key, "--yes"], None);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("delete files yourself"),
        "{}",
        stderr(&out)
    );
    assert!(path.exists());
    let out = keybound(
        &["keys", "delete", "--key", "env:KB_SOME_KEY", "--yes"],
        None,
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("environment variable"),
        "{}",
        stderr(&out)
    );
}

//! keybound's one exit-code rule (README.md, "Exit codes"), as a table over every command: 1 when the input
//! — a token, JWE, capture context, transient token, authorization code, a partner's answer, a batch line —
//! was judged and rejected; 2 for usage, configuration, I/O, network and key-backend failures.
//!
//! Every command (found by walking the binary's help pages, so a new one cannot be left out) runs with at
//! least one failure that must exit 2, and every command that judges input runs with a rejected input that
//! must exit 1. With a SoftHSM token (`cargo xtask softhsm-test -p keybound-cli`) the backend rows run too:
//! a token key whose `CKA_SIGN` / `CKA_DECRYPT` was turned off, so that the HSM itself fails the operation,
//! through every command that signs or decrypts — exit 2 everywhere (it was 1 in `flex` and
//! `provisioning`). Keycloak refusing a wrong password (exit 1) needs the OpenID Connect test server (Node.js).

// The table signs with file keys.
#![cfg(feature = "file")]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flex_simulator::{Misbehavior, SessionKind, SimulatorConfig, ThreadedSimulator};
use serde_json::json;

/// One run of the binary and the exit code it must end with.
struct Row {
    what: String,
    args: Vec<String>,
    stdin: Option<String>,
    env: Vec<(String, String)>,
    code: i32,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn row(&mut self, code: i32, what: &str, args: &[&str]) -> &mut Row {
        self.0.push(Row {
            what: what.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin: None,
            env: Vec::new(),
            code,
        });
        self.0.last_mut().unwrap()
    }
}

impl Row {
    fn stdin(&mut self, text: &str) -> &mut Self {
        self.stdin = Some(text.to_owned());
        self
    }

    fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The command, as `help` names it: the words before the first flag.
    fn command(&self) -> String {
        self.args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../provisioning-signer/tests/fixtures")
        .join(name)
}

const CARD: &str = r#"{"issuerCardRefId":"ref-77","fpan":"4111111111111111","exp":"1230","cardHolderName":"JOHN SMITH"}"#;
const FLEX_DATA: &str = r#"{"paymentInformation":{"card":{"number":"4111111111111111","expirationMonth":"12","expirationYear":"2031"}}}"#;

/// Flips the last character of a compact token's last part (its signature or tag).
fn tamper(token: &str) -> String {
    let mut t = token.trim().to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

#[test]
#[allow(clippy::too_many_lines)] // one table
fn one_exit_code_rule_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = |name: &str, contents: &str| {
        let path = d.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let key = format!("file:{}", d.join("rsa.pem").display());
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &key],
        None,
    ));
    let public = file(
        "rsa.pub.pem",
        &common::ok(&common::keybound(&["keys", "public", "--key", &key], None)),
    );
    let missing = d.join("no-such-file");
    let missing = s(&missing);
    let claims = file("claims.json", r#"{"sub":"s"}"#);
    let token = common::ok(&common::keybound(
        &[
            "jwt", "sign", "--key", &key, "--alg", "RS256", "--claims", &claims, "--exp-in", "300",
        ],
        None,
    ));
    let jwe = common::ok(&common::keybound(
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            &public,
            "--alg",
            "RSA-OAEP-256",
            "--enc",
            "A256GCM",
        ],
        Some(b"payload"),
    ));
    let auth_code = common::ok(&common::keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--sub",
            "ref-77",
            "--aud",
            "APPLE_PAY",
        ],
        None,
    ));
    let other = format!("file:{}", d.join("other.pem").display());
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &other],
        None,
    ));
    let other_public = file(
        "other.pub.pem",
        &common::ok(&common::keybound(
            &["keys", "public", "--key", &other],
            None,
        )),
    );
    let thales = fixture("thales_test.pub.pem");
    let thales = s(&thales);

    // Flex: a simulator that knows the merchant key; contexts good, forged, and of a kid it no longer has.
    let sim = ThreadedSimulator::start(SimulatorConfig::default()).unwrap();
    let api = sim.base_url().to_owned();
    sim.add_merchant_jwt_key(
        "kb_merchant",
        "serial-1",
        &std::fs::read_to_string(&public).unwrap(),
    );
    // A genuine context whose kid Flex no longer has: Flex rotated to a new kid since, and its key endpoint
    // answers 404 for the old one.
    let stale_ctx = file(
        "stale.jwt",
        &sim.issue_capture_context(SessionKind::Flex, &json!({})),
    );
    let old_kid = sim.signing_kid();
    assert_ne!(sim.rotate_signing_key_with_new_kid(), old_kid);
    let good_ctx = file(
        "good.jwt",
        &sim.issue_capture_context(SessionKind::Flex, &json!({})),
    );
    let other_ctx = file(
        "other.jwt",
        &sim.issue_capture_context(SessionKind::Flex, &json!({})),
    );
    sim.misbehave(Misbehavior::ForgedContext);
    let forged_ctx = file(
        "forged.jwt",
        &sim.issue_capture_context(SessionKind::Flex, &json!({})),
    );
    sim.behave();
    let transient = common::ok(&common::keybound(
        &[
            "flex",
            "tokenize",
            "--api",
            &api,
            "--allow-origin",
            &api,
            "--capture-context",
            &good_ctx,
            "--data",
            &file("data.json", FLEX_DATA),
            "--raw",
        ],
        None,
    ));
    let transient = file("transient.jwt", &transient);
    let bad_data = file(
        "bad-data.json",
        &FLEX_DATA.replace("4111111111111111", "4111111111111112"),
    );
    let data = d.join("data.json");
    let data = s(&data);
    // A server that answers every request with a web page (a proxy's or a login portal's), 200 OK.
    let portal_sim = ThreadedSimulator::start(SimulatorConfig::default()).unwrap();
    portal_sim.misbehave(Misbehavior::HtmlPages(u32::MAX));
    let portal = portal_sim.base_url().to_owned();
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    };

    let mut t = Table::default();
    // keys: nothing is judged; every failure is 2.
    t.row(
        2,
        "RSA-1024 refused",
        &["keys", "generate", "--key", &key, "--bits", "1024"],
    );
    t.row(
        2,
        "missing key file",
        &["keys", "public", "--key", &format!("file:{missing}")],
    );
    let export_dir = d.join("export");
    std::fs::create_dir(&export_dir).unwrap();
    std::fs::write(export_dir.join("public_key.pem"), "another key\n").unwrap();
    t.row(
        2,
        "export over another key's file",
        &["keys", "export", "--key", &key, "--out-dir", s(&export_dir)],
    );
    // keys import: a wrong password, a damaged file, an existing target: 2, nothing judged.
    let p12_key = key_provider::software::generate_pkcs8(key_provider::KeySpec::Ec(
        key_provider::EcCurve::P256,
    ))
    .unwrap();
    let p12 = keybound_pki::write_pkcs12(&p12_key, &[], "right").unwrap();
    let p12_path = d.join("merchant.p12");
    std::fs::write(&p12_path, &p12).unwrap();
    let cut_path = d.join("cut.p12");
    std::fs::write(&cut_path, &p12[..p12.len() / 2]).unwrap();
    let imported = format!("file:{}", d.join("imported.pem").display());
    let import = |from: &Path, to: &str| -> Vec<String> {
        [
            "keys",
            "import",
            "--from",
            s(from),
            "--key",
            to,
            "--password-source",
            "env:KB_P12_PW",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = import(&p12_path, &imported);
    t.row(
        2,
        "import: wrong P12 password",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .env("KB_P12_PW", "wrong");
    let args = import(&cut_path, &imported);
    t.row(
        2,
        "import: truncated P12",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .env("KB_P12_PW", "right");
    let args = import(&p12_path, &key);
    t.row(
        2,
        "import over an existing key file",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .env("KB_P12_PW", "right");
    let args = import(&p12_path, "pkcs11:token=keybound");
    t.row(
        2,
        "import into a pkcs11: URI without object=",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .env("KB_P12_PW", "right");
    t.row(
        2,
        "subject that is not a name",
        &["keys", "csr", "--key", &key, "--subject", "acmebank"],
    );
    t.row(
        2,
        "ES256 with an RSA key",
        &[
            "keys",
            "csr",
            "--key",
            &key,
            "--subject",
            "CN=a",
            "--alg",
            "ES256",
        ],
    );
    t.row(
        2,
        "bad --san",
        &[
            "keys",
            "certificate",
            "--key",
            &key,
            "--subject",
            "CN=a",
            "--san",
            "IP:300.1.1.1",
        ],
    );
    t.row(
        2,
        "--days 0",
        &[
            "keys",
            "certificate",
            "--key",
            &key,
            "--subject",
            "CN=a",
            "--days",
            "0",
        ],
    );
    // A certificate of another key is refused.
    let other_certificate = d.join("other.crt");
    common::ok(&common::keybound(
        &[
            "keys",
            "certificate",
            "--key",
            &other,
            "--subject",
            "CN=other",
            "--out",
            s(&other_certificate),
        ],
        None,
    ));
    t.row(
        2,
        "another key's certificate",
        &[
            "keys",
            "attach-cert",
            "--key",
            &key,
            "--cert",
            s(&other_certificate),
        ],
    );
    t.row(
        2,
        "no certificate kept",
        &["keys", "public", "--key", &key, "--format", "cert"],
    );
    t.row(
        2,
        "a key file is not a token",
        &["keys", "list", "--key", &key],
    );
    t.row(
        2,
        "a key file is not deleted by keybound",
        &["keys", "delete", "--key", &key, "--yes"],
    );
    t.row(
        2,
        "a key file has no versions to rotate",
        &["keys", "rotate", "--key", &key],
    );
    t.row(
        2,
        "a Transit address in clear text over the network",
        &[
            "keys",
            "rotate",
            "--key",
            "vault:issuer?addr=http://vault.example.com:8200",
        ],
    );
    // jwt
    t.row(
        2,
        "alg none",
        &[
            "jwt", "sign", "--key", &key, "--alg", "none", "--claims", &claims,
        ],
    );
    t.row(
        2,
        "--exp-in out of range",
        &[
            "jwt",
            "sign",
            "--key",
            &key,
            "--alg",
            "RS256",
            "--claims",
            &claims,
            "--exp-in",
            "18446744073709551615",
        ],
    );
    t.row(
        1,
        "tampered token",
        &["jwt", "verify", "--pubkey", &public, "--token", "-"],
    )
    .stdin(&tamper(&token));
    t.row(
        1,
        "another key's token",
        &["jwt", "verify", "--pubkey", &other_public, "--token", "-"],
    )
    .stdin(&token);
    t.row(
        2,
        "missing public key",
        &["jwt", "verify", "--pubkey", missing, "--token", "-"],
    )
    .stdin(&token);
    t.row(
        2,
        "--leeway out of range",
        &[
            "jwt",
            "verify",
            "--pubkey",
            &public,
            "--token",
            "-",
            "--leeway",
            "1000000000000",
        ],
    )
    .stdin(&token);
    t.row(1, "not a JWT", &["jwt", "decode", "--token", "-"])
        .stdin("not-a-jwt");
    t.row(
        2,
        "missing token file",
        &["jwt", "decode", "--token", missing],
    );
    // jwe
    t.row(
        2,
        "RSA1_5 refused",
        &[
            "jwe", "encrypt", "--pubkey", &public, "--alg", "RSA1_5", "--enc", "A256GCM",
        ],
    )
    .stdin("x");
    t.row(
        2,
        "missing public key",
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            missing,
            "--alg",
            "RSA-OAEP-256",
            "--enc",
            "A256GCM",
        ],
    )
    .stdin("x");
    t.row(1, "tampered JWE", &["jwe", "decrypt", "--key", &key])
        .stdin(&tamper(&jwe));
    t.row(
        1,
        "JWE for another key",
        &["jwe", "decrypt", "--key", &other],
    )
    .stdin(&jwe);
    t.row(
        2,
        "missing key file",
        &["jwe", "decrypt", "--key", &format!("file:{missing}")],
    )
    .stdin(&jwe);
    // flex
    t.row(
        1,
        "forged capture context",
        &[
            "flex",
            "verify-context",
            "--api",
            &api,
            "--capture-context",
            &forged_ctx,
        ],
    );
    t.row(
        1,
        "capture context with a kid Flex does not have",
        &[
            "flex",
            "verify-context",
            "--api",
            &api,
            "--capture-context",
            &stale_ctx,
        ],
    );
    t.row(
        2,
        "Flex unreachable",
        &[
            "flex",
            "verify-context",
            "--api",
            &dead,
            "--capture-context",
            &good_ctx,
        ],
    );
    t.row(
        2,
        "unknown environment",
        &[
            "flex",
            "verify-context",
            "--api",
            "cybersource-staging",
            "--capture-context",
            &good_ctx,
        ],
    );
    t.row(
        1,
        "tokens origin not allowed",
        &[
            "flex",
            "tokenize",
            "--api",
            &api,
            "--capture-context",
            &other_ctx,
            "--data",
            data,
        ],
    );
    t.row(
        1,
        "forged capture context",
        &[
            "flex",
            "tokenize",
            "--api",
            &api,
            "--allow-origin",
            &api,
            "--capture-context",
            &forged_ctx,
            "--data",
            data,
        ],
    );
    t.row(
        2,
        "invalid card data",
        &[
            "flex",
            "tokenize",
            "--api",
            &api,
            "--allow-origin",
            &api,
            "--capture-context",
            &other_ctx,
            "--data",
            &bad_data,
        ],
    );
    t.row(
        1,
        "token of another capture context",
        &[
            "flex",
            "verify-token",
            "--api",
            &api,
            "--capture-context",
            &other_ctx,
            "--token",
            &transient,
        ],
    );
    t.row(
        2,
        "missing token file",
        &[
            "flex",
            "verify-token",
            "--api",
            &api,
            "--capture-context",
            &good_ctx,
            "--token",
            missing,
        ],
    );
    let unregistered = format!("file:{}", d.join("unregistered.pem").display());
    common::ok(&common::keybound(
        &["keys", "generate", "--key", &unregistered],
        None,
    ));
    t.row(
        1,
        "merchant key Flex does not know (401)",
        &[
            "flex",
            "capture-context",
            "--api",
            &api,
            "--merchant-id",
            "kb_merchant",
            "--key-id",
            "serial-1",
            "--key",
            &unregistered,
        ],
    );
    t.row(
        1,
        "an HTML page instead of a capture context",
        &[
            "flex",
            "capture-context",
            "--api",
            &portal,
            "--merchant-id",
            "kb_merchant",
            "--key-id",
            "serial-1",
            "--key",
            &key,
        ],
    );
    t.row(
        2,
        "no merchant credential",
        &[
            "flex",
            "capture-context",
            "--api",
            &api,
            "--merchant-id",
            "kb_merchant",
            "--key-id",
            "serial-1",
        ],
    );
    t.row(
        2,
        "Flex unreachable",
        &[
            "flex",
            "capture-context",
            "--api",
            &dead,
            "--merchant-id",
            "kb_merchant",
            "--key-id",
            "serial-1",
            "--key",
            &key,
        ],
    );
    // flex open-credentials: a Click to Pay EPC encrypted to the RSA key above.
    let uc_ctx_text = sim.issue_capture_context(SessionKind::UnifiedCheckout, &json!({}));
    let uc_ctx = file("uc-ctx.jwt", &uc_ctx_text);
    let psp_pem = std::fs::read_to_string(&public).unwrap();
    let good = sim
        .click_to_pay(
            &uc_ctx_text,
            &psp_pem,
            &flex_simulator::ClickToPay::default(),
        )
        .unwrap();
    let mut unbound = flex_simulator::ClickToPay::default();
    unbound.header_jti = Some("NotTheReference00000".into());
    let unbound = sim.click_to_pay(&uc_ctx_text, &psp_pem, &unbound).unwrap();
    let c2p_token = file("c2p-token.jwt", &good.transient_token);
    let unbound_token = file("c2p-unbound-token.jwt", &unbound.transient_token);
    let open = |key: &str, token: &str| -> Vec<String> {
        [
            "flex",
            "open-credentials",
            "--key",
            key,
            "--token",
            token,
            "--capture-context",
            &uc_ctx,
            "--api",
            &api,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = open(&key, &unbound_token);
    t.row(
        1,
        "EPC jti is not the transient token's paymentCredentialsReference",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .stdin(&unbound.epc);
    let args = open(&key, &c2p_token);
    t.row(
        1,
        "tampered EPC",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .stdin(&tamper(&good.epc));
    let args = open(&format!("file:{missing}"), &c2p_token);
    t.row(
        2,
        "PSP key file missing",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .stdin(&good.epc);
    // keycloak (the refusal needs the OpenID Connect server, below)
    let token_url = "https://sso.invalid/realms/r/protocol/openid-connect/token";
    t.row(
        2,
        "password variable not set",
        &[
            "keycloak",
            "token",
            "--token-url",
            token_url,
            "--client-id",
            "c",
            "--key",
            &key,
            "--username",
            "u",
            "--password-env",
            "KB_EXIT_CODES_UNSET",
        ],
    );
    t.row(
        2,
        "token endpoint unreachable",
        &[
            "keycloak",
            "token",
            "--token-url",
            &format!("{dead}/realms/r/protocol/openid-connect/token"),
            "--client-id",
            "c",
            "--key",
            &key,
            "--username",
            "u",
            "--password-env",
            "KB_PASSWORD",
        ],
    )
    .env("KB_PASSWORD", "p");
    t.row(
        1,
        "an HTML page instead of a token response",
        &[
            "keycloak",
            "token",
            "--token-url",
            &format!("{portal}/realms/r/protocol/openid-connect/token"),
            "--client-id",
            "c",
            "--key",
            &key,
            "--username",
            "u",
            "--password-env",
            "KB_PASSWORD",
        ],
    )
    .env("KB_PASSWORD", "p");
    t.row(
        2,
        "no token URL",
        &["keycloak", "assertion", "--client-id", "c", "--key", &key],
    );
    // provisioning
    t.row(
        2,
        "ttl out of range",
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--sub",
            "ref-77",
            "--aud",
            "APPLE_PAY",
            "--ttl",
            "18446744073709551615",
        ],
    );
    t.row(
        1,
        "batch line refused",
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--batch",
            "-",
        ],
    )
    .stdin("{\"sub\":\"a\",\"aud\":\"APPLE_PAY\"}\n{\"sub\":\"b\",\"aud\":\"WALLET\"}\n");
    t.row(
        2,
        "missing batch file",
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "I",
            "--batch",
            missing,
        ],
    );
    t.row(
        2,
        "invalid card data",
        &[
            "provisioning",
            "encrypt-card",
            "--format",
            "jwe",
            "--pubkey",
            thales,
            "--issuer-id",
            "I",
            "--card",
            "-",
        ],
    )
    .stdin(&CARD.replace("4111111111111111", "4111111111111112"));
    t.row(
        2,
        "EC issuer key",
        &[
            "provisioning",
            "push",
            "--format",
            "jwe",
            "--key",
            &ec_key(d),
            "--pubkey",
            thales,
            "--issuer-id",
            "I",
            "--aud",
            "APPLE_PAY",
            "--card",
            "-",
        ],
    )
    .stdin(CARD);
    t.row(
        1,
        "another issuer's code",
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            &other_public,
            "--token",
            "-",
        ],
    )
    .stdin(&auth_code);
    t.row(
        1,
        "not CMS EnvelopedData",
        &[
            "provisioning",
            "decrypt",
            "--key",
            &key,
            "--encoding",
            "hex",
        ],
    )
    .stdin("300302010a");
    t.row(
        2,
        "decrypt: unknown encoding",
        &[
            "provisioning",
            "decrypt",
            "--key",
            &key,
            "--encoding",
            "pem",
        ],
    )
    .stdin("");
    t.row(
        1,
        "tampered code",
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            &public,
            "--token",
            "-",
        ],
    )
    .stdin(&tamper(&auth_code));
    t.row(
        2,
        "--leeway out of range",
        &[
            "provisioning",
            "verify-auth-code",
            "--pubkey",
            &public,
            "--token",
            "-",
            "--leeway",
            "1000000000000",
        ],
    )
    .stdin(&auth_code);

    let server = keycloak_refusal(&mut t, &key, &public);
    let hsm = hsm_rows(&mut t, d, &api, thales);

    // Run the table; report every row that disagrees, not only the first.
    let mut wrong = Vec::new();
    for row in &t.0 {
        let args: Vec<&str> = row.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = row
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = common::keybound_env(&args, row.stdin.as_deref().map(str::as_bytes), &env);
        let stderr = common::stderr(&out);
        if out.status.code() != Some(row.code) || stderr.trim().is_empty() {
            wrong.push(format!(
                "{} ({}): exit {:?}, expected {}: {}",
                row.command(),
                row.what,
                out.status.code(),
                row.code,
                stderr.lines().next().unwrap_or("(nothing on stderr)")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "exit codes off the rule:\n{}",
        wrong.join("\n")
    );

    // Every command has a row that exits 2, and every command that judges input one that exits 1.
    let judging: BTreeSet<&str> = [
        "jwt verify",
        "jwt decode",
        "jwe decrypt",
        "flex verify-context",
        "flex tokenize",
        "flex verify-token",
        "flex capture-context",
        "flex open-credentials",
        "keycloak token",
        "provisioning auth-code",
        "provisioning verify-auth-code",
        "provisioning decrypt",
    ]
    .into();
    let covered = |code: i32| -> BTreeSet<String> {
        t.0.iter()
            .filter(|r| r.code == code)
            .map(Row::command)
            .collect()
    };
    let (ones, twos) = (covered(1), covered(2));
    let leaves = common::leaf_commands();
    assert!(leaves.len() >= 18, "{leaves:?}");
    for command in &leaves {
        assert!(twos.contains(command), "{command}: no row that exits 2");
        let needs_one = judging.contains(command.as_str());
        assert_eq!(
            ones.contains(command),
            needs_one,
            "{command}: a row that exits 1 exactly when the command judges input"
        );
    }
    assert!(
        judging.iter().all(|c| leaves.iter().any(|l| l == c)),
        "{judging:?} vs {leaves:?}"
    );
    if hsm {
        let hsm_commands: BTreeSet<String> =
            t.0.iter()
                .filter(|r| r.what.starts_with("HSM"))
                .map(Row::command)
                .collect();
        for signing in [
            "jwt sign",
            "jwe decrypt",
            "flex capture-context",
            "keycloak token",
            "keycloak assertion",
            "provisioning auth-code",
            "provisioning push",
        ] {
            assert!(hsm_commands.contains(signing), "{signing}: no HSM row");
        }
    }
    drop(server);
}

fn ec_key(dir: &Path) -> String {
    let key = format!("file:{}", dir.join("ec.pem").display());
    if !dir.join("ec.pem").exists() {
        common::ok(&common::keybound(
            &["keys", "generate", "--key", &key, "--kty", "EC"],
            None,
        ));
    }
    key
}

/// The row only the real OpenID Connect server can give: Keycloak refusing a wrong password (exit 1).
fn keycloak_refusal(
    t: &mut Table,
    key: &str,
    public: &str,
) -> Option<keybound_test_support::oidc::OidcServer> {
    use keybound_test_support::oidc::{OidcServer, Realm, ServerConfig, jwks_of};
    let public_key =
        key_provider::PublicKey::from_pem(&std::fs::read_to_string(public).unwrap()).unwrap();
    let config = ServerConfig::default().realm(
        "lender",
        Realm::default()
            .key_client("example-bank", &jwks_of(&public_key), &["password"])
            .user("user@bank.example.com", "the-right-Pa55word"),
    );
    let server = OidcServer::start("exit codes: keycloak refusal", &config)?;
    let url = server.token_url("lender");
    t.row(
        1,
        "wrong password",
        &[
            "keycloak",
            "token",
            "--token-url",
            &url,
            "--client-id",
            "example-bank",
            "--key",
            key,
            "--username",
            "user@bank.example.com",
            "--password-env",
            "KB_PASSWORD",
        ],
    )
    .env("KB_PASSWORD", "a-wrong-Pa55word");
    Some(server)
}

/// Rows where the HSM itself fails the operation: a SoftHSM key whose `CKA_SIGN` (or `CKA_DECRYPT`) was
/// turned off after it was made, so the key opens and the token refuses `C_SignInit` / `C_DecryptInit`.
/// Returns whether they were added (SoftHSM set up by `cargo xtask softhsm-test`).
#[cfg(feature = "pkcs11")]
fn hsm_rows(t: &mut Table, dir: &Path, api: &str, thales: &str) -> bool {
    use cryptoki::object::{Attribute, ObjectClass};
    use key_provider::OpenOptions;
    use keybound_test_support::pkcs11::{self as testing, TestToken};

    let Some(token) = TestToken::fresh("exit codes: HSM failures", "exit-codes") else {
        return false;
    };
    let no_sign = token.key_ref("no-sign");
    let no_decrypt = token.key_ref("no-decrypt");
    for reference in [&no_sign, &no_decrypt] {
        common::ok(&common::keybound(
            &["keys", "generate", "--key", reference],
            None,
        ));
    }
    // Log this process in (opening a key does), then turn the permissions off in the token.
    let opened = key_provider::open(&no_sign.parse().unwrap(), &OpenOptions::new()).unwrap();
    let ctx = testing::context(&token.module).unwrap();
    let slot = testing::slot(&token.uri("no-sign"), &OpenOptions::new()).unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    for (label, off) in [
        ("no-sign", Attribute::Sign(false)),
        ("no-decrypt", Attribute::Decrypt(false)),
    ] {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1, "{label}");
        session.update_attributes(found[0], &[off]).unwrap();
    }
    drop(session);
    drop(opened);
    // The JWE to decrypt, for the no-decrypt key.
    let public = dir.join("no-decrypt.pub.pem");
    std::fs::write(
        &public,
        common::ok(&common::keybound(
            &["keys", "public", "--key", &no_decrypt],
            None,
        )),
    )
    .unwrap();
    let jwe = common::ok(&common::keybound(
        &[
            "jwe",
            "encrypt",
            "--pubkey",
            s(&public),
            "--alg",
            "RSA-OAEP",
            "--enc",
            "A256GCM",
        ],
        Some(b"payload"),
    ));
    let claims = dir.join("claims.json");
    let token_url = "https://sso.invalid/realms/r/protocol/openid-connect/token";
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "jwt",
            "sign",
            "--key",
            &no_sign,
            "--alg",
            "RS256",
            "--claims",
            s(&claims),
        ],
    );
    t.row(
        2,
        "HSM refuses to decrypt",
        &["jwe", "decrypt", "--key", &no_decrypt],
    )
    .stdin(&jwe);
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "flex",
            "capture-context",
            "--api",
            api,
            "--merchant-id",
            "kb_merchant",
            "--key-id",
            "serial-1",
            "--key",
            &no_sign,
        ],
    );
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "keycloak",
            "token",
            "--token-url",
            token_url,
            "--client-id",
            "c",
            "--key",
            &no_sign,
            "--username",
            "u",
            "--password-env",
            "KB_PASSWORD",
        ],
    )
    .env("KB_PASSWORD", "p");
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "keycloak",
            "assertion",
            "--token-url",
            token_url,
            "--client-id",
            "c",
            "--key",
            &no_sign,
        ],
    );
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "provisioning",
            "auth-code",
            "--key",
            &no_sign,
            "--issuer-id",
            "I",
            "--sub",
            "ref-77",
            "--aud",
            "APPLE_PAY",
        ],
    );
    t.row(
        2,
        "HSM refuses to sign (batch)",
        &[
            "provisioning",
            "auth-code",
            "--key",
            &no_sign,
            "--issuer-id",
            "I",
            "--batch",
            "-",
        ],
    )
    .stdin("{\"sub\":\"a\",\"aud\":\"APPLE_PAY\"}\n{\"sub\":\"b\",\"aud\":\"WALLET\"}\n");
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "provisioning",
            "push",
            "--format",
            "jwe",
            "--key",
            &no_sign,
            "--pubkey",
            thales,
            "--issuer-id",
            "I",
            "--aud",
            "APPLE_PAY",
            "--card",
            "-",
        ],
    )
    .stdin(CARD);
    t.row(
        2,
        "HSM refuses to sign",
        &["keys", "csr", "--key", &no_sign, "--subject", "CN=a"],
    );
    t.row(
        2,
        "HSM refuses to sign",
        &[
            "keys",
            "certificate",
            "--key",
            &no_sign,
            "--subject",
            "CN=a",
            "--store",
        ],
    );
    true
}

#[cfg(not(feature = "pkcs11"))]
fn hsm_rows(_: &mut Table, _: &Path, _: &str, _: &str) -> bool {
    false
}

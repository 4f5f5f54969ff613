//! The `keybound` binary over the key-service backends, against real servers started by
//! `keybound-test-support` (feature `keyservices`): OpenBao's `bao server -dev` (Transit) and moto's KMS, on
//! free loopback ports. A missing server is a loud SKIPPED line, or a failure with
//! `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1` (set by `cargo xtask test`).
//!
//! What is checked, each time by an implementation independent of keybound's own JOSE code (jsonwebtoken
//! verifies the tokens, josekit — OpenSSL — makes the JWEs):
//! - `keys generate --key vault:NAME` (RSA and EC) then `jwt sign` PS256/RS256/ES256/ES384; `keys public`,
//!   `keys export`; an existing name refused (exit 2);
//! - `keys generate --key aws-kms:alias/NAME --kty EC` then ES256 (and RS256 with an RSA key) on moto; PS256
//!   on moto is caught by verify-after-sign (moto signs PSS with the maximum salt length): exit 2, one line;
//! - `jwe decrypt --key vault:…` of an RSA-OAEP-256 + A256GCM JWE josekit made to `keys public`'s key;
//! - `keys rotate`: the new version's thumbprint printed, the default `kid` of an authorization code follows
//!   it, a JWE made to the old version still decrypts;
//! - a wrong Vault token: exit 2, one line, the token not printed;
//! - `provisioning auth-code --batch` of 200 lines through Transit (and 100 through KMS) at the key-service
//!   default of 16 in flight, every code verifying;
//!   the same through a proxy that refuses connections for a moment mid-batch (every line signed, thanks to
//!   retries) and for the rest of the batch (exit 2, every input line accounted for, the summary saying how
//!   many lines were written);
//! - the key-management commands that have no meaning for a key service (`keys list`, `delete`, `import`,
//!   `attach-cert`, `public --format cert`, `certificate --store`) and `keys rotate` of a non-Transit key
//!   refuse with exit 2 and one clear line (these need no server).

#![cfg(any(feature = "vault", feature = "aws-kms"))]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{code, keybound_env, ok, stderr};
use serde_json::Value;

/// Runs `keybound ARGS` with `env` (owned pairs, as the servers hand them out).
fn run(args: &[&str], stdin: Option<&[u8]>, env: &[(String, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    keybound_env(args, stdin, &env)
}

/// The header and claims of `jwt`, verified by jsonwebtoken with `alg` against the SPKI PEM `public`.
#[track_caller]
fn verified(public: &str, alg: &str, jwt: &str) -> (Value, Value) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let algorithm: Algorithm = alg.parse().unwrap();
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(public.as_bytes()),
        _ => DecodingKey::from_rsa_pem(public.as_bytes()),
    }
    .unwrap();
    let mut validation = Validation::new(algorithm);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(jwt.trim(), &key, &validation)
        .unwrap_or_else(|e| panic!("jsonwebtoken rejects the {alg} token {jwt}: {e}"));
    let header = serde_json::to_value(&data.header).unwrap();
    (header, data.claims)
}

/// The `thumbprint=` value of a `keys generate` / `keys rotate` line.
#[track_caller]
fn thumbprint_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("thumbprint="))
        .unwrap_or_else(|| panic!("no thumbprint in {line:?}"))
        .to_owned()
}

/// Asserts a failure: exit 2, one line on stderr (and perhaps `  hint: …` lines) containing every one of
/// `needles`.
#[track_caller]
fn fails_with(out: &std::process::Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(code(out), 2, "{err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert!(
        lines[0].starts_with("keybound: ") && lines[1..].iter().all(|l| l.starts_with("  hint: ")),
        "one line: {err}"
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Signs `claims` with `key` and `alg` through `keybound jwt sign`.
#[track_caller]
fn jwt_sign(key: &str, alg: &str, env: &[(String, String)]) -> String {
    ok(&run(
        &[
            "jwt", "sign", "--key", key, "--alg", alg, "--claims", "-", "--exp-in", "300",
        ],
        Some(br#"{"sub":"example-bank","iss":"keybound-test"}"#),
        env,
    ))
}

/// The batch input: `n` lines, each a distinct card reference for Apple Pay.
fn batch_input(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("batch.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for i in 1..=n {
        writeln!(file, r#"{{"sub":"card-{i:04}","aud":"APPLE_PAY"}}"#).unwrap();
    }
    path
}

/// Runs the batch through `env`, its input fed on standard input (`--batch -`). With `hold = Some((k,
/// at_hold))`, only the first `k` input lines are written at first; once `k` output lines are back,
/// `at_hold` runs (to switch a proxy at an exact point of the batch, whatever the machine's speed) and then
/// the rest is written. Returns the output lines, the exit code and stderr.
fn batch(
    key: &str,
    input: &Path,
    concurrency: Option<&str>,
    env: &[(String, String)],
    hold: Option<(usize, Box<dyn FnOnce() + '_>)>,
) -> (Vec<Value>, i32, String) {
    let mut args = vec![
        "provisioning",
        "auth-code",
        "--key",
        key,
        "--issuer-id",
        "ACMEBANK01",
        "--batch",
        "-",
    ];
    if let Some(n) = concurrency {
        args.extend(["--concurrency", n]);
    }
    let input_lines: Vec<String> = std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let (hold_at, mut at_hold) = match hold {
        Some((k, f)) => (k, Some(f)),
        None => (input_lines.len(), None),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(&args)
        .env_remove("KEYBOUND_CONFIG")
        .env_remove("KEYBOUND_LOG")
        .env_remove("KEYBOUND_LOG_FORMAT")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let (first, rest) = input_lines.split_at(hold_at.min(input_lines.len()));
        for line in first {
            writeln!(stdin, "{line}").unwrap();
        }
        stdin.flush().unwrap();
        if !rest.is_empty() {
            // Wait for the go (or for the reader to give up), then the rest.
            let _ = go_rx.recv();
            for line in rest {
                // The batch may have stopped reading; a broken pipe is then its answer, seen below.
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
            }
        }
        drop(stdin);
    });
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr_pipe), &mut text).unwrap();
        text
    });
    let mut lines = Vec::new();
    if hold_at == 0
        && let Some(f) = at_hold.take()
    {
        f();
        let _ = go_tx.send(());
    }
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        lines.push(serde_json::from_str::<Value>(&line).unwrap());
        if lines.len() == hold_at
            && let Some(f) = at_hold.take()
        {
            f();
            let _ = go_tx.send(());
        }
    }
    drop(go_tx);
    writer.join().unwrap();
    let status = child.wait().unwrap();
    (lines, status.code().unwrap(), stderr_reader.join().unwrap())
}

/// Every output line `i` answers input line `i + 1`: a code that jsonwebtoken verifies under `public`
/// for `card-NNNN`, or an error line naming line `i + 1` and `backend`. Returns (signed, errors).
fn check_lines(lines: &[Value], n: usize, public: &str, backend: &str) -> (usize, usize) {
    assert_eq!(lines.len(), n, "one output line per input line");
    let (mut signed, mut errors) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let sub = format!("card-{:04}", i + 1);
        if let Some(jwt) = line["jwt"].as_str() {
            assert_eq!(line["sub"], sub.as_str(), "{line}");
            let (header, claims) = verified(public, "RS256", jwt);
            assert_eq!(claims["sub"], sub.as_str());
            assert_eq!(claims["aud"], "APPLE_PAY");
            assert_eq!(header["alg"], "RS256");
            signed += 1;
        } else {
            assert_eq!(line["line"], i + 1, "{line}");
            assert_eq!(line["sub"], sub.as_str(), "{line}");
            assert!(line["error"].as_str().unwrap().contains(backend), "{line}");
            errors += 1;
        }
    }
    (signed, errors)
}

#[cfg(feature = "vault")]
mod vault {
    use std::time::Duration;

    use keybound_test_support::keyservices::{BaoServer, FaultProxy, Mode};

    use super::*;

    /// JWE (RSA-OAEP-256 + A256GCM) of `plaintext` to the RSA public key `pem`, made by josekit (OpenSSL).
    fn josekit_jwe(pem: &str, plaintext: &[u8]) -> String {
        let mut header = josekit::jwe::JweHeader::new();
        header.set_content_encryption("A256GCM");
        let encrypter = josekit::jwe::RSA_OAEP_256
            .encrypter_from_pem(pem.as_bytes())
            .unwrap();
        josekit::jwe::serialize_compact(plaintext, &header, &encrypter).unwrap()
    }

    /// Item 1 and "done when": Transit keys made by `keys generate` sign JWTs that jsonwebtoken accepts, for
    /// every algorithm family; `keys public`/`export` give the key whose thumbprint `generate` printed; a
    /// second `generate` of the same name is refused.
    #[test]
    fn vault_keys_generated_by_keybound_sign_tokens_independent_verifiers_accept() {
        let Some(bao) = BaoServer::start("vault_keys_generated_by_keybound_sign_tokens") else {
            return;
        };
        let env = bao.vault_env();
        let line = ok(&run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "RSA"],
            None,
            &env,
        ));
        assert!(line.contains("RSA-2048"), "{line}");
        assert!(line.starts_with("vault:"), "{line}");
        let thumbprint = thumbprint_of(&line);
        let public = ok(&run(
            &["keys", "public", "--key", "vault:issuer"],
            None,
            &env,
        ));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        let jwk: Value = serde_json::from_str(&ok(&run(
            &["keys", "public", "--key", "vault:issuer", "--format", "jwk"],
            None,
            &env,
        )))
        .unwrap();
        assert_eq!(jwk["kid"], thumbprint.as_str(), "{jwk}");
        assert!(jwk.get("x5c").is_none(), "{jwk}");
        // The key Transit holds is the one keybound describes: Transit's own key read agrees.
        let (status, read) = bao.admin_request("GET", "transit/keys/issuer", None);
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["data"]["type"], "rsa-2048", "{read}");
        assert_eq!(read["data"]["exportable"], false, "{read}");
        let transit_pem = read["data"]["keys"]["1"]["public_key"].as_str().unwrap();
        assert_eq!(transit_pem.trim(), public.trim());

        for alg in ["PS256", "RS256", "PS384", "RS512"] {
            let token = jwt_sign("vault:issuer", alg, &env);
            let (header, claims) = verified(&public, alg, &token);
            assert_eq!(header["alg"], alg);
            assert_eq!(claims["sub"], "example-bank");
        }

        // An EC key: ES256 (Transit's JWS marshaling, checked by jsonwebtoken), and P-384 for ES384.
        let line = ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "vault:issuer-ec",
                "--kty",
                "EC",
            ],
            None,
            &env,
        ));
        assert!(line.contains("P-256"), "{line}");
        let ec_public = ok(&run(
            &["keys", "public", "--key", "vault:issuer-ec"],
            None,
            &env,
        ));
        verified(
            &ec_public,
            "ES256",
            &jwt_sign("vault:issuer-ec", "ES256", &env),
        );
        ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "vault:issuer-p384",
                "--kty",
                "EC",
                "--crv",
                "P-384",
            ],
            None,
            &env,
        ));
        let p384 = ok(&run(
            &["keys", "public", "--key", "vault:issuer-p384"],
            None,
            &env,
        ));
        verified(
            &p384,
            "ES384",
            &jwt_sign("vault:issuer-p384", "ES384", &env),
        );

        // keys export: the same PEM, and the digest line openssl prints.
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("onboarding");
        ok(&run(
            &[
                "keys",
                "export",
                "--key",
                "vault:issuer",
                "--out-dir",
                out_dir.to_str().unwrap(),
            ],
            None,
            &env,
        ));
        assert_eq!(
            std::fs::read_to_string(out_dir.join("public_key.pem")).unwrap(),
            public
        );

        // The name is taken: refused, and the key is unchanged (still version 1, the same public key).
        let again = run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "EC"],
            None,
            &env,
        );
        let err = fails_with(&again, &["issuer"]);
        assert!(err.to_lowercase().contains("exist"), "{err}");
        assert_eq!(
            ok(&run(
                &["keys", "public", "--key", "vault:issuer"],
                None,
                &env
            )),
            public
        );
        // The reference can carry the address and where the token is, instead of VAULT_ADDR/VAULT_TOKEN.
        let reference = format!(
            "vault:issuer?addr={}&token-source=env:ISSUER_VAULT_TOKEN",
            bao.addr()
        );
        let token = ok(&run(
            &[
                "jwt", "sign", "--key", &reference, "--alg", "PS256", "--claims", "-",
            ],
            Some(b"{}"),
            &[("ISSUER_VAULT_TOKEN".to_owned(), bao.token().to_owned())],
        ));
        verified(&public, "PS256", &token);
    }

    /// "Done when": `jwe decrypt --key vault:…` opens an RSA-OAEP-256 + A256GCM JWE that josekit made to the
    /// key's public key as `keys public` prints it.
    #[test]
    fn vault_decrypts_a_jwe_josekit_made_to_its_public_key() {
        let Some(bao) = BaoServer::start("vault_decrypts_a_jwe_josekit_made") else {
            return;
        };
        let env = bao.vault_env();
        ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "vault:psp",
                "--kty",
                "RSA",
                "--bits",
                "3072",
                "--usage",
                "decrypt",
            ],
            None,
            &env,
        ));
        let public = ok(&run(&["keys", "public", "--key", "vault:psp"], None, &env));
        let plaintext = br#"{"fpan":"4111111111111111","exp":"1230"}"#;
        let jwe = josekit_jwe(&public, plaintext);
        let out = run(
            &["jwe", "decrypt", "--key", "vault:psp"],
            Some(jwe.as_bytes()),
            &env,
        );
        assert_eq!(ok(&out).as_bytes(), plaintext);
        // A JWE to another key is judged and rejected (exit 1), not a backend failure.
        let other = josekit::jwe::RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let other_pem = String::from_utf8(other.to_pem_public_key()).unwrap();
        let out = run(
            &["jwe", "decrypt", "--key", "vault:psp"],
            Some(josekit_jwe(&other_pem, plaintext).as_bytes()),
            &env,
        );
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }

    /// Item 2, key versions: `keys rotate` prints the new version and its thumbprint; an authorization code
    /// signed afterwards carries that thumbprint as its default `kid` and verifies under the new public key
    /// (not the old one); a JWE made to version 1 still decrypts.
    #[test]
    fn vault_rotation_moves_the_kid_and_old_jwes_still_decrypt() {
        let Some(bao) = BaoServer::start("vault_rotation_moves_the_kid") else {
            return;
        };
        let env = bao.vault_env();
        let line = ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "vault:rot",
                "--kty",
                "RSA",
                "--usage",
                "sign,decrypt",
            ],
            None,
            &env,
        ));
        let v1_thumbprint = thumbprint_of(&line);
        let v1_public = ok(&run(&["keys", "public", "--key", "vault:rot"], None, &env));
        let auth_code = |env: &[(String, String)]| {
            ok(&run(
                &[
                    "provisioning",
                    "auth-code",
                    "--key",
                    "vault:rot",
                    "--issuer-id",
                    "ACMEBANK01",
                    "--sub",
                    "CARDREF1",
                    "--aud",
                    "APPLE_PAY",
                ],
                None,
                env,
            ))
        };
        let (header, _) = verified(&v1_public, "RS256", &auth_code(&env));
        assert_eq!(header["kid"], v1_thumbprint.as_str());
        let old_jwe = josekit_jwe(&v1_public, b"to version 1");

        let rotated = ok(&run(&["keys", "rotate", "--key", "vault:rot"], None, &env));
        assert!(
            rotated.starts_with("vault:rot version=2 RSA-2048 thumbprint="),
            "{rotated}"
        );
        let v2_thumbprint = thumbprint_of(&rotated);
        assert_ne!(v2_thumbprint, v1_thumbprint);
        let v2_public = ok(&run(&["keys", "public", "--key", "vault:rot"], None, &env));
        assert_ne!(v2_public, v1_public);
        let (status, read) = bao.admin_request("GET", "transit/keys/rot", None);
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["data"]["latest_version"], 2, "{read}");
        assert_eq!(
            read["data"]["keys"]["2"]["public_key"]
                .as_str()
                .unwrap()
                .trim(),
            v2_public.trim()
        );

        let code_v2 = auth_code(&env);
        let (header, claims) = verified(&v2_public, "RS256", &code_v2);
        assert_eq!(header["kid"], v2_thumbprint.as_str());
        assert_eq!(claims["iss"], "ACMEBANK01");
        // Signed by version 2: the old public key does not verify it.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        assert!(
            jsonwebtoken::decode::<Value>(
                code_v2.trim(),
                &jsonwebtoken::DecodingKey::from_rsa_pem(v1_public.as_bytes()).unwrap(),
                &validation,
            )
            .is_err()
        );

        for (jwe, expected) in [
            (old_jwe, b"to version 1".as_slice()),
            (josekit_jwe(&v2_public, b"to version 2"), b"to version 2"),
        ] {
            let out = run(
                &["jwe", "decrypt", "--key", "vault:rot"],
                Some(jwe.as_bytes()),
                &env,
            );
            assert_eq!(ok(&out).as_bytes(), expected);
        }
        let again = ok(&run(&["keys", "rotate", "--key", "vault:rot"], None, &env));
        assert!(again.starts_with("vault:rot version=3 "), "{again}");
    }

    /// Item 3: a refused token is one line, exit 2, with no retry storm and without the token in it; a
    /// missing key likewise; `keys rotate` of a key that does not exist too.
    #[test]
    fn vault_refusals_are_one_line_and_never_show_the_token() {
        let Some(bao) = BaoServer::start("vault_refusals_are_one_line") else {
            return;
        };
        let env = bao.vault_env();
        ok(&run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "RSA"],
            None,
            &env,
        ));
        let wrong_token = "hvs.wrong-token-that-must-not-be-printed-0123456789";
        let wrong = [
            ("VAULT_ADDR".to_owned(), bao.addr()),
            ("VAULT_TOKEN".to_owned(), wrong_token.to_owned()),
        ];
        for args in [
            &[
                "jwt",
                "sign",
                "--key",
                "vault:issuer",
                "--alg",
                "PS256",
                "--claims",
                "-",
            ][..],
            &["keys", "public", "--key", "vault:issuer"],
            &["keys", "generate", "--key", "vault:other", "--kty", "RSA"],
            &["keys", "rotate", "--key", "vault:issuer"],
        ] {
            let out = run(args, Some(b"{}"), &wrong);
            let err = fails_with(&out, &["vault"]);
            assert!(!err.contains(wrong_token), "{args:?}: {err}");
            assert!(!err.contains(bao.token()), "{args:?}: {err}");
        }
        // An EC key cannot decrypt: refused before the server is asked.
        let out = run(
            &[
                "keys", "generate", "--key", "vault:ec", "--kty", "EC", "--usage", "decrypt",
            ],
            None,
            &env,
        );
        fails_with(&out, &["EC"]);
        let (status, _) = bao.admin_request("GET", "transit/keys/ec", None);
        assert_eq!(status, 404);
        // Nothing was rotated or created with the wrong token.
        let (_, read) = bao.admin_request("GET", "transit/keys/issuer", None);
        assert_eq!(read["data"]["latest_version"], 1, "{read}");
        let (status, _) = bao.admin_request("GET", "transit/keys/other", None);
        assert_eq!(status, 404);

        // With the right token: a key that does not exist.
        for args in [
            &["keys", "public", "--key", "vault:no-such-key"][..],
            &["keys", "rotate", "--key", "vault:no-such-key"],
        ] {
            let out = run(args, None, &env);
            let err = fails_with(&out, &["no-such-key"]);
            assert!(!err.contains(bao.token()), "{err}");
        }
        // No token at all.
        let out = run(
            &["keys", "public", "--key", "vault:issuer"],
            None,
            &[("VAULT_ADDR".to_owned(), bao.addr())],
        );
        fails_with(&out, &["VAULT_TOKEN"]);
    }

    /// Item 3 under load: a batch of 200 codes through Transit with 16 requests in flight — the default for
    /// a key-service key, so no `--concurrency` — every one verifying under the key. Through a counting
    /// proxy: more requests were in flight at once than the CPU-count default would allow (2 on the 2-core
    /// test machine), and never more than 16. (Connections are no measure of that: the HTTP client may open
    /// one more while another is on its way back to the pool.)
    #[test]
    fn vault_batch_signs_every_line_with_sixteen_in_flight() {
        let Some(bao) = BaoServer::start("vault_batch_signs_every_line") else {
            return;
        };
        ok(&run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "RSA"],
            None,
            &bao.vault_env(),
        ));
        let public = ok(&run(
            &["keys", "public", "--key", "vault:issuer"],
            None,
            &bao.vault_env(),
        ));
        let proxy = FaultProxy::start(&bao.addr());
        let env = [
            ("VAULT_ADDR".to_owned(), proxy.url()),
            ("VAULT_TOKEN".to_owned(), bao.token().to_owned()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let input = batch_input(dir.path(), 200);
        let (lines, exit, err) = batch("vault:issuer", &input, None, &env, None);
        assert_eq!(exit, 0, "{err}");
        assert_eq!(check_lines(&lines, 200, &public, "vault"), (200, 0));
        assert!(err.contains("200 lines: 200 signed, 0 errors"), "{err}");
        let in_flight = proxy.max_in_flight();
        assert!(
            (3..=16).contains(&in_flight),
            "at most {in_flight} requests in flight at once, for 16 ({} connections)",
            proxy.connections()
        );
        // The key read and 200 signatures, none retried.
        assert_eq!(proxy.requests(), 201, "{err}");
    }

    /// Item 3, faults: the server behind a proxy that refuses every connection for a moment after 50 lines
    /// are out (as a restarting server does). The backend's retries carry every line through: all 200
    /// signed, exit 0.
    #[test]
    fn vault_batch_rides_out_a_short_outage() {
        let Some(bao) = BaoServer::start("vault_batch_rides_out_a_short_outage") else {
            return;
        };
        ok(&run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "RSA"],
            None,
            &bao.vault_env(),
        ));
        let public = ok(&run(
            &["keys", "public", "--key", "vault:issuer"],
            None,
            &bao.vault_env(),
        ));
        let proxy = FaultProxy::start(&bao.addr());
        let env = [
            ("VAULT_ADDR".to_owned(), proxy.url()),
            ("VAULT_TOKEN".to_owned(), bao.token().to_owned()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let input = batch_input(dir.path(), 200);
        let (lines, exit, err) = std::thread::scope(|scope| {
            let proxy = &proxy;
            batch(
                "vault:issuer",
                &input,
                Some("16"),
                &env,
                Some((
                    50,
                    Box::new(move || {
                        proxy.set_mode(Mode::Refuse);
                        scope.spawn(move || {
                            std::thread::sleep(Duration::from_millis(1500));
                            proxy.set_mode(Mode::Pass);
                        });
                    }),
                )),
            )
        });
        assert!(proxy.refused() > 0, "the outage happened mid-batch");
        assert_eq!(exit, 0, "{err}");
        assert_eq!(check_lines(&lines, 200, &public, "vault"), (200, 0));
    }

    /// Item 3, faults: the server goes away for good after 30 of 50 lines. The batch stops with a clear error
    /// after the bounded retries of the first line sent into the outage: every line before it has its
    /// verifying code, that line its error line, the summary says how many lines were written and where to
    /// resume, and the exit code is 2 (the key backend failing).
    #[test]
    fn vault_batch_with_a_lasting_outage_stops_where_it_can_be_resumed() {
        let Some(bao) = BaoServer::start("vault_batch_with_a_lasting_outage") else {
            return;
        };
        ok(&run(
            &["keys", "generate", "--key", "vault:issuer", "--kty", "RSA"],
            None,
            &bao.vault_env(),
        ));
        let public = ok(&run(
            &["keys", "public", "--key", "vault:issuer"],
            None,
            &bao.vault_env(),
        ));
        let proxy = FaultProxy::start(&bao.addr());
        let env = [
            ("VAULT_ADDR".to_owned(), proxy.url()),
            ("VAULT_TOKEN".to_owned(), bao.token().to_owned()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let input = batch_input(dir.path(), 50);
        let (lines, exit, err) = batch(
            "vault:issuer",
            &input,
            Some("16"),
            &env,
            Some((30, Box::new(|| proxy.set_mode(Mode::Refuse)))),
        );
        assert_eq!(exit, 2, "{err}");
        // The first 30 lines were signed before the outage; line 31, the first sent into it, failed through
        // every retry, and the batch stopped there instead of waiting out the same outage for each line left.
        assert_eq!(check_lines(&lines, 31, &public, "vault"), (30, 1));
        assert_eq!(lines[30]["line"], 31, "{err}");
        assert!(
            err.contains("31 lines: 30 signed, 1 errors (1 of them the key failing)")
                && err.contains("stopped at input line 31"),
            "{err}"
        );
        assert!(
            err.contains(
                "the key service (vault) stayed unavailable through every retry, so the batch stopped at \
                 input line 31: 31 lines were written (30 signed)"
            ) && err.contains("re-run the input from line 31"),
            "{err}"
        );
        assert!(!err.contains(bao.token()), "{err}");
    }
}

#[cfg(feature = "aws-kms")]
mod aws_kms {
    use keybound_test_support::keyservices::{FaultProxy, MotoServer};

    use super::*;

    /// "Done when": `keys generate --key aws-kms:alias/NAME --kty EC` makes a KMS key and its alias; ES256
    /// tokens signed through it verify with jsonwebtoken (KMS's DER signature turned into JOSE's r||s); an
    /// RSA key signs RS256. moto signs PSS with the maximum salt length, which JOSE verifiers reject:
    /// verify-after-sign catches it (exit 2, one line naming the backend), and no token is printed.
    #[test]
    fn kms_keys_sign_es256_and_rs256_and_a_bad_pss_signature_is_caught() {
        let Some(moto) = MotoServer::start("kms_keys_sign_es256_and_rs256") else {
            return;
        };
        let env = moto.kms_env();
        let line = ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:alias/issuer",
                "--kty",
                "EC",
            ],
            None,
            &env,
        ));
        assert!(line.contains("P-256"), "{line}");
        let thumbprint = thumbprint_of(&line);
        let public = ok(&run(
            &["keys", "public", "--key", "aws-kms:alias/issuer"],
            None,
            &env,
        ));
        let jwk: Value = serde_json::from_str(&ok(&run(
            &[
                "keys",
                "public",
                "--key",
                "aws-kms:alias/issuer",
                "--format",
                "jwk",
            ],
            None,
            &env,
        )))
        .unwrap();
        assert_eq!(jwk["kid"], thumbprint.as_str());
        for _ in 0..3 {
            verified(
                &public,
                "ES256",
                &jwt_sign("aws-kms:alias/issuer", "ES256", &env),
            );
        }
        // The alias exists in KMS and names a signing key.
        let (status, aliases) = moto.kms_request("ListAliases", &serde_json::json!({}));
        assert_eq!(status, 200, "{aliases}");
        assert!(
            aliases["Aliases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["AliasName"] == "alias/issuer"),
            "{aliases}"
        );
        let (status, described) =
            moto.kms_request("DescribeKey", &serde_json::json!({"KeyId": "alias/issuer"}));
        assert_eq!(status, 200, "{described}");
        assert_eq!(described["KeyMetadata"]["KeyUsage"], "SIGN_VERIFY");
        assert_eq!(described["KeyMetadata"]["KeySpec"], "ECC_NIST_P256");

        // An existing alias is refused.
        let again = run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:alias/issuer",
                "--kty",
                "EC",
            ],
            None,
            &env,
        );
        let err = fails_with(&again, &["alias/issuer"]);
        assert!(err.to_lowercase().contains("exist"), "{err}");

        ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:alias/issuer-rsa",
                "--kty",
                "RSA",
            ],
            None,
            &env,
        ));
        let rsa_public = ok(&run(
            &["keys", "public", "--key", "aws-kms:alias/issuer-rsa"],
            None,
            &env,
        ));
        verified(
            &rsa_public,
            "RS256",
            &jwt_sign("aws-kms:alias/issuer-rsa", "RS256", &env),
        );
        // moto's PSS salt is not JOSE's: the signature is discarded, the command fails in one line.
        let out = run(
            &[
                "jwt",
                "sign",
                "--key",
                "aws-kms:alias/issuer-rsa",
                "--alg",
                "PS256",
                "--claims",
                "-",
            ],
            Some(b"{}"),
            &env,
        );
        fails_with(&out, &["aws-kms", "does not verify"]);
    }

    /// A batch through KMS at the key-service default (16 in flight, no `--concurrency`): every code
    /// verifies under the key's public key (jsonwebtoken), and the proxy saw more than 2 and at most 16
    /// requests in flight at once.
    #[test]
    fn kms_batch_signs_every_line_with_sixteen_in_flight() {
        let Some(moto) = MotoServer::start("kms_batch_signs_every_line") else {
            return;
        };
        ok(&run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:alias/issuer",
                "--kty",
                "RSA",
            ],
            None,
            &moto.kms_env(),
        ));
        let public = ok(&run(
            &["keys", "public", "--key", "aws-kms:alias/issuer"],
            None,
            &moto.kms_env(),
        ));
        let proxy = FaultProxy::start(&moto.endpoint());
        let env = MotoServer::kms_env_for(&proxy.url());
        let dir = tempfile::tempdir().unwrap();
        let input = batch_input(dir.path(), 100);
        let (lines, exit, err) = batch("aws-kms:alias/issuer", &input, None, &env, None);
        assert_eq!(exit, 0, "{err}");
        assert_eq!(check_lines(&lines, 100, &public, "aws-kms"), (100, 0));
        assert!(err.contains("100 lines: 100 signed, 0 errors"), "{err}");
        assert!(proxy.requests() >= 100, "{}", proxy.requests());
        let in_flight = proxy.max_in_flight();
        assert!(
            (3..=16).contains(&in_flight),
            "at most {in_flight} requests in flight at once, for 16"
        );
    }

    /// `keys generate` names a new KMS key by its alias: a key id names an existing key and is refused
    /// before anything is created; `keys rotate` of a KMS key says what to do instead.
    #[test]
    fn kms_generate_needs_an_alias_and_rotate_is_refused() {
        let Some(moto) = MotoServer::start("kms_generate_needs_an_alias") else {
            return;
        };
        let env = moto.kms_env();
        let out = run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:1234abcd-12ab-34cd-56ef-1234567890ab",
            ],
            None,
            &env,
        );
        fails_with(&out, &["alias/NAME"]);
        // A KMS key has one usage: sign,decrypt is refused before anything is created.
        let out = run(
            &[
                "keys",
                "generate",
                "--key",
                "aws-kms:alias/both",
                "--usage",
                "sign,decrypt",
            ],
            None,
            &env,
        );
        fails_with(&out, &["one usage"]);
        let (_, keys) = moto.kms_request("ListKeys", &serde_json::json!({}));
        assert_eq!(keys["Keys"].as_array().map_or(0, Vec::len), 0, "{keys}");
        let out = run(
            &["keys", "rotate", "--key", "aws-kms:alias/issuer"],
            None,
            &env,
        );
        fails_with(&out, &["keys rotate", "update-alias"]);
    }
}

/// Commands that manage keys in a token or beside a file have no meaning for a key service: each refuses a
/// `vault:` / `aws-kms:` reference with exit 2 and one line that says what to use instead, before
/// contacting anything (no server runs here). `keys rotate` refuses file and token keys likewise.
#[test]
fn key_management_commands_refuse_key_service_references() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(&cert, "not read").unwrap();
    let cert = cert.to_str().unwrap();
    // Unroutable on purpose: nothing may be contacted.
    let env = [
        ("VAULT_ADDR".to_owned(), "http://127.0.0.1:9".to_owned()),
        ("VAULT_TOKEN".to_owned(), "t".to_owned()),
    ];
    for key in ["vault:issuer", "aws-kms:alias/issuer"] {
        let cases: [(&[&str], &[&str]); 6] = [
            (
                &["keys", "list", "--key", key],
                &["keys list", "not of a key service"],
            ),
            (
                &["keys", "delete", "--key", key, "--yes"],
                &["keys delete", "not from a key service"],
            ),
            (
                &["keys", "import", "--from", cert, "--key", key],
                &["keys import", "keys generate"],
            ),
            (
                &["keys", "attach-cert", "--key", key, "--cert", cert],
                &["keeps no certificates"],
            ),
            (
                &["keys", "public", "--key", key, "--format", "cert"],
                &["keeps no certificates"],
            ),
            (
                &[
                    "keys",
                    "certificate",
                    "--key",
                    key,
                    "--subject",
                    "CN=issuer",
                    "--store",
                ],
                &["keeps no certificates"],
            ),
        ];
        for (args, needles) in cases {
            let out = run(args, None, &env);
            let err = fails_with(&out, needles);
            assert!(err.contains(key), "{args:?}: {err}");
        }
    }
    if cfg!(feature = "file") {
        let file_key = format!("file:{}", dir.path().join("k.pem").display());
        ok(&run(&["keys", "generate", "--key", &file_key], None, &[]));
        let out = run(&["keys", "rotate", "--key", &file_key], None, &[]);
        fails_with(&out, &["keys rotate", "keys generate", "file"]);
    }
    let out = run(&["keys", "rotate", "--key", "env:SOME_KEY"], None, &[]);
    fails_with(&out, &["keys rotate", "env"]);
    // A key-service reference through a configured name resolves too (and is refused the same way).
    let config = dir.path().join("keybound.toml");
    std::fs::write(&config, "[keys]\nissuer = \"vault:issuer\"\n").unwrap();
    let out = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "keys",
            "list",
            "--key",
            "issuer",
        ],
        None,
        &env,
    );
    fails_with(&out, &["vault:issuer", "not of a key service"]);
}

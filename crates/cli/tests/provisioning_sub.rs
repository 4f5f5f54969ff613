//! `keybound provisioning auth-code` never signs a card number into an authorization code: a `sub` of 13 to 19
//! digits passing the Luhn check is refused (exit 2, one or batch), with a message that says `sub` is the
//! issuerCardRefId and that does not repeat the number. Nor does it sign an issuerCardRefId the card data
//! would refuse (over 48 characters), or a batch line that gives `sub` twice.

mod common;

use common::{code, keybound, ok, stderr};
use serde_json::Value;

const PANS: [&str; 3] = ["4111111111111111", "5555555555554444", "4222222222222"];

fn issuer_key(dir: &tempfile::TempDir) -> String {
    let key = format!("file:{}", dir.path().join("issuer.pem").display());
    ok(&keybound(&["keys", "generate", "--key", &key], None));
    key
}

#[test]
fn auth_code_refuses_a_card_number_as_sub() {
    let dir = tempfile::tempdir().unwrap();
    let key = issuer_key(&dir);
    let run = |sub: &str, extra: &[&str]| {
        let mut args = vec![
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--aud",
            "GOOGLE_PAY",
            "--sub",
            sub,
        ];
        args.extend_from_slice(extra);
        keybound(&args, None)
    };
    for pan in PANS {
        let out = run(pan, &[]);
        assert_eq!(code(&out), 2, "{pan}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{pan}: a code was printed");
        let err = stderr(&out);
        assert!(
            err.contains("card number") && err.contains("issuerCardRefId"),
            "{err}"
        );
        assert!(!err.contains(pan), "the message repeats the number: {err}");
        // As a tokenId (lifecycle operation) too.
        let out = run(pan, &["--token-id"]);
        assert_eq!(code(&out), 2, "{pan} --token-id: {}", stderr(&out));
        assert!(stderr(&out).contains("tokenId"), "{}", stderr(&out));
    }
    // A reference that merely has digits is signed.
    let jwt = ok(&run("4111111111111112", &[]));
    assert_eq!(jwt.trim().split('.').count(), 3);
}

#[test]
fn batch_mode_refuses_the_line_without_repeating_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let key = issuer_key(&dir);
    let mut input = String::from("{\"sub\":\"card-ref-1\",\"aud\":\"APPLE_PAY\"}\n");
    for pan in PANS {
        input.push_str(&format!("{{\"sub\":\"{pan}\",\"aud\":\"APPLE_PAY\"}}\n"));
    }
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--batch",
            "-",
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    for pan in PANS {
        assert!(
            !stdout.contains(pan) && !stderr(&out).contains(pan),
            "{pan} repeated"
        );
    }
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1 + PANS.len());
    assert!(lines[0]["jwt"].is_string());
    for line in &lines[1..] {
        assert!(line.get("jwt").is_none(), "{line}");
        assert!(
            line["error"].as_str().unwrap().contains("issuerCardRefId"),
            "{line}"
        );
    }
}

/// An issuerCardRefId over 48 characters (the card data's limit) is not signed: exit 2 for one code, an error
/// line naming its input line in a batch. 48 characters, and a long tokenId, are signed.
#[test]
fn auth_code_refuses_an_issuer_card_ref_id_over_48_characters() {
    let dir = tempfile::tempdir().unwrap();
    let key = issuer_key(&dir);
    let base = [
        "provisioning",
        "auth-code",
        "--key",
        &key,
        "--issuer-id",
        "ISSUER0001",
    ];
    let over = "r".repeat(49);
    let at_limit = "r".repeat(48);
    let one = |sub: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--aud", "APPLE_PAY", "--sub", sub]);
        args.extend_from_slice(extra);
        keybound(&args, None)
    };
    let out = one(&over, &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a code was printed");
    assert!(
        stderr(&out).contains("at most 48 characters"),
        "{}",
        stderr(&out)
    );
    ok(&one(&at_limit, &[]));
    ok(&one(&over, &["--token-id"]));

    let input = format!(
        "{{\"sub\":\"{at_limit}\",\"aud\":\"APPLE_PAY\"}}\n\n{{\"sub\":\"{over}\",\"aud\":\"APPLE_PAY\"}}\n"
    );
    let mut args = base.to_vec();
    args.extend_from_slice(&["--batch", "-"]);
    let out = keybound(&args, Some(input.as_bytes()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines[0]["jwt"].is_string(), "{}", lines[0]);
    assert_eq!(lines[1]["line"], 3, "{}", lines[1]);
    assert_eq!(lines[1]["sub"], over.as_str());
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("at most 48 characters"),
        "{}",
        lines[1]
    );
}

/// A batch line that gives `sub` twice is refused, not signed for the last value: its error line names the
/// input line and carries no `sub` (not even `null`).
#[test]
fn batch_refuses_a_line_with_sub_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let key = issuer_key(&dir);
    let input = "{\"sub\":\"card-ref-1\",\"aud\":\"APPLE_PAY\"}\n{\"sub\":\"a\",\"aud\":\"APPLE_PAY\",\"sub\":\"b\"}\n";
    let out = keybound(
        &[
            "provisioning",
            "auth-code",
            "--key",
            &key,
            "--issuer-id",
            "ISSUER0001",
            "--batch",
            "-",
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["jwt"].is_string());
    let refused = lines[1].as_object().unwrap();
    assert_eq!(
        refused.keys().collect::<Vec<_>>(),
        ["line", "error"],
        "{refused:?}"
    );
    assert_eq!(refused["line"], 2);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("`sub` appears more than once"),
        "{refused:?}"
    );
}

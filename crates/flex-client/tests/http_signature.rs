//! Known answers for the HTTP Signature merchant authentication, computed outside keybound: for each of
//! Cybersource's documented header sets (GET and DELETE: `host date request-target v-c-merchant-id`; POST, PUT
//! and PATCH: `host date request-target digest v-c-merchant-id`) the signing string is written out here line by
//! line, as the documentation shows it, for a fixed date, and its HMAC-SHA256 is computed by the `openssl`
//! command (`openssl dgst -sha256 -mac HMAC -macopt hexkey:…`), as is the body digest (`openssl dgst
//! -sha256`). flex-client's `digest` and `signature` headers must be exactly those.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flex_client::{HttpSignatureAuth, MerchantAuth};

const MERCHANT: &str = "testrest";
const KEY_ID: &str = "08c94330-f618-42a3-b09d-e1e43be5efda";
/// A shared secret as the Business Center shows it (base64 of 32 bytes).
const SECRET_B64: &str = "yBJxy6LjM2TmcPGu+GaJrHtkke25fPpUX+UY6/L/1tE=";
const HOST: &str = "apitest.cybersource.com";
/// 2026-01-01T00:00:00Z, and how it is written in the `date` header.
const AT_SECS: u64 = 1_767_225_600;
const DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// `openssl dgst -sha256 [-mac HMAC -macopt hexkey:HEX] -binary` over `input`, base64-encoded.
fn openssl_sha256(hmac_key: Option<&[u8]>, input: &[u8]) -> String {
    let mut args = vec!["dgst".to_owned(), "-sha256".to_owned()];
    if let Some(key) = hmac_key {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        args.extend([
            "-mac".into(),
            "HMAC".into(),
            "-macopt".into(),
            format!("hexkey:{hex}"),
        ]);
    }
    args.push("-binary".into());
    let mut child = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the openssl command is installed");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    assert_eq!(
        out.stdout.len(),
        32,
        "openssl printed a raw SHA-256 sized value"
    );
    STANDARD.encode(out.stdout)
}

fn get<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn http_signature_matches_openssl_for_the_documented_header_sets() {
    let secret = STANDARD.decode(SECRET_B64).unwrap();
    let auth =
        MerchantAuth::HttpSignature(HttpSignatureAuth::new(MERCHANT, KEY_ID, SECRET_B64).unwrap());
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(AT_SECS);
    let payment = br#"{"clientReferenceInformation":{"code":"TC50171_3"},"orderInformation":{"amountDetails":{"totalAmount":"102.21","currency":"USD"}}}"#;

    // (method, request target as sent, body); the signing string is spelled out below for each header set.
    let cases: [(&str, &str, &[u8]); 6] = [
        (
            "GET",
            "/reporting/v3/reports?startTime=2026-01-01T00:00:00Z",
            b"",
        ),
        (
            "DELETE",
            "/tms/v2/customers/D9F340DD3DB9C276E053A2598D0A41A3",
            b"",
        ),
        ("POST", "/pts/v2/payments", payment),
        (
            "PUT",
            "/tms/v2/customers/D9F340DD3DB9C276E053A2598D0A41A3",
            payment,
        ),
        ("PATCH", "/pts/v2/payments/6461731521426399003473", payment),
        // PUT with an empty body: still the "with digest" set, with the digest of nothing.
        (
            "PUT",
            "/tms/v2/customers/D9F340DD3DB9C276E053A2598D0A41A3",
            b"",
        ),
    ];
    for (method, target, body) in cases {
        let headers = auth
            .headers_at(method, HOST, target, body, at)
            .await
            .unwrap();
        let with_digest = matches!(method, "POST" | "PUT" | "PATCH");
        let lower = method.to_ascii_lowercase();
        let (names, signing_string) = if with_digest {
            let digest = format!("SHA-256={}", openssl_sha256(None, body));
            assert_eq!(get(&headers, "digest"), Some(digest.as_str()), "{method}");
            (
                "host date request-target digest v-c-merchant-id",
                [
                    format!("host: {HOST}"),
                    format!("date: {DATE}"),
                    format!("request-target: {lower} {target}"),
                    format!("digest: {digest}"),
                    format!("v-c-merchant-id: {MERCHANT}"),
                ]
                .join("\n"),
            )
        } else {
            assert_eq!(get(&headers, "digest"), None, "{method}: no digest");
            (
                "host date request-target v-c-merchant-id",
                [
                    format!("host: {HOST}"),
                    format!("date: {DATE}"),
                    format!("request-target: {lower} {target}"),
                    format!("v-c-merchant-id: {MERCHANT}"),
                ]
                .join("\n"),
            )
        };
        let expected = openssl_sha256(Some(&secret), signing_string.as_bytes());
        assert_eq!(get(&headers, "date"), Some(DATE), "{method}");
        assert_eq!(get(&headers, "v-c-merchant-id"), Some(MERCHANT), "{method}");
        assert_eq!(
            get(&headers, "signature"),
            Some(
                format!(
                    "keyid=\"{KEY_ID}\", algorithm=\"HmacSHA256\", headers=\"{names}\", signature=\"{expected}\""
                )
                .as_str()
            ),
            "{method} {target}"
        );
        let mut sent: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        sent.sort_unstable();
        let mut wanted = vec!["date", "signature", "v-c-merchant-id"];
        if with_digest {
            wanted.push("digest");
        }
        wanted.sort_unstable();
        assert_eq!(sent, wanted, "{method}");
    }
}

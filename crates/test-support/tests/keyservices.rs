//! The key-service test servers and the fault proxy: OpenBao's Transit creates keys and signs (the PSS
//! signature checked by `openssl`), moto's KMS answers the JSON 1.1 protocol, and the proxy passes, refuses,
//! injects statuses, counts and records, against a small std upstream and against both servers.

#![cfg(feature = "keyservices")]

use std::io::{BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use keybound_test_support::keyservices::http::{self, HttpConnection};
use keybound_test_support::keyservices::{
    BaoServer, FaultProxy, Mode, MotoServer, kms_request, random_hex,
};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A small keep-alive upstream: answers each request with JSON `{method, target, body, n}` (n = requests it
/// has seen), `/chunked` with a chunked body, `/slow` after half a second; `close_after_each` closes each connection after one answer
/// without saying so (as a server dropping an idle keep-alive connection does).
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

fn upstream(close_after_each: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Ok(Some(request)) = http::read_request(&mut reader) {
                    if request.target == "/slow" {
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = json!({
                        "method": request.method,
                        "target": request.target,
                        "body": String::from_utf8_lossy(&request.body),
                        "n": n,
                    })
                    .to_string();
                    let written = if request.target == "/chunked" {
                        let (a, b) = body.split_at(body.len() / 2);
                        write!(
                            writer,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                            a.len(),
                            b.len()
                        )
                    } else {
                        http::write_response(
                            &mut writer,
                            200,
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        )
                    };
                    if written.is_err() || close_after_each {
                        break;
                    }
                }
            });
        }
    });
    Upstream { addr, hits }
}

fn get(connection: &mut HttpConnection, path: &str) -> std::io::Result<http::Response> {
    connection.send("GET", path, &[], &[])
}

#[test]
fn proxy_passes_keep_alive_requests_and_chunked_responses() {
    let up = upstream(false);
    let proxy = FaultProxy::start(&format!("http://{}", up.addr));
    assert_eq!(proxy.upstream(), up.addr);
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    for i in 1..=3 {
        let r = connection
            .send("POST", "/echo", &[], format!("body {i}").as_bytes())
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body"], format!("body {i}"));
        assert_eq!(r.json()["n"], i);
    }
    let r = get(&mut connection, "/chunked").unwrap();
    assert_eq!(r.json()["target"], "/chunked");
    // One client connection, all four requests on it.
    assert_eq!(
        (proxy.connections(), proxy.requests(), proxy.forwarded()),
        (1, 4, 4)
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 4);
}

#[test]
fn proxy_injects_statuses_also_on_an_open_keep_alive_connection() {
    let up = upstream(false);
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut connection, "/a").unwrap().status, 200);

    proxy.set_mode(Mode::Status(503));
    let r = get(&mut connection, "/b").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"errors": ["injected"]}));
    assert_eq!(r.header("connection"), Some("close"));
    // The proxy closed that connection after answering.
    assert!(get(&mut connection, "/c").is_err());
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);

    proxy.set_mode(Mode::StatusTimes(429, 2));
    proxy.set_injected_body(
        "application/x-amz-json-1.1",
        r#"{"__type":"ThrottlingException","message":"injected"}"#,
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            let r = http::request(proxy.addr(), "GET", "/d", &[], &[]).unwrap();
            if r.status == 429 {
                assert_eq!(r.json()["__type"], "ThrottlingException");
                assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
            }
            r.status
        })
        .collect();
    assert_eq!(statuses, [429, 429, 200, 200]);
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(proxy.injected(), 3);
    assert_eq!(up.hits.load(Ordering::SeqCst), 3);
    // /a, /b, four /d (the /c after the injected answer met a closed connection).
    assert_eq!(proxy.requests(), 6);
}

#[test]
fn proxy_refuses_new_and_open_connections_then_passes_again() {
    let up = upstream(false);
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut open = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut open, "/a").unwrap().status, 200);

    proxy.set_mode(Mode::Refuse);
    // A request on the connection opened before: read, then the connection closes without an answer.
    let e = get(&mut open, "/b").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    // A new connection is closed at once.
    assert!(http::request(proxy.addr(), "GET", "/c", &[], &[]).is_err());
    assert_eq!(proxy.refused(), 2);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);

    proxy.set_mode(Mode::Pass);
    let r = http::request(proxy.addr(), "GET", "/d", &[], &[]).unwrap();
    assert_eq!((r.status, r.json()["n"].as_u64()), (200, Some(2)));
}

#[test]
fn proxy_records_what_clients_sent_and_drop_all_closes_live_connections() {
    let up = upstream(false);
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut connection, "/not-recorded").unwrap().status, 200);
    proxy.record(true);
    let body = json!({"KeyId": "alias/k", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}).to_string();
    let r = connection
        .send(
            "POST",
            "/",
            &[("X-Amz-Target", "TrentService.Decrypt")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let recorded = proxy.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].request_line, "POST / HTTP/1.1");
    assert_eq!((recorded[0].method(), recorded[0].target()), ("POST", "/"));
    assert_eq!(
        recorded[0].header("x-amz-target"),
        Some("TrentService.Decrypt")
    );
    assert_eq!(
        recorded[0].json()["EncryptionAlgorithm"],
        "RSAES_OAEP_SHA_256"
    );
    assert_eq!(recorded[0].body_text(), body);
    proxy.clear_recorded();
    assert!(proxy.recorded().is_empty());

    proxy.drop_all();
    assert!(get(&mut connection, "/after").is_err());
    let mut fresh = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut fresh, "/fresh").unwrap().status, 200);
}

#[test]
fn proxy_reopens_an_upstream_connection_the_upstream_closed() {
    let up = upstream(true);
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    for i in 1..=3 {
        let r = get(&mut connection, "/x").unwrap();
        assert_eq!(r.json()["n"], i);
    }
    assert_eq!(proxy.forwarded(), 3);
}

#[test]
fn proxy_answers_expect_100_continue_itself() {
    let up = upstream(false);
    let proxy = FaultProxy::start(&up.addr.to_string());
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .write_all(
            b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\
              Connection: close\r\n\r\n",
        )
        .unwrap();
    let mut interim = [0; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
    assert!(rest.contains(r#""body":"hello""#), "{rest}");
}

#[test]
fn bao_transit_creates_keys_and_signs_jose_exactly() {
    let Some(bao) = BaoServer::start("bao_transit_creates_keys_and_signs_jose_exactly") else {
        return;
    };
    assert!(bao.addr().starts_with("http://127.0.0.1:"));
    assert_eq!(
        bao.vault_env(),
        vec![
            ("VAULT_ADDR".to_owned(), bao.addr()),
            ("VAULT_TOKEN".to_owned(), bao.token().to_owned())
        ]
    );
    bao.create_transit_key("issuer", "rsa-2048");
    let (status, key) = bao.admin_request("GET", "transit/keys/issuer", None);
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["exportable"], false);
    assert_eq!(key["data"]["latest_version"], 1);
    let pem = key["data"]["keys"]["1"]["public_key"].as_str().unwrap();

    let input = b"eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0";
    let (status, signed) = bao.admin_request(
        "POST",
        "/v1/transit/sign/issuer/sha2-256",
        Some(&json!({
            "input": B64.encode(input),
            "signature_algorithm": "pss",
            "salt_length": "hash",
        })),
    );
    assert_eq!(status, 200, "{signed}");
    let signature = signed["data"]["signature"].as_str().unwrap();
    let signature = B64
        .decode(signature.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    assert_eq!(signature.len(), 256);
    // JOSE's PS256: salt length = hash length, checked by openssl (when it is installed).
    if let Some(verified) = openssl_verify_pss(pem, input, &signature) {
        assert!(verified, "openssl rejects Transit's PSS signature");
        // Transit's default salt length ("auto": the maximum) is not JOSE's, and the check sees it.
        let (_, auto) = bao.admin_request(
            "POST",
            "transit/sign/issuer/sha2-256",
            Some(&json!({"input": B64.encode(input), "signature_algorithm": "pss"})),
        );
        let auto = auto["data"]["signature"].as_str().unwrap();
        let auto = B64.decode(auto.strip_prefix("vault:v1:").unwrap()).unwrap();
        assert_eq!(openssl_verify_pss(pem, input, &auto), Some(false));
    }

    bao.create_transit_key("ec", "ecdsa-p256");
    let (status, signed) = bao.admin_request(
        "POST",
        "transit/sign/ec/sha2-256",
        Some(&json!({"input": B64.encode(input), "marshaling_algorithm": "jws"})),
    );
    assert_eq!(status, 200, "{signed}");
    let jws = signed["data"]["signature"].as_str().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 64, "r||s of P-256");

    // The token is really checked.
    let r = http::request(
        bao.socket_addr(),
        "GET",
        "/v1/transit/keys/issuer",
        &[("X-Vault-Token", "wrong")],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert!(bao.log().contains("2.7.2"), "{}", bao.log());
}

/// `openssl dgst -verify` with PSS and salt length 32; `None` without openssl.
fn openssl_verify_pss(pem: &str, input: &[u8], signature: &[u8]) -> Option<bool> {
    let dir = std::env::temp_dir().join(format!("keybound-pss-{}", random_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pub.pem"), pem).unwrap();
    std::fs::write(dir.join("input"), input).unwrap();
    std::fs::write(dir.join("sig"), signature).unwrap();
    let output = Command::new("openssl")
        .current_dir(&dir)
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-signature",
            "sig",
            "input",
        ])
        .output()
        .ok();
    let _ = std::fs::remove_dir_all(&dir);
    output.map(|o| o.status.success())
}

#[test]
fn moto_kms_creates_keys_signs_and_resets() {
    let Some(moto) = MotoServer::start("moto_kms_creates_keys_signs_and_resets") else {
        return;
    };
    let env = moto.kms_env();
    assert!(env.contains(&("AWS_ENDPOINT_URL_KMS".to_owned(), moto.endpoint())));
    assert!(env.contains(&("AWS_REGION".to_owned(), "us-east-1".to_owned())));
    let (status, created) = moto.kms_request(
        "CreateKey",
        &json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    );
    assert_eq!(status, 200, "{created}");
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let (status, _) = moto.kms_request(
        "CreateAlias",
        &json!({"AliasName": "alias/issuer", "TargetKeyId": key_id}),
    );
    assert_eq!(status, 200);
    let (status, public) = moto.kms_request("GetPublicKey", &json!({"KeyId": "alias/issuer"}));
    assert_eq!(status, 200, "{public}");
    assert_eq!(
        public["KeyId"].as_str().map(|a| a.ends_with(&key_id)),
        Some(true)
    );
    let (status, signed) = moto.kms_request(
        "Sign",
        &json!({
            "KeyId": "alias/issuer",
            "Message": B64.encode(b"header.payload"),
            "MessageType": "RAW",
            "SigningAlgorithm": "ECDSA_SHA_256",
        }),
    );
    assert_eq!(status, 200, "{signed}");
    let der = B64.decode(signed["Signature"].as_str().unwrap()).unwrap();
    assert_eq!(der[0], 0x30, "moto's ECDSA signatures are DER");

    moto.reset();
    let (status, missing) = moto.kms_request("DescribeKey", &json!({"KeyId": key_id}));
    assert_eq!(status, 400);
    assert_eq!(missing["__type"], "NotFoundException");
}

#[test]
fn proxy_in_front_of_bao_and_moto() {
    let test = "proxy_in_front_of_bao_and_moto";
    let (Some(bao), Some(moto)) = (BaoServer::start(test), MotoServer::start(test)) else {
        return;
    };
    // Transit through the proxy, a 503 injected in between.
    let proxy = FaultProxy::start(&bao.addr());
    let token = bao.token().to_owned();
    let headers = [("X-Vault-Token", token.as_str())];
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    let create = json!({"type": "ecdsa-p384"}).to_string();
    let r = connection
        .send("POST", "/v1/transit/keys/p", &headers, create.as_bytes())
        .unwrap();
    assert!((200..300).contains(&r.status), "{}", r.text());
    proxy.set_mode(Mode::StatusTimes(503, 1));
    let r = get(&mut connection, "/v1/sys/health").unwrap();
    assert_eq!(r.status, 503);
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    let r = connection
        .send("GET", "/v1/transit/keys/p", &headers, &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["type"], "ecdsa-p384");

    // KMS through the proxy: what the client sent is recorded.
    let proxy = FaultProxy::start(&moto.endpoint());
    proxy.record(true);
    let (status, created) = kms_request(
        proxy.addr(),
        "CreateKey",
        &json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["KeyMetadata"]["EncryptionAlgorithms"],
        json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
    );
    let recorded = proxy.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].header("X-Amz-Target"),
        Some("TrentService.CreateKey")
    );
    assert_eq!(recorded[0].json()["KeySpec"], "RSA_2048");
    assert_eq!(
        MotoServer::kms_env_for(&proxy.url())
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL_KMS")
            .map(|(_, v)| v.clone()),
        Some(proxy.url())
    );
}

/// A missing binary: a loud SKIPPED line and a pass, or with `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1` a
/// failure (this test binary run again on one of its server tests, with `KEYBOUND_TEST_BAO` pointing
/// nowhere).
#[test]
fn a_missing_server_skips_loudly_unless_required() {
    let run = |required: bool| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "bao_transit_creates_keys_and_signs_jose_exactly",
                "--nocapture",
            ])
            .env(
                keybound_test_support::keyservices::BAO_ENV,
                "/nonexistent/bao",
            )
            .env_remove(keybound_test_support::keyservices::REQUIRED_ENV);
        if required {
            command.env(keybound_test_support::keyservices::REQUIRED_ENV, "1");
        }
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (passed, text) = run(false);
    assert!(passed, "{text}");
    assert!(
        text.contains(
            "*** SKIPPED bao_transit_creates_keys_and_signs_jose_exactly: \
             KEYBOUND_TEST_BAO=/nonexistent/bao does not exist"
        ),
        "{text}"
    );
    let (passed, text) = run(true);
    assert!(!passed, "{text}");
    assert!(
        text.contains("KEYBOUND_TEST_KEYSERVICES_REQUIRED=1 requires the key-service tests to run"),
        "{text}"
    );
}

/// Concurrent clients: `StatusTimes(429, n)` injects exactly n answers, whatever the interleaving, and the
/// counters add up.
#[test]
fn proxy_counts_exactly_under_concurrent_clients() {
    let up = upstream(false);
    let proxy = Arc::new(FaultProxy::start(&up.addr.to_string()));
    proxy.set_mode(Mode::StatusTimes(429, 10));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let proxy = Arc::clone(&proxy);
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
                for _ in 0..5 {
                    let r = get(&mut connection, "/c").unwrap();
                    statuses.push(r.status);
                    if r.status == 429 {
                        // The proxy closed this connection after its injected answer.
                        connection = HttpConnection::connect(proxy.addr()).unwrap();
                    }
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30);
    assert_eq!(
        (proxy.requests(), proxy.injected(), proxy.forwarded()),
        (40, 10, 30)
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 30);
    assert_eq!(proxy.mode(), Mode::Pass);
}

/// `max_in_flight` counts requests the proxy holds at once, not connections: requests one after another,
/// on one connection or on a new connection each, count 1; three clients whose requests the upstream holds
/// half a second count 3 (never more: there are only three).
#[test]
fn proxy_counts_the_most_requests_in_flight_at_once() {
    let up = upstream(false);
    let proxy = Arc::new(FaultProxy::start(&up.addr.to_string()));
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    for _ in 0..3 {
        assert_eq!(get(&mut connection, "/slow").unwrap().status, 200);
    }
    for _ in 0..3 {
        let mut fresh = HttpConnection::connect(proxy.addr()).unwrap();
        assert_eq!(get(&mut fresh, "/a").unwrap().status, 200);
    }
    assert_eq!((proxy.max_in_flight(), proxy.connections()), (1, 4));

    let start = Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (proxy, start) = (Arc::clone(&proxy), Arc::clone(&start));
            std::thread::spawn(move || {
                let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
                start.wait();
                get(&mut connection, "/slow").unwrap().status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(proxy.max_in_flight(), 3);
    // Injected answers and refused requests are let go too.
    proxy.set_mode(Mode::Status(503));
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut connection, "/a").unwrap().status, 503);
    proxy.set_mode(Mode::Pass);
    let mut connection = HttpConnection::connect(proxy.addr()).unwrap();
    assert_eq!(get(&mut connection, "/a").unwrap().status, 200);
    assert_eq!(proxy.max_in_flight(), 3);
}

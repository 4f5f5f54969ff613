//! The `vault:` backend against a real OpenBao Transit (`bao server -dev`, one per test), with a fault
//! proxy (keybound-test-support's `FaultProxy`) between the backend and the server where a test counts
//! requests or injects faults: rotation and versions, decryption of RSA-OAEP-256 CEKs across versions,
//! one-line errors that are not retried, bounded retries with `retried=true` in the audit event, the token
//! kept out of every error, log line and `Debug` output, and concurrent signers.
//!
//! Every log line of this binary is captured (one global subscriber) and searched for the tokens at the end
//! of the tests that use them. Skipped with a loud message when `bao` is not installed, unless
//! `KEYBOUND_TEST_KEYSERVICES_REQUIRED=1`.

#![cfg(feature = "vault")]

mod support;

use std::sync::{Arc, OnceLock};

use key_provider::{
    DecryptionScheme, EcCurve, KeyBackend, KeyError, KeyRef, KeySpec, KeyUsage, OpenOptions,
    SignatureScheme, VaultRef,
};
use keybound_test_support::capture::{Captured, capture_global};
use keybound_test_support::keyservices::{FaultProxy, Mode};
use support::vault::Bao;

/// Every log line of this test binary.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| capture_global(tracing::Level::TRACE))
}

fn start(test: &str) -> Option<Bao> {
    logs();
    Bao::start(test)
}

fn vault_ref(reference: &str) -> VaultRef {
    reference.parse().expect("vault reference")
}

fn open(reference: &str) -> Result<Arc<dyn KeyBackend>, KeyError> {
    let key_ref: KeyRef = reference.parse()?;
    key_provider::open(&key_ref, &OpenOptions::new())
}

fn generate(bao: &Bao, name: &str, spec: KeySpec) -> Arc<dyn KeyBackend> {
    key_provider::vault::generate(
        &vault_ref(&bao.reference(name)),
        spec,
        // RSA keys sign and decrypt here; EC keys cannot decrypt.
        match spec {
            KeySpec::Rsa(_) => KeyUsage::SignAndDecrypt,
            _ => KeyUsage::Sign,
        },
        &OpenOptions::new(),
    )
    .expect("generate")
}

/// The audit events of `operation` (`generate`, `rotate`) on the key `reference`, in order.
fn management_events(reference: &str, operation: &str) -> Vec<String> {
    support::audit_events(&logs().text(), &vault_ref(reference).to_string(), operation)
}

/// Asserts an error is one line and carries neither token.
fn assert_clean(err: &KeyError, secrets: &[&str]) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "the token leaked into: {text}");
        assert!(!format!("{err:?}").contains(secret), "Debug: {err:?}");
    }
    text
}

#[test]
fn rotation_signs_with_the_new_version_and_old_ciphertexts_still_decrypt() {
    let Some(bao) = start("vault::rotation") else {
        return;
    };
    let key = generate(&bao, "issuer", KeySpec::Rsa(2048));
    assert_eq!(key_provider::vault::version(key.as_ref()), Some(1));
    assert_eq!(key.key_label(), bao.reference("issuer"));
    assert_eq!(key.usage(), None, "Transit records no usage");
    let cek_v1 = support::random_cek();
    let ct_v1 = support::oaep_encrypt(key.public_key(), DecryptionScheme::RsaOaepSha256, &cek_v1);

    let rotated =
        key_provider::vault::rotate(&vault_ref(&bao.reference("issuer")), &OpenOptions::new())
            .expect("rotate");
    assert_eq!(key_provider::vault::version(rotated.as_ref()), Some(2));
    let events = management_events(&bao.reference("issuer"), "rotate");
    assert_eq!(events.len(), 1, "{events:?}");
    support::assert_fields(
        &events[0],
        &[
            "outcome=\"success\"",
            "version=2",
            "key_type=\"rsa-2048\"",
            "(mount transit)",
        ],
    );
    assert_ne!(
        rotated.public_key(),
        key.public_key(),
        "a new version has a new key"
    );
    let reopened = open(&bao.reference("issuer")).expect("open");
    assert_eq!(key_provider::vault::version(reopened.as_ref()), Some(2));
    assert_eq!(reopened.public_key(), rotated.public_key());

    // The new version signs: its signature verifies with the new public key only.
    let scheme = SignatureScheme::RsaPssSha256;
    let sig = rotated.sign(scheme, b"after rotation").expect("sign v2");
    support::assert_openssl_verifies(rotated.public_key(), scheme, b"after rotation", &sig);
    assert!(!support::jsonwebtoken_verifies(
        key.public_key(),
        scheme,
        b"after rotation",
        &sig
    ));
    // The handle opened before the rotation still signs with version 1 (its kid stays true).
    let sig = key.sign(scheme, b"pinned").expect("sign v1");
    support::assert_jsonwebtoken_verifies(key.public_key(), scheme, b"pinned", &sig);

    // Ciphertexts for either version decrypt with the new handle (the pinned version first, then older).
    assert_eq!(
        rotated
            .decrypt(DecryptionScheme::RsaOaepSha256, &ct_v1)
            .expect("decrypt a v1 ciphertext")
            .as_slice(),
        cek_v1.as_slice()
    );
    let cek_v2 = support::random_cek();
    let ct_v2 = support::oaep_encrypt(
        rotated.public_key(),
        DecryptionScheme::RsaOaepSha256,
        &cek_v2,
    );
    assert_eq!(
        rotated
            .decrypt(DecryptionScheme::RsaOaepSha256, &ct_v2)
            .expect("decrypt a v2 ciphertext")
            .as_slice(),
        cek_v2.as_slice()
    );
    // A damaged ciphertext is tried against both versions once each, then fails opaquely, unretried.
    let proxy = FaultProxy::start(&bao.server.addr());
    let through_proxy =
        open(&bao.reference_at("issuer", &proxy.url())).expect("open through the proxy");
    let before = proxy.requests();
    let mut damaged = ct_v2.clone();
    damaged[7] ^= 0x40;
    let err = through_proxy
        .decrypt(DecryptionScheme::RsaOaepSha256, &damaged)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::Crypto), "{err}");
    assert_eq!(proxy.requests() - before, 2, "one request per version");
    // A key whose older versions are retired decrypts with the remaining ones only.
    let (status, body) = bao.server.admin_request(
        "POST",
        "transit/keys/issuer/config",
        Some(&serde_json::json!({"min_decryption_version": 2})),
    );
    assert!((200..300).contains(&status), "{body}");
    let retired = open(&bao.reference("issuer")).expect("open");
    assert!(matches!(
        retired.decrypt(DecryptionScheme::RsaOaepSha256, &ct_v1),
        Err(KeyError::Crypto)
    ));
}

#[test]
fn signature_requests_name_the_pinned_version_jose_parameters_and_send_the_token_only_as_a_header()
{
    let Some(bao) = start("vault::requests") else {
        return;
    };
    generate(&bao, "rsa", KeySpec::Rsa(3072));
    generate(&bao, "p384", KeySpec::Ec(EcCurve::P384));
    let proxy = FaultProxy::start(&bao.server.addr());
    proxy.record(true);
    let rsa = open(&bao.reference_at("rsa", &proxy.url())).expect("open");
    let p384 = open(&bao.reference_at("p384", &proxy.url())).expect("open");
    let big = vec![b'x'; 100_000];
    for (key, scheme) in [
        (&rsa, SignatureScheme::RsaPssSha512),
        (&rsa, SignatureScheme::RsaPkcs1Sha384),
        (&p384, SignatureScheme::EcdsaP384Sha384),
    ] {
        let sig = key.sign(scheme, &big).expect("sign a large message");
        support::assert_openssl_verifies(key.public_key(), scheme, &big, &sig);
    }
    let recorded = proxy.recorded();
    let signs: Vec<_> = recorded
        .iter()
        .filter(|r| r.target().contains("/sign/"))
        .collect();
    assert_eq!(signs.len(), 3);
    assert_eq!(signs[0].target(), "/v1/transit/sign/rsa/sha2-512");
    let body = signs[0].json();
    assert_eq!(body["signature_algorithm"], "pss");
    assert_eq!(body["salt_length"], "hash");
    assert_eq!(body["key_version"], 1);
    assert_eq!(signs[1].json()["signature_algorithm"], "pkcs1v15");
    assert_eq!(signs[2].target(), "/v1/transit/sign/p384/sha2-384");
    assert_eq!(signs[2].json()["marshaling_algorithm"], "jws");
    for r in &recorded {
        assert_eq!(r.header("X-Vault-Token"), Some(bao.server.token()));
        assert!(!r.target().contains(bao.server.token()));
        assert!(!r.body_text().contains(bao.server.token()));
        assert_eq!(r.header("X-Vault-Namespace"), None);
    }
    // namespace= is sent as X-Vault-Namespace: a key in an OpenBao namespace of its own.
    for (method, path, body) in [
        ("POST", "sys/namespaces/team-a", serde_json::json!({})),
        (
            "POST",
            "team-a/sys/mounts/transit",
            serde_json::json!({"type": "transit"}),
        ),
        (
            "POST",
            "team-a/transit/keys/ns-key",
            serde_json::json!({"type": "ecdsa-p256"}),
        ),
    ] {
        let (status, answer) = bao.server.admin_request(method, path, Some(&body));
        assert!((200..300).contains(&status), "{path}: {answer}");
    }
    proxy.clear_recorded();
    let in_namespace = open(&format!(
        "{}&namespace=team-a",
        bao.reference_at("ns-key", &proxy.url())
    ))
    .expect("open in the namespace");
    let sig = in_namespace
        .sign(SignatureScheme::EcdsaP256Sha256, b"namespaced")
        .expect("sign in the namespace");
    support::assert_jsonwebtoken_verifies(
        in_namespace.public_key(),
        SignatureScheme::EcdsaP256Sha256,
        b"namespaced",
        &sig,
    );
    let recorded = proxy.recorded();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|r| r.header("X-Vault-Namespace") == Some("team-a"))
    );
    // Outside its namespace the key does not exist.
    let err = open(&bao.reference("ns-key")).map(|_| ()).unwrap_err();
    assert!(matches!(err, KeyError::NotFound { .. }), "{err}");
    let err = open(&format!("{}&namespace=team-b", bao.reference("ns-key")))
        .map(|_| ())
        .unwrap_err();
    assert!(
        assert_clean(&err, &[bao.server.token()]).contains("namespace `team-b`"),
        "{err}"
    );
    assert!(!format!("{rsa:?}").contains(bao.server.token()));
    assert!(!logs().text().contains(bao.server.token()));
}

#[test]
fn generate_refuses_an_existing_name_and_what_transit_cannot_make() {
    let Some(bao) = start("vault::generate") else {
        return;
    };
    let proxy = FaultProxy::start(&bao.server.addr());
    let r = vault_ref(&bao.reference_at("taken", &proxy.url()));
    let options = OpenOptions::new();
    let key =
        key_provider::vault::generate(&r, KeySpec::Ec(EcCurve::P256), KeyUsage::Sign, &options)
            .expect("generate");
    assert_eq!(key.public_key().describe(), "EC P-256");
    let err = key_provider::vault::generate(&r, KeySpec::Rsa(2048), KeyUsage::Sign, &options)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::KeyExists { .. }), "{err}");
    assert!(
        assert_clean(&err, &[bao.server.token()])
            .contains("Transit key `taken` in mount `transit`"),
        "{err}"
    );
    // Both attempts are audited: the key made (its type, usage and version), then the refusal.
    let events = management_events(&r.to_string(), "generate");
    assert_eq!(events.len(), 2, "{events:?}");
    support::assert_fields(
        &events[0],
        &[
            "outcome=\"success\"",
            "key_type=\"ecdsa-p256\"",
            "usage=\"sign\"",
            "version=1",
        ],
    );
    support::assert_fields(
        &events[1],
        &[
            "WARN",
            "outcome=\"failure\"",
            "key_type=\"rsa-2048\"",
            "already exists",
        ],
    );
    assert!(!events[1].contains(bao.server.token()), "{}", events[1]);
    // An existing key of a type keybound does not use is still an existing name.
    bao.server.create_transit_key("ed", "ed25519");
    let err = key_provider::vault::generate(
        &vault_ref(&bao.reference("ed")),
        KeySpec::Rsa(2048),
        KeyUsage::Sign,
        &options,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(err, KeyError::KeyExists { .. }), "{err}");
    // Refused before any request: a decrypt usage on an EC key, a size Transit has no type for.
    let before = proxy.requests();
    let fresh = vault_ref(&bao.reference_at("fresh", &proxy.url()));
    let err = key_provider::vault::generate(
        &fresh,
        KeySpec::Ec(EcCurve::P384),
        KeyUsage::Decrypt,
        &options,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
    let err = key_provider::vault::generate(&fresh, KeySpec::Rsa(1024), KeyUsage::Sign, &options)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::NotSupported { .. }), "{err}");
    assert!(
        err.to_string().contains("rsa-2048, rsa-3072, rsa-4096"),
        "{err}"
    );
    assert_eq!(proxy.requests(), before);
    // Nothing reached the service, so nothing is audited.
    assert_eq!(
        management_events(&fresh.to_string(), "generate"),
        Vec::<String>::new()
    );
    // What Transit made is not exportable.
    let (status, body) = bao.server.admin_request("GET", "transit/keys/taken", None);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["exportable"], false);
    assert_eq!(body["data"]["allow_plaintext_backup"], false);
    // Rotating a missing key is a clear error.
    let err = key_provider::vault::rotate(&vault_ref(&bao.reference("missing")), &options)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, KeyError::NotFound { .. }), "{err}");
    // A failed rotation is audited too (one whose answer is lost may have happened).
    let events = management_events(&bao.reference("missing"), "rotate");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains("outcome=\"failure\"") && events[0].contains("version=\"-\""),
        "{}",
        events[0]
    );
}

#[test]
fn missing_key_bad_token_and_wrong_key_types_are_one_line_errors_without_retry() {
    let Some(bao) = start("vault::errors") else {
        return;
    };
    let token = bao.server.token().to_owned();
    let wrong = "s.WRONG-kb-token-7f3a9c";
    bao.server.create_transit_key("ec", "ecdsa-p256");
    bao.server.create_transit_key("ed", "ed25519");
    bao.server.create_transit_key("aes", "aes256-gcm96");
    bao.server.create_transit_key("p521", "ecdsa-p521");
    let proxy = FaultProxy::start(&bao.server.addr());
    let secrets = [token.as_str(), wrong];
    let count = |f: &dyn Fn() -> Result<(), KeyError>| {
        let before = proxy.requests();
        let err = f().unwrap_err();
        (err, proxy.requests() - before)
    };

    let (err, n) = count(&|| open(&bao.reference_at("missing", &proxy.url())).map(|_| ()));
    assert!(matches!(err, KeyError::NotFound { .. }), "{err}");
    assert_eq!(n, 1, "not retried: {err}");
    let text = assert_clean(&err, &secrets);
    assert!(
        text.starts_with("vault: no Transit key found for `missing` in mount `transit` at http://"),
        "{text}"
    );

    let wrong_file = bao.token_file_with("wrong-token", wrong);
    let bad = format!(
        "vault:ec?addr={}&token-source=file:{}",
        proxy.url(),
        wrong_file.display()
    );
    let (err, n) = count(&|| open(&bad).map(|_| ()));
    assert!(
        matches!(
            err,
            KeyError::AccessDenied {
                status: Some(403),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(n, 1, "not retried: {err}");
    let text = assert_clean(&err, &secrets);
    assert!(
        text.contains("permission denied")
            && text.contains("VAULT_TOKEN")
            && text.contains("`transit/keys/ec`"),
        "{text}"
    );

    // A token whose policy may read the key but not sign with it: opens, then a 403 naming the policy path.
    let (status, answer) = bao.server.admin_request(
        "POST",
        "sys/policies/acl/read-only",
        Some(
            &serde_json::json!({"policy": "path \"transit/keys/*\" { capabilities = [\"read\"] }"}),
        ),
    );
    assert!((200..300).contains(&status), "{answer}");
    let (status, answer) = bao.server.admin_request(
        "POST",
        "auth/token/create",
        Some(&serde_json::json!({"policies": ["read-only"], "no_default_policy": true})),
    );
    assert!((200..300).contains(&status), "{answer}");
    let reader = answer["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_owned();
    let reader_file = bao.token_file_with("reader-token", &reader);
    let read_only = open(&format!(
        "vault:ec?addr={}&token-source=file:{}",
        proxy.url(),
        reader_file.display()
    ))
    .expect("the reader may read the key");
    let (err, n) = count(&|| {
        read_only
            .sign(SignatureScheme::EcdsaP256Sha256, b"x")
            .map(|_| ())
    });
    assert!(
        matches!(
            err,
            KeyError::AccessDenied {
                status: Some(403),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(n, 1, "not retried: {err}");
    let text = assert_clean(&err, &[token.as_str(), wrong, reader.as_str()]);
    assert!(
        text.contains("grants `update` on `transit/sign/ec/*`"),
        "{text}"
    );
    assert!(!logs().text().contains(reader.as_str()));

    for (name, needle) in [
        ("ed", "Transit type ed25519"),
        ("aes", "Transit type aes256-gcm96"),
        ("p521", "Transit type ecdsa-p521"),
    ] {
        let (err, n) = count(&|| open(&bao.reference_at(name, &proxy.url())).map(|_| ()));
        assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
        assert_eq!(n, 1);
        assert!(assert_clean(&err, &secrets).contains(needle), "{err}");
    }

    // Refused before any request: RSA-OAEP with an EC key, RSA-OAEP-SHA1, a scheme that does not fit.
    let ec = open(&bao.reference_at("ec", &proxy.url())).expect("open");
    let rsa = key_provider::vault::generate(
        &vault_ref(&bao.reference_at("rsa", &proxy.url())),
        KeySpec::Rsa(2048),
        KeyUsage::Decrypt,
        &OpenOptions::new(),
    )
    .expect("generate");
    let (err, n) = count(&|| {
        ec.decrypt(DecryptionScheme::RsaOaepSha256, &[0; 256])
            .map(|_| ())
    });
    assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
    assert_eq!(n, 0);
    let (err, n) = count(&|| {
        rsa.decrypt(DecryptionScheme::RsaOaepSha1, &[0; 256])
            .map(|_| ())
    });
    assert_eq!(
        err.to_string(),
        "RSA-OAEP-SHA1 is not supported by this backend (vault): Transit decrypts RSA-OAEP with SHA-256 \
         only (RSA-OAEP-256 JWEs)"
    );
    assert_eq!(n, 0);
    let (err, n) = count(&|| ec.sign(SignatureScheme::EcdsaP384Sha384, b"x").map(|_| ()));
    assert!(matches!(err, KeyError::WrongKeyType { .. }), "{err}");
    assert_eq!(n, 0);

    // A key deleted after it was opened: NotFound at signing, not retried.
    let (status, body) = bao.server.admin_request(
        "POST",
        "transit/keys/ec/config",
        Some(&serde_json::json!({"deletion_allowed": true})),
    );
    assert!((200..300).contains(&status), "{body}");
    let (status, body) = bao.server.admin_request("DELETE", "transit/keys/ec", None);
    assert!((200..300).contains(&status), "{body}");
    let (err, n) = count(&|| ec.sign(SignatureScheme::EcdsaP256Sha256, b"x").map(|_| ()));
    assert!(matches!(err, KeyError::NotFound { .. }), "{err}");
    assert_eq!(n, 1);

    // A server that is no Vault: a clear error, not a retry loop.
    proxy.set_mode(Mode::Status(418));
    let (err, n) = count(&|| open(&bao.reference_at("rsa", &proxy.url())).map(|_| ()));
    assert!(matches!(err, KeyError::Backend { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 418"), "{err}");
    assert_eq!(n, 1);

    let logs = logs().text();
    for secret in secrets {
        assert!(!logs.contains(secret), "a token is in the logs");
    }
}

#[test]
fn server_errors_are_retried_and_the_audit_event_says_so() {
    let Some(bao) = start("vault::retries") else {
        return;
    };
    generate(&bao, "retry-issuer", KeySpec::Ec(EcCurve::P256));
    let proxy = FaultProxy::start(&bao.server.addr());
    let key = open(&bao.reference_at("retry-issuer", &proxy.url())).expect("open");
    let scheme = SignatureScheme::EcdsaP256Sha256;

    proxy.set_mode(Mode::StatusTimes(503, 2));
    let before = proxy.requests();
    let sig = key.sign(scheme, b"after two 503s").expect("sign");
    assert_eq!(proxy.requests() - before, 3);
    support::assert_jsonwebtoken_verifies(key.public_key(), scheme, b"after two 503s", &sig);
    let audit: Vec<String> = logs()
        .text()
        .lines()
        .filter(|l| {
            l.contains("keybound::audit")
                && l.contains("retry-issuer")
                && l.contains("operation=\"sign\"")
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains("retried=true"), "{}", audit[0]);
    assert!(audit[0].contains("outcome=\"success\""), "{}", audit[0]);
    assert!(audit[0].contains("version 1"), "{}", audit[0]);

    // 429 (throttling) and a server restart (connections dropped, then refused for a moment) are retried.
    proxy.set_mode(Mode::StatusTimes(429, 1));
    key.sign(scheme, b"after a 429").expect("sign after 429");
    proxy.drop_all();
    key.sign(scheme, b"after a restart")
        .expect("sign after restart");

    // Refused for longer than the retry budget: ServiceUnavailable naming the attempts, then recovery.
    proxy.set_mode(Mode::Refuse);
    let before = proxy.refused();
    let err = key.sign(scheme, b"down").map(|_| ()).unwrap_err();
    assert!(
        matches!(err, KeyError::ServiceUnavailable { attempts: 6, .. }),
        "{err}"
    );
    let text = assert_clean(&err, &[bao.server.token()]);
    assert!(
        text.starts_with("vault: signing with vault:retry-issuer?")
            && text.contains("failed after 6 attempts"),
        "{text}"
    );
    let refused = proxy.refused() - before;
    assert!(
        refused >= 6,
        "each attempt reached the proxy: {refused} refused"
    );
    proxy.set_mode(Mode::Pass);
    key.sign(scheme, b"back").expect("sign after recovery");
    assert!(!logs().text().contains(bao.server.token()));
}

#[test]
fn http_to_a_non_loopback_address_and_inline_tokens_are_refused() {
    for (reference, needle) in [
        (
            "vault:k?addr=http://10.0.0.5:8200",
            "plain http:// is accepted only to a loopback address",
        ),
        ("vault:k?token=s.abc", "never accepted in the key reference"),
    ] {
        let err = open(reference).map(|_| ()).unwrap_err();
        assert!(matches!(err, KeyError::InvalidKeyRef { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err.to_string().contains("s.abc"));
    }
}

#[test]
fn concurrent_signers_and_async_callers_all_get_valid_signatures() {
    let Some(bao) = start("vault::concurrency") else {
        return;
    };
    let ec = generate(&bao, "ec", KeySpec::Ec(EcCurve::P256));
    let rsa = generate(&bao, "rsa", KeySpec::Rsa(2048));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (key, scheme) = if i % 2 == 0 {
                (Arc::clone(&ec), SignatureScheme::EcdsaP256Sha256)
            } else {
                (Arc::clone(&rsa), SignatureScheme::RsaPssSha256)
            };
            std::thread::spawn(move || {
                let message = format!("thread {i}");
                let sig = key.sign(scheme, message.as_bytes()).expect("sign");
                support::jsonwebtoken_verifies(key.public_key(), scheme, message.as_bytes(), &sig)
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("thread"), "a signature does not verify");
    }

    // Async: inside a current-thread runtime, many at once on its one thread; and outside any runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scheme = SignatureScheme::EcdsaP256Sha256;
    let sigs = runtime.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let key = Arc::clone(&ec);
                tokio::spawn(async move {
                    key.sign_async(scheme, format!("async {i}").as_bytes())
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("sign_async"));
        }
        out
    });
    for (i, sig) in sigs.iter().enumerate() {
        assert!(support::jsonwebtoken_verifies(
            ec.public_key(),
            scheme,
            format!("async {i}").as_bytes(),
            sig
        ));
    }
    let cek = support::random_cek();
    let ct = support::oaep_encrypt(rsa.public_key(), DecryptionScheme::RsaOaepSha256, &cek);
    let plain =
        support::block_on_without_runtime(rsa.decrypt_async(DecryptionScheme::RsaOaepSha256, &ct))
            .expect("decrypt_async without a runtime");
    assert_eq!(plain.as_slice(), cek.as_slice());
    // The blocking call from inside an async task (it blocks only its own thread).
    let sig = runtime
        .block_on(async { ec.sign(scheme, b"blocking inside") })
        .expect("sign");
    assert!(support::jsonwebtoken_verifies(
        ec.public_key(),
        scheme,
        b"blocking inside",
        &sig
    ));
}
